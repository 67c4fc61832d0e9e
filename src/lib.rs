//! carbonio-fleet: audit and harden fleets of Zextras Carbonio CE mail servers over SSH.
//!
//! The library holds everything; `main.rs` only parses arguments and exits with the
//! code the command line chose. Only the command line ([`cli`]) talks to people: the
//! engine hands back typed outcomes, and the lints below keep printing and exiting out
//! of every other module. Modules, one concept each:
//! - [`inventory`]: hosts, groups, clusters, `--limit` selection.
//! - [`playbook`]: controls, probes, rollout policy.
//! - [`ssh`]: connections, host keys, auth, exec, quoting, become.
//! - [`secrets`]: SSH passwords and key passphrases in the OS keyring.
//! - `dns`: SPF, DKIM and DMARC posture of hosted domains (hickory resolver).
//! - `carbonio`: the remote commands for Carbonio nodes and the parsers of their output.
//! - `engine`: gather, verdicts, plan, apply, rollout scheduling.
//! - `report`: the report model (report.json) and its file formats.
//! - `ui`: the terminal: summary, plan diff, progress, logs, audit trail.
//! - [`cli`]: the command line: arguments, prompts, signals, output, exit codes.
//! - [`exit`]: the exit codes and their precedence.
//! - [`flavour`]: Carbonio or Zimbra, the product model every room may name.
//!
//! The modules are layered, each importing only those beneath it (docs/architecture.md
//! "Import direction", checked by `tests/architecture.rs`).
//!
//! The simulated fleet behind `demo`, `simulate` and the hidden `sim-exec` is its own
//! crate, `carbonio-sim` (`crates/carbonio-sim`), an optional dependency enabled by the
//! default `demo` feature; a build without it (`--no-default-features`) has no simulator.

#![deny(clippy::print_stdout, clippy::print_stderr, clippy::exit)]

pub mod carbonio;
// The command line's job is to talk to people and to end the process.
#[allow(clippy::print_stdout, clippy::print_stderr, clippy::exit)]
pub mod cli;
pub mod config_error;
pub mod dns;
pub mod duration;
pub mod engine;
pub mod exit;
pub mod flavour;
pub mod inventory;
pub mod playbook;
pub mod report;
pub mod secrets;
pub mod ssh;
pub mod ui;
