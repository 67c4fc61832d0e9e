//! known_hosts parsing, matching and hashed appends (our own; russh's helper has gaps).
//!
//! Supports what OpenSSH writes and reads: plain and hashed (`|1|salt|hash`, HMAC-SHA1)
//! host fields, `[host]:port` (port 22 is the bare host), comma lists, `*`/`?` patterns
//! and `!` negation, `@revoked` (a revoked key is refused even if also listed as good) and
//! `@cert-authority` (the CAs trusted to sign host certificates for the matching hosts,
//! see [`KnownHosts::authorities`]; never a plain host key). Any run of spaces or
//! tabs separates fields. Line numbers are 1-based and count every line. A line that does
//! not parse is kept in [`KnownHosts::problems`] and otherwise skipped, as OpenSSH does.
//!
//! Like OpenSSH, a host is judged against ALL its known_hosts files at once (every
//! `UserKnownHostsFile`, then every `GlobalKnownHostsFile`, by default
//! /etc/ssh/ssh_known_hosts and ssh_known_hosts2): a key listed in any of them is known,
//! and a host pinned in any of them with other keys only is a mismatch, never "unknown"
//! (see [`KnownHosts::merged`], [`KnownHostsCache::with_all`]). New keys are written to
//! the first user file only.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::{HashAlg, PublicKey};
use sha1::Sha1;

/// The marker at the start of a known_hosts line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// An ordinary host key line.
    None,
    /// `@revoked`: this key must never be accepted.
    Revoked,
    /// `@cert-authority`: a CA that signs host certificates.
    CertAuthority,
}

/// The host field of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostField {
    /// `|1|salt|hash`: HMAC-SHA1 of the host name keyed with the salt.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    /// A comma list of patterns, each possibly negated with `!`.
    Patterns(Vec<String>),
}

/// One parsed known_hosts line.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The file it is in.
    pub file: Arc<Path>,
    /// 1-based line number in the file.
    pub line: usize,
    pub marker: Marker,
    pub hosts: HostField,
    pub key: PublicKey,
}

/// The verdict for a key offered by a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// A good line for this host lists exactly this key.
    Known { file: PathBuf, line: usize },
    /// The host is listed, but with other keys only; `expected` are their fingerprints;
    /// `file` and `line` locate the first such line.
    Changed {
        file: PathBuf,
        line: usize,
        expected: Vec<String>,
    },
    /// An `@revoked` line for this host lists this key.
    Revoked { file: PathBuf, line: usize },
    /// The host is not listed at all.
    Unknown,
}

/// A parsed known_hosts file.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    /// Where the file lives (it may not exist yet).
    pub path: PathBuf,
    pub entries: Vec<Entry>,
    /// Lines that could not be parsed: (line number, reason).
    pub problems: Vec<(usize, String)>,
    /// Entries whose host field is plain names only, by lower-cased name: a lookup
    /// costs one hash probe instead of a match against every line (a fleet-sized file
    /// checked for every host of the fleet would otherwise be quadratic).
    by_name: HashMap<String, Vec<usize>>,
    /// Entries that must be matched one by one: hashed names and wildcard/negated patterns.
    scanned: Vec<usize>,
}

/// The `SHA256:…` fingerprint OpenSSH prints for a key.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The name OpenSSH looks up: `host` for port 22, `[host]:port` otherwise.
pub fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_ascii_lowercase()
    } else {
        format!("[{}]:{port}", host.to_ascii_lowercase())
    }
}

fn hmac_sha1(salt: &[u8], name: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(salt).expect("HMAC takes any key length");
    mac.update(name.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// `*` matches any run, `?` one character (OpenSSH `match_pattern`).
fn glob(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some(('?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

impl HostField {
    /// Whether this field matches the lookup name (see [`lookup_name`]).
    pub fn matches(&self, name: &str) -> bool {
        match self {
            HostField::Hashed { salt, hash } => hmac_sha1(salt, name) == *hash,
            HostField::Patterns(patterns) => {
                let text: Vec<char> = name.chars().collect();
                let mut positive = false;
                for p in patterns {
                    let (negated, p) = match p.strip_prefix('!') {
                        Some(rest) => (true, rest),
                        None => (false, p.as_str()),
                    };
                    let pat: Vec<char> = p.to_ascii_lowercase().chars().collect();
                    if glob(&pat, &text) {
                        if negated {
                            // A matching negation overrides every positive match.
                            return false;
                        }
                        positive = true;
                    }
                }
                positive
            }
        }
    }
}

fn parse_hashed(field: &str) -> Result<HostField, String> {
    let rest = field.strip_prefix("|1|").ok_or("unsupported hash format")?;
    let (salt, hash) = rest.split_once('|').ok_or("hashed host without a hash")?;
    let salt = B64.decode(salt).map_err(|e| format!("bad salt: {e}"))?;
    let hash = B64.decode(hash).map_err(|e| format!("bad hash: {e}"))?;
    if hash.len() != 20 {
        return Err("hash is not 20 bytes (HMAC-SHA1)".into());
    }
    Ok(HostField::Hashed { salt, hash })
}

fn parse_line(line: &str) -> Result<Option<(Marker, HostField, PublicKey)>, String> {
    let trimmed = line.trim_start_matches([' ', '\t']);
    if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.trim().is_empty() {
        return Ok(None);
    }
    let mut fields = trimmed.split([' ', '\t']).filter(|f| !f.is_empty());
    let mut first = fields.next().ok_or("empty line")?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => return Err(format!("unknown marker `{m}`")),
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = fields.next().ok_or("marker without a host field")?;
    }
    let hosts = if first.starts_with('|') {
        parse_hashed(first)?
    } else {
        HostField::Patterns(
            first
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    };
    let algo = fields.next().ok_or("missing key type")?;
    let blob = fields.next().ok_or("missing key data")?;
    let key = PublicKey::from_openssh(&format!("{algo} {blob}"))
        .map_err(|e| format!("bad {algo} key: {e}"))?;
    Ok(Some((marker, hosts, key)))
}

impl KnownHosts {
    /// Parses known_hosts text; `path` is only remembered for messages and appends.
    pub fn parse(text: &str, path: &Path) -> Self {
        let mut kh = KnownHosts {
            path: path.to_owned(),
            ..Default::default()
        };
        let file: Arc<Path> = Arc::from(path);
        for (i, line) in text.lines().enumerate() {
            match parse_line(line.trim_end_matches('\r')) {
                Ok(Some((marker, hosts, key))) => {
                    let at = kh.entries.len();
                    match &hosts {
                        HostField::Patterns(ps)
                            if ps
                                .iter()
                                .all(|p| !p.starts_with('!') && !p.contains(['*', '?'])) =>
                        {
                            for p in ps {
                                kh.by_name
                                    .entry(p.to_ascii_lowercase())
                                    .or_default()
                                    .push(at);
                            }
                        }
                        _ => kh.scanned.push(at),
                    }
                    kh.entries.push(Entry {
                        file: file.clone(),
                        line: i + 1,
                        marker,
                        hosts,
                        key,
                    })
                }
                Ok(None) => {}
                Err(reason) => kh.problems.push((i + 1, reason)),
            }
        }
        kh
    }

    /// Reads and parses a file; a missing file is an empty list.
    pub fn load(path: &Path) -> io::Result<Self> {
        match fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(&text, path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(KnownHosts {
                path: path.to_owned(),
                ..Default::default()
            }),
            Err(e) => Err(e),
        }
    }

    /// The entries whose host field matches the lookup `name`, in file order.
    fn matching(&self, name: &str) -> Vec<&Entry> {
        let mut idx: Vec<usize> = self.by_name.get(name).cloned().unwrap_or_default();
        idx.extend(
            self.scanned
                .iter()
                .copied()
                .filter(|&i| self.entries[i].hosts.matches(name)),
        );
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter().map(|i| &self.entries[i]).collect()
    }

    /// Classifies `key` offered by `host:port` (OpenSSH semantics, revocation first).
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> HostKeyStatus {
        let name = lookup_name(host, port);
        let found = self.matching(&name);
        let matching = || found.iter().copied();
        if let Some(e) =
            matching().find(|e| e.marker == Marker::Revoked && e.key.key_data() == key.key_data())
        {
            return HostKeyStatus::Revoked {
                file: e.file.to_path_buf(),
                line: e.line,
            };
        }
        let listed: Vec<&Entry> = matching().filter(|e| e.marker == Marker::None).collect();
        if let Some(e) = listed.iter().find(|e| e.key.key_data() == key.key_data()) {
            return HostKeyStatus::Known {
                file: e.file.to_path_buf(),
                line: e.line,
            };
        }
        match listed.first() {
            None => HostKeyStatus::Unknown,
            Some(first) => HostKeyStatus::Changed {
                file: first.file.to_path_buf(),
                line: first.line,
                expected: listed.iter().map(|e| fingerprint(&e.key)).collect(),
            },
        }
    }
}

impl KnownHosts {
    /// Several files read as one, in the order given (OpenSSH: the user files, then the
    /// global ones); each entry keeps its file and line. `path` is the first file's (the
    /// one new keys go to).
    pub fn merged(parts: &[Arc<KnownHosts>]) -> KnownHosts {
        let mut kh = KnownHosts {
            path: parts.first().map(|p| p.path.clone()).unwrap_or_default(),
            ..Default::default()
        };
        for p in parts {
            let base = kh.entries.len();
            for (name, idx) in &p.by_name {
                kh.by_name
                    .entry(name.clone())
                    .or_default()
                    .extend(idx.iter().map(|i| i + base));
            }
            kh.scanned.extend(p.scanned.iter().map(|i| i + base));
            kh.entries.extend(p.entries.iter().cloned());
        }
        kh
    }

    /// The `@cert-authority` entries whose host patterns match `host:port`.
    pub fn authorities(&self, host: &str, port: u16) -> Vec<&Entry> {
        let name = lookup_name(host, port);
        self.matching(&name)
            .into_iter()
            .filter(|e| e.marker == Marker::CertAuthority)
            .collect()
    }

    /// The `@revoked` line (file, line) for `host:port` that lists `key`, if any.
    pub fn revoked_line(&self, host: &str, port: u16, key: &PublicKey) -> Option<(PathBuf, usize)> {
        let name = lookup_name(host, port);
        self.matching(&name)
            .into_iter()
            .find(|e| e.marker == Marker::Revoked && e.key.key_data() == key.key_data())
            .map(|e| (e.file.to_path_buf(), e.line))
    }
}

/// Whether `pattern` (`*`, `?`; case-insensitive) matches `text`, as OpenSSH matches
/// certificate principals.
pub fn pattern_matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    glob(&p, &t)
}

/// (mtime, size) of a file, `None` when it does not exist.
type FileStamp = Option<(SystemTime, u64)>;

/// Parsed known_hosts files shared by every connection of a run. A file is parsed again
/// only when its size or mtime changed (each line costs a base64 and key decode, which
/// adds up for a big file and a thousand hosts). The mutex also
/// serialises this process's check-then-append, so accept-new for two connections to
/// the same host writes one line.
#[derive(Debug, Default)]
pub struct KnownHostsCache {
    files: Mutex<Files>,
}

/// Parsed files and merged views, each with the stamps it was built from.
#[derive(Debug, Default)]
struct Files {
    one: HashMap<PathBuf, (FileStamp, Arc<KnownHosts>)>,
    merged: HashMap<Vec<(PathBuf, FileStamp)>, Arc<KnownHosts>>,
}

impl Files {
    fn load(&mut self, path: &Path) -> io::Result<(FileStamp, Arc<KnownHosts>)> {
        let stamp = match fs::metadata(path) {
            Ok(m) => Some((m.modified()?, m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        match self.one.get(path) {
            Some((cached, kh)) if *cached == stamp => Ok((stamp, kh.clone())),
            _ => {
                let kh = Arc::new(KnownHosts::load(path)?);
                self.one.insert(path.to_owned(), (stamp, kh.clone()));
                Ok((stamp, kh))
            }
        }
    }
}

impl KnownHostsCache {
    /// Runs `f` on the current contents of `path` while holding the cache lock.
    pub fn with<R>(&self, path: &Path, f: impl FnOnce(&KnownHosts) -> R) -> io::Result<R> {
        self.with_all(path, &[], f)
    }

    /// Runs `f` on `path` and `also` read as one ([`KnownHosts::merged`]), while holding
    /// the cache lock. `path` must be readable (new keys go there); an unreadable file
    /// of `also` (a global file this user may not read) counts as empty, as OpenSSH
    /// skips it.
    pub fn with_all<R>(
        &self,
        path: &Path,
        also: &[PathBuf],
        f: impl FnOnce(&KnownHosts) -> R,
    ) -> io::Result<R> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let (stamp, first) = files.load(path)?;
        if also.is_empty() {
            return Ok(f(&first));
        }
        let mut key = vec![(path.to_owned(), stamp)];
        let mut parts = vec![first];
        for p in also {
            match files.load(p) {
                Ok((stamp, kh)) => {
                    key.push((p.clone(), stamp));
                    parts.push(kh);
                }
                Err(e) => tracing::debug!(file = %p.display(), "known_hosts skipped: {e}"),
            }
        }
        let merged = match files.merged.get(&key) {
            Some(kh) => kh.clone(),
            None => {
                let kh = Arc::new(KnownHosts::merged(&parts));
                files.merged.insert(key, kh.clone());
                kh
            }
        };
        Ok(f(&merged))
    }
}

/// A hashed line for `host:port` with a fresh random salt, as `ssh-keyscan -H` writes it.
pub fn hashed_line(host: &str, port: u16, key: &PublicKey) -> io::Result<String> {
    let salt: [u8; 20] = rand::random();
    let hash = hmac_sha1(&salt, &lookup_name(host, port));
    let mut key = key.clone();
    key.set_comment("");
    let key_text = key.to_openssh().map_err(io::Error::other)?;
    Ok(format!(
        "|1|{}|{} {}",
        B64.encode(salt),
        B64.encode(hash),
        key_text.trim_end()
    ))
}

/// Appends a hashed line for `host:port` unless the file already knows this key.
///
/// The file (mode 0600) and its parent directory (mode 0700) are created when missing.
/// The write happens under an exclusive lock on the file, and the file is re-read under
/// that lock, so parallel connects to the same host add one line, not several. Returns
/// whether a line was written.
pub fn append_hashed(path: &Path, host: &str, port: u16, key: &PublicKey) -> io::Result<bool> {
    if let Some(parent) = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    file.lock()?;
    let result = (|| {
        let mut text = String::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_string(&mut text)?;
        if let HostKeyStatus::Known { .. } = KnownHosts::parse(&text, path).check(host, port, key) {
            return Ok(false);
        }
        let mut line = hashed_line(host, port, key)?;
        line.push('\n');
        if !text.is_empty() && !text.ends_with('\n') {
            line.insert(0, '\n');
        }
        file.write_all(line.as_bytes())?;
        file.sync_data()?;
        Ok(true)
    })();
    let _ = file.unlock();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use indoc::formatdoc;
    use russh::keys::ssh_key::{Algorithm, PrivateKey};

    fn key() -> PublicKey {
        PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
            .unwrap()
            .public_key()
            .clone()
    }

    fn text(k: &PublicKey) -> String {
        k.to_openssh().unwrap()
    }

    fn parse(s: &str) -> KnownHosts {
        KnownHosts::parse(s, Path::new("/kh"))
    }

    /// Known at `line` of the test file `/kh`.
    fn known(line: usize) -> HostKeyStatus {
        HostKeyStatus::Known {
            file: PathBuf::from("/kh"),
            line,
        }
    }

    #[test]
    fn plain_entry_with_port_and_bare_port_22() {
        let k = key();
        let kh = parse(&format!(
            "[127.0.0.1]:2222 {}\nmail1 {}\n",
            text(&k),
            text(&k)
        ));
        assert_eq!(kh.check("127.0.0.1", 2222, &k), known(1));
        assert_eq!(kh.check("127.0.0.1", 22, &k), HostKeyStatus::Unknown);
        assert_eq!(kh.check("MAIL1", 22, &k), known(2));
        assert_eq!(kh.check("mail1", 2222, &k), HostKeyStatus::Unknown);
    }

    #[test]
    fn comments_blank_lines_tabs_and_spaces_keep_line_numbers() {
        let k = key();
        let (algo, blob) = text(&k)
            .split_once(' ')
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .unwrap();
        let kh = parse(&formatdoc! {"
            # comment

               # indented comment
            a,b\t{algo}  \t{blob} comment here
        "});
        assert!(kh.problems.is_empty(), "{:?}", kh.problems);
        assert_eq!(kh.check("b", 22, &k), known(4));
    }

    #[test]
    fn comma_lists_patterns_and_negation() {
        let k = key();
        let kh = parse(&format!(
            "x,[127.0.0.*]:2299,!127.0.0.9,mail?.example {}\n",
            text(&k)
        ));
        assert_eq!(kh.check("127.0.0.5", 2299, &k), known(1));
        assert_eq!(kh.check("mail7.example", 22, &k), known(1));
        assert_eq!(kh.check("mail77.example", 22, &k), HostKeyStatus::Unknown);
        let kh = parse(&format!("*.example,!bad.example {}\n", text(&k)));
        assert_eq!(kh.check("bad.example", 22, &k), HostKeyStatus::Unknown);
        assert_eq!(kh.check("good.example", 22, &k), known(1));
    }

    #[test]
    fn hashed_entries_match_only_their_host() {
        let k = key();
        let line = hashed_line("127.0.0.1", 2203, &k).unwrap();
        assert!(line.starts_with("|1|"));
        let kh = parse(&format!("# x\n{line}\n"));
        assert_eq!(kh.check("127.0.0.1", 2203, &k), known(2));
        assert_eq!(kh.check("127.0.0.1", 2204, &k), HostKeyStatus::Unknown);
    }

    #[test]
    fn hmac_sha1_matches_rfc2202() {
        let mac = hmac_sha1(&[0x0b; 20], "Hi There");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "b617318655057264e28bc0b6fb378c8ef146be00");
    }

    #[test]
    fn lines_hashed_by_ssh_keygen_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kh");
        let k = key();
        fs::write(
            &path,
            format!("[127.0.0.1]:2299 {}\nmail1 {}\n", text(&k), text(&k)),
        )
        .unwrap();
        let st = std::process::Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        assert!(st.status.success(), "{st:?}");
        let kh = KnownHosts::load(&path).unwrap();
        assert!(
            kh.entries
                .iter()
                .all(|e| matches!(e.hosts, HostField::Hashed { .. }))
        );
        assert_eq!(
            kh.check("127.0.0.1", 2299, &k),
            HostKeyStatus::Known {
                file: path.clone(),
                line: 1
            }
        );
        assert_eq!(
            kh.check("mail1", 22, &k),
            HostKeyStatus::Known {
                file: path.clone(),
                line: 2
            }
        );
        assert_eq!(kh.check("mail2", 22, &k), HostKeyStatus::Unknown);
    }

    #[test]
    fn other_key_is_changed_with_all_listed_fingerprints() {
        let (good1, good2, offered) = (key(), key(), key());
        let kh = parse(&format!("# c\nh {}\nh {}\n", text(&good1), text(&good2)));
        assert_eq!(
            kh.check("h", 22, &offered),
            HostKeyStatus::Changed {
                file: PathBuf::from("/kh"),
                line: 2,
                expected: vec![fingerprint(&good1), fingerprint(&good2)]
            }
        );
        assert!(fingerprint(&offered).starts_with("SHA256:"));
    }

    #[test]
    fn revoked_wins_over_a_good_line() {
        let k = key();
        let kh = parse(&format!("h {}\n@revoked * {}\n", text(&k), text(&k)));
        assert_eq!(
            kh.check("h", 22, &k),
            HostKeyStatus::Revoked {
                file: PathBuf::from("/kh"),
                line: 2
            }
        );
    }

    #[test]
    fn cert_authority_is_kept_but_not_a_host_key() {
        let k = key();
        let kh = parse(&format!("@cert-authority *.example {}\n", text(&k)));
        assert_eq!(kh.entries.len(), 1);
        assert_eq!(kh.entries[0].marker, Marker::CertAuthority);
        assert_eq!(kh.check("a.example", 22, &k), HostKeyStatus::Unknown);
    }

    #[test]
    fn authorities_follow_host_patterns_and_revocations_are_found() {
        let (ca, other) = (key(), key());
        let kh = parse(&format!(
            "@cert-authority *.example,[127.0.0.*]:* {}\n@revoked [127.0.0.1]:2222 {}\n",
            text(&ca),
            text(&other)
        ));
        assert_eq!(kh.authorities("mx.example", 22).len(), 1);
        assert_eq!(kh.authorities("127.0.0.1", 2222).len(), 1);
        assert!(kh.authorities("mx.other", 22).is_empty());
        assert_eq!(
            kh.revoked_line("127.0.0.1", 2222, &other),
            Some((PathBuf::from("/kh"), 2))
        );
        assert_eq!(kh.revoked_line("127.0.0.1", 2222, &ca), None);
        assert!(pattern_matches("*.ACME.example", "mx1.acme.example"));
        assert!(!pattern_matches("mx?.acme.example", "mx10.acme.example"));
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let k = key();
        let kh = parse(&format!(
            "h ssh-ed25519 AAAAnotakey\n@bogus h {}\nh\nh {}\n",
            text(&k),
            text(&k)
        ));
        assert_eq!(
            kh.problems.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(kh.check("h", 22, &k), known(4));
    }

    #[test]
    fn append_creates_file_and_dir_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/known_hosts");
        let k = key();
        assert!(append_hashed(&path, "127.0.0.1", 2222, &k).unwrap());
        assert!(!append_hashed(&path, "127.0.0.1", 2222, &k).unwrap());
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.starts_with("|1|"));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let kh = KnownHosts::load(&path).unwrap();
        assert_eq!(
            kh.check("127.0.0.1", 2222, &k),
            HostKeyStatus::Known {
                file: path.clone(),
                line: 1
            }
        );
    }

    #[test]
    fn cache_sees_appends_and_edits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let cache = KnownHostsCache::default();
        let k = key();
        let status = |c: &KnownHostsCache| c.with(&path, |kh| kh.check("h", 2222, &k)).unwrap();
        assert_eq!(status(&cache), HostKeyStatus::Unknown);
        append_hashed(&path, "h", 2222, &k).unwrap();
        assert!(matches!(
            status(&cache),
            HostKeyStatus::Known { line: 1, .. }
        ));
        fs::write(&path, format!("# moved\n[h]:2222 {}\n", text(&key()))).unwrap();
        assert!(matches!(
            status(&cache),
            HostKeyStatus::Changed { line: 2, .. }
        ));
    }

    #[test]
    fn parallel_appends_for_many_hosts_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        fs::write(&path, "# no trailing newline").unwrap();
        let keys: Vec<PublicKey> = (0..16).map(|_| key()).collect();
        std::thread::scope(|s| {
            for (i, k) in keys.iter().enumerate() {
                let path = &path;
                s.spawn(move || append_hashed(path, "127.0.0.1", 3000 + i as u16, k).unwrap());
            }
        });
        let kh = KnownHosts::load(&path).unwrap();
        assert!(kh.problems.is_empty(), "{:?}", kh.problems);
        for (i, k) in keys.iter().enumerate() {
            assert!(matches!(
                kh.check("127.0.0.1", 3000 + i as u16, k),
                HostKeyStatus::Known { .. }
            ));
        }
    }
}
