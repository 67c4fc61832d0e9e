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
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey, PrivateKeyWithHashAlg};
use tokio::net::TcpStream;
use tokio::sync::{OnceCell, Semaphore};

use super::checker::{Checker, CheckerError};
use super::error::{ConnectError, FailureKind};
use super::known_hosts::KnownHostsCache;
use super::session::{Session, SessionInner, Tunnel};
use crate::inventory::{Host, JumpSpec};
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
    use super::super::checker::tests::Fixture;
    use super::*;

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
