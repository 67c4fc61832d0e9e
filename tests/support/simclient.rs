//! A minimal russh client for the simulator tests: verifies the host key against the
//! fleet's known_hosts by exact key comparison (an unknown or different key is an error,
//! never accepted), authenticates with the fleet's client key, runs execs and opens
//! direct-tcpip channels. The project's own SSH client replaces it after the merge.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use russh::ChannelMsg;
use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
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
    #[error("ssh: {0}")]
    Ssh(#[from] russh::Error),
    #[error("key: {0}")]
    Key(#[from] russh::keys::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

struct Verifier {
    host: String,
    known: Vec<PublicKey>,
}

impl client::Handler for Verifier {
    type Error = ClientError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Err(ClientError::UnknownHostKey(self.host.clone()));
        };
        if self.known.is_empty() {
            return Err(ClientError::UnknownHostKey(self.host.clone()));
        }
        if self.known.iter().any(|k| k.key_data() == key.key_data()) {
            Ok(true)
        } else {
            Err(ClientError::HostKeyMismatch(self.host.clone()))
        }
    }
}

/// Keys listed for `addr` in a plain known_hosts file.
fn known_keys(known_hosts: &Path, addr: SocketAddr) -> std::io::Result<Vec<PublicKey>> {
    let host = if addr.port() == 22 {
        addr.ip().to_string()
    } else {
        format!("[{}]:{}", addr.ip(), addr.port())
    };
    let text = std::fs::read_to_string(known_hosts)?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let hosts = f.next()?;
            let (kind, b64) = (f.next()?, f.next()?);
            hosts
                .split(',')
                .any(|h| h == host)
                .then(|| PublicKey::from_openssh(&format!("{kind} {b64}")).ok())?
        })
        .collect())
}

/// Result of one exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: Option<u32>,
    pub stdout: String,
    pub stderr: String,
}

/// An authenticated connection.
pub struct SimClient {
    handle: client::Handle<Verifier>,
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
        let verifier = Verifier {
            host: addr.to_string(),
            known: known_keys(known_hosts, addr)?,
        };
        let key = Arc::new(russh::keys::load_secret_key(identity, None)?);
        let config = Arc::new(client::Config {
            nodelay: true,
            ..Default::default()
        });
        let fut = async move {
            let mut handle = client::connect(config, addr, verifier).await?;
            let auth = handle
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, None))
                .await?;
            if !auth.success() {
                return Err(ClientError::AuthRefused);
            }
            Ok(SimClient { handle })
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// Runs `cmd`, sending `stdin` then EOF, and collects everything until the channel
    /// closes.
    pub async fn exec_with_stdin(
        &self,
        cmd: &str,
        stdin: Option<&[u8]>,
    ) -> Result<Output, ClientError> {
        let mut ch = self.handle.channel_open_session().await?;
        ch.exec(true, cmd).await?;
        if let Some(data) = stdin {
            ch.data_bytes(data.to_vec()).await?;
            ch.eof().await?;
        }
        let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), None);
        while let Some(msg) = ch.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, ext: 1 } => err.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                _ => {}
            }
        }
        Ok(Output {
            status,
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
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
    ) -> Result<russh::ChannelStream<client::Msg>, ClientError> {
        let ch = self
            .handle
            .channel_open_direct_tcpip(host, port, "127.0.0.1", 40000)
            .await?;
        Ok(ch.into_stream())
    }
}

/// The tool's quoting: POSIX single quotes, `'` → `'\''`.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
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
