//! Process exit codes (SPEC §3), in one place. `main` maps a run's outcome to one of
//! these with one exhaustive match; nothing else calls `std::process::exit`.

/// Every targeted host compliant (after apply: remediated and verified).
pub const OK: i32 = 0;
/// Usage, inventory or playbook error: nothing was contacted.
pub const USAGE: i32 = 1;
/// Drift: at least one host non-compliant.
pub const DRIFT: i32 = 2;
/// At least one host unreachable / auth failed / command failed (beats DRIFT).
pub const HOST_FAILED: i32 = 3;
/// Rollout aborted: failure budget exceeded or a canary failed.
pub const ABORTED: i32 = 4;
/// Interrupted by Ctrl-C.
pub const INTERRUPTED: i32 = 130;

/// Every exit code with its meaning, in the order the help and the README list them.
pub const TABLE: [(i32, &str); 6] = [
    (
        OK,
        "every targeted host compliant (after apply: remediated and verified)",
    ),
    (
        USAGE,
        "usage, inventory or playbook error: nothing was contacted",
    ),
    (
        DRIFT,
        "drift: at least one host non-compliant (check), or still non-compliant after apply",
    ),
    (
        HOST_FAILED,
        "at least one host unreachable / auth failed / command failed (takes precedence over 2)",
    ),
    (
        ABORTED,
        "rollout aborted: failure budget exceeded or a canary failed",
    ),
    (
        INTERRUPTED,
        "interrupted (Ctrl-C): in-flight steps finished, the report and journal say where each host stands",
    ),
];
