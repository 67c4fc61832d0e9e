//! Making a node's MTA run its new config, and telling whether its services are up, per
//! platform (CARBONIO.md §0.5): by default a Postfix reload after `configrewrite mta`;
//! a full restart (`zmcontrol` as the service user on legacy nodes, root `systemctl` on
//! the MTA target on systemd nodes, which refuse zmcontrol) only when asked.

use crate::carbonio::flavour::Flavour;
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

/// What makes a changed MTA run its new config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MtaAction {
    /// `render` writes the files from LDAP (nothing reloads); once they show the new
    /// values, `reload` makes the running Postfix load them. No other service stops.
    Reload { render: Step, reload: Step },
    /// Every service of the node stops and starts.
    Full(Step),
}

impl MtaAction {
    /// How the plan and the report name it.
    pub fn label(&self) -> String {
        match self {
            MtaAction::Reload { render, reload } => format!(
                "reload: {} then {}",
                trim(&render.script),
                trim(&reload.script)
            ),
            MtaAction::Full(step) => trim(&step.script).to_string(),
        }
    }
}

fn trim(script: &str) -> &str {
    script
        .trim_end_matches(" 2>&1")
        .trim_end_matches(" </dev/null")
}

/// The action for a node, or `None` when the playbook leaves it to zmconfigd
/// (CARBONIO.md §0.5). Not `zmmtactl reload`: it also rewrites antispam, antivirus,
/// opendkim and sasl and restarts saslauthd.
pub fn mta_action(
    method: RestartMethod,
    platform: Platform,
    flavour: Flavour,
) -> Option<MtaAction> {
    let render = Step {
        run_as: RunAs::Service,
        script: format!("{} mta 2>&1", flavour.configrewrite()),
    };
    match (method, platform) {
        (RestartMethod::None, _) => None,
        // The service user's NOPASSWD sudo rule covers Postfix's own binary.
        (RestartMethod::Reload, Platform::Legacy) => Some(MtaAction::Reload {
            render,
            reload: Step {
                run_as: RunAs::Service,
                script: format!("sudo -n {}/common/sbin/postfix reload 2>&1", flavour.home()),
            },
        }),
        // carbonio-postfix.service: `ExecReload=/opt/zextras/common/sbin/postfix reload`.
        (RestartMethod::Reload, Platform::Systemd) => Some(MtaAction::Reload {
            render,
            reload: Step {
                run_as: RunAs::Root,
                script: "systemctl reload carbonio-postfix.service 2>&1".to_string(),
            },
        }),
        // stdin from /dev/null as Carbonio's own init script does; daemons started by
        // the restart must not keep the channel's stdin open.
        (RestartMethod::Full, Platform::Legacy) => Some(MtaAction::Full(Step {
            run_as: RunAs::Service,
            script: "zmcontrol restart </dev/null 2>&1".to_string(),
        })),
        (RestartMethod::Full, Platform::Systemd) => Some(MtaAction::Full(Step {
            run_as: RunAs::Root,
            script: "systemctl restart carbonio-mta.target 2>&1".to_string(),
        })),
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
    fn reload_by_default_full_on_request() {
        let c = Flavour::Carbonio;
        let Some(MtaAction::Reload { render, reload }) =
            mta_action(RestartMethod::Reload, Platform::Legacy, c)
        else {
            panic!("reload")
        };
        assert_eq!(render.run_as, RunAs::Service);
        assert_eq!(render.script, "/opt/zextras/libexec/configrewrite mta 2>&1");
        assert_eq!(
            (reload.run_as, reload.script.as_str()),
            (
                RunAs::Service,
                "sudo -n /opt/zextras/common/sbin/postfix reload 2>&1"
            )
        );
        let Some(MtaAction::Reload { reload, .. }) =
            mta_action(RestartMethod::Reload, Platform::Systemd, c)
        else {
            panic!("reload")
        };
        assert_eq!(
            (reload.run_as, reload.script.as_str()),
            (
                RunAs::Root,
                "systemctl reload carbonio-postfix.service 2>&1"
            )
        );
        let z = mta_action(RestartMethod::Reload, Platform::Legacy, Flavour::Zimbra).unwrap();
        assert_eq!(
            z.label(),
            "reload: /opt/zimbra/libexec/configrewrite mta then sudo -n /opt/zimbra/common/sbin/postfix reload"
        );
        let full = mta_action(RestartMethod::Full, Platform::Systemd, c).unwrap();
        assert_eq!(full.label(), "systemctl restart carbonio-mta.target");
        assert_eq!(
            mta_action(RestartMethod::Full, Platform::Legacy, c)
                .unwrap()
                .label(),
            "zmcontrol restart"
        );
        assert_eq!(mta_action(RestartMethod::None, Platform::Legacy, c), None);
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
