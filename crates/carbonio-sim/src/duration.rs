//! Durations on the simulator's command lines (`simulate --latency 200ms`, `sim-exec
//! zmconfigd --interval 1s`), read in jiff's friendly format: the same crate and format
//! the tool reads its durations with (the tool's `duration` module adds humantime's
//! calendar units, which a simulator flag never needs).

use std::time::Duration;

use jiff::SignedDuration;

/// Parses `200ms`, `2s`, `1m30s`, `1 min`; the error says what was expected.
pub fn parse(text: &str) -> Result<Duration, String> {
    let d: SignedDuration = text
        .trim()
        .parse()
        .map_err(|e| format!("`{text}` is not a duration like 200ms or 2s: {e}"))?;
    Duration::try_from(d).map_err(|_| format!("`{text}`: a duration cannot be negative"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_the_simulator_flags_use() {
        assert_eq!(parse("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse(" 1m30s "), Ok(Duration::from_secs(90)));
        assert_eq!(parse("10 mins"), Ok(Duration::from_secs(600)));
        assert!(parse("-1s").is_err());
        assert!(parse("soon").unwrap_err().contains("200ms or 2s"));
    }
}
