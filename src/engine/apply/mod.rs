//! Remediation: gather → plan the changes and the staging ([`super::stage`]) →
//! (the operator's go-ahead, asked by whoever runs it) → server-scope changes (one
//! `zmprov` batch per node, with read-back) → batches from the rollout scheduler, each
//! staging its MTAs' server entries (one `zmprov` batch per cluster per batch), then
//! reloading (or restarting) and gating them, a node that fails rolled back → each
//! cluster's promotion (global config, then the temporary entries removed) once every
//! MTA LDAP lists passed → gather again to prove the result (each host as soon as nothing
//! more will be done to it, overlapping later batches: `prove::Prover`).
//!
//! In two calls, so that the caller can ask in between: [`prepare`] loads, locks,
//! gathers and decides (nothing is changed), [`execute`] carries the decision out. The
//! rooms, one concern each (after cargo-nextest's `runner/{dispatcher,executor}`):
//! - `prepare`: targets, `--resume`, `--plan FILE` checks, the staging plan;
//! - `execute`: the executor, what runs on a node (change batches, staging, reload or
//!   restart), and `gate`: the health gate after it;
//! - `dispatch`: the one loop that owns the rollout state: it starts the batches the
//!   [`Scheduler`] hands out, collects node results and reacts to the run's interrupts
//!   (first: start nothing new, let in-flight steps finish; second: cancel in-flight
//!   gates, still waiting for a restart already sent);
//! - `promote`: rollbacks and each cluster's promotion; `prove`: the proof gathers;
//! - `assemble`: the report's host records and the run's exit code.
//!
//! Every completed step is journaled so `--resume` can continue.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::carbonio::gather::{EffectivePlan, GatherPlan};
use crate::carbonio::prov;
use crate::engine::changes::{self, ChangePlan};
use crate::engine::check;
use crate::engine::events::{Event, Events};
use crate::engine::gather::{GatherOptions, HostGather};
use crate::engine::interrupt::Interrupts;
use crate::engine::journal::Journal;
use crate::engine::lock::ApplyLock;
use crate::engine::outcome::{RunError, RunOutcome};
use crate::engine::plan_file::PlanFile;
use crate::engine::rollout::Scheduler;
use crate::engine::run::{self, Loaded, RunOptions};
use crate::engine::stage;
use crate::flavour::Flavour;
use crate::report::model::{ErrorKind, HostError, HostReport, HostStatus, Report};
use crate::report::store;

mod assemble;
mod dispatch;
mod execute;
mod gate;
mod prepare;
mod promote;
mod prove;

pub(crate) use execute::{command_ran, command_sent, entry_changes, exit_text};
pub(crate) use prepare::{StagingOptions, pinned_hosts, plan_staging};

use execute::{ChangeOutcome, execute_changes};
use prepare::{Resume, matches_plan, narrow_targets, read_plan};
use prove::Prover;

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

/// What apply asks the operator to approve: the changes, the staging and the restarts.
pub struct Proposal<'a> {
    pub changes: &'a ChangePlan,
    pub staging: &'a stage::StagePlan,
    /// Up to how many MTA nodes are reloaded or restarted.
    pub restarts: usize,
    /// Nodes whose policy spawn user is repaired first.
    pub spawn_fixes: &'a [(String, Flavour)],
}

/// The reviewed plan (`--plan FILE`) the fleet was found to match.
pub struct AsPlanned<'a> {
    pub path: &'a std::path::Path,
    pub created_at: &'a str,
    pub operator: &'a str,
}

/// Everything [`prepare`] found and decided; nothing has changed on any node yet. It
/// holds the apply lock and the open sessions until [`execute`] is done with it (or it
/// is dropped: not confirmed).
pub struct Prepared {
    opts: ApplyOptions,
    planned: Option<(PathBuf, PlanFile)>,
    loaded: Loaded,
    _lock: ApplyLock,
    interrupts: Interrupts,
    proven_earlier: BTreeSet<String>,
    started: jiff::Timestamp,
    t0: Instant,
    report: Report,
    nonce: String,
    plan: GatherPlan,
    eff: Arc<EffectivePlan>,
    gathers: Vec<HostGather>,
    earlier: check::Earlier,
    before: Vec<HostReport>,
    change_plan: ChangePlan,
    stage_plan: stage::StagePlan,
    pinned: BTreeSet<String>,
    fix_spawn_user: bool,
    spawn_fixes: Vec<(String, Flavour)>,
    nothing_to_do: bool,
}

impl Prepared {
    /// What the operator is asked to approve.
    pub fn proposal(&self) -> Proposal<'_> {
        Proposal {
            changes: &self.change_plan,
            staging: &self.stage_plan,
            restarts: self
                .before
                .iter()
                .filter(|h| h.is_mta == Some(true) && h.status != HostStatus::Failed)
                .count(),
            spawn_fixes: &self.spawn_fixes,
        }
    }

    /// Whether the operator must approve: not with `--yes`, not with a reviewed plan (it
    /// is the confirmation, as `terraform apply PLANFILE`), not when there is nothing to do.
    pub fn needs_confirmation(&self) -> bool {
        !self.opts.yes && self.planned.is_none() && !self.nothing_to_do
    }

    /// The reviewed plan the fleet matches (`--plan FILE`).
    pub fn as_planned(&self) -> Option<AsPlanned<'_>> {
        self.planned.as_ref().map(|(path, plan)| AsPlanned {
            path,
            created_at: &plan.created_at,
            operator: &plan.operator,
        })
    }
}

/// The first half of `apply`: reads `--plan FILE`, loads and narrows the targets, takes
/// the apply lock, gathers the fleet and decides the changes and the staging. Nothing is
/// changed on any node.
pub async fn prepare(
    opts: &ApplyOptions,
    interrupts: &Interrupts,
    events: &Events,
) -> Result<Prepared, RunError> {
    let Targets {
        opts,
        planned,
        loaded,
        resume,
    } = targets(opts)?;
    // One apply at a time per report directory and per inventory (held to the end).
    let lock = super::lock::take(
        &opts.run.report_dir,
        &loaded.inventory.files,
        &format!(
            "pid {} ({}) since {}",
            std::process::id(),
            run::operator(),
            jiff::Timestamp::now()
        ),
    )
    .map_err(RunError::Locked)?;
    let proven_earlier = resume.as_ref().map(Resume::proven).unwrap_or_default();
    let started = jiff::Timestamp::now();
    let t0 = Instant::now();
    let mut report = run::report_header("apply", &loaded, opts.run.limit.as_deref(), started);
    // The lineage of a resumed run: which run's journal it continued.
    report.resumed_from = resume.as_ref().and_then(Resume::run_name);
    let gather = GatherOptions {
        forks: opts.run.forks,
        keep_sessions: true,
        interrupts: Some(interrupts.clone()),
        done: None,
    };
    let fleet = run::gather_fleet("apply", &loaded, gather, events).await?;
    let eff = EffectivePlan::new(&loaded.playbook, &fleet.nonce)
        .map_err(|e| RunError::Unsendable(e.to_string()))?;
    let earlier = check::Earlier::load(&opts.run.report_dir);
    let mut before = check::evaluate_all(&loaded.playbook, &fleet.gathers, &earlier);
    let mut change_plan = changes::plan(&loaded.playbook, &before);
    // Inventory var `pin = "true"`: the node keeps the old values for good.
    let pinned = pinned_hosts(&loaded.hosts);
    let stage_plan = plan_staging(
        (&opts).into(),
        &loaded.playbook,
        &before,
        &pinned,
        &mut change_plan,
    );
    changes::annotate_blocked(&mut before, &change_plan);
    // `--fix-spawn-user` or the playbook's `[fix] spawn_user = true`.
    let fix_spawn_user = opts.fix_spawn_user || loaded.playbook.fix_spawn_user;
    let spawn_fixes: Vec<(String, Flavour)> = if fix_spawn_user {
        fleet
            .gathers
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
    if let Some((path, plan)) = &planned {
        matches_plan(
            path,
            plan,
            (&loaded.playbook, &fleet.gathers, &before),
            (&change_plan, &stage_plan, &spawn_fixes),
        )?;
    }
    let nothing_to_do = change_plan.is_empty()
        && stage_plan.nodes.values().all(|n| n.entries.is_empty())
        && spawn_fixes.is_empty()
        && !before
            .iter()
            .any(|h| h.status == HostStatus::RestartPending)
        && loaded.playbook.rollout.only_if_changed;
    Ok(Prepared {
        opts,
        planned,
        loaded,
        _lock: lock,
        interrupts: interrupts.clone(),
        proven_earlier,
        started,
        t0,
        report,
        nonce: fleet.nonce,
        plan: fleet.plan,
        eff: Arc::new(eff),
        gathers: fleet.gathers,
        earlier,
        before,
        change_plan,
        stage_plan,
        pinned,
        fix_spawn_user,
        spawn_fixes,
        nothing_to_do,
    })
}

/// What apply works on: its options (with a plan's selection), the plan, the hosts.
struct Targets {
    opts: ApplyOptions,
    planned: Option<(PathBuf, PlanFile)>,
    loaded: Loaded,
    resume: Option<Resume>,
}

/// Reads `--plan FILE` first (the plan's selection is the run's), loads the inventory
/// and playbook, narrows the hosts for `--resume` / `--retry-failed`, and checks that a
/// plan was made from these files and hosts. Nothing is contacted.
fn targets(opts: &ApplyOptions) -> Result<Targets, RunError> {
    let (opts, planned) = match &opts.plan {
        None => (opts.clone(), None),
        Some(path) => {
            let (plan, run) = read_plan(path, &opts.run).map_err(RunError::PlanUnreadable)?;
            let opts = ApplyOptions {
                run,
                ..opts.clone()
            };
            (opts, Some((path.clone(), plan)))
        }
    };
    let loaded = run::load_for_changes(&opts.run)?;
    let resume = if opts.resume {
        Some(Resume::read(&opts.run.report_dir).map_err(RunError::Targets)?)
    } else {
        None
    };
    let hosts =
        narrow_targets(&opts, loaded.hosts.clone(), resume.as_ref()).map_err(RunError::Targets)?;
    let loaded = Loaded { hosts, ..loaded };
    if let Some((path, plan)) = &planned {
        let (pb, inv) = run::source_refs(&loaded);
        let names: Vec<String> = loaded.hosts.iter().map(|h| h.name.clone()).collect();
        let wrong = crate::engine::plan_file::check_sources(plan, &pb, &inv, &names);
        if !wrong.is_empty() {
            return Err(RunError::PlanSources {
                path: path.clone(),
                wrong,
            });
        }
    }
    Ok(Targets {
        opts,
        planned,
        loaded,
        resume,
    })
}

/// The second half of `apply`: the run directory and its journal, the spawn-user fix,
/// the server-scope changes, the rollout, the promotions and the proof, then the report
/// set. `Err` only when the run directory or the journal cannot be made (nothing was
/// changed).
pub async fn execute(mut p: Prepared, events: Events) -> Result<RunOutcome, RunError> {
    let run_dir = store::create_run_dir(
        &p.opts.run.report_dir,
        &store::run_dir_name(&p.started, &p.loaded.playbook.name),
    )
    .map_err(RunError::RunDir)?;
    let journal = Journal::open(&run_dir)
        .map(Arc::new)
        .map_err(|e| RunError::Journal {
            dir: run_dir.clone(),
            error: e.to_string(),
        })?;
    for (g, r) in p.gathers.iter().zip(&p.before) {
        let _ = journal.record(&g.host.name, "gathered", r.status.as_str());
    }
    let changed = change(&mut p, &journal, &events).await;
    let rollout = dispatch::rollout_nodes(&p, &changed, &journal, &events);
    // Proof gathers start as soon as a host is final (see `Prover`): nodes the change
    // batches touched that will not restart are final now.
    let playbook = Arc::new(p.loaded.playbook.clone());
    // The proof reads what was just written: from the LDAP master, not a replica that
    // may lag behind it. Same playbook and nonce as the first gather, which could build.
    let plan = GatherPlan::reading(&p.loaded.playbook, &p.nonce, prov::Ldap::Master)
        .unwrap_or_else(|_| p.plan.clone());
    let mut prover = Prover::new(playbook.clone(), plan, &p.nonce, p.opts.run.forks);
    // Clusters that will be promoted are read again only after the promotion.
    let promoting: BTreeSet<String> = p.change_plan.global.keys().cloned().collect();
    for g in p.gathers.iter().filter(|g| changed.touched(g)) {
        if rollout.restarting(&g.host.name) || promoting.contains(&g.host.cluster) {
            continue;
        }
        if let Some(session) = &g.session {
            prover.prove(&g.host, session);
        }
    }
    let env = execute::TaskEnv {
        rollout: p.loaded.playbook.rollout.clone(),
        playbook,
        eff: p.eff.clone(),
        hard: p.interrupts.hard.clone(),
        journal: journal.clone(),
    };
    let sched = Scheduler::new(rollout.nodes.clone(), &p.loaded.playbook.rollout);
    let dispatched = dispatch::dispatch(
        sched,
        &rollout.ctxs,
        &promoting,
        (&env, &mut prover),
        &p.interrupts,
        &events,
    )
    .await;
    let mut changed = changed;
    let stopped = if p.interrupts.any() {
        Some("interrupted; `apply --resume` gates what is left and promotes".to_string())
    } else {
        dispatched.outcome.aborted.as_ref().map(|a| a.to_string())
    };
    let promote_ctx = promote::PromoteCtx {
        promoting: &promoting,
        pinned: &p.pinned,
        change_plan: &p.change_plan,
        stage_plan: &p.stage_plan,
        gathers: &p.gathers,
        loaded: &p.loaded,
        runs: &dispatched.runs,
        outcome: &dispatched.outcome,
        change_failures: &changed.failures,
    };
    let promotions = promote::promote_all(&promote_ctx, stopped, (&journal, &events)).await;
    changed.promoted(&promotions, &p.change_plan, &p.gathers);
    let proof = assemble::finish_proof(&p, prover, &changed, &dispatched.runs).await;
    let run = p.opts.run.clone();
    let report = assemble::report(
        p,
        assemble::Done {
            changed,
            dispatched,
            proven_now: rollout.proven_now,
            promotions,
            proof,
        },
        &journal,
    );
    let written = run::finish_in(
        &report,
        &run.report_dir,
        &run_dir,
        run.metrics_file.as_deref(),
        run.split_by_group,
    )
    .map(|()| run_dir);
    let outcome = RunOutcome { report, written };
    events.send(Event::RunFinished {
        exit_code: outcome.exit_code().code(),
    });
    Ok(outcome)
}

/// The change phase: the opt-in spawn-user fix first (what it fixes unblocks the policy
/// controls, so the plan is made again after it, unless a reviewed plan is carried out),
/// then the server-scope changes; nothing after an interrupt.
async fn change(p: &mut Prepared, journal: &Arc<Journal>, events: &Events) -> ChangeOutcome {
    let fix = if p.fix_spawn_user && !p.interrupts.any() {
        let stamp = p.started.strftime("%Y%m%dT%H%M%SZ").to_string();
        let fix = super::spawn_fix::run(
            &mut p.gathers,
            &p.loaded.playbook,
            (&p.plan, &p.nonce),
            &stamp,
            journal,
            events,
        )
        .await;
        // With a plan, what the fix unblocks is for the next plan to show: apply does
        // exactly the reviewed changes.
        if !fix.fixed.is_empty() && p.planned.is_none() {
            p.before = check::evaluate_all(&p.loaded.playbook, &p.gathers, &p.earlier);
            p.change_plan = changes::plan(&p.loaded.playbook, &p.before);
            p.stage_plan = plan_staging(
                (&p.opts).into(),
                &p.loaded.playbook,
                &p.before,
                &p.pinned,
                &mut p.change_plan,
            );
            changes::annotate_blocked(&mut p.before, &p.change_plan);
        }
        fix
    } else {
        super::spawn_fix::FixOutcome::default()
    };
    let mut changed = if p.interrupts.any() {
        ChangeOutcome::default()
    } else {
        // Server-scope changes only: the global ones are staged per MTA and promoted.
        let upfront = ChangePlan {
            global: BTreeMap::new(),
            ..p.change_plan.clone()
        };
        execute_changes(
            &upfront,
            &p.gathers,
            &p.before,
            &p.loaded.playbook,
            journal,
            events,
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
    changed
}

impl ChangeOutcome {
    /// Whether anything was done to the host in the change phase (its cluster's global
    /// batch, its own batch, or a failure of either).
    fn touched(&self, g: &HostGather) -> bool {
        let n = g.host.name.as_str();
        self.global_clusters.contains(&g.host.cluster)
            || self.commands.contains_key(n)
            || self.failures.contains_key(n)
    }

    /// Records the clusters promoted: their global controls changed on every node.
    fn promoted(
        &mut self,
        promotions: &[crate::report::model::PromotionRecord],
        change_plan: &ChangePlan,
        gathers: &[HostGather],
    ) {
        for p in promotions.iter().filter(|p| p.state == "promoted") {
            self.global_clusters.insert(p.cluster.clone());
            let ids: Vec<String> = change_plan
                .global
                .get(&p.cluster)
                .map(|b| b.changes.iter().map(|c| c.control.clone()).collect())
                .unwrap_or_default();
            for g in gathers.iter().filter(|g| g.host.cluster == p.cluster) {
                self.changed
                    .entry(g.host.name.clone())
                    .or_default()
                    .extend(ids.iter().cloned());
            }
        }
    }
}
