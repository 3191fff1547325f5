//! What an HTTP route does: forward (weighted destinations, rewrite,
//! timeout, retries, mirrors, hash policy), redirect or answer directly;
//! plus header operations, fault injection and CORS as per-route config.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::core::v3::{
    DataSource, HeaderValue, HeaderValueOption, RuntimeFractionalPercent, data_source,
    header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, RedirectAction, RetryPolicy, RouteAction, WeightedCluster,
    redirect_action, retry_policy, route, route_action, weighted_cluster,
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{FaultDelay, fault_delay};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy as EnvoyCors;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort,
};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
use envoy_types::pb::google::protobuf::Any;
use meshkeeper_crds::networking::common::{Percent, StringMatch};
use meshkeeper_crds::networking::virtual_service::{
    CorsPolicy, HeaderOperations, HttpBody, HttpFaultInjection, HttpRetry, HttpRoute,
    RedirectPortSelection, UnmatchedPreflights,
};

use super::RouteContext;
use super::matches::{regex, string_matcher};
use crate::envoy::{any, bool_value, percent_of_hundred, percent_of_million, seconds, u32_value};
use crate::error::CompileError;

pub const FAULT_FILTER: &str = "envoy.filters.http.fault";
pub const CORS_FILTER: &str = "envoy.filters.http.cors";

/// Istio's retry policy when a VirtualService sets none: two attempts on
/// connection failures and 503s, each to another host.
pub fn default_retry_policy() -> RetryPolicy {
    RetryPolicy {
        retry_on: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
            .into(),
        num_retries: Some(u32_value(2)),
        retriable_status_codes: vec![503],
        ..with_previous_hosts()
    }
}

fn with_previous_hosts() -> RetryPolicy {
    RetryPolicy {
        retry_host_predicate: vec![retry_policy::RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".into(),
            config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(
                any(&PreviousHostsPredicate {}),
            )),
        }],
        host_selection_retry_max_attempts: 5,
        ..Default::default()
    }
}

/// Forwarding to one cluster with Istio's route defaults (used when no
/// VirtualService routes the host).
pub fn forward_to(cluster: String) -> route::Action {
    route::Action::Route(RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster)),
        // Istio disables Envoy's 15s default: applications set their own.
        timeout: Some(seconds(0)),
        retry_policy: Some(default_retry_policy()),
        ..Default::default()
    })
}

/// The action of `http` (at `spec.http[i]`).
pub fn action(
    ctx: &RouteContext<'_>,
    http: &HttpRoute,
    at: &str,
) -> Result<route::Action, CompileError> {
    if let Some(redirect) = http.redirect.as_ref() {
        let mut out = RedirectAction {
            host_redirect: redirect.authority.clone().unwrap_or_default(),
            response_code: redirect_code(redirect.redirect_code.unwrap_or(301)) as i32,
            ..Default::default()
        };
        if let Some(uri) = redirect.uri.as_ref() {
            out.path_rewrite_specifier = Some(redirect_action::PathRewriteSpecifier::PathRedirect(
                uri.clone(),
            ));
        } else if let Some(prefix) = redirect.prefix_rewrite.as_ref() {
            out.path_rewrite_specifier = Some(
                redirect_action::PathRewriteSpecifier::PrefixRewrite(prefix.clone()),
            );
        }
        if let Some(port) = redirect.port {
            out.port_redirect = port;
        } else if redirect.derive_port == Some(RedirectPortSelection::FromRequestPort) {
            out.port_redirect = u32::from(ctx.port);
        }
        if let Some(scheme) = redirect.scheme.as_ref() {
            out.scheme_rewrite_specifier = Some(
                redirect_action::SchemeRewriteSpecifier::SchemeRedirect(scheme.clone()),
            );
        }
        return Ok(route::Action::Redirect(out));
    }
    if let Some(direct) = http.direct_response.as_ref() {
        let body = direct.body.as_ref().map(|b| DataSource {
            specifier: Some(match b {
                HttpBody::String(s) => data_source::Specifier::InlineString(s.clone()),
                HttpBody::Bytes(b) => data_source::Specifier::InlineString(b.clone()),
            }),
            ..Default::default()
        });
        return Ok(route::Action::DirectResponse(DirectResponseAction {
            status: direct.status.unwrap_or(200),
            body,
            ..Default::default()
        }));
    }
    forward(ctx, http, at).map(route::Action::Route)
}

fn redirect_code(code: u32) -> redirect_action::RedirectResponseCode {
    use redirect_action::RedirectResponseCode as C;
    match code {
        302 => C::Found,
        303 => C::SeeOther,
        307 => C::TemporaryRedirect,
        308 => C::PermanentRedirect,
        _ => C::MovedPermanently,
    }
}

fn forward(
    ctx: &RouteContext<'_>,
    http: &HttpRoute,
    at: &str,
) -> Result<RouteAction, CompileError> {
    let mut out = RouteAction {
        timeout: Some(seconds(0)),
        retry_policy: Some(default_retry_policy()),
        ..Default::default()
    };
    let destinations: Vec<_> = http
        .route
        .iter()
        .flatten()
        .enumerate()
        // Istio drops zero-weight destinations; a lone one gets 100.
        .filter(|(_, d)| d.weight != Some(0) || http.route.as_ref().is_some_and(|r| r.len() == 1))
        .collect();
    let mut first_host = None;
    if let [(i, only)] = destinations.as_slice() {
        let dest = only.destination.clone().unwrap_or_default();
        let (cluster, host) = ctx.cluster(&dest, &format!("{at}.route[{i}].destination"))?;
        first_host = Some((host, dest));
        out.cluster_specifier = Some(route_action::ClusterSpecifier::Cluster(cluster));
    } else {
        let mut clusters = Vec::new();
        for (i, d) in &destinations {
            let dest = d.destination.clone().unwrap_or_default();
            let (name, host) = ctx.cluster(&dest, &format!("{at}.route[{i}].destination"))?;
            first_host.get_or_insert((host, dest));
            let mut weight = weighted_cluster::ClusterWeight {
                name,
                weight: Some(u32_value(d.weight.unwrap_or(0).max(0).unsigned_abs())),
                ..Default::default()
            };
            if let Some(h) = d.headers.as_ref() {
                let (add, remove) = header_ops(h.request.as_ref());
                weight.request_headers_to_add = add;
                weight.request_headers_to_remove = remove;
                let (add, remove) = header_ops(h.response.as_ref());
                weight.response_headers_to_add = add;
                weight.response_headers_to_remove = remove;
            }
            clusters.push(weight);
        }
        out.cluster_specifier = Some(route_action::ClusterSpecifier::WeightedClusters(
            WeightedCluster {
                clusters,
                ..Default::default()
            },
        ));
    }
    if let Some(rewrite) = http.rewrite.as_ref() {
        if let Some(uri) = rewrite.uri.as_ref() {
            out.prefix_rewrite = uri.clone();
        }
        if let Some(r) = rewrite.uri_regex_rewrite.as_ref() {
            out.regex_rewrite = Some(RegexMatchAndSubstitute {
                pattern: Some(regex(r.r#match.as_deref().unwrap_or_default())),
                substitution: r.rewrite.clone().unwrap_or_default(),
            });
        }
        if let Some(authority) = rewrite.authority.as_ref() {
            out.host_rewrite_specifier = Some(
                route_action::HostRewriteSpecifier::HostRewriteLiteral(authority.clone()),
            );
        }
    }
    if let Some(t) = http.timeout.as_deref() {
        out.timeout = Some(ctx.duration(&format!("{at}.timeout"), t)?);
    }
    if let Some(retries) = http.retries.as_ref() {
        out.retry_policy = retry(ctx, retries, &format!("{at}.retries"))?;
    }
    out.request_mirror_policies = mirrors(ctx, http, at)?;
    if let Some((host, dest)) = first_host {
        out.hash_policy = ctx.hash_policy(&host, &dest);
    }
    Ok(out)
}

/// `retries`: attempts 0 turns retries off; numeric `retryOn` entries are
/// status codes.
fn retry(
    ctx: &RouteContext<'_>,
    r: &HttpRetry,
    at: &str,
) -> Result<Option<RetryPolicy>, CompileError> {
    let attempts = r.attempts.unwrap_or(2);
    if attempts <= 0 {
        return Ok(None);
    }
    let mut policy = default_retry_policy();
    policy.num_retries = Some(u32_value(attempts.unsigned_abs()));
    if let Some(on) = r.retry_on.as_deref() {
        let mut kinds = Vec::new();
        let mut codes = Vec::new();
        for part in on.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match part.parse::<u32>() {
                Ok(code) => codes.push(code),
                Err(_) => kinds.push(part.to_string()),
            }
        }
        if !codes.is_empty() && !kinds.iter().any(|k| k == "retriable-status-codes") {
            kinds.push("retriable-status-codes".into());
        }
        policy.retry_on = kinds.join(",");
        policy.retriable_status_codes = codes;
    }
    if let Some(t) = r.per_try_timeout.as_deref() {
        policy.per_try_timeout = Some(ctx.duration(&format!("{at}.perTryTimeout"), t)?);
    }
    if let Some(t) = r.backoff.as_deref() {
        policy.retry_back_off = Some(retry_policy::RetryBackOff {
            base_interval: Some(ctx.duration(&format!("{at}.backoff"), t)?),
            ..Default::default()
        });
    }
    if r.retry_ignore_previous_hosts == Some(false) {
        policy.retry_host_predicate.clear();
        policy.host_selection_retry_max_attempts = 0;
    }
    Ok(Some(policy))
}

fn mirrors(
    ctx: &RouteContext<'_>,
    http: &HttpRoute,
    at: &str,
) -> Result<Vec<route_action::RequestMirrorPolicy>, CompileError> {
    let mut out = Vec::new();
    let legacy_percent = http
        .mirror_percentage
        .as_ref()
        .and_then(|p| p.value.as_ref())
        .map(|v| v.as_f64())
        .or_else(|| {
            http.mirror_percent
                .or(http.mirror_percent_proto_name)
                .map(f64::from)
        });
    if let Some(dest) = http.mirror.as_ref() {
        let (cluster, _) = ctx.cluster(dest, &format!("{at}.mirror"))?;
        out.push(mirror(cluster, legacy_percent));
    }
    for (i, m) in http.mirrors.iter().flatten().enumerate() {
        let dest = m.destination.clone().unwrap_or_default();
        let (cluster, _) = ctx.cluster(&dest, &format!("{at}.mirrors[{i}].destination"))?;
        let percent = m
            .percentage
            .as_ref()
            .and_then(|p| p.value.as_ref())
            .map(|v| v.as_f64());
        out.push(mirror(cluster, percent));
    }
    Ok(out)
}

fn mirror(cluster: String, percent: Option<f64>) -> route_action::RequestMirrorPolicy {
    route_action::RequestMirrorPolicy {
        cluster,
        runtime_fraction: Some(RuntimeFractionalPercent {
            default_value: Some(percent_of_million(percent.unwrap_or(100.0))),
            ..Default::default()
        }),
        trace_sampled: Some(bool_value(false)),
        ..Default::default()
    }
}

/// `set` overwrites, `add` appends, `remove` removes.
pub fn header_ops(ops: Option<&HeaderOperations>) -> (Vec<HeaderValueOption>, Vec<String>) {
    let Some(ops) = ops else {
        return (Vec::new(), Vec::new());
    };
    let option = |(k, v): (&String, &String), action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.clone(),
            value: v.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    let mut add: Vec<_> = ops
        .set
        .iter()
        .flatten()
        .map(|kv| option(kv, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .collect();
    add.extend(
        ops.add
            .iter()
            .flatten()
            .map(|kv| option(kv, HeaderAppendAction::AppendIfExistsOrAdd)),
    );
    (add, ops.remove.clone().unwrap_or_default())
}

/// Fault injection and CORS, keyed by the HTTP filter that reads them.
pub fn per_filter_config(
    ctx: &RouteContext<'_>,
    http: &HttpRoute,
    at: &str,
) -> Result<HashMap<String, Any>, CompileError> {
    let mut out = HashMap::new();
    if let Some(fault) = http.fault.as_ref() {
        out.insert(
            FAULT_FILTER.into(),
            any(&fault_config(ctx, fault, &format!("{at}.fault"))?),
        );
    }
    if let Some(cors) = http.cors_policy.as_ref() {
        out.insert(
            CORS_FILTER.into(),
            any(&cors_config(ctx, cors, &format!("{at}.corsPolicy"))?),
        );
    }
    Ok(out)
}

fn percentage(
    p: Option<&Percent>,
    legacy: Option<i32>,
) -> envoy_types::pb::envoy::r#type::v3::FractionalPercent {
    match p.and_then(|p| p.value.as_ref()) {
        Some(v) => percent_of_million(v.as_f64()),
        None => match legacy {
            Some(n) => percent_of_hundred(n.max(0).unsigned_abs()),
            None => percent_of_million(100.0),
        },
    }
}

fn fault_config(
    ctx: &RouteContext<'_>,
    f: &HttpFaultInjection,
    at: &str,
) -> Result<HttpFault, CompileError> {
    let mut out = HttpFault::default();
    if let Some(delay) = f.delay.as_ref() {
        let fixed = delay
            .fixed_delay
            .as_deref()
            .map(|t| ctx.duration(&format!("{at}.delay.fixedDelay"), t))
            .transpose()?;
        if let Some(fixed) = fixed {
            out.delay = Some(FaultDelay {
                fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(fixed)),
                percentage: Some(percentage(delay.percentage.as_ref(), delay.percent)),
            });
        }
    }
    if let Some(abort) = f.abort.as_ref() {
        let error_type = if let Some(status) = abort.http_status {
            fault_abort::ErrorType::HttpStatus(status.max(0).unsigned_abs())
        } else if let Some(code) = abort.grpc_status.as_deref() {
            fault_abort::ErrorType::GrpcStatus(grpc_code(code).ok_or_else(|| {
                ctx.error(
                    &format!("{at}.abort.grpcStatus"),
                    format!("unknown gRPC status `{code}`"),
                )
            })?)
        } else {
            return Err(ctx.error(
                &format!("{at}.abort"),
                "needs httpStatus or grpcStatus".into(),
            ));
        };
        out.abort = Some(FaultAbort {
            error_type: Some(error_type),
            percentage: Some(percentage(abort.percentage.as_ref(), None)),
            ..Default::default()
        });
    }
    Ok(out)
}

fn grpc_code(name: &str) -> Option<u32> {
    const CODES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    CODES
        .iter()
        .position(|c| c.eq_ignore_ascii_case(name))
        .and_then(|i| u32::try_from(i).ok())
        .or_else(|| name.parse().ok())
}

fn cors_config(
    ctx: &RouteContext<'_>,
    c: &CorsPolicy,
    at: &str,
) -> Result<EnvoyCors, CompileError> {
    let mut origins: Vec<_> = c
        .allow_origins
        .iter()
        .flatten()
        .map(string_matcher)
        .collect();
    // The deprecated exact-origin list.
    origins.extend(
        c.allow_origin
            .iter()
            .flatten()
            .map(|o| string_matcher(&StringMatch::Exact(o.clone()))),
    );
    let max_age = c
        .max_age
        .as_deref()
        .map(|t| ctx.duration(&format!("{at}.maxAge"), t))
        .transpose()?
        .map(|d| d.seconds.to_string())
        .unwrap_or_default();
    Ok(EnvoyCors {
        allow_origin_string_match: origins,
        allow_methods: c.allow_methods.clone().unwrap_or_default().join(","),
        allow_headers: c.allow_headers.clone().unwrap_or_default().join(","),
        expose_headers: c.expose_headers.clone().unwrap_or_default().join(","),
        max_age,
        allow_credentials: c.allow_credentials.map(bool_value),
        forward_not_matching_preflights: c
            .unmatched_preflights
            .map(|u| bool_value(u != UnmatchedPreflights::Ignore)),
        ..Default::default()
    })
}
