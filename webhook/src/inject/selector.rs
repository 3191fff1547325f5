//! Kubernetes label selectors (`matchLabels` and `matchExpressions`) matched
//! against a pod's labels, with the API server's semantics.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// A selector the API server would refuse; it matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error(
        "matchExpressions key {key:?}: unknown operator {operator:?} (accepted: In, NotIn, Exists, DoesNotExist)"
    )]
    UnknownOperator { key: String, operator: String },
    #[error("matchExpressions key {key:?}: operator {operator} needs at least one value")]
    MissingValues { key: String, operator: String },
    #[error("matchExpressions key {key:?}: operator {operator} takes no values, got {values:?}")]
    UnexpectedValues {
        key: String,
        operator: String,
        values: Vec<String>,
    },
}

/// True when the selector has no requirement at all. Kubernetes reads such a
/// selector as "everything".
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

/// Whether `labels` satisfy every requirement of `selector` (an empty
/// selector matches every set of labels, as in Kubernetes).
pub fn matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, SelectorError> {
    // Validate every expression first so a bad selector is reported the same
    // way whichever pod it is tried against.
    let expressions = selector.match_expressions.as_deref().unwrap_or_default();
    for expression in expressions {
        validate(expression)?;
    }
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    Ok(labels_match
        && expressions
            .iter()
            .all(|expression| expression_matches(expression, labels)))
}

fn validate(expression: &LabelSelectorRequirement) -> Result<(), SelectorError> {
    let values = expression.values.as_deref().unwrap_or_default();
    let operator = expression.operator.as_str();
    match operator {
        "In" | "NotIn" if values.is_empty() => Err(SelectorError::MissingValues {
            key: expression.key.clone(),
            operator: operator.to_owned(),
        }),
        "Exists" | "DoesNotExist" if !values.is_empty() => Err(SelectorError::UnexpectedValues {
            key: expression.key.clone(),
            operator: operator.to_owned(),
            values: values.to_vec(),
        }),
        "In" | "NotIn" | "Exists" | "DoesNotExist" => Ok(()),
        _ => Err(SelectorError::UnknownOperator {
            key: expression.key.clone(),
            operator: operator.to_owned(),
        }),
    }
}

/// Only called on validated expressions.
fn expression_matches(
    expression: &LabelSelectorRequirement,
    labels: &BTreeMap<String, String>,
) -> bool {
    let value = labels.get(&expression.key);
    let listed = |v: &String| expression.values.iter().flatten().any(|x| x == v);
    match expression.operator.as_str() {
        "In" => value.is_some_and(listed),
        // As in Kubernetes, a pod without the key satisfies NotIn.
        "NotIn" => !value.is_some_and(listed),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_owned(),
            operator: operator.to_owned(),
            values: if values.is_empty() {
                None
            } else {
                Some(values.iter().map(|v| (*v).to_owned()).collect())
            },
        }
    }

    fn with_expressions(expressions: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(expressions),
            match_labels: None,
        }
    }

    #[test]
    fn match_labels_need_every_pair() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web"), ("tier", "front")])),
            match_expressions: None,
        };
        assert!(
            matches(
                &selector,
                &labels(&[("app", "web"), ("tier", "front"), ("x", "y")])
            )
            .unwrap()
        );
        assert!(!matches(&selector, &labels(&[("app", "web")])).unwrap());
        assert!(!matches(&selector, &labels(&[("app", "web"), ("tier", "back")])).unwrap());
    }

    #[test]
    fn in_and_not_in() {
        let is_in = with_expressions(vec![expression("env", "In", &["dev", "qa"])]);
        assert!(matches(&is_in, &labels(&[("env", "qa")])).unwrap());
        assert!(!matches(&is_in, &labels(&[("env", "prod")])).unwrap());
        assert!(!matches(&is_in, &labels(&[])).unwrap());

        let not_in = with_expressions(vec![expression("env", "NotIn", &["prod"])]);
        assert!(matches(&not_in, &labels(&[("env", "qa")])).unwrap());
        assert!(!matches(&not_in, &labels(&[("env", "prod")])).unwrap());
        assert!(
            matches(&not_in, &labels(&[])).unwrap(),
            "absent key satisfies NotIn"
        );
    }

    #[test]
    fn exists_and_does_not_exist() {
        let exists = with_expressions(vec![expression("batch", "Exists", &[])]);
        assert!(matches(&exists, &labels(&[("batch", "")])).unwrap());
        assert!(!matches(&exists, &labels(&[("other", "x")])).unwrap());

        let absent = with_expressions(vec![expression("batch", "DoesNotExist", &[])]);
        assert!(!matches(&absent, &labels(&[("batch", "1")])).unwrap());
        assert!(matches(&absent, &labels(&[])).unwrap());
    }

    #[test]
    fn labels_and_expressions_combine_with_and() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![expression("env", "In", &["prod"])]),
        };
        assert!(matches(&selector, &labels(&[("app", "web"), ("env", "prod")])).unwrap());
        assert!(!matches(&selector, &labels(&[("app", "web"), ("env", "dev")])).unwrap());
        assert!(!matches(&selector, &labels(&[("app", "db"), ("env", "prod")])).unwrap());
    }

    #[test]
    fn empty_selector_matches_everything_and_is_reported_empty() {
        let empty = LabelSelector::default();
        assert!(is_empty(&empty));
        assert!(matches(&empty, &labels(&[])).unwrap());
        let with_empty_maps = LabelSelector {
            match_labels: Some(BTreeMap::new()),
            match_expressions: Some(vec![]),
        };
        assert!(is_empty(&with_empty_maps));
        assert!(!is_empty(&with_expressions(vec![expression(
            "a",
            "Exists",
            &[]
        )])));
    }

    #[test]
    fn invalid_selectors_are_errors_naming_key_and_operator() {
        let err = matches(
            &with_expressions(vec![expression("env", "Equals", &["x"])]),
            &labels(&[]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("\"env\"") && err.to_string().contains("Equals"),
            "{err}"
        );

        let err = matches(
            &with_expressions(vec![expression("env", "In", &[])]),
            &labels(&[]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            SelectorError::MissingValues {
                key: "env".into(),
                operator: "In".into()
            }
        );

        let err = matches(
            &with_expressions(vec![expression("env", "Exists", &["x"])]),
            &labels(&[("env", "x")]),
        )
        .unwrap_err();
        assert!(
            matches!(err, SelectorError::UnexpectedValues { .. }),
            "{err}"
        );
    }
}
