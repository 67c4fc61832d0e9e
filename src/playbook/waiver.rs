//! Waivers (`--waivers FILE`): deviations an operator has accepted, each for one control
//! or probe of the playbook on one inventory host or cluster, with a justification and
//! an expiry date. Loading validates the file against the playbook and the inventory
//! (every error at once, before anything is contacted); [`Waivers::lookup`] says which
//! waiver concerns a host's result on a given day.
//!
//! What a waiver does not do: it names controls and probes only, never a finding, so a
//! precondition (`PRE-POLICY-SPAWN-USER`) or a block (`BS-01-BLOCKED`) cannot be waived
//! (such an id is refused at load); it does not turn a result the tool could not decide
//! (`error`) into an accepted one; and a `dns` probe (a domain's own DNS, reported per
//! cluster) is not waivable. The verdicts that use it live in `engine::verdict`; apply
//! leaves a waived control as it is (`engine::changes`).

use std::collections::BTreeSet;
use std::path::Path;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;

use super::select::{self, UnmetDependency};
use super::{Playbook, ProbeKind, Scope};
use crate::config_error::{ConfigError, ConfigErrors, Source};
use crate::inventory::Host;

/// The waiver of `--waivers` that concerns one result: an accepted deviation, with its
/// justification and expiry, or one whose waiver ran out (`expired`: it counts again).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WaiverRef {
    pub justification: String,
    /// The last day (UTC) the waiver applies, `YYYY-MM-DD`.
    pub expires: String,
    /// Where it is written: `FILE:LINE`.
    pub source: String,
    /// `host NAME` or `cluster NAME`: what the waiver names.
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// The waiver ran out before this run: the deviation counts as if it had none.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
}

impl WaiverRef {
    /// Still in force on the run's day.
    pub fn is_live(&self) -> bool {
        !self.expired
    }
}

/// The waiver file as written (unknown keys rejected).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWaiverFile {
    #[serde(default)]
    waiver: Vec<Spanned<RawWaiver>>,
}

/// One `[[waiver]]` table as written; `load` checks every key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWaiver {
    control: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    cluster: Option<Spanned<String>>,
    justification: Option<Spanned<String>>,
    /// A TOML date (`2027-03-31`) or the same as a string.
    expires: Option<Spanned<toml::Value>>,
    approved_by: Option<String>,
}

/// What a waiver covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaiverScope {
    /// One inventory host, by its name.
    Host(String),
    /// Every host of one inventory cluster.
    Cluster(String),
}

impl WaiverScope {
    /// Whether the host `host` of cluster `cluster` is covered.
    pub fn covers(&self, host: &str, cluster: &str) -> bool {
        match self {
            WaiverScope::Host(h) => h == host,
            WaiverScope::Cluster(c) => c == cluster,
        }
    }

    fn describe(&self) -> String {
        match self {
            WaiverScope::Host(h) => format!("host {h}"),
            WaiverScope::Cluster(c) => format!("cluster {c}"),
        }
    }
}

/// One validated waiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiver {
    /// The control or probe id, spelled as the playbook spells it.
    pub control: String,
    pub scope: WaiverScope,
    pub justification: String,
    /// The last day (UTC) it applies.
    pub expires: Date,
    pub approved_by: Option<String>,
    /// `FILE:LINE` of its `control` key, for the report.
    pub source: String,
}

impl Waiver {
    /// In force on `today` (the expiry day included).
    pub fn is_live(&self, today: Date) -> bool {
        today <= self.expires
    }

    fn to_ref(&self, today: Date) -> WaiverRef {
        WaiverRef {
            justification: self.justification.clone(),
            expires: self.expires.to_string(),
            source: self.source.clone(),
            scope: self.scope.describe(),
            approved_by: self.approved_by.clone(),
            expired: !self.is_live(today),
        }
    }
}

/// The waivers a run was given, and the day (UTC) they are judged on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waivers {
    pub waivers: Vec<Waiver>,
    /// The run's day: a waiver whose `expires` is before it has run out.
    pub today: Date,
}

impl Default for Waivers {
    /// No waivers (the day does not matter then).
    fn default() -> Self {
        Waivers {
            waivers: Vec::new(),
            today: Date::constant(1970, 1, 1),
        }
    }
}

impl Waivers {
    /// The waiver that concerns result `id` of host `host` (cluster `cluster`): a live one
    /// if any (one naming the host before one naming its cluster, then the one that runs
    /// longest), else the expired one that ran out last, so that the report can say the
    /// deviation counts again since then.
    pub fn lookup(&self, host: &str, cluster: &str, id: &str) -> Option<WaiverRef> {
        self.waivers
            .iter()
            .filter(|w| w.control.eq_ignore_ascii_case(id) && w.scope.covers(host, cluster))
            .max_by_key(|w| {
                (
                    w.is_live(self.today),
                    matches!(w.scope, WaiverScope::Host(_)),
                    w.expires,
                )
            })
            .map(|w| w.to_ref(self.today))
    }

    /// What apply may not do with these waivers on the targeted `hosts`: a control that
    /// stays as it is (waived) must not be what another control needs, the same rule as
    /// `--skip-controls` (`select::unmet_dependency`). A global-scope control waived on
    /// one host stays as it is in that host's whole cluster (the cluster shares one
    /// value), so it is held for every host of the cluster. Judged on the waivers alone,
    /// before anything is contacted: one message per cluster that breaks the rule.
    pub fn apply_conflicts(&self, playbook: &Playbook, hosts: &[Host]) -> Vec<String> {
        let live: Vec<&Waiver> = self
            .waivers
            .iter()
            .filter(|w| w.is_live(self.today))
            .collect();
        if live.is_empty() {
            return Vec::new();
        }
        let is_global = |id: &str| {
            playbook
                .controls
                .iter()
                .any(|c| c.id == id && c.scope == Scope::Global)
        };
        // One pass: the global controls each cluster holds because a waiver covers one of
        // its targeted hosts (hosts × waivers, not hosts² at fleet scale).
        let mut cluster_held: BTreeSet<(&str, &str)> = BTreeSet::new();
        for h in hosts {
            for w in live.iter().filter(|w| w.scope.covers(&h.name, &h.cluster)) {
                if is_global(&w.control) {
                    cluster_held.insert((h.cluster.as_str(), w.control.as_str()));
                }
            }
        }
        let mut out = Vec::new();
        let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
        for h in hosts {
            let held = |id: &str| match is_global(id) {
                true => cluster_held.contains(&(h.cluster.as_str(), id)),
                false => live
                    .iter()
                    .any(|w| w.control == id && w.scope.covers(&h.name, &h.cluster)),
            };
            let Some(UnmetDependency { dependent, enabler }) =
                select::unmet_dependency(playbook, |id| !held(id))
            else {
                continue;
            };
            if !seen.insert((h.cluster.clone(), dependent.clone())) {
                continue;
            }
            out.push(format!(
                "a waiver keeps {enabler} (the policy daemon) as it is on `{host}` (cluster `{cluster}`) while apply would still make {dependent} add `{check}`: {why}; waive {dependent} there too, or neither",
                host = h.name,
                cluster = h.cluster,
                check = select::POLICY_CHECK,
                why = select::WHY_DEPENDENT,
            ));
        }
        out
    }
}

/// Reads and validates a waiver file against the playbook (its full list of controls and
/// probes, before `--controls`) and the inventory's hosts; `today` is the run's day.
pub fn load(
    path: &Path,
    playbook: &Playbook,
    hosts: &[Host],
    today: Date,
) -> Result<Waivers, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::file(
            path,
            format!("cannot read waiver file `{}`: {e}", path.display()),
        )
    })?;
    parse(&text, path, playbook, hosts, today)
}

/// Validates waiver file `text` (`origin` names it in errors and in each waiver's source).
pub fn parse(
    text: &str,
    origin: &Path,
    playbook: &Playbook,
    hosts: &[Host],
    today: Date,
) -> Result<Waivers, ConfigErrors> {
    let src = Source::new(origin, text);
    let raw: RawWaiverFile = src.deserialize()?;
    let mut errors = Vec::new();
    let mut waivers: Vec<Waiver> = Vec::new();
    for (i, w) in raw.waiver.iter().enumerate() {
        if let Some(v) = validate(&src, i, w, playbook, hosts, &mut errors) {
            if let Some(first) = waivers
                .iter()
                .find(|x| x.control == v.control && x.scope == v.scope)
            {
                let span = w.get_ref().control.as_ref().map_or(w.span(), |c| c.span());
                errors.push(
                    src.error(
                        span,
                        format!("waiver[{i}]"),
                        format!(
                            "a second waiver for {} on {} (the first is at {})",
                            v.control,
                            v.scope.describe(),
                            first.source
                        ),
                    )
                    .with_hint("keep one waiver per control and host or cluster"),
                );
                continue;
            }
            waivers.push(v);
        }
    }
    if errors.is_empty() {
        Ok(Waivers { waivers, today })
    } else {
        errors.sort_by_key(|e| e.position.map(|p| (p.line, p.column)));
        Err(ConfigErrors(errors))
    }
}

/// One `[[waiver]]` table, checked; every problem goes to `errors`.
fn validate(
    src: &Source<'_>,
    i: usize,
    raw: &Spanned<RawWaiver>,
    playbook: &Playbook,
    hosts: &[Host],
    errors: &mut Vec<ConfigError>,
) -> Option<Waiver> {
    let at = Table { src, i, raw };
    let w = raw.get_ref();
    let before = errors.len();
    let control = waiver_control(&at, playbook, errors);
    let scope = waiver_scope(&at, hosts, errors);
    let justification = waiver_justification(&at, errors);
    let expires = waiver_expires(&at, errors);
    if errors.len() > before {
        return None;
    }
    let control_span = w.control.as_ref().map_or(raw.span(), |c| c.span());
    let line = src.position(control_span.start).line;
    Some(Waiver {
        control: control?,
        scope: scope?,
        justification: justification?,
        expires: expires?,
        approved_by: w
            .approved_by
            .as_ref()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty()),
        source: format!("{}:{line}", src.path.display()),
    })
}

/// Where a `[[waiver]]` table is, for its errors: the file, its index, its span.
struct Table<'a> {
    src: &'a Source<'a>,
    i: usize,
    raw: &'a Spanned<RawWaiver>,
}

impl Table<'_> {
    /// The key path of one of the table's keys, `waiver[I].K`.
    fn key(&self, k: &str) -> String {
        format!("waiver[{}].{k}", self.i)
    }

    /// The error for a missing key `k` (at the table), saying `what` it holds.
    fn missing(&self, k: &str, what: &str) -> ConfigError {
        self.src.error(
            self.raw.span(),
            self.key(k),
            format!("missing `{k}`: {what}"),
        )
    }
}

/// `control`: a control or probe of the playbook a waiver can cover, in the playbook's
/// spelling.
fn waiver_control(
    at: &Table<'_>,
    playbook: &Playbook,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    match &at.raw.get_ref().control {
        None => {
            errors.push(at.missing("control", "the control or probe id the waiver accepts"));
            None
        }
        Some(c) => match known_id(playbook, c.get_ref()) {
            Ok(id) => Some(id),
            Err(e) => {
                errors.push(
                    at.src
                        .error(c.span(), at.key("control"), e.0)
                        .with_hint(e.1),
                );
                None
            }
        },
    }
}

/// `host` or `cluster`, exactly one of them, naming a host or a cluster of the
/// inventory.
fn waiver_scope(
    at: &Table<'_>,
    hosts: &[Host],
    errors: &mut Vec<ConfigError>,
) -> Option<WaiverScope> {
    let (src, w) = (at.src, at.raw.get_ref());
    match (&w.host, &w.cluster) {
        (Some(_), Some(c)) => {
            errors.push(
                src.error(
                    c.span(),
                    at.key("cluster"),
                    "`host` and `cluster` are both set: a waiver names one or the other",
                )
                .with_hint("write one waiver per host, or one for the whole cluster"),
            );
            None
        }
        (None, None) => {
            errors.push(
                at.missing("host", "set `host` (one inventory host) or `cluster` (every host of an inventory cluster)")
                    .with_hint("a waiver for the whole fleet is not a waiver: leave the control out with --skip-controls"),
            );
            None
        }
        (Some(h), None) => {
            if hosts.iter().any(|x| x.name == *h.get_ref()) {
                Some(WaiverScope::Host(h.get_ref().clone()))
            } else {
                errors.push(
                    src.error(
                        h.span(),
                        at.key("host"),
                        format!("`{}` is not a host of the inventory", h.get_ref()),
                    )
                    .with_hint("use the host's inventory name (`carbonio-fleet inventory list` shows them)"),
                );
                None
            }
        }
        (None, Some(c)) => {
            if hosts.iter().any(|x| x.cluster == *c.get_ref()) {
                Some(WaiverScope::Cluster(c.get_ref().clone()))
            } else {
                let mut clusters: Vec<&str> = hosts.iter().map(|h| h.cluster.as_str()).collect();
                clusters.sort_unstable();
                clusters.dedup();
                errors.push(
                    src.error(
                        c.span(),
                        at.key("cluster"),
                        format!("`{}` is not a cluster of the inventory", c.get_ref()),
                    )
                    .with_hint(format!("its clusters: {}", clusters.join(", "))),
                );
                None
            }
        }
    }
}

/// `justification`: set and not blank (it goes into every report), trimmed.
fn waiver_justification(at: &Table<'_>, errors: &mut Vec<ConfigError>) -> Option<String> {
    match &at.raw.get_ref().justification {
        Some(j) if !j.get_ref().trim().is_empty() => Some(j.get_ref().trim().to_string()),
        Some(j) => {
            errors.push(at.src.error(
                j.span(),
                at.key("justification"),
                "the justification is empty: say why the deviation is accepted (it goes into every report)",
            ));
            None
        }
        None => {
            errors.push(at.missing(
                "justification",
                "say why the deviation is accepted (it goes into every report)",
            ));
            None
        }
    }
}

/// `expires`: the last day the waiver applies, a date (a waiver without an end is
/// refused).
fn waiver_expires(at: &Table<'_>, errors: &mut Vec<ConfigError>) -> Option<Date> {
    match &at.raw.get_ref().expires {
        None => {
            errors.push(
                at.missing("expires", "the last day the waiver applies").with_hint(
                    "e.g. expires = 2027-03-31; a waiver without an end is a control nobody checks",
                ),
            );
            None
        }
        Some(v) => match parse_date(v.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                errors.push(at.src.error(v.span(), at.key("expires"), e).with_hint(
                    "a date: expires = 2027-03-31 (the waiver applies through that day, UTC)",
                ));
                None
            }
        },
    }
}

/// The playbook's spelling of control or probe `id`; `Err((message, hint))` when it names
/// none, or names one a waiver cannot cover.
fn known_id(playbook: &Playbook, id: &str) -> Result<String, (String, String)> {
    if let Some(c) = playbook
        .controls
        .iter()
        .find(|c| c.id.eq_ignore_ascii_case(id))
    {
        return Ok(c.id.clone());
    }
    if let Some(p) = playbook
        .probes
        .iter()
        .find(|p| p.id.eq_ignore_ascii_case(id))
    {
        if matches!(p.kind, ProbeKind::Dns { .. }) {
            return Err((
                format!(
                    "`{}` is a domain posture probe (SPF/DKIM/DMARC): a waiver covers what a host does, not a domain's DNS",
                    p.id
                ),
                format!("to leave it out of the run, use --skip-controls {}", p.id),
            ));
        }
        return Ok(p.id.clone());
    }
    let known: Vec<&str> = playbook
        .controls
        .iter()
        .map(|c| c.id.as_str())
        .chain(
            playbook
                .probes
                .iter()
                .filter(|p| !matches!(p.kind, ProbeKind::Dns { .. }))
                .map(|p| p.id.as_str()),
        )
        .collect();
    Err((
        format!(
            "`{id}` is not a control or probe of playbook `{}`",
            playbook.name
        ),
        format!(
            "it has: {}; findings such as preconditions (PRE-POLICY-SPAWN-USER) and blocks (…-BLOCKED) are never waivable",
            known.join(", ")
        ),
    ))
}

/// A TOML date, or a string holding one (`YYYY-MM-DD`).
fn parse_date(v: &toml::Value) -> Result<Date, String> {
    let text = match v {
        toml::Value::String(s) => s.trim().to_string(),
        toml::Value::Datetime(dt) => {
            if dt.time.is_some() || dt.offset.is_some() {
                return Err(format!(
                    "`{dt}` is a date and time: the waiver applies through a whole day"
                ));
            }
            dt.to_string()
        }
        other => return Err(format!("expected a date, found {}", other.type_str())),
    };
    text.parse::<Date>()
        .map_err(|e| format!("`{text}` is not a date (YYYY-MM-DD): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use indoc::indoc;

    fn hosts() -> Vec<Host> {
        let mut out = Vec::new();
        for (name, cluster) in [
            ("mta1.acme", "acme"),
            ("mta2.acme", "acme"),
            ("mx1.beta", "beta"),
        ] {
            let mut h = Host::for_test(name);
            h.cluster = cluster.into();
            out.push(h);
        }
        out
    }

    fn day(s: &str) -> Date {
        s.parse().unwrap()
    }

    fn parse_at(text: &str, today: &str) -> Result<Waivers, ConfigErrors> {
        let pb = crate::playbook::load_default();
        parse(text, Path::new("waivers.toml"), &pb, &hosts(), day(today))
    }

    const TWO: &str = indoc! {r#"
        # accepted deviations
        [[waiver]]
        control = "bs-03"
        host = "mta2.acme"
        justification = "ACME relays forged-looking senders for its CRM (ticket C-1042)"
        expires = 2027-03-31
        approved_by = "ciso@acme"

        [[waiver]]
        control = "SMTP-01"
        cluster = "beta"
        justification = "beta's outside probe is filtered upstream"
        expires = "2026-12-31"
    "#};

    #[test]
    fn a_valid_file_loads_with_canonical_ids_and_sources() {
        let w = parse_at(TWO, "2026-06-01").unwrap();
        assert_eq!(w.waivers.len(), 2);
        let first = &w.waivers[0];
        assert_eq!(first.control, "BS-03", "spelled as the playbook spells it");
        assert_eq!(first.scope, WaiverScope::Host("mta2.acme".into()));
        assert_eq!(first.expires, day("2027-03-31"));
        assert_eq!(first.approved_by.as_deref(), Some("ciso@acme"));
        assert_eq!(first.source, "waivers.toml:3");
        assert_eq!(w.waivers[1].scope, WaiverScope::Cluster("beta".into()));
        assert_eq!(w.waivers[1].expires, day("2026-12-31"));
    }

    #[test]
    fn lookup_matches_host_and_cluster_and_nothing_else() {
        let w = parse_at(TWO, "2026-06-01").unwrap();
        let r = w.lookup("mta2.acme", "acme", "BS-03").unwrap();
        assert!(r.is_live());
        assert_eq!(r.scope, "host mta2.acme");
        assert_eq!(r.source, "waivers.toml:3");
        assert_eq!(w.lookup("mta1.acme", "acme", "BS-03"), None, "another host");
        assert_eq!(
            w.lookup("mta2.acme", "acme", "BS-02"),
            None,
            "another control"
        );
        let r = w.lookup("mx1.beta", "beta", "smtp-01").unwrap();
        assert_eq!(r.scope, "cluster beta");
    }

    #[test]
    fn a_waiver_applies_through_its_expiry_day_and_not_after() {
        let on_the_day = parse_at(TWO, "2027-03-31").unwrap();
        assert!(
            on_the_day
                .lookup("mta2.acme", "acme", "BS-03")
                .unwrap()
                .is_live()
        );
        let after = parse_at(TWO, "2027-04-01").unwrap();
        let r = after.lookup("mta2.acme", "acme", "BS-03").unwrap();
        assert!(r.expired, "expired waivers are still reported, as expired");
        assert_eq!(r.expires, "2027-03-31");
    }

    #[test]
    fn a_live_waiver_wins_over_an_expired_one_and_the_host_over_the_cluster() {
        let text = indoc! {r#"
            [[waiver]]
            control = "BS-02"
            host = "mta1.acme"
            justification = "old"
            expires = 2026-01-31

            [[waiver]]
            control = "BS-02"
            cluster = "acme"
            justification = "cluster-wide"
            expires = 2026-12-31

            [[waiver]]
            control = "BS-03"
            cluster = "acme"
            justification = "cluster-wide"
            expires = 2026-12-31

            [[waiver]]
            control = "BS-03"
            host = "mta1.acme"
            justification = "this host"
            expires = 2026-07-31
        "#};
        let w = parse_at(text, "2026-06-01").unwrap();
        let r = w.lookup("mta1.acme", "acme", "BS-02").unwrap();
        assert_eq!(
            (r.justification.as_str(), r.expired),
            ("cluster-wide", false)
        );
        let r = w.lookup("mta1.acme", "acme", "BS-03").unwrap();
        assert_eq!(r.justification, "this host");
    }

    #[test]
    fn every_error_is_reported_at_once_with_its_line_and_key() {
        let text = indoc! {r#"
            [[waiver]]
            control = "BS-9"
            host = "mta2.acme"
            justification = "x"
            expires = 2027-03-31

            [[waiver]]
            control = "BS-02"
            host = "nosuch"
            justification = "x"
            expires = 2027-03-31

            [[waiver]]
            control = "BS-02"
            cluster = "gamma"
            expires = "31/03/2027"

            [[waiver]]
            control = "BS-02"
            host = "mta1.acme"
            cluster = "acme"
            justification = "   "
            expires = 2027-03-31T10:00:00Z

            [[waiver]]
            control = "PRE-POLICY-SPAWN-USER"
            cluster = "acme"
            justification = "x"
            expires = 2027-03-31

            [[waiver]]
            control = "DOM-DMARC"
            cluster = "acme"
            justification = "x"
            expires = 2027-03-31

            [[waiver]]
            control = "BS-02"
            justification = "x"
        "#};
        let errs = parse_at(text, "2026-06-01").unwrap_err();
        let lines: Vec<String> = errs.errors().iter().map(ToString::to_string).collect();
        let expect = [
            "waivers.toml:2:11: waiver[0].control: `BS-9` is not a control or probe of playbook `backscatter-hardening`",
            "waivers.toml:9:8: waiver[1].host: `nosuch` is not a host of the inventory",
            "waivers.toml:13:1: waiver[2].justification: missing `justification`",
            "waivers.toml:15:11: waiver[2].cluster: `gamma` is not a cluster of the inventory",
            "waivers.toml:16:11: waiver[2].expires: `31/03/2027` is not a date (YYYY-MM-DD)",
            "waivers.toml:21:11: waiver[3].cluster: `host` and `cluster` are both set",
            "waivers.toml:22:17: waiver[3].justification: the justification is empty",
            "waivers.toml:23:11: waiver[3].expires: `2027-03-31T10:00:00Z` is a date and time",
            "waivers.toml:26:11: waiver[4].control: `PRE-POLICY-SPAWN-USER` is not a control or probe",
            "waivers.toml:32:11: waiver[5].control: `DOM-DMARC` is a domain posture probe",
            "waivers.toml:37:1: waiver[6].expires: missing `expires`",
            "waivers.toml:37:1: waiver[6].host: missing `host`",
        ];
        for e in expect {
            assert!(
                lines.iter().any(|l| l.starts_with(e)),
                "no error starting with\n  {e}\nin\n  {}",
                lines.join("\n  ")
            );
        }
        assert_eq!(lines.len(), expect.len(), "{}", lines.join("\n"));
        assert!(
            lines[8].contains("never waivable"),
            "a finding id says why: {}",
            lines[8]
        );
    }

    #[test]
    fn unknown_keys_and_duplicates_are_errors() {
        let e = parse_at(
            "[[waiver]]\ncontrol = \"BS-02\"\nhots = \"x\"\n",
            "2026-06-01",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("waivers.toml:3:1:"), "{e}");
        assert!(e.contains("hots"), "{e}");
        let dup = format!(
            "{TWO}\n[[waiver]]\ncontrol = \"BS-03\"\nhost = \"mta2.acme\"\njustification = \"again\"\nexpires = 2027-01-01\n"
        );
        let e = parse_at(&dup, "2026-06-01").unwrap_err().to_string();
        assert!(
            e.contains(
                "a second waiver for BS-03 on host mta2.acme (the first is at waivers.toml:3)"
            ),
            "{e}"
        );
    }

    #[test]
    fn apply_refuses_a_waived_policy_daemon_under_a_restriction_that_needs_it() {
        let pb = crate::playbook::load_default();
        let bs01_on_mta2 = indoc! {r#"
            [[waiver]]
            control = "BS-01"
            host = "mta2.acme"
            justification = "policyd conflicts with the CRM relay"
            expires = 2027-03-31
        "#};
        let w = parse_at(bs01_on_mta2, "2026-06-01").unwrap();
        let conflicts = w.apply_conflicts(&pb, &hosts());
        assert_eq!(conflicts.len(), 1, "one per cluster: {conflicts:?}");
        assert!(
            conflicts[0].starts_with("a waiver keeps BS-01 (the policy daemon) as it is on `mta1.acme` (cluster `acme`) while apply would still make BS-04 add `check_policy_service`"),
            "a global control waived on one host holds the whole cluster: {}",
            conflicts[0]
        );
        // Both waived: nothing adds the restriction, nothing to refuse.
        let both = format!(
            "{bs01_on_mta2}\n[[waiver]]\ncontrol = \"BS-04\"\nhost = \"mta2.acme\"\njustification = \"same\"\nexpires = 2027-03-31\n"
        );
        let w = parse_at(&both, "2026-06-01").unwrap();
        assert!(w.apply_conflicts(&pb, &hosts()).is_empty());
        // An expired BS-01 waiver holds nothing back: BS-01 is brought to compliance.
        let w = parse_at(bs01_on_mta2, "2027-04-01").unwrap();
        assert!(w.apply_conflicts(&pb, &hosts()).is_empty());
        // Waiving only the dependent is fine (the daemon alone breaks nothing).
        let w = parse_at(&both.replace("BS-01", "BS-02"), "2026-06-01").unwrap();
        assert!(w.apply_conflicts(&pb, &hosts()).is_empty());
    }
}
