//! Postfix's effective configuration as `postconf` prints it, and the `policy` spawn
//! service entry of master.cf (or the master.cf.in template entry when the service is
//! not enabled yet), read as Postfix reads master.cf.
//!
//! Why the spawn line matters: Carbonio's template runs the policy daemon as
//! `user=zimbra`, a user Carbonio does not create. Postfix's spawn then dies with
//! `unknown user name`, and smtpd answers `451 4.3.5` to every recipient that reaches
//! the policy check.

use std::collections::BTreeMap;

/// The Postfix parameter zmconfigd renders from a Carbonio attribute (docs/carbonio.md
/// §6, §3): a probe of that parameter shows whether the attribute's value is in effect.
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

/// Finds the `policy unix` entry in master.cf or master.cf.in text (whole, `postconf -M`
/// output, or the file pass's `grep -A3`-style excerpts with `--` separators).
///
/// Read as Postfix reads master.cf (master(5)): a line that starts with whitespace
/// continues the entry before it; comment and blank lines are skipped. A template line
/// may start with a zmconfigd directive (`%%uncomment VAR:zimbraMtaEnableSmtpdPolicyd%%`),
/// stripped before that reading. Carbonio's own template splits the entry over two such
/// lines, the `user=zimbra argv=…` part on the second (carbonio-mta
/// `mta/postfix_master.cf.in`; docs/carbonio.md §1).
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
    // An uncommented entry wins over a commented-out one (`#policy …` left above the
    // real entry), as it does for Postfix.
    entries.sort_by_key(|(_, _, commented)| *commented);
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

// localconfig.xml (`Flavour::localconfig`) is where zmpostfixpolicyd reads its LDAP
// password before it answers anything: a spawn user that cannot read it makes the script
// exit, smtpd logs `premature end-of-input on private/policy` and answers `451 4.3.5`
// (docs/carbonio.md §1, §2).

/// One spawn-user lookup the node made: the `user=` value its shell extracted from an
/// entry (`USER` or `USER:GROUP`) and what `getent` found for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpawnLookup {
    pub looked_up: String,
    /// uid and primary gid of the looked-up user, when it exists.
    pub user: Option<(u32, u32)>,
    /// gid of the looked-up group (`USER:GROUP` only), when it exists.
    pub group: Option<u32>,
}

/// What the node says about the policy spawn users and localconfig.xml: the gather's
/// file pass names the `user=` of the active entry and of the template's, one `getent
/// passwd` and one `getent group` look all of them up by name, and `stat` gives
/// localconfig.xml's owner and mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpawnAccess {
    pub lookups: Vec<SpawnLookup>,
    /// Owner uid, group gid and permission bits of localconfig.xml.
    pub localconfig: Option<(u32, u32, u32)>,
}

/// Why the policy service cannot start as the user master.cf names (or `None`: it can).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpawnProblem {
    /// No `policy unix … spawn` entry with a `user=` could be read.
    EntryNotFound,
    /// The node's answer is not about the entry's user (the extraction disagreed).
    Unknown(String),
    /// `getent passwd USER` found nothing.
    UserMissing(String),
    /// `user=USER:GROUP` names a group that does not exist.
    GroupMissing(String),
    /// The user exists but cannot read localconfig.xml with the one group spawn gives it.
    CannotRead {
        user: String,
        uid: u32,
        gid: u32,
        file: (u32, u32, u32),
    },
    /// localconfig.xml could not be examined.
    NoLocalconfig,
}

impl SpawnAccess {
    /// Reads the `spawn` section: the `spawn USER[:GROUP]` lines (active entry first), then
    /// the `getent passwd`/`getent group` answers for all of them at once, then the
    /// `localconfig UID GID MODE` line. An answer belongs to every lookup naming it.
    pub fn parse(output: &str) -> SpawnAccess {
        let mut a = SpawnAccess::default();
        let mut answers: Vec<Vec<&str>> = Vec::new();
        for line in output.lines() {
            if let Some(r) = line.strip_prefix("spawn ") {
                a.lookups.push(SpawnLookup {
                    looked_up: r.trim().to_string(),
                    ..SpawnLookup::default()
                });
            } else if line == "spawn" {
                // `spawn` with an empty value: no entry to look up.
                a.lookups.push(SpawnLookup::default());
            } else if let Some(r) = line.strip_prefix("localconfig ") {
                let n: Vec<&str> = r.split_whitespace().collect();
                if let [uid, gid, mode] = n[..] {
                    a.localconfig = uid
                        .parse()
                        .ok()
                        .zip(gid.parse().ok())
                        .zip(u32::from_str_radix(mode, 8).ok())
                        .map(|((u, g), m)| (u, g, m));
                }
            } else {
                answers.push(line.split(':').collect());
            }
        }
        let num = |f: &[&str], i: usize| f.get(i).and_then(|x| x.parse::<u32>().ok());
        for l in &mut a.lookups {
            let (user, group) = l
                .looked_up
                .split_once(':')
                .unwrap_or((l.looked_up.as_str(), l.looked_up.as_str()));
            if user.is_empty() {
                continue;
            }
            // `getent` also resolves numeric keys by id: only an entry whose NAME is the
            // one looked up counts (Postfix's spawn calls getpwnam/getgrnam).
            for f in &answers {
                match f.len() {
                    7 if f[0] == user => l.user = num(f, 2).zip(num(f, 3)),
                    4 if f[0] == group => l.group = num(f, 2),
                    _ => {}
                }
            }
        }
        a
    }

    /// Whether the policy service can run as `entry`'s user: the user (and the
    /// `:group`, if given) exists, and localconfig.xml is readable with the uid and the
    /// ONE gid Postfix's spawn gives it (`setgroups(1, &gid)`: supplementary groups are
    /// dropped; docs/carbonio.md §1). Decided from the file's owner, group and mode bits
    /// only: ACLs and the directories' search bits are not read (the gather runs as
    /// zextras, which cannot test another uid's access).
    pub fn problem(&self, entry: Option<&SpawnLine>) -> Option<SpawnProblem> {
        let Some((entry, user)) = entry.and_then(|e| e.user.as_deref().map(|u| (e, u))) else {
            return Some(SpawnProblem::EntryNotFound);
        };
        let spec = match &entry.group {
            Some(g) => format!("{user}:{g}"),
            None => user.to_string(),
        };
        let Some(lookup) = self.lookups.iter().find(|l| l.looked_up == spec) else {
            let seen: Vec<&str> = self.lookups.iter().map(|l| l.looked_up.as_str()).collect();
            return Some(SpawnProblem::Unknown(format!(
                "the node looked up {seen:?}, the entry names `{spec}`"
            )));
        };
        let Some((uid, primary)) = lookup.user else {
            return Some(SpawnProblem::UserMissing(user.to_string()));
        };
        let gid = match (&entry.group, lookup.group) {
            (None, _) => primary,
            (Some(_), Some(g)) => g,
            (Some(g), None) => return Some(SpawnProblem::GroupMissing(g.clone())),
        };
        let Some(file) = self.localconfig else {
            return Some(SpawnProblem::NoLocalconfig);
        };
        let (owner, group, mode) = file;
        // POSIX: the owner class applies to the owner alone, the group class to the
        // group alone; root reads everything.
        let readable = uid == 0
            || if uid == owner {
                mode & 0o400 != 0
            } else if gid == group {
                mode & 0o040 != 0
            } else {
                mode & 0o004 != 0
            };
        (!readable).then(|| SpawnProblem::CannotRead {
            user: user.to_string(),
            uid,
            gid,
            file,
        })
    }
}

impl std::fmt::Display for SpawnProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnProblem::EntryNotFound => f.write_str("policy entry not found (no `policy unix … spawn user=…` in master.cf or master.cf.in)"),
            SpawnProblem::Unknown(why) => write!(f, "cannot tell which user spawns the policy service: {why}"),
            SpawnProblem::UserMissing(u) => write!(f, "spawn user missing: `{u}` does not exist on this node"),
            SpawnProblem::GroupMissing(g) => write!(f, "spawn group missing: `{g}` does not exist on this node"),
            SpawnProblem::CannotRead { user, uid, gid, file: (o, g, m) } => write!(
                f,
                "spawn user cannot read localconfig.xml: `{user}` runs as uid {uid} with the one group {gid} (spawn drops supplementary groups); localconfig.xml is {m:o} owned by {o}:{g}"
            ),
            SpawnProblem::NoLocalconfig => write!(f, "cannot tell whether the spawn user can read localconfig.xml (stat failed)"),
        }
    }
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
    fn an_uncommented_entry_wins_over_a_commented_one() {
        let text = "#policy unix - n n - 0 spawn\n#\tuser=zimbra argv=/x\npolicy unix - n n - 0 spawn\n\tuser=zextras argv=/x\n";
        let e = parse_spawn_line(text).unwrap();
        assert!(e.active);
        assert_eq!(e.user.as_deref(), Some("zextras"));
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

    fn access(looked_up: &str, user: Option<(u32, u32)>, group: Option<u32>) -> SpawnAccess {
        SpawnAccess {
            lookups: vec![SpawnLookup {
                looked_up: looked_up.into(),
                user,
                group,
            }],
            // Carbonio: 0640 zextras:zextras (docs/carbonio.md §1).
            localconfig: Some((999, 999, 0o640)),
        }
    }

    fn entry(user: &str) -> SpawnLine {
        parse_spawn_line(&format!(
            "policy unix - n n - 0 spawn user={user} argv=/usr/bin/perl x"
        ))
        .unwrap()
    }

    #[test]
    fn spawn_section_is_read() {
        // The active entry (none: policy off) and the template's.
        let a = SpawnAccess::parse(
            "spawn\nspawn zimbra\nzimbra:x:998:998::/opt/zimbra:/usr/sbin/nologin\nzimbra:x:998:\nlocalconfig 999 999 640\n",
        );
        assert_eq!(a.lookups.len(), 2);
        assert_eq!(a.lookups[0], SpawnLookup::default());
        assert_eq!(a.lookups[1].looked_up, "zimbra");
        assert_eq!(a.lookups[1].user, Some((998, 998)));
        assert_eq!(a.lookups[1].group, Some(998));
        assert_eq!(a.localconfig, Some((999, 999, 0o640)));
    }

    #[test]
    fn each_spawn_user_failure_is_told_apart() {
        assert_eq!(
            access("", None, None).problem(None),
            Some(SpawnProblem::EntryNotFound)
        );
        let stock = entry("zimbra");
        assert_eq!(
            access("zimbra", None, None).problem(Some(&stock)),
            Some(SpawnProblem::UserMissing("zimbra".into()))
        );
        // A hand-made `zimbra` in group zextras (supplementary): spawn drops that group.
        let p = access("zimbra", Some((998, 998)), Some(998)).problem(Some(&stock));
        assert!(
            matches!(
                p,
                Some(SpawnProblem::CannotRead {
                    uid: 998,
                    gid: 998,
                    ..
                })
            ),
            "{p:?}"
        );
        assert!(
            p.unwrap()
                .to_string()
                .starts_with("spawn user cannot read localconfig.xml")
        );
        // zextras owns the file: the fix works.
        assert_eq!(
            access("zextras", Some((999, 999)), None).problem(Some(&entry("zextras"))),
            None
        );
        // user=u:g with g = zextras's group: readable through the group bits.
        assert_eq!(
            access("nobody:zextras", Some((65534, 65534)), Some(999))
                .problem(Some(&entry("nobody:zextras"))),
            None
        );
        assert_eq!(
            access("nobody:nogrp", Some((65534, 65534)), None)
                .problem(Some(&entry("nobody:nogrp"))),
            Some(SpawnProblem::GroupMissing("nogrp".into()))
        );
        // The node's shell looked up something else: no guess.
        assert!(matches!(
            access("policy", None, None).problem(Some(&stock)),
            Some(SpawnProblem::Unknown(_))
        ));
    }
}
