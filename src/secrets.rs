//! Passwords and key passphrases in the OS keyring (never in inventory files).
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

use std::sync::OnceLock;

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

/// Finds the secret for `host`: its own entry, then each group's, first found wins.
pub fn lookup(kind: SecretKind, host: &Host) -> Option<Secret> {
    scopes(host).find_map(|scope| get(&entry_user(kind, scope)))
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
/// keyring is denied; attaching a session keyring first fixes that (RUST-STACK §3).
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
