//! The bridge from parsed arguments to the engine for `check`, `plan` and `apply`: builds
//! the async runtime, starts the event consumers (progress, audit log), runs the command
//! and hands back its exit code.

use std::future::Future;

use super::{ApplyArgs, CommonOpts, Format, Progress, RunArgs};
use crate::engine::apply::{self, ApplyOptions};
use crate::engine::events::Events;
use crate::engine::run::{self as engine_run, RunOptions};
use crate::exit;
use crate::ui::audit::AuditLog;
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
        }
    }
}

/// Options this build parses but does not implement yet: refuse them plainly rather than
/// ignore them.
fn refuse_unavailable(c: &CommonOpts) -> Option<i32> {
    let missing = if c.split_by.is_some() {
        Some(("--split-by", 8))
    } else {
        None
    };
    missing.map(|(opt, issue)| {
        eprintln!("carbonio-fleet: `{opt}` is not available in this build yet (it lands with issue #{issue})");
        exit::USAGE
    })
}

/// Runs an engine future with the event consumers of `common`.
pub(super) fn with_runtime<F, Fut>(common: &CommonOpts, body: F) -> i32
where
    F: FnOnce(Events) -> Fut,
    Fut: Future<Output = i32>,
{
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("carbonio-fleet: cannot start the async runtime: {e}");
            return exit::USAGE;
        }
    };
    let audit = match &common.log_file {
        Some(p) => match AuditLog::open(p) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!(
                    "carbonio-fleet: cannot open the log file `{}`: {e}",
                    p.display()
                );
                return exit::USAGE;
            }
        },
        None => None,
    };
    let mode = match (
        common.progress,
        common.quiet > 0 || common.format == Format::Json,
    ) {
        (Progress::Never, _) | (Progress::Auto, true) => ProgressMode::Never,
        (Progress::Always, _) => ProgressMode::Always,
        (Progress::Auto, false) => ProgressMode::Auto,
    };
    rt.block_on(async move {
        let (events, rx) = Events::channel();
        let consumer = tokio::spawn(progress::run(rx, mode, audit));
        let code = body(events).await;
        let _ = consumer.await;
        code
    })
}

pub(super) fn check(a: &RunArgs) -> i32 {
    if let Some(code) = refuse_unavailable(&a.common) {
        return code;
    }
    let opts = RunOptions::from(a);
    with_runtime(&a.common, |events| async move {
        engine_run::check(&opts, events).await
    })
}

pub(super) fn plan(a: &RunArgs) -> i32 {
    if let Some(code) = refuse_unavailable(&a.common) {
        return code;
    }
    let opts = RunOptions::from(a);
    with_runtime(&a.common, |events| async move {
        crate::engine::plan::plan(&opts, events).await
    })
}

pub(super) fn apply(a: &ApplyArgs) -> i32 {
    if let Some(code) = refuse_unavailable(&a.run.common) {
        return code;
    }
    let opts = ApplyOptions {
        run: RunOptions::from(&a.run),
        yes: a.yes,
        resume: a.resume,
        retry_failed: a.retry_failed,
    };
    with_runtime(&a.run.common, |events| async move {
        apply::apply(&opts, events).await
    })
}
