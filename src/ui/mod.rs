//! Terminal output fed by the engine's event stream: logging (stderr, `--log-file`),
//! the progress display and the audit events. The engine never prints; these do.

pub mod audit;
pub mod logging;
pub mod progress;
