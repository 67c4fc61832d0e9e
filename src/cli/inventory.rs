//! `inventory list` and `inventory validate`: load, select, show. Nothing is contacted.

use std::collections::BTreeSet;
use std::io::Write;

use super::show::config_failed;
use super::{Format, InventoryArgs, InventoryImportArgs};
use crate::exit::ExitCode;
use crate::inventory::{self, Become, Host, HostKeyPolicy, Inventory};

/// `inventory list`: every selected host with its effective settings.
pub fn list(args: &InventoryArgs) -> ExitCode {
    let inv = match inventory::load(&args.inventory) {
        Ok(inv) => inv,
        Err(e) => return config_failed(&e, "inventory"),
    };
    let hosts = match inventory::select(&inv, args.limit.as_deref()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("carbonio-fleet: {e}");
            return ExitCode::Usage;
        }
    };
    let hosts = match args.shard {
        Some(shard) => inventory::shard::slice(hosts, shard),
        None => hosts,
    };
    let out = match args.format {
        Format::Human => render_table(&hosts),
        Format::Json => {
            serde_json::to_string_pretty(&hosts).expect("hosts serialize to JSON") + "\n"
        }
    };
    print_stdout(&out)
}

/// `inventory validate`: "inventory OK: ..." or every error, exit 1.
pub fn validate(args: &InventoryArgs) -> ExitCode {
    let inv = match inventory::load(&args.inventory) {
        Ok(inv) => inv,
        Err(e) => {
            if args.format == Format::Json {
                let doc = serde_json::json!({ "ok": false, "errors": e });
                print_stdout(&format!("{doc:#}\n"));
                return ExitCode::Usage;
            }
            return config_failed(&e, "inventory");
        }
    };
    let hosts = match inventory::select(&inv, args.limit.as_deref()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("carbonio-fleet: {e}");
            return ExitCode::Usage;
        }
    };
    let (groups, clusters) = counts(&inv, &hosts, args.limit.is_some());
    let warnings = missing_identity_files(&hosts);
    let out = match args.format {
        Format::Human => {
            let mut s = format!(
                "inventory OK: {} hosts, {groups} groups, {clusters} clusters\n",
                hosts.len()
            );
            for w in &warnings {
                s.push_str(&format!("warning: {w}\n"));
            }
            s
        }
        Format::Json => {
            let doc = serde_json::json!({
                "ok": true, "hosts": hosts.len(), "groups": groups, "clusters": clusters,
                "warnings": warnings,
            });
            format!("{doc:#}\n")
        }
    };
    print_stdout(&out)
}

/// Identity files the selected hosts name that do not exist (a warning, not an error:
/// ssh-agent or a password may still log the host in), one line per file with its hosts.
fn missing_identity_files(hosts: &[&Host]) -> Vec<String> {
    let mut missing: std::collections::BTreeMap<&std::path::Path, Vec<&str>> = Default::default();
    for h in hosts {
        for f in &h.identity_files {
            if !f.exists() {
                missing.entry(f.as_path()).or_default().push(&h.name);
            }
        }
    }
    missing
        .into_iter()
        .map(|(f, hs)| {
            let shown: Vec<&str> = hs.iter().take(5).copied().collect();
            let more = if hs.len() > 5 {
                format!(" and {} more", hs.len() - 5)
            } else {
                String::new()
            };
            format!(
                "identity file {} does not exist (hosts: {}{more})",
                f.display(),
                shown.join(", ")
            )
        })
        .collect()
}

/// Groups: all declared ones, or with a limit those the selected hosts belong to.
fn counts(inv: &Inventory, hosts: &[&Host], limited: bool) -> (usize, usize) {
    let groups = if limited {
        hosts
            .iter()
            .flat_map(|h| h.groups.iter())
            .collect::<BTreeSet<_>>()
            .len()
    } else {
        inv.groups.len()
    };
    let clusters = hosts
        .iter()
        .map(|h| &h.cluster)
        .collect::<BTreeSet<_>>()
        .len();
    (groups, clusters)
}

fn print_stdout(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is the reader's choice, not our failure.
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::Ok,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::Ok,
        Err(e) => {
            eprintln!("carbonio-fleet: cannot write to stdout: {e}");
            ExitCode::Usage
        }
    }
}

fn become_name(b: Become) -> &'static str {
    match b {
        Become::Auto => "auto",
        Become::Su => "su",
        Become::Sudo => "sudo",
        Become::None => "none",
    }
}

fn policy_name(p: HostKeyPolicy) -> &'static str {
    match p {
        HostKeyPolicy::Strict => "strict",
        HostKeyPolicy::AcceptNew => "accept-new",
    }
}

fn or_dash(s: String) -> String {
    if s.is_empty() { "-".to_owned() } else { s }
}

/// Aligned columns, one row per host; `-` for "none" (roles: discovered at run time).
pub fn render_table(hosts: &[&Host]) -> String {
    const HEADER: [&str; 9] = [
        "NAME",
        "ADDRESS",
        "USER",
        "BECOME",
        "CLUSTER",
        "ROLES",
        "GROUPS",
        "JUMP",
        "HOST KEYS",
    ];
    let rows: Vec<[String; 9]> = hosts
        .iter()
        .map(|h| {
            [
                h.name.clone(),
                if h.address.contains(':') {
                    format!("[{}]:{}", h.address, h.port)
                } else {
                    format!("{}:{}", h.address, h.port)
                },
                h.user.clone(),
                become_name(h.become_).to_owned(),
                h.cluster.clone(),
                or_dash(h.roles.join(",")),
                or_dash(h.groups.join(",")),
                or_dash(
                    h.jump
                        .as_ref()
                        .map(|j| format!("{}@{}:{}", j.user, j.host, j.port))
                        .unwrap_or_default(),
                ),
                policy_name(h.host_key_policy).to_owned(),
            ]
        })
        .collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                l.push_str(cell);
                l.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&HEADER);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

/// `inventory import --from-ansible`: the TOML inventory for `ansible-inventory --list`
/// JSON, checked by loading it before it is written; what could not be mapped is listed
/// on stderr.
pub fn import(a: &InventoryImportArgs) -> ExitCode {
    let from = a.from_ansible.display();
    let json = if a.from_ansible.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map(|_| s)
    } else {
        std::fs::read_to_string(&a.from_ansible)
    };
    let json = match json {
        Ok(j) => j,
        Err(e) => {
            eprintln!("carbonio-fleet: cannot read {from}: {e}");
            return ExitCode::Usage;
        }
    };
    let imported = match inventory::ansible::import(&json) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("carbonio-fleet: {from}: {e}");
            return ExitCode::Usage;
        }
    };
    // The result must load as an inventory before anyone relies on it.
    let check = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .and_then(|f| {
            std::fs::write(f.path(), &imported.toml)?;
            Ok(f)
        });
    match check.map(|f| inventory::load(f.path())) {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            eprintln!("carbonio-fleet: the imported inventory does not load:\n{e}");
            return ExitCode::Usage;
        }
        Err(e) => {
            eprintln!("carbonio-fleet: cannot check the imported inventory: {e}");
            return ExitCode::Usage;
        }
    }
    for n in &imported.not_mapped {
        eprintln!("not mapped: {n}");
    }
    match &a.out {
        None => print_stdout(&imported.toml),
        Some(path) => {
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .and_then(|mut f| f.write_all(imported.toml.as_bytes()));
            match written {
                Ok(()) => {
                    eprintln!("wrote {}", path.display());
                    ExitCode::Ok
                }
                Err(e) => {
                    eprintln!("carbonio-fleet: cannot write {}: {e}", path.display());
                    ExitCode::Usage
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::JumpSpec;
    use indoc::indoc;

    fn host(name: &str) -> Host {
        Host::for_test(name)
    }

    #[test]
    fn table_is_aligned_with_dashes_for_none() {
        let a = host("a");
        let mut b = host("mail2.acme.example");
        b.address = "2001:db8::2".into();
        b.port = 2222;
        b.user = "ops".into();
        b.become_ = Become::Sudo;
        b.cluster = "acme".into();
        b.roles = vec!["mta".into(), "mailbox".into()];
        b.groups = vec!["acme".into(), "eu".into()];
        b.jump = Some(JumpSpec {
            user: "ops".into(),
            host: "bastion".into(),
            port: 22,
        });
        b.host_key_policy = HostKeyPolicy::AcceptNew;
        assert_eq!(
            render_table(&[&a, &b]),
            indoc! {"
                NAME                ADDRESS             USER  BECOME  CLUSTER  ROLES        GROUPS   JUMP            HOST KEYS
                a                   a:22                root  auto    a        -            -        -               strict
                mail2.acme.example  [2001:db8::2]:2222  ops   sudo    acme     mta,mailbox  acme,eu  ops@bastion:22  accept-new
            "}
        );
    }
}
