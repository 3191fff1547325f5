//! The state-of-the-world xDS conversation with one proxy, as plain logic:
//! which types it subscribed to, which version and nonce went out last, and
//! what its requests mean — a subscription, an ACK, a NACK (Envoy rejected
//! the configuration and says why) or a stale answer to an older push.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use crate::resources::{PUSH_ORDER, Resources, is_wildcard_type};

/// What a request meant.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The first request for a type.
    Subscribed { type_url: String },
    /// The proxy applied `version`.
    Ack { type_url: String, version: String },
    /// The proxy rejected `version` (it keeps running its previous one).
    Nack {
        type_url: String,
        version: String,
        message: String,
    },
    /// An answer to a push that a newer one replaced: nothing to do.
    Stale { type_url: String },
}

#[derive(Debug, Default)]
struct Subscription {
    names: Vec<String>,
    /// Version and nonce of the last response sent.
    sent: Option<(String, String)>,
    acked: Option<String>,
}

/// One stream's bookkeeping.
#[derive(Debug, Default)]
pub struct Conversation {
    subscriptions: BTreeMap<String, Subscription>,
    nonces: u64,
}

impl Conversation {
    /// Handles a request; returns what it meant and the response to send.
    pub fn on_request(
        &mut self,
        request: &DiscoveryRequest,
        current: &Resources,
    ) -> (Outcome, Option<DiscoveryResponse>) {
        let type_url = request.type_url.clone();
        let sub = self.subscriptions.entry(type_url.clone()).or_default();
        let outcome = match &sub.sent {
            None => Outcome::Subscribed {
                type_url: type_url.clone(),
            },
            Some((_, nonce)) if *nonce != request.response_nonce => {
                // A changed subscription still counts, even on an old nonce.
                if sub.names == request.resource_names {
                    return (Outcome::Stale { type_url }, None);
                }
                Outcome::Subscribed {
                    type_url: type_url.clone(),
                }
            }
            Some((version, _)) => match &request.error_detail {
                Some(status) => Outcome::Nack {
                    type_url: type_url.clone(),
                    version: version.clone(),
                    message: status.message.clone(),
                },
                None => {
                    sub.acked = Some(request.version_info.clone());
                    Outcome::Ack {
                        type_url: type_url.clone(),
                        version: request.version_info.clone(),
                    }
                }
            },
        };
        let names_changed = sub.names != request.resource_names;
        sub.names = request.resource_names.clone();
        // Resend only what is new: a NACKed version is not sent again, and
        // an ACK of the current version needs no answer.
        let send = match &outcome {
            Outcome::Subscribed { .. } => true,
            Outcome::Ack { .. } | Outcome::Nack { .. } => {
                names_changed || self.is_behind(&type_url, current)
            }
            Outcome::Stale { .. } => false,
        };
        let response = send.then(|| self.response(&type_url, current)).flatten();
        (outcome, response)
    }

    /// Responses for every subscribed type whose resources changed, in the
    /// order Envoy applies them.
    pub fn on_update(&mut self, current: &Resources) -> Vec<DiscoveryResponse> {
        let behind: Vec<&str> = PUSH_ORDER
            .into_iter()
            .filter(|t| self.is_behind(t, current))
            .collect();
        behind
            .into_iter()
            .filter_map(|t| self.response(t, current))
            .collect()
    }

    /// The version the proxy last ACKed for `type_url`.
    pub fn acked(&self, type_url: &str) -> Option<&str> {
        self.subscriptions.get(type_url)?.acked.as_deref()
    }

    fn is_behind(&self, type_url: &str, current: &Resources) -> bool {
        let Some(sub) = self.subscriptions.get(type_url) else {
            return false;
        };
        let latest = current.get(type_url).map(|t| t.version.as_str());
        sub.sent.as_ref().map(|(v, _)| v.as_str()) != latest
    }

    fn response(&mut self, type_url: &str, current: &Resources) -> Option<DiscoveryResponse> {
        let set = current.get(type_url);
        let version = set.map(|s| s.version.clone()).unwrap_or_default();
        let sub = self.subscriptions.get_mut(type_url)?;
        let resources = set
            .into_iter()
            .flat_map(|s| s.items.iter())
            .filter(|(name, _)| {
                is_wildcard_type(type_url) || sub.names.is_empty() || sub.names.contains(name)
            })
            .map(|(_, any)| any.clone())
            .collect();
        self.nonces += 1;
        let nonce = self.nonces.to_string();
        sub.sent = Some((version.clone(), nonce.clone()));
        Some(DiscoveryResponse {
            version_info: version,
            resources,
            type_url: type_url.to_owned(),
            nonce,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{CLUSTER, TypeSet};
    use envoy_types::pb::google::protobuf::Any;
    use envoy_types::pb::google::rpc::Status;

    fn resources(version: &str, names: &[&str]) -> Resources {
        let mut r = Resources::default();
        r.by_type.insert(
            CLUSTER.to_owned(),
            TypeSet {
                version: version.to_owned(),
                items: names
                    .iter()
                    .map(|n| ((*n).to_owned(), Any::default()))
                    .collect(),
            },
        );
        r
    }

    fn request(version: &str, nonce: &str, error: Option<&str>) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: CLUSTER.to_owned(),
            version_info: version.to_owned(),
            response_nonce: nonce.to_owned(),
            error_detail: error.map(|m| Status {
                code: 3,
                message: m.to_owned(),
                details: vec![],
            }),
            ..Default::default()
        }
    }

    #[test]
    fn subscribe_ack_push_nack_and_stale() {
        let mut c = Conversation::default();
        let v1 = resources("v1", &["a"]);
        let (outcome, resp) = c.on_request(&request("", "", None), &v1);
        assert!(matches!(outcome, Outcome::Subscribed { .. }));
        let resp = resp.unwrap();
        assert_eq!(
            (resp.version_info.as_str(), resp.nonce.as_str()),
            ("v1", "1")
        );
        assert_eq!(resp.resources.len(), 1);

        // The ACK of what was sent needs no answer.
        let (outcome, resp) = c.on_request(&request("v1", "1", None), &v1);
        assert_eq!(
            outcome,
            Outcome::Ack {
                type_url: CLUSTER.into(),
                version: "v1".into()
            }
        );
        assert!(resp.is_none());
        assert_eq!(c.acked(CLUSTER), Some("v1"));

        // A change is pushed once; nothing when nothing changed.
        let v2 = resources("v2", &["a", "b"]);
        let pushed = c.on_update(&v2);
        assert_eq!(pushed.len(), 1);
        assert_eq!(pushed[0].nonce, "2");
        assert!(c.on_update(&v2).is_empty());

        // An answer to the older nonce is stale.
        let (outcome, _) = c.on_request(&request("v1", "1", None), &v2);
        assert!(matches!(outcome, Outcome::Stale { .. }));

        // A NACK names the rejected version; it is not resent.
        let (outcome, resp) = c.on_request(&request("v1", "2", Some("bad cluster")), &v2);
        assert_eq!(
            outcome,
            Outcome::Nack {
                type_url: CLUSTER.into(),
                version: "v2".into(),
                message: "bad cluster".into()
            }
        );
        assert!(resp.is_none());
        assert_eq!(c.acked(CLUSTER), Some("v1"), "a NACK keeps the last ACK");
    }

    #[test]
    fn named_subscriptions_get_only_their_resources() {
        let mut c = Conversation::default();
        let current = {
            let mut r = resources("v1", &[]);
            r.by_type.insert(
                crate::resources::ENDPOINT.to_owned(),
                TypeSet {
                    version: "e1".into(),
                    items: ["x", "y"]
                        .iter()
                        .map(|n| ((*n).to_owned(), Any::default()))
                        .collect(),
                },
            );
            r
        };
        let req = DiscoveryRequest {
            type_url: crate::resources::ENDPOINT.to_owned(),
            resource_names: vec!["y".into()],
            ..Default::default()
        };
        let (_, resp) = c.on_request(&req, &current);
        assert_eq!(resp.unwrap().resources.len(), 1);
    }
}
