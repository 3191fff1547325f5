//! One-line descriptions of pieces of Envoy configuration (as Envoy JSON):
//! a filter chain's match and where it sends traffic, a route's match and
//! action. Shared by the summary tables and the diff.

use serde_json::Value;

/// `port 9080`, `SNI a.example`, `TLS`, … or `all` for a chain that
/// matches everything.
pub fn chain_match(chain_match: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(port) = chain_match["destination_port"].as_u64() {
        parts.push(format!("port {port}"));
    }
    for range in chain_match["prefix_ranges"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let prefix = range["address_prefix"].as_str().unwrap_or("?");
        let len = range["prefix_len"].as_u64().unwrap_or(0);
        parts.push(format!("to {prefix}/{len}"));
    }
    let sni = strings(&chain_match["server_names"]);
    if !sni.is_empty() {
        parts.push(format!("SNI {}", sni.join(",")));
    }
    if let Some(transport) = chain_match["transport_protocol"].as_str() {
        parts.push(transport.to_owned());
    }
    let alpn = strings(&chain_match["application_protocols"]);
    if !alpn.is_empty() {
        parts.push(format!("ALPN {}", alpn.join(",")));
    }
    if parts.is_empty() {
        "all".to_owned()
    } else {
        parts.join(" ")
    }
}

fn strings(list: &Value) -> Vec<&str> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// Where a filter chain sends traffic: `HTTP routes 9080`, `HTTP
/// inbound|9080||` (inline routes to one cluster), `TCP <cluster>`, or the
/// filters' names.
pub fn chain_destination(chain: &Value) -> String {
    let filters = chain["filters"].as_array().into_iter().flatten();
    let described: Vec<String> = filters.map(filter_destination).collect();
    if described.is_empty() {
        "-".to_owned()
    } else {
        described.join("; ")
    }
}

fn filter_destination(filter: &Value) -> String {
    let config = &filter["typed_config"];
    let type_url = config["@type"].as_str().unwrap_or_default();
    if type_url.ends_with(".HttpConnectionManager") {
        if let Some(name) = config["rds"]["route_config_name"].as_str() {
            return format!("HTTP routes {name}");
        }
        let inline = &config["route_config"];
        let clusters = route_clusters(inline);
        return match clusters.as_slice() {
            [] => format!(
                "HTTP inline routes {}",
                inline["name"].as_str().unwrap_or("")
            ),
            list => format!("HTTP {}", list.join(", ")),
        };
    }
    if type_url.ends_with(".TcpProxy") {
        return format!("TCP {}", tcp_destination(config));
    }
    filter["name"]
        .as_str()
        .unwrap_or("(unnamed filter)")
        .to_owned()
}

fn tcp_destination(config: &Value) -> String {
    if let Some(cluster) = config["cluster"].as_str() {
        return cluster.to_owned();
    }
    weighted(&config["weighted_clusters"]["clusters"])
}

/// `a 80%, b 20%` from weighted clusters.
fn weighted(clusters: &Value) -> String {
    let list: Vec<(&str, u64)> = clusters
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let name = c["name"].as_str().unwrap_or("?");
            (name, c["weight"].as_u64().unwrap_or(0))
        })
        .collect();
    let total: u64 = list.iter().map(|(_, w)| w).sum();
    list.iter()
        .map(|(name, weight)| match total {
            0 => format!("{name} {weight}"),
            t => format!("{name} {}%", weight * 100 / t),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The clusters the routes of a route configuration send to, deduplicated.
fn route_clusters(config: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let hosts = config["virtual_hosts"].as_array().into_iter().flatten();
    for route in hosts.flat_map(|h| h["routes"].as_array().into_iter().flatten()) {
        if let Some(c) = route["route"]["cluster"].as_str()
            && !out.iter().any(|o| o == c)
        {
            out.push(c.to_owned());
        }
    }
    out
}

/// A route's match: `/*` (prefix `/`), `/login` (exact), `/api*`,
/// `~^/v[0-9]` (regex), then header and query conditions
/// (`end-user=jason`, `!x-debug present`, `?user=jason`).
pub fn route_match(m: &Value) -> String {
    let mut parts = vec![path_match(m)];
    for h in m["headers"].as_array().into_iter().flatten() {
        parts.push(header_match(h, ""));
    }
    for q in m["query_parameters"].as_array().into_iter().flatten() {
        parts.push(header_match(q, "?"));
    }
    parts.join(" ")
}

fn path_match(m: &Value) -> String {
    if let Some(prefix) = m["prefix"].as_str() {
        format!("{prefix}*")
    } else if let Some(path) = m["path"].as_str() {
        path.to_owned()
    } else if let Some(prefix) = m["path_separated_prefix"].as_str() {
        format!("{prefix}/*")
    } else if let Some(regex) = m["safe_regex"]["regex"].as_str() {
        format!("~{regex}")
    } else {
        "*".to_owned()
    }
}

/// `name=value`, `name^=prefix`, `name$=suffix`, `name~regex`, `name
/// present`, `!…` when inverted; `prefix` marks query parameters.
fn header_match(h: &Value, prefix: &str) -> String {
    let name = h["name"].as_str().unwrap_or("?");
    let s = &h["string_match"];
    let condition = if let Some(v) = s["exact"].as_str() {
        format!("={v}")
    } else if let Some(v) = s["prefix"].as_str() {
        format!("^={v}")
    } else if let Some(v) = s["suffix"].as_str() {
        format!("$={v}")
    } else if let Some(v) = s["safe_regex"]["regex"].as_str() {
        format!("~{v}")
    } else if let Some(v) = h["safe_regex_match"]["regex"].as_str() {
        format!("~{v}")
    } else if let Some(v) = h["exact_match"].as_str() {
        format!("={v}")
    } else {
        " present".to_owned()
    };
    let not = if h["invert_match"] == true { "!" } else { "" };
    format!("{not}{prefix}{name}{condition}")
}

/// A route's action: its cluster, weighted clusters (`a 80%, b 20%`),
/// `redirect to …`, `respond 503`.
pub fn route_action(route: &Value) -> String {
    let action = &route["route"];
    if let Some(cluster) = action["cluster"].as_str() {
        return cluster.to_owned();
    }
    if action["weighted_clusters"].is_object() {
        return weighted(&action["weighted_clusters"]["clusters"]);
    }
    if let Some(header) = action["cluster_header"].as_str() {
        return format!("cluster from header {header}");
    }
    let redirect = &route["redirect"];
    if redirect.is_object() {
        let host = redirect["host_redirect"].as_str().unwrap_or("");
        let path = redirect["path_redirect"]
            .as_str()
            .or(redirect["prefix_rewrite"].as_str())
            .unwrap_or("");
        return format!("redirect to {host}{path}").trim_end().to_owned();
    }
    if let Some(status) = route["direct_response"]["status"].as_u64() {
        return format!("respond {status}");
    }
    "-".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chain_matches_and_destinations() {
        assert_eq!(chain_match(&Value::Null), "all");
        assert_eq!(
            chain_match(&json!({"destination_port": 9080, "server_names": ["a.example"]})),
            "port 9080 SNI a.example"
        );
        let rds = json!({"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "rds": {"route_config_name": "9080"}}}]});
        assert_eq!(chain_destination(&rds), "HTTP routes 9080");
        let inline = json!({"filters": [{"typed_config": {
            "@type": "x.HttpConnectionManager",
            "route_config": {"name": "inbound|9080||", "virtual_hosts": [{"routes": [{"route": {"cluster": "inbound|9080||"}}]}]}}}]});
        assert_eq!(chain_destination(&inline), "HTTP inbound|9080||");
        let tcp = json!({"filters": [{"typed_config": {"@type": "x.TcpProxy",
            "weighted_clusters": {"clusters": [{"name": "a", "weight": 3}, {"name": "b", "weight": 1}]}}}]});
        assert_eq!(chain_destination(&tcp), "TCP a 75%, b 25%");
        assert_eq!(chain_destination(&json!({})), "-");
    }

    #[test]
    fn route_matches_and_actions() {
        let m = json!({"prefix": "/", "headers": [
            {"name": "end-user", "string_match": {"exact": "jason"}},
            {"name": "x-debug", "present_match": true, "invert_match": true}],
            "query_parameters": [{"name": "u", "string_match": {"prefix": "a"}}]});
        assert_eq!(route_match(&m), "/* end-user=jason !x-debug present ?u^=a");
        assert_eq!(
            route_match(&json!({"safe_regex": {"regex": "/v[0-9]"}})),
            "~/v[0-9]"
        );
        assert_eq!(route_action(&json!({"route": {"cluster": "c"}})), "c");
        assert_eq!(
            route_action(&json!({"direct_response": {"status": 503}})),
            "respond 503"
        );
        assert_eq!(
            route_action(
                &json!({"redirect": {"host_redirect": "a.example", "path_redirect": "/new"}})
            ),
            "redirect to a.example/new"
        );
        assert_eq!(
            route_action(
                &json!({"route": {"weighted_clusters": {"clusters": [{"name": "v1", "weight": 80}, {"name": "v2", "weight": 20}]}}})
            ),
            "v1 80%, v2 20%"
        );
    }
}
