//! Before anything changes: the targets (`--resume`, `--retry-failed`), the staging
//! plan, and `--plan FILE` read and checked against the fleet just gathered.

use std::collections::{BTreeMap, BTreeSet};

use crate::engine::changes::{self, ChangePlan};
use crate::engine::gather::HostGather;
use crate::engine::journal::{self};
use crate::engine::outcome::RunError;
use crate::engine::run::RunOptions;
use crate::engine::stage::{self};
use crate::flavour::Flavour;
use crate::inventory::Host;
use crate::playbook::Playbook;
use crate::report::model::{HostReport, HostStatus};
use crate::report::store;

use super::ApplyOptions;

/// Narrows the targets for `--resume` / `--retry-failed` from the last run's files.
pub(super) fn narrow_targets(
    opts: &ApplyOptions,
    hosts: Vec<Host>,
    resume: Option<&Resume>,
) -> Result<Vec<Host>, String> {
    let latest = opts.run.report_dir.join("latest");
    if opts.retry_failed {
        let report = store::read_report(&latest.join("report.json"))?;
        let failed: BTreeSet<String> = report
            .hosts
            .iter()
            .filter(|h| {
                h.status == HostStatus::Failed
                    || h.apply
                        .as_ref()
                        .is_some_and(|a| a.rollout.starts_with("failed"))
            })
            .map(|h| h.name.clone())
            .collect();
        let hosts: Vec<Host> = hosts
            .into_iter()
            .filter(|h| failed.contains(&h.name))
            .collect();
        if hosts.is_empty() {
            return Err(format!(
                "--retry-failed: the last run ({}) has no failed host among the selected hosts",
                latest.display()
            ));
        }
        return Ok(hosts);
    }
    if let Some(resume) = resume {
        let done: BTreeSet<String> = journal::done_hosts(&resume.entries).into_iter().collect();
        let hosts: Vec<Host> = hosts
            .into_iter()
            .filter(|h| !done.contains(&h.name))
            .collect();
        if hosts.is_empty() {
            return Err(format!(
                "--resume: every selected host is done according to `{}`",
                resume.path.display()
            ));
        }
        return Ok(hosts);
    }
    Ok(hosts)
}

/// The `rcpt` of the playbook's first SMTP probe, if it names one.
pub(super) fn smtp_probe_rcpt(playbook: &crate::playbook::Playbook) -> Option<&str> {
    playbook.probes.iter().find_map(|p| match &p.kind {
        crate::playbook::ProbeKind::Smtp { rcpt } => rcpt.as_deref(),
        _ => None,
    })
}

/// The options of apply that shape its staging plan (`plan` uses the defaults: it has
/// none of these flags).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StagingOptions {
    pub replace_overrides: bool,
    pub unstage: bool,
    pub resume: bool,
}

impl From<&ApplyOptions> for StagingOptions {
    fn from(o: &ApplyOptions) -> Self {
        StagingOptions {
            replace_overrides: o.replace_overrides,
            unstage: o.unstage,
            resume: o.resume,
        }
    }
}

/// Hosts the inventory pins to the old values (var `pin = "true"`).
pub(crate) fn pinned_hosts(hosts: &[Host]) -> BTreeSet<String> {
    hosts
        .iter()
        .filter(|h| h.vars.get(stage::PIN_VAR).is_some_and(|v| v == "true"))
        .map(|h| h.name.clone())
        .collect()
}

/// The staging plan for this run: `--replace-overrides` decides the masked case; with
/// `--unstage` only the entries found staged, and no other change. `plan` calls it too,
/// so that it shows what apply would really do.
pub(crate) fn plan_staging(
    opts: StagingOptions,
    playbook: &Playbook,
    before: &[HostReport],
    pinned: &BTreeSet<String>,
    change_plan: &mut ChangePlan,
) -> stage::StagePlan {
    let blocked: Vec<(String, String)> = change_plan
        .blocked
        .iter()
        .map(|b| (b.cluster.clone(), b.control.clone()))
        .collect();
    let mut plan = stage::plan(playbook, before, &blocked, opts.replace_overrides);
    // A pinned node is not staged: promotion gives it a permanent entry with the old
    // values instead.
    plan.nodes.retain(|name, _| !pinned.contains(name));
    if opts.unstage {
        *change_plan = ChangePlan::default();
        for n in plan.nodes.values_mut() {
            n.entries.retain(|e| e.present);
            n.masked.clear();
        }
        plan.nodes.retain(|_, n| !n.entries.is_empty());
    } else if !opts.resume {
        // A cluster that holds staged entries of another run (in LDAP: another machine,
        // inventory or report directory may have written them) is not this run's to
        // continue: only `--resume` finishes it, only `--unstage` undoes it.
        // Per cluster, its hosts that hold entries staged by an earlier run.
        let mut taken: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for h in before {
            if plan
                .nodes
                .get(&h.name)
                .is_some_and(|n| n.entries.iter().any(|e| e.present))
            {
                taken
                    .entry(h.cluster.clone())
                    .or_default()
                    .push(h.name.clone());
            }
        }
        for (cluster, holders) in &taken {
            if let Some(g) = change_plan.global.remove(cluster) {
                for c in g.changes {
                    change_plan.blocked.push(changes::Blocked {
                        control: c.control,
                        cluster: cluster.clone(),
                        because_of: holders.clone(),
                        reason: format!(
                            "the cluster holds staged entries of another run (on {}): finish that run with `carbonio-fleet apply --resume`, or undo it with `carbonio-fleet apply --unstage`",
                            holders.join(", ")
                        ),
                    });
                }
            }
            let members: BTreeSet<&str> = before
                .iter()
                .filter(|h| &h.cluster == cluster)
                .map(|h| h.name.as_str())
                .collect();
            plan.nodes
                .retain(|name, _| !members.contains(name.as_str()));
        }
    }
    plan
}

/// What `--resume` continues: the last apply's journal (found past a `check` that moved
/// `latest`), read once, before this run's directory exists.
pub(super) struct Resume {
    pub(super) path: std::path::PathBuf,
    pub(super) entries: Vec<journal::Entry>,
}

impl Resume {
    pub(super) fn read(report_dir: &std::path::Path) -> Result<Resume, String> {
        let path = store::newest_with(report_dir, journal::FILE_NAME)
            .unwrap_or_else(|| report_dir.join("latest").join(journal::FILE_NAME));
        let entries = journal::read(&path)
            .map_err(|e| format!("--resume: cannot read `{}`: {e}", path.display()))?;
        Ok(Resume { path, entries })
    }

    /// Hosts whose gate passed there: a staged node proven there is not gated again.
    /// A later failure or rollback cancels it.
    pub(super) fn proven(&self) -> BTreeSet<String> {
        let mut proven = BTreeSet::new();
        for e in &self.entries {
            match e.step.as_str() {
                "gate-passed" | "proven-earlier" => {
                    proven.insert(e.host.clone());
                }
                "gate-failed" | "rolled-back" | "stage-failed" | "restart-failed" => {
                    proven.remove(&e.host);
                }
                _ => {}
            }
        }
        proven
    }

    /// The run directory it continues (the report's `resumed_from`).
    pub(super) fn run_name(&self) -> Option<String> {
        self.path
            .parent()?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n != "latest")
    }
}

/// Reads a plan file and the run options its selection gives (`--limit` and the like
/// given too must say the same as the plan's).
pub(super) fn read_plan(
    path: &std::path::Path,
    run: &RunOptions,
) -> Result<(crate::engine::plan_file::PlanFile, RunOptions), String> {
    let plan = crate::engine::plan_file::PlanFile::read(path).map_err(|e| e.to_string())?;
    let sel = crate::engine::plan_file::selection_for_apply(
        &plan.selection,
        &crate::engine::plan::selection_of(run),
    )?;
    let shard = match &sel.shard {
        None => None,
        Some(s) => Some(s.parse::<crate::inventory::Shard>().map_err(|e| {
            format!(
                "plan file `{}` is not a carbonio-fleet plan: selection.shard: {e}",
                path.display()
            )
        })?),
    };
    let run = RunOptions {
        limit: sel.limit,
        shard,
        controls: sel.controls,
        skip_controls: sel.skip_controls,
        ..run.clone()
    };
    Ok((plan, run))
}

/// Whether the fleet apply just gathered is the one the plan was made from, and apply's
/// decisions are the plan's; otherwise every difference ([`RunError::PlanOutdated`]).
/// Nothing has been changed on any node at this point.
pub(super) fn matches_plan(
    path: &std::path::Path,
    plan: &crate::engine::plan_file::PlanFile,
    (playbook, gathers, before): (&Playbook, &[HostGather], &[HostReport]),
    (change_plan, stage_plan, spawn_fixes): (&ChangePlan, &stage::StagePlan, &[(String, Flavour)]),
) -> Result<(), RunError> {
    use crate::engine::plan_file::{basis, check_decisions, compare};
    let differences = compare(&plan.basis, &basis(playbook, gathers, before));
    let fixes: Vec<String> = spawn_fixes.iter().map(|(h, _)| h.clone()).collect();
    let decisions = if differences.is_empty() {
        check_decisions(plan, change_plan, stage_plan, &fixes)
    } else {
        Vec::new()
    };
    if differences.is_empty() && decisions.is_empty() {
        return Ok(());
    }
    Err(RunError::PlanOutdated {
        path: path.to_path_buf(),
        created_at: plan.created_at.clone(),
        differences,
        decisions,
    })
}
