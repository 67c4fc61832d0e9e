//! One `apply` at a time per report directory and per inventory. Two applies at once
//! would each restart every node and break `per_cluster` between them (two MTAs of one
//! cluster down together). The lock is an advisory `flock` on a small file that says who
//! holds it and since when; the kernel releases it when the process ends, however it
//! ends, so a crashed run never leaves a stale lock.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

/// Held locks; dropping releases them.
#[derive(Debug)]
pub struct ApplyLock {
    _files: Vec<File>,
}

/// Where the inventory's lock lives: one file per set of inventory files, in the
/// system's temp directory (shared by every report directory on this machine).
fn inventory_lock_path(inventory: &[PathBuf]) -> PathBuf {
    let paths: Vec<String> = inventory
        .iter()
        .map(|p| {
            let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            format!("{}\0", p.to_string_lossy())
        })
        .collect();
    let parts: Vec<&[u8]> = paths.iter().map(|p| p.as_bytes()).collect();
    let hex = crate::engine::run::sha256_hex(&parts);
    std::env::temp_dir().join(format!("carbonio-fleet-apply-{}.lock", &hex[..16]))
}

/// Takes the report directory's and the inventory's apply locks, or says who holds one.
pub fn take(report_dir: &Path, inventory: &[PathBuf], holder: &str) -> Result<ApplyLock, String> {
    std::fs::create_dir_all(report_dir)
        .map_err(|e| format!("cannot create `{}`: {e}", report_dir.display()))?;
    let mut files = Vec::new();
    for path in [
        report_dir.join(".apply.lock"),
        inventory_lock_path(inventory),
    ] {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open the apply lock `{}`: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.set_len(0);
                let _ = file.rewind();
                let _ = write!(file, "{holder}");
                let _ = file.flush();
                files.push(file);
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut who = String::new();
                let _ = file.read_to_string(&mut who);
                return Err(format!(
                    "another apply is running: `{}` is held by {}",
                    path.display(),
                    if who.trim().is_empty() {
                        "a process that has not said who it is".to_string()
                    } else {
                        who.trim().to_string()
                    }
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock `{}`: {e}", path.display()));
            }
        }
    }
    Ok(ApplyLock { _files: files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_apply_is_refused_with_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let inv = dir.path().join("inventory.toml");
        std::fs::write(&inv, "").unwrap();
        let reports = dir.path().join("reports");
        let first = take(
            &reports,
            std::slice::from_ref(&inv),
            "pid 1 ops@bastion since 2026-12-02T05:00:00Z",
        )
        .unwrap();
        let e = take(&reports, std::slice::from_ref(&inv), "pid 2").unwrap_err();
        assert!(
            e.contains("another apply is running")
                && e.contains("pid 1 ops@bastion since 2026-12-02T05:00:00Z"),
            "{e}"
        );
        // Another report directory, the same inventory: still refused.
        let e = take(
            &dir.path().join("other"),
            std::slice::from_ref(&inv),
            "pid 3",
        )
        .unwrap_err();
        assert!(e.contains("carbonio-fleet-apply-"), "{e}");
        drop(first);
        let again = take(&reports, &[inv], "pid 4");
        assert!(again.is_ok(), "{again:?}");
    }
}
