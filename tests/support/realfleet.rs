//! A fleet of REAL OpenSSH servers emulating Carbonio nodes, for end-to-end tests and the
//! benchmark: `RealFleet::start(specs, opts)` brings N nodes up in about a second,
//! writes `inventory.toml` (SPEC §4), `known_hosts` and the client key, and Drop stops
//! every process it started, by PID.
//!
//! # One node
//! - Its product: Carbonio (user `zextras`, /opt/zextras) or Zimbra (user `zimbra`,
//!   /opt/zimbra): the mounts below go under that tree, the wrappers point the emulator
//!   at the state under it, and the node's /etc/passwd and /etc/group (bind-mounted) are
//!   the machine's without the other product's user, as on a real node.
//! - Its own directory: `state/` (the emulator's node state, see `sim::exec`), `conf/`
//!   (`master.cf.in`, and the `master.cf` the emulator renders), `varlog/` (bind-mounted
//!   over /var/log: the `carbonio.log` the emulated Postfix writes, read by the real
//!   `grep`), `sshd_config`, `host_key`, `authorized_keys/%u`, `sshd.log`.
//! - `unshare -m -n --propagation private /bin/sh -c …` gives the node a private MOUNT
//!   namespace, where `state/` is bind-mounted over /opt/zextras/.sim-state, `conf/` over
//!   /opt/zextras/common/conf, the fleet's wrapper dir over /opt/zextras/bin and the
//!   `systemctl` wrapper over /usr/bin/systemctl — so `su - zextras` (which wipes the
//!   environment) still lands on this node's state, and root's `systemctl restart
//!   carbonio-mta.target` reaches the emulator, without touching the host's files —
//!   and root's `.bashrc`/`.profile` are Debian's stock ones (/etc/skel): sshd runs every
//!   command through root's shell, which sources `.bashrc`, and this machine's own
//!   (a developer box's pyenv/cargo setup) costs ~100 ms of CPU per connection, five
//!   times sshd's own cost, which would make every tool — and the benchmark's floor —
//!   measure the test machine's dotfiles instead of SSH —
//!   and a private NETWORK namespace with only `lo`, where the node's Postfix
//!   (`carbonio-fleet sim-exec smtpd --listen 127.0.0.1:25`) listens.
//! - SSH listener: the launcher binds 127.0.0.1:0 in the HOST namespace and hands the
//!   listening socket to sshd as fd 3 with `LISTEN_FDS=1` / `LISTEN_PID` (Debian's
//!   OpenSSH supports systemd socket activation). The tool reaches sshd on the host's
//!   loopback; sshd, living in the node's network namespace, resolves the tool's
//!   direct-tcpip to 127.0.0.1:25 (health gate, SMTP probe) to the node's own responder.
//!   No veth, no routes, no proxy: traffic stays on loopback interfaces.
//! - The wrappers are `exec carbonio-fleet sim-exec PROGRAM "$@"` (carbonio, zmprov,
//!   zmcontrol, postconf, zmhostname, systemctl). Everything else the tool runs —
//!   `su`, `bash`, `getent`, `grep`, `printf` — is the machine's real program, with the
//!   real `zextras` user and its login profile (/opt/zextras/.bash_profile).
//! - Spawn user: a healthy node's master.cf.in spawns the policy service as `zextras`
//!   (exists); a `spawn-user-missing` node names a user that does not exist on this
//!   machine (`zimbra`, or another absent name), which is what the real `getent` shows
//!   the tool and what the emulator's SMTP responder and restart logic use.
//!
//! Behaviours: `unreachable` = nothing listens on its port; `hanging` = a listener that
//! never accepts (TCP completes, SSH never speaks); `auth-refused` = the client key is
//! not authorized; `hostkey-changed` = known_hosts lists another key.
//!
//! Teardown: every process in a node's network namespace (sshd, its sessions, the
//! emulator's processes, the SMTP responder) is found through /proc and killed by PID;
//! the namespaces vanish with their last process.
//!
//! Needs root, `unshare` with mount and network namespaces, and `ip`;
//! [`RealFleet::available`] prints a visible SKIPPED line otherwise.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use carbonio_fleet::carbonio::flavour::Flavour;
use carbonio_fleet::sim::exec::{self, RestartLine, SeedNode, Store};
use carbonio_fleet::sim::profiles::SpawnSetup;
use carbonio_fleet::sim::{Behaviour, FleetSpec, NodeProfile, NodeSpec, RestartRecord};

use carbonio_fleet::sim::prereq::{self, Need};

use super::sshd::{SSHD_NEEDS, keygen, require_sshd, run};

/// Mount points on the host under a product's tree, created empty once (only bind
/// mounts inside node namespaces fill them): the emulator's state, `common/conf`,
/// `conf`, `bin`, `libexec`, `common/sbin` (Postfix's own `postfix`, which the service
/// user runs through its NOPASSWD sudo rule: tests/setup-root.sh), and Postfix's queue
/// directory, where the emulated Postfix serves the policy socket `private/policy`.
fn mount_points(f: Flavour) -> [String; 7] {
    let h = f.home();
    [
        format!("{h}/.sim-state"),
        format!("{h}/common/conf"),
        format!("{h}/conf"),
        format!("{h}/bin"),
        format!("{h}/libexec"),
        format!("{h}/common/sbin"),
        format!("{h}/data/postfix/spool"),
    ]
}
/// The programs that get a wrapper in the product's `bin` (Zimbra has no `carbonio`).
fn wrapped(f: Flavour) -> &'static [&'static str] {
    match f {
        Flavour::Carbonio => &["carbonio", "zmprov", "zmcontrol", "postconf", "zmhostname"],
        Flavour::Zimbra => &["zmprov", "zmcontrol", "postconf", "zmhostname"],
    }
}
/// The service user's login profile (CARBONIO.md §5: the product's bin first in PATH).
fn bash_profile(f: Flavour) -> String {
    let h = f.home();
    format!(
        "# carbonio-fleet test fleet: the {} login PATH (CARBONIO.md §5)\n\
         export PATH={h}/bin:{h}/common/bin:{h}/common/sbin:/usr/sbin:$PATH\n\
         umask 0027\n",
        f.product()
    )
}

/// Fleet-wide settings.
#[derive(Debug, Clone)]
pub struct RealFleetOptions {
    /// Simulated JVM start of each `carbonio`/`zmprov` process.
    pub jvm_latency: Duration,
    /// How long a restart keeps a node down (a real sleep in the emulator process).
    pub restart_time: Duration,
    /// `connect_timeout` written into the inventory defaults (generous: a healthy node
    /// must never miss it on a loaded machine).
    pub connect_timeout: &'static str,
    /// `connect_timeout` of the `hanging` nodes alone, when set (a test of the timeout
    /// itself, which should not wait the healthy nodes' budget).
    pub hanging_connect_timeout: Option<&'static str>,
    /// `command_timeout` written into the inventory defaults.
    pub command_timeout: &'static str,
    /// sshd's `AllowStreamLocalForwarding` (off: the tool must ask the policy socket on
    /// the node instead of through the SSH channel).
    pub streamlocal: bool,
}

impl Default for RealFleetOptions {
    fn default() -> Self {
        RealFleetOptions {
            jvm_latency: Duration::ZERO,
            restart_time: Duration::from_millis(300),
            connect_timeout: "30s",
            hanging_connect_timeout: None,
            command_timeout: "60s",
            streamlocal: true,
        }
    }
}

/// One running node.
pub struct RealNode {
    pub name: String,
    pub cluster: String,
    pub profile: NodeProfile,
    /// Its SSH port on 127.0.0.1.
    pub port: u16,
    /// The node's directory.
    pub dir: PathBuf,
    /// Its emulator state.
    pub store: Store,
    /// sshd's log (`-E`, LogLevel DEBUG3; also the launcher shell's stderr).
    pub log: PathBuf,
    /// The listener process (unshare → sh → sshd, one PID).
    child: Option<Child>,
    /// `net:[inode]` of the node's network namespace.
    netns: Option<String>,
    /// Held open (never accepted) for a `hanging` node.
    _hang: Option<TcpListener>,
}

impl RealNode {
    /// The sshd log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// PID of the listening sshd.
    pub fn sshd_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Every PID in this node's network namespace.
    pub fn pids(&self) -> Vec<u32> {
        let Some(ns) = &self.netns else {
            return Vec::new();
        };
        pids_in_netns(std::slice::from_ref(ns))
    }

    /// Kills (SIGKILL) the node's SSH session processes — every sshd but the listener —
    /// as a crashing node would drop its connections mid-command.
    pub fn kill_sessions(&self) -> usize {
        let listener = self.sshd_pid();
        let mut n = 0;
        for pid in self.pids() {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sshd" && Some(pid) != listener {
                kill(pid, libc::SIGKILL);
                n += 1;
            }
        }
        n
    }

    /// The sshd log once the connection it served is over (bounded wait for sshd's
    /// "Connection closed"/"disconnect" line, so later lines are not missed).
    pub fn wait_log_closed(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.log_text();
            let closed = ["Connection closed", "Disconnected from", "Connection reset"]
                .iter()
                .any(|n| text.contains(n));
            if closed || Instant::now() >= deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the node's SMTP responder (its Postfix no longer listens on port 25).
    pub fn kill_smtpd(&self) {
        let ready = self.store.dir().join(exec::SMTPD_READY);
        let pid: u32 = fs::read_to_string(&ready)
            .expect("smtpd ready file")
            .trim()
            .parse()
            .expect("smtpd pid");
        // Only if it really is one of this node's processes.
        assert!(
            self.pids().contains(&pid),
            "smtpd {pid} not in {}'s namespace",
            self.name
        );
        kill(pid, libc::SIGKILL);
    }

    /// The restart log of this node.
    pub fn restarts(&self) -> Vec<RestartLine> {
        self.store.restart_log().unwrap()
    }

    /// Holds this node's restarts down until the guard is released or dropped (see
    /// [`exec::RESTART_HOLD`]): a test that must act while a restart is in flight
    /// releases it when done instead of racing the restart time.
    pub fn hold_restarts(&self) -> exec::RestartHold {
        self.store.hold_restarts().unwrap()
    }

    /// Waits (bounded) until `cond` holds for this node's restart log.
    pub fn wait_restarts(&self, within: Duration, cond: impl Fn(&[RestartLine]) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if cond(&self.restarts()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A running fleet.
pub struct RealFleet {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<RealNode>,
    /// Public key line of the fleet's client key.
    pub client_public: String,
    /// The fleet's DNS server (runtime and its stop token).
    dns: Option<(tokio::runtime::Runtime, tokio_util::sync::CancellationToken)>,
    dns_addr: String,
    /// Each cluster's MTA egress address (what its SPF must cover).
    egress: BTreeMap<String, String>,
}

fn kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a PID we found in one of our own namespaces.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

fn netns_of(pid: u32) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|p| p.display().to_string())
}

/// Every PID whose network namespace is one of `namespaces` (one pass over /proc).
fn pids_in_netns(namespaces: &[String]) -> Vec<u32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| netns_of(*pid).is_some_and(|ns| namespaces.contains(&ns)))
        .collect()
}

/// A path as one word of the node scripts (the one quoting function of the tool).
fn q(path: &Path) -> String {
    carbonio_fleet::ssh::quote(path.to_str().expect("UTF-8 test path")).expect("no NUL in a path")
}

/// The binary under test, staged where the nodes' programs can execute it as `zextras`:
/// `stage/carbonio-fleet` in the fleet's own 0755 directory. The checkout itself may sit
/// under a directory zextras cannot traverse (`mktemp -d` makes 0700 ones) or in a path
/// with spaces. A hard link costs nothing on the same file system; a copy otherwise.
fn stage_binary(fleet_dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_BIN_EXE_carbonio-fleet"));
    let stage = fleet_dir.join("stage");
    fs::create_dir_all(&stage).unwrap();
    fs::set_permissions(&stage, fs::Permissions::from_mode(0o755)).unwrap();
    let bin = stage.join("carbonio-fleet");
    if fs::hard_link(src, &bin).is_err() {
        fs::copy(src, &bin).unwrap_or_else(|e| panic!("staging {}: {e}", src.display()));
    }
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A user name that does not exist on this machine (for `spawn-user-missing`).
pub fn absent_user() -> String {
    let users = exec::machine_users();
    ["zimbra", "zimbra-cfleet", "cfleet-no-such-user"]
        .iter()
        .find(|u| !users.iter().any(|p| p.name == **u))
        .expect("one of the candidate names is free")
        .to_string()
}

impl RealFleet {
    /// Whether this machine can run the fleet (root, OpenSSH, `unshare` with mount and
    /// network namespaces, `ip`, systemd's `systemctl`); prints a visible SKIPPED line
    /// naming what is missing when not, or fails under `CI=true`.
    pub fn available(test: &str) -> bool {
        const NEEDS: &[Need] = &[
            Need::program("unshare", "util-linux"),
            Need::program("ip", "iproute2"),
            Need::program("su", "util-linux"),
            Need::program("getent", "libc-bin"),
            // The emulator's systemctl is bind-mounted over it inside each node.
            Need::file("/usr/bin/systemctl", "systemd"),
        ];
        let mut missing: Vec<String> = SSHD_NEEDS
            .iter()
            .chain(NEEDS)
            .filter_map(Need::missing)
            .collect();
        if missing.is_empty()
            && !Command::new("unshare")
                .args(["-m", "-n", "--propagation", "private"])
                .args(["ip", "link", "set", "lo", "up"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        {
            missing.push(
                "mount and network namespaces are not available \
                 (`unshare -m -n ip link set lo up` failed; needs root outside a restricted container)"
                    .to_string(),
            );
        }
        prereq::require_that(test, &missing) && require_sshd(test)
    }

    /// Host-side preparation shared by every fleet: mount points and the service
    /// user's profile of each product whose user this machine has.
    fn prepare_host() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let users = exec::machine_users();
            for f in Flavour::ALL {
                if !users.iter().any(|u| u.name == f.user()) {
                    continue;
                }
                for p in mount_points(f) {
                    fs::create_dir_all(p).unwrap();
                }
                let version = Path::new(f.version_file());
                if !version.exists() {
                    write_mode(version, "", 0o644);
                }
                let profile = Path::new(f.home()).join(".bash_profile");
                let text = bash_profile(f);
                if fs::read_to_string(&profile).ok().as_deref() != Some(text.as_str()) {
                    write_mode(&profile, &text, 0o644);
                }
            }
            fs::create_dir_all("/run/sshd").unwrap();
        });
    }

    /// Starts one node per spec (names, clusters and profiles as in the simulator:
    /// `FleetSpec::from_mix` builds them), or `None` when the machine cannot.
    pub fn start(test: &str, specs: Vec<NodeSpec>, opts: &RealFleetOptions) -> Option<RealFleet> {
        if !Self::available(test) {
            return None;
        }
        let users = exec::machine_users();
        let missing_users: Vec<String> = Flavour::ALL
            .into_iter()
            .filter(|f| specs.iter().any(|n| n.profile.flavour == *f))
            .filter(|f| !users.iter().any(|u| u.name == f.user()))
            .map(|f| {
                format!(
                    "the {} service user `{}` (tests/setup-root.sh)",
                    f.product(),
                    f.user()
                )
            })
            .collect();
        if !prereq::require_that(test, &missing_users) {
            return None;
        }
        Self::prepare_host();
        let dir = tempfile::Builder::new()
            .prefix("cfleet-realfleet-")
            .tempdir()
            .unwrap();
        let d = dir.path().to_path_buf();
        // zextras must reach the state, clusters and wrappers below.
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        let bin = stage_binary(&d);
        let bin_q = q(&bin);

        // Per product: its bin/ wrappers, libexec/configrewrite (the spawn-user fix runs
        // it) and the systemctl wrapper, each pointing the emulator at the node's state
        // under that product's tree (`su -` wipes the environment; the wrapper sets it).
        for f in Flavour::ALL {
            let tree = d.join(f.as_str());
            let wrapper = |p: &str| {
                format!(
                    "#!/bin/sh\n{}={} exec {bin_q} sim-exec {p} \"$@\"\n",
                    exec::STATE_ENV,
                    q(Path::new(&mount_points(f)[0])),
                )
            };
            fs::create_dir_all(tree.join("bin")).unwrap();
            for p in wrapped(f) {
                write_mode(&tree.join("bin").join(p), &wrapper(p), 0o755);
            }
            fs::create_dir_all(tree.join("libexec")).unwrap();
            write_mode(
                &tree.join("libexec").join("configrewrite"),
                &wrapper("configrewrite"),
                0o755,
            );
            write_mode(&tree.join("systemctl"), &wrapper("systemctl"), 0o755);
            fs::create_dir_all(tree.join("sbin")).unwrap();
            write_mode(
                &tree.join("sbin").join("postfix"),
                &wrapper("postfix"),
                0o755,
            );
        }

        let (_, client_public) = keygen(&d, "id_ed25519", "");
        let missing = absent_user();
        let seeds: Vec<SeedNode> = specs
            .iter()
            .map(|n| SeedNode {
                state_dir: d.join("nodes").join(&n.name).join("state"),
                // master.cf in the node's conf/ (its HOME/common/conf), the mail log in
                // its varlog/ (its /var/log).
                mirror: Some(exec::Mirror {
                    master_cf: d.join("nodes").join(&n.name).join("conf").join("master.cf"),
                    mail_log: d.join("nodes").join(&n.name).join("varlog").join(
                        Path::new(n.profile.flavour.mail_log())
                            .file_name()
                            .expect("a file"),
                    ),
                }),
                spawn_user: match (n.profile.flavour, n.profile.spawn_setup()) {
                    // Zimbra's stock entry: its own service user, which exists there.
                    (Flavour::Zimbra, _) => Flavour::Zimbra.user().into(),
                    (_, SpawnSetup::Stock) => missing.clone(),
                    // A user that exists and cannot read localconfig.xml (0640
                    // zextras:zextras), as a hand-made `zimbra` cannot.
                    (_, SpawnSetup::ZimbraAdded) => "nobody".into(),
                    (_, SpawnSetup::Fixed) => "zextras".into(),
                },
            })
            .collect();
        let spec = FleetSpec {
            nodes: specs.clone(),
            jvm_latency: opts.jvm_latency,
            restart_time: opts.restart_time,
            ..FleetSpec::default()
        };
        let domains = exec::seed(&spec, &seeds, &d.join("clusters")).unwrap();
        // The hosted domains' SPF/DKIM/DMARC records, served on 127.0.0.1 so that the
        // domain pass of `check` never asks the machine's own resolver.
        let dns_rt = tokio::runtime::Runtime::new().unwrap();
        let dns_cancel = tokio_util::sync::CancellationToken::new();
        let (dns_addr, _dns_task) = dns_rt
            .block_on(carbonio_fleet::sim::dns::serve(
                &domains,
                dns_cancel.clone(),
            ))
            .unwrap();

        let mut nodes = Vec::new();
        let mut known_hosts = String::new();
        for (n, seed) in specs.iter().zip(&seeds) {
            let flavour = n.profile.flavour;
            let nd = d.join("nodes").join(&n.name);
            fs::set_permissions(&nd, fs::Permissions::from_mode(0o755)).unwrap();
            let conf = nd.join("conf");
            fs::create_dir_all(&conf).unwrap();
            write_mode(
                &conf.join("master.cf.in"),
                &carbonio_fleet::sim::postfix::master_cf_in_for(flavour, &seed.spawn_user),
                0o644,
            );
            // The node's user databases: the machine's, without the other product's
            // service user (a Carbonio node has no `zimbra`, a Zimbra node no `zextras`).
            let other = Flavour::ALL
                .into_iter()
                .find(|f| *f != flavour)
                .expect("two products")
                .user();
            for db in ["passwd", "group"] {
                let text = fs::read_to_string(format!("/etc/{db}")).unwrap();
                let kept: String = text
                    .lines()
                    .filter(|l| l.split(':').next() != Some(other))
                    .map(|l| format!("{l}\n"))
                    .collect();
                write_mode(&nd.join(db), &kept, 0o644);
            }
            // HOME/conf/localconfig.xml as the product installs it: 0640, owned by the
            // service user (CARBONIO.md §0.2), with the LDAP passwords in it.
            let zconf = nd.join("zconf");
            fs::create_dir_all(&zconf).unwrap();
            fs::set_permissions(&zconf, fs::Permissions::from_mode(0o755)).unwrap();
            let lc = zconf.join("localconfig.xml");
            write_mode(
                &lc,
                &carbonio_fleet::sim::node::localconfig_xml(&n.name),
                0o640,
            );
            let service = exec::machine_users()
                .into_iter()
                .find(|u| u.name == flavour.user())
                .expect("the service user (tests/setup-root.sh)");
            std::os::unix::fs::chown(&lc, Some(service.uid), Some(service.gid)).unwrap();
            let version = nd.join("version");
            write_mode(&version, &n.profile.version_file().1, 0o644);
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(nd.join("host_key")));
            let host_key = fs::read_to_string(nd.join("host_key.pub")).unwrap();
            let host_key: String = host_key
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            let ak = nd.join("authorized_keys");
            fs::create_dir_all(&ak).unwrap();
            if n.profile.behaviour != Behaviour::AuthRefused {
                write_mode(&ak.join("root"), &format!("{client_public}\n"), 0o644);
            }
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let listed = if n.profile.behaviour == Behaviour::HostkeyChanged {
                run(Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(nd.join("other_key")));
                let k = fs::read_to_string(nd.join("other_key.pub")).unwrap();
                k.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
            } else {
                host_key
            };
            known_hosts.push_str(&format!("[127.0.0.1]:{port} {listed}\n"));
            let log = nd.join("sshd.log");
            let mut node = RealNode {
                name: n.name.clone(),
                cluster: n.cluster.clone(),
                profile: n.profile,
                port,
                dir: nd.clone(),
                store: Store::new(&seed.state_dir),
                log: log.clone(),
                child: None,
                netns: None,
                _hang: None,
            };
            match n.profile.behaviour {
                Behaviour::Unreachable => drop(listener),
                Behaviour::Hanging => node._hang = Some(listener),
                _ => {
                    let config = format!(
                        "HostKey {hk}\nAuthorizedKeysFile {ak}/%u\nPidFile none\nUsePAM no\n\
                         StrictModes no\nPermitRootLogin yes\nPasswordAuthentication no\n\
                         KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                         MaxStartups 1000:30:1000\nMaxSessions 20\nAllowTcpForwarding yes\n\
                         UseDNS no\nLogLevel DEBUG3\nAllowStreamLocalForwarding {sl}\n",
                        hk = nd.join("host_key").display(),
                        ak = ak.display(),
                        sl = if opts.streamlocal { "yes" } else { "no" },
                    );
                    fs::write(nd.join("sshd_config"), config).unwrap();
                    let [
                        state_mp,
                        conf_mp,
                        zconf_mp,
                        bin_mp,
                        libexec_mp,
                        sbin_mp,
                        spool_mp,
                    ] = mount_points(flavour);
                    fs::create_dir_all(nd.join("spool")).unwrap();
                    let tree = d.join(flavour.as_str());
                    let script = format!(
                        "set -e\n\
                         ip link set lo up\n\
                         mount --bind {state} {state_mp}\n\
                         mount --bind {conf} {conf_mp}\n\
                         mount --bind {zconf} {zconf_mp}\n\
                         mount --bind {version} {version_file}\n\
                         mount --bind {wrappers} {bin_mp}\n\
                         mount --bind {libexec} {libexec_mp}\n\
                         mount --bind {sbin} {sbin_mp}\n\
                         mount --bind {spool} {spool_mp}\n\
                         mount --bind {varlog} /var/log\n\
                         mount --bind {systemctl} /usr/bin/systemctl\n\
                         mount --bind {passwd} /etc/passwd\n\
                         mount --bind {group} /etc/group\n\
                         for f in .bashrc .profile; do\n\
                           if [ -e /root/$f ] && [ -e /etc/skel/$f ]; then mount --bind /etc/skel/$f /root/$f; fi\n\
                         done\n\
                         {env}={state_mp} {bin_q} sim-exec smtpd --listen 127.0.0.1:25 3>&- </dev/null >>{smtpd_log} 2>&1 &\n\
                         export LISTEN_FDS=1 LISTEN_PID=$$\n\
                         exec /usr/sbin/sshd -D -E {sshd_log} -f {sshd_config}\n",
                        state = q(&seed.state_dir),
                        state_mp = q(Path::new(&state_mp)),
                        conf = q(&conf),
                        conf_mp = q(Path::new(&conf_mp)),
                        zconf = q(&nd.join("zconf")),
                        zconf_mp = q(Path::new(&zconf_mp)),
                        version = q(&nd.join("version")),
                        version_file = flavour.version_file(),
                        wrappers = q(&tree.join("bin")),
                        bin_mp = q(Path::new(&bin_mp)),
                        libexec = q(&tree.join("libexec")),
                        libexec_mp = q(Path::new(&libexec_mp)),
                        sbin = q(&tree.join("sbin")),
                        sbin_mp = q(Path::new(&sbin_mp)),
                        spool = q(&nd.join("spool")),
                        spool_mp = q(Path::new(&spool_mp)),
                        varlog = q(&nd.join("varlog")),
                        systemctl = q(&tree.join("systemctl")),
                        passwd = q(&nd.join("passwd")),
                        group = q(&nd.join("group")),
                        env = exec::STATE_ENV,
                        smtpd_log = q(&nd.join("smtpd.log")),
                        sshd_log = q(&nd.join("sshd.log")),
                        sshd_config = q(&nd.join("sshd_config")),
                    );
                    let fd = listener.as_raw_fd();
                    let mut cmd = Command::new("unshare");
                    cmd.args([
                        "-m",
                        "-n",
                        "--propagation",
                        "private",
                        "/bin/sh",
                        "-c",
                        &script,
                    ])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(fs::File::create(&log).unwrap());
                    // SAFETY: only async-signal-safe dup2/fcntl between fork and exec; they
                    // put the listening socket on fd 3 without CLOEXEC.
                    unsafe {
                        cmd.pre_exec(move || {
                            // dup2 onto itself would keep CLOEXEC: clear it instead.
                            let r = if fd == 3 {
                                libc::fcntl(3, libc::F_SETFD, 0)
                            } else {
                                libc::dup2(fd, 3)
                            };
                            if r < 0 {
                                return Err(std::io::Error::last_os_error());
                            }
                            Ok(())
                        });
                    }
                    node.child = Some(cmd.spawn().unwrap());
                    // The child holds the socket now; ours can go.
                    drop(listener);
                }
            }
            nodes.push(node);
        }

        let egress: BTreeMap<String, String> = domains
            .iter()
            .map(|c| (c.cluster.clone(), c.egress.to_string()))
            .collect();
        let mut fleet = RealFleet {
            dir,
            nodes,
            client_public,
            dns: Some((dns_rt, dns_cancel)),
            dns_addr: dns_addr.to_string(),
            egress,
        };
        fleet.write_inventory(opts, &known_hosts);
        fleet.wait_ready();
        Some(fleet)
    }

    /// Waits until every running node's SMTP responder listens and sshd is exec'd; then
    /// records each node's network namespace (for teardown and `kill_sessions`).
    fn wait_ready(&mut self) {
        let own = netns_of(std::process::id()).expect("own netns");
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &mut self.nodes {
            let Some(pid) = node.sshd_pid() else { continue };
            let ready = node.store.dir().join(exec::SMTPD_READY);
            loop {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if ready.exists() && comm.trim() == "sshd" {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} not ready after 30 s: {}",
                    node.name,
                    node.log_text()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            let ns = netns_of(pid).expect("sshd netns");
            // Never kill by namespace unless it really is the node's own.
            assert_ne!(
                ns, own,
                "{}: sshd must run in its own network namespace",
                node.name
            );
            node.netns = Some(ns);
        }
    }

    fn write_inventory(&self, opts: &RealFleetOptions, known_hosts: &str) {
        let d = self.dir.path();
        fs::write(d.join("known_hosts"), known_hosts).unwrap();
        let mut groups: BTreeMap<&str, ()> = BTreeMap::new();
        let mut hosts = String::new();
        for n in &self.nodes {
            let platform = n.profile.platform.as_str();
            groups.insert(platform, ());
            hosts.push_str(&format!(
                "\n[[hosts]]\nname = \"{}\"\naddress = \"127.0.0.1\"\nport = {}\ncluster = \"{}\"\ngroups = [\"{}\"]\negress = [\"{}\"]\n",
                n.name, n.port, n.cluster, platform, self.egress[&n.cluster]
            ));
            if let (Behaviour::Hanging, Some(t)) =
                (n.profile.behaviour, opts.hanging_connect_timeout)
            {
                hosts.push_str(&format!("connect_timeout = \"{t}\"\n"));
            }
        }
        let mut text = format!(
            "# Real-sshd test fleet (tests/support/realfleet.rs); throwaway.\n[defaults]\nuser = \"root\"\n\
             identity_files = [\"{id}\"]\nknown_hosts = \"{kh}\"\nhost_key_policy = \"strict\"\n\
             become = \"auto\"\nconnect_timeout = \"{ct}\"\ncommand_timeout = \"{cmt}\"\n\
             dns_servers = [\"{dns}\"]\n",
            id = d.join("id_ed25519").display(),
            kh = d.join("known_hosts").display(),
            ct = opts.connect_timeout,
            cmt = opts.command_timeout,
            dns = self.dns_addr,
        );
        for g in groups.keys() {
            text.push_str(&format!("\n[groups.{g}]\n"));
        }
        text.push_str(&hosts);
        fs::write(d.join("inventory.toml"), text).unwrap();
    }

    /// `inventory.toml`.
    pub fn inventory(&self) -> PathBuf {
        self.dir.path().join("inventory.toml")
    }

    /// `known_hosts`.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> &RealNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Every node's finished restarts, as records for `sim::max_concurrent`.
    pub fn finished_restarts(&self) -> Vec<RestartRecord> {
        let lines: Vec<RestartLine> = self.nodes.iter().flat_map(|n| n.restarts()).collect();
        exec::finished_restarts(&lines)
    }

    /// How many restarts started, fleet-wide.
    pub fn restarts_started(&self) -> usize {
        self.nodes
            .iter()
            .flat_map(|n| n.restarts())
            .filter(|l| l.ended_ms.is_none())
            .count()
    }

    /// Stops everything (also done on drop).
    pub fn stop(&mut self) {
        if let Some((rt, cancel)) = self.dns.take() {
            cancel.cancel();
            rt.shutdown_background();
        }
        // Every process ever seen in a node's namespace, until each is gone (or a zombie,
        // which holds nothing): SIGKILL takes effect when the process is next scheduled,
        // a process may fork while we kill its parent, and a dying process leaves its
        // namespace (its /proc ns link goes) before it has finished exiting.
        let mut seen: Vec<u32> = Vec::new();
        let namespaces: Vec<String> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.netns.take())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found = pids_in_netns(&namespaces);
            for &pid in &found {
                kill(pid, libc::SIGKILL);
                if !seen.contains(&pid) {
                    seen.push(pid);
                }
            }
            seen.retain(|pid| alive(*pid));
            // Done only when a scan found nobody left AND everything seen is dead: a
            // child forked after a scan shows up in the next one.
            if (found.is_empty() && seen.is_empty()) || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        assert!(
            seen.is_empty() || std::thread::panicking(),
            "processes {seen:?} of the fleet survived SIGKILL for 60 s"
        );
    }
}

/// Whether `pid` is a live process (neither gone nor a zombie).
pub fn alive(pid: u32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state is the first field after the command name's closing parenthesis.
    let state = stat.rsplit(')').next().unwrap_or("").trim().chars().next();
    !stat.is_empty() && state != Some('Z') && state != Some('X')
}

impl Drop for RealFleet {
    fn drop(&mut self) {
        self.stop();
    }
}
