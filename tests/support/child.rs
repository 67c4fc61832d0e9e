//! A spawned `carbonio-fleet` whose stderr a test watches while it runs: a reader thread
//! collects the lines, [`StderrTap::wait_for`] waits (bounded) for one that says an
//! event happened (e.g. that an interrupt was taken), and [`StderrTap::finish`] returns
//! the whole text once the child has exited.

use std::io::{BufRead as _, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The child's stderr, read line by line on a thread.
pub struct StderrTap {
    rx: mpsc::Receiver<String>,
    seen: String,
    reader: Option<JoinHandle<()>>,
}

impl StderrTap {
    /// Takes `child`'s piped stderr.
    pub fn new(child: &mut Child) -> StderrTap {
        let stderr = child.stderr.take().expect("the child's stderr is piped");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        StderrTap {
            rx,
            seen: String::new(),
            reader: Some(reader),
        }
    }

    /// Waits until a line containing `needle` has been written (true), the stream ended
    /// or `within` passed (false).
    pub fn wait_for(&mut self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    /// Everything the child wrote to stderr (call after it exited).
    pub fn finish(mut self) -> String {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        while let Ok(line) = self.rx.try_recv() {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        self.seen
    }

    /// What was read so far.
    pub fn text(&self) -> &str {
        &self.seen
    }
}
