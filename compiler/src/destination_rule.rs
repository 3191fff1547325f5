//! Which DestinationRule applies to a host for a proxy, and the traffic
//! policy of one cluster (port, subset) after Istio's merge:
//! port-level settings replace the top-level ones wholesale for their port,
//! then a subset's policy overrides field by field, then the subset's own
//! port-level settings replace those.

use meshkeeper_crds::networking::DestinationRule;
use meshkeeper_crds::networking::destination_rule::{Subset, TrafficPolicy};

use crate::snapshot::Snapshot;
use crate::visibility::ExportTo;

/// The rule for `host` as a proxy in `proxy_namespace` sees it. Istio's
/// order: a rule in the proxy's namespace, then in the service's namespace,
/// then in the root namespace; within each, an exact host before a wildcard,
/// and the oldest rule first.
pub fn for_host<'a>(
    snapshot: &'a Snapshot,
    proxy_namespace: &str,
    host: &str,
    service_namespace: &str,
) -> Option<&'a DestinationRule> {
    let index = &snapshot.index().destination_rules;
    let exact = index.exact(host);
    let all = index.matching(host);
    let candidates = || {
        all.iter().filter_map(|&i| {
            let dr = snapshot.destination_rules.get(i)?;
            let ns = dr.metadata.namespace.as_deref().unwrap_or("default");
            let visible = ExportTo::from_list(dr.spec.export_to.as_deref(), ns)
                .is_visible_to(proxy_namespace);
            // Rules with a workload selector target specific proxies; they
            // are not applied yet, so they never shadow the general rule.
            let selected = dr.spec.workload_selector.is_none();
            (visible && selected).then_some((ns, exact.contains(&i), dr))
        })
    };
    let pick_oldest = |namespace: &str| {
        candidates()
            .find(|(ns, exact, _)| *ns == namespace && *exact)
            .map(|(.., dr)| dr)
            .or_else(|| {
                candidates()
                    .find(|(ns, ..)| *ns == namespace)
                    .map(|(.., dr)| dr)
            })
    };
    pick_oldest(proxy_namespace)
        .or_else(|| pick_oldest(service_namespace))
        .or_else(|| pick_oldest(&snapshot.mesh.root_namespace))
}

/// The subset named `name`, if the rule defines it.
pub fn subset<'a>(dr: &'a DestinationRule, name: &str) -> Option<&'a Subset> {
    dr.spec
        .subsets
        .iter()
        .flatten()
        .find(|s| s.name.as_deref() == Some(name))
}

/// The policy for one cluster: `port`, and `subset` when it is a subset's.
pub fn merged_policy(dr: &DestinationRule, port: u16, subset: Option<&Subset>) -> TrafficPolicy {
    let top = dr
        .spec
        .traffic_policy
        .as_ref()
        .map(|p| apply_port_level(p.clone(), port))
        .unwrap_or_default();
    match subset.and_then(|s| s.traffic_policy.as_ref()) {
        None => top,
        Some(sub) => {
            let mut merged = top;
            if sub.load_balancer.is_some() {
                merged.load_balancer = sub.load_balancer.clone();
            }
            if sub.connection_pool.is_some() {
                merged.connection_pool = sub.connection_pool.clone();
            }
            if sub.outlier_detection.is_some() {
                merged.outlier_detection = sub.outlier_detection.clone();
            }
            if sub.tls.is_some() {
                merged.tls = sub.tls.clone();
            }
            if sub.tunnel.is_some() {
                merged.tunnel = sub.tunnel.clone();
            }
            if sub.proxy_protocol.is_some() {
                merged.proxy_protocol = sub.proxy_protocol.clone();
            }
            merged.port_level_settings = sub.port_level_settings.clone();
            apply_port_level(merged, port)
        }
    }
}

/// Port-level settings do not inherit: the four fields they hold replace
/// the policy's, absent ones becoming defaults (Istio's documented rule).
fn apply_port_level(mut policy: TrafficPolicy, port: u16) -> TrafficPolicy {
    let level = policy
        .port_level_settings
        .take()
        .into_iter()
        .flatten()
        .find(|p| p.port.as_ref().and_then(|s| s.number) == Some(u32::from(port)));
    if let Some(level) = level {
        policy.load_balancer = level.load_balancer;
        policy.connection_pool = level.connection_pool;
        policy.outlier_detection = level.outlier_detection;
        policy.tls = level.tls;
    }
    policy
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshkeeper_crds::parse::from_value;
    use serde_json::json;

    fn rule(spec: serde_json::Value) -> DestinationRule {
        from_value(&json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "r", "namespace": "ns"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn port_level_replaces_and_subset_overrides_by_field() {
        let dr = rule(json!({
            "host": "svc",
            "trafficPolicy": {
                "loadBalancer": {"simple": "RANDOM"},
                "outlierDetection": {"consecutive5xxErrors": 3},
                "portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": {"simple": "ROUND_ROBIN"}}]
            },
            "subsets": [{"name": "v1", "labels": {"version": "v1"},
                          "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 7}}}}]
        }));
        let top_9080 = merged_policy(&dr, 9080, None);
        assert!(
            top_9080.outlier_detection.is_none(),
            "port level does not inherit"
        );
        assert!(top_9080.load_balancer.is_some());
        let top_80 = merged_policy(&dr, 80, None);
        assert!(top_80.outlier_detection.is_some());
        let v1 = merged_policy(&dr, 80, subset(&dr, "v1"));
        assert!(
            v1.outlier_detection.is_some(),
            "subset inherits what it does not set"
        );
        assert!(v1.connection_pool.is_some());
    }
}
