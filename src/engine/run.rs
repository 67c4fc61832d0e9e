//! Running a command end to end: load and validate everything (nothing is contacted
//! when the inventory or playbook is wrong), gather the fleet, evaluate, write the
//! report set, and hand back the [`RunOutcome`] (the report, from which the exit code
//! is derived) or the [`RunError`] that stopped it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::carbonio::gather::GatherPlan;
use crate::engine::check;
use crate::engine::events::Events;
use crate::engine::gather::{GatherOptions, HostGather, gather_all};
use crate::engine::interrupt::Interrupts;
use crate::engine::outcome::{ConfigFailure, RunError, RunOutcome};
use crate::exit::ExitCode;
use crate::inventory::{Host, Inventory, LoadOptions, Shard};
use crate::playbook::Playbook;
use crate::report::model::{InventoryRef, PlaybookRef, Report, SCHEMA_VERSION, Tool};
use crate::report::store;
use crate::ssh::{Connector, ConnectorOptions};

/// Options shared by check, plan and apply.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub inventory: PathBuf,
    pub playbook: Option<PathBuf>,
    pub limit: Option<String>,
    pub forks: usize,
    pub report_dir: PathBuf,
    pub json: bool,
    /// Also write metrics.prom here (node_exporter's textfile collector directory).
    pub metrics_file: Option<PathBuf>,
    /// `--split-by group`: also write one report set per inventory group (customer).
    pub split_by_group: bool,
    /// `--shard K/N`: only this slice of the selection (by cluster).
    pub shard: Option<Shard>,
    /// `--ssh-config [PATH]`: read this ssh_config for values the inventory leaves
    /// unset; `None` = only if the inventory says `ssh_config = true`.
    pub ssh_config: Option<PathBuf>,
    /// `--controls`: only these controls and probes (`None`: all).
    pub controls: Option<Vec<String>>,
    /// `--skip-controls`: not these.
    pub skip_controls: Vec<String>,
    /// `--waivers FILE`: accepted deviations (see `playbook::waiver`).
    pub waivers: Option<PathBuf>,
}

/// Everything loaded and validated before the first connection.
pub struct Loaded {
    pub inventory: Inventory,
    pub hosts: Vec<Host>,
    pub playbook: Playbook,
}

/// Loads the inventory and the playbook (`-p`, or the built-in one), then the `--limit`
/// selection and the `--shard` slice of it. Both files are read even when the first
/// fails, so the user sees every error.
///
/// An empty shard is the one empty target set that is not a failure
/// ([`RunError::EmptyShard`]): with more shards than clusters (an Indexed Job sized for
/// growth) some slices are empty by design, and failing those pods would fail the whole
/// job. The caller stops, contacts nothing and writes no report.
pub fn load(opts: &RunOptions) -> Result<Loaded, RunError> {
    let load_opts = LoadOptions {
        ssh_config: opts.ssh_config.clone(),
        ..LoadOptions::default()
    };
    let inventory = crate::inventory::load_with(&opts.inventory, &load_opts);
    let playbook = match &opts.playbook {
        Some(p) => crate::playbook::load(p),
        None => Ok(crate::playbook::load_default()),
    };
    let (inventory, mut playbook) = match (inventory, playbook) {
        (Ok(i), Ok(p)) => (i, p),
        (inventory, playbook) => {
            let failures = [(inventory.err(), "inventory"), (playbook.err(), "playbook")]
                .into_iter()
                .filter_map(|(e, what)| Some(ConfigFailure { errors: e?, what }))
                .collect();
            return Err(RunError::Config(failures));
        }
    };
    // Judged against the whole playbook (a waiver for a control `--controls` leaves out
    // is not an error, only idle) and every inventory host, on today's date (UTC).
    if let Some(path) = &opts.waivers {
        let today = jiff::Timestamp::now()
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .date();
        match crate::playbook::waiver::load(path, &playbook, &inventory.hosts, today) {
            Ok(w) => playbook.waivers = w,
            Err(errors) => {
                return Err(RunError::Config(vec![ConfigFailure {
                    errors,
                    what: "waiver file",
                }]));
            }
        }
    }
    if let Err(e) = crate::playbook::select::select(
        &mut playbook,
        opts.controls.as_deref(),
        &opts.skip_controls,
    ) {
        return Err(RunError::Controls(e.to_string()));
    }
    for w in &playbook.warnings {
        tracing::warn!("playbook: {w}");
    }
    let hosts: Vec<Host> = match crate::inventory::select(&inventory, opts.limit.as_deref()) {
        Ok(h) => h.into_iter().cloned().collect(),
        Err(e) => return Err(RunError::Limit(e.to_string())),
    };
    let hosts = match opts.shard {
        None => hosts,
        Some(shard) => {
            let selected = hosts.len();
            let hosts = crate::inventory::shard::slice(hosts, shard);
            if hosts.is_empty() {
                return Err(RunError::EmptyShard { shard, selected });
            }
            hosts
        }
    };
    Ok(Loaded {
        inventory,
        hosts,
        playbook,
    })
}

/// [`load`] for the commands that change nodes (apply) or show what would change (plan):
/// waivers that would keep the policy daemon off under a restriction that needs it are
/// refused before anything is contacted (`Waivers::apply_conflicts`).
pub fn load_for_changes(opts: &RunOptions) -> Result<Loaded, RunError> {
    let loaded = load(opts)?;
    let conflicts = loaded
        .playbook
        .waivers
        .apply_conflicts(&loaded.playbook, &loaded.hosts);
    if conflicts.is_empty() {
        return Ok(loaded);
    }
    Err(RunError::WaiverConflicts(
        conflicts.iter().map(ToString::to_string).collect(),
    ))
}

/// A random nonce for section markers and probe addresses.
pub fn nonce() -> String {
    use rand::RngExt as _;
    let mut rng = rand::rng();
    (0..10)
        .map(|_| {
            let n: u8 = rng.random_range(0..36);
            char::from_digit(n as u32, 36).unwrap_or('x')
        })
        .collect()
}

/// The SHA-256 of `parts`, concatenated, in lower-case hex.
pub(crate) fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `$USER@hostname` of whoever runs the tool.
pub fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(user_of_uid)
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

/// The account name of this process's uid from /etc/passwd (cron and systemd units often
/// run without USER set).
#[expect(unsafe_code, reason = "getuid: std cannot ask for the uid")]
fn user_of_uid() -> Option<String> {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() }.to_string();
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)? == uid).then(|| name.to_string())
        })
}

/// The playbook and inventory a run used, each with the SHA-256 of its files (the
/// report's provenance; a plan file's guard that apply uses the same ones).
pub fn source_refs(loaded: &Loaded) -> (PlaybookRef, InventoryRef) {
    let inv_bytes: Vec<Vec<u8>> = loaded
        .inventory
        .files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_default())
        .collect();
    let inv_refs: Vec<&[u8]> = inv_bytes.iter().map(|b| b.as_slice()).collect();
    let (pb_source, pb_hash) = match &loaded.playbook.source {
        Some(p) => (
            p.display().to_string(),
            sha256_hex(&[&std::fs::read(p).unwrap_or_default()]),
        ),
        None => (
            "(embedded)".to_string(),
            sha256_hex(&[crate::playbook::DEFAULT_PLAYBOOK.as_bytes()]),
        ),
    };
    (
        PlaybookRef {
            name: loaded.playbook.name.clone(),
            description: loaded.playbook.description.clone(),
            source: pb_source,
            sha256: pb_hash,
        },
        InventoryRef {
            files: loaded
                .inventory
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect(),
            sha256: sha256_hex(&inv_refs),
        },
    )
}

/// This build's name and version.
pub fn tool() -> Tool {
    Tool {
        name: env!("CARGO_PKG_NAME").into(),
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// The report skeleton with run metadata.
pub fn report_header(
    command: &str,
    loaded: &Loaded,
    limit: Option<&str>,
    started: jiff::Timestamp,
) -> Report {
    let (playbook, inventory) = source_refs(loaded);
    Report {
        schema_version: SCHEMA_VERSION,
        tool: tool(),
        command: command.into(),
        playbook,
        inventory,
        operator: operator(),
        started_at: started.to_string(),
        finished_at: String::new(),
        duration_ms: 0,
        limit: limit.map(str::to_string),
        summary: Default::default(),
        exit_code: 0,
        hosts: Vec::new(),
        domains: Vec::new(),
        promotions: Vec::new(),
        resumed_from: None,
        checks: crate::engine::verdict::check_catalog(&loaded.playbook),
        labels: loaded.playbook.labels.clone(),
        covers: None,
    }
}

/// Writes the report set into a new run directory.
pub fn finish(
    report: &Report,
    report_dir: &Path,
    started: jiff::Timestamp,
    metrics_file: Option<&Path>,
    split_by_group: bool,
) -> Result<PathBuf, store::StoreError> {
    let dir_name = store::run_dir_name(&started, &report.playbook.name);
    let dir = store::create_run_dir(report_dir, &dir_name)?;
    finish_in(report, report_dir, &dir, metrics_file, split_by_group)?;
    Ok(dir)
}

/// `--split-by group`: one report set per inventory group (e.g. per customer) in
/// `<run_dir>/groups/<group>/`, each with only that group's hosts, its own summary and
/// exit code, beside the fleet-wide set.
fn write_group_reports(run_dir: &Path, report: &Report) -> Result<(), store::StoreError> {
    let mut groups: Vec<&str> = report
        .hosts
        .iter()
        .flat_map(|h| h.groups.iter().map(String::as_str))
        .collect();
    groups.sort_unstable();
    groups.dedup();
    for g in groups {
        let mut sub = report.clone();
        sub.hosts.retain(|h| h.groups.iter().any(|x| x == g));
        sub.covers = Some(crate::report::model::Covers {
            group: g.to_string(),
            fleet_hosts: report.hosts.len(),
        });
        // A customer's report shows only its own clusters' domains.
        sub.domains
            .retain(|d| sub.hosts.iter().any(|h| h.cluster == d.cluster));
        sub.summary = crate::report::model::Summary::of(&sub.hosts);
        // An abort or an interrupt concerns the whole run; otherwise the group's own hosts
        // (and its clusters' domains) decide.
        if !matches!(
            ExitCode::from_code(report.exit_code),
            Some(ExitCode::Aborted | ExitCode::Interrupted)
        ) {
            sub.exit_code =
                crate::engine::domains::exit_code(check::exit_code(&sub.hosts), &sub.domains)
                    .code();
        }
        let dir = run_dir.join("groups").join(g);
        crate::report::write::create_report_dir_all(&dir).map_err(|source| {
            store::StoreError::CreateDir {
                path: dir.clone(),
                source,
            }
        })?;
        store::write_report(&dir, &sub)?;
    }
    Ok(())
}

/// Writes the report set into `run_dir` and points `latest` at it. A write failure
/// makes the run's exit code a failure ([`RunOutcome::exit_code`]): an audit whose
/// evidence was lost did not succeed.
pub fn finish_in(
    report: &Report,
    report_dir: &Path,
    run_dir: &Path,
    metrics_file: Option<&Path>,
    split_by_group: bool,
) -> Result<(), store::StoreError> {
    store::write_report(run_dir, report)
        .and_then(|_| match split_by_group {
            true => write_group_reports(run_dir, report),
            false => Ok(()),
        })
        .and_then(|_| store::update_latest(report_dir, run_dir))
        .and_then(|_| match metrics_file {
            Some(p) => crate::report::write::write_atomic_mode(
                p,
                &crate::report::metrics::render_openmetrics(report),
                crate::report::write::METRICS_FILE_MODE,
            )
            .map_err(|e| store::StoreError::Write {
                path: e.path,
                source: e.source,
            }),
            None => Ok(()),
        })
}

/// A gathered fleet: the nonce and script used, and every selected host's result.
pub struct FleetGather {
    pub nonce: String,
    pub plan: GatherPlan,
    pub gathers: Vec<HostGather>,
    /// The connector the gather used (the domain pass reconnects through it).
    pub connector: Connector,
}

/// Announces the run and gathers every selected host (at most `opts.forks` at once),
/// keeping the sessions open when later steps reuse them (`opts.keep_sessions`). `Err`
/// when a playbook value cannot be sent to a node (nothing was contacted).
pub async fn gather_fleet(
    command: &'static str,
    loaded: &Loaded,
    opts: GatherOptions,
    events: &Events,
) -> Result<FleetGather, RunError> {
    let connector = Connector::new(ConnectorOptions::default());
    gather_fleet_with(command, loaded, opts, events, connector).await
}

/// [`gather_fleet`] through `connector` (the domain pass reconnects through the same one),
/// with `opts.done` told each host's outcome as it returns.
pub async fn gather_fleet_with(
    command: &'static str,
    loaded: &Loaded,
    opts: GatherOptions,
    events: &Events,
    connector: Connector,
) -> Result<FleetGather, RunError> {
    let nonce = nonce();
    let plan = GatherPlan::new(&loaded.playbook, &nonce)
        .map_err(|e| RunError::Unsendable(e.to_string()))?;
    events.send(crate::engine::events::Event::RunStarted {
        command,
        hosts: loaded.hosts.len(),
    });
    let gathers = gather_all(
        &loaded.hosts,
        &loaded.playbook,
        &plan,
        &connector,
        &opts,
        events,
        &nonce,
    )
    .await;
    Ok(FleetGather {
        nonce,
        plan,
        gathers,
        connector,
    })
}

/// `check`: audit only, never changes a node. After the first of `interrupts` no host
/// starts; after the second the gathers in flight are abandoned.
pub async fn check(
    opts: &RunOptions,
    interrupts: &Interrupts,
    events: Events,
) -> Result<RunOutcome, RunError> {
    let loaded = load(opts)?;
    let started = jiff::Timestamp::now();
    let t0 = Instant::now();
    let mut report = report_header("check", &loaded, opts.limit.as_deref(), started);
    // The domain pass runs alongside the sweep: each cluster's read and lookups start
    // when its reading node's gather returned, and never hold the hosts' results back.
    let connector = Connector::new(ConnectorOptions::default());
    let (done, gathered) = tokio::sync::mpsc::unbounded_channel();
    let settings = crate::dns::ResolverSettings {
        servers: loaded.inventory.dns_servers.clone(),
        ..Default::default()
    };
    let domains = crate::engine::domains::domain_pass(
        &loaded.playbook,
        &loaded.hosts,
        gathered,
        &connector,
        &settings,
        opts.forks,
    );
    let sweep = async {
        let gather = GatherOptions {
            forks: opts.forks,
            keep_sessions: false,
            interrupts: Some(interrupts.clone()),
            done: Some(done),
        };
        let fleet = gather_fleet_with("check", &loaded, gather, &events, connector.clone()).await?;
        let earlier = check::Earlier::load(&opts.report_dir);
        let mut hosts = check::evaluate_all(&loaded.playbook, &fleet.gathers, &earlier);
        check::annotate_membership(&mut hosts, &fleet.gathers, &loaded.inventory.hosts);
        for h in &hosts {
            events.send(crate::engine::events::Event::HostFinished {
                host: h.name.clone(),
                status: h.status,
            });
        }
        Ok::<_, RunError>(hosts)
    };
    tokio::pin!(domains, sweep);
    let mut domains_done = None;
    let swept = loop {
        tokio::select! {
            s = &mut sweep => break s,
            d = &mut domains, if domains_done.is_none() => domains_done = Some(d),
        }
    };
    report.hosts = swept?;
    // Interrupted: the domain pass is dropped (more work), the report as far as it got,
    // exit 130.
    if !interrupts.any() {
        report.domains = match domains_done {
            Some(d) => d,
            None => domains.await,
        };
    }
    report.summary = crate::report::model::Summary::of(&report.hosts);
    let hosts = crate::engine::domains::exit_code(check::exit_code(&report.hosts), &report.domains);
    report.exit_code = if interrupts.any() {
        ExitCode::Interrupted
    } else {
        hosts
    }
    .code();
    report.finished_at = jiff::Timestamp::now().to_string();
    report.duration_ms = t0.elapsed().as_millis() as u64;
    let written = finish(
        &report,
        &opts.report_dir,
        started,
        opts.metrics_file.as_deref(),
        opts.split_by_group,
    );
    let outcome = RunOutcome { report, written };
    events.send(crate::engine::events::Event::RunFinished {
        exit_code: outcome.exit_code().code(),
    });
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(inventory: &str, playbook: Option<&str>) -> RunOptions {
        let manifest = env!("CARGO_MANIFEST_DIR");
        RunOptions {
            inventory: format!("{manifest}/{inventory}").into(),
            playbook: playbook.map(PathBuf::from),
            limit: None,
            forks: 4,
            report_dir: "reports".into(),
            json: false,
            metrics_file: None,
            shard: None,
            ssh_config: None,
            split_by_group: false,
            controls: None,
            skip_controls: Vec::new(),
            waivers: None,
        }
    }

    #[test]
    fn load_uses_the_built_in_playbook_without_p() {
        let l = load(&opts("inventory/lab.toml", None)).unwrap();
        assert_eq!(l.inventory.hosts.len(), 6);
        assert_eq!(l.hosts.len(), 6);
        assert_eq!(l.playbook.name, "backscatter-hardening");
        assert_eq!(l.playbook.source, None);
    }

    #[test]
    fn load_fails_with_usage_when_either_file_is_bad() {
        let r = load(&opts("inventory/lab.toml", Some("/nonexistent/pb.toml")));
        assert!(matches!(r, Err(RunError::Config(f)) if f.len() == 1 && f[0].what == "playbook"));
        let r = load(&opts("inventory/missing.toml", None));
        assert!(matches!(r, Err(RunError::Config(f)) if f.len() == 1 && f[0].what == "inventory"));
        let r = load(&opts(
            "inventory/missing.toml",
            Some("/nonexistent/pb.toml"),
        ));
        assert!(
            matches!(r, Err(RunError::Config(f)) if f.len() == 2),
            "both files' errors"
        );
    }

    #[test]
    fn shards_of_the_lab_split_it_by_cluster() {
        let all = load(&opts("inventory/lab.toml", None)).unwrap().hosts;
        let mut seen = Vec::new();
        for k in 1..=3 {
            let mut o = opts("inventory/lab.toml", None);
            o.shard = Some(Shard { index: k, count: 3 });
            match load(&o) {
                Ok(l) => seen.extend(l.hosts.into_iter().map(|h| (h.name, h.cluster))),
                Err(e) => assert!(
                    matches!(e, RunError::EmptyShard { .. }),
                    "an empty shard is not an error: {e:?}"
                ),
            }
        }
        seen.sort();
        let mut expected: Vec<(String, String)> =
            all.into_iter().map(|h| (h.name, h.cluster)).collect();
        expected.sort();
        assert_eq!(seen, expected);
    }

    #[test]
    fn an_empty_shard_exits_zero_without_contacting_anything() {
        // 64 shards over the lab's few clusters: most are empty.
        let empty = (1..=64)
            .map(|k| {
                let mut o = opts("inventory/lab.toml", None);
                o.shard = Some(Shard {
                    index: k,
                    count: 64,
                });
                load(&o).err()
            })
            .filter(|e| matches!(e, Some(RunError::EmptyShard { .. })))
            .count();
        assert!(empty >= 58, "{empty}");
    }
}
