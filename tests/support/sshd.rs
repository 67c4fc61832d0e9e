//! A real OpenSSH server for tests: `/usr/sbin/sshd -D -e -f CONFIG` on 127.0.0.1 with a
//! free port, its own ed25519 host key and authorized_keys in a temp dir, `UsePAM no`
//! (passwords checked against /etc/shadow), `StrictModes no`, `MaxStartups 1000:30:1000`
//! and `LogLevel DEBUG3` into a log file. Ready when its port accepts a connection
//! (polled with a deadline); killed by PID on drop. Needs root and OpenSSH
//! ([`SSHD_NEEDS`]): [`Sshd::start`] returns `None` after printing a SKIPPED line naming
//! what is missing otherwise (a failure under `CI=true`).

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use test_prereq::{self as prereq, Need};

/// The password-auth test user (created by tests/setup-root.sh and [`ensure_users`]).
pub const TEST_USER: &str = "cfleet-test";
/// Its password, set with chpasswd.
pub const TEST_PASSWORD: &str = "cfleet-test-Pa55";

/// What every real-sshd test needs from the machine (tests/setup-root.sh installs it).
pub const SSHD_NEEDS: &[Need] = &[
    Need::Root,
    Need::file("/usr/sbin/sshd", "openssh-server"),
    Need::program("ssh-keygen", "openssh-client"),
    Need::program("ssh-agent", "openssh-client"),
    Need::program("ssh-add", "openssh-client"),
    Need::program("sudo", "sudo"),
];

/// True when the real-sshd tests can run (creating their users); otherwise prints a
/// visible SKIPPED line naming what is missing, or fails under `CI=true`
/// (see [`test_prereq`]).
pub fn require_sshd(test: &str) -> bool {
    if prereq::require(test, SSHD_NEEDS) {
        ensure_users();
        true
    } else {
        false
    }
}

/// Runs `cmd` to completion; panics (naming it) unless it succeeds.
pub fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {out:?}");
    out
}

/// Creates `zextras` (home /opt/zextras) and [`TEST_USER`] with [`TEST_PASSWORD`] if missing.
pub fn ensure_users() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let exists = |u: &str| {
            Command::new("id")
                .arg(u)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !exists("zextras") {
            fs::create_dir_all("/opt").unwrap();
            run(Command::new("useradd").args([
                "--create-home",
                "--home-dir",
                "/opt/zextras",
                "--shell",
                "/bin/bash",
                "zextras",
            ]));
        }
        if !exists(TEST_USER) {
            run(Command::new("useradd").args(["--create-home", "--shell", "/bin/bash", TEST_USER]));
        }
        let mut child = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{TEST_USER}:{TEST_PASSWORD}\n").as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        fs::create_dir_all("/run/sshd").unwrap();
    });
}

/// Generates a key pair with ssh-keygen; returns (private key path, public key line).
pub fn keygen(dir: &Path, name: &str, passphrase: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-C", name, "-N", passphrase, "-f"])
        .arg(&path));
    let public = fs::read_to_string(path.with_extension("pub")).unwrap();
    (path, public.trim().to_owned())
}

/// A running sshd.
pub struct Sshd {
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// `ssh-ed25519 AAAA…` of the host key.
    pub host_key: String,
    pub log: PathBuf,
    child: Child,
}

impl Sshd {
    /// Starts an sshd with the default test config, or `None` when not root.
    pub fn start(test: &str) -> Option<Sshd> {
        Self::start_with(test, "")
    }

    /// Starts an sshd with extra config lines appended.
    pub fn start_with(test: &str, extra: &str) -> Option<Sshd> {
        Self::start_prepared(test, |_| extra.to_owned())
    }

    /// Starts an sshd after `prepare` ran on its directory (which already holds
    /// `host_key` and `host_key.pub`, e.g. to sign a host certificate); the lines it
    /// returns are appended to the config.
    pub fn start_prepared(test: &str, prepare: impl FnOnce(&Path) -> String) -> Option<Sshd> {
        if !require_sshd(test) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("cfleet-sshd-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(d.join("host_key")));
        let host_key = fs::read_to_string(d.join("host_key.pub")).unwrap();
        let host_key = host_key
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let extra = prepare(d);
        fs::create_dir_all(d.join("authorized_keys")).unwrap();
        // The temp dir is 0700; sshd reads authorized_keys as the target user.
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = d.join("sshd.log");
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}/%u\n\
             PidFile {pid}\nUsePAM no\nStrictModes no\nPermitRootLogin yes\nPasswordAuthentication yes\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nMaxStartups 1000:30:1000\n\
             MaxSessions 10\nAllowTcpForwarding yes\nLogLevel DEBUG3\nSubsystem sftp internal-sftp\n{extra}\n",
            hk = d.join("host_key").display(),
            ak = d.join("authorized_keys").display(),
            pid = d.join("sshd.pid").display(),
        );
        fs::write(d.join("sshd_config"), config).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut sshd = Sshd {
            port,
            dir,
            host_key,
            log,
            child,
        };
        sshd.wait_ready();
        Some(sshd)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("sshd exited with {status}: {}", self.log_text());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sshd not ready after 15 s: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Authorizes a public key line for `user`.
    pub fn authorize(&self, user: &str, public_key: &str) {
        let path = self.dir.path().join("authorized_keys").join(user);
        let mut text = fs::read_to_string(&path).unwrap_or_default();
        text.push_str(public_key);
        text.push('\n');
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// A plain known_hosts line for this server.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key)
    }

    /// The sshd log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (bounded), returns the log.
    pub fn wait_log(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.log_text();
            if text.contains(needle) || Instant::now() >= deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary sudoers rule, removed on drop.
pub struct SudoRule(PathBuf);

impl SudoRule {
    /// `USER ALL=(ALL) NOPASSWD: ALL` in /etc/sudoers.d.
    pub fn nopasswd(user: &str) -> SudoRule {
        let path = PathBuf::from(format!("/etc/sudoers.d/cfleet-test-{}", std::process::id()));
        fs::write(&path, format!("{user} ALL=(ALL) NOPASSWD: ALL\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o440)).unwrap();
        SudoRule(path)
    }
}

impl Drop for SudoRule {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A real ssh-agent on its own socket, killed on drop.
pub struct Agent {
    pub socket: PathBuf,
    pid: u32,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Starts `ssh-agent -a SOCK` and adds `keys` with ssh-add.
    pub fn start(keys: &[&Path]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let out = run(Command::new("ssh-agent").arg("-s").arg("-a").arg(&socket));
        let text = String::from_utf8_lossy(&out.stdout);
        let pid = text
            .split(';')
            .find_map(|p| p.trim().strip_prefix("SSH_AGENT_PID="))
            .expect("ssh-agent prints its pid")
            .parse()
            .unwrap();
        let agent = Agent {
            socket,
            pid,
            _dir: dir,
        };
        for key in keys {
            run(Command::new("ssh-add")
                .arg(key)
                .env("SSH_AUTH_SOCK", &agent.socket));
        }
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
    }
}

/// An inventory host for a test sshd on 127.0.0.1: strict host-key checking against
/// `known_hosts`, `become = auto`, 20 s connect and command timeouts.
pub fn loopback_host(
    name: &str,
    port: u16,
    user: &str,
    known_hosts: &Path,
    identity_files: Vec<PathBuf>,
) -> carbonio_fleet::inventory::Host {
    use carbonio_fleet::inventory::{Become, Host, HostKeyPolicy};
    Host {
        name: name.into(),
        address: "127.0.0.1".into(),
        port,
        user: user.into(),
        identity_files,
        become_: Become::Auto,
        flavour: carbonio_fleet::flavour::FlavourSetting::Auto,
        known_hosts: known_hosts.to_owned(),
        known_hosts_also: Vec::new(),
        host_key_policy: HostKeyPolicy::Strict,
        connect_timeout: Duration::from_secs(20),
        command_timeout: Duration::from_secs(20),
        jump: None,
        groups: vec![],
        cluster: name.into(),
        roles: vec![],
        vars: Default::default(),
        egress: Vec::new(),
        source: "test.toml".into(),
    }
}
