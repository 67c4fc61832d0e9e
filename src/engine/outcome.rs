//! What the engine hands back to whoever runs it: a finished run's [`RunOutcome`] (its
//! report and whether the report set was written, from which the exit code is derived),
//! or a [`RunError`] saying why it stopped before changing or recording anything. The
//! engine never says these to anyone; the command line (`cli`) words them, shows them
//! and exits with their code.

use std::path::PathBuf;

use crate::config_error::ConfigErrors;
use crate::engine::plan_file::Difference;
use crate::exit::ExitCode;
use crate::inventory::Shard;
use crate::report::model::Report;
use crate::report::store::StoreError;

/// A run that got as far as its report.
#[derive(Debug)]
pub struct RunOutcome {
    /// The report, with its `exit_code` derived from the hosts, domains, promotions and
    /// how the run ended.
    pub report: Report,
    /// The run directory the report set was written into, or why it could not be.
    pub written: Result<PathBuf, StoreError>,
}

impl RunOutcome {
    /// The process exit code of the run: the report's, made a failure when the report
    /// could not be written (an audit whose evidence was lost did not succeed).
    pub fn exit_code(&self) -> ExitCode {
        let code = ExitCode::from_code(self.report.exit_code).unwrap_or(ExitCode::HostFailed);
        match self.written {
            Ok(_) => code,
            Err(_) => code.worst(ExitCode::HostFailed),
        }
    }
}

/// One configuration file the run refused, and what it is (`inventory`, `playbook`,
/// `waiver file`).
#[derive(Debug)]
pub struct ConfigFailure {
    pub errors: ConfigErrors,
    pub what: &'static str,
}

/// Why a run stopped before it changed anything (before it contacted anything, unless
/// the variant says otherwise).
#[derive(Debug)]
pub enum RunError {
    /// The inventory, playbook or waiver file is wrong (each file's errors, all of them).
    Config(Vec<ConfigFailure>),
    /// `--controls` / `--skip-controls` name what the playbook does not have.
    Controls(String),
    /// `--limit` selects nothing, or is malformed.
    Limit(String),
    /// `--shard K/N` holds none of the selected hosts: not a failure (an Indexed Job
    /// sized for growth has empty slices by design), nothing to do and no report.
    EmptyShard { shard: Shard, selected: usize },
    /// Waivers that would keep the policy daemon off under a restriction that needs it.
    WaiverConflicts(Vec<String>),
    /// A playbook value cannot be sent to a node (it cannot be quoted for the shell).
    Unsendable(String),
    /// `apply --plan FILE`: the file cannot be read or its selection contradicts the
    /// options given.
    PlanUnreadable(String),
    /// `apply --resume` / `--retry-failed`: the last run's files say nothing is left.
    Targets(String),
    /// `apply --plan FILE`: the plan was made from other files or other hosts.
    PlanSources { path: PathBuf, wrong: Vec<String> },
    /// Another apply holds the report directory or the inventory.
    Locked(String),
    /// `apply --plan FILE`: the fleet gathered is not the one the plan was made from, or
    /// apply would decide otherwise now. The fleet has been contacted, nothing changed.
    PlanOutdated {
        path: PathBuf,
        created_at: String,
        differences: Vec<Difference>,
        decisions: Vec<String>,
    },
    /// apply's run directory cannot be made; nothing was changed.
    RunDir(StoreError),
    /// apply's journal cannot be opened; nothing was changed.
    Journal { dir: PathBuf, error: String },
}
