//! The SSH transport against a real OpenSSH sshd (needs root; prints "SKIPPED: needs
//! root" otherwise) and against an in-process russh server for failure modes.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use carbonio_fleet::inventory::{HostKeyPolicy, JumpSpec};
use carbonio_fleet::secrets::{self, Secret, SecretKind, SecretScope};
use carbonio_fleet::ssh::{
    ConnectError, Connector, ConnectorOptions, ExecEnd, FailureKind, RunAs, ScanStatus, quote,
    render_scan, scan,
};
use russh::keys::ssh_key::{HashAlg, PublicKey};
use support::fake;
use support::sshd::{
    Agent, Sshd, SudoRule, TEST_PASSWORD, TEST_USER, keygen, loopback_host as host,
};

const T: Duration = Duration::from_secs(20);

/// A connector that ignores the process's SSH_AUTH_SOCK.
fn connector() -> Connector {
    Connector::new(ConnectorOptions {
        agent_socket: None,
        ..Default::default()
    })
}

fn fp(openssh: &str) -> String {
    PublicKey::from_openssh(openssh)
        .unwrap()
        .fingerprint(HashAlg::Sha256)
        .to_string()
}

/// A known_hosts file listing `lines`.
fn known_hosts(dir: &Path, lines: &[String]) -> PathBuf {
    let path = dir.join("known_hosts");
    fs::write(
        &path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    path
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[tokio::test]
async fn key_file_auth_and_exact_exit_status_stdout_stderr() {
    let Some(sshd) = Sshd::start("key_file_auth") else {
        return;
    };
    let (key, public) = keygen(sshd.dir.path(), "id_user", "");
    sshd.authorize(TEST_USER, &public);
    let kh = known_hosts(sshd.dir.path(), &[sshd.known_hosts_line()]);
    let h = host(
        "key-host",
        sshd.port,
        TEST_USER,
        &kh,
        vec![PathBuf::from("/nonexistent/id"), key],
    );
    let session = connector().connect(&h).await.unwrap();
    assert_eq!(session.login_user(), TEST_USER);

    let script = "echo out; echo err >&2; exit 3";
    let out = session.exec(RunAs::Login, script, None, T).await.unwrap();
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    assert_eq!(out.end, ExecEnd::Status(3));
    assert_eq!(out.command, script);
    assert!(!out.truncated);

    let out = session
        .exec(RunAs::Login, "cat; echo done", Some(b"from stdin\n"), T)
        .await
        .unwrap();
    assert_eq!(text(&out.stdout), "from stdin\ndone\n");
    assert!(out.is_success());

    let out = session
        .exec(RunAs::Login, "kill -KILL $$", None, T)
        .await
        .unwrap();
    assert!(
        matches!(&out.end, ExecEnd::Signal { name, .. } if name == "KILL"),
        "{:?}",
        out.end
    );
    session.close().await;
}

#[tokio::test]
async fn agent_auth_with_a_real_ssh_agent() {
    let Some(sshd) = Sshd::start("agent_auth") else {
        return;
    };
    let (key, public) = keygen(sshd.dir.path(), "id_agent", "");
    sshd.authorize(TEST_USER, &public);
    let agent = Agent::start(&[&key]);
    let kh = known_hosts(sshd.dir.path(), &[sshd.known_hosts_line()]);
    // No identity files and no password: only the agent can succeed.
    let h = host("agent-host", sshd.port, TEST_USER, &kh, vec![]);
    let c = Connector::new(ConnectorOptions {
        agent_socket: Some(agent.socket.clone()),
        ..Default::default()
    });
    let session = c.connect(&h).await.unwrap();
    let out = session.exec(RunAs::Login, "id -un", None, T).await.unwrap();
    assert_eq!(text(&out.stdout), format!("{TEST_USER}\n"));
    // Without the agent the same host has nothing left to try.
    let err = connector().connect(&h).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Auth, "{err}");
    assert!(
        err.message
            .contains("password (none found: credentials, secrets dir, keyring)"),
        "{err}"
    );
}

#[tokio::test]
async fn password_auth_from_the_keyring() {
    let Some(sshd) = Sshd::start("password_auth") else {
        return;
    };
    secrets::use_mock_store();
    let kh = known_hosts(sshd.dir.path(), &[sshd.known_hosts_line()]);
    let h = host("pw-host", sshd.port, TEST_USER, &kh, vec![]);
    let err = connector().connect(&h).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Auth);
    secrets::store(
        SecretKind::Password,
        SecretScope::Host("pw-host"),
        &Secret::new(TEST_PASSWORD),
    )
    .unwrap();
    let session = connector().connect(&h).await.unwrap();
    let out = session.exec(RunAs::Login, "id -un", None, T).await.unwrap();
    assert_eq!(text(&out.stdout), format!("{TEST_USER}\n"));
}

#[tokio::test]
async fn encrypted_key_with_passphrase_from_the_keyring() {
    let Some(sshd) = Sshd::start("passphrase") else {
        return;
    };
    secrets::use_mock_store();
    let (key, public) = keygen(sshd.dir.path(), "id_enc", "s3cret phrase");
    sshd.authorize(TEST_USER, &public);
    let kh = known_hosts(sshd.dir.path(), &[sshd.known_hosts_line()]);

    let mut without = host("pp-none", sshd.port, TEST_USER, &kh, vec![key.clone()]);
    without.groups = vec!["pp-unset".into()];
    let err = connector().connect(&without).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Auth);
    assert!(
        err.message.contains("encrypted, no passphrase found"),
        "{err}"
    );

    secrets::store(
        SecretKind::Passphrase,
        SecretScope::Group("pp-group"),
        &Secret::new("s3cret phrase"),
    )
    .unwrap();
    let mut with = host("pp-host", sshd.port, TEST_USER, &kh, vec![key]);
    with.groups = vec!["pp-group".into()];
    let session = connector().connect(&with).await.unwrap();
    let out = session
        .exec(RunAs::Login, "echo ok", None, T)
        .await
        .unwrap();
    assert_eq!(text(&out.stdout), "ok\n");
}

#[tokio::test]
async fn wrong_host_key_is_refused_before_any_auth() {
    let Some(sshd) = Sshd::start("wrong_host_key") else {
        return;
    };
    let (key, public) = keygen(sshd.dir.path(), "id_user", "");
    sshd.authorize(TEST_USER, &public);
    let (_, other) = keygen(sshd.dir.path(), "other_host_key", "");
    let other = other
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let kh = known_hosts(
        sshd.dir.path(),
        &[
            "# managed by hand".into(),
            String::new(),
            format!("[127.0.0.1]:{} {other}", sshd.port),
        ],
    );
    let h = host("mail3", sshd.port, TEST_USER, &kh, vec![key]);
    let err: ConnectError = connector().connect(&h).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Hostkey);
    let detail = err.detail.clone().expect("host key detail");
    assert_eq!(detail.expected, vec![fp(&other)]);
    assert_eq!(detail.offered, fp(&sshd.host_key));
    assert_eq!(detail.line, Some(3));
    let name = carbonio_fleet::ssh::quote(&format!("[127.0.0.1]:{}", sshd.port)).unwrap();
    let f = carbonio_fleet::ssh::quote(&kh.display().to_string()).unwrap();
    assert_eq!(
        err.message,
        format!(
            "host key for `mail3` (127.0.0.1:{}) does not match {}:3: expected {}, offered {}; review it with `ssh-keygen -F {name} -f {f}`; only if the host was re-keyed (check the new fingerprint out of band), remove it with `ssh-keygen -R {name} -f {f}` and run `carbonio-fleet hostkeys scan --write`",
            sshd.port,
            kh.display(),
            fp(&other),
            fp(&sshd.host_key)
        )
    );
    let log = sshd.wait_log("Connection closed by", Duration::from_secs(10));
    assert!(
        log.contains("Connection closed by"),
        "the refused connection ended:\n{log}"
    );
    assert!(
        log.contains("KEXINIT"),
        "the connection reached key exchange:\n{log}"
    );
    assert!(
        !log.contains("userauth-request"),
        "no auth request may reach sshd:\n{log}"
    );

    // Control: with the right key listed, the same client does reach userauth.
    let kh = known_hosts(sshd.dir.path(), &[sshd.known_hosts_line()]);
    let h = host("mail3", sshd.port, TEST_USER, &kh, h.identity_files.clone());
    connector().connect(&h).await.unwrap();
    assert!(
        sshd.log_text()
            .contains("userauth-request for user cfleet-test")
    );
}

#[tokio::test]
async fn strict_refuses_unknown_and_accept_new_learns_once() {
    let Some(sshd) = Sshd::start("accept_new") else {
        return;
    };
    let (key, public) = keygen(sshd.dir.path(), "id_user", "");
    sshd.authorize(TEST_USER, &public);
    let kh = sshd.dir.path().join("kh-dir/known_hosts");
    let mut h = host("new-host", sshd.port, TEST_USER, &kh, vec![key]);

    let err = connector().connect(&h).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Hostkey);
    assert_eq!(err.detail.as_ref().unwrap().expected, Vec::<String>::new());
    assert!(err.message.contains("is not in known_hosts"), "{err}");
    assert!(!kh.exists(), "strict must not write");

    h.host_key_policy = HostKeyPolicy::AcceptNew;
    connector().connect(&h).await.unwrap();
    let written = fs::read_to_string(&kh).unwrap();
    assert_eq!(written.lines().count(), 1, "{written}");
    assert!(written.starts_with("|1|"), "hashed: {written}");
    assert!(
        !written.contains("127.0.0.1"),
        "the host name must not appear: {written}"
    );

    h.host_key_policy = HostKeyPolicy::Strict;
    connector().connect(&h).await.unwrap();
    h.host_key_policy = HostKeyPolicy::AcceptNew;
    connector().connect(&h).await.unwrap();
    assert_eq!(
        fs::read_to_string(&kh).unwrap(),
        written,
        "a known key is not written again"
    );
}

#[tokio::test]
async fn entry_hashed_by_ssh_keygen_is_matched() {
    let Some(sshd) = Sshd::start("hashed_entry") else {
        return;
    };
    let (key, public) = keygen(sshd.dir.path(), "id_user", "");
    sshd.authorize(TEST_USER, &public);
    let kh = known_hosts(sshd.dir.path(), &[sshd.known_hosts_line()]);
    let st = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .unwrap();
    assert!(st.status.success());
    assert!(fs::read_to_string(&kh).unwrap().starts_with("|1|"));
    let h = host("hashed-host", sshd.port, TEST_USER, &kh, vec![key]);
    connector().connect(&h).await.unwrap();
}

#[tokio::test]
async fn jump_host_tunnels_many_targets_over_one_bastion_connection() {
    let Some(bastion) = Sshd::start("jump_bastion") else {
        return;
    };
    let Some(target) = Sshd::start("jump_target") else {
        return;
    };
    let (key, public) = keygen(bastion.dir.path(), "id_user", "");
    bastion.authorize("root", &public);
    target.authorize(TEST_USER, &public);
    let kh = known_hosts(
        bastion.dir.path(),
        &[bastion.known_hosts_line(), target.known_hosts_line()],
    );
    let mut h = host("behind-bastion", target.port, TEST_USER, &kh, vec![key]);
    h.jump = Some(JumpSpec {
        user: "root".into(),
        host: "127.0.0.1".into(),
        port: bastion.port,
    });
    let c = connector();
    let (a, b) = tokio::join!(c.connect(&h), c.connect(&h));
    let (a, b) = (a.unwrap(), b.unwrap());
    for s in [&a, &b] {
        let out = s.exec(RunAs::Login, "id -un", None, T).await.unwrap();
        assert_eq!(text(&out.stdout), format!("{TEST_USER}\n"));
    }
    let log = bastion.log_text();
    assert_eq!(
        log.matches("Accepted publickey for root").count(),
        1,
        "one bastion login:\n{log}"
    );
    assert!(
        log.contains(&format!("target 127.0.0.1 port {}", target.port)),
        "direct-tcpip through the bastion:\n{log}"
    );
    assert!(!target.log_text().contains("Accepted publickey for root"));
}

#[tokio::test]
async fn hostile_values_round_trip_through_su_and_sudo() {
    let Some(sshd) = Sshd::start("hostile_round_trip") else {
        return;
    };
    let (key, public) = keygen(sshd.dir.path(), "id_user", "");
    sshd.authorize("root", &public);
    sshd.authorize(TEST_USER, &public);
    let kh = known_hosts(sshd.dir.path(), &[sshd.known_hosts_line()]);
    let values: Vec<String> = [
        "'",
        "\"",
        "“curly” ‘single’",
        "a;b",
        "a && b",
        "$(id)",
        "`id`",
        "back\\slash",
        "line1\nline2\n",
        "tab\there",
        "ünïcödé ✓ 中文",
        "-n",
        "--",
        "'\\''",
        "${HOME} $0 $$",
        "*",
        "!x",
        "#no comment",
        " lead",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([("x'y\"z$`\\\n".repeat(1100))])
    .collect();

    let root = host("hostile-root", sshd.port, "root", &kh, vec![key.clone()]);
    let _sudo = SudoRule::nopasswd(TEST_USER);
    let user = host("hostile-user", sshd.port, TEST_USER, &kh, vec![key]);
    let c = connector();
    for (login, expect_prefix) in [
        (&root, "su - zextras -c "),
        (&user, "sudo -n -u zextras -H -- /bin/bash -l -c "),
    ] {
        let session = c.connect(login).await.unwrap();
        let who = session
            .exec(RunAs::Service, "id -un", None, T)
            .await
            .unwrap();
        assert_eq!(text(&who.stdout), "zextras\n", "{who:?}");
        for v in &values {
            let script = format!("printf %s {}", quote(v).unwrap());
            let out = session
                .exec(RunAs::Service, &script, None, T)
                .await
                .unwrap();
            assert!(out.command.starts_with(expect_prefix), "{}", out.command);
            assert_eq!(
                out.end,
                ExecEnd::Status(0),
                "{v:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.stdout, v.as_bytes(), "value {v:?} via {expect_prefix}");
        }
    }
    let session = c.connect(&user).await.unwrap();
    let out = session.exec(RunAs::Root, "id -u", None, T).await.unwrap();
    assert_eq!(text(&out.stdout), "0\n");
}

#[tokio::test]
async fn twelve_concurrent_execs_share_one_connection() {
    let Some(sshd) = Sshd::start("concurrent_execs") else {
        return;
    };
    let (key, public) = keygen(sshd.dir.path(), "id_user", "");
    sshd.authorize(TEST_USER, &public);
    let kh = known_hosts(sshd.dir.path(), &[sshd.known_hosts_line()]);
    let h = host("busy-host", sshd.port, TEST_USER, &kh, vec![key]);
    let session = connector().connect(&h).await.unwrap();
    let runs = (0..12).map(|i| {
        let s = session.clone();
        async move {
            s.exec(RunAs::Login, &format!("sleep 0.3; echo {i}"), None, T)
                .await
        }
    });
    let results = futures::future::join_all(runs).await;
    for (i, r) in results.into_iter().enumerate() {
        let out = r.unwrap();
        assert_eq!(text(&out.stdout), format!("{i}\n"));
        assert_eq!(out.end, ExecEnd::Status(0));
    }
}

#[tokio::test]
async fn scan_classifies_and_writes_only_new_keys() {
    let Some(sshd) = Sshd::start("scan") else {
        return;
    };
    let dir = sshd.dir.path();
    let kh = dir.join("scan_known_hosts");
    let h = host("scan-host", sshd.port, TEST_USER, &kh, vec![]);
    let c = connector();
    let r = scan(&c, &[&h], false).await;
    assert_eq!(r[0].status, ScanStatus::New { written: false });
    assert_eq!(r[0].fingerprint().unwrap(), fp(&sshd.host_key));
    assert!(!kh.exists());
    let r = scan(&c, &[&h], true).await;
    assert_eq!(r[0].status, ScanStatus::New { written: true });
    let r = scan(&c, &[&h], true).await;
    let at = format!("{}:1", kh.display());
    assert_eq!(r[0].status, ScanStatus::Known { at: at.clone() });
    assert_eq!(
        render_scan(&r),
        format!(
            "scan-host {} (ssh-ed25519) known ({at})\n",
            fp(&sshd.host_key)
        )
    );

    let (_, other) = keygen(dir, "other", "");
    let changed = known_hosts(dir, &[format!("[127.0.0.1]:{} {}", sshd.port, other)]);
    let h2 = host("scan-changed", sshd.port, TEST_USER, &changed, vec![]);
    let before = fs::read_to_string(&changed).unwrap();
    let r = scan(&c, &[&h2], true).await;
    assert!(
        matches!(&r[0].status, ScanStatus::Changed { at, expected } if expected == &vec![fp(&other)] && at.ends_with(":1"))
    );
    assert_eq!(
        fs::read_to_string(&changed).unwrap(),
        before,
        "a changed key is never replaced"
    );
}

// ---- in-process russh server: failure modes ----

async fn fake_session(server: &fake::FakeServer, dir: &Path) -> carbonio_fleet::ssh::Session {
    secrets::use_mock_store();
    secrets::store(
        SecretKind::Password,
        SecretScope::Host("fake-node"),
        &Secret::new("any"),
    )
    .unwrap();
    let kh = known_hosts(dir, std::slice::from_ref(&server.known_hosts_line));
    let h = host("fake-node", server.port, "root", &kh, vec![]);
    connector().connect(&h).await.unwrap()
}

#[tokio::test]
async fn signal_and_missing_status_are_reported_as_such() {
    let server = fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = fake_session(&server, dir.path()).await;
    let out = s.exec(RunAs::Login, "FAKE-SIGNAL", None, T).await.unwrap();
    assert_eq!(
        out.end,
        ExecEnd::Signal {
            name: "KILL".into(),
            core_dumped: true,
            message: "killed".into()
        }
    );
    assert_eq!(text(&out.stdout), "before\n");
    let out = s
        .exec(RunAs::Login, "FAKE-NOSTATUS", None, T)
        .await
        .unwrap();
    assert_eq!(out.end, ExecEnd::Unknown);
    assert!(!out.is_success());
    assert_eq!(text(&out.stdout), "partial");
    assert_eq!(
        serde_json::to_string(&ExecEnd::Status(3)).unwrap(),
        r#"{"status":3}"#
    );
    assert_eq!(
        serde_json::to_string(&ExecEnd::Unknown).unwrap(),
        r#""unknown""#
    );
}

#[tokio::test]
async fn stalled_command_times_out_and_the_connection_survives() {
    let server = fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = fake_session(&server, dir.path()).await;
    let limit = Duration::from_millis(500);
    let err = s
        .exec(RunAs::Login, "FAKE-STALL", None, limit)
        .await
        .unwrap_err();
    // The kind and the message say which limit ended it (no clock: it measures load).
    assert_eq!(err.kind(), FailureKind::Timeout, "{err}");
    assert!(err.to_string().contains("timed out after 500ms"), "{err}");
    let out = s
        .exec(RunAs::Login, "echo still here", None, T)
        .await
        .unwrap();
    assert_eq!(text(&out.stdout), "echo still here");
}

#[tokio::test]
async fn silent_peer_times_out_within_connect_timeout() {
    let (port, _task) = fake::silent_listener().await;
    let dir = tempfile::tempdir().unwrap();
    let kh = known_hosts(dir.path(), &[]);
    let mut h = host("silent", port, "root", &kh, vec![]);
    h.connect_timeout = Duration::from_millis(700);
    let err = connector().connect(&h).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Timeout, "{err}");
    assert!(
        err.message.contains("`silent`") && err.message.contains("timed out after 700ms"),
        "{err}"
    );
}

/// A `tracing` writer into a shared buffer.
struct CaptureWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `fut` with this thread's tracing events (debug and up) captured; returns its
/// output and the log. The test runtime is single-threaded, so `fut` runs here.
async fn with_captured_log<T>(fut: impl std::future::Future<Output = T>) -> (T, String) {
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let sink = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || CaptureWriter(sink.clone()))
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let out = fut.await;
    drop(guard);
    let text = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    (out, text)
}

#[tokio::test]
async fn refused_connection_is_unreachable_and_not_retried() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let kh = known_hosts(dir.path(), &[]);
    let h = host("refused", port, "root", &kh, vec![]);
    let (err, log) = with_captured_log(connector().connect(&h)).await;
    let err = err.unwrap_err();
    assert_eq!(err.kind, FailureKind::Unreachable);
    assert!(err.message.contains("connection refused"), "{err}");
    assert!(!log.contains("retrying"), "a refusal is final: {log}");
    assert_eq!(serde_json::to_string(&err.kind).unwrap(), "\"unreachable\"");
}

#[tokio::test]
async fn reset_during_handshake_is_retried_three_times_with_backoff() {
    let (port, count, _task) = fake::resetting_listener().await;
    let dir = tempfile::tempdir().unwrap();
    let kh = known_hosts(dir.path(), &[]);
    let h = host("flaky", port, "root", &kh, vec![]);
    let (err, log) = with_captured_log(connector().connect(&h)).await;
    let err = err.unwrap_err();
    assert_eq!(err.kind, FailureKind::Unreachable, "{err}");
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "three tries"
    );
    // Each retry is logged (and backed off): two of them. This is also the positive
    // control of the refused test's "no `retrying`" assertion.
    assert_eq!(
        log.matches("transient handshake failure, retrying").count(),
        2,
        "{log}"
    );
}

#[tokio::test]
async fn output_cap_truncates_and_direct_tcpip_reaches_the_node() {
    use tokio::io::AsyncReadExt;
    let Some(sshd) = Sshd::start("cap_and_tunnel") else {
        return;
    };
    let (key, public) = keygen(sshd.dir.path(), "id_user", "");
    sshd.authorize(TEST_USER, &public);
    let kh = known_hosts(sshd.dir.path(), &[sshd.known_hosts_line()]);
    let h = host("cap-host", sshd.port, TEST_USER, &kh, vec![key]);
    let c = Connector::new(ConnectorOptions {
        agent_socket: None,
        max_output: 1000,
        ..Default::default()
    });
    let s = c.connect(&h).await.unwrap();
    let out = s
        .exec(
            RunAs::Login,
            "head -c 5000 /dev/zero; head -c 10 /dev/zero >&2",
            None,
            T,
        )
        .await
        .unwrap();
    assert_eq!((out.stdout.len(), out.stderr.len()), (1000, 10));
    assert!(out.truncated);
    assert_eq!(
        out.end,
        ExecEnd::Status(0),
        "the command still ran to the end"
    );

    // Through the node to its own sshd port: the banner comes back.
    let mut stream = s.direct_tcpip("127.0.0.1", sshd.port).await.unwrap();
    let mut banner = [0u8; 8];
    stream.read_exact(&mut banner).await.unwrap();
    assert_eq!(&banner, b"SSH-2.0-");
}

#[tokio::test]
async fn keepalive_notices_a_dead_peer_mid_command() {
    let server = fake::start().await;
    let (proxy, frozen, _task) = fake::freezable_proxy(server.port).await;
    secrets::use_mock_store();
    secrets::store(
        SecretKind::Password,
        SecretScope::Host("dying-node"),
        &Secret::new("any"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let line = server
        .known_hosts_line
        .replace(&format!("]:{} ", server.port), &format!("]:{proxy} "));
    let kh = known_hosts(dir.path(), &[line]);
    let h = host("dying-node", proxy, "root", &kh, vec![]);
    let c = Connector::new(ConnectorOptions {
        agent_socket: None,
        keepalive_interval: Duration::from_millis(300),
        keepalive_max: 2,
        ..Default::default()
    });
    let s = c.connect(&h).await.unwrap();
    frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    // The command timeout is far away: only keepalive can end this early.
    let out = s
        .exec(RunAs::Login, "FAKE-STALL", None, Duration::from_secs(60))
        .await;
    frozen.store(false, std::sync::atomic::Ordering::SeqCst);
    // Not a timeout (that would be `FailureKind::Timeout` after 60 s): the keepalive
    // noticed the dead peer and closed the connection.
    match out {
        Ok(o) => assert_eq!(o.end, ExecEnd::Unknown, "never success"),
        Err(e) => assert_eq!(e.kind(), FailureKind::Command, "{e}"),
    }
    assert!(s.is_closed());
}
