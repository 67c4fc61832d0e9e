//! The customer-facing `report.html`: one self-contained file (inline CSS and a small
//! inline filter script, nothing fetched — a Content-Security-Policy with hashes of the
//! two inline blocks makes the browser enforce that). It shows the run's metadata, a fleet
//! summary with a compliance bar, then one section per host status, worst first, with a
//! row per host listing each control and probe, findings (blocking ones first) and the
//! error of hosts that could not be audited. A domain section follows: per cluster, a
//! table of every hosted domain's SPF, DKIM and DMARC verdict with the exact findings.
//!
//! Every string from the report is escaped. To add a per-host section (apply's restart
//! and health-gate data), write one `fn x_section(host) -> Option<String>` and call it
//! from [`host_block`].

use std::fmt::Write as _;

use base64::Engine as _;
use jiff::Timestamp;
use sha2::{Digest as _, Sha256};

use super::labels::{STATUS_ORDER, probe_verdict_str, status_title, verdict_str};
use super::model::{
    ControlResult, DomainReport, Finding, HostReport, HostStatus, ProbeResult, ProbeVerdict,
    Report, Verdict,
};
use crate::exit;

/// Escapes text for HTML element content and double- or single-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `2026-11-27 02:00 UTC`, or the raw string when it is not RFC 3339.
fn human_time(rfc3339: &str) -> String {
    match rfc3339.parse::<Timestamp>() {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => rfc3339.to_string(),
    }
}

/// `850 ms`, `12.3 s`, `1 min 23 s`, `2 h 5 min`.
fn human_duration(ms: u64) -> String {
    let secs = ms / 1000;
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
    }
}

fn exit_meaning(code: i32) -> &'static str {
    match code {
        exit::OK => "every targeted host compliant",
        exit::USAGE => "usage, inventory or playbook error",
        exit::DRIFT => "drift: at least one host non-compliant",
        exit::HOST_FAILED => "at least one host could not be audited",
        exit::ABORTED => "rollout aborted",
        exit::INTERRUPTED => "interrupted",
        _ => "unknown",
    }
}

fn status_class(status: HostStatus) -> &'static str {
    status.as_str()
}

/// What a status means, under its section title.
fn status_explanation(status: HostStatus) -> &'static str {
    match status {
        HostStatus::Failed => {
            "These hosts could not be audited (connection, authentication, host key, \
             command or timeout). Their compliance is unknown."
        }
        HostStatus::Drift => "At least one control or probe on these hosts is not as required.",
        HostStatus::RestartPending => {
            "The directory holds the required settings but the running Postfix does not use \
             them yet: the MTA has to be restarted."
        }
        HostStatus::NotAttempted => {
            "The run stopped (rollout aborted or interrupted) before reaching these hosts."
        }
        HostStatus::Compliant => "Every applicable control and probe is as required.",
    }
}

const CSS: &str = r#"
:root{--failed:#b42318;--drift:#d9480f;--restart-pending:#b08800;--compliant:#1a7f37;--not-attempted:#6e7781;--ink:#1f2328;--muted:#59636e;--line:#d0d7de;--bg:#f6f8fa}
*{box-sizing:border-box}
[hidden]{display:none !important}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);background:#fff}
main{max-width:1180px;margin:0 auto;padding:28px 24px 48px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:19px;margin:32px 0 8px;padding-bottom:6px;border-bottom:1px solid var(--line)}
.sub{color:var(--muted);margin:0 0 18px}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px;margin:0;padding:14px 18px;background:var(--bg);border:1px solid var(--line);border-radius:8px}
dl.meta dt{color:var(--muted)}
dl.meta dd{margin:0;overflow-wrap:anywhere}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:14px 0}
.card{flex:1 1 140px;border:1px solid var(--line);border-left:6px solid var(--c);border-radius:8px;padding:10px 14px}
.card .n{font-size:28px;font-weight:700;color:var(--c)}
.card .l{color:var(--muted)}
.failed{--c:var(--failed)}.drift{--c:var(--drift)}.restart-pending{--c:var(--restart-pending)}.compliant{--c:var(--compliant)}.not-attempted{--c:var(--not-attempted)}.all{--c:var(--ink)}
.bar{display:flex;height:22px;border-radius:6px;overflow:hidden;background:var(--bg);border:1px solid var(--line)}
.bar span{display:block;height:100%;background:var(--c)}
.pct{margin:6px 0 0;color:var(--muted)}
nav#filter{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:24px 0 0}
nav#filter button{font:inherit;border:1px solid var(--line);background:#fff;border-radius:16px;padding:3px 12px;cursor:pointer;color:var(--c)}
nav#filter button[aria-pressed=true]{background:var(--c);color:#fff;border-color:var(--c)}
nav#filter input{font:inherit;padding:3px 10px;border:1px solid var(--line);border-radius:16px;margin-left:auto;min-width:220px}
.explain{color:var(--muted);margin:0 0 10px}
details.host{border:1px solid var(--line);border-left:6px solid var(--c);border-radius:8px;margin:10px 0;background:#fff}
details.host>summary{cursor:pointer;padding:10px 14px;display:flex;flex-wrap:wrap;gap:6px 16px;align-items:baseline;list-style:none}
details.host>summary::-webkit-details-marker{display:none}
details.host>summary::before{content:"\25B8";color:var(--muted)}
details.host[open]>summary::before{content:"\25BE"}
.hname{font-weight:700;font-size:16px}
.facts{color:var(--muted);font-size:13px}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600;color:#fff;background:var(--c);white-space:nowrap}
.tally{margin-left:auto;font-size:13px;color:var(--muted)}
.body{padding:0 14px 14px}
.error{border:1px solid var(--failed);background:#fff1f0;border-radius:6px;padding:10px 12px;margin:4px 0 10px}
.error .kind{font-weight:700;color:var(--failed);text-transform:uppercase;font-size:12px;letter-spacing:.04em}
.finding{border-radius:6px;padding:8px 12px;margin:6px 0;background:#fff8c5;border:1px solid #d4a72c}
.finding.blocking{background:#ffebe9;border:2px solid var(--failed)}
.finding .fid{font-weight:700}
.finding.blocking .fid::before{content:"BLOCKING: ";color:var(--failed)}
.finding p{margin:4px 0}
.finding .hint{color:var(--muted)}
table.checks{width:100%;border-collapse:collapse;margin-top:6px;font-size:14px}
table.checks th{text-align:left;font-weight:600;color:var(--muted);border-bottom:2px solid var(--line);padding:5px 8px}
table.checks td{border-bottom:1px solid var(--line);padding:5px 8px;vertical-align:top;overflow-wrap:anywhere}
table.checks td.v{white-space:nowrap}
tr.bad td{background:#fff5f5}
tr.bad td.v{color:var(--failed);font-weight:700}
tr.ok td.v{color:var(--compliant)}
tr.na td{color:var(--muted)}
h3{font-size:16px;margin:20px 0 6px}
ul.findings{margin:0;padding-left:18px}
.sev{font-size:12px;font-weight:700;text-transform:uppercase;color:var(--drift)}
.evidence{color:var(--muted);font-size:12px}
.changed{color:var(--drift);font-weight:600}
footer{margin-top:40px;color:var(--muted);font-size:13px}
@media print{nav#filter{display:none}details.host{break-inside:avoid}}
"#;

/// Shows the filter bar (it is useless without scripting) and filters hosts by status
/// button and by a search box; `report.html#drift` opens the page filtered, so a link can
/// point a customer at what needs doing. No `<` in here: tests scan the file for tags.
const SCRIPT: &str = r#"
(function(){
var nav=document.getElementById('filter');nav.hidden=false;
var hosts=Array.prototype.slice.call(document.querySelectorAll('details.host'));
var sections=Array.prototype.slice.call(document.querySelectorAll('section.hosts'));
var state='all',q='';
function apply(){
hosts.forEach(function(h){
var ok=(state==='all'||h.dataset.status===state)&&(q===''||h.dataset.search.indexOf(q)!==-1);
h.hidden=!ok;});
sections.forEach(function(s){s.hidden=!s.querySelector('details.host:not([hidden])');});
}
nav.addEventListener('click',function(e){
var b=e.target.closest('button');if(!b){return;}
state=b.dataset.filter;
nav.querySelectorAll('button').forEach(function(x){x.setAttribute('aria-pressed',x===b?'true':'false');});
apply();});
document.getElementById('q').addEventListener('input',function(e){q=e.target.value.toLowerCase();apply();});
var pre=location.hash.slice(1);
nav.querySelectorAll('button').forEach(function(x){if(x.dataset.filter===pre){x.click();}});
})();
"#;

/// `'sha256-…'` of an inline block, for the Content-Security-Policy.
fn csp_hash(block: &str) -> String {
    let digest = Sha256::digest(block.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// Renders the report as a self-contained HTML page.
pub fn render_html(report: &Report) -> String {
    // Bar widths go into the style block rather than `style=` attributes, so the CSP can
    // allow exactly one hashed style block and nothing else.
    let total = report.hosts.len();
    let count = |s: HostStatus| report.hosts.iter().filter(|h| h.status == s).count();
    let mut css = String::from(CSS);
    for status in STATUS_ORDER {
        let pct = if total == 0 {
            0.0
        } else {
            count(status) as f64 * 100.0 / total as f64
        };
        let _ = writeln!(css, ".bar .seg-{}{{width:{pct:.3}%}}", status_class(status));
    }
    let csp = format!(
        "default-src 'none'; style-src {}; script-src {}; base-uri 'none'; form-action 'none'",
        csp_hash(&css),
        csp_hash(SCRIPT)
    );

    let title = format!(
        "{} — {} of {}",
        report.playbook.name,
        report.command,
        human_time(&report.started_at)
    );
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"{} {}\">\n\
         <title>{}</title>\n<style>{css}</style>\n</head>\n<body>\n<main>\n",
        escape(&csp),
        escape(&report.tool.name),
        escape(&report.tool.version),
        escape(&title),
    );

    let _ = writeln!(
        out,
        "<header>\n<h1>Compliance report: {}</h1>\n<p class=\"sub\">{} · {} run of {}</p>\n</header>",
        escape(&report.playbook.name),
        escape(&report.playbook.description),
        escape(&report.command),
        escape(&human_time(&report.started_at)),
    );
    out.push_str(&metadata(report));
    out.push_str(&summary(report));
    if !report.promotions.is_empty() {
        out.push_str(&promotions_section(report));
    }
    out.push_str(&filter_bar(report));

    for status in STATUS_ORDER {
        let hosts: Vec<&HostReport> = report.hosts.iter().filter(|h| h.status == status).collect();
        if hosts.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "<section class=\"hosts {c}\" id=\"section-{c}\">\n<h2>{} <span class=\"badge\">{}</span></h2>\n<p class=\"explain\">{}</p>",
            status_title(status),
            hosts.len(),
            status_explanation(status),
            c = status_class(status),
        );
        for host in hosts {
            out.push_str(&host_block(host));
        }
        out.push_str("</section>\n");
    }

    if !report.domains.is_empty() {
        out.push_str(&domains_section(&report.domains));
    }

    let _ = writeln!(
        out,
        "<footer>Generated by {} {} from report.json (schema {}). Inventory: {}.</footer>\n</main>\n<script>{SCRIPT}</script>\n</body>\n</html>",
        escape(&report.tool.name),
        escape(&report.tool.version),
        report.schema_version,
        escape(&report.inventory.files.join(", ")),
    );
    out
}

fn metadata(report: &Report) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        (
            "Playbook",
            format!(
                "{} <span class=\"mono\">({})</span>",
                escape(&report.playbook.name),
                escape(&report.playbook.source)
            ),
        ),
        (
            "Playbook SHA-256",
            format!("<code>{}</code>", escape(&report.playbook.sha256)),
        ),
        (
            "Inventory",
            format!(
                "{} <br><code>sha256 {}</code>",
                escape(&report.inventory.files.join(", ")),
                escape(&report.inventory.sha256)
            ),
        ),
    ];
    if let Some(limit) = &report.limit {
        rows.push(("Limit", format!("<code>{}</code>", escape(limit))));
    }
    rows.extend([
        ("Command", escape(&report.command)),
        ("Operator", escape(&report.operator)),
        ("Started", escape(&human_time(&report.started_at))),
        ("Finished", escape(&human_time(&report.finished_at))),
        ("Duration", human_duration(report.duration_ms)),
        (
            "Exit code",
            format!("{} ({})", report.exit_code, exit_meaning(report.exit_code)),
        ),
        (
            "Tool",
            format!(
                "{} {}",
                escape(&report.tool.name),
                escape(&report.tool.version)
            ),
        ),
    ]);
    let mut out = String::from("<section id=\"run\">\n<h2>Run</h2>\n<dl class=\"meta\">\n");
    for (k, v) in rows {
        let _ = writeln!(out, "<dt>{k}</dt><dd>{v}</dd>");
    }
    out.push_str("</dl>\n</section>\n");
    out
}

fn summary(report: &Report) -> String {
    let total = report.hosts.len();
    let count = |s: HostStatus| report.hosts.iter().filter(|h| h.status == s).count();
    let mut out = String::from("<section id=\"summary\">\n<h2>Fleet summary</h2>\n");
    out.push_str("<div class=\"cards\">\n");
    let _ = writeln!(
        out,
        "<div class=\"card all\" id=\"count-hosts\"><div class=\"n\">{total}</div><div class=\"l\">hosts</div></div>"
    );
    for status in STATUS_ORDER {
        let n = count(status);
        // Not attempted only matters when a rollout stopped; hide a zero card for it.
        if status == HostStatus::NotAttempted && n == 0 {
            continue;
        }
        let _ = writeln!(
            out,
            "<div class=\"card {c}\" id=\"count-{c}\"><div class=\"n\">{n}</div><div class=\"l\">{}</div></div>",
            status_title(status).to_lowercase(),
            c = status_class(status),
        );
    }
    out.push_str("</div>\n");
    let compliant = count(HostStatus::Compliant);
    let label = format!("{compliant} of {total} hosts compliant");
    let _ = write!(
        out,
        "<div class=\"bar\" role=\"img\" aria-label=\"{label}\">"
    );
    for status in [
        HostStatus::Compliant,
        HostStatus::RestartPending,
        HostStatus::Drift,
        HostStatus::Failed,
        HostStatus::NotAttempted,
    ] {
        if count(status) > 0 {
            let _ = write!(
                out,
                "<span class=\"seg-{c} {c}\" title=\"{}: {}\"></span>",
                status_title(status),
                count(status),
                c = status_class(status)
            );
        }
    }
    let pct = if total == 0 {
        0.0
    } else {
        compliant as f64 * 100.0 / total as f64
    };
    let _ = writeln!(
        out,
        "</div>\n<p class=\"pct\" id=\"compliance\">{pct:.0}% compliant ({label})</p>\n</section>"
    );
    out
}

fn filter_bar(report: &Report) -> String {
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
    out.push_str(
        "<input id=\"q\" type=\"search\" placeholder=\"Filter hosts by name, cluster, address\" aria-label=\"Filter hosts\">\n</nav>\n",
    );
    out
}

/// "2 of 3 checks off" style tally for the host row.
fn tally(host: &HostReport) -> String {
    let controls_bad = host
        .controls
        .iter()
        .filter(|c| !matches!(c.verdict, Verdict::Compliant | Verdict::NotApplicable))
        .count();
    let probes_bad = host
        .probes
        .iter()
        .filter(|p| !matches!(p.verdict, ProbeVerdict::Pass | ProbeVerdict::NotApplicable))
        .count();
    let blocking = host.findings.iter().filter(|f| f.blocking).count();
    let mut parts = Vec::new();
    if !host.controls.is_empty() {
        parts.push(format!(
            "{controls_bad} of {} controls off",
            host.controls.len()
        ));
    }
    if !host.probes.is_empty() {
        parts.push(format!("{probes_bad} of {} probes off", host.probes.len()));
    }
    if blocking > 0 {
        parts.push(format!("{blocking} blocking finding(s)"));
    }
    parts.join(" · ")
}

/// One host: a summary row (always visible) and its details, open unless compliant.
fn host_block(host: &HostReport) -> String {
    let c = status_class(host.status);
    let open = !matches!(
        host.status,
        HostStatus::Compliant | HostStatus::NotAttempted
    );
    let search = [
        host.name.as_str(),
        host.cluster.as_str(),
        host.address.as_str(),
        host.carbonio_hostname.as_deref().unwrap_or(""),
    ]
    .join(" ")
    .to_lowercase();
    let mut facts = vec![
        format!("cluster {}", escape(&host.cluster)),
        format!("{}:{}", escape(&host.address), host.port),
    ];
    if let Some(h) = &host.carbonio_hostname {
        facts.push(escape(h));
    }
    if let Some(p) = host.platform {
        facts.push(
            match p {
                crate::carbonio::platform::Platform::Legacy => "zmcontrol",
                crate::carbonio::platform::Platform::Systemd => "systemd",
            }
            .to_string(),
        );
    }
    if let Some(v) = &host.version {
        // `zmcontrol -v` already says "Carbonio Release …" (or Zimbra); a bare version
        // gets the name.
        if v.starts_with("Carbonio") || v.starts_with("Zimbra") {
            facts.push(escape(v));
        } else {
            facts.push(format!("Carbonio {}", escape(v)));
        }
    }
    if !host.roles.is_empty() {
        facts.push(escape(&host.roles.join(", ")));
    }
    // Whether the running Postfix loaded master.cf: the files alone do not say.
    if let Some(r) = &host.running {
        facts.push(format!(
            "<span title=\"{}\">master.cf {}</span>",
            escape(&r.evidence),
            r.state.as_str()
        ));
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "<details class=\"host {c}\" id=\"host-{id}\" data-status=\"{c}\" data-search=\"{search}\"{open}>\n\
         <summary><span class=\"hname\">{name}</span><span class=\"badge\">{status}</span>\
         <span class=\"facts\">{facts}</span><span class=\"tally\">{tally}</span></summary>\n<div class=\"body\">",
        id = escape(&host.name),
        search = escape(&search),
        open = if open { " open" } else { "" },
        name = escape(&host.name),
        status = status_title(host.status),
        facts = facts.join(" · "),
        tally = escape(&tally(host)),
    );
    for section in [
        error_section(host),
        findings_section(host),
        checks_section(host),
    ]
    .into_iter()
    .flatten()
    {
        out.push_str(&section);
    }
    out.push_str("</div>\n</details>\n");
    out
}

fn error_section(host: &HostReport) -> Option<String> {
    let e = host.error.as_ref()?;
    let mut out = format!(
        "<div class=\"error\"><span class=\"kind\">{}</span><p>{}</p>",
        escape(e.kind.as_str()),
        escape(&e.message)
    );
    if !e.expected_fingerprints.is_empty() || e.offered_fingerprint.is_some() {
        out.push_str("<p class=\"mono\">");
        for fp in &e.expected_fingerprints {
            let _ = write!(out, "known_hosts expects {}<br>", escape(fp));
        }
        if let Some(fp) = &e.offered_fingerprint {
            let _ = write!(out, "server offered {}", escape(fp));
        }
        out.push_str("</p>");
    }
    out.push_str("</div>\n");
    Some(out)
}

fn finding_block(f: &Finding) -> String {
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

fn findings_section(host: &HostReport) -> Option<String> {
    if host.findings.is_empty() {
        return None;
    }
    // Blocking findings first: they explain why a change was (or would be) refused.
    let mut findings: Vec<&Finding> = host.findings.iter().collect();
    findings.sort_by_key(|f| !f.blocking);
    Some(findings.into_iter().map(finding_block).collect())
}

fn control_row(c: &ControlResult) -> String {
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
    let change = match (&c.before, &c.after) {
        (Some(b), Some(a)) => format!(
            "<span class=\"{}\">{} → {}</span>",
            if c.changed { "changed" } else { "" },
            escape(b),
            escape(a)
        ),
        (Some(b), None) => escape(b),
        _ => String::new(),
    };
    format!(
        "<tr class=\"{class}\"><td class=\"mono\">{}</td><td>{}<br><span class=\"evidence\">{} · {} · {}</span></td>\
         <td class=\"v\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{actual}</td><td class=\"mono\">{change}</td>\
         <td class=\"evidence\">{}</td></tr>\n",
        escape(&c.id),
        escape(&c.title),
        escape(&c.attr),
        escape(&c.scope),
        escape(&c.severity),
        verdict_str(c.verdict).to_string() + &waiver_badge(c.waiver.as_ref()),
        escape(&c.expected),
        escape(&c.evidence),
    )
}

/// `--waivers`: a badge under the verdict of a waived deviation (grey: accepted) or of
/// one whose waiver expired (red: it counts again), with the justification and source.
fn waiver_badge(w: Option<&crate::report::model::WaiverRef>) -> String {
    let Some(w) = w else {
        return String::new();
    };
    let (colour, label, when) = match w.expired {
        false => ("#6c757d", "waived", "until"),
        true => ("#c0392b", "waiver expired", "expired"),
    };
    format!(
        "<br><span class=\"badge waiver\" style=\"--c:{colour}\">{label}</span> \
         <span class=\"evidence\">{when} {}: {} ({})</span>",
        escape(&w.expires),
        escape(&w.justification),
        escape(&w.source)
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

fn checks_section(host: &HostReport) -> Option<String> {
    if host.controls.is_empty() && host.probes.is_empty() {
        return None;
    }
    let mut out = String::from(
        "<table class=\"checks\"><thead><tr><th>Check</th><th>Title</th><th>Verdict</th>\
         <th>Expected</th><th>Actual</th><th>Before → after</th><th>Evidence</th></tr></thead><tbody>\n",
    );
    for c in &host.controls {
        out.push_str(&control_row(c));
    }
    for p in &host.probes {
        out.push_str(&probe_row(p));
    }
    out.push_str("</tbody></table>\n");
    Some(out)
}

/// The domain authentication section: one table per cluster.
/// apply: which clusters got their global config (promotion) and which did not, and the
/// MTAs that hold it back.
fn promotions_section(report: &Report) -> String {
    let mut out = String::from(
        "<section id=\"promotions\">\n<h2>Promotion of the staged values</h2>\n\
         <p class=\"explain\">Apply stages the new values on each MTA's own server entry, \
         batch by batch, and writes the cluster's global config only once every MTA LDAP \
         lists passed its health gate (then the temporary entries are removed).</p>\n\
         <table class=\"checks\"><thead><tr><th>Cluster</th><th>State</th><th>Detail</th>\
         <th>Held by</th></tr></thead><tbody>\n",
    );
    for p in &report.promotions {
        let held: Vec<String> = p
            .held_by
            .iter()
            .map(|h| format!("{}: {}", escape(h.name()), escape(&h.reason)))
            .collect();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&p.cluster),
            escape(&p.state),
            escape(&p.detail),
            held.join("<br>")
        );
    }
    out.push_str("</tbody></table>\n</section>\n");
    out
}

fn domains_section(domains: &[DomainReport]) -> String {
    let mut out = String::from(
        "<section id=\"domains\">\n<h2>Domain authentication: SPF, DKIM, DMARC</h2>\n\
         <p class=\"explain\">For every domain a cluster hosts, the records that let \
         receivers reject mail forged in its name, as this machine's resolver sees them. \
         Forged senders are what cause backscatter in the first place.</p>\n",
    );
    for d in domains {
        let _ = writeln!(
            out,
            "<h3>Cluster {}</h3>\n<p class=\"facts\">domains read on {} · DNS servers: {}</p>",
            escape(&d.cluster),
            escape(d.read_on.as_deref().unwrap_or("(no node)")),
            escape(&d.resolver),
        );
        if let Some(e) = &d.error {
            let _ = writeln!(
                out,
                "<div class=\"error\"><span class=\"kind\">domains not read</span><p>{}</p></div>",
                escape(e)
            );
        }
        if d.domains.is_empty() {
            if d.error.is_none() {
                out.push_str("<p class=\"explain\">This cluster hosts no domain.</p>\n");
            }
            continue;
        }
        out.push_str(
            "<table class=\"checks domains\"><thead><tr><th>Domain</th><th>Check</th><th>Verdict</th>\
             <th>Findings</th><th>Records and notes</th></tr></thead><tbody>\n",
        );
        for p in &d.domains {
            for c in &p.checks {
                let class = match c.verdict {
                    ProbeVerdict::Pass => "ok",
                    ProbeVerdict::NotApplicable => "na",
                    ProbeVerdict::Fail | ProbeVerdict::Error => "bad",
                };
                let mut findings = String::new();
                if let Some(e) = &c.error {
                    let _ = write!(
                        findings,
                        "<li><span class=\"sev\">error</span> {}</li>",
                        escape(e)
                    );
                }
                for f in &c.findings {
                    let _ = write!(
                        findings,
                        "<li><span class=\"sev\">{}</span> {}</li>",
                        escape(&f.severity),
                        escape(&f.message)
                    );
                }
                if !findings.is_empty() {
                    findings = format!("<ul class=\"findings\">{findings}</ul>");
                }
                let details: Vec<String> = c
                    .evidence
                    .iter()
                    .map(|e| format!("<span class=\"mono\">{}</span>", escape(e)))
                    .chain(c.notes.iter().map(|n| escape(n)))
                    .collect();
                let _ = writeln!(
                    out,
                    "<tr class=\"{class}\"><td class=\"mono\">{}{}</td><td>{} <span class=\"evidence\">{} · {}</span></td>\
                     <td class=\"v\">{}</td><td>{findings}</td><td class=\"evidence\">{}</td></tr>",
                    escape(&p.domain),
                    if p.alias {
                        " <span class=\"evidence\">(alias)</span>"
                    } else {
                        ""
                    },
                    escape(&c.check.to_uppercase()),
                    escape(&c.id),
                    escape(&c.severity),
                    probe_verdict_str(c.verdict),
                    details.join("<br>"),
                );
            }
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</section>\n");
    out
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::*;
    use crate::report::sample::{SPAWN_USER_MESSAGE, sample_report};

    /// The sample plus hostile strings: markup and URLs that must stay inert text.
    fn hostile_report() -> Report {
        let mut report = sample_report();
        report.hosts[1].findings[1].hint =
            "see https://www.spamhaus.org/ and <script src=\"http://evil.example/x.js\"></script>"
                .to_string();
        report.operator = "o'brien & <ops>".to_string();
        report.domains[0].domains[1].checks[0].evidence.push(
            "acme-shop.example: v=spf1 <img src=\"http://evil.example/p.png\"> +all".to_string(),
        );
        report
    }

    /// Every tag (text between `<` and `>`) of the document. Text is escaped, so a raw
    /// `<` only ever starts a tag.
    fn tags(html: &str) -> Vec<&str> {
        html.split('<')
            .skip(1)
            .map(|chunk| &chunk[..chunk.find('>').expect("unclosed tag")])
            .collect()
    }

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn nothing_external_and_no_injected_markup() {
        let html = render_html(&hostile_report());
        for tag in tags(&html) {
            let lower = tag.to_lowercase();
            for bad in ["http:", "https:", "src=", "href=", "url(", "@import", "//"] {
                assert!(!lower.contains(bad), "tag `<{tag}>` contains {bad}");
            }
        }
        // The only script and style elements are ours, with no references in them.
        assert_eq!(html.matches("<script").count(), 1);
        assert_eq!(html.matches("<style").count(), 1);
        assert!(!CSS.contains("http") && !CSS.contains("url(") && !SCRIPT.contains("http"));
        // The hostile text is there, escaped.
        assert!(html.contains(
            "see https://www.spamhaus.org/ and &lt;script src=&quot;http://evil.example/x.js&quot;&gt;&lt;/script&gt;"
        ));
        assert!(html.contains("o&#39;brien &amp; &lt;ops&gt;"));
    }

    #[test]
    fn csp_hashes_match_the_inline_blocks() {
        let html = render_html(&sample_report());
        let style = &html[html.find("<style>").unwrap() + 7..html.find("</style>").unwrap()];
        let script = &html[html.find("<script>").unwrap() + 8..html.find("</script>").unwrap()];
        assert!(html.contains(&escape(&format!("style-src {}", csp_hash(style)))));
        assert!(html.contains(&escape(&format!("script-src {}", csp_hash(script)))));
        assert!(html.contains("default-src &#39;none&#39;"));
    }

    #[test]
    fn sections_come_worst_first_and_bar_widths_add_up() {
        let html = render_html(&sample_report());
        let pos = |s: &str| html.find(s).unwrap_or_else(|| panic!("missing {s}"));
        assert!(pos("id=\"section-failed\"") < pos("id=\"section-drift\""));
        assert!(pos("id=\"section-drift\"") < pos("id=\"section-restart-pending\""));
        assert!(pos("id=\"section-restart-pending\"") < pos("id=\"section-compliant\""));
        assert!(!html.contains("id=\"section-not-attempted\""));
        assert!(html.contains(".bar .seg-compliant{width:33.333%}"));
        assert!(html.contains(".bar .seg-failed{width:33.333%}"));
        assert!(html.contains(".bar .seg-drift{width:16.667%}"));
        assert!(html.contains("33% compliant (2 of 6 hosts compliant)"));
        // Blocking finding before the other one on mail2.
        assert!(pos("PRE-POLICY-SPAWN-USER") < pos("INFO-DNSBL"));
        // Apply data shows when present.
        assert!(html.contains("<span class=\"changed\">FALSE → TRUE</span>"));
        assert!(html.contains("global [check_policy_service unix:private/policy], this server [reject_invalid_helo_hostname]"));
        assert!(
            html.contains("known_hosts expects SHA256:n1X0nCk9gq7rB0l4dYHc8sWkZ0uVZ4v3jXq0m7Hc2Qs")
        );
    }

    #[test]
    fn domain_section_follows_the_hosts_with_exact_findings() {
        let html = render_html(&hostile_report());
        let pos = |s: &str| html.find(s).unwrap_or_else(|| panic!("missing {s}"));
        assert!(pos("id=\"section-compliant\"") < pos("<section id=\"domains\">"));
        assert!(html.contains("<h3>Cluster acme</h3>"));
        assert!(html.contains("domains read on mail1.acme.example · DNS servers: 127.0.0.1:5353"));
        assert!(html.contains(
            "<li><span class=\"sev\">medium</span> SPF for acme-shop.example ends in `+all`: any host may send as this domain</li>"
        ));
        assert!(html.contains(
            "<li><span class=\"sev\">error</span> DNS lookup of TXT `s1._domainkey.acme-shop.example` failed: request timed out</li>"
        ));
        assert!(html.contains("acme.test <span class=\"evidence\">(alias)</span>"));
        assert!(html.contains("v=spf1 &lt;img src=&quot;http://evil.example/p.png&quot;&gt; +all"));
        let mut none = sample_report();
        none.domains.clear();
        assert!(!render_html(&none).contains("id=\"domains\""));
    }

    #[test]
    fn empty_fleet_renders() {
        let mut report = sample_report();
        report.hosts.clear();
        let html = render_html(&report);
        assert!(html.contains("0% compliant (0 of 0 hosts compliant)"));
        assert!(!html.contains("<details"));
    }

    #[test]
    fn human_formats() {
        assert_eq!(human_duration(850), "850 ms");
        assert_eq!(human_duration(12_340), "12.3 s");
        assert_eq!(human_duration(83_400), "1 min 23 s");
        assert_eq!(human_duration(7_500_000), "2 h 5 min");
        assert_eq!(
            human_time("2026-11-27T02:01:23.400Z"),
            "2026-11-27 02:01:23 UTC"
        );
        assert_eq!(human_time("not a time"), "not a time");
    }

    proptest::proptest! {
        /// Whatever the strings hold, they add no tag: the page's structure is the same as
        /// with a harmless value.
        #[test]
        fn arbitrary_text_adds_no_markup(text in proptest::prelude::any::<String>()) {
            let with = |value: &str| {
                let mut report = sample_report();
                report.hosts[1].name = value.to_string();
                report.hosts[1].findings[0].message = value.to_string();
                report.hosts[1].controls[0].actual = value.to_string();
                report.playbook.name = value.to_string();
                render_html(&report)
            };
            let html = with(&text);
            proptest::prop_assert_eq!(tags(&html).len(), tags(&with("x")).len());
        }
    }

    fn find_chromium() -> Option<PathBuf> {
        let candidates = ["chromium", "chromium-browser", "google-chrome", "chrome"];
        let path = std::env::var_os("PATH")?;
        candidates.iter().find_map(|name| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    }

    /// Runs headless Chromium on `url` with `extra` arguments; returns (stdout, stderr).
    fn chromium(bin: &Path, profile: &Path, url: &str, extra: &[&str]) -> (String, String) {
        let out = Command::new("timeout")
            .arg("120")
            .arg(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(url)
            .output()
            .expect("run chromium");
        assert!(out.status.success(), "chromium failed: {out:?}");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The page in a real browser: DOM after scripts ran, and a screenshot.
    #[test]
    fn renders_in_headless_chromium() {
        let found = find_chromium();
        let missing: Vec<String> = found
            .is_none()
            .then(|| "chromium is not on PATH (apt-get install -y chromium)".to_string())
            .into_iter()
            .collect();
        let (true, Some(bin)) = (
            crate::sim::prereq::require_that("renders_in_headless_chromium", &missing),
            found,
        ) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("report.html");
        std::fs::write(&page, render_html(&hostile_report())).unwrap();
        let profile = dir.path().join("profile");

        let url = format!("file://{}", page.display());
        let (dom, stderr) = chromium(&bin, &profile, &url, &["--dump-dom"]);
        for host in ["mail1", "mail2", "mail3", "mail4", "mail5", "store1"] {
            assert!(
                dom.contains(&format!("<span class=\"hname\">{host}</span>")),
                "{host}"
            );
        }
        assert!(dom.contains(SPAWN_USER_MESSAGE), "blocking finding message");
        assert!(dom.contains("33% compliant (2 of 6 hosts compliant)"));
        assert!(dom.contains("<div class=\"n\">2</div><div class=\"l\">failed</div>"));
        assert!(dom.contains("<div class=\"n\">6</div><div class=\"l\">hosts</div>"));
        // The filter script ran (CSP allowed it by hash) and un-hid the filter bar.
        assert!(
            dom.contains("<nav id=\"filter\">"),
            "filter bar still hidden"
        );
        // The injected markup stayed text.
        assert!(!dom.contains("<script src"));
        assert!(dom.contains("&lt;script src=\"http://evil.example/x.js\"&gt;"));
        assert!(
            !stderr.contains("Content Security Policy"),
            "CSP blocked an inline block:\n{stderr}"
        );

        // `#drift` preselects the drift filter: only mail2 and its section stay visible.
        let (filtered, _) = chromium(&bin, &profile, &format!("{url}#drift"), &["--dump-dom"]);
        let opening_tag = |dom: &str, id: &str| -> String {
            let start = dom.find(id).unwrap_or_else(|| panic!("{id} missing"));
            let start = dom[..start].rfind('<').unwrap();
            dom[start..start + dom[start..].find('>').unwrap()].to_string()
        };
        for (id, hidden) in [
            ("id=\"host-mail2\"", false),
            ("id=\"section-drift\"", false),
            ("id=\"host-mail4\"", true),
            ("id=\"host-mail1\"", true),
            ("id=\"section-failed\"", true),
            ("id=\"section-compliant\"", true),
        ] {
            let tag = opening_tag(&filtered, id);
            assert_eq!(tag.contains(" hidden"), hidden, "{tag}");
            assert!(
                !opening_tag(&dom, id).contains(" hidden"),
                "unfiltered: {id}"
            );
        }
        assert!(filtered.contains("data-filter=\"drift\" aria-pressed=\"true\""));

        let shot = dir.path().join("shot.png");
        let shot_arg = format!("--screenshot={}", shot.display());
        chromium(
            &bin,
            &profile,
            &url,
            &[&shot_arg, "--window-size=1280,2000"],
        );
        let png = std::fs::read(&shot).expect("screenshot written");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(png.len() > 10_000, "screenshot only {} bytes", png.len());
        // For a human look: CARBONIO_FLEET_KEEP_RENDERED=DIR keeps the page and the shot.
        if let Some(keep) = std::env::var_os("CARBONIO_FLEET_KEEP_RENDERED") {
            let keep = PathBuf::from(keep);
            std::fs::copy(&page, keep.join("report.html")).unwrap();
            std::fs::copy(&shot, keep.join("shot.png")).unwrap();
        }
    }
}
