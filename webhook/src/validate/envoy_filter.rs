//! EnvoyFilter patches that would break or silently miss the proxies they
//! target.
//!
//! An EnvoyFilter is raw Envoy configuration spliced into what the control
//! plane generates: a wrong patch does not fail at `kubectl apply`, it fails
//! later in every proxy that receives it (Envoy rejects the whole listener
//! or cluster update) or, worse, it is ignored without a word. The rules
//! here catch the known classes of such patches at admission.
//!
//! Codes (stable; documented for `meshctl analyze`):
//!
//! | code   | severity | rule |
//! |--------|----------|------|
//! | MK0301 | error    | no patches, or a patch without `applyTo`, `operation` or `value` (`value` is optional for `REMOVE`) |
//! | MK0302 | error    | `proxyVersion` is not a valid (size-bounded) RE2 regex |
//! | MK0303 | error    | `REMOVE`/`REPLACE` of the HTTP connection manager or the router filter |
//! | MK0304 | error    | `REMOVE`/`REPLACE` of the virtual inbound/outbound listener |
//! | MK0305 | error    | an operation Istio ignores for the chosen `applyTo` |
//! | MK0306 | error    | an HTTP filter inserted after the router |
//! | MK0307 | error    | a mesh-wide EnvoyFilter without the acknowledgement annotation |
//! | MK0308 | error    | Lua filter with empty inline code |
//! | MK0309 | error    | Lua inline code calling `os.execute`, `io.popen`, `loadstring`, `load` or `dofile` |
//! | MK0310 | error    | Wasm module fetched over plain `http://` |
//! | MK0311 | error    | remote Wasm module without a `sha256` |
//! | MK0312 | error    | `typed_config` without `@type` |
//! | MK0313 | error/warning | `typed_config` type: an error when certainly unresolvable (malformed URL, Envoy's removed v2 API, a package no control plane or Envoy links); a warning for a type outside meshkeeper's list, which is then not checked |
//! | MK0314 | error/warning | deprecated Envoy filter name: an error for a filter added by `patch.value.name` without a `typed_config` (Envoy rejects it); a warning in a `match` (the patch finds nothing) or beside a `typed_config` (Envoy selects by type) |
//! | MK0315 | warning  | `INSERT_BEFORE`/`INSERT_AFTER` without a `spec.priority` |
//! | MK0316 | warning  | a patch matching on `proxyVersion` |
//!
//! Virtual listeners (MK0304): a `LISTENER` patch targets them when its
//! listener match names `virtualInbound`/`virtualOutbound`, or matches port
//! 15006/15001 (the ports those listeners bind on sidecars), or has no name
//! and no port at all (it then matches every listener, the virtual ones
//! included). The context is not considered: the cost of a false alarm on a
//! gateway-only patch is small next to a sidecar losing all its traffic.

use meshkeeper_crds::networking::envoy_filter::{
    ApplyTo, EnvoyConfigObjectPatch, EnvoyFilter, FilterMatch, ListenerMatch, PatchOperation,
};
use serde_json::{Map, Value};

use super::{Check, Finding};

/// Annotation (with value [`MESH_WIDE_ACK_VALUE`]) that lets an EnvoyFilter in
/// the root namespace apply to every proxy of the mesh.
pub const MESH_WIDE_ACK_ANNOTATION: &str = "meshkeeper.io/mesh-wide-envoyfilter";
pub const MESH_WIDE_ACK_VALUE: &str = "acknowledged";

const HCM: &str = "envoy.filters.network.http_connection_manager";
const ROUTER: &str = "envoy.filters.http.router";
const VIRTUAL_INBOUND: &str = "virtualInbound";
const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
const VIRTUAL_INBOUND_PORT: u32 = 15006;
const VIRTUAL_OUTBOUND_PORT: u32 = 15001;

/// Compiled-program bound for `proxyVersion`, so a hostile pattern cannot
/// make the webhook (or the control plane, which compiles it too) allocate
/// without limit.
const PROXY_VERSION_REGEX_SIZE_LIMIT: usize = 64 * 1024;

const LUA_TYPE: &str = "envoy.extensions.filters.http.lua.v3.Lua";
const HTTP_WASM_TYPE: &str = "envoy.extensions.filters.http.wasm.v3.Wasm";
const NETWORK_WASM_TYPE: &str = "envoy.extensions.filters.network.wasm.v3.Wasm";
const TYPED_STRUCT_TYPES: [&str; 2] = ["udpa.type.v1.TypedStruct", "xds.type.v3.TypedStruct"];

/// Protobuf message names (the part of a type URL after the last `/`) that
/// Envoy, as shipped with Istio, knows and meshkeeper checks without a
/// warning. Grouped by what they configure. Not exhaustive: another type is
/// admitted with a warning (MK0313) unless it is certainly unresolvable;
/// add to it when users need another extension.
const KNOWN_TYPES: &[&str] = &[
    // Core xDS resources (patch values of LISTENER, CLUSTER, ... and ECDS).
    "envoy.config.bootstrap.v3.Bootstrap",
    "envoy.config.cluster.v3.Cluster",
    "envoy.config.listener.v3.Listener",
    "envoy.config.listener.v3.FilterChain",
    "envoy.config.route.v3.RouteConfiguration",
    "envoy.config.route.v3.VirtualHost",
    "envoy.config.route.v3.Route",
    "envoy.config.core.v3.TypedExtensionConfig",
    // Network filters.
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
    "envoy.extensions.filters.network.rbac.v3.RBAC",
    "envoy.extensions.filters.network.ext_authz.v3.ExtAuthz",
    "envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit",
    "envoy.extensions.filters.network.ratelimit.v3.RateLimit",
    "envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit",
    "envoy.extensions.filters.network.redis_proxy.v3.RedisProxy",
    "envoy.extensions.filters.network.wasm.v3.Wasm",
    // Listener filters.
    "envoy.extensions.filters.listener.original_dst.v3.OriginalDst",
    "envoy.extensions.filters.listener.original_src.v3.OriginalSrc",
    "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
    "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector",
    "envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol",
    // HTTP filters (and their per-route configuration).
    "envoy.extensions.filters.http.router.v3.Router",
    "envoy.extensions.filters.http.lua.v3.Lua",
    "envoy.extensions.filters.http.lua.v3.LuaPerRoute",
    "envoy.extensions.filters.http.wasm.v3.Wasm",
    "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
    "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
    "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
    "envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
    "envoy.extensions.filters.http.rbac.v3.RBAC",
    "envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
    "envoy.extensions.filters.http.fault.v3.HTTPFault",
    "envoy.extensions.filters.http.cors.v3.Cors",
    "envoy.extensions.filters.http.cors.v3.CorsPolicy",
    "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
    "envoy.extensions.filters.http.ratelimit.v3.RateLimit",
    "envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute",
    "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
    "envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig",
    "envoy.extensions.filters.http.header_to_metadata.v3.Config",
    "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
    "envoy.extensions.filters.http.set_metadata.v3.Config",
    "envoy.extensions.filters.http.compressor.v3.Compressor",
    "envoy.extensions.filters.http.compressor.v3.CompressorPerRoute",
    "envoy.extensions.filters.http.decompressor.v3.Decompressor",
    "envoy.extensions.filters.http.buffer.v3.Buffer",
    "envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
    "envoy.extensions.filters.http.grpc_web.v3.GrpcWeb",
    "envoy.extensions.filters.http.grpc_stats.v3.FilterConfig",
    "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
    "envoy.extensions.filters.http.health_check.v3.HealthCheck",
    "envoy.extensions.filters.http.tap.v3.Tap",
    "envoy.extensions.filters.http.csrf.v3.CsrfPolicy",
    "envoy.extensions.filters.http.oauth2.v3.OAuth2",
    // Compression libraries used by the compressor/decompressor filters.
    "envoy.extensions.compression.gzip.compressor.v3.Gzip",
    "envoy.extensions.compression.gzip.decompressor.v3.Gzip",
    "envoy.extensions.compression.brotli.compressor.v3.Brotli",
    "envoy.extensions.compression.brotli.decompressor.v3.Brotli",
    "envoy.extensions.compression.zstd.compressor.v3.Zstd",
    "envoy.extensions.compression.zstd.decompressor.v3.Zstd",
    // Transport sockets, access loggers, upstream options.
    "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
    "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
    "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
    "envoy.extensions.access_loggers.file.v3.FileAccessLog",
    "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
    "envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
    "envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
    "envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig",
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    // Istio's own extensions built into its proxy.
    "stats.PluginConfig",
    "io.istio.http.peer_metadata.Config",
    // Generic wrappers.
    "udpa.type.v1.TypedStruct",
    "xds.type.v3.TypedStruct",
    "google.protobuf.Struct",
    "google.protobuf.StringValue",
];

/// Names Envoy dropped, and what replaced them.
const DEPRECATED_NAMES: &[(&str, &str)] = &[
    ("envoy.router", "envoy.filters.http.router"),
    (
        "envoy.http_connection_manager",
        "envoy.filters.network.http_connection_manager",
    ),
    ("envoy.tcp_proxy", "envoy.filters.network.tcp_proxy"),
    ("envoy.lua", "envoy.filters.http.lua"),
    ("envoy.cors", "envoy.filters.http.cors"),
    ("envoy.fault", "envoy.filters.http.fault"),
    (
        "envoy.ext_authz",
        "envoy.filters.http.ext_authz (HTTP) or envoy.filters.network.ext_authz (network)",
    ),
    ("envoy.rate_limit", "envoy.filters.http.ratelimit"),
    ("envoy.ratelimit", "envoy.filters.network.ratelimit"),
    ("envoy.buffer", "envoy.filters.http.buffer"),
    ("envoy.grpc_web", "envoy.filters.http.grpc_web"),
    ("envoy.health_check", "envoy.filters.http.health_check"),
    (
        "envoy.gzip",
        "envoy.filters.http.compressor (with the gzip compressor library)",
    ),
    (
        "envoy.filters.http.gzip",
        "envoy.filters.http.compressor (with the gzip compressor library)",
    ),
    (
        "envoy.listener.tls_inspector",
        "envoy.filters.listener.tls_inspector",
    ),
    (
        "envoy.listener.original_dst",
        "envoy.filters.listener.original_dst",
    ),
    (
        "envoy.listener.http_inspector",
        "envoy.filters.listener.http_inspector",
    ),
    (
        "envoy.listener.proxy_protocol",
        "envoy.filters.listener.proxy_protocol",
    ),
];

/// Lua functions that run programs, or load and run code that the filter
/// configuration does not show.
const DANGEROUS_LUA_CALLS: &[&str] = &["os.execute", "io.popen", "loadstring", "load", "dofile"];

/// Every finding for one EnvoyFilter. `root_namespace` is the mesh's config
/// root namespace (where a selector-less EnvoyFilter applies mesh-wide).
pub fn validate(filter: &EnvoyFilter, root_namespace: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    check_mesh_wide(filter, root_namespace, &mut findings);
    let patches = filter.spec.config_patches.as_deref().unwrap_or_default();
    if patches.is_empty() {
        findings.push(error(
            "MK0301",
            "spec.configPatches",
            "the EnvoyFilter has no configPatches, so it changes nothing; add at least one \
             patch with applyTo, match and patch (operation and value)",
        ));
    }
    let has_priority = filter.spec.priority.is_some_and(|p| p != 0);
    for (index, patch) in patches.iter().enumerate() {
        let path = format!("spec.configPatches[{index}]");
        check_patch(patch, &path, has_priority, &mut findings);
    }
    findings
}

fn error(code: &'static str, path: impl Into<String>, message: impl Into<String>) -> Finding {
    Finding::error(Check::EnvoyFilters, code, path, message)
}

fn warning(code: &'static str, path: impl Into<String>, message: impl Into<String>) -> Finding {
    Finding::warning(Check::EnvoyFilters, code, path, message)
}

fn check_patch(
    patch: &EnvoyConfigObjectPatch,
    path: &str,
    has_priority: bool,
    out: &mut Vec<Finding>,
) {
    check_required_fields(patch, path, out);
    check_proxy_version(patch, path, out);
    check_deprecated_match_names(patch, path, out);

    let apply_to = patch.apply_to.filter(|a| *a != ApplyTo::Invalid);
    let operation = operation_of(patch);
    if let (Some(apply_to), Some(operation)) = (apply_to, operation) {
        let op_path = format!("{path}.patch.operation");
        check_operation_supported(apply_to, operation, &op_path, out);
        check_core_filter_removal(patch, apply_to, operation, &op_path, out);
        check_virtual_listener_removal(patch, apply_to, operation, &op_path, out);
        check_insert_after_router(patch, apply_to, operation, &op_path, out);
        check_relative_without_priority(operation, has_priority, &op_path, out);
        if let Some(value) = patch.patch.as_ref().and_then(|p| p.value.as_ref()) {
            check_deprecated_value_name(apply_to, &value.0, path, out);
        }
    }
    if let Some(value) = patch.patch.as_ref().and_then(|p| p.value.as_ref()) {
        walk_value(&value.0, &format!("{path}.patch.value"), out);
    }
}

fn operation_of(patch: &EnvoyConfigObjectPatch) -> Option<PatchOperation> {
    patch
        .patch
        .as_ref()
        .and_then(|p| p.operation)
        .filter(|o| *o != PatchOperation::Invalid)
}

/// Spelling of an enum value as written in YAML (`HTTP_FILTER`).
fn spelled<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => "?".to_owned(),
    }
}

// ---- MK0301: required fields ------------------------------------------------

fn check_required_fields(patch: &EnvoyConfigObjectPatch, path: &str, out: &mut Vec<Finding>) {
    match patch.apply_to {
        None => out.push(error(
            "MK0301",
            format!("{path}.applyTo"),
            "the patch has no applyTo, so Istio cannot tell which Envoy object it changes and \
             ignores it; set applyTo (e.g. HTTP_FILTER, NETWORK_FILTER, CLUSTER)",
        )),
        Some(ApplyTo::Invalid) => out.push(error(
            "MK0301",
            format!("{path}.applyTo"),
            "applyTo is INVALID, which Istio ignores; set the kind of Envoy object to patch \
             (e.g. HTTP_FILTER, NETWORK_FILTER, CLUSTER)",
        )),
        Some(_) => {}
    }
    let Some(body) = patch.patch.as_ref() else {
        out.push(error(
            "MK0301",
            format!("{path}.patch"),
            "the patch has no patch section, so it does nothing; add patch.operation (and \
             patch.value unless the operation is REMOVE)",
        ));
        return;
    };
    match body.operation {
        None | Some(PatchOperation::Invalid) => out.push(error(
            "MK0301",
            format!("{path}.patch.operation"),
            format!(
                "patch.operation is {}, which Istio ignores; set MERGE, ADD, REMOVE, \
                 INSERT_BEFORE, INSERT_AFTER, INSERT_FIRST, REPLACE or MERGE_AND_REPLACE_LIST",
                body.operation.map_or("missing".to_owned(), |o| spelled(&o))
            ),
        )),
        Some(PatchOperation::Remove) => {}
        Some(op) => {
            if body.value.as_ref().is_none_or(|v| v.0.is_empty()) {
                out.push(error(
                    "MK0301",
                    format!("{path}.patch.value"),
                    format!(
                        "patch.value is missing or empty, but operation {} needs the Envoy \
                         configuration to apply; add patch.value (only REMOVE works without one)",
                        spelled(&op)
                    ),
                ));
            }
        }
    }
}

// ---- MK0302 / MK0316: proxyVersion ------------------------------------------

fn check_proxy_version(patch: &EnvoyConfigObjectPatch, path: &str, out: &mut Vec<Finding>) {
    let Some(version) = patch
        .r#match
        .as_ref()
        .and_then(|m| m.proxy.as_ref())
        .and_then(|p| p.proxy_version.as_deref())
    else {
        return;
    };
    let field = format!("{path}.match.proxy.proxyVersion");
    if let Err(err) = regex::RegexBuilder::new(version)
        .size_limit(PROXY_VERSION_REGEX_SIZE_LIMIT)
        .build()
    {
        out.push(error(
            "MK0302",
            field.clone(),
            format!(
                "proxyVersion {version:?} is not a valid RE2 regular expression of bounded size \
                 ({}); the control plane cannot match it, so the patch never applies. Write an \
                 RE2 regex such as '^1\\.2[0-9].*'",
                single_line(&err.to_string())
            ),
        ));
    }
    out.push(warning(
        "MK0316",
        field,
        format!(
            "the patch only applies to proxies whose version matches {version:?}: after an \
             upgrade it silently stops applying (or starts applying in a different order). \
             Prefer no proxyVersion, and review the EnvoyFilter on every upgrade if you keep it"
        ),
    ));
}

/// Regex errors come with a multi-line caret diagram; a finding is one line.
fn single_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---- MK0305: operations Istio ignores for the applyTo ------------------------

/// Whether Istio applies `operation` to objects of kind `apply_to`; the
/// others are dropped without an error.
fn operation_supported(apply_to: ApplyTo, operation: PatchOperation) -> bool {
    use PatchOperation::*;
    let merge_like = matches!(operation, Merge | MergeAndReplaceList);
    match apply_to {
        // Filters: the full set, order matters.
        ApplyTo::HttpFilter | ApplyTo::NetworkFilter | ApplyTo::ListenerFilter => true,
        // Routes are ordered but never added to or removed from the route list.
        ApplyTo::HttpRoute => {
            merge_like || matches!(operation, InsertBefore | InsertAfter | InsertFirst)
        }
        ApplyTo::VirtualHost => merge_like || matches!(operation, Add | Remove | Replace),
        ApplyTo::Listener | ApplyTo::FilterChain | ApplyTo::Cluster => {
            merge_like || matches!(operation, Add | Remove)
        }
        ApplyTo::ExtensionConfig => merge_like || operation == Add,
        ApplyTo::RouteConfiguration | ApplyTo::Bootstrap => merge_like,
        ApplyTo::Invalid => true, // reported by MK0301
    }
}

fn check_operation_supported(
    apply_to: ApplyTo,
    operation: PatchOperation,
    op_path: &str,
    out: &mut Vec<Finding>,
) {
    if operation_supported(apply_to, operation) {
        return;
    }
    let supported: Vec<String> = [
        PatchOperation::Merge,
        PatchOperation::Add,
        PatchOperation::Remove,
        PatchOperation::InsertBefore,
        PatchOperation::InsertAfter,
        PatchOperation::InsertFirst,
        PatchOperation::Replace,
        PatchOperation::MergeAndReplaceList,
    ]
    .into_iter()
    .filter(|op| operation_supported(apply_to, *op))
    .map(|op| spelled(&op))
    .collect();
    out.push(error(
        "MK0305",
        op_path,
        format!(
            "operation {} is silently ignored by Istio for applyTo {}, so this patch would \
             never take effect; use one of {} for {}, or change applyTo",
            spelled(&operation),
            spelled(&apply_to),
            supported.join(", "),
            spelled(&apply_to),
        ),
    ));
}

// ---- MK0303: REMOVE/REPLACE of the HTTP connection manager or router ---------

/// The filter match of a patch: under `listener.filterChain`, or `waypoint`.
fn filter_match(patch: &EnvoyConfigObjectPatch) -> Option<&FilterMatch> {
    let m = patch.r#match.as_ref()?;
    m.listener
        .as_ref()
        .and_then(|l| l.filter_chain.as_ref())
        .and_then(|c| c.filter.as_ref())
        .or_else(|| m.waypoint.as_ref().and_then(|w| w.filter.as_ref()))
}

fn filter_name(patch: &EnvoyConfigObjectPatch) -> Option<&str> {
    filter_match(patch)
        .and_then(|f| f.name.as_deref())
        .filter(|n| !n.is_empty())
}

fn sub_filter_name(patch: &EnvoyConfigObjectPatch) -> Option<&str> {
    filter_match(patch)
        .and_then(|f| f.sub_filter.as_ref())
        .and_then(|s| s.name.as_deref())
        .filter(|n| !n.is_empty())
}

fn is_named(name: &str, current: &str) -> bool {
    name == current || canonical_name(name) == Some(current)
}

/// The current name for a deprecated one, when it maps to exactly one.
fn canonical_name(name: &str) -> Option<&'static str> {
    DEPRECATED_NAMES
        .iter()
        .find(|(old, _)| *old == name)
        .map(|(_, new)| *new)
        .filter(|new| !new.contains(' '))
}

fn check_core_filter_removal(
    patch: &EnvoyConfigObjectPatch,
    apply_to: ApplyTo,
    operation: PatchOperation,
    op_path: &str,
    out: &mut Vec<Finding>,
) {
    if !matches!(operation, PatchOperation::Remove | PatchOperation::Replace) {
        return;
    }
    let op = spelled(&operation);
    let target = match apply_to {
        ApplyTo::NetworkFilter => match filter_name(patch) {
            Some(name) if is_named(name, HCM) => format!("the HTTP connection manager ({name})"),
            Some(_) => return,
            None => format!("every network filter, the HTTP connection manager ({HCM}) included"),
        },
        ApplyTo::HttpFilter => match sub_filter_name(patch) {
            Some(name) if is_named(name, ROUTER) => format!("the router filter ({name})"),
            Some(_) => return,
            None => format!("every HTTP filter, the router ({ROUTER}) included"),
        },
        _ => return,
    };
    out.push(error(
        "MK0303",
        op_path,
        format!(
            "{op} of {target}: without it the proxy cannot route any HTTP request and all \
             traffic through the matched listeners fails; match the specific filter you mean \
             to change (filterChain.filter.name / subFilter.name), or use MERGE to adjust its \
             settings"
        ),
    ));
}

// ---- MK0304: REMOVE/REPLACE of the virtual listeners ------------------------

/// Which virtual listener(s) a listener match selects, if any.
fn virtual_listener_target(listener: Option<&ListenerMatch>) -> Option<String> {
    let name = listener
        .and_then(|l| l.name.as_deref())
        .filter(|n| !n.is_empty());
    let port = listener.and_then(|l| l.port_number).filter(|p| *p != 0);
    match (name, port) {
        (Some(n @ (VIRTUAL_INBOUND | VIRTUAL_OUTBOUND)), _) => Some(format!("listener {n}")),
        (Some(_), _) => None,
        (None, Some(VIRTUAL_INBOUND_PORT)) => Some(format!(
            "the listener on port {VIRTUAL_INBOUND_PORT} ({VIRTUAL_INBOUND})"
        )),
        (None, Some(VIRTUAL_OUTBOUND_PORT)) => Some(format!(
            "the listener on port {VIRTUAL_OUTBOUND_PORT} ({VIRTUAL_OUTBOUND})"
        )),
        (None, Some(_)) => None,
        // Narrowed by filter chain or listener filter: not provably the
        // virtual listeners, so left alone.
        (None, None)
            if listener
                .is_some_and(|l| l.filter_chain.is_some() || l.listener_filter.is_some()) =>
        {
            None
        }
        (None, None) => Some(format!(
            "every listener, {VIRTUAL_INBOUND} and {VIRTUAL_OUTBOUND} included"
        )),
    }
}

fn check_virtual_listener_removal(
    patch: &EnvoyConfigObjectPatch,
    apply_to: ApplyTo,
    operation: PatchOperation,
    op_path: &str,
    out: &mut Vec<Finding>,
) {
    if apply_to != ApplyTo::Listener
        || !matches!(operation, PatchOperation::Remove | PatchOperation::Replace)
    {
        return;
    }
    let listener = patch.r#match.as_ref().and_then(|m| m.listener.as_ref());
    if let Some(target) = virtual_listener_target(listener) {
        out.push(error(
            "MK0304",
            op_path,
            format!(
                "{} of {target}: the sidecar captures all inbound (port {VIRTUAL_INBOUND_PORT}) \
                 and outbound (port {VIRTUAL_OUTBOUND_PORT}) traffic through these listeners, so \
                 the workload loses its traffic; patch a specific listener, filter chain or \
                 filter instead",
                spelled(&operation)
            ),
        ));
    }
}

// ---- MK0306: a filter inserted after the router ------------------------------

fn check_insert_after_router(
    patch: &EnvoyConfigObjectPatch,
    apply_to: ApplyTo,
    operation: PatchOperation,
    op_path: &str,
    out: &mut Vec<Finding>,
) {
    if apply_to != ApplyTo::HttpFilter || operation != PatchOperation::InsertAfter {
        return;
    }
    let anchor = match sub_filter_name(patch) {
        Some(name) if is_named(name, ROUTER) => format!("after the router ({name})"),
        Some(_) => return,
        // Without an anchor, INSERT_AFTER appends: behind the router.
        None => "at the end of the HTTP filter chain, after the router, because no \
                 subFilter is matched"
            .to_owned(),
    };
    out.push(error(
        "MK0306",
        op_path,
        format!(
            "INSERT_AFTER places the filter {anchor}; the router is the terminal HTTP filter, so \
             a filter behind it never runs (Envoy rejects the listener); use INSERT_BEFORE with \
             subFilter.name {ROUTER}"
        ),
    ));
}

// ---- MK0315: relative operations without a priority -------------------------

fn check_relative_without_priority(
    operation: PatchOperation,
    has_priority: bool,
    op_path: &str,
    out: &mut Vec<Finding>,
) {
    // INSERT_FIRST is not here: it puts the filter first whatever else is
    // in place, so the order among EnvoyFilters does not change its result.
    let relative = matches!(
        operation,
        PatchOperation::InsertBefore | PatchOperation::InsertAfter
    );
    if relative && !has_priority {
        out.push(warning(
            "MK0315",
            op_path,
            format!(
                "{} depends on the filters already in place, and without spec.priority the \
                 order among EnvoyFilters falls back to creation time, which changes when \
                 objects are recreated; set a non-zero spec.priority",
                spelled(&operation)
            ),
        ));
    }
}

// ---- MK0307: mesh-wide EnvoyFilter -------------------------------------------

fn check_mesh_wide(filter: &EnvoyFilter, root_namespace: &str, out: &mut Vec<Finding>) {
    if filter.metadata.namespace.as_deref() != Some(root_namespace) {
        return;
    }
    let spec = &filter.spec;
    let selects = spec
        .workload_selector
        .as_ref()
        .and_then(|s| s.labels.as_ref())
        .is_some_and(|l| !l.is_empty());
    let targets = spec.target_refs.as_ref().is_some_and(|t| !t.is_empty());
    if selects || targets {
        return;
    }
    let ack = filter
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MESH_WIDE_ACK_ANNOTATION));
    if ack.map(String::as_str) == Some(MESH_WIDE_ACK_VALUE) {
        return;
    }
    let current = match ack {
        Some(value) => format!(" (the annotation is set to {value:?}, not the accepted value)"),
        None => String::new(),
    };
    out.push(error(
        "MK0307",
        "spec.workloadSelector",
        format!(
            "this EnvoyFilter is in the root namespace {root_namespace:?} with no workloadSelector \
             and no targetRefs, so it patches every proxy in the mesh and one mistake breaks all \
             traffic{current}; add a workloadSelector or targetRefs, or, if mesh-wide is intended, \
             annotate it with {MESH_WIDE_ACK_ANNOTATION}: \"{MESH_WIDE_ACK_VALUE}\""
        ),
    ));
}

// ---- MK0314: deprecated names -----------------------------------------------

fn deprecated_replacement(name: &str) -> Option<&'static str> {
    DEPRECATED_NAMES
        .iter()
        .find(|(old, _)| *old == name)
        .map(|(_, new)| *new)
}

/// A filter added by its old name alone: without a `typed_config` Envoy has
/// only the name to pick the extension by, and current Envoy no longer
/// knows the old names, so it rejects the listener (traffic breaks for
/// certain, hence an error).
fn deprecated_untyped_value_finding(name: &str, path: String) -> Option<Finding> {
    let replacement = deprecated_replacement(name)?;
    Some(error(
        "MK0314",
        path,
        format!(
            "{name:?} is a deprecated Envoy filter name and the filter has no typed_config: \
             current Envoy no longer knows the name, so without a typed_config it cannot tell \
             which filter to build and rejects the configuration; use {replacement} and add its \
             typed_config"
        ),
    ))
}

/// A filter added with a `typed_config` is built from that config's type,
/// whatever its `name` says (Istio's webhook only warns too): the old name
/// breaks nothing in Envoy, it only makes the filter invisible to patches
/// that look for the current name.
fn deprecated_label_finding(name: &str, path: String) -> Option<Finding> {
    let replacement = deprecated_replacement(name)?;
    Some(warning(
        "MK0314",
        path,
        format!(
            "{name:?} is a deprecated Envoy filter name; Envoy builds this filter from its \
             typed_config, so it works, but EnvoyFilters matching the current name will not \
             find it; use {replacement}"
        ),
    ))
}

/// A deprecated name in a `match` is a warning, as in Istio: the patch is
/// valid configuration, it just finds no filter (the proxies' filters carry
/// the current names), so at worst it changes nothing.
fn deprecated_match_finding(name: &str, path: String) -> Option<Finding> {
    let replacement = deprecated_replacement(name)?;
    Some(warning(
        "MK0314",
        path,
        format!(
            "{name:?} is a deprecated Envoy filter name: the filters the proxies receive carry \
             the current names, so this match may find nothing and the patch would then change \
             nothing; use {replacement}"
        ),
    ))
}

fn check_deprecated_match_names(
    patch: &EnvoyConfigObjectPatch,
    path: &str,
    out: &mut Vec<Finding>,
) {
    let Some(m) = patch.r#match.as_ref() else {
        return;
    };
    if let Some(listener) = m.listener.as_ref() {
        let base = format!("{path}.match.listener");
        if let Some(name) = listener.listener_filter.as_deref() {
            out.extend(deprecated_match_finding(
                name,
                format!("{base}.listenerFilter"),
            ));
        }
        if let Some(filter) = listener
            .filter_chain
            .as_ref()
            .and_then(|c| c.filter.as_ref())
        {
            check_deprecated_filter_match(filter, &format!("{base}.filterChain.filter"), out);
        }
    }
    if let Some(filter) = m.waypoint.as_ref().and_then(|w| w.filter.as_ref()) {
        check_deprecated_filter_match(filter, &format!("{path}.match.waypoint.filter"), out);
    }
}

fn check_deprecated_filter_match(filter: &FilterMatch, base: &str, out: &mut Vec<Finding>) {
    if let Some(name) = filter.name.as_deref() {
        out.extend(deprecated_match_finding(name, format!("{base}.name")));
    }
    if let Some(name) = filter.sub_filter.as_ref().and_then(|s| s.name.as_deref()) {
        out.extend(deprecated_match_finding(
            name,
            format!("{base}.subFilter.name"),
        ));
    }
}

/// `value.name` names a filter only when the patch adds or edits filters;
/// elsewhere (a cluster, a listener) it is a free-form name.
fn check_deprecated_value_name(
    apply_to: ApplyTo,
    value: &Map<String, Value>,
    path: &str,
    out: &mut Vec<Finding>,
) {
    let names_a_filter = matches!(
        apply_to,
        ApplyTo::HttpFilter
            | ApplyTo::NetworkFilter
            | ApplyTo::ListenerFilter
            | ApplyTo::ExtensionConfig
    );
    if !names_a_filter {
        return;
    }
    if let Some(Value::String(name)) = value.get("name") {
        let name_path = format!("{path}.patch.value.name");
        // Protobuf JSON accepts both spellings of the field.
        let typed = ["typed_config", "typedConfig"]
            .iter()
            .any(|key| value.get(*key).is_some_and(Value::is_object));
        out.extend(if typed {
            deprecated_label_finding(name, name_path)
        } else {
            deprecated_untyped_value_finding(name, name_path)
        });
    }
}

// ---- Walking patch.value: typed_config, Lua, Wasm -----------------------------

/// Path segment for an object key: `.key`, or `["key"]` when the key is not
/// a plain identifier (`@type`, dotted filter names).
fn key_segment(key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!(".{key}")
    } else {
        format!("[{key:?}]")
    }
}

/// Protobuf JSON accepts a field both as `snake_case` and `lowerCamelCase`.
fn field<'a>(object: &'a Map<String, Value>, snake: &str) -> Option<(String, &'a Value)> {
    if let Some(value) = object.get(snake) {
        return Some((snake.to_owned(), value));
    }
    let camel = to_lower_camel(snake);
    object.get(&camel).map(|value| (camel, value))
}

fn to_lower_camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Visits every value inside a patch value, checking each `typed_config`.
/// Iterative, so a deeply nested document cannot exhaust the stack.
fn walk_value(root: &Map<String, Value>, path: &str, out: &mut Vec<Finding>) {
    let mut pending = Vec::new();
    push_entries(root, path, &mut pending);
    while let Some((at, is_typed_config, value)) = pending.pop() {
        if is_typed_config && let Value::Object(any) = value {
            check_typed_config(any, &at, out);
        }
        match value {
            Value::Object(object) => push_entries(object, &at, &mut pending),
            Value::Array(items) => {
                // Reversed so items pop, and findings come, in document order.
                for (index, item) in items.iter().enumerate().rev() {
                    pending.push((format!("{at}[{index}]"), false, item));
                }
            }
            _ => {}
        }
    }
}

/// Queues an object's entries: (path, whether the key is `typed_config`, value).
fn push_entries<'a>(
    object: &'a Map<String, Value>,
    path: &str,
    pending: &mut Vec<(String, bool, &'a Value)>,
) {
    for (key, child) in object.iter().rev() {
        let is_typed_config = key == "typed_config" || key == "typedConfig";
        pending.push((
            format!("{path}{}", key_segment(key)),
            is_typed_config,
            child,
        ));
    }
}

/// The message name of a type URL (what follows the last `/`).
fn message_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

fn check_typed_config(any: &Map<String, Value>, path: &str, out: &mut Vec<Finding>) {
    let Some(type_url) = any.get("@type") else {
        out.push(error(
            "MK0312",
            path,
            "typed_config has no \"@type\", so Envoy cannot decode it and rejects the whole \
             update on every proxy that receives the patch; add \"@type\": \
             \"type.googleapis.com/<the extension's proto message>\"",
        ));
        return;
    };
    let type_path = format!("{path}[\"@type\"]");
    let Some(type_url) = type_url.as_str() else {
        out.push(error(
            "MK0313",
            type_path,
            format!(
                "\"@type\" is {type_url}, not a string; it must be a type URL such as \
                 \"type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua\""
            ),
        ));
        return;
    };
    if !check_type_url(type_url, type_path, TypeContext::Any, out) {
        return;
    }
    let name = message_name(type_url);
    if TYPED_STRUCT_TYPES.contains(&name) {
        // A TypedStruct carries the real type in `type_url` and the
        // configuration in `value`: check those as if they were unwrapped.
        let inner = any.get("type_url").and_then(Value::as_str);
        if let Some(inner) = inner
            && !check_type_url(
                inner,
                format!("{path}.type_url"),
                TypeContext::TypedStruct,
                out,
            )
        {
            return;
        }
        if let (Some(inner), Some(Value::Object(body))) = (inner, any.get("value")) {
            check_extension(message_name(inner), body, &format!("{path}.value"), out);
        }
        return;
    }
    check_extension(name, any, path, out);
}

/// Where a type URL sits, which decides who must know its type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TypeContext {
    /// `@type` of a protobuf `Any`: the control plane decodes it (Istio's
    /// webhook refuses a type its registry lacks) and Envoy decodes it.
    Any,
    /// `type_url` inside a TypedStruct: a plain string to the control
    /// plane; only Envoy resolves it, to its factory of that type. This is
    /// how extensions the control plane has no proto for are configured
    /// (Istio's own stats and metadata filters, custom Envoy builds).
    TypedStruct,
}

/// Top-level proto packages whose types the control plane or Envoy may
/// link: Envoy's API (`envoy.`, contrib included), xDS/UDPA (`xds.`,
/// `udpa.`), the well-known and Google types (`google.`), Istio's own and
/// its proxy's extensions (`istio.`, `io.istio.`, `stats.`), and the
/// packages Envoy's API imports (gRPC, OpenTelemetry, OpenCensus,
/// Prometheus under `io.`, CEL, protoc-gen-validate).
const LINKED_PACKAGE_ROOTS: &[&str] = &[
    "envoy",
    "xds",
    "udpa",
    "google",
    "istio",
    "io",
    "stats",
    "grpc",
    "opentelemetry",
    "opencensus",
    "cel",
    "validate",
];

/// Checks one type URL. Only what is broken for certain is an error; a
/// type outside [`KNOWN_TYPES`] that may well exist is a warning:
///
/// - malformed (no message name after the last `/`, or a name that is not
///   a dotted protobuf identifier): neither Istio nor Envoy can resolve it;
/// - Envoy's removed v2 API (`envoy.api.v2.…`, `envoy.config.filter.….v2`,
///   any `envoy.` package versioned v1/v2/v4alpha): the control plane no
///   longer links those protos (Istio's webhook refuses them, hinting at
///   v3) and Envoy dropped them, so Envoy rejects the update;
/// - in an `Any`, a package root no control plane or Envoy links (say
///   `mycompany.Filter`): Istio's webhook refuses it as an unknown type,
///   and the control plane cannot even encode it for the proxies. Inside
///   a TypedStruct such a type may be a custom Envoy build's extension,
///   so there it only warns.
///
/// Returns whether the checks on the configuration may go on.
fn check_type_url(
    type_url: &str,
    path: String,
    context: TypeContext,
    out: &mut Vec<Finding>,
) -> bool {
    let name = message_name(type_url);
    if let Some(problem) = message_name_problem(name) {
        out.push(error(
            "MK0313",
            path,
            format!(
                "type URL {type_url:?} is malformed ({problem}), so Envoy cannot resolve it and \
                 rejects the update on every proxy that receives the patch; write \
                 type.googleapis.com/<full proto message name>, e.g. \
                 type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
            ),
        ));
        return false;
    }
    if KNOWN_TYPES.contains(&name) {
        return true;
    }
    if let Some(version) = removed_envoy_api_version(name) {
        out.push(error(
            "MK0313",
            path,
            format!(
                "type {type_url:?} is from Envoy's removed {version} API: Envoy and the control \
                 plane only know the v3 API, so the update is rejected on every proxy that \
                 receives the patch; use the v3 type (envoy.extensions.<category>.<extension>.v3.\
                 <Message>, e.g. envoy.extensions.filters.http.cors.v3.Cors)"
            ),
        ));
        return false;
    }
    let root = name.split('.').next().unwrap_or_default();
    let linked = LINKED_PACKAGE_ROOTS.contains(&root);
    if !linked && context == TypeContext::Any {
        out.push(error(
            "MK0313",
            path,
            format!(
                "type {type_url:?} is not an Envoy, xDS, Istio or protobuf well-known type: the \
                 control plane cannot decode it (Istio refuses it as an unknown type) and Envoy \
                 has no extension for it; use the extension's Envoy type, or wrap a custom \
                 extension's configuration in a {} with type_url set to its type",
                TYPED_STRUCT_TYPES[1]
            ),
        ));
        return false;
    }
    out.push(warning(
        "MK0313",
        path,
        format!(
            "type {type_url:?} is not in meshkeeper's list of Envoy extension types, so its \
             configuration is not checked here; if the proxies' Envoy does not have this \
             extension it rejects the update, so check the spelling, the API version (v3) and \
             that the extension is built into your proxy"
        ),
    ));
    true
}

/// Why the message name of a type URL cannot name a protobuf message: it
/// must be dot-separated identifiers (letters, digits, `_`, not starting
/// with a digit).
fn message_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("no message name after the last '/'");
    }
    let identifier = |part: &str| {
        part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if !name.split('.').all(identifier) {
        return Some("the message name must be dot-separated identifiers");
    }
    None
}

/// The removed API version of an `envoy.` type, if it is one: a package
/// segment `v2` or `v4` with an optional `alpha`/`beta` suffix (`v2alpha`,
/// `v4alpha`). v3 and the contrib `v3alpha` packages are current.
fn removed_envoy_api_version(name: &str) -> Option<&str> {
    let segments: Vec<&str> = name.split('.').collect();
    if segments.first() != Some(&"envoy") {
        return None;
    }
    // The last segment is the message, not a package.
    let package = segments.get(1..segments.len().saturating_sub(1))?;
    package
        .iter()
        .copied()
        .find(|segment| matches!(api_version_major(segment), Some(2 | 4)))
}

/// The major number of a proto package version segment (`v2` → 2,
/// `v3alpha` → 3, `v2alpha1` → 2); `None` for other segments.
fn api_version_major(segment: &str) -> Option<u32> {
    let rest = segment.strip_prefix('v')?;
    let digits_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (major, suffix) = rest.split_at(digits_end);
    let stage = suffix
        .strip_prefix("alpha")
        .or_else(|| suffix.strip_prefix("beta"))
        .unwrap_or(suffix);
    if major.is_empty() || !stage.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    major.parse().ok()
}

fn check_extension(name: &str, config: &Map<String, Value>, path: &str, out: &mut Vec<Finding>) {
    if name == LUA_TYPE {
        check_lua(config, path, out);
    } else if name == HTTP_WASM_TYPE || name == NETWORK_WASM_TYPE {
        check_wasm(config, path, out);
    }
}

// ---- MK0308 / MK0309: Lua ---------------------------------------------------

/// Every inline Lua source of a Lua filter config, with its path.
fn lua_sources<'a>(config: &'a Map<String, Value>, path: &str) -> Vec<(String, &'a Value)> {
    let mut sources = Vec::new();
    if let Some((key, code)) = field(config, "inline_code") {
        sources.push((format!("{path}.{key}"), code));
    }
    if let Some((key, Value::Object(source))) = field(config, "default_source_code")
        && let Some((inner, code)) = field(source, "inline_string")
    {
        sources.push((format!("{path}.{key}.{inner}"), code));
    }
    if let Some((key, Value::Object(named))) = field(config, "source_codes") {
        for (name, source) in named {
            if let Some((inner, code)) = source.as_object().and_then(|s| field(s, "inline_string"))
            {
                sources.push((format!("{path}.{key}{}.{inner}", key_segment(name)), code));
            }
        }
    }
    sources
}

fn has_any_code(config: &Map<String, Value>) -> bool {
    ["inline_code", "default_source_code", "source_codes"]
        .iter()
        .any(|f| field(config, f).is_some())
}

fn check_lua(config: &Map<String, Value>, path: &str, out: &mut Vec<Finding>) {
    if !has_any_code(config) {
        out.push(error(
            "MK0308",
            path,
            "the Lua filter has no code (no inline_code, default_source_code or source_codes): \
             it runs nothing on any request; add the script in \
             default_source_code.inline_string, or remove the filter",
        ));
        return;
    }
    for (code_path, code) in lua_sources(config, path) {
        let text = code.as_str().unwrap_or_default();
        if text.trim().is_empty() {
            out.push(error(
                "MK0308",
                code_path,
                "the inline Lua code is empty, so the filter runs nothing on every request it \
                 is on the path of; put the script here, or remove the filter",
            ));
            continue;
        }
        if let Some(call) = dangerous_lua_call(text) {
            out.push(error(
                "MK0309",
                code_path,
                format!(
                    "the Lua code calls {call}, which runs programs or loads code the \
                     configuration does not show, inside every proxy that receives the patch \
                     (with the proxy's identity and secrets); rewrite it with the Envoy Lua API \
                     (request_handle:headers(), httpCall, ...) and no {call}"
                ),
            ));
        }
    }
}

/// The first dangerous function the code calls, as `name(`. A call is the
/// name not preceded by an identifier character, `.`, `:` or a quote (so
/// `download(`, `obj:load(` and the string `'load'` do not count), followed by `(`, a string or a table, the
/// forms a Lua call takes.
fn dangerous_lua_call(code: &str) -> Option<String> {
    DANGEROUS_LUA_CALLS
        .iter()
        .find(|name| is_called(code, name))
        .map(|name| format!("{name}()"))
}

fn is_called(code: &str, name: &str) -> bool {
    code.match_indices(name).any(|(start, _)| {
        let before = code[..start].chars().next_back();
        let standalone = before.is_none_or(|c| !(c.is_alphanumeric() || "_.:'\"".contains(c)));
        let after = code[start + name.len()..].trim_start();
        standalone && after.starts_with(['(', '"', '\'', '[', '{'])
    })
}

// ---- MK0310 / MK0311: Wasm --------------------------------------------------

fn check_wasm(config: &Map<String, Value>, path: &str, out: &mut Vec<Finding>) {
    let mut at = path.to_owned();
    let mut current = config;
    for step in ["config", "vm_config", "code", "remote"] {
        match field(current, step) {
            Some((key, Value::Object(next))) => {
                at.push('.');
                at.push_str(&key);
                current = next;
            }
            // No remote code: a local file or inline bytes, nothing fetched.
            _ => return,
        }
    }
    let remote = current;
    let uri = field(remote, "http_uri")
        .and_then(|(key, v)| Some((key, v.as_object()?)))
        .and_then(|(key, http)| {
            let (uri_key, uri) = field(http, "uri")?;
            Some((format!("{at}.{key}.{uri_key}"), uri.as_str()?))
        });
    if let Some((uri_path, uri)) = &uri {
        let scheme_is_http = uri
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"));
        if scheme_is_http {
            out.push(error(
                "MK0310",
                uri_path,
                format!(
                    "the Wasm module is fetched from {uri:?} over plain HTTP: anyone on the path \
                     can replace the code that then runs in every proxy receiving the patch; \
                     serve it over https:// (and pin it with sha256)"
                ),
            ));
        }
    }
    let pinned = field(remote, "sha256")
        .and_then(|(_, v)| v.as_str())
        .is_some_and(|s| !s.trim().is_empty());
    if !pinned {
        let shown = uri.map_or("the remote source".to_owned(), |(_, u)| format!("{u:?}"));
        out.push(error(
            "MK0311",
            format!("{at}.sha256"),
            format!(
                "the Wasm module from {shown} has no sha256, so whatever the server returns is \
                 run in the proxy, and a changed or tampered module goes unnoticed; set sha256 \
                 to the module's SHA-256 checksum (hex)"
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Severity;
    use meshkeeper_crds::networking::envoy_filter::EnvoyFilterSpec;
    use serde_json::json;

    const ROOT: &str = "istio-system";

    /// An EnvoyFilter in namespace `bookinfo` with a workload selector (so
    /// not mesh-wide) and a priority (so relative operations are fine).
    fn filter_with(patches: Value) -> EnvoyFilter {
        let spec: EnvoyFilterSpec = serde_json::from_value(json!({
            "workloadSelector": {"labels": {"app": "reviews"}},
            "priority": 10,
            "configPatches": patches,
        }))
        .unwrap();
        let mut filter = EnvoyFilter::new("test", spec);
        filter.metadata.namespace = Some("bookinfo".to_owned());
        filter
    }

    fn one_patch(patch: Value) -> EnvoyFilter {
        filter_with(json!([patch]))
    }

    fn codes(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.code).collect()
    }

    /// The one finding with `code`, asserting its path and a message fragment.
    fn assert_one(findings: &[Finding], code: &str, path: &str, fragment: &str) {
        let hits: Vec<&Finding> = findings.iter().filter(|f| f.code == code).collect();
        assert_eq!(hits.len(), 1, "expected one {code}: {findings:#?}");
        assert_eq!(hits[0].path, path, "{findings:#?}");
        assert!(
            hits[0].message.contains(fragment),
            "{:?} lacks {fragment:?}",
            hits[0].message
        );
        assert_eq!(hits[0].check, Check::EnvoyFilters);
    }

    fn assert_no(findings: &[Finding], code: &str) {
        assert!(
            !findings.iter().any(|f| f.code == code),
            "unexpected {code}: {findings:#?}"
        );
    }

    fn lua_value(code: &str) -> Value {
        json!({
            "name": "envoy.filters.http.lua",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                "default_source_code": {"inline_string": code}
            }
        })
    }

    fn before_router(value: Value) -> Value {
        json!({
            "applyTo": "HTTP_FILTER",
            "match": {
                "context": "SIDECAR_INBOUND",
                "listener": {"filterChain": {"filter": {
                    "name": "envoy.filters.network.http_connection_manager",
                    "subFilter": {"name": "envoy.filters.http.router"}
                }}}
            },
            "patch": {"operation": "INSERT_BEFORE", "value": value}
        })
    }

    const LUA_PATH: &str =
        "spec.configPatches[0].patch.value.typed_config.default_source_code.inline_string";

    #[test]
    fn realistic_lua_filter_before_router_has_no_findings() {
        let filter = one_patch(before_router(lua_value(
            "function envoy_on_request(request_handle)\n  \
             request_handle:headers():add(\"x-lua\", \"1\")\nend\n",
        )));
        assert_eq!(validate(&filter, ROOT), vec![]);
    }

    // MK0301
    #[test]
    fn missing_apply_to_operation_value_are_denied() {
        let findings = validate(
            &filter_with(json!([{"patch": {"operation": "MERGE"}}])),
            ROOT,
        );
        let missing: Vec<&str> = findings
            .iter()
            .filter(|f| f.code == "MK0301")
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(
            missing,
            [
                "spec.configPatches[0].applyTo",
                "spec.configPatches[0].patch.value"
            ]
        );
        assert!(findings.iter().all(|f| f.severity == Severity::Error));

        let findings = validate(&one_patch(json!({"applyTo": "CLUSTER", "patch": {}})), ROOT);
        assert_one(
            &findings,
            "MK0301",
            "spec.configPatches[0].patch.operation",
            "patch.operation is missing",
        );
        let findings = validate(&one_patch(json!({"applyTo": "CLUSTER"})), ROOT);
        assert_one(
            &findings,
            "MK0301",
            "spec.configPatches[0].patch",
            "no patch section",
        );
        let findings = validate(&filter_with(json!([])), ROOT);
        assert_one(
            &findings,
            "MK0301",
            "spec.configPatches",
            "no configPatches",
        );
    }

    #[test]
    fn remove_needs_no_value() {
        let filter = one_patch(json!({
            "applyTo": "CLUSTER",
            "match": {"cluster": {"service": "legacy.bookinfo.svc.cluster.local"}},
            "patch": {"operation": "REMOVE"}
        }));
        assert_eq!(validate(&filter, ROOT), vec![]);
    }

    // MK0302 and MK0316
    #[test]
    fn invalid_proxy_version_regex_is_denied_and_any_proxy_version_warns() {
        let mut patch = before_router(lua_value("function envoy_on_request(h) end"));
        patch["match"]["proxy"] = json!({"proxyVersion": "^1\\.2[0-9"});
        let findings = validate(&one_patch(patch.clone()), ROOT);
        let path = "spec.configPatches[0].match.proxy.proxyVersion";
        assert_one(
            &findings,
            "MK0302",
            path,
            "\"^1\\\\.2[0-9\" is not a valid RE2",
        );
        assert_one(&findings, "MK0316", path, "after an upgrade");

        patch["match"]["proxy"] = json!({"proxyVersion": "^1\\.2[0-9].*"});
        let findings = validate(&one_patch(patch), ROOT);
        assert_no(&findings, "MK0302");
        assert_one(&findings, "MK0316", path, "after an upgrade");
        assert_eq!(findings[0].severity, Severity::Warning);
    }

    #[test]
    fn oversized_proxy_version_regex_is_denied() {
        let mut patch = before_router(lua_value("function envoy_on_request(h) end"));
        patch["match"]["proxy"] = json!({"proxyVersion": "(\\w{1000}){1000}"});
        let findings = validate(&one_patch(patch), ROOT);
        assert_one(
            &findings,
            "MK0302",
            "spec.configPatches[0].match.proxy.proxyVersion",
            "bounded size",
        );
    }

    #[test]
    fn no_proxy_version_means_no_warning() {
        let findings = validate(&one_patch(before_router(lua_value("x = 1"))), ROOT);
        assert_no(&findings, "MK0316");
        assert_no(&findings, "MK0302");
    }

    // MK0303
    #[test]
    fn removing_or_replacing_hcm_or_router_is_denied() {
        let hcm = one_patch(json!({
            "applyTo": "NETWORK_FILTER",
            "match": {"listener": {"filterChain": {"filter": {"name": HCM}}}},
            "patch": {"operation": "REMOVE"}
        }));
        assert_one(
            &validate(&hcm, ROOT),
            "MK0303",
            "spec.configPatches[0].patch.operation",
            "REMOVE of the HTTP connection manager",
        );
        let router = one_patch(json!({
            "applyTo": "HTTP_FILTER",
            "match": {"listener": {"filterChain": {"filter": {
                "name": HCM, "subFilter": {"name": "envoy.router"}
            }}}},
            "patch": {"operation": "REPLACE", "value": lua_value("x = 1")}
        }));
        assert_one(
            &validate(&router, ROOT),
            "MK0303",
            "spec.configPatches[0].patch.operation",
            "REPLACE of the router filter (envoy.router)",
        );
        let every = one_patch(json!({"applyTo": "HTTP_FILTER", "patch": {"operation": "REMOVE"}}));
        assert_one(
            &validate(&every, ROOT),
            "MK0303",
            "spec.configPatches[0].patch.operation",
            "every HTTP filter",
        );
    }

    #[test]
    fn removing_another_filter_is_allowed() {
        let filter = one_patch(json!({
            "applyTo": "HTTP_FILTER",
            "match": {"listener": {"filterChain": {"filter": {
                "name": HCM, "subFilter": {"name": "envoy.filters.http.fault"}
            }}}},
            "patch": {"operation": "REMOVE"}
        }));
        assert_eq!(validate(&filter, ROOT), vec![]);
    }

    // MK0304
    #[test]
    fn removing_virtual_listeners_is_denied() {
        for (listener, fragment) in [
            (json!({"name": "virtualInbound"}), "listener virtualInbound"),
            (json!({"portNumber": 15001}), "port 15001 (virtualOutbound)"),
            (json!({}), "every listener"),
        ] {
            let filter = one_patch(json!({
                "applyTo": "LISTENER",
                "match": {"context": "SIDECAR_INBOUND", "listener": listener},
                "patch": {"operation": "REMOVE"}
            }));
            assert_one(
                &validate(&filter, ROOT),
                "MK0304",
                "spec.configPatches[0].patch.operation",
                fragment,
            );
        }
    }

    #[test]
    fn removing_an_ordinary_listener_is_allowed() {
        for listener in [
            json!({"portNumber": 9080}),
            json!({"name": "0.0.0.0_9080"}),
            json!({"filterChain": {"sni": "legacy.example.com"}}),
        ] {
            let filter = one_patch(json!({
                "applyTo": "LISTENER",
                "match": {"listener": listener},
                "patch": {"operation": "REMOVE"}
            }));
            assert_eq!(validate(&filter, ROOT), vec![], "{listener}");
        }
    }

    // MK0305
    #[test]
    fn operations_ignored_for_the_apply_to_are_denied() {
        for (apply_to, op) in [
            ("ROUTE_CONFIGURATION", "ADD"),
            ("ROUTE_CONFIGURATION", "REMOVE"),
            ("HTTP_ROUTE", "ADD"),
            ("HTTP_ROUTE", "REMOVE"),
            ("CLUSTER", "REPLACE"),
            ("LISTENER", "INSERT_BEFORE"),
        ] {
            let filter = one_patch(json!({
                "applyTo": apply_to,
                "match": {"cluster": {"service": "reviews.bookinfo.svc.cluster.local"}},
                "patch": {"operation": op, "value": {"name": "x"}}
            }));
            let findings = validate(&filter, ROOT);
            assert_one(
                &findings,
                "MK0305",
                "spec.configPatches[0].patch.operation",
                &format!("operation {op} is silently ignored by Istio for applyTo {apply_to}"),
            );
        }
    }

    #[test]
    fn supported_operations_pass() {
        for (apply_to, op) in [
            ("ROUTE_CONFIGURATION", "MERGE"),
            ("HTTP_ROUTE", "INSERT_FIRST"),
            ("VIRTUAL_HOST", "REPLACE"),
            ("NETWORK_FILTER", "REPLACE"),
            ("LISTENER_FILTER", "REPLACE"),
            ("CLUSTER", "ADD"),
        ] {
            let filter = one_patch(json!({
                "applyTo": apply_to,
                "match": {"routeConfiguration": {"portNumber": 9080}},
                "patch": {"operation": op, "value": {"name": "x"}}
            }));
            assert_no(&validate(&filter, ROOT), "MK0305");
        }
    }

    // MK0306
    #[test]
    fn inserting_after_the_router_is_denied() {
        let mut patch = before_router(lua_value("x = 1"));
        patch["patch"]["operation"] = json!("INSERT_AFTER");
        assert_one(
            &validate(&one_patch(patch), ROOT),
            "MK0306",
            "spec.configPatches[0].patch.operation",
            "after the router (envoy.filters.http.router)",
        );
    }

    #[test]
    fn inserting_after_another_filter_is_allowed() {
        let mut patch = before_router(lua_value("x = 1"));
        patch["patch"]["operation"] = json!("INSERT_AFTER");
        patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] =
            json!("envoy.filters.http.cors");
        assert_eq!(validate(&one_patch(patch), ROOT), vec![]);
    }

    // MK0307
    #[test]
    fn mesh_wide_filter_needs_the_annotation() {
        let mut filter = one_patch(before_router(lua_value("x = 1")));
        filter.spec.workload_selector = None;
        filter.metadata.namespace = Some(ROOT.to_owned());
        assert_one(
            &validate(&filter, ROOT),
            "MK0307",
            "spec.workloadSelector",
            "meshkeeper.io/mesh-wide-envoyfilter: \"acknowledged\"",
        );
        filter.metadata.annotations = Some(
            [(MESH_WIDE_ACK_ANNOTATION.to_owned(), "yes".to_owned())]
                .into_iter()
                .collect(),
        );
        assert_one(
            &validate(&filter, ROOT),
            "MK0307",
            "spec.workloadSelector",
            "set to \"yes\"",
        );
    }

    #[test]
    fn acknowledged_or_selected_or_other_namespace_is_not_mesh_wide() {
        let mut filter = one_patch(before_router(lua_value("x = 1")));
        filter.metadata.namespace = Some(ROOT.to_owned());
        assert_eq!(validate(&filter, ROOT), vec![], "has a workload selector");

        filter.spec.workload_selector = None;
        filter.metadata.annotations = Some(
            [(
                MESH_WIDE_ACK_ANNOTATION.to_owned(),
                "acknowledged".to_owned(),
            )]
            .into_iter()
            .collect(),
        );
        assert_eq!(validate(&filter, ROOT), vec![], "acknowledged");

        filter.metadata.annotations = None;
        filter.metadata.namespace = Some("bookinfo".to_owned());
        assert_eq!(validate(&filter, ROOT), vec![], "not the root namespace");
    }

    // MK0308
    #[test]
    fn empty_lua_is_denied() {
        let findings = validate(&one_patch(before_router(lua_value("  \n"))), ROOT);
        assert_one(&findings, "MK0308", LUA_PATH, "inline Lua code is empty");

        let no_code = json!({
            "name": "envoy.filters.http.lua",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"}
        });
        let findings = validate(&one_patch(before_router(no_code)), ROOT);
        assert_one(
            &findings,
            "MK0308",
            "spec.configPatches[0].patch.value.typed_config",
            "has no code",
        );
    }

    #[test]
    fn lua_with_code_in_camel_case_or_source_codes_passes() {
        let value = json!({
            "name": "envoy.filters.http.lua",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                "inlineCode": "function envoy_on_request(h) end",
                "source_codes": {"a.lua": {"inline_string": "function envoy_on_response(h) end"}}
            }
        });
        assert_eq!(validate(&one_patch(before_router(value)), ROOT), vec![]);
    }

    // MK0309
    #[test]
    fn dangerous_lua_calls_are_denied() {
        for (code, call) in [
            ("os.execute(\"curl evil\")", "os.execute()"),
            ("local f = io.popen (\"id\")", "io.popen()"),
            ("loadstring(s)()", "loadstring()"),
            ("x = load(chunk)", "load()"),
            ("dofile \"/etc/x.lua\"", "dofile()"),
        ] {
            let findings = validate(&one_patch(before_router(lua_value(code))), ROOT);
            assert_one(&findings, "MK0309", LUA_PATH, &format!("calls {call}"));
        }
        let value = json!({
            "name": "envoy.filters.http.lua",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                "source_codes": {"evil.lua": {"inline_string": "os.execute('x')"}}
            }
        });
        let findings = validate(&one_patch(before_router(value)), ROOT);
        assert_one(
            &findings,
            "MK0309",
            "spec.configPatches[0].patch.value.typed_config.source_codes[\"evil.lua\"].inline_string",
            "os.execute()",
        );
    }

    #[test]
    fn lookalike_lua_names_pass() {
        let code = "local download = function() end\ndownload()\nreloaded(1)\n\
                    h:load(2)\nlocal os_execute = 1\nlocal payload = 'load'";
        assert_eq!(
            validate(&one_patch(before_router(lua_value(code))), ROOT),
            vec![]
        );
    }

    // MK0310 and MK0311
    fn wasm_value(remote: Value) -> Value {
        json!({
            "name": "acme.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                "type_url": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "value": {"config": {"vm_config": {
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"remote": remote}
                }}}
            }
        })
    }

    const WASM_REMOTE: &str =
        "spec.configPatches[0].patch.value.typed_config.value.config.vm_config.code.remote";

    #[test]
    fn wasm_over_http_or_unpinned_is_denied() {
        let remote =
            json!({"http_uri": {"uri": "http://mods.example.com/f.wasm", "cluster": "mods"}});
        let findings = validate(&one_patch(before_router(wasm_value(remote))), ROOT);
        assert_one(
            &findings,
            "MK0310",
            &format!("{WASM_REMOTE}.http_uri.uri"),
            "\"http://mods.example.com/f.wasm\" over plain HTTP",
        );
        assert_one(
            &findings,
            "MK0311",
            &format!("{WASM_REMOTE}.sha256"),
            "has no sha256",
        );
    }

    #[test]
    fn wasm_over_https_with_sha256_passes() {
        let remote = json!({
            "http_uri": {"uri": "https://mods.example.com/f.wasm", "cluster": "mods"},
            "sha256": "d0c3a8b9e6f1"
        });
        let mut value = wasm_value(remote);
        // Also unwrapped (no TypedStruct).
        let direct = json!({
            "name": "acme.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": value["typed_config"]["value"]["config"].take()
            }
        });
        assert_eq!(validate(&one_patch(before_router(direct)), ROOT), vec![]);
    }

    // MK0312 and MK0313
    #[test]
    fn typed_config_without_type_or_with_a_v2_type_is_denied() {
        let value =
            json!({"name": "envoy.filters.http.cors", "typed_config": {"allow_origin": []}});
        let findings = validate(&one_patch(before_router(value)), ROOT);
        assert_one(
            &findings,
            "MK0312",
            "spec.configPatches[0].patch.value.typed_config",
            "has no \"@type\"",
        );

        let value = json!({
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "http_filters": [{
                    "name": "envoy.filters.http.cors",
                    "typed_config": {"@type": "type.googleapis.com/envoy.config.filter.http.cors.v2.Cors"}
                }]
            }
        });
        let findings = validate(
            &one_patch(json!({
                "applyTo": "NETWORK_FILTER",
                "match": {"listener": {"filterChain": {"filter": {"name": HCM}}}},
                "patch": {"operation": "MERGE", "value": value}
            })),
            ROOT,
        );
        assert_one(
            &findings,
            "MK0313",
            "spec.configPatches[0].patch.value.typed_config.http_filters[0].typed_config[\"@type\"]",
            "removed v2 API",
        );
        assert_eq!(findings[0].severity, Severity::Error);
    }

    /// The findings of an HTTP filter whose typed_config has `@type` `type_url`.
    fn typed_findings(type_url: Value) -> Vec<Finding> {
        let value = json!({"name": "custom", "typed_config": {"@type": type_url}});
        validate(&one_patch(before_router(value)), ROOT)
    }

    const TYPE_PATH: &str = "spec.configPatches[0].patch.value.typed_config[\"@type\"]";

    #[test]
    fn a_valid_type_outside_the_list_only_warns_naming_the_field() {
        // Real Envoy extensions meshkeeper does not list, a contrib v3alpha
        // one, Istio's own filter protos, another well-known type: Istio
        // admits them, so they pass with a warning that they go unchecked.
        for type_url in [
            "type.googleapis.com/envoy.extensions.filters.http.geoip.v3.Geoip",
            "type.googleapis.com/envoy.extensions.filters.http.golang.v3alpha.Config",
            "type.googleapis.com/istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig",
            "type.googleapis.com/google.protobuf.Empty",
            "example.com/envoy.extensions.filters.http.lua.v3.LuaPerRoutee",
        ] {
            let findings = typed_findings(json!(type_url));
            assert_one(&findings, "MK0313", TYPE_PATH, "not checked here");
            assert!(findings[0].message.contains(type_url), "{}", findings[0]);
            assert!(
                findings.iter().all(|f| f.severity == Severity::Warning),
                "{type_url}: {findings:#?}"
            );
        }
    }

    #[test]
    fn certainly_unresolvable_types_are_denied() {
        for (type_url, fragment) in [
            (json!("type.googleapis.com/"), "malformed"),
            (json!("type.googleapis.com/envoy..Lua"), "malformed"),
            (
                json!("type.googleapis.com/envoy.filters.http.lua v3"),
                "malformed",
            ),
            (json!(42), "not a string"),
            (
                json!("type.googleapis.com/envoy.api.v2.Cluster"),
                "removed v2 API",
            ),
            (
                json!("type.googleapis.com/envoy.config.filter.http.lua.v2alpha.Lua"),
                "removed v2alpha API",
            ),
            (
                json!("type.googleapis.com/envoy.extensions.filters.http.lua.v4alpha.Lua"),
                "removed v4alpha API",
            ),
            (
                json!("type.googleapis.com/mycompany.filters.Auth"),
                "Istio refuses it",
            ),
        ] {
            let findings = typed_findings(type_url.clone());
            assert_one(&findings, "MK0313", TYPE_PATH, fragment);
            assert_eq!(findings[0].severity, Severity::Error, "{type_url}");
        }
    }

    #[test]
    fn typed_struct_inner_types_are_judged_by_what_envoy_can_resolve() {
        let wrapped = |inner: &str| {
            json!({"name": "custom", "typed_config": {
                "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                "type_url": inner,
                "value": {"a": 1}
            }})
        };
        let inner_path = "spec.configPatches[0].patch.value.typed_config.type_url";
        // A custom Envoy build's extension: only Envoy resolves it, so it
        // may exist; a warning.
        let findings = validate(
            &one_patch(before_router(wrapped(
                "type.googleapis.com/mycompany.filters.Auth",
            ))),
            ROOT,
        );
        assert_one(&findings, "MK0313", inner_path, "not checked here");
        assert_eq!(findings[0].severity, Severity::Warning);
        // Istio's own proxy extensions, configured this way by Istio itself.
        let findings = validate(
            &one_patch(before_router(wrapped(
                "type.googleapis.com/stats.PluginConfig",
            ))),
            ROOT,
        );
        assert_eq!(findings, vec![]);
        // A removed v2 type is refused by every current Envoy.
        let findings = validate(
            &one_patch(before_router(wrapped(
                "type.googleapis.com/envoy.config.filter.http.cors.v2.Cors",
            ))),
            ROOT,
        );
        assert_one(&findings, "MK0313", inner_path, "removed v2 API");
        assert_eq!(findings[0].severity, Severity::Error);
    }

    #[test]
    fn api_versions_are_read_from_package_segments() {
        assert_eq!(api_version_major("v2"), Some(2));
        assert_eq!(api_version_major("v2alpha1"), Some(2));
        assert_eq!(api_version_major("v3alpha"), Some(3));
        assert_eq!(api_version_major("v4beta"), Some(4));
        assert_eq!(api_version_major("vm"), None);
        assert_eq!(api_version_major("v2x"), None);
        assert_eq!(api_version_major("lua"), None);
        // Only packages count, not the message name, and only under envoy.
        assert_eq!(removed_envoy_api_version("envoy.type.v2"), None);
        assert_eq!(
            removed_envoy_api_version("istio.alpn.v2alpha1.Config"),
            None
        );
        assert_eq!(
            removed_envoy_api_version("envoy.api.v2.Cluster"),
            Some("v2")
        );
    }

    #[test]
    fn deeply_nested_value_is_walked_without_recursion() {
        let mut nested = json!({"typed_config": {"no_type": true}});
        for _ in 0..10_000 {
            // Built by hand: `json!` would serialize (recursively) a copy.
            let mut wrapper = Map::new();
            wrapper.insert("inner".to_owned(), Value::Array(vec![nested]));
            nested = Value::Object(wrapper);
        }
        let Value::Object(nested) = nested else {
            unreachable!()
        };
        // Set directly: deserializing (and dropping) such a value recurses.
        let mut filter = one_patch(json!({
            "applyTo": "CLUSTER",
            "patch": {"operation": "MERGE", "value": {"placeholder": 1}}
        }));
        let patches = filter.spec.config_patches.as_mut().unwrap();
        patches[0].patch.as_mut().unwrap().value =
            Some(meshkeeper_crds::schema::FreeformObject(nested));
        let findings = validate(&filter, ROOT);
        assert_eq!(codes(&findings), ["MK0312"]);
        assert!(findings[0].path.ends_with(".inner[0].typed_config"));
        std::mem::forget(filter);
    }

    #[test]
    fn known_types_anywhere_pass() {
        let value = json!({
            "name": "envoy.filters.http.local_ratelimit",
            "typed_config": {
                "@type": "type.googleapis.com/xds.type.v3.TypedStruct",
                "type_url": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                "value": {"stat_prefix": "http_local_rate_limiter"}
            }
        });
        assert_eq!(validate(&one_patch(before_router(value)), ROOT), vec![]);
    }

    // MK0314
    #[test]
    fn deprecated_match_names_only_warn_with_the_new_name() {
        // Istio admits the patch with a warning: it matches nothing, which
        // breaks nothing.
        let mut patch = before_router(lua_value("x = 1"));
        patch["match"]["listener"]["filterChain"]["filter"]["name"] =
            json!("envoy.http_connection_manager");
        patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] =
            json!("envoy.router");
        let findings = validate(&one_patch(patch), ROOT);
        assert_eq!(codes(&findings), ["MK0314", "MK0314"], "{findings:#?}");
        assert!(findings.iter().all(|f| f.severity == Severity::Warning));
        let base = "spec.configPatches[0].match.listener.filterChain.filter";
        assert_eq!(findings[0].path, format!("{base}.name"));
        assert!(
            findings[0]
                .message
                .contains("\"envoy.http_connection_manager\"")
        );
        assert!(
            findings[0]
                .message
                .contains("use envoy.filters.network.http_connection_manager"),
            "{}",
            findings[0]
        );
        assert_eq!(findings[1].path, format!("{base}.subFilter.name"));
        assert!(
            findings[1]
                .message
                .contains("use envoy.filters.http.router")
        );

        let listener_filter = one_patch(json!({
            "applyTo": "LISTENER_FILTER",
            "match": {"listener": {"listenerFilter": "envoy.listener.tls_inspector"}},
            "patch": {"operation": "REMOVE"}
        }));
        let findings = validate(&listener_filter, ROOT);
        assert_one(
            &findings,
            "MK0314",
            "spec.configPatches[0].match.listener.listenerFilter",
            "use envoy.filters.listener.tls_inspector",
        );
        assert_eq!(findings[0].severity, Severity::Warning);
    }

    #[test]
    fn deprecated_value_name_with_typed_config_only_warns() {
        // Envoy builds the filter from the typed_config's type; the old name
        // is a label. Istio admits it with a warning, so must meshkeeper.
        for key in ["typed_config", "typedConfig"] {
            let mut value = lua_value("x = 1");
            value["name"] = json!("envoy.lua");
            if key == "typedConfig" {
                let typed = value["typed_config"].take();
                value = json!({"name": "envoy.lua", "typedConfig": typed});
            }
            let findings = validate(&one_patch(before_router(value)), ROOT);
            let hits: Vec<&Finding> = findings.iter().filter(|f| f.code == "MK0314").collect();
            assert_eq!(hits.len(), 1, "{key}: {findings:#?}");
            assert_eq!(hits[0].severity, Severity::Warning, "{key}");
            assert_eq!(hits[0].path, "spec.configPatches[0].patch.value.name");
            assert!(hits[0].message.contains("\"envoy.lua\""), "{}", hits[0]);
            assert!(
                hits[0].message.contains("use envoy.filters.http.lua"),
                "{}",
                hits[0]
            );
            assert!(
                findings.iter().all(|f| f.severity == Severity::Warning),
                "{key}: {findings:#?}"
            );
        }
    }

    #[test]
    fn deprecated_value_name_without_typed_config_is_denied() {
        let findings = validate(
            &one_patch(before_router(json!({"name": "envoy.lua"}))),
            ROOT,
        );
        assert_one(
            &findings,
            "MK0314",
            "spec.configPatches[0].patch.value.name",
            "without a typed_config",
        );
        assert!(
            findings
                .iter()
                .any(|f| f.code == "MK0314" && f.severity == Severity::Error),
            "{findings:#?}"
        );
    }

    #[test]
    fn deprecated_looking_cluster_name_is_not_a_filter_name() {
        let filter = one_patch(json!({
            "applyTo": "CLUSTER",
            "patch": {"operation": "ADD", "value": {"name": "envoy.lua", "type": "STRICT_DNS"}}
        }));
        assert_eq!(validate(&filter, ROOT), vec![]);
    }

    // MK0315
    #[test]
    fn relative_operation_without_priority_warns() {
        for priority in [None, Some(0)] {
            let mut filter = one_patch(before_router(lua_value("x = 1")));
            filter.spec.priority = priority;
            let findings = validate(&filter, ROOT);
            assert_eq!(codes(&findings), ["MK0315"]);
            assert_one(
                &findings,
                "MK0315",
                "spec.configPatches[0].patch.operation",
                "set a non-zero spec.priority",
            );
            assert_eq!(findings[0].severity, Severity::Warning);
        }
    }

    #[test]
    fn insert_first_without_priority_is_quiet() {
        // INSERT_FIRST does not depend on which filters are in place.
        for priority in [None, Some(0)] {
            let mut patch = before_router(lua_value("x = 1"));
            patch["patch"]["operation"] = json!("INSERT_FIRST");
            let mut filter = one_patch(patch);
            filter.spec.priority = priority;
            assert_eq!(validate(&filter, ROOT), vec![]);
        }
    }

    #[test]
    fn absolute_operation_without_priority_is_quiet() {
        let mut filter = one_patch(json!({
            "applyTo": "CLUSTER",
            "patch": {"operation": "ADD", "value": {"name": "lua_cluster"}}
        }));
        filter.spec.priority = None;
        assert_eq!(validate(&filter, ROOT), vec![]);
    }

    #[test]
    fn findings_name_the_patch_index() {
        let filter = filter_with(json!([
            before_router(lua_value("x = 1")),
            {"applyTo": "HTTP_ROUTE", "patch": {"operation": "ADD", "value": {"name": "r"}}}
        ]));
        let findings = validate(&filter, ROOT);
        assert_eq!(codes(&findings), ["MK0305"]);
        assert_eq!(findings[0].path, "spec.configPatches[1].patch.operation");
    }
}
