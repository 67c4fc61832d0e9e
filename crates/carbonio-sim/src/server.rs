//! The SSH side of a simulated node: a russh server handler that authenticates the
//! fleet's client key, runs each exec in its own task through the simulated shell
//! (stdin = channel data until EOF; stdout/stderr streamed; exit status, EOF, close),
//! and serves SMTP on direct-tcpip channels to port 25. Plus the accept loop.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use russh::keys::PublicKey;
use russh::server::{
    self, Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::node::Node;
use super::policyd;
use super::shell::{Io, OutputPort, Sink, Source, Stream, login_env, run_script};
use super::smtp::{self, Vantage};

/// Per-connection handler.
pub(crate) struct Conn {
    node: Arc<Node>,
    client_key: Arc<PublicKey>,
    refuse_auth: bool,
    user: Option<String>,
    stdin_tx: HashMap<ChannelId, mpsc::UnboundedSender<Vec<u8>>>,
    stdin_rx: HashMap<ChannelId, mpsc::UnboundedReceiver<Vec<u8>>>,
}

impl Conn {
    fn accepts(&self, user: &str, key: &PublicKey) -> bool {
        !self.refuse_auth
            && key.key_data() == self.client_key.key_data()
            && self.node.state().login_users.contains(user)
    }
}

/// Channel output through the session handle, in write order.
struct ChannelPort {
    handle: server::Handle,
    id: ChannelId,
}

impl OutputPort for ChannelPort {
    fn send(&self, stream: Stream, data: Vec<u8>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // A client that went away just loses the output, as with a real sshd.
            let _ = match stream {
                Stream::Stdout => self.handle.data(self.id, data).await,
                Stream::Stderr => self.handle.extended_data(self.id, 1, data).await,
            };
        })
    }
}

impl server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.accepts(user, offer.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.accepts(user, key.public_key) {
            self.user = Some(user.to_string());
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.stdin_tx.insert(channel.id(), tx);
        self.stdin_rx.insert(channel.id(), rx);
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(user), Some(rx)) = (self.user.clone(), self.stdin_rx.remove(&channel)) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        let handle = session.handle();
        let hostile = self.node.state().open_server_channels;
        if hostile > 0 {
            // A hostile server opens channels of its own; a client must refuse them all.
            let (h, node) = (handle.clone(), self.node.clone());
            tokio::spawn(async move {
                for i in 0..hostile {
                    let opened = match i % 5 {
                        0 => h.channel_open_session().await.is_ok(),
                        1 => h.channel_open_x11("127.0.0.1", 6000).await.is_ok(),
                        2 => h
                            .channel_open_forwarded_tcpip("127.0.0.1", 25, "203.0.113.1", 4242)
                            .await
                            .is_ok(),
                        3 => h.channel_open_agent().await.is_ok(),
                        _ => h
                            .channel_open_direct_tcpip("127.0.0.1", 22, "203.0.113.1", 4242)
                            .await
                            .is_ok(),
                    };
                    node.count_server_channel(opened);
                }
            });
        }
        let port: Arc<dyn OutputPort> = Arc::new(ChannelPort {
            handle: handle.clone(),
            id: channel,
        });
        let io = Io {
            stdin: Source::Channel(Arc::new(tokio::sync::Mutex::new(rx))),
            stdout: Sink::Port(port.clone(), Stream::Stdout),
            stderr: Sink::Port(port, Stream::Stderr),
        };
        let node = self.node.clone();
        let script = String::from_utf8_lossy(data).into_owned();
        // One task per exec: a slow program never blocks the connection.
        tokio::spawn(async move {
            let env = login_env(&node, &user);
            let code = run_script(node, user, env, script, io).await;
            let _ = handle.exit_status_request(channel, code as u32).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Interactive shells are not part of the dialect.
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(tx) = self.stdin_tx.get(&channel) {
            let _ = tx.send(data.to_vec());
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.stdin_tx.remove(&channel);
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.stdin_tx.remove(&channel);
        self.stdin_rx.remove(&channel);
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let local = matches!(host_to_connect, "127.0.0.1" | "localhost" | "::1")
            || host_to_connect.eq_ignore_ascii_case(&self.node.hostname());
        if self.user.is_none() || !local || port_to_connect != 25 || !self.node.is_mta() {
            // Dropping the handle refuses the channel (connection refused).
            drop(reply);
            return Ok(());
        }
        reply.accept().await;
        let node = self.node.clone();
        tokio::spawn(async move {
            let _ = smtp::serve(node, channel.into_stream(), Vantage::Loopback).await;
        });
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        channel: Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.open_policy_socket(channel, socket_path, reply).await;
        Ok(())
    }
}

impl Conn {
    /// `direct-streamlocal@openssh.com` to the policy socket: only where it exists (the
    /// running master loaded the policy entry) and only for root (`private/` is 0700
    /// postfix); OpenSSH answers every other failed open alike.
    async fn open_policy_socket(
        &mut self,
        channel: Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
    ) {
        if self.user.as_deref() != Some("root") || !policyd::socket_exists(&self.node, socket_path)
        {
            drop(reply);
            return;
        }
        reply.accept().await;
        let node = self.node.clone();
        tokio::spawn(async move {
            let _ = policyd::serve(node, channel.into_stream()).await;
        });
    }
}

/// What a node's listener does with a connection.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub node: Arc<Node>,
    pub config: Arc<server::Config>,
    pub client_key: Arc<PublicKey>,
    pub refuse_auth: bool,
    /// Accept TCP and never speak.
    pub hang: bool,
}

/// The next accepted connection, or `None` once `cancel` fires.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    cancel: &CancellationToken,
) -> Option<tokio::net::TcpStream> {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return None,
            r = listener.accept() => match r {
                Ok((sock, _)) => return Some(sock),
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            },
        }
    }
}

/// Accepts connections until `cancel`; each runs in its own task.
pub(crate) async fn accept_loop(listener: TcpListener, ep: Endpoint, cancel: CancellationToken) {
    while let Some(sock) = next_connection(&listener, &cancel).await {
        let ep = ep.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if ep.hang {
                cancel.cancelled().await;
                drop(sock);
                return;
            }
            let _ = sock.set_nodelay(true);
            let conn = Conn {
                node: ep.node,
                client_key: ep.client_key,
                refuse_auth: ep.refuse_auth,
                user: None,
                stdin_tx: HashMap::new(),
                stdin_rx: HashMap::new(),
            };
            let Ok(session) = server::run_stream(ep.config, sock, conn).await else {
                return;
            };
            let handle = session.handle();
            tokio::select! {
                _ = session => {}
                _ = cancel.cancelled() => {
                    let _ = handle.disconnect(russh::Disconnect::ByApplication, "simulator shutting down".into(), "en".into()).await;
                }
            }
        });
    }
}

/// Serves SMTP from "outside" (not in mynetworks) until `cancel`.
pub(crate) async fn smtp_outside_loop(
    listener: TcpListener,
    node: Arc<Node>,
    cancel: CancellationToken,
) {
    while let Some(sock) = next_connection(&listener, &cancel).await {
        let node = node.clone();
        let cancel = cancel.clone();
        let peer = sock.peer_addr().ok().map(|a| a.ip());
        tokio::spawn(async move {
            tokio::select! {
                _ = smtp::serve_from(node, sock, Vantage::Outside, peer) => {}
                _ = cancel.cancelled() => {}
            }
        });
    }
}
