//! Importing an Ansible inventory: the JSON `ansible-inventory -i INV --list` prints
//! (which covers every Ansible inventory format at once: INI, YAML, dynamic scripts and
//! plugins) becomes a TOML inventory. Mapped: groups (a host is in the groups that hold
//! it and their parents, `all` and `ungrouped` aside), `ansible_host`, `ansible_port`,
//! `ansible_user`, `ansible_ssh_private_key_file` and a `ProxyJump` in
//! `ansible_ssh_common_args`/`ansible_ssh_extra_args`; other plain (string, number,
//! boolean) variables become the host's `vars` (e.g. `customer`, which the default
//! playbook labels reports with). Everything else is listed as not mapped, never dropped
//! silently. Also: recognising an Ansible INI or YAML inventory
//! given where a TOML one is expected ([`looks_like_ansible`]).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

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
    let tree = Tree::read(obj, &hostvars);
    let mut out = Imported::default();
    let mut groups_used: BTreeSet<String> = BTreeSet::new();
    let mut body = String::new();
    for h in &tree.hosts {
        let (ok, bad): (Vec<String>, Vec<String>) =
            tree.groups_of(h).into_iter().partition(|g| plain_group(g));
        for g in bad {
            out.not_mapped.push(format!(
                "{h}: group `{g}` (not a plain name: letters, digits, `-`, `_`, `.`)"
            ));
        }
        let vars = hostvars
            .get(h)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        body.push_str(&host_table(h, &vars, &ok, &mut out.not_mapped));
        groups_used.extend(ok);
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

/// The group structure of an `ansible-inventory --list` document.
#[derive(Debug, Default)]
struct Tree {
    /// The groups that list each group among their `children`.
    parents: BTreeMap<String, BTreeSet<String>>,
    /// The groups that list each host among their `hosts`.
    direct: BTreeMap<String, BTreeSet<String>>,
    /// Every host once, in the order first met: in the groups, then in
    /// `_meta.hostvars` (a host with variables but no group).
    hosts: Vec<String>,
}

impl Tree {
    /// Reads the groups (every top-level key but `_meta`) and the hosts of `hostvars`.
    fn read(obj: &Map<String, Value>, hostvars: &Map<String, Value>) -> Tree {
        let mut tree = Tree::default();
        for (group, body) in obj.iter().filter(|(k, _)| *k != "_meta") {
            for child in names(body, "children") {
                tree.parents
                    .entry(child.to_string())
                    .or_default()
                    .insert(group.clone());
            }
            for h in names(body, "hosts") {
                tree.add_host(h);
                tree.direct
                    .entry(h.to_string())
                    .or_default()
                    .insert(group.clone());
            }
        }
        for h in hostvars.keys() {
            tree.add_host(h);
        }
        tree
    }

    /// Adds host `h` unless it is already there.
    fn add_host(&mut self, h: &str) {
        if !self.hosts.iter().any(|x| x == h) {
            self.hosts.push(h.to_string());
        }
    }

    /// Group `g` and every group above it.
    fn ancestors(&self, g: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo = vec![g.to_string()];
        while let Some(x) = todo.pop() {
            if out.insert(x.clone()) {
                todo.extend(self.parents.get(&x).into_iter().flatten().cloned());
            }
        }
        out
    }

    /// The groups host `h` is in: those that list it and every group above them,
    /// Ansible's implicit `all` and `ungrouped` left out.
    fn groups_of(&self, h: &str) -> BTreeSet<String> {
        let mut groups: BTreeSet<String> = BTreeSet::new();
        for g in self.direct.get(h).into_iter().flatten() {
            groups.extend(self.ancestors(g));
        }
        groups.retain(|g| g != "all" && g != "ungrouped");
        groups
    }
}

/// The strings of a group's `key` list (`children` or `hosts`); none if it has none.
fn names<'a>(group: &'a Value, key: &str) -> impl Iterator<Item = &'a str> {
    group
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// The `[[hosts]]` table of host `h`: its connection settings, its (plain) `groups` and
/// its other plain variables as `vars`; what cannot be mapped goes to `not_mapped`.
fn host_table(
    h: &str,
    vars: &Map<String, Value>,
    groups: &[String],
    not_mapped: &mut Vec<String>,
) -> String {
    let mut body = format!("\n[[hosts]]\nname = {}\n", lit(h));
    body.push_str(&connection(h, vars, not_mapped));
    if !groups.is_empty() {
        let list: Vec<String> = groups.iter().map(|g| lit(g)).collect();
        body.push_str(&format!("groups = [{}]\n", list.join(", ")));
    }
    let free = free_vars(h, vars, not_mapped);
    if !free.is_empty() {
        body.push_str(&format!("vars = {{ {} }}\n", free.join(", ")));
    }
    body
}

/// The Ansible connection variables this tool has an equivalent for; [`connection`]
/// maps them.
const CONNECTION_VARS: [&str; 6] = [
    "ansible_host",
    "ansible_port",
    "ansible_user",
    "ansible_ssh_private_key_file",
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
];

/// A variable's value as text, if it is a string or a number.
fn text(vars: &Map<String, Value>, k: &str) -> Option<String> {
    vars.get(k).and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// The host's connection keys (`address`, `port`, `user`, `identity_files`, `jump`), one
/// line each, from [`CONNECTION_VARS`]; a port that is not a TCP port goes to
/// `not_mapped`.
fn connection(h: &str, vars: &Map<String, Value>, not_mapped: &mut Vec<String>) -> String {
    let mut body = String::new();
    if let Some(a) = text(vars, "ansible_host") {
        body.push_str(&format!("address = {}\n", lit(&a)));
    }
    if let Some(p) = text(vars, "ansible_port") {
        match p.parse::<u16>() {
            Ok(p) if p > 0 => body.push_str(&format!("port = {p}\n")),
            _ => not_mapped.push(format!("{h}: ansible_port `{p}` (not a TCP port)")),
        }
    }
    if let Some(u) = text(vars, "ansible_user") {
        body.push_str(&format!("user = {}\n", lit(&u)));
    }
    if let Some(k) = text(vars, "ansible_ssh_private_key_file") {
        body.push_str(&format!("identity_files = [{}]\n", lit(&k)));
    }
    let ssh_args = [
        text(vars, "ansible_ssh_common_args"),
        text(vars, "ansible_ssh_extra_args"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    if let Some(j) = proxy_jump(&ssh_args) {
        body.push_str(&format!("jump = {}\n", lit(&j)));
    }
    body
}

/// The host's other plain variables as `key = value` entries of its `vars` table.
///
/// Other plain variables (customer, contract, …) become the host's `vars`: free-form
/// strings the reports show and the playbook's `labels` can name. Connection settings
/// (`ansible_*`) this tool has no equivalent for, and lists or tables, go to
/// `not_mapped` instead.
fn free_vars(h: &str, vars: &Map<String, Value>, not_mapped: &mut Vec<String>) -> Vec<String> {
    let mut free: Vec<String> = Vec::new();
    for (k, v) in vars
        .iter()
        .filter(|(k, _)| !CONNECTION_VARS.contains(&k.as_str()))
    {
        let scalar = match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        match scalar {
            Some(value) if !k.starts_with("ansible_") => {
                free.push(format!("{} = {}", lit(k), lit(&value)));
            }
            Some(_) => not_mapped.push(format!("{h}: variable `{k}`")),
            None => not_mapped.push(format!(
                "{h}: variable `{k}` (not a string, number or boolean)"
            )),
        }
    }
    free
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
    use test_case::test_case;

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
        assert!(
            got.toml
                .contains("groups = [\"acme\", \"eu\"]\nvars = { \"customer\" = \"ACME\" }\n"),
            "{}",
            got.toml
        );
        assert_eq!(
            got.not_mapped,
            ["mail2: group `weird group` (not a plain name: letters, digits, `-`, `_`, `.`)"]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.toml");
        std::fs::write(&path, &got.toml).unwrap();
        let inv = crate::inventory::load(&path).unwrap();
        assert_eq!(inv.hosts.len(), 3);
        assert_eq!(inv.hosts[0].port, 2222);
        assert_eq!(inv.hosts[0].vars["customer"], "ACME");
    }

    /// The variables of one host, from JSON.
    fn vars(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test_case(r#"{"customer": "ACME"}"#, &[r#""customer" = "ACME""#], &[]; "a string is a var")]
    #[test_case(r#"{"tier": 2, "legacy": false}"#, &[r#""legacy" = "false""#, r#""tier" = "2""#], &[]; "numbers and booleans become text")]
    #[test_case(r#"{"ansible_become": true}"#, &[], &["h: variable `ansible_become`"]; "an ansible setting without an equivalent is listed")]
    #[test_case(r#"{"dns": ["a", "b"], "ansible_x": {}}"#, &[], &["h: variable `ansible_x` (not a string, number or boolean)", "h: variable `dns` (not a string, number or boolean)"]; "lists and tables are listed")]
    #[test_case(r#"{"ansible_host": "a", "ansible_port": 22, "ansible_user": "u", "ansible_ssh_private_key_file": "k", "ansible_ssh_common_args": "", "ansible_ssh_extra_args": ""}"#, &[], &[]; "connection settings are not vars")]
    fn plain_variables_become_vars_and_the_rest_is_listed(
        json: &str,
        free: &[&str],
        listed: &[&str],
    ) {
        let mut not_mapped = Vec::new();
        assert_eq!(free_vars("h", &vars(json), &mut not_mapped), free);
        assert_eq!(not_mapped, listed);
    }

    #[test_case(r#"{"ansible_port": 2222}"#, "port = 2222\n", &[]; "a number")]
    #[test_case(r#"{"ansible_port": "22"}"#, "port = 22\n", &[]; "a string of digits")]
    #[test_case(r#"{"ansible_port": 0}"#, "", &["h: ansible_port `0` (not a TCP port)"]; "zero")]
    #[test_case(r#"{"ansible_port": 65536}"#, "", &["h: ansible_port `65536` (not a TCP port)"]; "too large")]
    #[test_case(r#"{"ansible_port": "ssh"}"#, "", &["h: ansible_port `ssh` (not a TCP port)"]; "a name")]
    #[test_case(r#"{"ansible_port": true}"#, "", &[]; "not text is ignored")]
    #[test_case(r#"{"ansible_ssh_common_args": "-o StrictHostKeyChecking=yes", "ansible_ssh_extra_args": "-J j@k"}"#, "jump = \"j@k\"\n", &[]; "a jump from either argument list")]
    fn connection_settings_map_to_their_keys(json: &str, toml: &str, listed: &[&str]) {
        let mut not_mapped = Vec::new();
        assert_eq!(connection("h", &vars(json), &mut not_mapped), toml);
        assert_eq!(not_mapped, listed);
    }

    #[test_case("mail1", &["acme", "eu"]; "parents of parents, without all")]
    #[test_case("mail2", &["acme", "eu", "weird group"]; "every group that lists the host")]
    #[test_case("solo", &[]; "ungrouped is no group")]
    #[test_case("nosuch", &[]; "an unknown host is in no group")]
    fn a_host_is_in_the_groups_above_it(host: &str, groups: &[&str]) {
        let doc: Value = serde_json::from_str(LIST).unwrap();
        let hostvars = doc["_meta"]["hostvars"].as_object().unwrap();
        let tree = Tree::read(doc.as_object().unwrap(), hostvars);
        assert_eq!(tree.groups_of(host).into_iter().collect::<Vec<_>>(), groups);
        assert_eq!(tree.hosts, ["mail1", "mail2", "solo"]);
    }

    /// What real `ansible-inventory` (ansible-core 2.19.14) printed for the INI inventory,
    /// group_vars, host_vars and YAML inventory in tests/fixtures/ansible/ (regenerated by
    /// scripts/regen-ansible-fixture): every host, connection setting, group and variable
    /// lands where the TOML inventory keeps it, and what has no equivalent is listed.
    #[test]
    fn real_ansible_inventory_output_imports_and_loads() {
        let fixture =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ansible");
        let json = std::fs::read_to_string(fixture.join("list.json")).unwrap();
        let got = import(&json).unwrap();
        assert_eq!(
            got.not_mapped,
            ["mx1.globex.example: variable `ansible_become_method`"],
            "{}",
            got.toml
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.toml");
        std::fs::write(&path, &got.toml).unwrap();
        let inv = crate::inventory::load(&path).unwrap_or_else(|e| panic!("{e}\n{}", got.toml));
        let host = |name: &str| {
            inv.hosts
                .iter()
                .find(|h| h.name == name)
                .unwrap_or_else(|| panic!("{name} missing:\n{}", got.toml))
        };
        assert_eq!(inv.hosts.len(), 6);
        // INI host line vars, group vars of a parent group (carbonio:vars) and group_vars/.
        let mta2 = host("mta2.acme.example");
        assert_eq!(
            (mta2.address.as_str(), mta2.port, mta2.user.as_str()),
            ("203.0.113.12", 2222, "root")
        );
        assert!(mta2.identity_files[0].ends_with(".ssh/carbonio_ed25519"));
        let jump = mta2.jump.as_ref().expect("group_vars ProxyJump");
        assert_eq!(
            (jump.user.as_str(), jump.host.as_str(), jump.port),
            ("ops", "bastion.acme.example", 22)
        );
        assert_eq!(mta2.groups, ["acme", "acme_mta", "carbonio"]);
        assert_eq!(mta2.vars["customer"], "ACME Corp");
        // A host range (mx[1:2]) without ansible_host: its name is its address.
        let mx1 = host("mx1.globex.example");
        assert_eq!(
            (mx1.address.as_str(), mx1.user.as_str()),
            ("mx1.globex.example", "ops")
        );
        assert_eq!(mx1.vars["ntp_server"], "ntp.globex.example");
        assert!(mx1.jump.is_none());
        // The YAML inventory's host, with `-J` in ssh extra args.
        let lab = host("lab-mta.example.net");
        assert_eq!(lab.address, "198.51.100.7");
        assert_eq!(
            lab.jump.as_ref().map(|j| j.host.as_str()),
            Some("198.51.100.1")
        );
        assert_eq!(lab.groups, ["lab"]);
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
