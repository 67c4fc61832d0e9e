//! The simulator tests' SSH client: a thin wrapper over the project's own client
//! (`carbonio_fleet::ssh`), so these tests exercise the real transport — host key checked
//! against the fleet's known_hosts under the strict policy, public-key auth with the
//! fleet's client key — and only adapt its results to what the tests compare.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use carbonio_fleet::inventory::{Become, Host, HostKeyPolicy};
use carbonio_fleet::ssh::{Connector, ConnectorOptions, ExecEnd, FailureKind, RunAs, Session};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// Why a connection or command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("host key for {0} differs from known_hosts")]
    HostKeyMismatch(String),
    #[error("no known_hosts entry for {0}")]
    UnknownHostKey(String),
    #[error("authentication refused")]
    AuthRefused,
    #[error("timed out")]
    Timeout,
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Other(String),
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: Option<u32>,
    pub stdout: String,
    pub stderr: String,
}

/// An authenticated connection.
pub struct SimClient {
    session: Session,
}

impl SimClient {
    /// Connects, verifies the host key, authenticates `user` with `identity`; the whole
    /// handshake is bounded by `timeout`.
    pub async fn connect(
        addr: SocketAddr,
        known_hosts: &Path,
        identity: &Path,
        user: &str,
        timeout: Duration,
    ) -> Result<SimClient, ClientError> {
        let host = Host {
            name: addr.to_string(),
            address: addr.ip().to_string(),
            port: addr.port(),
            user: user.to_string(),
            identity_files: vec![identity.to_path_buf()],
            // Commands are sent exactly as the tests write them.
            become_: Become::None,
            flavour: carbonio_fleet::flavour::FlavourSetting::Auto,
            known_hosts: known_hosts.to_path_buf(),
            known_hosts_also: Vec::new(),
            host_key_policy: HostKeyPolicy::Strict,
            connect_timeout: timeout,
            command_timeout: Duration::from_secs(30),
            jump: None,
            groups: Vec::new(),
            cluster: addr.to_string(),
            roles: Vec::new(),
            vars: Default::default(),
            egress: Vec::new(),
            source: known_hosts.to_path_buf(),
        };
        let connector = Connector::new(ConnectorOptions {
            agent_socket: None,
            ..ConnectorOptions::default()
        });
        match connector.connect(&host).await {
            Ok(session) => Ok(SimClient { session }),
            Err(e) => Err(match e.kind {
                FailureKind::Hostkey => match &e.detail {
                    Some(d) if !d.expected.is_empty() => ClientError::HostKeyMismatch(host.name),
                    _ => ClientError::UnknownHostKey(host.name),
                },
                FailureKind::Auth => ClientError::AuthRefused,
                FailureKind::Timeout => ClientError::Timeout,
                FailureKind::Unreachable => ClientError::Unreachable(e.message),
                FailureKind::Command => ClientError::Other(e.message),
            }),
        }
    }

    /// Runs `cmd`, sending `stdin` then EOF, and collects everything until the channel
    /// closes.
    pub async fn exec_with_stdin(
        &self,
        cmd: &str,
        stdin: Option<&[u8]>,
    ) -> Result<Output, ClientError> {
        let out = self
            .session
            .exec(RunAs::Login, cmd, stdin, Duration::from_secs(30))
            .await
            .map_err(|e| match e.kind() {
                FailureKind::Timeout => ClientError::Timeout,
                _ => ClientError::Other(e.to_string()),
            })?;
        Ok(Output {
            status: match out.end {
                ExecEnd::Status(c) => Some(c),
                _ => None,
            },
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs `cmd` without stdin.
    pub async fn exec(&self, cmd: &str) -> Result<Output, ClientError> {
        self.exec_with_stdin(cmd, None).await
    }

    /// Opens a direct-tcpip channel to `host:port` as seen from the node.
    pub async fn tunnel(
        &self,
        host: &str,
        port: u32,
    ) -> Result<impl AsyncRead + AsyncWrite + Unpin, ClientError> {
        self.session
            .direct_tcpip(host, port as u16)
            .await
            .map_err(|e| ClientError::Other(e.to_string()))
    }
}

/// The tool's one quoting function.
pub fn quote(s: &str) -> String {
    carbonio_fleet::ssh::quote(s).expect("test values have no NUL")
}

/// A line-oriented SMTP dialogue for tests.
pub struct Smtp<S> {
    r: BufReader<tokio::io::ReadHalf<S>>,
    w: tokio::io::WriteHalf<S>,
}

impl<S: AsyncRead + AsyncWrite> Smtp<S> {
    /// Wraps a stream.
    pub fn new(stream: S) -> Self {
        let (r, w) = tokio::io::split(stream);
        Smtp {
            r: BufReader::new(r),
            w,
        }
    }

    /// Reads one (possibly multi-line) reply, lines joined with `\n`.
    pub async fn reply(&mut self) -> std::io::Result<String> {
        let mut all = Vec::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).await? == 0 {
                break;
            }
            let line = line.trim_end().to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            all.push(line);
            if last {
                break;
            }
        }
        Ok(all.join("\n"))
    }

    /// Sends a command and reads its reply.
    pub async fn cmd(&mut self, line: &str) -> std::io::Result<String> {
        self.w.write_all(format!("{line}\r\n").as_bytes()).await?;
        self.w.flush().await?;
        self.reply().await
    }
}
