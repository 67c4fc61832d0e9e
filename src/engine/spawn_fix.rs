//! `apply --fix-spawn-user`: the opt-in fix of the policy daemon's spawn user.
//!
//! Stock Carbonio's master.cf.in spawns zmpostfixpolicyd as `user=zimbra`, which no
//! package creates, and a hand-made `zimbra` cannot read localconfig.xml either
//! (docs/carbonio.md §1). The working fix is `user=zextras` on the entry's continuation
//! line. For each MTA whose template entry names a user that cannot start the daemon:
//! 1. as root, read master.cf.in, change only that `user=` token (in Rust, so no `sed`
//!    expression depends on the node's sed), back the file up next to it
//!    (`master.cf.in.cfleet-STAMP`, `cp -p`) and write the new text in place (owner,
//!    mode and inode kept);
//! 2. as zextras, `/opt/zextras/libexec/configrewrite mta`, which renders master.cf from
//!    the template (it reloads nothing: the rollout's restart loads it);
//! 3. gather the node again, so that what follows (verdicts, the change plan, the
//!    report) sees the fixed node as it now is, and fail the host when it still needs
//!    the fix.
//!
//! A node whose template is right but whose running entry is not (rendered before the
//! template was fixed) gets step 2 only. The root write truncates the file in place: a
//! connection lost mid-write can leave it short, which the re-read in step 3 reports,
//! naming the backup.
//!
//! Every command is recorded exactly as sent. master.cf.in belongs to the carbonio-mta
//! package: an upgrade restores `user=zimbra`, which the next `check` reports.

use std::collections::{BTreeMap, BTreeSet};

use crate::carbonio::gather::GatherPlan;
use crate::carbonio::postfix::SpawnProblem;
use crate::engine::events::Events;
use crate::engine::gather::{HostGather, gather_session};
use crate::engine::journal::Journal;
use crate::playbook::Playbook;
use crate::report::model::CommandRecord;
use crate::ssh::{ExecEnd, RunAs, quote};

// The user the fix writes is the product's service user (`Flavour::user`): it owns
// localconfig.xml, which zmpostfixpolicyd reads first.

/// What the fix did.
#[derive(Debug, Default)]
pub struct FixOutcome {
    /// Hosts whose template and running entry now name a user that can start the daemon.
    pub fixed: BTreeSet<String>,
    /// Of those, hosts whose policy service is enabled (its entry active in master.cf):
    /// the rewrite changed master.cf and a forced rewrite reloads nothing, so they must
    /// load it (the rollout's reload) — at once where the running spawn user was broken.
    pub running: BTreeSet<String>,
    /// Every command sent, by host.
    pub commands: BTreeMap<String, Vec<CommandRecord>>,
    /// Hosts where the fix failed, with the reason (nothing after the failing step ran).
    pub failures: BTreeMap<String, String>,
}

/// `text` (a whole master.cf.in) with the `user=` of the first uncommented `policy unix`
/// entry set to `user`, every other byte unchanged; `None` when there is no such entry
/// or token. Entries are read as [`crate::carbonio::postfix::parse_spawn_line`] reads
/// them: a leading `%%…%%` directive stripped, whitespace-led lines continuing the
/// entry, comment lines skipped without ending it.
pub fn fixed_template(text: &str, user: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 8);
    let mut in_policy = false;
    let mut done = false;
    for line in text.split_inclusive('\n') {
        let body = match line.strip_prefix("%%").and_then(|r| r.split_once("%%")) {
            Some((_, rest)) => rest,
            None => line,
        };
        let comment = body.trim_start().starts_with('#');
        if !comment && !body.trim().is_empty() && !body.starts_with(char::is_whitespace) {
            let mut words = body.split_whitespace();
            in_policy = words.next() == Some("policy") && words.next() == Some("unix");
        }
        if in_policy
            && !done
            && !comment
            && let Some(new) = replace_user_token(line, user)
        {
            out.push_str(&new);
            done = true;
            continue;
        }
        out.push_str(line);
    }
    done.then_some(out)
}

/// `line` with its first whitespace-delimited `user=…` token replaced by `user=USER`.
fn replace_user_token(line: &str, user: &str) -> Option<String> {
    let bytes = line.as_bytes();
    // Only a whole token: at the line start or after whitespace.
    let start = line
        .match_indices("user=")
        .map(|(i, _)| i)
        .find(|&i| i == 0 || bytes[i - 1].is_ascii_whitespace())?;
    let end = line[start..]
        .find(|c: char| c.is_whitespace())
        .map_or(line.len(), |k| start + k);
    Some(format!("{}user={user}{}", &line[..start], &line[end..]))
}

/// A spawn-user problem the fix can cure (not "entry not found" or "cannot tell").
fn curable(p: Option<SpawnProblem>) -> bool {
    matches!(
        p,
        Some(
            SpawnProblem::UserMissing(_)
                | SpawnProblem::GroupMissing(_)
                | SpawnProblem::CannotRead { .. }
        )
    )
}

/// Whether the template's entry, or the running one, names a spawn user that cannot
/// start the daemon (a curable problem).
pub fn needs_fix(g: &HostGather) -> bool {
    let Ok(ok) = &g.outcome else {
        return false;
    };
    let f = &ok.facts;
    f.is_mta() && (curable(f.template_spawn_problem()) || curable(f.running_spawn_problem()))
}

/// Fixes every host of `gathers` that needs it (hosts in order), then re-gathers each
/// fixed one in place and checks that the fix holds.
pub async fn run(
    gathers: &mut [HostGather],
    playbook: &Playbook,
    (plan, nonce): (&GatherPlan, &str),
    stamp: &str,
    journal: &Journal,
    events: &Events,
) -> FixOutcome {
    let mut out = FixOutcome::default();
    for g in gathers.iter_mut().filter(|g| needs_fix(g)) {
        let Some(session) = g.session.clone() else {
            continue;
        };
        let name = g.host.name.clone();
        let (policy_active, template_broken) = match &g.outcome {
            Ok(ok) => (
                ok.facts.policy_service.is_some(),
                curable(ok.facts.template_spawn_problem()),
            ),
            Err(_) => continue,
        };
        let flavour = session.flavour();
        let mut result = fix_host(
            &session,
            (&g.host, events),
            stamp,
            template_broken,
            &mut out,
        )
        .await;
        for rec in out.commands.get(&name).into_iter().flatten() {
            events.send(super::apply::command_ran(&name, rec, rec.exit == "0"));
        }
        if result.is_ok() {
            g.outcome = gather_session(&session, &g.host, playbook, plan, nonce).await;
            // Trust what the node says now, not what was sent: the template must name a
            // working user (the running entry follows at the restart).
            let template_ok = g.outcome.as_ref().is_ok_and(|ok| {
                ok.facts.policy_template.is_some() && ok.facts.template_spawn_problem().is_none()
            });
            if !template_ok {
                result = Err(format!(
                    "after the fix the node still reads as needing it (backup {}.cfleet-{stamp})",
                    flavour.master_template()
                ));
            }
        }
        match result {
            Ok(()) => {
                let _ = journal.record(&name, "spawn-user-fixed", flavour.user());
                out.fixed.insert(name.clone());
                if policy_active {
                    out.running.insert(name);
                }
            }
            Err(why) => {
                let _ = journal.record(&name, "spawn-user-fix-failed", &why);
                out.failures.insert(name, why);
            }
        }
    }
    out
}

/// Runs one step of the fix on `host` and records it under `purpose` (also when it could
/// not be run); the output when it exited 0, else why not.
async fn step(
    session: &crate::ssh::Session,
    (host, events): (&crate::inventory::Host, &Events),
    out: &mut FixOutcome,
    (run_as, script, stdin): (RunAs, &str, Option<&[u8]>),
    purpose: &str,
) -> Result<crate::ssh::ExecOutput, String> {
    let result = session
        .exec_announced(
            run_as,
            script,
            stdin,
            host.command_timeout,
            super::apply::command_sent(events, &host.name, purpose),
        )
        .await;
    let (command, exit) = match &result {
        Ok(o) => (o.command.clone(), super::apply::exit_text(&o.end)),
        Err(e) => (script.to_string(), format!("not run: {e}")),
    };
    out.commands
        .entry(host.name.clone())
        .or_default()
        .push(CommandRecord {
            purpose: purpose.to_string(),
            command,
            exit,
            errors: Vec::new(),
        });
    let o = result.map_err(|e| format!("{purpose}: {e}"))?;
    if o.end == ExecEnd::Status(0) {
        Ok(o)
    } else {
        Err(format!(
            "{purpose} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// The steps on one host (the template edit only when `edit`); each command is recorded.
async fn fix_host(
    session: &crate::ssh::Session,
    (host, events): (&crate::inventory::Host, &Events),
    stamp: &str,
    edit: bool,
    out: &mut FixOutcome,
) -> Result<(), String> {
    let q = |s: &str| quote(s).map_err(|e| e.to_string());
    let flavour = session.flavour();
    let (template, user) = (flavour.master_template(), flavour.user());
    let tpl = q(template)?;
    if edit {
        let read = step(
            session,
            (host, events),
            out,
            (RunAs::Root, &format!("cat {tpl}"), None),
            "spawn user fix: read master.cf.in",
        )
        .await?;
        // Byte for byte or not at all: a lossy decoding would rewrite other bytes.
        let text = String::from_utf8(read.stdout)
            .map_err(|_| format!("{template} is not UTF-8: not rewriting it"))?;
        let new = fixed_template(&text, user)
            .ok_or_else(|| format!("no `policy unix … user=` entry in {template}"))?;
        let backup = format!("{template}.cfleet-{stamp}");
        step(
            session,
            (host, events),
            out,
            (
                RunAs::Root,
                &format!("cp -p {tpl} {} && cat > {tpl}", q(&backup)?),
                Some(new.as_bytes()),
            ),
            &format!("spawn user fix: user={user} in master.cf.in (backup {backup})"),
        )
        .await?;
    }
    step(
        session,
        (host, events),
        out,
        (
            RunAs::Service,
            &format!("{} mta", q(flavour.configrewrite())?),
            None,
        ),
        "spawn user fix: render master.cf (configrewrite mta)",
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// carbonio-mta @1b796d2 `mta/postfix_master.cf.in` lines 68–72.
    const STOCK: &str = "anvil     unix  -       -       n       -       1       anvil\n\
scache\t  unix\t-\t-\tn\t-\t1\tscache\n\
%%uncomment VAR:zimbraMtaEnableSmtpdPolicyd%%policy    unix  -       n       n       -       0       spawn\n\
%%uncomment VAR:zimbraMtaEnableSmtpdPolicyd%%\tuser=zimbra argv=/usr/bin/perl /opt/zextras/libexec/zmpostfixpolicyd\n\
#\n";

    #[test]
    fn only_the_policy_entrys_user_changes() {
        let fixed = fixed_template(STOCK, "zextras").unwrap();
        assert_eq!(
            fixed,
            STOCK.replace("\tuser=zimbra argv", "\tuser=zextras argv"),
            "every other byte kept"
        );
        // `user=u:g` is replaced whole; another service's user= is not touched.
        let text = "filter unix - n n - - pipe\n  user=zimbra argv=/x\npolicy unix - n n - 0 spawn\n  user=zimbra:mail argv=/y\n";
        assert_eq!(
            fixed_template(text, "zextras").unwrap(),
            "filter unix - n n - - pipe\n  user=zimbra argv=/x\npolicy unix - n n - 0 spawn\n  user=zextras argv=/y\n"
        );
        assert_eq!(
            fixed_template("smtp inet n - n - 1 postscreen\n", "zextras"),
            None
        );
        assert_eq!(
            fixed_template("policy unix - n n - 0 spawn\n", "zextras"),
            None
        );
    }
}
