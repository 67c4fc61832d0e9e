//! The SMTP responder of a simulated MTA. Replies follow the node's EFFECTIVE Postfix
//! config in Postfix's evaluation order: relay restrictions, then
//! `smtpd_recipient_restrictions` item by item (a client in mynetworks is permitted by
//! `permit_mynetworks` before the policy service is consulted), then the implicit
//! `smtpd_reject_unlisted_recipient` check. A broken policy service (spawn user missing,
//! or the service not in master.cf) answers 451 4.3.5 and leaves the log lines Postfix
//! would. While the node restarts every reply is 421.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::node::Node;
use super::policyd::{self, Broken};
use super::postfix::POLICY_RESTRICTION;

/// Where the SMTP client stands relative to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vantage {
    /// From the node itself (SSH direct-tcpip to 127.0.0.1:25): in mynetworks.
    Loopback,
    /// From another machine, outside mynetworks.
    Outside,
}

const UNAVAILABLE: &str = "421 4.3.2 Service not available";

fn is_down(node: &Node) -> bool {
    let st = node.state();
    st.is_restarting() || st.stopped.contains("mta") || st.postfix.is_none()
}

fn angle(arg: &str) -> Option<String> {
    let s = arg.find('<')?;
    let e = arg[s..].find('>')? + s;
    Some(arg[s + 1..e].to_string())
}

fn fqdn(addr: &str) -> bool {
    addr.rsplit_once('@').is_some_and(|(_, d)| d.contains('.'))
}

/// The reply to `RCPT TO:<rcpt>` after `MAIL FROM:<sender>`.
pub fn rcpt_reply(node: &Node, vantage: Vantage, sender: &str, rcpt: &str) -> String {
    let Some(pf) = node.state().postfix.clone() else {
        return UNAVAILABLE.into();
    };
    let (hosted, known) = {
        let ldap = node.cluster.ldap();
        let domain = rcpt.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        (ldap.hosts_domain(domain), ldap.knows_address(rcpt))
    };
    let mynet = vantage == Vantage::Loopback;
    let unlisted = format!(
        "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table"
    );
    if !mynet && !hosted {
        return format!("554 5.7.1 <{rcpt}>: Relay access denied");
    }
    for item in pf.recipient_restrictions() {
        match item {
            "reject_non_fqdn_recipient" if !fqdn(rcpt) => {
                return format!(
                    "504 5.5.2 <{rcpt}>: Recipient address rejected: need fully-qualified address"
                );
            }
            "reject_non_fqdn_sender" if !sender.is_empty() && !fqdn(sender) => {
                return format!(
                    "504 5.5.2 <{sender}>: Sender address rejected: need fully-qualified address"
                );
            }
            "permit_mynetworks" if mynet => break,
            "permit" => break,
            "reject_unlisted_recipient" if hosted && !known => return unlisted,
            "reject" => {
                return format!("554 5.7.1 <{rcpt}>: Recipient address rejected: Access denied");
            }
            POLICY_RESTRICTION => {
                let smtpd = "postfix/smtpd";
                // main.cf's restriction is in force (smtpd reads the files), but the
                // socket exists only if the RUNNING master loaded the policy entry.
                match policyd::state(node) {
                    Err(Broken::NoSocket) => {
                        node.log_mail(
                            smtpd,
                            "warning: connect to private/policy: No such file or directory",
                        );
                        node.log_mail(smtpd, "warning: problem talking to server private/policy: No such file or directory");
                        return "451 4.3.5 Server configuration problem".into();
                    }
                    Err(Broken::UnknownUser(user)) => {
                        node.log_mail(
                            "postfix/spawn",
                            &format!("fatal: unknown user name: {user}"),
                        );
                        node.log_mail(smtpd, "warning: problem talking to server private/policy: Connection reset by peer");
                        return "451 4.3.5 Server configuration problem".into();
                    }
                    // zmpostfixpolicyd reads localconfig.xml first; as a user that
                    // cannot (spawn keeps one group), it dies before answering
                    // (docs/carbonio.md §1; Postfix attr_scan's message).
                    Err(Broken::CannotRead { .. } | Broken::Dies(_)) => {
                        node.log_mail(smtpd, "warning: premature end-of-input on private/policy while reading input attribute name");
                        return "451 4.3.5 Server configuration problem".into();
                    }
                    Ok(()) => {
                        if let Some(reject) =
                            policyd::action(node, rcpt).strip_prefix("action=reject ")
                        {
                            return format!("550 {reject}");
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if pf.rejects_unlisted_recipient() && hosted && !known {
        return unlisted;
    }
    "250 2.1.5 Ok".into()
}

/// Serves one SMTP session on `stream` until QUIT or EOF.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    node: Arc<Node>,
    stream: S,
    vantage: Vantage,
) -> std::io::Result<()> {
    serve_from(node, stream, vantage, None).await
}

/// [`serve`], logging the client as Postfix's smtpd does (`connect from NAME[ADDR]`,
/// smtpd.c): `peer` for a TCP client, else the node itself (an SSH direct-tcpip channel
/// to 127.0.0.1:25 arrives from sshd on the node).
pub async fn serve_from<S: AsyncRead + AsyncWrite + Unpin>(
    node: Arc<Node>,
    stream: S,
    vantage: Vantage,
    peer: Option<std::net::IpAddr>,
) -> std::io::Result<()> {
    let client = match peer {
        Some(ip) => format!("unknown[{ip}]"),
        None => "localhost[127.0.0.1]".to_string(),
    };
    node.log_mail("postfix/smtpd", &format!("connect from {client}"));
    let (r, mut w) = tokio::io::split(stream);
    let mut lines = BufReader::new(r).lines();
    let host = node.hostname();
    if is_down(&node) {
        w.write_all(format!("{UNAVAILABLE}\r\n").as_bytes()).await?;
        return w.shutdown().await;
    }
    w.write_all(format!("220 {host} ESMTP Postfix\r\n").as_bytes())
        .await?;
    let (mut helo, mut sender, mut rcpts) = (false, None::<String>, 0usize);
    while let Some(line) = lines.next_line().await? {
        let line = line.trim_end_matches('\r').to_string();
        if is_down(&node) {
            w.write_all(format!("{UNAVAILABLE}\r\n").as_bytes()).await?;
            return w.shutdown().await;
        }
        let (verb, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let upper = verb.to_ascii_uppercase();
        let reply = match upper.as_str() {
            "EHLO" => {
                helo = true;
                format!(
                    "250-{host}\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 DSN"
                )
            }
            "HELO" => {
                helo = true;
                format!("250 {host}")
            }
            "MAIL" if !helo => "503 5.5.1 Error: send HELO/EHLO first".into(),
            "MAIL" => match angle(arg) {
                Some(s) if arg.to_ascii_uppercase().starts_with("FROM:") => {
                    sender = Some(s);
                    rcpts = 0;
                    "250 2.1.0 Ok".into()
                }
                _ => "501 5.5.4 Syntax: MAIL FROM:<address>".into(),
            },
            "RCPT" => match (&sender, angle(arg)) {
                (None, _) => "503 5.5.1 Error: need MAIL command".into(),
                (Some(_), None) => "501 5.5.4 Syntax: RCPT TO:<address>".into(),
                (Some(s), Some(r)) => {
                    let reply = rcpt_reply(&node, vantage, s, &r);
                    if reply.starts_with("250") {
                        rcpts += 1;
                    }
                    reply
                }
            },
            "DATA" if sender.is_none() => "503 5.5.1 Error: need RCPT command".into(),
            "DATA" if rcpts == 0 => "554 5.5.1 Error: no valid recipients".into(),
            "DATA" => {
                w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                while let Some(l) = lines.next_line().await? {
                    if l.trim_end_matches('\r') == "." {
                        break;
                    }
                }
                sender = None;
                format!("250 2.0.0 Ok: queued as 4F{:08X}", node.next_pid())
            }
            "RSET" => {
                sender = None;
                rcpts = 0;
                "250 2.0.0 Ok".into()
            }
            "NOOP" => "250 2.0.0 Ok".into(),
            "QUIT" => {
                w.write_all(b"221 2.0.0 Bye\r\n").await?;
                return w.shutdown().await;
            }
            _ => "502 5.5.2 Error: command not recognized".into(),
        };
        w.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
    Ok(())
}
