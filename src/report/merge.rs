//! Joins the reports of `--shard K/N` runs into one fleet-wide report
//! (`carbonio-fleet report merge`). It refuses to mix playbooks, commands or inventories
//! and never lets a host appear twice; it does not re-evaluate anything, it only
//! recomputes the summary, the run window and the exit code from the shards. Domain
//! sections are kept once per cluster.

use jiff::Timestamp;
use thiserror::Error;

use super::model::Report;
use super::model::Summary;
use crate::exit::ExitCode;

/// Why shard reports cannot be merged. Shards are numbered from 1 in the order given.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MergeError {
    #[error("no report to merge")]
    Empty,
    #[error(
        "shard {shard} ran playbook `{other}` but shard 1 ran `{first}` \
         (merge only shards of one run of one playbook)"
    )]
    PlaybookMismatch {
        shard: usize,
        /// `name (sha256 …)` of shard 1.
        first: String,
        /// `name (sha256 …)` of the refused shard.
        other: String,
    },
    #[error("shard {shard} is a `{other}` report but shard 1 is a `{first}` report")]
    CommandMismatch {
        shard: usize,
        first: String,
        other: String,
    },
    #[error(
        "shard {shard} has report schema version {other} but shard 1 has {first} \
         (re-run the older shard with the same carbonio-fleet version)"
    )]
    SchemaMismatch {
        shard: usize,
        first: u32,
        other: u32,
    },
    #[error(
        "shard {shard} was run against inventory sha256 {other} but shard 1 against {first} \
         (the shards did not see the same inventory)"
    )]
    InventoryMismatch {
        shard: usize,
        first: String,
        other: String,
    },
    #[error("host `{host}` appears in shard {first_shard} and in shard {second_shard}")]
    DuplicateHost {
        host: String,
        first_shard: usize,
        second_shard: usize,
    },
}

/// The worst of several exit codes when shards disagree ([`ExitCode::worst`]); `0` for
/// none. A code that is not one of ours ranks with a usage error, just above success,
/// so it is never silently dropped.
pub fn worst_exit_code(codes: impl IntoIterator<Item = i32>) -> i32 {
    codes
        .into_iter()
        .max_by_key(|&code| ExitCode::from_code(code).unwrap_or(ExitCode::Usage))
        .unwrap_or(ExitCode::Ok.code())
}

fn playbook_label(report: &Report) -> String {
    format!(
        "{} (sha256 {})",
        report.playbook.name, report.playbook.sha256
    )
}

/// Joins distinct values in first-seen order.
fn join_distinct<'a>(values: impl IntoIterator<Item = &'a str>, sep: &str) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for value in values {
        if !seen.contains(&value) {
            seen.push(value);
        }
    }
    seen.join(sep)
}

/// Merges shard reports into one. The result lists hosts sorted by name, so the order of
/// the files on the command line does not matter; metadata that may legitimately differ
/// between shards (operator, tool version, `--limit`) is joined, distinct values only.
pub fn merge(reports: Vec<Report>) -> Result<Report, MergeError> {
    let mut iter = reports.into_iter();
    let mut merged = iter.next().ok_or(MergeError::Empty)?;
    let rest: Vec<Report> = iter.collect();

    for (i, other) in rest.iter().enumerate() {
        let shard = i + 2;
        if other.playbook.name != merged.playbook.name
            || other.playbook.sha256 != merged.playbook.sha256
        {
            return Err(MergeError::PlaybookMismatch {
                shard,
                first: playbook_label(&merged),
                other: playbook_label(other),
            });
        }
        if other.command != merged.command {
            return Err(MergeError::CommandMismatch {
                shard,
                first: merged.command.clone(),
                other: other.command.clone(),
            });
        }
        if other.schema_version != merged.schema_version {
            return Err(MergeError::SchemaMismatch {
                shard,
                first: merged.schema_version,
                other: other.schema_version,
            });
        }
        if other.inventory.sha256 != merged.inventory.sha256 {
            return Err(MergeError::InventoryMismatch {
                shard,
                first: merged.inventory.sha256.clone(),
                other: other.inventory.sha256.clone(),
            });
        }
    }

    // Host name → shard number (1-based), to name both shards on a duplicate.
    let mut owner: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, report) in std::iter::once(&merged).chain(rest.iter()).enumerate() {
        for host in &report.hosts {
            if let Some(&first_shard) = owner.get(&host.name) {
                return Err(MergeError::DuplicateHost {
                    host: host.name.clone(),
                    first_shard,
                    second_shard: i + 1,
                });
            }
            owner.insert(host.name.clone(), i + 1);
        }
    }

    let all: Vec<&Report> = std::iter::once(&merged).chain(rest.iter()).collect();
    let operator = join_distinct(all.iter().map(|r| r.operator.as_str()), ", ");
    let version = join_distinct(all.iter().map(|r| r.tool.version.as_str()), " + ");
    let limits: Vec<&str> = all.iter().filter_map(|r| r.limit.as_deref()).collect();
    let limit = (!limits.is_empty()).then(|| join_distinct(limits, "; "));
    let exit_code = worst_exit_code(all.iter().map(|r| r.exit_code));

    // RFC 3339 strings compare correctly only when parsed (offsets, fractional seconds).
    let started = earliest_or_latest(all.iter().map(|r| r.started_at.as_str()), false);
    let finished = earliest_or_latest(all.iter().map(|r| r.finished_at.as_str()), true);
    let duration_ms = match (started.1, finished.1) {
        (Some(s), Some(f)) => u64::try_from(f.duration_since(s).as_millis()).unwrap_or(0),
        // Unparseable timestamps: the longest shard is the best lower bound we have.
        _ => all.iter().map(|r| r.duration_ms).max().unwrap_or(0),
    };
    let started_at = started.0;
    let finished_at = finished.0;

    for other in rest {
        merged.hosts.extend(other.hosts);
        // A cluster split across shards was read by each of them: keep one section per
        // cluster, preferring a reading over a failure to read.
        for d in other.domains {
            match merged.domains.iter_mut().find(|m| m.cluster == d.cluster) {
                None => merged.domains.push(d),
                Some(m) if m.error.is_some() && d.error.is_none() => *m = d,
                Some(_) => {}
            }
        }
    }
    merged.hosts.sort_by(|a, b| a.name.cmp(&b.name));
    merged.summary = Summary::of(&merged.hosts);
    merged.operator = operator;
    merged.tool.version = version;
    merged.limit = limit;
    merged.exit_code = exit_code;
    merged.started_at = started_at;
    merged.finished_at = finished_at;
    merged.duration_ms = duration_ms;
    Ok(merged)
}

/// The earliest (or latest) timestamp of `values`, with its parsed form. Unparseable
/// values lose against parseable ones; if none parses, the first value is kept.
fn earliest_or_latest<'a>(
    values: impl IntoIterator<Item = &'a str>,
    latest: bool,
) -> (String, Option<Timestamp>) {
    let mut best: Option<(&str, Option<Timestamp>)> = None;
    for value in values {
        let parsed = value.parse::<Timestamp>().ok();
        let better = match (&best, parsed) {
            (None, _) => true,
            (Some((_, None)), Some(_)) => true,
            (Some((_, Some(b))), Some(p)) => {
                if latest {
                    p > *b
                } else {
                    p < *b
                }
            }
            _ => false,
        };
        if better {
            best = Some((value, parsed));
        }
    }
    best.map(|(s, t)| (s.to_string(), t)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample::sample_report;

    /// Splits the sample into two shards the way `--shard 1/2` and `2/2` would.
    fn shards() -> (Report, Report) {
        let full = sample_report();
        let mut a = full.clone();
        let mut b = full;
        a.hosts
            .retain(|h| ["mail1", "mail4", "store1"].contains(&h.name.as_str()));
        b.hosts
            .retain(|h| ["mail2", "mail3", "mail5"].contains(&h.name.as_str()));
        a.summary = Summary::of(&a.hosts);
        b.summary = Summary::of(&b.hosts);
        a.started_at = "2026-11-27T02:00:05Z".into();
        a.finished_at = "2026-11-27T02:00:40Z".into();
        a.exit_code = ExitCode::HostFailed.code();
        b.started_at = "2026-11-27T01:59:58.500Z".into();
        b.finished_at = "2026-11-27T03:01:00+01:00".into(); // 02:01:00Z, written with an offset
        b.exit_code = ExitCode::Drift.code();
        b.operator = "ops@runner-2".into();
        (a, b)
    }

    #[test]
    fn merge_joins_shards_and_recomputes_the_run() {
        let (a, b) = shards();
        let merged = merge(vec![b, a]).unwrap();
        let names: Vec<&str> = merged.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["mail1", "mail2", "mail3", "mail4", "mail5", "store1"]
        );
        assert_eq!(merged.summary, sample_report().summary);
        assert_eq!(merged.started_at, "2026-11-27T01:59:58.500Z");
        assert_eq!(merged.finished_at, "2026-11-27T03:01:00+01:00");
        assert_eq!(merged.duration_ms, 61_500);
        assert_eq!(merged.exit_code, ExitCode::HostFailed.code());
        assert_eq!(merged.operator, "ops@runner-2, ops@bastion");
    }

    #[test]
    fn domain_sections_are_kept_once_per_cluster() {
        let (mut a, b) = shards();
        // Shard a could not read cluster acme's domains; shard b could.
        a.domains[0].error = Some("cannot reconnect".into());
        a.domains[0].domains.clear();
        let mut other = b.domains[0].clone();
        other.cluster = "eu-2".into();
        let mut b = b;
        b.domains.push(other);
        let merged = merge(vec![a, b.clone()]).unwrap();
        let clusters: Vec<&str> = merged.domains.iter().map(|d| d.cluster.as_str()).collect();
        assert_eq!(clusters, ["acme", "eu-2"]);
        assert_eq!(merged.domains[0], b.domains[0]);
    }

    #[test]
    fn merge_of_one_report_is_that_report() {
        let merged = merge(vec![sample_report()]).unwrap();
        assert_eq!(merged.summary, sample_report().summary);
        assert_eq!(merged.hosts.len(), 6);
        assert_eq!(merged.duration_ms, 83_400);
    }

    #[test]
    fn exit_code_is_the_worst_shard() {
        assert_eq!(worst_exit_code([0, 2, 0]), 2);
        assert_eq!(worst_exit_code([2, 3, 0]), 3);
        assert_eq!(worst_exit_code([3, 4, 2]), 4);
        assert_eq!(worst_exit_code([4, 130, 3]), 130);
        assert_eq!(worst_exit_code([0, 0]), 0);
        assert_eq!(worst_exit_code([]), 0);
    }

    #[test]
    fn merge_keeps_an_abort() {
        let (mut a, b) = shards();
        a.exit_code = ExitCode::Aborted.code();
        assert_eq!(
            merge(vec![a, b]).unwrap().exit_code,
            ExitCode::Aborted.code()
        );
    }

    #[test]
    fn merge_refuses_a_different_playbook_naming_both() {
        let (a, mut b) = shards();
        b.playbook.name = "dkim-posture".into();
        let err = merge(vec![a, b]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("backscatter-hardening"), "{text}");
        assert!(text.contains("dkim-posture"), "{text}");
        assert!(text.contains("shard 2"), "{text}");
    }

    #[test]
    fn merge_refuses_a_different_playbook_hash() {
        let (a, mut b) = shards();
        b.playbook.sha256 = "00ff".into();
        let err = merge(vec![a, b]).unwrap_err();
        assert!(matches!(err, MergeError::PlaybookMismatch { shard: 2, .. }));
        let text = err.to_string();
        assert!(text.contains("sha256 00ff"), "{text}");
        assert!(text.contains("sha256 3f9a6c0d"), "{text}");
    }

    #[test]
    fn merge_refuses_a_host_twice() {
        let (a, mut b) = shards();
        let mut third = b.clone();
        third.hosts.retain(|h| h.name == "mail3");
        b.hosts.retain(|h| h.name != "mail3");
        let mut dup = a.clone();
        dup.hosts.retain(|h| h.name == "mail4");
        let err = merge(vec![a, b, third, dup]).unwrap_err();
        assert_eq!(
            err,
            MergeError::DuplicateHost {
                host: "mail4".into(),
                first_shard: 1,
                second_shard: 4
            }
        );
        assert_eq!(
            err.to_string(),
            "host `mail4` appears in shard 1 and in shard 4"
        );
    }

    #[test]
    fn merge_refuses_mixed_commands_and_inventories() {
        let (a, mut b) = shards();
        b.command = "apply".into();
        assert!(matches!(
            merge(vec![a.clone(), b]),
            Err(MergeError::CommandMismatch { .. })
        ));
        let (_, mut c) = shards();
        c.inventory.sha256 = "abcd".into();
        assert!(matches!(
            merge(vec![a, c]),
            Err(MergeError::InventoryMismatch { .. })
        ));
    }

    #[test]
    fn merge_of_nothing_is_an_error() {
        assert_eq!(merge(Vec::new()).unwrap_err(), MergeError::Empty);
    }
}
