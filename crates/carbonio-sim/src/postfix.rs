//! The EFFECTIVE Postfix configuration of a simulated MTA: what zmconfigd renders from
//! LDAP into main.cf/master.cf (docs/carbonio.md §3), frozen until the node restarts. This is
//! what `postconf` prints and what the SMTP responder obeys; LDAP alone never changes it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::flavour::Flavour;

/// The `%%uncomment%%` marker zmconfigd resolves for the policy spawn service.
pub const POLICY_MARKER: &str = "%%uncomment VAR:zimbraMtaEnableSmtpdPolicyd%%";

/// The master.cf.in template a node ships with, its policy entry spawning as `user`.
///
/// As carbonio-mta ships it (`mta/postfix_master.cf.in` @1b796d2): the policy entry
/// spans TWO lines, both behind the zmconfigd directive, the second one a TAB-led
/// continuation holding `user=zimbra argv=…` (stock; a node whose operator fixed it
/// holds another user there). Abridged to what a real Postfix needs to receive mail on
/// port 25 (the real-process fleet runs Debian's Postfix on it): the port-25 path
/// (postscreen, smtpd, tlsproxy, dnsblog), the core services and the policy entry, in
/// the template's order; without submission/smtps (SASL, TLS), content filters
/// (amavis, opendkim) and the pipe examples; plus `postlog`, which Carbonio's template
/// lacks (it logs through syslog) and a node without syslog needs for `maillog_file`.
pub fn master_cf_in(spawn_user: &str) -> String {
    master_cf_in_for(Flavour::Carbonio, spawn_user)
}

/// [`master_cf_in`] of either product: Zimbra ships the same two-line entry with its
/// own policyd path (Zimbra/zm-postfix `conf/postfix/master.cf.in` lines 76–77).
pub fn master_cf_in_for(flavour: Flavour, spawn_user: &str) -> String {
    let policyd = flavour.policyd();
    format!(
        "smtp      inet  n       -       n       -       1       postscreen\n\
         tlsproxy  unix  -       -       n       -       0       tlsproxy\n\
         dnsblog   unix  -       -       n       -       0       dnsblog\n\
         smtpd     pass  -       -       n       -       -       smtpd\n\
         pickup    unix  n       -       n       60      1       pickup\n\
         cleanup   unix  n       -       n       -       0       cleanup\n\
         qmgr      unix  n       -       n       300     1       qmgr\n\
         tlsmgr    unix  -       -       n       1000?   1       tlsmgr\n\
         rewrite   unix  -       -       n       -       -       trivial-rewrite\n\
         bounce    unix  -       -       n       -       0       bounce\n\
         defer     unix  -       -       n       -       0       bounce\n\
         trace     unix  -       -       n       -       0       bounce\n\
         verify    unix  -       -       n       -       1       verify\n\
         flush     unix  n       -       n       1000?   0       flush\n\
         proxymap  unix  -       -       n       -       -       proxymap\n\
         smtp      unix  -       -       n       -       -       smtp\n\
         relay     unix  -       -       n       -       -       smtp\n\
         showq     unix  n       -       n       -       -       showq\n\
         error     unix  -       -       n       -       -       error\n\
         retry     unix  -       -       n       -       -       error\n\
         discard   unix  -       -       n       -       -       discard\n\
         local     unix  -       n       n       -       -       local\n\
         virtual   unix  -       n       n       -       -       virtual\n\
         lmtp      unix  -       -       n       -       -       lmtp\n\
         anvil     unix  -       -       n       -       1       anvil\n\
         scache\t  unix\t-\t-\tn\t-\t1\tscache\n\
         {POLICY_MARKER}policy    unix  -       n       n       -       0       spawn\n\
         {POLICY_MARKER}\tuser={spawn_user} argv=/usr/bin/perl {policyd}\n\
         #\n\
         # ====================================================================\n\
         # Interfaces to non-Postfix software. Be sure to examine the manual\n\
         postlog   unix-dgram n  -       n       -       1       postlogd\n"
    )
}

/// Items of Carbonio's `smtpd_recipient_restrictions.cf` template taken from
/// `zimbraMtaRestriction`, in template order, after the four fixed leading items.
/// `true` = `%%exact%%` (a whitespace-separated element), `false` = `%%contains%%`.
const RESTRICTION_TEMPLATE: &[(&str, bool)] = &[
    ("reject_invalid_helo_hostname", true),
    ("reject_non_fqdn_helo_hostname", true),
    ("reject_non_fqdn_sender", true),
    ("reject_unknown_client_hostname", true),
    ("reject_unknown_reverse_client_hostname", true),
    ("reject_unknown_helo_hostname", true),
    ("reject_unknown_sender_domain", true),
    ("reject_unverified_recipient", true),
    (
        "check_recipient_access lmdb:/opt/zextras/conf/postfix_recipient_access",
        false,
    ),
    (
        "check_client_access lmdb:/opt/zextras/conf/postfix_rbl_override",
        false,
    ),
    (
        "check_reverse_client_hostname_access pcre:/opt/zextras/conf/fqrdns.pcre",
        false,
    ),
];

/// The policy service restriction the backscatter baseline adds.
pub const POLICY_RESTRICTION: &str = "check_policy_service unix:private/policy";

/// One active master.cf service entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterEntry {
    /// Service name and type, e.g. `policy` / `unix`.
    pub name: String,
    pub kind: String,
    /// private, unpriv, chroot, wakeup, maxproc.
    pub flags: [String; 5],
    /// Command and its arguments.
    pub command: String,
}

impl MasterEntry {
    /// The line as `postconf -M` prints it.
    pub fn render(&self) -> String {
        let [a, b, c, d, e] = &self.flags;
        format!(
            "{:<10} {:<5} {:<7} {:<7} {:<7} {:<7} {:<7} {}",
            self.name, self.kind, a, b, c, d, e, self.command
        )
    }

    /// The `user=` of a spawn service, if any.
    pub fn spawn_user(&self) -> Option<&str> {
        self.command
            .split_whitespace()
            .find_map(|w| w.strip_prefix("user="))
    }
}

/// What Postfix runs with.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EffectivePostfix {
    /// main.cf parameters (rendered and defaults).
    pub params: BTreeMap<String, String>,
    /// Active master.cf entries.
    pub master: Vec<MasterEntry>,
}

/// The inputs zmconfigd reads for the `mta` section.
pub struct RenderInput<'a> {
    pub hostname: &'a str,
    /// Effective (server over global) values of an attribute.
    pub attr: &'a dyn Fn(&str) -> Vec<String>,
    /// zimbraServiceEnabled of this server.
    pub services: &'a [String],
    /// The node's master.cf.in.
    pub master_cf_in: &'a str,
}

impl EffectivePostfix {
    /// The same config rendered under another install tree: Zimbra's zmconfigd templates
    /// are Carbonio's with `/opt/zimbra` (Zimbra/zm-mta `zmconfigd/*.cf`).
    pub fn relocated(mut self, home: &str) -> Self {
        let move_ = |v: &str| v.replace("/opt/zextras/", &format!("{home}/"));
        for v in self.params.values_mut() {
            *v = move_(v);
        }
        self
    }

    /// Renders the config as zmconfigd would at (re)start.
    pub fn render(input: &RenderInput<'_>) -> Self {
        let attr = input.attr;
        let single = |n: &str| attr(n).into_iter().next();
        let policyd = single("zimbraMtaEnableSmtpdPolicyd").as_deref() == Some("TRUE");
        let mut params = fixed_params();
        params.insert("myhostname".into(), input.hostname.into());
        // Built into Carbonio's and Zimbra's Postfix (`-DDEF_QUEUE_DIR`, Zimbra/packages
        // `postfix.spec` line 60; Carbonio's assumed alike); relocated for Zimbra.
        params.insert(
            "queue_directory".into(),
            "/opt/zextras/data/postfix/spool".into(),
        );
        params.insert(
            "mynetworks".into(),
            single("zimbraMtaMyNetworks").unwrap_or_else(|| "127.0.0.0/8 [::1]/128".into()),
        );
        params.insert(
            "smtpd_recipient_restrictions".into(),
            recipient_restrictions(input).join(", "),
        );
        // Postfix's own defaults apply when LDAP has no value.
        params.insert(
            "smtpd_reject_unlisted_recipient".into(),
            single("zimbraMtaSmtpdRejectUnlistedRecipient").unwrap_or_else(|| "yes".into()),
        );
        params.insert(
            "smtpd_reject_unlisted_sender".into(),
            single("zimbraMtaSmtpdRejectUnlistedSender").unwrap_or_else(|| "no".into()),
        );
        params.insert(
            "smtpd_sender_restrictions".into(),
            sender_restrictions(&attr("zimbraMtaSmtpdSenderRestrictions").join(" ")),
        );
        if policyd {
            params.insert(
                "policy_time_limit".into(),
                single("zimbraMtaPolicyTimeLimit").unwrap_or_else(|| "3600".into()),
            );
        }
        let master = render_master(input.master_cf_in, policyd);
        EffectivePostfix { params, master }
    }

    /// master.cf as zmconfigd writes it: one line per active entry.
    pub fn master_cf_text(&self) -> String {
        self.master
            .iter()
            .map(|e| format!("{}\n", e.render()))
            .collect()
    }

    /// `postconf -M name/type`.
    pub fn master_entry(&self, name: &str, kind: &str) -> Option<&MasterEntry> {
        self.master
            .iter()
            .find(|e| e.name == name && e.kind == kind)
    }

    /// The items of `smtpd_recipient_restrictions`, in order.
    pub fn recipient_restrictions(&self) -> Vec<&str> {
        self.params
            .get("smtpd_recipient_restrictions")
            .map(|v| v.split(", ").collect())
            .unwrap_or_default()
    }

    /// `smtpd_reject_unlisted_recipient = yes`.
    pub fn rejects_unlisted_recipient(&self) -> bool {
        self.params
            .get("smtpd_reject_unlisted_recipient")
            .map(String::as_str)
            == Some("yes")
    }

    /// The spawn user of the active policy service, if it is active.
    pub fn policy_spawn_user(&self) -> Option<&str> {
        self.master_entry("policy", "unix")
            .and_then(MasterEntry::spawn_user)
    }
}

/// `smtpd_recipient_restrictions` as Carbonio's template renders it from
/// `zimbraMtaRestriction` and the enabled services: the blacklist and cbpolicyd first,
/// the four fixed items, the template's items, the RBLs, the policy service, the split
/// domain, then `reject` and `permit`.
fn recipient_restrictions(input: &RenderInput<'_>) -> Vec<String> {
    let attr = input.attr;
    let restriction = attr("zimbraMtaRestriction").join(" ");
    let exact = |v: &str| restriction.split_whitespace().any(|w| w == v);
    let contains = |s: &str| restriction.contains(s);

    let mut rcpt: Vec<String> = Vec::new();
    let blacklist = "check_client_access lmdb:/opt/zextras/conf/postfix_blacklist";
    if contains(blacklist) {
        rcpt.push(blacklist.into());
    }
    if input.services.iter().any(|s| s == "cbpolicyd") {
        rcpt.push("check_policy_service inet:localhost:10031".into());
    }
    for fixed in [
        "reject_non_fqdn_recipient",
        "permit_sasl_authenticated",
        "permit_mynetworks",
        "reject_unlisted_recipient",
    ] {
        rcpt.push(fixed.into());
    }
    for (item, is_exact) in RESTRICTION_TEMPLATE {
        if (*is_exact && exact(item)) || (!is_exact && contains(item)) {
            rcpt.push((*item).into());
        }
    }
    // %%explode reject_rbl_client VAR:zimbraMtaRestrictionRBLs%% and friends.
    for kind in [
        "reject_rbl_client",
        "reject_rhsbl_client",
        "reject_rhsbl_reverse_client",
        "reject_rhsbl_sender",
    ] {
        for v in attr("zimbraMtaRestriction") {
            let mut w = v.split_whitespace();
            if w.next() == Some(kind)
                && let Some(site) = w.next()
            {
                rcpt.push(format!("{kind} {site}"));
            }
        }
    }
    if contains(POLICY_RESTRICTION) {
        rcpt.push(POLICY_RESTRICTION.into());
    }
    let split = "check_recipient_access ldap:/opt/zextras/conf/ldap-splitdomain.cf";
    if contains(split) {
        rcpt.push(split.into());
    }
    if exact("reject") {
        rcpt.push("reject".into());
    }
    rcpt.push("permit".into());
    rcpt
}

/// The main.cf parameters that do not depend on LDAP.
fn fixed_params() -> BTreeMap<String, String> {
    [
        ("mail_name", "Postfix"),
        ("mail_version", "3.11.3"),
        ("smtpd_banner", "$myhostname ESMTP $mail_name"),
        (
            "smtpd_policy_service_default_action",
            "451 4.3.5 Server configuration problem",
        ),
        ("inet_interfaces", "all"),
        ("mydestination", "localhost"),
        (
            "virtual_mailbox_domains",
            "proxy:ldap:/opt/zextras/conf/ldap-vmd.cf",
        ),
        (
            "virtual_mailbox_maps",
            "proxy:ldap:/opt/zextras/conf/ldap-vmm.cf",
        ),
        (
            "virtual_alias_maps",
            "proxy:ldap:/opt/zextras/conf/ldap-vam.cf",
        ),
        (
            "smtpd_relay_restrictions",
            "permit_sasl_authenticated, permit_mynetworks, reject_unauth_destination",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `smtpd_sender_restrictions` from `zimbraMtaSmtpdSenderRestrictions` (its values
/// joined by blanks): the two items taken from it, then the fixed ones.
fn sender_restrictions(sender_attr: &str) -> String {
    let mut sender: Vec<&str> = Vec::new();
    if sender_attr
        .split_whitespace()
        .any(|w| w == "reject_authenticated_sender_login_mismatch")
    {
        sender.push("reject_authenticated_sender_login_mismatch");
    }
    if sender_attr.contains("check_sender_access lmdb:/opt/zextras/conf/postfix_reject_sender") {
        sender.push("check_sender_access lmdb:/opt/zextras/conf/postfix_reject_sender");
    }
    sender.extend([
        "permit_mynetworks",
        "reject_sender_login_mismatch",
        "permit_sasl_authenticated",
        "permit_tls_clientcerts",
    ]);
    sender.join(", ")
}

/// The active master.cf entries rendered from `master_cf_in`, the policy entry only when
/// `policyd` is on.
fn render_master(master_cf_in: &str, policyd: bool) -> Vec<MasterEntry> {
    // zmconfigd resolves the directive (uncomments when the variable is true, drops
    // the line otherwise); Postfix then joins whitespace-led continuation lines.
    let rendered: Vec<&str> = master_cf_in
        .lines()
        .filter_map(|line| match line.strip_prefix(POLICY_MARKER) {
            Some(rest) if policyd => Some(rest),
            Some(_) => None,
            None => Some(line),
        })
        .collect();
    let mut logical: Vec<String> = Vec::new();
    for line in rendered {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        match logical.last_mut() {
            Some(entry) if line.starts_with(char::is_whitespace) => {
                entry.push(' ');
                entry.push_str(line.trim());
            }
            _ if line.starts_with(char::is_whitespace) => {}
            _ => logical.push(line.to_string()),
        }
    }
    logical
        .iter()
        .filter_map(|l| parse_master_line(l))
        .collect()
}

fn parse_master_line(line: &str) -> Option<MasterEntry> {
    let t = line.trim_start();
    if t.is_empty() || t.starts_with('#') || line.starts_with(char::is_whitespace) {
        return None;
    }
    let mut w = t.split_whitespace();
    let name = w.next()?.to_string();
    let kind = w.next()?.to_string();
    let flags = [w.next()?, w.next()?, w.next()?, w.next()?, w.next()?].map(str::to_string);
    let command = w.collect::<Vec<_>>().join(" ");
    if command.is_empty() {
        return None;
    }
    Some(MasterEntry {
        name,
        kind,
        flags,
        command,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(vals: &[(&str, &[&str])]) -> EffectivePostfix {
        let lookup = |n: &str| {
            vals.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default()
        };
        let services = vec!["mta".to_string()];
        let tpl = master_cf_in("zimbra");
        EffectivePostfix::render(&RenderInput {
            hostname: "mx1.example",
            attr: &lookup,
            services: &services,
            master_cf_in: &tpl,
        })
    }

    #[test]
    fn carbonio_defaults_render_as_documented() {
        let p = render(&[
            (
                "zimbraMtaRestriction",
                &[
                    "reject_invalid_helo_hostname",
                    "reject_non_fqdn_sender",
                    "reject_unknown_sender_domain",
                ],
            ),
            ("zimbraMtaEnableSmtpdPolicyd", &["FALSE"]),
        ]);
        assert_eq!(
            p.params["smtpd_recipient_restrictions"],
            "reject_non_fqdn_recipient, permit_sasl_authenticated, permit_mynetworks, reject_unlisted_recipient, reject_invalid_helo_hostname, reject_non_fqdn_sender, reject_unknown_sender_domain, permit"
        );
        assert!(p.master_entry("policy", "unix").is_none());
        assert!(!p.params.contains_key("policy_time_limit"));
    }

    #[test]
    fn policy_item_goes_before_permit_whatever_the_ldap_order() {
        let p = render(&[
            (
                "zimbraMtaRestriction",
                &[
                    POLICY_RESTRICTION,
                    "reject_invalid_helo_hostname",
                    "bogus_value",
                ],
            ),
            ("zimbraMtaEnableSmtpdPolicyd", &["TRUE"]),
        ]);
        assert_eq!(
            p.params["smtpd_recipient_restrictions"],
            "reject_non_fqdn_recipient, permit_sasl_authenticated, permit_mynetworks, reject_unlisted_recipient, reject_invalid_helo_hostname, check_policy_service unix:private/policy, permit"
        );
        let e = p.master_entry("policy", "unix").unwrap();
        assert_eq!(
            e.render(),
            "policy     unix  -       n       n       -       0       spawn user=zimbra argv=/usr/bin/perl /opt/zextras/libexec/zmpostfixpolicyd"
        );
        assert_eq!(p.policy_spawn_user(), Some("zimbra"));
        assert_eq!(p.params["policy_time_limit"], "3600");
    }
}
