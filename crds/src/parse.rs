//! Parsing with errors a person can act on: every failure names the field
//! path (`spec.http[0].route[1].weight`) and the offending value, and a parse
//! never panics.

use serde::de::DeserializeOwned;

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
pub fn from_value<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ParseError::Field {
            path: if path == "." {
                "(document root)".to_string()
            } else {
                path
            },
            message: e.into_inner().to_string(),
        }
    })
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
    fn json_body_errors_carry_the_path() {
        let err = from_json_slice::<Doc>(br#"{"routes":[{"weight":-1}]}"#).unwrap_err();
        assert_eq!(err.path(), Some("routes[0].weight"));
    }
}
