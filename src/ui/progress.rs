//! Progress on stderr: an overall bar (hosts done / total, ETA), the rollout batch, and
//! failures as whole lines printed above the bar (never torn). Hidden when stderr is not
//! a terminal (or `--progress never`), so pipes and files get no control bytes.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::engine::events::Event;

/// When to draw progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Auto,
    Always,
    Never,
}

impl ProgressMode {
    /// Whether bars are drawn on this stderr.
    pub fn enabled(self) -> bool {
        match self {
            ProgressMode::Always => true,
            ProgressMode::Never => false,
            ProgressMode::Auto => {
                std::io::stderr().is_terminal()
                    && std::env::var("TERM").map(|t| t != "dumb").unwrap_or(true)
            }
        }
    }
}

/// Consumes events until the stream ends, drawing progress when `mode` allows, and
/// forwarding every event to `also` (the audit log) when given.
pub async fn run(
    mut rx: UnboundedReceiver<Event>,
    mode: ProgressMode,
    mut also: Option<crate::ui::audit::AuditLog>,
) {
    let bar = if mode.enabled() {
        let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix} [{bar:30}] {pos}/{len} hosts {msg} ({elapsed}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.enable_steady_tick(Duration::from_millis(120));
        Some(b)
    } else {
        None
    };
    while let Some(ev) = rx.recv().await {
        if let Some(log) = also.as_mut() {
            log.record(&ev);
        }
        let Some(b) = &bar else { continue };
        match &ev {
            Event::RunStarted { command, hosts } => {
                b.set_prefix(command.to_string());
                b.set_length(*hosts as u64);
                b.set_position(0);
            }
            Event::HostGathered { .. } => b.inc(1),
            Event::HostFailed {
                host,
                kind,
                message,
            } => {
                b.inc(1);
                b.println(format!("  {host}: {kind}: {message}"));
            }
            Event::BatchStarted {
                number,
                hosts,
                canary,
            } => {
                b.set_prefix("rollout".to_string());
                b.set_length(hosts.len() as u64);
                b.set_position(0);
                let label = if *canary { " (canary)" } else { "" };
                b.set_message(format!("batch {number}{label}: {}", hosts.join(", ")));
            }
            Event::StepFinished {
                host,
                step,
                ok,
                detail,
            } if step == "restart+gate" => {
                b.inc(1);
                if !ok {
                    b.println(format!("  {host}: {detail}"));
                }
            }
            Event::Paused { duration } => {
                b.set_message(format!("pause {}", humantime::format_duration(*duration)));
            }
            Event::RunFinished { .. } => b.finish_and_clear(),
            _ => {}
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}
