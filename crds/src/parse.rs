//! Parsing with errors a person can act on: every failure names the field
//! path (`spec.http[0].route[1].weight`) and the offending value, and a parse
//! never panics.

use std::borrow::Cow;

use serde::de::DeserializeOwned;

use crate::networking::SPEC_OPTIONAL_KINDS;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// The text is not YAML (or JSON, which is YAML).
    #[error("invalid YAML: {0}")]
    Yaml(String),
    /// The document is well-formed but a field does not fit the type.
    #[error("{path}: {message}")]
    Field { path: String, message: String },
}

impl ParseError {
    /// The field path of a [`ParseError::Field`].
    pub fn path(&self) -> Option<&str> {
        match self {
            ParseError::Field { path, .. } => Some(path),
            ParseError::Yaml(_) => None,
        }
    }
}

/// Splits a multi-document YAML stream into JSON values, skipping empty
/// documents (a trailing `---`, a comment-only document).
pub fn yaml_documents(text: &str) -> Result<Vec<serde_json::Value>, ParseError> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| ParseError::Yaml(e.to_string()))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Deserializes `value` into `T`, reporting the path of the first field that
/// does not fit.
///
/// A `networking.istio.io` object of a kind whose `spec` Istio does not
/// require ([`SPEC_OPTIONAL_KINDS`]) and that has none is read with an empty
/// `spec`: the generated root types make the field mandatory, but every
/// reader (admission, watches, `meshctl analyze`) must accept what Istio
/// accepts.
pub fn from_value<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, ParseError> {
    let value = with_empty_spec_if_optional(value);
    serde_path_to_error::deserialize(value.as_ref()).map_err(|e| {
        let hint = unquoted_colon_hint(value.as_ref(), e.path()).unwrap_or_default();
        let path = e.path().to_string();
        ParseError::Field {
            path: if path == "." {
                "(document root)".to_string()
            } else {
                path
            },
            message: format!("{}{hint}", e.into_inner()),
        }
    })
}

/// A hint for the one YAML trap that turns a string into a mapping: a plain
/// scalar ending in `:` (an IPv6 address such as `2001:db8::`, unquoted)
/// is read as the key `2001:db8:` with no value, by every YAML parser
/// (kubectl's too). When the value at `path` is exactly that shape, says so
/// and how to quote it.
fn unquoted_colon_hint(
    value: &serde_json::Value,
    path: &serde_path_to_error::Path,
) -> Option<String> {
    use serde_path_to_error::Segment;
    let mut node = value;
    for segment in path.iter() {
        node = match segment {
            Segment::Seq { index } => node.get(*index)?,
            Segment::Map { key } => node.get(key.as_str())?,
            Segment::Enum { .. } | Segment::Unknown => return None,
        };
    }
    let map = node.as_object()?;
    let (key, item) = map.iter().next()?;
    if map.len() != 1 || !item.is_null() || !key.ends_with(':') {
        return None;
    }
    Some(format!(
        " (YAML read the unquoted `{key}:` as a mapping with the key `{key}`, because a plain \
         value cannot end in `:`; quote it: \"{key}:\")"
    ))
}

/// `value` with `spec: {}` added when it is a spec-less object of one of the
/// [`SPEC_OPTIONAL_KINDS`]; otherwise `value` itself, not copied.
fn with_empty_spec_if_optional(value: &serde_json::Value) -> Cow<'_, serde_json::Value> {
    let Some(object) = value.as_object() else {
        return Cow::Borrowed(value);
    };
    let istio_networking = object
        .get("apiVersion")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|v| v.split('/').next() == Some("networking.istio.io"));
    let optional_kind = object
        .get("kind")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|k| SPEC_OPTIONAL_KINDS.contains(&k));
    let spec_missing = object.get("spec").is_none_or(serde_json::Value::is_null);
    if !(istio_networking && optional_kind && spec_missing) {
        return Cow::Borrowed(value);
    }
    let mut object = object.clone();
    object.insert("spec".into(), serde_json::json!({}));
    Cow::Owned(serde_json::Value::Object(object))
}

/// Parses JSON bytes (an API request body) into `T` with field paths.
pub fn from_json_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| ParseError::Field {
        path: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Route {
        #[allow(dead_code)]
        weight: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    struct Doc {
        #[allow(dead_code)]
        routes: Vec<Route>,
    }

    #[test]
    fn splits_documents_and_skips_empty_ones() {
        let docs = yaml_documents("a: 1\n---\n# only a comment\n---\nb: [x]\n---\n").unwrap();
        assert_eq!(
            docs,
            vec![serde_json::json!({"a": 1}), serde_json::json!({"b": ["x"]})]
        );
    }

    #[test]
    fn wrong_type_names_the_path_and_value() {
        let v = serde_json::json!({"routes": [{"weight": 1}, {"weight": "ten"}]});
        let err = from_value::<Doc>(&v).unwrap_err();
        assert_eq!(err.path(), Some("routes[1].weight"));
        assert!(err.to_string().contains("\"ten\""), "{err}");
    }

    #[test]
    fn unknown_field_is_an_error_not_a_silent_drop() {
        let v = serde_json::json!({"routes": [{"wieght": 1}]});
        let err = from_value::<Doc>(&v).unwrap_err();
        assert_eq!(err.path(), Some("routes[0].wieght"));
        assert!(err.to_string().contains("unknown field `wieght`"), "{err}");
    }

    #[test]
    fn malformed_yaml_is_an_error() {
        assert!(matches!(
            yaml_documents("a: [1, 2\n"),
            Err(ParseError::Yaml(_))
        ));
    }

    #[test]
    fn spec_less_objects_of_kinds_istio_allows_parse_as_empty() {
        use crate::networking::{NetworkingObject, ProxyConfig, ServiceEntry, VirtualService};
        let doc = |api_version: &str, kind: &str| {
            serde_json::json!({
                "apiVersion": api_version,
                "kind": kind,
                "metadata": {"name": "empty", "namespace": "default"}
            })
        };
        let pc: ProxyConfig = from_value(&doc("networking.istio.io/v1beta1", "ProxyConfig"))
            .expect("a ProxyConfig without spec is accepted");
        assert_eq!(pc.spec, Default::default());
        let mut null_spec = doc("networking.istio.io/v1beta1", "ProxyConfig");
        null_spec["spec"] = serde_json::Value::Null;
        assert!(from_value::<ProxyConfig>(&null_spec).is_ok());
        for (version, kind) in [
            ("v1", "VirtualService"),
            ("v1", "DestinationRule"),
            ("v1", "Gateway"),
            ("v1alpha3", "EnvoyFilter"),
            ("v1beta1", "ProxyConfig"),
        ] {
            let value = doc(&format!("networking.istio.io/{version}"), kind);
            assert!(
                NetworkingObject::from_value(&value).is_ok(),
                "{kind} without spec refused"
            );
        }
        let vs: VirtualService = from_value(&doc("networking.istio.io/v1", "VirtualService"))
            .expect("VirtualService without spec");
        assert_eq!(vs.spec, Default::default());
        // Istio's schema requires a ServiceEntry's spec; so does ours.
        let err = from_value::<ServiceEntry>(&doc("networking.istio.io/v1", "ServiceEntry"))
            .expect_err("ServiceEntry needs a spec");
        assert!(err.to_string().contains("spec"), "{err}");
    }

    #[test]
    fn ipv6_addresses_parse_as_strings_from_yaml_and_json() {
        use crate::networking::{NetworkingObject, ServiceEntry};
        let yaml = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: v6, namespace: default}
spec:
  hosts: [v6.example.com]
  addresses:
  - "2001:db8::"
  - '2001:db8::/32'
  - 2001:db8::1
  - 2001:db8::/48
  - ::1
  - fd00::1:2:3
  endpoints:
  - address: 2001:db8::10
  - address: "::"
  resolution: STATIC
"#;
        let want = [
            "2001:db8::",
            "2001:db8::/32",
            "2001:db8::1",
            "2001:db8::/48",
            "::1",
            "fd00::1:2:3",
        ];
        let docs = yaml_documents(yaml).expect("YAML");
        let NetworkingObject::ServiceEntry(se) =
            NetworkingObject::from_value(&docs[0]).expect("parses")
        else {
            panic!("not a ServiceEntry");
        };
        assert_eq!(
            se.spec.addresses.as_deref(),
            Some(&want.map(String::from)[..])
        );
        let endpoints: Vec<_> = se
            .spec
            .endpoints
            .iter()
            .flatten()
            .filter_map(|e| e.address.as_deref())
            .collect();
        assert_eq!(endpoints, ["2001:db8::10", "::"]);

        // The webhook's path: the API server sends JSON.
        let json = serde_json::to_vec(&docs[0]).expect("JSON");
        let from_json: ServiceEntry = from_json_slice(&json).expect("parses from JSON");
        assert_eq!(from_json.spec.addresses, se.spec.addresses);
    }

    #[test]
    fn unquoted_trailing_colon_says_to_quote_it() {
        // In YAML (any parser, kubectl's included) `2001:db8::` unquoted is a
        // mapping; the error must say so rather than only "invalid type".
        for yaml in [
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec:\n  hosts: [a.example.com]\n  addresses:\n  - 2001:db8::\n",
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec:\n  hosts: [a.example.com]\n  addresses: [2001:db8::]\n",
        ] {
            let docs = yaml_documents(yaml).expect("YAML");
            let err = from_value::<crate::networking::ServiceEntry>(&docs[0])
                .expect_err("a mapping is not an address");
            assert_eq!(err.path(), Some("spec.addresses[0]"), "{err}");
            assert!(
                err.to_string().contains("quote it: \"2001:db8::\""),
                "{err}"
            );
        }
        // Other wrong types keep the plain message.
        let err =
            from_value::<Doc>(&serde_json::json!({"routes": [{"weight": {"a": 1}}]})).unwrap_err();
        assert!(!err.to_string().contains("quote"), "{err}");
    }

    #[test]
    fn json_body_errors_carry_the_path() {
        let err = from_json_slice::<Doc>(br#"{"routes":[{"weight":-1}]}"#).unwrap_err();
        assert_eq!(err.path(), Some("routes[0].weight"));
    }
}
