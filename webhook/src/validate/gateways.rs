//! Gateway checks against the other Gateways, the Services in front of the
//! gateway workload and the Secrets, after Istio's gateway analyzers. All
//! warnings: Istio's webhook accepts these Gateways.
//!
//! - `MK0407` another Gateway for the same workload serves the same port
//!   and bind with an overlapping host: the proxy keeps one of them.
//! - `MK0408` another Gateway for the same workload uses the same
//!   certificate (credentialName or certificate files).
//! - `MK0409` a `credentialName` Secret is missing from the gateway
//!   workload's namespace or holds no certificate and key (only when the
//!   Secrets are known).
//! - `MK0410` a server port is not a port (or target port) of any Service
//!   in front of the gateway workload, so nothing reaches it.
//!
//! Without pods, "the gateway workload" is approximated by selectors: two
//! selectors can pick the same pods when they agree on every label they
//! share and share one; a Service fronts the gateway when its selector and
//! the Gateway's can.

use std::collections::BTreeSet;

use meshkeeper_crds::networking::Gateway;
use meshkeeper_crds::networking::common::Labels;

use super::catalog::{IndexedGateway, IndexedServer, IndexedService, SecretUse};
use super::index::{Index, pattern_covers};
use super::{Check, Finding};

pub const CONFLICTING_GATEWAYS: &str = "MK0407";
pub const DUPLICATE_CERTIFICATE: &str = "MK0408";
pub const CREDENTIAL_SECRET: &str = "MK0409";
pub const PORT_NOT_ON_SERVICE: &str = "MK0410";

fn warning(code: &'static str, path: String, message: String) -> Finding {
    Finding::warning(Check::References, code, path, message)
}

/// Every cross-object check of a Gateway.
pub fn check_gateway(gateway: &Gateway, index: &Index) -> Vec<Finding> {
    let own = IndexedGateway::from_gateway(gateway);
    let peers: Vec<&IndexedGateway> = index
        .catalog()
        .gateways()
        .filter(|other| other.key != own.key && same_workload(&own.selector, &other.selector))
        .collect();
    let fronting = fronting_services(&own, index);
    let mut found = Vec::new();
    for server in &own.servers {
        found.extend(conflicts(server, &peers));
        found.extend(duplicate_certificate(server, &peers));
        found.extend(credential_secret(server, &own, &fronting, index));
        found.extend(port_on_service(server, &own, &fronting, index));
    }
    found
}

/// Whether two selectors can select the same pods: no shared label with
/// different values, and (unless one is empty, selecting everything) at
/// least one shared label.
fn same_workload(a: &Labels, b: &Labels) -> bool {
    if a.is_empty() || b.is_empty() {
        return true;
    }
    let mut shared = false;
    for (key, value) in a {
        match b.get(key) {
            Some(other) if other != value => return false,
            Some(_) => shared = true,
            None => {}
        }
    }
    shared
}

/// The Services that may front the gateway workload (see the module
/// documentation); empty when the Services are unknown or none matches.
fn fronting_services<'a>(gateway: &IndexedGateway, index: &'a Index) -> Vec<&'a IndexedService> {
    let catalog = index.catalog();
    if !catalog.services_known() || gateway.selector.is_empty() {
        return Vec::new();
    }
    catalog
        .services()
        .filter(|s| !s.selector.is_empty() && same_workload(&s.selector, &gateway.selector))
        .collect()
}

fn server_path(server: &IndexedServer) -> String {
    format!("spec.servers[{}]", server.position)
}

/// A server host without its namespace part (`ns/host` → `host`).
fn bare(host: &str) -> &str {
    host.split_once('/').map_or(host, |(_, h)| h)
}

fn hosts_overlap(a: &[String], b: &[String]) -> Option<String> {
    a.iter().find_map(|x| {
        let x = bare(x).to_ascii_lowercase();
        b.iter()
            .map(|y| bare(y).to_ascii_lowercase())
            .any(|y| x == y || pattern_covers(&x, &y) || pattern_covers(&y, &x))
            .then_some(x)
    })
}

fn conflicts(server: &IndexedServer, peers: &[&IndexedGateway]) -> Option<Finding> {
    let port = server.port?;
    let mut clashing: Vec<String> = Vec::new();
    let mut host = String::new();
    for peer in peers {
        for other in &peer.servers {
            if other.port != Some(port) || other.bind != server.bind {
                continue;
            }
            if let Some(shared) = hosts_overlap(&server.hosts, &other.hosts) {
                host = shared;
                clashing.push(peer.key.to_string());
            }
        }
    }
    if clashing.is_empty() {
        return None;
    }
    clashing.sort();
    clashing.dedup();
    Some(warning(
        CONFLICTING_GATEWAYS,
        format!("{}.port.number", server_path(server)),
        format!(
            "port {port} with host \"{host}\" is also served by Gateway {} on the same gateway \
             workload: the proxy keeps only one of these servers, so the other's traffic is \
             lost; serve each host on one Gateway, or use another port or selector",
            clashing.join(", ")
        ),
    ))
}

fn duplicate_certificate(server: &IndexedServer, peers: &[&IndexedGateway]) -> Option<Finding> {
    let same = |other: &IndexedServer| match (&server.credential_name, &other.credential_name) {
        (Some(a), Some(b)) => a == b,
        (None, None) => {
            server.certificate_files.is_some()
                && server.certificate_files == other.certificate_files
        }
        _ => false,
    };
    let mut sharing: Vec<String> = peers
        .iter()
        .filter(|peer| peer.servers.iter().any(same))
        .map(|peer| peer.key.to_string())
        .collect();
    if sharing.is_empty() {
        return None;
    }
    sharing.sort();
    let (field, value) = match (&server.credential_name, &server.certificate_files) {
        (Some(name), _) => ("tls.credentialName", name.clone()),
        (None, Some((cert, _))) => ("tls.serverCertificate", cert.clone()),
        (None, None) => return None,
    };
    Some(warning(
        DUPLICATE_CERTIFICATE,
        format!("{}.{field}", server_path(server)),
        format!(
            "certificate \"{value}\" is also used by Gateway {} on the same gateway workload: \
             with one certificate on several Gateways, HTTP/2 connection reuse can send \
             requests for one Gateway's hosts to the other's routes (404s); give each Gateway \
             its own certificate, or merge the servers into one Gateway",
            sharing.join(", ")
        ),
    ))
}

/// A credentialName may be `name` or `kubernetes://name`; other schemes
/// (SDS providers) are not Secrets of the cluster.
fn secret_name(credential: &str) -> Option<&str> {
    match credential.split_once("://") {
        None => Some(credential),
        Some(("kubernetes", name)) => Some(name),
        Some(_) => None,
    }
}

fn credential_secret(
    server: &IndexedServer,
    gateway: &IndexedGateway,
    fronting: &[&IndexedService],
    index: &Index,
) -> Option<Finding> {
    let catalog = index.catalog();
    let credential = server.credential_name.as_deref()?;
    let name = secret_name(credential)?;
    // The Secret is read from the gateway workload's namespace: known
    // when exactly one namespace's Services front it.
    let namespaces: BTreeSet<&str> = fronting.iter().map(|s| s.key.namespace.as_str()).collect();
    let [namespace] = namespaces.into_iter().collect::<Vec<_>>()[..] else {
        return None;
    };
    if !catalog.secrets_known() {
        return None;
    }
    let path = format!("{}.tls.credentialName", server_path(server));
    let problem = match catalog.secret(namespace, name) {
        Some(SecretUse::Credential) => return None,
        Some(SecretUse::Invalid(why)) => {
            format!("Secret {namespace}/{name} is not a TLS credential: {why}")
        }
        None => format!("Secret {namespace}/{name} does not exist"),
    };
    Some(warning(
        CREDENTIAL_SECRET,
        path,
        format!(
            "{problem}; the gateway workload of Gateway {} (namespace \"{namespace}\") cannot \
             serve TLS on port {} until it does: create it there (kubectl create secret tls \
             {name} -n {namespace} --cert=... --key=...)",
            gateway.key,
            server.port.unwrap_or_default()
        ),
    ))
}

fn port_on_service(
    server: &IndexedServer,
    gateway: &IndexedGateway,
    fronting: &[&IndexedService],
    index: &Index,
) -> Option<Finding> {
    let port = server.port?;
    if fronting.is_empty() || !index.catalog().services_known() {
        return None;
    }
    let reachable = fronting.iter().flat_map(|s| &s.ports).any(|p| {
        p.protocol.eq_ignore_ascii_case("TCP") && (p.port == port || p.target_port == Some(port))
    });
    if reachable {
        return None;
    }
    let services: Vec<String> = fronting.iter().map(|s| s.key.to_string()).collect();
    let ports: BTreeSet<String> = fronting
        .iter()
        .flat_map(|s| &s.ports)
        .map(|p| match p.target_port {
            Some(target) if target != p.port => format!("{}→{target}", p.port),
            _ => p.port.to_string(),
        })
        .collect();
    Some(warning(
        PORT_NOT_ON_SERVICE,
        format!("{}.port.number", server_path(server)),
        format!(
            "port {port} is not a port or target port of Service {} in front of the workload \
             Gateway {} selects (ports: {}), so no traffic reaches this server; add port {port} \
             to the Service or use one of its ports",
            services.join(", "),
            gateway.key,
            ports.into_iter().collect::<Vec<_>>().join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gateway(namespace: &str, name: &str, servers: serde_json::Value) -> Gateway {
        meshkeeper_crds::parse::from_value(&json!({
            "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"istio": "ingressgateway"}, "servers": servers}
        }))
        .unwrap()
    }

    fn https(host: &str, credential: &str) -> serde_json::Value {
        json!({"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": [host],
               "tls": {"mode": "SIMPLE", "credentialName": credential}})
    }

    fn ingress_service(ports: serde_json::Value) -> k8s_openapi::api::core::v1::Service {
        serde_json::from_value(json!({
            "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
            "spec": {"selector": {"istio": "ingressgateway", "app": "istio-ingressgateway"},
                     "ports": ports}
        }))
        .unwrap()
    }

    fn secret(name: &str, data: serde_json::Value) -> k8s_openapi::api::core::v1::Secret {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "istio-system"}, "data": data
        }))
        .unwrap()
    }

    fn codes(found: &[Finding]) -> Vec<(&str, &str)> {
        found.iter().map(|f| (f.code, f.path.as_str())).collect()
    }

    #[test]
    fn same_port_and_host_on_one_workload_conflict_and_certificates_are_shared() {
        let mut index = Index::default();
        index.catalog_mut().upsert_gateway(&gateway(
            "a",
            "one",
            json!([https("shop.example.com", "shop-cert")]),
        ));
        let clean = gateway("b", "two", json!([https("api.example.com", "api-cert")]));
        assert!(check_gateway(&clean, &index).is_empty());

        let clash = gateway("b", "two", json!([https("*.example.com", "shop-cert")]));
        let found = check_gateway(&clash, &index);
        assert_eq!(
            codes(&found),
            [
                (CONFLICTING_GATEWAYS, "spec.servers[0].port.number"),
                (DUPLICATE_CERTIFICATE, "spec.servers[0].tls.credentialName"),
            ]
        );
        assert!(found[0].message.contains("a/one"), "{}", found[0].message);

        // Another workload (a different selector value) does not conflict.
        let mut elsewhere = clash.clone();
        elsewhere.spec.selector = Some([("istio".to_owned(), "egress".to_owned())].into());
        assert!(check_gateway(&elsewhere, &index).is_empty());
    }

    #[test]
    fn credential_secrets_are_checked_in_the_workload_namespace_when_known() {
        let mut index = Index::default();
        let gw = gateway(
            "shop",
            "edge",
            json!([https("shop.example.com", "shop-cert")]),
        );
        index.catalog_mut().set_services_known(true);
        index
            .catalog_mut()
            .upsert_service(&ingress_service(json!([{"port": 443, "targetPort": 8443}])));
        // Secrets unknown: nothing said.
        assert!(
            check_gateway(&gw, &index)
                .iter()
                .all(|f| f.code != CREDENTIAL_SECRET)
        );

        index.catalog_mut().set_secrets_known(true);
        let found = check_gateway(&gw, &index);
        assert_eq!(
            codes(&found),
            [(CREDENTIAL_SECRET, "spec.servers[0].tls.credentialName")]
        );
        assert!(
            found[0]
                .message
                .contains("istio-system/shop-cert does not exist"),
            "{}",
            found[0].message
        );

        index
            .catalog_mut()
            .upsert_secret(&secret("shop-cert", json!({"ca.crt": "Zm9v"})));
        let found = check_gateway(&gw, &index);
        assert!(
            found[0].message.contains("`ca.crt`"),
            "{}",
            found[0].message
        );

        index.catalog_mut().upsert_secret(&secret(
            "shop-cert",
            json!({"tls.crt": "Zm9v", "tls.key": "YmFy"}),
        ));
        assert!(check_gateway(&gw, &index).is_empty());
    }

    #[test]
    fn server_ports_the_fronting_service_lacks_are_reported() {
        let mut index = Index::default();
        let gw = gateway(
            "shop",
            "edge",
            json!([
                {"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]},
                {"port": {"number": 9999, "name": "other", "protocol": "HTTP"}, "hosts": ["*"]},
            ]),
        );
        index
            .catalog_mut()
            .upsert_service(&ingress_service(json!([{"port": 80, "targetPort": 8080}])));
        // Services not known yet: no verdict.
        assert!(check_gateway(&gw, &index).is_empty());
        index.catalog_mut().set_services_known(true);
        let found = check_gateway(&gw, &index);
        assert_eq!(
            codes(&found),
            [(PORT_NOT_ON_SERVICE, "spec.servers[1].port.number")]
        );
        assert!(found[0].message.contains("80→8080"), "{}", found[0].message);
    }
}
