//! The SMTP probe: EHLO, `MAIL FROM:<>`, `RCPT TO:<addr>` (RSET between several), QUIT
//! over any byte stream (an
//! SSH direct-tcpip channel to the node's 127.0.0.1:25, or a TCP connection from the
//! orchestrator). The transcript is kept as evidence for the report.

use std::time::Duration;

use serde::Serialize;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt, BufReader,
};

/// One SMTP reply (the last line of a multi-line reply carries the final text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

/// What the probe saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exchange {
    /// `C: …` / `S: …` lines.
    pub transcript: Vec<String>,
    /// The answer to the first RCPT TO, when the dialogue got that far.
    pub rcpt: Option<Reply>,
    /// Every RCPT TO answer, in the order asked ([`probe_rcpts`]).
    pub rcpts: Vec<Reply>,
    /// The reply that ended the dialogue early (421 greeting, a refused MAIL FROM …).
    pub early: Option<Reply>,
}

impl Exchange {
    /// The reply that decides the probe: RCPT's, else the one that stopped it.
    pub fn deciding_reply(&self) -> Option<&Reply> {
        self.rcpt.as_ref().or(self.early.as_ref())
    }
}

/// Why the probe could not complete a dialogue at all.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("smtp i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("smtp server closed the connection")]
    Closed,
    #[error("smtp server sent a malformed reply line: {0:?}")]
    Malformed(String),
    #[error("smtp server did not answer within {0:?}")]
    Timeout(Duration),
    #[error(
        "refusing to send {0:?}: not one plain address or host name (control characters, spaces or angle brackets could inject SMTP commands)"
    )]
    Unsafe(String),
}

/// Runs the RCPT dialogue for `rcpt` with `helo` as EHLO name, each reply within `step`.
pub async fn probe<S>(
    stream: S,
    helo: &str,
    rcpt: &str,
    step: Duration,
) -> Result<Exchange, SmtpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    probe_rcpts(stream, helo, &[rcpt], step).await
}

/// Asks about each of `rcpts` in one session: EHLO, then per recipient `MAIL FROM:<>`,
/// `RCPT TO:<…>` and, before the next one, RSET; then QUIT. Never DATA: nothing is
/// ever delivered. `Exchange::rcpts` holds the RCPT replies in order (fewer when the
/// dialogue stopped early; `early` says why).
pub async fn probe_rcpts<S>(
    stream: S,
    helo: &str,
    rcpts: &[&str],
    step: Duration,
) -> Result<Exchange, SmtpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // A peer that answers each step just in time cannot hold the probe longer than this.
    let overall = step.saturating_mul(2);
    tokio::time::timeout(overall, dialogue(stream, helo, rcpts, step))
        .await
        .map_err(|_| SmtpError::Timeout(overall))?
}

async fn dialogue<S>(
    stream: S,
    helo: &str,
    rcpts: &[&str],
    step: Duration,
) -> Result<Exchange, SmtpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Addresses come from the playbook and from LDAP (hosted domains): nothing that is
    // not one plain token reaches the wire.
    if let Some(bad) = std::iter::once(&helo)
        .chain(rcpts)
        .find(|a| !crate::playbook::is_plain_token(a))
    {
        return Err(SmtpError::Unsafe(bad.to_string()));
    }
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    let mut ex = Exchange {
        transcript: Vec::new(),
        rcpt: None,
        rcpts: Vec::new(),
        early: None,
    };
    let greet = read_reply(&mut r, &mut ex, step).await?;
    if greet.code != 220 {
        ex.early = Some(greet);
        return Ok(ex);
    }
    let mut cmds: Vec<(String, bool)> = vec![(format!("EHLO {helo}"), false)];
    for (i, rcpt) in rcpts.iter().enumerate() {
        if i > 0 {
            cmds.push(("RSET".to_string(), false));
        }
        cmds.push(("MAIL FROM:<>".to_string(), false));
        cmds.push((format!("RCPT TO:<{rcpt}>"), true));
    }
    for (cmd, is_rcpt) in cmds {
        ex.transcript.push(format!("C: {cmd}"));
        w.write_all(format!("{cmd}\r\n").as_bytes()).await?;
        w.flush().await?;
        let reply = read_reply(&mut r, &mut ex, step).await?;
        if is_rcpt {
            if ex.rcpt.is_none() {
                ex.rcpt = Some(reply.clone());
            }
            ex.rcpts.push(reply);
            continue;
        }
        if !(200..300).contains(&reply.code) {
            ex.early = Some(reply);
            break;
        }
    }
    ex.transcript.push("C: QUIT".to_string());
    // QUIT is a courtesy: the verdict is already decided, so its failure is not.
    if w.write_all(b"QUIT\r\n").await.is_ok() && w.flush().await.is_ok() {
        let _ = read_reply(&mut r, &mut ex, step).await;
    }
    let _ = w.shutdown().await;
    Ok(ex)
}

/// The longest reply line RFC 5321 §4.5.3.1.5 allows (512 octets with CRLF); a longer
/// one is a malformed reply, never read further into memory.
pub const MAX_LINE: usize = 512;
/// Continuation lines accepted in one reply (Postfix's EHLO reply has about a dozen).
pub const MAX_CONTINUATIONS: usize = 100;

async fn read_reply<R>(r: &mut R, ex: &mut Exchange, step: Duration) -> Result<Reply, SmtpError>
where
    R: AsyncBufReadExt + Unpin,
{
    for _ in 0..=MAX_CONTINUATIONS {
        let mut raw = Vec::new();
        // One byte past the limit tells a too-long line from one that just fits.
        let n = tokio::time::timeout(
            step,
            (&mut *r)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut raw),
        )
        .await
        .map_err(|_| SmtpError::Timeout(step))??;
        if n == 0 {
            return Err(SmtpError::Closed);
        }
        if raw.len() > MAX_LINE {
            let shown = String::from_utf8_lossy(&raw[..64]).into_owned();
            ex.transcript
                .push(format!("S: {shown}… (over {MAX_LINE} octets)"));
            return Err(SmtpError::Malformed(format!(
                "a reply line over {MAX_LINE} octets: {shown}…"
            )));
        }
        while raw.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            raw.pop();
        }
        let line = String::from_utf8_lossy(&raw).into_owned();
        ex.transcript.push(format!("S: {line}"));
        // Parsed on bytes: a multi-byte character where the code belongs is malformed,
        // not a panic.
        let code = match raw.get(..3) {
            Some(d) if d.iter().all(u8::is_ascii_digit) => {
                u16::from(d[0] - b'0') * 100 + u16::from(d[1] - b'0') * 10 + u16::from(d[2] - b'0')
            }
            _ => return Err(SmtpError::Malformed(line)),
        };
        match raw.get(3) {
            Some(b'-') => continue,
            None | Some(b' ') => {
                return Ok(Reply {
                    code,
                    text: line.get(4..).unwrap_or("").to_string(),
                });
            }
            _ => return Err(SmtpError::Malformed(line)),
        }
    }
    Err(SmtpError::Malformed(format!(
        "a reply of more than {MAX_CONTINUATIONS} continuation lines"
    )))
}

/// Whether `reply` matches an expectation like `5xx`, `55x` or `550`.
pub fn reply_matches(expect: &str, code: u16) -> bool {
    let code = code.to_string();
    expect.len() == 3
        && expect
            .chars()
            .zip(code.chars())
            .all(|(e, c)| e == 'x' || e == 'X' || e == c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn serve(mut s: tokio::io::DuplexStream, script: &'static [&'static str]) {
        let mut buf = vec![0u8; 1024];
        s.write_all(script[0].as_bytes()).await.unwrap();
        for answer in &script[1..] {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            s.write_all(answer.as_bytes()).await.unwrap();
        }
    }

    #[tokio::test]
    async fn rcpt_reply_is_captured() {
        let (a, b) = tokio::io::duplex(4096);
        let server = tokio::spawn(serve(
            b,
            &[
                "220 mx ESMTP Postfix\r\n",
                "250-mx\r\n250 PIPELINING\r\n",
                "250 2.1.0 Ok\r\n",
                "550 5.1.1 <x@example.com>: Recipient address rejected: User unknown in virtual mailbox table\r\n",
                "221 2.0.0 Bye\r\n",
            ],
        ));
        let ex = probe(a, "probe.local", "x@example.com", Duration::from_secs(5))
            .await
            .unwrap();
        server.await.unwrap();
        let r = ex.rcpt.clone().unwrap();
        assert_eq!(r.code, 550);
        assert!(r.text.starts_with("5.1.1"));
        assert_eq!(ex.transcript[0], "S: 220 mx ESMTP Postfix");
        assert!(
            ex.transcript
                .contains(&"C: RCPT TO:<x@example.com>".to_string())
        );
    }

    #[tokio::test]
    async fn several_recipients_are_asked_with_rset_between_and_never_data() {
        let (a, b) = tokio::io::duplex(4096);
        let server = tokio::spawn(serve(
            b,
            &[
                "220 mx ESMTP Postfix\r\n",
                "250 mx\r\n",
                "250 2.1.0 Ok\r\n",
                "250 2.1.5 Ok\r\n",
                "250 2.0.0 Ok\r\n",
                "250 2.1.0 Ok\r\n",
                "550 5.1.1 <u@alias.example>: Recipient address rejected: Mailbox unavailable\r\n",
                "221 2.0.0 Bye\r\n",
            ],
        ));
        let ex = probe_rcpts(
            a,
            "p",
            &["known@a.example", "u@alias.example"],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        server.await.unwrap();
        let codes: Vec<u16> = ex.rcpts.iter().map(|r| r.code).collect();
        assert_eq!(codes, [250, 550]);
        let sent: Vec<&str> = ex
            .transcript
            .iter()
            .filter_map(|l| l.strip_prefix("C: "))
            .collect();
        assert_eq!(
            sent,
            [
                "EHLO p",
                "MAIL FROM:<>",
                "RCPT TO:<known@a.example>",
                "RSET",
                "MAIL FROM:<>",
                "RCPT TO:<u@alias.example>",
                "QUIT"
            ]
        );
    }

    #[tokio::test]
    async fn a_multibyte_code_is_malformed_not_a_panic() {
        let (a, b) = tokio::io::duplex(4096);
        tokio::spawn(serve(b, &["22\u{e9} greeting\r\n"]));
        let e = probe(a, "p", "x@example.com", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(e, SmtpError::Malformed(ref l) if l == "22\u{e9} greeting"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn an_endless_line_is_cut_at_512_octets() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            // 64 MiB of one line, written as fast as the probe reads: it must stop early.
            let chunk = vec![b'2'; 1 << 16];
            for _ in 0..1024 {
                if b.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        });
        let e = probe(a, "p", "x@example.com", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(e, SmtpError::Malformed(ref m) if m.contains("over 512 octets")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn endless_continuations_are_refused() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            loop {
                if b.write_all(b"220-still here\r\n").await.is_err() {
                    return;
                }
            }
        });
        let e = probe(a, "p", "x@example.com", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(e, SmtpError::Malformed(ref m) if m.contains("continuation")),
            "{e}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_drip_is_bounded_by_the_overall_deadline() {
        let (a, mut b) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            // One continuation line just inside each step, forever.
            loop {
                tokio::time::sleep(Duration::from_secs(4)).await;
                if b.write_all(b"220-wait\r\n").await.is_err() {
                    return;
                }
            }
        });
        let e = probe(a, "p", "x@example.com", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(e, SmtpError::Timeout(d) if d == Duration::from_secs(10)),
            "{e}"
        );
    }

    #[tokio::test]
    async fn an_address_with_a_line_break_is_never_sent() {
        let (a, _b) = tokio::io::duplex(4096);
        let e = probe(a, "p", "x@a.example>\r\nDATA", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, SmtpError::Unsafe(_)), "{e}");
        let (a, _b) = tokio::io::duplex(4096);
        let e = probe(a, "p", "x@a.exam\rple", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, SmtpError::Unsafe(_)), "{e}");
    }

    #[tokio::test]
    async fn greeting_421_ends_early() {
        let (a, b) = tokio::io::duplex(4096);
        tokio::spawn(serve(b, &["421 4.3.2 Service not available\r\n"]));
        let ex = probe(a, "p", "x@example.com", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(ex.rcpt, None);
        assert_eq!(ex.deciding_reply().unwrap().code, 421);
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let (a, _b) = tokio::io::duplex(4096);
        let e = probe(a, "p", "x@example.com", Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(e, SmtpError::Timeout(_)));
    }

    #[test]
    fn reply_patterns() {
        assert!(reply_matches("5xx", 550));
        assert!(reply_matches("550", 550));
        assert!(!reply_matches("5xx", 451));
        assert!(!reply_matches("5xx", 250));
        assert!(reply_matches("55x", 554));
    }
}
