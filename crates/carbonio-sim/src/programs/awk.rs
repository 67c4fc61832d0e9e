//! `awk`: the one awk program the tool sends, the gather's file pass ([`FILE_PASS`]),
//! rendered in Rust over the node's virtual files. Any other program is refused (exit 2), the way the other emulated programs
//! refuse options they do not model. `file_pass_matches_the_machines_awk` runs the same
//! files through this rendition and through the machine's awk and compares the output.

use super::Proc;

/// The gather's file pass, verbatim: the tool sends this text (carbonio-fleet's
/// `carbonio::gather::FILE_PASS` includes the same file), and any other program is
/// refused, so a change to the program that this rendition does not follow fails the
/// tests instead of passing on stale emulation.
pub const FILE_PASS: &str = include_str!("../../../../src/carbonio/file_pass.awk");

/// `awk -v NAME=VALUE... PROGRAM FILE...`.
pub async fn awk(args: Vec<String>, p: &mut Proc) -> i32 {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut it = args.into_iter();
    let mut program = None;
    while let Some(a) = it.next() {
        if a == "-v" {
            let Some(assign) = it.next() else {
                p.io.stderr
                    .line("awk: option requires an argument -- v")
                    .await;
                return 2;
            };
            let (k, v) = assign.split_once('=').unwrap_or((assign.as_str(), ""));
            vars.push((k.to_string(), v.to_string()));
        } else {
            program = Some(a);
            break;
        }
    }
    if program.as_deref() != Some(FILE_PASS) {
        p.io.stderr
            .line("awk: only the gather's file pass is emulated")
            .await;
        return 2;
    }
    let files: Vec<Option<String>> = {
        let st = p.node.state();
        it.map(|f| {
            if f == "/dev/null" {
                Some(String::new())
            } else {
                st.files
                    .get(&f)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
            }
        })
        .collect()
    };
    let var = |name: &str| {
        vars.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    // awk's truth of a string that looks like a number: its value.
    let zimbra = var("z").parse::<f64>().is_ok_and(|z| z != 0.0);
    let out = file_pass(var("m"), zimbra, &files);
    p.io.stdout.write(out).await;
    0
}

/// The lines `getline` reads: split at `\n` only (a `\r` stays in the line).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive('\n')
        .map(|l| l.strip_suffix('\n').unwrap_or(l))
}

/// What [`FILE_PASS`] prints for these files (`None`: cannot be opened), `m` being the
/// marker prefix and `zimbra` the `z` variable.
pub fn file_pass(m: &str, zimbra: bool, files: &[Option<String>]) -> String {
    let file = |i: usize| files.get(i).and_then(|f| f.as_deref());
    let mut o = String::new();
    let put = |o: &mut String, l: &str| {
        o.push_str(l);
        o.push('\n');
    };

    put(&mut o, &format!("{m} version"));
    let status = match file(0) {
        None => 2,
        Some(text) => {
            let mut s = i32::from(zimbra);
            for (k, l) in lines(text).enumerate() {
                if zimbra {
                    if l.contains("INSTALLED zimbra-core") {
                        put(&mut o, l);
                        s = 0;
                    }
                } else if k == 0 {
                    put(&mut o, l);
                }
            }
            s
        }
    };
    put(&mut o, &format!("{m} rc {status}"));

    put(&mut o, &format!("{m} hostname"));
    let (status, host) = match file(1) {
        None => (2, String::new()),
        Some(text) => {
            let mut t: Option<String> = None;
            for l in lines(text) {
                if let Some(t) = &mut t {
                    t.push('\n');
                    t.push_str(l);
                    break;
                }
                if l.contains("name=\"zimbra_server_hostname\"")
                    && let Some(i) = l.find("zimbra_server_hostname")
                {
                    t = Some(l[i + 22..].to_string());
                }
            }
            match t {
                None => (1, String::new()),
                Some(mut t) => {
                    if let Some(i) = t.find("<value>") {
                        t = t[i + 7..].to_string();
                    }
                    if let Some(i) = t.find("</value>") {
                        t.truncate(i);
                    }
                    if let Some(i) = t.find([' ', '\t', '\n', '\r', '\x0c']) {
                        t.truncate(i);
                    }
                    (0, t)
                }
            }
        }
    };
    put(&mut o, &host);
    put(&mut o, &format!("{m} rc {status}"));

    let active = entry(&mut o, m, "master", file(2), true);
    let template = entry(&mut o, m, "template", file(3), false);
    put(&mut o, &format!("{m} spawn"));
    put(&mut o, &format!("spawn {active}"));
    put(&mut o, &format!("spawn {template}"));
    put(&mut o, &format!("{m} rc 0"));

    put(&mut o, &format!("{m} maillog"));
    let (status, head) = match file(4) {
        None => (2, None),
        Some(text) => {
            let mut s = 1;
            let mut head = None;
            for l in lines(text) {
                head.get_or_insert(l);
                if l.contains(": reload -- version") || l.contains(": daemon started -- version") {
                    put(&mut o, l);
                    s = 0;
                }
            }
            (s, head)
        }
    };
    put(&mut o, &format!("{m} rc {status}"));
    put(&mut o, &format!("{m} loghead"));
    if let Some(h) = head {
        put(&mut o, h);
    }
    put(&mut o, &format!("{m} rc {}", i32::from(status == 2)));

    let host = if !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        host
    } else {
        String::new()
    };
    let split = |r: &str| -> (String, String) {
        let u = r.split(':').next().unwrap_or("").to_string();
        let g = r.split_once(':').map_or(r, |(_, g)| g).to_string();
        (u, g)
    };
    let (ua, ga) = split(&active);
    let (ub, gb) = split(&template);
    put(&mut o, &format!("{host}/{ua}/{ub}/{ga}/{gb}"));
    o
}

/// The file pass's `entry()`: prints the file's `policy` lines with three lines of
/// context (`--` between groups) as a section, and returns the `user=` value of the
/// uncommented `policy unix` entry (with `active == false`, else of the commented one).
fn entry(o: &mut String, m: &str, name: &str, text: Option<&str>, active: bool) -> String {
    o.push_str(&format!("{m} {name}\n"));
    let mut status = 1;
    let (mut e0, mut e1) = (String::new(), String::new());
    let Some(text) = text else {
        o.push_str(&format!("{m} rc 2\n"));
        return String::new();
    };
    let (mut last, mut ctx) = (0usize, 0u32);
    // Which entry continuation lines extend: uncommented (false), commented (true).
    let mut slot: Option<bool> = None;
    for (i, l) in lines(text).enumerate() {
        let n = i + 1;
        if l.contains("policy") {
            if last != 0 && last != n - 1 {
                o.push_str("--\n");
            }
            o.push_str(l);
            o.push('\n');
            last = n;
            ctx = 3;
            status = 0;
        } else if ctx > 0 {
            o.push_str(l);
            o.push('\n');
            last = n;
            ctx -= 1;
        }
        let mut b = l;
        if let Some(rest) = b.strip_prefix("%%")
            && let Some(j) = rest.find("%%")
        {
            b = &rest[j + 2..];
        }
        let commented = b.starts_with('#');
        if commented {
            b = &b[1..];
        }
        if b.chars().all(|c| c == ' ' || c == '\t') {
            continue;
        }
        if b.starts_with([' ', '\t']) {
            if slot == Some(commented) {
                let e = if commented { &mut e1 } else { &mut e0 };
                e.push(' ');
                e.push_str(b);
            }
            continue;
        }
        if commented && !b.starts_with("policy") {
            continue;
        }
        slot = None;
        if is_policy_unix(b) {
            if !commented && e0.is_empty() {
                e0 = b.to_string();
                slot = Some(false);
            } else if commented && e1.is_empty() {
                e1 = b.to_string();
                slot = Some(true);
            }
        }
    }
    o.push_str(&format!("{m} rc {status}\n"));
    let e = if !active && e0.is_empty() { e1 } else { e0 };
    match e.find("user=") {
        None => String::new(),
        Some(i) => e[i + 5..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
            .collect(),
    }
}

/// `/^policy[ \t]+unix([ \t]|$)/`.
fn is_policy_unix(b: &str) -> bool {
    let Some(rest) = b.strip_prefix("policy") else {
        return false;
    };
    let trimmed = rest.trim_start_matches([' ', '\t']);
    if trimmed.len() == rest.len() {
        return false;
    }
    match trimmed.strip_prefix("unix") {
        Some(after) => after.is_empty() || after.starts_with([' ', '\t']),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARK: &str = "#cfleet-t1";

    /// Inputs that exercise every branch: a directive-prefixed template split over two
    /// lines, a commented entry above the real one, `policy` in another service's
    /// options, a `user=USER:GROUP`, a key whose value is on the next line next to a
    /// password that must never be printed, CRs, a missing file, an empty one.
    fn cases() -> Vec<(bool, Vec<Option<String>>)> {
        let lc = "<localConfig>\n  <key name=\"zimbra_ldap_password\">\n    <value>SECRET-PW</value>\n  </key>\n  <key name=\"zimbra_server_hostname\">\n    <value>mx1.example.test</value>\n  </key>\n  <key name=\"ldap_root_password\">\n    <value>SECRET-ROOT</value>\n  </key>\n</localConfig>\n";
        let master = "smtp inet n - n - - smtpd\n  -o smtpd_recipient_restrictions=check_policy_service\n  -o x=y\n#policy unix - n n - 0 spawn user=old argv=/x\n\npolicy unix - n n - 0 spawn\n  user=zextras:mail argv=/usr/bin/perl /opt/zextras/libexec/zmpostfixpolicyd\n# a comment\nrelay unix - - n - - smtp\nx unix - - n - - smtp\ny unix - - n - - smtp\nz unix - - n - - policy\n";
        let template = "%%uncomment VAR:zimbraMtaEnableSmtpdPolicyd%%policy unix - n n - 0 spawn\n%%uncomment VAR:zimbraMtaEnableSmtpdPolicyd%%  user=zimbra argv=/usr/bin/perl /opt/zextras/libexec/zmpostfixpolicyd\n";
        let log = "Jan  1 00:00:00 mx1 postfix/master[1]: daemon started -- version 3.7.11, configuration /etc/postfix\r\nJan  1 00:00:01 mx1 postfix/smtpd[2]: connect\nJan  1 00:01:00 mx1 postfix/master[1]: reload -- version 3.7.11, configuration /etc/postfix";
        let s = |x: &str| Some(x.to_string());
        vec![
            (
                false,
                vec![s("24.12.0\nextra\n"), s(lc), s(master), s(template), s(log)],
            ),
            (
                true,
                vec![
                    s(
                        "1700000000: INSTALLED zimbra-core_8.8.15.GA.3869.UBUNTU18.64_amd64.deb\nother\n",
                    ),
                    s("<key name=\"zimbra_server_hostname\"><value>bad/host name</value>\n"),
                    s("#policy unix - n n - 0 spawn\n#\tuser=nobody argv=/x\n"),
                    None,
                    s(""),
                ],
            ),
            (false, vec![None, None, None, None, None]),
        ]
    }

    #[test]
    fn passwords_never_leave_the_pass() {
        for (z, files) in cases() {
            let out = file_pass(MARK, z, &files);
            assert!(!out.contains("SECRET"), "{out}");
        }
        let (z, files) = &cases()[0];
        let out = file_pass(MARK, *z, files);
        assert!(out.contains("\nmx1.example.test\n"), "{out}");
        assert!(
            out.ends_with("\nmx1.example.test/zextras/zimbra/mail/zimbra\n"),
            "{out}"
        );
    }

    /// The rendition against the machine's awk (mawk, gawk or busybox: the program is
    /// POSIX awk), on the same files.
    #[test]
    fn file_pass_matches_the_machines_awk() {
        let dir = std::env::temp_dir().join(format!("cfleet-awk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (n, (z, files)) in cases().into_iter().enumerate() {
            let paths: Vec<String> = files
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let path = dir.join(format!("{n}-{i}"));
                    if let Some(text) = f {
                        std::fs::write(&path, text).unwrap();
                    }
                    path.display().to_string()
                })
                .collect();
            let out = std::process::Command::new("awk")
                .arg("-v")
                .arg(format!("m={MARK}"))
                .arg("-v")
                .arg(format!("z={}", u8::from(z)))
                .arg(FILE_PASS)
                .args(&paths)
                .output()
                .expect("awk (POSIX) on the test machine");
            assert!(out.status.success(), "{out:?}");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                file_pass(MARK, z, &files),
                "case {n}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
