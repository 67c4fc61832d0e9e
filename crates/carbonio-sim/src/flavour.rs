//! Which product a simulated node runs, Carbonio or Zimbra, and where that product keeps
//! its service user, install tree, configuration, mail log and release file.
//!
//! This is the simulator's own model of the machines, written from the products'
//! sources, not borrowed from the tool: the tool's `flavour` is what the tool
//! believes about the same machines, and the tests compare the two. Were the simulator
//! to take its paths from the tool, a wrong path in the tool would agree with itself and
//! no test would notice.
//!
//! Sources (Carbonio: carbonio-core `systemd-sysuser.conf`, carbonio-mta PKGBUILD;
//! Zimbra: Zimbra/zm-postfix @06c5ad46, zm-build @7aa74ca0, zm-core-utils @8b81bcdc,
//! Zimbra/packages @d3023186): the service users `zextras` and `zimbra`; localconfig.xml
//! under `conf/`; master.cf(.in) under `common/conf/`; the mail logs
//! `/var/log/carbonio.log` and `/var/log/zimbra.log` (zm-core-utils `zmsyslogsetup`);
//! Carbonio's release in `.version`, Zimbra's in the installer's `.install_history`
//! (zm-build `packages.sh`).

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

/// Where one product keeps things on a node.
struct Layout {
    name: &'static str,
    product: &'static str,
    user: &'static str,
    home: &'static str,
    localconfig: &'static str,
    master_template: &'static str,
    master_cf: &'static str,
    mail_log: &'static str,
    policyd: &'static str,
    version_file: &'static str,
}

const CARBONIO: Layout = Layout {
    name: "carbonio",
    product: "Carbonio",
    user: "zextras",
    home: "/opt/zextras",
    localconfig: "/opt/zextras/conf/localconfig.xml",
    master_template: "/opt/zextras/common/conf/master.cf.in",
    master_cf: "/opt/zextras/common/conf/master.cf",
    mail_log: "/var/log/carbonio.log",
    policyd: "/opt/zextras/libexec/zmpostfixpolicyd",
    version_file: "/opt/zextras/.version",
};

const ZIMBRA: Layout = Layout {
    name: "zimbra",
    product: "Zimbra",
    user: "zimbra",
    home: "/opt/zimbra",
    localconfig: "/opt/zimbra/conf/localconfig.xml",
    master_template: "/opt/zimbra/common/conf/master.cf.in",
    master_cf: "/opt/zimbra/common/conf/master.cf",
    mail_log: "/var/log/zimbra.log",
    policyd: "/opt/zimbra/libexec/zmpostfixpolicyd",
    version_file: "/opt/zimbra/.install_history",
};

impl Flavour {
    pub const ALL: [Flavour; 2] = [Flavour::Carbonio, Flavour::Zimbra];

    fn layout(self) -> &'static Layout {
        match self {
            Flavour::Carbonio => &CARBONIO,
            Flavour::Zimbra => &ZIMBRA,
        }
    }

    /// The lower-case name (`carbonio`, `zimbra`), as inventories and profiles spell it.
    pub fn as_str(self) -> &'static str {
        self.layout().name
    }

    /// The product's name, as its release line says it.
    pub fn product(self) -> &'static str {
        self.layout().product
    }

    /// The service user every tool runs as.
    pub fn user(self) -> &'static str {
        self.layout().user
    }

    /// The install tree.
    pub fn home(self) -> &'static str {
        self.layout().home
    }

    pub fn localconfig(self) -> &'static str {
        self.layout().localconfig
    }

    /// Where zmconfigd renders master.cf from.
    pub fn master_template(self) -> &'static str {
        self.layout().master_template
    }

    /// The master.cf Postfix runs from.
    pub fn master_cf(self) -> &'static str {
        self.layout().master_cf
    }

    /// The mail log (readable by the service user).
    pub fn mail_log(self) -> &'static str {
        self.layout().mail_log
    }

    /// The policy daemon the spawn entry runs.
    pub fn policyd(self) -> &'static str {
        self.layout().policyd
    }

    /// The file the release is read from: Carbonio's `.version`, Zimbra's install
    /// history.
    pub fn version_file(self) -> &'static str {
        self.layout().version_file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path of a product lies in its own install tree, except the system log.
    #[test]
    fn every_path_is_under_the_products_home() {
        for f in Flavour::ALL {
            let l = f.layout();
            for path in [
                l.localconfig,
                l.master_template,
                l.master_cf,
                l.policyd,
                l.version_file,
            ] {
                assert!(path.starts_with(&format!("{}/", f.home())), "{path}");
            }
            assert_eq!(l.mail_log, format!("/var/log/{}.log", f.as_str()));
            assert_eq!(f.product().to_lowercase(), f.as_str());
        }
    }
}
