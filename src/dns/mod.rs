//! Domain authentication posture: SPF, DKIM and DMARC of every hosted domain, looked up
//! from the machine running the tool. `resolver` asks DNS (hickory, cached per run),
//! `spf`, `dkim` and `dmarc` judge one domain each, `posture` runs the playbook's `dns`
//! probes over a cluster's domains and builds its report section. Reading the domains
//! and their DKIM attributes from a node is `carbonio::domains`' job.

pub mod dkim;
pub mod dmarc;
pub mod posture;
pub mod resolver;
pub mod spf;
pub mod spf_macros;

pub use posture::{ClusterDomains, DomainFacts, evaluate_cluster};
pub use resolver::{DnsResolver, LookupError, ResolverError, ResolverSettings};

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
