//! Rollout scheduling: which nodes restart when (the README's `[rollout]` keys under
//! "Playbook"; its place in the flow: docs/architecture.md).
//!
//! The [`Scheduler`] turns the rollout candidates and the validated [`Rollout`] policy into
//! batches (canary first, then the `batch` list, the last size repeating), never putting
//! more than `per_cluster` nodes of one cluster into a batch. The apply engine's
//! dispatcher drives it with messages: it asks [`Scheduler::next`] what to do, reports each
//! node's end with [`Scheduler::record`] and forwards Ctrl-C with [`Scheduler::interrupt`].
//! Batches run one at a time, so at most one batch of nodes is ever restarting.
//!
//! This module does no I/O and never sleeps: the caller owns time, passing the current
//! [`Instant`] in and receiving "pause until" instants back. Restarting, health gates and
//! SSH belong to the dispatcher.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::playbook::{Amount, Rollout};

/// A rollout candidate, in fleet (inventory) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutNode {
    /// Host name, unique in the inventory; the key of every record and report.
    pub name: String,
    /// The Carbonio cluster the node belongs to (its own name when standalone).
    pub cluster: String,
    /// Its effective config changed (or a restart is pending), so it needs a restart.
    pub needs_restart: bool,
}

/// How one node's restart and health gate ended, as the dispatcher reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeResult {
    /// Restarted and passed its health gate.
    Restarted,
    /// The restart or the health gate failed; counts against `max_failures`.
    Failed {
        /// Why, for the report.
        reason: String,
    },
    /// Found unreachable before its restart was sent; counted apart from failures.
    Unreachable,
}

impl fmt::Display for NodeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeResult::Restarted => f.write_str("restarted, health gate passed"),
            NodeResult::Failed { reason } => f.write_str(reason),
            NodeResult::Unreachable => f.write_str("unreachable before its restart"),
        }
    }
}

/// A batch of nodes to restart now, concurrently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// 1-based, increasing by one per batch.
    pub number: usize,
    /// Node names, in fleet order.
    pub nodes: Vec<String>,
    /// The canary batch: any failure in it aborts the rollout.
    pub is_canary: bool,
}

/// What the dispatcher should do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Start restarting these nodes; report each with [`Scheduler::record`].
    Batch(Batch),
    /// Nodes of the current batch are still restarting; ask again after the next record.
    Wait,
    /// The pause between batches runs until this instant; ask again then (or on Ctrl-C).
    PauseUntil(Instant),
    /// The rollout is over; this is its result.
    Done(Outcome),
}

/// Why the rollout stopped before its last batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum AbortReason {
    /// A node of the canary batch failed.
    CanaryFailed {
        /// The first canary node that failed.
        node: String,
    },
    /// More nodes failed than `max_failures` allows.
    BudgetExceeded {
        /// Failures when the budget was exceeded.
        failures: usize,
        /// Failures the budget allows.
        allowed: usize,
    },
    /// Ctrl-C: the current batch finished, no new batch started.
    Interrupted,
}

impl AbortReason {
    /// The reason without its details, as given to the nodes it left untouched.
    pub fn kind(&self) -> AbortKind {
        match self {
            AbortReason::CanaryFailed { .. } => AbortKind::CanaryFailed,
            AbortReason::BudgetExceeded { .. } => AbortKind::BudgetExceeded,
            AbortReason::Interrupted => AbortKind::Interrupted,
        }
    }
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbortReason::CanaryFailed { node } => write!(f, "canary `{node}` failed"),
            AbortReason::BudgetExceeded { failures, allowed } => write!(
                f,
                "failure budget exceeded ({failures} failed, {allowed} allowed)"
            ),
            AbortReason::Interrupted => f.write_str("interrupted"),
        }
    }
}

/// [`AbortReason`] without details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AbortKind {
    CanaryFailed,
    BudgetExceeded,
    Interrupted,
}

impl fmt::Display for AbortKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AbortKind::CanaryFailed => "canary failed",
            AbortKind::BudgetExceeded => "failure budget exceeded",
            AbortKind::Interrupted => "interrupted",
        })
    }
}

/// Where a node ended up in the rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum NodeState {
    Restarted,
    Failed {
        reason: String,
    },
    /// Unreachable before its restart; not counted against `max_failures`.
    Unreachable,
    /// Its batch never started because the rollout stopped.
    NotAttempted {
        reason: AbortKind,
    },
    /// `only_if_changed` and its config did not change: not scheduled.
    SkippedUnchanged,
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeState::Restarted => f.write_str("restarted"),
            NodeState::Failed { reason } => write!(f, "failed: {reason}"),
            NodeState::Unreachable => f.write_str("unreachable"),
            NodeState::NotAttempted { reason } => write!(f, "not-attempted ({reason})"),
            NodeState::SkippedUnchanged => f.write_str("skipped (unchanged)"),
        }
    }
}

/// One node's final state in the rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeOutcome {
    pub name: String,
    pub cluster: String,
    pub state: NodeState,
    /// The batch it was (or would have been) restarted in; `None` when not scheduled.
    pub batch: Option<usize>,
}

/// The result of a rollout, for report.json and the exit code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Why it stopped early; `None` when every batch ran.
    pub aborted: Option<AbortReason>,
    /// Every candidate, in fleet order.
    pub nodes: Vec<NodeOutcome>,
    /// Batches the plan had.
    pub batches_planned: usize,
    /// Batches that were started.
    pub batches_started: usize,
    /// Nodes that failed (restart or health gate).
    pub failures: usize,
    /// Failures `max_failures` allowed for this rollout.
    pub allowed_failures: usize,
    /// Nodes found unreachable; not counted in `failures`.
    pub unreachable: usize,
}

/// A record the scheduler cannot accept: a bug in the dispatcher, not a node's failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("node `{node}` is not part of this rollout")]
    UnknownNode { node: String },
    #[error(
        "node `{node}` is not restarting (its batch has not started, or it was already recorded)"
    )]
    NotInFlight { node: String },
}

/// The batches a rollout would run, as node names; skipped nodes are left out.
/// The same plan [`Scheduler`] follows; `plan` prints it.
pub fn plan_batches(nodes: &[RolloutNode], rollout: &Rollout) -> Vec<Vec<String>> {
    let scheduled = scheduled_indices(nodes, rollout);
    pack(nodes, &scheduled, rollout)
        .into_iter()
        .map(|batch| batch.into_iter().map(|i| nodes[i].name.clone()).collect())
        .collect()
}

/// Failures a rollout of `total` nodes may have before it aborts: a count, or a
/// percentage of `total` rounded down (so "0"/"0%", or a small percentage of a small
/// rollout, means the first failure aborts).
pub fn allowed_failures(max_failures: Amount, total: usize) -> usize {
    match max_failures {
        Amount::Count(n) => n,
        Amount::Percent(p) => total * usize::from(p) / 100,
    }
}

/// The size of a batch: a count, or a percentage of `total` rounded down; at least 1 so a
/// rollout always progresses.
fn batch_size(amount: Amount, total: usize) -> usize {
    let size = match amount {
        Amount::Count(n) => n,
        Amount::Percent(p) => total * usize::from(p) / 100,
    };
    size.max(1)
}

/// Indices of the nodes that take part in the rollout, in fleet order.
fn scheduled_indices(nodes: &[RolloutNode], rollout: &Rollout) -> Vec<usize> {
    (0..nodes.len())
        .filter(|&i| !rollout.only_if_changed || nodes[i].needs_restart)
        .collect()
}

/// Splits the scheduled nodes into batches: canary first, then the `batch` list with its
/// last entry repeating. A batch takes nodes in fleet order, skipping a node whose cluster
/// already has `per_cluster` nodes in it; skipped nodes stay at the front of the queue, so
/// the next batch takes them first and no cluster starves.
fn pack(nodes: &[RolloutNode], scheduled: &[usize], rollout: &Rollout) -> Vec<Vec<usize>> {
    let total = scheduled.len();
    let mut sizes: Vec<usize> = Vec::new();
    if rollout.canary > 0 {
        sizes.push(rollout.canary);
    }
    sizes.extend(rollout.batch.iter().map(|&a| batch_size(a, total)));
    // Validation rejects an empty list; one at a time is the cautious reading anyway.
    let repeat = sizes.last().copied().unwrap_or(1);
    // A limit of 0 would never restart anything; validation rejects it, 1 is the floor.
    let per_cluster = rollout.per_cluster.max(1);

    let mut queue = scheduled.to_vec();
    let mut batches = Vec::new();
    while !queue.is_empty() {
        let size = sizes.get(batches.len()).copied().unwrap_or(repeat);
        let mut batch = Vec::with_capacity(size.min(queue.len()));
        let mut in_batch: HashMap<&str, usize> = HashMap::new();
        let mut deferred = Vec::with_capacity(queue.len());
        for &i in &queue {
            let count = in_batch.entry(nodes[i].cluster.as_str()).or_default();
            if batch.len() < size && *count < per_cluster {
                *count += 1;
                batch.push(i);
            } else {
                deferred.push(i);
            }
        }
        queue = deferred;
        batches.push(batch);
    }
    batches
}

/// Where a node stands while the rollout runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Skipped,
    Pending,
    InFlight,
    Finished(NodeState),
}

/// The rollout state machine. Drive it from one loop:
///
/// 1. call [`next`](Self::next) with the current instant;
/// 2. on [`Next::Batch`], start those restarts and [`record`](Self::record) each result as
///    it arrives, calling `next` again after every record;
/// 3. on [`Next::PauseUntil`], wait until that instant (or a signal) and call `next` again;
/// 4. on Ctrl-C call [`interrupt`](Self::interrupt), then `next`;
/// 5. [`Next::Done`] carries the [`Outcome`].
///
/// A batch starts only when every node of the previous one is recorded and the pause has
/// elapsed, so at most one batch of nodes (≤ its size fleet-wide, ≤ `per_cluster` per
/// cluster) restarts at a time. The pause starts when `next` first sees the batch done.
#[derive(Debug)]
pub struct Scheduler {
    nodes: Vec<RolloutNode>,
    index: HashMap<String, usize>,
    slots: Vec<Slot>,
    /// Planned batch number (1-based) per node.
    batch_of: Vec<Option<usize>>,
    batches: Vec<Vec<usize>>,
    /// Batches issued so far; the current batch is `started - 1`.
    started: usize,
    has_canary: bool,
    in_flight: usize,
    failures: usize,
    allowed: usize,
    unreachable: usize,
    /// The first reason to stop wins: it is why the remaining nodes were not attempted.
    abort: Option<AbortReason>,
    pause: Duration,
    pause_until: Option<Instant>,
}

impl Scheduler {
    /// Plans the rollout of `nodes` (fleet order, unique names) under `rollout`.
    pub fn new(nodes: Vec<RolloutNode>, rollout: &Rollout) -> Scheduler {
        let scheduled = scheduled_indices(&nodes, rollout);
        let batches = pack(&nodes, &scheduled, rollout);
        let mut slots = vec![Slot::Skipped; nodes.len()];
        let mut batch_of = vec![None; nodes.len()];
        for (number, batch) in (1..).zip(&batches) {
            for &i in batch {
                slots[i] = Slot::Pending;
                batch_of[i] = Some(number);
            }
        }
        let index = (0..nodes.len())
            .map(|i| (nodes[i].name.clone(), i))
            .collect();
        Scheduler {
            index,
            slots,
            batch_of,
            has_canary: rollout.canary > 0 && !batches.is_empty(),
            batches,
            started: 0,
            in_flight: 0,
            failures: 0,
            allowed: allowed_failures(rollout.max_failures, scheduled.len()),
            unreachable: 0,
            abort: None,
            pause: rollout.pause,
            pause_until: None,
            nodes,
        }
    }

    /// Nodes taking part (not skipped as unchanged).
    pub fn total(&self) -> usize {
        self.batches.iter().map(Vec::len).sum()
    }

    /// Batches in the plan.
    pub fn batch_count(&self) -> usize {
        self.batches.len()
    }

    /// Failures the budget allows before the rollout aborts.
    pub fn allowed_failures(&self) -> usize {
        self.allowed
    }

    /// Why the rollout is stopping, if it is.
    pub fn abort_reason(&self) -> Option<&AbortReason> {
        self.abort.as_ref()
    }

    /// What to do now. Call it after every [`record`](Self::record), after a pause, and
    /// after [`interrupt`](Self::interrupt).
    pub fn next(&mut self, now: Instant) -> Next {
        if self.in_flight > 0 {
            return Next::Wait;
        }
        if self.abort.is_some() || self.started == self.batches.len() {
            return Next::Done(self.outcome());
        }
        if self.started > 0 && !self.pause.is_zero() {
            let until = *self.pause_until.get_or_insert(now + self.pause);
            if now < until {
                return Next::PauseUntil(until);
            }
        }
        self.pause_until = None;
        let number = self.started + 1;
        let batch = &self.batches[self.started];
        for &i in batch {
            self.slots[i] = Slot::InFlight;
        }
        self.in_flight = batch.len();
        let nodes = batch.iter().map(|&i| self.nodes[i].name.clone()).collect();
        self.started = number;
        Next::Batch(Batch {
            number,
            nodes,
            is_canary: self.has_canary && number == 1,
        })
    }

    /// Records how a node of the current batch ended. A failure in the canary batch, or
    /// one past the budget, stops the rollout once the current batch is done.
    pub fn record(&mut self, node: &str, result: NodeResult) -> Result<(), RecordError> {
        let &i = self
            .index
            .get(node)
            .ok_or_else(|| RecordError::UnknownNode {
                node: node.to_owned(),
            })?;
        if self.slots[i] != Slot::InFlight {
            return Err(RecordError::NotInFlight {
                node: node.to_owned(),
            });
        }
        self.in_flight -= 1;
        let state = match result {
            NodeResult::Restarted => NodeState::Restarted,
            NodeResult::Unreachable => {
                self.unreachable += 1;
                NodeState::Unreachable
            }
            NodeResult::Failed { reason } => {
                self.failures += 1;
                if self.abort.is_none() {
                    if self.has_canary && self.started == 1 {
                        self.abort = Some(AbortReason::CanaryFailed {
                            node: node.to_owned(),
                        });
                    } else if self.failures > self.allowed {
                        self.abort = Some(AbortReason::BudgetExceeded {
                            failures: self.failures,
                            allowed: self.allowed,
                        });
                    }
                }
                NodeState::Failed { reason }
            }
        };
        self.slots[i] = Slot::Finished(state);
        Ok(())
    }

    /// Ctrl-C: start no new batch; the current one finishes. Keeps an earlier abort
    /// reason, since that is what stopped the remaining nodes.
    pub fn interrupt(&mut self) {
        self.abort.get_or_insert(AbortReason::Interrupted);
    }

    fn outcome(&self) -> Outcome {
        let nodes = (0..self.nodes.len())
            .map(|i| {
                let state = match &self.slots[i] {
                    Slot::Skipped => NodeState::SkippedUnchanged,
                    Slot::Finished(state) => state.clone(),
                    // Only asked for with nothing in flight; pending nodes remain only
                    // when the rollout stopped early.
                    Slot::Pending | Slot::InFlight => NodeState::NotAttempted {
                        reason: self
                            .abort
                            .as_ref()
                            .map_or(AbortKind::Interrupted, AbortReason::kind),
                    },
                };
                NodeOutcome {
                    name: self.nodes[i].name.clone(),
                    cluster: self.nodes[i].cluster.clone(),
                    state,
                    batch: self.batch_of[i],
                }
            })
            .collect();
        Outcome {
            aborted: self.abort.clone(),
            nodes,
            batches_planned: self.batches.len(),
            batches_started: self.started,
            failures: self.failures,
            allowed_failures: self.allowed,
            unreachable: self.unreachable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::{ProbeFrom, RestartMethod};
    use proptest::prelude::*;
    use test_case::test_case;

    fn rollout(batch: Vec<Amount>, canary: usize, per_cluster: usize) -> Rollout {
        Rollout {
            batch,
            per_cluster,
            canary,
            pause: Duration::ZERO,
            max_failures: Amount::Count(0),
            restart: RestartMethod::Reload,
            health_timeout: Duration::from_secs(300),
            probe_from: ProbeFrom::Node,
            only_if_changed: true,
            policy_socket: true,
            rollback: true,
            known_rcpt: None,
        }
    }

    /// `n` standalone nodes `n1..`, each its own cluster, all needing a restart.
    fn standalone(n: usize) -> Vec<RolloutNode> {
        (1..=n)
            .map(|i| RolloutNode {
                name: format!("n{i}"),
                cluster: format!("n{i}"),
                needs_restart: true,
            })
            .collect()
    }

    /// Nodes from `cluster:name` specs, all needing a restart.
    fn clustered(specs: &[&str]) -> Vec<RolloutNode> {
        specs
            .iter()
            .map(|spec| {
                let (cluster, name) = spec.split_once(':').unwrap();
                RolloutNode {
                    name: name.to_owned(),
                    cluster: cluster.to_owned(),
                    needs_restart: true,
                }
            })
            .collect()
    }

    use Amount::{Count, Percent};

    #[test_case(40, vec![Count(1), Count(5), Percent(25)], 0 => vec![1, 5, 10, 10, 10, 4]; "list over 40 nodes, last repeats")]
    #[test_case(7, vec![Percent(10)], 0 => vec![1; 7]; "10 percent of 7 rounds down to at least 1")]
    #[test_case(10, vec![Percent(50)], 1 => vec![1, 5, 4]; "canary 1 then 50 percent")]
    #[test_case(40, vec![Count(1), Count(5), Percent(25)], 2 => vec![2, 1, 5, 10, 10, 10, 2]; "canary comes before the list")]
    #[test_case(7, vec![Count(3)], 0 => vec![3, 3, 1]; "count")]
    #[test_case(3, vec![Count(2)], 5 => vec![3]; "canary larger than the rollout")]
    #[test_case(9, vec![Percent(100)], 0 => vec![9]; "all at once")]
    #[test_case(4, vec![Count(0)], 0 => vec![1; 4]; "zero count still progresses")]
    #[test_case(0, vec![Count(2)], 1 => Vec::<usize>::new(); "nothing to restart")]
    fn batch_sizes(n: usize, batch: Vec<Amount>, canary: usize) -> Vec<usize> {
        plan_batches(&standalone(n), &rollout(batch, canary, 1))
            .iter()
            .map(Vec::len)
            .collect()
    }

    #[test_case(
        &["a:a1", "a:a2", "a:a3", "b:b1", "c:c1", "d:d1"], vec![Count(3)], 0, 1
        => vec![vec!["a1", "b1", "c1"], vec!["a2", "d1"], vec!["a3"]];
        "per_cluster 1 with a 3-node cluster and singletons"
    )]
    #[test_case(
        &["a:a1", "a:a2", "a:a3", "a:a4", "b:b1", "c:c1"], vec![Count(3)], 0, 2
        => vec![vec!["a1", "a2", "b1"], vec!["a3", "a4", "c1"]];
        "per_cluster 2"
    )]
    #[test_case(
        &["a:a1", "a:a2", "a:a3"], vec![Count(10)], 0, 1
        => vec![vec!["a1"], vec!["a2"], vec!["a3"]];
        "one cluster restarts one node at a time whatever the batch size"
    )]
    #[test_case(
        &["a:a1", "a:a2", "b:b1", "b:b2"], vec![Count(2)], 1, 1
        => vec![vec!["a1"], vec!["a2", "b1"], vec!["b2"]];
        "canary then deferred nodes go first"
    )]
    fn per_cluster_packing(
        specs: &[&str],
        batch: Vec<Amount>,
        canary: usize,
        per_cluster: usize,
    ) -> Vec<Vec<String>> {
        plan_batches(&clustered(specs), &rollout(batch, canary, per_cluster))
    }

    #[test_case(Count(0), 10 => 0; "count zero")]
    #[test_case(Count(3), 10 => 3; "count")]
    #[test_case(Percent(0), 10 => 0; "zero percent")]
    #[test_case(Percent(10), 10 => 1; "ten percent of ten")]
    #[test_case(Percent(10), 9 => 0; "ten percent of nine rounds down to zero")]
    #[test_case(Percent(5), 40 => 2; "five percent of forty")]
    #[test_case(Percent(100), 5 => 5; "everything may fail")]
    fn failure_budget(max: Amount, total: usize) -> usize {
        allowed_failures(max, total)
    }

    /// Drives a scheduler to the end with zero pause: `result` decides each node's fate,
    /// `interrupt_after` interrupts once that many batches have been issued.
    fn drive(
        nodes: Vec<RolloutNode>,
        rollout: &Rollout,
        result: impl Fn(&str) -> NodeResult,
        interrupt_after: Option<usize>,
    ) -> (Vec<Batch>, Outcome) {
        let mut scheduler = Scheduler::new(nodes, rollout);
        let now = Instant::now();
        let mut batches = Vec::new();
        loop {
            match scheduler.next(now) {
                Next::Batch(batch) => {
                    if interrupt_after == Some(batch.number) {
                        scheduler.interrupt();
                    }
                    for node in &batch.nodes {
                        scheduler.record(node, result(node)).unwrap();
                    }
                    batches.push(batch);
                }
                Next::Done(outcome) => return (batches, outcome),
                other => panic!("unexpected {other:?} with zero pause and nothing in flight"),
            }
        }
    }

    fn states(outcome: &Outcome) -> Vec<(String, String)> {
        outcome
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.state.to_string()))
            .collect()
    }

    fn fail_on<'a>(names: &'a [&'a str]) -> impl Fn(&str) -> NodeResult + 'a {
        move |node| {
            if names.contains(&node) {
                NodeResult::Failed {
                    reason: "health gate: 450 instead of 550".into(),
                }
            } else {
                NodeResult::Restarted
            }
        }
    }

    #[test]
    fn canary_failure_aborts_everything_after_it() {
        let mut policy = rollout(vec![Count(2)], 1, 1);
        policy.max_failures = Count(10);
        let (batches, outcome) = drive(standalone(5), &policy, fail_on(&["n1"]), None);
        assert_eq!(batches.len(), 1);
        assert!(batches[0].is_canary);
        assert_eq!(
            outcome.aborted,
            Some(AbortReason::CanaryFailed { node: "n1".into() })
        );
        assert_eq!(outcome.failures, 1);
        assert_eq!(outcome.batches_started, 1);
        assert_eq!(outcome.batches_planned, 3);
        let expected: Vec<_> = [
            ("n1", "failed: health gate: 450 instead of 550"),
            ("n2", "not-attempted (canary failed)"),
            ("n3", "not-attempted (canary failed)"),
            ("n4", "not-attempted (canary failed)"),
            ("n5", "not-attempted (canary failed)"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(states(&outcome), expected);
        let batch_numbers: Vec<_> = outcome.nodes.iter().map(|n| n.batch).collect();
        assert_eq!(batch_numbers, [Some(1), Some(2), Some(2), Some(3), Some(3)]);
    }

    #[test]
    fn failure_outside_the_canary_within_budget_goes_on() {
        let mut policy = rollout(vec![Count(2)], 1, 1);
        policy.max_failures = Count(1);
        let (batches, outcome) = drive(standalone(5), &policy, fail_on(&["n2"]), None);
        assert_eq!(batches.len(), 3);
        assert_eq!(outcome.aborted, None);
        assert_eq!(outcome.failures, 1);
        assert!(batches.iter().skip(1).all(|b| !b.is_canary));
    }

    #[test]
    fn budget_exceeded_mid_rollout_stops_after_the_batch() {
        let mut policy = rollout(vec![Count(2)], 0, 1);
        policy.max_failures = Count(1);
        let (batches, outcome) = drive(standalone(10), &policy, fail_on(&["n3", "n4"]), None);
        assert_eq!(batches.len(), 2);
        assert!(!batches[0].is_canary);
        assert_eq!(
            outcome.aborted,
            Some(AbortReason::BudgetExceeded {
                failures: 2,
                allowed: 1
            })
        );
        let s = states(&outcome);
        assert_eq!(s[0].1, "restarted");
        assert_eq!(s[1].1, "restarted");
        assert!(s[2].1.starts_with("failed: "));
        assert!(s[3].1.starts_with("failed: "));
        assert!(
            s[4..]
                .iter()
                .all(|(_, st)| st == "not-attempted (failure budget exceeded)")
        );
        assert_eq!(outcome.nodes[9].batch, Some(5));
    }

    #[test_case(Count(2), &["n1", "n5"] => None; "count at the budget")]
    #[test_case(Count(2), &["n1", "n5", "n9"] => Some((3, 2)); "count over the budget")]
    #[test_case(Count(0), &["n7"] => Some((1, 0)); "zero: first failure aborts")]
    #[test_case(Percent(20), &["n1", "n2"] => None; "20 percent of 10 allows 2")]
    #[test_case(Percent(19), &["n1", "n2"] => Some((2, 1)); "19 percent of 10 allows 1")]
    #[test_case(Percent(0), &["n10"] => Some((1, 0)); "zero percent, failure in the last batch")]
    fn budget_edges(max: Amount, failing: &[&str]) -> Option<(usize, usize)> {
        let mut policy = rollout(vec![Count(1)], 0, 1);
        policy.max_failures = max;
        let (_, outcome) = drive(standalone(10), &policy, fail_on(failing), None);
        assert_eq!(outcome.failures, failing.len());
        match outcome.aborted {
            None => None,
            Some(AbortReason::BudgetExceeded { failures, allowed }) => Some((failures, allowed)),
            Some(other) => panic!("unexpected abort {other:?}"),
        }
    }

    #[test]
    fn percent_budget_counts_only_nodes_in_the_rollout() {
        // 10 candidates but only 5 changed: 20% of 5 allows 1, not 2.
        let mut nodes = standalone(10);
        for node in &mut nodes[5..] {
            node.needs_restart = false;
        }
        let mut policy = rollout(vec![Count(1)], 0, 1);
        policy.max_failures = Percent(20);
        let scheduler = Scheduler::new(nodes, &policy);
        assert_eq!(scheduler.total(), 5);
        assert_eq!(scheduler.allowed_failures(), 1);
    }

    #[test]
    fn unreachable_nodes_are_counted_apart() {
        let policy = rollout(vec![Count(3)], 1, 1);
        let result = |node: &str| {
            if node == "n3" || node == "n6" {
                NodeResult::Unreachable
            } else {
                NodeResult::Restarted
            }
        };
        let (batches, outcome) = drive(standalone(7), &policy, result, None);
        assert_eq!(batches.len(), 3);
        assert_eq!(
            outcome.aborted, None,
            "max_failures 0 must ignore unreachable"
        );
        assert_eq!(outcome.failures, 0);
        assert_eq!(outcome.unreachable, 2);
        assert_eq!(outcome.nodes[2].state, NodeState::Unreachable);
        assert_eq!(outcome.nodes[6].state, NodeState::Restarted);
    }

    #[test]
    fn interrupt_lets_the_current_batch_finish_then_stops() {
        let policy = rollout(vec![Count(2)], 0, 1);
        let mut scheduler = Scheduler::new(standalone(6), &policy);
        let now = Instant::now();
        let Next::Batch(first) = scheduler.next(now) else {
            panic!("first batch expected")
        };
        assert_eq!(first.nodes, ["n1", "n2"]);
        scheduler.record("n1", NodeResult::Restarted).unwrap();
        scheduler.interrupt();
        assert_eq!(scheduler.next(now), Next::Wait, "n2 is still restarting");
        scheduler.record("n2", NodeResult::Restarted).unwrap();
        let Next::Done(outcome) = scheduler.next(now) else {
            panic!("done expected")
        };
        assert_eq!(outcome.aborted, Some(AbortReason::Interrupted));
        assert_eq!(outcome.batches_started, 1);
        assert_eq!(outcome.nodes[1].state, NodeState::Restarted);
        for node in &outcome.nodes[2..] {
            assert_eq!(
                node.state,
                NodeState::NotAttempted {
                    reason: AbortKind::Interrupted
                }
            );
        }
    }

    #[test]
    fn interrupt_during_the_pause_starts_nothing_new() {
        let mut policy = rollout(vec![Count(1)], 0, 1);
        policy.pause = Duration::from_secs(30);
        let mut scheduler = Scheduler::new(standalone(3), &policy);
        let t0 = Instant::now();
        assert!(matches!(scheduler.next(t0), Next::Batch(_)));
        scheduler.record("n1", NodeResult::Restarted).unwrap();
        assert_eq!(
            scheduler.next(t0),
            Next::PauseUntil(t0 + Duration::from_secs(30))
        );
        scheduler.interrupt();
        let Next::Done(outcome) = scheduler.next(t0 + Duration::from_secs(1)) else {
            panic!("done expected")
        };
        assert_eq!(outcome.aborted, Some(AbortReason::Interrupted));
        assert_eq!(outcome.batches_started, 1);
    }

    #[test]
    fn interrupt_keeps_an_earlier_abort_reason() {
        let mut scheduler = Scheduler::new(standalone(4), &rollout(vec![Count(1)], 1, 1));
        let now = Instant::now();
        assert!(matches!(scheduler.next(now), Next::Batch(b) if b.is_canary));
        let failed = NodeResult::Failed {
            reason: "no 5xx".into(),
        };
        scheduler.record("n1", failed).unwrap();
        scheduler.interrupt();
        let Next::Done(outcome) = scheduler.next(now) else {
            panic!("done expected")
        };
        assert_eq!(
            outcome.aborted,
            Some(AbortReason::CanaryFailed { node: "n1".into() })
        );
        assert_eq!(
            outcome.nodes[3].state,
            NodeState::NotAttempted {
                reason: AbortKind::CanaryFailed
            }
        );
    }

    #[test]
    fn pause_runs_between_batches_not_after_the_last() {
        let mut policy = rollout(vec![Count(1)], 0, 1);
        policy.pause = Duration::from_secs(30);
        let mut scheduler = Scheduler::new(standalone(2), &policy);
        let t0 = Instant::now();
        assert!(matches!(scheduler.next(t0), Next::Batch(b) if b.number == 1));
        scheduler.record("n1", NodeResult::Restarted).unwrap();
        let t1 = t0 + Duration::from_secs(5);
        let until = t1 + Duration::from_secs(30);
        assert_eq!(scheduler.next(t1), Next::PauseUntil(until));
        // Asking again mid-pause does not restart the clock.
        assert_eq!(
            scheduler.next(t1 + Duration::from_secs(10)),
            Next::PauseUntil(until)
        );
        assert!(matches!(scheduler.next(until), Next::Batch(b) if b.number == 2));
        scheduler.record("n2", NodeResult::Restarted).unwrap();
        let Next::Done(outcome) = scheduler.next(until) else {
            panic!("no pause after the last batch")
        };
        assert_eq!(outcome.aborted, None);
    }

    #[test]
    fn no_batch_starts_while_nodes_are_restarting() {
        let policy = rollout(vec![Count(2)], 0, 1);
        let mut scheduler = Scheduler::new(standalone(4), &policy);
        let now = Instant::now();
        assert!(matches!(scheduler.next(now), Next::Batch(_)));
        assert_eq!(scheduler.next(now), Next::Wait);
        scheduler.record("n2", NodeResult::Restarted).unwrap();
        assert_eq!(scheduler.next(now), Next::Wait);
        scheduler.record("n1", NodeResult::Restarted).unwrap();
        assert!(matches!(scheduler.next(now), Next::Batch(b) if b.nodes == ["n3", "n4"]));
    }

    #[test]
    fn bad_records_are_rejected() {
        let policy = rollout(vec![Count(1)], 0, 1);
        let mut scheduler = Scheduler::new(standalone(2), &policy);
        assert_eq!(
            scheduler.record("n1", NodeResult::Restarted),
            Err(RecordError::NotInFlight { node: "n1".into() }),
            "before its batch started"
        );
        assert!(matches!(scheduler.next(Instant::now()), Next::Batch(_)));
        scheduler.record("n1", NodeResult::Restarted).unwrap();
        assert_eq!(
            scheduler.record("n1", NodeResult::Restarted),
            Err(RecordError::NotInFlight { node: "n1".into() }),
            "recorded twice"
        );
        assert_eq!(
            scheduler.record("n2", NodeResult::Restarted),
            Err(RecordError::NotInFlight { node: "n2".into() }),
            "its batch has not started"
        );
        assert_eq!(
            scheduler.record("mail9", NodeResult::Restarted),
            Err(RecordError::UnknownNode {
                node: "mail9".into()
            })
        );
    }

    #[test_case(true => vec!["restarted", "skipped (unchanged)", "restarted", "skipped (unchanged)"]; "only changed nodes restart")]
    #[test_case(false => vec!["restarted"; 4]; "every candidate restarts")]
    fn only_if_changed(only_if_changed: bool) -> Vec<String> {
        let mut nodes = standalone(4);
        nodes[1].needs_restart = false;
        nodes[3].needs_restart = false;
        let mut policy = rollout(vec![Count(1)], 0, 1);
        policy.only_if_changed = only_if_changed;
        let (batches, outcome) = drive(nodes, &policy, |_| NodeResult::Restarted, None);
        let expected_batches = if only_if_changed { 2 } else { 4 };
        assert_eq!(batches.len(), expected_batches);
        if only_if_changed {
            assert_eq!(outcome.nodes[1].batch, None);
        }
        outcome.nodes.iter().map(|n| n.state.to_string()).collect()
    }

    #[test]
    fn nothing_to_restart_is_done_at_once() {
        let mut nodes = standalone(3);
        for node in &mut nodes {
            node.needs_restart = false;
        }
        let mut scheduler = Scheduler::new(nodes, &rollout(vec![Count(1)], 1, 1));
        let Next::Done(outcome) = scheduler.next(Instant::now()) else {
            panic!("done expected")
        };
        assert_eq!(outcome.batches_planned, 0);
        assert!(
            outcome
                .nodes
                .iter()
                .all(|n| n.state == NodeState::SkippedUnchanged)
        );
    }

    #[test]
    fn outcome_serializes_for_the_report() {
        let (_, outcome) = drive(
            standalone(2),
            &rollout(vec![Count(1)], 1, 1),
            fail_on(&["n1"]),
            None,
        );
        let json = serde_json::to_value(&outcome).unwrap();
        assert_eq!(
            json["aborted"],
            serde_json::json!({"kind": "canary-failed", "node": "n1"})
        );
        assert_eq!(
            json["nodes"][1],
            serde_json::json!({
                "name": "n2",
                "cluster": "n2",
                "state": {"state": "not-attempted", "reason": "canary-failed"},
                "batch": 2,
            })
        );
        let back: Outcome = serde_json::from_value(json).unwrap();
        assert_eq!(back, outcome);
    }

    fn amount(max_count: usize) -> impl Strategy<Value = Amount> {
        prop_oneof![
            (0..=max_count).prop_map(Amount::Count),
            (0u8..=100).prop_map(Amount::Percent),
        ]
    }

    fn any_rollout() -> impl Strategy<Value = Rollout> {
        (
            prop::collection::vec(amount(20), 1..=3),
            1usize..=4,
            0usize..=3,
            0u64..=2,
            amount(10),
            any::<bool>(),
        )
            .prop_map(
                |(batch, per_cluster, canary, pause, max_failures, only_if_changed)| Rollout {
                    pause: Duration::from_secs(pause),
                    max_failures,
                    only_if_changed,
                    ..rollout(batch, canary, per_cluster)
                },
            )
    }

    /// A fleet of 1–300 nodes over 1–40 clusters, with a fate per node:
    /// (cluster, needs_restart, fate) where fate 0 = restarted, 1 = failed, 2 = unreachable.
    fn any_fleet() -> impl Strategy<Value = Vec<(usize, bool, u8)>> {
        (1usize..=40).prop_flat_map(|clusters| {
            prop::collection::vec(
                (
                    0..clusters,
                    any::<bool>(),
                    prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
                ),
                1..=300,
            )
        })
    }

    /// The size a batch may have, computed independently of `pack`.
    fn size_limit(policy: &Rollout, total: usize, number: usize) -> usize {
        let mut sizes = Vec::new();
        if policy.canary > 0 {
            sizes.push(policy.canary);
        }
        for amount in &policy.batch {
            sizes.push(match *amount {
                Amount::Count(n) => n.max(1),
                Amount::Percent(p) => (total * p as usize / 100).max(1),
            });
        }
        sizes[(number - 1).min(sizes.len() - 1)]
    }

    /// Every node of `outcome` in inventory order, in the one state consistent with what
    /// happened to it: skipped when not scheduled, not attempted when never issued, else
    /// its fate; with the number of the batch that issued it.
    fn check_node_states(
        outcome: &Outcome,
        nodes: &[RolloutNode],
        scheduled: &[bool],
        issued: &HashMap<String, usize>,
        fate: &HashMap<String, u8>,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(outcome.nodes.len(), nodes.len());
        for (i, node) in outcome.nodes.iter().enumerate() {
            prop_assert_eq!(&node.name, &nodes[i].name);
            let expected_state = match (scheduled[i], issued.get(&node.name)) {
                (false, _) => NodeState::SkippedUnchanged,
                (true, None) => NodeState::NotAttempted {
                    reason: outcome.aborted.as_ref().unwrap().kind(),
                },
                (true, Some(_)) => match fate[&node.name] {
                    0 => NodeState::Restarted,
                    1 => NodeState::Failed {
                        reason: "gate".into(),
                    },
                    _ => NodeState::Unreachable,
                },
            };
            prop_assert_eq!(&node.state, &expected_state);
            if let Some(&number) = issued.get(&node.name) {
                prop_assert_eq!(node.batch, Some(number));
            }
            prop_assert_eq!(node.batch.is_some(), scheduled[i]);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn scheduler_invariants(
            fleet in any_fleet(),
            policy in any_rollout(),
            no_failures in any::<bool>(),
            interrupt_at in prop::option::of(1usize..=20),
        ) {
            let nodes: Vec<RolloutNode> = fleet
                .iter()
                .enumerate()
                .map(|(i, &(cluster, needs_restart, _))| RolloutNode {
                    name: format!("mail{i}"),
                    cluster: format!("c{cluster}"),
                    needs_restart,
                })
                .collect();
            let fate: HashMap<String, u8> = nodes
                .iter()
                .zip(&fleet)
                .map(|(n, &(_, _, f))| (n.name.clone(), if no_failures { 0 } else { f }))
                .collect();
            let cluster_of: HashMap<&str, &str> =
                nodes.iter().map(|n| (n.name.as_str(), n.cluster.as_str())).collect();
            let scheduled: Vec<bool> =
                nodes.iter().map(|n| !policy.only_if_changed || n.needs_restart).collect();
            let total = scheduled.iter().filter(|&&s| s).count();
            let allowed = allowed_failures(policy.max_failures, total);

            let mut scheduler = Scheduler::new(nodes.clone(), &policy);
            let planned = plan_batches(&nodes, &policy);
            let mut now = Instant::now();
            let mut issued: HashMap<String, usize> = HashMap::new();
            let mut last_number = 0;
            let mut failures = 0;
            let mut must_stop = false;
            let mut issued_batches = Vec::new();
            let outcome = loop {
                match scheduler.next(now) {
                    Next::Batch(batch) => {
                        prop_assert!(!must_stop, "batch {} issued after an abort", batch.number);
                        prop_assert_eq!(batch.number, last_number + 1);
                        last_number = batch.number;
                        prop_assert!(!batch.nodes.is_empty());
                        prop_assert!(batch.nodes.len() <= size_limit(&policy, total, batch.number));
                        let mut per_cluster: HashMap<&str, usize> = HashMap::new();
                        for node in &batch.nodes {
                            *per_cluster.entry(cluster_of[node.as_str()]).or_default() += 1;
                            prop_assert!(issued.insert(node.clone(), batch.number).is_none(),
                                "{} issued twice", node);
                        }
                        prop_assert!(per_cluster.values().all(|&c| c <= policy.per_cluster));
                        prop_assert_eq!(batch.is_canary, policy.canary > 0 && batch.number == 1);
                        if interrupt_at == Some(batch.number) {
                            scheduler.interrupt();
                            must_stop = true;
                        }
                        // Record one by one: nothing new may start while nodes restart.
                        for (k, node) in batch.nodes.iter().enumerate() {
                            let result = match fate[node] {
                                0 => NodeResult::Restarted,
                                1 => {
                                    failures += 1;
                                    if batch.is_canary || failures > allowed {
                                        must_stop = true;
                                    }
                                    NodeResult::Failed { reason: "gate".into() }
                                }
                                _ => NodeResult::Unreachable,
                            };
                            scheduler.record(node, result).unwrap();
                            if k + 1 < batch.nodes.len() {
                                prop_assert_eq!(scheduler.next(now), Next::Wait);
                            }
                        }
                        issued_batches.push(batch.nodes);
                    }
                    Next::PauseUntil(until) => {
                        prop_assert!(until > now);
                        prop_assert!(until <= now + policy.pause);
                        now = until;
                    }
                    Next::Wait => prop_assert!(false, "wait with nothing in flight"),
                    Next::Done(outcome) => break outcome,
                }
            };

            // The issued batches follow the previewed plan.
            prop_assert_eq!(&issued_batches[..], &planned[..issued_batches.len()]);
            prop_assert_eq!(outcome.batches_started, issued_batches.len());
            prop_assert_eq!(outcome.batches_planned, planned.len());
            prop_assert_eq!(outcome.failures, failures);
            prop_assert_eq!(outcome.aborted.is_some(), must_stop);

            // Every node ends in exactly one state, consistent with what happened to it.
            check_node_states(&outcome, &nodes, &scheduled, &issued, &fate)?;

            // Without failures or interrupts every node that needs it restarts exactly once.
            if no_failures && interrupt_at.is_none() {
                prop_assert_eq!(&outcome.aborted, &None);
                prop_assert_eq!(issued.len(), total);
                let all_restarted = outcome.nodes.iter().zip(&scheduled).all(|(n, &s)| {
                    n.state == if s { NodeState::Restarted } else { NodeState::SkippedUnchanged }
                });
                prop_assert!(all_restarted);
            }
        }
    }
}
