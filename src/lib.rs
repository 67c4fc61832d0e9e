//! carbonio-fleet: audit and harden fleets of Zextras Carbonio CE mail servers over SSH.
//!
//! The library holds everything; `main.rs` only parses arguments and maps the outcome to
//! an exit code. Modules, one concept each:
//! - [`inventory`]: hosts, groups, clusters, `--limit` selection.
//! - [`playbook`]: controls, probes, rollout policy.
//! - [`ssh`]: connections, host keys, auth, exec, quoting, become.
//! - [`secrets`]: SSH passwords and key passphrases in the OS keyring.
//! - `dns`: SPF, DKIM and DMARC posture of hosted domains (hickory resolver).
//! - `carbonio`: the remote commands for Carbonio nodes and the parsers of their output.
//! - `engine`: gather, verdicts, plan, apply, rollout scheduling.
//! - `report`: report.json and the terminal summary.
//!
//! The simulated fleet behind `demo`, `simulate` and the hidden `sim-exec` is its own
//! crate, `carbonio-sim` (`crates/carbonio-sim`), an optional dependency enabled by the
//! default `demo` feature; a build without it (`--no-default-features`) has no simulator.

pub mod carbonio;
pub mod cli;
pub mod config_error;
pub mod dns;
pub mod engine;
pub mod exit;
pub mod inventory;
pub mod playbook;
pub mod report;
pub mod secrets;
pub mod ssh;
pub mod ui;
