//! The domain pass of a sweep: for each cluster, the hosted domains its first reachable
//! node listed (`gad`, in the gather), their type and DKIM attributes read with ONE
//! extra `zmprov -l` batch on that same node (one more JVM per cluster, never per
//! host; a fresh connection, since the gather's sessions are not kept for a check), then
//! the playbook's `dns` probes looked up from this machine. Runs only when the playbook
//! has `dns` probes.

use std::collections::BTreeMap;
use std::net::IpAddr;

use futures::StreamExt;

use crate::carbonio::domains::DomainReadPlan;
use crate::carbonio::flavour::Flavour;
use crate::dns::posture::dns_probes;
use crate::dns::{ClusterDomains, DnsResolver, DomainFacts, ResolverSettings, evaluate_cluster};
use crate::engine::gather::HostGather;
use crate::exit;
use crate::inventory::Host;
use crate::playbook::Playbook;
use crate::report::model::{DomainReport, ProbeVerdict};
use crate::ssh::{Connector, ExecEnd, RunAs};

/// One cluster's reading node and what the inventory says about the cluster.
struct ClusterPlan<'a> {
    cluster: String,
    egress: Vec<IpAddr>,
    /// The first reachable node (inventory order), its server name and product, and the
    /// domains its `gad` listed.
    reader: Option<(&'a Host, String, Flavour, Vec<String>)>,
}

/// Clusters in inventory order, each with its egress union and its reading node.
fn plan_clusters<'a>(gathers: &'a [HostGather]) -> Vec<ClusterPlan<'a>> {
    let mut order: Vec<String> = Vec::new();
    let mut plans: BTreeMap<String, ClusterPlan<'a>> = BTreeMap::new();
    for g in gathers {
        let c = &g.host.cluster;
        let plan = plans.entry(c.clone()).or_insert_with(|| {
            order.push(c.clone());
            ClusterPlan {
                cluster: c.clone(),
                egress: Vec::new(),
                reader: None,
            }
        });
        for ip in &g.host.egress {
            if !plan.egress.contains(ip) {
                plan.egress.push(*ip);
            }
        }
        if plan.reader.is_none()
            && let Ok(ok) = &g.outcome
        {
            plan.reader = Some((
                &g.host,
                ok.facts.hostname.clone(),
                ok.facts.flavour,
                ok.facts.domains.clone(),
            ));
        }
    }
    order.into_iter().filter_map(|c| plans.remove(&c)).collect()
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
/// Empty when the playbook has no `dns` probes.
pub async fn domain_pass(
    playbook: &Playbook,
    gathers: &[HostGather],
    connector: &Connector,
    settings: &ResolverSettings,
    forks: usize,
) -> Vec<DomainReport> {
    if dns_probes(&playbook.probes).is_empty() {
        return Vec::new();
    }
    let plans = plan_clusters(gathers);
    let resolver = match DnsResolver::new(settings) {
        Ok(r) => r,
        Err(e) => {
            return plans
                .into_iter()
                .map(|p| DomainReport {
                    cluster: p.cluster,
                    read_on: p.reader.map(|(_, name, _, _)| name),
                    resolver: "(none)".into(),
                    error: Some(e.to_string()),
                    domains: Vec::new(),
                })
                .collect();
        }
    };
    // One short question first: a resolver that does not answer costs one wait, and
    // every lookup of the pass then fails at once with that one reason.
    if let Err(why) = resolver.probe(".").await {
        tracing::warn!("domain checks: {why}; no domain is checked");
    }
    let resolver = &resolver;
    let mut out: Vec<(usize, DomainReport)> = futures::stream::iter(plans.into_iter().enumerate())
        .map(|(i, p)| async move {
            let (read_on, domains) = match p.reader {
                None => (
                    None,
                    Err(
                        "no node of the cluster could be audited, so its domains are unknown"
                            .to_string(),
                    ),
                ),
                Some((host, name, flavour, domains)) => (
                    Some(name),
                    read_domains(connector, host, flavour, &domains).await,
                ),
            };
            let input = ClusterDomains {
                cluster: p.cluster,
                read_on,
                egress: p.egress,
                domains,
            };
            (i, evaluate_cluster(resolver, &playbook.probes, input).await)
        })
        .buffer_unordered(forks.max(1))
        .collect()
        .await;
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
pub fn exit_code(host_code: i32, domains: &[DomainReport]) -> i32 {
    if host_code == exit::OK && has_domain_drift(domains) {
        exit::DRIFT
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
        assert_eq!(exit_code(exit::OK, &d), exit::DRIFT);
        assert_eq!(exit_code(exit::HOST_FAILED, &d), exit::HOST_FAILED);
        assert_eq!(exit_code(exit::OK, &[]), exit::OK);
    }
}
