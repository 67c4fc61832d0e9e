//! Carbonio or Zimbra: the service user, the install tree and the paths that follow from
//! it. Both run the same MTA layer (zmconfigd renders master.cf.in with the two-line
//! policy entry, zmprov is ProvUtil), so one playbook serves both; what differs is where
//! things are and who owns them.
//!
//! Sources (docs/carbonio.md §11; Zimbra: Zimbra/zm-postfix @06c5ad46, zm-build @7aa74ca0,
//! zm-core-utils @8b81bcdc, Zimbra/packages @d3023186):
//! - service user: Carbonio `zextras` (carbonio-core `systemd-sysuser.conf`); Zimbra
//!   `zimbra`, primary group `zimbra` (packages `zimbra-base` spec: `useradd -r -g zimbra`);
//! - localconfig.xml: `/opt/zextras/conf/` 0640 zextras; `/opt/zimbra/conf/` 0640
//!   zimbra:zimbra (zm-core-utils `zmfixperms` lines 242–244);
//! - master.cf.in: `/opt/zextras/common/conf/` (carbonio-mta PKGBUILD);
//!   `/opt/zimbra/common/conf/` (zm-build `zimbra-mta.sh` line 43), the same two-line
//!   entry with `user=zimbra` (zm-postfix `conf/postfix/master.cf.in` lines 76–77) — on
//!   Zimbra that user exists and owns localconfig.xml;
//! - mail log: `/var/log/carbonio.log`; `/var/log/zimbra.log` (zm-core-utils
//!   `zmsyslogsetup` line 46);
//! - version: Carbonio's `/opt/zextras/.version`; Zimbra has no such file (its
//!   `zmcontrol -v` asks dpkg/rpm), the installer appends `EPOCH: INSTALLED
//!   zimbra-core_VERSION_ARCH.deb` (or the rpm name) to `/opt/zimbra/.install_history`
//!   (zm-build `packages.sh` line 199);
//! - services: Zimbra has no systemd units (SysV `/etc/init.d/zimbra` running
//!   `zmcontrol`), so a Zimbra node is always managed with `zmcontrol`.

use serde::{Deserialize, Serialize};

/// Which product a node runs.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    #[default]
    Carbonio,
    Zimbra,
}

/// The inventory's `flavour`: a product, or `auto` (the node's service user decides).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum FlavourSetting {
    #[default]
    Auto,
    Carbonio,
    Zimbra,
}

impl FlavourSetting {
    /// The product when the inventory names one.
    pub fn fixed(self) -> Option<Flavour> {
        match self {
            FlavourSetting::Auto => None,
            FlavourSetting::Carbonio => Some(Flavour::Carbonio),
            FlavourSetting::Zimbra => Some(Flavour::Zimbra),
        }
    }
}

impl Flavour {
    pub const ALL: [Flavour; 2] = [Flavour::Carbonio, Flavour::Zimbra];

    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::Carbonio => "carbonio",
            Flavour::Zimbra => "zimbra",
        }
    }

    /// The product's name, as its release line says it.
    pub fn product(self) -> &'static str {
        match self {
            Flavour::Carbonio => "Carbonio",
            Flavour::Zimbra => "Zimbra",
        }
    }

    /// The service user every tool runs as.
    pub fn user(self) -> &'static str {
        match self {
            Flavour::Carbonio => "zextras",
            Flavour::Zimbra => "zimbra",
        }
    }

    /// The install tree.
    pub fn home(self) -> &'static str {
        match self {
            Flavour::Carbonio => "/opt/zextras",
            Flavour::Zimbra => "/opt/zimbra",
        }
    }

    pub fn localconfig(self) -> &'static str {
        match self {
            Flavour::Carbonio => "/opt/zextras/conf/localconfig.xml",
            Flavour::Zimbra => "/opt/zimbra/conf/localconfig.xml",
        }
    }

    /// Where zmconfigd renders master.cf from.
    pub fn master_template(self) -> &'static str {
        match self {
            Flavour::Carbonio => "/opt/zextras/common/conf/master.cf.in",
            Flavour::Zimbra => "/opt/zimbra/common/conf/master.cf.in",
        }
    }

    /// The master.cf Postfix runs from.
    pub fn master_cf(self) -> &'static str {
        match self {
            Flavour::Carbonio => "/opt/zextras/common/conf/master.cf",
            Flavour::Zimbra => "/opt/zimbra/common/conf/master.cf",
        }
    }

    /// The mail log (readable by the service user).
    pub fn mail_log(self) -> &'static str {
        match self {
            Flavour::Carbonio => "/var/log/carbonio.log",
            Flavour::Zimbra => "/var/log/zimbra.log",
        }
    }

    /// The rewrite of one zmconfigd section, without a restart.
    pub fn configrewrite(self) -> &'static str {
        match self {
            Flavour::Carbonio => "/opt/zextras/libexec/configrewrite",
            Flavour::Zimbra => "/opt/zimbra/libexec/configrewrite",
        }
    }

    /// The policy daemon the spawn entry runs.
    pub fn policyd(self) -> &'static str {
        match self {
            Flavour::Carbonio => "/opt/zextras/libexec/zmpostfixpolicyd",
            Flavour::Zimbra => "/opt/zimbra/libexec/zmpostfixpolicyd",
        }
    }

    /// The file the release is read from without starting a JVM.
    pub fn version_file(self) -> &'static str {
        match self {
            Flavour::Carbonio => "/opt/zextras/.version",
            Flavour::Zimbra => "/opt/zimbra/.install_history",
        }
    }

    /// The release line from what the gather's file pass printed: Carbonio's `.version`
    /// holds the bare version; Zimbra's install history the package names, the last
    /// `zimbra-core` one being the installed release.
    pub fn parse_version(self, out: &str) -> Option<String> {
        let v = match self {
            Flavour::Carbonio => out.lines().next().map(str::trim)?.to_string(),
            Flavour::Zimbra => {
                let pkg = out
                    .lines()
                    .rev()
                    .find_map(|l| l.split("INSTALLED ").nth(1))?
                    .trim();
                let rest = pkg.strip_prefix("zimbra-core")?;
                let rest = rest.strip_prefix(['_', '-']).unwrap_or(rest);
                match rest.strip_suffix(".deb") {
                    // zimbra-core_8.8.15.GA.3869.UBUNTU18.64_amd64.deb
                    Some(deb) => deb.rsplit_once('_').map_or(deb, |(v, _)| v).to_string(),
                    // zimbra-core-8.8.15_GA_3869.RHEL7_64-20190917.x86_64.rpm
                    None => rest
                        .strip_suffix(".rpm")
                        .map(|r| r.rsplit_once('.').map_or(r, |(v, _)| v))
                        .unwrap_or(rest)
                        .to_string(),
                }
            }
        };
        (!v.is_empty()).then(|| format!("{} Release {v}", self.product()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_without_a_jvm() {
        assert_eq!(
            Flavour::Carbonio.parse_version("25.6.0\n").as_deref(),
            Some("Carbonio Release 25.6.0")
        );
        let history = "1609459000: INSTALLED zimbra-core_8.8.15.GA.3869.UBUNTU18.64_amd64.deb\n\
                       1609459100: INSTALLED zimbra-mta_8.8.15.GA.3869.UBUNTU18.64_amd64.deb\n\
                       1700000000: INSTALLED zimbra-core_10.0.6.GA.4518.UBUNTU22.64_amd64.deb\n";
        let only_core: String = history
            .lines()
            .filter(|l| l.contains("INSTALLED zimbra-core"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            Flavour::Zimbra.parse_version(&only_core).as_deref(),
            Some("Zimbra Release 10.0.6.GA.4518.UBUNTU22.64")
        );
        assert_eq!(
            Flavour::Zimbra
                .parse_version(
                    "1: INSTALLED zimbra-core-8.8.15_GA_3869.RHEL7_64-20190917004220.x86_64.rpm\n"
                )
                .as_deref(),
            Some("Zimbra Release 8.8.15_GA_3869.RHEL7_64-20190917004220")
        );
        assert_eq!(Flavour::Zimbra.parse_version(""), None);
    }

    #[test]
    fn every_path_lives_under_the_flavours_tree() {
        for f in Flavour::ALL {
            for p in [
                f.localconfig(),
                f.master_template(),
                f.master_cf(),
                f.configrewrite(),
                f.policyd(),
                f.version_file(),
            ] {
                assert!(p.starts_with(f.home()), "{p}");
            }
        }
    }
}
