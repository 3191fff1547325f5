//! Why an installation cannot be computed: an input the API server would
//! refuse, or one the operator cannot work without. Each error names the
//! object and field to fix, the value found and what is allowed, so the
//! controller can report it as `Reconciled=False` unchanged.

use meshkeeper_webhook::configuration::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    /// A value the API server would refuse in one of the generated objects.
    #[error("{object}: {field} {value:?} is not allowed: {allowed}")]
    Invalid {
        /// `Kind/name` of the object holding the field, e.g. `Mesh/default`.
        object: String,
        /// Path of the field, e.g. `spec.revisionTags[1].name`.
        field: String,
        value: String,
        allowed: String,
    },
    /// A value that must be present is not.
    #[error("{object}: {field} is missing: {why}")]
    Missing {
        object: String,
        field: String,
        why: String,
    },
    /// A generated object could not be turned into JSON (a bug, not input).
    #[error("encoding {kind} {name} as JSON: {message}")]
    Encode {
        kind: String,
        name: String,
        message: String,
    },
}

impl InstallError {
    pub(crate) fn invalid(
        object: &str,
        field: impl Into<String>,
        value: impl Into<String>,
        allowed: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            object: object.to_owned(),
            field: field.into(),
            value: value.into(),
            allowed: allowed.into(),
        }
    }

    pub(crate) fn missing(object: &str, field: impl Into<String>, why: impl Into<String>) -> Self {
        Self::Missing {
            object: object.to_owned(),
            field: field.into(),
            why: why.into(),
        }
    }

    /// The field to fix, when the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } | Self::Missing { field, .. } => Some(field),
            Self::Encode { .. } => None,
        }
    }

    /// Names the field behind a refusal of the webhook configuration
    /// builders. `name_field` is where the revision or tag name came from;
    /// the other inputs always come from the same `spec.webhook` fields.
    pub(crate) fn from_config(object: &str, name_field: &str, error: ConfigError) -> Self {
        match error {
            ConfigError::Revision(value) => Self::invalid(
                object,
                name_field,
                value,
                "a label value: 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            ),
            ConfigError::Url(value) => Self::invalid(
                object,
                "spec.webhook.url",
                value,
                "an https:// URL with a host and no query or fragment",
            ),
            ConfigError::Timeout(value) => Self::invalid(
                object,
                "spec.webhook.timeoutSeconds",
                value.to_string(),
                "1 to 30",
            ),
            ConfigError::Port(value) => Self::invalid(
                object,
                "webhook Service port",
                value.to_string(),
                "1 to 65535",
            ),
        }
    }
}
