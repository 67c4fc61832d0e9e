//! The report data model: what `report.json` holds (schema documented in
//! docs/report-schema.md; bump [`SCHEMA_VERSION`] on any incompatible change). Every
//! other output (terminal summary, later JUnit/HTML/metrics) is rendered from it.

use serde::{Deserialize, Serialize};

use crate::carbonio::platform::Platform;
/// The waiver record lives with the waivers (`playbook::waiver`), which build it; the
/// report embeds it in each result it concerns.
pub use crate::playbook::waiver::WaiverRef;

/// Version of the report.json layout.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub tool: Tool,
    /// `check`, `apply` or `plan`.
    pub command: String,
    pub playbook: PlaybookRef,
    pub inventory: InventoryRef,
    /// Who ran it: `$USER@hostname`.
    pub operator: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub limit: Option<String>,
    pub summary: Summary,
    pub exit_code: i32,
    pub hosts: Vec<HostReport>,
    /// Domain authentication posture (SPF, DKIM, DMARC), one entry per cluster that the
    /// playbook's `dns` probes were run for. Absent in reports written before it existed.
    #[serde(default)]
    pub domains: Vec<DomainReport>,
    /// apply: each cluster whose global config the run staged, and whether it was
    /// promoted. Absent in reports written before staging existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promotions: Vec<PromotionRecord>,
    /// apply `--resume`: the run directory whose journal this run continued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<String>,
    /// Every control and probe of the playbook, once, with why it matters and how to fix
    /// it (the per-host results refer to them by id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckInfo>,
    /// The inventory `vars` keys the playbook names as labels (e.g. `customer`): the
    /// reports group and label hosts by them (`HostReport::vars` holds the values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// A `--split-by group` report: the group it covers (the fleet report has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covers: Option<Covers>,
}

/// One control or probe as the playbook describes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckInfo {
    pub id: String,
    pub title: String,
    /// `control` or `probe`.
    pub kind: String,
    pub severity: String,
    /// What it reads: the attribute of a control, the probe's kind and target.
    pub reads: String,
    /// The expectation, as the per-host results write it.
    pub expected: String,
    #[serde(default)]
    pub rationale: String,
    #[serde(default)]
    pub remediation: String,
}

/// What part of the fleet a split report covers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Covers {
    /// The inventory group.
    pub group: String,
    /// Hosts in the whole run, for "12 of 1,000 hosts".
    pub fleet_hosts: usize,
}

impl Report {
    /// A host's value of each report label, in the playbook's order (`(unset)` when the
    /// host's vars lack it).
    pub fn host_labels<'a>(&'a self, host: &'a HostReport) -> Vec<(&'a str, &'a str)> {
        self.labels
            .iter()
            .map(|k| {
                (
                    k.as_str(),
                    host.vars.get(k).map(String::as_str).unwrap_or("(unset)"),
                )
            })
            .collect()
    }

    /// Every waiver the run applied: host, control or probe id, waiver.
    pub fn waivers(&self) -> impl Iterator<Item = (&HostReport, &str, &WaiverRef)> {
        self.hosts
            .iter()
            .flat_map(|h| h.waivers().map(move |(id, w)| (h, id, w)))
    }

    /// The playbook's description of a control or probe, by id.
    pub fn check_info(&self, id: &str) -> Option<&CheckInfo> {
        self.checks.iter().find(|c| c.id == id)
    }
}

/// Promotion of one cluster: the global config written (`mcf`) and the temporary server
/// entries removed, in one batch, once every MTA LDAP lists passed its gate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromotionRecord {
    pub cluster: String,
    /// `promoted`, `promotion-held`, `not-promoted` (aborted or interrupted) or
    /// `promotion-failed`.
    pub state: String,
    pub detail: String,
    /// The cluster's MTAs as LDAP lists them (`zmprov -l gas mta`).
    pub mtas: Vec<String>,
    /// The MTAs (or inventory hosts) that hold the promotion, each with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_by: Vec<HeldBy>,
    /// The host the promotion batch ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ran_on: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<CommandRecord>,
}

/// One MTA that keeps a cluster from being promoted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeldBy {
    /// The Carbonio server name (as LDAP lists it), when known.
    pub server: Option<String>,
    /// The inventory host, when the run has one for it.
    pub host: Option<String>,
    pub reason: String,
}

impl HeldBy {
    /// Who holds it, in one word: the inventory host, else the server LDAP lists.
    pub fn name(&self) -> &str {
        self.host
            .as_deref()
            .or(self.server.as_deref())
            .unwrap_or("the cluster")
    }
}

/// One staged value on a host's server entry (see `engine::stage`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StagedRecord {
    pub control: String,
    pub attr: String,
    /// `temporary`, `server list extended` or `server override replaced`.
    pub kind: String,
    pub before: String,
    pub staged: String,
    /// `staged` (this run wrote it), `found` (an earlier run did), `rolled back`,
    /// `promoted` (removed: the global config holds it now), `kept` (a permanent edit).
    pub state: String,
}

/// What the rollback of a node that failed its gate did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackRecord {
    /// Entries restored, reloaded, and the gate passed on the old values.
    pub ok: bool,
    pub detail: String,
    pub restart: Option<RestartRecord>,
    pub gate: Option<GateRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaybookRef {
    pub name: String,
    pub description: String,
    /// The file, or `(embedded)` for the built-in default.
    pub source: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InventoryRef {
    pub files: Vec<String>,
    /// SHA-256 over the inventory files' contents in merge order.
    pub sha256: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    pub hosts: usize,
    pub compliant: usize,
    pub drift: usize,
    pub restart_pending: usize,
    pub failed: usize,
    pub not_attempted: usize,
    /// Deviations (control or probe results) a live waiver accepts (`--waivers`); their
    /// hosts count as compliant when nothing else is off.
    #[serde(default)]
    pub waived: usize,
    /// Deviations whose waiver had expired before the run: they count again.
    #[serde(default)]
    pub waivers_expired: usize,
}

impl Summary {
    /// Counts hosts by status: the `summary` of a report (check, apply and merge all use it).
    pub fn of(hosts: &[HostReport]) -> Summary {
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
            for (_, w) in host.waivers() {
                match w.is_live() {
                    true => summary.waived += 1,
                    false => summary.waivers_expired += 1,
                }
            }
        }
        summary
    }
}

/// A host's overall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostStatus {
    /// Could not be audited (connect, auth, host key, command, timeout).
    Failed,
    /// At least one control or probe off.
    Drift,
    /// LDAP compliant, effective Postfix config not yet (changed, never restarted).
    RestartPending,
    Compliant,
    /// Not started (rollout aborted or interrupted before it).
    NotAttempted,
}

impl HostStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Failed => "failed",
            HostStatus::Drift => "drift",
            HostStatus::RestartPending => "restart-pending",
            HostStatus::Compliant => "compliant",
            HostStatus::NotAttempted => "not-attempted",
        }
    }
}

/// Why a host could not be audited or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    Unreachable,
    Auth,
    Hostkey,
    Command,
    Timeout,
    Precondition,
    /// The run was interrupted (Ctrl-C, SIGTERM, SIGHUP) before this host was done.
    Interrupted,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Auth => "auth",
            ErrorKind::Hostkey => "hostkey",
            ErrorKind::Command => "command",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Precondition => "precondition",
            ErrorKind::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostError {
    pub kind: ErrorKind,
    pub message: String,
    /// Host-key mismatch: the fingerprints known_hosts expects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_fingerprints: Vec<String>,
    /// Host-key mismatch or unknown key: the fingerprint the server offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_fingerprint: Option<String>,
}

impl HostError {
    /// An error without host-key fingerprints (anything but a host-key problem).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> HostError {
        HostError {
            kind,
            message: message.into(),
            expected_fingerprints: Vec::new(),
            offered_fingerprint: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Compliant,
    NonCompliant,
    /// The global value is right but this server's own entry overrides it.
    Masked,
    /// The control does not concern this node (not an MTA).
    NotApplicable,
    Error,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlResult {
    pub id: String,
    pub title: String,
    pub attr: String,
    pub scope: String,
    pub severity: String,
    /// `= TRUE`, `contains X`, `absent X`.
    pub expected: String,
    /// The effective value on this node, rendered (`(unset)`, `TRUE`, `[a, b]`).
    pub actual: String,
    pub global_values: Vec<String>,
    /// Present when this server's entry sets the attribute itself.
    pub server_values: Option<Vec<String>>,
    pub verdict: Verdict,
    pub evidence: String,
    /// apply: the value before the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// apply: the value read back after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(default)]
    pub changed: bool,
    /// The waiver (`--waivers`) that names this deviation on this host, live or expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiver: Option<WaiverRef>,
}

impl ControlResult {
    /// A deviation a live waiver accepts: it neither makes the host drift nor is changed.
    pub fn is_waived(&self) -> bool {
        self.waiver.as_ref().is_some_and(WaiverRef::is_live)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeVerdict {
    Pass,
    Fail,
    NotApplicable,
    Error,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeResult {
    pub id: String,
    pub title: String,
    pub kind: String,
    pub expected: String,
    pub actual: String,
    pub verdict: ProbeVerdict,
    pub evidence: String,
    /// The waiver (`--waivers`) that names this failure on this host, live or expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiver: Option<WaiverRef>,
}

impl ProbeResult {
    /// A failure a live waiver accepts: it does not make the host drift.
    pub fn is_waived(&self) -> bool {
        self.waiver.as_ref().is_some_and(WaiverRef::is_live)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    pub id: String,
    pub severity: String,
    /// A blocking finding stops the change it guards on this node (and, for a global
    /// control, in its cluster).
    pub blocking: bool,
    pub message: String,
    pub evidence: String,
    pub hint: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub connect_ms: Option<u64>,
    pub gather_ms: Option<u64>,
    pub total_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostReport {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub cluster: String,
    pub groups: Vec<String>,
    /// Declared in the inventory, or discovered from zimbraServiceEnabled.
    pub roles: Vec<String>,
    pub status: HostStatus,
    pub platform: Option<Platform>,
    /// Carbonio or Zimbra (the inventory's, or detected from the service user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavour: Option<crate::flavour::Flavour>,
    pub version: Option<String>,
    /// The Carbonio server name (`zmhostname`).
    pub carbonio_hostname: Option<String>,
    pub is_mta: Option<bool>,
    pub error: Option<HostError>,
    pub controls: Vec<ControlResult>,
    pub probes: Vec<ProbeResult>,
    pub findings: Vec<Finding>,
    pub timings: Timings,
    /// MTAs: whether the running Postfix master has loaded the master.cf on disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<crate::carbonio::running::Running>,
    /// What apply did on this host (absent for check and plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply: Option<HostApply>,
    /// The host's merged inventory `vars` (free-form strings: customer, contract, …).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub vars: std::collections::BTreeMap<String, String>,
}

impl HostReport {
    /// Each control or probe result that a waiver names (live or expired), by id.
    pub fn waivers(&self) -> impl Iterator<Item = (&str, &WaiverRef)> {
        self.controls
            .iter()
            .filter_map(|c| Some((c.id.as_str(), c.waiver.as_ref()?)))
            .chain(
                self.probes
                    .iter()
                    .filter_map(|p| Some((p.id.as_str(), p.waiver.as_ref()?))),
            )
    }

    /// Adds `f` unless the host already carries a finding with its id (a cluster-wide
    /// finding is attributed to every node once).
    pub fn add_finding(&mut self, f: Finding) {
        if !self.findings.iter().any(|x| x.id == f.id) {
            self.findings.push(f);
        }
    }
}

/// One remote command apply ran, exactly as sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandRecord {
    /// What it was for: `global changes for cluster X`, `restart`, …
    pub purpose: String,
    /// The command line as sent over SSH (after quoting and the become wrapper).
    pub command: String,
    /// Exit status, or `signal NAME`, or `unknown`.
    pub exit: String,
    /// `ERROR:` lines and other problems it printed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestartRecord {
    /// `reload: … then …`, `zmcontrol restart`, `systemctl restart carbonio-mta.target`,
    /// or `none (…)`.
    pub method: String,
    pub started_at: String,
    pub finished_at: String,
    pub ok: bool,
    /// The last lines of its output.
    pub output: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateRecord {
    pub passed: bool,
    /// When the gate's verdict was reached (RFC 3339 UTC).
    #[serde(default)]
    pub finished_at: String,
    pub attempts: u32,
    /// Each check with its last result (`services`, `postconf`, `policy`,
    /// `policy-socket`, `mail-log`, `smtp`).
    pub checks: Vec<GateCheck>,
    /// Where the SMTP probe came from.
    pub vantage: String,
    /// The SMTP dialogue of the last attempt.
    pub smtp_transcript: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateCheck {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The apply side of a host's report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostApply {
    pub commands: Vec<CommandRecord>,
    /// Rollout batch number (1 = canary), when the host was scheduled to restart.
    pub batch: Option<usize>,
    /// `restarted`, `failed: …`, `unreachable`, `not-attempted (…)`,
    /// `skipped (unchanged)`, or `not needed`.
    pub rollout: String,
    pub restart: Option<RestartRecord>,
    pub gate: Option<GateRecord>,
    /// Status before apply.
    pub status_before: Option<HostStatus>,
    /// When the proof gather that produced the controls' `after` values finished (RFC
    /// 3339 UTC): right after the host's own health gate, not at the end of the run.
    /// Unset when the host was not re-read (nothing was done to it, or the proof was
    /// abandoned).
    #[serde(default)]
    pub verified_at: Option<String>,
    /// Values staged on this host's server entry (see `Report::promotions`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub staged: Vec<StagedRecord>,
    /// The rollback after a failed gate (`--no-rollback` leaves it unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackRecord>,
}

/// The hosted domains of one cluster and their SPF/DKIM/DMARC posture.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DomainReport {
    pub cluster: String,
    /// The node whose LDAP was read (`gad`, then one `zmprov -l` batch of `gd`).
    pub read_on: Option<String>,
    /// The DNS servers asked, e.g. `127.0.0.1:5353`.
    pub resolver: String,
    /// Why the cluster's domains could not be read at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub domains: Vec<DomainPosture>,
}

/// One hosted domain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DomainPosture {
    pub domain: String,
    /// `zimbraDomainType: alias`.
    pub alias: bool,
    pub checks: Vec<DomainCheck>,
}

/// One `dns` probe on one domain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DomainCheck {
    /// The probe id.
    pub id: String,
    pub title: String,
    /// `spf`, `dkim` or `dmarc`.
    pub check: String,
    /// The probe's severity.
    pub severity: String,
    /// `pass` (no finding), `fail` (findings), `error` (a lookup failed: never a pass).
    pub verdict: ProbeVerdict,
    #[serde(default)]
    pub findings: Vec<DomainFinding>,
    /// Facts that are not problems (`p=reject`, `4 of 10 DNS lookups`, the selector…).
    #[serde(default)]
    pub notes: Vec<String>,
    /// The records seen, `name: text`.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// Why the check could not decide (the failed lookup and its cause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A problem with a domain's posture, in exact words.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DomainFinding {
    pub severity: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample::sample_report;

    #[test]
    fn summary_counts_every_status() {
        let s = Summary::of(&sample_report().hosts);
        assert_eq!(s, sample_report().summary);
        assert_eq!(Summary::of(&[]), Summary::default());
    }
}
