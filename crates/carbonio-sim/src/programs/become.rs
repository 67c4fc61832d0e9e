//! `su`, `sudo`, `bash`, `sh`: re-enter the simulated shell as another user (or the same
//! one). Only root may `su` without a password; `sudo -n` works for root and the
//! node's sudo users and fails otherwise, as it does without a TTY.

use crate::shell::{login_env, run_script};

use super::Proc;

/// `su [-] [-s SHELL] [USER] [-c SCRIPT]`.
pub async fn su(args: Vec<String>, p: &mut Proc) -> i32 {
    let (mut login, mut script, mut target) = (false, None::<String>, None::<String>);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-" | "-l" | "--login" => login = true,
            "-s" | "--shell" => {
                if it.next().is_none() {
                    p.io.stderr
                        .line("su: option requires an argument -- 's'")
                        .await;
                    return 1;
                }
            }
            "-c" | "--command" => match it.next() {
                Some(s) => script = Some(s),
                None => {
                    p.io.stderr
                        .line("su: option requires an argument -- 'c'")
                        .await;
                    return 1;
                }
            },
            s if s.starts_with('-') => {
                p.io.stderr
                    .line(format!("su: unrecognized option '{s}'"))
                    .await;
                return 1;
            }
            _ if target.is_none() => target = Some(a),
            _ => {
                p.io.stderr
                    .line("su: extra arguments are not emulated")
                    .await;
                return 1;
            }
        }
    }
    let target = target.unwrap_or_else(|| "root".into());
    if !p.node.state().has_user(&target) {
        p.io.stderr
            .line(format!("su: user {target} does not exist or the user entry does not contain all the required fields"))
            .await;
        return 1;
    }
    if p.user != "root" {
        p.io.stderr.line("su: Authentication failure").await;
        return 1;
    }
    let env = if login {
        login_env(&p.node, &target)
    } else {
        let mut e = p.env.clone();
        let fresh = login_env(&p.node, &target);
        for k in ["HOME", "SHELL", "USER", "LOGNAME"] {
            e.insert(k.into(), fresh[k].clone());
        }
        e
    };
    let src = match script {
        Some(s) => s,
        None => String::from_utf8_lossy(&p.io.stdin.read_all().await).into_owned(),
    };
    run_script(p.node.clone(), target, env, src, p.io.clone()).await
}

/// `sudo [-n] [-u USER] [-i] [-H] [--] COMMAND ARGS...`.
pub async fn sudo(args: Vec<String>, p: &mut Proc) -> i32 {
    let (mut target, mut login, mut k) = ("root".to_string(), false, 0);
    while k < args.len() {
        match args[k].as_str() {
            "-n" | "--non-interactive" | "-H" | "--set-home" => {}
            "-i" | "--login" => login = true,
            "-u" | "--user" => {
                k += 1;
                match args.get(k) {
                    Some(u) => target = u.clone(),
                    None => {
                        p.io.stderr
                            .line("sudo: option requires an argument -- 'u'")
                            .await;
                        return 1;
                    }
                }
            }
            "--" => {
                k += 1;
                break;
            }
            s if s.starts_with('-') => {
                p.io.stderr
                    .line(format!(
                        "sudo: invalid option -- '{}'",
                        s.trim_start_matches('-')
                    ))
                    .await;
                return 1;
            }
            _ => break,
        }
        k += 1;
    }
    let command: Vec<String> = args[k.min(args.len())..].to_vec();
    let (allowed, exists) = {
        let st = p.node.state();
        // The service user's one NOPASSWD rule: Postfix's own binary as root (docs/carbonio.md
        // §4; Zimbra's `postfix` wrapper relies on the same rule).
        let postfix = format!("{}/common/sbin/postfix", st.flavour.home());
        let postfix_rule =
            p.user == st.flavour.user() && target == "root" && command.first() == Some(&postfix);
        (
            p.user == "root" || st.sudo_users.contains(&p.user) || postfix_rule,
            st.has_user(&target),
        )
    };
    if !allowed {
        p.io.stderr.line("sudo: a password is required").await;
        return 1;
    }
    if !exists {
        p.io.stderr
            .line(format!("sudo: unknown user {target}"))
            .await;
        return 1;
    }
    let env = if login {
        login_env(&p.node, &target)
    } else {
        let mut e = login_env(&p.node, &target);
        e.insert(
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
        e
    };
    let Some((prog, rest)) = command.split_first() else {
        p.io.stderr.line("usage: sudo -h | -K | -k | -V").await;
        return 1;
    };
    let path = env.get("PATH").cloned().unwrap_or_default();
    let flavour = p.node.state().flavour;
    let Some(resolved) = super::resolve(prog, &path, flavour) else {
        p.io.stderr
            .line(format!("sudo: {prog}: command not found"))
            .await;
        return 1;
    };
    let mut sub = Proc {
        node: p.node.clone(),
        user: target,
        env,
        io: p.io.clone(),
        argv0: prog.clone(),
    };
    Box::pin(super::run(resolved, rest.to_vec(), &mut sub)).await
}

/// `bash|sh [-l] [-c SCRIPT [NAME ARGS...]]`; without `-c` the script is read from stdin.
pub async fn shell(args: Vec<String>, p: &mut Proc) -> i32 {
    let (mut login, mut script) = (false, None);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-l" | "--login" => login = true,
            "-c" => {
                script = it.next();
                if script.is_none() {
                    p.io.stderr
                        .line(format!("{}: -c: option requires an argument", p.argv0))
                        .await;
                    return 2;
                }
                break;
            }
            s => {
                p.io.stderr
                    .line(format!("{}: {s}: invalid option", p.argv0))
                    .await;
                return 2;
            }
        }
    }
    let env = if login {
        login_env(&p.node, &p.user)
    } else {
        p.env.clone()
    };
    let src = match script {
        Some(s) => s,
        None => String::from_utf8_lossy(&p.io.stdin.read_all().await).into_owned(),
    };
    run_script(p.node.clone(), p.user.clone(), env, src, p.io.clone()).await
}
