//! `simulate` (a standalone simulated fleet) and `demo` (a simulated fleet plus the
//! tool's own check → apply → check against it over real SSH).

use super::DemoArgs;
use super::run::{apply_now, check_now, runtime, step};
use crate::engine::apply::ApplyOptions;
use crate::engine::run::RunOptions;
use crate::exit::ExitCode;
use crate::report::model::HostStatus;
use crate::ui::logging::{self, LogOptions};
use crate::ui::progress::ProgressMode;
use carbonio_sim::{Fleet, SimulateOptions, demo_spec, run_simulate};

pub(super) fn simulate(a: &SimulateOptions) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::Usage;
    };
    match rt.block_on(run_simulate(a.clone())) {
        Ok(()) => ExitCode::Ok,
        Err(e) => {
            eprintln!("error: {}", e.with_causes());
            ExitCode::Usage
        }
    }
}

/// Prints `text` wrapped to the terminal's width, each of its lines a paragraph.
fn say(text: &str) {
    let layout = crate::ui::term::Layout::stdout();
    for para in text.split('\n') {
        for line in layout.wrap(para, 0, 4) {
            println!("{line}");
        }
    }
}

fn banner(text: &str) {
    say(&format!("\n══ {text} ══\n"));
}

pub(super) fn demo(a: &DemoArgs) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::Usage;
    };
    let mode = ProgressMode::from_flags(a.progress, false);
    if let Err(e) = logging::init(&LogOptions {
        verbose: 0,
        quiet: 0,
        bars: mode.enabled(),
        log_file: None,
    }) {
        eprintln!("carbonio-fleet: {e}");
        return ExitCode::Usage;
    }
    rt.block_on(async move {
        let dir = match tempfile::Builder::new().prefix("carbonio-fleet-demo-").tempdir() {
            Ok(d) => d,
            Err(e) => {
                eprintln!("carbonio-fleet: cannot create a temporary directory: {e}");
                return ExitCode::Usage;
            }
        };
        let mut spec = demo_spec();
        spec.nodes.truncate(a.nodes.max(1));
        // Free ports differ between machines and runs: try a few bases.
        let mut fleet: Option<Fleet> = None;
        let mut last_err = String::new();
        for attempt in 0..20u16 {
            spec.port_base = 22000 + attempt * 97;
            match Fleet::start(spec.clone(), dir.path()).await {
                Ok(f) => {
                    fleet = Some(f);
                    break;
                }
                Err(e) => last_err = e.to_string(),
            }
        }
        let Some(fleet) = fleet else {
            eprintln!("carbonio-fleet: the simulated fleet could not start: {last_err}");
            return ExitCode::Usage;
        };
        // The shipped playbook, with a short pause between batches so the demo is quick.
        let playbook_path = dir.path().join("backscatter-demo.toml");
        let text = crate::playbook::DEFAULT_PLAYBOOK.replace("pause = \"5s\"", "pause = \"1s\"");
        if let Err(e) = std::fs::write(&playbook_path, text) {
            eprintln!("carbonio-fleet: cannot write the demo playbook: {e}");
            return ExitCode::Usage;
        }
        let clusters: std::collections::BTreeSet<&str> =
            spec.nodes.iter().map(|n| n.cluster.as_str()).collect();
        say(&format!(
            "carbonio-fleet demo: {} simulated Carbonio nodes in {} clusters, each a real SSH server \
             (russh) on 127.0.0.1:{}-{} with its own host key. Legacy (zmcontrol) and systemd nodes, \
             non-compliant, half-compliant and compliant ones, one whose server entry overrides a \
             global value, one that is unreachable. Like stock Carbonio, the nodes whose policy \
             daemon was never enabled spawn it as `user=zimbra`, a user no package creates.\n\
             Inventory:   {}\nknown_hosts: {} (strict host-key checking)",
            fleet.nodes().len(),
            clusters.len(),
            spec.port_base,
            spec.port_base as usize + fleet.nodes().len() - 1,
            fleet.inventory_path().display(),
            fleet.known_hosts_path().display(),
        ));
        let opts = RunOptions {
            inventory: fleet.inventory_path(),
            playbook: Some(playbook_path),
            limit: None,
            forks: super::args::DEFAULT_FORKS,
            report_dir: a.report_dir.clone(),
            json: false,
            metrics_file: None,
            shard: None,
            ssh_config: None,
            split_by_group: false,
            controls: None,
            skip_controls: Vec::new(),
            waivers: None,
        };

        banner("1/3  check: audit the fleet, change nothing");
        let o = opts.clone();
        let first = step("check", |ev| async move { check_now(&o, ev).await }).await;

        banner(
            "2/3  apply --fix-spawn-user: the stock policy entry set to user=zextras, the new values staged on each MTA's server entry batch by batch, Postfix reloads (no service stops) behind health gates with the policy socket, each cluster promoted once all its MTAs passed",
        );
        let ao = ApplyOptions {
            run: opts.clone(),
            yes: true,
            resume: false,
            retry_failed: false,
            fix_spawn_user: true,
            no_rollback: false,
            replace_overrides: false,
            unstage: false,
            plan: None,
        };
        let applied = step("apply", |ev| async move { apply_now(&ao, ev).await }).await;

        banner("3/3  check again: prove the result");
        let o = opts.clone();
        let last = step("check", |ev| async move { check_now(&o, ev).await }).await;
        fleet.shutdown().await;

        judge(&a.report_dir, [first, applied, last])
    })
}

/// The demo's end: its exit codes and where the reports are said, and whether it
/// succeeded: everything that may be changed ended compliant.
fn judge(report_dir: &std::path::Path, [first, applied, last]: [ExitCode; 3]) -> ExitCode {
    let latest = report_dir.join("latest");
    let report = crate::report::store::read_report(&latest.join("report.json"));
    // The apply's promotions: a cluster whose promotion only an unreachable MTA holds
    // keeps its staged entries, as it must.
    let held_by_unreachable: Vec<String> =
        crate::report::store::newest_with(report_dir, crate::engine::journal::FILE_NAME)
            .and_then(|j| crate::report::store::read_report(&j.with_file_name("report.json")).ok())
            .map(|r| {
                r.promotions
                    .into_iter()
                    .filter(|p| {
                        p.state == "promotion-held"
                            && p.held_by
                                .iter()
                                .all(|h| h.reason.starts_with("unreachable"))
                    })
                    .map(|p| p.cluster)
                    .collect()
            })
            .unwrap_or_default();
    say(&format!(
        "\nexit codes: first check {}, apply {}, final check {} \
         (3 = some host failed: the unreachable node; see the summary above).\n\
         The DOMAINS findings (SPF, DKIM, DMARC) are read-only evidence: they are fixed in \
         DNS and with zmdkimkeyutil, not by apply.",
        first.code(),
        applied.code(),
        last.code()
    ));
    say(&format!(
        "reports: {}/{{report.json, report.html, junit.xml, metrics.prom}} (and the apply run's journal.jsonl)",
        latest.display()
    ));
    // The demo succeeds when everything that may be changed ended compliant: what is
    // left must be the unreachable node (and anything a blocking finding holds).
    match report {
        Ok(r) => {
            let unexpected: Vec<&str> = r
                .hosts
                .iter()
                .filter(|h| h.status != HostStatus::Compliant)
                .filter(|h| h.error.is_none() || h.status != HostStatus::Failed)
                .filter(|h| !h.findings.iter().any(|f| f.blocking))
                .filter(|h| {
                    !(held_by_unreachable.contains(&h.cluster)
                        && h.findings
                            .iter()
                            .all(|f| f.id == crate::engine::stage::STAGED_FINDING))
                })
                .map(|h| h.name.as_str())
                .collect();
            if unexpected.is_empty() {
                println!("demo finished: every node that may be changed is compliant");
                ExitCode::Ok
            } else {
                eprintln!("demo: unexpected state on {}", unexpected.join(", "));
                ExitCode::HostFailed
            }
        }
        Err(e) => {
            eprintln!("carbonio-fleet: {e}");
            ExitCode::HostFailed
        }
    }
}
