//! Restarting a node's mail services and telling whether they are up, per platform
//! (CARBONIO.md §4): legacy nodes use `zmcontrol` as zextras; systemd nodes refuse
//! zmcontrol and need root `systemctl` on the MTA target.

use crate::carbonio::platform::Platform;
use crate::playbook::RestartMethod;
use crate::ssh::RunAs;

/// The systemd units whose state says the MTA is up.
pub const MTA_UNITS: [&str; 2] = ["carbonio-mta.target", "carbonio-postfix.service"];

/// A command and the user it runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub run_as: RunAs,
    pub script: String,
}

/// The restart to run on a node, or `None` when the playbook leaves it to zmconfigd.
pub fn restart_step(method: RestartMethod, platform: Platform) -> Option<Step> {
    let legacy = Step {
        run_as: RunAs::Service,
        // stdin from /dev/null as Carbonio's own init script does; daemons started by
        // the restart must not keep the channel's stdin open.
        script: "zmcontrol restart </dev/null 2>&1".to_string(),
    };
    let systemd = Step {
        run_as: RunAs::Root,
        script: "systemctl restart carbonio-mta.target 2>&1".to_string(),
    };
    match (method, platform) {
        (RestartMethod::None, _) => None,
        (RestartMethod::Zmcontrol, _) => Some(legacy),
        (RestartMethod::SystemdMta, _) => Some(systemd),
        (RestartMethod::Auto, Platform::Legacy) => Some(legacy),
        (RestartMethod::Auto, Platform::Systemd) => Some(systemd),
    }
}

/// The platform's default restart, as the plan and the report name it.
pub fn restart_label(platform: Platform) -> &'static str {
    match platform {
        Platform::Legacy => "zmcontrol restart",
        Platform::Systemd => "systemctl restart carbonio-mta.target",
    }
}

/// The service-state query for a platform.
pub fn status_step(platform: Platform) -> Step {
    match platform {
        Platform::Legacy => Step {
            run_as: RunAs::Service,
            script: "zmcontrol status 2>&1".to_string(),
        },
        Platform::Systemd => Step {
            run_as: RunAs::Login,
            script: format!("systemctl is-active {} 2>&1", MTA_UNITS.join(" ")),
        },
    }
}

/// Reads the status output: `Ok` when every service is up, else what is not.
pub fn services_up(platform: Platform, output: &str, status: Option<u32>) -> Result<(), String> {
    match platform {
        Platform::Legacy => {
            let stopped: Vec<&str> = output
                .lines()
                .filter(|l| l.trim_end().ends_with("Stopped"))
                .map(|l| l.trim())
                .collect();
            if status == Some(0) && stopped.is_empty() {
                Ok(())
            } else if stopped.is_empty() {
                Err(format!("zmcontrol status exited {}", fmt_status(status)))
            } else {
                Err(format!("stopped: {}", stopped.join("; ")))
            }
        }
        Platform::Systemd => {
            let states: Vec<&str> = output.lines().map(str::trim).collect();
            if status == Some(0)
                && states.len() == MTA_UNITS.len()
                && states.iter().all(|s| *s == "active")
            {
                Ok(())
            } else {
                Err(format!(
                    "systemctl is-active {}: {}",
                    MTA_UNITS.join(" "),
                    states.join(", ")
                ))
            }
        }
    }
}

fn fmt_status(s: Option<u32>) -> String {
    s.map(|c| c.to_string())
        .unwrap_or_else(|| "without status".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_per_platform() {
        assert_eq!(
            restart_step(RestartMethod::Auto, Platform::Legacy)
                .unwrap()
                .run_as,
            RunAs::Service
        );
        let s = restart_step(RestartMethod::Auto, Platform::Systemd).unwrap();
        assert_eq!(s.run_as, RunAs::Root);
        assert!(
            s.script
                .starts_with("systemctl restart carbonio-mta.target")
        );
        assert_eq!(restart_step(RestartMethod::None, Platform::Legacy), None);
    }

    #[test]
    fn legacy_status_lines() {
        let up = "Host mx1\n\tmta                     Running\n\tmailbox                 Running\n";
        assert_eq!(services_up(Platform::Legacy, up, Some(0)), Ok(()));
        let down = "Host mx1\n\tmta                     Stopped\n\t\tpostfix is not running\n";
        assert_eq!(
            services_up(Platform::Legacy, down, Some(1)),
            Err("stopped: mta                     Stopped".to_string())
        );
    }

    #[test]
    fn systemd_states() {
        assert_eq!(
            services_up(Platform::Systemd, "active\nactive\n", Some(0)),
            Ok(())
        );
        assert!(services_up(Platform::Systemd, "active\nactivating\n", Some(3)).is_err());
    }
}
