//! Small system programs: hostname, zmhostname, getent (passwd, group), stat -c, cp, id,
//! whoami, grep -F (with -A, -e, -q, -i), cat, echo, printf, date, uname -n, head -n,
//! tail -c +N, and `ps` for the Postfix master. Enough of each for the tool's commands; other options are refused loudly.

use super::Proc;

/// `hostname` / `zmhostname`.
pub async fn hostname(args: Vec<String>, p: &mut Proc) -> i32 {
    let h = p.node.hostname();
    let out = if args.iter().any(|a| a == "-s") {
        h.split('.').next().unwrap_or(&h).to_string()
    } else {
        h
    };
    p.io.stdout.line(out).await;
    0
}

/// `getent passwd|group [KEY...]`: exit 2 when a named key is missing.
pub async fn getent(args: Vec<String>, p: &mut Proc) -> i32 {
    let Some((db, keys)) = args.split_first() else {
        p.io.stderr.line("getent: wrong number of arguments").await;
        return 1;
    };
    // (name, id, line) of every entry of the database.
    let entries: Vec<(String, u32, String)> = {
        let st = p.node.state();
        match db.as_str() {
            "passwd" => st
                .passwd
                .iter()
                .map(|e| (e.name.clone(), e.uid, e.line()))
                .collect(),
            "group" => st
                .groups
                .iter()
                .map(|g| (g.name.clone(), g.gid, g.line()))
                .collect(),
            _ => {
                drop(st);
                p.io.stderr.line(format!("Unknown database: {db}")).await;
                return 1;
            }
        }
    };
    let mut out = String::new();
    let mut missing = false;
    if keys.is_empty() {
        for (_, _, line) in &entries {
            out.push_str(line);
            out.push('\n');
        }
    }
    for k in keys {
        match entries
            .iter()
            .find(|(name, id, _)| name == k || id.to_string() == *k)
        {
            Some((_, _, line)) => {
                out.push_str(line);
                out.push('\n');
            }
            None => missing = true,
        }
    }
    p.io.stdout.write(out).await;
    if missing { 2 } else { 0 }
}

/// `cp [-p] SRC DST`: copies a file of the virtual filesystem; `-p` keeps its owner and
/// mode (without it the copy gets the defaults).
pub async fn cp(args: Vec<String>, p: &mut Proc) -> i32 {
    let keep = args.iter().any(|a| a == "-p");
    let paths: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let [src, dst] = paths[..] else {
        p.io.stderr
            .line("cp: only `cp [-p] SRC DST` is emulated")
            .await;
        return 1;
    };
    let copied = {
        let mut st = p.node.state();
        let content = st.files.get(src).cloned();
        content.map(|c| {
            st.files.insert(dst.clone(), c);
            match st.file_meta.get(src).copied().filter(|_| keep) {
                Some(m) => st.file_meta.insert(dst.clone(), m),
                None => st.file_meta.remove(dst),
            };
        })
    };
    if copied.is_none() {
        p.io.stderr
            .line(format!(
                "cp: cannot stat '{src}': No such file or directory"
            ))
            .await;
        return 1;
    }
    0
}

/// `stat [-L] -c FORMAT FILE...` with `%u %g %a %n %Y %s`: owner and mode from the node's
/// modelled file metadata (root's 0644 for files without any).
pub async fn stat(args: Vec<String>, p: &mut Proc) -> i32 {
    let mut format = None;
    let mut files = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-L" => {}
            "-c" => format = it.next(),
            _ => files.push(a),
        }
    }
    let Some(format) = format else {
        p.io.stderr
            .line("stat: only `stat [-L] -c FORMAT FILE` is emulated")
            .await;
        return 1;
    };
    let mut rc = 0;
    for f in files {
        let meta = {
            let st = p.node.state();
            st.files.contains_key(&f).then(|| {
                st.file_meta
                    .get(&f)
                    .copied()
                    .unwrap_or(crate::node::FileMeta {
                        uid: 0,
                        gid: 0,
                        mode: 0o644,
                    })
            })
        };
        match meta {
            Some(m) => {
                let (mtime, size) = {
                    let st = p.node.state();
                    (
                        st.mtimes.get(&f).copied().unwrap_or(0),
                        st.files.get(&f).map_or(0, Vec::len),
                    )
                };
                let line = format
                    .replace("%Y", &mtime.to_string())
                    .replace("%s", &size.to_string())
                    .replace("%u", &m.uid.to_string())
                    .replace("%g", &m.gid.to_string())
                    .replace("%a", &format!("{:o}", m.mode))
                    .replace("%n", &f);
                p.io.stdout.line(line).await;
            }
            None => {
                p.io.stderr
                    .line(format!(
                        "stat: cannot statx '{f}': No such file or directory"
                    ))
                    .await;
                rc = 1;
            }
        }
    }
    rc
}

/// `id [-u|-un|-g] [USER]`.
pub async fn id(args: Vec<String>, p: &mut Proc) -> i32 {
    let flags: Vec<&String> = args.iter().filter(|a| a.starts_with('-')).collect();
    let who = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .cloned()
        .unwrap_or_else(|| p.user.clone());
    let Some(e) = p
        .node
        .state()
        .passwd
        .iter()
        .find(|e| e.name == who)
        .cloned()
    else {
        p.io.stderr.line(format!("id: ‘{who}’: no such user")).await;
        return 1;
    };
    let flag = flags.iter().map(|f| f.as_str()).collect::<String>();
    let out = match flag.as_str() {
        "" => format!(
            "uid={0}({1}) gid={2}({1}) groups={2}({1})",
            e.uid, e.name, e.gid
        ),
        "-u" => e.uid.to_string(),
        "-un" | "-u-n" | "-nu" => e.name.clone(),
        "-g" => e.gid.to_string(),
        other => {
            p.io.stderr
                .line(format!("id: unsupported option {other}"))
                .await;
            return 1;
        }
    };
    p.io.stdout.line(out).await;
    0
}

/// `whoami`.
pub async fn whoami(_args: Vec<String>, p: &mut Proc) -> i32 {
    p.io.stdout.line(p.user.clone()).await;
    0
}

/// `grep [-F] [-q] [-i] PATTERN [FILE...]`: fixed strings only.
pub async fn grep(args: Vec<String>, p: &mut Proc) -> i32 {
    let (opts, files) = match grep_args(args) {
        Ok(x) => x,
        Err(why) => {
            p.io.stderr.line(why).await;
            return 2;
        }
    };
    let mut inputs = Vec::new();
    if files.is_empty() {
        inputs.push((None, p.io.stdin.read_all().await));
    } else {
        for f in &files {
            let content = p.node.state().files.get(f).cloned();
            match content {
                Some(c) => inputs.push((Some(f.clone()), c)),
                None => {
                    p.io.stderr
                        .line(format!("grep: {f}: No such file or directory"))
                        .await;
                    return 2;
                }
            }
        }
    }
    let (out, found) = grep_lines(&opts, inputs);
    if !opts.quiet {
        p.io.stdout.write(out).await;
    }
    if found { 0 } else { 1 }
}

/// The options of one `grep`.
struct GrepOpts {
    quiet: bool,
    icase: bool,
    /// `-A NUM`: lines of context after each match.
    after: usize,
    patterns: Vec<String>,
}

/// Parses `grep`'s arguments: its options and the files to read (none: stdin), or the
/// message GNU grep prints for them (exit 2).
fn grep_args(args: Vec<String>) -> Result<(GrepOpts, Vec<String>), String> {
    let (mut fixed, mut quiet, mut icase) = (false, false, false);
    let mut after: usize = 0;
    let mut patterns: Vec<String> = Vec::new();
    let mut rest = Vec::new();
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        if !rest.is_empty() || !a.starts_with('-') || a.len() < 2 {
            rest.push(a);
            continue;
        }
        for (i, c) in a[1..].char_indices() {
            match c {
                'F' => fixed = true,
                'q' => quiet = true,
                'i' => icase = true,
                // `-A NUM` / `-ANUM`, `-e PATTERN` / `-ePATTERN`: the value is the rest of
                // this word, or the next argument.
                'A' | 'e' => {
                    let glued = &a[1 + i + 1..];
                    let value = if glued.is_empty() {
                        args.next()
                    } else {
                        Some(glued.to_string())
                    };
                    let Some(value) = value else {
                        return Err(format!("grep: option requires an argument -- '{c}'"));
                    };
                    if c == 'e' {
                        patterns.push(value);
                    } else {
                        match value.parse() {
                            Ok(n) => after = n,
                            Err(_) => {
                                return Err(format!(
                                    "grep: {value}: invalid context length argument"
                                ));
                            }
                        }
                    }
                    break;
                }
                other => return Err(format!("grep: invalid option -- '{other}'")),
            }
        }
    }
    let files: Vec<String> = if patterns.is_empty() {
        let mut it = rest.into_iter();
        let Some(pat) = it.next() else {
            return Err("Usage: grep [OPTION]... PATTERNS [FILE]...".into());
        };
        patterns.push(pat);
        it.collect()
    } else {
        rest
    };
    if !fixed
        && patterns
            .iter()
            .any(|pat| pat.contains(['.', '*', '[', ']', '^', '$', '\\']))
    {
        return Err("grep: only fixed-string patterns (-F) are emulated".into());
    }
    let opts = GrepOpts {
        quiet,
        icase,
        after,
        patterns,
    };
    Ok((opts, files))
}

/// What `grep` prints for its inputs (name, content), each line prefixed with its file's
/// name when there are several, and whether any line matched.
fn grep_lines(opts: &GrepOpts, inputs: Vec<(Option<String>, Vec<u8>)>) -> (String, bool) {
    let GrepOpts { icase, after, .. } = *opts;
    let multi = inputs.len() > 1;
    let mut out = String::new();
    let mut found = false;
    let needles: Vec<String> = opts
        .patterns
        .iter()
        .map(|pat| {
            if icase {
                pat.to_lowercase()
            } else {
                pat.clone()
            }
        })
        .collect();
    // GNU grep's context output: `--` between groups that are not adjacent.
    let mut printed_any = false;
    for (name, content) in inputs {
        let text = String::from_utf8_lossy(&content).into_owned();
        let mut last_printed: Option<usize> = None;
        let mut context_left = 0usize;
        for (n, line) in text.lines().enumerate() {
            let hay = if icase {
                line.to_lowercase()
            } else {
                line.to_string()
            };
            let matched = needles.iter().any(|nd| hay.contains(nd.as_str()));
            if matched {
                found = true;
                context_left = after;
            } else if context_left > 0 {
                context_left -= 1;
            } else {
                continue;
            }
            if after > 0 && printed_any && last_printed.is_none_or(|l| l + 1 != n) {
                out.push_str("--\n");
            }
            if let (true, Some(f)) = (multi, &name) {
                out.push_str(f);
                out.push(if matched { ':' } else { '-' });
            }
            out.push_str(line);
            out.push('\n');
            last_printed = Some(n);
            printed_any = true;
        }
    }
    (out, found)
}

/// `cat [FILE...]` (stdin without arguments).
pub async fn cat(args: Vec<String>, p: &mut Proc) -> i32 {
    if args.is_empty() {
        let data = p.io.stdin.read_all().await;
        p.io.stdout.write(data).await;
        return 0;
    }
    let mut rc = 0;
    for f in args {
        let content = if f == "-" {
            Some(p.io.stdin.read_all().await)
        } else {
            p.node.state().files.get(&f).cloned()
        };
        match content {
            Some(c) => p.io.stdout.write(c).await,
            None => {
                p.io.stderr
                    .line(format!("cat: {f}: No such file or directory"))
                    .await;
                rc = 1;
            }
        }
    }
    rc
}

/// `echo [-n] ARGS...` (no backslash interpretation).
pub async fn echo(args: Vec<String>, p: &mut Proc) -> i32 {
    let (newline, args) = match args.first().map(String::as_str) {
        Some("-n") => (false, &args[1..]),
        _ => (true, &args[..]),
    };
    let mut s = args.join(" ");
    if newline {
        s.push('\n');
    }
    p.io.stdout.write(s).await;
    0
}

/// `printf FORMAT ARGS...`: `%s`, `%d`, `%%`, `\n`, `\t`, `\\`; the format is reused
/// while arguments remain.
pub async fn printf(args: Vec<String>, p: &mut Proc) -> i32 {
    let Some((fmt, mut rest)) = args.split_first().map(|(f, r)| (f.clone(), r.to_vec())) else {
        p.io.stderr
            .line("printf: usage: printf format [arguments]")
            .await;
        return 2;
    };
    let mut out = String::new();
    loop {
        let mut consumed = false;
        let mut chars = fmt.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('\\') => out.push('\\'),
                    Some(o) => {
                        out.push('\\');
                        out.push(o);
                    }
                    None => out.push('\\'),
                },
                '%' => match chars.next() {
                    Some('%') => out.push('%'),
                    Some('s') | Some('d') | Some('b') => {
                        consumed = true;
                        if !rest.is_empty() {
                            out.push_str(&rest.remove(0));
                        }
                    }
                    Some(o) => {
                        p.io.stdout.write(&out).await;
                        p.io.stderr
                            .line(format!("printf: %{o}: invalid directive"))
                            .await;
                        return 1;
                    }
                    None => out.push('%'),
                },
                c => out.push(c),
            }
        }
        if rest.is_empty() || !consumed {
            break;
        }
    }
    p.io.stdout.write(out).await;
    0
}

/// `date +FORMAT` with `%s`, `%Y`, `%z` (the node runs on UTC).
pub async fn date(args: Vec<String>, p: &mut Proc) -> i32 {
    let now = jiff::Timestamp::now();
    let Some(format) = args.first().and_then(|a| a.strip_prefix('+')) else {
        p.io.stdout
            .line(now.strftime("%a %b %e %H:%M:%S UTC %Y").to_string())
            .await;
        return 0;
    };
    let out = format
        .replace("%s", &now.as_second().to_string())
        .replace("%Y", &now.strftime("%Y").to_string())
        .replace("%z", "+0000");
    p.io.stdout.line(out).await;
    0
}

/// `uname -n`: the node's name (syslog writes it in every line).
pub async fn uname(args: Vec<String>, p: &mut Proc) -> i32 {
    if args.iter().any(|a| a != "-n") {
        p.io.stderr.line("uname: only `uname -n` is emulated").await;
        return 1;
    }
    p.io.stdout.line(p.node.hostname()).await;
    0
}

/// `ps -C master -o etimes=,args=`: the Postfix master, when it runs (exit 1 when no
/// process matches, as procps does).
pub async fn ps(args: Vec<String>, p: &mut Proc) -> i32 {
    if args != ["-C", "master", "-o", "etimes=,args="] {
        p.io.stderr
            .line("ps: only `ps -C master -o etimes=,args=` is emulated")
            .await;
        return 1;
    }
    let (started, home) = {
        let st = p.node.state();
        (
            st.master_started.filter(|_| st.postfix.is_some()),
            st.flavour.home(),
        )
    };
    match started {
        Some(t) => {
            let age = (crate::node::unix_now() - t).max(0);
            p.io.stdout
                .line(format!("{age:>11} {home}/common/libexec/master -w"))
                .await;
            0
        }
        None => 1,
    }
}

/// A file's content, or `None` after `PROGRAM: cannot open 'FILE' for reading: …`.
async fn open_for_reading(p: &mut Proc, program: &str, file: &str) -> Option<Vec<u8>> {
    let content = p.node.state().files.get(file).cloned();
    if content.is_none() {
        p.io.stderr
            .line(format!(
                "{program}: cannot open '{file}' for reading: No such file or directory"
            ))
            .await;
    }
    content
}

/// `head -n N FILE`.
pub async fn head(args: Vec<String>, p: &mut Proc) -> i32 {
    let (n, file) = match args.as_slice() {
        [flag, n, file] if flag == "-n" => match n.parse::<usize>() {
            Ok(n) => (n, file.clone()),
            Err(_) => {
                p.io.stderr
                    .line(format!("head: invalid number of lines: '{n}'"))
                    .await;
                return 1;
            }
        },
        _ => {
            p.io.stderr
                .line("head: only `head -n N FILE` is emulated")
                .await;
            return 1;
        }
    };
    let Some(content) = open_for_reading(p, "head", &file).await else {
        return 1;
    };
    let text = String::from_utf8_lossy(&content);
    let out: String = text.split_inclusive('\n').take(n).collect();
    p.io.stdout.write(out).await;
    0
}

/// `tail -c +N FILE`: the file from byte N (1-based) on.
pub async fn tail(args: Vec<String>, p: &mut Proc) -> i32 {
    let (from, file) = match args.as_slice() {
        [flag, n, file] if flag == "-c" => {
            match n.strip_prefix('+').and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => (n.max(1) - 1, file.clone()),
                None => {
                    p.io.stderr
                        .line(format!("tail: invalid number of bytes: '{n}'"))
                        .await;
                    return 1;
                }
            }
        }
        _ => {
            p.io.stderr
                .line("tail: only `tail -c +N FILE` is emulated")
                .await;
            return 1;
        }
    };
    let Some(content) = open_for_reading(p, "tail", &file).await else {
        return 1;
    };
    p.io.stdout
        .write(content[from.min(content.len())..].to_vec())
        .await;
    0
}

/// `setsid -f PROGRAM ARGS...` where PROGRAM is a shell (`/bin/sh -c SCRIPT`): runs it
/// detached from the caller (its own task, no stdio), returning at once, as util-linux's
/// `setsid -f` forks into a new session.
pub async fn setsid(args: Vec<String>, p: &mut Proc) -> i32 {
    let script = match args.as_slice() {
        [f, sh, c, script] if f == "-f" && sh.ends_with("sh") && c == "-c" => script.clone(),
        _ => {
            p.io.stderr
                .line("setsid: only `setsid -f /bin/sh -c SCRIPT` is emulated")
                .await;
            return 1;
        }
    };
    let (node, user, env) = (p.node.clone(), p.user.clone(), p.env.clone());
    tokio::spawn(async move {
        let io = crate::shell::Io {
            stdin: crate::shell::Source::Empty,
            stdout: crate::shell::Sink::Null,
            stderr: crate::shell::Sink::Null,
        };
        crate::shell::run_script(node, user, env, script, io).await;
    });
    0
}

/// `rm -f FILE...`.
pub async fn rm(args: Vec<String>, p: &mut Proc) -> i32 {
    let mut st = p.node.state();
    for f in args.iter().filter(|a| !a.starts_with('-')) {
        st.files.remove(f);
    }
    0
}

/// `perl -MIO::Socket::UNIX -e SCRIPT SOCKET`: the one Perl program the tool runs on a
/// node, its on-node policy client (`engine::policy_probe::PERL_CLIENT`: connect to
/// SOCKET, send stdin, print the reply up to its empty line). Anything else is refused.
pub async fn perl(args: Vec<String>, p: &mut Proc) -> i32 {
    let socket = match args.as_slice() {
        [m, e, _script, socket] if m == "-MIO::Socket::UNIX" && e == "-e" => socket.clone(),
        _ => {
            p.io.stderr
                .line("perl: only the policy client (-MIO::Socket::UNIX -e … SOCKET) is emulated")
                .await;
            return 255;
        }
    };
    // private/ is 0700 postfix: only root gets through (die exits with errno).
    if p.user != "root" {
        p.io.stderr
            .line(format!("connect {socket}: Permission denied"))
            .await;
        return 13;
    }
    if !crate::policyd::socket_exists(&p.node, &socket) {
        p.io.stderr
            .line(format!("connect {socket}: No such file or directory"))
            .await;
        return 2;
    }
    let request = p.io.stdin.read_all().await;
    let (client, server) = tokio::io::duplex(64 * 1024);
    let node = p.node.clone();
    tokio::spawn(async move {
        let _ = crate::policyd::serve(node, server).await;
    });
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let (r, mut w) = tokio::io::split(client);
    if w.write_all(&request).await.is_err() {
        return 0;
    }
    let mut lines = tokio::io::BufReader::new(r).lines();
    let mut out = String::new();
    while let Ok(Some(l)) = lines.next_line().await {
        out.push_str(&l);
        out.push('\n');
        if l.is_empty() {
            break;
        }
    }
    p.io.stdout.write(out).await;
    0
}
