//! The validated playbook types: what the engine sees after `load` checked ids,
//! attribute names, expectations and the rollout policy. Nothing here reads a file.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where a control's attribute lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Global config (`gcf`/`mcf`): one value per cluster.
    Global,
    /// Server entry (`gs -e`/`ms`): one value per node.
    Server,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// The desired state of an attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Expectation {
    /// Single-valued: exactly this value (TRUE/FALSE, yes/no compared exactly).
    Equals(String),
    /// Multi-valued: this value is one of the values.
    Contains(String),
    /// Multi-valued: this value is not among the values.
    Absent(String),
}

/// A named guard that must hold on a node before a control may be changed there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precondition {
    /// The user that master.cf's `policy` spawn service runs as must exist on the node.
    PolicySpawnUser,
}

#[derive(Debug, Clone, Serialize)]
pub struct Control {
    pub id: String,
    pub title: String,
    /// Canonical Zimbra/Carbonio attribute name as written in the playbook.
    pub attr: String,
    pub scope: Scope,
    pub expect: Expectation,
    pub severity: Severity,
    /// A change to it needs the restart step.
    pub restart: bool,
    pub precondition: Option<Precondition>,
    /// Why it matters (the playbook's `rationale`; may be empty).
    pub rationale: String,
    /// How to fix it by hand (the playbook's `remediation`; may be empty).
    pub remediation: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum ProbeKind {
    /// `postconf -h PARAM` on the node.
    Postconf { param: String },
    /// An SMTP RCPT exchange with the node's port 25.
    Smtp {
        /// Recipient to try; `None` = an unknown address in a hosted domain.
        rcpt: Option<String>,
    },
    /// An arbitrary read-only command run as zextras.
    Command { command: String },
    /// A DNS check of every hosted domain of a cluster, looked up from the machine
    /// running the tool (reported in the report's domain section, not per host).
    Dns { check: DnsCheck },
}

/// Which domain-authentication record a `dns` probe checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DnsCheck {
    Spf,
    Dkim,
    Dmarc,
}

impl DnsCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            DnsCheck::Spf => "spf",
            DnsCheck::Dkim => "dkim",
            DnsCheck::Dmarc => "dmarc",
        }
    }
}

/// What a probe's output must satisfy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum ProbeExpect {
    /// Output (trimmed) equals this.
    Equals(String),
    /// Output contains this (for postconf: one of the `, `-separated items).
    Contains(String),
    /// Output does not contain this.
    Absent(String),
    /// SMTP reply code class for the probed recipient: e.g. "5xx" or "550".
    Reply(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub id: String,
    pub title: String,
    pub kind: ProbeKind,
    pub expect: Option<ProbeExpect>,
    pub severity: Severity,
    /// Why it matters (the playbook's `rationale`; may be empty).
    pub rationale: String,
    /// What to do when it fails (the playbook's `remediation`; may be empty).
    pub remediation: String,
}

/// A batch size: an absolute count or a percentage of the hosts in the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Amount {
    Count(usize),
    /// 0..=100
    Percent(u8),
}

/// How a changed MTA is made to run its new config (docs/carbonio.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMethod {
    /// The default: as the service user `configrewrite mta` (files), then a Postfix
    /// reload — `sudo -n HOME/common/sbin/postfix reload` on legacy nodes, root's
    /// `systemctl reload carbonio-postfix.service` on systemd nodes. Only Postfix
    /// re-reads its config; no other service stops.
    Reload,
    /// Every service of the node: `zmcontrol restart` (legacy) or `systemctl restart
    /// carbonio-mta.target` (systemd). An explicit choice: minutes of outage.
    Full,
    /// Leave it to zmconfigd; the report says so.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeFrom {
    Node,
    Orchestrator,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rollout {
    /// Batch sizes in order; the last one repeats. `[Percent(10)]` for `batch = "10%"`.
    pub batch: Vec<Amount>,
    pub per_cluster: usize,
    /// Size of the first batch (0 = no canary).
    pub canary: usize,
    #[serde(serialize_with = "crate::duration::serialize")]
    pub pause: Duration,
    pub max_failures: Amount,
    pub restart: RestartMethod,
    #[serde(serialize_with = "crate::duration::serialize")]
    pub health_timeout: Duration,
    /// The gate asks the policy service on its socket (`private/policy`) whenever
    /// master.cf runs it; `false` is the explicit opt-out (a login that cannot reach the
    /// socket), reported as such.
    pub policy_socket: bool,
    /// A node that fails its gate gets its staged server entries removed, is reloaded and
    /// gated again (`false`, or `apply --no-rollback`, keeps it as it is for inspection).
    pub rollback: bool,
    /// A recipient the MTAs accept (an existing mailbox): the gate's outside probe
    /// expects 250 for it, and `451 4.3.5` there is a broken policy service. An
    /// inventory host's `known_rcpt` var wins (each cluster hosts other domains).
    pub known_rcpt: Option<String>,
    pub probe_from: ProbeFrom,
    pub only_if_changed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Playbook {
    pub name: String,
    pub description: String,
    pub controls: Vec<Control>,
    pub probes: Vec<Probe>,
    pub rollout: Rollout,
    /// Deprecations found while loading (`file:line:col: key: …`), for the log.
    pub warnings: Vec<String>,
    /// `[fix] spawn_user = true`: apply repairs the policy spawn user (as
    /// `--fix-spawn-user` does).
    pub fix_spawn_user: bool,
    /// The file it was read from; `None` for the embedded default.
    pub source: Option<PathBuf>,
    /// Inventory `vars` keys that label every host in the reports and metrics (the
    /// playbook's `labels`, e.g. `["customer"]`).
    pub labels: Vec<String>,
    /// The accepted deviations of `--waivers` (none unless the run was given a file):
    /// carried with the playbook so that every verdict made from it sees them.
    #[serde(skip)]
    pub waivers: super::waiver::Waivers,
}
