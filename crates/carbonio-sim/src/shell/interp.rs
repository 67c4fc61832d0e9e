//! Interpreter for parsed scripts: expansion, redirections, pipelines (run one stage
//! after the other through memory, which is all the dialect needs), builtins, and the
//! hand-off to emulated programs. `exit` ends the current shell only.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::io::{Io, Sink, Source};
use super::parse::{AndOr, Command, Connector, Part, Pipeline, RedirOp, Script, Word, parse};
use crate::node::Node;
use crate::programs::{self, Proc};

/// Whether a script ran to its end or hit `exit`.
enum Flow {
    Normal,
    Exit(i32),
}

/// A shell process: who it runs as and its variables.
pub struct Shell {
    pub node: Arc<Node>,
    pub user: String,
    pub vars: HashMap<String, String>,
    pub status: i32,
}

/// Parses and runs `src` as a new shell process of `user` with environment `vars`;
/// returns its exit status. A parse error prints dash's message and gives 2.
pub fn run_script(
    node: Arc<Node>,
    user: String,
    vars: HashMap<String, String>,
    src: String,
    io: Io,
) -> BoxFuture<'static, i32> {
    Box::pin(async move {
        let script = match parse(&src) {
            Ok(s) => s,
            Err(e) => {
                io.stderr.line(format!("sh: 1: Syntax error: {e}")).await;
                return 2;
            }
        };
        let mut sh = Shell {
            node,
            user,
            vars,
            status: 0,
        };
        let flow = sh.script(&script, &io).await;
        sh.exit_status(flow)
    })
}

/// The environment a login shell of `user` starts with (what `su -`, `sudo -i` and
/// sshd + Debian's .bashrc give).
pub fn login_env(node: &Node, user: &str) -> HashMap<String, String> {
    let st = node.state();
    let home = st
        .passwd
        .iter()
        .find(|p| p.name == user)
        .map(|p| (p.home.clone(), p.shell.clone()))
        .unwrap_or_else(|| ("/".into(), "/bin/sh".into()));
    let service = st.flavour;
    let path = if user == service.user() {
        let h = service.home();
        format!(
            "{h}/bin:{h}/common/lib/jvm/java/bin:{h}/common/bin:{h}/common/sbin:/usr/sbin:/usr/local/bin:/usr/bin:/bin"
        )
    } else if user == "root" {
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()
    } else {
        "/usr/local/bin:/usr/bin:/bin".to_string()
    };
    [
        ("HOME", home.0.as_str()),
        ("SHELL", home.1.as_str()),
        ("USER", user),
        ("LOGNAME", user),
        ("PATH", path.as_str()),
        ("PWD", home.0.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl Shell {
    /// A child shell (a pipeline stage, `$(...)`): the same user, a copy of the
    /// variables, `$?` carried over.
    fn subshell(&self) -> Shell {
        Shell {
            node: self.node.clone(),
            user: self.user.clone(),
            vars: self.vars.clone(),
            status: self.status,
        }
    }

    /// The exit status of a shell that ended with `flow`: `exit N`'s N, else its `$?`.
    fn exit_status(&self, flow: Flow) -> i32 {
        match flow {
            Flow::Normal => self.status,
            Flow::Exit(c) => c,
        }
    }

    fn script<'a>(&'a mut self, s: &'a Script, io: &'a Io) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            for ao in &s.0 {
                if let Flow::Exit(c) = self.and_or(ao, io).await {
                    return Flow::Exit(c);
                }
            }
            Flow::Normal
        })
    }

    async fn and_or(&mut self, ao: &AndOr, io: &Io) -> Flow {
        if let Flow::Exit(c) = self.pipeline(&ao.first, io).await {
            return Flow::Exit(c);
        }
        for (conn, p) in &ao.rest {
            let run = match conn {
                Connector::And => self.status == 0,
                Connector::Or => self.status != 0,
            };
            if run && let Flow::Exit(c) = self.pipeline(p, io).await {
                return Flow::Exit(c);
            }
        }
        Flow::Normal
    }

    async fn pipeline(&mut self, p: &Pipeline, io: &Io) -> Flow {
        if p.0.len() == 1 {
            return self.command(&p.0[0], io).await;
        }
        // Every stage is a subshell: `exit` inside it only ends that stage.
        let mut stdin = io.stdin.clone();
        let last = p.0.len() - 1;
        for (k, cmd) in p.0.iter().enumerate() {
            let (out, buf) = if k == last {
                (io.stdout.clone(), None)
            } else {
                let (s, b) = Sink::buffer();
                (s, Some(b))
            };
            let stage_io = Io {
                stdin: stdin.clone(),
                stdout: out,
                stderr: io.stderr.clone(),
            };
            let mut sub = self.subshell();
            let flow = sub.command(cmd, &stage_io).await;
            let status = sub.exit_status(flow);
            self.status = status;
            if let Some(b) = buf {
                stdin = Source::bytes(std::mem::take(&mut *b.lock().expect("pipe poisoned")));
            }
        }
        Flow::Normal
    }

    async fn command(&mut self, cmd: &Command, io: &Io) -> Flow {
        let mut sub_status: Option<i32> = None;
        let mut fields = Vec::new();
        for w in &cmd.words {
            fields.extend(self.expand(w, io, &mut sub_status).await);
        }
        let mut assigns = Vec::new();
        for (name, w) in &cmd.assigns {
            let v = self.expand_one(w, io, &mut sub_status).await;
            assigns.push((name.clone(), v));
        }
        let io = match self.redirect(cmd, io, &mut sub_status).await {
            Ok(io) => io,
            Err(msg) => {
                io.stderr.line(format!("sh: 1: {msg}")).await;
                self.status = 2;
                return Flow::Normal;
            }
        };
        if fields.is_empty() {
            self.vars.extend(assigns);
            self.status = sub_status.unwrap_or(0);
            return Flow::Normal;
        }
        let name = fields.remove(0);
        let args = fields;
        match name.as_str() {
            "exit" => {
                let code = match args.first() {
                    None => self.status,
                    Some(a) => match a.parse::<i32>() {
                        Ok(n) if n >= 0 => n & 0xff,
                        _ => {
                            io.stderr
                                .line(format!("sh: 1: exit: Illegal number: {a}"))
                                .await;
                            return Flow::Exit(2);
                        }
                    },
                };
                return Flow::Exit(code);
            }
            "true" | ":" => self.status = 0,
            "false" => self.status = 1,
            "test" => self.status = builtin_test(&args, &io, &self.node).await,
            "command" => self.status = self.builtin_command(&args, &io).await,
            _ => {
                let mut env = self.vars.clone();
                env.extend(assigns);
                let path = env.get("PATH").cloned().unwrap_or_default();
                let flavour = self.node.state().flavour;
                match programs::resolve(&name, &path, flavour) {
                    Some(prog) => {
                        let mut p = Proc {
                            node: self.node.clone(),
                            user: self.user.clone(),
                            env,
                            io,
                            argv0: name,
                        };
                        self.status = programs::run(prog, args, &mut p).await;
                    }
                    None => {
                        io.stderr.line(format!("sh: 1: {name}: not found")).await;
                        self.status = 127;
                    }
                }
            }
        }
        Flow::Normal
    }

    async fn builtin_command(&mut self, args: &[String], io: &Io) -> i32 {
        let [flag, name] = args else {
            io.stderr
                .line("sh: 1: command: only `command -v NAME` is supported")
                .await;
            return 2;
        };
        if flag != "-v" {
            io.stderr
                .line(format!("sh: 1: command: {flag}: bad option"))
                .await;
            return 2;
        }
        if matches!(
            name.as_str(),
            "exit" | "true" | "false" | ":" | "command" | "echo" | "printf"
        ) {
            io.stdout.line(name).await;
            return 0;
        }
        let path = self.vars.get("PATH").cloned().unwrap_or_default();
        let flavour = self.node.state().flavour;
        match programs::resolve(name, &path, flavour) {
            Some(p) => {
                io.stdout.line(p.path).await;
                0
            }
            None => 1,
        }
    }

    async fn redirect(
        &mut self,
        cmd: &Command,
        io: &Io,
        sub_status: &mut Option<i32>,
    ) -> Result<Io, String> {
        let mut out = io.clone();
        for r in &cmd.redirs {
            let target = |fd: u32| -> Result<Sink, String> {
                match fd {
                    1 => Ok(out.stdout.clone()),
                    2 => Ok(out.stderr.clone()),
                    n => Err(format!("{n}: Bad file descriptor")),
                }
            };
            match &r.op {
                RedirOp::Dup(m) => {
                    let sink = target(*m)?;
                    match r.fd {
                        1 => out.stdout = sink,
                        2 => out.stderr = sink,
                        n => return Err(format!("{n}: Bad file descriptor")),
                    }
                }
                RedirOp::Out(w) | RedirOp::Append(w) => {
                    let path = self.expand_one(w, io, sub_status).await;
                    let sink = if path == "/dev/null" {
                        Sink::Null
                    } else {
                        if !path.starts_with('/') {
                            return Err(format!("cannot create {path}: Read-only file system"));
                        }
                        if matches!(r.op, RedirOp::Out(_)) {
                            self.node.state().files.insert(path.clone(), Vec::new());
                        }
                        Sink::File(self.node.clone(), path)
                    };
                    match r.fd {
                        1 => out.stdout = sink,
                        2 => out.stderr = sink,
                        n => return Err(format!("{n}: Bad file descriptor")),
                    }
                }
                RedirOp::In(w) => {
                    if r.fd != 0 {
                        return Err(format!("{}: Bad file descriptor", r.fd));
                    }
                    let path = self.expand_one(w, io, sub_status).await;
                    if path == "/dev/null" {
                        out.stdin = Source::Empty;
                    } else {
                        let content = self.node.state().files.get(&path).cloned();
                        match content {
                            Some(c) => out.stdin = Source::bytes(c),
                            None => return Err(format!("cannot open {path}: No such file")),
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn var(&self, name: &str) -> String {
        match name {
            "?" => self.status.to_string(),
            "$" => "4242".into(),
            "#" | "0" => {
                if name == "#" {
                    "0".into()
                } else {
                    "sh".into()
                }
            }
            n if n.chars().all(|c| c.is_ascii_digit()) => String::new(),
            n => self.vars.get(n).cloned().unwrap_or_default(),
        }
    }

    async fn substitute(
        &mut self,
        script: &Script,
        io: &Io,
        sub_status: &mut Option<i32>,
    ) -> String {
        let (sink, buf) = Sink::buffer();
        let sub_io = Io {
            stdin: io.stdin.clone(),
            stdout: sink,
            stderr: io.stderr.clone(),
        };
        let mut sub = self.subshell();
        let flow = sub.script(script, &sub_io).await;
        let status = sub.exit_status(flow);
        *sub_status = Some(status);
        self.status = status;
        let mut s = String::from_utf8_lossy(&buf.lock().expect("buffer poisoned")).into_owned();
        while s.ends_with('\n') {
            s.pop();
        }
        s
    }

    /// Expands a word into fields (unquoted expansions split on blanks; no globbing).
    async fn expand(&mut self, w: &Word, io: &Io, sub_status: &mut Option<i32>) -> Vec<String> {
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut have = false;
        for part in &w.0 {
            let (text, quoted) = match part {
                Part::Lit { text, quoted } => {
                    cur.push_str(text);
                    have |= *quoted || !text.is_empty();
                    continue;
                }
                Part::Var { name, quoted } => (self.var(name), *quoted),
                Part::Trimmed {
                    name,
                    trim,
                    pattern,
                    quoted,
                } => (
                    super::pattern::trim(&self.var(name), *trim, pattern),
                    *quoted,
                ),
                Part::Sub { script, quoted } => {
                    (self.substitute(script, io, sub_status).await, *quoted)
                }
            };
            if quoted {
                cur.push_str(&text);
                have = true;
                continue;
            }
            let is_blank = |c: char| matches!(c, ' ' | '\t' | '\n');
            if text.starts_with(is_blank) && have {
                fields.push(std::mem::take(&mut cur));
                have = false;
            }
            let pieces: Vec<&str> = text.split(is_blank).filter(|p| !p.is_empty()).collect();
            for (k, piece) in pieces.iter().enumerate() {
                if k > 0 {
                    fields.push(std::mem::take(&mut cur));
                }
                cur.push_str(piece);
                have = true;
            }
            if text.ends_with(is_blank) && !pieces.is_empty() {
                fields.push(std::mem::take(&mut cur));
                have = false;
            }
        }
        if have {
            fields.push(cur);
        }
        fields
    }

    /// Expands a word where no field splitting happens (assignments, redirection targets).
    async fn expand_one(&mut self, w: &Word, io: &Io, sub_status: &mut Option<i32>) -> String {
        let mut s = String::new();
        for part in &w.0 {
            match part {
                Part::Lit { text, .. } => s.push_str(text),
                Part::Var { name, .. } => s.push_str(&self.var(name)),
                Part::Trimmed {
                    name,
                    trim,
                    pattern,
                    ..
                } => s.push_str(&super::pattern::trim(&self.var(name), *trim, pattern)),
                Part::Sub { script, .. } => {
                    let t = self.substitute(script, io, sub_status).await;
                    s.push_str(&t);
                }
            }
        }
        s
    }
}

/// The `test` builtin for the dialect's string comparisons: `test A = B`, `test A != B`,
/// `test -n A`, `test -z A`, `test -S PATH` for the one socket a node has (Postfix's
/// policy socket) and `test -d DIR`; anything else is status 2 with a message, as dash says.
async fn builtin_test(args: &[String], io: &Io, node: &Node) -> i32 {
    let truth = match args {
        [op, path] if op == "-S" => Some(crate::policyd::socket_exists(node, path)),
        // Directories are not modelled but for systemd's runtime one (present while
        // systemd runs the node) and those holding a file.
        [op, path] if op == "-d" => Some({
            let st = node.state();
            (path == crate::node::SYSTEMD_RUN && st.platform == crate::node::Platform::Systemd)
                || st.files.keys().any(|f| {
                    f.strip_prefix(path.as_str())
                        .is_some_and(|r| r.starts_with('/'))
                })
        }),
        [a, op, b] if op == "=" => Some(a == b),
        [a, op, b] if op == "!=" => Some(a != b),
        [op, a] if op == "-n" => Some(!a.is_empty()),
        [op, a] if op == "-z" => Some(a.is_empty()),
        [a] => Some(!a.is_empty()),
        _ => None,
    };
    match truth {
        Some(true) => 0,
        Some(false) => 1,
        None => {
            io.stderr
                .line(format!("sh: 1: test: unsupported: {}", args.join(" ")))
                .await;
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::fleet::standalone_node;
    use crate::profiles::NodeProfile;
    use crate::shell::{Captured, run_captured};

    /// The tool's quoting: POSIX single quotes, `'` → `'\''`.
    fn quote(s: &str) -> String {
        format!("'{}'", s.replace('\'', "'\\''"))
    }

    async fn run(user: &str, script: &str) -> Captured {
        let node = standalone_node(
            "mx1.example.test",
            NodeProfile::default(),
            Duration::ZERO,
            Duration::ZERO,
        );
        run_captured(node, user, script, b"").await
    }

    #[tokio::test]
    async fn quoting_and_lists() {
        let c = run(
            "root",
            "echo 'a'\\''b' \"x$HOME\"; false || echo no && echo yes; echo \"rc $?\"",
        )
        .await;
        assert_eq!(c.stdout, "a'b x/root\nno\nyes\nrc 0\n");
        assert_eq!(c.status, 0);
    }

    #[tokio::test]
    async fn hostile_values_round_trip_through_su() {
        for v in [
            "a'b",
            "“check_policy_service unix:private/policy”",
            "; rm -rf / #",
            "$(id) `id` ${HOME}",
            "line1\nline2",
            "back\\slash \"dq\" 'sq'",
            "ünïcødé && || | > < &",
            "",
        ] {
            let inner = format!("printf '%s\\n' {}; whoami", quote(v));
            let c = run("root", &format!("su - zextras -c {}", quote(&inner))).await;
            assert_eq!(
                c.stdout,
                format!("{v}\nzextras\n"),
                "value {v:?}, stderr {:?}",
                c.stderr
            );
            assert_eq!(c.status, 0);
            let c = run(
                "root",
                &format!("sudo -n -u zextras -i -- /bin/bash -c {}", quote(&inner)),
            )
            .await;
            assert_eq!(c.stdout, format!("{v}\nzextras\n"), "sudo, value {v:?}");
        }
    }

    #[tokio::test]
    async fn become_failures() {
        let c = run("zextras", "su - zextras -c 'echo hi'").await;
        assert_eq!(
            (c.status, c.stdout.as_str(), c.stderr.as_str()),
            (1, "", "su: Authentication failure\n")
        );
        let c = run("zextras", "sudo -n -- /bin/bash -c 'echo hi'").await;
        assert_eq!(
            (c.status, c.stderr.as_str()),
            (1, "sudo: a password is required\n")
        );
        let c = run("root", "sudo -n -- /bin/bash -c 'whoami'").await;
        assert_eq!((c.status, c.stdout.as_str()), (0, "root\n"));
    }

    #[tokio::test]
    async fn exit_status_and_errors() {
        let c = run("root", "nosuchprog --x").await;
        assert_eq!(
            (c.status, c.stderr.as_str()),
            (127, "sh: 1: nosuchprog: not found\n")
        );
        let c = run("root", "echo 'unterminated").await;
        assert_eq!(
            (c.status, c.stderr.as_str()),
            (2, "sh: 1: Syntax error: Unterminated quoted string\n")
        );
        let c = run("root", "echo a; exit 3; echo b").await;
        assert_eq!((c.status, c.stdout.as_str()), (3, "a\n"));
        let c = run("root", "bash -c 'exit 4'; echo \"rc $?\"").await;
        assert_eq!(c.stdout, "rc 4\n");
    }

    #[tokio::test]
    async fn path_is_per_user() {
        let c = run("root", "carbonio prov gcf zimbraMtaEnableSmtpdPolicyd").await;
        assert_eq!(
            (c.status, c.stderr.as_str()),
            (127, "sh: 1: carbonio: not found\n")
        );
        let c = run(
            "root",
            "/opt/zextras/bin/carbonio prov gcf zimbraMtaEnableSmtpdPolicyd",
        )
        .await;
        assert_eq!(
            (c.status, c.stdout.as_str()),
            (1, "Please run as zextras user\n")
        );
        let c = run("root", "command -v zmcontrol; command -v systemctl").await;
        assert_eq!(c.stdout, "/usr/bin/systemctl\n");
    }

    #[tokio::test]
    async fn redirections_pipes_and_substitution() {
        let c = run("root", "echo err >&2 2>/dev/null; echo both 2>&1 >/dev/null; h=$(hostname); echo \"[$h]\" >/tmp/f; cat /tmp/f; printf '%s\\n' x y | grep -F y").await;
        assert_eq!(c.stdout, "[mx1.example.test]\ny\n");
        assert_eq!(c.stderr, "err\n");
        let c = run("root", "zmhostname 2>&1; echo \"rc $?\"").await;
        assert_eq!(c.stdout, "sh: 1: zmhostname: not found\nrc 127\n");
        let c = run("root", "cat </nonexistent").await;
        assert_eq!(
            (c.status, c.stderr.as_str()),
            (2, "sh: 1: cannot open /nonexistent: No such file\n")
        );
    }
}
