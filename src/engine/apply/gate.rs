//! The health gate after a reload or restart: the policy socket, the mail log, the
//! outside SMTP probe and the effective config, tried again until the health timeout.

use std::time::Duration;

use crate::carbonio::gather::EffectivePlan;
use crate::carbonio::services;
use crate::engine::smtp;
use crate::playbook::{Playbook, ProbeFrom, Rollout};
use crate::report::model::{GateCheck, GateRecord};
use crate::ssh::{ExecEnd, quote};

use super::execute::{Backoff, NodeCtx, not_rendered, read_effective};

/// How one gate attempt ended.
pub(super) enum GateTry {
    Pass,
    /// Not up yet (services starting, 421, refused): try again until the deadline.
    Retry,
    /// A definite failure (451, 250 for an unknown recipient, spawn user missing).
    Fail,
}

pub(super) async fn health_gate(
    node: &NodeCtx,
    rollout: &Rollout,
    playbook: &Playbook,
    eff: &EffectivePlan,
    log_offset: Option<u64>,
) -> GateRecord {
    let mut backoff = Backoff::new(rollout.health_timeout);
    let vantage = match rollout.probe_from {
        ProbeFrom::Node => "node (direct-tcpip to 127.0.0.1:25; a mynetworks client, permitted before the policy service is consulted)".to_string(),
        ProbeFrom::Orchestrator => format!("orchestrator (TCP to {}:25)", node.host.address),
    };
    let mut rec = GateRecord {
        passed: false,
        finished_at: String::new(),
        attempts: 0,
        checks: Vec::new(),
        vantage,
        smtp_transcript: Vec::new(),
    };
    loop {
        rec.attempts += 1;
        let (checks, transcript, verdict) =
            gate_once(node, rollout, playbook, eff, log_offset).await;
        rec.checks = checks;
        rec.smtp_transcript = transcript;
        rec.finished_at = jiff::Timestamp::now().to_string();
        match verdict {
            GateTry::Pass => {
                rec.passed = true;
                return rec;
            }
            GateTry::Fail => return rec,
            GateTry::Retry => {
                if !backoff.wait().await {
                    rec.checks.push(GateCheck {
                        name: "timeout".into(),
                        ok: false,
                        detail: format!(
                            "not healthy within health_timeout {}",
                            crate::duration::display(rollout.health_timeout)
                        ),
                    });
                    return rec;
                }
            }
        }
    }
}

/// The lines of a failing policy service or Postfix in a mail log (docs/carbonio.md §1; Postfix
/// `spawn/spawn.c`, `util/attr_clnt.c`, `util/attr_scan_plain.c`).
pub(super) const MAIL_LOG_FAILURES: [&str; 4] = [
    "unknown user name",
    "premature end-of-input on private/policy",
    "problem talking to server private/policy",
    "fatal:",
];

/// The mail log's size now (the gate reads what is written after it), or `None` when it
/// cannot be read (the check then says so).
pub(super) async fn mail_log_size(node: &NodeCtx) -> Option<u64> {
    let log = quote(node.session.flavour().mail_log()).ok()?;
    let o = node
        .session
        .exec(
            crate::ssh::RunAs::Service,
            &format!("stat -L -c %s {log}"),
            None,
            node.host.command_timeout,
        )
        .await
        .ok()?;
    String::from_utf8_lossy(&o.stdout).trim().parse().ok()
}

/// The mail log since the reload or restart: no line of THIS host (a log host collects
/// others' too) saying the policy service or Postfix failed. It never stands alone: the
/// policy socket is asked first.
/// This host's lines of the mail log written after `offset` that contain one of
/// `patterns` (the log may also hold other nodes' lines: a central log host).
pub(super) async fn log_lines_since(
    node: &NodeCtx,
    offset: u64,
    patterns: &[&str],
) -> Result<Vec<String>, String> {
    let log = node.session.flavour().mail_log();
    let q = quote(log).map_err(|e| format!("{log} cannot be quoted: {e}"))?;
    let patterns: String = patterns
        .iter()
        .map(|p| quote(p).map(|p| format!(" -e {p}")))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let script = format!("tail -c +{} {q} | grep -F{patterns}", offset + 1);
    let out = node
        .session
        .exec(
            crate::ssh::RunAs::Service,
            &script,
            None,
            node.host.command_timeout,
        )
        .await
        .map_err(|e| format!("cannot read {log}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = node.log_names.iter().map(String::as_str).collect();
    Ok(text
        .lines()
        .filter(|l| {
            crate::carbonio::running::host_of(l)
                .is_some_and(|h| crate::carbonio::running::is_this_host(h, &names))
        })
        .map(str::to_string)
        .collect())
}

pub(super) async fn mail_log_check(node: &NodeCtx, offset: u64) -> (GateCheck, GateTry) {
    let log = node.session.flavour().mail_log();
    let check = |ok: bool, detail: String| GateCheck {
        name: "mail-log".into(),
        ok,
        detail,
    };
    match log_lines_since(node, offset, &MAIL_LOG_FAILURES).await {
        Err(e) => (check(false, e), GateTry::Retry),
        Ok(mine) if mine.is_empty() => (
            check(
                true,
                format!("{log} since the reload: no policy or Postfix failure from this host"),
            ),
            GateTry::Pass,
        ),
        Ok(mine) => (
            check(
                false,
                format!("{log} since the reload: {}", mine.join(" | ")),
            ),
            GateTry::Fail,
        ),
    }
}

/// Whether the outside probe was outside `mynetworks`, from the client address Postfix
/// logged for it (see [`crate::engine::vantage`]).
pub(super) async fn vantage_check(
    node: &NodeCtx,
    offset: Option<u64>,
    local: Option<std::net::IpAddr>,
    facts: &crate::carbonio::gather::EffectiveFacts,
) -> (GateCheck, GateTry) {
    let check = |ok: bool, detail: String| GateCheck {
        name: "vantage".into(),
        ok,
        detail,
    };
    let log = node.session.flavour().mail_log();
    let Some(offset) = offset else {
        return (
            check(false, format!("vantage unverified: {log} cannot be read")),
            GateTry::Fail,
        );
    };
    let lines = match log_lines_since(node, offset, &[": connect from "]).await {
        Ok(l) => l,
        Err(e) => {
            return (
                check(false, format!("vantage unverified: {e}")),
                GateTry::Retry,
            );
        }
    };
    let logged = crate::engine::vantage::logged_clients(lines.iter().map(String::as_str));
    let Some(client) = crate::engine::vantage::probe_client(&logged, local) else {
        return (
            check(
                false,
                format!(
                    "vantage unverified: Postfix logged {} for the probe in {log} (connect from: {logged:?})",
                    if logged.is_empty() {
                        "no client"
                    } else {
                        "several clients"
                    }
                ),
            ),
            GateTry::Retry,
        );
    };
    let Some(mynetworks) = facts.postconf.get("mynetworks") else {
        return (
            check(
                false,
                "vantage unverified: postconf shows no mynetworks".into(),
            ),
            GateTry::Fail,
        );
    };
    match crate::engine::vantage::in_mynetworks(client, mynetworks) {
        Some(false) => (
            check(
                true,
                format!(
                    "Postfix logged the probe from {client}, outside mynetworks ({mynetworks})"
                ),
            ),
            GateTry::Pass,
        ),
        Some(true) => (
            check(
                false,
                format!(
                    "vantage invalid: Postfix logged the probe from {client}, inside mynetworks ({mynetworks}): permitted before the policy service is consulted, so this probe cannot see it fail; probe from a host outside mynetworks"
                ),
            ),
            GateTry::Fail,
        ),
        None => (
            check(
                false,
                format!(
                    "vantage unverified: {client} is not in mynetworks' addresses, but its lookups ({mynetworks}) cannot be evaluated here"
                ),
            ),
            GateTry::Fail,
        ),
    }
}

/// The gate's probe from outside `mynetworks` (`probe_from = "orchestrator"`), in one SMTP
/// session from this machine to the node's port 25: a known recipient must get 250 (a
/// `451 4.3.5` there is the policy service failing), an unknown one in a local domain and
/// one in an alias domain 5xx; RCPT only, RSET between, never DATA. The vantage is
/// verified first from what Postfix logged.
pub(super) async fn outside_probe(
    node: &NodeCtx,
    facts: &crate::carbonio::gather::EffectiveFacts,
) -> (Vec<GateCheck>, Vec<String>, GateTry) {
    let (mut checks, asked) = match probe_recipients(node) {
        Ok(x) => x,
        Err(checks) => return (checks, Vec::new(), GateTry::Fail),
    };
    if asked.is_empty() {
        return (checks, Vec::new(), GateTry::Pass);
    }
    let offset = mail_log_size(node).await;
    let rcpts: Vec<&str> = asked.iter().map(|(_, r)| r.as_str()).collect();
    let (ex, local) = match ask_outside(node, &rcpts).await {
        Ok(x) => x,
        Err(failed) => {
            checks.push(failed);
            return (checks, Vec::new(), GateTry::Retry);
        }
    };
    if ex.rcpts.len() < asked.len() {
        let (check, verdict) = stopped_early(&ex);
        checks.push(check);
        return (checks, ex.transcript, verdict);
    }
    let (v, verdict) = vantage_check(node, offset, local, facts).await;
    checks.push(v);
    if !matches!(verdict, GateTry::Pass) {
        return (checks, ex.transcript, verdict);
    }
    let mut overall = GateTry::Pass;
    for ((name, rcpt), r) in asked.iter().zip(&ex.rcpts) {
        let check = rcpt_check(name, rcpt, r);
        if !check.ok {
            overall = GateTry::Fail;
        }
        checks.push(check);
    }
    (checks, ex.transcript, overall)
}

/// A recipient the outside probe asks, with the name of its check.
type Asked = (&'static str, String);

/// The recipients the outside probe asks, each with the name of its check, and the checks
/// already decided for those it does not ask; `Err` with the failed `smtp-known` check
/// when the host's `known_rcpt` is not a plain address.
fn probe_recipients(node: &NodeCtx) -> Result<(Vec<GateCheck>, Vec<Asked>), Vec<GateCheck>> {
    let mut checks = Vec::new();
    let mut asked: Vec<Asked> = Vec::new();
    match &node.known_rcpt {
        Some(Ok(k)) => asked.push(("smtp-known", k.clone())),
        Some(Err(why)) => {
            checks.push(GateCheck {
                name: "smtp-known".into(),
                ok: false,
                detail: why.clone(),
            });
            return Err(checks);
        }
        None => checks.push(GateCheck {
            name: "smtp-known".into(),
            ok: true,
            detail: "not asked: no `known_rcpt` (playbook [rollout], or the host's inventory var)"
                .into(),
        }),
    }
    if let Some(u) = &node.rcpt {
        asked.push(("smtp", u.clone()));
    }
    match &node.alias_rcpt {
        Some(a) => asked.push(("smtp-alias", a.clone())),
        None => checks.push(GateCheck {
            name: "smtp-alias".into(),
            ok: true,
            detail: "not applicable: the cluster has no alias domain".into(),
        }),
    }
    Ok((checks, asked))
}

/// Connects to the node's port 25 and asks `rcpts` in one SMTP session: the exchange and
/// this end's address (what Postfix logs as the client), or the failed `smtp` check.
async fn ask_outside(
    node: &NodeCtx,
    rcpts: &[&str],
) -> Result<(smtp::Exchange, Option<std::net::IpAddr>), GateCheck> {
    let failed = |detail: String| GateCheck {
        name: "smtp".into(),
        ok: false,
        detail,
    };
    let stream = tokio::net::TcpStream::connect((node.host.address.as_str(), 25))
        .await
        .map_err(|e| failed(format!("{}:25: {e}", node.host.address)))?;
    let local = stream.local_addr().ok().map(|a| a.ip());
    let ex = smtp::probe_rcpts(
        stream,
        "carbonio-fleet.probe",
        rcpts,
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| failed(e.to_string()))?;
    Ok((ex, local))
}

/// The failed `smtp` check of a dialogue that ended before every recipient was asked: a
/// 421 (still starting) or no reply is tried again, any other early reply fails.
fn stopped_early(ex: &smtp::Exchange) -> (GateCheck, GateTry) {
    let (detail, verdict) = match &ex.early {
        Some(r) if r.code == 421 => (
            format!("{} {} (still starting)", r.code, r.text),
            GateTry::Retry,
        ),
        Some(r) => (
            format!("dialogue stopped: {} {}", r.code, r.text),
            GateTry::Fail,
        ),
        None => ("no reply".to_string(), GateTry::Retry),
    };
    (
        GateCheck {
            name: "smtp".into(),
            ok: false,
            detail,
        },
        verdict,
    )
}

/// The check `name` from the reply to one recipient: the known recipient must be
/// accepted, the unknown ones (local and alias domain) refused with a 5xx.
fn rcpt_check(name: &str, rcpt: &str, r: &smtp::Reply) -> GateCheck {
    let said = format!("RCPT TO:<{rcpt}> → {} {}", r.code, r.text);
    let (ok, detail) = match (name, r.code) {
        ("smtp-known", 200..=299) => (true, said),
        ("smtp-known", 400..=499) => (
            false,
            format!(
                "{said}: a known recipient deferred from outside mynetworks: the policy service is not answering (451 4.3.5 is smtpd_policy_service_default_action)"
            ),
        ),
        ("smtp-known", _) => (false, format!("{said}: a known recipient was refused")),
        (_, 500..=599) => (true, said),
        (_, 400..=499) => (false, format!("{said}: a temporary failure")),
        (_, _) => (
            false,
            format!("{said}: an unknown recipient was accepted (backscatter)"),
        ),
    };
    GateCheck {
        name: name.into(),
        ok,
        detail,
    }
}

/// The policy service asked on its socket, as smtpd asks it (docs/carbonio.md §2): a known
/// or local recipient must get `action=dunno` (or any action but a refusal of the whole
/// request), an unknown address in an alias domain `action=reject 5.1.1 …`. An error text
/// or EOF instead is a daemon that cannot start: the gate fails at once. A socket that
/// cannot be opened yet (the reload just made it) is tried again until the deadline.
pub(super) async fn policy_socket_check(
    node: &NodeCtx,
    rollout: &Rollout,
    facts: &crate::carbonio::gather::EffectiveFacts,
) -> (GateCheck, GateTry) {
    let check = |ok: bool, detail: String| GateCheck {
        name: "policy-socket".into(),
        ok,
        detail,
    };
    if !rollout.policy_socket {
        return (
            check(
                true,
                "not asked: `policy_socket = false` in the playbook".into(),
            ),
            GateTry::Pass,
        );
    }
    let Some(queue) = facts
        .postconf
        .get("queue_directory")
        .filter(|q| !q.is_empty())
    else {
        return (
            check(
                false,
                "postconf has no queue_directory: the socket cannot be found".into(),
            ),
            GateTry::Retry,
        );
    };
    let path = format!("{queue}/private/policy");
    let timeout = Duration::from_secs(30);
    let local = node.rcpt.clone().unwrap_or_else(|| "postmaster".into());
    let mut asked = vec![(local, false)];
    if let Some(a) = &node.alias_rcpt {
        asked.push((a.clone(), true));
    }
    let mut answers = Vec::new();
    let mut via = "";
    for (rcpt, must_reject) in asked {
        let answer = match node.session.direct_streamlocal(&path).await {
            Ok(stream) => crate::engine::policy_probe::ask(stream, &rcpt, timeout).await,
            // OpenSSH answers every failed open alike (no socket, no permission: private/
            // is 0700 postfix, forwarding off): ask on the node as root instead.
            Err(open) => match ask_on_node(node, &path, &rcpt, timeout).await {
                Some(answer) => {
                    via = " (asked on the node as root: direct-streamlocal was refused)";
                    answer
                }
                None => {
                    return (
                        check(
                            false,
                            format!(
                                "cannot open {path} ({open}), nor find it on the node as root; it exists only once the running master loaded the policy entry"
                            ),
                        ),
                        GateTry::Retry,
                    );
                }
            },
        };
        match answer {
            Ok(action) => {
                let rejects =
                    action.starts_with("action=reject 5") || action.starts_with("action=550");
                if must_reject && !rejects {
                    return (
                        check(
                            false,
                            format!(
                                "{rcpt} (unknown, alias domain): {action}, expected action=reject 5.1.1"
                            ),
                        ),
                        GateTry::Fail,
                    );
                }
                if !must_reject && rejects {
                    return (
                        check(
                            false,
                            format!("{rcpt}: {action}: the service refuses a local recipient"),
                        ),
                        GateTry::Fail,
                    );
                }
                answers.push(format!("{rcpt}: {action}"));
            }
            Err(why) => {
                return (
                    check(
                        false,
                        format!(
                            "{path}: {why}: the policy daemon cannot answer; Postfix answers 451 4.3.5"
                        ),
                    ),
                    GateTry::Fail,
                );
            }
        }
    }
    (
        check(true, format!("{path} answers{via}: {}", answers.join("; "))),
        GateTry::Pass,
    )
}

/// Asks the policy socket with the on-node client as root; `None` when that cannot run
/// or finds no socket (the caller tries again until its deadline).
pub(super) async fn ask_on_node(
    node: &NodeCtx,
    path: &str,
    rcpt: &str,
    timeout: Duration,
) -> Option<Result<String, String>> {
    use crate::engine::policy_probe;
    let script = policy_probe::on_node_command(path).ok()?;
    let request = policy_probe::request(rcpt);
    let o = node
        .session
        .exec(
            crate::ssh::RunAs::Root,
            &script,
            Some(request.as_bytes()),
            timeout,
        )
        .await
        .ok()?;
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    match o.end {
        // `test -S` found no socket, or become-root is not allowed.
        ExecEnd::Status(1) if stdout.trim().is_empty() && stderr.trim().is_empty() => None,
        ExecEnd::Status(0) => Some(policy_probe::judge(&policy_probe::reply_lines(&stdout))),
        _ if stderr.contains("connect ") || stderr.contains("a password is required") => None,
        _ => Some(Err(format!(
            "the on-node client failed: {}",
            stderr.trim().lines().last().unwrap_or("(no message)")
        ))),
    }
}

/// The gate's first check: the node's services are up.
async fn services_check(node: &NodeCtx) -> GateCheck {
    let st = services::status_step(node.platform);
    let svc = match node
        .session
        .exec(st.run_as, &st.script, None, node.host.command_timeout)
        .await
    {
        Ok(o) => {
            let code = match o.end {
                ExecEnd::Status(c) => Some(c),
                _ => None,
            };
            services::services_up(node.platform, &String::from_utf8_lossy(&o.stdout), code)
        }
        Err(e) => Err(e.to_string()),
    };
    GateCheck {
        name: "services".into(),
        ok: svc.is_ok(),
        detail: svc.err().unwrap_or_else(|| "up".into()),
    }
}

/// One attempt of the gate, its checks in order, each only once the one before passed:
/// the services, the effective config (and the policy service's spawn user, then its
/// socket), the mail log, then SMTP (from outside mynetworks, or from the node).
pub(super) async fn gate_once(
    node: &NodeCtx,
    rollout: &Rollout,
    playbook: &Playbook,
    eff: &EffectivePlan,
    log_offset: Option<u64>,
) -> (Vec<GateCheck>, Vec<String>, GateTry) {
    let mut checks = Vec::new();
    // 1. services up
    let services = services_check(node).await;
    let svc_ok = services.ok;
    checks.push(services);
    if !svc_ok {
        return (checks, Vec::new(), GateTry::Retry);
    }
    // 2. effective Postfix config and the policy service's spawn user
    let facts = match read_effective(node, eff).await {
        Ok(f) => f,
        Err(e) => {
            checks.push(GateCheck {
                name: "postconf".into(),
                ok: false,
                detail: e,
            });
            return (checks, Vec::new(), GateTry::Retry);
        }
    };
    let mismatches = not_rendered(node, playbook, &facts);
    let pc_ok = mismatches.is_empty();
    checks.push(GateCheck {
        name: "postconf".into(),
        ok: pc_ok,
        detail: if pc_ok {
            "effective config matches LDAP".into()
        } else {
            mismatches.join("; ")
        },
    });
    if let Some(line) = &facts.policy_service {
        let problem = facts.spawn_problem();
        let ok = problem.is_none();
        let user = line.user.clone().unwrap_or_default();
        checks.push(GateCheck {
            name: "policy".into(),
            ok,
            detail: match problem {
                None => format!(
                    "policy service spawns as `{user}`, which exists and can read localconfig.xml"
                ),
                Some(p) => format!("{p}: Postfix answers 451 4.3.5 ({})", line.line),
            },
        });
        if !ok {
            return (checks, Vec::new(), GateTry::Fail);
        }
        match policy_socket_check(node, rollout, &facts).await {
            (check, GateTry::Pass) => checks.push(check),
            (check, verdict) => {
                checks.push(check);
                return (checks, Vec::new(), verdict);
            }
        }
    }
    if let Some(offset) = log_offset {
        let (check, verdict) = mail_log_check(node, offset).await;
        checks.push(check);
        if !matches!(verdict, GateTry::Pass) {
            return (checks, Vec::new(), verdict);
        }
    }
    if !pc_ok {
        return (checks, Vec::new(), GateTry::Retry);
    }
    // 3. SMTP. From outside mynetworks: vantage, known, unknown and alias recipients.
    if rollout.probe_from == ProbeFrom::Orchestrator && !node.old_values {
        let (mut more, transcript, verdict) = outside_probe(node, &facts).await;
        checks.append(&mut more);
        return (checks, transcript, verdict);
    }
    let (check, transcript, verdict) = smtp_check(node, rollout).await;
    checks.push(check);
    (checks, transcript, verdict)
}

/// The gate's SMTP check from the node (or, `probe_from = "orchestrator"` on the old
/// values, from here): an unknown recipient in a hosted domain must be rejected with 5xx.
async fn smtp_check(node: &NodeCtx, rollout: &Rollout) -> (GateCheck, Vec<String>, GateTry) {
    let Some(rcpt) = &node.rcpt else {
        let check = GateCheck {
            name: "smtp".into(),
            ok: true,
            detail: "skipped: no playbook `rcpt` and no local domain without a catch-all to probe"
                .into(),
        };
        return (check, Vec::new(), GateTry::Pass);
    };
    let step = Duration::from_secs(30);
    let exchange = match rollout.probe_from {
        ProbeFrom::Node => match node.session.direct_tcpip("127.0.0.1", 25).await {
            Ok(s) => smtp::probe(s, "carbonio-fleet.probe", rcpt, step)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        ProbeFrom::Orchestrator => {
            match tokio::net::TcpStream::connect((node.host.address.as_str(), 25)).await {
                Ok(s) => smtp::probe(s, "carbonio-fleet.probe", rcpt, step)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    match exchange {
        Err(e) => {
            let check = GateCheck {
                name: "smtp".into(),
                ok: false,
                detail: e,
            };
            (check, Vec::new(), GateTry::Retry)
        }
        Ok(ex) => {
            let reply = ex.deciding_reply().cloned();
            let (ok, verdict, detail) = match (&ex.rcpt, reply) {
                (Some(r), _) if (500..600).contains(&r.code) => (
                    true,
                    GateTry::Pass,
                    format!("RCPT TO:<{rcpt}> → {} {}", r.code, r.text),
                ),
                (Some(r), _) if node.old_values && (200..300).contains(&r.code) => (
                    true,
                    GateTry::Pass,
                    format!(
                        "RCPT TO:<{rcpt}> → {} {} (the old values, restored by the rollback, accept it as before)",
                        r.code, r.text
                    ),
                ),
                (_, Some(r)) if r.code == 421 => (
                    false,
                    GateTry::Retry,
                    format!("{} {} (still starting)", r.code, r.text),
                ),
                (Some(r), _) if (400..500).contains(&r.code) => (
                    false,
                    GateTry::Fail,
                    format!(
                        "RCPT TO:<{rcpt}> → {} {}: a temporary failure for every recipient",
                        r.code, r.text
                    ),
                ),
                (Some(r), _) => (
                    false,
                    GateTry::Fail,
                    format!(
                        "RCPT TO:<{rcpt}> → {} {}: an unknown recipient was accepted (backscatter)",
                        r.code, r.text
                    ),
                ),
                (None, Some(r)) => (
                    false,
                    GateTry::Retry,
                    format!("dialogue stopped: {} {}", r.code, r.text),
                ),
                (None, None) => (false, GateTry::Retry, "no reply".into()),
            };
            let check = GateCheck {
                name: "smtp".into(),
                ok,
                detail,
            };
            (check, ex.transcript, verdict)
        }
    }
}
