//! The apply journal: one JSON line per completed step per host, appended and fsynced
//! as it happens, in the run's report directory. It is what `--resume` reads to skip
//! hosts whose work is done, and what tells an operator where each host stood when a
//! run was interrupted.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The journal file name inside a run directory (the run directory's layout is the
/// report store's, which also looks for it when pruning).
pub const FILE_NAME: &str = crate::report::store::JOURNAL_FILE;

/// One completed step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// RFC 3339 UTC.
    pub at: String,
    pub host: String,
    /// `gathered`, `changed`, `change-failed`, `stage-started`, `staged`,
    /// `stage-failed`, `proven-earlier`, `restart-started`, `rendered`, `restarted`,
    /// `restart-failed`, `gate-passed`, `gate-failed`, `rolled-back`, `rollback-failed`,
    /// `rollback-skipped` (and `rollback-…` for the reload and gate of a rollback),
    /// `done`; per cluster (`host` is the cluster's name): `promotion-started`,
    /// `promoted`, `promotion-held`, `promotion-failed`.
    pub step: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

impl Journal {
    /// Creates (or appends to) the journal in `run_dir`.
    pub fn open(run_dir: &Path) -> std::io::Result<Self> {
        let path = run_dir.join(FILE_NAME);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one step and makes it durable before returning. A journal that cannot be
    /// written is reported once by the caller; it never stops the rollout itself.
    pub fn record(&self, host: &str, step: &str, detail: &str) -> std::io::Result<()> {
        let e = Entry {
            at: jiff::Timestamp::now().to_string(),
            host: host.to_string(),
            step: step.to_string(),
            detail: detail.to_string(),
        };
        let mut line = serde_json::to_vec(&e).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&line)?;
        f.sync_data()
    }
}

/// Reads a journal; a torn last line (crash mid-write) is ignored.
pub fn read(path: &Path) -> std::io::Result<Vec<Entry>> {
    let f = File::open(path)?;
    Ok(BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect())
}

/// Hosts whose journal says their work finished (`done`).
pub fn done_hosts(entries: &[Entry]) -> Vec<String> {
    let mut v: Vec<String> = entries
        .iter()
        .filter(|e| e.step == "done")
        .map(|e| e.host.clone())
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_back_and_torn_lines_ignored() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path()).unwrap();
        j.record("a", "changed", "mcf zimbraX TRUE").unwrap();
        j.record("a", "done", "").unwrap();
        j.record("b", "restart-started", "").unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(j.path())
            .unwrap()
            .write_all(b"{\"at\":\"x\",\"host\":\"c\",\"st")
            .unwrap();
        let e = read(j.path()).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].detail, "mcf zimbraX TRUE");
        assert_eq!(done_hosts(&e), vec!["a".to_string()]);
    }
}
