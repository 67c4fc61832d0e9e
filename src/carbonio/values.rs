//! How a control's expectation is compared with the values LDAP holds (docs/carbonio.md
//! §6): booleans `TRUE`/`FALSE` and enums `yes`/`no` compared exactly (ProvUtil refuses
//! `True` or `Yes`), multi-valued attributes as sets of exact strings, an unset attribute
//! as the empty set.

use crate::playbook::Expectation;

/// Whether `values` (all values of one attribute, possibly none) satisfy `expect`.
pub fn satisfies(expect: &Expectation, values: &[String]) -> bool {
    match expect {
        Expectation::Equals(want) => values.len() == 1 && values[0] == *want,
        Expectation::Contains(item) => values.iter().any(|v| v == item),
        Expectation::Absent(item) => !values.iter().any(|v| v == item),
    }
}

/// A human rendering of an attribute's values for reports: `(unset)`, `TRUE`, or
/// `[a, b, c]` for several.
pub fn render(values: &[String]) -> String {
    match values {
        [] => "(unset)".to_string(),
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// The expectation as the report states it (`= TRUE`, `contains X`, `absent X`).
pub fn render_expectation(expect: &Expectation) -> String {
    match expect {
        Expectation::Equals(v) => format!("= {v}"),
        Expectation::Contains(v) => format!("contains {v}"),
        Expectation::Absent(v) => format!("absent {v}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn equals_is_exact() {
        let e = Expectation::Equals("TRUE".into());
        assert!(satisfies(&e, &v(&["TRUE"])));
        assert!(!satisfies(&e, &v(&["True"])));
        assert!(!satisfies(&e, &v(&[])));
        assert!(!satisfies(&e, &v(&["TRUE", "TRUE"])));
    }

    #[test]
    fn contains_and_absent_are_set_membership() {
        let item = "check_policy_service unix:private/policy";
        let vals = v(&["reject_invalid_helo_hostname", item]);
        assert!(satisfies(&Expectation::Contains(item.into()), &vals));
        assert!(!satisfies(&Expectation::Absent(item.into()), &vals));
        assert!(satisfies(&Expectation::Absent(item.into()), &v(&[])));
        assert!(!satisfies(
            &Expectation::Contains(item.into()),
            &v(&["check_policy_service"])
        ));
    }

    #[test]
    fn renders() {
        assert_eq!(render(&v(&[])), "(unset)");
        assert_eq!(render(&v(&["yes"])), "yes");
        assert_eq!(render(&v(&["a", "b"])), "[a, b]");
    }
}
