//! Ctrl-C, SIGTERM and SIGHUP for a whole run (what an operator, systemd and Kubernetes
//! send), turned into the engine's [`Interrupts`]: the first asks the run to finish the
//! work in flight and start no more, the second abandons it. Each is said on stderr as
//! soon as it is heard, before the run is told, so the operator (and a test) knows it
//! was taken before the in-flight work has drained.

use crate::engine::interrupt::{self, Interrupts};

/// Starts listening (on the current runtime) and gives the run's side; `in_flight` names
/// the work the first interrupt lets finish ("restarts", "hosts").
pub(super) fn watch(in_flight: &'static str) -> Interrupts {
    let (interrupter, interrupts) = interrupt::channel();
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
            } else if n == 2 {
                tracing::warn!("interrupted again: abandoning the work in flight");
            }
            interrupter.interrupt();
        }
    });
    interrupts
}
