//! The run's shutdown handle, the same for `check` and `apply`: the first interrupt asks
//! the run to finish the work in flight and start no more (then write its report and
//! journal: exit 130); the second abandons the work in flight. The engine only reads
//! [`Interrupts`]; whoever runs it (the command line, on Ctrl-C, SIGTERM and SIGHUP)
//! holds the [`Interrupter`], as mini-redis hands its server a `shutdown` signal.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the run has been told so far.
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

/// The side that interrupts a run.
#[derive(Debug)]
pub struct Interrupter {
    count: watch::Sender<u32>,
    stop: CancellationToken,
    hard: CancellationToken,
}

impl Interrupter {
    /// Interrupts the run once more: the first time it starts nothing new, the second
    /// it abandons the work in flight. Returns how many interrupts there have been.
    pub fn interrupt(&self) -> u32 {
        let n = *self.count.borrow() + 1;
        if n == 1 {
            self.stop.cancel();
        } else if n == 2 {
            self.hard.cancel();
        }
        // The receivers may all be gone (the run is over): nothing is left to tell.
        self.count.send_replace(n);
        n
    }
}

/// A fresh handle pair: nothing interrupted yet.
pub fn channel() -> (Interrupter, Interrupts) {
    let (tx, rx) = watch::channel(0u32);
    let (stop, hard) = (CancellationToken::new(), CancellationToken::new());
    (
        Interrupter {
            count: tx,
            stop: stop.clone(),
            hard: hard.clone(),
        },
        Interrupts {
            count: rx,
            stop,
            hard,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_interrupt_stops_the_second_abandons() {
        let (interrupter, interrupts) = channel();
        assert!(!interrupts.any());
        assert_eq!(interrupter.interrupt(), 1);
        assert!(interrupts.any());
        assert!(interrupts.stop.is_cancelled());
        assert!(!interrupts.hard.is_cancelled());
        assert_eq!(interrupter.interrupt(), 2);
        assert!(interrupts.hard.is_cancelled());
        assert_eq!(interrupter.interrupt(), 3);
        assert_eq!(*interrupts.count.borrow(), 3);
    }
}
