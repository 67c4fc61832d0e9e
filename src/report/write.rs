//! Writes the rendered formats next to `report.json`, each atomically: rendered in
//! memory, written to a temp file in the same directory, fsynced, renamed over the final
//! name. A reader (a CI job, node_exporter) sees the old file or the new one, never half.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::model::Report;
use super::{html, junit, metrics};

/// A report file could not be written.
#[derive(Debug, Error)]
#[error("failed to write report file `{}`", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// File names, in the order they are written.
pub const JUNIT_FILE: &str = "junit.xml";
pub const HTML_FILE: &str = "report.html";
pub const METRICS_FILE: &str = "metrics.prom";

/// Writes `junit.xml`, `report.html` and `metrics.prom` into `run_dir` (which must exist).
pub fn write_formats(run_dir: &Path, report: &Report) -> Result<(), WriteError> {
    write_atomic(&run_dir.join(JUNIT_FILE), &junit::render_junit(report))?;
    write_atomic(&run_dir.join(HTML_FILE), &html::render_html(report))?;
    write_atomic(
        &run_dir.join(METRICS_FILE),
        &metrics::render_openmetrics(report),
    )?;
    Ok(())
}

/// Replaces `path` with `contents` atomically (same-directory temp file + fsync + rename).
/// Report files: they name every host and its weaknesses, so owner and group only
/// (0640, less where the umask is stricter).
pub const REPORT_FILE_MODE: u32 = 0o640;
/// Report directories (0750, less where the umask is stricter).
pub const REPORT_DIR_MODE: u32 = 0o750;
/// The metrics file: read by node_exporter's textfile collector, another user (0644).
pub const METRICS_FILE_MODE: u32 = 0o644;

/// The process's umask, from /proc (reading it with umask(2) would change it for a
/// moment under every other thread); Debian's default when /proc cannot tell.
pub fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// Creates `dir` and its missing parents as report directories ([`REPORT_DIR_MODE`]).
pub fn create_report_dir_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(REPORT_DIR_MODE)
        .create(dir)
}

/// Writes a report file atomically ([`REPORT_FILE_MODE`]).
pub fn write_atomic(path: &Path, contents: &str) -> Result<(), WriteError> {
    write_atomic_mode(path, contents, REPORT_FILE_MODE)
}

/// Writes `contents` to `path` atomically (temp file in the same directory, fsync,
/// rename, directory fsync) with `mode` less the umask.
pub fn write_atomic_mode(path: &Path, contents: &str, mode: u32) -> Result<(), WriteError> {
    let err = |source| WriteError {
        path: path.to_path_buf(),
        source,
    };
    // A bare file name's parent is "", which no temp file can be created in.
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    tmp.write_all(contents.as_bytes()).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    // A temp file is created 0600: give it the mode its kind needs.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode & !umask()))
            .map_err(err)?;
    }
    tmp.persist(path).map_err(|e| err(e.error))?;
    // The rename itself is durable only once the directory entry is on disk.
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample::sample_report;

    #[test]
    fn writes_all_three_and_replaces_old_files_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(METRICS_FILE), "stale").unwrap();
        let report = sample_report();
        write_formats(dir.path(), &report).unwrap();
        let read = |name| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read(JUNIT_FILE), junit::render_junit(&report));
        assert_eq!(read(HTML_FILE), html::render_html(&report));
        assert_eq!(read(METRICS_FILE), metrics::render_openmetrics(&report));
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [JUNIT_FILE, METRICS_FILE, HTML_FILE]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            // Report files name every host and its weaknesses: owner and group only.
            for name in [JUNIT_FILE, METRICS_FILE, HTML_FILE] {
                let mode = std::fs::metadata(dir.path().join(name))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, REPORT_FILE_MODE & !umask(), "{name}");
                assert_eq!(mode & 0o007, 0, "{name} is readable by others");
            }
        }
    }

    #[test]
    fn missing_directory_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = write_formats(&missing, &sample_report()).unwrap_err();
        assert_eq!(err.path, missing.join(JUNIT_FILE));
        assert!(err.to_string().contains("nope/junit.xml"), "{err}");
    }
}
