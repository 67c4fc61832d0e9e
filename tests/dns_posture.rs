//! Domain posture over a real DNS server: an in-process hickory server on 127.0.0.1
//! serves zones with good and broken SPF, DKIM and DMARC; the resolver under test talks
//! to it over UDP/TCP. Each case asserts the exact finding text of the report.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

#[path = "support/dns.rs"]
mod dns_server;

use std::net::IpAddr;
use std::time::Duration;

use carbonio_fleet::dns::dkim::DkimLdap;
use carbonio_fleet::dns::{
    ClusterDomains, DnsResolver, DomainFacts, ResolverSettings, dkim, dmarc, spf,
};
use carbonio_fleet::engine::posture::{check_result, evaluate_cluster, run_check};
use carbonio_fleet::playbook::{DnsCheck, Probe, ProbeKind, Severity};
use carbonio_fleet::report::model::ProbeVerdict;
use dns_server::DnsServer;

const KEY: &str =
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu5Ja0yG1vZ3L8Hk2qfT7yq+W0sYl3Jb4cGkP9e/xv2QIDAQAB";
const OTHER_KEY: &str =
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzIDAQAB";

/// The test zone. Every domain is `<case>.example`.
fn zone() -> String {
    format!(
        r#"$ORIGIN example.
$TTL 300
@ IN SOA ns.example. hostmaster.example. 1 3600 600 86400 300
@ IN NS ns.example.
ns IN A 127.0.0.1

; --- good: SPF through an include, DKIM matching (key split in two strings), DMARC reject
good IN TXT "v=spf1 ip4:203.0.113.0/28 include:_spf.good.example -all"
good IN TXT "google-site-verification=abc"
good IN MX 10 relay.good.example.
_spf.good IN TXT "v=spf1 ip6:2001:db8::/32 a:relay.good.example ~all"
relay.good IN A 198.51.100.7
s1._domainkey.good IN TXT "v=DKIM1; k=rsa; " "p={k1}" "{k2}"
_dmarc.good IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@good.example; sp=quarantine"

; --- SPF broken
two IN TXT "v=spf1 ip4:203.0.113.10 -all"
two IN TXT "v=spf1 include:_spf.good.example -all"
plusall IN TXT "v=spf1 ip4:203.0.113.10 +all"
neutral IN TXT "v=spf1 ip4:203.0.113.10 ?all"
noall IN TXT "v=spf1 ip4:203.0.113.10"
nospf IN TXT "google-site-verification=xyz"
uncovered IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
redir IN TXT "v=spf1 redirect=_spf.good.example"
; 11 DNS-querying terms through nested includes
deep IN TXT "v=spf1 include:a.deep.example include:b.deep.example -all"
a.deep IN TXT "v=spf1 a:relay.good.example mx:good.example include:c.deep.example ip4:203.0.113.10 -all"
c.deep IN TXT "v=spf1 a:relay.good.example a:relay.good.example a:relay.good.example -all"
b.deep IN TXT "v=spf1 include:d.deep.example a:relay.good.example -all"
d.deep IN TXT "v=spf1 exists:relay.good.example -all"
; exactly 10: within the limit
ten IN TXT "v=spf1 include:b.deep.example include:c.deep.example a:relay.good.example mx:good.example ip4:203.0.113.10 -all"
; 3 void lookups
void IN TXT "v=spf1 a:nx1.void.example mx:nx2.void.example exists:nx3.void.example ip4:203.0.113.10 -all"
; macros (RFC 7208 §7): exists on the connecting address, an include named by a macro
macro IN TXT "v=spf1 exists:%{{i}}._spf.%{{d}} include:spf.%{{d}} -all"
203.0.113.10._spf.macro IN A 127.0.0.2
spf.macro IN TXT "v=spf1 ip4:198.51.100.0/24 -all"
; include of a domain without SPF
badinc IN TXT "v=spf1 include:nospf.example ip4:203.0.113.10 -all"

; --- DKIM broken
s1._domainkey.mismatch IN TXT "v=DKIM1; k=rsa; p={other}"
s1._domainkey.revoked IN TXT "v=DKIM1; k=rsa; p="
s1._domainkey.nov IN TXT "k=rsa; p={key}"

; --- DMARC variants
_dmarc.none IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@none.example"
_dmarc.quar IN TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@quar.example"
_dmarc.norua IN TXT "v=DMARC1; p=reject"
_dmarc.notfirst IN TXT "p=reject; v=DMARC1; rua=mailto:x@notfirst.example"
_dmarc.dup IN TXT "v=DMARC1; p=reject; rua=mailto:a@dup.example"
_dmarc.dup IN TXT "v=DMARC1; p=none; rua=mailto:b@dup.example"
; RFC 9989: a hosted subdomain covered by its parent's record; testing mode; removed tags
_dmarc.parent IN TXT "v=DMARC1; p=reject; sp=quarantine; np=reject; rua=mailto:d@parent.example"
_dmarc.weakparent IN TXT "v=DMARC1; p=reject; sp=none; rua=mailto:d@weakparent.example"
_dmarc.testing IN TXT "v=DMARC1; p=reject; t=y; rua=mailto:d@testing.example"
_dmarc.pct IN TXT "v=DMARC1; p=quarantine; pct=50; rf=afrf; ri=86400; rua=mailto:d@pct.example"
"#,
        k1 = &KEY[..40],
        k2 = &KEY[40..],
        other = OTHER_KEY,
        key = KEY,
    )
}

async fn server() -> DnsServer {
    DnsServer::start(&[("example.", &zone())]).await
}

fn resolver(s: &DnsServer) -> DnsResolver {
    DnsResolver::new(&ResolverSettings {
        servers: vec![s.addr],
        timeout: Duration::from_secs(2),
        attempts: 2,
        ..Default::default()
    })
    .unwrap()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

/// The finding messages of an SPF check.
async fn spf_findings(domain: &str, egress: &[&str]) -> Vec<String> {
    let s = server().await;
    let r = resolver(&s);
    let out = spf::check(&r, domain, &ips(egress)).await.unwrap();
    out.findings.into_iter().map(|f| f.message).collect()
}

#[tokio::test]
async fn spf_good_record_passes_with_egress_covered() {
    let s = server().await;
    let r = resolver(&s);
    let out = spf::check(
        &r,
        "good.example",
        &ips(&["203.0.113.10", "198.51.100.7", "2001:db8::25"]),
    )
    .await
    .unwrap();
    assert_eq!(out.findings, vec![]);
    assert!(
        out.notes.contains(&"ends in `-all`".to_string()),
        "{:?}",
        out.notes
    );
    assert!(
        out.notes.contains(&"2 of 10 DNS lookups".to_string()),
        "{:?}",
        out.notes
    );
    assert!(
        out.notes
            .contains(&"egress 198.51.100.7 authorized by `include:_spf.good.example`".to_string())
    );
    assert!(out.evidence.contains(
        &"good.example: v=spf1 ip4:203.0.113.0/28 include:_spf.good.example -all".to_string()
    ));
}

#[tokio::test]
async fn spf_two_records() {
    assert_eq!(
        spf_findings("two.example", &[]).await,
        [
            "SPF for two.example has 2 `v=spf1` records at the apex: receivers treat this as a permanent error (RFC 7208 §4.5)"
        ]
    );
}

#[tokio::test]
async fn spf_plus_all() {
    assert_eq!(
        spf_findings("plusall.example", &["203.0.113.10"]).await,
        ["SPF for plusall.example ends in `+all`: any host may send as this domain"]
    );
}

#[tokio::test]
async fn spf_neutral_all() {
    assert_eq!(
        spf_findings("neutral.example", &["203.0.113.10"]).await,
        [
            "SPF for neutral.example ends in `?all`: mail from any host gets a neutral result, which receivers do not reject"
        ]
    );
}

#[tokio::test]
async fn spf_without_all() {
    assert_eq!(
        spf_findings("noall.example", &["203.0.113.10"]).await,
        [
            "SPF for noall.example has no `all` mechanism: mail from unlisted hosts gets a neutral result (end it with `-all` or `~all`)"
        ]
    );
}

#[tokio::test]
async fn spf_missing() {
    assert_eq!(
        spf_findings("nospf.example", &[]).await,
        ["SPF for nospf.example is missing: no TXT record at the apex starts with `v=spf1`"]
    );
}

#[tokio::test]
async fn spf_eleven_lookups_through_nested_includes() {
    assert_eq!(
        spf_findings("deep.example", &["203.0.113.10"]).await,
        [
            "SPF for deep.example needs 11 DNS lookups after expanding includes and redirects: more than 10 is a permanent error (RFC 7208 §4.6.4)"
        ]
    );
}

#[tokio::test]
async fn spf_ten_lookups_is_within_the_limit() {
    let s = server().await;
    let r = resolver(&s);
    let out = spf::check(&r, "ten.example", &ips(&["203.0.113.10"]))
        .await
        .unwrap();
    assert_eq!(out.findings, vec![]);
    assert!(
        out.notes.contains(&"10 of 10 DNS lookups".to_string()),
        "{:?}",
        out.notes
    );
}

#[tokio::test]
async fn spf_three_void_lookups() {
    assert_eq!(
        spf_findings("void.example", &["203.0.113.10"]).await,
        [
            "SPF for void.example has 3 void lookups (`a:nx1.void.example`, `mx:nx2.void.example`, `exists:nx3.void.example`): more than 2 is a permanent error (RFC 7208 §4.6.4)"
        ]
    );
}

#[tokio::test]
async fn spf_include_without_spf_record() {
    assert_eq!(
        spf_findings("badinc.example", &["203.0.113.10"]).await,
        [
            "SPF for badinc.example uses `include:nospf.example`, which publishes no SPF record: a permanent error (RFC 7208 §5.2)"
        ]
    );
}

/// SPF macros are expanded as a receiver would for mail from the egress address:
/// `exists:%{i}._spf.%{d}` authorizes exactly the addresses with an A record there, and
/// an include named with `%{d}` is followed.
#[tokio::test]
async fn spf_macros_and_exists_are_evaluated_for_the_egress() {
    let s = server().await;
    let r = resolver(&s);
    let out = spf::check(&r, "macro.example", &ips(&["203.0.113.10", "198.51.100.7"]))
        .await
        .unwrap();
    assert_eq!(out.findings, vec![]);
    assert!(
        out.notes
            .contains(&"egress 203.0.113.10 authorized by `exists:%{i}._spf.%{d}`".to_string())
            && out
                .notes
                .contains(&"egress 198.51.100.7 authorized by `include:spf.%{d}`".to_string()),
        "{:?}",
        out.notes
    );
    assert_eq!(
        spf_findings("macro.example", &["203.0.113.99"]).await,
        ["SPF for macro.example does not authorize egress address 203.0.113.99: it matches `-all`"]
    );
}

#[tokio::test]
async fn spf_egress_not_covered() {
    assert_eq!(
        spf_findings("uncovered.example", &["203.0.113.10", "192.0.2.25"]).await,
        [
            "SPF for uncovered.example does not authorize egress address 203.0.113.10: it matches `-all`"
        ]
    );
}

#[tokio::test]
async fn spf_redirect_supplies_the_ending_and_the_coverage() {
    assert_eq!(
        spf_findings("redir.example", &["198.51.100.7"]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        spf_findings("redir.example", &["203.0.113.10"]).await,
        ["SPF for redir.example does not authorize egress address 203.0.113.10: it matches `~all`"]
    );
}

fn ldap(selector: &str, key: &str) -> DkimLdap {
    DkimLdap {
        selector: Some(selector.into()),
        identity: Some("@x".into()),
        // As zmdkimkeyutil stores it: the whole DNS record text, over several lines.
        public_key: Some(format!(
            "{selector}._domainkey\tIN\tTXT\t( \"v=DKIM1; k=rsa; \"\n\t  \"p={}\"\n\t  \"{}\" )  ; ----- DKIM key {selector}",
            &key[..30],
            &key[30..]
        )),
    }
}

async fn dkim_findings(domain: &str, l: &DkimLdap) -> Vec<String> {
    let s = server().await;
    let r = resolver(&s);
    let out = dkim::check(&r, domain, l).await.unwrap();
    out.findings.into_iter().map(|f| f.message).collect()
}

#[tokio::test]
async fn dkim_matching_key_passes() {
    assert_eq!(
        dkim_findings("good.example", &ldap("s1", KEY)).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn dkim_mismatching_key() {
    assert_eq!(
        dkim_findings("mismatch.example", &ldap("s1", KEY)).await,
        [
            "DKIM key at `s1._domainkey.mismatch.example` differs from the DKIMPublicKey in LDAP: mail signed for mismatch.example fails verification"
        ]
    );
}

#[tokio::test]
async fn dkim_missing_record() {
    assert_eq!(
        dkim_findings("nodkim.example", &ldap("s1", KEY)).await,
        [
            "DKIM for nodkim.example has no TXT record at `s1._domainkey.nodkim.example`: receivers cannot verify its signatures"
        ]
    );
}

#[tokio::test]
async fn dkim_missing_in_ldap() {
    assert_eq!(
        dkim_findings("good.example", &DkimLdap::default()).await,
        [
            "DKIM for good.example is not set up: no DKIMSelector/DKIMPublicKey in LDAP (create a key with `zmdkimkeyutil -a -d good.example`)"
        ]
    );
}

#[tokio::test]
async fn dkim_signing_disabled_and_revoked_key() {
    let mut l = ldap("s1", KEY);
    l.identity = None;
    assert_eq!(
        dkim_findings("revoked.example", &l).await,
        [
            "DKIM signing for revoked.example is disabled: DKIMIdentity is empty in LDAP",
            "DKIM key at `s1._domainkey.revoked.example` is revoked (empty `p=`): signatures of revoked.example fail verification"
        ]
    );
}

#[tokio::test]
async fn dkim_record_without_version() {
    assert_eq!(
        dkim_findings("nov.example", &ldap("s1", KEY)).await,
        ["DKIM record at `s1._domainkey.nov.example` does not start with `v=DKIM1`"]
    );
}

async fn dmarc_findings(domain: &str) -> Vec<(String, bool)> {
    let s = server().await;
    let r = resolver(&s);
    let out = dmarc::check(&r, domain).await.unwrap();
    out.findings
        .into_iter()
        .map(|f| (f.message, f.lesser))
        .collect()
}

#[tokio::test]
async fn dmarc_reject_with_rua_passes_and_notes_sp() {
    let s = server().await;
    let r = resolver(&s);
    let out = dmarc::check(&r, "good.example").await.unwrap();
    assert_eq!(out.findings, vec![]);
    assert!(
        out.notes
            .contains(&"subdomain policy sp=quarantine".to_string()),
        "{:?}",
        out.notes
    );
}

#[tokio::test]
async fn dmarc_quarantine_passes() {
    assert_eq!(dmarc_findings("quar.example").await, vec![]);
}

#[tokio::test]
async fn dmarc_none_is_a_lesser_finding() {
    assert_eq!(
        dmarc_findings("none.example").await,
        [("DMARC for none.example has `p=none`: receivers only monitor, forged mail is still delivered".to_string(), true)]
    );
}

#[tokio::test]
async fn dmarc_missing() {
    assert_eq!(
        dmarc_findings("missing.example").await,
        [(
            "DMARC for missing.example is missing: no TXT record at `_dmarc.missing.example`, nor at its parents' (`_dmarc.example`)"
                .to_string(),
            false
        )]
    );
}

#[tokio::test]
async fn dmarc_without_rua() {
    assert_eq!(
        dmarc_findings("norua.example").await,
        [("DMARC for norua.example has no `rua=`: nobody receives aggregate reports about forged mail".to_string(), false)]
    );
}

#[tokio::test]
async fn dmarc_version_not_first() {
    assert_eq!(
        dmarc_findings("notfirst.example").await,
        [("DMARC record at `_dmarc.notfirst.example` does not start with `v=DMARC1`: receivers ignore it".to_string(), false)]
    );
}

/// RFC 9989's tree walk: a hosted subdomain without its own record is covered by its
/// parent's, whose `sp=` applies (not "missing"); a weak `sp=` is that subdomain's finding.
#[tokio::test]
async fn dmarc_subdomain_covered_by_its_parent() {
    let s = server().await;
    let r = resolver(&s);
    let out = dmarc::check(&r, "mail.eu.parent.example").await.unwrap();
    assert_eq!(out.findings, vec![]);
    assert!(
        out.notes.contains(&"no record at `_dmarc.mail.eu.parent.example`: covered by `_dmarc.parent.example` (RFC 9989 tree walk), whose `sp=` applies".to_string())
            && out.notes.contains(&"sp=quarantine".to_string())
            && out.notes.contains(&"non-existent subdomain policy np=reject".to_string()),
        "{:?}",
        out.notes
    );
    assert_eq!(
        dmarc_findings("sub.weakparent.example").await,
        [("DMARC for sub.weakparent.example has `sp=none`: receivers only monitor, forged mail is still delivered".to_string(), true)]
    );
}

#[tokio::test]
async fn dmarc_testing_mode_and_removed_tags() {
    assert_eq!(
        dmarc_findings("testing.example").await,
        [("DMARC for testing.example has `t=y` (testing): receivers apply the policy one step softer (reject as quarantine, quarantine as none)".to_string(), true)]
    );
    let s = server().await;
    let r = resolver(&s);
    let out = dmarc::check(&r, "pct.example").await.unwrap();
    assert_eq!(
        out.findings
            .iter()
            .map(|f| (f.message.as_str(), f.lesser))
            .collect::<Vec<_>>(),
        [(
            "DMARC for pct.example has `pct=50`, a tag RFC 9989 removed: receivers that follow it apply the policy to all mail; use `t=y` to test",
            true
        )]
    );
    assert!(
        out.notes
            .contains(&"`rf=afrf`: a tag RFC 9989 removed (ignored)".to_string())
            && out
                .notes
                .contains(&"`ri=86400`: a tag RFC 9989 removed (ignored)".to_string()),
        "{:?}",
        out.notes
    );
}

#[tokio::test]
async fn dmarc_two_records() {
    assert_eq!(
        dmarc_findings("dup.example").await,
        [("DMARC for dup.example has 2 records at `_dmarc.dup.example`: receivers ignore them all (RFC 7489 §6.6.3)".to_string(), false)]
    );
}

fn probe(id: &str, check: DnsCheck, severity: Severity) -> Probe {
    Probe {
        id: id.into(),
        title: id.into(),
        kind: ProbeKind::Dns { check },
        expect: None,
        severity,
        rationale: String::new(),
        remediation: String::new(),
    }
}

#[tokio::test]
async fn a_refused_lookup_is_an_error_verdict_with_its_cause() {
    let s = server().await;
    let r = resolver(&s);
    // Outside every zone the server holds: it answers REFUSED.
    let facts = DomainFacts {
        domain: "elsewhere.test".into(),
        ..Default::default()
    };
    let outcome = run_check(&r, DnsCheck::Dmarc, &facts, &[]).await;
    let c = check_result(
        &probe("DOM-DMARC", DnsCheck::Dmarc, Severity::Low),
        DnsCheck::Dmarc,
        outcome,
    );
    assert_eq!(c.verdict, ProbeVerdict::Error);
    let e = c.error.unwrap();
    assert!(
        e.starts_with("DNS lookup of TXT `_dmarc.elsewhere.test` failed: "),
        "{e}"
    );
    assert!(e.contains(&s.addr.to_string()), "{e}");
}

#[tokio::test]
async fn a_silent_server_times_out_into_an_error_never_a_pass() {
    // Bound, never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let r = DnsResolver::new(&ResolverSettings {
        servers: vec![silent.local_addr().unwrap()],
        timeout: Duration::from_millis(300),
        attempts: 1,
        ..Default::default()
    })
    .unwrap();
    let facts = DomainFacts {
        domain: "good.example".into(),
        ..Default::default()
    };
    for check in [DnsCheck::Spf, DnsCheck::Dmarc] {
        let outcome = run_check(&r, check, &facts, &[]).await;
        let c = check_result(&probe("P", check, Severity::Medium), check, outcome);
        assert_eq!(c.verdict, ProbeVerdict::Error, "{check:?}");
        assert!(c.error.unwrap().contains("failed"));
    }
}

#[tokio::test]
async fn lookups_are_cached_for_the_run() {
    let s = server().await;
    let r = resolver(&s);
    let first = spf::check(&r, "deep.example", &ips(&["203.0.113.10"]))
        .await
        .unwrap();
    let asked = r.questions();
    // The server is gone: the same check must still come out the same, from the cache.
    s.stop().await;
    let again = spf::check(&r, "deep.example", &ips(&["203.0.113.10"]))
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(r.questions(), asked);
    // Another domain sharing the includes adds only its own names.
    let _ = spf::check(&r, "deep.example", &[]).await.unwrap();
    assert_eq!(r.questions(), asked);
}

#[tokio::test]
async fn a_cluster_section_lists_every_domain_and_check() {
    let s = server().await;
    let r = resolver(&s);
    let probes = vec![
        probe("DOM-SPF", DnsCheck::Spf, Severity::Medium),
        probe("DOM-DKIM", DnsCheck::Dkim, Severity::Medium),
        probe("DOM-DMARC", DnsCheck::Dmarc, Severity::Medium),
    ];
    let report = evaluate_cluster(
        &r,
        &probes,
        ClusterDomains {
            cluster: "acme".into(),
            read_on: Some("mta1.acme.example".into()),
            egress: ips(&["203.0.113.10"]),
            domains: Ok(vec![
                DomainFacts {
                    domain: "good.example".into(),
                    alias: false,
                    dkim: ldap("s1", KEY),
                },
                DomainFacts {
                    domain: "none.example".into(),
                    alias: true,
                    dkim: DkimLdap::default(),
                },
            ]),
        },
    )
    .await;
    assert_eq!(report.resolver, s.addr.to_string());
    assert_eq!(report.domains.len(), 2);
    let good = &report.domains[0];
    assert_eq!(
        good.checks
            .iter()
            .map(|c| (c.check.as_str(), c.verdict))
            .collect::<Vec<_>>(),
        [
            ("spf", ProbeVerdict::Pass),
            ("dkim", ProbeVerdict::Pass),
            ("dmarc", ProbeVerdict::Pass)
        ]
    );
    let none = &report.domains[1];
    assert!(none.alias);
    assert_eq!(none.checks[0].verdict, ProbeVerdict::Fail); // no SPF at all
    assert_eq!(none.checks[1].verdict, ProbeVerdict::Fail); // no DKIM in LDAP
    assert_eq!(none.checks[2].findings[0].severity, "low"); // p=none, one level lower
}

/// The simulated fleet stores its DKIM keys in LDAP as zmdkimkeyutil does (the whole
/// record text, over several lines); the tool's reader finds in it the key the fleet's
/// DNS server publishes for a domain in good standing.
#[test]
fn the_tool_reads_the_simulated_ldap_key_that_dns_publishes() {
    use carbonio_fleet::dns::dkim::key_of;
    use carbonio_sim::dns::{self as sim_dns, DomainQuality, SELECTOR};

    let cluster = sim_dns::ClusterDomains {
        cluster: "c001".into(),
        quality: DomainQuality::Good,
        egress: sim_dns::egress_of(0),
    };
    let entries = sim_dns::domain_entries(&cluster);
    let (domain, attrs) = &entries[1];
    assert_eq!(domain, "c001.example");
    let in_ldap = key_of(&attrs["DKIMPublicKey"][0]).expect("a key in LDAP");
    let zone = sim_dns::zone_text(std::slice::from_ref(&cluster));
    let record = zone
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{SELECTOR}._domainkey.{domain}. IN TXT ")))
        .expect("the DKIM record in the zone");
    assert_eq!(key_of(record).as_deref(), Some(in_ldap.as_str()));
    assert!(in_ldap.len() > 300, "{in_ldap}");
}

/// A sweep of a simulated fleet (real SSH servers, their own DNS server): the domain
/// section is in report.json, junit.xml, report.html and metrics.prom, with the findings
/// each cluster's posture implies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_of_the_simulated_fleet_shows_domains_in_every_format() {
    use carbonio_fleet::engine::events::Events;
    use carbonio_fleet::engine::run::{RunOptions, check};
    use carbonio_sim::{Fleet, FleetSpec};

    let dir = tempfile::tempdir().unwrap();
    let mut spec =
        FleetSpec::from_mix(3, "compliant=1,half-compliant=1,non-compliant=1", 1).unwrap();
    let mut fleet = None;
    for attempt in 0..20u16 {
        spec.port_base = 24000 + attempt * 53 + (std::process::id() % 50) as u16;
        if let Ok(f) = Fleet::start(spec.clone(), &dir.path().join("fleet")).await {
            fleet = Some(f);
            break;
        }
    }
    let fleet = fleet.expect("the simulated fleet starts");
    let reports = dir.path().join("reports");
    let opts = RunOptions {
        inventory: fleet.inventory_path(),
        playbook: None,
        limit: None,
        forks: 8,
        report_dir: reports.clone(),
        json: false,
        metrics_file: None,
        shard: None,
        ssh_config: None,
        split_by_group: false,
        controls: None,
        skip_controls: Vec::new(),
        waivers: None,
    };
    let (_interrupter, interrupts) = carbonio_fleet::engine::interrupt::channel();
    let code = check(&opts, &interrupts, Events::none())
        .await
        .expect("the check runs")
        .exit_code()
        .code();
    // One prov for the gather on each node, one more per cluster for the domains.
    let provs: u64 = fleet.nodes().iter().map(|n| n.prov_invocations()).sum();
    fleet.shutdown().await;
    assert_eq!(code, carbonio_fleet::exit::ExitCode::Drift.code());
    assert_eq!(provs, 3 + 3);

    let latest = reports.join("latest");
    let report: carbonio_fleet::report::model::Report =
        serde_json::from_str(&std::fs::read_to_string(latest.join("report.json")).unwrap())
            .unwrap();
    let clusters: Vec<&str> = report.domains.iter().map(|d| d.cluster.as_str()).collect();
    assert_eq!(clusters, ["c001", "c002", "c003"]);
    let messages = |cluster: &str| -> Vec<String> {
        report
            .domains
            .iter()
            .find(|d| d.cluster == cluster)
            .unwrap()
            .domains
            .iter()
            .flat_map(|p| p.checks.iter())
            .flat_map(|c| {
                c.findings
                    .iter()
                    .map(|f| f.message.clone())
                    .chain(c.error.clone())
            })
            .collect()
    };
    let good = &report.domains[0];
    assert_eq!(good.read_on.as_deref(), Some("mta1.c001.sim.example"));
    assert_eq!(
        good.domains
            .iter()
            .map(|p| (p.domain.as_str(), p.alias))
            .collect::<Vec<_>>(),
        [("c001-alias.example", true), ("c001.example", false)]
    );
    assert_eq!(messages("c001"), Vec::<String>::new());
    assert_eq!(
        messages("c002"),
        [
            "DKIM for c002-alias.example is not set up: no DKIMSelector/DKIMPublicKey in LDAP (create a key with `zmdkimkeyutil -a -d c002-alias.example`)",
            "DMARC for c002-alias.example has `p=none`: receivers only monitor, forged mail is still delivered",
            "DKIM key at `sim1._domainkey.c002.example` differs from the DKIMPublicKey in LDAP: mail signed for c002.example fails verification",
            "DMARC for c002.example has `p=none`: receivers only monitor, forged mail is still delivered",
        ]
    );
    assert_eq!(
        messages("c003"),
        [
            "SPF for c003-alias.example ends in `+all`: any host may send as this domain",
            "DKIM for c003-alias.example is not set up: no DKIMSelector/DKIMPublicKey in LDAP (create a key with `zmdkimkeyutil -a -d c003-alias.example`)",
            "DMARC for c003-alias.example is missing: no TXT record at `_dmarc.c003-alias.example`, nor at its parents' (`_dmarc.example`)",
            "SPF for c003.example ends in `+all`: any host may send as this domain",
            "DKIM for c003.example is not set up: no DKIMSelector/DKIMPublicKey in LDAP (create a key with `zmdkimkeyutil -a -d c003.example`)",
            "DMARC for c003.example is missing: no TXT record at `_dmarc.c003.example`, nor at its parents' (`_dmarc.example`)",
        ]
    );

    let junit = std::fs::read_to_string(latest.join("junit.xml")).unwrap();
    assert!(
        junit.contains("<testsuite name=\"domains c003\""),
        "{junit}"
    );
    assert!(
        junit.contains("SPF for c003.example ends in `+all`: any host may send as this domain")
    );
    let html = std::fs::read_to_string(latest.join("report.html")).unwrap();
    assert!(html.contains("<b>Cluster c002</b>"));
    assert!(html.contains("DMARC for c002.example has `p=none`"));
    let metrics = std::fs::read_to_string(latest.join("metrics.prom")).unwrap();
    assert!(metrics.contains(
        "carbonio_fleet_domain_check{cluster=\"c001\",domain=\"c001.example\",check=\"spf\",verdict=\"pass\",playbook=\"backscatter-hardening\"} 1"
    ), "{metrics}");
    assert!(metrics.contains(
        "carbonio_fleet_domain_check{cluster=\"c003\",domain=\"c003.example\",check=\"dmarc\",verdict=\"fail\",playbook=\"backscatter-hardening\"} 1"
    ));
}

/// A resolver that never answers costs one short wait, not one per lookup: the probe
/// finds it silent, and every lookup after that fails at once with that one reason,
/// without asking (the silent server receives nothing more).
#[tokio::test]
async fn a_silent_resolver_fails_fast_with_one_reason() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    silent.set_nonblocking(true).unwrap();
    let r = DnsResolver::new(&ResolverSettings {
        servers: vec![silent.local_addr().unwrap()],
        timeout: Duration::from_secs(1),
        attempts: 1,
        ..Default::default()
    })
    .unwrap();
    let why = r.probe(".").await.unwrap_err();
    assert!(why.contains("did not answer"), "{why}");
    assert_eq!(r.silent(), Some(why.as_str()));
    let asked = |s: &std::net::UdpSocket| {
        let mut buf = [0u8; 512];
        std::iter::from_fn(|| s.recv(&mut buf).ok()).count()
    };
    let probes = asked(&silent);
    assert!(probes >= 1, "the probe asked the server");
    for d in ["good.example", "two.example", "none.example"] {
        let e = r.txt(d).await.unwrap_err();
        assert!(e.cause.starts_with("not asked: "), "{e}");
        assert!(e.cause.contains("did not answer"), "{e}");
    }
    assert_eq!(asked(&silent), 0, "a lookup asked the silent server again");
}

/// Past the run's DNS budget nothing more is asked; a server that answers is not
/// "silent".
#[tokio::test]
async fn the_dns_budget_bounds_the_run() {
    let s = server().await;
    let r = DnsResolver::new(&ResolverSettings {
        servers: vec![s.addr],
        budget: Duration::ZERO,
        ..Default::default()
    })
    .unwrap();
    assert!(r.probe(".").await.is_ok());
    let e = r.txt("good.example").await.unwrap_err();
    assert!(e.cause.contains("DNS budget"), "{e}");
    assert_eq!(r.silent(), None);
}
