//! Errors of the compiler. Each names the object (kind, namespace/name) and
//! the field, so a person can find what to fix.

/// Where a problem is: `DestinationRule bookinfo/reviews`, field
/// `spec.trafficPolicy.connectionPool.tcp.connectTimeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub field: String,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}/{}, field `{}`",
            self.kind, self.namespace, self.name, self.field
        )
    }
}

/// Something the compiler left out of the configuration, as Istio would,
/// but which the user should hear about (Istio only logs it): a delegate
/// that does not exist, a rule whose matches conflict with its root's, a
/// VirtualService whose hosts no server of its gateway serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub at: Location,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// A field holds a value the compiler cannot translate.
    #[error("{at}: {message}")]
    Invalid { at: Box<Location>, message: String },
    /// An input object lacks something every object of its kind has.
    #[error("{kind} {name}: {message}")]
    Input {
        kind: &'static str,
        name: String,
        message: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the envoy-types descriptor set does not load: {0}")]
    Descriptors(String),
    #[error("{0} is not in the envoy-types descriptor set")]
    UnknownMessage(String),
    #[error("decoding {message} for rendering: {source}")]
    Decode {
        message: String,
        source: prost::DecodeError,
    },
    #[error("rendering {message} as JSON: {source}")]
    Json {
        message: String,
        source: serde_json::Error,
    },
}
