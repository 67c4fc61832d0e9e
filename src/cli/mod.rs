//! The command line: argument types (`args`) and the dispatcher that runs a parsed
//! command and returns its exit code. `main` only parses and exits with that code.

mod args;
mod inventory;

pub use args::*;

use crate::exit;
use crate::inventory::{self as inv, Inventory};
use crate::playbook::{self, Playbook};

/// Runs one parsed command line and returns the process exit code (see [`exit`]).
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Check(_) => not_yet("check", 5),
        Command::Plan(_) => not_yet("plan", 5),
        Command::Apply(_) => not_yet("apply", 6),
        Command::Inventory(InventoryCommand::List(a)) => inventory::list(&a),
        Command::Inventory(InventoryCommand::Validate(a)) => inventory::validate(&a),
        Command::Hostkeys(_) => not_yet("hostkeys", 3),
        Command::Secret(_) => not_yet("secret", 8),
        Command::Report(_) => not_yet("report", 8),
        Command::Demo(_) => not_yet("demo", 4),
        Command::Simulate(_) => not_yet("simulate", 4),
    }
}

/// Maps a clap parse failure to our exit codes: `--help`/`--version` succeed, every
/// other failure is a usage error (1) rather than clap's default 2, which here means
/// drift.
pub fn parse_failed(e: clap::Error) -> i32 {
    // Printing to a closed stdout/stderr is not worth a panic.
    let _ = e.print();
    if e.use_stderr() {
        exit::USAGE
    } else {
        exit::OK
    }
}

/// Loads the inventory and the playbook (`-p`, or the built-in one) of `check`, `plan`
/// and `apply`. Both are read even when the first fails, so the user sees every error;
/// the errors are printed to stderr and `Err` carries the exit code (1).
pub fn load_inputs(run: &RunArgs) -> Result<(Inventory, Playbook), i32> {
    let inventory = inv::load(&run.inventory);
    let playbook = match &run.playbook {
        Some(path) => playbook::load(path),
        None => Ok(playbook::load_default()),
    };
    if let Err(e) = &inventory {
        inventory::config_failed(e, "inventory");
    }
    if let Err(e) = &playbook {
        inventory::config_failed(e, "playbook");
    }
    match (inventory, playbook) {
        (Ok(i), Ok(p)) => Ok((i, p)),
        _ => Err(exit::USAGE),
    }
}

/// A command whose implementation is not part of this build: say so, change nothing.
fn not_yet(name: &str, issue: u32) -> i32 {
    eprintln!(
        "carbonio-fleet: `{name}` is not available in this build yet (it lands with issue #{issue})"
    );
    exit::USAGE
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn run_args(args: &[&str]) -> RunArgs {
        let argv = ["carbonio-fleet", "check"]
            .into_iter()
            .chain(args.iter().copied());
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Check(run) => run,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn load_inputs_uses_the_built_in_playbook_without_p() {
        let manifest = env!("CARGO_MANIFEST_DIR");
        let (inv, pb) = load_inputs(&run_args(&[
            "-i",
            &format!("{manifest}/inventory/lab.toml"),
        ]))
        .unwrap();
        assert_eq!(inv.hosts.len(), 6);
        assert_eq!(pb.name, "backscatter-hardening");
        assert_eq!(pb.source, None);
    }

    #[test]
    fn load_inputs_fails_with_usage_when_either_file_is_bad() {
        let manifest = env!("CARGO_MANIFEST_DIR");
        let lab = format!("{manifest}/inventory/lab.toml");
        let args = run_args(&["-i", &lab, "-p", "/nonexistent/pb.toml"]);
        assert_eq!(load_inputs(&args).unwrap_err(), exit::USAGE);
        let args = run_args(&["-i", "/nonexistent/inv"]);
        assert_eq!(load_inputs(&args).unwrap_err(), exit::USAGE);
    }
}
