//! End-to-end against REAL OpenSSH servers (tests/support/realfleet.rs): the real
//! binary, real sshd, real `su - zextras`, real bash/getent/grep, and the Carbonio
//! emulator as real processes (`carbonio-fleet sim-exec`). Exit codes are asserted by
//! name, outcomes from report.json, restarts from the emulator's restart logs.
//! Skipped with a visible message without root or namespaces.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use carbonio_fleet::exit::ExitCode;
use carbonio_sim::exec::StageFault;
use carbonio_sim::{FleetSpec, NodeSpec, max_concurrent, max_concurrent_per_cluster};
use serde_json::Value;
use support::child::StderrTap;
use support::realfleet::{RealFleet, RealFleetOptions, alive};

const BIN: &str = env!("CARGO_BIN_EXE_carbonio-fleet");

/// Node specs from a simulator profile mix (clusters of `cluster_size`), with the
/// operator's spawn-user fix (`user=zextras`) on every node the mix does not give the
/// stock entry (`spawn-user-missing`) or a hand-made `zimbra`: these tests are about
/// everything else, and a stock node's policy controls are blocked without
/// `--fix-spawn-user` (which `fix_spawn_user_on_a_real_node` covers).
fn specs(total: usize, mix: &str, cluster_size: usize) -> Vec<NodeSpec> {
    let mut nodes = FleetSpec::from_mix(total, mix, cluster_size).unwrap().nodes;
    for n in &mut nodes {
        n.profile.spawn_user_fixed = true;
    }
    nodes
}

/// The shipped playbook with another `[rollout]` table.
fn playbook(dir: &Path, rollout: &str) -> PathBuf {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/backscatter.toml"
    ))
    .unwrap();
    let controls = &text[..text.find("[rollout]").expect("playbook has [rollout]")];
    // The domain-posture probes read DNS, which these tests do not seed for compliance:
    // leave them out so exit codes speak of the MTA settings alone.
    let controls: String = controls
        .split_inclusive('\n')
        .fold(
            (String::new(), String::new()),
            |(mut out, mut block), line| {
                if line.starts_with('[') {
                    if !block.contains("kind = \"dns\"") {
                        out.push_str(&block);
                    }
                    block.clear();
                }
                block.push_str(line);
                (out, block)
            },
        )
        .0;
    let path = dir.join("playbook.toml");
    std::fs::write(&path, format!("{controls}[rollout]\n{rollout}\n")).unwrap();
    path
}

/// A fast rollout: no pause, short gate.
const FAST: &str = "batch = 2\nper_cluster = 1\ncanary = 1\npause = \"0s\"\nmax_failures = \"50%\"\nrestart = \"full\"\nhealth_timeout = \"20s\"\nprobe_from = \"node\"\nonly_if_changed = true";

fn tool(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(["--progress", "never"])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn report(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("latest").join("report.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn host<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in report"))
}

fn verdicts(h: &Value) -> Vec<(String, String)> {
    h["controls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The gate check `name` of a host's apply record.
fn gate_check(h: &Value, name: &str) -> Value {
    h["apply"]["gate"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check: {h}"))
        .clone()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The tool's arguments for `cmd` with the fleet's inventory and a report dir (returned
/// too); apply gets `--yes`.
fn fleet_args(
    fleet: &RealFleet,
    cmd: &str,
    pb: Option<&Path>,
    extra: &[&str],
) -> (Vec<String>, PathBuf) {
    let reports = fleet.dir.path().join("reports");
    let inv = fleet.inventory();
    let mut args = vec![
        cmd,
        "-i",
        inv.to_str().unwrap(),
        "--report-dir",
        reports.to_str().unwrap(),
    ];
    if let Some(pb) = pb {
        args.extend(["-p", pb.to_str().unwrap()]);
    }
    if cmd == "apply" {
        args.push("--yes");
    }
    args.extend(extra);
    (args.into_iter().map(String::from).collect(), reports)
}

/// Runs the tool with the fleet's inventory and a report dir; apply gets `--yes`.
fn run(fleet: &RealFleet, cmd: &str, pb: Option<&Path>, extra: &[&str]) -> (Output, PathBuf) {
    let (args, reports) = fleet_args(fleet, cmd, pb, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (tool(&args), reports)
}

/// Starts `apply` on the fleet in the background, output piped, for tests that act on
/// the nodes (or the tool) while it runs; returns the child and the report dir.
fn spawn_apply(fleet: &RealFleet, pb: &Path) -> (std::process::Child, PathBuf) {
    let (args, reports) = fleet_args(fleet, "apply", Some(pb), &[]);
    let child = Command::new(BIN)
        .args(&args)
        .args(["--progress", "never"])
        .env_remove("CARBONIO_FLEET_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, reports)
}

/// What `check` costs in prov processes per node: one for its gather, plus one on the
/// first node of each cluster for the cluster's domain attributes (the DKIM read).
fn check_prov_counts(fleet: &RealFleet) -> Vec<u64> {
    let mut seen = std::collections::BTreeSet::new();
    fleet
        .nodes
        .iter()
        .map(|n| if seen.insert(n.cluster.clone()) { 2 } else { 1 })
        .collect()
}

/// The prov invocation count of every node (from the emulator's persisted state).
fn prov_counts(fleet: &RealFleet) -> Vec<u64> {
    fleet
        .nodes
        .iter()
        .map(|n| n.store.read().unwrap().0.prov_invocations)
        .collect()
}

/// Host name, status, platform, BS-01..04 verdicts, EFF-01..03 and SMTP-01 verdicts.
type Expected<'a> = (&'a str, &'a str, &'a str, [&'a str; 4], [&'a str; 4]);

#[test]
fn check_on_a_mixed_fleet_matches_the_seeded_state() {
    let started = Instant::now();
    let Some(fleet) = RealFleet::start(
        "check_on_a_mixed_fleet",
        specs(
            6,
            "legacy+non-compliant=1,systemd+compliant=1,legacy+half-compliant=1,systemd+restart-pending=1,legacy+server-override+spawn-user-missing=1,systemd+compliant+mailbox=1",
            1,
        ),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    eprintln!("6 real sshd nodes up in {:?}", started.elapsed());
    let (out, reports) = run(&fleet, "check", None, &[]);
    assert_eq!(code(&out), ExitCode::Drift.code(), "{}", show(&out));
    let r = report(&reports);
    assert_eq!(r["exit_code"], ExitCode::Drift.code());
    let nc = "non-compliant";
    let expect: [Expected<'_>; 6] = [
        // name, status, platform, BS-01..04 verdicts, EFF-01..03 + SMTP-01 probes
        (
            "mta1.c001.sim.example",
            "drift",
            "legacy",
            [nc, nc, nc, nc],
            ["fail", "fail", "fail", "fail"],
        ),
        (
            "mta1.c002.sim.example",
            "compliant",
            "systemd",
            ["compliant"; 4],
            ["pass"; 4],
        ),
        (
            "mta1.c003.sim.example",
            "drift",
            "legacy",
            [nc, "compliant", "compliant", nc],
            ["fail", "pass", "pass", "pass"],
        ),
        (
            "mta1.c004.sim.example",
            "restart-pending",
            "systemd",
            ["compliant"; 4],
            ["fail", "fail", "fail", "fail"],
        ),
        (
            "mta1.c005.sim.example",
            "drift",
            "legacy",
            ["compliant", "masked", "compliant", "compliant"],
            ["pass", "fail", "pass", "fail"],
        ),
        (
            "mbx1.c006.sim.example",
            "compliant",
            "systemd",
            ["not-applicable"; 4],
            ["not-applicable"; 4],
        ),
    ];
    for (name, status, platform, controls, probes) in expect {
        let h = host(&r, name);
        assert_eq!(s(&h["status"]), status, "{name}: {h}");
        assert_eq!(s(&h["platform"]), platform, "{name}");
        assert!(h["error"].is_null(), "{name}: {}", h["error"]);
        let got = verdicts(h);
        let want: Vec<(String, String)> = ["BS-01", "BS-02", "BS-03", "BS-04"]
            .iter()
            .zip(controls)
            .map(|(id, v)| (id.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want, "{name}");
        let got: Vec<(&str, &str)> = h["probes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (s(&p["id"]), s(&p["verdict"])))
            .collect();
        let want: Vec<(&str, &str)> = ["EFF-01", "EFF-02", "EFF-03", "SMTP-01"]
            .into_iter()
            .zip(probes)
            .collect();
        assert_eq!(got, want, "{name}");
    }
    // The spawn user the real getent does not know is a blocking finding.
    let h = host(&r, "mta1.c005.sim.example");
    assert!(
        h["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == "PRE-POLICY-SPAWN-USER"),
        "{h}"
    );
    // One `zmprov` process per host, and check changed nothing.
    assert_eq!(prov_counts(&fleet), check_prov_counts(&fleet));
    assert_eq!(fleet.restarts_started(), 0);
}

/// Apply with a staggered rollout over legacy (zmcontrol) and systemd (systemctl as
/// root) clusters, then a re-apply that changes and restarts nothing.
#[test]
fn apply_rollout_staggers_restarts_and_reapply_is_a_no_op() {
    let Some(fleet) = RealFleet::start(
        "apply_rollout",
        specs(
            6,
            "legacy+non-compliant=2,systemd+non-compliant=2,legacy+half-compliant=2",
            2,
        ),
        &RealFleetOptions {
            restart_time: Duration::from_millis(700),
            ..RealFleetOptions::default()
        },
    ) else {
        return;
    };
    let pb = playbook(fleet.dir.path(), FAST);
    let (out, reports) = run(&fleet, "apply", Some(&pb), &[]);
    assert_eq!(code(&out), ExitCode::Ok.code(), "{}", show(&out));
    let r = report(&reports);
    for n in &fleet.nodes {
        let h = host(&r, &n.name);
        assert_eq!(s(&h["status"]), "compliant", "{}: {h}", n.name);
        assert_eq!(s(&h["apply"]["rollout"]), "restarted", "{}: {h}", n.name);
        assert_eq!(h["apply"]["gate"]["passed"], true, "{}", n.name);
        // Exactly one restart per node, by the platform's method, that succeeded.
        let lines = n.restarts();
        let ends: Vec<_> = lines.iter().filter(|l| l.ended_ms.is_some()).collect();
        assert_eq!(ends.len(), 1, "{}: {lines:?}", n.name);
        assert_eq!(ends[0].ok, Some(true));
        let method = match n.profile.platform.as_str() {
            "legacy" => carbonio_sim::RestartMethod::Zmcontrol,
            _ => carbonio_sim::RestartMethod::Systemctl,
        };
        assert_eq!(ends[0].method, method, "{}", n.name);
        // The LDAP and the running Postfix both hold the baseline now.
        let (nf, cf) = n.store.read().unwrap();
        assert_eq!(cf.ldap.global["zimbraMtaEnableSmtpdPolicyd"], vec!["TRUE"]);
        let pf = nf.state.postfix.expect("an MTA");
        assert!(
            pf.params["smtpd_recipient_restrictions"]
                .contains("check_policy_service unix:private/policy")
        );
    }
    let records = fleet.finished_restarts();
    assert_eq!(records.len(), 6);
    assert!(max_concurrent(&records) <= 2, "batch = 2: {records:?}");
    for (cluster, n) in max_concurrent_per_cluster(&records) {
        assert!(n <= 1, "per_cluster = 1, {cluster} had {n}");
    }

    // Re-apply: everything compliant, nothing changed, nothing restarted.
    let before = prov_counts(&fleet);
    let (out, reports) = run(&fleet, "apply", Some(&pb), &[]);
    assert_eq!(code(&out), ExitCode::Ok.code(), "{}", show(&out));
    let r = report(&reports);
    for n in &fleet.nodes {
        let h = host(&r, &n.name);
        assert_eq!(s(&h["status"]), "compliant", "{}", n.name);
        for c in h["controls"].as_array().unwrap() {
            assert_eq!(c["changed"], false, "{}: {c}", n.name);
        }
        let rollout = s(&h["apply"]["rollout"]);
        assert!(!rollout.starts_with("restarted"), "{}: {rollout}", n.name);
    }
    assert_eq!(
        fleet.finished_restarts().len(),
        6,
        "the re-apply restarted a node"
    );
    assert_eq!(fleet.restarts_started(), 6);
    // No change batch was sent and nothing restarted: the re-apply's only prov process
    // per host is its gather (no proof gather where nothing was done).
    for n in &fleet.nodes {
        let h = host(&r, &n.name);
        assert_eq!(
            h["apply"]["commands"].as_array().map_or(0, Vec::len),
            0,
            "{h}"
        );
    }
    let after = prov_counts(&fleet);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a - b, 1, "prov processes per host on a no-op re-apply");
    }
}

fn error_kind(h: &Value) -> &str {
    s(&h["error"]["kind"])
}

#[test]
fn unreachable_node_is_reported_and_the_rest_is_checked() {
    let Some(fleet) = RealFleet::start(
        "unreachable",
        specs(2, "legacy+compliant=1,unreachable=1", 1),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    let (out, reports) = run(&fleet, "check", None, &[]);
    assert_eq!(code(&out), ExitCode::HostFailed.code(), "{}", show(&out));
    let r = report(&reports);
    let bad = &fleet.nodes[1];
    let h = host(&r, &bad.name);
    assert_eq!(s(&h["status"]), "failed");
    assert_eq!(error_kind(h), "unreachable", "{h}");
    assert!(
        s(&h["error"]["message"]).contains("connection refused"),
        "{h}"
    );
    assert_eq!(s(&host(&r, &fleet.nodes[0].name)["status"]), "compliant");
}

#[test]
fn node_that_never_speaks_times_out_within_connect_timeout() {
    let Some(fleet) = RealFleet::start(
        "hanging",
        specs(2, "legacy+compliant=1,hanging=1", 1),
        &RealFleetOptions {
            hanging_connect_timeout: Some("2s"),
            ..RealFleetOptions::default()
        },
    ) else {
        return;
    };
    let (out, reports) = run(&fleet, "check", None, &[]);
    assert_eq!(code(&out), ExitCode::HostFailed.code(), "{}", show(&out));
    let r = report(&reports);
    let h = host(&r, &fleet.nodes[1].name);
    assert_eq!(s(&h["status"]), "failed");
    assert_eq!(error_kind(h), "timeout", "{h}");
    // Its own connect_timeout (2s) ended it, not the 60 s command timeout.
    assert!(
        s(&h["error"]["message"]).contains("timed out after 2s"),
        "{h}"
    );
    assert_eq!(s(&host(&r, &fleet.nodes[0].name)["status"]), "compliant");
}

#[test]
fn wrong_host_key_is_refused_before_any_authentication() {
    let Some(fleet) = RealFleet::start(
        "wrong_host_key",
        specs(1, "legacy+compliant+hostkey-changed=1", 1),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    let (out, reports) = run(&fleet, "check", None, &[]);
    assert_eq!(code(&out), ExitCode::HostFailed.code(), "{}", show(&out));
    let r = report(&reports);
    let node = &fleet.nodes[0];
    let h = host(&r, &node.name);
    assert_eq!(error_kind(h), "hostkey", "{h}");
    assert!(
        !h["error"]["expected_fingerprints"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{h}"
    );
    assert!(
        s(&h["error"]["offered_fingerprint"]).starts_with("SHA256:"),
        "{h}"
    );
    // sshd saw the connection, and no credential ever reached it.
    let log = node.wait_log_closed();
    assert!(log.contains("Connection from 127.0.0.1"), "{log}");
    assert!(
        !log.contains("userauth-request"),
        "an auth request reached sshd:\n{log}"
    );
    assert_eq!(prov_counts(&fleet), vec![0]);
}

#[test]
fn unknown_host_key_fails_under_strict() {
    let Some(fleet) = RealFleet::start(
        "unknown_host_key",
        specs(2, "legacy+compliant=2", 1),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    // known_hosts lists only the first node.
    let kh = std::fs::read_to_string(fleet.known_hosts()).unwrap();
    let first = kh.lines().next().unwrap().to_string();
    std::fs::write(fleet.known_hosts(), format!("{first}\n")).unwrap();
    let (out, reports) = run(&fleet, "check", None, &[]);
    assert_eq!(code(&out), ExitCode::HostFailed.code(), "{}", show(&out));
    let r = report(&reports);
    let h = host(&r, &fleet.nodes[1].name);
    assert_eq!(error_kind(h), "hostkey", "{h}");
    assert!(
        s(&h["error"]["message"]).contains("is not in known_hosts"),
        "{h}"
    );
    assert_eq!(s(&host(&r, &fleet.nodes[0].name)["status"]), "compliant");
    // strict never writes the unknown key.
    assert_eq!(
        std::fs::read_to_string(fleet.known_hosts()).unwrap(),
        format!("{first}\n")
    );
    let log = fleet.nodes[1].wait_log_closed();
    assert!(!log.contains("userauth-request"), "{log}");
}

#[test]
fn refused_authentication_is_an_auth_failure() {
    let Some(fleet) = RealFleet::start(
        "auth_refused",
        specs(1, "legacy+compliant+auth-refused=1", 1),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    let (out, reports) = run(&fleet, "check", None, &[]);
    assert_eq!(code(&out), ExitCode::HostFailed.code(), "{}", show(&out));
    let r = report(&reports);
    let h = host(&r, &fleet.nodes[0].name);
    assert_eq!(s(&h["status"]), "failed");
    assert_eq!(error_kind(h), "auth", "{h}");
    let log = fleet.nodes[0].wait_log_closed();
    assert!(log.contains("userauth-request for user root"), "{log}");
}

/// The LDAP of one cluster refuses one attribute: that batch reports the ProvUtil ERROR,
/// the read-back shows what really changed, and nothing unchanged is reported fixed.
#[test]
fn zmprov_error_in_an_apply_batch_is_reported_exactly() {
    let Some(fleet) = RealFleet::start(
        "zmprov_error",
        specs(3, "legacy+non-compliant=3", 1),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    let bad = &fleet.nodes[1];
    bad.store
        .update(|_, cf| {
            cf.ldap
                .refused
                .insert("zimbraMtaSmtpdRejectUnlistedSender".to_string());
        })
        .unwrap();
    let pb = playbook(fleet.dir.path(), FAST);
    let (out, reports) = run(&fleet, "apply", Some(&pb), &[]);
    assert_eq!(code(&out), ExitCode::HostFailed.code(), "{}", show(&out));
    let r = report(&reports);
    let h = host(&r, &bad.name);
    assert_eq!(s(&h["status"]), "failed", "{h}");
    let errors: Vec<String> = h["apply"]["commands"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["errors"].as_array().unwrap().clone())
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("ERROR: service.FAILURE")
                && e.contains("zimbraMtaSmtpdRejectUnlistedSender")),
        "{errors:?}"
    );
    let (_, cf) = bad.store.read().unwrap();
    for c in h["controls"].as_array().unwrap() {
        let attr = s(&c["attr"]);
        let stored = cf.ldap.global.get(attr).cloned().unwrap_or_default();
        if c["changed"] == true {
            assert_eq!(s(&c["verdict"]), "compliant", "{c}");
        }
        if attr == "zimbraMtaSmtpdRejectUnlistedSender" {
            assert_eq!(c["changed"], false, "{c}");
            assert_eq!(s(&c["verdict"]), "non-compliant", "{c}");
            assert_eq!(stored, vec!["no"], "the LDAP kept the old value");
            assert_eq!(s(&c["after"]), "no", "read-back: {c}");
        }
    }
    // The other clusters were fixed.
    for n in [&fleet.nodes[0], &fleet.nodes[2]] {
        assert_eq!(s(&host(&r, &n.name)["status"]), "compliant", "{}", n.name);
    }
}

#[test]
fn curly_quotes_in_a_playbook_value_are_rejected_at_load() {
    let Some(fleet) = RealFleet::start(
        "curly_quotes",
        specs(1, "legacy+non-compliant=1", 1),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    let text = std::fs::read_to_string(playbook(fleet.dir.path(), FAST)).unwrap();
    let bad = text.replace(
        "contains = \"check_policy_service unix:private/policy\"\nseverity",
        "contains = \"\u{201C}check_policy_service unix:private/policy\u{201D}\"\nseverity",
    );
    assert_ne!(bad, text);
    let pb = fleet.dir.path().join("curly.toml");
    std::fs::write(&pb, bad).unwrap();
    for cmd in ["check", "apply"] {
        let (out, reports) = run(&fleet, cmd, Some(&pb), &[]);
        assert_eq!(code(&out), ExitCode::Usage.code(), "{}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("typographic quotes"), "{err}");
        assert!(err.contains("curly.toml:"), "names the place: {err}");
        assert!(
            !reports.join("latest").exists(),
            "no report for a refused playbook"
        );
    }
    // Nothing was contacted.
    let log = fleet.nodes[0].log_text();
    assert!(!log.contains("Connection from"), "{log}");
    assert_eq!(prov_counts(&fleet), vec![0]);
}

/// A value with quotes, `$()`, backticks, `;` and a backslash crosses ssh, `su -
/// zextras -c`, bash and ProvUtil's line parser, and is stored exactly.
#[test]
fn hostile_value_is_delivered_intact_through_su() {
    let Some(fleet) = RealFleet::start(
        "hostile_value",
        specs(1, "legacy+compliant=1", 1),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    let canary = fleet.dir.path().join("pwned");
    let value = format!(
        "reject_sender_login_mismatch it's \"quoted\" $(touch {p}) `touch {p}`; touch {p} \\ end",
        p = canary.display()
    );
    let control = format!(
        "[[control]]\nid = \"HOSTILE-01\"\ntitle = \"hostile value\"\nattr = \"zimbraMtaSmtpdSenderRestrictions\"\n\
         scope = \"global\"\nexpect = {}\nseverity = \"low\"\nrestart = false\n\n",
        toml::Value::String(value.clone())
    );
    let pb = fleet.dir.path().join("hostile.toml");
    std::fs::write(
        &pb,
        format!(
            "name = \"hostile\"\ndescription = \"hostile values\"\n\n{control}[rollout]\n{FAST}\n"
        ),
    )
    .unwrap();
    let (out, reports) = run(&fleet, "apply", Some(&pb), &[]);
    assert_eq!(code(&out), ExitCode::Ok.code(), "{}", show(&out));
    let r = report(&reports);
    let h = host(&r, &fleet.nodes[0].name);
    let c = &h["controls"][0];
    assert_eq!(c["changed"], true, "{c}");
    assert_eq!(s(&c["verdict"]), "compliant", "{c}");
    let (_, cf) = fleet.nodes[0].store.read().unwrap();
    assert_eq!(
        cf.ldap.global["zimbraMtaSmtpdSenderRestrictions"],
        vec![value.clone()],
        "stored exactly"
    );
    assert!(!canary.exists(), "a shell expanded part of the value");
    // And the check reads it back equal.
    let (out, _) = run(&fleet, "check", Some(&pb), &[]);
    assert_eq!(code(&out), ExitCode::Ok.code(), "{}", show(&out));
}

#[test]
fn restart_failure_in_the_canary_aborts_and_restarts_nothing_else() {
    let Some(fleet) = RealFleet::start(
        "canary_failure",
        specs(4, "legacy+non-compliant=2,systemd+non-compliant=2", 1),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    // Every node would fail its restart: whichever the canary is, it fails.
    for n in &fleet.nodes {
        n.store
            .update(|nf, _| nf.state.fail_next_restart = true)
            .unwrap();
    }
    let pb = playbook(fleet.dir.path(), FAST);
    let (out, reports) = run(&fleet, "apply", Some(&pb), &[]);
    assert_eq!(code(&out), ExitCode::Aborted.code(), "{}", show(&out));
    // The canary's failed restart, then its rollback's restart on the old values.
    assert_eq!(fleet.restarts_started(), 2, "only the canary restarted");
    let records = fleet.finished_restarts();
    assert_eq!(records.len(), 2);
    assert!(!records[0].ok);
    assert!(
        records[1].ok && records[1].node == records[0].node,
        "{records:?}"
    );
    let r = report(&reports);
    let mut canary = 0;
    for n in &fleet.nodes {
        let h = host(&r, &n.name);
        let rollout = s(&h["apply"]["rollout"]);
        if n.name == records[0].node {
            canary += 1;
            assert!(rollout.starts_with("failed"), "{}: {rollout}", n.name);
            assert_eq!(h["apply"]["restart"]["ok"], false, "{h}");
            assert_eq!(h["apply"]["rollback"]["ok"], true, "{h}");
        } else {
            assert_eq!(rollout, "not-attempted (canary failed)", "{}", n.name);
        }
    }
    assert_eq!(canary, 1);
}

/// The SSH session dies while the node restarts (detached: the restart itself goes on):
/// the outcome is a failure or unknown, never a success.
#[test]
fn node_killed_mid_command_is_never_a_success() {
    let Some(fleet) = RealFleet::start(
        "killed_mid_command",
        specs(1, "legacy+non-compliant=1", 1),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    let pb = playbook(fleet.dir.path(), FAST);
    let node = &fleet.nodes[0];
    // The restart stays in flight until the sessions are gone.
    let hold = node.hold_restarts();
    let (child, reports) = spawn_apply(&fleet, &pb);
    assert!(
        node.wait_restarts(Duration::from_secs(60), |l| !l.is_empty()),
        "the restart never started"
    );
    assert!(node.kill_sessions() > 0, "no session process to kill");
    hold.release();
    let out = child.wait_with_output().unwrap();
    assert!(
        [ExitCode::HostFailed.code(), ExitCode::Aborted.code()].contains(&code(&out)),
        "{}",
        show(&out)
    );
    let r = report(&reports);
    let h = host(&r, &node.name);
    assert_ne!(s(&h["status"]), "compliant", "{h}");
    let rollout = s(&h["apply"]["rollout"]);
    assert!(rollout.starts_with("failed"), "{rollout}");
    assert_eq!(h["apply"]["restart"]["ok"], false, "{h}");
    // The restart ran detached (setsid): the tool never saw its exit status and says so.
    let commands = h["apply"]["commands"].as_array().unwrap();
    assert!(
        commands
            .iter()
            .any(|c| c["purpose"] == "restart (detached)"),
        "the restart command is recorded: {h}"
    );
    assert!(
        commands
            .iter()
            .all(|c| c["purpose"] != "restart (exit status)"),
        "no exit status arrived: {h}"
    );
    assert!(
        s(&h["apply"]["restart"]["output"]).contains("outcome is unknown"),
        "{h}"
    );
    // The channel is gone, the restart is not: it ends on the node by itself.
    assert!(
        node.wait_restarts(Duration::from_secs(60), |l| l
            .iter()
            .any(|x| x.ended_ms.is_some() && x.ok == Some(true))),
        "the detached restart did not survive the dropped channel"
    );
    // The connection is gone: no read-back happened, so none is reported.
    for c in h["controls"].as_array().unwrap() {
        assert!(c["after"].is_null(), "a read-back that never happened: {c}");
    }
}

#[test]
fn unwritable_report_dir_is_a_clear_error_and_keeps_the_previous_report() {
    let Some(fleet) = RealFleet::start(
        "report_dir_unwritable",
        specs(1, "legacy+compliant=1", 1),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    let (out, reports) = run(&fleet, "check", None, &[]);
    assert_eq!(code(&out), ExitCode::Ok.code(), "{}", show(&out));
    let latest = std::fs::canonicalize(reports.join("latest")).unwrap();
    let before = std::fs::read(latest.join("report.json")).unwrap();
    // Root ignores mode bits: a read-only bind mount in a private mount namespace
    // makes the report dir unwritable for this one run.
    let inv = fleet.inventory();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind -o ro \"$1\" \"$1\" && exec \"$2\" check -i \"$3\" --report-dir \"$1\" --progress never")
        .args(["sh"])
        .arg(&reports)
        .arg(BIN)
        .arg(&inv)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ne!(code(&out), ExitCode::Ok.code(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the report could not be written"),
        "{}",
        show(&out)
    );
    assert!(
        err.contains(reports.to_str().unwrap()),
        "names the path: {err}"
    );
    assert_eq!(
        std::fs::canonicalize(reports.join("latest")).unwrap(),
        latest
    );
    assert_eq!(std::fs::read(latest.join("report.json")).unwrap(), before);
}

/// A real SIGINT mid-rollout: exit 130 with a complete report and a journal; then
/// `apply --resume` finishes the job without restarting a node twice.
#[test]
fn sigint_mid_rollout_then_resume_finishes_the_job() {
    let Some(fleet) = RealFleet::start(
        "sigint_resume",
        specs(4, "legacy+non-compliant=2,systemd+non-compliant=2", 1),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    let pb = playbook(fleet.dir.path(), &FAST.replace("batch = 2", "batch = 1"));
    // Restarts stay in flight until the tool has said it took the interrupt.
    let holds: Vec<_> = fleet.nodes.iter().map(|n| n.hold_restarts()).collect();
    let (mut child, reports) = spawn_apply(&fleet, &pb);
    let mut stderr = StderrTap::new(&mut child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while fleet.restarts_started() == 0 {
        assert!(Instant::now() < deadline, "no restart started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on the child we spawned and still own.
    #[expect(unsafe_code, reason = "kill: std sends only SIGKILL")]
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    assert!(
        stderr.wait_for("interrupted:", Duration::from_secs(60)),
        "the interrupt was never acknowledged: {}",
        stderr.text()
    );
    drop(holds);
    let mut out = child.wait_with_output().unwrap();
    out.stderr = stderr.finish().into_bytes();
    assert_eq!(code(&out), ExitCode::Interrupted.code(), "{}", show(&out));
    let r = report(&reports);
    assert_eq!(r["hosts"].as_array().unwrap().len(), 4, "complete report");
    assert_eq!(r["exit_code"], ExitCode::Interrupted.code());
    // The in-flight restart was waited for; nothing else started.
    assert_eq!(fleet.restarts_started(), 1);
    assert_eq!(fleet.finished_restarts().len(), 1);
    let journal = std::fs::read_to_string(reports.join("latest").join("journal.jsonl")).unwrap();
    let first = &fleet.finished_restarts()[0].node;
    assert!(journal.contains("\"restart-started\""), "{journal}");
    assert!(
        journal
            .lines()
            .any(|l| l.contains(first.as_str()) && l.contains("\"restarted\"")),
        "{journal}"
    );
    for n in &fleet.nodes {
        // The journal says where every host stands: only the first was staged; the
        // others' LDAP was not touched (nothing was promoted).
        let staged = journal
            .lines()
            .any(|l| l.contains(&format!("\"{}\"", n.name)) && l.contains("\"staged\""));
        assert_eq!(staged, &n.name == first, "{}: {journal}", n.name);
        let (_, cf) = n.store.read().unwrap();
        assert_eq!(
            cf.ldap.global.get("zimbraMtaEnableSmtpdPolicyd").cloned(),
            Some(vec!["FALSE".to_string()]),
            "{}",
            n.name
        );
        let rollout = s(&host(&r, &n.name)["apply"]["rollout"]);
        if &n.name != first {
            assert_eq!(rollout, "not-attempted (interrupted)", "{}", n.name);
        }
    }

    let (out, reports) = run(&fleet, "apply", Some(&pb), &["--resume"]);
    assert_eq!(code(&out), ExitCode::Ok.code(), "{}", show(&out));
    let r = report(&reports);
    let names: Vec<&str> = r["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| s(&h["name"]))
        .collect();
    // The first host's gate passed in the interrupted run: it is not reloaded again,
    // but it is not done until its cluster is promoted.
    assert_eq!(names.len(), 4, "{names:?}");
    for h in r["hosts"].as_array().unwrap() {
        assert_eq!(s(&h["status"]), "compliant", "{h}");
        let want = if s(&h["name"]) == first.as_str() {
            "gate passed in an earlier run"
        } else {
            "restarted"
        };
        assert_eq!(s(&h["apply"]["rollout"]), want, "{h}");
    }
    for p in r["promotions"].as_array().unwrap() {
        assert_eq!(s(&p["state"]), "promoted", "{p}");
    }
    for n in &fleet.nodes {
        let ends = n.restarts().iter().filter(|l| l.ended_ms.is_some()).count();
        assert_eq!(ends, 1, "{} restarted {ends} times", n.name);
    }
    // The whole fleet is now compliant.
    let (out, _) = run(&fleet, "check", Some(&pb), &[]);
    assert_eq!(code(&out), ExitCode::Ok.code(), "{}", show(&out));
}

/// 50 nodes come up and go down in seconds, a check sweeps them all with one prov
/// process each, and teardown leaves no process behind.
#[test]
fn fifty_nodes_up_check_and_down_without_leftovers() {
    let Some(mut fleet) = RealFleet::start(
        "fifty_nodes",
        specs(50, "systemd+compliant=10,legacy+half-compliant=20", 5),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    let (out, reports) = run(&fleet, "check", None, &[]);
    assert_eq!(code(&out), ExitCode::Drift.code(), "{}", show(&out));
    let r = report(&reports);
    assert_eq!(r["summary"]["hosts"], 50);
    assert_eq!(r["summary"]["failed"], 0, "{}", r["summary"]);
    assert_eq!(r["summary"]["compliant"], 10, "{}", r["summary"]);
    assert_eq!(prov_counts(&fleet), check_prov_counts(&fleet));
    let pids: Vec<u32> = fleet.nodes.iter().flat_map(|n| n.pids()).collect();
    assert!(pids.len() >= 100, "sshd + smtpd per node: {}", pids.len());
    // `stop` returns once every process it found is gone: nothing may be left alive.
    fleet.stop();
    let survivors: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(survivors.is_empty(), "survived teardown: {survivors:?}");
}

/// The reload works but the node's real Postfix no longer listens on port 25 (its
/// master.cf.in lost the `smtp inet` service, as a broken template would have it, and
/// the reload's rendering writes that into master.cf): the health gate gives up on what
/// it measured (health_timeout 2s: the run ends, the 60 s command timeout is not what
/// stops it) and the host is not compliant.
#[test]
fn health_gate_failure_is_reported_with_its_checks() {
    let Some(fleet) = RealFleet::start(
        "health_gate",
        specs(2, "legacy+non-compliant=2", 1),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    let bad = &fleet.nodes[1];
    bad.edit_master_cf_in(|t| {
        t.lines()
            .filter(|l| !l.starts_with("smtp      inet"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let pb = playbook(
        fleet.dir.path(),
        &FAST.replace("health_timeout = \"20s\"", "health_timeout = \"2s\""),
    );
    let (out, reports) = run(&fleet, "apply", Some(&pb), &[]);
    assert!(
        [ExitCode::HostFailed.code(), ExitCode::Aborted.code()].contains(&code(&out)),
        "{}",
        show(&out)
    );
    let r = report(&reports);
    let h = host(&r, &bad.name);
    assert_ne!(s(&h["status"]), "compliant", "{h}");
    assert_eq!(
        h["apply"]["restart"]["ok"], true,
        "the restart itself worked: {h}"
    );
    let gate = &h["apply"]["gate"];
    assert_eq!(gate["passed"], false, "{gate}");
    // The policy socket still answers (master.cf keeps the policy entry); the SMTP
    // probe cannot reach port 25.
    assert_eq!(gate_check(h, "policy-socket")["ok"], true, "{gate}");
    let failed = gate_check(h, "smtp");
    assert_eq!(failed["ok"], false, "{failed}");
    assert!(!s(&failed["detail"]).is_empty(), "{failed}");
    assert!(s(&h["apply"]["rollout"]).starts_with("failed"), "{h}");
}

/// Not a test: the peer benchmark's fleet (scripts/bench peer). Starts
/// `CFLEET_BENCH_NODES` real-sshd nodes (non-compliant, legacy, clusters of 3), writes
/// `$CFLEET_BENCH_DIR/ready` (the fleet directory: inventory.toml, known_hosts,
/// id_ed25519) and holds the fleet until `$CFLEET_BENCH_DIR/stop` appears, then stops
/// every process it started.
#[test]
#[ignore = "benchmark harness, run by scripts/bench"]
fn bench_hold_real_fleet() {
    let n: usize = std::env::var("CFLEET_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = PathBuf::from(std::env::var("CFLEET_BENCH_DIR").expect("CFLEET_BENCH_DIR"));
    let latency = std::env::var("CFLEET_BENCH_JVM_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let Some(mut fleet) = RealFleet::start(
        "bench",
        specs(n, &format!("legacy+non-compliant={n}"), 3),
        &RealFleetOptions {
            jvm_latency: Duration::from_millis(latency),
            restart_time: Duration::from_secs(1),
            command_timeout: "5m",
            ..RealFleetOptions::default()
        },
    ) else {
        panic!("the real-sshd fleet needs root and namespaces");
    };
    std::fs::write(dir.join("ready"), fleet.dir.path().display().to_string()).unwrap();
    // Held until the benchmark says stop: an external signal, not a synchronisation
    // stand-in (nothing here waits for the fleet itself).
    while !dir.join("stop").exists() {
        std::thread::sleep(Duration::from_millis(200));
    }
    fleet.stop();
}

/// The spawn user against the real system: the real `getent` and `stat`, a real
/// localconfig.xml (0640 zextras:zextras) in each node's /opt/zextras/conf. A user
/// that does not exist, one that exists and cannot read localconfig.xml, and the fix
/// (`user=zextras`) are told apart. The gather starts no JVM but its one zmprov, and
/// localconfig.xml's passwords never leave the node.
#[test]
fn spawn_users_on_real_nodes_and_the_program_budget() {
    let Some(fleet) = RealFleet::start(
        "spawn_users",
        specs(
            3,
            "legacy+compliant+spawn-user-missing=1,legacy+compliant+zimbra-user-added=1,systemd+compliant=1",
            1,
        ),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    let (out, reports) = run(&fleet, "check", None, &[]);
    assert_eq!(code(&out), ExitCode::Drift.code(), "{}", show(&out));
    let r = report(&reports);
    let finding = |name: &str| -> Option<String> {
        host(&r, name)["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == "PRE-POLICY-SPAWN-USER")
            .map(|f| s(&f["message"]).to_string())
    };
    let missing = finding(&fleet.nodes[0].name).expect("missing user finding");
    assert!(missing.contains("spawn user missing"), "{missing}");
    let no_access = finding(&fleet.nodes[1].name).expect("no-access finding");
    assert!(
        no_access.contains("spawn user cannot read localconfig.xml: `nobody`"),
        "{no_access}"
    );
    assert_eq!(finding(&fleet.nodes[2].name), None);
    assert_eq!(s(&host(&r, &fleet.nodes[2].name)["status"]), "compliant");

    // The program budget: of the programs the nodes emulate (and count), only zmprov
    // (once per host, plus the cluster's domain read) and, on the systemd node alone
    // (the only one with /run/systemd/system), systemctl run, none of the others a JVM;
    // never zmcontrol, zmhostname or the `carbonio` wrapper. (`postconf`, `awk`,
    // `getent` and `stat` are the machine's own on these nodes, not counted here.)
    for (i, n) in fleet.nodes.iter().enumerate() {
        let (nf, _) = n.store.read().unwrap();
        let ran: Vec<&str> = nf.invocations.keys().map(String::as_str).collect();
        let expected: &[&str] = if i == 2 {
            &["systemctl", "zmprov"]
        } else {
            &["zmprov"]
        };
        assert_eq!(ran, expected, "{}: {:?}", n.name, nf.invocations);
        assert_eq!(nf.invocations["zmprov"], 2, "{}", n.name);
    }

    let sentinel = carbonio_sim::node::LOCALCONFIG_SENTINEL;
    assert!(!show(&out).contains(sentinel));
    let latest = reports.join("latest");
    for e in std::fs::read_dir(&latest).unwrap() {
        let path = e.unwrap().path();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        assert!(!text.contains(sentinel), "{}", path.display());
    }
}

/// `apply --fix-spawn-user` on a real node with the stock template (`user=` names a user
/// this machine does not have): the real `cat`/`cp` as root rewrite only that token
/// (backup beside it), configrewrite runs as zextras, and the policy daemon is enabled
/// and the node restarted and gated like any other.
#[test]
fn fix_spawn_user_on_a_real_node() {
    let Some(fleet) = RealFleet::start(
        "fix_spawn_user",
        specs(1, "legacy+non-compliant+spawn-user-missing=1", 1),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    let node = &fleet.nodes[0];
    let template = node.dir.join("conf").join("master.cf.in");
    let stock = std::fs::read_to_string(&template).unwrap();
    let pb = playbook(fleet.dir.path(), FAST);
    let (out, reports) = run(&fleet, "apply", Some(&pb), &["--fix-spawn-user"]);
    assert_eq!(code(&out), ExitCode::Ok.code(), "{}", show(&out));
    let r = report(&reports);
    let h = host(&r, &node.name);
    assert_eq!(s(&h["status"]), "compliant", "{h}");
    let fixed = std::fs::read_to_string(&template).unwrap();
    let missing = support::realfleet::absent_user();
    assert_eq!(
        fixed,
        stock.replace(&format!("\tuser={missing} "), "\tuser=zextras "),
        "only the user= token changed"
    );
    let backups: Vec<_> = std::fs::read_dir(node.dir.join("conf"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("master.cf.in.cfleet-")
        })
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(std::fs::read_to_string(backups[0].path()).unwrap(), stock);
    let purposes: Vec<&str> = h["apply"]["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| s(&c["purpose"]))
        .collect();
    assert!(
        purposes[..3]
            .iter()
            .all(|p| p.starts_with("spawn user fix")),
        "{purposes:?}"
    );
    let ends: Vec<_> = node
        .restarts()
        .into_iter()
        .filter(|l| l.ended_ms.is_some())
        .collect();
    assert_eq!(ends.len(), 1, "one restart");
    assert_eq!(h["apply"]["gate"]["passed"], true, "{h}");
}

/// The running state on real nodes, read with the real `stat`, `ps`, `grep` and `head`:
/// a node whose master.cf is newer than anything its master logged is restart-pending
/// (a test hook moves the real file's mtime, as zmconfigd's rewrite without a reload
/// would), with the real log's evidence; apply restarts it and the proof finds the
/// master's `daemon started` line after the write.
#[test]
fn a_master_cf_newer_than_the_running_master_is_restart_pending() {
    let Some(fleet) = RealFleet::start(
        "running_state",
        specs(2, "systemd+compliant=2", 2),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    let (out, reports) = run(&fleet, "check", None, &[]);
    assert_eq!(code(&out), ExitCode::Ok.code(), "{}", show(&out));
    let r = report(&reports);
    for n in &fleet.nodes {
        let running = &host(&r, &n.name)["running"];
        assert_eq!(s(&running["state"]), "loaded", "{running}");
        assert!(
            s(&running["evidence"]).contains("postfix/master["),
            "the real log line is the evidence: {running}"
        );
    }
    // zmconfigd rewrote master.cf just now (in a later second than the master's last
    // log line, or the two would tie); nobody reloaded.
    let stale = &fleet.nodes[1];
    // The log's last line was written at its mtime (Postfix's postlogd appends).
    assert!(stale.mail_log().contains(": daemon started -- version 3."));
    let logged: i64 = std::fs::metadata(stale.dir.join("varlog").join("carbonio.log"))
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while jiff::Timestamp::now().as_second() <= logged {
        assert!(Instant::now() < deadline, "the clock never passed {logged}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let master_cf = stale.dir.join("conf").join("master.cf");
    std::fs::File::options()
        .write(true)
        .open(&master_cf)
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    let (out, reports) = run(&fleet, "check", None, &[]);
    assert_eq!(code(&out), ExitCode::Drift.code(), "{}", show(&out));
    let r = report(&reports);
    let h = host(&r, &stale.name);
    assert_eq!(s(&h["status"]), "restart-pending", "{h}");
    assert_eq!(s(&h["running"]["state"]), "not-loaded", "{h}");
    assert!(
        h["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == "RUN-NOT-LOADED"),
        "{h}"
    );
    assert_eq!(s(&host(&r, &fleet.nodes[0].name)["status"]), "compliant");

    let pb = playbook(fleet.dir.path(), FAST);
    let (out, reports) = run(&fleet, "apply", Some(&pb), &[]);
    assert_eq!(code(&out), ExitCode::Ok.code(), "{}", show(&out));
    let r = report(&reports);
    let h = host(&r, &stale.name);
    assert_eq!(s(&h["status"]), "compliant", "{h}");
    assert_eq!(s(&h["running"]["state"]), "loaded", "{h}");
    assert_eq!(
        stale
            .restarts()
            .into_iter()
            .filter(|l| l.ended_ms.is_some())
            .count(),
        1,
        "only the stale node restarted"
    );
    assert!(fleet.nodes[0].restarts().is_empty());
}

/// A Zimbra node among real nodes (user `zimbra`, /opt/zimbra, no `zextras` in its
/// /etc/passwd): `flavour` left to `auto`, the real shell's `id -u` picks Zimbra's gather;
/// the version comes from /opt/zimbra/.install_history and the running state from
/// /var/log/zimbra.log; apply changes it as `zimbra` and restarts it with zmcontrol.
#[test]
fn a_zimbra_node_on_real_sshd() {
    let Some(fleet) = RealFleet::start(
        "zimbra_node",
        specs(
            2,
            "zimbra+non-compliant=1,legacy+non-compliant+spawn-user-fixed=1",
            1,
        ),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    let (zm, cb) = (&fleet.nodes[0], &fleet.nodes[1]);
    let (out, reports) = run(&fleet, "check", None, &[]);
    assert_eq!(code(&out), ExitCode::Drift.code(), "{}", show(&out));
    let r = report(&reports);
    let h = host(&r, &zm.name);
    assert_eq!(s(&h["flavour"]), "zimbra", "{h}");
    assert_eq!(
        s(&h["version"]),
        "Zimbra Release 10.0.6.GA.4518.UBUNTU22.64",
        "{h}"
    );
    assert_eq!(s(&h["running"]["state"]), "loaded", "{h}");
    assert!(
        s(&h["running"]["evidence"]).contains("/var/log/zimbra.log"),
        "{h}"
    );
    assert!(
        h["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["id"] != "PRE-POLICY-SPAWN-USER"),
        "Zimbra's stock spawn user exists and owns localconfig.xml: {h}"
    );
    assert_eq!(s(&host(&r, &cb.name)["flavour"]), "carbonio");

    let pb = playbook(fleet.dir.path(), FAST);
    let (out, reports) = run(&fleet, "apply", Some(&pb), &[]);
    assert_eq!(code(&out), ExitCode::Ok.code(), "{}", show(&out));
    let r = report(&reports);
    let h = host(&r, &zm.name);
    assert_eq!(s(&h["status"]), "compliant", "{h}");
    let commands: Vec<&str> = h["apply"]["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| s(&c["command"]))
        .collect();
    assert!(
        commands.iter().all(|c| !c.contains("zextras")),
        "{commands:?}"
    );
    assert!(
        s(&h["apply"]["restart"]["method"]).starts_with("zmcontrol restart"),
        "{h}"
    );
    assert_eq!(zm.restarts().len(), 2, "one restart, start and end lines");
}

/// The default reload on real nodes: configrewrite as zextras, then the real `sudo -n`
/// (the NOPASSWD rule of tests/setup-root.sh) running Postfix's `postfix reload` on the
/// legacy node, and root's `systemctl reload carbonio-postfix.service` on the systemd
/// node. Nothing restarts; the proof reads the master's reload line from the real log;
/// the gate asks the policy service on its real UNIX socket through OpenSSH, which sees
/// a daemon that dies at start where nothing else does.
#[test]
fn apply_reloads_real_nodes_by_default() {
    let Some(fleet) = RealFleet::start(
        "reload",
        specs(
            3,
            "legacy+non-compliant+spawn-user-fixed=1,systemd+non-compliant+spawn-user-fixed=1,legacy+non-compliant+spawn-user-fixed=1",
            1,
        ),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    let pb = playbook(fleet.dir.path(), &FAST.replace("restart = \"full\"\n", ""));
    // The third node's policy daemon dies at start (a test hook on the node, after
    // nothing the gather reads): only the policy socket, asked through real OpenSSH's
    // direct-streamlocal, can see it.
    let broken =
        "Can't locate Net/LDAP.pm in @INC at /opt/zextras/libexec/zmpostfixpolicyd line 31.";
    fleet.nodes[2]
        .store
        .update(|nf, _| nf.state.policyd_broken = Some(broken.into()))
        .unwrap();
    let (out, reports) = run(&fleet, "apply", Some(&pb), &[]);
    assert_eq!(code(&out), ExitCode::HostFailed.code(), "{}", show(&out));
    let r = report(&reports);
    let h = host(&r, &fleet.nodes[2].name);
    let socket = gate_check(h, "policy-socket");
    assert_eq!(socket["ok"], false, "{socket}");
    assert!(s(&socket["detail"]).contains(broken), "{socket}");
    for (n, reload) in fleet.nodes.iter().take(2).zip([
        "sudo -n /opt/zextras/common/sbin/postfix reload",
        "systemctl reload carbonio-postfix.service",
    ]) {
        let h = host(&r, &n.name);
        assert_eq!(s(&h["status"]), "compliant", "{h}");
        assert_eq!(
            s(&h["apply"]["restart"]["method"]),
            format!("reload: /opt/zextras/libexec/configrewrite mta then {reload}"),
            "{h}"
        );
        assert!(n.restarts().is_empty(), "{}: no restart", n.name);
        assert_eq!(s(&h["running"]["state"]), "loaded", "{h}");
        assert!(
            s(&h["running"]["evidence"]).contains(": reload -- version"),
            "{h}"
        );
        let socket = gate_check(h, "policy-socket");
        assert_eq!(socket["ok"], true, "{socket}");
        assert!(s(&socket["detail"]).contains("action=dunno"), "{socket}");
        let log = gate_check(h, "mail-log");
        assert_eq!(log["ok"], true, "{log}");
    }
}

/// When sshd refuses the streamlocal channel (`AllowStreamLocalForwarding no`; a non-root
/// login meets the same wall: `private/` is 0700 postfix), the gate asks the policy socket
/// on the node as root with the real perl and IO::Socket::UNIX: a working daemon passes,
/// one that dies at start fails with its own text.
#[test]
fn the_policy_socket_is_asked_on_the_node_when_ssh_cannot_open_it() {
    let Some(fleet) = RealFleet::start(
        "policy_on_node",
        specs(2, "legacy+non-compliant+spawn-user-fixed=2", 1),
        &RealFleetOptions {
            streamlocal: false,
            ..RealFleetOptions::default()
        },
    ) else {
        return;
    };
    let broken =
        "Can't locate Net/LDAP.pm in @INC at /opt/zextras/libexec/zmpostfixpolicyd line 31.";
    fleet.nodes[1]
        .store
        .update(|nf, _| nf.state.policyd_broken = Some(broken.into()))
        .unwrap();
    let pb = playbook(fleet.dir.path(), &FAST.replace("restart = \"full\"\n", ""));
    let (out, reports) = run(&fleet, "apply", Some(&pb), &[]);
    assert_eq!(code(&out), ExitCode::HostFailed.code(), "{}", show(&out));
    let r = report(&reports);
    let ok = gate_check(host(&r, &fleet.nodes[0].name), "policy-socket");
    assert_eq!(ok["ok"], true, "{ok}");
    assert!(
        s(&ok["detail"]).contains("asked on the node as root")
            && s(&ok["detail"]).contains("action=dunno"),
        "{ok}"
    );
    let bad = gate_check(host(&r, &fleet.nodes[1].name), "policy-socket");
    assert_eq!(bad["ok"], false, "{bad}");
    assert!(s(&bad["detail"]).contains(broken), "{bad}");
}

/// Staging on real nodes (one cluster of three, real OpenSSH): a canary whose policy
/// daemon dies is rolled back and the rollout aborts with nobody else touched, and
/// `--resume` refuses to promote while it still fails. Repaired, a run limited to two of
/// the three MTAs holds the promotion (exit 2) naming the third; `check` shows the staged
/// entries with the command that finishes them; `--resume` gates the third without
/// reloading the two proven ones again, and promotes.
#[test]
fn staging_rollback_promotion_held_and_resume_on_real_nodes() {
    let Some(fleet) = RealFleet::start(
        "staging",
        specs(3, "legacy+non-compliant=3", 3),
        &RealFleetOptions {
            zmconfigd_interval: Some(Duration::from_millis(300)),
            ..RealFleetOptions::default()
        },
    ) else {
        return;
    };
    let pb = playbook(fleet.dir.path(), &FAST.replace("batch = 2", "batch = 1"));
    let names: Vec<&str> = fleet.nodes.iter().map(|n| n.name.as_str()).collect();
    let policyd = |n: usize| {
        let (_, cf) = fleet.nodes[n].store.read().unwrap();
        (
            cf.ldap.global.get("zimbraMtaEnableSmtpdPolicyd").cloned(),
            cf.ldap
                .servers
                .get(&fleet.nodes[n].name)
                .and_then(|s| s.get("zimbraMtaEnableSmtpdPolicyd").cloned())
                .filter(|v| !v.is_empty()),
        )
    };
    let no = Some(vec!["FALSE".to_string()]);
    let broken =
        "Can't locate Net/LDAP.pm in @INC at /opt/zextras/libexec/zmpostfixpolicyd line 31.";
    fleet.nodes[0]
        .store
        .update(|nf, _| nf.state.policyd_broken = Some(broken.into()))
        .unwrap();
    let (out, reports) = run(&fleet, "apply", Some(&pb), &[]);
    assert_eq!(code(&out), ExitCode::Aborted.code(), "{}", show(&out));
    let r = report(&reports);
    let canary = host(&r, names[0]);
    assert_eq!(gate_check(canary, "policy-socket")["ok"], false, "{canary}");
    assert_eq!(canary["apply"]["rollback"]["ok"], true, "{canary}");
    assert_eq!(s(&r["promotions"][0]["state"]), "not-promoted", "{r}");
    for (n, name) in names.iter().enumerate() {
        assert_eq!(policyd(n), (no.clone(), None), "{name}");
    }
    assert_eq!(
        fleet.nodes[0]
            .restarts()
            .iter()
            .filter(|l| l.ended_ms.is_some())
            .count(),
        2
    );
    assert!(fleet.nodes[1].restarts().is_empty() && fleet.nodes[2].restarts().is_empty());
    let (out, _) = run(&fleet, "apply", Some(&pb), &["--resume"]);
    assert_eq!(code(&out), ExitCode::Aborted.code(), "{}", show(&out));
    assert_eq!(policyd(1), (no.clone(), None), "still not promoted");

    fleet.nodes[0]
        .store
        .update(|nf, _| nf.state.policyd_broken = None)
        .unwrap();
    let limit = format!("{},{}", names[0], names[1]);
    let (out, reports) = run(&fleet, "apply", Some(&pb), &["--limit", &limit]);
    assert_eq!(code(&out), ExitCode::Drift.code(), "{}", show(&out));
    let r = report(&reports);
    let p = &r["promotions"][0];
    assert_eq!(s(&p["state"]), "promotion-held", "{p}");
    assert_eq!(s(&p["held_by"][0]["server"]), names[2], "{p}");
    for (n, name) in names.iter().enumerate().take(2) {
        assert_eq!(
            policyd(n),
            (no.clone(), Some(vec!["TRUE".to_string()])),
            "{name}"
        );
    }
    assert_eq!(policyd(2), (no.clone(), None));
    // Staged means staged: through several polls of every node's zmconfigd, the two
    // staged MTAs' real Postfix runs the check and the third's does not.
    let polls = |n: usize| fleet.nodes[n].store.read().unwrap().0.zmconfigd_polls;
    let since: Vec<u64> = (0..3).map(polls).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (0..3).any(|n| polls(n) < since[n] + 3) {
        assert!(Instant::now() < deadline, "zmconfigd stopped polling");
        std::thread::sleep(Duration::from_millis(50));
    }
    for (n, name) in names.iter().enumerate() {
        let main_cf =
            std::fs::read_to_string(fleet.nodes[n].dir.join("conf").join("main.cf")).unwrap();
        assert_eq!(
            main_cf.contains("check_policy_service unix:private/policy"),
            n < 2,
            "{name}: {main_cf}"
        );
    }
    let (out, reports) = run(&fleet, "check", Some(&pb), &[]);
    assert_eq!(code(&out), ExitCode::Drift.code(), "{}", show(&out));
    let r = report(&reports);
    for n in &names[..2] {
        let f = host(&r, n)["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == "STAGED")
            .cloned()
            .unwrap_or_else(|| panic!("{n}: no STAGED finding"));
        assert!(
            s(&f["hint"]).contains("carbonio-fleet apply --resume"),
            "{f}"
        );
    }
    let restarts = |n: usize| {
        fleet.nodes[n]
            .restarts()
            .iter()
            .filter(|l| l.ended_ms.is_some())
            .count()
    };
    let before: Vec<usize> = (0..3).map(restarts).collect();
    let (out, reports) = run(&fleet, "apply", Some(&pb), &["--resume"]);
    assert_eq!(code(&out), ExitCode::Ok.code(), "{}", show(&out));
    let r = report(&reports);
    assert_eq!(s(&r["promotions"][0]["state"]), "promoted", "{r}");
    assert_eq!(
        (0..3).map(restarts).collect::<Vec<_>>(),
        [before[0], before[1], before[2] + 1]
    );
    for (n, name) in names.iter().enumerate() {
        assert_eq!(policyd(n), (Some(vec!["TRUE".to_string()]), None), "{name}");
        assert_eq!(s(&host(&r, name)["status"]), "compliant");
    }
}

/// One SMTP session on `stream`: EHLO, then for each recipient `MAIL FROM:<>` (no DNS in
/// a node: a null sender needs no domain lookup), `RCPT TO`, `RSET`; QUIT. Returns each
/// RCPT reply, whole. Never DATA.
fn rcpt_replies(stream: std::net::TcpStream, rcpts: &[&str]) -> Vec<String> {
    use std::io::{BufRead, BufReader, Write};
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut reply = || {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            assert!(r.read_line(&mut line).unwrap() > 0, "EOF after {all:?}");
            all.push_str(&line);
            // The last line of a reply has a space after its code (postscreen's
            // greeting starts `220-`).
            if line.as_bytes().get(3) != Some(&b'-') {
                return all.trim_end().to_string();
            }
        }
    };
    assert!(reply().starts_with("220"));
    let mut say = |cmd: &str| w.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
    say("EHLO carbonio-fleet.test");
    assert!(reply().starts_with("250"));
    let mut out = Vec::new();
    for rcpt in rcpts {
        say("MAIL FROM:<>");
        assert!(reply().starts_with("250"));
        say(&format!("RCPT TO:<{rcpt}>"));
        out.push(reply());
        say("RSET");
        reply();
    }
    say("QUIT");
    out
}

/// Each node answers SMTP from its own real Postfix (Debian's), configured as
/// Carbonio's zmconfigd renders it. From outside mynetworks (the node's relay): a known
/// recipient 250, an unknown one in the local domain 550 from the virtual mailbox table,
/// an unknown one in the alias domain (a catch-all makes it "known" to Postfix) 5.1.1
/// from the policy daemon that Postfix spawned. From inside (127.0.0.1, where the tool's
/// SSH channel connects from) the alias address is accepted: `permit_mynetworks` comes
/// before the policy check (docs/carbonio.md §2), `reject_unlisted_recipient` still applies.
/// `postconf` on the node prints what the files say.
#[test]
fn real_postfix_answers_from_inside_and_outside_mynetworks() {
    let Some(fleet) = RealFleet::start(
        "real_postfix_answers",
        specs(1, "legacy+compliant=1", 1),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    let n = &fleet.nodes[0];
    let domain = format!("{}.example", n.cluster);
    let known = format!("user1@{domain}");
    let unknown = format!("nobody@{domain}");
    let alias = format!("nobody@{}-alias.example", n.cluster);
    let outside = rcpt_replies(n.smtp_outside(), &[&known, &unknown, &alias]);
    assert!(outside[0].starts_with("250 2.1.5"), "{outside:?}");
    assert!(
        outside[1].starts_with("550 5.1.1")
            && outside[1].contains("User unknown in virtual mailbox table"),
        "{outside:?}"
    );
    assert!(
        outside[2].starts_with("554 5.1.1") && outside[2].contains("Mailbox unavailable"),
        "{outside:?}"
    );
    let inside = rcpt_replies(n.smtp_inside(), &[&known, &unknown, &alias]);
    assert!(inside[0].starts_with("250 2.1.5"), "{inside:?}");
    assert!(inside[1].starts_with("550 5.1.1"), "{inside:?}");
    assert!(inside[2].starts_with("250 2.1.5"), "{inside:?}");
    let log = n.mail_log();
    assert!(log.contains("connect from unknown[127.0.0.2]"), "{log}");
    assert!(log.contains("connect from localhost[127.0.0.1]"), "{log}");

    // The tool's check reads the same Postfix: the policy entry as `postconf -M` joins
    // it, the restrictions in the order of Carbonio's template.
    let (out, reports) = run(&fleet, "check", None, &[]);
    assert_eq!(code(&out), ExitCode::Ok.code(), "{}", show(&out));
    let r = report(&reports);
    assert_eq!(s(&host(&r, &n.name)["status"]), "compliant", "{r}");
    let main_cf = std::fs::read_to_string(n.dir.join("conf").join("main.cf")).unwrap();
    assert!(
        main_cf.contains(
            "smtpd_recipient_restrictions = reject_non_fqdn_recipient, permit_sasl_authenticated, permit_mynetworks, reject_unlisted_recipient,"
        ) && main_cf.contains("check_policy_service unix:private/policy, permit"),
        "{main_cf}"
    );
}

/// The policy daemon breaks after the gather (its localconfig.xml becomes unreadable the
/// moment the tool stages the canary's server entry: a test hook): the canary's real
/// Postfix answers a known recipient from outside mynetworks with its own `451 4.3.5`
/// (smtpd_policy_service_default_action), the gate sees it through the SMTP probe and
/// the policy socket (the daemon's own error text), and rolls the node back; the rollout
/// stops there. Postfix's log says what happened, and no probe ever sent DATA.
#[test]
fn a_policy_daemon_that_breaks_after_the_gather_is_caught_and_rolled_back() {
    let Some(fleet) = RealFleet::start(
        "policyd_breaks",
        specs(2, "legacy+non-compliant=2", 2),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    let canary = &fleet.nodes[0];
    let domain = format!("{}.example", canary.cluster);
    let rollout = |extra: &str| {
        playbook(
            fleet.dir.path(),
            &format!(
                "batch = 1\ncanary = 1\npause = \"0s\"\nmax_failures = 1\nhealth_timeout = \"30s\"\nprobe_from = \"orchestrator\"\nknown_rcpt = \"user1@{domain}\"\n{extra}"
            ),
        )
    };
    let localconfig = canary.dir.join("zconf").join("localconfig.xml");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&localconfig), 0o640);

    // The gate re-reads the spawn evidence first (the loaded entry's user and what it
    // can read, as spawn gives it): the node's real file now says 0200.
    canary.break_policyd_on_stage(StageFault::LocalconfigUnreadable);
    let (out, reports) = run(&fleet, "apply", Some(&rollout("")), &[]);
    assert_eq!(code(&out), ExitCode::Aborted.code(), "{}", show(&out));
    assert_eq!(
        mode(&localconfig),
        0o200,
        "the hook broke it after the gather"
    );
    let r = report(&reports);
    let h = host(&r, &canary.name);
    let policy = gate_check(h, "policy");
    assert_eq!(policy["ok"], false, "{h}");
    assert!(
        s(&policy["detail"]).contains("cannot read localconfig.xml"),
        "{policy}"
    );
    assert_eq!(h["apply"]["rollback"]["ok"], true, "{h}");
    assert_eq!(s(&r["promotions"][0]["state"]), "not-promoted", "{r}");

    // Repaired, and broken again in a way no file shows (the daemon dies at start, a
    // Perl module gone after an upgrade), with the socket check off: the SMTP probe from
    // outside mynetworks gets real Postfix's own 451 for a known recipient.
    std::fs::set_permissions(&localconfig, std::fs::Permissions::from_mode(0o640)).unwrap();
    canary.break_policyd_on_stage(StageFault::PolicydDies(
        "Can't locate Net/LDAPapi.pm in @INC at /opt/zextras/libexec/zmpostfixpolicyd line 19."
            .into(),
    ));
    let (out, reports) = run(
        &fleet,
        "apply",
        Some(&rollout("policy_socket = false")),
        &[],
    );
    assert_eq!(code(&out), ExitCode::Aborted.code(), "{}", show(&out));
    let r = report(&reports);
    let h = host(&r, &canary.name);
    assert!(
        s(&gate_check(h, "vantage")["detail"]).contains("outside mynetworks"),
        "{h}"
    );
    let known = gate_check(h, "smtp-known");
    assert_eq!(known["ok"], false, "{h}");
    assert!(s(&known["detail"]).contains("451 4.3.5"), "{known}");
    assert_eq!(h["apply"]["rollback"]["ok"], true, "{h}");
    // Rolled back: the staged server value is gone and Postfix runs without the check.
    let (_, cf) = canary.store.read().unwrap();
    assert!(
        cf.ldap
            .servers
            .get(&canary.name)
            .and_then(|e| e.get("zimbraMtaEnableSmtpdPolicyd"))
            .is_none_or(Vec::is_empty),
        "{:?}",
        cf.ldap.servers
    );
    let main_cf = std::fs::read_to_string(canary.dir.join("conf").join("main.cf")).unwrap();
    assert!(!main_cf.contains("check_policy_service"), "{main_cf}");
    // What real Postfix logged: its own 451 to the outside client, and why.
    let log = canary.mail_log();
    assert!(
        log.contains(&format!(
            "NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 451 4.3.5 <user1@{domain}>"
        )),
        "{log}"
    );
    assert!(
        log.contains("private/policy"),
        "smtpd logged the policy failure: {log}"
    );
    // The other MTA was never touched.
    assert!(
        fleet.nodes[1]
            .mail_log()
            .lines()
            .all(|l| !l.contains("reload"))
    );
    // RCPT only: no session of any probe reached DATA (smtpd's summary counts it).
    for n in &fleet.nodes {
        let log = n.mail_log();
        let sessions: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(": disconnect from "))
            .collect();
        assert!(!sessions.is_empty() || n.name != canary.name, "{log}");
        assert!(
            sessions.iter().all(|l| !l.contains(" data=")),
            "{sessions:?}"
        );
    }
}
