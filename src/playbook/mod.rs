//! Playbooks: controls (desired state), probes (read-only evidence) and the rollout
//! policy, loaded from TOML (`raw` mirrors the file, `load` validates it into the types
//! in `model`), and the waivers an operator gives with it (`waiver`). A playbook is
//! data; nothing here touches a node.

mod load;
mod model;
pub mod raw;
pub mod select;
pub mod waiver;

pub use load::{DEFAULT_PLAYBOOK, is_plain_address, is_plain_token, load, load_default, parse};
pub use model::{
    Amount, Control, DnsCheck, Expectation, Playbook, Precondition, Probe, ProbeExpect, ProbeFrom,
    ProbeKind, RestartMethod, Rollout, Scope, Severity,
};
