//! Advice on one object alone that Istio gives in `istioctl analyze` (or
//! as webhook warnings), never as a denial:
//!
//! - `MK0126` a TCP or TLS rule that no connection can reach (after a
//!   rule matching everything, or repeating an earlier match).
//! - `MK0135` a DestinationRule originates TLS (`SIMPLE`/`MUTUAL`)
//!   without `caCertificates`, so the server certificate is checked only
//!   against the proxy's default roots, if at all.
//! - `MK0154` a ServiceEntry with TCP ports (or ports without a protocol)
//!   and no `addresses`: plain TCP carries no host name, so the proxy
//!   cannot tell its traffic apart from other TCP traffic on that port.

use meshkeeper_crds::networking::destination_rule::{ClientTlsMode, ClientTlsSettings};
use meshkeeper_crds::networking::{
    DestinationRule, NetworkingObject, ServiceEntry, VirtualService,
};

use super::{Check, Finding};

pub const UNREACHABLE_L4_RULE: &str = "MK0126";
pub const TLS_WITHOUT_CA: &str = "MK0135";
pub const ADDRESSES_REQUIRED: &str = "MK0154";

fn warning(code: &'static str, path: String, message: String) -> Finding {
    Finding::warning(Check::ObjectRules, code, path, message)
}

/// Every advisory finding for `object`.
pub fn advise(object: &NetworkingObject) -> Vec<Finding> {
    match object {
        NetworkingObject::VirtualService(vs) => unreachable_l4_rules(vs),
        NetworkingObject::DestinationRule(dr) => tls_without_ca(dr),
        NetworkingObject::ServiceEntry(se) => addresses_required(se),
        _ => Vec::new(),
    }
}

/// The match clauses of one TCP/TLS rule, each as comparable JSON; an
/// absent or empty list matches every connection.
fn clauses<T: serde::Serialize>(matches: Option<&[T]>) -> Vec<serde_json::Value> {
    matches
        .unwrap_or_default()
        .iter()
        .filter_map(|m| serde_json::to_value(m).ok())
        .collect()
}

fn matches_everything(clauses: &[serde_json::Value]) -> bool {
    clauses.is_empty()
        || clauses.iter().any(|c| {
            c.as_object()
                .is_some_and(|o| o.values().all(serde_json::Value::is_null))
        })
}

fn unreachable_in(section: &str, rules: &[Vec<serde_json::Value>]) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut catch_all: Option<usize> = None;
    for (i, clauses) in rules.iter().enumerate() {
        if let Some(first) = catch_all {
            found.push(warning(
                UNREACHABLE_L4_RULE,
                format!("spec.{section}[{i}]"),
                format!(
                    "this rule is never used: spec.{section}[{first}] matches every connection \
                     before it; move it above that rule or remove it"
                ),
            ));
            continue;
        }
        for (j, clause) in clauses.iter().enumerate() {
            let earlier = rules[..i]
                .iter()
                .enumerate()
                .find_map(|(k, before)| before.contains(clause).then_some(k));
            if let Some(k) = earlier {
                found.push(warning(
                    UNREACHABLE_L4_RULE,
                    format!("spec.{section}[{i}].match[{j}]"),
                    format!(
                        "this match repeats one of spec.{section}[{k}], which takes those \
                         connections first; remove it or make it differ"
                    ),
                ));
            }
        }
        if matches_everything(clauses) {
            catch_all = Some(i);
        }
    }
    found
}

fn unreachable_l4_rules(vs: &VirtualService) -> Vec<Finding> {
    let tcp: Vec<_> = vs
        .spec
        .tcp
        .iter()
        .flatten()
        .map(|r| clauses(r.r#match.as_deref()))
        .collect();
    let tls: Vec<_> = vs
        .spec
        .tls
        .iter()
        .flatten()
        .map(|r| clauses(r.r#match.as_deref()))
        .collect();
    let mut found = unreachable_in("tcp", &tcp);
    found.extend(unreachable_in("tls", &tls));
    found
}

fn tls_without_ca(dr: &DestinationRule) -> Vec<Finding> {
    let host = dr.spec.host.as_deref().unwrap_or_default();
    let selected = dr.spec.workload_selector.is_some();
    let policy = dr.spec.traffic_policy.as_ref();
    let top = policy
        .and_then(|p| p.tls.as_ref())
        .map(|tls| ("spec.trafficPolicy.tls".to_owned(), tls));
    let ports = policy
        .and_then(|p| p.port_level_settings.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, p)| {
            Some((
                format!("spec.trafficPolicy.portLevelSettings[{i}].tls"),
                p.tls.as_ref()?,
            ))
        });
    let subsets = dr
        .spec
        .subsets
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, s)| {
            Some((
                format!("spec.subsets[{i}].trafficPolicy.tls"),
                s.traffic_policy.as_ref()?.tls.as_ref()?,
            ))
        });
    top.into_iter()
        .chain(ports)
        .chain(subsets)
        .filter_map(|(path, tls)| unverified(tls, selected).map(|mode| (path, mode)))
        .map(|(path, mode)| {
            warning(
                TLS_WITHOUT_CA,
                format!("{path}.caCertificates"),
                format!(
                    "TLS mode {mode} to host \"{host}\" without caCertificates: the server's \
                     certificate is not checked against a CA you chose, so a man in the middle \
                     may go unnoticed; set caCertificates (or credentialName with a Secret \
                     holding ca.crt), or insecureSkipVerify: true if skipping is intended"
                ),
            )
        })
        .collect()
}

/// The mode name when TLS is originated without a CA to verify with.
fn unverified(tls: &ClientTlsSettings, workload_selected: bool) -> Option<&'static str> {
    let mode = match tls.mode? {
        ClientTlsMode::Simple => "SIMPLE",
        ClientTlsMode::Mutual => "MUTUAL",
        _ => return None,
    };
    let has_ca = tls
        .ca_certificates
        .as_deref()
        .is_some_and(|c| !c.is_empty());
    // A credentialName Secret may carry the CA; Istio trusts that only for
    // rules bound to workloads (elsewhere the Secret is not read for it).
    let credential_ca = tls
        .credential_name
        .as_deref()
        .is_some_and(|c| !c.is_empty())
        && workload_selected;
    let opted_out = tls.insecure_skip_verify == Some(true);
    (!has_ca && !credential_ca && !opted_out).then_some(mode)
}

fn addresses_required(se: &ServiceEntry) -> Vec<Finding> {
    if se.spec.addresses.as_ref().is_some_and(|a| !a.is_empty()) {
        return Vec::new();
    }
    se.spec
        .ports
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, p)| {
            let protocol = p.protocol.as_deref().unwrap_or_default();
            protocol.is_empty() || protocol.eq_ignore_ascii_case("TCP")
        })
        .map(|(i, p)| {
            let number = p.number.unwrap_or_default();
            warning(
                ADDRESSES_REQUIRED,
                format!("spec.ports[{i}].protocol"),
                format!(
                    "port {number} is plain TCP and the ServiceEntry has no addresses: a TCP \
                     connection carries no host name, so the proxy matches it by destination \
                     address, and without one the hosts' traffic on port {number} is mixed up \
                     with other TCP traffic on that port; add spec.addresses (the hosts' IPs or \
                     a CIDR), or declare the protocol (TLS, HTTP, ...) if it is not plain TCP"
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(kind: &str, spec: serde_json::Value) -> NetworkingObject {
        NetworkingObject::from_value(&json!({
            "apiVersion": "networking.istio.io/v1", "kind": kind,
            "metadata": {"name": "x", "namespace": "shop"}, "spec": spec
        }))
        .unwrap()
    }

    fn codes(found: &[Finding]) -> Vec<(&str, &str)> {
        found.iter().map(|f| (f.code, f.path.as_str())).collect()
    }

    fn to(host: &str) -> serde_json::Value {
        json!([{"destination": {"host": host}}])
    }

    #[test]
    fn tcp_rules_after_a_catch_all_and_repeated_matches_are_unreachable() {
        let vs = object(
            "VirtualService",
            json!({"hosts": ["db"], "tcp": [
                {"match": [{"port": 5432}], "route": to("a")},
                {"route": to("b")},
                {"match": [{"port": 6379}], "route": to("c")},
            ]}),
        );
        assert_eq!(codes(&advise(&vs)), [(UNREACHABLE_L4_RULE, "spec.tcp[2]")]);

        let repeated = object(
            "VirtualService",
            json!({"hosts": ["db"], "tcp": [
                {"match": [{"port": 5432}], "route": to("a")},
                {"match": [{"port": 6379}, {"port": 5432}], "route": to("b")},
            ]}),
        );
        assert_eq!(
            codes(&advise(&repeated)),
            [(UNREACHABLE_L4_RULE, "spec.tcp[1].match[1]")]
        );

        let tls = object(
            "VirtualService",
            json!({"hosts": ["*.example.com"], "gateways": ["gw"], "tls": [
                {"match": [{"sniHosts": ["a.example.com"]}], "route": to("a")},
                {"match": [{"sniHosts": ["a.example.com"]}], "route": to("b")},
            ]}),
        );
        assert_eq!(
            codes(&advise(&tls)),
            [(UNREACHABLE_L4_RULE, "spec.tls[1].match[0]")]
        );

        let distinct = object(
            "VirtualService",
            json!({"hosts": ["db"], "tcp": [
                {"match": [{"port": 5432}], "route": to("a")},
                {"route": to("b")},
            ]}),
        );
        assert!(advise(&distinct).is_empty());
    }

    #[test]
    fn originated_tls_without_a_ca_warns_at_each_level() {
        let dr = object(
            "DestinationRule",
            json!({"host": "api.example.com", "trafficPolicy": {
            "tls": {"mode": "SIMPLE"},
            "portLevelSettings": [
                {"port": {"number": 443}, "tls": {"mode": "MUTUAL", "clientCertificate": "/c", "privateKey": "/k"}},
                {"port": {"number": 8443}, "tls": {"mode": "SIMPLE", "caCertificates": "/ca.pem"}},
            ]}}),
        );
        let found = advise(&dr);
        assert_eq!(
            codes(&found),
            [
                (TLS_WITHOUT_CA, "spec.trafficPolicy.tls.caCertificates"),
                (
                    TLS_WITHOUT_CA,
                    "spec.trafficPolicy.portLevelSettings[0].tls.caCertificates"
                ),
            ]
        );
        assert!(found[1].message.contains("MUTUAL"), "{}", found[1].message);

        for quiet in [
            json!({"mode": "ISTIO_MUTUAL"}),
            json!({"mode": "SIMPLE", "caCertificates": "/etc/ca.pem"}),
            json!({"mode": "SIMPLE", "insecureSkipVerify": true}),
        ] {
            let dr = object(
                "DestinationRule",
                json!({"host": "a", "trafficPolicy": {"tls": quiet}}),
            );
            assert!(advise(&dr).is_empty(), "{quiet}");
        }
    }

    #[test]
    fn tcp_service_entries_without_addresses_warn() {
        let se = |extra: serde_json::Value| {
            let mut spec = json!({"hosts": ["db.example.com"], "resolution": "DNS", "ports": [
                {"number": 5432, "name": "pg", "protocol": "TCP"},
                {"number": 443, "name": "https", "protocol": "TLS"},
            ]});
            if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
                spec.extend(extra.clone());
            }
            object("ServiceEntry", spec)
        };
        assert_eq!(
            codes(&advise(&se(json!({})))),
            [(ADDRESSES_REQUIRED, "spec.ports[0].protocol")]
        );
        assert!(advise(&se(json!({"addresses": ["10.1.2.3"]}))).is_empty());
    }
}
