//! `plan`: what apply would do, per cluster and per host, as a diff an operator reviews
//! (current → desired, the exact commands apply would send, the reload batches, what is
//! blocked and why, one summary line), and with `--out FILE` the plan file that `apply
//! --plan FILE` carries out exactly ([`super::plan_file`]). Read-only: it gathers like
//! `check` and decides with apply's own functions; the text is
//! [`crate::ui::plan_diff`]'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::carbonio::prov;
use crate::carbonio::services::MtaAction;
use crate::engine::apply;
use crate::engine::changes::{self, ChangePlan, NodeBatch};
use crate::engine::check;
use crate::engine::events::Events;
use crate::engine::gather::{GatherOptions, HostGather};
use crate::engine::outcome::RunError;
use crate::engine::plan_file::{
    self, CommandKind, ControlRef, PLAN_VERSION, PlanFile, PlannedCommand, Selection,
};
use crate::engine::rollout::{self, RolloutNode};
use crate::engine::run::{self, Loaded, RunOptions};
use crate::engine::stage::{self, StagePlan};
use crate::exit::ExitCode;
use crate::flavour::Flavour;
use crate::inventory::Host;
use crate::report::model::{HeldBy, HostReport, HostStatus};
use crate::ssh::{RunAs, wrap};

/// The plan as `--format json` prints it.
#[derive(Debug, Serialize)]
pub struct PlanOutput {
    pub changes: ChangePlan,
    /// What each MTA's server entry gets staged with before its reload (the global
    /// changes of `changes` are written by the promotion, once every MTA passed).
    pub staging: StagePlan,
    /// Per cluster with global changes: what would hold its promotion even if every
    /// staged MTA passed (outside `--limit`, unreachable, masked, not in the inventory).
    pub promotion_held_by: BTreeMap<String, Vec<HeldBy>>,
    /// Restart batches in order (the first is the canary).
    pub batches: Vec<Vec<String>>,
    /// The exact command lines apply would send, per node.
    pub commands: BTreeMap<String, Vec<String>>,
    /// Nodes whose policy spawn user apply can repair (PRE-POLICY-SPAWN-USER), and
    /// whether this apply would (`--fix-spawn-user`, or `[fix] spawn_user` set).
    pub spawn_user_fixes: SpawnFixes,
    /// The plan's summary line (`Plan: N attributes to change on …`).
    pub summary: String,
}

/// The spawn-user repairs a plan shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SpawnFixes {
    /// The playbook's `[fix] spawn_user` (plan has no `--fix-spawn-user`).
    pub enabled: bool,
    pub hosts: Vec<SpawnFix>,
}

/// One node's spawn-user repair.
#[derive(Debug, Clone, Serialize)]
pub struct SpawnFix {
    pub host: String,
    /// The template whose `user=` is set.
    pub template: String,
    /// The user it is set to (the product's service user).
    pub user: String,
}

/// Nodes whose effective config would change (or is pending) and that run the MTA.
pub fn restart_candidates(
    hosts: &[HostReport],
    plan: &ChangePlan,
    staging: &StagePlan,
    only_if_changed: bool,
) -> Vec<RolloutNode> {
    hosts
        .iter()
        .filter(|h| h.is_mta == Some(true) && h.status != HostStatus::Failed)
        .map(|h| {
            let global = plan
                .global
                .get(&h.cluster)
                .is_some_and(|b| b.changes.iter().any(|c| c.restart));
            let server = plan
                .server
                .get(&h.name)
                .is_some_and(|b| b.changes.iter().any(|c| c.restart))
                || staging
                    .nodes
                    .get(&h.name)
                    .is_some_and(|n| !n.entries.is_empty());
            RolloutNode {
                name: h.name.clone(),
                cluster: h.cluster.clone(),
                needs_restart: !only_if_changed
                    || global
                    || server
                    || h.status == HostStatus::RestartPending,
            }
        })
        .collect()
}

fn batch_command(
    host: &Host,
    flavour: Flavour,
    batch: &NodeBatch,
    server: &str,
) -> Result<String, String> {
    let (b, _) = changes::batch_with_readback(batch, server).map_err(|e| e.to_string())?;
    let script = prov::shell_command(&b, prov::Ldap::Master).map_err(|e| e.to_string())?;
    wrap(
        &host.user,
        host.become_,
        flavour.user(),
        RunAs::Service,
        &script,
    )
    .map_err(|e| e.to_string())
}

/// What would hold each cluster's promotion before anything runs: the same rule apply
/// follows ([`stage::holds`]), every reachable MTA assumed to pass its gate.
pub fn foreseen_holds(
    plan: &ChangePlan,
    staging: &StagePlan,
    gathers: &[crate::engine::gather::HostGather],
    inventory: &[Host],
) -> BTreeMap<String, Vec<HeldBy>> {
    let mut out = BTreeMap::new();
    for cluster in plan.global.keys() {
        let members: Vec<&crate::engine::gather::HostGather> = gathers
            .iter()
            .filter(|g| &g.host.cluster == cluster)
            .collect();
        let in_inventory = inventory.iter().filter(|h| &h.cluster == cluster).count();
        let (mut view, mtas) = stage::ClusterView::gathered(&members, in_inventory);
        for (g, facts) in mtas {
            let standing = match staging
                .nodes
                .get(&g.host.name)
                .filter(|n| !n.masked.is_empty())
            {
                Some(n) => stage::Standing::Holds(
                    n.masked
                        .iter()
                        .map(|m| m.reason.clone())
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
                None => stage::Standing::Ready,
            };
            view.judge(&g.host.name, facts, standing);
        }
        let held = stage::holds(&view);
        if !held.is_empty() {
            out.insert(cluster.clone(), held);
        }
    }
    out
}

/// What apply decides from a gathered fleet, by the same functions apply calls: the
/// change plan, the staging plan (with apply's defaults: plan has none of its flags),
/// and the nodes whose spawn user apply repairs first (`[fix] spawn_user`).
pub fn decide(
    playbook: &crate::playbook::Playbook,
    hosts: &[Host],
    gathers: &[HostGather],
    reports: &[HostReport],
) -> (ChangePlan, StagePlan, Vec<String>) {
    let mut cplan = changes::plan(playbook, reports);
    let pinned = apply::pinned_hosts(hosts);
    let staging = apply::plan_staging(
        apply::StagingOptions::default(),
        playbook,
        reports,
        &pinned,
        &mut cplan,
    );
    let spawn_fixes = if playbook.fix_spawn_user {
        gathers
            .iter()
            .filter(|g| super::spawn_fix::needs_fix(g))
            .map(|g| g.host.name.clone())
            .collect()
    } else {
        Vec::new()
    };
    (cplan, staging, spawn_fixes)
}

/// Every command apply would send for the plan, in the order it sends them: server-scope
/// batches, then per rollout batch each cluster's staging batch and each node's reload,
/// then each cluster's promotion.
fn planned_commands(
    loaded: &Loaded,
    reports: &[HostReport],
    cplan: &ChangePlan,
    staging: &StagePlan,
    batches: &[Vec<String>],
) -> Vec<PlannedCommand> {
    let mut p = Planner {
        host_by: loaded.hosts.iter().map(|h| (h.name.as_str(), h)).collect(),
        report_by: reports.iter().map(|r| (r.name.as_str(), r)).collect(),
        out: Vec::new(),
    };
    for b in cplan.server.values() {
        p.server(b);
    }
    for (i, batch) in batches.iter().enumerate() {
        p.batch(i, batch, staging, loaded.playbook.rollout.restart);
    }
    let pinned = apply::pinned_hosts(&loaded.hosts);
    for (cluster, g) in &cplan.global {
        p.promotion(cluster, g, reports, staging, &pinned);
    }
    p.out
}

/// The fleet as [`planned_commands`] looks it up, and the commands so far.
struct Planner<'a> {
    host_by: BTreeMap<&'a str, &'a Host>,
    report_by: BTreeMap<&'a str, &'a HostReport>,
    out: Vec<PlannedCommand>,
}

impl Planner<'_> {
    fn cluster_of(&self, n: &str) -> String {
        self.host_by
            .get(n)
            .map(|h| h.cluster.clone())
            .unwrap_or_default()
    }

    fn flavour_of(&self, n: &str) -> Flavour {
        self.report_by
            .get(n)
            .and_then(|r| r.flavour)
            .unwrap_or_default()
    }

    /// The command line of a change batch (with its read-back) run on `node`.
    fn line(&self, node: &str, b: &NodeBatch) -> Option<String> {
        let h = self.host_by.get(node)?;
        let server = self.report_by.get(node)?.carbonio_hostname.clone()?;
        Some(
            batch_command(h, self.flavour_of(node), b, &server)
                .unwrap_or_else(|e| format!("(cannot build: {e})")),
        )
    }

    /// A server-scope batch, before the rollout.
    fn server(&mut self, b: &NodeBatch) {
        if let Some(command) = self.line(&b.node, b) {
            self.out.push(PlannedCommand {
                host: b.node.clone(),
                cluster: self.cluster_of(&b.node),
                purpose:
                    "server-scope changes, one zmprov batch with read-back, before the rollout"
                        .into(),
                kind: CommandKind::Server,
                batch: None,
                command,
            });
        }
    }

    /// Rollout batch `i`: each cluster's staging batch, then each node's reload.
    fn batch(
        &mut self,
        i: usize,
        batch: &[String],
        staging: &StagePlan,
        restart: crate::playbook::RestartMethod,
    ) {
        let label = if i == 0 {
            "batch 1 (canary)".to_string()
        } else {
            format!("batch {}", i + 1)
        };
        // As apply does: one staging batch per cluster per rollout batch, sent on the
        // first node of it that writes something.
        let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for n in batch {
            groups.entry(self.cluster_of(n)).or_default().push(n);
        }
        for (cluster, nodes) in &groups {
            let writers: Vec<(&str, &crate::engine::stage::NodeStage)> = nodes
                .iter()
                .filter_map(|n| staging.nodes.get(*n).map(|s| (*n, s)))
                .filter(|(_, s)| s.to_write().next().is_some())
                .collect();
            let Some((exec, _)) = writers.first() else {
                continue;
            };
            let mut lines = Vec::new();
            for (_, st) in &writers {
                let todo: Vec<&crate::engine::stage::StageEntry> = st.to_write().collect();
                lines.extend(apply::entry_changes(&st.server, &todo, false));
            }
            let b = NodeBatch {
                node: exec.to_string(),
                changes: lines,
            };
            if let Some(command) = self.line(exec, &b) {
                let servers: Vec<&str> = writers.iter().map(|(_, s)| s.server.as_str()).collect();
                self.out.push(PlannedCommand {
                    host: exec.to_string(),
                    cluster: cluster.clone(),
                    purpose: format!(
                        "stage {label} of cluster {cluster} on server entries {}",
                        servers.join(", ")
                    ),
                    kind: CommandKind::Stage,
                    batch: Some(i + 1),
                    command,
                });
            }
        }
        for n in batch {
            let (Some(h), Some(r)) = (self.host_by.get(n.as_str()), self.report_by.get(n.as_str()))
            else {
                continue;
            };
            let Some(platform) = r.platform else {
                continue;
            };
            let flavour = self.flavour_of(n);
            let Some(action) = crate::carbonio::services::mta_action(restart, platform, flavour)
            else {
                continue;
            };
            let steps: Vec<(&str, &crate::carbonio::services::Step)> = match &action {
                MtaAction::Reload { render, reload } => {
                    vec![
                        ("render the config files from LDAP", render),
                        ("reload Postfix, then the health gate", reload),
                    ]
                }
                MtaAction::Full(step) => vec![(
                    "full restart (run detached and polled), then the health gate",
                    step,
                )],
            };
            for (what, step) in steps {
                let command = wrap(
                    &h.user,
                    h.become_,
                    flavour.user(),
                    step.run_as,
                    &step.script,
                )
                .unwrap_or_else(|e| format!("(cannot build: {e})"));
                self.out.push(PlannedCommand {
                    host: n.clone(),
                    cluster: h.cluster.clone(),
                    purpose: format!("{label}: {what}"),
                    kind: CommandKind::Reload,
                    batch: Some(i + 1),
                    command,
                });
            }
        }
    }

    /// Cluster `cluster`'s promotion: on its first MTA that is not pinned, the pinned
    /// MTAs' permanent entries, the global changes, the temporary entries removed.
    fn promotion(
        &mut self,
        cluster: &str,
        g: &NodeBatch,
        reports: &[HostReport],
        staging: &StagePlan,
        pinned: &std::collections::BTreeSet<String>,
    ) {
        let members: Vec<&HostReport> = reports
            .iter()
            .filter(|r| r.cluster == cluster && r.status != HostStatus::Failed)
            .collect();
        // Apply promotes on the cluster's first MTA that is not pinned.
        let exec = members
            .iter()
            .find(|r| r.is_mta == Some(true) && !pinned.contains(&r.name))
            .map(|r| r.name.clone())
            .unwrap_or_else(|| g.node.clone());
        let mut batch = NodeBatch {
            node: exec.clone(),
            changes: Vec::new(),
        };
        // A pinned MTA first gets a permanent entry with the old values (apply writes
        // it before the mcf, in the same batch).
        for r in members
            .iter()
            .filter(|r| r.is_mta == Some(true) && pinned.contains(&r.name))
        {
            let Some(srv) = &r.carbonio_hostname else {
                continue;
            };
            for c in &g.changes {
                let Some(cr) = r.controls.iter().find(|x| x.attr == c.attr) else {
                    continue;
                };
                if cr.server_values.is_some() || cr.global_values.is_empty() {
                    continue;
                }
                let mut args = vec!["ms".to_string(), srv.clone()];
                for v in &cr.global_values {
                    args.push(c.attr.clone());
                    args.push(v.clone());
                }
                batch.changes.push(changes::Change {
                    control: c.control.clone(),
                    attr: c.attr.clone(),
                    args,
                    restart: false,
                    expect: None,
                });
            }
        }
        batch.changes.extend(g.changes.iter().cloned());
        for r in &members {
            if let Some(st) = staging.nodes.get(&r.name) {
                for e in &st.entries {
                    if let Some(args) = e.promote_args(&st.server) {
                        batch.changes.push(changes::Change {
                            control: e.control.clone(),
                            attr: e.attr.clone(),
                            args,
                            restart: false,
                            expect: None,
                        });
                    }
                }
            }
        }
        if let Some(command) = self.line(&exec, &batch) {
            self.out.push(PlannedCommand {
                host: exec.clone(),
                cluster: cluster.to_string(),
                purpose: format!(
                    "promote cluster {cluster}: global config, then the temporary server entries removed (one batch with read-back)"
                ),
                kind: CommandKind::Promote,
                batch: None,
                command,
            });
        }
    }
}

/// The plan of a gathered fleet: what it was decided from and what apply would do.
pub fn build(
    loaded: &Loaded,
    opts: &RunOptions,
    gathers: &[HostGather],
    reports: &[HostReport],
) -> PlanFile {
    let (cplan, staging, spawn_fixes) = decide(&loaded.playbook, &loaded.hosts, gathers, reports);
    let held_by = foreseen_holds(&cplan, &staging, gathers, &loaded.inventory.hosts);
    let candidates = restart_candidates(
        reports,
        &cplan,
        &staging,
        loaded.playbook.rollout.only_if_changed,
    );
    let batches = rollout::plan_batches(&candidates, &loaded.playbook.rollout);
    let commands = planned_commands(loaded, reports, &cplan, &staging, &batches);
    let (playbook, inventory) = run::source_refs(loaded);
    PlanFile {
        plan_version: PLAN_VERSION,
        tool: run::tool().into(),
        created_at: jiff::Timestamp::now().to_string(),
        operator: run::operator(),
        playbook,
        inventory,
        selection: selection_of(opts),
        controls: ControlRef::of(&loaded.playbook),
        hosts: loaded.hosts.iter().map(|h| h.name.clone()).collect(),
        basis: plan_file::basis(&loaded.playbook, gathers, reports),
        changes: cplan,
        staging,
        promotion_held_by: held_by,
        batches,
        spawn_fixes,
        commands,
    }
}

/// The selection options of a run, as a plan file records them.
pub fn selection_of(opts: &RunOptions) -> Selection {
    Selection {
        limit: opts.limit.clone(),
        shard: opts.shard.map(|s| s.to_string()),
        controls: opts.controls.clone(),
        skip_controls: opts.skip_controls.clone(),
    }
}

/// The JSON `--format json` prints, from the plan (the fields it always had).
pub fn json_output(file: &PlanFile) -> PlanOutput {
    let mut commands: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in &file.commands {
        let key = match c.kind {
            CommandKind::Server => c.host.clone(),
            CommandKind::Promote => format!("promote:{}", c.cluster),
            CommandKind::Stage => format!("stage:{}:{}", c.cluster, c.batch.unwrap_or(0)),
            CommandKind::Reload => format!("reload:{}", c.host),
        };
        commands.entry(key).or_default().push(c.command.clone());
    }
    PlanOutput {
        changes: file.changes.clone(),
        staging: file.staging.clone(),
        promotion_held_by: file.promotion_held_by.clone(),
        batches: file.batches.clone(),
        commands,
        spawn_user_fixes: SpawnFixes::default(),
        summary: file.summary_line(),
    }
}

/// What `plan` found: the plan, the spawn-user repairs, where the plan file went.
#[derive(Debug)]
pub struct PlanOutcome {
    pub file: PlanFile,
    pub spawn_user_fixes: SpawnFixes,
    /// `--out FILE`: the file written, or why it could not be.
    pub written: Option<Result<PathBuf, plan_file::PlanFileError>>,
    /// What the hosts say: drift where apply has work, a failed host.
    pub hosts: ExitCode,
}

impl PlanOutcome {
    /// The process exit code: the hosts', made a failure when the plan file asked for
    /// could not be written.
    pub fn exit_code(&self) -> ExitCode {
        match self.written {
            Some(Err(_)) => self.hosts.worst(ExitCode::HostFailed),
            _ => self.hosts,
        }
    }
}

/// `plan`; with `out`, the plan is also written there for `apply --plan`. It takes no
/// interrupts: nothing it does needs to be finished before it stops.
pub async fn plan(
    opts: &RunOptions,
    out: Option<&Path>,
    events: Events,
) -> Result<PlanOutcome, RunError> {
    let loaded = run::load_for_changes(opts)?;
    let gather = GatherOptions {
        forks: opts.forks,
        keep_sessions: false,
        interrupts: None,
        done: None,
    };
    let gathers = run::gather_fleet("plan", &loaded, gather, &events)
        .await?
        .gathers;
    let earlier = check::Earlier::load(&opts.report_dir);
    let reports = check::evaluate_all(&loaded.playbook, &gathers, &earlier);
    let file = build(&loaded, opts, &gathers, &reports);
    let spawn_user_fixes = SpawnFixes {
        enabled: loaded.playbook.fix_spawn_user,
        hosts: gathers
            .iter()
            .filter(|g| super::spawn_fix::needs_fix(g))
            .filter_map(|g| {
                let f = g.outcome.as_ref().ok()?.facts.flavour;
                Some(SpawnFix {
                    host: g.host.name.clone(),
                    template: f.master_template().to_string(),
                    user: f.user().to_string(),
                })
            })
            .collect(),
    };
    let written = out.map(|p| file.write(p).map(|()| p.to_path_buf()));
    Ok(PlanOutcome {
        file,
        spawn_user_fixes,
        written,
        hosts: check::exit_code(&reports),
    })
}
