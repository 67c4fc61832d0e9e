//! The audit trail: every engine event becomes one tracing event with target
//! [`AUDIT_TARGET`] and structured fields (who ran it, which host, which step or exact
//! command, what came of it). The `--log-file` layer always records them as JSON lines
//! (see [`crate::ui::logging`]); on stderr they show with `-v`, failures already at the
//! default level. Events carry host names, steps, commands and outcomes only, never a
//! secret.

use crate::engine::events::Event;
use crate::ui::logging::AUDIT_TARGET;

// long: one flat match with an arm per engine event, each arm one tracing call whose
// level, fields and message must be written out in the macro; split up, each piece
// would only forward one event's fields, and the table would no longer read top to
// bottom.
/// Emits the audit event for `ev`; `operator` is `$USER@hostname` of whoever runs the tool.
pub fn record(ev: &Event, operator: &str) {
    match ev {
        Event::RunStarted { command, hosts } => tracing::info!(
            target: AUDIT_TARGET,
            event = "run-started",
            operator,
            command,
            hosts,
            "{command} started on {hosts} hosts"
        ),
        Event::HostStarted { host } => tracing::debug!(
            target: AUDIT_TARGET,
            event = "host-started",
            operator,
            host = %host,
            "{host}: started"
        ),
        Event::HostConnected { host, elapsed } => tracing::info!(
            target: AUDIT_TARGET,
            event = "host-connected",
            operator,
            host = %host,
            ms = elapsed.as_millis() as u64,
            "{host}: connected"
        ),
        Event::HostGathered { host, elapsed } => tracing::info!(
            target: AUDIT_TARGET,
            event = "host-gathered",
            operator,
            host = %host,
            ms = elapsed.as_millis() as u64,
            "{host}: gathered"
        ),
        Event::HostFailed {
            host,
            kind,
            message,
        } => tracing::warn!(
            target: AUDIT_TARGET,
            event = "host-failed",
            operator,
            host = %host,
            kind = %kind,
            error = %message,
            "{host}: {kind}: {message}"
        ),
        Event::HostFinished { host, status } => tracing::info!(
            target: AUDIT_TARGET,
            event = "host-finished",
            operator,
            host = %host,
            status = status.as_str(),
            "{host}: {}", status.as_str()
        ),
        Event::BatchStarted {
            number,
            of,
            hosts,
            canary,
        } => tracing::info!(
            target: AUDIT_TARGET,
            event = "batch-started",
            operator,
            batch = number,
            batches = of,
            hosts = %hosts.join(","),
            canary,
            "rollout batch {number} of {of}{}: {}",
            if *canary { " (canary)" } else { "" },
            hosts.join(", ")
        ),
        Event::StepFinished {
            host,
            step,
            ok,
            detail,
        } => {
            if *ok {
                tracing::info!(
                    target: AUDIT_TARGET,
                    event = "step-finished",
                    operator,
                    host = %host,
                    step = %step,
                    ok,
                    detail = %detail,
                    "{host}: {step} ok"
                )
            } else {
                tracing::warn!(
                    target: AUDIT_TARGET,
                    event = "step-finished",
                    operator,
                    host = %host,
                    step = %step,
                    ok,
                    detail = %detail,
                    "{host}: {step} failed: {detail}"
                )
            }
        }
        Event::CommandSent {
            host,
            purpose,
            command,
        } => tracing::info!(
            target: AUDIT_TARGET,
            event = "command-sent",
            operator,
            host = %host,
            purpose = %purpose,
            command = %command,
            "{host}: sending {purpose}"
        ),
        Event::CommandRan {
            host,
            purpose,
            command,
            exit,
            ok,
        } => tracing::info!(
            target: AUDIT_TARGET,
            event = "command",
            operator,
            host = %host,
            purpose = %purpose,
            command = %command,
            exit = %exit,
            ok,
            "{host}: ran {purpose} (exit {exit})"
        ),
        Event::Paused { duration } => tracing::info!(
            target: AUDIT_TARGET,
            event = "paused",
            operator,
            ms = duration.as_millis() as u64,
            "pause {}", crate::ui::progress::whole_seconds(*duration)
        ),
        Event::RunFinished { exit_code } => tracing::info!(
            target: AUDIT_TARGET,
            event = "run-finished",
            operator,
            exit_code,
            "finished with exit code {exit_code}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::test_writer::Buffer;

    /// The JSON lines the log file would get for `events`.
    fn json_lines(events: &[Event]) -> Vec<serde_json::Value> {
        let buf = Buffer::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for ev in events {
                record(ev, "ops@bastion");
            }
        });
        let text = buf.text();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn apply_commands_are_logged_exactly_as_sent() {
        let command = "su - zextras -c 'zmprov -l -f /dev/stdin' <<'EOF'\nmcf +zimbraMtaRestriction 'check_policy_service unix:private/policy'\nexit\nEOF";
        let lines = json_lines(&[Event::CommandRan {
            host: "mail1".into(),
            purpose: "global changes for cluster `acme`".into(),
            command: command.into(),
            exit: "0".into(),
            ok: true,
        }]);
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(l["target"], AUDIT_TARGET);
        assert_eq!(l["event"], "command");
        assert_eq!(l["operator"], "ops@bastion");
        assert_eq!(l["host"], "mail1");
        assert_eq!(l["command"], command);
        assert_eq!(l["exit"], "0");
        assert_eq!(l["ok"], true);
    }

    #[test]
    fn a_command_is_logged_when_sent() {
        let lines = json_lines(&[Event::CommandSent {
            host: "mail1".into(),
            purpose: "restart".into(),
            command: "systemctl restart carbonio-mta.target".into(),
        }]);
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(
            (
                l["event"].as_str(),
                l["host"].as_str(),
                l["command"].as_str()
            ),
            (
                Some("command-sent"),
                Some("mail1"),
                Some("systemctl restart carbonio-mta.target")
            )
        );
        assert!(l.get("exit").is_none(), "{l}");
    }

    #[test]
    fn every_event_is_one_line_with_its_name() {
        use crate::report::model::HostStatus;
        use std::time::Duration;
        let lines = json_lines(&[
            Event::RunStarted {
                command: "apply",
                hosts: 2,
            },
            Event::HostConnected {
                host: "m1".into(),
                elapsed: Duration::from_millis(12),
            },
            Event::HostGathered {
                host: "m1".into(),
                elapsed: Duration::from_millis(800),
            },
            Event::HostFailed {
                host: "m2".into(),
                kind: "auth".into(),
                message: "all methods refused".into(),
            },
            Event::BatchStarted {
                number: 1,
                of: 3,
                hosts: vec!["m1".into()],
                canary: true,
            },
            Event::StepFinished {
                host: "m1".into(),
                step: "restart+gate".into(),
                ok: false,
                detail: "smtp: 451".into(),
            },
            Event::Paused {
                duration: Duration::from_secs(30),
            },
            Event::HostFinished {
                host: "m1".into(),
                status: HostStatus::Failed,
            },
            Event::RunFinished { exit_code: 4 },
        ]);
        let names: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "run-started",
                "host-connected",
                "host-gathered",
                "host-failed",
                "batch-started",
                "step-finished",
                "paused",
                "host-finished",
                "run-finished"
            ]
        );
        assert_eq!(lines[3]["level"], "WARN");
        assert_eq!(lines[3]["kind"], "auth");
        assert_eq!(lines[4]["canary"], true);
        assert_eq!(lines[5]["level"], "WARN");
        assert_eq!(lines[8]["exit_code"], 4);
        assert!(lines.iter().all(|l| l["operator"] == "ops@bastion"));
    }
}
