//! The policy service at `QUEUE_DIR/private/policy`: Postfix's `spawn` starting
//! zmpostfixpolicyd as the loaded entry's `user=` for each connection (docs/carbonio.md §1;
//! Postfix `spawn/spawn.c`). What a client sees, and what smtpd sees when it asks:
//!
//! - the running master did not load a `policy unix … spawn` entry: there is no socket
//!   (`connect to private/policy: No such file or directory`);
//! - the spawn user does not exist: spawn logs `fatal: unknown user name: USER` and the
//!   connection ends without a reply (spawn.c line 236);
//! - the user cannot read localconfig.xml with the one group spawn gives it: the script
//!   dies before answering, after printing its error on the socket (the text is
//!   modelled, not taken from a node);
//! - otherwise zmpostfixpolicyd answers each request (attributes, then an empty line):
//!   `action=reject 5.1.1 Mailbox unavailable` for an unknown address in an alias domain,
//!   `action=dunno` for anything else, each reply ended by an empty line, until EOF.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::node::Node;

/// The socket, relative to the queue directory.
pub const SOCKET: &str = "private/policy";

/// Why the policy service cannot answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    /// The running master has no policy entry: no socket.
    NoSocket,
    /// spawn cannot become the entry's user.
    UnknownUser(String),
    /// The daemon cannot read localconfig.xml as that user and group.
    CannotRead { user: String, path: String },
    /// The daemon dies at start with this text (`NodeState::policyd_broken`).
    Dies(String),
}

/// Whether the policy service the running master loaded can answer.
pub fn state(node: &Node) -> Result<(), Broken> {
    let Some(spec) = node.loaded_policy_spawn_user() else {
        return Err(Broken::NoSocket);
    };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u.to_string(), Some(g.to_string())),
        None => (spec.clone(), None),
    };
    let st = node.state();
    if !st.has_user(&user) {
        return Err(Broken::UnknownUser(user));
    }
    let path = st.flavour.localconfig();
    if !st.can_read_as(&user, group.as_deref(), path) {
        return Err(Broken::CannotRead {
            user,
            path: path.to_string(),
        });
    }
    match &st.policyd_broken {
        Some(text) => Err(Broken::Dies(text.clone())),
        None => Ok(()),
    }
}

/// Whether `path` is the node's policy socket and it exists (the running master loaded the
/// entry): what `test -S` sees.
pub fn socket_exists(node: &Node, path: &str) -> bool {
    let queue = node
        .state()
        .postfix
        .as_ref()
        .and_then(|pf| pf.params.get("queue_directory").cloned());
    queue.is_some_and(|q| format!("{q}/{SOCKET}") == path)
        && !matches!(state(node), Err(Broken::NoSocket))
}

/// What zmpostfixpolicyd answers for `recipient`: an address in an alias domain is
/// looked up as the same local part in the local domains (the alias's target; the
/// simulator's clusters have one local domain).
pub fn action(node: &Node, recipient: &str) -> String {
    let ldap = node.cluster.ldap();
    let recipient = recipient.to_lowercase();
    let (local, domain) = recipient
        .rsplit_once('@')
        .unwrap_or((recipient.as_str(), ""));
    let domain_type = |d: &str| {
        ldap.domain_attrs
            .get(d)
            .and_then(|a| a.get("zimbraDomainType"))
            .and_then(|t| t.first().cloned())
    };
    let alias = domain_type(domain).as_deref() == Some("alias");
    let exists = ldap.domains.iter().any(|d| {
        domain_type(d).as_deref() == Some("local")
            && ldap.addresses.contains(&format!("{local}@{d}"))
    });
    if alias && !exists {
        "action=reject 5.1.1 Mailbox unavailable".into()
    } else {
        "action=dunno".into()
    }
}

/// Serves one connection to the socket (the caller found it exists: [`state`] is not
/// `NoSocket`).
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    node: Arc<Node>,
    stream: S,
) -> std::io::Result<()> {
    let (r, mut w) = tokio::io::split(stream);
    match state(&node) {
        Ok(()) => {}
        Err(Broken::NoSocket) => return w.shutdown().await,
        Err(Broken::UnknownUser(user)) => {
            node.log_mail(
                "postfix/spawn",
                &format!("fatal: unknown user name: {user}"),
            );
            return w.shutdown().await;
        }
        Err(Broken::CannotRead { path, .. }) => {
            let policyd = node.state().flavour.policyd();
            w.write_all(
                format!("Can't open {path}: Permission denied at {policyd} line 92.\n").as_bytes(),
            )
            .await?;
            return w.shutdown().await;
        }
        Err(Broken::Dies(text)) => {
            w.write_all(format!("{text}\n").as_bytes()).await?;
            return w.shutdown().await;
        }
    }
    answer_requests(&node, r, w).await
}

/// zmpostfixpolicyd's request loop once it runs (its spawn user exists and read
/// localconfig.xml): one reply per request until EOF. Also the stand-in the real
/// Postfix spawns on the real-process fleet (`sim-exec policyd`, behind a Perl script
/// that reads localconfig.xml first), which is why a daemon told to die
/// ([`Broken::Dies`]) dies here too, after printing its error as the real one would.
pub async fn answer_requests<R, W>(node: &Node, r: R, mut w: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let broken = node.state().policyd_broken.clone();
    if let Some(text) = broken {
        w.write_all(format!("{text}\n").as_bytes()).await?;
        return w.shutdown().await;
    }
    let mut lines = BufReader::new(r).lines();
    let mut recipient = String::new();
    while let Some(line) = lines.next_line().await? {
        if line.is_empty() {
            let reply = action(node, &recipient);
            w.write_all(format!("{reply}\n\n").as_bytes()).await?;
            w.flush().await?;
            recipient.clear();
        } else if let Some(v) = line.strip_prefix("recipient=") {
            recipient = v.to_string();
        }
    }
    w.shutdown().await
}
