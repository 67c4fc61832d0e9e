//! Gathering a fleet: one task per host (at most `forks` at once), each connecting once,
//! running the one gather exec and the SMTP probes over the same connection. Failures
//! are data: an unreachable host is a [`HostGather`] with an error, never the end of the run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt as _, StreamExt};
use tracing::Instrument as _;

use crate::carbonio::gather::{GatherPlan, NodeFacts};
use crate::engine::events::{Event, Events};
use crate::engine::smtp;
use crate::engine::verdict::SmtpOutcome;
use crate::inventory::Host;
use crate::playbook::{Playbook, ProbeKind};
use crate::report::model::{ErrorKind, HostError};
use crate::ssh::{Connector, ExecEnd, FailureKind, RunAs, Session};

/// What the gather of one host produced.
pub struct HostGather {
    pub host: Host,
    pub outcome: Result<Gathered, HostError>,
    pub connect_time: Option<Duration>,
    pub gather_time: Option<Duration>,
    pub total_time: Duration,
    /// The connection, kept open for the steps that follow (apply).
    pub session: Option<Session>,
}

impl HostGather {
    /// A host that failed before (or instead of) its gather.
    pub fn failed(host: &Host, kind: ErrorKind, why: &str, total_time: Duration) -> HostGather {
        HostGather {
            host: host.clone(),
            outcome: Err(HostError::new(kind, why.to_string())),
            connect_time: None,
            gather_time: None,
            total_time,
            session: None,
        }
    }
}

/// Facts and out-of-band probe results of a reachable host.
pub struct Gathered {
    pub facts: NodeFacts,
    pub smtp: BTreeMap<String, SmtpOutcome>,
}

/// Settings for a gather pass.
pub struct GatherOptions {
    pub forks: usize,
    /// Keep each session open after the gather (apply reuses them).
    pub keep_sessions: bool,
    /// The run's interrupts: after the first no host starts, after the second the
    /// gathers in flight are abandoned; each such host fails as `interrupted`.
    pub interrupts: Option<crate::engine::interrupt::Interrupts>,
    /// Told each host's outcome as soon as its gather returns (the domain pass runs
    /// alongside the sweep); closed when the sweep is over.
    pub done: Option<tokio::sync::mpsc::UnboundedSender<crate::engine::domains::Gathered>>,
}

/// Maps a transport failure kind to the report's error kind.
pub fn error_kind(k: FailureKind) -> ErrorKind {
    match k {
        FailureKind::Hostkey => ErrorKind::Hostkey,
        FailureKind::Auth => ErrorKind::Auth,
        FailureKind::Unreachable => ErrorKind::Unreachable,
        FailureKind::Timeout => ErrorKind::Timeout,
        FailureKind::Command => ErrorKind::Command,
    }
}

/// Gathers every host, at most `forks` at once. Results come back in inventory order.
pub async fn gather_all(
    hosts: &[Host],
    playbook: &Playbook,
    plan: &GatherPlan,
    connector: &Connector,
    opts: &GatherOptions,
    events: &Events,
    nonce: &str,
) -> Vec<HostGather> {
    let plan = Arc::new(plan.clone());
    let mut results: Vec<(usize, HostGather)> = futures::stream::iter(hosts.iter().enumerate())
        .map(|(i, host)| {
            let plan = plan.clone();
            // A span per host: its live spinner, and the context of its log lines.
            let span = tracing::info_span!("host", host = %host.name, step = "gather");
            async move {
                let start = Instant::now();
                let interrupted = |why: &str| {
                    HostGather::failed(host, ErrorKind::Interrupted, why, start.elapsed())
                };
                if opts.interrupts.as_ref().is_some_and(|s| s.stop.is_cancelled()) {
                    return (i, interrupted("not checked: the run was interrupted before this host's turn"));
                }
                // One host's bug (a panic in its task) is that host's failure, never the
                // end of the run.
                let work = std::panic::AssertUnwindSafe(gather_one(
                    host,
                    playbook,
                    &plan,
                    connector,
                    opts.keep_sessions,
                    events,
                    nonce,
                ))
                .catch_unwind();
                let abandon = async {
                    match &opts.interrupts {
                        Some(s) => s.hard.cancelled().await,
                        None => std::future::pending().await,
                    }
                };
                let gathered = tokio::select! {
                    r = work => r.unwrap_or_else(|panic| {
                        HostGather::failed(
                            host,
                            ErrorKind::Command,
                            &format!("the tool's task for this host failed: {}", panic_text(&panic)),
                            start.elapsed(),
                        )
                    }),
                    () = abandon => interrupted("abandoned: the run was interrupted twice while this host was being checked"),
                };
                if let Some(done) = &opts.done {
                    // The domain pass may have nothing to do and be gone already.
                    let _ = done.send(crate::engine::domains::Gathered::of(i, &gathered));
                }
                (i, gathered)
            }
            .instrument(span)
        })
        .buffer_unordered(opts.forks.max(1))
        .collect()
        .await;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, g)| g).collect()
}

/// What a panic carried, for the report.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".to_string())
}

async fn gather_one(
    host: &Host,
    playbook: &Playbook,
    plan: &GatherPlan,
    connector: &Connector,
    keep_session: bool,
    events: &Events,
    nonce: &str,
) -> HostGather {
    let start = Instant::now();
    events.send(Event::HostStarted {
        host: host.name.clone(),
    });
    let fail = |e: HostError, connect_time, session| {
        events.send(Event::HostFailed {
            host: host.name.clone(),
            kind: e.kind.as_str().to_string(),
            message: e.message.clone(),
        });
        HostGather {
            host: host.clone(),
            outcome: Err(e),
            connect_time,
            gather_time: None,
            total_time: start.elapsed(),
            session,
        }
    };
    let session = match connector.connect(host).await {
        Ok(s) => s,
        Err(e) => {
            let (expected, offered) = match &e.detail {
                Some(d) => (d.expected.clone(), Some(d.offered.clone())),
                None => (Vec::new(), None),
            };
            return fail(
                HostError {
                    kind: error_kind(e.kind),
                    message: e.message.clone(),
                    expected_fingerprints: expected,
                    offered_fingerprint: offered,
                },
                None,
                None,
            );
        }
    };
    let connect_time = start.elapsed();
    events.send(Event::HostConnected {
        host: host.name.clone(),
        elapsed: connect_time,
    });
    let g0 = Instant::now();
    let outcome = gather_session(&session, host, playbook, plan, nonce).await;
    let gather_time = g0.elapsed();
    match outcome {
        Err(e) => fail(e, Some(connect_time), keep_session.then_some(session)),
        Ok(gathered) => {
            events.send(Event::HostGathered {
                host: host.name.clone(),
                elapsed: gather_time,
            });
            HostGather {
                host: host.clone(),
                outcome: Ok(gathered),
                connect_time: Some(connect_time),
                gather_time: Some(gather_time),
                total_time: start.elapsed(),
                session: keep_session.then_some(session),
            }
        }
    }
}

/// `flavour = "auto"`: the node's service user decides which product's gather runs
/// (`getent passwd` looks up the two names, nothing else), in the same exec: no extra
/// round trip.
/// zextras wins where both exist (a hand-made `zimbra` user on a Carbonio node). Written
/// in the remote-shell dialect (docs/remote-shell.md: no `if`), each branch guarded by
/// `test`; the exit status says whether a service user was found.
fn detecting_command(
    session: &Session,
    plan: &GatherPlan,
) -> Result<String, crate::ssh::ExecError> {
    use crate::flavour::Flavour;
    // One `getent passwd` for both names; it answers in the order asked, so the output
    // starts with `zextras:` exactly when that user exists, and is not empty when either
    // does.
    let (carbonio, zimbra) = (Flavour::Carbonio, Flavour::Zimbra);
    let mut s = format!(
        "u=$(getent passwd {cu} {zu} 2>/dev/null)\nf=none\ntest -n \"$u\" && f={zf}\ntest \"${{u#{cu}:}}\" != \"$u\" && f={cf}\n",
        cu = carbonio.user(),
        zu = zimbra.user(),
        zf = zimbra.as_str(),
        cf = carbonio.as_str(),
    );
    for f in Flavour::ALL {
        let script = plan.script(f);
        let mut run = session.wrap_as(f, RunAs::Service, script)?;
        // `become = "none"` sends the script as is: its lines must stay one command
        // behind the `test`, not run one by one.
        if run == script {
            run = format!(
                "/bin/sh -c {}",
                crate::ssh::quote(script).map_err(|source| crate::ssh::ExecError::Quote {
                    host: session.host_name().to_string(),
                    source,
                })?
            );
        }
        s.push_str(&format!("test \"$f\" = {} && {run}\n", f.as_str()));
    }
    s.push_str(&format!(
        "test \"$f\" = none && echo 'carbonio-fleet: neither a `{}` (Carbonio) nor a `{}` (Zimbra) user on this node; set `flavour` in the inventory' >&2\ntest \"$f\" != none\n",
        Flavour::Carbonio.user(),
        Flavour::Zimbra.user()
    ));
    Ok(s)
}

/// The gather exec and the SMTP probes on an open session.
pub async fn gather_session(
    session: &Session,
    host: &Host,
    playbook: &Playbook,
    plan: &GatherPlan,
    nonce: &str,
) -> Result<Gathered, HostError> {
    let command_error = |message: String| HostError::new(ErrorKind::Command, message);
    let exec_failed = |e: crate::ssh::ExecError| {
        HostError::new(error_kind(e.kind()), format!("gather failed: {e}"))
    };
    let command = match host.flavour.fixed() {
        Some(f) => session.wrap_as(f, RunAs::Service, plan.script(f)),
        None => detecting_command(session, plan),
    }
    .map_err(exec_failed)?;
    let out = session
        .exec_command(command, None, host.command_timeout)
        .await
        .map_err(exec_failed)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = match (&out.end, plan.parse(&stdout, &stderr)) {
        (ExecEnd::Status(_), Ok(facts)) => Ok(facts),
        (ExecEnd::Status(_), Err(e)) => Err(e.to_string()),
        (ExecEnd::Signal { name, .. }, _) => Err(format!("gather killed by signal {name}")),
        (ExecEnd::Unknown, _) => {
            Err("gather ended without an exit status (connection lost)".to_string())
        }
    };
    let facts = why.map_err(|why| {
        let tail = stderr.trim();
        command_error(if tail.is_empty() {
            why
        } else {
            format!("{why}; stderr: {}", last_lines(tail, 3))
        })
    })?;
    // Every later command as the service user is this product's.
    session.set_flavour(facts.flavour);
    let mut smtp_results = BTreeMap::new();
    if facts.is_mta() {
        for p in &playbook.probes {
            if let ProbeKind::Smtp { rcpt } = &p.kind {
                let Some(rcpt) = smtp_rcpt(rcpt.as_deref(), &facts, nonce) else {
                    continue;
                };
                smtp_results.insert(p.id.clone(), smtp_probe(session, &rcpt).await);
            }
        }
    }
    Ok(Gathered {
        facts,
        smtp: smtp_results,
    })
}

/// The recipient of an SMTP probe (the gather's and the health gate's): the playbook's
/// `rcpt` when it names one, else an unknown address in the node's probe domain; `None`
/// when there is neither (the probe is not applicable).
pub fn smtp_rcpt(playbook_rcpt: Option<&str>, facts: &NodeFacts, nonce: &str) -> Option<String> {
    match (playbook_rcpt, facts.probe_domain()) {
        (Some(r), _) => Some(r.to_string()),
        (None, Some(d)) => Some(probe_address(nonce, d)),
        (None, None) => None,
    }
}

/// An address that exists in no mailbox table: the recipient of every SMTP probe.
pub fn probe_address(nonce: &str, domain: &str) -> String {
    format!("cfleet-probe-{nonce}@{domain}")
}

/// SMTP probe from the node itself: a direct-tcpip channel to its 127.0.0.1:25.
pub async fn smtp_probe(session: &Session, rcpt: &str) -> SmtpOutcome {
    let vantage = "node (direct-tcpip to 127.0.0.1:25; a mynetworks client)".to_string();
    match session.direct_tcpip("127.0.0.1", 25).await {
        Err(e) => SmtpOutcome::Failed {
            message: format!("cannot open a channel to 127.0.0.1:25: {e}"),
            vantage,
        },
        Ok(stream) => {
            match smtp::probe(
                stream,
                "carbonio-fleet.probe",
                rcpt,
                Duration::from_secs(30),
            )
            .await
            {
                Ok(exchange) => SmtpOutcome::Done { exchange, vantage },
                Err(e) => SmtpOutcome::Failed {
                    message: e.to_string(),
                    vantage,
                },
            }
        }
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}
