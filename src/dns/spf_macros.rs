//! SPF macro expansion (RFC 7208 §7): `%{s}`, `%{l}`, `%{o}`, `%{d}`, `%{i}`, `%{p}`,
//! `%{v}`, `%{h}` with their transformers (a count of right-hand parts, `r` to reverse,
//! delimiters), upper-case letters URL-escaped, and the `%%`, `%_`, `%-` escapes.
//!
//! The domain checks evaluate a record for the cluster's egress addresses as a receiver
//! would for mail from them: the sender is `postmaster@DOMAIN` and the HELO name the
//! domain itself (the tool has no message), `%{p}` is `unknown` (no PTR validation).
//! Without an address (counting lookups over the whole tree) `%{i}` and `%{v}` cannot be
//! expanded: the spec is then undecidable, never guessed.

use std::net::IpAddr;

/// What the macros of one evaluation expand to.
#[derive(Debug, Clone, Copy)]
pub struct MacroContext<'a> {
    /// `%{l}`: the sender's local part.
    pub local: &'a str,
    /// `%{o}`: the sender's domain.
    pub sender_domain: &'a str,
    /// `%{d}`: the domain whose record is being evaluated.
    pub domain: &'a str,
    /// `%{i}`, `%{v}`: the connecting address, when there is one.
    pub ip: Option<IpAddr>,
    /// `%{h}`: the HELO/EHLO name.
    pub helo: &'a str,
}

impl<'a> MacroContext<'a> {
    /// Mail from `postmaster@domain`, HELO `domain`, from `ip` if given.
    pub fn postmaster(domain: &'a str, ip: Option<IpAddr>) -> Self {
        MacroContext {
            local: "postmaster",
            sender_domain: domain,
            domain,
            ip,
            helo: domain,
        }
    }
}

/// `%{i}`: dotted quad, or 32 dot-separated nibbles for IPv6.
fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => a
            .octets()
            .iter()
            .flat_map(|b| [b >> 4, b & 0xf])
            .map(|n| format!("{n:x}"))
            .collect::<Vec<_>>()
            .join("."),
    }
}

/// Characters RFC 3986 leaves unescaped ("unreserved"); every other byte is `%XX`.
const RFC3986_RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes all but RFC 3986's unreserved characters (SPF's URL macros, RFC 7208
/// §7.3; a Pushgateway path segment).
pub fn url_escape(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, RFC3986_RESERVED).to_string()
}

/// The value of one macro letter, `None` when the context lacks it (or it is one of the
/// `exp`-only letters `c`, `r`, `t`).
fn letter(c: char, ctx: &MacroContext<'_>) -> Option<String> {
    Some(match c.to_ascii_lowercase() {
        's' => format!("{}@{}", ctx.local, ctx.sender_domain),
        'l' => ctx.local.to_string(),
        'o' => ctx.sender_domain.to_string(),
        'd' => ctx.domain.to_string(),
        'i' => ip_text(ctx.ip?),
        'p' => "unknown".to_string(),
        'v' => match ctx.ip? {
            IpAddr::V4(_) => "in-addr".to_string(),
            IpAddr::V6(_) => "ip6".to_string(),
        },
        'h' => ctx.helo.to_string(),
        _ => return None,
    })
}

/// Expands a domain-spec; `None` when it is malformed or needs what `ctx` lacks.
pub fn expand(spec: &str, ctx: &MacroContext<'_>) -> Option<String> {
    let mut out = String::new();
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '%' => out.push('%'),
            '_' => out.push(' '),
            '-' => out.push_str("%20"),
            '{' => {
                let l = chars.next()?;
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                let reverse = chars.next_if(|c| c.eq_ignore_ascii_case(&'r')).is_some();
                let mut delims = String::new();
                loop {
                    match chars.next()? {
                        '}' => break,
                        d if ".-+,/_=".contains(d) => delims.push(d),
                        _ => return None,
                    }
                }
                let value = letter(l, ctx)?;
                let delims = if delims.is_empty() { "." } else { &delims };
                let mut parts: Vec<&str> = value.split(|c| delims.contains(c)).collect();
                if reverse {
                    parts.reverse();
                }
                if !digits.is_empty() {
                    let n: usize = digits.parse().ok().filter(|n| *n > 0)?;
                    let skip = parts.len().saturating_sub(n);
                    parts.drain(..skip);
                }
                let joined = parts.join(".");
                if l.is_ascii_uppercase() {
                    out.push_str(&url_escape(&joined));
                } else {
                    out.push_str(&joined);
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7208 §7.4's examples: sender strong-bad@email.example.com from 192.0.2.3
    /// (and 2001:db8::cb01).
    #[test]
    fn the_rfc_examples_expand_as_written() {
        let mut ctx = MacroContext {
            local: "strong-bad",
            sender_domain: "email.example.com",
            domain: "email.example.com",
            ip: Some("192.0.2.3".parse().unwrap()),
            helo: "mx.example.org",
        };
        let e = |spec: &str, ctx: &MacroContext<'_>| expand(spec, ctx).unwrap();
        for (spec, want) in [
            ("%{s}", "strong-bad@email.example.com"),
            ("%{o}", "email.example.com"),
            ("%{d}", "email.example.com"),
            ("%{d4}", "email.example.com"),
            ("%{d3}", "email.example.com"),
            ("%{d2}", "example.com"),
            ("%{d1}", "com"),
            ("%{dr}", "com.example.email"),
            ("%{d2r}", "example.email"),
            ("%{l}", "strong-bad"),
            ("%{l-}", "strong.bad"),
            ("%{lr}", "strong-bad"),
            ("%{lr-}", "bad.strong"),
            ("%{l1r-}", "strong"),
            (
                "%{ir}.%{v}._spf.%{d2}",
                "3.2.0.192.in-addr._spf.example.com",
            ),
            ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
            (
                "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}",
                "bad.strong.lp.3.2.0.192.in-addr._spf.example.com",
            ),
            (
                "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
                "3.2.0.192.in-addr.strong.lp._spf.example.com",
            ),
            (
                "%{d2}.trusted-domains.example.net",
                "example.com.trusted-domains.example.net",
            ),
            ("%{S}", "strong-bad%40email.example.com"),
            ("a%%b%_c%-d", "a%b c%20d"),
        ] {
            assert_eq!(e(spec, &ctx), want, "{spec}");
        }
        ctx.ip = Some("2001:db8::cb01".parse().unwrap());
        assert_eq!(
            e("%{ir}.%{v}._spf.%{d2}", &ctx),
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
        );
    }

    #[test]
    fn what_the_context_lacks_or_a_bad_spec_is_never_guessed() {
        let ctx = MacroContext::postmaster("example.com", None);
        assert_eq!(expand("%{i}._spf.%{d}", &ctx), None);
        assert_eq!(expand("%{d}", &ctx).as_deref(), Some("example.com"));
        assert_eq!(expand("%{c}", &ctx), None, "exp-only letter");
        assert_eq!(expand("%{d0}", &ctx), None);
        assert_eq!(expand("%{d", &ctx), None);
        assert_eq!(expand("%x", &ctx), None);
        assert_eq!(
            expand("%{l}@%{o}", &ctx).as_deref(),
            Some("postmaster@example.com")
        );
    }
}
