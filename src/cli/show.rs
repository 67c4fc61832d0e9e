//! Everything a run says to people, in one place: the engine's outcomes and errors put
//! into words on stdout and stderr (the summary, the plan, the report's path, why a run
//! was refused), apply's confirmation prompt, and the exit code each one earns.

use std::fmt;
use std::io::Write as _;

use crate::config_error::ConfigErrors;
use crate::engine::apply::{AsPlanned, Proposal};
use crate::engine::outcome::{RunError, RunOutcome};
use crate::engine::plan::PlanOutcome;
use crate::engine::run::RunOptions;
use crate::exit::ExitCode;
use crate::report::model::Report;

/// One file's configuration errors as every command shows them, then how many and that
/// nothing was contacted.
struct Refusal<'a> {
    errors: &'a ConfigErrors,
    what: &'a str,
}

impl fmt::Display for Refusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.errors().len();
        write!(
            f,
            "{}\ncarbonio-fleet: {n} error{} in the {}; nothing was contacted",
            self.errors,
            if n == 1 { "" } else { "s" },
            self.what
        )
    }
}

/// Says a file's configuration errors on stderr; a usage error.
pub fn config_failed(errors: &ConfigErrors, what: &str) -> ExitCode {
    eprintln!("{}", Refusal { errors, what });
    ExitCode::Usage
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const P: &str = "carbonio-fleet:";
        match self {
            RunError::Config(failures) => {
                let shown: Vec<String> = failures
                    .iter()
                    .map(|c| {
                        Refusal {
                            errors: &c.errors,
                            what: c.what,
                        }
                        .to_string()
                    })
                    .collect();
                f.write_str(&shown.join("\n"))
            }
            RunError::Controls(e) => {
                write!(
                    f,
                    "{P} --controls/--skip-controls: {e}; nothing was contacted"
                )
            }
            RunError::Limit(e) | RunError::Targets(e) => write!(f, "{P} {e}"),
            RunError::EmptyShard { shard, selected } => write!(
                f,
                "{P} shard {shard} holds no hosts of this selection \
                 ({selected} selected hosts went to other shards); nothing to do, no report written"
            ),
            RunError::WaiverConflicts(conflicts) => {
                for c in conflicts {
                    writeln!(f, "{P} --waivers: {c}")?;
                }
                write!(
                    f,
                    "{P} the waivers would leave a dependency unmet; nothing was contacted"
                )
            }
            RunError::Unsendable(e) => {
                write!(f, "{P} playbook value cannot be sent to a node: {e}")
            }
            RunError::PlanUnreadable(e) | RunError::Locked(e) => {
                write!(f, "{P} {e}; nothing was contacted")
            }
            RunError::PlanSources { path, wrong } => {
                for w in wrong {
                    writeln!(f, "  {w}")?;
                }
                write!(
                    f,
                    "{P} the plan `{}` was made from other files; nothing was contacted (make a new plan with `carbonio-fleet plan --out`)",
                    path.display()
                )
            }
            RunError::PlanOutdated {
                path,
                created_at,
                differences,
                decisions,
            } => {
                writeln!(
                    f,
                    "{P} the fleet changed since the plan `{}` was made ({created_at}):",
                    path.display()
                )?;
                for d in differences {
                    writeln!(f, "  {}", crate::ui::safe::terminal_safe(&d.to_string()))?;
                }
                for d in decisions {
                    writeln!(f, "  {d}")?;
                }
                write!(
                    f,
                    "{P} refused, nothing was changed on any node; review a new plan (`carbonio-fleet plan --out FILE`) and apply that"
                )
            }
            RunError::RunDir(e) => write!(f, "{P} {e}; nothing was changed"),
            RunError::Journal { dir, error } => write!(
                f,
                "{P} cannot open the journal in `{}`: {error}; nothing was changed",
                dir.display()
            ),
        }
    }
}

impl From<&RunError> for ExitCode {
    fn from(e: &RunError) -> ExitCode {
        match e {
            // Nothing to do is not a failure.
            RunError::EmptyShard { .. } => ExitCode::Ok,
            // Planned hosts that cannot be gathered: apply cannot prove they are as
            // planned. Otherwise the fleet drifted from the plan.
            RunError::PlanOutdated { differences, .. } => {
                if differences.iter().any(|d| d.is_unreachable()) {
                    ExitCode::HostFailed
                } else {
                    ExitCode::Drift
                }
            }
            // An apply that cannot record what it would do does not start.
            RunError::RunDir(_) | RunError::Journal { .. } => ExitCode::HostFailed,
            RunError::Config(_)
            | RunError::Controls(_)
            | RunError::Limit(_)
            | RunError::WaiverConflicts(_)
            | RunError::Unsendable(_)
            | RunError::PlanUnreadable(_)
            | RunError::Targets(_)
            | RunError::PlanSources { .. }
            | RunError::Locked(_) => ExitCode::Usage,
        }
    }
}

/// Says why the run stopped, on stderr; its exit code.
pub fn refused(e: &RunError) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(e)
}

/// A finished run: its summary on stdout (the report itself with `--format json`), then
/// where the report is, or why it could not be written; its exit code.
pub fn run_outcome(outcome: &RunOutcome, json: bool) -> ExitCode {
    // Bars (if any) are lifted while the summary prints, so it is never torn.
    tracing_indicatif::suspend_tracing_indicatif(|| write_summary(&outcome.report, json));
    match &outcome.written {
        Ok(dir) => {
            if !json {
                let path = dir.join("report.json");
                tracing_indicatif::suspend_tracing_indicatif(|| {
                    println!("report: {}", path.display())
                });
            }
        }
        Err(e) => eprintln!("carbonio-fleet: the report could not be written: {e}"),
    }
    outcome.exit_code()
}

/// [`run_outcome`] of what the engine handed back, or why it refused.
pub fn run_result(result: &Result<RunOutcome, RunError>, json: bool) -> ExitCode {
    match result {
        Ok(outcome) => run_outcome(outcome, json),
        Err(e) => refused(e),
    }
}

fn write_summary(report: &Report, json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let _ = serde_json::to_writer_pretty(&mut out, report);
        let _ = writeln!(out);
    } else {
        // Made terminal-safe inside, before its own colour is added.
        let layout = crate::ui::term::Layout::stdout();
        let _ = write!(out, "{}", crate::ui::summary::render_with(report, &layout));
    }
}

/// `plan`: the plan on stdout (as JSON with `--format json`), then where the plan file
/// went and how to apply exactly it; its exit code.
pub fn plan_outcome(outcome: &PlanOutcome, opts: &RunOptions) -> ExitCode {
    // Bars (if any) are lifted while the plan prints, so it is never torn.
    tracing_indicatif::suspend_tracing_indicatif(|| {
        if opts.json {
            let mut json = crate::engine::plan::json_output(&outcome.file);
            json.spawn_user_fixes = outcome.spawn_user_fixes.clone();
            println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            );
        } else {
            let text = crate::ui::plan_diff::render(
                &outcome.file,
                crate::ui::plan_diff::RenderOptions::for_stdout(),
            );
            print!("{text}");
        }
    });
    match &outcome.written {
        Some(Ok(p)) if !opts.json => {
            tracing_indicatif::suspend_tracing_indicatif(|| {
                println!(
                    "plan written to {}: apply exactly it with `carbonio-fleet apply -i {}{} --plan {}`",
                    p.display(),
                    opts.inventory.display(),
                    opts.playbook
                        .as_ref()
                        .map(|pb| format!(" -p {}", pb.display()))
                        .unwrap_or_default(),
                    p.display()
                )
            });
        }
        Some(Err(e)) => eprintln!("carbonio-fleet: {e}"),
        Some(Ok(_)) | None => {}
    }
    outcome.exit_code()
}

/// `apply --plan FILE`: the fleet is the one the plan was made from.
pub(super) fn as_planned(p: &AsPlanned<'_>) {
    eprintln!(
        "carbonio-fleet: the fleet is as planned in `{}` (made {} by {}); applying it",
        p.path.display(),
        p.created_at,
        p.operator
    );
}

/// Shows what apply will do on stderr and asks on stdin; `true` (only for an explicit
/// yes) to go ahead. Bars (if any) are lifted meanwhile.
pub(super) fn confirm(proposal: &Proposal<'_>) -> bool {
    tracing_indicatif::suspend_tracing_indicatif(|| ask(proposal))
}

fn ask(proposal: &Proposal<'_>) -> bool {
    let Proposal {
        changes: plan,
        staging,
        restarts,
        spawn_fixes,
    } = proposal;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "\napply will:");
    for (host, flavour) in spawn_fixes.iter() {
        let _ = writeln!(
            err,
            "  {host}: as root, back up {tpl} and set user={user} on its policy entry; as {user}, configrewrite mta",
            tpl = flavour.master_template(),
            user = flavour.user(),
        );
    }
    if !spawn_fixes.is_empty() {
        let _ = writeln!(
            err,
            "  then read those nodes again: the policy controls blocked below may then be changed too (and their MTAs restarted)"
        );
    }
    for (cluster, b) in &plan.global {
        let _ = writeln!(
            err,
            "  cluster {cluster}: stage on each MTA's server entry, batch by batch; once every MTA passed its gate, promote (on {}):",
            b.node
        );
        for c in &b.changes {
            let _ = writeln!(
                err,
                "    zmprov {}",
                crate::ssh::command_line(&c.args).unwrap_or_default()
            );
        }
    }
    for (node, b) in &plan.server {
        for c in &b.changes {
            let _ = writeln!(
                err,
                "  {node}: zmprov {}",
                crate::ssh::command_line(&c.args).unwrap_or_default()
            );
        }
    }
    for b in &plan.blocked {
        let _ = writeln!(
            err,
            "  NOT changing {} in cluster {}: {}",
            b.control, b.cluster, b.reason
        );
    }
    for (node, st) in &staging.nodes {
        for e in &st.entries {
            let _ = writeln!(err, "  {node}: {}", e.describe());
        }
        for m in &st.masked {
            let _ = writeln!(err, "  {node}: NOT staging {}: {}", m.control, m.reason);
        }
    }
    let _ = writeln!(
        err,
        "  then reload (or restart) up to {restarts} MTA node(s) in staggered batches"
    );
    let _ = write!(err, "Proceed? [y/N] ");
    let _ = err.flush();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim(), "y" | "Y" | "yes" | "YES")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_error::ConfigError;
    use crate::engine::outcome::ConfigFailure;
    use crate::engine::plan_file::Difference;

    fn difference(what: &str, now: &str) -> Difference {
        Difference {
            host: "mta1".into(),
            what: what.into(),
            was: "yes".into(),
            now: now.into(),
        }
    }

    fn outdated(differences: Vec<Difference>) -> RunError {
        RunError::PlanOutdated {
            path: "plan.json".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            differences,
            decisions: vec!["the staging of mta2 differs".into()],
        }
    }

    #[test]
    fn each_refusal_earns_its_exit_code() {
        let cases = [
            (
                RunError::EmptyShard {
                    shard: crate::inventory::Shard { index: 2, count: 9 },
                    selected: 3,
                },
                ExitCode::Ok,
            ),
            (RunError::Limit("no host matches".into()), ExitCode::Usage),
            (RunError::Locked("held by pid 7".into()), ExitCode::Usage),
            (
                outdated(vec![difference("reachable", "no")]),
                ExitCode::HostFailed,
            ),
            (
                outdated(vec![difference("MTA role", "no")]),
                ExitCode::Drift,
            ),
            (
                RunError::Journal {
                    dir: "r".into(),
                    error: "read-only".into(),
                },
                ExitCode::HostFailed,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(ExitCode::from(&e), want, "{e:?}");
        }
    }

    #[test]
    fn refusals_read_as_the_tool_always_said_them() {
        let errors = |file: &str| ConfigErrors(vec![ConfigError::file(file, "cannot read it")]);
        let both = RunError::Config(vec![
            ConfigFailure {
                errors: errors("inv.toml"),
                what: "inventory",
            },
            ConfigFailure {
                errors: errors("pb.toml"),
                what: "playbook",
            },
        ]);
        let text = both.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("inv.toml"), "{text}");
        assert!(
            lines.contains(&"carbonio-fleet: 1 error in the inventory; nothing was contacted"),
            "{text}"
        );
        assert_eq!(
            lines.last(),
            Some(&"carbonio-fleet: 1 error in the playbook; nothing was contacted")
        );
        let text = outdated(vec![difference("reachable", "no")]).to_string();
        assert_eq!(
            text,
            "carbonio-fleet: the fleet changed since the plan `plan.json` was made (2026-01-01T00:00:00Z):\n  \
             mta1: reachable was yes in the plan, now no\n  \
             the staging of mta2 differs\n\
             carbonio-fleet: refused, nothing was changed on any node; review a new plan (`carbonio-fleet plan --out FILE`) and apply that"
        );
        assert_eq!(
            RunError::WaiverConflicts(vec!["a".into(), "b".into()]).to_string(),
            "carbonio-fleet: --waivers: a\ncarbonio-fleet: --waivers: b\n\
             carbonio-fleet: the waivers would leave a dependency unmet; nothing was contacted"
        );
    }
}
