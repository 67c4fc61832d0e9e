//! The one event stream of a run. Host tasks never print: they send these, and every
//! output (progress display, log, reports) is fed from them by one consumer.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::report::model::HostStatus;

/// Something that happened during a run, in the past tense.
#[derive(Debug, Clone)]
pub enum Event {
    RunStarted {
        command: &'static str,
        hosts: usize,
    },
    HostStarted {
        host: String,
    },
    HostConnected {
        host: String,
        elapsed: Duration,
    },
    HostGathered {
        host: String,
        elapsed: Duration,
    },
    HostFailed {
        host: String,
        kind: String,
        message: String,
    },
    HostFinished {
        host: String,
        status: HostStatus,
    },
    BatchStarted {
        number: usize,
        /// Batches in the rollout's plan (`batch 3 of 7`).
        of: usize,
        hosts: Vec<String>,
        canary: bool,
    },
    StepFinished {
        host: String,
        step: String,
        ok: bool,
        detail: String,
    },
    /// A remote command that changes a node is about to be sent (exactly as it will go
    /// over SSH); [`Event::CommandRan`] follows when it ends.
    CommandSent {
        host: String,
        purpose: String,
        command: String,
    },
    /// A remote command that changes a node (apply's change batches and restarts),
    /// exactly as sent over SSH. Commands never carry a secret (passwords only travel
    /// in the SSH auth exchange).
    CommandRan {
        host: String,
        purpose: String,
        command: String,
        /// Exit status, `signal NAME`, `unknown` or `not run`.
        exit: String,
        ok: bool,
    },
    Paused {
        duration: Duration,
    },
    RunFinished {
        exit_code: i32,
    },
}

/// Sending side handed to host tasks; sending never blocks and never fails the run
/// (a closed display must not stop an audit).
#[derive(Debug, Clone)]
pub struct Events {
    tx: Option<mpsc::UnboundedSender<Event>>,
}

impl Events {
    /// A stream and its receiving end.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx: Some(tx) }, rx)
    }

    /// A sink that drops everything (library callers that want no output).
    pub fn none() -> Self {
        Self { tx: None }
    }

    pub fn send(&self, e: Event) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(e);
        }
    }
}
