//! Terminal output fed by the engine's event stream: the progress display and the
//! audit log. The engine never prints; these consumers do.

pub mod audit;
pub mod progress;
