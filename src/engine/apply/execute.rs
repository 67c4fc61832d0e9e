//! The executor: what runs on the nodes. The change batches (one `zmprov` batch per
//! node, with read-back), and each rollout node's task: its cluster's staging batch, the
//! reload or restart, the wait until the new values are rendered, then the health gate
//! ([`super::gate`]) and, when it fails, the rollback ([`super::promote`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::carbonio::gather::{EffectivePlan, Platform};
use crate::carbonio::services::MtaAction;
use crate::carbonio::{prov, services, values};
use crate::engine::changes::{self, ChangePlan, NodeBatch};
use crate::engine::events::{Event, Events};
use crate::engine::gather::HostGather;
use crate::engine::journal::Journal;
use crate::engine::rollout::NodeResult;
use crate::engine::stage::{EntryKind, NodeStage, StageEntry};
use crate::engine::verdict;
use crate::inventory::Host;
use crate::playbook::{Playbook, Rollout};
use crate::report::model::{
    CommandRecord, ErrorKind, GateCheck, GateRecord, HostError, HostReport, RestartRecord,
    RollbackRecord, StagedRecord,
};
use crate::ssh::{ExecEnd, ExecOutput, Session, quote};

use super::gate::{health_gate, mail_log_size};
use super::promote::{roll_back, roll_back_entries};

/// What the change phase did, per cluster and host.
#[derive(Default)]
pub(super) struct ChangeOutcome {
    /// Clusters whose global changes that need a restart took effect in LDAP.
    pub(super) restart_clusters: BTreeSet<String>,
    /// Clusters where a global change batch ran (successfully or not).
    pub(super) global_clusters: BTreeSet<String>,
    /// Nodes whose own server-entry changes need a restart.
    pub(super) restart_nodes: BTreeSet<String>,
    /// Controls changed successfully, by host (global ones on every node of the cluster).
    pub(super) changed: BTreeMap<String, BTreeSet<String>>,
    pub(super) commands: BTreeMap<String, Vec<CommandRecord>>,
    pub(super) failures: BTreeMap<String, HostError>,
}

/// How a remote command ended, as the report writes it.
pub(crate) fn exit_text(end: &ExecEnd) -> String {
    match end {
        ExecEnd::Status(c) => c.to_string(),
        ExecEnd::Signal { name, .. } => format!("signal {name}"),
        ExecEnd::Unknown => "unknown".into(),
    }
}

/// The audit event for a command apply ran.
pub(crate) fn command_ran(host: &str, rec: &CommandRecord, ok: bool) -> Event {
    Event::CommandRan {
        host: host.to_string(),
        purpose: rec.purpose.clone(),
        command: rec.command.clone(),
        exit: rec.exit.clone(),
        ok,
    }
}

/// The audit event announcing a changing command about to be sent.
pub(crate) fn command_sent(events: &Events, host: &str, purpose: &str) -> impl FnOnce(&str) {
    let (events, host, purpose) = (events.clone(), host.to_string(), purpose.to_string());
    move |command: &str| {
        events.send(Event::CommandSent {
            host,
            purpose,
            command: command.to_string(),
        })
    }
}

/// Runs one change batch (with its read-back) on `session` and verifies it.
pub(super) async fn run_batch(
    session: &Session,
    host: &Host,
    server_name: &str,
    batch: &NodeBatch,
    (playbook, events): (&Playbook, &Events),
    purpose: String,
) -> (CommandRecord, Result<(), String>) {
    let mut record = CommandRecord {
        purpose,
        command: String::new(),
        exit: String::new(),
        errors: Vec::new(),
    };
    let (b, reads) = match changes::batch_with_readback(batch, server_name) {
        Ok(x) => x,
        Err(e) => return (record, Err(e.to_string())),
    };
    let script = match prov::shell_command(&b, prov::Ldap::Master) {
        Ok(s) => s,
        Err(e) => return (record, Err(e.to_string())),
    };
    let out: ExecOutput = match session
        .exec_announced(
            crate::ssh::RunAs::Service,
            &script,
            None,
            host.command_timeout,
            command_sent(events, &host.name, &record.purpose),
        )
        .await
    {
        Ok(o) => o,
        Err(e) => {
            record.exit = "not run".into();
            return (record, Err(e.to_string()));
        }
    };
    record.command = out.command.clone();
    record.exit = exit_text(&out.end);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    record.errors = prov::error_lines(&stdout, &stderr);
    if out.end != ExecEnd::Status(0) || !record.errors.is_empty() {
        let why = if record.errors.is_empty() {
            format!("zmprov exited {}: {}", record.exit, stderr.trim())
        } else {
            format!("zmprov reported: {}", record.errors.join("; "))
        };
        return (record, Err(why));
    }
    let n = batch.changes.len();
    let split = match prov::split_output(&stdout, n + reads.len()) {
        Ok(s) => s,
        Err(e) => return (record, Err(e.to_string())),
    };
    // Read back: a value that did not take is a failure, not a success.
    for (i, c) in batch.changes.iter().enumerate() {
        let got = prov::values_of(&split.outputs[n + i], &c.attr);
        let ok = if let Some(e) = &c.expect {
            values::satisfies(e, &got)
        } else if c.args.first().map(String::as_str) == Some("ms")
            && c.args.last().is_some_and(|v| v.is_empty())
        {
            got.is_empty()
        } else {
            playbook
                .controls
                .iter()
                .find(|k| k.id == c.control)
                .is_some_and(|k| values::satisfies(&k.expect, &got))
        };
        if !ok {
            let msg = format!(
                "{} did not take: read back {} = {}",
                c.control,
                c.attr,
                values::render(&got)
            );
            record.errors.push(msg.clone());
            return (record, Err(msg));
        }
    }
    (record, Ok(()))
}

/// Executes the change plan: global batches (one per cluster, on its executor node),
/// then server batches (one per node), clusters and nodes concurrently.
pub(super) async fn execute_changes(
    plan: &ChangePlan,
    gathers: &[HostGather],
    before: &[HostReport],
    playbook: &Playbook,
    journal: &Journal,
    events: &Events,
) -> ChangeOutcome {
    let mut out = ChangeOutcome::default();
    let by_name: BTreeMap<&str, (&HostGather, &HostReport)> = gathers
        .iter()
        .zip(before)
        .map(|(g, r)| (g.host.name.as_str(), (g, r)))
        .collect();
    let mut jobs = Vec::new();
    for (cluster, batch) in &plan.global {
        jobs.push((Some(cluster.clone()), batch.clone()));
    }
    for batch in plan.server.values() {
        jobs.push((None, batch.clone()));
    }
    // Global changes first: a server batch may remove an override that only makes sense
    // once the global value is right.
    for phase_global in [true, false] {
        let futs = jobs
            .iter()
            .filter(|(c, _)| c.is_some() == phase_global)
            .filter_map(|(cluster, batch)| {
                let (g, r) = by_name.get(batch.node.as_str())?;
                let session = g.session.as_ref()?;
                let server = r.carbonio_hostname.clone()?;
                let purpose = match cluster {
                    Some(c) => format!("global changes for cluster `{c}`"),
                    None => format!("server-entry changes for `{server}`"),
                };
                Some(async move {
                    let (rec, res) = run_batch(
                        session,
                        &g.host,
                        &server,
                        batch,
                        (playbook, events),
                        purpose,
                    )
                    .await;
                    (cluster.clone(), batch, rec, res)
                })
            });
        let results = futures::future::join_all(futs).await;
        for (cluster, batch, rec, res) in results {
            let node = batch.node.clone();
            if let Some(c) = &cluster {
                out.global_clusters.insert(c.clone());
            }
            let summary: Vec<String> = batch.changes.iter().map(|c| c.args.join(" ")).collect();
            events.send(command_ran(&node, &rec, res.is_ok()));
            out.commands.entry(node.clone()).or_default().push(rec);
            match res {
                Ok(()) => {
                    let _ = journal.record(&node, "changed", &summary.join("; "));
                    events.send(Event::StepFinished {
                        host: node.clone(),
                        step: "change".into(),
                        ok: true,
                        detail: summary.join("; "),
                    });
                    let needs_restart = batch.changes.iter().any(|c| c.restart);
                    let ids: BTreeSet<String> =
                        batch.changes.iter().map(|c| c.control.clone()).collect();
                    match &cluster {
                        Some(c) => {
                            if needs_restart {
                                out.restart_clusters.insert(c.clone());
                            }
                            for g in gathers.iter().filter(|g| &g.host.cluster == c) {
                                out.changed
                                    .entry(g.host.name.clone())
                                    .or_default()
                                    .extend(ids.iter().cloned());
                            }
                        }
                        None => {
                            if needs_restart {
                                out.restart_nodes.insert(node.clone());
                            }
                            out.changed.entry(node.clone()).or_default().extend(ids);
                        }
                    }
                }
                Err(msg) => {
                    let _ = journal.record(&node, "change-failed", &msg);
                    events.send(Event::StepFinished {
                        host: node.clone(),
                        step: "change".into(),
                        ok: false,
                        detail: msg.clone(),
                    });
                    out.failures
                        .insert(node, HostError::new(ErrorKind::Command, msg));
                }
            }
        }
    }
    out
}

/// One node of the rollout, with what its restart task needs.
#[derive(Clone)]
pub(super) struct NodeCtx {
    pub(super) host: Host,
    pub(super) session: Session,
    pub(super) platform: Platform,
    /// The gate's SMTP recipient (as the gather's probe chose it), if any.
    pub(super) rcpt: Option<String>,
    /// An unknown address in one of the cluster's alias domains, if it has one: the
    /// policy service must reject it (`action=reject 5.1.1 …`).
    pub(super) alias_rcpt: Option<String>,
    /// A recipient the MTA must accept from outside mynetworks (the host's `known_rcpt`
    /// var, else the playbook's); `Err` when the var is not a plain address.
    pub(super) known_rcpt: Option<Result<String, String>>,
    /// The names this host's mail log lines carry (the server name, `uname -n`).
    pub(super) log_names: Vec<String>,
    /// Postfix parameters (and control attributes) the gate does not expect to match
    /// the playbook, because the control that governs them is not changed on this node
    /// (blocked in its cluster, masked by its own override, or rolled back).
    pub(super) skip_params: BTreeSet<String>,
    /// What is staged on its server entry in this run (or found staged).
    pub(super) stage: NodeStage,
    /// Roll it back when its gate fails (playbook `rollback`, unless `--no-rollback`).
    pub(super) rollback: bool,
    /// `--unstage`: remove what is staged, reload and gate on the old values.
    pub(super) unstage: bool,
    /// Gated on its old values (after a rollback): an unknown recipient that the old
    /// configuration accepts is what it did before, not a failure of the rollback.
    pub(super) old_values: bool,
    /// The run's event stream (the audit's `command-sent` events).
    pub(super) events: Events,
}

impl NodeCtx {
    /// The node as its rollback gate sees it: the staged controls' parameters are back
    /// to whatever they were, so the gate does not expect the playbook's values there.
    pub(super) fn rolled_back(&self) -> NodeCtx {
        let mut n = self.clone();
        n.old_values = true;
        for e in &self.stage.entries {
            n.skip_params.insert(e.attr.clone());
            if let Some(p) = crate::carbonio::postfix::governed_param(&e.attr) {
                n.skip_params.insert(p.to_string());
            }
        }
        n
    }
}

/// What the restart task of one node produced.
pub(super) struct NodeRun {
    pub(super) name: String,
    pub(super) result: NodeResult,
    pub(super) restart: Option<RestartRecord>,
    pub(super) gate: Option<GateRecord>,
    /// The commands of the staging, reload or restart, and rollback, in order.
    pub(super) commands: Vec<CommandRecord>,
    /// Its staged entries and where each ended.
    pub(super) staged: Vec<StagedRecord>,
    pub(super) rollback: Option<RollbackRecord>,
}

impl NodeRun {
    pub(super) fn new(name: String, result: NodeResult) -> NodeRun {
        NodeRun {
            name,
            result,
            restart: None,
            gate: None,
            commands: Vec::new(),
            staged: Vec::new(),
            rollback: None,
        }
    }
}

pub(super) fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What a node's rollout task shares with every other: the playbook's rollout, the
/// effective-config reader, the second-Ctrl-C token and the journal.
#[derive(Clone)]
pub(super) struct TaskEnv {
    pub(super) rollout: Rollout,
    pub(super) playbook: Arc<Playbook>,
    pub(super) eff: Arc<EffectivePlan>,
    pub(super) hard: CancellationToken,
    pub(super) journal: Arc<Journal>,
}

/// Restart then health gate for one node. `phase` prefixes its journal steps (`""`, or
/// `"rollback-"` for the gate on the old values, which proves nothing for promotion).
pub(super) async fn restart_and_gate(node: NodeCtx, env: TaskEnv, phase: &'static str) -> NodeRun {
    let name = node.host.name.clone();
    if node.session.is_closed() {
        return NodeRun::new(name, NodeResult::Unreachable);
    }
    let mut commands = Vec::new();
    let action = services::mta_action(env.rollout.restart, node.platform, node.session.flavour());
    // Where the mail log ends before the reload or restart: the gate reads what follows.
    let log_offset = match action {
        Some(_) => mail_log_size(&node).await,
        None => None,
    };
    let restart = match action {
        None => left_to_zmconfigd(),
        Some(action) => match send_action(&node, &env, &action, phase, &mut commands).await {
            Ok(record) => record,
            Err((record, failed)) => {
                return NodeRun {
                    restart: Some(record),
                    commands,
                    ..NodeRun::new(name, failed)
                };
            }
        },
    };
    let gate = gate_unless_cancelled(&node, &env, log_offset).await;
    let result = gate_result(&node, &env.journal, &gate, phase);
    NodeRun {
        restart: Some(restart),
        gate: Some(gate),
        commands,
        ..NodeRun::new(name, result)
    }
}

/// The restart record of a node on a platform where the tool sends no reload or restart.
fn left_to_zmconfigd() -> RestartRecord {
    RestartRecord {
        method: "none (left to zmconfigd, which applies LDAP changes within its polling interval)"
            .into(),
        started_at: jiff::Timestamp::now().to_string(),
        finished_at: jiff::Timestamp::now().to_string(),
        ok: true,
        output: String::new(),
    }
}

/// Sends the reload (after the render wait) or the full restart, journals it and records
/// it; on failure also the node's result.
async fn send_action(
    node: &NodeCtx,
    env: &TaskEnv,
    action: &MtaAction,
    phase: &str,
    commands: &mut Vec<CommandRecord>,
) -> Result<RestartRecord, (RestartRecord, NodeResult)> {
    let name = &node.host.name;
    let label = action.label();
    let _ = env
        .journal
        .record(name, &format!("{phase}restart-started"), &label);
    let started_at = jiff::Timestamp::now().to_string();
    // A reload or restart already sent is waited for even after a second Ctrl-C:
    // cutting it off would leave the node in an unknown state.
    let timeout = env.rollout.health_timeout.max(node.host.command_timeout);
    let outcome = match action {
        MtaAction::Full(step) => run_detached(node, step, timeout, commands).await,
        MtaAction::Reload { render, reload } => {
            match render_until_in_force(
                node,
                render,
                &env.rollout,
                &env.playbook,
                &env.eff,
                commands,
            )
            .await
            {
                Ok(()) => {
                    let _ = env.journal.record(name, &format!("{phase}rendered"), "");
                    run_step(node, reload, "reload", timeout, commands).await
                }
                Err(why) => Err(why),
            }
        }
    };
    let record = RestartRecord {
        method: label,
        started_at,
        finished_at: jiff::Timestamp::now().to_string(),
        ok: outcome.is_ok(),
        output: match &outcome {
            Ok(out) | Err(out) => out.clone(),
        },
    };
    if let Err(why) = outcome {
        let _ = env
            .journal
            .record(name, &format!("{phase}restart-failed"), &why);
        let failed = NodeResult::Failed {
            reason: format!(
                "{} failed: {}",
                if matches!(action, MtaAction::Full(_)) {
                    "restart"
                } else {
                    "reload"
                },
                why.lines().last().unwrap_or("")
            ),
        };
        return Err((record, failed));
    }
    let _ = env.journal.record(name, &format!("{phase}restarted"), "");
    Ok(record)
}

/// The health gate after the reload or restart, or a failed gate when a second Ctrl-C
/// cancels it.
async fn gate_unless_cancelled(
    node: &NodeCtx,
    env: &TaskEnv,
    log_offset: Option<u64>,
) -> GateRecord {
    tokio::select! {
        g = health_gate(node, &env.rollout, &env.playbook, &env.eff, log_offset) => g,
        _ = env.hard.cancelled() => GateRecord {
            passed: false,
            finished_at: jiff::Timestamp::now().to_string(),
            attempts: 0,
            checks: vec![GateCheck { name: "gate".into(), ok: false, detail: "cancelled by a second Ctrl-C".into() }],
            vantage: String::new(),
            smtp_transcript: Vec::new(),
        },
    }
}

/// The node's result from its gate, journaled.
fn gate_result(node: &NodeCtx, journal: &Journal, gate: &GateRecord, phase: &str) -> NodeResult {
    let name = &node.host.name;
    if gate.passed {
        // Not `done` yet: a staged node is done once its cluster is promoted.
        let _ = journal.record(name, &format!("{phase}gate-passed"), &node.stage.server);
        NodeResult::Restarted
    } else {
        let why: Vec<String> = gate
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        let _ = journal.record(name, &format!("{phase}gate-failed"), &why.join("; "));
        NodeResult::Failed {
            reason: format!("health gate failed: {}", why.join("; ")),
        }
    }
}

/// Tries again until a deadline: 200 ms before the second try, twice as long before each
/// next one, at most 5 s. The gate, the render wait and the detached restart's poll share it.
pub(super) struct Backoff {
    pub(super) deadline: Instant,
    pub(super) delay: Duration,
}

impl Backoff {
    pub(super) fn new(limit: Duration) -> Backoff {
        Backoff {
            deadline: Instant::now() + limit,
            delay: Duration::from_millis(200),
        }
    }

    /// Sleeps before the next try; `false`, without sleeping, when that try would start
    /// past the deadline.
    pub(super) async fn wait(&mut self) -> bool {
        if Instant::now() + self.delay >= self.deadline {
            return false;
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(5));
        true
    }
}

/// Runs one step of a reload or restart and records it; the last lines of its output, or
/// why it failed.
pub(super) async fn run_step(
    node: &NodeCtx,
    step: &services::Step,
    purpose: &str,
    timeout: Duration,
    commands: &mut Vec<CommandRecord>,
) -> Result<String, String> {
    match node
        .session
        .exec_announced(
            step.run_as,
            &step.script,
            None,
            timeout,
            command_sent(&node.events, &node.host.name, purpose),
        )
        .await
    {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            commands.push(CommandRecord {
                purpose: purpose.into(),
                command: o.command.clone(),
                exit: exit_text(&o.end),
                errors: Vec::new(),
            });
            let out = tail(&text, 12);
            if o.end == ExecEnd::Status(0) {
                Ok(out)
            } else {
                Err(if out.is_empty() {
                    format!("{purpose} exited {}", exit_text(&o.end))
                } else {
                    out
                })
            }
        }
        Err(e) => {
            commands.push(CommandRecord {
                purpose: purpose.into(),
                command: step.script.clone(),
                exit: "not completed".into(),
                errors: vec![e.to_string()],
            });
            Err(e.to_string())
        }
    }
}

/// A full restart detached from the SSH channel: `zmcontrol restart` writes with `$| = 1`
/// and a closed channel kills it with SIGPIPE half-way (docs/carbonio.md §4), and a timeout
/// would do the same. `setsid -f` starts it in its own session with its output in a file
/// on the node; the tool polls for the exit status it leaves beside it (the channel may
/// close meanwhile: the restart goes on), then reads the output and removes both files.
pub(super) async fn run_detached(
    node: &NodeCtx,
    step: &services::Step,
    timeout: Duration,
    commands: &mut Vec<CommandRecord>,
) -> Result<String, String> {
    let out = format!("/tmp/carbonio-fleet-restart-{:016x}", rand::random::<u64>());
    let command = step.command();
    let inner = format!("{command} </dev/null >{out} 2>&1; echo $? >{out}.rc");
    let start = services::Step {
        run_as: step.run_as,
        script: format!(
            "setsid -f /bin/sh -c {} </dev/null >/dev/null 2>&1",
            quote(&inner).map_err(|e| e.to_string())?
        ),
    };
    run_step(
        node,
        &start,
        "restart (detached)",
        node.host.command_timeout,
        commands,
    )
    .await?;
    let mut backoff = Backoff::new(timeout);
    let rc = loop {
        let polled = node
            .session
            .exec(
                step.run_as,
                &format!("cat {out}.rc"),
                None,
                node.host.command_timeout,
            )
            .await;
        if let Ok(o) = &polled
            && let Ok(rc) = String::from_utf8_lossy(&o.stdout).trim().parse::<i32>()
        {
            break rc;
        }
        if node.session.is_closed() {
            return Err(format!(
                "the connection was lost while the restart ran detached: its outcome is unknown (output in {out} on the node)"
            ));
        }
        if !backoff.wait().await {
            return Err(format!(
                "no exit status within {}; the restart goes on detached, its output in {out} on the node",
                crate::duration::display(timeout)
            ));
        }
    };
    let output = match node
        .session
        .exec(
            step.run_as,
            &format!("cat {out}; rm -f {out} {out}.rc"),
            None,
            node.host.command_timeout,
        )
        .await
    {
        Ok(o) => tail(&String::from_utf8_lossy(&o.stdout), 12),
        Err(e) => format!("(output not read: {e})"),
    };
    commands.push(CommandRecord {
        purpose: "restart (exit status)".into(),
        command: format!("{command} (detached; output {out})"),
        exit: rc.to_string(),
        errors: Vec::new(),
    });
    if rc == 0 {
        Ok(output)
    } else if output.is_empty() {
        Err(format!("restart exited {rc}"))
    } else {
        Err(output)
    }
}

/// `configrewrite mta`, then reads the files until they hold what the gate expects
/// (zmconfigd reads `ldap_url`, which can be a lagging replica: the rewrite is asked again
/// on each try), within the health timeout. Nothing is reloaded until they do: a node
/// whose values never render fails here, still running its old config.
pub(super) async fn render_until_in_force(
    node: &NodeCtx,
    render: &services::Step,
    rollout: &Rollout,
    playbook: &Playbook,
    eff: &EffectivePlan,
    commands: &mut Vec<CommandRecord>,
) -> Result<(), String> {
    let mut backoff = Backoff::new(rollout.health_timeout);
    let timeout = node.host.command_timeout;
    loop {
        run_step(
            node,
            render,
            "render (configrewrite mta)",
            timeout,
            commands,
        )
        .await?;
        let missing = match read_effective(node, eff).await {
            Ok(facts) => not_rendered(node, playbook, &facts),
            Err(e) => vec![e],
        };
        if missing.is_empty() {
            return Ok(());
        }
        if !backoff.wait().await {
            return Err(format!(
                "the new values never rendered within health_timeout {} (nothing reloaded): {}",
                crate::duration::display(rollout.health_timeout),
                missing.join("; ")
            ));
        }
    }
}

/// The effective (on-disk) Postfix config of a node.
pub(super) async fn read_effective(
    node: &NodeCtx,
    eff: &EffectivePlan,
) -> Result<crate::carbonio::gather::EffectiveFacts, String> {
    match node
        .session
        .exec(
            crate::ssh::RunAs::Service,
            eff.script(node.session.flavour()),
            None,
            node.host.command_timeout,
        )
        .await
    {
        Ok(o) => eff
            .parse(&String::from_utf8_lossy(&o.stdout))
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// What the files do not show yet: each `postconf` probe's mismatch (parameters of
/// blocked controls aside), and the policy entry when the playbook enables the daemon.
pub(super) fn not_rendered(
    node: &NodeCtx,
    playbook: &Playbook,
    facts: &crate::carbonio::gather::EffectiveFacts,
) -> Vec<String> {
    let mut missing: Vec<String> = playbook
        .probes
        .iter()
        .filter(|p| {
            !matches!(&p.kind, crate::playbook::ProbeKind::Postconf { param } if node.skip_params.contains(param))
        })
        .filter_map(|p| verdict::postconf_probe(p, &facts.postconf))
        .filter_map(Result::err)
        .collect();
    let wants_policy = playbook.controls.iter().any(|c| {
        c.attr == "zimbraMtaEnableSmtpdPolicyd"
            && crate::carbonio::values::satisfies(&c.expect, &["TRUE".to_string()])
            && !node.skip_params.contains(&c.attr)
    });
    if wants_policy && facts.policy_service.is_none() {
        missing.push("master.cf has no active `policy unix … spawn` entry yet".into());
    }
    missing
}

/// The change lines that write `entries` on `server` (`stage`), or restore them
/// (`rollback`), with what each read-back must show.
pub(crate) fn entry_changes(
    server: &str,
    entries: &[&StageEntry],
    rollback: bool,
) -> Vec<changes::Change> {
    entries
        .iter()
        .map(|e| changes::Change {
            control: e.control.clone(),
            attr: e.attr.clone(),
            args: if rollback {
                e.rollback_args(server)
            } else {
                e.stage_args(server)
            },
            restart: e.restart,
            expect: match (rollback, e.kind, &e.delta) {
                // Staging: the control's own expectation (which the staged list meets).
                (false, _, _) => None,
                (true, EntryKind::Temporary, _) => None,
                (true, EntryKind::ListExtended, Some((true, v))) => {
                    Some(crate::playbook::Expectation::Absent(v.clone()))
                }
                (true, EntryKind::ListExtended, Some((false, v))) => {
                    Some(crate::playbook::Expectation::Contains(v.clone()))
                }
                (true, _, _) => e
                    .before
                    .first()
                    .map(|b| crate::playbook::Expectation::Equals(b.clone())),
            },
        })
        .collect()
}

/// The report's view of a node's entries, all in one `state`.
pub(super) fn staged_records(stage: &NodeStage, state: &str) -> Vec<StagedRecord> {
    stage
        .entries
        .iter()
        .map(|e| StagedRecord {
            control: e.control.clone(),
            attr: e.attr.clone(),
            kind: e.kind.as_str().to_string(),
            before: values::render(&e.before),
            staged: values::render(&e.staged),
            state: if state == "staged" && e.present {
                "found".to_string()
            } else {
                state.to_string()
            },
        })
        .collect()
}

/// One rollout batch's nodes of one cluster: their staged values written in ONE `zmprov`
/// batch (with read-back, from the LDAP master), then each node reloaded and gated, and a
/// node that fails rolled back. `--unstage` nodes are rolled back directly.
pub(super) async fn stage_group(nodes: Vec<NodeCtx>, env: TaskEnv) -> Vec<NodeRun> {
    let writers: Vec<&NodeCtx> = nodes
        .iter()
        .filter(|n| !n.unstage && n.stage.to_write().next().is_some())
        .collect();
    let (stage_rec, stage_err) = write_stage(&writers, &env).await;
    let writer_names: BTreeSet<String> = writers.iter().map(|n| n.host.name.clone()).collect();
    let runs = nodes.into_iter().map(|n| {
        let env = env.clone();
        let wrote = writer_names.contains(&n.host.name);
        let stage_rec = stage_rec.clone().filter(|_| wrote);
        let stage_err = stage_err.clone().filter(|_| wrote);
        async move {
            let mut pre: Vec<CommandRecord> = stage_rec.into_iter().collect();
            if n.unstage {
                let (rb, cmds, passed) = roll_back(&n, &env).await;
                let mut run = NodeRun::new(
                    n.host.name.clone(),
                    if passed {
                        NodeResult::Restarted
                    } else {
                        NodeResult::Failed {
                            reason: format!("unstage failed: {}", rb.detail),
                        }
                    },
                );
                run.staged = staged_records(&n.stage, if rb.ok { "rolled back" } else { "found" });
                run.commands = cmds;
                run.restart = rb.restart.clone();
                run.gate = rb.gate.clone();
                return run;
            }
            if let Some(why) = stage_err {
                // Part of the batch may have landed: put the entries back as they were.
                let mut run = NodeRun::new(
                    n.host.name.clone(),
                    NodeResult::Failed {
                        reason: format!("staging failed (nothing reloaded): {why}"),
                    },
                );
                let rb = roll_back_entries(&n, &env).await;
                run.staged = staged_records(
                    &n.stage,
                    if rb.1.is_ok() {
                        "rolled back"
                    } else {
                        "stage failed (rollback incomplete)"
                    },
                );
                pre.push(rb.0);
                run.commands = pre;
                return run;
            }
            let mut run = restart_and_gate(n.clone(), env.clone(), "").await;
            pre.append(&mut run.commands);
            run.commands = pre;
            run.staged = staged_records(&n.stage, "staged");
            let failed = matches!(run.result, NodeResult::Failed { .. });
            if failed && !n.stage.entries.is_empty() {
                if n.rollback {
                    let (rb, mut cmds, _) = roll_back(&n, &env).await;
                    run.commands.append(&mut cmds);
                    if rb.ok || rb.restart.is_some() {
                        run.staged = staged_records(&n.stage, "rolled back");
                    }
                    if let NodeResult::Failed { reason } = &mut run.result {
                        reason.push_str(if rb.ok {
                            "; rolled back (old values reloaded, gate passed)"
                        } else {
                            "; rollback did not complete"
                        });
                    }
                    run.rollback = Some(rb);
                } else {
                    let _ = env
                        .journal
                        .record(&n.host.name, "rollback-skipped", "--no-rollback");
                    if let NodeResult::Failed { reason } = &mut run.result {
                        reason.push_str("; kept as it is for inspection (--no-rollback)");
                    }
                }
            }
            run
        }
    });
    futures::future::join_all(runs).await
}

/// The staging batch of one rollout batch's nodes of one cluster: every writer's entries
/// in ONE `zmprov` batch (with read-back), sent on the first writer with an open session.
/// Its record (when it was sent) and why it failed.
async fn write_stage(
    writers: &[&NodeCtx],
    env: &TaskEnv,
) -> (Option<CommandRecord>, Option<String>) {
    if writers.is_empty() {
        return (None, None);
    }
    match writers.iter().find(|n| !n.session.is_closed()) {
        None => (None, Some("no open session to stage on".into())),
        Some(exec) => {
            let mut lines = Vec::new();
            for n in writers {
                let todo: Vec<&StageEntry> = n.stage.to_write().collect();
                lines.extend(entry_changes(&n.stage.server, &todo, false));
            }
            let servers: Vec<&str> = writers.iter().map(|n| n.stage.server.as_str()).collect();
            for n in writers {
                let _ = env
                    .journal
                    .record(&n.host.name, "stage-started", &exec.host.name);
            }
            let batch = NodeBatch {
                node: exec.host.name.clone(),
                changes: lines,
            };
            let (rec, res) = run_batch(
                &exec.session,
                &exec.host,
                &exec.stage.server,
                &batch,
                (&env.playbook, &exec.events),
                format!("stage on {} (server entries)", servers.join(", ")),
            )
            .await;
            for n in writers {
                let what: Vec<String> = n.stage.to_write().map(StageEntry::describe).collect();
                let step = if res.is_ok() {
                    "staged"
                } else {
                    "stage-failed"
                };
                let _ = env.journal.record(&n.host.name, step, &what.join("; "));
            }
            (Some(rec), res.err())
        }
    }
}
