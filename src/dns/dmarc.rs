//! The DMARC check of one domain, as RFC 9989 (DMARCbis) has receivers find and read
//! the policy: exactly one TXT record at `_dmarc.DOMAIN` whose first tag is `v=DMARC1`;
//! when the domain publishes none, the DNS tree walk (§4.10) asks its parents (a domain
//! of more than seven labels jumps to its last seven, then one label at a time), and a
//! hosted subdomain covered by a parent's record is not "missing": the parent's `sp`
//! (else `p`) applies to it. The policy must enforce (`quarantine` or `reject`; `none`
//! only monitors and is a finding of lower severity), `t=y` (testing mode) softens it one
//! step, and a `rua` address must receive aggregate reports. The tags RFC 9989 removed
//! (`pct`, `rf`, `ri`) are noted, a partial `pct` as a lesser finding since receivers
//! that follow RFC 9989 ignore it. `np` (non-existent subdomains) and `sp` are noted.

use super::dkim::tags;
use super::resolver::{DnsResolver, LookupError};
use super::{CheckOutcome, Issue};

/// What the DNS holds at one `_dmarc` name.
enum AtName {
    /// No TXT record starting with `v=DMARC1`.
    None,
    /// TXT records mention DMARC1 but none starts with `v=DMARC1`.
    Misplaced,
    /// Several DMARC records (receivers ignore them all).
    Several(usize),
    One(String),
}

async fn at(r: &DnsResolver, name: &str, out: &mut CheckOutcome) -> Result<AtName, LookupError> {
    let txt = r.txt(name).await?;
    for t in &txt {
        out.evidence.push(format!("{name}: {t}"));
    }
    let starts_dmarc = |t: &str| {
        tags(t)
            .first()
            .is_some_and(|(k, v)| k == "v" && v == "DMARC1")
    };
    let records: Vec<&String> = txt.iter().filter(|t| starts_dmarc(t)).collect();
    Ok(match records.as_slice() {
        [] if txt.iter().any(|t| t.contains("DMARC1")) => AtName::Misplaced,
        [] => AtName::None,
        [one] => AtName::One((*one).clone()),
        many => AtName::Several(many.len()),
    })
}

/// The names the tree walk asks after `_dmarc.DOMAIN` found nothing, in order (RFC 9989
/// §4.10.1): from eight labels or more straight to the last seven, then one label fewer
/// each step, down to one label.
pub fn tree_walk(domain: &str) -> Vec<String> {
    let labels: Vec<&str> = domain.split('.').filter(|l| !l.is_empty()).collect();
    let mut out = Vec::new();
    let mut n = labels.len();
    if n <= 1 {
        return out;
    }
    n = if n >= 8 { 7 } else { n - 1 };
    while n >= 1 {
        out.push(labels[labels.len() - n..].join("."));
        n -= 1;
    }
    out
}

/// Checks DMARC of `domain`.
pub async fn check(r: &DnsResolver, domain: &str) -> Result<CheckOutcome, LookupError> {
    let mut out = CheckOutcome::default();
    let name = format!("_dmarc.{domain}");
    let (record, from_parent) = match at(r, &name, &mut out).await? {
        AtName::One(rec) => (rec, None),
        AtName::Misplaced => {
            out.findings.push(Issue::new(format!(
                "DMARC record at `{name}` does not start with `v=DMARC1`: receivers ignore it"
            )));
            return Ok(out);
        }
        AtName::Several(n) => {
            out.findings.push(Issue::new(format!(
                "DMARC for {domain} has {n} records at `{name}`: receivers ignore them all (RFC 7489 §6.6.3)"
            )));
            return Ok(out);
        }
        AtName::None => {
            let mut found = None;
            let mut asked = Vec::new();
            for parent in tree_walk(domain) {
                let pname = format!("_dmarc.{parent}");
                asked.push(format!("`{pname}`"));
                // A parent whose records receivers ignore does not end the walk.
                if let AtName::One(rec) = at(r, &pname, &mut out).await? {
                    found = Some((rec, pname));
                    break;
                }
            }
            match found {
                Some((rec, pname)) => (rec, Some(pname)),
                None => {
                    let parents = if asked.is_empty() {
                        String::new()
                    } else {
                        format!(", nor at its parents' ({})", asked.join(", "))
                    };
                    out.findings.push(Issue::new(format!(
                        "DMARC for {domain} is missing: no TXT record at `{name}`{parents}"
                    )));
                    return Ok(out);
                }
            }
        }
    };
    let t = tags(&record);
    let get = |k: &str| t.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    // A parent's record governs this domain through its subdomain policy.
    let (policy_tag, policy) = match (&from_parent, get("sp")) {
        (Some(_), Some(sp)) => ("sp", Some(sp)),
        _ => ("p", get("p")),
    };
    if let Some(p) = &from_parent {
        out.notes.push(format!(
            "no record at `{name}`: covered by `{p}` (RFC 9989 tree walk), whose `{policy_tag}=` applies"
        ));
    }
    match policy.map(str::to_ascii_lowercase).as_deref() {
        Some("quarantine") | Some("reject") => out
            .notes
            .push(format!("{policy_tag}={}", policy.unwrap_or_default())),
        Some("none") => out.findings.push(Issue::lesser(format!(
            "DMARC for {domain} has `{policy_tag}=none`: receivers only monitor, forged mail is still delivered"
        ))),
        Some(other) => out.findings.push(Issue::new(format!(
            "DMARC for {domain} has an invalid policy `{policy_tag}={other}`"
        ))),
        None => out.findings.push(Issue::new(format!(
            "DMARC for {domain} has no `p=` policy: receivers treat it as `p=none`"
        ))),
    }
    if get("t").is_some_and(|v| v.eq_ignore_ascii_case("y")) {
        out.findings.push(Issue::lesser(format!(
            "DMARC for {domain} has `t=y` (testing): receivers apply the policy one step softer (reject as quarantine, quarantine as none)"
        )));
    }
    match get("pct").map(str::trim) {
        Some("100") => out
            .notes
            .push("`pct=100`: a tag RFC 9989 removed (harmless)".to_string()),
        Some(pct) => out.findings.push(Issue::lesser(format!(
            "DMARC for {domain} has `pct={pct}`, a tag RFC 9989 removed: receivers that follow it apply the policy to all mail; use `t=y` to test"
        ))),
        None => {}
    }
    for obsolete in ["rf", "ri"] {
        if let Some(v) = get(obsolete) {
            out.notes.push(format!(
                "`{obsolete}={v}`: a tag RFC 9989 removed (ignored)"
            ));
        }
    }
    match get("rua") {
        Some(v) if !v.is_empty() => out.notes.push(format!("rua={v}")),
        _ => out.findings.push(Issue::new(format!(
            "DMARC for {domain} has no `rua=`: nobody receives aggregate reports about forged mail"
        ))),
    }
    if from_parent.is_none() {
        match get("sp") {
            Some(sp) => out.notes.push(format!("subdomain policy sp={sp}")),
            None => out
                .notes
                .push("no `sp=`: subdomains inherit `p`".to_string()),
        }
    }
    if let Some(np) = get("np") {
        out.notes
            .push(format!("non-existent subdomain policy np={np}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_walk_asks_the_parents_and_jumps_to_seven_labels() {
        assert_eq!(
            tree_walk("mail.eu.acme.example"),
            ["eu.acme.example", "acme.example", "example"]
        );
        assert_eq!(tree_walk("example"), Vec::<String>::new());
        let deep = "a.b.c.d.e.f.g.h.i.example";
        let walk = tree_walk(deep);
        assert_eq!(walk[0], "d.e.f.g.h.i.example");
        assert_eq!(walk.len(), 7);
        assert_eq!(walk.last().map(String::as_str), Some("example"));
    }
}
