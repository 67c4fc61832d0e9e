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
// long: longer than the usual ~120 lines on purpose: one pass per cluster, deciding its global
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

/// Case tables: each row is a cluster's host reports (as a check wrote them) and the
/// commands, blocks and waivers the plan must hold for them, one line each.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::Severity;
    use crate::report::model::{ControlResult, WaiverRef};
    use crate::report::sample;
    use test_case::test_case;

    const ATTR: &str = "zimbraMtaRestriction";

    fn control(scope: Scope, expect: Expectation, guarded: bool) -> Control {
        Control {
            id: "C-1".into(),
            title: "a control".into(),
            attr: ATTR.into(),
            scope,
            expect,
            severity: Severity::High,
            restart: true,
            precondition: guarded.then_some(Precondition::PolicySpawnUser),
            rationale: String::new(),
            remediation: String::new(),
        }
    }

    fn contains(v: &str) -> Expectation {
        Expectation::Contains(v.into())
    }

    fn playbook(controls: Vec<Control>) -> Playbook {
        Playbook {
            controls,
            probes: Vec::new(),
            ..crate::playbook::load_default()
        }
    }

    /// How a host came out of the check.
    #[derive(Clone, Copy)]
    enum Up {
        Yes,
        Failed,
        /// Reached, but no Carbonio server name was read.
        Nameless,
    }

    /// One host's report for control `C-1`.
    #[derive(Clone, Copy)]
    struct H {
        name: &'static str,
        cluster: &'static str,
        up: Up,
        verdict: Verdict,
        global: &'static [&'static str],
        /// `Some(expired)`: a waiver names the deviation.
        waiver: Option<bool>,
        /// Carries a blocking PRE-POLICY-SPAWN-USER finding.
        spawn_blocker: bool,
    }

    /// A reachable host in cluster `eu` whose control is non-compliant on the global
    /// value `a`.
    const fn h(name: &'static str) -> H {
        H {
            name,
            cluster: "eu",
            up: Up::Yes,
            verdict: Verdict::NonCompliant,
            global: &["a"],
            waiver: None,
            spawn_blocker: false,
        }
    }

    fn report(h: &H) -> HostReport {
        let status = match h.up {
            Up::Failed => HostStatus::Failed,
            _ => HostStatus::Drift,
        };
        let mut r = sample::host(h.name, h.cluster, status);
        if let Up::Nameless = h.up {
            r.carbonio_hostname = None;
        }
        let mut c: ControlResult = sample::control("C-1", h.verdict, "contains b", "a");
        c.attr = ATTR.into();
        c.global_values = h.global.iter().map(|s| s.to_string()).collect();
        c.waiver = h.waiver.map(|expired| WaiverRef {
            justification: "accepted".into(),
            expires: "2099-12-31".into(),
            source: "waivers.toml:1".into(),
            scope: format!("host {}", h.name),
            approved_by: None,
            expired,
        });
        r.controls = vec![c];
        if h.spawn_blocker {
            r.findings.push(Finding {
                id: SPAWN_USER_FINDING.into(),
                severity: "critical".into(),
                blocking: true,
                message: "spawn user missing".into(),
                evidence: String::new(),
                hint: String::new(),
            });
        }
        r
    }

    /// The plan, one line per batch change, block and waiver.
    fn lines(p: &ChangePlan) -> Vec<String> {
        let batch = |kind: &str, key: &str, b: &NodeBatch| {
            b.changes
                .iter()
                .map(|c| format!("{kind} {key} on {}: {}", b.node, c.args.join(" ")))
                .collect::<Vec<_>>()
        };
        let mut out: Vec<String> = Vec::new();
        for (cluster, b) in &p.global {
            out.extend(batch("global", cluster, b));
        }
        for (node, b) in &p.server {
            out.extend(batch("server", node, b));
        }
        for b in &p.blocked {
            out.push(format!(
                "blocked {} in {} by {}",
                b.control,
                b.cluster,
                b.because_of.join(",")
            ));
        }
        for w in &p.waived {
            out.push(format!(
                "waived {} in {} on {}",
                w.control,
                w.cluster,
                w.because_of.join(",")
            ));
        }
        out
    }

    fn plan_for(c: Control, hosts: &[H]) -> Vec<String> {
        let reports: Vec<HostReport> = hosts.iter().map(report).collect();
        lines(&plan(&playbook(vec![c]), &reports))
    }

    // --- global-scope controls: once per cluster, on its first reachable node ---

    #[test_case(&[h("mx1"), h("mx2")] => vec!["global eu on mx1: mcf +zimbraMtaRestriction b"]; "off: one mcf on the first node")]
    #[test_case(&[H { verdict: Verdict::Compliant, global: &["b"], ..h("mx1") }] => Vec::<String>::new(); "compliant: nothing")]
    #[test_case(&[H { up: Up::Failed, ..h("mx1") }, h("mx2")] => vec!["global eu on mx2: mcf +zimbraMtaRestriction b"]; "a failed first node does not execute")]
    #[test_case(&[H { up: Up::Nameless, ..h("mx1") }, h("mx2")] => vec!["global eu on mx2: mcf +zimbraMtaRestriction b"]; "a node without a server name does not execute")]
    #[test_case(&[H { up: Up::Failed, ..h("mx1") }] => Vec::<String>::new(); "no reachable node: nothing")]
    #[test_case(&[H { verdict: Verdict::Compliant, ..h("mx1") }] => vec!["global eu on mx1: mcf +zimbraMtaRestriction b"]; "staged server entries: promotion still due")]
    #[test_case(&[H { verdict: Verdict::NotApplicable, ..h("mx1") }] => Vec::<String>::new(); "not applicable: no vote")]
    #[test_case(&[H { verdict: Verdict::Error, ..h("mx1") }] => Vec::<String>::new(); "undecided: no vote")]
    #[test_case(&[h("mx1"), H { cluster: "us", ..h("mx9") }] => vec!["global eu on mx1: mcf +zimbraMtaRestriction b", "global us on mx9: mcf +zimbraMtaRestriction b"]; "one mcf per cluster")]
    #[test_case(&[h("mx1"), H { waiver: Some(false), ..h("mx2") }] => vec!["waived C-1 in eu on mx2"]; "a live waiver on one host holds the cluster")]
    #[test_case(&[h("mx1"), H { waiver: Some(true), ..h("mx2") }] => vec!["global eu on mx1: mcf +zimbraMtaRestriction b"]; "an expired waiver holds nothing")]
    #[test_case(&[h("mx1"), H { waiver: Some(false), up: Up::Failed, ..h("mx2") }] => vec!["waived C-1 in eu on mx2"]; "a waiver on an unreachable host still holds the cluster")]
    fn global_scope(hosts: &[H]) -> Vec<String> {
        plan_for(control(Scope::Global, contains("b"), false), hosts)
    }

    #[test_case(true, &[h("mx1"), H { spawn_blocker: true, ..h("mx2") }] => vec!["blocked C-1 in eu by mx2"]; "guarded: a spawn-user blocker stops it")]
    #[test_case(false, &[h("mx1"), H { spawn_blocker: true, ..h("mx2") }] => vec!["global eu on mx1: mcf +zimbraMtaRestriction b"]; "unguarded: no effect")]
    #[test_case(true, &[h("mx1"), H { spawn_blocker: true, up: Up::Failed, ..h("mx2") }] => vec!["global eu on mx1: mcf +zimbraMtaRestriction b"]; "a failed node's findings do not block")]
    #[test_case(true, &[h("mx1"), H { spawn_blocker: true, waiver: Some(false), ..h("mx2") }] => vec!["waived C-1 in eu on mx2"]; "a waiver is reported before a block")]
    fn global_guarded(guarded: bool, hosts: &[H]) -> Vec<String> {
        plan_for(control(Scope::Global, contains("b"), guarded), hosts)
    }

    // --- server-scope controls: per node ---

    #[test_case(&[h("mx1"), H { verdict: Verdict::Compliant, ..h("mx2") }] => vec!["server mx1 on mx1: ms mx1.acme.example +zimbraMtaRestriction b"]; "non-compliant node only")]
    #[test_case(&[H { verdict: Verdict::Masked, ..h("mx1") }] => Vec::<String>::new(); "masked is stage's business")]
    #[test_case(&[H { waiver: Some(false), ..h("mx1") }, h("mx2")] => vec!["server mx2 on mx2: ms mx2.acme.example +zimbraMtaRestriction b"]; "a waiver holds its own node only")]
    #[test_case(&[H { waiver: Some(true), ..h("mx1") }] => vec!["server mx1 on mx1: ms mx1.acme.example +zimbraMtaRestriction b"]; "an expired waiver holds nothing")]
    #[test_case(&[H { up: Up::Failed, ..h("mx1") }] => Vec::<String>::new(); "a failed node gets no change")]
    fn server_scope(hosts: &[H]) -> Vec<String> {
        plan_for(control(Scope::Server, contains("b"), false), hosts)
    }

    #[test_case(&[h("mx1"), H { spawn_blocker: true, verdict: Verdict::Compliant, ..h("mx2") }] => vec!["blocked C-1 in eu by mx2"]; "non-compliant elsewhere in the cluster: blocked")]
    #[test_case(&[H { verdict: Verdict::Masked, ..h("mx1") }, H { spawn_blocker: true, verdict: Verdict::Compliant, ..h("mx2") }] => vec!["blocked C-1 in eu by mx2"]; "masked: blocked too")]
    #[test_case(&[h("mx1"), H { cluster: "us", spawn_blocker: true, verdict: Verdict::Compliant, ..h("mx9") }] => vec!["server mx1 on mx1: ms mx1.acme.example +zimbraMtaRestriction b"]; "a blocker in another cluster does not count")]
    fn server_guarded(hosts: &[H]) -> Vec<String> {
        plan_for(control(Scope::Server, contains("b"), true), hosts)
    }

    /// Multi-valued attributes change by `+`/`-`, never by replacement.
    #[test_case(Expectation::Equals("TRUE".into()) => vec!["mcf", ATTR, "TRUE"]; "equals sets")]
    #[test_case(contains("b") => vec!["mcf", "+zimbraMtaRestriction", "b"]; "contains adds")]
    #[test_case(Expectation::Absent("b".into()) => vec!["mcf", "-zimbraMtaRestriction", "b"]; "absent removes")]
    fn args(expect: Expectation) -> Vec<String> {
        change_args(&["mcf"], &control(Scope::Global, expect, false))
    }

    /// What the spawn-user guard covers: the precondition, or any value that would make
    /// Postfix consult the policy service.
    #[test_case(contains("b"), false => false; "plain")]
    #[test_case(contains("b"), true => true; "precondition")]
    #[test_case(contains(POLICY_RESTRICTION), false => true; "adds the policy restriction")]
    #[test_case(Expectation::Equals(format!("reject_non_fqdn_recipient, {POLICY_RESTRICTION}")), false => true; "sets a value holding it")]
    #[test_case(Expectation::Absent(POLICY_RESTRICTION.into()), false => false; "removing it is safe")]
    fn guard(expect: Expectation, precondition: bool) -> bool {
        guarded_by_spawn_user(&control(Scope::Global, expect, precondition))
    }

    /// Blocks land on every node of the cluster; a cluster-wide waiver explains itself to
    /// the other nodes that still deviate, not to the waived one nor a compliant one.
    #[test]
    fn annotations() {
        let hosts = [
            h("mx1"),
            H {
                waiver: Some(false),
                ..h("mx2")
            },
            H {
                verdict: Verdict::Compliant,
                global: &["b"],
                ..h("mx3")
            },
            H {
                cluster: "us",
                ..h("mx9")
            },
        ];
        let mut reports: Vec<HostReport> = hosts.iter().map(report).collect();
        let plan = ChangePlan {
            blocked: vec![Blocked {
                control: "C-2".into(),
                cluster: "eu".into(),
                because_of: vec!["mx3".into()],
                reason: "the policy service's spawn user is missing".into(),
            }],
            waived: vec![Blocked {
                control: "C-1".into(),
                cluster: "eu".into(),
                because_of: vec!["mx2".into()],
                reason: "a waiver accepts its deviation on mx2".into(),
            }],
            ..ChangePlan::default()
        };
        annotate_blocked(&mut reports, &plan);
        annotate_blocked(&mut reports, &plan);
        let ids: Vec<(String, Vec<String>)> = reports
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.findings.iter().map(|f| f.id.clone()).collect(),
                )
            })
            .collect();
        let want = |n: &str, f: &[&str]| (n.to_string(), f.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            ids,
            vec![
                want("mx1", &["C-2-BLOCKED", "C-1-WAIVED-IN-CLUSTER"]),
                want("mx2", &["C-2-BLOCKED"]),
                want("mx3", &["C-2-BLOCKED"]),
                want("mx9", &[]),
            ],
            "once per host, even when annotated twice"
        );
        let blocked = &reports[0].findings[0];
        assert_eq!(
            (
                blocked.severity.as_str(),
                blocked.blocking,
                blocked.message.as_str()
            ),
            (
                "high",
                true,
                "C-2 is not changed in cluster `eu`: the policy service's spawn user is missing"
            )
        );
        let waived = &reports[0].findings[1];
        assert_eq!(
            (
                waived.severity.as_str(),
                waived.blocking,
                waived.evidence.as_str()
            ),
            ("low", false, "waived on: mx2")
        );
    }

    #[test]
    fn waived_clusters_and_hosts() {
        let reports: Vec<HostReport> = [
            h("mx1"),
            H {
                waiver: Some(false),
                ..h("mx2")
            },
            H {
                cluster: "us",
                waiver: Some(true),
                ..h("mx9")
            },
        ]
        .iter()
        .map(report)
        .collect();
        assert_eq!(
            waived_in_clusters(&reports),
            BTreeSet::from([("eu".to_string(), "C-1".to_string())])
        );
        let refs: Vec<&HostReport> = reports.iter().collect();
        assert_eq!(waived_on(&refs, "C-1"), vec!["mx2"]);
        assert!(waived_on(&refs, "C-2").is_empty());
    }

    /// Changes first, then one read-back per change: `gcf` for a global change, `gs -e`
    /// of the server the `ms` names (a staging batch names other servers).
    #[test]
    fn batch_reads_back_what_it_changed() {
        let change = |args: &[&str]| Change {
            control: "C-1".into(),
            attr: ATTR.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            restart: true,
            expect: None,
        };
        let batch = NodeBatch {
            node: "mx1".into(),
            changes: vec![
                change(&["mcf", "+zimbraMtaRestriction", "b"]),
                change(&["ms", "mx2.acme.example", "+zimbraMtaRestriction", "b"]),
            ],
        };
        let (b, reads) = batch_with_readback(&batch, "mx1.acme.example").unwrap();
        assert_eq!(
            reads,
            vec![(ATTR.to_string(), false), (ATTR.to_string(), true)]
        );
        assert_eq!(
            b.lines(),
            vec![
                "mcf +zimbraMtaRestriction b",
                "ms mx2.acme.example +zimbraMtaRestriction b",
                "gcf zimbraMtaRestriction",
                "gs -e mx2.acme.example zimbraMtaRestriction",
            ]
        );
    }
}
