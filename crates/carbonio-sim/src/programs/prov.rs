//! `zmprov` and the `carbonio` wrapper (ProvUtil, docs/carbonio.md §5): gcf, gacf, mcf, gs,
//! ms, gas, gad (`-v` with attributes), gd, sa (`(attr=value)` queries) with the real output formats, usage blocks, ERROR lines and exit codes,
//! and batch mode (`prov> ` prompts, exit 0 at EOF, `exit` → 2 after an error). Each
//! process costs the node's simulated JVM start and is counted.

use crate::attrs::{AttrDef, AttrMap, AttrType, SAFEGUARDED, lookup};
use crate::node::{ClusterState, Ldap};

use super::Proc;

/// A ProvUtil command definition (name, alias, usage arguments, argument count bounds).
struct CmdDef {
    name: &'static str,
    alias: &'static str,
    usage: &'static str,
    min: usize,
    max: Option<usize>,
}

const COMMANDS: &[CmdDef] = &[
    CmdDef {
        name: "getConfig",
        alias: "gcf",
        usage: "{name}",
        min: 1,
        max: Some(1),
    },
    CmdDef {
        name: "getAllConfig",
        alias: "gacf",
        usage: "[attr1 [attr2...]]",
        min: 0,
        max: None,
    },
    CmdDef {
        name: "modifyConfig",
        alias: "mcf",
        usage: "attr1 value1 [attr2 value2...]",
        min: 2,
        max: None,
    },
    CmdDef {
        name: "getServer",
        alias: "gs",
        usage: "[-e] {name|id} [attr1 [attr2...]]",
        min: 1,
        max: None,
    },
    CmdDef {
        name: "modifyServer",
        alias: "ms",
        usage: "{name|id} [attr1 value1 [attr2 value2...]]",
        min: 3,
        max: None,
    },
    CmdDef {
        name: "getAllServers",
        alias: "gas",
        usage: "[-v] [-e] [service]",
        min: 0,
        max: Some(3),
    },
    CmdDef {
        name: "getAllDomains",
        alias: "gad",
        usage: "[-v] [-e] [attr1 [attr2...]]",
        min: 0,
        max: None,
    },
    CmdDef {
        name: "searchAccounts",
        alias: "sa",
        usage: "[-v] {ldap-query} [limit {limit}] [offset {offset}] [sortBy {attr}] [sortAscending 0|1] [domain {domain}]",
        min: 1,
        max: None,
    },
    CmdDef {
        name: "getDomain",
        alias: "gd",
        usage: "[-e] {domain|id} [attr1 [attr2...]]",
        min: 1,
        max: None,
    },
    CmdDef {
        name: "exit",
        alias: "quit",
        usage: "",
        min: 0,
        max: None,
    },
];

const GENERAL_USAGE: &str = "zmprov [args] [cmd] [cmd-args ...]

  -h/--help                             display usage
  -f/--file                             use file as input stream
  -s/--server   {host}[:{port}]         server hostname and optional port
  -l/--ldap                             provision via LDAP instead of SOAP
  -m/--master                           use LDAP master (only valid with -l)
  -r/--replace                          allow replacement of safe-guarded multi-valued attributes configured in localconfig key \"zmprov_safeguarded_attrs\"
  -v/--verbose                          verbose mode (dumps full exception stack trace)

 zmprov is used for provisioning. Try:

     zmprov help commands        to see a list of the commands
";

fn find_cmd(name: &str) -> Option<&'static CmdDef> {
    COMMANDS
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(name) || c.alias.eq_ignore_ascii_case(name))
}

fn usage_line(c: &CmdDef) -> String {
    format!("usage:  {}({}) {}", c.name, c.alias, c.usage)
}

/// The ≥4.18 stderr line for a wrong argument count.
fn count_message(c: &CmdDef, k: usize) -> String {
    let expect = match (c.min, c.max) {
        (a, Some(b)) if a == b => format!("{a}"),
        (a, None) => format!("at least {a}"),
        (0, Some(b)) => format!("at most {b}"),
        (a, Some(b)) => format!("{a} to {b}"),
    };
    let got = if k == 1 {
        "1 argument has".to_string()
    } else {
        format!("{k} arguments have")
    };
    format!(
        "{} is expecting {expect} arguments but {got} been provided",
        c.name
    )
}

/// What one command produced besides its stdout.
enum Outcome {
    Ok,
    /// Argument error: usage block, plus the count line on stderr when the count is off.
    Usage(&'static CmdDef, Option<String>),
    /// A ServiceException: its `ERROR: …` line.
    Service(String),
    /// A client-side error that ends the process: stderr line and exit code.
    Fatal(String, i32),
    Unknown,
    Exit,
}

/// Options that change command behaviour.
#[derive(Default)]
struct Opts {
    replace: bool,
    /// `-l`: LDAP mode (shows attributes outside Carbonio's schema, e.g. DKIM*).
    ldap: bool,
}

/// `carbonio ...`: the wrapper's user check, then ProvUtil — or, on commercial Carbonio
/// with the Advanced CLI installed, that CLI's own shell (docs/carbonio.md §5: the wrapper
/// runs it when its jar is present; prompt `carbonio>`). Only that much of it is
/// modelled: a prompt per line read, and no ProvUtil `prov> ` output at all, which is
/// what breaks a reader of ProvUtil batch output.
pub async fn carbonio(args: Vec<String>, p: &mut Proc) -> i32 {
    if p.user != p.node.state().flavour.user() {
        p.io.stdout.line("Please run as zextras user").await;
        return 1;
    }
    if p.node.state().advanced_cli {
        // Its answers to ProvUtil lines are not modelled (no source): prompts only.
        let input = p.io.stdin.read_all().await;
        let lines = String::from_utf8_lossy(&input).lines().count();
        p.io.stdout.write("carbonio> ".repeat(lines + 1)).await;
        return 0;
    }
    zmprov(args, p).await
}

/// `zmprov ...` (its start cost, two JVMs, is paid by [`super::run`]).
pub async fn zmprov(mut args: Vec<String>, p: &mut Proc) -> i32 {
    p.node.count_prov();
    if args.first().is_some_and(|a| a.eq_ignore_ascii_case("prov")) {
        args.remove(0);
    }
    let mut opts = Opts::default();
    let (mut ldap_mode, mut master, mut server, mut file) = (false, false, false, None::<String>);
    while let Some(a) = args.first().cloned() {
        if !a.starts_with('-') || a == "-" {
            break;
        }
        args.remove(0);
        match a.as_str() {
            "-l" | "--ldap" => ldap_mode = true,
            "-m" | "--master" => master = true,
            "-r" | "--replace" => opts.replace = true,
            "-v" | "--verbose" | "-d" | "--debug" | "-z" | "--zadmin" => {}
            "-s" | "--server" => {
                server = true;
                if args.is_empty() {
                    p.io.stderr
                        .line("error: Missing argument for option: s")
                        .await;
                    p.io.stdout.write(GENERAL_USAGE).await;
                    return 1;
                }
                args.remove(0);
            }
            "-f" | "--file" => {
                if args.is_empty() {
                    p.io.stderr
                        .line("error: Missing argument for option: f")
                        .await;
                    p.io.stdout.write(GENERAL_USAGE).await;
                    return 1;
                }
                file = Some(args.remove(0));
            }
            "-h" | "--help" => {
                p.io.stdout.write(GENERAL_USAGE).await;
                return 1;
            }
            "--" => break,
            other => {
                p.io.stderr
                    .line(format!("error: Unrecognized option: {other}"))
                    .await;
                p.io.stdout.write(GENERAL_USAGE).await;
                return 1;
            }
        }
    }
    if ldap_mode && server {
        p.io.stderr
            .line("error: cannot specify both -l and -s at the same time")
            .await;
        return 2;
    }
    if master && !ldap_mode {
        p.io.stderr
            .line("error: cannot specify -m when -l is not specified")
            .await;
        return 2;
    }
    opts.ldap = ldap_mode;
    if args.is_empty() {
        return batch(file, &opts, p).await;
    }
    let mut out = String::new();
    let outcome = execute(&args, &opts, p, &mut out);
    p.io.stdout.write(&out).await;
    match outcome {
        Outcome::Ok => 0,
        Outcome::Usage(c, count) => {
            p.io.stdout
                .write(format!(
                    "{}\n\nFor general help, type : zmprov --help\n",
                    usage_line(c)
                ))
                .await;
            if let Some(m) = count {
                p.io.stderr.line(m).await;
            }
            1
        }
        Outcome::Service(e) => {
            p.io.stderr.line(e).await;
            2
        }
        Outcome::Fatal(e, code) => {
            p.io.stderr.line(e).await;
            code
        }
        Outcome::Unknown => {
            p.io.stdout.write(GENERAL_USAGE).await;
            1
        }
        Outcome::Exit => 0,
    }
}

async fn batch(file: Option<String>, opts: &Opts, p: &mut Proc) -> i32 {
    let input = match &file {
        Some(f) => {
            let content = p.node.state().files.get(f).cloned();
            match content {
                Some(c) => c,
                None => {
                    p.io.stderr.line(format!("ERROR: service.FAILURE (system failure: {f} (No such file or directory))")).await;
                    return 2;
                }
            }
        }
        None => p.io.stdin.read_all().await,
    };
    let text = String::from_utf8_lossy(&input).into_owned();
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    let mut error = false;
    for line in lines {
        p.io.stdout.write("prov> ").await;
        let mut args = parse_line(line.trim_end_matches('\r'));
        if args.first().is_some_and(|a| a.eq_ignore_ascii_case("prov")) {
            args.remove(0);
        }
        if args.is_empty() {
            continue;
        }
        let mut out = String::new();
        let outcome = execute(&args, opts, p, &mut out);
        p.io.stdout.write(&out).await;
        match outcome {
            Outcome::Ok => {}
            Outcome::Exit => return if error { 2 } else { 0 },
            Outcome::Usage(c, count) => {
                p.io.stdout.write(format!("{}\n\n", usage_line(c))).await;
                if let Some(m) = count {
                    p.io.stderr.line(m).await;
                }
            }
            Outcome::Service(e) => {
                error = true;
                p.io.stderr.line(e).await;
            }
            Outcome::Fatal(e, code) => {
                p.io.stderr.line(e).await;
                return code;
            }
            Outcome::Unknown => {
                p.io.stdout
                    .line("Unknown command. Type: 'help commands' for a list")
                    .await
            }
        }
    }
    p.io.stdout.write("prov> ").await;
    0
}

/// Splits a batch line like ProvUtil's `StringUtil.parseLine`: blanks separate,
/// `'…'`/`"…"` group, backslash escapes the next character (not inside single quotes).
pub fn parse_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if have {
                    out.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            '\'' | '"' => {
                have = true;
                while let Some(d) = chars.next() {
                    if d == c {
                        break;
                    }
                    if d == '\\' && c == '"' {
                        if let Some(e) = chars.next() {
                            cur.push(e);
                        }
                        continue;
                    }
                    cur.push(d);
                }
            }
            '\\' => {
                have = true;
                if let Some(e) = chars.next() {
                    cur.push(e);
                }
            }
            c => {
                have = true;
                cur.push(c);
            }
        }
    }
    if have {
        out.push(cur);
    }
    out
}

fn dump(out: &mut String, name: &str, values: &[String]) {
    for v in values.iter().filter(|v| !v.is_empty()) {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(v);
        out.push('\n');
    }
}

fn wanted(requested: &[String], name: &str) -> bool {
    requested.is_empty() || requested.iter().any(|r| r.eq_ignore_ascii_case(name))
}

fn find_server(ldap: &Ldap, name: &str) -> Option<String> {
    ldap.servers
        .keys()
        .find(|s| s.eq_ignore_ascii_case(name))
        .cloned()
}

fn no_such_server(name: &str) -> Outcome {
    Outcome::Service(format!(
        "ERROR: account.NO_SUCH_SERVER (no such server: {name})"
    ))
}

/// Runs one ProvUtil command line (`args[0]` the command, by name or alias) against the
/// node's cluster LDAP, appending what it prints to `out`.
fn execute(args: &[String], opts: &Opts, p: &Proc, out: &mut String) -> Outcome {
    let Some(cmd) = find_cmd(&args[0]) else {
        return Outcome::Unknown;
    };
    let rest = &args[1..];
    if rest.len() < cmd.min || cmd.max.is_some_and(|m| rest.len() > m) {
        return Outcome::Usage(cmd, Some(count_message(cmd, rest.len())));
    }
    let cluster = p.node.cluster.clone();
    match cmd.alias {
        "quit" => Outcome::Exit,
        "gcf" => get_config(&cluster, rest, out),
        "gacf" => get_all_config(&cluster, rest, out),
        "gs" => get_server(cmd, &cluster, rest, out),
        "gas" => get_all_servers(&cluster, rest, out),
        "gad" => get_all_domains(cmd, &cluster, rest, opts, out),
        "sa" => search_accounts(cmd, &cluster, rest, out),
        "gd" => get_domain(cmd, &cluster, rest, opts, out),
        "mcf" => modify(cmd, None, rest, opts, p),
        "ms" => modify(cmd, Some(&rest[0]), &rest[1..], opts, p),
        _ => Outcome::Unknown,
    }
}

/// `gcf NAME`: one global config attribute.
fn get_config(cluster: &ClusterState, rest: &[String], out: &mut String) -> Outcome {
    let ldap = cluster.ldap();
    if let Some(def) = lookup(&rest[0])
        && let Some(v) = ldap.global.get(def.name)
    {
        dump(out, def.name, v);
    }
    Outcome::Ok
}

/// `gacf [ATTR...]`: the global config, or the named attributes of it.
fn get_all_config(cluster: &ClusterState, rest: &[String], out: &mut String) -> Outcome {
    let ldap = cluster.ldap();
    for (name, v) in &ldap.global {
        if wanted(rest, name) {
            dump(out, name, v);
        }
    }
    Outcome::Ok
}

/// `gs [-e] NAME [ATTR...]`: a server entry, with the global values it inherits unless
/// `-e`.
fn get_server(
    cmd: &'static CmdDef,
    cluster: &ClusterState,
    rest: &[String],
    out: &mut String,
) -> Outcome {
    let (only_set, rest) = if rest[0] == "-e" {
        (true, &rest[1..])
    } else {
        (false, rest)
    };
    let Some(name) = rest.first() else {
        return Outcome::Usage(cmd, None);
    };
    let ldap = cluster.ldap();
    let Some(server) = find_server(&ldap, name) else {
        return no_such_server(name);
    };
    let entry = &ldap.servers[&server];
    let mut attrs = entry.clone();
    if !only_set {
        for (k, v) in &ldap.global {
            if lookup(k).is_some_and(|d| d.server_inherited)
                && entry.get(k).is_none_or(Vec::is_empty)
            {
                attrs.insert(k.clone(), v.clone());
            }
        }
    }
    out.push_str(&format!("# name {server}\n"));
    for (k, v) in &attrs {
        if wanted(&rest[1..], k) {
            dump(out, k, v);
        }
    }
    out.push('\n');
    Outcome::Ok
}

/// `gas [-v] [-e] [SERVICE]`: the server names, or those running SERVICE.
fn get_all_servers(cluster: &ClusterState, rest: &[String], out: &mut String) -> Outcome {
    let ldap = cluster.ldap();
    let service = rest.iter().find(|a| !a.starts_with('-'));
    for s in ldap.servers.keys() {
        if service.is_none_or(|svc| ldap.services(s).iter().any(|x| x == svc)) {
            out.push_str(s);
            out.push('\n');
        }
    }
    Outcome::Ok
}

/// `gad [-v [-e] [ATTR...]]`: the domain names, or with `-v` each domain's entry.
fn get_all_domains(
    cmd: &'static CmdDef,
    cluster: &ClusterState,
    rest: &[String],
    opts: &Opts,
    out: &mut String,
) -> Outcome {
    if rest.iter().any(|a| a == "-e") && !rest.iter().any(|a| a == "-v") {
        out.push_str("arg -e is invalid unless -v is also specified\n");
        return Outcome::Usage(cmd, None);
    }
    let verbose = rest.iter().any(|a| a == "-v");
    let attrs: Vec<String> = rest
        .iter()
        .filter(|a| !a.starts_with('-'))
        .cloned()
        .collect();
    let ldap = cluster.ldap();
    // LDAP search order (the seeded order), not sorted (docs/carbonio.md §5).
    for d in &ldap.domains {
        if !verbose {
            out.push_str(d);
            out.push('\n');
            continue;
        }
        dump_domain(out, &ldap, d, &attrs, opts);
    }
    Outcome::Ok
}

/// `sa [-v] QUERY`: the accounts matching `(ATTR=VALUE)` or `(ATTR=*)`.
fn search_accounts(
    cmd: &'static CmdDef,
    cluster: &ClusterState,
    rest: &[String],
    out: &mut String,
) -> Outcome {
    let verbose = rest.first().is_some_and(|a| a == "-v");
    let query = if verbose { rest.get(1) } else { rest.first() };
    let Some(query) = query else {
        return Outcome::Usage(cmd, None);
    };
    // `(ATTR=VALUE)` or `(ATTR=*)`, over what an account entry holds here: `mail`
    // and `zimbraMailCatchAllAddress`.
    let Some((attr, value)) = query
        .strip_prefix('(')
        .and_then(|q| q.strip_suffix(')'))
        .and_then(|q| q.split_once('='))
    else {
        return Outcome::Service(format!(
            "ERROR: service.INVALID_REQUEST (invalid request: unsupported query {query})"
        ));
    };
    let ldap = cluster.ldap();
    let catch_all = |acct: &str| ldap.catch_all_accounts.get(acct).cloned();
    let accounts: std::collections::BTreeSet<String> = ldap
        .addresses
        .iter()
        .chain(ldap.catch_all_accounts.keys())
        .cloned()
        .collect();
    for acct in accounts {
        let values: Vec<String> = match attr {
            a if a.eq_ignore_ascii_case("mail") => vec![acct.clone()],
            a if a.eq_ignore_ascii_case("zimbraMailCatchAllAddress") => {
                catch_all(&acct).into_iter().collect()
            }
            _ => Vec::new(),
        };
        let hit = if value == "*" {
            !values.is_empty()
        } else {
            values.iter().any(|v| v.eq_ignore_ascii_case(value))
        };
        if !hit {
            continue;
        }
        if verbose {
            out.push_str(&format!("# name {acct}\nmail: {acct}\n"));
            if let Some(c) = catch_all(&acct) {
                out.push_str(&format!("zimbraMailCatchAllAddress: {c}\n"));
            }
            out.push('\n');
        } else {
            out.push_str(&acct);
            out.push('\n');
        }
    }
    Outcome::Ok
}

/// `gd [-e] NAME [ATTR...]`: one domain's entry.
fn get_domain(
    cmd: &'static CmdDef,
    cluster: &ClusterState,
    rest: &[String],
    opts: &Opts,
    out: &mut String,
) -> Outcome {
    let rest = if rest[0] == "-e" { &rest[1..] } else { rest };
    let Some(name) = rest.first() else {
        return Outcome::Usage(cmd, None);
    };
    let ldap = cluster.ldap();
    let Some(domain) = ldap
        .domains
        .iter()
        .find(|d| d.eq_ignore_ascii_case(name))
        .cloned()
    else {
        return Outcome::Service(format!(
            "ERROR: account.NO_SUCH_DOMAIN (no such domain: {name})"
        ));
    };
    dump_domain(out, &ldap, &domain, &rest[1..], opts);
    Outcome::Ok
}

/// One domain's entry as `gd` and `gad -v` print it: `# name`, its attributes (those in
/// `attrs`, or all), a blank line.
fn dump_domain(out: &mut String, ldap: &Ldap, domain: &str, attrs: &[String], opts: &Opts) {
    out.push_str(&format!("# name {domain}\n"));
    if let Some(a) = ldap.domain_attrs.get(domain) {
        for (k, v) in a {
            // The DKIM object class is not in Carbonio's attribute manager: only a
            // direct LDAP read (`-l`) returns it.
            if k.starts_with("DKIM") && !opts.ldap {
                continue;
            }
            if wanted(attrs, k) {
                dump(out, k, v);
            }
        }
    }
    out.push('\n');
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Remove,
    Replace,
}

/// `mcf` (no `server`) or `ms SERVER`: applies the `[+|-]ATTR VALUE` pairs after
/// ProvUtil's checks, in its order (client-side safeguard, value checks, attribute
/// names, mixing and object class, LDAP write access), all or nothing.
fn modify(
    cmd: &'static CmdDef,
    server: Option<&String>,
    pairs: &[String],
    opts: &Opts,
    p: &Proc,
) -> Outcome {
    if !pairs.len().is_multiple_of(2) {
        return Outcome::Usage(cmd, None);
    }
    let mods = parse_mods(pairs);
    if let Some(refused) = check_mods(&mods, opts) {
        return refused;
    }
    let resolved = match resolve_mods(mods, server.is_some()) {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    let cluster = p.node.cluster.clone();
    let mut ldap = cluster.ldap();
    if let Some((_, def, _)) = resolved
        .iter()
        .find(|(_, d, _)| ldap.refused.contains(d.name))
    {
        return Outcome::Service(format!(
            "ERROR: service.FAILURE (system failure: unable to modify attrs: LDAP error: [LDAP: error code 50 - no write access to attribute {}])",
            def.name
        ));
    }
    let attrs = match server {
        None => &mut ldap.global,
        Some(name) => {
            let Some(s) = find_server(&ldap, name) else {
                return no_such_server(name);
            };
            ldap.servers.get_mut(&s).expect("server found above")
        }
    };
    apply_mods(attrs, resolved);
    Outcome::Ok
}

/// The `[+|-]ATTR VALUE` pairs as (operation, attribute name, value).
fn parse_mods(pairs: &[String]) -> Vec<(Op, String, String)> {
    let mut mods: Vec<(Op, String, String)> = Vec::new();
    for kv in pairs.chunks(2) {
        let (op, name) = match kv[0].as_bytes().first() {
            Some(b'+') => (Op::Add, &kv[0][1..]),
            Some(b'-') => (Op::Remove, &kv[0][1..]),
            _ => (Op::Replace, kv[0].as_str()),
        };
        mods.push((op, name.to_string(), kv[1].clone()));
    }
    mods
}

/// The checks before any attribute name is resolved: the client-side safeguard on
/// replacing a multi-valued service list without `-r`, then the values' types. The
/// refusal, if any.
fn check_mods(mods: &[(Op, String, String)], opts: &Opts) -> Option<Outcome> {
    // Client-side safeguard on replacing multi-valued service lists.
    for (op, name, _) in mods {
        if *op == Op::Replace
            && !opts.replace
            && SAFEGUARDED.iter().any(|s| s.eq_ignore_ascii_case(name))
            && mods
                .iter()
                .filter(|(_, n, _)| n.eq_ignore_ascii_case(name))
                .count()
                == 1
        {
            return Some(Outcome::Fatal(
                "error: cannot replace multi-valued attr value unless -r is specified".into(),
                2,
            ));
        }
    }
    // Value checks (AttributeManager.preModify) come before the LDAP modify.
    for (op, name, value) in mods {
        let Some(def) = lookup(name) else { continue };
        if *op == Op::Remove || (*op == Op::Replace && value.is_empty()) {
            continue;
        }
        if let Some(e) = check_value(def, value) {
            return Some(Outcome::Service(e));
        }
    }
    None
}

/// One modification with its attribute's definition.
type Resolved = (Op, &'static AttrDef, String);

/// Resolves each attribute name to its definition, then refuses a mix of replacing and
/// adding/removing one attribute and an attribute the entry's object class does not
/// allow (`on_server`: a server entry, else the global config).
fn resolve_mods(
    mods: Vec<(Op, String, String)>,
    on_server: bool,
) -> Result<Vec<Resolved>, Outcome> {
    let mut resolved: Vec<Resolved> = Vec::new();
    for (op, name, value) in mods {
        let Some(def) = lookup(&name) else {
            return Err(Outcome::Service(format!(
                "ERROR: account.INVALID_ATTR_NAME (invalid attr name: {name})"
            )));
        };
        resolved.push((op, def, value));
    }
    for (op, def, _) in &resolved {
        let mixed = resolved
            .iter()
            .any(|(o, d, _)| d.name == def.name && (*o == Op::Replace) != (*op == Op::Replace));
        if mixed {
            return Err(Outcome::Service(
                "ERROR: service.INVALID_REQUEST (invalid request: can't mix +attrName/-attrName with attrName)".into(),
            ));
        }
        let allowed = if on_server {
            def.in_server
        } else {
            def.in_global
        };
        if !allowed {
            return Err(Outcome::Service(format!(
                "ERROR: service.FAILURE (system failure: unable to modify attrs: object class violation: attribute {} not allowed)",
                def.name
            )));
        }
    }
    Ok(resolved)
}

/// Applies the resolved modifications to one entry: a replace clears the attribute once,
/// then each value adds (case-insensitively once) or removes; an attribute left without
/// values is dropped.
fn apply_mods(attrs: &mut AttrMap, resolved: Vec<Resolved>) {
    let mut replaced: Vec<&str> = Vec::new();
    for (op, def, value) in resolved {
        let vals = attrs.entry(def.name.to_string()).or_default();
        match op {
            Op::Replace => {
                if !replaced.contains(&def.name) {
                    vals.clear();
                    replaced.push(def.name);
                }
                if !value.is_empty() {
                    vals.push(value);
                }
            }
            Op::Add => {
                if !vals.iter().any(|v| v.eq_ignore_ascii_case(&value)) {
                    vals.push(value);
                }
            }
            Op::Remove => vals.retain(|v| !v.eq_ignore_ascii_case(&value)),
        }
        if vals.is_empty() {
            attrs.remove(def.name);
        }
    }
}

fn check_value(def: &AttrDef, value: &str) -> Option<String> {
    match def.ty {
        AttrType::Boolean if value != "TRUE" && value != "FALSE" => Some(format!(
            "ERROR: account.INVALID_ATTR_VALUE ({} must be TRUE or FALSE)",
            def.name
        )),
        AttrType::YesNo if value != "yes" && value != "no" => Some(format!(
            "ERROR: account.INVALID_ATTR_VALUE ({} must be one of: yes,no)",
            def.name
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_line_quotes_and_escapes() {
        assert_eq!(
            parse_line("mcf +zimbraMtaRestriction 'check_policy_service unix:private/policy'"),
            vec![
                "mcf",
                "+zimbraMtaRestriction",
                "check_policy_service unix:private/policy"
            ]
        );
        assert_eq!(
            parse_line(r#"a "b \" c" d\ e ''"#),
            vec!["a", "b \" c", "d e", ""]
        );
        assert_eq!(parse_line("   "), Vec::<String>::new());
    }

    #[test]
    fn count_messages() {
        let mcf = find_cmd("MCF").unwrap();
        assert_eq!(
            count_message(mcf, 1),
            "modifyConfig is expecting at least 2 arguments but 1 argument has been provided"
        );
        let gcf = find_cmd("gcf").unwrap();
        assert_eq!(
            count_message(gcf, 2),
            "getConfig is expecting 1 arguments but 2 arguments have been provided"
        );
        assert_eq!(
            usage_line(mcf),
            "usage:  modifyConfig(mcf) attr1 value1 [attr2 value2...]"
        );
    }
}

#[cfg(test)]
mod run_tests {
    use std::time::Duration;

    use crate::fleet::standalone_node;
    use crate::profiles::{NodeProfile, Posture};
    use crate::shell::run_captured;

    const H: &str = "mx1.example.test";

    fn node(posture: Posture) -> std::sync::Arc<crate::node::Node> {
        standalone_node(
            H,
            NodeProfile {
                posture,
                ..NodeProfile::default()
            },
            Duration::ZERO,
            Duration::ZERO,
        )
    }

    #[tokio::test]
    async fn get_domain_shows_dkim_only_in_ldap_mode() {
        let n = node(Posture::Compliant);
        {
            let mut ldap = n.cluster.ldap();
            let mut attrs = crate::attrs::AttrMap::new();
            attrs.insert("zimbraDomainType".into(), vec!["local".into()]);
            attrs.insert("DKIMSelector".into(), vec!["s1".into()]);
            ldap.domain_attrs.insert("example.test".into(), attrs);
        }
        let run = |script: &'static str| run_captured(n.clone(), "zextras", script, b"");
        let c = run("carbonio prov gd example.test zimbraDomainType DKIMSelector").await;
        assert_eq!(c.stdout, "# name example.test\nzimbraDomainType: local\n\n");
        let c = run("carbonio prov -l gd EXAMPLE.test").await;
        assert_eq!(
            c.stdout,
            "# name example.test\nDKIMSelector: s1\nzimbraDomainType: local\n\n"
        );
        let c = run("carbonio prov gd").await;
        assert_eq!(c.status, 1);
        assert!(
            c.stdout
                .starts_with("usage:  getDomain(gd) [-e] {domain|id} [attr1 [attr2...]]")
        );
    }

    #[tokio::test]
    async fn single_commands() {
        let n = node(Posture::HalfCompliant);
        let c = run_captured(
            n.clone(),
            "zextras",
            "carbonio prov gcf zimbramtarestriction",
            b"",
        )
        .await;
        assert_eq!(
            c.stdout,
            "zimbraMtaRestriction: reject_invalid_helo_hostname\nzimbraMtaRestriction: reject_non_fqdn_sender\nzimbraMtaRestriction: reject_unknown_sender_domain\n"
        );
        let c = run_captured(
            n.clone(),
            "zextras",
            "zmprov gcf zimbraNoSuchThing; echo \"rc $?\"",
            b"",
        )
        .await;
        assert_eq!(c.stdout, "rc 0\n");
        let c = run_captured(
            n.clone(),
            "zextras",
            "zmprov mcf zimbraMtaEnableSmtpdPolicyd yes",
            b"",
        )
        .await;
        assert_eq!(c.status, 2);
        assert_eq!(
            c.stderr,
            "ERROR: account.INVALID_ATTR_VALUE (zimbraMtaEnableSmtpdPolicyd must be TRUE or FALSE)\n"
        );
        let c = run_captured(
            n.clone(),
            "zextras",
            "zmprov mcf zimbraMtaSmtpdRejectUnlistedSender YES",
            b"",
        )
        .await;
        assert_eq!(
            c.stderr,
            "ERROR: account.INVALID_ATTR_VALUE (zimbraMtaSmtpdRejectUnlistedSender must be one of: yes,no)\n"
        );
        let c = run_captured(n.clone(), "zextras", "zmprov mcf zimbraBogus x", b"").await;
        assert_eq!(
            (c.status, c.stderr.as_str()),
            (
                2,
                "ERROR: account.INVALID_ATTR_NAME (invalid attr name: zimbraBogus)\n"
            )
        );
        let c = run_captured(
            n.clone(),
            "zextras",
            "zmprov mcf +zimbraMtaRestriction a zimbraMtaRestriction b",
            b"",
        )
        .await;
        assert_eq!(
            c.stderr,
            "ERROR: service.INVALID_REQUEST (invalid request: can't mix +attrName/-attrName with attrName)\n"
        );
        let c = run_captured(n.clone(), "zextras", "zmprov gs nosuch.host", b"").await;
        assert_eq!(
            (c.status, c.stderr.as_str()),
            (
                2,
                "ERROR: account.NO_SUCH_SERVER (no such server: nosuch.host)\n"
            )
        );
        let c = run_captured(
            n.clone(),
            "zextras",
            "zmprov mcf zimbraMtaEnableSmtpdPolicyd",
            b"",
        )
        .await;
        assert_eq!(c.status, 1);
        assert_eq!(
            c.stdout,
            "usage:  modifyConfig(mcf) attr1 value1 [attr2 value2...]\n\nFor general help, type : zmprov --help\n"
        );
        assert_eq!(
            c.stderr,
            "modifyConfig is expecting at least 2 arguments but 1 argument has been provided\n"
        );
    }

    #[tokio::test]
    async fn mcf_add_remove_replace_delete() {
        let n = node(Posture::NonCompliant);
        let s = "zmprov mcf +zimbraMtaRestriction 'check_policy_service unix:private/policy' && \
                 zmprov mcf +zimbraMtaRestriction 'CHECK_POLICY_SERVICE unix:private/policy' && \
                 zmprov mcf -zimbraMtaRestriction reject_non_fqdn_sender && zmprov gcf zimbraMtaRestriction && \
                 zmprov mcf zimbraMtaRestriction a zimbraMtaRestriction b && zmprov gcf zimbraMtaRestriction && \
                 zmprov mcf zimbraMtaRestriction '' && zmprov gcf zimbraMtaRestriction; echo \"rc $?\"";
        let c = run_captured(n, "zextras", s, b"").await;
        assert_eq!(
            c.stdout,
            "zimbraMtaRestriction: reject_invalid_helo_hostname\nzimbraMtaRestriction: check_policy_service unix:private/policy\n\
             zimbraMtaRestriction: a\nzimbraMtaRestriction: b\nrc 0\n"
        );
    }

    #[tokio::test]
    async fn gs_with_and_without_e() {
        let n = node(Posture::ServerOverride);
        let c = run_captured(
            n.clone(),
            "zextras",
            &format!(
                "zmprov gs -e {H} zimbraMtaSmtpdRejectUnlistedRecipient zimbraMtaEnableSmtpdPolicyd"
            ),
            b"",
        )
        .await;
        assert_eq!(
            c.stdout,
            format!("# name {H}\nzimbraMtaSmtpdRejectUnlistedRecipient: no\n\n")
        );
        let c = run_captured(
            n,
            "zextras",
            &format!(
                "zmprov gs {H} zimbraMtaSmtpdRejectUnlistedRecipient zimbraMtaEnableSmtpdPolicyd"
            ),
            b"",
        )
        .await;
        assert_eq!(
            c.stdout,
            format!(
                "# name {H}\nzimbraMtaEnableSmtpdPolicyd: TRUE\nzimbraMtaSmtpdRejectUnlistedRecipient: no\n\n"
            )
        );
    }

    #[tokio::test]
    async fn batch_mode() {
        let n = node(Posture::HalfCompliant);
        let input = "gcf zimbraMtaEnableSmtpdPolicyd\n\nmcf zimbraMtaEnableSmtpdPolicyd maybe\nmcf a\n# comment\ngcf zimbraMtaSmtpdRejectUnlistedSender\n";
        let c = run_captured(n.clone(), "zextras", "carbonio prov", input.as_bytes()).await;
        assert_eq!(
            c.stdout,
            "prov> zimbraMtaEnableSmtpdPolicyd: FALSE\nprov> prov> prov> usage:  modifyConfig(mcf) attr1 value1 [attr2 value2...]\n\n\
             prov> Unknown command. Type: 'help commands' for a list\nprov> zimbraMtaSmtpdRejectUnlistedSender: yes\nprov> "
        );
        assert_eq!(
            c.stderr,
            "ERROR: account.INVALID_ATTR_VALUE (zimbraMtaEnableSmtpdPolicyd must be TRUE or FALSE)\n\
             modifyConfig is expecting at least 2 arguments but 1 argument has been provided\n"
        );
        assert_eq!(c.status, 0, "EOF exits 0 even after an error");
        let c = run_captured(
            n.clone(),
            "zextras",
            "printf '%s\\n' 'mcf zimbraMtaEnableSmtpdPolicyd maybe' exit | carbonio prov",
            b"",
        )
        .await;
        assert_eq!((c.status, c.stdout.as_str()), (2, "prov> prov> "));
        let c = run_captured(
            n.clone(),
            "zextras",
            "printf '%s\\n' 'gcf zimbraMtaEnableSmtpdPolicyd' quit | zmprov -l",
            b"",
        )
        .await;
        assert_eq!(
            (c.status, c.stdout.as_str()),
            (0, "prov> zimbraMtaEnableSmtpdPolicyd: FALSE\nprov> ")
        );
        assert_eq!(n.prov_invocations(), 3);
        let c = run_captured(n.clone(), "zextras", "printf '%s\\n' 'prov gcf zimbraMtaSmtpdRejectUnlistedRecipient' >/tmp/b && zmprov -f /tmp/b", b"").await;
        assert_eq!(
            (c.status, c.stdout.as_str()),
            (
                0,
                "prov> zimbraMtaSmtpdRejectUnlistedRecipient: yes\nprov> "
            )
        );
        let c = run_captured(n, "zextras", "zmprov -f /tmp/missing", b"").await;
        assert_eq!(c.status, 2);
    }
}
