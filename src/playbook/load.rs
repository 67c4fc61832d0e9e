//! Reading and validating a playbook into the validated [`Playbook`].
//!
//! Checks, each reported with its place: unknown keys and wrong types (first one, from
//! the TOML layer), then every semantic problem — empty names, duplicate ids, attribute
//! names that are not Carbonio attributes, a control or probe with no or several of
//! `expect`/`contains`/`absent`, keys that do not apply to a probe's kind, typographic
//! quotes in values, amounts and percentages out of range, bad durations.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_spanned::Spanned;

use super::raw::{RawAmount, RawBatch, RawControl, RawPlaybook, RawProbe, RawRestart, RawRollout};
use super::{
    Amount, Control, DnsCheck, Expectation, Playbook, Probe, ProbeExpect, ProbeFrom, ProbeKind,
    RestartMethod, Rollout, Scope, Severity,
};
use crate::config_error::{ConfigError, ConfigErrors, Source, non_empty};

/// The shipped backscatter playbook, the default when `-p` is omitted.
pub const DEFAULT_PLAYBOOK: &str = include_str!("../../playbooks/backscatter.toml");
/// How errors in the embedded playbook name it.
const DEFAULT_ORIGIN: &str = "playbooks/backscatter.toml";

/// DKIM attributes that Carbonio names without the `zimbra` prefix.
const DKIM_ATTRS: [&str; 5] = [
    "DKIMDomain",
    "DKIMIdentity",
    "DKIMKey",
    "DKIMPublicKey",
    "DKIMSelector",
];

/// Loads and validates the playbook at `path`.
pub fn load(path: &Path) -> Result<Playbook, ConfigErrors> {
    let text = fs::read_to_string(path).map_err(|e| {
        ConfigError::file(
            path,
            format!("cannot read playbook `{}`: {e}", path.display()),
        )
    })?;
    parse(&text, path)
}

/// The embedded `playbooks/backscatter.toml`.
pub fn load_default() -> Playbook {
    let mut playbook = parse(DEFAULT_PLAYBOOK, Path::new(DEFAULT_ORIGIN))
        .expect("the embedded playbook is valid (a unit test loads it)");
    playbook.source = None;
    playbook
}

/// Validates playbook `text`; `origin` names it in errors and becomes `source`.
pub fn parse(text: &str, origin: &Path) -> Result<Playbook, ConfigErrors> {
    let src = Source::new(origin, text);
    let raw: RawPlaybook = src.deserialize()?;
    let mut errors = Vec::new();
    let playbook = validate(&src, raw, &mut errors);
    if errors.is_empty() {
        Ok(playbook)
    } else {
        errors.sort_by_key(|e| e.position.map(|p| (p.line, p.column)));
        Err(ConfigErrors(errors))
    }
}

fn validate(src: &Source<'_>, raw: RawPlaybook, errors: &mut Vec<ConfigError>) -> Playbook {
    let name = non_empty(src, &raw.name, "name", errors);
    if raw.control.is_empty() && raw.probe.is_empty() {
        errors.push(
            src.error(
                0..0,
                "",
                "the playbook has no `[[control]]` and no `[[probe]]`",
            )
            .with_hint("a playbook checks at least one control or probe"),
        );
    }
    // Controls and probes share one id space: reports key both by id.
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut check_id = |id: &Spanned<String>, key: &str, errors: &mut Vec<ConfigError>| {
        let value = id.get_ref().trim();
        if value.is_empty() {
            return;
        }
        let here = src.position(id.span().start);
        let here = format!("{}:{}:{}", src.path.display(), here.line, here.column);
        if let Some(first) = ids.get(value) {
            errors.push(src.error(
                id.span(),
                key,
                format!("duplicate id `{value}` (first used at {first})"),
            ));
        } else {
            ids.insert(value.to_owned(), here);
        }
    };

    let mut controls = Vec::new();
    for (i, c) in raw.control.iter().enumerate() {
        let key = format!("control[{i}]");
        check_id(&c.get_ref().id, &format!("{key}.id"), errors);
        if let Some(c) = control(src, c, &key, errors) {
            controls.push(c);
        }
    }
    let mut probes = Vec::new();
    for (i, p) in raw.probe.iter().enumerate() {
        let key = format!("probe[{i}]");
        check_id(&p.get_ref().id, &format!("{key}.id"), errors);
        if let Some(p) = probe(src, p, &key, errors) {
            probes.push(p);
        }
    }
    let mut warnings = Vec::new();
    let rollout = rollout(src, raw.rollout.unwrap_or_default(), errors, &mut warnings);
    Playbook {
        name: name.unwrap_or_default(),
        description: raw.description,
        controls,
        probes,
        rollout,
        warnings,
        fix_spawn_user: raw.fix.and_then(|f| f.spawn_user).unwrap_or(false),
        source: Some(src.path.to_path_buf()),
        labels: labels(src, &raw.labels, errors),
        waivers: Default::default(),
    }
}

/// Label names the metrics already use for their own purposes: a `vars` key with one of
/// these names would collide with them.
const RESERVED_LABELS: &[&str] = &[
    "host", "cluster", "playbook", "status", "control", "probe", "verdict", "kind", "domain",
    "check", "command", "job", "instance", "le", "quantile", "shard",
];

/// `labels = ["customer"]`: inventory `vars` keys that become report and metric labels.
/// Each must be a Prometheus label name (so the metrics can carry it) that the metrics do
/// not already use, and listed once.
fn labels(src: &Source<'_>, raw: &[Spanned<String>], errors: &mut Vec<ConfigError>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let name = l.get_ref().as_str();
        let key = format!("labels[{i}]");
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with("__");
        if !valid {
            errors.push(
                src.error(l.span(), key, format!("`{name}` is not a usable label name"))
                    .with_hint("a label is an inventory `vars` key made of letters, digits and `_`, not starting with a digit or `__`"),
            );
        } else if RESERVED_LABELS.contains(&name) {
            errors.push(
                src.error(
                    l.span(),
                    key,
                    format!("`{name}` is a label the reports already use"),
                )
                .with_hint("name the inventory var differently, e.g. `customer` or `site`"),
            );
        } else if out.iter().any(|x| x == name) {
            errors.push(src.error(l.span(), key, format!("`{name}` is listed twice")));
        } else {
            out.push(name.to_owned());
        }
    }
    out
}

/// Curly quotes in a value are the published recipe's failure: the user copied quoting
/// from a web page. The tool quotes by itself, so any such character is a mistake.
fn plain_value(
    src: &Source<'_>,
    value: &Spanned<String>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> String {
    if value
        .get_ref()
        .contains(['\u{201C}', '\u{201D}', '\u{2018}', '\u{2019}'])
    {
        errors.push(
            src.error(
                value.span(),
                key,
                "the value contains typographic quotes (“ ” ‘ ’)",
            )
            .with_hint(
                "write the bare value: carbonio-fleet quotes every value itself \
                     (curly quotes are what makes zmprov answer `usage: modifyConfig(mcf)`)",
            ),
        );
    }
    // What could never be sent: refused here, before any node is contacted, rather
    // than after gathering the whole fleet.
    let v = value.get_ref();
    let unsendable = if let Some(at) = v.find('\0') {
        Some(format!(
            "the value contains a NUL byte at offset {at}: no shell argument can carry it"
        ))
    } else if v.contains(['\n', '\r']) {
        Some("the value contains a line break: it would end the zmprov batch line".to_string())
    } else if v.len() > MAX_VALUE {
        Some(format!(
            "the value is {} bytes long, over {MAX_VALUE} (128 KiB): no command line carries it",
            v.len()
        ))
    } else {
        None
    };
    if let Some(why) = unsendable {
        errors.push(src.error(value.span(), key, why));
    }
    value.get_ref().clone()
}

/// The longest value a playbook may hold: Linux caps one argument at 128 KiB
/// (MAX_ARG_STRLEN), and every value travels in one.
const MAX_VALUE: usize = 128 * 1024;

/// Which of `expect`/`contains`/`absent` is set; exactly one must be.
fn one_expectation<'a>(
    src: &Source<'_>,
    span: std::ops::Range<usize>,
    key: &str,
    set: [(&'static str, &'a Option<Spanned<String>>); 3],
    errors: &mut Vec<ConfigError>,
) -> Option<(&'static str, &'a Spanned<String>)> {
    let present: Vec<_> = set
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v)))
        .collect();
    match present[..] {
        [one] => Some(one),
        [] => {
            errors.push(
                src.error(span, key, "none of `expect`, `contains`, `absent` is set")
                    .with_hint(
                        "`expect` for an exact value, `contains`/`absent` for one value of a \
                         multi-valued attribute",
                    ),
            );
            None
        }
        [(first, _), (second, v), ..] => {
            errors.push(
                src.error(
                    v.span(),
                    format!("{key}.{second}"),
                    format!("`{first}` and `{second}` are both set"),
                )
                .with_hint("set exactly one of `expect`, `contains`, `absent`"),
            );
            None
        }
    }
}

fn is_attr_name(attr: &str) -> bool {
    let Some(rest) = attr.strip_prefix("zimbra") else {
        return DKIM_ATTRS.contains(&attr);
    };
    let mut chars = rest.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_alphanumeric())
}

fn control(
    src: &Source<'_>,
    c: &Spanned<RawControl>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Control> {
    let raw = c.get_ref();
    let id = non_empty(src, &raw.id, &format!("{key}.id"), errors);
    let title = non_empty(src, &raw.title, &format!("{key}.title"), errors);
    let attr = raw.attr.get_ref().trim();
    let attr_ok = is_attr_name(attr);
    if !attr_ok {
        errors.push(
            src.error(
                raw.attr.span(),
                format!("{key}.attr"),
                format!("`{}` is not a Carbonio attribute name", raw.attr.get_ref()),
            )
            .with_hint("attribute names look like zimbraMtaRestriction"),
        );
    }
    let expect = one_expectation(
        src,
        c.span(),
        key,
        [
            ("expect", &raw.expect),
            ("contains", &raw.contains),
            ("absent", &raw.absent),
        ],
        errors,
    )
    .and_then(|(which, v)| {
        let k = format!("{key}.{which}");
        let value = plain_value(src, v, &k, errors);
        match which {
            "expect" => Some(Expectation::Equals(value)),
            _ if value.trim().is_empty() => {
                errors.push(src.error(v.span(), k, "must not be empty"));
                None
            }
            "contains" => Some(Expectation::Contains(value)),
            _ => Some(Expectation::Absent(value)),
        }
    });
    Some(Control {
        id: id?,
        title: title?,
        attr: attr_ok.then(|| attr.to_owned())?,
        scope: raw.scope.unwrap_or(Scope::Global),
        expect: expect?,
        severity: raw.severity.unwrap_or(Severity::Medium),
        restart: raw.restart.unwrap_or(false),
        precondition: raw.precondition,
        rationale: prose(&raw.rationale),
        remediation: prose(&raw.remediation),
    })
}

/// A free-text key (`rationale`, `remediation`): shown as written, trimmed.
fn prose(value: &Option<Spanned<String>>) -> String {
    value
        .as_ref()
        .map(|v| v.get_ref().trim().to_owned())
        .unwrap_or_default()
}

/// One `[[probe]]` table, checked: its `kind`, the keys that kind takes (and no
/// other), and their values; every problem goes to `errors`.
fn probe(
    src: &Source<'_>,
    p: &Spanned<RawProbe>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Probe> {
    let raw = p.get_ref();
    let id = non_empty(src, &raw.id, &format!("{key}.id"), errors);
    let title = non_empty(src, &raw.title, &format!("{key}.title"), errors);
    let kind_name = raw.kind.get_ref().as_str();
    let Some(allowed) = probe_keys(kind_name) else {
        errors.push(src.error(
            raw.kind.span(),
            format!("{key}.kind"),
            format!(
                "unknown probe kind `{kind_name}`, expected one of `postconf`, `smtp`, `command`, `dns`"
            ),
        ));
        return None;
    };
    let table = ProbeTable {
        src,
        p,
        key,
        kind: kind_name,
    };
    let misplaced = table.misplaced(allowed, errors);
    let (kind, expect) = match kind_name {
        "postconf" => (table.postconf(errors), table.expectation(errors).map(Some)),
        "command" => (table.command(errors), table.expectation(errors).map(Some)),
        "dns" => (table.dns(errors), Some(None)),
        _ => table.smtp(errors),
    };
    if misplaced {
        return None;
    }
    Some(Probe {
        id: id?,
        title: title?,
        kind: kind?,
        expect: expect?,
        severity: raw.severity.unwrap_or(Severity::Medium),
        rationale: prose(&raw.rationale),
        remediation: prose(&raw.remediation),
    })
}

/// The keys a probe of kind `kind` takes beyond id/title/kind/severity; `None` for a
/// kind there is none of.
fn probe_keys(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "postconf" => Some(&["param", "expect", "contains", "absent"]),
        "smtp" => Some(&["rcpt", "expect_reply"]),
        "command" => Some(&["command", "expect", "contains", "absent"]),
        "dns" => Some(&["check"]),
        _ => None,
    }
}

/// A `[[probe]]` table of a known kind being checked: where it is, for its errors.
struct ProbeTable<'a> {
    src: &'a Source<'a>,
    p: &'a Spanned<RawProbe>,
    /// `probe[I]`.
    key: &'a str,
    /// The probe's `kind`, one [`probe_keys`] knows.
    kind: &'a str,
}

impl ProbeTable<'_> {
    /// Reports each set key the kind does not take (it takes `allowed`); whether there
    /// was one.
    fn misplaced(&self, allowed: &[&str], errors: &mut Vec<ConfigError>) -> bool {
        let (raw, key, kind) = (self.p.get_ref(), self.key, self.kind);
        let optional = [
            ("param", &raw.param),
            ("rcpt", &raw.rcpt),
            ("command", &raw.command),
            ("expect", &raw.expect),
            ("contains", &raw.contains),
            ("absent", &raw.absent),
            ("expect_reply", &raw.expect_reply),
            ("check", &raw.check),
        ];
        let mut misplaced = false;
        for (k, v) in optional {
            if let Some(v) = v.as_ref().filter(|_| !allowed.contains(&k)) {
                misplaced = true;
                errors.push(
                    self.src
                        .error(
                            v.span(),
                            format!("{key}.{k}"),
                            format!("`{k}` does not apply to a probe of kind `{kind}`"),
                        )
                        .with_hint(format!(
                            "a `{kind}` probe takes {}",
                            allowed
                                .iter()
                                .map(|a| format!("`{a}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                );
            }
        }
        misplaced
    }

    /// The value of key `name`, which this kind needs: set and not blank.
    fn required(
        &self,
        name: &str,
        v: &Option<Spanned<String>>,
        errors: &mut Vec<ConfigError>,
    ) -> Option<String> {
        match v {
            Some(v) => non_empty(self.src, v, &format!("{}.{name}", self.key), errors),
            None => {
                errors.push(self.src.error(
                    self.p.span(),
                    self.key,
                    format!("a `{}` probe needs `{name}`", self.kind),
                ));
                None
            }
        }
    }

    /// A `postconf` probe's `param`: a Postfix parameter name (lowercase letters,
    /// digits, `_`).
    fn postconf(&self, errors: &mut Vec<ConfigError>) -> Option<ProbeKind> {
        let raw = self.p.get_ref();
        self.required("param", &raw.param, errors)
            .and_then(|param| {
                let valid = param
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !valid {
                    errors.push(
                        self.src
                            .error(
                                raw.param.as_ref().map_or(self.p.span(), |s| s.span()),
                                format!("{}.param", self.key),
                                format!("`{param}` is not a Postfix parameter name"),
                            )
                            .with_hint("parameter names look like smtpd_recipient_restrictions"),
                    );
                }
                valid.then_some(ProbeKind::Postconf { param })
            })
    }

    /// A `command` probe's `command`.
    fn command(&self, errors: &mut Vec<ConfigError>) -> Option<ProbeKind> {
        self.required("command", &self.p.get_ref().command, errors)
            .map(|command| ProbeKind::Command { command })
    }

    /// What a `postconf` or `command` probe's output must show: exactly one of
    /// `expect`, `contains`, `absent`.
    fn expectation(&self, errors: &mut Vec<ConfigError>) -> Option<ProbeExpect> {
        let (src, raw, key) = (self.src, self.p.get_ref(), self.key);
        one_expectation(
            src,
            self.p.span(),
            key,
            [
                ("expect", &raw.expect),
                ("contains", &raw.contains),
                ("absent", &raw.absent),
            ],
            errors,
        )
        .map(|(which, v)| {
            let value = plain_value(src, v, &format!("{key}.{which}"), errors);
            match which {
                "expect" => ProbeExpect::Equals(value),
                "contains" => ProbeExpect::Contains(value),
                _ => ProbeExpect::Absent(value),
            }
        })
    }

    /// A `dns` probe's `check`: `spf`, `dkim` or `dmarc`.
    fn dns(&self, errors: &mut Vec<ConfigError>) -> Option<ProbeKind> {
        let raw = self.p.get_ref();
        let check = self
            .required("check", &raw.check, errors)
            .and_then(|c| match c.as_str() {
                "spf" => Some(DnsCheck::Spf),
                "dkim" => Some(DnsCheck::Dkim),
                "dmarc" => Some(DnsCheck::Dmarc),
                other => {
                    errors.push(self.src.error(
                        raw.check.as_ref().map_or(self.p.span(), |s| s.span()),
                        format!("{}.check", self.key),
                        format!(
                            "unknown dns check `{other}`, expected one of `spf`, `dkim`, `dmarc`"
                        ),
                    ));
                    None
                }
            });
        check.map(|check| ProbeKind::Dns { check })
    }

    /// An `smtp` probe: its optional `rcpt` (one plain address) and its optional
    /// `expect_reply` (a reply code or class), each `None` where invalid.
    fn smtp(
        &self,
        errors: &mut Vec<ConfigError>,
    ) -> (Option<ProbeKind>, Option<Option<ProbeExpect>>) {
        let (src, raw, key) = (self.src, self.p.get_ref(), self.key);
        let rcpt = raw
            .rcpt
            .as_ref()
            .and_then(|r| non_empty(src, r, &format!("{key}.rcpt"), errors))
            .filter(|r| {
                let ok = is_plain_address(r);
                if !ok {
                    errors.push(src.error(
                        raw.rcpt.as_ref().map(|x| x.span()).unwrap_or_default(),
                        format!("{key}.rcpt"),
                        format!(
                            "must be one plain address (local@domain, no spaces, control characters or angle brackets), found {r:?}"
                        ),
                    ));
                }
                ok
            });
        let reply = match &raw.expect_reply {
            None => Some(None),
            Some(r) => reply_class(r.get_ref()).map(Some).or_else(|| {
                errors.push(
                    src.error(
                        r.span(),
                        format!("{key}.expect_reply"),
                        format!("`{}` is not an SMTP reply code or class", r.get_ref()),
                    )
                    .with_hint("write a code like \"550\" or a class like \"5xx\""),
                );
                None
            }),
        };
        (Some(ProbeKind::Smtp { rcpt }), reply)
    }
}

/// "5xx", "55x", "550": a reply code with trailing digits optionally left open.
fn reply_class(s: &str) -> Option<ProbeExpect> {
    let b = s.as_bytes();
    let ok = b.len() == 3
        && (b'2'..=b'5').contains(&b[0])
        && b[1..].iter().all(|c| c.is_ascii_digit() || *c == b'x')
        // "5x0" is not a class: once open, stay open.
        && !(b[1] == b'x' && b[2] != b'x');
    ok.then(|| ProbeExpect::Reply(s.to_owned()))
}

/// What an amount may be: a batch needs at least one host, a failure budget may be 0.
#[derive(Clone, Copy)]
enum AmountUse {
    Batch,
    Budget,
}

fn amount(
    src: &Source<'_>,
    value: &RawAmount,
    span: std::ops::Range<usize>,
    key: &str,
    usage: AmountUse,
    errors: &mut Vec<ConfigError>,
) -> Option<Amount> {
    let min = match usage {
        AmountUse::Batch => 1,
        AmountUse::Budget => 0,
    };
    let mut fail = |msg: String| {
        errors.push(
            src.error(span.clone(), key, msg)
                .with_hint("write a number of hosts like 5 or a percentage like \"25%\""),
        );
        None
    };
    match value {
        RawAmount::Int(n) if *n < min => fail(format!("must be at least {min}, found {n}")),
        RawAmount::Int(n) => Some(Amount::Count(usize::try_from(*n).ok()?)),
        RawAmount::Str(s) => {
            let Some(number) = s.trim().strip_suffix('%') else {
                return fail(format!("`{s}` is neither a number nor a percentage"));
            };
            match number.trim().parse::<u32>() {
                Ok(p) if p > 100 => fail(format!("percentage `{s}` is over 100%")),
                Ok(p) if i64::from(p) < min => {
                    fail(format!("percentage `{s}` must be at least {min}%"))
                }
                Ok(p) => Some(Amount::Percent(u8::try_from(p).ok()?)),
                Err(_) => fail(format!("`{s}` is not a whole percentage")),
            }
        }
    }
}

/// Maps `rollout.restart`; a deprecated value is its replacement, with a warning.
fn restart_method(
    src: &Source<'_>,
    raw: &Spanned<RawRestart>,
    warnings: &mut Vec<String>,
) -> RestartMethod {
    let (method, old) = match raw.get_ref() {
        RawRestart::Reload => (RestartMethod::Reload, None),
        RawRestart::Full => (RestartMethod::Full, None),
        RawRestart::None => (RestartMethod::None, None),
        RawRestart::Auto => (RestartMethod::Reload, Some("auto")),
        RawRestart::Zmcontrol => (RestartMethod::Full, Some("zmcontrol")),
        RawRestart::SystemdMta => (RestartMethod::Full, Some("systemd-mta")),
    };
    if let Some(old) = old {
        let new = match method {
            RestartMethod::Reload => "reload",
            _ => "full",
        };
        warnings.push(
            src.error(
                raw.span(),
                "rollout.restart",
                format!("`{old}` is deprecated and now means `{new}`"),
            )
            .with_hint(
                "`reload` (configrewrite mta, then a Postfix reload) is the default; `full` restarts every service of the node",
            )
            .to_string(),
        );
    }
    method
}

/// The `[rollout]` table, checked, each key not set taking its default; every problem
/// goes to `errors`, deprecated spellings to `warnings`.
fn rollout(
    src: &Source<'_>,
    raw: RawRollout,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> Rollout {
    let defaults = Rollout {
        batch: vec![Amount::Percent(10)],
        per_cluster: 1,
        canary: 1,
        pause: Duration::from_secs(30),
        max_failures: Amount::Percent(5),
        restart: RestartMethod::Reload,
        health_timeout: Duration::from_secs(5 * 60),
        probe_from: ProbeFrom::Node,
        only_if_changed: true,
        policy_socket: true,
        rollback: true,
        known_rcpt: None,
    };
    let batch = raw
        .batch
        .as_ref()
        .and_then(|b| rollout_batch(src, b, errors));
    let per_cluster = rollout_count(src, &raw.per_cluster, "per_cluster", 1, errors);
    let canary = rollout_count(src, &raw.canary, "canary", 0, errors);
    let pause = raw.pause.as_ref().and_then(|p| {
        src.duration(p, "rollout.pause")
            .map_err(|e| errors.push(e))
            .ok()
    });
    let health_timeout = raw
        .health_timeout
        .as_ref()
        .and_then(|h| rollout_health_timeout(src, h, errors));
    let max_failures = raw.max_failures.as_ref().and_then(|m| {
        amount(
            src,
            m.get_ref(),
            m.span(),
            "rollout.max_failures",
            AmountUse::Budget,
            errors,
        )
    });
    Rollout {
        batch: batch.unwrap_or(defaults.batch),
        per_cluster: per_cluster.unwrap_or(defaults.per_cluster),
        canary: canary.unwrap_or(defaults.canary),
        pause: pause.unwrap_or(defaults.pause),
        max_failures: max_failures.unwrap_or(defaults.max_failures),
        restart: raw
            .restart
            .as_ref()
            .map(|r| restart_method(src, r, warnings))
            .unwrap_or(defaults.restart),
        health_timeout: health_timeout.unwrap_or(defaults.health_timeout),
        probe_from: raw.probe_from.unwrap_or(defaults.probe_from),
        only_if_changed: raw.only_if_changed.unwrap_or(defaults.only_if_changed),
        policy_socket: raw.policy_socket.unwrap_or(defaults.policy_socket),
        rollback: raw.rollback.unwrap_or(defaults.rollback),
        known_rcpt: raw
            .known_rcpt
            .as_ref()
            .and_then(|k| rollout_known_rcpt(src, k, errors)),
    }
}

/// `rollout.batch`: one amount, or a non-empty list of them (each batch's size in
/// turn).
fn rollout_batch(
    src: &Source<'_>,
    b: &Spanned<RawBatch>,
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<Amount>> {
    match b.get_ref() {
        RawBatch::One(a) => {
            amount(src, a, b.span(), "rollout.batch", AmountUse::Batch, errors).map(|a| vec![a])
        }
        RawBatch::Many(items) if items.is_empty() => {
            errors.push(src.error(b.span(), "rollout.batch", "the batch list is empty"));
            None
        }
        RawBatch::Many(items) => {
            let amounts: Vec<_> = items
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let key = format!("rollout.batch[{i}]");
                    amount(src, a.get_ref(), a.span(), &key, AmountUse::Batch, errors)
                })
                .collect();
            amounts.into_iter().collect()
        }
    }
}

/// A count `rollout.NAME` of at least `min`, if set and valid.
fn rollout_count(
    src: &Source<'_>,
    v: &Option<Spanned<i64>>,
    name: &str,
    min: i64,
    errors: &mut Vec<ConfigError>,
) -> Option<usize> {
    v.as_ref().and_then(|v| {
        let n = *v.get_ref();
        if n < min {
            errors.push(src.error(
                v.span(),
                format!("rollout.{name}"),
                format!("must be at least {min}, found {n}"),
            ));
            None
        } else {
            usize::try_from(n).ok()
        }
    })
}

/// `rollout.health_timeout`: a duration longer than zero.
fn rollout_health_timeout(
    src: &Source<'_>,
    h: &Spanned<String>,
    errors: &mut Vec<ConfigError>,
) -> Option<Duration> {
    match src.duration(h, "rollout.health_timeout") {
        Ok(d) if d.is_zero() => {
            errors.push(src.error(h.span(), "rollout.health_timeout", "must be longer than 0s"));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// `rollout.known_rcpt`: one plain address (it goes into `RCPT TO:<…>`).
fn rollout_known_rcpt(
    src: &Source<'_>,
    k: &Spanned<String>,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    if is_plain_address(k.get_ref()) {
        Some(k.get_ref().clone())
    } else {
        errors.push(src.error(
            k.span(),
            "rollout.known_rcpt",
            format!(
                "must be one plain address (local@domain, no spaces, control characters or angle brackets), found {:?}",
                k.get_ref()
            ),
        ));
        None
    }
}

/// An address that can go into `RCPT TO:<…>` as it is: one `@`, printable ASCII, no
/// space, angle bracket or control character (an SMTP command cannot be smuggled in).
pub fn is_plain_address(a: &str) -> bool {
    let mut parts = a.splitn(2, '@');
    let (local, domain) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    !local.is_empty() && !domain.is_empty() && !domain.contains('@') && is_plain_token(a)
}

/// One SMTP token as it may be sent: not empty, printable ASCII, no space, no angle
/// bracket, no control character (nothing can end the command line or the address).
pub fn is_plain_token(t: &str) -> bool {
    !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::Precondition;
    use indoc::indoc;
    use test_case::test_case;

    fn errors_of(text: &str) -> String {
        parse(text, Path::new("pb.toml")).unwrap_err().to_string()
    }

    #[test]
    fn values_that_can_never_be_sent_are_refused_at_load() {
        let head = "name = \"x\"\n[[control]]\nid = \"C1\"\ntitle = \"t\"\nattr = \"zimbraMtaRestriction\"\n";
        let e = errors_of(&format!("{head}contains = \"a\\u0000b\"\n"));
        assert!(
            e.contains("control[0].contains: the value contains a NUL byte at offset 1"),
            "{e}"
        );
        let big = "x".repeat(MAX_VALUE + 1);
        let e = errors_of(&format!("{head}contains = \"{big}\"\n"));
        assert!(
            e.contains(
                "control[0].contains: the value is 131073 bytes long, over 131072 (128 KiB)"
            ),
            "{e}"
        );
    }

    #[test]
    fn embedded_default_loads_with_the_four_controls() {
        let pb = load_default();
        // The shipped playbook leaves the spawn-user repair to the operator.
        assert!(!pb.fix_spawn_user);
        assert_eq!(pb.name, "backscatter-hardening");
        assert_eq!(pb.source, None);
        let summary: Vec<_> = pb
            .controls
            .iter()
            .map(|c| {
                (
                    c.id.as_str(),
                    c.attr.as_str(),
                    c.expect.clone(),
                    c.severity,
                    c.restart,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "BS-01",
                    "zimbraMtaEnableSmtpdPolicyd",
                    Expectation::Equals("TRUE".into()),
                    Severity::High,
                    true
                ),
                (
                    "BS-02",
                    "zimbraMtaSmtpdRejectUnlistedRecipient",
                    Expectation::Equals("yes".into()),
                    Severity::High,
                    true
                ),
                (
                    "BS-03",
                    "zimbraMtaSmtpdRejectUnlistedSender",
                    Expectation::Equals("yes".into()),
                    Severity::Medium,
                    true
                ),
                (
                    "BS-04",
                    "zimbraMtaRestriction",
                    Expectation::Contains("check_policy_service unix:private/policy".into()),
                    Severity::High,
                    true
                ),
            ]
        );
        assert!(pb.controls.iter().all(|c| c.scope == Scope::Global));
        assert_eq!(
            pb.controls[0].precondition,
            Some(Precondition::PolicySpawnUser)
        );
        assert!(pb.controls[1..].iter().all(|c| c.precondition.is_none()));
        let probes: Vec<_> = pb.probes.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            probes,
            [
                "EFF-01",
                "EFF-02",
                "EFF-03",
                "SMTP-01",
                "DOM-SPF",
                "DOM-DKIM",
                "DOM-DMARC"
            ]
        );
        // Domain posture ranks below every MTA control.
        let weakest_control = pb.controls.iter().map(|c| c.severity).min().unwrap();
        assert!(pb.probes[4..].iter().all(|p| p.severity <= weakest_control));
        assert!(matches!(&pb.probes[3].kind, ProbeKind::Smtp { rcpt: None }));
        assert_eq!(pb.probes[3].expect, Some(ProbeExpect::Reply("5xx".into())));
        let r = &pb.rollout;
        assert_eq!(r.batch, [Amount::Percent(25)]);
        assert_eq!((r.per_cluster, r.canary), (1, 1));
        assert_eq!(r.pause, Duration::from_secs(5));
        assert_eq!(r.max_failures, Amount::Percent(10));
        assert_eq!(r.health_timeout, Duration::from_secs(180));
        assert_eq!(
            (r.restart, r.probe_from, r.only_if_changed),
            (RestartMethod::Reload, ProbeFrom::Node, true)
        );
    }

    #[test]
    fn deprecated_restart_values_map_with_a_warning() {
        for (old, new) in [
            ("auto", RestartMethod::Reload),
            ("zmcontrol", RestartMethod::Full),
            ("systemd-mta", RestartMethod::Full),
        ] {
            let text = format!(
                "name = \"x\"\n[[control]]\nid = \"C1\"\ntitle = \"t\"\nattr = \"zimbraX\"\nexpect = \"y\"\n[rollout]\nrestart = \"{old}\"\n"
            );
            let pb = parse(&text, Path::new("pb.toml")).unwrap();
            assert_eq!(pb.rollout.restart, new, "{old}");
            assert_eq!(pb.warnings.len(), 1, "{old}");
            assert!(
                pb.warnings[0].starts_with("pb.toml:8:11: rollout.restart: `")
                    && pb.warnings[0].contains("is deprecated and now means"),
                "{}",
                pb.warnings[0]
            );
        }
        let pb = parse(
            "name = \"x\"\n[[control]]\nid = \"C1\"\ntitle = \"t\"\nattr = \"zimbraX\"\nexpect = \"y\"\n[rollout]\nrestart = \"full\"\n",
            Path::new("pb.toml"),
        )
        .unwrap();
        assert_eq!(
            (pb.rollout.restart, pb.warnings.len()),
            (RestartMethod::Full, 0)
        );
    }

    #[test]
    fn defaults_apply_when_omitted() {
        let pb = parse(
            indoc! {r#"
                name = "x"
                [[control]]
                id = "C1"
                title = "t"
                attr = "DKIMSelector"
                absent = "old"
            "#},
            Path::new("pb.toml"),
        )
        .unwrap();
        let c = &pb.controls[0];
        assert_eq!(
            (c.scope, c.severity, c.restart),
            (Scope::Global, Severity::Medium, false)
        );
        assert_eq!(c.expect, Expectation::Absent("old".into()));
        assert_eq!(pb.rollout.batch, [Amount::Percent(10)]);
        assert_eq!(pb.rollout.max_failures, Amount::Percent(5));
        assert_eq!(pb.rollout.pause, Duration::from_secs(30));
        assert_eq!(pb.rollout.health_timeout, Duration::from_secs(300));
        assert_eq!(pb.source.as_deref(), Some(Path::new("pb.toml")));
    }

    #[test]
    fn dns_probes_name_their_check() {
        let pb = parse(
            indoc! {r#"
                name = "x"
                [[probe]]
                id = "DOM-SPF"
                title = "t"
                kind = "dns"
                check = "spf"
                severity = "medium"
                [[probe]]
                id = "DOM-DMARC"
                title = "t"
                kind = "dns"
                check = "dmarc"
            "#},
            Path::new("pb.toml"),
        )
        .unwrap();
        assert!(matches!(
            pb.probes[0].kind,
            ProbeKind::Dns {
                check: DnsCheck::Spf
            }
        ));
        assert_eq!(pb.probes[0].expect, None);
        assert!(matches!(
            pb.probes[1].kind,
            ProbeKind::Dns {
                check: DnsCheck::Dmarc
            }
        ));
    }

    #[test]
    fn probe_kinds() {
        let pb = parse(
            indoc! {r#"
                name = "x"
                [[probe]]
                id = "P1"
                title = "t"
                kind = "command"
                command = "postqueue -p"
                absent = "deferred"
                severity = "low"
                [[probe]]
                id = "P2"
                title = "t"
                kind = "smtp"
                rcpt = "nobody@example.com"
                expect_reply = "550"
                [[probe]]
                id = "P3"
                title = "t"
                kind = "smtp"
            "#},
            Path::new("pb.toml"),
        )
        .unwrap();
        assert!(
            matches!(&pb.probes[0].kind, ProbeKind::Command { command } if command == "postqueue -p")
        );
        assert_eq!(
            pb.probes[0].expect,
            Some(ProbeExpect::Absent("deferred".into()))
        );
        assert_eq!(pb.probes[0].severity, Severity::Low);
        assert!(
            matches!(&pb.probes[1].kind, ProbeKind::Smtp { rcpt: Some(r) } if r == "nobody@example.com")
        );
        assert_eq!(pb.probes[1].expect, Some(ProbeExpect::Reply("550".into())));
        assert_eq!(pb.probes[2].expect, None);
    }

    const HEAD: &str = "name = \"x\"\n";

    #[test_case(indoc! {r#"
        name = "x"
        colour = "red"
        [[control]]
    "#}, "pb.toml:2:1: colour: unknown field `colour`, expected one of `name`, `description`, `control`, `probe`, `rollout`, `fix`, `labels`"; "unknown top key")]
    #[test_case(indoc! {r#"
        name = "x"
        [[control]]
        id = "C1"
        title = "t"
        attr = "zimbraX"
        expect = "y"
        restart = "yes"
    "#}, "pb.toml:7:11: control[0].restart: invalid type: string \"yes\", expected a boolean"; "wrong type")]
    #[test_case(indoc! {r#"
        name = "x"
        [[control]]
        id = "C1"
        title = "t"
        expect = "y"
    "#}, "pb.toml:2:1: control[0]: missing field `attr`"; "missing attr")]
    #[test_case(indoc! {r#"
        name = "x"
        [[control]]
        id = "C1"
        title = "t"
        attr = "zimbraX"
        expect = "y"
        severity = "urgent"
    "#}, "pb.toml:7:12: control[0].severity: unknown variant `urgent`, expected one of `low`, `medium`, `high`, `critical`"; "bad severity")]
    #[test_case(indoc! {r#"
        name = "x"
        [[control]]
        id = "C1"
        title = "t"
        attr = "zimbraX"
        expect = "y"
        precondition = "full-moon"
    "#}, "pb.toml:7:16: control[0].precondition: unknown variant `full-moon`, expected `policy-spawn-user`"; "bad precondition")]
    #[test_case(indoc! {r#"
        name = "x"
        [fix]
        spawn_users = true
        [[control]]
        id = "C1"
        title = "t"
        attr = "zimbraX"
        expect = "y"
    "#}, "pb.toml:3:1: fix.spawn_users: unknown field `spawn_users`, expected `spawn_user`"; "unknown fix")]
    #[test_case(indoc! {r#"
        name = "x"
        [rollout]
        batch = 2.5
    "#}, "pb.toml:3:9: rollout.batch: invalid type: floating point `2.5`, expected a number of hosts or a percentage like \"25%\", or a list of those"; "batch float")]
    #[test_case(indoc! {r#"
        name = "  "
        [[probe]]
        id = "P"
        title = "t"
        kind = "smtp"
    "#}, "pb.toml:1:8: name: must not be empty"; "empty name")]
    #[test_case("name = \"x\"\n", "pb.toml:1:1: the playbook has no `[[control]]` and no `[[probe]]`\n  hint: a playbook checks at least one control or probe"; "empty playbook")]
    fn single_errors(text: &str, expected: &str) {
        assert_eq!(errors_of(text), expected);
    }

    #[test_case(indoc! {r#"
        [[control]]
        id = "C1"
        title = "t"
        attr = "zimbra_mta_restriction"
        expect = "x"
    "#}, "pb.toml:5:8: control[0].attr: `zimbra_mta_restriction` is not a Carbonio attribute name\n  hint: attribute names look like zimbraMtaRestriction"; "bad attr")]
    #[test_case(indoc! {r#"
        [[control]]
        id = "C1"
        title = "t"
        attr = "zimbraMtaRestriction"
        expect = "x"
        contains = "y"
    "#}, "pb.toml:7:12: control[0].contains: `expect` and `contains` are both set\n  hint: set exactly one of `expect`, `contains`, `absent`"; "expect and contains")]
    #[test_case(indoc! {r#"
        [[control]]
        id = "C1"
        title = "t"
        attr = "zimbraMtaRestriction"
    "#}, "pb.toml:2:1: control[0]: none of `expect`, `contains`, `absent` is set\n  hint: `expect` for an exact value, `contains`/`absent` for one value of a multi-valued attribute"; "no expectation")]
    #[test_case(indoc! {r#"
        [[control]]
        id = "C1"
        title = "t"
        attr = "zimbraMtaRestriction"
        contains = "“check_policy_service unix:private/policy”"
    "#}, "pb.toml:6:12: control[0].contains: the value contains typographic quotes (“ ” ‘ ’)\n  hint: write the bare value: carbonio-fleet quotes every value itself (curly quotes are what makes zmprov answer `usage: modifyConfig(mcf)`)"; "curly quotes")]
    #[test_case(indoc! {r#"
        [[probe]]
        id = "D1"
        title = "t"
        kind = "dns"
    "#}, "pb.toml:2:1: probe[0]: a `dns` probe needs `check`"; "dns probe without check")]
    #[test_case(indoc! {r#"
        [[probe]]
        id = "D1"
        title = "t"
        kind = "dns"
        check = "bimi"
    "#}, "pb.toml:6:9: probe[0].check: unknown dns check `bimi`, expected one of `spf`, `dkim`, `dmarc`"; "dns probe unknown check")]
    #[test_case(indoc! {r#"
        [[probe]]
        id = "D1"
        title = "t"
        kind = "dns"
        check = "spf"
        expect = "v=spf1"
    "#}, "pb.toml:7:10: probe[0].expect: `expect` does not apply to a probe of kind `dns`\n  hint: a `dns` probe takes `check`"; "dns probe with expect")]
    #[test_case(indoc! {r#"
        [[probe]]
        id = "D1"
        title = "t"
        kind = "ldap"
    "#}, "pb.toml:5:8: probe[0].kind: unknown probe kind `ldap`, expected one of `postconf`, `smtp`, `command`, `dns`"; "unknown probe kind")]
    #[test_case(indoc! {r#"
        [[probe]]
        id = "P1"
        title = "t"
        kind = "postconf"
        contains = "x"
    "#}, "pb.toml:2:1: probe[0]: a `postconf` probe needs `param`"; "postconf without param")]
    #[test_case(indoc! {r#"
        [[probe]]
        id = "C1"
        title = "t"
        kind = "command"
        expect = "x"
    "#}, "pb.toml:2:1: probe[0]: a `command` probe needs `command`"; "command probe without command")]
    #[test_case(indoc! {r#"
        [[probe]]
        id = "C1"
        title = "t"
        kind = "command"
        command = "postconf -n"
        check = "spf"
        contains = "x"
    "#}, "pb.toml:7:9: probe[0].check: `check` does not apply to a probe of kind `command`\n  hint: a `command` probe takes `command`, `expect`, `contains`, `absent`"; "command probe with check")]
    #[test_case(indoc! {r#"
        [[probe]]
        id = "P1"
        title = "t"
        kind = "smtp"
        param = "x"
        expect_reply = "5x0"
    "#}, "pb.toml:6:9: probe[0].param: `param` does not apply to a probe of kind `smtp`\n  hint: a `smtp` probe takes `rcpt`, `expect_reply`\npb.toml:7:16: probe[0].expect_reply: `5x0` is not an SMTP reply code or class\n  hint: write a code like \"550\" or a class like \"5xx\""; "smtp misplaced key and bad reply")]
    #[test_case(indoc! {r#"
        [[probe]]
        id = "P1"
        title = "t"
        kind = "postconf"
        param = "Smtpd-Foo"
        expect = "yes"
    "#}, "pb.toml:6:9: probe[0].param: `Smtpd-Foo` is not a Postfix parameter name\n  hint: parameter names look like smtpd_recipient_restrictions"; "bad postconf param")]
    #[test_case(indoc! {r#"
        [[probe]]
        id = "P1"
        title = "t"
        kind = "smtp"
        [rollout]
        batch = [1, "125%", "x", 0]
        max_failures = "101%"
        per_cluster = 0
        canary = -1
        pause = "soon"
        health_timeout = "0s"
    "#}, indoc! {r#"
        pb.toml:7:13: rollout.batch[1]: percentage `125%` is over 100%
          hint: write a number of hosts like 5 or a percentage like "25%"
        pb.toml:7:21: rollout.batch[2]: `x` is neither a number nor a percentage
          hint: write a number of hosts like 5 or a percentage like "25%"
        pb.toml:7:26: rollout.batch[3]: must be at least 1, found 0
          hint: write a number of hosts like 5 or a percentage like "25%"
        pb.toml:8:16: rollout.max_failures: percentage `101%` is over 100%
          hint: write a number of hosts like 5 or a percentage like "25%"
        pb.toml:9:15: rollout.per_cluster: must be at least 1, found 0
        pb.toml:10:10: rollout.canary: must be at least 0, found -1
        pb.toml:11:9: rollout.pause: invalid duration `soon`: expected a number and a unit, e.g. "10s"
          hint: durations look like "10s", "5m" or "1h30m"
        pb.toml:12:18: rollout.health_timeout: must be longer than 0s"#}; "rollout ranges")]
    #[test_case(indoc! {r#"
        [[control]]
        id = "C1"
        title = "t"
        attr = "zimbraMtaRestriction"
        contains = "a\nmcf zimbraMtaEnableSmtpdPolicyd FALSE"
    "#}, "pb.toml:6:12: control[0].contains: the value contains a line break: it would end the zmprov batch line"; "line break in a value")]
    #[test_case(indoc! {r#"
        [[probe]]
        id = "P1"
        title = "t"
        kind = "smtp"
        rcpt = "x@a.example\r\nRSET"
    "#}, r#"pb.toml:6:8: probe[0].rcpt: must be one plain address (local@domain, no spaces, control characters or angle brackets), found "x@a.example\r\nRSET""#; "smtp rcpt injection")]
    #[test_case(indoc! {r#"
        [[probe]]
        id = "P1"
        title = "t"
        kind = "smtp"
        [rollout]
        known_rcpt = "user@a.example>\r\nDATA"
    "#}, r#"pb.toml:7:14: rollout.known_rcpt: must be one plain address (local@domain, no spaces, control characters or angle brackets), found "user@a.example>\r\nDATA""#; "known_rcpt injection")]
    fn semantic_errors(body: &str, expected: &str) {
        assert_eq!(errors_of(&format!("{HEAD}{body}")), expected);
    }

    #[test]
    fn every_duplicate_id_is_reported() {
        let text = indoc! {r#"
            name = "x"
            [[control]]
            id = "C1"
            title = "t"
            attr = "zimbraA"
            expect = "1"
            [[control]]
            id = "C1"
            title = "t"
            attr = "zimbraB"
            expect = "1"
            [[probe]]
            id = "C1"
            title = "t"
            kind = "smtp"
        "#};
        assert_eq!(
            errors_of(text),
            indoc! {"
                pb.toml:8:6: control[1].id: duplicate id `C1` (first used at pb.toml:3:6)
                pb.toml:13:6: probe[0].id: duplicate id `C1` (first used at pb.toml:3:6)"}
        );
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.toml");
        assert_eq!(
            load(&path).unwrap_err().to_string(),
            format!(
                "{0}: cannot read playbook `{0}`: No such file or directory (os error 2)",
                path.display()
            )
        );
    }

    #[test]
    fn shipped_file_on_disk_matches_the_embedded_one() {
        let on_disk = load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/playbooks/backscatter.toml"
        )))
        .unwrap();
        assert_eq!(on_disk.controls.len(), load_default().controls.len());
    }
}
