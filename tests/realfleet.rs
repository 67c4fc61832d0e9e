//! End-to-end against REAL OpenSSH servers (tests/support/realfleet.rs): the real
//! binary, real sshd, real `su - zextras`, real bash/getent/grep, and the Carbonio
//! emulator as real processes (`carbonio-fleet sim-exec`). Exit codes are asserted by
//! name, outcomes from report.json, restarts from the emulator's restart logs.
//! Skipped with a visible message without root or namespaces.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use carbonio_fleet::exit;
use carbonio_fleet::sim::{FleetSpec, NodeSpec, max_concurrent, max_concurrent_per_cluster};
use serde_json::Value;
use support::realfleet::{RealFleet, RealFleetOptions};

const BIN: &str = env!("CARGO_BIN_EXE_carbonio-fleet");

/// Node specs from a simulator profile mix (clusters of `cluster_size`).
fn specs(total: usize, mix: &str, cluster_size: usize) -> Vec<NodeSpec> {
    FleetSpec::from_mix(total, mix, cluster_size).unwrap().nodes
}

/// The shipped playbook with another `[rollout]` table.
fn playbook(dir: &Path, rollout: &str) -> PathBuf {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/backscatter.toml"
    ))
    .unwrap();
    let controls = &text[..text.find("[rollout]").expect("playbook has [rollout]")];
    let path = dir.join("playbook.toml");
    std::fs::write(&path, format!("{controls}[rollout]\n{rollout}\n")).unwrap();
    path
}

/// A fast rollout: no pause, short gate.
const FAST: &str = "batch = 2\nper_cluster = 1\ncanary = 1\npause = \"0s\"\nmax_failures = \"50%\"\nrestart = \"auto\"\nhealth_timeout = \"20s\"\nprobe_from = \"node\"\nonly_if_changed = true";

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

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

#[test]
fn check_on_a_mixed_fleet_matches_the_seeded_state() {
    let started = Instant::now();
    let Some(fleet) = RealFleet::start(
        "check_on_a_mixed_fleet",
        specs(
            5,
            "legacy+non-compliant=1,systemd+compliant=1,legacy+half-compliant=1,systemd+restart-pending=1,legacy+server-override+spawn-user-missing=1",
            1,
        ),
        &RealFleetOptions::default(),
    ) else {
        return;
    };
    eprintln!("5 nodes up in {:?}", started.elapsed());
    let reports = fleet.dir.path().join("reports");
    let inv = fleet.inventory();
    let out = tool(&[
        "check",
        "-i",
        inv.to_str().unwrap(),
        "--report-dir",
        reports.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), exit::DRIFT, "{}\n{}", show(&out), fleet.nodes[0].log_text());
    let r = report(&reports);
    for n in &fleet.nodes {
        let h = host(&r, &n.name);
        eprintln!("{} {}: {}", n.name, n.profile, h);
    }
}
