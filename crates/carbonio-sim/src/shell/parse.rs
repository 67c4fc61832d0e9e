//! Parser for the remote-shell dialect of docs/remote-shell.md: a strict subset of POSIX
//! sh (lists, `&&`/`||`, pipelines, quoting, `$VAR`/`${VAR}`/`$?`/`$(…)`, assignments,
//! simple redirections). Anything outside the subset is a syntax error, never guessed at.

use thiserror::Error;

/// A parse failure; printed as `sh: 1: Syntax error: <msg>`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct SyntaxError(pub String);

/// A list of and-or lists, run in sequence.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script(pub Vec<AndOr>);

/// `a && b || c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AndOr {
    pub first: Pipeline,
    pub rest: Vec<(Connector, Pipeline)>,
}

/// `&&` or `||`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connector {
    And,
    Or,
}

/// `a | b | c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline(pub Vec<Command>);

/// A simple command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Command {
    pub assigns: Vec<(String, Word)>,
    pub words: Vec<Word>,
    pub redirs: Vec<Redir>,
}

/// A word: concatenated parts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Word(pub Vec<Part>);

/// One piece of a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text (never field-split).
    Lit { text: String, quoted: bool },
    /// `$NAME`, `${NAME}`, `$?`, `$$`, `$0`…
    Var { name: String, quoted: bool },
    /// `${NAME#PATTERN}`, `${NAME##…}`, `${NAME%…}`, `${NAME%%…}` (the pattern literal:
    /// no expansions inside it).
    Trimmed {
        name: String,
        trim: super::pattern::Trim,
        pattern: String,
        quoted: bool,
    },
    /// `$(…)`.
    Sub { script: Script, quoted: bool },
}

/// A redirection of descriptor `fd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redir {
    pub fd: u32,
    pub op: RedirOp,
}

/// What a redirection does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirOp {
    /// `>FILE`
    Out(Word),
    /// `>>FILE`
    Append(Word),
    /// `<FILE`
    In(Word),
    /// `N>&M`
    Dup(u32),
}

const RESERVED: &[&str] = &[
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac", "{",
    "}", "!", "function", "[[", "]]",
];

/// Parses a whole script.
pub fn parse(src: &str) -> Result<Script, SyntaxError> {
    let mut p = Parser {
        s: src.chars().collect(),
        i: 0,
    };
    let script = p.list(false)?;
    if p.i < p.s.len() {
        return Err(p.unexpected());
    }
    Ok(script)
}

struct Parser {
    s: Vec<char>,
    i: usize,
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.s.get(self.i + k).copied()
    }

    fn starts(&self, t: &str) -> bool {
        t.chars()
            .enumerate()
            .all(|(k, c)| self.peek_at(k) == Some(c))
    }

    fn skip_blanks(&mut self) {
        loop {
            match self.peek() {
                Some(' ' | '\t') => self.i += 1,
                Some('\\') if self.peek_at(1) == Some('\n') => self.i += 2,
                Some('#') => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn skip_blanks_newlines(&mut self) {
        loop {
            self.skip_blanks();
            if self.peek() == Some('\n') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn unexpected(&self) -> SyntaxError {
        match self.peek() {
            None => SyntaxError("end of file unexpected".into()),
            Some(_) => {
                let tok = if self.starts("&&") {
                    "&&".to_string()
                } else if self.starts("||") {
                    "||".to_string()
                } else if self.starts(";;") {
                    ";;".to_string()
                } else {
                    self.peek().map(String::from).unwrap_or_default()
                };
                let tok = if tok == "\n" {
                    "newline".to_string()
                } else {
                    format!("\"{tok}\"")
                };
                SyntaxError(format!("{tok} unexpected"))
            }
        }
    }

    fn list(&mut self, in_sub: bool) -> Result<Script, SyntaxError> {
        let mut items = Vec::new();
        loop {
            self.skip_blanks_newlines();
            match self.peek() {
                None => break,
                Some(')') if in_sub => break,
                _ => {}
            }
            items.push(self.and_or()?);
            self.skip_blanks();
            match self.peek() {
                Some(';') if !self.starts(";;") => self.i += 1,
                Some('\n') => self.i += 1,
                None => break,
                Some(')') if in_sub => break,
                Some('&') => return Err(SyntaxError("\"&\" (background jobs) unsupported".into())),
                _ => return Err(self.unexpected()),
            }
        }
        Ok(Script(items))
    }

    fn and_or(&mut self) -> Result<AndOr, SyntaxError> {
        let first = self.pipeline()?;
        let mut rest = Vec::new();
        loop {
            self.skip_blanks();
            let c = if self.starts("&&") {
                Connector::And
            } else if self.starts("||") {
                Connector::Or
            } else {
                break;
            };
            self.i += 2;
            self.skip_blanks_newlines();
            rest.push((c, self.pipeline()?));
        }
        Ok(AndOr { first, rest })
    }

    fn pipeline(&mut self) -> Result<Pipeline, SyntaxError> {
        let mut cmds = vec![self.command()?];
        loop {
            self.skip_blanks();
            if self.peek() == Some('|') && !self.starts("||") {
                self.i += 1;
                self.skip_blanks_newlines();
                cmds.push(self.command()?);
            } else {
                break;
            }
        }
        Ok(Pipeline(cmds))
    }

    fn command(&mut self) -> Result<Command, SyntaxError> {
        let mut cmd = Command::default();
        loop {
            self.skip_blanks();
            match self.peek() {
                None | Some(';' | '\n' | '&' | '|' | ')') => break,
                Some('(') => return Err(self.unexpected()),
                Some('<' | '>') => {
                    let r = self.redir(None)?;
                    cmd.redirs.push(r);
                    continue;
                }
                Some(c) if c.is_ascii_digit() => {
                    let mut k = 0;
                    while self.peek_at(k).is_some_and(|c| c.is_ascii_digit()) {
                        k += 1;
                    }
                    if matches!(self.peek_at(k), Some('<' | '>')) {
                        let fd: String = self.s[self.i..self.i + k].iter().collect();
                        self.i += k;
                        let fd = fd
                            .parse()
                            .map_err(|_| SyntaxError("Bad fd number".into()))?;
                        let r = self.redir(Some(fd))?;
                        cmd.redirs.push(r);
                        continue;
                    }
                }
                _ => {}
            }
            let start = self.i;
            let word = self.word()?;
            if cmd.words.is_empty() {
                if let Some((name, value)) = split_assignment(&word) {
                    cmd.assigns.push((name, value));
                    continue;
                }
                let raw: String = self.s[start..self.i].iter().collect();
                if RESERVED.contains(&raw.as_str()) {
                    return Err(SyntaxError(format!("\"{raw}\" unsupported")));
                }
            }
            cmd.words.push(word);
        }
        if cmd.words.is_empty() && cmd.assigns.is_empty() && cmd.redirs.is_empty() {
            return Err(self.unexpected());
        }
        Ok(cmd)
    }

    fn redir(&mut self, fd: Option<u32>) -> Result<Redir, SyntaxError> {
        let c = self.peek().expect("caller saw < or >");
        self.i += 1;
        if c == '<' {
            if matches!(self.peek(), Some('<' | '&' | '>')) {
                return Err(SyntaxError(format!(
                    "\"<{}\" unsupported",
                    self.peek().unwrap_or(' ')
                )));
            }
            self.skip_blanks();
            let w = self.target_word()?;
            return Ok(Redir {
                fd: fd.unwrap_or(0),
                op: RedirOp::In(w),
            });
        }
        let fd = fd.unwrap_or(1);
        match self.peek() {
            Some('>') => {
                self.i += 1;
                self.skip_blanks();
                let w = self.target_word()?;
                Ok(Redir {
                    fd,
                    op: RedirOp::Append(w),
                })
            }
            Some('&') => {
                self.i += 1;
                let mut n = String::new();
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    n.push(d);
                    self.i += 1;
                }
                let after_ok = matches!(
                    self.peek(),
                    None | Some(' ' | '\t' | '\n' | ';' | '&' | '|' | ')')
                );
                if n.is_empty() || !after_ok {
                    return Err(SyntaxError("Bad fd number".into()));
                }
                Ok(Redir {
                    fd,
                    op: RedirOp::Dup(n.parse().map_err(|_| SyntaxError("Bad fd number".into()))?),
                })
            }
            Some('|') => Err(SyntaxError("\">|\" unsupported".into())),
            _ => {
                self.skip_blanks();
                let w = self.target_word()?;
                Ok(Redir {
                    fd,
                    op: RedirOp::Out(w),
                })
            }
        }
    }

    fn target_word(&mut self) -> Result<Word, SyntaxError> {
        match self.peek() {
            None | Some(';' | '\n' | '&' | '|' | ')' | '(' | '<' | '>') => Err(self.unexpected()),
            _ => self.word(),
        }
    }

    fn word(&mut self) -> Result<Word, SyntaxError> {
        let mut parts: Vec<Part> = Vec::new();
        let mut lit = String::new();
        let flush = |lit: &mut String, parts: &mut Vec<Part>, quoted: bool| {
            if !lit.is_empty() || quoted {
                parts.push(Part::Lit {
                    text: std::mem::take(lit),
                    quoted,
                });
            }
        };
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')' => break,
                '\'' => {
                    flush(&mut lit, &mut parts, false);
                    self.i += 1;
                    let mut q = String::new();
                    loop {
                        match self.peek() {
                            None => return Err(SyntaxError("Unterminated quoted string".into())),
                            Some('\'') => {
                                self.i += 1;
                                break;
                            }
                            Some(ch) => {
                                q.push(ch);
                                self.i += 1;
                            }
                        }
                    }
                    parts.push(Part::Lit {
                        text: q,
                        quoted: true,
                    });
                }
                '"' => {
                    flush(&mut lit, &mut parts, false);
                    self.i += 1;
                    self.double_quoted(&mut parts)?;
                }
                '\\' => {
                    self.i += 1;
                    match self.peek() {
                        None => lit.push('\\'),
                        Some('\n') => self.i += 1,
                        Some(ch) => {
                            flush(&mut lit, &mut parts, false);
                            parts.push(Part::Lit {
                                text: ch.to_string(),
                                quoted: true,
                            });
                            self.i += 1;
                        }
                    }
                }
                '$' => {
                    if let Some(p) = self.dollar(false)? {
                        flush(&mut lit, &mut parts, false);
                        parts.push(p);
                    } else {
                        lit.push('$');
                    }
                }
                '`' => {
                    return Err(SyntaxError(
                        "\"`\" (backquote substitution) unsupported".into(),
                    ));
                }
                _ => {
                    lit.push(c);
                    self.i += 1;
                }
            }
        }
        flush(&mut lit, &mut parts, false);
        Ok(Word(parts))
    }

    fn double_quoted(&mut self, parts: &mut Vec<Part>) -> Result<(), SyntaxError> {
        let mut lit = String::new();
        // An empty "" still makes a (quoted, empty) part.
        let mut pushed_any = false;
        loop {
            match self.peek() {
                None => return Err(SyntaxError("Unterminated quoted string".into())),
                Some('"') => {
                    self.i += 1;
                    break;
                }
                Some('\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(c @ ('"' | '\\' | '$' | '`')) => {
                            lit.push(c);
                            self.i += 1;
                        }
                        Some('\n') => self.i += 1,
                        _ => lit.push('\\'),
                    }
                }
                Some('$') => {
                    if let Some(p) = self.dollar(true)? {
                        if !lit.is_empty() {
                            parts.push(Part::Lit {
                                text: std::mem::take(&mut lit),
                                quoted: true,
                            });
                        }
                        parts.push(p);
                        pushed_any = true;
                    } else {
                        lit.push('$');
                    }
                }
                Some('`') => {
                    return Err(SyntaxError(
                        "\"`\" (backquote substitution) unsupported".into(),
                    ));
                }
                Some(c) => {
                    lit.push(c);
                    self.i += 1;
                }
            }
        }
        if !lit.is_empty() || !pushed_any {
            parts.push(Part::Lit {
                text: lit,
                quoted: true,
            });
        }
        Ok(())
    }

    /// At a `$`: returns the expansion, or None for a literal `$` (cursor moved past it).
    fn dollar(&mut self, quoted: bool) -> Result<Option<Part>, SyntaxError> {
        self.i += 1;
        match self.peek() {
            Some('(') => {
                if self.peek_at(1) == Some('(') {
                    return Err(SyntaxError(
                        "\"$((\" (arithmetic expansion) unsupported".into(),
                    ));
                }
                self.i += 1;
                let script = self.list(true)?;
                if self.peek() != Some(')') {
                    return Err(SyntaxError(
                        "end of file unexpected (expecting \")\")".into(),
                    ));
                }
                self.i += 1;
                Ok(Some(Part::Sub { script, quoted }))
            }
            Some('{') => {
                self.i += 1;
                let mut name = String::new();
                while let Some(c) = self.peek().filter(|c| *c != '}') {
                    name.push(c);
                    self.i += 1;
                }
                if self.peek() != Some('}') {
                    return Err(SyntaxError("Missing '}'".into()));
                }
                self.i += 1;
                // `NAME#…`/`NAME%…`: split at the first operator after a valid name.
                let op_at = name.find(['#', '%']).filter(|&k| {
                    k > 0
                        && name[..k].chars().next().is_some_and(is_name_start)
                        && name[..k].chars().all(is_name_char)
                });
                if let Some(k) = op_at {
                    use super::pattern::Trim;
                    let (var, rest) = name.split_at(k);
                    let (trim, pattern) = if let Some(p) = rest.strip_prefix("##") {
                        (Trim::LongestPrefix, p)
                    } else if let Some(p) = rest.strip_prefix("%%") {
                        (Trim::LongestSuffix, p)
                    } else if let Some(p) = rest.strip_prefix('#') {
                        (Trim::ShortestPrefix, p)
                    } else {
                        (Trim::ShortestSuffix, &rest[1..])
                    };
                    if pattern.contains(['$', '`', '"', '\'']) {
                        return Err(SyntaxError(
                            "expansions or quotes inside ${VAR#PATTERN} are not emulated".into(),
                        ));
                    }
                    return Ok(Some(Part::Trimmed {
                        name: var.to_string(),
                        trim,
                        pattern: pattern.to_string(),
                        quoted,
                    }));
                }
                let valid = (name.chars().next().is_some_and(is_name_start)
                    && name.chars().all(is_name_char))
                    || matches!(name.as_str(), "?" | "$" | "#")
                    || (!name.is_empty() && name.chars().all(|c| c.is_ascii_digit()));
                if !valid {
                    return Err(SyntaxError("Bad substitution".into()));
                }
                Ok(Some(Part::Var { name, quoted }))
            }
            Some(c @ ('?' | '$' | '#')) => {
                self.i += 1;
                Ok(Some(Part::Var {
                    name: c.to_string(),
                    quoted,
                }))
            }
            Some(c) if c.is_ascii_digit() => {
                self.i += 1;
                Ok(Some(Part::Var {
                    name: c.to_string(),
                    quoted,
                }))
            }
            Some(c) if is_name_start(c) => {
                let mut name = String::new();
                while let Some(c) = self.peek().filter(|c| is_name_char(*c)) {
                    name.push(c);
                    self.i += 1;
                }
                Ok(Some(Part::Var { name, quoted }))
            }
            Some('@' | '*' | '!' | '-') => Err(SyntaxError("special parameter unsupported".into())),
            _ => Ok(None),
        }
    }
}

/// `NAME=value` at the start of a command (the name part must be unquoted literal text).
fn split_assignment(w: &Word) -> Option<(String, Word)> {
    let Some(Part::Lit {
        text,
        quoted: false,
    }) = w.0.first()
    else {
        return None;
    };
    let eq = text.find('=')?;
    let name = &text[..eq];
    if !(name.chars().next().is_some_and(is_name_start) && name.chars().all(is_name_char)) {
        return None;
    }
    let mut rest = Vec::new();
    let tail = &text[eq + 1..];
    if !tail.is_empty() {
        rest.push(Part::Lit {
            text: tail.to_string(),
            quoted: false,
        });
    }
    rest.extend(w.0[1..].iter().cloned());
    Some((name.to_string(), Word(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Part {
        Part::Lit {
            text: s.into(),
            quoted: true,
        }
    }

    #[test]
    fn tool_quoting_concatenates() {
        let s = parse("echo 'a'\\''b'").unwrap();
        let cmd = &s.0[0].first.0[0];
        assert_eq!(cmd.words[1].0, vec![lit("a"), lit("'"), lit("b")]);
    }

    #[test]
    fn lists_pipes_and_redirs() {
        let s = parse("a; b && c || d | e 2>&1 >/dev/null\nf").unwrap();
        assert_eq!(s.0.len(), 3);
        assert_eq!(s.0[1].rest.len(), 2);
        let e = &s.0[1].rest[1].1.0[1];
        assert_eq!(
            e.redirs[0],
            Redir {
                fd: 2,
                op: RedirOp::Dup(1)
            }
        );
        assert!(matches!(e.redirs[1].op, RedirOp::Out(_)));
    }

    #[test]
    fn assignment_with_substitution() {
        let s = parse("h=$(zmhostname); echo \"$h\"").unwrap();
        let c = &s.0[0].first.0[0];
        assert_eq!(c.assigns[0].0, "h");
        assert!(matches!(c.assigns[0].1.0[0], Part::Sub { .. }));
    }

    #[test]
    fn rejects_what_it_does_not_support() {
        for (src, msg) in [
            ("echo 'abc", "Unterminated quoted string"),
            ("echo \"abc", "Unterminated quoted string"),
            ("(echo a)", "\"(\" unexpected"),
            ("; echo", "\";\" unexpected"),
            ("echo a &&", "end of file unexpected"),
            ("echo `id`", "\"`\" (backquote substitution) unsupported"),
            ("sleep 1 &", "\"&\" (background jobs) unsupported"),
            ("cat <<EOF", "\"<<\" unsupported"),
            ("if true; then echo; fi", "\"if\" unsupported"),
            ("echo ${a:-b}", "Bad substitution"),
            (
                "echo $((1+1))",
                "\"$((\" (arithmetic expansion) unsupported",
            ),
            ("echo $(echo a", "end of file unexpected (expecting \")\")"),
        ] {
            assert_eq!(parse(src).unwrap_err().0, msg, "{src}");
        }
    }
}
