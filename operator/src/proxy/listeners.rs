//! The listeners of `lds.yaml`: the two virtual listeners the init
//! container's rules redirect to, each passing traffic through to where it
//! was going. See the module documentation of [`super`] for how the traffic
//! model adds its listeners and filter chains.

use serde_json::{Value, json};

use super::bootstrap::socket_address;
use super::{
    INBOUND_CAPTURE_PORT, INBOUND_PASSTHROUGH_CLUSTER, OUTBOUND_CAPTURE_PORT, PASSTHROUGH_CLUSTER,
    VIRTUAL_INBOUND_LISTENER, VIRTUAL_OUTBOUND_LISTENER,
};

pub(crate) const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const TCP_PROXY: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
const ORIGINAL_DST: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst";
/// The name of the catch-all chain of each virtual listener.
const PASSTHROUGH_CHAIN: &str = "passthrough";

/// The listeners, in the order they are written.
pub fn listeners() -> Vec<Value> {
    vec![virtual_outbound(), virtual_inbound()]
}

/// Outbound traffic redirected to 15001. `use_original_dst` hands each
/// connection to the listener bound to its original destination, when the
/// traffic model has one; the rest passes through unchanged.
fn virtual_outbound() -> Value {
    json!({
        "@type": LISTENER_TYPE,
        "name": VIRTUAL_OUTBOUND_LISTENER,
        "address": socket_address("0.0.0.0", OUTBOUND_CAPTURE_PORT),
        "use_original_dst": true,
        "filter_chains": [passthrough_chain(PASSTHROUGH_CLUSTER)],
        "traffic_direction": "OUTBOUND",
    })
}

/// Inbound traffic redirected to 15006. The `original_dst` listener filter
/// restores the address the client dialled, so the pass-through cluster
/// connects to the application's port.
fn virtual_inbound() -> Value {
    json!({
        "@type": LISTENER_TYPE,
        "name": VIRTUAL_INBOUND_LISTENER,
        "address": socket_address("0.0.0.0", INBOUND_CAPTURE_PORT),
        "listener_filters": [{
            "name": "envoy.filters.listener.original_dst",
            "typed_config": {"@type": ORIGINAL_DST},
        }],
        "filter_chains": [passthrough_chain(INBOUND_PASSTHROUGH_CLUSTER)],
        "traffic_direction": "INBOUND",
    })
}

/// A chain without a match (it takes what no more specific chain claims)
/// that proxies TCP to `cluster`; its statistics are named after the cluster.
fn passthrough_chain(cluster: &str) -> Value {
    json!({
        "name": PASSTHROUGH_CHAIN,
        "filters": [{
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {
                "@type": TCP_PROXY,
                "stat_prefix": cluster,
                "cluster": cluster,
            },
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_name(name: &str) -> Value {
        listeners().into_iter().find(|l| l["name"] == name).unwrap()
    }

    fn tcp_proxy(listener: &Value) -> &Value {
        let chains = listener["filter_chains"].as_array().unwrap();
        assert_eq!(chains.len(), 1, "{listener}");
        assert!(chains[0].get("filter_chain_match").is_none(), "catch-all");
        &chains[0]["filters"][0]["typed_config"]
    }

    #[test]
    fn outbound_passes_through_to_the_original_destination() {
        let l = by_name("virtualOutbound");
        assert_eq!(l["@type"], LISTENER_TYPE);
        assert_eq!(
            l["address"]["socket_address"],
            json!({"address": "0.0.0.0", "port_value": 15001})
        );
        assert_eq!(l["use_original_dst"], true);
        assert_eq!(
            tcp_proxy(&l),
            &json!({"@type": TCP_PROXY, "stat_prefix": "PassthroughCluster",
                    "cluster": "PassthroughCluster"})
        );
    }

    #[test]
    fn inbound_restores_the_destination_and_passes_through() {
        let l = by_name("virtualInbound");
        assert_eq!(l["address"]["socket_address"]["port_value"], 15006);
        assert_eq!(
            l["listener_filters"][0]["typed_config"]["@type"],
            ORIGINAL_DST
        );
        assert!(l.get("use_original_dst").is_none());
        assert_eq!(tcp_proxy(&l)["cluster"], "InboundPassthroughCluster");
    }
}
