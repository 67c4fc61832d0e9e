//! The service-management platform of a Carbonio node (docs/carbonio.md §8).

use serde::{Deserialize, Serialize};

/// How a node's services are managed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    /// `zmcontrol` manages services (Ubuntu 22.04 / RHEL 8 installs).
    Legacy,
    /// Carbonio systemd targets are enabled; zmcontrol refuses to restart.
    Systemd,
}
