//! `--on-drift CMD`: after `check` or `apply`, when the new report shows drift the
//! previous one did not (a host or domain check got worse, or a host appeared that is not
//! compliant), run `sh -c CMD` with the drift (as `report diff` prints it) on stdin and
//! `CARBONIO_FLEET_REPORT` (the new report.json) and `CARBONIO_FLEET_EXIT_CODE` in its
//! environment: a mailer, a chat webhook with `curl`, a pager. Without a previous
//! report, any drift is new and the run's summary is sent. The hook's own failure is a
//! warning; it never changes the run's exit code. `--webhook` (`cli::webhook`) fires on
//! the same trigger ([`fresh_drift`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::report::model::Report;
use crate::report::{diff, store};
use crate::ui::summary;

/// The report `latest` points to, if any (read before the run, to compare after it).
pub fn latest(report_dir: &Path) -> Option<(PathBuf, Report)> {
    let path = std::fs::canonicalize(report_dir.join("latest"))
        .ok()?
        .join("report.json");
    let report = store::read_report(&path).ok()?;
    Some((path, report))
}

/// What to send for the run that just ended, `None` when there is no new drift.
pub fn new_drift(previous: Option<&Report>, new: &Report) -> Option<String> {
    match previous {
        Some(old) => {
            let d = diff::diff(old, new);
            d.has_new_drift().then(|| diff::render_diff(&d))
        }
        None => (new.exit_code != crate::exit::ExitCode::Ok.code()).then(|| summary::render(new)),
    }
}

/// The report the run that just ended wrote (`report_dir/latest`), `None` when it wrote
/// none (it failed before: `latest` is still `previous`'s). `--pushgateway` pushes it.
pub fn fresh_report(
    report_dir: &Path,
    previous: Option<&(PathBuf, Report)>,
) -> Option<(PathBuf, Report)> {
    let (path, new) = latest(report_dir)?;
    previous
        .is_none_or(|(p, _)| *p != path)
        .then_some((path, new))
}

/// New drift of the run that just ended, as every alert sends it.
pub struct FreshDrift {
    /// The new report.json.
    pub path: PathBuf,
    pub report: Report,
    /// The comparison with the previous report; `None` when there was none (then every
    /// host that is not compliant is new).
    pub diff: Option<diff::Drift>,
    /// The drift as `report diff` prints it (or the summary without a previous report).
    pub text: String,
}

/// The one trigger of `--on-drift` and `--webhook`: the run that just wrote
/// `report_dir/latest` shows drift that `previous` did not. `None`: nothing to send.
pub fn fresh_drift(report_dir: &Path, previous: Option<&(PathBuf, Report)>) -> Option<FreshDrift> {
    let (path, report) = fresh_report(report_dir, previous)?;
    let text = new_drift(previous.map(|(_, r)| r), &report)?;
    Some(FreshDrift {
        diff: previous.map(|(_, old)| diff::diff(old, &report)),
        path,
        report,
        text,
    })
}

/// Runs the hook if the run that just wrote `report_dir/latest` shows new drift compared
/// with `previous`. Returns whether it ran.
pub fn on_drift(cmd: &str, report_dir: &Path, previous: Option<&(PathBuf, Report)>) -> bool {
    let Some(FreshDrift {
        path,
        report: new,
        text,
        ..
    }) = fresh_drift(report_dir, previous)
    else {
        return false;
    };
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .env("CARBONIO_FLEET_REPORT", &path)
        .env("CARBONIO_FLEET_EXIT_CODE", new.exit_code.to_string())
        .stdin(Stdio::piped())
        .spawn();
    let result = child.and_then(|mut c| {
        if let Some(mut stdin) = c.stdin.take() {
            // A hook that does not read its input is its own business.
            let _ = stdin.write_all(text.as_bytes());
        }
        c.wait()
    });
    match result {
        Ok(st) if st.success() => {}
        Ok(st) => eprintln!("carbonio-fleet: warning: the --on-drift command {st}"),
        Err(e) => eprintln!("carbonio-fleet: warning: cannot run the --on-drift command: {e}"),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::HostStatus;
    use crate::report::sample::{host, sample_report};

    #[test]
    fn only_new_drift_is_sent() {
        let mut old = sample_report();
        old.hosts = vec![host("m1", "c", HostStatus::Compliant)];
        old.exit_code = 0;
        let mut new = old.clone();
        assert_eq!(new_drift(Some(&old), &new), None, "nothing changed");
        new.hosts = vec![host("m1", "c", HostStatus::Drift)];
        new.exit_code = 2;
        let sent = new_drift(Some(&old), &new).expect("m1 drifted");
        assert!(sent.contains("m1"), "{sent}");
        assert_eq!(
            new_drift(Some(&new), &new),
            None,
            "the same drift again is not new"
        );
        assert!(
            new_drift(None, &new).is_some(),
            "no previous report: drift is new"
        );
        assert_eq!(new_drift(None, &old), None);
    }
}
