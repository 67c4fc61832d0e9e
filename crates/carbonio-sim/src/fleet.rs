//! A running simulated fleet: one russh server per node (own ed25519 host key) on
//! 127.0.0.1 with consecutive ports or on distinct loopback addresses, the cluster LDAPs,
//! and the files a client needs (`inventory.toml`, `known_hosts`, `id_ed25519`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PublicKey;
use russh::keys::ssh_key::{Algorithm, LineEnding, PrivateKey};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::attrs::AttrMap;
use super::dns;
use super::error::SimError;
use super::node::{
    ClusterState, FileMeta, GroupEntry, Ldap, Node, NodeState, PasswdEntry, localconfig_xml,
};
use super::postfix::master_cf_in_for;
use super::profiles::{
    Behaviour, NodeProfile, Posture, RunningSetup, SpawnSetup, global_attrs, parse_mix,
};
use super::restarts::{RestartLog, RestartRecord};
use super::server::{Endpoint, accept_loop, smtp_outside_loop};
use crate::flavour::Flavour;

/// One node to simulate.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Inventory name and Carbonio hostname.
    pub name: String,
    /// Nodes with the same cluster share one LDAP; its global config is seeded from the
    /// posture of the cluster's first node.
    pub cluster: String,
    pub profile: NodeProfile,
    /// Inventory groups (besides the platform group every host gets).
    pub groups: Vec<String>,
}

/// Where nodes listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// 127.0.0.1, ports `port_base`, `port_base + 1`, …
    ConsecutivePorts,
    /// 127.0.x.y (never 127.0.0.1), all on port `port_base`; outside SMTP on port 25.
    LoopbackIps,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub nodes: Vec<NodeSpec>,
    pub port_base: u16,
    pub addressing: Addressing,
    /// One simulated JVM start (a `zmprov` costs two, `zmcontrol` and `zmhostname` one:
    /// see [`super::programs::jvm_starts`]).
    pub jvm_latency: Duration,
    /// How long a restart keeps a node down.
    pub restart_time: Duration,
    /// Also give every MTA an SMTP listener that treats clients as outside mynetworks.
    pub smtp_outside: bool,
    /// zmconfigd's polling interval on every MTA ([`super::zmconfigd`]); `None`: no
    /// zmconfigd (LDAP changes reach the files only through configrewrite or a restart).
    pub zmconfigd_interval: Option<Duration>,
    /// Every cluster's `zimbraMtaMyNetworks` instead of Carbonio's default (the
    /// real-process fleet: the node's own address only, so that its relay's second
    /// loopback address is a client from outside).
    pub mynetworks: Option<String>,
}

impl Default for FleetSpec {
    fn default() -> Self {
        FleetSpec {
            nodes: Vec::new(),
            port_base: 22000,
            addressing: Addressing::ConsecutivePorts,
            jvm_latency: Duration::ZERO,
            restart_time: Duration::from_millis(200),
            smtp_outside: false,
            zmconfigd_interval: None,
            mynetworks: None,
        }
    }
}

impl FleetSpec {
    /// A cluster's global config for `posture`, with this fleet's mynetworks.
    fn global_attrs(&self, posture: Posture) -> super::attrs::AttrMap {
        let mut g = global_attrs(posture);
        if let Some(m) = &self.mynetworks {
            g.insert("zimbraMtaMyNetworks".into(), vec![m.clone()]);
        }
        g
    }

    /// `total` nodes following a `--profile-mix` (see [`super::profiles`]); the nodes of
    /// each mix entry are grouped into clusters of up to `cluster_size`.
    pub fn from_mix(total: usize, mix: &str, cluster_size: usize) -> Result<FleetSpec, SimError> {
        let cluster_size = cluster_size.max(1);
        let mut nodes = Vec::new();
        let mut cluster_no = 0usize;
        for entry in parse_mix(mix, total)? {
            for chunk in entry.profiles.chunks(cluster_size) {
                cluster_no += 1;
                let cluster = format!("c{cluster_no:03}");
                for (k, profile) in chunk.iter().enumerate() {
                    let role = if profile.role == super::profiles::NodeRole::Mailbox {
                        "mbx"
                    } else {
                        "mta"
                    };
                    nodes.push(NodeSpec {
                        name: format!("{role}{}.{cluster}.sim.example", k + 1),
                        cluster: cluster.clone(),
                        profile: *profile,
                        groups: Vec::new(),
                    });
                }
            }
        }
        Ok(FleetSpec {
            nodes,
            ..FleetSpec::default()
        })
    }
}

/// A test's view of one node.
#[derive(Clone)]
pub struct NodeHandle {
    node: Arc<Node>,
    addr: SocketAddr,
    smtp_outside: Option<SocketAddr>,
    profile: NodeProfile,
}

/// A copy of a node's state and of its LDAP view.
#[derive(Debug, Clone)]
pub struct NodeSnapshot {
    pub state: NodeState,
    /// Global config of the node's cluster.
    pub global: AttrMap,
    /// Values set on the node's own server entry.
    pub server: AttrMap,
    pub services: Vec<String>,
}

impl NodeHandle {
    /// The node's name.
    pub fn name(&self) -> &str {
        &self.node.name
    }

    /// Its SSH address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its profile.
    pub fn profile(&self) -> NodeProfile {
        self.profile
    }

    /// Its cluster.
    pub fn cluster(&self) -> &str {
        &self.node.cluster.name
    }

    /// The outside-vantage SMTP listener, if the fleet has them and the node is an MTA.
    pub fn smtp_outside_addr(&self) -> Option<SocketAddr> {
        self.smtp_outside
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> NodeSnapshot {
        let state = self.node.state().clone();
        let ldap = self.node.cluster.ldap();
        NodeSnapshot {
            global: ldap.global.clone(),
            server: ldap
                .servers
                .get(&state.hostname)
                .cloned()
                .unwrap_or_default(),
            services: ldap.services(&state.hostname),
            state,
        }
    }

    /// `zmprov`/`carbonio` processes started on the node.
    pub fn prov_invocations(&self) -> u64 {
        self.node.prov_invocations()
    }

    /// Makes the next restart fail (MTA stays stopped, exit 1).
    pub fn set_fail_next_restart(&self, fail: bool) {
        self.node.state().fail_next_restart = fail;
    }

    /// Changes how long restarts take.
    pub fn set_restart_time(&self, t: Duration) {
        self.node.state().restart_time = t;
    }

    /// Changes the simulated JVM start.
    pub fn set_jvm_latency(&self, t: Duration) {
        self.node.state().jvm_latency = t;
    }

    /// The virtual mail log.
    pub fn mail_log(&self) -> String {
        let st = self.node.state();
        String::from_utf8_lossy(
            st.files
                .get(st.flavour.mail_log())
                .map(Vec::as_slice)
                .unwrap_or_default(),
        )
        .into_owned()
    }

    /// The node itself, for tests that need more.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }
}

/// A running fleet.
pub struct Fleet {
    dir: PathBuf,
    handles: Vec<NodeHandle>,
    restarts: Arc<RestartLog>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Serialize)]
struct InventoryFile {
    defaults: InventoryDefaults,
    groups: BTreeMap<String, BTreeMap<String, String>>,
    hosts: Vec<InventoryHost>,
}

#[derive(Serialize)]
struct InventoryDefaults {
    user: String,
    identity_files: Vec<String>,
    known_hosts: String,
    host_key_policy: String,
    #[serde(rename = "become")]
    become_: String,
    /// The fleet's own DNS server, which publishes the hosted domains' records.
    dns_servers: Vec<String>,
}

#[derive(Serialize)]
struct InventoryHost {
    name: String,
    address: String,
    port: u16,
    cluster: String,
    groups: Vec<String>,
    /// The cluster's MTA egress address, which its SPF must cover.
    egress: Vec<String>,
    /// `customer`: one per cluster, as an MSP's inventory labels its customers (the
    /// default playbook's report label).
    vars: BTreeMap<String, String>,
}

/// The simulated customer owning `cluster`: `acme` → `Acme Ltd`.
fn customer_of(cluster: &str) -> String {
    let mut c = cluster.chars();
    match c.next() {
        Some(first) => format!("{}{} Ltd", first.to_uppercase(), c.as_str()),
        None => "Unnamed Ltd".to_string(),
    }
}

/// Raises the soft open-files limit to the hard one: thousands of nodes need a
/// descriptor per listener and two per connection.
#[expect(unsafe_code, reason = "setrlimit: std cannot change limits")]
fn raise_nofile_limit() {
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<(), SimError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| SimError::Write {
        path: path.to_path_buf(),
        source,
    };
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(content).map_err(err)
}

fn new_key() -> Result<PrivateKey, SimError> {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).map_err(SimError::Key)
}

fn node_addr(spec: &FleetSpec, i: usize) -> Result<SocketAddr, SimError> {
    match spec.addressing {
        Addressing::ConsecutivePorts => {
            let port = usize::from(spec.port_base) + i;
            let port = u16::try_from(port).map_err(|_| SimError::TooMany {
                what: "consecutive ports",
                max: 65535 - usize::from(spec.port_base),
            })?;
            Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
        }
        Addressing::LoopbackIps => {
            let (hi, lo) = (1 + i / 250, 1 + i % 250);
            let hi = u8::try_from(hi).map_err(|_| SimError::TooMany {
                what: "loopback addresses",
                max: 250 * 255,
            })?;
            Ok(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(127, 0, hi, lo as u8)),
                spec.port_base,
            ))
        }
    }
}

fn known_hosts_host(addr: SocketAddr) -> String {
    if addr.port() == 22 {
        addr.ip().to_string()
    } else {
        format!("[{}]:{}", addr.ip(), addr.port())
    }
}

fn node_state(spec: &FleetSpec, n: &NodeSpec) -> NodeState {
    let p = n.profile;
    let flavour = p.flavour;
    let service = flavour.user();
    let mut passwd = vec![
        PasswdEntry::new("root", 0, "root", "/root", "/bin/bash"),
        PasswdEntry::new("daemon", 1, "daemon", "/usr/sbin", "/usr/sbin/nologin"),
        PasswdEntry::new(
            "postfix",
            105,
            "",
            "/var/spool/postfix",
            "/usr/sbin/nologin",
        ),
        PasswdEntry::new(
            service,
            999,
            &format!("{service} user"),
            flavour.home(),
            "/bin/bash",
        ),
    ];
    // No Carbonio package creates `zimbra` (docs/carbonio.md §1): a stock Carbonio node's
    // template names a user that does not exist; a fixed one spawns as zextras (a
    // hand-made `zimbra` user would not help: it cannot read localconfig.xml). On Zimbra
    // the stock `user=zimbra` is the service user itself, which owns localconfig.xml.
    let spawn_user = match (flavour, p.spawn_setup()) {
        (Flavour::Zimbra, _) => "zimbra",
        (_, SpawnSetup::Stock | SpawnSetup::ZimbraAdded) => "zimbra",
        (_, SpawnSetup::Fixed) => "zextras",
    };
    // Each user's own primary group; an added `zimbra` is a supplementary member of
    // zextras (which spawn drops).
    let mut groups: Vec<GroupEntry> = passwd
        .iter()
        .map(|u| GroupEntry {
            name: u.name.clone(),
            gid: u.gid,
            members: Vec::new(),
        })
        .collect();
    if flavour == Flavour::Carbonio && p.spawn_setup() == SpawnSetup::ZimbraAdded {
        passwd.push(PasswdEntry::new(
            "zimbra",
            998,
            "",
            "/opt/zimbra",
            "/usr/sbin/nologin",
        ));
        groups.push(GroupEntry {
            name: "zimbra".into(),
            gid: 998,
            members: Vec::new(),
        });
        if let Some(z) = groups.iter_mut().find(|g| g.name == "zextras") {
            z.members.push("zimbra".into());
        }
    }
    let mut files = BTreeMap::new();
    files.insert(
        flavour.master_template().to_string(),
        master_cf_in_for(flavour, spawn_user).into_bytes(),
    );
    let (version_file, version_text) = p.version_file();
    files.insert(version_file.to_string(), version_text.into_bytes());
    files.insert(
        "/etc/hostname".to_string(),
        format!("{}\n", n.name).into_bytes(),
    );
    files.insert(flavour.mail_log().to_string(), Vec::new());
    files.insert(
        flavour.localconfig().to_string(),
        localconfig_xml(&n.name).into_bytes(),
    );
    let (mut jvm, mut restart) = (spec.jvm_latency, spec.restart_time);
    if p.behaviour == Behaviour::Slow {
        jvm += Duration::from_millis(1500);
        restart *= 3;
    }
    NodeState {
        hostname: n.name.clone(),
        platform: p.platform,
        version: p.version().to_string(),
        passwd,
        groups,
        file_meta: BTreeMap::from([(
            flavour.localconfig().to_string(),
            FileMeta {
                uid: 999,
                gid: 999,
                mode: 0o640,
            },
        )]),
        login_users: ["root", service].map(String::from).into_iter().collect(),
        sudo_users: BTreeSet::new(),
        files,
        postfix: None,
        stopped: BTreeSet::new(),
        restarting_until: None,
        fail_next_restart: false,
        restart_time: restart,
        jvm_latency: jvm,
        advanced_cli: p.advanced_cli,
        mtimes: BTreeMap::new(),
        master_started: None,
        flavour,
        loaded_master: None,
        policyd_broken: None,
        open_server_channels: 0,
    }
}

/// One node with its own single-node cluster and no SSH endpoint: for unit tests and
/// offline checks of the emulated programs (see [`super::shell::run_captured`]).
pub fn standalone_node(
    name: &str,
    profile: NodeProfile,
    jvm_latency: Duration,
    restart_time: Duration,
) -> Arc<Node> {
    let spec = FleetSpec {
        jvm_latency,
        restart_time,
        ..FleetSpec::default()
    };
    let n = NodeSpec {
        name: name.into(),
        cluster: name.into(),
        profile,
        groups: Vec::new(),
    };
    let domain = "example.test".to_string();
    let seed = if profile.posture == Posture::RestartPending {
        Posture::NonCompliant
    } else {
        profile.posture
    };
    let mut ldap = Ldap {
        global: global_attrs(seed),
        servers: BTreeMap::new(),
        addresses: ["postmaster", "admin", "user1"]
            .iter()
            .map(|u| format!("{u}@{domain}"))
            .collect(),
        domains: vec![domain],
        refused: BTreeSet::new(),
        domain_attrs: BTreeMap::new(),
        catch_all_accounts: BTreeMap::new(),
    };
    ldap.servers.insert(name.into(), profile.server_attrs(name));
    let cluster = Arc::new(ClusterState::new(name, ldap));
    let node = Arc::new(Node::new(
        name,
        cluster.clone(),
        node_state(&spec, &n),
        Arc::new(RestartLog::default()),
    ));
    if profile.posture == Posture::RestartPending {
        cluster.ldap().global = global_attrs(Posture::Compliant);
    }
    node
}

/// The nodes of `spec` with their cluster LDAPs, as [`Fleet::start`] serves them: each
/// cluster's global config is seeded from its first node's posture, every node gets its
/// server entry, Postfix is rendered, and restart-pending clusters then move LDAP on
/// without a restart. `adjust` edits each node's local state before Postfix is first
/// rendered (`sim-exec` seeding makes it match the real machine: users, master.cf.in).
pub fn build_nodes(
    spec: &FleetSpec,
    restarts: Arc<RestartLog>,
    adjust: impl Fn(&NodeSpec, &mut NodeState),
) -> (Vec<Arc<Node>>, Vec<dns::ClusterDomains>) {
    // Cluster LDAPs, seeded from each cluster's first node; the cluster's hosted
    // domains and what DNS publishes for them follow the same posture.
    let mut clusters: BTreeMap<String, (Ldap, Posture)> = BTreeMap::new();
    let mut cluster_order: Vec<dns::ClusterDomains> = Vec::new();
    for n in &spec.nodes {
        let (ldap, _) = clusters.entry(n.cluster.clone()).or_insert_with(|| {
            // A restart-pending cluster starts non-compliant; LDAP moves on below.
            let seed = if n.profile.posture == Posture::RestartPending {
                Posture::NonCompliant
            } else {
                n.profile.posture
            };
            let domain = dns::primary_domain(&n.cluster);
            let index = cluster_order.len();
            let published = dns::ClusterDomains {
                cluster: n.cluster.clone(),
                quality: dns::DomainQuality::of(n.profile.posture),
                egress: dns::egress_of(index),
            };
            let entries = dns::domain_entries(&published);
            cluster_order.push(published);
            let ldap = Ldap {
                global: spec.global_attrs(seed),
                servers: BTreeMap::new(),
                addresses: ["postmaster", "admin", "user1", "user2"]
                    .iter()
                    .map(|u| format!("{u}@{domain}"))
                    .collect(),
                domains: entries.iter().map(|(d, _)| d.clone()).collect(),
                domain_attrs: entries.into_iter().collect(),
                refused: BTreeSet::new(),
                // A catch-all on an account makes the local domain's every address
                // "known" too: then no hosted domain can show backscatter.
                catch_all_accounts: if n.profile.catch_all_account {
                    BTreeMap::from([(format!("catchall@{domain}"), format!("@{domain}"))])
                } else {
                    BTreeMap::new()
                },
            };
            (ldap, n.profile.posture)
        });
        ldap.servers
            .insert(n.name.clone(), n.profile.server_attrs(&n.name));
    }
    let mut cluster_states: BTreeMap<String, (Arc<ClusterState>, Posture)> = BTreeMap::new();
    for (name, (ldap, posture)) in clusters {
        cluster_states.insert(
            name.clone(),
            (Arc::new(ClusterState::new(name, ldap)), posture),
        );
    }

    let nodes: Vec<Arc<Node>> = spec
        .nodes
        .iter()
        .map(|n| {
            let mut state = node_state(spec, n);
            adjust(n, &mut state);
            let node = Arc::new(Node::new(
                n.name.clone(),
                cluster_states[&n.cluster].0.clone(),
                state,
                restarts.clone(),
            ));
            age_master(&node, n.profile.running);
            node
        })
        .collect();
    // Restart-pending clusters: Postfix was rendered from the old LDAP; now LDAP is
    // compliant and nobody restarted.
    for (cluster, posture) in cluster_states.values() {
        if *posture == Posture::RestartPending {
            cluster.ldap().global = spec.global_attrs(Posture::Compliant);
        }
    }
    (nodes, cluster_order)
}

/// Gives a node's master, master.cf and mail log the history its profile says.
fn age_master(node: &Node, setup: RunningSetup) {
    if setup == RunningSetup::Loaded || node.state().master_started.is_none() {
        return;
    }
    let now = super::node::unix_now();
    let (master, written, log_from) = match setup {
        RunningSetup::NotReloaded => (now - 2 * 86_400, now - 3_600, now - 2 * 86_400),
        _ => (now - 30 * 86_400, now - 3 * 86_400, now - 3_600),
    };
    {
        let mut st = node.state();
        st.master_started = Some(master);
        let flavour = st.flavour;
        st.mtimes.insert(flavour.master_cf().into(), written);
        st.files.remove(flavour.mail_log());
    }
    let at = |t: i64| jiff::Timestamp::from_second(t).expect("a time in range");
    if setup == RunningSetup::NotReloaded {
        let line = super::node::master_started_line(node.state().flavour);
        node.log_mail_at(at(master), "postfix/master", &line);
    } else {
        node.log_mail_at(
            at(log_from),
            "postfix/anvil",
            "statistics: max connection rate 1/60s",
        );
    }
}

/// Refuses a spec without nodes or with two nodes of one name.
fn check_names(spec: &FleetSpec) -> Result<(), SimError> {
    if spec.nodes.is_empty() {
        return Err(SimError::Empty);
    }
    let mut seen = HashSet::new();
    for n in &spec.nodes {
        if !seen.insert(n.name.as_str()) {
            return Err(SimError::DuplicateNode(n.name.clone()));
        }
    }
    Ok(())
}

/// Creates the fleet's directory if needed; its canonical path.
fn create_dir(dir: &Path) -> Result<PathBuf, SimError> {
    std::fs::create_dir_all(dir).map_err(|source| SimError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    std::fs::canonicalize(dir).map_err(|source| SimError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes a new client key pair (`id_ed25519`, `id_ed25519.pub`) into `dir`: the private
/// key's path and the public key every node accepts.
fn write_client_key(dir: &Path) -> Result<(PathBuf, Arc<PublicKey>), SimError> {
    let client = new_key()?;
    let identity = dir.join("id_ed25519");
    write_file(
        &identity,
        client
            .to_openssh(LineEnding::LF)
            .map_err(SimError::Key)?
            .as_bytes(),
        0o600,
    )?;
    let client_pub = client.public_key().clone();
    write_file(
        &dir.join("id_ed25519.pub"),
        format!("{}\n", client_pub.to_openssh().map_err(SimError::Key)?).as_bytes(),
        0o644,
    )?;
    Ok((identity, Arc::new(client_pub)))
}

/// The node's `known_hosts` line: its host key, or another key when its profile is a
/// changed host key.
fn known_hosts_line(
    n: &NodeSpec,
    addr: SocketAddr,
    host_key: &PrivateKey,
) -> Result<String, SimError> {
    let listed = if n.profile.behaviour == Behaviour::HostkeyChanged {
        new_key()?
    } else {
        host_key.clone()
    };
    Ok(format!(
        "{} {}\n",
        known_hosts_host(addr),
        listed.public_key().to_openssh().map_err(SimError::Key)?
    ))
}

/// Listens on the node's SSH address and serves it as its profile says (refused
/// authentication, a hanging server); the accept loop's task.
async fn serve_ssh(
    n: &NodeSpec,
    node: &Arc<Node>,
    addr: SocketAddr,
    host_key: PrivateKey,
    client_pub: &Arc<PublicKey>,
    cancel: &CancellationToken,
) -> Result<JoinHandle<()>, SimError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind {
            node: n.name.clone(),
            addr,
            source,
        })?;
    let config = server::Config {
        keys: vec![host_key],
        auth_rejection_time: Duration::from_millis(50),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: Some(Duration::from_secs(3600)),
        nodelay: true,
        ..Default::default()
    };
    let ep = Endpoint {
        node: node.clone(),
        config: Arc::new(config),
        client_key: client_pub.clone(),
        refuse_auth: n.profile.behaviour == Behaviour::AuthRefused,
        hang: n.profile.behaviour == Behaviour::Hanging,
    };
    Ok(tokio::spawn(accept_loop(listener, ep, cancel.clone())))
}

/// Gives an MTA its SMTP listener for clients outside mynetworks (port 25 on its own
/// loopback address, else any port): the address it got and the listener's task.
async fn serve_smtp_outside(
    spec: &FleetSpec,
    n: &NodeSpec,
    node: &Arc<Node>,
    addr: SocketAddr,
    cancel: &CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), SimError> {
    let port = if spec.addressing == Addressing::LoopbackIps {
        25
    } else {
        0
    };
    let want = SocketAddr::new(addr.ip(), port);
    let l = TcpListener::bind(want)
        .await
        .map_err(|source| SimError::Bind {
            node: n.name.clone(),
            addr: want,
            source,
        })?;
    let at = l.local_addr().map_err(|source| SimError::Bind {
        node: n.name.clone(),
        addr: want,
        source,
    })?;
    Ok((
        at,
        tokio::spawn(smtp_outside_loop(l, node.clone(), cancel.clone())),
    ))
}

/// The node's inventory entry (its platform group first, then its own), adding its
/// groups to `groups`.
fn inventory_host(
    n: &NodeSpec,
    addr: SocketAddr,
    egress: IpAddr,
    groups: &mut BTreeMap<String, BTreeMap<String, String>>,
) -> InventoryHost {
    let mut g = vec![n.profile.platform.as_str().to_string()];
    g.extend(n.groups.iter().cloned());
    for name in &g {
        groups.entry(name.clone()).or_default();
    }
    InventoryHost {
        name: n.name.clone(),
        address: addr.ip().to_string(),
        port: addr.port(),
        cluster: n.cluster.clone(),
        groups: g,
        egress: vec![egress.to_string()],
        vars: [("customer".to_string(), customer_of(&n.cluster))].into(),
    }
}

/// Writes `inventory.toml`: the fleet's hosts, with the client key, `known_hosts` and
/// the fleet's DNS server as defaults.
fn write_inventory(
    dir: &Path,
    identity: &Path,
    dns_addr: SocketAddr,
    groups: BTreeMap<String, BTreeMap<String, String>>,
    hosts: Vec<InventoryHost>,
) -> Result<(), SimError> {
    let inventory = InventoryFile {
        defaults: InventoryDefaults {
            user: "root".into(),
            identity_files: vec![identity.display().to_string()],
            known_hosts: dir.join("known_hosts").display().to_string(),
            host_key_policy: "strict".into(),
            become_: "auto".into(),
            dns_servers: vec![dns_addr.to_string()],
        },
        groups,
        hosts,
    };
    let toml = toml::to_string(&inventory).map_err(SimError::Inventory)?;
    let header = "# Simulated Carbonio fleet written by `carbonio-fleet simulate`; throwaway.\n";
    write_file(
        &dir.join("inventory.toml"),
        format!("{header}{toml}").as_bytes(),
        0o644,
    )
}

impl Fleet {
    /// Starts every node and writes `inventory.toml`, `known_hosts` and `id_ed25519`
    /// into `dir` (created if needed).
    pub async fn start(spec: FleetSpec, dir: &Path) -> Result<Fleet, SimError> {
        check_names(&spec)?;
        raise_nofile_limit();
        let dir = create_dir(dir)?;
        let (identity, client_pub) = write_client_key(&dir)?;

        let restarts = Arc::new(RestartLog::default());
        let (nodes, cluster_order) = build_nodes(&spec, restarts.clone(), |_, _| {});

        let cancel = CancellationToken::new();
        let mut tasks = Vec::new();
        let (dns_addr, dns_task) = dns::serve(&cluster_order, cancel.clone()).await?;
        tasks.push(dns_task);
        let egress: BTreeMap<&str, IpAddr> = cluster_order
            .iter()
            .map(|c| (c.cluster.as_str(), c.egress))
            .collect();
        let mut handles = Vec::new();
        let mut known_hosts = String::new();
        let mut hosts = Vec::new();
        let mut groups: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (i, (n, node)) in spec.nodes.iter().zip(nodes).enumerate() {
            let addr = node_addr(&spec, i)?;
            let host_key = new_key()?;
            known_hosts.push_str(&known_hosts_line(n, addr, &host_key)?);
            if n.profile.behaviour != Behaviour::Unreachable {
                tasks.push(serve_ssh(n, &node, addr, host_key, &client_pub, &cancel).await?);
            }
            if let Some(interval) = spec.zmconfigd_interval
                && node.is_mta()
            {
                tasks.push(tokio::spawn(super::zmconfigd::run(
                    node.clone(),
                    interval,
                    cancel.clone(),
                )));
            }
            let mut smtp_outside = None;
            if spec.smtp_outside && node.is_mta() && n.profile.behaviour != Behaviour::Unreachable {
                let (at, task) = serve_smtp_outside(&spec, n, &node, addr, &cancel).await?;
                smtp_outside = Some(at);
                tasks.push(task);
            }
            hosts.push(inventory_host(
                n,
                addr,
                egress[n.cluster.as_str()],
                &mut groups,
            ));
            handles.push(NodeHandle {
                node,
                addr,
                smtp_outside,
                profile: n.profile,
            });
        }

        write_inventory(&dir, &identity, dns_addr, groups, hosts)?;
        write_file(&dir.join("known_hosts"), known_hosts.as_bytes(), 0o644)?;
        Ok(Fleet {
            dir,
            handles,
            restarts,
            cancel,
            tasks,
        })
    }

    /// `dir/inventory.toml`.
    pub fn inventory_path(&self) -> PathBuf {
        self.dir.join("inventory.toml")
    }

    /// `dir/known_hosts`.
    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// `dir/id_ed25519` (the client key every node accepts for root and zextras).
    pub fn identity_path(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<NodeHandle> {
        self.handles.iter().find(|h| h.name() == name).cloned()
    }

    /// Every node, in spec order.
    pub fn nodes(&self) -> &[NodeHandle] {
        &self.handles
    }

    /// Every finished restart so far.
    pub fn restart_log(&self) -> Vec<RestartRecord> {
        self.restarts.snapshot()
    }

    /// Stops listening, disconnects every session and waits for the listeners to end.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

use russh::server;
