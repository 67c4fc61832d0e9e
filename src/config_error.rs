//! Errors in configuration files (inventory and playbook), with their place.
//!
//! Every error names the file, a 1-based line and column, the key path inside the
//! document (`hosts[2].port`, `rollout.batch[1]`; array indices are 0-based as in the
//! TOML data model) and a message, optionally with a hint. Loaders collect every semantic
//! error they find into one [`ConfigErrors`] instead of stopping at the first, so that a
//! user fixes a file in one pass. This module does not read files itself; [`Source`]
//! wraps text that a loader already read.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::de::{DeTable, DeValue};

/// A 1-based line and column (the column counts characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// One problem in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigError {
    /// The file, as the user named it (or as found in the directory they named).
    pub file: PathBuf,
    /// Where in the file; `None` when the file as a whole is the problem (unreadable).
    pub position: Option<Position>,
    /// Dotted key path (`hosts[2].port`); empty when the error concerns no key.
    pub key: String,
    /// Lowercase fragment saying what is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl ConfigError {
    /// An error about a whole file, without a position (missing, unreadable, empty dir).
    pub fn file(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.into(),
            position: None,
            key: String::new(),
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint (printed on its own line under the error).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        write!(f, ": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every error found while loading one inventory or playbook (never empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors, in the order they were found (file order, then document order).
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The text of one configuration file, for turning byte spans into errors.
pub struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    /// Byte offset of the start of each line: positions are looked up for every host
    /// of large inventories, so a scan from the top each time would be quadratic.
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Source {
            path,
            text,
            line_starts,
        }
    }

    /// The 1-based line and column of a byte offset.
    pub fn position(&self, offset: usize) -> Position {
        let offset = floor_char_boundary(self.text, offset.min(self.text.len()));
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        let column = self.text[line_start..offset].chars().count() + 1;
        Position { line, column }
    }

    /// A semantic error at `span` about the value at `key`.
    pub fn error(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.path.to_path_buf(),
            position: Some(self.position(span.start)),
            key: key.into(),
            message: message.into(),
            hint: None,
        }
    }

    /// Parses and deserializes the document into `T`. A syntax error or the first type
    /// error (unknown key, wrong type) becomes one [`ConfigError`] with the key path
    /// recovered from the error's span.
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str::<T>(self.text).map_err(|e| {
            // toml keeps the key path of a type error private: recover it from the span
            // by walking the parsed tree (only on this error path). A syntax error leaves
            // no tree and needs no key.
            let key = e
                .span()
                .and_then(|s| {
                    let tree = DeTable::parse(self.text).ok()?;
                    key_path_at(tree.get_ref(), s.start)
                })
                .unwrap_or_default();
            self.toml_error(&e, key)
        })
    }

    /// Parses a duration ("10s", "5m", "1h30m") held in a spanned string.
    pub fn duration(
        &self,
        value: &serde_spanned::Spanned<String>,
        key: &str,
    ) -> Result<std::time::Duration, ConfigError> {
        crate::duration::parse(value.get_ref()).map_err(|e| {
            self.error(
                value.span(),
                key,
                format!("invalid duration `{}`: {e}", value.get_ref()),
            )
            .with_hint("durations look like \"10s\", \"5m\" or \"1h30m\"")
        })
    }

    fn toml_error(&self, e: &toml::de::Error, key: String) -> ConfigError {
        let at = e.span().map_or(0, |s| s.start);
        // The line of the error: typographic quotes there (a word processor or chat
        // client "improved" the file) are the likely cause, whatever toml says.
        let at = floor_char_boundary(self.text, at.min(self.text.len()));
        let start = self.text[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = self.text[at..]
            .find('\n')
            .map_or(self.text.len(), |i| at + i);
        let curly = self.text[start..end]
            .chars()
            .find(|c| matches!(c, '\u{201C}' | '\u{201D}' | '\u{2018}' | '\u{2019}'));
        ConfigError {
            file: self.path.to_path_buf(),
            position: Some(self.position(at)),
            key,
            message: e.message().trim_end().to_owned(),
            hint: curly.map(|c| {
                format!(
                    "this line has a typographic quote `{c}`: TOML needs straight quotes (\"…\" or '…'); retype them in a plain-text editor"
                )
            }),
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The key path of the innermost key or value whose span holds `offset`.
fn key_path_at(table: &DeTable<'_>, offset: usize) -> Option<String> {
    fn in_table(table: &DeTable<'_>, offset: usize, path: &str) -> Option<String> {
        for (k, v) in table.iter() {
            let here = join_key(path, k.get_ref());
            if k.span().contains(&offset) {
                return Some(here);
            }
            if let Some(found) = in_value(v.get_ref(), offset, &here) {
                return Some(found);
            }
            if v.span().contains(&offset) {
                return Some(here);
            }
        }
        None
    }
    fn in_value(value: &DeValue<'_>, offset: usize, path: &str) -> Option<String> {
        match value {
            DeValue::Table(t) => in_table(t, offset, path),
            DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                let here = format!("{path}[{i}]");
                in_value(item.get_ref(), offset, &here)
                    .or_else(|| item.span().contains(&offset).then_some(here))
            }),
            _ => None,
        }
    }
    in_table(table, offset, "")
}

/// `a` + `b` → `a.b`; keys that are not bare TOML keys are quoted.
pub fn join_key(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// A string value that must not be blank: trimmed, or an error at its place.
pub fn non_empty(
    src: &Source<'_>,
    value: &serde_spanned::Spanned<String>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    let v = value.get_ref().trim();
    if v.is_empty() {
        errors.push(src.error(value.span(), key, "must not be empty"));
        None
    } else {
        Some(v.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indoc::indoc;
    use test_case::test_case;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only deserialized to provoke errors")]
    struct Doc {
        #[serde(default)]
        hosts: Vec<H>,
        #[serde(default)]
        defaults: Option<H>,
    }
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only deserialized to provoke errors")]
    struct H {
        name: Option<String>,
        port: Option<u16>,
    }

    #[test_case(indoc! {r#"
        [[hosts]]
        name = "a"
        [[hosts]]
        name = "b"
        port = "22"
    "#}, "f.toml:5:8: hosts[1].port: invalid type: string \"22\", expected u16"; "type error in second host")]
    #[test_case(indoc! {r#"
        [defaults]
        colour = 1
    "#}, "f.toml:2:1: defaults.colour: unknown field `colour`, expected `name` or `port`"; "unknown key")]
    #[test_case("[defaults\n", "f.toml:1:10: unclosed table, expected `]`"; "syntax error")]
    fn toml_errors_carry_place_and_key(text: &str, expected: &str) {
        let src = Source::new(Path::new("f.toml"), text);
        let err = src.deserialize::<Doc>().unwrap_err();
        assert_eq!(err.to_string(), expected);
    }

    /// Typographic quotes are named at their own line, with the fix.
    #[test]
    fn curly_quotes_are_pointed_out_at_their_line() {
        let text = "a = \"x\"\nb = \u{201C}y\u{201D}\n";
        let err = Source::new(Path::new("f.toml"), text)
            .deserialize::<toml::Table>()
            .unwrap_err();
        assert_eq!(err.position.map(|p| p.line), Some(2));
        assert!(
            err.hint
                .as_deref()
                .is_some_and(|h| h.contains("typographic quote `\u{201C}`")),
            "{err:?}"
        );
        let err = Source::new(Path::new("f.toml"), "a = [\n")
            .deserialize::<toml::Table>()
            .unwrap_err();
        assert_eq!(err.hint, None);
    }

    #[test]
    fn position_counts_characters_not_bytes() {
        let src = Source::new(Path::new("f"), "a = \"é\"\nb = 1");
        assert_eq!(src.position(0), Position { line: 1, column: 1 });
        assert_eq!(src.position(9), Position { line: 2, column: 1 });
        assert_eq!(src.position(7), Position { line: 1, column: 7 });
    }

    #[test]
    fn display_with_hint_and_without_position() {
        let e = ConfigError::file("x.toml", "cannot read `x.toml`: gone").with_hint("check it");
        assert_eq!(
            e.to_string(),
            "x.toml: cannot read `x.toml`: gone\n  hint: check it"
        );
    }
}
