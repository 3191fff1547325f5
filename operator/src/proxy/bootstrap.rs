//! The Envoy bootstrap: admin on loopback, the health and Prometheus
//! listeners answered from the admin interface, and listeners and clusters
//! read from the watched files beside it.
//!
//! Node id and cluster are not set here: the sidecar passes them on the
//! command line (`--service-node`, `--service-cluster`), per pod.

use serde_json::{Value, json};

use super::{
    ADMIN_ADDRESS, ADMIN_PORT, CLUSTERS_FILE, CONFIG_DIR, HEALTH_PORT, LISTENERS_FILE,
    PROMETHEUS_PORT,
};
use meshkeeper_webhook::inject::names::READINESS_PATH;

/// The static cluster that reaches the admin interface; the health and
/// Prometheus listeners route to it.
pub(crate) const ADMIN_CLUSTER: &str = "meshkeeper_admin";
const HEALTH_LISTENER: &str = "meshkeeper_health";
const PROMETHEUS_LISTENER: &str = "meshkeeper_prometheus";
/// Envoy's admin endpoint that answers 200 once the proxy is initialised
/// (listeners and clusters loaded) and 503 before, or while draining.
const ADMIN_READY_PATH: &str = "/ready";
const PROMETHEUS_PATH: &str = "/stats/prometheus";
/// Envoy's default; said explicitly so the file shows it.
const CONNECT_TIMEOUT: &str = "1s";

const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const HTTP_CONNECTION_MANAGER: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// The bootstrap as a JSON value (rendered to YAML by the caller).
pub fn bootstrap() -> Value {
    json!({
        "admin": {
            "address": socket_address(ADMIN_ADDRESS, ADMIN_PORT),
        },
        "static_resources": {
            "listeners": [
                admin_proxy_listener(HEALTH_LISTENER, HEALTH_PORT, READINESS_PATH, Some(ADMIN_READY_PATH)),
                admin_proxy_listener(PROMETHEUS_LISTENER, PROMETHEUS_PORT, PROMETHEUS_PATH, None),
            ],
            "clusters": [admin_cluster()],
        },
        "dynamic_resources": {
            "lds_config": watched_file(LISTENERS_FILE),
            "cds_config": watched_file(CLUSTERS_FILE),
        },
    })
}

/// A config source reading `file` from the mounted folder, read again
/// whenever the kubelet swaps the folder's content.
pub(crate) fn watched_file(file: &str) -> Value {
    json!({
        "path_config_source": {
            "path": format!("{CONFIG_DIR}/{file}"),
            "watched_directory": {"path": CONFIG_DIR},
        },
        "resource_api_version": "V3",
    })
}

pub(crate) fn socket_address(address: &str, port: u16) -> Value {
    json!({"socket_address": {"address": address, "port_value": port}})
}

/// A listener on every address at `port` that answers exactly `path` (any
/// query) from the admin interface, at `admin_path` when the admin's path
/// differs, and 404 for everything else: the admin interface itself stays
/// on loopback.
fn admin_proxy_listener(name: &str, port: u16, path: &str, admin_path: Option<&str>) -> Value {
    let mut route = json!({"cluster": ADMIN_CLUSTER});
    if let Some(admin_path) = admin_path {
        route["prefix_rewrite"] = json!(admin_path);
    }
    json!({
        "name": name,
        "address": socket_address("0.0.0.0", port),
        "filter_chains": [{
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": HTTP_CONNECTION_MANAGER,
                    "stat_prefix": name,
                    "route_config": {
                        "name": name,
                        "virtual_hosts": [{
                            "name": name,
                            "domains": ["*"],
                            "routes": [{"match": {"path": path}, "route": route}],
                        }],
                    },
                    "http_filters": [{
                        "name": "envoy.filters.http.router",
                        "typed_config": {"@type": ROUTER},
                    }],
                },
            }],
        }],
    })
}

fn admin_cluster() -> Value {
    json!({
        "name": ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": CONNECT_TIMEOUT,
        "load_assignment": {
            "cluster_name": ADMIN_CLUSTER,
            "endpoints": [{
                "lb_endpoints": [{
                    "endpoint": {"address": socket_address(ADMIN_ADDRESS, ADMIN_PORT)},
                }],
            }],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener<'a>(b: &'a Value, name: &str) -> &'a Value {
        b["static_resources"]["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()
    }

    fn only_route(listener: &Value) -> &Value {
        let hcm = &listener["filter_chains"][0]["filters"][0]["typed_config"];
        let routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
            .as_array()
            .unwrap();
        assert_eq!(routes.len(), 1, "{listener}");
        &routes[0]
    }

    #[test]
    fn admin_listens_on_loopback_only() {
        let b = bootstrap();
        assert_eq!(
            b["admin"]["address"]["socket_address"],
            json!({"address": "127.0.0.1", "port_value": 15000})
        );
        let cluster = &b["static_resources"]["clusters"][0];
        assert_eq!(
            cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"],
            json!({"socket_address": {"address": "127.0.0.1", "port_value": 15000}})
        );
    }

    #[test]
    fn readiness_is_the_admin_ready_endpoint_on_15021() {
        let b = bootstrap();
        let health = listener(&b, HEALTH_LISTENER);
        assert_eq!(
            health["address"]["socket_address"],
            json!({"address": "0.0.0.0", "port_value": 15021})
        );
        assert_eq!(
            only_route(health),
            &json!({"match": {"path": "/healthz/ready"},
                    "route": {"cluster": "meshkeeper_admin", "prefix_rewrite": "/ready"}})
        );
    }

    #[test]
    fn prometheus_stats_are_served_on_15090_and_nothing_else() {
        let b = bootstrap();
        let prometheus = listener(&b, PROMETHEUS_LISTENER);
        assert_eq!(prometheus["address"]["socket_address"]["port_value"], 15090);
        assert_eq!(
            only_route(prometheus),
            &json!({"match": {"path": "/stats/prometheus"},
                    "route": {"cluster": "meshkeeper_admin"}})
        );
    }

    #[test]
    fn listeners_and_clusters_come_from_the_watched_folder() {
        let b = bootstrap();
        let dynamic = &b["dynamic_resources"];
        for (key, file) in [("lds_config", "lds.yaml"), ("cds_config", "cds.yaml")] {
            assert_eq!(
                dynamic[key],
                json!({
                    "path_config_source": {
                        "path": format!("/etc/meshkeeper/proxy/{file}"),
                        "watched_directory": {"path": "/etc/meshkeeper/proxy"},
                    },
                    "resource_api_version": "V3",
                })
            );
        }
    }
}
