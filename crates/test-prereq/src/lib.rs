//! What a test needs from the machine it runs on, and the one rule for when it is missing.
//!
//! Tests that drive real system programs (OpenSSH's `sshd`, `tmux`, headless `chromium`,
//! namespaces, root) call [`require`] first. When everything is there it returns true.
//! When something is missing, a developer's plain `cargo test --all-targets` must still
//! pass on a fresh machine: the test prints one visible line,
//! `SKIPPED: <test>: <what is missing> (<the command that installs it>)`, straight to the
//! process's stderr (the harness captures `eprintln!` of passing tests), and returns
//! false so the caller returns early. Under `CI=true` a skip would hide a suite that never
//! ran, so the same situation panics with the same text: CI must install what the tests
//! need (`.ci/run` runs `tests/setup-root.sh`).

use std::path::Path;

/// One thing a test needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Running as uid 0.
    Root,
    /// A program found on `PATH`, from a Debian package.
    Program {
        name: &'static str,
        package: &'static str,
    },
    /// An executable at an absolute path (e.g. `/usr/sbin/sshd`), from a Debian package.
    File {
        path: &'static str,
        package: &'static str,
    },
}

impl Need {
    /// A program on `PATH`.
    pub const fn program(name: &'static str, package: &'static str) -> Need {
        Need::Program { name, package }
    }

    /// An executable at an absolute path.
    pub const fn file(path: &'static str, package: &'static str) -> Need {
        Need::File { path, package }
    }

    /// What is missing and how to install it, or `None` when this need is met.
    pub fn missing(&self) -> Option<String> {
        match *self {
            Need::Root => (!is_root()).then(|| "needs root (run the tests as root)".to_string()),
            Need::Program { name, package } => (!on_path(name))
                .then(|| format!("{name} is not installed (apt-get install -y {package})")),
            Need::File { path, package } => (!is_executable(Path::new(path)))
                .then(|| format!("{path} is missing (apt-get install -y {package})")),
        }
    }
}

/// What [`decide`] says about one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Everything is there: run it.
    Run,
    /// Missing pieces outside CI: print this line and pass without running.
    Skip(String),
    /// Missing pieces under `CI=true`: fail with this message.
    Fail(String),
}

/// The rule, without side effects: `missing` lists what is absent (each with its install
/// command), `ci` is whether `CI=true`.
pub fn decide(test: &str, missing: &[String], ci: bool) -> Verdict {
    if missing.is_empty() {
        return Verdict::Run;
    }
    let what = missing.join("; ");
    if ci {
        Verdict::Fail(format!(
            "{test}: {what} — CI=true, so this test may not be skipped: \
             install it (tests/setup-root.sh does, as root)"
        ))
    } else {
        Verdict::Skip(format!("SKIPPED: {test}: {what}"))
    }
}

/// Whether this process runs under CI (`CI=true`, as `.ci/run` and most CI services set).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Checks `needs` for `test`: true when it can run; otherwise prints the SKIPPED line and
/// returns false, or panics under `CI=true`.
pub fn require(test: &str, needs: &[Need]) -> bool {
    let missing: Vec<String> = needs.iter().filter_map(Need::missing).collect();
    require_that(test, &missing)
}

/// Like [`require`], for conditions a test probes itself (e.g. that namespaces work):
/// `missing` lists what is absent, each with the command that provides it.
pub fn require_that(test: &str, missing: &[String]) -> bool {
    match decide(test, missing, in_ci()) {
        Verdict::Run => true,
        Verdict::Skip(line) => {
            use std::io::Write as _;
            // Straight to fd 2: the test harness captures `eprintln!` of passing tests.
            let _ = writeln!(std::io::stderr(), "{line}");
            false
        }
        Verdict::Fail(message) => panic!("{message}"),
    }
}

/// True when running as uid 0.
#[expect(unsafe_code, reason = "geteuid: std cannot ask for the uid")]
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `name` is an executable in one of `PATH`'s directories.
pub fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| is_executable(&d.join(name))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_missing_runs() {
        assert_eq!(decide("t", &[], true), Verdict::Run);
        assert_eq!(decide("t", &[], false), Verdict::Run);
    }

    #[test]
    fn missing_outside_ci_skips_with_what_and_how() {
        let missing = vec!["tmux is not installed (apt-get install -y tmux)".to_string()];
        assert_eq!(
            decide("ux", &missing, false),
            Verdict::Skip(
                "SKIPPED: ux: tmux is not installed (apt-get install -y tmux)".to_string()
            )
        );
    }

    #[test]
    fn missing_under_ci_fails_naming_everything() {
        let missing = vec![
            "needs root (run the tests as root)".to_string(),
            "x".to_string(),
        ];
        let Verdict::Fail(m) = decide("realfleet", &missing, true) else {
            panic!("CI must not skip");
        };
        assert!(m.starts_with("realfleet: needs root"), "{m}");
        assert!(m.contains("; x"), "{m}");
        assert!(!m.contains("SKIPPED"), "{m}");
    }

    #[test]
    fn needs_name_their_package() {
        let absent = Need::program("cfleet-no-such-program", "cfleet-pkg");
        assert_eq!(
            absent.missing().as_deref(),
            Some("cfleet-no-such-program is not installed (apt-get install -y cfleet-pkg)")
        );
        assert_eq!(Need::program("sh", "dash").missing(), None);
        assert_eq!(Need::file("/bin/sh", "dash").missing(), None);
        assert!(
            Need::file("/nonexistent/sshd", "openssh-server")
                .missing()
                .is_some_and(|m| m.contains("apt-get install -y openssh-server"))
        );
    }
}
