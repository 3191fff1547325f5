//! Rules on one networking object alone, after Istio's own validation
//! (`pkg/config/validation`): hosts, names, routes, durations, ports, TLS
//! settings, exportTo. Errors deny; warnings (unreachable or duplicate
//! matches, deprecated fields) are returned to `kubectl` as admission
//! warnings.
//!
//! Codes (W = warning, otherwise error; a code that is an error may also be
//! a warning for a case Istio's webhook admits, the message then says why):
//! - shared: MK0101 metadata.name, MK0102 host, MK0103 hosts/host missing,
//!   MK0104 exportTo, MK0105 duration, MK0106 port number, MK0107 regex/string
//!   match, MK0108 header name, MK0109 percentage, MK0110 negative count,
//!   MK0122 deprecated field (W).
//! - VirtualService: MK0111 rule action (one of route/redirect/
//!   directResponse/delegate), MK0112 weights, MK0113 destination, MK0114
//!   retries, MK0115 fault, MK0116 mirror, MK0117 CORS, MK0118 redirect/
//!   directResponse/rewrite, MK0119 TLS/TCP rules, MK0120 delegate rules,
//!   MK0121 unreachable rule (W), MK0123 duplicate match (W), MK0124 gateway
//!   reference (legacy form W), MK0125 match gateway the VirtualService is
//!   not bound to (W).
//! - DestinationRule: MK0130 subsets (names, label syntax), MK0131 load balancer, MK0132 client TLS,
//!   MK0133 port-level settings, MK0134 traffic policy shape (empty, tunnel).
//! - Gateway: MK0140 servers/hosts, MK0141 server port, MK0142 server TLS.
//! - ServiceEntry: MK0150 resolution vs endpoints, MK0151 ports, MK0152
//!   addresses, MK0153 endpoint.
//!
//! EnvoyFilter and ProxyConfig only get the metadata checks here; the
//! EnvoyFilter rules live in [`crate::validate::envoy_filter`].

mod common;
mod destination_rule;
mod gateway;
mod service_entry;
mod virtual_service;

use meshkeeper_crds::networking::NetworkingObject;

use crate::validate::Finding;
use common::Findings;

/// Every per-object finding for `object`, errors and warnings, in field order.
pub fn validate(object: &NetworkingObject) -> Vec<Finding> {
    let mut out = Findings::default();
    let name = match object {
        NetworkingObject::VirtualService(o) => o.metadata.name.as_deref(),
        NetworkingObject::DestinationRule(o) => o.metadata.name.as_deref(),
        NetworkingObject::Gateway(o) => o.metadata.name.as_deref(),
        NetworkingObject::ServiceEntry(o) => o.metadata.name.as_deref(),
        NetworkingObject::EnvoyFilter(o) => o.metadata.name.as_deref(),
        NetworkingObject::ProxyConfig(o) => o.metadata.name.as_deref(),
    };
    common::check_metadata_name(name, &mut out);
    match object {
        NetworkingObject::VirtualService(o) => {
            virtual_service::validate(&o.spec, namespace_of(&o.metadata), &mut out);
        }
        NetworkingObject::DestinationRule(o) => {
            destination_rule::validate(&o.spec, namespace_of(&o.metadata), &mut out);
        }
        NetworkingObject::Gateway(o) => gateway::validate(&o.spec, &mut out),
        NetworkingObject::ServiceEntry(o) => {
            service_entry::validate(&o.spec, namespace_of(&o.metadata), &mut out);
        }
        NetworkingObject::EnvoyFilter(_) | NetworkingObject::ProxyConfig(_) => {}
    }
    out.0
}

/// The object's namespace; `default` when its metadata names none, as
/// kubectl assumes (the server fills it from the request beforehand).
fn namespace_of(metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    metadata
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
}

#[cfg(test)]
pub(crate) mod test_support {
    use meshkeeper_crds::networking::NetworkingObject;

    use crate::validate::{Finding, Severity};

    /// Parses a document and validates it.
    pub fn findings(doc: serde_json::Value) -> Vec<Finding> {
        let object = NetworkingObject::from_value(&doc).unwrap();
        super::validate(&object)
    }

    /// The one finding with `code`, asserting it is there exactly once with
    /// `path`, `severity` and a message containing `fragment`.
    pub fn assert_finding(
        found: &[Finding],
        code: &str,
        severity: Severity,
        path: &str,
        fragment: &str,
    ) {
        let matching: Vec<_> = found
            .iter()
            .filter(|f| f.code == code && f.path == path)
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "want one {code} at {path}, got {found:#?}"
        );
        assert_eq!(matching[0].severity, severity, "{}", matching[0]);
        assert!(
            matching[0].message.contains(fragment),
            "`{}` lacks `{fragment}`",
            matching[0].message
        );
    }

    pub fn assert_no_errors(found: &[Finding]) {
        let errors: Vec<_> = found
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .collect();
        assert!(errors.is_empty(), "unexpected errors: {errors:#?}");
    }
}

#[cfg(test)]
mod tests {
    use meshkeeper_crds::networking::NetworkingObject;

    use super::*;
    use crate::validate::Severity;

    #[test]
    fn every_corpus_object_passes_without_errors() {
        let docs = meshkeeper_testkit::networking_documents().unwrap();
        let mut checked = 0;
        let mut failures = Vec::new();
        for doc in &docs {
            if !matches!(
                doc.kind(),
                "VirtualService" | "DestinationRule" | "Gateway" | "ServiceEntry"
            ) {
                continue;
            }
            let object = NetworkingObject::from_value(&doc.value)
                .unwrap_or_else(|e| panic!("{}: {}: {e}", doc.file.display(), doc.name()));
            checked += 1;
            for f in validate(&object) {
                if f.severity == Severity::Error {
                    failures.push(format!("{} {} {}", doc.file.display(), doc.name(), f));
                }
            }
        }
        assert!(checked > 10, "corpus too small: {checked} objects");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn a_proxy_config_without_spec_is_accepted() {
        // Istio's schema lets ProxyConfig omit `spec` (it then changes
        // nothing); admission must not refuse it.
        let found = test_support::findings(serde_json::json!({
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "ProxyConfig",
            "metadata": {"name": "defaults", "namespace": "istio-system"}
        }));
        assert_eq!(found, vec![]);
    }

    #[test]
    fn envoy_filters_only_get_metadata_checks() {
        let found = test_support::findings(serde_json::json!({
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "EnvoyFilter",
            "metadata": {"name": "Bad_Name"},
            "spec": {"configPatches": [{}]}
        }));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].code, common::NAME);
    }
}
