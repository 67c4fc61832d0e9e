//! The simulated Carbonio fleet: russh servers on loopback, each emulating one Carbonio
//! node (shell, `carbonio prov`, `zmcontrol`, `systemctl`, `postconf`, SMTP on port 25),
//! for the demo, the integration tests and benchmarks; plus a DNS server publishing the
//! hosted domains' SPF, DKIM and DMARC records.

pub mod attrs;
pub mod dns;
pub mod error;
pub mod exec;
pub mod fleet;
pub mod node;
pub mod policyd;
pub mod postfix;
pub mod prereq;
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
