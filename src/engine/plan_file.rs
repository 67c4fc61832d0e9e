//! The plan file (`plan --out FILE`, `apply --plan FILE`): what a plan decided and the
//! gathered state it decided from, so that apply carries out exactly the reviewed plan
//! or refuses.
//!
//! The file holds the playbook's and inventory's SHA-256 (apply refuses when either
//! changed), the selection (`--limit`, `--shard`, `--controls`), per host the *basis*
//! (every gathered value a decision of plan or apply depends on: the control attributes'
//! global and server-entry values, the server name, MTA role, platform and flavour,
//! LDAP's MTA list, whether a reload is pending, the policy spawn-user state), and the
//! changes with the exact command lines. [`compare`] lists every difference between the
//! plan's basis and a fresh gather's. This module builds, reads, writes and compares;
//! it never contacts a node, and rendering is [`crate::ui::plan_diff`]'s.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::carbonio::values;
use crate::engine::changes::ChangePlan;
use crate::engine::gather::HostGather;
use crate::engine::stage::StagePlan;
use crate::engine::verdict::SPAWN_USER_FINDING;
use crate::playbook::{Expectation, Playbook};
use crate::report::model::{HeldBy, HostReport, HostStatus, InventoryRef, PlaybookRef, Tool};

/// The format version this build writes and reads; bumped on any incompatible change.
pub const PLAN_VERSION: u32 = 1;

/// Plan files carry the state of every selected host and are an instruction to change
/// the fleet: owner only (0600, less where the umask is stricter). A reviewer who is not
/// the owner reads the `plan` output, not the file.
pub const PLAN_FILE_MODE: u32 = 0o600;

/// A plan as `plan --out` writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    pub plan_version: u32,
    pub tool: ToolRef,
    pub created_at: String,
    /// `$USER@hostname` of whoever made the plan.
    pub operator: String,
    pub playbook: PlaybookRef,
    pub inventory: InventoryRef,
    pub selection: Selection,
    /// The controls of the (selected) playbook, as the rendering needs them.
    pub controls: Vec<ControlRef>,
    /// The selected hosts, in inventory order.
    pub hosts: Vec<String>,
    /// Per host: what the plan was decided from.
    pub basis: BTreeMap<String, HostBasis>,
    pub changes: ChangePlan,
    pub staging: StagePlan,
    /// Per cluster with global changes: what would hold its promotion.
    #[serde(default)]
    pub promotion_held_by: BTreeMap<String, Vec<HeldBy>>,
    /// Reload batches in order (the first is the canary).
    pub batches: Vec<Vec<String>>,
    /// Nodes whose policy spawn user apply repairs first (`[fix] spawn_user`).
    #[serde(default)]
    pub spawn_fixes: Vec<String>,
    /// Every remote command apply would send for the changes, in order.
    pub commands: Vec<PlannedCommand>,
}

/// `Tool` of the report model, comparable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolRef {
    pub name: String,
    pub version: String,
}

impl From<Tool> for ToolRef {
    fn from(t: Tool) -> Self {
        ToolRef {
            name: t.name,
            version: t.version,
        }
    }
}

/// What selected the hosts and controls of the plan; apply with the plan uses the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    pub limit: Option<String>,
    /// `K/N`.
    pub shard: Option<String>,
    pub controls: Option<Vec<String>>,
    #[serde(default)]
    pub skip_controls: Vec<String>,
}

/// One control as the rendering shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRef {
    pub id: String,
    pub attr: String,
    /// `global` or `server`.
    pub scope: String,
    /// `= TRUE`, `contains X`, `absent X`.
    pub expected: String,
    /// A multi-valued attribute (changed with `+attr`/`-attr`): shown as `+`/`-` lines.
    pub multi_valued: bool,
}

impl ControlRef {
    /// The playbook's controls.
    pub fn of(playbook: &Playbook) -> Vec<ControlRef> {
        playbook
            .controls
            .iter()
            .map(|c| ControlRef {
                id: c.id.clone(),
                attr: c.attr.clone(),
                scope: match c.scope {
                    crate::playbook::Scope::Global => "global".into(),
                    crate::playbook::Scope::Server => "server".into(),
                },
                expected: values::render_expectation(&c.expect),
                multi_valued: !matches!(c.expect, Expectation::Equals(_)),
            })
            .collect()
    }
}

/// An attribute's values as gathered: the cluster's global config and this server's own
/// entry (`None`: the server does not set it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrBasis {
    pub global: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Vec<String>>,
}

/// Everything about one host that plan's and apply's decisions depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostBasis {
    pub cluster: String,
    /// Gathered: an unreachable host has nothing planned.
    pub reachable: bool,
    /// Why it could not be gathered (not compared: a timeout and a refused connection
    /// are the same fact for the plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The Carbonio server name (`ms` and `gs` take it).
    pub server: Option<String>,
    pub mta: Option<bool>,
    /// `legacy` / `systemd`: which restart commands run.
    pub platform: Option<String>,
    /// Carbonio or Zimbra: the service user the commands run as, the files they edit.
    pub flavour: Option<crate::flavour::Flavour>,
    /// Per control attribute: its gathered values.
    pub attrs: BTreeMap<String, AttrBasis>,
    /// LDAP's MTAs of the cluster (`gas mta`): promotion waits for each.
    pub ldap_mtas: Vec<String>,
    /// LDAP compliant but the running Postfix not (a reload is due).
    pub restart_pending: bool,
    /// The policy service's spawn user is missing (blocks the policy controls).
    pub spawn_user_missing: bool,
    /// The spawn user problem is one `[fix] spawn_user` repairs.
    pub spawn_fix_needed: bool,
}

/// One remote command apply would send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedCommand {
    /// The inventory host it is sent to.
    pub host: String,
    /// Its cluster (every command belongs to one).
    pub cluster: String,
    /// What it is for, e.g. `stage batch 1 (canary): mta1, mta2`.
    pub purpose: String,
    pub kind: CommandKind,
    /// The rollout batch (1-based) it belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// Exactly as sent on the SSH channel (quoted, become-wrapped).
    pub command: String,
}

/// Which step of apply a command belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommandKind {
    /// Server-scope changes, one batch per node, before the rollout.
    Server,
    /// A rollout batch's server entries of one cluster.
    Stage,
    /// The reload (or restart) of one node in its batch.
    Reload,
    /// The cluster's global config, then the temporary entries removed.
    Promote,
}

/// The per-host basis of a gathered fleet (gathers and reports in the same order).
pub fn basis(
    playbook: &Playbook,
    gathers: &[HostGather],
    reports: &[HostReport],
) -> BTreeMap<String, HostBasis> {
    gathers
        .iter()
        .zip(reports)
        .map(|(g, r)| {
            let mut b = HostBasis {
                cluster: g.host.cluster.clone(),
                ..HostBasis::default()
            };
            match &g.outcome {
                Err(e) => {
                    b.error = Some(e.message.clone());
                }
                Ok(ok) => {
                    let f = &ok.facts;
                    b.reachable = r.status != HostStatus::Failed;
                    b.server = Some(f.hostname.clone());
                    b.mta = Some(f.is_mta());
                    b.platform = Some(
                        match f.platform {
                            crate::carbonio::platform::Platform::Legacy => "legacy",
                            crate::carbonio::platform::Platform::Systemd => "systemd",
                        }
                        .into(),
                    );
                    b.flavour = Some(f.flavour);
                    for c in &playbook.controls {
                        b.attrs.insert(
                            c.attr.clone(),
                            AttrBasis {
                                global: f.global.get(&c.attr).cloned().unwrap_or_default(),
                                server: f.server.get(&c.attr).cloned(),
                            },
                        );
                    }
                    b.ldap_mtas = f.mta_servers.clone();
                    b.restart_pending = r.status == HostStatus::RestartPending;
                    b.spawn_user_missing = r
                        .findings
                        .iter()
                        .any(|x| x.id == SPAWN_USER_FINDING && x.blocking);
                    b.spawn_fix_needed = crate::engine::spawn_fix::needs_fix(g);
                }
            }
            (g.host.name.clone(), b)
        })
        .collect()
}

/// One way the fleet differs from the plan's basis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub host: String,
    /// What differs: an attribute (`zimbraMtaRestriction`, `zimbraMtaRestriction (server
    /// entry)`) or a fact (`reachable`, `MTA role`, …).
    pub what: String,
    pub was: String,
    pub now: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} was {} in the plan, now {}",
            self.host, self.what, self.was, self.now
        )
    }
}

impl Difference {
    /// The host could not be gathered now: apply cannot prove it is as planned.
    pub fn is_unreachable(&self) -> bool {
        self.what == "reachable" && self.now == "no"
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "(unknown)".into())
}

fn server_values(v: &Option<Vec<String>>) -> String {
    match v {
        None => "(not set on the server)".into(),
        Some(v) => values::render(v),
    }
}

/// Every difference between the plan's basis and the fleet's now, hosts in name order;
/// empty: the plan still holds. A host of the plan that was not gathered now counts as
/// unreachable.
pub fn compare(
    planned: &BTreeMap<String, HostBasis>,
    now: &BTreeMap<String, HostBasis>,
) -> Vec<Difference> {
    let mut out = Vec::new();
    for (host, was) in planned {
        let mut diff = |what: &str, a: String, b: String| {
            if a != b {
                out.push(Difference {
                    host: host.clone(),
                    what: what.into(),
                    was: a,
                    now: b,
                });
            }
        };
        let Some(now) = now.get(host) else {
            diff("reachable", yes_no(was.reachable), "no".into());
            continue;
        };
        diff("cluster", was.cluster.clone(), now.cluster.clone());
        diff("reachable", yes_no(was.reachable), yes_no(now.reachable));
        if !(was.reachable && now.reachable) {
            continue;
        }
        diff("server name", opt(&was.server), opt(&now.server));
        diff(
            "MTA role",
            yes_no(was.mta == Some(true)),
            yes_no(now.mta == Some(true)),
        );
        diff("platform", opt(&was.platform), opt(&now.platform));
        let user = |f: &Option<crate::flavour::Flavour>| f.map(|f| f.user().to_string());
        diff(
            "service user",
            opt(&user(&was.flavour)),
            opt(&user(&now.flavour)),
        );
        let attrs: std::collections::BTreeSet<&String> =
            was.attrs.keys().chain(now.attrs.keys()).collect();
        for attr in attrs {
            let (a, b) = (
                was.attrs.get(attr).cloned().unwrap_or_default(),
                now.attrs.get(attr).cloned().unwrap_or_default(),
            );
            diff(attr, values::render(&a.global), values::render(&b.global));
            diff(
                &format!("{attr} (server entry)"),
                server_values(&a.server),
                server_values(&b.server),
            );
        }
        diff(
            "LDAP's MTA list (gas mta)",
            values::render(&was.ldap_mtas),
            values::render(&now.ldap_mtas),
        );
        diff(
            "reload pending",
            yes_no(was.restart_pending),
            yes_no(now.restart_pending),
        );
        diff(
            "policy spawn user missing",
            yes_no(was.spawn_user_missing),
            yes_no(now.spawn_user_missing),
        );
        diff(
            "spawn user fix needed",
            yes_no(was.spawn_fix_needed),
            yes_no(now.spawn_fix_needed),
        );
    }
    for host in now.keys().filter(|h| !planned.contains_key(*h)) {
        out.push(Difference {
            host: host.clone(),
            what: "selected".into(),
            was: "no".into(),
            now: "yes".into(),
        });
    }
    out
}

/// Why a plan file cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    #[error("cannot read plan file `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plan file `{}` is not a carbonio-fleet plan: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "plan file `{}` has plan_version {found}; this carbonio-fleet ({tool}) reads plan_version {PLAN_VERSION} (make the plan again with `carbonio-fleet plan --out`)",
        path.display()
    )]
    Version {
        path: PathBuf,
        found: u64,
        tool: &'static str,
    },
    #[error("cannot write plan file `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `n` with its noun: `1 host`, `3 hosts` (the plan's wording, here and in its diff).
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl PlanFile {
    /// The summary line, terraform-style (`plan`'s last line and its JSON `summary`).
    pub fn summary_line(&self) -> String {
        use std::fmt::Write as _;
        let attrs = self
            .changes
            .global
            .values()
            .chain(self.changes.server.values())
            .map(|b| b.changes.len())
            .sum::<usize>();
        let mut clusters: std::collections::BTreeSet<&str> =
            self.changes.global.keys().map(String::as_str).collect();
        for h in self.changes.server.keys() {
            if let Some(b) = self.basis.get(h) {
                clusters.insert(b.cluster.as_str());
            }
        }
        let reloads: usize = self.batches.iter().map(Vec::len).sum();
        let blocked = self.changes.blocked.len()
            + self
                .staging
                .nodes
                .values()
                .map(|n| n.masked.len())
                .sum::<usize>();
        let touched = self.touched_hosts();
        let unreachable = self.basis.values().filter(|b| !b.reachable).count();
        let compliant = self
            .basis
            .iter()
            .filter(|(h, b)| b.reachable && !touched.contains(h.as_str()))
            .count();
        let mut s = format!(
            "Plan: {} to change on {}, {} to reload in {}{}, {} blocked, {} already compliant",
            plural(attrs, "attribute", "attributes"),
            plural(clusters.len(), "cluster", "clusters"),
            plural(reloads, "host", "hosts"),
            plural(self.batches.len(), "batch", "batches"),
            if self.batches.is_empty() {
                ""
            } else {
                " (canary first)"
            },
            blocked,
            compliant,
        );
        if unreachable > 0 {
            let _ = write!(s, ", {unreachable} not gathered");
        }
        s.push('.');
        s
    }

    /// The file's JSON.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Writes it atomically (temp file in the same directory, fsync, rename) with
    /// [`PLAN_FILE_MODE`]: a crash leaves the old file or the new one, never half.
    pub fn write(&self, path: &Path) -> Result<(), PlanFileError> {
        crate::report::write::write_atomic_mode(path, &self.to_json(), PLAN_FILE_MODE).map_err(
            |e| PlanFileError::Write {
                path: e.path,
                source: e.source,
            },
        )
    }

    /// Reads and checks a plan file: its version first (so an old or newer file says
    /// so, not which field it lacks), then its structure.
    pub fn read(path: &Path) -> Result<PlanFile, PlanFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlanFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// [`read`](Self::read) of text already read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<PlanFile, PlanFileError> {
        let corrupt = |reason: String| PlanFileError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| corrupt(format!("invalid JSON: {e}")))?;
        let Some(obj) = value.as_object() else {
            return Err(corrupt("the top level is not a JSON object".into()));
        };
        match obj.get("plan_version") {
            None => return Err(corrupt("it has no `plan_version`".into())),
            Some(v) => match v.as_u64() {
                Some(n) if n == u64::from(PLAN_VERSION) => {}
                Some(n) => {
                    return Err(PlanFileError::Version {
                        path: path.to_path_buf(),
                        found: n,
                        tool: env!("CARGO_PKG_VERSION"),
                    });
                }
                None => return Err(corrupt(format!("`plan_version` is {v}, not a number"))),
            },
        }
        serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))
    }

    /// The host names the plan changes or reloads something on (the rendering omits
    /// the others, the summary counts them).
    pub fn touched_hosts(&self) -> std::collections::BTreeSet<&str> {
        let mut out: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
        out.extend(self.changes.server.keys().map(String::as_str));
        out.extend(
            self.staging
                .nodes
                .iter()
                .filter(|(_, n)| !n.entries.is_empty() || !n.masked.is_empty())
                .map(|(k, _)| k.as_str()),
        );
        out.extend(self.batches.iter().flatten().map(String::as_str));
        out.extend(self.spawn_fixes.iter().map(String::as_str));
        out
    }
}

/// The selection `apply --plan` runs with: the plan's. An option given on the command
/// line must say the same as the plan's (a copy of the plan's own command line is fine);
/// a different one is an error, never silently replaced.
pub fn selection_for_apply(plan: &Selection, given: &Selection) -> Result<Selection, String> {
    let mut conflicts = Vec::new();
    let differs = |flag: &str, given: String, planned: String, conflicts: &mut Vec<String>| {
        conflicts.push(format!(
            "{flag} {given} (the plan was made with {})",
            if planned.is_empty() {
                "none".to_string()
            } else {
                planned
            }
        ));
    };
    if let Some(l) = &given.limit
        && plan.limit.as_ref() != Some(l)
    {
        differs(
            "--limit",
            l.clone(),
            plan.limit.clone().unwrap_or_default(),
            &mut conflicts,
        );
    }
    if let Some(s) = &given.shard
        && plan.shard.as_ref() != Some(s)
    {
        differs(
            "--shard",
            s.clone(),
            plan.shard.clone().unwrap_or_default(),
            &mut conflicts,
        );
    }
    if let Some(c) = &given.controls
        && plan.controls.as_ref() != Some(c)
    {
        differs(
            "--controls",
            c.join(","),
            plan.controls.clone().unwrap_or_default().join(","),
            &mut conflicts,
        );
    }
    if !given.skip_controls.is_empty() && given.skip_controls != plan.skip_controls {
        differs(
            "--skip-controls",
            given.skip_controls.join(","),
            plan.skip_controls.join(","),
            &mut conflicts,
        );
    }
    if conflicts.is_empty() {
        Ok(plan.clone())
    } else {
        Err(format!(
            "--plan carries out the plan's selection; {} (leave it out, or make a new plan with it)",
            conflicts.join("; ")
        ))
    }
}

/// Whether the playbook and inventory apply loaded are the plan's (by SHA-256 of their
/// files), and the selection gives the plan's hosts; each difference, as a sentence.
pub fn check_sources(
    plan: &PlanFile,
    playbook: &PlaybookRef,
    inventory: &InventoryRef,
    hosts: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    if playbook.sha256 != plan.playbook.sha256 {
        out.push(format!(
            "the playbook {} is not the plan's {} (sha256 {} in the plan, now {})",
            playbook.source, plan.playbook.source, plan.playbook.sha256, playbook.sha256
        ));
    }
    if inventory.sha256 != plan.inventory.sha256 {
        out.push(format!(
            "the inventory {} is not the plan's {} (sha256 {} in the plan, now {})",
            inventory.files.join(", "),
            plan.inventory.files.join(", "),
            plan.inventory.sha256,
            inventory.sha256
        ));
    } else if hosts != plan.hosts.as_slice() {
        out.push(format!(
            "the selection gives {} hosts, the plan has {}",
            hosts.len(),
            plan.hosts.len()
        ));
    }
    out
}

/// What apply decided now that the plan does not say (or the other way round); empty:
/// apply would do exactly the plan. With a matching basis this is empty by
/// construction (the same functions decide); it is checked so that no change outside
/// the plan can ever run.
pub fn check_decisions(
    plan: &PlanFile,
    changes: &ChangePlan,
    staging: &StagePlan,
    spawn_fixes: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    if *changes != plan.changes {
        out.push("the attribute changes apply decided differ from the plan's".to_string());
    }
    if *staging != plan.staging {
        out.push("the server entries apply would stage differ from the plan's".to_string());
    }
    if spawn_fixes != plan.spawn_fixes.as_slice() {
        out.push(format!(
            "the spawn-user repairs differ: {} in the plan, now {}",
            values::render(&plan.spawn_fixes),
            values::render(spawn_fixes)
        ));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::changes::{Change, NodeBatch};
    use crate::engine::stage::{EntryKind, NodeStage, StageEntry};

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    fn mta_basis(cluster: &str, server: &str, restriction: &[&str]) -> HostBasis {
        let mut attrs = BTreeMap::new();
        attrs.insert(
            "zimbraMtaRestriction".to_string(),
            AttrBasis {
                global: v(restriction),
                server: None,
            },
        );
        attrs.insert(
            "zimbraMtaEnableSmtpdPolicyd".to_string(),
            AttrBasis {
                global: v(&["FALSE"]),
                server: None,
            },
        );
        HostBasis {
            cluster: cluster.into(),
            reachable: true,
            error: None,
            server: Some(server.into()),
            mta: Some(true),
            platform: Some("systemd".into()),
            flavour: Some(crate::flavour::Flavour::Carbonio),
            attrs,
            ldap_mtas: v(&["mta1.acme", "mta2.acme"]),
            restart_pending: false,
            spawn_user_missing: false,
            spawn_fix_needed: false,
        }
    }

    /// A two-MTA cluster `acme` with both policy controls planned, and a server-scope
    /// change on mta2: the sample the rendering tests use too.
    pub(crate) fn sample_plan() -> PlanFile {
        let mut basis = BTreeMap::new();
        basis.insert(
            "mta1.acme".to_string(),
            mta_basis("acme", "mta1.acme", &["reject_invalid_helo_hostname"]),
        );
        basis.insert(
            "mta2.acme".to_string(),
            mta_basis("acme", "mta2.acme", &["reject_invalid_helo_hostname"]),
        );
        basis.insert(
            "mbox1.acme".to_string(),
            HostBasis {
                mta: Some(false),
                ..mta_basis("acme", "mbox1.acme", &["reject_invalid_helo_hostname"])
            },
        );
        let mut changes = ChangePlan::default();
        changes.global.insert(
            "acme".into(),
            NodeBatch {
                node: "mta1.acme".into(),
                changes: vec![
                    Change {
                        control: "BS-01".into(),
                        attr: "zimbraMtaEnableSmtpdPolicyd".into(),
                        args: v(&["mcf", "zimbraMtaEnableSmtpdPolicyd", "TRUE"]),
                        restart: true,
                        expect: None,
                    },
                    Change {
                        control: "BS-04".into(),
                        attr: "zimbraMtaRestriction".into(),
                        args: v(&[
                            "mcf",
                            "+zimbraMtaRestriction",
                            "check_policy_service unix:private/policy",
                        ]),
                        restart: true,
                        expect: None,
                    },
                ],
            },
        );
        let mut staging = StagePlan::default();
        for n in ["mta1.acme", "mta2.acme"] {
            staging.nodes.insert(
                n.into(),
                NodeStage {
                    server: n.into(),
                    entries: vec![StageEntry {
                        control: "BS-04".into(),
                        attr: "zimbraMtaRestriction".into(),
                        kind: EntryKind::Temporary,
                        before: vec![],
                        staged: v(&[
                            "reject_invalid_helo_hostname",
                            "check_policy_service unix:private/policy",
                        ]),
                        delta: None,
                        present: false,
                        restart: true,
                    }],
                    masked: vec![],
                },
            );
        }
        PlanFile {
            plan_version: PLAN_VERSION,
            tool: ToolRef {
                name: "carbonio-fleet".into(),
                version: "0.1.0".into(),
            },
            created_at: "2026-12-02T10:00:00Z".into(),
            operator: "ops@admin".into(),
            playbook: PlaybookRef {
                name: "backscatter-hardening".into(),
                description: String::new(),
                source: "(embedded)".into(),
                sha256: "aa".repeat(32),
            },
            inventory: InventoryRef {
                files: vec!["inventory/acme.toml".into()],
                sha256: "bb".repeat(32),
            },
            selection: Selection::default(),
            controls: vec![
                ControlRef {
                    id: "BS-01".into(),
                    attr: "zimbraMtaEnableSmtpdPolicyd".into(),
                    scope: "global".into(),
                    expected: "= TRUE".into(),
                    multi_valued: false,
                },
                ControlRef {
                    id: "BS-04".into(),
                    attr: "zimbraMtaRestriction".into(),
                    scope: "global".into(),
                    expected: "contains check_policy_service unix:private/policy".into(),
                    multi_valued: true,
                },
            ],
            hosts: v(&["mta1.acme", "mta2.acme", "mbox1.acme"]),
            basis,
            changes,
            staging,
            promotion_held_by: BTreeMap::new(),
            batches: vec![v(&["mta1.acme"]), v(&["mta2.acme"])],
            spawn_fixes: vec![],
            commands: vec![PlannedCommand {
                host: "mta1.acme".into(),
                cluster: "acme".into(),
                purpose: "stage batch 1 (canary): mta1.acme".into(),
                kind: CommandKind::Stage,
                batch: Some(1),
                command: "su - zextras -c 'printf ...'".into(),
            }],
        }
    }

    #[test]
    fn a_plan_file_round_trips_through_its_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        let plan = sample_plan();
        plan.write(&path).unwrap();
        assert_eq!(PlanFile::read(&path).unwrap().to_json(), plan.to_json());
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["plan_version"], PLAN_VERSION);
        assert_eq!(json["playbook"]["sha256"], "aa".repeat(32));
        assert_eq!(
            json["basis"]["mta2.acme"]["attrs"]["zimbraMtaRestriction"]["global"][0],
            "reject_invalid_helo_hostname"
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Replaced whole, no temp file left beside it.
        plan.write(&path).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn unreadable_files_name_the_file_and_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        let err = PlanFile::read(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot read plan file `{}`: ", path.display())),
            "{err}"
        );
        let cases: [(&str, &str); 5] = [
            (
                "{\"plan_version\": 1,",
                "is not a carbonio-fleet plan: invalid JSON",
            ),
            ("[1, 2]", "the top level is not a JSON object"),
            ("{\"hosts\": []}", "it has no `plan_version`"),
            (
                "{\"plan_version\": \"one\"}",
                "`plan_version` is \"one\", not a number",
            ),
            ("{\"plan_version\": 1, \"hosts\": []}", "missing field"),
        ];
        for (text, want) in cases {
            let err = PlanFile::parse(&path, text).unwrap_err().to_string();
            assert!(err.contains(&format!("`{}`", path.display())), "{err}");
            assert!(err.contains(want), "{text}: {err}");
        }
        let mut newer: serde_json::Value = serde_json::from_str(&sample_plan().to_json()).unwrap();
        newer["plan_version"] = serde_json::json!(2);
        let err = PlanFile::parse(&path, &newer.to_string())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has plan_version 2;") && err.contains("reads plan_version 1"),
            "{err}"
        );
        // A field this version does not know is an error, not silence.
        let mut extra: serde_json::Value = serde_json::from_str(&sample_plan().to_json()).unwrap();
        extra["surprise"] = serde_json::json!(true);
        let err = PlanFile::parse(&path, &extra.to_string())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `surprise`"), "{err}");
    }

    #[test]
    fn the_same_fleet_matches_its_plan() {
        let plan = sample_plan();
        assert_eq!(compare(&plan.basis, &plan.basis.clone()), vec![]);
    }

    type Mutate = fn(&mut HostBasis);

    #[test]
    fn each_kind_of_change_is_a_difference_naming_host_and_what() {
        let cases: Vec<(Mutate, &str)> = vec![
            (
                |b| {
                    b.attrs.get_mut("zimbraMtaRestriction").unwrap().global =
                        v(&["reject_invalid_helo_hostname", "x"])
                },
                "mta2.acme: zimbraMtaRestriction was reject_invalid_helo_hostname in the plan, now [reject_invalid_helo_hostname, x]",
            ),
            (
                |b| {
                    b.attrs.get_mut("zimbraMtaRestriction").unwrap().server =
                        Some(v(&["reject_rbl_client zen.example"]))
                },
                "mta2.acme: zimbraMtaRestriction (server entry) was (not set on the server) in the plan, now reject_rbl_client zen.example",
            ),
            (
                |b| {
                    b.attrs
                        .get_mut("zimbraMtaEnableSmtpdPolicyd")
                        .unwrap()
                        .global = vec![]
                },
                "mta2.acme: zimbraMtaEnableSmtpdPolicyd was FALSE in the plan, now (unset)",
            ),
            (
                |b| b.restart_pending = true,
                "mta2.acme: reload pending was no in the plan, now yes",
            ),
            (
                |b| b.spawn_user_missing = true,
                "mta2.acme: policy spawn user missing was no in the plan, now yes",
            ),
            (
                |b| b.spawn_fix_needed = true,
                "mta2.acme: spawn user fix needed was no in the plan, now yes",
            ),
            (
                |b| b.mta = Some(false),
                "mta2.acme: MTA role was yes in the plan, now no",
            ),
            (
                |b| b.platform = Some("legacy".into()),
                "mta2.acme: platform was systemd in the plan, now legacy",
            ),
            (
                |b| b.server = Some("mx2.acme".into()),
                "mta2.acme: server name was mta2.acme in the plan, now mx2.acme",
            ),
            (
                |b| b.ldap_mtas.push("mta3.acme".into()),
                "mta2.acme: LDAP's MTA list (gas mta) was [mta1.acme, mta2.acme] in the plan, now [mta1.acme, mta2.acme, mta3.acme]",
            ),
            (
                |b| {
                    b.reachable = false;
                    b.error = Some("connection refused".into());
                },
                "mta2.acme: reachable was yes in the plan, now no",
            ),
        ];
        for (mutate, want) in cases {
            let plan = sample_plan();
            let mut now = plan.basis.clone();
            mutate(now.get_mut("mta2.acme").unwrap());
            let diffs = compare(&plan.basis, &now);
            let text: Vec<String> = diffs.iter().map(ToString::to_string).collect();
            assert_eq!(text, vec![want.to_string()]);
        }
    }

    #[test]
    fn an_unreachable_host_is_told_apart_and_an_unplanned_host_is_a_difference() {
        let plan = sample_plan();
        let mut now = plan.basis.clone();
        now.remove("mbox1.acme");
        now.insert("mta9.acme".into(), mta_basis("acme", "mta9.acme", &[]));
        let diffs = compare(&plan.basis, &now);
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        assert!(diffs[0].is_unreachable(), "{}", diffs[0]);
        assert_eq!(diffs[0].host, "mbox1.acme");
        assert_eq!(
            diffs[1].to_string(),
            "mta9.acme: selected was no in the plan, now yes"
        );
        // Unreachable then and now: nothing was planned for it, nothing to compare.
        let mut then = plan.basis.clone();
        for b in [&mut then, &mut now] {
            b.insert(
                "dead.acme".into(),
                HostBasis {
                    cluster: "acme".into(),
                    error: Some("timeout".into()),
                    ..HostBasis::default()
                },
            );
        }
        now.get_mut("dead.acme").unwrap().error = Some("refused".into());
        assert!(compare(&then, &now).iter().all(|d| d.host != "dead.acme"));
    }

    #[test]
    fn apply_takes_the_plans_selection_and_refuses_a_different_one() {
        let planned = Selection {
            limit: Some("@acme".into()),
            shard: None,
            controls: Some(v(&["BS-01", "BS-04"])),
            skip_controls: vec![],
        };
        // Nothing given, or the same given: the plan's.
        assert_eq!(
            selection_for_apply(&planned, &Selection::default()),
            Ok(planned.clone())
        );
        assert_eq!(selection_for_apply(&planned, &planned), Ok(planned.clone()));
        let err = selection_for_apply(
            &planned,
            &Selection {
                limit: Some("@globex".into()),
                shard: Some("1/2".into()),
                ..Selection::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            err,
            "--plan carries out the plan's selection; --limit @globex (the plan was made with @acme); --shard 1/2 (the plan was made with none) (leave it out, or make a new plan with it)"
        );
        let err = selection_for_apply(
            &planned,
            &Selection {
                controls: Some(v(&["BS-01"])),
                ..Selection::default()
            },
        )
        .unwrap_err();
        assert!(
            err.contains("--controls BS-01 (the plan was made with BS-01,BS-04)"),
            "{err}"
        );
    }

    #[test]
    fn another_playbook_or_inventory_is_named_with_both_hashes() {
        let plan = sample_plan();
        let hosts = plan.hosts.clone();
        assert!(check_sources(&plan, &plan.playbook, &plan.inventory, &hosts).is_empty());
        let mut pb = plan.playbook.clone();
        pb.sha256 = "cc".repeat(32);
        let mut inv = plan.inventory.clone();
        inv.sha256 = "dd".repeat(32);
        let found = check_sources(&plan, &pb, &inv, &hosts);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].contains(&format!(
                "sha256 {} in the plan, now {}",
                "aa".repeat(32),
                "cc".repeat(32)
            )),
            "{}",
            found[0]
        );
        assert!(
            found[1].starts_with("the inventory inventory/acme.toml"),
            "{}",
            found[1]
        );
        let fewer = &hosts[..2];
        assert_eq!(
            check_sources(&plan, &plan.playbook, &plan.inventory, fewer),
            vec!["the selection gives 2 hosts, the plan has 3".to_string()]
        );
    }

    #[test]
    fn a_decision_outside_the_plan_is_caught() {
        let plan = sample_plan();
        assert!(check_decisions(&plan, &plan.changes, &plan.staging, &[]).is_empty());
        let mut more = plan.changes.clone();
        more.server.insert(
            "mta2.acme".into(),
            NodeBatch {
                node: "mta2.acme".into(),
                changes: vec![],
            },
        );
        let mut fewer = plan.staging.clone();
        fewer.nodes.remove("mta2.acme");
        let found = check_decisions(&plan, &more, &fewer, &v(&["mta1.acme"]));
        assert_eq!(found.len(), 3, "{found:?}");
    }
}
