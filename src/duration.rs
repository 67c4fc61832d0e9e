//! Durations as people write them and as the tool prints them: the one place that turns
//! `"10s"`, `"5m"`, `"1h30m"` or `"90d"` (inventory and playbook keys, command-line flags,
//! the simulator's `--interval`) into a [`Duration`], and a [`Duration`] into `"1h 30m"`
//! (messages, `inventory list`, the plan's JSON).
//!
//! Both directions use jiff's "friendly" format. The inputs accepted before jiff
//! (humantime) keep their meaning; the table in the tests holds every form found in
//! the repository's inventories, playbooks, docs and tests.

use std::fmt;
use std::time::Duration;

use jiff::fmt::friendly::{Designator, Spacing, SpanParser, SpanPrinter};
use jiff::{SignedDuration, SpanRelativeTo};

/// Seconds in the year and month humantime counted (365.25 and 30.44 days). A span
/// has no fixed length in these units; an input such as `--older-than 1y` written for
/// the earlier parser keeps its length.
const YEAR_SECS: i64 = 31_557_600;
const MONTH_SECS: i64 = 2_630_016;

static PARSER: SpanParser = SpanParser::new();
static PRINTER: SpanPrinter = SpanPrinter::new()
    .designator(Designator::Compact)
    .spacing(Spacing::BetweenUnits);

/// Parses a duration such as `"10s"`, `"5m"`, `"1h30m"`, `"1h 30m"`, `"200ms"`,
/// `"90d"`, `"2 weeks"` or `"1.5h"` (surrounding whitespace ignored). Days are 24
/// hours, weeks 7 days. The error says what is wrong, without repeating the input.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let span = PARSER.parse_span(text).map_err(|e| explain(text, &e))?;
    if span.is_negative() {
        return Err("a duration cannot be negative".to_owned());
    }
    let calendar =
        i64::from(span.get_years()) * YEAR_SECS + i64::from(span.get_months()) * MONTH_SECS;
    let rest = span
        .years(0)
        .months(0)
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|e| e.to_string())?;
    SignedDuration::from_secs(calendar)
        .checked_add(rest)
        .and_then(|d| Duration::try_from(d).ok())
        .ok_or_else(|| "the duration is too long".to_owned())
}

/// What is wrong with `text`, said more plainly than jiff's general message where the
/// cause is one of the usual ones: no number, or a unit it does not know.
fn explain(text: &str, e: &jiff::Error) -> String {
    if !text.contains(|c: char| c.is_ascii_digit()) {
        return "expected a number and a unit, e.g. \"10s\"".to_owned();
    }
    let unknown = text
        .split(|c: char| c.is_ascii_digit() || c.is_whitespace() || ".,+-".contains(c))
        .find(|word| !word.is_empty() && PARSER.parse_span(format!("1{word}")).is_err());
    match unknown {
        Some(word) => {
            format!("unknown unit `{word}` (units: ms, s, m, h, d, w and their names, e.g. `mins`)")
        }
        None => {
            let message = e.to_string();
            match message.split_once("format: ") {
                Some((_, cause)) => cause.to_owned(),
                None => message,
            }
        }
    }
}

/// `"1h 30m"`, `"2s 500ms"`, `"0s"`: hours and smaller units, largest first.
pub fn display(duration: Duration) -> impl fmt::Display {
    Display(duration)
}

struct Display(Duration);

impl fmt::Display for Display {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&PRINTER.unsigned_duration_to_string(&self.0))
    }
}

/// For `#[serde(serialize_with = "crate::duration::serialize")]`: the [`display`] text.
pub fn serialize<S: serde::Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&display(*duration))
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    const S: u64 = 1;
    const M: u64 = 60;
    const H: u64 = 3600;
    const D: u64 = 86_400;

    // Every form in inventory/, playbooks/, deploy/, README.md, docs/ and tests/, and the
    // other spellings humantime accepted, with the length humantime gave them.
    #[test_case("10s", 10 * S ; "inventory connect_timeout")]
    #[test_case("5m", 5 * M ; "inventory command_timeout")]
    #[test_case("5s", 5 * S ; "lab connect_timeout and playbook pause")]
    #[test_case("2m", 2 * M ; "example group command_timeout")]
    #[test_case("15s", 15 * S ; "kubernetes configmap")]
    #[test_case("3m", 3 * M ; "playbook health_timeout")]
    #[test_case("2s", 2 * S ; "realfleet hanging connect_timeout")]
    #[test_case("3s", 3 * S ; "test inventory timeout")]
    #[test_case("30s", 30 * S ; "deploy timeout")]
    #[test_case("60s", 60 * S ; "sixty seconds")]
    #[test_case("120s", 120 * S ; "ux inventory command_timeout")]
    #[test_case("1h30m", H + 30 * M ; "hint example")]
    #[test_case("1h 30m", H + 30 * M ; "spaced units")]
    #[test_case("0s", 0 ; "zero, stagger default")]
    #[test_case("1s", S ; "interval default")]
    #[test_case("90d", 90 * D ; "older-than example days")]
    #[test_case("12h", 12 * H ; "older-than example hours")]
    #[test_case("2w", 14 * D ; "weeks")]
    #[test_case("1y", 31_557_600 ; "year as humantime counted it")]
    #[test_case("1month", 2_630_016 ; "month as humantime counted it")]
    #[test_case("2 hours", 2 * H ; "long unit with a space")]
    #[test_case("1hour 30min 15sec", H + 30 * M + 15 ; "mixed long units")]
    #[test_case("15days 2min 2s", 15 * D + 2 * M + 2 ; "humantime doc example")]
    #[test_case(" 10s ", 10 * S ; "surrounding whitespace")]
    fn parses_like_before(text: &str, secs: u64) {
        assert_eq!(parse(text), Ok(Duration::from_secs(secs)));
    }

    #[test_case("200ms", Duration::from_millis(200) ; "milliseconds")]
    #[test_case("50ms", Duration::from_millis(50) ; "short stagger")]
    #[test_case("1s 500ms", Duration::from_millis(1500) ; "seconds and milliseconds")]
    #[test_case("1.5s", Duration::from_millis(1500) ; "fraction")]
    #[test_case("10us", Duration::from_micros(10) ; "microseconds")]
    #[test_case("7ns", Duration::from_nanos(7) ; "nanoseconds")]
    fn parses_subsecond(text: &str, want: Duration) {
        assert_eq!(parse(text), Ok(want));
    }

    #[test_case("" ; "empty")]
    #[test_case("soon" ; "a word")]
    #[test_case("10" ; "no unit")]
    #[test_case("10 parsecs" ; "unknown unit")]
    #[test_case("-5s" ; "negative")]
    #[test_case("5s ago" ; "negative by ago")]
    #[test_case("1M" ; "upper-case M is not minutes")]
    fn rejects(text: &str) {
        let err = parse(text).unwrap_err();
        assert!(!err.is_empty(), "{text}: empty error");
    }

    #[test_case("soon", "expected a number and a unit, e.g. \"10s\"" ; "no number")]
    #[test_case("10 parsecs", "unknown unit `parsecs` (units: ms, s, m, h, d, w and their names, e.g. `mins`)" ; "unknown unit")]
    #[test_case("1M", "unknown unit `M` (units: ms, s, m, h, d, w and their names, e.g. `mins`)" ; "upper-case unit")]
    #[test_case("10", "expected to find unit designator suffix (e.g., `years` or `secs`) after parsing integer" ; "no unit")]
    #[test_case("-5s", "a duration cannot be negative" ; "negative")]
    fn says_what_is_wrong(text: &str, want: &str) {
        assert_eq!(parse(text).unwrap_err(), want);
    }

    #[test_case(Duration::ZERO, "0s" ; "zero")]
    #[test_case(Duration::from_secs(10), "10s" ; "seconds")]
    #[test_case(Duration::from_secs(90), "1m 30s" ; "minutes and seconds")]
    #[test_case(Duration::from_secs(5 * 60), "5m" ; "whole minutes")]
    #[test_case(Duration::from_secs(H + 30 * M + 5), "1h 30m 5s" ; "hours")]
    #[test_case(Duration::from_millis(1500), "1s 500ms" ; "milliseconds")]
    #[test_case(Duration::from_millis(200), "200ms" ; "only milliseconds")]
    fn displays_as_before(d: Duration, want: &str) {
        assert_eq!(display(d).to_string(), want);
    }

    #[test]
    fn display_parses_back() {
        for secs in [0, 1, 59, 61, 3599, 3601, 86_399] {
            let d = Duration::from_secs(secs) + Duration::from_millis(secs % 1000);
            assert_eq!(parse(&display(d).to_string()), Ok(d));
        }
    }
}
