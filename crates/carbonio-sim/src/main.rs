//! The `carbonio-sim` binary: the simulator without the tool. `simulate` runs a fleet
//! until Ctrl-C (as `carbonio-fleet simulate` does); `sim-exec` runs one emulated program
//! as a real process (as the tool's hidden `carbonio-fleet sim-exec` does, which the
//! tool's real-process test fleet uses because its tests can locate only the tool's
//! binary).

use std::process::ExitCode;

use carbonio_sim::exec::SimExecArgs;
use carbonio_sim::{SimulateOptions, run_simulate};
use clap::{Parser, Subcommand};

/// A simulated fleet of Carbonio and Zimbra nodes over real SSH, for demos, tests and
/// benchmarks
#[derive(Debug, Parser)]
#[command(name = "carbonio-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the simulated fleet until Ctrl-C (for benchmarks and experiments)
    Simulate(SimulateOptions),
    /// Run one emulated Carbonio program as a real process (real-sshd test fleets)
    SimExec(SimExecArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Simulate(opts) => simulate(opts),
        Command::SimExec(a) => {
            let status = carbonio_sim::exec::main(&a.program, &a.args);
            // The emulated programs' statuses are those of the real programs (0..=255).
            ExitCode::from(u8::try_from(status).unwrap_or(u8::MAX))
        }
    }
}

fn simulate(opts: SimulateOptions) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("carbonio-sim: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run_simulate(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.with_causes());
            ExitCode::FAILURE
        }
    }
}
