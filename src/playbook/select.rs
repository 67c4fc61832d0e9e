//! `--controls` / `--skip-controls`: running a subset of a playbook's controls and
//! probes, within the dependencies between them. Adding `check_policy_service` to the
//! recipient restrictions (BS-04 in the shipped playbook) while the policy daemon is not
//! enabled (BS-01) makes Postfix answer `451 4.3.5` to outside mail for existing users
//! (docs/carbonio.md §1, §2), so a selection that keeps the first and drops the second is
//! refused before anything is contacted. Waivers obey the same rule in apply
//! ([`unmet_dependency`], used by `playbook::waiver`).

use super::{Expectation, Playbook};

/// The attribute that enables the policy daemon.
const POLICYD_ATTR: &str = "zimbraMtaEnableSmtpdPolicyd";
/// What a restriction adds that needs the policy daemon.
pub const POLICY_CHECK: &str = "check_policy_service";
/// What happens when a restriction asks a policy daemon that is not enabled.
pub const WHY_DEPENDENT: &str = "Postfix would answer 451 4.3.5 to outside mail for existing users";

/// A control that a subset keeps while dropping the control it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmetDependency {
    /// The control that adds `check_policy_service` (BS-04).
    pub dependent: String,
    /// The control that enables the policy daemon (BS-01).
    pub enabler: String,
}

/// The dependency between controls that any subset of a playbook must respect, whoever
/// makes the subset (`--controls`/`--skip-controls` here, waivers in apply): `Some` when
/// `keep` keeps a control that adds `check_policy_service` but drops the control that
/// enables the policy daemon.
pub fn unmet_dependency(pb: &Playbook, keep: impl Fn(&str) -> bool) -> Option<UnmetDependency> {
    let enabler = pb
        .controls
        .iter()
        .find(|c| c.attr.eq_ignore_ascii_case(POLICYD_ATTR))?;
    let dependent = pb.controls.iter().find(|c| {
        keep(&c.id)
            && matches!(&c.expect, Expectation::Contains(v) | Expectation::Equals(v) if v.contains(POLICY_CHECK))
    })?;
    (!keep(&enabler.id)).then(|| UnmetDependency {
        dependent: dependent.id.clone(),
        enabler: enabler.id.clone(),
    })
}

/// Keeps the controls and probes named in `only` (all when `None`) minus those in
/// `skip`; ids are matched case-insensitively. `Err` says why the selection is refused.
pub fn select(pb: &mut Playbook, only: Option<&[String]>, skip: &[String]) -> Result<(), String> {
    if only.is_none() && skip.is_empty() {
        return Ok(());
    }
    let known: Vec<&str> = pb
        .controls
        .iter()
        .map(|c| c.id.as_str())
        .chain(pb.probes.iter().map(|p| p.id.as_str()))
        .collect();
    for id in only.into_iter().flatten().chain(skip) {
        if !known.iter().any(|k| k.eq_ignore_ascii_case(id)) {
            return Err(format!(
                "`{id}` is not a control or probe of playbook `{}` (it has: {})",
                pb.name,
                known.join(", ")
            ));
        }
    }
    let keep = |id: &str| {
        only.is_none_or(|o| o.iter().any(|x| x.eq_ignore_ascii_case(id)))
            && !skip.iter().any(|x| x.eq_ignore_ascii_case(id))
    };
    if let Some(UnmetDependency { dependent, enabler }) = unmet_dependency(pb, keep) {
        return Err(format!(
            "{dependent} adds `{POLICY_CHECK}` but {enabler} (the policy daemon it asks) is not selected: \
             {WHY_DEPENDENT}; select both, or neither"
        ));
    }
    pb.controls.retain(|c| keep(&c.id));
    pb.probes.retain(|p| keep(&p.id));
    if pb.controls.is_empty() && pb.probes.is_empty() {
        return Err("the selection leaves no control and no probe".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(pb: &Playbook) -> Vec<&str> {
        pb.controls
            .iter()
            .map(|c| c.id.as_str())
            .chain(pb.probes.iter().map(|p| p.id.as_str()))
            .collect()
    }

    #[test]
    fn a_subset_runs_within_the_dependencies() {
        let base = crate::playbook::load_default();
        let mut pb = base.clone();
        select(&mut pb, Some(&["BS-02".into(), "eff-02".into()]), &[]).unwrap();
        assert_eq!(ids(&pb), ["BS-02", "EFF-02"]);
        let mut pb = base.clone();
        select(&mut pb, None, &["DOM-SPF".into()]).unwrap();
        assert!(!ids(&pb).contains(&"DOM-SPF") && ids(&pb).contains(&"BS-04"));
        let mut pb = base.clone();
        let e = select(&mut pb, None, &["BS-01".into()]).unwrap_err();
        assert!(
            e.starts_with("BS-04 adds `check_policy_service` but BS-01"),
            "{e}"
        );
        let mut pb = base.clone();
        select(&mut pb, Some(&["BS-01".into(), "BS-04".into()]), &[]).unwrap();
        let mut pb = base.clone();
        let e = select(&mut pb, Some(&["BS-9".into()]), &[]).unwrap_err();
        assert!(
            e.starts_with("`BS-9` is not a control or probe of playbook"),
            "{e}"
        );
    }
}
