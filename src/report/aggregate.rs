//! Fleet-level views of a report, for readers of 1,000 hosts: hosts grouped by identical
//! state ("BS-01 FALSE, EFF-01 fail on 14 hosts of cluster acme"), the findings ranked by
//! how bad and how widespread they are, and a check × cluster (or × label value, e.g.
//! customer) matrix of counts. Pure functions of a [`Report`]; the renderers decide how
//! to show them.

use std::collections::BTreeMap;

use super::labels::{STATUS_ORDER, probe_verdict_rank, probe_verdict_str, verdict_rank};
use super::model::{HostReport, HostStatus, ProbeVerdict, Report, Verdict};

/// One way a host is off: a control or probe that is not as required, a finding, or the
/// error that kept it from being audited.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The control, probe or finding id; the error kind for [`ProblemKind::Error`].
    pub id: String,
    /// What the hosts share: the control's actual value (or `masked`, `error`), the
    /// probe's verdict; empty for findings and errors.
    pub state: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProblemKind {
    /// Could not be audited: nothing else is known.
    Error,
    Control,
    Probe,
    Finding,
}

/// Longest value a state label shows before it is cut with an ellipsis (restriction
/// lists run to hundreds of characters; the full value is in the rows below).
const STATE_LABEL_MAX: usize = 40;

impl Problem {
    /// `BS-01 FALSE`, `EFF-01 fail`, `PRE-POLICY-SPAWN-USER`, `unreachable`.
    pub fn label(&self) -> String {
        if self.state.is_empty() {
            return self.id.clone();
        }
        let state: String = if self.state.chars().count() > STATE_LABEL_MAX {
            let cut: String = self.state.chars().take(STATE_LABEL_MAX - 1).collect();
            format!("{cut}…")
        } else {
            self.state.clone()
        };
        format!("{} {state}", self.id)
    }
}

/// Appended to the state of a deviation a live waiver accepts (`BS-03 no (waived)`): it
/// still tells hosts apart, but it is nothing to fix.
const WAIVED_MARK: &str = " (waived)";

impl Problem {
    /// A deviation that a live waiver accepts.
    pub fn waived(&self) -> bool {
        self.state.ends_with(WAIVED_MARK)
    }
}

/// Everything that is off on `host`, sorted: hosts with equal lists are in the same state.
pub fn problems(host: &HostReport) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(e) = &host.error {
        out.push(Problem {
            kind: ProblemKind::Error,
            id: e.kind.as_str().to_string(),
            state: String::new(),
        });
    }
    for c in &host.controls {
        if verdict_rank(c.verdict) == 0 {
            continue;
        }
        let mut state = match c.verdict {
            Verdict::Masked => format!("{} (masked by this server)", c.actual),
            Verdict::Error => "error".to_string(),
            _ => c.actual.clone(),
        };
        if c.is_waived() {
            state.push_str(WAIVED_MARK);
        }
        out.push(Problem {
            kind: ProblemKind::Control,
            id: c.id.clone(),
            state,
        });
    }
    for p in &host.probes {
        if probe_verdict_rank(p.verdict) == 0 {
            continue;
        }
        let mut state = probe_verdict_str(p.verdict).to_string();
        if p.is_waived() {
            state.push_str(WAIVED_MARK);
        }
        out.push(Problem {
            kind: ProblemKind::Probe,
            id: p.id.clone(),
            state,
        });
    }
    for f in &host.findings {
        out.push(Problem {
            kind: ProblemKind::Finding,
            id: f.id.clone(),
            state: String::new(),
        });
    }
    out.sort();
    out.dedup();
    out
}

/// Hosts in one identical state: same status, same problems.
#[derive(Debug)]
pub struct StateGroup<'a> {
    pub status: HostStatus,
    pub problems: Vec<Problem>,
    /// The hosts per cluster, clusters in name order, hosts in report order.
    pub clusters: BTreeMap<&'a str, Vec<&'a HostReport>>,
}

impl StateGroup<'_> {
    pub fn host_count(&self) -> usize {
        self.clusters.values().map(Vec::len).sum()
    }

    /// A host of the group, whose rows stand for all of them.
    pub fn example(&self) -> &HostReport {
        self.clusters
            .values()
            .flatten()
            .next()
            .expect("a group has at least one host")
    }

    /// `BS-01 FALSE · EFF-01 fail on 14 hosts of cluster acme` (at most `max_problems`
    /// named, then `+N more`).
    pub fn title(&self, max_problems: usize) -> String {
        let what = if self.problems.is_empty() {
            match self.status {
                HostStatus::Compliant => "compliant".to_string(),
                HostStatus::NotAttempted => "not attempted".to_string(),
                HostStatus::RestartPending => "restart pending".to_string(),
                other => other.as_str().to_string(),
            }
        } else {
            let mut named: Vec<String> = self
                .problems
                .iter()
                .take(max_problems)
                .map(Problem::label)
                .collect();
            if self.problems.len() > max_problems {
                named.push(format!("+{} more", self.problems.len() - max_problems));
            }
            named.join(" · ")
        };
        format!("{what} on {}", self.where_text())
    }

    /// `1 host of cluster acme`, `14 hosts of cluster acme`, `40 hosts in 12 clusters`.
    pub fn where_text(&self) -> String {
        let n = self.host_count();
        let hosts = if n == 1 { "host" } else { "hosts" };
        match self.clusters.len() {
            1 => format!(
                "{n} {hosts} of cluster {}",
                self.clusters.keys().next().expect("one cluster")
            ),
            k => format!("{n} {hosts} in {k} clusters"),
        }
    }
}

/// Hosts grouped by identical state, worst status first, then the largest groups.
pub fn state_groups(report: &Report) -> Vec<StateGroup<'_>> {
    let mut groups: BTreeMap<(usize, Vec<Problem>), StateGroup<'_>> = BTreeMap::new();
    for host in &report.hosts {
        let order = STATUS_ORDER
            .iter()
            .position(|s| *s == host.status)
            .unwrap_or(STATUS_ORDER.len());
        let problems = problems(host);
        groups
            .entry((order, problems.clone()))
            .or_insert_with(|| StateGroup {
                status: host.status,
                problems,
                clusters: BTreeMap::new(),
            })
            .clusters
            .entry(host.cluster.as_str())
            .or_default()
            .push(host);
    }
    let mut out: Vec<StateGroup<'_>> = groups.into_values().collect();
    // Stable: within a status, larger groups first, then the problem lists in order.
    out.sort_by_key(|g| {
        (
            STATUS_ORDER
                .iter()
                .position(|s| *s == g.status)
                .unwrap_or(STATUS_ORDER.len()),
            std::cmp::Reverse(g.host_count()),
        )
    });
    out
}

/// One problem across the fleet.
#[derive(Debug)]
pub struct Widespread<'a> {
    pub problem: Problem,
    pub severity: String,
    /// A finding that blocks a change.
    pub blocking: bool,
    /// What it is, in words, from the first host that has it.
    pub message: String,
    /// How to fix it: the playbook's remediation, a finding's hint.
    pub fix: String,
    pub hosts: Vec<&'a HostReport>,
}

impl Widespread<'_> {
    pub fn cluster_count(&self) -> usize {
        let mut c: Vec<&str> = self.hosts.iter().map(|h| h.cluster.as_str()).collect();
        c.sort_unstable();
        c.dedup();
        c.len()
    }
}

/// 0 for the worst severity; unknown names last.
pub fn severity_rank(severity: &str) -> u8 {
    match severity {
        "critical" => 0,
        "high" => 1,
        "medium" => 2,
        "low" => 3,
        _ => 4,
    }
}

/// Every distinct problem with the hosts that have it: blocking findings first, then by
/// severity, then by how many hosts.
pub fn widespread(report: &Report) -> Vec<Widespread<'_>> {
    let mut by: BTreeMap<Problem, Widespread<'_>> = BTreeMap::new();
    for host in &report.hosts {
        // Accepted deviations are nothing to fix.
        for problem in problems(host).into_iter().filter(|p| !p.waived()) {
            let entry = by.entry(problem.clone()).or_insert_with(|| {
                let (severity, blocking, message, fix) = describe(report, host, &problem);
                Widespread {
                    problem,
                    severity,
                    blocking,
                    message,
                    fix,
                    hosts: Vec::new(),
                }
            });
            entry.hosts.push(host);
        }
    }
    let mut out: Vec<Widespread<'_>> = by.into_values().collect();
    out.sort_by_key(|w| {
        (
            !w.blocking,
            severity_rank(&w.severity),
            std::cmp::Reverse(w.hosts.len()),
        )
    });
    out
}

/// Severity, blocking, message and fix of `problem` as `host` shows it.
fn describe(
    report: &Report,
    host: &HostReport,
    problem: &Problem,
) -> (String, bool, String, String) {
    let remediation = || {
        report
            .check_info(&problem.id)
            .map(|c| c.remediation.clone())
            .unwrap_or_default()
    };
    match problem.kind {
        ProblemKind::Error => {
            let message = host
                .error
                .as_ref()
                .map(|e| e.message.clone())
                .unwrap_or_default();
            (
                "high".to_string(),
                false,
                message,
                error_fix(&problem.id).to_string(),
            )
        }
        ProblemKind::Control => {
            let c = host.controls.iter().find(|c| c.id == problem.id);
            let message = c
                .map(|c| {
                    format!(
                        "{}: {} is {}, expected {}",
                        c.title, c.attr, c.actual, c.expected
                    )
                })
                .unwrap_or_default();
            let severity = c.map(|c| c.severity.clone()).unwrap_or_default();
            (severity, false, message, remediation())
        }
        ProblemKind::Probe => {
            let p = host.probes.iter().find(|p| p.id == problem.id);
            let message = p
                .map(|p| {
                    let verdict = match p.verdict {
                        ProbeVerdict::Error => "could not be evaluated",
                        _ => "failed",
                    };
                    format!(
                        "{} {verdict}: {} (expected {})",
                        p.title, p.actual, p.expected
                    )
                })
                .unwrap_or_default();
            let severity = report
                .check_info(&problem.id)
                .map(|c| c.severity.clone())
                .unwrap_or_else(|| "medium".to_string());
            (severity, false, message, remediation())
        }
        ProblemKind::Finding => {
            let f = host.findings.iter().find(|f| f.id == problem.id);
            match f {
                Some(f) => (
                    f.severity.clone(),
                    f.blocking,
                    f.message.clone(),
                    f.hint.clone(),
                ),
                None => Default::default(),
            }
        }
    }
}

/// What to do about a host that could not be audited, by error kind.
fn error_fix(kind: &str) -> &'static str {
    match kind {
        "unreachable" => {
            "Check that the address and port are right and that the host is up and reachable from here (firewall, bastion)."
        }
        "auth" => {
            "Check the login user and the key or password for it (`carbonio-fleet secret check`)."
        }
        "hostkey" => {
            "Verify the new key out of band; if it is legitimate, replace the known_hosts line the error names (`ssh-keygen -R HOST`), then run again."
        }
        "timeout" => {
            "The host answered too slowly: check its load, or raise `command_timeout` / `connect_timeout` in the inventory."
        }
        "command" => {
            "A remote command failed: its output is in the host's error and in report.json."
        }
        "precondition" => {
            "A precondition of the change does not hold on this host: see its findings."
        }
        "interrupted" => "The run was interrupted before this host was done: run again.",
        _ => "",
    }
}

/// One cell of the matrix: hosts where the check is off, out of hosts where it applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cell {
    pub off: usize,
    pub applicable: usize,
}

/// A row of the matrix: one cluster (or one label value).
#[derive(Debug)]
pub struct MatrixRow {
    pub key: String,
    pub hosts: usize,
    /// Hosts that could not be audited (no check result at all).
    pub failed: usize,
    pub cells: Vec<Cell>,
}

impl MatrixRow {
    pub fn all_good(&self) -> bool {
        self.failed == 0 && self.cells.iter().all(|c| c.off == 0)
    }
}

/// Check × group matrix: the columns are the check ids in playbook order (controls then
/// probes that have results), the rows are clusters — or, when the playbook names labels,
/// the values of the first one the hosts have (customers) — with a fleet-wide row first.
pub struct Matrix {
    /// What a row is: `cluster` or the label name.
    pub by: String,
    pub columns: Vec<String>,
    pub total: MatrixRow,
    pub rows: Vec<MatrixRow>,
}

pub fn matrix(report: &Report) -> Matrix {
    let mut columns: Vec<String> = Vec::new();
    let seen = |id: &str| {
        report
            .hosts
            .iter()
            .any(|h| h.controls.iter().any(|c| c.id == id) || h.probes.iter().any(|p| p.id == id))
    };
    for c in &report.checks {
        if seen(&c.id) {
            columns.push(c.id.clone());
        }
    }
    // Results whose check the catalogue lacks (reports older than it): keep them.
    for h in &report.hosts {
        for id in h
            .controls
            .iter()
            .map(|c| &c.id)
            .chain(h.probes.iter().map(|p| &p.id))
        {
            if !columns.contains(id) {
                columns.push(id.clone());
            }
        }
    }
    // The first label some host has a value for: an inventory without `customer` vars
    // gets the cluster matrix, not one row of "(unset)".
    let by = report
        .labels
        .iter()
        .find(|k| report.hosts.iter().any(|h| h.vars.contains_key(*k)))
        .cloned();
    let key_of = |h: &HostReport| -> String {
        match &by {
            Some(label) => h
                .vars
                .get(label)
                .cloned()
                .unwrap_or_else(|| "(unset)".to_string()),
            None => h.cluster.clone(),
        }
    };
    let new_row = |key: String| MatrixRow {
        key,
        hosts: 0,
        failed: 0,
        cells: vec![Cell::default(); columns.len()],
    };
    let mut total = new_row("all hosts".to_string());
    let mut rows: BTreeMap<String, MatrixRow> = BTreeMap::new();
    for h in &report.hosts {
        let key = key_of(h);
        let row = rows.entry(key.clone()).or_insert_with(|| new_row(key));
        for r in [&mut total, row] {
            r.hosts += 1;
            if h.status == HostStatus::Failed {
                r.failed += 1;
            }
            for (i, id) in columns.iter().enumerate() {
                // A deviation a live waiver accepts is not off: it counts as the exit
                // code counts it.
                let rank = h
                    .controls
                    .iter()
                    .find(|c| &c.id == id)
                    .map(|c| {
                        let rank = if c.is_waived() {
                            0
                        } else {
                            verdict_rank(c.verdict)
                        };
                        (c.verdict != Verdict::NotApplicable, rank)
                    })
                    .or_else(|| {
                        h.probes.iter().find(|p| &p.id == id).map(|p| {
                            let rank = if p.is_waived() {
                                0
                            } else {
                                probe_verdict_rank(p.verdict)
                            };
                            (p.verdict != ProbeVerdict::NotApplicable, rank)
                        })
                    });
                if let Some((applicable, rank)) = rank {
                    if applicable {
                        r.cells[i].applicable += 1;
                    }
                    if rank > 0 {
                        r.cells[i].off += 1;
                    }
                }
            }
        }
    }
    let mut rows: Vec<MatrixRow> = rows.into_values().collect();
    // Rows with the most problems first: what needs doing is at the top.
    rows.sort_by_key(|r| {
        let off: usize = r.cells.iter().map(|c| c.off).sum::<usize>() + r.failed;
        std::cmp::Reverse(off)
    });
    Matrix {
        by: by.unwrap_or_else(|| "cluster".to_string()),
        columns,
        total,
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::{ErrorKind, HostError};
    use crate::report::sample::{control, host, probe, sample_report};

    /// `n` drifting hosts in `cluster` with BS-01 at `actual`.
    fn drifting(prefix: &str, cluster: &str, n: usize, actual: &str) -> Vec<HostReport> {
        (1..=n)
            .map(|i| {
                let mut h = host(&format!("{prefix}{i}"), cluster, HostStatus::Drift);
                h.controls = vec![
                    control("BS-01", Verdict::NonCompliant, "= TRUE", actual),
                    control("BS-03", Verdict::Compliant, "= TRUE", "TRUE"),
                ];
                h.probes = vec![probe("EFF-01", ProbeVerdict::Fail, "permit")];
                h
            })
            .collect()
    }

    fn report_of(hosts: Vec<HostReport>) -> Report {
        let mut r = sample_report();
        r.hosts = hosts;
        r
    }

    #[test]
    fn identical_states_group_across_hosts_and_name_their_cluster() {
        let mut hosts = drifting("a", "acme", 14, "FALSE");
        hosts.extend(drifting("b", "beta", 3, "FALSE"));
        hosts.extend(drifting("c", "beta", 2, "(unset)"));
        let r = report_of(hosts);
        let groups = state_groups(&r);
        let titles: Vec<String> = groups.iter().map(|g| g.title(3)).collect();
        assert_eq!(
            titles,
            [
                "BS-01 FALSE · EFF-01 fail on 17 hosts in 2 clusters",
                "BS-01 (unset) · EFF-01 fail on 2 hosts of cluster beta",
            ]
        );
        assert_eq!(groups[0].clusters["acme"].len(), 14);
        assert_eq!(groups[0].clusters["beta"].len(), 3);
    }

    #[test]
    fn statuses_come_worst_first_and_failed_hosts_group_by_error_kind() {
        let mut hosts = drifting("a", "acme", 1, "FALSE");
        for (i, kind) in [
            ErrorKind::Unreachable,
            ErrorKind::Unreachable,
            ErrorKind::Auth,
        ]
        .into_iter()
        .enumerate()
        {
            let mut h = host(&format!("f{i}"), "acme", HostStatus::Failed);
            h.error = Some(HostError::new(kind, format!("host f{i}: it failed")));
            hosts.push(h);
        }
        hosts.push(host("ok1", "acme", HostStatus::Compliant));
        let r = report_of(hosts);
        let titles: Vec<String> = state_groups(&r).iter().map(|g| g.title(3)).collect();
        assert_eq!(
            titles,
            [
                "unreachable on 2 hosts of cluster acme",
                "auth on 1 host of cluster acme",
                "BS-01 FALSE · EFF-01 fail on 1 host of cluster acme",
                "compliant on 1 host of cluster acme",
            ]
        );
    }

    #[test]
    fn long_values_are_cut_in_labels_and_extra_problems_counted() {
        let p = Problem {
            kind: ProblemKind::Control,
            id: "BS-04".into(),
            state: "[reject_non_fqdn_recipient, reject_unknown_recipient_domain, permit]".into(),
        };
        assert_eq!(p.label(), "BS-04 [reject_non_fqdn_recipient, reject_unkn…");
        let mut hosts = drifting("a", "acme", 1, "FALSE");
        hosts[0].controls[1].verdict = Verdict::Masked;
        let r = report_of(hosts);
        assert_eq!(
            state_groups(&r)[0].title(1),
            "BS-01 FALSE · +2 more on 1 host of cluster acme"
        );
    }

    #[test]
    fn a_waived_deviation_is_its_own_state_but_nothing_to_fix() {
        let mut hosts = drifting("a", "acme", 2, "FALSE");
        for h in &mut hosts {
            h.status = HostStatus::Compliant;
            h.probes.clear();
        }
        hosts[0].controls[0].waiver = Some(crate::report::model::WaiverRef {
            justification: "CRM relay".into(),
            expires: "2999-12-31".into(),
            source: "w.toml:1".into(),
            scope: "cluster acme".into(),
            approved_by: None,
            expired: false,
        });
        let mut expired = hosts[0].controls[0].waiver.clone().unwrap();
        expired.expired = true;
        hosts[1].controls[0].waiver = Some(expired);
        hosts[1].status = HostStatus::Drift;
        let r = report_of(hosts);
        let titles: Vec<String> = state_groups(&r).iter().map(|g| g.title(3)).collect();
        assert_eq!(
            titles,
            [
                "BS-01 FALSE on 1 host of cluster acme",
                "BS-01 FALSE (waived) on 1 host of cluster acme"
            ]
        );
        // Only the expired one is to fix, and only it is off in the matrix.
        let w = widespread(&r);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].hosts[0].name, "a2");
        assert_eq!(
            matrix(&r).total.cells[0],
            Cell {
                off: 1,
                applicable: 2
            }
        );
    }

    #[test]
    fn widespread_puts_blocking_first_then_severity_then_count() {
        let mut hosts = drifting("a", "acme", 5, "FALSE");
        hosts[0].findings.push(crate::report::model::Finding {
            id: "PRE-POLICY-SPAWN-USER".into(),
            severity: "critical".into(),
            blocking: true,
            message: "user zimbra does not exist".into(),
            evidence: String::new(),
            hint: "set user=zextras".into(),
        });
        let r = report_of(hosts);
        let w = widespread(&r);
        let ids: Vec<(&str, usize)> = w
            .iter()
            .map(|w| (w.problem.id.as_str(), w.hosts.len()))
            .collect();
        assert_eq!(
            ids,
            [("PRE-POLICY-SPAWN-USER", 1), ("BS-01", 5), ("EFF-01", 5)]
        );
        assert_eq!(w[0].fix, "set user=zextras");
        // The control's fix is the playbook's remediation.
        assert_eq!(w[1].fix, "zmprov mcf zimbraMtaEnableSmtpdPolicyd TRUE");
        assert_eq!(
            w[1].message,
            "Postfix policy daemon enabled: zimbraMtaEnableSmtpdPolicyd is FALSE, expected = TRUE"
        );
    }

    #[test]
    fn matrix_counts_off_over_applicable_per_cluster_or_label() {
        let mut hosts = drifting("a", "acme", 3, "FALSE");
        let mut ok = host("b1", "beta", HostStatus::Compliant);
        ok.controls = vec![control("BS-01", Verdict::Compliant, "= TRUE", "TRUE")];
        ok.probes = vec![probe("EFF-01", ProbeVerdict::NotApplicable, "(not an MTA)")];
        hosts.push(ok);
        let mut dead = host("b2", "beta", HostStatus::Failed);
        dead.error = Some(HostError::new(ErrorKind::Auth, "no"));
        hosts.push(dead);
        let mut r = report_of(hosts);
        r.labels.clear();
        let m = matrix(&r);
        assert_eq!(m.by, "cluster");
        assert_eq!(m.columns, ["BS-01", "BS-03", "EFF-01"]);
        assert_eq!(m.total.hosts, 5);
        assert_eq!(m.total.failed, 1);
        assert_eq!(
            m.total.cells[0],
            Cell {
                off: 3,
                applicable: 4
            }
        );
        assert_eq!(
            m.total.cells[2],
            Cell {
                off: 3,
                applicable: 3
            }
        );
        assert_eq!(m.rows[0].key, "acme", "the worst row first");
        assert_eq!(m.rows[1].key, "beta");
        assert!(!m.rows[1].all_good(), "a failed host is not good");

        // A label no host has a value for changes nothing.
        r.labels = vec!["site".into()];
        assert_eq!(matrix(&r).by, "cluster");
        // With a label, rows are its values.
        r.labels = vec!["customer".into()];
        r.hosts[4].vars.insert("customer".into(), "Beta Ltd".into());
        let m = matrix(&r);
        assert_eq!(m.by, "customer");
        let keys: Vec<&str> = m.rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["ACME Corp", "Beta Ltd"]);
        assert_eq!(m.rows[0].hosts, 4);
    }
}
