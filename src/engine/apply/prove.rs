//! Apply's proof: the hosts read again once nothing more will be done to them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::carbonio::gather::GatherPlan;
use crate::engine::gather::{HostGather, gather_session};
use crate::inventory::Host;
use crate::playbook::Playbook;
use crate::ssh::Session;

/// Apply's proof: every host whose state can have moved is gathered again, over its
/// open session, as soon as nothing more will be done to it — a rollout node right after
/// its health gate, a node that is not restarted right after the change batches — at most
/// `forks` at once. Proofs of early batches thus overlap the restarts of later ones, and
/// only the last batch's read adds to the run's wall time (with a 1 s JVM start that is
/// one JVM instead of one more full pass over the touched hosts).
pub struct Prover {
    playbook: Arc<Playbook>,
    plan: Arc<GatherPlan>,
    nonce: Arc<str>,
    slots: Arc<Semaphore>,
    started: BTreeSet<String>,
    tasks: JoinSet<(HostGather, jiff::Timestamp)>,
}

impl Prover {
    /// A prover for one run.
    pub fn new(playbook: Arc<Playbook>, plan: GatherPlan, nonce: &str, forks: usize) -> Prover {
        Prover {
            playbook,
            plan: Arc::new(plan),
            nonce: nonce.into(),
            slots: Arc::new(Semaphore::new(forks.max(1))),
            started: BTreeSet::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Starts the proof gather of `host` (once: later calls for it do nothing).
    pub fn prove(&mut self, host: &Host, session: &Session) {
        if !self.started.insert(host.name.clone()) {
            return;
        }
        let (host, session) = (host.clone(), session.clone());
        let (playbook, plan, nonce) =
            (self.playbook.clone(), self.plan.clone(), self.nonce.clone());
        let slots = self.slots.clone();
        let span = tracing::info_span!("host", host = %host.name, step = "verify");
        self.tasks.spawn(
            async move {
                // The semaphore is never closed, so acquiring cannot fail.
                let _slot = slots.acquire_owned().await.ok();
                let t0 = Instant::now();
                let outcome = gather_session(&session, &host, &playbook, &plan, &nonce).await;
                let elapsed = t0.elapsed();
                let gathered = HostGather {
                    host,
                    outcome,
                    connect_time: None,
                    gather_time: Some(elapsed),
                    total_time: elapsed,
                    session: Some(session),
                };
                (gathered, jiff::Timestamp::now())
            }
            .instrument(span),
        );
    }

    /// Whether the proof of `name` was started.
    pub fn started(&self, name: &str) -> bool {
        self.started.contains(name)
    }

    /// The proofs, in no particular order, each with the time it finished. With `abandon`
    /// (a second Ctrl-C) the ones still running are cancelled and only the finished ones
    /// come back.
    pub async fn finish(mut self, abandon: bool) -> Vec<(HostGather, jiff::Timestamp)> {
        if abandon {
            self.tasks.abort_all();
        }
        let mut done = Vec::new();
        while let Some(r) = self.tasks.join_next().await {
            match r {
                Ok(g) => done.push(g),
                // The host keeps its first reading and no `after`; say why.
                Err(e) if e.is_panic() => tracing::error!("a proof gather panicked: {e}"),
                Err(_) => {} // cancelled: abandoned above
            }
        }
        done
    }
}
