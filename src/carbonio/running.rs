//! Whether the RUNNING Postfix has loaded the master.cf on disk (docs/carbonio.md §3).
//!
//! `postconf` reads the files, not the running master. smtpd re-reads main.cf in every new
//! process (so main.cf's mtime says nothing, and zmconfigd touches it constantly), but a
//! master.cf change — the policy spawn entry among them — loads only at a master start or
//! a `postfix reload`. So the question is: did the master start or reload after master.cf
//! was last written? The evidence a non-root login can read:
//!
//! - the master process's age (`ps -C master -o etimes=,args=`; master.pid itself is
//!   root's 0600, Postfix `master/master.c` line 498), usable when exactly one master runs;
//! - the master's own log lines in the mail log, `daemon started -- version …` and
//!   `reload -- version …` (Postfix `master/master.c` lines 550, 583), from THIS host only
//!   (a log host collects other hosts' lines too).
//!
//! When neither settles it (the log rotated since master.cf changed, or is unreadable),
//! the answer is "unknown": never "loaded" from files alone.

use serde::{Deserialize, Serialize};

/// What the node printed for the running-state question, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunningFacts {
    /// The node's clock: UNIX seconds, its year and its UTC offset (`+0100`), which
    /// traditional syslog timestamps (no year, local time) need.
    pub now: Option<i64>,
    pub year: Option<i16>,
    pub offset: Option<String>,
    /// `uname -n`: the name syslog writes for this host.
    pub uname: Option<String>,
    /// master.cf's mtime (UNIX seconds), or why it could not be read.
    pub master_cf_mtime: Result<i64, String>,
    /// Each running `master` process: its age in seconds and its command line.
    pub masters: Vec<(i64, String)>,
    /// The master's start/reload lines of the mail log (every host's), or why the log
    /// could not be read.
    pub log_events: Result<Vec<String>, String>,
    /// The mail log's first line (when the log's record begins).
    pub log_head: Option<String>,
}

/// The verdict on the running master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunningState {
    /// The master started or reloaded after master.cf was written.
    Loaded,
    /// master.cf was written after the master started, and the log (which covers that
    /// time) shows no reload from this host since.
    NotLoaded,
    /// The evidence cannot tell.
    Unknown,
}

impl RunningState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunningState::Loaded => "loaded",
            RunningState::NotLoaded => "not-loaded",
            RunningState::Unknown => "running state unknown",
        }
    }
}

/// The verdict with what it rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    pub state: RunningState,
    pub evidence: String,
    /// master.cf's mtime the verdict is about (UNIX seconds): a later run may carry a
    /// `loaded` verdict forward while master.cf keeps this mtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_cf_mtime: Option<i64>,
}

/// Parses the four sections the gather prints (see `gather::running_sections`).
pub fn parse(running: &str, ps: &str, log: (&str, i64), head: &str) -> RunningFacts {
    let mut f = RunningFacts {
        now: None,
        year: None,
        offset: None,
        uname: None,
        master_cf_mtime: Err("no `stat` output".into()),
        masters: Vec::new(),
        log_events: Ok(Vec::new()),
        log_head: None,
    };
    let mut stat_errors = Vec::new();
    for line in running.lines() {
        let mut w = line.split_whitespace();
        match w.next() {
            Some("clock") => {
                f.now = w.next().and_then(|v| v.parse().ok());
                f.year = w.next().and_then(|v| v.parse().ok());
                f.offset = w.next().map(str::to_string);
            }
            Some("uname") => f.uname = w.next().map(str::to_string),
            Some("mastercf") => match w.next().and_then(|v| v.parse().ok()) {
                Some(t) => f.master_cf_mtime = Ok(t),
                None => stat_errors.push(line.trim().to_string()),
            },
            _ if !line.trim().is_empty() => stat_errors.push(line.trim().to_string()),
            _ => {}
        }
    }
    if f.master_cf_mtime.is_err() && !stat_errors.is_empty() {
        f.master_cf_mtime = Err(stat_errors.join("; "));
    }
    f.masters = ps
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let (age, args) = l.split_once(char::is_whitespace)?;
            Some((age.parse().ok()?, args.trim().to_string()))
        })
        .collect();
    let (log_out, log_status) = log;
    // grep: 0 = lines found, 1 = none (a readable log without such lines), 2 = error.
    f.log_events = match log_status {
        0 | 1 => Ok(log_out.lines().map(str::to_string).collect()),
        _ => Err(log_out.trim().to_string()),
    };
    f.log_head = head
        .lines()
        .next()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string);
    f
}

/// A mail log line: when and from which host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogLine<'a> {
    at: i64,
    host: &'a str,
}

/// Reads a syslog line's time and host: RFC 3339 (`2026-12-02T01:55:20.1+00:00 host …`,
/// rsyslog's high-precision format) or traditional (`Dec  2 01:55:20 host …`; Postfix's
/// own `maillog_file` writes `Dec 02`, msg_logger.c line 205), the latter in the node's
/// year and current UTC offset (a line from a year ago, "in the future", is last year's).
fn read_line<'a>(line: &'a str, f: &RunningFacts) -> Option<LogLine<'a>> {
    let mut w = line.split_whitespace();
    let first = w.next()?;
    if let Ok(ts) = first.parse::<jiff::Timestamp>() {
        return Some(LogLine {
            at: ts.as_second(),
            host: w.next()?,
        });
    }
    let (day, time, host) = (w.next()?, w.next()?, w.next()?);
    let day: u8 = day.parse().ok()?;
    let (year, offset, now) = (f.year?, f.offset.as_deref()?, f.now?);
    let at = |y: i16| -> Option<i64> {
        let text = format!("{first} {day:02} {time} {y} {offset}");
        jiff::fmt::strtime::parse("%b %d %H:%M:%S %Y %z", &text)
            .ok()?
            .to_timestamp()
            .ok()
            .map(|t| t.as_second())
    };
    let mut t = at(year)?;
    if t > now + 86_400 {
        t = at(year - 1)?;
    }
    Some(LogLine { at: t, host })
}

/// The host field of a syslog line, in either timestamp format.
pub fn host_of(line: &str) -> Option<&str> {
    let mut w = line.split_whitespace();
    let first = w.next()?;
    if first.parse::<jiff::Timestamp>().is_ok() {
        w.next()
    } else {
        w.nth(2)
    }
}

/// Whether a syslog host field names this node (syslog writes the short or the full name).
pub fn is_this_host(field: &str, names: &[&str]) -> bool {
    let short = |n: &str| n.split('.').next().unwrap_or(n).to_ascii_lowercase();
    let field = field.to_ascii_lowercase();
    names
        .iter()
        .any(|n| field == n.to_ascii_lowercase() || short(&field) == short(n))
}

/// UTC, to the second, for evidence.
fn when(t: i64) -> String {
    jiff::Timestamp::from_second(t)
        .map(|ts| ts.to_string())
        .unwrap_or_else(|_| t.to_string())
}

/// Decides whether the running master has loaded master.cf. `server` is the Carbonio
/// server name (syslog may write it, or `uname -n`); `log` names the mail log.
pub fn decide(f: &RunningFacts, server: &str, log: &str) -> Running {
    let unknown = |evidence: String, mtime: Option<i64>| Running {
        state: RunningState::Unknown,
        evidence,
        master_cf_mtime: mtime,
    };
    let mtime = match &f.master_cf_mtime {
        Ok(t) => *t,
        Err(e) => return unknown(format!("cannot read master.cf's mtime: {e}"), None),
    };
    let written = when(mtime);
    // The master's age: only when exactly one runs (on a node that hosts several Postfix
    // instances, the ages cannot be told apart).
    if let (Some(now), [(age, args)]) = (f.now, f.masters.as_slice()) {
        let started = now - age;
        if started > mtime {
            return Running {
                state: RunningState::Loaded,
                evidence: format!(
                    "the running master (`{args}`) started at {}, after master.cf was written at {written}",
                    when(started)
                ),
                master_cf_mtime: Some(mtime),
            };
        }
    }
    let events = match &f.log_events {
        Ok(ev) => ev,
        Err(e) => {
            return unknown(
                format!("master.cf was written at {written} and {log} cannot be read ({e})"),
                Some(mtime),
            );
        }
    };
    let mut names = vec![server];
    if let Some(u) = &f.uname {
        names.push(u);
    }
    let mine: Vec<(LogLine<'_>, &String)> = events
        .iter()
        .filter_map(|l| read_line(l, f).map(|p| (p, l)))
        .filter(|(p, _)| is_this_host(p.host, &names))
        .collect();
    if let Some((_, line)) = mine.iter().rev().find(|(p, _)| p.at >= mtime) {
        return Running {
            state: RunningState::Loaded,
            evidence: format!(
                "master.cf was written at {written}; {log} shows the master since: `{}`",
                line.trim()
            ),
            master_cf_mtime: Some(mtime),
        };
    }
    let head = f.log_head.as_deref().and_then(|l| read_line(l, f));
    match head {
        Some(h) if h.at <= mtime => Running {
            state: RunningState::NotLoaded,
            evidence: format!(
                "master.cf was written at {written}, and {log} (from {}) has no `reload` or `daemon started` from this host since{}: the running master has not loaded it",
                when(h.at),
                match (f.now, f.masters.as_slice()) {
                    (Some(now), [(age, _)]) =>
                        format!(" (the master started at {})", when(now - age)),
                    _ => String::new(),
                }
            ),
            master_cf_mtime: Some(mtime),
        },
        Some(h) => unknown(
            format!(
                "master.cf was written at {written}, before {log} begins ({}; rotated since): no record of a reload",
                when(h.at)
            ),
            Some(mtime),
        ),
        None => unknown(
            format!("master.cf was written at {written} and {log} is empty"),
            Some(mtime),
        ),
    }
}

/// Carries an earlier run's `loaded` verdict forward when master.cf has kept the mtime
/// that verdict was about: whatever the master did since (a reload, a restart), it has
/// that file loaded. Only an `unknown` verdict is replaced.
pub fn carry_forward(now: Running, earlier: Option<&Running>, earlier_run: &str) -> Running {
    match earlier {
        Some(e)
            if now.state == RunningState::Unknown
                && e.state == RunningState::Loaded
                && e.master_cf_mtime.is_some()
                && e.master_cf_mtime == now.master_cf_mtime =>
        {
            Running {
                state: RunningState::Loaded,
                evidence: format!(
                    "master.cf is unchanged since the run of {earlier_run}, which found it loaded: {}",
                    e.evidence
                ),
                master_cf_mtime: now.master_cf_mtime,
            }
        }
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "/var/log/carbonio.log";
    // 2026-12-02T10:00:00Z
    const NOW: i64 = 1_796_205_600;

    fn facts(
        mtime: i64,
        masters: &[(i64, &str)],
        events: &[&str],
        head: Option<&str>,
    ) -> RunningFacts {
        RunningFacts {
            now: Some(NOW),
            year: Some(2026),
            offset: Some("+0100".into()),
            uname: Some("mx1".into()),
            master_cf_mtime: Ok(mtime),
            masters: masters.iter().map(|(a, s)| (*a, s.to_string())).collect(),
            log_events: Ok(events.iter().map(|s| s.to_string()).collect()),
            log_head: head.map(str::to_string),
        }
    }

    #[test]
    fn parses_what_the_node_prints() {
        let f = parse(
            "clock 1796205600 2026 +0100\nuname mx1\nmastercf 1796200000\n",
            "  86400 /opt/zextras/common/libexec/master -w\n",
            (
                "Dec  2 09:00:00 mx1 postfix/master[12]: reload -- version 3.7.3, configuration /opt/zextras/common/conf\n",
                0,
            ),
            "Dec  2 00:00:01 mx1 postfix/anvil[9]: statistics\n",
        );
        assert_eq!(f.now, Some(NOW));
        assert_eq!(f.offset.as_deref(), Some("+0100"));
        assert_eq!(f.master_cf_mtime, Ok(1_796_200_000));
        assert_eq!(
            f.masters,
            vec![(86400, "/opt/zextras/common/libexec/master -w".to_string())]
        );
        assert_eq!(f.log_events.as_ref().unwrap().len(), 1);
        let unreadable = parse(
            "clock 1 2026 +0000\nstat: cannot statx '/x/master.cf': Permission denied\n",
            "",
            ("grep: /var/log/carbonio.log: Permission denied\n", 2),
            "",
        );
        assert_eq!(
            unreadable.master_cf_mtime,
            Err("stat: cannot statx '/x/master.cf': Permission denied".into())
        );
        assert!(unreadable.log_events.is_err());
    }

    #[test]
    fn a_master_younger_than_master_cf_has_loaded_it() {
        let f = facts(
            NOW - 7200,
            &[(3600, "/opt/zextras/common/libexec/master -w")],
            &[],
            None,
        );
        let r = decide(&f, "mx1.example.test", LOG);
        assert_eq!(r.state, RunningState::Loaded, "{}", r.evidence);
        assert!(
            r.evidence.contains("started at 2026-12-02T09:00:00Z"),
            "{}",
            r.evidence
        );
    }

    #[test]
    fn a_reload_from_this_host_after_the_write_loads_it() {
        // Traditional timestamps are the node's local time (+0100): 10:30 local is
        // 09:30Z, after the 09:00Z write.
        let f = facts(
            NOW - 3600,
            &[(86_400, "master -w")],
            &[
                "Dec  2 10:30:00 mx1 postfix/master[12]: reload -- version 3.7.3, configuration /opt/zextras/common/conf",
            ],
            Some("Dec  2 00:00:01 mx1 postfix/anvil[9]: x"),
        );
        assert_eq!(
            decide(&f, "mx1.example.test", LOG).state,
            RunningState::Loaded
        );
        // 09:30 local is 08:30Z: before the write.
        let early = facts(
            NOW - 3600,
            &[(86_400, "master -w")],
            &[
                "Dec  2 09:30:00 mx1 postfix/master[12]: reload -- version 3.7.3, configuration /opt/zextras/common/conf",
            ],
            Some("Dec  2 00:00:01 mx1 postfix/anvil[9]: x"),
        );
        let r = decide(&early, "mx1.example.test", LOG);
        assert_eq!(r.state, RunningState::NotLoaded, "{}", r.evidence);
        assert!(r.evidence.contains("has not loaded it"), "{}", r.evidence);
    }

    #[test]
    fn another_hosts_reload_on_a_log_host_does_not_count() {
        let f = facts(
            NOW - 3600,
            &[],
            &[
                "2026-12-02T09:50:00.000001+00:00 mx2 postfix/master[12]: reload -- version 3.7.3, configuration /opt/zextras/common/conf",
            ],
            Some("2026-12-02T00:00:00+00:00 mx1 postfix/anvil[9]: x"),
        );
        assert_eq!(
            decide(&f, "mx1.example.test", LOG).state,
            RunningState::NotLoaded
        );
        let mine = facts(
            NOW - 3600,
            &[],
            &[
                "2026-12-02T09:50:00.000001+00:00 mx1.example.test postfix/master[12]: daemon started -- version 3.7.3, configuration /opt/zextras/common/conf",
            ],
            Some("2026-12-02T00:00:00+00:00 mx1 postfix/anvil[9]: x"),
        );
        assert_eq!(
            decide(&mine, "mx1.example.test", LOG).state,
            RunningState::Loaded
        );
    }

    #[test]
    fn a_rotated_or_unreadable_log_is_unknown_never_loaded() {
        let rotated = facts(
            NOW - 86_400 * 3,
            &[(86_400 * 30, "master -w")],
            &[],
            Some("2026-12-02T00:00:00+00:00 mx1 postfix/anvil[9]: x"),
        );
        let r = decide(&rotated, "mx1", LOG);
        assert_eq!(r.state, RunningState::Unknown);
        assert!(r.evidence.contains("rotated"), "{}", r.evidence);
        let mut unreadable = rotated.clone();
        unreadable.log_events = Err("grep: /var/log/carbonio.log: Permission denied".into());
        assert_eq!(decide(&unreadable, "mx1", LOG).state, RunningState::Unknown);
        let mut no_stat = rotated.clone();
        no_stat.master_cf_mtime = Err("Permission denied".into());
        assert_eq!(decide(&no_stat, "mx1", LOG).state, RunningState::Unknown);
        // Two masters (two instances): their ages prove nothing.
        let two = facts(
            NOW - 3600,
            &[(60, "master -w"), (999_999, "master")],
            &[],
            Some("2026-12-02T12:00:00+00:00 mx1 x"),
        );
        assert_eq!(decide(&two, "mx1", LOG).state, RunningState::Unknown);
    }

    #[test]
    fn host_fields_in_both_formats() {
        assert_eq!(
            host_of("Dec  2 01:55:20 mx1 postfix/master[1]: x"),
            Some("mx1")
        );
        assert_eq!(
            host_of("2026-12-02T01:55:20.1+00:00 mx1.example.test postfix/smtpd[2]: y"),
            Some("mx1.example.test")
        );
        assert!(is_this_host("MX1", &["mx1.example.test"]));
        assert!(!is_this_host("mx2", &["mx1.example.test", "mx1"]));
    }

    #[test]
    fn last_years_traditional_line_reads_as_last_year() {
        let mut f = facts(NOW - 3600, &[], &[], None);
        f.now = Some(1_767_225_600); // 2026-01-01T00:00:00Z
        let l = read_line("Dec 31 23:00:00 mx1 x", &f).unwrap();
        assert_eq!(when(l.at), "2025-12-31T22:00:00Z");
    }

    #[test]
    fn a_loaded_verdict_carries_forward_only_while_master_cf_keeps_its_mtime() {
        let earlier = Running {
            state: RunningState::Loaded,
            evidence: "reload at …".into(),
            master_cf_mtime: Some(100),
        };
        let unknown = |m| Running {
            state: RunningState::Unknown,
            evidence: "rotated".into(),
            master_cf_mtime: Some(m),
        };
        let r = carry_forward(unknown(100), Some(&earlier), "2026-12-01T10:00:00Z");
        assert_eq!(r.state, RunningState::Loaded);
        assert!(
            r.evidence
                .contains("unchanged since the run of 2026-12-01T10:00:00Z")
        );
        assert_eq!(
            carry_forward(unknown(101), Some(&earlier), "x").state,
            RunningState::Unknown
        );
        let not_loaded = Running {
            state: RunningState::NotLoaded,
            ..unknown(100)
        };
        assert_eq!(
            carry_forward(not_loaded, Some(&earlier), "x").state,
            RunningState::NotLoaded
        );
    }
}
