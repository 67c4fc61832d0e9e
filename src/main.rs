//! The `carbonio-fleet` binary: parse the command line, run it, exit with its code.

use clap::Parser;

fn main() {
    let code = match carbonio_fleet::cli::Cli::try_parse() {
        Ok(cli) => carbonio_fleet::cli::run(cli),
        Err(e) => carbonio_fleet::cli::parse_failed(e).code(),
    };
    std::process::exit(code);
}
