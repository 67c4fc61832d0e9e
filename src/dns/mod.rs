//! Domain authentication posture: SPF, DKIM and DMARC of every hosted domain, looked up
//! from the machine running the tool. `resolver` asks DNS (hickory, cached per run),
//! `spf`, `dkim` and `dmarc` judge one domain each. Running the playbook's `dns` probes
//! over a cluster's domains and building its report section is `engine::posture`'s job;
//! reading the domains and their DKIM attributes from a node is `carbonio::domains`'.
//! This module depends on no other module of the crate.

pub mod dkim;
pub mod dmarc;
pub mod resolver;
pub mod spf;
pub mod spf_macros;

use std::net::IpAddr;

use dkim::DkimLdap;
pub use resolver::{DnsResolver, LookupError, ResolverError, ResolverSettings};

/// What the node's LDAP says about one hosted domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainFacts {
    pub domain: String,
    /// `zimbraDomainType: alias`.
    pub alias: bool,
    pub dkim: DkimLdap,
}

/// A cluster's input to the domain checks.
#[derive(Debug, Clone)]
pub struct ClusterDomains {
    pub cluster: String,
    /// The node the domains were read on.
    pub read_on: Option<String>,
    /// The cluster's MTA egress addresses (inventory `egress`).
    pub egress: Vec<IpAddr>,
    /// The domains, or why they could not be read.
    pub domains: Result<Vec<DomainFacts>, String>,
}

/// One problem a check found, in the exact words of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub message: String,
    /// Rated one severity level below the probe's (DMARC `p=none`).
    pub lesser: bool,
}

impl Issue {
    pub fn new(message: String) -> Self {
        Self {
            message,
            lesser: false,
        }
    }

    pub fn lesser(message: String) -> Self {
        Self {
            message,
            lesser: true,
        }
    }
}

/// What one check of one domain found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckOutcome {
    pub findings: Vec<Issue>,
    /// Facts worth showing that are not problems (`p=reject`, lookup count, …).
    pub notes: Vec<String>,
    /// The records seen, `name: text`.
    pub evidence: Vec<String>,
}
