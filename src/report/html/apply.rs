//! The apply part of report.html: the rollout as it happened, batch by batch (canary
//! first) — each host's changes, its commands exactly as sent, the reload or restart,
//! every health-gate check with its evidence, the rollback — then the promotion of each
//! cluster's staged values.

use maud::{Markup, html};

use super::fleet::before_after;
use super::{plural, table_head};
use crate::report::model::{CommandRecord, GateRecord, HostReport, Report};

/// The columns of a batch's table.
const TIMELINE_COLUMNS: [&str; 6] = [
    "Host",
    "Outcome",
    "Changes",
    "Reload / restart",
    "Health gate",
    "Commands sent",
];

/// The rollout timeline; empty when no host carries apply data.
pub fn timeline_section(report: &Report) -> Markup {
    let applied: Vec<&HostReport> = report.hosts.iter().filter(|h| h.apply.is_some()).collect();
    if applied.is_empty() {
        return html! {};
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
    let failed_gates = |hosts: &[&HostReport]| {
        hosts
            .iter()
            .filter(|h| {
                h.apply
                    .as_ref()
                    .and_then(|a| a.gate.as_ref())
                    .is_some_and(|g| !g.passed)
            })
            .count()
    };
    html! {
        section id="rollout" {
            "\n" h2 { "Rollout" } "\n"
            p class="explain" {
                "Batch by batch, canary first: what each host was sent (exactly as sent), how \
                 its MTA took the change, and its health gate. A batch starts only when the one \
                 before it passed."
            }
            "\n"
            @for (n, hosts) in &batches {
                @let failed = failed_gates(hosts);
                details class="batch" open[failed > 0] {
                    summary {
                        b {
                            @if *n == 1 { "Batch 1 (canary)" } @else { "Batch " (n) }
                        }
                        " of " (total) " · " (hosts.len()) " host" (plural(hosts.len())) " · "
                        @if failed > 0 {
                            span class="bad" { (failed) " failed its gate" }
                        } @else {
                            "every gate passed"
                        }
                        (batch_window(hosts))
                    }
                    "\n"
                    table class="checks timeline" {
                        (table_head(&TIMELINE_COLUMNS))
                        tbody { "\n" @for h in hosts { (host_row(h)) } }
                    }
                    "\n"
                }
                "\n"
            }
            @if !unscheduled.is_empty() {
                details class="batch" {
                    summary {
                        b { "Not restarted" } " · " (unscheduled.len()) " host"
                        (plural(unscheduled.len()))
                    }
                    "\n"
                    table class="checks timeline" {
                        (table_head(&TIMELINE_COLUMNS))
                        tbody { "\n" @for h in &unscheduled { (host_row(h)) } }
                    }
                    "\n"
                }
                "\n"
            }
        }
        "\n"
    }
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

fn host_row(h: &HostReport) -> Markup {
    let Some(a) = &h.apply else {
        return html! {};
    };
    let changed = h.controls.iter().filter(|c| c.changed);
    let changes: Vec<Markup> = changed
        .map(|c| html! { span class="mono" { (c.id) } " " (before_after(c)) })
        .chain(a.staged.iter().map(|s| {
            html! { span class="evidence" { "staged " (s.control) " " (s.attr) ": " (s.state) } }
        }))
        .collect();
    html! {
        tr {
            td { b { (h.name) } br; span class="evidence" { (h.cluster) } }
            td { (a.rollout) }
            td {
                @for (i, c) in changes.iter().enumerate() {
                    @if i > 0 { br; }
                    (c)
                }
            }
            td {
                @if let Some(r) = &a.restart {
                    span class=(if r.ok { "ok" } else { "bad" }) { (r.method) } " "
                    span class="evidence" { (clock(&r.started_at)) "–" (clock(&r.finished_at)) }
                    @if !r.ok && !r.output.is_empty() {
                        pre { (r.output) }
                    }
                }
            }
            td {
                @if let Some(g) = &a.gate { (gate_cell(g)) }
                @if let Some(rb) = &a.rollback {
                    div class=(if rb.ok { "ok" } else { "bad" }) {
                        b { "rollback:" } " " (rb.detail)
                    }
                    @if let Some(g) = &rb.gate { (gate_cell(g)) }
                }
            }
            td { (commands_cell(&a.commands)) }
        }
        "\n"
    }
}

fn gate_cell(g: &GateRecord) -> Markup {
    html! {
        span class=(if g.passed { "ok" } else { "bad" }) {
            (if g.passed { "passed" } else { "failed" })
        }
        " "
        span class="evidence" {
            "after " (g.attempts) " attempt" (plural(g.attempts))
            @if !g.finished_at.is_empty() {
                ", " (clock(&g.finished_at))
            }
        }
        ul class="gate" {
            @for c in &g.checks {
                li class=(if c.ok { "ok" } else { "bad" }) { b { (c.name) } " " (c.detail) }
            }
        }
        @if !g.smtp_transcript.is_empty() {
            details {
                summary { "SMTP from " (g.vantage) }
                pre { (g.smtp_transcript.join("\n")) }
            }
        }
    }
}

fn commands_cell(commands: &[CommandRecord]) -> Markup {
    if commands.is_empty() {
        return html! {};
    }
    html! {
        details {
            summary { (commands.len()) " command" (plural(commands.len())) }
            @for c in commands {
                p { b { (c.purpose) } " " span class="evidence" { "exit " (c.exit) } }
                pre { (c.command) }
                @for e in &c.errors {
                    p class="bad" { (e) }
                }
            }
        }
    }
}

/// apply: which clusters got their global config (promotion) and which did not, and the
/// MTAs that hold it back.
pub fn promotions_section(report: &Report) -> Markup {
    if report.promotions.is_empty() {
        return html! {};
    }
    html! {
        section id="promotions" {
            "\n" h2 { "Promotion of the staged values" } "\n"
            p class="explain" {
                "Apply stages the new values on each MTA's own server entry, batch by batch, \
                 and writes the cluster's global config only once every MTA LDAP lists passed \
                 its health gate (then the temporary entries are removed)."
            }
            "\n"
            table class="checks" {
                (table_head(&["Cluster", "State", "Detail", "Held by", "Commands sent"]))
                tbody {
                    "\n"
                    @for p in &report.promotions {
                        tr {
                            td { (p.cluster) }
                            td { (p.state) }
                            td {
                                (p.detail)
                                @if let Some(h) = &p.ran_on {
                                    br; span class="evidence" { "on " (h) }
                                }
                            }
                            td {
                                @for (i, h) in p.held_by.iter().enumerate() {
                                    @if i > 0 { br; }
                                    (h.name()) ": " (h.reason)
                                }
                            }
                            td { (commands_cell(&p.commands)) }
                        }
                        "\n"
                    }
                }
            }
            "\n"
        }
        "\n"
    }
}
