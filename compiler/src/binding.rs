//! Which VirtualServices (and which of their matches) a proxy applies:
//! the `gateways` a VirtualService or a match names against the gateways
//! the proxy is (the reserved `mesh` for sidecars, `namespace/name` of
//! each Gateway for a gateway proxy), and the hosts it routes, made
//! absolute. Shared by HTTP, TCP and TLS routes, sidecars and gateways.

use meshkeeper_crds::networking::VirtualService;

use crate::names;
use crate::proxy::Proxy;
use crate::snapshot::{Labels, Snapshot};
use crate::visibility::ExportTo;

/// The reserved gateway name of every sidecar.
pub const MESH: &str = "mesh";

/// A gateway reference as written (`mesh`, `name`, `ns/name`, or the
/// legacy `name.ns.svc.…`) made `ns/name`, relative to the namespace of
/// the object that wrote it, as Istio resolves it.
pub fn resolve_gateway(reference: &str, namespace: &str) -> String {
    if reference == MESH || reference.contains('/') {
        return reference.to_string();
    }
    match reference.split_once('.') {
        Some((name, rest)) => {
            let ns = rest.split('.').next().unwrap_or(namespace);
            format!("{ns}/{name}")
        }
        None => format!("{namespace}/{reference}"),
    }
}

fn namespace_of(vs: &VirtualService) -> &str {
    vs.metadata.namespace.as_deref().unwrap_or("default")
}

/// Whether `gateways` (of a VirtualService or a match; absent or empty
/// means `mesh`) name one of `scope`.
pub fn names_any(gateways: Option<&[String]>, namespace: &str, scope: &[String]) -> bool {
    match gateways.filter(|g| !g.is_empty()) {
        None => scope.iter().any(|s| s == MESH),
        Some(list) => list
            .iter()
            .any(|g| scope.contains(&resolve_gateway(g, namespace))),
    }
}

/// Whether the match-level `gateways` let the match apply in `scope`:
/// absent or empty inherits the VirtualService's binding.
pub fn match_applies(gateways: Option<&[String]>, namespace: &str, scope: &[String]) -> bool {
    gateways.is_none_or(|g| g.is_empty()) || names_any(gateways, namespace, scope)
}

/// Static conditions every match kind shares (port, source labels,
/// source namespace, gateways), decided for one proxy at compile time.
pub struct StaticMatch<'a> {
    pub port: Option<u32>,
    pub source_labels: Option<&'a Labels>,
    pub source_namespace: Option<&'a str>,
    pub gateways: Option<&'a [String]>,
}

impl StaticMatch<'_> {
    pub fn holds(&self, proxy: &Proxy, vs_namespace: &str, scope: &[String], port: u16) -> bool {
        self.port.is_none_or(|p| p == u32::from(port))
            && self.source_labels.is_none_or(|l| proxy.matches(l))
            && self.source_namespace.is_none_or(|ns| ns == proxy.namespace)
            && match_applies(self.gateways, vs_namespace, scope)
    }
}

/// The VirtualService's hosts, short names resolved in its namespace.
pub fn hosts(vs: &VirtualService, cluster_domain: &str) -> Vec<String> {
    let ns = namespace_of(vs);
    vs.spec
        .hosts
        .iter()
        .flatten()
        .map(|h| names::resolve_host(h, ns, cluster_domain))
        .collect()
}

/// Whether `vs` is bound to one of `scope` and visible to `proxy`'s
/// namespace.
pub fn applies(vs: &VirtualService, proxy: &Proxy, scope: &[String]) -> bool {
    let ns = namespace_of(vs);
    names_any(vs.spec.gateways.as_deref(), ns, scope)
        && ExportTo::from_list(vs.spec.export_to.as_deref(), ns).is_visible_to(&proxy.namespace)
}

/// VirtualServices bound to one of `scope` and visible to `proxy`'s
/// namespace, oldest first.
pub fn bound<'a, 's>(
    snapshot: &'a Snapshot,
    proxy: &'s Proxy,
    scope: &'s [String],
) -> impl Iterator<Item = &'a VirtualService> + use<'a, 's> {
    snapshot
        .virtual_services
        .iter()
        .filter(move |vs| applies(vs, proxy, scope))
}

/// Every VirtualService of a sidecar whose hosts cover `host` (exact or
/// wildcard), oldest first: TCP and TLS routes consult them all, as Istio
/// does.
pub fn mesh_virtual_services_for<'a>(
    snapshot: &'a Snapshot,
    proxy: &Proxy,
    host: &str,
) -> Vec<&'a VirtualService> {
    let scope = [MESH.to_string()];
    snapshot
        .index()
        .virtual_services
        .matching(host)
        .into_iter()
        .filter_map(|i| snapshot.virtual_services.get(i))
        .filter(|vs| applies(vs, proxy, &scope))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_references_resolve_in_the_writers_namespace() {
        assert_eq!(resolve_gateway("mesh", "a"), "mesh");
        assert_eq!(resolve_gateway("gw", "a"), "a/gw");
        assert_eq!(resolve_gateway("b/gw", "a"), "b/gw");
        assert_eq!(resolve_gateway("gw.b.svc.cluster.local", "a"), "b/gw");
        let scope = vec!["a/gw".to_string()];
        assert!(names_any(Some(&["gw".into()]), "a", &scope));
        assert!(!names_any(None, "a", &scope));
        assert!(names_any(None, "a", &[MESH.to_string()]));
        assert!(match_applies(None, "a", &scope));
    }
}
