//! `--limit`: choosing the hosts of a run from the inventory.
//!
//! A limit is a comma-separated list of patterns: a host name, a group name, a glob over
//! host names (`mail*.acme.example`), `@group`, `cluster:NAME` (the hosts of one
//! Carbonio cluster), and any of these prefixed with `!` to exclude. Without an including pattern, every host is included before exclusions.
//! The selection keeps inventory order. A pattern that can match nothing by construction
//! (an unknown name or group) and an empty selection are errors: a typo must never turn
//! a run into a silent no-op.

use globset::{Glob, GlobMatcher};

use super::{Host, Inventory};

/// Why a `--limit` could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("--limit `{limit}` matches no host (the inventory has {count} hosts: {names})")]
    NothingSelected {
        limit: String,
        count: usize,
        /// The first host names, for orientation.
        names: String,
    },
    #[error("--limit `{limit}`: `{pattern}` names no host and no group")]
    UnknownName { limit: String, pattern: String },
    #[error("--limit `{limit}`: unknown group `@{group}` (groups: {groups})")]
    UnknownGroup {
        limit: String,
        group: String,
        groups: String,
    },
    #[error("--limit `{limit}`: invalid glob `{pattern}`: {reason}")]
    BadGlob {
        limit: String,
        pattern: String,
        reason: String,
    },
    #[error("--limit `{limit}`: empty pattern (check for a stray comma)")]
    EmptyPattern { limit: String },
    #[error("--limit `{limit}`: unknown cluster `{cluster}` (clusters: {clusters})")]
    UnknownCluster {
        limit: String,
        cluster: String,
        clusters: String,
    },
}

enum Matcher<'a> {
    Name(&'a str),
    Group(&'a str),
    Cluster(&'a str),
    Glob(GlobMatcher),
}

impl Matcher<'_> {
    fn is_match(&self, host: &Host) -> bool {
        match self {
            Matcher::Name(n) => host.name == *n || host.groups.iter().any(|g| g == n),
            Matcher::Group(g) => host.groups.iter().any(|hg| hg == g),
            Matcher::Cluster(c) => host.cluster == *c,
            Matcher::Glob(m) => m.is_match(&host.name),
        }
    }
}

/// The hosts selected by `limit` (all hosts when `None`), in inventory order.
pub fn select<'a>(inv: &'a Inventory, limit: Option<&str>) -> Result<Vec<&'a Host>, LimitError> {
    let Some(limit) = limit else {
        return non_empty(inv, inv.hosts.iter().collect(), "");
    };
    let mut include = Vec::new();
    let mut exclude = Vec::new();
    for raw in limit.split(',') {
        let pattern = raw.trim();
        let (negated, body) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, pattern),
        };
        if body.is_empty() {
            return Err(LimitError::EmptyPattern {
                limit: limit.to_owned(),
            });
        }
        let matcher = matcher(inv, limit, body)?;
        if negated {
            exclude.push(matcher);
        } else {
            include.push(matcher);
        }
    }
    let selected = inv
        .hosts
        .iter()
        .filter(|h| include.is_empty() || include.iter().any(|m| m.is_match(h)))
        .filter(|h| !exclude.iter().any(|m| m.is_match(h)))
        .collect();
    non_empty(inv, selected, limit)
}

fn matcher<'p>(inv: &Inventory, limit: &str, body: &'p str) -> Result<Matcher<'p>, LimitError> {
    if let Some(cluster) = body.strip_prefix("cluster:") {
        if !inv.hosts.iter().any(|h| h.cluster == cluster) {
            let mut clusters: Vec<&str> = inv.hosts.iter().map(|h| h.cluster.as_str()).collect();
            clusters.sort_unstable();
            clusters.dedup();
            return Err(LimitError::UnknownCluster {
                limit: limit.to_owned(),
                cluster: cluster.to_owned(),
                clusters: clusters.join(", "),
            });
        }
        return Ok(Matcher::Cluster(cluster));
    }
    if let Some(group) = body.strip_prefix('@') {
        if !inv.groups.iter().any(|g| g == group) {
            return Err(LimitError::UnknownGroup {
                limit: limit.to_owned(),
                group: group.to_owned(),
                groups: if inv.groups.is_empty() {
                    "none".to_owned()
                } else {
                    inv.groups.join(", ")
                },
            });
        }
        return Ok(Matcher::Group(group));
    }
    if body.contains(['*', '?', '[', '{']) {
        let glob = Glob::new(body).map_err(|e| LimitError::BadGlob {
            limit: limit.to_owned(),
            pattern: body.to_owned(),
            reason: e.kind().to_string(),
        })?;
        return Ok(Matcher::Glob(glob.compile_matcher()));
    }
    let known = inv.hosts.iter().any(|h| h.name == body) || inv.groups.iter().any(|g| g == body);
    if !known {
        return Err(LimitError::UnknownName {
            limit: limit.to_owned(),
            pattern: body.to_owned(),
        });
    }
    Ok(Matcher::Name(body))
}

fn non_empty<'a>(
    inv: &'a Inventory,
    selected: Vec<&'a Host>,
    limit: &str,
) -> Result<Vec<&'a Host>, LimitError> {
    if !selected.is_empty() {
        return Ok(selected);
    }
    const SHOWN: usize = 8;
    let mut names: Vec<&str> = inv
        .hosts
        .iter()
        .take(SHOWN)
        .map(|h| h.name.as_str())
        .collect();
    let more = inv.hosts.len().saturating_sub(SHOWN);
    let more = format!("and {more} more");
    if inv.hosts.len() > SHOWN {
        names.push(&more);
    }
    Err(LimitError::NothingSelected {
        limit: limit.to_owned(),
        count: inv.hosts.len(),
        names: names.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    fn host(name: &str, groups: &[&str]) -> Host {
        Host {
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            ..Host::for_test(name)
        }
    }

    fn inventory() -> Inventory {
        Inventory {
            files: vec![],
            hosts: vec![
                host("mx1.acme.example", &["acme", "eu"]),
                host("mx2.acme.example", &["acme"]),
                host("mail.beta.example", &["beta", "eu"]),
                host("edge", &[]),
            ],
            groups: vec!["acme".into(), "beta".into(), "eu".into()],
            dns_servers: vec![],
        }
    }

    #[test_case(None, Ok(vec!["mx1.acme.example", "mx2.acme.example", "mail.beta.example", "edge"]); "no limit")]
    #[test_case(Some("edge"), Ok(vec!["edge"]); "by name")]
    #[test_case(Some("edge, mx2.acme.example"), Ok(vec!["mx2.acme.example", "edge"]); "inventory order kept")]
    #[test_case(Some("mx*"), Ok(vec!["mx1.acme.example", "mx2.acme.example"]); "glob")]
    #[test_case(Some("@eu"), Ok(vec!["mx1.acme.example", "mail.beta.example"]); "group")]
    #[test_case(Some("beta"), Ok(vec!["mail.beta.example"]); "bare group name")]
    #[test_case(Some("@acme,!mx1*"), Ok(vec!["mx2.acme.example"]); "include then exclude")]
    #[test_case(Some("!@eu"), Ok(vec!["mx2.acme.example", "edge"]); "exclusion only starts from all")]
    #[test_case(Some("*.example,!@acme"), Ok(vec!["mail.beta.example"]); "glob minus group")]
    fn selections(limit: Option<&str>, expected: Result<Vec<&str>, LimitError>) {
        let inv = inventory();
        let got = select(&inv, limit)
            .map(|hs| hs.into_iter().map(|h| h.name.as_str()).collect::<Vec<_>>());
        assert_eq!(got, expected);
    }

    #[test_case("mx3", "--limit `mx3`: `mx3` names no host and no group"; "unknown name")]
    #[test_case("@us", "--limit `@us`: unknown group `@us` (groups: acme, beta, eu)"; "unknown group")]
    #[test_case("mx9*", "--limit `mx9*` matches no host (the inventory has 4 hosts: mx1.acme.example, mx2.acme.example, mail.beta.example, edge)"; "glob matches nothing")]
    #[test_case("@acme,!@acme", "--limit `@acme,!@acme` matches no host (the inventory has 4 hosts: mx1.acme.example, mx2.acme.example, mail.beta.example, edge)"; "all excluded")]
    #[test_case("edge,", "--limit `edge,`: empty pattern (check for a stray comma)"; "stray comma")]
    #[test_case("mx[", "--limit `mx[`: invalid glob `mx[`: unclosed character class; missing ']'"; "bad glob")]
    fn errors(limit: &str, expected: &str) {
        assert_eq!(
            select(&inventory(), Some(limit)).unwrap_err().to_string(),
            expected
        );
    }

    #[test]
    fn a_cluster_is_selected_by_name() {
        let mut inv = inventory();
        for h in &mut inv.hosts[..2] {
            h.cluster = "acme".into();
        }
        let names = |limit: &str| {
            select(&inv, Some(limit))
                .map(|hs| hs.into_iter().map(|h| h.name.clone()).collect::<Vec<_>>())
        };
        assert_eq!(
            names("cluster:acme").unwrap(),
            ["mx1.acme.example", "mx2.acme.example"]
        );
        assert_eq!(
            names("!cluster:acme").unwrap(),
            ["mail.beta.example", "edge"]
        );
        assert_eq!(
            names("cluster:nope").unwrap_err().to_string(),
            "--limit `cluster:nope`: unknown cluster `nope` (clusters: acme, edge, mail.beta.example)"
        );
    }

    #[test]
    fn long_inventories_are_abbreviated() {
        let mut inv = inventory();
        inv.hosts = (1..=12).map(|i| host(&format!("h{i}"), &[])).collect();
        assert_eq!(
            select(&inv, Some("x*")).unwrap_err().to_string(),
            "--limit `x*` matches no host (the inventory has 12 hosts: h1, h2, h3, h4, h5, h6, h7, h8, and 4 more)"
        );
    }
}
