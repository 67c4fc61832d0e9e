//! Progress on stderr, drawn by tracing-indicatif: the overall bar (hosts done / total,
//! ETA; during apply's rollout, `canary (batch 1 of 7)` / `batch 3 of 7` with its hosts,
//! the pause between batches counting down in whole seconds) on the run's span, fed by
//! the engine events. The ETA is measured, not indicatif's per-tick guess: while
//! gathering, hosts done per second once a few are done; during the rollout, the mean
//! duration of the batches finished × the batches left, plus the pauses between them.
//! Below the bar, and below it a live spinner per in-flight host (the engine's `host` spans),
//! at most [`crate::ui::logging::MAX_BARS`] bars with "...and N more hosts" under them.
//! Log lines go through the same writer, so they print above the bars and never tear
//! them. Hidden when stderr is not a terminal, `TERM=dumb`, `--progress never`, `-q` or
//! `--format json` (see [`ProgressMode`]).

use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// `--progress`: when to draw the bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Progress {
    /// Only when stderr is a terminal
    Auto,
    Always,
    Never,
}

impl ProgressMode {
    /// The mode for `--progress` given whether `-q`/`--format json` asked for quiet.
    pub fn from_flags(progress: Progress, quiet: bool) -> Self {
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
    span.pb_set_style(&overall_style(command.to_string(), Arc::default()));
    span
}

/// The overall bar; `phase` names it: the command while gathering, `rollout` after. Its
/// tail (`pause 4s · eta 1m 10s`) is read from `live` at every redraw, so the pause
/// counts down and the ETA moves between events.
fn overall_style(phase: String, live: Arc<Mutex<Live>>) -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner} {phase:7} [{bar:20}] {pos}/{len} hosts {wide_msg} {fleet_eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
    .with_key(
        "phase",
        move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&phase);
        },
    )
    .with_key(
        "fleet_eta",
        move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            if let Ok(live) = live.lock() {
                let _ = w.write_str(&live.tail(Instant::now()));
            }
        },
    )
}

/// Hosts that must be done before a gather rate means anything.
const MIN_DONE_FOR_ETA: u64 = 3;

/// What the overall bar's tail is computed from: hosts done per second while gathering;
/// during the rollout the measured batch durations, the batches left and the pauses
/// between them (indicatif's own estimate knows neither batches nor pauses).
#[derive(Debug, Default)]
struct Live {
    /// Gathering: when it started, hosts done, hosts in all.
    started: Option<Instant>,
    done: u64,
    total: u64,
    /// Rollout: the current batch (number, of), when it started, hosts in it and done.
    batch: Option<(usize, usize)>,
    batch_started: Option<Instant>,
    batch_len: u64,
    batch_done: u64,
    /// Durations of the batches finished so far.
    batch_took: Vec<Duration>,
    /// The pause between batches (as the last one was announced) and when the current
    /// one ends.
    pause: Duration,
    pause_until: Option<Instant>,
}

impl Live {
    /// Takes in one event that happened at `now`.
    fn on(&mut self, ev: &Event, now: Instant) {
        match ev {
            Event::RunStarted { hosts, .. } => {
                *self = Live {
                    started: Some(now),
                    total: *hosts as u64,
                    ..Live::default()
                }
            }
            Event::HostGathered { .. } | Event::HostFailed { .. } if self.batch.is_none() => {
                self.done += 1
            }
            Event::BatchStarted {
                number, of, hosts, ..
            } => {
                self.batch = Some((*number, *of));
                self.batch_started = Some(now);
                self.batch_len = hosts.len() as u64;
                self.batch_done = 0;
                self.pause_until = None;
            }
            Event::StepFinished { step, .. } if step == "restart+gate" => {
                self.batch_done += 1;
                if self.batch_done == self.batch_len
                    && let Some(t) = self.batch_started
                {
                    self.batch_took.push(now.saturating_duration_since(t));
                }
            }
            Event::Paused { duration } => {
                self.pause = *duration;
                self.pause_until = Some(now + *duration);
            }
            _ => {}
        }
    }

    /// Time left, when there is a measurement to base it on.
    fn eta(&self, now: Instant) -> Option<Duration> {
        let Some((number, of)) = self.batch else {
            // Gathering: hosts done per second so far, for the hosts left.
            let started = self.started?;
            if self.done < MIN_DONE_FOR_ETA || self.done >= self.total {
                return None;
            }
            let per_host = now.saturating_duration_since(started).as_secs_f64() / self.done as f64;
            return Some(Duration::from_secs_f64(
                per_host * (self.total - self.done) as f64,
            ));
        };
        if self.batch_took.is_empty() {
            return None;
        }
        let mean = self.batch_took.iter().sum::<Duration>() / self.batch_took.len() as u32;
        let after = (of - number.min(of)) as u32;
        let pausing = self.pause_until.filter(|&u| u > now);
        let now_part = match pausing {
            // Between batch `number` and the next: the pause left, then the batches left
            // with a pause between each two.
            Some(until) => {
                return Some(
                    until.saturating_duration_since(now)
                        + mean * after
                        + self.pause * after.saturating_sub(1),
                );
            }
            None if self.batch_done >= self.batch_len => Duration::ZERO,
            None => {
                let ran = self
                    .batch_started
                    .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                mean.saturating_sub(ran)
            }
        };
        Some(now_part + (mean + self.pause) * after)
    }

    /// The bar's tail: the pause counting down, and the ETA once it means something.
    fn tail(&self, now: Instant) -> String {
        let mut parts = Vec::new();
        if let Some(until) = self.pause_until.filter(|&u| u > now) {
            parts.push(format!("pause {}", whole_seconds(until - now)));
        }
        if let Some(eta) = self.eta(now) {
            parts.push(format!("eta {}", whole_seconds(eta)));
        }
        parts.join(" · ")
    }
}

/// What one event does to the overall bar: a new phase and length (position back to
/// 0), hosts done, a new message.
#[derive(Debug, Default, PartialEq, Eq)]
struct BarUpdate {
    reset: Option<(String, u64)>,
    advance: u64,
    message: Option<String>,
}

/// `canary (batch 1 of 7)` or `batch 3 of 7`.
fn batch_name(number: usize, of: usize, canary: bool) -> String {
    if canary {
        format!("canary (batch {number} of {of})")
    } else {
        format!("batch {number} of {of}")
    }
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
            of,
            hosts,
            canary,
        } => BarUpdate {
            reset: Some(("rollout".into(), hosts.len() as u64)),
            message: Some(format!(
                "{}: {}",
                batch_name(*number, *of, *canary),
                hosts.join(", ")
            )),
            ..BarUpdate::default()
        },
        Event::StepFinished { step, .. } if step == "restart+gate" => BarUpdate {
            advance: 1,
            ..BarUpdate::default()
        },
        // The countdown itself is the tail's (see [`Live::tail`]).
        Event::Paused { .. } => BarUpdate {
            message: Some("health gates passed; next batch after the pause".into()),
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
    let live: Arc<Mutex<Live>> = Arc::default();
    while let Some(ev) = rx.recv().await {
        crate::ui::audit::record(&ev, &operator);
        if let Ok(mut l) = live.lock() {
            l.on(&ev, Instant::now());
        }
        let u = update_for(&ev);
        if let Some((phase, len)) = u.reset {
            span.pb_set_length(len);
            span.pb_set_position(0);
            span.pb_set_style(&overall_style(phase, live.clone()));
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
    crate::duration::display(std::time::Duration::from_secs(secs)).to_string()
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
            of: 7,
            hosts: vec!["m1".into(), "m2".into()],
            canary: true,
        });
        assert_eq!(batch.reset, Some(("rollout".into(), 2)));
        assert_eq!(
            batch.message.as_deref(),
            Some("canary (batch 1 of 7): m1, m2")
        );
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
            ProgressMode::from_flags(Progress::Auto, true),
            ProgressMode::Never
        );
        assert_eq!(
            ProgressMode::from_flags(Progress::Always, true),
            ProgressMode::Always
        );
    }

    fn ev_batch(number: usize, of: usize, hosts: usize) -> Event {
        Event::BatchStarted {
            number,
            of,
            hosts: (0..hosts).map(|i| format!("m{i}")).collect(),
            canary: number == 1,
        }
    }

    fn gated() -> Event {
        Event::StepFinished {
            host: "m".into(),
            step: "restart+gate".into(),
            ok: true,
            detail: String::new(),
        }
    }

    /// Gathering: no ETA before a few hosts are done, then hosts left at the rate so far.
    #[test]
    fn gather_eta_is_hosts_left_at_the_measured_rate() {
        let t0 = Instant::now();
        let mut live = Live::default();
        live.on(
            &Event::RunStarted {
                command: "check",
                hosts: 100,
            },
            t0,
        );
        let done = |live: &mut Live, n: usize, at: Instant| {
            for _ in 0..n {
                live.on(
                    &Event::HostGathered {
                        host: "h".into(),
                        elapsed: Duration::ZERO,
                    },
                    at,
                );
            }
        };
        done(&mut live, 2, t0 + Duration::from_secs(1));
        assert_eq!(
            live.eta(t0 + Duration::from_secs(1)),
            None,
            "too few to tell"
        );
        assert_eq!(live.tail(t0 + Duration::from_secs(1)), "");
        done(&mut live, 8, t0 + Duration::from_secs(5));
        // 10 hosts in 5s: 0.5s a host, 90 left.
        assert_eq!(
            live.eta(t0 + Duration::from_secs(5)),
            Some(Duration::from_secs(45))
        );
        assert_eq!(live.tail(t0 + Duration::from_secs(5)), "eta 45s");
        done(&mut live, 90, t0 + Duration::from_secs(50));
        assert_eq!(live.eta(t0 + Duration::from_secs(50)), None, "all done");
    }

    /// Rollout: nothing until a batch was measured; then the batch's mean duration for
    /// each batch left plus the pauses between them; the pause counts down.
    #[test]
    fn rollout_eta_is_measured_batches_and_pauses() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut live = Live::default();
        live.on(
            &Event::RunStarted {
                command: "apply",
                hosts: 20,
            },
            t0,
        );
        live.on(&ev_batch(1, 5, 1), t0);
        assert_eq!(live.eta(t0 + s(5)), None, "no batch measured yet");
        live.on(&gated(), t0 + s(20));
        live.on(&Event::Paused { duration: s(30) }, t0 + s(20));
        // Pausing: 30s left of it, then 4 batches of 20s with 3 pauses of 30s between.
        assert_eq!(live.eta(t0 + s(20)), Some(s(30 + 4 * 20 + 3 * 30)));
        assert_eq!(live.tail(t0 + s(24)), "pause 26s · eta 3m 16s");
        live.on(&ev_batch(2, 5, 3), t0 + s(50));
        // 5s into batch 2 of 5: 15s of it left, then 3 × (pause + batch).
        assert_eq!(live.eta(t0 + s(55)), Some(s(15 + 3 * (30 + 20))));
        assert_eq!(live.tail(t0 + s(55)), "eta 2m 45s");
        for _ in 0..3 {
            live.on(&gated(), t0 + s(90));
        }
        // Batch 2 took 40s: the mean is 30s now.
        assert_eq!(live.eta(t0 + s(90)), Some(s(3 * (30 + 30))));
    }

    #[test]
    fn batches_are_named_n_of_m_and_the_canary_says_so() {
        assert_eq!(batch_name(1, 7, true), "canary (batch 1 of 7)");
        assert_eq!(batch_name(3, 7, false), "batch 3 of 7");
    }
}
