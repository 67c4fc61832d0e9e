//! What apply would change, decided from a check's verdicts (pure; `plan` prints it,
//! `apply` executes it).
//!
//! - Global-scope controls are changed ONCE per cluster, on its first reachable node,
//!   and only when the cluster's global value is off. Apply does not run that `mcf`
//!   first: it stages the values on each MTA's server entry batch by batch and runs it
//!   as the promotion, once every MTA passed its gate ([`super::stage`]).
//! - A server entry that overrides a global-scope attribute is [`super::stage`]'s
//!   business (extended, reported as masking, or replaced on request).
//! - Server-scope controls are changed per node.
//! - Multi-valued attributes change with `+attr`/`-attr`, never by replacement.
//! - A control guarded by the policy spawn-user precondition, or one that would add
//!   `check_policy_service unix:private/policy`, is not changed in a cluster where any
//!   MTA node lacks the spawn user: that would make Postfix answer 451 to every recipient.
//! - A control a live waiver accepts (`--waivers`) is not changed: server-scope on the
//!   waived host, global-scope in the waived host's whole cluster (the cluster shares one
//!   value, so changing it would change the waived host too).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::carbonio::prov::{Batch, BatchValueError};
use crate::engine::verdict::SPAWN_USER_FINDING;
use crate::playbook::{Control, Expectation, Playbook, Precondition, Scope};
use crate::report::model::{Finding, HostReport, HostStatus, Verdict};

/// The restriction value that makes Postfix consult the policy service.
pub const POLICY_RESTRICTION: &str = "check_policy_service unix:private/policy";

/// One attribute change as ProvUtil arguments (e.g. `["mcf", "+zimbraMtaRestriction", "…"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub control: String,
    pub attr: String,
    pub args: Vec<String>,
    /// A change that needs the restart step.
    pub restart: bool,
    /// What the read-back must satisfy when it is not the control's own expectation (a
    /// rollback restores the previous values); `None`: the control's.
    #[serde(skip)]
    pub expect: Option<Expectation>,
}

/// Changes executed in one `zmprov` batch on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBatch {
    /// The node the batch runs on.
    pub node: String,
    pub changes: Vec<Change>,
}

/// A change that is not made, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    pub control: String,
    pub cluster: String,
    /// The node(s) whose state blocks it.
    pub because_of: Vec<String>,
    pub reason: String,
}

/// Everything apply would do before restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePlan {
    /// Per cluster: the global changes and the node that makes them.
    pub global: BTreeMap<String, NodeBatch>,
    /// Per node: server-entry changes.
    pub server: BTreeMap<String, NodeBatch>,
    pub blocked: Vec<Blocked>,
    /// Global changes left out because a live waiver accepts the deviation on hosts of
    /// the cluster (`because_of`: those hosts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waived: Vec<Blocked>,
}

/// The hosts among `hosts` on which a live waiver accepts the deviation of `control`.
pub fn waived_on<'a>(hosts: &[&'a HostReport], control: &str) -> Vec<&'a str> {
    hosts
        .iter()
        .filter(|h| h.controls.iter().any(|r| r.id == control && r.is_waived()))
        .map(|h| h.name.as_str())
        .collect()
}

/// Every (cluster, control) where a live waiver accepts a deviation on some host: a
/// global-scope control stays as it is in the whole cluster then (apply does not change
/// nor stage it). One pass over the hosts, for lookups per node.
pub fn waived_in_clusters(hosts: &[HostReport]) -> BTreeSet<(String, String)> {
    hosts
        .iter()
        .flat_map(|h| {
            h.controls
                .iter()
                .filter(|r| r.is_waived())
                .map(|r| (h.cluster.clone(), r.id.clone()))
        })
        .collect()
}

impl ChangePlan {
    pub fn is_empty(&self) -> bool {
        self.global.is_empty() && self.server.is_empty()
    }
}

fn guarded_by_spawn_user(c: &Control) -> bool {
    c.precondition == Some(Precondition::PolicySpawnUser)
        || matches!(&c.expect, Expectation::Contains(v) | Expectation::Equals(v) if v.contains(POLICY_RESTRICTION))
}

/// ProvUtil arguments that move `attr` to the expectation, for `verb` (`mcf` or
/// `ms NODE`).
fn change_args(verb: &[&str], c: &Control) -> Vec<String> {
    let mut args: Vec<String> = verb.iter().map(|s| s.to_string()).collect();
    match &c.expect {
        Expectation::Equals(v) => {
            args.push(c.attr.clone());
            args.push(v.clone());
        }
        Expectation::Contains(v) => {
            args.push(format!("+{}", c.attr));
            args.push(v.clone());
        }
        Expectation::Absent(v) => {
            args.push(format!("-{}", c.attr));
            args.push(v.clone());
        }
    }
    args
}

/// Decides the changes from a check's host reports (inventory order).
// Longer than the usual ~120 lines on purpose: one pass per cluster, deciding its global
// batch, what blocks it and each node's server batch from the same readings.
pub fn plan(playbook: &Playbook, hosts: &[HostReport]) -> ChangePlan {
    let mut out = ChangePlan::default();
    let mut clusters: BTreeMap<&str, Vec<&HostReport>> = BTreeMap::new();
    for h in hosts {
        clusters.entry(h.cluster.as_str()).or_default().push(h);
    }
    for (cluster, nodes) in &clusters {
        let reachable: Vec<&&HostReport> = nodes
            .iter()
            .filter(|h| h.status != HostStatus::Failed && h.carbonio_hostname.is_some())
            .collect();
        let Some(executor) = reachable.first() else {
            continue;
        };
        // MTA nodes whose policy spawn user is missing block the guarded controls.
        let spawn_blockers: Vec<String> = reachable
            .iter()
            .filter(|h| {
                h.findings
                    .iter()
                    .any(|f| f.id == SPAWN_USER_FINDING && f.blocking)
            })
            .map(|h| h.name.clone())
            .collect();
        let mut global_changes = Vec::new();
        for c in playbook
            .controls
            .iter()
            .filter(|c| c.scope == Scope::Global)
        {
            // The cluster's global value is off when any node that the control concerns
            // reports it non-compliant on the global value itself.
            // Staged server entries make a node compliant while the global value is
            // still off: promotion is still due then.
            let off = reachable.iter().any(|h| {
                h.controls.iter().any(|r| {
                    r.id == c.id
                        && !matches!(r.verdict, Verdict::NotApplicable | Verdict::Error)
                        && !crate::carbonio::values::satisfies(&c.expect, &r.global_values)
                })
            });
            if !off {
                continue;
            }
            let waived_on = waived_on(nodes, &c.id);
            if !waived_on.is_empty() {
                out.waived.push(Blocked {
                    control: c.id.clone(),
                    cluster: cluster.to_string(),
                    because_of: waived_on.iter().map(|s| s.to_string()).collect(),
                    reason: format!(
                        "a waiver accepts its deviation on {} and the cluster shares one value",
                        waived_on.join(", ")
                    ),
                });
                continue;
            }
            if guarded_by_spawn_user(c) && !spawn_blockers.is_empty() {
                out.blocked.push(Blocked {
                    control: c.id.clone(),
                    cluster: cluster.to_string(),
                    because_of: spawn_blockers.clone(),
                    reason: format!(
                        "the policy service's spawn user is missing on {}: enabling it would make Postfix answer 451 4.3.5 to every recipient",
                        spawn_blockers.join(", ")
                    ),
                });
                continue;
            }
            global_changes.push(Change {
                control: c.id.clone(),
                attr: c.attr.clone(),
                args: change_args(&["mcf"], c),
                restart: c.restart,
                expect: None,
            });
        }
        if !global_changes.is_empty() {
            out.global.insert(
                cluster.to_string(),
                NodeBatch {
                    node: executor.name.clone(),
                    changes: global_changes,
                },
            );
        }
        for h in &reachable {
            let server_name = h.carbonio_hostname.clone().unwrap_or_default();
            let mut changes = Vec::new();
            for c in &playbook.controls {
                let Some(r) = h.controls.iter().find(|r| r.id == c.id) else {
                    continue;
                };
                let blocked = guarded_by_spawn_user(c) && !spawn_blockers.is_empty();
                // An accepted deviation on this very node: its report says so already.
                if r.is_waived() && c.scope == Scope::Server {
                    continue;
                }
                match (r.verdict, c.scope) {
                    (Verdict::NonCompliant, Scope::Server) if !blocked => changes.push(Change {
                        control: c.id.clone(),
                        attr: c.attr.clone(),
                        args: change_args(&["ms", &server_name], c),
                        restart: c.restart,
                        expect: None,
                    }),
                    (Verdict::Masked | Verdict::NonCompliant, Scope::Server) if blocked => {
                        out.blocked.push(Blocked {
                            control: c.id.clone(),
                            cluster: cluster.to_string(),
                            because_of: spawn_blockers.clone(),
                            reason: "the policy service's spawn user is missing".into(),
                        })
                    }
                    _ => {}
                }
            }
            if !changes.is_empty() {
                out.server.insert(
                    h.name.clone(),
                    NodeBatch {
                        node: h.name.clone(),
                        changes,
                    },
                );
            }
        }
    }
    out
}

/// Every node of a cluster where a change was blocked gets a finding that says so.
pub fn annotate_blocked(hosts: &mut [HostReport], plan: &ChangePlan) {
    for b in &plan.blocked {
        for h in hosts.iter_mut().filter(|h| h.cluster == b.cluster) {
            h.add_finding(Finding {
                id: format!("{}-BLOCKED", b.control),
                severity: "high".into(),
                blocking: true,
                message: format!(
                    "{} is not changed in cluster `{}`: {}",
                    b.control, b.cluster, b.reason
                ),
                evidence: format!("blocking node(s): {}", b.because_of.join(", ")),
                hint: "fix the spawn user on the named node(s), then run apply again".into(),
            });
        }
    }
    // A waiver on one host holds a global value for its whole cluster: the other hosts
    // that still deviate learn why apply leaves them so.
    for w in &plan.waived {
        for h in hosts.iter_mut().filter(|h| h.cluster == w.cluster) {
            let deviates = h.controls.iter().any(|r| {
                r.id == w.control
                    && !r.is_waived()
                    && matches!(r.verdict, Verdict::NonCompliant | Verdict::Masked)
            });
            if !deviates {
                continue;
            }
            h.add_finding(Finding {
                id: format!("{}-WAIVED-IN-CLUSTER", w.control),
                severity: "low".into(),
                blocking: false,
                message: format!(
                    "{} is not changed in cluster `{}`: {}",
                    w.control, w.cluster, w.reason
                ),
                evidence: format!("waived on: {}", w.because_of.join(", ")),
                hint: "waive it for the cluster, or end the waiver, to make the cluster agree"
                    .into(),
            });
        }
    }
}

/// The ProvUtil batch for a node's changes, followed by the reads that verify them
/// (one JVM for both). Returns the batch and the number of change lines.
pub fn batch_with_readback(
    batch: &NodeBatch,
    server_name: &str,
) -> Result<(Batch, Vec<(String, bool)>), BatchValueError> {
    let mut b = Batch::new();
    let mut reads = Vec::new();
    for c in &batch.changes {
        b.push(&c.args)?;
    }
    for c in &batch.changes {
        let on_server = c.args.first().map(String::as_str) == Some("ms");
        if on_server {
            // `ms SERVER …`: a staging or promotion batch names other servers than the
            // one it runs on.
            let server = c.args.get(1).map(String::as_str).unwrap_or(server_name);
            b.push(&["gs", "-e", server, &c.attr])?;
        } else {
            b.push(&["gcf", &c.attr])?;
        }
        reads.push((c.attr.clone(), on_server));
    }
    Ok((b, reads))
}
