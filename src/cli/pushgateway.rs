//! `--pushgateway URL`: after `check` or `apply`, PUT the run's metrics (the text
//! `--metrics-file` writes, `report::metrics`) to a Prometheus Pushgateway, so that a
//! run in a Kubernetes CronJob is scraped even though its pod and volume are gone. The
//! group is `job/carbonio-fleet/instance/<INSTANCE>`: the inventory's name, and the
//! shard (`-shard-K-of-N`) when the run is one slice of a sharded sweep, so that the
//! shards of one sweep do not replace each other's metrics (PUT replaces its group).
//! A failed push is a warning; it never changes the exit code.

use std::path::Path;

use super::http::{self, Endpoint, Method};
use crate::dns::spf_macros::url_escape;
use crate::inventory::Shard;
use crate::report::model::Report;

/// The Pushgateway job every run pushes to.
pub const JOB: &str = "carbonio-fleet";

/// The grouping key's instance: the inventory file's stem (or directory's name), then the
/// shard.
pub fn instance(inventory: &Path, shard: Option<Shard>) -> String {
    let name = inventory
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "inventory".into());
    match shard {
        Some(s) => format!("{name}-shard-{}-of-{}", s.index, s.count),
        None => name,
    }
}

/// Where the metrics of `instance` go below the gateway's base URL.
pub fn group_path(instance: &str) -> String {
    format!(
        "/metrics/job/{}/instance/{}",
        // Each a path segment: unreserved characters kept, every other byte
        // percent-encoded (the Pushgateway decodes it).
        url_escape(JOB),
        url_escape(instance)
    )
}

/// Pushes the report's metrics; failures are warnings.
pub fn push(gateway: &Endpoint, report: &Report, instance: &str) {
    let text = crate::report::metrics::render_openmetrics(report);
    let to = gateway.join(&group_path(instance));
    // Prometheus text 0.0.4: what every Pushgateway accepts; the OpenMetrics-only lines
    // (`# UNIT`, `# EOF`) are comments there.
    match http::deliver(
        Method::Put,
        &to,
        "text/plain; version=0.0.4; charset=utf-8",
        text.as_bytes(),
    ) {
        Ok(status) => tracing::info!(
            "pushgateway: metrics of instance `{instance}` pushed to {} (HTTP {status})",
            to.masked()
        ),
        Err(e) => tracing::warn!(
            "pushgateway: the metrics could not be pushed: {e} (the run's exit code is unchanged)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_names_the_inventory_and_the_shard_escaped() {
        assert_eq!(instance(Path::new("inventory/acme.toml"), None), "acme");
        assert_eq!(
            instance(
                Path::new("/etc/fleet/inventory/"),
                Some(Shard { index: 2, count: 4 })
            ),
            "inventory-shard-2-of-4"
        );
        assert_eq!(
            group_path("eu west/1"),
            "/metrics/job/carbonio-fleet/instance/eu%20west%2F1"
        );
    }
}
