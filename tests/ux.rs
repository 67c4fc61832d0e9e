//! Operator experience through the real binary: progress bars in a real pseudo-terminal
//! (tmux), no control bytes in pipes and files, the `--log-file` JSON lines, `report
//! show | diff | merge`, and a whole check against a password-only sshd whose password
//! must appear in no output at all.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod support;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use carbonio_fleet::exit::ExitCode;
use test_prereq::{self as prereq, Need};

const BIN: &str = env!("CARGO_BIN_EXE_carbonio-fleet");

/// An inventory of `n` hosts on 127.0.0.1 at `port` (h1, h2, …).
fn inventory(dir: &Path, port: u16, n: usize, connect_timeout: &str) -> PathBuf {
    let known_hosts = dir.join("known_hosts");
    fs::write(&known_hosts, "").unwrap();
    let mut text = format!(
        "[defaults]\nuser = \"root\"\nidentity_files = []\nconnect_timeout = \"{connect_timeout}\"\nknown_hosts = \"{}\"\n",
        known_hosts.display()
    );
    for i in 1..=n {
        text.push_str(&format!(
            "[[hosts]]\nname = \"h{i}\"\naddress = \"127.0.0.1\"\nport = {port}\n"
        ));
    }
    let path = dir.join("inventory.toml");
    fs::write(&path, text).unwrap();
    path
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn fleet(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("CARBONIO_FLEET_LOG")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A tmux server of our own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A tmux server of its own running `script` (sh) in pane `t` of `width`×`height`, in
    /// a clean environment (no agent, `COLUMNS` or colour variables). The script signals
    /// `done` when it ends; the pane stays for capturing.
    fn start(name: &str, width: usize, height: usize, script: &str) -> Tmux {
        let tmux = Tmux {
            socket: format!("cfleet-{name}-{}", std::process::id()),
        };
        let script = format!(
            "{script}; echo EXIT=$?; tmux -L {sock} wait-for -S done; sleep 600",
            sock = tmux.socket
        );
        let (width, height) = (width.to_string(), height.to_string());
        let out = tmux.cmd(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &width,
            "-y",
            &height,
            "env",
            "-u",
            "SSH_AUTH_SOCK",
            "-u",
            "COLUMNS",
            "-u",
            "NO_COLOR",
            "-u",
            "CLICOLOR_FORCE",
            "TERM=xterm-256color",
            "sh",
            "-c",
            &script,
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        tmux
    }

    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux runs")
    }

    fn screen(&self, history: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-t", "t"];
        if history {
            args.extend(["-S", "-"]);
        }
        text(&self.cmd(&args).stdout)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// The TTY case in a real pseudo-terminal: while six hosts hang in the SSH handshake
/// (a listener that never answers), the overall bar, three host spinners and the
/// "...and N more hosts" footer are on screen; afterwards the bars are gone, the log
/// lines and the summary are whole.
#[test]
fn progress_bars_in_a_real_terminal() {
    if !prereq::require(
        "progress_bars_in_a_real_terminal",
        &[Need::program("tmux", "tmux")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Accepted by the kernel, never answered: each host waits for the SSH banner, far
    // longer than the test needs to look (connect_timeout 120s), until the test closes
    // the listener, which resets the waiting connections and refuses their retries.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let inv = inventory(dir.path(), port, 6, "120s");
    // Every path quoted: the checkout (BIN) may live in a path with spaces.
    let q = |p: &Path| carbonio_fleet::ssh::quote(p.to_str().unwrap()).unwrap();
    let script = format!(
        "cd {dir} && {bin} check -i {inv} --report-dir reports",
        dir = q(dir.path()),
        bin = q(Path::new(BIN)),
        inv = q(&inv),
    );
    let tmux = Tmux::start("ux", 150, 40, &script);

    // Poll the screen (with a deadline) until all six hosts are live and the phase is
    // drawn: a state that holds until the listener closes. (The bars appear host by host
    // and the phase text a moment after the bar: an earlier frame is not wrong, only not
    // there yet.)
    let deadline = Instant::now() + Duration::from_secs(60);
    let live = loop {
        let s = tmux.screen(false);
        if s.contains("0/6 hosts connecting and gathering") && s.contains("...and 3 more hosts") {
            break s;
        }
        assert!(Instant::now() < deadline, "no progress bars drawn:\n{s}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        live.contains("check   ["),
        "overall bar with its phase:\n{live}"
    );
    assert!(
        live.contains("0/6 hosts connecting and gathering"),
        "{live}"
    );
    let spinners = live.lines().filter(|l| l.contains("↳")).count();
    assert_eq!(spinners, 3, "three host spinners:\n{live}");
    assert!(live.contains(" gather "), "{live}");
    assert!(live.contains("...and 3 more hosts"), "{live}");

    // The hosts fail now: the run ends.
    drop(silent);
    let waited = Command::new("timeout")
        .args(["100", "tmux", "-L", &tmux.socket, "wait-for", "done"])
        .status()
        .unwrap();
    assert!(waited.success(), "the run did not finish");
    let end = tmux.screen(true);
    assert!(
        end.contains(&format!("EXIT={}", ExitCode::HostFailed.code())),
        "{end}"
    );
    assert!(end.contains("FAILED (6)"), "{end}");
    assert!(
        end.contains("6 hosts: 0 compliant, 0 drift, 0 restart-pending, 6 failed\nreport: "),
        "{end}"
    );
    // The bars are cleared, not stranded between the lines.
    assert!(!end.contains("eta"), "a bar was left on screen:\n{end}");
    assert!(!end.contains("more hosts"), "{end}");
    // Log lines are whole lines, one per failed host.
    let warns: Vec<&str> = end.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warns.len(), 6, "{end}");
    for w in warns {
        assert!(w.starts_with(" WARN h"), "torn log line `{w}`");
        assert!(w.contains(": unreachable: "), "{w}");
    }
}

/// Pipes and files get no control bytes, whatever `--progress` says; the log file is
/// JSON lines with the audit events; `-q` silences stderr.
#[test]
fn no_control_bytes_outside_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), closed_port(), 3, "5s");
    let inv = inv.to_str().unwrap();
    for progress in ["auto", "always", "never"] {
        let log = dir.path().join(format!("{progress}.jsonl"));
        let out = fleet(
            &[
                "check",
                "-i",
                inv,
                "-vv",
                "--progress",
                progress,
                "--log-file",
                log.to_str().unwrap(),
            ],
            dir.path(),
        );
        assert_eq!(
            out.status.code(),
            Some(ExitCode::HostFailed.code()),
            "{out:?}"
        );
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(
            !stdout.contains('\x1b'),
            "--progress {progress}: {stdout:?}"
        );
        assert!(
            !stderr.contains('\x1b'),
            "--progress {progress}: {stderr:?}"
        );
        assert!(stdout.contains("FAILED (3)"), "{stdout}");
        assert!(
            stderr.contains(" WARN h1: unreachable: cannot connect to `h1`"),
            "{stderr}"
        );
        assert!(
            stderr.contains(" INFO check started on 3 hosts"),
            "{stderr}"
        );

        let log = fs::read_to_string(&log).unwrap();
        assert!(!log.contains('\x1b'));
        let events: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let audit: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| e["target"] == "carbonio_fleet::audit")
            .collect();
        let kinds: Vec<&str> = audit.iter().map(|e| e["event"].as_str().unwrap()).collect();
        assert_eq!(kinds.first(), Some(&"run-started"), "{kinds:?}");
        assert_eq!(kinds.last(), Some(&"run-finished"), "{kinds:?}");
        let failed: Vec<&&serde_json::Value> = audit
            .iter()
            .filter(|e| e["event"] == "host-failed")
            .collect();
        assert_eq!(failed.len(), 3);
        assert!(failed.iter().all(|e| e["kind"] == "unreachable"
            && e["operator"].as_str().is_some_and(|o| o.contains('@'))
            && e["timestamp"].is_string()));
        assert_eq!(
            audit.last().unwrap()["exit_code"],
            ExitCode::HostFailed.code()
        );
    }

    let out = fleet(&["check", "-i", inv, "-q"], dir.path());
    assert_eq!(out.status.code(), Some(ExitCode::HostFailed.code()));
    assert_eq!(text(&out.stderr), "");

    // CARBONIO_FLEET_LOG replaces -v/-q; a bad one is a usage error before any contact.
    let out = Command::new(BIN)
        .args(["check", "-i", inv])
        .current_dir(dir.path())
        .env("CARBONIO_FLEET_LOG", "error")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(ExitCode::HostFailed.code()));
    assert_eq!(text(&out.stderr), "");
    let out = Command::new(BIN)
        .args(["check", "-i", inv])
        .current_dir(dir.path())
        .env("CARBONIO_FLEET_LOG", "carbonio_fleet=loud")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(ExitCode::Usage.code()));
    assert!(
        text(&out.stderr)
            .contains("CARBONIO_FLEET_LOG=`carbonio_fleet=loud` is not a valid filter")
    );
}

fn edit_report(src: &Path, dst: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_str(&fs::read_to_string(src).unwrap()).unwrap();
    edit(&mut v);
    fs::write(dst, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// `report show` repeats the summary, `report diff` exits 2 on new drift only, `report
/// merge` writes a full report set and refuses different playbooks.
#[test]
fn report_show_diff_merge() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let inv = inventory(d, closed_port(), 2, "5s");
    let inv = inv.to_str().unwrap();
    let reports = d.join("reports");
    let reports_s = reports.to_str().unwrap();
    let mut runs = Vec::new();
    for limit in ["h1", "h2"] {
        let out = fleet(
            &[
                "check",
                "-i",
                inv,
                "--limit",
                limit,
                "--report-dir",
                reports_s,
                "-q",
            ],
            d,
        );
        assert_eq!(out.status.code(), Some(ExitCode::HostFailed.code()));
        let stdout = text(&out.stdout);
        let path = stdout
            .lines()
            .find_map(|l| l.strip_prefix("report: "))
            .unwrap()
            .to_string();
        runs.push((PathBuf::from(path), stdout));
    }
    let (h2_report, h2_stdout) = &runs[1];

    // show: the summary again (from the file or its run directory), or the JSON.
    for arg in [h2_report.clone(), reports.join("latest")] {
        let out = fleet(&["report", "show", arg.to_str().unwrap()], d);
        assert_eq!(out.status.code(), Some(ExitCode::Ok.code()));
        let summary = h2_stdout.split("report: ").next().unwrap();
        assert_eq!(text(&out.stdout), summary);
    }
    let out = fleet(
        &[
            "report",
            "show",
            "--format",
            "json",
            h2_report.to_str().unwrap(),
        ],
        d,
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stored: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(h2_report).unwrap()).unwrap();
    assert_eq!(shown, stored);
    let out = fleet(&["report", "show", "no/such/report.json"], d);
    assert_eq!(out.status.code(), Some(ExitCode::Usage.code()));

    // diff: same state → 0; from compliant to failed → 2 with the change named.
    let h2 = h2_report.to_str().unwrap();
    let out = fleet(&["report", "diff", h2, h2], d);
    assert_eq!(out.status.code(), Some(ExitCode::Ok.code()), "{out:?}");
    let was_ok = d.join("was-compliant.json");
    edit_report(h2_report, &was_ok, |v| {
        v["hosts"][0]["status"] = "compliant".into();
        v["hosts"][0]["error"] = serde_json::Value::Null;
    });
    let out = fleet(&["report", "diff", was_ok.to_str().unwrap(), h2], d);
    assert_eq!(out.status.code(), Some(ExitCode::Drift.code()), "{out:?}");
    assert!(text(&out.stdout).contains("h2"), "{}", text(&out.stdout));
    let out = fleet(
        &[
            "report",
            "diff",
            "--format",
            "json",
            was_ok.to_str().unwrap(),
            h2,
        ],
        d,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["has_new_drift"], true);
    let out = fleet(&["report", "diff", h2, was_ok.to_str().unwrap()], d);
    assert_eq!(
        out.status.code(),
        Some(ExitCode::Ok.code()),
        "getting better is not drift"
    );

    // merge: a new run directory with the whole report set.
    let merged_dir = d.join("merged");
    let h1 = runs[0].0.to_str().unwrap().to_string();
    let out = fleet(
        &[
            "report",
            "merge",
            &h1,
            h2,
            "--report-dir",
            merged_dir.to_str().unwrap(),
        ],
        d,
    );
    assert_eq!(
        out.status.code(),
        Some(ExitCode::HostFailed.code()),
        "{out:?}"
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("FAILED (2)") && stdout.contains("h1, h2"),
        "{stdout}"
    );
    let run = merged_dir.join("latest");
    for f in ["report.json", "junit.xml", "report.html", "metrics.prom"] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let merged = carbonio_fleet::report::store::read_report(&run.join("report.json")).unwrap();
    assert_eq!(merged.summary.hosts, 2);
    assert_eq!(merged.summary.failed, 2);

    let other = d.join("other-playbook.json");
    edit_report(h2_report, &other, |v| {
        v["playbook"]["name"] = "something-else".into()
    });
    let out = fleet(
        &[
            "report",
            "merge",
            &h1,
            other.to_str().unwrap(),
            "--report-dir",
            merged_dir.to_str().unwrap(),
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(ExitCode::Usage.code()));
    assert!(
        text(&out.stderr).contains("cannot merge: shard 2 ran playbook `something-else (sha256"),
        "{}",
        text(&out.stderr)
    );
}

/// Child half of [`the_password_appears_in_no_output`]: run in a subprocess (so its
/// stdout and stderr can be captured) when `CFLEET_LEAK_CHILD` names the work dir;
/// a no-op otherwise.
#[test]
fn leak_child() {
    let Ok(work) = std::env::var("CFLEET_LEAK_CHILD") else {
        return;
    };
    use carbonio_fleet::engine::events::Events;
    use carbonio_fleet::engine::run::{RunOptions, check};
    use carbonio_fleet::secrets::{self, Secret, SecretKind, SecretScope};
    use carbonio_fleet::ui::{logging, progress};

    let work = PathBuf::from(work);
    secrets::use_mock_store();
    secrets::store(
        SecretKind::Password,
        SecretScope::Host("pw-node"),
        &Secret::new(support::sshd::TEST_PASSWORD),
    )
    .unwrap();
    // As chatty as the tool gets: -vvv (trace for this tool, debug for russh).
    logging::init(&logging::LogOptions {
        verbose: 3,
        quiet: 0,
        bars: false,
        log_file: Some(work.join("audit.jsonl")),
    })
    .unwrap();
    let opts = RunOptions {
        inventory: work.join("inventory.toml"),
        playbook: None,
        limit: None,
        forks: 4,
        report_dir: work.join("reports"),
        json: false,
        metrics_file: Some(work.join("textfile").join("carbonio.prom")),
        shard: None,
        ssh_config: None,
        split_by_group: false,
        controls: None,
        skip_controls: Vec::new(),
        waivers: None,
    };
    fs::create_dir_all(work.join("textfile")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let code = rt.block_on(async {
        let span = progress::run_span("check");
        let (events, rx) = Events::channel();
        let consumer = tokio::spawn(progress::run(rx, span.clone()));
        let (_interrupter, interrupts) = carbonio_fleet::engine::interrupt::channel();
        // Shown as the command line shows it: the summary on stdout.
        let code =
            carbonio_fleet::cli::show::run_result(&check(&opts, &interrupts, events).await, false);
        consumer.await.unwrap();
        code.code()
    });
    println!("CHILD-EXIT={code}");
}

/// A whole check against a password-only sshd, the password coming from the keyring:
/// the login works (the host fails later, it is no Carbonio node), and the password is
/// in no report file, not in the log file, not on stdout or stderr.
#[test]
fn the_password_appears_in_no_output() {
    let Some(sshd) = support::sshd::Sshd::start_with(
        "the_password_appears_in_no_output",
        "AuthenticationMethods password\n",
    ) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let known_hosts = w.join("known_hosts");
    fs::write(&known_hosts, format!("{}\n", sshd.known_hosts_line())).unwrap();
    fs::write(
        w.join("inventory.toml"),
        format!(
            "[defaults]\nuser = \"{}\"\nidentity_files = []\nconnect_timeout = \"20s\"\nknown_hosts = \"{}\"\n\
             [[hosts]]\nname = \"pw-node\"\naddress = \"127.0.0.1\"\nport = {}\n",
            support::sshd::TEST_USER,
            known_hosts.display(),
            sshd.port
        ),
    )
    .unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["leak_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("CFLEET_LEAK_CHILD", w)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("CARBONIO_FLEET_LOG")
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("CHILD-EXIT={}", ExitCode::HostFailed.code())),
        "{stdout}"
    );

    let password = support::sshd::TEST_PASSWORD;
    assert!(!stdout.contains(password), "password on stdout");
    assert!(!stderr.contains(password), "password on stderr");
    // Every file the run wrote, wherever it is.
    let mut files = Vec::new();
    let mut todo = vec![w.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_symlink() {
                continue;
            }
            if p.is_dir() {
                todo.push(p);
            } else {
                files.push(p);
            }
        }
    }
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "report.json",
        "junit.xml",
        "report.html",
        "metrics.prom",
        "audit.jsonl",
        "carbonio.prom",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not written: {names:?}"
        );
    }
    for f in &files {
        let bytes = fs::read(f).unwrap();
        assert!(
            !text(&bytes).contains(password),
            "the password is in {}",
            f.display()
        );
    }

    // The login itself worked: the failure is the remote command, not auth.
    let run = fs::read_dir(w.join("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir() && !p.is_symlink())
        .unwrap();
    let report = carbonio_fleet::report::store::read_report(&run.join("report.json")).unwrap();
    let host = &report.hosts[0];
    let error = host.error.as_ref().expect("not a Carbonio node");
    assert_ne!(
        error.kind,
        carbonio_fleet::report::model::ErrorKind::Auth,
        "{error:?}"
    );
    let log = fs::read_to_string(w.join("audit.jsonl")).unwrap();
    assert!(log.contains("\"event\":\"host-connected\""), "{log}");
    // The log is as verbose as it gets, so an absent password means something.
    assert!(log.lines().count() > 10, "{log}");
    assert!(
        sshd.log_text()
            .contains("Accepted password for cfleet-test"),
        "sshd did not see a password login"
    );
}

/// The README's `cargo test --all-targets` on a fresh machine: a test whose system tool is
/// missing says so and passes; under `CI=true` the same test fails, so CI cannot go green
/// with a suite that never ran. Shown on the tmux test, re-run with a PATH without tmux.
#[test]
fn a_missing_tool_skips_visibly_and_fails_under_ci() {
    let empty = tempfile::tempdir().unwrap();
    let rerun = |ci: bool| {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args(["progress_bars_in_a_real_terminal", "--exact"])
            .env("PATH", empty.path());
        if ci {
            c.env("CI", "true");
        } else {
            c.env_remove("CI");
        }
        c.output().unwrap()
    };
    let out = rerun(false);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    assert!(
        stderr.contains(
            "SKIPPED: progress_bars_in_a_real_terminal: tmux is not installed (apt-get install -y tmux)"
        ),
        "{stderr}"
    );
    let out = rerun(true);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        !out.status.success(),
        "CI=true must fail: {stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("tmux is not installed") && stdout.contains("CI=true"),
        "{stdout}\n{stderr}"
    );
    assert!(!stderr.contains("SKIPPED"), "{stderr}");
}

/// What a pane shows, lines the terminal wrapped joined back (`-J`), so a line wider than
/// the pane is seen as one, with the colour escapes when `escapes`.
fn pane_text(tmux: &Tmux, escapes: bool) -> String {
    let mut args = vec!["capture-pane", "-p", "-J", "-S", "-", "-t", "t"];
    if escapes {
        args.push("-e");
    }
    text(&tmux.cmd(&args).stdout)
}

/// Runs `script` (sh) in a fresh tmux pane of `width`×50 and waits (bounded) until it
/// signals `done`; the pane stays for capturing.
fn run_in_pane(name: &str, width: usize, script: &str) -> Tmux {
    let tmux = Tmux::start(name, width, 50, script);
    // A big history: the whole demo must stay capturable.
    tmux.cmd(&["set-option", "-t", "t", "history-limit", "50000"]);
    let waited = Command::new("timeout")
        .args(["400", "tmux", "-L", &tmux.socket, "wait-for", "done"])
        .status()
        .unwrap();
    assert!(
        waited.success(),
        "the run did not finish:\n{}",
        pane_text(&tmux, false)
    );
    tmux
}

/// Whitespace runs as one space: wrapped text compared with what it says.
fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The whole demo (check → apply → check of 24 simulated nodes) in a real terminal of
/// `width` columns: no line wider than the pane (the terminal wrapped nothing, so no word
/// was cut by it), long names whole, identical findings as one entry with their hosts,
/// apply's timeline batch by batch with the canary first, and colour on the terminal;
/// then `report show` of the same run without colour under NO_COLOR and into a file.
fn demo_in_a_terminal(width: usize) {
    let name = format!("demo_in_a_terminal_{width}");
    if !prereq::require(&name, &[Need::program("tmux", "tmux")]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let q = |p: &Path| carbonio_fleet::ssh::quote(p.to_str().unwrap()).unwrap();
    let script = format!(
        "cd {dir} && {bin} demo --report-dir reports --progress never",
        dir = q(dir.path()),
        bin = q(Path::new(BIN)),
    );
    let tmux = run_in_pane(&format!("demo{width}"), width, &script);
    let plain = pane_text(&tmux, false);
    let coloured = pane_text(&tmux, true);
    assert!(plain.contains("EXIT=0"), "{plain}");

    // (stderr's log lines are tracing's, one event a line, whole: not the summary's
    // concern; the unreachable node's warnings are left out.)
    let is_log = |l: &str| {
        [" WARN ", " ERROR ", " INFO "]
            .iter()
            .any(|p| l.starts_with(p))
    };
    for line in plain.lines().filter(|l| !is_log(l)) {
        let cols = line.chars().count();
        assert!(
            cols <= width,
            "{cols} columns at {width}: `{line}`\n{plain}"
        );
    }
    // Words the wrapping must never cut.
    for word in [
        "zimbraMtaSmtpdRejectUnlistedRecipient",
        "PRE-POLICY-SPAWN-USER:",
        "mta1.acme.sim.example",
    ] {
        assert!(plain.contains(word), "`{word}` cut:\n{plain}");
    }
    let said = words(&plain);
    // The first check: BS-01 off on 14 nodes of three clusters is one entry.
    let first = &said[said.find("1/3 check").unwrap()..said.find("2/3 apply").unwrap()];
    assert!(
        first.contains(
            "BS-01 Postfix policy daemon enabled: zimbraMtaEnableSmtpdPolicyd = FALSE (want TRUE) — 14 hosts in acme (Acme Ltd), "
        ),
        "{first}"
    );
    assert_eq!(
        first.matches("BS-01 Postfix policy daemon enabled").count(),
        1,
        "{first}"
    );
    assert!(
        first.contains(
            "FAILED (1) unreachable: cannot connect to `HOST` (ADDR): connection refused — 1 host in acme (Acme Ltd): mta5.acme.sim.example"
        ),
        "{first}"
    );
    // apply: the timeline, canary first, then each batch "N of M", then promotions.
    let apply = &said[said.find("2/3 apply").unwrap()..said.find("3/3 check").unwrap()];
    let canary = apply
        .find("batch 1 of 6 (canary) — 1 host in acme (Acme Ltd): mta1.acme.sim.example restarted")
        .unwrap_or_else(|| panic!("{apply}"));
    let second = apply
        .find("batch 2 of 6 — 3 hosts")
        .unwrap_or_else(|| panic!("{apply}"));
    let last = apply
        .find("batch 6 of 6 — 2 hosts")
        .unwrap_or_else(|| panic!("{apply}"));
    assert!(canary < second && second < last, "{apply}");
    let canary_part = &apply[canary..second];
    for expected in [
        "commands sent (spawn user fix ×3, stage, render, reload)",
        "reload ok:",
        "gate passed after 1 attempt: services ok: up postconf ok: effective config matches LDAP",
        "smtp ok: RCPT TO:<",
    ] {
        assert!(
            canary_part.contains(expected),
            "`{expected}` in {canary_part}"
        );
    }
    assert!(
        apply.contains("PROMOTION (3 clusters) promoted — 2 clusters: globex, umbrella promotion-held — cluster acme:"),
        "{apply}"
    );
    // Colour on the terminal: the summary's headings and labels carry escapes.
    assert!(!plain.contains('\x1b'), "{plain}");
    let failed_line = coloured
        .lines()
        .find(|l| l.contains("FAILED (1)"))
        .expect("FAILED heading");
    assert!(failed_line.contains("\x1b["), "no colour: {failed_line:?}");
    let bs01 = coloured
        .lines()
        .find(|l| l.contains("Postfix policy daemon enabled"))
        .expect("BS-01 entry");
    assert!(bs01.contains("\x1b["), "no colour: {bs01:?}");

    // The same run shown again: NO_COLOR on the terminal, and into a file, no escapes;
    // --color always into a file, escapes.
    let latest = dir.path().join("reports").join("latest");
    let shown = dir.path().join("shown.txt");
    let forced = dir.path().join("forced.txt");
    let script = format!(
        "NO_COLOR=1 {bin} report show {latest}; {bin} report show {latest} > {shown}; \
         {bin} --color always report show {latest} > {forced}",
        bin = q(Path::new(BIN)),
        latest = q(&latest),
        shown = q(&shown),
        forced = q(&forced),
    );
    let tmux = run_in_pane(&format!("show{width}"), width, &script);
    let on_screen = pane_text(&tmux, true);
    assert!(on_screen.contains("DRIFT ("), "{on_screen}");
    assert!(!on_screen.contains('\x1b'), "NO_COLOR: {on_screen:?}");
    let file = fs::read_to_string(&shown).unwrap();
    assert!(
        file.contains("DRIFT (") && !file.contains('\x1b'),
        "{file:?}"
    );
    // Not a terminal: the documented default width, whatever the pane's.
    assert!(file.lines().all(|l| l.chars().count() <= 100), "{file}");
    let file = fs::read_to_string(&forced).unwrap();
    assert!(file.contains("\x1b["), "--color always: {file:?}");
}

#[test]
fn demo_in_a_terminal_of_80_columns() {
    demo_in_a_terminal(80);
}

#[test]
fn demo_in_a_terminal_of_160_columns() {
    demo_in_a_terminal(160);
}
