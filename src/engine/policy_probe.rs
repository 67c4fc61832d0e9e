//! Asking the Postfix policy service directly (`QUEUE_DIR/private/policy`), as smtpd
//! does: one `request=smtpd_access_policy` (attributes, then an empty line), one reply
//! read (`action=…`, then an empty line), then the stream is closed — the daemon loops
//! until EOF. A mail client in mynetworks never reaches the policy check, so only this
//! sees a daemon that cannot start (docs/carbonio.md §2). Protocol: Postfix
//! `util/attr_print_plain.c` / `attr_scan_plain.c` (name=value lines, an empty line ends
//! a request or reply).

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// The request smtpd would send for `recipient` at RCPT time, from the node itself.
pub fn request(recipient: &str) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
         client_address=127.0.0.1\nclient_name=localhost\nhelo_name=carbonio-fleet.probe\n\
         sender=\nrecipient={recipient}\n\n"
    )
}

/// Sends one request for `recipient` and reads one reply: `Ok(action line)` when the
/// service answered `action=…`; otherwise what came instead (a broken daemon's error
/// text arrives on the socket), an EOF or a timeout, as evidence.
pub async fn ask<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    recipient: &str,
    timeout: Duration,
) -> Result<String, String> {
    let (r, mut w) = tokio::io::split(stream);
    let exchange = async {
        w.write_all(request(recipient).as_bytes())
            .await
            .map_err(|e| format!("cannot send the request: {e}"))?;
        let mut lines = BufReader::new(r).lines();
        let mut got: Vec<String> = Vec::new();
        loop {
            match lines.next_line().await {
                Ok(Some(l)) if l.is_empty() && !got.is_empty() => break,
                Ok(Some(l)) if l.is_empty() => {}
                Ok(Some(l)) => got.push(l),
                Ok(None) => break,
                Err(e) => return Err(format!("read error: {e}")),
            }
        }
        Ok(got)
    };
    let got = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {}", crate::duration::display(timeout)))??;
    let _ = w.shutdown().await;
    judge(&got)
}

/// A reply's lines (up to its empty line): `Ok(action line)` for an `action=…` answer,
/// else the text as evidence.
pub fn judge(got: &[String]) -> Result<String, String> {
    match got.first() {
        Some(first) if first.starts_with("action=") && got.len() == 1 => Ok(first.clone()),
        Some(_) => Err(format!("not a policy answer: {}", got.join(" | "))),
        None => Err("the service closed the connection without an answer".into()),
    }
}

/// The on-node client, for when SSH cannot open the socket (a non-root login: `private/`
/// is 0700 postfix; forwarding disabled): perl, which every Carbonio and Zimbra node has
/// (zmpostfixpolicyd is Perl), with the core module IO::Socket::UNIX. Sends stdin, prints
/// the reply up to its empty line. Run as root through the become path, after `test -S`.
pub const PERL_CLIENT: &str = "my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die \"connect $ARGV[0]: $!\\n\"; local $/; my $q = <STDIN>; print $s $q; $/ = \"\\n\"; while (my $l = <$s>) { print $l; last if $l eq \"\\n\" }";

/// The shell that asks `socket` on the node with [`PERL_CLIENT`] (the request on stdin);
/// exit 1 without output when there is no such socket.
pub fn on_node_command(socket: &str) -> Result<String, crate::ssh::QuoteError> {
    let q = crate::ssh::quote(socket)?;
    Ok(format!(
        "test -S {q} && perl -MIO::Socket::UNIX -e {} {q}",
        crate::ssh::quote(PERL_CLIENT)?
    ))
}

/// Reads what [`on_node_command`] printed: the reply's lines up to the empty line.
pub fn reply_lines(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .take_while(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn with_server(reply: &'static [u8]) -> Result<String, String> {
        let (client, mut server) = tokio::io::duplex(4096);
        let serve = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut seen = Vec::new();
            // Answer once the request's empty line arrived.
            while !seen.ends_with(b"\n\n") {
                let n = tokio::io::AsyncReadExt::read(&mut server, &mut buf)
                    .await
                    .unwrap();
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            server.write_all(reply).await.unwrap();
            drop(server);
            String::from_utf8(seen).unwrap()
        });
        let r = ask(client, "nobody@example.test", Duration::from_secs(5)).await;
        let seen = serve.await.unwrap();
        assert!(seen.starts_with("request=smtpd_access_policy\n"), "{seen}");
        assert!(
            seen.ends_with("recipient=nobody@example.test\n\n"),
            "{seen}"
        );
        r
    }

    #[tokio::test]
    async fn an_action_is_an_answer() {
        assert_eq!(
            with_server(b"action=dunno\n\n").await,
            Ok("action=dunno".to_string())
        );
        assert_eq!(
            with_server(b"action=reject 5.1.1 Mailbox unavailable\n\n").await,
            Ok("action=reject 5.1.1 Mailbox unavailable".to_string())
        );
    }

    #[tokio::test]
    async fn error_text_or_eof_is_evidence_of_a_broken_daemon() {
        let e = with_server(b"Can't open /x: Permission denied at y line 9.\n")
            .await
            .unwrap_err();
        assert!(e.contains("not a policy answer: Can't open /x"), "{e}");
        let e = with_server(b"").await.unwrap_err();
        assert!(e.contains("without an answer"), "{e}");
    }

    #[tokio::test]
    async fn silence_is_a_timeout() {
        let (client, _server) = tokio::io::duplex(4096);
        let e = ask(client, "a@b.c", Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(e.contains("no answer within"), "{e}");
    }
}
