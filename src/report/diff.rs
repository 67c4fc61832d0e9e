//! Drift between two runs (`carbonio-fleet report diff OLD NEW`): hosts that appeared,
//! disappeared or changed status, controls and probes whose verdict changed, findings
//! that are new or resolved. [`Drift::has_new_drift`] decides exit code 2.
//!
//! "Worse" uses the rankings in `labels`: for hosts failed > drift > restart pending >
//! compliant (= not attempted); for checks off (non-compliant, masked, fail) > error >
//! fine (compliant, pass, not applicable). A check or host that is new in NEW and not fine
//! counts as worse: it is drift the old report did not show. Findings are reported but do
//! not decide the exit code on their own — a blocking finding goes with a failing check.
//! Domain posture (SPF, DKIM, DMARC per hosted domain) is compared per cluster, domain
//! and check: a verdict that got worse is new drift, and changed finding texts are listed.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::labels::{
    probe_verdict_rank, probe_verdict_str, status_rank, verdict_rank, verdict_str,
};
use super::model::{DomainCheck, Finding, HostReport, HostStatus, Report};

/// Which run a report was: enough to title the diff.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunRef {
    pub playbook: String,
    pub playbook_sha256: String,
    pub command: String,
    pub started_at: String,
}

impl RunRef {
    fn of(report: &Report) -> Self {
        RunRef {
            playbook: report.playbook.name.clone(),
            playbook_sha256: report.playbook.sha256.clone(),
            command: report.command.clone(),
            started_at: report.started_at.clone(),
        }
    }
}

/// A host present in only one of the two reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostPresence {
    pub name: String,
    pub status: HostStatus,
}

/// A control or probe whose verdict differs; `None` when it is absent on that side
/// (the playbook gained or lost the check, or the host could not be audited).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckChange {
    pub id: String,
    /// `control` or `probe`.
    pub what: &'static str,
    pub old_verdict: Option<&'static str>,
    pub new_verdict: Option<&'static str>,
    pub old_actual: Option<String>,
    pub new_actual: Option<String>,
    pub is_worse: bool,
}

/// A finding, identified by its id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FindingRef {
    pub id: String,
    pub blocking: bool,
    pub message: String,
}

impl From<&Finding> for FindingRef {
    fn from(f: &Finding) -> Self {
        FindingRef {
            id: f.id.clone(),
            blocking: f.blocking,
            message: f.message.clone(),
        }
    }
}

/// What changed on a host present in both reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostDrift {
    pub name: String,
    pub old_status: HostStatus,
    pub new_status: HostStatus,
    pub checks: Vec<CheckChange>,
    pub new_findings: Vec<FindingRef>,
    pub resolved_findings: Vec<FindingRef>,
}

impl HostDrift {
    /// The host's status got worse, or any of its checks did.
    pub fn is_worse(&self) -> bool {
        status_rank(self.new_status) > status_rank(self.old_status)
            || self.checks.iter().any(|c| c.is_worse)
    }
}

/// The difference between two reports, in NEW's host order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Drift {
    pub old: RunRef,
    pub new: RunRef,
    pub appeared: Vec<HostPresence>,
    pub disappeared: Vec<HostPresence>,
    /// Only hosts with at least one change.
    pub changed: Vec<HostDrift>,
    /// Domain checks whose verdict or findings changed, in NEW's order (then gone ones).
    pub domains: Vec<DomainChange>,
}

/// A `dns` check of one hosted domain whose verdict or findings changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DomainChange {
    pub cluster: String,
    pub domain: String,
    /// `spf`, `dkim` or `dmarc`.
    pub check: String,
    /// `None`: the domain (or check) is absent on that side.
    pub old_verdict: Option<&'static str>,
    pub new_verdict: Option<&'static str>,
    pub new_findings: Vec<String>,
    pub resolved_findings: Vec<String>,
    pub is_worse: bool,
}

impl Drift {
    /// Any host or check got worse, or a host appeared that is not compliant: `report
    /// diff` exits 2.
    pub fn has_new_drift(&self) -> bool {
        self.changed.iter().any(HostDrift::is_worse)
            || self.appeared.iter().any(|h| status_rank(h.status) > 0)
            || self.domains.iter().any(|d| d.is_worse)
    }

    /// Nothing at all changed.
    pub fn is_empty(&self) -> bool {
        self.appeared.is_empty()
            && self.disappeared.is_empty()
            && self.changed.is_empty()
            && self.domains.is_empty()
    }
}

/// Compares two reports (typically two sweeps of the same playbook).
pub fn diff(old: &Report, new: &Report) -> Drift {
    let old_hosts: HashMap<&str, &HostReport> =
        old.hosts.iter().map(|h| (h.name.as_str(), h)).collect();
    let new_names: std::collections::HashSet<&str> =
        new.hosts.iter().map(|h| h.name.as_str()).collect();

    let mut drift = Drift {
        old: RunRef::of(old),
        new: RunRef::of(new),
        appeared: Vec::new(),
        disappeared: old
            .hosts
            .iter()
            .filter(|h| !new_names.contains(h.name.as_str()))
            .map(|h| HostPresence {
                name: h.name.clone(),
                status: h.status,
            })
            .collect(),
        changed: Vec::new(),
        domains: domain_changes(old, new),
    };
    for host in &new.hosts {
        match old_hosts.get(host.name.as_str()) {
            None => drift.appeared.push(HostPresence {
                name: host.name.clone(),
                status: host.status,
            }),
            Some(before) => {
                let d = host_drift(before, host);
                if d.old_status != d.new_status
                    || !d.checks.is_empty()
                    || !d.new_findings.is_empty()
                    || !d.resolved_findings.is_empty()
                {
                    drift.changed.push(d);
                }
            }
        }
    }
    drift
}

/// The verdict name of a deviation that a live waiver accepts.
const WAIVED: &str = "waived";

/// One side of a check: verdict name, badness, rendered actual value.
type Side = (&'static str, u8, String);

fn compare(
    what: &'static str,
    old: Vec<(String, Side)>,
    new: Vec<(String, Side)>,
    out: &mut Vec<CheckChange>,
) {
    let old_map: HashMap<&str, &Side> = old.iter().map(|(id, s)| (id.as_str(), s)).collect();
    let new_ids: std::collections::HashSet<&str> = new.iter().map(|(id, _)| id.as_str()).collect();
    for (id, n) in &new {
        let o = old_map.get(id.as_str());
        if o.is_some_and(|o| o.0 == n.0) {
            continue;
        }
        out.push(CheckChange {
            id: id.clone(),
            what,
            old_verdict: o.map(|o| o.0),
            new_verdict: Some(n.0),
            old_actual: o.map(|o| o.2.clone()),
            new_actual: Some(n.2.clone()),
            is_worse: n.1 > o.map_or(0, |o| o.1),
        });
    }
    for (id, o) in &old {
        if !new_ids.contains(id.as_str()) {
            out.push(CheckChange {
                id: id.clone(),
                what,
                old_verdict: Some(o.0),
                new_verdict: None,
                old_actual: Some(o.2.clone()),
                new_actual: None,
                is_worse: false,
            });
        }
    }
}

/// Every domain check of a report, keyed by (cluster, domain, check), in report order.
fn domain_checks(r: &Report) -> Vec<((String, String, String), &DomainCheck)> {
    r.domains
        .iter()
        .flat_map(|d| {
            d.domains.iter().flat_map(move |p| {
                p.checks
                    .iter()
                    .map(move |c| ((d.cluster.clone(), p.domain.clone(), c.check.clone()), c))
            })
        })
        .collect()
}

fn messages(c: Option<&DomainCheck>) -> Vec<String> {
    c.map(|c| {
        let mut m: Vec<String> = c.findings.iter().map(|f| f.message.clone()).collect();
        m.extend(c.error.clone());
        m
    })
    .unwrap_or_default()
}

fn domain_changes(old: &Report, new: &Report) -> Vec<DomainChange> {
    let old_checks = domain_checks(old);
    let new_checks = domain_checks(new);
    let old_map: HashMap<&(String, String, String), &DomainCheck> =
        old_checks.iter().map(|(k, c)| (k, *c)).collect();
    let new_map: HashMap<&(String, String, String), &DomainCheck> =
        new_checks.iter().map(|(k, c)| (k, *c)).collect();
    let change = |key: &(String, String, String),
                  o: Option<&DomainCheck>,
                  n: Option<&DomainCheck>| {
        let (om, nm) = (messages(o), messages(n));
        let new_findings: Vec<String> = nm.iter().filter(|m| !om.contains(m)).cloned().collect();
        let resolved: Vec<String> = om.iter().filter(|m| !nm.contains(m)).cloned().collect();
        let ov = o.map(|c| probe_verdict_str(c.verdict));
        let nv = n.map(|c| probe_verdict_str(c.verdict));
        if ov == nv && new_findings.is_empty() && resolved.is_empty() {
            return None;
        }
        let rank = |c: Option<&DomainCheck>| c.map_or(0, |c| probe_verdict_rank(c.verdict));
        Some(DomainChange {
            cluster: key.0.clone(),
            domain: key.1.clone(),
            check: key.2.clone(),
            old_verdict: ov,
            new_verdict: nv,
            // Worse verdict, or new findings under the same bad verdict (+all appearing
            // in a record that already failed for something else).
            is_worse: n.is_some()
                && (rank(n) > rank(o)
                    || (rank(n) > 0 && rank(n) == rank(o) && !new_findings.is_empty())),
            new_findings,
            resolved_findings: resolved,
        })
    };
    let mut out: Vec<DomainChange> = new_checks
        .iter()
        .filter_map(|(k, n)| change(k, old_map.get(k).copied(), Some(*n)))
        .collect();
    out.extend(
        old_checks
            .iter()
            .filter(|(k, _)| !new_map.contains_key(k))
            .filter_map(|(k, o)| change(k, Some(*o), None)),
    );
    out
}

fn host_drift(old: &HostReport, new: &HostReport) -> HostDrift {
    // A deviation a live waiver accepts ranks as compliant (`waived`): waiving is not
    // new drift, and a waiver that runs out (`waived` → `non-compliant`) is.
    let controls = |h: &HostReport| -> Vec<(String, Side)> {
        h.controls
            .iter()
            .map(|c| {
                let side = match c.is_waived() {
                    true => (WAIVED, 0, c.actual.clone()),
                    false => (
                        verdict_str(c.verdict),
                        verdict_rank(c.verdict),
                        c.actual.clone(),
                    ),
                };
                (c.id.clone(), side)
            })
            .collect()
    };
    let probes = |h: &HostReport| -> Vec<(String, Side)> {
        h.probes
            .iter()
            .map(|p| {
                let side = match p.is_waived() {
                    true => (WAIVED, 0, p.actual.clone()),
                    false => (
                        probe_verdict_str(p.verdict),
                        probe_verdict_rank(p.verdict),
                        p.actual.clone(),
                    ),
                };
                (p.id.clone(), side)
            })
            .collect()
    };
    let mut checks = Vec::new();
    compare("control", controls(old), controls(new), &mut checks);
    compare("probe", probes(old), probes(new), &mut checks);

    let has = |list: &[Finding], id: &str| list.iter().any(|f| f.id == id);
    HostDrift {
        name: new.name.clone(),
        old_status: old.status,
        new_status: new.status,
        checks,
        new_findings: new
            .findings
            .iter()
            .filter(|f| !has(&old.findings, &f.id))
            .map(FindingRef::from)
            .collect(),
        resolved_findings: old
            .findings
            .iter()
            .filter(|f| !has(&new.findings, &f.id))
            .map(FindingRef::from)
            .collect(),
    }
}

/// Renders the drift as text for the terminal. Lines that got worse start with `!`.
pub fn render_diff(d: &Drift) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "drift of `{}` between {} and {}",
        d.new.playbook, d.old.started_at, d.new.started_at
    );
    if d.old.playbook != d.new.playbook || d.old.playbook_sha256 != d.new.playbook_sha256 {
        let _ = writeln!(
            out,
            "  note: the playbook changed: {} (sha256 {}) → {} (sha256 {})",
            d.old.playbook, d.old.playbook_sha256, d.new.playbook, d.new.playbook_sha256
        );
    }
    if d.is_empty() {
        out.push_str("no change\n");
        return out;
    }
    let mark = |worse: bool| if worse { "!" } else { " " };
    for h in &d.appeared {
        let _ = writeln!(
            out,
            "{} {}: new host ({})",
            mark(status_rank(h.status) > 0),
            h.name,
            h.status.as_str()
        );
    }
    for h in &d.disappeared {
        let _ = writeln!(out, "  {}: gone (was {})", h.name, h.status.as_str());
    }
    for h in &d.changed {
        if h.old_status == h.new_status {
            let _ = writeln!(
                out,
                "{} {}: {}",
                mark(h.is_worse()),
                h.name,
                h.new_status.as_str()
            );
        } else {
            let _ = writeln!(
                out,
                "{} {}: {} → {}",
                mark(h.is_worse()),
                h.name,
                h.old_status.as_str(),
                h.new_status.as_str()
            );
        }
        for c in &h.checks {
            let v = |x: Option<&str>| x.unwrap_or("(absent)").to_string();
            let line = match (&c.old_actual, &c.new_actual) {
                (Some(a), Some(b)) => format!(
                    "{} {} → {} ({a} → {b})",
                    c.id,
                    v(c.old_verdict),
                    v(c.new_verdict)
                ),
                _ => format!("{} {} → {}", c.id, v(c.old_verdict), v(c.new_verdict)),
            };
            let _ = writeln!(out, "{}   {line}", mark(c.is_worse));
        }
        for f in &h.new_findings {
            let tag = if f.blocking { " (blocking)" } else { "" };
            let _ = writeln!(out, "    + finding {}{tag}: {}", f.id, f.message);
        }
        for f in &h.resolved_findings {
            let _ = writeln!(out, "    - finding {} resolved", f.id);
        }
    }
    for c in &d.domains {
        let v = |x: Option<&str>| x.unwrap_or("(absent)").to_string();
        let _ = writeln!(
            out,
            "{} domain {} (cluster {}) {}: {} → {}",
            mark(c.is_worse),
            c.domain,
            c.cluster,
            c.check,
            v(c.old_verdict),
            v(c.new_verdict)
        );
        for f in &c.new_findings {
            let _ = writeln!(out, "    + {f}");
        }
        for f in &c.resolved_findings {
            let _ = writeln!(out, "    - resolved: {f}");
        }
    }
    let worse_hosts = d.changed.iter().filter(|h| h.is_worse()).count()
        + d.appeared
            .iter()
            .filter(|h| status_rank(h.status) > 0)
            .count();
    let worse_domains = d.domains.iter().filter(|c| c.is_worse).count();
    let domains = if d.domains.is_empty() {
        String::new()
    } else {
        format!(", {} domain check(s) changed", d.domains.len())
    };
    let _ = writeln!(
        out,
        "{} host(s) appeared, {} disappeared, {} changed{domains}; {}",
        d.appeared.len(),
        d.disappeared.len(),
        d.changed.len(),
        match (d.has_new_drift(), worse_domains) {
            (false, _) => "no new drift".to_string(),
            (true, 0) => format!("new drift on {worse_hosts} host(s) (lines marked !)"),
            (true, n) => format!(
                "new drift on {worse_hosts} host(s) and {n} domain check(s) (lines marked !)"
            ),
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use indoc::indoc;

    use super::*;
    use crate::report::model::{ProbeVerdict, Verdict};
    use crate::report::sample::{host, sample_report};

    /// A deviation that a waiver accepts in the same run it appears is not new drift; the
    /// same deviation once its waiver has expired is.
    #[test]
    fn a_waived_deviation_is_no_new_drift_until_its_waiver_expires() {
        let mut old = sample_report();
        old.hosts.truncate(1);
        assert_eq!(old.hosts[0].status, HostStatus::Compliant);
        let mut waived = old.clone();
        let c = &mut waived.hosts[0].controls[0];
        c.verdict = Verdict::NonCompliant;
        c.actual = "FALSE".into();
        c.waiver = Some(crate::report::model::WaiverRef {
            justification: "accepted".into(),
            expires: "2027-03-31".into(),
            source: "waivers.toml:2".into(),
            scope: "host mail1".into(),
            approved_by: None,
            expired: false,
        });
        let d = diff(&old, &waived);
        assert!(!d.has_new_drift(), "{}", render_diff(&d));
        assert_eq!(d.changed[0].checks[0].new_verdict, Some("waived"));
        let mut expired = waived.clone();
        expired.hosts[0].status = HostStatus::Drift;
        if let Some(w) = expired.hosts[0].controls[0].waiver.as_mut() {
            w.expired = true;
        }
        let d = diff(&waived, &expired);
        assert!(d.has_new_drift(), "{}", render_diff(&d));
        assert_eq!(d.changed[0].checks[0].old_verdict, Some("waived"));
    }

    #[test]
    fn identical_reports_have_no_drift() {
        let d = diff(&sample_report(), &sample_report());
        assert!(d.is_empty());
        assert!(!d.has_new_drift());
        assert!(render_diff(&d).ends_with("no change\n"));
    }

    /// OLD: the sample. NEW: mail1 drifted, mail2 fixed, mail5 reachable again and
    /// compliant, store1 gone, mail9 new and compliant.
    fn next_sweep() -> Report {
        let mut new = sample_report();
        new.started_at = "2026-11-28T02:00:00Z".into();
        let mail1 = &mut new.hosts[0];
        mail1.status = HostStatus::Drift;
        mail1.controls[0].verdict = Verdict::NonCompliant;
        mail1.controls[0].actual = "FALSE".into();
        let mail2 = &mut new.hosts[1];
        mail2.status = HostStatus::Compliant;
        for c in &mut mail2.controls {
            c.verdict = Verdict::Compliant;
        }
        mail2.controls[0].actual = "TRUE".into();
        mail2.probes[0].verdict = ProbeVerdict::Pass;
        mail2.findings.retain(|f| f.id != "PRE-POLICY-SPAWN-USER");
        let fixed = new.hosts[0].clone();
        let mail5 = &mut new.hosts[4];
        mail5.status = HostStatus::Compliant;
        mail5.error = None;
        mail5.controls = fixed.controls.clone();
        mail5.controls[0].verdict = Verdict::Compliant;
        mail5.controls[0].actual = "TRUE".into();
        new.hosts.retain(|h| h.name != "store1");
        new.hosts.push(host("mail9", "eu-2", HostStatus::Compliant));
        new
    }

    #[test]
    fn a_control_going_bad_is_new_drift() {
        let old = sample_report();
        let new = next_sweep();
        let d = diff(&old, &new);
        assert!(d.has_new_drift());
        assert_eq!(
            d.appeared,
            [HostPresence {
                name: "mail9".into(),
                status: HostStatus::Compliant
            }]
        );
        assert_eq!(
            d.disappeared,
            [HostPresence {
                name: "store1".into(),
                status: HostStatus::Compliant
            }]
        );
        let names: Vec<&str> = d.changed.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["mail1", "mail2", "mail5"]);
        let mail1 = &d.changed[0];
        assert!(mail1.is_worse());
        assert_eq!(mail1.checks.len(), 1);
        assert_eq!(mail1.checks[0].old_verdict, Some("compliant"));
        assert_eq!(mail1.checks[0].new_verdict, Some("non-compliant"));
        // mail5 was unreachable: its controls are new, compliant, so not worse.
        assert!(!d.changed[2].is_worse());
        assert!(d.changed[2].checks.iter().all(|c| c.old_verdict.is_none()));

        let text = render_diff(&d);
        let expected = indoc! {"
            drift of `backscatter-hardening` between 2026-11-27T02:00:00Z and 2026-11-28T02:00:00Z
              mail9: new host (compliant)
              store1: gone (was compliant)
            ! mail1: compliant → drift
            !   BS-01 compliant → non-compliant (TRUE → FALSE)
              mail2: drift → compliant
                BS-01 non-compliant → compliant (FALSE → TRUE)
                BS-02 masked → compliant ([reject_invalid_helo_hostname] → [reject_invalid_helo_hostname])
                EFF-01 fail → pass (reject_non_fqdn_recipient, permit → reject_non_fqdn_recipient, permit)
                - finding PRE-POLICY-SPAWN-USER resolved
              mail5: failed → compliant
                BS-01 (absent) → compliant
                BS-02 (absent) → compliant
            1 host(s) appeared, 1 disappeared, 3 changed; new drift on 1 host(s) (lines marked !)
        "};
        assert_eq!(text, expected);
    }

    #[test]
    fn improvements_only_are_not_new_drift() {
        let d = diff(&sample_report(), &{
            let mut n = next_sweep();
            n.hosts.retain(|h| h.name != "mail1");
            n
        });
        assert!(!d.has_new_drift());
        assert!(render_diff(&d).contains("no new drift"));
    }

    #[test]
    fn masked_to_non_compliant_changes_without_getting_worse() {
        let old = sample_report();
        let mut new = sample_report();
        new.hosts[1].controls[1].verdict = Verdict::NonCompliant;
        let d = diff(&old, &new);
        assert_eq!(d.changed.len(), 1);
        assert!(!d.has_new_drift());
        assert_eq!(d.changed[0].checks[0].id, "BS-02");
    }

    #[test]
    fn host_failing_and_new_failing_host_are_new_drift() {
        let old = sample_report();
        let mut new = sample_report();
        new.hosts[2].status = HostStatus::Failed;
        new.hosts[2].controls.clear();
        new.hosts[2].probes.clear();
        let d = diff(&old, &new);
        assert!(d.has_new_drift());
        let text = render_diff(&d);
        assert!(text.contains("! mail3: restart-pending → failed"), "{text}");
        assert!(text.contains("    BS-01 compliant → (absent)"), "{text}");

        let mut appeared = sample_report();
        appeared
            .hosts
            .push(host("mail9", "eu-2", HostStatus::Drift));
        let d = diff(&old, &appeared);
        assert!(d.has_new_drift());
        assert!(render_diff(&d).contains("! mail9: new host (drift)"));
    }

    #[test]
    fn new_blocking_finding_is_listed() {
        let mut old = sample_report();
        old.hosts[1].findings.clear();
        let d = diff(&old, &sample_report());
        let text = render_diff(&d);
        assert!(
            text.contains(
                "+ finding PRE-POLICY-SPAWN-USER (blocking): enabling zimbraMtaEnableSmtpdPolicyd"
            ),
            "{text}"
        );
        assert!(text.contains("+ finding INFO-DNSBL: no DNSBL"), "{text}");
        assert!(
            !d.has_new_drift(),
            "findings alone do not decide the exit code"
        );
    }

    #[test]
    fn domain_posture_changes_are_listed_and_worse_ones_are_drift() {
        let old = sample_report();
        let mut new = sample_report();
        // acme.example's DMARC drops to p=none; acme-shop.example's SPF is fixed.
        let good = &mut new.domains[0].domains[0].checks[2];
        good.verdict = ProbeVerdict::Fail;
        good.findings.push(crate::report::model::DomainFinding {
            severity: "low".into(),
            message: "DMARC for acme.example has `p=none`: receivers only monitor, forged mail is still delivered".into(),
        });
        let shop = &mut new.domains[0].domains[1].checks[0];
        shop.verdict = ProbeVerdict::Pass;
        shop.findings.clear();
        // The alias domain is no longer hosted.
        new.domains[0].domains.pop();
        let d = diff(&old, &new);
        assert!(d.has_new_drift());
        let text = render_diff(&d);
        let expected = indoc! {"
            drift of `backscatter-hardening` between 2026-11-27T02:00:00Z and 2026-11-27T02:00:00Z
            ! domain acme.example (cluster acme) dmarc: pass → fail
                + DMARC for acme.example has `p=none`: receivers only monitor, forged mail is still delivered
              domain acme-shop.example (cluster acme) spf: fail → pass
                - resolved: SPF for acme-shop.example ends in `+all`: any host may send as this domain
              domain acme.test (cluster acme) spf: pass → (absent)
              domain acme.test (cluster acme) dkim: fail → (absent)
                - resolved: DKIM for acme.test is not set up: no DKIMSelector/DKIMPublicKey in LDAP (create a key with `zmdkimkeyutil -a -d acme.test`)
              domain acme.test (cluster acme) dmarc: pass → (absent)
            0 host(s) appeared, 0 disappeared, 0 changed, 5 domain check(s) changed; new drift on 0 host(s) and 1 domain check(s) (lines marked !)
        "};
        assert_eq!(text, expected);
        // Only improvements: no new drift.
        let d = diff(&new, &old);
        assert!(
            d.domains
                .iter()
                .filter(|c| c.is_worse)
                .all(|c| c.domain == "acme-shop.example" || c.domain == "acme.test"),
            "{d:?}"
        );
    }

    #[test]
    fn playbook_change_is_noted() {
        let old = sample_report();
        let mut new = sample_report();
        new.playbook.sha256 = "abc".into();
        assert!(render_diff(&diff(&old, &new)).contains("note: the playbook changed"));
    }
}
