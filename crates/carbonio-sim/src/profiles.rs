//! Node profiles: what a simulated node looks like (platform, LDAP posture, role,
//! broken policy spawn user) and how it misbehaves (slow, refuses auth, wrong host key,
//! unreachable, hanging), plus the `--profile-mix` syntax.
//!
//! Mix syntax: a comma list of `TAGS=COUNT`, TAGS being `+`-joined tags, e.g.
//! `compliant=4,systemd+half-compliant=3,legacy+non-compliant+spawn-user-missing=1,unreachable=1`.
//! Tags: platform `legacy`|`systemd` (absent: alternates, legacy first); posture
//! `non-compliant` (default) | `half-compliant` | `compliant` | `server-override` |
//! `restart-pending`; role `mta` (default) | `mailbox`; `spawn-user-missing` (the stock `user=zimbra`); `spawn-user-fixed` (`user=zextras`); `zimbra-user-added`; `advanced-cli`; `catch-all-account`; `zimbra` (a Zimbra node: user `zimbra`, `/opt/zimbra`, legacy only); `master-not-reloaded` (master.cf written after the master started, no reload logged); `log-rotated` (the mail log begins after master.cf's last write); behaviour
//! `slow` | `auth-refused` | `hostkey-changed` | `unreachable` | `hanging`. Nodes not
//! covered by the mix are plain `non-compliant`.

use std::fmt;

use super::attrs::{AttrMap, attr_map};
use super::error::SimError;
use super::node::Platform;
use super::postfix::POLICY_RESTRICTION;
use crate::flavour::Flavour;

/// The LDAP state a node's cluster (and its server entry) starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Posture {
    /// Fresh Zimbra-like defaults: policyd FALSE, reject unlisted no/no, no policy line.
    NonCompliant,
    /// Carbonio defaults: reject unlisted yes/yes; policyd FALSE, no policy restriction.
    HalfCompliant,
    /// All four controls set, effective config matching.
    Compliant,
    /// Global compliant, but the server entry sets RejectUnlistedRecipient = no.
    ServerOverride,
    /// LDAP compliant, but Postfix still runs the non-compliant config (never restarted).
    RestartPending,
}

/// What the node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeRole {
    /// MTA (Postfix, amavis, …).
    Mta,
    /// Mailbox/proxy only: no Postfix.
    Mailbox,
}

/// How the node's SSH endpoint behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Behaviour {
    Normal,
    /// Extra JVM start and restart time.
    Slow,
    /// Refuses every authentication.
    AuthRefused,
    /// known_hosts lists another key than the one the node presents.
    HostkeyChanged,
    /// Nothing listens.
    Unreachable,
    /// Accepts TCP and never speaks.
    Hanging,
}

/// A node profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeProfile {
    pub platform: Platform,
    pub posture: Posture,
    pub role: NodeRole,
    /// Stock master.cf.in (`user=zimbra`, which no Carbonio package creates; docs/carbonio.md
    /// §1) whatever the posture. See [`NodeProfile::spawn_setup`] for the default.
    pub spawn_user_missing: bool,
    /// The operator fixed the entry to `user=zextras` whatever the posture.
    pub spawn_user_fixed: bool,
    /// The stock `user=zimbra` entry, and an operator "fixed" it by creating `zimbra`
    /// and adding it to group zextras: the user exists, but spawn drops supplementary
    /// groups, so it still cannot read localconfig.xml (docs/carbonio.md §1).
    pub zimbra_user_added: bool,
    /// Commercial Carbonio with the Advanced CLI: the `carbonio` wrapper opens its own
    /// shell (`carbonio>` prompt) instead of ProvUtil (docs/carbonio.md §5); `zmprov` is
    /// unchanged.
    pub advanced_cli: bool,
    /// The cluster's local domain has an account carrying `zimbraMailCatchAllAddress
    /// @DOMAIN` (set on the cluster's first node): no hosted domain rejects unknown
    /// recipients.
    pub catch_all_account: bool,
    /// What the mail log and the master's age say about master.cf being loaded.
    pub running: RunningSetup,
    /// Carbonio (default) or Zimbra (`zimbra` tag: user `zimbra`, `/opt/zimbra`, no
    /// systemd targets, so always a `legacy` node).
    pub flavour: Flavour,
    pub behaviour: Behaviour,
}

/// The running master against master.cf (docs/carbonio.md §3: files are not the running
/// Postfix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunningSetup {
    /// The master started after master.cf was rendered, and logged it.
    Loaded,
    /// master.cf was rewritten an hour ago; the master started two days ago and has not
    /// reloaded since (a systemd node whose zmconfigd cannot reload).
    NotReloaded,
    /// master.cf was written three days ago; the log, rotated, begins an hour ago, and
    /// the master is a month old: no record tells.
    LogRotated,
}

impl Default for NodeProfile {
    fn default() -> Self {
        NodeProfile {
            platform: Platform::Legacy,
            posture: Posture::NonCompliant,
            role: NodeRole::Mta,
            spawn_user_missing: false,
            spawn_user_fixed: false,
            zimbra_user_added: false,
            advanced_cli: false,
            catch_all_account: false,
            running: RunningSetup::Loaded,
            flavour: Flavour::Carbonio,
            behaviour: Behaviour::Normal,
        }
    }
}

impl Posture {
    fn as_str(self) -> &'static str {
        match self {
            Posture::NonCompliant => "non-compliant",
            Posture::HalfCompliant => "half-compliant",
            Posture::Compliant => "compliant",
            Posture::ServerOverride => "server-override",
            Posture::RestartPending => "restart-pending",
        }
    }
}

impl Behaviour {
    fn as_str(self) -> Option<&'static str> {
        match self {
            Behaviour::Normal => None,
            Behaviour::Slow => Some("slow"),
            Behaviour::AuthRefused => Some("auth-refused"),
            Behaviour::HostkeyChanged => Some("hostkey-changed"),
            Behaviour::Unreachable => Some("unreachable"),
            Behaviour::Hanging => Some("hanging"),
        }
    }
}

impl fmt::Display for NodeProfile {
    /// The canonical tag list, e.g. `systemd+compliant+mailbox`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.platform.as_str(), self.posture.as_str())?;
        if self.flavour == Flavour::Zimbra {
            f.write_str("+zimbra")?;
        }
        if self.role == NodeRole::Mailbox {
            f.write_str("+mailbox")?;
        }
        if self.spawn_user_missing {
            f.write_str("+spawn-user-missing")?;
        }
        if self.spawn_user_fixed {
            f.write_str("+spawn-user-fixed")?;
        }
        if self.zimbra_user_added {
            f.write_str("+zimbra-user-added")?;
        }
        if self.advanced_cli {
            f.write_str("+advanced-cli")?;
        }
        if self.catch_all_account {
            f.write_str("+catch-all-account")?;
        }
        match self.running {
            RunningSetup::Loaded => {}
            RunningSetup::NotReloaded => f.write_str("+master-not-reloaded")?,
            RunningSetup::LogRotated => f.write_str("+log-rotated")?,
        }
        if let Some(b) = self.behaviour.as_str() {
            write!(f, "+{b}")?;
        }
        Ok(())
    }
}

/// Global config values of a posture (what `mcf` would have set).
pub fn global_attrs(posture: Posture) -> AttrMap {
    let carbonio_restrictions = vec![
        "reject_invalid_helo_hostname",
        "reject_non_fqdn_sender",
        "reject_unknown_sender_domain",
    ];
    let (policyd, unlisted, restrictions) = match posture {
        Posture::NonCompliant => (
            "FALSE",
            "no",
            vec!["reject_invalid_helo_hostname", "reject_non_fqdn_sender"],
        ),
        Posture::HalfCompliant => ("FALSE", "yes", carbonio_restrictions),
        Posture::Compliant | Posture::ServerOverride | Posture::RestartPending => {
            let mut r = carbonio_restrictions;
            r.push(POLICY_RESTRICTION);
            ("TRUE", "yes", r)
        }
    };
    attr_map([
        ("zimbraMtaEnableSmtpdPolicyd", vec![policyd]),
        ("zimbraMtaSmtpdRejectUnlistedRecipient", vec![unlisted]),
        ("zimbraMtaSmtpdRejectUnlistedSender", vec![unlisted]),
        ("zimbraMtaRestriction", restrictions),
        (
            "zimbraMtaSmtpdSenderRestrictions",
            vec!["reject_sender_login_mismatch"],
        ),
        (
            "zimbraMtaSmtpdSenderLoginMaps",
            vec!["proxy:ldap:/opt/zextras/conf/ldap-slm.cf"],
        ),
        ("zimbraMtaMyNetworks", vec!["127.0.0.0/8 [::1]/128"]),
        ("zimbraAmavisFinalSpamDestiny", vec!["D_DISCARD"]),
    ])
}

/// How a node's policy entry and users stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnSetup {
    /// As Carbonio ships: `user=zimbra`, no such user.
    Stock,
    /// The stock entry, and an operator-made `zimbra` that cannot read localconfig.xml.
    ZimbraAdded,
    /// `user=zextras`.
    Fixed,
}

impl NodeProfile {
    /// The node's spawn setup: the tags decide; without one, what its posture implies.
    /// A node as Carbonio installs it (non- or half-compliant: the policy daemon was
    /// never enabled) has the stock entry; one whose LDAP already enables the daemon
    /// (compliant, server-override, restart-pending) had it fixed, or its mail would
    /// get 451 (docs/carbonio.md §1).
    pub fn spawn_setup(&self) -> SpawnSetup {
        if self.zimbra_user_added {
            SpawnSetup::ZimbraAdded
        } else if self.spawn_user_missing {
            SpawnSetup::Stock
        } else if self.spawn_user_fixed {
            SpawnSetup::Fixed
        } else {
            match self.posture {
                Posture::NonCompliant | Posture::HalfCompliant => SpawnSetup::Stock,
                Posture::Compliant | Posture::ServerOverride | Posture::RestartPending => {
                    SpawnSetup::Fixed
                }
            }
        }
    }

    /// zimbraServiceEnabled of the role.
    pub fn services(&self) -> Vec<String> {
        let s: &[&str] = match self.role {
            NodeRole::Mta => &[
                "amavis",
                "antispam",
                "antivirus",
                "mta",
                "opendkim",
                "stats",
                "zmconfigd",
            ],
            NodeRole::Mailbox => &[
                "mailbox",
                "memcached",
                "proxy",
                "service",
                "stats",
                "zmconfigd",
            ],
        };
        s.iter().map(|x| x.to_string()).collect()
    }

    /// The server entry of a node with this profile.
    pub fn server_attrs(&self, hostname: &str) -> AttrMap {
        let services = self.services();
        let mut m = attr_map([
            ("cn", vec![hostname]),
            ("zimbraServiceHostname", vec![hostname]),
        ]);
        m.insert("zimbraServiceEnabled".into(), services.clone());
        m.insert("zimbraServiceInstalled".into(), services);
        if self.posture == Posture::ServerOverride {
            m.insert(
                "zimbraMtaSmtpdRejectUnlistedRecipient".into(),
                vec!["no".into()],
            );
        }
        m
    }

    /// `zmcontrol -v` text.
    pub fn version(&self) -> &'static str {
        match (self.flavour, self.platform) {
            // zm-core-utils `zmcontrol` displayVersion: "Release $release $platform" and
            // the edition.
            (Flavour::Zimbra, _) => "Release 10.0.6.GA.4518.UBUNTU22.64 UBUNTU22_64 FOSS edition.",
            (Flavour::Carbonio, Platform::Legacy) => "Carbonio Release 24.12.0",
            (Flavour::Carbonio, Platform::Systemd) => "Carbonio Release 25.6.0",
        }
    }

    /// The file the tool reads the release from, and its content: Carbonio's `.version`
    /// (the bare version), Zimbra's install history (zm-build `packages.sh` line 199).
    pub fn version_file(&self) -> (&'static str, String) {
        let content = match self.flavour {
            Flavour::Carbonio => self
                .version()
                .trim_start_matches("Carbonio Release ")
                .to_string(),
            Flavour::Zimbra => "1700000000: INSTALLED zimbra-core_10.0.6.GA.4518.UBUNTU22.64_amd64.deb\n\
                                1700000001: INSTALLED zimbra-mta_10.0.6.GA.4518.UBUNTU22.64_amd64.deb\n"
                .to_string(),
        };
        (self.flavour.version_file(), content)
    }

    /// Parses `+`-joined tags (see the module docs). `platform` is used when no platform
    /// tag is given.
    pub fn parse(tags: &str, platform: Platform) -> Result<NodeProfile, String> {
        let mut p = NodeProfile {
            platform,
            ..NodeProfile::default()
        };
        let (mut seen_platform, mut seen_posture, mut seen_behaviour) = (false, false, false);
        for tag in tags.split('+').map(str::trim) {
            let once = |seen: &mut bool, what: &str| {
                if std::mem::replace(seen, true) {
                    Err(format!("more than one {what} tag in `{tags}`"))
                } else {
                    Ok(())
                }
            };
            match tag {
                "legacy" | "systemd" => {
                    once(&mut seen_platform, "platform")?;
                    p.platform = if tag == "legacy" {
                        Platform::Legacy
                    } else {
                        Platform::Systemd
                    };
                }
                "non-compliant" | "half-compliant" | "compliant" | "server-override"
                | "restart-pending" => {
                    once(&mut seen_posture, "posture")?;
                    p.posture = match tag {
                        "non-compliant" => Posture::NonCompliant,
                        "half-compliant" => Posture::HalfCompliant,
                        "compliant" => Posture::Compliant,
                        "server-override" => Posture::ServerOverride,
                        _ => Posture::RestartPending,
                    };
                }
                "mta" => p.role = NodeRole::Mta,
                "mailbox" => p.role = NodeRole::Mailbox,
                "spawn-user-missing" => p.spawn_user_missing = true,
                "spawn-user-fixed" => p.spawn_user_fixed = true,
                "advanced-cli" => p.advanced_cli = true,
                "zimbra-user-added" => p.zimbra_user_added = true,
                "catch-all-account" => p.catch_all_account = true,
                "master-not-reloaded" => p.running = RunningSetup::NotReloaded,
                "zimbra" => p.flavour = Flavour::Zimbra,
                "log-rotated" => p.running = RunningSetup::LogRotated,
                "slow" | "auth-refused" | "hostkey-changed" | "unreachable" | "hanging" => {
                    once(&mut seen_behaviour, "behaviour")?;
                    p.behaviour = match tag {
                        "slow" => Behaviour::Slow,
                        "auth-refused" => Behaviour::AuthRefused,
                        "hostkey-changed" => Behaviour::HostkeyChanged,
                        "unreachable" => Behaviour::Unreachable,
                        _ => Behaviour::Hanging,
                    };
                }
                other => return Err(format!("unknown tag `{other}`")),
            }
        }
        if p.flavour == Flavour::Zimbra {
            // Zimbra has no systemd units (zm-build `zimbra-core.post`: an init script).
            if seen_platform && p.platform == Platform::Systemd {
                return Err(format!(
                    "`{tags}`: a Zimbra node has no systemd targets (use `legacy`)"
                ));
            }
            p.platform = Platform::Legacy;
        }
        Ok(p)
    }

    /// Whether the tags fix the platform (else the caller alternates): a platform tag,
    /// or `zimbra` (always legacy).
    fn names_platform(tags: &str) -> bool {
        tags.split('+')
            .any(|t| matches!(t.trim(), "legacy" | "systemd" | "zimbra"))
    }
}

/// One entry of a parsed mix: the profile of each of `count` nodes (platforms
/// alternate when the entry named none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixEntry {
    pub tags: String,
    pub profiles: Vec<NodeProfile>,
}

/// Parses a `--profile-mix` for a fleet of `total` nodes; the rest is filled with
/// `non-compliant`.
pub fn parse_mix(mix: &str, total: usize) -> Result<Vec<MixEntry>, SimError> {
    let err = |reason: String| SimError::ProfileMix {
        mix: mix.into(),
        reason,
    };
    let mut entries = Vec::new();
    let mut used = 0usize;
    for item in mix.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (tags, count) = item
            .split_once('=')
            .ok_or_else(|| err(format!("`{item}` is not TAGS=COUNT")))?;
        let count: usize = count
            .trim()
            .parse()
            .map_err(|_| err(format!("`{count}` is not a node count")))?;
        entries.push((tags.trim().to_string(), count));
        used += count;
    }
    if used > total {
        return Err(err(format!(
            "the mix names {used} nodes but the fleet has {total}"
        )));
    }
    if used < total {
        entries.push(("non-compliant".into(), total - used));
    }
    entries
        .into_iter()
        .filter(|(_, c)| *c > 0)
        .map(|(tags, count)| {
            let alternate = !NodeProfile::names_platform(&tags);
            let profiles = (0..count)
                .map(|k| {
                    let platform = if alternate && k % 2 == 1 {
                        Platform::Systemd
                    } else {
                        Platform::Legacy
                    };
                    NodeProfile::parse(&tags, platform).map_err(err)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(MixEntry { tags, profiles })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_fills_the_rest() {
        let m = parse_mix(
            "systemd+compliant=2, legacy+spawn-user-missing=1,unreachable=1",
            6,
        )
        .unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].profiles[0].to_string(), "systemd+compliant");
        assert_eq!(
            m[1].profiles[0].to_string(),
            "legacy+non-compliant+spawn-user-missing"
        );
        assert_eq!(m[2].profiles[0].behaviour, Behaviour::Unreachable);
        assert_eq!(m[3].tags, "non-compliant");
        assert_eq!(m[3].profiles.len(), 2);
        assert_eq!(m[3].profiles[1].platform, Platform::Systemd);
    }

    #[test]
    fn mix_errors_are_specific() {
        for (mix, reason) in [
            ("compliant=9", "the mix names 9 nodes but the fleet has 4"),
            ("compliant", "`compliant` is not TAGS=COUNT"),
            ("shiny=1", "unknown tag `shiny`"),
            (
                "legacy+systemd=1",
                "more than one platform tag in `legacy+systemd`",
            ),
        ] {
            match parse_mix(mix, 4) {
                Err(SimError::ProfileMix { reason: r, .. }) => assert_eq!(r, reason, "{mix}"),
                other => panic!("{mix}: {other:?}"),
            }
        }
    }

    #[test]
    fn server_override_only_touches_the_server_entry() {
        let p = NodeProfile {
            posture: Posture::ServerOverride,
            ..NodeProfile::default()
        };
        assert_eq!(
            global_attrs(p.posture)["zimbraMtaSmtpdRejectUnlistedRecipient"],
            vec!["yes"]
        );
        assert_eq!(
            p.server_attrs("h")["zimbraMtaSmtpdRejectUnlistedRecipient"],
            vec!["no"]
        );
    }

    /// A node as Carbonio installs it has the stock entry; one whose LDAP already runs the
    /// policy daemon had it fixed; tags override both.
    #[test]
    fn spawn_setup_follows_the_posture_unless_tagged() {
        let with = |tags: &str| {
            NodeProfile::parse(tags, Platform::Legacy)
                .unwrap()
                .spawn_setup()
        };
        assert_eq!(with("non-compliant"), SpawnSetup::Stock);
        assert_eq!(with("half-compliant"), SpawnSetup::Stock);
        assert_eq!(with("compliant"), SpawnSetup::Fixed);
        assert_eq!(with("restart-pending"), SpawnSetup::Fixed);
        assert_eq!(with("compliant+spawn-user-missing"), SpawnSetup::Stock);
        assert_eq!(with("non-compliant+spawn-user-fixed"), SpawnSetup::Fixed);
        assert_eq!(with("compliant+zimbra-user-added"), SpawnSetup::ZimbraAdded);
    }
}
