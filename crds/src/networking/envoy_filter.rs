//! `EnvoyFilter`: patches applied to the Envoy configuration the control
//! plane generates (istio/api `networking/v1alpha3/envoy_filter.proto`).
//!
//! Everything here is typed except `patch.value`, which is raw Envoy
//! configuration: it is kept as free-form JSON, byte for byte in meaning, so
//! a patch that this crate does not understand still applies unchanged.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{LabelsSelector, PolicyTargetReference};
use crate::schema::FreeformObject;

/// Customizes the Envoy configuration of the selected proxies. EnvoyFilters
/// add up: every matching one applies, root namespace first.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "networking.istio.io",
    version = "v1alpha3",
    kind = "EnvoyFilter",
    namespaced,
    status = "crate::schema::FreeformObject",
    category = "istio-io",
    category = "networking-istio-io",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    schema = "derived"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyFilterSpec {
    /// Labels of the workloads the patches apply to; without it (and without
    /// `targetRefs`) every workload of the namespace, or of the mesh when the
    /// object lives in the root namespace. At most one of
    /// `workloadSelector`, `targetRefs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<LabelsSelector>,
    /// Resources (Gateways, Services) whose proxies the patches apply to.
    /// At most one of `workloadSelector`, `targetRefs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_refs: Option<Vec<PolicyTargetReference>>,
    /// The patches, each with the conditions it applies under. Required by
    /// Istio (checked by validation, not by parsing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_patches: Option<Vec<EnvoyConfigObjectPatch>>,
    /// Order of this object's patch set among others in the same context:
    /// lower first, negative before the default 0; ties by creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

/// One patch: what kind of Envoy object it targets, which ones, and how it
/// changes them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyConfigObjectPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_to: Option<ApplyTo>,
    /// Selects the objects of kind `applyTo` the patch applies to; without
    /// it, all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#match: Option<EnvoyConfigObjectMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<Patch>,
}

/// The kind of Envoy object a patch targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApplyTo {
    /// Proto default; never valid in a real patch.
    Invalid,
    Listener,
    FilterChain,
    /// A network filter of a filter chain.
    NetworkFilter,
    /// An HTTP filter inside the HTTP connection manager.
    HttpFilter,
    /// An RDS route configuration (not its virtual hosts).
    RouteConfiguration,
    VirtualHost,
    /// A route inside a virtual host.
    HttpRoute,
    /// A CDS cluster; also used to add clusters.
    Cluster,
    /// An ECDS extension config (HTTP filters only).
    ExtensionConfig,
    /// The proxy's bootstrap configuration.
    Bootstrap,
    /// A listener filter (TLS inspector, proxy protocol, ...).
    ListenerFilter,
}

/// The generation context a patch applies in: traffic direction and proxy
/// kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PatchContext {
    /// Sidecars and gateways, both directions (proto default).
    Any,
    SidecarInbound,
    SidecarOutbound,
    Gateway,
    /// Ambient waypoint proxies; requires the `waypoint` match.
    Waypoint,
}

/// Conditions an Envoy object must meet for a patch to apply to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyConfigObjectMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<PatchContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyMatch>,
    /// At most one of `listener`, `routeConfiguration`, `cluster`,
    /// `waypoint` (a proto oneof).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<ListenerMatch>,
    /// At most one of `listener`, `routeConfiguration`, `cluster`,
    /// `waypoint` (a proto oneof).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_configuration: Option<RouteConfigurationMatch>,
    /// At most one of `listener`, `routeConfiguration`, `cluster`,
    /// `waypoint` (a proto oneof).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterMatch>,
    /// At most one of `listener`, `routeConfiguration`, `cluster`,
    /// `waypoint` (a proto oneof). Set exactly when `context` is `WAYPOINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<WaypointMatch>,
}

/// Properties of the proxy itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyMatch {
    /// RE2 regex matched against the proxy's reported Istio version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_version: Option<String>,
    /// Node metadata entries that must all be present with exactly these
    /// values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Selects listeners, or a filter chain / filter inside them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerMatch {
    /// Service or gateway port the listener serves; 0 or unset matches all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<u32>,
    /// Deprecated: never implemented by Istio and hidden from its docs; use
    /// `portNumber`. Still accepted so existing objects parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// Restricts the patch to one filter chain of the listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_chain: Option<FilterChainMatch>,
    /// Exact listener name (generated listeners are named `IP:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Name of a listener filter to match (for `LISTENER_FILTER` patches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_filter: Option<String>,
}

/// Selects one filter chain of a listener.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterChainMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// SNI in the chain's match; chains without an SNI match never match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// `raw_buffer` or `tls` (inbound sidecar listeners only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_protocol: Option<String>,
    /// Comma-separated ALPN values such as `h2,http/1.1` (sidecars only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_protocols: Option<String>,
    /// A network filter inside the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterMatch>,
    /// Destination port in the chain's match (virtual inbound listener).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<u32>,
}

/// Selects a filter by name, and optionally a filter inside it. Shared by
/// listener matches and waypoint matches (Istio declares two messages of
/// this same shape).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterMatch {
    /// Canonical filter name, e.g.
    /// `envoy.filters.network.http_connection_manager`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A filter nested in this one (an HTTP filter inside the HTTP
    /// connection manager, a Thrift filter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_filter: Option<SubFilterMatch>,
}

/// Selects a filter nested inside another filter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubFilterMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Selects route configurations, or a virtual host / route inside them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteConfigurationMatch {
    /// Service or gateway server port the route configuration serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<u32>,
    /// Gateway server port name (`GATEWAY` context only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// `namespace/name` of the Istio Gateway the route configuration was
    /// generated for (`GATEWAY` context only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<VirtualHostMatch>,
    /// Exact route configuration name (e.g. `http_proxy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Selects a virtual host of a route configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualHostMatch {
    /// Virtual host name (`host:port` for generated ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteMatch>,
    /// A domain the virtual host must list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
}

/// Selects a route of a virtual host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteMatch {
    /// Route name (`default`, or the name of a VirtualService HTTP route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<RouteAction>,
}

/// The action of a route, to match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RouteAction {
    /// Any action (proto default).
    Any,
    /// Forwards to a cluster or weighted clusters.
    Route,
    Redirect,
    DirectResponse,
}

/// Selects clusters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterMatch {
    /// Service port the cluster was generated for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<u32>,
    /// Fully qualified service host (or ServiceEntry host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// DestinationRule subset of the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Exact cluster name (e.g. `PassthroughCluster`); use alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Selects configuration of a waypoint proxy (`WAYPOINT` context).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaypointMatch {
    /// A filter of the waypoint's chain (for filter patches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterMatch>,
    /// A route of the waypoint (for route patches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<WaypointRouteMatch>,
    /// Service port to match, 1..=65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<u32>,
}

/// Selects a route of a waypoint by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaypointRouteMatch {
    /// Route name (`default`, or the name of an HTTP route rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// How the selected object changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Patch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<PatchOperation>,
    /// The Envoy configuration to merge, add or insert, in Envoy's own JSON
    /// (snake_case fields, `typed_config` with `@type`). Kept exactly as
    /// written: unknown fields and nested values are never dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<FreeformObject>,
    /// Where an added HTTP filter goes relative to Istio's own filters
    /// (with `ADD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_class: Option<FilterClass>,
}

/// The operation a patch performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PatchOperation {
    /// Proto default; never valid in a real patch.
    Invalid,
    /// Proto-merge `value` into the object (lists are appended).
    Merge,
    /// Add `value` to the list of objects (not for route configurations or
    /// routes).
    Add,
    /// Remove the object; needs no `value`.
    Remove,
    /// Insert before the matched filter/route, or first when none matched.
    InsertBefore,
    /// Insert after the matched filter/route, or last when none matched.
    InsertAfter,
    /// Insert at the front of the list when the match condition holds.
    InsertFirst,
    /// Replace a named filter (network and HTTP filters only).
    Replace,
    /// Like `MERGE`, but list fields in `value` replace the existing lists
    /// instead of being appended (Istio 1.31).
    MergeAndReplaceList,
}

/// Where an added filter is placed relative to the filters Istio inserts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FilterClass {
    /// The control plane decides (proto default).
    Unspecified,
    /// After Istio's authentication filters.
    Authn,
    /// After Istio's authorization filters.
    Authz,
    /// Before Istio's stats filters.
    Stats,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{from_value, yaml_documents};
    use serde_json::{Value, json};

    fn round_trip(input: &Value) -> (EnvoyFilterSpec, Value) {
        let spec: EnvoyFilterSpec = from_value(input).expect("spec parses");
        let back = serde_json::to_value(&spec).expect("spec serializes");
        (spec, back)
    }

    /// Envoy configuration as users write it in `patch.value`: nested
    /// objects, `@type`, lists of objects and scalars, integers, floats,
    /// booleans, nulls, empty containers and unicode.
    fn arbitrary_envoy_config() -> Value {
        json!({
            "name": "envoy.filters.http.ext_authz",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
                "transport_api_version": "V3",
                "failure_mode_allow": false,
                "with_request_body": {
                    "max_request_bytes": 8192,
                    "allow_partial_message": true,
                    "pack_as_bytes": null
                },
                "grpc_service": {
                    "envoy_grpc": {"cluster_name": "outbound|9000||authz.corp.svc.cluster.local"},
                    "timeout": "0.25s",
                    "initial_metadata": [
                        {"key": "x-tenant", "value": "acme"},
                        {"key": "x-empty", "value": ""}
                    ]
                },
                "status_on_error": {"code": 503},
                "metadata_context_namespaces": ["envoy.filters.http.jwt_authn", "istio_authn"],
                "filter_enabled": {
                    "default_value": {"numerator": 100, "denominator": "HUNDRED"},
                    "runtime_key": "ext_authz.enabled"
                },
                "weights": [0.5, 1.25, -3, 0, 18446744073709551615u64, -9223372036854775808i64],
                "nested_lists": [[1, [2, [3, {"deep": {"deeper": {"deepest": [true, null]}}}]]], []],
                "empty_object": {},
                "unicode": "héllo ✓ \u{1F600}",
                "typed_per_filter_config": {
                    "envoy.filters.http.lua": {
                        "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                        "type_url": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute",
                        "value": {"source_code": {"inline_string": "function envoy_on_request(h) end"}}
                    }
                }
            },
            "disabled": false,
            "is_optional": null
        })
    }

    /// Every field of every message in this file, with non-default values,
    /// spread over patches so each branch of the match oneof appears.
    fn fully_populated_spec() -> Value {
        json!({
            "workloadSelector": {"labels": {"app": "reviews", "version": "v2"}},
            "targetRefs": [
                {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint", "namespace": ""},
                {"group": "", "kind": "Service", "name": "reviews"}
            ],
            "priority": -10,
            "configPatches": [
                {
                    "applyTo": "HTTP_FILTER",
                    "match": {
                        "context": "SIDECAR_INBOUND",
                        "proxy": {
                            "proxyVersion": "^1\\.2[0-9].*",
                            "metadata": {"ISTIO_META_ROUTER_MODE": "sni-dnat", "CLUSTER_ID": "east"}
                        },
                        "listener": {
                            "portNumber": 8080,
                            "portName": "http-web",
                            "name": "0.0.0.0_8080",
                            "listenerFilter": "envoy.filters.listener.tls_inspector",
                            "filterChain": {
                                "name": "inbound|8080||",
                                "sni": "reviews.default.svc.cluster.local",
                                "transportProtocol": "tls",
                                "applicationProtocols": "h2,http/1.1",
                                "destinationPort": 9080,
                                "filter": {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "subFilter": {"name": "envoy.filters.http.router"}
                                }
                            }
                        }
                    },
                    "patch": {
                        "operation": "INSERT_BEFORE",
                        "filterClass": "AUTHZ",
                        "value": arbitrary_envoy_config()
                    }
                },
                {
                    "applyTo": "HTTP_ROUTE",
                    "match": {
                        "context": "GATEWAY",
                        "routeConfiguration": {
                            "portNumber": 443,
                            "portName": "https",
                            "gateway": "istio-system/public-gw",
                            "name": "https.443.https.public-gw.istio-system",
                            "vhost": {
                                "name": "shop.example.com:443",
                                "domainName": "shop.example.com",
                                "route": {"name": "default", "action": "DIRECT_RESPONSE"}
                            }
                        }
                    },
                    "patch": {"operation": "MERGE", "value": {"timeout": "5s"}}
                },
                {
                    "applyTo": "CLUSTER",
                    "match": {
                        "context": "SIDECAR_OUTBOUND",
                        "cluster": {
                            "portNumber": 9080,
                            "service": "reviews.default.svc.cluster.local",
                            "subset": "v2",
                            "name": "outbound|9080|v2|reviews.default.svc.cluster.local"
                        }
                    },
                    "patch": {"operation": "MERGE_AND_REPLACE_LIST", "filterClass": "UNSPECIFIED", "value": {"lb_policy": "LEAST_REQUEST"}}
                },
                {
                    "applyTo": "HTTP_FILTER",
                    "match": {
                        "context": "WAYPOINT",
                        "waypoint": {
                            "portNumber": 9080,
                            "filter": {
                                "name": "envoy.filters.network.http_connection_manager",
                                "subFilter": {"name": "envoy.filters.http.router"}
                            },
                            "route": {"name": "reviews-route"}
                        }
                    },
                    "patch": {"operation": "ADD", "filterClass": "STATS", "value": {"name": "istio.request_operation"}}
                }
            ]
        })
    }

    #[test]
    fn fully_populated_spec_round_trips_without_loss() {
        let input = fully_populated_spec();
        let (spec, back) = round_trip(&input);
        assert_eq!(back, input);

        // Spot-check that the values landed in typed fields, not nowhere.
        let patches = spec.config_patches.as_deref().expect("patches");
        assert_eq!(patches.len(), 4);
        let listener = patches[0]
            .r#match
            .as_ref()
            .and_then(|m| m.listener.as_ref())
            .expect("listener match");
        let chain = listener.filter_chain.as_ref().expect("filter chain");
        assert_eq!(chain.destination_port, Some(9080));
        assert_eq!(
            chain
                .filter
                .as_ref()
                .and_then(|f| f.sub_filter.as_ref())
                .and_then(|s| s.name.as_deref()),
            Some("envoy.filters.http.router")
        );
        assert_eq!(spec.priority, Some(-10));
        let waypoint = patches[3].r#match.as_ref().expect("match");
        assert_eq!(waypoint.context, Some(PatchContext::Waypoint));
        assert_eq!(
            waypoint.waypoint.as_ref().and_then(|w| w.port_number),
            Some(9080)
        );
        assert_eq!(
            patches[2].patch.as_ref().and_then(|p| p.operation),
            Some(PatchOperation::MergeAndReplaceList)
        );
    }

    #[test]
    fn patch_value_keeps_arbitrary_envoy_config_exactly() {
        let value = arbitrary_envoy_config();
        let input = json!({
            "configPatches": [{
                "applyTo": "HTTP_FILTER",
                "patch": {"operation": "ADD", "value": value.clone()}
            }]
        });
        let (spec, back) = round_trip(&input);
        assert_eq!(back, input);

        let kept = spec.config_patches.as_deref().expect("patches")[0]
            .patch
            .as_ref()
            .and_then(|p| p.value.as_ref())
            .expect("value");
        assert_eq!(Value::Object(kept.0.clone()), value);
        assert_eq!(
            kept.0["typed_config"]["@type"],
            json!("type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz")
        );
        assert_eq!(kept.0["typed_config"]["weights"][4], json!(u64::MAX));
        assert_eq!(kept.0["typed_config"]["weights"][5], json!(i64::MIN));
        assert_eq!(kept.0["typed_config"]["weights"][1], json!(1.25));
        assert!(kept.0["is_optional"].is_null());
        // The serialized text parses back to the same value too (what the
        // API server would store).
        let text = serde_json::to_string(&spec).expect("text");
        let reparsed: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(reparsed, input);
    }

    #[test]
    fn explicit_empty_and_zero_values_survive() {
        let input = json!({
            "workloadSelector": {"labels": {}},
            "targetRefs": [],
            "priority": 0,
            "configPatches": [{
                "applyTo": "INVALID",
                "match": {
                    "context": "ANY",
                    "proxy": {"proxyVersion": "", "metadata": {}},
                    "listener": {"portNumber": 0, "filterChain": {"filter": {"subFilter": {}}}}
                },
                "patch": {"operation": "INVALID", "value": {}, "filterClass": "UNSPECIFIED"}
            }, {}]
        });
        let (_, back) = round_trip(&input);
        assert_eq!(back, input);

        let (_, back) = round_trip(&json!({"configPatches": []}));
        assert_eq!(back, json!({"configPatches": []}));
        let (_, back) = round_trip(&json!({}));
        assert_eq!(back, json!({}));
    }

    #[test]
    fn every_enum_value_parses_with_istio_spelling() {
        for apply_to in [
            "INVALID",
            "LISTENER",
            "FILTER_CHAIN",
            "NETWORK_FILTER",
            "HTTP_FILTER",
            "ROUTE_CONFIGURATION",
            "VIRTUAL_HOST",
            "HTTP_ROUTE",
            "CLUSTER",
            "EXTENSION_CONFIG",
            "BOOTSTRAP",
            "LISTENER_FILTER",
        ] {
            let v: ApplyTo = serde_json::from_value(json!(apply_to)).expect(apply_to);
            assert_eq!(serde_json::to_value(v).expect("ser"), json!(apply_to));
        }
        for context in [
            "ANY",
            "SIDECAR_INBOUND",
            "SIDECAR_OUTBOUND",
            "GATEWAY",
            "WAYPOINT",
        ] {
            let v: PatchContext = serde_json::from_value(json!(context)).expect(context);
            assert_eq!(serde_json::to_value(v).expect("ser"), json!(context));
        }
        for op in [
            "INVALID",
            "MERGE",
            "ADD",
            "REMOVE",
            "INSERT_BEFORE",
            "INSERT_AFTER",
            "INSERT_FIRST",
            "REPLACE",
            "MERGE_AND_REPLACE_LIST",
        ] {
            let v: PatchOperation = serde_json::from_value(json!(op)).expect(op);
            assert_eq!(serde_json::to_value(v).expect("ser"), json!(op));
        }
        for class in ["UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"] {
            let v: FilterClass = serde_json::from_value(json!(class)).expect(class);
            assert_eq!(serde_json::to_value(v).expect("ser"), json!(class));
        }
        for action in ["ANY", "ROUTE", "REDIRECT", "DIRECT_RESPONSE"] {
            let v: RouteAction = serde_json::from_value(json!(action)).expect(action);
            assert_eq!(serde_json::to_value(v).expect("ser"), json!(action));
        }
    }

    #[test]
    fn unknown_enum_values_fail_naming_path_and_value() {
        let cases = [
            (
                json!({"configPatches": [{"applyTo": "HTTP_FILTERS"}]}),
                "configPatches[0].applyTo",
                "HTTP_FILTERS",
            ),
            (
                json!({"configPatches": [{"match": {"context": "SIDECAR"}}]}),
                "configPatches[0].match.context",
                "SIDECAR",
            ),
            (
                json!({"configPatches": [{}, {"patch": {"operation": "PATCH"}}]}),
                "configPatches[1].patch.operation",
                "PATCH",
            ),
            (
                json!({"configPatches": [{"patch": {"filterClass": "AUTHX"}}]}),
                "configPatches[0].patch.filterClass",
                "AUTHX",
            ),
            (
                json!({"configPatches": [{"match": {"routeConfiguration": {"vhost": {"route": {"action": "FORWARD"}}}}}]}),
                "configPatches[0].match.routeConfiguration.vhost.route.action",
                "FORWARD",
            ),
            // Enum names are case-sensitive, as in Istio's CRD schema.
            (
                json!({"configPatches": [{"applyTo": "cluster"}]}),
                "configPatches[0].applyTo",
                "cluster",
            ),
        ];
        for (input, path, bad) in cases {
            let err = from_value::<EnvoyFilterSpec>(&input).expect_err(bad);
            assert_eq!(err.path(), Some(path), "{err}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn wrong_types_fail_naming_the_path() {
        let cases = [
            (json!({"priority": "high"}), "priority"),
            (json!({"priority": 1.5}), "priority"),
            (
                json!({"configPatches": [{"match": {"listener": {"portNumber": "8080"}}}]}),
                "configPatches[0].match.listener.portNumber",
            ),
            (
                json!({"configPatches": [{"match": {"cluster": {"portNumber": -1}}}]}),
                "configPatches[0].match.cluster.portNumber",
            ),
            (
                json!({"configPatches": [{"match": {"waypoint": {"portNumber": 4294967296u64}}}]}),
                "configPatches[0].match.waypoint.portNumber",
            ),
            (
                json!({"configPatches": [{"patch": {"value": "name: envoy.lua"}}]}),
                "configPatches[0].patch.value",
            ),
            (
                json!({"configPatches": [{"patch": {"value": [1, 2]}}]}),
                "configPatches[0].patch.value",
            ),
            (
                json!({"configPatches": {"applyTo": "CLUSTER"}}),
                "configPatches",
            ),
            (
                json!({"configPatches": [{"match": {"proxy": {"metadata": {"A": 1}}}}]}),
                "configPatches[0].match.proxy.metadata.A",
            ),
        ];
        for (input, path) in cases {
            let err = from_value::<EnvoyFilterSpec>(&input).expect_err(path);
            assert_eq!(err.path(), Some(path), "{err}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected_outside_patch_value() {
        let cases = [
            (json!({"workloadLabels": {"app": "x"}}), "workloadLabels"),
            (json!({"filters": []}), "filters"),
            (
                json!({"configPatches": [{"match": {"listner": {}}}]}),
                "configPatches[0].match.listner",
            ),
            (
                json!({"configPatches": [{"match": {"listener": {"filterChain": {"filter": {"subfilter": {}}}}}}]}),
                "configPatches[0].match.listener.filterChain.filter.subfilter",
            ),
            (
                json!({"configPatches": [{"match": {"waypoint": {"route": {"action": "ROUTE"}}}}]}),
                "configPatches[0].match.waypoint.route.action",
            ),
            (
                json!({"configPatches": [{"patch": {"operation": "ADD", "values": {}}}]}),
                "configPatches[0].patch.values",
            ),
        ];
        for (input, path) in cases {
            let err = from_value::<EnvoyFilterSpec>(&input).expect_err(path);
            assert_eq!(err.path(), Some(path), "{err}");
            assert!(err.to_string().contains("unknown field"), "{err}");
        }
    }

    #[test]
    fn oneof_branches_are_separate_fields_checked_later() {
        // Parsing keeps whatever was written; the "at most one" rule is a
        // validation concern, so nothing is dropped here either.
        let input = json!({
            "configPatches": [{
                "applyTo": "CLUSTER",
                "match": {
                    "listener": {"portNumber": 80},
                    "cluster": {"service": "a.b.svc.cluster.local"}
                }
            }]
        });
        let (spec, back) = round_trip(&input);
        assert_eq!(back, input);
        let m = spec.config_patches.as_deref().expect("patches")[0]
            .r#match
            .as_ref()
            .expect("match");
        assert!(m.listener.is_some() && m.cluster.is_some());
        assert!(m.route_configuration.is_none() && m.waypoint.is_none());
    }

    #[test]
    fn istio_style_yaml_object_parses_into_the_kind() {
        let yaml = r#"
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: reviews-lua
  namespace: bookinfo
spec:
  workloadSelector:
    labels:
      app: reviews
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        portNumber: 8080
        filterChain:
          filter:
            name: "envoy.filters.network.http_connection_manager"
            subFilter:
              name: "envoy.filters.http.router"
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.lua
        typed_config:
          "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
          default_source_code:
            inline_string: |
              function envoy_on_request(request_handle)
                request_handle:headers():add("x-lua", "1")
              end
  - applyTo: CLUSTER
    match:
      context: SIDECAR_OUTBOUND
    patch:
      operation: ADD
      value:
        name: lua_cluster
        type: STRICT_DNS
        connect_timeout: 0.5s
        lb_policy: ROUND_ROBIN
        load_assignment:
          cluster_name: lua_cluster
          endpoints:
          - lb_endpoints:
            - endpoint:
                address:
                  socket_address:
                    protocol: TCP
                    address: internal.org.net
                    port_value: 8888
"#;
        let docs = yaml_documents(yaml).expect("yaml");
        let ef: EnvoyFilter = from_value(&docs[0]).expect("EnvoyFilter parses");
        assert_eq!(ef.metadata.name.as_deref(), Some("reviews-lua"));
        let back = serde_json::to_value(&ef).expect("ser");
        assert_eq!(back["spec"], docs[0]["spec"]);
        assert_eq!(
            back["spec"]["configPatches"][1]["patch"]["value"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
                [0]["endpoint"]["address"]["socket_address"]["port_value"],
            json!(8888)
        );
    }

    #[test]
    fn crd_serves_v1alpha3_and_keeps_patch_value_unpruned() {
        use kube::CustomResourceExt;

        let crd = serde_json::to_value(EnvoyFilter::crd()).expect("crd");
        assert_eq!(
            crd["metadata"]["name"],
            json!("envoyfilters.networking.istio.io")
        );
        assert_eq!(crd["spec"]["scope"], json!("Namespaced"));
        assert_eq!(
            crd["spec"]["names"]["categories"],
            json!(["istio-io", "networking-istio-io"])
        );
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], json!("v1alpha3"));
        assert_eq!(
            version["additionalPrinterColumns"],
            json!([{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}])
        );
        let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let patch = &spec["properties"]["configPatches"]["items"]["properties"]["patch"];
        let value = &patch["properties"]["value"];
        assert_eq!(
            value["x-kubernetes-preserve-unknown-fields"],
            json!(true),
            "{value}"
        );
        assert_eq!(value["type"], json!("object"), "{value}");
    }
}
