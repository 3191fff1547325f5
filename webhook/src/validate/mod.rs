//! Validation of Istio networking configuration as pure logic: objects in,
//! findings out. No Kubernetes client, no I/O: the admission server's
//! `/validate`, `meshctl analyze` and the benchmarks all call these.
//!
//! - [`object`]: rules on one object alone (hosts, routes, durations, TLS, ...).
//! - [`envoy_filter`]: EnvoyFilter patches that would break proxies.
//! - [`index`] and [`subsets`]: the cross-object view (which DestinationRule
//!   defines which subset for which host) and the dangling-subset checks.
//! - [`catalog`], [`references`] and [`gateways`]: Gateways, Services,
//!   ServiceEntries and Secrets in the view, and the checks of what
//!   VirtualServices, Gateways and ServiceEntries refer to (`MK04xx`).
//! - [`advisories`]: per-object advice Istio gives as warnings.

pub mod advisories;
pub mod catalog;
pub mod envoy_filter;
pub mod gateways;
pub mod index;
pub mod object;
pub mod references;
pub mod shared_map;
pub mod subsets;

/// Which check of the Mesh's validation policy a finding belongs to; the
/// policy says per check whether an error denies or only warns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Check {
    ObjectRules,
    SubsetReferences,
    SubsetRemoval,
    EnvoyFilters,
    /// Gateways, Services, ServiceEntries and Secrets that references
    /// name (`MK04xx`); warnings only.
    References,
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

use meshkeeper_crds::meshkeeper::mesh::{Enforcement, ValidationPolicy};
use meshkeeper_crds::networking::NetworkingObject;

/// Every check that judges `object` as it would be after the request: its
/// own rules, the EnvoyFilter rules, and the subsets it routes to. The
/// object's namespace must be set (the caller fills it from the request).
pub fn findings(object: &NetworkingObject, index: &index::Index) -> Vec<Finding> {
    let mut found = object::validate(object);
    found.extend(advisories::advise(object));
    match object {
        NetworkingObject::EnvoyFilter(filter) => {
            found.extend(envoy_filter::validate(filter, index.root_namespace()));
        }
        NetworkingObject::VirtualService(vs) => {
            found.extend(subsets::check_virtual_service(vs, index));
            found.extend(references::check_virtual_service(vs, index));
        }
        NetworkingObject::Gateway(gateway) => {
            found.extend(gateways::check_gateway(gateway, index));
        }
        NetworkingObject::ServiceEntry(entry) => {
            found.extend(references::check_service_entry(entry, index));
        }
        _ => {}
    }
    found
}

/// Findings split by what the Mesh's policy makes of them: `deny` rejects
/// the request, `warn` goes back as admission warnings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub deny: Vec<Finding>,
    pub warn: Vec<Finding>,
}

impl Verdict {
    /// Applies the policy: an error of a check set to `Warn` only warns.
    pub fn new(findings: Vec<Finding>, policy: &ValidationPolicy) -> Self {
        let mut verdict = Verdict::default();
        for finding in findings {
            let denies = finding.severity == Severity::Error
                && enforcement(policy, finding.check) == Enforcement::Deny;
            if denies {
                verdict.deny.push(finding);
            } else {
                verdict.warn.push(finding);
            }
        }
        verdict
    }

    pub fn allowed(&self) -> bool {
        self.deny.is_empty()
    }
}

fn enforcement(policy: &ValidationPolicy, check: Check) -> Enforcement {
    let chosen = match check {
        Check::ObjectRules => policy.object_rules,
        Check::SubsetReferences => policy.subset_references,
        Check::SubsetRemoval => policy.subset_removal,
        Check::EnvoyFilters => policy.envoy_filters,
        // Only warnings are made under this check; should one ever be an
        // error, it is a reference problem like a dangling subset.
        Check::References => policy.subset_references,
    };
    chosen.unwrap_or_default()
}

#[cfg(test)]
mod verdict_tests {
    use super::*;

    #[test]
    fn warn_policy_turns_errors_of_that_check_into_warnings() {
        let findings = vec![
            Finding::error(
                Check::SubsetReferences,
                "MK0201",
                "spec.http[0]",
                "missing subset",
            ),
            Finding::error(
                Check::ObjectRules,
                "MK0112",
                "spec.http[0].route[0].weight",
                "negative",
            ),
            Finding::warning(Check::ObjectRules, "MK0121", "spec.http[1]", "unreachable"),
        ];
        let strict = Verdict::new(findings.clone(), &ValidationPolicy::default());
        assert_eq!(strict.deny.len(), 2);
        assert_eq!(strict.warn.len(), 1);
        assert!(!strict.allowed());

        let relaxed = ValidationPolicy {
            subset_references: Some(Enforcement::Warn),
            ..Default::default()
        };
        let verdict = Verdict::new(findings, &relaxed);
        assert_eq!(
            verdict.deny.iter().map(|f| f.code).collect::<Vec<_>>(),
            ["MK0112"]
        );
        assert_eq!(verdict.warn.len(), 2);
    }
}
