//! `systemctl restart|reload|is-active|is-enabled` for Carbonio targets and services.
//! Legacy nodes have the unit files but none enabled; restarts and reloads need root.

use crate::node::Platform;
use crate::restarts::RestartMethod;

use super::Proc;
use super::restart::restart_node;
use super::zmcontrol::enabled_targets;

const TARGETS: &[&str] = &[
    "carbonio.target",
    "carbonio-directory-server.target",
    "carbonio-appserver.target",
    "carbonio-proxy.target",
    "carbonio-mta.target",
];
const MTA_SERVICES: &[&str] = &[
    "carbonio-postfix.service",
    "carbonio-configd.service",
    "carbonio-opendkim.service",
];

fn known(unit: &str) -> bool {
    TARGETS.contains(&unit) || MTA_SERVICES.contains(&unit)
}

fn normalize(unit: &str) -> String {
    if unit.contains('.') {
        unit.to_string()
    } else {
        format!("{unit}.service")
    }
}

/// `systemctl ARGS`.
pub async fn systemctl(args: Vec<String>, p: &mut Proc) -> i32 {
    let args: Vec<String> = args.into_iter().filter(|a| !a.starts_with("--")).collect();
    let Some((verb, units)) = args.split_first() else {
        p.io.stderr
            .line("systemctl: this simulator only knows restart, is-active and is-enabled")
            .await;
        return 1;
    };
    let units: Vec<String> = units.iter().map(|u| normalize(u)).collect();
    // Two statements: a lock guard in a tuple expression would live to its end.
    let platform = p.node.state().platform;
    let services = p.node.services();
    let targets = if platform == Platform::Systemd {
        enabled_targets(&services)
    } else {
        Vec::new()
    };
    match verb.as_str() {
        "is-enabled" => is_enabled(&units, &targets, p).await,
        "is-active" => is_active(&units, &targets, p).await,
        "reload" => reload(&units, &targets, p).await,
        "restart" => restart(&units, p).await,
        other => {
            p.io.stderr
                .line(format!("systemctl: verb {other} is not emulated"))
                .await;
            1
        }
    }
}

/// Whether `unit` is enabled on a node whose enabled Carbonio targets are `targets`: the
/// MTA's services go with its target.
fn enabled(targets: &[&str], unit: &str) -> bool {
    match unit {
        "carbonio.target" => !targets.is_empty(),
        u if u.ends_with(".target") => targets.contains(&u),
        _ => targets.contains(&"carbonio-mta.target"),
    }
}

/// `systemctl is-enabled UNIT...`: 0 when any is enabled.
async fn is_enabled(units: &[String], targets: &[&str], p: &mut Proc) -> i32 {
    let mut any = false;
    for u in units {
        if !known(u) {
            p.io.stderr
                .line(format!(
                    "Failed to get unit file state for {u}: No such file or directory"
                ))
                .await;
            continue;
        }
        let e = enabled(targets, u);
        any |= e;
        p.io.stdout
            .line(if e { "enabled" } else { "disabled" })
            .await;
    }
    if any { 0 } else { 1 }
}

/// `systemctl is-active UNIT...`: 0 when all are active (enabled, the node not
/// restarting, the MTA not stopped).
async fn is_active(units: &[String], targets: &[&str], p: &mut Proc) -> i32 {
    let (stopped, restarting) = {
        let st = p.node.state();
        (st.stopped.clone(), st.is_restarting())
    };
    let mut all = true;
    for u in units {
        let mta_unit = u.contains("mta") || u.contains("postfix") || u == "carbonio.target";
        let active = known(u)
            && enabled(targets, u)
            && !restarting
            && !(mta_unit && stopped.contains("mta"));
        all &= active;
        p.io.stdout
            .line(if active { "active" } else { "inactive" })
            .await;
    }
    if all { 0 } else { 3 }
}

/// `systemctl reload carbonio-postfix.service`, as root: its
/// `ExecReload=/opt/zextras/common/sbin/postfix reload` (docs/carbonio.md §4), the
/// running master re-reads master.cf.
async fn reload(units: &[String], targets: &[&str], p: &mut Proc) -> i32 {
    let u = units.first().cloned().unwrap_or_default();
    if p.user != "root" {
        p.io.stderr
            .line(format!("Failed to reload {u}: Access denied"))
            .await;
        return 1;
    }
    if u != "carbonio-postfix.service" || !known(&u) {
        p.io.stderr
            .line(format!("Failed to reload {u}: Unit {u} not found."))
            .await;
        return 5;
    }
    if !enabled(targets, &u) || !p.node.reload_master() {
        p.io.stderr
            .line(format!("{u} is not active, cannot reload."))
            .await;
        return 1;
    }
    0
}

/// `systemctl restart UNIT...`, as root: restarts the whole node.
async fn restart(units: &[String], p: &mut Proc) -> i32 {
    if p.user != "root" {
        let u = units.first().cloned().unwrap_or_default();
        p.io.stderr
            .line(format!("Failed to restart {u}: Access denied"))
            .await;
        return 1;
    }
    for u in units {
        if !known(u) {
            p.io.stderr
                .line(format!("Failed to restart {u}: Unit {u} not found."))
                .await;
            return 5;
        }
    }
    let ok = restart_node(&p.node, RestartMethod::Systemctl).await;
    if !ok {
        let u = &units[0];
        p.io.stderr
            .line(format!(
                "Job for {u} failed because the control process exited with error code.\nSee \"systemctl status {u}\" and \"journalctl -xeu {u}\" for details."
            ))
            .await;
        return 1;
    }
    0
}
