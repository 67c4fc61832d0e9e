//! Errors of the simulator (setting a fleet up; a running node's failures are data).

use std::net::SocketAddr;
use std::path::PathBuf;

use thiserror::Error;

/// Why a simulated fleet could not be built or started.
#[derive(Debug, Error)]
pub enum SimError {
    #[error("invalid profile mix `{mix}`: {reason}")]
    ProfileMix { mix: String, reason: String },
    #[error("the fleet spec has no nodes")]
    Empty,
    #[error("duplicate node name `{0}` in the fleet spec")]
    DuplicateNode(String),
    #[error("too many nodes for {what} (at most {max})")]
    TooMany { what: &'static str, max: usize },
    #[error("failed to listen on {addr} for node `{node}`")]
    Bind {
        node: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to generate or encode an ed25519 key")]
    Key(#[source] russh::keys::ssh_key::Error),
    #[error("the simulated DNS server could not start: {0}")]
    Dns(String),
    #[error("failed to render the inventory")]
    Inventory(#[source] toml::ser::Error),
    #[error("failed to create a temporary directory: {0}")]
    TempDir(std::io::Error),
}

impl SimError {
    /// The message and, one `caused by:` line each, what caused it: what `simulate`
    /// prints after `error: ` when the fleet cannot start.
    pub fn with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut src = std::error::Error::source(self);
        while let Some(s) = src {
            text.push_str(&format!("\n  caused by: {s}"));
            src = s.source();
        }
        text
    }
}
