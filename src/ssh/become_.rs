//! Wrapping a script so it runs as the right user on the node (the "become" step).
//!
//! The script is quoted once with [`quote`] and embedded in `su`/`sudo`, exactly in the
//! forms listed in docs/remote-shell.md. `sudo -n` never prompts (there is no TTY), so a
//! missing sudo rule fails fast instead of hanging. This module only builds strings.
//!
//! Why not `sudo -i`: with `-i` sudo re-escapes the command for the target's login shell
//! with a backslash before each special character, and a backslash-newline is a line
//! continuation there, so every newline of the script vanished (measured with sudo
//! 1.9.13p3: `printf %s 'a<NL>b'` printed `ab`). `-H` plus `bash -l` gives the same login
//! environment (HOME, `~/.bash_profile`, PATH) without that re-parse.

use serde::Serialize;

use super::quote::{QuoteError, quote};
use crate::inventory::Become;

/// Which user a remote script must run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunAs {
    /// The SSH login user, unwrapped.
    Login,
    /// The product's service user: `zextras` on Carbonio, `zimbra` on Zimbra
    /// ([`crate::flavour::Flavour::user`]).
    Service,
    /// root (for systemctl, package state, files outside the install tree).
    Root,
}

/// Returns the exact string to send on the SSH channel so that `script` runs as `run_as`,
/// `service_user` being the product's (`zextras`, `zimbra`).
///
/// - `Service` with `su` (or `auto` when logged in as root): `su - zextras -c Q`
/// - `Service` with `sudo` (or `auto` as anyone else): `sudo -n -u zextras -H -- /bin/bash -l -c Q`
/// - `Service` with `none`: the script as is (the login user is the service user)
/// - `Root` as root, and `Login`: the script as is
/// - `Root` as anyone else: `sudo -n -- /bin/bash -c Q`
pub fn wrap(
    login_user: &str,
    become_: Become,
    service_user: &str,
    run_as: RunAs,
    script: &str,
) -> Result<String, QuoteError> {
    let is_root = login_user == "root";
    let wrapped = match run_as {
        RunAs::Login => None,
        RunAs::Root if is_root => None,
        RunAs::Root => Some(format!("sudo -n -- /bin/bash -c {}", quote(script)?)),
        RunAs::Service => match become_ {
            Become::None => None,
            Become::Su => Some(su(service_user, script)?),
            Become::Sudo => Some(sudo_service(service_user, script)?),
            Become::Auto if is_root => Some(su(service_user, script)?),
            Become::Auto => Some(sudo_service(service_user, script)?),
        },
    };
    match wrapped {
        Some(w) => Ok(w),
        None => {
            // Unwrapped scripts still must not carry NUL: the exec string is a C string.
            quote(script)?;
            Ok(script.to_owned())
        }
    }
}

fn su(user: &str, script: &str) -> Result<String, QuoteError> {
    Ok(format!("su - {} -c {}", quote(user)?, quote(script)?))
}

fn sudo_service(user: &str, script: &str) -> Result<String, QuoteError> {
    Ok(format!(
        "sudo -n -u {} -H -- /bin/bash -l -c {}",
        quote(user)?,
        quote(script)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use test_case::test_case;

    #[test_case("root", Become::Auto, RunAs::Service, "su - zextras -c 'echo $HOME'" ; "auto as root uses su")]
    #[test_case("ops", Become::Auto, RunAs::Service, "sudo -n -u zextras -H -- /bin/bash -l -c 'echo $HOME'" ; "auto as non-root uses sudo")]
    #[test_case("ops", Become::Su, RunAs::Service, "su - zextras -c 'echo $HOME'" ; "explicit su")]
    #[test_case("root", Become::Sudo, RunAs::Service, "sudo -n -u zextras -H -- /bin/bash -l -c 'echo $HOME'" ; "explicit sudo")]
    #[test_case("zextras", Become::None, RunAs::Service, "echo $HOME" ; "none keeps script")]
    #[test_case("root", Become::Auto, RunAs::Root, "echo $HOME" ; "root as root")]
    #[test_case("ops", Become::Auto, RunAs::Root, "sudo -n -- /bin/bash -c 'echo $HOME'" ; "root via sudo")]
    #[test_case("ops", Become::Su, RunAs::Login, "echo $HOME" ; "login unwrapped")]
    fn wraps(login: &str, become_: Become, run_as: RunAs, expected: &str) {
        assert_eq!(
            wrap(login, become_, "zextras", run_as, "echo $HOME").unwrap(),
            expected
        );
    }

    #[test]
    fn nul_is_rejected_in_every_form() {
        for run_as in [RunAs::Login, RunAs::Service, RunAs::Root] {
            for login in ["root", "ops"] {
                assert!(wrap(login, Become::Auto, "zextras", run_as, "a\0b").is_err());
            }
        }
    }

    /// Hostile pieces the generated values are built from.
    fn hostile() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("'".to_string()),
            Just("\"".to_string()),
            Just("“".to_string()),
            Just("”".to_string()),
            Just("‘".to_string()),
            Just("’".to_string()),
            Just(";".to_string()),
            Just("&&".to_string()),
            Just("$(id)".to_string()),
            Just("`id`".to_string()),
            Just("\\".to_string()),
            Just("\n".to_string()),
            Just("\t".to_string()),
            Just("ü✓".to_string()),
            Just("-".to_string()),
            "[a-z ]{0,8}",
        ];
        prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// The wrapped command splits back into the wrapper words plus the original script.
        #[test]
        fn wrapped_script_is_recovered_exactly(script in hostile(), root in any::<bool>(), sudo in any::<bool>()) {
            let login = if root { "root" } else { "ops" };
            let become_ = if sudo { Become::Sudo } else { Become::Su };
            let line = wrap(login, become_, "zextras", RunAs::Service, &script).unwrap();
            let words = shlex::split(&line).unwrap();
            prop_assert_eq!(words.last().unwrap(), &script);
            let prefix: Vec<&str> = words[..words.len() - 1].iter().map(String::as_str).collect();
            if sudo {
                prop_assert_eq!(prefix, vec!["sudo", "-n", "-u", "zextras", "-H", "--", "/bin/bash", "-l", "-c"]);
            } else {
                prop_assert_eq!(prefix, vec!["su", "-", "zextras", "-c"]);
            }
        }
    }

    #[test]
    fn ten_kilobyte_value_is_recovered() {
        let script = format!("printf %s {}", quote(&"'\"$(x)`\n".repeat(1200)).unwrap());
        let line = wrap("ops", Become::Auto, "zextras", RunAs::Root, &script).unwrap();
        let words = shlex::split(&line).unwrap();
        assert_eq!(words.last().unwrap(), &script);
    }
}
