//! The playbook file as written: serde structs mirroring the TOML, unknown keys
//! rejected. Values that `load` checks further keep their byte span so that an error can
//! point at them. No defaults are applied here.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_spanned::Spanned;

use super::{Precondition, ProbeFrom, Scope, Severity};

/// A whole playbook file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlaybook {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    /// `[[control]]` tables.
    #[serde(default)]
    pub control: Vec<Spanned<RawControl>>,
    /// `[[probe]]` tables.
    #[serde(default)]
    pub probe: Vec<Spanned<RawProbe>>,
    pub rollout: Option<RawRollout>,
    /// `[fix]`: opt-in repairs of preconditions.
    pub fix: Option<RawFix>,
    /// Inventory `vars` keys that label hosts in every report (e.g. `customer`).
    #[serde(default)]
    pub labels: Vec<Spanned<String>>,
}

/// `[fix]`: repairs the tool may make when a precondition blocks a control.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFix {
    /// `PRE-POLICY-SPAWN-USER`: set the policy entry's `user=` to the service user
    /// (what `apply --fix-spawn-user` does).
    pub spawn_user: Option<bool>,
}

/// One `[[control]]`: the desired state of one attribute.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    pub id: Spanned<String>,
    pub title: Spanned<String>,
    pub attr: Spanned<String>,
    pub scope: Option<Scope>,
    pub expect: Option<Spanned<String>>,
    pub contains: Option<Spanned<String>>,
    pub absent: Option<Spanned<String>>,
    pub severity: Option<Severity>,
    pub restart: Option<bool>,
    pub precondition: Option<Precondition>,
    /// Why the control matters, for the reports.
    pub rationale: Option<Spanned<String>>,
    /// How to fix it by hand (apply does it for you), for the reports.
    pub remediation: Option<Spanned<String>>,
}

/// One `[[probe]]`: read-only evidence. Which keys apply depends on `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub id: Spanned<String>,
    pub title: Spanned<String>,
    pub kind: Spanned<String>,
    /// postconf: the parameter.
    pub param: Option<Spanned<String>>,
    /// smtp: the recipient to try.
    pub rcpt: Option<Spanned<String>>,
    /// command: the read-only command line.
    pub command: Option<Spanned<String>>,
    pub expect: Option<Spanned<String>>,
    pub contains: Option<Spanned<String>>,
    pub absent: Option<Spanned<String>>,
    /// smtp: the reply class, "5xx" or an exact code like "550".
    pub expect_reply: Option<Spanned<String>>,
    /// dns: `spf`, `dkim` or `dmarc`.
    pub check: Option<Spanned<String>>,
    pub severity: Option<Severity>,
    /// Why the probe matters, for the reports.
    pub rationale: Option<Spanned<String>>,
    /// What to do when it fails, for the reports.
    pub remediation: Option<Spanned<String>>,
}

/// `[rollout]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRollout {
    pub batch: Option<Spanned<RawBatch>>,
    pub per_cluster: Option<Spanned<i64>>,
    pub canary: Option<Spanned<i64>>,
    pub pause: Option<Spanned<String>>,
    pub max_failures: Option<Spanned<RawAmount>>,
    pub restart: Option<Spanned<RawRestart>>,
    pub health_timeout: Option<Spanned<String>>,
    pub probe_from: Option<ProbeFrom>,
    pub only_if_changed: Option<bool>,
    pub policy_socket: Option<bool>,
    pub rollback: Option<bool>,
    pub known_rcpt: Option<Spanned<String>>,
}

/// `rollout.restart` as written: the current values and the deprecated ones `load` maps
/// with a warning (`auto` → `reload`; `zmcontrol`, `systemd-mta` → `full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawRestart {
    Reload,
    Full,
    None,
    Auto,
    Zmcontrol,
    SystemdMta,
}

/// `5` or `"25%"` as written; `load` checks the range and the `%`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawAmount {
    Int(i64),
    Str(String),
}

/// `batch = 5`, `batch = "10%"` or `batch = [1, 5, "25%"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawBatch {
    One(RawAmount),
    Many(Vec<Spanned<RawAmount>>),
}

const AMOUNT: &str = "a number of hosts or a percentage like \"25%\"";

struct AmountVisitor;

impl<'de> Visitor<'de> for AmountVisitor {
    type Value = RawAmount;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(AMOUNT)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawAmount, E> {
        Ok(RawAmount::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawAmount, E> {
        i64::try_from(v)
            .map(RawAmount::Int)
            .map_err(|_| E::custom("number too large"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAmount, E> {
        Ok(RawAmount::Str(v.to_owned()))
    }
}

impl<'de> Deserialize<'de> for RawAmount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AmountVisitor)
    }
}

struct BatchVisitor;

impl<'de> Visitor<'de> for BatchVisitor {
    type Value = RawBatch;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{AMOUNT}, or a list of those")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawBatch, E> {
        AmountVisitor.visit_i64(v).map(RawBatch::One)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawBatch, E> {
        AmountVisitor.visit_u64(v).map(RawBatch::One)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawBatch, E> {
        AmountVisitor.visit_str(v).map(RawBatch::One)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawBatch, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<RawAmount>>()? {
            items.push(item);
        }
        Ok(RawBatch::Many(items))
    }
}

impl<'de> Deserialize<'de> for RawBatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BatchVisitor)
    }
}
