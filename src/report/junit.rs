//! JUnit XML (`junit.xml`) for CI systems: one `<testsuite>` per host, one `<testcase>` per
//! control and per probe. Drift is a `<failure>` (expected vs actual, evidence in the
//! body); a host that could not be audited is one `<error>` testcase named after the step
//! that failed; not-applicable checks and hosts never attempted are `<skipped>`.
//! Findings go to the suite's `<system-out>`: they explain failures but are not tests.
//! The domain section adds one `<testsuite>` per cluster (`domains CLUSTER`) with a
//! testcase per hosted domain and `dns` check: findings are a `<failure>`, a lookup that
//! failed is an `<error>`.
//! A deviation that a live waiver accepts (`--waivers`) is `<skipped>` with the
//! justification and expiry as its message (CI dashboards show skip messages); one whose
//! waiver expired stays a `<failure>` whose message says so. Both carry `waiver_*`
//! properties.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};

use super::labels::{probe_verdict_str, verdict_str};
use super::model::{
    ControlResult, DomainCheck, DomainPosture, DomainReport, ErrorKind, HostError, HostReport,
    HostStatus, ProbeResult, ProbeVerdict, Report, Verdict, WaiverRef,
};

/// Renders the whole report as JUnit XML.
pub fn render_junit(report: &Report) -> String {
    let mut junit = quick_junit::Report::new(format!(
        "carbonio-fleet {} {}",
        report.command, report.playbook.name
    ));
    junit.set_time(Duration::from_millis(report.duration_ms));
    junit.add_test_suites(report.hosts.iter().map(|h| host_suite(report, h)));
    junit.add_test_suites(report.domains.iter().map(domain_suite));
    // Serializing into memory only fails on invalid UTF-8, which `XmlString` rules out.
    junit
        .to_string()
        .expect("JUnit serialization into a String cannot fail")
}

fn host_suite(report: &Report, host: &HostReport) -> TestSuite {
    let mut suite = TestSuite::new(host.name.as_str());
    suite.set_time(Duration::from_millis(host.timings.total_ms));
    suite.add_property(Property::new(
        "address",
        format!("{}:{}", host.address, host.port),
    ));
    suite.add_property(Property::new("cluster", host.cluster.as_str()));
    // The playbook's report labels (e.g. customer), for CI dashboards that group by them.
    for (k, v) in report.host_labels(host) {
        suite.add_property(Property::new(k, v));
    }
    suite.add_property(Property::new("status", host.status.as_str()));
    if let Some(platform) = host.platform {
        let name = serde_json::to_value(platform)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        suite.add_property(Property::new("platform", name));
    }
    if let Some(version) = &host.version {
        suite.add_property(Property::new("carbonio_version", version.as_str()));
    }

    if let Some(error) = &host.error {
        suite.add_test_case(error_case(host, error));
    } else if host.status == HostStatus::NotAttempted {
        let mut status = TestCaseStatus::skipped();
        status.set_message("not attempted: the rollout stopped before this host");
        let mut case = TestCase::new("run", status);
        case.set_classname(host.name.as_str());
        suite.add_test_case(case);
    }
    suite.add_test_cases(host.controls.iter().map(|c| control_case(host, c)));
    suite.add_test_cases(host.probes.iter().map(|p| probe_case(host, p)));

    if !host.findings.is_empty() {
        let mut out = String::new();
        for f in &host.findings {
            let tag = if f.blocking { "BLOCKING " } else { "" };
            out.push_str(&format!(
                "{tag}finding {} ({}): {}\n  evidence: {}\n  hint: {}\n",
                f.id, f.severity, f.message, f.evidence, f.hint
            ));
        }
        suite.set_system_out(out);
    }
    suite
}

/// The step a host error happened in: connection-level kinds are the `connect` step.
fn error_step(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Precondition => "precondition",
        ErrorKind::Interrupted => "interrupted",
        ErrorKind::Unreachable
        | ErrorKind::Auth
        | ErrorKind::Hostkey
        | ErrorKind::Command
        | ErrorKind::Timeout => "connect",
    }
}

fn error_case(host: &HostReport, error: &HostError) -> TestCase {
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    status.set_type(error.kind.as_str());
    status.set_message(format!("{}: {}", error.kind.as_str(), error.message));
    let mut description = format!(
        "{} ({}:{}) could not be audited [{}]: {}",
        host.name,
        host.address,
        host.port,
        error.kind.as_str(),
        error.message
    );
    for fp in &error.expected_fingerprints {
        description.push_str(&format!("\nknown_hosts expects: {fp}"));
    }
    if let Some(fp) = &error.offered_fingerprint {
        description.push_str(&format!("\nserver offered: {fp}"));
    }
    status.set_description(description);
    let mut case = TestCase::new(error_step(error.kind), status);
    case.set_classname(host.name.as_str());
    case
}

fn expected_actual(expected: &str, actual: &str) -> String {
    format!("expected {expected}, actual {actual}")
}

/// A deviation a live waiver accepts: skipped, the waiver as the message.
fn waived_status(w: &WaiverRef, expected: &str, actual: &str) -> TestCaseStatus {
    let mut s = TestCaseStatus::skipped();
    s.set_message(format!(
        "waived until {} ({}): {}",
        w.expires, w.source, w.justification
    ));
    s.set_description(expected_actual(expected, actual));
    s
}

/// The waiver of a result as testcase properties; an expired one also prefixes the
/// failure message, so the reader sees why the accepted deviation counts again.
fn add_waiver(case: &mut TestCase, w: Option<&WaiverRef>) {
    let Some(w) = w else {
        return;
    };
    case.add_property(Property::new(
        "waiver",
        if w.expired { "expired" } else { "waived" },
    ));
    case.add_property(Property::new("waiver_expires", w.expires.as_str()));
    case.add_property(Property::new("waiver_source", w.source.as_str()));
    case.add_property(Property::new(
        "waiver_justification",
        w.justification.as_str(),
    ));
    if w.expired
        && let TestCaseStatus::NonSuccess { message, .. } = &mut case.status
    {
        let old = message.as_ref().map(|m| m.to_string()).unwrap_or_default();
        *message = Some(format!("waiver expired {}: {old}", w.expires).into());
    }
}

fn control_case(host: &HostReport, c: &ControlResult) -> TestCase {
    let status = match &c.waiver {
        Some(w) if w.is_live() => waived_status(w, &c.expected, &c.actual),
        _ => control_status(c),
    };
    let mut case = TestCase::new(format!("{} {}", c.id, c.title), status);
    case.set_classname(host.name.as_str());
    if let (Some(before), Some(after)) = (&c.before, &c.after) {
        case.add_property(Property::new("before", before.as_str()));
        case.add_property(Property::new("after", after.as_str()));
    }
    if c.changed {
        case.add_property(Property::new("changed", "true"));
    }
    add_waiver(&mut case, c.waiver.as_ref());
    case
}

fn control_status(c: &ControlResult) -> TestCaseStatus {
    match c.verdict {
        Verdict::Compliant => TestCaseStatus::success(),
        Verdict::NotApplicable => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(format!("not applicable: {}", c.evidence));
            s
        }
        Verdict::NonCompliant | Verdict::Masked | Verdict::Error => {
            let kind = if c.verdict == Verdict::Error {
                NonSuccessKind::Error
            } else {
                NonSuccessKind::Failure
            };
            let mut s = TestCaseStatus::non_success(kind);
            s.set_type(verdict_str(c.verdict));
            s.set_message(expected_actual(&c.expected, &c.actual));
            let mut description = c.evidence.clone();
            if c.verdict == Verdict::Masked {
                description.push_str(&format!(
                    "\nglobal value: [{}]; this server's own value: [{}]",
                    c.global_values.join(", "),
                    c.server_values.as_deref().unwrap_or_default().join(", ")
                ));
            }
            s.set_description(description);
            s
        }
    }
}

fn probe_case(host: &HostReport, p: &ProbeResult) -> TestCase {
    let status = match (p.verdict, &p.waiver) {
        (_, Some(w)) if w.is_live() => waived_status(w, &p.expected, &p.actual),
        _ => probe_status(p),
    };
    let mut case = TestCase::new(format!("{} {}", p.id, p.title), status);
    case.set_classname(host.name.as_str());
    add_waiver(&mut case, p.waiver.as_ref());
    case
}

fn probe_status(p: &ProbeResult) -> TestCaseStatus {
    match p.verdict {
        ProbeVerdict::Pass => TestCaseStatus::success(),
        ProbeVerdict::NotApplicable => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(format!("not applicable: {}", p.actual));
            s
        }
        ProbeVerdict::Fail | ProbeVerdict::Error => {
            let kind = if p.verdict == ProbeVerdict::Error {
                NonSuccessKind::Error
            } else {
                NonSuccessKind::Failure
            };
            let mut s = TestCaseStatus::non_success(kind);
            s.set_type(probe_verdict_str(p.verdict));
            s.set_message(expected_actual(&p.expected, &p.actual));
            s.set_description(p.evidence.as_str());
            s
        }
    }
}

/// The suite name of a cluster's domain section.
pub fn domain_suite_name(cluster: &str) -> String {
    format!("domains {cluster}")
}

fn domain_suite(d: &DomainReport) -> TestSuite {
    let name = domain_suite_name(&d.cluster);
    let mut suite = TestSuite::new(name.as_str());
    suite.add_property(Property::new("cluster", d.cluster.as_str()));
    if let Some(node) = &d.read_on {
        suite.add_property(Property::new("read_on", node.as_str()));
    }
    suite.add_property(Property::new("resolver", d.resolver.as_str()));
    if let Some(error) = &d.error {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status.set_type("domains");
        status.set_message(format!(
            "the domains of cluster {} could not be read: {error}",
            d.cluster
        ));
        let mut case = TestCase::new("read domains", status);
        case.set_classname(name.as_str());
        suite.add_test_case(case);
    }
    for p in &d.domains {
        suite.add_test_cases(p.checks.iter().map(|c| domain_case(&name, p, c)));
    }
    suite
}

fn domain_case(suite: &str, p: &DomainPosture, c: &DomainCheck) -> TestCase {
    let status = match c.verdict {
        ProbeVerdict::Pass => TestCaseStatus::success(),
        ProbeVerdict::NotApplicable => {
            let mut s = TestCaseStatus::skipped();
            s.set_message("not applicable");
            s
        }
        ProbeVerdict::Error => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_type("error");
            s.set_message(c.error.clone().unwrap_or_else(|| "lookup failed".into()));
            s
        }
        ProbeVerdict::Fail => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_type(probe_verdict_str(c.verdict));
            s.set_message(
                c.findings
                    .iter()
                    .map(|f| f.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            );
            let mut text = String::new();
            for f in &c.findings {
                text.push_str(&format!("[{}] {}\n", f.severity, f.message));
            }
            for e in &c.evidence {
                text.push_str(&format!("record {e}\n"));
            }
            s.set_description(text);
            s
        }
    };
    let mut case = TestCase::new(format!("{} {} {}", p.domain, c.id, c.title), status);
    case.set_classname(suite);
    case.add_property(Property::new("check", c.check.as_str()));
    case.add_property(Property::new("severity", c.severity.as_str()));
    if p.alias {
        case.add_property(Property::new("alias", "true"));
    }
    case
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample::{SPAWN_USER_MESSAGE, sample_report};

    /// A parsed `<testcase>`: name, classname, and its non-success child if any.
    #[derive(Debug)]
    struct Case {
        name: String,
        classname: String,
        outcome: Option<(String, String, String, String)>, // element, type, message, text
    }

    fn parse(xml: &str) -> (roxmltree::Document<'_>, Vec<(String, Vec<Case>)>) {
        let doc = roxmltree::Document::parse(xml).expect("junit.xml is well-formed XML");
        let mut suites = Vec::new();
        for suite in doc.descendants().filter(|n| n.has_tag_name("testsuite")) {
            let cases = suite
                .children()
                .filter(|n| n.has_tag_name("testcase"))
                .map(|case| Case {
                    name: case.attribute("name").unwrap().to_string(),
                    classname: case.attribute("classname").unwrap_or("").to_string(),
                    outcome: case
                        .children()
                        .find(|n| ["failure", "error", "skipped"].contains(&n.tag_name().name()))
                        .map(|n| {
                            (
                                n.tag_name().name().to_string(),
                                n.attribute("type").unwrap_or("").to_string(),
                                n.attribute("message").unwrap_or("").to_string(),
                                n.text().unwrap_or("").to_string(),
                            )
                        }),
                })
                .collect();
            suites.push((suite.attribute("name").unwrap().to_string(), cases));
        }
        (doc, suites)
    }

    fn attr_usize(node: roxmltree::Node<'_, '_>, name: &str) -> usize {
        node.attribute(name).unwrap().parse().unwrap()
    }

    #[test]
    fn domain_section_is_a_suite_per_cluster_with_exact_findings() {
        let xml = render_junit(&sample_report());
        let (_, suites) = parse(&xml);
        let (_, cases) = suites.iter().find(|(n, _)| n == "domains acme").unwrap();
        assert_eq!(cases.len(), 9);
        let spf = cases
            .iter()
            .find(|c| c.name == "acme-shop.example DOM-SPF SPF posture")
            .unwrap();
        let (element, kind, message, text) = spf.outcome.clone().unwrap();
        assert_eq!((element.as_str(), kind.as_str()), ("failure", "fail"));
        assert_eq!(
            message,
            "SPF for acme-shop.example ends in `+all`: any host may send as this domain"
        );
        assert!(text.starts_with("[medium] SPF for acme-shop.example ends in `+all`"));
        let dkim = cases
            .iter()
            .find(|c| c.name == "acme-shop.example DOM-DKIM DKIM posture")
            .unwrap();
        let (element, _, message, _) = dkim.outcome.clone().unwrap();
        assert_eq!(element, "error");
        assert_eq!(
            message,
            "DNS lookup of TXT `s1._domainkey.acme-shop.example` failed: request timed out"
        );
        assert!(
            cases
                .iter()
                .filter(|c| c.name.starts_with("acme.example "))
                .all(|c| c.outcome.is_none())
        );
    }

    #[test]
    fn totals_count_failures_errors_and_skips() {
        let xml = render_junit(&sample_report());
        let (doc, suites) = parse(&xml);
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        assert_eq!(
            root.attribute("name"),
            Some("carbonio-fleet check backscatter-hardening")
        );
        // mail1 3, mail2 3, mail3 3, mail4 1, mail5 1, store1 3; 3 domains x 3 checks.
        assert_eq!(attr_usize(root, "tests"), 14 + 9);
        // mail2: BS-01 non-compliant, BS-02 masked, EFF-01 fail; mail3: EFF-01 fail;
        // domains: +all, p=none, DKIM missing in LDAP.
        assert_eq!(attr_usize(root, "failures"), 4 + 3);
        // mail4 host key, mail5 unreachable; one DKIM lookup timed out.
        assert_eq!(attr_usize(root, "errors"), 2 + 1);
        // store1: BS-03 and EFF-01 not applicable.
        assert_eq!(attr_usize(root, "skipped"), 2);
        let names: Vec<&str> = suites.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "mail1",
                "mail2",
                "mail3",
                "mail4",
                "mail5",
                "store1",
                "domains acme"
            ]
        );
        for (suite, cases) in &suites {
            assert!(
                cases.iter().all(|c| &c.classname == suite),
                "{suite}: {cases:?}"
            );
        }
    }

    /// A live waiver turns the failure into a skip whose message is the waiver; an expired
    /// one keeps the failure and says since when it counts again.
    #[test]
    fn a_waived_deviation_is_skipped_and_an_expired_waiver_fails_again() {
        let waiver = |expired| WaiverRef {
            justification: "CRM relay (C-1042)".into(),
            expires: "2027-03-31".into(),
            source: "waivers.toml:2".into(),
            scope: "host mail2".into(),
            approved_by: None,
            expired,
        };
        let mut report = sample_report();
        report.hosts[1].controls[0].waiver = Some(waiver(false));
        report.hosts[1].probes[0].waiver = Some(waiver(true));
        let xml = render_junit(&report);
        let (doc, suites) = parse(&xml);
        let mail2 = &suites[1].1;
        let (elem, _, message, text) = mail2[0].outcome.clone().unwrap();
        assert_eq!(elem, "skipped");
        assert_eq!(
            message,
            "waived until 2027-03-31 (waivers.toml:2): CRM relay (C-1042)"
        );
        assert_eq!(text, "expected = TRUE, actual FALSE");
        let (elem, ty, message, _) = mail2[2].outcome.clone().unwrap();
        assert_eq!((elem.as_str(), ty.as_str()), ("failure", "fail"));
        assert!(
            message.starts_with("waiver expired 2027-03-31: expected contains"),
            "{message}"
        );
        let props: Vec<(&str, &str)> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .find(|n| {
                n.attribute("classname") == Some("mail2")
                    && n.attribute("name") == Some("BS-01 Postfix policy daemon enabled")
            })
            .unwrap()
            .descendants()
            .filter(|n| n.has_tag_name("property"))
            .map(|n| (n.attribute("name").unwrap(), n.attribute("value").unwrap()))
            .collect();
        assert!(props.contains(&("waiver", "waived")), "{props:?}");
        assert!(
            props.contains(&("waiver_source", "waivers.toml:2")),
            "{props:?}"
        );
    }

    #[test]
    fn drift_is_a_failure_with_expected_actual_and_evidence() {
        let xml = render_junit(&sample_report());
        let (_doc, suites) = parse(&xml);
        let mail2 = &suites[1].1;
        let bs01 = &mail2[0];
        assert_eq!(bs01.name, "BS-01 Postfix policy daemon enabled");
        let (elem, ty, message, text) = bs01.outcome.clone().unwrap();
        assert_eq!(elem, "failure");
        assert_eq!(ty, "non-compliant");
        assert_eq!(message, "expected = TRUE, actual FALSE");
        assert_eq!(text, "zmprov -l gcf zimbraMtaEnableSmtpdPolicyd → FALSE");

        let (elem, ty, message, text) = mail2[1].outcome.clone().unwrap();
        assert_eq!((elem.as_str(), ty.as_str()), ("failure", "masked"));
        assert_eq!(
            message,
            "expected contains check_policy_service unix:private/policy, \
             actual [reject_invalid_helo_hostname]"
        );
        assert!(
            text.contains("this server's own value: [reject_invalid_helo_hostname]"),
            "{text}"
        );

        let (elem, ty, message, _) = mail2[2].outcome.clone().unwrap();
        assert_eq!((elem.as_str(), ty.as_str()), ("failure", "fail"));
        assert_eq!(
            message,
            "expected contains check_policy_service unix:private/policy, \
             actual reject_non_fqdn_recipient, permit"
        );
    }

    #[test]
    fn failed_host_is_one_connect_error_with_kind_and_fingerprints() {
        let xml = render_junit(&sample_report());
        let (_doc, suites) = parse(&xml);
        let mail4 = &suites[3].1;
        assert_eq!(mail4.len(), 1);
        assert_eq!(mail4[0].name, "connect");
        let (elem, ty, message, text) = mail4[0].outcome.clone().unwrap();
        assert_eq!((elem.as_str(), ty.as_str()), ("error", "hostkey"));
        assert_eq!(
            message,
            "hostkey: host key for `mail4` (203.0.113.4:22) does not match known_hosts"
        );
        assert!(
            text.starts_with("mail4 (203.0.113.4:22) could not be audited [hostkey]: host key"),
            "{text}"
        );
        assert!(
            text.contains("known_hosts expects: SHA256:n1X0nCk9"),
            "{text}"
        );
        assert!(text.contains("server offered: SHA256:Zq7c1J8Y"), "{text}");
        let (elem, ty, _, _) = suites[4].1[0].outcome.clone().unwrap();
        assert_eq!((elem.as_str(), ty.as_str()), ("error", "unreachable"));
    }

    #[test]
    fn compliant_passes_and_not_applicable_is_skipped() {
        let xml = render_junit(&sample_report());
        let (_doc, suites) = parse(&xml);
        assert!(suites[0].1.iter().all(|c| c.outcome.is_none()));
        let store1 = &suites[5].1;
        assert!(store1[0].outcome.is_none());
        assert_eq!(store1[1].outcome.as_ref().unwrap().0, "skipped");
        assert_eq!(store1[2].outcome.as_ref().unwrap().0, "skipped");
    }

    #[test]
    fn findings_and_properties_reach_the_suite() {
        let xml = render_junit(&sample_report());
        let (doc, _) = parse(&xml);
        let mail2 = doc
            .descendants()
            .find(|n| n.has_tag_name("testsuite") && n.attribute("name") == Some("mail2"))
            .unwrap();
        let out = mail2
            .children()
            .find(|n| n.has_tag_name("system-out"))
            .and_then(|n| n.text())
            .unwrap();
        assert!(out.contains("BLOCKING finding PRE-POLICY-SPAWN-USER (critical)"));
        assert!(out.contains(SPAWN_USER_MESSAGE));
        // XML-special characters in the hint survive the round trip.
        assert!(out.contains("zen.spamhaus.org <with a DQS key> & friends"));
        let props: Vec<(&str, &str)> = mail2
            .descendants()
            .filter(|n| n.has_tag_name("property"))
            .map(|n| (n.attribute("name").unwrap(), n.attribute("value").unwrap()))
            .collect();
        assert!(props.contains(&("cluster", "eu-1")));
        assert!(props.contains(&("customer", "ACME Corp")), "report label");
        assert!(props.contains(&("status", "drift")));
        assert!(props.contains(&("platform", "systemd")));
    }

    proptest::proptest! {
        /// Printable text in values and evidence comes back verbatim from a real XML parser;
        /// any text at all (control characters included) still yields well-formed XML.
        #[test]
        fn values_round_trip_through_xml(
            printable in "\\PC*",
            anything in proptest::prelude::any::<String>(),
        ) {
            let mut report = sample_report();
            report.hosts[1].controls[0].actual = printable.clone();
            report.hosts[1].controls[0].evidence = printable.clone();
            report.hosts[1].controls[1].evidence = anything.clone();
            report.hosts[1].findings[0].message = anything;
            let xml = render_junit(&report);
            let (_doc, suites) = parse(&xml);
            let (_, _, message, text) = suites[1].1[0].outcome.clone().unwrap();
            proptest::prop_assert_eq!(message, format!("expected = TRUE, actual {printable}"));
            proptest::prop_assert_eq!(text, printable);
        }
    }

    #[test]
    fn apply_before_after_and_not_attempted() {
        let mut report = sample_report();
        report.hosts[4].status = HostStatus::NotAttempted;
        report.hosts[4].error = None;
        let xml = render_junit(&report);
        let (doc, suites) = parse(&xml);
        let (elem, _, message, _) = suites[4].1[0].outcome.clone().unwrap();
        assert_eq!(elem, "skipped");
        assert!(message.starts_with("not attempted"), "{message}");
        let before = doc
            .descendants()
            .find(|n| n.has_tag_name("property") && n.attribute("name") == Some("before"))
            .unwrap();
        assert_eq!(before.attribute("value"), Some("FALSE"));
    }
}
