//! `sim-exec PROGRAM [ARGS...]` (`carbonio-sim sim-exec`, or the tool's hidden
//! `carbonio-fleet sim-exec`): the simulator's emulated programs as REAL processes, for
//! test fleets of real OpenSSH servers (the tool's tests/support/realfleet.rs).
//!
//! One invocation runs one emulated program (`carbonio`, `zmprov`, `zmcontrol`,
//! `postconf`, `zmhostname`, `systemctl`, …, resolved and executed by
//! [`crate::programs`]; nothing is emulated twice) with the process's real
//! stdin/stdout/stderr and exit status, as the user of the real uid, against node state
//! persisted in a state directory: `$CARBONIO_FLEET_SIM_STATE`, default
//! [`DEFAULT_STATE_DIR`] (a test fleet bind-mounts each node's own directory there inside
//! the node's mount namespace, because `su -` wipes the environment).
//!
//! Files of a state directory: [`NODE_FILE`] (the node's local state, the path of its
//! cluster's LDAP file, counters), [`LOCK_FILE`] and [`RESTART_LOG`] (JSON lines, one at
//! the start and one at the end of every restart). Nodes of one cluster share one
//! [`ClusterFile`] (global config and server entries) with its own `.lock` beside it.
//! Every invocation takes the node lock, then the cluster lock (always in that order),
//! loads, runs, saves atomically (temp file, then rename) and unlocks. A restart releases
//! both locks while it waits out the node's restart time in the process, so that other
//! invocations see the node down and restarts of several nodes of a cluster really
//! overlap (see [`ExecHook`]).
//!
//! Two long-lived programs belong to a node rather than to a command: `sim-exec
//! zmconfigd --interval D` polls as Carbonio's zmconfigd does ([`zmconfigd`]), and
//! `sim-exec policyd` is the zmpostfixpolicyd stand-in that the node's REAL Postfix
//! spawns ([`policyd`]). A node whose [`Mirror`] says `real_postfix` runs Debian's
//! Postfix in its namespaces: rendering, start, stop and reload are also done to it
//! ([`super::realmta`]), and its SMTP answers, policy socket and mail log are Postfix's.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::fleet::{FleetSpec, NodeSpec, build_nodes};
use super::node::{ClusterState, Ldap, Node, NodeState, PasswdEntry, RestartHook};
use super::programs::{self, Proc};
use super::restarts::{RestartLog, RestartMethod, RestartRecord};
use super::shell::{Io, OutputPort, Sink, Source, Stream};
use crate::flavour::Flavour;

/// Environment variable naming the state directory.
pub const STATE_ENV: &str = "CARBONIO_FLEET_SIM_STATE";
/// The state directory when [`STATE_ENV`] is unset.
pub const DEFAULT_STATE_DIR: &str = "/opt/zextras/.sim-state";
/// The node's state file in its state directory.
pub const NODE_FILE: &str = "node.json";
/// The node's lock file.
pub const LOCK_FILE: &str = "lock";
/// The node's restart log (JSON lines of [`RestartLine`]).
pub const RESTART_LOG: &str = "restarts.jsonl";
/// While this file exists in a state directory, a restart of that node that has waited
/// out its restart time stays down until the file is removed ([`Store::hold_restarts`]):
/// a test that must observe a node mid-restart releases it instead of racing a timer.
pub const RESTART_HOLD: &str = "restart.hold";
/// The longest a held restart waits for its release (a test that died without removing
/// the file must not leave a process behind forever).
const RESTART_HOLD_LIMIT: Duration = Duration::from_secs(300);
/// Where the emulated programs are looked up: the product's tools first, then /usr/bin.
fn search_path(flavour: Flavour) -> String {
    let h = flavour.home();
    format!("{h}/bin:{h}/libexec:{h}/common/sbin:/usr/bin")
}

/// Errors of `sim-exec` and of state seeding.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not valid simulator state: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0}: not an emulated program")]
    UnknownProgram(String),
    #[error("usage: {0}")]
    Usage(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExecError + '_ {
    move |source| ExecError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The persisted local state of one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeFile {
    /// Inventory name (and Carbonio hostname).
    pub name: String,
    pub cluster: String,
    /// The cluster's shared LDAP file.
    pub cluster_file: PathBuf,
    pub state: NodeState,
    /// Wall-clock end (Unix ms) of a restart in progress.
    pub restarting_until_ms: Option<u64>,
    /// `carbonio`/`zmprov` processes run on this node so far.
    pub prov_invocations: u64,
    /// `sim-exec` invocations per program name.
    #[serde(default)]
    pub invocations: BTreeMap<String, u64>,
    /// Polls of the node's `sim-exec zmconfigd` so far.
    #[serde(default)]
    pub zmconfigd_polls: u64,
    /// The number of the last of those polls that rewrote the files (0: none yet).
    #[serde(default)]
    pub zmconfigd_rendered_at: u64,
    /// Test hook (real-process fleet): what breaks the policy daemon the moment an
    /// invocation first changes this node's own server entry (the tool's staging `ms`),
    /// i.e. after the gather. Cleared once done.
    #[serde(default)]
    pub stage_fault: Option<StageFault>,
    /// Real files kept equal to the state's master.cf and mail log, so that the real
    /// `stat`, `grep` and `head` the tool runs read what the emulated Postfix wrote.
    #[serde(default)]
    pub mirror: Option<Mirror>,
}

/// How [`NodeFile::stage_fault`] breaks the policy daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StageFault {
    /// The real localconfig.xml becomes unreadable for its owner (mode 0200): the
    /// daemon, spawned as the service user, cannot read it (what the spawn evidence the
    /// tool reads also shows).
    LocalconfigUnreadable,
    /// The daemon dies at start with this text ([`NodeState::policyd_broken`]): only
    /// the socket, the log and SMTP can show it.
    PolicydDies(String),
}

/// Where a node's real master.cf and mail log are, as paths valid both inside the node's
/// mount namespace and outside it (the node's own directory; the namespace bind-mounts
/// them where Carbonio keeps them), so that a test editing the state never touches the
/// machine's own /var/log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mirror {
    pub master_cf: PathBuf,
    pub mail_log: PathBuf,
    /// The node runs a real Postfix ([`super::realmta`]): it writes the mail log itself,
    /// and rendering, start, stop and reload are also done to it.
    #[serde(default)]
    pub real_postfix: bool,
}

/// Brings the mirrored files up to the state: the log gains what the state logged since
/// (it is append-only), and master.cf is rewritten, with the state's mtime, when the
/// state rendered a newer or different one. A file whose mtime a test moved forward
/// (a master.cf written after the master started) is left as it is.
pub fn mirror_files(state: &NodeState, m: &Mirror) -> Result<(), ExecError> {
    for path in [&m.master_cf, &m.mail_log] {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
    }
    let flavour = state.flavour;
    let log = state
        .files
        .get(flavour.mail_log())
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let real_len = fs::metadata(&m.mail_log).map(|md| md.len()).unwrap_or(0) as usize;
    if !m.real_postfix && (log.len() > real_len || !m.mail_log.exists()) {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.mail_log)
            .and_then(|mut f| f.write_all(&log[real_len.min(log.len())..]))
            .map_err(io_err(&m.mail_log))?;
    }
    let master_cf = flavour.master_cf();
    if let (Some(text), Some(mtime)) = (state.files.get(master_cf), state.mtimes.get(master_cf)) {
        let real = fs::read(&m.master_cf).ok();
        let real_mtime = fs::metadata(&m.master_cf)
            .and_then(|md| md.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        if real.as_deref() != Some(text.as_slice()) || real_mtime.is_none_or(|t| t < *mtime) {
            fs::write(&m.master_cf, text).map_err(io_err(&m.master_cf))?;
            let at = UNIX_EPOCH + Duration::from_secs((*mtime).max(0) as u64);
            File::options()
                .write(true)
                .open(&m.master_cf)
                .and_then(|f| f.set_modified(at))
                .map_err(io_err(&m.master_cf))?;
        }
    }
    Ok(())
}

/// The persisted LDAP of one cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterFile {
    pub name: String,
    pub ldap: Ldap,
}

/// One line of [`RESTART_LOG`]: written when a restart starts (`ended_ms` unset) and
/// again when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartLine {
    pub node: String,
    pub cluster: String,
    pub method: RestartMethod,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    /// Whether the MTA came back (end lines only).
    pub ok: Option<bool>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The state directory this process uses.
pub fn state_dir() -> PathBuf {
    std::env::var_os(STATE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ExecError> {
    let text = fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&text).map_err(|source| ExecError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `value` atomically (temp file + rename), readable and replaceable by every
/// user that runs emulated programs (root and zextras).
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ExecError> {
    let text = serde_json::to_vec_pretty(value).map_err(|source| ExecError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    fs::write(&tmp, text).map_err(io_err(&tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o666)).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Creates an empty file shared by root and zextras (mode 0666).
fn touch_shared(path: &Path) -> Result<(), ExecError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o666)).map_err(io_err(path))
}

fn lock_file(path: &Path) -> Result<File, ExecError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err(path))?;
    f.lock().map_err(io_err(path))?;
    Ok(f)
}

/// Both exclusive locks of a node (its own, then its cluster's); released on drop.
#[derive(Debug)]
pub struct Locks {
    _node: File,
    _cluster: File,
}

fn cluster_lock_path(cluster_file: &Path) -> PathBuf {
    let mut s = cluster_file.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// A node's state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn node_path(&self) -> PathBuf {
        self.dir.join(NODE_FILE)
    }

    /// Holds this node's restarts down until the returned guard is released or dropped
    /// (see [`RESTART_HOLD`]).
    pub fn hold_restarts(&self) -> Result<RestartHold, ExecError> {
        let path = self.dir.join(RESTART_HOLD);
        fs::write(&path, b"held by a test\n").map_err(io_err(&path))?;
        Ok(RestartHold { path })
    }

    /// Whether restarts of this node are held.
    pub fn restarts_held(&self) -> bool {
        self.dir.join(RESTART_HOLD).exists()
    }

    /// Takes the node lock, then its cluster's.
    pub fn lock(&self) -> Result<Locks, ExecError> {
        let node = lock_file(&self.dir.join(LOCK_FILE))?;
        let nf: NodeFile = read_json(&self.node_path())?;
        let cluster = lock_file(&cluster_lock_path(&nf.cluster_file))?;
        Ok(Locks {
            _node: node,
            _cluster: cluster,
        })
    }

    /// Reads both files; the caller holds [`Locks`].
    pub fn load(&self, _locks: &Locks) -> Result<(NodeFile, ClusterFile), ExecError> {
        let nf: NodeFile = read_json(&self.node_path())?;
        let cf: ClusterFile = read_json(&nf.cluster_file)?;
        Ok((nf, cf))
    }

    /// Writes both files; the caller holds [`Locks`].
    pub fn save(&self, _locks: &Locks, nf: &NodeFile, cf: &ClusterFile) -> Result<(), ExecError> {
        write_json(&nf.cluster_file, cf)?;
        write_json(&self.node_path(), nf)?;
        match &nf.mirror {
            Some(m) => mirror_files(&nf.state, m),
            None => Ok(()),
        }
    }

    /// Locks, lets `f` edit the state, saves (for tests: fault injection, assertions).
    pub fn update<R>(
        &self,
        f: impl FnOnce(&mut NodeFile, &mut ClusterFile) -> R,
    ) -> Result<R, ExecError> {
        let locks = self.lock()?;
        let (mut nf, mut cf) = self.load(&locks)?;
        let r = f(&mut nf, &mut cf);
        self.save(&locks, &nf, &cf)?;
        Ok(r)
    }

    /// Reads the state under the locks.
    pub fn read(&self) -> Result<(NodeFile, ClusterFile), ExecError> {
        let locks = self.lock()?;
        self.load(&locks)
    }

    /// Appends one line to the restart log.
    pub fn log_restart(&self, line: &RestartLine) -> Result<(), ExecError> {
        let path = self.dir.join(RESTART_LOG);
        let mut text = serde_json::to_string(line).map_err(|source| ExecError::Json {
            path: path.clone(),
            source,
        })?;
        text.push('\n');
        // One write of a short line with O_APPEND: lines of concurrent writers never mix.
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(io_err(&path))
    }

    /// Every line of the restart log.
    pub fn restart_log(&self) -> Result<Vec<RestartLine>, ExecError> {
        let path = self.dir.join(RESTART_LOG);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(ExecError::Io { path, source }),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|source| ExecError::Json {
                    path: path.clone(),
                    source,
                })
            })
            .collect()
    }
}

/// A held restart gate ([`Store::hold_restarts`]); dropping it releases the gate.
#[derive(Debug)]
pub struct RestartHold {
    path: PathBuf,
}

impl RestartHold {
    /// Lets held restarts finish.
    pub fn release(self) {}
}

impl Drop for RestartHold {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Finished restarts of restart-log lines as [`RestartRecord`]s (wall-clock times mapped
/// onto [`Instant`]s), for [`super::max_concurrent`] and friends.
pub fn finished_restarts(lines: &[RestartLine]) -> Vec<RestartRecord> {
    let (now_i, now_w) = (Instant::now(), now_ms());
    let at = |ms: u64| now_i - Duration::from_millis(now_w.saturating_sub(ms));
    lines
        .iter()
        .filter_map(|l| {
            Some(RestartRecord {
                node: l.node.clone(),
                cluster: l.cluster.clone(),
                method: l.method,
                started: at(l.started_ms),
                ended: at(l.ended_ms?),
                ok: l.ok.unwrap_or(false),
            })
        })
        .collect()
}

/// The OS users of this machine (`/etc/passwd`): what the real `getent` the tool runs
/// reports, so the emulator's idea of "the spawn user exists" matches it.
pub fn machine_users() -> Vec<PasswdEntry> {
    let text = fs::read_to_string("/etc/passwd").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 7).then(|| PasswdEntry {
                name: f[0].into(),
                uid: f[2].parse().unwrap_or(0),
                gid: f[3].parse().unwrap_or(0),
                gecos: f[4].into(),
                home: f[5].into(),
                shell: f[6].into(),
            })
        })
        .collect()
}

/// The name of the real uid (what `whoami` says), `uidN` when it has no entry.
#[expect(unsafe_code, reason = "getuid: std cannot ask for the uid")]
fn real_user() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    machine_users()
        .into_iter()
        .find(|p| p.uid == uid)
        .map(|p| p.name)
        .unwrap_or_else(|| format!("uid{uid}"))
}

/// Turns loaded files into an in-memory node: the restart deadline back onto the
/// monotonic clock (a restart in progress of a `held` node stays down however late it
/// is), users, master.cf.in and localconfig.xml's owner and mode from the real machine
/// (the tool reads those with the real `getent`, `grep` and `stat`).
fn materialize(nf: &NodeFile, cf: &ClusterFile, held: bool) -> Arc<Node> {
    let mut state = nf.state.clone();
    let now = now_ms();
    state.restarting_until = nf
        .restarting_until_ms
        .map(|ms| {
            if held {
                ms.max(now) + RESTART_HOLD_LIMIT.as_millis() as u64
            } else {
                ms
            }
        })
        .filter(|ms| *ms > now)
        .map(|ms| Instant::now() + Duration::from_millis(ms - now));
    let users = machine_users();
    if !users.is_empty() {
        state.passwd = users;
    }
    let template = state.flavour.master_template();
    if let Ok(tpl) = fs::read(template) {
        state.files.insert(template.to_string(), tpl);
    }
    // Who may read localconfig.xml is what the real file says (the machine's users).
    let localconfig = state.flavour.localconfig();
    if let Ok(md) = fs::metadata(localconfig) {
        use std::os::unix::fs::MetadataExt;
        state.file_meta.insert(
            localconfig.to_string(),
            super::node::FileMeta {
                uid: md.uid(),
                gid: md.gid(),
                mode: md.mode() & 0o7777,
            },
        );
    }
    let cluster = Arc::new(ClusterState::new(cf.name.clone(), cf.ldap.clone()));
    let node = Arc::new(Node::from_parts(
        nf.name.clone(),
        cluster,
        state,
        Arc::new(RestartLog::default()),
        0,
    ));
    if nf.mirror.as_ref().is_some_and(|m| m.real_postfix) {
        node.set_mta_hook(Arc::new(super::realmta::RealMta {
            flavour: nf.state.flavour,
        }));
    }
    node
}

/// Copies an in-memory node back into the files. `base_prov` is the file's count at load
/// (the node's own counter started at zero).
fn absorb(node: &Node, base_prov: u64, nf: &mut NodeFile, cf: &mut ClusterFile) {
    let state = node.state().clone();
    let now_i = Instant::now();
    nf.restarting_until_ms = state
        .restarting_until
        .filter(|t| *t > now_i)
        .map(|t| now_ms() + (t - now_i).as_millis() as u64);
    nf.state = state;
    nf.prov_invocations = base_prov + node.prov_invocations();
    cf.ldap = node.cluster.ldap().clone();
}

/// The lock and bookkeeping one invocation shares with its restart hook.
#[derive(Debug)]
struct Session {
    store: Store,
    locks: Mutex<Option<Locks>>,
    /// The files as last loaded (kept for what the node does not hold: counters).
    files: Mutex<(NodeFile, ClusterFile)>,
    base_prov: Mutex<u64>,
    /// Wall-clock start of the restart in progress.
    restart_started_ms: Mutex<Option<u64>>,
}

impl Session {
    fn save(&self, node: &Node) -> Result<(), ExecError> {
        let locks = self.locks.lock().expect("session poisoned");
        let locks = locks.as_ref().expect("save while locked");
        let mut files = self.files.lock().expect("session poisoned");
        let (nf, cf) = &mut *files;
        absorb(
            node,
            *self.base_prov.lock().expect("session poisoned"),
            nf,
            cf,
        );
        self.store.save(locks, nf, cf)
    }

    fn relock_and_reload(&self, node: &Node) -> Result<(), ExecError> {
        let locks = self.store.lock()?;
        let (nf, cf) = self.store.load(&locks)?;
        let fresh = materialize(&nf, &cf, false);
        *node.state() = fresh.state().clone();
        *node.cluster.ldap() = cf.ldap.clone();
        // The node's counter keeps counting from here; the base is the file's count.
        *self.base_prov.lock().expect("session poisoned") =
            nf.prov_invocations - node.prov_invocations().min(nf.prov_invocations);
        *self.files.lock().expect("session poisoned") = (nf, cf);
        *self.locks.lock().expect("session poisoned") = Some(locks);
        Ok(())
    }
}

/// The restart hook of a `sim-exec` process: saves the "down" state and a start line,
/// releases the locks, sleeps the restart time for real (and on while the node's
/// restarts are held, see [`RESTART_HOLD`]), then relocks and reloads.
#[derive(Debug)]
pub struct ExecHook {
    session: Arc<Session>,
}

impl RestartHook for ExecHook {
    fn pause<'a>(
        &'a self,
        node: &'a Arc<Node>,
        method: RestartMethod,
        time: Duration,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let s = &self.session;
            let started = now_ms();
            *s.restart_started_ms.lock().expect("session poisoned") = Some(started);
            if let Err(e) = s.save(node) {
                eprintln!("sim-exec: {e}");
            }
            let line = RestartLine {
                node: node.name.clone(),
                cluster: node.cluster.name.clone(),
                method,
                started_ms: started,
                ended_ms: None,
                ok: None,
            };
            if let Err(e) = s.store.log_restart(&line) {
                eprintln!("sim-exec: {e}");
            }
            // Unlock while down: status queries and other nodes of the cluster go on.
            s.locks.lock().expect("session poisoned").take();
            tokio::time::sleep(time).await;
            let held_since = Instant::now();
            while s.store.restarts_held() && held_since.elapsed() < RESTART_HOLD_LIMIT {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if let Err(e) = s.relock_and_reload(node) {
                eprintln!("sim-exec: {e}");
                std::process::exit(70);
            }
        })
    }
}

/// Standard output and error of this process.
struct ProcessPort;

impl OutputPort for ProcessPort {
    fn send(&self, stream: Stream, data: Vec<u8>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // A closed pipe (the SSH session died) must not abort the emulated program:
            // a real restart goes on when its terminal goes away.
            let _ = match stream {
                Stream::Stdout => {
                    let mut o = std::io::stdout().lock();
                    o.write_all(&data).and_then(|_| o.flush())
                }
                Stream::Stderr => {
                    let mut e = std::io::stderr().lock();
                    e.write_all(&data).and_then(|_| e.flush())
                }
            };
        })
    }
}

/// Runs one emulated program invocation against the node state in `store`, with this
/// process's stdio and user; returns its exit status.
pub async fn exec_program(
    store: Store,
    program: &str,
    args: Vec<String>,
) -> Result<i32, ExecError> {
    let locks = store.lock()?;
    let (mut nf, cf) = store.load(&locks)?;
    let flavour = nf.state.flavour;
    let resolved = programs::resolve(program, &search_path(flavour), flavour)
        .ok_or_else(|| ExecError::UnknownProgram(program.to_string()))?;
    *nf.invocations.entry(program.to_string()).or_default() += 1;
    let entry_before = cf.ldap.servers.get(&nf.state.hostname).cloned();
    let node = materialize(&nf, &cf, store.restarts_held());
    let session = Arc::new(Session {
        base_prov: Mutex::new(nf.prov_invocations),
        store: store.clone(),
        locks: Mutex::new(Some(locks)),
        files: Mutex::new((nf, cf)),
        restart_started_ms: Mutex::new(None),
    });
    node.set_restart_hook(Arc::new(ExecHook {
        session: session.clone(),
    }));
    let port: Arc<dyn OutputPort> = Arc::new(ProcessPort);
    let mut proc = Proc {
        node: node.clone(),
        user: real_user(),
        env: std::env::vars().collect(),
        io: Io {
            stdin: Source::ProcessStdin(Arc::new(AtomicBool::new(false))),
            stdout: Sink::Port(port.clone(), Stream::Stdout),
            stderr: Sink::Port(port, Stream::Stderr),
        },
        argv0: program.to_string(),
    };
    let status = programs::run(resolved, args, &mut proc).await;
    {
        let mut files = session.files.lock().expect("session poisoned");
        let host = node.hostname();
        let changed = node.cluster.ldap().servers.get(&host).cloned() != entry_before;
        if changed {
            match files.0.stage_fault.take() {
                Some(StageFault::LocalconfigUnreadable) => {
                    let lc = Path::new(files.0.state.flavour.localconfig());
                    fs::set_permissions(lc, fs::Permissions::from_mode(0o200))
                        .map_err(io_err(lc))?;
                }
                Some(StageFault::PolicydDies(text)) => {
                    node.state().policyd_broken = Some(text);
                }
                None => {}
            }
        }
    }
    session.save(&node)?;
    let started = *session.restart_started_ms.lock().expect("session poisoned");
    for r in node.restarts.snapshot() {
        let took = r.duration().as_millis() as u64;
        store.log_restart(&RestartLine {
            node: r.node,
            cluster: r.cluster,
            method: r.method,
            started_ms: started.unwrap_or_else(|| now_ms().saturating_sub(took)),
            ended_ms: Some(now_ms()),
            ok: Some(r.ok),
        })?;
    }
    Ok(status)
}

/// The stand-in for zmpostfixpolicyd that the real Postfix spawns on a real-process
/// node (after the Perl script in front of it read localconfig.xml as the spawn user):
/// answers requests on stdin/stdout from the node's emulated LDAP until EOF.
pub async fn policyd(store: Store) -> Result<i32, ExecError> {
    let (nf, cf) = store.read()?;
    let node = materialize(&nf, &cf, false);
    let dies = node.state().policyd_broken.is_some();
    super::policyd::answer_requests(&node, tokio::io::stdin(), tokio::io::stdout())
        .await
        .map_err(io_err(Path::new("stdout")))?;
    // Perl's `die` status.
    Ok(if dies { 255 } else { 0 })
}

/// The node's zmconfigd: every `interval`, one poll ([`super::zmconfigd::poll`]) under
/// the node's locks, counted in the node file; runs until killed.
pub async fn zmconfigd(store: Store, interval: Duration) -> Result<i32, ExecError> {
    loop {
        tokio::time::sleep(interval).await;
        let locks = store.lock()?;
        let (mut nf, cf) = store.load(&locks)?;
        let node = materialize(&nf, &cf, false);
        let base = nf.prov_invocations;
        let rendered = super::zmconfigd::poll(&node);
        let mut cf = cf;
        absorb(&node, base, &mut nf, &mut cf);
        nf.zmconfigd_polls += 1;
        if rendered {
            nf.zmconfigd_rendered_at = nf.zmconfigd_polls;
        }
        store.save(&locks, &nf, &cf)?;
    }
}

/// The arguments of `sim-exec` (`carbonio-sim sim-exec`, and the hidden
/// `carbonio-fleet sim-exec` the real-process test fleet runs): one definition, parsed by
/// both command lines.
#[derive(Debug, Clone, clap::Args)]
pub struct SimExecArgs {
    /// The emulated program: carbonio, zmprov, zmcontrol, postconf, zmhostname, systemctl,
    /// …, or a node's `zmconfigd --interval DURATION` or `policyd`
    pub program: String,
    /// Its arguments, passed through untouched
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Entry point of `sim-exec PROGRAM ARGS...`; returns the exit status.
pub fn main(program: &str, args: &[String]) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sim-exec: {}", ExecError::Runtime(e));
            return 70;
        }
    };
    let store = Store::new(state_dir());
    let result = if program == "policyd" {
        rt.block_on(policyd(store))
    } else if program == "zmconfigd" {
        match args {
            [flag, every] if flag == "--interval" => match crate::duration::parse(every) {
                Ok(every) => rt.block_on(zmconfigd(store, every)),
                Err(_) => Err(ExecError::Usage(format!("{every}: not a duration"))),
            },
            _ => Err(ExecError::Usage(
                "sim-exec zmconfigd --interval DURATION".into(),
            )),
        }
    } else {
        rt.block_on(exec_program(store, program, args.to_vec()))
    };
    match result {
        Ok(code) => code,
        Err(e @ ExecError::UnknownProgram(_)) => {
            eprintln!("sh: 1: {e}");
            127
        }
        Err(e) => {
            eprintln!("sim-exec: {e}");
            70
        }
    }
}

/// Where a seeded node's state lives and which spawn user its master.cf.in names.
#[derive(Debug, Clone)]
pub struct SeedNode {
    /// The node's state directory (bind-mounted over [`DEFAULT_STATE_DIR`] later).
    pub state_dir: PathBuf,
    /// The `user=` of its policy spawn line in master.cf.in.
    pub spawn_user: String,
    /// Real files to keep equal to its master.cf and mail log.
    pub mirror: Option<Mirror>,
}

/// Writes the initial state of every node of `spec` (as the in-process simulator would
/// build it: [`build_nodes`]) into `seeds[i].state_dir`, and one cluster file per
/// cluster into `clusters_dir`. Users come from this machine's /etc/passwd and each
/// node's master.cf.in names its seed's spawn user, so the emulator agrees with the real
/// `getent` and `grep` the tool runs. Directories are made writable for zextras.
pub fn seed(
    spec: &FleetSpec,
    seeds: &[SeedNode],
    clusters_dir: &Path,
) -> Result<Vec<super::dns::ClusterDomains>, ExecError> {
    assert_eq!(spec.nodes.len(), seeds.len(), "one seed per node");
    let users = machine_users();
    let by_name: BTreeMap<&str, &SeedNode> = spec
        .nodes
        .iter()
        .zip(seeds)
        .map(|(n, s)| (n.name.as_str(), s))
        .collect();
    let (nodes, domains) =
        build_nodes(spec, Arc::new(RestartLog::default()), |n: &NodeSpec, st| {
            st.passwd = users.clone();
            let flavour = st.flavour;
            st.files.insert(
                flavour.master_template().to_string(),
                super::postfix::master_cf_in_for(flavour, &by_name[n.name.as_str()].spawn_user)
                    .into_bytes(),
            );
        });
    let shared_dir = |d: &Path| -> Result<(), ExecError> {
        fs::create_dir_all(d).map_err(io_err(d))?;
        fs::set_permissions(d, fs::Permissions::from_mode(0o777)).map_err(io_err(d))
    };
    shared_dir(clusters_dir)?;
    let mut written = std::collections::BTreeSet::new();
    for ((n, node), s) in spec.nodes.iter().zip(&nodes).zip(seeds) {
        shared_dir(&s.state_dir)?;
        let cluster_file = clusters_dir.join(format!("{}.json", n.cluster));
        let mut nf = NodeFile {
            name: n.name.clone(),
            cluster: n.cluster.clone(),
            cluster_file: cluster_file.clone(),
            state: NodeState::clone(&node.state()),
            restarting_until_ms: None,
            prov_invocations: 0,
            invocations: BTreeMap::new(),
            zmconfigd_polls: 0,
            zmconfigd_rendered_at: 0,
            stage_fault: None,
            mirror: s.mirror.clone(),
        };
        if let Some(m) = &s.mirror {
            mirror_files(&nf.state, m)?;
            if let (true, Some(pf), Some(conf)) =
                (m.real_postfix, &nf.state.postfix, m.master_cf.parent())
            {
                let flavour = nf.state.flavour;
                let main_cf = conf.join("main.cf");
                let base = super::realmta::base_main_cf(flavour, &nf.state.hostname);
                fs::write(&main_cf, base).map_err(io_err(&main_cf))?;
                let (params, tables) =
                    super::realmta::real_params(flavour, pf, &node.cluster.ldap());
                super::realmta::render_into(conf, &params, &tables, flavour).map_err(|e| {
                    ExecError::Io {
                        path: main_cf.clone(),
                        source: std::io::Error::other(e),
                    }
                })?;
            }
            // Both the emulated programs (zextras, root) append to them.
            let service = nf.state.flavour.user();
            if let Some(z) = users.iter().find(|u| u.name == service) {
                for path in [&m.master_cf, &m.mail_log]
                    .into_iter()
                    .filter(|p| p.exists())
                {
                    std::os::unix::fs::chown(path, Some(z.uid), Some(z.gid))
                        .map_err(io_err(path))?;
                }
            }
        }
        let mut cf = ClusterFile {
            name: n.cluster.clone(),
            ldap: Ldap::default(),
        };
        absorb(node, 0, &mut nf, &mut cf);
        if written.insert(n.cluster.clone()) {
            write_json(&cluster_file, &cf)?;
            touch_shared(&cluster_lock_path(&cluster_file))?;
        }
        write_json(&s.state_dir.join(NODE_FILE), &nf)?;
        touch_shared(&s.state_dir.join(LOCK_FILE))?;
        touch_shared(&s.state_dir.join(RESTART_LOG))?;
    }
    Ok(domains)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Platform;
    use crate::profiles::{NodeProfile, Posture};

    fn fleet(dir: &Path, restart: Duration) -> (Store, Store) {
        let profile = NodeProfile {
            platform: Platform::Systemd,
            posture: Posture::NonCompliant,
            ..NodeProfile::default()
        };
        let spec = FleetSpec {
            nodes: ["a", "b"]
                .iter()
                .map(|n| NodeSpec {
                    name: format!("{n}.example"),
                    cluster: "c1".into(),
                    profile,
                    groups: Vec::new(),
                })
                .collect(),
            restart_time: restart,
            ..FleetSpec::default()
        };
        let seeds: Vec<SeedNode> = ["a", "b"]
            .iter()
            .map(|n| SeedNode {
                state_dir: dir.join(n),
                spawn_user: "root".into(),
                mirror: None,
            })
            .collect();
        seed(&spec, &seeds, &dir.join("clusters")).unwrap();
        (Store::new(dir.join("a")), Store::new(dir.join("b")))
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn a_change_on_one_node_is_seen_by_its_cluster_and_counted() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = fleet(d.path(), Duration::from_millis(50));
        let st = exec_program(
            a.clone(),
            "zmprov",
            args(&["mcf", "zimbraMtaEnableSmtpdPolicyd", "TRUE"]),
        )
        .await
        .unwrap();
        assert_eq!(st, 0);
        let (nf, cf) = b.read().unwrap();
        assert_eq!(cf.ldap.global["zimbraMtaEnableSmtpdPolicyd"], vec!["TRUE"]);
        assert_eq!(nf.prov_invocations, 0, "b ran nothing");
        let (nf, _) = a.read().unwrap();
        assert_eq!(nf.prov_invocations, 1);
        assert_eq!(nf.invocations["zmprov"], 1);
        // A refused attribute: ProvUtil's ERROR and status 2, LDAP unchanged.
        a.update(|_, cf| {
            cf.ldap
                .refused
                .insert("zimbraMtaSmtpdRejectUnlistedSender".into());
        })
        .unwrap();
        let st = exec_program(
            a.clone(),
            "zmprov",
            args(&["mcf", "zimbraMtaSmtpdRejectUnlistedSender", "yes"]),
        )
        .await
        .unwrap();
        assert_eq!(st, 2);
        let (nf, cf) = b.read().unwrap();
        assert_eq!(
            cf.ldap.global["zimbraMtaSmtpdRejectUnlistedSender"],
            vec!["no"]
        );
        assert_eq!(
            nf.state.postfix.unwrap().params["smtpd_reject_unlisted_sender"],
            "no"
        );
        // Unknown programs are "not found", as a shell would say.
        assert!(matches!(
            exec_program(a, "shred", Vec::new()).await,
            Err(ExecError::UnknownProgram(_))
        ));
    }

    #[tokio::test]
    async fn restart_is_logged_and_releases_the_locks_while_down() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = fleet(d.path(), Duration::from_millis(400));
        exec_program(
            a.clone(),
            "zmprov",
            args(&["mcf", "zimbraMtaSmtpdRejectUnlistedRecipient", "yes"]),
        )
        .await
        .unwrap();
        // The restart stays down until the test releases it: what is asserted below holds
        // for as long as the test needs, however slowly it gets scheduled.
        let hold = a.hold_restarts().unwrap();
        let restart = tokio::spawn(exec_program(
            a.clone(),
            "systemctl",
            args(&["restart", "carbonio-mta.target"]),
        ));
        // While a is down its state says so, and the cluster stays usable.
        let deadline = Instant::now() + Duration::from_secs(60);
        while a.restart_log().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "restart never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (nf, cf) = a.read().unwrap();
        assert!(nf.restarting_until_ms.is_some());
        assert!(nf.state.stopped.contains("mta"));
        assert!(
            materialize(&nf, &cf, a.restarts_held())
                .state()
                .is_restarting()
        );
        let st = exec_program(
            b.clone(),
            "zmprov",
            args(&["gcf", "zimbraMtaEnableSmtpdPolicyd"]),
        )
        .await
        .unwrap();
        assert_eq!(st, 0);
        assert!(!restart.is_finished(), "a held restart must not finish");
        hold.release();
        assert_eq!(restart.await.unwrap().unwrap(), 0);
        let lines = a.restart_log().unwrap();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0].ended_ms, None);
        let end = &lines[1];
        assert_eq!(end.method, RestartMethod::Systemctl);
        assert_eq!(end.ok, Some(true));
        assert!(end.ended_ms.unwrap() - end.started_ms >= 400, "{end:?}");
        let (nf, _) = a.read().unwrap();
        assert!(nf.restarting_until_ms.is_none());
        assert!(nf.state.stopped.is_empty());
        // The restart rendered Postfix from the LDAP as it is now.
        let pf = nf.state.postfix.unwrap();
        assert_eq!(pf.params["smtpd_reject_unlisted_recipient"], "yes");
        // b's gcf during the restart was counted on b.
        assert_eq!(b.read().unwrap().0.prov_invocations, 1);
        assert_eq!(finished_restarts(&lines).len(), 1);
    }
}
