//! The SSH transport: quoting, become wrappers, known_hosts, connections, sessions,
//! host-key scans. Only this module talks to russh; everything above sees
//! [`Connector`], [`Session`] and typed failures.

mod become_;
mod checker;
mod connector;
mod error;
pub mod known_hosts;
mod quote;
mod scan;
mod session;

pub use become_::{RunAs, wrap};
pub use connector::{Connector, ConnectorOptions, load_identity};
pub use error::{ConnectError, ExecError, FailureKind, HostKeyDetail};
pub use known_hosts::{HostKeyStatus, KnownHosts};
pub use quote::{QuoteError, command_line, quote};
pub use scan::{ScanResult, ScanStatus, render_scan, scan};
pub use session::{ExecEnd, ExecOutput, Session};
