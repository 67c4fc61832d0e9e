//! Runs a playbook's `dns` probes over the hosted domains of one cluster and builds the
//! cluster's [`DomainReport`]: the engine's verdict on domain posture, as `verdict` is on
//! a node. `dns` judges one record; this module rates the outcome by the probe's
//! severity and writes the report rows. Every domain × check runs concurrently over the shared,
//! caching resolver; a failed lookup makes that check an `error` with its cause.

use std::net::IpAddr;

use futures::StreamExt;

use crate::dns::resolver::{DnsResolver, LookupError};
use crate::dns::{CheckOutcome, ClusterDomains, DomainFacts, dkim, dmarc, spf};
use crate::playbook::{DnsCheck, Probe, ProbeKind, Severity};
use crate::report::model::{DomainCheck, DomainFinding, DomainPosture, DomainReport, ProbeVerdict};

/// Checks in flight at once per cluster.
const CONCURRENCY: usize = 16;

/// The `dns` probes of a playbook, in playbook order.
pub fn dns_probes(probes: &[Probe]) -> Vec<(&Probe, DnsCheck)> {
    probes
        .iter()
        .filter_map(|p| match p.kind {
            ProbeKind::Dns { check } => Some((p, check)),
            _ => None,
        })
        .collect()
}

fn severity_name(s: Severity) -> String {
    format!("{s:?}").to_lowercase()
}

fn lower(s: Severity) -> Severity {
    match s {
        Severity::Critical => Severity::High,
        Severity::High => Severity::Medium,
        Severity::Medium | Severity::Low => Severity::Low,
    }
}

/// The report entry of one check from its outcome.
pub fn check_result(
    probe: &Probe,
    check: DnsCheck,
    outcome: Result<CheckOutcome, LookupError>,
) -> DomainCheck {
    let mut r = DomainCheck {
        id: probe.id.clone(),
        title: probe.title.clone(),
        check: check.as_str().to_string(),
        severity: severity_name(probe.severity),
        verdict: ProbeVerdict::Pass,
        findings: Vec::new(),
        notes: Vec::new(),
        evidence: Vec::new(),
        error: None,
    };
    match outcome {
        Err(e) => {
            r.verdict = ProbeVerdict::Error;
            r.error = Some(e.to_string());
        }
        Ok(o) => {
            r.findings = o
                .findings
                .into_iter()
                .map(|i| DomainFinding {
                    severity: severity_name(if i.lesser {
                        lower(probe.severity)
                    } else {
                        probe.severity
                    }),
                    message: i.message,
                })
                .collect();
            r.notes = o.notes;
            r.evidence = o.evidence;
            if !r.findings.is_empty() {
                r.verdict = ProbeVerdict::Fail;
            }
        }
    }
    r
}

/// Runs one check of one domain.
pub async fn run_check(
    resolver: &DnsResolver,
    check: DnsCheck,
    facts: &DomainFacts,
    egress: &[IpAddr],
) -> Result<CheckOutcome, LookupError> {
    match check {
        DnsCheck::Spf => spf::check(resolver, &facts.domain, egress).await,
        DnsCheck::Dkim => dkim::check(resolver, &facts.domain, &facts.dkim).await,
        DnsCheck::Dmarc => dmarc::check(resolver, &facts.domain).await,
    }
}

/// The cluster's domain section: every `dns` probe on every domain.
pub async fn evaluate_cluster(
    resolver: &DnsResolver,
    probes: &[Probe],
    input: ClusterDomains,
) -> DomainReport {
    let mut report = DomainReport {
        cluster: input.cluster,
        read_on: input.read_on,
        resolver: resolver.servers().to_string(),
        error: None,
        domains: Vec::new(),
    };
    let domains = match input.domains {
        Err(e) => {
            report.error = Some(e);
            return report;
        }
        Ok(d) => d,
    };
    let checks = dns_probes(probes);
    let egress = &input.egress;
    let jobs: Vec<(usize, &Probe, DnsCheck, &DomainFacts)> = domains
        .iter()
        .enumerate()
        .flat_map(|(i, d)| checks.iter().map(move |(p, c)| (i, *p, *c, d)))
        .collect();
    let mut results: Vec<(usize, usize, DomainCheck)> =
        futures::stream::iter(jobs.into_iter().enumerate())
            .map(|(n, (i, p, c, d))| async move {
                let outcome = run_check(resolver, c, d, egress).await;
                (i, n, check_result(p, c, outcome))
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
    results.sort_by_key(|(_, n, _)| *n);
    report.domains = domains
        .iter()
        .map(|d| DomainPosture {
            domain: d.domain.clone(),
            alias: d.alias,
            checks: Vec::new(),
        })
        .collect();
    for (i, _, c) in results {
        report.domains[i].checks.push(c);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(sev: Severity) -> Probe {
        Probe {
            id: "DOM-DMARC".into(),
            title: "DMARC".into(),
            kind: ProbeKind::Dns {
                check: DnsCheck::Dmarc,
            },
            expect: None,
            severity: sev,
            rationale: String::new(),
            remediation: String::new(),
        }
    }

    #[test]
    fn lesser_findings_are_one_level_lower_and_make_a_fail() {
        let mut o = CheckOutcome::default();
        o.findings.push(crate::dns::Issue::lesser("p=none".into()));
        let r = check_result(&probe(Severity::Medium), DnsCheck::Dmarc, Ok(o));
        assert_eq!(r.verdict, ProbeVerdict::Fail);
        assert_eq!(r.findings[0].severity, "low");
        assert_eq!(r.severity, "medium");
    }

    #[test]
    fn a_lookup_failure_is_an_error_never_a_pass() {
        let e = LookupError {
            name: "_dmarc.example.com".into(),
            rtype: "TXT",
            cause: "request timed out".into(),
        };
        let r = check_result(&probe(Severity::Low), DnsCheck::Dmarc, Err(e));
        assert_eq!(r.verdict, ProbeVerdict::Error);
        assert_eq!(
            r.error.as_deref(),
            Some("DNS lookup of TXT `_dmarc.example.com` failed: request timed out")
        );
    }
}
