//! The one quoting function for every remote command (see docs/remote-shell.md).
//!
//! POSIX single-quote style: a word made only of characters no shell treats specially
//! stays bare, anything else is wrapped in `'…'` with each `'` written as `'\''`. NUL
//! cannot travel through an SSH exec string or a C argv, so it is rejected rather than
//! silently truncated. Nothing here knows about users or `su`/`sudo` (that is `become_`).

use thiserror::Error;

/// Why a value could not be quoted for the remote shell.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuoteError {
    /// The value holds a NUL byte, which no shell argument can carry.
    #[error("value contains a NUL byte at offset {offset} (a shell argument cannot carry NUL)")]
    Nul {
        /// Byte offset of the first NUL.
        offset: usize,
    },
}

/// Characters that never need quoting in any position of a POSIX shell word.
///
/// `=` is left out (a bare `a=b` in command position is an assignment) and so is `~`
/// (tilde expansion at the start of a word).
fn is_bare_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ',' | ':' | '@' | '%' | '+')
}

/// Quotes one argument for a POSIX shell so that it arrives as exactly `arg`.
///
/// Safe words stay bare (`zmprov` → `zmprov`); the empty string becomes `''`.
pub fn quote(arg: &str) -> Result<String, QuoteError> {
    if let Some(offset) = arg.find('\0') {
        return Err(QuoteError::Nul { offset });
    }
    if !arg.is_empty() && arg.chars().all(is_bare_safe) {
        return Ok(arg.to_owned());
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            // Close the quote, add an escaped quote, reopen.
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Ok(out)
}

/// Quotes every element of `argv` and joins them with single spaces.
pub fn command_line<S: AsRef<str>>(argv: &[S]) -> Result<String, QuoteError> {
    let parts = argv
        .iter()
        .map(|a| quote(a.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::process::Command;
    use test_case::test_case;

    #[test_case("zmprov", "zmprov" ; "bare word")]
    #[test_case("", "''" ; "empty")]
    #[test_case("it's", r"'it'\''s'" ; "single quote")]
    #[test_case("a b", "'a b'" ; "space")]
    #[test_case("$(id)", "'$(id)'" ; "command substitution")]
    #[test_case("a=b", "'a=b'" ; "assignment looking")]
    #[test_case("~root", "'~root'" ; "tilde")]
    #[test_case("-n", "-n" ; "leading dash stays a word")]
    #[test_case("“curly”", "'“curly”'" ; "curly quotes")]
    fn quotes(input: &str, expected: &str) {
        assert_eq!(quote(input).unwrap(), expected);
    }

    #[test]
    fn nul_is_rejected_with_its_offset() {
        let err = quote("ab\0c").unwrap_err();
        assert_eq!(err, QuoteError::Nul { offset: 2 });
        assert!(err.to_string().contains("NUL"));
        assert!(command_line(&["ok", "x\0"]).is_err());
    }

    #[test]
    fn command_line_joins_quoted_words() {
        assert_eq!(
            command_line(&["printf", "%s\n", "a'b"]).unwrap(),
            "printf '%s\n' 'a'\\''b'"
        );
    }

    /// Runs `printf %s QUOTED` through the local /bin/sh and returns what it printed.
    fn sh_roundtrip(value: &str) -> Vec<u8> {
        let script = format!("printf %s {}", quote(value).unwrap());
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(out.status.success(), "sh failed for {script:?}: {out:?}");
        out.stdout
    }

    #[test]
    fn hostile_values_survive_a_real_shell() {
        for v in [
            "'",
            "\"",
            "“”‘’",
            "; rm -rf /",
            "a && b",
            "$(id)",
            "`id`",
            "\\",
            "a\nb",
            "\t",
            "ünïcödé ✓",
            "-e",
            "'\\''",
            "${HOME}",
            "*",
            "!",
            "#",
        ] {
            assert_eq!(sh_roundtrip(v), v.as_bytes(), "value {v:?}");
        }
        let big = "x'y\"z$".repeat(2000);
        assert_eq!(sh_roundtrip(&big), big.as_bytes());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_value_round_trips_through_sh(v in "[^\u{0}]{0,64}") {
            prop_assert_eq!(sh_roundtrip(&v), v.as_bytes());
        }

        #[test]
        fn any_value_splits_back_with_shlex(v in "[^\u{0}]{0,200}") {
            let line = command_line(&["printf", "%s", &v]).unwrap();
            let words = shlex::split(&line).unwrap();
            prop_assert_eq!(words, vec!["printf".to_string(), "%s".to_string(), v]);
        }
    }
}
