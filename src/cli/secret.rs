//! `secret set | delete | list`: SSH passwords and key passphrases in the OS keyring
//! (see [`crate::secrets`] for the entry names and the store). `set` prompts twice
//! without echo on the terminal, or reads one line from stdin with `--stdin` (for
//! automation); values are never printed, only entry names.

use std::io::{BufRead, Write};

use super::{SecretCheckArgs, SecretCommand, SecretKind as CliKind, SecretTarget};
use crate::exit::ExitCode;
use crate::secrets::{self, Secret, SecretKind, SecretScope};

/// Where `secret set` gets the value from.
pub enum SecretSource<'a> {
    /// One line of this reader (`--stdin`).
    Line(&'a mut dyn BufRead),
    /// Asks this function (the no-echo terminal prompt), twice, the answers must match.
    Prompt(&'a mut dyn FnMut(&str) -> std::io::Result<String>),
}

fn kind_of(k: CliKind) -> SecretKind {
    match k {
        CliKind::Password => SecretKind::Password,
        CliKind::Passphrase => SecretKind::Passphrase,
    }
}

fn scope_of(t: &SecretTarget) -> SecretScope<'_> {
    match (&t.host, &t.group) {
        (Some(h), _) => SecretScope::Host(h),
        // clap requires exactly one of the two.
        (None, Some(g)) => SecretScope::Group(g),
        (None, None) => SecretScope::Host(""),
    }
}

fn describe(kind: SecretKind, scope: SecretScope<'_>) -> String {
    let what = match kind {
        SecretKind::Password => "password",
        SecretKind::Passphrase => "key passphrase",
    };
    match scope {
        SecretScope::Host(h) => format!("{what} for host `{h}`"),
        SecretScope::Group(g) => format!("{what} for group `{g}`"),
    }
}

/// `secret check`: whether each selected host has credentials the tool can find, without
/// connecting anywhere. A host has them when one of its identity files loads (not
/// readable by others; decrypted with a passphrase found as passwords are), a password is
/// found (credentials directory, secrets directory, keyring), or an ssh-agent is running
/// (its keys are not checked). Exit 3 when any host has none, 1 on a bad inventory.
pub fn check(a: &SecretCheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    secrets::set_secrets_dir(a.secrets_dir.clone());
    if let Err(e) = secrets::init_default_store() {
        let _ = writeln!(err, "carbonio-fleet: {e}; the keyring is not searched");
    }
    let inv = match crate::inventory::load(&a.inventory) {
        Ok(inv) => inv,
        Err(e) => return super::show::config_failed(&e, "inventory"),
    };
    let hosts = match crate::inventory::select(&inv, a.limit.as_deref()) {
        Ok(h) => h,
        Err(e) => {
            let _ = writeln!(err, "carbonio-fleet: {e}");
            return ExitCode::Usage;
        }
    };
    let agent =
        std::env::var_os("SSH_AUTH_SOCK").is_some_and(|p| std::path::Path::new(&p).exists());
    let mut missing: Vec<&str> = Vec::new();
    for h in &hosts {
        match credentials(h, agent) {
            Ok(how) => {
                let _ = writeln!(out, "ok       {}  {how}", h.name);
            }
            Err(why) => {
                missing.push(&h.name);
                let _ = writeln!(out, "MISSING  {}  {why}", h.name);
            }
        }
    }
    let _ = writeln!(
        out,
        "{} host(s): {} with credentials, {} missing",
        hosts.len(),
        hosts.len() - missing.len(),
        missing.len()
    );
    if let Some(path) = &a.metrics_file {
        let text = crate::report::metrics::render_secrets_missing(hosts.len(), &missing);
        if let Err(e) = crate::report::write::write_atomic_mode(
            path,
            &text,
            crate::report::write::METRICS_FILE_MODE,
        ) {
            let _ = writeln!(err, "carbonio-fleet: {e}");
            return ExitCode::Usage;
        }
    }
    if missing.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::HostFailed
    }
}

/// How `host` would authenticate, or why it cannot.
fn credentials(host: &crate::inventory::Host, agent: bool) -> Result<String, String> {
    let mut notes = Vec::new();
    for path in &host.identity_files {
        match crate::ssh::load_identity(path, host) {
            Ok(_) => return Ok(format!("identity file {}", path.display())),
            Err(note) => notes.push(note),
        }
    }
    if let Some((_, from)) = secrets::find(SecretKind::Password, host) {
        return Ok(format!("password from {from}"));
    }
    if agent {
        return Ok("ssh-agent (its keys are not checked here)".into());
    }
    Err(format!(
        "no usable identity file ({}), no ssh-agent, no password (looked in {})",
        if notes.is_empty() {
            "none configured".to_string()
        } else {
            notes.join("; ")
        },
        secrets::places(SecretKind::Password, host).join(", ")
    ))
}

/// Runs a secret command from the terminal: installs the OS keyring, reads from the real
/// stdin or the no-echo prompt.
pub(super) fn run(cmd: &SecretCommand) -> ExitCode {
    if let SecretCommand::Check(a) = cmd {
        // No keyring setup here: `check` sets its own sources up.
        return check(
            a,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        );
    }
    if let Err(e) = secrets::init_default_store() {
        eprintln!("carbonio-fleet: {e}");
        return ExitCode::Usage;
    }
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut prompt =
        |p: &str| tracing_indicatif::suspend_tracing_indicatif(|| rpassword::prompt_password(p));
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    let source = match cmd {
        SecretCommand::Set(a) if a.stdin => SecretSource::Line(&mut lock),
        _ => SecretSource::Prompt(&mut prompt),
    };
    execute(cmd, source, &mut stdout.lock(), &mut stderr.lock())
}

/// Runs a secret command against the current default keyring store, reading a value
/// from `source`, writing results to `out` and problems to `err`; returns the exit code.
pub fn execute(
    cmd: &SecretCommand,
    source: SecretSource<'_>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    match cmd {
        SecretCommand::Check(a) => check(a, out, err),
        SecretCommand::Set(a) => {
            let (kind, scope) = (kind_of(a.kind), scope_of(&a.target));
            let what = describe(kind, scope);
            let value = match read_value(source, &what) {
                Ok(v) => v,
                Err(e) => {
                    let _ = writeln!(err, "carbonio-fleet: {e}; nothing was stored");
                    return ExitCode::Usage;
                }
            };
            match secrets::store(kind, scope, &value) {
                Ok(()) => {
                    let _ = writeln!(
                        out,
                        "stored the {what} (keyring entry `{}` / `{}`)",
                        secrets::SERVICE,
                        secrets::entry_user(kind, scope)
                    );
                    ExitCode::Ok
                }
                Err(e) => {
                    let _ = writeln!(err, "carbonio-fleet: {e}");
                    ExitCode::Usage
                }
            }
        }
        SecretCommand::Delete(a) => {
            let (kind, scope) = (kind_of(a.kind), scope_of(&a.target));
            let what = describe(kind, scope);
            match secrets::delete(kind, scope) {
                Ok(true) => {
                    let _ = writeln!(out, "deleted the {what}");
                    ExitCode::Ok
                }
                Ok(false) => {
                    let _ = writeln!(err, "carbonio-fleet: no {what} is stored");
                    ExitCode::Usage
                }
                Err(e) => {
                    let _ = writeln!(err, "carbonio-fleet: {e}");
                    ExitCode::Usage
                }
            }
        }
        SecretCommand::List => match secrets::list() {
            Ok(names) => {
                if names.is_empty() {
                    let _ = writeln!(err, "no secrets are stored");
                }
                for n in names {
                    // `password:host:mail1` → `password    host   mail1`
                    let mut parts = n.splitn(3, ':');
                    let (k, s, name) = (
                        parts.next().unwrap_or(""),
                        parts.next().unwrap_or(""),
                        parts.next().unwrap_or(""),
                    );
                    let _ = writeln!(out, "{k:<11} {s:<6} {name}");
                }
                ExitCode::Ok
            }
            Err(e) => {
                let _ = writeln!(err, "carbonio-fleet: {e}");
                ExitCode::Usage
            }
        },
    }
}

/// A value that is a secret must not be empty, and a line read from stdin loses its
/// line ending only (spaces are part of a passphrase).
fn read_value(source: SecretSource<'_>, what: &str) -> Result<Secret, String> {
    let value = match source {
        SecretSource::Line(r) => {
            let mut line = String::new();
            r.read_line(&mut line)
                .map_err(|e| format!("cannot read the {what} from stdin: {e}"))?;
            let trimmed = line.strip_suffix('\n').unwrap_or(&line);
            trimmed.strip_suffix('\r').unwrap_or(trimmed).to_string()
        }
        SecretSource::Prompt(ask) => {
            let no_tty = |e: std::io::Error| {
                format!("cannot prompt for the {what} ({e}; use --stdin to read it from stdin)")
            };
            let first = ask(&format!("{what}: ")).map_err(no_tty)?;
            let again = ask(&format!("{what} (again): ")).map_err(no_tty)?;
            if first != again {
                return Err("the two entries differ".into());
            }
            first
        }
    };
    if value.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser as _;

    fn cmd(args: &[&str]) -> SecretCommand {
        let argv = ["carbonio-fleet", "secret"].iter().chain(args).copied();
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Secret(c) => c,
            _ => unreachable!(),
        }
    }

    fn run_with(c: &SecretCommand, source: SecretSource<'_>) -> (ExitCode, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = execute(c, source, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn set_from_stdin_list_then_delete() {
        secrets::use_mock_store();
        let mut input: &[u8] = b"s3cret with spaces \r\nsecond line ignored\n";
        let set = cmd(&["set", "--group", "cli-unit-acme", "--stdin"]);
        let (code, out, err) = run_with(&set, SecretSource::Line(&mut input));
        assert_eq!((code, err.as_str()), (ExitCode::Ok, ""));
        assert_eq!(
            out,
            "stored the password for group `cli-unit-acme` (keyring entry `carbonio-fleet` / `password:group:cli-unit-acme`)\n"
        );
        let inv_host = crate::inventory::Host {
            name: "cli-unit-h".into(),
            groups: vec!["cli-unit-acme".into()],
            ..test_host()
        };
        assert_eq!(
            secrets::lookup(SecretKind::Password, &inv_host)
                .unwrap()
                .expose(),
            "s3cret with spaces "
        );

        let (code, out, _) = run_with(&cmd(&["list"]), SecretSource::Line(&mut &b""[..]));
        assert_eq!(code, ExitCode::Ok);
        assert!(
            out.lines().any(|l| l == "password    group  cli-unit-acme"),
            "{out}"
        );
        assert!(!out.contains("s3cret"));

        let del = cmd(&["delete", "--group", "cli-unit-acme"]);
        let (code, out, _) = run_with(&del, SecretSource::Line(&mut &b""[..]));
        assert_eq!(
            (code, out.as_str()),
            (
                ExitCode::Ok,
                "deleted the password for group `cli-unit-acme`\n"
            )
        );
        let (code, _, err) = run_with(&del, SecretSource::Line(&mut &b""[..]));
        assert_eq!(code, ExitCode::Usage);
        assert_eq!(
            err,
            "carbonio-fleet: no password for group `cli-unit-acme` is stored\n"
        );
    }

    #[test]
    fn the_prompt_asks_twice_and_refuses_a_mismatch_or_nothing() {
        secrets::use_mock_store();
        let set = cmd(&["set", "--host", "cli-unit-h2", "--kind", "passphrase"]);
        let mut answers = vec!["one".to_string(), "two".to_string()].into_iter();
        let mut asked = Vec::new();
        let mut ask = |p: &str| {
            asked.push(p.to_string());
            Ok(answers.next().unwrap())
        };
        let (code, out, err) = run_with(&set, SecretSource::Prompt(&mut ask));
        assert_eq!(code, ExitCode::Usage);
        assert_eq!(out, "");
        assert_eq!(
            err,
            "carbonio-fleet: the two entries differ; nothing was stored\n"
        );
        assert_eq!(
            asked,
            [
                "key passphrase for host `cli-unit-h2`: ",
                "key passphrase for host `cli-unit-h2` (again): "
            ]
        );
        let mut no_tty = |_: &str| {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no terminal",
            ))
        };
        let (code, _, err) = run_with(&set, SecretSource::Prompt(&mut no_tty));
        assert_eq!(code, ExitCode::Usage);
        assert!(err.contains("use --stdin"), "{err}");
        let (code, _, err) = run_with(&set, SecretSource::Line(&mut &b"\n"[..]));
        assert_eq!(code, ExitCode::Usage);
        assert!(err.contains("is empty"), "{err}");
        let mut same = |_: &str| Ok("pp".to_string());
        let (code, _, _) = run_with(&set, SecretSource::Prompt(&mut same));
        assert_eq!(code, ExitCode::Ok);
    }

    fn test_host() -> crate::inventory::Host {
        crate::inventory::Host::for_test("")
    }
}
