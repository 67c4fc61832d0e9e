//! A node's REAL Postfix, for the real-process test fleet (tests/support/realfleet.rs):
//! what the emulated zmconfigd, restarts and reloads of a `sim-exec` node also do to the
//! Postfix instance running in that node's namespaces, so that `postconf`, smtpd, the
//! policy socket and the mail log the tool reads are Postfix's own.
//!
//! - Rendering (zmconfigd, `configrewrite mta`, a restart) writes master.cf from the
//!   rendered master.cf.in (Carbonio's two-line policy entry joined, as Postfix reads
//!   it), the node-local lookup tables, and sets the rendered parameters with the real
//!   `postconf -e`.
//! - Carbonio's `ldap:`/`lmdb:`/`pcre:` tables become node-local `texthash:` tables in the
//!   node's config directory ([`local_table`]): the domains and addresses from the
//!   emulated LDAP, the rest empty. A namespace has no LDAP server and Debian's Postfix
//!   has no LMDB without an extra package.
//! - Start, stop and reload run the real `postfix` command at `HOME/common/sbin/postfix`
//!   (in the fleet, a wrapper for Debian's `/usr/sbin/postfix -c HOME/common/conf`),
//!   directly as root, through the service user's NOPASSWD sudo rule otherwise (as
//!   Carbonio's own scripts do, docs/carbonio.md §4).
//!
//! Only a `sim-exec` process inside the node's mount namespace installs this hook
//! ([`crate::node::MtaHook`]): the paths it uses are the node's.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::flavour::Flavour;

use super::node::{Ldap, MtaHook, Node};
use super::postfix::EffectivePostfix;

/// The real Postfix of a node of product `flavour`.
#[derive(Debug, Clone, Copy)]
pub struct RealMta {
    pub flavour: Flavour,
}

/// The parameters every real node sets besides what zmconfigd renders: its own
/// directories (several Postfix instances on one machine need their own queue AND data
/// directory: master takes an exclusive lock in the latter), logging through `postlog`
/// into the node's own mail log (a namespace shares the machine's `/dev/log`, and a
/// container may have no syslog), its name, no local delivery, and the node-local
/// tables. `service_throttle_time` is shortened from 60 s so that a policy service that
/// cannot start answers `451 4.3.5` in seconds, not minutes (smtpd retries once, and
/// master throttles a service whose process exits at startup): the one timing a test
/// fleet changes, stated here and in the README.
pub fn base_main_cf(flavour: Flavour, hostname: &str) -> String {
    let h = flavour.home();
    let domain = hostname.split_once('.').map_or(hostname, |(_, d)| d);
    format!(
        "# main.cf of a real-process test node (carbonio-sim realmta): the base;\n\
         # zmconfigd's parameters are set below it with `postconf -e`.\n\
         compatibility_level = 3.6\n\
         myhostname = {hostname}\n\
         mydomain = {domain}\n\
         queue_directory = {h}/data/postfix/spool\n\
         data_directory = {h}/data/postfix/data\n\
         maillog_file = {log}\n\
         inet_protocols = ipv4\n\
         alias_maps =\n\
         alias_database =\n\
         biff = no\n\
         service_throttle_time = 2s\n",
        log = flavour.mail_log(),
    )
}

/// The node-local replacement of one of Carbonio's lookup tables: `texthash:` on a file
/// in the node's config directory (`HOME/common/conf/NAME`), named after the original.
pub fn local_table(flavour: Flavour, table: &str) -> Option<(String, String)> {
    let path = table
        .strip_prefix("proxy:")
        .unwrap_or(table)
        .split_once(':')
        .filter(|(kind, _)| matches!(*kind, "ldap" | "lmdb" | "pcre" | "hash"))?
        .1;
    let name = Path::new(path).file_name()?.to_str()?;
    let name = name.strip_suffix(".cf").unwrap_or(name);
    let file = format!("{}/common/conf/{name}", flavour.home());
    Some((table.to_string(), format!("texthash:{file}")))
}

/// The rendered parameters as real Postfix takes them: every Carbonio table replaced by
/// its [`local_table`], and `virtual_alias_domains` (Carbonio's `ldap-vad.cf`) added.
/// Returns the parameters and the table files to write (path → content).
pub fn real_params(
    flavour: Flavour,
    pf: &EffectivePostfix,
    ldap: &Ldap,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut params = BTreeMap::new();
    let mut tables = BTreeMap::new();
    let home = flavour.home();
    let mut with_vad = pf.params.clone();
    with_vad.insert(
        "virtual_alias_domains".into(),
        format!("proxy:ldap:{home}/conf/ldap-vad.cf"),
    );
    for (name, value) in with_vad {
        // What Postfix itself reports, never configuration.
        if matches!(name.as_str(), "mail_version" | "mail_name") {
            continue;
        }
        let mut v = value.clone();
        for word in value.split([' ', ',']).filter(|w| !w.is_empty()) {
            if let Some((from, to)) = local_table(flavour, word) {
                v = v.replace(&from, &to);
                let file = to.trim_start_matches("texthash:").to_string();
                tables
                    .entry(file.clone())
                    .or_insert_with(|| table_content(&file, ldap));
            }
        }
        params.insert(name, v);
    }
    (params, tables)
}

/// What Carbonio's LDAP maps would answer, as a `texthash:` table: hosted local domains
/// (`ldap-vmd`), their addresses (`ldap-vmm`), alias domains (`ldap-vad`), catch-alls
/// (`ldap-vam`: an alias domain forwards to the local domain, an account's
/// `zimbraMailCatchAllAddress` to the account); every other table empty.
fn table_content(file: &str, ldap: &Ldap) -> String {
    let kind = |d: &str| {
        ldap.domain_attrs
            .get(d)
            .and_then(|a| a.get("zimbraDomainType"))
            .and_then(|t| t.first().cloned())
            .unwrap_or_else(|| "local".into())
    };
    let local: Vec<&String> = ldap.domains.iter().filter(|d| kind(d) == "local").collect();
    let alias: Vec<&String> = ldap.domains.iter().filter(|d| kind(d) == "alias").collect();
    let mut out = String::new();
    match Path::new(file).file_name().and_then(|n| n.to_str()) {
        Some("ldap-vmd") => local
            .iter()
            .for_each(|d| out.push_str(&format!("{d} OK\n"))),
        Some("ldap-vad") => alias
            .iter()
            .for_each(|d| out.push_str(&format!("{d} OK\n"))),
        Some("ldap-vmm") => {
            for a in &ldap.addresses {
                out.push_str(&format!("{a} {a}\n"));
            }
        }
        Some("ldap-vam") => {
            if let Some(target) = local.first() {
                for d in &alias {
                    out.push_str(&format!("@{d} @{target}\n"));
                }
            }
            for (account, catch_all) in &ldap.catch_all_accounts {
                out.push_str(&format!("{catch_all} {account}\n"));
            }
        }
        _ => {}
    }
    out
}

/// Writes the tables, then sets the parameters with the real `postconf -c DIR -e`, in
/// the config directory `conf` (as the node sees it, or its path outside the node).
pub fn render_into(
    conf: &Path,
    params: &BTreeMap<String, String>,
    tables: &BTreeMap<String, String>,
    flavour: Flavour,
) -> Result<(), String> {
    let node_conf = format!("{}/common/conf", flavour.home());
    for (file, text) in tables {
        let name = Path::new(file)
            .strip_prefix(&node_conf)
            .unwrap_or(Path::new(file));
        let path = conf.join(name);
        if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let out = Command::new("/usr/sbin/postconf")
        .arg("-c")
        .arg(conf)
        .arg("-e")
        .args(params.iter().map(|(k, v)| format!("{k}={v}")))
        .output()
        .map_err(|e| format!("postconf -e: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "postconf -e: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

impl RealMta {
    /// Runs `HOME/common/sbin/postfix ACTION` as root (directly, or through sudo).
    #[expect(unsafe_code, reason = "geteuid: std cannot ask for the uid")]
    fn postfix(&self, action: &str) -> Result<(), String> {
        let bin = format!("{}/common/sbin/postfix", self.flavour.home());
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let mut cmd = if root {
            Command::new(&bin)
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", &bin]);
            c
        };
        let out = cmd
            .arg(action)
            .output()
            .map_err(|e| format!("postfix {action}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "postfix {action}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl MtaHook for RealMta {
    fn rendered(&self, node: &Node, pf: &EffectivePostfix) {
        let ldap = node.cluster.ldap().clone();
        let (params, tables) = real_params(self.flavour, pf, &ldap);
        let conf = format!("{}/common/conf", self.flavour.home());
        // master.cf now, not when the state is saved: a start or reload that follows
        // in this same process must load it.
        let master_cf = self.flavour.master_cf();
        if let Err(e) = fs::write(master_cf, pf.master_cf_text()) {
            eprintln!("sim-exec: real Postfix: {master_cf}: {e}");
        }
        if let Err(e) = render_into(Path::new(&conf), &params, &tables, self.flavour) {
            eprintln!("sim-exec: real Postfix: {e}");
        }
    }

    fn started(&self) -> bool {
        self.postfix("start")
            .map_err(|e| eprintln!("sim-exec: real Postfix: {e}"))
            .is_ok()
    }

    fn stopped(&self) {
        if let Err(e) = self.postfix("stop") {
            eprintln!("sim-exec: real Postfix: {e}");
        }
    }

    fn reloaded(&self) -> bool {
        self.postfix("reload")
            .map_err(|e| eprintln!("sim-exec: real Postfix: {e}"))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carbonio_tables_become_node_local_texthash() {
        assert_eq!(
            local_table(
                Flavour::Carbonio,
                "proxy:ldap:/opt/zextras/conf/ldap-vmm.cf"
            ),
            Some((
                "proxy:ldap:/opt/zextras/conf/ldap-vmm.cf".into(),
                "texthash:/opt/zextras/common/conf/ldap-vmm".into()
            ))
        );
        assert_eq!(
            local_table(
                Flavour::Zimbra,
                "lmdb:/opt/zimbra/conf/postfix_recipient_access"
            )
            .map(|t| t.1),
            Some("texthash:/opt/zimbra/common/conf/postfix_recipient_access".into())
        );
        assert_eq!(local_table(Flavour::Carbonio, "unix:private/policy"), None);
        assert_eq!(local_table(Flavour::Carbonio, "permit_mynetworks"), None);
    }

    #[test]
    fn maps_carry_the_ldap_domains_addresses_and_catch_alls() {
        let mut ldap = Ldap {
            domains: vec!["o.example".into(), "alias.example".into()],
            ..Ldap::default()
        };
        ldap.domain_attrs.insert(
            "alias.example".into(),
            [("zimbraDomainType".to_string(), vec!["alias".to_string()])].into(),
        );
        ldap.addresses.insert("user1@o.example".into());
        let pf = EffectivePostfix {
            params: [
                (
                    "virtual_mailbox_maps".to_string(),
                    "proxy:ldap:/opt/zextras/conf/ldap-vmm.cf".to_string(),
                ),
                (
                    "virtual_alias_maps".to_string(),
                    "proxy:ldap:/opt/zextras/conf/ldap-vam.cf".to_string(),
                ),
                (
                    "smtpd_recipient_restrictions".to_string(),
                    "permit_mynetworks, check_recipient_access lmdb:/opt/zextras/conf/postfix_recipient_access, permit".to_string(),
                ),
                ("mail_version".to_string(), "3.11.3".to_string()),
            ]
            .into(),
            master: Vec::new(),
        };
        let (params, tables) = real_params(Flavour::Carbonio, &pf, &ldap);
        assert_eq!(
            params["smtpd_recipient_restrictions"],
            "permit_mynetworks, check_recipient_access texthash:/opt/zextras/common/conf/postfix_recipient_access, permit"
        );
        assert_eq!(
            params["virtual_alias_domains"],
            "texthash:/opt/zextras/common/conf/ldap-vad"
        );
        assert!(!params.contains_key("mail_version"));
        assert_eq!(
            tables["/opt/zextras/common/conf/ldap-vmm"],
            "user1@o.example user1@o.example\n"
        );
        assert_eq!(
            tables["/opt/zextras/common/conf/ldap-vam"],
            "@alias.example @o.example\n"
        );
        assert_eq!(
            tables["/opt/zextras/common/conf/ldap-vad"],
            "alias.example OK\n"
        );
        assert_eq!(
            tables["/opt/zextras/common/conf/postfix_recipient_access"],
            ""
        );
    }
}
