//! Text that reaches a terminal. Server-supplied strings (an SMTP reply, a zmprov error,
//! a finding's evidence) end up in the summary, `plan`, `report show` and log lines; a
//! hostile node could put escape sequences in them that clear the screen or rewrite what
//! the operator reads ("ALL GOOD"). Every such output goes through [`terminal_safe`]:
//! control characters become visible escapes. Files (report.json, HTML, logs written
//! with `--log-file`) keep the exact text, escaped as their own format requires.

use std::borrow::Cow;

/// `text` with every control character but newline and tab shown as an escape
/// (`\u{1b}` for ESC, `\r` for a carriage return), so it prints as itself.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_become_visible_and_plain_text_is_untouched() {
        assert!(matches!(
            terminal_safe("mx1: 550 5.1.1\n\tok"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            terminal_safe("\u{1b}[2J\u{1b}[HALL GOOD\r\u{7}\u{9b}31m"),
            "\\u{1b}[2J\\u{1b}[HALL GOOD\\r\\u{7}\\u{9b}31m"
        );
    }
}
