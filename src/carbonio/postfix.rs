//! Postfix's effective configuration as `postconf` prints it, and the `policy` spawn
//! service entry of master.cf (`postconf -M policy/unix`, or the master.cf.in template
//! entry when the service is not enabled yet), read as Postfix reads master.cf.
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

/// The policy daemon's master.cf service entry (all its physical lines joined).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SpawnLine {
    /// The entry as read, its lines joined with single spaces (evidence for the report).
    pub line: String,
    /// The `user=` of the spawn service, if any (without `:group`).
    pub user: Option<String>,
    /// The `:group` of `user=USER:GROUP`, when given (spawn then runs with that one group
    /// instead of the user's primary group).
    pub group: Option<String>,
    /// Whether the entry is active: not commented out, and not a template entry behind a
    /// zmconfigd `%%…%%` directive that only a rewrite resolves.
    pub active: bool,
}

/// Finds the `policy unix` entry in master.cf text: `postconf -M policy/unix` output, or
/// master.cf.in template text (whole, or `grep -A` excerpts with `--` separators).
///
/// Read as Postfix reads master.cf (master(5)): a line that starts with whitespace
/// continues the entry before it; comment and blank lines are skipped. A template line
/// may start with a zmconfigd directive (`%%uncomment VAR:zimbraMtaEnableSmtpdPolicyd%%`),
/// stripped before that reading. Carbonio's own template splits the entry over two such
/// lines, the `user=zimbra argv=…` part on the second (carbonio-mta
/// `mta/postfix_master.cf.in`; CARBONIO.md §0.1).
pub fn parse_spawn_line(text: &str) -> Option<SpawnLine> {
    // (joined text, active, commented out) of each entry read.
    let mut entries: Vec<(String, bool, bool)> = Vec::new();
    let mut open = false;
    for raw in text.lines() {
        let (line, directive) = match raw.strip_prefix("%%").and_then(|r| r.split_once("%%")) {
            Some((_, rest)) => (rest, true),
            None => (raw, false),
        };
        if raw == "--" {
            // `grep -A` group separator: what follows is not a continuation.
            open = false;
            continue;
        }
        let (body, commented) = match line.strip_prefix('#') {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        if body.trim().is_empty() {
            continue;
        }
        if body.starts_with(char::is_whitespace) {
            // `#<TAB>…` continues only an entry that is commented out itself (elsewhere
            // it is a comment, which Postfix skips), and a plain continuation only an
            // entry that is not.
            if open
                && let Some((joined, _, entry_commented)) = entries.last_mut()
                && commented == *entry_commented
            {
                joined.push(' ');
                joined.push_str(body.trim());
            }
            continue;
        }
        if commented && !body.starts_with("policy") {
            // An ordinary comment: neither an entry nor the end of one.
            continue;
        }
        entries.push((body.trim().to_string(), !commented && !directive, commented));
        open = true;
    }
    entries.into_iter().find_map(|(joined, active, _)| {
        let mut fields = joined.split_whitespace();
        if fields.next() != Some("policy") || fields.next() != Some("unix") {
            return None;
        }
        let spec = joined
            .split_whitespace()
            .find_map(|f| f.strip_prefix("user="));
        let (user, group) = match spec.map(|u| u.split_once(':').unwrap_or((u, ""))) {
            Some((u, g)) => (Some(u.to_string()), (!g.is_empty()).then(|| g.to_string())),
            None => (None, None),
        };
        let line = joined.split_whitespace().collect::<Vec<_>>().join(" ");
        Some(SpawnLine {
            line,
            user,
            group,
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
        assert_eq!(active.group, None);
        let tmpl = parse_spawn_line("#policy  unix  -  n  n  -  0  spawn user=zimbra:zimbra argv=/usr/bin/perl /opt/zextras/libexec/zmpostfixpolicyd").unwrap();
        assert!(!tmpl.active);
        assert_eq!(tmpl.user.as_deref(), Some("zimbra"));
        assert_eq!(tmpl.group.as_deref(), Some("zimbra"));
        assert_eq!(parse_spawn_line("smtp inet n - n - 1 postscreen"), None);
        let directive = parse_spawn_line("%%uncomment VAR:zimbraMtaEnableSmtpdPolicyd%%policy unix - n n - 0 spawn user=zimbra argv=/usr/bin/perl /opt/zextras/libexec/zmpostfixpolicyd").unwrap();
        assert!(!directive.active);
        assert_eq!(directive.user.as_deref(), Some("zimbra"));
    }

    /// carbonio-mta @1b796d2 `mta/postfix_master.cf.in`, lines 68–74, byte for byte.
    const STOCK_TEMPLATE: &str = "anvil     unix  -       -       n       -       1       anvil\n\
scache\t  unix\t-\t-\tn\t-\t1\tscache\n\
%%uncomment VAR:zimbraMtaEnableSmtpdPolicyd%%policy    unix  -       n       n       -       0       spawn\n\
%%uncomment VAR:zimbraMtaEnableSmtpdPolicyd%%\tuser=zimbra argv=/usr/bin/perl /opt/zextras/libexec/zmpostfixpolicyd\n\
#\n\
# ====================================================================\n\
# Interfaces to non-Postfix software. Be sure to examine the manual\n";

    #[test]
    fn carbonio_two_line_template_entry_is_joined() {
        let e = parse_spawn_line(STOCK_TEMPLATE).expect("the policy entry");
        assert!(!e.active, "behind a zmconfigd directive");
        assert_eq!(e.user.as_deref(), Some("zimbra"));
        assert_eq!(
            e.line,
            "policy unix - n n - 0 spawn user=zimbra argv=/usr/bin/perl /opt/zextras/libexec/zmpostfixpolicyd"
        );
        // What `grep -F -A3 policy` gives of it: the same entry.
        let excerpt: String = STOCK_TEMPLATE
            .lines()
            .skip(2)
            .take(4)
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(parse_spawn_line(&excerpt), Some(e.clone()));
        // The rendered (enabled) master.cf: the same two lines without the directive.
        let rendered = STOCK_TEMPLATE.replace("%%uncomment VAR:zimbraMtaEnableSmtpdPolicyd%%", "");
        let r = parse_spawn_line(&rendered).unwrap();
        assert!(r.active);
        assert_eq!(r.line, e.line);
    }

    #[test]
    fn continuation_belongs_to_its_own_entry_only() {
        // A continuation after a grep separator, or after another service, is not policy's.
        let text = "--\n\tuser=zimbra\npolicy unix - n n - 0 spawn\n--\n\tuser=root argv=/bin/x\n";
        let e = parse_spawn_line(text).unwrap();
        assert_eq!(e.user, None, "{e:?}");
        let text = "policy unix - n n - 0 spawn\n  user=zextras:mail argv=/usr/bin/perl x\nother unix - n n - 0 spawn\n  user=root argv=y\n";
        let e = parse_spawn_line(text).unwrap();
        assert_eq!(
            (e.user.as_deref(), e.group.as_deref()),
            (Some("zextras"), Some("mail"))
        );
        assert!(e.active);
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
