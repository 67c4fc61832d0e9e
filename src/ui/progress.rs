//! Progress on stderr, drawn by tracing-indicatif: the overall bar (hosts done / total,
//! ETA; during apply's rollout, the current batch) on the run's span, fed by the engine
//! events, and below it a live spinner per in-flight host (the engine's `host` spans),
//! at most [`crate::ui::logging::MAX_BARS`] bars with "...and N more hosts" under them.
//! Log lines go through the same writer, so they print above the bars and never tear
//! them. Hidden when stderr is not a terminal, `TERM=dumb`, `--progress never`, `-q` or
//! `--format json` (see [`ProgressMode`]).

use std::io::IsTerminal as _;

use tokio::sync::mpsc::UnboundedReceiver;
use tracing::Span;
use tracing_indicatif::span_ext::IndicatifSpanExt as _;
use tracing_indicatif::style::ProgressStyle;

use crate::engine::events::Event;

/// When to draw progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// When stderr is a terminal (and `TERM` is not `dumb`).
    Auto,
    /// On a terminal even with `-q` or `--format json`. indicatif never draws into a
    /// pipe or file, so a non-terminal stderr still gets no bars.
    Always,
    Never,
}

impl ProgressMode {
    /// The mode for `--progress` given whether `-q`/`--format json` asked for quiet.
    pub fn from_flags(progress: crate::cli::Progress, quiet: bool) -> Self {
        use crate::cli::Progress;
        match (progress, quiet) {
            (Progress::Never, _) | (Progress::Auto, true) => ProgressMode::Never,
            (Progress::Always, _) => ProgressMode::Always,
            (Progress::Auto, false) => ProgressMode::Auto,
        }
    }

    /// Whether bars are drawn on this stderr.
    pub fn enabled(self) -> bool {
        let terminal = std::io::stderr().is_terminal();
        match self {
            ProgressMode::Always => terminal,
            ProgressMode::Never => false,
            ProgressMode::Auto => {
                terminal && std::env::var("TERM").map(|t| t != "dumb").unwrap_or(true)
            }
        }
    }
}

/// The span that carries the overall bar; the engine's host spans are its children.
pub fn run_span(command: &str) -> Span {
    let span = tracing::info_span!("run", command);
    span.pb_set_style(&overall_style(command.to_string()));
    span
}

/// The overall bar; `phase` names it: the command while gathering, `rollout` after.
fn overall_style(phase: String) -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner} {phase:7} [{bar:30}] {pos}/{len} hosts {wide_msg} {elapsed} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
    .with_key(
        "phase",
        move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&phase);
        },
    )
}

/// What one event does to the overall bar: a new phase and length (position back to
/// 0), hosts done, a new message.
#[derive(Debug, Default, PartialEq, Eq)]
struct BarUpdate {
    reset: Option<(String, u64)>,
    advance: u64,
    message: Option<String>,
}

fn update_for(ev: &Event) -> BarUpdate {
    match ev {
        Event::RunStarted { command, hosts } => BarUpdate {
            reset: Some((command.to_string(), *hosts as u64)),
            message: Some("connecting and gathering".into()),
            ..BarUpdate::default()
        },
        Event::HostGathered { .. } | Event::HostFailed { .. } => BarUpdate {
            advance: 1,
            ..BarUpdate::default()
        },
        Event::BatchStarted {
            number,
            hosts,
            canary,
        } => BarUpdate {
            reset: Some(("rollout".into(), hosts.len() as u64)),
            message: Some(format!(
                "batch {number}{}: {}",
                if *canary { " (canary)" } else { "" },
                hosts.join(", ")
            )),
            ..BarUpdate::default()
        },
        Event::StepFinished { step, .. } if step == "restart+gate" => BarUpdate {
            advance: 1,
            ..BarUpdate::default()
        },
        Event::Paused { duration } => BarUpdate {
            message: Some(format!(
                "pause {} (health gate passed)",
                whole_seconds(*duration)
            )),
            ..BarUpdate::default()
        },
        Event::RunFinished { .. } => BarUpdate {
            message: Some("writing reports".into()),
            ..BarUpdate::default()
        },
        _ => BarUpdate::default(),
    }
}

/// Consumes events until the stream ends: each becomes an audit event (for the log
/// file and `-v`) and moves the overall bar on `span` (a no-op without bars).
pub async fn run(mut rx: UnboundedReceiver<Event>, span: Span) {
    let operator = crate::engine::run::operator();
    while let Some(ev) = rx.recv().await {
        crate::ui::audit::record(&ev, &operator);
        let u = update_for(&ev);
        if let Some((phase, len)) = u.reset {
            span.pb_set_length(len);
            span.pb_set_position(0);
            span.pb_set_style(&overall_style(phase));
        }
        if u.advance > 0 {
            span.pb_inc(u.advance);
        }
        if let Some(m) = u.message {
            span.pb_set_message(&m);
        }
    }
}

/// A wait as an operator reads it: whole seconds, rounded up (`5s`, `1m 30s`), not the
/// scheduler's nanoseconds (`4s 999ms 999us 569ns`).
pub fn whole_seconds(d: std::time::Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_in_whole_seconds() {
        use std::time::Duration;
        assert_eq!(whole_seconds(Duration::new(4, 999_999_569)), "5s");
        assert_eq!(whole_seconds(Duration::from_secs(90)), "1m 30s");
        assert_eq!(whole_seconds(Duration::ZERO), "0s");
    }
    use std::time::Duration;

    #[test]
    fn the_overall_bar_counts_hosts_then_the_batch() {
        let start = update_for(&Event::RunStarted {
            command: "apply",
            hosts: 24,
        });
        assert_eq!(start.reset, Some(("apply".into(), 24)));
        for ev in [
            Event::HostGathered {
                host: "a".into(),
                elapsed: Duration::ZERO,
            },
            Event::HostFailed {
                host: "b".into(),
                kind: "auth".into(),
                message: "denied".into(),
            },
        ] {
            assert_eq!(update_for(&ev).advance, 1);
        }
        assert_eq!(
            update_for(&Event::HostConnected {
                host: "a".into(),
                elapsed: Duration::ZERO
            }),
            BarUpdate::default()
        );
        let batch = update_for(&Event::BatchStarted {
            number: 1,
            hosts: vec!["m1".into(), "m2".into()],
            canary: true,
        });
        assert_eq!(batch.reset, Some(("rollout".into(), 2)));
        assert_eq!(batch.message.as_deref(), Some("batch 1 (canary): m1, m2"));
        let gate = update_for(&Event::StepFinished {
            host: "m1".into(),
            step: "restart+gate".into(),
            ok: false,
            detail: "x".into(),
        });
        assert_eq!(gate.advance, 1);
        let change = update_for(&Event::StepFinished {
            host: "m1".into(),
            step: "change".into(),
            ok: true,
            detail: "x".into(),
        });
        assert_eq!(change.advance, 0);
    }

    #[test]
    fn never_is_never_drawn() {
        assert!(!ProgressMode::Never.enabled());
        assert_eq!(
            ProgressMode::from_flags(crate::cli::Progress::Auto, true),
            ProgressMode::Never
        );
        assert_eq!(
            ProgressMode::from_flags(crate::cli::Progress::Always, true),
            ProgressMode::Always
        );
    }
}
