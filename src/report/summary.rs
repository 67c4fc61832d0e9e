//! The terminal summary that ends every run: failed hosts first with identical errors
//! grouped ("12 hosts  auth  …"), then drift and restart-pending hosts with what is off,
//! blocking findings, then one line per cluster of compliant hosts, then the domain
//! posture (each failed or undecided SPF/DKIM/DMARC check with its finding). Plain text,
//! no colour codes (it also goes to files and pipes).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::report::model::{HostReport, HostStatus, ProbeVerdict, Report, Verdict};

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

    if !report.domains.is_empty() {
        let checks = report
            .domains
            .iter()
            .flat_map(|d| d.domains.iter().flat_map(|p| p.checks.iter()));
        let (mut pass, mut fail, mut error) = (0, 0, 0);
        for c in checks {
            match c.verdict {
                ProbeVerdict::Pass | ProbeVerdict::NotApplicable => pass += 1,
                ProbeVerdict::Fail => fail += 1,
                ProbeVerdict::Error => error += 1,
            }
        }
        let _ = writeln!(
            s,
            "\nDOMAINS ({} checks: {pass} pass, {fail} fail, {error} error)",
            pass + fail + error
        );
        for d in &report.domains {
            let _ = writeln!(
                s,
                "  cluster {}: {}",
                d.cluster,
                match &d.error {
                    Some(e) => format!("domains not read: {e}"),
                    None => plural(d.domains.len(), "domain"),
                }
            );
            for p in &d.domains {
                for c in &p.checks {
                    let name = c.check.to_uppercase();
                    if let Some(e) = &c.error {
                        let _ = writeln!(s, "    {} {name} error: {e}", p.domain);
                    }
                    for f in &c.findings {
                        let _ =
                            writeln!(s, "    {} {name} [{}] {}", p.domain, f.severity, f.message);
                    }
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample::sample_report;

    #[test]
    fn domain_block_lists_every_failed_or_undecided_check() {
        let text = render(&sample_report());
        let block = &text[text.find("\nDOMAINS").expect("domain block")..];
        let expected = "\nDOMAINS (9 checks: 5 pass, 3 fail, 1 error)\n  cluster acme: 3 domains\n    acme-shop.example SPF [medium] SPF for acme-shop.example ends in `+all`: any host may send as this domain\n    acme-shop.example DKIM error: DNS lookup of TXT `s1._domainkey.acme-shop.example` failed: request timed out\n    acme-shop.example DMARC [low] DMARC for acme-shop.example has `p=none`: receivers only monitor, forged mail is still delivered\n    acme.test DKIM [medium] DKIM for acme.test is not set up: no DKIMSelector/DKIMPublicKey in LDAP (create a key with `zmdkimkeyutil -a -d acme.test`)\n";
        assert!(block.starts_with(expected), "{block}");
        let mut none = sample_report();
        none.domains.clear();
        assert!(!render(&none).contains("DOMAINS"));
    }
}
