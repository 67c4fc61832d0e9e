//! The dispatcher: who takes part in the rollout and with what ([`rollout_nodes`]), and
//! the one loop that owns the rollout's state ([`dispatch`]): it starts the batches the
//! [`Scheduler`] hands out (one staging task per cluster per batch), collects the node
//! results, starts each final host's proof, and reacts to the run's interrupts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::Prepared;
use super::execute::{ChangeOutcome, NodeCtx, NodeRun, TaskEnv, command_ran, stage_group};
use super::prepare::smtp_probe_rcpt;
use super::prove::Prover;
use crate::engine::events::{Event, Events};
use crate::engine::interrupt::Interrupts;
use crate::engine::journal::Journal;
use crate::engine::rollout::{self, Next, NodeResult, RolloutNode, Scheduler};
use crate::inventory::Host;
use crate::report::model::{HostReport, HostStatus};

/// The rollout's nodes: who takes part, who restarts, and each one's task context.
pub(super) struct Rollout {
    pub(super) nodes: Vec<RolloutNode>,
    pub(super) ctxs: BTreeMap<String, NodeCtx>,
    /// Staged nodes whose gate passed in the interrupted run (`--resume`): not gated
    /// again.
    pub(super) proven_now: BTreeSet<String>,
}

impl Rollout {
    /// Whether the node is reloaded or restarted in this run.
    pub(super) fn restarting(&self, name: &str) -> bool {
        self.nodes.iter().any(|n| n.needs_restart && n.name == name)
    }
}

/// Who restarts: reachable MTA nodes whose effective config changed or was left pending
/// earlier; all reachable MTA nodes when only_if_changed is off.
pub(super) fn rollout_nodes(
    p: &Prepared,
    changed: &ChangeOutcome,
    journal: &Journal,
    events: &Events,
) -> Rollout {
    let mut rollout = Rollout {
        nodes: Vec::new(),
        ctxs: BTreeMap::new(),
        proven_now: BTreeSet::new(),
    };
    for (g, r) in p.gathers.iter().zip(&p.before) {
        let (Ok(ok), Some(session)) = (&g.outcome, &g.session) else {
            continue;
        };
        if !ok.facts.is_mta() || changed.failures.contains_key(&g.host.name) {
            continue;
        }
        let stage = p
            .stage_plan
            .nodes
            .get(&g.host.name)
            .cloned()
            .unwrap_or_default();
        // Staged entries go through a reload and the gate, unless an earlier run's gate
        // already proved exactly these (`--resume`).
        let proven = p.proven_earlier.contains(&g.host.name)
            && !p.opts.unstage
            && stage.entries.iter().all(|e| e.present);
        if proven && !stage.entries.is_empty() {
            let _ = journal.record(&g.host.name, "proven-earlier", &stage.server);
            rollout.proven_now.insert(g.host.name.clone());
        }
        // `--unstage` touches only the nodes it unstages.
        let needs = if p.opts.unstage {
            !stage.entries.is_empty()
        } else {
            changed.restart_clusters.contains(&g.host.cluster)
                || changed.restart_nodes.contains(&g.host.name)
                || r.status == HostStatus::RestartPending
                || (!stage.entries.is_empty() && !proven)
        };
        rollout.nodes.push(RolloutNode {
            name: g.host.name.clone(),
            cluster: g.host.cluster.clone(),
            needs_restart: needs,
        });
        let ctx = NodeCtx {
            events: events.clone(),
            host: g.host.clone(),
            session: session.clone(),
            platform: ok.facts.platform,
            rcpt: crate::engine::gather::smtp_rcpt(
                smtp_probe_rcpt(&p.loaded.playbook),
                &ok.facts,
                &p.nonce,
            ),
            alias_rcpt: ok
                .facts
                .domains
                .iter()
                .find(|d| !ok.facts.local_domains.contains(d))
                .map(|d| format!("cfleet-probe-{}@{d}", p.nonce)),
            known_rcpt: known_rcpt(&g.host, &p.loaded.playbook),
            log_names: std::iter::once(ok.facts.hostname.clone())
                .chain(ok.facts.running.uname.clone())
                .collect(),
            skip_params: skip_params(p, &g.host, r, &stage),
            stage,
            rollback: p.loaded.playbook.rollout.rollback && !p.opts.no_rollback,
            unstage: p.opts.unstage,
            old_values: false,
        };
        rollout.ctxs.insert(g.host.name.clone(), ctx);
    }
    rollout
}

/// The recipient the MTA must accept from outside mynetworks: the host's `known_rcpt`
/// var, else the playbook's; `Err` when the var is not one plain address.
fn known_rcpt(host: &Host, playbook: &crate::playbook::Playbook) -> Option<Result<String, String>> {
    match host.vars.get("known_rcpt") {
        Some(v) if crate::playbook::is_plain_address(v) => Some(Ok(v.clone())),
        Some(v) => Some(Err(format!(
            "inventory var known_rcpt of {} is not one plain address: {v:?}",
            host.name
        ))),
        None => playbook.rollout.known_rcpt.clone().map(Ok),
    }
}

/// What the gate does not expect to match the playbook on this node: the controls not
/// changed here (blocked or waived in its cluster for a global one, waived on this node
/// for its own, masked by its own override), each as its attribute and the Postfix
/// parameter it governs.
fn skip_params(
    p: &Prepared,
    host: &Host,
    r: &HostReport,
    stage: &crate::engine::stage::NodeStage,
) -> BTreeSet<String> {
    let masked_params = stage.masked.iter().flat_map(|m| {
        std::iter::once(m.attr.clone())
            .chain(crate::carbonio::postfix::governed_param(&m.attr).map(str::to_string))
    });
    p.change_plan
        .blocked
        .iter()
        .chain(&p.change_plan.waived)
        .filter(|b| b.cluster == host.cluster)
        .map(|b| b.control.as_str())
        .chain(
            r.controls
                .iter()
                .filter(|c| c.is_waived())
                .map(|c| c.id.as_str()),
        )
        .filter_map(|id| p.loaded.playbook.controls.iter().find(|c| c.id == id))
        // The attribute too: the policy entry's check keys on it (it governs master.cf,
        // not a main.cf parameter).
        .flat_map(|c| {
            std::iter::once(c.attr.clone())
                .chain(crate::carbonio::postfix::governed_param(&c.attr).map(str::to_string))
        })
        .chain(masked_params)
        .collect()
}

/// What the rollout did: the scheduler's outcome and each node task's result.
pub(super) struct Dispatched {
    pub(super) outcome: rollout::Outcome,
    pub(super) runs: BTreeMap<String, NodeRun>,
}

/// The running node tasks, each with the nodes it carries.
struct Running {
    tasks: JoinSet<Vec<NodeRun>>,
    nodes_of: BTreeMap<tokio::task::Id, Vec<String>>,
}

/// Runs the rollout to its end: batches as the scheduler hands them out, the results as
/// they come, each node's proof started once it is final (but in a cluster still to be
/// promoted), and the interrupts checked before every decision.
pub(super) async fn dispatch(
    mut sched: Scheduler,
    ctxs: &BTreeMap<String, NodeCtx>,
    promoting: &BTreeSet<String>,
    (env, prover): (&TaskEnv, &mut Prover),
    interrupts: &Interrupts,
    events: &Events,
) -> Dispatched {
    let mut running = Running {
        tasks: JoinSet::new(),
        nodes_of: BTreeMap::new(),
    };
    let mut runs: BTreeMap<String, NodeRun> = BTreeMap::new();
    let mut irx = interrupts.count.clone();
    let outcome = loop {
        // Before every decision, not only when `select!` happens to pick the interrupt:
        // a restart finishing at the same moment must not start the next batch after
        // the operator's Ctrl-C.
        if interrupts.any() {
            sched.interrupt();
        }
        match sched.next(Instant::now()) {
            Next::Batch(b) => {
                events.send(Event::BatchStarted {
                    number: b.number,
                    of: sched.batch_count(),
                    hosts: b.nodes.clone(),
                    canary: b.is_canary,
                });
                start_batch(&b.nodes, ctxs, env, &mut running);
            }
            Next::Wait => {
                tokio::select! {
                    Some(done) = running.tasks.join_next_with_id() => {
                        for run in node_runs(done, &mut running.nodes_of) {
                            for c in &run.commands {
                                events.send(command_ran(&run.name, c, c.exit == "0"));
                            }
                            events.send(Event::StepFinished {
                                host: run.name.clone(),
                                step: "restart+gate".into(),
                                ok: matches!(run.result, NodeResult::Restarted),
                                detail: run.result.to_string(),
                            });
                            let _ = sched.record(&run.name, run.result.clone());
                            // Restarted and gated (or failed): nothing more happens to it
                            // (but the promotion of its cluster, read after it).
                            if let Some(ctx) = ctxs.get(&run.name)
                                && !promoting.contains(&ctx.host.cluster)
                            {
                                prover.prove(&ctx.host, &ctx.session);
                            }
                            runs.insert(run.name.clone(), run);
                        }
                    }
                    Ok(()) = irx.changed() => sched.interrupt(),
                }
            }
            Next::PauseUntil(t) => {
                events.send(Event::Paused {
                    duration: t.saturating_duration_since(Instant::now()),
                });
                tokio::select! {
                    _ = tokio::time::sleep_until(t.into()) => {}
                    Ok(()) = irx.changed() => sched.interrupt(),
                }
            }
            Next::Done(o) => break o,
        }
    };
    Dispatched { outcome, runs }
}

/// Starts one rollout batch: one staging task per cluster.
fn start_batch(
    nodes: &[String],
    ctxs: &BTreeMap<String, NodeCtx>,
    env: &TaskEnv,
    running: &mut Running,
) {
    let mut groups: BTreeMap<String, Vec<NodeCtx>> = BTreeMap::new();
    for n in nodes {
        if let Some(ctx) = ctxs.get(n).cloned() {
            groups
                .entry(ctx.host.cluster.clone())
                .or_default()
                .push(ctx);
        }
    }
    for group in groups.into_values() {
        let names: Vec<&str> = group.iter().map(|c| c.host.name.as_str()).collect();
        let span = tracing::info_span!("host", host = %names.join(","), step = "stage+reload");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let task = running
            .tasks
            .spawn(stage_group(group, env.clone()).instrument(span));
        running.nodes_of.insert(task.id(), names);
    }
}

/// The node results of a finished task. A task that panicked (a bug) fails its nodes
/// with that cause: the rollout goes on deciding, never waits for them forever.
fn node_runs(
    done: Result<(tokio::task::Id, Vec<NodeRun>), tokio::task::JoinError>,
    nodes_of: &mut BTreeMap<tokio::task::Id, Vec<String>>,
) -> Vec<NodeRun> {
    match done {
        Ok((id, runs)) => {
            nodes_of.remove(&id);
            runs
        }
        Err(e) => {
            let id = e.id();
            let why = if e.is_panic() {
                crate::engine::gather::panic_text(&*e.into_panic())
            } else {
                "cancelled".to_string()
            };
            nodes_of
                .remove(&id)
                .unwrap_or_default()
                .into_iter()
                .map(|n| {
                    NodeRun::new(
                        n,
                        NodeResult::Failed {
                            reason: format!("the tool's task for this host failed: {why}"),
                        },
                    )
                })
                .collect()
        }
    }
}
