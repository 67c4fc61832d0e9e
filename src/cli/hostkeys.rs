//! `hostkeys scan`: fetch every selected host's key without authenticating, show its
//! fingerprint and whether known_hosts knows it, and with `--write` record the new ones
//! (hashed). A changed key is never replaced: that is for a human to investigate.

use super::HostkeysScanArgs;
use super::show::config_failed;
use crate::exit::ExitCode;
use crate::inventory::{self, LoadOptions};
use crate::ssh::{Connector, ConnectorOptions, ScanStatus, render_scan, scan};

/// Exit code: 0 when every key is known (or was just written), 2 when new keys were
/// found and not written, 3 when a key changed, is revoked, or a host was unreachable.
pub(super) fn scan_command(a: &HostkeysScanArgs) -> ExitCode {
    let opts = LoadOptions {
        ssh_config: super::ssh_config_path(&a.ssh_config),
        ..LoadOptions::default()
    };
    let inv = match inventory::load_with(&a.inventory, &opts) {
        Ok(i) => i,
        Err(e) => return config_failed(&e, "inventory"),
    };
    let hosts = match inventory::select(&inv, a.limit.as_deref()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("carbonio-fleet: {e}");
            return ExitCode::Usage;
        }
    };
    let Some(rt) = super::run::runtime() else {
        return ExitCode::Usage;
    };
    let results = rt.block_on(async {
        let connector = Connector::new(ConnectorOptions::default());
        scan(&connector, &hosts, a.write).await
    });
    print!("{}", render_scan(&results));
    let mut code = ExitCode::Ok;
    for r in &results {
        let c = match r.status {
            ScanStatus::Known { .. } | ScanStatus::New { written: true } => ExitCode::Ok,
            ScanStatus::New { written: false } => ExitCode::Drift,
            _ => ExitCode::HostFailed,
        };
        code = code.max(c);
    }
    code
}
