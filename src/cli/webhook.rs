//! `--webhook URL`: after `check` or `apply`, when the run shows new drift (the trigger
//! `--on-drift` uses, `alert::fresh_drift`), POST one JSON message to a chat's incoming
//! webhook. Slack and Teams display its `text` (a headline, the first new drifts, the
//! report's path); the other fields carry the same facts for receivers that parse them.
//! A failed delivery is a warning on stderr and in the log; it never changes the exit
//! code. The URL is never shown in full (`http::Endpoint::masked`).

use serde::Serialize;

use super::alert::FreshDrift;
use super::http::{self, Endpoint, Method};
use crate::report::diff::Drift;
use crate::report::model::{HostReport, HostStatus, ProbeVerdict, Report, Summary, Verdict};

/// How many drifts the `text` lists before "… and N more" (the list field has them all).
const TEXT_LINES: usize = 5;

/// The message body.
#[derive(Debug, Serialize)]
pub struct Payload {
    /// What Slack and Teams show.
    pub text: String,
    pub tool: String,
    pub version: String,
    pub command: String,
    pub playbook: String,
    /// The run directory's name (`reports/<run>/`).
    pub run: String,
    pub started_at: String,
    pub exit_code: i32,
    pub summary: Summary,
    /// What got worse since the previous report (every host that is not compliant when
    /// there was none).
    pub new_drift: Vec<DriftItem>,
    /// The new report.json.
    pub report: String,
}

/// One host (or domain check) that got worse.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct DriftItem {
    /// The inventory host, or `DOMAIN (cluster C)` for a domain check.
    pub host: String,
    /// Its status before (`None`: new host, or no previous report).
    pub was: Option<String>,
    pub now: String,
    /// The checks that got worse: `ID old → new`.
    pub checks: Vec<String>,
}

/// Builds the message for a run's new drift.
pub fn payload(fresh: &FreshDrift) -> Payload {
    let r = &fresh.report;
    let items = match &fresh.diff {
        Some(d) => items_from_diff(d),
        None => items_without_history(r),
    };
    let run = fresh
        .path
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Payload {
        text: text(r, &items, &fresh.path.display().to_string()),
        tool: r.tool.name.clone(),
        version: r.tool.version.clone(),
        command: r.command.clone(),
        playbook: r.playbook.name.clone(),
        run,
        started_at: r.started_at.clone(),
        exit_code: r.exit_code,
        summary: r.summary.clone(),
        new_drift: items,
        report: fresh.path.display().to_string(),
    }
}

fn items_from_diff(d: &Drift) -> Vec<DriftItem> {
    let mut out: Vec<DriftItem> = d
        .changed
        .iter()
        .filter(|h| h.is_worse())
        .map(|h| DriftItem {
            host: h.name.clone(),
            was: Some(h.old_status.as_str().into()),
            now: h.new_status.as_str().into(),
            checks: h
                .checks
                .iter()
                .filter(|c| c.is_worse)
                .map(|c| {
                    format!(
                        "{} {} → {}",
                        c.id,
                        c.old_verdict.unwrap_or("absent"),
                        c.new_verdict.unwrap_or("absent")
                    )
                })
                .collect(),
        })
        .collect();
    out.extend(
        d.appeared
            .iter()
            .filter(|h| h.status != HostStatus::Compliant)
            .map(|h| DriftItem {
                host: h.name.clone(),
                was: None,
                now: h.status.as_str().into(),
                checks: Vec::new(),
            }),
    );
    out.extend(d.domains.iter().filter(|c| c.is_worse).map(|c| DriftItem {
        host: format!("{} (cluster {})", c.domain, c.cluster),
        was: c.old_verdict.map(str::to_string),
        now: c.new_verdict.unwrap_or("absent").into(),
        checks: vec![c.check.to_uppercase()],
    }));
    out
}

/// Without a previous report every host that is not compliant is new drift.
fn items_without_history(r: &Report) -> Vec<DriftItem> {
    r.hosts
        .iter()
        .filter(|h| h.status != HostStatus::Compliant)
        .map(|h| DriftItem {
            host: h.name.clone(),
            was: None,
            now: h.status.as_str().into(),
            checks: off(h),
        })
        .collect()
}

/// The ids of a host's deviations that no live waiver accepts, or its error.
fn off(h: &HostReport) -> Vec<String> {
    if let Some(e) = &h.error {
        return vec![format!("{}: {}", e.kind.as_str(), e.message)];
    }
    h.controls
        .iter()
        .filter(|c| !c.is_waived())
        .filter(|c| {
            matches!(
                c.verdict,
                Verdict::NonCompliant | Verdict::Masked | Verdict::Error
            )
        })
        .map(|c| c.id.clone())
        .chain(
            h.probes
                .iter()
                .filter(|p| !p.is_waived())
                .filter(|p| matches!(p.verdict, ProbeVerdict::Fail | ProbeVerdict::Error))
                .map(|p| p.id.clone()),
        )
        .collect()
}

/// The short text a chat shows: headline, up to [`TEXT_LINES`] drifts, the report.
fn text(r: &Report, items: &[DriftItem], report: &str) -> String {
    let s = &r.summary;
    let mut t = format!(
        "carbonio-fleet {} ({}): new drift on {} of {} hosts; {} compliant, {} drift, {} restart-pending, {} failed; exit {}",
        r.command,
        r.playbook.name,
        items.len(),
        s.hosts,
        s.compliant,
        s.drift,
        s.restart_pending,
        s.failed,
        r.exit_code
    );
    if s.waived > 0 {
        t.push_str(&format!("; {} waived", s.waived));
    }
    for i in items.iter().take(TEXT_LINES) {
        let was = i
            .was
            .as_deref()
            .map(|w| format!("{w} → "))
            .unwrap_or_default();
        t.push_str(&format!("\n• {}: {was}{}", i.host, i.now));
        if !i.checks.is_empty() {
            t.push_str(&format!(" ({})", i.checks.join(", ")));
        }
    }
    if items.len() > TEXT_LINES {
        t.push_str(&format!("\n… and {} more", items.len() - TEXT_LINES));
    }
    t.push_str(&format!("\nreport: {report}"));
    t
}

/// Posts the run's new drift to `to`, if there is any. Failures are warnings.
pub fn send(to: &Endpoint, fresh: Option<&FreshDrift>) {
    let Some(fresh) = fresh else {
        return;
    };
    let body = match serde_json::to_vec(&payload(fresh)) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("webhook: cannot encode the message: {e}");
            return;
        }
    };
    match http::deliver(Method::Post, to, "application/json", &body) {
        Ok(status) => tracing::info!("webhook: new drift sent to {} (HTTP {status})", to.masked()),
        Err(e) => tracing::warn!(
            "webhook: the new drift could not be delivered: {e} (the run's exit code is unchanged)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample::sample_report;

    #[test]
    fn without_history_every_host_that_is_off_is_listed_briefly() {
        let r = sample_report();
        let fresh = FreshDrift {
            path: "/var/lib/fleet/20261127T020000Z-backscatter-hardening/report.json".into(),
            report: r.clone(),
            diff: None,
            text: String::new(),
        };
        let p = payload(&fresh);
        assert_eq!(p.run, "20261127T020000Z-backscatter-hardening");
        assert_eq!(p.exit_code, r.exit_code);
        let hosts: Vec<&str> = p.new_drift.iter().map(|i| i.host.as_str()).collect();
        assert_eq!(hosts, ["mail2", "mail3", "mail4", "mail5"]);
        assert!(
            p.text.starts_with(
                "carbonio-fleet check (backscatter-hardening): new drift on 4 of 6 hosts; 2 compliant, 1 drift, 1 restart-pending, 2 failed; exit 3\n• mail2: drift (BS-01, BS-02, EFF-01)"
            ),
            "{}",
            p.text
        );
        assert!(p.text.ends_with(
            "\nreport: /var/lib/fleet/20261127T020000Z-backscatter-hardening/report.json"
        ));
    }

    #[test]
    fn the_text_lists_the_first_drifts_and_counts_the_rest() {
        let mut r = sample_report();
        let base = r.hosts[1].clone();
        r.hosts = (0..8)
            .map(|i| HostReport {
                name: format!("m{i}"),
                ..base.clone()
            })
            .collect();
        let items = items_without_history(&r);
        let t = text(&r, &items, "r.json");
        assert_eq!(
            t.lines().filter(|l| l.starts_with("• ")).count(),
            TEXT_LINES
        );
        assert!(t.contains("\n… and 3 more\n"), "{t}");
    }
}
