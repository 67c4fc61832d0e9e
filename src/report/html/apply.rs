//! The apply part of report.html: the rollout as it happened, batch by batch (canary
//! first) — each host's changes, its commands exactly as sent, the reload or restart,
//! every health-gate check with its evidence, the rollback — then the promotion of each
//! cluster's staged values.

use std::fmt::Write as _;

use super::escape;
use super::fleet::before_after;
use crate::report::model::{CommandRecord, GateRecord, HostReport, Report};

/// The rollout timeline; empty when no host carries apply data.
pub fn timeline_section(report: &Report) -> String {
    let applied: Vec<&HostReport> = report.hosts.iter().filter(|h| h.apply.is_some()).collect();
    if applied.is_empty() {
        return String::new();
    }
    let mut batches: std::collections::BTreeMap<usize, Vec<&HostReport>> = Default::default();
    let mut unscheduled: Vec<&HostReport> = Vec::new();
    for h in &applied {
        match h.apply.as_ref().and_then(|a| a.batch) {
            Some(b) => batches.entry(b).or_default().push(h),
            None => unscheduled.push(h),
        }
    }
    let total = batches.len();
    let mut out = String::from(
        "<section id=\"rollout\">\n<h2>Rollout</h2>\n<p class=\"explain\">Batch by batch, canary \
         first: what each host was sent (exactly as sent), how its MTA took the change, and its \
         health gate. A batch starts only when the one before it passed.</p>\n",
    );
    for (n, hosts) in &batches {
        let failed = hosts
            .iter()
            .filter(|h| {
                h.apply
                    .as_ref()
                    .and_then(|a| a.gate.as_ref())
                    .is_some_and(|g| !g.passed)
            })
            .count();
        let name = if *n == 1 {
            "Batch 1 (canary)".to_string()
        } else {
            format!("Batch {n}")
        };
        let _ = writeln!(
            out,
            "<details class=\"batch\"{open}><summary><b>{name}</b> of {total} · {} host{s} · {state}{when}</summary>\n\
             <table class=\"checks timeline\"><thead><tr><th>Host</th><th>Outcome</th><th>Changes</th>\
             <th>Reload / restart</th><th>Health gate</th><th>Commands sent</th></tr></thead><tbody>",
            hosts.len(),
            open = if failed > 0 { " open" } else { "" },
            s = if hosts.len() == 1 { "" } else { "s" },
            state = if failed > 0 {
                format!("<span class=\"bad\">{failed} failed its gate</span>")
            } else {
                "every gate passed".to_string()
            },
            when = batch_window(hosts),
        );
        for h in hosts {
            out.push_str(&host_row(h));
        }
        out.push_str("</tbody></table>\n</details>\n");
    }
    if !unscheduled.is_empty() {
        let _ = writeln!(
            out,
            "<details class=\"batch\"><summary><b>Not restarted</b> · {} host{}</summary>\n\
             <table class=\"checks timeline\"><thead><tr><th>Host</th><th>Outcome</th><th>Changes</th>\
             <th>Reload / restart</th><th>Health gate</th><th>Commands sent</th></tr></thead><tbody>",
            unscheduled.len(),
            if unscheduled.len() == 1 { "" } else { "s" },
        );
        for h in &unscheduled {
            out.push_str(&host_row(h));
        }
        out.push_str("</tbody></table>\n</details>\n");
    }
    out.push_str("</section>\n");
    out
}

/// ` · 02:01:05–02:01:40 UTC`: from the first restart to the last gate verdict.
fn batch_window(hosts: &[&HostReport]) -> String {
    let times = |f: &dyn Fn(&HostReport) -> Option<String>| -> Vec<String> {
        hosts
            .iter()
            .filter_map(|h| f(h))
            .filter(|t| !t.is_empty())
            .collect()
    };
    let starts = times(&|h| Some(h.apply.as_ref()?.restart.as_ref()?.started_at.clone()));
    let ends = times(&|h| Some(h.apply.as_ref()?.gate.as_ref()?.finished_at.clone()));
    match (starts.iter().min(), ends.iter().max()) {
        (Some(a), Some(b)) => format!(" · {}–{} UTC", clock(a), clock(b)),
        _ => String::new(),
    }
}

/// `02:01:05` of an RFC 3339 time.
fn clock(rfc3339: &str) -> String {
    rfc3339
        .parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%H:%M:%S").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

fn host_row(h: &HostReport) -> String {
    let Some(a) = &h.apply else {
        return String::new();
    };
    let changes: Vec<String> = h
        .controls
        .iter()
        .filter(|c| c.changed)
        .map(|c| {
            format!(
                "<span class=\"mono\">{}</span> {}",
                escape(&c.id),
                before_after(c)
            )
        })
        .chain(a.staged.iter().map(|s| {
            format!(
                "<span class=\"evidence\">staged {} {}: {}</span>",
                escape(&s.control),
                escape(&s.attr),
                escape(&s.state)
            )
        }))
        .collect();
    let restart = match &a.restart {
        Some(r) => format!(
            "<span class=\"{}\">{}</span> <span class=\"evidence\">{}–{}</span>{}",
            if r.ok { "ok" } else { "bad" },
            escape(&r.method),
            escape(&clock(&r.started_at)),
            escape(&clock(&r.finished_at)),
            if r.ok || r.output.is_empty() {
                String::new()
            } else {
                format!("<pre>{}</pre>", escape(&r.output))
            }
        ),
        None => String::new(),
    };
    let mut gate = a.gate.as_ref().map(gate_cell).unwrap_or_default();
    if let Some(rb) = &a.rollback {
        let _ = write!(
            gate,
            "<div class=\"{}\"><b>rollback:</b> {}</div>",
            if rb.ok { "ok" } else { "bad" },
            escape(&rb.detail)
        );
        if let Some(g) = &rb.gate {
            gate.push_str(&gate_cell(g));
        }
    }
    format!(
        "<tr><td><b>{}</b><br><span class=\"evidence\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
        escape(&h.name),
        escape(&h.cluster),
        escape(&a.rollout),
        changes.join("<br>"),
        restart,
        gate,
        commands_cell(&a.commands),
    )
}

fn gate_cell(g: &GateRecord) -> String {
    let mut out = format!(
        "<span class=\"{}\">{}</span> <span class=\"evidence\">after {} attempt{}{}</span><ul class=\"gate\">",
        if g.passed { "ok" } else { "bad" },
        if g.passed { "passed" } else { "failed" },
        g.attempts,
        if g.attempts == 1 { "" } else { "s" },
        if g.finished_at.is_empty() {
            String::new()
        } else {
            format!(", {}", escape(&clock(&g.finished_at)))
        },
    );
    for c in &g.checks {
        let _ = write!(
            out,
            "<li class=\"{}\"><b>{}</b> {}</li>",
            if c.ok { "ok" } else { "bad" },
            escape(&c.name),
            escape(&c.detail)
        );
    }
    out.push_str("</ul>");
    if !g.smtp_transcript.is_empty() {
        let _ = write!(
            out,
            "<details><summary>SMTP from {}</summary><pre>{}</pre></details>",
            escape(&g.vantage),
            escape(&g.smtp_transcript.join("\n"))
        );
    }
    out
}

fn commands_cell(commands: &[CommandRecord]) -> String {
    if commands.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "<details><summary>{} command{}</summary>",
        commands.len(),
        if commands.len() == 1 { "" } else { "s" }
    );
    for c in commands {
        let _ = write!(
            out,
            "<p><b>{}</b> <span class=\"evidence\">exit {}</span></p><pre>{}</pre>",
            escape(&c.purpose),
            escape(&c.exit),
            escape(&c.command)
        );
        for e in &c.errors {
            let _ = write!(out, "<p class=\"bad\">{}</p>", escape(e));
        }
    }
    out.push_str("</details>");
    out
}

/// apply: which clusters got their global config (promotion) and which did not, and the
/// MTAs that hold it back.
pub fn promotions_section(report: &Report) -> String {
    if report.promotions.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<section id=\"promotions\">\n<h2>Promotion of the staged values</h2>\n\
         <p class=\"explain\">Apply stages the new values on each MTA's own server entry, \
         batch by batch, and writes the cluster's global config only once every MTA LDAP \
         lists passed its health gate (then the temporary entries are removed).</p>\n\
         <table class=\"checks\"><thead><tr><th>Cluster</th><th>State</th><th>Detail</th>\
         <th>Held by</th><th>Commands sent</th></tr></thead><tbody>\n",
    );
    for p in &report.promotions {
        let held: Vec<String> = p
            .held_by
            .iter()
            .map(|h| format!("{}: {}", escape(h.name()), escape(&h.reason)))
            .collect();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
            escape(&p.cluster),
            escape(&p.state),
            escape(&p.detail),
            p.ran_on
                .as_ref()
                .map(|h| format!("<br><span class=\"evidence\">on {}</span>", escape(h)))
                .unwrap_or_default(),
            held.join("<br>"),
            commands_cell(&p.commands),
        );
    }
    out.push_str("</tbody></table>\n</section>\n");
    out
}
