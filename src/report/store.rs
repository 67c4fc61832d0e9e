//! Writing a run's report set: `<report-dir>/<UTC timestamp>-<playbook>/report.json`
//! with junit.xml, report.html and metrics.prom beside it, each written atomically (temp file in the same directory, fsync, rename), and `latest`
//! pointing at the newest run (a symlink swapped by rename). A failed write leaves the
//! previous reports untouched.

use std::path::{Path, PathBuf};

use crate::report::model::Report;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create report directory `{path}`: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode the report: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The directory name of a run: `20261127T231741Z-backscatter-hardening`.
pub fn run_dir_name(started_utc: &jiff::Timestamp, playbook: &str) -> String {
    let safe: String = playbook
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{}-{}", started_utc.strftime("%Y%m%dT%H%M%SZ"), safe)
}

/// Creates a fresh run directory under `report_dir` (suffixing `-2`, `-3` … when a run
/// started in the same second).
pub fn create_run_dir(report_dir: &Path, name: &str) -> Result<PathBuf, StoreError> {
    super::write::create_report_dir_all(report_dir).map_err(|source| StoreError::CreateDir {
        path: report_dir.to_path_buf(),
        source,
    })?;
    for n in 1.. {
        let dir = if n == 1 {
            report_dir.join(name)
        } else {
            report_dir.join(format!("{name}-{n}"))
        };
        let made = {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .mode(super::write::REPORT_DIR_MODE)
                .create(&dir)
        };
        match made {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(StoreError::CreateDir { path: dir, source }),
        }
    }
    unreachable!("the loop only ends by returning")
}

/// The newest run directory under `report_dir` that holds `file` (an apply's journal:
/// a `check` run in between moves `latest` but has none), by the file's modification
/// time, then by name.
pub fn newest_with(report_dir: &Path, file: &str) -> Option<PathBuf> {
    let latest = report_dir.join("latest").join(file);
    if latest.is_file() {
        // `latest` is a symlink: name the run directory itself (resume lineage).
        let run = std::fs::canonicalize(report_dir.join("latest")).ok();
        return Some(run.map_or(latest, |r| r.join(file)));
    }
    std::fs::read_dir(report_dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != "latest")
        .map(|e| e.path().join(file))
        .filter_map(|p| {
            let t = std::fs::metadata(&p).ok()?.modified().ok()?;
            Some((t, p))
        })
        .max()
        .map(|(_, p)| p)
}

/// Writes report.json into `run_dir`.
pub fn write_report(run_dir: &Path, report: &Report) -> Result<PathBuf, StoreError> {
    let path = run_dir.join("report.json");
    let mut text = serde_json::to_string_pretty(report)?;
    text.push('\n');
    super::write::write_atomic(&path, &text).map_err(|e| StoreError::Write {
        path: e.path,
        source: e.source,
    })?;
    super::write_formats(run_dir, report).map_err(|e| StoreError::Write {
        path: e.path,
        source: e.source,
    })?;
    Ok(path)
}

/// Points `<report_dir>/latest` at `run_dir` (relative link, swapped atomically).
pub fn update_latest(report_dir: &Path, run_dir: &Path) -> Result<(), StoreError> {
    let link = report_dir.join("latest");
    let target = run_dir.file_name().map(PathBuf::from).unwrap_or_default();
    let tmp = report_dir.join(format!(".latest-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let err = |source| StoreError::Write {
        path: link.clone(),
        source,
    };
    std::os::unix::fs::symlink(&target, &tmp).map_err(err)?;
    std::fs::rename(&tmp, &link).map_err(err)?;
    Ok(())
}

/// Reads a report.json back (for `report show` and tests).
pub fn read_report(path: &Path) -> Result<Report, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("`{}` is not a report.json: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_dir_names_are_sortable_and_safe() {
        let t: jiff::Timestamp = "2026-11-27T23:17:41Z".parse().unwrap();
        assert_eq!(
            run_dir_name(&t, "backscatter hardening/x"),
            "20261127T231741Z-backscatter-hardening-x"
        );
    }

    #[test]
    fn run_directories_are_not_readable_by_others() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().unwrap();
        let reports = root.path().join("reports");
        let run = create_run_dir(&reports, "r").unwrap();
        for d in [&reports, &run] {
            let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
            assert_eq!(
                mode,
                super::super::write::REPORT_DIR_MODE & !super::super::write::umask(),
                "{}",
                d.display()
            );
            assert_eq!(mode & 0o007, 0, "{} is open to others", d.display());
        }
    }

    #[test]
    fn same_second_runs_get_distinct_dirs_and_latest_moves() {
        let root = tempfile::tempdir().unwrap();
        let a = create_run_dir(root.path(), "r").unwrap();
        let b = create_run_dir(root.path(), "r").unwrap();
        assert_ne!(a, b);
        assert!(b.ends_with("r-2"));
        update_latest(root.path(), &a).unwrap();
        update_latest(root.path(), &b).unwrap();
        assert_eq!(
            std::fs::read_link(root.path().join("latest")).unwrap(),
            PathBuf::from("r-2")
        );
    }
}
