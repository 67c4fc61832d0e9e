//! The audit log (`--log-file`): JSON lines of who ran what, on which host, and what
//! came of it, appended as events arrive. It never carries a secret: events hold host
//! names, steps and outcomes only.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::engine::events::Event;

/// An open audit log.
pub struct AuditLog {
    file: File,
    operator: String,
}

impl AuditLog {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file,
            operator: crate::engine::run::operator(),
        })
    }

    /// Appends one event (errors writing the log are not allowed to stop a run).
    pub fn record(&mut self, ev: &Event) {
        let at = jiff::Timestamp::now().to_string();
        let v = match ev {
            Event::RunStarted { command, hosts } => {
                json!({"event": "run-started", "command": command, "hosts": hosts})
            }
            Event::HostStarted { host } => json!({"event": "host-started", "host": host}),
            Event::HostConnected { host, elapsed } => {
                json!({"event": "host-connected", "host": host, "ms": elapsed.as_millis() as u64})
            }
            Event::HostGathered { host, elapsed } => {
                json!({"event": "host-gathered", "host": host, "ms": elapsed.as_millis() as u64})
            }
            Event::HostFailed {
                host,
                kind,
                message,
            } => json!({"event": "host-failed", "host": host, "kind": kind, "message": message}),
            Event::HostFinished { host, status } => {
                json!({"event": "host-finished", "host": host, "status": status.as_str()})
            }
            Event::BatchStarted {
                number,
                hosts,
                canary,
            } => {
                json!({"event": "batch-started", "batch": number, "hosts": hosts, "canary": canary})
            }
            Event::StepFinished {
                host,
                step,
                ok,
                detail,
            } => {
                json!({"event": "step-finished", "host": host, "step": step, "ok": ok, "detail": detail})
            }
            Event::Paused { duration } => {
                json!({"event": "paused", "ms": duration.as_millis() as u64})
            }
            Event::RunFinished { exit_code } => {
                json!({"event": "run-finished", "exit_code": exit_code})
            }
        };
        let mut obj = v;
        obj["at"] = json!(at);
        obj["operator"] = json!(self.operator);
        let _ = writeln!(self.file, "{obj}");
    }
}
