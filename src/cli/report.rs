//! `report show | diff | merge`: read report.json files back. `show` prints the terminal
//! summary again (or the JSON), `diff` the drift between two sweeps (exit 2 when
//! something got worse), `merge` joins shard reports into a new run directory with the
//! full report set (exit code: the merged run's, as if it had been one run).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{Format, ReportDiffArgs, ReportMergeArgs, ReportShowArgs};
use crate::exit;
use crate::report::model::Report;
use crate::report::{diff, merge, store, summary};

/// A report.json path, or a run directory (or `latest`) holding one.
fn report_path(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.join("report.json")
    } else {
        p.to_path_buf()
    }
}

fn read(p: &Path) -> Result<Report, i32> {
    store::read_report(&report_path(p)).map_err(|e| {
        eprintln!("carbonio-fleet: {e}");
        exit::USAGE
    })
}

/// `report show FILE...`: the summary of each (separated by a blank line), or with
/// `--format json` the report itself (a JSON array when several are given).
pub(super) fn show(a: &ReportShowArgs) -> i32 {
    let reports: Result<Vec<Report>, i32> = a.files.iter().map(|f| read(f)).collect();
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
            write!(
                out,
                "{}",
                crate::ui::safe::terminal_safe(&summary::render(r))
            )
        }),
    };
    match written {
        Ok(()) => exit::OK,
        // A closed pipe (`| head`) is not worth an error message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            eprintln!("carbonio-fleet: cannot write to stdout: {e}");
            exit::USAGE
        }
    }
}

/// `report diff OLD NEW`: what changed between two sweeps; exit 2 on new drift.
pub(super) fn diff(a: &ReportDiffArgs) -> i32 {
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
        exit::DRIFT
    } else {
        exit::OK
    }
}

/// `report merge FILE... --report-dir DIR`: one report set for the shards of a run.
pub(super) fn merge(a: &ReportMergeArgs) -> i32 {
    let reports: Result<Vec<Report>, i32> = a.files.iter().map(|f| read(f)).collect();
    let reports = match reports {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut merged = match merge::merge(reports) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("carbonio-fleet: cannot merge: {e}");
            return exit::USAGE;
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
            return exit::HOST_FAILED;
        }
    };
    crate::engine::run::finish_in(&mut merged, &a.report_dir, &dir, false, None, false)
}
