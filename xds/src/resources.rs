//! One proxy's configuration as xDS resources: by type URL, each resource
//! encoded once as an `Any` under its name, and a version per type that is
//! a digest of the type's content, so an unchanged type is never pushed.

use std::collections::BTreeMap;

use envoy_types::pb::google::protobuf::Any;
use meshkeeper_compiler::ProxyConfig;
use prost::{Message, Name};

pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// The types served, in the order a change is pushed: clusters before their
/// endpoints, listeners before their routes (Envoy's warming order).
pub const PUSH_ORDER: [&str; 4] = [CLUSTER, ENDPOINT, LISTENER, ROUTE];

/// Whether a client asks for every resource of the type (`[]` = wildcard)
/// or names them (routes and endpoints are named by what refers to them).
pub fn is_wildcard_type(type_url: &str) -> bool {
    type_url == LISTENER || type_url == CLUSTER
}

/// The resources of one type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeSet {
    pub version: String,
    pub items: BTreeMap<String, Any>,
}

/// Everything one proxy is served.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub by_type: BTreeMap<String, TypeSet>,
}

impl Resources {
    pub fn from_config(config: &ProxyConfig) -> Self {
        let mut by_type = BTreeMap::new();
        by_type.insert(
            LISTENER.to_owned(),
            type_set(config.listeners.iter().map(|l| (l.name.clone(), l))),
        );
        by_type.insert(
            ROUTE.to_owned(),
            type_set(config.routes.iter().map(|r| (r.name.clone(), r))),
        );
        by_type.insert(
            CLUSTER.to_owned(),
            type_set(config.clusters.iter().map(|c| (c.name.clone(), c))),
        );
        by_type.insert(
            ENDPOINT.to_owned(),
            type_set(config.endpoints.iter().map(|e| (e.cluster_name.clone(), e))),
        );
        Resources { by_type }
    }

    pub fn get(&self, type_url: &str) -> Option<&TypeSet> {
        self.by_type.get(type_url)
    }
}

fn type_set<'a, M: Message + Name + 'a>(items: impl Iterator<Item = (String, &'a M)>) -> TypeSet {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut map = BTreeMap::new();
    for (name, message) in items {
        let any = Any {
            type_url: M::type_url(),
            value: message.encode_to_vec(),
        };
        map.insert(name, any);
    }
    // Hashed in name order, so the version depends on content only.
    for (name, any) in &map {
        digest.update(name.as_bytes());
        digest.update(&[0]);
        digest.update(&any.value);
    }
    let hash = digest.finish();
    let version = hash.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    TypeSet {
        version,
        items: map,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;

    fn config(names: &[&str]) -> ProxyConfig {
        ProxyConfig {
            listeners: vec![],
            routes: vec![],
            clusters: names
                .iter()
                .map(|n| Cluster {
                    name: (*n).to_owned(),
                    ..Default::default()
                })
                .collect(),
            endpoints: vec![],
            warnings: vec![],
        }
    }

    #[test]
    fn versions_follow_content_not_order() {
        let a = Resources::from_config(&config(&["a", "b"]));
        let b = Resources::from_config(&config(&["b", "a"]));
        let c = Resources::from_config(&config(&["a", "c"]));
        assert_eq!(a.get(CLUSTER), b.get(CLUSTER));
        assert_ne!(
            a.get(CLUSTER).map(|t| &t.version),
            c.get(CLUSTER).map(|t| &t.version)
        );
        // Untouched types keep their version.
        assert_eq!(a.get(LISTENER), c.get(LISTENER));
        assert_eq!(
            a.get(CLUSTER).map(|t| t.items["a"].type_url.as_str()),
            Some(CLUSTER)
        );
    }
}
