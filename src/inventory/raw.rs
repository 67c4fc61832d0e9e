//! The inventory file as written: serde structs mirroring the TOML, every key optional,
//! unknown keys rejected. Values that a later check may reject (names, paths, durations,
//! jump specs, group references) keep their byte span so that the error can point at
//! them. No defaults are applied here; `load` does that.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{Become, HostKeyPolicy};
use crate::flavour::FlavourSetting;

/// Declares a struct holding the connection settings that `[defaults]`,
/// `[groups.NAME]` and `[[hosts]]` share, plus its own fields. A macro because serde's
/// `flatten` cannot be combined with `deny_unknown_fields`.
macro_rules! with_settings {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            /// SSH login user.
            pub user: Option<Spanned<String>>,
            pub port: Option<Spanned<u16>>,
            /// Private keys tried after ssh-agent (`~` and relative paths resolved at load).
            pub identity_files: Option<Vec<Spanned<String>>>,
            /// How to act as `zextras`.
            #[serde(rename = "become")]
            pub become_: Option<Become>,
            /// `carbonio`, `zimbra` or `auto` (the node's service user decides).
            pub flavour: Option<FlavourSetting>,
            pub known_hosts: Option<Spanned<String>>,
            /// Read-only known_hosts files consulted too (OpenSSH's
            /// `GlobalKnownHostsFile`; default /etc/ssh/ssh_known_hosts and
            /// ssh_known_hosts2).
            pub global_known_hosts: Option<Vec<Spanned<String>>>,
            pub host_key_policy: Option<HostKeyPolicy>,
            /// A duration, e.g. "10s".
            pub connect_timeout: Option<Spanned<String>>,
            /// A duration, e.g. "5m".
            pub command_timeout: Option<Spanned<String>>,
            /// `user@host:port`; `""` = no jump host (overrides an inherited one).
            pub jump: Option<Spanned<String>>,
            /// Free-form strings for reports (e.g. the customer's name).
            pub vars: Option<BTreeMap<String, String>>,
            /// Addresses the MTA sends from (checked against each hosted domain's SPF).
            pub egress: Option<Vec<Spanned<String>>>,
            /// Fill what the inventory leaves unset from `~/.ssh/config`.
            pub ssh_config: Option<bool>,
        }

        impl $name {
            /// The shared connection settings, detached from the table they came from.
            pub fn settings(&self) -> RawSettings {
                RawSettings {
                    user: self.user.clone(),
                    port: self.port.clone(),
                    identity_files: self.identity_files.clone(),
                    become_: self.become_,
                    flavour: self.flavour,
                    known_hosts: self.known_hosts.clone(),
                    global_known_hosts: self.global_known_hosts.clone(),
                    host_key_policy: self.host_key_policy,
                    connect_timeout: self.connect_timeout.clone(),
                    command_timeout: self.command_timeout.clone(),
                    jump: self.jump.clone(),
                    vars: self.vars.clone(),
                    ssh_config: self.ssh_config,
                    egress: self.egress.clone(),
                    ..RawSettings::default()
                }
            }
        }
    };
}

with_settings! {
    /// `[defaults]`: settings for every host.
    pub struct RawSettings {
        /// DNS servers for the domain checks (`"127.0.0.1:5353"`, port 53 if omitted);
        /// unset = the system's resolver. Only in `[defaults]`.
        pub dns_servers: Option<Vec<Spanned<String>>>,
    }
}

with_settings! {
    /// `[groups.NAME]`: settings for the hosts that list the group.
    pub struct RawGroup {
        /// A cluster name for every member (a customer's installation).
        pub cluster: Option<Spanned<String>>,
        /// Roles for every member.
        pub roles: Option<Vec<String>>,
    }
}

with_settings! {
    /// One `[[hosts]]` entry.
    pub struct RawHost {
        /// Unique name; defaults to `address`.
        pub name: Option<Spanned<String>>,
        /// Where to connect; defaults to `name`.
        pub address: Option<Spanned<String>>,
        /// Groups in precedence order (a later group overrides an earlier one).
        pub groups: Option<Vec<Spanned<String>>>,
        /// Nodes sharing one Carbonio LDAP; defaults to the host's own name.
        pub cluster: Option<Spanned<String>>,
        /// Declared roles; empty = discover them.
        pub roles: Option<Vec<String>>,
    }
}

/// One inventory file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInventory {
    pub defaults: Option<Spanned<RawSettings>>,
    #[serde(default)]
    pub groups: BTreeMap<String, Spanned<RawGroup>>,
    #[serde(default)]
    pub hosts: Vec<Spanned<RawHost>>,
}
