//! The SPF check of one domain (RFC 7208): exactly one `v=spf1` TXT record at the apex,
//! an ending that rejects or soft-fails unlisted hosts, at most 10 DNS-querying terms and
//! at most 2 void lookups after expanding `include` and `redirect`, and the cluster's
//! egress addresses authorized. It evaluates the record the way a receiver would, from
//! the machine running the tool, for mail from `postmaster@DOMAIN` via each egress
//! address: macros are expanded ([`super::spf_macros`]) and `exists` is asked; only
//! `ptr` (which needs the sender's reverse DNS) is never a match. It never decides a pass
//! when a lookup failed.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use super::resolver::{DnsResolver, LookupError, normalize};
use super::spf_macros::MacroContext;
use super::{CheckOutcome, Issue};

/// RFC 7208 §4.6.4: at most 10 terms that cause DNS queries.
pub const LOOKUP_LIMIT: usize = 10;
/// RFC 7208 §4.6.4: at most 2 void lookups.
pub const VOID_LIMIT: usize = 2;
/// Expansion stops here so that a pathological tree cannot keep the run busy.
const EXPANSION_CAP: usize = 40;

/// An SPF qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

impl Qualifier {
    fn sign(self) -> char {
        match self {
            Qualifier::Pass => '+',
            Qualifier::Fail => '-',
            Qualifier::SoftFail => '~',
            Qualifier::Neutral => '?',
        }
    }
}

/// A mechanism of an SPF record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    All,
    Include(String),
    A {
        domain: Option<String>,
        v4: u8,
        v6: u8,
    },
    Mx {
        domain: Option<String>,
        v4: u8,
        v6: u8,
    },
    Ptr(Option<String>),
    Ip(IpAddr, u8),
    Exists(String),
}

/// One parsed record: mechanisms in order plus the modifiers that matter here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub terms: Vec<(Qualifier, Mechanism, String)>,
    pub redirect: Option<String>,
}

/// Whether a TXT string is an SPF record (`v=spf1` then the end or a space).
pub fn is_spf(txt: &str) -> bool {
    let t = txt.trim_start();
    t.len() >= 6
        && t[..6].eq_ignore_ascii_case("v=spf1")
        && t[6..].chars().next().is_none_or(|c| c == ' ')
}

/// Parses a record (starting `v=spf1`). `Err` names the first term that is not valid.
pub fn parse(record: &str) -> Result<Record, String> {
    let mut out = Record::default();
    for term in record.split_ascii_whitespace().skip(1) {
        let lower = term.to_ascii_lowercase();
        // A modifier is `name=value` where the name comes before any `:` or `/`.
        if let Some(eq) = lower.find('=')
            && lower[..eq]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            && !lower[..eq].is_empty()
        {
            if &lower[..eq] == "redirect" {
                out.redirect = Some(term[eq + 1..].to_string());
            }
            continue;
        }
        let (q, rest) = match term.chars().next() {
            Some('+') => (Qualifier::Pass, &term[1..]),
            Some('-') => (Qualifier::Fail, &term[1..]),
            Some('~') => (Qualifier::SoftFail, &term[1..]),
            Some('?') => (Qualifier::Neutral, &term[1..]),
            _ => (Qualifier::Pass, term),
        };
        let split = rest.find([':', '/']).unwrap_or(rest.len());
        let name = rest[..split].to_ascii_lowercase();
        let arg = &rest[split..];
        let domain_arg = || arg.strip_prefix(':').map(str::to_string);
        let bad = || term.to_string();
        let m = match name.as_str() {
            "all" if arg.is_empty() => Mechanism::All,
            "include" => {
                Mechanism::Include(domain_arg().filter(|d| !d.is_empty()).ok_or_else(bad)?)
            }
            "exists" => Mechanism::Exists(domain_arg().filter(|d| !d.is_empty()).ok_or_else(bad)?),
            "ptr" => Mechanism::Ptr(domain_arg()),
            "a" | "mx" => {
                let (domain, v4, v6) = domain_and_cidr(arg).ok_or_else(bad)?;
                if name == "a" {
                    Mechanism::A { domain, v4, v6 }
                } else {
                    Mechanism::Mx { domain, v4, v6 }
                }
            }
            "ip4" | "ip6" => {
                let spec = arg.strip_prefix(':').ok_or_else(bad)?;
                let (addr, len) = match spec.split_once('/') {
                    Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| bad())?)),
                    None => (spec, None),
                };
                let ip: IpAddr = addr.parse().map_err(|_| bad())?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                if (name == "ip4") != ip.is_ipv4() || len.is_some_and(|l| l > max) {
                    return Err(bad());
                }
                Mechanism::Ip(ip, len.unwrap_or(max))
            }
            _ => return Err(bad()),
        };
        out.terms.push((q, m, term.to_string()));
    }
    Ok(out)
}

/// `[:domain][/v4][//v6]` of `a` and `mx`.
fn domain_and_cidr(arg: &str) -> Option<(Option<String>, u8, u8)> {
    let (domain, cidr) = match arg.strip_prefix(':') {
        Some(rest) => match rest.find('/') {
            Some(i) => (Some(rest[..i].to_string()), &rest[i..]),
            None => (Some(rest.to_string()), ""),
        },
        None => (None, arg),
    };
    if domain.as_deref() == Some("") {
        return None;
    }
    let (v4, v6) = if cidr.is_empty() {
        (32, 128)
    } else if let Some(v6) = cidr.strip_prefix("//") {
        (32, v6.parse().ok()?)
    } else {
        let c = cidr.strip_prefix('/')?;
        match c.split_once("//") {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => (c.parse().ok()?, 128),
        }
    };
    (v4 <= 32 && v6 <= 128).then_some((domain, v4, v6))
}

/// Whether `ip` lies in `net/len`.
pub fn in_cidr(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len as u32)
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len as u32)
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// A domain-spec of a record of `domain` expanded without a connecting address (the
/// tree walk): `None` when it needs one (`%{i}`, `%{v}`) or is malformed.
fn expand(spec: &str, domain: &str) -> Option<String> {
    expand_for(spec, domain, None)
}

/// A domain-spec of a record of `domain` expanded for mail from `postmaster@` the checked
/// domain via `ip` ([`super::spf_macros`]).
fn expand_for(spec: &str, domain: &str, from: Option<(&str, IpAddr)>) -> Option<String> {
    let ctx = MacroContext {
        domain,
        ip: from.map(|(_, ip)| ip),
        ..MacroContext::postmaster(from.map_or(domain, |(top, _)| top), None)
    };
    super::spf_macros::expand(spec, &ctx).map(|s| normalize(&s))
}

/// What expanding the tree found.
#[derive(Debug, Default)]
struct Walk {
    lookups: usize,
    voids: Vec<String>,
    findings: Vec<Issue>,
    evidence: Vec<String>,
    stopped: bool,
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The single SPF record at `name`: `Ok(None)` when there is none (void or no SPF TXT),
/// `Err(count)` when there are several.
async fn spf_record(
    r: &DnsResolver,
    name: &str,
) -> Result<Result<Option<String>, usize>, LookupError> {
    let spf: Vec<String> = r
        .txt(name)
        .await?
        .into_iter()
        .filter(|t| is_spf(t))
        .collect();
    Ok(match spf.len() {
        0 => Ok(None),
        1 => Ok(spf.into_iter().next()),
        n => Err(n),
    })
}

/// Counts lookups and void lookups over the tree rooted at `record` of `domain`.
fn walk<'a>(
    r: &'a DnsResolver,
    top: &'a str,
    domain: String,
    record: Record,
    chain: Vec<String>,
    w: &'a mut Walk,
) -> BoxFut<'a, Result<(), LookupError>> {
    Box::pin(async move {
        let has_all = record.terms.iter().any(|(_, m, _)| *m == Mechanism::All);
        let mut targets: Vec<(String, Option<String>)> = Vec::new();
        for (_, m, text) in &record.terms {
            if w.lookups >= EXPANSION_CAP {
                w.stopped = true;
                return Ok(());
            }
            match m {
                Mechanism::All | Mechanism::Ip(..) => {}
                Mechanism::Include(spec) => {
                    w.lookups += 1;
                    targets.push((text.clone(), expand(spec, &domain)));
                }
                Mechanism::A { domain: d, .. } => {
                    w.lookups += 1;
                    if let Some(name) = name_of(d, &domain)
                        && r.addresses(&name).await?.is_empty()
                    {
                        w.voids.push(text.clone());
                    }
                }
                Mechanism::Mx { domain: d, .. } => {
                    w.lookups += 1;
                    if let Some(name) = name_of(d, &domain)
                        && r.mx(&name).await?.is_empty()
                    {
                        w.voids.push(text.clone());
                    }
                }
                Mechanism::Ptr(_) => {
                    w.lookups += 1;
                }
                Mechanism::Exists(spec) => {
                    w.lookups += 1;
                    if let Some(name) = expand(spec, &domain)
                        && r.addresses(&name).await?.is_empty()
                    {
                        w.voids.push(text.clone());
                    }
                }
            }
        }
        if !has_all && let Some(spec) = &record.redirect {
            w.lookups += 1;
            targets.push((format!("redirect={spec}"), expand(spec, &domain)));
        }
        for (text, target) in targets {
            let Some(target) = target else { continue };
            if chain.contains(&target) {
                w.findings.push(Issue::new(format!(
                    "SPF for {top} loops: `{text}` in the record of {domain} leads back to {target}"
                )));
                continue;
            }
            match spf_record(r, &target).await? {
                Err(n) => w.findings.push(Issue::new(format!(
                    "SPF for {top} uses `{text}`, which publishes {n} `v=spf1` records: a permanent error (RFC 7208 §4.5)"
                ))),
                Ok(None) => {
                    if r.txt(&target).await?.is_empty() {
                        w.voids.push(text.clone());
                    }
                    w.findings.push(Issue::new(format!(
                        "SPF for {top} uses `{text}`, which publishes no SPF record: a permanent error (RFC 7208 §5.2)"
                    )));
                }
                Ok(Some(rec)) => {
                    w.evidence.push(format!("{target}: {rec}"));
                    match parse(&rec) {
                        Err(term) => w.findings.push(Issue::new(format!(
                            "SPF for {top} uses `{text}`, whose record has an invalid term `{term}`: a permanent error"
                        ))),
                        Ok(parsed) => {
                            let mut next = chain.clone();
                            next.push(target.clone());
                            walk(r, top, target, parsed, next, w).await?;
                            if w.stopped {
                                return Ok(());
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    })
}

fn name_of(d: &Option<String>, current: &str) -> Option<String> {
    name_for(d, current, None)
}

/// The name an `a`/`mx` term asks: its domain-spec expanded, or the current domain.
fn name_for(d: &Option<String>, current: &str, from: Option<(&str, IpAddr)>) -> Option<String> {
    match d {
        None => Some(current.to_string()),
        Some(spec) => expand_for(spec, current, from),
    }
}

/// The result for `ip`: the qualifier of the first matching mechanism (`None` = nothing
/// matched, neutral), and the term that matched.
fn evaluate<'a>(
    r: &'a DnsResolver,
    (top, ip): (&'a str, IpAddr),
    domain: String,
    record: Record,
    depth: usize,
) -> BoxFut<'a, Result<Option<(Qualifier, String)>, LookupError>> {
    Box::pin(async move {
        let from = Some((top, ip));
        if depth > 10 {
            return Ok(None);
        }
        for (q, m, text) in &record.terms {
            let matched = match m {
                Mechanism::All => true,
                Mechanism::Ip(net, len) => in_cidr(ip, *net, *len),
                Mechanism::A { domain: d, v4, v6 } => match name_for(d, &domain, from) {
                    None => false,
                    Some(n) => r
                        .addresses(&n)
                        .await?
                        .iter()
                        .any(|a| in_cidr(ip, *a, if a.is_ipv4() { *v4 } else { *v6 })),
                },
                Mechanism::Mx { domain: d, v4, v6 } => {
                    let mut hit = false;
                    if let Some(n) = name_for(d, &domain, from) {
                        for host in r.mx(&n).await?.iter().take(10) {
                            if r.addresses(host)
                                .await?
                                .iter()
                                .any(|a| in_cidr(ip, *a, if a.is_ipv4() { *v4 } else { *v6 }))
                            {
                                hit = true;
                                break;
                            }
                        }
                    }
                    hit
                }
                Mechanism::Include(spec) => match expand_for(spec, &domain, from) {
                    None => false,
                    Some(t) => match spf_record(r, &t).await? {
                        Ok(Some(rec)) => match parse(&rec) {
                            Ok(p) => matches!(
                                evaluate(r, (top, ip), t, p, depth + 1).await?,
                                Some((Qualifier::Pass, _))
                            ),
                            Err(_) => false,
                        },
                        _ => false,
                    },
                },
                // `exists`: an A lookup of the expanded name (RFC 7208 §5.7), whatever
                // the address family.
                Mechanism::Exists(spec) => match expand_for(spec, &domain, from) {
                    None => false,
                    Some(n) => !r.ipv4(&n).await?.is_empty(),
                },
                // Not decidable without the sender's reverse DNS.
                Mechanism::Ptr(_) => false,
            };
            if matched {
                return Ok(Some((*q, text.clone())));
            }
        }
        if let Some(spec) = &record.redirect
            && let Some(t) = expand_for(spec, &domain, from)
            && let Ok(Some(rec)) = spf_record(r, &t).await?
            && let Ok(p) = parse(&rec)
        {
            return evaluate(r, (top, ip), t, p, depth + 1).await;
        }
        Ok(None)
    })
}

/// The `all` that ends the policy: the record's own, else the redirect target's.
async fn ending(
    r: &DnsResolver,
    domain: &str,
    record: &Record,
) -> Result<Option<(Qualifier, String)>, LookupError> {
    let mut rec = record.clone();
    let mut dom = domain.to_string();
    for _ in 0..10 {
        if let Some((q, _, text)) = rec.terms.iter().find(|(_, m, _)| *m == Mechanism::All) {
            return Ok(Some((*q, text.clone())));
        }
        let Some(spec) = rec.redirect.clone() else {
            return Ok(None);
        };
        let Some(t) = expand(&spec, &dom) else {
            return Ok(None);
        };
        match spf_record(r, &t).await? {
            Ok(Some(text)) => match parse(&text) {
                Ok(p) => {
                    rec = p;
                    dom = t;
                }
                Err(_) => return Ok(None),
            },
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// Checks SPF of `domain`; `egress` are the cluster's outgoing addresses.
pub async fn check(
    r: &DnsResolver,
    domain: &str,
    egress: &[IpAddr],
) -> Result<CheckOutcome, LookupError> {
    let mut out = CheckOutcome::default();
    let txt = r.txt(domain).await?;
    let spf: Vec<&String> = txt.iter().filter(|t| is_spf(t)).collect();
    for t in &spf {
        out.evidence.push(format!("{domain}: {t}"));
    }
    let record_text = match spf.as_slice() {
        [] => {
            out.findings.push(Issue::new(format!(
                "SPF for {domain} is missing: no TXT record at the apex starts with `v=spf1`"
            )));
            return Ok(out);
        }
        [one] => one.to_string(),
        many => {
            out.findings.push(Issue::new(format!(
                "SPF for {domain} has {} `v=spf1` records at the apex: receivers treat this as a permanent error (RFC 7208 §4.5)",
                many.len()
            )));
            return Ok(out);
        }
    };
    let record = match parse(&record_text) {
        Ok(r) => r,
        Err(term) => {
            out.findings.push(Issue::new(format!(
                "SPF for {domain} has an invalid term `{term}`: receivers treat this as a permanent error (RFC 7208 §4.6)"
            )));
            return Ok(out);
        }
    };

    match ending(r, domain, &record).await? {
        Some((Qualifier::Pass, _)) => out.findings.push(Issue::new(format!(
            "SPF for {domain} ends in `+all`: any host may send as this domain"
        ))),
        Some((Qualifier::Neutral, _)) => out.findings.push(Issue::new(format!(
            "SPF for {domain} ends in `?all`: mail from any host gets a neutral result, which receivers do not reject"
        ))),
        Some((q, _)) => out.notes.push(format!("ends in `{}all`", q.sign())),
        None => out.findings.push(Issue::new(format!(
            "SPF for {domain} has no `all` mechanism: mail from unlisted hosts gets a neutral result (end it with `-all` or `~all`)"
        ))),
    }

    let mut w = Walk::default();
    walk(
        r,
        domain,
        normalize(domain),
        record.clone(),
        vec![normalize(domain)],
        &mut w,
    )
    .await?;
    out.evidence.append(&mut w.evidence);
    out.findings.append(&mut w.findings);
    if w.lookups > LOOKUP_LIMIT {
        let more = if w.stopped { " or more" } else { "" };
        out.findings.push(Issue::new(format!(
            "SPF for {domain} needs {}{more} DNS lookups after expanding includes and redirects: more than {LOOKUP_LIMIT} is a permanent error (RFC 7208 §4.6.4)",
            w.lookups
        )));
    } else {
        out.notes
            .push(format!("{} of {LOOKUP_LIMIT} DNS lookups", w.lookups));
    }
    if w.voids.len() > VOID_LIMIT {
        out.findings.push(Issue::new(format!(
            "SPF for {domain} has {} void lookups ({}): more than {VOID_LIMIT} is a permanent error (RFC 7208 §4.6.4)",
            w.voids.len(),
            w.voids.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
        )));
    }

    if egress.is_empty() {
        out.notes.push(
            "no `egress` addresses in the inventory for this cluster: coverage not checked".into(),
        );
    }
    for ip in egress {
        match evaluate(r, (domain, *ip), normalize(domain), record.clone(), 0).await? {
            Some((Qualifier::Pass, text)) => out
                .notes
                .push(format!("egress {ip} authorized by `{text}`")),
            Some((_, text)) => out.findings.push(Issue::new(format!(
                "SPF for {domain} does not authorize egress address {ip}: it matches `{text}`"
            ))),
            None => out.findings.push(Issue::new(format!(
                "SPF for {domain} does not authorize egress address {ip}: no mechanism matches it"
            ))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case("v=spf1 -all", true)]
    #[test_case("V=SPF1", true)]
    #[test_case("v=spf10 -all", false)]
    #[test_case("v=DMARC1; p=none", false)]
    fn spf_records_are_recognized(t: &str, want: bool) {
        assert_eq!(is_spf(t), want);
    }

    #[test]
    fn terms_parse_with_qualifiers_and_cidrs() {
        let r = parse("v=spf1 ip4:203.0.113.0/24 ip6:2001:db8::/32 a mx:mx.example.com/28 include:_spf.example.net ~all redirect=x.example exp=e.example").unwrap();
        assert_eq!(r.redirect.as_deref(), Some("x.example"));
        let ms: Vec<&Mechanism> = r.terms.iter().map(|(_, m, _)| m).collect();
        assert_eq!(ms[0], &Mechanism::Ip("203.0.113.0".parse().unwrap(), 24));
        assert_eq!(ms[1], &Mechanism::Ip("2001:db8::".parse().unwrap(), 32));
        assert_eq!(
            ms[2],
            &Mechanism::A {
                domain: None,
                v4: 32,
                v6: 128
            }
        );
        assert_eq!(
            ms[3],
            &Mechanism::Mx {
                domain: Some("mx.example.com".into()),
                v4: 28,
                v6: 128
            }
        );
        assert_eq!(r.terms[5].0, Qualifier::SoftFail);
    }

    #[test_case("v=spf1 ip4:300.1.1.1 -all", "ip4:300.1.1.1")]
    #[test_case("v=spf1 ip4:2001:db8::1 -all", "ip4:2001:db8::1")]
    #[test_case("v=spf1 include: -all", "include:")]
    #[test_case("v=spf1 frobnicate -all", "frobnicate")]
    #[test_case("v=spf1 a/33 -all", "a/33")]
    fn invalid_terms_are_named(record: &str, term: &str) {
        assert_eq!(parse(record), Err(term.to_string()));
    }

    #[test_case("203.0.113.10", "203.0.113.0", 24, true)]
    #[test_case("203.0.114.10", "203.0.113.0", 24, false)]
    #[test_case("203.0.113.10", "0.0.0.0", 0, true)]
    #[test_case("2001:db8::5", "2001:db8::", 64, true)]
    #[test_case("2001:db9::5", "2001:db8::", 32, false)]
    #[test_case("203.0.113.10", "2001:db8::", 0, false)]
    fn cidr_matching(ip: &str, net: &str, len: u8, want: bool) {
        assert_eq!(
            in_cidr(ip.parse().unwrap(), net.parse().unwrap(), len),
            want
        );
    }

    #[test]
    fn macros_that_need_a_message_are_not_resolved() {
        assert_eq!(expand("%{d}", "Example.com"), Some("example.com".into()));
        assert_eq!(expand("%{i}._spf.%{d}", "example.com"), None);
    }
}
