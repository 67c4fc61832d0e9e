//! Typed failures of the SSH transport. A host's failure is data: each error carries a
//! [`FailureKind`] that goes into the report, and a message written as a lowercase
//! fragment naming the host.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use super::quote::QuoteError;

/// The class of a host failure, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The host key is unknown (strict), changed or revoked.
    Hostkey,
    /// Every authentication method was refused.
    Auth,
    /// Connection refused, no route, DNS failure, reset during the handshake.
    Unreachable,
    /// Connect, auth or a command did not finish in time.
    Timeout,
    /// A command or channel failed on an established connection.
    Command,
}

/// What known_hosts said about a refused host key (goes into the report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostKeyDetail {
    /// Fingerprints listed for the host (`SHA256:…`); empty when the host is unknown.
    pub expected: Vec<String>,
    /// Fingerprint of the key the server offered.
    pub offered: String,
    /// The known_hosts line that lists (or revokes) the host, 1-based.
    pub line: Option<usize>,
    pub known_hosts: PathBuf,
}

/// Why a connection to a host could not be established.
#[derive(Debug, Clone, Error, Serialize)]
#[error("{message}")]
pub struct ConnectError {
    pub kind: FailureKind,
    pub message: String,
    pub detail: Option<HostKeyDetail>,
}

impl ConnectError {
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        ConnectError {
            kind,
            message: message.into(),
            detail: None,
        }
    }
}

/// Why a command could not be run to completion on an open session.
#[derive(Debug, Clone, Error)]
pub enum ExecError {
    /// The script could not be quoted (NUL byte).
    #[error("cannot build the command for `{host}`: {source}")]
    Quote {
        host: String,
        #[source]
        source: QuoteError,
    },
    /// The deadline passed; the channel was closed.
    #[error("command on `{host}` timed out after {} (channel closed)", crate::duration::display(*after))]
    Timeout {
        host: String,
        after: Duration,
        command: String,
    },
    /// Opening the channel or talking on it failed.
    #[error("command on `{host}` failed: {message}")]
    Channel {
        host: String,
        message: String,
        command: String,
    },
}

impl ExecError {
    /// The class used in reports.
    pub fn kind(&self) -> FailureKind {
        match self {
            ExecError::Timeout { .. } => FailureKind::Timeout,
            ExecError::Quote { .. } | ExecError::Channel { .. } => FailureKind::Command,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialize_kebab_case() {
        let s = serde_json::to_string(&[FailureKind::Hostkey, FailureKind::Unreachable]).unwrap();
        assert_eq!(s, r#"["hostkey","unreachable"]"#);
    }
}
