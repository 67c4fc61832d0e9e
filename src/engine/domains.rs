//! The domain pass of a sweep: for each cluster, the hosted domains its first reachable
//! node listed (`gad`, in the gather), their type and DKIM attributes read with ONE
//! extra `zmprov -l` batch on that same node (one more JVM per cluster, never per
//! host; a fresh connection, since the gather's sessions are not kept for a check), then
//! the playbook's `dns` probes looked up from this machine. Runs only when the playbook
//! has `dns` probes, ALONGSIDE the host sweep: a cluster's read and lookups start as
//! soon as its reading node's gather returned (every node before it in inventory order
//! has returned too, so the reading node is the same whatever the timing), while the
//! other gathers go on; the resolver's budget bounds the lookups, never the sweep.

use std::net::IpAddr;

use futures::StreamExt;

use crate::carbonio::domains::DomainReadPlan;
use crate::dns::{ClusterDomains, DnsResolver, DomainFacts, ResolverSettings};
use crate::engine::gather::HostGather;
use crate::engine::posture::{dns_probes, evaluate_cluster};
use crate::exit::ExitCode;
use crate::flavour::Flavour;
use crate::inventory::Host;
use crate::playbook::Playbook;
use crate::report::model::{DomainReport, ProbeVerdict};
use crate::ssh::{Connector, ExecEnd, RunAs};

/// What a host's gather told the domain pass, sent as soon as it returned: its index in
/// the swept host list and, when it was audited, its server name, product and the
/// domains its `gad` listed.
#[derive(Debug, Clone)]
pub struct Gathered {
    pub index: usize,
    pub reader: Option<(String, Flavour, Vec<String>)>,
}

impl Gathered {
    /// The message for host `index`'s gather.
    pub fn of(index: usize, g: &HostGather) -> Self {
        Gathered {
            index,
            reader: g.outcome.as_ref().ok().map(|ok| {
                (
                    ok.facts.hostname.clone(),
                    ok.facts.flavour,
                    ok.facts.domains.clone(),
                )
            }),
        }
    }
}

/// A host's gather outcome as the domain pass keeps it: `None` until it returned, then
/// `Some(None)` (not audited) or its server name, product and domains.
type Slot = Option<Option<(String, Flavour, Vec<String>)>>;

/// One cluster of the sweep: its members (indices in the host list, inventory order)
/// and the union of their egress addresses.
struct ClusterPlan {
    cluster: String,
    members: Vec<usize>,
    egress: Vec<IpAddr>,
}

/// Clusters in inventory order.
fn plan_clusters(hosts: &[Host]) -> Vec<ClusterPlan> {
    let mut plans: Vec<ClusterPlan> = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let at = match plans.iter().position(|p| p.cluster == h.cluster) {
            Some(at) => at,
            None => {
                plans.push(ClusterPlan {
                    cluster: h.cluster.clone(),
                    members: Vec::new(),
                    egress: Vec::new(),
                });
                plans.len() - 1
            }
        };
        let plan = &mut plans[at];
        plan.members.push(i);
        for ip in &h.egress {
            if !plan.egress.contains(ip) {
                plan.egress.push(*ip);
            }
        }
    }
    plans
}

/// The reading node of `plan` once it is decided: the first member (inventory order)
/// that was audited, provided every member before it has returned. `Some(None)`: every
/// member returned and none was audited. `None`: not decided yet.
fn decided_reader(plan: &ClusterPlan, results: &[Slot]) -> Option<Option<usize>> {
    for &m in &plan.members {
        match &results[m] {
            None => return None,
            Some(Some(_)) => return Some(Some(m)),
            Some(None) => {}
        }
    }
    Some(None)
}

/// Reads the domains' attributes on `host` (one exec, one `zmprov -l`).
async fn read_domains(
    connector: &Connector,
    host: &Host,
    flavour: Flavour,
    domains: &[String],
) -> Result<Vec<DomainFacts>, String> {
    if domains.is_empty() {
        return Ok(Vec::new());
    }
    let plan = DomainReadPlan::new(domains)
        .map_err(|e| format!("domain names cannot be sent to `{}`: {e}", host.name))?;
    let session = connector.connect(host).await.map_err(|e| {
        format!(
            "cannot reconnect to `{}` to read the domains: {}",
            host.name, e.message
        )
    })?;
    // A fresh connection: its service user is the one the gather found.
    session.set_flavour(flavour);
    let out = session
        .exec(RunAs::Service, plan.script(), None, host.command_timeout)
        .await
        .map_err(|e| format!("reading the domains on `{}` failed: {e}", host.name))?;
    if !matches!(out.end, ExecEnd::Status(_)) {
        return Err(format!(
            "reading the domains on `{}` ended without an exit status",
            host.name
        ));
    }
    let mut facts = plan
        .parse(
            &String::from_utf8_lossy(&out.stdout),
            &String::from_utf8_lossy(&out.stderr),
        )
        .map_err(|e| format!("reading the domains on `{}`: {e}", host.name))?;
    // `gad` lines that are not domain names are kept visible, never silently dropped.
    for bad in plan.rejected() {
        facts.push(DomainFacts {
            domain: bad.clone(),
            ..DomainFacts::default()
        });
    }
    Ok(facts)
}

/// The domain section of a sweep: one [`DomainReport`] per cluster, in inventory order.
/// Empty when the playbook has no `dns` probes. `done` carries each host's [`Gathered`]
/// as its gather returns (`hosts` are the swept hosts, in the order the indices name);
/// it closes when the sweep is over.
pub async fn domain_pass(
    playbook: &Playbook,
    hosts: &[Host],
    mut done: tokio::sync::mpsc::UnboundedReceiver<Gathered>,
    connector: &Connector,
    settings: &ResolverSettings,
    forks: usize,
) -> Vec<DomainReport> {
    if dns_probes(&playbook.probes).is_empty() {
        return Vec::new();
    }
    let plans = plan_clusters(hosts);
    let mut results: Vec<Slot> = vec![None; hosts.len()];
    let resolver = match DnsResolver::new(settings) {
        Ok(r) => r,
        Err(e) => return without_resolver(&plans, results, done, &e.to_string()).await,
    };
    // One short question first: a resolver that does not answer costs one wait, and
    // every lookup of the pass then fails at once with that one reason. The gathers go
    // on meanwhile; their messages wait in the channel.
    if let Err(why) = resolver.probe(".").await {
        tracing::warn!("domain checks: {why}; no domain is checked");
    }
    let resolver = &resolver;
    // At most `forks` clusters read and looked up at once, besides the sweep's own.
    let slots = &tokio::sync::Semaphore::new(forks.max(1));
    let evaluate = |i: usize, reader: Option<Reader>| {
        let plan = &plans[i];
        async move {
            let _slot = slots.acquire().await.ok();
            let input = cluster_domains(connector, hosts, plan, reader).await;
            (i, evaluate_cluster(resolver, &playbook.probes, input).await)
        }
    };
    let mut started = vec![false; plans.len()];
    let mut running = futures::stream::FuturesUnordered::new();
    let mut out: Vec<(usize, DomainReport)> = Vec::new();
    let mut open = true;
    loop {
        tokio::select! {
            g = done.recv(), if open => {
                open = record_gathered(&mut results, g);
                for (i, reader) in newly_decided(&plans, &results, &mut started) {
                    running.push(evaluate(i, reader));
                }
            }
            Some(r) = running.next(), if !running.is_empty() => out.push(r),
            else => break,
        }
    }
    out.sort_by_key(|(i, _)| *i);
    let silent = resolver.silent().map(str::to_string);
    out.into_iter()
        .map(|(_, mut r)| {
            if let (None, Some(why)) = (&r.error, &silent) {
                r.error = Some(format!("{why}: the domain checks were not asked"));
            }
            r
        })
        .collect()
}

/// A cluster's reading node: its index in the swept hosts, server name, product and the
/// domains its `gad` listed.
type Reader = (usize, String, Flavour, Vec<String>);

/// The domain section when no resolver can be built: every cluster with `error`, and
/// still the name of its reader once the sweep is over.
async fn without_resolver(
    plans: &[ClusterPlan],
    mut results: Vec<Slot>,
    mut done: tokio::sync::mpsc::UnboundedReceiver<Gathered>,
    error: &str,
) -> Vec<DomainReport> {
    // Nothing to look up with: the report still names each cluster's reader.
    while let Some(g) = done.recv().await {
        if let Some(slot) = results.get_mut(g.index) {
            *slot = Some(g.reader);
        }
    }
    plans
        .iter()
        .map(|p| DomainReport {
            cluster: p.cluster.clone(),
            read_on: decided_reader(p, &results)
                .flatten()
                .and_then(|m| results[m].clone().flatten())
                .map(|(name, _, _)| name),
            resolver: "(none)".into(),
            error: Some(error.to_string()),
            domains: Vec::new(),
        })
        .collect()
}

/// Keeps one gather's message in `results`; `None` (the channel closed: the sweep is
/// over) marks every host that never reported as not audited. Whether the channel is
/// still open.
fn record_gathered(results: &mut [Slot], g: Option<Gathered>) -> bool {
    match g {
        Some(g) => {
            if let Some(slot) = results.get_mut(g.index) {
                *slot = Some(g.reader);
            }
            true
        }
        // The sweep is over: a host that never reported counts as not
        // audited.
        None => {
            for r in results.iter_mut() {
                r.get_or_insert(None);
            }
            false
        }
    }
}

/// The clusters whose reading node was decided since the last call (marked in
/// `started`), each with its reader, or `None` when no member could be audited.
fn newly_decided(
    plans: &[ClusterPlan],
    results: &[Slot],
    started: &mut [bool],
) -> Vec<(usize, Option<Reader>)> {
    let mut out = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        if started[i] {
            continue;
        }
        if let Some(reader) = decided_reader(plan, results) {
            started[i] = true;
            let reader = reader.and_then(|m| {
                results[m]
                    .clone()
                    .flatten()
                    .map(|(name, flavour, domains)| (m, name, flavour, domains))
            });
            out.push((i, reader));
        }
    }
    out
}

/// One cluster's domains as the posture step takes them: read on its reading node, or
/// the reason they are unknown.
async fn cluster_domains(
    connector: &Connector,
    hosts: &[Host],
    plan: &ClusterPlan,
    reader: Option<Reader>,
) -> ClusterDomains {
    let (read_on, domains) = match reader {
        None => (
            None,
            Err("no node of the cluster could be audited, so its domains are unknown".to_string()),
        ),
        Some((m, name, flavour, domains)) => (
            Some(name),
            read_domains(connector, &hosts[m], flavour, &domains).await,
        ),
    };
    ClusterDomains {
        cluster: plan.cluster.clone(),
        read_on,
        egress: plan.egress.clone(),
        domains,
    }
}

/// Whether any domain check failed or could not be decided (or a cluster's domains
/// could not be read).
pub fn has_domain_drift(domains: &[DomainReport]) -> bool {
    domains.iter().any(|d| {
        d.error.is_some()
            || d.domains.iter().any(|p| {
                p.checks
                    .iter()
                    .any(|c| matches!(c.verdict, ProbeVerdict::Fail | ProbeVerdict::Error))
            })
    })
}

/// The exit code with the domain section counted: domain findings are drift (2); they
/// never mask an unreachable host (3) or anything graver.
pub fn exit_code(host_code: ExitCode, domains: &[DomainReport]) -> ExitCode {
    if has_domain_drift(domains) {
        host_code.worst(ExitCode::Drift)
    } else {
        host_code
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample::sample_domains;

    #[test]
    fn domain_findings_are_drift_but_never_mask_a_failure() {
        let d = sample_domains();
        assert_eq!(exit_code(ExitCode::Ok, &d), ExitCode::Drift);
        assert_eq!(exit_code(ExitCode::HostFailed, &d), ExitCode::HostFailed);
        assert_eq!(exit_code(ExitCode::Ok, &[]), ExitCode::Ok);
    }
}
