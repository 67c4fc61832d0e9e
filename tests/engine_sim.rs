//! check, plan, apply and hostkeys scan — the real binary against the simulated fleet
//! over real SSH (issues #5 and #6): reports match the seeded state per control, check
//! changes nothing, one `zmprov` per host, staggered restarts within the rollout
//! limits, canary abort, a broken policy service failing its gate, Ctrl-C and resume.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

#[path = "support/child.rs"]
mod child;
#[path = "support/wait.rs"]
mod wait;

use carbonio_fleet::exit::ExitCode;
use carbonio_fleet::report::model::{HostStatus, Report, Verdict};
use carbonio_sim::node::Platform;
use carbonio_sim::{
    Behaviour, Fleet, FleetSpec, NodeProfile, NodeRole, NodeSpec, Posture, SimError,
    max_concurrent, max_concurrent_per_cluster,
};

use child::StderrTap;
use wait::wait_until;

/// An MTA of `platform` in `posture`, otherwise the simulator's default node, with the
/// operator's spawn-user fix in place (`user=zextras`) unless a test asks for the stock
/// entry (`spawn_user_missing`): most tests here are about the rollout, not the spawn
/// user, and a stock node's policy controls are blocked without `--fix-spawn-user`.
fn mta(platform: Platform, posture: Posture) -> NodeProfile {
    NodeProfile {
        platform,
        posture,
        spawn_user_fixed: true,
        ..NodeProfile::default()
    }
}

/// A stock Zimbra node (legacy: Zimbra has no systemd units), non-compliant.
fn zimbra() -> NodeProfile {
    NodeProfile {
        flavour: carbonio_sim::flavour::Flavour::Zimbra,
        ..NodeProfile::default()
    }
}

struct Sim {
    fleet: Fleet,
    dir: tempfile::TempDir,
}

impl Sim {
    async fn start(nodes: Vec<(&str, &str, NodeProfile)>, restart: Duration) -> Sim {
        Sim::start_with(nodes, restart, None).await
    }

    /// With zmconfigd polling every `zmconfigd` on each MTA.
    async fn start_with(
        nodes: Vec<(&str, &str, NodeProfile)>,
        restart: Duration,
        zmconfigd: Option<Duration>,
    ) -> Sim {
        Sim::start_spec(nodes, restart, |s| s.zmconfigd_interval = zmconfigd).await
    }

    /// With the fleet spec adjusted by `tweak`.
    async fn start_spec(
        nodes: Vec<(&str, &str, NodeProfile)>,
        restart: Duration,
        tweak: impl Fn(&mut FleetSpec),
    ) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = FleetSpec {
            nodes: nodes
                .into_iter()
                .map(|(n, c, p)| NodeSpec {
                    name: n.into(),
                    cluster: c.into(),
                    profile: p,
                    groups: Vec::new(),
                })
                .collect(),
            restart_time: restart,
            ..FleetSpec::default()
        };
        tweak(&mut spec);
        for _ in 0..30 {
            let mut s = spec.clone();
            s.port_base = rand::random_range(20000u16..60000);
            match Fleet::start(s, dir.path()).await {
                Ok(fleet) => return Sim { fleet, dir },
                Err(SimError::Bind { .. }) => continue,
                Err(e) => panic!("fleet failed to start: {e}"),
            }
        }
        panic!("no free port range");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The shipped playbook with a different `[rollout]`.
    fn playbook(&self, rollout: &str) -> PathBuf {
        let text = carbonio_fleet::playbook::DEFAULT_PLAYBOOK;
        let base = &text[..text.find("[rollout]").unwrap()];
        let p = self.path("playbook.toml");
        std::fs::write(&p, format!("{base}[rollout]\n{rollout}\n")).unwrap();
        p
    }

    fn reports(&self) -> PathBuf {
        self.path("reports")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_carbonio-fleet"));
        c.args(args)
            .arg("-i")
            .arg(self.fleet.inventory_path())
            .arg("--report-dir")
            .arg(self.reports())
            .args(["--progress", "never"])
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null());
        c
    }

    /// Runs the binary off the async runtime (the fleet keeps serving meanwhile).
    async fn run(&self, args: &[&str]) -> Output {
        let mut c = self.cmd(args);
        tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap()
    }

    fn latest(&self) -> Report {
        carbonio_fleet::report::store::read_report(&self.reports().join("latest/report.json"))
            .unwrap()
    }
}

/// The gate check `name` of an apply record.
fn gate_check<'a>(
    ap: &'a carbonio_fleet::report::model::HostApply,
    name: &str,
) -> &'a carbonio_fleet::report::model::GateCheck {
    ap.gate
        .as_ref()
        .expect("gated")
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} check: {:?}", ap.gate))
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn explain(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn verdicts(r: &Report, host: &str) -> BTreeMap<String, Verdict> {
    r.hosts
        .iter()
        .find(|h| h.name == host)
        .unwrap()
        .controls
        .iter()
        .map(|c| (c.id.clone(), c.verdict))
        .collect()
}

/// The values set on a node's own server entry in its cluster's LDAP.
fn own_values(sim: &Sim, node: &str) -> BTreeMap<String, Vec<String>> {
    let h = sim.fleet.node(node).unwrap();
    let n = h.node();
    let server = n.hostname();
    let own = n.cluster.ldap().servers.get(&server).cloned();
    own.unwrap_or_default()
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// A global config value in a node's cluster.
fn global_value(sim: &Sim, node: &str, attr: &str) -> Vec<String> {
    let h = sim.fleet.node(node).unwrap();
    let v = h.node().cluster.ldap().global.get(attr).cloned();
    v.unwrap_or_default()
}

fn status(r: &Report, host: &str) -> HostStatus {
    r.hosts.iter().find(|h| h.name == host).unwrap().status
}

/// Every node's state, its mail log aside: smtpd logs each probe's connection, as real
/// Postfix does, and a log line is not a change.
fn state_fingerprint(f: &Fleet) -> Vec<String> {
    f.nodes()
        .iter()
        .map(|n| {
            let mut s = n.snapshot();
            let log = s.state.flavour.mail_log();
            s.state.files.remove(log);
            format!(
                "{:?}|{:?}|{:?}|{:?}",
                s.state, s.global, s.server, s.services
            )
        })
        .collect()
}

/// Rollout tests measure restart overlaps: a full restart keeps a node down for its
/// restart time (a reload has no down time to overlap).
const QUICK: &str = "batch = 2\nper_cluster = 1\ncanary = 1\npause = \"0s\"\nmax_failures = 0\nhealth_timeout = \"20s\"\nrestart = \"full\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_the_seeded_state_and_changes_nothing() {
    use Platform::*;
    use Posture::*;
    let mut spawnless = mta(Systemd, NonCompliant);
    spawnless.spawn_user_missing = true;
    let mut zimbra_added = mta(Legacy, NonCompliant);
    zimbra_added.zimbra_user_added = true;
    let mut down = mta(Legacy, Compliant);
    down.behaviour = Behaviour::Unreachable;
    let mut mbx = mta(Legacy, Compliant);
    mbx.role = NodeRole::Mailbox;
    let sim = Sim::start(
        vec![
            ("nc1.a", "a", mta(Legacy, NonCompliant)),
            ("nc2.a", "a", mta(Systemd, NonCompliant)),
            ("half.b", "b", mta(Systemd, HalfCompliant)),
            ("ok.c", "c", mta(Legacy, Compliant)),
            ("mbx.c", "c", mbx),
            ("over.d", "d", mta(Legacy, ServerOverride)),
            ("pend.e", "e", mta(Systemd, RestartPending)),
            ("spawn.f", "f", spawnless),
            ("down.g", "g", down),
            ("zadd.h", "h", zimbra_added),
        ],
        Duration::from_millis(100),
    )
    .await;
    let before = state_fingerprint(&sim.fleet);
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::HostFailed.code(), "{}", explain(&o));
    assert_eq!(
        state_fingerprint(&sim.fleet),
        before,
        "check changed a node"
    );

    let r = sim.latest();
    use Verdict as V;
    let all = |v| {
        BTreeMap::from([
            ("BS-01".into(), v),
            ("BS-02".into(), v),
            ("BS-03".into(), v),
            ("BS-04".into(), v),
        ])
    };
    assert_eq!(verdicts(&r, "nc1.a"), all(V::NonCompliant));
    assert_eq!(verdicts(&r, "nc2.a"), all(V::NonCompliant));
    assert_eq!(
        verdicts(&r, "half.b"),
        BTreeMap::from([
            ("BS-01".into(), V::NonCompliant),
            ("BS-02".into(), V::Compliant),
            ("BS-03".into(), V::Compliant),
            ("BS-04".into(), V::NonCompliant)
        ])
    );
    assert_eq!(verdicts(&r, "ok.c"), all(V::Compliant));
    assert_eq!(verdicts(&r, "mbx.c"), all(V::NotApplicable));
    assert_eq!(verdicts(&r, "over.d")["BS-02"], V::Masked);
    assert_eq!(verdicts(&r, "pend.e"), all(V::Compliant));
    for (host, want) in [
        ("nc1.a", HostStatus::Drift),
        ("half.b", HostStatus::Drift),
        ("ok.c", HostStatus::Compliant),
        ("mbx.c", HostStatus::Compliant),
        ("over.d", HostStatus::Drift),
        ("pend.e", HostStatus::RestartPending),
        ("spawn.f", HostStatus::Drift),
        ("down.g", HostStatus::Failed),
        ("zadd.h", HostStatus::Drift),
    ] {
        assert_eq!(status(&r, host), want, "{host}");
    }
    let down = r.hosts.iter().find(|h| h.name == "down.g").unwrap();
    assert_eq!(down.error.as_ref().unwrap().kind.as_str(), "unreachable");
    let spawn_finding = |host: &str| {
        r.hosts
            .iter()
            .find(|h| h.name == host)
            .unwrap()
            .findings
            .iter()
            .find(|f| f.id == "PRE-POLICY-SPAWN-USER")
            .unwrap_or_else(|| panic!("{host}: no spawn-user finding"))
    };
    let f = spawn_finding("spawn.f");
    assert!(f.blocking);
    assert!(f.message.contains("451 4.3.5"), "{}", f.message);
    assert!(
        f.message.contains("spawn user missing: `zimbra`"),
        "{}",
        f.message
    );
    // The two-line template entry, read whole.
    assert!(
        f.evidence
            .contains("policy unix - n n - 0 spawn user=zimbra argv=/usr/bin/perl"),
        "{}",
        f.evidence
    );
    assert!(f.hint.contains("user=zextras"), "{}", f.hint);
    assert!(
        !f.hint.contains("useradd"),
        "never tell to create zimbra: {}",
        f.hint
    );
    // A hand-made `zimbra` in group zextras: it exists, and still cannot read
    // localconfig.xml with the one group spawn gives it.
    let f = spawn_finding("zadd.h");
    assert!(f.blocking);
    assert!(
        f.message
            .contains("spawn user cannot read localconfig.xml: `zimbra` runs as uid 998 with the one group 998"),
        "{}",
        f.message
    );
    // localconfig.xml's passwords never leave the node.
    let sentinel = carbonio_sim::node::LOCALCONFIG_SENTINEL;
    assert!(!explain(&o).contains(sentinel));
    for e in std::fs::read_dir(sim.reports().join("latest")).unwrap() {
        let path = e.unwrap().path();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        assert!(
            !text.contains(sentinel),
            "{} holds a localconfig password",
            path.display()
        );
    }
    let ok = r.hosts.iter().find(|h| h.name == "ok.c").unwrap();
    assert_eq!(
        ok.platform,
        Some(carbonio_fleet::carbonio::platform::Platform::Legacy)
    );
    let smtp = ok.probes.iter().find(|p| p.id == "SMTP-01").unwrap();
    assert!(smtp.actual.starts_with("550 5.1.1"), "{}", smtp.actual);
    // One JVM per reachable host for the whole gather, plus one per cluster for the
    // domains' attributes, on the cluster's first reachable node.
    let mut clusters_read = std::collections::HashSet::new();
    for n in sim.fleet.nodes() {
        let reachable = n.name() != "down.g";
        let reads_domains = reachable && clusters_read.insert(n.cluster().to_string());
        let want = u64::from(reachable) + u64::from(reads_domains);
        assert_eq!(n.prov_invocations(), want, "{}", n.name());
    }
    assert!(!r.domains.is_empty());
    // The rest of the report set is there too.
    for f in ["report.json", "junit.xml", "report.html", "metrics.prom"] {
        assert!(sim.reports().join("latest").join(f).is_file(), "{f}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_for_compliant_and_drifting_fleets() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![
            ("a1", "a", mta(Legacy, Compliant)),
            ("b1", "b", mta(Systemd, HalfCompliant)),
        ],
        Duration::from_millis(100),
    )
    .await;
    let o = sim.run(&["check", "--limit", "a1"]).await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let o = sim.run(&["check", "--limit", "nothing-like-this"]).await;
    assert_eq!(code(&o), ExitCode::Usage.code(), "{}", explain(&o));
    // --split-by group: a report set per group (here the platform groups the simulator
    // puts its hosts in), each with its own hosts and exit code, beside the fleet's.
    let o = sim.run(&["check", "--split-by", "group"]).await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let group = |g: &str| {
        let dir = sim.reports().join("latest/groups").join(g);
        assert!(dir.join("report.html").is_file(), "{g}: full report set");
        carbonio_fleet::report::store::read_report(&dir.join("report.json")).unwrap()
    };
    let legacy = group("legacy");
    assert_eq!(
        legacy
            .hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>(),
        ["a1"]
    );
    assert_eq!(
        (legacy.exit_code, legacy.summary.hosts),
        (ExitCode::Ok.code(), 1)
    );
    let systemd = group("systemd");
    assert_eq!(
        systemd
            .hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>(),
        ["b1"]
    );
    assert_eq!(
        (systemd.exit_code, systemd.summary.drift),
        (ExitCode::Drift.code(), 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_prints_the_exact_commands_and_changes_nothing() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![
            ("a1", "a", mta(Legacy, NonCompliant)),
            ("a2", "a", mta(Systemd, NonCompliant)),
        ],
        Duration::from_millis(100),
    )
    .await;
    let before = state_fingerprint(&sim.fleet);
    let o = sim.run(&["plan"]).await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    // Per cluster: the global changes as current → desired, a multi-valued one as the
    // value it gains, and the one promotion command (temporary entries removed in it).
    assert!(out.contains("cluster a  (MTAs in LDAP: a1, a2)"), "{out}");
    assert!(
        out.contains("    ~ zimbraMtaEnableSmtpdPolicyd (BS-01): FALSE → TRUE\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "    ~ zimbraMtaRestriction (BS-04)\n        + check_policy_service unix:private/policy\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "    # promote cluster a: global config, then the temporary server entries removed"
        ),
        "{out}"
    );
    assert!(
        out.contains(r#"mcf +zimbraMtaRestriction "check_policy_service unix:private/policy""#),
        "{out}"
    );
    assert!(out.contains(r#"ms a2 zimbraMtaRestriction """#), "{out}");
    // Per host: its batch, what is staged on its own entry (the FULL desired list), and
    // the exact stage and reload commands, become-wrapped as apply sends them.
    assert!(
        out.contains("  host a1  (legacy, reload in batch 1 (canary), as zextras)"),
        "{out}"
    );
    assert!(
        out.contains("  host a2  (systemd, reload in batch 2, as zextras)"),
        "{out}"
    );
    assert!(
        out.contains("      ~ zimbraMtaRestriction (BS-04, temporary, removed at promotion)\n          + check_policy_service unix:private/policy\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "      # stage batch 2 of cluster a on server entries a2\n      $ su - zextras -c "
        ),
        "{out}"
    );
    assert!(
        out.contains("ms a2 zimbraMtaRestriction reject_invalid_helo_hostname zimbraMtaRestriction reject_non_fqdn_sender zimbraMtaRestriction"),
        "{out}"
    );
    assert!(
        out.contains("      # batch 2: reload Postfix, then the health gate\n      $ systemctl reload carbonio-postfix.service 2>&1\n"),
        "{out}"
    );
    assert!(
        out.ends_with("\nPlan: 4 attributes to change on 1 cluster, 2 hosts to reload in 2 batches (canary first), 0 blocked, 0 already compliant.\n"),
        "{out}"
    );
    // Into a pipe: no colour.
    assert!(!out.contains('\x1b'), "{out}");
    assert_eq!(state_fingerprint(&sim.fleet), before, "plan changed a node");
}

/// The quick rollout of the plan-file tests: one node per batch, no pause.
const ONE_BY_ONE: &str =
    "batch = 1\ncanary = 1\npause = \"0s\"\nmax_failures = 0\nhealth_timeout = \"20s\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_out_then_apply_plan_makes_the_fleet_compliant() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![
            ("a1", "a", mta(Legacy, NonCompliant)),
            ("a2", "a", mta(Systemd, NonCompliant)),
            ("b1", "b", mta(Legacy, Compliant)),
        ],
        Duration::from_millis(100),
    )
    .await;
    let pb = sim.playbook(ONE_BY_ONE);
    let pb = pb.to_str().unwrap();
    let file = sim.path("acme.plan.json");
    let before = state_fingerprint(&sim.fleet);
    let o = sim
        .run(&["plan", "-p", pb, "--out", file.to_str().unwrap()])
        .await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    assert_eq!(state_fingerprint(&sim.fleet), before, "plan changed a node");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(&format!("plan written to {}", file.display())),
        "{stdout}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(json["plan_version"], 1);
    assert_eq!(json["hosts"], serde_json::json!(["a1", "a2", "b1"]));
    assert_eq!(
        json["basis"]["a2"]["attrs"]["zimbraMtaEnableSmtpdPolicyd"]["global"],
        serde_json::json!(["FALSE"])
    );
    assert_eq!(json["batches"], serde_json::json!([["a1"], ["a2"]]));

    // No --yes and no terminal: the reviewed plan is the confirmation.
    let b1_before = state_fingerprint(&sim.fleet)[2].clone();
    let o = sim
        .run(&["apply", "-p", pb, "--plan", file.to_str().unwrap()])
        .await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("the fleet is as planned in"), "{stderr}");
    let r = sim.latest();
    assert_eq!(r.command, "apply");
    for h in &r.hosts {
        assert_eq!(h.status, HostStatus::Compliant, "{}", h.name);
    }
    assert_eq!(r.promotions.len(), 1, "{:?}", r.promotions);
    assert_eq!(r.promotions[0].state, "promoted");
    assert_eq!(
        global_value(&sim, "a1", "zimbraMtaEnableSmtpdPolicyd"),
        ["TRUE"]
    );
    // b1 was compliant: nothing planned for it, nothing done to it.
    assert_eq!(state_fingerprint(&sim.fleet)[2], b1_before);
    // A fresh check agrees (its exit code also weighs the sim's domain posture).
    sim.run(&["check", "-p", pb]).await;
    let r = sim.latest();
    assert_eq!(r.command, "check");
    for h in &r.hosts {
        assert_eq!(h.status, HostStatus::Compliant, "{}", h.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_plan_refuses_when_the_fleet_changed_since_and_changes_nothing() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![
            ("a1", "a", mta(Legacy, NonCompliant)),
            ("a2", "a", mta(Systemd, NonCompliant)),
            ("b1", "b", mta(Legacy, NonCompliant)),
        ],
        Duration::from_millis(100),
    )
    .await;
    let pb = sim.playbook(ONE_BY_ONE);
    let pb = pb.to_str().unwrap();
    // A bare file name: written in the working directory.
    let o = {
        let mut c = sim.cmd(&["plan", "-p", pb, "--out", "plan.json"]);
        c.current_dir(sim.dir.path());
        tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap()
    };
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let file = sim.path("plan.json");
    let file = file.to_str().unwrap();
    // Someone adds an RBL to a2's own entry after the review.
    let rbl = "reject_rbl_client zen.spamhaus.org";
    {
        let h = sim.fleet.node("a2").unwrap();
        let mut ldap = h.node().cluster.ldap();
        ldap.servers
            .get_mut("a2")
            .unwrap()
            .insert("zimbraMtaRestriction".into(), vec![rbl.into()]);
    }
    let before = state_fingerprint(&sim.fleet);
    let o = sim.run(&["apply", "-p", pb, "--plan", file, "--yes"]).await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!(
            "  a2: zimbraMtaRestriction (server entry) was (not set on the server) in the plan, now {rbl}\n"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("refused, nothing was changed on any node"),
        "{stderr}"
    );
    // Only a2 differs: the other hosts are not named.
    assert!(
        !stderr.contains("  a1: ") && !stderr.contains("  b1: "),
        "{stderr}"
    );
    assert_eq!(
        state_fingerprint(&sim.fleet),
        before,
        "a refused apply changed a node"
    );
    assert!(
        sim.fleet.restart_log().is_empty(),
        "a refused apply restarted a node"
    );
    assert!(
        !sim.reports().join("latest").exists(),
        "a refused apply wrote no run"
    );

    // Another playbook than the plan's: refused before any connection.
    let other = sim.path("edited.toml");
    let text = std::fs::read_to_string(pb).unwrap();
    std::fs::write(&other, format!("{text}\n# edited after the review\n")).unwrap();
    let reads: u64 = sim.fleet.nodes().iter().map(|h| h.prov_invocations()).sum();
    let o = sim
        .run(&["apply", "-p", other.to_str().unwrap(), "--plan", file])
        .await;
    assert_eq!(code(&o), ExitCode::Usage.code(), "{}", explain(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("is not the plan's") && stderr.contains("nothing was contacted"),
        "{stderr}"
    );
    let after: u64 = sim.fleet.nodes().iter().map(|h| h.prov_invocations()).sum();
    assert_eq!(after, reads, "a refused apply contacted the fleet");
    // A different --limit than the plan's is an error, not a silent narrowing.
    let o = sim
        .run(&["apply", "-p", pb, "--plan", file, "--limit", "a1"])
        .await;
    assert_eq!(code(&o), ExitCode::Usage.code(), "{}", explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--limit a1 (the plan was made with none)"),
        "{}",
        explain(&o)
    );
    assert_eq!(state_fingerprint(&sim.fleet), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_remediates_within_rollout_limits_and_a_rerun_changes_nothing() {
    use Platform::*;
    use Posture::*;
    // d1 first: the canary, whose cluster has nothing to promote (LDAP is right, the
    // running MTA is not), so its proof does not wait for the rest of the rollout.
    let sim = Sim::start(
        vec![
            ("d1", "d", mta(Systemd, RestartPending)),
            ("a1", "a", mta(Legacy, NonCompliant)),
            ("a2", "a", mta(Systemd, NonCompliant)),
            ("a3", "a", mta(Legacy, NonCompliant)),
            ("b1", "b", mta(Systemd, HalfCompliant)),
            ("b2", "b", mta(Legacy, HalfCompliant)),
            ("c1", "c", mta(Legacy, ServerOverride)),
            ("e1", "e", mta(Legacy, Compliant)),
        ],
        Duration::from_millis(300),
    )
    .await;
    let pb = sim.playbook(QUICK);
    let pb = pb.to_str().unwrap();
    // Every restart is held down until the test releases it. The canary (the only node
    // restarting at first) is released alone; the others only once the canary has been
    // re-read (its proof runs one zmprov): a proof that waited for the end of the
    // rollout would never come, and the wait below would fail.
    let mut holds: BTreeMap<String, _> = sim
        .fleet
        .nodes()
        .iter()
        .map(|h| (h.name().to_string(), h.node().hold_restarts()))
        .collect();
    // c1's own override contradicts the right global value: replaced on request.
    let apply = {
        let mut c = sim.cmd(&["apply", "-p", pb, "--yes", "--replace-overrides"]);
        tokio::task::spawn_blocking(move || c.output().unwrap())
    };
    let restarting = || -> Vec<String> {
        sim.fleet
            .nodes()
            .iter()
            .filter(|h| h.snapshot().state.is_restarting())
            .map(|h| h.name().to_string())
            .collect()
    };
    wait_until("the canary restarting", || !restarting().is_empty()).await;
    let canary_name = restarting();
    assert_eq!(canary_name.len(), 1, "canary = 1: {canary_name:?}");
    let canary_node = sim.fleet.node(&canary_name[0]).unwrap();
    let reads = canary_node.prov_invocations();
    drop(holds.remove(&canary_name[0]));
    wait_until("the canary re-read while the rollout is held", || {
        canary_node.prov_invocations() > reads
    })
    .await;
    drop(holds);
    let o = apply.await.unwrap();
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    let r = sim.latest();
    assert_eq!(r.command, "apply");
    for h in &r.hosts {
        assert_eq!(h.status, HostStatus::Compliant, "{}", h.name);
    }
    // Global changes staged on each MTA's own entry, then promoted once per cluster in
    // one batch, with the exact command recorded.
    let a1 = r.hosts.iter().find(|h| h.name == "a1").unwrap();
    let ap = a1.apply.as_ref().unwrap();
    let stage = ap
        .commands
        .iter()
        .find(|c| c.purpose.starts_with("stage on a1"))
        .unwrap_or_else(|| panic!("{:?}", ap.commands));
    assert!(
        stage.command.starts_with("su - zextras -c "),
        "{}",
        stage.command
    );
    assert_eq!(stage.exit, "0");
    let promoted: Vec<&str> = r.promotions.iter().map(|p| p.cluster.as_str()).collect();
    assert_eq!(promoted, ["a", "b"], "{:?}", r.promotions);
    for p in &r.promotions {
        assert_eq!(p.state, "promoted", "{p:?}");
        assert_eq!(p.commands.len(), 1);
        assert!(p.commands[0].command.starts_with("su - zextras -c "));
        assert!(
            p.commands[0].command.contains("mcf"),
            "{}",
            p.commands[0].command
        );
    }
    // No temporary entry is left; c1's override was replaced by inheritance.
    for n in ["a1", "a2", "a3", "b1", "b2", "c1"] {
        let own = own_values(&sim, n);
        for attr in [
            "zimbraMtaEnableSmtpdPolicyd",
            "zimbraMtaRestriction",
            "zimbraMtaSmtpdRejectUnlistedRecipient",
        ] {
            assert!(
                own.get(attr).is_none_or(Vec::is_empty),
                "{n}: {attr} {own:?}"
            );
        }
    }
    let c1 = r.hosts.iter().find(|h| h.name == "c1").unwrap();
    let c1_staged = &c1.apply.as_ref().unwrap().staged;
    assert_eq!(c1_staged.len(), 1, "{c1_staged:?}");
    assert_eq!(c1_staged[0].kind, "server override replaced");
    let bs01 = a1.controls.iter().find(|c| c.id == "BS-01").unwrap();
    assert_eq!(
        (bs01.before.as_deref(), bs01.after.as_deref(), bs01.changed),
        (Some("FALSE"), Some("TRUE"), true)
    );
    assert!(
        r.hosts
            .iter()
            .find(|h| h.name == "a2")
            .unwrap()
            .apply
            .as_ref()
            .unwrap()
            .commands
            .iter()
            .all(|c| c.purpose.starts_with("restart (") || c.purpose.starts_with("stage on "))
    );
    // Restarts: only changed/pending MTAs, never more than the batch fleet-wide and
    // never more than per_cluster of one cluster.
    let log = sim.fleet.restart_log();
    let mut restarted: Vec<&str> = log.iter().map(|r| r.node.as_str()).collect();
    restarted.sort();
    assert_eq!(restarted, ["a1", "a2", "a3", "b1", "b2", "c1", "d1"]);
    assert!(
        max_concurrent(&log) <= 2,
        "max concurrent {}",
        max_concurrent(&log)
    );
    assert!(
        max_concurrent_per_cluster(&log).values().all(|&n| n <= 1),
        "{:?}",
        max_concurrent_per_cluster(&log)
    );
    let gate = ap.gate.as_ref().unwrap();
    assert!(gate.passed);
    // Each restarted host is re-read right after its own gate (the wait above saw the
    // canary's proof start while the later batches were held).
    let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
    let applied = || r.hosts.iter().filter_map(|h| h.apply.as_ref());
    let canary = applied().find(|a| a.batch == Some(1)).unwrap();
    assert_eq!(
        r.hosts
            .iter()
            .find(|h| h.apply.as_ref().unwrap().batch == Some(1))
            .unwrap()
            .name,
        canary_name[0]
    );
    let last_batch = applied().filter_map(|a| a.batch).max().unwrap();
    assert!(last_batch >= 3, "batches: {last_batch}");
    let canary_verified = at(canary.verified_at.as_deref().unwrap());
    assert!(
        canary_verified > at(&canary.gate.as_ref().unwrap().finished_at),
        "canary verified at {canary_verified}, before its gate"
    );
    // Every host that was changed or restarted has a proof time; e1 (compliant) was not
    // re-read.
    for h in &r.hosts {
        let a = h.apply.as_ref().unwrap();
        assert_eq!(a.verified_at.is_some(), h.name != "e1", "{}", h.name);
    }
    assert!(
        gate.smtp_transcript
            .iter()
            .any(|l| l.starts_with("S: 550 5.1.1")),
        "{:?}",
        gate.smtp_transcript
    );
    // Platform-appropriate restart methods.
    let method = |n: &str| {
        r.hosts
            .iter()
            .find(|h| h.name == n)
            .unwrap()
            .apply
            .as_ref()
            .unwrap()
            .restart
            .as_ref()
            .unwrap()
            .method
            .clone()
    };
    assert!(
        method("a1").starts_with("zmcontrol restart"),
        "{}",
        method("a1")
    );
    assert_eq!(method("a2"), "systemctl restart carbonio-mta.target");

    // A re-run changes nothing and restarts nothing, and costs one JVM per host (its
    // gather; no proof gather where nothing was done).
    let jvms = |sim: &Sim| {
        sim.fleet
            .nodes()
            .iter()
            .map(|n| n.prov_invocations())
            .collect::<Vec<_>>()
    };
    let jvm_before = jvms(&sim);
    let o = sim.run(&["apply", "-p", pb, "--yes"]).await;
    let jvm_after = jvms(&sim);
    assert!(
        jvm_before.iter().zip(&jvm_after).all(|(b, a)| a - b == 1),
        "{jvm_before:?} → {jvm_after:?}"
    );
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    assert_eq!(
        sim.fleet.restart_log().len(),
        log.len(),
        "a re-run restarted something"
    );
    let r = sim.latest();
    assert!(
        r.hosts
            .iter()
            .all(|h| h.apply.as_ref().unwrap().commands.is_empty())
    );
    assert!(
        r.hosts
            .iter()
            .all(|h| h.controls.iter().all(|c| !c.changed))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_aborts_with_nothing_else_restarted() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![
            ("a1", "a", mta(Legacy, NonCompliant)),
            ("b1", "b", mta(Legacy, NonCompliant)),
            ("c1", "c", mta(Systemd, NonCompliant)),
        ],
        Duration::from_millis(100),
    )
    .await;
    sim.fleet.node("a1").unwrap().set_fail_next_restart(true);
    let pb = sim.playbook(
        "batch = 2\ncanary = 1\npause = \"0s\"\nmax_failures = 5\nhealth_timeout = \"5s\"\nrestart = \"full\"",
    );
    let o = sim
        .run(&["apply", "-p", pb.to_str().unwrap(), "--yes"])
        .await;
    assert_eq!(code(&o), ExitCode::Aborted.code(), "{}", explain(&o));
    // The canary's restart failed; the second one is its rollback's, on the old values.
    let log = sim.fleet.restart_log();
    assert_eq!(
        log.iter().map(|r| r.node.as_str()).collect::<Vec<_>>(),
        ["a1", "a1"]
    );
    let r = sim.latest();
    let a1 = r
        .hosts
        .iter()
        .find(|h| h.name == "a1")
        .unwrap()
        .apply
        .clone()
        .unwrap();
    let rb = a1
        .rollback
        .as_ref()
        .expect("the failed canary was rolled back");
    assert!(rb.ok, "{rb:?}");
    assert!(
        a1.staged.iter().all(|e| e.state == "rolled back"),
        "{:?}",
        a1.staged
    );
    assert!(!own_values(&sim, "a1").contains_key("zimbraMtaEnableSmtpdPolicyd"));
    let rollout = |n: &str| {
        r.hosts
            .iter()
            .find(|h| h.name == n)
            .unwrap()
            .apply
            .as_ref()
            .unwrap()
            .rollout
            .clone()
    };
    assert!(rollout("a1").starts_with("failed"), "{}", rollout("a1"));
    assert_eq!(rollout("b1"), "not-attempted (canary failed)");
    assert_eq!(rollout("c1"), "not-attempted (canary failed)");
    // Nothing was promoted: the other clusters never saw the change.
    assert!(
        r.promotions.iter().all(|p| p.state == "not-promoted"),
        "{:?}",
        r.promotions
    );
    for n in ["b1", "c1"] {
        assert_eq!(
            global_value(&sim, n, "zimbraMtaEnableSmtpdPolicyd"),
            ["FALSE"]
        );
        assert!(!own_values(&sim, n).contains_key("zimbraMtaEnableSmtpdPolicyd"));
    }
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    assert_eq!(status(&sim.latest(), "b1"), HostStatus::Drift);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_policy_service_fails_its_gate() {
    use Platform::*;
    use Posture::*;
    // Policy enabled in LDAP, not yet in effect, and its spawn user missing: restarting
    // it would make Postfix answer 451. The gate must catch it.
    let mut p = mta(Systemd, RestartPending);
    p.spawn_user_missing = true;
    let sim = Sim::start(vec![("p1", "p", p)], Duration::from_millis(100)).await;
    let pb = sim.playbook(QUICK);
    let o = sim
        .run(&["apply", "-p", pb.to_str().unwrap(), "--yes"])
        .await;
    assert_eq!(code(&o), ExitCode::Aborted.code(), "{}", explain(&o));
    let r = sim.latest();
    let h = &r.hosts[0];
    let gate = h.apply.as_ref().unwrap().gate.as_ref().unwrap();
    assert!(!gate.passed);
    let policy = gate.checks.iter().find(|c| c.name == "policy").unwrap();
    assert!(!policy.ok);
    assert!(policy.detail.contains("451 4.3.5"), "{}", policy.detail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostkeys_scan_shows_new_keys_and_writes_them_once() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![("a1", "a", mta(Legacy, Compliant))],
        Duration::from_millis(100),
    )
    .await;
    // Start from an empty known_hosts.
    std::fs::write(sim.fleet.known_hosts_path(), "").unwrap();
    let scan = |write: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_carbonio-fleet"));
        c.args(["hostkeys", "scan", "-i"])
            .arg(sim.fleet.inventory_path());
        if write {
            c.arg("--write");
        }
        tokio::task::spawn_blocking(move || c.output().unwrap())
    };
    let o = scan(false).await.unwrap();
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("SHA256:"),
        "{}",
        explain(&o)
    );
    let o = scan(true).await.unwrap();
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    let kh = std::fs::read_to_string(sim.fleet.known_hosts_path()).unwrap();
    assert_eq!(kh.lines().count(), 1);
    assert!(kh.starts_with("|1|"), "written hashed: {kh}");
    let o = scan(true).await.unwrap();
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    assert_eq!(
        std::fs::read_to_string(sim.fleet.known_hosts_path()).unwrap(),
        kh
    );
    // And the tool now connects under the strict policy.
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
}

fn sigint(pid: u32) {
    let st = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// The journal of the first run directory that appears under the sim's reports.
async fn first_run_journal(sim: &Sim) -> PathBuf {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(dir) = std::fs::read_dir(sim.reports())
            .ok()
            .and_then(|mut d| d.find_map(|e| e.ok().map(|e| e.path()).filter(|p| p.is_dir())))
        {
            return dir.join("journal.jsonl");
        }
        assert!(tokio::time::Instant::now() < deadline, "no run directory");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_for_journal(path: &Path, step: &str) {
    // 60 s: far beyond any healthy wait, however loaded the machine.
    for _ in 0..2400 {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(step)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("journal never recorded `{step}`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_mid_rollout_exits_130_and_resume_finishes() {
    use Platform::*;
    use Posture::*;
    let nodes = (1..=6)
        .map(|i| (format!("n{i}"), format!("c{i}")))
        .collect::<Vec<_>>();
    let sim = Sim::start(
        nodes
            .iter()
            .map(|(n, c)| (n.as_str(), c.as_str(), mta(Legacy, NonCompliant)))
            .collect(),
        Duration::from_millis(1500),
    )
    .await;
    let pb = sim.playbook(
        "batch = 1\ncanary = 1\npause = \"0s\"\nmax_failures = 0\nhealth_timeout = \"20s\"\nrestart = \"full\"",
    );
    // Restarts stay down until the test releases them, so the first one is still in
    // flight when the interrupt arrives however slowly anything gets scheduled.
    let holds: Vec<_> = sim
        .fleet
        .nodes()
        .iter()
        .map(|h| h.node().hold_restarts())
        .collect();
    let mut child = sim
        .cmd(&["apply", "-p", pb.to_str().unwrap(), "--yes"])
        .env_remove("CARBONIO_FLEET_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = StderrTap::new(&mut child);
    // Interrupt while the first restart is in flight (the journal says it was sent).
    let journal = first_run_journal(&sim).await;
    wait_for_journal(&journal, "restart-started").await;
    sigint(child.id());
    // Released only once the tool has said it took the interrupt.
    let heard = tokio::task::spawn_blocking(move || {
        let heard = stderr.wait_for("interrupted:", Duration::from_secs(60));
        (heard, stderr)
    });
    let (heard, stderr) = heard.await.unwrap();
    assert!(
        heard,
        "the interrupt was never acknowledged: {}",
        stderr.text()
    );
    drop(holds);
    let mut out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    out.stderr = stderr.finish().into_bytes();
    assert_eq!(
        code(&out),
        ExitCode::Interrupted.code(),
        "{}",
        explain(&out)
    );
    let r = sim.latest();
    assert_eq!(r.exit_code, ExitCode::Interrupted.code());
    // The restart in flight finished; the others were not started and say why.
    let log = sim.fleet.restart_log();
    assert_eq!(log.len(), 1, "only the in-flight restart ran");
    let states: Vec<String> = r
        .hosts
        .iter()
        .map(|h| h.apply.as_ref().unwrap().rollout.clone())
        .collect();
    assert_eq!(
        states.iter().filter(|s| s.as_str() == "restarted").count(),
        1,
        "{states:?}"
    );
    assert_eq!(
        states
            .iter()
            .filter(|s| s.as_str() == "not-attempted (interrupted)")
            .count(),
        5,
        "{states:?}"
    );
    // Only the canary was staged; nothing was promoted; the others never saw a change.
    let canary = r
        .hosts
        .iter()
        .find(|h| h.apply.as_ref().unwrap().rollout == "restarted")
        .unwrap()
        .name
        .clone();
    assert!(
        r.promotions.iter().all(|p| p.state == "not-promoted"),
        "{:?}",
        r.promotions
    );
    for (n, _) in &nodes {
        assert_eq!(
            global_value(&sim, n, "zimbraMtaEnableSmtpdPolicyd"),
            ["FALSE"],
            "{n}"
        );
        let own = own_values(&sim, n);
        assert_eq!(
            own.contains_key("zimbraMtaEnableSmtpdPolicyd"),
            *n == canary,
            "{n}: {own:?}"
        );
    }
    // A check in between shows the staged entry, with the tool command that finishes it.
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let c = sim.latest();
    let staged = c
        .hosts
        .iter()
        .find(|h| h.name == canary)
        .unwrap()
        .findings
        .iter()
        .find(|f| f.id == "STAGED")
        .expect("check reports the staged entry");
    assert!(
        staged.hint.contains("carbonio-fleet apply --resume"),
        "{}",
        staged.hint
    );
    assert!(!staged.hint.contains("zmprov"), "{}", staged.hint);
    let o = sim
        .run(&["apply", "-p", pb.to_str().unwrap(), "--yes", "--resume"])
        .await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    let r = sim.latest();
    let interrupted_run = journal
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy();
    assert_eq!(
        r.resumed_from.as_deref(),
        Some(&*interrupted_run),
        "lineage"
    );
    assert_eq!(
        r.hosts.len(),
        6,
        "a staged host is not done until its cluster is promoted"
    );
    assert!(r.hosts.iter().all(|h| h.status == HostStatus::Compliant));
    assert_eq!(r.promotions.len(), 6);
    assert!(
        r.promotions.iter().all(|p| p.state == "promoted"),
        "{:?}",
        r.promotions
    );
    // The canary's gate in the interrupted run counts: it is not reloaded again.
    assert_eq!(sim.fleet.restart_log().len(), 6);
    for (n, _) in &nodes {
        assert_eq!(
            global_value(&sim, n, "zimbraMtaEnableSmtpdPolicyd"),
            ["TRUE"],
            "{n}"
        );
        let own = own_values(&sim, n);
        assert!(
            !own.contains_key("zimbraMtaEnableSmtpdPolicyd")
                && !own.contains_key("zimbraMtaRestriction"),
            "{n}: a temporary entry was left: {own:?}"
        );
    }
}

/// Commercial Carbonio with the Advanced CLI: its `carbonio` wrapper is another shell
/// (no ProvUtil `prov> ` output), so a tool that read through it would fail on every
/// such node. The tool runs `zmprov` (ProvUtil everywhere) and reads it like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advanced_cli_node_is_read_through_zmprov() {
    use Platform::*;
    use Posture::*;
    let mut commercial = mta(Systemd, Compliant);
    commercial.advanced_cli = true;
    let sim = Sim::start(
        vec![
            ("adv.a", "a", commercial),
            ("ce.a", "a", mta(Legacy, Compliant)),
        ],
        Duration::from_millis(100),
    )
    .await;
    // The node really is one where `carbonio prov` is not ProvUtil.
    let node = sim.fleet.node("adv.a").unwrap().node().clone();
    let direct = carbonio_sim::shell::run_captured(
        node,
        "zextras",
        "printf '%s\\n' 'gcf zimbraMtaEnableSmtpdPolicyd' exit | carbonio prov",
        b"",
    )
    .await;
    assert!(!direct.stdout.contains("prov> "), "{direct:?}");
    assert!(direct.stdout.contains("carbonio> "), "{direct:?}");
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    let r = sim.latest();
    assert_eq!(status(&r, "adv.a"), HostStatus::Compliant);
    assert_eq!(status(&r, "ce.a"), HostStatus::Compliant);
}

/// The SMTP probe's domain: `gad` lists the alias domain first (its catch-all accepts
/// every address) and, in cluster b, the local domain has a catch-all account. The
/// probe goes to a local domain without a catch-all (cluster a: 550, compliant), and
/// where there is none it is not applicable and says why; never "backscatter".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_probe_picks_a_local_domain_without_a_catch_all() {
    use Platform::*;
    use Posture::*;
    let mut catch_all = mta(Legacy, Compliant);
    catch_all.catch_all_account = true;
    let sim = Sim::start(
        vec![("a1", "a", mta(Legacy, Compliant)), ("b1", "b", catch_all)],
        Duration::from_millis(100),
    )
    .await;
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    let r = sim.latest();
    let smtp = |host: &str| {
        r.hosts
            .iter()
            .find(|h| h.name == host)
            .unwrap()
            .probes
            .iter()
            .find(|p| p.id == "SMTP-01")
            .unwrap()
            .clone()
    };
    let a = smtp("a1");
    assert_eq!(
        a.verdict,
        carbonio_fleet::report::model::ProbeVerdict::Pass,
        "{a:?}"
    );
    assert!(a.actual.starts_with("550 5.1.1"), "{a:?}");
    assert!(
        a.evidence.contains("@a.example>"),
        "probed the local domain: {a:?}"
    );
    let b = smtp("b1");
    assert_eq!(
        b.verdict,
        carbonio_fleet::report::model::ProbeVerdict::NotApplicable,
        "{b:?}"
    );
    assert!(
        b.evidence.contains("no local domain without a catch-all"),
        "{b:?}"
    );
}

/// A carbonio-mta upgrade restores the stock template (`user=zimbra`) on a node whose
/// operator had fixed it: the running master.cf still spawns as zextras, mail flows, and
/// the next check must say loudly that the next rewrite breaks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_stock_template_is_caught_before_it_breaks_mail() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![("up1", "u", mta(Legacy, Compliant))],
        Duration::from_millis(100),
    )
    .await;
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    // The "upgrade": the package's master.cf.in replaces the operator's.
    let node = sim.fleet.node("up1").unwrap().node().clone();
    node.state().files.insert(
        carbonio_sim::node::MASTER_CF_IN.to_string(),
        carbonio_sim::postfix::master_cf_in("zimbra").into_bytes(),
    );
    let o = sim.run(&["check"]).await;
    assert_ne!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    let r = sim.latest();
    let h = &r.hosts[0];
    let f = h
        .findings
        .iter()
        .find(|f| f.id == "PRE-POLICY-SPAWN-USER")
        .expect("the regression is a finding");
    assert!(f.blocking);
    assert_eq!(f.severity, "critical");
    assert!(
        f.message.contains("running master.cf spawns as `zextras`"),
        "{}",
        f.message
    );
    assert!(
        f.message.contains("spawn user missing: `zimbra`"),
        "{}",
        f.message
    );
    assert!(
        f.evidence.contains("master.cf.in: policy unix"),
        "{}",
        f.evidence
    );

    // The repair rewrites master.cf (configrewrite) while the policy service is on: a
    // forced rewrite reloads nothing, so apply reloads the node, and the next check
    // finds the running master on the repaired file (not restart-pending).
    let o = sim.run(&["apply", "--yes", "--fix-spawn-user"]).await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    let h = &sim.latest().hosts[0];
    let ap = h.apply.as_ref().unwrap();
    assert!(
        ap.restart.as_ref().unwrap().method.starts_with("reload: "),
        "{:?}",
        ap.restart
    );
    assert!(
        sim.fleet.restart_log().is_empty(),
        "reloaded, not restarted"
    );
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    assert_eq!(
        sim.latest().hosts[0].running.as_ref().unwrap().state,
        carbonio_fleet::carbonio::running::RunningState::Loaded
    );
}

/// A stock node (`user=zimbra`, no such user): without the fix, apply may not enable the
/// policy daemon; with `--fix-spawn-user` it sets `user=zextras` in master.cf.in (backed
/// up), runs configrewrite, and then enables the daemon and adds the restriction; the
/// restarted node passes its gate and every command is in the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_spawn_user_makes_a_stock_node_compliant() {
    use Platform::*;
    use Posture::*;
    let mut stock = mta(Legacy, NonCompliant);
    stock.spawn_user_missing = true;
    let sim = Sim::start(vec![("st1", "s", stock)], Duration::from_millis(100)).await;
    let pb = sim.playbook(QUICK);
    let pb = pb.to_str().unwrap();
    let o = sim.run(&["apply", "-p", pb, "--yes"]).await;
    assert_ne!(
        code(&o),
        ExitCode::Ok.code(),
        "blocked without the fix: {}",
        explain(&o)
    );
    let node = sim.fleet.node("st1").unwrap().node().clone();
    let template = |n: &carbonio_sim::node::Node| {
        String::from_utf8(n.state().files[carbonio_sim::node::MASTER_CF_IN].clone()).unwrap()
    };
    assert!(template(&node).contains("\tuser=zimbra argv="));

    let o = sim
        .run(&["apply", "-p", pb, "--yes", "--fix-spawn-user"])
        .await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    let r = sim.latest();
    let h = &r.hosts[0];
    assert_eq!(h.status, HostStatus::Compliant, "{:?}", h.findings);
    let fixed = template(&node);
    assert_eq!(
        fixed,
        carbonio_sim::postfix::master_cf_in("zimbra").replace("\tuser=zimbra", "\tuser=zextras"),
        "only the user= token changed"
    );
    let backups: Vec<String> = node
        .state()
        .files
        .keys()
        .filter(|k| k.contains("master.cf.in.cfleet-"))
        .cloned()
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert!(
        String::from_utf8_lossy(&node.state().files[&backups[0]]).contains("\tuser=zimbra argv=")
    );
    let ap = h.apply.as_ref().unwrap();
    let purposes: Vec<&str> = ap.commands.iter().map(|c| c.purpose.as_str()).collect();
    assert!(
        purposes[0].starts_with("spawn user fix: read"),
        "{purposes:?}"
    );
    assert!(
        purposes[1].starts_with("spawn user fix: user=zextras"),
        "{purposes:?}"
    );
    assert!(purposes[2].contains("configrewrite"), "{purposes:?}");
    assert!(
        ap.commands[2].command.contains("configrewrite mta"),
        "{:?}",
        ap.commands[2]
    );
    let bs01 = h.controls.iter().find(|c| c.id == "BS-01").unwrap();
    assert_eq!(bs01.after.as_deref(), Some("TRUE"));
    assert!(ap.gate.as_ref().unwrap().passed);
    // The restart rendered the fixed template: Postfix spawns the daemon as zextras.
    let pf = node.state().postfix.clone().unwrap();
    assert_eq!(pf.policy_spawn_user(), Some("zextras"));
}

/// A node whose policy daemon runs with the stock entry (mail to existing users gets
/// 451): `--fix-spawn-user` fixes the template and, because the running master.cf is the
/// broken one, restarts the node to load it, even though no LDAP value changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_spawn_user_restarts_a_node_whose_running_daemon_is_broken() {
    use Platform::*;
    use Posture::*;
    let mut broken = mta(Legacy, Compliant);
    broken.spawn_user_missing = true;
    broken.spawn_user_fixed = false;
    let sim = Sim::start(vec![("br1", "b", broken)], Duration::from_millis(100)).await;
    let pb = sim.playbook(QUICK);
    let o = sim
        .run(&[
            "apply",
            "-p",
            pb.to_str().unwrap(),
            "--yes",
            "--fix-spawn-user",
        ])
        .await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    let r = sim.latest();
    let h = &r.hosts[0];
    assert_eq!(h.status, HostStatus::Compliant, "{:?}", h.findings);
    assert_eq!(
        sim.fleet.restart_log().len(),
        1,
        "restarted to load the fix"
    );
    let ap = h.apply.as_ref().unwrap();
    assert_eq!(ap.rollout, "restarted");
    assert!(ap.gate.as_ref().unwrap().passed);
    let node = sim.fleet.node("br1").unwrap().node().clone();
    assert_eq!(
        node.state().postfix.clone().unwrap().policy_spawn_user(),
        Some("zextras")
    );
}

/// Files are not the running Postfix (docs/carbonio.md §3). A node whose master.cf was
/// rewritten after its master started, with no reload logged since, is restart-pending
/// with that evidence; one whose log rotated since is "running state unknown", never
/// compliant; apply's restart loads it. A `loaded` verdict then carries forward across a
/// log rotation while master.cf keeps its mtime, and not once master.cf changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_master_not_the_files_decides() {
    use Platform::*;
    use Posture::*;
    use carbonio_sim::RunningSetup;
    let with = |running| NodeProfile {
        running,
        ..mta(Systemd, Compliant)
    };
    let sim = Sim::start(
        vec![
            ("ok1", "r", mta(Legacy, Compliant)),
            ("stale1", "r", with(RunningSetup::NotReloaded)),
            ("rot1", "r", with(RunningSetup::LogRotated)),
        ],
        Duration::from_millis(100),
    )
    .await;
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let r = sim.latest();
    let host = |r: &Report, n: &str| r.hosts.iter().find(|h| h.name == n).unwrap().clone();
    let running = |r: &Report, n: &str| host(r, n).running.expect("an MTA has a running verdict");
    let finding = |r: &Report, n: &str, id: &str| {
        host(r, n)
            .findings
            .iter()
            .find(|f| f.id == id)
            .cloned()
            .unwrap_or_else(|| panic!("{n}: no {id}"))
    };
    use carbonio_fleet::carbonio::running::RunningState;
    assert_eq!(host(&r, "ok1").status, HostStatus::Compliant);
    let ok = running(&r, "ok1");
    assert_eq!(ok.state, RunningState::Loaded, "{}", ok.evidence);

    assert_eq!(host(&r, "stale1").status, HostStatus::RestartPending);
    let f = finding(&r, "stale1", "RUN-NOT-LOADED");
    assert!(f.evidence.contains("has not loaded it"), "{}", f.evidence);
    assert!(!f.blocking);
    // Every control and probe passes: only the running state holds it back.
    assert!(
        host(&r, "stale1")
            .controls
            .iter()
            .all(|c| c.verdict == Verdict::Compliant)
    );

    assert_eq!(host(&r, "rot1").status, HostStatus::RestartPending);
    let f = finding(&r, "rot1", "RUN-STATE-UNKNOWN");
    assert!(f.message.contains("running state unknown"), "{}", f.message);
    assert!(f.evidence.contains("rotated"), "{}", f.evidence);
    assert!(
        explain(&o).contains("master.cf running state unknown"),
        "{}",
        explain(&o)
    );

    // apply restarts both; the proof sees them loaded.
    let o = sim.run(&["apply", "--yes"]).await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    let r = sim.latest();
    for n in ["stale1", "rot1"] {
        assert_eq!(host(&r, n).status, HostStatus::Compliant, "{n}");
        assert_eq!(running(&r, n).state, RunningState::Loaded, "{n}");
    }
    // The log rotates: the start line is gone, master.cf unchanged: carried forward.
    let node = sim.fleet.node("stale1").unwrap().node().clone();
    let rotated = |node: &carbonio_sim::node::Node| {
        let mut st = node.state();
        st.master_started = Some(st.master_started.unwrap() - 86_400);
        let line = format!(
            "{} stale1 postfix/anvil[1]: statistics\n",
            jiff::Timestamp::now()
        );
        st.files
            .insert(carbonio_sim::node::MAIL_LOG.into(), line.into_bytes());
    };
    rotated(&node);
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    let carried = running(&sim.latest(), "stale1");
    assert_eq!(carried.state, RunningState::Loaded);
    assert!(
        carried.evidence.contains("unchanged since the run of"),
        "{}",
        carried.evidence
    );
    // master.cf rewritten (zmconfigd) after that: nothing carries forward.
    node.state().mtimes.insert(
        carbonio_sim::node::MASTER_CF.into(),
        jiff::Timestamp::now().as_second() + 5,
    );
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    assert_eq!(
        running(&sim.latest(), "stale1").state,
        RunningState::NotLoaded
    );
}

/// A Zimbra node beside a Carbonio one, `flavour` left to `auto`: the gather finds the
/// `zimbra` service user and reads /opt/zimbra (version from the install history, the
/// mail log in /var/log/zimbra.log); Zimbra's stock policy entry spawns as `zimbra`,
/// which exists there and owns localconfig.xml, so nothing blocks the policy controls;
/// apply remediates it as `zimbra` and reloads its Postfix. An inventory that says `carbonio` for
/// it fails that host alone, naming the missing user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zimbra_node_is_read_and_remediated_as_zimbra() {
    use Platform::*;
    use Posture::*;
    use carbonio_fleet::flavour::Flavour;
    let sim = Sim::start(
        vec![
            ("zm1", "z", zimbra()),
            ("cb1", "c", mta(Legacy, NonCompliant)),
        ],
        Duration::from_millis(100),
    )
    .await;
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let r = sim.latest();
    let zm = r.hosts.iter().find(|h| h.name == "zm1").unwrap();
    assert_eq!(zm.flavour, Some(Flavour::Zimbra));
    assert_eq!(
        zm.version.as_deref(),
        Some("Zimbra Release 10.0.6.GA.4518.UBUNTU22.64")
    );
    assert_eq!(zm.status, HostStatus::Drift);
    assert!(
        zm.findings.iter().all(|f| f.id != "PRE-POLICY-SPAWN-USER"),
        "{:?}",
        zm.findings
    );
    let running = zm.running.as_ref().unwrap();
    assert!(
        running.evidence.contains("/var/log/zimbra.log"),
        "{}",
        running.evidence
    );
    assert_eq!(
        r.hosts.iter().find(|h| h.name == "cb1").unwrap().flavour,
        Some(Flavour::Carbonio)
    );

    let o = sim.run(&["apply", "--yes"]).await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    let r = sim.latest();
    let zm = r.hosts.iter().find(|h| h.name == "zm1").unwrap();
    assert_eq!(zm.status, HostStatus::Compliant, "{}", explain(&o));
    let commands = &zm.apply.as_ref().unwrap().commands;
    assert!(
        commands
            .iter()
            .any(|c| c.command.starts_with("su - zimbra -c ")),
        "{commands:?}"
    );
    assert!(
        commands.iter().all(|c| !c.command.contains("zextras")),
        "{commands:?}"
    );
    // Reloaded, not restarted: Zimbra's configrewrite, then its Postfix through sudo.
    let restart = zm.apply.as_ref().unwrap().restart.as_ref().unwrap();
    assert_eq!(
        restart.method,
        "reload: /opt/zimbra/libexec/configrewrite mta then sudo -n /opt/zimbra/common/sbin/postfix reload"
    );
    assert!(restart.ok);
    assert!(sim.fleet.restart_log().is_empty(), "no service went down");

    // An inventory that names the wrong product: that host fails, with the reason.
    let inv = sim.fleet.inventory_path();
    let text = std::fs::read_to_string(&inv).unwrap();
    std::fs::write(
        &inv,
        text.replacen("[defaults]\n", "[defaults]\nflavour = \"carbonio\"\n", 1),
    )
    .unwrap();
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::HostFailed.code(), "{}", explain(&o));
    let r = sim.latest();
    let zm = r.hosts.iter().find(|h| h.name == "zm1").unwrap();
    assert_eq!(zm.status, HostStatus::Failed);
    let e = zm.error.as_ref().unwrap();
    assert!(e.message.contains("zextras"), "{}", e.message);
    assert_eq!(
        r.hosts.iter().find(|h| h.name == "cb1").unwrap().status,
        HostStatus::Compliant
    );
}

/// The program budget of `check` (docs/remote-shell.md, "Program budget"): every program
/// the gather starts on a node, counted by the emulator (the login shell, `su`/`sudo`,
/// `bash -l` and shell builtins not counted), is exactly the documented list: ONE
/// `zmprov` for the gather plus one for the cluster's domain read, and nothing else that
/// starts a JVM (no `zmcontrol`, `zmhostname`, `zmlocalconfig` or `carbonio`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_keeps_the_program_budget() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![("b1", "b", mta(Systemd, Compliant)), ("z1", "z", zimbra())],
        Duration::from_millis(100),
    )
    .await;
    for n in sim.fleet.nodes() {
        n.node().reset_programs_started();
    }
    let o = sim.run(&["check"]).await;
    assert!(
        code(&o) == ExitCode::Ok.code() || code(&o) == ExitCode::Drift.code(),
        "{}",
        explain(&o)
    );
    // One getent for the detection (both service users), one for the spawn users and
    // one for their groups; one awk over every file read (version, server name, both
    // policy entries, the mail log); one postconf for every parameter; one stat for
    // localconfig.xml and master.cf; systemctl only where systemd runs.
    // The same programs on both products (their paths differ).
    let budget = |systemd: bool| -> BTreeMap<String, u64> {
        [
            ("getent", 3),
            ("systemctl", u64::from(systemd)),
            ("awk", 1),
            ("postconf", 1),
            ("stat", 1),
            ("date", 1),
            ("uname", 1),
            ("ps", 1),
            ("zmprov", 2),
        ]
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    };
    for n in sim.fleet.nodes() {
        let systemd = n.node().state().platform == Systemd;
        assert_eq!(
            n.node().programs_started(),
            budget(systemd),
            "{}",
            n.node().name
        );
    }
}

/// The spawn-user repair as a playbook setting: `plan` names the node and the exact
/// repair (and that it needs the opt-in); with `[fix] spawn_user = true` in the playbook,
/// apply repairs it without the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playbook_can_opt_in_to_the_spawn_user_fix() {
    use Platform::*;
    use Posture::*;
    let mut stock = mta(Systemd, NonCompliant);
    stock.spawn_user_missing = true;
    let sim = Sim::start(vec![("st2", "s", stock)], Duration::from_millis(100)).await;
    let pb = sim.playbook(QUICK);
    let o = sim.run(&["plan", "-p", pb.to_str().unwrap()]).await;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains(
            "policy spawn user (PRE-POLICY-SPAWN-USER): apply repairs it with `--fix-spawn-user`"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "\n      as root, back up /opt/zextras/common/conf/master.cf.in and set user=zextras"
        ),
        "{out}"
    );
    let text = std::fs::read_to_string(&pb).unwrap();
    std::fs::write(&pb, text.replace("spawn_user = false", "spawn_user = true")).unwrap();
    let o = sim.run(&["plan", "-p", pb.to_str().unwrap()]).await;
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("apply repairs it first (`[fix] spawn_user = true` in the playbook)"),
        "{}",
        explain(&o)
    );
    let o = sim
        .run(&["apply", "-p", pb.to_str().unwrap(), "--yes"])
        .await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    let h = &sim.latest().hosts[0];
    assert_eq!(h.status, HostStatus::Compliant, "{:?}", h.findings);
    assert!(
        h.apply.as_ref().unwrap().commands[1]
            .purpose
            .starts_with("spawn user fix: user=zextras")
    );
}

/// The default (`restart = "reload"`): each changed MTA renders its files with
/// `configrewrite mta` as the service user, and only once they hold the new values is
/// Postfix reloaded (sudo on legacy nodes, root's systemctl on systemd nodes). No service
/// stops; the running master loads the policy entry (its reload line is in the mail log)
/// and the gate passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_reloads_by_default_and_stops_nothing() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![
            ("l1", "l", mta(Legacy, NonCompliant)),
            ("s1", "s", mta(Systemd, HalfCompliant)),
        ],
        Duration::from_millis(100),
    )
    .await;
    let pb = sim.playbook(
        "batch = 2\ncanary = 1\npause = \"0s\"\nmax_failures = 0\nhealth_timeout = \"20s\"",
    );
    let o = sim
        .run(&["apply", "-p", pb.to_str().unwrap(), "--yes"])
        .await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    assert!(sim.fleet.restart_log().is_empty(), "no full restart");
    let r = sim.latest();
    for (name, reload) in [
        ("l1", "sudo -n /opt/zextras/common/sbin/postfix reload"),
        ("s1", "systemctl reload carbonio-postfix.service"),
    ] {
        let h = r.hosts.iter().find(|h| h.name == name).unwrap();
        assert_eq!(h.status, HostStatus::Compliant, "{name}: {:?}", h.findings);
        let ap = h.apply.as_ref().unwrap();
        let restart = ap.restart.as_ref().unwrap();
        assert_eq!(
            restart.method,
            format!("reload: /opt/zextras/libexec/configrewrite mta then {reload}")
        );
        let purposes: Vec<&str> = ap.commands.iter().map(|c| c.purpose.as_str()).collect();
        let render = purposes
            .iter()
            .position(|p| *p == "render (configrewrite mta)")
            .expect("rendered");
        assert_eq!(purposes[render + 1], "reload", "{purposes:?}");
        assert!(ap.gate.as_ref().unwrap().passed);
        let node = sim.fleet.node(name).unwrap();
        assert_eq!(
            node.node().loaded_policy_spawn_user().as_deref(),
            Some("zextras"),
            "{name}: the running master loaded the policy entry"
        );
        assert!(
            node.mail_log().contains("postfix/master[")
                && node.mail_log().contains(": reload -- version"),
            "{}",
            node.mail_log()
        );
        assert_eq!(
            h.running.as_ref().unwrap().state,
            carbonio_fleet::carbonio::running::RunningState::Loaded
        );
        // The gate asked the policy service on its socket: a local recipient passes,
        // an unknown one in the alias domain is refused.
        let socket = gate_check(ap, "policy-socket");
        assert!(socket.ok, "{socket:?}");
        let log = gate_check(ap, "mail-log");
        assert!(log.ok, "{log:?}");
        assert!(
            socket
                .detail
                .contains("/opt/zextras/data/postfix/spool/private/policy answers")
                && socket.detail.contains("action=dunno")
                && socket
                    .detail
                    .contains("action=reject 5.1.1 Mailbox unavailable"),
            "{}",
            socket.detail
        );
    }
}

/// A canary whose policy daemon dies at start (a test hook: the daemon, not its spawn
/// user or any file the gather reads) is caught by the gate's policy-socket check, which
/// carries the daemon's own error text. The canary is rolled back (its staged entries
/// removed, reloaded, gated on the old values), the rollout aborts (exit 4), and no other
/// node ever saw the change, though zmconfigd polls on all of them. `--resume` then
/// refuses to promote: the failed node fails again, nothing reaches the global config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_daemon_that_dies_fails_the_canary_gate() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start_with(
        vec![
            ("d1", "d", mta(Legacy, NonCompliant)),
            ("d2", "d", mta(Systemd, NonCompliant)),
            ("e1", "e", mta(Legacy, NonCompliant)),
        ],
        Duration::from_millis(100),
        Some(Duration::from_millis(50)),
    )
    .await;
    let broken =
        "Can't locate Net/LDAP.pm in @INC at /opt/zextras/libexec/zmpostfixpolicyd line 31.";
    sim.fleet.node("d1").unwrap().node().state().policyd_broken = Some(broken.into());
    let pb = sim.playbook(
        "batch = 1\ncanary = 1\npause = \"0s\"\nmax_failures = 0\nhealth_timeout = \"10s\"",
    );
    let o = sim
        .run(&["apply", "-p", pb.to_str().unwrap(), "--yes"])
        .await;
    assert_eq!(code(&o), ExitCode::Aborted.code(), "{}", explain(&o));
    let r = sim.latest();
    let d1 = r.hosts.iter().find(|h| h.name == "d1").unwrap();
    let ap = d1.apply.as_ref().unwrap();
    let gate = ap.gate.as_ref().unwrap();
    assert!(!gate.passed);
    let socket = gate
        .checks
        .iter()
        .find(|c| c.name == "policy-socket")
        .unwrap();
    assert!(!socket.ok);
    assert!(socket.detail.contains(broken), "{}", socket.detail);
    // The spawn-user check (owner, mode, one group) could not see it.
    assert!(
        gate.checks.iter().any(|c| c.name == "policy" && c.ok),
        "{:?}",
        gate.checks
    );
    // Rolled back: entries removed, the old values reloaded and gated.
    let rb = ap.rollback.as_ref().expect("rolled back");
    assert!(rb.ok, "{rb:?}");
    assert!(rb.gate.as_ref().unwrap().passed);
    assert!(
        ap.staged.iter().all(|e| e.state == "rolled back"),
        "{:?}",
        ap.staged
    );
    assert!(ap.rollout.contains("rolled back"), "{}", ap.rollout);
    assert!(!own_values(&sim, "d1").contains_key("zimbraMtaEnableSmtpdPolicyd"));
    let node = sim.fleet.node("d1").unwrap();
    assert_eq!(
        node.node().loaded_policy_spawn_user(),
        None,
        "d1 runs the old master.cf"
    );
    // Node by node: nobody else saw it, through several zmconfigd polls.
    for n in ["d2", "e1"] {
        let h = r.hosts.iter().find(|h| h.name == n).unwrap();
        let a = h.apply.as_ref().unwrap();
        assert_eq!(a.rollout, "not-attempted (canary failed)", "{n}");
        assert!(a.staged.is_empty() && a.restart.is_none(), "{n}");
        let polls = sim.fleet.node(n).unwrap().node().zmconfigd_polls();
        wait_until(&format!("{n}: two more polls"), || {
            sim.fleet.node(n).unwrap().node().zmconfigd_polls() >= polls + 2
        })
        .await;
        assert!(
            !rendered(&sim, n, "smtpd_recipient_restrictions").contains("check_policy_service"),
            "{n}"
        );
        assert_eq!(
            global_value(&sim, n, "zimbraMtaEnableSmtpdPolicyd"),
            ["FALSE"],
            "{n}"
        );
        assert!(
            !own_values(&sim, n).contains_key("zimbraMtaEnableSmtpdPolicyd"),
            "{n}"
        );
    }
    assert!(
        r.promotions
            .iter()
            .all(|p| p.state == "not-promoted" && p.commands.is_empty()),
        "{:?}",
        r.promotions
    );

    let o = sim
        .run(&["apply", "-p", pb.to_str().unwrap(), "--yes", "--resume"])
        .await;
    assert_eq!(code(&o), ExitCode::Aborted.code(), "{}", explain(&o));
    let r = sim.latest();
    assert!(
        r.promotions.iter().all(|p| p.state != "promoted"),
        "{:?}",
        r.promotions
    );
    for n in ["d1", "d2", "e1"] {
        assert_eq!(
            global_value(&sim, n, "zimbraMtaEnableSmtpdPolicyd"),
            ["FALSE"],
            "{n}"
        );
    }
}

/// Logged in as the service user itself (`become = "none"`), `flavour = "auto"` still runs
/// exactly one product's gather: the unwrapped script stays one command behind its
/// `test` (a line-by-line leak would mix Zimbra's sections into a Carbonio node's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_flavour_with_become_none_runs_one_gather() {
    use Platform::*;
    use Posture::*;
    use carbonio_fleet::flavour::Flavour;
    let sim = Sim::start(
        vec![("c1", "c", mta(Legacy, Compliant)), ("z1", "z", zimbra())],
        Duration::from_millis(100),
    )
    .await;
    let inv = sim.fleet.inventory_path();
    let text = std::fs::read_to_string(&inv).unwrap();
    let text = text
        .replace(
            "name = \"c1\"\n",
            "name = \"c1\"\nuser = \"zextras\"\nbecome = \"none\"\n",
        )
        .replace(
            "name = \"z1\"\n",
            "name = \"z1\"\nuser = \"zimbra\"\nbecome = \"none\"\n",
        );
    std::fs::write(&inv, text).unwrap();
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let r = sim.latest();
    let c1 = r.hosts.iter().find(|h| h.name == "c1").unwrap();
    assert_eq!(c1.flavour, Some(Flavour::Carbonio));
    assert_eq!(c1.status, HostStatus::Compliant, "{:?}", c1.findings);
    assert_eq!(c1.version.as_deref(), Some("Carbonio Release 24.12.0"));
    let z1 = r.hosts.iter().find(|h| h.name == "z1").unwrap();
    assert_eq!(z1.flavour, Some(Flavour::Zimbra));
    assert_eq!(z1.status, HostStatus::Drift);
}

/// The rendered (on-disk) Postfix parameter `param` of a node.
fn rendered(sim: &Sim, node: &str, param: &str) -> String {
    let h = sim.fleet.node(node).unwrap();
    let st = h.node().state();
    st.postfix
        .as_ref()
        .and_then(|pf| pf.params.get(param).cloned())
        .unwrap_or_default()
}

/// The canary stages: while it is held mid-rollout, the other MTAs of its cluster keep
/// running the old values through several zmconfigd polls (its change is on its own server
/// entry, which only its zmconfigd reads). In the same test an out-of-band `mcf` reaches
/// every non-staged MTA within two polls: the emulation can tell the two apart. Released,
/// the rollout ends promoted with no temporary entry left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_stages_and_zmconfigd_does_not_spread_it() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start_with(
        vec![
            ("a1", "a", mta(Legacy, NonCompliant)),
            ("a2", "a", mta(Legacy, NonCompliant)),
            ("a3", "a", mta(Legacy, NonCompliant)),
        ],
        Duration::from_millis(100),
        Some(Duration::from_millis(50)),
    )
    .await;
    let pb = sim.playbook(
        "batch = 1\nper_cluster = 1\ncanary = 1\npause = \"0s\"\nmax_failures = 0\nhealth_timeout = \"20s\"\nrestart = \"full\"",
    );
    let holds: Vec<_> = sim
        .fleet
        .nodes()
        .iter()
        .map(|h| h.node().hold_restarts())
        .collect();
    let apply = {
        let mut c = sim.cmd(&["apply", "-p", pb.to_str().unwrap(), "--yes"]);
        tokio::task::spawn_blocking(move || c.output().unwrap())
    };
    let canary = sim.fleet.node("a1").unwrap().node().clone();
    wait_until("the canary restarting", || canary.state().is_restarting()).await;
    assert!(own_values(&sim, "a1").contains_key("zimbraMtaEnableSmtpdPolicyd"));
    let others = ["a2", "a3"];
    let polls = |n: &str| sim.fleet.node(n).unwrap().node().zmconfigd_polls();
    let at_stage: Vec<u64> = others.iter().map(|n| polls(n)).collect();
    for (n, p0) in others.iter().zip(&at_stage) {
        wait_until(&format!("{n}: three zmconfigd polls"), || {
            polls(n) >= p0 + 3
        })
        .await;
        assert!(
            !rendered(&sim, n, "smtpd_recipient_restrictions").contains("check_policy_service"),
            "{n} rendered the canary's change"
        );
        assert_eq!(
            rendered(&sim, n, "smtpd_reject_unlisted_recipient"),
            "no",
            "{n}"
        );
        assert_eq!(
            global_value(&sim, n, "zimbraMtaEnableSmtpdPolicyd"),
            ["FALSE"]
        );
        assert!(
            own_values(&sim, n).is_empty()
                || !own_values(&sim, n).contains_key("zimbraMtaEnableSmtpdPolicyd")
        );
    }
    // An out-of-band `mcf` of the global config: every non-staged MTA renders it.
    let extra = "127.0.0.0/8 [::1]/128 10.9.9.0/24";
    let at_change: Vec<u64> = others.iter().map(|n| polls(n)).collect();
    canary
        .cluster
        .ldap()
        .global
        .insert("zimbraMtaMyNetworks".into(), vec![extra.into()]);
    for (n, p0) in others.iter().zip(&at_change) {
        wait_until(&format!("{n} renders the out-of-band mcf"), || {
            rendered(&sim, n, "mynetworks") == extra
        })
        .await;
        let at = sim.fleet.node(n).unwrap().node().zmconfigd_rendered_at();
        assert!(
            at <= p0 + 2,
            "{n}: rendered at poll {at}, the mcf came after poll {p0}"
        );
    }
    drop(holds);
    let o = apply.await.unwrap();
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    let r = sim.latest();
    assert_eq!(r.promotions.len(), 1);
    assert_eq!(r.promotions[0].state, "promoted", "{:?}", r.promotions);
    assert_eq!(r.promotions[0].mtas, ["a1", "a2", "a3"]);
    for n in ["a1", "a2", "a3"] {
        assert_eq!(status(&r, n), HostStatus::Compliant, "{n}");
        assert!(
            !own_values(&sim, n).contains_key("zimbraMtaEnableSmtpdPolicyd"),
            "{n}"
        );
        assert!(
            !own_values(&sim, n).contains_key("zimbraMtaRestriction"),
            "{n}"
        );
    }
    assert_eq!(
        global_value(&sim, "a1", "zimbraMtaEnableSmtpdPolicyd"),
        ["TRUE"]
    );
}

/// A cluster with an MTA outside `--limit` stages and gates the selected ones, then holds
/// its promotion (exit 2) naming the MTA LDAP lists that the run did not include; the
/// global config is untouched. `check` shows the staged entries with the tool command to
/// finish them; `apply --unstage` removes them (reload and gate on the old values); a
/// full apply then promotes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mta_outside_the_limit_holds_the_promotion() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![
            ("a1", "a", mta(Legacy, NonCompliant)),
            ("a2", "a", mta(Systemd, NonCompliant)),
            ("a3", "a", mta(Legacy, NonCompliant)),
        ],
        Duration::from_millis(100),
    )
    .await;
    let pb = sim.playbook(
        "batch = 1\ncanary = 1\npause = \"0s\"\nmax_failures = 0\nhealth_timeout = \"20s\"",
    );
    let pb = pb.to_str().unwrap();
    // plan foresees it: the excluded MTA would hold the promotion.
    let o = sim.run(&["plan", "-p", pb, "--limit", "a1,a2"]).await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("  promotion held (exit 2): even if every staged MTA passes")
            && out.contains("    ! held by a3: an MTA of this cluster in LDAP that this run did not include (outside --limit"),
        "{out}"
    );
    let o = sim
        .run(&["apply", "-p", pb, "--yes", "--limit", "a1,a2"])
        .await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let r = sim.latest();
    let p = &r.promotions[0];
    assert_eq!(p.state, "promotion-held", "{p:?}");
    assert_eq!(p.held_by.len(), 1, "{:?}", p.held_by);
    assert_eq!(p.held_by[0].server.as_deref(), Some("a3"));
    assert!(
        p.held_by[0].reason.contains("--limit"),
        "{}",
        p.held_by[0].reason
    );
    assert!(
        p.commands.is_empty(),
        "nothing was written to the global config"
    );
    assert_eq!(
        global_value(&sim, "a1", "zimbraMtaEnableSmtpdPolicyd"),
        ["FALSE"]
    );
    for n in ["a1", "a2"] {
        let h = r.hosts.iter().find(|h| h.name == n).unwrap();
        let ap = h.apply.as_ref().unwrap();
        assert!(ap.gate.as_ref().unwrap().passed, "{n}");
        assert!(
            ap.staged
                .iter()
                .all(|e| e.state == "staged" && e.kind == "temporary"),
            "{:?}",
            ap.staged
        );
        assert_eq!(own_values(&sim, n)["zimbraMtaEnableSmtpdPolicyd"], ["TRUE"]);
    }
    assert!(!own_values(&sim, "a3").contains_key("zimbraMtaEnableSmtpdPolicyd"));

    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let c = sim.latest();
    for n in ["a1", "a2"] {
        let h = c.hosts.iter().find(|h| h.name == n).unwrap();
        let f = h
            .findings
            .iter()
            .find(|f| f.id == "STAGED")
            .unwrap_or_else(|| panic!("{n}: {:?}", h.findings));
        assert!(
            f.evidence.contains("zimbraMtaEnableSmtpdPolicyd"),
            "{}",
            f.evidence
        );
        assert!(f.hint.contains("apply --unstage"), "{}", f.hint);
    }
    assert!(
        c.hosts
            .iter()
            .find(|h| h.name == "a3")
            .unwrap()
            .findings
            .iter()
            .all(|f| f.id != "STAGED")
    );

    let o = sim.run(&["apply", "-p", pb, "--yes", "--unstage"]).await;
    assert_eq!(
        code(&o),
        ExitCode::Drift.code(),
        "unstaged, the nodes are off again: {}",
        explain(&o)
    );
    let r = sim.latest();
    assert!(r.promotions.is_empty(), "--unstage promotes nothing");
    for n in ["a1", "a2"] {
        assert!(
            !own_values(&sim, n).contains_key("zimbraMtaEnableSmtpdPolicyd"),
            "{n}"
        );
        let ap = r
            .hosts
            .iter()
            .find(|h| h.name == n)
            .unwrap()
            .apply
            .clone()
            .unwrap();
        assert!(ap.gate.as_ref().unwrap().passed, "{n}: {:?}", ap.gate);
        assert!(
            ap.staged.iter().all(|e| e.state == "rolled back"),
            "{:?}",
            ap.staged
        );
    }
    let o = sim.run(&["apply", "-p", pb, "--yes"]).await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    assert_eq!(sim.latest().promotions[0].state, "promoted");
    assert_eq!(
        global_value(&sim, "a3", "zimbraMtaEnableSmtpdPolicyd"),
        ["TRUE"]
    );
}

/// A node's own RBL list (a server-level zimbraMtaRestriction) survives apply: the policy
/// restriction is added to it (a permanent edit, "server list extended"), and after the
/// promotion its effective list holds both. The other node's temporary entry is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_own_rbl_list_survives_and_gains_the_policy_restriction() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![
            ("r1", "r", mta(Legacy, NonCompliant)),
            ("r2", "r", mta(Legacy, NonCompliant)),
        ],
        Duration::from_millis(100),
    )
    .await;
    let rbl = "reject_rbl_client zen.spamhaus.org";
    {
        let h = sim.fleet.node("r1").unwrap();
        let mut ldap = h.node().cluster.ldap();
        ldap.servers
            .get_mut("r1")
            .unwrap()
            .insert("zimbraMtaRestriction".into(), vec![rbl.into()]);
    }
    let pb = sim.playbook(
        "batch = 1\ncanary = 1\npause = \"0s\"\nmax_failures = 0\nhealth_timeout = \"20s\"",
    );
    let o = sim
        .run(&["apply", "-p", pb.to_str().unwrap(), "--yes"])
        .await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    let r = sim.latest();
    assert_eq!(r.promotions[0].state, "promoted", "{:?}", r.promotions);
    assert_eq!(
        own_values(&sim, "r1")["zimbraMtaRestriction"],
        [rbl, "check_policy_service unix:private/policy"]
    );
    let eff = rendered(&sim, "r1", "smtpd_recipient_restrictions");
    assert!(
        eff.contains("zen.spamhaus.org") && eff.contains("check_policy_service"),
        "{eff}"
    );
    let r1 = r
        .hosts
        .iter()
        .find(|h| h.name == "r1")
        .unwrap()
        .apply
        .clone()
        .unwrap();
    let bs04 = r1.staged.iter().find(|e| e.control == "BS-04").unwrap();
    assert_eq!(
        (bs04.kind.as_str(), bs04.state.as_str()),
        ("server list extended", "kept")
    );
    assert!(!own_values(&sim, "r2").contains_key("zimbraMtaRestriction"));
    assert!(rendered(&sim, "r2", "smtpd_recipient_restrictions").contains("check_policy_service"));
}

/// A single-valued server override that contradicts the desired value is reported and
/// left alone by default (replacing it needs `--replace-overrides`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_masking_override_is_reported_and_left_alone() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![("c1", "c", mta(Legacy, ServerOverride))],
        Duration::from_millis(100),
    )
    .await;
    let pb = sim.playbook(QUICK);
    let o = sim
        .run(&["apply", "-p", pb.to_str().unwrap(), "--yes"])
        .await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let r = sim.latest();
    let f = r.hosts[0]
        .findings
        .iter()
        .find(|f| f.id == "BS-02-OVERRIDE-MASKS-GLOBAL")
        .unwrap_or_else(|| panic!("{:?}", r.hosts[0].findings));
    assert!(
        f.message.contains("server override masks global"),
        "{}",
        f.message
    );
    assert_eq!(
        own_values(&sim, "c1")["zimbraMtaSmtpdRejectUnlistedRecipient"],
        ["no"]
    );
    assert!(sim.fleet.restart_log().is_empty());
}

/// The gate's probe from outside mynetworks (`probe_from = "orchestrator"`, the nodes on
/// their own loopback addresses with port 25). First the vantage is verified from what
/// Postfix logged: with Carbonio's default mynetworks (127.0.0.0/8) this machine is
/// inside, the probe could not see a policy failure, and the canary fails "vantage
/// invalid" (rolled back). With each node's mynetworks its own address only, the probe is
/// outside: a known recipient gets 250 and the unknown ones 5xx; on the node whose policy
/// daemon dies (the socket check switched off to show it) the known recipient gets
/// `451 4.3.5`, which fails the gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(unsafe_code, reason = "geteuid: std cannot ask for the uid")]
async fn the_outside_probe_verifies_its_vantage_and_sees_a_dying_policy_daemon() {
    use Platform::*;
    use Posture::*;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI runs as root: port 25 is needed"
        );
        println!(
            "SKIPPED: needs root (the simulated MTAs listen on port 25 of their own loopback address)"
        );
        return;
    }
    let sim = Sim::start_spec(
        vec![
            ("o1", "o", mta(Legacy, NonCompliant)),
            ("o2", "o", mta(Systemd, NonCompliant)),
        ],
        Duration::from_millis(100),
        |s| {
            s.addressing = carbonio_sim::Addressing::LoopbackIps;
            s.smtp_outside = true;
        },
    )
    .await;
    let rollout = |extra: &str| {
        format!(
            "batch = 1\ncanary = 1\npause = \"0s\"\nmax_failures = 1\nhealth_timeout = \"5s\"\nprobe_from = \"orchestrator\"\nknown_rcpt = \"user1@o.example\"\n{extra}"
        )
    };
    let pb = sim.playbook(&rollout(""));
    let o = sim
        .run(&["apply", "-p", pb.to_str().unwrap(), "--yes"])
        .await;
    assert_eq!(code(&o), ExitCode::Aborted.code(), "{}", explain(&o));
    let r = sim.latest();
    let canary = r
        .hosts
        .iter()
        .find(|h| h.apply.as_ref().unwrap().batch == Some(1))
        .unwrap();
    let ap = canary.apply.as_ref().unwrap();
    let v = gate_check(ap, "vantage");
    assert!(!v.ok, "{v:?}");
    assert!(
        v.detail.contains("vantage invalid") && v.detail.contains("127.0.0.1"),
        "{}",
        v.detail
    );
    assert!(ap.rollback.as_ref().unwrap().ok, "{:?}", ap.rollback);

    // Each node's mynetworks: its own address only (a server-level value).
    for n in ["o1", "o2"] {
        let h = sim.fleet.node(n).unwrap();
        let ip = h.addr().ip();
        h.node().cluster.ldap().servers.get_mut(n).unwrap().insert(
            "zimbraMtaMyNetworks".into(),
            vec![format!("{ip}/32 [::1]/128")],
        );
    }
    let broken =
        "Can't locate Net/LDAP.pm in @INC at /opt/zextras/libexec/zmpostfixpolicyd line 31.";
    sim.fleet.node("o2").unwrap().node().state().policyd_broken = Some(broken.into());
    let pb = sim.playbook(&rollout("policy_socket = false"));
    let o = sim
        .run(&["apply", "-p", pb.to_str().unwrap(), "--yes"])
        .await;
    assert_eq!(code(&o), ExitCode::HostFailed.code(), "{}", explain(&o));
    let r = sim.latest();
    let o1 = r.hosts.iter().find(|h| h.name == "o1").unwrap();
    let ap = o1.apply.as_ref().unwrap();
    assert!(ap.gate.as_ref().unwrap().passed, "{:?}", ap.gate);
    let v = gate_check(ap, "vantage");
    assert!(v.ok && v.detail.contains("outside mynetworks"), "{v:?}");
    assert!(
        gate_check(ap, "smtp-known").detail.contains("→ 250"),
        "{:?}",
        ap.gate
    );
    assert!(
        gate_check(ap, "smtp").detail.contains("→ 550"),
        "{:?}",
        ap.gate
    );
    assert!(
        gate_check(ap, "smtp-alias").detail.contains("→ 550"),
        "{:?}",
        ap.gate
    );
    let sent: Vec<&str> = ap
        .gate
        .as_ref()
        .unwrap()
        .smtp_transcript
        .iter()
        .filter_map(|l| l.strip_prefix("C: "))
        .collect();
    assert!(
        sent.contains(&"RSET") && !sent.iter().any(|c| c.starts_with("DATA")),
        "{sent:?}"
    );
    let o2 = r.hosts.iter().find(|h| h.name == "o2").unwrap();
    let ap = o2.apply.as_ref().unwrap();
    let known = gate_check(ap, "smtp-known");
    assert!(!known.ok && known.detail.contains("451 4.3.5"), "{known:?}");
    assert!(ap.rollback.as_ref().unwrap().ok, "{:?}", ap.rollback);
    assert_eq!(r.promotions[0].state, "promotion-held");
}

/// A node pinned to the old values (inventory var `pin = "true"`) is neither staged nor
/// reloaded, and does not hold the promotion: the promotion batch gives it a permanent
/// server entry with the values it had, before the global config changes, so it never
/// runs the new ones. `check` then reports it as pinned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_node_keeps_the_old_values_through_the_promotion() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![
            ("a1", "a", mta(Legacy, NonCompliant)),
            ("a2", "a", mta(Legacy, NonCompliant)),
        ],
        Duration::from_millis(100),
    )
    .await;
    let inv = sim.fleet.inventory_path();
    let text = std::fs::read_to_string(&inv).unwrap();
    // a2's own `[hosts.vars]` table (the simulator writes its customer there) gets the pin.
    let a2 = text
        .find("name = \"a2\"\n")
        .expect("the inventory names a2");
    let vars =
        a2 + text[a2..].find("[hosts.vars]\n").expect("a2 has vars") + "[hosts.vars]\n".len();
    let pinned = format!("{}pin = \"true\"\n{}", &text[..vars], &text[vars..]);
    std::fs::write(&inv, pinned).unwrap();
    let pb = sim.playbook(
        "batch = 1\ncanary = 1\npause = \"0s\"\nmax_failures = 0\nhealth_timeout = \"20s\"",
    );
    let o = sim
        .run(&["apply", "-p", pb.to_str().unwrap(), "--yes"])
        .await;
    assert_eq!(
        code(&o),
        ExitCode::Drift.code(),
        "a2 stays off, on purpose: {}",
        explain(&o)
    );
    let r = sim.latest();
    let p = &r.promotions[0];
    assert_eq!(p.state, "promoted", "{p:?}");
    assert!(
        p.detail
            .contains("pinned to the old values by a permanent server entry: a2"),
        "{}",
        p.detail
    );
    assert_eq!(
        global_value(&sim, "a1", "zimbraMtaEnableSmtpdPolicyd"),
        ["TRUE"]
    );
    let own = own_values(&sim, "a2");
    assert_eq!(own["zimbraMtaEnableSmtpdPolicyd"], ["FALSE"]);
    assert_eq!(
        own["zimbraMtaRestriction"],
        ["reject_invalid_helo_hostname", "reject_non_fqdn_sender"]
    );
    assert!(rendered(&sim, "a2", "smtpd_recipient_restrictions").contains("permit_mynetworks"));
    assert!(!rendered(&sim, "a2", "smtpd_recipient_restrictions").contains("check_policy_service"));
    let a2 = r.hosts.iter().find(|h| h.name == "a2").unwrap();
    assert!(
        a2.apply.as_ref().unwrap().restart.is_none(),
        "a pinned node is not reloaded"
    );
    assert!(
        a2.findings.iter().any(|f| f.id == "PINNED"),
        "{:?}",
        a2.findings
    );
    assert_eq!(status(&r, "a1"), HostStatus::Compliant);
    assert!(!own_values(&sim, "a1").contains_key("zimbraMtaEnableSmtpdPolicyd"));
}

/// `--no-rollback` keeps a node that failed its gate as it is, for inspection: its staged
/// entries stay, it is not reloaded again, and the report says so; the rollout still
/// aborts and nothing is promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_rollback_keeps_the_failed_node_for_inspection() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![
            ("d1", "d", mta(Legacy, NonCompliant)),
            ("d2", "d", mta(Legacy, NonCompliant)),
        ],
        Duration::from_millis(100),
    )
    .await;
    sim.fleet.node("d1").unwrap().node().state().policyd_broken =
        Some("Can't locate Net/LDAP.pm in @INC".into());
    let pb = sim.playbook(
        "batch = 1\ncanary = 1\npause = \"0s\"\nmax_failures = 0\nhealth_timeout = \"5s\"",
    );
    let o = sim
        .run(&[
            "apply",
            "-p",
            pb.to_str().unwrap(),
            "--yes",
            "--no-rollback",
        ])
        .await;
    assert_eq!(code(&o), ExitCode::Aborted.code(), "{}", explain(&o));
    let r = sim.latest();
    let ap = r
        .hosts
        .iter()
        .find(|h| h.name == "d1")
        .unwrap()
        .apply
        .clone()
        .unwrap();
    assert!(ap.rollback.is_none());
    assert!(
        ap.rollout
            .contains("kept as it is for inspection (--no-rollback)"),
        "{}",
        ap.rollout
    );
    assert!(
        ap.staged.iter().all(|e| e.state == "staged"),
        "{:?}",
        ap.staged
    );
    assert_eq!(
        own_values(&sim, "d1")["zimbraMtaEnableSmtpdPolicyd"],
        ["TRUE"]
    );
    assert_eq!(
        global_value(&sim, "d1", "zimbraMtaEnableSmtpdPolicyd"),
        ["FALSE"]
    );
    assert_eq!(r.promotions[0].state, "not-promoted");
    let journal = std::fs::read_to_string(sim.reports().join("latest/journal.jsonl")).unwrap();
    assert!(journal.contains("\"rollback-skipped\""), "{journal}");
    assert!(!journal.contains("\"rolled-back\""), "{journal}");
}

/// An MTA that LDAP lists for a cluster but the inventory does not have: `check` says the
/// inventory's cluster is not LDAP's (a blocking finding), and apply stages the MTAs it
/// has but holds the promotion, naming the missing one; the global config is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mta_missing_from_the_inventory_is_found_in_ldap_and_holds_the_promotion() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![
            ("a1", "a", mta(Legacy, NonCompliant)),
            ("a2", "a", mta(Legacy, NonCompliant)),
        ],
        Duration::from_millis(100),
    )
    .await;
    let inv = sim.fleet.inventory_path();
    let text = std::fs::read_to_string(&inv).unwrap();
    let start = text
        .find("[[hosts]]\nname = \"a2\"")
        .expect("a2 in the inventory");
    let end = text[start + 1..]
        .find("[[hosts]]")
        .map(|e| start + 1 + e)
        .unwrap_or(text.len());
    std::fs::write(&inv, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let r = sim.latest();
    assert_eq!(r.hosts.len(), 1);
    let f = r.hosts[0]
        .findings
        .iter()
        .find(|f| f.id == "CLUSTER-MTAS")
        .unwrap_or_else(|| panic!("{:?}", r.hosts[0].findings));
    assert!(
        f.blocking && f.message.contains("no inventory host is: a2"),
        "{f:?}"
    );
    let pb = sim.playbook(QUICK);
    let o = sim
        .run(&["apply", "-p", pb.to_str().unwrap(), "--yes"])
        .await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let r = sim.latest();
    let p = &r.promotions[0];
    assert_eq!(p.state, "promotion-held", "{p:?}");
    assert_eq!(p.held_by[0].server.as_deref(), Some("a2"));
    assert!(
        p.held_by[0].reason.contains("the inventory does not have"),
        "{p:?}"
    );
    assert_eq!(
        global_value(&sim, "a1", "zimbraMtaEnableSmtpdPolicyd"),
        ["FALSE"]
    );
}

/// `check | head`: the reader is gone before the summary is printed. The tool ends
/// quietly (141, as SIGPIPE would) with its report written, no panic, no 101.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_into_a_closed_pipe_ends_quietly() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![("p1", "p", mta(Legacy, NonCompliant))],
        Duration::from_millis(100),
    )
    .await;
    let mut c = sim.cmd(&["check"]);
    let o = tokio::task::spawn_blocking(move || {
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        sim.latest().command,
        "check",
        "the report was written first"
    );
}

/// A hostile node opens channels of its own to the client (session, X11, forwarded and
/// direct TCP, agent) while the tool runs commands on it: every one is refused, and the
/// host is checked as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_a_server_opens_on_its_own_are_refused() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![("h1", "h", mta(Legacy, NonCompliant))],
        Duration::from_millis(100),
    )
    .await;
    let node = sim.fleet.node("h1").unwrap().node().clone();
    node.state().open_server_channels = 50;
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    assert_eq!(status(&sim.latest(), "h1"), HostStatus::Drift);
    wait_until("the server tried its channels", || {
        node.server_channels_tried() >= 50
    })
    .await;
    assert_eq!(
        node.server_channels_accepted(),
        0,
        "the client accepted a server-opened channel"
    );
}

/// Two applies at once on one inventory: the second is refused before it contacts
/// anything, naming who holds the lock; the first finishes alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_apply_at_once_is_refused() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![("l1", "l", mta(Legacy, NonCompliant))],
        Duration::from_millis(100),
    )
    .await;
    let pb = sim.playbook(QUICK);
    let pb = pb.to_str().unwrap().to_string();
    let node = sim.fleet.node("l1").unwrap().node().clone();
    let hold = node.hold_restarts();
    let first = {
        let mut c = sim.cmd(&["apply", "-p", &pb, "--yes"]);
        tokio::task::spawn_blocking(move || c.output().unwrap())
    };
    wait_until("the first apply restarting l1", || {
        node.state().is_restarting()
    })
    .await;
    let prov_before = node.prov_invocations();
    let o = sim.run(&["apply", "-p", &pb, "--yes"]).await;
    assert_eq!(code(&o), ExitCode::Usage.code(), "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("another apply is running") && err.contains("since"),
        "{err}"
    );
    assert_eq!(
        node.prov_invocations(),
        prov_before,
        "the second apply contacted the node"
    );
    drop(hold);
    let o = first.await.unwrap();
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    assert_eq!(sim.fleet.restart_log().len(), 1);
}

/// SIGTERM (what systemd and Kubernetes send to stop a job) counts as the first Ctrl-C:
/// the reload in flight finishes, nothing new starts, the report and journal are written,
/// and the exit is 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_rollout_writes_the_report_and_exits_130() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![
            ("t1", "t", mta(Legacy, NonCompliant)),
            ("t2", "u", mta(Legacy, NonCompliant)),
        ],
        Duration::from_millis(100),
    )
    .await;
    let pb = sim.playbook(QUICK.replace("batch = 2", "batch = 1").as_str());
    let holds: Vec<_> = sim
        .fleet
        .nodes()
        .iter()
        .map(|h| h.node().hold_restarts())
        .collect();
    let mut child = sim
        .cmd(&["apply", "-p", pb.to_str().unwrap(), "--yes"])
        .env_remove("CARBONIO_FLEET_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = StderrTap::new(&mut child);
    let journal = first_run_journal(&sim).await;
    wait_for_journal(&journal, "restart-started").await;
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let heard = tokio::task::spawn_blocking(move || {
        let heard = stderr.wait_for("interrupted:", Duration::from_secs(60));
        (heard, stderr)
    });
    let (heard, stderr) = heard.await.unwrap();
    assert!(
        heard,
        "SIGTERM was not taken as an interrupt: {}",
        stderr.text()
    );
    drop(holds);
    let mut out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    out.stderr = stderr.finish().into_bytes();
    assert_eq!(
        code(&out),
        ExitCode::Interrupted.code(),
        "{}",
        explain(&out)
    );
    let r = sim.latest();
    assert_eq!(
        (r.command.as_str(), r.exit_code),
        ("apply", ExitCode::Interrupted.code())
    );
    assert_eq!(
        sim.fleet.restart_log().len(),
        1,
        "nothing new started after SIGTERM"
    );
}

/// A cluster holding another run's staged entries is not a new apply's to continue: a
/// plain apply leaves it alone and says how to finish or undo it; `--resume` finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_runs_staged_cluster_is_refused_unless_resumed() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![
            ("a1", "a", mta(Legacy, NonCompliant)),
            ("a2", "a", mta(Legacy, NonCompliant)),
        ],
        Duration::from_millis(100),
    )
    .await;
    let pb = sim.playbook(
        "batch = 1\ncanary = 1\npause = \"0s\"\nmax_failures = 0\nhealth_timeout = \"20s\"",
    );
    let pb = pb.to_str().unwrap();
    let o = sim
        .run(&["apply", "-p", pb, "--yes", "--limit", "a1"])
        .await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    assert!(own_values(&sim, "a1").contains_key("zimbraMtaEnableSmtpdPolicyd"));
    let o = sim.run(&["apply", "-p", pb, "--yes"]).await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let r = sim.latest();
    assert!(r.promotions.is_empty(), "{:?}", r.promotions);
    let a2 = r.hosts.iter().find(|h| h.name == "a2").unwrap();
    let f = a2
        .findings
        .iter()
        .find(|f| f.id == "BS-01-BLOCKED")
        .unwrap_or_else(|| panic!("{:?}", a2.findings));
    assert!(
        f.message.contains("staged entries of another run (on a1)")
            && f.message.contains("apply --resume"),
        "{}",
        f.message
    );
    assert!(
        !own_values(&sim, "a2").contains_key("zimbraMtaEnableSmtpdPolicyd"),
        "a2 was staged"
    );
    assert_eq!(
        global_value(&sim, "a1", "zimbraMtaEnableSmtpdPolicyd"),
        ["FALSE"]
    );
    let o = sim.run(&["apply", "-p", pb, "--yes", "--resume"]).await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    assert_eq!(sim.latest().promotions[0].state, "promoted");
}

/// A node whose localconfig.xml names the server with a line break and a zmprov command
/// after it: the read-only check never runs that command (the name stops at the first
/// whitespace on the node, and only a host name is accepted from it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostname_with_a_line_break_cannot_inject_into_the_check() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![("h1", "h", mta(Legacy, NonCompliant))],
        Duration::from_millis(100),
    )
    .await;
    let node = sim.fleet.node("h1").unwrap().node().clone();
    {
        let mut st = node.state();
        let lc = st
            .files
            .get_mut("/opt/zextras/conf/localconfig.xml")
            .unwrap();
        let text = String::from_utf8(lc.clone()).unwrap();
        let hostile = text.replace(
            "<value>h1</value>",
            "<value>h1\nmcf zimbraMtaEnableSmtpdPolicyd TRUE</value>",
        );
        assert_ne!(hostile, text, "the seeded localconfig names h1");
        *lc = hostile.into_bytes();
    }
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    assert_eq!(
        global_value(&sim, "h1", "zimbraMtaEnableSmtpdPolicyd"),
        ["FALSE"]
    );
    assert_eq!(
        sim.latest().hosts[0].carbonio_hostname.as_deref(),
        Some("h1")
    );
}

/// A private key that others may read is not used, as OpenSSH refuses it, and the
/// failure says how to fix it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unprotected_private_key_is_refused() {
    use Platform::*;
    use Posture::*;
    use std::os::unix::fs::PermissionsExt as _;
    let sim = Sim::start(
        vec![("k1", "k", mta(Legacy, NonCompliant))],
        Duration::from_millis(100),
    )
    .await;
    let inv = sim.fleet.inventory_path();
    let text = std::fs::read_to_string(&inv).unwrap();
    let key = sim.fleet.identity_path();
    let open = sim.path("open_key");
    std::fs::copy(&key, &open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let shown = key.display().to_string();
    assert!(text.contains(&shown), "the inventory names the key");
    std::fs::write(&inv, text.replace(&shown, &open.display().to_string())).unwrap();
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::HostFailed.code(), "{}", explain(&o));
    let err = sim.latest().hosts[0].error.clone().unwrap();
    assert!(
        err.message
            .contains("UNPROTECTED PRIVATE KEY FILE: permissions 0644 are too open")
            && err.message.contains("chmod 600"),
        "{}",
        err.message
    );
}

/// Whether this machine has an established TCP connection to 127.0.0.1:`port` (the
/// client side, as `/proc/net/tcp` lists it): a `hanging` node's listener never accepts,
/// but the kernel completes the handshake, so this is how a test sees the tool's
/// connection to it in flight.
fn connected_to(port: u16) -> bool {
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    tcp.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[2] == format!("0100007F:{port:04X}") && f[3] == "01"
    })
}

/// SIGTERM stops `check` as it stops `apply`: the host in flight (a node that never
/// speaks SSH) may finish, no other host starts (each is `interrupted`, "not checked");
/// a second signal abandons the one in flight; the report is written, `latest` points
/// to it, and the exit is 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_check_with_a_report_and_exit_130() {
    use Platform::*;
    use Posture::*;
    let hanging = NodeProfile {
        behaviour: carbonio_sim::Behaviour::Hanging,
        ..mta(Legacy, NonCompliant)
    };
    let sim = Sim::start(
        vec![
            ("h1", "h", hanging),
            ("k1", "k", mta(Legacy, NonCompliant)),
            ("k2", "k", mta(Legacy, NonCompliant)),
        ],
        Duration::from_millis(100),
    )
    .await;
    let port = sim.fleet.node("h1").unwrap().addr().port();
    let mut child = sim
        .cmd(&["check", "--forks", "1"])
        .env_remove("CARBONIO_FLEET_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = StderrTap::new(&mut child);
    // The first host's gather is in flight: its TCP connection is up.
    wait_until("the check connected to the hanging node", || {
        connected_to(port)
    })
    .await;
    let kill = |pid: u32| {
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        )
    };
    let pid = child.id();
    kill(pid);
    let (heard, mut stderr) = tokio::task::spawn_blocking(move || {
        let heard = stderr.wait_for("interrupted:", Duration::from_secs(60));
        (heard, stderr)
    })
    .await
    .unwrap();
    assert!(heard, "SIGTERM was not taken: {}", stderr.text());
    kill(pid);
    let out = tokio::task::spawn_blocking(move || {
        let heard = stderr.wait_for("interrupted again", Duration::from_secs(60));
        let mut out = child.wait_with_output().unwrap();
        out.stderr = stderr.finish().into_bytes();
        (heard, out)
    })
    .await
    .unwrap();
    let (heard, out) = out;
    assert!(heard, "{}", explain(&out));
    assert_eq!(
        code(&out),
        ExitCode::Interrupted.code(),
        "{}",
        explain(&out)
    );
    let r = sim.latest();
    assert_eq!(
        (r.command.as_str(), r.exit_code),
        ("check", ExitCode::Interrupted.code())
    );
    let error = |name: &str| {
        let h = r.hosts.iter().find(|h| h.name == name).unwrap();
        let e = h.error.as_ref().unwrap_or_else(|| panic!("{name}: {h:?}"));
        (e.kind.as_str().to_string(), e.message.clone())
    };
    let (kind, message) = error("h1");
    assert_eq!(kind, "interrupted");
    assert!(message.starts_with("abandoned"), "{message}");
    for n in ["k1", "k2"] {
        let (kind, message) = error(n);
        assert_eq!(kind, "interrupted");
        assert!(message.starts_with("not checked"), "{message}");
    }
    assert_eq!(
        sim.fleet.node("k1").unwrap().node().prov_invocations(),
        0,
        "no host started after the first signal"
    );
}

/// The audit trail records every changing command when it is SENT (`command-sent`,
/// exactly as it goes over SSH), then how it ended (`command`): a run killed mid-command
/// still shows what it sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_each_command_before_it_runs() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![("a1", "a", mta(Legacy, NonCompliant))],
        Duration::from_millis(50),
    )
    .await;
    let pb = sim.playbook(QUICK);
    let log = sim.path("audit.jsonl");
    let o = sim
        .run(&[
            "apply",
            "-p",
            pb.to_str().unwrap(),
            "--yes",
            "--log-file",
            log.to_str().unwrap(),
        ])
        .await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |name: &str| -> Vec<(usize, String, String)> {
        events
            .iter()
            .enumerate()
            .filter(|(_, e)| e["event"] == name)
            .map(|(i, e)| {
                (
                    i,
                    e["purpose"].as_str().unwrap().to_string(),
                    e["command"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let (sent, ran) = (of("command-sent"), of("command"));
    assert!(!ran.is_empty() && !sent.is_empty(), "{events:?}");
    // A detached restart's exit status is read afterwards, not sent: its `command`
    // record follows the announced launch.
    for (i, purpose, command) in ran.iter().filter(|(_, p, _)| !p.ends_with("(exit status)")) {
        assert!(
            sent.iter()
                .any(|(j, p, c)| j < i && p == purpose && c == command),
            "`{purpose}` ran without being announced first: {command}"
        );
    }
}

/// `--on-drift CMD` runs only when a sweep shows drift the previous one did not, with the
/// drift on stdin and the report and exit code in its environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_drift_runs_the_hook_for_new_drift_only() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![("c1", "c", mta(Legacy, Compliant))],
        Duration::from_millis(50),
    )
    .await;
    let out = sim.path("hook.txt");
    let hook = format!(
        "cat > {f}; echo \"exit=$CARBONIO_FLEET_EXIT_CODE report=$CARBONIO_FLEET_REPORT\" >> {f}",
        f = out.display()
    );
    let args = ["check", "--on-drift", hook.as_str()];
    let check = || sim.run(&args);
    assert_eq!(code(&check().await), ExitCode::Ok.code());
    assert!(!out.exists(), "no drift, no hook");
    sim.fleet
        .node("c1")
        .unwrap()
        .node()
        .cluster
        .ldap()
        .global
        .insert("zimbraMtaEnableSmtpdPolicyd".into(), vec!["FALSE".into()]);
    let o = check().await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("c1"), "{text}");
    assert!(
        text.contains("exit=2 report=") && text.contains("report.json"),
        "{text}"
    );
    std::fs::remove_file(&out).unwrap();
    assert_eq!(code(&check().await), ExitCode::Drift.code());
    assert!(!out.exists(), "the same drift again is not new");
}

/// `--controls` runs only the named controls and probes: the report holds nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controls_select_what_a_run_checks() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![("s1", "s", mta(Legacy, NonCompliant))],
        Duration::from_millis(50),
    )
    .await;
    let o = sim.run(&["check", "--controls", "BS-02,EFF-02"]).await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let r = sim.latest();
    let h = &r.hosts[0];
    assert_eq!(
        h.controls.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["BS-02"]
    );
    assert_eq!(
        h.probes.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        ["EFF-02"]
    );
    assert!(r.domains.is_empty(), "no domain probe selected");
}

/// Writes a waiver file for `ids` on cluster `cluster`, running out at the end of `expires`.
fn waiver_file(sim: &Sim, ids: &[&str], cluster: &str, expires: &str) -> PathBuf {
    let mut text = String::new();
    for id in ids {
        text.push_str(&format!(
            "[[waiver]]\ncontrol = \"{id}\"\ncluster = \"{cluster}\"\njustification = \"CRM relay sends forged-looking senders (C-1042)\"\nexpires = {expires}\n\n"
        ));
    }
    let p = sim.path(&format!("waivers-{expires}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// A waiver turns the drift it names into an accepted deviation in the exit code and
/// every report format; once it has expired the same drift counts again, and the reports
/// say that the waiver expired and when.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiver_accepts_drift_until_it_expires() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![("c1", "c", mta(Legacy, Compliant))],
        Duration::from_millis(50),
    )
    .await;
    sim.fleet
        .node("c1")
        .unwrap()
        .node()
        .cluster
        .ldap()
        .global
        .insert(
            "zimbraMtaSmtpdRejectUnlistedSender".into(),
            vec!["no".into()],
        );
    let o = sim.run(&["check"]).await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));

    let live = waiver_file(&sim, &["BS-03", "EFF-03"], "c", "2999-12-31");
    let metrics = sim.path("fleet.prom");
    let o = sim
        .run(&[
            "check",
            "--waivers",
            live.to_str().unwrap(),
            "--metrics-file",
            metrics.to_str().unwrap(),
        ])
        .await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    let r = sim.latest();
    let h = &r.hosts[0];
    assert_eq!(h.status, HostStatus::Compliant);
    let bs03 = h.controls.iter().find(|c| c.id == "BS-03").unwrap();
    assert_eq!(
        bs03.verdict,
        Verdict::NonCompliant,
        "the verdict stays true"
    );
    let w = bs03.waiver.as_ref().expect("BS-03 carries its waiver");
    assert!(!w.expired);
    assert_eq!(w.expires, "2999-12-31");
    assert_eq!(w.source, format!("{}:2", live.display()));
    assert_eq!((r.summary.compliant, r.summary.waived), (1, 1));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("WAIVED (1)"), "{stdout}");
    assert!(stdout.contains("c1 BS-03 until 2999-12-31"), "{stdout}");
    let run_dir = sim.reports().join("latest");
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(
        junit.contains("<skipped message=\"waived until 2999-12-31"),
        "{junit}"
    );
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        prom.contains(
            "carbonio_fleet_waiver{host=\"c1\",cluster=\"c\",customer=\"C Ltd\",playbook=\"backscatter-hardening\",id=\"BS-03\",state=\"waived\"} 1"
        ),
        "{prom}"
    );
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains(">waived</span>"), "the HTML shows the badge");

    let expired = waiver_file(&sim, &["BS-03", "EFF-03"], "c", "2000-01-31");
    let o = sim
        .run(&["check", "--waivers", expired.to_str().unwrap()])
        .await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let r = sim.latest();
    let bs03 = r.hosts[0]
        .controls
        .iter()
        .find(|c| c.id == "BS-03")
        .unwrap();
    assert!(bs03.waiver.as_ref().unwrap().expired);
    assert_eq!((r.summary.drift, r.summary.waivers_expired), (1, 1));
    let stdout = String::from_utf8_lossy(&o.stdout);
    // The summary wraps at the width: compare with the line breaks undone.
    let flat = stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(
            "zimbraMtaSmtpdRejectUnlistedSender = no (want yes) (waiver expired 2000-01-31)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("WAIVER EXPIRED (1)"), "{stdout}");
}

/// apply leaves a waived control as it is (BS-03 stays `no` in the cluster's global
/// config) and brings the rest to the playbook: the run ends compliant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_leaves_a_waived_control_as_it_is() {
    use Platform::*;
    use Posture::*;
    let sim = Sim::start(
        vec![("w1", "w", mta(Legacy, NonCompliant))],
        Duration::from_millis(50),
    )
    .await;
    let waivers = waiver_file(&sim, &["BS-03", "EFF-03"], "w", "2999-12-31");
    let o = sim
        .run(&["apply", "--yes", "--waivers", waivers.to_str().unwrap()])
        .await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    assert_eq!(
        global_value(&sim, "w1", "zimbraMtaSmtpdRejectUnlistedSender"),
        ["no"],
        "the waived control was not changed"
    );
    assert_eq!(
        global_value(&sim, "w1", "zimbraMtaSmtpdRejectUnlistedRecipient"),
        ["yes"],
        "the others were"
    );
    let own = own_values(&sim, "w1");
    assert!(
        !own.contains_key("zimbraMtaSmtpdRejectUnlistedSender"),
        "nothing of the waived control was staged on the server entry: {own:?}"
    );
    let r = sim.latest();
    assert_eq!(r.hosts[0].status, HostStatus::Compliant);
    // BS-03 in LDAP and EFF-03 in the restarted Postfix: both accepted.
    assert_eq!(r.summary.waived, 2);
}

/// A waiver never lifts a precondition: with every control and probe of the playbook
/// waived, a node whose enabled policy service cannot start (stock `user=zimbra`) stays
/// in drift on its blocking finding, and the report still carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiver_never_lifts_a_broken_precondition() {
    use Platform::*;
    use Posture::*;
    let broken = NodeProfile {
        spawn_user_missing: true,
        ..mta(Legacy, Compliant)
    };
    let sim = Sim::start(vec![("p1", "p", broken)], Duration::from_millis(50)).await;
    let all = [
        "BS-01", "BS-02", "BS-03", "BS-04", "EFF-01", "EFF-02", "EFF-03", "SMTP-01",
    ];
    let waivers = waiver_file(&sim, &all, "p", "2999-12-31");
    let o = sim
        .run(&["check", "--waivers", waivers.to_str().unwrap()])
        .await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let r = sim.latest();
    let h = &r.hosts[0];
    assert_eq!(h.status, HostStatus::Drift);
    let f = h
        .findings
        .iter()
        .find(|f| f.id == "PRE-POLICY-SPAWN-USER")
        .expect("the precondition finding stays");
    assert!(f.blocking && f.severity == "critical", "{f:?}");
}

/// A DNS server on loopback that holds every question until `release` turns true, then
/// forwards it (and every later one) to `upstream` and relays the answer: a resolver as
/// slow as the test wants, with no clock involved. Returns its address, the release
/// switch and how many questions it has received.
async fn held_dns(
    upstream: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    tokio::sync::watch::Sender<bool>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let sock = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = sock.local_addr().unwrap();
    let (release, mut released) = tokio::sync::watch::channel(false);
    let received = Arc::new(AtomicUsize::new(0));
    let forward =
        move |sock: Arc<tokio::net::UdpSocket>, q: Vec<u8>, from: std::net::SocketAddr| {
            tokio::spawn(async move {
                let up = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                up.send_to(&q, upstream).await.unwrap();
                let mut buf = vec![0u8; 65535];
                if let Ok(n) = up.recv(&mut buf).await {
                    let _ = sock.send_to(&buf[..n], from).await;
                }
            });
        };
    let count = received.clone();
    tokio::spawn(async move {
        let mut held: Vec<(Vec<u8>, std::net::SocketAddr)> = Vec::new();
        let mut buf = vec![0u8; 65535];
        loop {
            tokio::select! {
                r = sock.recv_from(&mut buf) => {
                    let Ok((n, from)) = r else { return };
                    count.fetch_add(1, Ordering::SeqCst);
                    let q = buf[..n].to_vec();
                    if *released.borrow() {
                        forward(sock.clone(), q, from);
                    } else {
                        held.push((q, from));
                    }
                }
                Ok(()) = released.changed() => {
                    for (q, from) in held.drain(..) {
                        forward(sock.clone(), q, from);
                    }
                }
            }
        }
    });
    (addr, release, received)
}

/// The domain pass runs alongside the host sweep: with every DNS question held
/// unanswered, each host's result (`HostFinished`) still arrives, and by then the pass
/// has already asked (its lookups started during the sweep, not after it). Released,
/// the held questions are answered and the domain checks are decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_resolver_never_holds_the_host_sweep_back() {
    use Platform::*;
    use Posture::*;
    use carbonio_fleet::engine::events::{Event, Events};
    use std::sync::atomic::Ordering;
    let sim = Sim::start(
        vec![
            ("a1", "a", mta(Systemd, Compliant)),
            ("a2", "a", mta(Legacy, Compliant)),
            ("b1", "b", mta(Legacy, Compliant)),
        ],
        Duration::from_millis(100),
    )
    .await;
    // The fleet's inventory names its own DNS server; the test's held one goes between.
    let text = std::fs::read_to_string(sim.fleet.inventory_path()).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("dns_servers"))
        .expect("the simulated fleet names its DNS server");
    let upstream: std::net::SocketAddr = line
        .split('"')
        .nth(1)
        .expect("one quoted address")
        .parse()
        .unwrap();
    let (proxy, release, received) = held_dns(upstream).await;
    let inventory = sim.path("inventory-held-dns.toml");
    std::fs::write(
        &inventory,
        text.replace(&upstream.to_string(), &proxy.to_string()),
    )
    .unwrap();
    let opts = carbonio_fleet::engine::run::RunOptions {
        inventory,
        playbook: None,
        limit: None,
        forks: 8,
        report_dir: sim.reports(),
        json: false,
        metrics_file: None,
        split_by_group: false,
        shard: None,
        ssh_config: None,
        controls: None,
        skip_controls: Vec::new(),
        waivers: None,
    };
    let (events, mut rx) = Events::channel();
    // The run and the watch on its events in one task.
    let (_interrupter, interrupts) = carbonio_fleet::engine::interrupt::channel();
    let check = carbonio_fleet::engine::run::check(&opts, &interrupts, events);
    tokio::pin!(check);
    let mut ended = None;
    let mut finished = std::collections::BTreeSet::new();
    while finished.len() < 3 {
        tokio::select! {
            c = &mut check, if ended.is_none() => ended = Some(c),
            e = rx.recv() => match e {
                Some(Event::HostFinished { host, .. }) => {
                    finished.insert(host);
                }
                Some(_) => {}
                None => panic!("the event stream closed before every host's result"),
            },
        }
    }
    assert!(
        received.load(Ordering::SeqCst) > 0,
        "the domain pass had asked nothing while the hosts were swept"
    );
    release.send(true).unwrap();
    let code = match ended {
        Some(c) => c,
        None => check.await,
    }
    .expect("the check runs")
    .exit_code()
    .code();
    assert!(
        code == ExitCode::Ok.code() || code == ExitCode::Drift.code(),
        "exit {code}"
    );
    let report = sim.latest();
    assert_eq!(report.hosts.len(), 3);
    assert_eq!(
        report
            .domains
            .iter()
            .map(|d| d.cluster.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    for d in &report.domains {
        assert_eq!(d.error, None, "{d:?}");
        assert!(!d.domains.is_empty(), "{d:?}");
        assert!(d.read_on.is_some(), "{d:?}");
    }
}

/// The tool's on-node client (`test -S`, then perl) against the emulated socket: root
/// gets the daemon's answer; another user cannot connect; a node whose master has no
/// policy entry has no socket (`test -S` is false, nothing printed).
#[tokio::test]
async fn the_on_node_client_asks_the_socket_as_root_only() {
    use carbonio_fleet::engine::policy_probe::{on_node_command, reply_lines, request};
    use carbonio_sim::shell::run_captured;
    use carbonio_sim::{NodeProfile, Posture, standalone_node};

    const SOCKET: &str = "/opt/zextras/data/postfix/spool/private/policy";

    let on = standalone_node(
        "mx1.example.test",
        NodeProfile {
            posture: Posture::Compliant,
            spawn_user_fixed: true,
            ..NodeProfile::default()
        },
        Duration::ZERO,
        Duration::ZERO,
    );
    let cmd = on_node_command(SOCKET).unwrap();
    let q = request("nobody@example.test");
    let c = run_captured(on.clone(), "root", &cmd, q.as_bytes()).await;
    assert_eq!(c.status, 0, "{c:?}");
    assert_eq!(reply_lines(&c.stdout), ["action=dunno"]);
    let c = run_captured(
        on,
        "zextras",
        &format!("perl -MIO::Socket::UNIX -e x {SOCKET}"),
        b"",
    )
    .await;
    assert_eq!(
        (c.status, c.stderr.trim()),
        (13, format!("connect {SOCKET}: Permission denied").as_str())
    );
    let off = standalone_node(
        "mx2.example.test",
        NodeProfile {
            posture: Posture::NonCompliant,
            ..NodeProfile::default()
        },
        Duration::ZERO,
        Duration::ZERO,
    );
    let c = run_captured(off, "root", &cmd, q.as_bytes()).await;
    assert_eq!(
        (c.status, c.stdout.as_str(), c.stderr.as_str()),
        (1, "", "")
    );
}
