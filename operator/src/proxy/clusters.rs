//! The clusters of `cds.yaml`: the two pass-through clusters that connect to
//! a connection's original destination.

use serde_json::{Value, json};

use super::bootstrap::socket_address;
use super::{INBOUND_PASSTHROUGH_CLUSTER, INBOUND_PASSTHROUGH_SOURCE, PASSTHROUGH_CLUSTER};

pub(crate) const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// As Istio's default `connectTimeout`.
const CONNECT_TIMEOUT: &str = "10s";
/// Envoy's default circuit breakers allow 1024 connections per cluster; a
/// pass-through cluster carries all of a pod's unmodelled traffic, so it
/// must not be the thing that limits it.
const UNLIMITED: u32 = u32::MAX;

/// The clusters, in the order they are written.
pub fn clusters() -> Vec<Value> {
    vec![outbound_passthrough(), inbound_passthrough()]
}

/// Outbound traffic that no service claims. Envoy runs as the proxy UID,
/// whose connections the init container never captures, so they leave the
/// pod directly.
fn outbound_passthrough() -> Value {
    original_destination(PASSTHROUGH_CLUSTER)
}

/// Inbound traffic to the application. The connection to the pod's own
/// address goes over loopback as the proxy UID, which the init container
/// would send back to 15006; it lets through traffic from
/// [`INBOUND_PASSTHROUGH_SOURCE`], so the cluster binds that source.
fn inbound_passthrough() -> Value {
    let mut cluster = original_destination(INBOUND_PASSTHROUGH_CLUSTER);
    cluster["upstream_bind_config"] =
        json!({"source_address": socket_address(INBOUND_PASSTHROUGH_SOURCE, 0)["socket_address"]});
    cluster
}

/// A cluster whose one host is the downstream connection's original
/// destination.
fn original_destination(name: &str) -> Value {
    json!({
        "@type": CLUSTER_TYPE,
        "name": name,
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": CONNECT_TIMEOUT,
        "circuit_breakers": {
            "thresholds": [{
                "max_connections": UNLIMITED,
                "max_pending_requests": UNLIMITED,
                "max_requests": UNLIMITED,
                "max_retries": UNLIMITED,
            }],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_name(name: &str) -> Value {
        clusters().into_iter().find(|c| c["name"] == name).unwrap()
    }

    #[test]
    fn both_connect_to_the_original_destination() {
        for name in ["PassthroughCluster", "InboundPassthroughCluster"] {
            let c = by_name(name);
            assert_eq!(c["@type"], CLUSTER_TYPE);
            assert_eq!(c["type"], "ORIGINAL_DST", "{c}");
            assert_eq!(c["lb_policy"], "CLUSTER_PROVIDED", "{c}");
            assert_eq!(
                c["circuit_breakers"]["thresholds"][0]["max_connections"],
                4_294_967_295u64
            );
        }
    }

    #[test]
    fn only_inbound_binds_the_source_the_capture_rules_let_through() {
        assert_eq!(
            by_name("InboundPassthroughCluster")["upstream_bind_config"],
            json!({"source_address": {"address": "127.0.0.6", "port_value": 0}})
        );
        assert!(
            by_name("PassthroughCluster")
                .get("upstream_bind_config")
                .is_none()
        );
    }
}
