//! An in-process russh server for failure modes a real sshd cannot be told to produce on
//! demand. It accepts any password and acts on the exec string:
//! - contains `FAKE-SIGNAL`: exit-signal KILL (core dumped), no exit status
//! - contains `FAKE-NOSTATUS`: some output, EOF, close, neither status nor signal
//! - contains `FAKE-STALL`: accepts the command and never answers
//! - anything else: echoes the command on stdout, exit status 0
//!
//! Also [`silent_listener`]: accepts TCP connections and never says a word.

use std::sync::Arc;
use std::time::Duration;

use russh::keys::ssh_key::{Algorithm, PrivateKey};
use russh::server::{self, Auth, Msg, Server as _, Session};
use russh::{Channel, ChannelId, Sig};
use tokio::net::TcpListener;

/// A running fake server; stops when dropped.
pub struct FakeServer {
    pub port: u16,
    /// `[127.0.0.1]:PORT ssh-ed25519 …`
    pub known_hosts_line: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Fake;

impl server::Server for Fake {
    type Handler = Fake;
    fn new_client(&mut self, _: Option<std::net::SocketAddr>) -> Fake {
        Fake
    }
}

impl server::Handler for Fake {
    type Error = russh::Error;

    async fn auth_password(&mut self, _user: &str, _password: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        ch: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        session.channel_success(ch)?;
        if command.contains("FAKE-SIGNAL") {
            session.data(ch, b"before\n".to_vec())?;
            session.exit_signal_request(ch, Sig::KILL, true, "killed", "en")?;
            session.eof(ch)?;
            session.close(ch)?;
        } else if command.contains("FAKE-NOSTATUS") {
            session.data(ch, b"partial".to_vec())?;
            session.eof(ch)?;
            session.close(ch)?;
        } else if command.contains("FAKE-STALL") {
            // Say nothing, ever.
        } else {
            session.data(ch, command.into_bytes())?;
            session.exit_status_request(ch, 0)?;
            session.eof(ch)?;
            session.close(ch)?;
        }
        Ok(())
    }
}

/// Starts the fake server on 127.0.0.1 with a fresh ed25519 host key.
pub async fn start() -> FakeServer {
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    let public = key.public_key().to_openssh().unwrap();
    let config = Arc::new(server::Config {
        keys: vec![key],
        auth_rejection_time: Duration::from_millis(10),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: None,
        ..Default::default()
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let _ = Fake.run_on_socket(config, &listener).await;
    });
    FakeServer {
        port,
        known_hosts_line: format!("[127.0.0.1]:{port} {public}"),
        task,
    }
}

/// A listener that accepts connections and never sends a byte (no SSH banner).
pub async fn silent_listener() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    (port, task)
}

/// A listener that resets every connection right after accepting it (like sshd dropping
/// handshakes beyond `MaxStartups`); the counter says how many connections arrived.
pub async fn resetting_listener() -> (
    u16,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let task = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            // Linger 0 turns the close into a RST.
            let _ = sock.set_zero_linger();
            drop(sock);
        }
    });
    (port, count, task)
}

/// A TCP proxy to `127.0.0.1:target` that can be switched to black-hole mode (bytes in
/// both directions are swallowed, the sockets stay open), like a peer that died silently.
pub async fn freezable_proxy(
    target: u16,
) -> (
    u16,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    tokio::task::JoinHandle<()>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let frozen = Arc::new(AtomicBool::new(false));
    let flag = frozen.clone();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(("127.0.0.1", target))
                .await
                .unwrap();
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            for (mut from, mut to) in [
                (
                    Box::new(cr) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                    Box::new(sw) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                ),
                (Box::new(sr), Box::new(cw)),
            ] {
                let flag = flag.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16384];
                    while let Ok(n) = from.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if !flag.load(Ordering::SeqCst) && to.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    // Keep the write side open while frozen: a dead peer sends no FIN.
                    while flag.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                });
            }
        }
    });
    (port, frozen, task)
}
