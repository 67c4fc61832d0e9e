//! Process exit codes (README "Exit codes"), in one place: the [`ExitCode`] enum, its
//! numbers, its meanings and the one precedence rule that decides between two of them.
//! The engine derives a run's code from its outcome with [`ExitCode::worst`]; the
//! command line returns it, and `main` hands its number to the process.

/// How a run ended, as the process exit status says it. The variants are declared in
/// order of precedence (the derived `Ord`): when two apply, the later one wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExitCode {
    /// Every targeted host compliant (after apply: remediated and verified).
    Ok,
    /// Usage, inventory or playbook error: nothing was contacted.
    Usage,
    /// Drift: at least one host non-compliant.
    Drift,
    /// At least one host unreachable / auth failed / command failed (beats drift).
    HostFailed,
    /// Rollout aborted: failure budget exceeded or a canary failed.
    Aborted,
    /// Interrupted by Ctrl-C (beats everything: the run did not finish).
    Interrupted,
}

impl ExitCode {
    /// Every exit code, in the order the help and the README list them.
    pub const ALL: [ExitCode; 6] = [
        ExitCode::Ok,
        ExitCode::Usage,
        ExitCode::Drift,
        ExitCode::HostFailed,
        ExitCode::Aborted,
        ExitCode::Interrupted,
    ];

    /// The process exit status.
    pub const fn code(self) -> i32 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::Usage => 1,
            ExitCode::Drift => 2,
            ExitCode::HostFailed => 3,
            ExitCode::Aborted => 4,
            ExitCode::Interrupted => 130,
        }
    }

    /// The exit code with this status (a report's `exit_code`), if it is one of ours.
    pub fn from_code(code: i32) -> Option<ExitCode> {
        ExitCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The precedence rule, the only one: of two outcomes the run has, the one it exits
    /// with. An interrupt or an abort is kept over anything, then host failures over
    /// drift over success.
    pub fn worst(self, other: ExitCode) -> ExitCode {
        self.max(other)
    }

    /// What the code means, as the help lists it.
    pub const fn meaning(self) -> &'static str {
        match self {
            ExitCode::Ok => "every targeted host compliant (after apply: remediated and verified)",
            ExitCode::Usage => "usage, inventory or playbook error: nothing was contacted",
            ExitCode::Drift => {
                "drift: at least one host non-compliant (check), or still non-compliant after apply"
            }
            ExitCode::HostFailed => {
                "at least one host unreachable / auth failed / command failed (takes precedence over 2)"
            }
            ExitCode::Aborted => "rollout aborted: failure budget exceeded or a canary failed",
            ExitCode::Interrupted => {
                "interrupted (Ctrl-C): in-flight steps finished, the report and journal say where each host stands"
            }
        }
    }
}

impl From<ExitCode> for i32 {
    fn from(c: ExitCode) -> i32 {
        c.code()
    }
}

#[cfg(test)]
mod tests {
    use super::ExitCode::{self, *};

    #[test]
    fn the_numbers_are_the_documented_ones() {
        let numbers: Vec<i32> = ExitCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(numbers, [0, 1, 2, 3, 4, 130]);
        for c in ExitCode::ALL {
            assert_eq!(ExitCode::from_code(c.code()), Some(c));
        }
        assert_eq!(ExitCode::from_code(7), None);
    }

    #[test]
    fn precedence_interrupt_over_abort_over_failure_over_drift_over_ok() {
        let cases = [
            (Ok, Drift, Drift),
            (Drift, HostFailed, HostFailed),
            (HostFailed, Drift, HostFailed),
            (HostFailed, Aborted, Aborted),
            (Aborted, Interrupted, Interrupted),
            (Interrupted, HostFailed, Interrupted),
            (Ok, Ok, Ok),
        ];
        for (a, b, worst) in cases {
            assert_eq!(a.worst(b), worst, "{a:?} and {b:?}");
            assert_eq!(b.worst(a), worst, "{b:?} and {a:?}");
        }
    }
}
