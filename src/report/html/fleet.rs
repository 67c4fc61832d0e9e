//! The fleet part of report.html, built to stay readable at 1,000 hosts: the check ×
//! cluster (or × customer) matrix, the most important findings with their fix, then the
//! hosts grouped by identical state — collapsed, each showing only its failing rows once
//! — and the playbook's controls with their rationale and remediation.

use maud::{Markup, html};

use super::{plural, status_class, status_explanation, table_head};
use crate::report::aggregate::{self, Matrix, ProblemKind, StateGroup, Widespread};
use crate::report::labels::{
    STATUS_ORDER, probe_verdict_rank, probe_verdict_str, status_title, verdict_rank, verdict_str,
};
use crate::report::model::{
    ControlResult, Finding, HostReport, HostStatus, ProbeResult, ProbeVerdict, Report, Verdict,
    WaiverRef,
};

/// How many findings the "What to fix first" list shows; the rest are in the groups.
const TOP_FINDINGS: usize = 10;
/// Problems named in a group's title before `+N more`.
const TITLE_PROBLEMS: usize = 4;

/// The check × cluster matrix: each cell `off/applicable`, red when anything is off.
pub fn matrix_section(report: &Report) -> Markup {
    let m: Matrix = aggregate::matrix(report);
    if m.columns.is_empty() && report.hosts.is_empty() {
        return html! {};
    }
    let row = |r: &aggregate::MatrixRow, class: &str| {
        html! {
            tr class=(class) {
                th { (r.key) }
                td { (r.hosts) }
                td class=(if r.failed > 0 { "b" } else { "z" }) { (r.failed) }
                @for c in &r.cells {
                    @if c.applicable == 0 && c.off == 0 {
                        td class="z" { "–" }
                    } @else if c.off == 0 {
                        td class="g" { "0/" (c.applicable) }
                    } @else {
                        td class="b" { (c.off) "/" (c.applicable) }
                    }
                }
            }
            "\n"
        }
    };
    html! {
        section id="matrix" {
            "\n" h2 { "Checks by " (m.by) } "\n"
            p class="explain" {
                "Each cell: hosts where the check is off / hosts it applies to. A row per "
                (m.by) ", worst first; hosts that could not be audited count under \
                 “not audited”."
            }
            "\n"
            div class="scroll" {
                table class="matrix" {
                    thead {
                        tr {
                            th { (capitalise(&m.by)) } th { "hosts" } th { "not audited" }
                            @for id in &m.columns {
                                @let title = report.check_info(id).map(|c| c.title.as_str());
                                th title=(title.unwrap_or("")) { (id) }
                            }
                        }
                    }
                    tbody {
                        "\n"
                        (row(&m.total, "total"))
                        @for r in &m.rows {
                            (row(r, if r.all_good() { "good" } else { "" }))
                        }
                    }
                }
            }
            "\n"
        }
        "\n"
    }
}

/// A value cut to a line's worth, with an ellipsis (the full value is in the groups).
fn cut(value: &str) -> String {
    const MAX: usize = 60;
    if value.chars().count() > MAX {
        let head: String = value.chars().take(MAX - 1).collect();
        format!("{head}…")
    } else {
        value.to_string()
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The findings to act on first: blocking ones, then by severity and spread, each with
/// the hosts' count and the fix.
pub fn top_findings_section(report: &Report) -> Markup {
    let all = aggregate::widespread(report);
    if all.is_empty() {
        return html! {};
    }
    html! {
        section id="top" {
            "\n" h2 { "What to fix first" } "\n"
            ol class="top" {
                "\n"
                @for w in all.iter().take(TOP_FINDINGS) {
                    (top_item(report, w))
                }
            }
            "\n"
            @if all.len() > TOP_FINDINGS {
                p class="explain" {
                    (all.len() - TOP_FINDINGS)
                    " more distinct findings are in the host groups below."
                }
                "\n"
            }
        }
        "\n"
    }
}

fn top_item(report: &Report, w: &Widespread<'_>) -> Markup {
    let n = w.hosts.len();
    let clusters = w.cluster_count();
    let mut names: Vec<&str> = w.hosts.iter().take(8).map(|h| h.name.as_str()).collect();
    if n > names.len() {
        names.push("…");
    }
    let id = &w.problem.id;
    html! {
        li class=(if w.blocking { "blocking" } else { "" }) {
            div {
                span class={ "sev s-" (w.severity) } { (w.severity) } " "
                b class="mono" {
                    @if report.check_info(id).is_some() {
                        a href={ "#check-" (id) } { (id) }
                    } @else {
                        (id)
                    }
                }
                " "
                @match w.problem.kind {
                    ProblemKind::Error => "host could not be audited",
                    ProblemKind::Control => { "is " (cut(&w.problem.state)) },
                    ProblemKind::Probe => (w.problem.state),
                    ProblemKind::Finding => {},
                }
                " "
                span class="facts" {
                    "on " (n) " host" (plural(n)) " in " (clusters) " cluster" (plural(clusters))
                    ": " (names.join(", "))
                }
            }
            p class="message" { (w.message) }
            @if !w.fix.is_empty() {
                p class="fix" { b { "Fix:" } " " (w.fix) }
            }
        }
        "\n"
    }
}

/// The filter bar: a button per status present and a search box over hosts, clusters,
/// label values (customers) and checks.
pub fn filter_bar(report: &Report) -> Markup {
    let what = if report.labels.is_empty() {
        "host, cluster or check".to_string()
    } else {
        format!("host, cluster, {} or check", report.labels.join(", "))
    };
    let find = format!("Find a {what}");
    html! {
        nav id="filter" hidden {
            "\n"
            button type="button" class="all" data-filter="all" aria-pressed="true" { "All" }
            "\n"
            @for status in STATUS_ORDER {
                @let n = report.hosts.iter().filter(|h| h.status == status).count();
                @if n > 0 {
                    @let c = status_class(status);
                    button type="button" class=(c) data-filter=(c) aria-pressed="false" {
                        (status_title(status)) " (" (n) ")"
                    }
                    "\n"
                }
            }
            input id="q" type="search" placeholder=(find) aria-label=(find);
            "\n"
        }
        "\n"
    }
}

/// The hosts, one section per status (worst first), grouped by identical state.
pub fn host_sections(report: &Report) -> Markup {
    let groups = aggregate::state_groups(report);
    html! {
        @for status in STATUS_ORDER {
            @let of_status: Vec<&StateGroup<'_>> =
                groups.iter().filter(|g| g.status == status).collect();
            @if !of_status.is_empty() {
                @let c = status_class(status);
                section class={ "hosts " (c) } id={ "section-" (c) } {
                    "\n"
                    h2 {
                        (status_title(status)) " "
                        span class="badge" {
                            (of_status.iter().map(|g| g.host_count()).sum::<usize>())
                        }
                    }
                    "\n"
                    p class="explain" {
                        (status_explanation(status))
                        " Hosts in the same state are grouped; open a group for its failing \
                         rows and hosts."
                    }
                    "\n"
                    @for (i, g) in of_status.into_iter().enumerate() {
                        (group_block(report, g, i))
                    }
                }
                "\n"
            }
        }
    }
}

/// The lowercase text a group is found by: its problems and their checks' titles.
fn group_search(report: &Report, g: &StateGroup<'_>) -> String {
    let mut words = vec![g.status.as_str().to_string()];
    for p in &g.problems {
        words.push(p.label());
        if let Some(c) = report.check_info(&p.id) {
            words.push(c.title.clone());
        }
    }
    words.join(" ").to_lowercase()
}

fn group_block(report: &Report, g: &StateGroup<'_>, index: usize) -> Markup {
    let c = status_class(g.status);
    let example = g.example();
    let mut findings: Vec<&Finding> = example.findings.iter().collect();
    // Blocking findings first: they explain why a change was (or would be) refused.
    findings.sort_by_key(|f| !f.blocking);
    html! {
        details class={ "grp " (c) } id={ "group-" (c) "-" (index) } data-status=(c)
            data-search=(group_search(report, g)) {
            "\n"
            summary {
                span class="badge" { (status_title(g.status)) } " "
                span class="gt" { (g.title(TITLE_PROBLEMS)) }
            }
            "\n"
            div class="body" {
                "\n"
                @if g.status == HostStatus::Failed {
                    (failed_hosts(report, g))
                } @else {
                    @if let Some(rows) = failing_rows(example) {
                        (rows)
                    }
                    @for f in findings {
                        (finding_block(f))
                    }
                    @if g.host_count() > 1 && !g.problems.is_empty() {
                        p class="evidence" {
                            "Values and evidence above are " (example.name)
                            "’s; every host below is in the same state."
                        }
                        "\n"
                    }
                    (cluster_list(report, g))
                }
            }
            "\n"
        }
        "\n"
    }
}

/// The hosts of a group, one line per cluster; each host is findable and linkable
/// (`#host-NAME`), with its address, Carbonio name and version on hover.
fn cluster_list(report: &Report, g: &StateGroup<'_>) -> Markup {
    html! {
        ul class="cl" {
            "\n"
            @for (cluster, hosts) in &g.clusters {
                @let labels = cluster_labels(report, hosts);
                li data-s=(format!("{cluster} {labels}").to_lowercase()) {
                    b { (cluster) }
                    @if !labels.is_empty() {
                        " " span class="lbl" { (labels) }
                    }
                    " " span class="n" { "(" (hosts.len()) ")" } ": "
                    @for (i, h) in hosts.iter().enumerate() {
                        @if i > 0 { ", " }
                        (host_span(h))
                    }
                }
                "\n"
            }
        }
        "\n"
    }
}

/// The distinct label values of a cluster's hosts (`ACME Corp`).
fn cluster_labels(report: &Report, hosts: &[&HostReport]) -> String {
    let mut values: Vec<&str> = hosts
        .iter()
        .flat_map(|h| report.host_labels(h).into_iter().map(|(_, v)| v))
        .collect();
    values.sort_unstable();
    values.dedup();
    values.join(", ")
}

fn host_facts(h: &HostReport) -> String {
    let mut facts = vec![format!("{}:{}", h.address, h.port)];
    if let Some(name) = &h.carbonio_hostname {
        facts.push(name.clone());
    }
    if let Some(v) = &h.version {
        facts.push(v.clone());
    }
    if let Some(r) = &h.running {
        facts.push(format!("master.cf {}", r.state.as_str()));
    }
    if !h.roles.is_empty() {
        facts.push(h.roles.join(", "));
    }
    facts.join(" · ")
}

fn host_span(h: &HostReport) -> Markup {
    let search = [
        h.name.as_str(),
        h.address.as_str(),
        h.carbonio_hostname.as_deref().unwrap_or(""),
    ]
    .join(" ")
    .to_lowercase();
    html! {
        span class="h" id={ "host-" (h.name) } data-s=(search) title=(host_facts(h)) { (h.name) }
    }
}

/// Failed hosts: each with its own error (the messages name the host and address).
fn failed_hosts(report: &Report, g: &StateGroup<'_>) -> Markup {
    html! {
        ul class="cl failed" {
            "\n"
            @for (cluster, hosts) in &g.clusters {
                @let labels = cluster_labels(report, hosts);
                @for h in hosts {
                    @if let Some(e) = &h.error {
                        li data-s=(format!("{cluster} {labels}").to_lowercase()) {
                            (host_span(h)) " " span class="n" { "(" (cluster) ")" } ": " (e.message)
                            span class="mono evidence" {
                                @for fp in &e.expected_fingerprints {
                                    br; "known_hosts expects " (fp)
                                }
                                @if let Some(fp) = &e.offered_fingerprint {
                                    br; "server offered " (fp)
                                }
                            }
                        }
                        "\n"
                    }
                }
            }
        }
        "\n"
    }
}

/// The example host's controls and probes that are off, in one table.
fn failing_rows(host: &HostReport) -> Option<Markup> {
    let controls: Vec<&ControlResult> = host
        .controls
        .iter()
        .filter(|c| verdict_rank(c.verdict) > 0)
        .collect();
    let probes: Vec<&ProbeResult> = host
        .probes
        .iter()
        .filter(|p| probe_verdict_rank(p.verdict) > 0)
        .collect();
    if controls.is_empty() && probes.is_empty() {
        return None;
    }
    Some(html! {
        table class="checks" {
            (table_head(&[
                "Check",
                "Title",
                "Verdict",
                "Expected",
                "Actual",
                "Before → after",
                "Evidence",
            ]))
            tbody {
                "\n"
                @for c in controls { (control_row(c)) }
                @for p in probes { (probe_row(p)) }
            }
        }
        "\n"
    })
}

pub fn finding_block(f: &Finding) -> Markup {
    html! {
        div class=(if f.blocking { "finding blocking" } else { "finding" }) {
            span class="fid" { (f.id) } " "
            span class=(if f.blocking { "badge failed" } else { "badge restart-pending" }) {
                (f.severity)
            }
            p class="message" { (f.message) }
            p class="evidence mono" { (f.evidence) }
            p class="hint" { (f.hint) }
        }
        "\n"
    }
}

pub fn control_row(c: &ControlResult) -> Markup {
    let class = match c.verdict {
        Verdict::Compliant => "ok",
        Verdict::NotApplicable => "na",
        Verdict::NonCompliant | Verdict::Masked | Verdict::Error => "bad",
    };
    html! {
        tr class=(class) {
            td class="mono" { (c.id) }
            td {
                (c.title) br;
                span class="evidence" { (c.attr) " · " (c.scope) " · " (c.severity) }
            }
            td class="v" { (verdict_str(c.verdict)) (waiver_badge(c.waiver.as_ref())) }
            td class="mono" { (c.expected) }
            td class="mono" {
                (c.actual)
                @if let Some(server) = &c.server_values {
                    br;
                    span class="evidence" {
                        "global [" (c.global_values.join(", ")) "], this server ["
                        (server.join(", ")) "]"
                    }
                }
            }
            td class="mono" { (before_after(c)) }
            td class="evidence" { (c.evidence) }
        }
        "\n"
    }
}

/// apply: `before → after` (highlighted when this run changed it).
pub fn before_after(c: &ControlResult) -> Markup {
    html! {
        @match (&c.before, &c.after) {
            (Some(b), Some(a)) => {
                span class=(if c.changed { "changed" } else { "" }) { (b) " → " (a) }
            }
            (Some(b), None) => (b),
            _ => {}
        }
    }
}

/// `--waivers`: a badge under the verdict of a waived deviation (grey: accepted) or of
/// one whose waiver expired (red: it counts again), with the justification and source.
fn waiver_badge(w: Option<&WaiverRef>) -> Markup {
    let Some(w) = w else {
        return html! {};
    };
    let (class, label, when) = match w.expired {
        false => ("waived", "waived", "until"),
        true => ("failed", "waiver expired", "expired"),
    };
    html! {
        br;
        span class={ "badge " (class) } { (label) } " "
        span class="evidence" {
            (when) " " (w.expires) ": " (w.justification) " (" (w.source)
            @if let Some(a) = &w.approved_by {
                ", approved by " (a)
            }
            ")"
        }
    }
}

fn probe_row(p: &ProbeResult) -> Markup {
    let class = match p.verdict {
        ProbeVerdict::Pass => "ok",
        ProbeVerdict::NotApplicable => "na",
        ProbeVerdict::Fail | ProbeVerdict::Error => "bad",
    };
    html! {
        tr class=(class) {
            td class="mono" { (p.id) }
            td { (p.title) br; span class="evidence" { "probe · " (p.kind) } }
            td class="v" { (probe_verdict_str(p.verdict)) (waiver_badge(p.waiver.as_ref())) }
            td class="mono" { (p.expected) }
            td class="mono" { (p.actual) }
            td {}
            td class="evidence" { (p.evidence) }
        }
        "\n"
    }
}

/// Every control and probe of the playbook: what it reads, what it expects, why it
/// matters and how to fix it (as InSpec's reports show a control's description).
pub fn checks_section(report: &Report) -> Markup {
    if report.checks.is_empty() {
        return html! {};
    }
    html! {
        section id="checks" {
            "\n" h2 { "Controls and probes" } "\n"
            table class="checks catalog" {
                (table_head(&[
                    "Check",
                    "What it reads and expects",
                    "Why it matters",
                    "How to fix",
                ]))
                tbody {
                    "\n"
                    @for c in &report.checks {
                        tr id={ "check-" (c.id) } {
                            td {
                                b class="mono" { (c.id) } br; (c.title) br;
                                span class="evidence" { (c.kind) " · " (c.severity) }
                            }
                            td {
                                span class="mono" { (c.reads) } br;
                                "expected " span class="mono" { (c.expected) }
                            }
                            td { (c.rationale) }
                            td { (c.remediation) }
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
