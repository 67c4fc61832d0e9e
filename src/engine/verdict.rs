//! From gathered facts to verdicts: per control (compliant / non-compliant / masked by a
//! server override / not applicable), per probe, the precondition findings, and the
//! host's status. Pure: no I/O; each rule has a case table in `tests` below, on
//! synthetic facts.

use std::collections::BTreeMap;

use crate::carbonio::gather::NodeFacts;
use crate::carbonio::postfix;
use crate::carbonio::running::{Running, RunningState};
use crate::carbonio::values::{render, render_expectation, satisfies};
use crate::engine::smtp::{self, Exchange};
use crate::flavour::Flavour;
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
// long: longer than the usual ~120 lines on purpose: one reading of a host in the order the
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
    // loads only at a master start or reload (docs/carbonio.md §3).
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
/// cannot read localconfig.xml either (docs/carbonio.md §1).
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

/// The policy spawn-user precondition (docs/carbonio.md §1): the user
/// exists AND can read localconfig.xml with the one group spawn gives it.
fn spawn_user_finding(c: &Control, facts: &NodeFacts, ldap_enabled: bool) -> Option<Finding> {
    use crate::carbonio::postfix::SpawnProblem;
    // The running entry works, the template does not: a carbonio-mta upgrade restored
    // the stock `user=zimbra`, and the next rewrite will render it (docs/carbonio.md §1).
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

/// One case table per rule: each row is an input and the verdict, finding or status the
/// rule must give for it. Facts are synthetic (no gather parsing), so a row fails only
/// when the rule it names changes.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::carbonio::gather::Section;
    use crate::carbonio::platform::Platform;
    use crate::carbonio::postfix::{SpawnAccess, SpawnLine, SpawnLookup};
    use crate::carbonio::running::RunningFacts;
    use crate::engine::smtp::Reply;
    use crate::playbook::{DnsCheck, Expectation, Severity};
    use test_case::test_case;

    const POLICYD: &str = "zimbraMtaEnableSmtpdPolicyd";
    const RESTRICTION: &str = "zimbraMtaRestriction";
    const READER: &str = "mx0.example";

    fn vals(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn control(attr: &str, expect: Expectation) -> Control {
        Control {
            id: "C-1".into(),
            title: "a control".into(),
            attr: attr.into(),
            scope: Scope::Global,
            expect,
            severity: Severity::High,
            restart: true,
            precondition: None,
            rationale: String::new(),
            remediation: String::new(),
        }
    }

    fn policyd_control() -> Control {
        Control {
            precondition: Some(Precondition::PolicySpawnUser),
            ..control(POLICYD, Expectation::Equals("TRUE".into()))
        }
    }

    fn spawn_line(user: &str, active: bool) -> SpawnLine {
        SpawnLine {
            line: format!(
                "policy unix - n n - 0 spawn user={user} argv=/opt/zextras/libexec/zmpostfixpolicyd"
            ),
            user: Some(user.into()),
            group: None,
            active,
        }
    }

    /// A Carbonio MTA whose policy service is off, with a template entry spawning as
    /// `zextras`, which exists and owns localconfig.xml (0640).
    fn facts() -> NodeFacts {
        NodeFacts {
            flavour: Flavour::Carbonio,
            platform: Platform::Systemd,
            version: Some("25.9.0".into()),
            hostname: "mx1.example".into(),
            services: vals(&["mta"]),
            global: BTreeMap::new(),
            server: BTreeMap::new(),
            domains: Vec::new(),
            local_domains: Vec::new(),
            catch_alls: Vec::new(),
            mta_servers: Vec::new(),
            postconf: BTreeMap::new(),
            policy_service: None,
            policy_template: Some(spawn_line("zextras", false)),
            spawn: SpawnAccess {
                lookups: vec![
                    SpawnLookup {
                        looked_up: "zextras".into(),
                        user: Some((997, 997)),
                        group: None,
                    },
                    SpawnLookup {
                        looked_up: "zimbra".into(),
                        user: None,
                        group: None,
                    },
                ],
                localconfig: Some((997, 997, 0o640)),
            },
            commands: BTreeMap::new(),
            platform_evidence: String::new(),
            running: RunningFacts {
                now: None,
                year: None,
                offset: None,
                uname: None,
                master_cf_mtime: Err("not read".into()),
                masters: Vec::new(),
                log_events: Err("not read".into()),
                log_head: None,
            },
        }
    }

    fn not_mta(mut f: NodeFacts) -> NodeFacts {
        f.services = vals(&["mailbox"]);
        f
    }

    fn globals(values: &[(&str, &[&str])]) -> ClusterGlobals {
        ClusterGlobals {
            read_on: READER.into(),
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), vals(v)))
                .collect(),
        }
    }

    fn playbook(controls: Vec<Control>, probes: Vec<Probe>) -> Playbook {
        Playbook {
            controls,
            probes,
            ..crate::playbook::load_default()
        }
    }

    fn live_waiver(expired: bool) -> WaiverRef {
        WaiverRef {
            justification: "accepted".into(),
            expires: "2099-12-31".into(),
            source: "waivers.toml:3".into(),
            scope: "host mx1.example".into(),
            approved_by: None,
            expired,
        }
    }

    fn no_waiver(_: &str) -> Option<WaiverRef> {
        None
    }

    // --- control verdicts: global vs server entry, masking, not applicable ---

    /// `global`: the cluster's value; `server`: this server's own entry, if it sets one.
    #[test_case(Expectation::Equals("TRUE".into()), &["TRUE"], None, true
        => (Verdict::Compliant, "TRUE".to_string(), "global config (read on `mx0.example`)".to_string()); "global value meets it")]
    #[test_case(Expectation::Equals("TRUE".into()), &["FALSE"], Some(&["TRUE"]), true
        => (Verdict::Compliant, "TRUE".to_string(), "server entry of `mx1.example` sets zimbraMtaEnableSmtpdPolicyd itself".to_string()); "server entry meets it over a wrong global")]
    #[test_case(Expectation::Equals("TRUE".into()), &["TRUE"], Some(&["FALSE"]), true
        => (Verdict::Masked, "FALSE".to_string(), "global zimbraMtaEnableSmtpdPolicyd is TRUE but the server entry of `mx1.example` overrides it with FALSE (zmprov -l gs -e mx1.example zimbraMtaEnableSmtpdPolicyd)".to_string()); "server entry masks a right global")]
    #[test_case(Expectation::Equals("TRUE".into()), &["FALSE"], Some(&["FALSE"]), true
        => (Verdict::NonCompliant, "FALSE".to_string(), "server entry of `mx1.example`: zimbraMtaEnableSmtpdPolicyd is FALSE, expected = TRUE".to_string()); "server entry and global both wrong")]
    #[test_case(Expectation::Equals("TRUE".into()), &["FALSE"], None, true
        => (Verdict::NonCompliant, "FALSE".to_string(), "global config (read on `mx0.example`): zimbraMtaEnableSmtpdPolicyd is FALSE, expected = TRUE".to_string()); "global value wrong")]
    #[test_case(Expectation::Equals("TRUE".into()), &[], None, true
        => (Verdict::NonCompliant, "(unset)".to_string(), "global config (read on `mx0.example`): zimbraMtaEnableSmtpdPolicyd is (unset), expected = TRUE".to_string()); "unset is not TRUE")]
    #[test_case(Expectation::Equals("TRUE".into()), &["TRUE", "FALSE"], None, true
        => (Verdict::NonCompliant, "[TRUE, FALSE]".to_string(), "global config (read on `mx0.example`): zimbraMtaEnableSmtpdPolicyd is [TRUE, FALSE], expected = TRUE".to_string()); "equals wants exactly one value")]
    #[test_case(Expectation::Equals("TRUE".into()), &["FALSE"], None, false
        => (Verdict::NotApplicable, "FALSE".to_string(), "not an MTA (zimbraServiceEnabled: mailbox)".to_string()); "MTA attribute on a non-MTA node")]
    fn control_verdict(
        expect: Expectation,
        global: &[&str],
        server: Option<&[&str]>,
        mta: bool,
    ) -> (Verdict, String, String) {
        let c = control(POLICYD, expect);
        let mut f = if mta { facts() } else { not_mta(facts()) };
        if let Some(s) = server {
            f.server.insert(POLICYD.into(), vals(s));
        }
        let r = control_result(&c, &f, &globals(&[(POLICYD, global)]));
        (r.verdict, r.actual, r.evidence)
    }

    #[test_case(Expectation::Contains("b".into()), &["a", "b"] => Verdict::Compliant; "contains: one of the values")]
    #[test_case(Expectation::Contains("b".into()), &["a", "bb"] => Verdict::NonCompliant; "contains: whole values only")]
    #[test_case(Expectation::Absent("b".into()), &["a"] => Verdict::Compliant; "absent: not among them")]
    #[test_case(Expectation::Absent("b".into()), &["a", "b"] => Verdict::NonCompliant; "absent: present")]
    #[test_case(Expectation::Absent("b".into()), &[] => Verdict::Compliant; "absent: unset")]
    fn multi_valued_verdict(expect: Expectation, global: &[&str]) -> Verdict {
        let c = control(RESTRICTION, expect);
        control_result(&c, &facts(), &globals(&[(RESTRICTION, global)])).verdict
    }

    /// Only `zimbraMta*` attributes are MTA-only.
    #[test_case("zimbraMtaRestriction", false => false; "MTA attribute, not an MTA")]
    #[test_case("zimbraMtaRestriction", true => true; "MTA attribute, an MTA")]
    #[test_case("zimbraSpamCheckEnabled", false => true; "other attribute, not an MTA")]
    fn applies_where(attr: &str, mta: bool) -> bool {
        let f = if mta { facts() } else { not_mta(facts()) };
        applies(&control(attr, Expectation::Equals("x".into())), &f)
    }

    /// The value in force: the server entry, else the cluster's global, else the node's
    /// own global reading, else unset.
    #[test_case(Some(&["S"]), Some(&["G"]), Some(&["N"]) => vals(&["S"]); "server entry wins")]
    #[test_case(None, Some(&["G"]), Some(&["N"]) => vals(&["G"]); "cluster global next")]
    #[test_case(None, None, Some(&["N"]) => vals(&["N"]); "node's own global reading when the cluster's lacks it")]
    #[test_case(None, None, None => Vec::<String>::new(); "unset")]
    fn effective(
        server: Option<&[&str]>,
        cluster: Option<&[&str]>,
        own: Option<&[&str]>,
    ) -> Vec<String> {
        let mut f = facts();
        if let Some(v) = server {
            f.server.insert(POLICYD.into(), vals(v));
        }
        if let Some(v) = own {
            f.global.insert(POLICYD.into(), vals(v));
        }
        let g = match cluster {
            Some(v) => globals(&[(POLICYD, v)]),
            None => globals(&[]),
        };
        effective_values(&control(POLICYD, Expectation::Equals("x".into())), &f, &g)
    }

    // --- the policy spawn-user precondition ---

    enum Spawn {
        /// Template spawns as zextras (exists, reads localconfig.xml).
        Fine,
        /// Template spawns as `zimbra` (missing), service off.
        TemplateMissing,
        /// Running entry spawns as `zimbra` (missing).
        ActiveMissing,
        /// Running entry fine (zextras), template back to `zimbra` (an upgrade).
        TemplateReverted,
        /// No policy entry anywhere.
        NoEntry,
        /// The node looked up another user than the entry names.
        LookedUpOther,
        /// Running entry as zextras, but localconfig.xml is 0600 root:root.
        ActiveCannotRead,
    }

    /// (severity, blocking) of the PRE-POLICY-SPAWN-USER finding; its message must
    /// start with `says`.
    #[test_case(Spawn::Fine, &["FALSE"], true, "" => None; "spawn user fine")]
    #[test_case(Spawn::TemplateMissing, &["FALSE"], false, "" => None; "not an MTA")]
    #[test_case(Spawn::TemplateMissing, &["FALSE"], true,
        "enabling zimbraMtaEnableSmtpdPolicyd here would make Postfix answer `451 4.3.5` to every recipient: spawn user missing: `zimbra`"
        => Some(("high", true)); "off, template user missing")]
    #[test_case(Spawn::TemplateMissing, &["TRUE"], true,
        "zimbraMtaEnableSmtpdPolicyd is enabled in LDAP and takes effect at the next restart, but the policy service could not start: spawn user missing"
        => Some(("high", true)); "enabled in LDAP, not running, user missing")]
    #[test_case(Spawn::ActiveMissing, &["TRUE"], true,
        "the policy service is enabled and cannot start: spawn user missing: `zimbra`"
        => Some(("critical", true)); "running entry's user missing")]
    #[test_case(Spawn::ActiveCannotRead, &["TRUE"], true,
        "the policy service is enabled and cannot start: spawn user cannot read localconfig.xml: `zextras` runs as uid 997 with the one group 997"
        => Some(("critical", true)); "running user cannot read localconfig")]
    #[test_case(Spawn::TemplateReverted, &["TRUE"], true,
        "master.cf.in no longer matches the running policy entry"
        => Some(("critical", true)); "template reverted by an upgrade")]
    #[test_case(Spawn::NoEntry, &["FALSE"], true,
        "policy entry not found"
        => Some(("high", true)); "no entry")]
    #[test_case(Spawn::LookedUpOther, &["FALSE"], true,
        "cannot tell which user spawns the policy service"
        => Some(("high", true)); "lookup disagrees with the entry")]
    fn spawn_finding(
        spawn: Spawn,
        ldap: &[&str],
        mta: bool,
        says: &str,
    ) -> Option<(&'static str, bool)> {
        let mut f = if mta { facts() } else { not_mta(facts()) };
        match spawn {
            Spawn::Fine => {}
            Spawn::TemplateMissing => f.policy_template = Some(spawn_line("zimbra", false)),
            Spawn::ActiveMissing => f.policy_service = Some(spawn_line("zimbra", true)),
            Spawn::TemplateReverted => {
                f.policy_service = Some(spawn_line("zextras", true));
                f.policy_template = Some(spawn_line("zimbra", false));
            }
            Spawn::NoEntry => f.policy_template = None,
            Spawn::LookedUpOther => f.policy_template = Some(spawn_line("postfix", false)),
            Spawn::ActiveCannotRead => {
                f.policy_service = Some(spawn_line("zextras", true));
                f.spawn.localconfig = Some((0, 0, 0o600));
            }
        }
        let pb = playbook(vec![policyd_control()], Vec::new());
        let e = evaluate(
            &pb,
            &f,
            &globals(&[(POLICYD, ldap)]),
            &BTreeMap::new(),
            None,
            &no_waiver,
        );
        let found: Vec<&Finding> = e
            .findings
            .iter()
            .filter(|x| x.id == SPAWN_USER_FINDING)
            .collect();
        assert!(found.len() <= 1, "one spawn finding at most: {found:?}");
        let x = found.first()?;
        assert!(x.message.starts_with(says), "{}", x.message);
        let severity = match x.severity.as_str() {
            "critical" => "critical",
            "high" => "high",
            other => panic!("unexpected severity {other}"),
        };
        Some((severity, x.blocking))
    }

    /// The fix named for a spawn user that cannot work is the product's own user, never
    /// "create `zimbra`".
    #[test_case(Flavour::Carbonio => (true, true, false); "carbonio")]
    #[test_case(Flavour::Zimbra => (false, true, true); "zimbra")]
    fn spawn_fix_names_the_products_user(flavour: Flavour) -> (bool, bool, bool) {
        let hint = spawn_user_fix(flavour);
        (
            hint.contains("`user=zextras`"),
            hint.contains(flavour.master_template()),
            hint.contains("`user=zimbra` on the policy entry"),
        )
    }

    // --- cluster consistency ---

    /// INV-CLUSTER: a node (not the one the cluster was read on) whose own global reading
    /// differs from the cluster's, naming the attributes.
    #[test_case("mx1.example", &["TRUE"], &["TRUE"] => None; "same values")]
    #[test_case("mx1.example", &["FALSE"], &["TRUE"]
        => Some("this node's global config differs from the cluster's (read on `mx0.example`) for zimbraMtaEnableSmtpdPolicyd".to_string()); "differs")]
    #[test_case("mx0.example", &["FALSE"], &["TRUE"] => None; "the reading node itself")]
    fn cluster_finding(hostname: &str, own: &[&str], cluster: &[&str]) -> Option<String> {
        let mut f = facts();
        f.hostname = hostname.into();
        f.global.insert(POLICYD.into(), vals(own));
        let pb = playbook(
            vec![control(POLICYD, Expectation::Equals("TRUE".into()))],
            Vec::new(),
        );
        let e = evaluate(
            &pb,
            &f,
            &globals(&[(POLICYD, cluster)]),
            &BTreeMap::new(),
            None,
            &no_waiver,
        );
        e.findings
            .iter()
            .find(|x| x.id == "INV-CLUSTER")
            .map(|x| x.message.clone())
    }

    // --- probes ---

    fn probe(kind: ProbeKind, expect: Option<ProbeExpect>) -> Probe {
        Probe {
            id: "P-1".into(),
            title: "a probe".into(),
            kind,
            expect,
            severity: Severity::High,
            rationale: String::new(),
            remediation: String::new(),
        }
    }

    fn postconf(expect: Option<ProbeExpect>) -> Probe {
        probe(
            ProbeKind::Postconf {
                param: "smtpd_recipient_restrictions".into(),
            },
            expect,
        )
    }

    const RESTRICTIONS: &str =
        "reject_non_fqdn_recipient, check_policy_service unix:private/policy, permit";

    fn contains(v: &str) -> Option<ProbeExpect> {
        Some(ProbeExpect::Contains(v.into()))
    }

    #[test_case(contains("permit"), Some(RESTRICTIONS), true => ProbeVerdict::Pass; "contains an item")]
    #[test_case(contains("unix:private/policy"), Some(RESTRICTIONS), true => ProbeVerdict::Pass; "contains a substring")]
    #[test_case(contains("reject_unauth_destination"), Some(RESTRICTIONS), true => ProbeVerdict::Fail; "does not contain")]
    #[test_case(Some(ProbeExpect::Absent("permit".into())), Some(RESTRICTIONS), true => ProbeVerdict::Fail; "absent but an item")]
    #[test_case(Some(ProbeExpect::Absent("private/policy".into())), Some(RESTRICTIONS), true => ProbeVerdict::Fail; "absent but a substring")]
    #[test_case(Some(ProbeExpect::Absent("reject_unauth_destination".into())), Some(RESTRICTIONS), true => ProbeVerdict::Pass; "absent indeed")]
    #[test_case(Some(ProbeExpect::Equals("yes".into())), Some(" yes "), true => ProbeVerdict::Pass; "equals, trimmed")]
    #[test_case(Some(ProbeExpect::Equals("yes".into())), Some("yes, no"), true => ProbeVerdict::Fail; "equals the whole value")]
    #[test_case(Some(ProbeExpect::Reply("5xx".into())), Some("yes"), true => ProbeVerdict::Fail; "a reply expectation never passes postconf")]
    #[test_case(None, Some("anything"), true => ProbeVerdict::Pass; "evidence only")]
    #[test_case(contains("permit"), None, true => ProbeVerdict::Error; "parameter not reported")]
    #[test_case(contains("permit"), Some(RESTRICTIONS), false => ProbeVerdict::NotApplicable; "not an MTA")]
    fn postconf_verdict(
        expect: Option<ProbeExpect>,
        value: Option<&str>,
        mta: bool,
    ) -> ProbeVerdict {
        let mut f = if mta { facts() } else { not_mta(facts()) };
        if let Some(v) = value {
            f.postconf
                .insert("smtpd_recipient_restrictions".into(), v.into());
        }
        probe_result(&postconf(expect), &f, &BTreeMap::new()).verdict
    }

    #[test_case(None, Some((0, "ok")) => ProbeVerdict::Pass; "exit 0, evidence only")]
    #[test_case(None, Some((1, "ok")) => ProbeVerdict::Fail; "non-zero exit without an expectation fails")]
    #[test_case(Some(ProbeExpect::Equals("ok".into())), Some((1, "ok\n")) => ProbeVerdict::Pass; "an expectation decides over the exit status")]
    #[test_case(contains("b"), Some((0, "a\nb\n")) => ProbeVerdict::Pass; "contains a line")]
    #[test_case(Some(ProbeExpect::Absent("b".into())), Some((0, "a\nb\n")) => ProbeVerdict::Fail; "absent but a line")]
    #[test_case(None, None => ProbeVerdict::Error; "no output section")]
    fn command_verdict(expect: Option<ProbeExpect>, out: Option<(i64, &str)>) -> ProbeVerdict {
        let mut f = facts();
        if let Some((status, output)) = out {
            f.commands.insert(
                "P-1".into(),
                Section {
                    output: output.into(),
                    status,
                },
            );
        }
        let p = probe(
            ProbeKind::Command {
                command: "true".into(),
            },
            expect,
        );
        probe_result(&p, &f, &BTreeMap::new()).verdict
    }

    fn reply(code: u16) -> Option<Reply> {
        Some(Reply {
            code,
            text: "text".into(),
        })
    }

    enum Smtp {
        NotRun,
        Failed,
        /// (RCPT reply, early reply).
        Done(Option<Reply>, Option<Reply>),
    }

    #[test_case(Some("5xx"), Smtp::Done(reply(550), None), true => ProbeVerdict::Pass; "unknown recipient rejected")]
    #[test_case(Some("5xx"), Smtp::Done(reply(250), None), true => ProbeVerdict::Fail; "unknown recipient accepted")]
    #[test_case(Some("550"), Smtp::Done(reply(554), None), true => ProbeVerdict::Fail; "exact code")]
    #[test_case(Some("5xx"), Smtp::Done(None, reply(554)), true => ProbeVerdict::Fail; "a refused greeting is no RCPT answer")]
    #[test_case(Some("5xx"), Smtp::Done(None, None), true => ProbeVerdict::Fail; "no reply at all")]
    #[test_case(None, Smtp::Done(None, reply(421)), true => ProbeVerdict::Pass; "evidence only, any reply")]
    #[test_case(Some("5xx"), Smtp::Failed, true => ProbeVerdict::Error; "dialogue failed")]
    #[test_case(Some("5xx"), Smtp::NotRun, true => ProbeVerdict::NotApplicable; "no domain to probe")]
    #[test_case(Some("5xx"), Smtp::Done(reply(550), None), false => ProbeVerdict::NotApplicable; "not an MTA")]
    fn smtp_verdict(expect: Option<&str>, outcome: Smtp, mta: bool) -> ProbeVerdict {
        let f = if mta { facts() } else { not_mta(facts()) };
        let p = probe(
            ProbeKind::Smtp { rcpt: None },
            expect.map(|e| ProbeExpect::Reply(e.into())),
        );
        let vantage = "node".to_string();
        let mut results = BTreeMap::new();
        match outcome {
            Smtp::NotRun => {}
            Smtp::Failed => {
                results.insert(
                    "P-1".to_string(),
                    SmtpOutcome::Failed {
                        message: "refused".into(),
                        vantage,
                    },
                );
            }
            Smtp::Done(rcpt, early) => {
                results.insert(
                    "P-1".to_string(),
                    SmtpOutcome::Done {
                        exchange: Exchange {
                            transcript: Vec::new(),
                            rcpts: rcpt.iter().cloned().collect(),
                            rcpt,
                            early,
                        },
                        vantage,
                    },
                );
            }
        }
        probe_result(&p, &f, &results).verdict
    }

    #[test]
    fn dns_probes_are_reported_per_domain_not_per_host() {
        let p = probe(
            ProbeKind::Dns {
                check: DnsCheck::Spf,
            },
            None,
        );
        assert_eq!(
            probe_result(&p, &facts(), &BTreeMap::new()).verdict,
            ProbeVerdict::NotApplicable
        );
        let e = evaluate(
            &playbook(Vec::new(), vec![p]),
            &facts(),
            &globals(&[]),
            &BTreeMap::new(),
            None,
            &no_waiver,
        );
        assert!(e.probes.is_empty(), "{:?}", e.probes);
    }

    /// Apply's health gate: `None` for other kinds, `Err` says what is there instead.
    #[test_case(postconf(contains("permit")), Some(RESTRICTIONS) => Some(Ok(())); "meets it")]
    #[test_case(postconf(contains("reject_unauth_destination")), Some("permit")
        => Some(Err("smtpd_recipient_restrictions = permit (want contains reject_unauth_destination)".to_string())); "does not")]
    #[test_case(postconf(contains("permit")), None
        => Some(Err("postconf did not print smtpd_recipient_restrictions".to_string())); "not printed")]
    #[test_case(probe(ProbeKind::Smtp { rcpt: None }, None), None => None; "not a postconf probe")]
    fn gate_probe(p: Probe, value: Option<&str>) -> Option<Result<(), String>> {
        let mut pc = BTreeMap::new();
        if let Some(v) = value {
            pc.insert("smtpd_recipient_restrictions".to_string(), v.to_string());
        }
        postconf_probe(&p, &pc)
    }

    // --- host status ---

    /// What is off on the host: a control, a probe, the running state, a finding.
    enum Off {
        Nothing,
        Control {
            waiver: Option<bool>,
        },
        /// The server entry overrides a right global value.
        Masked {
            waiver: Option<bool>,
        },
        PostconfProbe,
        PostconfUnreported,
        CommandProbe {
            waiver: Option<bool>,
        },
        CommandNoOutput,
        Running(RunningState),
        BreakingSpawnUser,
        SpawnUserNotRunning,
    }

    /// `waiver: Some(expired)`: a waiver names the deviation.
    #[test_case(Off::Nothing => (HostStatus::Compliant, vec![]); "nothing off")]
    #[test_case(Off::Control { waiver: None } => (HostStatus::Drift, vec![]); "control off")]
    #[test_case(Off::Control { waiver: Some(false) } => (HostStatus::Compliant, vec![]); "control off, live waiver")]
    #[test_case(Off::Control { waiver: Some(true) } => (HostStatus::Drift, vec![]); "control off, expired waiver")]
    #[test_case(Off::Masked { waiver: None } => (HostStatus::Drift, vec![]); "masked")]
    #[test_case(Off::Masked { waiver: Some(false) } => (HostStatus::Compliant, vec![]); "masked, live waiver")]
    #[test_case(Off::PostconfProbe => (HostStatus::RestartPending, vec![]); "postconf probe fails: LDAP right, Postfix not yet")]
    #[test_case(Off::PostconfUnreported => (HostStatus::RestartPending, vec![]); "postconf probe undecided")]
    #[test_case(Off::CommandProbe { waiver: None } => (HostStatus::Drift, vec![]); "command probe fails")]
    #[test_case(Off::CommandProbe { waiver: Some(false) } => (HostStatus::Compliant, vec![]); "command probe fails, live waiver")]
    #[test_case(Off::CommandNoOutput => (HostStatus::Drift, vec![]); "command probe undecided")]
    #[test_case(Off::Running(RunningState::Loaded) => (HostStatus::Compliant, vec![]); "master.cf loaded")]
    #[test_case(Off::Running(RunningState::NotLoaded) => (HostStatus::RestartPending, vec![(NOT_LOADED_FINDING, "high")]); "master.cf not loaded")]
    #[test_case(Off::Running(RunningState::Unknown) => (HostStatus::RestartPending, vec![(RUNNING_UNKNOWN_FINDING, "medium")]); "running state unknown")]
    #[test_case(Off::BreakingSpawnUser => (HostStatus::Drift, vec![(SPAWN_USER_FINDING, "critical")]); "running policy service cannot start")]
    #[test_case(Off::SpawnUserNotRunning => (HostStatus::Compliant, vec![(SPAWN_USER_FINDING, "high")]); "spawn user missing, policy service not running: a finding, not drift")]
    fn host_status(off: Off) -> (HostStatus, Vec<(&'static str, &'static str)>) {
        let mut f = facts();
        f.postconf
            .insert("smtpd_recipient_restrictions".into(), RESTRICTIONS.into());
        f.commands.insert(
            "CMD-1".into(),
            Section {
                output: "ok".into(),
                status: 0,
            },
        );
        let mut cluster = vec![(POLICYD, &["TRUE"][..])];
        let mut running = None;
        let mut waiver: Option<WaiverRef> = None;
        let mut check = postconf(contains("check_policy_service unix:private/policy"));
        check.id = "EFF-1".into();
        let mut cmd = probe(
            ProbeKind::Command {
                command: "true".into(),
            },
            None,
        );
        cmd.id = "CMD-1".into();
        match off {
            Off::Nothing => {}
            Off::Control { waiver: w } => {
                cluster = vec![(POLICYD, &["FALSE"][..])];
                waiver = w.map(live_waiver);
            }
            Off::Masked { waiver: w } => {
                f.server.insert(POLICYD.into(), vals(&["FALSE"]));
                waiver = w.map(live_waiver);
            }
            Off::PostconfProbe => {
                f.postconf
                    .insert("smtpd_recipient_restrictions".into(), "permit".into());
            }
            Off::PostconfUnreported => {
                f.postconf.clear();
            }
            Off::CommandProbe { waiver: w } => {
                f.commands.get_mut("CMD-1").expect("seeded").status = 1;
                waiver = w.map(live_waiver);
            }
            Off::CommandNoOutput => {
                f.commands.clear();
            }
            Off::Running(state) => {
                running = Some(Running {
                    state,
                    evidence: "master started before master.cf was written".into(),
                    master_cf_mtime: None,
                });
            }
            Off::BreakingSpawnUser => {
                f.policy_service = Some(spawn_line("zimbra", true));
            }
            Off::SpawnUserNotRunning => {
                f.policy_template = Some(spawn_line("zimbra", false));
            }
        }
        let pb = playbook(vec![policyd_control()], vec![check, cmd]);
        let e = evaluate(
            &pb,
            &f,
            &globals(&cluster),
            &BTreeMap::new(),
            running.as_ref(),
            &|_| waiver.clone(),
        );
        let findings = e
            .findings
            .iter()
            .map(|x| {
                let id = [
                    NOT_LOADED_FINDING,
                    RUNNING_UNKNOWN_FINDING,
                    SPAWN_USER_FINDING,
                ]
                .into_iter()
                .find(|id| *id == x.id)
                .unwrap_or_else(|| panic!("unexpected finding {}", x.id));
                let severity = ["critical", "high", "medium"]
                    .into_iter()
                    .find(|s| *s == x.severity)
                    .unwrap_or_else(|| panic!("unexpected severity {}", x.severity));
                (id, severity)
            })
            .collect();
        (e.status, findings)
    }

    /// Only deviations carry a waiver: a compliant control or a passing probe never does.
    #[test]
    fn waivers_attach_to_deviations_only() {
        let f = facts();
        let pb = playbook(vec![policyd_control()], Vec::new());
        let waived = |cluster: &[&str]| {
            evaluate(
                &pb,
                &f,
                &globals(&[(POLICYD, cluster)]),
                &BTreeMap::new(),
                None,
                &|_| Some(live_waiver(false)),
            )
            .controls[0]
                .waiver
                .is_some()
        };
        assert!(waived(&["FALSE"]));
        assert!(!waived(&["TRUE"]));
    }

    // --- the catalog ---

    #[test_case(probe(ProbeKind::Postconf { param: "p".into() }, contains("x")) => ("postconf p".to_string(), "contains x".to_string()); "postconf")]
    #[test_case(probe(ProbeKind::Smtp { rcpt: None }, Some(ProbeExpect::Reply("5xx".into()))) => ("SMTP RCPT TO an unknown address in a hosted domain".to_string(), "reply 5xx".to_string()); "smtp unknown recipient")]
    #[test_case(probe(ProbeKind::Smtp { rcpt: Some("a@b.example".into()) }, Some(ProbeExpect::Equals("y".into()))) => ("SMTP RCPT TO a@b.example".to_string(), "= y".to_string()); "smtp given recipient")]
    #[test_case(probe(ProbeKind::Command { command: "id".into() }, Some(ProbeExpect::Absent("root".into()))) => ("command id".to_string(), "absent root".to_string()); "command")]
    #[test_case(probe(ProbeKind::Dns { check: DnsCheck::Dmarc }, None) => ("DNS dmarc of every hosted domain".to_string(), "(evidence only)".to_string()); "dns")]
    fn catalog_probe(p: Probe) -> (String, String) {
        let cat = check_catalog(&playbook(Vec::new(), vec![p]));
        (cat[0].reads.clone(), cat[0].expected.clone())
    }

    #[test]
    fn catalog_control_reads_attribute_and_scope() {
        let mut c = control(POLICYD, Expectation::Equals("TRUE".into()));
        c.scope = Scope::Server;
        let cat = check_catalog(&playbook(vec![c], Vec::new()));
        assert_eq!(
            (
                cat[0].kind.as_str(),
                cat[0].reads.as_str(),
                cat[0].expected.as_str(),
                cat[0].severity.as_str()
            ),
            (
                "control",
                "zimbraMtaEnableSmtpdPolicyd (server)",
                "= TRUE",
                "high"
            )
        );
    }
}
