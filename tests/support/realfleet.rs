//! A fleet of REAL OpenSSH servers emulating Carbonio nodes, for end-to-end tests and the
//! benchmark: `RealFleet::start(specs, opts)` brings N nodes up in about a second,
//! writes `inventory.toml` (README "Inventory"), `known_hosts` and the client key, and Drop stops
//! every process it started, by PID.
//!
//! # One node
//! - Its product: Carbonio (user `zextras`, /opt/zextras) or Zimbra (user `zimbra`,
//!   /opt/zimbra): the mounts below go under that tree, the wrappers point the emulator
//!   at the state under it, and the node's /etc/passwd and /etc/group (bind-mounted) are
//!   the machine's without the other product's user, as on a real node.
//! - Its own directory: `state/` (the emulator's node state, see `carbonio_sim::exec`), `conf/`
//!   (Postfix's config directory: `master.cf.in`, the `main.cf`/`master.cf` zmconfigd
//!   renders, the node-local lookup tables, and copies of Debian's Postfix meta files),
//!   `postfix/spool` and `postfix/data` (Postfix's queue and data directories),
//!   `zconf/localconfig.xml`, `varlog/` (bind-mounted over /var/log: the mail log the
//!   node's Postfix writes through `postlog`), `sshd_config`, `host_key`,
//!   `authorized_keys/%u`, `sshd.log`, `zmconfigd.log`.
//! - `unshare -m -n --propagation private /bin/sh -c …` gives the node a private MOUNT
//!   namespace, where `state/` is bind-mounted over /opt/zextras/.sim-state, `conf/` over
//!   /opt/zextras/common/conf AND /etc/postfix (Debian's Postfix finds it there too),
//!   `postfix/` over /opt/zextras/data/postfix, the fleet's wrapper dir over
//!   /opt/zextras/bin and the `systemctl` wrapper over /usr/bin/systemctl — so `su -
//!   zextras` (which wipes the environment) still lands on this node's state, and root's
//!   `systemctl restart carbonio-mta.target` reaches the emulator, without touching the
//!   host's files — and root's `.bashrc`/`.profile` are Debian's stock ones (/etc/skel):
//!   sshd runs every command through root's shell, which sources `.bashrc`, and this
//!   machine's own (a developer box's pyenv/cargo setup) costs ~100 ms of CPU per
//!   connection, five times sshd's own cost, which would make every tool — and the
//!   benchmark's floor — measure the test machine's dotfiles instead of SSH — and a
//!   private NETWORK namespace with only `lo`.
//! - Its MTA is REAL Postfix (Debian's `postfix` package, tests/setup-root.sh), started
//!   by the launcher with `postfix start` on an MTA node: smtpd (behind postscreen, as
//!   Carbonio's template has it) on port 25 of the node's namespace, the policy service
//!   a real `spawn` of the zmpostfixpolicyd stand-in ([`policyd_stand_in`]). What
//!   zmconfigd, restarts and reloads of the emulator do reaches it through
//!   `carbonio_sim::realmta` (real `postconf -e`, `postfix start|stop|reload`); the tool's own
//!   `postconf` and `sudo postfix reload` are Postfix's. zmprov, LDAP, zmcontrol and
//!   systemctl stay emulated. With [`RealFleetOptions::zmconfigd_interval`] a
//!   `sim-exec zmconfigd` poller runs as the service user.
//! - SSH listener: the launcher binds the node's own loopback address (127.77.x.y, port
//!   0) in the HOST namespace and hands the listening socket to sshd as fd 3 with
//!   `LISTEN_FDS=1` / `LISTEN_PID` (Debian's OpenSSH supports systemd socket
//!   activation). sshd, living in the node's network namespace, resolves the tool's
//!   direct-tcpip to 127.0.0.1:25 (health gate, SMTP probe) to the node's own Postfix: a
//!   client in mynetworks.
//! - Port 25 from outside: the node's address port 25 in the host namespace is a
//!   [`Relay`] (two threads per connection in the test process) to 127.0.0.1:25 inside
//!   the node, connecting from 127.0.0.2; the node's mynetworks is its own address only
//!   ([`MYNETWORKS`]), so Postfix sees the tool's `probe_from = "orchestrator"` probe as
//!   a client from outside. No veth, no routes: traffic stays on loopback interfaces.
//! - The wrappers are `exec carbonio-fleet sim-exec PROGRAM "$@"` (carbonio, zmprov,
//!   zmcontrol, zmhostname, systemctl, configrewrite); `postfix` and `postconf` in
//!   common/sbin are Debian's, pointed at common/conf. Everything else the tool runs —
//!   `su`, `bash`, `getent`, `grep`, `printf`, `perl` — is the machine's real program,
//!   with the real `zextras` user and its login profile (/opt/zextras/.bash_profile).
//! - Spawn user: a healthy node's master.cf.in spawns the policy service as `zextras`
//!   (exists); a `spawn-user-missing` node names a user that does not exist on this
//!   machine (`zimbra`, or another absent name), and real Postfix fails as it does on a
//!   stock Carbonio node (`fatal: unknown user name`, then `451 4.3.5`).
//!
//! Behaviours: `unreachable` = nothing listens on its port; `hanging` = a listener that
//! never accepts (TCP completes, SSH never speaks); `auth-refused` = the client key is
//! not authorized; `hostkey-changed` = known_hosts lists another key.
//!
//! Teardown: every process in a node's network namespace (sshd, its sessions, the
//! emulator's processes, Postfix's master and its children) is found through /proc and
//! killed by PID; the namespaces vanish with their last process.
//!
//! Needs root, `unshare` with mount and network namespaces, `ip`, `setpriv` and
//! Debian's Postfix; [`RealFleet::available`] prints a visible SKIPPED line otherwise.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use carbonio_sim::exec::{self, RestartLine, SeedNode, Store};
use carbonio_sim::flavour::Flavour;
use carbonio_sim::profiles::SpawnSetup;
use carbonio_sim::{Behaviour, FleetSpec, NodeProfile, NodeSpec, RestartRecord};

use test_prereq::{self as prereq, Need};

use super::sshd::{SSHD_NEEDS, keygen, require_sshd, run};

/// Mount points on the host under a product's tree, created empty once (only bind
/// mounts inside node namespaces fill them): the emulator's state, `common/conf`
/// (Postfix's config directory), `conf`, `bin`, `libexec`, `common/sbin` (Postfix's
/// `postfix` and `postconf`; the service user runs `postfix` through its NOPASSWD sudo
/// rule: tests/setup-root.sh), and `data/postfix` (Postfix's queue and data
/// directories).
fn mount_points(f: Flavour) -> [String; 7] {
    let h = f.home();
    [
        format!("{h}/.sim-state"),
        format!("{h}/common/conf"),
        format!("{h}/conf"),
        format!("{h}/bin"),
        format!("{h}/libexec"),
        format!("{h}/common/sbin"),
        format!("{h}/data/postfix"),
    ]
}
/// The programs that get a wrapper in the product's `bin` (Zimbra has no `carbonio`).
fn wrapped(f: Flavour) -> &'static [&'static str] {
    match f {
        Flavour::Carbonio => &["carbonio", "zmprov", "zmcontrol", "zmhostname"],
        Flavour::Zimbra => &["zmprov", "zmcontrol", "zmhostname"],
    }
}

/// Debian's Postfix files that live in its config directory (`meta_directory` is
/// /etc/postfix there): each node's config directory, bind-mounted over /etc/postfix
/// in the node, carries copies.
const POSTFIX_META: &[&str] = &[
    "postfix-files",
    "postfix-files.d",
    "dynamicmaps.cf",
    "dynamicmaps.cf.d",
    "postfix-script",
    "post-install",
];

/// The stand-in for zmpostfixpolicyd that each node's real Postfix spawns (the argv of
/// the policy entry): like the real script (Zimbra/zm-core-utils
/// `src/libexec/zmpostfixpolicyd` line 40, `XMLin` of localconfig.xml before anything
/// else), it first reads localconfig.xml as the spawn user, and when it cannot it
/// prints its error (spawn connects stderr to the socket) and exits 255; then the
/// emulator answers the requests from the node's LDAP (`sim-exec policyd`).
fn policyd_stand_in(f: Flavour, bin: &str) -> String {
    format!(
        "#!/usr/bin/perl\n\
         # carbonio-fleet test fleet: a stand-in for zmpostfixpolicyd (tests/support/realfleet.rs)\n\
         use strict;\n\
         my $lc = '{lc}';\n\
         my $xml;\n\
         if (open(my $fh, '<', $lc)) {{ local $/; $xml = <$fh>; close($fh); }}\n\
         else {{ print STDERR \"Can't open $lc: $! at $0 line 40.\\n\"; exit 255; }}\n\
         if ($xml !~ /ldap_postfix_password/) {{ print STDERR \"no ldap_postfix_password in $lc at $0 line 44.\\n\"; exit 255; }}\n\
         $ENV{{'{env}'}} = '{state}';\n\
         exec('{bin}', 'sim-exec', 'policyd') or do {{ print STDERR \"exec {bin}: $!\\n\"; exit 255; }};\n",
        lc = f.localconfig(),
        env = exec::STATE_ENV,
        state = mount_points(f)[0],
    )
}
/// The service user's login profile (docs/carbonio.md §9: the product's bin first in PATH).
fn bash_profile(f: Flavour) -> String {
    let h = f.home();
    format!(
        "# carbonio-fleet test fleet: the {} login PATH (docs/carbonio.md §9)\n\
         export PATH={h}/bin:{h}/common/bin:{h}/common/sbin:/usr/sbin:$PATH\n\
         umask 0027\n",
        f.product()
    )
}

/// Every node's `zimbraMtaMyNetworks`: its own address (127.0.0.1 in its namespace).
pub const MYNETWORKS: &str = "127.0.0.1/32 [::1]/128";
/// Where a node's relay connects from inside the node: a loopback address outside
/// [`MYNETWORKS`].
pub const OUTSIDE_CLIENT: &str = "127.0.0.2";

/// Changes the owner of `dir` and everything in it.
fn chown_tree(dir: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && !p.is_symlink() {
            chown_tree(&p, uid, gid);
        } else {
            std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).unwrap();
        }
    }
}

/// A free address of its own on this machine's loopback for a node (its SSH listener,
/// and its relay to port 25, so that port 25 can be every node's), with the relay's
/// listener already bound there. Fleets of one test process (run in parallel) take
/// addresses in turn; one still in use elsewhere is skipped.
fn node_address() -> (String, TcpListener) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    loop {
        let i = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(i < 250 * 256, "out of loopback addresses for nodes");
        let address = format!("127.77.{}.{}", i / 250, i % 250 + 1);
        if let Ok(l) = TcpListener::bind((address.as_str(), 25)) {
            return (address, l);
        }
    }
}

/// A node's port 25 seen from outside it: a listener on the node's address in this
/// (the machine's) network namespace, each connection relayed by two threads to
/// 127.0.0.1:25 INSIDE the node's network namespace, from [`OUTSIDE_CLIENT`]: so the
/// node's Postfix sees a client outside mynetworks, as it would see the orchestrator.
/// (The other choice, a veth pair per node, would need routes and addresses on the
/// machine; this keeps every packet on loopback interfaces.)
struct Relay {
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
}

impl Relay {
    fn start(listener: TcpListener, netns: PathBuf) -> Relay {
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let netns = netns.clone();
                std::thread::spawn(move || {
                    let Ok(upstream) = connect_inside(&netns, OUTSIDE_CLIENT) else {
                        return;
                    };
                    pump(client, upstream);
                });
            }
        });
        Relay { stop, addr }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

/// A TCP connection to 127.0.0.1:25 made inside the network namespace at `netns`, from
/// address `from`. Call it on a thread of its own: `setns` moves only the calling
/// thread (for good), and a socket keeps the namespace it was made in.
#[expect(unsafe_code, reason = "setns: std cannot enter a namespace")]
fn connect_inside(netns: &Path, from: &str) -> std::io::Result<std::net::TcpStream> {
    let ns = fs::File::open(netns)?;
    // SAFETY: setns(2) on a namespace file we opened; affects only this thread, which
    // does nothing else afterwards but relay this connection.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let from: std::net::SocketAddr = format!("{from}:0").parse().expect("an address");
    socket.bind(&from.into())?;
    let to: std::net::SocketAddr = "127.0.0.1:25".parse().expect("an address");
    socket.connect(&to.into())?;
    Ok(socket.into())
}

/// Copies both directions until either side closes.
fn pump(a: std::net::TcpStream, b: std::net::TcpStream) {
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let (mut a, mut b) = (a, b);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a, &mut b2);
        let _ = b2.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut b, &mut a2);
    let _ = a2.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
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
    /// Each node's zmconfigd polling interval (`sim-exec zmconfigd`, as the service
    /// user); `None`: no zmconfigd runs (LDAP reaches Postfix only through
    /// configrewrite or a restart). Carbonio's is 60 s.
    pub zmconfigd_interval: Option<Duration>,
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
            zmconfigd_interval: None,
        }
    }
}

/// One running node.
pub struct RealNode {
    pub name: String,
    pub cluster: String,
    pub profile: NodeProfile,
    /// Its address on this machine's loopback (SSH, and port 25 through its relay).
    pub address: String,
    /// Its SSH port there.
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
    /// Its port 25 on `address`, relayed from outside mynetworks (bound; relaying once
    /// the node is up).
    port25: Option<TcpListener>,
    _relay: Option<Relay>,
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

    /// The node's mail log so far (what its real Postfix wrote).
    pub fn mail_log(&self) -> String {
        let name = Path::new(self.profile.flavour.mail_log())
            .file_name()
            .expect("a file");
        fs::read_to_string(self.dir.join("varlog").join(name)).unwrap_or_default()
    }

    /// A connection to the node's port 25 as a client ON the node (127.0.0.1, in its
    /// mynetworks: where the tool's SSH channel connects from).
    pub fn smtp_inside(&self) -> std::net::TcpStream {
        let pid = self.sshd_pid().expect("a running node");
        let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
        std::thread::spawn(move || connect_inside(&netns, "127.0.0.1"))
            .join()
            .expect("the connecting thread")
            .expect("port 25 inside the node")
    }

    /// A connection to the node's port 25 from outside its mynetworks (its relay).
    pub fn smtp_outside(&self) -> std::net::TcpStream {
        std::net::TcpStream::connect((self.address.as_str(), 25)).expect("the node's relay")
    }

    /// Edits the node's master.cf.in (as a carbonio-mta upgrade or an operator would):
    /// the next rendering (zmconfigd, configrewrite, a restart) writes master.cf from it.
    pub fn edit_master_cf_in(&self, edit: impl FnOnce(&str) -> String) {
        let path = self.dir.join("conf").join("master.cf.in");
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, edit(&text)).unwrap();
    }

    /// Breaks the node's policy daemon the moment its own server entry is first changed
    /// (the tool's staging write): after the gather (see `exec::StageFault`).
    pub fn break_policyd_on_stage(&self, fault: exec::StageFault) {
        self.store
            .update(|nf, _| nf.stage_fault = Some(fault))
            .unwrap();
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

#[expect(unsafe_code, reason = "kill: std signals only its children")]
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
            Need::program("setpriv", "util-linux"),
            Need::program("perl", "perl-base"),
            // Each node's MTA (tests/setup-root.sh installs it unconfigured, not started).
            Need::file("/usr/sbin/postfix", "postfix"),
            Need::file("/etc/postfix/postfix-script", "postfix"),
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
            // The mount point of each node's private /run/systemd (empty where the
            // machine has none; Debian creates it even without systemd).
            fs::create_dir_all("/run/systemd").unwrap();
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
            // Postfix's own `postfix` and `postconf`, as Carbonio's are (built with
            // config_directory HOME/common/conf): Debian's, pointed there.
            fs::create_dir_all(tree.join("sbin")).unwrap();
            for p in ["postfix", "postconf"] {
                write_mode(
                    &tree.join("sbin").join(p),
                    &format!(
                        "#!/bin/sh\nexec /usr/sbin/{p} -c {}/common/conf \"$@\"\n",
                        f.home()
                    ),
                    0o755,
                );
            }
            let bin_path = bin.to_str().expect("UTF-8 test path");
            assert!(
                !bin_path.contains('\''),
                "{bin_path}: no quote in the fleet path"
            );
            write_mode(
                &tree.join("libexec").join("zmpostfixpolicyd"),
                &policyd_stand_in(f, bin_path),
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
                    real_postfix: true,
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
            // The node's own address only: its relay's 127.0.0.2 is a client from
            // outside (see `Relay`).
            mynetworks: Some(MYNETWORKS.into()),
            ..FleetSpec::default()
        };
        // Each node's config directory exists before seeding renders main.cf into it.
        for n in &specs {
            let conf = d.join("nodes").join(&n.name).join("conf");
            fs::create_dir_all(&conf).unwrap();
            for m in POSTFIX_META {
                run(Command::new("cp")
                    .arg("-a")
                    .arg(Path::new("/etc/postfix").join(m))
                    .arg(&conf));
            }
        }
        let domains = exec::seed(&spec, &seeds, &d.join("clusters")).unwrap();
        // The hosted domains' SPF/DKIM/DMARC records, served on 127.0.0.1 so that the
        // domain pass of `check` never asks the machine's own resolver.
        let dns_rt = tokio::runtime::Runtime::new().unwrap();
        let dns_cancel = tokio_util::sync::CancellationToken::new();
        let (dns_addr, _dns_task) = dns_rt
            .block_on(carbonio_sim::dns::serve(&domains, dns_cancel.clone()))
            .unwrap();

        let mut nodes = Vec::new();
        let mut known_hosts = String::new();
        for (n, seed) in specs.iter().zip(&seeds) {
            let flavour = n.profile.flavour;
            let (address, port25) = node_address();
            let nd = d.join("nodes").join(&n.name);
            fs::set_permissions(&nd, fs::Permissions::from_mode(0o755)).unwrap();
            let conf = nd.join("conf");
            fs::create_dir_all(&conf).unwrap();
            write_mode(
                &conf.join("master.cf.in"),
                &carbonio_sim::postfix::master_cf_in_for(flavour, &seed.spawn_user),
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
            // service user (docs/carbonio.md §1), with the LDAP passwords in it.
            let zconf = nd.join("zconf");
            fs::create_dir_all(&zconf).unwrap();
            fs::set_permissions(&zconf, fs::Permissions::from_mode(0o755)).unwrap();
            let lc = zconf.join("localconfig.xml");
            write_mode(&lc, &carbonio_sim::node::localconfig_xml(&n.name), 0o640);
            let service = exec::machine_users()
                .into_iter()
                .find(|u| u.name == flavour.user())
                .expect("the service user (tests/setup-root.sh)");
            std::os::unix::fs::chown(&lc, Some(service.uid), Some(service.gid)).unwrap();
            let version = nd.join("version");
            write_mode(&version, &n.profile.version_file().1, 0o644);
            // Postfix's directories as Carbonio has them: the config directory the
            // service user's zmconfigd rewrites (so it owns it), the queue directory
            // root's (Postfix makes its subdirectories at start), the data directory
            // postfix's; and the mail log its postlogd appends to, readable by all as
            // syslog's is on a node.
            chown_tree(&conf, service.uid, service.gid);
            let queue = nd.join("postfix").join("spool");
            let data = nd.join("postfix").join("data");
            fs::create_dir_all(&queue).unwrap();
            fs::create_dir_all(&data).unwrap();
            let postfix_user = exec::machine_users()
                .into_iter()
                .find(|u| u.name == "postfix")
                .expect("the postfix user (Debian's postfix package)");
            std::os::unix::fs::chown(&data, Some(postfix_user.uid), Some(postfix_user.gid))
                .unwrap();
            fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).unwrap();
            let varlog = nd.join("varlog");
            fs::create_dir_all(&varlog).unwrap();
            let mail_log = varlog.join(Path::new(flavour.mail_log()).file_name().expect("a file"));
            write_mode(&mail_log, "", 0o644);
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
            let listener = TcpListener::bind((address.as_str(), 0)).unwrap();
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
            known_hosts.push_str(&format!("[{address}]:{port} {listed}\n"));
            let log = nd.join("sshd.log");
            let mut node = RealNode {
                name: n.name.clone(),
                cluster: n.cluster.clone(),
                profile: n.profile,
                address: address.clone(),
                port,
                dir: nd.clone(),
                store: Store::new(&seed.state_dir),
                log: log.clone(),
                child: None,
                netns: None,
                _hang: None,
                port25: Some(port25),
                _relay: None,
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
                        postfix_mp,
                    ] = mount_points(flavour);
                    let tree = d.join(flavour.as_str());
                    // Postfix runs only where the node's LDAP enables the MTA.
                    let is_mta = node.store.read().unwrap().0.state.postfix.is_some();
                    // The gather asks systemctl only where /run/systemd/system exists (as
                    // sd_booted() does): a private tmpfs over /run/systemd holds it on a
                    // systemd node and hides the machine's on a legacy one.
                    let systemd = node.store.read().unwrap().0.state.platform
                        == carbonio_sim::node::Platform::Systemd;
                    let run_systemd = format!(
                        "mount -t tmpfs -o mode=0755 cfleet-run-systemd /run/systemd\n{}",
                        if systemd {
                            "mkdir /run/systemd/system\n"
                        } else {
                            ""
                        }
                    );
                    let postfix_start = if is_mta {
                        format!(
                            "{}/postfix start 3>&- </dev/null || {{ echo \"{}: postfix start failed\" >&2; exit 1; }}\n",
                            q(Path::new(&sbin_mp)),
                            n.name
                        )
                    } else {
                        String::new()
                    };
                    let zmconfigd = match opts.zmconfigd_interval {
                        Some(every) if is_mta => format!(
                            "setpriv --reuid={u} --regid={u} --init-groups env {env}={state_mp} {bin_q} sim-exec zmconfigd --interval {every}ms 3>&- </dev/null >>{log} 2>&1 &\n",
                            u = flavour.user(),
                            env = exec::STATE_ENV,
                            state_mp = q(Path::new(&state_mp)),
                            every = every.as_millis(),
                            log = q(&nd.join("zmconfigd.log")),
                        ),
                        _ => String::new(),
                    };
                    let script = format!(
                        "set -e\n\
                         ip link set lo up\n\
                         mount --bind {state} {state_mp}\n\
                         mount --bind {conf} {conf_mp}\n\
                         mount --bind {conf} /etc/postfix\n\
                         mount --bind {zconf} {zconf_mp}\n\
                         mount --bind {version} {version_file}\n\
                         mount --bind {wrappers} {bin_mp}\n\
                         mount --bind {libexec} {libexec_mp}\n\
                         mount --bind {sbin} {sbin_mp}\n\
                         mount --bind {postfix} {postfix_mp}\n\
                         mount --bind {varlog} /var/log\n\
                         mount --bind {systemctl} /usr/bin/systemctl\n\
                         {run_systemd}\
                         mount --bind {passwd} /etc/passwd\n\
                         mount --bind {group} /etc/group\n\
                         for f in .bashrc .profile; do\n\
                           if [ -e /root/$f ] && [ -e /etc/skel/$f ]; then mount --bind /etc/skel/$f /root/$f; fi\n\
                         done\n\
                         {postfix_start}\
                         {zmconfigd}\
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
                        postfix = q(&nd.join("postfix")),
                        postfix_mp = q(Path::new(&postfix_mp)),
                        varlog = q(&nd.join("varlog")),
                        systemctl = q(&tree.join("systemctl")),
                        passwd = q(&nd.join("passwd")),
                        group = q(&nd.join("group")),
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
                    #[expect(unsafe_code, reason = "pre_exec: std cannot put a socket on fd 3")]
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

    /// Waits until every running node's sshd is exec'd (its launcher started Postfix
    /// before: `postfix start` returns once the master runs); then records each node's
    /// network namespace (for teardown and `kill_sessions`) and starts its relay.
    fn wait_ready(&mut self) {
        let own = netns_of(std::process::id()).expect("own netns");
        // Each MTA node starts a real Postfix first (`postfix start`: ~0.4 s of CPU, far
        // more on a loaded 2-core machine, 50 of them at once): a bound far beyond any
        // healthy start, scaled with the fleet, never a timing assertion. A launcher
        // that died is reported at once.
        let limit = Duration::from_secs(120 + 5 * self.nodes.len() as u64);
        let deadline = Instant::now() + limit;
        for node in &mut self.nodes {
            let Some(pid) = node.sshd_pid() else { continue };
            loop {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "sshd" {
                    break;
                }
                let exited = node
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                // The status says how it ended (a signal, or the launcher script's own
                // exit code) when its log is empty.
                assert!(
                    exited.is_none(),
                    "{}: its launcher exited before sshd started ({}): {}",
                    node.name,
                    exited.map(|s| s.to_string()).unwrap_or_default(),
                    node.log_text()
                );
                assert!(
                    Instant::now() < deadline,
                    "{} not ready after {}: {}",
                    node.name,
                    carbonio_fleet::duration::display(limit),
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
            if let Some(l) = node.port25.take() {
                node._relay = Some(Relay::start(
                    l,
                    PathBuf::from(format!("/proc/{pid}/ns/net")),
                ));
            }
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
                "\n[[hosts]]\nname = \"{}\"\naddress = \"{}\"\nport = {}\ncluster = \"{}\"\ngroups = [\"{}\"]\negress = [\"{}\"]\n",
                n.name, n.address, n.port, n.cluster, platform, self.egress[&n.cluster]
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

    /// Every node's finished restarts, as records for `carbonio_sim::max_concurrent`.
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
        // A node whose namespace was not recorded yet (the fleet failed while starting)
        // still has its launcher: its namespace is found through it, so the Postfix
        // master it daemonized is not left behind.
        let own = netns_of(std::process::id());
        let namespaces: Vec<String> = self
            .nodes
            .iter_mut()
            .filter_map(|n| {
                n.netns.take().or_else(|| {
                    let pid = n.child.as_ref()?.id();
                    netns_of(pid).filter(|ns| Some(ns) != own.as_ref())
                })
            })
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
