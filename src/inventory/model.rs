//! The validated inventory types: what the rest of the tool sees after `load` applied
//! defaults, resolved groups and checked names. Nothing here reads a file.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::flavour::FlavourSetting;
use serde::{Deserialize, Serialize};

/// How the tool acts as the `zextras` service user on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Become {
    /// `su - zextras -c` when logged in as root, else `sudo -n -u zextras -i`.
    Auto,
    Su,
    Sudo,
    /// The login user already is `zextras`.
    None,
}

/// What to do with a host key that known_hosts does not list. There is no "off".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Unknown key: refuse the host.
    Strict,
    /// Unknown key: record it (hashed) and go on. A changed key is still refused.
    AcceptNew,
}

/// A bastion in ProxyJump form `user@host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JumpSpec {
    pub user: String,
    pub host: String,
    pub port: u16,
}

/// One resolved host with its effective settings.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    /// Unique name; the key in every report.
    pub name: String,
    /// Where to connect (defaults to `name`).
    pub address: String,
    pub port: u16,
    pub user: String,
    /// `~` already expanded.
    pub identity_files: Vec<PathBuf>,
    #[serde(rename = "become")]
    pub become_: Become,
    /// Carbonio, Zimbra, or `auto`: the node's service user decides at the gather.
    pub flavour: FlavourSetting,
    /// `~` already expanded. Where new keys go (accept-new, `hostkeys scan --write`).
    pub known_hosts: PathBuf,
    /// The other known_hosts files read with it, as OpenSSH reads them: ssh_config's
    /// further `UserKnownHostsFile` files, then the global ones (`global_known_hosts`,
    /// ssh_config's `GlobalKnownHostsFile`, default /etc/ssh/ssh_known_hosts and
    /// ssh_known_hosts2). A host pinned in any of them with another key is a mismatch.
    #[serde(default)]
    pub known_hosts_also: Vec<PathBuf>,
    pub host_key_policy: HostKeyPolicy,
    #[serde(serialize_with = "crate::duration::serialize")]
    pub connect_timeout: Duration,
    #[serde(serialize_with = "crate::duration::serialize")]
    pub command_timeout: Duration,
    pub jump: Option<JumpSpec>,
    pub groups: Vec<String>,
    /// Nodes sharing one Carbonio LDAP; defaults to the host's own name.
    pub cluster: String,
    /// Declared roles (e.g. "mta"); empty = discover from zimbraServiceEnabled.
    pub roles: Vec<String>,
    /// Merged `vars` tables (defaults < groups < host).
    pub vars: BTreeMap<String, String>,
    /// The addresses this host's MTA sends mail from (`egress`; the nearest layer wins).
    /// A cluster's SPF must cover the union over its hosts.
    pub egress: Vec<IpAddr>,
    /// The inventory file this host was declared in.
    pub source: PathBuf,
}

/// A loaded, validated inventory.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// The files that were read, in merge order.
    pub files: Vec<PathBuf>,
    /// Hosts in declaration order.
    pub hosts: Vec<Host>,
    /// Group names declared with `[groups.*]`, in file order (a host may only
    /// reference declared groups).
    pub groups: Vec<String>,
    /// `[defaults] dns_servers`: where the domain checks ask; empty = the system's resolver.
    pub dns_servers: Vec<SocketAddr>,
}

impl Host {
    /// A host with the built-in defaults and no file behind it, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_test(name: &str) -> Host {
        Host {
            name: name.to_owned(),
            address: name.to_owned(),
            port: 22,
            user: "root".to_owned(),
            identity_files: vec![],
            become_: Become::Auto,
            flavour: FlavourSetting::Auto,
            known_hosts: "kh".into(),
            known_hosts_also: Vec::new(),
            host_key_policy: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(300),
            jump: None,
            groups: vec![],
            cluster: name.to_owned(),
            roles: vec![],
            vars: Default::default(),
            egress: Vec::new(),
            source: "inv.toml".into(),
        }
    }
}
