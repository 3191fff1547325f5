//! Names as Istio spells them, so dashboards and habits carry over:
//! `outbound|9080|v1|reviews.bookinfo.svc.cluster.local`, `inbound|9080||`,
//! listener `0.0.0.0_9080`, route configuration `9080`.

/// The catch-all cluster for traffic to destinations outside the registry
/// (outbound policy ALLOW_ANY).
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
/// The cluster that drops traffic (outbound policy REGISTRY_ONLY).
pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
/// Inbound traffic to ports no service declares.
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";
/// The listener on 15001 that iptables sends all outbound traffic to.
pub const VIRTUAL_OUTBOUND_LISTENER: &str = "virtualOutbound";
/// The listener on 15006 that iptables sends all inbound traffic to.
pub const VIRTUAL_INBOUND_LISTENER: &str = "virtualInbound";
pub const VIRTUAL_OUTBOUND_PORT: u16 = 15001;
pub const VIRTUAL_INBOUND_PORT: u16 = 15006;

pub fn outbound_cluster(port: u16, subset: &str, host: &str) -> String {
    format!("outbound|{port}|{subset}|{host}")
}

/// `outbound|PORT|SUBSET|HOST` split into its parts.
pub fn parse_outbound_cluster(name: &str) -> Option<(u16, &str, &str)> {
    let mut parts = name.splitn(4, '|');
    if parts.next()? != "outbound" {
        return None;
    }
    let port = parts.next()?.parse().ok()?;
    Some((port, parts.next()?, parts.next()?))
}

pub fn inbound_cluster(port: u16) -> String {
    format!("inbound|{port}||")
}

/// HTTP ports share one wildcard listener per port.
pub fn http_listener(port: u16) -> String {
    format!("0.0.0.0_{port}")
}

/// TCP ports get a listener per service address.
pub fn tcp_listener(address: &str, port: u16) -> String {
    format!("{address}_{port}")
}

pub fn route_config(port: u16) -> String {
    port.to_string()
}

/// `name.namespace.svc.<domain>`.
pub fn service_fqdn(name: &str, namespace: &str, cluster_domain: &str) -> String {
    format!("{name}.{namespace}.svc.{cluster_domain}")
}

/// A host as written in a VirtualService or DestinationRule, made absolute
/// the way Istio does: a name without a dot is a Service of the object's own
/// namespace; anything else (FQDN, wildcard, IP) is taken as written.
pub fn resolve_host(host: &str, namespace: &str, cluster_domain: &str) -> String {
    if host == "*" || host.contains('.') {
        host.to_string()
    } else {
        service_fqdn(host, namespace, cluster_domain)
    }
}

/// Whether `pattern` (possibly `*` or `*.suffix`) covers `host`.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_istio() {
        assert_eq!(
            outbound_cluster(9080, "v1", "reviews.bookinfo.svc.cluster.local"),
            "outbound|9080|v1|reviews.bookinfo.svc.cluster.local"
        );
        assert_eq!(
            outbound_cluster(9080, "", "reviews.bookinfo.svc.cluster.local"),
            "outbound|9080||reviews.bookinfo.svc.cluster.local"
        );
        assert_eq!(inbound_cluster(9080), "inbound|9080||");
        assert_eq!(
            parse_outbound_cluster("outbound|9080|v1|reviews.bookinfo.svc.cluster.local"),
            Some((9080, "v1", "reviews.bookinfo.svc.cluster.local"))
        );
        assert_eq!(parse_outbound_cluster("inbound|9080||"), None);
        assert_eq!(http_listener(9080), "0.0.0.0_9080");
        assert_eq!(tcp_listener("10.0.0.3", 3306), "10.0.0.3_3306");
        assert_eq!(route_config(9080), "9080");
    }

    #[test]
    fn short_names_resolve_in_the_objects_namespace() {
        assert_eq!(
            resolve_host("reviews", "bookinfo", "cluster.local"),
            "reviews.bookinfo.svc.cluster.local"
        );
        assert_eq!(
            resolve_host(
                "reviews.other.svc.cluster.local",
                "bookinfo",
                "cluster.local"
            ),
            "reviews.other.svc.cluster.local"
        );
        assert_eq!(resolve_host("*", "bookinfo", "cluster.local"), "*");
    }

    #[test]
    fn wildcards_cover_suffixes() {
        assert!(host_matches("*", "a.b"));
        assert!(host_matches(
            "*.bookinfo.svc.cluster.local",
            "reviews.bookinfo.svc.cluster.local"
        ));
        assert!(!host_matches(
            "*.other.svc.cluster.local",
            "reviews.bookinfo.svc.cluster.local"
        ));
        assert!(host_matches(
            "reviews.bookinfo.svc.cluster.local",
            "reviews.bookinfo.svc.cluster.local"
        ));
    }
}
