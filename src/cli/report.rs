//! `report show | diff | merge`: read report.json files back. `show` prints the terminal
//! summary again (or the JSON), `diff` the drift between two sweeps (exit 2 when
//! something got worse), `merge` joins shard reports into a new run directory with the
//! full report set (exit code: the merged run's, as if it had been one run).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{Format, ReportDiffArgs, ReportMergeArgs, ReportPruneArgs, ReportShowArgs};
use crate::exit::ExitCode;
use crate::report::model::Report;
use crate::report::{diff, merge, store};
use crate::ui::summary;

/// A report.json path, or a run directory (or `latest`) holding one.
fn report_path(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.join("report.json")
    } else {
        p.to_path_buf()
    }
}

fn read(p: &Path) -> Result<Report, ExitCode> {
    store::read_report(&report_path(p)).map_err(|e| {
        eprintln!("carbonio-fleet: {e}");
        ExitCode::Usage
    })
}

/// `report show FILE...`: the summary of each (separated by a blank line), or with
/// `--format json` the report itself (a JSON array when several are given).
pub(super) fn show(a: &ReportShowArgs) -> ExitCode {
    let reports: Result<Vec<Report>, ExitCode> = a.files.iter().map(|f| read(f)).collect();
    let reports = match reports {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut out = std::io::stdout().lock();
    let written = match a.format {
        Format::Json if reports.len() == 1 => serde_json::to_writer_pretty(&mut out, &reports[0])
            .map_err(std::io::Error::from)
            .and_then(|_| writeln!(out)),
        Format::Json => serde_json::to_writer_pretty(&mut out, &reports)
            .map_err(std::io::Error::from)
            .and_then(|_| writeln!(out)),
        Format::Human => reports.iter().enumerate().try_for_each(|(i, r)| {
            if i > 0 {
                writeln!(out)?;
            }
            // Made terminal-safe inside, before its own colour is added.
            write!(
                out,
                "{}",
                summary::render_with(r, &crate::ui::term::Layout::stdout())
            )
        }),
    };
    match written {
        Ok(()) => ExitCode::Ok,
        // A closed pipe (`| head`) is not worth an error message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::Ok,
        Err(e) => {
            eprintln!("carbonio-fleet: cannot write to stdout: {e}");
            ExitCode::Usage
        }
    }
}

/// `report diff OLD NEW`: what changed between two sweeps; exit 2 on new drift.
pub(super) fn diff(a: &ReportDiffArgs) -> ExitCode {
    let (old, new) = match (read(&a.old), read(&a.new)) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    let d = diff::diff(&old, &new);
    match a.format {
        Format::Human => print!("{}", diff::render_diff(&d)),
        Format::Json => {
            let mut v = serde_json::to_value(&d).unwrap_or_default();
            v["has_new_drift"] = serde_json::Value::Bool(d.has_new_drift());
            println!(
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
            );
        }
    }
    if d.has_new_drift() {
        ExitCode::Drift
    } else {
        ExitCode::Ok
    }
}

/// `report merge FILE... --report-dir DIR`: one report set for the shards of a run.
pub(super) fn merge(a: &ReportMergeArgs) -> ExitCode {
    let reports: Result<Vec<Report>, ExitCode> = a.files.iter().map(|f| read(f)).collect();
    let reports = match reports {
        Ok(r) => r,
        Err(code) => return code,
    };
    let merged = match merge::merge(reports) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("carbonio-fleet: cannot merge: {e}");
            return ExitCode::Usage;
        }
    };
    let started: jiff::Timestamp = merged
        .started_at
        .parse()
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let name = format!(
        "{}-merged",
        store::run_dir_name(&started, &merged.playbook.name)
    );
    let dir = match store::create_run_dir(&a.report_dir, &name) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("carbonio-fleet: {e}");
            return ExitCode::HostFailed;
        }
    };
    let written =
        crate::engine::run::finish_in(&merged, &a.report_dir, &dir, None, false).map(|()| dir);
    super::show::run_outcome(
        &crate::engine::outcome::RunOutcome {
            report: merged,
            written,
        },
        false,
    )
}

/// `report prune`: deletes the run directories the rules select ([`store::plan_prune`]),
/// saying what it deleted, what it kept, and what it kept whatever the rules say.
pub fn prune(a: &ReportPruneArgs) -> ExitCode {
    let plan = match store::plan_prune(
        &a.report_dir,
        a.keep.map(|k| k as usize),
        a.older_than,
        jiff::Timestamp::now(),
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("carbonio-fleet: {}: {e}", a.report_dir.display());
            return ExitCode::Usage;
        }
    };
    let mut out = String::new();
    let verb = if a.dry_run { "would delete" } else { "deleted" };
    let mut failed = false;
    for dir in &plan.delete {
        if !a.dry_run
            && let Err(e) = std::fs::remove_dir_all(dir)
        {
            eprintln!("carbonio-fleet: cannot delete {}: {e}", dir.display());
            failed = true;
            continue;
        }
        out.push_str(&format!("{verb} {}\n", dir.display()));
    }
    for (dir, why) in &plan.protected {
        out.push_str(&format!("kept {} ({why})\n", dir.display()));
    }
    out.push_str(&format!(
        "{} run(s) {verb}, {} kept\n",
        plan.delete.len(),
        plan.keep.len() + plan.protected.len()
    ));
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    if failed {
        ExitCode::Usage
    } else {
        ExitCode::Ok
    }
}
