//! Postfix's effective configuration as `postconf` prints it, and the `policy` spawn
//! service line of master.cf (`postconf -M policy/unix`, or the master.cf.in template
//! line when the service is not enabled yet).
//!
//! Why the spawn line matters: Carbonio's template runs the policy daemon as
//! `user=zimbra`, a user Carbonio does not create. Postfix's spawn then dies with
//! `unknown user name`, and smtpd answers `451 4.3.5` to every recipient that reaches
//! the policy check.

use std::collections::BTreeMap;

/// The Postfix parameter zmconfigd renders from a Carbonio attribute (CARBONIO.md §1.5,
/// §3): a probe of that parameter shows whether the attribute's value is in effect.
pub fn governed_param(attr: &str) -> Option<&'static str> {
    const MAP: [(&str, &str); 5] = [
        ("zimbraMtaRestriction", "smtpd_recipient_restrictions"),
        (
            "zimbraMtaSmtpdRejectUnlistedRecipient",
            "smtpd_reject_unlisted_recipient",
        ),
        (
            "zimbraMtaSmtpdRejectUnlistedSender",
            "smtpd_reject_unlisted_sender",
        ),
        (
            "zimbraMtaSmtpdSenderRestrictions",
            "smtpd_sender_restrictions",
        ),
        ("zimbraMtaEnableSmtpdPolicyd", "policy_time_limit"),
    ];
    MAP.iter()
        .find(|(a, _)| a.eq_ignore_ascii_case(attr))
        .map(|(_, p)| *p)
}

/// `postconf NAME...` output (`name = value`, one per line) as a map.
pub fn parse_postconf(output: &str) -> BTreeMap<String, String> {
    output
        .lines()
        .filter_map(|l| {
            l.split_once(" = ")
                .or_else(|| l.strip_suffix(" =").map(|n| (n, "")))
        })
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The items of a Postfix list value (`a, b c, d` → `["a", "b c", "d"]`): split on
/// commas; whitespace inside an item (`check_policy_service unix:private/policy`) is
/// kept, runs of it folded to one space.
pub fn list_items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .collect()
}

/// A master.cf service line for the policy daemon.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SpawnLine {
    /// The line as printed (evidence for the report).
    pub line: String,
    /// The `user=` of the spawn service, if any.
    pub user: Option<String>,
    /// Whether the line is active (not commented out).
    pub active: bool,
}

/// Finds the policy spawn line in `postconf -M policy/unix` output or in template text
/// (where it may be commented out with `#`).
pub fn parse_spawn_line(text: &str) -> Option<SpawnLine> {
    text.lines().find_map(|raw| {
        let trimmed = raw.trim();
        // master.cf.in carries zmconfigd directives such as
        // `%%uncomment VAR:zimbraMtaEnableSmtpdPolicyd%%policy unix …`: a template line,
        // active only once zmconfigd renders it.
        let (active, body) = if let Some(rest) = trimmed.strip_prefix("%%") {
            match rest.find("%%") {
                Some(end) => (false, rest[end + 2..].trim_start()),
                None => (false, rest),
            }
        } else {
            match trimmed.strip_prefix('#') {
                Some(rest) => (false, rest.trim_start()),
                None => (true, trimmed),
            }
        };
        let mut fields = body.split_whitespace();
        if fields.next() != Some("policy") || fields.next() != Some("unix") {
            return None;
        }
        let user = body
            .split_whitespace()
            .find_map(|f| f.strip_prefix("user="))
            .map(|u| u.split(':').next().unwrap_or(u).to_string());
        Some(SpawnLine {
            line: trimmed.to_string(),
            user,
            active,
        })
    })
}

/// User names of a `getent passwd` listing.
pub fn passwd_users(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postconf_lines() {
        let m = parse_postconf(
            "smtpd_recipient_restrictions = reject_non_fqdn_recipient, permit_mynetworks, check_policy_service unix:private/policy, permit\nsmtpd_reject_unlisted_recipient = yes\nempty_one =\n",
        );
        assert_eq!(m["smtpd_reject_unlisted_recipient"], "yes");
        assert_eq!(m["empty_one"], "");
        assert_eq!(
            list_items(&m["smtpd_recipient_restrictions"]),
            vec![
                "reject_non_fqdn_recipient",
                "permit_mynetworks",
                "check_policy_service unix:private/policy",
                "permit"
            ]
        );
    }

    #[test]
    fn spawn_line_active_and_commented() {
        let active = parse_spawn_line("policy unix - n n - 0 spawn user=zimbra argv=/usr/bin/perl /opt/zextras/libexec/zmpostfixpolicyd\n").unwrap();
        assert!(active.active);
        assert_eq!(active.user.as_deref(), Some("zimbra"));
        let tmpl = parse_spawn_line("#policy  unix  -  n  n  -  0  spawn user=zimbra:zimbra argv=/usr/bin/perl /opt/zextras/libexec/zmpostfixpolicyd").unwrap();
        assert!(!tmpl.active);
        assert_eq!(tmpl.user.as_deref(), Some("zimbra"));
        assert_eq!(parse_spawn_line("smtp inet n - n - 1 postscreen"), None);
        let directive = parse_spawn_line("%%uncomment VAR:zimbraMtaEnableSmtpdPolicyd%%policy unix - n n - 0 spawn user=zimbra argv=/usr/bin/perl /opt/zextras/libexec/zmpostfixpolicyd").unwrap();
        assert!(!directive.active);
        assert_eq!(directive.user.as_deref(), Some("zimbra"));
    }

    #[test]
    fn passwd_names() {
        assert_eq!(
            passwd_users(
                "root:x:0:0:root:/root:/bin/bash\nzextras:x:999:999::/opt/zextras:/bin/bash\n"
            ),
            vec!["root", "zextras"]
        );
    }
}
