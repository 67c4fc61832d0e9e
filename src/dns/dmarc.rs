//! The DMARC check of one domain (RFC 7489 §6.3–6.6): exactly one TXT record at
//! `_dmarc.DOMAIN` whose first tag is `v=DMARC1`, an enforcing policy (`p=quarantine` or
//! `p=reject`; `p=none` only monitors and is a finding of lower severity), and a `rua`
//! address for aggregate reports. The subdomain policy `sp` is noted.

use super::dkim::tags;
use super::resolver::{DnsResolver, LookupError};
use super::{CheckOutcome, Issue};

/// Checks DMARC of `domain`.
pub async fn check(r: &DnsResolver, domain: &str) -> Result<CheckOutcome, LookupError> {
    let mut out = CheckOutcome::default();
    let name = format!("_dmarc.{domain}");
    let txt = r.txt(&name).await?;
    for t in &txt {
        out.evidence.push(format!("{name}: {t}"));
    }
    let starts_dmarc = |t: &str| {
        tags(t)
            .first()
            .is_some_and(|(k, v)| k == "v" && v == "DMARC1")
    };
    let records: Vec<&String> = txt.iter().filter(|t| starts_dmarc(t)).collect();
    let record = match records.as_slice() {
        [] if txt.iter().any(|t| t.contains("DMARC1")) => {
            out.findings.push(Issue::new(format!(
                "DMARC record at `{name}` does not start with `v=DMARC1`: receivers ignore it"
            )));
            return Ok(out);
        }
        [] => {
            out.findings.push(Issue::new(format!(
                "DMARC for {domain} is missing: no TXT record at `{name}`"
            )));
            return Ok(out);
        }
        [one] => *one,
        many => {
            out.findings.push(Issue::new(format!(
                "DMARC for {domain} has {} records at `{name}`: receivers ignore them all (RFC 7489 §6.6.3)",
                many.len()
            )));
            return Ok(out);
        }
    };
    let t = tags(record);
    let get = |k: &str| t.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    match get("p").map(str::to_ascii_lowercase).as_deref() {
        Some("quarantine") | Some("reject") => {
            out.notes.push(format!("p={}", get("p").unwrap_or_default()))
        }
        Some("none") => out.findings.push(Issue::lesser(format!(
            "DMARC for {domain} has `p=none`: receivers only monitor, forged mail is still delivered"
        ))),
        Some(other) => out.findings.push(Issue::new(format!(
            "DMARC for {domain} has an invalid policy `p={other}`"
        ))),
        None => out.findings.push(Issue::new(format!(
            "DMARC for {domain} has no `p=` policy: receivers treat it as `p=none`"
        ))),
    }
    match get("rua") {
        Some(v) if !v.is_empty() => out.notes.push(format!("rua={v}")),
        _ => out.findings.push(Issue::new(format!(
            "DMARC for {domain} has no `rua=`: nobody receives aggregate reports about forged mail"
        ))),
    }
    match get("sp") {
        Some(sp) => out.notes.push(format!("subdomain policy sp={sp}")),
        None => out
            .notes
            .push("no `sp=`: subdomains inherit `p`".to_string()),
    }
    Ok(out)
}
