//! Message types that several Istio networking kinds share.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A duration in Istio's format (`1s`, `1.5s`, `100ms`, `1h2m`); kept as the
/// user wrote it so a round trip never rewrites it. Issue-level validation
/// checks the format.
pub type Duration = String;

/// Labels by value, as Istio's `map<string, string>` fields.
pub type Labels = BTreeMap<String, String>;

/// A string matched exactly, by prefix, or by RE2 regex: exactly one of the
/// three (a proto `oneof`), so it is a Rust enum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
}

/// Selects a port of a destination by number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
}

/// A proto `double` kept as written: `100` stays `100` and `12.5` stays
/// `12.5` on the way back (an `f64` would turn `100` into `100.0`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Decimal(pub serde_json::Number);

impl Decimal {
    /// The value as a float (every JSON number has one).
    pub fn as_f64(&self) -> f64 {
        self.0.as_f64().unwrap_or(f64::NAN)
    }
}

impl From<f64> for Decimal {
    /// Non-finite input (NaN, infinity) has no JSON form and becomes 0.
    fn from(v: f64) -> Self {
        Decimal(serde_json::Number::from_f64(v).unwrap_or_else(|| 0.into()))
    }
}

impl JsonSchema for Decimal {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Decimal".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "number", "format": "double"})
    }
}

/// A percentage in the range [0.0, 100.0].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Percent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Decimal>,
}

/// A service port as Gateway servers and ServiceEntries declare it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
    /// HTTP|HTTPS|GRPC|GRPC-WEB|HTTP2|MONGO|TCP|TLS; kept as a string because
    /// Istio matches it case-insensitively and by prefix (`http-foo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
}

/// `workloadSelector` of DestinationRule and Sidecar-style kinds:
/// `matchLabels` selects the proxies the object applies to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<Labels>,
}

/// `workloadSelector` of ServiceEntry and EnvoyFilter: plain `labels`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelsSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

/// A reference to a policy target (`targetRefs` of EnvoyFilter).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyTargetReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::from_value;
    use serde_json::json;

    #[test]
    fn string_match_is_exactly_one_of_exact_prefix_regex() {
        for (doc, expected) in [
            (
                json!({"exact": "jason"}),
                StringMatch::Exact("jason".into()),
            ),
            (
                json!({"prefix": "/api"}),
                StringMatch::Prefix("/api".into()),
            ),
            (
                json!({"regex": "^v[0-9]+$"}),
                StringMatch::Regex("^v[0-9]+$".into()),
            ),
        ] {
            let parsed: StringMatch = from_value(&doc).unwrap();
            assert_eq!(parsed, expected);
            assert_eq!(serde_json::to_value(&parsed).unwrap(), doc);
        }
    }

    #[test]
    fn string_match_rejects_none_two_or_unknown_alternatives() {
        for doc in [
            json!({}),
            json!({"exact": "a", "prefix": "b"}),
            json!({"suffix": "x"}),
            json!({"exact": 7}),
        ] {
            assert!(from_value::<StringMatch>(&doc).is_err(), "{doc} parsed");
        }
        let err = from_value::<StringMatch>(&json!({"suffix": "x"})).unwrap_err();
        assert!(err.to_string().contains("suffix"), "{err}");
        assert!(
            err.to_string().contains("exact"),
            "allowed values missing: {err}"
        );
    }

    #[test]
    fn decimal_keeps_the_spelling_it_was_given() {
        for doc in [
            json!({"value": 100}),
            json!({"value": 12.5}),
            json!({"value": 0.0}),
        ] {
            let parsed: Percent = from_value(&doc).unwrap();
            assert_eq!(serde_json::to_value(&parsed).unwrap(), doc);
        }
        let p: Percent = from_value(&json!({"value": 100})).unwrap();
        assert_eq!(p.value.map(|d| d.as_f64()), Some(100.0));
        assert!(from_value::<Percent>(&json!({"value": "100"})).is_err());
    }

    #[test]
    fn port_selector_takes_a_number_only() {
        let p: PortSelector = from_value(&json!({"number": 9080})).unwrap();
        assert_eq!(p.number, Some(9080));
        let err = from_value::<PortSelector>(&json!({"number": "http"})).unwrap_err();
        assert_eq!(err.path(), Some("number"));
        let err = from_value::<PortSelector>(&json!({"name": "http"})).unwrap_err();
        assert!(err.to_string().contains("unknown field `name`"), "{err}");
        assert!(from_value::<PortSelector>(&json!({"number": -1})).is_err());
        assert!(from_value::<PortSelector>(&json!({"number": 4294967296u64})).is_err());
    }
}
