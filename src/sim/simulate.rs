//! `carbonio-fleet simulate` (a standalone fleet until Ctrl-C) and the fleet the `demo`
//! command runs against.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::fleet::{Addressing, Fleet, FleetSpec, NodeSpec};
use super::node::Platform;
use super::profiles::{Behaviour, NodeProfile, NodeRole, Posture};

/// Options of `carbonio-fleet simulate`.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Number of nodes.
    pub nodes: usize,
    /// `--profile-mix` (see [`super::profiles`]); `None` = all non-compliant.
    pub profile_mix: Option<String>,
    /// Simulated JVM start per `carbonio prov` process.
    pub latency: Duration,
    /// How long a restart takes.
    pub restart_time: Duration,
    pub port_base: u16,
    /// Listen on 127.0.x.y:port_base instead of consecutive ports.
    pub loopback_ips: bool,
    /// Nodes per cluster (shared LDAP).
    pub cluster_size: usize,
    /// Also serve SMTP from the "outside" vantage on every MTA.
    pub smtp_outside: bool,
    /// Where to write the inventory, known_hosts and key; default: a new temp dir.
    pub dir: Option<PathBuf>,
}

impl Default for SimulateOptions {
    fn default() -> Self {
        SimulateOptions {
            nodes: 10,
            profile_mix: None,
            latency: Duration::ZERO,
            restart_time: Duration::from_secs(1),
            port_base: 22000,
            loopback_ips: false,
            cluster_size: 3,
            smtp_outside: false,
            dir: None,
        }
    }
}

/// Runs a fleet until Ctrl-C; returns the process exit code (0, or 1 when the fleet
/// could not start).
pub async fn run_simulate(opts: SimulateOptions) -> i32 {
    let mut spec = match FleetSpec::from_mix(
        opts.nodes,
        opts.profile_mix.as_deref().unwrap_or(""),
        opts.cluster_size,
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return crate::exit::ExitCode::Usage.code();
        }
    };
    spec.port_base = opts.port_base;
    spec.addressing = if opts.loopback_ips {
        Addressing::LoopbackIps
    } else {
        Addressing::ConsecutivePorts
    };
    spec.jvm_latency = opts.latency;
    spec.restart_time = opts.restart_time;
    spec.smtp_outside = opts.smtp_outside;
    // Keep a temp dir alive for the whole run.
    let (dir, _temp) = match opts.dir.clone() {
        Some(d) => (d, None),
        None => match tempfile::Builder::new()
            .prefix("carbonio-fleet-sim-")
            .tempdir()
        {
            Ok(t) => (t.path().to_path_buf(), Some(t)),
            Err(e) => {
                eprintln!("error: failed to create a temporary directory: {e}");
                return crate::exit::ExitCode::Usage.code();
            }
        },
    };
    let summary = summarize(&spec.nodes);
    let started = std::time::Instant::now();
    let fleet = match Fleet::start(spec, &dir).await {
        Ok(f) => f,
        Err(e) => {
            eprint!("error: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                eprint!("\n  caused by: {s}");
                src = s.source();
            }
            eprintln!();
            return crate::exit::ExitCode::Usage.code();
        }
    };
    println!(
        "simulated fleet: {} nodes up in {:.2?}",
        fleet.nodes().len(),
        started.elapsed()
    );
    println!("inventory:   {}", fleet.inventory_path().display());
    println!("known_hosts: {}", fleet.known_hosts_path().display());
    println!("identity:    {}", fleet.identity_path().display());
    for (profile, count) in summary {
        println!("  {count:>5}  {profile}");
    }
    println!("press Ctrl-C to stop");
    let _ = tokio::signal::ctrl_c().await;
    fleet.shutdown().await;
    crate::exit::ExitCode::Ok.code()
}

fn summarize(nodes: &[NodeSpec]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in nodes {
        *m.entry(n.profile.to_string()).or_insert(0) += 1;
    }
    m
}

/// The demo fleet: 24 nodes in 4 clusters (one per customer), legacy and systemd,
/// non-compliant / half-compliant / compliant / server-override, one node whose policy
/// spawn user is missing, one unreachable node, a mailbox node per cluster; JVM start
/// 300 ms, restarts 2 s. Ports from 22000 on 127.0.0.1.
pub fn demo_spec() -> FleetSpec {
    use Behaviour::*;
    use Platform::*;
    use Posture::*;
    let p = |platform, posture, role, spawn_user_missing, behaviour| NodeProfile {
        platform,
        posture,
        role,
        spawn_user_missing,
        spawn_user_fixed: false,
        zimbra_user_added: false,
        advanced_cli: false,
        catch_all_account: false,
        running: super::profiles::RunningSetup::Loaded,
        flavour: crate::carbonio::flavour::Flavour::Carbonio,
        behaviour,
    };
    let mta = NodeRole::Mta;
    let mbx = NodeRole::Mailbox;
    let layout: [(&str, Vec<NodeProfile>); 4] = [
        (
            "acme",
            vec![
                p(Legacy, NonCompliant, mta, false, Normal),
                p(Legacy, NonCompliant, mta, false, Normal),
                p(Legacy, NonCompliant, mta, false, Normal),
                p(Legacy, NonCompliant, mta, false, Normal),
                p(Legacy, NonCompliant, mta, false, Unreachable),
                p(Legacy, NonCompliant, mbx, false, Normal),
            ],
        ),
        (
            "globex",
            vec![
                p(Systemd, HalfCompliant, mta, false, Normal),
                p(Systemd, HalfCompliant, mta, false, Normal),
                p(Systemd, HalfCompliant, mta, false, Normal),
                p(Systemd, HalfCompliant, mta, false, Normal),
                p(Systemd, HalfCompliant, mta, false, Normal),
                p(Systemd, HalfCompliant, mbx, false, Normal),
            ],
        ),
        (
            "initech",
            vec![
                p(Legacy, Compliant, mta, false, Normal),
                p(Systemd, Compliant, mta, false, Normal),
                p(Legacy, ServerOverride, mta, false, Normal),
                p(Systemd, Compliant, mta, false, Normal),
                p(Legacy, Compliant, mta, false, Normal),
                p(Systemd, Compliant, mbx, false, Normal),
            ],
        ),
        (
            "umbrella",
            vec![
                p(Systemd, NonCompliant, mta, false, Normal),
                p(Legacy, NonCompliant, mta, false, Normal),
                p(Systemd, NonCompliant, mta, true, Normal),
                p(Legacy, NonCompliant, mta, false, Normal),
                p(Systemd, NonCompliant, mta, false, Normal),
                p(Legacy, NonCompliant, mbx, false, Normal),
            ],
        ),
    ];
    let mut nodes = Vec::new();
    for (cluster, profiles) in layout {
        let (mut m, mut b) = (0, 0);
        for profile in profiles {
            let name = if profile.role == NodeRole::Mailbox {
                b += 1;
                format!("mbx{b}.{cluster}.sim.example")
            } else {
                m += 1;
                format!("mta{m}.{cluster}.sim.example")
            };
            nodes.push(NodeSpec {
                name,
                cluster: cluster.to_string(),
                profile,
                groups: vec![cluster.to_string()],
            });
        }
    }
    FleetSpec {
        nodes,
        port_base: 22000,
        addressing: Addressing::ConsecutivePorts,
        jvm_latency: Duration::from_millis(300),
        restart_time: Duration::from_secs(2),
        smtp_outside: false,
        // Carbonio's default `zmconfigd_interval` (docs/carbonio.md §3).
        zmconfigd_interval: Some(Duration::from_secs(60)),
        mynetworks: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_has_what_the_spec_promises() {
        let s = demo_spec();
        assert_eq!(s.nodes.len(), 24);
        let clusters: std::collections::BTreeSet<_> =
            s.nodes.iter().map(|n| n.cluster.as_str()).collect();
        assert_eq!(clusters.len(), 4);
        assert_eq!(
            s.nodes
                .iter()
                .filter(|n| n.profile.spawn_user_missing)
                .count(),
            1
        );
        assert_eq!(
            s.nodes
                .iter()
                .filter(|n| n.profile.behaviour == Behaviour::Unreachable)
                .count(),
            1
        );
        assert!(
            s.nodes
                .iter()
                .any(|n| n.profile.platform == Platform::Legacy)
        );
        assert!(
            s.nodes
                .iter()
                .any(|n| n.profile.platform == Platform::Systemd)
        );
        assert!(
            s.nodes
                .iter()
                .any(|n| n.profile.posture == Posture::ServerOverride)
        );
    }
}
