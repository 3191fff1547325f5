//! The incremental (Delta) xDS conversation with one proxy, as plain logic:
//! per type, what the proxy subscribed to (named resources or, for
//! listeners and clusters, everything), which version of each resource it
//! holds, and the difference to send: changed or new resources, and the
//! names of removed ones. ACK and NACK are read from the nonce it answers.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};

use crate::protocol::Outcome;
use crate::resources::{PUSH_ORDER, Resources, is_wildcard_type};

#[derive(Debug, Default)]
struct Subscription {
    wildcard: bool,
    names: BTreeSet<String>,
    /// Resource name → the version the proxy holds (or was last sent).
    held: BTreeMap<String, String>,
    /// The last response's nonce and system version.
    sent: Option<(String, String)>,
}

impl Subscription {
    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

/// One Delta stream's bookkeeping.
#[derive(Debug, Default)]
pub struct DeltaConversation {
    subscriptions: BTreeMap<String, Subscription>,
    nonces: u64,
}

/// A resource's own version: a digest of its encoding.
fn resource_version(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl DeltaConversation {
    pub fn on_request(
        &mut self,
        request: &DeltaDiscoveryRequest,
        current: &Resources,
    ) -> (Outcome, Option<DeltaDiscoveryResponse>) {
        let type_url = request.type_url.clone();
        let first = !self.subscriptions.contains_key(&type_url);
        let sub = self.subscriptions.entry(type_url.clone()).or_default();
        if first {
            // An empty first subscription to listeners or clusters means all.
            sub.wildcard =
                is_wildcard_type(&type_url) && request.resource_names_subscribe.is_empty();
            sub.held = request
                .initial_resource_versions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
        }
        for name in &request.resource_names_subscribe {
            if name == "*" {
                sub.wildcard = true;
            } else {
                sub.names.insert(name.clone());
            }
        }
        for name in &request.resource_names_unsubscribe {
            if name == "*" {
                sub.wildcard = false;
            }
            sub.names.remove(name);
            sub.held.remove(name);
        }
        let outcome = match (&sub.sent, request.response_nonce.as_str()) {
            (_, "") => Outcome::Subscribed {
                type_url: type_url.clone(),
            },
            (Some((nonce, version)), answered) if nonce == answered => {
                match &request.error_detail {
                    Some(status) => Outcome::Nack {
                        type_url: type_url.clone(),
                        version: version.clone(),
                        message: status.message.clone(),
                    },
                    None => Outcome::Ack {
                        type_url: type_url.clone(),
                        version: version.clone(),
                    },
                }
            }
            _ => Outcome::Stale {
                type_url: type_url.clone(),
            },
        };
        let subscribing = !request.resource_names_subscribe.is_empty();
        let response = match outcome {
            Outcome::Subscribed { .. } => self.response(&type_url, current, true),
            _ if subscribing => self.response(&type_url, current, false),
            _ => None,
        };
        (outcome, response)
    }

    /// What changed for each subscribed type, in Envoy's warming order.
    pub fn on_update(&mut self, current: &Resources) -> Vec<DeltaDiscoveryResponse> {
        PUSH_ORDER
            .into_iter()
            .filter_map(|t| self.response(t, current, false))
            .collect()
    }

    /// The difference between what the proxy holds and `current`; `None`
    /// when there is none (unless `always`, for a first answer).
    fn response(
        &mut self,
        type_url: &str,
        current: &Resources,
        always: bool,
    ) -> Option<DeltaDiscoveryResponse> {
        let set = current.get(type_url);
        let sub = self.subscriptions.get_mut(type_url)?;
        let mut resources = Vec::new();
        for (name, any) in set.into_iter().flat_map(|s| s.items.iter()) {
            if !sub.wants(name) {
                continue;
            }
            let version = resource_version(&any.value);
            if sub.held.get(name) != Some(&version) {
                resources.push(Resource {
                    name: name.clone(),
                    version: version.clone(),
                    resource: Some(any.clone()),
                    ..Default::default()
                });
                sub.held.insert(name.clone(), version);
            }
        }
        let removed: Vec<String> = sub
            .held
            .keys()
            .filter(|name| set.is_none_or(|s| !s.items.contains_key(*name)))
            .cloned()
            .collect();
        for name in &removed {
            sub.held.remove(name);
        }
        if resources.is_empty() && removed.is_empty() && !always {
            return None;
        }
        self.nonces += 1;
        let nonce = self.nonces.to_string();
        let system_version = set.map(|s| s.version.clone()).unwrap_or_default();
        sub.sent = Some((nonce.clone(), system_version.clone()));
        Some(DeltaDiscoveryResponse {
            system_version_info: system_version,
            resources,
            type_url: type_url.to_owned(),
            removed_resources: removed,
            nonce,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{CLUSTER, ENDPOINT, TypeSet};
    use envoy_types::pb::google::protobuf::Any;

    fn set(type_url: &str, version: &str, items: &[(&str, &[u8])]) -> Resources {
        let mut r = Resources::default();
        r.by_type.insert(
            type_url.to_owned(),
            TypeSet {
                version: version.to_owned(),
                items: items
                    .iter()
                    .map(|(n, v)| {
                        (
                            (*n).to_owned(),
                            Any {
                                type_url: type_url.to_owned(),
                                value: v.to_vec(),
                            },
                        )
                    })
                    .collect(),
            },
        );
        r
    }

    #[test]
    fn wildcard_subscription_gets_changes_and_removals_only() {
        let mut c = DeltaConversation::default();
        let v1 = set(CLUSTER, "v1", &[("a", b"1"), ("b", b"2")]);
        let first = DeltaDiscoveryRequest {
            type_url: CLUSTER.into(),
            ..Default::default()
        };
        let (outcome, resp) = c.on_request(&first, &v1);
        assert!(matches!(outcome, Outcome::Subscribed { .. }));
        let resp = resp.unwrap();
        assert_eq!(resp.resources.len(), 2);

        let ack = DeltaDiscoveryRequest {
            type_url: CLUSTER.into(),
            response_nonce: resp.nonce.clone(),
            ..Default::default()
        };
        let (outcome, resp) = c.on_request(&ack, &v1);
        assert_eq!(
            outcome,
            Outcome::Ack {
                type_url: CLUSTER.into(),
                version: "v1".into()
            }
        );
        assert!(resp.is_none());

        // b changes, a goes away, c arrives: two resources and one removal.
        let v2 = set(CLUSTER, "v2", &[("b", b"22"), ("c", b"3")]);
        let pushed = c.on_update(&v2);
        assert_eq!(pushed.len(), 1);
        let names: Vec<&str> = pushed[0]
            .resources
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(pushed[0].removed_resources, ["a"]);
        assert!(c.on_update(&v2).is_empty(), "nothing new, nothing sent");
    }

    #[test]
    fn named_subscriptions_and_known_versions_are_honoured() {
        let mut c = DeltaConversation::default();
        let current = set(ENDPOINT, "e1", &[("x", b"1"), ("y", b"2")]);
        let req = DeltaDiscoveryRequest {
            type_url: ENDPOINT.into(),
            resource_names_subscribe: vec!["x".into(), "y".into()],
            // The proxy reconnects holding y already.
            initial_resource_versions: [("y".to_owned(), resource_version(b"2"))].into(),
            ..Default::default()
        };
        let (_, resp) = c.on_request(&req, &current);
        let names: Vec<String> = resp
            .unwrap()
            .resources
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["x"]);
    }
}
