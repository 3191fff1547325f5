//! What is wrong in a compiled configuration for certain, said beside the
//! output: routes that send to a cluster the proxy does not have (a
//! subset no DestinationRule defines, a host no Service or ServiceEntry
//! has). Envoy accepts them (clusters may arrive later), and every request
//! they match fails with 503 (`NC`, no cluster).

use std::collections::BTreeSet;

use serde_json::Value;

fn list(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

/// One message per route destination that names no cluster of `config`.
pub fn missing_clusters(config: &Value) -> Vec<String> {
    let clusters: BTreeSet<&str> = list(&config["clusters"])
        .filter_map(|c| c["name"].as_str())
        .collect();
    let mut out = Vec::new();
    for routes in list(&config["routes"]) {
        for host in list(&routes["virtual_hosts"]) {
            for route in list(&host["routes"]) {
                for target in destinations(&route["route"]) {
                    if !clusters.contains(target) {
                        out.push(format!(
                            "routes {}, virtual host {}: requests go to cluster {target}, which this proxy does not have (a subset no DestinationRule defines, or a host without a Service or ServiceEntry?); they will fail with 503",
                            routes["name"].as_str().unwrap_or("?"),
                            host["name"].as_str().unwrap_or("?"),
                        ));
                    }
                }
            }
        }
    }
    out.dedup();
    out
}

fn destinations(action: &Value) -> Vec<&str> {
    let weighted =
        list(&action["weighted_clusters"]["clusters"]).filter_map(|c| c["name"].as_str());
    action["cluster"]
        .as_str()
        .into_iter()
        .chain(weighted)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_route_to_an_undefined_subset_is_named() {
        let config = json!({
            "clusters": [{"name": "outbound|9080||r"}],
            "routes": [{"name": "9080", "virtual_hosts": [{"name": "r:9080", "routes": [
                {"route": {"cluster": "outbound|9080||r"}},
                {"route": {"weighted_clusters": {"clusters": [{"name": "outbound|9080|v1|r"}, {"name": "outbound|9080||r"}]}}},
            ]}]}],
        });
        let found = missing_clusters(&config);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(
                "routes 9080, virtual host r:9080: requests go to cluster outbound|9080|v1|r"
            ),
            "{found:?}"
        );
    }
}
