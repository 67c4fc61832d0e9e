//! The simulated fleet's hosted domains and their DNS: per cluster a primary domain
//! `CLUSTER.example` and an alias domain `CLUSTER-alias.example` (`zimbraDomainType:
//! alias`), their DKIM attributes in the cluster LDAP (as `zmdkimkeyutil -a` stores
//! them), and an authoritative DNS server on 127.0.0.1 (hickory-server, UDP and TCP on
//! one random port) publishing SPF, DKIM and DMARC records whose quality follows the
//! cluster's posture:
//!
//! | posture | SPF | DKIM | DMARC |
//! |---|---|---|---|
//! | compliant, server-override, restart-pending | egress + shared include, `-all` | published = LDAP | `p=reject`, `rua` |
//! | half-compliant | egress + include, `~all` | DNS publishes another key than LDAP | `p=none` |
//! | non-compliant | `a mx +all` | none in LDAP | none |

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::{LowerName, Name};
use hickory_server::proto::serialize::txt::Parser;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::attrs::AttrMap;
use super::error::SimError;
use super::profiles::Posture;

/// The zone every simulated domain lives in.
pub const ZONE: &str = "example.";
/// The DKIM selector of simulated domains.
pub const SELECTOR: &str = "sim1";
/// An include shared by every cluster's SPF (so lookups are shared too).
pub const SHARED_INCLUDE: &str = "_spf.sim.example";

/// How good a cluster's domain records are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainQuality {
    Good,
    Weak,
    Bad,
}

impl DomainQuality {
    /// The quality that goes with a cluster's LDAP posture.
    pub fn of(posture: Posture) -> Self {
        match posture {
            Posture::Compliant | Posture::ServerOverride | Posture::RestartPending => {
                DomainQuality::Good
            }
            Posture::HalfCompliant => DomainQuality::Weak,
            Posture::NonCompliant => DomainQuality::Bad,
        }
    }
}

/// One cluster's hosted domains and what is published for them.
#[derive(Debug, Clone)]
pub struct ClusterDomains {
    pub cluster: String,
    pub quality: DomainQuality,
    /// The MTAs' outgoing address (inventory `egress`).
    pub egress: IpAddr,
}

/// The primary domain of a cluster.
pub fn primary_domain(cluster: &str) -> String {
    format!("{}.example", cluster.to_ascii_lowercase())
}

/// The alias domain of a cluster.
pub fn alias_domain(cluster: &str) -> String {
    format!("{}-alias.example", cluster.to_ascii_lowercase())
}

/// The egress address of the `index`-th cluster (198.18.0.0/15, the benchmarking range).
pub fn egress_of(index: usize) -> IpAddr {
    let n = 0xC612_0000u32 + 1 + (index as u32 % 0x1_FFFE);
    IpAddr::V4(Ipv4Addr::from(n))
}

/// A deterministic stand-in for an RSA public key (base64).
fn fake_key(seed: &str) -> String {
    let mut bytes = Vec::new();
    for i in 0..8u8 {
        bytes.extend_from_slice(&Sha256::digest(format!("{seed}/{i}").as_bytes()));
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The DNS record text `zmdkimkeyutil` prints and stores in `DKIMPublicKey`.
fn dkim_ldap_value(domain: &str, key: &str) -> String {
    let (a, b) = key.split_at(key.len() / 2);
    format!(
        "{SELECTOR}._domainkey\tIN\tTXT\t( \"v=DKIM1; k=rsa; \"\n\t  \"p={a}\"\n\t  \"{b}\" )  ; ----- DKIM key {SELECTOR} for {domain}"
    )
}

/// The LDAP entries of a cluster's domains: `(domain, attributes)`, primary first.
pub fn domain_entries(c: &ClusterDomains) -> Vec<(String, AttrMap)> {
    let mut out = Vec::new();
    // LDAP search order, not sorted (docs/carbonio.md §5): here the alias domain comes
    // first, so that a reader taking `gad`'s first domain probes the catch-all.
    for (domain, alias) in [
        (alias_domain(&c.cluster), true),
        (primary_domain(&c.cluster), false),
    ] {
        let mut attrs = AttrMap::new();
        attrs.insert(
            "zimbraDomainType".into(),
            vec![if alias { "alias" } else { "local" }.into()],
        );
        if alias {
            // The alias domain's catch-all, on its domain entry (§0.13).
            attrs.insert(
                "zimbraMailCatchAllAddress".into(),
                vec![format!("@{domain}")],
            );
        }
        let with_dkim = match c.quality {
            DomainQuality::Good => true,
            DomainQuality::Weak => !alias,
            DomainQuality::Bad => false,
        };
        if with_dkim {
            attrs.insert("DKIMSelector".into(), vec![SELECTOR.into()]);
            attrs.insert("DKIMIdentity".into(), vec![domain.clone()]);
            attrs.insert("DKIMDomain".into(), vec![domain.clone()]);
            attrs.insert(
                "DKIMPublicKey".into(),
                vec![dkim_ldap_value(&domain, &fake_key(&domain))],
            );
        }
        out.push((domain, attrs));
    }
    out
}

/// A TXT record line, the text split into 255-byte character-strings.
fn txt(out: &mut String, name: &str, text: &str) {
    let parts: Vec<String> = text
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    let _ = writeln!(out, "{name}. IN TXT {}", parts.join(" "));
}

/// The zone text for every cluster.
pub fn zone_text(clusters: &[ClusterDomains]) -> String {
    let mut z = String::new();
    let _ = writeln!(z, "$ORIGIN {ZONE}\n$TTL 300");
    let _ = writeln!(
        z,
        "@ IN SOA ns.sim.example. hostmaster.sim.example. 1 3600 600 86400 300\n@ IN NS ns.sim.example.\nns.sim IN A 127.0.0.1"
    );
    txt(&mut z, SHARED_INCLUDE, "v=spf1 ip4:198.51.100.0/24 -all");
    for c in clusters {
        let primary = primary_domain(&c.cluster);
        let alias = alias_domain(&c.cluster);
        let _ = writeln!(z, "{primary}. IN MX 10 mx.{primary}.");
        let _ = writeln!(z, "mx.{primary}. IN A {}", c.egress);
        let spf = match c.quality {
            DomainQuality::Good => format!("v=spf1 ip4:{} include:{SHARED_INCLUDE} -all", c.egress),
            DomainQuality::Weak => format!("v=spf1 ip4:{} include:{SHARED_INCLUDE} ~all", c.egress),
            DomainQuality::Bad => "v=spf1 a mx +all".to_string(),
        };
        txt(&mut z, &primary, &spf);
        txt(&mut z, &alias, &format!("v=spf1 redirect={primary}"));
        for (domain, attrs) in domain_entries(c) {
            if attrs.contains_key("DKIMPublicKey") {
                let published = if c.quality == DomainQuality::Weak {
                    // The key was rotated in LDAP and the new one never published.
                    fake_key(&format!("{domain}/old"))
                } else {
                    fake_key(&domain)
                };
                txt(
                    &mut z,
                    &format!("{SELECTOR}._domainkey.{domain}"),
                    &format!("v=DKIM1; k=rsa; p={published}"),
                );
            }
            let dmarc = match c.quality {
                DomainQuality::Good => Some(format!(
                    "v=DMARC1; p=reject; rua=mailto:dmarc@{primary}; sp=reject"
                )),
                DomainQuality::Weak => {
                    Some(format!("v=DMARC1; p=none; rua=mailto:dmarc@{primary}"))
                }
                DomainQuality::Bad => None,
            };
            if let Some(d) = dmarc {
                txt(&mut z, &format!("_dmarc.{domain}"), &d);
            }
        }
    }
    z
}

/// Starts the DNS server for `clusters` on 127.0.0.1; it stops when `cancel` fires.
pub async fn serve(
    clusters: &[ClusterDomains],
    cancel: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), SimError> {
    let text = zone_text(clusters);
    let origin = Name::from_ascii(ZONE).map_err(|e| SimError::Dns(e.to_string()))?;
    let (origin, records) = Parser::new(text, None, Some(origin))
        .parse()
        .map_err(|e| SimError::Dns(format!("zone: {e}")))?;
    let handler = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
        origin.clone(),
        records,
        ZoneType::Primary,
        AxfrPolicy::Deny,
    )
    .map_err(SimError::Dns)?;
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&origin), vec![Arc::new(handler)]);
    let bind_err = |e: std::io::Error| SimError::Dns(format!("cannot bind 127.0.0.1: {e}"));
    // UDP on a random port, TCP on the same number; another process may hold that TCP
    // port, so try a few.
    let mut pair = None;
    for _ in 0..16 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(bind_err)?;
        let port = udp.local_addr().map_err(bind_err)?.port();
        if let Ok(tcp) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            pair = Some((udp, tcp));
            break;
        }
    }
    let (udp, tcp) = pair.ok_or_else(|| SimError::Dns("no free UDP+TCP port pair".into()))?;
    let addr = udp.local_addr().map_err(bind_err)?;
    let mut server = Server::new(catalog);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(10), 64);
    let task = tokio::spawn(async move {
        cancel.cancelled().await;
        let _ = server.shutdown_gracefully().await;
    });
    Ok((addr, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(q: DomainQuality) -> ClusterDomains {
        ClusterDomains {
            cluster: "c001".into(),
            quality: q,
            egress: egress_of(0),
        }
    }

    #[test]
    fn zone_parses_for_every_quality() {
        let all = [
            cluster(DomainQuality::Good),
            ClusterDomains {
                cluster: "c002".into(),
                ..cluster(DomainQuality::Weak)
            },
            ClusterDomains {
                cluster: "c003".into(),
                ..cluster(DomainQuality::Bad)
            },
        ];
        let text = zone_text(&all);
        let (_, records) = Parser::new(text.as_str(), None, Some(Name::from_ascii(ZONE).unwrap()))
            .parse()
            .unwrap();
        assert!(records.len() > 10, "{text}");
        assert!(text.contains("c003.example. IN TXT \"v=spf1 a mx +all\""));
    }

    #[test]
    fn ldap_holds_dkim_where_the_quality_says() {
        let good = domain_entries(&cluster(DomainQuality::Good));
        // Unsorted, alias first (`gad` is LDAP search order).
        assert_eq!(good[1].0, "c001.example");
        assert_eq!(good[0].1["zimbraDomainType"], ["alias"]);
        assert_eq!(
            good[0].1["zimbraMailCatchAllAddress"],
            ["@c001-alias.example"]
        );
        assert!(good.iter().all(|(_, a)| a.contains_key("DKIMPublicKey")));
        let bad = domain_entries(&cluster(DomainQuality::Bad));
        assert!(bad.iter().all(|(_, a)| !a.contains_key("DKIMSelector")));
        // That the tool reads the published key out of this text is tested beside the
        // tool's reader (tests/dns_posture.rs).
        assert_eq!(
            good[1].1["DKIMPublicKey"],
            [dkim_ldap_value("c001.example", &fake_key("c001.example"))]
        );
    }

    #[test]
    fn egress_addresses_are_distinct_per_cluster() {
        assert_eq!(egress_of(0).to_string(), "198.18.0.1");
        assert_eq!(egress_of(257).to_string(), "198.18.1.2");
    }
}
