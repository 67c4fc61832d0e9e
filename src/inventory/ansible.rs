//! Importing an Ansible inventory: the JSON `ansible-inventory -i INV --list` prints
//! (which covers every Ansible inventory format at once: INI, YAML, dynamic scripts and
//! plugins) becomes a TOML inventory. Mapped: groups (a host is in the groups that hold
//! it and their parents, `all` and `ungrouped` aside), `ansible_host`, `ansible_port`,
//! `ansible_user`, `ansible_ssh_private_key_file` and a `ProxyJump` in
//! `ansible_ssh_common_args`/`ansible_ssh_extra_args`. Everything else is listed as not
//! mapped, never dropped silently. Also: recognising an Ansible INI or YAML inventory
//! given where a TOML one is expected ([`looks_like_ansible`]).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The TOML text and what could not be mapped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub toml: String,
    /// `host: what` lines for the operator.
    pub not_mapped: Vec<String>,
}

/// A TOML string literal.
fn lit(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Whether a group name can be one here: a plain path component (`--split-by group`
/// writes a directory per group).
fn plain_group(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The `ProxyJump` of ssh arguments (`-J X`, `-o ProxyJump=X`), if any.
fn proxy_jump(args: &str) -> Option<String> {
    let words: Vec<&str> = args.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        let w = w.trim_matches(['\'', '"']);
        if w == "-J" {
            return words
                .get(i + 1)
                .map(|v| v.trim_matches(['\'', '"']).to_string());
        }
        let opt = w.strip_prefix("-o").unwrap_or(w);
        let opt = if opt.is_empty() {
            words.get(i + 1).map_or("", |v| v.trim_matches(['\'', '"']))
        } else {
            opt
        };
        if let Some((k, v)) = opt.split_once(['=', ' '])
            && k.eq_ignore_ascii_case("proxyjump")
        {
            return Some(v.to_string());
        }
    }
    None
}

/// Converts `ansible-inventory --list` JSON into a TOML inventory.
pub fn import(json: &str) -> Result<Imported, String> {
    let doc: Value = serde_json::from_str(json)
        .map_err(|e| format!("not `ansible-inventory --list` JSON: {e}"))?;
    let obj = doc
        .as_object()
        .ok_or("not `ansible-inventory --list` JSON: not an object")?;
    let hostvars = doc
        .pointer("/_meta/hostvars")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    // Parents of each group, and the groups directly holding each host.
    let mut parents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut direct: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut hosts: Vec<String> = Vec::new();
    let add_host = |h: &str, hosts: &mut Vec<String>| {
        if !hosts.iter().any(|x| x == h) {
            hosts.push(h.to_string());
        }
    };
    for (group, body) in obj.iter().filter(|(k, _)| *k != "_meta") {
        for child in body
            .get("children")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            parents
                .entry(child.to_string())
                .or_default()
                .insert(group.clone());
        }
        for h in body
            .get("hosts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            add_host(h, &mut hosts);
            direct
                .entry(h.to_string())
                .or_default()
                .insert(group.clone());
        }
    }
    for h in hostvars.keys() {
        add_host(h, &mut hosts);
    }
    let ancestors = |g: &str| -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo = vec![g.to_string()];
        while let Some(x) = todo.pop() {
            if out.insert(x.clone()) {
                todo.extend(parents.get(&x).into_iter().flatten().cloned());
            }
        }
        out
    };
    let mut out = Imported::default();
    let mut groups_used: BTreeSet<String> = BTreeSet::new();
    let mut body = String::new();
    for h in &hosts {
        let mut groups: BTreeSet<String> = BTreeSet::new();
        for g in direct.get(h).into_iter().flatten() {
            groups.extend(ancestors(g));
        }
        groups.retain(|g| g != "all" && g != "ungrouped");
        let (ok, bad): (Vec<String>, Vec<String>) =
            groups.into_iter().partition(|g| plain_group(g));
        for g in bad {
            out.not_mapped.push(format!(
                "{h}: group `{g}` (not a plain name: letters, digits, `-`, `_`, `.`)"
            ));
        }
        body.push_str(&format!("\n[[hosts]]\nname = {}\n", lit(h)));
        let vars = hostvars
            .get(h)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let text = |k: &str| {
            vars.get(k).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        };
        if let Some(a) = text("ansible_host") {
            body.push_str(&format!("address = {}\n", lit(&a)));
        }
        if let Some(p) = text("ansible_port") {
            match p.parse::<u16>() {
                Ok(p) if p > 0 => body.push_str(&format!("port = {p}\n")),
                _ => out
                    .not_mapped
                    .push(format!("{h}: ansible_port `{p}` (not a TCP port)")),
            }
        }
        if let Some(u) = text("ansible_user") {
            body.push_str(&format!("user = {}\n", lit(&u)));
        }
        if let Some(k) = text("ansible_ssh_private_key_file") {
            body.push_str(&format!("identity_files = [{}]\n", lit(&k)));
        }
        let ssh_args = [
            text("ansible_ssh_common_args"),
            text("ansible_ssh_extra_args"),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        if let Some(j) = proxy_jump(&ssh_args) {
            body.push_str(&format!("jump = {}\n", lit(&j)));
        }
        if !ok.is_empty() {
            let list: Vec<String> = ok.iter().map(|g| lit(g)).collect();
            body.push_str(&format!("groups = [{}]\n", list.join(", ")));
        }
        groups_used.extend(ok);
        for (k, _) in vars.iter().filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "ansible_host"
                    | "ansible_port"
                    | "ansible_user"
                    | "ansible_ssh_private_key_file"
                    | "ansible_ssh_common_args"
                    | "ansible_ssh_extra_args"
            )
        }) {
            out.not_mapped.push(format!("{h}: variable `{k}`"));
        }
    }
    let mut toml = String::from(
        "# Imported from `ansible-inventory --list` by `carbonio-fleet inventory import`.\n\
         # Review it: connection settings the import could not map are listed on stderr.\n",
    );
    for g in &groups_used {
        toml.push_str(&format!("\n[groups.{}]\n", lit(g)));
    }
    toml.push_str(&body);
    out.toml = toml;
    Ok(out)
}

/// Whether `text` (which did not parse as TOML) looks like an Ansible inventory in INI or
/// YAML form, so the error can point to the import.
pub fn looks_like_ansible(text: &str) -> bool {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .collect();
    let ini = lines
        .iter()
        .any(|l| l.contains("ansible_host=") || l.contains("ansible_user="))
        || lines
            .iter()
            .any(|l| l.starts_with('[') && l.ends_with(":children]"));
    let yaml = lines.first().is_some_and(|l| *l == "all:" || *l == "---")
        && lines.iter().any(|l| *l == "hosts:" || *l == "children:");
    ini || yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `ansible-inventory -i hosts.ini --list` prints for a small INI inventory with
    /// nested groups, host vars and a bastion.
    const LIST: &str = r#"{
        "_meta": {"hostvars": {
            "mail1": {"ansible_host": "203.0.113.10", "ansible_port": 2222, "ansible_user": "root",
                      "ansible_ssh_private_key_file": "~/.ssh/acme", "ansible_ssh_common_args": "-o ProxyJump=ops@bastion.acme.example:22",
                      "customer": "ACME"},
            "mail2": {"ansible_host": "203.0.113.11"},
            "solo": {"ansible_ssh_extra_args": "-J jump.example"}
        }},
        "all": {"children": ["ungrouped", "eu"]},
        "eu": {"children": ["acme"]},
        "acme": {"hosts": ["mail1", "mail2"]},
        "weird group": {"hosts": ["mail2"]},
        "ungrouped": {"hosts": ["solo"]}
    }"#;

    #[test]
    fn an_ansible_list_becomes_a_toml_inventory_that_loads() {
        let got = import(LIST).unwrap();
        assert!(
            got.toml.contains("[groups.\"acme\"]\n") && got.toml.contains("[groups.\"eu\"]\n"),
            "{}",
            got.toml
        );
        assert!(
            got.toml.contains(
                "name = \"mail1\"\naddress = \"203.0.113.10\"\nport = 2222\nuser = \"root\"\nidentity_files = [\"~/.ssh/acme\"]\njump = \"ops@bastion.acme.example:22\"\ngroups = [\"acme\", \"eu\"]\n"
            ),
            "{}",
            got.toml
        );
        assert!(
            got.toml
                .contains("name = \"solo\"\njump = \"jump.example\"\n"),
            "{}",
            got.toml
        );
        assert_eq!(
            got.not_mapped,
            [
                "mail1: variable `customer`",
                "mail2: group `weird group` (not a plain name: letters, digits, `-`, `_`, `.`)"
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.toml");
        std::fs::write(&path, &got.toml).unwrap();
        let inv = crate::inventory::load(&path).unwrap();
        assert_eq!(inv.hosts.len(), 3);
        assert_eq!(inv.hosts[0].port, 2222);
    }

    #[test]
    fn ansible_ini_and_yaml_are_recognised() {
        assert!(looks_like_ansible(
            "[acme]\nmail1 ansible_host=203.0.113.10\n"
        ));
        assert!(looks_like_ansible("[eu:children]\nacme\n"));
        assert!(looks_like_ansible(
            "all:\n  children:\n    acme:\n      hosts:\n        mail1:\n"
        ));
        assert!(!looks_like_ansible("[[hosts]]\nname = \"x\"\n"));
        assert!(import("[1]").is_err());
    }
}
