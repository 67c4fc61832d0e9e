//! The end of apply: the rest of the proof, then each host's record in the report (its
//! first and its proven reading, the commands, the rollout, staging and rollback it
//! went through) and the run's exit code.

use std::collections::BTreeMap;

use super::Prepared;
use super::dispatch::Dispatched;
use super::execute::{ChangeOutcome, NodeRun, staged_records};
use super::prove::Prover;
use crate::engine::check;
use crate::engine::gather::HostGather;
use crate::engine::journal::Journal;
use crate::engine::rollout::{AbortReason, NodeOutcome, NodeResult};
use crate::engine::stage::{EntryKind, NodeStage};
use crate::exit::ExitCode;
use crate::report::model::{
    ErrorKind, HostApply, HostError, HostReport, HostStatus, PromotionRecord, Report, StagedRecord,
};

/// The proof gathers, when they are all in: each host's proven reading, and when it
/// was taken.
pub(super) struct Proof {
    after: Vec<HostReport>,
    verified_at: BTreeMap<String, String>,
}

/// Everything the run did, for the report.
pub(super) struct Done {
    pub(super) changed: ChangeOutcome,
    pub(super) dispatched: Dispatched,
    pub(super) proven_now: std::collections::BTreeSet<String>,
    pub(super) promotions: Vec<PromotionRecord>,
    pub(super) proof: Proof,
}

/// Whether apply did anything to the host: the change phase, or its rollout task.
fn touched(changed: &ChangeOutcome, runs: &BTreeMap<String, NodeRun>, g: &HostGather) -> bool {
    changed.touched(g) || runs.contains_key(g.host.name.as_str())
}

/// The rest of the proof: every host whose state can have moved and whose proof has
/// not started yet (a rollout cut short leaves some) — all nodes of a cluster whose
/// global config was changed, nodes whose server entry was changed or whose change
/// failed, and nodes the rollout touched. The others keep their first reading: nothing
/// was done to them, and a no-op apply costs one JVM per host, like a check. After a
/// second interrupt the proofs in flight are abandoned: a touched host without a proof
/// keeps its first reading and no `after`.
pub(super) async fn finish_proof(
    p: &Prepared,
    mut prover: Prover,
    changed: &ChangeOutcome,
    runs: &BTreeMap<String, NodeRun>,
) -> Proof {
    let abandon = p.interrupts.any() && p.interrupts.hard.is_cancelled();
    if !abandon {
        for g in p.gathers.iter().filter(|g| touched(changed, runs, g)) {
            if let (false, Some(session)) = (prover.started(&g.host.name), &g.session) {
                prover.prove(&g.host, session);
            }
        }
    }
    let (after_gathers, verified_at): (Vec<HostGather>, BTreeMap<String, String>) = prover
        .finish(abandon)
        .await
        .into_iter()
        .map(|(g, at)| {
            let name = g.host.name.clone();
            (g, (name, at.to_string()))
        })
        .unzip();
    let mut after = check::evaluate_all(&p.loaded.playbook, &after_gathers, &p.earlier);
    after.extend(
        p.before
            .iter()
            .zip(&p.gathers)
            .filter(|(_, g)| !touched(changed, runs, g))
            .map(|(b, _)| b.clone()),
    );
    Proof { after, verified_at }
}

/// The report of the run: every host's record, the summary, the promotions, and the
/// exit code.
pub(super) fn report(p: Prepared, mut done: Done, journal: &Journal) -> Report {
    let mut report = p.report.clone();
    let after_by: BTreeMap<&str, &HostReport> = done
        .proof
        .after
        .iter()
        .map(|h| (h.name.as_str(), h))
        .collect();
    let node_outcomes: BTreeMap<&str, &NodeOutcome> = done
        .dispatched
        .outcome
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n))
        .collect();
    let promotion_of: BTreeMap<&str, &PromotionRecord> = done
        .promotions
        .iter()
        .map(|p| (p.cluster.as_str(), p))
        .collect();
    let mut hosts = Vec::new();
    for b in &p.before {
        let (mut h, proven) = host_record(b, after_by.get(b.name.as_str()).copied(), &done);
        let run = done.dispatched.runs.remove(&h.name);
        let node = node_outcomes.get(h.name.as_str()).copied();
        let promotion = promotion_of.get(h.cluster.as_str()).copied();
        let mut ap = host_apply(&p, &mut h, b, (run, node), &done, promotion);
        ap.verified_at = proven
            .then(|| done.proof.verified_at.get(&h.name).cloned())
            .flatten();
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
    report.summary = crate::report::model::Summary::of(&report.hosts);
    report.exit_code = exit_code(
        &report.hosts,
        &done.promotions,
        done.dispatched.outcome.aborted.as_ref(),
        p.interrupts.any(),
    )
    .code();
    report.promotions = done.promotions;
    report.finished_at = jiff::Timestamp::now().to_string();
    report.duration_ms = p.t0.elapsed().as_millis() as u64;
    report
}

/// The exit code of an apply: the hosts', a promotion batch that failed (a failed
/// command), a cluster left unpromoted (drift), the rollout aborted, the run
/// interrupted; the worst of them wins ([`ExitCode::worst`]).
fn exit_code(
    hosts: &[HostReport],
    promotions: &[PromotionRecord],
    aborted: Option<&AbortReason>,
    interrupted: bool,
) -> ExitCode {
    let promotion = if promotions.iter().any(|p| p.state == "promotion-failed") {
        ExitCode::HostFailed
    } else if promotions.iter().any(|p| p.state != "promoted") {
        ExitCode::Drift
    } else {
        ExitCode::Ok
    };
    let ended = match aborted {
        _ if interrupted => ExitCode::Interrupted,
        Some(AbortReason::Interrupted) => ExitCode::Interrupted,
        Some(_) => ExitCode::Aborted,
        None => ExitCode::Ok,
    };
    check::exit_code(hosts).worst(promotion).worst(ended)
}

/// A host's record before its apply section: the proven reading when there is one
/// (then `true`), else the first gather's, with the first gather's blocking findings
/// kept.
fn host_record(b: &HostReport, after: Option<&HostReport>, done: &Done) -> (HostReport, bool) {
    // `proven`: the values below come from the proof gather. Otherwise (it failed, e.g.
    // the connection died mid-rollout) they are the first gather's, and no read-back
    // exists to report as `after`.
    let (mut h, proven) = match after {
        Some(a) if a.status != HostStatus::Failed || b.status == HostStatus::Failed => {
            (a.clone(), true)
        }
        _ => (b.clone(), false),
    };
    h.timings = b.timings.clone();
    // Findings of the first gather (blocked changes) stay in the record; what it said
    // about the running state is superseded by the proof's reading.
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
    let changed_ids = done
        .changed
        .changed
        .get(&h.name)
        .cloned()
        .unwrap_or_default();
    for c in &mut h.controls {
        let prev = b.controls.iter().find(|x| x.id == c.id);
        c.before = prev.map(|p| p.actual.clone());
        c.after = proven.then(|| c.actual.clone());
        c.changed = changed_ids.contains(&c.id);
    }
    (h, proven)
}

/// A host's apply section: its commands, where its rollout ended, what was staged on
/// it and where that ended; a failed change or node task fails the host.
fn host_apply(
    p: &Prepared,
    h: &mut HostReport,
    b: &HostReport,
    (run, node): (Option<NodeRun>, Option<&NodeOutcome>),
    done: &Done,
    promotion: Option<&PromotionRecord>,
) -> HostApply {
    let changed = &done.changed;
    let mut ap = HostApply {
        status_before: Some(b.status),
        commands: changed.commands.get(&h.name).cloned().unwrap_or_default(),
        ..HostApply::default()
    };
    if let Some(e) = changed.failures.get(&h.name) {
        h.status = HostStatus::Failed;
        h.error = Some(e.clone());
    }
    ap.rollout = match node {
        Some(_) if done.proven_now.contains(&h.name) => "gate passed in an earlier run".into(),
        Some(n) => {
            ap.batch = n.batch;
            n.state.to_string()
        }
        None if b.status == HostStatus::Failed => "not attempted (unreachable at gather)".into(),
        // Part of the batch may have landed: not restarted on purpose, so the next check
        // reports the host restart-pending, not fine.
        None if changed.failures.contains_key(&h.name) => "not attempted (change failed)".into(),
        None if h.is_mta == Some(false) => "not needed (not an MTA)".into(),
        None => "not needed".into(),
    };
    let promoted = promotion.is_some_and(|p| p.state == "promoted");
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
    if let Some(run) = run {
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
        && let Some(st) = p.stage_plan.nodes.get(&h.name)
        && st.entries.iter().any(|e| e.present)
    {
        // Found staged (an earlier run wrote it) and not touched in this run.
        let found = NodeStage {
            entries: st.entries.iter().filter(|e| e.present).cloned().collect(),
            ..st.clone()
        };
        ap.staged = settle(staged_records(&found, "found"));
    }
    ap
}

#[cfg(test)]
mod tests {
    use super::*;

    fn promotion(state: &str) -> PromotionRecord {
        PromotionRecord {
            cluster: "c".into(),
            state: state.into(),
            detail: String::new(),
            mtas: Vec::new(),
            held_by: Vec::new(),
            ran_on: None,
            commands: Vec::new(),
        }
    }

    #[test]
    fn exit_code_cases() {
        let aborted = AbortReason::CanaryFailed { node: "n".into() };
        let cases: [(&[&str], Option<&AbortReason>, bool, ExitCode); 7] = [
            (&[], None, false, ExitCode::Ok),
            (&["promoted"], None, false, ExitCode::Ok),
            (&["promotion-held"], None, false, ExitCode::Drift),
            (
                &["promotion-failed", "promotion-held"],
                None,
                false,
                ExitCode::HostFailed,
            ),
            (
                &["promotion-failed"],
                Some(&aborted),
                false,
                ExitCode::Aborted,
            ),
            (
                &[],
                Some(&AbortReason::Interrupted),
                false,
                ExitCode::Interrupted,
            ),
            (
                &["promotion-held"],
                Some(&aborted),
                true,
                ExitCode::Interrupted,
            ),
        ];
        for (states, aborted, interrupted, want) in cases {
            let promotions: Vec<PromotionRecord> = states.iter().map(|s| promotion(s)).collect();
            assert_eq!(
                exit_code(&[], &promotions, aborted, interrupted),
                want,
                "{states:?} {aborted:?} {interrupted}"
            );
        }
    }
}
