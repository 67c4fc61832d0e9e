//! Shell pattern matching (POSIX.1 §2.13) for the `${VAR#PATTERN}` family: `*`, `?`,
//! bracket expressions with ranges, `!`/`^` negation and the classes `[:space:]`,
//! `[:alpha:]`, `[:digit:]`, `[:alnum:]`, `[:upper:]`, `[:lower:]`, `[:punct:]`; a
//! backslash quotes the next character.

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Elem {
    Char(char),
    Any,
    Star,
    Class { negated: bool, items: Vec<Item> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Char(char),
    Range(char, char),
    Named(String),
}

fn compile(pattern: &str) -> Vec<Elem> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                out.push(Elem::Char(chars[i + 1]));
                i += 2;
            }
            '*' => {
                out.push(Elem::Star);
                i += 1;
            }
            '?' => {
                out.push(Elem::Any);
                i += 1;
            }
            '[' => match bracket(&chars, i + 1) {
                Some((elem, next)) => {
                    out.push(elem);
                    i = next;
                }
                // An unclosed `[` is an ordinary character.
                None => {
                    out.push(Elem::Char('['));
                    i += 1;
                }
            },
            c => {
                out.push(Elem::Char(c));
                i += 1;
            }
        }
    }
    out
}

/// A bracket expression starting after its `[`; returns it and the index after `]`.
fn bracket(chars: &[char], mut i: usize) -> Option<(Elem, usize)> {
    let negated = matches!(chars.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    let mut first = true;
    loop {
        let c = *chars.get(i)?;
        if c == ']' && !first {
            return Some((Elem::Class { negated, items }, i + 1));
        }
        first = false;
        if c == '[' && chars.get(i + 1) == Some(&':') {
            let rest: String = chars[i + 2..].iter().collect();
            let end = rest.find(":]")?;
            items.push(Item::Named(rest[..end].to_string()));
            i += 2 + end + 2;
            continue;
        }
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|e| *e != ']') {
            items.push(Item::Range(c, chars[i + 2]));
            i += 3;
            continue;
        }
        items.push(Item::Char(c));
        i += 1;
    }
}

fn class_has(items: &[Item], c: char) -> bool {
    items.iter().any(|it| match it {
        Item::Char(x) => *x == c,
        Item::Range(a, b) => (*a..=*b).contains(&c),
        Item::Named(n) => match n.as_str() {
            "space" => c.is_whitespace(),
            "alpha" => c.is_alphabetic(),
            "digit" => c.is_ascii_digit(),
            "alnum" => c.is_alphanumeric(),
            "upper" => c.is_uppercase(),
            "lower" => c.is_lowercase(),
            "punct" => c.is_ascii_punctuation(),
            _ => false,
        },
    })
}

fn matches_at(p: &[Elem], s: &[char]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((Elem::Star, rest)) => (0..=s.len()).any(|k| matches_at(rest, &s[k..])),
        Some((e, rest)) => {
            let Some((c, tail)) = s.split_first() else {
                return false;
            };
            let ok = match e {
                Elem::Char(x) => x == c,
                Elem::Any => true,
                Elem::Class { negated, items } => class_has(items, *c) != *negated,
                Elem::Star => unreachable!("handled above"),
            };
            ok && matches_at(rest, tail)
        }
    }
}

/// Whether `pattern` matches all of `text`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let s: Vec<char> = text.chars().collect();
    matches_at(&compile(pattern), &s)
}

/// Which end `${VAR#…}` (prefix) or `${VAR%…}` (suffix) removes, and how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trim {
    /// `#`: the shortest matching prefix.
    ShortestPrefix,
    /// `##`: the longest matching prefix.
    LongestPrefix,
    /// `%`: the shortest matching suffix.
    ShortestSuffix,
    /// `%%`: the longest matching suffix.
    LongestSuffix,
}

/// `value` with the part matched by `pattern` removed as `trim` says (unchanged when
/// nothing matches).
pub fn trim(value: &str, trim: Trim, pattern: &str) -> String {
    let bounds: Vec<usize> = value
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(value.len()))
        .collect();
    let prefix = |i: &usize| matches(pattern, &value[..*i]);
    let suffix = |i: &usize| matches(pattern, &value[*i..]);
    let cut = match trim {
        Trim::ShortestPrefix => bounds.iter().find(|i| prefix(i)).map(|i| &value[*i..]),
        Trim::LongestPrefix => bounds
            .iter()
            .rev()
            .find(|i| prefix(i))
            .map(|i| &value[*i..]),
        Trim::ShortestSuffix => bounds
            .iter()
            .rev()
            .find(|i| suffix(i))
            .map(|i| &value[..*i]),
        Trim::LongestSuffix => bounds.iter().find(|i| suffix(i)).map(|i| &value[..*i]),
    };
    cut.unwrap_or(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(matches("*user=", "policy unix spawn user="));
        assert!(matches("[!a-z]*", " x"));
        assert!(!matches("[!a-z]*", "x"));
        assert!(matches("[[:space:]]*", "\tuser"));
        assert!(matches("a?c", "abc"));
        assert!(matches("a\\*c", "a*c"));
        assert!(!matches("a\\*c", "abc"));
    }

    #[test]
    fn trims_as_dash_does() {
        let s = "policy unix - n n - 0 spawn user=zimbra:mail argv=/usr/bin/perl x";
        let r = trim(s, Trim::ShortestPrefix, "*user=");
        assert_eq!(r, "zimbra:mail argv=/usr/bin/perl x");
        let r = trim(&r, Trim::LongestSuffix, "[!A-Za-z0-9_.:-]*");
        assert_eq!(r, "zimbra:mail");
        assert_eq!(trim(&r, Trim::LongestSuffix, ":*"), "zimbra");
        assert_eq!(trim(&r, Trim::ShortestPrefix, "*:"), "mail");
        assert_eq!(trim("a.b.c", Trim::LongestPrefix, "*."), "c");
        assert_eq!(trim("a.b.c", Trim::ShortestSuffix, ".*"), "a.b");
        // No match: unchanged.
        assert_eq!(trim("zextras", Trim::ShortestPrefix, "*:"), "zextras");
    }
}
