//! The terminal summary that ends every run (and `report show`): worst first, and
//! bounded however large the fleet. Failed hosts grouped by error kind and message shape;
//! drift and restart-pending findings grouped by (control or probe, value), each once with
//! how many hosts and which clusters it concerns (`BS-02 … = no (want yes) — 14 hosts in
//! acme: mta1.acme, mta2.acme, … (+12)`); blocking findings grouped by their shape across
//! clusters; apply's timeline, batch by batch (canary first) with reload outcome, gate
//! checks and their evidence, rollbacks, then the promotions; the compliant hosts in one
//! entry; the domain posture's findings grouped by shape across domains.
//!
//! Laid out by [`Layout`]: wrapped at spaces to the width with a hanging indent, long
//! values and lists cut with `…` (report.json and the HTML keep every word), coloured by
//! status only when the layout says so (a terminal without `NO_COLOR`). Server-supplied
//! text is made terminal-safe before colour is added, so the only escapes in the output
//! are the tool's own.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::safe::terminal_safe;
use super::term::{Layout, Tone, name_list, shorten};
use crate::report::model::{
    GateRecord, HostApply, HostReport, HostStatus, ProbeVerdict, Report, RestartRecord, Verdict,
};

/// The summary as plain text at [`Layout::PLAIN`]'s width (for hooks and files).
pub fn render(report: &Report) -> String {
    render_with(report, &Layout::PLAIN)
}

/// The summary laid out for `layout` (see the module docs).
pub fn render_with(report: &Report, layout: &Layout) -> String {
    let mut out = Out::new(layout);
    out.labels = report.labels.clone();
    let secs = report.duration_ms as f64 / 1000.0;
    out.entry(
        0,
        4,
        &format!(
            "carbonio-fleet {} · {} · {} hosts · {:.1}s",
            report.command, report.playbook.name, report.summary.hosts, secs
        ),
        &[],
    );
    failed_section(&mut out, report);
    for (status, title, tone) in [
        (HostStatus::Drift, "DRIFT", Tone::Drift),
        (
            HostStatus::RestartPending,
            "RESTART PENDING",
            Tone::RestartPending,
        ),
    ] {
        off_section(&mut out, report, status, title, tone);
    }
    blocking_section(&mut out, report);
    not_attempted_section(&mut out, report);
    rollout_section(&mut out, report);
    promotion_section(&mut out, report);
    waiver_section(&mut out, report);
    let compliant: Vec<&HostReport> = report
        .hosts
        .iter()
        .filter(|h| h.status == HostStatus::Compliant)
        .collect();
    if !compliant.is_empty() {
        out.heading(Tone::Compliant, &format!("COMPLIANT ({})", compliant.len()));
        let text = out.hosts_part(&compliant);
        out.entry(2, 4, &text, &[]);
    }
    domains_section(&mut out, report);

    let sm = &report.summary;
    let counts = [
        (sm.compliant, "compliant", Tone::Compliant),
        (sm.drift, "drift", Tone::Drift),
        (sm.restart_pending, "restart-pending", Tone::RestartPending),
        (sm.failed, "failed", Tone::Failed),
    ];
    let mut parts: Vec<(String, Option<Tone>)> = counts
        .iter()
        .map(|(n, what, tone)| (format!("{n} {what}"), (*n > 0).then_some(*tone)))
        .collect();
    if sm.not_attempted > 0 {
        parts.push((
            format!("{} not attempted", sm.not_attempted),
            Some(Tone::NotAttempted),
        ));
    }
    let text = format!(
        "{}: {}",
        plural(sm.hosts, "host"),
        parts
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let spans: Vec<(Tone, &str)> = parts
        .iter()
        .filter_map(|(p, t)| t.map(|t| (t, p.as_str())))
        .collect();
    out.blank();
    out.entry(0, 4, &text, &spans);
    if sm.waived + sm.waivers_expired > 0 {
        out.entry(
            0,
            4,
            &format!(
                "waivers: {} waived deviation{}, {} expired (counted again)",
                sm.waived,
                if sm.waived == 1 { "" } else { "s" },
                sm.waivers_expired
            ),
            &[],
        );
    }
    out.s
}

/// `--waivers`: each accepted deviation (host, id, until when, where written, why), and
/// each deviation whose waiver expired, so that nobody mistakes it for an oversight.
fn waiver_section(out: &mut Out<'_>, report: &Report) {
    let (live, expired): (Vec<_>, Vec<_>) = report
        .waivers()
        .map(|(h, id, w)| (h.name.as_str(), id, w))
        .partition(|(_, _, w)| w.is_live());
    for (title, tone, list) in [
        ("WAIVED", Tone::NotAttempted, live),
        ("WAIVER EXPIRED", Tone::Failed, expired),
    ] {
        if list.is_empty() {
            continue;
        }
        out.heading(tone, &format!("{title} ({})", list.len()));
        for (host, id, w) in list {
            let state = if w.expired { "expired" } else { "until" };
            let rest = format!(
                "{id} {state} {} ({}): {}",
                w.expires,
                w.source,
                out.message(&w.justification)
            );
            out.labelled(2, 4, tone, host, &rest);
        }
    }
}

/// The text being built and how it is laid out.
struct Out<'a> {
    s: String,
    layout: &'a Layout,
    /// The report's labels (playbook `labels`, e.g. `customer`): each cluster named in a
    /// host list carries its hosts' values of them.
    labels: Vec<String>,
}

impl<'a> Out<'a> {
    fn new(layout: &'a Layout) -> Self {
        Out {
            s: String::new(),
            layout,
            labels: Vec::new(),
        }
    }

    fn width(&self) -> usize {
        self.layout.width
    }

    fn blank(&mut self) {
        self.s.push('\n');
    }

    /// A blank line, then a section title in the section's colour.
    fn heading(&mut self, tone: Tone, title: &str) {
        self.blank();
        let title = terminal_safe(title);
        let _ = writeln!(self.s, "{}", self.layout.paint(tone, &title));
    }

    /// One entry wrapped at the width (first line at `indent`, the rest at `hang`), with
    /// each of `spans` (in order of appearance) painted where it ends up. The text is made
    /// terminal-safe first, so painting adds the only escapes.
    fn entry(&mut self, indent: usize, hang: usize, text: &str, spans: &[(Tone, &str)]) {
        let text = terminal_safe(text);
        let mut lines = self.layout.wrap(&text, indent, hang);
        if self.layout.color {
            paint_spans(self.layout, &mut lines, spans);
        }
        for l in lines {
            let _ = writeln!(self.s, "{l}");
        }
    }

    /// An entry that starts with a coloured label (`BS-01`, `unreachable`, `batch 2 of 7`).
    fn labelled(&mut self, indent: usize, hang: usize, tone: Tone, label: &str, rest: &str) {
        let label = terminal_safe(label).into_owned();
        self.entry(indent, hang, &format!("{label} {rest}"), &[(tone, &label)]);
    }

    /// `14 hosts in acme (ACME Corp), globex: mta1.acme, mta2.acme, … (+12)`: the count,
    /// the clusters (with their hosts' label values) and as many names as fit a line.
    fn hosts_part(&self, hosts: &[&HostReport]) -> String {
        let mut clusters: Vec<String> = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for h in hosts {
            if seen.contains(&h.cluster.as_str()) {
                continue;
            }
            seen.push(&h.cluster);
            // `acme (ACME Corp)`: the label values of the cluster's hosts in this list.
            let mut values: Vec<&str> = hosts
                .iter()
                .filter(|x| x.cluster == h.cluster)
                .flat_map(|x| self.labels.iter().filter_map(|k| x.vars.get(k)))
                .map(String::as_str)
                .collect();
            values.sort_unstable();
            values.dedup();
            clusters.push(if values.is_empty() {
                h.cluster.clone()
            } else {
                format!("{} ({})", h.cluster, values.join(", "))
            });
        }
        let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        format!(
            "{} in {}: {}",
            plural(hosts.len(), "host"),
            name_list(&clusters, (self.width() / 3).max(20)),
            name_list(&names, self.width().saturating_sub(8).max(30))
        )
    }

    /// A value as the terminal shows it: a restriction list is cut to half the width
    /// (at least enough for `check_policy_service unix:private/policy`).
    fn value<'v>(&self, v: &'v str) -> std::borrow::Cow<'v, str> {
        shorten(v, (self.width() / 2).max(48))
    }

    /// A message as the terminal shows it: at most about two and a half lines.
    fn message<'v>(&self, v: &'v str) -> std::borrow::Cow<'v, str> {
        shorten(v, self.width() * 5 / 2)
    }
}

/// Paints each span at its first occurrence after the previous one; a span that the
/// wrapping split over two lines stays plain (the words are what matter).
fn paint_spans(layout: &Layout, lines: &mut [String], spans: &[(Tone, &str)]) {
    let (mut line, mut pos) = (0, 0);
    for (tone, span) in spans {
        if span.is_empty() {
            continue;
        }
        let mut at = None;
        for (i, l) in lines.iter().enumerate().skip(line) {
            let from = if i == line { pos } else { 0 };
            if let Some(p) = l.get(from..).and_then(|rest| rest.find(span)) {
                at = Some((i, from + p));
                break;
            }
        }
        let Some((i, p)) = at else { continue };
        let painted = layout.paint(*tone, span);
        lines[i].replace_range(p..p + span.len(), &painted);
        (line, pos) = (i, p + painted.len());
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn generalize(msg: &str, h: &HostReport) -> String {
    msg.replace(&format!("{}:{}", h.address, h.port), "ADDR")
        .replace(&format!("[{}]:{}", h.address, h.port), "ADDR")
        .replace(&h.name, "HOST")
}

/// Groups by key, keeping first-seen order of keys and of members; sorted by size
/// (largest first), ties in first-seen order.
fn group_by<K: Ord + Clone, T>(items: impl IntoIterator<Item = (K, T)>) -> Vec<(K, Vec<T>)> {
    let mut order: Vec<K> = Vec::new();
    let mut groups: BTreeMap<K, Vec<T>> = BTreeMap::new();
    for (k, t) in items {
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push(t);
    }
    let mut out: Vec<(K, Vec<T>)> = order
        .into_iter()
        .filter_map(|k| groups.remove(&k).map(|v| (k, v)))
        .collect();
    out.sort_by_key(|g| std::cmp::Reverse(g.1.len()));
    out
}

/// Failed hosts grouped by error kind and message shape (the host's name and address
/// replaced, so "connection refused by mail3 (10.0.0.3:22)" groups across hosts).
fn failed_section(out: &mut Out<'_>, report: &Report) {
    let failed: Vec<&HostReport> = report
        .hosts
        .iter()
        .filter(|h| h.status == HostStatus::Failed)
        .collect();
    if failed.is_empty() {
        return;
    }
    out.heading(Tone::Failed, &format!("FAILED ({})", failed.len()));
    let groups = group_by(failed.iter().map(|h| {
        let key = match &h.error {
            Some(e) => (e.kind.as_str().to_string(), generalize(&e.message, h)),
            None => ("error".to_string(), "unknown failure".to_string()),
        };
        (key, *h)
    }));
    for ((kind, msg), hosts) in groups {
        let rest = format!("{} — {}", out.message(&msg), out.hosts_part(&hosts));
        out.labelled(2, 4, Tone::Failed, &format!("{kind}:"), &rest);
    }
}

/// One thing that is off on a host: its id (the label) and what is off.
struct Off {
    id: String,
    /// Grouping key: the id and the full values (the shown text may be cut).
    key: String,
    text: String,
}

/// What is off on `h`: each control and probe not compliant, briefly (`BS-01 Postfix
/// policy daemon enabled: zimbraMtaEnableSmtpdPolicyd = FALSE (want TRUE)`), the running
/// master's state; or, when nothing of these, its findings.
fn offs(out: &Out<'_>, h: &HostReport) -> Vec<Off> {
    let brief = |title: &str, attr: &str, actual: &str, expected: &str| {
        let what = if attr.is_empty() {
            title.to_string()
        } else {
            format!("{title}: {attr}")
        };
        if let Some(v) = expected.strip_prefix("contains ") {
            format!("{what} lacks {}", out.value(v))
        } else if let Some(v) = expected.strip_prefix("absent ") {
            format!("{what} has {}", out.value(v))
        } else if let Some(v) = expected.strip_prefix("reply ") {
            let code = actual.split_whitespace().next().unwrap_or(actual);
            format!("{what}: {} (want {v})", out.value(code))
        } else {
            let v = expected.strip_prefix("= ").unwrap_or(expected);
            format!("{what} = {} (want {})", out.value(actual), out.value(v))
        }
    };
    // A live waiver's deviation is accepted (WAIVED lists it); an expired one is off again
    // and says so.
    let expired = |w: &Option<crate::report::model::WaiverRef>| {
        w.as_ref()
            .map(|w| format!(" (waiver expired {})", w.expires))
            .unwrap_or_default()
    };
    let mut v = Vec::new();
    for c in h.controls.iter().filter(|c| !c.is_waived()) {
        let text = match c.verdict {
            Verdict::NonCompliant => brief(&c.title, &c.attr, &c.actual, &c.expected),
            Verdict::Masked => format!(
                "{}: {} masked by a server override ({})",
                c.title,
                c.attr,
                out.value(&c.actual)
            ),
            Verdict::Error => format!("{}: {} could not be read", c.title, c.attr),
            _ => continue,
        } + &expired(&c.waiver);
        v.push(Off {
            id: c.id.clone(),
            key: format!("{}\0{:?}\0{}\0{}", c.id, c.verdict, c.actual, c.expected),
            text,
        });
    }
    for p in h.probes.iter().filter(|p| !p.is_waived()) {
        if matches!(p.verdict, ProbeVerdict::Fail | ProbeVerdict::Error) {
            v.push(Off {
                id: p.id.clone(),
                key: format!("{}\0{:?}\0{}\0{}", p.id, p.verdict, p.actual, p.expected),
                text: brief(&p.title, "", &p.actual, &p.expected) + &expired(&p.waiver),
            });
        }
    }
    if let Some(r) = &h.running
        && r.state != crate::carbonio::running::RunningState::Loaded
    {
        v.push(Off {
            id: "master.cf".into(),
            key: format!("master.cf\0{}", r.state.as_str()),
            text: format!("{} by the running Postfix", r.state.as_str()),
        });
    }
    if v.is_empty() {
        for f in &h.findings {
            let msg = generalize(&f.message, h);
            v.push(Off {
                id: format!("{}:", f.id),
                key: format!("{}\0{msg}", f.id),
                text: out.message(&msg).into_owned(),
            });
        }
    }
    v
}

/// Drift or restart-pending hosts: each distinct thing that is off once, with the hosts
/// it concerns, the most widespread first.
fn off_section(out: &mut Out<'_>, report: &Report, status: HostStatus, title: &str, tone: Tone) {
    let hosts: Vec<&HostReport> = report.hosts.iter().filter(|h| h.status == status).collect();
    if hosts.is_empty() {
        return;
    }
    out.heading(tone, &format!("{title} ({})", hosts.len()));
    let items = hosts.iter().flat_map(|h| {
        offs(out, h)
            .into_iter()
            .map(move |o| (o.key.clone(), (o, *h)))
    });
    for (_, members) in group_by(items) {
        let hosts: Vec<&HostReport> = members.iter().map(|(_, h)| *h).collect();
        let off = &members[0].0;
        let rest = format!("{} — {}", off.text, out.hosts_part(&hosts));
        out.labelled(2, 4, tone, &off.id, &rest);
    }
}

/// Blocking findings grouped by id and shape: a cluster-wide finding names its cluster
/// and hosts, which are replaced (`CLUSTER`, `HOSTS`) so one line covers every cluster.
fn blocking_section(out: &mut Out<'_>, report: &Report) {
    let mut by_cluster: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for h in &report.hosts {
        by_cluster.entry(&h.cluster).or_default().push(&h.name);
    }
    for names in by_cluster.values_mut() {
        // Longest first, so `mta10` is replaced before `mta1`.
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }
    let shape = |msg: &str, h: &HostReport| {
        let mut m = msg.to_string();
        for n in by_cluster.get(h.cluster.as_str()).into_iter().flatten() {
            m = m.replace(n, "HOST");
        }
        while m.contains("HOST, HOST") {
            m = m.replace("HOST, HOST", "HOST");
        }
        m.replace(&format!("`{}`", h.cluster), "`CLUSTER`")
    };
    let items = report.hosts.iter().flat_map(|h| {
        h.findings
            .iter()
            .filter(|f| f.blocking)
            .map(move |f| ((f.id.clone(), shape(&f.message, h)), (f, h)))
    });
    let groups = group_by(items);
    if groups.is_empty() {
        return;
    }
    out.heading(
        Tone::Failed,
        &format!("BLOCKING FINDINGS ({})", groups.len()),
    );
    for ((id, shaped), members) in groups {
        let hosts: Vec<&HostReport> = members.iter().map(|(_, h)| *h).collect();
        let one_cluster = hosts.iter().all(|h| h.cluster == hosts[0].cluster);
        // One cluster: its own words; several: the shape that covers them all.
        let msg = if one_cluster {
            members[0].0.message.as_str()
        } else {
            shaped.as_str()
        };
        let rest = format!("{} — {}", out.message(msg), out.hosts_part(&hosts));
        out.labelled(2, 4, Tone::Failed, &format!("{id}:"), &rest);
    }
}

fn not_attempted_section(out: &mut Out<'_>, report: &Report) {
    let hosts: Vec<&HostReport> = report
        .hosts
        .iter()
        .filter(|h| h.status == HostStatus::NotAttempted)
        .collect();
    if hosts.is_empty() {
        return;
    }
    out.heading(
        Tone::NotAttempted,
        &format!("NOT ATTEMPTED ({})", hosts.len()),
    );
    let text = out.hosts_part(&hosts);
    out.entry(2, 4, &text, &[]);
}

/// The colour of a rollout state.
fn rollout_tone(state: &str) -> Tone {
    if state == "restarted" {
        Tone::Compliant
    } else if state.starts_with("failed") || state == "unreachable" {
        Tone::Failed
    } else if state.starts_with("not-attempted") || state.starts_with("not attempted") {
        Tone::NotAttempted
    } else {
        Tone::Drift
    }
}

/// A command's purpose as a word or two: `stage on mta1 (server entries)` → `stage`.
fn purpose_word(purpose: &str) -> &str {
    let cut = [" (", ":", " on ", " for "]
        .iter()
        .filter_map(|sep| purpose.find(sep))
        .min()
        .unwrap_or(purpose.len());
    purpose[..cut].trim()
}

/// `6 commands sent (spawn user fix ×3, stage, render, reload)`.
fn commands_brief(a: &HostApply) -> Option<String> {
    if a.commands.is_empty() {
        return None;
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for c in &a.commands {
        let w = purpose_word(&c.purpose);
        match counts.iter_mut().find(|(p, _)| *p == w) {
            Some((_, n)) => *n += 1,
            None => counts.push((w, 1)),
        }
    }
    let failed = a.commands.iter().filter(|c| c.exit != "0").count();
    Some(format!(
        "{} sent ({}){}",
        plural(a.commands.len(), "command"),
        counts
            .iter()
            .map(|(p, n)| if *n > 1 {
                format!("{p} ×{n}")
            } else {
                p.to_string()
            })
            .collect::<Vec<_>>()
            .join(", "),
        if failed > 0 {
            format!(", {failed} did not exit 0")
        } else {
            String::new()
        }
    ))
}

/// apply only: the timeline, batch by batch (batch 1 is the canary): the hosts, then for
/// each set of hosts that fared alike their state, the commands sent, the reload or
/// restart and its outcome, the gate checks with their evidence (all of them for the
/// canary and for a failure, their names otherwise) and any rollback. The hosts the
/// rollout did not schedule are grouped by reason. Commands exactly as sent are in
/// report.json, the HTML report and the `--log-file` audit log.
fn rollout_section(out: &mut Out<'_>, report: &Report) {
    let applied: Vec<(&HostReport, &HostApply)> = report
        .hosts
        .iter()
        .filter_map(|h| h.apply.as_ref().map(|a| (h, a)))
        .collect();
    if applied.is_empty() {
        return;
    }
    let mut batches: BTreeMap<usize, Vec<(&HostReport, &HostApply)>> = BTreeMap::new();
    for (h, a) in &applied {
        if let Some(b) = a.batch {
            batches.entry(b).or_default().push((h, a));
        }
    }
    let total = batches.keys().max().copied().unwrap_or(0);
    let scheduled: usize = batches.values().map(Vec::len).sum();
    out.heading(
        Tone::Heading,
        &format!(
            "ROLLOUT ({} scheduled in {})",
            plural(scheduled, "host"),
            if batches.len() == 1 {
                "1 batch".to_string()
            } else {
                format!("{} batches", batches.len())
            }
        ),
    );
    for (number, members) in &batches {
        batch_entry(out, *number, total, members);
    }
    let others = group_by(
        applied
            .iter()
            .filter(|(_, a)| a.batch.is_none())
            .map(|(h, a)| (a.rollout.clone(), *h)),
    );
    for (state, hosts) in others {
        let state = if state.is_empty() {
            "no rollout".to_string()
        } else {
            state
        };
        let rest = format!("— {}", out.hosts_part(&hosts));
        out.labelled(2, 4, rollout_tone(&state), &state, &rest);
    }
    if scheduled > 0 {
        out.entry(
            2,
            4,
            "(commands exactly as sent: report.json, report.html and the --log-file audit log)",
            &[],
        );
    }
}

/// One batch of the timeline: `batch N of M` (the first is the canary) coloured by its
/// worst host, its hosts, then its hosts grouped by how they fared.
fn batch_entry(
    out: &mut Out<'_>,
    number: usize,
    total: usize,
    members: &[(&HostReport, &HostApply)],
) {
    let worst = members
        .iter()
        .map(|(_, a)| rollout_tone(&a.rollout))
        .min_by_key(|t| match t {
            Tone::Failed => 0,
            Tone::NotAttempted => 1,
            Tone::Drift => 2,
            _ => 3,
        })
        .unwrap_or(Tone::Compliant);
    let label = format!("batch {number} of {total}");
    let canary = if number == 1 { " (canary)" } else { "" };
    let hosts: Vec<&HostReport> = members.iter().map(|(h, _)| *h).collect();
    let rest = format!("{canary} — {}", out.hosts_part(&hosts));
    let label_safe = terminal_safe(&label).into_owned();
    out.entry(
        2,
        6,
        &format!("{label_safe}{rest}"),
        &[(worst, &label_safe)],
    );
    // Hosts that fared alike, described once (whatever their reload command: legacy
    // and systemd nodes differ there, not in how they fared).
    let groups = group_by(members.iter().map(|(h, a)| {
        let restart = a.restart.as_ref().map(|r| r.ok);
        let gate = a.gate.as_ref().map(|g| {
            let failing: Vec<String> = g
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{}\0{}", c.name, generalize(&c.detail, h)))
                .collect();
            (g.passed, failing)
        });
        let rollback = a.rollback.as_ref().map(|r| r.ok);
        ((a.rollout.clone(), restart, gate, rollback), (*h, *a))
    }));
    let alone = groups.len() == 1;
    for ((state, restart_ok, gate, _), fared) in groups {
        let who = if alone {
            String::new()
        } else {
            let hs: Vec<&HostReport> = fared.iter().map(|(h, _)| *h).collect();
            format!("— {}", out.hosts_part(&hs))
        };
        out.labelled(4, 8, rollout_tone(&state), &state, &who);
        // The canary and anything that went wrong in full; a batch that went as the
        // canary did in one line.
        let failed = restart_ok == Some(false)
            || gate.as_ref().is_some_and(|(passed, _)| !passed)
            || fared
                .iter()
                .any(|(_, a)| a.commands.iter().any(|c| c.exit != "0"));
        fared_alike(out, number == 1 || failed, &fared);
    }
}

/// Hosts of one batch that fared alike: the commands sent (when `detailed`), the reload
/// or restart, the gate and any rollback. In detail each on its own lines with the
/// evidence; otherwise the reload and the gate share one line.
fn fared_alike(out: &mut Out<'_>, detailed: bool, fared: &[(&HostReport, &HostApply)]) {
    let a0 = fared[0].1;
    if detailed && let Some(c) = commands_brief(a0) {
        out.entry(6, 8, &c, &[]);
    }
    let mut brief: Vec<(Tone, String)> = Vec::new();
    if let Some(r) = &a0.restart {
        reload_lines(out, detailed, r, fared, &mut brief);
    }
    if let Some(g) = &a0.gate {
        gate_lines(out, detailed, g, fared, &mut brief);
    }
    if !brief.is_empty() {
        let text = brief
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let spans: Vec<(Tone, &str)> = brief
            .iter()
            .map(|(t, s)| (*t, s.split(' ').nth(1).unwrap_or("")))
            .collect();
        out.entry(6, 8, &text, &spans);
    }
    rollback_lines(out, fared);
}

/// The reload or restart of a group: in detail with each distinct command line, cut to
/// fit; otherwise pushed onto the group's one-line `brief`.
fn reload_lines(
    out: &mut Out<'_>,
    detailed: bool,
    r: &RestartRecord,
    fared: &[(&HostReport, &HostApply)],
    brief: &mut Vec<(Tone, String)>,
) {
    let kind = r
        .method
        .split_once(": ")
        .map_or(r.method.as_str(), |(k, _)| k);
    let outcome = if r.ok { "ok" } else { "FAILED" };
    let tone = if r.ok { Tone::Compliant } else { Tone::Failed };
    if !detailed {
        brief.push((tone, format!("{kind} {outcome}")));
        return;
    }
    // Each distinct command line of the group's reloads, cut to fit.
    let mut hows: Vec<&str> = Vec::new();
    for (_, a) in fared {
        if let Some((_, how)) = a.restart.as_ref().and_then(|r| r.method.split_once(": "))
            && !hows.contains(&how)
        {
            hows.push(how);
        }
    }
    let hows: Vec<String> = hows
        .iter()
        .map(|h| shorten(h, out.width().saturating_sub(6 + 12 + kind.len())).into_owned())
        .collect();
    let how = if hows.is_empty() {
        String::new()
    } else {
        format!(": {}", hows.join("; "))
    };
    out.entry(6, 8, &format!("{kind} {outcome}{how}"), &[(tone, outcome)]);
}

/// The health gate of a group (the most attempts any of its hosts needed): in detail one
/// line per check with its evidence, a failed one in full; otherwise the check names on
/// the group's one-line `brief`.
fn gate_lines(
    out: &mut Out<'_>,
    detailed: bool,
    g: &GateRecord,
    fared: &[(&HostReport, &HostApply)],
    brief: &mut Vec<(Tone, String)>,
) {
    let verdict = if g.passed { "passed" } else { "FAILED" };
    let tone = if g.passed {
        Tone::Compliant
    } else {
        Tone::Failed
    };
    let attempts = fared
        .iter()
        .filter_map(|(_, a)| a.gate.as_ref().map(|g| g.attempts))
        .max()
        .unwrap_or(g.attempts);
    let head = format!(
        "gate {verdict} after {}",
        plural(attempts as usize, "attempt")
    );
    if !detailed {
        let names: Vec<&str> = g.checks.iter().map(|c| c.name.as_str()).collect();
        brief.push((tone, format!("{head} ({})", names.join(", "))));
        return;
    }
    out.entry(6, 10, &format!("{head}:"), &[(tone, verdict)]);
    for c in &g.checks {
        let (mark, tone) = if c.ok {
            ("ok", Tone::Compliant)
        } else {
            ("FAILED", Tone::Failed)
        };
        let detail = if c.ok {
            shorten(&c.detail, out.width().saturating_sub(14 + c.name.len()))
        } else {
            out.message(&c.detail)
        };
        let name = format!("{} {mark}", c.name);
        out.entry(8, 10, &format!("{name}: {detail}"), &[(tone, mark)]);
    }
}

/// The rollbacks of a group, grouped by outcome and message shape.
fn rollback_lines(out: &mut Out<'_>, fared: &[(&HostReport, &HostApply)]) {
    let rollbacks = group_by(fared.iter().filter_map(|(h, a)| {
        a.rollback
            .as_ref()
            .map(|r| ((r.ok, generalize(&r.detail, h)), *h))
    }));
    for ((ok, detail), hosts) in rollbacks {
        let outcome = if ok { "ok" } else { "FAILED" };
        let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        let text = format!(
            "rollback {outcome} on {}: {}",
            name_list(&names, out.width() / 2),
            out.message(&detail)
        );
        let tone = if ok { Tone::Drift } else { Tone::Failed };
        out.entry(6, 8, &text, &[(tone, outcome)]);
    }
}

/// apply only: the clusters whose global config was staged, grouped by outcome (a single
/// cluster with its detail), and the MTAs that hold a promotion back, grouped by reason.
fn promotion_section(out: &mut Out<'_>, report: &Report) {
    if report.promotions.is_empty() {
        return;
    }
    out.heading(
        Tone::Heading,
        &format!("PROMOTION ({})", plural(report.promotions.len(), "cluster")),
    );
    let groups = group_by(report.promotions.iter().map(|p| (p.state.clone(), p)));
    for (state, ps) in groups {
        let tone = match state.as_str() {
            "promoted" => Tone::Compliant,
            "promotion-held" => Tone::Drift,
            "not-promoted" => Tone::NotAttempted,
            _ => Tone::Failed,
        };
        let clusters: Vec<&str> = ps.iter().map(|p| p.cluster.as_str()).collect();
        let rest = if ps.len() == 1 {
            format!(
                "— cluster {}: {}",
                ps[0].cluster,
                out.message(&ps[0].detail)
            )
        } else {
            format!(
                "— {} clusters: {}",
                ps.len(),
                name_list(&clusters, out.width().saturating_sub(8).max(30))
            )
        };
        out.labelled(2, 4, tone, &state, &rest);
        let held = group_by(ps.iter().flat_map(|p| {
            p.held_by.iter().map(|h| {
                let who = match (&h.host, &h.server) {
                    (Some(host), Some(server)) if host.eq_ignore_ascii_case(server) => host.clone(),
                    (Some(host), Some(server)) => format!("{host} (server {server})"),
                    (Some(host), None) => host.clone(),
                    (None, Some(server)) => format!("server {server}"),
                    (None, None) => "the cluster".into(),
                };
                (h.reason.clone(), who)
            })
        }));
        for (reason, who) in held {
            let text = format!(
                "held by {}: {}",
                name_list(&who, out.width() / 2),
                out.message(&reason)
            );
            out.entry(4, 6, &text, &[]);
        }
    }
}

/// The domain posture: the tally, then each failed or undecided check grouped by shape
/// across domains (the domain's name replaced), with the domains and clusters it concerns.
fn domains_section(out: &mut Out<'_>, report: &Report) {
    if report.domains.is_empty() {
        return;
    }
    let (mut pass, mut fail, mut error) = (0, 0, 0);
    for c in report
        .domains
        .iter()
        .flat_map(|d| d.domains.iter().flat_map(|p| p.checks.iter()))
    {
        match c.verdict {
            ProbeVerdict::Pass | ProbeVerdict::NotApplicable => pass += 1,
            ProbeVerdict::Fail => fail += 1,
            ProbeVerdict::Error => error += 1,
        }
    }
    let domains: usize = report.domains.iter().map(|d| d.domains.len()).sum();
    out.heading(
        Tone::Heading,
        &format!(
            "DOMAINS ({} checks: {pass} pass, {fail} fail, {error} error)",
            pass + fail + error
        ),
    );
    let clusters: Vec<&str> = report.domains.iter().map(|d| d.cluster.as_str()).collect();
    out.entry(
        2,
        4,
        &format!(
            "{} in {}: {}",
            plural(domains, "domain"),
            plural(clusters.len(), "cluster"),
            name_list(&clusters, out.width().saturating_sub(20).max(30))
        ),
        &[],
    );
    let unread = group_by(
        report
            .domains
            .iter()
            .filter_map(|d| d.error.as_ref().map(|e| (e.clone(), d.cluster.as_str()))),
    );
    for (e, cs) in unread {
        let rest = format!(
            "{} — {}: {}",
            out.message(&e),
            plural(cs.len(), "cluster"),
            name_list(&cs, out.width() / 2)
        );
        out.labelled(2, 4, Tone::Failed, "domains not read:", &rest);
    }
    // (label, shaped message) → (cluster, domain, own message)
    let items = report.domains.iter().flat_map(|d| {
        d.domains.iter().flat_map(move |p| {
            p.checks.iter().flat_map(move |c| {
                let name = c.check.to_uppercase();
                let err = c.error.iter().map(move |e| {
                    (
                        (
                            format!("{name} error:"),
                            e.replace(&p.domain, "DOMAIN"),
                            true,
                        ),
                        (d.cluster.as_str(), p.domain.as_str(), e.as_str()),
                    )
                });
                let name = c.check.to_uppercase();
                let finds = c.findings.iter().map(move |f| {
                    (
                        (
                            format!("{name} [{}]", f.severity),
                            f.message.replace(&p.domain, "DOMAIN"),
                            false,
                        ),
                        (d.cluster.as_str(), p.domain.as_str(), f.message.as_str()),
                    )
                });
                err.chain(finds)
            })
        })
    });
    for ((label, shaped, is_error), members) in group_by(items) {
        let msg = if members.len() == 1 {
            members[0].2
        } else {
            shaped.as_str()
        };
        let cs: BTreeSet<&str> = members.iter().map(|m| m.0).collect();
        let cs: Vec<&str> = cs.into_iter().collect();
        let names: Vec<&str> = members.iter().map(|m| m.1).collect();
        let rest = format!(
            "{} — {} in {}: {}",
            out.message(msg),
            plural(names.len(), "domain"),
            name_list(&cs, (out.width() / 3).max(20)),
            name_list(&names, out.width().saturating_sub(8).max(30))
        );
        let tone = if is_error { Tone::Failed } else { Tone::Drift };
        out.labelled(2, 4, tone, &label, &rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::{GateCheck, HostError, RollbackRecord, Summary};
    use crate::report::sample::{control, host, sample_report};
    use crate::ui::term::width_of;
    use indoc::indoc;
    use test_case::test_case;

    /// The sample check report at the plain layout: every section but the rollout, in
    /// order, each finding once with its hosts.
    #[test]
    fn check_summary_snapshot() {
        // Without report labels here; `clusters_carry_their_label_values` has them.
        let mut report = sample_report();
        report.labels.clear();
        assert_eq!(
            render(&report),
            indoc! {"
                carbonio-fleet check · backscatter-hardening · 6 hosts · 83.4s

                FAILED (2)
                  hostkey: host key for `HOST` (ADDR) does not match known_hosts — 1 host in eu-2: mail4
                  unreachable: failed to connect to `HOST` (ADDR): connection timed out after 10s — 1 host in eu-2:
                    mail5

                DRIFT (1)
                  BS-01 Postfix policy daemon enabled: zimbraMtaEnableSmtpdPolicyd = FALSE (want TRUE) — 1 host in
                    eu-1: mail2
                  BS-02 Policy service in recipient restrictions: zimbraMtaRestriction masked by a server override
                    ([reject_invalid_helo_hostname]) — 1 host in eu-1: mail2
                  EFF-01 Effective Postfix recipient restrictions contain the policy service lacks
                    check_policy_service unix:private/policy — 1 host in eu-1: mail2

                RESTART PENDING (1)
                  EFF-01 Effective Postfix recipient restrictions contain the policy service lacks
                    check_policy_service unix:private/policy — 1 host in eu-1: mail3

                BLOCKING FINDINGS (1)
                  PRE-POLICY-SPAWN-USER: enabling zimbraMtaEnableSmtpdPolicyd here would make Postfix answer `451
                    4.3.5` to every recipient: master.cf spawns the policy service as user `zimbra`, which does not
                    exist on this node — 1 host in eu-1: mail2

                COMPLIANT (2)
                  2 hosts in eu-1: mail1, store1

                DOMAINS (9 checks: 5 pass, 3 fail, 1 error)
                  3 domains in 1 cluster: acme
                  SPF [medium] SPF for acme-shop.example ends in `+all`: any host may send as this domain — 1 domain
                    in acme: acme-shop.example
                  DKIM error: DNS lookup of TXT `s1._domainkey.acme-shop.example` failed: request timed out — 1
                    domain in acme: acme-shop.example
                  DMARC [low] DMARC for acme-shop.example has `p=none`: receivers only monitor, forged mail is still
                    delivered — 1 domain in acme: acme-shop.example
                  DKIM [medium] DKIM for acme.test is not set up: no DKIMSelector/DKIMPublicKey in LDAP (create a
                    key with `zmdkimkeyutil -a -d acme.test`) — 1 domain in acme: acme.test

                6 hosts: 2 compliant, 1 drift, 1 restart-pending, 2 failed
            "}
        );
    }

    /// `n` drifting hosts over `clusters` clusters: all with BS-01 off the same way, every
    /// third with BS-03 off too, and one unreachable host per ten.
    fn fleet(n: usize, clusters: usize) -> Report {
        let mut report = sample_report();
        report.domains.clear();
        report.labels.clear();
        report.hosts = (1..=n)
            .map(|i| {
                let cluster = format!("customer{:03}", i % clusters);
                let name = format!("mta{i}.{cluster}.example");
                if i % 10 == 0 {
                    let mut h = host(&name, &cluster, HostStatus::Failed);
                    h.address = format!("10.0.{}.{}", i / 250, i % 250);
                    h.error = Some(HostError::new(
                        crate::report::model::ErrorKind::Unreachable,
                        format!(
                            "cannot connect to `{name}` ({}:22): connection refused",
                            h.address
                        ),
                    ));
                    return h;
                }
                let mut h = host(&name, &cluster, HostStatus::Drift);
                h.controls
                    .push(control("BS-01", Verdict::NonCompliant, "= TRUE", "FALSE"));
                if i % 3 == 0 {
                    h.controls
                        .push(control("BS-03", Verdict::NonCompliant, "= yes", "no"));
                }
                h
            })
            .collect();
        report.summary = Summary::of(&report.hosts);
        report
    }

    /// Identical findings across hosts are one entry with the count, the clusters and
    /// the first names; the most widespread first.
    #[test]
    fn clusters_carry_their_label_values() {
        let mut report = sample_report();
        report.hosts[4]
            .vars
            .insert("customer".into(), "Globex".into());
        let text = render(&report);
        assert!(
            text.contains("— 1 host in eu-2 (ACME Corp): mail4\n"),
            "{text}"
        );
        assert!(
            text.contains("2 hosts in eu-1 (ACME Corp): mail1, store1"),
            "{text}"
        );
        // The unreachable mail5 is Globex's: its own line says so.
        assert!(text.contains("(Globex): mail5"), "{text}");
        report.labels.clear();
        assert!(
            !render(&report).contains("ACME Corp"),
            "no labels, no values"
        );
    }

    #[test]
    fn identical_findings_collapse_into_one_entry() {
        let text = render_with(
            &fleet(14, 1),
            &Layout {
                width: 200,
                color: false,
            },
        );
        assert!(
            text.contains(
                "DRIFT (13)\n  BS-01 Postfix policy daemon enabled: zimbraMtaEnableSmtpdPolicyd = FALSE (want TRUE) — 13 hosts in customer000: mta1.customer000.example, mta2.customer000.example, "
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "mta7.customer000.example, … (+6)\n  BS-03 Reject unlisted recipients: zimbraMtaSmtpdRejectUnlistedRecipient = no (want yes) — 4 hosts in customer000: "
            ),
            "{text}"
        );
        assert!(
            text.contains("FAILED (1)\n  unreachable: cannot connect to `HOST` (ADDR): connection refused — 1 host in customer000: mta10.customer000.example\n"),
            "{text}"
        );
    }

    /// However large the fleet, a handful of distinct findings stays a handful of lines,
    /// and no line is wider than the layout.
    #[test_case(24, 80; "24 hosts at 80 columns")]
    #[test_case(200, 80; "200 hosts at 80 columns")]
    #[test_case(1000, 80; "1000 hosts at 80 columns")]
    #[test_case(1000, 160; "1000 hosts at 160 columns")]
    #[test_case(1000, 40; "1000 hosts at 40 columns")]
    fn output_is_bounded_and_fits(hosts: usize, width: usize) {
        let text = render_with(
            &fleet(hosts, hosts / 3),
            &Layout {
                width,
                color: false,
            },
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() <= 40, "{} lines:\n{text}", lines.len());
        for l in &lines {
            assert!(width_of(l) <= width, "{} columns: `{l}`", width_of(l));
        }
        let drift = format!("DRIFT ({})\n  BS-01 ", hosts - hosts / 10);
        assert!(text.contains(&drift), "{text}");
        assert_eq!(text.matches("\n  BS-01 ").count(), 1, "{text}");
    }

    /// Colour adds escapes around the status words and nothing else: without them the
    /// text is the plain one, word for word, line for line.
    #[test]
    fn colour_only_adds_escapes() {
        let report = fleet(30, 4);
        let plain = render_with(
            &report,
            &Layout {
                width: 80,
                color: false,
            },
        );
        assert!(!plain.contains('\u{1b}'));
        let coloured = render_with(
            &report,
            &Layout {
                width: 80,
                color: true,
            },
        );
        assert!(
            coloured.contains("\u{1b}[1m\u{1b}[31mFAILED (3)\u{1b}[0m"),
            "{coloured}"
        );
        assert!(coloured.contains("\u{1b}[33mBS-01\u{1b}[0m"), "{coloured}");
        assert_eq!(strip_ansi(&coloured), plain);
    }

    /// A server's escape sequence is shown, not obeyed, even with colour on.
    #[test]
    fn server_text_is_made_safe_before_colour() {
        let mut report = fleet(10, 1);
        report.hosts[9].error.as_mut().unwrap().message = "\u{1b}[2JALL GOOD".into();
        let text = render_with(
            &report,
            &Layout {
                width: 80,
                color: true,
            },
        );
        assert!(text.contains("\\u{1b}[2JALL GOOD"), "{text}");
        assert!(!text.contains("\u{1b}[2J"), "{text}");
    }

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    fn applied(name: &str, status: HostStatus, batch: Option<usize>, rollout: &str) -> HostReport {
        let mut h = host(name, "eu-1", status);
        h.apply = Some(HostApply {
            batch,
            rollout: rollout.to_string(),
            ..HostApply::default()
        });
        h
    }

    fn gate(passed: bool, smtp: &str) -> GateRecord {
        GateRecord {
            passed,
            finished_at: "2026-11-27T02:01:10Z".into(),
            attempts: if passed { 1 } else { 3 },
            checks: vec![
                GateCheck {
                    name: "services".into(),
                    ok: true,
                    detail: "up".into(),
                },
                GateCheck {
                    name: "smtp".into(),
                    ok: passed,
                    detail: smtp.into(),
                },
            ],
            vantage: "node".into(),
            smtp_transcript: Vec::new(),
        }
    }

    fn reloaded(h: &mut HostReport, ok: bool) {
        let a = h.apply.as_mut().unwrap();
        a.restart = Some(RestartRecord {
            method: "reload: configrewrite mta then postfix reload".into(),
            started_at: String::new(),
            finished_at: String::new(),
            ok,
            output: String::new(),
        });
        for purpose in [
            format!("stage on {} (server entries)", h.name),
            "render (configrewrite mta)".to_string(),
            "reload".to_string(),
        ] {
            a.commands.push(crate::report::model::CommandRecord {
                purpose,
                command: "su - zextras -c '…'".into(),
                exit: "0".into(),
                errors: Vec::new(),
            });
        }
    }

    /// apply: the timeline batch by batch, canary first, with the commands in brief, the
    /// reload, each gate check (with evidence for the canary and for failures), the
    /// rollback; then the hosts not scheduled, grouped.
    #[test]
    fn apply_summary_is_a_timeline_of_batches() {
        let mut report = sample_report();
        report.labels.clear();
        report.command = "apply".into();
        report.duration_ms = 61_000;
        report.domains.clear();
        let mut mx1 = applied("mx1", HostStatus::Compliant, Some(1), "restarted");
        reloaded(&mut mx1, true);
        mx1.apply.as_mut().unwrap().gate = Some(gate(true, "RCPT → 550 5.1.1 User unknown"));
        let mut mx2 = applied(
            "mx2",
            HostStatus::Failed,
            Some(2),
            "failed: health gate failed",
        );
        reloaded(&mut mx2, true);
        mx2.error = Some(HostError::new(
            crate::report::model::ErrorKind::Command,
            "health gate failed: smtp: RCPT answered 451 4.3.5",
        ));
        {
            let a = mx2.apply.as_mut().unwrap();
            a.gate = Some(gate(false, "RCPT answered 451 4.3.5 (policy service down)"));
            a.rollback = Some(RollbackRecord {
                ok: true,
                detail: "staged entries removed, reloaded, gate passed on the old values".into(),
                restart: None,
                gate: None,
            });
        }
        let mut mx3 = applied("mx3", HostStatus::Compliant, Some(2), "restarted");
        reloaded(&mut mx3, true);
        mx3.apply.as_mut().unwrap().gate = Some(gate(true, "RCPT → 550 5.1.1 User unknown"));
        report.hosts = vec![
            mx3,
            mx2,
            mx1,
            applied(
                "store1",
                HostStatus::Compliant,
                None,
                "not needed (not an MTA)",
            ),
            applied(
                "store2",
                HostStatus::Compliant,
                None,
                "not needed (not an MTA)",
            ),
            applied(
                "mx4",
                HostStatus::NotAttempted,
                Some(3),
                "not-attempted (rollout aborted)",
            ),
        ];
        report.summary = Summary::of(&report.hosts);
        assert_eq!(
            render_with(
                &report,
                &Layout {
                    width: 80,
                    color: false
                }
            ),
            indoc! {"
                carbonio-fleet apply · backscatter-hardening · 6 hosts · 61.0s

                FAILED (1)
                  command: health gate failed: smtp: RCPT answered 451 4.3.5 — 1 host in eu-1:
                    mx2

                NOT ATTEMPTED (1)
                  1 host in eu-1: mx4

                ROLLOUT (4 hosts scheduled in 3 batches)
                  batch 1 of 3 (canary) — 1 host in eu-1: mx1
                    restarted
                      3 commands sent (stage, render, reload)
                      reload ok: configrewrite mta then postfix reload
                      gate passed after 1 attempt:
                        services ok: up
                        smtp ok: RCPT → 550 5.1.1 User unknown
                  batch 2 of 3 — 2 hosts in eu-1: mx3, mx2
                    restarted — 1 host in eu-1: mx3
                      reload ok, gate passed after 1 attempt (services, smtp)
                    failed: health gate failed — 1 host in eu-1: mx2
                      3 commands sent (stage, render, reload)
                      reload ok: configrewrite mta then postfix reload
                      gate FAILED after 3 attempts:
                        services ok: up
                        smtp FAILED: RCPT answered 451 4.3.5 (policy service down)
                      rollback ok on mx2: staged entries removed, reloaded, gate passed on the
                        old values
                  batch 3 of 3 — 1 host in eu-1: mx4
                    not-attempted (rollout aborted)
                  not needed (not an MTA) — 2 hosts in eu-1: store1, store2
                  (commands exactly as sent: report.json, report.html and the --log-file audit
                    log)

                COMPLIANT (4)
                  4 hosts in eu-1: mx3, mx1, store1, store2

                6 hosts: 4 compliant, 0 drift, 0 restart-pending, 1 failed, 1 not attempted
            "}
        );
    }

    #[test]
    fn apply_summary_says_which_mtas_hold_a_promotion() {
        use crate::report::model::{HeldBy, PromotionRecord};
        let mut report = sample_report();
        report.command = "apply".into();
        let promoted = |cluster: &str| PromotionRecord {
            cluster: cluster.into(),
            state: "promoted".into(),
            detail: "every MTA passed".into(),
            mtas: vec![format!("mx1.{cluster}")],
            held_by: Vec::new(),
            ran_on: Some(format!("mx1.{cluster}")),
            commands: Vec::new(),
        };
        report.promotions = vec![
            PromotionRecord {
                cluster: "acme".into(),
                state: "promotion-held".into(),
                detail: "1 MTA(s) of the cluster have not proven the staged values".into(),
                mtas: vec!["mx1.acme".into(), "mx2.acme".into()],
                held_by: vec![HeldBy {
                    server: Some("mx2.acme".into()),
                    host: None,
                    reason: "outside --limit".into(),
                }],
                ran_on: None,
                commands: Vec::new(),
            },
            promoted("globex"),
            promoted("initech"),
        ];
        let out = render(&report);
        assert!(
            out.contains(
                "PROMOTION (3 clusters)\n  promoted — 2 clusters: globex, initech\n  promotion-held — cluster acme: 1 MTA(s) of the cluster have not proven the staged values\n    held by server mx2.acme: outside --limit\n"
            ),
            "{out}"
        );
    }

    /// Domain findings of the same shape on many domains are one entry.
    #[test]
    fn domain_findings_group_across_domains() {
        use crate::report::model::{DomainPosture, DomainReport};
        use crate::report::sample::domain_check;
        let mut report = sample_report();
        report.domains = (0..50)
            .map(|c| DomainReport {
                cluster: format!("c{c}"),
                read_on: None,
                resolver: "127.0.0.1:53".into(),
                error: None,
                domains: vec![DomainPosture {
                    domain: format!("d{c}.example"),
                    alias: false,
                    checks: vec![domain_check(
                        "dmarc",
                        ProbeVerdict::Fail,
                        &[("low", &format!("DMARC for d{c}.example has `p=none`"))],
                        None,
                    )],
                }],
            })
            .collect();
        let text = render(&report);
        let block = &text[text.find("\nDOMAINS").expect("domain block")..];
        assert!(
            block.starts_with(
                "\nDOMAINS (50 checks: 0 pass, 50 fail, 0 error)\n  50 domains in 50 clusters: c0, c1,"
            ),
            "{block}"
        );
        assert!(
            block
                .contains("\n  DMARC [low] DMARC for DOMAIN has `p=none` — 50 domains in c0, c1, "),
            "{block}"
        );
        let mut none = sample_report();
        none.domains.clear();
        assert!(!render(&none).contains("DOMAINS"));
    }

    #[test_case("stage on mx1 (server entries)", "stage"; "host and detail dropped")]
    #[test_case("spawn user fix: read master.cf.in", "spawn user fix"; "before the colon")]
    #[test_case("reload", "reload"; "a word")]
    #[test_case("global changes for cluster `acme`", "global changes"; "cluster dropped")]
    fn command_purposes_in_brief(purpose: &str, want: &str) {
        assert_eq!(purpose_word(purpose), want);
    }

    /// The whole check summary of the sample report at an explicit width (never the
    /// terminal's), no colour: any change of wording, order, grouping or wrapping shows
    /// up as a snapshot diff (`src/ui/snapshots/`).
    #[test]
    fn check_summary_at_60_columns() {
        let layout = Layout {
            width: 60,
            color: false,
        };
        insta::assert_snapshot!(render_with(&sample_report(), &layout));
    }
}
