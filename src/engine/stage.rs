//! Staging (pure): how apply makes a cluster-wide (global) change reach one MTA at a time.
//!
//! zmconfigd on every MTA polls LDAP and applies a changed global value by itself within a
//! minute, reloading Postfix on legacy nodes (docs/carbonio.md §3). A `mcf` is therefore live
//! on the whole cluster before any canary has proven it. Server-level values win over
//! global ones in zmconfigd's lookup (§0.4, §1.5), so apply writes the desired values on
//! the servers of one rollout batch only (`ms NODE …`), reloads and gates them, and writes
//! the global config (`mcf`) only once every MTA of the cluster holds them and passed its
//! gate: promotion, which also removes the temporary server entries in the same batch, so
//! the effective values are identical before and after it and zmconfigd has nothing to do.
//!
//! A server-level multi-valued value replaces the inherited list (§0.8): a staged list is
//! the FULL desired list, the global one in its stored order plus the added value. Three
//! cases of a server entry, each reported:
//! - no server value: the staged entry is temporary, removed at promotion;
//! - the server's own multi-valued list (its own RBLs): the value is added to it, a
//!   permanent edit ([`EntryKind::ListExtended`]);
//! - a single-valued override that contradicts the desired value: not touched
//!   ([`Masked`]), unless the operator asks to replace it ([`EntryKind::OverrideReplaced`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::carbonio::gather::NodeFacts;
use crate::carbonio::values;
use crate::engine::gather::HostGather;
use crate::playbook::{Control, Expectation, Playbook, Scope};
use crate::report::model::{Finding, HeldBy, HostReport, HostStatus, Verdict};

/// The finding `check` (and apply) reports for a staged entry that no run promoted yet.
pub const STAGED_FINDING: &str = "STAGED";
/// The finding for a single-valued server override that keeps a node off the desired value.
pub const MASKED_FINDING: &str = "OVERRIDE-MASKS-GLOBAL";
/// The inventory var that pins a node to the old values (`pin = "true"`): it is not
/// staged, and promotion writes a permanent server entry with the old values for it.
pub const PIN_VAR: &str = "pin";
/// The finding a pinned node carries.
pub const PINNED_FINDING: &str = "PINNED";

/// What kind of server-entry edit a staged value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// The server had no value of its own: written for the rollout, removed at promotion.
    Temporary,
    /// The server's own multi-valued list, with the desired value added (or removed): a
    /// permanent, journaled edit ("server list extended"); rollback reverses it.
    ListExtended,
    /// A single-valued override replaced by the desired value (`--replace-overrides`):
    /// rollback restores it, promotion removes it.
    OverrideReplaced,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Temporary => "temporary",
            EntryKind::ListExtended => "server list extended",
            EntryKind::OverrideReplaced => "server override replaced",
        }
    }
}

/// One staged value on one server entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageEntry {
    pub control: String,
    pub attr: String,
    pub kind: EntryKind,
    /// The server entry's own values before (empty: none).
    pub before: Vec<String>,
    /// What the server entry holds once staged.
    pub staged: Vec<String>,
    /// For [`EntryKind::ListExtended`]: the one value added (`true`) or removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<(bool, String)>,
    /// Already in LDAP (left by an earlier run that did not promote): not written again.
    pub present: bool,
    /// Whether the running MTA needs a reload for it (the control's `restart`).
    pub restart: bool,
}

impl StageEntry {
    /// ProvUtil arguments that write it on `server`.
    pub fn stage_args(&self, server: &str) -> Vec<String> {
        self.delta_args(server, true)
            .unwrap_or_else(|| set_args(server, &self.attr, &self.staged))
    }

    /// ProvUtil arguments that restore the entry as it was before.
    pub fn rollback_args(&self, server: &str) -> Vec<String> {
        self.delta_args(server, false)
            .unwrap_or_else(|| set_args(server, &self.attr, &self.before))
    }

    /// A list extension's one-value edit (`ms SERVER +attr v`), applied `forward` or
    /// undone; `None` for the other kinds, which set the whole list.
    fn delta_args(&self, server: &str, forward: bool) -> Option<Vec<String>> {
        match (&self.kind, &self.delta) {
            (EntryKind::ListExtended, Some((add, v))) => Some(vec![
                "ms".into(),
                server.into(),
                format!("{}{}", if *add == forward { '+' } else { '-' }, self.attr),
                v.clone(),
            ]),
            _ => None,
        }
    }

    /// ProvUtil arguments that promotion runs after `mcf`: removing a temporary or
    /// replaced entry (the node inherits the same values from the global config now).
    /// A list extension stays: it is the server's own list.
    pub fn promote_args(&self, server: &str) -> Option<Vec<String>> {
        match self.kind {
            EntryKind::ListExtended => None,
            EntryKind::Temporary | EntryKind::OverrideReplaced if !self.staged.is_empty() => {
                Some(set_args(server, &self.attr, &[]))
            }
            EntryKind::Temporary | EntryKind::OverrideReplaced => None,
        }
    }

    /// The server entry's values after [`stage_args`](Self::stage_args) took.
    pub fn expect_staged(&self) -> &[String] {
        &self.staged
    }

    /// One line for reports and the journal.
    pub fn describe(&self) -> String {
        format!(
            "{} {} ({}): {} → {}",
            self.control,
            self.attr,
            self.kind.as_str(),
            values::render(&self.before),
            values::render(&self.staged)
        )
    }
}

/// `ms SERVER attr v1 attr v2 …`, or `ms SERVER attr ""` to remove the entry's values.
fn set_args(server: &str, attr: &str, list: &[String]) -> Vec<String> {
    let mut args = vec!["ms".to_string(), server.to_string()];
    if list.is_empty() {
        args.push(attr.to_string());
        args.push(String::new());
    }
    for v in list {
        args.push(attr.to_string());
        args.push(v.clone());
    }
    args
}

/// The full list a server entry must hold so that its effective value is the desired one
/// while the global config still holds `global` (in its stored order); `None` when no
/// server value can express it (removing the global list's only value).
pub fn staged_list(expect: &Expectation, global: &[String]) -> Option<Vec<String>> {
    let list = match expect {
        Expectation::Equals(v) => vec![v.clone()],
        Expectation::Contains(v) => {
            let mut l = global.to_vec();
            if !l.iter().any(|x| x == v) {
                l.push(v.clone());
            }
            l
        }
        Expectation::Absent(v) => global.iter().filter(|x| *x != v).cloned().collect(),
    };
    (!list.is_empty()).then_some(list)
}

/// A node whose own single-valued override keeps it off the desired value (not touched).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Masked {
    pub control: String,
    pub attr: String,
    pub server_values: Vec<String>,
    pub reason: String,
}

/// What staging will do on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStage {
    /// The Carbonio server name (`ms` takes it).
    pub server: String,
    pub entries: Vec<StageEntry>,
    pub masked: Vec<Masked>,
}

impl NodeStage {
    /// Entries this run writes (not already in LDAP).
    pub fn to_write(&self) -> impl Iterator<Item = &StageEntry> {
        self.entries.iter().filter(|e| !e.present)
    }

    /// Whether anything of the node's staging needs the running MTA to reload.
    pub fn needs_reload(&self) -> bool {
        self.entries.iter().any(|e| e.restart)
    }
}

/// The staging plan of a fleet: per node (by host name), what its server entry gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagePlan {
    pub nodes: BTreeMap<String, NodeStage>,
}

/// Whether `c` is staged per server (global scope); server-scope controls are written on
/// their server directly and need no promotion.
fn staged_control(c: &Control) -> bool {
    c.scope == Scope::Global
}

/// Plans the staging of every reachable MTA from a check's verdicts. `blocked` lists the
/// (cluster, control) pairs the change plan does not change (the spawn-user guard);
/// `replace_overrides` replaces single-valued overrides instead of reporting them.
// long: longer than the usual ~120 lines on purpose: one pass per cluster, deciding its
// blockers, its global changes and every MTA's entries from the same readings.
pub fn plan(
    playbook: &Playbook,
    hosts: &[HostReport],
    blocked: &[(String, String)],
    replace_overrides: bool,
) -> StagePlan {
    let mut out = StagePlan::default();
    let waived = crate::engine::changes::waived_in_clusters(hosts);
    for h in hosts {
        if h.status == HostStatus::Failed || h.is_mta != Some(true) {
            continue;
        }
        let Some(server) = h.carbonio_hostname.clone() else {
            continue;
        };
        let mut node = NodeStage {
            server,
            ..NodeStage::default()
        };
        for c in playbook.controls.iter().filter(|c| staged_control(c)) {
            if blocked
                .iter()
                .any(|(cl, id)| *cl == h.cluster && *id == c.id)
            {
                continue;
            }
            // Waived in the cluster: the global value is not changed, so nothing is staged
            // towards it (`changes::waived_in_clusters`).
            if waived.contains(&(h.cluster.clone(), c.id.clone())) {
                continue;
            }
            let Some(r) = h.controls.iter().find(|r| r.id == c.id) else {
                continue;
            };
            if matches!(r.verdict, Verdict::NotApplicable | Verdict::Error) {
                continue;
            }
            let global_ok = values::satisfies(&c.expect, &r.global_values);
            let staged = staged_list(&c.expect, &r.global_values);
            let multi = !matches!(c.expect, Expectation::Equals(_));
            match &r.server_values {
                None if global_ok => {}
                None => match staged {
                    Some(staged) => node.entries.push(StageEntry {
                        control: c.id.clone(),
                        attr: c.attr.clone(),
                        kind: EntryKind::Temporary,
                        before: Vec::new(),
                        staged,
                        delta: None,
                        present: false,
                        restart: c.restart,
                    }),
                    None => node.masked.push(Masked {
                        control: c.id.clone(),
                        attr: c.attr.clone(),
                        server_values: Vec::new(),
                        reason: "no server-level value can stage it (it would empty the list)"
                            .into(),
                    }),
                },
                Some(own) if values::satisfies(&c.expect, own) => {
                    // Left by an earlier run: exactly the list staging writes, while the
                    // global value is still off. Otherwise the server's own (compliant)
                    // entry, which promotion does not concern.
                    if !global_ok && staged.as_ref() == Some(own) {
                        node.entries.push(StageEntry {
                            control: c.id.clone(),
                            attr: c.attr.clone(),
                            kind: EntryKind::Temporary,
                            before: Vec::new(),
                            staged: own.clone(),
                            delta: None,
                            present: true,
                            restart: c.restart,
                        });
                    }
                }
                Some(own) if multi => {
                    let (add, v) = match &c.expect {
                        Expectation::Contains(v) => (true, v.clone()),
                        Expectation::Absent(v) | Expectation::Equals(v) => (false, v.clone()),
                    };
                    let staged: Vec<String> = if add {
                        own.iter().cloned().chain(std::iter::once(v.clone())).collect()
                    } else {
                        own.iter().filter(|x| **x != v).cloned().collect()
                    };
                    node.entries.push(StageEntry {
                        control: c.id.clone(),
                        attr: c.attr.clone(),
                        kind: EntryKind::ListExtended,
                        before: own.clone(),
                        staged,
                        delta: Some((add, v)),
                        present: false,
                        restart: c.restart,
                    });
                }
                // Where the global value is already right, the override is removed (the
                // node inherits it; nothing to promote); otherwise replaced by the
                // desired value until promotion.
                Some(own) if replace_overrides => node.entries.push(StageEntry {
                    control: c.id.clone(),
                    attr: c.attr.clone(),
                    kind: EntryKind::OverrideReplaced,
                    before: own.clone(),
                    staged: if global_ok {
                        Vec::new()
                    } else {
                        staged.unwrap_or_default()
                    },
                    delta: None,
                    present: false,
                    restart: c.restart,
                }),
                Some(own) => node.masked.push(Masked {
                    control: c.id.clone(),
                    attr: c.attr.clone(),
                    server_values: own.clone(),
                    reason: format!(
                        "server override masks global: {} = {} on this server's own entry (apply --replace-overrides replaces it)",
                        c.attr,
                        values::render(own)
                    ),
                }),
            }
        }
        if !node.entries.is_empty() || !node.masked.is_empty() {
            out.nodes.insert(h.name.clone(), node);
        }
    }
    out
}

/// Findings `check` adds for what staging left or cannot do: a staged entry no run
/// promoted (with the tool command that finishes it), and a masking override.
pub fn annotate(hosts: &mut [HostReport], plan: &StagePlan) {
    for h in hosts.iter_mut() {
        let Some(node) = plan.nodes.get(&h.name) else {
            continue;
        };
        let present: Vec<String> = node
            .entries
            .iter()
            .filter(|e| e.present)
            .map(StageEntry::describe)
            .collect();
        if !present.is_empty() {
            h.add_finding(Finding {
                id: STAGED_FINDING.into(),
                severity: "medium".into(),
                blocking: false,
                message: "staged on this server by an apply that did not promote it: the cluster's global config still holds the old value".into(),
                evidence: present.join("; "),
                hint: "run `carbonio-fleet apply --resume` (or apply) to gate it and promote the cluster; `carbonio-fleet apply --unstage` removes it".into(),
            });
            if h.status == HostStatus::Compliant {
                h.status = HostStatus::Drift;
            }
        }
        for m in &node.masked {
            h.add_finding(Finding {
                id: format!("{}-{MASKED_FINDING}", m.control),
                severity: "high".into(),
                blocking: true,
                message: m.reason.clone(),
                evidence: format!("gs -e {} {} = {}", node.server, m.attr, values::render(&m.server_values)),
                hint: "promotion waits for this server; `apply --replace-overrides` stages the desired value over it".into(),
            });
        }
    }
}

/// How one MTA of a cluster stands for its promotion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// It holds the staged values and passed its gate (in this run or, for `--resume`,
    /// a journaled earlier one), or it already runs the desired values on its own entry.
    Ready,
    /// It keeps the promotion back, with why.
    Holds(String),
}

/// What promotion of one cluster knows about its MTAs.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// The cluster's MTAs as LDAP lists them (`gas mta`), lower-case.
    pub ldap_mtas: Vec<String>,
    /// Per server (lower-case): the inventory host of this run and how it stands.
    pub in_run: BTreeMap<String, (String, Standing)>,
    /// Hosts of the cluster that could not be gathered (their server name is unknown).
    pub unreachable: Vec<String>,
    /// `--limit` (or `--shard`) left some of the inventory's hosts out of this run.
    pub limited: bool,
}

impl ClusterView {
    /// What a cluster's gathers say: LDAP's MTA list, the hosts that could not be read,
    /// whether the inventory has hosts of it this run left out; and the gathered MTAs
    /// (host, facts) for the caller to judge into [`ClusterView::in_run`].
    pub fn gathered<'a>(
        members: &[&'a HostGather],
        in_inventory: usize,
    ) -> (ClusterView, Vec<(&'a HostGather, &'a NodeFacts)>) {
        let mut view = ClusterView {
            limited: in_inventory > members.len(),
            ..ClusterView::default()
        };
        let mut mtas = Vec::new();
        for g in members {
            let Ok(ok) = &g.outcome else {
                view.unreachable.push(g.host.name.clone());
                continue;
            };
            view.ldap_mtas.extend(ok.facts.mta_servers.iter().cloned());
            if ok.facts.is_mta() {
                mtas.push((*g, &ok.facts));
            }
        }
        view.ldap_mtas.sort();
        view.ldap_mtas.dedup();
        (view, mtas)
    }

    /// Records how the MTA `facts` (inventory host `host`) stands.
    pub fn judge(&mut self, host: &str, facts: &NodeFacts, standing: Standing) {
        self.in_run.insert(
            facts.hostname.to_ascii_lowercase(),
            (host.to_string(), standing),
        );
    }
}

/// Every reason the cluster may not be promoted; empty: promote.
pub fn holds(view: &ClusterView) -> Vec<HeldBy> {
    let mut out = Vec::new();
    if view.ldap_mtas.is_empty() {
        out.push(HeldBy {
            server: None,
            host: None,
            reason: "LDAP's list of the cluster's MTAs (`zmprov -l gas mta`) could not be read"
                .into(),
        });
    }
    // An unreachable host's server name is unknown; where LDAP lists an MTA by the
    // host's own name (the usual FQDN inventory), they are the same.
    let mut unreachable_servers = Vec::new();
    for h in &view.unreachable {
        let server = view
            .ldap_mtas
            .iter()
            .find(|s| s.eq_ignore_ascii_case(h))
            .cloned();
        unreachable_servers.extend(server.clone());
        out.push(HeldBy {
            server,
            host: Some(h.clone()),
            reason: "unreachable: not gathered in this run".into(),
        });
    }
    for s in &view.ldap_mtas {
        if unreachable_servers.contains(s) {
            continue;
        }
        match view.in_run.get(s) {
            Some((_, Standing::Ready)) => {}
            Some((host, Standing::Holds(why))) => out.push(HeldBy {
                server: Some(s.clone()),
                host: Some(host.clone()),
                reason: why.clone(),
            }),
            None => out.push(HeldBy {
                server: Some(s.clone()),
                host: None,
                reason: if view.limited {
                    "an MTA of this cluster in LDAP that this run did not include (outside --limit, or not in the inventory)".into()
                } else if !view.unreachable.is_empty() {
                    format!(
                        "an MTA of this cluster in LDAP that no reachable host of this run is (perhaps {})",
                        view.unreachable.join(", ")
                    )
                } else {
                    "an MTA of this cluster in LDAP that the inventory does not have".into()
                },
            }),
        }
    }
    // The inventory puts a host in this cluster that LDAP does not list as its MTA: the
    // inventory's cluster is wrong (or the node's mta service is off in LDAP).
    for (server, (host, _)) in &view.in_run {
        if !view.ldap_mtas.is_empty() && !view.ldap_mtas.contains(server) {
            out.push(HeldBy {
                server: Some(server.clone()),
                host: Some(host.clone()),
                reason: "the inventory puts it in this cluster, but LDAP does not list it among the cluster's MTAs".into(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_staged_list_is_the_global_list_in_order_plus_the_value() {
        let g = v(&[
            "reject_invalid_helo_hostname",
            "reject_rbl_client zen.example",
        ]);
        assert_eq!(
            staged_list(
                &Expectation::Contains("check_policy_service unix:private/policy".into()),
                &g
            ),
            Some(v(&[
                "reject_invalid_helo_hostname",
                "reject_rbl_client zen.example",
                "check_policy_service unix:private/policy"
            ]))
        );
        assert_eq!(
            staged_list(&Expectation::Equals("TRUE".into()), &v(&["FALSE"])),
            Some(v(&["TRUE"]))
        );
        assert_eq!(
            staged_list(&Expectation::Absent("a".into()), &v(&["a"])),
            None
        );
    }

    #[test]
    fn promotion_waits_for_every_mta_ldap_lists() {
        let mut view = ClusterView {
            ldap_mtas: v(&["mx1.a", "mx2.a", "mx3.a"]),
            ..ClusterView::default()
        };
        view.in_run
            .insert("mx1.a".into(), ("a1".into(), Standing::Ready));
        view.in_run.insert(
            "mx2.a".into(),
            ("a2".into(), Standing::Holds("failed its gate".into())),
        );
        let held = holds(&view);
        assert_eq!(held.len(), 2, "{held:?}");
        assert_eq!(held[0].host.as_deref(), Some("a2"));
        assert_eq!(held[1].server.as_deref(), Some("mx3.a"));
        assert!(
            held[1].reason.contains("does not have"),
            "{}",
            held[1].reason
        );
        view.limited = true;
        assert!(holds(&view)[1].reason.contains("--limit"));
        view.in_run
            .insert("mx2.a".into(), ("a2".into(), Standing::Ready));
        view.in_run
            .insert("mx3.a".into(), ("a3".into(), Standing::Ready));
        assert!(holds(&view).is_empty());
        // A host the inventory puts here that LDAP does not list holds it too.
        view.in_run
            .insert("mx9.b".into(), ("b9".into(), Standing::Ready));
        assert_eq!(holds(&view)[0].host.as_deref(), Some("b9"));
        view.in_run.remove("mx9.b");
        view.unreachable.push("a4".into());
        assert_eq!(
            holds(&view)[0].reason,
            "unreachable: not gathered in this run"
        );
        // LDAP lists it by the host's name: one entry, with its server.
        view.ldap_mtas.push("a4".into());
        let held = holds(&view);
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!(held[0].server.as_deref(), Some("a4"));
    }

    #[test]
    fn args_of_each_kind_stage_roll_back_and_promote() {
        let t = StageEntry {
            control: "BS-04".into(),
            attr: "zimbraMtaRestriction".into(),
            kind: EntryKind::Temporary,
            before: vec![],
            staged: v(&["a", "b"]),
            delta: None,
            present: false,
            restart: true,
        };
        assert_eq!(
            t.stage_args("mx1"),
            v(&[
                "ms",
                "mx1",
                "zimbraMtaRestriction",
                "a",
                "zimbraMtaRestriction",
                "b"
            ])
        );
        assert_eq!(
            t.rollback_args("mx1"),
            v(&["ms", "mx1", "zimbraMtaRestriction", ""])
        );
        assert_eq!(
            t.promote_args("mx1"),
            Some(v(&["ms", "mx1", "zimbraMtaRestriction", ""]))
        );
        let x = StageEntry {
            kind: EntryKind::ListExtended,
            before: v(&["rbl"]),
            staged: v(&["rbl", "b"]),
            delta: Some((true, "b".into())),
            ..t.clone()
        };
        assert_eq!(
            x.stage_args("mx1"),
            v(&["ms", "mx1", "+zimbraMtaRestriction", "b"])
        );
        assert_eq!(
            x.rollback_args("mx1"),
            v(&["ms", "mx1", "-zimbraMtaRestriction", "b"])
        );
        assert_eq!(x.promote_args("mx1"), None);
        let r = StageEntry {
            attr: "zimbraMtaEnableSmtpdPolicyd".into(),
            kind: EntryKind::OverrideReplaced,
            before: v(&["FALSE"]),
            staged: v(&["TRUE"]),
            delta: None,
            ..t
        };
        assert_eq!(
            r.rollback_args("mx1"),
            v(&["ms", "mx1", "zimbraMtaEnableSmtpdPolicyd", "FALSE"])
        );
    }
}
