//! The DKIM check of one domain: the selector and public key Carbonio keeps in LDAP
//! (`DKIMSelector`, `DKIMIdentity`, `DKIMPublicKey`, read with `zmprov -l gd`; never
//! `zmdkimkeyutil -q`, which prints the private key) against the TXT record published at
//! `SELECTOR._domainkey.DOMAIN`: it must carry `v=DKIM1` and the same `p=` key.

use super::resolver::{DnsResolver, LookupError};
use super::{CheckOutcome, Issue};

/// A domain's DKIM attributes as read from LDAP (absent = not set).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DkimLdap {
    pub selector: Option<String>,
    pub identity: Option<String>,
    pub public_key: Option<String>,
}

/// The base64 key of a DKIM `p=` value or of a whole record as `zmdkimkeyutil` stores
/// it (`sel._domainkey IN TXT ( "v=DKIM1; k=rsa; " "p=MIIB…" ) ; ----- DKIM key …`):
/// quotes and whitespace removed. `None` when no key can be found.
pub fn key_of(text: &str) -> Option<String> {
    let squeezed: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '"')
        .collect();
    let b64 = |c: &char| c.is_ascii_alphanumeric() || *c == '+' || *c == '/' || *c == '=';
    let bytes = squeezed.as_bytes();
    let mut from = 0;
    while let Some(i) = squeezed[from..].find("p=") {
        let at = from + i;
        // `p=` must start a tag, not end another tag's name (e.g. `hp=`).
        if at == 0 || matches!(bytes[at - 1], b';' | b'(') {
            return Some(squeezed[at + 2..].chars().take_while(b64).collect());
        }
        from = at + 2;
    }
    (!squeezed.is_empty() && squeezed.chars().all(|c| b64(&c))).then_some(squeezed)
}

/// `tag=value` pairs of a DKIM/DMARC style record, in order, names lower-cased.
pub fn tags(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .filter_map(|t| {
            let (k, v) = t.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect()
}

/// Checks DKIM of `domain` against its LDAP attributes.
pub async fn check(
    r: &DnsResolver,
    domain: &str,
    ldap: &DkimLdap,
) -> Result<CheckOutcome, LookupError> {
    let mut out = CheckOutcome::default();
    let (Some(selector), Some(ldap_value)) = (
        ldap.selector.as_deref().filter(|s| !s.is_empty()),
        ldap.public_key.as_deref().filter(|s| !s.is_empty()),
    ) else {
        out.findings.push(Issue::new(format!(
            "DKIM for {domain} is not set up: no DKIMSelector/DKIMPublicKey in LDAP (create a key with `zmdkimkeyutil -a -d {domain}`)"
        )));
        return Ok(out);
    };
    out.notes.push(format!("selector {selector}"));
    if ldap.identity.as_deref().is_none_or(str::is_empty) {
        out.findings.push(Issue::new(format!(
            "DKIM signing for {domain} is disabled: DKIMIdentity is empty in LDAP"
        )));
    }
    let Some(ldap_key) = key_of(ldap_value) else {
        out.findings.push(Issue::new(format!(
            "DKIM for {domain}: the DKIMPublicKey in LDAP holds no `p=` key"
        )));
        return Ok(out);
    };
    let name = format!("{selector}._domainkey.{domain}");
    let txt = r.txt(&name).await?;
    for t in &txt {
        out.evidence.push(format!("{name}: {t}"));
    }
    let records: Vec<&String> = txt
        .iter()
        .filter(|t| tags(t).iter().any(|(k, _)| k == "v" || k == "p"))
        .collect();
    let record = match records.as_slice() {
        [] => {
            out.findings.push(Issue::new(format!(
                "DKIM for {domain} has no TXT record at `{name}`: receivers cannot verify its signatures"
            )));
            return Ok(out);
        }
        [one] => *one,
        many => {
            out.findings.push(Issue::new(format!(
                "DKIM for {domain} has {} TXT records at `{name}`: receivers may use either key",
                many.len()
            )));
            return Ok(out);
        }
    };
    let t = tags(record);
    if t.first().is_none_or(|(k, v)| k != "v" || v != "DKIM1") {
        out.findings.push(Issue::new(format!(
            "DKIM record at `{name}` does not start with `v=DKIM1`"
        )));
    }
    match t.iter().find(|(k, _)| k == "p") {
        None => out.findings.push(Issue::new(format!(
            "DKIM record at `{name}` has no `p=` key"
        ))),
        Some((_, p)) if p.is_empty() => out.findings.push(Issue::new(format!(
            "DKIM key at `{name}` is revoked (empty `p=`): signatures of {domain} fail verification"
        ))),
        Some((_, p)) => {
            let published = key_of(&format!("p={p}")).unwrap_or_default();
            if published != ldap_key {
                out.findings.push(Issue::new(format!(
                    "DKIM key at `{name}` differs from the DKIMPublicKey in LDAP: mail signed for {domain} fails verification"
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case("MIIBIjANBg+/kq=", Some("MIIBIjANBg+/kq="); "bare key")]
    #[test_case("v=DKIM1; k=rsa; p=MIIB IjAN", Some("MIIBIjAN"); "record with space in key")]
    #[test_case("s1._domainkey IN TXT ( \"v=DKIM1; k=rsa; \"\n\t  \"p=MIIBIj\" \"ANBg\" )  ; ----- DKIM key s1 for example.com", Some("MIIBIjANBg"); "zmdkimkeyutil form")]
    #[test_case("v=DKIM1; hp=zz; p=AB", Some("AB"); "p after a tag ending in p")]
    #[test_case("v=DKIM1; k=rsa", None; "no key")]
    fn keys_are_extracted(text: &str, want: Option<&str>) {
        assert_eq!(key_of(text).as_deref(), want);
    }

    #[test]
    fn tags_keep_order_and_lowercase_names() {
        assert_eq!(
            tags("v=DKIM1; K=rsa; p=AB"),
            vec![
                ("v".into(), "DKIM1".into()),
                ("k".into(), "rsa".into()),
                ("p".into(), "AB".into())
            ]
        );
    }
}
