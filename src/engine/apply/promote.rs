//! The end of a cluster's rollout: a node that failed its gate rolled back, and each
//! cluster's promotion (global config written, then the temporary server entries
//! removed) once every MTA LDAP lists passed, or the reason it is held.

use std::collections::{BTreeMap, BTreeSet};

use crate::carbonio::gather::NodeFacts;
use crate::engine::changes::{self, ChangePlan, NodeBatch};
use crate::engine::events::Events;
use crate::engine::gather::HostGather;
use crate::engine::journal::Journal;
use crate::engine::rollout::{NodeResult, NodeState, Outcome};
use crate::engine::run::Loaded;
use crate::engine::stage::{self, ClusterView, NodeStage, StageEntry, Standing};
use crate::inventory::Host;
use crate::playbook::Playbook;
use crate::report::model::{CommandRecord, HostError, PromotionRecord, RollbackRecord};
use crate::ssh::Session;

use super::execute::{NodeCtx, NodeRun, TaskEnv, entry_changes, restart_and_gate, run_batch};

/// Restores a node's server entry as it was before staging (one `zmprov` batch with
/// read-back, on its own session).
pub(super) async fn roll_back_entries(
    node: &NodeCtx,
    env: &TaskEnv,
) -> (CommandRecord, Result<(), String>) {
    let all: Vec<&StageEntry> = node.stage.entries.iter().collect();
    let batch = NodeBatch {
        node: node.host.name.clone(),
        changes: entry_changes(&node.stage.server, &all, true),
    };
    let (rec, res) = run_batch(
        &node.session,
        &node.host,
        &node.stage.server,
        &batch,
        (&env.playbook, &node.events),
        format!("roll back the staged entries of {}", node.stage.server),
    )
    .await;
    let _ = env.journal.record(
        &node.host.name,
        if res.is_ok() {
            "rolled-back"
        } else {
            "rollback-failed"
        },
        res.as_ref().err().map(String::as_str).unwrap_or(""),
    );
    (rec, res)
}

/// Rolls a node back: its entries restored, then reloaded and gated on the old values.
/// Returns the record, the commands, and whether the old values passed the gate.
pub(super) async fn roll_back(
    node: &NodeCtx,
    env: &TaskEnv,
) -> (RollbackRecord, Vec<CommandRecord>, bool) {
    let (rec, res) = roll_back_entries(node, env).await;
    let mut commands = vec![rec];
    if let Err(why) = res {
        return (
            RollbackRecord {
                ok: false,
                detail: format!("the entries could not be restored: {why}"),
                restart: None,
                gate: None,
            },
            commands,
            false,
        );
    }
    let mut run = restart_and_gate(node.rolled_back(), env.clone(), "rollback-").await;
    commands.append(&mut run.commands);
    let ok = matches!(run.result, NodeResult::Restarted);
    (
        RollbackRecord {
            ok,
            detail: if ok {
                "entries restored, reloaded, gate passed on the old values".into()
            } else {
                format!("entries restored; then {}", run.result)
            },
            restart: run.restart,
            gate: run.gate,
        },
        commands,
        ok,
    )
}

/// One attribute a pinned node keeps: (attr, its old values, the control).
pub(super) type PinnedAttr = (String, Vec<String>, String);

/// What promotion needs to know about one cluster.
pub(super) struct ClusterPromotion<'a> {
    pub(super) cluster: &'a str,
    /// The global changes (`mcf …`).
    pub(super) global: &'a NodeBatch,
    pub(super) view: ClusterView,
    /// Nodes whose entries promotion removes (server, entries), and a session to run on.
    pub(super) entries: Vec<(String, Vec<StageEntry>)>,
    /// Pinned nodes: a permanent entry with the old values is written for them before
    /// the global config changes.
    pub(super) pins: Vec<(String, Vec<PinnedAttr>)>,
    pub(super) exec: Option<(&'a Host, &'a Session, String)>,
}

/// Promotes one cluster, or says why not.
pub(super) async fn promote(
    p: ClusterPromotion<'_>,
    playbook: &Playbook,
    stopped: Option<String>,
    (journal, events): (&Journal, &Events),
) -> PromotionRecord {
    let mut rec = PromotionRecord {
        cluster: p.cluster.to_string(),
        state: String::new(),
        detail: String::new(),
        mtas: p.view.ldap_mtas.clone(),
        held_by: Vec::new(),
        ran_on: None,
        commands: Vec::new(),
    };
    if let Some(why) = stopped {
        rec.state = "not-promoted".into();
        rec.detail = format!(
            "the rollout stopped ({why}): the nodes that passed keep their staged entries, the global config is untouched"
        );
        return rec;
    }
    rec.held_by = stage::holds(&p.view);
    if !rec.held_by.is_empty() {
        rec.state = "promotion-held".into();
        rec.detail = format!(
            "{} MTA(s) of the cluster have not proven the staged values: the global config is untouched, the nodes that passed keep their staged entries",
            rec.held_by.len()
        );
        let _ = journal.record(p.cluster, "promotion-held", &rec.detail);
        return rec;
    }
    let Some((host, session, server)) = p.exec else {
        rec.state = "promotion-held".into();
        rec.detail = "no node of the cluster has an open session to promote on".into();
        return rec;
    };
    let pins = pin_changes(&p.pins, p.global);
    let pinned_lines = pins.len();
    let batch = NodeBatch {
        node: host.name.clone(),
        changes: promotion_changes(pins, p.global, &p.entries),
    };
    let _ = journal.record(p.cluster, "promotion-started", &host.name);
    let (cmd, res) = run_batch(
        session,
        host,
        &server,
        &batch,
        (playbook, events),
        format!(
            "promote cluster `{}`: global config, then remove the temporary server entries",
            p.cluster
        ),
    )
    .await;
    rec.ran_on = Some(host.name.clone());
    rec.commands.push(cmd);
    match res {
        Ok(()) => {
            rec.state = "promoted".into();
            let removed = batch.changes.len() - p.global.changes.len() - pinned_lines;
            rec.detail = promoted_detail(rec.mtas.len(), removed, &p.pins);
            let _ = journal.record(p.cluster, "promoted", &rec.detail);
        }
        Err(why) => {
            rec.state = "promotion-failed".into();
            rec.detail = why;
            let _ = journal.record(p.cluster, "promotion-failed", &rec.detail);
        }
    }
    rec
}

/// The `ms` lines that write each pinned node's old values on its own server entry,
/// each read back by the absence of the desired value there.
fn pin_changes(pins: &[(String, Vec<PinnedAttr>)], global: &NodeBatch) -> Vec<changes::Change> {
    let mut out = Vec::new();
    for (srv, attrs) in pins {
        for (attr, old, control) in attrs {
            // An unset old value cannot be pinned: a server entry cannot say "unset"
            // over a global value.
            if old.is_empty() {
                continue;
            }
            let desired = global.changes.iter().find(|c| &c.attr == attr);
            let mut args = vec!["ms".to_string(), srv.clone()];
            for v in old {
                args.push(attr.clone());
                args.push(v.clone());
            }
            out.push(changes::Change {
                control: control.clone(),
                attr: attr.clone(),
                args,
                restart: false,
                // Read back: the desired value is not on its entry.
                expect: desired
                    .and_then(|d| d.args.last())
                    .map(|v| crate::playbook::Expectation::Absent(v.clone())),
            });
        }
    }
    out
}

/// The promotion batch, in the order it must run: the pins (before the global config
/// changes under them), the global changes, then the removal of the staged entries.
fn promotion_changes(
    pins: Vec<changes::Change>,
    global: &NodeBatch,
    entries: &[(String, Vec<StageEntry>)],
) -> Vec<changes::Change> {
    let mut changes = pins;
    changes.extend(global.changes.iter().cloned());
    for (srv, entries) in entries {
        for e in entries {
            if let Some(args) = e.promote_args(srv) {
                changes.push(changes::Change {
                    control: e.control.clone(),
                    attr: e.attr.clone(),
                    args,
                    restart: false,
                    expect: None,
                });
            }
        }
    }
    changes
}

/// What a promoted cluster's record says: how many MTAs passed, how many temporary
/// entries were removed, and which nodes were pinned to the old values.
fn promoted_detail(mtas: usize, removed: usize, pins: &[(String, Vec<PinnedAttr>)]) -> String {
    let mut detail = format!(
        "every MTA of the cluster ({mtas}) passed its gate with the staged values: global config written, {removed} temporary server entr{} removed",
        if removed == 1 { "y" } else { "ies" }
    );
    if !pins.is_empty() {
        let names: Vec<&str> = pins.iter().map(|(s, _)| s.as_str()).collect();
        detail.push_str(&format!(
            "; pinned to the old values by a permanent server entry: {}",
            names.join(", ")
        ));
    }
    detail
}

/// What deciding the promotions reads: the plans and gathers of the run and what its
/// rollout did.
pub(super) struct PromoteCtx<'a> {
    /// The clusters that staged global changes.
    pub(super) promoting: &'a BTreeSet<String>,
    /// Hosts the inventory pins to the old values (var `pin = "true"`).
    pub(super) pinned: &'a BTreeSet<String>,
    pub(super) change_plan: &'a ChangePlan,
    pub(super) stage_plan: &'a stage::StagePlan,
    pub(super) gathers: &'a [HostGather],
    pub(super) loaded: &'a Loaded,
    /// What each node's rollout task did.
    pub(super) runs: &'a BTreeMap<String, NodeRun>,
    /// The scheduler's outcome (which nodes were not attempted, and why).
    pub(super) outcome: &'a Outcome,
    /// Nodes whose server-entry change failed in the change phase.
    pub(super) change_failures: &'a BTreeMap<String, HostError>,
}

/// Decides and runs the promotion of every cluster that staged global changes.
pub(super) async fn promote_all(
    ctx: &PromoteCtx<'_>,
    stopped: Option<String>,
    (journal, events): (&Journal, &Events),
) -> Vec<PromotionRecord> {
    let ready: Vec<ClusterPromotion<'_>> = ctx
        .promoting
        .iter()
        .filter_map(|cluster| {
            let global = ctx.change_plan.global.get(cluster)?;
            Some(cluster_promotion(ctx, cluster, global))
        })
        .collect();
    // Clusters are independent (one LDAP each): their promotions run concurrently.
    futures::future::join_all(
        ready
            .into_iter()
            .map(|p| promote(p, &ctx.loaded.playbook, stopped.clone(), (journal, events))),
    )
    .await
}

/// What promotion needs to know about `cluster`: each MTA judged (pinned, ready or
/// holding it), the entries to remove, the pins to write, and a session to run on.
fn cluster_promotion<'a>(
    ctx: &PromoteCtx<'a>,
    cluster: &'a str,
    global: &'a NodeBatch,
) -> ClusterPromotion<'a> {
    let members: Vec<&HostGather> = ctx
        .gathers
        .iter()
        .filter(|g| g.host.cluster == cluster)
        .collect();
    let in_inventory = ctx
        .loaded
        .inventory
        .hosts
        .iter()
        .filter(|h| h.cluster == cluster)
        .count();
    let (mut view, mtas) = ClusterView::gathered(&members, in_inventory);
    let mut entries = Vec::new();
    let mut pins = Vec::new();
    let mut exec = None;
    for (g, facts) in mtas {
        let name = &g.host.name;
        let stage = ctx.stage_plan.nodes.get(name);
        if ctx.pinned.contains(name) {
            // Its own entry keeps the old values (written before the mcf, in the
            // promotion batch).
            pins.push((facts.hostname.clone(), pinned_attrs(global, facts)));
            view.judge(name, facts, Standing::Ready);
            continue;
        }
        let standing = standing(ctx, name, stage);
        if standing == Standing::Ready {
            if let Some(st) = stage {
                entries.push((st.server.clone(), st.entries.clone()));
            }
            if exec.is_none()
                && let Some(session) = g.session.as_ref().filter(|s| !s.is_closed())
            {
                exec = Some((&g.host, session, facts.hostname.clone()));
            }
        }
        view.judge(name, facts, standing);
    }
    ClusterPromotion {
        cluster,
        global,
        view,
        entries,
        pins,
        exec,
    }
}

/// The attributes a pinned node keeps: each global change its own entry does not
/// already override, with the cluster's old global values.
fn pinned_attrs(global: &NodeBatch, facts: &NodeFacts) -> Vec<PinnedAttr> {
    global
        .changes
        .iter()
        .filter(|c| !facts.server.contains_key(&c.attr))
        .map(|c| {
            (
                c.attr.clone(),
                facts.global.get(&c.attr).cloned().unwrap_or_default(),
                c.control.clone(),
            )
        })
        .collect()
}

/// Whether an MTA that is not pinned lets its cluster be promoted, or why it holds it.
fn standing(ctx: &PromoteCtx<'_>, name: &str, stage: Option<&NodeStage>) -> Standing {
    if let Some(e) = ctx.change_failures.get(name) {
        Standing::Holds(format!("its server-entry change failed: {}", e.message))
    } else if let Some(m) = stage.filter(|s| !s.masked.is_empty()) {
        Standing::Holds(
            m.masked
                .iter()
                .map(|x| x.reason.clone())
                .collect::<Vec<_>>()
                .join("; "),
        )
    } else {
        match ctx.runs.get(name).map(|r| &r.result) {
            Some(NodeResult::Restarted) => Standing::Ready,
            Some(NodeResult::Failed { reason }) => Standing::Holds(format!("failed: {reason}")),
            Some(NodeResult::Unreachable) => {
                Standing::Holds("unreachable before its reload".into())
            }
            None => match ctx
                .outcome
                .nodes
                .iter()
                .find(|n| n.name == name)
                .map(|n| &n.state)
            {
                Some(NodeState::NotAttempted { reason }) => {
                    Standing::Holds(format!("not attempted ({reason})"))
                }
                // Nothing to stage (its own entry already gives the desired
                // values), or staged and proven by an earlier run.
                _ => Standing::Ready,
            },
        }
    }
}
