//! `postconf [-h] PARAM...` and `postconf -M service/type`, answering from the node's
//! EFFECTIVE Postfix config (what zmconfigd rendered at the last start), not from LDAP.

use super::Proc;

/// `postconf ARGS` (the real binary; the `/opt/zextras/bin` wrapper calls it via sudo).
pub async fn postconf(args: Vec<String>, p: &mut Proc) -> i32 {
    let Some(pf) = p.node.state().postfix.clone() else {
        p.io.stdout.line("Error: postfix not installed").await;
        return 1;
    };
    let (mut value_only, mut master) = (false, false);
    let mut names = Vec::new();
    for a in args {
        match a.as_str() {
            "-h" => value_only = true,
            "-M" => master = true,
            "-n" | "-c" => {}
            s if s.starts_with('-') => {
                p.io.stderr
                    .line(format!(
                        "postconf: invalid option -- '{}'",
                        s.trim_start_matches('-')
                    ))
                    .await;
                return 1;
            }
            _ => names.push(a),
        }
    }
    let mut out = String::new();
    if master {
        for e in &pf.master {
            let key = format!("{}/{}", e.name, e.kind);
            if names.is_empty() || names.iter().any(|n| *n == key || *n == e.name) {
                out.push_str(&e.render());
                out.push('\n');
            }
        }
        p.io.stdout.write(out).await;
        return 0;
    }
    let mut warnings = String::new();
    let list: Vec<String> = if names.is_empty() {
        pf.params.keys().cloned().collect()
    } else {
        names
    };
    for n in list {
        match pf.params.get(&n) {
            Some(v) if value_only => out.push_str(&format!("{v}\n")),
            Some(v) if v.is_empty() => out.push_str(&format!("{n} =\n")),
            Some(v) => out.push_str(&format!("{n} = {v}\n")),
            None => warnings.push_str(&format!("postconf: warning: {n}: unknown parameter\n")),
        }
    }
    p.io.stdout.write(out).await;
    p.io.stderr.write(warnings).await;
    0
}
