//! The audit trail: every engine event becomes one tracing event with target
//! [`AUDIT_TARGET`] and structured fields (who ran it, which host, which step or exact
//! command, what came of it). The `--log-file` layer always records them as JSON lines
//! (see [`crate::ui::logging`]); on stderr they show with `-v`, failures already at the
//! default level. Events carry host names, steps, commands and outcomes only, never a
//! secret.

use crate::engine::events::Event;
use crate::ui::logging::AUDIT_TARGET;

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
            hosts,
            canary,
        } => tracing::info!(
            target: AUDIT_TARGET,
            event = "batch-started",
            operator,
            batch = number,
            hosts = %hosts.join(","),
            canary,
            "rollout batch {number}{}: {}",
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
            "pause {}", humantime::format_duration(*duration)
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
