//! The command line: argument types (`args`) and the dispatcher that runs a parsed
//! command and returns its exit code. `main` only parses and exits with that code.

mod args;
mod hostkeys;
mod inventory;
mod report;
mod run;
pub mod secret;
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
        Command::Hostkeys(HostkeysCommand::Scan(a)) => hostkeys::scan_command(&a),
        Command::Secret(c) => secret::run(&c),
        Command::Report(ReportCommand::Show(a)) => report::show(&a),
        Command::Report(ReportCommand::Diff(a)) => report::diff(&a),
        Command::Report(ReportCommand::Merge(a)) => report::merge(&a),
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
