//! The command line, the only part of the tool that talks to people: argument types
//! (`args`), the dispatcher that runs a parsed command, the signal handlers that
//! interrupt a run (`signals`), and the words, prompts and exit codes of what the
//! engine hands back (`show`). `main` only parses and exits with the code.

mod alert;
mod args;
mod hostkeys;
mod http;
mod inventory;
mod pushgateway;
mod report;
mod run;
pub mod secret;
pub mod show;
mod signals;
#[cfg(feature = "demo")]
mod sim;
mod webhook;

pub use args::*;

use crate::exit::ExitCode;

/// The status a closed stdout ends the process with: what a shell shows for a program
/// that SIGPIPE ended (128 + 13).
pub const CLOSED_STDOUT: i32 = 141;

/// `carbonio-fleet check | head`: once the reader is gone, the next print fails, and
/// Rust's print macros panic on that (the runtime ignores SIGPIPE, which the SSH sockets
/// need). A closed stdout is not the run's failure (its report is already on disk): end
/// quietly with [`CLOSED_STDOUT`], as a program that SIGPIPE ended would, instead of a
/// backtrace and 101.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = crate::engine::gather::panic_text(info.payload());
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(CLOSED_STDOUT);
        }
        default(info);
    }));
}

/// Runs one parsed command line and returns the process exit status: the command's
/// [`ExitCode`], or (`sim-exec`) the simulated program's own status.
pub fn run(cli: Cli) -> i32 {
    quiet_on_closed_stdout();
    crate::ui::term::set_color_choice(cli.color);
    let code = match cli.command {
        Command::Check(a) => run::check(&a),
        Command::Plan(a) => run::plan(&a),
        Command::Apply(a) => run::apply(&a),
        Command::Inventory(InventoryCommand::List(a)) => inventory::list(&a),
        Command::Inventory(InventoryCommand::Validate(a)) => inventory::validate(&a),
        Command::Inventory(InventoryCommand::Import(a)) => inventory::import(&a),
        Command::Hostkeys(HostkeysCommand::Scan(a)) => hostkeys::scan_command(&a),
        Command::Secret(c) => secret::run(&c),
        Command::Report(ReportCommand::Show(a)) => report::show(&a),
        Command::Report(ReportCommand::Diff(a)) => report::diff(&a),
        Command::Report(ReportCommand::Merge(a)) => report::merge(&a),
        Command::Report(ReportCommand::Prune(a)) => report::prune(&a),
        #[cfg(feature = "demo")]
        Command::Demo(a) => sim::demo(&a),
        Command::Completions(a) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(a.shell, &mut cmd, "carbonio-fleet", &mut std::io::stdout());
            ExitCode::Ok
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut page = Vec::new();
            match clap_mangen::Man::new(cmd).render(&mut page) {
                Ok(()) => {
                    use std::io::Write as _;
                    let _ = std::io::stdout().lock().write_all(&page);
                    ExitCode::Ok
                }
                Err(e) => {
                    eprintln!("carbonio-fleet: cannot render the manual page: {e}");
                    ExitCode::Usage
                }
            }
        }
        #[cfg(feature = "demo")]
        Command::Simulate(a) => sim::simulate(&a),
        // A simulated program's own status (127: not found, …), not one of the tool's.
        #[cfg(feature = "demo")]
        Command::SimExec(a) => return carbonio_sim::exec::main(&a.program, &a.args),
    };
    code.code()
}

/// Maps a clap parse failure to our exit codes: `--help`/`--version` succeed, every
/// other failure is a usage error (1) rather than clap's default 2, which here means
/// drift.
pub fn parse_failed(e: clap::Error) -> ExitCode {
    // Printing to a closed stdout/stderr is not worth a panic.
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::Usage
    } else {
        ExitCode::Ok
    }
}
