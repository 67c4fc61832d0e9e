//! The customer-facing `report.html`: one self-contained file (inline CSS and a small
//! inline filter script, nothing fetched — a Content-Security-Policy with hashes of the
//! two inline blocks makes the browser enforce that), built to read at 1,000 hosts: the
//! run's metadata and a fleet summary, then for apply the rollout timeline and the
//! promotions (`apply`), the check × cluster (or × customer) matrix, what to fix first,
//! the hosts grouped by identical state, collapsed (`fleet`), the domains' SPF, DKIM
//! and DMARC (`domains`) and the playbook's controls with rationale and remediation.
//!
//! The page is built with maud's `html!` templates, which escape every value spliced into
//! text or an attribute (`&`, `<`, `>`, `"`; attributes are always double-quoted, so a `'`
//! needs no escaping); the only unescaped content is the inline CSS and script, our
//! constants (`PreEscaped`, each use says why). The only links are in-page anchors.

mod apply;
mod domains;
mod fleet;

use std::fmt::Write as _;

use base64::Engine as _;
use jiff::Timestamp;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use sha2::{Digest as _, Sha256};

use super::labels::{STATUS_ORDER, status_title};
use super::model::{HostStatus, Report};
use crate::exit::ExitCode;

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
    match ExitCode::from_code(code) {
        Some(ExitCode::Ok) => "every targeted host compliant",
        Some(ExitCode::Usage) => "usage, inventory or playbook error",
        Some(ExitCode::Drift) => "drift: at least one host non-compliant",
        Some(ExitCode::HostFailed) => "at least one host could not be audited",
        Some(ExitCode::Aborted) => "rollout aborted",
        Some(ExitCode::Interrupted) => "interrupted",
        None => "unknown",
    }
}

/// `s` after a count other than one.
fn plural<T: PartialEq + From<u8>>(n: T) -> &'static str {
    if n == T::from(1) { "" } else { "s" }
}

/// A table's head: one row of column titles.
fn table_head(columns: &[&str]) -> Markup {
    html! { thead { tr { @for c in columns { th { (c) } } } } }
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
.waived{--c:var(--not-attempted)}.failed{--c:var(--failed)}.drift{--c:var(--drift)}.restart-pending{--c:var(--restart-pending)}.compliant{--c:var(--compliant)}.not-attempted{--c:var(--not-attempted)}.all{--c:var(--ink)}
.bar{display:flex;height:22px;border-radius:6px;overflow:hidden;background:var(--bg);border:1px solid var(--line)}
.bar span{display:block;height:100%;background:var(--c)}
.pct{margin:6px 0 0;color:var(--muted)}
nav#filter{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:24px 0 0}
nav#filter button{font:inherit;border:1px solid var(--line);background:#fff;border-radius:16px;padding:3px 12px;cursor:pointer;color:var(--c)}
nav#filter button[aria-pressed=true]{background:var(--c);color:#fff;border-color:var(--c)}
nav#filter input{font:inherit;padding:3px 10px;border:1px solid var(--line);border-radius:16px;margin-left:auto;min-width:220px}
.explain{color:var(--muted);margin:0 0 10px}
.facts{color:var(--muted);font-size:13px}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600;color:#fff;background:var(--c);white-space:nowrap}
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
ul.findings{margin:0;padding-left:18px}
.sev{font-size:12px;font-weight:700;text-transform:uppercase;color:var(--drift)}
.evidence{color:var(--muted);font-size:12px}
.changed{color:var(--drift);font-weight:600}
footer{margin-top:40px;color:var(--muted);font-size:13px}
a{color:inherit}
.scroll{overflow-x:auto}
table.matrix{border-collapse:collapse;font-size:13px;margin-top:6px}
table.matrix th,table.matrix td{border:1px solid var(--line);padding:3px 8px;text-align:right;white-space:nowrap}
table.matrix th:first-child{text-align:left;max-width:260px;overflow:hidden;text-overflow:ellipsis}
table.matrix thead th{background:var(--bg)}
table.matrix tr.total th,table.matrix tr.total td{font-weight:700;border-bottom:2px solid var(--ink)}
table.matrix td.b{background:#ffebe9;color:var(--failed);font-weight:700}
table.matrix td.g{color:var(--compliant)}
table.matrix td.z{color:var(--muted)}
table.matrix tr.good th{color:var(--muted);font-weight:400}
ol.top{padding-left:24px}
ol.top li{margin:8px 0;padding:6px 10px;border:1px solid var(--line);border-radius:6px}
ol.top li.blocking{border:2px solid var(--failed);background:#fff5f5}
ol.top p{margin:4px 0}
.fix{background:var(--bg);padding:4px 8px;border-radius:4px}
.sev.s-critical,.sev.s-high{color:var(--failed)}
details.grp{border:1px solid var(--line);border-left:6px solid var(--c);border-radius:8px;margin:8px 0}
details.grp>summary,details.batch>summary,details.dom>summary{cursor:pointer;padding:8px 12px}
.gt{font-weight:600}
ul.cl{margin:6px 0;padding-left:18px}
ul.cl li{margin:3px 0}
ul.cl .n,.lbl{color:var(--muted)}
.h{white-space:nowrap}
.h:target{background:#fff8c5;outline:2px solid #d4a72c}
details.batch,details.dom{border:1px solid var(--line);border-radius:8px;margin:8px 0}
details.batch table,details.dom table,details.dom p{margin:0 12px 10px;width:calc(100% - 24px)}
.ok{color:var(--compliant)}.bad{color:var(--failed);font-weight:600}
ul.gate{margin:2px 0;padding-left:16px;font-size:13px}
pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:12px;background:var(--bg);padding:4px 6px;margin:2px 0}
table.catalog td{font-size:13px}
@media print{nav#filter{display:none}details{break-inside:avoid}}
"#;

/// Shows the filter bar (it is useless without scripting) and filters hosts by status
/// button and by a search box; `report.html#drift` opens the page filtered, so a link can
/// point a customer at what needs doing. No `<` in here: tests scan the file for tags.
const SCRIPT: &str = r#"
(function(){
var nav=document.getElementById('filter');nav.hidden=false;
var groups=Array.prototype.slice.call(document.querySelectorAll('details.grp'));
var sections=Array.prototype.slice.call(document.querySelectorAll('section.hosts'));
var state='all',q='';
function has(el,q){return el.getAttribute('data-s').indexOf(q)!==-1;}
function apply(){
groups.forEach(function(g){
var show=state==='all'||g.dataset.status===state;
var whole=q===''||g.dataset.search.indexOf(q)!==-1;
var found=false;
g.querySelectorAll('ul.cl>li').forEach(function(li){
var line=whole||has(li,q);var any=false;
li.querySelectorAll('.h').forEach(function(h){var m=line||has(h,q);h.hidden=!m;any=any||m;});
li.hidden=!(line||any);found=found||line||any;});
if(!g.querySelector('ul.cl>li')){found=whole;}
g.hidden=!(show&&found);
if(q!==''&&!whole&&found&&show){g.open=true;}});
sections.forEach(function(s){s.hidden=!s.querySelector('details.grp:not([hidden])');});
}
nav.addEventListener('click',function(e){
var b=e.target.closest('button');if(!b){return;}
state=b.dataset.filter;
nav.querySelectorAll('button').forEach(function(x){x.setAttribute('aria-pressed',x===b?'true':'false');});
apply();});
var box=document.getElementById('q');
box.addEventListener('input',function(e){q=e.target.value.trim().toLowerCase();apply();});
function reveal(){
var h=decodeURIComponent(location.hash.slice(1));
if(h.indexOf('q=')===0){box.value=h.slice(2);q=box.value.toLowerCase();apply();return;}
nav.querySelectorAll('button').forEach(function(x){if(x.dataset.filter===h){x.click();}});
var t=h&&document.getElementById(h);
for(var d=t&&t.closest('details');d;d=d.parentElement.closest('details')){d.open=true;}
if(t){t.scrollIntoView();}
}
window.addEventListener('hashchange',reveal);reveal();
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
        "{}{} — {} of {}",
        report.playbook.name,
        report
            .covers
            .as_ref()
            .map(|c| format!(" — group {}", c.group))
            .unwrap_or_default(),
        report.command,
        human_time(&report.started_at)
    );
    html! {
        (DOCTYPE) "\n"
        html lang="en" {
            "\n"
            head {
                "\n"
                meta charset="utf-8"; "\n"
                meta http-equiv="Content-Security-Policy" content=(csp); "\n"
                meta name="viewport" content="width=device-width, initial-scale=1"; "\n"
                meta name="generator" content={ (report.tool.name) " " (report.tool.version) }; "\n"
                title { (title) } "\n"
                // Our constant CSS plus the computed bar widths (numbers and status
                // names): no report text. Its bytes must stay exactly as hashed into the
                // CSP above, and escaping would change them (`"`, `>` in selectors).
                style { (PreEscaped(&css)) } "\n"
            }
            "\n"
            body {
                "\n"
                main {
                    "\n"
                    header {
                        "\n"
                        h1 { "Compliance report: " (report.playbook.name) } "\n"
                        p class="sub" {
                            (report.playbook.description) " · " (report.command) " run of "
                            (human_time(&report.started_at))
                        }
                        "\n"
                    }
                    "\n"
                    (metadata(report))
                    (summary(report))
                    (apply::timeline_section(report))
                    (apply::promotions_section(report))
                    (fleet::matrix_section(report))
                    (fleet::top_findings_section(report))
                    (fleet::filter_bar(report))
                    (fleet::host_sections(report))
                    (domains::domains_section(&report.domains))
                    (fleet::checks_section(report))
                    footer {
                        "Generated by " (report.tool.name) " " (report.tool.version)
                        " from report.json (schema " (report.schema_version) "). Inventory: "
                        (report.inventory.files.join(", ")) "."
                    }
                    "\n"
                }
                "\n"
                // Our constant script, hashed into the CSP; escaping would break it
                // (`'`, `&&`) and change its hash.
                script { (PreEscaped(SCRIPT)) } "\n"
            }
            "\n"
        }
        "\n"
    }
    .into_string()
}

fn metadata(report: &Report) -> Markup {
    let mut rows: Vec<(&str, Markup)> = vec![
        (
            "Playbook",
            html! {
                (report.playbook.name) " "
                span class="mono" { "(" (report.playbook.source) ")" }
            },
        ),
        (
            "Playbook SHA-256",
            html! { code { (report.playbook.sha256) } },
        ),
        (
            "Inventory",
            html! {
                (report.inventory.files.join(", ")) " " br;
                code { "sha256 " (report.inventory.sha256) }
            },
        ),
    ];
    if let Some(c) = &report.covers {
        rows.push((
            "Covers",
            html! {
                "inventory group " b { (c.group) } ": " (report.hosts.len()) " of the run's "
                (c.fleet_hosts) " hosts (a " code { "--split-by group" } " report)"
            },
        ));
    }
    if let Some(limit) = &report.limit {
        rows.push(("Limit", html! { code { (limit) } }));
    }
    if !report.labels.is_empty() {
        rows.push(("Labels", html! { (report.labels.join(", ")) }));
    }
    rows.extend([
        ("Command", html! { (report.command) }),
        ("Operator", html! { (report.operator) }),
        ("Started", html! { (human_time(&report.started_at)) }),
        ("Finished", html! { (human_time(&report.finished_at)) }),
        ("Duration", html! { (human_duration(report.duration_ms)) }),
        (
            "Exit code",
            html! { (report.exit_code) " (" (exit_meaning(report.exit_code)) ")" },
        ),
        (
            "Tool",
            html! { (report.tool.name) " " (report.tool.version) },
        ),
    ]);
    html! {
        section id="run" {
            "\n" h2 { "Run" } "\n"
            dl class="meta" {
                "\n"
                @for (k, v) in &rows {
                    dt { (k) } dd { (v) } "\n"
                }
            }
            "\n"
        }
        "\n"
    }
}

fn summary(report: &Report) -> Markup {
    let total = report.hosts.len();
    let count = |s: HostStatus| report.hosts.iter().filter(|h| h.status == s).count();
    let compliant = count(HostStatus::Compliant);
    let label = format!("{compliant} of {total} hosts compliant");
    let pct = if total == 0 {
        0.0
    } else {
        compliant as f64 * 100.0 / total as f64
    };
    html! {
        section id="summary" {
            "\n" h2 { "Fleet summary" } "\n"
            div class="cards" {
                "\n"
                div class="card all" id="count-hosts" {
                    div class="n" { (total) } div class="l" { "hosts" }
                }
                "\n"
                @for status in STATUS_ORDER {
                    // Not attempted only matters when a rollout stopped; hide a zero card for it.
                    @if status != HostStatus::NotAttempted || count(status) > 0 {
                        @let c = status_class(status);
                        div class={ "card " (c) } id={ "count-" (c) } {
                            div class="n" { (count(status)) }
                            div class="l" { (status_title(status).to_lowercase()) }
                        }
                        "\n"
                    }
                }
            }
            "\n"
            div class="bar" role="img" aria-label=(label) {
                @for status in [
                    HostStatus::Compliant,
                    HostStatus::RestartPending,
                    HostStatus::Drift,
                    HostStatus::Failed,
                    HostStatus::NotAttempted,
                ] {
                    @if count(status) > 0 {
                        span class={ "seg-" (status_class(status)) " " (status_class(status)) }
                            title={ (status_title(status)) ": " (count(status)) } {}
                    }
                }
            }
            "\n"
            p class="pct" id="compliance" { (format!("{pct:.0}")) "% compliant (" (label) ")" }
            "\n"
        }
        "\n"
    }
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

    /// Every attribute of every tag, as `(name, value)`, asserting that each value is
    /// double-quoted: inside `"…"` a `'` is plain text, so maud need not escape it.
    fn attributes(tag: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut rest = tag.split_once(char::is_whitespace).map_or("", |(_, r)| r);
        while let Some(eq) = rest.find('=') {
            let name = rest[..eq]
                .split_whitespace()
                .last()
                .unwrap_or("")
                .to_string();
            let after = &rest[eq + 1..];
            assert!(
                after.starts_with('"'),
                "unquoted value of {name} in <{tag}>"
            );
            let close = after[1..].find('"').expect("closing quote") + 1;
            assert!(
                !rest[..eq].contains(['"', '\'', '<']),
                "stray quote in <{tag}>"
            );
            out.push((name, after[1..close].to_string()));
            rest = &after[close + 1..];
        }
        out
    }

    /// A host name and a check title that try to close their attribute and open a tag
    /// stay inside the attribute: the page has the same tags and attributes as with a
    /// harmless name, and the values read back whole.
    #[test]
    fn hostile_values_stay_inside_their_attribute() {
        let breakout = "mail2\"><script>alert('x')</script><b a='";
        let with = |name: &str, title: &str| {
            let mut report = sample_report();
            report.hosts[1].name = name.to_string();
            report.checks[0].title = title.to_string();
            render_html(&report)
        };
        let html = with(breakout, "policy\" onmouseover=\"alert(1)");
        let plain = with("mail2", "policy");
        let shape = |html: &str| -> Vec<Vec<String>> {
            tags(html)
                .iter()
                .map(|tag| attributes(tag).into_iter().map(|(name, _)| name).collect())
                .collect()
        };
        assert_eq!(shape(&html), shape(&plain));
        assert!(html.contains(
            "id=\"host-mail2&quot;&gt;&lt;script&gt;alert('x')&lt;/script&gt;&lt;b a='\""
        ));
        assert!(html.contains("title=\"policy&quot; onmouseover=&quot;alert(1)\""));
        assert!(!html.contains("<script>alert") && !html.contains("<b a="));
        let titles: Vec<String> = tags(&html)
            .iter()
            .flat_map(|tag| attributes(tag))
            .filter(|(name, _)| name == "title")
            .map(|(_, value)| value)
            .collect();
        assert!(titles.contains(&"policy&quot; onmouseover=&quot;alert(1)".to_string()));
    }

    /// A time that is not RFC 3339 is shown as it came, and escaped like any other text
    /// (the batch window in a summary and the restart's times).
    #[test]
    fn unparsed_times_are_escaped_too() {
        let mut report = applied_report();
        let hostile = "<img src=x>";
        for h in &mut report.hosts {
            if let Some(r) = h.apply.as_mut().and_then(|a| a.restart.as_mut()) {
                r.started_at = hostile.to_string();
            }
        }
        let html = render_html(&report);
        assert!(!html.contains(hostile));
        assert!(html.contains("every gate passed · &lt;img src=x&gt;–02:01:10 UTC"));
    }

    #[test]
    fn nothing_external_and_no_injected_markup() {
        let html = render_html(&hostile_report());
        for tag in tags(&html) {
            let lower = tag.to_lowercase();
            // In-page anchors are the only links.
            let lower = lower.replace("href=\"#", "");
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
        // `'` is left as is: it is inert in text and inside the double-quoted attributes.
        assert!(html.contains("<dt>Operator</dt><dd>o'brien &amp; &lt;ops&gt;</dd>"));
    }

    #[test]
    fn csp_hashes_match_the_inline_blocks() {
        let html = render_html(&sample_report());
        let style = &html[html.find("<style>").unwrap() + 7..html.find("</style>").unwrap()];
        let script = &html[html.find("<script>").unwrap() + 8..html.find("</script>").unwrap()];
        assert!(html.contains(&format!("style-src {};", csp_hash(style))));
        assert!(html.contains(&format!("script-src {};", csp_hash(script))));
        assert!(html.contains("content=\"default-src 'none'; style-src 'sha256-"));
    }

    /// The text of the element whose opening tag contains `marker`, up to `end`.
    fn element<'a>(html: &'a str, marker: &str, end: &str) -> &'a str {
        let start = html
            .find(marker)
            .unwrap_or_else(|| panic!("missing {marker}"));
        let start = html[..start].rfind('<').unwrap();
        let len = html[start..]
            .find(end)
            .unwrap_or_else(|| panic!("no {end} after {marker}"));
        &html[start..start + len]
    }

    #[test]
    fn sections_come_worst_first_and_bar_widths_add_up() {
        let html = render_html(&sample_report());
        let pos = |s: &str| html.find(s).unwrap_or_else(|| panic!("missing {s}"));
        assert!(pos("id=\"matrix\"") < pos("id=\"top\""));
        assert!(pos("id=\"top\"") < pos("id=\"section-failed\""));
        assert!(pos("id=\"section-failed\"") < pos("id=\"section-drift\""));
        assert!(pos("id=\"section-drift\"") < pos("id=\"section-restart-pending\""));
        assert!(pos("id=\"section-restart-pending\"") < pos("id=\"section-compliant\""));
        assert!(pos("id=\"section-compliant\"") < pos("<section id=\"domains\">"));
        assert!(pos("<section id=\"domains\">") < pos("<section id=\"checks\">"));
        assert!(!html.contains("id=\"section-not-attempted\""));
        assert!(!html.contains("id=\"rollout\""), "a check has no rollout");
        assert!(html.contains(".bar .seg-compliant{width:33.333%}"));
        assert!(html.contains(".bar .seg-failed{width:33.333%}"));
        assert!(html.contains(".bar .seg-drift{width:16.667%}"));
        assert!(html.contains("33% compliant (2 of 6 hosts compliant)"));
    }

    #[test]
    fn hosts_in_the_same_state_share_one_collapsed_group_with_only_failing_rows() {
        let html = render_html(&sample_report());
        // mail1 and store1 are both compliant in cluster eu-1: one group, closed.
        let compliant = element(&html, "class=\"grp compliant\"", "</details>");
        assert!(
            compliant.contains("compliant on 2 hosts of cluster eu-1"),
            "{compliant}"
        );
        assert!(!compliant.starts_with("<details class=\"grp compliant\" open"));
        assert!(
            compliant.contains("id=\"host-mail1\"") && compliant.contains("id=\"host-store1\"")
        );
        assert!(!compliant.contains("<table"), "nothing failing, no rows");
        // Hover facts of a host: address, Carbonio name, version.
        assert!(compliant.contains("title=\"203.0.113.1:22 · mail1.acme.example · 25.9.0 · mta\""));
        // The label value shows on the cluster line.
        assert!(compliant.contains("<span class=\"lbl\">ACME Corp</span>"));

        // mail2's group: only its failing rows (BS-01, masked BS-02, EFF-01), blocking
        // finding first.
        let drift = element(&html, "class=\"grp drift\"", "</details>");
        assert!(drift.contains("<span class=\"gt\">BS-01 FALSE · BS-02 [reject_invalid_helo_hostname] (masked … · EFF-01 fail · INFO-DNSBL · +1 more on 1 host of cluster eu-1</span>"), "{drift}");
        assert_eq!(drift.matches("<tr class=\"bad\">").count(), 3);
        assert!(!drift.contains("<tr class=\"ok\">"));
        assert!(drift.contains("global [check_policy_service unix:private/policy], this server [reject_invalid_helo_hostname]"));
        assert!(
            drift
                .find("<span class=\"fid\">PRE-POLICY-SPAWN-USER")
                .unwrap()
                < drift.find("<span class=\"fid\">INFO-DNSBL").unwrap()
        );

        // Failed hosts: one group per error kind, each host with its own message.
        let failed = element(&html, "class=\"grp failed\"", "</details>");
        assert!(
            failed.contains("hostkey on 1 host of cluster eu-2"),
            "{failed}"
        );
        assert!(
            failed
                .contains("known_hosts expects SHA256:n1X0nCk9gq7rB0l4dYHc8sWkZ0uVZ4v3jXq0m7Hc2Qs")
        );
        assert!(html.contains("unreachable on 1 host of cluster eu-2"));
        assert!(html.contains("connection timed out after 10s"));
    }

    #[test]
    fn matrix_and_top_findings_lead_with_counts_and_fixes() {
        let mut report = sample_report();
        report.labels.clear();
        let html = render_html(&report);
        let matrix = element(&html, "id=\"matrix\"", "</section>");
        assert!(matrix.contains("<h2>Checks by cluster</h2>"));
        assert!(matrix.contains("<th>Cluster</th><th>hosts</th><th>not audited</th><th title=\"Postfix policy daemon enabled\">BS-01</th>"));
        // All hosts: BS-01 off on mail2 of the 4 audited hosts it applies to.
        assert!(matrix.contains("<tr class=\"total\"><th>all hosts</th><td>6</td><td class=\"b\">2</td><td class=\"b\">1/4</td>"), "{matrix}");
        // eu-2 (two failed hosts) and eu-1 (drift) both have problems.
        assert!(
            matrix
                .contains("<th>eu-1</th><td>4</td><td class=\"z\">0</td><td class=\"b\">1/4</td>")
        );
        assert!(
            matrix.contains("<th>eu-2</th><td>2</td><td class=\"b\">2</td><td class=\"z\">–</td>")
        );

        let top = element(&html, "id=\"top\"", "</section>");
        let first = element(top, "<li", "</li>");
        assert!(first.contains("class=\"blocking\""));
        assert!(first.contains("PRE-POLICY-SPAWN-USER"));
        assert!(first.contains(
            "<b>Fix:</b> create the user or change the spawn line before enabling BS-01"
        ));
        // A control links to its rationale and fix, and names its hosts.
        assert!(top.contains("<a href=\"#check-BS-01\">BS-01</a></b> is FALSE <span class=\"facts\">on 1 host in 1 cluster: mail2</span>"), "{top}");
        assert!(top.contains("<b>Fix:</b> zmprov mcf zimbraMtaEnableSmtpdPolicyd TRUE"));
        let checks = element(&html, "id=\"checks\"", "</section>");
        assert!(checks.contains("id=\"check-BS-01\""));
        assert!(checks.contains("Why BS-01 matters."));

        // With a label, the matrix is by its values, and the search box offers it.
        let html = render_html(&sample_report());
        assert!(html.contains("<h2>Checks by customer</h2>"));
        assert!(html.contains("<th>ACME Corp</th><td>6</td>"));
        assert!(html.contains("placeholder=\"Find a host, cluster, customer or check\""));
    }

    #[test]
    fn a_group_report_says_which_group_it_covers() {
        let mut report = sample_report();
        report.covers = Some(crate::report::model::Covers {
            group: "acme".into(),
            fleet_hosts: 1000,
        });
        let html = render_html(&report);
        assert!(
            html.contains(
                "<dt>Covers</dt><dd>inventory group <b>acme</b>: 6 of the run's 1000 hosts"
            )
        );
        assert!(html.contains("<title>backscatter-hardening — group acme — check of"));
    }

    /// The sample as an apply: mail3 in the canary batch, passed; mail1 in batch 2,
    /// failed its gate and was rolled back.
    fn applied_report() -> Report {
        use crate::report::model::{
            CommandRecord, GateCheck, GateRecord, HostApply, RestartRecord, RollbackRecord,
        };
        let mut report = sample_report();
        report.command = "apply".into();
        let gate = |passed: bool| GateRecord {
            passed,
            finished_at: "2026-11-27T02:01:10Z".into(),
            attempts: if passed { 1 } else { 5 },
            checks: vec![
                GateCheck {
                    name: "policy".into(),
                    ok: passed,
                    detail: if passed {
                        "zmpostfixpolicyd answered action=dunno".into()
                    } else {
                        "RCPT TO answered 451 4.3.5 Server configuration problem".into()
                    },
                },
                GateCheck {
                    name: "services".into(),
                    ok: true,
                    detail: "mta Running".into(),
                },
            ],
            vantage: "the tool's machine".into(),
            smtp_transcript: vec!["220 mail3 ESMTP".into(), "250 2.1.0 Ok".into()],
        };
        let apply = |batch: usize, passed: bool| {
            HostApply {
            commands: vec![CommandRecord {
                purpose: "stage on the server entry".into(),
                command: "su - zextras -c 'zmprov ms mail3.acme.example zimbraMtaEnableSmtpdPolicyd TRUE'".into(),
                exit: "0".into(),
                errors: Vec::new(),
            }],
            batch: Some(batch),
            rollout: if passed { "restarted".into() } else { "failed: gate".into() },
            restart: Some(RestartRecord {
                method: "reload: zmmtactl reload".into(),
                started_at: "2026-11-27T02:01:05Z".into(),
                finished_at: "2026-11-27T02:01:06Z".into(),
                ok: true,
                output: String::new(),
            }),
            gate: Some(gate(passed)),
            status_before: Some(HostStatus::Drift),
            verified_at: None,
            staged: Vec::new(),
            rollback: (!passed).then(|| RollbackRecord {
                ok: true,
                detail: "server entry restored, reloaded".into(),
                restart: None,
                gate: Some(gate(true)),
            }),
        }
        };
        report.hosts[2].apply = Some(apply(1, true));
        report.hosts[0].apply = Some(apply(2, false));
        report.hosts[0].controls[0].before = Some("FALSE".into());
        report.hosts[0].controls[0].after = Some("FALSE".into());
        report
    }

    #[test]
    fn apply_shows_a_timeline_per_batch_canary_first() {
        let html = render_html(&applied_report());
        let rollout = element(&html, "id=\"rollout\"", "</section>");
        let canary = rollout
            .find(
                "<b>Batch 1 (canary)</b> of 2 · 1 host · every gate passed · 02:01:05–02:01:10 UTC",
            )
            .expect("canary batch");
        let second = rollout
            .find("<b>Batch 2</b> of 2 · 1 host · <span class=\"bad\">1 failed its gate</span>")
            .expect("second batch");
        assert!(canary < second);
        // The failed batch opens by itself; the passed one stays closed.
        assert!(rollout.contains("<details class=\"batch\" open><summary><b>Batch 2</b>"));
        assert!(rollout.contains("<details class=\"batch\"><summary><b>Batch 1 (canary)</b>"));
        // Commands exactly as sent (escaped), gate checks with evidence, the rollback.
        assert!(rollout.contains("<pre>su - zextras -c 'zmprov ms mail3.acme.example zimbraMtaEnableSmtpdPolicyd TRUE'</pre>"));
        assert!(rollout.contains("<li class=\"bad\"><b>policy</b> RCPT TO answered 451 4.3.5 Server configuration problem</li>"));
        assert!(rollout.contains("<b>rollback:</b> server entry restored, reloaded"));
        assert!(
            rollout.contains("<span class=\"changed\">FALSE → TRUE</span>"),
            "mail3's change"
        );
        assert!(rollout.contains("reload: zmmtactl reload"));
    }

    #[test]
    fn domain_section_follows_the_hosts_with_exact_findings() {
        let html = render_html(&hostile_report());
        assert!(html.contains("<b>Cluster acme</b> · 3 domains"));
        assert!(html.contains("domains read on mail1.acme.example · DNS servers: 127.0.0.1:5353"));
        assert!(html.contains(
            "<li><span class=\"sev\">medium</span> SPF for acme-shop.example ends in `+all`: any host may send as this domain</li>"
        ));
        assert!(html.contains(
            "<li><span class=\"sev\">error</span> DNS lookup of TXT `s1._domainkey.acme-shop.example` failed: request timed out</li>"
        ));
        assert!(html.contains("acme.test <span class=\"evidence\">(alias)</span>"));
        assert!(html.contains("v=spf1 &lt;img src=&quot;http://evil.example/p.png&quot;&gt; +all"));
        // Passing checks are one line, not a row each.
        assert!(html.contains("<b>Passing:</b> acme.example (SPF, DKIM, DMARC)"));
        assert!(!html.contains("<td class=\"mono\">acme.example</td>"));
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
        assert!(!html.contains("<details class=\"grp"));
    }

    /// 1,000 hosts in 200 clusters of five customers, with the spread of states a real
    /// sweep finds (most compliant, a few drift states, some unreachable).
    pub(crate) fn thousand_host_report() -> Report {
        use crate::report::model::{ErrorKind, HostError, ProbeVerdict, Verdict};
        use crate::report::sample::{control, host, probe};
        let mut report = sample_report();
        report.hosts = (0..1000)
            .map(|i| {
                let cluster = format!("c{:03}", i / 5);
                let mut h = match i % 20 {
                    0 => {
                        let mut h = host(&format!("mta{i}.{cluster}"), &cluster, HostStatus::Failed);
                        h.error = Some(HostError::new(
                            ErrorKind::Unreachable,
                            format!("failed to connect to `mta{i}.{cluster}` (10.1.{}.{}:22): connection timed out after 10s", i / 250, i % 250),
                        ));
                        h
                    }
                    1..=4 => {
                        let mut h = host(&format!("mta{i}.{cluster}"), &cluster, HostStatus::Drift);
                        h.controls = vec![
                            control("BS-01", Verdict::NonCompliant, "= TRUE", "FALSE"),
                            control("BS-02", Verdict::NonCompliant, "contains check_policy_service unix:private/policy", "[reject_non_fqdn_recipient, permit_sasl_authenticated, permit_mynetworks, reject_unauth_destination]"),
                            control("BS-03", Verdict::Compliant, "= TRUE", "TRUE"),
                        ];
                        h.probes = vec![probe("EFF-01", ProbeVerdict::Fail, "reject_non_fqdn_recipient, permit_sasl_authenticated, permit_mynetworks, reject_unauth_destination")];
                        h
                    }
                    _ => {
                        let mut h = host(&format!("mta{i}.{cluster}"), &cluster, HostStatus::Compliant);
                        h.controls = vec![
                            control("BS-01", Verdict::Compliant, "= TRUE", "TRUE"),
                            control("BS-02", Verdict::Compliant, "contains check_policy_service unix:private/policy", "[check_policy_service unix:private/policy]"),
                            control("BS-03", Verdict::Compliant, "= TRUE", "TRUE"),
                        ];
                        h.probes = vec![probe("EFF-01", ProbeVerdict::Pass, EFFECTIVE_OK_FOR_TEST)];
                        h
                    }
                };
                h.vars.insert("customer".into(), format!("Customer {}", i % 5));
                h
            })
            .collect();
        report
    }

    const EFFECTIVE_OK_FOR_TEST: &str =
        "reject_non_fqdn_recipient, check_policy_service unix:private/policy, permit";

    #[test]
    fn a_thousand_hosts_stay_under_one_mebibyte() {
        let html = render_html(&thousand_host_report());
        assert!(
            html.len() <= 1024 * 1024,
            "report.html is {} bytes",
            html.len()
        );
        // Every host is still findable by name, once.
        for i in [0, 1, 5, 999] {
            let id = format!("id=\"host-mta{i}.c{:03}\"", i / 5);
            assert_eq!(html.matches(&id).count(), 1, "{id}");
        }
        // Three states: unreachable, the drift state, compliant — grouped, not 1,000 blocks.
        assert_eq!(html.matches("<details class=\"grp").count(), 3);
        let groups: Vec<&str> = html
            .match_indices("<span class=\"gt\">")
            .map(|(i, _)| &html[i..i + 160])
            .collect();
        assert!(html.contains("BS-01 FALSE · BS-02 [reject_non_fqdn_recipient, permit_sasl… · EFF-01 fail on 200 hosts in 50 clusters"), "{groups:#?}");
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
            test_prereq::require_that("renders_in_headless_chromium", &missing),
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
            assert!(dom.contains(&format!("id=\"host-{host}\"")), "{host}");
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
        let opening_tag = |dom: &str, id: &str| -> String {
            let start = dom.find(id).unwrap_or_else(|| panic!("{id} missing"));
            let start = dom[..start].rfind('<').unwrap();
            dom[start..start + dom[start..].find('>').unwrap()].to_string()
        };
        let hidden = |tag: &str| tag.contains(" hidden");

        // `#drift` preselects the drift filter: only mail2's group and its section stay.
        let (filtered, _) = chromium(&bin, &profile, &format!("{url}#drift"), &["--dump-dom"]);
        for (id, want_hidden) in [
            ("id=\"section-drift\"", false),
            ("class=\"grp drift\"", false),
            ("id=\"section-failed\"", true),
            ("id=\"section-compliant\"", true),
        ] {
            assert_eq!(hidden(&opening_tag(&filtered, id)), want_hidden, "{id}");
            assert!(!hidden(&opening_tag(&dom, id)), "unfiltered: {id}");
        }
        assert!(filtered.contains("data-filter=\"drift\" aria-pressed=\"true\""));

        // `#q=store1` finds one host: its group opens with only that host, the
        // other compliant host and every other group are hidden.
        let (found, _) = chromium(&bin, &profile, &format!("{url}#q=store1"), &["--dump-dom"]);
        assert!(!hidden(&opening_tag(&found, "id=\"host-store1\"")));
        assert!(hidden(&opening_tag(&found, "id=\"host-mail1\"")));
        assert!(opening_tag(&found, "class=\"grp compliant\"").contains(" open"));
        assert!(hidden(&opening_tag(&found, "class=\"grp drift\"")));
        // A check id finds the groups that have it, with all their hosts.
        let (by_check, _) = chromium(&bin, &profile, &format!("{url}#q=eff-01"), &["--dump-dom"]);
        assert!(!hidden(&opening_tag(&by_check, "class=\"grp drift\"")));
        assert!(hidden(&opening_tag(&by_check, "class=\"grp compliant\"")));
        // A link to a host opens the group it is in.
        let (linked, _) = chromium(
            &bin,
            &profile,
            &format!("{url}#host-mail2"),
            &["--dump-dom"],
        );
        assert!(opening_tag(&linked, "class=\"grp drift\"").contains(" open"));

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

    /// The text a reader of report.html sees, tag by tag: styles and scripts dropped,
    /// every tag a line break, entities decoded, blank lines gone.
    fn visible_text(html: &str) -> String {
        let mut rest = html;
        let mut text = String::new();
        while let Some(open) = rest.find('<') {
            text.push_str(&rest[..open]);
            text.push('\n');
            let tag = &rest[open..];
            let skip_to = ["script", "style"]
                .iter()
                .find(|name| tag.starts_with(&format!("<{name}")))
                .map(|name| format!("</{name}>"));
            let end = match skip_to {
                Some(close) => tag.find(&close).map(|i| i + close.len()),
                None => tag.find('>').map(|i| i + 1),
            };
            rest = &tag[end.unwrap_or(tag.len())..];
        }
        text.push_str(rest);
        text.lines()
            .map(|l| {
                l.split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&quot;", "\"")
                    .replace("&amp;", "&")
            })
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Everything report.html shows for the sample report, as text: a change of a
    /// heading, a row, a count or an order shows up as a snapshot diff.
    #[test]
    fn visible_text_snapshot() {
        insta::assert_snapshot!(visible_text(&render_html(&sample_report())));
    }
}
