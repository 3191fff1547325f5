//! `DestinationRule`: what happens to traffic for a host once routing has
//! picked it (istio/api `networking/v1alpha3/destination_rule.proto`): load
//! balancing, connection limits, outlier ejection, upstream TLS, subsets.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Decimal, Duration, Labels, PortSelector, WorkloadSelector};

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "networking.istio.io",
    version = "v1",
    kind = "DestinationRule",
    namespaced,
    status = "crate::schema::FreeformObject",
    shortname = "dr",
    category = "istio-io",
    category = "networking-istio-io",
    printcolumn = r#"{"name":"Host","type":"string","description":"The service the rule applies to","jsonPath":".spec.host"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    schema = "derived"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationRuleSpec {
    /// The service (registry name or ServiceEntry host) the rule is for.
    /// Required. Short names resolve against the rule's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Policy for every port and subset unless overridden below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named groups of the host's endpoints (usually versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsets: Option<Vec<Subset>>,
    /// Namespaces that see this rule: `.` is the rule's own, `*` all; empty
    /// means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_to: Option<Vec<String>>,
    /// Restricts the rule to the proxies of matching workloads in the rule's
    /// namespace; absent means every proxy that sees the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
}

/// The policy applied to connections and requests to a destination.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS the proxy originates towards the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
    /// Per-port policies; one replaces (does not merge with) the policy
    /// above for its port. At most 4096.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_level_settings: Option<Vec<PortTrafficPolicy>>,
    /// Tunnels TCP/TLS traffic for the host through HTTP CONNECT or POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelSettings>,
    /// Sends a PROXY protocol header upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Caps concurrent retries relative to active requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
}

/// A traffic policy for one port of the destination (no tunnel, PROXY
/// protocol or retry budget at this level).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortTrafficPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
}

/// Where and how downstream TCP connections are tunneled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TunnelSettings {
    /// `CONNECT` (the default) or `POST`; kept as a string as Istio does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// FQDN or IP the connection is tunneled to. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_host: Option<String>,
    /// Port the connection is tunneled to. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
}

/// Upstream PROXY protocol settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyProtocol {
    /// Defaults to `V1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ProxyProtocolVersion>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProxyProtocolVersion {
    /// Text header.
    V1,
    /// Binary header.
    V2,
}

/// Retry budget: retries allowed as a share of active plus pending requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudget {
    /// Share in percent, 0..=100 (Envoy's default is 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<Decimal>,
    /// Retries always allowed whatever the share gives (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_retry_concurrency: Option<u32>,
    /// Window over which new requests also count towards the budget; the
    /// default (`0ms`) counts only requests active right now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_interval: Option<Duration>,
}

/// A named subset of the host's endpoints, with its own policy overrides.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subset {
    /// Required; routes refer to the subset by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Endpoint labels that select the subset's members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// Overrides the rule-level policy field by field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
}

/// Load balancing: at most one of `simple`, `consistentHash` (a proto
/// `oneof`), plus locality and warmup settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simple: Option<SimpleLb>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHashLb>,
    /// Replaces the mesh-wide locality settings as a whole. Istio allows
    /// either this or `zoneAwareLbSetting`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality_lb_setting: Option<LocalityLoadBalancerSetting>,
    /// Envoy's zone-aware routing; replaces the mesh-wide settings as a
    /// whole. Istio allows either this or `localityLbSetting`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_aware_lb_setting: Option<ZoneAwareLoadBalancerSetting>,
    /// Deprecated: use `warmup`. Slow-start window for new endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_duration_secs: Option<Duration>,
    /// Slow start for new endpoints (ROUND_ROBIN and LEAST_REQUEST only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<WarmupConfiguration>,
}

/// Load balancing algorithms that need no tuning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleLb {
    /// Istio picks the default.
    Unspecified,
    /// Deprecated: use `LEAST_REQUEST`.
    LeastConn,
    Random,
    /// Forward to the original destination address, no balancing.
    Passthrough,
    RoundRobin,
    LeastRequest,
}

/// Slow start of new endpoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WarmupConfiguration {
    /// Length of the warmup window. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// Share of traffic (percent, 0..=100) a new endpoint gets at the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_percent: Option<Decimal>,
    /// Curve of the traffic increase (>= 0; 1.0 is linear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggression: Option<Decimal>,
}

/// Consistent-hash (soft affinity) load balancing.
///
/// Hash key: at most one of `httpHeaderName`, `httpCookie`, `useSourceIp`,
/// `httpQueryParameterName`. Algorithm: at most one of `ringHash`, `maglev`
/// (ring hash when neither).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsistentHashLb {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_header_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_cookie: Option<HttpCookie>,
    /// Hash on the source IP (TCP and HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_source_ip: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_query_parameter_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_hash: Option<RingHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maglev: Option<MagLev>,
    /// Deprecated: use `ringHash.minimumRingSize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_ring_size: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingHash {
    /// Virtual nodes on the ring (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_ring_size: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MagLev {
    /// Lookup table size; a prime below 5000011 (default 65537).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_size: Option<u64>,
}

/// The cookie hashed on; the proxy sets it when absent and `ttl` is given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCookie {
    /// Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Lifetime of a generated cookie; `0s` makes a session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// Extra attributes of a generated cookie (`SameSite`, `Secure`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Vec<HttpCookieAttribute>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCookieAttribute {
    /// Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Locality-aware load balancing. At most one of `distribute`, `failover`,
/// `failoverPriority`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityLoadBalancerSetting {
    /// Weighted spread of traffic from a locality over localities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribute: Option<Vec<LocalityDistribute>>,
    /// Region-to-region failover when endpoints become unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Vec<LocalityFailover>>,
    /// Ordered labels (`key` or `key=value`) ranking endpoints into priorities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_priority: Option<Vec<String>>,
    /// Turns locality load balancing on or off for this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityDistribute {
    /// Source locality `region/zone/sub_zone`; trailing `*` allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Destination locality to weight; weights should sum to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<BTreeMap<String, u32>>,
}

/// Zone-aware load balancing: traffic stays in the caller's zone while that
/// zone has enough healthy endpoints, with optional cross-region ordering.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneAwareLoadBalancerSetting {
    /// Turns zone-aware load balancing on or off for this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Order of the regions traffic moves to when the local region's
    /// endpoints become unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Vec<LocalityFailover>>,
    /// Ordered labels (`key` or `key=value`) ranking endpoints into priority
    /// tiers on top of the automatic region/zone ones (so not the region,
    /// zone or subzone labels themselves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_priority: Option<Vec<String>>,
    /// Hosts the local region needs before zone-aware routing applies
    /// (Envoy's default is 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cluster_size: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityFailover {
    /// Source region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Region to fail over to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// Per-host connection limits (Envoy circuit breakers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPoolSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
}

/// Limits common to TCP and HTTP upstream connections.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Connections are closed this long after they were opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_duration: Option<Duration>,
    /// Close after this long without bytes either way; `0s` disables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
}

/// SO_KEEPALIVE settings; unset values use the OS defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpKeepalive {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
}

/// Limits for HTTP/1.1, HTTP/2 and gRPC upstreams.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSettings {
    /// Requests queued while waiting for a connection (HTTP/1.1 and HTTP/2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http1_max_pending_requests: Option<i32>,
    /// Active requests to the destination (HTTP/1.1 and HTTP/2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_max_requests: Option<i32>,
    /// 1 disables keep-alive; 0 means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<i32>,
    /// Outstanding retries across all hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<i32>,
    /// Close pooled connections with no active request for this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2_upgrade_policy: Option<H2UpgradePolicy>,
    /// Keep the client's HTTP version upstream (disables `h2UpgradePolicy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_client_protocol: Option<bool>,
    /// Concurrent streams per HTTP/2 connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<i32>,
    /// HTTP/2 PING frames on upstream connections, to find dead peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_keep_alive: Option<ConnectionKeepalive>,
}

/// HTTP/2 PING settings of an upstream connection pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionKeepalive {
    /// Time between PINGs. Istio requires it when `http2KeepAlive` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// How long a PING may go unanswered before the connection is closed.
    /// Istio requires it when `http2KeepAlive` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// Whether HTTP/1.1 upstream connections are upgraded to HTTP/2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum H2UpgradePolicy {
    /// The mesh-wide default.
    Default,
    DoNotUpgrade,
    Upgrade,
}

/// Ejection of hosts that keep failing from the load balancing pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    /// Deprecated: use `consecutive5xxErrors` / `consecutiveGatewayErrors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_errors: Option<i32>,
    /// Count locally originated failures (connect errors, timeouts) apart
    /// from upstream status codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_external_local_origin_errors: Option<bool>,
    /// Local-origin failures before ejection; needs the split above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failures: Option<u32>,
    /// 502/503/504 (or TCP connect failures) before ejection; 0 disables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    /// Any 5xx (or TCP failure) before ejection; 0 disables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_5xx_errors: Option<u32>,
    /// Time between ejection sweeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Base ejection time, multiplied by the number of ejections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<i32>,
    /// Below this share of healthy hosts, ejection stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_health_percent: Option<i32>,
    /// HTTP status codes (100..=599) counted as errors towards the
    /// thresholds above; unset means any 5xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection_http_error_codes: Option<Vec<u32>>,
}

/// TLS the proxy originates to the upstream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTlsSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ClientTlsMode>,
    /// Client certificate file; required for `MUTUAL` without a credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// Client key file; required for `MUTUAL` without a credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// CA bundle file that verifies the server; OS roots when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// Secret holding the client key/cert/CA (instead of the file paths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// SANs the server certificate must carry; overrides the ServiceEntry's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_alt_names: Option<Vec<String>>,
    /// SNI to send; derived from the request host when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Skip CA and SAN verification of the server certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// Certificate revocation list file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_crl: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientTlsMode {
    /// Plain text upstream.
    Disable,
    /// TLS, server verified.
    Simple,
    /// TLS with a client certificate the user supplies.
    Mutual,
    /// TLS with the workload certificate Istio issues.
    IstioMutual,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::json;

    use super::*;

    fn round_trip(input: &serde_json::Value) -> serde_json::Value {
        let spec: DestinationRuleSpec = serde_json::from_value(input.clone()).expect("parse");
        serde_json::to_value(&spec).expect("serialize")
    }

    fn full_traffic_policy(empty_port_list: bool) -> serde_json::Value {
        let lb = json!({
            "simple": "LEAST_REQUEST",
            "consistentHash": {
                "httpHeaderName": "x-user",
                "httpCookie": {
                    "name": "session",
                    "path": "/",
                    "ttl": "0s",
                    "attributes": [
                        {"name": "SameSite", "value": "Strict"},
                        {"name": "Secure"}
                    ]
                },
                "useSourceIp": false,
                "httpQueryParameterName": "user",
                "ringHash": {"minimumRingSize": 2048},
                "maglev": {"tableSize": 65537},
                "minimumRingSize": 1024
            },
            "localityLbSetting": {
                "distribute": [
                    {"from": "us-west/zone1/*", "to": {"us-west/zone1/*": 80, "us-west/zone2/*": 20}}
                ],
                "failover": [{"from": "us-east", "to": "eu-west"}],
                "failoverPriority": ["topology.istio.io/network", "version=v1"],
                "enabled": true
            },
            "warmupDurationSecs": "30s",
            "warmup": {"duration": "60s", "minimumPercent": 10.5, "aggression": 1.5}
        });
        let pool = json!({
            "tcp": {
                "maxConnections": 100,
                "connectTimeout": "30ms",
                "tcpKeepalive": {"probes": 9, "time": "7200s", "interval": "75s"},
                "maxConnectionDuration": "1h",
                "idleTimeout": "0s"
            },
            "http": {
                "http1MaxPendingRequests": 10,
                "http2MaxRequests": 1000,
                "maxRequestsPerConnection": 1,
                "maxRetries": 3,
                "idleTimeout": "1h",
                "h2UpgradePolicy": "DO_NOT_UPGRADE",
                "useClientProtocol": false,
                "maxConcurrentStreams": 0,
                "http2KeepAlive": {"interval": "30s", "timeout": "5s"}
            }
        });
        let outlier = json!({
            "consecutiveErrors": 7,
            "splitExternalLocalOriginErrors": true,
            "consecutiveLocalOriginFailures": 5,
            "consecutiveGatewayErrors": 0,
            "consecutive5xxErrors": 7,
            "interval": "5m",
            "baseEjectionTime": "15m",
            "maxEjectionPercent": 100,
            "minHealthPercent": 0,
            "outlierDetectionHttpErrorCodes": [500, 503, 429]
        });
        let tls = json!({
            "mode": "MUTUAL",
            "clientCertificate": "/etc/certs/cert.pem",
            "privateKey": "/etc/certs/key.pem",
            "caCertificates": "/etc/certs/ca.pem",
            "credentialName": "client-credential",
            "subjectAltNames": ["spiffe://cluster.local/ns/a/sa/b"],
            "sni": "my.example.com",
            "insecureSkipVerify": false,
            "caCrl": "/etc/certs/crl.pem"
        });
        let mut policy = json!({
            "loadBalancer": lb,
            "connectionPool": pool,
            "outlierDetection": outlier,
            "tls": tls,
            "portLevelSettings": [{
                "port": {"number": 443},
                "loadBalancer": lb,
                "connectionPool": pool,
                "outlierDetection": outlier,
                "tls": tls
            }],
            "tunnel": {"protocol": "POST", "targetHost": "10.0.0.1", "targetPort": 8443},
            "proxyProtocol": {"version": "V2"},
            "retryBudget": {"percent": 25.5, "minRetryConcurrency": 5, "budgetInterval": "10s"}
        });
        if empty_port_list {
            policy["portLevelSettings"] = json!([]);
        }
        policy
    }

    #[test]
    fn fully_populated_round_trips_unchanged() {
        let input = json!({
            "host": "ratings.prod.svc.cluster.local",
            "trafficPolicy": full_traffic_policy(false),
            "subsets": [
                {
                    "name": "v1",
                    "labels": {"version": "v1"},
                    "trafficPolicy": full_traffic_policy(true)
                },
                {"name": "no-labels", "labels": {}}
            ],
            "exportTo": [".", "*"],
            "workloadSelector": {"matchLabels": {"app": "ratings"}}
        });
        assert_eq!(round_trip(&input), input);
    }

    #[test]
    fn fields_added_in_recent_istio_parse_without_loss() {
        // Istio accepts each of these; dropping one would silently change
        // the traffic policy, so each must survive a round trip.
        let input = json!({
            "host": "ratings.prod.svc.cluster.local",
            "trafficPolicy": {
                "loadBalancer": {
                    "simple": "LEAST_REQUEST",
                    "zoneAwareLbSetting": {
                        "enabled": true,
                        "failover": [{"from": "us-east", "to": "eu-west"}],
                        "failoverPriority": ["topology.istio.io/network"],
                        "minClusterSize": 3
                    }
                },
                "connectionPool": {
                    "http": {"http2KeepAlive": {"interval": "10s", "timeout": "2s"}}
                },
                "outlierDetection": {"outlierDetectionHttpErrorCodes": [503]},
                "retryBudget": {"budgetInterval": "0ms"}
            }
        });
        assert_eq!(round_trip(&input), input);
        let spec: DestinationRuleSpec = serde_json::from_value(input).expect("parse");
        let keepalive = spec
            .traffic_policy
            .and_then(|p| p.connection_pool)
            .and_then(|p| p.http)
            .and_then(|h| h.http2_keep_alive);
        assert_eq!(
            keepalive,
            Some(ConnectionKeepalive {
                interval: Some("10s".into()),
                timeout: Some("2s".into()),
            })
        );
    }

    #[test]
    fn bookinfo_shapes_parse() {
        // Shapes of the bookinfo samples (all-mtls, reviews, egress TLS).
        let mtls = json!({
            "host": "reviews",
            "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2-mysql-vm", "labels": {"version": "v2-mysql-vm"}}
            ]
        });
        assert_eq!(round_trip(&mtls), mtls);
        let random = json!({
            "host": "reviews",
            "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}},
            "subsets": [{"name": "v3", "labels": {"version": "v3"}}]
        });
        let spec: DestinationRuleSpec =
            serde_json::from_value(random.clone()).expect("must be present");
        let lb = spec
            .traffic_policy
            .expect("must be present")
            .load_balancer
            .expect("must be present");
        assert_eq!(lb.simple, Some(SimpleLb::Random));
        let egress = json!({
            "host": "www.googleapis.com",
            "trafficPolicy": {
                "loadBalancer": {"simple": "ROUND_ROBIN"},
                "portLevelSettings": [{"port": {"number": 443}, "tls": {"mode": "SIMPLE"}}]
            }
        });
        let spec: DestinationRuleSpec =
            serde_json::from_value(egress.clone()).expect("must be present");
        let port = &spec
            .traffic_policy
            .as_ref()
            .expect("must be present")
            .port_level_settings
            .as_ref()
            .expect("must be present")[0];
        assert_eq!(
            port.port.as_ref().expect("must be present").number,
            Some(443)
        );
        assert_eq!(
            port.tls.as_ref().expect("must be present").mode,
            Some(ClientTlsMode::Simple)
        );
        assert_eq!(round_trip(&egress), egress);
    }

    #[test]
    fn enums_use_istio_names() {
        for (name, value) in [
            ("UNSPECIFIED", SimpleLb::Unspecified),
            ("LEAST_CONN", SimpleLb::LeastConn),
            ("RANDOM", SimpleLb::Random),
            ("PASSTHROUGH", SimpleLb::Passthrough),
            ("ROUND_ROBIN", SimpleLb::RoundRobin),
            ("LEAST_REQUEST", SimpleLb::LeastRequest),
        ] {
            assert_eq!(
                serde_json::to_value(value).expect("must be present"),
                json!(name)
            );
            assert_eq!(
                serde_json::from_value::<SimpleLb>(json!(name)).expect("must be present"),
                value
            );
        }
        for (name, value) in [
            ("DISABLE", ClientTlsMode::Disable),
            ("SIMPLE", ClientTlsMode::Simple),
            ("MUTUAL", ClientTlsMode::Mutual),
            ("ISTIO_MUTUAL", ClientTlsMode::IstioMutual),
        ] {
            assert_eq!(
                serde_json::to_value(value).expect("must be present"),
                json!(name)
            );
        }
        for (name, value) in [
            ("DEFAULT", H2UpgradePolicy::Default),
            ("DO_NOT_UPGRADE", H2UpgradePolicy::DoNotUpgrade),
            ("UPGRADE", H2UpgradePolicy::Upgrade),
        ] {
            assert_eq!(
                serde_json::to_value(value).expect("must be present"),
                json!(name)
            );
        }
        assert_eq!(
            serde_json::to_value(ProxyProtocolVersion::V1).expect("must be present"),
            json!("V1")
        );
        assert_eq!(
            serde_json::to_value(ProxyProtocolVersion::V2).expect("must be present"),
            json!("V2")
        );
    }

    #[test]
    fn unknown_enum_values_fail_naming_the_value() {
        let cases = [
            json!({"host": "a", "trafficPolicy": {"loadBalancer": {"simple": "LEAST_CONNECTIONS"}}}),
            json!({"host": "a", "trafficPolicy": {"tls": {"mode": "PERMISSIVE"}}}),
            json!({"host": "a", "trafficPolicy": {"connectionPool": {"http": {"h2UpgradePolicy": "ALWAYS"}}}}),
            json!({"host": "a", "trafficPolicy": {"proxyProtocol": {"version": "V3"}}}),
        ];
        for (case, bad) in cases
            .iter()
            .zip(["LEAST_CONNECTIONS", "PERMISSIVE", "ALWAYS", "V3"])
        {
            let err = serde_json::from_value::<DestinationRuleSpec>(case.clone())
                .expect_err("must be rejected");
            assert!(err.to_string().contains(bad), "{err}");
        }
        // Enum names are case-sensitive, as in Istio.
        let lower = json!({"host": "a", "trafficPolicy": {"tls": {"mode": "simple"}}});
        assert!(serde_json::from_value::<DestinationRuleSpec>(lower).is_err());
    }

    #[test]
    fn unknown_fields_and_wrong_types_fail() {
        let unknown =
            json!({"host": "a", "trafficPolicy": {"tls": {"mode": "SIMPLE", "sniHost": "x"}}});
        let err =
            serde_json::from_value::<DestinationRuleSpec>(unknown).expect_err("must be rejected");
        assert!(err.to_string().contains("sniHost"), "{err}");
        // The old v1alpha3 spelling of the workload selector is not accepted.
        let labels = json!({"host": "a", "workloadSelector": {"labels": {"app": "x"}}});
        assert!(serde_json::from_value::<DestinationRuleSpec>(labels).is_err());
        for wrong in [
            json!({"host": 5}),
            json!({"host": "a", "subsets": {"name": "v1"}}),
            json!({"host": "a", "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": "100"}}}}),
            json!({"host": "a", "trafficPolicy": {"outlierDetection": {"consecutive5xxErrors": -1}}}),
            json!({"host": "a", "trafficPolicy": {"tunnel": {"targetPort": 70000000000_u64}}}),
            json!({"host": "a", "trafficPolicy": {"loadBalancer": {"consistentHash": {"useSourceIp": "yes"}}}}),
        ] {
            assert!(
                serde_json::from_value::<DestinationRuleSpec>(wrong.clone()).is_err(),
                "{wrong}"
            );
        }
    }

    #[test]
    fn consistent_hash_oneof_members_are_independent_fields() {
        let input = json!({"host": "a", "trafficPolicy": {"loadBalancer": {
            "consistentHash": {"httpQueryParameterName": "u", "maglev": {}}
        }}});
        let spec: DestinationRuleSpec =
            serde_json::from_value(input.clone()).expect("must be present");
        let ch = spec
            .traffic_policy
            .expect("must be present")
            .load_balancer
            .expect("must be present")
            .consistent_hash
            .expect("must be present");
        assert_eq!(ch.http_query_parameter_name.as_deref(), Some("u"));
        assert_eq!(ch.maglev, Some(MagLev::default()));
        assert!(ch.ring_hash.is_none() && ch.http_cookie.is_none());
        assert_eq!(round_trip(&input), input);
    }

    #[test]
    fn crd_metadata_matches_istio() {
        let crd = DestinationRule::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("destinationrules.networking.istio.io")
        );
        assert_eq!(crd.spec.names.short_names, Some(vec!["dr".to_string()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1");
        let columns = version
            .additional_printer_columns
            .as_ref()
            .expect("must be present");
        let names: Vec<_> = columns
            .iter()
            .map(|c| (c.name.as_str(), c.json_path.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("Host", ".spec.host"),
                ("Age", ".metadata.creationTimestamp")
            ]
        );
    }
}
