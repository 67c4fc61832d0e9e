//! Making a node's MTA run its new config, and telling whether its services are up, per
//! platform (docs/carbonio.md §4): by default a Postfix reload after `configrewrite mta`;
//! a full restart (`zmcontrol` as the service user on legacy nodes, root `systemctl` on
//! the MTA target on systemd nodes, which refuse zmcontrol) only when asked.

use crate::carbonio::platform::Platform;
use crate::flavour::Flavour;
use crate::playbook::RestartMethod;
use crate::ssh::RunAs;

/// The systemd unit whose state says the MTA is up (the target stays active when a unit
/// it only wants, say freshclam, failed).
pub const MTA_UNITS: [&str; 1] = ["carbonio-postfix.service"];

/// A command and the user it runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub run_as: RunAs,
    pub script: String,
}

impl Step {
    /// The command without its stdio redirections, as the plan and the report name it
    /// (and as a detached run wraps it with its own).
    pub fn command(&self) -> &str {
        self.script
            .trim_end_matches(" 2>&1")
            .trim_end_matches(" </dev/null")
    }
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
            MtaAction::Reload { render, reload } => {
                format!("reload: {} then {}", render.command(), reload.command())
            }
            MtaAction::Full(step) => step.command().to_string(),
        }
    }
}

/// The action for a node, or `None` when the playbook leaves it to zmconfigd
/// (docs/carbonio.md §4). Not `zmmtactl reload`: it also rewrites antispam, antivirus,
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

/// Reads the status output: `Ok` when the MTA is up, else what is not. Only the MTA's
/// own service counts: a slow clamd or a stopped mailbox says nothing about Postfix, and
/// `zmcontrol status` exits non-zero for any stopped service, so its status is evidence
/// only.
pub fn services_up(platform: Platform, output: &str, status: Option<u32>) -> Result<(), String> {
    match platform {
        Platform::Legacy => {
            let mut lines = output.lines();
            let Some(mta) = lines
                .by_ref()
                .find(|l| l.split_whitespace().next() == Some("mta"))
            else {
                return Err(format!(
                    "zmcontrol status lists no mta service (exit {})",
                    fmt_status(status)
                ));
            };
            if mta.split_whitespace().last() == Some("Running") {
                return Ok(());
            }
            // The reasons zmcontrol prints under a stopped service, more indented.
            let why: Vec<&str> = lines
                .take_while(|l| l.starts_with("\t\t") || l.starts_with("    "))
                .map(str::trim)
                .collect();
            Err(format!(
                "{}{}",
                mta.split_whitespace().collect::<Vec<_>>().join(" "),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {}", why.join("; "))
                }
            ))
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
        let down = "Host mx1\n\tmta                     Stopped\n\t\tpostfix is not running\n\tstats                   Running\n";
        assert_eq!(
            services_up(Platform::Legacy, down, Some(1)),
            Err("mta Stopped: postfix is not running".to_string())
        );
        // A stopped antivirus is not the MTA's business (zmcontrol exits 1 for it).
        let clamd = "Host mx1\n\tantivirus               Stopped\n\t\tclamd is not running\n\tmta                     Running\n";
        assert_eq!(services_up(Platform::Legacy, clamd, Some(1)), Ok(()));
        assert!(
            services_up(Platform::Legacy, "Host mx1\n\tmailbox Running\n", Some(0))
                .unwrap_err()
                .contains("no mta service")
        );
    }

    #[test]
    fn systemd_states() {
        assert_eq!(services_up(Platform::Systemd, "active\n", Some(0)), Ok(()));
        assert!(services_up(Platform::Systemd, "activating\n", Some(3)).is_err());
    }
}
