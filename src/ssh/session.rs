//! An authenticated connection to one host, reused for every step of a run.
//!
//! [`Session::exec`] opens one channel per command (at most `max_channels_per_conn` at
//! once, below OpenSSH's `MaxSessions` 10), sends the become-wrapped command, stdin and
//! EOF, and reads until the channel is gone: exit status may come before or after EOF,
//! and neither a status nor a signal means the outcome is unknown, never success.

use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::client::{Handle, Msg};
use russh::{ChannelMsg, ChannelStream, Disconnect, Sig};
use serde::Serialize;
use tokio::sync::Semaphore;

use super::become_::{RunAs, wrap};
use super::checker::Checker;
use super::error::ExecError;
use crate::flavour::Flavour;
use crate::inventory::Become;

/// How a remote command ended.
///
/// Serialized as `{"status":3}`, `{"signal":{"name":"KILL",…}}` or `"unknown"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecEnd {
    /// The command exited with this status.
    Status(u32),
    /// The command was killed by a signal (e.g. `KILL`).
    Signal {
        name: String,
        core_dumped: bool,
        message: String,
    },
    /// The channel closed with neither: the transport or the server dropped it.
    Unknown,
}

/// Everything a command produced.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub end: ExecEnd,
    /// A stream exceeded `max_output` and was cut there.
    pub truncated: bool,
    pub elapsed: Duration,
    /// The exact string sent on the channel.
    pub command: String,
}

impl ExecOutput {
    /// True only for exit status 0.
    pub fn is_success(&self) -> bool {
        self.end == ExecEnd::Status(0)
    }
}

pub(crate) struct SessionInner {
    pub(crate) handle: Handle<Checker>,
    pub(crate) host_name: String,
    pub(crate) login_user: String,
    pub(crate) become_: Become,
    /// The product (its service user): the inventory's, or what the gather detected.
    pub(crate) flavour: std::sync::Mutex<Flavour>,
    pub(crate) channels: Semaphore,
    pub(crate) max_output: usize,
    /// Keeps the bastion connection alive (and its tunnel slot taken) while this
    /// session tunnels through it.
    pub(crate) _bastion: Option<Tunnel>,
}

/// A tunnel slot on a bastion connection, held for the life of the target's session:
/// the bastion's session (its connection stays open) and the permit counted against
/// `max_tunnels_per_bastion`.
pub(crate) struct Tunnel {
    pub(super) session: Session,
    pub(super) _slot: tokio::sync::OwnedSemaphorePermit,
}

/// One authenticated connection; cheap to clone, shared by every step for that host.
#[derive(Clone)]
pub struct Session {
    pub(crate) inner: Arc<SessionInner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.inner.host_name)
            .field("login_user", &self.inner.login_user)
            .finish()
    }
}

fn signal_name(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(name) => name,
    }
    .to_owned()
}

/// Appends `data` to `buf` up to `max` bytes; returns false when something was cut.
fn capped_extend(buf: &mut Vec<u8>, data: &[u8], max: usize) -> bool {
    let room = max.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..data.len().min(room)]);
    data.len() <= room
}

impl Session {
    /// The SSH login user.
    pub fn login_user(&self) -> &str {
        &self.inner.login_user
    }

    /// The inventory name of the host.
    pub fn host_name(&self) -> &str {
        &self.inner.host_name
    }

    /// The product the node runs, as far as known (see [`Session::set_flavour`]).
    pub fn flavour(&self) -> Flavour {
        *self.inner.flavour.lock().expect("flavour lock poisoned")
    }

    /// Records the product the gather found: later service-user commands become its user.
    pub fn set_flavour(&self, flavour: Flavour) {
        *self.inner.flavour.lock().expect("flavour lock poisoned") = flavour;
    }

    /// Whether the underlying connection has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.handle.is_closed()
    }

    /// Runs `script` as `run_as`, feeding `stdin` if given, within `timeout`.
    ///
    /// On timeout the channel is closed and [`ExecError::Timeout`] returned.
    pub async fn exec(
        &self,
        run_as: RunAs,
        script: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput, ExecError> {
        let command = self.wrap(run_as, script)?;
        self.exec_command(command, stdin, timeout).await
    }

    /// [`Session::exec`], calling `announce` with the exact command line just before it
    /// is sent (the audit trail records a changing command before it runs, so a run
    /// killed mid-command still shows what it sent).
    pub async fn exec_announced(
        &self,
        run_as: RunAs,
        script: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
        announce: impl FnOnce(&str),
    ) -> Result<ExecOutput, ExecError> {
        let command = self.wrap(run_as, script)?;
        announce(&command);
        self.exec_command(command, stdin, timeout).await
    }

    /// The exact command line that runs `script` as `run_as` on this host.
    pub fn wrap(&self, run_as: RunAs, script: &str) -> Result<String, ExecError> {
        self.wrap_as(self.flavour(), run_as, script)
    }

    /// [`Session::wrap`] for a given product's service user.
    pub fn wrap_as(
        &self,
        flavour: Flavour,
        run_as: RunAs,
        script: &str,
    ) -> Result<String, ExecError> {
        let inner = &self.inner;
        wrap(
            &inner.login_user,
            inner.become_,
            flavour.user(),
            run_as,
            script,
        )
        .map_err(|source| ExecError::Quote {
            host: inner.host_name.clone(),
            source,
        })
    }

    /// Sends `command` (already wrapped: [`Session::wrap`]) as is.
    pub async fn exec_command(
        &self,
        command: String,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput, ExecError> {
        let inner = &self.inner;
        let host = inner.host_name.clone();
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || ExecError::Timeout {
            host: host.clone(),
            after: timeout,
            command: command.clone(),
        };
        let channel_err = |e: russh::Error| ExecError::Channel {
            host: host.clone(),
            message: e.to_string(),
            command: command.clone(),
        };
        let _permit = tokio::time::timeout_at(deadline, inner.channels.acquire())
            .await
            .map_err(|_| timed_out())?
            .expect("the channel semaphore is never closed");
        let open = async {
            let mut attempt = 0u32;
            loop {
                match inner.handle.channel_open_session().await {
                    // sshd frees a session slot a moment after the channel's close, so
                    // at the MaxSessions edge an open can be refused briefly: retry.
                    Err(russh::Error::ChannelOpenFailure(
                        russh::ChannelOpenFailure::ConnectFailed,
                    )) if attempt < 6 => {
                        tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
                        attempt += 1;
                    }
                    other => return other,
                }
            }
        };
        let channel = tokio::time::timeout_at(deadline, open)
            .await
            .map_err(|_| timed_out())?
            .map_err(channel_err)?;
        let (mut reader, writer) = channel.split();
        let max = inner.max_output;

        let write = async {
            writer.exec(true, command.as_bytes()).await?;
            if let Some(data) = stdin {
                // The command may exit without reading its input; that is its business.
                if writer.data(data).await.is_err() {
                    return Ok(());
                }
            }
            let _ = writer.eof().await;
            Ok::<(), russh::Error>(())
        };
        let read = async {
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            let (mut status, mut signal, mut truncated) = (None, None, false);
            while let Some(msg) = reader.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        truncated |= !capped_extend(&mut stdout, &data, max)
                    }
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        truncated |= !capped_extend(&mut stderr, &data, max)
                    }
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    ChannelMsg::ExitSignal {
                        signal_name: sig,
                        core_dumped,
                        error_message,
                        ..
                    } => {
                        signal = Some(ExecEnd::Signal {
                            name: signal_name(&sig),
                            core_dumped,
                            message: error_message,
                        })
                    }
                    _ => {}
                }
            }
            let end = match (status, signal) {
                (Some(code), _) => ExecEnd::Status(code),
                (None, Some(sig)) => sig,
                (None, None) => ExecEnd::Unknown,
            };
            (stdout, stderr, end, truncated)
        };
        let both = async { tokio::join!(write, read) };
        match tokio::time::timeout_at(deadline, both).await {
            Err(_) => {
                let _ = writer.close().await;
                Err(timed_out())
            }
            Ok((Err(e), _)) => Err(channel_err(e)),
            Ok((Ok(()), (stdout, stderr, end, truncated))) => Ok(ExecOutput {
                stdout,
                stderr,
                end,
                truncated,
                elapsed: started.elapsed(),
                command,
            }),
        }
    }

    /// Opens a TCP stream from the node to `host:port` (e.g. an SMTP probe through it).
    pub async fn direct_tcpip(
        &self,
        host: &str,
        port: u16,
    ) -> Result<ChannelStream<Msg>, ExecError> {
        let channel = self
            .inner
            .handle
            .channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0)
            .await
            .map_err(|e| ExecError::Channel {
                host: self.inner.host_name.clone(),
                message: format!("direct-tcpip to {host}:{port}: {e}"),
                command: String::new(),
            })?;
        Ok(channel.into_stream())
    }

    /// A `direct-streamlocal@openssh.com` channel to the UNIX socket `path` on the node
    /// (sshd connects as the login user; OpenSSH answers every failed open alike).
    pub async fn direct_streamlocal(&self, path: &str) -> Result<ChannelStream<Msg>, ExecError> {
        let channel = self
            .inner
            .handle
            .channel_open_direct_streamlocal(path)
            .await
            .map_err(|e| ExecError::Channel {
                host: self.inner.host_name.clone(),
                message: format!("direct-streamlocal to {path}: {e}"),
                command: String::new(),
            })?;
        Ok(channel.into_stream())
    }

    /// Ends the connection politely (other clones see it closed).
    pub async fn close(self) {
        let _ = self
            .inner
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_cuts_and_reports() {
        let mut b = Vec::new();
        assert!(capped_extend(&mut b, b"abc", 5));
        assert!(!capped_extend(&mut b, b"defg", 5));
        assert_eq!(b, b"abcde");
        assert!(!capped_extend(&mut b, b"x", 5));
        assert_eq!(b, b"abcde");
    }
}
