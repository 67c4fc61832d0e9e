//! Ctrl-C, SIGTERM and SIGHUP for a whole run (what an operator, systemd and Kubernetes
//! send), the same for `check` and `apply`: the first asks the run to finish the work in
//! flight and start no more (then write its report and journal, and exit 130); the second
//! abandons the work in flight. Each is said on stderr as soon as it is heard, so the
//! operator (and a test) knows it was taken before the in-flight work has drained.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the run's signal handler has heard.
#[derive(Debug, Clone)]
pub struct Interrupts {
    /// How many interrupts so far.
    pub count: watch::Receiver<u32>,
    /// Cancelled at the first: start nothing new.
    pub stop: CancellationToken,
    /// Cancelled at the second: abandon the work in flight.
    pub hard: CancellationToken,
}

impl Interrupts {
    /// Whether the run was interrupted at least once.
    pub fn any(&self) -> bool {
        *self.count.borrow() > 0
    }
}

/// Starts counting interrupts; `in_flight` names the work the first one lets finish
/// ("restarts", "hosts").
pub fn watch(in_flight: &'static str) -> Interrupts {
    let (tx, rx) = watch::channel(0u32);
    let (stop, hard) = (CancellationToken::new(), CancellationToken::new());
    let (stop2, hard2) = (stop.clone(), hard.clone());
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        let mut n = 0;
        loop {
            let got = tokio::select! {
                s = int.recv() => s,
                s = term.recv() => s,
                s = hup.recv() => s,
            };
            if got.is_none() {
                break;
            }
            n += 1;
            if n == 1 {
                tracing::warn!(
                    "interrupted: finishing the {in_flight} in flight, starting no more \
                     (interrupt again to abandon them)"
                );
                stop2.cancel();
            } else if n == 2 {
                tracing::warn!("interrupted again: abandoning the work in flight");
                hard2.cancel();
            }
            let _ = tx.send(n);
        }
    });
    Interrupts {
        count: rx,
        stop,
        hard,
    }
}
