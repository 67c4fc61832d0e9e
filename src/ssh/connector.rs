//! Opening connections: TCP (or a tunnel through a bastion), the SSH handshake with the
//! host key checked against known_hosts before any credential is sent, then
//! authentication (ssh-agent, identity files, password from the keyring).
//!
//! One [`Connector`] serves a whole run: it caches decrypted keys (decrypting costs
//! ~125 ms of CPU each), caps concurrent handshakes (sshd `MaxStartups`), serialises
//! known_hosts writes and multiplexes every target behind a bastion over one bastion
//! connection (direct-tcpip channels), at most `max_tunnels_per_bastion` of them per
//! connection: beyond that a further connection to the same bastion is opened, so a
//! run that holds its sessions (apply) never waits for a slot. A bastion that cannot be
//! reached is tried ONCE per run: the failure is logged once and every host behind it
//! fails with the same "unreachable via bastion" message (kind unreachable), without
//! a new attempt per host. It has no timeouts of its own besides
//! `Host::connect_timeout` (the bastion's own connect gets the first target's).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::ssh_key::PublicKey;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{
    Algorithm, Certificate, EcdsaCurve, HashAlg, PrivateKey, PrivateKeyWithHashAlg,
    PublicKeyOrCertificate,
};
use tokio::net::TcpStream;
use tokio::sync::{OnceCell, Semaphore};

use super::error::{ConnectError, FailureKind, HostKeyDetail};
use super::known_hosts::{
    HostKeyStatus, KnownHosts, KnownHostsCache, append_hashed, fingerprint, pattern_matches,
};
use super::session::{Session, SessionInner};
use crate::inventory::{Host, HostKeyPolicy, JumpSpec};
use crate::secrets::{self, SecretKind};

/// Tunables shared by every connection of a run.
#[derive(Debug, Clone)]
pub struct ConnectorOptions {
    /// Cap per output stream (stdout, stderr) of one command; beyond it output is cut.
    pub max_output: usize,
    /// Keepalive probe interval on established connections.
    pub keepalive_interval: Duration,
    /// Unanswered keepalives before the connection is declared dead.
    pub keepalive_max: usize,
    /// Handshakes (connect + kex + auth) in flight at once, across all hosts.
    pub max_handshakes: usize,
    /// Commands in flight per connection (OpenSSH `MaxSessions` defaults to 10).
    pub max_channels_per_conn: usize,
    /// Open direct-tcpip tunnels (target sessions) per bastion connection; beyond it
    /// another connection to the bastion is opened.
    pub max_tunnels_per_bastion: usize,
    /// The ssh-agent socket; [`Default`] takes `SSH_AUTH_SOCK`.
    pub agent_socket: Option<PathBuf>,
}

impl Default for ConnectorOptions {
    fn default() -> Self {
        ConnectorOptions {
            max_output: 16 * 1024 * 1024,
            keepalive_interval: Duration::from_secs(15),
            keepalive_max: 3,
            max_handshakes: 16,
            max_channels_per_conn: 10,
            max_tunnels_per_bastion: 64,
            agent_socket: std::env::var_os("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        }
    }
}

/// One connection to a bastion and its tunnel slots.
struct BastionConn {
    session: Session,
    tunnels: Arc<Semaphore>,
}

/// Everything known about one bastion `user@host:port` during a run.
#[derive(Default)]
struct BastionState {
    conns: Vec<BastionConn>,
    /// Set by the first failed connect; later targets get it without a new attempt.
    failed: Option<ConnectError>,
}

type BastionSlot = Arc<tokio::sync::Mutex<BastionState>>;

/// A tunnel slot on a bastion connection, held for the life of the target's session.
pub(crate) struct Tunnel {
    session: Session,
    _slot: tokio::sync::OwnedSemaphorePermit,
}
struct ConnectorInner {
    opts: ConnectorOptions,
    config: Arc<client::Config>,
    /// `config` plus the certificate host-key algorithms, for hosts that known_hosts
    /// gives a `@cert-authority` (as OpenSSH does, certificates are only asked for
    /// where a CA could vouch for them).
    cert_config: Arc<client::Config>,
    keys: Mutex<HashMap<PathBuf, Arc<OnceCell<Arc<PrivateKey>>>>>,
    handshakes: Semaphore,
    known_hosts: Arc<KnownHostsCache>,
    bastions: Mutex<HashMap<String, BastionSlot>>,
}

/// Opens sessions to hosts; clone it freely (an `Arc` inside).
#[derive(Clone)]
pub struct Connector {
    inner: Arc<ConnectorInner>,
}

/// Error type of the russh client handler: a typed refusal comes out of `connect` as is.
#[derive(Debug)]
pub(crate) enum CheckerError {
    Ssh(russh::Error),
    Refused(Box<ConnectError>),
    /// Scan mode: the key was recorded, the handshake stops here.
    Scanned(Box<PublicKey>),
}

impl From<russh::Error> for CheckerError {
    fn from(e: russh::Error) -> Self {
        CheckerError::Ssh(e)
    }
}

/// The russh handler: checks the server's host key against known_hosts.
pub(crate) struct Checker {
    host_name: String,
    address: String,
    port: u16,
    /// The user file, where accept-new writes.
    known_hosts: PathBuf,
    /// The other files read with it (more user files, the global ones).
    also: Vec<PathBuf>,
    policy: HostKeyPolicy,
    cache: Arc<KnownHostsCache>,
    scan: bool,
}

/// Combines the verdicts for the address and the inventory name:
/// revoked > known > changed > unknown.
pub(crate) fn check_names(
    kh: &KnownHosts,
    name: &str,
    address: &str,
    port: u16,
    key: &PublicKey,
) -> HostKeyStatus {
    let mut best = kh.check(address, port, key);
    if name != address {
        let other = kh.check(name, port, key);
        let rank = |s: &HostKeyStatus| match s {
            HostKeyStatus::Revoked { .. } => 3,
            HostKeyStatus::Known { .. } => 2,
            HostKeyStatus::Changed { .. } => 1,
            HostKeyStatus::Unknown => 0,
        };
        if rank(&other) > rank(&best) {
            best = other;
        }
    }
    best
}

/// What to run when a host key changed: look at the pinned line, and only if the host
/// really was re-keyed (verified out of band), remove it and record the new key.
fn review_hint(address: &str, port: u16, file: &Path) -> String {
    let name = super::known_hosts::lookup_name(address, port);
    let (Ok(n), Ok(f)) = (
        super::quote(&name),
        super::quote(&file.display().to_string()),
    ) else {
        return String::new();
    };
    format!(
        "; review it with `ssh-keygen -F {n} -f {f}`; only if the host was re-keyed (check the new fingerprint out of band), remove it with `ssh-keygen -R {n} -f {f}` and run `carbonio-fleet hostkeys scan --write`"
    )
}

impl Checker {
    fn target(&self) -> String {
        format!("`{}` ({}:{})", self.host_name, self.address, self.port)
    }

    /// A refusal; `at` is the known_hosts file and line that decided, if one did.
    fn refuse(
        &self,
        message: String,
        expected: Vec<String>,
        offered: &PublicKey,
        at: Option<(&Path, usize)>,
    ) -> CheckerError {
        CheckerError::Refused(Box::new(ConnectError {
            kind: FailureKind::Hostkey,
            message,
            detail: Some(HostKeyDetail {
                expected,
                offered: fingerprint(offered),
                line: at.map(|(_, l)| l),
                known_hosts: at.map_or_else(|| self.known_hosts.clone(), |(f, _)| f.to_path_buf()),
            }),
        }))
    }

    fn verify(&self, key: &PublicKey) -> Result<(), CheckerError> {
        let path = self.known_hosts.display();
        self.cache
            .with_all(&self.known_hosts, &self.also, |kh| self.judge(kh, key))
            .map_err(|e| {
                CheckerError::Refused(Box::new(ConnectError::new(
                    FailureKind::Hostkey,
                    format!("cannot read known_hosts {path} for {}: {e}", self.target()),
                )))
            })?
    }

    /// Runs under the cache lock, so an accept-new append cannot race another.
    fn judge(&self, kh: &KnownHosts, key: &PublicKey) -> Result<(), CheckerError> {
        let path = self.known_hosts.display();
        let offered = fingerprint(key);
        match check_names(kh, &self.host_name, &self.address, self.port, key) {
            HostKeyStatus::Known { .. } => Ok(()),
            HostKeyStatus::Unknown if self.policy == HostKeyPolicy::AcceptNew => {
                append_hashed(&self.known_hosts, &self.address, self.port, key).map_err(|e| {
                    CheckerError::Refused(Box::new(ConnectError::new(
                        FailureKind::Hostkey,
                        format!("cannot record the host key of {} in {path}: {e}", self.target()),
                    )))
                })?;
                tracing::info!(host = %self.host_name, fingerprint = %offered, "learnt new host key (accept-new)");
                Ok(())
            }
            HostKeyStatus::Unknown => Err(self.refuse(
                format!(
                    "host key for {} is not in known_hosts {path}: offered {offered} \
                     (policy strict; check it, then add it with `carbonio-fleet hostkeys scan -i INVENTORY --write`)",
                    self.target()
                ),
                vec![],
                key,
                None,
            )),
            HostKeyStatus::Changed {
                file,
                line,
                expected,
            } => Err(self.refuse(
                format!(
                    "host key for {} does not match {}:{line}: expected {}, offered {offered}{}",
                    self.target(),
                    file.display(),
                    expected.join(" or "),
                    review_hint(&self.address, self.port, &file)
                ),
                expected,
                key,
                Some((&file, line)),
            )),
            HostKeyStatus::Revoked { file, line } => Err(self.refuse(
                format!(
                    "host key for {} is revoked in {}:{line}: offered {offered}",
                    self.target(),
                    file.display()
                ),
                vec![],
                key,
                Some((&file, line)),
            )),
        }
    }
}

impl Checker {
    /// Verifies a host certificate against the `@cert-authority` lines for this host.
    fn verify_certificate(&self, cert: &Certificate) -> Result<(), CheckerError> {
        let path = self.known_hosts.display();
        self.cache
            .with_all(&self.known_hosts, &self.also, |kh| {
                self.judge_certificate(kh, cert, now_unix())
            })
            .map_err(|e| {
                CheckerError::Refused(Box::new(ConnectError::new(
                    FailureKind::Hostkey,
                    format!("cannot read known_hosts {path} for {}: {e}", self.target()),
                )))
            })?
    }

    /// The `@cert-authority` entries for the address or the inventory name.
    fn authorities<'k>(&self, kh: &'k KnownHosts) -> Vec<&'k super::known_hosts::Entry> {
        let mut cas = kh.authorities(&self.address, self.port);
        if self.host_name != self.address {
            for e in kh.authorities(&self.host_name, self.port) {
                if !cas.iter().any(|c| c.line == e.line) {
                    cas.push(e);
                }
            }
        }
        cas
    }

    fn revoked(&self, kh: &KnownHosts, key: &PublicKey) -> Option<(PathBuf, usize)> {
        kh.revoked_line(&self.address, self.port, key)
            .or_else(|| kh.revoked_line(&self.host_name, self.port, key))
    }

    /// OpenSSH's checks for a host certificate: a CA trusted for this host signed it,
    /// it is a host (not user) certificate, `now` is inside its validity window, one of
    /// its principals names the host, it carries no critical option we do not know,
    /// and neither the CA nor the certified key is revoked.
    fn judge_certificate(
        &self,
        kh: &KnownHosts,
        cert: &Certificate,
        now: u64,
    ) -> Result<(), CheckerError> {
        let target = self.target();
        let certified = PublicKey::from(cert.public_key().clone());
        let ca_key = PublicKey::from(cert.signature_key().clone());
        let ca_fp = fingerprint(&ca_key);
        let cas = self.authorities(kh);
        if cas.is_empty() {
            // No CA vouches for this host: judge the certified key as a plain key
            // (what OpenSSH does after "no matching CA found").
            return self.judge(kh, &certified);
        }
        let expected: Vec<String> = cas.iter().map(|e| fingerprint(&e.key)).collect();
        let refuse = |message: String, at: Option<(&Path, usize)>| {
            self.refuse(message, expected.clone(), &certified, at)
        };
        if let Some((file, line)) = self.revoked(kh, &ca_key) {
            return Err(refuse(
                format!(
                    "host certificate of {target} is signed by CA {ca_fp}, which {}:{line} revokes",
                    file.display()
                ),
                Some((&file, line)),
            ));
        }
        if let Some((file, line)) = self.revoked(kh, &certified) {
            return Err(refuse(
                format!(
                    "host key in the certificate of {target} is revoked in {}:{line}",
                    file.display()
                ),
                Some((&file, line)),
            ));
        }
        let Some(ca) = cas
            .iter()
            .find(|e| e.key.key_data() == cert.signature_key())
        else {
            return Err(refuse(
                format!(
                    "host certificate of {target} is signed by CA {ca_fp}, which no known_hosts file trusts for this host (trusted: {})",
                    expected.join(", ")
                ),
                None,
            ));
        };
        let line = Some((&*ca.file, ca.line));
        if cert.cert_type() != CertType::Host {
            return Err(refuse(
                format!(
                    "{target} presented a user certificate (key id `{}`) as its host key",
                    cert.key_id()
                ),
                line,
            ));
        }
        let show = |t: u64| {
            jiff::Timestamp::from_second(t as i64)
                .map(|ts| ts.to_string())
                .unwrap_or_else(|_| "forever".into())
        };
        if now < cert.valid_after() {
            return Err(refuse(
                format!(
                    "host certificate of {target} (key id `{}`) is not valid before {}",
                    cert.key_id(),
                    show(cert.valid_after())
                ),
                line,
            ));
        }
        if now >= cert.valid_before() {
            return Err(refuse(
                format!(
                    "host certificate of {target} (key id `{}`) expired at {}",
                    cert.key_id(),
                    show(cert.valid_before())
                ),
                line,
            ));
        }
        let principals = cert.valid_principals();
        let names = [self.address.as_str(), self.host_name.as_str()];
        if !principals
            .iter()
            .any(|p| names.iter().any(|n| pattern_matches(p, n)))
        {
            return Err(refuse(
                format!(
                    "host certificate of {target} (key id `{}`) is not valid for this host: its principals are [{}], none of them is `{}`{}",
                    cert.key_id(),
                    principals.join(", "),
                    self.address,
                    if self.host_name != self.address {
                        format!(" or `{}`", self.host_name)
                    } else {
                        String::new()
                    }
                ),
                line,
            ));
        }
        if let Some((option, _)) = cert.critical_options().iter().next() {
            return Err(refuse(
                format!(
                    "host certificate of {target} carries the critical option `{option}`, which is not understood"
                ),
                line,
            ));
        }
        // The signature, checked last and by ssh-key (with the trust and window checks
        // again): everything above only gives the refusal a precise reason.
        cert.validate_at(now, [&ca.key.fingerprint(HashAlg::Sha256)])
            .map_err(|_| {
                refuse(
                    format!("host certificate of {target} does not verify against CA {ca_fp} (bad signature)"),
                    line,
                )
            })
    }
}

/// The jump host as a host to connect to. It is checked like any host, with the
/// target's known_hosts, host key policy, identity files and timeouts (ProxyJump
/// semantics), but it authenticates only with its OWN secrets: no groups (a group's
/// keyring password belongs to the group's nodes, never to the bastion in front of
/// them), no vars, so the keyring is asked for the jump host's name only.
fn bastion_host(jump: &JumpSpec, target_host: &Host) -> Host {
    Host {
        name: jump.host.clone(),
        address: jump.host.clone(),
        port: jump.port,
        user: jump.user.clone(),
        jump: None,
        groups: Vec::new(),
        vars: Default::default(),
        roles: Vec::new(),
        ..target_host.clone()
    }
}

/// Seconds since the epoch (0 if the clock is before 1970, which no certificate trusts).
fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Refuses a channel the server opened on its own: this client never asks for forwarded
/// ports, X11, agent forwarding or server-side sessions, and a hostile node could open
/// them by the tens of thousands (memory, tasks). russh's default accepts them.
async fn refuse(reply: client::ChannelOpenHandle) -> Result<(), CheckerError> {
    reply
        .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
        .await;
    Ok(())
}

impl client::Handler for Checker {
    type Error = CheckerError;

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        _connected_address: &str,
        _connected_port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        refuse(reply).await
    }

    async fn server_channel_open_forwarded_streamlocal(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        _socket_path: &str,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        refuse(reply).await
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        refuse(reply).await
    }

    async fn server_channel_open_session(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        refuse(reply).await
    }

    async fn server_channel_open_direct_tcpip(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        refuse(reply).await
    }

    async fn server_channel_open_direct_streamlocal(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        _socket_path: &str,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        refuse(reply).await
    }

    async fn server_channel_open_x11(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        refuse(reply).await
    }

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(cert) if !self.scan => {
                return self.verify_certificate(cert).map(|()| true);
            }
            PublicKeyOrCertificate::Certificate(_) => {
                // Scans never ask for certificates; a server that sends one anyway
                // gets no key recorded from it.
                return Err(CheckerError::Refused(Box::new(ConnectError::new(
                    FailureKind::Hostkey,
                    format!(
                        "host {} offered a host certificate to a scan; scans record plain host keys only",
                        self.target()
                    ),
                ))));
            }
        };
        if self.scan {
            return Err(CheckerError::Scanned(Box::new(key.clone())));
        }
        self.verify(key).map(|()| true)
    }
}

/// Host certificate algorithms offered to hosts with a `@cert-authority`, best first.
const CERT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];

/// Outcome of a handshake: a connection, or (scan mode) just the key.
enum Handshake {
    Connected(Handle<Checker>, Option<Tunnel>),
    Scanned(PublicKey),
}

fn is_transient(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        ConnectionReset | BrokenPipe | UnexpectedEof | ConnectionAborted
    )
}

fn target(host: &Host) -> String {
    format!("`{}` ({}:{})", host.name, host.address, host.port)
}

impl Connector {
    /// A connector with these options.
    pub fn new(opts: ConnectorOptions) -> Self {
        let config = || client::Config {
            nodelay: true,
            keepalive_interval: Some(opts.keepalive_interval),
            keepalive_max: opts.keepalive_max,
            inactivity_timeout: None,
            ..Default::default()
        };
        let mut cert_config = config();
        cert_config.preferred.host_key_certificates = std::borrow::Cow::Borrowed(CERT_ALGORITHMS);
        let config = config();
        Connector {
            inner: Arc::new(ConnectorInner {
                handshakes: Semaphore::new(opts.max_handshakes.max(1)),
                opts,
                config: Arc::new(config),
                cert_config: Arc::new(cert_config),
                keys: Mutex::new(HashMap::new()),
                known_hosts: Arc::new(KnownHostsCache::default()),
                bastions: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &ConnectorOptions {
        &self.inner.opts
    }

    /// Connects and authenticates to `host` within `host.connect_timeout` (a bastion
    /// connection, when one must be opened first, has its own `connect_timeout`).
    pub async fn connect(&self, host: &Host) -> Result<Session, ConnectError> {
        // Outside the target's deadline: waiting for another target to finish opening
        // the shared bastion connection is not this target's slowness.
        let tunnel = self.bastion_for(host).await?;
        match tokio::time::timeout(host.connect_timeout, self.connect_untimed(host, tunnel)).await {
            Ok(result) => result,
            Err(_) => Err(ConnectError::new(
                FailureKind::Timeout,
                format!(
                    "connecting to {} timed out after {} (connect, handshake and authentication)",
                    target(host),
                    crate::duration::display(host.connect_timeout)
                ),
            )),
        }
    }

    /// Fetches the host key `host` offers, without authenticating (hostkeys scan).
    pub(crate) async fn fetch_host_key(&self, host: &Host) -> Result<PublicKey, ConnectError> {
        let bastion = self.bastion_for(host).await?;
        let _permit = self.handshake_permit().await;
        match self.handshake(host, true, bastion).await? {
            Handshake::Scanned(key) => Ok(key),
            Handshake::Connected(..) => Err(ConnectError::new(
                FailureKind::Hostkey,
                format!(
                    "{} finished a handshake without offering a host key",
                    target(host)
                ),
            )),
        }
    }

    /// Whether known_hosts names a `@cert-authority` for `host` (its address or name).
    fn has_authority(&self, host: &Host) -> bool {
        self.inner
            .known_hosts
            .with_all(&host.known_hosts, &host.known_hosts_also, |kh| {
                !kh.authorities(&host.address, host.port).is_empty()
                    || !kh.authorities(&host.name, host.port).is_empty()
            })
            .unwrap_or(false)
    }

    /// The known_hosts cache (and write lock) shared with `scan`.
    pub(crate) fn known_hosts_cache(&self) -> &KnownHostsCache {
        &self.inner.known_hosts
    }

    async fn connect_untimed(
        &self,
        host: &Host,
        bastion: Option<Tunnel>,
    ) -> Result<Session, ConnectError> {
        // Held through authentication: sshd counts a connection against MaxStartups
        // until it has authenticated.
        let _permit = self.handshake_permit().await;
        let Handshake::Connected(mut handle, bastion) =
            self.handshake(host, false, bastion).await?
        else {
            unreachable!("verify mode never stops at the host key");
        };
        self.authenticate(&mut handle, host).await?;
        Ok(Session {
            inner: Arc::new(SessionInner {
                handle,
                host_name: host.name.clone(),
                login_user: host.user.clone(),
                become_: host.become_,
                flavour: std::sync::Mutex::new(host.flavour.fixed().unwrap_or_default()),
                channels: Semaphore::new(self.inner.opts.max_channels_per_conn.max(1)),
                max_output: self.inner.opts.max_output,
                _bastion: bastion,
            }),
        })
    }

    async fn bastion_for(&self, host: &Host) -> Result<Option<Tunnel>, ConnectError> {
        match &host.jump {
            Some(jump) => Ok(Some(self.bastion(jump, host).await?)),
            None => Ok(None),
        }
    }

    async fn handshake_permit(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.inner
            .handshakes
            .acquire()
            .await
            .expect("the handshake semaphore is never closed")
    }

    /// TCP (or tunnel) + SSH handshake with the host key check; retries transient resets.
    async fn handshake(
        &self,
        host: &Host,
        scan: bool,
        bastion: Option<Tunnel>,
    ) -> Result<Handshake, ConnectError> {
        let mut attempt: u32 = 0;
        loop {
            let checker = Checker {
                host_name: host.name.clone(),
                address: host.address.clone(),
                port: host.port,
                known_hosts: host.known_hosts.clone(),
                also: host.known_hosts_also.clone(),
                policy: host.host_key_policy,
                cache: self.inner.known_hosts.clone(),
                scan,
            };
            let config = if !scan && self.has_authority(host) {
                self.inner.cert_config.clone()
            } else {
                self.inner.config.clone()
            };
            let result = match &bastion {
                Some(Tunnel { session: b, .. }) => {
                    let channel = b
                        .inner
                        .handle
                        .channel_open_direct_tcpip(
                            host.address.as_str(),
                            u32::from(host.port),
                            "127.0.0.1",
                            0,
                        )
                        .await
                        .map_err(|e| {
                            ConnectError::new(
                                FailureKind::Unreachable,
                                format!(
                                    "bastion `{}` could not open a tunnel to {}: {e}",
                                    b.host_name(),
                                    target(host)
                                ),
                            )
                        })?;
                    client::connect_stream(config, channel.into_stream(), checker).await
                }
                None => match TcpStream::connect((host.address.as_str(), host.port)).await {
                    Ok(tcp) => {
                        let _ = tcp.set_nodelay(true);
                        client::connect_stream(config, tcp, checker).await
                    }
                    Err(e) => Err(CheckerError::Ssh(russh::Error::IO(e))),
                },
            };
            let error = match result {
                Ok(handle) => return Ok(Handshake::Connected(handle, bastion)),
                Err(CheckerError::Scanned(key)) => return Ok(Handshake::Scanned(*key)),
                Err(CheckerError::Refused(e)) => return Err(*e),
                Err(CheckerError::Ssh(e)) => e,
            };
            let transient = matches!(&error, russh::Error::IO(io) if is_transient(io.kind()))
                || matches!(error, russh::Error::Disconnect | russh::Error::HUP);
            if transient && attempt < 2 {
                // sshd drops handshakes beyond MaxStartups with a reset; back off and retry.
                let backoff = 100u64 << attempt;
                let jitter = rand::random_range(0..=backoff / 2);
                tracing::debug!(host = %host.name, attempt, error = %error, "transient handshake failure, retrying");
                tokio::time::sleep(Duration::from_millis(backoff + jitter)).await;
                attempt += 1;
                continue;
            }
            let what = match &error {
                russh::Error::IO(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                    "connection refused".to_owned()
                }
                e => e.to_string(),
            };
            return Err(ConnectError::new(
                FailureKind::Unreachable,
                format!("cannot connect to {}: {what}", target(host)),
            ));
        }
    }

    /// A tunnel slot on a connection to the bastion `jump`: an existing connection with
    /// a free slot, else a new connection (one attempt at a time per bastion; after a
    /// failure, none at all).
    async fn bastion(&self, jump: &JumpSpec, target_host: &Host) -> Result<Tunnel, ConnectError> {
        // (see [`bastion_host`] for whose credentials it gets)
        let key = format!("{}@{}:{}", jump.user, jump.host, jump.port);
        let slot = {
            let mut map = self
                .inner
                .bastions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let mut state = slot.lock().await;
        let via = |e: &ConnectError| {
            ConnectError::new(
                FailureKind::Unreachable,
                format!("unreachable via bastion `{key}`: {}", e.message),
            )
        };
        if let Some(e) = &state.failed {
            return Err(via(e));
        }
        state.conns.retain(|c| !c.session.is_closed());
        for conn in &state.conns {
            if let Ok(permit) = conn.tunnels.clone().try_acquire_owned() {
                return Ok(Tunnel {
                    session: conn.session.clone(),
                    _slot: permit,
                });
            }
        }
        let bastion_host = bastion_host(jump, target_host);
        let attempt = tokio::time::timeout(
            bastion_host.connect_timeout,
            Box::pin(self.connect_untimed(&bastion_host, None)),
        )
        .await
        .unwrap_or_else(|_| {
            Err(ConnectError::new(
                FailureKind::Timeout,
                format!(
                    "connecting to {} timed out after {}",
                    target(&bastion_host),
                    crate::duration::display(bastion_host.connect_timeout)
                ),
            ))
        });
        let session = match attempt {
            Ok(s) => s,
            Err(e) => {
                // Logged here once; each target behind it carries the same message.
                tracing::warn!(bastion = %key, error = %e.message, kind = ?e.kind, "bastion unreachable; every host behind it is marked unreachable");
                let out = via(&e);
                state.failed = Some(e);
                return Err(out);
            }
        };
        let tunnels = Arc::new(Semaphore::new(
            self.inner.opts.max_tunnels_per_bastion.max(1),
        ));
        let permit = tunnels
            .clone()
            .try_acquire_owned()
            .expect("a new bastion connection has free slots");
        state.conns.push(BastionConn {
            session: session.clone(),
            tunnels,
        });
        Ok(Tunnel {
            session,
            _slot: permit,
        })
    }

    async fn authenticate(
        &self,
        handle: &mut Handle<Checker>,
        host: &Host,
    ) -> Result<(), ConnectError> {
        let user = host.user.as_str();
        let transport = |e: russh::Error| {
            ConnectError::new(
                FailureKind::Unreachable,
                format!(
                    "connection to {} failed during authentication: {e}",
                    target(host)
                ),
            )
        };
        let rsa_hash = handle
            .best_supported_rsa_hash()
            .await
            .map_err(transport)?
            .flatten();
        let hash_for = |key: &PublicKey| {
            if key.algorithm().is_rsa() {
                rsa_hash
            } else {
                None
            }
        };
        let mut tried: Vec<String> = Vec::new();

        if let Some(socket) = &self.inner.opts.agent_socket {
            match AgentClient::connect_uds(socket).await {
                Ok(mut agent) => match agent.request_identities().await {
                    Ok(identities) => {
                        for id in &identities {
                            let key = id.public_key().into_owned();
                            let alg = hash_for(&key);
                            match handle
                                .authenticate_publickey_with(user, key, alg, &mut agent)
                                .await
                            {
                                Ok(r) if r.success() => return Ok(()),
                                Ok(_) => {}
                                Err(e) => tried.push(format!("agent signing failed: {e}")),
                            }
                        }
                        tried.push(format!("agent ({} keys)", identities.len()));
                    }
                    Err(e) => tried.push(format!("agent unusable: {e}")),
                },
                Err(e) => tried.push(format!("agent at {} unreachable: {e}", socket.display())),
            }
        }

        for path in &host.identity_files {
            match self.identity(path, host).await {
                Ok(key) => {
                    let alg = hash_for(key.public_key());
                    let r = handle
                        .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, alg))
                        .await
                        .map_err(transport)?;
                    if r.success() {
                        return Ok(());
                    }
                    tried.push(format!("{} (refused)", path.display()));
                }
                Err(note) => tried.push(note),
            }
        }

        match secrets::lookup(SecretKind::Password, host) {
            Some(password) => {
                let r = handle
                    .authenticate_password(user, password.expose())
                    .await
                    .map_err(transport)?;
                if r.success() {
                    return Ok(());
                }
                tried.push("password (refused)".into());
            }
            None => tried.push("password (none found: credentials, secrets dir, keyring)".into()),
        }
        Err(ConnectError::new(
            FailureKind::Auth,
            format!(
                "authentication as `{user}` to {} failed (tried: {})",
                target(host),
                tried.join(", ")
            ),
        ))
    }

    /// Loads (once per run) and decrypts an identity file; `Err` is a note for the message.
    async fn identity(&self, path: &Path, host: &Host) -> Result<Arc<PrivateKey>, String> {
        let cell = {
            let mut map = self.inner.keys.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(path.to_owned()).or_default().clone()
        };
        cell.get_or_try_init(|| async {
            // bcrypt-pbkdf decryption is ~125 ms of CPU: keep it off the runtime.
            let (path, host) = (path.to_owned(), host.clone());
            tokio::task::spawn_blocking(move || load_identity(&path, &host))
                .await
                .expect("key loading does not panic")
                .map(Arc::new)
        })
        .await
        .cloned()
    }
}

/// Loads one identity file as the connector uses it (blocking): refused when others may
/// read it (as OpenSSH's `sshkey_perm_ok`), decrypted with the host's passphrase secret
/// when encrypted. `Err` is a note for a message (the path, and why the key is not used).
pub fn load_identity(path: &Path, host: &Host) -> Result<PrivateKey, String> {
    let shown = path.display();
    #[cfg(unix)]
    #[expect(unsafe_code, reason = "getuid: std cannot ask for the uid")]
    {
        use std::os::unix::fs::MetadataExt as _;
        if let Ok(m) = std::fs::metadata(path)
            // SAFETY: getuid has no preconditions and cannot fail.
            && m.uid() == unsafe { libc::getuid() }
            && m.mode() & 0o077 != 0
        {
            return Err(format!(
                "{shown} (UNPROTECTED PRIVATE KEY FILE: permissions {:04o} are too open, \
                 so it is not used, as OpenSSH refuses it; fix: chmod 600 {shown})",
                m.mode() & 0o7777
            ));
        }
    }
    match russh::keys::load_secret_key(path, None) {
        Ok(key) => Ok(key),
        Err(russh::keys::Error::KeyIsEncrypted) => {
            match secrets::find(SecretKind::Passphrase, host) {
                None => Err(format!("{shown} (encrypted, no passphrase found; skipped)")),
                Some((p, from)) => {
                    russh::keys::load_secret_key(path, Some(p.expose())).map_err(|e| {
                        format!("{shown} (cannot decrypt with the passphrase of {from}: {e})")
                    })
                }
            }
        }
        Err(russh::keys::Error::IO(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("{shown} (no such file)"))
        }
        Err(e) => Err(format!("{shown} (unreadable: {e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A jump host never gets the target's group credentials: the keyring is asked for
    /// the jump host's own name only (OpenSSH's ProxyJump authenticates the bastion as
    /// itself).
    #[test]
    fn a_bastion_authenticates_with_its_own_secrets_only() {
        let mut target = Host::for_test("mx1.acme.example");
        target.groups = vec!["acme".into(), "eu".into()];
        target.vars.insert("customer".into(), "ACME".into());
        let jump = JumpSpec {
            user: "ops".into(),
            host: "bastion.acme.example".into(),
            port: 2022,
        };
        let b = bastion_host(&jump, &target);
        assert_eq!(
            (b.name.as_str(), b.user.as_str(), b.port),
            ("bastion.acme.example", "ops", 2022)
        );
        assert!(b.groups.is_empty() && b.vars.is_empty() && b.jump.is_none());
        // What the keyring would be asked for: only the bastion's own entries.
        let scopes: Vec<String> = crate::secrets::scopes(&b)
            .map(|s| crate::secrets::entry_user(crate::secrets::SecretKind::Password, s))
            .collect();
        assert_eq!(scopes, ["password:host:bastion.acme.example"]);
        // Host key checking is the target's (never weaker).
        assert_eq!(b.known_hosts, target.known_hosts);
        assert_eq!(b.host_key_policy, target.host_key_policy);
    }

    /// `ssh-keygen` in `dir`, asserting success.
    fn keygen(dir: &Path, args: &[&str]) {
        let out = Command::new("ssh-keygen")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("ssh-keygen runs");
        assert!(out.status.success(), "ssh-keygen {args:?}: {out:?}");
    }

    struct Fixture {
        dir: tempfile::TempDir,
        ca: String,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            keygen(dir.path(), &["-q", "-t", "ed25519", "-N", "", "-f", "ca"]);
            keygen(dir.path(), &["-q", "-t", "ed25519", "-N", "", "-f", "hk"]);
            let ca = fs_line(&dir.path().join("ca.pub"));
            Fixture { dir, ca }
        }

        /// Signs hk.pub with `extra` ssh-keygen options; returns the certificate.
        fn sign(&self, extra: &[&str]) -> Certificate {
            let _ = std::fs::remove_file(self.dir.path().join("hk-cert.pub"));
            let mut args = vec!["-q", "-s", "ca", "-I", "kid"];
            args.extend_from_slice(extra);
            args.push("hk.pub");
            keygen(self.dir.path(), &args);
            Certificate::from_openssh(&fs_line(&self.dir.path().join("hk-cert.pub"))).unwrap()
        }

        fn checker(&self) -> Checker {
            Checker {
                host_name: "mx1.example".into(),
                address: "127.0.0.1".into(),
                port: 2222,
                known_hosts: self.dir.path().join("known_hosts"),
                also: Vec::new(),
                policy: HostKeyPolicy::Strict,
                cache: Arc::default(),
                scan: false,
            }
        }

        fn judge(&self, known_hosts: &str, cert: &Certificate) -> Result<(), String> {
            let kh = KnownHosts::parse(known_hosts, Path::new("/kh"));
            self.checker()
                .judge_certificate(&kh, cert, now_unix())
                .map_err(|e| match e {
                    CheckerError::Refused(e) => e.message,
                    _ => panic!("a refusal"),
                })
        }
    }

    fn fs_line(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap().trim().to_owned()
    }

    #[test]
    fn certificate_checks_name_the_reason() {
        let f = Fixture::new();
        let ca_line = format!("@cert-authority [127.0.0.1]:2222 {}\n", f.ca);
        // Valid for the inventory name (not the address) is enough.
        let good = f.sign(&["-h", "-n", "mx1.example", "-V", "-5m:+1h"]);
        assert_eq!(f.judge(&ca_line, &good), Ok(()));
        // A principal pattern, as OpenSSH allows.
        let pattern = f.sign(&["-h", "-n", "*.example", "-V", "-5m:+1h"]);
        assert_eq!(f.judge(&ca_line, &pattern), Ok(()));

        let user = f.sign(&["-n", "127.0.0.1", "-V", "-5m:+1h"]);
        let e = f.judge(&ca_line, &user).unwrap_err();
        assert!(
            e.contains("presented a user certificate (key id `kid`)"),
            "{e}"
        );

        let future = f.sign(&["-h", "-n", "127.0.0.1", "-V", "+1d:+2d"]);
        let e = f.judge(&ca_line, &future).unwrap_err();
        assert!(e.contains("is not valid before"), "{e}");

        let nobody = f.sign(&["-h", "-V", "-5m:+1h"]);
        let e = f.judge(&ca_line, &nobody).unwrap_err();
        assert!(
            e.contains("its principals are [], none of them is `127.0.0.1` or `mx1.example`"),
            "a certificate without principals is valid for no host here: {e}"
        );

        let revoked = format!("{ca_line}@revoked * {}\n", f.ca);
        let e = f.judge(&revoked, &good).unwrap_err();
        assert!(
            e.contains("is signed by CA SHA256:") && e.ends_with(", which /kh:2 revokes"),
            "{e}"
        );

        // A CA for other hosts only: the certified key is judged as a plain key.
        let elsewhere = format!("@cert-authority *.other {}\n", f.ca);
        let e = f.judge(&elsewhere, &good).unwrap_err();
        assert!(e.contains("is not in known_hosts"), "{e}");
        let plain = format!(
            "[127.0.0.1]:2222 {}\n",
            fs_line(&f.dir.path().join("hk.pub"))
        );
        assert_eq!(f.judge(&plain, &good), Ok(()));
    }

    /// Every known_hosts file counts, as in OpenSSH: under accept-new, a host pinned in
    /// a global file with another key is a mismatch naming that file and line, and the
    /// user file is not written; a key listed only in a global file is known.
    #[test]
    fn a_host_pinned_in_a_global_file_is_never_unknown() {
        let f = Fixture::new();
        let (pinned, offered) = (
            PublicKey::from_openssh(&fs_line(&f.dir.path().join("hk.pub"))).unwrap(),
            PublicKey::from_openssh(&fs_line(&f.dir.path().join("ca.pub"))).unwrap(),
        );
        let user = f.dir.path().join("known_hosts");
        let global = f.dir.path().join("ssh_known_hosts");
        std::fs::write(
            &global,
            format!(
                "# fleet keys
[127.0.0.1]:2222 {}
",
                pinned.to_openssh().unwrap()
            ),
        )
        .unwrap();
        let checker = Checker {
            policy: HostKeyPolicy::AcceptNew,
            also: vec![f.dir.path().join("absent"), global.clone()],
            ..f.checker()
        };
        let Err(CheckerError::Refused(e)) = checker.verify(&offered) else {
            panic!("a mismatch must be refused");
        };
        let detail = e.detail.as_ref().unwrap();
        assert_eq!(
            (detail.known_hosts.clone(), detail.line),
            (global.clone(), Some(2))
        );
        assert!(
            e.message
                .contains(&format!("does not match {}:2", global.display())),
            "{}",
            e.message
        );
        assert!(!user.exists(), "accept-new wrote a pinned host's key");
        assert!(checker.verify(&pinned).is_ok());
        assert!(!user.exists());
    }

    #[test]
    fn certificate_algorithms_are_asked_for_only_where_a_ca_could_vouch() {
        let f = Fixture::new();
        let kh = f.dir.path().join("known_hosts");
        std::fs::write(&kh, format!("@cert-authority *.acme.example {}\n", f.ca)).unwrap();
        let c = Connector::new(ConnectorOptions::default());
        let mut host = Host {
            address: "192.0.2.1".into(),
            known_hosts: kh,
            cluster: "acme".into(),
            ..Host::for_test("mx1.acme.example")
        };
        assert!(c.has_authority(&host), "matched by the inventory name");
        host.name = "mx1.globex.example".into();
        assert!(!c.has_authority(&host));
        assert!(
            c.inner.config.preferred.host_key_certificates.is_empty()
                && c.inner.cert_config.preferred.host_key_certificates[0] == Algorithm::Ed25519
        );
    }
}
