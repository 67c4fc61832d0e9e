//! A real DNS server on 127.0.0.1 for the domain-posture tests: hickory-server serving
//! zones parsed from zone-file text, on a random port (UDP and TCP on the same number),
//! running on the test's tokio runtime until the handle is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::{LowerName, Name};
use hickory_server::proto::serialize::txt::Parser;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

/// A running server; dropping it stops it.
pub struct DnsServer {
    pub addr: SocketAddr,
    server: Server<Catalog>,
}

impl DnsServer {
    /// Serves each `(origin, zone text)`.
    pub async fn start(zones: &[(&str, &str)]) -> DnsServer {
        let mut catalog = Catalog::new();
        for (origin, text) in zones {
            let origin = Name::from_ascii(origin).expect("origin");
            let (origin, records) = Parser::new(*text, None, Some(origin))
                .parse()
                .expect("zone parses");
            let handler = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
                origin.clone(),
                records,
                ZoneType::Primary,
                AxfrPolicy::Deny,
            )
            .expect("zone loads");
            catalog.upsert(LowerName::new(&origin), vec![Arc::new(handler)]);
        }
        // UDP first on a random port, then TCP on the same number (retry if taken).
        let (udp, tcp) = loop {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("udp");
            let port = udp.local_addr().expect("addr").port();
            if let Ok(tcp) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().expect("addr");
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 16);
        DnsServer { addr, server }
    }

    /// Stops answering (in-flight requests finish).
    pub async fn stop(mut self) {
        let _ = self.server.shutdown_gracefully().await;
    }
}
