//! The summary tables `meshctl proxy-config` prints by default, one per
//! resource type, read from the Envoy JSON of a proxy's configuration
//! (`{"listeners": […], "routes": […], "clusters": […], "endpoints": […]}`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::Part;
use super::describe;
use super::table::Table;

/// Which objects made what: the VirtualService routing each service host
/// and the DestinationRule applying to it, as `namespace/name`.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub virtual_services: BTreeMap<String, String>,
    pub destination_rules: BTreeMap<String, String>,
}

/// The tables of `part` (all four for [`Part::All`], a blank line apart).
pub fn render(config: &Value, part: Part, sources: &Sources) -> String {
    let tables = [
        (Part::Listeners, listeners(&config["listeners"])),
        (Part::Routes, routes(&config["routes"], sources)),
        (Part::Clusters, clusters(&config["clusters"], sources)),
        (Part::Endpoints, endpoints(config)),
    ];
    tables
        .into_iter()
        .filter(|(p, _)| part == Part::All || part == *p)
        .map(|(_, t)| t.render())
        .collect::<Vec<_>>()
        .join("\n")
}

fn list(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("-").to_owned()
}

/// One row per filter chain (the default chain last, matching `anything
/// else`).
fn listeners(listeners: &Value) -> Table {
    let mut t = Table::new(&["LISTENER", "ADDRESS", "PORT", "MATCH", "DESTINATION"]);
    for l in list(listeners) {
        let socket = &l["address"]["socket_address"];
        let cells = |m: String, d: String| {
            vec![
                text(&l["name"]),
                text(&socket["address"]),
                socket["port_value"].as_u64().unwrap_or(0).to_string(),
                m,
                d,
            ]
        };
        let mut any = false;
        for chain in list(&l["filter_chains"]) {
            any = true;
            t.row(cells(
                describe::chain_match(&chain["filter_chain_match"]),
                describe::chain_destination(chain),
            ));
        }
        let default = &l["default_filter_chain"];
        if default.is_object() {
            any = true;
            t.row(cells(
                "anything else".into(),
                describe::chain_destination(default),
            ));
        }
        if !any {
            t.row(cells("-".into(), "-".into()));
        }
    }
    t
}

/// One row per route, with the route configuration and virtual host it
/// is in and the VirtualService that made it.
fn routes(routes: &Value, sources: &Sources) -> Table {
    let mut t = Table::new(&[
        "ROUTES",
        "VIRTUAL HOST",
        "MATCH",
        "DESTINATION",
        "VIRTUAL SERVICE",
    ]);
    for config in list(routes) {
        for host in list(&config["virtual_hosts"]) {
            let host_name = host["name"].as_str().unwrap_or_default();
            let service = host_name.rsplit_once(':').map_or(host_name, |(h, _)| h);
            let vs = sources
                .virtual_services
                .get(service)
                .map_or("-", String::as_str);
            for route in list(&host["routes"]) {
                t.row(vec![
                    text(&config["name"]),
                    host_name.to_owned(),
                    describe::route_match(&route["match"]),
                    describe::route_action(route),
                    vs.to_owned(),
                ]);
            }
        }
    }
    t
}

/// Istio's cluster names split into their parts
/// (`outbound|9080|v1|reviews.bookinfo.svc.cluster.local`); other names
/// (`PassthroughCluster`) whole.
fn clusters(clusters: &Value, sources: &Sources) -> Table {
    let mut t = Table::new(&[
        "SERVICE",
        "PORT",
        "SUBSET",
        "DIRECTION",
        "TYPE",
        "DESTINATION RULE",
    ]);
    for c in list(clusters) {
        let name = c["name"].as_str().unwrap_or_default();
        let kind = c["type"]
            .as_str()
            .or(c["cluster_type"]["name"].as_str())
            .unwrap_or("STATIC")
            .to_owned();
        let row = match name.split('|').collect::<Vec<_>>().as_slice() {
            [direction, port, subset, host] => {
                let dr = match *direction {
                    "outbound" => sources.destination_rules.get(*host).map(String::as_str),
                    _ => None,
                };
                vec![
                    dash(host),
                    (*port).to_owned(),
                    dash(subset),
                    (*direction).to_owned(),
                    kind,
                    dr.unwrap_or("-").to_owned(),
                ]
            }
            _ => vec![
                name.to_owned(),
                "-".into(),
                "-".into(),
                "-".into(),
                kind,
                "-".into(),
            ],
        };
        t.row(row);
    }
    t
}

fn dash(s: &str) -> String {
    if s.is_empty() { "-" } else { s }.to_owned()
}

/// One row per endpoint of each assignment (EDS) and of each cluster's
/// own `load_assignment` (DNS and static clusters); an assignment without
/// endpoints shows as `(none)`, the usual reason for a 503.
fn endpoints(config: &Value) -> Table {
    let mut t = Table::new(&["ENDPOINT", "HEALTH", "CLUSTER"]);
    let inline = list(&config["clusters"]).map(|c| &c["load_assignment"]);
    for assignment in list(&config["endpoints"]).chain(inline.filter(|a| a.is_object())) {
        let cluster = text(&assignment["cluster_name"]);
        let mut rows = 0;
        for locality in list(&assignment["endpoints"]) {
            for e in list(&locality["lb_endpoints"]) {
                let socket = &e["endpoint"]["address"]["socket_address"];
                let address = socket["address"].as_str().unwrap_or("?");
                let port = socket["port_value"].as_u64().unwrap_or(0);
                let health = e["health_status"].as_str().unwrap_or("UNKNOWN");
                t.row(vec![
                    format!("{address}:{port}"),
                    health.to_owned(),
                    cluster.clone(),
                ]);
                rows += 1;
            }
        }
        if rows == 0 {
            t.row(vec!["(none)".into(), "-".into(), cluster]);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Value {
        json!({
            "listeners": [
                {"name": "virtualOutbound", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}},
                 "filter_chains": [{"filters": [{"typed_config": {"@type": "x.TcpProxy", "cluster": "PassthroughCluster"}}]}]},
                {"name": "virtualInbound", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15006}},
                 "filter_chains": [{"filter_chain_match": {"destination_port": 15006},
                                    "filters": [{"typed_config": {"@type": "x.TcpProxy", "cluster": "BlackHoleCluster"}}]}],
                 "default_filter_chain": {"filters": [{"typed_config": {"@type": "x.TcpProxy", "cluster": "InboundPassthroughCluster"}}]}},
            ],
            "routes": [{"name": "9080", "virtual_hosts": [
                {"name": "reviews.shop.svc.cluster.local:9080", "routes": [
                    {"match": {"prefix": "/", "headers": [{"name": "end-user", "string_match": {"exact": "jason"}}]},
                     "route": {"cluster": "outbound|9080|v2|reviews.shop.svc.cluster.local"}},
                    {"match": {"prefix": "/"}, "route": {"cluster": "outbound|9080|v1|reviews.shop.svc.cluster.local"}}]},
                {"name": "allow_any", "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "PassthroughCluster"}}]}]}],
            "clusters": [
                {"name": "PassthroughCluster", "type": "ORIGINAL_DST"},
                {"name": "outbound|9080|v1|reviews.shop.svc.cluster.local", "type": "EDS"},
                {"name": "inbound|9080||"},
                {"name": "outbound|443||api.example.com", "type": "STRICT_DNS",
                 "load_assignment": {"cluster_name": "outbound|443||api.example.com", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "api.example.com", "port_value": 443}}}}]}]}},
            ],
            "endpoints": [
                {"cluster_name": "outbound|9080|v1|reviews.shop.svc.cluster.local", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "198.18.0.4", "port_value": 9080}}}, "health_status": "HEALTHY"}]}]},
                {"cluster_name": "outbound|9080|v9|reviews.shop.svc.cluster.local"},
            ],
        })
    }

    /// Each line's cells (columns are two or more spaces apart).
    fn rows(out: &str) -> Vec<Vec<String>> {
        out.lines()
            .map(|l| {
                l.split("  ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .collect()
    }

    fn sources() -> Sources {
        Sources {
            virtual_services: [(
                "reviews.shop.svc.cluster.local".into(),
                "shop/reviews".into(),
            )]
            .into(),
            destination_rules: [(
                "reviews.shop.svc.cluster.local".into(),
                "shop/reviews".into(),
            )]
            .into(),
        }
    }

    #[test]
    fn listeners_one_row_per_chain() {
        let out = render(&config(), Part::Listeners, &sources());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[0].starts_with("LISTENER "), "{out}");
        assert!(
            lines[1].contains("15001  all") && lines[1].ends_with("TCP PassthroughCluster"),
            "{out}"
        );
        assert!(
            lines[2].contains("port 15006") && lines[2].ends_with("TCP BlackHoleCluster"),
            "{out}"
        );
        assert!(lines[3].contains("anything else"), "{out}");
    }

    #[test]
    fn routes_name_their_virtual_service() {
        let out = render(&config(), Part::Routes, &sources());
        let rows = rows(&out);
        assert_eq!(
            rows[1],
            [
                "9080",
                "reviews.shop.svc.cluster.local:9080",
                "/* end-user=jason",
                "outbound|9080|v2|reviews.shop.svc.cluster.local",
                "shop/reviews"
            ],
            "{out}"
        );
        assert_eq!(
            rows[3],
            ["9080", "allow_any", "/*", "PassthroughCluster", "-"],
            "{out}"
        );
    }

    #[test]
    fn clusters_split_istio_names_and_endpoints_show_empty_assignments() {
        let out = render(&config(), Part::Clusters, &sources());
        let table = rows(&out);
        assert_eq!(
            table[1],
            ["PassthroughCluster", "-", "-", "-", "ORIGINAL_DST", "-"],
            "{out}"
        );
        assert_eq!(
            table[2],
            [
                "reviews.shop.svc.cluster.local",
                "9080",
                "v1",
                "outbound",
                "EDS",
                "shop/reviews"
            ],
            "{out}"
        );
        assert_eq!(
            table[3],
            ["-", "9080", "-", "inbound", "STATIC", "-"],
            "{out}"
        );
        let out = render(&config(), Part::Endpoints, &sources());
        assert_eq!(
            rows(&out)[1..],
            [
                vec![
                    "198.18.0.4:9080",
                    "HEALTHY",
                    "outbound|9080|v1|reviews.shop.svc.cluster.local"
                ],
                vec![
                    "(none)",
                    "-",
                    "outbound|9080|v9|reviews.shop.svc.cluster.local"
                ],
                vec![
                    "api.example.com:443",
                    "UNKNOWN",
                    "outbound|443||api.example.com"
                ],
            ],
            "{out}"
        );
    }

    #[test]
    fn all_prints_every_table() {
        let out = render(&config(), Part::All, &sources());
        for header in ["LISTENER", "ROUTES", "SERVICE", "ENDPOINT"] {
            assert!(out.contains(header), "{out}");
        }
    }
}
