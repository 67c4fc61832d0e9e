//! The terminal summary that ends every run: failed hosts first with identical errors
//! grouped ("12 hosts  auth  …"), then drift and restart-pending hosts with what is off,
//! blocking findings, apply's rollout (batch, state, failed gate checks per host), then
//! one line per cluster of compliant hosts, then the domain posture (each failed or
//! undecided SPF/DKIM/DMARC check with its finding). Plain text, no colour codes (it
//! also goes to files and pipes).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::report::model::{
    HostApply, HostReport, HostStatus, ProbeVerdict, Report, Summary, Verdict,
};

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
        let waivers = host
            .controls
            .iter()
            .filter_map(|c| c.waiver.as_ref())
            .chain(host.probes.iter().filter_map(|p| p.waiver.as_ref()));
        for w in waivers {
            match w.is_live() {
                true => summary.waived += 1,
                false => summary.waivers_expired += 1,
            }
        }
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

    // Identical findings grouped: one line per finding, the hosts it concerns after it.
    let mut blocking: Vec<((&str, &str), Vec<&str>)> = Vec::new();
    for h in &report.hosts {
        for f in h.findings.iter().filter(|f| f.blocking) {
            let key = (f.id.as_str(), f.message.as_str());
            match blocking.iter_mut().find(|(k, _)| *k == key) {
                Some((_, hosts)) => hosts.push(&h.name),
                None => blocking.push((key, vec![&h.name])),
            }
        }
    }
    if !blocking.is_empty() {
        let _ = writeln!(s, "\nBLOCKING FINDINGS ({})", blocking.len());
        for ((id, msg), hosts) in blocking {
            let _ = writeln!(s, "  {id}: {msg}");
            let _ = writeln!(s, "            {}", hosts.join(", "));
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

    rollout_section(&mut s, report);
    promotion_section(&mut s, report);
    waiver_section(&mut s, report);

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
    if sm.waived + sm.waivers_expired > 0 {
        let _ = writeln!(
            s,
            "waivers: {} waived deviation{}, {} expired (counted again)",
            sm.waived,
            if sm.waived == 1 { "" } else { "s" },
            sm.waivers_expired
        );
    }
    s
}

/// `--waivers`: each accepted deviation (host, id, why, until when, where written), and
/// each deviation whose waiver expired, so that nobody mistakes it for an oversight.
fn waiver_section(s: &mut String, report: &Report) {
    let mut live = Vec::new();
    let mut expired = Vec::new();
    for h in &report.hosts {
        let results = h
            .controls
            .iter()
            .map(|c| (&c.id, &c.waiver))
            .chain(h.probes.iter().map(|p| (&p.id, &p.waiver)));
        for (id, w) in results {
            if let Some(w) = w {
                match w.is_live() {
                    true => live.push((h.name.as_str(), id.as_str(), w)),
                    false => expired.push((h.name.as_str(), id.as_str(), w)),
                }
            }
        }
    }
    for (title, list) in [("WAIVED", live), ("WAIVER EXPIRED", expired)] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n{title} ({})", list.len());
        for (host, id, w) in list {
            let state = if w.expired { "expired" } else { "until" };
            let _ = writeln!(
                s,
                "  {host}  {id}  {state} {} ({})  {}",
                w.expires, w.source, w.justification
            );
        }
    }
}

/// apply only: one line per host the rollout scheduled (batch order, batch 1 being the
/// canary) with its state and each failed health-gate check under it; the hosts it did
/// not schedule grouped by reason on one line each.
fn rollout_section(s: &mut String, report: &Report) {
    let applied: Vec<(&HostReport, &HostApply)> = report
        .hosts
        .iter()
        .filter_map(|h| h.apply.as_ref().map(|a| (h, a)))
        .collect();
    if applied.is_empty() {
        return;
    }
    let mut scheduled: Vec<(usize, &HostReport, &HostApply)> = applied
        .iter()
        .filter_map(|(h, a)| a.batch.map(|b| (b, *h, *a)))
        .collect();
    scheduled.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.name.cmp(&y.1.name)));
    let _ = writeln!(s, "\nROLLOUT ({} scheduled)", scheduled.len());
    let width = scheduled
        .iter()
        .map(|(_, h, _)| h.name.len())
        .max()
        .unwrap_or(0);
    for (batch, h, a) in &scheduled {
        let label = if *batch == 1 {
            "1 (canary)".to_string()
        } else {
            batch.to_string()
        };
        let _ = writeln!(s, "  batch {label:<10}  {:<width$}  {}", h.name, a.rollout);
        if let Some(g) = a.gate.as_ref().filter(|g| !g.passed) {
            for c in g.checks.iter().filter(|c| !c.ok) {
                let _ = writeln!(s, "    gate {}: {}", c.name, c.detail);
            }
        }
    }
    let mut others: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (h, a) in applied.iter().filter(|(_, a)| a.batch.is_none()) {
        others.entry(a.rollout.as_str()).or_default().push(&h.name);
    }
    for (state, names) in others {
        let _ = writeln!(
            s,
            "  {}: {} ({})",
            if state.is_empty() {
                "no rollout"
            } else {
                state
            },
            plural(names.len(), "host"),
            names.join(", ")
        );
    }
}

/// apply only: each cluster whose global config was staged, promoted or not, and the MTAs
/// that hold a promotion back.
fn promotion_section(s: &mut String, report: &Report) {
    if report.promotions.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nPROMOTION ({} cluster{})",
        report.promotions.len(),
        if report.promotions.len() == 1 {
            ""
        } else {
            "s"
        }
    );
    for p in &report.promotions {
        let _ = writeln!(s, "  cluster {}: {}: {}", p.cluster, p.state, p.detail);
        for h in &p.held_by {
            let who = match (&h.host, &h.server) {
                (Some(host), Some(server)) if host.eq_ignore_ascii_case(server) => host.clone(),
                (Some(host), Some(server)) => format!("{host} (server {server})"),
                (Some(host), None) => host.clone(),
                (None, Some(server)) => format!("server {server}"),
                (None, None) => "the cluster".into(),
            };
            let _ = writeln!(s, "    held by {who}: {}", h.reason);
        }
    }
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

/// One line: each control and probe that is off, briefly (`BS-01 FALSE (want TRUE)`,
/// `BS-04 lacks check_policy_service …`, `SMTP-01 250 (want 5xx)`).
fn what_is_off(h: &HostReport) -> String {
    fn brief(id: &str, actual: &str, expected: &str) -> String {
        if let Some(v) = expected.strip_prefix("contains ") {
            format!("{id} lacks {v}")
        } else if let Some(v) = expected.strip_prefix("absent ") {
            format!("{id} has {v}")
        } else if let Some(v) = expected.strip_prefix("reply ") {
            let code = actual.split_whitespace().next().unwrap_or(actual);
            format!("{id} {code} (want {v})")
        } else {
            let v = expected.strip_prefix("= ").unwrap_or(expected);
            format!("{id} {actual} (want {v})")
        }
    }
    let mut parts = Vec::new();
    // A live waiver's deviation is accepted (WAIVED lists it); an expired one is off again.
    let expired = |w: &Option<crate::report::model::WaiverRef>| {
        w.as_ref()
            .map(|w| format!(" (waiver expired {})", w.expires))
            .unwrap_or_default()
    };
    for c in h.controls.iter().filter(|c| !c.is_waived()) {
        let before = parts.len();
        match c.verdict {
            Verdict::NonCompliant => parts.push(brief(&c.id, &c.actual, &c.expected)),
            Verdict::Masked => parts.push(format!(
                "{} masked by a server override ({})",
                c.id, c.actual
            )),
            Verdict::Error => parts.push(format!("{} error", c.id)),
            _ => {}
        }
        if parts.len() > before
            && let Some(last) = parts.last_mut()
        {
            last.push_str(&expired(&c.waiver));
        }
    }
    for p in h.probes.iter().filter(|p| !p.is_waived()) {
        if matches!(p.verdict, ProbeVerdict::Fail | ProbeVerdict::Error) {
            parts.push(brief(&p.id, &p.actual, &p.expected) + &expired(&p.waiver));
        }
    }
    if let Some(r) = &h.running
        && r.state != crate::carbonio::running::RunningState::Loaded
    {
        parts.push(format!("master.cf {}", r.state.as_str()));
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
    use crate::report::model::{GateCheck, GateRecord};
    use crate::report::sample::{host, sample_report};
    use indoc::indoc;

    /// The sample check report: every section but the rollout, in order.
    #[test]
    fn check_summary_snapshot() {
        assert_eq!(
            render(&sample_report()),
            indoc! {"
                carbonio-fleet check · backscatter-hardening · 6 hosts · 83.4s

                FAILED (2)
                  1 host    hostkey      host key for `HOST` (ADDR) does not match known_hosts
                            mail4
                  1 host    unreachable  failed to connect to `HOST` (ADDR): connection timed out after 10s
                            mail5

                DRIFT (1)
                  mail2  BS-01 FALSE (want TRUE) · BS-02 masked by a server override ([reject_invalid_helo_hostname]) · EFF-01 lacks check_policy_service unix:private/policy

                RESTART PENDING (1)
                  mail3  EFF-01 lacks check_policy_service unix:private/policy

                BLOCKING FINDINGS (1)
                  PRE-POLICY-SPAWN-USER: enabling zimbraMtaEnableSmtpdPolicyd here would make Postfix answer `451 4.3.5` to every recipient: master.cf spawns the policy service as user `zimbra`, which does not exist on this node
                            mail2

                COMPLIANT (2)
                  cluster eu-1: 2 hosts (mail1, store1)

                DOMAINS (9 checks: 5 pass, 3 fail, 1 error)
                  cluster acme: 3 domains
                    acme-shop.example SPF [medium] SPF for acme-shop.example ends in `+all`: any host may send as this domain
                    acme-shop.example DKIM error: DNS lookup of TXT `s1._domainkey.acme-shop.example` failed: request timed out
                    acme-shop.example DMARC [low] DMARC for acme-shop.example has `p=none`: receivers only monitor, forged mail is still delivered
                    acme.test DKIM [medium] DKIM for acme.test is not set up: no DKIMSelector/DKIMPublicKey in LDAP (create a key with `zmdkimkeyutil -a -d acme.test`)

                6 hosts: 2 compliant, 1 drift, 1 restart-pending, 2 failed
            "}
        );
    }

    fn applied(name: &str, status: HostStatus, batch: Option<usize>, rollout: &str) -> HostReport {
        let mut h = host(name, "eu-1", status);
        h.apply = Some(HostApply {
            batch,
            rollout: rollout.to_string(),
            ..HostApply::default()
        });
        h
    }

    /// apply: scheduled hosts in batch order with failed gate checks, the rest grouped.
    #[test]
    fn apply_summary_shows_batches_states_and_gate_failures() {
        let mut report = sample_report();
        report.command = "apply".into();
        report.duration_ms = 61_000;
        // apply has no domain pass.
        report.domains.clear();
        let mut failed = applied(
            "mx2",
            HostStatus::Failed,
            Some(2),
            "failed: health gate failed",
        );
        failed.error = Some(crate::report::model::HostError {
            kind: crate::report::model::ErrorKind::Command,
            message: "health gate failed: smtp: RCPT answered 451 4.3.5".into(),
            expected_fingerprints: Vec::new(),
            offered_fingerprint: None,
        });
        failed.apply.as_mut().unwrap().gate = Some(GateRecord {
            passed: false,
            finished_at: "2026-11-27T02:01:10Z".into(),
            attempts: 3,
            checks: vec![
                GateCheck {
                    name: "services".into(),
                    ok: true,
                    detail: "all running".into(),
                },
                GateCheck {
                    name: "smtp".into(),
                    ok: false,
                    detail: "RCPT answered 451 4.3.5 (policy service down)".into(),
                },
            ],
            vantage: "node".into(),
            smtp_transcript: Vec::new(),
        });
        report.hosts = vec![
            applied("mx3", HostStatus::Compliant, Some(2), "restarted"),
            failed,
            applied("mx1", HostStatus::Compliant, Some(1), "restarted"),
            applied(
                "store1",
                HostStatus::Compliant,
                None,
                "not needed (not an MTA)",
            ),
            applied(
                "store2",
                HostStatus::Compliant,
                None,
                "not needed (not an MTA)",
            ),
            applied(
                "mx4",
                HostStatus::NotAttempted,
                Some(3),
                "not-attempted (rollout aborted)",
            ),
        ];
        report.summary = summarize(&report.hosts);
        assert_eq!(
            render(&report),
            indoc! {"
                carbonio-fleet apply · backscatter-hardening · 6 hosts · 61.0s

                FAILED (1)
                  1 host    command      health gate failed: smtp: RCPT answered 451 4.3.5
                            mx2

                NOT ATTEMPTED (1)
                  mx4

                ROLLOUT (4 scheduled)
                  batch 1 (canary)  mx1  restarted
                  batch 2           mx2  failed: health gate failed
                    gate smtp: RCPT answered 451 4.3.5 (policy service down)
                  batch 2           mx3  restarted
                  batch 3           mx4  not-attempted (rollout aborted)
                  not needed (not an MTA): 2 hosts (store1, store2)

                COMPLIANT (4)
                  cluster eu-1: 4 hosts (mx3, mx1, store1, store2)

                6 hosts: 4 compliant, 0 drift, 0 restart-pending, 1 failed, 1 not attempted
            "}
        );
    }

    #[test]
    fn apply_summary_says_which_mtas_hold_a_promotion() {
        use crate::report::model::{HeldBy, PromotionRecord};
        let mut report = sample_report();
        report.command = "apply".into();
        report.promotions = vec![
            PromotionRecord {
                cluster: "acme".into(),
                state: "promotion-held".into(),
                detail: "1 MTA(s) of the cluster have not proven the staged values".into(),
                mtas: vec!["mx1.acme".into(), "mx2.acme".into()],
                held_by: vec![HeldBy {
                    server: Some("mx2.acme".into()),
                    host: None,
                    reason: "outside --limit".into(),
                }],
                ran_on: None,
                commands: Vec::new(),
            },
            PromotionRecord {
                cluster: "globex".into(),
                state: "promoted".into(),
                detail: "every MTA passed".into(),
                mtas: vec!["mx1.globex".into()],
                held_by: Vec::new(),
                ran_on: Some("mx1.globex".into()),
                commands: Vec::new(),
            },
        ];
        let out = render(&report);
        assert!(
            out.contains(
                "PROMOTION (2 clusters)\n  cluster acme: promotion-held: 1 MTA(s) of the cluster have not proven the staged values\n    held by server mx2.acme: outside --limit\n  cluster globex: promoted: every MTA passed\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn summarize_counts_every_status() {
        let s = summarize(&sample_report().hosts);
        assert_eq!(s, sample_report().summary);
        assert_eq!(summarize(&[]), Summary::default());
    }

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
