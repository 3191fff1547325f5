//! Validation of Istio networking configuration as pure logic: objects in,
//! findings out. No Kubernetes client, no I/O: the admission server's
//! `/validate`, `meshctl analyze` and the benchmarks all call these.
//!
//! - [`object`]: rules on one object alone (hosts, routes, durations, TLS, ...).
//! - [`envoy_filter`]: EnvoyFilter patches that would break proxies.
//! - [`index`] and [`subsets`]: the cross-object view (which DestinationRule
//!   defines which subset for which host) and the dangling-subset checks.

pub mod envoy_filter;
pub mod index;
pub mod object;
pub mod subsets;

/// Which check of the Mesh's validation policy a finding belongs to; the
/// policy says per check whether an error denies or only warns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Check {
    ObjectRules,
    SubsetReferences,
    SubsetRemoval,
    EnvoyFilters,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Denies the request (unless the policy for its check is Warn).
    Error,
    /// Returned as an admission warning; never denies.
    Warning,
}

/// One problem found in an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub check: Check,
    pub severity: Severity,
    /// A stable short code, e.g. `MK0101`, for documentation and `meshctl analyze`.
    pub code: &'static str,
    /// Field path in the object, e.g. `spec.http[1].route[0].weight`.
    pub path: String,
    /// What is wrong, the offending value, and what to do or what is allowed.
    pub message: String,
}

impl Finding {
    pub fn error(
        check: Check,
        code: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            check,
            severity: Severity::Error,
            code,
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn warning(
        check: Check,
        code: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            check,
            severity: Severity::Warning,
            code,
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.code, self.path, self.message)
    }
}
