//! Writing a run's report set: `<report-dir>/<UTC timestamp>-<playbook>/report.json`
//! with junit.xml, report.html and metrics.prom beside it, each written atomically (temp file in the same directory, fsync, rename), and `latest`
//! pointing at the newest run (a symlink swapped by rename). A failed write leaves the
//! previous reports untouched.

use std::path::{Path, PathBuf};

use crate::report::model::Report;

/// The apply journal's file name inside a run directory (`engine::journal` writes it;
/// pruning keeps the newest run that has one, since `--resume` reads it).
pub const JOURNAL_FILE: &str = "journal.jsonl";

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

/// What `report prune` would delete and keep.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Prune {
    /// Run directories to delete, oldest first.
    pub delete: Vec<PathBuf>,
    /// Run directories kept, oldest first.
    pub keep: Vec<PathBuf>,
    /// Kept whatever the rules say, and why (`latest` points there; the newest apply
    /// journal, which `apply --resume` reads).
    pub protected: Vec<(PathBuf, &'static str)>,
}

/// The start time a run directory's name carries (`20261127T231741Z-…`).
fn run_started(name: &str) -> Option<jiff::Timestamp> {
    let stamp = name.get(..16)?;
    let rest = &name[16..];
    if !(rest.is_empty() || rest.starts_with('-')) {
        return None;
    }
    let b = stamp.as_bytes();
    if b[8] != b'T'
        || b[15] != b'Z'
        || !stamp[..8]
            .bytes()
            .chain(stamp[9..15].bytes())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    )
    .parse()
    .ok()
}

/// Which run directories of `report_dir` to delete: beyond the `keep` newest (when
/// given) and started before `older_than` ago (when given), never the run `latest`
/// points to nor the one holding the newest apply journal. Only directories named as
/// runs are considered; anything else in the directory is left alone.
pub fn plan_prune(
    report_dir: &Path,
    keep: Option<usize>,
    older_than: Option<std::time::Duration>,
    now: jiff::Timestamp,
) -> std::io::Result<Prune> {
    let mut runs: Vec<(jiff::Timestamp, PathBuf)> = std::fs::read_dir(report_dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some((run_started(&name)?, e.path()))
        })
        .collect();
    runs.sort();
    let latest = std::fs::canonicalize(report_dir.join("latest")).ok();
    let journal = newest_with(report_dir, JOURNAL_FILE)
        .and_then(|j| j.parent().and_then(|d| std::fs::canonicalize(d).ok()));
    let mut out = Prune::default();
    let n = runs.len();
    for (i, (started, dir)) in runs.into_iter().enumerate() {
        let beyond_keep = keep.is_none_or(|k| i + k < n);
        let old_enough = older_than.is_none_or(|d| {
            let age = now.duration_since(started);
            age.is_positive() && age.unsigned_abs() > d
        });
        let real = std::fs::canonicalize(&dir).ok();
        let protected = if real.is_some() && real == latest {
            Some("`latest` points to it")
        } else if real.is_some() && real == journal {
            Some("the newest apply journal (`apply --resume` reads it)")
        } else {
            None
        };
        match (beyond_keep && old_enough, protected) {
            (true, Some(why)) => out.protected.push((dir, why)),
            (true, None) => out.delete.push(dir),
            (false, _) => out.keep.push(dir),
        }
    }
    Ok(out)
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

    /// `--keep` and `--older-than` together delete only what both select; `latest`'s
    /// run and the newest apply journal's run stay; other entries are not runs.
    #[test]
    fn prune_keeps_the_newest_latest_and_the_resumable_journal() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let names = [
            "20261101T000000Z-p",
            "20261102T000000Z-p",
            "20261103T000000Z-p",
            "20261103T000000Z-p-2",
            "20261130T000000Z-p",
        ];
        for n in names {
            std::fs::create_dir(r.join(n)).unwrap();
        }
        std::fs::create_dir(r.join("notes")).unwrap();
        std::fs::write(r.join("20261102T000000Z-p").join(JOURNAL_FILE), "").unwrap();
        std::os::unix::fs::symlink("20261101T000000Z-p", r.join("latest")).unwrap();
        let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let names_of = |v: &[PathBuf]| -> Vec<String> {
            v.iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        let p = plan_prune(r, Some(2), None, now).unwrap();
        assert_eq!(names_of(&p.delete), ["20261103T000000Z-p"]);
        assert_eq!(
            names_of(&p.keep),
            ["20261103T000000Z-p-2", "20261130T000000Z-p"]
        );
        assert_eq!(
            p.protected
                .iter()
                .map(|(d, w)| (d.file_name().unwrap().to_string_lossy().into_owned(), *w))
                .collect::<Vec<_>>(),
            [
                ("20261101T000000Z-p".to_string(), "`latest` points to it"),
                (
                    "20261102T000000Z-p".to_string(),
                    "the newest apply journal (`apply --resume` reads it)"
                ),
            ]
        );
        let p = plan_prune(
            r,
            Some(1),
            Some(std::time::Duration::from_secs(10 * 86_400)),
            now,
        )
        .unwrap();
        assert_eq!(
            names_of(&p.delete),
            ["20261103T000000Z-p", "20261103T000000Z-p-2"]
        );
        assert_eq!(names_of(&p.keep), ["20261130T000000Z-p"]);
        assert_eq!(run_started("notes"), None);
        assert_eq!(run_started("20261101T000000Zx"), None);
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
