//! `simulate` (a standalone fleet until Ctrl-C: `carbonio-sim simulate`, or
//! `carbonio-fleet simulate`) and the fleet the tool's `demo` command runs against.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::error::SimError;
use super::fleet::{Addressing, Fleet, FleetSpec, NodeSpec};
use super::node::Platform;
use super::profiles::{Behaviour, NodeProfile, NodeRole, Posture};

/// The options of `simulate` (`carbonio-sim simulate`, `carbonio-fleet simulate`): one
/// definition, parsed by both command lines; the field docs are their `--help` text.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateOptions {
    /// Number of simulated nodes
    #[arg(long, value_name = "N")]
    pub nodes: usize,
    /// First port; node i listens on P+i (with --loopback-ips: every node on port P)
    #[arg(long, value_name = "P", default_value_t = 22000)]
    pub port_base: u16,
    /// Mix of node profiles, e.g. "legacy=1,systemd=3"
    #[arg(long, value_name = "STR")]
    pub profile_mix: Option<String>,
    /// Simulated JVM start (a zmprov costs two), e.g. 1s
    #[arg(long, value_name = "DUR", value_parser = crate::duration::parse, default_value = "0s")]
    pub latency: Duration,
    /// How long a simulated restart keeps a node down
    #[arg(long, value_name = "DUR", value_parser = crate::duration::parse, default_value = "1s")]
    pub restart_time: Duration,
    /// Nodes per cluster (nodes of a cluster share one LDAP)
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub cluster_size: usize,
    /// Listen on 127.0.x.y:PORT-BASE (one loopback address per node) instead of consecutive ports
    #[arg(long)]
    pub loopback_ips: bool,
    /// Also answer SMTP from outside mynetworks on each MTA (shows the 451 of a broken policy service)
    #[arg(long)]
    pub smtp_outside: bool,
    /// Where the inventory, known_hosts and keys of the fleet are written
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Runs a fleet until Ctrl-C, printing where its inventory, known_hosts and key are;
/// the error says why the fleet could not start (the caller prints it and chooses the
/// exit status).
pub async fn run_simulate(opts: SimulateOptions) -> Result<(), SimError> {
    let mut spec = FleetSpec::from_mix(
        opts.nodes,
        opts.profile_mix.as_deref().unwrap_or(""),
        opts.cluster_size,
    )?;
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
        None => {
            let t = tempfile::Builder::new()
                .prefix("carbonio-fleet-sim-")
                .tempdir()
                .map_err(SimError::TempDir)?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let summary = summarize(&spec.nodes);
    let started = std::time::Instant::now();
    let fleet = Fleet::start(spec, &dir).await?;
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
    Ok(())
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
        flavour: crate::flavour::Flavour::Carbonio,
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
