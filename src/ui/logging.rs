//! The process's one tracing subscriber: human log lines on stderr (routed through the
//! progress bars so they never tear them), the progress bars themselves (one per host
//! span, via tracing-indicatif), and the `--log-file` JSON-lines audit log.
//!
//! Levels: `-v`/`-q` (counted) pick the stderr level; `CARBONIO_FLEET_LOG` (EnvFilter
//! syntax, e.g. `debug` or `carbonio_fleet::ssh=trace`) replaces it. The log file gets at
//! least `info` and always the audit events (target [`AUDIT_TARGET`]), whatever the
//! filter says, so it keeps who ran what, on which host, which command and the result.
//! No ANSI codes go to files or pipes; `NO_COLOR` (non-empty) turns colour off on a
//! terminal too. Nothing here ever receives a secret: events carry names, steps,
//! commands and outcomes only.

use std::fs::{File, OpenOptions};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use thiserror::Error;
use tracing_indicatif::IndicatifLayer;
use tracing_indicatif::style::ProgressStyle;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The environment variable holding an EnvFilter directive string.
pub const ENV_FILTER: &str = "CARBONIO_FLEET_LOG";

/// The target of the audit events (one per engine event; see [`crate::ui::audit`]).
pub const AUDIT_TARGET: &str = "carbonio_fleet::audit";

/// How many progress bars are drawn at most (the overall bar included); the rest of
/// the live hosts are counted in a footer line.
pub const MAX_BARS: u64 = 4;

/// What the subscriber should do.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// `-v` count.
    pub verbose: u8,
    /// `-q` count.
    pub quiet: u8,
    /// Draw progress bars on stderr (decided by [`crate::ui::progress::ProgressMode`]).
    pub bars: bool,
    /// `--log-file`: JSON lines appended here.
    pub log_file: Option<PathBuf>,
}

/// The subscriber could not be set up; nothing was contacted.
#[derive(Debug, Error)]
pub enum LogError {
    #[error("{ENV_FILTER}=`{value}` is not a valid filter: {source}")]
    Filter {
        value: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot open the log file `{}`: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The stderr filter for a `-v`/`-q` balance: `warn` by default; `-v` shows this
/// tool's info lines (one per host event), `-vv` debug, `-vvv` trace; `-q` errors
/// only, `-qq` nothing. Other crates stay one step quieter than ours.
pub fn stderr_directives(verbose: u8, quiet: u8) -> &'static str {
    match i32::from(verbose) - i32::from(quiet) {
        i32::MIN..=-2 => "off",
        -1 => "error",
        0 => "warn",
        1 => "warn,carbonio_fleet=info",
        2 => "info,carbonio_fleet=debug",
        _ => "debug,carbonio_fleet=trace",
    }
}

/// The log file's filter: the user's (env or `-v`), never quieter than info for this
/// tool, and always the audit events.
pub fn file_directives(verbose: u8, env: Option<&str>) -> String {
    let base = match env {
        Some(e) => e.to_string(),
        None => stderr_directives(verbose.max(1), 0).to_string(),
    };
    format!("{base},{AUDIT_TARGET}=info")
}

/// Colour on stderr: as `--color` and the environment decide for a stream that is (or
/// is not) a terminal (see [`crate::ui::term`]): by default only on a terminal, and not
/// when `NO_COLOR` is set non-empty.
pub fn stderr_ansi() -> bool {
    crate::ui::term::color_for(std::io::stderr().is_terminal())
}

fn env_filter() -> Option<String> {
    std::env::var(ENV_FILTER)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

fn parse(value: &str) -> Result<EnvFilter, LogError> {
    EnvFilter::builder()
        .parse(value)
        .map_err(|source| LogError::Filter {
            value: value.to_string(),
            source,
        })
}

fn open_log(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LogError::File {
            path: path.to_path_buf(),
            source,
        })
}

/// The style of a host's live spinner: `  ↳ ⠋ mail3 gather 2s`.
fn host_style() -> ProgressStyle {
    ProgressStyle::with_template("{span_child_prefix}{spinner}{span_fields} {elapsed:.dim}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn footer_style() -> ProgressStyle {
    ProgressStyle::with_template("   ...and {pending_progress_bars} more hosts")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// How fields look on stderr: the message as is, then ` name=value` pairs; an audit
/// event (it has an `event` field) shows its message alone, since the message already
/// says what its fields hold (the log file keeps them); `log.*` bookkeeping fields of
/// records bridged from the `log` crate are left out.
struct StderrFields;

/// Collects the fields of one event or span.
#[derive(Default)]
struct Collect {
    message: Option<String>,
    fields: Vec<(&'static str, String)>,
    is_audit: bool,
}

impl tracing::field::Visit for Collect {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.push(field, value.to_string());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.push(field, format!("{value:?}"));
    }
}

impl Collect {
    fn push(&mut self, field: &tracing::field::Field, value: String) {
        match field.name() {
            "message" => self.message = Some(value),
            "event" => self.is_audit = true,
            name if name.starts_with("log.") => {}
            name => self.fields.push((name, value)),
        }
    }
}

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for StderrFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut w: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut c = Collect::default();
        fields.record(&mut c);
        let mut parts: Vec<String> = c.message.into_iter().collect();
        if !c.is_audit {
            parts.extend(c.fields.iter().map(|(n, v)| format!("{n}={v}")));
        }
        // Messages carry server text (errors, replies): never raw onto the terminal.
        write!(w, "{}", crate::ui::safe::terminal_safe(&parts.join(" ")))
    }
}

/// Installs the process-wide subscriber. Safe to call more than once (tests): a second
/// call keeps the first subscriber and returns `Ok`.
pub fn init(opts: &LogOptions) -> Result<(), LogError> {
    let env = env_filter();
    let stderr_filter = parse(
        env.as_deref()
            .unwrap_or_else(|| stderr_directives(opts.verbose, opts.quiet)),
    )?;
    let file_layer = match &opts.log_file {
        Some(path) => {
            let file = open_log(path)?;
            let filter = parse(&file_directives(opts.verbose, env.as_deref()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_ansi(false)
                    .with_writer(Mutex::new(file))
                    .with_filter(filter),
            )
        }
        None => None,
    };

    // Bars only for this tool's spans (the run and its hosts), never a library's.
    let bars = opts.bars.then(|| {
        IndicatifLayer::new()
            .with_progress_style(host_style())
            .with_span_child_prefix_indent(" ")
            .with_span_child_prefix_symbol("↳ ")
            // `mail3 gather`: the values alone, without names or string quotes.
            .with_span_field_formatter(tracing_subscriber::fmt::format::debug_fn(
                |w, _field, value| write!(w, " {}", format!("{value:?}").trim_matches('"')),
            ))
            .with_max_progress_bars(MAX_BARS, Some(footer_style()))
    });
    let stderr_writer = match &bars {
        Some(layer) => BoxMakeWriter::new(layer.get_stderr_writer()),
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let stderr_layer = tracing_subscriber::fmt::layer()
        .fmt_fields(StderrFields)
        .with_writer(stderr_writer)
        .with_ansi(stderr_ansi())
        .without_time()
        .with_target(false)
        .with_filter(stderr_filter);
    let bars = bars.map(|l| {
        l.with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.target().starts_with("carbonio_fleet")
        }))
    });

    let subscriber = tracing_subscriber::registry()
        .with(file_layer)
        .with(stderr_layer)
        .with(bars);
    // Also installs the `log` bridge (russh logs through `log`). Already set (a second
    // command in one test process): keep the first.
    let _ = subscriber.try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case(0, 0, "warn"; "default")]
    #[test_case(1, 0, "warn,carbonio_fleet=info"; "v")]
    #[test_case(2, 0, "info,carbonio_fleet=debug"; "vv")]
    #[test_case(5, 0, "debug,carbonio_fleet=trace"; "many v")]
    #[test_case(0, 1, "error"; "q")]
    #[test_case(0, 2, "off"; "qq")]
    #[test_case(1, 1, "warn"; "v and q cancel")]
    fn levels(v: u8, q: u8, want: &str) {
        assert_eq!(stderr_directives(v, q), want);
        parse(want).unwrap();
    }

    #[test]
    fn the_file_always_keeps_the_audit_events() {
        assert_eq!(
            file_directives(0, None),
            "warn,carbonio_fleet=info,carbonio_fleet::audit=info"
        );
        assert_eq!(
            file_directives(0, Some("error")),
            "error,carbonio_fleet::audit=info"
        );
        parse(&file_directives(3, Some("carbonio_fleet::ssh=trace"))).unwrap();
    }

    #[test]
    fn a_bad_filter_is_an_error_naming_the_variable() {
        let e = parse("carbonio_fleet=loud").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("CARBONIO_FLEET_LOG=`carbonio_fleet=loud`")
        );
    }
    use crate::ui::test_writer::Buffer;

    /// Audit events show their message alone; other events their fields; spans name
    /// their host.
    #[test]
    fn stderr_lines_are_short_and_name_the_host() {
        let buf = Buffer::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(StderrFields)
            .with_writer(move || out.clone())
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("host", host = %"mail3", step = "gather");
            let _e = span.enter();
            tracing::warn!(target: AUDIT_TARGET, event = "host-failed", host = "mail3", "mail3: auth: denied");
            tracing::info!(fingerprint = "SHA256:x", "learnt new host key");
        });
        let text = buf.text();
        assert_eq!(
            text,
            " WARN host{host=mail3 step=gather}: mail3: auth: denied\n \
             INFO host{host=mail3 step=gather}: learnt new host key fingerprint=SHA256:x\n"
        );
    }
}
