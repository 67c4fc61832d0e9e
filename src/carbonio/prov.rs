//! `zmprov` (ProvUtil) batch mode: building batch input and splitting its output.
//!
//! One JVM per host: every read (or every change) goes into one batch fed on stdin, ended
//! with `exit` so that a ServiceException makes the process exit 2 (at plain end of input
//! ProvUtil exits 0 even after errors). Output is separated by the `prov> ` prompt that
//! ProvUtil prints before reading each line; the first output line of each command is
//! glued to its prompt. Errors go to stderr as `ERROR: code (message)` lines.

use std::fmt;

use crate::ssh::{QuoteError, quote};

/// The prompt ProvUtil prints (no newline) before it reads each batch line.
pub const PROMPT: &str = "prov> ";

/// A ProvUtil batch: one command per line, each argument quoted for ProvUtil's own line
/// splitter (`StringUtil.parseLine`: whitespace separated, `"…"` with backslash escapes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    lines: Vec<String>,
}

/// A value that cannot be expressed on one ProvUtil batch line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("value {value:?} cannot be passed to zmprov: {reason}")]
pub struct BatchValueError {
    pub value: String,
    pub reason: &'static str,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one command; every argument is quoted for ProvUtil's line parser.
    pub fn push<S: AsRef<str>>(&mut self, args: &[S]) -> Result<(), BatchValueError> {
        let mut line = String::new();
        for (i, arg) in args.iter().enumerate() {
            if i > 0 {
                line.push(' ');
            }
            line.push_str(&quote_arg(arg.as_ref())?);
        }
        self.lines.push(line);
        Ok(())
    }

    /// Number of commands (the final `exit` not counted).
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The batch as fed to ProvUtil, ended with `exit` so errors give exit status 2.
    pub fn to_input(&self) -> String {
        let mut s = String::new();
        for l in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s.push_str("exit\n");
        s
    }
}

impl fmt::Display for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_input())
    }
}

/// Quotes one argument for `StringUtil.parseLine`. Bare when it has no whitespace, quote
/// or backslash; otherwise double quotes with `\"` and `\\` escaped. Newlines and NUL
/// cannot be carried on a batch line and are refused.
fn quote_arg(arg: &str) -> Result<String, BatchValueError> {
    if arg.contains('\n') || arg.contains('\r') {
        return Err(BatchValueError {
            value: arg.to_string(),
            reason: "a line break would end the batch line",
        });
    }
    if arg.contains('\0') {
        return Err(BatchValueError {
            value: arg.to_string(),
            reason: "NUL bytes are not allowed",
        });
    }
    let needs = arg.is_empty()
        || arg
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\');
    if !needs {
        return Ok(arg.to_string());
    }
    let mut s = String::with_capacity(arg.len() + 2);
    s.push('"');
    for c in arg.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    Ok(s)
}

/// Which LDAP a `zmprov` process talks to. Always LDAP mode (`-l`): SOAP mode, the
/// default on mailbox nodes, needs mailboxd, which is down during a legacy restart
/// (docs/carbonio.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ldap {
    /// `-l`: the node's configured LDAP (a replica, possibly lagging): reads.
    Any,
    /// `-l -m`: the LDAP master: writes and any read that must see them.
    Master,
}

impl Ldap {
    fn flags(self) -> &'static str {
        match self {
            Ldap::Any => "-l",
            Ldap::Master => "-l -m",
        }
    }
}

/// The shell command that feeds pre-quoted shell `words` (one batch line each, `exit`
/// last) to ONE `zmprov` process through a pipe.
///
/// `zmprov`, never the `carbonio` wrapper: on commercial Carbonio with the Advanced CLI
/// installed, `carbonio` opens another shell (`carbonio>` prompt) whose output this
/// parser cannot read; `zmprov` is ProvUtil on every Carbonio (docs/carbonio.md §5).
pub fn feed_command(words: &[String], ldap: Ldap) -> String {
    format!(
        "printf '%s\\n' {} | zmprov {}",
        words.join(" "),
        ldap.flags()
    )
}

/// The shell command that runs `batch` (ended with `exit`) in one `zmprov`.
pub fn shell_command(batch: &Batch, ldap: Ldap) -> Result<String, QuoteError> {
    let mut words = batch
        .lines()
        .iter()
        .map(|l| quote(l))
        .collect::<Result<Vec<_>, _>>()?;
    words.push("exit".to_string());
    Ok(feed_command(&words, ldap))
}

/// Splits batch stdout into one output per command, using the prompts.
///
/// `expected` is the number of commands before `exit`. A well-formed output has
/// `expected + 1` prompts (the last one read `exit`), or `expected + 1` at end of input
/// when no `exit` was sent. Anything printed before the first prompt (a noisy login
/// profile, a JVM warning) is returned as `preamble`.
pub fn split_output(stdout: &str, expected: usize) -> Result<SplitOutput, SplitError> {
    let mut starts = Vec::new();
    let bytes = stdout.as_bytes();
    let mut i = 0;
    while let Some(pos) = stdout[i..].find(PROMPT) {
        let at = i + pos;
        if at == 0 || bytes[at - 1] == b'\n' || starts.last().map(|&(_, e)| e) == Some(at) {
            starts.push((at, at + PROMPT.len()));
        }
        i = at + PROMPT.len();
    }
    if starts.len() < expected + 1 {
        return Err(SplitError {
            expected: expected + 1,
            found: starts.len(),
        });
    }
    let preamble = stdout[..starts[0].0].to_string();
    let mut outputs = Vec::with_capacity(expected);
    for k in 0..expected {
        let begin = starts[k].1;
        let end = starts[k + 1].0;
        outputs.push(stdout[begin..end].to_string());
    }
    Ok(SplitOutput { preamble, outputs })
}

/// Per-command outputs of one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitOutput {
    pub preamble: String,
    pub outputs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "zmprov printed {found} `prov> ` prompts where {expected} were expected (the batch did not run to the end)"
)]
pub struct SplitError {
    pub expected: usize,
    pub found: usize,
}

/// Every error a ProvUtil batch reported, from its stdout and stderr.
///
/// In batch mode ProvUtil reports a ServiceException as `ERROR: code (message)` on
/// stderr and exits 2 at `exit`, but an argument error prints a `usage:` block on stdout
/// (and, since carbonio-mailbox 4.18, `NAME is expecting N arguments but …` on stderr),
/// and an unknown command prints `Unknown command. Type: 'help commands' for a list` on
/// stdout, both WITHOUT setting the error flag: the exit status stays 0
/// (docs/carbonio.md §5). All of them are errors here. Output lines may be glued to the
/// `prov> ` prompt(s) printed before them.
pub fn error_lines(stdout: &str, stderr: &str) -> Vec<String> {
    let mut errors: Vec<String> = stderr
        .lines()
        .filter(|l| {
            l.starts_with("ERROR: ")
                || l.starts_with("error: ")
                || (l.contains(" is expecting ") && l.contains(" argument"))
        })
        .map(str::to_string)
        .collect();
    // Only right behind a prompt: that is where ProvUtil prints them, and a value line
    // of a listing (a signature, a note) cannot pose as one.
    for line in stdout.lines() {
        let Some(mut l) = line.strip_prefix(PROMPT) else {
            continue;
        };
        while let Some(rest) = l.strip_prefix(PROMPT) {
            l = rest;
        }
        if l.starts_with("usage:") || l.starts_with("Unknown command.") {
            errors.push(l.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    errors
}

/// Attribute lines of a get command (`gcf`, `gs`, `gacf`): `name: value` pairs in order.
/// The `# name X` header of `gs` and blank lines are skipped; binary `name:: b64` values
/// are kept as their base64 text.
pub fn attr_lines(output: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in output.lines() {
        if line.is_empty() || line.starts_with("# name ") {
            continue;
        }
        if let Some((name, value)) = line.split_once(": ") {
            let name = name.strip_suffix(':').unwrap_or(name);
            out.push((name.to_string(), value.to_string()));
        } else if let Some(name) = line.strip_suffix(':') {
            out.push((name.to_string(), String::new()));
        }
    }
    out
}

/// The values of `attr` (matched case-insensitively, as ProvUtil does) in a get output.
pub fn values_of(output: &str, attr: &str) -> Vec<String> {
    attr_lines(output)
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(attr))
        .map(|(_, v)| v)
        .collect()
}

/// The entries of a verbose listing (`gad -v`): each `# name X` header with the text of
/// the attribute lines under it (read with [`values_of`]), in output order.
pub fn entries(output: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in output.lines() {
        if let Some(n) = line.strip_prefix("# name ") {
            out.push((n.trim().to_string(), String::new()));
        } else if let Some((_, block)) = out.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_quotes_values_for_provutil() {
        let mut b = Batch::new();
        b.push(&[
            "mcf",
            "+zimbraMtaRestriction",
            "check_policy_service unix:private/policy",
        ])
        .unwrap();
        b.push(&["mcf", "zimbraMtaEnableSmtpdPolicyd", "TRUE"])
            .unwrap();
        b.push(&["mcf", "a", "say \"hi\" \\ ok"]).unwrap();
        b.push(&["mcf", "a", ""]).unwrap();
        assert_eq!(
            b.to_input(),
            "mcf +zimbraMtaRestriction \"check_policy_service unix:private/policy\"\n\
             mcf zimbraMtaEnableSmtpdPolicyd TRUE\n\
             mcf a \"say \\\"hi\\\" \\\\ ok\"\n\
             mcf a \"\"\n\
             exit\n"
        );
        assert_eq!(b.len(), 4);
    }

    #[test]
    fn curly_quotes_stay_inside_one_argument() {
        let mut b = Batch::new();
        b.push(&[
            "mcf",
            "+zimbraMtaRestriction",
            "“check_policy_service unix:private/policy”",
        ])
        .unwrap();
        assert_eq!(
            b.lines()[0],
            "mcf +zimbraMtaRestriction \"“check_policy_service unix:private/policy”\""
        );
    }

    #[test]
    fn newline_in_value_is_refused() {
        let mut b = Batch::new();
        let e = b.push(&["mcf", "a", "x\nexit"]).unwrap_err();
        assert!(e.to_string().contains("line break"), "{e}");
    }

    #[test]
    fn splits_glued_prompts() {
        let out = "prov> zimbraMtaRestriction: a\nzimbraMtaRestriction: b\nprov> zimbraMtaEnableSmtpdPolicyd: TRUE\nprov> prov> ";
        let s = split_output(out, 3).unwrap();
        assert_eq!(
            s.outputs,
            vec![
                "zimbraMtaRestriction: a\nzimbraMtaRestriction: b\n".to_string(),
                "zimbraMtaEnableSmtpdPolicyd: TRUE\n".to_string(),
                String::new(),
            ]
        );
        assert_eq!(s.preamble, "");
    }

    #[test]
    fn prompt_text_inside_a_value_is_not_a_prompt() {
        let out = "prov> zimbraNotes: see prov> here\nprov> ";
        let s = split_output(out, 1).unwrap();
        assert_eq!(s.outputs, vec!["zimbraNotes: see prov> here\n".to_string()]);
    }

    #[test]
    fn preamble_before_first_prompt_is_kept_apart() {
        let out = "Welcome to node\nprov> a: 1\nprov> ";
        let s = split_output(out, 1).unwrap();
        assert_eq!(s.preamble, "Welcome to node\n");
        assert_eq!(s.outputs, vec!["a: 1\n".to_string()]);
    }

    #[test]
    fn too_few_prompts_is_an_error() {
        let e = split_output("prov> a: 1\n", 2).unwrap_err();
        assert_eq!(
            e,
            SplitError {
                expected: 3,
                found: 1
            }
        );
    }

    #[test]
    fn reads_attr_lines_case_insensitively() {
        let out = "# name mx1.example.com\nzimbraMtaRestriction: reject_invalid_helo_hostname\nzimbraMtaRestriction: check_policy_service unix:private/policy\nzimbraServiceEnabled: mta\n\n";
        assert_eq!(
            values_of(out, "zimbramtarestriction"),
            vec![
                "reject_invalid_helo_hostname".to_string(),
                "check_policy_service unix:private/policy".to_string()
            ]
        );
        assert!(values_of(out, "zimbraMtaEnableSmtpdPolicyd").is_empty());
    }

    #[test]
    fn error_lines_from_stderr() {
        let err = "log4j:WARN x\nERROR: account.INVALID_ATTR_VALUE (zimbraMtaEnableSmtpdPolicyd must be TRUE or FALSE)\n";
        assert_eq!(
            error_lines("prov> prov> ", err),
            vec![
                "ERROR: account.INVALID_ATTR_VALUE (zimbraMtaEnableSmtpdPolicyd must be TRUE or FALSE)"
                    .to_string()
            ]
        );
    }

    /// Argument errors and unknown commands never set ProvUtil's error flag: found on
    /// stdout (behind prompts) and in the ≥4.18 count line on stderr.
    #[test]
    fn usage_unknown_and_argument_count_are_errors() {
        let out = "prov> usage:  modifyConfig(mcf) attr1 value1 [attr2 value2...]\n\nprov> Unknown command. Type: 'help commands' for a list\nprov> zimbraMtaEnableSmtpdPolicyd: TRUE\nprov> ";
        let err =
            "modifyConfig is expecting at least 2 arguments but 1 argument has been provided\n";
        assert_eq!(
            error_lines(out, err),
            vec![
                "modifyConfig is expecting at least 2 arguments but 1 argument has been provided",
                "usage: modifyConfig(mcf) attr1 value1 [attr2 value2...]",
                "Unknown command. Type: 'help commands' for a list",
            ]
        );
        // A value that merely mentions the words is not an error, nor is a value line of a
        // listing that starts with them.
        assert!(error_lines("prov> zimbraNotes: usage: see the wiki\nprov> ", "").is_empty());
        assert!(
            error_lines(
                "prov> # name a@b\nzimbraPrefMailSignature: x\nusage: y\nprov> ",
                ""
            )
            .is_empty()
        );
    }

    #[test]
    fn verbose_listing_entries() {
        let out = "# name a-alias.example\nzimbraDomainType: alias\nzimbraMailCatchAllAddress: @a-alias.example\n\n# name a.example\nzimbraDomainType: local\n\n";
        let e = entries(out);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].0, "a-alias.example");
        assert_eq!(
            values_of(&e[0].1, "zimbraMailCatchAllAddress"),
            ["@a-alias.example"]
        );
        assert_eq!(e[1].0, "a.example");
        assert_eq!(values_of(&e[1].1, "zimbraDomainType"), ["local"]);
        assert!(values_of(&e[1].1, "zimbraMailCatchAllAddress").is_empty());
        assert!(entries("").is_empty());
    }

    #[test]
    fn zmprov_in_ldap_mode_never_the_carbonio_wrapper() {
        let mut b = Batch::new();
        b.push(&["gcf", "zimbraMtaRestriction"]).unwrap();
        assert_eq!(
            shell_command(&b, Ldap::Any).unwrap(),
            "printf '%s\\n' 'gcf zimbraMtaRestriction' exit | zmprov -l"
        );
        assert!(
            shell_command(&b, Ldap::Master)
                .unwrap()
                .ends_with("| zmprov -l -m")
        );
    }
}
