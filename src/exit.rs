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
