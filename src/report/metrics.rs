//! OpenMetrics text (`metrics.prom`) for node_exporter's textfile collector: one run's
//! fleet state as gauges, so a dashboard can show compliance over time and an alert can
//! fire on drift or unreachable hosts.
//!
//! Every metric is a gauge (the run is a snapshot; nothing accumulates across runs) and
//! carries a `playbook` label, so several playbooks can share one textfile directory:
//!
//! | metric | labels | value |
//! |---|---|---|
//! | `carbonio_fleet_host_compliant` | host, cluster, playbook | 1 if the host's status is `compliant`, else 0 |
//! | `carbonio_fleet_host_status` | host, cluster, playbook, status | 1 for the host's status (one sample per host) |
//! | `carbonio_fleet_host_blocking_findings` | host, cluster, playbook | number of blocking findings |
//! | `carbonio_fleet_control_status` | host, cluster, playbook, control, verdict | 1 (one sample per control; the verdict is the label) |
//! | `carbonio_fleet_probe_status` | host, cluster, playbook, probe, verdict | 1 (one sample per probe) |
//! | `carbonio_fleet_waiver` | host, cluster, playbook, id, state | 1 per deviation a waiver names (`--waivers`); state `waived` (accepted) or `expired` (counts again) |
//! | `carbonio_fleet_waiver_expiry_timestamp_seconds` | host, cluster, playbook, id | the end of the waiver's last day (UTC), Unix seconds: alert before it runs out |
//! | `carbonio_fleet_domain_check` | cluster, domain, check, verdict, playbook | 1 (one sample per hosted domain and `dns` check; verdict pass, fail or error) |
//! | `carbonio_fleet_domain_findings` | cluster, domain, check, playbook | number of findings of that check |
//! | `carbonio_fleet_domains_read` | cluster, playbook | 1 if the cluster's domains could be read, 0 if not |
//! | `carbonio_fleet_hosts` | playbook, status | hosts per status, every status listed (0 included) |
//! | `carbonio_fleet_run_duration_seconds` | playbook, command | wall time of the run |
//! | `carbonio_fleet_last_run_timestamp_seconds` | playbook, command | end of the run, Unix seconds |
//! | `carbonio_fleet_run_exit_code` | playbook, command | the process exit code (README "Exit codes") |
//!
//! Per-host samples also carry one label per playbook `labels` entry (e.g. `customer`),
//! from the host's inventory `vars`, so alerts and dashboards can route by customer.
//!
//! The output is also valid Prometheus text 0.0.4 (what node_exporter parses): `# UNIT`
//! and `# EOF` are comments there, and no sample has a timestamp.

use std::fmt::Write as _;

use jiff::Timestamp;

use super::labels::{STATUS_ORDER, probe_verdict_str, verdict_str};
use super::model::{HostReport, HostStatus, Report};

/// Escapes a label value as OpenMetrics requires: backslash, double quote, newline.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `{a="x",b="y"}` with escaped values.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// Writes a metric family header.
fn family(out: &mut String, name: &str, help: &str, unit: Option<&str>) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    if let Some(unit) = unit {
        let _ = writeln!(out, "# UNIT {name} {unit}");
    }
}

/// `secret check`'s metrics as OpenMetrics text: how many of the checked hosts have no
/// credentials the tool can find, and which.
pub fn render_secrets_missing(checked: usize, missing: &[&str]) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "carbonio_fleet_secrets_missing",
        "Hosts whose SSH credentials cannot be found (no usable identity file, no ssh-agent, no password).",
        None,
    );
    let _ = writeln!(out, "carbonio_fleet_secrets_missing {}", missing.len());
    family(
        &mut out,
        "carbonio_fleet_secrets_checked",
        "Hosts whose credentials were looked for.",
        None,
    );
    let _ = writeln!(out, "carbonio_fleet_secrets_checked {checked}");
    family(
        &mut out,
        "carbonio_fleet_host_secrets_missing",
        "A host whose SSH credentials cannot be found (value always 1).",
        None,
    );
    for h in missing {
        let _ = writeln!(
            out,
            "carbonio_fleet_host_secrets_missing{} 1",
            labels(&[("host", h)])
        );
    }
    out.push_str("# EOF\n");
    out
}

/// The labels of a per-host sample: host, cluster, the playbook's report labels (e.g.
/// `customer`, empty when the host lacks the var), playbook, then `extra`.
fn host_labels(report: &Report, h: &HostReport, extra: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(&str, &str)> = vec![("host", &h.name), ("cluster", &h.cluster)];
    for k in &report.labels {
        pairs.push((k, h.vars.get(k).map(String::as_str).unwrap_or("")));
    }
    pairs.push(("playbook", &report.playbook.name));
    pairs.extend_from_slice(extra);
    labels(&pairs)
}

/// The waivers the run applied, one sample per waived or expired deviation (no family
/// at all without waivers, so a run without `--waivers` renders as before).
fn waiver_metrics(out: &mut String, report: &Report) {
    let waived: Vec<_> = report.waivers().collect();
    if waived.is_empty() {
        return;
    }
    family(
        out,
        "carbonio_fleet_waiver",
        "A deviation that a waiver names; state waived (accepted, not counted as drift) or expired (counted again). Value always 1.",
        None,
    );
    for (h, id, w) in &waived {
        let l = host_labels(
            report,
            h,
            &[
                ("id", id),
                ("state", if w.expired { "expired" } else { "waived" }),
            ],
        );
        let _ = writeln!(out, "carbonio_fleet_waiver{l} 1");
    }
    family(
        out,
        "carbonio_fleet_waiver_expiry_timestamp_seconds",
        "When the waiver of a deviation runs out: the end of its last day, UTC.",
        Some("seconds"),
    );
    for (h, id, w) in &waived {
        // The waiver applies through its day: it runs out at the next midnight UTC.
        let Some(end) = w
            .expires
            .parse::<jiff::civil::Date>()
            .ok()
            .and_then(|d| d.tomorrow().ok())
            .and_then(|d| d.to_zoned_datetime(jiff::tz::TimeZone::UTC).ok())
        else {
            continue;
        };
        let l = host_labels(report, h, &[("id", id)]);
        let _ = writeln!(
            out,
            "carbonio_fleet_waiver_expiry_timestamp_seconds{l} {}",
            end.timestamp().as_second()
        );
    }
}

/// Renders the report as OpenMetrics text, ending with `# EOF`.
pub fn render_openmetrics(report: &Report) -> String {
    let mut out = String::new();
    host_metrics(&mut out, report);
    result_metrics(&mut out, report);
    waiver_metrics(&mut out, report);
    domain_metrics(&mut out, report);
    run_metrics(&mut out, report);
    out.push_str("# EOF\n");
    out
}

/// Each host's state at the end of the run: compliant or not, its status, and how many
/// of its findings block a change.
fn host_metrics(out: &mut String, report: &Report) {
    family(
        out,
        "carbonio_fleet_host_compliant",
        "Whether the host was compliant at the end of the run (1) or not (0).",
        None,
    );
    for h in &report.hosts {
        let l = host_labels(report, h, &[]);
        let v = u8::from(h.status == HostStatus::Compliant);
        let _ = writeln!(out, "carbonio_fleet_host_compliant{l} {v}");
    }

    family(
        out,
        "carbonio_fleet_host_status",
        "The host's status at the end of the run, as the status label (value always 1).",
        None,
    );
    for h in &report.hosts {
        let l = host_labels(report, h, &[("status", h.status.as_str())]);
        let _ = writeln!(out, "carbonio_fleet_host_status{l} 1");
    }

    family(
        out,
        "carbonio_fleet_host_blocking_findings",
        "Findings on the host that block a change (for example a missing policy spawn user).",
        None,
    );
    for h in &report.hosts {
        let l = host_labels(report, h, &[]);
        let n = h.findings.iter().filter(|f| f.blocking).count();
        let _ = writeln!(out, "carbonio_fleet_host_blocking_findings{l} {n}");
    }
}

/// One sample per control and per probe of each host, the verdict as a label.
fn result_metrics(out: &mut String, report: &Report) {
    family(
        out,
        "carbonio_fleet_control_status",
        "One sample per control and host; the verdict label says compliant, non-compliant, masked, not-applicable or error (value always 1).",
        None,
    );
    for h in &report.hosts {
        for c in &h.controls {
            let l = host_labels(
                report,
                h,
                &[("control", &c.id), ("verdict", verdict_str(c.verdict))],
            );
            let _ = writeln!(out, "carbonio_fleet_control_status{l} 1");
        }
    }

    family(
        out,
        "carbonio_fleet_probe_status",
        "One sample per probe and host; the verdict label says pass, fail, not-applicable or error (value always 1).",
        None,
    );
    for h in &report.hosts {
        for p in &h.probes {
            let l = host_labels(
                report,
                h,
                &[("probe", &p.id), ("verdict", probe_verdict_str(p.verdict))],
            );
            let _ = writeln!(out, "carbonio_fleet_probe_status{l} 1");
        }
    }
}

/// The hosted domains' `dns` checks per cluster, and whether each cluster's domains
/// could be read (no family at all when the run read no domains).
fn domain_metrics(out: &mut String, report: &Report) {
    let playbook = report.playbook.name.as_str();
    if report.domains.is_empty() {
        return;
    }
    family(
        out,
        "carbonio_fleet_domain_check",
        "One sample per hosted domain and dns check (spf, dkim, dmarc); the verdict label says pass, fail or error (value always 1).",
        None,
    );
    // Every (cluster, domain, check), for the two families with one sample per check.
    let checks: Vec<_> = report
        .domains
        .iter()
        .flat_map(|d| {
            d.domains
                .iter()
                .flat_map(move |p| p.checks.iter().map(move |c| (d, p, c)))
        })
        .collect();
    for (d, p, c) in &checks {
        let l = labels(&[
            ("cluster", &d.cluster),
            ("domain", &p.domain),
            ("check", &c.check),
            ("verdict", probe_verdict_str(c.verdict)),
            ("playbook", playbook),
        ]);
        let _ = writeln!(out, "carbonio_fleet_domain_check{l} 1");
    }
    family(
        out,
        "carbonio_fleet_domain_findings",
        "Findings of one dns check of one hosted domain.",
        None,
    );
    for (d, p, c) in &checks {
        let l = labels(&[
            ("cluster", &d.cluster),
            ("domain", &p.domain),
            ("check", &c.check),
            ("playbook", playbook),
        ]);
        let _ = writeln!(
            out,
            "carbonio_fleet_domain_findings{l} {}",
            c.findings.len()
        );
    }
    family(
        out,
        "carbonio_fleet_domains_read",
        "Whether the cluster's hosted domains could be read (1) or not (0).",
        None,
    );
    for d in &report.domains {
        let l = labels(&[("cluster", &d.cluster), ("playbook", playbook)]);
        let _ = writeln!(
            out,
            "carbonio_fleet_domains_read{l} {}",
            u8::from(d.error.is_none())
        );
    }
}

/// The run as a whole: hosts per status (every status, 0 included), wall time, when it
/// finished and its exit code.
fn run_metrics(out: &mut String, report: &Report) {
    let playbook = report.playbook.name.as_str();
    let command = report.command.as_str();
    family(
        out,
        "carbonio_fleet_hosts",
        "Targeted hosts by status at the end of the run.",
        None,
    );
    for status in STATUS_ORDER {
        let n = report.hosts.iter().filter(|h| h.status == status).count();
        let l = labels(&[("playbook", playbook), ("status", status.as_str())]);
        let _ = writeln!(out, "carbonio_fleet_hosts{l} {n}");
    }

    let run = labels(&[("playbook", playbook), ("command", command)]);
    family(
        out,
        "carbonio_fleet_run_duration_seconds",
        "Wall-clock duration of the run.",
        Some("seconds"),
    );
    let _ = writeln!(
        out,
        "carbonio_fleet_run_duration_seconds{run} {}",
        report.duration_ms as f64 / 1000.0
    );

    family(
        out,
        "carbonio_fleet_last_run_timestamp_seconds",
        "When the run finished, in seconds since the Unix epoch.",
        Some("seconds"),
    );
    // A timestamp the engine did not write as RFC 3339 is left out rather than guessed.
    if let Ok(finished) = report.finished_at.parse::<Timestamp>() {
        let _ = writeln!(
            out,
            "carbonio_fleet_last_run_timestamp_seconds{run} {}",
            finished.as_millisecond() as f64 / 1000.0
        );
    }

    family(
        out,
        "carbonio_fleet_run_exit_code",
        "Exit code of the run: 0 compliant, 2 drift, 3 host failures, 4 aborted, 130 interrupted.",
        None,
    );
    let _ = writeln!(
        out,
        "carbonio_fleet_run_exit_code{run} {}",
        report.exit_code
    );
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::*;
    use crate::report::sample::sample_report;

    /// One parsed sample line.
    #[derive(Debug, Clone)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    fn is_metric_name(s: &str) -> bool {
        let mut chars = s.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    /// Parses the exposition strictly: HELP/TYPE/UNIT before samples of their family,
    /// label syntax and escapes, float values, `# EOF` last. Panics on any deviation.
    fn parse(text: &str) -> Vec<Sample> {
        assert!(text.ends_with("# EOF\n"), "must end with # EOF");
        let mut samples = Vec::new();
        let mut typed: HashSet<String> = HashSet::new();
        let mut helped: HashSet<String> = HashSet::new();
        let mut seen_series: HashSet<String> = HashSet::new();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if *line == "# EOF" {
                assert_eq!(i, lines.len() - 1, "# EOF must be the last line");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let (kw, name, arg) = (
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                );
                assert!(is_metric_name(name), "bad name in {line}");
                match kw {
                    "HELP" => assert!(helped.insert(name.to_string()), "HELP twice: {name}"),
                    "TYPE" => {
                        assert_eq!(arg, "gauge", "{line}");
                        assert!(typed.insert(name.to_string()), "TYPE twice: {name}");
                    }
                    "UNIT" => assert!(name.ends_with(&format!("_{arg}")), "{line}"),
                    other => panic!("unknown descriptor {other} in {line}"),
                }
                continue;
            }
            let (name, after) = match line.find('{') {
                Some(b) => (&line[..b], &line[b..]),
                None => panic!("every sample has labels: {line}"),
            };
            assert!(is_metric_name(name), "bad metric name {name:?}");
            assert!(
                typed.contains(name) && helped.contains(name),
                "no HELP/TYPE before {name}"
            );
            // Labels: name="value" pairs with \\ \" \n escapes, scanned by index.
            let chars: Vec<char> = after.chars().collect();
            let mut i = 1; // past '{'
            let mut labels = BTreeMap::new();
            while chars[i] != '}' {
                let key_start = i;
                while chars[i] != '=' {
                    i += 1;
                }
                let key: String = chars[key_start..i].iter().collect();
                assert!(
                    is_metric_name(&key) && !key.contains(':'),
                    "bad label {key:?}"
                );
                assert_eq!(chars[i + 1], '"', "label value must be quoted: {line}");
                i += 2;
                let mut value = String::new();
                loop {
                    match chars[i] {
                        '"' => break,
                        '\\' => {
                            i += 1;
                            match chars[i] {
                                '\\' => value.push('\\'),
                                '"' => value.push('"'),
                                'n' => value.push('\n'),
                                other => panic!("invalid escape \\{other} in {line}"),
                            }
                        }
                        c => value.push(c),
                    }
                    i += 1;
                }
                i += 1; // past closing quote
                assert!(
                    labels.insert(key.clone(), value).is_none(),
                    "duplicate label {key}"
                );
                match chars[i] {
                    ',' => i += 1,
                    '}' => {}
                    other => panic!("unexpected {other:?} after label value in {line}"),
                }
            }
            let rest: String = chars[i + 1..].iter().collect();
            let value_str = rest.strip_prefix(' ').expect("one space before the value");
            assert!(!value_str.contains(' '), "no timestamps expected: {line}");
            let value: f64 = value_str
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line}"));
            let series = format!("{name}{labels:?}");
            assert!(seen_series.insert(series), "duplicate series: {line}");
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
        samples
    }

    fn find<'a>(samples: &'a [Sample], name: &str, pairs: &[(&str, &str)]) -> Vec<&'a Sample> {
        samples
            .iter()
            .filter(|s| {
                s.name == name
                    && pairs
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    #[test]
    fn every_line_parses_and_values_match_the_report() {
        let report = sample_report();
        let text = render_openmetrics(&report);
        let samples = parse(&text);

        let compliant = find(&samples, "carbonio_fleet_host_compliant", &[]);
        assert_eq!(compliant.len(), 6);
        let ones: Vec<&str> = compliant
            .iter()
            .filter(|s| s.value == 1.0)
            .map(|s| s.labels["host"].as_str())
            .collect();
        assert_eq!(ones, ["mail1", "store1"]);
        assert!(
            compliant
                .iter()
                .all(|s| s.labels["playbook"] == "backscatter-hardening")
        );

        let hosts = |status| find(&samples, "carbonio_fleet_hosts", &[("status", status)])[0].value;
        assert_eq!(hosts("compliant"), 2.0);
        assert_eq!(hosts("drift"), 1.0);
        assert_eq!(hosts("restart-pending"), 1.0);
        assert_eq!(hosts("failed"), 2.0);
        assert_eq!(hosts("not-attempted"), 0.0);

        let bs01 = find(
            &samples,
            "carbonio_fleet_control_status",
            &[("host", "mail2"), ("control", "BS-01")],
        );
        assert_eq!(bs01.len(), 1);
        assert_eq!(bs01[0].labels["verdict"], "non-compliant");
        assert_eq!(bs01[0].labels["cluster"], "eu-1");
        // The playbook's report label rides on every per-host sample.
        assert_eq!(bs01[0].labels["customer"], "ACME Corp");
        assert!(
            compliant
                .iter()
                .all(|s| s.labels["customer"] == "ACME Corp")
        );
        assert_eq!(
            find(&samples, "carbonio_fleet_control_status", &[]).len(),
            8
        );
        assert_eq!(
            find(
                &samples,
                "carbonio_fleet_probe_status",
                &[("verdict", "fail")]
            )
            .len(),
            2
        );
        assert_eq!(
            find(
                &samples,
                "carbonio_fleet_host_blocking_findings",
                &[("host", "mail2")]
            )[0]
            .value,
            1.0
        );

        let checks = find(
            &samples,
            "carbonio_fleet_domain_check",
            &[("cluster", "acme")],
        );
        assert_eq!(checks.len(), 9);
        let spf = find(
            &samples,
            "carbonio_fleet_domain_check",
            &[("domain", "acme-shop.example"), ("check", "spf")],
        );
        assert_eq!(spf.len(), 1);
        assert_eq!(spf[0].labels["verdict"], "fail");
        assert_eq!(
            find(
                &samples,
                "carbonio_fleet_domain_check",
                &[("verdict", "error")]
            )
            .len(),
            1
        );
        assert_eq!(
            find(
                &samples,
                "carbonio_fleet_domain_findings",
                &[("domain", "acme-shop.example"), ("check", "dmarc")]
            )[0]
            .value,
            1.0
        );
        assert_eq!(
            find(
                &samples,
                "carbonio_fleet_domains_read",
                &[("cluster", "acme")]
            )[0]
            .value,
            1.0
        );

        let run = [("playbook", "backscatter-hardening"), ("command", "check")];
        assert_eq!(
            find(&samples, "carbonio_fleet_run_duration_seconds", &run)[0].value,
            83.4
        );
        assert_eq!(
            find(&samples, "carbonio_fleet_last_run_timestamp_seconds", &run)[0].value,
            1_795_744_883.4
        );
        assert_eq!(
            find(&samples, "carbonio_fleet_run_exit_code", &run)[0].value,
            3.0
        );
    }

    #[test]
    fn waivers_are_a_sample_each_with_the_end_of_their_last_day() {
        let mut report = sample_report();
        assert!(!render_openmetrics(&report).contains("carbonio_fleet_waiver"));
        report.hosts[1].controls[0].waiver = Some(crate::report::model::WaiverRef {
            justification: "accepted".into(),
            expires: "2027-03-31".into(),
            source: "waivers.toml:2".into(),
            scope: "cluster eu-1".into(),
            approved_by: None,
            expired: true,
        });
        let text = render_openmetrics(&report);
        let h = &report.hosts[1];
        let labels = format!(
            "host=\"{}\",cluster=\"{}\",customer=\"ACME Corp\",playbook=\"backscatter-hardening\",id=\"BS-01\"",
            h.name, h.cluster
        );
        assert!(
            text.contains(&format!(
                "carbonio_fleet_waiver{{{labels},state=\"expired\"}} 1\n"
            )),
            "{text}"
        );
        // 2027-04-01T00:00:00Z: the waiver applies through 2027-03-31.
        assert!(
            text.contains(&format!(
                "carbonio_fleet_waiver_expiry_timestamp_seconds{{{labels}}} 1806537600\n"
            )),
            "{text}"
        );
        parse(&text);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut report = sample_report();
        report.playbook.name = "odd \"name\" \\ with\nnewline".to_string();
        report.hosts[0].cluster = "c\\1".to_string();
        let text = render_openmetrics(&report);
        assert!(
            text.contains(r#"playbook="odd \"name\" \\ with\nnewline""#),
            "{text}"
        );
        let samples = parse(&text);
        let s = find(
            &samples,
            "carbonio_fleet_host_compliant",
            &[("host", "mail1")],
        )[0];
        assert_eq!(s.labels["playbook"], "odd \"name\" \\ with\nnewline");
        assert_eq!(s.labels["cluster"], "c\\1");
    }

    proptest::proptest! {
        /// Any text in names survives escaping: the exposition still parses and the label
        /// values come back unchanged.
        #[test]
        fn any_label_value_round_trips(
            playbook in "\\PC*",
            host in "[\\PC\\n\"\\\\]*",
            cluster in proptest::prelude::any::<String>(),
        ) {
            let mut report = sample_report();
            report.playbook.name = playbook.clone();
            let host = format!("x-{host}"); // never collides with the sample's names
            report.hosts[0].name = host.clone();
            report.hosts[0].cluster = cluster.clone();
            let samples = parse(&render_openmetrics(&report));
            let s = find(&samples, "carbonio_fleet_host_compliant", &[("host", &host)]);
            proptest::prop_assert_eq!(s.len(), 1);
            proptest::prop_assert_eq!(&s[0].labels["cluster"], &cluster);
            proptest::prop_assert_eq!(&s[0].labels["playbook"], &playbook);
        }
    }

    #[test]
    fn domain_families_only_for_a_run_that_read_domains() {
        let mut report = sample_report();
        let mut out = String::new();
        domain_metrics(&mut out, &report);
        for family in [
            "carbonio_fleet_domain_check",
            "carbonio_fleet_domain_findings",
            "carbonio_fleet_domains_read",
        ] {
            assert!(out.contains(&format!("# TYPE {family} gauge\n")), "{out}");
        }
        report.domains.clear();
        let mut out = String::new();
        domain_metrics(&mut out, &report);
        assert_eq!(out, "");
    }

    #[test]
    fn unparseable_finish_time_omits_only_that_sample() {
        let mut report = sample_report();
        report.finished_at = "yesterday".to_string();
        let samples = parse(&render_openmetrics(&report));
        assert!(find(&samples, "carbonio_fleet_last_run_timestamp_seconds", &[]).is_empty());
        assert_eq!(find(&samples, "carbonio_fleet_run_exit_code", &[]).len(), 1);
    }
}
