//! State of one simulated Carbonio node and of the LDAP its cluster shares.
//!
//! The cluster's LDAP ([`ClusterState`]) holds the global config, one server entry per
//! node (server-level attributes, `zimbraServiceEnabled`), hosted domains and accounts:
//! `mcf` on one node is seen by all. [`NodeState`] holds what is local to the machine:
//! platform, OS users, sudo rights, virtual files, service status and the EFFECTIVE
//! Postfix config, which is re-rendered from LDAP only when the node restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::attrs::{AttrMap, lookup};
use super::postfix::{EffectivePostfix, MasterEntry, RenderInput};
use super::restarts::{RestartLog, RestartMethod};
use crate::flavour::Flavour;

/// Where systemd keeps its runtime state: a directory only while systemd is PID 1
/// (sd_booted(3)), so it exists on a [`Platform::Systemd`] node and not on a legacy one.
pub const SYSTEMD_RUN: &str = "/run/systemd/system";

/// Service manager generation of a node (docs/carbonio.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Platform {
    /// `zmcontrol` manages services (Ubuntu 22.04 / RHEL 8).
    Legacy,
    /// Carbonio systemd targets (Ubuntu 24.04 / RHEL 9); zmcontrol refuses.
    Systemd,
}

impl Platform {
    /// Lower-case name, as used in profiles and inventory groups.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Legacy => "legacy",
            Platform::Systemd => "systemd",
        }
    }
}

/// The LDAP of one cluster.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ldap {
    /// Global config (`cn=config`).
    pub global: AttrMap,
    /// Server entries by server name: only values set on the entry itself.
    pub servers: BTreeMap<String, AttrMap>,
    /// Hosted domains (`gad`).
    pub domains: Vec<String>,
    /// Domain entries (`gd`) by domain name: `zimbraDomainType` and the DKIM attributes
    /// (which ProvUtil shows only in LDAP mode, `-l`).
    pub domain_attrs: BTreeMap<String, AttrMap>,
    /// Known local addresses (accounts and aliases), lower-case.
    pub addresses: BTreeSet<String>,
    /// Accounts carrying `zimbraMailCatchAllAddress` (account → `@domain`): a catch-all
    /// lives on an account or list, except for alias domains, whose domain entry carries
    /// it (docs/carbonio.md §2).
    #[serde(default)]
    pub catch_all_accounts: BTreeMap<String, String>,
    /// Fault injection: attributes (canonical names) whose modification the LDAP server
    /// rejects, as a directory with a restrictive ACL or schema would.
    #[serde(default)]
    pub refused: BTreeSet<String>,
}

impl Ldap {
    /// The value a server sees: its own if set, else the global one for inherited attrs.
    pub fn effective(&self, server: &str, attr: &str) -> Vec<String> {
        let Some(def) = lookup(attr) else {
            return Vec::new();
        };
        if let Some(v) = self.servers.get(server).and_then(|s| s.get(def.name))
            && !v.is_empty()
        {
            return v.clone();
        }
        if def.server_inherited {
            return self.global.get(def.name).cloned().unwrap_or_default();
        }
        Vec::new()
    }

    /// `zimbraServiceEnabled` of a server.
    pub fn services(&self, server: &str) -> Vec<String> {
        self.effective(server, "zimbraServiceEnabled")
    }

    /// Whether `domain` is hosted here (case-insensitive).
    pub fn hosts_domain(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// Whether Postfix's virtual maps know `rcpt`: an account or alias, or any address of
    /// a domain with a catch-all (on its domain entry, or on an account; `ldap-vam.cf`
    /// matches `zimbraMailCatchAllAddress=@domain` on any entry).
    pub fn knows_address(&self, rcpt: &str) -> bool {
        let rcpt = rcpt.to_lowercase();
        if self.addresses.contains(&rcpt) {
            return true;
        }
        let Some((_, domain)) = rcpt.rsplit_once('@') else {
            return false;
        };
        let catch_all = format!("@{domain}");
        let on_domain = self.domain_attrs.iter().any(|(d, attrs)| {
            d.eq_ignore_ascii_case(domain)
                && attrs
                    .get("zimbraMailCatchAllAddress")
                    .is_some_and(|v| v.iter().any(|x| x.eq_ignore_ascii_case(&catch_all)))
        });
        on_domain
            || self
                .catch_all_accounts
                .values()
                .any(|v| v.eq_ignore_ascii_case(&catch_all))
    }
}

/// LDAP shared by every node of a cluster.
#[derive(Debug)]
pub struct ClusterState {
    pub name: String,
    ldap: Mutex<Ldap>,
}

impl ClusterState {
    /// A cluster with the given LDAP content.
    pub fn new(name: impl Into<String>, ldap: Ldap) -> Self {
        ClusterState {
            name: name.into(),
            ldap: Mutex::new(ldap),
        }
    }

    /// Locks the LDAP. Never held across an await.
    pub fn ldap(&self) -> MutexGuard<'_, Ldap> {
        self.ldap.lock().expect("ldap lock poisoned")
    }
}

/// One `/etc/passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

impl PasswdEntry {
    /// Convenience constructor.
    pub fn new(name: &str, uid: u32, gecos: &str, home: &str, shell: &str) -> Self {
        PasswdEntry {
            name: name.into(),
            uid,
            gid: uid,
            gecos: gecos.into(),
            home: home.into(),
            shell: shell.into(),
        }
    }

    /// The `getent passwd` line.
    pub fn line(&self) -> String {
        format!(
            "{}:x:{}:{}:{}:{}:{}",
            self.name, self.uid, self.gid, self.gecos, self.home, self.shell
        )
    }
}

/// One group of the node's group database (`getent group`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    /// Supplementary members.
    pub members: Vec<String>,
}

impl GroupEntry {
    /// The `getent group` line.
    pub fn line(&self) -> String {
        format!("{}:x:{}:{}", self.name, self.gid, self.members.join(","))
    }
}

/// Owner, group and permission bits of a file of the virtual filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// Machine-local state of a node. Serializable for `sim-exec`'s state files; the
/// in-flight restart deadline is a monotonic instant and is persisted separately.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    /// The Carbonio server name (`zmhostname`, `hostname`), also its LDAP server entry.
    pub hostname: String,
    pub platform: Platform,
    /// `zmcontrol -v` text, e.g. `Carbonio Release 25.6.0`.
    pub version: String,
    pub passwd: Vec<PasswdEntry>,
    /// The group database.
    #[serde(default)]
    pub groups: Vec<GroupEntry>,
    /// Owner and mode of the files that have them modelled (others read as root's 0644).
    #[serde(default)]
    pub file_meta: BTreeMap<String, FileMeta>,
    /// Users that may log in over SSH with the fleet's client key.
    pub login_users: BTreeSet<String>,
    /// Users with full sudo rights (root always has them).
    pub sudo_users: BTreeSet<String>,
    /// Virtual filesystem: absolute path → content.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Postfix as it runs; `None` on a node without the MTA.
    pub postfix: Option<EffectivePostfix>,
    /// Enabled services that are currently stopped.
    pub stopped: BTreeSet<String>,
    /// While set and in the future, the node is restarting.
    #[serde(skip)]
    pub restarting_until: Option<Instant>,
    /// The next restart fails: MTA stays stopped, the command exits 1.
    pub fail_next_restart: bool,
    /// How long a restart takes.
    pub restart_time: Duration,
    /// One simulated JVM start (see [`crate::programs::jvm_starts`]).
    pub jvm_latency: Duration,
    /// `carbonio` is the Advanced CLI (commercial Carbonio), not ProvUtil.
    #[serde(default)]
    pub advanced_cli: bool,
    /// Modification times (UNIX seconds) of the files whose age matters (master.cf).
    #[serde(default)]
    pub mtimes: BTreeMap<String, i64>,
    /// When the Postfix master started (UNIX seconds); `None` while it is not running.
    #[serde(default)]
    pub master_started: Option<i64>,
    /// Carbonio or Zimbra: the service user and every path follow it.
    #[serde(default)]
    pub flavour: Flavour,
    /// The master.cf entries the RUNNING master loaded (at its start or last reload);
    /// `postfix` above is what the files say. smtpd re-reads main.cf in every new
    /// process, so main.cf takes effect from the files; master.cf does not (docs/carbonio.md
    /// §3; Postfix `master/master.c` lines 583–589).
    #[serde(default)]
    pub loaded_master: Option<Vec<MasterEntry>>,
    /// A test hook: the policy daemon itself dies at start with this text (a broken
    /// Perl module after an upgrade, say), whatever its spawn user — what only asking
    /// the socket can see.
    #[serde(default)]
    pub policyd_broken: Option<String>,
    /// Test hook (a hostile server): on every exec, the SSH server tries to open this
    /// many channels of its own to the client (session, x11, forwarded-tcpip,
    /// agent, …), counting the ones the client accepts in
    /// [`Node::server_channels_accepted`].
    #[serde(default)]
    pub open_server_channels: u32,
}

impl NodeState {
    /// Whether OS user `name` exists.
    pub fn has_user(&self, name: &str) -> bool {
        self.passwd.iter().any(|p| p.name == name)
    }

    /// Whether a process running as `user` with ONLY the group `group` (by name; `None`:
    /// the user's primary group) can read `path`: what Postfix's spawn gives the policy
    /// daemon (`set_ugid` → `setgroups(1, &gid)`, docs/carbonio.md §1).
    pub fn can_read_as(&self, user: &str, group: Option<&str>, path: &str) -> bool {
        let Some(pw) = self.passwd.iter().find(|p| p.name == user) else {
            return false;
        };
        let gid = match group {
            None => pw.gid,
            Some(g) => match self.groups.iter().find(|e| e.name == g) {
                Some(e) => e.gid,
                None => return false,
            },
        };
        let meta = self.file_meta.get(path).copied().unwrap_or(FileMeta {
            uid: 0,
            gid: 0,
            mode: 0o644,
        });
        if pw.uid == 0 {
            return true;
        }
        let bits = if pw.uid == meta.uid {
            meta.mode >> 6
        } else if gid == meta.gid {
            meta.mode >> 3
        } else {
            meta.mode
        };
        bits & 0o4 != 0
    }

    /// Whether the node is in the middle of a restart.
    pub fn is_restarting(&self) -> bool {
        self.restarting_until.is_some_and(|t| t > Instant::now())
    }
}

/// A Carbonio node's rendered master.cf (what the running master loads at start or
/// reload); any node's is `Flavour::master_cf`.
pub const MASTER_CF: &str = "/opt/zextras/common/conf/master.cf";

/// What the master logs at start (Postfix `master/master.c` line 550), configured in
/// the flavour's `common/conf`.
pub fn master_started_line(flavour: Flavour) -> String {
    format!(
        "daemon started -- version 3.7.11, configuration {}/common/conf",
        flavour.home()
    )
}

/// What the master logs when it reloads (Postfix `master/master.c` line 583).
pub fn master_reload_line(flavour: Flavour) -> String {
    format!(
        "reload -- version 3.7.11, configuration {}/common/conf",
        flavour.home()
    )
}

/// The current time in UNIX seconds.
pub fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A Carbonio node's mail log (any node's: `Flavour::mail_log`).
pub const MAIL_LOG: &str = "/var/log/carbonio.log";
/// A Carbonio node's localconfig.xml (0640 zextras:zextras; docs/carbonio.md §1; any
/// node's: `Flavour::localconfig`).
pub const LOCALCONFIG: &str = "/opt/zextras/conf/localconfig.xml";
/// The password every simulated localconfig.xml holds: tests assert it never leaves
/// the node (no log, report, journal or error may contain it).
pub const LOCALCONFIG_SENTINEL: &str = "cfleet-SENTINEL-ldap-secret-5c1e";

/// A node's localconfig.xml in Carbonio's format (`<key name="…">` then its `<value>` on
/// the next line), with the keys the tool reads and, like the real file, the LDAP
/// passwords it must never copy.
pub fn localconfig_xml(hostname: &str) -> String {
    let keys = [
        ("ldap_master_url", format!("ldap://{hostname}:389")),
        ("ldap_postfix_password", LOCALCONFIG_SENTINEL.to_string()),
        ("ldap_root_password", LOCALCONFIG_SENTINEL.to_string()),
        ("zimbra_ldap_password", LOCALCONFIG_SENTINEL.to_string()),
        ("zimbra_server_hostname", hostname.to_string()),
    ];
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\n<localconfig>\n");
    for (k, v) in keys {
        s.push_str(&format!(
            "  <key name=\"{k}\">\n    <value>{v}</value>\n  </key>\n"
        ));
    }
    s.push_str("</localconfig>\n");
    s
}

/// A Carbonio node's master.cf template (any node's: `Flavour::master_template`).
pub const MASTER_CF_IN: &str = "/opt/zextras/common/conf/master.cf.in";

/// How a restart waits when the node lives in a real process (`sim-exec`): instead of
/// a plain sleep, the hook persists the "down" state, releases the state lock for the
/// restart time and reloads the node afterwards, so that other processes see the node
/// restarting and their own changes are not lost.
pub trait RestartHook: Send + Sync + std::fmt::Debug {
    /// Waits `time` while the node is down.
    fn pause<'a>(
        &'a self,
        node: &'a Arc<Node>,
        method: RestartMethod,
        time: Duration,
    ) -> futures::future::BoxFuture<'a, ()>;
}

/// A node's real Postfix, when the node lives in a real process of the real-process
/// fleet (`crate::realmta`): rendering, start, stop and reload of the emulated node are
/// also done to it. `false` from `started`/`reloaded`: the real command failed.
pub trait MtaHook: Send + Sync + std::fmt::Debug {
    /// zmconfigd rendered `pf` (master.cf itself is mirrored from the state).
    fn rendered(&self, node: &Node, pf: &super::postfix::EffectivePostfix);
    fn started(&self) -> bool;
    fn stopped(&self);
    fn reloaded(&self) -> bool;
}

/// A simulated node: its cluster, local state and counters.
#[derive(Debug)]
pub struct Node {
    /// Inventory name (also the Carbonio hostname).
    pub name: String,
    pub cluster: Arc<ClusterState>,
    state: Mutex<NodeState>,
    prov_invocations: AtomicU64,
    /// Every program started on this node, by name (see [`Node::programs_started`]).
    started: Mutex<BTreeMap<String, u64>>,
    zmconfigd_polls: AtomicU64,
    server_channels_accepted: AtomicU64,
    server_channels_tried: AtomicU64,
    zmconfigd_rendered_at: AtomicU64,
    pids: AtomicU32,
    /// Fleet-wide restart log.
    pub restarts: Arc<RestartLog>,
    hook: std::sync::OnceLock<Arc<dyn RestartHook>>,
    mta: std::sync::OnceLock<Arc<dyn MtaHook>>,
    /// While true, a restart that has waited out its restart time stays down (a gate a
    /// test releases instead of racing the timer; see [`Node::hold_restarts`]).
    held: tokio::sync::watch::Sender<bool>,
}

/// Holds a node's restarts down until dropped ([`Node::hold_restarts`]).
#[derive(Debug)]
pub struct RestartGate {
    node: Arc<Node>,
}

impl RestartGate {
    /// Lets held restarts finish.
    pub fn release(self) {}
}

impl Drop for RestartGate {
    fn drop(&mut self) {
        self.node.held.send_replace(false);
    }
}

impl Node {
    /// Wraps a state; renders the initial effective Postfix config from LDAP when the node
    /// runs the MTA.
    pub fn new(
        name: impl Into<String>,
        cluster: Arc<ClusterState>,
        state: NodeState,
        restarts: Arc<RestartLog>,
    ) -> Self {
        let node = Node {
            name: name.into(),
            cluster,
            state: Mutex::new(state),
            prov_invocations: AtomicU64::new(0),
            started: Mutex::new(BTreeMap::new()),
            zmconfigd_polls: AtomicU64::new(0),
            server_channels_accepted: AtomicU64::new(0),
            server_channels_tried: AtomicU64::new(0),
            zmconfigd_rendered_at: AtomicU64::new(0),
            pids: AtomicU32::new(1200),
            restarts,
            hook: std::sync::OnceLock::new(),
            mta: std::sync::OnceLock::new(),
            held: tokio::sync::watch::Sender::new(false),
        };
        node.render_postfix();
        node.start_master();
        node
    }

    /// Wraps a state as it is, WITHOUT rendering Postfix: for state loaded from disk
    /// (`sim-exec`), whose effective config is whatever the node last rendered.
    pub fn from_parts(
        name: impl Into<String>,
        cluster: Arc<ClusterState>,
        state: NodeState,
        restarts: Arc<RestartLog>,
        prov_invocations: u64,
    ) -> Self {
        Node {
            name: name.into(),
            cluster,
            state: Mutex::new(state),
            prov_invocations: AtomicU64::new(prov_invocations),
            started: Mutex::new(BTreeMap::new()),
            zmconfigd_polls: AtomicU64::new(0),
            server_channels_accepted: AtomicU64::new(0),
            server_channels_tried: AtomicU64::new(0),
            zmconfigd_rendered_at: AtomicU64::new(0),
            pids: AtomicU32::new(1200),
            restarts,
            hook: std::sync::OnceLock::new(),
            mta: std::sync::OnceLock::new(),
            held: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Holds this node's restarts: each one stays down (restarting, services stopped)
    /// after its restart time until the returned gate is released or dropped.
    pub fn hold_restarts(self: &Arc<Self>) -> RestartGate {
        self.held.send_replace(true);
        RestartGate { node: self.clone() }
    }

    /// Waits until restarts are no longer held; while held, the node reads as restarting.
    pub async fn wait_restart_released(&self) {
        let mut rx = self.held.subscribe();
        if !*rx.borrow_and_update() {
            return;
        }
        self.state().restarting_until = Some(Instant::now() + Duration::from_secs(24 * 3600));
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|held| !*held).await;
    }

    /// Installs the restart hook (once; later calls are ignored).
    pub fn set_restart_hook(&self, hook: Arc<dyn RestartHook>) {
        let _ = self.hook.set(hook);
    }

    /// Installs the real Postfix hook (once; later calls are ignored).
    pub fn set_mta_hook(&self, hook: Arc<dyn MtaHook>) {
        let _ = self.mta.set(hook);
    }

    /// The real Postfix hook, if the node has a real Postfix.
    pub fn mta_hook(&self) -> Option<Arc<dyn MtaHook>> {
        self.mta.get().cloned()
    }

    /// The restart hook, if the node lives in a real process.
    pub fn restart_hook(&self) -> Option<Arc<dyn RestartHook>> {
        self.hook.get().cloned()
    }

    /// Locks the local state. Never held across an await.
    pub fn state(&self) -> MutexGuard<'_, NodeState> {
        self.state.lock().expect("node lock poisoned")
    }

    /// The Carbonio hostname.
    pub fn hostname(&self) -> String {
        self.state().hostname.clone()
    }

    /// This server's enabled services, from LDAP.
    pub fn services(&self) -> Vec<String> {
        let host = self.hostname();
        self.cluster.ldap().services(&host)
    }

    /// Whether this node runs the MTA.
    pub fn is_mta(&self) -> bool {
        self.services().iter().any(|s| s == "mta")
    }

    /// What zmconfigd does at start: render the effective config from LDAP.
    pub fn render_postfix(&self) {
        let rendered = self.render_candidate();
        let mut st = self.state();
        let Some(pf) = rendered else {
            st.postfix = None;
            return;
        };
        // zmconfigd writes master.cf whenever it renders (docs/carbonio.md §3).
        let path = st.flavour.master_cf();
        st.files
            .insert(path.into(), pf.master_cf_text().into_bytes());
        st.mtimes.insert(path.into(), unix_now());
        st.postfix = Some(pf.clone());
        drop(st);
        if let Some(real) = self.mta_hook() {
            real.rendered(self, &pf);
        }
    }

    /// What rendering would write now (from the effective LDAP values and master.cf.in),
    /// without writing it; `None` on a node without the MTA.
    pub fn render_candidate(&self) -> Option<EffectivePostfix> {
        let host = self.hostname();
        let ldap = self.cluster.ldap().clone();
        let services = ldap.services(&host);
        if !services.iter().any(|s| s == "mta") {
            return None;
        }
        let st = self.state();
        let flavour = st.flavour;
        let tpl = st
            .files
            .get(flavour.master_template())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        drop(st);
        let attr = |n: &str| ldap.effective(&host, n);
        Some(
            EffectivePostfix::render(&RenderInput {
                hostname: &host,
                attr: &attr,
                services: &services,
                master_cf_in: &tpl,
            })
            .relocated(flavour.home()),
        )
    }

    /// Counts one zmconfigd poll ([`super::zmconfigd`]); `rendered`: it rewrote the files.
    pub fn count_zmconfigd_poll(&self, rendered: bool) {
        let n = self.zmconfigd_polls.fetch_add(1, Ordering::Relaxed) + 1;
        if rendered {
            self.zmconfigd_rendered_at.store(n, Ordering::Relaxed);
        }
    }

    /// The number of the last zmconfigd poll that rewrote the files (0: none yet).
    pub fn zmconfigd_rendered_at(&self) -> u64 {
        self.zmconfigd_rendered_at.load(Ordering::Relaxed)
    }

    /// zmconfigd polls so far.
    pub fn zmconfigd_polls(&self) -> u64 {
        self.zmconfigd_polls.load(Ordering::Relaxed)
    }

    /// Channels the client accepted when this (hostile) server opened its own
    /// ([`NodeState::open_server_channels`]).
    pub fn server_channels_accepted(&self) -> u64 {
        self.server_channels_accepted.load(Ordering::Relaxed)
    }

    /// Channels this (hostile) server tried to open, answered either way.
    pub fn server_channels_tried(&self) -> u64 {
        self.server_channels_tried.load(Ordering::Relaxed)
    }

    /// Counts one channel the server tried to open, and whether the client accepted it.
    pub fn count_server_channel(&self, accepted: bool) {
        if accepted {
            self.server_channels_accepted
                .fetch_add(1, Ordering::Relaxed);
        }
        self.server_channels_tried.fetch_add(1, Ordering::Relaxed);
    }

    /// The Postfix master starts (boot, restart): it loads master.cf and says so in the
    /// mail log.
    pub fn start_master(&self) {
        if self.state().postfix.is_none() {
            return;
        }
        if let Some(real) = self.mta_hook()
            && !real.started()
        {
            return;
        }
        let flavour = {
            let mut st = self.state();
            st.master_started = Some(unix_now());
            st.loaded_master = st.postfix.as_ref().map(|pf| pf.master.clone());
            st.flavour
        };
        self.log_mail("postfix/master", &master_started_line(flavour));
    }

    /// `postfix reload`: a running master re-reads master.cf (the files as rendered) and
    /// says so in the mail log; `false` when no master runs.
    pub fn reload_master(&self) -> bool {
        let flavour = {
            let mut st = self.state();
            if st.master_started.is_none() || st.postfix.is_none() {
                return false;
            }
            st.loaded_master = st.postfix.as_ref().map(|pf| pf.master.clone());
            st.flavour
        };
        if let Some(real) = self.mta_hook()
            && !real.reloaded()
        {
            return false;
        }
        self.log_mail("postfix/master", &master_reload_line(flavour));
        true
    }

    /// The spawn user of the policy service the running master loaded, if it did.
    pub fn loaded_policy_spawn_user(&self) -> Option<String> {
        self.state()
            .loaded_master
            .as_ref()?
            .iter()
            .find(|e| e.name == "policy" && e.kind == "unix")
            .and_then(|e| e.spawn_user().map(str::to_string))
    }

    /// Counts one `zmprov`/`carbonio` process.
    pub fn count_prov(&self) {
        self.prov_invocations.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one start of program `name` (a shell builtin is no start).
    pub fn count_start(&self, name: &str) {
        *self
            .started
            .lock()
            .expect("program counter poisoned")
            .entry(name.to_string())
            .or_default() += 1;
    }

    /// The programs started on this node so far and how often: what the program budget
    /// (docs/remote-shell.md) is asserted against.
    pub fn programs_started(&self) -> BTreeMap<String, u64> {
        self.started
            .lock()
            .expect("program counter poisoned")
            .clone()
    }

    /// Forgets the counts (a test measures one command).
    pub fn reset_programs_started(&self) {
        self.started
            .lock()
            .expect("program counter poisoned")
            .clear();
    }

    /// `zmprov`/`carbonio prov` processes started on this node so far.
    pub fn prov_invocations(&self) -> u64 {
        self.prov_invocations.load(Ordering::Relaxed)
    }

    /// A fresh process id for log lines.
    pub fn next_pid(&self) -> u32 {
        self.pids.fetch_add(7, Ordering::Relaxed)
    }

    /// Appends a syslog-style line to the virtual mail log.
    pub fn log_mail(&self, program: &str, msg: &str) {
        self.log_mail_at(jiff::Timestamp::now(), program, msg);
    }

    /// Appends a line stamped `at` (rsyslog's RFC 3339 format) to the virtual mail log.
    pub fn log_mail_at(&self, at: jiff::Timestamp, program: &str, msg: &str) {
        let pid = self.next_pid();
        let mut st = self.state();
        let line = format!("{at} {} {program}[{pid}]: {msg}\n", st.hostname);
        let log = st.flavour.mail_log();
        st.files
            .entry(log.into())
            .or_default()
            .extend_from_slice(line.as_bytes());
    }
}
