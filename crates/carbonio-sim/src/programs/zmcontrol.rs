//! `zmcontrol` (docs/carbonio.md §8): `-v`, `status`, `restart` on legacy nodes; on systemd
//! nodes everything but `-v` prints the "handled by systemd" banner and exits 1.

use crate::node::Platform;
use crate::restarts::RestartMethod;

use super::Proc;
use super::restart::restart_node;

/// Stop order of the known services (display names).
const STOP_ORDER: &[&str] = &[
    "config service",
    "service webapp",
    "stats",
    "mta",
    "cbpolicyd",
    "opendkim",
    "amavis",
    "antivirus",
    "antispam",
    "proxy",
    "memcached",
    "mailbox",
    "directory-server",
];
/// Start order.
const START_ORDER: &[&str] = &[
    "config service",
    "mailbox",
    "memcached",
    "proxy",
    "amavis",
    "antispam",
    "antivirus",
    "opendkim",
    "cbpolicyd",
    "mta",
    "stats",
    "service webapp",
];

/// The name zmcontrol prints for a zimbraServiceEnabled value.
pub fn display_name(service: &str) -> &str {
    match service {
        "zmconfigd" => "config service",
        "service" => "service webapp",
        other => other,
    }
}

/// The systemd targets enabled on a node with these services.
pub fn enabled_targets(services: &[String]) -> Vec<&'static str> {
    let has = |s: &str| services.iter().any(|x| x == s);
    let mut t = Vec::new();
    if has("directory-server") || has("ldap") {
        t.push("carbonio-directory-server.target");
    }
    if has("mailbox") {
        t.push("carbonio-appserver.target");
    }
    if has("proxy") {
        t.push("carbonio-proxy.target");
    }
    if has("mta") {
        t.push("carbonio-mta.target");
    }
    t
}

/// `zmcontrol ARGS`.
pub async fn zmcontrol(args: Vec<String>, p: &mut Proc) -> i32 {
    // zm-core-utils `zmcontrol` lines 21–23: `die "Run as the zimbra user!"` (Carbonio's
    // names zextras).
    let service = p.node.state().flavour.user();
    if p.user != service {
        p.io.stderr
            .line(format!("Run as the {service} user!"))
            .await;
        return 255;
    }
    let (platform, version, host) = {
        let st = p.node.state();
        (st.platform, st.version.clone(), st.hostname.clone())
    };
    // The first word that is neither an option nor the value of `-H <host>`.
    let cmd = args
        .iter()
        .enumerate()
        .find(|(k, a)| !a.starts_with('-') && (*k == 0 || args[k - 1] != "-H"))
        .map(|(_, a)| a.clone());
    if args.iter().any(|a| a == "-v" || a == "-V") {
        p.io.stdout.line(&version).await;
        return 0;
    }
    let services = p.node.services();
    if platform == Platform::Systemd {
        let mut banner =
            String::from("Services are now handled by systemd.\n\nEnabled systemd targets:\n\n");
        for t in enabled_targets(&services) {
            banner.push_str(&format!("  - {t}\n"));
        }
        banner.push_str("\nPlease check the documentation for further details.\nExiting.\n");
        p.io.stdout.write(banner).await;
        return 1;
    }
    match cmd.as_deref() {
        Some("status") => {
            let stopped = p.node.state().stopped.clone();
            let mut lines: Vec<(String, bool)> = services
                .iter()
                .map(|s| (display_name(s).to_string(), !stopped.contains(s)))
                .collect();
            lines.sort();
            let mut out = format!("Host {host}\n");
            for (name, up) in &lines {
                out.push_str(&format!(
                    "\t{:<20} {:>10}\n",
                    name,
                    if *up { "Running" } else { "Stopped" }
                ));
                // The reason under a stopped service, as zmcontrol prints it.
                if !*up && name == "mta" {
                    out.push_str("\t\tpostfix is not running\n");
                }
            }
            p.io.stdout.write(out).await;
            if lines.iter().all(|(_, up)| *up) {
                0
            } else {
                1
            }
        }
        Some("restart") => {
            let enabled: Vec<&str> = services.iter().map(|s| display_name(s)).collect();
            let mut out = format!("Host {host}\n");
            for s in STOP_ORDER.iter().filter(|s| enabled.contains(s)) {
                out.push_str(&format!("\tStopping {s}...Done.\n"));
            }
            p.io.stdout.write(out).await;
            let ok = restart_node(&p.node, RestartMethod::Zmcontrol).await;
            let mut out = format!("Host {host}\n");
            for s in START_ORDER.iter().filter(|s| enabled.contains(s)) {
                if *s == "mta" && !ok {
                    out.push_str("\tStarting mta...Failed.\n");
                } else {
                    out.push_str(&format!("\tStarting {s}...Done.\n"));
                }
            }
            p.io.stdout.write(out).await;
            if ok { 0 } else { 1 }
        }
        _ => {
            p.io.stdout
                .write(format!(
                    "{version}\n/opt/zextras/bin/zmcontrol [-v -h -H <host>] command [args]\n"
                ))
                .await;
            1
        }
    }
}

/// `HOME/libexec/configrewrite SECTION…` (as the service user): asks zmconfigd to render
/// the sections' files from LDAP and the templates; it reloads nothing (docs/carbonio.md
/// §4), so a changed master.cf waits for a reload. `mta` is the section modelled; what
/// it prints on a real node is not (no source here): it succeeds silently.
pub async fn configrewrite(args: Vec<String>, p: &mut Proc) -> i32 {
    let service = p.node.state().flavour.user();
    if p.user != service {
        p.io.stderr
            .line(format!("configrewrite: must be run as {service}"))
            .await;
        return 1;
    }
    if args.iter().any(|a| a == "mta") {
        p.node.render_postfix();
    }
    0
}

/// `HOME/common/sbin/postfix reload|status` (root; the service user reaches it through
/// its NOPASSWD sudo rule for this one binary). `reload` makes the running master
/// re-read master.cf (Postfix `postfix-script`: `kill -HUP` the master).
pub async fn postfix(args: Vec<String>, p: &mut Proc) -> i32 {
    if p.user != "root" {
        p.io.stderr
            .line("postfix: fatal: the postfix command is reserved for the superuser")
            .await;
        return 1;
    }
    let running = p.node.state().master_started.is_some();
    match args.first().map(String::as_str) {
        Some("reload") if running => {
            p.node.reload_master();
            p.io.stderr
                .line("postfix/postfix-script: refreshing the Postfix mail system")
                .await;
            0
        }
        Some("reload") => {
            p.io.stderr
                .line("postfix/postfix-script: fatal: the Postfix mail system is not running")
                .await;
            1
        }
        Some("status") if running => {
            p.io.stderr
                .line("postfix/postfix-script: the Postfix mail system is running")
                .await;
            0
        }
        Some("status") => {
            p.io.stderr
                .line("postfix/postfix-script: the Postfix mail system is not running")
                .await;
            1
        }
        other => {
            p.io.stderr
                .line(format!(
                    "postfix: only `reload` and `status` are emulated, not {}",
                    other.unwrap_or("(none)")
                ))
                .await;
            1
        }
    }
}
