//! The bridge from parsed arguments to the engine for `check`, `plan` and `apply`: builds
//! the async runtime, starts logging, the keyring and the event consumer (progress bars,
//! audit log) and the signal handlers, runs the command, shows what it found, hands
//! its report to `--on-drift`, `--webhook` and `--pushgateway`, and gives back its exit
//! code.

use std::future::Future;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use tracing::Instrument as _;

use super::http::Endpoint;
use super::{ApplyArgs, CommonOpts, Format, PlanArgs, RunArgs};
use crate::engine::apply::{self, ApplyOptions};
use crate::engine::events::Events;
use crate::engine::run::{self as engine_run, RunOptions};
use crate::exit::ExitCode;
use crate::report::model::Report;
use crate::ui::logging::{self, LogOptions};
use crate::ui::progress::{self, ProgressMode};

impl From<&RunArgs> for RunOptions {
    fn from(a: &RunArgs) -> Self {
        RunOptions {
            inventory: a.inventory.clone(),
            playbook: a.playbook.clone(),
            limit: a.common.limit.clone(),
            forks: a.common.forks,
            report_dir: a.common.report_dir.clone(),
            json: a.common.format == Format::Json,
            metrics_file: a.common.metrics_file.clone(),
            shard: a.common.shard,
            ssh_config: a.common.ssh_config_path(),
            split_by_group: a.common.split_by == Some(super::SplitBy::Group),
            controls: a.common.controls.clone(),
            skip_controls: a.common.skip_controls.clone(),
            waivers: a.common.waivers.clone(),
        }
    }
}

/// Sets up everything a command that talks to nodes needs, in one place: the tracing
/// subscriber (stderr log lines, progress bars, `--log-file`), the OS keyring (for
/// passwords and passphrases), the async runtime and the event consumer; then runs the
/// engine future under the run's span (the overall bar; host spans become its
/// children) and returns its exit code.
pub(super) fn with_runtime<F, Fut>(command: &'static str, common: &CommonOpts, body: F) -> ExitCode
where
    F: FnOnce(Events) -> Fut,
    Fut: Future<Output = ExitCode>,
{
    let mode = ProgressMode::from_flags(
        common.progress,
        common.quiet > 0 || common.format == Format::Json,
    );
    if let Err(e) = logging::init(&LogOptions {
        verbose: common.verbose,
        quiet: common.quiet,
        bars: mode.enabled(),
        log_file: common.log_file.clone(),
    }) {
        eprintln!("carbonio-fleet: {e}");
        return ExitCode::Usage;
    }
    // Without a keyring, password and passphrase lookups find nothing; agent and
    // unencrypted keys still work, so this is a warning, not the end of the run.
    crate::secrets::set_secrets_dir(common.secrets_dir.clone());
    if let Err(e) = crate::secrets::init_default_store() {
        tracing::warn!("{e}; passwords and key passphrases cannot be read from the keyring");
    }
    let Some(rt) = runtime() else {
        return ExitCode::Usage;
    };
    rt.block_on(step(command, body))
}

/// The async runtime every command runs on; `None` (after saying why) when it cannot start.
pub(super) fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("carbonio-fleet: cannot start the async runtime: {e}");
            None
        }
    }
}

/// Runs one engine command under its progress span, with the event consumer that feeds
/// the bars and the audit log; returns the command's exit code. `body` shows what the
/// command found before the bars are cleared.
pub(super) async fn step<F, Fut>(command: &'static str, body: F) -> ExitCode
where
    F: FnOnce(Events) -> Fut,
    Fut: Future<Output = ExitCode>,
{
    let span = progress::run_span(command);
    let (events, rx) = Events::channel();
    let consumer = tokio::spawn(progress::run(rx, span.clone()));
    let code = body(events).instrument(span.clone()).await;
    // The body dropped its sender: the consumer drains what is left and ends.
    let _ = consumer.await;
    // Closing the run span clears the bars; the summary is already printed above them.
    drop(span);
    code
}

/// Where a run's report goes once it is written: `--on-drift`, `--webhook`,
/// `--pushgateway`, resolved and checked before the run (a bad URL is a usage error, not
/// a surprise after an hour's sweep).
struct Deliveries {
    webhook: Option<Endpoint>,
    /// The gateway and the group's instance name.
    pushgateway: Option<(Endpoint, String)>,
}

impl Deliveries {
    fn resolve(common: &CommonOpts, inventory: &Path) -> Result<Deliveries, String> {
        let webhook_url = match (&common.webhook, &common.webhook_file) {
            (Some(_), Some(_)) => {
                return Err("--webhook (or CARBONIO_FLEET_WEBHOOK_URL) and --webhook-file both give the webhook URL; keep one".into());
            }
            (Some(url), None) => Some(url.clone()),
            (None, Some(file)) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| format!("--webhook-file: cannot read `{}`: {e}", file.display()))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        let webhook = webhook_url
            .map(|u| Endpoint::parse(&u).map_err(|e| format!("--webhook: {e}")))
            .transpose()?;
        let pushgateway = common
            .pushgateway
            .as_deref()
            .map(|u| Endpoint::parse(u).map_err(|e| format!("--pushgateway: {e}")))
            .transpose()?
            .map(|gw| (gw, super::pushgateway::instance(inventory, common.shard)));
        Ok(Deliveries {
            webhook,
            pushgateway,
        })
    }

    /// After the run: the hook and the webhook on new drift, the push always (when the run
    /// wrote a report). None of them changes the exit code.
    fn after_run(&self, common: &CommonOpts, previous: Option<&(PathBuf, Report)>) {
        let dir = &common.report_dir;
        if let Some(cmd) = &common.on_drift {
            super::alert::on_drift(cmd, dir, previous);
        }
        if let Some(to) = &self.webhook {
            super::webhook::send(to, super::alert::fresh_drift(dir, previous).as_ref());
        }
        if let Some((gw, instance)) = &self.pushgateway
            && let Some((_, report)) = super::alert::fresh_report(dir, previous)
        {
            super::pushgateway::push(gw, &report, instance);
        }
    }
}

/// [`Deliveries::resolve`], or the usage error said.
fn deliveries(common: &CommonOpts, inventory: &Path) -> Result<Deliveries, ExitCode> {
    Deliveries::resolve(common, inventory).map_err(|e| {
        eprintln!("carbonio-fleet: {e}; nothing was contacted");
        ExitCode::Usage
    })
}

/// `check` on the current runtime, with its signal handlers (the first interrupt lets
/// the hosts in flight finish); what it found shown, its exit code.
pub(super) async fn check_now(opts: &RunOptions, events: Events) -> ExitCode {
    let interrupts = super::signals::watch("hosts");
    let result = engine_run::check(opts, &interrupts, events).await;
    super::show::run_result(&result, opts.json)
}

pub(super) fn check(a: &RunArgs) -> ExitCode {
    let deliveries = match deliveries(&a.common, &a.inventory) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let opts = RunOptions::from(a);
    let previous = super::alert::latest(&a.common.report_dir);
    let code = with_runtime("check", &a.common, |events| async move {
        check_now(&opts, events).await
    });
    deliveries.after_run(&a.common, previous.as_ref());
    code
}

pub(super) fn plan(p: &PlanArgs) -> ExitCode {
    let a = &p.run;
    // plan writes no report: options that only shape one are refused, not ignored.
    let ignored: Vec<&str> = [
        ("--split-by", a.common.split_by.is_some()),
        ("--metrics-file", a.common.metrics_file.is_some()),
        ("--on-drift", a.common.on_drift.is_some()),
        (
            "--webhook",
            a.common.webhook.is_some() || a.common.webhook_file.is_some(),
        ),
        ("--pushgateway", a.common.pushgateway.is_some()),
    ]
    .into_iter()
    .filter_map(|(flag, set)| set.then_some(flag))
    .collect();
    if !ignored.is_empty() {
        eprintln!(
            "carbonio-fleet: plan writes no report, so {} would do nothing (they are for check and apply); nothing was contacted",
            ignored.join(" and ")
        );
        return ExitCode::Usage;
    }
    let opts = RunOptions::from(a);
    let out = p.out.clone();
    with_runtime("plan", &a.common, |events| async move {
        match crate::engine::plan::plan(&opts, out.as_deref(), events).await {
            Ok(outcome) => super::show::plan_outcome(&outcome, &opts),
            Err(e) => super::show::refused(&e),
        }
    })
}

/// `apply` on the current runtime, with its signal handlers (the first interrupt lets
/// the restarts in flight finish): prepared, confirmed unless `--yes`, a reviewed plan
/// or nothing to do, carried out; what it did shown, its exit code.
pub(super) async fn apply_now(opts: &ApplyOptions, events: Events) -> ExitCode {
    // A reviewed plan is the confirmation (as `terraform apply PLANFILE`); otherwise
    // apply asks on the terminal, or needs `--yes` where there is none.
    if !opts.yes && opts.plan.is_none() && !std::io::stdin().is_terminal() {
        eprintln!(
            "carbonio-fleet: apply changes nodes and restarts mail services; with no terminal to confirm on, pass --yes"
        );
        return ExitCode::Usage;
    }
    let interrupts = super::signals::watch("restarts");
    let prepared = match apply::prepare(opts, &interrupts, &events).await {
        Ok(p) => p,
        Err(e) => return super::show::refused(&e),
    };
    if let Some(p) = prepared.as_planned() {
        super::show::as_planned(&p);
    }
    if prepared.needs_confirmation()
        && !interrupts.any()
        && !super::show::confirm(&prepared.proposal())
    {
        // Dropping what was prepared closes the sessions and releases the lock.
        eprintln!("carbonio-fleet: not confirmed; nothing was changed");
        return ExitCode::Usage;
    }
    let result = apply::execute(prepared, events).await;
    super::show::run_result(&result, opts.run.json)
}

pub(super) fn apply(a: &ApplyArgs) -> ExitCode {
    let deliveries = match deliveries(&a.run.common, &a.run.inventory) {
        Ok(d) => d,
        Err(code) => return code,
    };

    let opts = ApplyOptions {
        run: RunOptions::from(&a.run),
        yes: a.yes,
        resume: a.resume,
        retry_failed: a.retry_failed,
        fix_spawn_user: a.fix_spawn_user,
        no_rollback: a.no_rollback,
        replace_overrides: a.replace_overrides,
        unstage: a.unstage,
        plan: a.plan.clone(),
    };
    let previous = super::alert::latest(&a.run.common.report_dir);
    let code = with_runtime("apply", &a.run.common, |events| async move {
        apply_now(&opts, events).await
    });
    deliveries.after_run(&a.run.common, previous.as_ref());
    code
}
