//! The terminal: what the engine's event stream shows while a run goes (logging on
//! stderr and `--log-file`, the progress display, the audit events) and how its results
//! read afterwards (the run's [`summary`], the plan as a reviewed diff in [`plan_diff`]),
//! with the width, colour and escaping rules they share ([`term`], [`safe`]). The engine
//! never prints; the command line prints what these render.

pub mod audit;
pub mod logging;
pub mod plan_diff;
pub mod progress;
pub mod safe;
pub mod summary;
pub mod term;

/// For tests of what the subscribers write: a writer (and, cloned into a closure, a
/// `MakeWriter`) into one shared buffer.
#[cfg(test)]
pub(crate) mod test_writer {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Buffer {
        /// Everything written so far.
        pub fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
