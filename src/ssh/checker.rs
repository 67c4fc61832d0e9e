//! The host-key check of every handshake: the russh client handler ([`Checker`]) that
//! judges the server's key or host certificate against known_hosts (all files, as
//! OpenSSH reads them) under the host's policy before any credential is sent, and
//! refuses every channel a server tries to open on its own. The connector builds one per
//! handshake; a session keeps the handle it produced.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client;
use russh::keys::ssh_key::PublicKey;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{Certificate, HashAlg, PublicKeyOrCertificate};

use super::error::{ConnectError, FailureKind, HostKeyDetail};
use super::known_hosts::{
    HostKeyStatus, KnownHosts, KnownHostsCache, append_hashed, fingerprint, pattern_matches,
};
use crate::inventory::HostKeyPolicy;

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
    pub(super) host_name: String,
    pub(super) address: String,
    pub(super) port: u16,
    /// The user file, where accept-new writes.
    pub(super) known_hosts: PathBuf,
    /// The other files read with it (more user files, the global ones).
    pub(super) also: Vec<PathBuf>,
    pub(super) policy: HostKeyPolicy,
    pub(super) cache: Arc<KnownHostsCache>,
    pub(super) scan: bool,
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

    pub(super) fn verify(&self, key: &PublicKey) -> Result<(), CheckerError> {
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
        if let Some((message, file, line)) = self.revoked_certificate(kh, &ca_key, &certified) {
            return Err(refuse(message, Some((&file, line))));
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
        if let Some(message) = self.certificate_flaw(cert, now) {
            return Err(refuse(message, line));
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

    /// Why a certificate is refused because known_hosts revokes its CA (`ca_key`) or
    /// the key it certifies (`certified`), with the `@revoked` line that does.
    fn revoked_certificate(
        &self,
        kh: &KnownHosts,
        ca_key: &PublicKey,
        certified: &PublicKey,
    ) -> Option<(String, PathBuf, usize)> {
        let target = self.target();
        if let Some((file, line)) = self.revoked(kh, ca_key) {
            let message = format!(
                "host certificate of {target} is signed by CA {}, which {}:{line} revokes",
                fingerprint(ca_key),
                file.display()
            );
            return Some((message, file, line));
        }
        self.revoked(kh, certified).map(|(file, line)| {
            let message = format!(
                "host key in the certificate of {target} is revoked in {}:{line}",
                file.display()
            );
            (message, file, line)
        })
    }

    /// Why a certificate signed by a trusted CA is still refused, checked in
    /// OpenSSH's order: it is a user certificate, `now` is outside its validity window,
    /// none of its principals names the host, or it carries a critical option (none is
    /// understood). `None` if it passes all of these.
    fn certificate_flaw(&self, cert: &Certificate, now: u64) -> Option<String> {
        let target = self.target();
        let key_id = cert.key_id();
        if cert.cert_type() != CertType::Host {
            return Some(format!(
                "{target} presented a user certificate (key id `{key_id}`) as its host key"
            ));
        }
        let show = |t: u64| {
            jiff::Timestamp::from_second(t as i64)
                .map(|ts| ts.to_string())
                .unwrap_or_else(|_| "forever".into())
        };
        if now < cert.valid_after() {
            return Some(format!(
                "host certificate of {target} (key id `{key_id}`) is not valid before {}",
                show(cert.valid_after())
            ));
        }
        if now >= cert.valid_before() {
            return Some(format!(
                "host certificate of {target} (key id `{key_id}`) expired at {}",
                show(cert.valid_before())
            ));
        }
        let principals = cert.valid_principals();
        let names = [self.address.as_str(), self.host_name.as_str()];
        if !principals
            .iter()
            .any(|p| names.iter().any(|n| pattern_matches(p, n)))
        {
            return Some(format!(
                "host certificate of {target} (key id `{key_id}`) is not valid for this host: its principals are [{}], none of them is `{}`{}",
                principals.join(", "),
                self.address,
                if self.host_name != self.address {
                    format!(" or `{}`", self.host_name)
                } else {
                    String::new()
                }
            ));
        }
        cert.critical_options().iter().next().map(|(option, _)| {
            format!(
                "host certificate of {target} carries the critical option `{option}`, which is not understood"
            )
        })
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::process::Command;
    use test_case::test_case;

    /// `ssh-keygen` in `dir`, asserting success.
    fn keygen(dir: &Path, args: &[&str]) {
        let out = Command::new("ssh-keygen")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("ssh-keygen runs");
        assert!(out.status.success(), "ssh-keygen {args:?}: {out:?}");
    }

    /// A CA and a host key made by ssh-keygen in a temporary directory.
    pub(in crate::ssh) struct Fixture {
        pub(in crate::ssh) dir: tempfile::TempDir,
        pub(in crate::ssh) ca: String,
    }

    impl Fixture {
        pub(in crate::ssh) fn new() -> Fixture {
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

    #[test_case(&["-h", "-n", "127.0.0.1", "-V", "-5m:+1h"], None; "a valid host certificate")]
    #[test_case(&["-n", "127.0.0.1", "-V", "-5m:+1h"], Some("`mx1.example` (127.0.0.1:2222) presented a user certificate (key id `kid`) as its host key"); "a user certificate")]
    #[test_case(&["-h", "-n", "127.0.0.1", "-V", "+1d:+2d"], Some("(key id `kid`) is not valid before 20"); "not yet valid")]
    #[test_case(&["-h", "-n", "127.0.0.1", "-V", "-2d:-1d"], Some("(key id `kid`) expired at 20"); "expired")]
    #[test_case(&["-h", "-n", "mx2.example,10.0.0.1", "-V", "-5m:+1h"], Some("its principals are [mx2.example, 10.0.0.1], none of them is `127.0.0.1` or `mx1.example`"); "for other hosts")]
    #[test_case(&["-h", "-n", "127.0.0.1", "-V", "-5m:+1h", "-O", "critical:frob=1"], Some("carries the critical option `frob`, which is not understood"); "an unknown critical option")]
    fn a_certificate_flaw_names_the_reason(sign: &[&str], flaw: Option<&str>) {
        let f = Fixture::new();
        let got = f.checker().certificate_flaw(&f.sign(sign), now_unix());
        match flaw {
            None => assert_eq!(got, None),
            Some(flaw) => assert!(got.as_deref().is_some_and(|g| g.contains(flaw)), "{got:?}"),
        }
    }

    #[test]
    fn a_revoked_certified_key_is_refused_with_its_line() {
        let f = Fixture::new();
        let good = f.sign(&["-h", "-n", "127.0.0.1", "-V", "-5m:+1h"]);
        let kh = format!(
            "@cert-authority [127.0.0.1]:2222 {}\n@revoked * {}\n",
            f.ca,
            fs_line(&f.dir.path().join("hk.pub"))
        );
        assert_eq!(
            f.judge(&kh, &good),
            Err(
                "host key in the certificate of `mx1.example` (127.0.0.1:2222) is revoked in /kh:2"
                    .into()
            )
        );
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
}
