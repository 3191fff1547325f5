//! `VirtualService`: routing rules for the traffic sent to a set of hosts
//! (istio/api `networking/v1alpha3/virtual_service.proto`).
//!
//! HTTP rules match on request attributes and forward, redirect, answer
//! directly or delegate; TLS rules match on SNI; TCP rules match on L4
//! attributes. The field named `match` in Istio's JSON is `r#match` here, so
//! the Rust name stays the same as the wire name.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Duration, Labels, Percent, PortSelector, StringMatch};

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "networking.istio.io",
    version = "v1",
    kind = "VirtualService",
    namespaced,
    status = "crate::schema::FreeformObject",
    shortname = "vs",
    category = "istio-io",
    category = "networking-istio-io",
    printcolumn = r#"{"name":"Gateways","type":"string","description":"Gateways and sidecars these routes apply to","jsonPath":".spec.gateways"}"#,
    printcolumn = r#"{"name":"Hosts","type":"string","description":"Hosts the routed traffic is addressed to","jsonPath":".spec.hosts"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    schema = "derived"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualServiceSpec {
    /// Hosts (DNS names, wildcards, IPs or short names) whose traffic these
    /// rules route. Empty for a delegate VirtualService.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// Gateways (`name` or `namespace/name`) and the reserved `mesh`
    /// (all sidecars) that apply the rules; absent means `mesh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<Vec<String>>,
    /// Ordered HTTP rules; the first that matches a request wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Vec<HttpRoute>>,
    /// Ordered rules for TLS that is passed through unterminated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Vec<TlsRoute>>,
    /// Ordered rules for opaque TCP traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<Vec<TcpRoute>>,
    /// Namespaces that see this VirtualService (`.` own namespace, `*` all);
    /// absent means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_to: Option<Vec<String>>,
}

/// The service (and optionally subset and port) a rule sends traffic to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// Registry name of the service (required by Istio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// A subset declared by a DestinationRule for `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Port of `host`; may be left out when the service has one port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// One HTTP rule: conditions (`match`) and what to do with a matching
/// request. Forwarding (`route`), `redirect`, `directResponse` and
/// `delegate` are alternatives; validation enforces that later.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// Name used in access logs (joined with the match name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Conditions: all fields of one entry must hold (AND), any entry may
    /// match (OR). Absent matches everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#match: Option<Vec<HttpMatchRequest>>,
    /// Weighted destinations the request is forwarded to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Vec<HttpRouteDestination>>,
    /// Answer with an HTTP redirect instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<HttpRedirect>,
    /// Answer with a fixed status and body instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<HttpDirectResponse>,
    /// Hand the rest of the routing to another VirtualService.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegate: Option<Delegate>,
    /// Rewrite the URI and/or authority before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<HttpRewrite>,
    /// Overall request timeout; absent means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<HttpRetry>,
    /// Client-side fault injection (delays, aborts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<HttpFaultInjection>,
    /// One destination that gets a fire-and-forget copy of the traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Destination>,
    /// Several mirror destinations, each with its own share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirrors: Option<Vec<HttpMirrorPolicy>>,
    /// Integer share of traffic copied to `mirror`.
    /// Deprecated: use `mirrorPercentage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percent: Option<u32>,
    /// The same deprecated setting spelled with its proto name
    /// `mirror_percent`, which Istio's CRD schema also lists (and which
    /// older tutorials use). Kept apart so a round trip keeps the spelling.
    /// Deprecated: use `mirrorPercentage`.
    #[serde(
        default,
        rename = "mirror_percent",
        skip_serializing_if = "Option::is_none"
    )]
    pub mirror_percent_proto_name: Option<u32>,
    /// Share of traffic copied to `mirror`; absent means 100%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percentage: Option<Percent>,
    /// Cross-origin resource sharing policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_policy: Option<CorsPolicy>,
    /// Header changes applied for every destination of this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// Conditions on an HTTP request; every field that is set must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatchRequest {
    /// Name used in access logs (joined with the route name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Request path (case-sensitive unless `ignoreUriCase`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    /// URI scheme (`http`, `https`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StringMatch>,
    /// HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// Authority / Host header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatch>,
    /// Request headers by lowercase name; `{}` only checks presence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, HeaderMatch>>,
    /// Port the request was addressed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Labels the calling workload must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_labels: Option<Labels>,
    /// Gateways this condition is limited to; overrides the top-level
    /// `gateways` for this match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<Vec<String>>,
    /// Query parameters by name; `{}` only checks presence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_params: Option<BTreeMap<String, HeaderMatch>>,
    /// Match `uri` ignoring case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_uri_case: Option<bool>,
    /// Headers that must NOT match (same form as `headers`; `{}` means
    /// the header must be absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub without_headers: Option<BTreeMap<String, HeaderMatch>>,
    /// Namespace the calling workload must run in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
    /// Prefix for the statistics emitted for this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat_prefix: Option<String>,
}

/// A condition on one header or query parameter: a [`StringMatch`], or an
/// empty object `{}`, which Istio documents as "present, any value".
/// `StringMatch` alone cannot hold `{}` (it needs exactly one key), hence
/// this wrapper. At most one of `exact`, `prefix`, `regex`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderMatch {
    /// `{}`: only presence is checked.
    Present,
    /// The value must match.
    Value(StringMatch),
}

/// Wire form of [`HeaderMatch`].
#[derive(Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HeaderMatchFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    /// RE2 regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
}

impl Serialize for HeaderMatch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            HeaderMatch::Present => HeaderMatchFields::default().serialize(serializer),
            HeaderMatch::Value(m) => m.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for HeaderMatch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = HeaderMatchFields::deserialize(deserializer)?;
        match (fields.exact, fields.prefix, fields.regex) {
            (None, None, None) => Ok(HeaderMatch::Present),
            (Some(v), None, None) => Ok(HeaderMatch::Value(StringMatch::Exact(v))),
            (None, Some(v), None) => Ok(HeaderMatch::Value(StringMatch::Prefix(v))),
            (None, None, Some(v)) => Ok(HeaderMatch::Value(StringMatch::Regex(v))),
            _ => Err(serde::de::Error::custom(
                "at most one of `exact`, `prefix`, `regex` may be set",
            )),
        }
    }
}

impl JsonSchema for HeaderMatch {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HeaderMatch".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        HeaderMatchFields::json_schema(generator)
    }
}

/// A weighted HTTP destination with its own header changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteDestination {
    /// Where to send the request (required by Istio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// Relative share of traffic among the rule's destinations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Header changes applied only for this destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// A weighted TLS or TCP destination.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteDestination {
    /// Where to send the connection (required by Istio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// Relative share of connections among the rule's destinations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

/// Header changes for requests and for responses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Headers {
    /// Applied to the request before it is forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    /// Applied to the response before it is returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}

/// Edits to one set of headers (Istio's `Headers.HeaderOperations`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderOperations {
    /// Replace these headers with the given values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<BTreeMap<String, String>>,
    /// Append these values (comma-joined with existing ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<BTreeMap<String, String>>,
    /// Drop these headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<Vec<String>>,
}

/// An HTTP redirect answer. At most one of `port`, `derivePort`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRedirect {
    /// New path of the URL, replacing the whole path. Istio allows either
    /// this or `prefixRewrite`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// New prefix of the path in place of the one the route's prefix match
    /// matched (the match must be a prefix match). Istio allows either this
    /// or `uri`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_rewrite: Option<String>,
    /// New authority/host of the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// New port of the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Take the new port from the scheme's default or from the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derive_port: Option<RedirectPortSelection>,
    /// New scheme of the URL (`http`, `https`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Status code of the redirect; Istio's default is 301.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_code: Option<u32>,
}

/// How a redirect picks its port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RedirectPortSelection {
    /// 80 for `http`, 443 for `https`.
    FromProtocolDefault,
    /// The port the request came in on.
    FromRequestPort,
}

/// A fixed answer returned without contacting any destination.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpDirectResponse {
    /// HTTP status code (required by Istio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    /// Response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<HttpBody>,
}

/// A response body, given as text or as base64 bytes: exactly one of the
/// two (a proto `oneof`), so it is a Rust enum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum HttpBody {
    /// Body as a UTF-8 string.
    String(String),
    /// Body as base64-encoded bytes.
    Bytes(String),
}

/// Names the VirtualService that routes on behalf of this rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delegate {
    /// Name of the delegate VirtualService.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its namespace; absent means the namespace of this VirtualService.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Changes made to the request URI and authority before forwarding.
/// At most one of `uri`, `uriRegexRewrite`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRewrite {
    /// Replaces the path, or the part the `uri` prefix match matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Replaces the authority/host header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Rewrites the path with a regex substitution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// A regex substitution on the path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegexRewrite {
    /// RE2 pattern to find.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#match: Option<String>,
    /// Replacement; may refer to capture groups (`\1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<String>,
}

/// When and how often a failed request is tried again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRetry {
    /// Number of retries; 0 turns retries off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    /// Timeout of each try.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Duration>,
    /// Comma-separated Envoy retry conditions and/or status codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<String>,
    /// Allow retries to go to other localities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_remote_localities: Option<bool>,
    /// Avoid hosts already tried (Istio's default is true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Base interval between retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Duration>,
}

/// Faults injected into matching requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFaultInjection {
    /// Delay before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    /// Answer with an error instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

/// An injected delay (Istio's `HTTPFaultInjection.Delay`).
/// At most one of `fixedDelay`, `exponentialDelay`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultDelay {
    /// Integer share of requests delayed. Deprecated: use `percentage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i32>,
    /// Fixed time to wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_delay: Option<Duration>,
    /// Exponentially growing wait (not implemented by Istio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exponential_delay: Option<Duration>,
    /// Share of requests delayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// An injected error answer (Istio's `HTTPFaultInjection.Abort`).
/// At most one of `httpStatus`, `grpcStatus`, `http2Error`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultAbort {
    /// HTTP status to answer with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<i32>,
    /// gRPC status to answer with, by name (`UNAVAILABLE`) or number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<String>,
    /// HTTP/2 error to answer with (not implemented by Istio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_error: Option<String>,
    /// Share of requests aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// One mirror target with its share of traffic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMirrorPolicy {
    /// Where the copy goes (required by Istio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// Share of traffic copied; absent means 100%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// Cross-origin resource sharing (CORS) settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsPolicy {
    /// Exact allowed origins. Deprecated: use `allowOrigins`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_origin: Option<Vec<String>>,
    /// Allowed origins, matched exactly, by prefix or by regex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_origins: Option<Vec<StringMatch>>,
    /// Value of `Access-Control-Allow-Methods`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_methods: Option<Vec<String>>,
    /// Value of `Access-Control-Allow-Headers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_headers: Option<Vec<String>>,
    /// Value of `Access-Control-Expose-Headers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<Vec<String>>,
    /// How long a preflight answer may be cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// Value of `Access-Control-Allow-Credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    /// What to do with preflights from origins that are not allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmatched_preflights: Option<UnmatchedPreflights>,
}

/// Handling of preflight requests whose origin is not allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnmatchedPreflights {
    /// Not set; Istio treats it as `FORWARD`.
    Unspecified,
    /// Pass the preflight on to the destination.
    Forward,
    /// Answer it at the proxy without CORS headers.
    Ignore,
}

/// One rule for unterminated TLS, matched mostly on SNI.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsRoute {
    /// Conditions (AND within an entry, OR across entries); required by
    /// Istio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#match: Option<Vec<TlsMatchAttributes>>,
    /// Weighted destinations of the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Vec<RouteDestination>>,
}

/// Conditions on a TLS connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsMatchAttributes {
    /// SNI names to match, wildcards allowed (required by Istio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni_hosts: Option<Vec<String>>,
    /// Destination IPs or CIDRs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_subnets: Option<Vec<String>>,
    /// Port the connection was addressed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Labels the calling workload must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_labels: Option<Labels>,
    /// Gateways this condition is limited to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<Vec<String>>,
    /// Namespace the calling workload must run in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
}

/// One rule for opaque TCP traffic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRoute {
    /// Conditions (AND within an entry, OR across entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#match: Option<Vec<L4MatchAttributes>>,
    /// Weighted destinations of the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Vec<RouteDestination>>,
}

/// Conditions on a TCP connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4MatchAttributes {
    /// Destination IPs or CIDRs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_subnets: Option<Vec<String>>,
    /// Port the connection was addressed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Source IP or CIDR (hidden from Istio's docs, still accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_subnet: Option<String>,
    /// Labels the calling workload must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_labels: Option<Labels>,
    /// Gateways this condition is limited to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<Vec<String>>,
    /// Namespace the calling workload must run in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use serde_json::{Value, json};
    use std::collections::BTreeSet;

    fn round_trip_spec(input: &Value) -> Value {
        let spec: VirtualServiceSpec = serde_json::from_value(input.clone()).expect("parses");
        serde_json::to_value(&spec).expect("serializes")
    }

    fn spec_error(input: Value) -> String {
        serde_json::from_value::<VirtualServiceSpec>(input)
            .expect_err("must be rejected")
            .to_string()
    }

    /// Every property path the schema declares (`[]` list items, `{}` map
    /// values).
    fn schema_paths(schema: &Value, path: &str, out: &mut BTreeSet<String>) {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (key, sub) in props {
                let p = format!("{path}.{key}");
                out.insert(p.clone());
                schema_paths(sub, &p, out);
            }
        }
        if let Some(items) = schema.get("items") {
            schema_paths(items, &format!("{path}[]"), out);
        }
        if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            schema_paths(values, &format!("{path}{{}}"), out);
        }
    }

    /// The schema property paths a value sets.
    fn value_paths(schema: &Value, value: &Value, path: &str, out: &mut BTreeSet<String>) {
        match value {
            Value::Array(items) => {
                for item in items {
                    value_paths(&schema["items"], item, &format!("{path}[]"), out);
                }
            }
            Value::Object(map) => {
                for (key, sub) in map {
                    if let Some(sub_schema) = schema.get("properties").and_then(|p| p.get(key)) {
                        let p = format!("{path}.{key}");
                        out.insert(p.clone());
                        value_paths(sub_schema, sub, &p, out);
                    } else if let Some(values) = schema.get("additionalProperties") {
                        value_paths(values, sub, &format!("{path}{{}}"), out);
                    }
                }
            }
            _ => {}
        }
    }

    fn destination(host: &str, subset: &str, port: u32) -> Value {
        json!({"host": host, "subset": subset, "port": {"number": port}})
    }

    /// Every field of every message, with the alternatives of each oneof
    /// spread over several routes, parsed and written back unchanged.
    #[test]
    fn fully_populated_spec_round_trips_unchanged() {
        let header_ops = json!({
            "request": {"set": {"x-a": "1"}, "add": {"x-b": "2"}, "remove": ["x-c"]},
            "response": {"set": {"x-d": "3"}, "add": {"x-e": "4"}, "remove": ["x-f", "x-g"]}
        });
        let input = json!({
            "hosts": ["reviews.prod.svc.cluster.local", "*.example.com"],
            "gateways": ["mesh", "istio-system/ingress"],
            "exportTo": [".", "*"],
            "http": [
                {
                    "name": "full",
                    "match": [
                        {
                            "name": "m1",
                            "uri": {"prefix": "/api"},
                            "scheme": {"exact": "https"},
                            "method": {"regex": "GET|POST"},
                            "authority": {"exact": "example.com"},
                            "headers": {
                                "end-user": {"exact": "jason"},
                                "x-any": {"regex": ".*"},
                                "x-present": {}
                            },
                            "port": 8080,
                            "sourceLabels": {"app": "productpage", "version": "v1"},
                            "gateways": ["mesh"],
                            "queryParams": {"debug": {"exact": "1"}, "trace": {}},
                            "ignoreUriCase": true,
                            "withoutHeaders": {"x-skip": {"prefix": "yes"}, "x-debug": {}},
                            "sourceNamespace": "default",
                            "statPrefix": "api_stats"
                        },
                        {
                            "uri": {"exact": "/login"},
                            "scheme": {"prefix": "ht"},
                            "method": {"exact": "GET"},
                            "authority": {"prefix": "api."},
                            "headers": {"x-p": {"prefix": "v"}},
                            "queryParams": {"q": {"regex": "a.*"}},
                            "withoutHeaders": {"x-e": {"exact": "1"}},
                            "ignoreUriCase": false
                        },
                        {
                            "uri": {"regex": "^/r"},
                            "scheme": {"regex": "https?"},
                            "method": {"prefix": "P"},
                            "authority": {"regex": ".*\\.com"},
                            "queryParams": {"p": {"prefix": "x"}},
                            "withoutHeaders": {"x-r": {"regex": "a|b"}}
                        }
                    ],
                    "route": [
                        {
                            "destination": destination("reviews", "v1", 9080),
                            "weight": 75,
                            "headers": header_ops.clone()
                        },
                        {"destination": {"host": "reviews", "subset": "v2"}, "weight": 25}
                    ],
                    "rewrite": {"uri": "/v2/api", "authority": "internal.example.com"},
                    "timeout": "10s",
                    "retries": {
                        "attempts": 3,
                        "perTryTimeout": "2s",
                        "retryOn": "gateway-error,connect-failure,503",
                        "retryRemoteLocalities": true,
                        "retryIgnorePreviousHosts": false,
                        "backoff": "25ms"
                    },
                    "fault": {
                        "delay": {"percent": 10, "fixedDelay": "5s", "percentage": {"value": 0.5}},
                        "abort": {"httpStatus": 503, "percentage": {"value": 1.5}}
                    },
                    "mirror": destination("reviews", "shadow", 9080),
                    "mirrors": [
                        {"destination": destination("audit", "v1", 80), "percentage": {"value": 5.5}},
                        {"destination": {"host": "audit2"}}
                    ],
                    "mirrorPercent": 50,
                    "mirror_percent": 40,
                    "mirrorPercentage": {"value": 12.5},
                    "corsPolicy": {
                        "allowOrigin": ["https://old.example.com"],
                        "allowOrigins": [
                            {"exact": "https://example.com"},
                            {"prefix": "https://dev."},
                            {"regex": "https://.*\\.example\\.org"}
                        ],
                        "allowMethods": ["GET", "POST"],
                        "allowHeaders": ["x-custom"],
                        "exposeHeaders": ["x-exposed"],
                        "maxAge": "24h",
                        "allowCredentials": false,
                        "unmatchedPreflights": "IGNORE"
                    },
                    "headers": header_ops.clone()
                },
                {
                    "name": "redirect-port",
                    "redirect": {
                        "uri": "/new",
                        "authority": "new.example.com",
                        "port": 8443,
                        "scheme": "https",
                        "redirectCode": 302
                    },
                    "rewrite": {
                        "authority": "a.example.com",
                        "uriRegexRewrite": {"match": "^/service/([^/]+)(/.*)$", "rewrite": "\\2/instance/\\1"}
                    },
                    "fault": {
                        "delay": {"exponentialDelay": "1s"},
                        "abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 100.0}}
                    },
                    "corsPolicy": {"unmatchedPreflights": "FORWARD"}
                },
                {
                    "redirect": {"derivePort": "FROM_REQUEST_PORT", "prefixRewrite": "/v2/"},
                    "fault": {"abort": {"http2Error": "REFUSED_STREAM"}},
                    "corsPolicy": {"unmatchedPreflights": "UNSPECIFIED"}
                },
                {
                    "redirect": {"derivePort": "FROM_PROTOCOL_DEFAULT"},
                    "directResponse": {"status": 503, "body": {"string": "unavailable"}}
                },
                {"directResponse": {"status": 200, "body": {"bytes": "aGVsbG8="}}},
                {"directResponse": {"status": 204}},
                {
                    "match": [{"uri": {"prefix": "/productpage"}}],
                    "delegate": {"name": "productpage", "namespace": "nsA"}
                }
            ],
            "tls": [{
                "match": [{
                    "sniHosts": ["login.bookinfo.com"],
                    "destinationSubnets": ["10.0.0.0/8"],
                    "port": 443,
                    "sourceLabels": {"app": "client"},
                    "gateways": ["mygateway"],
                    "sourceNamespace": "frontend"
                }],
                "route": [{"destination": destination("login", "v1", 443), "weight": 100}]
            }],
            "tcp": [{
                "match": [{
                    "destinationSubnets": ["192.168.0.0/16"],
                    "port": 27017,
                    "sourceSubnet": "10.1.0.0/16",
                    "sourceLabels": {"app": "mongo-client"},
                    "gateways": ["mesh"],
                    "sourceNamespace": "db"
                }],
                "route": [
                    {"destination": destination("mongo.backup", "v1", 5555), "weight": 80},
                    {"destination": {"host": "mongo.primary"}, "weight": 20}
                ]
            }]
        });
        assert_eq!(round_trip_spec(&input), input);

        // The input really sets every field: each property of the generated
        // schema occurs somewhere in it.
        let crd = VirtualService::crd();
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let spec_schema = &schema["openAPIV3Schema"]["properties"]["spec"];
        let mut in_schema = BTreeSet::new();
        schema_paths(spec_schema, "spec", &mut in_schema);
        let mut in_input = BTreeSet::new();
        value_paths(spec_schema, &input, "spec", &mut in_input);
        let missing: Vec<_> = in_schema.difference(&in_input).collect();
        assert!(
            missing.is_empty(),
            "fields not covered by the input: {missing:?}"
        );
        assert!(in_schema.len() > 150, "{}", in_schema.len());

        // Explicit empty lists, maps, zeros and false come back as written.
        let empties = json!({
            "hosts": [],
            "gateways": [],
            "exportTo": [],
            "http": [{
                "match": [{"headers": {}, "sourceLabels": {}, "port": 0, "ignoreUriCase": false}],
                "route": [{"destination": {"host": ""}, "weight": 0, "headers": {"request": {}}}],
                "retries": {"attempts": 0, "retryRemoteLocalities": false},
                "mirrors": [],
                "mirrorPercentage": {}
            }],
            "tls": [],
            "tcp": [{"match": [], "route": []}]
        });
        assert_eq!(round_trip_spec(&empties), empties);
    }

    #[test]
    fn typed_fields_land_where_expected() {
        let spec: VirtualServiceSpec = serde_json::from_value(json!({
            "http": [{
                "match": [{"uri": {"regex": "^/v[0-9]+"}, "port": 80}],
                "route": [{"destination": {"host": "a", "port": {"number": 9080}}, "weight": -1}],
                "redirect": {"derivePort": "FROM_PROTOCOL_DEFAULT"},
                "directResponse": {"status": 418, "body": {"bytes": "AAE="}},
                "mirror_percent": 7,
                "fault": {"abort": {"grpcStatus": "14"}}
            }]
        }))
        .unwrap();
        let http = &spec.http.unwrap()[0];
        let m = &http.r#match.as_ref().unwrap()[0];
        assert_eq!(m.uri, Some(StringMatch::Regex("^/v[0-9]+".into())));
        assert_eq!(m.port, Some(80));
        let dest = &http.route.as_ref().unwrap()[0];
        // weight is int32 in the proto: negative values parse (validation rejects them).
        assert_eq!(dest.weight, Some(-1));
        assert_eq!(
            dest.destination.as_ref().unwrap().port,
            Some(PortSelector { number: Some(9080) })
        );
        assert_eq!(
            http.redirect.as_ref().unwrap().derive_port,
            Some(RedirectPortSelection::FromProtocolDefault)
        );
        assert_eq!(
            http.direct_response.as_ref().unwrap().body,
            Some(HttpBody::Bytes("AAE=".into()))
        );
        assert_eq!(http.mirror_percent, None);
        assert_eq!(http.mirror_percent_proto_name, Some(7));
        assert_eq!(
            http.fault
                .as_ref()
                .unwrap()
                .abort
                .as_ref()
                .unwrap()
                .grpc_status
                .as_deref(),
            Some("14")
        );
    }

    #[test]
    fn match_field_is_named_match_on_the_wire() {
        let spec = VirtualServiceSpec {
            http: Some(vec![HttpRoute {
                r#match: Some(vec![HttpMatchRequest {
                    uri: Some(StringMatch::Exact("/".into())),
                    ..Default::default()
                }]),
                rewrite: Some(HttpRewrite {
                    uri_regex_rewrite: Some(RegexRewrite {
                        r#match: Some("^/a".into()),
                        rewrite: Some("/b".into()),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            tls: Some(vec![TlsRoute {
                r#match: Some(vec![TlsMatchAttributes::default()]),
                route: None,
            }]),
            tcp: Some(vec![TcpRoute {
                r#match: Some(vec![L4MatchAttributes::default()]),
                route: None,
            }]),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            json!({
                "http": [{
                    "match": [{"uri": {"exact": "/"}}],
                    "rewrite": {"uriRegexRewrite": {"match": "^/a", "rewrite": "/b"}}
                }],
                "tls": [{"match": [{}]}],
                "tcp": [{"match": [{}]}]
            })
        );
        let err = spec_error(json!({"http": [{"matches": []}]}));
        assert!(err.contains("matches"), "{err}");
    }

    // Shapes of istio/istio samples/bookinfo/networking/*.yaml, as JSON.
    #[test]
    fn bookinfo_sample_shapes_parse_and_round_trip() {
        let gateway_vs = json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "bookinfo"},
            "spec": {
                "hosts": ["*"],
                "gateways": ["bookinfo-gateway"],
                "http": [{
                    "match": [
                        {"uri": {"exact": "/productpage"}},
                        {"uri": {"prefix": "/static"}},
                        {"uri": {"exact": "/login"}},
                        {"uri": {"exact": "/logout"}},
                        {"uri": {"prefix": "/api/v1/products"}}
                    ],
                    "route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}]
                }]
            }
        });
        let vs: VirtualService = serde_json::from_value(gateway_vs.clone()).unwrap();
        assert_eq!(vs.metadata.name.as_deref(), Some("bookinfo"));
        assert_eq!(
            vs.spec.http.as_ref().unwrap()[0]
                .r#match
                .as_ref()
                .unwrap()
                .len(),
            5
        );
        assert_eq!(serde_json::to_value(&vs).unwrap(), gateway_vs);

        // virtual-service-ratings-test-abort.yaml
        let abort = json!({
            "hosts": ["ratings"],
            "http": [
                {
                    "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                    "fault": {"abort": {"percentage": {"value": 100.0}, "httpStatus": 500}},
                    "route": [{"destination": {"host": "ratings", "subset": "v1"}}]
                },
                {"route": [{"destination": {"host": "ratings", "subset": "v1"}}]}
            ]
        });
        assert_eq!(round_trip_spec(&abort), abort);

        // virtual-service-ratings-test-delay.yaml
        let delay = json!({
            "hosts": ["ratings"],
            "http": [
                {
                    "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                    "fault": {"delay": {"percentage": {"value": 100.0}, "fixedDelay": "7s"}},
                    "route": [{"destination": {"host": "ratings", "subset": "v1"}}]
                },
                {"route": [{"destination": {"host": "ratings", "subset": "v1"}}]}
            ]
        });
        let spec: VirtualServiceSpec = serde_json::from_value(delay.clone()).unwrap();
        let fault_delay = spec.http.as_ref().unwrap()[0]
            .fault
            .as_ref()
            .unwrap()
            .delay
            .as_ref()
            .unwrap();
        assert_eq!(fault_delay.fixed_delay.as_deref(), Some("7s"));
        assert_eq!(serde_json::to_value(&spec).unwrap(), delay);

        // virtual-service-reviews-80-20.yaml
        let split = json!({
            "hosts": ["reviews"],
            "http": [{"route": [
                {"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
                {"destination": {"host": "reviews", "subset": "v2"}, "weight": 20}
            ]}]
        });
        assert_eq!(round_trip_spec(&split), split);

        // fault-injection-details-v1.yaml writes `value: 100` as an integer;
        // it must come back as `100`, not `100.0`.
        let details = json!({
            "hosts": ["details"],
            "http": [
                {
                    "fault": {"abort": {"httpStatus": 555, "percentage": {"value": 100}}},
                    "route": [{"destination": {"host": "details", "subset": "v1"}}]
                },
                {"route": [{"destination": {"host": "details", "subset": "v1"}}]}
            ]
        });
        assert_eq!(round_trip_spec(&details), details);
        let spec: VirtualServiceSpec = serde_json::from_value(details).unwrap();
        let abort = spec.http.as_ref().unwrap()[0]
            .fault
            .as_ref()
            .unwrap()
            .abort
            .as_ref()
            .unwrap();
        assert_eq!(abort.http_status, Some(555));
        let percent = abort.percentage.as_ref().unwrap().value.as_ref().unwrap();
        assert_eq!(percent.as_f64(), 100.0);
    }

    #[test]
    fn unknown_enum_values_are_rejected_naming_the_value() {
        let err = spec_error(json!({"http": [{"redirect": {"derivePort": "FROM_NOWHERE"}}]}));
        assert!(err.contains("FROM_NOWHERE"), "{err}");
        let err = spec_error(json!({"http": [{"corsPolicy": {"unmatchedPreflights": "DROP"}}]}));
        assert!(err.contains("DROP"), "{err}");
        // Enum names are case-sensitive, as in Istio.
        let err = spec_error(json!({"http": [{"corsPolicy": {"unmatchedPreflights": "ignore"}}]}));
        assert!(err.contains("ignore"), "{err}");
    }

    #[test]
    fn whole_message_oneofs_take_exactly_one_key() {
        // HTTPBody: string or bytes, not both, not neither.
        let err = spec_error(
            json!({"http": [{"directResponse": {"status": 200, "body": {"string": "a", "bytes": "Yg=="}}}]}),
        );
        assert!(!err.is_empty());
        assert!(
            serde_json::from_value::<VirtualServiceSpec>(
                json!({"http": [{"directResponse": {"status": 200, "body": {}}}]})
            )
            .is_err()
        );
        let err = spec_error(json!({"http": [{"directResponse": {"body": {"text": "a"}}}]}));
        assert!(err.contains("text"), "{err}");
        // Header and query conditions: one key, or `{}` for presence.
        let err = spec_error(json!({
            "http": [{"match": [{"headers": {"x": {"exact": "a", "prefix": "b"}}}]}]
        }));
        assert!(err.contains("at most one"), "{err}");
        let err =
            spec_error(json!({"http": [{"match": [{"queryParams": {"q": {"suffix": "b"}}}]}]}));
        assert!(err.contains("suffix"), "{err}");
        let spec: VirtualServiceSpec = serde_json::from_value(json!({
            "http": [{"match": [{
                "headers": {"x-a": {}, "x-b": {"prefix": "p"}},
                "withoutHeaders": {"x-c": {}}
            }]}]
        }))
        .unwrap();
        let http = spec.http.unwrap();
        let m = &http[0].r#match.as_ref().unwrap()[0];
        let headers = m.headers.as_ref().unwrap();
        assert_eq!(headers["x-a"], HeaderMatch::Present);
        assert_eq!(
            headers["x-b"],
            HeaderMatch::Value(StringMatch::Prefix("p".into()))
        );
        assert_eq!(
            m.without_headers.as_ref().unwrap()["x-c"],
            HeaderMatch::Present
        );
        // Other StringMatch fields need exactly one key.
        assert!(
            serde_json::from_value::<VirtualServiceSpec>(
                json!({"http": [{"match": [{"uri": {}}]}]})
            )
            .is_err()
        );
        let err =
            spec_error(json!({"http": [{"corsPolicy": {"allowOrigins": [{"suffix": ".com"}]}}]}));
        assert!(err.contains("suffix"), "{err}");
    }

    #[test]
    fn mixed_oneof_fields_parse_side_by_side() {
        // Exclusivity of port/derivePort, fixedDelay/exponentialDelay and
        // httpStatus/grpcStatus/http2Error is left to validation.
        let input = json!({"http": [{
            "redirect": {"port": 8080, "derivePort": "FROM_REQUEST_PORT"},
            "fault": {
                "delay": {"fixedDelay": "1s", "exponentialDelay": "2s"},
                "abort": {"httpStatus": 500, "grpcStatus": "INTERNAL", "http2Error": "CANCEL"}
            }
        }]});
        assert_eq!(round_trip_spec(&input), input);
    }

    #[test]
    fn wrong_types_and_unknown_fields_are_rejected() {
        // weight is a number, not a string.
        let err = spec_error(
            json!({"http": [{"route": [{"destination": {"host": "a"}, "weight": "50"}]}]}),
        );
        assert!(err.contains("50"), "{err}");
        // weight is int32: a fraction or an out-of-range number fails.
        assert!(
            serde_json::from_value::<VirtualServiceSpec>(
                json!({"http": [{"route": [{"weight": 1.5}]}]})
            )
            .is_err()
        );
        let err = spec_error(json!({"tcp": [{"route": [{"weight": 3_000_000_000_u64}]}]}));
        assert!(err.contains("3000000000"), "{err}");
        // Ports and status codes are unsigned.
        let err = spec_error(json!({"http": [{"match": [{"port": -1}]}]}));
        assert!(err.contains("-1"), "{err}");
        assert!(
            serde_json::from_value::<VirtualServiceSpec>(
                json!({"http": [{"directResponse": {"status": -200}}]})
            )
            .is_err()
        );
        // Durations are strings, never numbers.
        assert!(
            serde_json::from_value::<VirtualServiceSpec>(json!({"http": [{"timeout": 5}]}))
                .is_err()
        );
        // hosts is a list.
        assert!(serde_json::from_value::<VirtualServiceSpec>(json!({"hosts": "reviews"})).is_err());
        // Removed Istio fields and typos are rejected, naming the field.
        let err = spec_error(json!({"http": [{"websocketUpgrade": true}]}));
        assert!(err.contains("websocketUpgrade"), "{err}");
        let err = spec_error(json!({"http": [{"retries": {"attempt": 3}}]}));
        assert!(err.contains("attempt"), "{err}");
        let err = spec_error(json!({"tls": [{"match": [{"sniHost": ["a"]}]}]}));
        assert!(err.contains("sniHost"), "{err}");
        // Header values of HeaderOperations are strings.
        assert!(
            serde_json::from_value::<VirtualServiceSpec>(
                json!({"http": [{"headers": {"request": {"set": {"test": true}}}}]})
            )
            .is_err()
        );
    }

    #[test]
    fn parse_errors_name_the_field_path() {
        let doc = json!({"http": [{"route": [
            {"destination": {"host": "a"}, "weight": 50},
            {"destination": {"host": "b"}, "weight": "x"}
        ]}]});
        let err = crate::parse::from_value::<VirtualServiceSpec>(&doc).unwrap_err();
        assert_eq!(err.path(), Some("http[0].route[1].weight"));
    }

    #[test]
    fn crd_has_istio_names_and_printer_columns() {
        let crd = VirtualService::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("virtualservices.networking.istio.io")
        );
        assert_eq!(crd.spec.names.short_names, Some(vec!["vs".to_string()]));
        assert_eq!(
            crd.spec.names.categories,
            Some(vec![
                "istio-io".to_string(),
                "networking-istio-io".to_string()
            ])
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1");
        let columns: Vec<(&str, &str, &str)> = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| (c.name.as_str(), c.type_.as_str(), c.json_path.as_str()))
            .collect();
        assert_eq!(
            columns,
            vec![
                ("Gateways", "string", ".spec.gateways"),
                ("Hosts", "string", ".spec.hosts"),
                ("Age", "date", ".metadata.creationTimestamp"),
            ]
        );
        // The generated schema names the wire fields, including both
        // spellings of the deprecated mirror percent.
        let schema = serde_json::to_value(&version.schema).unwrap();
        let http = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["http"]["items"]
            ["properties"];
        for key in [
            "match",
            "mirrorPercent",
            "mirror_percent",
            "directResponse",
            "mirrors",
        ] {
            assert!(http.get(key).is_some(), "schema lacks http.{key}");
        }
    }
}
