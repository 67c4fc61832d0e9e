//! The DNS resolver the domain checks use: hickory-resolver on the tokio runtime, talking
//! to the servers of `[defaults] dns_servers` or else to those of /etc/resolv.conf, with
//! a timeout on every lookup and a cache for the whole run (many clusters share the
//! same SPF includes, so each name is asked once). It answers only what the checks need:
//! TXT strings, addresses and MX hosts. An empty answer (NXDOMAIN or no data) is a
//! "void" answer, not an error; a timeout, SERVFAIL or refused query is an error that
//! the checks turn into an error verdict.
//!
//! A resolver that does not answer costs a run one wait, not one per lookup: a lookup
//! that cannot reach any server, or the third timeout before any answer at all, marks
//! the resolver silent, and every lookup after it fails at once with that one reason
//! ([`DnsResolver::silent`]) (one slow name behind a resolver that answers others is
//! that name's error only);
//! [`DnsResolver::probe`] asks one question with a short timeout before a pass fans
//! out. And the whole run has a budget ([`ResolverSettings::budget`]): past it, nothing
//! more is asked.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use tokio::sync::OnceCell;

/// Default time one query may take before it is retried or given up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default DNS budget of a run: lookups starting later than this after the resolver was
/// built are not asked.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(120);
/// The longest the reachability probe waits (one attempt).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Which DNS servers to ask and how patiently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverSettings {
    /// Servers to ask (UDP, then TCP on truncation); empty = the system's resolv.conf.
    pub servers: Vec<SocketAddr>,
    /// Per query.
    pub timeout: Duration,
    /// Tries per query.
    pub attempts: usize,
    /// The run's whole DNS time: lookups that would start later fail at once.
    pub budget: Duration,
}

impl Default for ResolverSettings {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            attempts: 2,
            budget: DEFAULT_BUDGET,
        }
    }
}

/// The record types the checks ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rtype {
    Txt,
    A,
    Aaaa,
    Mx,
}

impl Rtype {
    pub fn as_str(self) -> &'static str {
        match self {
            Rtype::Txt => "TXT",
            Rtype::A => "A",
            Rtype::Aaaa => "AAAA",
            Rtype::Mx => "MX",
        }
    }

    fn record_type(self) -> RecordType {
        match self {
            Rtype::Txt => RecordType::TXT,
            Rtype::A => RecordType::A,
            Rtype::Aaaa => RecordType::AAAA,
            Rtype::Mx => RecordType::MX,
        }
    }
}

/// A lookup that did not produce an answer (as opposed to an empty one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DNS lookup of {rtype} `{name}` failed: {cause}")]
pub struct LookupError {
    pub name: String,
    pub rtype: &'static str,
    pub cause: String,
}

/// The resolver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    #[error("cannot read the system DNS configuration (/etc/resolv.conf): {0}")]
    SystemConfig(String),
    #[error("cannot build the DNS resolver: {0}")]
    Build(String),
}

/// One answer, in the shape the checks use.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Data {
    /// TXT: each record's character-strings joined (RFC 7208 §3.3).
    Txt(Vec<String>),
    Ips(Vec<IpAddr>),
    /// MX exchanges, lower-cased, without the trailing dot, by preference.
    Hosts(Vec<String>),
}

type Slot = Arc<OnceCell<Result<Data, LookupError>>>;

/// A caching resolver for one run. Cheap to share behind an `Arc`.
pub struct DnsResolver {
    inner: TokioResolver,
    /// Overall bound of one lookup (all attempts), a guard above hickory's own timeouts.
    deadline: Duration,
    cache: Mutex<HashMap<(String, Rtype), Slot>>,
    /// Which servers are asked, for evidence.
    servers: String,
    /// Set when the servers did not answer: why (every later lookup fails with it).
    silent: std::sync::OnceLock<String>,
    /// Lookups the servers answered (any answer), and lookups that timed out.
    answered: std::sync::atomic::AtomicUsize,
    timeouts: std::sync::atomic::AtomicUsize,
    /// When the run's DNS budget is spent, and how long it was.
    budget_ends: tokio::time::Instant,
    budget: Duration,
}

impl DnsResolver {
    /// Builds a resolver from the settings (the system's servers when none are given).
    pub fn new(settings: &ResolverSettings) -> Result<Self, ResolverError> {
        let (config, mut opts) = if settings.servers.is_empty() {
            hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| ResolverError::SystemConfig(e.to_string()))?
        } else {
            let servers = settings
                .servers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                })
                .collect();
            (
                ResolverConfig::from_name_servers(servers),
                ResolverOpts::default(),
            )
        };
        opts.timeout = settings.timeout;
        opts.attempts = settings.attempts.max(1);
        // Names are always asked fully qualified; no search list, no hosts file: the
        // answer must be what the world's receivers see.
        opts.ndots = 0;
        opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
        let described = config
            .name_servers()
            .iter()
            .map(|ns| {
                let port = ns.connections.first().map(|c| c.port).unwrap_or(53);
                SocketAddr::new(ns.ip, port).to_string()
            })
            .collect::<Vec<_>>();
        let servers = if described.is_empty() {
            "(no servers)".to_string()
        } else {
            described.join(", ")
        };
        let inner = Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| ResolverError::Build(e.to_string()))?;
        let deadline = settings.timeout * (settings.attempts.max(1) as u32 + 1);
        Ok(Self {
            inner,
            deadline,
            cache: Mutex::new(HashMap::new()),
            servers,
            silent: std::sync::OnceLock::new(),
            answered: Default::default(),
            timeouts: Default::default(),
            budget_ends: tokio::time::Instant::now() + settings.budget,
            budget: settings.budget,
        })
    }

    /// Why the servers are taken as not answering, once a lookup timed out or found no
    /// server to ask.
    pub fn silent(&self) -> Option<&str> {
        self.silent.get().map(String::as_str)
    }

    /// Asks one question (TXT `name`) with a short timeout ([`PROBE_TIMEOUT`] at most),
    /// so that a pass does not fan out against a resolver that does not answer. Any
    /// answer, even NXDOMAIN or REFUSED, shows the servers are there.
    pub async fn probe(&self, name: &str) -> Result<(), String> {
        let wait = PROBE_TIMEOUT.min(self.deadline);
        let fqdn = Name::from_ascii(format!("{}.", normalize(name)))
            .map_err(|e| format!("`{name}` is not a valid domain name ({e})"))?;
        match tokio::time::timeout(wait, self.inner.lookup(fqdn, RecordType::TXT)).await {
            Err(_) => Err(self.mark_silent(format!(
                "no answer within {}",
                crate::duration::display(wait)
            ))),
            Ok(Err(e))
                if unreachable(&e) || matches!(e, hickory_resolver::net::NetError::Timeout) =>
            {
                Err(self.mark_silent(e.to_string()))
            }
            Ok(_) => {
                self.answered
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// Marks the resolver silent (the first reason stays); the reason, for the caller.
    fn mark_silent(&self, cause: String) -> String {
        let reason = format!("the DNS servers {} did not answer ({cause})", self.servers);
        self.silent.get_or_init(|| reason).clone()
    }

    /// A lookup timed out: the lookup's own error, or the resolver's silence once three
    /// timed out and none was ever answered.
    fn timed_out(&self, cause: String) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let n = self.timeouts.fetch_add(1, Relaxed) + 1;
        if n >= 3 && self.answered.load(Relaxed) == 0 {
            self.mark_silent(cause)
        } else {
            format!("{cause} from {}", self.servers)
        }
    }

    /// The servers asked, e.g. `127.0.0.1:5353`.
    pub fn servers(&self) -> &str {
        &self.servers
    }

    /// The TXT records at `name` (empty = none, a void answer).
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        match self.lookup(name, Rtype::Txt).await? {
            Data::Txt(t) => Ok(t),
            _ => Ok(Vec::new()),
        }
    }

    /// The IPv4 and IPv6 addresses of `name` (empty = none). A timeout on one family
    /// is an error even when the other answered: a partial answer is no answer.
    pub async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
        let (v4, v6) = tokio::join!(self.lookup(name, Rtype::A), self.lookup(name, Rtype::Aaaa));
        let mut out = Vec::new();
        for d in [v4?, v6?] {
            if let Data::Ips(ips) = d {
                out.extend(ips);
            }
        }
        Ok(out)
    }

    /// The IPv4 addresses of `name` (empty = none): what SPF's `exists` asks.
    pub async fn ipv4(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
        match self.lookup(name, Rtype::A).await? {
            Data::Ips(ips) => Ok(ips),
            _ => Ok(Vec::new()),
        }
    }

    /// The MX hosts of `name` by preference (empty = none).
    pub async fn mx(&self, name: &str) -> Result<Vec<String>, LookupError> {
        match self.lookup(name, Rtype::Mx).await? {
            Data::Hosts(h) => Ok(h),
            _ => Ok(Vec::new()),
        }
    }

    /// Number of distinct questions asked so far (cache entries).
    pub fn questions(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    async fn lookup(&self, name: &str, rtype: Rtype) -> Result<Data, LookupError> {
        let key = (normalize(name), rtype);
        let slot = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.entry(key.clone()).or_default().clone()
        };
        slot.get_or_init(|| self.query(key.0.clone(), rtype))
            .await
            .clone()
    }

    async fn query(&self, name: String, rtype: Rtype) -> Result<Data, LookupError> {
        let err = |cause: String| LookupError {
            name: name.clone(),
            rtype: rtype.as_str(),
            cause,
        };
        if let Some(why) = self.silent() {
            return Err(err(format!("not asked: {why}")));
        }
        let left = self
            .budget_ends
            .saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(err(format!(
                "not asked: the run's DNS budget ({}) is spent",
                crate::duration::display(self.budget)
            )));
        }
        let fqdn = Name::from_ascii(format!("{name}."))
            .map_err(|e| err(format!("not a valid domain name ({e})")))?;
        let wait = self.deadline.min(left);
        let answer = tokio::time::timeout(wait, self.inner.lookup(fqdn, rtype.record_type()))
            .await
            .map_err(|_| {
                err(self.timed_out(format!(
                    "no answer within {}",
                    crate::duration::display(wait)
                )))
            })?;
        let lookup = match answer {
            Err(hickory_resolver::net::NetError::Timeout) => {
                return Err(err(self.timed_out("request timed out".into())));
            }
            Err(e) if unreachable(&e) => return Err(err(self.mark_silent(e.to_string()))),
            _ => {
                self.answered
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match answer {
                    Ok(l) => l,
                    Err(e) if e.is_no_records_found() => return Ok(empty(rtype)),
                    Err(e) => return Err(err(format!("{e} (servers: {})", self.servers))),
                }
            }
        };
        let mut txt = Vec::new();
        let mut ips = Vec::new();
        let mut mx: Vec<(u16, String)> = Vec::new();
        for r in lookup.answers() {
            match &r.data {
                RData::TXT(t) if rtype == Rtype::Txt => txt.push(
                    t.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<String>(),
                ),
                RData::A(a) if rtype == Rtype::A => ips.push(IpAddr::V4(a.0)),
                RData::AAAA(a) if rtype == Rtype::Aaaa => ips.push(IpAddr::V6(a.0)),
                RData::MX(m) if rtype == Rtype::Mx => {
                    mx.push((m.preference, normalize(&m.exchange.to_ascii())))
                }
                _ => {}
            }
        }
        Ok(match rtype {
            Rtype::Txt => Data::Txt(txt),
            Rtype::A | Rtype::Aaaa => Data::Ips(ips),
            Rtype::Mx => {
                mx.sort();
                Data::Hosts(mx.into_iter().map(|(_, h)| h).collect())
            }
        })
    }
}

/// Whether a failed lookup means no server answered at all (as opposed to an answer
/// that is an error: SERVFAIL, REFUSED).
fn unreachable(e: &hickory_resolver::net::NetError) -> bool {
    use hickory_resolver::net::NetError;
    matches!(e, NetError::NoConnections | NetError::Io(_))
}

fn empty(rtype: Rtype) -> Data {
    match rtype {
        Rtype::Txt => Data::Txt(Vec::new()),
        Rtype::A | Rtype::Aaaa => Data::Ips(Vec::new()),
        Rtype::Mx => Data::Hosts(Vec::new()),
    }
}

/// Lower case, no trailing dot: the cache key and the form names are reported in.
pub fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_for_the_cache() {
        assert_eq!(normalize("Example.COM."), "example.com");
        assert_eq!(normalize(" a.b "), "a.b");
    }

    #[test]
    fn lookup_error_names_type_name_and_cause() {
        let e = LookupError {
            name: "example.com".into(),
            rtype: "TXT",
            cause: "request timed out".into(),
        };
        assert_eq!(
            e.to_string(),
            "DNS lookup of TXT `example.com` failed: request timed out"
        );
    }
}
