//! A small reader for OpenSSH client configuration (`~/.ssh/config`), for the keys a
//! fleet run needs: `HostName`, `User`, `Port`, `IdentityFile`, `ProxyJump` and
//! `UserKnownHostsFile`, inside `Host` blocks whose patterns use `*`, `?` and `!`.
//!
//! Semantics follow ssh_config(5): keywords are case-insensitive, `Key value` and
//! `Key=value` both work, arguments may be double-quoted, and for each keyword the FIRST
//! value obtained wins (so specific blocks go first, `Host *` last), except
//! `IdentityFile`, which accumulates. `~` and the tokens `%d %h %p %r %u %%` are expanded
//! in paths. `Match` blocks and `Include` are not evaluated: they are skipped (their
//! lines are listed in [`SshConfig::skipped`] so the caller can say so). Other keywords
//! are ignored: this is not an ssh client. Pure apart from [`SshConfig::load`].
//!
//! Written here rather than taken from `russh-config`: that crate resolves one host for
//! a ProxyCommand, but does not accumulate `IdentityFile`, has no `UserKnownHostsFile`
//! and reports no line numbers.

use std::path::{Path, PathBuf};

/// One `Host` block (the lines before the first `Host` form an implicit `Host *`).
#[derive(Debug, Clone)]
struct Block {
    /// (negated, lowercase pattern); empty for `Match` blocks, which never match here.
    patterns: Vec<(bool, String)>,
    is_match: bool,
    /// (lowercase keyword, arguments, 1-based line)
    options: Vec<(String, Vec<String>, usize)>,
}

/// A parsed ssh_config file.
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// The file it came from (for messages).
    pub path: PathBuf,
    blocks: Vec<Block>,
    /// Lines not evaluated (`Match`, `Include`): (line, text).
    pub skipped: Vec<(usize, String)>,
}

/// A value from the file, with the line that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub line: usize,
}

/// What the file says about one destination; `None` = not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    pub hostname: Option<Located<String>>,
    pub user: Option<Located<String>>,
    pub port: Option<Located<u16>>,
    /// `~` and tokens expanded; every `IdentityFile` of every matching block, in order.
    pub identity_files: Vec<Located<PathBuf>>,
    /// As written; `none` means no jump host.
    pub proxy_jump: Option<Located<String>>,
    /// The first file listed, expanded (where new keys go).
    pub user_known_hosts_file: Option<Located<PathBuf>>,
    /// The other `UserKnownHostsFile` files of that line, expanded (read too).
    pub more_user_known_hosts_files: Vec<PathBuf>,
    /// `GlobalKnownHostsFile`'s files, expanded, when a block sets it.
    pub global_known_hosts_files: Option<Vec<PathBuf>>,
}

/// A parse problem with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// `*` matches any run, `?` one character (OpenSSH `match_pattern`), case-insensitive.
fn glob(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some(('?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

/// Splits a line into arguments: whitespace-separated, `"…"` quoting.
fn split_args(s: &str, line: usize) -> Result<Vec<String>, ParseError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err(ParseError {
            line,
            message: "unbalanced double quote".into(),
        });
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

impl SshConfig {
    /// Parses ssh_config text; `path` is kept for messages.
    pub fn parse(text: &str, path: &Path) -> Result<SshConfig, ParseError> {
        let mut blocks = vec![Block {
            patterns: vec![(false, "*".into())],
            is_match: false,
            options: vec![],
        }];
        let mut skipped = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            // The keyword ends at whitespace or `=`; one `=` may separate it from the value.
            let end = trimmed
                .find(|c: char| c.is_whitespace() || c == '=')
                .unwrap_or(trimmed.len());
            let keyword = trimmed[..end].to_ascii_lowercase();
            let mut rest = trimmed[end..].trim_start();
            if let Some(r) = rest.strip_prefix('=') {
                rest = r.trim_start();
            }
            let args = split_args(rest, line)?;
            match keyword.as_str() {
                "host" => {
                    if args.is_empty() {
                        return Err(ParseError {
                            line,
                            message: "`Host` without a pattern".into(),
                        });
                    }
                    blocks.push(Block {
                        patterns: args
                            .iter()
                            .map(|p| match p.strip_prefix('!') {
                                Some(rest) => (true, rest.to_ascii_lowercase()),
                                None => (false, p.to_ascii_lowercase()),
                            })
                            .collect(),
                        is_match: false,
                        options: vec![],
                    });
                }
                "match" => {
                    skipped.push((line, trimmed.to_owned()));
                    blocks.push(Block {
                        patterns: vec![],
                        is_match: true,
                        options: vec![],
                    });
                }
                "include" => skipped.push((line, trimmed.to_owned())),
                _ => {
                    if args.is_empty() {
                        return Err(ParseError {
                            line,
                            message: format!("`{}` without a value", &trimmed[..end]),
                        });
                    }
                    blocks
                        .last_mut()
                        .expect("the implicit block is always there")
                        .options
                        .push((keyword, args, line));
                }
            }
        }
        Ok(SshConfig {
            path: path.to_owned(),
            blocks,
            skipped,
        })
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<SshConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read ssh_config `{}`: {e}", path.display()))?;
        Self::parse(&text, path).map_err(|e| {
            format!(
                "{}:{}: invalid ssh_config: {}",
                path.display(),
                e.line,
                e.message
            )
        })
    }

    fn block_matches(block: &Block, host: &str) -> bool {
        if block.is_match {
            return false;
        }
        let text: Vec<char> = host.to_ascii_lowercase().chars().collect();
        let mut positive = false;
        for (negated, p) in &block.patterns {
            let pat: Vec<char> = p.chars().collect();
            if glob(&pat, &text) {
                if *negated {
                    // A matching negation disqualifies the whole block.
                    return false;
                }
                positive = true;
            }
        }
        positive
    }

    /// What the file says for destination `host`, the name as it would be given to
    /// `ssh`. Returns a parse error for a bad `Port`.
    pub fn resolve(&self, host: &str) -> Result<Resolved, ParseError> {
        let mut r = Resolved::default();
        // Values are collected raw first: tokens like %r need the final user and port.
        let mut identity: Vec<(String, usize)> = Vec::new();
        let mut known_hosts: Option<(Vec<String>, usize)> = None;
        let mut global_known_hosts: Option<Vec<String>> = None;
        for block in self.blocks.iter().filter(|b| Self::block_matches(b, host)) {
            for (keyword, args, line) in &block.options {
                let first = || Located {
                    value: args[0].clone(),
                    line: *line,
                };
                match keyword.as_str() {
                    "hostname" if r.hostname.is_none() => r.hostname = Some(first()),
                    "user" if r.user.is_none() => r.user = Some(first()),
                    "port" if r.port.is_none() => {
                        let port =
                            args[0]
                                .parse::<u16>()
                                .ok()
                                .filter(|p| *p != 0)
                                .ok_or_else(|| ParseError {
                                    line: *line,
                                    message: format!("`Port {}` is not a TCP port", args[0]),
                                })?;
                        r.port = Some(Located {
                            value: port,
                            line: *line,
                        });
                    }
                    "identityfile" => identity.push((args[0].clone(), *line)),
                    "proxyjump" if r.proxy_jump.is_none() => r.proxy_jump = Some(first()),
                    "userknownhostsfile" if known_hosts.is_none() => {
                        known_hosts = Some((args.clone(), *line));
                    }
                    "globalknownhostsfile" if global_known_hosts.is_none() => {
                        global_known_hosts = Some(args.clone());
                    }
                    _ => {}
                }
            }
        }
        if let Some(h) = &mut r.hostname {
            // `HostName %h.example` is allowed by OpenSSH.
            h.value = h.value.replace("%h", host);
        }
        let tokens = Tokens {
            host: r
                .hostname
                .as_ref()
                .map_or(host.to_owned(), |h| h.value.clone()),
            port: r.port.as_ref().map_or(22, |p| p.value),
            user: r.user.as_ref().map(|u| u.value.clone()),
        };
        r.identity_files = identity
            .into_iter()
            .filter(|(v, _)| !v.eq_ignore_ascii_case("none"))
            .map(|(v, line)| Located {
                value: tokens.path(&v),
                line,
            })
            .collect();
        let files = |args: Vec<String>| -> Vec<PathBuf> {
            args.iter()
                .filter(|v| !v.eq_ignore_ascii_case("none"))
                .map(|v| tokens.path(v))
                .collect()
        };
        if let Some((args, line)) = known_hosts {
            let mut all = files(args).into_iter();
            r.user_known_hosts_file = all.next().map(|value| Located { value, line });
            r.more_user_known_hosts_files = all.collect();
        }
        r.global_known_hosts_files = global_known_hosts.map(files);
        Ok(r)
    }
}

/// Values for `%` tokens in paths.
struct Tokens {
    host: String,
    port: u16,
    /// The remote user when ssh_config names one; otherwise `%r` stays the local user.
    user: Option<String>,
}

impl Tokens {
    fn path(&self, value: &str) -> PathBuf {
        let home = home_dir();
        let local_user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let mut out = String::new();
        let mut chars = value.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('d') => out.push_str(&home.display().to_string()),
                Some('h') => out.push_str(&self.host),
                Some('p') => out.push_str(&self.port.to_string()),
                Some('r') => out.push_str(self.user.as_deref().unwrap_or(&local_user)),
                Some('u') => out.push_str(&local_user),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        match out.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None if out == "~" => home,
            None => PathBuf::from(out),
        }
    }
}

fn home_dir() -> PathBuf {
    crate::inventory::load::home_dir().unwrap_or_else(|| PathBuf::from("/"))
}

/// `~/.ssh/config` of whoever runs the tool.
pub fn default_ssh_config() -> PathBuf {
    home_dir().join(".ssh").join("config")
}

#[cfg(test)]
mod tests {
    use super::*;
    use indoc::indoc;

    fn cfg(text: &str) -> SshConfig {
        SshConfig::parse(text, Path::new("/cfg")).unwrap()
    }

    const SAMPLE: &str = indoc! {r#"
        # global lines before any Host apply to every host
        IdentityFile ~/.ssh/global_key

        Host mx? !mx9 "quoted*"
            HostName %h.acme.example
            User=ops
            Port 2222
            IdentityFile %d/.ssh/acme_%r

        Host *.beta.example mx*
          user beta
          Port = 2200
          ProxyJump jump@bastion.beta.example:2022
          UserKnownHostsFile ~/.ssh/kh_%h /etc/ssh/ssh_known_hosts

        Match host foo
          User never

        Host *
          User fallback
          IdentityFile none
    "#};

    #[test]
    fn first_value_wins_and_identity_files_accumulate() {
        let home = home_dir();
        let r = cfg(SAMPLE).resolve("MX1").unwrap();
        assert_eq!(r.hostname.unwrap().value, "MX1.acme.example");
        assert_eq!(r.user.as_ref().unwrap().value, "ops");
        assert_eq!(r.user.unwrap().line, 6);
        assert_eq!(r.port.unwrap().value, 2222);
        let ids: Vec<PathBuf> = r.identity_files.into_iter().map(|l| l.value).collect();
        assert_eq!(
            ids,
            vec![home.join(".ssh/global_key"), home.join(".ssh/acme_ops")]
        );
        assert_eq!(
            r.proxy_jump.unwrap().value,
            "jump@bastion.beta.example:2022"
        );
        assert_eq!(
            r.user_known_hosts_file.unwrap().value,
            home.join(".ssh/kh_MX1.acme.example")
        );
        // Every file of the line is read, as OpenSSH reads them.
        assert_eq!(
            r.more_user_known_hosts_files,
            vec![PathBuf::from("/etc/ssh/ssh_known_hosts")]
        );
        assert_eq!(r.global_known_hosts_files, None);
    }

    #[test]
    fn global_known_hosts_files_are_read_as_listed() {
        let r = cfg("Host mx1\n  GlobalKnownHostsFile /etc/ssh/fleet_kh none /etc/ssh/kh2\n")
            .resolve("mx1")
            .unwrap();
        assert_eq!(
            r.global_known_hosts_files,
            Some(vec![
                PathBuf::from("/etc/ssh/fleet_kh"),
                PathBuf::from("/etc/ssh/kh2")
            ])
        );
        assert!(r.user_known_hosts_file.is_none());
    }

    #[test]
    fn negation_disqualifies_the_block() {
        let r = cfg(SAMPLE).resolve("mx9").unwrap();
        // Not the acme block; the second block (mx*) and Host * apply.
        assert_eq!(r.hostname, None);
        assert_eq!(r.user.unwrap().value, "beta");
        assert_eq!(r.port.unwrap().value, 2200);
    }

    #[test]
    fn quoted_patterns_match_blocks_and_match_blocks_are_skipped() {
        let c = cfg(SAMPLE);
        assert_eq!(c.skipped, vec![(16, "Match host foo".to_owned())]);
        let r = c.resolve("foo").unwrap();
        assert_eq!(r.user.unwrap().value, "fallback");
        assert_eq!(r.port, None);
        assert_eq!(c.resolve("quoted-x").unwrap().port.unwrap().value, 2222);
    }

    #[test]
    fn errors_name_the_line() {
        let e = SshConfig::parse("Host a\n  User\n", Path::new("/c")).unwrap_err();
        assert_eq!(e.line, 2);
        let e = SshConfig::parse("Host\n", Path::new("/c")).unwrap_err();
        assert_eq!(e.line, 1);
        let e = SshConfig::parse("Host a\n HostName \"x\n", Path::new("/c")).unwrap_err();
        assert_eq!(e.message, "unbalanced double quote");
        let c = cfg("Host a\n\n  Port 99999\n");
        assert_eq!(c.resolve("a").unwrap_err().line, 3);
        assert!(
            c.resolve("b").is_ok(),
            "a bad value only matters where it applies"
        );
    }
}
