//! `hostkeys scan`: fetch each host's offered key without authenticating and classify it
//! against known_hosts. With `write`, only new keys are appended (hashed); a changed or
//! revoked key is never replaced, that stays a human decision.

use std::fmt::Write as _;

use russh::keys::ssh_key::PublicKey;

use super::checker::check_names;
use super::connector::Connector;
use super::known_hosts::{HostKeyStatus, append_hashed, fingerprint};
use crate::inventory::Host;

/// How a scanned key compares with known_hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStatus {
    /// Not listed; `written` says whether `--write` recorded it.
    New {
        written: bool,
    },
    /// `at`: the known_hosts file and line (`path:line`) that decided.
    Known {
        at: String,
    },
    /// Listed with other keys (their fingerprints).
    Changed {
        at: String,
        expected: Vec<String>,
    },
    Revoked {
        at: String,
    },
    /// No key could be fetched (or known_hosts could not be read/written).
    Unreachable {
        message: String,
    },
}

/// One host's scan result.
#[derive(Debug, Clone)]
pub struct ScanResult {
    pub host: String,
    pub address: String,
    pub port: u16,
    /// The offered key, when the handshake got that far.
    pub key: Option<PublicKey>,
    pub status: ScanStatus,
}

impl ScanResult {
    /// `SHA256:…` of the offered key.
    pub fn fingerprint(&self) -> Option<String> {
        self.key.as_ref().map(fingerprint)
    }
}

/// Scans every host concurrently (bounded by the connector's handshake limit).
pub async fn scan(connector: &Connector, hosts: &[&Host], write: bool) -> Vec<ScanResult> {
    futures::future::join_all(hosts.iter().map(|h| scan_one(connector, h, write))).await
}

async fn scan_one(connector: &Connector, host: &Host, write: bool) -> ScanResult {
    let mut result = ScanResult {
        host: host.name.clone(),
        address: host.address.clone(),
        port: host.port,
        key: None,
        status: ScanStatus::Unreachable {
            message: String::new(),
        },
    };
    let key = match tokio::time::timeout(host.connect_timeout, connector.fetch_host_key(host)).await
    {
        Ok(Ok(key)) => key,
        Ok(Err(e)) => {
            result.status = ScanStatus::Unreachable { message: e.message };
            return result;
        }
        Err(_) => {
            result.status = ScanStatus::Unreachable {
                message: format!(
                    "no host key within {}",
                    crate::duration::display(host.connect_timeout)
                ),
            };
            return result;
        }
    };
    result.status = classify(connector, host, &key, write);
    result.key = Some(key);
    result
}

fn classify(connector: &Connector, host: &Host, key: &PublicKey, write: bool) -> ScanStatus {
    let path = &host.known_hosts;
    let judged = connector
        .known_hosts_cache()
        .with_all(path, &host.known_hosts_also, |kh| {
            match check_names(kh, &host.name, &host.address, host.port, key) {
                HostKeyStatus::Known { file, line } => ScanStatus::Known {
                    at: format!("{}:{line}", file.display()),
                },
                HostKeyStatus::Changed {
                    file,
                    line,
                    expected,
                } => ScanStatus::Changed {
                    at: format!("{}:{line}", file.display()),
                    expected,
                },
                HostKeyStatus::Revoked { file, line } => ScanStatus::Revoked {
                    at: format!("{}:{line}", file.display()),
                },
                HostKeyStatus::Unknown if !write => ScanStatus::New { written: false },
                HostKeyStatus::Unknown => {
                    match append_hashed(path, &host.address, host.port, key) {
                        Ok(_) => ScanStatus::New { written: true },
                        Err(e) => ScanStatus::Unreachable {
                            message: format!("cannot write {}: {e}", path.display()),
                        },
                    }
                }
            }
        });
    judged.unwrap_or_else(|e| ScanStatus::Unreachable {
        message: format!("cannot read {}: {e}", path.display()),
    })
}

/// One line per host: `host fingerprint (type) status`.
pub fn render_scan(results: &[ScanResult]) -> String {
    let mut out = String::new();
    for r in results {
        let (fp, kind) = match &r.key {
            Some(k) => (fingerprint(k), k.algorithm().to_string()),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let status = match &r.status {
            ScanStatus::New { written: true } => "new, written".to_owned(),
            ScanStatus::New { written: false } => "new".to_owned(),
            ScanStatus::Known { at } => format!("known ({at})"),
            ScanStatus::Changed { at, expected } => {
                format!("CHANGED ({at} expects {})", expected.join(" or "))
            }
            ScanStatus::Revoked { at } => format!("REVOKED ({at})"),
            ScanStatus::Unreachable { message } => format!("unreachable: {message}"),
        };
        let _ = writeln!(out, "{} {fp} ({kind}) {status}", r.host);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_line_per_host() {
        let key = russh::keys::ssh_key::PrivateKey::random(
            &mut rand::rng(),
            russh::keys::ssh_key::Algorithm::Ed25519,
        )
        .unwrap()
        .public_key()
        .clone();
        let fp = fingerprint(&key);
        let results = vec![
            ScanResult {
                host: "a".into(),
                address: "a".into(),
                port: 22,
                key: Some(key.clone()),
                status: ScanStatus::New { written: true },
            },
            ScanResult {
                host: "b".into(),
                address: "b".into(),
                port: 22,
                key: Some(key.clone()),
                status: ScanStatus::Changed {
                    at: "/kh:4".into(),
                    expected: vec!["SHA256:x".into()],
                },
            },
            ScanResult {
                host: "c".into(),
                address: "c".into(),
                port: 22,
                key: None,
                status: ScanStatus::Unreachable {
                    message: "connection refused".into(),
                },
            },
        ];
        assert_eq!(
            render_scan(&results),
            format!(
                "a {fp} (ssh-ed25519) new, written\nb {fp} (ssh-ed25519) CHANGED (/kh:4 expects SHA256:x)\nc - (-) unreachable: connection refused\n"
            )
        );
    }
}
