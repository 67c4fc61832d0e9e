//! Opening connections: TCP (or a tunnel through a bastion), the SSH handshake with the
//! host key checked against known_hosts before any credential is sent, then
//! authentication (ssh-agent, identity files, password from the keyring).
//!
//! One [`Connector`] serves a whole run: it caches decrypted keys (decrypting costs
//! ~125 ms of CPU each), caps concurrent handshakes (sshd `MaxStartups`), serialises
//! known_hosts writes and keeps one connection per bastion shared by every target
//! behind it. It has no timeouts of its own besides `Host::connect_timeout`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::ssh_key::PublicKey;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use tokio::net::TcpStream;
use tokio::sync::{OnceCell, Semaphore};

use super::error::{ConnectError, FailureKind, HostKeyDetail};
use super::known_hosts::{HostKeyStatus, KnownHosts, KnownHostsCache, append_hashed, fingerprint};
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
            agent_socket: std::env::var_os("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        }
    }
}

type BastionSlot = Arc<tokio::sync::Mutex<Option<Session>>>;

struct ConnectorInner {
    opts: ConnectorOptions,
    config: Arc<client::Config>,
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
    known_hosts: PathBuf,
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

impl Checker {
    fn target(&self) -> String {
        format!("`{}` ({}:{})", self.host_name, self.address, self.port)
    }

    fn refuse(
        &self,
        message: String,
        expected: Vec<String>,
        offered: &PublicKey,
        line: Option<usize>,
    ) -> CheckerError {
        CheckerError::Refused(Box::new(ConnectError {
            kind: FailureKind::Hostkey,
            message,
            detail: Some(HostKeyDetail {
                expected,
                offered: fingerprint(offered),
                line,
                known_hosts: self.known_hosts.clone(),
            }),
        }))
    }

    fn verify(&self, key: &PublicKey) -> Result<(), CheckerError> {
        let path = self.known_hosts.display();
        self.cache
            .with(&self.known_hosts, |kh| self.judge(kh, key))
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
            HostKeyStatus::Changed { line, expected } => Err(self.refuse(
                format!(
                    "host key for {} does not match known_hosts line {line}: expected {}, offered {offered}",
                    self.target(),
                    expected.join(" or ")
                ),
                expected,
                key,
                Some(line),
            )),
            HostKeyStatus::Revoked { line } => Err(self.refuse(
                format!(
                    "host key for {} is revoked in known_hosts line {line}: offered {offered}",
                    self.target()
                ),
                vec![],
                key,
                Some(line),
            )),
        }
    }
}

impl client::Handler for Checker {
    type Error = CheckerError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                return Err(CheckerError::Refused(Box::new(ConnectError::new(
                    FailureKind::Hostkey,
                    format!(
                        "host {} offered a host certificate; certificate host keys are not supported",
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

/// Outcome of a handshake: a connection, or (scan mode) just the key.
enum Handshake {
    Connected(Handle<Checker>, Option<Session>),
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
        let config = client::Config {
            nodelay: true,
            keepalive_interval: Some(opts.keepalive_interval),
            keepalive_max: opts.keepalive_max,
            inactivity_timeout: None,
            ..Default::default()
        };
        Connector {
            inner: Arc::new(ConnectorInner {
                handshakes: Semaphore::new(opts.max_handshakes.max(1)),
                opts,
                config: Arc::new(config),
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

    /// Connects and authenticates to `host` within `host.connect_timeout`.
    pub async fn connect(&self, host: &Host) -> Result<Session, ConnectError> {
        match tokio::time::timeout(host.connect_timeout, self.connect_untimed(host)).await {
            Ok(result) => result,
            Err(_) => Err(ConnectError::new(
                FailureKind::Timeout,
                format!(
                    "connecting to {} timed out after {} (connect, handshake and authentication)",
                    target(host),
                    humantime::format_duration(host.connect_timeout)
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

    /// The known_hosts cache (and write lock) shared with `scan`.
    pub(crate) fn known_hosts_cache(&self) -> &KnownHostsCache {
        &self.inner.known_hosts
    }

    async fn connect_untimed(&self, host: &Host) -> Result<Session, ConnectError> {
        // Resolve the bastion first: its own connect takes a handshake permit too.
        let bastion = self.bastion_for(host).await?;
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
                channels: Semaphore::new(self.inner.opts.max_channels_per_conn.max(1)),
                max_output: self.inner.opts.max_output,
                _bastion: bastion,
            }),
        })
    }

    async fn bastion_for(&self, host: &Host) -> Result<Option<Session>, ConnectError> {
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
        bastion: Option<Session>,
    ) -> Result<Handshake, ConnectError> {
        let mut attempt: u32 = 0;
        loop {
            let checker = Checker {
                host_name: host.name.clone(),
                address: host.address.clone(),
                port: host.port,
                known_hosts: host.known_hosts.clone(),
                policy: host.host_key_policy,
                cache: self.inner.known_hosts.clone(),
                scan,
            };
            let config = self.inner.config.clone();
            let result = match &bastion {
                Some(b) => {
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

    /// One shared connection per bastion `user@host:port`, re-opened if it died.
    async fn bastion(&self, jump: &JumpSpec, target_host: &Host) -> Result<Session, ConnectError> {
        let key = format!("{}@{}:{}", jump.user, jump.host, jump.port);
        let slot = {
            let mut map = self
                .inner
                .bastions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let mut guard = slot.lock().await;
        if let Some(session) = guard.as_ref().filter(|s| !s.is_closed()) {
            return Ok(session.clone());
        }
        // The bastion is checked and authenticated like any host, with the target's
        // known_hosts, identities and policy (ProxyJump semantics).
        let bastion_host = Host {
            name: jump.host.clone(),
            address: jump.host.clone(),
            port: jump.port,
            user: jump.user.clone(),
            jump: None,
            ..target_host.clone()
        };
        let session = Box::pin(self.connect_untimed(&bastion_host))
            .await
            .map_err(|e| ConnectError {
                message: format!(
                    "via bastion `{key}` for `{}`: {}",
                    target_host.name, e.message
                ),
                ..e
            })?;
        *guard = Some(session.clone());
        Ok(session)
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
            None => tried.push("password (none in keyring)".into()),
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
            let load = |passphrase: Option<String>| {
                let path = path.to_owned();
                async move {
                    // bcrypt-pbkdf decryption is ~125 ms of CPU: keep it off the runtime.
                    tokio::task::spawn_blocking(move || {
                        russh::keys::load_secret_key(&path, passphrase.as_deref())
                    })
                    .await
                    .expect("key loading does not panic")
                }
            };
            let shown = path.display();
            match load(None).await {
                Ok(key) => Ok(Arc::new(key)),
                Err(russh::keys::Error::KeyIsEncrypted) => {
                    match secrets::lookup(SecretKind::Passphrase, host) {
                        None => Err(format!(
                            "{shown} (encrypted, no passphrase in keyring; skipped)"
                        )),
                        Some(p) => load(Some(p.expose().to_owned()))
                            .await
                            .map(Arc::new)
                            .map_err(|e| {
                                format!("{shown} (cannot decrypt with the keyring passphrase: {e})")
                            }),
                    }
                }
                Err(russh::keys::Error::IO(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(format!("{shown} (no such file)"))
                }
                Err(e) => Err(format!("{shown} (unreadable: {e})")),
            }
        })
        .await
        .cloned()
    }
}
