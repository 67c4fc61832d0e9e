//! Remediation: gather → plan the changes and the staging ([`super::stage`]) →
//! (confirm) → server-scope changes (one `zmprov` batch per node, with read-back) →
//! batches from the rollout scheduler, each staging its MTAs' server entries (one
//! `zmprov` batch per cluster per batch), then reloading (or restarting) and gating
//! them, a node that fails rolled back → each cluster's promotion (global config, then
//! the temporary entries removed) once every MTA LDAP lists passed → gather again to
//! prove the result (each host as soon as nothing more will be done to it, overlapping
//! later batches: [`Prover`]).
//!
//! One dispatcher loop owns the run state: it starts batches the [`Scheduler`] hands
//! out, collects node results, and reacts to Ctrl-C (first: start nothing new, let
//! in-flight steps finish; second: cancel in-flight gates, still waiting for a restart
//! already sent). Every completed step is journaled so `--resume` can continue.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::carbonio::flavour::Flavour;
use crate::carbonio::gather::{EffectivePlan, GatherPlan, Platform};
use crate::carbonio::services::MtaAction;
use crate::carbonio::{prov, services, values};
use crate::engine::changes::{self, ChangePlan, NodeBatch};
use crate::engine::check;
use crate::engine::events::{Event, Events};
use crate::engine::gather::{HostGather, Prover};
use crate::engine::journal::{self, Journal};
use crate::engine::rollout::{Next, NodeResult, RolloutNode, Scheduler};
use crate::engine::run::{self, Loaded, RunOptions};
use crate::engine::smtp;
use crate::engine::stage::{self, ClusterView, EntryKind, NodeStage, StageEntry, Standing};
use crate::engine::verdict;
use crate::exit;
use crate::inventory::Host;
use crate::playbook::{Playbook, ProbeFrom, Rollout};
use crate::report::model::{
    CommandRecord, ErrorKind, GateCheck, GateRecord, HostApply, HostError, HostReport, HostStatus,
    PromotionRecord, RestartRecord, RollbackRecord, StagedRecord,
};
use crate::report::store;
use crate::ssh::{ExecEnd, ExecOutput, Session, quote};

/// Options of `apply`.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub run: RunOptions,
    /// Skip the confirmation prompt.
    pub yes: bool,
    /// Continue the last interrupted run: skip hosts its journal marks done.
    pub resume: bool,
    /// Target only the hosts that failed in the last run.
    pub retry_failed: bool,
    /// Set `user=zextras` on master.cf.in's policy entry where its spawn user cannot
    /// start the policy daemon (see [`super::spawn_fix`]).
    pub fix_spawn_user: bool,
    /// Keep a node that failed its gate as it is (no rollback of its staged entries).
    pub no_rollback: bool,
    /// Stage over a contradicting single-valued server override instead of reporting it.
    pub replace_overrides: bool,
    /// Remove staged entries an unfinished run left, reload and gate those MTAs.
    pub unstage: bool,
    /// `--plan FILE`: carry out exactly this plan ([`super::plan_file`]) or refuse.
    pub plan: Option<std::path::PathBuf>,
}

/// Narrows the targets for `--resume` / `--retry-failed` from the last run's files.
fn narrow_targets(
    opts: &ApplyOptions,
    hosts: Vec<Host>,
    resume: Option<&Resume>,
) -> Result<Vec<Host>, String> {
    let latest = opts.run.report_dir.join("latest");
    if opts.retry_failed {
        let report = store::read_report(&latest.join("report.json"))?;
        let failed: BTreeSet<String> = report
            .hosts
            .iter()
            .filter(|h| {
                h.status == HostStatus::Failed
                    || h.apply
                        .as_ref()
                        .is_some_and(|a| a.rollout.starts_with("failed"))
            })
            .map(|h| h.name.clone())
            .collect();
        let hosts: Vec<Host> = hosts
            .into_iter()
            .filter(|h| failed.contains(&h.name))
            .collect();
        if hosts.is_empty() {
            return Err(format!(
                "--retry-failed: the last run ({}) has no failed host among the selected hosts",
                latest.display()
            ));
        }
        return Ok(hosts);
    }
    if let Some(resume) = resume {
        let done: BTreeSet<String> = journal::done_hosts(&resume.entries).into_iter().collect();
        let hosts: Vec<Host> = hosts
            .into_iter()
            .filter(|h| !done.contains(&h.name))
            .collect();
        if hosts.is_empty() {
            return Err(format!(
                "--resume: every selected host is done according to `{}`",
                resume.path.display()
            ));
        }
        return Ok(hosts);
    }
    Ok(hosts)
}

/// What the change phase did, per cluster and host.
#[derive(Default)]
struct ChangeOutcome {
    /// Clusters whose global changes that need a restart took effect in LDAP.
    restart_clusters: BTreeSet<String>,
    /// Clusters where a global change batch ran (successfully or not).
    global_clusters: BTreeSet<String>,
    /// Nodes whose own server-entry changes need a restart.
    restart_nodes: BTreeSet<String>,
    /// Controls changed successfully, by host (global ones on every node of the cluster).
    changed: BTreeMap<String, BTreeSet<String>>,
    commands: BTreeMap<String, Vec<CommandRecord>>,
    failures: BTreeMap<String, HostError>,
}

/// The `rcpt` of the playbook's first SMTP probe, if it names one.
fn smtp_probe_rcpt(playbook: &crate::playbook::Playbook) -> Option<&str> {
    playbook.probes.iter().find_map(|p| match &p.kind {
        crate::playbook::ProbeKind::Smtp { rcpt } => rcpt.as_deref(),
        _ => None,
    })
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
async fn run_batch(
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
async fn execute_changes(
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
struct NodeCtx {
    host: Host,
    session: Session,
    platform: Platform,
    /// The gate's SMTP recipient (as the gather's probe chose it), if any.
    rcpt: Option<String>,
    /// An unknown address in one of the cluster's alias domains, if it has one: the
    /// policy service must reject it (`action=reject 5.1.1 …`).
    alias_rcpt: Option<String>,
    /// A recipient the MTA must accept from outside mynetworks (the host's `known_rcpt`
    /// var, else the playbook's); `Err` when the var is not a plain address.
    known_rcpt: Option<Result<String, String>>,
    /// The names this host's mail log lines carry (the server name, `uname -n`).
    log_names: Vec<String>,
    /// Postfix parameters (and control attributes) the gate does not expect to match
    /// the playbook, because the control that governs them is not changed on this node
    /// (blocked in its cluster, masked by its own override, or rolled back).
    skip_params: BTreeSet<String>,
    /// What is staged on its server entry in this run (or found staged).
    stage: NodeStage,
    /// Roll it back when its gate fails (playbook `rollback`, unless `--no-rollback`).
    rollback: bool,
    /// `--unstage`: remove what is staged, reload and gate on the old values.
    unstage: bool,
    /// Gated on its old values (after a rollback): an unknown recipient that the old
    /// configuration accepts is what it did before, not a failure of the rollback.
    old_values: bool,
    /// The run's event stream (the audit's `command-sent` events).
    events: Events,
}

impl NodeCtx {
    /// The node as its rollback gate sees it: the staged controls' parameters are back
    /// to whatever they were, so the gate does not expect the playbook's values there.
    fn rolled_back(&self) -> NodeCtx {
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
struct NodeRun {
    name: String,
    result: NodeResult,
    restart: Option<RestartRecord>,
    gate: Option<GateRecord>,
    /// The commands of the staging, reload or restart, and rollback, in order.
    commands: Vec<CommandRecord>,
    /// Its staged entries and where each ended.
    staged: Vec<StagedRecord>,
    rollback: Option<RollbackRecord>,
}

impl NodeRun {
    fn new(name: String, result: NodeResult) -> NodeRun {
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

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What a node's rollout task shares with every other: the playbook's rollout, the
/// effective-config reader, the second-Ctrl-C token and the journal.
#[derive(Clone)]
struct TaskEnv {
    rollout: Rollout,
    playbook: Arc<Playbook>,
    eff: Arc<EffectivePlan>,
    hard: CancellationToken,
    journal: Arc<Journal>,
}

/// Restart then health gate for one node. `phase` prefixes its journal steps (`""`, or
/// `"rollback-"` for the gate on the old values, which proves nothing for promotion).
async fn restart_and_gate(node: NodeCtx, env: TaskEnv, phase: &'static str) -> NodeRun {
    let TaskEnv {
        rollout,
        playbook,
        eff,
        hard,
        journal,
    } = env;
    let name = node.host.name.clone();
    if node.session.is_closed() {
        return NodeRun::new(name, NodeResult::Unreachable);
    }
    let mut commands = Vec::new();
    let action = services::mta_action(rollout.restart, node.platform, node.session.flavour());
    // Where the mail log ends before the reload or restart: the gate reads what follows.
    let log_offset = match action {
        Some(_) => mail_log_size(&node).await,
        None => None,
    };
    let restart = match action {
        None => RestartRecord {
            method:
                "none (left to zmconfigd, which applies LDAP changes within its polling interval)"
                    .into(),
            started_at: jiff::Timestamp::now().to_string(),
            finished_at: jiff::Timestamp::now().to_string(),
            ok: true,
            output: String::new(),
        },
        Some(action) => {
            let label = action.label();
            let _ = journal.record(&name, &format!("{phase}restart-started"), &label);
            let started_at = jiff::Timestamp::now().to_string();
            // A reload or restart already sent is waited for even after a second Ctrl-C:
            // cutting it off would leave the node in an unknown state.
            let timeout = rollout.health_timeout.max(node.host.command_timeout);
            let outcome = match &action {
                MtaAction::Full(step) => run_detached(&node, step, timeout, &mut commands).await,
                MtaAction::Reload { render, reload } => {
                    match render_until_in_force(
                        &node,
                        render,
                        &rollout,
                        &playbook,
                        &eff,
                        &mut commands,
                    )
                    .await
                    {
                        Ok(()) => {
                            let _ = journal.record(&name, &format!("{phase}rendered"), "");
                            run_step(&node, reload, "reload", timeout, &mut commands).await
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
                let _ = journal.record(&name, &format!("{phase}restart-failed"), &why);
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
                return NodeRun {
                    restart: Some(record),
                    commands,
                    ..NodeRun::new(name, failed)
                };
            }
            let _ = journal.record(&name, &format!("{phase}restarted"), "");
            record
        }
    };
    let restart = Some(restart);
    let gate = tokio::select! {
        g = health_gate(&node, &rollout, &playbook, &eff, log_offset) => g,
        _ = hard.cancelled() => GateRecord {
            passed: false,
            finished_at: jiff::Timestamp::now().to_string(),
            attempts: 0,
            checks: vec![GateCheck { name: "gate".into(), ok: false, detail: "cancelled by a second Ctrl-C".into() }],
            vantage: String::new(),
            smtp_transcript: Vec::new(),
        },
    };
    let result = if gate.passed {
        // Not `done` yet: a staged node is done once its cluster is promoted.
        let _ = journal.record(&name, &format!("{phase}gate-passed"), &node.stage.server);
        NodeResult::Restarted
    } else {
        let why: Vec<String> = gate
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        let _ = journal.record(&name, &format!("{phase}gate-failed"), &why.join("; "));
        NodeResult::Failed {
            reason: format!("health gate failed: {}", why.join("; ")),
        }
    };
    NodeRun {
        restart,
        gate: Some(gate),
        commands,
        ..NodeRun::new(name, result)
    }
}

/// Tries again until a deadline: 200 ms before the second try, twice as long before each
/// next one, at most 5 s. The gate, the render wait and the detached restart's poll share it.
struct Backoff {
    deadline: Instant,
    delay: Duration,
}

impl Backoff {
    fn new(limit: Duration) -> Backoff {
        Backoff {
            deadline: Instant::now() + limit,
            delay: Duration::from_millis(200),
        }
    }

    /// Sleeps before the next try; `false`, without sleeping, when that try would start
    /// past the deadline.
    async fn wait(&mut self) -> bool {
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
async fn run_step(
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
/// and a closed channel kills it with SIGPIPE half-way (CARBONIO.md §0.5), and a timeout
/// would do the same. `setsid -f` starts it in its own session with its output in a file
/// on the node; the tool polls for the exit status it leaves beside it (the channel may
/// close meanwhile: the restart goes on), then reads the output and removes both files.
async fn run_detached(
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
async fn render_until_in_force(
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
async fn read_effective(
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
fn not_rendered(
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

/// How one gate attempt ended.
enum GateTry {
    Pass,
    /// Not up yet (services starting, 421, refused): try again until the deadline.
    Retry,
    /// A definite failure (451, 250 for an unknown recipient, spawn user missing).
    Fail,
}

async fn health_gate(
    node: &NodeCtx,
    rollout: &Rollout,
    playbook: &Playbook,
    eff: &EffectivePlan,
    log_offset: Option<u64>,
) -> GateRecord {
    let mut backoff = Backoff::new(rollout.health_timeout);
    let vantage = match rollout.probe_from {
        ProbeFrom::Node => "node (direct-tcpip to 127.0.0.1:25; a mynetworks client, permitted before the policy service is consulted)".to_string(),
        ProbeFrom::Orchestrator => format!("orchestrator (TCP to {}:25)", node.host.address),
    };
    let mut rec = GateRecord {
        passed: false,
        finished_at: String::new(),
        attempts: 0,
        checks: Vec::new(),
        vantage,
        smtp_transcript: Vec::new(),
    };
    loop {
        rec.attempts += 1;
        let (checks, transcript, verdict) =
            gate_once(node, rollout, playbook, eff, log_offset).await;
        rec.checks = checks;
        rec.smtp_transcript = transcript;
        rec.finished_at = jiff::Timestamp::now().to_string();
        match verdict {
            GateTry::Pass => {
                rec.passed = true;
                return rec;
            }
            GateTry::Fail => return rec,
            GateTry::Retry => {
                if !backoff.wait().await {
                    rec.checks.push(GateCheck {
                        name: "timeout".into(),
                        ok: false,
                        detail: format!(
                            "not healthy within health_timeout {}",
                            crate::duration::display(rollout.health_timeout)
                        ),
                    });
                    return rec;
                }
            }
        }
    }
}

/// The lines of a failing policy service or Postfix in a mail log (CARBONIO.md §0.2; Postfix
/// `spawn/spawn.c`, `util/attr_clnt.c`, `util/attr_scan_plain.c`).
const MAIL_LOG_FAILURES: [&str; 4] = [
    "unknown user name",
    "premature end-of-input on private/policy",
    "problem talking to server private/policy",
    "fatal:",
];

/// The mail log's size now (the gate reads what is written after it), or `None` when it
/// cannot be read (the check then says so).
async fn mail_log_size(node: &NodeCtx) -> Option<u64> {
    let log = quote(node.session.flavour().mail_log()).ok()?;
    let o = node
        .session
        .exec(
            crate::ssh::RunAs::Service,
            &format!("stat -L -c %s {log}"),
            None,
            node.host.command_timeout,
        )
        .await
        .ok()?;
    String::from_utf8_lossy(&o.stdout).trim().parse().ok()
}

/// The mail log since the reload or restart: no line of THIS host (a log host collects
/// others' too) saying the policy service or Postfix failed. It never stands alone: the
/// policy socket is asked first.
/// This host's lines of the mail log written after `offset` that contain one of
/// `patterns` (the log may also hold other nodes' lines: a central log host).
async fn log_lines_since(
    node: &NodeCtx,
    offset: u64,
    patterns: &[&str],
) -> Result<Vec<String>, String> {
    let log = node.session.flavour().mail_log();
    let q = quote(log).map_err(|e| format!("{log} cannot be quoted: {e}"))?;
    let patterns: String = patterns
        .iter()
        .map(|p| quote(p).map(|p| format!(" -e {p}")))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let script = format!("tail -c +{} {q} | grep -F{patterns}", offset + 1);
    let out = node
        .session
        .exec(
            crate::ssh::RunAs::Service,
            &script,
            None,
            node.host.command_timeout,
        )
        .await
        .map_err(|e| format!("cannot read {log}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = node.log_names.iter().map(String::as_str).collect();
    Ok(text
        .lines()
        .filter(|l| {
            crate::carbonio::running::host_of(l)
                .is_some_and(|h| crate::carbonio::running::is_this_host(h, &names))
        })
        .map(str::to_string)
        .collect())
}

async fn mail_log_check(node: &NodeCtx, offset: u64) -> (GateCheck, GateTry) {
    let log = node.session.flavour().mail_log();
    let check = |ok: bool, detail: String| GateCheck {
        name: "mail-log".into(),
        ok,
        detail,
    };
    match log_lines_since(node, offset, &MAIL_LOG_FAILURES).await {
        Err(e) => (check(false, e), GateTry::Retry),
        Ok(mine) if mine.is_empty() => (
            check(
                true,
                format!("{log} since the reload: no policy or Postfix failure from this host"),
            ),
            GateTry::Pass,
        ),
        Ok(mine) => (
            check(
                false,
                format!("{log} since the reload: {}", mine.join(" | ")),
            ),
            GateTry::Fail,
        ),
    }
}

/// Whether the outside probe was outside `mynetworks`, from the client address Postfix
/// logged for it (see [`super::vantage`]).
async fn vantage_check(
    node: &NodeCtx,
    offset: Option<u64>,
    local: Option<std::net::IpAddr>,
    facts: &crate::carbonio::gather::EffectiveFacts,
) -> (GateCheck, GateTry) {
    let check = |ok: bool, detail: String| GateCheck {
        name: "vantage".into(),
        ok,
        detail,
    };
    let log = node.session.flavour().mail_log();
    let Some(offset) = offset else {
        return (
            check(false, format!("vantage unverified: {log} cannot be read")),
            GateTry::Fail,
        );
    };
    let lines = match log_lines_since(node, offset, &[": connect from "]).await {
        Ok(l) => l,
        Err(e) => {
            return (
                check(false, format!("vantage unverified: {e}")),
                GateTry::Retry,
            );
        }
    };
    let logged = super::vantage::logged_clients(lines.iter().map(String::as_str));
    let Some(client) = super::vantage::probe_client(&logged, local) else {
        return (
            check(
                false,
                format!(
                    "vantage unverified: Postfix logged {} for the probe in {log} (connect from: {logged:?})",
                    if logged.is_empty() {
                        "no client"
                    } else {
                        "several clients"
                    }
                ),
            ),
            GateTry::Retry,
        );
    };
    let Some(mynetworks) = facts.postconf.get("mynetworks") else {
        return (
            check(
                false,
                "vantage unverified: postconf shows no mynetworks".into(),
            ),
            GateTry::Fail,
        );
    };
    match super::vantage::in_mynetworks(client, mynetworks) {
        Some(false) => (
            check(
                true,
                format!(
                    "Postfix logged the probe from {client}, outside mynetworks ({mynetworks})"
                ),
            ),
            GateTry::Pass,
        ),
        Some(true) => (
            check(
                false,
                format!(
                    "vantage invalid: Postfix logged the probe from {client}, inside mynetworks ({mynetworks}): permitted before the policy service is consulted, so this probe cannot see it fail; probe from a host outside mynetworks"
                ),
            ),
            GateTry::Fail,
        ),
        None => (
            check(
                false,
                format!(
                    "vantage unverified: {client} is not in mynetworks' addresses, but its lookups ({mynetworks}) cannot be evaluated here"
                ),
            ),
            GateTry::Fail,
        ),
    }
}

/// The gate's probe from outside `mynetworks` (`probe_from = "orchestrator"`), in one SMTP
/// session from this machine to the node's port 25: a known recipient must get 250 (a
/// `451 4.3.5` there is the policy service failing), an unknown one in a local domain and
/// one in an alias domain 5xx; RCPT only, RSET between, never DATA. The vantage is
/// verified first from what Postfix logged.
async fn outside_probe(
    node: &NodeCtx,
    facts: &crate::carbonio::gather::EffectiveFacts,
) -> (Vec<GateCheck>, Vec<String>, GateTry) {
    let mut checks = Vec::new();
    let mut asked: Vec<(&'static str, String)> = Vec::new();
    match &node.known_rcpt {
        Some(Ok(k)) => asked.push(("smtp-known", k.clone())),
        Some(Err(why)) => {
            checks.push(GateCheck {
                name: "smtp-known".into(),
                ok: false,
                detail: why.clone(),
            });
            return (checks, Vec::new(), GateTry::Fail);
        }
        None => checks.push(GateCheck {
            name: "smtp-known".into(),
            ok: true,
            detail: "not asked: no `known_rcpt` (playbook [rollout], or the host's inventory var)"
                .into(),
        }),
    }
    if let Some(u) = &node.rcpt {
        asked.push(("smtp", u.clone()));
    }
    match &node.alias_rcpt {
        Some(a) => asked.push(("smtp-alias", a.clone())),
        None => checks.push(GateCheck {
            name: "smtp-alias".into(),
            ok: true,
            detail: "not applicable: the cluster has no alias domain".into(),
        }),
    }
    if asked.is_empty() {
        return (checks, Vec::new(), GateTry::Pass);
    }
    let offset = mail_log_size(node).await;
    let stream = match tokio::net::TcpStream::connect((node.host.address.as_str(), 25)).await {
        Ok(s) => s,
        Err(e) => {
            checks.push(GateCheck {
                name: "smtp".into(),
                ok: false,
                detail: format!("{}:25: {e}", node.host.address),
            });
            return (checks, Vec::new(), GateTry::Retry);
        }
    };
    let local = stream.local_addr().ok().map(|a| a.ip());
    let rcpts: Vec<&str> = asked.iter().map(|(_, r)| r.as_str()).collect();
    let ex = match smtp::probe_rcpts(
        stream,
        "carbonio-fleet.probe",
        &rcpts,
        Duration::from_secs(30),
    )
    .await
    {
        Ok(ex) => ex,
        Err(e) => {
            checks.push(GateCheck {
                name: "smtp".into(),
                ok: false,
                detail: e.to_string(),
            });
            return (checks, Vec::new(), GateTry::Retry);
        }
    };
    if ex.rcpts.len() < asked.len() {
        let (detail, verdict) = match &ex.early {
            Some(r) if r.code == 421 => (
                format!("{} {} (still starting)", r.code, r.text),
                GateTry::Retry,
            ),
            Some(r) => (
                format!("dialogue stopped: {} {}", r.code, r.text),
                GateTry::Fail,
            ),
            None => ("no reply".to_string(), GateTry::Retry),
        };
        checks.push(GateCheck {
            name: "smtp".into(),
            ok: false,
            detail,
        });
        return (checks, ex.transcript, verdict);
    }
    let (v, verdict) = vantage_check(node, offset, local, facts).await;
    checks.push(v);
    if !matches!(verdict, GateTry::Pass) {
        return (checks, ex.transcript, verdict);
    }
    let mut overall = GateTry::Pass;
    for ((name, rcpt), r) in asked.iter().zip(&ex.rcpts) {
        let said = format!("RCPT TO:<{rcpt}> → {} {}", r.code, r.text);
        let (ok, detail) = match (*name, r.code) {
            ("smtp-known", 200..=299) => (true, said),
            ("smtp-known", 400..=499) => (
                false,
                format!(
                    "{said}: a known recipient deferred from outside mynetworks: the policy service is not answering (451 4.3.5 is smtpd_policy_service_default_action)"
                ),
            ),
            ("smtp-known", _) => (false, format!("{said}: a known recipient was refused")),
            (_, 500..=599) => (true, said),
            (_, 400..=499) => (false, format!("{said}: a temporary failure")),
            (_, _) => (
                false,
                format!("{said}: an unknown recipient was accepted (backscatter)"),
            ),
        };
        if !ok {
            overall = GateTry::Fail;
        }
        checks.push(GateCheck {
            name: (*name).into(),
            ok,
            detail,
        });
    }
    (checks, ex.transcript, overall)
}

/// The policy service asked on its socket, as smtpd asks it (CARBONIO.md §0.3): a known
/// or local recipient must get `action=dunno` (or any action but a refusal of the whole
/// request), an unknown address in an alias domain `action=reject 5.1.1 …`. An error text
/// or EOF instead is a daemon that cannot start: the gate fails at once. A socket that
/// cannot be opened yet (the reload just made it) is tried again until the deadline.
async fn policy_socket_check(
    node: &NodeCtx,
    rollout: &Rollout,
    facts: &crate::carbonio::gather::EffectiveFacts,
) -> (GateCheck, GateTry) {
    let check = |ok: bool, detail: String| GateCheck {
        name: "policy-socket".into(),
        ok,
        detail,
    };
    if !rollout.policy_socket {
        return (
            check(
                true,
                "not asked: `policy_socket = false` in the playbook".into(),
            ),
            GateTry::Pass,
        );
    }
    let Some(queue) = facts
        .postconf
        .get("queue_directory")
        .filter(|q| !q.is_empty())
    else {
        return (
            check(
                false,
                "postconf has no queue_directory: the socket cannot be found".into(),
            ),
            GateTry::Retry,
        );
    };
    let path = format!("{queue}/private/policy");
    let timeout = Duration::from_secs(30);
    let local = node.rcpt.clone().unwrap_or_else(|| "postmaster".into());
    let mut asked = vec![(local, false)];
    if let Some(a) = &node.alias_rcpt {
        asked.push((a.clone(), true));
    }
    let mut answers = Vec::new();
    let mut via = "";
    for (rcpt, must_reject) in asked {
        let answer = match node.session.direct_streamlocal(&path).await {
            Ok(stream) => crate::engine::policy_probe::ask(stream, &rcpt, timeout).await,
            // OpenSSH answers every failed open alike (no socket, no permission: private/
            // is 0700 postfix, forwarding off): ask on the node as root instead.
            Err(open) => match ask_on_node(node, &path, &rcpt, timeout).await {
                Some(answer) => {
                    via = " (asked on the node as root: direct-streamlocal was refused)";
                    answer
                }
                None => {
                    return (
                        check(
                            false,
                            format!(
                                "cannot open {path} ({open}), nor find it on the node as root; it exists only once the running master loaded the policy entry"
                            ),
                        ),
                        GateTry::Retry,
                    );
                }
            },
        };
        match answer {
            Ok(action) => {
                let rejects =
                    action.starts_with("action=reject 5") || action.starts_with("action=550");
                if must_reject && !rejects {
                    return (
                        check(
                            false,
                            format!(
                                "{rcpt} (unknown, alias domain): {action}, expected action=reject 5.1.1"
                            ),
                        ),
                        GateTry::Fail,
                    );
                }
                if !must_reject && rejects {
                    return (
                        check(
                            false,
                            format!("{rcpt}: {action}: the service refuses a local recipient"),
                        ),
                        GateTry::Fail,
                    );
                }
                answers.push(format!("{rcpt}: {action}"));
            }
            Err(why) => {
                return (
                    check(
                        false,
                        format!(
                            "{path}: {why}: the policy daemon cannot answer; Postfix answers 451 4.3.5"
                        ),
                    ),
                    GateTry::Fail,
                );
            }
        }
    }
    (
        check(true, format!("{path} answers{via}: {}", answers.join("; "))),
        GateTry::Pass,
    )
}

/// Asks the policy socket with the on-node client as root; `None` when that cannot run
/// or finds no socket (the caller tries again until its deadline).
async fn ask_on_node(
    node: &NodeCtx,
    path: &str,
    rcpt: &str,
    timeout: Duration,
) -> Option<Result<String, String>> {
    use crate::engine::policy_probe;
    let script = policy_probe::on_node_command(path).ok()?;
    let request = policy_probe::request(rcpt);
    let o = node
        .session
        .exec(
            crate::ssh::RunAs::Root,
            &script,
            Some(request.as_bytes()),
            timeout,
        )
        .await
        .ok()?;
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    match o.end {
        // `test -S` found no socket, or become-root is not allowed.
        ExecEnd::Status(1) if stdout.trim().is_empty() && stderr.trim().is_empty() => None,
        ExecEnd::Status(0) => Some(policy_probe::judge(&policy_probe::reply_lines(&stdout))),
        _ if stderr.contains("connect ") || stderr.contains("a password is required") => None,
        _ => Some(Err(format!(
            "the on-node client failed: {}",
            stderr.trim().lines().last().unwrap_or("(no message)")
        ))),
    }
}

async fn gate_once(
    node: &NodeCtx,
    rollout: &Rollout,
    playbook: &Playbook,
    eff: &EffectivePlan,
    log_offset: Option<u64>,
) -> (Vec<GateCheck>, Vec<String>, GateTry) {
    let mut checks = Vec::new();
    let timeout = node.host.command_timeout;
    // 1. services up
    let st = services::status_step(node.platform);
    let svc = match node
        .session
        .exec(st.run_as, &st.script, None, timeout)
        .await
    {
        Ok(o) => {
            let code = match o.end {
                ExecEnd::Status(c) => Some(c),
                _ => None,
            };
            services::services_up(node.platform, &String::from_utf8_lossy(&o.stdout), code)
        }
        Err(e) => Err(e.to_string()),
    };
    let svc_ok = svc.is_ok();
    checks.push(GateCheck {
        name: "services".into(),
        ok: svc_ok,
        detail: svc.err().unwrap_or_else(|| "up".into()),
    });
    if !svc_ok {
        return (checks, Vec::new(), GateTry::Retry);
    }
    // 2. effective Postfix config and the policy service's spawn user
    let facts = match read_effective(node, eff).await {
        Ok(f) => f,
        Err(e) => {
            checks.push(GateCheck {
                name: "postconf".into(),
                ok: false,
                detail: e,
            });
            return (checks, Vec::new(), GateTry::Retry);
        }
    };
    let mismatches = not_rendered(node, playbook, &facts);
    let pc_ok = mismatches.is_empty();
    checks.push(GateCheck {
        name: "postconf".into(),
        ok: pc_ok,
        detail: if pc_ok {
            "effective config matches LDAP".into()
        } else {
            mismatches.join("; ")
        },
    });
    if let Some(line) = &facts.policy_service {
        let problem = facts.spawn_problem();
        let ok = problem.is_none();
        let user = line.user.clone().unwrap_or_default();
        checks.push(GateCheck {
            name: "policy".into(),
            ok,
            detail: match problem {
                None => format!(
                    "policy service spawns as `{user}`, which exists and can read localconfig.xml"
                ),
                Some(p) => format!("{p}: Postfix answers 451 4.3.5 ({})", line.line),
            },
        });
        if !ok {
            return (checks, Vec::new(), GateTry::Fail);
        }
        match policy_socket_check(node, rollout, &facts).await {
            (check, GateTry::Pass) => checks.push(check),
            (check, verdict) => {
                checks.push(check);
                return (checks, Vec::new(), verdict);
            }
        }
    }
    if let Some(offset) = log_offset {
        let (check, verdict) = mail_log_check(node, offset).await;
        checks.push(check);
        if !matches!(verdict, GateTry::Pass) {
            return (checks, Vec::new(), verdict);
        }
    }
    if !pc_ok {
        return (checks, Vec::new(), GateTry::Retry);
    }
    // 3. SMTP. From outside mynetworks: vantage, known, unknown and alias recipients.
    if rollout.probe_from == ProbeFrom::Orchestrator && !node.old_values {
        let (mut more, transcript, verdict) = outside_probe(node, &facts).await;
        checks.append(&mut more);
        return (checks, transcript, verdict);
    }
    // From the node: an unknown recipient in a hosted domain must be rejected with 5xx.
    let Some(rcpt) = &node.rcpt else {
        checks.push(GateCheck {
            name: "smtp".into(),
            ok: true,
            detail: "skipped: no playbook `rcpt` and no local domain without a catch-all to probe"
                .into(),
        });
        return (checks, Vec::new(), GateTry::Pass);
    };
    let step = Duration::from_secs(30);
    let exchange = match rollout.probe_from {
        ProbeFrom::Node => match node.session.direct_tcpip("127.0.0.1", 25).await {
            Ok(s) => smtp::probe(s, "carbonio-fleet.probe", rcpt, step)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        ProbeFrom::Orchestrator => {
            match tokio::net::TcpStream::connect((node.host.address.as_str(), 25)).await {
                Ok(s) => smtp::probe(s, "carbonio-fleet.probe", rcpt, step)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    match exchange {
        Err(e) => {
            checks.push(GateCheck {
                name: "smtp".into(),
                ok: false,
                detail: e,
            });
            (checks, Vec::new(), GateTry::Retry)
        }
        Ok(ex) => {
            let reply = ex.deciding_reply().cloned();
            let (ok, verdict, detail) = match (&ex.rcpt, reply) {
                (Some(r), _) if (500..600).contains(&r.code) => (
                    true,
                    GateTry::Pass,
                    format!("RCPT TO:<{rcpt}> → {} {}", r.code, r.text),
                ),
                (Some(r), _) if node.old_values && (200..300).contains(&r.code) => (
                    true,
                    GateTry::Pass,
                    format!(
                        "RCPT TO:<{rcpt}> → {} {} (the old values, restored by the rollback, accept it as before)",
                        r.code, r.text
                    ),
                ),
                (_, Some(r)) if r.code == 421 => (
                    false,
                    GateTry::Retry,
                    format!("{} {} (still starting)", r.code, r.text),
                ),
                (Some(r), _) if (400..500).contains(&r.code) => (
                    false,
                    GateTry::Fail,
                    format!(
                        "RCPT TO:<{rcpt}> → {} {}: a temporary failure for every recipient",
                        r.code, r.text
                    ),
                ),
                (Some(r), _) => (
                    false,
                    GateTry::Fail,
                    format!(
                        "RCPT TO:<{rcpt}> → {} {}: an unknown recipient was accepted (backscatter)",
                        r.code, r.text
                    ),
                ),
                (None, Some(r)) => (
                    false,
                    GateTry::Retry,
                    format!("dialogue stopped: {} {}", r.code, r.text),
                ),
                (None, None) => (false, GateTry::Retry, "no reply".into()),
            };
            checks.push(GateCheck {
                name: "smtp".into(),
                ok,
                detail,
            });
            (checks, ex.transcript, verdict)
        }
    }
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
fn staged_records(stage: &NodeStage, state: &str) -> Vec<StagedRecord> {
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
async fn stage_group(nodes: Vec<NodeCtx>, env: TaskEnv) -> Vec<NodeRun> {
    let writers: Vec<&NodeCtx> = nodes
        .iter()
        .filter(|n| !n.unstage && n.stage.to_write().next().is_some())
        .collect();
    let mut stage_rec: Option<CommandRecord> = None;
    let mut stage_err: Option<String> = None;
    if !writers.is_empty() {
        match writers.iter().find(|n| !n.session.is_closed()) {
            None => stage_err = Some("no open session to stage on".into()),
            Some(exec) => {
                let mut lines = Vec::new();
                for n in &writers {
                    let todo: Vec<&StageEntry> = n.stage.to_write().collect();
                    lines.extend(entry_changes(&n.stage.server, &todo, false));
                }
                let servers: Vec<&str> = writers.iter().map(|n| n.stage.server.as_str()).collect();
                for n in &writers {
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
                for n in &writers {
                    let what: Vec<String> = n.stage.to_write().map(StageEntry::describe).collect();
                    let step = if res.is_ok() {
                        "staged"
                    } else {
                        "stage-failed"
                    };
                    let _ = env.journal.record(&n.host.name, step, &what.join("; "));
                }
                stage_err = res.err();
                stage_rec = Some(rec);
            }
        }
    }
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

/// Restores a node's server entry as it was before staging (one `zmprov` batch with
/// read-back, on its own session).
async fn roll_back_entries(node: &NodeCtx, env: &TaskEnv) -> (CommandRecord, Result<(), String>) {
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
async fn roll_back(node: &NodeCtx, env: &TaskEnv) -> (RollbackRecord, Vec<CommandRecord>, bool) {
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
type PinnedAttr = (String, Vec<String>, String);

/// What promotion needs to know about one cluster.
struct ClusterPromotion<'a> {
    cluster: &'a str,
    /// The global changes (`mcf …`).
    global: &'a NodeBatch,
    view: ClusterView,
    /// Nodes whose entries promotion removes (server, entries), and a session to run on.
    entries: Vec<(String, Vec<StageEntry>)>,
    /// Pinned nodes: a permanent entry with the old values is written for them before
    /// the global config changes.
    pins: Vec<(String, Vec<PinnedAttr>)>,
    exec: Option<(&'a Host, &'a Session, String)>,
}

/// Promotes one cluster, or says why not.
async fn promote(
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
    let mut changes = Vec::new();
    for (srv, attrs) in &p.pins {
        for (attr, old, control) in attrs {
            // An unset old value cannot be pinned: a server entry cannot say "unset"
            // over a global value.
            if old.is_empty() {
                continue;
            }
            let desired = p.global.changes.iter().find(|c| &c.attr == attr);
            let mut args = vec!["ms".to_string(), srv.clone()];
            for v in old {
                args.push(attr.clone());
                args.push(v.clone());
            }
            changes.push(changes::Change {
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
    let pinned_lines = changes.len();
    changes.extend(p.global.changes.iter().cloned());
    for (srv, entries) in &p.entries {
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
    let batch = NodeBatch {
        node: host.name.clone(),
        changes,
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
            rec.detail = format!(
                "every MTA of the cluster ({}) passed its gate with the staged values: global config written, {removed} temporary server entr{} removed",
                rec.mtas.len(),
                if removed == 1 { "y" } else { "ies" }
            );
            if !p.pins.is_empty() {
                let names: Vec<&str> = p.pins.iter().map(|(s, _)| s.as_str()).collect();
                rec.detail.push_str(&format!(
                    "; pinned to the old values by a permanent server entry: {}",
                    names.join(", ")
                ));
            }
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

/// The options of apply that shape its staging plan (`plan` uses the defaults: it has
/// none of these flags).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StagingOptions {
    pub replace_overrides: bool,
    pub unstage: bool,
    pub resume: bool,
}

impl From<&ApplyOptions> for StagingOptions {
    fn from(o: &ApplyOptions) -> Self {
        StagingOptions {
            replace_overrides: o.replace_overrides,
            unstage: o.unstage,
            resume: o.resume,
        }
    }
}

/// Hosts the inventory pins to the old values (var `pin = "true"`).
pub(crate) fn pinned_hosts(hosts: &[Host]) -> BTreeSet<String> {
    hosts
        .iter()
        .filter(|h| h.vars.get(stage::PIN_VAR).is_some_and(|v| v == "true"))
        .map(|h| h.name.clone())
        .collect()
}

/// The staging plan for this run: `--replace-overrides` decides the masked case; with
/// `--unstage` only the entries found staged, and no other change. `plan` calls it too,
/// so that it shows what apply would really do.
pub(crate) fn plan_staging(
    opts: StagingOptions,
    playbook: &Playbook,
    before: &[HostReport],
    pinned: &BTreeSet<String>,
    change_plan: &mut ChangePlan,
) -> stage::StagePlan {
    let blocked: Vec<(String, String)> = change_plan
        .blocked
        .iter()
        .map(|b| (b.cluster.clone(), b.control.clone()))
        .collect();
    let mut plan = stage::plan(playbook, before, &blocked, opts.replace_overrides);
    // A pinned node is not staged: promotion gives it a permanent entry with the old
    // values instead.
    plan.nodes.retain(|name, _| !pinned.contains(name));
    if opts.unstage {
        *change_plan = ChangePlan::default();
        for n in plan.nodes.values_mut() {
            n.entries.retain(|e| e.present);
            n.masked.clear();
        }
        plan.nodes.retain(|_, n| !n.entries.is_empty());
    } else if !opts.resume {
        // A cluster that holds staged entries of another run (in LDAP: another machine,
        // inventory or report directory may have written them) is not this run's to
        // continue: only `--resume` finishes it, only `--unstage` undoes it.
        // Per cluster, its hosts that hold entries staged by an earlier run.
        let mut taken: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for h in before {
            if plan
                .nodes
                .get(&h.name)
                .is_some_and(|n| n.entries.iter().any(|e| e.present))
            {
                taken
                    .entry(h.cluster.clone())
                    .or_default()
                    .push(h.name.clone());
            }
        }
        for (cluster, holders) in &taken {
            if let Some(g) = change_plan.global.remove(cluster) {
                for c in g.changes {
                    change_plan.blocked.push(changes::Blocked {
                        control: c.control,
                        cluster: cluster.clone(),
                        because_of: holders.clone(),
                        reason: format!(
                            "the cluster holds staged entries of another run (on {}): finish that run with `carbonio-fleet apply --resume`, or undo it with `carbonio-fleet apply --unstage`",
                            holders.join(", ")
                        ),
                    });
                }
            }
            let members: BTreeSet<&str> = before
                .iter()
                .filter(|h| &h.cluster == cluster)
                .map(|h| h.name.as_str())
                .collect();
            plan.nodes
                .retain(|name, _| !members.contains(name.as_str()));
        }
    }
    plan
}

/// Decides and runs the promotion of every cluster that staged global changes.
#[allow(clippy::too_many_arguments)]
async fn promote_all(
    promoting: &BTreeSet<String>,
    pinned: &BTreeSet<String>,
    change_plan: &ChangePlan,
    stage_plan: &stage::StagePlan,
    gathers: &[HostGather],
    loaded: &Loaded,
    runs: &BTreeMap<String, NodeRun>,
    outcome: &crate::engine::rollout::Outcome,
    change_failures: &BTreeMap<String, HostError>,
    stopped: Option<String>,
    (journal, events): (&Journal, &Events),
) -> Vec<PromotionRecord> {
    let mut ready = Vec::new();
    for cluster in promoting {
        let Some(global) = change_plan.global.get(cluster) else {
            continue;
        };
        let members: Vec<&HostGather> = gathers
            .iter()
            .filter(|g| &g.host.cluster == cluster)
            .collect();
        let in_inventory = loaded
            .inventory
            .hosts
            .iter()
            .filter(|h| &h.cluster == cluster)
            .count();
        let (mut view, mtas) = ClusterView::gathered(&members, in_inventory);
        let mut entries = Vec::new();
        let mut pins = Vec::new();
        let mut exec = None;
        for (g, facts) in mtas {
            let name = &g.host.name;
            let stage = stage_plan.nodes.get(name);
            let node_state = outcome.nodes.iter().find(|n| &n.name == name);
            if pinned.contains(name) {
                // Its own entry keeps the old values (written before the mcf, in the
                // promotion batch).
                pins.push((
                    facts.hostname.clone(),
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
                        .collect(),
                ));
                view.judge(name, facts, Standing::Ready);
                continue;
            }
            let standing = if let Some(e) = change_failures.get(name) {
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
                match runs.get(name).map(|r| &r.result) {
                    Some(NodeResult::Restarted) => Standing::Ready,
                    Some(NodeResult::Failed { reason }) => {
                        Standing::Holds(format!("failed: {reason}"))
                    }
                    Some(NodeResult::Unreachable) => {
                        Standing::Holds("unreachable before its reload".into())
                    }
                    None => match node_state.map(|n| &n.state) {
                        Some(crate::engine::rollout::NodeState::NotAttempted { reason }) => {
                            Standing::Holds(format!("not attempted ({reason})"))
                        }
                        // Nothing to stage (its own entry already gives the desired
                        // values), or staged and proven by an earlier run.
                        _ => Standing::Ready,
                    },
                }
            };
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
        ready.push(ClusterPromotion {
            cluster,
            global,
            view,
            entries,
            pins,
            exec,
        });
    }
    // Clusters are independent (one LDAP each): their promotions run concurrently.
    futures::future::join_all(
        ready
            .into_iter()
            .map(|p| promote(p, &loaded.playbook, stopped.clone(), (journal, events))),
    )
    .await
}

/// What `--resume` continues: the last apply's journal (found past a `check` that moved
/// `latest`), read once, before this run's directory exists.
struct Resume {
    path: std::path::PathBuf,
    entries: Vec<journal::Entry>,
}

impl Resume {
    fn read(report_dir: &std::path::Path) -> Result<Resume, String> {
        let path = store::newest_with(report_dir, journal::FILE_NAME)
            .unwrap_or_else(|| report_dir.join("latest").join(journal::FILE_NAME));
        let entries = journal::read(&path)
            .map_err(|e| format!("--resume: cannot read `{}`: {e}", path.display()))?;
        Ok(Resume { path, entries })
    }

    /// Hosts whose gate passed there: a staged node proven there is not gated again.
    /// A later failure or rollback cancels it.
    fn proven(&self) -> BTreeSet<String> {
        let mut proven = BTreeSet::new();
        for e in &self.entries {
            match e.step.as_str() {
                "gate-passed" | "proven-earlier" => {
                    proven.insert(e.host.clone());
                }
                "gate-failed" | "rolled-back" | "stage-failed" | "restart-failed" => {
                    proven.remove(&e.host);
                }
                _ => {}
            }
        }
        proven
    }

    /// The run directory it continues (the report's `resumed_from`).
    fn run_name(&self) -> Option<String> {
        self.path
            .parent()?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n != "latest")
    }
}

/// Prints the plan summary and asks; `Ok(true)` to go ahead.
fn confirm(
    plan: &ChangePlan,
    staging: &stage::StagePlan,
    restarts: usize,
    spawn_fixes: &[(String, Flavour)],
) -> bool {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "\napply will:");
    for (host, flavour) in spawn_fixes {
        let _ = writeln!(
            err,
            "  {host}: as root, back up {tpl} and set user={user} on its policy entry; as {user}, configrewrite mta",
            tpl = flavour.master_template(),
            user = flavour.user(),
        );
    }
    if !spawn_fixes.is_empty() {
        let _ = writeln!(
            err,
            "  then read those nodes again: the policy controls blocked below may then be changed too (and their MTAs restarted)"
        );
    }
    for (cluster, b) in &plan.global {
        let _ = writeln!(
            err,
            "  cluster {cluster}: stage on each MTA's server entry, batch by batch; once every MTA passed its gate, promote (on {}):",
            b.node
        );
        for c in &b.changes {
            let _ = writeln!(
                err,
                "    zmprov {}",
                crate::ssh::command_line(&c.args).unwrap_or_default()
            );
        }
    }
    for (node, b) in &plan.server {
        for c in &b.changes {
            let _ = writeln!(
                err,
                "  {node}: zmprov {}",
                crate::ssh::command_line(&c.args).unwrap_or_default()
            );
        }
    }
    for b in &plan.blocked {
        let _ = writeln!(
            err,
            "  NOT changing {} in cluster {}: {}",
            b.control, b.cluster, b.reason
        );
    }
    for (node, st) in &staging.nodes {
        for e in &st.entries {
            let _ = writeln!(err, "  {node}: {}", e.describe());
        }
        for m in &st.masked {
            let _ = writeln!(err, "  {node}: NOT staging {}: {}", m.control, m.reason);
        }
    }
    let _ = writeln!(
        err,
        "  then reload (or restart) up to {restarts} MTA node(s) in staggered batches"
    );
    let _ = write!(err, "Proceed? [y/N] ");
    let _ = err.flush();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim(), "y" | "Y" | "yes" | "YES")
}

/// Reads a plan file and the run options its selection gives (`--limit` and the like
/// given too must say the same as the plan's).
fn read_plan(
    path: &std::path::Path,
    run: &RunOptions,
) -> Result<(super::plan_file::PlanFile, RunOptions), String> {
    let plan = super::plan_file::PlanFile::read(path).map_err(|e| e.to_string())?;
    let sel =
        super::plan_file::selection_for_apply(&plan.selection, &super::plan::selection_of(run))?;
    let shard = match &sel.shard {
        None => None,
        Some(s) => Some(s.parse::<crate::inventory::Shard>().map_err(|e| {
            format!(
                "plan file `{}` is not a carbonio-fleet plan: selection.shard: {e}",
                path.display()
            )
        })?),
    };
    let run = RunOptions {
        limit: sel.limit,
        shard,
        controls: sel.controls,
        skip_controls: sel.skip_controls,
        ..run.clone()
    };
    Ok((plan, run))
}

/// Whether the fleet apply just gathered is the one the plan was made from, and apply's
/// decisions are the plan's; otherwise prints every difference and gives the exit code:
/// 3 when a planned host could not be gathered, else 2 (the fleet drifted from the
/// plan). Nothing has been changed on any node at this point.
fn matches_plan(
    path: &std::path::Path,
    plan: &super::plan_file::PlanFile,
    (playbook, gathers, before): (&Playbook, &[HostGather], &[HostReport]),
    (change_plan, stage_plan, spawn_fixes): (&ChangePlan, &stage::StagePlan, &[(String, Flavour)]),
) -> Result<(), i32> {
    use super::plan_file::{basis, check_decisions, compare};
    let diffs = compare(&plan.basis, &basis(playbook, gathers, before));
    let fixes: Vec<String> = spawn_fixes.iter().map(|(h, _)| h.clone()).collect();
    let decided = if diffs.is_empty() {
        check_decisions(plan, change_plan, stage_plan, &fixes)
    } else {
        Vec::new()
    };
    if diffs.is_empty() && decided.is_empty() {
        eprintln!(
            "carbonio-fleet: the fleet is as planned in `{}` (made {} by {}); applying it",
            path.display(),
            plan.created_at,
            plan.operator
        );
        return Ok(());
    }
    eprintln!(
        "carbonio-fleet: the fleet changed since the plan `{}` was made ({}):",
        path.display(),
        plan.created_at
    );
    for d in &diffs {
        eprintln!("  {}", crate::ui::safe::terminal_safe(&d.to_string()));
    }
    for d in &decided {
        eprintln!("  {d}");
    }
    eprintln!(
        "carbonio-fleet: refused, nothing was changed on any node; review a new plan (`carbonio-fleet plan --out FILE`) and apply that"
    );
    Err(if diffs.iter().any(|d| d.is_unreachable()) {
        exit::HOST_FAILED
    } else {
        exit::DRIFT
    })
}

/// `apply`.
pub async fn apply(opts: &ApplyOptions, events: Events) -> i32 {
    // `--plan FILE`: read before anything else; the plan's selection is the run's.
    let planned = match &opts.plan {
        None => None,
        Some(path) => match read_plan(path, &opts.run) {
            Ok((plan, run)) => Some((path.clone(), plan, run)),
            Err(e) => {
                eprintln!("carbonio-fleet: {e}; nothing was contacted");
                return exit::USAGE;
            }
        },
    };
    let with_plan;
    let opts = match &planned {
        Some((_, _, run)) => {
            with_plan = ApplyOptions {
                run: run.clone(),
                ..opts.clone()
            };
            &with_plan
        }
        None => opts,
    };
    let planned = planned.map(|(path, plan, _)| (path, plan));
    // A reviewed plan is the confirmation (as `terraform apply PLANFILE`).
    if !opts.yes && planned.is_none() && !std::io::stdin().is_terminal() {
        eprintln!(
            "carbonio-fleet: apply changes nodes and restarts mail services; with no terminal to confirm on, pass --yes"
        );
        return exit::USAGE;
    }
    let loaded = match run::load_for_changes(&opts.run) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let resume = if opts.resume {
        match Resume::read(&opts.run.report_dir) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("carbonio-fleet: {e}");
                return exit::USAGE;
            }
        }
    } else {
        None
    };
    let hosts = match narrow_targets(opts, loaded.hosts.clone(), resume.as_ref()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("carbonio-fleet: {e}");
            return exit::USAGE;
        }
    };
    let loaded = Loaded { hosts, ..loaded };
    if let Some((path, plan)) = &planned {
        let (pb, inv) = run::source_refs(&loaded);
        let names: Vec<String> = loaded.hosts.iter().map(|h| h.name.clone()).collect();
        let wrong = super::plan_file::check_sources(plan, &pb, &inv, &names);
        if !wrong.is_empty() {
            for w in &wrong {
                eprintln!("  {w}");
            }
            eprintln!(
                "carbonio-fleet: the plan `{}` was made from other files; nothing was contacted (make a new plan with `carbonio-fleet plan --out`)",
                path.display()
            );
            return exit::USAGE;
        }
    }
    // One apply at a time per report directory and per inventory (held to the end).
    let _lock = match super::lock::take(
        &opts.run.report_dir,
        &loaded.inventory.files,
        &format!(
            "pid {} ({}) since {}",
            std::process::id(),
            run::operator(),
            jiff::Timestamp::now()
        ),
    ) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("carbonio-fleet: {e}; nothing was contacted");
            return exit::USAGE;
        }
    };
    let proven_earlier = resume.as_ref().map(Resume::proven).unwrap_or_default();
    let signals = crate::engine::interrupt::watch("restarts");
    let (interrupts, hard) = (signals.count.clone(), signals.hard.clone());
    let started = jiff::Timestamp::now();
    let t0 = Instant::now();
    let mut report = run::report_header("apply", &loaded, opts.run.limit.as_deref(), started);
    // The lineage of a resumed run: which run's journal it continued.
    report.resumed_from = resume.as_ref().and_then(Resume::run_name);
    let fleet = match run::gather_fleet(
        "apply",
        &loaded,
        opts.run.forks,
        true,
        Some(&signals),
        &events,
    )
    .await
    {
        Ok(f) => f,
        Err(code) => return code,
    };
    let eff = match EffectivePlan::new(&loaded.playbook, &fleet.nonce) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            eprintln!("carbonio-fleet: playbook value cannot be sent to a node: {e}");
            return exit::USAGE;
        }
    };
    let (nonce, plan, mut gathers) = (fleet.nonce, fleet.plan, fleet.gathers);
    let earlier = check::Earlier::load(&opts.run.report_dir);
    let mut before = check::evaluate_all(&loaded.playbook, &gathers, &earlier);
    let mut change_plan = changes::plan(&loaded.playbook, &before);
    // Inventory var `pin = "true"`: the node keeps the old values for good.
    let pinned = pinned_hosts(&loaded.hosts);
    let mut stage_plan = plan_staging(
        opts.into(),
        &loaded.playbook,
        &before,
        &pinned,
        &mut change_plan,
    );
    changes::annotate_blocked(&mut before, &change_plan);

    let interrupted = |rx: &watch::Receiver<u32>| *rx.borrow() > 0;
    let restart_estimate = before
        .iter()
        .filter(|h| h.is_mta == Some(true) && h.status != HostStatus::Failed)
        .count();
    // `--fix-spawn-user` or the playbook's `[fix] spawn_user = true`.
    let fix_spawn_user = opts.fix_spawn_user || loaded.playbook.fix_spawn_user;
    let spawn_fixes: Vec<(String, Flavour)> = if fix_spawn_user {
        gathers
            .iter()
            .filter(|g| super::spawn_fix::needs_fix(g))
            .filter_map(|g| {
                let ok = g.outcome.as_ref().ok()?;
                Some((g.host.name.clone(), ok.facts.flavour))
            })
            .collect()
    } else {
        Vec::new()
    };
    if let Some((path, plan)) = &planned
        && let Err(code) = matches_plan(
            path,
            plan,
            (&loaded.playbook, &gathers, &before),
            (&change_plan, &stage_plan, &spawn_fixes),
        )
    {
        return code;
    }
    let nothing_to_do = change_plan.is_empty()
        && stage_plan.nodes.values().all(|n| n.entries.is_empty())
        && spawn_fixes.is_empty()
        && !before
            .iter()
            .any(|h| h.status == HostStatus::RestartPending)
        && loaded.playbook.rollout.only_if_changed;
    if !opts.yes
        && planned.is_none()
        && !nothing_to_do
        && !interrupted(&interrupts)
        && !tracing_indicatif::suspend_tracing_indicatif(|| {
            confirm(&change_plan, &stage_plan, restart_estimate, &spawn_fixes)
        })
    {
        eprintln!("carbonio-fleet: not confirmed; nothing was changed");
        return exit::USAGE;
    }

    let run_dir = match store::create_run_dir(
        &opts.run.report_dir,
        &store::run_dir_name(&started, &loaded.playbook.name),
    ) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("carbonio-fleet: {e}; nothing was changed");
            return exit::HOST_FAILED;
        }
    };
    let journal = match Journal::open(&run_dir) {
        Ok(j) => Arc::new(j),
        Err(e) => {
            eprintln!(
                "carbonio-fleet: cannot open the journal in `{}`: {e}; nothing was changed",
                run_dir.display()
            );
            return exit::HOST_FAILED;
        }
    };
    for (g, r) in gathers.iter().zip(&before) {
        let _ = journal.record(&g.host.name, "gathered", r.status.as_str());
    }

    // The opt-in spawn-user fix comes first: what it fixes unblocks the policy controls.
    let fix = if fix_spawn_user && !interrupted(&interrupts) {
        let stamp = started.strftime("%Y%m%dT%H%M%SZ").to_string();
        let fix = super::spawn_fix::run(
            &mut gathers,
            &loaded.playbook,
            (&plan, &nonce),
            &stamp,
            &journal,
            &events,
        )
        .await;
        // With a plan, what the fix unblocks is for the next plan to show: apply does
        // exactly the reviewed changes.
        if !fix.fixed.is_empty() && planned.is_none() {
            before = check::evaluate_all(&loaded.playbook, &gathers, &earlier);
            change_plan = changes::plan(&loaded.playbook, &before);
            stage_plan = plan_staging(
                opts.into(),
                &loaded.playbook,
                &before,
                &pinned,
                &mut change_plan,
            );
            changes::annotate_blocked(&mut before, &change_plan);
        }
        fix
    } else {
        super::spawn_fix::FixOutcome::default()
    };

    let mut changed = if interrupted(&interrupts) {
        ChangeOutcome::default()
    } else {
        // Server-scope changes only: the global ones are staged per MTA and promoted.
        let upfront = ChangePlan {
            global: BTreeMap::new(),
            ..change_plan.clone()
        };
        execute_changes(
            &upfront,
            &gathers,
            &before,
            &loaded.playbook,
            &journal,
            &events,
        )
        .await
    };

    // The fix's commands come first in each host's record; a node whose running policy
    // service had the broken spawn user restarts to load the fixed master.cf.
    for (host, mut cmds) in fix.commands {
        let rest = changed.commands.remove(&host).unwrap_or_default();
        cmds.extend(rest);
        changed.commands.insert(host, cmds);
    }
    changed.restart_nodes.extend(fix.running);
    for (host, why) in fix.failures {
        changed.failures.entry(host).or_insert(HostError::new(
            ErrorKind::Command,
            format!("spawn user fix: {why}"),
        ));
    }

    // Who restarts: reachable MTA nodes whose effective config changed or was left
    // pending earlier; all reachable MTA nodes when only_if_changed is off.
    let rollout_cfg = loaded.playbook.rollout.clone();
    let mut ctxs: BTreeMap<String, NodeCtx> = BTreeMap::new();
    // Staged nodes whose gate passed in the interrupted run (`--resume`): not gated again.
    let mut proven_now: BTreeSet<String> = BTreeSet::new();
    let mut rollout_nodes = Vec::new();
    for (g, r) in gathers.iter().zip(&before) {
        let (Ok(ok), Some(session)) = (&g.outcome, &g.session) else {
            continue;
        };
        if !ok.facts.is_mta() || changed.failures.contains_key(&g.host.name) {
            continue;
        }
        let stage = stage_plan
            .nodes
            .get(&g.host.name)
            .cloned()
            .unwrap_or_default();
        // Staged entries go through a reload and the gate, unless an earlier run's gate
        // already proved exactly these (`--resume`).
        let proven = proven_earlier.contains(&g.host.name)
            && !opts.unstage
            && stage.entries.iter().all(|e| e.present);
        if proven && !stage.entries.is_empty() {
            let _ = journal.record(&g.host.name, "proven-earlier", &stage.server);
            proven_now.insert(g.host.name.clone());
        }
        // `--unstage` touches only the nodes it unstages.
        let needs = if opts.unstage {
            !stage.entries.is_empty()
        } else {
            changed.restart_clusters.contains(&g.host.cluster)
                || changed.restart_nodes.contains(&g.host.name)
                || r.status == HostStatus::RestartPending
                || (!stage.entries.is_empty() && !proven)
        };
        let masked_params: Vec<String> = stage
            .masked
            .iter()
            .flat_map(|m| {
                std::iter::once(m.attr.clone())
                    .chain(crate::carbonio::postfix::governed_param(&m.attr).map(str::to_string))
            })
            .collect();
        rollout_nodes.push(RolloutNode {
            name: g.host.name.clone(),
            cluster: g.host.cluster.clone(),
            needs_restart: needs,
        });
        ctxs.insert(
            g.host.name.clone(),
            NodeCtx {
                events: events.clone(),
                host: g.host.clone(),
                session: session.clone(),
                platform: ok.facts.platform,
                rcpt: crate::engine::gather::smtp_rcpt(
                    smtp_probe_rcpt(&loaded.playbook),
                    &ok.facts,
                    &nonce,
                ),
                alias_rcpt: ok
                    .facts
                    .domains
                    .iter()
                    .find(|d| !ok.facts.local_domains.contains(d))
                    .map(|d| format!("cfleet-probe-{nonce}@{d}")),
                known_rcpt: match g.host.vars.get("known_rcpt") {
                    Some(v) if crate::playbook::is_plain_address(v) => Some(Ok(v.clone())),
                    Some(v) => Some(Err(format!(
                        "inventory var known_rcpt of {} is not one plain address: {v:?}",
                        g.host.name
                    ))),
                    None => loaded.playbook.rollout.known_rcpt.clone().map(Ok),
                },
                log_names: std::iter::once(ok.facts.hostname.clone())
                    .chain(ok.facts.running.uname.clone())
                    .collect(),
                // Waived controls are not changed either (in the cluster for a global
                // one, on this node for its own).
                skip_params: change_plan
                    .blocked
                    .iter()
                    .chain(&change_plan.waived)
                    .filter(|b| b.cluster == g.host.cluster)
                    .map(|b| b.control.as_str())
                    .chain(
                        r.controls
                            .iter()
                            .filter(|c| c.is_waived())
                            .map(|c| c.id.as_str()),
                    )
                    .filter_map(|id| loaded.playbook.controls.iter().find(|c| c.id == id))
                    // The attribute too: the policy entry's check keys on it (it governs
                    // master.cf, not a main.cf parameter).
                    .flat_map(|c| {
                        std::iter::once(c.attr.clone()).chain(
                            crate::carbonio::postfix::governed_param(&c.attr).map(str::to_string),
                        )
                    })
                    .chain(masked_params)
                    .collect(),
                stage,
                rollback: rollout_cfg.rollback && !opts.no_rollback,
                unstage: opts.unstage,
                old_values: false,
            },
        );
    }
    // Proof gathers start as soon as a host is final (see [`Prover`]): nodes the change
    // batches touched that will not restart are final now.
    let playbook = Arc::new(loaded.playbook.clone());
    // The proof reads what was just written: from the LDAP master, not a replica that
    // may lag behind it. Same playbook and nonce as the first gather, which could build.
    let plan = GatherPlan::reading(&loaded.playbook, &nonce, prov::Ldap::Master).unwrap_or(plan);
    let mut prover = Prover::new(playbook.clone(), plan, &nonce, opts.run.forks);
    let restarting: BTreeSet<&str> = rollout_nodes
        .iter()
        .filter(|n| n.needs_restart)
        .map(|n| n.name.as_str())
        .collect();
    fn changed_here(changed: &ChangeOutcome, g: &HostGather) -> bool {
        let n = g.host.name.as_str();
        changed.global_clusters.contains(&g.host.cluster)
            || changed.commands.contains_key(n)
            || changed.failures.contains_key(n)
    }
    // Clusters that will be promoted are read again only after the promotion.
    let promoting: BTreeSet<String> = change_plan.global.keys().cloned().collect();
    for g in gathers.iter().filter(|g| changed_here(&changed, g)) {
        if restarting.contains(g.host.name.as_str()) || promoting.contains(&g.host.cluster) {
            continue;
        }
        if let Some(session) = &g.session {
            prover.prove(&g.host, session);
        }
    }
    let env = TaskEnv {
        rollout: rollout_cfg.clone(),
        playbook: playbook.clone(),
        eff: eff.clone(),
        hard: hard.clone(),
        journal: journal.clone(),
    };
    let mut sched = Scheduler::new(rollout_nodes, &rollout_cfg);
    let mut running: JoinSet<Vec<NodeRun>> = JoinSet::new();
    let mut group_of: BTreeMap<tokio::task::Id, Vec<String>> = BTreeMap::new();
    let mut runs: BTreeMap<String, NodeRun> = BTreeMap::new();
    let mut irx = interrupts.clone();
    let outcome = loop {
        // Before every decision, not only when `select!` happens to pick the interrupt:
        // a restart finishing at the same moment must not start the next batch after
        // the operator's Ctrl-C.
        if interrupted(&interrupts) {
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
                // One staging batch per cluster per rollout batch.
                let mut groups: BTreeMap<String, Vec<NodeCtx>> = BTreeMap::new();
                for n in &b.nodes {
                    if let Some(ctx) = ctxs.get(n).cloned() {
                        groups
                            .entry(ctx.host.cluster.clone())
                            .or_default()
                            .push(ctx);
                    }
                }
                for group in groups.into_values() {
                    let names: Vec<&str> = group.iter().map(|c| c.host.name.as_str()).collect();
                    let span =
                        tracing::info_span!("host", host = %names.join(","), step = "stage+reload");
                    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
                    let task = running.spawn(stage_group(group, env.clone()).instrument(span));
                    group_of.insert(task.id(), names);
                }
            }
            Next::Wait => {
                tokio::select! {
                    Some(done) = running.join_next_with_id() => {
                        // A task that panicked (a bug) fails its nodes with that cause;
                        // the rollout goes on deciding, never waits for them forever.
                        let done = match done {
                            Ok((id, runs)) => {
                                group_of.remove(&id);
                                runs
                            }
                            Err(e) => {
                                let id = e.id();
                                let why = if e.is_panic() {
                                    crate::engine::gather::panic_text(&*e.into_panic())
                                } else {
                                    "cancelled".to_string()
                                };
                                group_of
                                    .remove(&id)
                                    .unwrap_or_default()
                                    .into_iter()
                                    .map(|n| {
                                        NodeRun::new(
                                            n,
                                            NodeResult::Failed {
                                                reason: format!(
                                                    "the tool's task for this host failed: {why}"
                                                ),
                                            },
                                        )
                                    })
                                    .collect()
                            }
                        };
                        for run in done {
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

    let stopped = if interrupted(&interrupts) {
        Some("interrupted; `apply --resume` gates what is left and promotes".to_string())
    } else {
        outcome.aborted.as_ref().map(|a| a.to_string())
    };
    let promotions = promote_all(
        &promoting,
        &pinned,
        &change_plan,
        &stage_plan,
        &gathers,
        &loaded,
        &runs,
        &outcome,
        &changed.failures,
        stopped,
        (&journal, &events),
    )
    .await;
    for p in promotions.iter().filter(|p| p.state == "promoted") {
        changed.global_clusters.insert(p.cluster.clone());
        let ids: Vec<String> = change_plan
            .global
            .get(&p.cluster)
            .map(|b| b.changes.iter().map(|c| c.control.clone()).collect())
            .unwrap_or_default();
        for g in gathers.iter().filter(|g| g.host.cluster == p.cluster) {
            changed
                .changed
                .entry(g.host.name.clone())
                .or_default()
                .extend(ids.iter().cloned());
        }
    }
    let promotion_of: BTreeMap<&str, &PromotionRecord> =
        promotions.iter().map(|p| (p.cluster.as_str(), p)).collect();

    // The rest of the proof: every host whose state can have moved and whose proof has
    // not started yet (a rollout cut short leaves some) — all nodes of a cluster whose
    // global config was changed, nodes whose server entry was changed or whose change
    // failed, and nodes the rollout touched. The others keep their first reading:
    // nothing was done to them, and a no-op apply costs one JVM per host, like a check.
    let touched =
        |g: &HostGather| changed_here(&changed, g) || runs.contains_key(g.host.name.as_str());
    let abandon = interrupted(&interrupts) && hard.is_cancelled();
    if !abandon {
        for g in gathers.iter().filter(|g| touched(g)) {
            if let (false, Some(session)) = (prover.started(&g.host.name), &g.session) {
                prover.prove(&g.host, session);
            }
        }
    }
    // A touched host without a proof (abandoned) keeps its first reading and no `after`.
    let (after_gathers, verified_at): (Vec<HostGather>, BTreeMap<String, String>) = prover
        .finish(abandon)
        .await
        .into_iter()
        .map(|(g, at)| {
            let name = g.host.name.clone();
            (g, (name, at.to_string()))
        })
        .unzip();
    let mut after = check::evaluate_all(&loaded.playbook, &after_gathers, &earlier);
    after.extend(
        before
            .iter()
            .zip(&gathers)
            .filter(|(_, g)| !touched(g))
            .map(|(b, _)| b.clone()),
    );
    let after_by: BTreeMap<&str, &HostReport> =
        after.iter().map(|h| (h.name.as_str(), h)).collect();
    let node_outcomes: BTreeMap<&str, _> =
        outcome.nodes.iter().map(|n| (n.name.as_str(), n)).collect();

    let mut hosts = Vec::new();
    for b in &before {
        // `proven`: the values below come from the proof gather. Otherwise (it failed,
        // e.g. the connection died mid-rollout) they are the first gather's, and no
        // read-back exists to report as `after`.
        let (mut h, proven) = match after_by.get(b.name.as_str()) {
            Some(a) if a.status != HostStatus::Failed || b.status == HostStatus::Failed => {
                ((*a).clone(), true)
            }
            _ => (b.clone(), false),
        };
        h.timings = b.timings.clone();
        // Findings of the first gather (blocked changes) stay in the record; what it
        // said about the running state is superseded by the proof's reading.
        for f in &b.findings {
            if proven && !f.blocking {
                continue;
            }
            if !h
                .findings
                .iter()
                .any(|x| x.id == f.id && x.message == f.message)
            {
                h.findings.push(f.clone());
            }
        }
        let changed_ids = changed.changed.get(&h.name).cloned().unwrap_or_default();
        for c in &mut h.controls {
            let prev = b.controls.iter().find(|x| x.id == c.id);
            c.before = prev.map(|p| p.actual.clone());
            c.after = proven.then(|| c.actual.clone());
            c.changed = changed_ids.contains(&c.id);
        }
        let mut ap = HostApply {
            status_before: Some(b.status),
            verified_at: proven.then(|| verified_at.get(&h.name).cloned()).flatten(),
            commands: changed.commands.get(&h.name).cloned().unwrap_or_default(),
            ..HostApply::default()
        };
        if let Some(e) = changed.failures.get(&h.name) {
            h.status = HostStatus::Failed;
            h.error = Some(e.clone());
        }
        match node_outcomes.get(h.name.as_str()) {
            Some(_) if proven_now.contains(&h.name) => {
                ap.rollout = "gate passed in an earlier run".into();
            }
            Some(n) => {
                ap.batch = n.batch;
                ap.rollout = n.state.to_string();
            }
            None => {
                ap.rollout = if b.status == HostStatus::Failed {
                    "not attempted (unreachable at gather)".into()
                } else if changed.failures.contains_key(&h.name) {
                    // Part of the batch may have landed: not restarted on purpose, so
                    // the next check reports the host restart-pending, not fine.
                    "not attempted (change failed)".into()
                } else if h.is_mta == Some(false) {
                    "not needed (not an MTA)".into()
                } else {
                    "not needed".into()
                }
            }
        }
        let promoted = promotion_of
            .get(h.cluster.as_str())
            .is_some_and(|p| p.state == "promoted");
        let settle = |mut recs: Vec<StagedRecord>| {
            for r in &mut recs {
                if promoted && (r.state == "staged" || r.state == "found") {
                    r.state = if r.kind == EntryKind::ListExtended.as_str() {
                        "kept".into()
                    } else {
                        "promoted".into()
                    };
                }
            }
            recs
        };
        if let Some(run) = runs.remove(&h.name) {
            ap.restart = run.restart;
            ap.gate = run.gate;
            ap.commands.extend(run.commands);
            ap.rollback = run.rollback;
            for r in run.staged.iter().filter(|r| r.state == "staged") {
                if let Some(c) = h.controls.iter_mut().find(|c| c.id == r.control) {
                    c.changed = true;
                }
            }
            ap.staged = settle(run.staged);
            if let NodeResult::Failed { reason } = &run.result {
                h.status = HostStatus::Failed;
                h.error = Some(HostError::new(ErrorKind::Command, reason.clone()));
            }
        }
        if ap.staged.is_empty()
            && let Some(st) = stage_plan.nodes.get(&h.name)
            && st.entries.iter().any(|e| e.present)
        {
            // Found staged (an earlier run wrote it) and not touched in this run.
            let found = NodeStage {
                entries: st.entries.iter().filter(|e| e.present).cloned().collect(),
                ..st.clone()
            };
            ap.staged = settle(staged_records(&found, "found"));
        }
        // A staged host is done once its cluster is promoted.
        let pending = promotion_of
            .get(h.cluster.as_str())
            .is_some_and(|p| p.state != "promoted");
        if h.status == HostStatus::Compliant && !pending {
            let _ = journal.record(&h.name, "done", "");
        }
        h.apply = Some(ap);
        hosts.push(h);
    }
    report.hosts = hosts;
    report.summary = crate::report::summary::summarize(&report.hosts);
    let base = check::exit_code(&report.hosts);
    // A cluster left unpromoted is drift (2); a promotion batch that failed, a failed
    // command (3). Host failures keep their precedence over drift.
    let base = if promotions.iter().any(|p| p.state == "promotion-failed") {
        exit::HOST_FAILED
    } else if base == exit::OK && promotions.iter().any(|p| p.state != "promoted") {
        exit::DRIFT
    } else {
        base
    };
    report.promotions = promotions;
    report.exit_code = match &outcome.aborted {
        _ if interrupted(&interrupts) => exit::INTERRUPTED,
        Some(crate::engine::rollout::AbortReason::Interrupted) => exit::INTERRUPTED,
        Some(_) => exit::ABORTED,
        None => base,
    };
    report.finished_at = jiff::Timestamp::now().to_string();
    report.duration_ms = t0.elapsed().as_millis() as u64;
    let code = run::finish_in(
        &mut report,
        &opts.run.report_dir,
        &run_dir,
        opts.run.json,
        opts.run.metrics_file.as_deref(),
        opts.run.split_by_group,
    );
    events.send(Event::RunFinished { exit_code: code });
    code
}
