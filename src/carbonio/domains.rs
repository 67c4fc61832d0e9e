//! Reading the hosted domains' type and DKIM attributes: ONE extra `zmprov`
//! process per cluster (not per host), run on the node whose `gad` listed the domains.
//!
//! Why a second batch: the domains are only known after the gather's `gad`, and a
//! ProvUtil batch fed through a pipe cannot depend on its own earlier output. Why `-l`:
//! the DKIM attributes (`DKIMSelector`, `DKIMIdentity`, `DKIMPublicKey`, objectClass
//! `DKIM` from the OpenDKIM schema) are not in Carbonio's attribute manager, so only a
//! direct LDAP read shows them (the documented check is `zmprov -l gd DOMAIN`);
//! `-l` is a process option, so the whole batch runs in LDAP mode (MTA-only nodes
//! default to it anyway, docs/carbonio.md §5). `zmdkimkeyutil -q` is never used: it prints the
//! private key.

use crate::dns::DomainFacts;
use crate::dns::dkim::DkimLdap;
use crate::ssh::QuoteError;

use super::prov::{self, Batch, PROMPT};

/// The attributes read per domain, in the order they are requested.
pub const DOMAIN_ATTRS: [&str; 4] = [
    "zimbraDomainType",
    "DKIMSelector",
    "DKIMIdentity",
    "DKIMPublicKey",
];

/// The domain batch for one cluster.
#[derive(Debug, Clone)]
pub struct DomainReadPlan {
    domains: Vec<String>,
    script: String,
    /// Names from `gad` that are not domain names; never sent, reported.
    rejected: Vec<String>,
}

/// Why the domain batch's output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainReadError {
    #[error(transparent)]
    Split(#[from] prov::SplitError),
    #[error("zmprov -l failed: {0}")]
    Prov(String),
}

/// Whether `gad` printed something that is a domain name (so it may go on a batch line).
fn is_domain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

impl DomainReadPlan {
    /// The batch reading `domains` (as listed by `gad`, which is not sorted: they are
    /// read, and reported, in name order so that a report does not change with LDAP's
    /// search order).
    pub fn new(domains: &[String]) -> Result<Self, QuoteError> {
        let (mut ok, rejected): (Vec<String>, Vec<String>) =
            domains.iter().cloned().partition(|d| is_domain_name(d));
        ok.sort();
        let mut batch = Batch::new();
        for d in &ok {
            let mut args = vec!["gd".to_string(), d.clone()];
            args.extend(DOMAIN_ATTRS.iter().map(|a| a.to_string()));
            // Domain names and attribute names never need ProvUtil quoting.
            batch
                .push(&args)
                .expect("domain names are plain ProvUtil words");
        }
        let script = super::prov::shell_command(&batch, super::prov::Ldap::Any)?;
        Ok(Self {
            domains: ok,
            script,
            rejected,
        })
    }

    /// The script to run as zextras (one JVM).
    pub fn script(&self) -> &str {
        &self.script
    }

    /// The domains that are read.
    pub fn domains(&self) -> &[String] {
        &self.domains
    }

    /// Lines of `gad` output that were not domain names.
    pub fn rejected(&self) -> &[String] {
        &self.rejected
    }

    /// Reads the batch output. `ERROR:` lines (a domain deleted since `gad`, an LDAP
    /// failure) fail the whole read: a partial answer would hide domains.
    pub fn parse(&self, stdout: &str, stderr: &str) -> Result<Vec<DomainFacts>, DomainReadError> {
        let errors = prov::error_lines(stdout, stderr);
        if !errors.is_empty() {
            return Err(DomainReadError::Prov(errors.join("; ")));
        }
        let split = prov::split_output(stdout, self.domains.len())?;
        Ok(self
            .domains
            .iter()
            .zip(&split.outputs)
            .map(|(d, out)| domain_facts(d, out))
            .collect())
    }
}

/// One `gd` output: `# name D`, `attr: value` lines, a blank line. A value may span
/// lines (zmdkimkeyutil stores the DNS record text, newlines included): a line that does
/// not start a requested attribute continues the previous value.
pub fn domain_facts(domain: &str, output: &str) -> DomainFacts {
    let mut values: Vec<(String, String)> = Vec::new();
    for line in output.lines() {
        let line = line.strip_prefix(PROMPT).unwrap_or(line);
        if line.starts_with("# name ") {
            continue;
        }
        let starts = DOMAIN_ATTRS.iter().find_map(|a| {
            line.split_once(": ")
                .filter(|(n, _)| n.eq_ignore_ascii_case(a))
                .map(|(_, v)| (a.to_string(), v.to_string()))
                .or_else(|| {
                    line.strip_suffix(':')
                        .filter(|n| n.eq_ignore_ascii_case(a))
                        .map(|_| (a.to_string(), String::new()))
                })
        });
        match (starts, values.last_mut()) {
            (Some(kv), _) => values.push(kv),
            (None, Some((_, v))) if !line.is_empty() => {
                v.push('\n');
                v.push_str(line);
            }
            _ => {}
        }
    }
    let get = |a: &str| {
        values
            .iter()
            .find(|(n, _)| n == a)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    DomainFacts {
        domain: domain.to_string(),
        alias: get("zimbraDomainType").is_some_and(|t| t.eq_ignore_ascii_case("alias")),
        dkim: DkimLdap {
            selector: get("DKIMSelector"),
            identity: get("DKIMIdentity"),
            public_key: get("DKIMPublicKey"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_ldap_batch_with_every_domain() {
        let p = DomainReadPlan::new(&["acme.example".into(), "acme.test".into()]).unwrap();
        assert_eq!(
            p.script(),
            "printf '%s\\n' 'gd acme.example zimbraDomainType DKIMSelector DKIMIdentity DKIMPublicKey' 'gd acme.test zimbraDomainType DKIMSelector DKIMIdentity DKIMPublicKey' exit | zmprov -l"
        );
        assert!(!p.script().contains("zmdkimkeyutil"));
    }

    #[test]
    fn names_that_are_not_domains_are_never_sent() {
        let p = DomainReadPlan::new(&["ok.example".into(), "x'; rm -rf /".into()]).unwrap();
        assert_eq!(p.domains(), ["ok.example".to_string()]);
        assert_eq!(p.rejected(), ["x'; rm -rf /".to_string()]);
    }

    #[test]
    fn parses_types_and_multiline_dkim_keys() {
        let p = DomainReadPlan::new(&["acme.example".into(), "acme.test".into()]).unwrap();
        let out = "prov> # name acme.example\nDKIMIdentity: acme.example\nDKIMPublicKey: s1._domainkey\tIN\tTXT\t( \"v=DKIM1; k=rsa; \"\n\t  \"p=MIIBIj\" )  ; ----- DKIM key s1 for acme.example\nDKIMSelector: s1\nzimbraDomainType: local\n\nprov> # name acme.test\nzimbraDomainType: alias\n\nprov> ";
        let facts = p
            .parse(out, "Warn: unknown attribute description\n")
            .unwrap();
        assert!(!facts[0].alias);
        assert_eq!(facts[0].dkim.selector.as_deref(), Some("s1"));
        assert_eq!(facts[0].dkim.identity.as_deref(), Some("acme.example"));
        assert!(
            facts[0]
                .dkim
                .public_key
                .as_deref()
                .unwrap()
                .contains("p=MIIBIj")
        );
        assert_eq!(
            crate::dns::dkim::key_of(facts[0].dkim.public_key.as_deref().unwrap()).as_deref(),
            Some("MIIBIj")
        );
        assert!(facts[1].alias);
        assert_eq!(facts[1].dkim, DkimLdap::default());
    }

    #[test]
    fn an_error_line_fails_the_read() {
        let p = DomainReadPlan::new(&["gone.example".into()]).unwrap();
        let e = p
            .parse(
                "prov> prov> ",
                "ERROR: account.NO_SUCH_DOMAIN (no such domain: gone.example)\n",
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "zmprov -l failed: ERROR: account.NO_SUCH_DOMAIN (no such domain: gone.example)"
        );
    }
}
