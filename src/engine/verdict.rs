//! From gathered facts to verdicts: per control (compliant / non-compliant / masked by a
//! server override / not applicable), per probe, the precondition findings, and the
//! host's status. Pure: no I/O, so every rule is unit-tested on synthetic facts.

use std::collections::BTreeMap;

use crate::carbonio::flavour::Flavour;
use crate::carbonio::gather::NodeFacts;
use crate::carbonio::postfix;
use crate::carbonio::running::{Running, RunningState};
use crate::carbonio::values::{render, render_expectation, satisfies};
use crate::engine::smtp::{self, Exchange};
use crate::playbook::{Control, Playbook, Precondition, Probe, ProbeExpect, ProbeKind, Scope};
use crate::report::model::{
    ControlResult, Finding, HostStatus, ProbeResult, ProbeVerdict, Verdict, WaiverRef,
};

/// The finding id for a policy service whose spawn user is missing.
pub const SPAWN_USER_FINDING: &str = "PRE-POLICY-SPAWN-USER";

/// The finding id for a master.cf the running master has not loaded.
pub const NOT_LOADED_FINDING: &str = "RUN-NOT-LOADED";

/// The finding id for a running state the evidence cannot tell.
pub const RUNNING_UNKNOWN_FINDING: &str = "RUN-STATE-UNKNOWN";

/// The global config values a cluster's verdicts are computed from: read once per
/// cluster, on its first reachable node.
#[derive(Debug, Clone)]
pub struct ClusterGlobals {
    /// The node whose reading is used.
    pub read_on: String,
    pub values: BTreeMap<String, Vec<String>>,
}

/// The outcome of a probe that runs outside the gather (SMTP).
#[derive(Debug, Clone)]
pub enum SmtpOutcome {
    Done { exchange: Exchange, vantage: String },
    Failed { message: String, vantage: String },
}

/// Verdicts for one host.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub status: HostStatus,
    pub controls: Vec<ControlResult>,
    pub probes: Vec<ProbeResult>,
    pub findings: Vec<Finding>,
}

/// Whether a control concerns this node: MTA attributes only matter where Postfix runs.
pub fn applies(control: &Control, facts: &NodeFacts) -> bool {
    !control.attr.starts_with("zimbraMta") || facts.is_mta()
}

/// Evaluates one host. `waiver` says which waiver (of `--waivers`) names a control or
/// probe id on this host: a deviation (non-compliant, masked, failed) carries it, and a
/// live one does not make the host drift. Undecided results (`error`) and findings
/// (preconditions, blocks) are never waived.
// Longer than the usual ~120 lines on purpose: one reading of a host in the order the
// report shows it (running state, controls, the cluster's globals, probes, then the
// status from all of them), each step using the ones before.
pub fn evaluate(
    playbook: &Playbook,
    facts: &NodeFacts,
    globals: &ClusterGlobals,
    smtp_results: &BTreeMap<String, SmtpOutcome>,
    running: Option<&Running>,
    waiver: &dyn Fn(&str) -> Option<WaiverRef>,
) -> Evaluation {
    let mut findings = Vec::new();
    // Files are not the running Postfix: a master.cf change (the policy entry among them)
    // loads only at a master start or reload (CARBONIO.md §0.4).
    let running_off = match running.map(|r| (r.state, r)) {
        Some((RunningState::NotLoaded, r)) => {
            findings.push(Finding {
                id: NOT_LOADED_FINDING.into(),
                severity: "high".into(),
                blocking: false,
                message: "the running Postfix has not loaded master.cf: what `postconf` shows is not what the MTA does".into(),
                evidence: r.evidence.clone(),
                hint: "reload Postfix on this node (`carbonio-fleet apply` does)".into(),
            });
            true
        }
        Some((RunningState::Unknown, r)) => {
            findings.push(Finding {
                id: RUNNING_UNKNOWN_FINDING.into(),
                severity: "medium".into(),
                blocking: false,
                message: "running state unknown: the files are verified, the running Postfix is not".into(),
                evidence: r.evidence.clone(),
                hint: "a reload settles it (`carbonio-fleet apply`); once a run has seen master.cf loaded, later runs carry that forward while master.cf is unchanged".into(),
            });
            true
        }
        _ => false,
    };
    let controls: Vec<ControlResult> = playbook
        .controls
        .iter()
        .map(|c| {
            let mut r = control_result(c, facts, globals);
            if matches!(r.verdict, Verdict::NonCompliant | Verdict::Masked) {
                r.waiver = waiver(&r.id);
            }
            r
        })
        .collect();
    for c in &playbook.controls {
        if c.precondition == Some(Precondition::PolicySpawnUser) && applies(c, facts) {
            let effective = effective_values(c, facts, globals);
            if let Some(f) = spawn_user_finding(c, facts, satisfies(&c.expect, &effective)) {
                findings.push(f);
            }
        }
    }
    if facts.global != globals.values && globals.read_on != facts.hostname {
        let differs: Vec<&String> = facts
            .global
            .iter()
            .filter(|(k, v)| globals.values.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .collect();
        if !differs.is_empty() {
            findings.push(Finding {
                id: "INV-CLUSTER".into(),
                severity: "medium".into(),
                blocking: false,
                message: format!(
                    "this node's global config differs from the cluster's (read on `{}`) for {}",
                    globals.read_on,
                    differs
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                evidence: String::new(),
                hint: "nodes of one `cluster` must share one Carbonio LDAP; check the inventory"
                    .into(),
            });
        }
    }
    // `dns` probes concern a cluster's domains, not this node: they are reported in
    // the report's domain section.
    let host_probes: Vec<&Probe> = playbook
        .probes
        .iter()
        .filter(|p| !matches!(p.kind, ProbeKind::Dns { .. }))
        .collect();
    let probes: Vec<ProbeResult> = host_probes
        .iter()
        .map(|p| {
            let mut r = probe_result(p, facts, smtp_results);
            if r.verdict == ProbeVerdict::Fail {
                r.waiver = waiver(&r.id);
            }
            r
        })
        .collect();

    let control_off = controls.iter().any(|c| {
        matches!(
            c.verdict,
            Verdict::NonCompliant | Verdict::Masked | Verdict::Error
        ) && !c.is_waived()
    });
    let breaking_finding = findings
        .iter()
        .any(|f| f.id == SPAWN_USER_FINDING && f.severity == "critical");
    let failed_probes: Vec<&Probe> = host_probes
        .iter()
        .zip(&probes)
        .filter(|(_, r)| {
            matches!(r.verdict, ProbeVerdict::Fail | ProbeVerdict::Error) && !r.is_waived()
        })
        .map(|(p, _)| *p)
        .collect();
    let status = if control_off || breaking_finding {
        HostStatus::Drift
    } else if failed_probes.is_empty() && !running_off {
        HostStatus::Compliant
    } else if running_off
        || failed_probes
            .iter()
            .any(|p| matches!(p.kind, ProbeKind::Postconf { .. }))
    {
        HostStatus::RestartPending
    } else {
        HostStatus::Drift
    };
    Evaluation {
        status,
        controls,
        probes,
        findings,
    }
}

/// The values in force for this node: the server's own entry when it sets the attribute,
/// else the cluster's global value.
pub fn effective_values(c: &Control, facts: &NodeFacts, globals: &ClusterGlobals) -> Vec<String> {
    match facts.server.get(&c.attr) {
        Some(v) => v.clone(),
        None => global_values(c, facts, globals),
    }
}

/// The cluster's global value of the control's attribute (this node's own reading when
/// the cluster's is missing).
fn global_values(c: &Control, facts: &NodeFacts, globals: &ClusterGlobals) -> Vec<String> {
    globals
        .values
        .get(&c.attr)
        .or_else(|| facts.global.get(&c.attr))
        .cloned()
        .unwrap_or_default()
}

fn control_result(c: &Control, facts: &NodeFacts, globals: &ClusterGlobals) -> ControlResult {
    let global_values = global_values(c, facts, globals);
    let server_values = facts.server.get(&c.attr).cloned();
    let effective = effective_values(c, facts, globals);
    let (verdict, evidence) = if !applies(c, facts) {
        (
            Verdict::NotApplicable,
            format!(
                "not an MTA (zimbraServiceEnabled: {})",
                render(&facts.services)
            ),
        )
    } else if satisfies(&c.expect, &effective) {
        let ev = match &server_values {
            Some(_) => format!(
                "server entry of `{}` sets {} itself",
                facts.hostname, c.attr
            ),
            None => format!("global config (read on `{}`)", globals.read_on),
        };
        (Verdict::Compliant, ev)
    } else if server_values.is_some() && satisfies(&c.expect, &global_values) {
        (
            Verdict::Masked,
            format!(
                "global {} is {} but the server entry of `{}` overrides it with {} (zmprov -l gs -e {} {})",
                c.attr,
                render(&global_values),
                facts.hostname,
                render(&effective),
                facts.hostname,
                c.attr
            ),
        )
    } else {
        let place = if server_values.is_some() {
            format!("server entry of `{}`", facts.hostname)
        } else {
            format!("global config (read on `{}`)", globals.read_on)
        };
        (
            Verdict::NonCompliant,
            format!(
                "{}: {} is {}, expected {}",
                place,
                c.attr,
                render(&effective),
                render_expectation(&c.expect)
            ),
        )
    };
    ControlResult {
        id: c.id.clone(),
        title: c.title.clone(),
        attr: c.attr.clone(),
        scope: match c.scope {
            Scope::Global => "global".into(),
            Scope::Server => "server".into(),
        },
        severity: format!("{:?}", c.severity).to_lowercase(),
        expected: render_expectation(&c.expect),
        actual: render(&effective),
        global_values,
        server_values,
        verdict,
        evidence,
        before: None,
        after: None,
        changed: false,
        waiver: None,
    }
}

/// How to fix a spawn user that cannot work. Never "create `zimbra`": a hand-made user
/// cannot read localconfig.xml either (CARBONIO.md §0.2).
pub fn spawn_user_fix(flavour: Flavour) -> String {
    format!(
        "`carbonio-fleet apply --fix-spawn-user` does it: `user={user}` on the policy entry's continuation line of {tpl} (backed up first), then `{rewrite} mta` as {user}; {upgrade}",
        user = flavour.user(),
        tpl = flavour.master_template(),
        rewrite = flavour.configrewrite(),
        upgrade = match flavour {
            Flavour::Carbonio =>
                "a carbonio-mta upgrade restores `user=zimbra`, so re-apply it after every upgrade, before the next restart",
            Flavour::Zimbra =>
                "a zimbra-mta upgrade restores the package's template, so re-apply it after every upgrade, before the next restart",
        }
    )
}

/// The policy spawn-user precondition (SPEC §6.4, CARBONIO.md §0.2, §0.12): the user
/// exists AND can read localconfig.xml with the one group spawn gives it.
fn spawn_user_finding(c: &Control, facts: &NodeFacts, ldap_enabled: bool) -> Option<Finding> {
    use crate::carbonio::postfix::SpawnProblem;
    // The running entry works, the template does not: a carbonio-mta upgrade restored
    // the stock `user=zimbra`, and the next rewrite will render it (CARBONIO.md §0.2).
    if let (Some(active), Some(template)) = (&facts.policy_service, &facts.policy_template)
        && facts.running_spawn_problem().is_none()
        && let Some(problem) = facts.template_spawn_problem()
    {
        return Some(Finding {
            id: SPAWN_USER_FINDING.into(),
            severity: "critical".into(),
            blocking: true,
            message: format!(
                "master.cf.in no longer matches the running policy entry (a carbonio-mta upgrade restores `user=zimbra`): the running master.cf spawns as `{}`, but the next rewrite (zmconfigd, configrewrite, a restart) renders the template, and then {problem}; Postfix would answer `451 4.3.5` to every recipient that reaches the policy check",
                active.user.as_deref().unwrap_or("?")
            ),
            evidence: format!(
                "master.cf: {}; master.cf.in: {}",
                active.line, template.line
            ),
            hint: spawn_user_fix(facts.flavour),
        });
    }
    let problem = facts.spawn_problem()?;
    let evidence = facts
        .policy_spawn_evidence()
        .unwrap_or("no `policy unix … spawn` entry in master.cf or master.cf.in")
        .to_string();
    if matches!(
        problem,
        SpawnProblem::EntryNotFound | SpawnProblem::Unknown(_)
    ) {
        return Some(Finding {
            id: SPAWN_USER_FINDING.into(),
            severity: "high".into(),
            blocking: true,
            message: format!("{problem}, so {} ({}) is not changed here", c.id, c.attr),
            evidence,
            hint: format!(
                "check the policy entry in {} on this node",
                facts.flavour.master_template()
            ),
        });
    }
    let active = facts.policy_service.is_some();
    Some(if active {
        Finding {
            id: SPAWN_USER_FINDING.into(),
            severity: "critical".into(),
            blocking: true,
            message: format!(
                "the policy service is enabled and cannot start: {problem}. Postfix answers `451 4.3.5 Server configuration problem` to recipients that reach the policy check"
            ),
            evidence,
            hint: spawn_user_fix(facts.flavour),
        }
    } else {
        Finding {
            id: SPAWN_USER_FINDING.into(),
            severity: "high".into(),
            blocking: true,
            message: if ldap_enabled {
                format!(
                    "{} is enabled in LDAP and takes effect at the next restart, but the policy service could not start: {problem}. After a restart Postfix would answer `451 4.3.5` to every recipient",
                    c.attr
                )
            } else {
                format!(
                    "enabling {} here would make Postfix answer `451 4.3.5` to every recipient: {problem}",
                    c.attr
                )
            },
            evidence,
            hint: spawn_user_fix(facts.flavour),
        }
    })
}

/// The playbook's controls and probes as the report describes them once (id, what it
/// reads, the expectation as results write it, rationale and remediation).
pub fn check_catalog(playbook: &crate::playbook::Playbook) -> Vec<crate::report::model::CheckInfo> {
    use crate::report::model::CheckInfo;
    let controls = playbook.controls.iter().map(|c| CheckInfo {
        id: c.id.clone(),
        title: c.title.clone(),
        kind: "control".into(),
        severity: format!("{:?}", c.severity).to_lowercase(),
        reads: format!(
            "{} ({})",
            c.attr,
            match c.scope {
                Scope::Global => "global",
                Scope::Server => "server",
            }
        ),
        expected: render_expectation(&c.expect),
        rationale: c.rationale.clone(),
        remediation: c.remediation.clone(),
    });
    let probes = playbook.probes.iter().map(|p| CheckInfo {
        id: p.id.clone(),
        title: p.title.clone(),
        kind: "probe".into(),
        severity: format!("{:?}", p.severity).to_lowercase(),
        reads: match &p.kind {
            ProbeKind::Postconf { param } => format!("postconf {param}"),
            ProbeKind::Smtp { rcpt } => format!(
                "SMTP RCPT TO {}",
                rcpt.as_deref()
                    .unwrap_or("an unknown address in a hosted domain")
            ),
            ProbeKind::Command { command } => format!("command {command}"),
            ProbeKind::Dns { check } => format!("DNS {} of every hosted domain", check.as_str()),
        },
        expected: expect_text(&p.expect),
        rationale: p.rationale.clone(),
        remediation: p.remediation.clone(),
    });
    controls.chain(probes).collect()
}

fn expect_text(e: &Option<ProbeExpect>) -> String {
    match e {
        None => "(evidence only)".into(),
        Some(ProbeExpect::Equals(v)) => format!("= {v}"),
        Some(ProbeExpect::Contains(v)) => format!("contains {v}"),
        Some(ProbeExpect::Absent(v)) => format!("absent {v}"),
        Some(ProbeExpect::Reply(v)) => format!("reply {v}"),
    }
}

fn probe_result(
    p: &Probe,
    facts: &NodeFacts,
    smtp_results: &BTreeMap<String, SmtpOutcome>,
) -> ProbeResult {
    let mut r = ProbeResult {
        id: p.id.clone(),
        title: p.title.clone(),
        kind: String::new(),
        expected: expect_text(&p.expect),
        actual: String::new(),
        verdict: ProbeVerdict::Pass,
        evidence: String::new(),
        waiver: None,
    };
    match &p.kind {
        ProbeKind::Postconf { param } => {
            r.kind = "postconf".into();
            if !facts.is_mta() {
                r.verdict = ProbeVerdict::NotApplicable;
                r.evidence = "not an MTA".into();
                return r;
            }
            match facts.postconf.get(param) {
                None => {
                    r.verdict = ProbeVerdict::Error;
                    r.actual = "(not reported)".into();
                    r.evidence = format!("postconf did not print {param}");
                }
                Some(value) => {
                    r.actual = value.clone();
                    r.evidence = format!("{param} = {value}");
                    let items = postfix::list_items(value);
                    r.verdict = text_verdict(&p.expect, value, &items);
                }
            }
        }
        ProbeKind::Command { .. } => {
            r.kind = "command".into();
            match facts.commands.get(&p.id) {
                None => {
                    r.verdict = ProbeVerdict::Error;
                    r.evidence = "no output".into();
                }
                Some(sec) => {
                    r.actual = sec.output.trim().to_string();
                    r.evidence = format!("exit {}", sec.status);
                    let lines: Vec<String> = sec.output.lines().map(str::to_string).collect();
                    r.verdict = if sec.status != 0 && p.expect.is_none() {
                        ProbeVerdict::Fail
                    } else {
                        text_verdict(&p.expect, sec.output.trim(), &lines)
                    };
                }
            }
        }
        ProbeKind::Dns { check } => {
            r.kind = "dns".into();
            r.verdict = ProbeVerdict::NotApplicable;
            r.evidence = format!(
                "{} is checked per hosted domain (the report's domain section)",
                check.as_str()
            );
        }
        ProbeKind::Smtp { .. } => {
            r.kind = "smtp".into();
            if !facts.is_mta() {
                r.verdict = ProbeVerdict::NotApplicable;
                r.evidence = "not an MTA".into();
                return r;
            }
            match smtp_results.get(&p.id) {
                None => {
                    r.verdict = ProbeVerdict::NotApplicable;
                    r.evidence = "no local domain without a catch-all to probe (alias domains and catch-all addresses accept every recipient), and no playbook `rcpt`".into();
                }
                Some(SmtpOutcome::Failed { message, vantage }) => {
                    r.verdict = ProbeVerdict::Error;
                    r.actual = message.clone();
                    r.evidence = format!("vantage: {vantage}");
                }
                Some(SmtpOutcome::Done { exchange, vantage }) => {
                    let reply = exchange.deciding_reply();
                    r.actual = reply
                        .map(|r| format!("{} {}", r.code, r.text))
                        .unwrap_or_else(|| "(no reply)".into());
                    r.evidence = format!("vantage: {vantage}; {}", exchange.transcript.join(" | "));
                    r.verdict = match (&p.expect, reply) {
                        (Some(ProbeExpect::Reply(want)), Some(rep)) if exchange.rcpt.is_some() => {
                            if smtp::reply_matches(want, rep.code) {
                                ProbeVerdict::Pass
                            } else {
                                ProbeVerdict::Fail
                            }
                        }
                        (None, Some(_)) => ProbeVerdict::Pass,
                        _ => ProbeVerdict::Fail,
                    };
                }
            }
        }
    }
    r
}

fn text_verdict(expect: &Option<ProbeExpect>, whole: &str, items: &[String]) -> ProbeVerdict {
    let ok = match expect {
        None => true,
        Some(ProbeExpect::Equals(v)) => whole.trim() == v,
        Some(ProbeExpect::Contains(v)) => {
            items.iter().any(|i| i == v) || whole.contains(v.as_str())
        }
        Some(ProbeExpect::Absent(v)) => {
            !items.iter().any(|i| i == v) && !whole.contains(v.as_str())
        }
        Some(ProbeExpect::Reply(_)) => false,
    };
    if ok {
        ProbeVerdict::Pass
    } else {
        ProbeVerdict::Fail
    }
}

/// For a `postconf` probe: whether the effective value meets it (`Err` says what is
/// there instead). `None` for other probe kinds. Used by apply's health gate.
pub fn postconf_probe(
    p: &Probe,
    postconf: &BTreeMap<String, String>,
) -> Option<Result<(), String>> {
    let ProbeKind::Postconf { param } = &p.kind else {
        return None;
    };
    Some(match postconf.get(param) {
        None => Err(format!("postconf did not print {param}")),
        Some(value) => match text_verdict(&p.expect, value, &postfix::list_items(value)) {
            ProbeVerdict::Pass => Ok(()),
            _ => Err(format!(
                "{param} = {value} (want {})",
                expect_text(&p.expect)
            )),
        },
    })
}
