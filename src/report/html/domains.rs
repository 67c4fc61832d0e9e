//! The domain part of report.html: per cluster, every hosted domain's SPF, DKIM and
//! DMARC checks that did not pass, with their exact findings and records; the checks that
//! passed are counted and listed by domain in one line (at hundreds of domains a row per
//! passing check would bury the failing ones).

use maud::{Markup, html};

use super::{plural, table_head};
use crate::report::labels::probe_verdict_str;
use crate::report::model::{DomainCheck, DomainPosture, DomainReport, ProbeVerdict};

pub fn domains_section(domains: &[DomainReport]) -> Markup {
    if domains.is_empty() {
        return html! {};
    }
    html! {
        section id="domains" {
            "\n" h2 { "Domain authentication: SPF, DKIM, DMARC" } "\n"
            p class="explain" {
                "For every domain a cluster hosts, the records that let receivers reject mail \
                 forged in its name, as this machine's resolver sees them. Forged senders are \
                 what cause backscatter in the first place."
            }
            "\n"
            @for d in domains {
                (cluster_block(d))
            }
        }
        "\n"
    }
}

fn cluster_block(d: &DomainReport) -> Markup {
    let failing: Vec<(&DomainPosture, &DomainCheck)> = d
        .domains
        .iter()
        .flat_map(|p| p.checks.iter().map(move |c| (p, c)))
        .filter(|(_, c)| !matches!(c.verdict, ProbeVerdict::Pass | ProbeVerdict::NotApplicable))
        .collect();
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
    html! {
        details class="dom" data-search=(d.cluster.to_lowercase())
            open[!failing.is_empty() || d.error.is_some()] {
            summary {
                b { "Cluster " (d.cluster) } " · " (d.domains.len()) " domain"
                (plural(d.domains.len())) " · "
                @if d.error.is_some() {
                    span class="bad" { "not read" }
                } @else if failing.is_empty() {
                    span class="ok" { "every check passes" }
                } @else {
                    span class="bad" { (failing.len()) " check(s) off" }
                }
            }
            "\n"
            p class="facts" {
                "domains read on " (d.read_on.as_deref().unwrap_or("(no node)"))
                " · DNS servers: " (d.resolver)
            }
            "\n"
            @if let Some(e) = &d.error {
                div class="error" { span class="kind" { "domains not read" } p { (e) } }
                "\n"
            }
            @if d.domains.is_empty() {
                @if d.error.is_none() {
                    p class="explain" { "This cluster hosts no domain." }
                    "\n"
                }
            } @else {
                @if !failing.is_empty() {
                    table class="checks domains" {
                        (table_head(&[
                            "Domain",
                            "Check",
                            "Verdict",
                            "Findings",
                            "Records and notes",
                        ]))
                        tbody {
                            "\n"
                            @for (p, c) in &failing { (check_row(p, c)) }
                        }
                    }
                    "\n"
                }
                @if !passing.is_empty() {
                    p class="passing" { b { "Passing:" } " " (passing.join("; ")) }
                    "\n"
                }
            }
        }
        "\n"
    }
}

fn check_row(p: &DomainPosture, c: &DomainCheck) -> Markup {
    html! {
        tr class="bad" {
            td class="mono" {
                (p.domain)
                @if p.alias {
                    " " span class="evidence" { "(alias)" }
                }
            }
            td {
                (c.check.to_uppercase()) " "
                span class="evidence" { (c.id) " · " (c.severity) }
            }
            td class="v" { (probe_verdict_str(c.verdict)) }
            td {
                @if c.error.is_some() || !c.findings.is_empty() {
                    ul class="findings" {
                        @if let Some(e) = &c.error {
                            li { span class="sev" { "error" } " " (e) }
                        }
                        @for f in &c.findings {
                            li { span class="sev" { (f.severity) } " " (f.message) }
                        }
                    }
                }
            }
            td class="evidence" {
                @for (i, e) in c.evidence.iter().enumerate() {
                    @if i > 0 { br; }
                    span class="mono" { (e) }
                }
                @for (i, n) in c.notes.iter().enumerate() {
                    @if i > 0 || !c.evidence.is_empty() { br; }
                    (n)
                }
            }
        }
        "\n"
    }
}
