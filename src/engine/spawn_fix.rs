//! `apply --fix-spawn-user`: the opt-in fix of the policy daemon's spawn user.
//!
//! Stock Carbonio's master.cf.in spawns zmpostfixpolicyd as `user=zimbra`, which no
//! package creates, and a hand-made `zimbra` cannot read localconfig.xml either
//! (CARBONIO.md §0.2). The working fix is `user=zextras` on the entry's continuation
//! line. For each MTA whose template entry names a user that cannot start the daemon:
//! 1. as root, read master.cf.in, change only that `user=` token (in Rust, so no `sed`
//!    expression depends on the node's sed), back the file up next to it
//!    (`master.cf.in.cfleet-STAMP`, `cp -p`) and write the new text in place (owner,
//!    mode and inode kept);
//! 2. as zextras, `/opt/zextras/libexec/configrewrite mta`, which renders master.cf from
//!    the template (it reloads nothing: the rollout's restart loads it);
//! 3. gather the node again, so that what follows (verdicts, the change plan, the
//!    report) sees the fixed node as it now is.
//!
//! Every command is recorded exactly as sent. master.cf.in belongs to the carbonio-mta
//! package: an upgrade restores `user=zimbra`, which the next `check` reports.

use std::collections::{BTreeMap, BTreeSet};

use crate::carbonio::gather::{GatherPlan, MASTER_TEMPLATE};
use crate::carbonio::postfix::SpawnProblem;
use crate::engine::gather::{HostGather, gather_session};
use crate::engine::journal::Journal;
use crate::playbook::Playbook;
use crate::report::model::CommandRecord;
use crate::ssh::{ExecEnd, RunAs, quote};

/// The user the fix writes: Carbonio's service user, which owns localconfig.xml.
pub const FIXED_USER: &str = "zextras";

/// What the fix did.
#[derive(Debug, Default)]
pub struct FixOutcome {
    /// Hosts whose template now names [`FIXED_USER`].
    pub fixed: BTreeSet<String>,
    /// Of those, hosts whose policy service was running (it needs its master.cf loaded).
    pub running: BTreeSet<String>,
    /// Every command sent, by host.
    pub commands: BTreeMap<String, Vec<CommandRecord>>,
    /// Hosts where the fix failed, with the reason (nothing after the failing step ran).
    pub failures: BTreeMap<String, String>,
}

/// `text` (a whole master.cf.in) with the `user=` of the `policy unix` entry set to
/// `user`, every other byte unchanged; `None` when there is no such entry or token.
/// Entries are read as [`crate::carbonio::postfix::parse_spawn_line`] reads them: a
/// leading `%%…%%` directive stripped, whitespace-led lines continuing the entry.
pub fn fixed_template(text: &str, user: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 8);
    let mut in_policy = false;
    let mut done = false;
    for line in text.split_inclusive('\n') {
        let body = match line.strip_prefix("%%").and_then(|r| r.split_once("%%")) {
            Some((_, rest)) => rest,
            None => line,
        };
        if !body.trim().is_empty() && !body.starts_with(char::is_whitespace) {
            let mut words = body.split_whitespace();
            in_policy = words.next() == Some("policy") && words.next() == Some("unix");
        }
        if in_policy
            && !done
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
    let mut start = None;
    let bytes = line.as_bytes();
    for (i, _) in line.match_indices("user=") {
        // Only a whole token: at the line start, after whitespace or after a `%%`.
        if i == 0 || bytes[i - 1].is_ascii_whitespace() || bytes[i - 1] == b'%' {
            start = Some(i);
            break;
        }
    }
    let start = start?;
    let end = line[start..]
        .find(|c: char| c.is_whitespace())
        .map_or(line.len(), |k| start + k);
    Some(format!("{}user={user}{}", &line[..start], &line[end..]))
}

/// Whether a host's template entry needs the fix.
fn needs_fix(g: &HostGather) -> bool {
    let Ok(ok) = &g.outcome else {
        return false;
    };
    let f = &ok.facts;
    f.is_mta()
        && f.policy_template.as_ref().is_some_and(|t| {
            matches!(
                f.spawn.problem(Some(t)),
                Some(
                    SpawnProblem::UserMissing(_)
                        | SpawnProblem::GroupMissing(_)
                        | SpawnProblem::CannotRead { .. }
                )
            )
        })
}

/// Fixes every host of `gathers` that needs it (one at a time per host, hosts in
/// order), then re-gathers the fixed ones in place.
pub async fn run(
    gathers: &mut [HostGather],
    playbook: &Playbook,
    plan: &GatherPlan,
    nonce: &str,
    stamp: &str,
    journal: &Journal,
) -> FixOutcome {
    let mut out = FixOutcome::default();
    for g in gathers.iter_mut().filter(|g| needs_fix(g)) {
        let Some(session) = g.session.clone() else {
            continue;
        };
        let name = g.host.name.clone();
        let running = g
            .outcome
            .as_ref()
            .is_ok_and(|ok| ok.facts.policy_service.is_some());
        match fix_host(&session, &g.host, stamp, &mut out).await {
            Ok(()) => {
                let _ = journal.record(&name, "spawn-user-fixed", FIXED_USER);
                out.fixed.insert(name.clone());
                if running {
                    out.running.insert(name.clone());
                }
                g.outcome = gather_session(&session, &g.host, playbook, plan, nonce).await;
            }
            Err(why) => {
                let _ = journal.record(&name, "spawn-user-fix-failed", &why);
                out.failures.insert(name, why);
            }
        }
    }
    out
}

/// Runs one step of the fix on `host` and records it under `purpose`; the output when
/// it exited 0, else why not.
async fn step(
    session: &crate::ssh::Session,
    host: &crate::inventory::Host,
    out: &mut FixOutcome,
    (run_as, script, stdin): (RunAs, &str, Option<&[u8]>),
    purpose: &str,
) -> Result<crate::ssh::ExecOutput, String> {
    let o = session
        .exec(run_as, script, stdin, host.command_timeout)
        .await
        .map_err(|e| format!("{purpose}: {e}"))?;
    out.commands
        .entry(host.name.clone())
        .or_default()
        .push(CommandRecord {
            purpose: purpose.to_string(),
            command: o.command.clone(),
            exit: super::apply::exit_text(&o.end),
            errors: Vec::new(),
        });
    if o.end == ExecEnd::Status(0) {
        Ok(o)
    } else {
        Err(format!(
            "{purpose} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// The three steps on one host; each command is recorded.
async fn fix_host(
    session: &crate::ssh::Session,
    host: &crate::inventory::Host,
    stamp: &str,
    out: &mut FixOutcome,
) -> Result<(), String> {
    let q = |s: &str| quote(s).map_err(|e| e.to_string());
    let tpl = q(MASTER_TEMPLATE)?;
    let read = step(
        session,
        host,
        out,
        (RunAs::Root, &format!("cat {tpl}"), None),
        "spawn user fix: read master.cf.in",
    )
    .await?;
    let text = String::from_utf8_lossy(&read.stdout).into_owned();
    let new = fixed_template(&text, FIXED_USER)
        .ok_or_else(|| format!("no `policy unix … user=` entry in {MASTER_TEMPLATE}"))?;
    let backup = format!("{MASTER_TEMPLATE}.cfleet-{stamp}");
    step(
        session,
        host,
        out,
        (
            RunAs::Root,
            &format!("cp -p {tpl} {} && cat > {tpl}", q(&backup)?),
            Some(new.as_bytes()),
        ),
        &format!("spawn user fix: user={FIXED_USER} in master.cf.in (backup {backup})"),
    )
    .await?;
    step(
        session,
        host,
        out,
        (
            RunAs::Zextras,
            "/opt/zextras/libexec/configrewrite mta",
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
