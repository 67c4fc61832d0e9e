//! Reading and validating an inventory: one file, or a directory of `*.toml` files
//! merged in name order, turned into the validated [`Inventory`].
//!
//! Precedence, lowest first: the built-in defaults, `[defaults]`, each group of the
//! host's `groups` list in that order, the `[[hosts]]` entry itself. `vars` tables merge
//! key by key in the same order. Paths starting with `~` use `$HOME`; other relative
//! paths are resolved against the directory of the file that sets them, so an inventory
//! can ship its own `known_hosts` beside it. Every problem found is collected, so one
//! run shows them all; nothing is connected to here.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_spanned::Spanned;

use super::raw::{RawHost, RawInventory, RawSettings};
use super::ssh_config::{SshConfig, default_ssh_config};
use super::{Become, Host, HostKeyPolicy, Inventory, JumpSpec};
use crate::config_error::{ConfigError, ConfigErrors, Position, Source, join_key, non_empty};
use crate::flavour::FlavourSetting;

/// How to load an inventory beyond its own files.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `--ssh-config [PATH]`: read this OpenSSH client config for every host, whatever
    /// the inventory says (a missing file is an error). `None`: read `user_ssh_config`
    /// only for hosts whose settings say `ssh_config = true` (a missing file is then
    /// ignored, as ssh does).
    pub ssh_config: Option<PathBuf>,
    /// The file `ssh_config = true` means: `~/.ssh/config` by default.
    pub user_ssh_config: PathBuf,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            ssh_config: None,
            user_ssh_config: default_ssh_config(),
        }
    }
}

/// Loads the inventory at `path` (a file or a directory of `*.toml` files).
pub fn load(path: &Path) -> Result<Inventory, ConfigErrors> {
    load_with(path, &LoadOptions::default())
}

/// [`load`] with options (ssh_config).
///
/// ssh_config values fill only what no inventory table set explicitly (inventory values
/// win; ssh_config wins over the built-in defaults). A host's block is looked up with
/// its explicit `address` if it has one, else its `name`, i.e. what would be given to
/// `ssh`; `HostName` applies only when the inventory sets no `address`.
pub fn load_with(path: &Path, opts: &LoadOptions) -> Result<Inventory, ConfigErrors> {
    let files = inventory_files(path)?;
    let mut errors = Vec::new();
    let mut builder = Builder::default();
    for file in &files {
        let text = match fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                errors.push(ConfigError::file(
                    file,
                    format!("cannot read inventory file `{}`: {e}", file.display()),
                ));
                continue;
            }
        };
        let src = Source::new(file, &text);
        match src.deserialize::<RawInventory>() {
            Ok(raw) => builder.add_file(&src, raw, &mut errors),
            Err(e) if super::ansible::looks_like_ansible(&text) => errors.push(e.with_hint(format!(
                "this looks like an Ansible inventory: convert it with `ansible-inventory -i {f} --list > inventory.json` then `carbonio-fleet inventory import --from-ansible inventory.json --out inventory.toml`",
                f = file.display()
            ))),
            Err(e) => errors.push(e),
        }
    }
    let inventory = builder.finish(files, opts, &mut errors);
    // Report in reading order: file by file, top to bottom.
    errors.sort_by_key(|e| {
        let file = inventory.files.iter().position(|f| *f == e.file);
        (file, e.position.map(|p| (p.line, p.column)))
    });
    if errors.is_empty() && inventory.hosts.is_empty() {
        errors.push(
            ConfigError::file(path, "the inventory declares no host")
                .with_hint("add at least one `[[hosts]]` table with a `name`"),
        );
    }
    if errors.is_empty() {
        Ok(inventory)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The file itself, or the `*.toml` files of a directory sorted by name.
fn inventory_files(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let cannot = |e: std::io::Error| {
        ConfigError::file(
            path,
            format!("cannot read inventory `{}`: {e}", path.display()),
        )
    };
    let meta = fs::metadata(path).map_err(cannot)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(path).map_err(cannot)? {
        let entry = entry.map_err(cannot)?;
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "toml") && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(ConfigError::file(
            path,
            format!(
                "the inventory directory `{}` holds no `*.toml` file",
                path.display()
            ),
        ));
    }
    Ok(files)
}

/// A jump host as written; the user defaults to the host's login user at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JumpParts {
    user: Option<String>,
    host: String,
    port: u16,
}

/// Settings from one table, already checked and converted; `None` = not set there.
#[derive(Debug, Clone, Default)]
struct Layer {
    user: Option<String>,
    port: Option<u16>,
    identity_files: Option<Vec<PathBuf>>,
    become_: Option<Become>,
    flavour: Option<FlavourSetting>,
    known_hosts: Option<PathBuf>,
    /// More user files (ssh_config's `UserKnownHostsFile` beyond the first).
    more_known_hosts: Option<Vec<PathBuf>>,
    global_known_hosts: Option<Vec<PathBuf>>,
    host_key_policy: Option<HostKeyPolicy>,
    connect_timeout: Option<Duration>,
    command_timeout: Option<Duration>,
    /// `Some(None)`: explicitly no jump host (`jump = ""`).
    jump: Option<Option<JumpParts>>,
    vars: BTreeMap<String, String>,
    cluster: Option<String>,
    roles: Option<Vec<String>>,
    egress: Option<Vec<IpAddr>>,
    ssh_config: Option<bool>,
}

impl Layer {
    /// Values set in `top` replace ours; vars merge key by key.
    fn overlay(&mut self, top: &Layer) {
        macro_rules! take {
            ($($f:ident),*) => { $( if top.$f.is_some() { self.$f = top.$f.clone(); } )* };
        }
        take!(
            user,
            port,
            identity_files,
            become_,
            flavour,
            known_hosts,
            more_known_hosts,
            global_known_hosts,
            host_key_policy,
            connect_timeout,
            command_timeout,
            jump,
            cluster,
            roles,
            egress,
            ssh_config
        );
        self.vars
            .extend(top.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    /// The keys this layer sets (for spotting a `[defaults]` key set in two files).
    fn set_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = [
            ("user", self.user.is_some()),
            ("port", self.port.is_some()),
            ("identity_files", self.identity_files.is_some()),
            ("become", self.become_.is_some()),
            ("flavour", self.flavour.is_some()),
            ("known_hosts", self.known_hosts.is_some()),
            ("global_known_hosts", self.global_known_hosts.is_some()),
            ("host_key_policy", self.host_key_policy.is_some()),
            ("connect_timeout", self.connect_timeout.is_some()),
            ("command_timeout", self.command_timeout.is_some()),
            ("jump", self.jump.is_some()),
            ("egress", self.egress.is_some()),
            ("ssh_config", self.ssh_config.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(k, _)| k.to_owned())
        .collect();
        keys.extend(self.vars.keys().map(|k| join_key("vars", k)));
        keys
    }
}

/// The built-in defaults (README "Inventory", `[defaults]`).
fn builtin_layer() -> Layer {
    let home_path = |rest: &str| match home_dir() {
        Some(home) => home.join(rest),
        // No home directory at all: leave the tilde so the open fails naming the path.
        None => PathBuf::from(format!("~/{rest}")),
    };
    Layer {
        user: Some("root".to_owned()),
        port: Some(22),
        identity_files: Some(vec![home_path(".ssh/id_ed25519")]),
        become_: Some(Become::Auto),
        flavour: Some(FlavourSetting::Auto),
        known_hosts: Some(home_path(".ssh/known_hosts")),
        // OpenSSH's default GlobalKnownHostsFile.
        global_known_hosts: Some(vec![
            PathBuf::from("/etc/ssh/ssh_known_hosts"),
            PathBuf::from("/etc/ssh/ssh_known_hosts2"),
        ]),
        host_key_policy: Some(HostKeyPolicy::Strict),
        connect_timeout: Some(Duration::from_secs(10)),
        command_timeout: Some(Duration::from_secs(5 * 60)),
        jump: Some(None),
        ..Layer::default()
    }
}

/// `$HOME`, or the user's passwd entry when it is unset. std reads `$HOME` first on
/// Unix, as `dirs` did, but returns an empty `$HOME` as it is; an empty home is no
/// home (it would make `~/.ssh` relative to wherever the tool was started).
pub(crate) fn home_dir() -> Option<PathBuf> {
    std::env::home_dir().filter(|h| !h.as_os_str().is_empty())
}

/// Where something was declared, for errors that point back at it.
#[derive(Debug, Clone)]
struct Place {
    file: PathBuf,
    position: Position,
    key: String,
}

impl Place {
    fn new(src: &Source<'_>, span: std::ops::Range<usize>, key: String) -> Self {
        Place {
            file: src.path.to_path_buf(),
            position: src.position(span.start),
            key,
        }
    }

    fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            position: Some(self.position),
            key: self.key.clone(),
            message: message.into(),
            hint: None,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{}:{}:{}",
            self.file.display(),
            self.position.line,
            self.position.column
        )
    }
}

struct PendingGroup {
    name: String,
    layer: Layer,
    place: Place,
}

struct PendingHost {
    name: String,
    address: Option<String>,
    groups: Vec<(String, Place)>,
    layer: Layer,
    source: PathBuf,
}

#[derive(Default)]
struct Builder {
    defaults: Layer,
    /// Which file set each `[defaults]` key first.
    defaults_origin: HashMap<String, PathBuf>,
    /// `[defaults] dns_servers`.
    dns_servers: Vec<SocketAddr>,
    groups: Vec<PendingGroup>,
    /// Index into `groups` by name (MSP inventories hold thousands of groups).
    group_index: HashMap<String, usize>,
    hosts: Vec<PendingHost>,
    host_places: HashMap<String, Place>,
}

impl Builder {
    fn add_file(&mut self, src: &Source<'_>, raw: RawInventory, errors: &mut Vec<ConfigError>) {
        if let Some(defaults) = &raw.defaults {
            let layer = settings_layer(src, defaults.get_ref(), "defaults", errors);
            for key in layer.set_keys() {
                if let Some(first) = self.defaults_origin.get(&key) {
                    errors.push(
                        src.error(
                            defaults.span(),
                            format!("defaults.{key}"),
                            format!("already set in `{}`", first.display()),
                        )
                        .with_hint(
                            "[defaults] applies to every file of the inventory: set each key \
                             in one file, or use a group",
                        ),
                    );
                } else {
                    self.defaults_origin.insert(key, src.path.to_path_buf());
                }
            }
            self.defaults.overlay(&layer);
            if let Some(servers) = &defaults.get_ref().dns_servers {
                if let Some(first) = self.defaults_origin.get("dns_servers") {
                    errors.push(src.error(
                        defaults.span(),
                        "defaults.dns_servers",
                        format!("already set in `{}`", first.display()),
                    ));
                } else {
                    self.defaults_origin
                        .insert("dns_servers".to_owned(), src.path.to_path_buf());
                    self.dns_servers = servers
                        .iter()
                        .enumerate()
                        .filter_map(|(i, s)| match parse_dns_server(s.get_ref()) {
                            Some(a) => Some(a),
                            None => {
                                errors.push(
                                    src.error(
                                        s.span(),
                                        format!("defaults.dns_servers[{i}]"),
                                        format!("`{}` is not a DNS server address", s.get_ref()),
                                    )
                                    .with_hint("write an IP address with an optional port: `\"127.0.0.1:5353\"`, `\"192.0.2.53\"`, `\"[2001:db8::53]:53\"`"),
                                );
                                None
                            }
                        })
                        .collect();
                }
            }
        }

        for (name, group) in &raw.groups {
            let key = join_key("groups", name);
            let place = Place::new(src, group.span(), key.clone());
            if let Some(msg) = bad_name(name).or_else(|| bad_path_component(name)) {
                errors.push(place.error(format!("group name `{name}` {msg}")));
            }
            if let Some(first) = self.group_index.get(name).map(|&i| &self.groups[i]) {
                errors.push(place.error(format!(
                    "group `{name}` is already declared at {}",
                    first.place.describe()
                )));
                continue;
            }
            let g = group.get_ref();
            let mut layer = settings_layer(src, &g.settings(), &key, errors);
            layer.cluster = g
                .cluster
                .as_ref()
                .and_then(|c| non_empty(src, c, &join_key(&key, "cluster"), errors));
            layer.roles = g.roles.clone();
            self.group_index.insert(name.clone(), self.groups.len());
            self.groups.push(PendingGroup {
                name: name.clone(),
                layer,
                place,
            });
        }

        for (i, host) in raw.hosts.iter().enumerate() {
            self.add_host(src, i, host, errors);
        }
    }

    fn add_host(
        &mut self,
        src: &Source<'_>,
        index: usize,
        host: &Spanned<RawHost>,
        errors: &mut Vec<ConfigError>,
    ) {
        let key = format!("hosts[{index}]");
        let h = host.get_ref();
        let name = h
            .name
            .as_ref()
            .and_then(|n| non_empty(src, n, &format!("{key}.name"), errors));
        let address = h
            .address
            .as_ref()
            .and_then(|a| non_empty(src, a, &format!("{key}.address"), errors));
        let mut layer = settings_layer(src, &h.settings(), &key, errors);
        layer.cluster = h
            .cluster
            .as_ref()
            .and_then(|c| non_empty(src, c, &format!("{key}.cluster"), errors));
        layer.roles = h.roles.clone();

        let mut groups: Vec<(String, Place)> = Vec::new();
        for (j, g) in h.groups.iter().flatten().enumerate() {
            let place = Place::new(src, g.span(), format!("{key}.groups[{j}]"));
            if groups.iter().any(|(n, _)| n == g.get_ref()) {
                errors.push(place.error(format!("group `{}` is listed twice", g.get_ref())));
            } else {
                groups.push((g.get_ref().clone(), place));
            }
        }

        let Some(name) = name.or_else(|| address.clone()) else {
            if h.name.is_none() && h.address.is_none() {
                errors.push(
                    src.error(host.span(), key, "host has neither `name` nor `address`")
                        .with_hint("every host needs a unique `name` (the address defaults to it)"),
                );
            }
            return;
        };
        let name_span = h.name.as_ref().or(h.address.as_ref()).map(|n| n.span());
        let place = Place::new(
            src,
            name_span.unwrap_or(host.span()),
            if h.name.is_some() {
                format!("{key}.name")
            } else {
                format!("{key}.address")
            },
        );
        if let Some(msg) = bad_name(&name) {
            errors.push(place.error(format!("host name `{name}` {msg}")));
        }
        if let Some(first) = self.host_places.get(&name) {
            errors.push(place.error(format!(
                "duplicate host name `{name}` (first declared at {})",
                first.describe()
            )));
            return;
        }
        self.host_places.insert(name.clone(), place);
        self.hosts.push(PendingHost {
            name,
            address,
            groups,
            layer,
            source: src.path.to_path_buf(),
        });
    }

    fn finish(
        self,
        files: Vec<PathBuf>,
        opts: &LoadOptions,
        errors: &mut Vec<ConfigError>,
    ) -> Inventory {
        let group_layers: HashMap<&str, &Layer> = self
            .groups
            .iter()
            .map(|g| (g.name.as_str(), &g.layer))
            .collect();
        let declared: Vec<&str> = self.groups.iter().map(|g| g.name.as_str()).collect();
        let builtin = builtin_layer();
        let mut ssh = SshConfigSource::new(opts);

        let mut hosts = Vec::with_capacity(self.hosts.len());
        for mut pending in self.hosts {
            // Only the tables of the inventory first: what is still unset afterwards
            // may come from ssh_config, and then from the built-in defaults.
            let mut eff = self.defaults.clone();
            for (group, place) in &pending.groups {
                match group_layers.get(group.as_str()) {
                    Some(layer) => eff.overlay(layer),
                    None => {
                        let declared = if declared.is_empty() {
                            "none".to_owned()
                        } else {
                            declared.join(", ")
                        };
                        errors.push(
                            place
                                .error(format!("unknown group `{group}`"))
                                .with_hint(format!(
                                    "declare it with a `[groups.{group}]` table (declared groups: {declared})"
                                )),
                        );
                    }
                }
            }
            eff.overlay(&pending.layer);
            if let Some(config) = ssh.for_host(eff.ssh_config, errors) {
                apply_ssh_config(config, &mut pending, &mut eff, errors);
            }
            let mut full = builtin.clone();
            full.overlay(&eff);
            hosts.push(effective_host(pending, full));
        }
        Inventory {
            files,
            hosts,
            groups: self.groups.into_iter().map(|g| g.name).collect(),
            dns_servers: self.dns_servers,
        }
    }
}

/// The ssh_config file(s) a load may use, each read at most once.
struct SshConfigSource {
    forced: Option<PathBuf>,
    user: PathBuf,
    loaded: HashMap<PathBuf, Option<std::sync::Arc<SshConfig>>>,
}

impl SshConfigSource {
    fn new(opts: &LoadOptions) -> Self {
        SshConfigSource {
            forced: opts.ssh_config.clone(),
            user: opts.user_ssh_config.clone(),
            loaded: HashMap::new(),
        }
    }

    /// The config for a host whose settings say `enabled`; errors are pushed once.
    fn for_host(
        &mut self,
        enabled: Option<bool>,
        errors: &mut Vec<ConfigError>,
    ) -> Option<std::sync::Arc<SshConfig>> {
        let (path, required) = match (&self.forced, enabled) {
            (Some(p), _) => (p.clone(), true),
            (None, Some(true)) => (self.user.clone(), false),
            (None, _) => return None,
        };
        self.loaded
            .entry(path.clone())
            .or_insert_with(|| {
                if !required && !path.exists() {
                    return None;
                }
                match SshConfig::load(&path) {
                    Ok(c) => {
                        for (line, text) in &c.skipped {
                            tracing::warn!(file = %path.display(), line, "ssh_config line not evaluated (Match and Include are not supported): {text}");
                        }
                        Some(std::sync::Arc::new(c))
                    }
                    Err(message) => {
                        errors.push(ConfigError::file(&path, message).with_hint(
                            "fix the file, or run without --ssh-config / `ssh_config = true`",
                        ));
                        None
                    }
                }
            })
            .clone()
    }
}

/// An error at a line of an ssh_config file.
fn ssh_config_error(config: &SshConfig, line: usize, key: &str, message: String) -> ConfigError {
    ConfigError {
        file: config.path.clone(),
        position: Some(crate::config_error::Position { line, column: 1 }),
        key: key.to_owned(),
        message,
        hint: None,
    }
}

/// Fills what the inventory left unset for `pending` from ssh_config.
fn apply_ssh_config(
    config: std::sync::Arc<SshConfig>,
    pending: &mut PendingHost,
    eff: &mut Layer,
    errors: &mut Vec<ConfigError>,
) {
    let destination = pending
        .address
        .clone()
        .unwrap_or_else(|| pending.name.clone());
    let r = match config.resolve(&destination) {
        Ok(r) => r,
        Err(e) => {
            errors.push(ssh_config_error(&config, e.line, "Port", e.message));
            return;
        }
    };
    if pending.address.is_none() {
        pending.address = r.hostname.map(|h| h.value);
    }
    if eff.user.is_none() {
        eff.user = r.user.map(|u| u.value);
    }
    if eff.port.is_none() {
        eff.port = r.port.map(|p| p.value);
    }
    if eff.identity_files.is_none() && !r.identity_files.is_empty() {
        eff.identity_files = Some(r.identity_files.into_iter().map(|l| l.value).collect());
    }
    if eff.known_hosts.is_none()
        && let Some(first) = r.user_known_hosts_file
    {
        eff.known_hosts = Some(first.value);
        eff.more_known_hosts = Some(r.more_user_known_hosts_files);
    }
    if eff.global_known_hosts.is_none() {
        eff.global_known_hosts = r.global_known_hosts_files;
    }
    if eff.jump.is_none()
        && let Some(pj) = r.proxy_jump
    {
        let spec = if pj.value.eq_ignore_ascii_case("none") {
            ""
        } else {
            pj.value.as_str()
        };
        match parse_jump(spec) {
            Ok(None) => eff.jump = Some(None),
            Ok(Some(mut j)) => {
                // The jump host may itself be an alias of the same file (OpenSSH
                // resolves it the same way); what the ProxyJump spells out wins.
                let hostpart = spec.rsplit_once('@').map_or(spec, |(_, h)| h);
                let spelled_port = hostpart.contains(':');
                if let Ok(alias) = config.resolve(&j.host) {
                    if j.user.is_none() {
                        j.user = alias.user.map(|u| u.value);
                    }
                    if !spelled_port && let Some(p) = alias.port {
                        j.port = p.value;
                    }
                    if let Some(h) = alias.hostname {
                        j.host = h.value;
                    }
                }
                eff.jump = Some(Some(j));
            }
            Err(reason) => errors.push(
                ssh_config_error(
                    &config,
                    pj.line,
                    "ProxyJump",
                    format!(
                        "invalid ProxyJump `{}` for `{}`: {reason}",
                        pj.value, pending.name
                    ),
                )
                .with_hint("one jump host, `user@host:port`; chains are not supported"),
            ),
        }
    }
}

/// The host with every setting resolved. The built-in layer sets every `Option` that
/// is unwrapped here, and overlays only replace values, never clear them.
fn effective_host(p: PendingHost, eff: Layer) -> Host {
    let user = eff.user.expect("built-in default");
    let jump = eff.jump.flatten().map(|j| JumpSpec {
        user: j.user.unwrap_or_else(|| user.clone()),
        host: j.host,
        port: j.port,
    });
    Host {
        address: p.address.unwrap_or_else(|| p.name.clone()),
        port: eff.port.expect("built-in default"),
        user,
        identity_files: eff.identity_files.expect("built-in default"),
        become_: eff.become_.expect("built-in default"),
        flavour: eff.flavour.expect("built-in default"),
        known_hosts: eff.known_hosts.expect("built-in default"),
        known_hosts_also: eff
            .more_known_hosts
            .unwrap_or_default()
            .into_iter()
            .chain(eff.global_known_hosts.expect("built-in default"))
            .collect(),
        host_key_policy: eff.host_key_policy.expect("built-in default"),
        connect_timeout: eff.connect_timeout.expect("built-in default"),
        command_timeout: eff.command_timeout.expect("built-in default"),
        jump,
        groups: p.groups.into_iter().map(|(g, _)| g).collect(),
        cluster: eff.cluster.unwrap_or_else(|| p.name.clone()),
        roles: eff.roles.unwrap_or_default(),
        vars: eff.vars,
        egress: eff.egress.unwrap_or_default(),
        source: p.source,
        name: p.name,
    }
}

/// `ip`, `ip:port` or `[ipv6]:port`; port 53 when omitted.
fn parse_dns_server(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

/// A group name becomes a directory (`--split-by group`: `RUN/groups/NAME/`): it must be
/// one plain path component, never a way out of the report directory.
fn bad_path_component(name: &str) -> Option<&'static str> {
    if name.is_empty() || name == "." || name == ".." {
        Some("may not be empty, `.` or `..` (it names a report directory)")
    } else if name.contains(['/', '\\']) || name.chars().any(char::is_control) {
        Some("may not contain `/`, `\\` or control characters (it names a report directory)")
    } else {
        None
    }
}

/// Why a host or group name cannot be used in `--limit`, if it cannot.
fn bad_name(name: &str) -> Option<&'static str> {
    if name.chars().any(|c| c.is_whitespace() || c == ',') {
        Some("may not contain whitespace or `,` (they separate --limit patterns)")
    } else if name.starts_with(['@', '!']) {
        Some("may not start with `@` or `!` (they have a meaning in --limit)")
    } else {
        None
    }
}

/// Converts one table's connection settings, collecting the errors.
fn settings_layer(
    src: &Source<'_>,
    raw: &RawSettings,
    prefix: &str,
    errors: &mut Vec<ConfigError>,
) -> Layer {
    let key = |k: &str| join_key(prefix, k);
    fn keep<T>(errors: &mut Vec<ConfigError>, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| errors.push(e)).ok()
    }
    let user = raw.user.as_ref().and_then(|u| {
        keep(
            errors,
            if u.get_ref().trim().is_empty() || u.get_ref().contains(char::is_whitespace) {
                Err(src.error(
                    u.span(),
                    key("user"),
                    format!("invalid user name `{}`", u.get_ref()),
                ))
            } else {
                Ok(u.get_ref().clone())
            },
        )
    });
    let port = raw.port.as_ref().and_then(|p| {
        keep(
            errors,
            if *p.get_ref() == 0 {
                Err(src.error(p.span(), key("port"), "port 0 is not a valid SSH port"))
            } else {
                Ok(*p.get_ref())
            },
        )
    });
    // A list of paths, each expanded (an error names its index).
    let paths = |errors: &mut Vec<ConfigError>, list: &Option<Vec<Spanned<String>>>, name: &str| {
        list.as_ref().map(|files| {
            files
                .iter()
                .enumerate()
                .filter_map(|(i, f)| {
                    keep(errors, expand_path(src, f, &format!("{}[{i}]", key(name))))
                })
                .collect::<Vec<PathBuf>>()
        })
    };
    let identity_files = paths(errors, &raw.identity_files, "identity_files");
    let known_hosts = raw
        .known_hosts
        .as_ref()
        .and_then(|k| keep(errors, expand_path(src, k, &key("known_hosts"))));
    let global_known_hosts = paths(errors, &raw.global_known_hosts, "global_known_hosts");
    let timeout = |errors: &mut Vec<ConfigError>, v: &Option<Spanned<String>>, name: &str| {
        v.as_ref().and_then(|v| {
            keep(
                errors,
                src.duration(v, &key(name)).and_then(|d| {
                    if d.is_zero() {
                        Err(src.error(v.span(), key(name), "timeout must be longer than 0s"))
                    } else {
                        Ok(d)
                    }
                }),
            )
        })
    };
    let connect_timeout = timeout(errors, &raw.connect_timeout, "connect_timeout");
    let command_timeout = timeout(errors, &raw.command_timeout, "command_timeout");
    let jump = raw.jump.as_ref().and_then(|j| {
        keep(errors, parse_jump(j.get_ref()).map_err(|reason| {
            src.error(
                j.span(),
                key("jump"),
                format!("invalid jump host `{}`: {reason}", j.get_ref()),
            )
            .with_hint("write it as `user@host:port`, e.g. `ops@bastion.example:22`; user and port are optional, `\"\"` means none")
        }))
    });
    Layer {
        user,
        port,
        identity_files,
        become_: raw.become_,
        flavour: raw.flavour,
        known_hosts,
        more_known_hosts: None,
        global_known_hosts,
        host_key_policy: raw.host_key_policy,
        connect_timeout,
        command_timeout,
        jump,
        vars: raw.vars.clone().unwrap_or_default(),
        cluster: None,
        roles: None,
        egress: raw.egress.as_ref().map(|list| {
            list.iter()
                .enumerate()
                .filter_map(|(i, a)| {
                    keep(
                        errors,
                        a.get_ref().trim().parse::<IpAddr>().map_err(|_| {
                            src.error(
                                a.span(),
                                format!("{}[{i}]", key("egress")),
                                format!("`{}` is not an IP address", a.get_ref()),
                            )
                            .with_hint("list the addresses the MTA sends from, e.g. `egress = [\"203.0.113.10\", \"2001:db8::25\"]`")
                        }),
                    )
                })
                .collect()
        }),
        ssh_config: raw.ssh_config,
    }
}

/// `~`, `~/x` → under `$HOME`; a relative path → beside the file that names it.
fn expand_path(
    src: &Source<'_>,
    value: &Spanned<String>,
    key: &str,
) -> Result<PathBuf, ConfigError> {
    let s = value.get_ref();
    let err = |msg: String| src.error(value.span(), key, msg);
    if s.trim().is_empty() {
        return Err(err("path must not be empty".to_owned()));
    }
    if let Some(rest) = s.strip_prefix('~') {
        let rest = match rest.strip_prefix('/') {
            Some(rest) => rest,
            None if rest.is_empty() => "",
            None => {
                return Err(err(format!(
                    "cannot expand `{s}`: only `~` and `~/` are expanded (`~user` is not)"
                )));
            }
        };
        let home =
            home_dir().ok_or_else(|| err(format!("cannot expand `{s}`: $HOME is not set")))?;
        return Ok(if rest.is_empty() {
            home
        } else {
            home.join(rest)
        });
    }
    let path = Path::new(s);
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(src.path.parent().unwrap_or(Path::new("")).join(path))
    }
}

/// `[user@]host[:port]`, with IPv6 addresses in brackets; `""` = no jump host.
fn parse_jump(spec: &str) -> Result<Option<JumpParts>, String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Ok(None);
    }
    if spec.contains(char::is_whitespace) {
        return Err("it contains whitespace".to_owned());
    }
    if spec.contains(',') {
        return Err("only one jump host is supported".to_owned());
    }
    let (user, hostport) = match spec.rsplit_once('@') {
        Some(("", _)) => return Err("the user before `@` is empty".to_owned()),
        Some((user, rest)) => (Some(user.to_owned()), rest),
        None => (None, spec),
    };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "`[` without a closing `]`".to_owned())?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("unexpected `{after}` after `]`")),
            },
        }
    } else {
        match hostport.split_once(':') {
            Some((_, rest)) if rest.contains(':') => {
                return Err("write an IPv6 address in brackets, e.g. `[2001:db8::1]:22`".to_owned());
            }
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("the host is empty".to_owned());
    }
    let port = match port {
        None => 22,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("`{p}` is not a port number (1-65535)")),
            Ok(n) => n,
        },
    };
    Ok(Some(JumpParts {
        user,
        host: host.to_owned(),
        port,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use indoc::indoc;
    use test_case::test_case;

    /// Loads `text` from a temp file; errors name the file as `inv.toml`.
    fn load_str(text: &str) -> Result<Inventory, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.toml");
        fs::write(&path, text).unwrap();
        load(&path).map_err(|e| {
            e.to_string()
                .replace(&format!("{}/", dir.path().display()), "")
        })
    }

    #[test]
    fn ssh_config_fills_only_what_the_inventory_leaves_unset() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("ssh_config");
        fs::write(
            &cfg,
            indoc! {"
                Host mx1 mx2 bare
                    HostName 10.0.0.%h
                    User cfguser
                    Port 2200
                    IdentityFile /keys/%r
                    UserKnownHostsFile /kh/cfg /kh/cfg2
                    GlobalKnownHostsFile /kh/global
                    ProxyJump jumpalias
                Host 192.0.2.7
                    HostName not-used.example
                    User ipuser
                    UserKnownHostsFile /kh/ip
                    ProxyJump other@bastion2:22
                Host jumpalias
                    HostName bastion.example
                    User jumper
                    Port 2022
            "},
        )
        .unwrap();
        let inv = dir.path().join("inv.toml");
        fs::write(
            &inv,
            indoc! {r#"
                [defaults]
                port = 22

                [groups.g]
                user = "groupuser"

                [[hosts]]
                name = "mx1"

                [[hosts]]
                name = "mx2"
                address = "192.0.2.7"
                groups = ["g"]
                jump = ""

                [[hosts]]
                name = "other"
            "#},
        )
        .unwrap();
        let opts = LoadOptions {
            ssh_config: Some(cfg.clone()),
            ..Default::default()
        };
        let hosts = load_with(&inv, &opts).unwrap().hosts;
        let mx1 = &hosts[0];
        assert_eq!(mx1.address, "10.0.0.mx1");
        assert_eq!(mx1.user, "cfguser");
        assert_eq!(mx1.port, 22, "[defaults] port is explicit and wins");
        assert_eq!(mx1.identity_files, vec![PathBuf::from("/keys/cfguser")]);
        assert_eq!(mx1.known_hosts, PathBuf::from("/kh/cfg"));
        // Every file is read: the further user file, then the global one.
        assert_eq!(
            mx1.known_hosts_also,
            vec![PathBuf::from("/kh/cfg2"), PathBuf::from("/kh/global")]
        );
        assert_eq!(
            mx1.jump,
            Some(JumpSpec {
                user: "jumper".into(),
                host: "bastion.example".into(),
                port: 2022
            })
        );
        // An explicit address is the destination (and HostName does not replace it);
        // a group's user and `jump = ""` are explicit too.
        let mx2 = &hosts[1];
        assert_eq!(mx2.address, "192.0.2.7");
        assert_eq!(mx2.user, "groupuser");
        assert_eq!(mx2.jump, None);
        assert_eq!(mx2.known_hosts, PathBuf::from("/kh/ip"));
        // No block matches `other`: built-in defaults.
        let other = &hosts[2];
        assert_eq!(
            (other.user.as_str(), other.address.as_str()),
            ("root", "other")
        );
        // OpenSSH's default global files.
        assert_eq!(
            other.known_hosts_also,
            vec![
                PathBuf::from("/etc/ssh/ssh_known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts2")
            ]
        );
        // Without the option nothing is read.
        assert_eq!(load(&inv).unwrap().hosts[0].user, "root");
        // A missing file named on the command line is an error.
        let missing = LoadOptions {
            ssh_config: Some(dir.path().join("nope")),
            ..Default::default()
        };
        let err = load_with(&inv, &missing).unwrap_err().to_string();
        assert!(err.contains("cannot read ssh_config"), "{err}");
    }

    #[test]
    fn ssh_config_true_reads_the_user_config_per_table() {
        let dir = tempfile::tempdir().unwrap();
        let user_cfg = dir.path().join("user_config");
        fs::write(&user_cfg, "Host *\n  User fromhome\n  Port 2345\n").unwrap();
        let inv = dir.path().join("inv.toml");
        fs::write(
            &inv,
            indoc! {r#"
                [defaults]
                ssh_config = true

                [[hosts]]
                name = "viacfg"

                [[hosts]]
                name = "optout"
                ssh_config = false
            "#},
        )
        .unwrap();
        let opts = LoadOptions {
            ssh_config: None,
            user_ssh_config: user_cfg.clone(),
        };
        let hosts = load_with(&inv, &opts).unwrap().hosts;
        assert_eq!((hosts[0].user.as_str(), hosts[0].port), ("fromhome", 2345));
        assert_eq!((hosts[1].user.as_str(), hosts[1].port), ("root", 22));
        // A missing user config is ignored, as ssh does.
        fs::remove_file(&user_cfg).unwrap();
        let hosts = load_with(&inv, &opts).unwrap().hosts;
        assert_eq!(hosts[0].user, "root");
    }

    fn messages(text: &str) -> String {
        load_str(text).unwrap_err()
    }

    #[test_case("", Ok(None); "empty means none")]
    #[test_case("bastion", Ok(Some(JumpParts { user: None, host: "bastion".into(), port: 22 })); "host only")]
    #[test_case("ops@b.example:2222", Ok(Some(JumpParts { user: Some("ops".into()), host: "b.example".into(), port: 2222 })); "full")]
    #[test_case("[2001:db8::1]:22", Ok(Some(JumpParts { user: None, host: "2001:db8::1".into(), port: 22 })); "ipv6")]
    #[test_case("2001:db8::1", Err("write an IPv6 address in brackets, e.g. `[2001:db8::1]:22`".into()); "bare ipv6")]
    #[test_case("@b", Err("the user before `@` is empty".into()); "empty user")]
    #[test_case("ops@:22", Err("the host is empty".into()); "empty host")]
    #[test_case("b:0", Err("`0` is not a port number (1-65535)".into()); "port zero")]
    #[test_case("b:ssh", Err("`ssh` is not a port number (1-65535)".into()); "port name")]
    #[test_case("a,b", Err("only one jump host is supported".into()); "multi hop")]
    fn jump_specs(spec: &str, expected: Result<Option<JumpParts>, String>) {
        assert_eq!(parse_jump(spec), expected);
    }

    #[test]
    fn precedence_defaults_groups_host() {
        let inv = load_str(indoc! {r#"
            [defaults]
            user = "admin"
            port = 2200
            connect_timeout = "3s"
            vars = { tier = "gold", customer = "none" }

            [groups.eu]
            port = 2201
            jump = "ops@bastion.eu:2222"

            [groups.acme]
            port = 2202
            cluster = "acme"
            vars = { customer = "ACME Corp" }

            [[hosts]]
            name = "m1"
            groups = ["eu", "acme"]

            [[hosts]]
            name = "m2"
            address = "10.0.0.2"
            groups = ["acme", "eu"]
            user = "zextras"
            become = "none"
            jump = ""

            [[hosts]]
            name = "m3"
            groups = ["eu"]
            roles = ["mta"]
        "#})
        .unwrap();
        let [m1, m2, m3] = &inv.hosts[..] else {
            panic!("three hosts")
        };
        // The later group in the host's list wins.
        assert_eq!((m1.port, m2.port, m3.port), (2202, 2201, 2201));
        assert_eq!(m1.address, "m1");
        assert_eq!(m2.address, "10.0.0.2");
        assert_eq!((m1.user.as_str(), m2.user.as_str()), ("admin", "zextras"));
        assert_eq!(m2.become_, Become::None);
        assert_eq!(m1.become_, Become::Auto);
        assert_eq!(m1.connect_timeout, Duration::from_secs(3));
        assert_eq!(m1.command_timeout, Duration::from_secs(300));
        assert_eq!(
            m1.jump,
            Some(JumpSpec {
                user: "ops".into(),
                host: "bastion.eu".into(),
                port: 2222
            })
        );
        assert_eq!(m2.jump, None, "an empty jump clears the group's");
        assert_eq!((m1.cluster.as_str(), m3.cluster.as_str()), ("acme", "m3"));
        assert_eq!(m3.roles, ["mta"]);
        assert_eq!(m1.vars["customer"], "ACME Corp");
        assert_eq!(m1.vars["tier"], "gold");
        assert_eq!(m3.vars["customer"], "none");
        assert_eq!(m1.host_key_policy, HostKeyPolicy::Strict);
        assert_eq!(inv.groups, ["acme", "eu"]);
    }

    #[test]
    fn egress_takes_the_nearest_layer_and_dns_servers_default_to_port_53() {
        let inv = load_str(indoc! {r#"
            [defaults]
            egress = ["192.0.2.1"]
            dns_servers = ["127.0.0.1:5353", "192.0.2.53", "[2001:db8::53]:5353"]
            [groups.acme]
            egress = ["203.0.113.10", "2001:db8::25"]
            [[hosts]]
            name = "m1"
            groups = ["acme"]
            [[hosts]]
            name = "m2"
            [[hosts]]
            name = "m3"
            groups = ["acme"]
            egress = []
        "#})
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            inv.hosts[0].egress,
            [ip("203.0.113.10"), ip("2001:db8::25")]
        );
        assert_eq!(inv.hosts[1].egress, [ip("192.0.2.1")]);
        assert_eq!(inv.hosts[2].egress, Vec::<IpAddr>::new());
        assert_eq!(
            inv.dns_servers,
            [
                "127.0.0.1:5353".parse::<SocketAddr>().unwrap(),
                "192.0.2.53:53".parse().unwrap(),
                "[2001:db8::53]:5353".parse().unwrap()
            ]
        );
    }

    #[test]
    fn jump_without_user_uses_the_hosts_login_user() {
        let inv = load_str(indoc! {r#"
            [[hosts]]
            name = "m1"
            user = "ops"
            jump = "bastion"
        "#})
        .unwrap();
        assert_eq!(
            inv.hosts[0].jump,
            Some(JumpSpec {
                user: "ops".into(),
                host: "bastion".into(),
                port: 22
            })
        );
    }

    #[test]
    fn paths_expand_tilde_and_resolve_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.toml");
        fs::write(
            &path,
            indoc! {r#"
                [[hosts]]
                name = "m1"
                known_hosts = "known_hosts.lab"
                global_known_hosts = ["fleet_known_hosts", "/etc/ssh/ssh_known_hosts"]
                identity_files = ["~/.ssh/lab_key", "/etc/keys/k"]
            "#},
        )
        .unwrap();
        let inv = load(&path).unwrap();
        let home = home_dir().unwrap();
        assert_eq!(inv.hosts[0].known_hosts, dir.path().join("known_hosts.lab"));
        assert_eq!(
            inv.hosts[0].known_hosts_also,
            [
                dir.path().join("fleet_known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts")
            ]
        );
        assert_eq!(
            inv.hosts[0].identity_files,
            [home.join(".ssh/lab_key"), PathBuf::from("/etc/keys/k")]
        );
    }

    #[test]
    fn built_in_defaults() {
        let inv = load_str("[[hosts]]\nname = \"m1\"\n").unwrap();
        let h = &inv.hosts[0];
        let home = home_dir().unwrap();
        assert_eq!(h.user, "root");
        assert_eq!(h.port, 22);
        assert_eq!(h.identity_files, [home.join(".ssh/id_ed25519")]);
        assert_eq!(h.known_hosts, home.join(".ssh/known_hosts"));
        assert_eq!(h.connect_timeout, Duration::from_secs(10));
        assert_eq!(h.jump, None);
        assert_eq!(h.cluster, "m1");
        assert!(h.roles.is_empty() && h.groups.is_empty());
    }

    #[test_case(indoc! {r#"
        [[hosts]]
        name = "a"
        [[hosts]]
        name = "b"
        port = "22"
    "#}, "inv.toml:5:8: hosts[1].port: invalid type: string \"22\", expected u16"; "wrong type")]
    #[test_case(indoc! {r#"
        [defaults]
        usr = "root"
    "#}, "inv.toml:2:1: defaults.usr: unknown field `usr`, expected one of `dns_servers`, `user`, `port`, `identity_files`, `become`, `flavour`, `known_hosts`, `global_known_hosts`, `host_key_policy`, `connect_timeout`, `command_timeout`, `jump`, `vars`, `egress`, `ssh_config`"; "unknown key")]
    #[test_case(indoc! {r#"
        [[hosts]]
        name = "a"
        egres = ["x"]
    "#}, "inv.toml:3:1: hosts[0].egres: unknown field `egres`, expected one of `name`, `address`, `groups`, `cluster`, `roles`, `user`, `port`, `identity_files`, `become`, `flavour`, `known_hosts`, `global_known_hosts`, `host_key_policy`, `connect_timeout`, `command_timeout`, `jump`, `vars`, `egress`, `ssh_config`"; "unknown host key")]
    #[test_case(indoc! {r#"
        [[hosts]]
        name = "a"
        egress = ["203.0.113.10", "mail.example"]
    "#}, "inv.toml:3:27: hosts[0].egress[1]: `mail.example` is not an IP address\n  hint: list the addresses the MTA sends from, e.g. `egress = [\"203.0.113.10\", \"2001:db8::25\"]`"; "egress not an address")]
    #[test_case(indoc! {r#"
        [defaults]
        dns_servers = ["ns.example:53"]
        [[hosts]]
        name = "a"
    "#}, "inv.toml:2:16: defaults.dns_servers[0]: `ns.example:53` is not a DNS server address\n  hint: write an IP address with an optional port: `\"127.0.0.1:5353\"`, `\"192.0.2.53\"`, `\"[2001:db8::53]:53\"`"; "dns server not an address")]
    #[test_case(indoc! {r#"
        [defaults]
        become = "doas"
    "#}, "inv.toml:2:10: defaults.become: unknown variant `doas`, expected one of `auto`, `su`, `sudo`, `none`"; "bad become")]
    #[test_case(indoc! {r#"
        [defaults]
        host_key_policy = "off"
    "#}, "inv.toml:2:19: defaults.host_key_policy: unknown variant `off`, expected `strict` or `accept-new`"; "no off switch")]
    #[test_case(indoc! {r#"
        [groups."../.."]
        [[hosts]]
        name = "a"
        groups = ["../.."]
    "#}, "inv.toml:1:1: groups.\"../..\": group name `../..` may not contain `/`, `\\` or control characters (it names a report directory)"; "group name escaping the report dir")]
    #[test_case(indoc! {r#"
        [groups.".."]
        [[hosts]]
        name = "a"
        groups = [".."]
    "#}, "inv.toml:1:1: groups.\"..\": group name `..` may not be empty, `.` or `..` (it names a report directory)"; "group name dot dot")]
    #[test_case("[[hosts]\nname = 1\n", "inv.toml:1:9: unclosed array table, expected `]`"; "syntax error")]
    #[test_case("[defaults]\nuser = \"root\"\n", "inv.toml: the inventory declares no host\n  hint: add at least one `[[hosts]]` table with a `name`"; "no hosts")]
    fn single_errors(text: &str, expected: &str) {
        assert_eq!(messages(text), expected);
    }

    #[test]
    fn every_semantic_error_is_reported() {
        let text = indoc! {r#"
            [defaults]
            connect_timeout = "10 parsecs"

            [groups.acme]
            jump = "ops@:22"

            [[hosts]]
            name = "m1"
            groups = ["acme", "eu"]

            [[hosts]]
            port = 2222

            [[hosts]]
            name = "m1"

            [[hosts]]
            name = "m 4"
            known_hosts = "~ops/kh"
            command_timeout = "0s"
        "#};
        let expected = indoc! {r#"
            inv.toml:2:19: defaults.connect_timeout: invalid duration `10 parsecs`: unknown unit `parsecs` (units: ms, s, m, h, d, w and their names, e.g. `mins`)
              hint: durations look like "10s", "5m" or "1h30m"
            inv.toml:5:8: groups.acme.jump: invalid jump host `ops@:22`: the host is empty
              hint: write it as `user@host:port`, e.g. `ops@bastion.example:22`; user and port are optional, `""` means none
            inv.toml:9:19: hosts[0].groups[1]: unknown group `eu`
              hint: declare it with a `[groups.eu]` table (declared groups: acme)
            inv.toml:11:1: hosts[1]: host has neither `name` nor `address`
              hint: every host needs a unique `name` (the address defaults to it)
            inv.toml:15:8: hosts[2].name: duplicate host name `m1` (first declared at inv.toml:8:8)
            inv.toml:18:8: hosts[3].name: host name `m 4` may not contain whitespace or `,` (they separate --limit patterns)
            inv.toml:19:15: hosts[3].known_hosts: cannot expand `~ops/kh`: only `~` and `~/` are expanded (`~user` is not)
            inv.toml:20:19: hosts[3].command_timeout: timeout must be longer than 0s"#};
        assert_eq!(messages(text), expected);
    }

    #[test]
    fn directory_merges_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("10-hosts.toml"),
            "[[hosts]]\nname = \"b\"\ngroups = [\"acme\"]\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("00-base.toml"),
            "[defaults]\nport = 2222\n[groups.acme]\nuser = \"ops\"\n[[hosts]]\nname = \"a\"\n",
        )
        .unwrap();
        fs::write(dir.path().join("notes.txt"), "not toml").unwrap();
        let inv = load(dir.path()).unwrap();
        let names: Vec<_> = inv
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), h.port, h.user.as_str()))
            .collect();
        assert_eq!(names, [("a", 2222, "root"), ("b", 2222, "ops")]);
        assert_eq!(inv.files.len(), 2);
        assert_eq!(inv.hosts[1].source, dir.path().join("10-hosts.toml"));
    }

    #[test]
    fn directory_conflicts_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("a.toml"),
            "[defaults]\nport = 2222\n[groups.g]\n[[hosts]]\nname = \"x\"\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("b.toml"),
            "[defaults]\nport = 22\n[groups.g]\n[[hosts]]\nname = \"x\"\n",
        )
        .unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        let err = err.replace(&format!("{}/", dir.path().display()), "");
        assert_eq!(
            err,
            indoc! {"
                b.toml:1:1: defaults.port: already set in `a.toml`
                  hint: [defaults] applies to every file of the inventory: set each key in one file, or use a group
                b.toml:3:1: groups.g: group `g` is already declared at a.toml:3:1
                b.toml:5:8: hosts[0].name: duplicate host name `x` (first declared at a.toml:5:8)"}
        );
    }

    #[test]
    fn missing_path_and_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        assert_eq!(
            load(&missing).unwrap_err().to_string(),
            format!(
                "{0}: cannot read inventory `{0}`: No such file or directory (os error 2)",
                missing.display()
            )
        );
        assert_eq!(
            load(dir.path()).unwrap_err().to_string(),
            format!(
                "{0}: the inventory directory `{0}` holds no `*.toml` file",
                dir.path().display()
            )
        );
    }
}
