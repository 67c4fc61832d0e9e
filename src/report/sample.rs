//! A synthetic report covering every state the renderers must show: compliant, drift
//! (non-compliant and masked), restart pending, failed hosts (host-key mismatch with
//! fingerprints, unreachable), a not-applicable control, a failing probe and a blocking
//! finding. Every renderer test builds on it, so a new state is added here once.
//!
//! Used by unit tests only: the renderers' (summary, HTML, JUnit, metrics, write), merge,
//! diff and aggregate, the engine's (`changes`, `domains`), `--on-drift` and `--webhook`;
//! and, through the public (doc-hidden) API, by the integration tests `tests/cli.rs` and
//! `tests/scale.rs`. It is not a real run; the tool never writes it.

use crate::carbonio::platform::Platform;

use super::model::{
    CheckInfo, ControlResult, DomainCheck, DomainFinding, DomainPosture, DomainReport, ErrorKind,
    Finding, HostError, HostReport, HostStatus, InventoryRef, PlaybookRef, ProbeResult,
    ProbeVerdict, Report, SCHEMA_VERSION, Summary, Timings, Tool, Verdict,
};

/// The message of the blocking finding on `mail2`, asserted verbatim by the tests.
#[doc(hidden)]
pub const SPAWN_USER_MESSAGE: &str = "enabling zimbraMtaEnableSmtpdPolicyd here would make \
     Postfix answer `451 4.3.5` to every recipient: master.cf spawns the policy service as \
     user `zimbra`, which does not exist on this node";

/// A control of the backscatter playbook with the given verdict and values.
#[doc(hidden)]
pub fn control(id: &str, verdict: Verdict, expected: &str, actual: &str) -> ControlResult {
    let (title, attr) = match id {
        "BS-01" => (
            "Postfix policy daemon enabled",
            "zimbraMtaEnableSmtpdPolicyd",
        ),
        "BS-02" => (
            "Policy service in recipient restrictions",
            "zimbraMtaRestriction",
        ),
        "BS-03" => (
            "Reject unlisted recipients",
            "zimbraMtaSmtpdRejectUnlistedRecipient",
        ),
        _ => ("Synthetic control", "zimbraSynthetic"),
    };
    ControlResult {
        id: id.to_string(),
        title: title.to_string(),
        attr: attr.to_string(),
        scope: if id == "BS-03" { "server" } else { "global" }.to_string(),
        severity: "high".to_string(),
        expected: expected.to_string(),
        actual: actual.to_string(),
        global_values: vec![actual.to_string()],
        server_values: None,
        verdict,
        evidence: format!("zmprov -l gcf {attr} → {actual}"),
        before: None,
        after: None,
        changed: false,
        waiver: None,
    }
}

/// A probe with the given verdict.
#[doc(hidden)]
pub fn probe(id: &str, verdict: ProbeVerdict, actual: &str) -> ProbeResult {
    ProbeResult {
        id: id.to_string(),
        title: "Effective Postfix recipient restrictions contain the policy service".to_string(),
        kind: "postconf".to_string(),
        expected: "contains check_policy_service unix:private/policy".to_string(),
        actual: actual.to_string(),
        verdict,
        evidence: format!("postconf -h smtpd_recipient_restrictions → {actual}"),
        waiver: None,
    }
}

/// A host with no controls, probes or findings yet.
#[doc(hidden)]
pub fn host(name: &str, cluster: &str, status: HostStatus) -> HostReport {
    let n: u8 = name
        .bytes()
        .filter(u8::is_ascii_digit)
        .fold(0u8, |acc, d| acc.wrapping_mul(10).wrapping_add(d - b'0'));
    HostReport {
        name: name.to_string(),
        address: format!("203.0.113.{n}"),
        port: 22,
        cluster: cluster.to_string(),
        groups: vec!["acme".to_string()],
        roles: vec!["mta".to_string()],
        status,
        platform: Some(Platform::Systemd),
        flavour: Some(crate::flavour::Flavour::Carbonio),
        version: Some("25.9.0".to_string()),
        carbonio_hostname: Some(format!("{name}.acme.example")),
        is_mta: Some(true),
        error: None,
        controls: Vec::new(),
        probes: Vec::new(),
        findings: Vec::new(),
        running: None,
        timings: Timings {
            connect_ms: Some(120),
            gather_ms: Some(850),
            total_ms: 1_010,
        },
        apply: None,
        vars: [("customer".to_string(), "ACME Corp".to_string())].into(),
    }
}

const EFFECTIVE_OK: &str =
    "reject_non_fqdn_recipient, check_policy_service unix:private/policy, permit";
const EFFECTIVE_MISSING: &str = "reject_non_fqdn_recipient, permit";

// long: one fixture written out as data (six hosts, their controls, probes and
// findings), read top to bottom beside the snapshots it renders to; split up, the
// pieces would only scatter one report over several functions.
/// Six hosts in two clusters: `mail1` compliant, `mail2` drift (non-compliant + masked,
/// failing probe, blocking finding), `mail3` restart pending (changed, not restarted),
/// `mail4` failed on a host-key mismatch, `mail5` unreachable, `store1` compliant with a
/// not-applicable control (not an MTA).
#[doc(hidden)]
pub fn sample_report() -> Report {
    let compliant_controls = || {
        vec![
            control("BS-01", Verdict::Compliant, "= TRUE", "TRUE"),
            control(
                "BS-02",
                Verdict::Compliant,
                "contains check_policy_service unix:private/policy",
                "[check_policy_service unix:private/policy]",
            ),
        ]
    };

    let mut mail1 = host("mail1", "eu-1", HostStatus::Compliant);
    mail1.controls = compliant_controls();
    mail1.probes = vec![probe("EFF-01", ProbeVerdict::Pass, EFFECTIVE_OK)];

    let mut mail2 = host("mail2", "eu-1", HostStatus::Drift);
    let mut masked = control(
        "BS-02",
        Verdict::Masked,
        "contains check_policy_service unix:private/policy",
        "[reject_invalid_helo_hostname]",
    );
    masked.global_values = vec!["check_policy_service unix:private/policy".to_string()];
    masked.server_values = Some(vec!["reject_invalid_helo_hostname".to_string()]);
    masked.evidence =
        "zmprov -l gs mail2.acme.example zimbraMtaRestriction overrides the global value"
            .to_string();
    mail2.controls = vec![
        control("BS-01", Verdict::NonCompliant, "= TRUE", "FALSE"),
        masked,
    ];
    mail2.probes = vec![probe("EFF-01", ProbeVerdict::Fail, EFFECTIVE_MISSING)];
    mail2.findings = vec![
        Finding {
            id: "PRE-POLICY-SPAWN-USER".to_string(),
            severity: "critical".to_string(),
            blocking: true,
            message: SPAWN_USER_MESSAGE.to_string(),
            evidence: "getent passwd zimbra → (no entry); postconf -M policy/unix → \
                       policy unix - n n - 0 spawn user=zimbra argv=/usr/bin/perl \
                       /opt/zextras/libexec/zmpostfixpolicyd"
                .to_string(),
            hint: "create the user or change the spawn line before enabling BS-01".to_string(),
        },
        Finding {
            id: "INFO-DNSBL".to_string(),
            severity: "low".to_string(),
            blocking: false,
            message: "no DNSBL configured for postscreen".to_string(),
            evidence: "zimbraMtaPostscreenDnsblSites (unset)".to_string(),
            hint: "consider zen.spamhaus.org <with a DQS key> & friends".to_string(),
        },
    ];

    let mut mail3 = host("mail3", "eu-1", HostStatus::RestartPending);
    mail3.platform = Some(Platform::Legacy);
    mail3.version = Some("24.3.0".to_string());
    mail3.controls = compliant_controls();
    mail3.controls[0].before = Some("FALSE".to_string());
    mail3.controls[0].after = Some("TRUE".to_string());
    mail3.controls[0].changed = true;
    mail3.probes = vec![probe("EFF-01", ProbeVerdict::Fail, EFFECTIVE_MISSING)];

    let mut mail4 = host("mail4", "eu-2", HostStatus::Failed);
    mail4.platform = None;
    mail4.version = None;
    mail4.carbonio_hostname = None;
    mail4.is_mta = None;
    mail4.timings = Timings {
        connect_ms: Some(95),
        gather_ms: None,
        total_ms: 95,
    };
    mail4.error = Some(HostError {
        kind: ErrorKind::Hostkey,
        message: "host key for `mail4` (203.0.113.4:22) does not match known_hosts".to_string(),
        expected_fingerprints: vec![
            "SHA256:n1X0nCk9gq7rB0l4dYHc8sWkZ0uVZ4v3jXq0m7Hc2Qs".to_string(),
        ],
        offered_fingerprint: Some("SHA256:Zq7c1J8Yv5rYp9xT6b2wQe3nL0aK4sD7fG1hJ2kL3mN".to_string()),
    });

    let mut mail5 = host("mail5", "eu-2", HostStatus::Failed);
    mail5.platform = None;
    mail5.version = None;
    mail5.carbonio_hostname = None;
    mail5.is_mta = None;
    mail5.timings = Timings {
        connect_ms: None,
        gather_ms: None,
        total_ms: 10_000,
    };
    mail5.error = Some(HostError {
        kind: ErrorKind::Unreachable,
        message: "failed to connect to `mail5` (203.0.113.5:22): connection timed out after 10s"
            .to_string(),
        expected_fingerprints: Vec::new(),
        offered_fingerprint: None,
    });

    let mut store1 = host("store1", "eu-1", HostStatus::Compliant);
    store1.address = "203.0.113.10".to_string();
    store1.roles = vec!["mailbox".to_string()];
    store1.is_mta = Some(false);
    store1.controls = vec![
        control("BS-01", Verdict::Compliant, "= TRUE", "TRUE"),
        control("BS-03", Verdict::NotApplicable, "= TRUE", "(unset)"),
    ];
    store1.probes = vec![probe("EFF-01", ProbeVerdict::NotApplicable, "(not an MTA)")];

    Report {
        schema_version: SCHEMA_VERSION,
        tool: Tool {
            name: "carbonio-fleet".to_string(),
            version: "0.1.0".to_string(),
        },
        command: "check".to_string(),
        playbook: PlaybookRef {
            name: "backscatter-hardening".to_string(),
            description: "Reject backscatter at SMTP time on Carbonio CE MTAs".to_string(),
            source: "playbooks/backscatter.toml".to_string(),
            sha256: "3f9a6c0d2b1e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c".to_string(),
        },
        inventory: InventoryRef {
            files: vec!["inventory/acme.toml".to_string()],
            sha256: "b1946ac92492d2347c6235b4d2611184b1946ac92492d2347c6235b4d2611184".to_string(),
        },
        operator: "ops@bastion".to_string(),
        started_at: "2026-11-27T02:00:00Z".to_string(),
        finished_at: "2026-11-27T02:01:23.400Z".to_string(),
        duration_ms: 83_400,
        limit: Some("@acme".to_string()),
        summary: Summary {
            hosts: 6,
            compliant: 2,
            drift: 1,
            restart_pending: 1,
            failed: 2,
            not_attempted: 0,
            waived: 0,
            waivers_expired: 0,
        },
        exit_code: crate::exit::ExitCode::HostFailed.code(),
        hosts: vec![mail1, mail2, mail3, mail4, mail5, store1],
        domains: sample_domains(),
        promotions: Vec::new(),
        resumed_from: None,
        checks: sample_checks(),
        labels: vec!["customer".to_string()],
        covers: None,
    }
}

/// The sample's controls and probe as the playbook would describe them.
#[doc(hidden)]
pub fn sample_checks() -> Vec<CheckInfo> {
    ["BS-01", "BS-02", "BS-03"]
        .into_iter()
        .map(|id| {
            let c = control(id, Verdict::Compliant, "", "");
            CheckInfo {
                id: c.id,
                title: c.title,
                kind: "control".to_string(),
                severity: c.severity,
                reads: format!("{} ({})", c.attr, c.scope),
                expected: if id == "BS-02" {
                    "contains check_policy_service unix:private/policy".to_string()
                } else {
                    "= TRUE".to_string()
                },
                rationale: format!("Why {id} matters."),
                remediation: format!("zmprov mcf {} TRUE", c.attr),
            }
        })
        .chain(std::iter::once({
            let p = probe("EFF-01", ProbeVerdict::Pass, "");
            CheckInfo {
                id: p.id,
                title: p.title,
                kind: "probe".to_string(),
                severity: "high".to_string(),
                reads: "postconf smtpd_recipient_restrictions".to_string(),
                expected: p.expected,
                rationale: "LDAP can say one thing while Postfix runs another.".to_string(),
                remediation: "Reload the MTA: zmmtactl reload".to_string(),
            }
        }))
        .collect()
}

/// A `dns` check result for the sample.
pub fn domain_check(
    check: &str,
    verdict: ProbeVerdict,
    findings: &[(&str, &str)],
    error: Option<&str>,
) -> DomainCheck {
    DomainCheck {
        id: format!("DOM-{}", check.to_uppercase()),
        title: format!("{} posture", check.to_uppercase()),
        check: check.to_string(),
        severity: if check == "dmarc" { "low" } else { "medium" }.to_string(),
        verdict,
        findings: findings
            .iter()
            .map(|(sev, m)| DomainFinding {
                severity: sev.to_string(),
                message: m.to_string(),
            })
            .collect(),
        notes: Vec::new(),
        evidence: Vec::new(),
        error: error.map(str::to_string),
    }
}

/// The sample's domain section: cluster `acme` with a good, a broken and an alias domain.
pub fn sample_domains() -> Vec<DomainReport> {
    vec![DomainReport {
        cluster: "acme".to_string(),
        read_on: Some("mail1.acme.example".to_string()),
        resolver: "127.0.0.1:5353".to_string(),
        error: None,
        domains: vec![
            DomainPosture {
                domain: "acme.example".to_string(),
                alias: false,
                checks: vec![
                    domain_check("spf", ProbeVerdict::Pass, &[], None),
                    domain_check("dkim", ProbeVerdict::Pass, &[], None),
                    domain_check("dmarc", ProbeVerdict::Pass, &[], None),
                ],
            },
            DomainPosture {
                domain: "acme-shop.example".to_string(),
                alias: false,
                checks: vec![
                    domain_check(
                        "spf",
                        ProbeVerdict::Fail,
                        &[(
                            "medium",
                            "SPF for acme-shop.example ends in `+all`: any host may send as this domain",
                        )],
                        None,
                    ),
                    domain_check(
                        "dkim",
                        ProbeVerdict::Error,
                        &[],
                        Some(
                            "DNS lookup of TXT `s1._domainkey.acme-shop.example` failed: request timed out",
                        ),
                    ),
                    domain_check(
                        "dmarc",
                        ProbeVerdict::Fail,
                        &[(
                            "low",
                            "DMARC for acme-shop.example has `p=none`: receivers only monitor, forged mail is still delivered",
                        )],
                        None,
                    ),
                ],
            },
            DomainPosture {
                domain: "acme.test".to_string(),
                alias: true,
                checks: vec![
                    domain_check("spf", ProbeVerdict::Pass, &[], None),
                    domain_check(
                        "dkim",
                        ProbeVerdict::Fail,
                        &[(
                            "medium",
                            "DKIM for acme.test is not set up: no DKIMSelector/DKIMPublicKey in LDAP (create a key with `zmdkimkeyutil -a -d acme.test`)",
                        )],
                        None,
                    ),
                    domain_check("dmarc", ProbeVerdict::Pass, &[], None),
                ],
            },
        ],
    }]
}
