//! The gather: everything `check` needs from a node, read in ONE exec (run as zextras)
//! with ONE `zmprov -l` process inside it.
//!
//! The script is a sequence of sections, each framed by marker lines carrying a per-run
//! nonce (`#cfleet-<nonce> <name>` … `#cfleet-<nonce> rc <status>`), so that output of a
//! noisy login profile or a command that forgets its last newline cannot be mistaken for
//! another section. The dialect is documented in docs/remote-shell.md; every value that
//! enters the script goes through [`crate::ssh::quote`].

use std::collections::BTreeMap;

use serde::Serialize;

pub use super::platform::Platform;
use super::postfix::{self, SpawnAccess, SpawnLine};
use super::prov;
use super::running::{self, RunningFacts};
use crate::flavour::Flavour;
use crate::playbook::{Playbook, ProbeKind, Scope};
use crate::ssh::{QuoteError, quote};

/// The four systemd role targets; any of them enabled means a systemd-managed node
/// (docs/carbonio.md §8, the check Carbonio's own scripts use).
pub const SYSTEMD_TARGETS: [&str; 4] = [
    "carbonio-directory-server.target",
    "carbonio-appserver.target",
    "carbonio-proxy.target",
    "carbonio-mta.target",
];

/// Postfix parameters always read, besides those the playbook's probes name
/// (`queue_directory`: where the policy socket is).
const BASE_POSTCONF: [&str; 5] = [
    "smtpd_recipient_restrictions",
    "smtpd_reject_unlisted_recipient",
    "smtpd_reject_unlisted_sender",
    "queue_directory",
    // The outside probe's vantage is checked against it (engine::vantage).
    "mynetworks",
];

/// A prepared gather for one playbook: the script, and how to read its output.
#[derive(Debug, Clone)]
pub struct GatherPlan {
    nonce: String,
    /// One script per product (`Flavour::ALL` order): paths and the service user differ.
    scripts: Vec<String>,
    global_attrs: Vec<String>,
    server_attrs: Vec<String>,
    command_probes: Vec<String>,
    batch_len: usize,
}

/// Why a gather's output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatherError {
    #[error("the gather output has no `{0}` section (the script stopped early)")]
    MissingSection(String),
    #[error("no `zimbra_server_hostname` in {0} (status {1})")]
    NoHostname(&'static str, i64),
    #[error(
        "`zimbra_server_hostname` in {0} is not a host name (its value must be on the line after its key)"
    )]
    BadHostname(&'static str),
    #[error("the gather names an unknown product `{0}`")]
    UnknownFlavour(String),
    #[error(transparent)]
    Prov(#[from] prov::SplitError),
    #[error("zmprov failed: {0}")]
    ProvFailed(String),
}

/// What one section printed and its exit status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Section {
    pub output: String,
    pub status: i64,
}

/// Everything read from one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeFacts {
    /// Carbonio or Zimbra: which product's gather ran (its service user exists).
    pub flavour: Flavour,
    pub platform: Platform,
    /// `Carbonio Release X` (from /opt/zextras/.version) or `Zimbra Release X` (from the
    /// install history), when the node has it.
    pub version: Option<String>,
    /// The Carbonio server name (localconfig.xml `zimbra_server_hostname`).
    pub hostname: String,
    /// `zimbraServiceEnabled` of this server.
    pub services: Vec<String>,
    /// Global config values of each control attribute (empty = unset).
    pub global: BTreeMap<String, Vec<String>>,
    /// Values set on this server's own entry (`gs -e`); an attribute is present only when
    /// the server overrides it.
    pub server: BTreeMap<String, Vec<String>>,
    /// Hosted domains (`gad`, in its unsorted order).
    pub domains: Vec<String>,
    /// The domains whose `zimbraDomainType` is `local` (not alias).
    pub local_domains: Vec<String>,
    /// Every catch-all address (`@domain`, lower-case) on a domain, account or list entry.
    pub catch_alls: Vec<String>,
    /// The servers LDAP lists with the `mta` service (`gas mta`), lower-case, sorted.
    pub mta_servers: Vec<String>,
    /// Effective Postfix parameters (`postconf`).
    pub postconf: BTreeMap<String, String>,
    /// The active policy spawn line (master.cf's uncommented entry, what `postconf -M
    /// policy/unix` shows), when the service is on.
    pub policy_service: Option<SpawnLine>,
    /// The policy spawn line of master.cf.in, which enabling the service would activate.
    pub policy_template: Option<SpawnLine>,
    /// The policy spawn user's ids and localconfig.xml's owner and mode.
    pub spawn: SpawnAccess,
    /// Output of each `command` probe, by probe id.
    pub commands: BTreeMap<String, Section>,
    /// Raw systemctl answer, kept as evidence for the platform verdict.
    pub platform_evidence: String,
    /// What tells whether the running master loaded master.cf.
    pub running: RunningFacts,
}

impl NodeFacts {
    /// Whether the node runs the MTA (only MTAs react to the MTA attributes).
    pub fn is_mta(&self) -> bool {
        self.services.iter().any(|s| s == "mta")
    }

    /// The policy entry that decides the spawn user: the active one, else the template's.
    pub fn policy_entry(&self) -> Option<&SpawnLine> {
        self.policy_service
            .as_ref()
            .or(self.policy_template.as_ref())
    }

    /// The spawn line that names the user, for evidence.
    pub fn policy_spawn_evidence(&self) -> Option<&str> {
        self.policy_entry().map(|l| l.line.as_str())
    }

    /// The domain where an unknown recipient must be rejected: the first (by name) local
    /// domain without a catch-all. An alias domain's catch-all, or an account's, makes
    /// every address "known": probing there would call a correct node backscattering.
    pub fn probe_domain(&self) -> Option<&str> {
        let mut candidates: Vec<&String> = self
            .local_domains
            .iter()
            .filter(|d| {
                !self
                    .catch_alls
                    .contains(&format!("@{}", d.to_ascii_lowercase()))
            })
            .collect();
        candidates.sort();
        candidates.first().map(|d| d.as_str())
    }

    /// Why the policy service could not start as its spawn user, if it could not.
    pub fn spawn_problem(&self) -> Option<postfix::SpawnProblem> {
        self.spawn.problem(self.policy_entry())
    }

    /// The spawn-user problem of the running entry (`None` also when there is none).
    pub fn running_spawn_problem(&self) -> Option<postfix::SpawnProblem> {
        self.policy_service
            .as_ref()
            .and_then(|e| self.spawn.problem(Some(e)))
    }

    /// The spawn-user problem of master.cf.in's entry (`None` also when there is none).
    pub fn template_spawn_problem(&self) -> Option<postfix::SpawnProblem> {
        self.policy_template
            .as_ref()
            .and_then(|e| self.spawn.problem(Some(e)))
    }
}

impl GatherPlan {
    /// Builds the gather for `playbook`, reading the node's own LDAP (`zmprov -l`).
    /// `nonce` frames the sections (random per run).
    pub fn new(playbook: &Playbook, nonce: &str) -> Result<Self, QuoteError> {
        Self::reading(playbook, nonce, prov::Ldap::Any)
    }

    /// The gather whose prov batch reads `ldap`: the proof after a change reads the LDAP
    /// master (`-l -m`), which a lagging replica could contradict.
    pub fn reading(playbook: &Playbook, nonce: &str, ldap: prov::Ldap) -> Result<Self, QuoteError> {
        let mut global_attrs: Vec<String> = Vec::new();
        let mut server_attrs: Vec<String> = Vec::new();
        for c in &playbook.controls {
            if c.scope == Scope::Global && !global_attrs.contains(&c.attr) {
                global_attrs.push(c.attr.clone());
            }
            // Every control attribute can be overridden on the server entry, and an
            // override masks the global value, so `gs -e` reads all of them.
            if !server_attrs.contains(&c.attr) {
                server_attrs.push(c.attr.clone());
            }
        }
        let command_probes: Vec<String> = playbook
            .probes
            .iter()
            .filter(|p| matches!(p.kind, ProbeKind::Command { .. }))
            .map(|p| p.id.clone())
            .collect();

        let params = postconf_params(playbook);
        let mut scripts = Vec::new();
        let mut batch_len = 0;
        for flavour in Flavour::ALL {
            let (script, n) = Self::script_for(
                playbook,
                nonce,
                ldap,
                flavour,
                &params,
                &global_attrs,
                &server_attrs,
            )?;
            scripts.push(script);
            batch_len = n;
        }
        Ok(Self {
            nonce: nonce.to_string(),
            scripts,
            global_attrs,
            server_attrs,
            command_probes,
            batch_len,
        })
    }

    /// One product's gather script, and the length of its prov batch.
    fn script_for(
        playbook: &Playbook,
        nonce: &str,
        ldap: prov::Ldap,
        flavour: Flavour,
        params: &[String],
        global_attrs: &[String],
        server_attrs: &[String],
    ) -> Result<(String, usize), QuoteError> {
        let mut s = String::new();
        let targets = SYSTEMD_TARGETS
            .iter()
            .map(|t| quote(t))
            .collect::<Result<Vec<_>, _>>()?
            .join(" ");
        // systemctl only where systemd runs (what sd_booted() tests, with the shell's
        // own `test`): elsewhere it costs a start and can only say it is offline.
        section(
            &mut s,
            nonce,
            "platform",
            &format!(
                "test -d {SYSTEMD_RUN} || echo 'no {SYSTEMD_RUN}'; test -d {SYSTEMD_RUN} && systemctl is-enabled {targets} 2>&1"
            ),
        );
        // Which product's script this is: the reader takes its paths from it.
        section(
            &mut s,
            nonce,
            "flavour",
            &format!("echo {}", flavour.as_str()),
        );
        // No JVM but zmprov's (docs/carbonio.md §7): `zmcontrol -v` and `zmhostname`
        // each start one through zmlocalconfig. The version is what `zmcontrol -v`
        // prints from /opt/zextras/.version (Zimbra: the install history); the server
        // name is localconfig.xml's `zimbra_server_hostname`, of which only the value
        // line is read (the file also holds the LDAP passwords, which never leave the
        // node). Both, the policy entries and the mail log come from one file pass.
        file_pass(
            &mut s,
            nonce,
            flavour,
            [
                flavour.version_file(),
                flavour.localconfig(),
                flavour.master_cf(),
                flavour.master_template(),
                flavour.mail_log(),
            ],
        )?;
        effective_sections(&mut s, nonce, flavour, params)?;
        running_sections(&mut s, nonce)?;
        for p in &playbook.probes {
            if let ProbeKind::Command { command } = &p.kind {
                section(
                    &mut s,
                    nonce,
                    &format!("command {}", p.id),
                    &format!("sh -c {} 2>&1", quote(command)?),
                );
            }
        }

        // The prov batch. Lines naming this server are built in the shell because the
        // server name is only known there (`$h`); the rest is quoted here.
        let mut lines: Vec<String> = Vec::new();
        for a in global_attrs {
            lines.push(quote(&format!("gcf {a}"))?);
        }
        lines.push(format!("\"gs -e $h \"{}", quote(&server_attrs.join(" "))?));
        lines.push("\"gs $h \"zimbraServiceEnabled".to_string());
        // Each domain's type and domain-level catch-all, and every account or list entry
        // with a catch-all: the SMTP probe needs a local domain where an unknown address
        // really is unknown (docs/carbonio.md §2). `gad` is not sorted.
        lines.push(quote("gad -v zimbraDomainType zimbraMailCatchAllAddress")?);
        lines.push(quote("sa -v (zimbraMailCatchAllAddress=*)")?);
        // The cluster's MTAs as LDAP lists them: promotion waits for every one of them,
        // whatever the inventory says (the issue "Remediation that really stages").
        lines.push(quote("gas mta")?);
        lines.push("exit".to_string());
        let batch_len = lines.len() - 1;
        section(&mut s, nonce, "prov", &prov::feed_command(&lines, ldap));
        Ok((s, batch_len))
    }

    /// The script to run as `flavour`'s service user.
    pub fn script(&self, flavour: Flavour) -> &str {
        &self.scripts[flavour as usize]
    }

    /// Reads the gather output (stdout, and stderr for ProvUtil's `ERROR:` lines).
    pub fn parse(&self, stdout: &str, stderr: &str) -> Result<NodeFacts, GatherError> {
        let sections = split_sections(stdout, &self.nonce);
        let get = |name: &str| {
            sections
                .get(name)
                .ok_or_else(|| GatherError::MissingSection(name.to_string()))
        };
        let flavour_sec = get("flavour")?;
        let flavour = Flavour::ALL
            .into_iter()
            .find(|f| f.as_str() == flavour_sec.output.trim())
            .ok_or_else(|| GatherError::UnknownFlavour(flavour_sec.output.trim().to_string()))?;
        let platform_sec = get("platform")?;
        let platform = if platform_sec.output.lines().any(|l| l.trim() == "enabled") {
            Platform::Systemd
        } else {
            Platform::Legacy
        };
        let version_sec = get("version")?;
        // As `zmcontrol -v` prints it (carbonio-core-utils VersionCmd).
        let version = (version_sec.status == 0)
            .then(|| flavour.parse_version(&version_sec.output))
            .flatten();
        let hostname = server_hostname(flavour, get("hostname")?)?;
        let eff = parse_effective(&sections)?;
        let log = get("maillog")?;
        let (_, mastercf) = split_ids(&get("ids")?.output);
        let running = running::parse(
            &format!("{}{mastercf}", get("running")?.output),
            &get("masterps")?.output,
            (&log.output, log.status),
            &get("loghead")?.output,
        );
        let mut commands = BTreeMap::new();
        for id in &self.command_probes {
            commands.insert(id.clone(), get(&format!("command {id}"))?.clone());
        }

        let prov = self.parse_prov(get("prov")?, stderr)?;
        Ok(NodeFacts {
            flavour,
            platform,
            version,
            hostname,
            services: prov.services,
            global: prov.global,
            server: prov.server,
            domains: prov.domains,
            local_domains: prov.local_domains,
            catch_alls: prov.catch_alls,
            mta_servers: prov.mta_servers,
            postconf: eff.postconf,
            policy_service: eff.policy_service,
            policy_template: eff.policy_template,
            spawn: eff.spawn,
            commands,
            platform_evidence: platform_sec.output.trim_end().to_string(),
            running,
        })
    }

    /// The zmprov batch's answers, one output per batch line in the order `script_for`
    /// wrote them: global values, this server's overrides and services, the domains and
    /// catch-alls, the cluster's MTAs. A ProvUtil `ERROR:` line fails the whole gather.
    fn parse_prov(&self, prov_sec: &Section, stderr: &str) -> Result<ProvFacts, GatherError> {
        let errors = prov::error_lines(&prov_sec.output, stderr);
        let split = prov::split_output(&prov_sec.output, self.batch_len).map_err(|e| {
            if errors.is_empty() {
                GatherError::Prov(e)
            } else {
                GatherError::ProvFailed(errors.join("; "))
            }
        })?;
        if !errors.is_empty() {
            return Err(GatherError::ProvFailed(errors.join("; ")));
        }
        let mut global = BTreeMap::new();
        for (i, a) in self.global_attrs.iter().enumerate() {
            global.insert(a.clone(), prov::values_of(&split.outputs[i], a));
        }
        let n = self.global_attrs.len();
        let mut server = BTreeMap::new();
        for a in &self.server_attrs {
            let vals = prov::values_of(&split.outputs[n], a);
            if !vals.is_empty() {
                server.insert(a.clone(), vals);
            }
        }
        let services = prov::values_of(&split.outputs[n + 1], "zimbraServiceEnabled");
        let listed = prov::entries(&split.outputs[n + 2]);
        let domains: Vec<String> = listed.iter().map(|(d, _)| d.clone()).collect();
        let local_domains: Vec<String> = listed
            .iter()
            .filter(|(_, attrs)| {
                prov::values_of(attrs, "zimbraDomainType")
                    .iter()
                    .any(|t| t == "local")
            })
            .map(|(d, _)| d.clone())
            .collect();
        // Catch-alls on domain entries (`gad -v`) and on any entry `sa` lists (accounts,
        // aliases, lists, resources, each in its own layout): only the attribute lines
        // matter, whichever entry they belong to.
        let mut catch_alls: Vec<String> = [&split.outputs[n + 2], &split.outputs[n + 3]]
            .into_iter()
            .flat_map(|out| prov::values_of(out, "zimbraMailCatchAllAddress"))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        catch_alls.sort();
        catch_alls.dedup();
        // `gas mta`: one server name per line (ProvUtil `doGetAllServers`).
        let mut mta_servers: Vec<String> = split.outputs[n + 4]
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        mta_servers.sort();
        mta_servers.dedup();
        Ok(ProvFacts {
            services,
            global,
            server,
            domains,
            local_domains,
            catch_alls,
            mta_servers,
        })
    }
}

/// What the zmprov batch of the gather says (see [`NodeFacts`] for each field).
struct ProvFacts {
    services: Vec<String>,
    global: BTreeMap<String, Vec<String>>,
    server: BTreeMap<String, Vec<String>>,
    domains: Vec<String>,
    local_domains: Vec<String>,
    catch_alls: Vec<String>,
    mta_servers: Vec<String>,
}

/// The Carbonio server name from the `hostname` section (localconfig.xml
/// `zimbra_server_hostname`): not empty, and a plain host name.
fn server_hostname(flavour: Flavour, sec: &Section) -> Result<String, GatherError> {
    let hostname = sec.output.trim().to_string();
    if hostname.is_empty() {
        return Err(GatherError::NoHostname(flavour.localconfig(), sec.status));
    }
    // It goes into the zmprov batch as a word (`gs -e NAME`): only a host name may.
    // The value itself is not repeated: a malformed file could make it something else.
    if hostname.len() > 253
        || !hostname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return Err(GatherError::BadHostname(flavour.localconfig()));
    }
    Ok(hostname)
}

/// Postfix parameters the gather reads: the base ones and every `postconf` probe's.
fn postconf_params(playbook: &Playbook) -> Vec<String> {
    let mut params: Vec<String> = BASE_POSTCONF.iter().map(|s| s.to_string()).collect();
    for p in &playbook.probes {
        if let ProbeKind::Postconf { param } = &p.kind
            && !params.contains(param)
        {
            params.push(param.clone());
        }
    }
    params
}

/// Appends one marker-framed section running `body`.
fn section(s: &mut String, nonce: &str, name: &str, body: &str) {
    s.push_str(&format!(
        "echo '#cfleet-{nonce} {name}'; {body}; echo \"#cfleet-{nonce} rc $?\"\n"
    ));
}

/// The whole awk program of the file pass (see `file_pass`), in its own file: the
/// simulator (`carbonio-sim`, `programs::awk`) includes the same file, recognises the
/// program and runs its own rendition, which a test compares with the machine's awk on
/// the same files.
pub const FILE_PASS: &str = include_str!("file_pass.awk");

/// Where systemd keeps its runtime state: a directory only while systemd is PID 1.
pub const SYSTEMD_RUN: &str = "/run/systemd/system";

/// ONE awk over the node's files, printing only what the tool needs as marker-framed
/// sections: `version` (.version's first line; Zimbra: the install history's
/// `INSTALLED zimbra-core` lines), `hostname` (the value of `zimbra_server_hostname`,
/// read from the one line after its key: localconfig.xml's passwords are never printed),
/// `master` and `template` (the `policy` lines of master.cf and master.cf.in with three
/// lines of context, as `grep -A3` prints them), `spawn` (the `user=` of the active
/// entry, then of the template's), `maillog` (the master's start and reload lines) and
/// `loghead` (the log's first line). Reading master.cf itself replaces `postconf -M
/// policy/unix`: `postconf -M` is a mode of its own that takes no parameter names
/// (`postconf -M policy/unix mail_version` answers `unmatched request`), so it would be
/// a second postconf start. Files it cannot open give status 2 (1 for `loghead`, as
/// head says), never a stop: each is read with `getline <FILE` from BEGIN.
///
/// The output is captured: its last line, `HOST/USER1/USER2/GROUP1/GROUP2` (outside any
/// section), gives the shell the server name for the prov batch and the names `getent`
/// looks up; the rest is printed as is.
fn file_pass(
    s: &mut String,
    nonce: &str,
    flavour: Flavour,
    files: [&str; 5],
) -> Result<(), QuoteError> {
    let files = files
        .iter()
        .map(|f| quote(f))
        .collect::<Result<Vec<_>, _>>()?
        .join(" ");
    s.push_str(&format!(
        "a=$(awk -v m={marker} -v z={z} {prog} {files})\nprintf '%s\\n' \"$a\"\n\
         v=${{a##*[[:space:]]}}; h=${{v%%/*}}; v=${{v#*/}}; u1=${{v%%/*}}; v=${{v#*/}}; u2=${{v%%/*}}; v=${{v#*/}}; g1=${{v%%/*}}; g2=${{v#*/}}\n",
        marker = quote(&format!("#cfleet-{nonce}"))?,
        z = u8::from(flavour == Flavour::Zimbra),
        prog = quote(FILE_PASS)?,
    ));
    Ok(())
}

/// The sections that read the effective Postfix state (no JVM), after a [`file_pass`]
/// that read master.cf and master.cf.in: shared by the gather and the health gate.
/// `ids` looks the spawn users up by name (never the whole passwd database, which may
/// be LDAP-backed; one `getent` per database for both entries) and gives localconfig.xml's
/// owner and mode and master.cf's mtime in one `stat`: whether that user can read
/// localconfig.xml with the one group spawn gives it is decided here, not on the node.
fn effective_sections(
    s: &mut String,
    nonce: &str,
    flavour: Flavour,
    params: &[String],
) -> Result<(), QuoteError> {
    let quoted = params
        .iter()
        .map(|p| quote(p))
        .collect::<Result<Vec<_>, _>>()?
        .join(" ");
    section(s, nonce, "postconf", &format!("postconf {quoted} 2>&1"));
    section(
        s,
        nonce,
        "ids",
        &format!(
            "getent passwd \"$u1\" \"$u2\"; getent group \"$g1\" \"$g2\"; stat -L -c 'file %u %g %a %Y %n' {lc} {mcf} 2>&1",
            lc = quote(flavour.localconfig())?,
            mcf = quote(flavour.master_cf())?,
        ),
    );
    Ok(())
}

/// The sections that tell whether the running master loaded master.cf (see
/// [`running`]): the node's clock and name, and the master's age (master.cf's mtime is
/// in `ids`, the mail log's lines in the file pass). No root, no JVM.
fn running_sections(s: &mut String, nonce: &str) -> Result<(), QuoteError> {
    section(
        s,
        nonce,
        "running",
        "echo \"clock $(date '+%s %Y %z')\"; echo \"uname $(uname -n)\"",
    );
    section(
        s,
        nonce,
        "masterps",
        "ps -C master -o etimes=,args= 2>/dev/null",
    );
    Ok(())
}

/// The effective Postfix state of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveFacts {
    pub postconf: BTreeMap<String, String>,
    pub policy_service: Option<SpawnLine>,
    pub policy_template: Option<SpawnLine>,
    pub spawn: SpawnAccess,
}

impl EffectiveFacts {
    /// Why the ACTIVE policy service cannot start as its spawn user, if it cannot.
    pub fn spawn_problem(&self) -> Option<postfix::SpawnProblem> {
        self.policy_service
            .as_ref()
            .and_then(|e| self.spawn.problem(Some(e)))
    }
}

fn parse_effective(sections: &BTreeMap<String, Section>) -> Result<EffectiveFacts, GatherError> {
    let get = |name: &str| {
        sections
            .get(name)
            .ok_or_else(|| GatherError::MissingSection(name.to_string()))
    };
    let (ids, _) = split_ids(&get("ids")?.output);
    Ok(EffectiveFacts {
        postconf: postfix::parse_postconf(&get("postconf")?.output),
        // Postfix runs only the uncommented entry of master.cf (what `postconf -M` shows).
        policy_service: postfix::parse_spawn_line(&get("master")?.output).filter(|l| l.active),
        policy_template: postfix::parse_spawn_line(&get("template")?.output),
        spawn: SpawnAccess::parse(&format!("{}{ids}", get("spawn")?.output)),
    })
}

/// Splits the `ids` section into what [`SpawnAccess::parse`] reads (the `getent`
/// answers and `localconfig UID GID MODE`) and what [`running::parse`] reads
/// (`mastercf MTIME`, or stat's complaint about master.cf).
fn split_ids(ids: &str) -> (String, String) {
    let (mut spawn, mut running) = (String::new(), String::new());
    for line in ids.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w[..] {
            ["file", uid, gid, mode, _, name] if name.ends_with("/localconfig.xml") => {
                spawn.push_str(&format!("localconfig {uid} {gid} {mode}\n"));
            }
            ["file", _, _, _, mtime, name] if name.ends_with("/master.cf") => {
                running.push_str(&format!("mastercf {mtime}\n"));
            }
            _ if line.starts_with("stat:") => {
                if line.contains("master.cf") {
                    running.push_str(line);
                    running.push('\n');
                }
            }
            _ => {
                spawn.push_str(line);
                spawn.push('\n');
            }
        }
    }
    (spawn, running)
}

/// The health gate's read of the effective Postfix config: the gather's effective
/// sections alone, without the JVM.
#[derive(Debug, Clone)]
pub struct EffectivePlan {
    nonce: String,
    /// One script per product (`Flavour::ALL` order).
    scripts: Vec<String>,
}

impl EffectivePlan {
    pub fn new(playbook: &Playbook, nonce: &str) -> Result<Self, QuoteError> {
        let params = postconf_params(playbook);
        let mut scripts = Vec::new();
        for flavour in Flavour::ALL {
            let mut script = String::new();
            // The gate needs neither the version, the server name nor the mail log.
            file_pass(
                &mut script,
                nonce,
                flavour,
                [
                    "/dev/null",
                    "/dev/null",
                    flavour.master_cf(),
                    flavour.master_template(),
                    "/dev/null",
                ],
            )?;
            effective_sections(&mut script, nonce, flavour, &params)?;
            scripts.push(script);
        }
        Ok(Self {
            nonce: nonce.to_string(),
            scripts,
        })
    }

    /// The script to run as `flavour`'s service user.
    pub fn script(&self, flavour: Flavour) -> &str {
        &self.scripts[flavour as usize]
    }

    pub fn parse(&self, stdout: &str) -> Result<EffectiveFacts, GatherError> {
        parse_effective(&split_sections(stdout, &self.nonce))
    }
}

/// Splits marker-framed sections. A section's end marker may be glued to output that did
/// not end in a newline (ProvUtil's last `prov> ` prompt, for one).
fn split_sections(stdout: &str, nonce: &str) -> BTreeMap<String, Section> {
    let begin_tag = format!("#cfleet-{nonce} ");
    let end_tag = format!("#cfleet-{nonce} rc ");
    let mut out = BTreeMap::new();
    let mut rest = stdout;
    while let Some(b) = rest.find(&begin_tag) {
        let after = &rest[b + begin_tag.len()..];
        let Some(nl) = after.find('\n') else { break };
        let name = after[..nl].to_string();
        if name.starts_with("rc ") {
            rest = &after[nl + 1..];
            continue;
        }
        let body = &after[nl + 1..];
        let Some(e) = body.find(&end_tag) else { break };
        let output = body[..e].to_string();
        let tail = &body[e + end_tag.len()..];
        let line_end = tail.find('\n').unwrap_or(tail.len());
        let status = tail[..line_end].trim().parse().unwrap_or(-1);
        out.insert(name, Section { output, status });
        rest = &tail[line_end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case("mx1.example.com\n", 0, Ok("mx1.example.com"); "a host name, trimmed")]
    #[test_case("\n", 1, Err(GatherError::NoHostname("/opt/zextras/conf/localconfig.xml", 1)); "empty")]
    #[test_case("mx1 example", 0, Err(GatherError::BadHostname("/opt/zextras/conf/localconfig.xml")); "a space")]
    #[test_case("mx1;reboot", 0, Err(GatherError::BadHostname("/opt/zextras/conf/localconfig.xml")); "a shell word")]
    #[test_case(&"a".repeat(254), 0, Err(GatherError::BadHostname("/opt/zextras/conf/localconfig.xml")); "too long")]
    fn the_server_name_must_be_a_host_name(
        output: &str,
        status: i64,
        expected: Result<&str, GatherError>,
    ) {
        let sec = Section {
            output: output.to_string(),
            status,
        };
        assert_eq!(
            server_hostname(Flavour::Carbonio, &sec),
            expected.map(str::to_string)
        );
    }

    #[test]
    fn sections_split_with_glued_end_marker() {
        let out = "noise from .bashrc\n#cfleet-n1 platform\nenabled\n#cfleet-n1 rc 0\n#cfleet-n1 prov\nprov> a: 1\nprov> #cfleet-n1 rc 0\n";
        let s = split_sections(out, "n1");
        assert_eq!(
            s["platform"],
            Section {
                output: "enabled\n".into(),
                status: 0
            }
        );
        assert_eq!(
            s["prov"],
            Section {
                output: "prov> a: 1\nprov> ".into(),
                status: 0
            }
        );
    }

    #[test]
    fn other_nonce_is_ignored() {
        let s = split_sections("#cfleet-zz platform\nx\n#cfleet-zz rc 0\n", "n1");
        assert!(s.is_empty());
    }
}
