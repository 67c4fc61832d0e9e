//! The command line as types (clap derive): every subcommand and option (the README's
//! "Commands"). Parsing only; what each command does lives in the modules that
//! `cli::run` calls.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::ExitCode;

/// The exit-code table printed under `--help`.
pub fn exit_codes_help() -> String {
    let mut s = String::from("Exit codes:\n");
    for c in ExitCode::ALL {
        s.push_str(&format!("  {:<4} {}\n", c.code(), c.meaning()));
    }
    s
}

/// Examples, then the exit codes: the `--help` epilogue of the commands that run.
fn examples_help(examples: &[&str]) -> String {
    let mut s = String::from("Examples:\n");
    for e in examples {
        s.push_str(&format!("  {e}\n"));
    }
    s.push('\n');
    s.push_str(&exit_codes_help());
    s
}

fn check_help() -> String {
    examples_help(&[
        "carbonio-fleet check -i inventory/ -p playbooks/backscatter.toml",
        "carbonio-fleet check -i inventory/ --limit '@acme,!mail3*' --format json",
        "carbonio-fleet check -i inventory/ --shard 2/4 --metrics-file /var/lib/node_exporter/textfile_collector/carbonio_fleet.prom",
    ])
}

fn plan_help() -> String {
    examples_help(&[
        "carbonio-fleet plan -i inventory/",
        "carbonio-fleet plan -i inventory/ --limit @acme --out acme.plan.json   # review it, then:",
        "carbonio-fleet apply -i inventory/ --plan acme.plan.json               # exactly that plan, or refused",
    ])
}

fn apply_help() -> String {
    examples_help(&[
        "carbonio-fleet apply -i inventory/ --limit @acme          # asks before changing anything",
        "carbonio-fleet apply -i inventory/ --yes --progress never  # unattended",
        "carbonio-fleet apply -i inventory/ --resume                # finish an interrupted or held rollout",
        "carbonio-fleet apply -i inventory/ --unstage               # undo an unfinished staging",
        "carbonio-fleet apply -i inventory/ --plan acme.plan.json   # exactly a reviewed `plan --out`; refused if the fleet changed",
    ])
}

/// Audit and harden fleets of Zextras Carbonio CE mail servers over SSH.
#[derive(Debug, Parser)]
#[command(
    name = "carbonio-fleet",
    version,
    about,
    after_help = exit_codes_help(),
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Colour the summary and log lines by status [NO_COLOR, CLICOLOR_FORCE apply to auto]
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = crate::ui::term::ColorChoice::Auto)]
    pub color: crate::ui::term::ColorChoice,
}

/// `--older-than`: a duration such as `90d` or `12h` (the tool's one duration reader).
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse(s).map_err(|e| format!("`{s}` is not a duration like 200ms or 2s: {e}"))
}

/// The default `--forks`, chosen by measurement (README "The default `--forks`, by
/// measurement"); the demo uses it too.
pub const DEFAULT_FORKS: usize = 512;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Audit only: compare every node with the playbook, never change a node
    #[command(after_help = check_help())]
    Check(RunArgs),
    /// Remediate what is off, then restart in staggered batches with health gates
    #[command(after_help = apply_help())]
    Apply(ApplyArgs),
    /// Show what apply would change, per host, with the exact commands
    #[command(after_help = plan_help())]
    Plan(PlanArgs),
    /// List or validate the inventory (nothing is contacted)
    #[command(subcommand)]
    Inventory(InventoryCommand),
    /// Onboard host keys: scan them and show their fingerprints
    #[command(subcommand)]
    Hostkeys(HostkeysCommand),
    /// Manage passwords and key passphrases in the OS keyring
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Read, compare (drift) and merge reports
    #[command(subcommand)]
    Report(ReportCommand),
    /// Run check → apply → check against a simulated fleet over real SSH
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Print shell completions
    ///
    /// Examples:
    ///   carbonio-fleet completions bash > /etc/bash_completion.d/carbonio-fleet
    ///   carbonio-fleet completions zsh > "${fpath[1]}/_carbonio-fleet"
    ///   carbonio-fleet completions fish > ~/.config/fish/completions/carbonio-fleet.fish
    #[command(verbatim_doc_comment)]
    #[allow(
        rustdoc::broken_intra_doc_links,
        reason = "the doc comment is the --help text; `${fpath[1]}` is zsh, not a link"
    )]
    Completions(CompletionsArgs),
    /// Print the manual page (roff)
    ///
    /// Example:
    ///   carbonio-fleet man > /usr/local/share/man/man1/carbonio-fleet.1
    #[command(verbatim_doc_comment)]
    Man,
    /// Run the simulated fleet on its own (for benchmarks and experiments)
    #[cfg(feature = "demo")]
    Simulate(carbonio_sim::SimulateOptions),
    /// Run one emulated Carbonio program as a real process (real-sshd test fleets)
    #[cfg(feature = "demo")]
    #[command(hide = true)]
    SimExec(carbonio_sim::exec::SimExecArgs),
}

/// Arguments of `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `check` and `plan` (and the base of `apply`).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Inventory file, or directory of *.toml files (merged in name order)
    #[arg(short, long, value_name = "PATH")]
    pub inventory: PathBuf,
    /// Playbook file [default: the built-in playbooks/backscatter.toml]
    #[arg(short, long, value_name = "PATH")]
    pub playbook: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonOpts,
}

/// Arguments of `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Also write the plan to this file (JSON, replaced atomically, mode 0600) for
    /// `apply --plan FILE`, which carries out exactly it or refuses
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Options shared by `check`, `plan` and `apply`.
#[derive(Debug, Args)]
pub struct CommonOpts {
    /// Hosts to target: names, globs, @group, cluster:NAME, !exclude, comma-separated
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Hosts worked on concurrently. The default is measured (README, Performance): a
    /// sweep waits about hosts / forks x one zmprov start on the nodes, and a session costs
    /// ~40 KiB and ~2 ms of CPU here; 1,000 nodes with a 1 s JVM took 33 s at 64, 9 s at
    /// 256, 6 s at 512 (115 MiB)
    #[arg(short, long, value_name = "N", default_value_t = DEFAULT_FORKS, value_parser = parse_forks)]
    pub forks: usize,
    /// Where run directories with the reports are written
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub report_dir: PathBuf,
    /// Output format on stdout
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Progress bars on stderr
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// More detail (repeat for more)
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less output (repeat for less)
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub quiet: u8,
    /// Audit log, one JSON object per line
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Directory of secret files read before the keyring (e.g. a Kubernetes Secret
    /// volume): `password.host.NAME`, `password.group.NAME`, `passphrase.…`
    #[arg(long, value_name = "DIR", env = "CARBONIO_FLEET_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Only these controls and probes (ids, comma-separated); a control that needs
    /// another (BS-04's check_policy_service needs BS-01's daemon) cannot run without it
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub controls: Option<Vec<String>>,
    /// Not these controls and probes (ids, comma-separated)
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub skip_controls: Vec<String>,
    /// Accepted deviations (TOML: control, host or cluster, justification, expires): a
    /// waived deviation does not count as drift until its waiver expires
    #[arg(long, value_name = "FILE", env = "CARBONIO_FLEET_WAIVERS")]
    pub waivers: Option<PathBuf>,
    /// After the run, when its report shows drift the previous one did not, run this
    /// shell command with the drift on stdin (CARBONIO_FLEET_REPORT names the report)
    #[arg(long, value_name = "CMD")]
    pub on_drift: Option<String>,
    /// When the run shows new drift (the --on-drift trigger), POST a JSON message to this
    /// incoming webhook (Slack, Teams, …; http or https); shown masked, never in full
    #[arg(
        long,
        value_name = "URL",
        env = "CARBONIO_FLEET_WEBHOOK_URL",
        hide_env_values = true
    )]
    pub webhook: Option<String>,
    /// Read the --webhook URL from this file (e.g. a mounted Secret), so that it is on no
    /// command line
    #[arg(long, value_name = "FILE")]
    pub webhook_file: Option<PathBuf>,
    /// After the run, PUT its metrics to this Prometheus Pushgateway (group
    /// job/carbonio-fleet/instance/INVENTORY[-shard-K-of-N])
    #[arg(
        long,
        value_name = "URL",
        env = "CARBONIO_FLEET_PUSHGATEWAY_URL",
        hide_env_values = true
    )]
    pub pushgateway: Option<String>,
    /// Take the K-th of N deterministic slices of the selection, cut by cluster (1 <= K <= N); an empty slice exits 0 without a report
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Also write one report set per inventory group
    #[arg(long, value_enum, value_name = "WHAT")]
    pub split_by: Option<SplitBy>,
    /// Write OpenMetrics text here too (for the node_exporter textfile collector)
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Read an OpenSSH client config for what the inventory leaves unset [PATH default: ~/.ssh/config]
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    pub ssh_config: Option<Option<PathBuf>>,
}

impl CommonOpts {
    /// The ssh_config file `--ssh-config` asks for (`~/.ssh/config` when given bare).
    pub fn ssh_config_path(&self) -> Option<PathBuf> {
        ssh_config_path(&self.ssh_config)
    }
}

/// `--ssh-config [PATH]` resolved: `None` when absent, the default file when bare.
pub fn ssh_config_path(flag: &Option<Option<PathBuf>>) -> Option<PathBuf> {
    flag.as_ref().map(|p| {
        p.clone()
            .unwrap_or_else(crate::inventory::default_ssh_config)
    })
}

/// Arguments of `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Continue the last interrupted run: skip the hosts its journal marks done
    #[arg(long)]
    pub resume: bool,
    /// Target only the hosts that failed in the last run
    #[arg(long)]
    pub retry_failed: bool,
    /// Do not ask for confirmation on a terminal
    #[arg(short, long)]
    pub yes: bool,
    /// Where the policy daemon's spawn user cannot start it (stock Carbonio's
    /// `user=zimbra`), set `user=zextras` in master.cf.in (backed up first) and run
    /// `configrewrite mta`; a carbonio-mta upgrade undoes it
    #[arg(long)]
    pub fix_spawn_user: bool,
    /// Keep a node that fails its health gate as it is, for inspection: its staged server
    /// entries are not removed and it is not reloaded again (wins over the playbook's
    /// `[rollout] rollback`)
    #[arg(long)]
    pub no_rollback: bool,
    /// Stage the desired value over a single-valued server override that contradicts it
    /// (by default such an override is reported and holds the cluster's promotion)
    #[arg(long)]
    pub replace_overrides: bool,
    /// Undo what an unfinished apply staged: remove the staged server entries found in
    /// LDAP, reload those MTAs and gate them on the old values; nothing is promoted
    #[arg(long, conflicts_with_all = ["resume", "retry_failed", "replace_overrides", "fix_spawn_user"])]
    pub unstage: bool,
    /// Carry out exactly this plan (`plan --out FILE`): refused, with nothing changed,
    /// when the playbook, the inventory or any gathered value differs from the plan's;
    /// the plan was reviewed, so no confirmation is asked
    #[arg(long, value_name = "FILE", conflicts_with_all = ["resume", "retry_failed", "replace_overrides", "fix_spawn_user", "unstage"])]
    pub plan: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

/// `--progress` (defined beside the bars it governs, in `ui::progress`).
pub use crate::ui::progress::Progress;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SplitBy {
    /// One report set per inventory group (e.g. per customer)
    Group,
}

/// `--shard K/N` (defined beside the slicing, in `inventory::shard`).
pub use crate::inventory::Shard;

fn parse_forks(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// Show every selected host with its effective settings
    List(InventoryArgs),
    /// Check the inventory and report every error
    Validate(InventoryArgs),
    /// Convert an Ansible inventory (`ansible-inventory -i INV --list` JSON) to TOML
    ///
    /// Example:
    ///   ansible-inventory -i hosts.ini --list > hosts.json
    ///   carbonio-fleet inventory import --from-ansible hosts.json --out inventory.toml
    #[command(verbatim_doc_comment)]
    Import(InventoryImportArgs),
}

#[derive(Debug, Args)]
pub struct InventoryImportArgs {
    /// The JSON `ansible-inventory --list` printed (`-` for stdin)
    #[arg(long, value_name = "FILE")]
    pub from_ansible: PathBuf,
    /// Where the TOML inventory is written (default: stdout); never overwritten
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// Inventory file, or directory of *.toml files
    #[arg(short, long, value_name = "PATH")]
    pub inventory: PathBuf,
    /// Hosts to show: names, globs, @group, cluster:NAME, !exclude, comma-separated
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Only the hosts `check --shard K/N` would take (a preview of the slice)
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Output format on stdout
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum HostkeysCommand {
    /// Fetch the host keys of the selected hosts and show their fingerprints
    Scan(HostkeysScanArgs),
}

#[derive(Debug, Args)]
pub struct HostkeysScanArgs {
    /// Inventory file, or directory of *.toml files
    #[arg(short, long, value_name = "PATH")]
    pub inventory: PathBuf,
    /// Add the scanned keys to each host's known_hosts file (after showing them)
    #[arg(long)]
    pub write: bool,
    /// Hosts to scan: names, globs, @group, !exclude, comma-separated
    #[arg(long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Read an OpenSSH client config for what the inventory leaves unset [PATH default: ~/.ssh/config]
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    pub ssh_config: Option<Option<PathBuf>>,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a secret (prompted without echo, or read from stdin)
    Set(SecretSetArgs),
    /// Remove a stored secret
    Delete(SecretDeleteArgs),
    /// List the stored secrets (names only, never values)
    List,
    /// Find every selected host's SSH credentials without connecting; exit 3 when a
    /// host has none (run it before an unattended sweep)
    Check(SecretCheckArgs),
}

#[derive(Debug, Args)]
pub struct SecretCheckArgs {
    /// Inventory file, or directory of *.toml files
    #[arg(short, long, value_name = "PATH")]
    pub inventory: PathBuf,
    /// Hosts to check: names, globs, @group, cluster:NAME, !exclude, comma-separated
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Directory of secret files read before the keyring (e.g. a Kubernetes Secret
    /// volume): `password.host.NAME`, `password.group.NAME`, `passphrase.…`
    #[arg(long, value_name = "DIR", env = "CARBONIO_FLEET_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Write `carbonio_fleet_secrets_missing` (OpenMetrics text) to this file
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

/// Whose secret: one host or one inventory group.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SecretTarget {
    /// For this host (its inventory name)
    #[arg(long, value_name = "H")]
    pub host: Option<String>,
    /// For every host of this inventory group
    #[arg(long, value_name = "G")]
    pub group: Option<String>,
}

#[derive(Debug, Args)]
pub struct SecretSetArgs {
    #[command(flatten)]
    pub target: SecretTarget,
    /// What the secret unlocks
    #[arg(long, value_enum, default_value_t = SecretKind::Password)]
    pub kind: SecretKind,
    /// Read the secret from stdin instead of prompting (for automation)
    #[arg(long)]
    pub stdin: bool,
}

#[derive(Debug, Args)]
pub struct SecretDeleteArgs {
    #[command(flatten)]
    pub target: SecretTarget,
    /// Which secret to remove
    #[arg(long, value_enum, default_value_t = SecretKind::Password)]
    pub kind: SecretKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SecretKind {
    /// SSH login (or sudo) password
    Password,
    /// Passphrase of a private key
    Passphrase,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Print a report (report.json) as a summary
    Show(ReportShowArgs),
    /// Show drift between two reports (OLD, then NEW)
    Diff(ReportDiffArgs),
    /// Join the reports of the shards of one run into one
    Merge(ReportMergeArgs),
    /// Delete old run directories (never the one `latest` points to, nor the newest
    /// apply journal that `apply --resume` reads)
    ///
    /// Examples:
    ///   carbonio-fleet report prune --report-dir /var/lib/carbonio-fleet/reports --keep 30
    ///   carbonio-fleet report prune --older-than 90d --dry-run
    #[command(verbatim_doc_comment)]
    Prune(ReportPruneArgs),
}

#[derive(Debug, Args)]
pub struct ReportPruneArgs {
    /// Where the run directories are
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub report_dir: PathBuf,
    /// Keep the N newest runs (with --older-than: delete only runs both rules select)
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..),
        required_unless_present = "older_than"
    )]
    pub keep: Option<u64>,
    /// Delete runs started longer ago than this (e.g. 90d, 12h)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Option<std::time::Duration>,
    /// Only say what would be deleted
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ReportShowArgs {
    /// report.json files (or run directories)
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ReportDiffArgs {
    /// The earlier report
    #[arg(value_name = "OLD")]
    pub old: PathBuf,
    /// The later report
    #[arg(value_name = "NEW")]
    pub new: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ReportMergeArgs {
    /// The shards' report.json files
    #[arg(required = true, num_args = 2.., value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Where the merged report set is written
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub report_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo's reports are written
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub report_dir: PathBuf,
    /// Size of the simulated fleet
    #[arg(long, value_name = "N", default_value_t = 24)]
    pub nodes: usize,
    /// Progress bars on stderr
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use test_case::test_case;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test_case("1/1", Ok(Shard { index: 1, count: 1 }); "single")]
    #[test_case("3/8", Ok(Shard { index: 3, count: 8 }); "middle")]
    #[test_case("0/8", Err("shard `0/8`: K and N must satisfy 1 <= K <= N".into()); "zero k")]
    #[test_case("9/8", Err("shard `9/8`: K and N must satisfy 1 <= K <= N".into()); "k over n")]
    #[test_case("1/0", Err("shard `1/0`: K and N must satisfy 1 <= K <= N".into()); "zero n")]
    #[test_case("3", Err("`3` is not of the form K/N (e.g. 2/8)".into()); "no slash")]
    #[test_case("a/8", Err("`a` in `a/8` is not a whole number".into()); "not a number")]
    fn shards(s: &str, expected: Result<Shard, String>) {
        assert_eq!(s.parse::<Shard>(), expected);
    }

    #[test]
    fn common_options_parse_with_defaults() {
        let cli = Cli::try_parse_from(["carbonio-fleet", "check", "-i", "inv.toml"]).unwrap();
        let Command::Check(run) = cli.command else {
            panic!("check")
        };
        assert_eq!(run.playbook, None);
        assert_eq!(run.common.forks, DEFAULT_FORKS);
        assert_eq!(DEFAULT_FORKS, 512);
        assert_eq!(run.common.report_dir, PathBuf::from("reports"));
        assert_eq!(run.common.format, Format::Human);
        assert_eq!(run.common.progress, Progress::Auto);
        assert_eq!((run.common.verbose, run.common.quiet), (0, 0));
        assert_eq!(run.common.ssh_config_path(), None);
    }

    #[test]
    fn ssh_config_takes_an_optional_path() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["carbonio-fleet", "plan", "-i", "inv.toml"];
            argv.extend_from_slice(extra);
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Plan(r) => r.run.common.ssh_config_path(),
                _ => panic!("plan"),
            }
        };
        assert_eq!(
            parse(&["--ssh-config"]),
            Some(crate::inventory::default_ssh_config())
        );
        assert_eq!(
            parse(&["--ssh-config", "/etc/fleet/ssh_config"]),
            Some(PathBuf::from("/etc/fleet/ssh_config"))
        );
        // A bare flag before another option does not swallow it.
        assert_eq!(
            parse(&["--ssh-config", "--forks", "2"]),
            Some(crate::inventory::default_ssh_config())
        );
    }

    #[test]
    fn apply_takes_its_own_flags_and_the_common_ones() {
        let cli = Cli::try_parse_from([
            "carbonio-fleet",
            "apply",
            "-i",
            "inv",
            "-p",
            "pb.toml",
            "--limit",
            "@acme",
            "--forks",
            "8",
            "--shard",
            "2/4",
            "--split-by",
            "group",
            "-vv",
            "--resume",
            "--yes",
            "--format",
            "json",
        ])
        .unwrap();
        let Command::Apply(a) = cli.command else {
            panic!("apply")
        };
        assert!(a.resume && a.yes && !a.retry_failed);
        assert_eq!(a.run.common.limit.as_deref(), Some("@acme"));
        assert_eq!(a.run.common.forks, 8);
        assert_eq!(a.run.common.shard, Some(Shard { index: 2, count: 4 }));
        assert_eq!(a.run.common.split_by, Some(SplitBy::Group));
        assert_eq!(a.run.common.verbose, 2);
        assert_eq!(a.run.common.format, Format::Json);
    }

    #[test_case(&["check"]; "inventory required")]
    #[test_case(&["check", "-i", "x", "--forks", "0"]; "zero forks")]
    #[test_case(&["check", "-i", "x", "--resume"]; "resume is apply only")]
    #[test_case(&["secret", "set"]; "secret needs a target")]
    #[test_case(&["secret", "set", "--host", "a", "--group", "b"]; "host and group exclusive")]
    #[test_case(&["report", "merge", "one.json"]; "merge needs two")]
    #[test_case(&["simulate"]; "simulate needs nodes")]
    fn rejected(args: &[&str]) {
        let argv = std::iter::once("carbonio-fleet").chain(args.iter().copied());
        assert!(Cli::try_parse_from(argv).is_err());
    }

    #[test]
    fn help_lists_the_exit_codes() {
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("Exit codes:\n  0    every targeted host compliant"));
        assert!(help.contains("  130  interrupted (Ctrl-C)"));
    }
}
