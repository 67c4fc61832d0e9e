//! Waiting for a state in async tests: poll a condition until it holds, with a bounded
//! deadline far beyond any healthy wait (never a sleep standing in for the state).

use std::time::Duration;

/// Polls `cond` every 5 ms until it holds; panics naming `what` after a minute.
pub async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
