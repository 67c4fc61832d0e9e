//! Passwords and key passphrases: in files a service manager hands over, or in the OS
//! keyring (never in inventory files).
//!
//! Where a secret is looked for, per scope (the host's own, then each group's), first
//! found wins:
//! 1. systemd credentials: `$CREDENTIALS_DIRECTORY/NAME` (`LoadCredentialEncrypted=` in
//!    the shipped unit: encrypted at rest, readable by the service only, and there after
//!    every reboot);
//! 2. a secrets directory of files (`--secrets-dir DIR`, e.g. a Kubernetes Secret
//!    volume): `DIR/NAME`;
//! 3. the OS keyring (below).
//!
//! `NAME` is [`file_name`]: `password.host.mail1`, `passphrase.group.acme` (dots, as
//! systemd credential IDs and Kubernetes Secret keys allow); a file's value is its
//! content without one trailing newline.
//!
//! Entries live under service `carbonio-fleet`; the entry user names the kind and scope:
//!
//! | secret | entry user |
//! |---|---|
//! | SSH password for host `mail1` | `password:host:mail1` |
//! | SSH password for every host of group `acme` | `password:group:acme` |
//! | key passphrase for host `mail1` | `passphrase:host:mail1` |
//! | key passphrase for group `acme` | `passphrase:group:acme` |
//!
//! One more entry, [`INDEX_USER`], lists the names of the others (never their values)
//! for [`list`].
//!
//! [`lookup`] tries the host's own entry first, then each of its groups in inventory
//! order. On Linux the store is the kernel keyutils keyring ([`init_default_store`]):
//! no daemon, works on headless servers, kept per user in the persistent keyring (lost on
//! reboot). Tests use the in-memory mock store ([`use_mock_store`]). A [`Secret`] never
//! prints its value (its `Debug` is redacted) and nothing here logs one.

use std::path::{Path, PathBuf};
use std::sync::{OnceLock, RwLock};

use thiserror::Error;

use crate::inventory::Host;

/// The keyring service every entry is stored under.
pub const SERVICE: &str = "carbonio-fleet";

/// Which secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// SSH password of the login user.
    Password,
    /// Passphrase of an encrypted identity file.
    Passphrase,
}

/// Whom a secret is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretScope<'a> {
    Host(&'a str),
    Group(&'a str),
}

/// A secret value. `Debug` is redacted; read it with [`Secret::expose`] only where it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A keyring operation failed.
#[derive(Debug, Error)]
#[error("keyring {action} failed for `{entry}`: {source}")]
pub struct SecretError {
    action: &'static str,
    entry: String,
    #[source]
    source: keyring_core::Error,
}

/// The keyring entry user for a kind and scope (see the module docs).
pub fn entry_user(kind: SecretKind, scope: SecretScope<'_>) -> String {
    let kind = match kind {
        SecretKind::Password => "password",
        SecretKind::Passphrase => "passphrase",
    };
    match scope {
        SecretScope::Host(name) => format!("{kind}:host:{name}"),
        SecretScope::Group(name) => format!("{kind}:group:{name}"),
    }
}

fn get(user: &str) -> Option<Secret> {
    let entry = keyring_core::Entry::new(SERVICE, user).ok()?;
    match entry.get_password() {
        Ok(v) => Some(Secret(v)),
        Err(keyring_core::Error::NoEntry) => None,
        Err(e) => {
            tracing::warn!(entry = user, error = %e, "keyring lookup failed");
            None
        }
    }
}

/// The directories read before the keyring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretDirs {
    /// systemd's `$CREDENTIALS_DIRECTORY`.
    pub credentials: Option<PathBuf>,
    /// `--secrets-dir`.
    pub secrets_dir: Option<PathBuf>,
}

static DIRS: RwLock<Option<SecretDirs>> = RwLock::new(None);

/// Sets the secrets directory of this run (`--secrets-dir`); the credentials directory
/// comes from `$CREDENTIALS_DIRECTORY` (set by systemd for a unit with credentials).
pub fn set_secrets_dir(secrets_dir: Option<PathBuf>) {
    let dirs = SecretDirs {
        credentials: std::env::var_os("CREDENTIALS_DIRECTORY")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        secrets_dir,
    };
    *DIRS.write().unwrap_or_else(|p| p.into_inner()) = Some(dirs);
}

fn dirs() -> SecretDirs {
    DIRS.read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_default()
}

/// Where a secret was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file of systemd's credentials directory.
    Credential(PathBuf),
    /// A file of the secrets directory.
    SecretsDir(PathBuf),
    /// The OS keyring (its entry user).
    Keyring(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Credential(p) => write!(f, "systemd credential {}", p.display()),
            Origin::SecretsDir(p) => write!(f, "{}", p.display()),
            Origin::Keyring(u) => write!(f, "keyring entry `{u}`"),
        }
    }
}

/// The file name of a secret in a credentials or secrets directory, `None` when the
/// host or group name could not be one file name (then only the keyring is asked).
pub fn file_name(kind: SecretKind, scope: SecretScope<'_>) -> Option<String> {
    let (kind, what, name) = match (kind, scope) {
        (SecretKind::Password, SecretScope::Host(n)) => ("password", "host", n),
        (SecretKind::Password, SecretScope::Group(n)) => ("password", "group", n),
        (SecretKind::Passphrase, SecretScope::Host(n)) => ("passphrase", "host", n),
        (SecretKind::Passphrase, SecretScope::Group(n)) => ("passphrase", "group", n),
    };
    let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0']);
    plain.then(|| format!("{kind}.{what}.{name}"))
}

/// A secret file's value: its content without one trailing newline. A missing file is
/// `None`; an unreadable one is said once, as the keyring's failures are.
fn from_file(path: &Path) -> Option<Secret> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let v = text
                .strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .unwrap_or(&text);
            Some(Secret(v.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "secret file unreadable");
            None
        }
    }
}

/// Finds the secret for `host` and where it was: for its own scope, then each group's,
/// the credentials directory, the secrets directory, then the keyring.
pub fn find(kind: SecretKind, host: &Host) -> Option<(Secret, Origin)> {
    find_in(&dirs(), kind, host, &|user| get(user))
}

/// [`find`] with explicit directories and keyring reader.
pub fn find_in(
    dirs: &SecretDirs,
    kind: SecretKind,
    host: &Host,
    keyring: &dyn Fn(&str) -> Option<Secret>,
) -> Option<(Secret, Origin)> {
    scopes(host).find_map(|scope| {
        let file = file_name(kind, scope);
        let in_dir = |dir: &Option<PathBuf>| {
            let path = dir.as_ref()?.join(file.as_ref()?);
            from_file(&path).map(|s| (s, path))
        };
        in_dir(&dirs.credentials)
            .map(|(s, p)| (s, Origin::Credential(p)))
            .or_else(|| in_dir(&dirs.secrets_dir).map(|(s, p)| (s, Origin::SecretsDir(p))))
            .or_else(|| {
                let user = entry_user(kind, scope);
                keyring(&user).map(|s| (s, Origin::Keyring(user)))
            })
    })
}

/// Every place [`find`] looks for `host`'s secret, in order (for a message naming them).
pub fn places(kind: SecretKind, host: &Host) -> Vec<String> {
    let d = dirs();
    let mut out = Vec::new();
    for scope in scopes(host) {
        for dir in [&d.credentials, &d.secrets_dir].into_iter().flatten() {
            if let Some(f) = file_name(kind, scope) {
                out.push(dir.join(f).display().to_string());
            }
        }
        out.push(format!("keyring `{}`", entry_user(kind, scope)));
    }
    out
}

/// Finds the secret for `host`: see [`find`].
pub fn lookup(kind: SecretKind, host: &Host) -> Option<Secret> {
    find(kind, host).map(|(s, _)| s)
}

/// Where a host's secrets are looked up, in order: its own entry, then its groups'.
pub fn scopes(host: &Host) -> impl Iterator<Item = SecretScope<'_>> {
    std::iter::once(SecretScope::Host(&host.name))
        .chain(host.groups.iter().map(|g| SecretScope::Group(g)))
}

/// Stores (or replaces) a secret, and adds its name to the [index](INDEX_USER).
pub fn store(kind: SecretKind, scope: SecretScope<'_>, value: &Secret) -> Result<(), SecretError> {
    let user = entry_user(kind, scope);
    let err = |action, source| SecretError {
        action,
        entry: user.clone(),
        source,
    };
    let entry = keyring_core::Entry::new(SERVICE, &user).map_err(|e| err("open", e))?;
    entry
        .set_password(value.expose())
        .map_err(|e| err("store", e))?;
    update_index(|names| {
        names.insert(user.clone());
    })
}

/// Deletes a secret; `Ok(false)` when there was none. Its name leaves the index either way.
pub fn delete(kind: SecretKind, scope: SecretScope<'_>) -> Result<bool, SecretError> {
    let user = entry_user(kind, scope);
    let err = |action, source| SecretError {
        action,
        entry: user.clone(),
        source,
    };
    let entry = keyring_core::Entry::new(SERVICE, &user).map_err(|e| err("open", e))?;
    let existed = match entry.delete_credential() {
        Ok(()) => true,
        Err(keyring_core::Error::NoEntry) => false,
        Err(e) => return Err(err("delete", e)),
    };
    update_index(|names| {
        names.remove(&user);
    })?;
    Ok(existed)
}

/// The entry user (same service) of the index: the names of the stored entries, one
/// per line, never a value. Keyring search is not portable (keyutils has none), so the
/// tool keeps its own list; it lives in the keyring itself so that it is exactly as
/// durable as the secrets (with keyutils both vanish together at reboot or expiry) and
/// no file on disk names the hosts that have passwords.
pub const INDEX_USER: &str = "index";

/// Serialises read-modify-write of the index within this process (another process
/// racing a `secret set` at the same instant can still lose an index line; `list` then
/// misses a name, never a secret).
static INDEX_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn index_entry() -> Result<keyring_core::Entry, SecretError> {
    keyring_core::Entry::new(SERVICE, INDEX_USER).map_err(|source| SecretError {
        action: "open",
        entry: INDEX_USER.into(),
        source,
    })
}

fn read_index() -> Result<std::collections::BTreeSet<String>, SecretError> {
    match index_entry()?.get_password() {
        Ok(text) => Ok(text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()),
        Err(keyring_core::Error::NoEntry) => Ok(Default::default()),
        Err(source) => Err(SecretError {
            action: "read",
            entry: INDEX_USER.into(),
            source,
        }),
    }
}

fn write_index(names: &std::collections::BTreeSet<String>) -> Result<(), SecretError> {
    let entry = index_entry()?;
    let res = if names.is_empty() {
        match entry.delete_credential() {
            Err(keyring_core::Error::NoEntry) => Ok(()),
            other => other,
        }
    } else {
        let text: Vec<&str> = names.iter().map(String::as_str).collect();
        entry.set_password(&text.join("\n"))
    };
    res.map_err(|source| SecretError {
        action: "write",
        entry: INDEX_USER.into(),
        source,
    })
}

fn update_index(
    change: impl FnOnce(&mut std::collections::BTreeSet<String>),
) -> Result<(), SecretError> {
    let _guard = INDEX_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let mut names = read_index()?;
    let before = names.clone();
    change(&mut names);
    if names != before {
        write_index(&names)?;
    }
    Ok(())
}

fn exists(user: &str) -> Result<bool, SecretError> {
    let entry = keyring_core::Entry::new(SERVICE, user).map_err(|source| SecretError {
        action: "open",
        entry: user.into(),
        source,
    })?;
    match entry.get_credential() {
        Ok(_) => Ok(true),
        Err(keyring_core::Error::NoEntry) => Ok(false),
        Err(source) => Err(SecretError {
            action: "check",
            entry: user.into(),
            source,
        }),
    }
}

/// The entry users of the stored secrets (`password:host:mail1` …), sorted. Names the
/// index holds but the keyring no longer has (expired, deleted by another tool) are left
/// out and pruned from the index.
pub fn list() -> Result<Vec<String>, SecretError> {
    let _guard = INDEX_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let names = read_index()?;
    let mut present = std::collections::BTreeSet::new();
    for name in &names {
        if exists(name)? {
            present.insert(name.clone());
        }
    }
    if present != names {
        write_index(&present)?;
    }
    Ok(present.into_iter().collect())
}

/// Installs the platform store: on Linux the kernel keyutils keyring.
///
/// A process started without a PAM session keyring (cron, CI, `ssh host cmd` as root)
/// falls back to the user-session keyring, from which linking into the persistent
/// keyring is denied; attaching a session keyring first fixes that (README "Secrets").
pub fn init_default_store() -> Result<(), SecretError> {
    #[cfg(target_os = "linux")]
    keyring_core::set_default_store(keyutils_store()?);
    Ok(())
}

/// The kernel keyutils store, after making sure this process has a session keyring.
#[cfg(target_os = "linux")]
fn keyutils_store() -> Result<std::sync::Arc<keyring_core::CredentialStore>, SecretError> {
    use linux_keyutils::{KeyRing, KeyRingIdentifier};
    if let Err(e) = KeyRing::from_special_id(KeyRingIdentifier::Session, true) {
        tracing::warn!(error = ?e, "could not attach a session keyring");
    }
    let store = linux_keyutils_keyring_store::Store::new().map_err(|source| SecretError {
        action: "open store",
        entry: SERVICE.into(),
        source,
    })?;
    Ok(store)
}

/// Installs the in-memory mock store once per process (tests). Later calls keep the
/// same store, so secrets stored by one test stay visible to the next.
pub fn use_mock_store() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let store = keyring_core::mock::Store::new().expect("the mock store cannot fail");
        keyring_core::set_default_store(store);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, groups: &[&str]) -> Host {
        Host {
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Host::for_test(name)
        }
    }

    /// Per scope (the host's own, then its groups'): systemd's credentials directory,
    /// the secrets directory, then the keyring; a name that cannot be one file name is
    /// only looked up in the keyring.
    #[test]
    fn files_come_before_the_keyring_and_the_host_before_its_groups() {
        let d = tempfile::tempdir().unwrap();
        let (creds, dir) = (d.path().join("c"), d.path().join("s"));
        std::fs::create_dir_all(&creds).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let dirs = SecretDirs {
            credentials: Some(creds.clone()),
            secrets_dir: Some(dir.clone()),
        };
        let keyring =
            |user: &str| (user == "password:host:m1").then(|| Secret::new("from-keyring"));
        let h = host("m1", &["g"]);
        let found = |d: &SecretDirs| {
            find_in(d, SecretKind::Password, &h, &keyring).map(|(s, o)| (s.expose().to_string(), o))
        };
        assert_eq!(
            found(&dirs),
            Some((
                "from-keyring".into(),
                Origin::Keyring("password:host:m1".into())
            ))
        );
        std::fs::write(dir.join("password.group.g"), "group\n").unwrap();
        assert_eq!(
            found(&dirs).unwrap().0,
            "from-keyring",
            "the host's own scope first"
        );
        std::fs::write(dir.join("password.host.m1"), "dir\r\n").unwrap();
        assert_eq!(
            found(&dirs),
            Some((
                "dir".into(),
                Origin::SecretsDir(dir.join("password.host.m1"))
            ))
        );
        std::fs::write(creds.join("password.host.m1"), "cred").unwrap();
        assert_eq!(
            found(&dirs),
            Some((
                "cred".into(),
                Origin::Credential(creds.join("password.host.m1"))
            ))
        );
        assert_eq!(
            file_name(SecretKind::Passphrase, SecretScope::Group("acme")).as_deref(),
            Some("passphrase.group.acme")
        );
        assert_eq!(
            file_name(SecretKind::Password, SecretScope::Host("../x")),
            None
        );
        assert_eq!(
            file_name(SecretKind::Password, SecretScope::Host("..")),
            None
        );
    }

    #[test]
    fn entry_names() {
        assert_eq!(
            entry_user(SecretKind::Password, SecretScope::Host("m1")),
            "password:host:m1"
        );
        assert_eq!(
            entry_user(SecretKind::Passphrase, SecretScope::Group("acme")),
            "passphrase:group:acme"
        );
    }

    #[test]
    fn host_entry_wins_over_groups_and_groups_in_order() {
        use_mock_store();
        let h = host("secrets-unit-h1", &["secrets-unit-g1", "secrets-unit-g2"]);
        assert_eq!(lookup(SecretKind::Password, &h), None);
        store(
            SecretKind::Password,
            SecretScope::Group("secrets-unit-g2"),
            &Secret::new("g2"),
        )
        .unwrap();
        assert_eq!(lookup(SecretKind::Password, &h).unwrap().expose(), "g2");
        store(
            SecretKind::Password,
            SecretScope::Group("secrets-unit-g1"),
            &Secret::new("g1"),
        )
        .unwrap();
        assert_eq!(lookup(SecretKind::Password, &h).unwrap().expose(), "g1");
        store(
            SecretKind::Password,
            SecretScope::Host("secrets-unit-h1"),
            &Secret::new("h"),
        )
        .unwrap();
        assert_eq!(lookup(SecretKind::Password, &h).unwrap().expose(), "h");
        assert_eq!(lookup(SecretKind::Passphrase, &h), None);
        assert!(delete(SecretKind::Password, SecretScope::Host("secrets-unit-h1")).unwrap());
        assert!(!delete(SecretKind::Password, SecretScope::Host("secrets-unit-h1")).unwrap());
        assert_eq!(lookup(SecretKind::Password, &h).unwrap().expose(), "g1");
    }

    /// The real headless backend: store, read back, delete (without touching the
    /// process-wide default store the other tests use).
    #[cfg(target_os = "linux")]
    #[test]
    fn keyutils_store_round_trip() {
        let store = keyutils_store().unwrap();
        let user = format!("password:host:unit-test-{}", std::process::id());
        let entry = keyring_core::Entry::new_in_store(&store, SERVICE, &user).unwrap();
        entry.set_password("s3cret").unwrap();
        let again = keyring_core::Entry::new_in_store(&store, SERVICE, &user).unwrap();
        assert_eq!(again.get_password().unwrap(), "s3cret");
        again.delete_credential().unwrap();
        assert!(matches!(
            entry.get_password(),
            Err(keyring_core::Error::NoEntry)
        ));
    }

    #[test]
    fn the_index_follows_store_and_delete_and_forgets_vanished_entries() {
        use_mock_store();
        let scope = SecretScope::Host("secrets-unit-index");
        let user = entry_user(SecretKind::Passphrase, scope);
        store(SecretKind::Passphrase, scope, &Secret::new("v1")).unwrap();
        store(SecretKind::Passphrase, scope, &Secret::new("v2")).unwrap();
        let names = list().unwrap();
        assert_eq!(names.iter().filter(|n| **n == user).count(), 1);
        assert!(!read_index().unwrap().iter().any(|n| n.contains("v2")));
        // Gone behind the tool's back (expiry): listed no more, pruned from the index.
        keyring_core::Entry::new(SERVICE, &user)
            .unwrap()
            .delete_credential()
            .unwrap();
        assert!(!list().unwrap().contains(&user));
        assert!(!read_index().unwrap().contains(&user));
        store(SecretKind::Passphrase, scope, &Secret::new("v3")).unwrap();
        assert!(delete(SecretKind::Passphrase, scope).unwrap());
        assert!(!list().unwrap().contains(&user));
    }

    #[test]
    fn debug_is_redacted() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret(<redacted>)"
        );
    }
}
