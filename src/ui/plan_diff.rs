//! `plan` as a diff an operator reviews before approving (like `terraform plan` or
//! `ansible --check --diff`): per cluster its global changes and the promotion command,
//! per host its server-entry changes, what is staged on it, its reload batch and the
//! exact commands; blocked changes with why; one summary line at the end.
//!
//! Rendered from a [`PlanFile`] alone, so what is printed and what `--out` writes are
//! the same plan. Pure: colour and width are decided by the caller
//! ([`RenderOptions::for_stdout`]); values read from nodes are made terminal-safe here,
//! before any colour code is added around them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::carbonio::values;
use crate::engine::changes::NodeBatch;
use crate::engine::plan_file::{CommandKind, HostBasis, PlanFile, PlannedCommand, plural};
use crate::engine::stage::{EntryKind, StageEntry};

/// How the plan is drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// ANSI colour: `+` green, `-` red, `~` yellow.
    pub colour: bool,
    /// Wrap command lines to this many columns (continuations indented); `None`: never
    /// (files and pipes keep each command on one line, whole and pasteable).
    pub width: Option<usize>,
}

impl RenderOptions {
    /// For stdout: colour as `--color`, `NO_COLOR` and the terminal decide, wrapping only
    /// on a terminal (a file or pipe keeps each command whole on one line).
    pub fn for_stdout() -> RenderOptions {
        use std::io::IsTerminal as _;
        let layout = crate::ui::term::Layout::stdout();
        RenderOptions {
            colour: layout.color,
            width: std::io::stdout().is_terminal().then_some(layout.width),
        }
    }
}

/// What a line marks.
#[derive(Clone, Copy)]
enum Mark {
    Add,
    Remove,
    Change,
}

struct Out {
    s: String,
    o: RenderOptions,
}

impl Out {
    fn line(&mut self, text: &str) {
        let _ = writeln!(self.s, "{text}");
    }

    fn marked(&mut self, indent: usize, mark: Mark, text: &str) {
        let (sign, colour) = match mark {
            Mark::Add => ('+', "32"),
            Mark::Remove => ('-', "31"),
            Mark::Change => ('~', "33"),
        };
        let pad = " ".repeat(indent);
        if self.o.colour {
            let _ = writeln!(self.s, "{pad}\x1b[{colour}m{sign} {text}\x1b[0m");
        } else {
            let _ = writeln!(self.s, "{pad}{sign} {text}");
        }
    }

    /// `$ COMMAND` at `indent`, wrapped to the width with continuation lines indented
    /// four more columns (preferably at a space).
    fn command(&mut self, indent: usize, cmd: &str) {
        let pad = " ".repeat(indent);
        let first = format!("{pad}$ ");
        let cont = " ".repeat(indent + 4);
        let Some(width) = self.o.width else {
            let _ = writeln!(self.s, "{first}{cmd}");
            return;
        };
        let chars: Vec<char> = cmd.chars().collect();
        let mut start = 0;
        let mut prefix = first;
        while start < chars.len() {
            let room = width.saturating_sub(prefix.chars().count()).max(20);
            let mut end = (start + room).min(chars.len());
            if end < chars.len()
                && let Some(sp) = chars[start..end].iter().rposition(|c| *c == ' ')
                && sp > room / 2
            {
                end = start + sp + 1;
            }
            let piece: String = chars[start..end].iter().collect();
            let _ = writeln!(self.s, "{prefix}{}", piece.trim_end());
            start = end;
            prefix = cont.clone();
        }
    }
}

/// Node-supplied text, safe to print (control characters shown as escapes).
fn safe(s: &str) -> String {
    crate::ui::safe::terminal_safe(s).into_owned()
}

/// The values after one ProvUtil modify command (`mcf …` or `ms SERVER …`) on `attr`:
/// `+attr v` adds, `-attr v` removes, plain `attr v` pairs replace the list (`""`
/// clears it), as ProvUtil does.
pub fn values_after(current: &[String], args: &[String], attr: &str) -> Vec<String> {
    let skip = match args.first().map(String::as_str) {
        Some("ms") => 2,
        _ => 1,
    };
    let mut out = current.to_vec();
    let mut replaced = false;
    for pair in args.get(skip..).unwrap_or_default().chunks(2) {
        let [name, value] = pair else {
            continue;
        };
        if let Some(a) = name.strip_prefix('+') {
            if a == attr && !out.contains(value) {
                out.push(value.clone());
            }
        } else if let Some(a) = name.strip_prefix('-') {
            if a == attr {
                out.retain(|v| v != value);
            }
        } else if name == attr {
            if !replaced {
                out.clear();
                replaced = true;
            }
            if !value.is_empty() {
                out.push(value.clone());
            }
        }
    }
    out
}

/// `attr: current → desired`, or for a multi-valued attribute `attr` with a `+`/`-`
/// line per value added or removed.
fn attr_change(
    out: &mut Out,
    indent: usize,
    label: &str,
    multi: bool,
    before: &[String],
    after: &[String],
) {
    let added: Vec<&String> = after.iter().filter(|v| !before.contains(v)).collect();
    let removed: Vec<&String> = before.iter().filter(|v| !after.contains(v)).collect();
    if multi && !(added.is_empty() && removed.is_empty()) {
        out.marked(indent, Mark::Change, label);
        for v in removed {
            out.marked(indent + 4, Mark::Remove, &safe(v));
        }
        for v in added {
            out.marked(indent + 4, Mark::Add, &safe(v));
        }
    } else {
        out.marked(
            indent,
            Mark::Change,
            &format!(
                "{label}: {} → {}",
                safe(&values::render(before)),
                safe(&values::render(after))
            ),
        );
    }
}

fn entry_label(e: &StageEntry) -> &'static str {
    match e.kind {
        EntryKind::Temporary if e.present => "staged by an earlier run, not written again",
        EntryKind::Temporary => "temporary, removed at promotion",
        EntryKind::ListExtended => "the server's own list extended, kept",
        EntryKind::OverrideReplaced => "server override replaced until promotion",
    }
}

fn batch_label(plan: &PlanFile, host: &str) -> Option<String> {
    let i = plan
        .batches
        .iter()
        .position(|b| b.iter().any(|h| h == host))?;
    Some(if i == 0 {
        "batch 1 (canary)".to_string()
    } else {
        format!("batch {}", i + 1)
    })
}

fn commands_of<'a>(
    plan: &'a PlanFile,
    host: &'a str,
    kind: CommandKind,
) -> impl Iterator<Item = &'a PlannedCommand> {
    plan.commands
        .iter()
        .filter(move |c| c.host == host && c.kind == kind)
}

fn print_commands<'a>(
    out: &mut Out,
    indent: usize,
    cmds: impl Iterator<Item = &'a PlannedCommand>,
) {
    for c in cmds {
        out.line(&format!("{}# {}", " ".repeat(indent), safe(&c.purpose)));
        out.command(indent, &safe(&c.command));
    }
}

/// The whole plan as text.
pub fn render(plan: &PlanFile, o: RenderOptions) -> String {
    let mut out = Out {
        s: String::new(),
        o,
    };
    let multi: BTreeMap<&str, bool> = plan
        .controls
        .iter()
        .map(|c| (c.attr.as_str(), c.multi_valued))
        .collect();
    let is_multi = |attr: &str| multi.get(attr).copied().unwrap_or(false);
    let user_of = |h: &str| {
        plan.basis
            .get(h)
            .and_then(|b| b.flavour)
            .unwrap_or_default()
            .user()
            .to_string()
    };
    let mut by_cluster: BTreeMap<&str, Vec<(&str, &HostBasis)>> = BTreeMap::new();
    for h in &plan.hosts {
        if let Some(b) = plan.basis.get(h) {
            by_cluster
                .entry(b.cluster.as_str())
                .or_default()
                .push((h.as_str(), b));
        }
    }
    out.line(&format!(
        "plan · {} · {} in {}",
        safe(&plan.playbook.name),
        plural(plan.hosts.len(), "host", "hosts"),
        plural(by_cluster.len(), "cluster", "clusters")
    ));
    let touched = plan.touched_hosts();
    for (cluster, members) in &by_cluster {
        let global = plan.changes.global.get(*cluster);
        let blocked: Vec<_> = plan
            .changes
            .blocked
            .iter()
            .filter(|b| b.cluster == *cluster)
            .collect();
        let hosts: Vec<&(&str, &HostBasis)> = members
            .iter()
            .filter(|(h, _)| touched.contains(h))
            .collect();
        if global.is_none() && blocked.is_empty() && hosts.is_empty() {
            continue;
        }
        out.line("");
        let mtas = members
            .iter()
            .find_map(|(_, b)| (!b.ldap_mtas.is_empty()).then(|| b.ldap_mtas.join(", ")))
            .unwrap_or_else(|| "unknown".into());
        out.line(&format!(
            "cluster {}  (MTAs in LDAP: {})",
            safe(cluster),
            safe(&mtas)
        ));
        if let Some(g) = global {
            global_block(&mut out, plan, cluster, g, &is_multi, &user_of);
        }
        for b in &blocked {
            out.line(&format!(
                "  ! blocked, not changed: {}: {}",
                b.control,
                safe(&b.reason)
            ));
        }
        for (host, basis) in hosts {
            host_block(&mut out, plan, host, basis, &is_multi, &user_of);
        }
    }
    unreachable_block(&mut out, plan);
    out.line("");
    out.line(&plan.summary_line());
    out.s
}

/// A cluster's global changes: each attribute before and after, the promotion command
/// and the node and user that run it, and what holds the promotion back.
fn global_block(
    out: &mut Out,
    plan: &PlanFile,
    cluster: &str,
    g: &NodeBatch,
    is_multi: &dyn Fn(&str) -> bool,
    user_of: &dyn Fn(&str) -> String,
) {
    let promote: Vec<&PlannedCommand> = plan
        .commands
        .iter()
        .filter(|c| c.kind == CommandKind::Promote && c.cluster == cluster)
        .collect();
    let on = promote.first().map(|c| c.host.as_str()).unwrap_or(&g.node);
    out.line(&format!(
        "  global config: staged per MTA in its batch first, then promoted on {} as {} once every MTA passed its gate",
        on,
        user_of(on)
    ));
    let current = |attr: &str| {
        plan.basis
            .get(&g.node)
            .and_then(|b| b.attrs.get(attr))
            .map(|a| a.global.clone())
            .unwrap_or_default()
    };
    for c in &g.changes {
        let before = current(&c.attr);
        let after = values_after(&before, &c.args, &c.attr);
        attr_change(
            out,
            4,
            &format!("{} ({})", c.attr, c.control),
            is_multi(&c.attr),
            &before,
            &after,
        );
    }
    for c in promote {
        out.line(&format!("    # {}", safe(&c.purpose)));
        out.command(4, &safe(&c.command));
    }
    if let Some(held) = plan.promotion_held_by.get(cluster) {
        out.line("  promotion held (exit 2): even if every staged MTA passes, the global config stays untouched:");
        for h in held {
            out.line(&format!(
                "    ! held by {}: {}",
                safe(h.name()),
                safe(&h.reason)
            ));
        }
    }
}

/// The hosts the plan could not gather, each with why: nothing is planned for them.
fn unreachable_block(out: &mut Out, plan: &PlanFile) {
    let unreachable: Vec<(&String, &HostBasis)> =
        plan.basis.iter().filter(|(_, b)| !b.reachable).collect();
    if !unreachable.is_empty() {
        out.line("");
        out.line("not gathered (nothing planned for them):");
        for (h, b) in unreachable {
            out.line(&format!(
                "  ! {}: {}",
                safe(h),
                safe(b.error.as_deref().unwrap_or("unreachable"))
            ));
        }
    }
}

/// One host's part of the plan: its server-entry changes, what is staged on it, its
/// reload batch and the exact commands.
fn host_block(
    out: &mut Out,
    plan: &PlanFile,
    host: &str,
    basis: &HostBasis,
    is_multi: &dyn Fn(&str) -> bool,
    user_of: &dyn Fn(&str) -> String,
) {
    let server = basis.server.clone().unwrap_or_else(|| host.to_string());
    let reload = batch_label(plan, host)
        .map(|b| format!("reload in {b}"))
        .unwrap_or_else(|| "no reload".into());
    out.line("");
    out.line(&format!(
        "  host {}  ({}, {}, as {})",
        safe(host),
        basis.platform.as_deref().unwrap_or("?"),
        reload,
        user_of(host)
    ));
    if basis.spawn_fix_needed {
        let how = if plan.spawn_fixes.iter().any(|h| h == host) {
            "apply repairs it first (`[fix] spawn_user = true` in the playbook)"
        } else {
            "apply repairs it with `--fix-spawn-user` (or `[fix] spawn_user = true` in the playbook); without, the policy controls stay blocked"
        };
        let f = basis.flavour.unwrap_or_default();
        out.line(&format!(
            "    ! policy spawn user (PRE-POLICY-SPAWN-USER): {how}:\n      as root, back up {} and set user={} on its policy entry; as {}, configrewrite mta",
            f.master_template(),
            f.user(),
            f.user()
        ));
    }
    if let Some(b) = plan.changes.server.get(host) {
        out.line(&format!(
            "    server entry {}, before the rollout:",
            safe(&server)
        ));
        for c in &b.changes {
            let before = basis
                .attrs
                .get(&c.attr)
                .and_then(|a| a.server.clone())
                .unwrap_or_default();
            let after = values_after(&before, &c.args, &c.attr);
            attr_change(
                out,
                6,
                &format!("{} ({})", c.attr, c.control),
                is_multi(&c.attr),
                &before,
                &after,
            );
        }
        print_commands(out, 6, commands_of(plan, host, CommandKind::Server));
    }
    if let Some(st) = plan.staging.nodes.get(host) {
        if !st.entries.is_empty() {
            out.line(&format!("    staged on server entry {}:", safe(&st.server)));
        }
        for e in &st.entries {
            // What the node runs on: its own entry's values, else the global ones.
            let attr = basis.attrs.get(&e.attr);
            let before = attr
                .and_then(|a| a.server.clone())
                .or_else(|| attr.map(|a| a.global.clone()))
                .unwrap_or_default();
            let after = if e.staged.is_empty() {
                attr.map(|a| a.global.clone()).unwrap_or_default()
            } else {
                e.staged.clone()
            };
            attr_change(
                out,
                6,
                &format!("{} ({}, {})", e.attr, e.control, entry_label(e)),
                is_multi(&e.attr),
                &before,
                &after,
            );
        }
        for m in &st.masked {
            out.line(&format!(
                "    ! not staged: {} {}: {}",
                m.control,
                m.attr,
                safe(&m.reason)
            ));
        }
    }
    print_commands(out, 6, commands_of(plan, host, CommandKind::Stage));
    print_commands(out, 6, commands_of(plan, host, CommandKind::Reload));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan_file::tests::sample_plan;
    use test_case::test_case;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test_case(&["a"], &["mcf", "+attr", "b"], &["a", "b"]; "add to a list")]
    #[test_case(&["a", "b"], &["mcf", "-attr", "a"], &["b"]; "remove from a list")]
    #[test_case(&["FALSE"], &["mcf", "attr", "TRUE"], &["TRUE"]; "replace a single value")]
    #[test_case(&[], &["ms", "mx1", "attr", "a", "attr", "b"], &["a", "b"]; "set a whole list on a server")]
    #[test_case(&["a"], &["ms", "mx1", "attr", ""], &[]; "clear a server entry")]
    #[test_case(&["a"], &["mcf", "other", "x"], &["a"]; "another attribute is not this one")]
    fn values_after_a_command(current: &[&str], args: &[&str], want: &[&str]) {
        assert_eq!(values_after(&v(current), &v(args), "attr"), v(want));
    }

    #[test]
    fn the_plan_reads_as_a_diff_with_commands_and_a_summary() {
        let text = render(&sample_plan(), RenderOptions::default());
        for want in [
            "plan · backscatter-hardening · 3 hosts in 1 cluster",
            "cluster acme  (MTAs in LDAP: mta1.acme, mta2.acme)",
            "    ~ zimbraMtaEnableSmtpdPolicyd (BS-01): FALSE → TRUE\n",
            "    ~ zimbraMtaRestriction (BS-04)\n        + check_policy_service unix:private/policy\n",
            "  host mta1.acme  (systemd, reload in batch 1 (canary), as zextras)",
            "  host mta2.acme  (systemd, reload in batch 2, as zextras)",
            "    staged on server entry mta1.acme:\n      ~ zimbraMtaRestriction (BS-04, temporary, removed at promotion)\n          + check_policy_service unix:private/policy\n",
            "      # stage batch 1 (canary): mta1.acme\n      $ su - zextras -c 'printf ...'\n",
            "Plan: 2 attributes to change on 1 cluster, 2 hosts to reload in 2 batches (canary first), 0 blocked, 1 already compliant.\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        // A host with nothing to do is counted, not listed.
        assert!(!text.contains("host mbox1.acme"), "{text}");
        assert!(!text.contains('\x1b'), "no colour unless asked: {text}");
    }

    #[test]
    fn colour_marks_only_the_diff_lines() {
        let text = render(
            &sample_plan(),
            RenderOptions {
                colour: true,
                width: None,
            },
        );
        assert!(
            text.contains("\x1b[33m~ zimbraMtaEnableSmtpdPolicyd (BS-01): FALSE → TRUE\x1b[0m"),
            "{text}"
        );
        assert!(
            text.contains("\x1b[32m+ check_policy_service unix:private/policy\x1b[0m"),
            "{text}"
        );
        assert!(!text.contains("\x1b[31m"), "nothing is removed: {text}");
        assert!(text.ends_with("already compliant.\n"), "{text}");
    }

    #[test]
    fn a_removed_value_and_blocked_and_unreachable_hosts_are_shown() {
        let mut plan = sample_plan();
        let g = plan.changes.global.get_mut("acme").unwrap();
        g.changes[1].args = v(&[
            "mcf",
            "-zimbraMtaRestriction",
            "reject_invalid_helo_hostname",
        ]);
        plan.changes.blocked.push(crate::engine::changes::Blocked {
            control: "BS-01".into(),
            cluster: "acme".into(),
            because_of: v(&["mta2.acme"]),
            reason: "the policy service's spawn user is missing on mta2.acme".into(),
        });
        let b = plan.basis.get_mut("mbox1.acme").unwrap();
        b.reachable = false;
        b.error = Some("connection refused\x1b[2J".into());
        let text = render(
            &plan,
            RenderOptions {
                colour: true,
                width: None,
            },
        );
        assert!(
            text.contains("\x1b[31m- reject_invalid_helo_hostname\x1b[0m"),
            "{text}"
        );
        assert!(
            text.contains("  ! blocked, not changed: BS-01: the policy service's spawn user is missing on mta2.acme"),
            "{text}"
        );
        // A node's text never carries its own escape sequences to the terminal.
        assert!(
            text.contains("  ! mbox1.acme: connection refused\\u{1b}[2J"),
            "{text}"
        );
        assert!(
            text.ends_with(", 1 blocked, 0 already compliant, 1 not gathered.\n"),
            "{text}"
        );
    }

    #[test]
    fn long_commands_wrap_with_indented_continuations_only_when_a_width_is_set() {
        let mut plan = sample_plan();
        let long = format!("su - zextras -c '{}'", "printf word ".repeat(20));
        plan.commands[0].command = long.clone();
        let flat = render(&plan, RenderOptions::default());
        assert!(flat.contains(&format!("      $ {long}\n")), "{flat}");
        let wrapped = render(
            &plan,
            RenderOptions {
                colour: false,
                width: Some(60),
            },
        );
        let lines: Vec<&str> = wrapped
            .lines()
            .skip_while(|l| !l.starts_with("      $ su - zextras"))
            .take_while(|l| l.starts_with("      $ ") || l.starts_with("          "))
            .collect();
        assert!(lines.len() > 2, "{wrapped}");
        assert!(lines.iter().all(|l| l.chars().count() <= 60), "{lines:#?}");
        assert!(
            lines[1..].iter().all(|l| l.starts_with("          ")),
            "{lines:#?}"
        );
        // Joined again, the pieces are the command (breaks fall on its spaces).
        let joined: Vec<&str> = lines
            .iter()
            .map(|l| l.trim_start().trim_start_matches("$ "))
            .collect();
        assert_eq!(joined.join(" "), long.trim_end());
    }

    #[test]
    fn nothing_to_do_says_so_in_the_summary() {
        let mut plan = sample_plan();
        plan.changes = Default::default();
        plan.staging = Default::default();
        plan.batches.clear();
        plan.commands.clear();
        let text = render(&plan, RenderOptions::default());
        assert!(
            text.ends_with("\nPlan: 0 attributes to change on 0 clusters, 0 hosts to reload in 0 batches, 0 blocked, 3 already compliant.\n"),
            "{text}"
        );
        assert!(!text.contains("cluster acme"), "{text}");
    }

    /// The whole plan of the sample, as a file gets it (commands whole) and as a
    /// 72-column terminal gets it (commands wrapped), no colour.
    #[test_case(None; "unwrapped")]
    #[test_case(Some(72); "at 72 columns")]
    fn plan_snapshot(width: Option<usize>) {
        let text = render(
            &sample_plan(),
            RenderOptions {
                colour: false,
                width,
            },
        );
        let name = match width {
            None => "plan_unwrapped".to_string(),
            Some(w) => format!("plan_at_{w}_columns"),
        };
        insta::assert_snapshot!(name, text);
    }
}
