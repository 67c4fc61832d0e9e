//! How text meets stdout: the width the summary wraps to and whether it is coloured.
//!
//! Width: `COLUMNS` (a positive number) wins, as for `ls`; else the terminal's own size
//! when stdout is one; else [`DEFAULT_WIDTH`] (files, pipes, the `--on-drift` hook), so
//! a summary mailed or kept in a file stays readable without a terminal to size it. Never
//! less than [`MIN_WIDTH`].
//!
//! Colour (the ripgrep way): `--color always|never` decide; with `auto` (the default)
//! `NO_COLOR` (non-empty) turns it off, `CLICOLOR_FORCE` (non-empty, not `0`) turns it
//! on, otherwise only a terminal that is not `TERM=dumb` gets it. Files, pipes and
//! `--log-file` therefore never receive ANSI bytes unless `--color always` asks.
//!
//! Wrapping is [`textwrap`]'s, at spaces only (never inside a hyphenated id such as
//! `PRE-POLICY-SPAWN-USER`), with a hanging indent; a word longer than a whole line is
//! the only thing ever cut.

use std::borrow::Cow;
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU8, Ordering};

use anstyle::{AnsiColor, Style};
use textwrap::WordSplitter;
use textwrap::core::display_width;

/// Columns used when stdout is not a terminal and `COLUMNS` is unset.
pub const DEFAULT_WIDTH: usize = 100;
/// Below this, wrapping would make every entry a column of single words.
pub const MIN_WIDTH: usize = 40;

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set (CLICOLOR_FORCE forces it)
    #[default]
    Auto,
    /// Always, even into files and pipes
    Always,
    /// Never
    Never,
}

/// The process-wide `--color` (set once by the command line, read where output is
/// written: the summary, `report show`, the stderr log).
static CHOICE: AtomicU8 = AtomicU8::new(0);

/// Records `--color` for the rest of the process.
pub fn set_color_choice(choice: ColorChoice) {
    let v = match choice {
        ColorChoice::Auto => 0,
        ColorChoice::Always => 1,
        ColorChoice::Never => 2,
    };
    CHOICE.store(v, Ordering::Relaxed);
}

fn color_choice() -> ColorChoice {
    match CHOICE.load(Ordering::Relaxed) {
        1 => ColorChoice::Always,
        2 => ColorChoice::Never,
        _ => ColorChoice::Auto,
    }
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The colour decision, from everything it depends on (pure, so it is tested as a table).
pub fn decide_color(
    choice: ColorChoice,
    terminal: bool,
    no_color: bool,
    clicolor_force: bool,
    term_dumb: bool,
) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto if no_color => false,
        ColorChoice::Auto if clicolor_force => true,
        ColorChoice::Auto => terminal && !term_dumb,
    }
}

/// Whether output to a stream (a terminal or not) is coloured, under `--color` and the
/// environment.
pub fn color_for(terminal: bool) -> bool {
    decide_color(
        color_choice(),
        terminal,
        // NO_COLOR counts when present and non-empty, whatever its value (no-color.org).
        std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        env_set("CLICOLOR_FORCE"),
        std::env::var("TERM").is_ok_and(|t| t == "dumb"),
    )
}

/// The width decision: `COLUMNS`, else the terminal's size, else [`DEFAULT_WIDTH`].
pub fn decide_width(columns: Option<&str>, terminal_columns: Option<usize>) -> usize {
    columns
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&w| w > 0)
        .or(terminal_columns.filter(|&w| w > 0))
        .unwrap_or(DEFAULT_WIDTH)
        .max(MIN_WIDTH)
}

/// How text is laid out for one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub width: usize,
    pub color: bool,
}

impl Layout {
    /// No colour, [`DEFAULT_WIDTH`]: for text that goes to a file, a pipe or a hook.
    pub const PLAIN: Layout = Layout {
        width: DEFAULT_WIDTH,
        color: false,
    };

    /// For this process's stdout.
    pub fn stdout() -> Layout {
        let stdout = std::io::stdout();
        let terminal = stdout.is_terminal();
        let size = if terminal {
            terminal_size::terminal_size_of(&stdout).map(|(w, _)| usize::from(w.0))
        } else {
            None
        };
        Layout {
            width: decide_width(std::env::var("COLUMNS").ok().as_deref(), size),
            color: color_for(terminal),
        }
    }

    /// `text` wrapped at spaces to the width: the first line indented by `indent`, the
    /// others by `hang`. Lines never end in spaces.
    pub fn wrap(&self, text: &str, indent: usize, hang: usize) -> Vec<String> {
        let first = " ".repeat(indent);
        let rest = " ".repeat(hang);
        let opts = textwrap::Options::new(self.width)
            .initial_indent(&first)
            .subsequent_indent(&rest)
            .word_splitter(WordSplitter::NoHyphenation);
        textwrap::wrap(text, opts)
            .into_iter()
            .map(|l| l.trim_end().to_string())
            .collect()
    }

    /// `text` in the colour of `tone`, or as it is without colour.
    pub fn paint(&self, tone: Tone, text: &str) -> String {
        if !self.color || text.is_empty() {
            return text.to_string();
        }
        let style = tone.style();
        format!("{style}{text}{style:#}")
    }
}

/// What a piece of text says, for its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Failed,
    Drift,
    RestartPending,
    Compliant,
    NotAttempted,
    /// A section title.
    Heading,
}

impl Tone {
    fn style(self) -> Style {
        let fg = |c: AnsiColor| Style::new().fg_color(Some(c.into()));
        match self {
            Tone::Failed => fg(AnsiColor::Red).bold(),
            Tone::Drift => fg(AnsiColor::Yellow),
            Tone::RestartPending => fg(AnsiColor::Cyan),
            Tone::Compliant => fg(AnsiColor::Green),
            Tone::NotAttempted => fg(AnsiColor::Magenta),
            Tone::Heading => Style::new().bold(),
        }
    }
}

/// `text` cut to at most `max` columns, ending in `…` when cut.
pub fn shorten(text: &str, max: usize) -> Cow<'_, str> {
    if display_width(text) <= max {
        return Cow::Borrowed(text);
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = display_width(c.encode_utf8(&mut [0; 4]));
        if used + w + 1 > max {
            break;
        }
        out.push(c);
        used += w;
    }
    let kept = out.trim_end().len();
    out.truncate(kept);
    out.push('…');
    Cow::Owned(out)
}

/// As many of `names` as fit in `max` columns (`a, b, … (+N)`), always at least one.
pub fn name_list<S: AsRef<str>>(names: &[S], max: usize) -> String {
    let mut out = String::new();
    for (i, n) in names.iter().enumerate() {
        let n = n.as_ref();
        let left = names.len() - i - 1;
        let sep = if i == 0 { "" } else { ", " };
        // Room for this name and, if more follow, the ", … (+N)" tail.
        let tail = if left > 0 {
            format!(", … (+{left})")
        } else {
            String::new()
        };
        let fits = display_width(&out) + sep.len() + display_width(n) + display_width(&tail) <= max;
        if i > 0 && !fits {
            out.push_str(&format!(", … (+{})", names.len() - i));
            return out;
        }
        out.push_str(sep);
        out.push_str(n);
    }
    out
}

/// The width of `text` on a terminal (escape sequences not counted).
pub fn width_of(text: &str) -> usize {
    display_width(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case(ColorChoice::Auto, true, false, false, false, true; "auto on a terminal")]
    #[test_case(ColorChoice::Auto, false, false, false, false, false; "auto into a file or pipe")]
    #[test_case(ColorChoice::Auto, true, true, false, false, false; "NO_COLOR on a terminal")]
    #[test_case(ColorChoice::Auto, true, false, false, true, false; "TERM=dumb")]
    #[test_case(ColorChoice::Auto, false, false, true, false, true; "CLICOLOR_FORCE into a pipe")]
    #[test_case(ColorChoice::Auto, true, true, true, false, false; "NO_COLOR beats CLICOLOR_FORCE")]
    #[test_case(ColorChoice::Always, false, true, false, false, true; "always beats NO_COLOR and a pipe")]
    #[test_case(ColorChoice::Never, true, false, true, false, false; "never beats a terminal and CLICOLOR_FORCE")]
    fn colour_decisions(
        choice: ColorChoice,
        terminal: bool,
        no_color: bool,
        force: bool,
        dumb: bool,
        want: bool,
    ) {
        assert_eq!(decide_color(choice, terminal, no_color, force, dumb), want);
    }

    #[test_case(None, Some(132), 132; "the terminal's size")]
    #[test_case(Some("80"), Some(132), 80; "COLUMNS wins")]
    #[test_case(Some(" 90 "), None, 90; "COLUMNS with spaces")]
    #[test_case(Some("wide"), Some(120), 120; "COLUMNS not a number")]
    #[test_case(Some("0"), None, DEFAULT_WIDTH; "COLUMNS zero")]
    #[test_case(None, None, DEFAULT_WIDTH; "not a terminal")]
    #[test_case(Some("12"), None, MIN_WIDTH; "never narrower than the minimum")]
    fn width_decisions(columns: Option<&str>, terminal: Option<usize>, want: usize) {
        assert_eq!(decide_width(columns, terminal), want);
    }

    #[test]
    fn wraps_at_spaces_with_a_hanging_indent_never_inside_ids() {
        let l = Layout {
            width: 40,
            color: false,
        };
        let lines = l.wrap(
            "PRE-POLICY-SPAWN-USER: enabling zimbraMtaEnableSmtpdPolicyd here would make Postfix answer",
            2,
            6,
        );
        assert_eq!(
            lines,
            [
                "  PRE-POLICY-SPAWN-USER: enabling",
                "      zimbraMtaEnableSmtpdPolicyd here",
                "      would make Postfix answer",
            ]
        );
        assert!(lines.iter().all(|l| width_of(l) <= 40));
    }

    #[test_case("short", 10, "short"; "fits")]
    #[test_case("[reject_invalid_helo_hostname, reject_non_fqdn_sender]", 20, "[reject_invalid_hel…"; "cut with an ellipsis")]
    #[test_case("a b c d e f", 6, "a b c…"; "no space before the ellipsis")]
    #[test_case("ééééé", 3, "éé…"; "by characters, not bytes")]
    fn shortening(text: &str, max: usize, want: &str) {
        let got = shorten(text, max);
        assert_eq!(got, want);
        assert!(width_of(&got) <= max);
    }

    #[test_case(&["a", "b", "c"], 20, "a, b, c"; "all fit")]
    #[test_case(&["mta1.acme", "mta2.acme", "mta3.acme", "mta4.acme"], 30, "mta1.acme, mta2.acme, … (+2)"; "cut with a count")]
    #[test_case(&["a-very-long-host-name.example"], 5, "a-very-long-host-name.example"; "always one name")]
    fn name_lists(names: &[&str], max: usize, want: &str) {
        assert_eq!(name_list(names, max), want);
    }

    #[test]
    fn paint_only_with_colour() {
        let plain = Layout::PLAIN;
        assert_eq!(plain.paint(Tone::Failed, "FAILED"), "FAILED");
        let tty = Layout {
            width: 80,
            color: true,
        };
        let red = tty.paint(Tone::Failed, "FAILED");
        assert!(red.starts_with("\u{1b}[") && red.contains("FAILED") && red.ends_with("\u{1b}[0m"));
        assert_eq!(width_of("FAILED"), 6);
    }
}
