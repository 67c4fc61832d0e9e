//! The fleet part of report.html, built to stay readable at 1,000 hosts: the check ×
//! cluster (or × customer) matrix, the most important findings with their fix, then the
//! hosts grouped by identical state — collapsed, each showing only its failing rows once
//! — and the playbook's controls with their rationale and remediation.

use std::fmt::Write as _;

use super::{escape, status_class, status_explanation};
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
pub fn matrix_section(report: &Report) -> String {
    let m: Matrix = aggregate::matrix(report);
    if m.columns.is_empty() && report.hosts.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "<section id=\"matrix\">\n<h2>Checks by {by}</h2>\n<p class=\"explain\">Each cell: hosts where the \
         check is off / hosts it applies to. A row per {by}, worst first; hosts that could not \
         be audited count under “not audited”.</p>\n<div class=\"scroll\"><table class=\"matrix\"><thead><tr><th>{By}</th>\
         <th>hosts</th><th>not audited</th>",
        by = escape(&m.by),
        By = escape(&capitalise(&m.by)),
    );
    for id in &m.columns {
        let title = report
            .check_info(id)
            .map(|c| c.title.as_str())
            .unwrap_or("");
        let _ = write!(out, "<th title=\"{}\">{}</th>", escape(title), escape(id));
    }
    out.push_str("</tr></thead><tbody>\n");
    let row = |out: &mut String, r: &aggregate::MatrixRow, class: &str| {
        let _ = write!(
            out,
            "<tr class=\"{class}\"><th>{}</th><td>{}</td><td class=\"{}\">{}</td>",
            escape(&r.key),
            r.hosts,
            if r.failed > 0 { "b" } else { "z" },
            r.failed
        );
        for c in &r.cells {
            if c.applicable == 0 && c.off == 0 {
                out.push_str("<td class=\"z\">–</td>");
            } else if c.off == 0 {
                let _ = write!(out, "<td class=\"g\">0/{}</td>", c.applicable);
            } else {
                let _ = write!(out, "<td class=\"b\">{}/{}</td>", c.off, c.applicable);
            }
        }
        out.push_str("</tr>\n");
    };
    row(&mut out, &m.total, "total");
    for r in &m.rows {
        row(&mut out, r, if r.all_good() { "good" } else { "" });
    }
    out.push_str("</tbody></table></div>\n</section>\n");
    out
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
pub fn top_findings_section(report: &Report) -> String {
    let all = aggregate::widespread(report);
    if all.is_empty() {
        return String::new();
    }
    let mut out =
        String::from("<section id=\"top\">\n<h2>What to fix first</h2>\n<ol class=\"top\">\n");
    for w in all.iter().take(TOP_FINDINGS) {
        out.push_str(&top_item(report, w));
    }
    out.push_str("</ol>\n");
    if all.len() > TOP_FINDINGS {
        let _ = writeln!(
            out,
            "<p class=\"explain\">{} more distinct findings are in the host groups below.</p>",
            all.len() - TOP_FINDINGS
        );
    }
    out.push_str("</section>\n");
    out
}

fn top_item(report: &Report, w: &Widespread<'_>) -> String {
    let n = w.hosts.len();
    let clusters = w.cluster_count();
    let mut names: Vec<&str> = w.hosts.iter().take(8).map(|h| h.name.as_str()).collect();
    if n > names.len() {
        names.push("…");
    }
    let id_html = if report.check_info(&w.problem.id).is_some() {
        format!(
            "<a href=\"#check-{id}\">{id}</a>",
            id = escape(&w.problem.id)
        )
    } else {
        escape(&w.problem.id)
    };
    let state = match w.problem.kind {
        ProblemKind::Error => "host could not be audited".to_string(),
        ProblemKind::Control => format!("is {}", escape(&cut(&w.problem.state))),
        ProblemKind::Probe => escape(&w.problem.state),
        ProblemKind::Finding => String::new(),
    };
    format!(
        "<li class=\"{cls}\"><div><span class=\"sev s-{sev}\">{sev}</span> <b class=\"mono\">{id_html}</b> {state} \
         <span class=\"facts\">on {n} host{s} in {clusters} cluster{cs}: {names}</span></div>\
         <p class=\"message\">{message}</p>{fix}</li>\n",
        cls = if w.blocking { "blocking" } else { "" },
        sev = escape(&w.severity),
        s = if n == 1 { "" } else { "s" },
        cs = if clusters == 1 { "" } else { "s" },
        names = escape(&names.join(", ")),
        message = escape(&w.message),
        fix = if w.fix.is_empty() {
            String::new()
        } else {
            format!("<p class=\"fix\"><b>Fix:</b> {}</p>", escape(&w.fix))
        },
    )
}

/// The filter bar: a button per status present and a search box over hosts, clusters,
/// label values (customers) and checks.
pub fn filter_bar(report: &Report) -> String {
    let mut out = String::from(
        "<nav id=\"filter\" hidden>\n<button type=\"button\" class=\"all\" data-filter=\"all\" aria-pressed=\"true\">All</button>\n",
    );
    for status in STATUS_ORDER {
        let n = report.hosts.iter().filter(|h| h.status == status).count();
        if n > 0 {
            let _ = writeln!(
                out,
                "<button type=\"button\" class=\"{c}\" data-filter=\"{c}\" aria-pressed=\"false\">{} ({n})</button>",
                status_title(status),
                c = status_class(status)
            );
        }
    }
    let what = if report.labels.is_empty() {
        "host, cluster or check".to_string()
    } else {
        format!("host, cluster, {} or check", report.labels.join(", "))
    };
    let _ = writeln!(
        out,
        "<input id=\"q\" type=\"search\" placeholder=\"Find a {w}\" aria-label=\"Find a {w}\">\n</nav>",
        w = escape(&what)
    );
    out
}

/// The hosts, one section per status (worst first), grouped by identical state.
pub fn host_sections(report: &Report) -> String {
    let groups = aggregate::state_groups(report);
    let mut out = String::new();
    for status in STATUS_ORDER {
        let of_status: Vec<&StateGroup<'_>> =
            groups.iter().filter(|g| g.status == status).collect();
        if of_status.is_empty() {
            continue;
        }
        let hosts: usize = of_status.iter().map(|g| g.host_count()).sum();
        let _ = writeln!(
            out,
            "<section class=\"hosts {c}\" id=\"section-{c}\">\n<h2>{} <span class=\"badge\">{hosts}</span></h2>\n<p class=\"explain\">{} \
             Hosts in the same state are grouped; open a group for its failing rows and hosts.</p>",
            status_title(status),
            status_explanation(status),
            c = status_class(status),
        );
        for (i, g) in of_status.into_iter().enumerate() {
            out.push_str(&group_block(report, g, i));
        }
        out.push_str("</section>\n");
    }
    out
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

fn group_block(report: &Report, g: &StateGroup<'_>, index: usize) -> String {
    let c = status_class(g.status);
    let title = g.title(TITLE_PROBLEMS);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<details class=\"grp {c}\" id=\"group-{c}-{index}\" data-status=\"{c}\" data-search=\"{search}\">\n\
         <summary><span class=\"badge\">{status}</span> <span class=\"gt\">{title}</span></summary>\n<div class=\"body\">",
        search = escape(&group_search(report, g)),
        status = status_title(g.status),
        title = escape(&title),
    );
    let example = g.example();
    if g.status == HostStatus::Failed {
        out.push_str(&failed_hosts(report, g));
    } else {
        if let Some(rows) = failing_rows(example) {
            out.push_str(&rows);
        }
        let mut findings: Vec<&Finding> = example.findings.iter().collect();
        // Blocking findings first: they explain why a change was (or would be) refused.
        findings.sort_by_key(|f| !f.blocking);
        for f in findings {
            out.push_str(&finding_block(f));
        }
        if g.host_count() > 1 && (!g.problems.is_empty()) {
            let _ = writeln!(
                out,
                "<p class=\"evidence\">Values and evidence above are {}’s; every host below is in the same state.</p>",
                escape(&example.name)
            );
        }
        out.push_str(&cluster_list(report, g));
    }
    out.push_str("</div>\n</details>\n");
    out
}

/// The hosts of a group, one line per cluster; each host is findable and linkable
/// (`#host-NAME`), with its address, Carbonio name and version on hover.
fn cluster_list(report: &Report, g: &StateGroup<'_>) -> String {
    let mut out = String::from("<ul class=\"cl\">\n");
    for (cluster, hosts) in &g.clusters {
        let labels = cluster_labels(report, hosts);
        let _ = write!(
            out,
            "<li data-s=\"{}\"><b>{}</b>{} <span class=\"n\">({})</span>: ",
            escape(&format!("{cluster} {labels}").to_lowercase()),
            escape(cluster),
            if labels.is_empty() {
                String::new()
            } else {
                format!(" <span class=\"lbl\">{}</span>", escape(&labels))
            },
            hosts.len(),
        );
        let spans: Vec<String> = hosts.iter().map(|h| host_span(h)).collect();
        out.push_str(&spans.join(", "));
        out.push_str("</li>\n");
    }
    out.push_str("</ul>\n");
    out
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

fn host_span(h: &HostReport) -> String {
    let search = [
        h.name.as_str(),
        h.address.as_str(),
        h.carbonio_hostname.as_deref().unwrap_or(""),
    ]
    .join(" ")
    .to_lowercase();
    format!(
        "<span class=\"h\" id=\"host-{n}\" data-s=\"{}\" title=\"{}\">{n}</span>",
        escape(&search),
        escape(&host_facts(h)),
        n = escape(&h.name),
    )
}

/// Failed hosts: each with its own error (the messages name the host and address).
fn failed_hosts(report: &Report, g: &StateGroup<'_>) -> String {
    let mut out = String::from("<ul class=\"cl failed\">\n");
    for (cluster, hosts) in &g.clusters {
        let labels = cluster_labels(report, hosts);
        for h in hosts {
            let Some(e) = &h.error else { continue };
            let mut fps = String::new();
            for fp in &e.expected_fingerprints {
                let _ = write!(fps, "<br>known_hosts expects {}", escape(fp));
            }
            if let Some(fp) = &e.offered_fingerprint {
                let _ = write!(fps, "<br>server offered {}", escape(fp));
            }
            let _ = writeln!(
                out,
                "<li data-s=\"{}\">{} <span class=\"n\">({})</span>: {}<span class=\"mono evidence\">{fps}</span></li>",
                escape(&format!("{cluster} {labels}").to_lowercase()),
                host_span(h),
                escape(cluster),
                escape(&e.message),
            );
        }
    }
    out.push_str("</ul>\n");
    out
}

/// The example host's controls and probes that are off, in one table.
fn failing_rows(host: &HostReport) -> Option<String> {
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
    let mut out = String::from(
        "<table class=\"checks\"><thead><tr><th>Check</th><th>Title</th><th>Verdict</th>\
         <th>Expected</th><th>Actual</th><th>Before → after</th><th>Evidence</th></tr></thead><tbody>\n",
    );
    for c in controls {
        out.push_str(&control_row(c));
    }
    for p in probes {
        out.push_str(&probe_row(p));
    }
    out.push_str("</tbody></table>\n");
    Some(out)
}

pub fn finding_block(f: &Finding) -> String {
    format!(
        "<div class=\"finding{}\"><span class=\"fid\">{}</span> <span class=\"badge {}\">{}</span>\
         <p class=\"message\">{}</p><p class=\"evidence mono\">{}</p><p class=\"hint\">{}</p></div>\n",
        if f.blocking { " blocking" } else { "" },
        escape(&f.id),
        if f.blocking {
            "failed"
        } else {
            "restart-pending"
        },
        escape(&f.severity),
        escape(&f.message),
        escape(&f.evidence),
        escape(&f.hint),
    )
}

pub fn control_row(c: &ControlResult) -> String {
    let class = match c.verdict {
        Verdict::Compliant => "ok",
        Verdict::NotApplicable => "na",
        Verdict::NonCompliant | Verdict::Masked | Verdict::Error => "bad",
    };
    let mut actual = escape(&c.actual);
    if let Some(server) = &c.server_values {
        let _ = write!(
            actual,
            "<br><span class=\"evidence\">global [{}], this server [{}]</span>",
            escape(&c.global_values.join(", ")),
            escape(&server.join(", "))
        );
    }
    format!(
        "<tr class=\"{class}\"><td class=\"mono\">{}</td><td>{}<br><span class=\"evidence\">{} · {} · {}</span></td>\
         <td class=\"v\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{actual}</td><td class=\"mono\">{}</td>\
         <td class=\"evidence\">{}</td></tr>\n",
        escape(&c.id),
        escape(&c.title),
        escape(&c.attr),
        escape(&c.scope),
        escape(&c.severity),
        verdict_str(c.verdict).to_string() + &waiver_badge(c.waiver.as_ref()),
        escape(&c.expected),
        before_after(c),
        escape(&c.evidence),
    )
}

/// apply: `before → after` (highlighted when this run changed it).
pub fn before_after(c: &ControlResult) -> String {
    match (&c.before, &c.after) {
        (Some(b), Some(a)) => format!(
            "<span class=\"{}\">{} → {}</span>",
            if c.changed { "changed" } else { "" },
            escape(b),
            escape(a)
        ),
        (Some(b), None) => escape(b),
        _ => String::new(),
    }
}

/// `--waivers`: a badge under the verdict of a waived deviation (grey: accepted) or of
/// one whose waiver expired (red: it counts again), with the justification and source.
fn waiver_badge(w: Option<&WaiverRef>) -> String {
    let Some(w) = w else {
        return String::new();
    };
    let (class, label, when) = match w.expired {
        false => ("waived", "waived", "until"),
        true => ("failed", "waiver expired", "expired"),
    };
    format!(
        "<br><span class=\"badge {class}\">{label}</span> <span class=\"evidence\">{when} {}: {} ({}{})</span>",
        escape(&w.expires),
        escape(&w.justification),
        escape(&w.source),
        w.approved_by
            .as_ref()
            .map(|a| format!(", approved by {}", escape(a)))
            .unwrap_or_default(),
    )
}

fn probe_row(p: &ProbeResult) -> String {
    let class = match p.verdict {
        ProbeVerdict::Pass => "ok",
        ProbeVerdict::NotApplicable => "na",
        ProbeVerdict::Fail | ProbeVerdict::Error => "bad",
    };
    format!(
        "<tr class=\"{class}\"><td class=\"mono\">{}</td><td>{}<br><span class=\"evidence\">probe · {}</span></td>\
         <td class=\"v\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td></td>\
         <td class=\"evidence\">{}</td></tr>\n",
        escape(&p.id),
        escape(&p.title),
        escape(&p.kind),
        probe_verdict_str(p.verdict).to_string() + &waiver_badge(p.waiver.as_ref()),
        escape(&p.expected),
        escape(&p.actual),
        escape(&p.evidence),
    )
}

/// Every control and probe of the playbook: what it reads, what it expects, why it
/// matters and how to fix it (as InSpec's reports show a control's description).
pub fn checks_section(report: &Report) -> String {
    if report.checks.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<section id=\"checks\">\n<h2>Controls and probes</h2>\n<table class=\"checks catalog\"><thead><tr>\
         <th>Check</th><th>What it reads and expects</th><th>Why it matters</th><th>How to fix</th></tr></thead><tbody>\n",
    );
    for c in &report.checks {
        let _ = writeln!(
            out,
            "<tr id=\"check-{id}\"><td><b class=\"mono\">{id}</b><br>{title}<br><span class=\"evidence\">{kind} · {sev}</span></td>\
             <td><span class=\"mono\">{reads}</span><br>expected <span class=\"mono\">{expected}</span></td>\
             <td>{rationale}</td><td>{fix}</td></tr>",
            id = escape(&c.id),
            title = escape(&c.title),
            kind = escape(&c.kind),
            sev = escape(&c.severity),
            reads = escape(&c.reads),
            expected = escape(&c.expected),
            rationale = escape(&c.rationale),
            fix = escape(&c.remediation),
        );
    }
    out.push_str("</tbody></table>\n</section>\n");
    out
}
