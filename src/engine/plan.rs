//! `plan`: what apply would do, per cluster and per host, as the exact commands an
//! operator could paste: what each MTA's server entry gets staged with, the promotion of
//! each cluster, and the reload batches. Read-only: it gathers like `check`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::carbonio::flavour::Flavour;
use crate::carbonio::prov;
use crate::engine::changes::{self, ChangePlan, NodeBatch};
use crate::engine::check;
use crate::engine::events::Events;
use crate::engine::rollout::{self, RolloutNode};
use crate::engine::run::{self, RunOptions};
use crate::engine::stage::{self, StagePlan};
use crate::inventory::Host;
use crate::report::model::{HeldBy, HostReport, HostStatus};
use crate::ssh::{RunAs, command_line, wrap};

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

impl SpawnFixes {
    fn render(&self, s: &mut String) {
        if self.hosts.is_empty() {
            return;
        }
        let how = if self.enabled {
            "apply repairs it (`[fix] spawn_user = true` in the playbook)"
        } else {
            "apply repairs it with `--fix-spawn-user` (or `[fix] spawn_user = true` in the playbook); without, the policy controls stay blocked there"
        };
        let _ = writeln!(s, "\npolicy spawn user (PRE-POLICY-SPAWN-USER): {how}");
        for f in &self.hosts {
            let _ = writeln!(
                s,
                "  {}: as root, back up {} and set user={} on its policy entry; as {}, configrewrite mta",
                f.host, f.template, f.user, f.user
            );
        }
    }
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

/// What apply would do: the changes, the staging, the reload batches.
#[derive(Clone, Copy)]
pub struct Planned<'a> {
    pub changes: &'a ChangePlan,
    pub staging: &'a StagePlan,
    pub batches: &'a [Vec<String>],
    pub held_by: &'a BTreeMap<String, Vec<HeldBy>>,
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

/// Renders the plan for humans.
pub fn render(
    playbook_name: &str,
    hosts: &[Host],
    reports: &[HostReport],
    planned: Planned<'_>,
    commands: &BTreeMap<String, Vec<String>>,
    restart: crate::playbook::RestartMethod,
) -> String {
    let Planned {
        changes: plan,
        staging,
        batches,
        held_by,
    } = planned;
    let mut s = String::new();
    let by_name: BTreeMap<&str, &HostReport> =
        reports.iter().map(|r| (r.name.as_str(), r)).collect();
    let _ = writeln!(s, "plan · {playbook_name} · {} hosts", hosts.len());
    if plan.is_empty() && batches.is_empty() {
        let _ = writeln!(s, "\nnothing to change and nothing to restart");
    }
    let paste =
        |args: &[String]| command_line(args).unwrap_or_else(|e| format!("(cannot quote: {e})"));
    let user_of = |node: &str| {
        by_name
            .get(node)
            .and_then(|r| r.flavour)
            .unwrap_or_default()
            .user()
    };
    for (node, st) in &staging.nodes {
        let _ = writeln!(
            s,
            "\n{node}: staged on server entry {} in its rollout batch, as {}",
            st.server,
            user_of(node)
        );
        for e in &st.entries {
            let what = if e.present {
                "already staged by an earlier run"
            } else {
                e.kind.as_str()
            };
            let _ = writeln!(
                s,
                "  zmprov {}    # {what}",
                paste(&e.stage_args(&st.server))
            );
        }
        for m in &st.masked {
            let _ = writeln!(s, "  NOT staged: {} ({})", m.control, m.reason);
        }
    }
    for (cluster, b) in &plan.global {
        let _ = writeln!(
            s,
            "\ncluster {cluster}: promotion, once every MTA LDAP lists passed its gate, on {} as {}",
            b.node,
            user_of(&b.node)
        );
        for c in &b.changes {
            let _ = writeln!(s, "  zmprov {}", paste(&c.args));
        }
        if let Some(held) = held_by.get(cluster) {
            let _ = writeln!(
                s,
                "  promotion-held: even if every staged MTA passes, the global config stays untouched (exit 2):"
            );
            for h in held {
                let _ = writeln!(s, "    held by {}: {}", h.name(), h.reason);
            }
        }
        if let Some(cmds) = commands.get(&format!("promote:{cluster}")) {
            let _ = writeln!(
                s,
                "  then the temporary server entries are removed; sent as one batch (with read-back):\n    {}",
                cmds[0].replace('\n', "\n    ")
            );
        }
    }
    for (node, b) in &plan.server {
        let _ = writeln!(s, "\n{node}: server entry, as {}", user_of(node));
        for c in &b.changes {
            let _ = writeln!(s, "  zmprov {}", paste(&c.args));
        }
        if let Some(cmds) = commands.get(node) {
            let _ = writeln!(
                s,
                "  sent as one batch (with read-back):\n    {}",
                cmds.last()
                    .cloned()
                    .unwrap_or_default()
                    .replace('\n', "\n    ")
            );
        }
    }
    if !plan.blocked.is_empty() {
        let _ = writeln!(s, "\nnot changed (blocked):");
        for b in &plan.blocked {
            let _ = writeln!(s, "  {} in cluster {}: {}", b.control, b.cluster, b.reason);
        }
    }
    if !batches.is_empty() {
        let _ = writeln!(
            s,
            "\nreloads/restarts (MTA nodes whose effective config changes):"
        );
        for (i, b) in batches.iter().enumerate() {
            let methods: Vec<String> = b
                .iter()
                .map(|n| {
                    let m = by_name
                        .get(n.as_str())
                        .and_then(|r| {
                            crate::carbonio::services::mta_action(
                                restart,
                                r.platform?,
                                r.flavour.unwrap_or_default(),
                            )
                        })
                        .map(|a| a.label())
                        .unwrap_or_else(|| "?".into());
                    format!("{n} ({m})")
                })
                .collect();
            let label = if i == 0 { " (canary)" } else { "" };
            let _ = writeln!(s, "  batch {}{label}: {}", i + 1, methods.join(", "));
        }
    }
    s
}

/// `plan`.
pub async fn plan(opts: &RunOptions, events: Events) -> i32 {
    let loaded = match run::load_for_changes(opts) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let gathers = match run::gather_fleet("plan", &loaded, opts.forks, false, None, &events).await {
        Ok(f) => f.gathers,
        Err(code) => return code,
    };
    let earlier = check::Earlier::load(&opts.report_dir);
    let reports = check::evaluate_all(&loaded.playbook, &gathers, &earlier);
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
    let cplan = changes::plan(&loaded.playbook, &reports);
    let blocked: Vec<(String, String)> = cplan
        .blocked
        .iter()
        .map(|b| (b.cluster.clone(), b.control.clone()))
        .collect();
    let staging = stage::plan(&loaded.playbook, &reports, &blocked, false);
    let held_by = foreseen_holds(&cplan, &staging, &gathers, &loaded.inventory.hosts);
    let candidates = restart_candidates(
        &reports,
        &cplan,
        &staging,
        loaded.playbook.rollout.only_if_changed,
    );
    let batches = rollout::plan_batches(&candidates, &loaded.playbook.rollout);
    let host_by: BTreeMap<&str, &Host> =
        loaded.hosts.iter().map(|h| (h.name.as_str(), h)).collect();
    let flavour_by: BTreeMap<&str, Flavour> = reports
        .iter()
        .filter_map(|r| r.flavour.map(|f| (r.name.as_str(), f)))
        .collect();
    let server_by: BTreeMap<&str, String> = reports
        .iter()
        .filter_map(|r| r.carbonio_hostname.clone().map(|c| (r.name.as_str(), c)))
        .collect();
    let mut commands: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut line_for = |key: String, b: &NodeBatch| {
        if let (Some(h), Some(server)) =
            (host_by.get(b.node.as_str()), server_by.get(b.node.as_str()))
        {
            let flavour = flavour_by.get(b.node.as_str()).copied().unwrap_or_default();
            let line = batch_command(h, flavour, b, server)
                .unwrap_or_else(|e| format!("(cannot build: {e})"));
            commands.entry(key).or_default().push(line);
        }
    };
    for b in cplan.server.values() {
        line_for(b.node.clone(), b);
    }
    // The promotion batch: the global changes, then the removal of every temporary
    // entry of the cluster's MTAs, as apply sends it when nothing holds it.
    for (cluster, b) in &cplan.global {
        let mut batch = b.clone();
        for r in reports.iter().filter(|r| &r.cluster == cluster) {
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
        line_for(format!("promote:{cluster}"), &batch);
    }
    // Bars (if any) are lifted while the plan prints, so it is never torn.
    tracing_indicatif::suspend_tracing_indicatif(|| {
        if opts.json {
            let out = PlanOutput {
                changes: cplan,
                staging,
                promotion_held_by: held_by,
                batches,
                commands,
                spawn_user_fixes,
            };
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        } else {
            let text = render(
                &loaded.playbook.name,
                &loaded.hosts,
                &reports,
                Planned {
                    changes: &cplan,
                    staging: &staging,
                    batches: &batches,
                    held_by: &held_by,
                },
                &commands,
                loaded.playbook.rollout.restart,
            );
            // Values read from the nodes are in it: never raw onto the terminal.
            print!("{}", crate::ui::safe::terminal_safe(&text));
            let mut fixes = String::new();
            spawn_user_fixes.render(&mut fixes);
            print!("{fixes}");
            let failed: Vec<&str> = reports
                .iter()
                .filter(|r| r.status == HostStatus::Failed)
                .map(|r| r.name.as_str())
                .collect();
            if !failed.is_empty() {
                println!(
                    "\nnot planned (could not be gathered): {}",
                    failed.join(", ")
                );
            }
        }
    });
    check::exit_code(&reports)
}
