//! The compliance sweep: gathered facts → one [`HostReport`] per host, with global-scope
//! values read once per cluster (on its first reachable node, in inventory order) and
//! attributed to every node of it; and the exit code that monitoring understands.

use std::collections::BTreeMap;

use std::path::Path;

use crate::carbonio::running::{self, Running};
use crate::engine::gather::HostGather;
use crate::engine::verdict::{self, ClusterGlobals};
use crate::exit::ExitCode;
use crate::inventory::Host;
use crate::playbook::Playbook;
use crate::report::model::{HostReport, HostStatus, Timings};

/// The cluster → global values map, from the first reachable node of each cluster.
pub fn cluster_globals(gathers: &[HostGather]) -> BTreeMap<String, ClusterGlobals> {
    let mut out: BTreeMap<String, ClusterGlobals> = BTreeMap::new();
    for g in gathers {
        if let Ok(ok) = &g.outcome {
            out.entry(g.host.cluster.clone())
                .or_insert_with(|| ClusterGlobals {
                    read_on: ok.facts.hostname.clone(),
                    values: ok.facts.global.clone(),
                });
        }
    }
    out
}

/// The latest report's running-state verdicts, by host. A `loaded` verdict carries forward
/// while master.cf keeps its mtime: after the mail log rotates, the reload that proved it
/// is gone from the log, but the master has not unloaded the file.
#[derive(Debug, Clone, Default)]
pub struct Earlier {
    /// When that run started (RFC 3339), for evidence.
    pub started_at: String,
    pub running: BTreeMap<String, Running>,
}

impl Earlier {
    /// Reads `REPORT_DIR/latest/report.json`; none (or an unreadable one) is no history.
    pub fn load(report_dir: &Path) -> Earlier {
        let path = report_dir.join("latest").join("report.json");
        let Ok(report) = crate::report::store::read_report(&path) else {
            return Earlier::default();
        };
        Earlier {
            started_at: report.started_at,
            running: report
                .hosts
                .into_iter()
                .filter_map(|h| h.running.map(|r| (h.name, r)))
                .collect(),
        }
    }
}

/// Verdicts for every gathered host.
/// The finding on hosts whose inventory cluster and LDAP's list of the cluster's MTAs
/// (`gas mta`) disagree: promotion waits for every MTA LDAP lists, so apply holds it.
pub const CLUSTER_MTAS_FINDING: &str = "CLUSTER-MTAS";

/// Compares each cluster of the inventory with LDAP's list of its MTAs: a gathered MTA
/// that LDAP does not list, and (when every inventory host of the cluster was gathered)
/// an MTA LDAP lists that no inventory host is. Blocking: promotion needs them to agree.
pub fn annotate_membership(reports: &mut [HostReport], gathers: &[HostGather], inventory: &[Host]) {
    let mut clusters: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, g) in gathers.iter().enumerate() {
        clusters.entry(g.host.cluster.as_str()).or_default().push(i);
    }
    for (cluster, idx) in clusters {
        let mut ldap: Vec<String> = idx
            .iter()
            .filter_map(|&i| gathers[i].outcome.as_ref().ok())
            .flat_map(|ok| ok.facts.mta_servers.iter().cloned())
            .collect();
        ldap.sort();
        ldap.dedup();
        if ldap.is_empty() {
            continue;
        }
        let known: Vec<String> = idx
            .iter()
            .filter_map(|&i| gathers[i].outcome.as_ref().ok())
            .map(|ok| ok.facts.hostname.to_ascii_lowercase())
            .collect();
        let complete = idx.iter().all(|&i| gathers[i].outcome.is_ok())
            && inventory.iter().filter(|h| h.cluster == cluster).count() == idx.len();
        let missing: Vec<&String> = ldap.iter().filter(|s| !known.contains(s)).collect();
        for &i in &idx {
            let Ok(ok) = &gathers[i].outcome else {
                continue;
            };
            let mut why = Vec::new();
            if ok.facts.is_mta() && !ldap.contains(&ok.facts.hostname.to_ascii_lowercase()) {
                why.push(format!(
                    "LDAP does not list this server ({}) among the MTAs of cluster `{cluster}`",
                    ok.facts.hostname
                ));
            }
            if complete && !missing.is_empty() {
                why.push(format!(
                    "LDAP lists MTA(s) of cluster `{cluster}` that no inventory host is: {}",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if why.is_empty() {
                continue;
            }
            reports[i].findings.push(crate::report::model::Finding {
                id: CLUSTER_MTAS_FINDING.into(),
                severity: "high".into(),
                blocking: true,
                message: format!(
                    "the inventory's cluster `{cluster}` is not LDAP's: {}",
                    why.join("; ")
                ),
                evidence: format!("zmprov -l gas mta: {}", ldap.join(", ")),
                hint: "make the inventory's cluster hold exactly the MTAs LDAP lists: apply promotes a cluster only once every one of them passed".into(),
            });
        }
    }
}

pub fn evaluate_all(
    playbook: &Playbook,
    gathers: &[HostGather],
    earlier: &Earlier,
) -> Vec<HostReport> {
    let globals = cluster_globals(gathers);
    let mut reports: Vec<HostReport> = gathers
        .iter()
        .map(|g| {
            let mut r = base_report(&g.host);
            r.timings = Timings {
                connect_ms: g.connect_time.map(|d| d.as_millis() as u64),
                gather_ms: g.gather_time.map(|d| d.as_millis() as u64),
                total_ms: g.total_time.as_millis() as u64,
            };
            match &g.outcome {
                Err(e) => {
                    r.status = HostStatus::Failed;
                    r.error = Some(e.clone());
                }
                Ok(ok) => {
                    let f = &ok.facts;
                    let cg = &globals[&g.host.cluster];
                    let run = f.is_mta().then(|| {
                        running::carry_forward(
                            running::decide(&f.running, &f.hostname, f.flavour.mail_log()),
                            earlier.running.get(&g.host.name),
                            &earlier.started_at,
                        )
                    });
                    let (host, cluster) = (&g.host.name, &g.host.cluster);
                    let waiver = |id: &str| playbook.waivers.lookup(host, cluster, id);
                    let ev = verdict::evaluate(playbook, f, cg, &ok.smtp, run.as_ref(), &waiver);
                    r.running = run;
                    r.status = ev.status;
                    r.controls = ev.controls;
                    r.probes = ev.probes;
                    r.findings = ev.findings;
                    r.platform = Some(f.platform);
                    r.flavour = Some(f.flavour);
                    r.version = f.version.clone();
                    r.carbonio_hostname = Some(f.hostname.clone());
                    r.is_mta = Some(f.is_mta());
                    if r.roles.is_empty() {
                        r.roles = discovered_roles(&f.services);
                    }
                }
            }
            r
        })
        .collect();
    // A change that apply would refuse in a cluster is a finding on every node of it,
    // in check too: the operator learns before apply why the cluster stays off.
    let plan = crate::engine::changes::plan(playbook, &reports);
    crate::engine::changes::annotate_blocked(&mut reports, &plan);
    // What an unfinished apply left staged, and overrides that keep a node off the
    // desired value: said with the tool command that finishes or undoes it.
    let blocked: Vec<(String, String)> = plan
        .blocked
        .iter()
        .map(|b| (b.cluster.clone(), b.control.clone()))
        .collect();
    let mut staging = crate::engine::stage::plan(playbook, &reports, &blocked, false);
    // A node pinned to the old values (inventory var `pin`) is reported as such, not as
    // masked or staged.
    for (g, r) in gathers.iter().zip(reports.iter_mut()) {
        if g.host
            .vars
            .get(crate::engine::stage::PIN_VAR)
            .map(String::as_str)
            == Some("true")
        {
            staging.nodes.remove(&g.host.name);
            r.findings.push(crate::report::model::Finding {
                id: crate::engine::stage::PINNED_FINDING.into(),
                severity: "low".into(),
                blocking: false,
                message: "pinned to the old values (inventory var `pin = \"true\"`): apply does not stage it, and a promotion gives it a permanent server entry with the values it had".into(),
                evidence: format!("inventory {}", g.host.source.display()),
                hint: "remove `pin` from the host's vars, then apply, to bring it to the playbook's values".into(),
            });
        }
    }
    crate::engine::stage::annotate(&mut reports, &staging);
    reports
}

/// A report entry for a host before anything is known about it.
pub fn base_report(h: &Host) -> HostReport {
    HostReport {
        name: h.name.clone(),
        address: h.address.clone(),
        port: h.port,
        cluster: h.cluster.clone(),
        groups: h.groups.clone(),
        roles: h.roles.clone(),
        status: HostStatus::NotAttempted,
        platform: None,
        flavour: None,
        version: None,
        carbonio_hostname: None,
        is_mta: None,
        error: None,
        controls: Vec::new(),
        probes: Vec::new(),
        findings: Vec::new(),
        timings: Timings::default(),
        running: None,
        apply: None,
        vars: h.vars.clone(),
    }
}

/// Roles from zimbraServiceEnabled, named as operators know them.
fn discovered_roles(services: &[String]) -> Vec<String> {
    let mut roles = Vec::new();
    for (svc, role) in [
        ("mta", "mta"),
        ("mailbox", "mailbox"),
        ("ldap", "directory"),
        ("proxy", "proxy"),
    ] {
        if services.iter().any(|s| s == svc) {
            roles.push(role.to_string());
        }
    }
    roles
}

/// What the hosts alone say (README "Exit codes"): a failed host, else drift, else success (the
/// precedence is [`ExitCode::worst`]'s).
pub fn exit_code(hosts: &[HostReport]) -> ExitCode {
    if hosts.iter().any(|h| h.status == HostStatus::Failed) {
        ExitCode::HostFailed
    } else if hosts.iter().any(|h| {
        matches!(
            h.status,
            HostStatus::Drift | HostStatus::RestartPending | HostStatus::NotAttempted
        )
    }) {
        ExitCode::Drift
    } else {
        ExitCode::Ok
    }
}
