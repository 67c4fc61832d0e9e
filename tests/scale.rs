//! Scale-out features against real OpenSSH (needs root; prints "SKIPPED: needs root"
//! otherwise): bastion multiplexing, its tunnel cap and its failure reported once, host
//! certificates signed with `ssh-keygen -s`, `~/.ssh/config` resolution end to end;
//! plus `--shard` through the binary and the deploy/ examples (YAML kinds and fields,
//! `systemd-analyze verify`).
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use assert_cmd::cargo::cargo_bin_cmd;
use carbonio_fleet::exit::ExitCode;
use carbonio_fleet::inventory::{
    self, Host, HostKeyPolicy, JumpSpec, LoadOptions, shard::shard_of,
};
use carbonio_fleet::ssh::{ConnectError, Connector, ConnectorOptions, FailureKind, RunAs};
use serde_norway::Value;
use support::sshd::{Sshd, TEST_USER, keygen, loopback_host};
use test_prereq::{self as prereq, Need};

const T: Duration = Duration::from_secs(20);

/// A loopback test host with one key.
fn host(name: &str, port: u16, user: &str, known_hosts: &Path, key: &Path) -> Host {
    loopback_host(name, port, user, known_hosts, vec![key.to_owned()])
}

fn connector(opts: ConnectorOptions) -> Connector {
    Connector::new(ConnectorOptions {
        agent_socket: None,
        ..opts
    })
}

fn write_known_hosts(dir: &Path, lines: &[String]) -> PathBuf {
    let path = dir.join("known_hosts");
    fs::write(
        &path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    path
}

fn jump_via(bastion: &Sshd) -> Option<JumpSpec> {
    Some(JumpSpec {
        user: "root".into(),
        host: "127.0.0.1".into(),
        port: bastion.port,
    })
}

async fn whoami(session: &carbonio_fleet::ssh::Session) -> String {
    let out = session.exec(RunAs::Login, "id -un", None, T).await.unwrap();
    String::from_utf8(out.stdout).unwrap()
}

// ---------------------------------------------------------------- bastions

/// Two target sshds reachable only through one bastion sshd, one key authorized on all
/// three (root on the bastion), and their hosts with the bastion as jump.
struct BehindBastion {
    bastion: Sshd,
    t1: Sshd,
    t2: Sshd,
    h1: Host,
    h2: Host,
}

/// `None` where sshd cannot run here (the test then skips, as every sshd test does).
fn behind_one_bastion(bastion: &str, t1: &str, t2: &str) -> Option<BehindBastion> {
    let bastion = Sshd::start(bastion)?;
    let (t1, t2) = (Sshd::start(t1)?, Sshd::start(t2)?);
    let (key, public) = keygen(bastion.dir.path(), "id", "");
    bastion.authorize("root", &public);
    t1.authorize(TEST_USER, &public);
    t2.authorize(TEST_USER, &public);
    let kh = write_known_hosts(
        bastion.dir.path(),
        &[
            bastion.known_hosts_line(),
            t1.known_hosts_line(),
            t2.known_hosts_line(),
        ],
    );
    let mut h1 = host("t1", t1.port, TEST_USER, &kh, &key);
    let mut h2 = host("t2", t2.port, TEST_USER, &kh, &key);
    h1.jump = jump_via(&bastion);
    h2.jump = jump_via(&bastion);
    Some(BehindBastion {
        bastion,
        t1,
        t2,
        h1,
        h2,
    })
}

#[tokio::test]
async fn two_targets_behind_one_bastion_share_one_bastion_login() {
    let Some(BehindBastion {
        bastion,
        t1,
        t2,
        h1,
        h2,
    }) = behind_one_bastion("bastion_share", "bastion_t1", "bastion_t2")
    else {
        return;
    };
    let c = connector(ConnectorOptions::default());
    let (a, b) = tokio::join!(c.connect(&h1), c.connect(&h2));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(whoami(&a).await, format!("{TEST_USER}\n"));
    assert_eq!(whoami(&b).await, format!("{TEST_USER}\n"));
    let log = bastion.log_text();
    assert_eq!(
        log.matches("Accepted publickey for root").count(),
        1,
        "one bastion login for both targets:\n{log}"
    );
    for t in [&t1, &t2] {
        assert!(
            log.contains(&format!("target 127.0.0.1 port {}", t.port)),
            "direct-tcpip to {}:\n{log}",
            t.port
        );
    }
}

#[tokio::test]
async fn tunnel_cap_opens_another_bastion_connection_instead_of_waiting() {
    let Some(BehindBastion {
        bastion,
        // Bound, not `..`: the targets must outlive the statement.
        t1: _t1,
        t2: _t2,
        h1,
        h2,
    }) = behind_one_bastion("bastion_cap", "cap_t1", "cap_t2")
    else {
        return;
    };
    let c = connector(ConnectorOptions {
        max_tunnels_per_bastion: 1,
        ..Default::default()
    });
    // Both sessions stay open at once (as apply holds them): the second target must
    // not wait for the first one's slot.
    let a = c.connect(&h1).await.unwrap();
    // Waiting for the first one's slot would block forever: a minute loses nothing.
    let b = tokio::time::timeout(Duration::from_secs(60), c.connect(&h2))
        .await
        .expect("no wait for a slot")
        .unwrap();
    assert_eq!(whoami(&a).await, format!("{TEST_USER}\n"));
    assert_eq!(whoami(&b).await, format!("{TEST_USER}\n"));
    let log = bastion.log_text();
    assert_eq!(
        log.matches("Accepted publickey for root").count(),
        2,
        "one tunnel per bastion connection:\n{log}"
    );
    // A freed slot is reused: a third session after dropping the first one opens no
    // third bastion connection.
    drop(a);
    let _c = c.connect(&h1).await.unwrap();
    let log = bastion.log_text();
    assert_eq!(
        log.matches("Accepted publickey for root").count(),
        2,
        "{log}"
    );
}

/// A listener that accepts and never answers (a hung bastion); counts connections.
async fn counting_silent_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            held.push(sock);
        }
    });
    (port, count)
}

#[tokio::test]
async fn a_dead_bastion_is_tried_once_and_every_target_behind_it_is_unreachable() {
    let (port, count) = counting_silent_listener().await;
    let dir = tempfile::tempdir().unwrap();
    let kh = write_known_hosts(dir.path(), &[]);
    let key = dir.path().join("no-key");
    let hosts: Vec<Host> = (0..4)
        .map(|i| {
            let mut h = host(&format!("behind{i}"), 22 + i, "root", &kh, &key);
            h.connect_timeout = Duration::from_millis(600);
            h.jump = Some(JumpSpec {
                user: "ops".into(),
                host: "127.0.0.1".into(),
                port,
            });
            h
        })
        .collect();
    let c = connector(ConnectorOptions::default());
    let results: Vec<Result<_, ConnectError>> =
        futures::future::join_all(hosts.iter().map(|h| c.connect(h))).await;
    let errors: Vec<ConnectError> = results.into_iter().map(|r| r.unwrap_err()).collect();
    let expected = format!(
        "unreachable via bastion `ops@127.0.0.1:{port}`: connecting to `127.0.0.1` (127.0.0.1:{port}) timed out after 600ms"
    );
    for e in &errors {
        assert_eq!(e.kind, FailureKind::Unreachable, "{e}");
        assert_eq!(e.message, expected);
    }
    // One attempt, so one timeout, not four (the count says it; a wall-clock bound would
    // measure the machine's load).
    assert_eq!(count.load(Ordering::SeqCst), 1, "one connection attempt");
}

#[tokio::test]
async fn a_refused_bastion_gives_the_same_message_to_every_target() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let kh = write_known_hosts(dir.path(), &[]);
    let c = connector(ConnectorOptions::default());
    let mut messages = Vec::new();
    for i in 0..3 {
        let mut h = host(&format!("t{i}"), 22, "root", &kh, &dir.path().join("k"));
        h.jump = Some(JumpSpec {
            user: "ops".into(),
            host: "127.0.0.1".into(),
            port,
        });
        let e = c.connect(&h).await.unwrap_err();
        assert_eq!(e.kind, FailureKind::Unreachable);
        messages.push(e.message);
    }
    assert_eq!(
        messages[0],
        format!(
            "unreachable via bastion `ops@127.0.0.1:{port}`: cannot connect to `127.0.0.1` (127.0.0.1:{port}): connection refused"
        )
    );
    assert!(messages.iter().all(|m| *m == messages[0]), "{messages:?}");
}

// ---------------------------------------------------------------- host certificates

fn ssh_keygen(args: &[&str], dir: &Path) {
    let out = Command::new("ssh-keygen")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen {args:?}: {out:?}");
}

/// A CA key pair in `dir`; returns the public line `ssh-ed25519 AAAA…`.
fn make_ca(dir: &Path, name: &str) -> String {
    ssh_keygen(
        &["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", name],
        dir,
    );
    let public = fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap();
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// An sshd whose host key is certified by `ca` (in `ca_dir`) for `principal`, valid
/// for `validity` (ssh-keygen -V syntax).
fn certified_sshd(test: &str, ca_dir: &Path, principal: &str, validity: &str) -> Option<Sshd> {
    let ca = ca_dir.join("ca");
    let (principal, validity) = (principal.to_owned(), validity.to_owned());
    Sshd::start_prepared(test, move |d| {
        let out = Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(&ca)
            .args(["-h", "-I", "test-host", "-n", &principal, "-V", &validity])
            .arg(d.join("host_key.pub"))
            .output()
            .unwrap();
        assert!(out.status.success(), "signing: {out:?}");
        format!(
            "HostCertificate {}\n",
            d.join("host_key-cert.pub").display()
        )
    })
}

/// Connects with only a `@cert-authority` line (for `ca_line`) in known_hosts.
async fn connect_with_ca(sshd: &Sshd, ca_line: &str) -> Result<String, ConnectError> {
    let (key, public) = keygen(sshd.dir.path(), "id", "");
    sshd.authorize(TEST_USER, &public);
    let kh = write_known_hosts(
        sshd.dir.path(),
        &[format!(
            "@cert-authority [127.0.0.1]:{} {ca_line}",
            sshd.port
        )],
    );
    let h = host("certified", sshd.port, TEST_USER, &kh, &key);
    let session = connector(ConnectorOptions::default()).connect(&h).await?;
    Ok(whoami(&session).await)
}

#[tokio::test]
async fn host_certificate_signed_by_a_trusted_ca_is_accepted() {
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = make_ca(ca_dir.path(), "ca");
    let Some(sshd) = certified_sshd("cert_ok", ca_dir.path(), "127.0.0.1", "-5m:+1h") else {
        return;
    };
    assert_eq!(
        connect_with_ca(&sshd, &ca).await.unwrap(),
        format!("{TEST_USER}\n")
    );
    assert!(
        sshd.log_text()
            .contains("kex: host key algorithm: ssh-ed25519-cert-v01@openssh.com"),
        "the certificate was negotiated"
    );
    // A wildcard pattern on the CA line works too.
    let kh = write_known_hosts(
        sshd.dir.path(),
        &[format!("@cert-authority [127.0.0.*]:* {ca}")],
    );
    let h = host(
        "certified",
        sshd.port,
        TEST_USER,
        &kh,
        &sshd.dir.path().join("id"),
    );
    connector(ConnectorOptions::default())
        .connect(&h)
        .await
        .unwrap();
}

#[tokio::test]
async fn host_certificate_for_another_principal_is_refused() {
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = make_ca(ca_dir.path(), "ca");
    let Some(sshd) = certified_sshd("cert_principal", ca_dir.path(), "mx9.example", "-5m:+1h")
    else {
        return;
    };
    let e = connect_with_ca(&sshd, &ca).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Hostkey, "{e}");
    assert!(
        e.message.contains("is not valid for this host: its principals are [mx9.example], none of them is `127.0.0.1` or `certified`"),
        "{e}"
    );
    assert!(
        !sshd
            .log_text()
            .contains(&format!("Accepted publickey for {TEST_USER}"))
    );
}

#[tokio::test]
async fn expired_host_certificate_is_refused() {
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = make_ca(ca_dir.path(), "ca");
    let Some(sshd) = certified_sshd(
        "cert_expired",
        ca_dir.path(),
        "127.0.0.1",
        "20200101:20200102",
    ) else {
        return;
    };
    let e = connect_with_ca(&sshd, &ca).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Hostkey, "{e}");
    assert!(
        e.message
            .contains("(key id `test-host`) expired at 2020-01-0"),
        "{e}"
    );
}

#[tokio::test]
async fn host_certificate_from_an_untrusted_ca_is_refused() {
    let ca_dir = tempfile::tempdir().unwrap();
    make_ca(ca_dir.path(), "ca");
    let other = make_ca(ca_dir.path(), "other-ca");
    let Some(sshd) = certified_sshd("cert_other_ca", ca_dir.path(), "127.0.0.1", "-5m:+1h") else {
        return;
    };
    let e = connect_with_ca(&sshd, &other).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Hostkey, "{e}");
    assert!(
        e.message
            .contains("which no known_hosts file trusts for this host"),
        "{e}"
    );
    let detail = e.detail.expect("fingerprints in the report");
    assert_eq!(detail.expected.len(), 1);
}

// ---------------------------------------------------------------- ssh_config

#[tokio::test]
async fn ssh_config_alias_supplies_address_port_user_key_known_hosts_and_jump() {
    let Some(target) = Sshd::start("cfg_target") else {
        return;
    };
    let Some(bastion) = Sshd::start("cfg_bastion") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "cfg_key", "");
    target.authorize(TEST_USER, &public);
    bastion.authorize("root", &public);
    let kh = write_known_hosts(
        dir.path(),
        &[target.known_hosts_line(), bastion.known_hosts_line()],
    );
    let config = dir.path().join("ssh_config");
    fs::write(
        &config,
        format!(
            "# real OpenSSH syntax\n\
             Host lab-direct lab-jumped\n  HostName 127.0.0.1\n  Port {tp}\n  User {TEST_USER}\n  \
             IdentityFile {key}\n  UserKnownHostsFile {kh}\n\n\
             Host lab-jumped\n  ProxyJump the-bastion\n\n\
             Host the-bastion\n  HostName 127.0.0.1\n  User root\n  Port {bp}\n\n\
             Host *\n  User nobody-default\n",
            tp = target.port,
            bp = bastion.port,
            key = key.display(),
            kh = kh.display(),
        ),
    )
    .unwrap();
    // The inventory names the aliases and nothing else.
    let inv = dir.path().join("inv.toml");
    fs::write(
        &inv,
        "[[hosts]]\nname = \"lab-direct\"\n\n[[hosts]]\nname = \"lab-jumped\"\n",
    )
    .unwrap();
    let loaded = inventory::load_with(
        &inv,
        &LoadOptions {
            ssh_config: Some(config.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let direct = &loaded.hosts[0];
    assert_eq!(
        (direct.address.as_str(), direct.port, direct.user.as_str()),
        ("127.0.0.1", target.port, TEST_USER)
    );
    assert_eq!(direct.identity_files, vec![key.clone()]);
    assert_eq!(direct.known_hosts, kh);
    let jumped = &loaded.hosts[1];
    assert_eq!(
        jumped.jump,
        Some(JumpSpec {
            user: "root".into(),
            host: "127.0.0.1".into(),
            port: bastion.port
        })
    );
    let c = connector(ConnectorOptions::default());
    for h in &loaded.hosts {
        let s = c
            .connect(h)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", h.name));
        assert_eq!(whoami(&s).await, format!("{TEST_USER}\n"));
    }
    assert_eq!(
        bastion
            .log_text()
            .matches("Accepted publickey for root")
            .count(),
        1,
        "lab-jumped went through the bastion named by ProxyJump"
    );
}

// ---------------------------------------------------------------- --shard through the binary

#[test]
fn an_empty_shard_exits_zero_with_a_message_and_writes_no_report() {
    let inv = inventory::load(Path::new("inventory/lab.toml")).unwrap();
    let n = 64;
    let used: Vec<u32> = inv.hosts.iter().map(|h| shard_of(&h.cluster, n)).collect();
    let empty = (1..=n).find(|k| !used.contains(k)).expect("an empty shard");
    let reports = tempfile::tempdir().unwrap();
    let out = cargo_bin_cmd!("carbonio-fleet")
        .args(["check", "-i", "inventory/lab.toml", "--progress", "never"])
        .arg("--shard")
        .arg(format!("{empty}/{n}"))
        .arg("--report-dir")
        .arg(reports.path())
        .assert()
        .code(ExitCode::Ok.code())
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "shard {empty}/{n} holds no hosts of this selection"
        )),
        "{stderr}"
    );
    assert_eq!(fs::read_dir(reports.path()).unwrap().count(), 0);
    // A bad shard is a usage error.
    cargo_bin_cmd!("carbonio-fleet")
        .args(["check", "-i", "inventory/lab.toml", "--shard", "5/4"])
        .assert()
        .code(ExitCode::Usage.code());
}

// ---------------------------------------------------------------- deploy/ examples

fn yaml(path: &str) -> Value {
    let text = fs::read_to_string(path).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[k],
    })
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    get(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string: {:?}", get(v, path)))
}

/// The checks every sweeping pod spec must pass.
fn assert_sweep_pod(pod: &Value, what: &str) {
    let c = get(pod, "containers.0");
    let script = s(c, "args.0");
    assert!(script.contains("carbonio-fleet check"), "{what}: {script}");
    assert!(
        script.contains("-i /etc/carbonio-fleet/inventory"),
        "{what}"
    );
    assert_eq!(s(pod, "restartPolicy"), "Never", "{what}");
    assert_eq!(
        get(pod, "securityContext.runAsNonRoot").as_bool(),
        Some(true)
    );
    assert_eq!(
        get(c, "securityContext.readOnlyRootFilesystem").as_bool(),
        Some(true)
    );
    let volumes = get(pod, "volumes").as_sequence().unwrap();
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{what}: no volume {name}"))
    };
    assert_eq!(
        s(volume("inventory"), "configMap.name"),
        "carbonio-fleet-inventory"
    );
    assert_eq!(
        s(volume("known-hosts"), "configMap.name"),
        "carbonio-fleet-known-hosts"
    );
    assert_eq!(
        s(volume("ssh-key"), "secret.secretName"),
        "carbonio-fleet-ssh-key"
    );
    assert_eq!(
        get(volume("ssh-key"), "secret.defaultMode").as_u64(),
        Some(0o400)
    );
    assert_eq!(
        s(volume("reports"), "persistentVolumeClaim.claimName"),
        "carbonio-fleet-reports"
    );
    let mounts = get(c, "volumeMounts").as_sequence().unwrap();
    for m in mounts {
        let read_only = m["readOnly"].as_bool() == Some(true);
        let name = m["name"].as_str().unwrap();
        assert_eq!(
            read_only,
            ["inventory", "ssh-key", "known-hosts", "passwords"].contains(&name),
            "{what}: mount {name}"
        );
    }
}

#[test]
fn kubernetes_manifests_have_the_expected_kinds_and_fields() {
    let cm = yaml("deploy/kubernetes/inventory-configmap.yaml");
    assert_eq!(s(&cm, "kind"), "ConfigMap");
    // The inventory inside the ConfigMap is a valid inventory, strict, pointing at the
    // mounted key and known_hosts.
    let dir = tempfile::tempdir().unwrap();
    let inv_path = dir.path().join("fleet.toml");
    let toml_text = cm["data"]["fleet.toml"].as_str().unwrap();
    fs::write(&inv_path, toml_text).unwrap();
    let inv = inventory::load(&inv_path).unwrap();
    for h in &inv.hosts {
        assert_eq!(h.host_key_policy, HostKeyPolicy::Strict);
        assert_eq!(
            h.known_hosts,
            Path::new("/etc/carbonio-fleet/known-hosts/known_hosts")
        );
        assert_eq!(
            h.identity_files,
            vec![PathBuf::from("/etc/carbonio-fleet/ssh-key/id_ed25519")]
        );
    }

    let pvc = yaml("deploy/kubernetes/reports-pvc.yaml");
    assert_eq!(s(&pvc, "kind"), "PersistentVolumeClaim");
    assert_eq!(s(&pvc, "metadata.name"), "carbonio-fleet-reports");

    let cron = yaml("deploy/kubernetes/cronjob.yaml");
    assert_eq!(s(&cron, "apiVersion"), "batch/v1");
    assert_eq!(s(&cron, "kind"), "CronJob");
    assert_eq!(s(&cron, "spec.schedule").split_whitespace().count(), 5);
    assert_eq!(s(&cron, "spec.concurrencyPolicy"), "Forbid");
    assert_sweep_pod(get(&cron, "spec.jobTemplate.spec.template.spec"), "cronjob");

    let job = yaml("deploy/kubernetes/sharded-job.yaml");
    assert_eq!(s(&job, "kind"), "Job");
    assert_eq!(s(&job, "spec.completionMode"), "Indexed");
    let pod = get(&job, "spec.template.spec");
    assert_sweep_pod(pod, "sharded job");
    let completions = get(&job, "spec.completions").as_u64().unwrap();
    let env = get(pod, "containers.0.env").as_sequence().unwrap();
    let shards = env
        .iter()
        .find(|e| e["name"].as_str() == Some("SHARDS"))
        .and_then(|e| e["value"].as_str())
        .expect("SHARDS env");
    assert_eq!(
        shards,
        completions.to_string(),
        "SHARDS must equal completions"
    );
    let script = s(pod, "containers.0.args.0");
    assert!(
        script.contains("K=$((JOB_COMPLETION_INDEX + 1))"),
        "{script}"
    );
    assert!(script.contains("--shard \"$K/$SHARDS\""), "{script}");
    assert!(
        script.contains("--report-dir \"/reports/shard-$K\""),
        "{script}"
    );

    let merge = yaml("deploy/kubernetes/merge-job.yaml");
    assert_eq!(s(&merge, "kind"), "Job");
    let script = s(&merge, "spec.template.spec.containers.0.args.0");
    assert!(
        script.contains(
            "carbonio-fleet report merge /reports/shard-*/latest/report.json --report-dir /reports/merged"
        ),
        "{script}"
    );
}

/// The sweeps' exit policy is explicit: no restart in place and no second pod (drift
/// exits non-zero by design and the script maps it to success; what still fails — a
/// configuration error, an interrupt — would fail a re-run the same way, and a retry
/// would sweep every node again). Both push their metrics to a Pushgateway, and the
/// nightly one reads its webhook URL from a Secret, never from its command line.
#[test]
fn the_kubernetes_sweeps_never_retry_and_push_their_metrics() {
    let env_of = |pod: &serde_norway::Value, name: &str| -> serde_norway::Value {
        get(pod, "containers.0.env")
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no env {name}"))
            .clone()
    };
    let cron = yaml("deploy/kubernetes/cronjob.yaml");
    assert_eq!(
        get(&cron, "spec.jobTemplate.spec.backoffLimit").as_u64(),
        Some(0)
    );
    let pod = get(&cron, "spec.jobTemplate.spec.template.spec");
    assert_eq!(s(pod, "restartPolicy"), "Never");
    let push = env_of(pod, "CARBONIO_FLEET_PUSHGATEWAY_URL");
    assert!(push["value"].as_str().unwrap().starts_with("http://"));
    let hook = env_of(pod, "CARBONIO_FLEET_WEBHOOK_URL");
    assert_eq!(
        hook["valueFrom"]["secretKeyRef"]["optional"].as_bool(),
        Some(true)
    );
    assert!(!s(pod, "containers.0.args.0").contains("--webhook"));

    let job = yaml("deploy/kubernetes/sharded-job.yaml");
    assert_eq!(get(&job, "spec.backoffLimitPerIndex").as_u64(), Some(0));
    assert_eq!(get(&job, "spec.maxFailedIndexes").as_u64(), Some(0));
    let pod = get(&job, "spec.template.spec");
    assert_eq!(s(pod, "restartPolicy"), "Never");
    env_of(pod, "CARBONIO_FLEET_PUSHGATEWAY_URL");
}

#[test]
fn the_sharded_job_script_maps_each_index_to_its_shard() {
    // Run the pod's shell script with a stub `carbonio-fleet` that prints its
    // arguments, for every completion index.
    let job = yaml("deploy/kubernetes/sharded-job.yaml");
    let script = s(&job, "spec.template.spec.containers.0.args.0").to_owned();
    let dir = tempfile::tempdir().unwrap();
    let stub = dir.path().join("carbonio-fleet");
    // `secret check` finds every credential (0); the sweep finds drift (2).
    fs::write(
        &stub,
        "#!/bin/sh\nif [ \"$1\" = secret ]; then exit 0; fi\necho \"$@\"\nexit 2\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&stub, fs::Permissions::from_mode(0o755)).unwrap();
    for index in 0..4 {
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .env("SHARDS", "4")
            .output()
            .unwrap();
        assert!(out.status.success(), "drift (2) completes the pod: {out:?}");
        let args = String::from_utf8(out.stdout).unwrap();
        let k = index + 1;
        assert!(
            args.contains(&format!("--shard {k}/4 --report-dir /reports/shard-{k}")),
            "{args}"
        );
    }
}

/// The nightly CronJob looks for every host's credentials first: when some cannot be
/// found the Job fails with `secret check`'s exit code and no sweep runs; otherwise the
/// sweep runs and drift (2) completes the Job.
#[test]
fn the_cronjob_checks_secrets_before_the_sweep() {
    let cron = yaml("deploy/kubernetes/cronjob.yaml");
    let script = s(
        &cron,
        "spec.jobTemplate.spec.template.spec.containers.0.args.0",
    )
    .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let stub = dir.path().join("carbonio-fleet");
    let calls = dir.path().join("calls");
    fs::write(
        &stub,
        format!(
            "#!/bin/sh\necho \"$1 $2\" >> {}\nif [ \"$1\" = secret ]; then exit \"$SECRET_RC\"; fi\nexit 2\n",
            calls.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&stub, fs::Permissions::from_mode(0o755)).unwrap();
    for (rc, ok, ran) in [
        ("3", false, "secret check\n"),
        ("0", true, "secret check\ncheck -i\nreport prune\n"),
    ] {
        let _ = fs::remove_file(&calls);
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
            .env("SECRET_RC", rc)
            .output()
            .unwrap();
        assert_eq!(out.status.success(), ok, "secret check {rc}: {out:?}");
        assert_eq!(fs::read_to_string(&calls).unwrap(), ran);
    }
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    if !prereq::require(
        "systemd_units_pass_systemd_analyze_verify",
        &[Need::program("systemd-analyze", "systemd")],
    ) {
        return;
    }
    let service = fs::read_to_string("deploy/systemd/carbonio-fleet-check.service").unwrap();
    let timer = fs::read_to_string("deploy/systemd/carbonio-fleet-check.timer").unwrap();
    for needle in [
        "Type=oneshot",
        "User=carbonio-fleet",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "--metrics-file /var/lib/node_exporter/textfile_collector/carbonio_fleet.prom",
        "ReadWritePaths=/var/lib/node_exporter/textfile_collector",
        "ExecStartPre=/usr/local/bin/carbonio-fleet secret check",
        "ExecStartPost=/usr/local/bin/carbonio-fleet report prune",
    ] {
        assert!(service.contains(needle), "service lacks {needle}");
    }
    for needle in [
        "OnCalendar=",
        "RandomizedDelaySec=",
        "Persistent=true",
        "WantedBy=timers.target",
    ] {
        assert!(timer.contains(needle), "timer lacks {needle}");
    }
    // verify insists that ExecStart exists: point it at the binary under test, through a
    // link in a directory of our own (the checkout's path may hold spaces, which ExecStart
    // would split on).
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("carbonio-fleet");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_carbonio-fleet"), &bin).unwrap();
    fs::write(
        dir.path().join("carbonio-fleet-check.service"),
        service.replace("/usr/local/bin/carbonio-fleet", &bin.display().to_string()),
    )
    .unwrap();
    fs::write(dir.path().join("carbonio-fleet-check.timer"), &timer).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join("carbonio-fleet-check.service"))
        .arg(dir.path().join("carbonio-fleet-check.timer"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify failed: {stderr}");
    // Unknown or misspelt keys are only warnings for verify: refuse them too.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("carbonio-fleet-check"))
        .collect();
    assert!(ours.is_empty(), "verify complained: {ours:?}");
    // The schedule itself parses.
    let cal = timer
        .lines()
        .find_map(|l| l.strip_prefix("OnCalendar="))
        .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["calendar", cal])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// The shipped Prometheus rules parse and ask only for metrics the tool writes, with
/// labels it sets.
#[test]
fn the_prometheus_rules_use_the_metrics_the_tool_writes() {
    let rules = yaml("deploy/prometheus/carbonio-fleet-rules.yaml");
    let written = carbonio_fleet::report::metrics::render_openmetrics(
        &carbonio_fleet::report::sample::sample_report(),
    ) + &carbonio_fleet::report::metrics::render_secrets_missing(3, &["m1"]);
    let list = get(&rules, "groups.0.rules").as_sequence().unwrap();
    assert!(list.len() >= 5);
    for r in list {
        let expr = r["expr"].as_str().unwrap();
        let names: Vec<&str> = expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("carbonio_fleet_"))
            .collect();
        assert!(!names.is_empty(), "{expr}");
        for n in names {
            assert!(
                written.contains(&format!("\n{n}{{")) || written.contains(&format!("\n{n} ")),
                "{n} is not written"
            );
        }
        for label in ["status=", "verdict=", "command="] {
            if expr.contains(label) {
                let l = &label[..label.len() - 1];
                assert!(written.contains(&format!("{l}=\"")), "label {l}");
            }
        }
        assert!(
            r["alert"]
                .as_str()
                .is_some_and(|a| a.starts_with("CarbonioFleet"))
        );
    }
}
