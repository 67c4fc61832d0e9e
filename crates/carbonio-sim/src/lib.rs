//! The simulated Carbonio fleet: russh servers on loopback, each emulating one Carbonio
//! (or Zimbra) node (shell, `carbonio prov`, `zmcontrol`, `systemctl`, `postconf`, SMTP
//! on port 25), for carbonio-fleet's demo, its integration tests and benchmarks; plus a
//! DNS server publishing the hosted domains' SPF, DKIM and DMARC records, and the same
//! emulated programs as real processes ([`exec`], `sim-exec`).
//!
//! A crate of its own so that the tool's production build leaves it out (carbonio-fleet
//! depends on it only through its default `demo` feature). It models the machines, not
//! the tool: nothing here depends on carbonio-fleet, and what the tool and this model
//! must agree on is tested from the tool's side (its `tests/`). The one text both share
//! is the gather's awk program, which this crate recognises verbatim
//! (`programs/awk.rs`).

pub mod attrs;
pub mod dns;
pub mod duration;
pub mod error;
pub mod exec;
pub mod flavour;
pub mod fleet;
pub mod node;
pub mod policyd;
pub mod postfix;
pub mod profiles;
pub mod programs;
pub mod realmta;
pub mod restarts;
mod server;
pub mod shell;
pub mod simulate;
pub mod smtp;
pub mod zmconfigd;

pub use error::SimError;
pub use fleet::{
    Addressing, Fleet, FleetSpec, NodeHandle, NodeSnapshot, NodeSpec, build_nodes, standalone_node,
};
pub use profiles::{Behaviour, NodeProfile, NodeRole, Posture, RunningSetup};
pub use restarts::{RestartMethod, RestartRecord, max_concurrent, max_concurrent_per_cluster};
pub use simulate::{SimulateOptions, demo_spec, run_simulate};
