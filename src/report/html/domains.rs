//! The domain part of report.html: per cluster, every hosted domain's SPF, DKIM and
//! DMARC checks that did not pass, with their exact findings and records; the checks that
//! passed are counted and listed by domain in one line (at hundreds of domains a row per
//! passing check would bury the failing ones).

use std::fmt::Write as _;

use super::escape;
use crate::report::labels::probe_verdict_str;
use crate::report::model::{DomainCheck, DomainPosture, DomainReport, ProbeVerdict};

pub fn domains_section(domains: &[DomainReport]) -> String {
    if domains.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<section id=\"domains\">\n<h2>Domain authentication: SPF, DKIM, DMARC</h2>\n\
         <p class=\"explain\">For every domain a cluster hosts, the records that let \
         receivers reject mail forged in its name, as this machine's resolver sees them. \
         Forged senders are what cause backscatter in the first place.</p>\n",
    );
    for d in domains {
        out.push_str(&cluster_block(d));
    }
    out.push_str("</section>\n");
    out
}

fn cluster_block(d: &DomainReport) -> String {
    let failing: Vec<(&DomainPosture, &DomainCheck)> = d
        .domains
        .iter()
        .flat_map(|p| p.checks.iter().map(move |c| (p, c)))
        .filter(|(_, c)| !matches!(c.verdict, ProbeVerdict::Pass | ProbeVerdict::NotApplicable))
        .collect();
    let mut out = format!(
        "<details class=\"dom\" data-search=\"{}\"{}><summary><b>Cluster {}</b> · {} domain{} · {}</summary>\n\
         <p class=\"facts\">domains read on {} · DNS servers: {}</p>\n",
        escape(&d.cluster.to_lowercase()),
        if failing.is_empty() && d.error.is_none() {
            ""
        } else {
            " open"
        },
        escape(&d.cluster),
        d.domains.len(),
        if d.domains.len() == 1 { "" } else { "s" },
        if d.error.is_some() {
            "<span class=\"bad\">not read</span>".to_string()
        } else if failing.is_empty() {
            "<span class=\"ok\">every check passes</span>".to_string()
        } else {
            format!("<span class=\"bad\">{} check(s) off</span>", failing.len())
        },
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
        out.push_str("</details>\n");
        return out;
    }
    if !failing.is_empty() {
        out.push_str(
            "<table class=\"checks domains\"><thead><tr><th>Domain</th><th>Check</th><th>Verdict</th>\
             <th>Findings</th><th>Records and notes</th></tr></thead><tbody>\n",
        );
        for (p, c) in &failing {
            out.push_str(&check_row(p, c));
        }
        out.push_str("</tbody></table>\n");
    }
    let passing: Vec<String> = d
        .domains
        .iter()
        .filter_map(|p| {
            let ok: Vec<String> = p
                .checks
                .iter()
                .filter(|c| c.verdict == ProbeVerdict::Pass)
                .map(|c| c.check.to_uppercase())
                .collect();
            (!ok.is_empty()).then(|| format!("{} ({})", p.domain, ok.join(", ")))
        })
        .collect();
    if !passing.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"passing\"><b>Passing:</b> {}</p>",
            escape(&passing.join("; "))
        );
    }
    out.push_str("</details>\n");
    out
}

fn check_row(p: &DomainPosture, c: &DomainCheck) -> String {
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
    format!(
        "<tr class=\"bad\"><td class=\"mono\">{}{}</td><td>{} <span class=\"evidence\">{} · {}</span></td>\
         <td class=\"v\">{}</td><td>{findings}</td><td class=\"evidence\">{}</td></tr>\n",
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
    )
}
