//! The terminal summary that ends every run: failed hosts first with identical errors
//! grouped ("12 hosts  auth  …"), then drift and restart-pending hosts with what is off,
//! blocking findings, then one line per cluster of compliant hosts. Plain text, no
//! colour codes (it also goes to files and pipes).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::report::model::{HostReport, HostStatus, ProbeVerdict, Report, Summary, Verdict};

/// Counts hosts by status: the `summary` of a report (check, apply and merge all use it).
pub fn summarize(hosts: &[HostReport]) -> Summary {
    let mut summary = Summary {
        hosts: hosts.len(),
        ..Summary::default()
    };
    for host in hosts {
        let slot = match host.status {
            HostStatus::Failed => &mut summary.failed,
            HostStatus::Drift => &mut summary.drift,
            HostStatus::RestartPending => &mut summary.restart_pending,
            HostStatus::Compliant => &mut summary.compliant,
            HostStatus::NotAttempted => &mut summary.not_attempted,
        };
        *slot += 1;
    }
    summary
}

/// Renders the summary of a report.
pub fn render(report: &Report) -> String {
    let mut s = String::new();
    let secs = report.duration_ms as f64 / 1000.0;
    let _ = writeln!(
        s,
        "carbonio-fleet {} · {} · {} hosts · {:.1}s",
        report.command, report.playbook.name, report.summary.hosts, secs
    );

    let failed: Vec<&HostReport> = report
        .hosts
        .iter()
        .filter(|h| h.status == HostStatus::Failed)
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(s, "\nFAILED ({})", failed.len());
        // Identical errors grouped: the message with this host's name and address
        // replaced, so "connection refused by mail3 (10.0.0.3:22)" groups across hosts.
        let mut groups: BTreeMap<(String, String), Vec<&str>> = BTreeMap::new();
        for h in &failed {
            let (kind, msg) = match &h.error {
                Some(e) => (e.kind.as_str().to_string(), generalize(&e.message, h)),
                None => ("error".to_string(), "unknown failure".to_string()),
            };
            groups.entry((kind, msg)).or_default().push(&h.name);
        }
        let mut groups: Vec<_> = groups.into_iter().collect();
        groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        for ((kind, msg), names) in groups {
            let count = if names.len() == 1 {
                "1 host ".to_string()
            } else {
                format!("{} hosts", names.len())
            };
            let _ = writeln!(s, "  {count:<9} {kind:<12} {msg}");
            let _ = writeln!(s, "            {}", names.join(", "));
        }
    }

    for (status, title) in [
        (HostStatus::Drift, "DRIFT"),
        (HostStatus::RestartPending, "RESTART PENDING"),
    ] {
        let hosts: Vec<&HostReport> = report.hosts.iter().filter(|h| h.status == status).collect();
        if hosts.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n{title} ({})", hosts.len());
        let width = hosts.iter().map(|h| h.name.len()).max().unwrap_or(0);
        for h in hosts {
            let _ = writeln!(s, "  {:<width$}  {}", h.name, what_is_off(h));
        }
    }

    let blocking: Vec<(&str, &str, &str)> = report
        .hosts
        .iter()
        .flat_map(|h| {
            h.findings
                .iter()
                .filter(|f| f.blocking)
                .map(move |f| (h.name.as_str(), f.id.as_str(), f.message.as_str()))
        })
        .collect();
    if !blocking.is_empty() {
        let _ = writeln!(s, "\nBLOCKING FINDINGS ({})", blocking.len());
        for (host, id, msg) in blocking {
            let _ = writeln!(s, "  {host}  {id}: {msg}");
        }
    }

    let not_attempted: Vec<&str> = report
        .hosts
        .iter()
        .filter(|h| h.status == HostStatus::NotAttempted)
        .map(|h| h.name.as_str())
        .collect();
    if !not_attempted.is_empty() {
        let _ = writeln!(
            s,
            "\nNOT ATTEMPTED ({})\n  {}",
            not_attempted.len(),
            not_attempted.join(", ")
        );
    }

    let mut compliant: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for h in report
        .hosts
        .iter()
        .filter(|h| h.status == HostStatus::Compliant)
    {
        compliant
            .entry(h.cluster.as_str())
            .or_default()
            .push(&h.name);
    }
    if !compliant.is_empty() {
        let n: usize = compliant.values().map(Vec::len).sum();
        let _ = writeln!(s, "\nCOMPLIANT ({n})");
        for (cluster, names) in compliant {
            let _ = writeln!(
                s,
                "  cluster {cluster}: {} ({})",
                plural(names.len(), "host"),
                names.join(", ")
            );
        }
    }

    let sm = &report.summary;
    let _ = writeln!(
        s,
        "\n{}: {} compliant, {} drift, {} restart-pending, {} failed{}",
        plural(sm.hosts, "host"),
        sm.compliant,
        sm.drift,
        sm.restart_pending,
        sm.failed,
        if sm.not_attempted > 0 {
            format!(", {} not attempted", sm.not_attempted)
        } else {
            String::new()
        }
    );
    s
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn generalize(msg: &str, h: &HostReport) -> String {
    msg.replace(&format!("{}:{}", h.address, h.port), "ADDR")
        .replace(&format!("[{}]:{}", h.address, h.port), "ADDR")
        .replace(&h.name, "HOST")
}

/// One line: each control and probe that is off, briefly.
fn what_is_off(h: &HostReport) -> String {
    let mut parts = Vec::new();
    for c in &h.controls {
        match c.verdict {
            Verdict::NonCompliant => parts.push(format!(
                "{} {} is {} (want {})",
                c.id, c.attr, c.actual, c.expected
            )),
            Verdict::Masked => {
                parts.push(format!("{} masked by server override ({})", c.id, c.actual))
            }
            Verdict::Error => parts.push(format!("{} error", c.id)),
            _ => {}
        }
    }
    for p in &h.probes {
        if matches!(p.verdict, ProbeVerdict::Fail | ProbeVerdict::Error) {
            parts.push(format!("{} {} (want {})", p.id, p.actual, p.expected));
        }
    }
    if parts.is_empty() {
        for f in &h.findings {
            parts.push(format!("{}: {}", f.id, f.message));
        }
    }
    parts.join(" · ")
}
