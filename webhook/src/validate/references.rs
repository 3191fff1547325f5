//! Cross-object reference checks over the [`Index`] and its [`Catalog`],
//! after Istio's analyzers (`istioctl analyze`). All are warnings: Istio's
//! webhook accepts these objects, and each can be right a moment later
//! (the Gateway or Service is applied next), so they advise and never deny.
//!
//! - `MK0401` a VirtualService names a Gateway that does not exist.
//! - `MK0402` none of a VirtualService's hosts is exposed by a Gateway it
//!   is bound to, so the gateway never routes with it.
//! - `MK0403` a destination host is neither a Kubernetes Service nor a
//!   ServiceEntry host (only when the Services are known).
//! - `MK0404` a destination port is not a port of its Service/ServiceEntry.
//! - `MK0405` several VirtualServices bind the same host to the mesh
//!   gateway: sidecars use only one of them.
//! - `MK0406` ServiceEntries declare the same host and port with different
//!   protocols.

use std::collections::BTreeSet;

use meshkeeper_crds::networking::{ServiceEntry, VirtualService};

use super::catalog::{IndexedGateway, IndexedServiceEntry};
use super::index::{ExportTo, Index, ObjectKey, destinations, key_of, pattern_covers};
use super::{Check, Finding};

pub const MISSING_GATEWAY: &str = "MK0401";
pub const HOST_NOT_IN_GATEWAY: &str = "MK0402";
pub const UNKNOWN_HOST: &str = "MK0403";
pub const UNKNOWN_PORT: &str = "MK0404";
pub const CONFLICTING_MESH_HOST: &str = "MK0405";
pub const CONFLICTING_PROTOCOL: &str = "MK0406";

fn warning(code: &'static str, path: String, message: String) -> Finding {
    Finding::warning(Check::References, code, path, message)
}

/// Every reference check of a VirtualService.
pub fn check_virtual_service(vs: &VirtualService, index: &Index) -> Vec<Finding> {
    let key = key_of(&vs.metadata);
    let mut found = check_gateways(vs, &key, index);
    found.extend(check_destination_hosts(vs, &key, index));
    found.extend(check_mesh_hosts(vs, &key, index));
    found
}

/// `ns/name`, `name` (in the VirtualService's namespace) or the legacy
/// `name.ns.svc.<domain>`; `mesh` is the sidecars, not a Gateway object.
fn gateway_key(reference: &str, namespace: &str) -> Option<ObjectKey> {
    if reference == "mesh" || reference.is_empty() {
        return None;
    }
    if let Some((ns, name)) = reference.split_once('/') {
        return Some(ObjectKey::new(ns, name));
    }
    match reference.split('.').collect::<Vec<_>>().as_slice() {
        [name] => Some(ObjectKey::new(namespace, *name)),
        [name, ns, ..] => Some(ObjectKey::new(*ns, *name)),
        [] => None,
    }
}

fn check_gateways(vs: &VirtualService, key: &ObjectKey, index: &Index) -> Vec<Finding> {
    let hosts = vs.spec.hosts.as_deref().unwrap_or_default();
    let mut found = Vec::new();
    for (i, reference) in vs.spec.gateways.iter().flatten().enumerate() {
        let Some(gateway_key) = gateway_key(reference, &key.namespace) else {
            continue;
        };
        let path = format!("spec.gateways[{i}]");
        match index.catalog().gateway(&gateway_key) {
            None => found.push(warning(
                MISSING_GATEWAY,
                path,
                format!(
                    "Gateway \"{reference}\" ({gateway_key}) does not exist, so no gateway routes \
                     with this VirtualService; create Gateway {gateway_key} or fix the name \
                     (`namespace/name` for a Gateway in another namespace)"
                ),
            )),
            Some(gateway) if !hosts.is_empty() && !exposes_any(gateway, hosts, &key.namespace) => {
                found.push(warning(
                    HOST_NOT_IN_GATEWAY,
                    path,
                    format!(
                        "none of the hosts {} is exposed to namespace \"{}\" by Gateway {} \
                         (its servers' hosts: {}), so that gateway ignores this VirtualService; \
                         add a matching host to the Gateway's servers or fix spec.hosts",
                        quoted(hosts),
                        key.namespace,
                        gateway.key,
                        quoted(&gateway_hosts(gateway)),
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    found
}

fn gateway_hosts(gateway: &IndexedGateway) -> Vec<String> {
    gateway
        .servers
        .iter()
        .flat_map(|s| s.hosts.iter().cloned())
        .collect()
}

/// Whether a Gateway exposes one of `hosts` to VirtualServices of
/// `namespace`: a server host `ns/host` counts for that namespace only
/// (`.` the Gateway's own, `*` any), a bare host for every namespace.
fn exposes_any(gateway: &IndexedGateway, hosts: &[String], namespace: &str) -> bool {
    gateway.servers.iter().flat_map(|s| &s.hosts).any(|entry| {
        let (scope, pattern) = entry.split_once('/').unwrap_or(("*", entry));
        let scope_ok = match scope {
            "*" => true,
            "." => gateway.key.namespace == namespace,
            ns => ns == namespace,
        };
        scope_ok && hosts.iter().any(|h| hosts_match(pattern, h))
    })
}

/// Whether two host patterns (names or `*.suffix`, `*`) share a host.
fn hosts_match(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    a == b || pattern_covers(&a, &b) || pattern_covers(&b, &a)
}

fn quoted(items: &[String]) -> String {
    let shown: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", shown.join(", "))
}

/// The ports a destination host offers, when the host exists.
enum Target<'a> {
    Service(&'a ObjectKey, Vec<u32>),
    Entries(Vec<&'a IndexedServiceEntry>),
}

/// What a resolved host names for a caller in `namespace`: a Kubernetes
/// Service (by its full name or `name.namespace`), else the visible
/// ServiceEntries declaring it (exactly or by wildcard).
fn target<'a>(index: &'a Index, resolved: &str, namespace: &str) -> Option<Target<'a>> {
    let catalog = index.catalog();
    let full = index
        .service_of_host(resolved)
        .map(|(ns, name)| (ns.to_owned(), name.to_owned()));
    let short = || {
        index.alias_of(resolved).and_then(|long| {
            index
                .service_of_host(&long)
                .map(|(ns, name)| (ns.to_owned(), name.to_owned()))
        })
    };
    if let Some((ns, name)) = full.or_else(short)
        && let Some(service) = catalog.service(&ns, &name)
    {
        return Some(Target::Service(
            &service.key,
            service.ports.iter().map(|p| p.port).collect(),
        ));
    }
    let entries: Vec<&IndexedServiceEntry> = index
        .match_levels(resolved)
        .iter()
        .flatten()
        .flat_map(|pattern| catalog.service_entries_declaring(pattern))
        .filter(|e| e.is_visible_to(namespace))
        .collect();
    (!entries.is_empty()).then_some(Target::Entries(entries))
}

fn check_destination_hosts(vs: &VirtualService, key: &ObjectKey, index: &Index) -> Vec<Finding> {
    if !index.catalog().services_known() {
        return Vec::new();
    }
    let mut found = Vec::new();
    for (path, destination) in destinations(vs) {
        let Some(host) = destination.host.as_deref().filter(|h| !h.is_empty()) else {
            continue;
        };
        // IPs and wildcards are not registry names a lookup could refute.
        if host.contains('*') || host.parse::<std::net::IpAddr>().is_ok() {
            continue;
        }
        let resolved = index.resolve_host(&host.to_ascii_lowercase(), &key.namespace);
        let port = destination.port.as_ref().and_then(|p| p.number);
        match target(index, &resolved, &key.namespace) {
            None => found.push(warning(
                UNKNOWN_HOST,
                format!("{path}.host"),
                format!(
                    "host \"{host}\" ({resolved}) is neither a Kubernetes Service nor a \
                     ServiceEntry host visible in namespace \"{}\", so requests routed there \
                     fail; create the Service (or a ServiceEntry for an external host) or fix \
                     the name",
                    key.namespace
                ),
            )),
            Some(target) => {
                if let Some(finding) = check_port(&path, host, port, &target) {
                    found.push(finding);
                }
            }
        }
    }
    found
}

fn check_port(path: &str, host: &str, port: Option<u32>, target: &Target<'_>) -> Option<Finding> {
    let port = port?;
    let (owner, ports): (String, BTreeSet<u32>) = match target {
        Target::Service(key, ports) => (format!("Service {key}"), ports.iter().copied().collect()),
        Target::Entries(entries) => (
            format!(
                "ServiceEntry {}",
                entries
                    .iter()
                    .map(|e| e.key.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            entries
                .iter()
                .flat_map(|e| e.ports.iter().map(|p| p.number))
                .collect(),
        ),
    };
    // A ServiceEntry without ports takes whatever port the caller uses.
    if ports.is_empty() || ports.contains(&port) {
        return None;
    }
    let listed: Vec<String> = ports.iter().map(u32::to_string).collect();
    Some(warning(
        UNKNOWN_PORT,
        format!("{path}.port.number"),
        format!(
            "port {port} of host \"{host}\" is not a port of {owner} (ports: {}), so requests \
             routed there fail; use one of those ports or add {port} to it",
            listed.join(", ")
        ),
    ))
}

/// Namespaces two export scopes share: whether any.
fn scopes_overlap(a: &ExportTo, b: &ExportTo) -> bool {
    match (a, b) {
        (ExportTo::All, other) | (other, ExportTo::All) => {
            !matches!(other, ExportTo::Namespaces(set) if set.is_empty())
        }
        (ExportTo::Namespaces(x), ExportTo::Namespaces(y)) => !x.is_disjoint(y),
    }
}

fn check_mesh_hosts(vs: &VirtualService, key: &ObjectKey, index: &Index) -> Vec<Finding> {
    let catalog = index.catalog();
    // From the object itself: at admission it is not in the index yet.
    let Some(own) = index.mesh_binding(vs, &key.namespace) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (i, host) in vs.spec.hosts.iter().flatten().enumerate() {
        let resolved = index.resolve_host(&host.to_ascii_lowercase(), &key.namespace);
        let mut others: Vec<String> = catalog
            .mesh_bindings_of(&resolved)
            .into_iter()
            .filter(|(other, binding)| {
                *other != key && scopes_overlap(&own.export_to, &binding.export_to)
            })
            .map(|(other, _)| other.to_string())
            .collect();
        if others.is_empty() {
            continue;
        }
        others.sort();
        found.push(warning(
            CONFLICTING_MESH_HOST,
            format!("spec.hosts[{i}]"),
            format!(
                "host \"{host}\" ({resolved}) is also bound to the mesh gateway by \
                 VirtualService {}: sidecars use the rules of only one VirtualService per host, \
                 so the others' routes are ignored; merge them into one VirtualService (or \
                 use delegate VirtualServices)",
                others.join(", ")
            ),
        ));
    }
    found
}

/// ServiceEntries declaring one of this entry's hosts with one of its port
/// numbers but another protocol, in a namespace both are visible to.
pub fn check_service_entry(entry: &ServiceEntry, index: &Index) -> Vec<Finding> {
    let own = IndexedServiceEntry::from_service_entry(entry);
    let mut found = Vec::new();
    for (i, host) in own.hosts.iter().enumerate() {
        for (j, port) in own.ports.iter().enumerate() {
            let mut clashes: Vec<String> = index
                .catalog()
                .service_entries_declaring(host)
                .filter(|other| other.key != own.key)
                .filter(|other| scopes_overlap(&own.export_to, &other.export_to))
                .filter_map(|other| {
                    let theirs = other.ports.iter().find(|p| p.number == port.number)?;
                    (theirs.protocol != port.protocol)
                        .then(|| format!("{} ({})", other.key, shown_protocol(&theirs.protocol)))
                })
                .collect();
            if clashes.is_empty() {
                continue;
            }
            clashes.sort();
            found.push(warning(
                CONFLICTING_PROTOCOL,
                format!("spec.ports[{j}].protocol"),
                format!(
                    "host \"{}\" port {} is declared {} here (spec.hosts[{i}]) but with another \
                     protocol by ServiceEntry {}: proxies pick one of them, so traffic may be \
                     handled with the wrong protocol; use the same protocol in every \
                     ServiceEntry for that host and port",
                    host,
                    port.number,
                    shown_protocol(&port.protocol),
                    clashes.join(", ")
                ),
            ));
        }
    }
    found
}

fn shown_protocol(protocol: &str) -> &str {
    if protocol.is_empty() {
        "without protocol (TCP)"
    } else {
        protocol
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vs(namespace: &str, name: &str, spec: serde_json::Value) -> VirtualService {
        meshkeeper_crds::parse::from_value(&json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec
        }))
        .unwrap()
    }

    fn gateway(
        namespace: &str,
        name: &str,
        spec: serde_json::Value,
    ) -> meshkeeper_crds::networking::Gateway {
        meshkeeper_crds::parse::from_value(&json!({
            "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec
        }))
        .unwrap()
    }

    fn service_entry(namespace: &str, name: &str, spec: serde_json::Value) -> ServiceEntry {
        meshkeeper_crds::parse::from_value(&json!({
            "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec
        }))
        .unwrap()
    }

    fn service(namespace: &str, name: &str, ports: &[i32]) -> k8s_openapi::api::core::v1::Service {
        let ports: Vec<_> = ports.iter().map(|p| json!({"port": p})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": name}, "ports": ports}
        }))
        .unwrap()
    }

    fn codes(found: &[Finding]) -> Vec<(&str, &str)> {
        found.iter().map(|f| (f.code, f.path.as_str())).collect()
    }

    fn bound(gateways: serde_json::Value) -> VirtualService {
        vs(
            "shop",
            "web",
            json!({"hosts": ["shop.example.com"], "gateways": gateways,
            "http": [{"route": [{"destination": {"host": "web"}}]}]}),
        )
    }

    #[test]
    fn a_missing_gateway_is_named_and_an_existing_one_is_not() {
        let mut index = Index::default();
        let found = check_virtual_service(&bound(json!(["edge", "mesh"])), &index);
        assert_eq!(codes(&found), [(MISSING_GATEWAY, "spec.gateways[0]")]);
        assert!(
            found[0].message.contains("shop/edge"),
            "{}",
            found[0].message
        );

        index.catalog_mut().upsert_gateway(&gateway(
            "shop",
            "edge",
            json!({
            "selector": {"istio": "ingressgateway"},
            "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                         "hosts": ["*.example.com"]}]}),
        ));
        assert!(check_virtual_service(&bound(json!(["edge"])), &index).is_empty());
        // The namespace/name form reaches a Gateway elsewhere.
        index.catalog_mut().upsert_gateway(&gateway(
            "istio-system",
            "public",
            json!({
            "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                         "hosts": ["*"]}]}),
        ));
        assert!(check_virtual_service(&bound(json!(["istio-system/public"])), &index).is_empty());
        assert_eq!(
            codes(&check_virtual_service(
                &bound(json!(["istio-system/private"])),
                &index
            )),
            [(MISSING_GATEWAY, "spec.gateways[0]")]
        );
    }

    #[test]
    fn hosts_the_gateway_does_not_expose_are_reported() {
        let mut index = Index::default();
        index.catalog_mut().upsert_gateway(&gateway(
            "shop",
            "edge",
            json!({
            "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                         "hosts": ["api.example.org", "other/shop.example.com"]}]}),
        ));
        let found = check_virtual_service(&bound(json!(["edge"])), &index);
        assert_eq!(codes(&found), [(HOST_NOT_IN_GATEWAY, "spec.gateways[0]")]);
        assert!(
            found[0].message.contains("shop.example.com"),
            "{}",
            found[0].message
        );

        // `./host` on a Gateway of the same namespace exposes it.
        index.catalog_mut().upsert_gateway(&gateway(
            "shop",
            "edge",
            json!({
            "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                         "hosts": ["./shop.example.com"]}]}),
        ));
        assert!(check_virtual_service(&bound(json!(["edge"])), &index).is_empty());
    }

    #[test]
    fn destination_hosts_and_ports_are_checked_once_services_are_known() {
        let mut index = Index::default();
        let route = |host: &str, port: u32| {
            vs(
                "shop",
                "r",
                json!({"hosts": ["x"], "http": [{"route": [
                {"destination": {"host": host, "port": {"number": port}}}]}]}),
            )
        };
        // Unknown Services: nothing to say.
        assert!(check_virtual_service(&route("ghost", 80), &index).is_empty());

        index.catalog_mut().set_services_known(true);
        index
            .catalog_mut()
            .upsert_service(&service("shop", "web", &[80, 8080]));
        index.catalog_mut().upsert_service_entry(&service_entry("shop", "ext", json!({
            "hosts": ["api.example.com"], "ports": [{"number": 443, "name": "https", "protocol": "TLS"}],
            "resolution": "DNS"})));
        assert!(check_virtual_service(&route("web", 8080), &index).is_empty());
        assert!(check_virtual_service(&route("web.shop.svc.cluster.local", 80), &index).is_empty());
        assert!(check_virtual_service(&route("web.shop", 80), &index).is_empty());
        assert!(check_virtual_service(&route("api.example.com", 443), &index).is_empty());

        let found = check_virtual_service(&route("ghost", 80), &index);
        assert_eq!(
            codes(&found),
            [(UNKNOWN_HOST, "spec.http[0].route[0].destination.host")]
        );
        assert!(found[0].message.contains("ghost.shop.svc.cluster.local"));
        let found = check_virtual_service(&route("web", 9090), &index);
        assert_eq!(
            codes(&found),
            [(
                UNKNOWN_PORT,
                "spec.http[0].route[0].destination.port.number"
            )]
        );
        assert!(
            found[0].message.contains("80, 8080"),
            "{}",
            found[0].message
        );
        let found = check_virtual_service(&route("api.example.com", 80), &index);
        assert_eq!(codes(&found)[0].0, UNKNOWN_PORT);
    }

    #[test]
    fn two_virtual_services_binding_one_host_to_the_mesh_conflict() {
        let mut index = Index::default();
        let a = vs(
            "shop",
            "a",
            json!({"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}),
        );
        let b = vs(
            "shop",
            "b",
            json!({"hosts": ["reviews.shop.svc.cluster.local"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}),
        );
        index.upsert_virtual_service(&a);
        assert!(check_virtual_service(&a, &index).is_empty());
        index.upsert_virtual_service(&b);
        let found = check_virtual_service(&a, &index);
        assert_eq!(codes(&found), [(CONFLICTING_MESH_HOST, "spec.hosts[0]")]);
        assert!(found[0].message.contains("shop/b"), "{}", found[0].message);

        // Bound to a gateway only, or exported to disjoint namespaces: no conflict.
        let gw_only = vs(
            "shop",
            "b",
            json!({"hosts": ["reviews"], "gateways": ["edge"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}),
        );
        index.upsert_virtual_service(&gw_only);
        assert!(
            codes(&check_virtual_service(&a, &index))
                .iter()
                .all(|c| c.0 != CONFLICTING_MESH_HOST)
        );
        let local = |name: &str, to: &str| {
            vs(
                "shop",
                name,
                json!({"hosts": ["reviews"], "exportTo": [to], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}),
            )
        };
        index.upsert_virtual_service(&local("a", "."));
        index.upsert_virtual_service(&local("b", "other"));
        assert!(check_virtual_service(&local("a", "."), &index).is_empty());
        index.remove_virtual_service("shop", "b");
        index.upsert_virtual_service(&b);
        assert_eq!(
            codes(&check_virtual_service(&local("a", "."), &index))[0].0,
            CONFLICTING_MESH_HOST
        );
    }

    #[test]
    fn service_entries_with_one_host_and_port_but_two_protocols_conflict() {
        let mut index = Index::default();
        let entry = |name: &str, protocol: &str| {
            service_entry(
                "shop",
                name,
                json!({
            "hosts": ["db.example.com"], "addresses": ["10.0.0.1"],
            "ports": [{"number": 5432, "name": "db", "protocol": protocol}], "resolution": "DNS"}),
            )
        };
        index.catalog_mut().upsert_service_entry(&entry("a", "TCP"));
        assert!(check_service_entry(&entry("b", "tcp"), &index).is_empty());
        let found = check_service_entry(&entry("b", "HTTP"), &index);
        assert_eq!(
            codes(&found),
            [(CONFLICTING_PROTOCOL, "spec.ports[0].protocol")]
        );
        assert!(
            found[0].message.contains("shop/a (TCP)"),
            "{}",
            found[0].message
        );
    }
}
