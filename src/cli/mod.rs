//! The command line: argument types (`args`) and the dispatcher that runs a parsed
//! command and returns its exit code. `main` only parses and exits with that code.

mod args;
mod inventory;
mod run;
mod sim;

pub use args::*;

use crate::exit;

/// Runs one parsed command line and returns the process exit code (see [`exit`]).
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Check(a) => run::check(&a),
        Command::Plan(a) => run::plan(&a),
        Command::Apply(a) => run::apply(&a),
        Command::Inventory(InventoryCommand::List(a)) => inventory::list(&a),
        Command::Inventory(InventoryCommand::Validate(a)) => inventory::validate(&a),
        Command::Hostkeys(_) => not_yet("hostkeys", 3),
        Command::Secret(_) => not_yet("secret", 8),
        Command::Report(_) => not_yet("report", 8),
        Command::Demo(a) => sim::demo(&a),
        Command::Simulate(a) => sim::simulate(&a),
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

/// A command whose implementation is not part of this build: say so, change nothing.
fn not_yet(name: &str, issue: u32) -> i32 {
    eprintln!(
        "carbonio-fleet: `{name}` is not available in this build yet (it lands with issue #{issue})"
    );
    exit::USAGE
}
