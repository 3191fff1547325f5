//! VirtualService rules: hosts and gateways, HTTP rules (one action, weights,
//! destinations, retries, timeouts, faults, mirrors, CORS, matches), TLS and
//! TCP rules, and the warnings for unreachable or duplicate matches.

use std::collections::BTreeMap;

use meshkeeper_crds::networking::common::StringMatch;
use meshkeeper_crds::networking::virtual_service::{
    CorsPolicy, Destination, HeaderMatch, HeaderOperations, Headers, HttpBody, HttpFaultInjection,
    HttpMatchRequest, HttpRetry, HttpRoute, L4MatchAttributes, RouteDestination, TlsRoute,
    VirtualServiceSpec,
};

use super::common::{self as c, Findings, HostRules};

pub const ROUTE_ACTION: &str = "MK0111";
pub const WEIGHT: &str = "MK0112";
pub const DESTINATION: &str = "MK0113";
pub const RETRIES: &str = "MK0114";
pub const FAULT: &str = "MK0115";
pub const MIRROR: &str = "MK0116";
pub const CORS: &str = "MK0117";
pub const REDIRECT: &str = "MK0118";
pub const L4_ROUTE: &str = "MK0119";
pub const DELEGATE: &str = "MK0120";
pub const UNREACHABLE: &str = "MK0121";
pub const DUPLICATE_MATCH: &str = "MK0123";
pub const GATEWAY_REF: &str = "MK0124";
pub const MATCH_GATEWAY_UNBOUND: &str = "MK0125";

const MAX_DIRECT_RESPONSE_BODY: usize = 1 << 20;
const LARGE_DIRECT_RESPONSE_BODY: usize = 100 << 10;

/// gRPC status names an abort may return.
const GRPC_STATUSES: &[&str] = &[
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

/// Envoy's retry conditions that Istio accepts in `retryOn` (besides
/// numeric status codes).
const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

const CORS_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "*",
];

/// `namespace` is the VirtualService's own (short gateway names resolve
/// against it).
pub fn validate(spec: &VirtualServiceSpec, namespace: &str, out: &mut Findings) {
    let hosts = spec.hosts.as_deref().unwrap_or_default();
    let gateways = spec.gateways.as_deref().unwrap_or_default();
    let http = spec.http.as_deref().unwrap_or_default();
    let tls = spec.tls.as_deref().unwrap_or_default();
    let tcp = spec.tcp.as_deref().unwrap_or_default();
    // Istio treats a VirtualService without hosts as a delegate: only another
    // VirtualService's `delegate` reaches it, so it may carry HTTP rules only.
    let is_delegate = hosts.is_empty();

    if http.is_empty() && tls.is_empty() && tcp.is_empty() {
        out.error(
            ROUTE_ACTION,
            "spec",
            "a VirtualService needs at least one rule in http, tls or tcp",
        );
    }
    if is_delegate {
        check_delegate_shape(gateways, tls, tcp, out);
        if http.is_empty() {
            out.error(
                c::HOSTS_REQUIRED,
                "spec.hosts",
                "spec.hosts is empty: name at least one host (a delegate VirtualService without hosts needs http rules)",
            );
        }
    }
    check_hosts(hosts, gateways, out);
    check_gateway_refs(gateways, "spec.gateways", out);
    c::check_export_to(spec.export_to.as_ref(), namespace, false, out);

    for (i, rule) in http.iter().enumerate() {
        check_http_route(rule, &format!("spec.http[{i}]"), is_delegate, out);
    }
    warn_unreachable_and_duplicates(http, out);
    for (i, rule) in tls.iter().enumerate() {
        check_tls_route(rule, hosts, &format!("spec.tls[{i}]"), out);
    }
    for (i, rule) in tcp.iter().enumerate() {
        let path = format!("spec.tcp[{i}]");
        for (j, m) in rule.r#match.iter().flatten().enumerate() {
            check_l4_match(m, &format!("{path}.match[{j}]"), out);
        }
        check_l4_routes(rule.route.as_deref(), &path, "TCP", out);
    }
    warn_match_gateways_not_bound(spec, namespace, out);
}

/// A gateway reference in the one spelling Istio resolves every form to:
/// `mesh` or `namespace/name`. Short names live in the VirtualService's
/// namespace; `name.namespace[.svc.<domain>]` is the legacy form.
fn canonical_gateway(reference: &str, namespace: &str) -> String {
    if reference == "mesh" || reference.contains('/') {
        return reference.to_owned();
    }
    match reference.split_once('.') {
        Some((name, rest)) => {
            let gateway_namespace = rest.split('.').next().unwrap_or(rest);
            format!("{gateway_namespace}/{name}")
        }
        None => format!("{namespace}/{reference}"),
    }
}

/// Istio binds a VirtualService only to the gateways of its top-level
/// `gateways` (`mesh` when empty); a match's `gateways` then narrows where
/// each rule applies. A match naming a gateway outside that list can never
/// apply there: Istio accepts it, so it is a warning, with the fix.
fn warn_match_gateways_not_bound(spec: &VirtualServiceSpec, namespace: &str, out: &mut Findings) {
    let top_level = spec.gateways.as_deref().unwrap_or_default();
    let bound: Vec<String> = if top_level.is_empty() {
        vec!["mesh".to_owned()]
    } else {
        top_level
            .iter()
            .map(|g| canonical_gateway(g, namespace))
            .collect()
    };
    let shown = if top_level.is_empty() {
        "no spec.gateways, so only `mesh` (the sidecars)".to_owned()
    } else {
        format!("spec.gateways [{}]", top_level.join(", "))
    };
    let http = spec
        .http
        .iter()
        .flatten()
        .enumerate()
        .flat_map(|(i, rule)| {
            rule.r#match
                .iter()
                .flatten()
                .enumerate()
                .map(move |(j, m)| {
                    (
                        format!("spec.http[{i}].match[{j}].gateways"),
                        m.gateways.as_deref(),
                    )
                })
        });
    let tls = spec.tls.iter().flatten().enumerate().flat_map(|(i, rule)| {
        rule.r#match
            .iter()
            .flatten()
            .enumerate()
            .map(move |(j, m)| {
                (
                    format!("spec.tls[{i}].match[{j}].gateways"),
                    m.gateways.as_deref(),
                )
            })
    });
    let tcp = spec.tcp.iter().flatten().enumerate().flat_map(|(i, rule)| {
        rule.r#match
            .iter()
            .flatten()
            .enumerate()
            .map(move |(j, m)| {
                (
                    format!("spec.tcp[{i}].match[{j}].gateways"),
                    m.gateways.as_deref(),
                )
            })
    });
    for (path, gateways) in http.chain(tls).chain(tcp) {
        for (k, gateway) in gateways.unwrap_or_default().iter().enumerate() {
            if bound.contains(&canonical_gateway(gateway, namespace)) {
                continue;
            }
            out.warning(
                MATCH_GATEWAY_UNBOUND,
                format!("{path}[{k}]"),
                format!(
                    "gateway `{gateway}` is not one this VirtualService is bound to ({shown}), \
                     so this match never applies there; add `{gateway}` to spec.gateways or \
                     remove it from the match"
                ),
            );
        }
    }
}

fn check_delegate_shape(
    gateways: &[String],
    tls: &[TlsRoute],
    tcp: &[meshkeeper_crds::networking::virtual_service::TcpRoute],
    out: &mut Findings,
) {
    let why = "a VirtualService without hosts is a delegate, which only carries http rules";
    if !gateways.is_empty() {
        out.error(
            DELEGATE,
            "spec.gateways",
            format!("{why}: remove gateways or add hosts"),
        );
    }
    if !tls.is_empty() {
        out.error(
            DELEGATE,
            "spec.tls",
            format!("{why}: remove tls or add hosts"),
        );
    }
    if !tcp.is_empty() {
        out.error(
            DELEGATE,
            "spec.tcp",
            format!("{why}: remove tcp or add hosts"),
        );
    }
}

fn check_hosts(hosts: &[String], gateways: &[String], out: &mut Findings) {
    // Sidecars would capture all traffic for `*`, which Istio forbids for
    // rules that apply to the mesh.
    let applies_to_mesh = gateways.is_empty() || gateways.iter().any(|g| g == "mesh");
    for (i, host) in hosts.iter().enumerate() {
        let path = format!("spec.hosts[{i}]");
        if host == "*" && applies_to_mesh {
            out.error(
                c::HOST,
                path,
                "host `*` is not allowed for a VirtualService that applies to the mesh (no gateways, or `mesh` listed); name the hosts or bind it to gateways only",
            );
            continue;
        }
        c::check_host(
            host,
            HostRules {
                star: true,
                ip: true,
            },
            &path,
            out,
        );
    }
}

/// `mesh`, `name`, or `namespace/name` of a Gateway.
fn check_gateway_refs(gateways: &[String], path: &str, out: &mut Findings) {
    for (i, g) in gateways.iter().enumerate() {
        if g == "mesh" {
            continue;
        }
        let valid = match g.split_once('/') {
            Some((ns, name)) => c::is_dns1123_label(ns) && c::is_dns1123_label(name),
            None => c::host_problem(g, HostRules::default()).is_none(),
        };
        if valid
            && !g.contains('/')
            && let Some((name, ns)) = g.split_once('.')
        {
            // `name.namespace` is the legacy spelling of `namespace/name`.
            out.warning(
                GATEWAY_REF,
                format!("{path}[{i}]"),
                format!(
                    "gateway `{g}` uses the legacy `<name>.<namespace>` form; write `{}/{name}`",
                    ns.split('.').next().unwrap_or(ns)
                ),
            );
        }
        if !valid {
            out.error(
                GATEWAY_REF,
                format!("{path}[{i}]"),
                format!("gateway `{g}` is not `mesh`, `<name>` or `<namespace>/<name>` with DNS-1123 names"),
            );
        }
    }
}

fn check_http_route(rule: &HttpRoute, path: &str, in_delegate: bool, out: &mut Findings) {
    let routes = rule.route.as_deref().unwrap_or_default();
    check_one_action(rule, routes, path, out);
    if let Some(delegate) = &rule.delegate {
        if in_delegate {
            out.error(
                DELEGATE,
                format!("{path}.delegate"),
                "a delegate VirtualService cannot delegate again; use route, redirect or directResponse",
            );
        }
        // Istio admits a delegate it cannot find (no name, a namespace that
        // cannot exist): the rule is then skipped and its requests fall
        // through to the next rules. A warning, as for any missing delegate.
        match delegate.name.as_deref() {
            None | Some("") => out.warning(
                DELEGATE,
                format!("{path}.delegate.name"),
                "delegate.name is empty, so no VirtualService is found and this rule is \
                 skipped (its requests fall through to the next rules); name the delegate \
                 VirtualService",
            ),
            Some(_) => {}
        }
        if let Some(ns) = &delegate.namespace
            && !c::is_dns1123_label(ns)
        {
            out.warning(
                DELEGATE,
                format!("{path}.delegate.namespace"),
                format!(
                    "namespace `{ns}` is not a DNS-1123 label, so no delegate is found there and \
                     this rule is skipped; use the delegate's namespace (lowercase letters, \
                     digits and `-`)"
                ),
            );
        }
    }
    for (j, m) in rule.r#match.iter().flatten().enumerate() {
        check_http_match(m, &format!("{path}.match[{j}]"), out);
    }
    check_weights(
        routes.iter().map(|r| r.weight),
        &format!("{path}.route"),
        out,
    );
    for (j, r) in routes.iter().enumerate() {
        let rpath = format!("{path}.route[{j}]");
        check_destination(r.destination.as_ref(), &format!("{rpath}.destination"), out);
        check_header_operations(r.headers.as_ref(), &format!("{rpath}.headers"), out);
    }
    check_redirect_and_rewrite(rule, path, out);
    c::check_opt_duration(rule.timeout.as_ref(), &format!("{path}.timeout"), out);
    if let Some(retries) = &rule.retries {
        check_retries(retries, &format!("{path}.retries"), out);
    }
    if let Some(fault) = &rule.fault {
        check_fault(fault, &format!("{path}.fault"), out);
    }
    check_mirrors(rule, path, out);
    if let Some(cors) = &rule.cors_policy {
        check_cors(cors, &format!("{path}.corsPolicy"), out);
    }
    check_header_operations(rule.headers.as_ref(), &format!("{path}.headers"), out);
}

fn check_one_action(
    rule: &HttpRoute,
    routes: &[meshkeeper_crds::networking::virtual_service::HttpRouteDestination],
    path: &str,
    out: &mut Findings,
) {
    let set: Vec<&str> = [
        (!routes.is_empty(), "route"),
        (rule.redirect.is_some(), "redirect"),
        (rule.direct_response.is_some(), "directResponse"),
        (rule.delegate.is_some(), "delegate"),
    ]
    .into_iter()
    .filter_map(|(present, name)| present.then_some(name))
    .collect();
    match set.len() {
        1 => {}
        0 => out.error(
            ROUTE_ACTION,
            path,
            "the HTTP rule has no action: set exactly one of route, redirect, directResponse or delegate",
        ),
        _ => out.error(
            ROUTE_ACTION,
            path,
            format!(
                "the HTTP rule sets {}: exactly one of route, redirect, directResponse or delegate is allowed",
                set.join(" and ")
            ),
        ),
    }
}

fn check_http_match(m: &HttpMatchRequest, path: &str, out: &mut Findings) {
    for (field, value) in [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = value {
            c::check_string_match(sm, &format!("{path}.{field}"), out);
        }
    }
    for (field, map, names_are_headers) in [
        ("headers", &m.headers, true),
        ("withoutHeaders", &m.without_headers, true),
        ("queryParams", &m.query_params, false),
    ] {
        check_header_matches(
            map.as_ref(),
            &format!("{path}.{field}"),
            names_are_headers,
            out,
        );
    }
    if let Some(port) = m.port {
        c::check_port_number(port, &format!("{path}.port"), out);
    }
    check_gateway_refs(
        m.gateways.as_deref().unwrap_or_default(),
        &format!("{path}.gateways"),
        out,
    );
}

fn check_header_matches(
    map: Option<&BTreeMap<String, HeaderMatch>>,
    path: &str,
    names_are_headers: bool,
    out: &mut Findings,
) {
    for (name, hm) in map.into_iter().flatten() {
        let hpath = format!("{path}.{name}");
        // `@request.auth.claims.<claim>` matches a JWT claim, not a header
        // (Istio's claim-based routing); Istio accepts it in any
        // VirtualService.
        if names_are_headers && !c::is_jwt_claim_route(name) {
            c::check_header_name(name, &hpath, out);
        }
        if let HeaderMatch::Value(sm) = hm {
            c::check_string_match(sm, &hpath, out);
        }
    }
}

/// Weights: none negative, and when traffic is split the split must send
/// traffic somewhere.
fn check_weights(weights: impl Iterator<Item = Option<i32>>, path: &str, out: &mut Findings) {
    let weights: Vec<i32> = weights.map(|w| w.unwrap_or(0)).collect();
    let mut total: i64 = 0;
    for (j, w) in weights.iter().enumerate() {
        if *w < 0 {
            out.error(
                WEIGHT,
                format!("{path}[{j}].weight"),
                format!("weight {w} is negative: weights must be 0 or more"),
            );
        }
        total += i64::from(*w);
    }
    if weights.len() > 1 && weights.iter().all(|w| *w == 0) {
        out.error(
            WEIGHT,
            path,
            format!(
                "all {} destinations have weight 0, so no traffic would be sent; give at least one a positive weight",
                weights.len()
            ),
        );
    }
    if total > i64::from(i32::MAX) {
        out.error(
            WEIGHT,
            path,
            format!(
                "the weights add up to {total}, more than the maximum {}",
                i32::MAX
            ),
        );
    }
}

pub fn check_destination(dest: Option<&Destination>, path: &str, out: &mut Findings) {
    let Some(dest) = dest else {
        out.error(
            DESTINATION,
            path,
            "destination is required (with at least a host)",
        );
        return;
    };
    let hpath = format!("{path}.host");
    match dest.host.as_deref() {
        None | Some("") => out.error(
            DESTINATION,
            hpath,
            "destination host is required: a service name such as `reviews` or `reviews.default.svc.cluster.local`",
        ),
        Some("*") => out.error(
            DESTINATION,
            hpath,
            "destination host `*` is not allowed: name one service",
        ),
        Some(host) => c::check_host(host, HostRules::default(), &hpath, out),
    }
    if let Some(subset) = &dest.subset
        && !c::is_host_label(subset)
    {
        out.error(
            DESTINATION,
            format!("{path}.subset"),
            format!(
                "subset `{subset}` is not a DNS-1123 label (letters, digits and `-`, at most 63)"
            ),
        );
    }
    if let Some(port) = &dest.port {
        c::check_port_number(
            port.number.unwrap_or(0),
            &format!("{path}.port.number"),
            out,
        );
    }
}

fn check_redirect_and_rewrite(rule: &HttpRoute, path: &str, out: &mut Findings) {
    if let Some(r) = &rule.redirect {
        let rpath = format!("{path}.redirect");
        if r.uri.is_none()
            && r.prefix_rewrite.is_none()
            && r.authority.is_none()
            && r.scheme.is_none()
            && r.port.is_none()
            && r.derive_port.is_none()
        {
            out.error(
                REDIRECT,
                &rpath,
                "a redirect must change something: set uri, prefixRewrite, authority, scheme, port or derivePort",
            );
        }
        if r.prefix_rewrite.is_some() {
            if r.uri.is_some() {
                out.error(
                    REDIRECT,
                    &rpath,
                    "set either uri or prefixRewrite, not both",
                );
            }
            // The prefix to replace is the one a prefix match matched; Istio
            // refuses any other kind of uri match here.
            for (i, m) in rule.r#match.iter().flatten().enumerate() {
                if let Some(uri) = &m.uri
                    && !matches!(uri, StringMatch::Prefix(_))
                {
                    out.error(
                        REDIRECT,
                        format!("{path}.match[{i}].uri"),
                        "redirect.prefixRewrite needs every uri match of the rule to be a prefix match",
                    );
                }
            }
        }
        if r.port.is_some() && r.derive_port.is_some() {
            out.error(REDIRECT, &rpath, "set either port or derivePort, not both");
        }
        if let Some(port) = r.port {
            c::check_port_number(port, &format!("{rpath}.port"), out);
        }
        if let Some(scheme) = &r.scheme
            && scheme != "http"
            && scheme != "https"
        {
            out.error(
                REDIRECT,
                format!("{rpath}.scheme"),
                format!("redirect scheme `{scheme}` is not `http` or `https`"),
            );
        }
        if let Some(code) = r.redirect_code
            && !(300..=399).contains(&code)
        {
            out.error(
                REDIRECT,
                format!("{rpath}.redirectCode"),
                format!("redirect code {code} is not a 3xx status: allowed 300-399"),
            );
        }
        if rule.rewrite.is_some() {
            out.error(
                REDIRECT,
                format!("{path}.rewrite"),
                "rewrite cannot be combined with redirect: the redirect already sets the new URL",
            );
        }
    }
    if let Some(d) = &rule.direct_response {
        let status = d.status.unwrap_or(0);
        if !(200..=599).contains(&status) {
            out.error(
                REDIRECT,
                format!("{path}.directResponse.status"),
                format!("directResponse status {status} is out of range: allowed 200-599"),
            );
        }
        let size = match &d.body {
            Some(HttpBody::String(s) | HttpBody::Bytes(s)) => s.len(),
            None => 0,
        };
        let bpath = format!("{path}.directResponse.body");
        // Every proxy holds the body in its route table, so large bodies
        // cost memory everywhere and slow configuration pushes.
        if size > MAX_DIRECT_RESPONSE_BODY {
            out.error(
                REDIRECT,
                bpath,
                format!("the body is {size} bytes; at most {MAX_DIRECT_RESPONSE_BODY} (1 MiB) are allowed"),
            );
        } else if size > LARGE_DIRECT_RESPONSE_BODY {
            out.warning(
                REDIRECT,
                bpath,
                format!(
                    "the body is {size} bytes; bodies over 100 KiB slow down configuration pushes"
                ),
            );
        }
    }
    if let Some(rw) = &rule.rewrite {
        let rwpath = format!("{path}.rewrite");
        if rw.uri.is_none() && rw.uri_regex_rewrite.is_none() && rw.authority.is_none() {
            out.error(
                REDIRECT,
                &rwpath,
                "a rewrite must change something: set uri, uriRegexRewrite or authority",
            );
        }
        if let Some(rr) = &rw.uri_regex_rewrite {
            if rw.uri.is_some() {
                out.error(
                    REDIRECT,
                    &rwpath,
                    "set either rewrite.uri or rewrite.uriRegexRewrite, not both",
                );
            }
            match rr.r#match.as_deref() {
                None | Some("") => out.error(
                    REDIRECT,
                    format!("{rwpath}.uriRegexRewrite.match"),
                    "uriRegexRewrite.match is required: the RE2 regex to rewrite",
                ),
                Some(re) => c::check_regex(re, &format!("{rwpath}.uriRegexRewrite.match"), out),
            }
            if rr.rewrite.as_deref().is_none_or(str::is_empty) {
                out.error(
                    REDIRECT,
                    format!("{rwpath}.uriRegexRewrite.rewrite"),
                    "uriRegexRewrite.rewrite is required: the replacement (may use \\1 groups)",
                );
            }
        }
    }
}

fn check_retries(r: &HttpRetry, path: &str, out: &mut Findings) {
    if let Some(a) = r.attempts
        && a < 0
    {
        out.error(
            RETRIES,
            format!("{path}.attempts"),
            format!("retry attempts {a} is negative: use 0 (no retries) or more"),
        );
    }
    // Istio reads a missing `attempts` as 0, which turns retries off; any
    // other retry setting next to it would be silently ignored.
    // An empty retryOn is the same as none, for Istio too.
    let retry_on = r.retry_on.as_deref().filter(|on| !on.is_empty());
    if r.attempts.unwrap_or(0) == 0
        && (r.per_try_timeout.is_some()
            || retry_on.is_some()
            || r.retry_remote_localities.is_some())
    {
        out.error(
            RETRIES,
            format!("{path}.attempts"),
            format!(
                "attempts is {}, which disables retries, yet perTryTimeout, retryOn or retryRemoteLocalities is set; set attempts to 1 or more, or remove them",
                r.attempts.unwrap_or(0)
            ),
        );
    }
    c::check_opt_duration(
        r.per_try_timeout.as_ref(),
        &format!("{path}.perTryTimeout"),
        out,
    );
    c::check_opt_duration(r.backoff.as_ref(), &format!("{path}.backoff"), out);
    if let Some(on) = retry_on {
        for policy in on.split(',').map(str::trim) {
            if !RETRY_ON.contains(&policy) && policy.parse::<u16>().is_err() {
                out.error(
                    RETRIES,
                    format!("{path}.retryOn"),
                    format!(
                        "`{policy}` is not a retry condition: use an HTTP status code or one of {}",
                        RETRY_ON.join(", ")
                    ),
                );
            }
        }
    }
}

fn check_fault(f: &HttpFaultInjection, path: &str, out: &mut Findings) {
    if f.delay.is_none() && f.abort.is_none() {
        out.error(
            FAULT,
            path,
            "fault injection needs a delay, an abort or both",
        );
    }
    if let Some(d) = &f.delay {
        let dpath = format!("{path}.delay");
        if d.percent.is_some() {
            c::warn_deprecated(
                &format!("{dpath}.percent"),
                "delay.percent",
                "delay.percentage.value",
                out,
            );
        }
        // Istio does not check the deprecated integer percent (the proxy
        // clamps it), so a value out of range only warns.
        if let Some(percent) = d.percent.filter(|p| !(0..=100).contains(p)) {
            out.warning(
                c::PERCENT,
                format!("{dpath}.percent"),
                format!(
                    "delay.percent {percent} is outside 0-100, so the proxy delays no request or \
                     every one; use delay.percentage.value between 0 and 100"
                ),
            );
        }
        c::check_percent(d.percentage.as_ref(), &format!("{dpath}.percentage"), out);
        match (&d.fixed_delay, &d.exponential_delay) {
            (Some(fixed), None) => c::check_duration(fixed, &format!("{dpath}.fixedDelay"), out),
            (None, Some(_)) => out.error(
                FAULT,
                format!("{dpath}.exponentialDelay"),
                "exponentialDelay is not supported by Istio's proxies; use fixedDelay",
            ),
            // Istio accepts this and leaves the delay out of the proxy
            // config: nothing breaks, but nothing is delayed either.
            (None, None) => out.warning(
                FAULT,
                &dpath,
                "the delay sets no fixedDelay, so Istio drops it and no request is delayed; set fixedDelay (e.g. `5s`)",
            ),
            (Some(_), Some(_)) => out.error(
                FAULT,
                &dpath,
                "set either fixedDelay or exponentialDelay, not both",
            ),
        }
    }
    if let Some(a) = &f.abort {
        let apath = format!("{path}.abort");
        c::check_percent(a.percentage.as_ref(), &format!("{apath}.percentage"), out);
        let set = [
            a.http_status.is_some(),
            a.grpc_status.is_some(),
            a.http2_error.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set == 0 {
            // Istio lets this through with a warning: the abort does nothing.
            out.warning(
                FAULT,
                &apath,
                "the abort sets none of httpStatus, grpcStatus, http2Error, so it has no effect; set exactly one",
            );
        } else if set > 1 {
            out.error(
                FAULT,
                &apath,
                format!("an abort sets {set} of httpStatus, grpcStatus, http2Error: exactly one is allowed"),
            );
        }
        if let Some(grpc) = &a.grpc_status
            && !GRPC_STATUSES.contains(&grpc.as_str())
        {
            out.error(
                FAULT,
                format!("{apath}.grpcStatus"),
                format!(
                    "`{grpc}` is not a gRPC status name: use one of {}",
                    GRPC_STATUSES.join(", ")
                ),
            );
        }
        if let Some(status) = a.http_status
            && !(200..=599).contains(&status)
        {
            out.error(
                FAULT,
                format!("{apath}.httpStatus"),
                format!("abort httpStatus {status} is out of range: allowed 200-599"),
            );
        }
        if a.http2_error.is_some() {
            out.error(
                FAULT,
                format!("{apath}.http2Error"),
                "http2Error aborts are not supported by Istio's proxies; use httpStatus or grpcStatus",
            );
        }
    }
}

fn check_mirrors(rule: &HttpRoute, path: &str, out: &mut Findings) {
    if let Some(m) = &rule.mirror {
        check_destination(Some(m), &format!("{path}.mirror"), out);
    }
    if rule.mirror.is_some() && rule.mirrors.as_ref().is_some_and(|m| !m.is_empty()) {
        out.error(
            MIRROR,
            format!("{path}.mirrors"),
            "set either mirror or mirrors, not both",
        );
    }
    for (field, value) in [
        ("mirrorPercent", rule.mirror_percent),
        ("mirror_percent", rule.mirror_percent_proto_name),
    ] {
        if let Some(v) = value {
            let fpath = format!("{path}.{field}");
            c::warn_deprecated(&fpath, field, "mirrorPercentage.value", out);
            c::check_percent_value(f64::from(v), &fpath, out);
        }
    }
    c::check_percent(
        rule.mirror_percentage.as_ref(),
        &format!("{path}.mirrorPercentage"),
        out,
    );
    for (k, m) in rule.mirrors.iter().flatten().enumerate() {
        let mpath = format!("{path}.mirrors[{k}]");
        check_destination(m.destination.as_ref(), &format!("{mpath}.destination"), out);
        c::check_percent(m.percentage.as_ref(), &format!("{mpath}.percentage"), out);
    }
}

fn check_cors(cors: &CorsPolicy, path: &str, out: &mut Findings) {
    if cors.allow_origin.is_some() {
        c::warn_deprecated(
            &format!("{path}.allowOrigin"),
            "allowOrigin",
            "allowOrigins (string matches)",
            out,
        );
    }
    for (i, origin) in cors.allow_origins.iter().flatten().enumerate() {
        let opath = format!("{path}.allowOrigins[{i}]");
        if let StringMatch::Exact(s) | StringMatch::Prefix(s) = origin
            && s.is_empty()
        {
            out.error(CORS, &opath, "an allowed origin cannot be empty");
        }
        c::check_string_match(origin, &opath, out);
    }
    for (i, method) in cors.allow_methods.iter().flatten().enumerate() {
        if !CORS_METHODS.contains(&method.as_str()) {
            out.error(
                CORS,
                format!("{path}.allowMethods[{i}]"),
                format!(
                    "`{method}` is not an HTTP method: use one of {}",
                    CORS_METHODS.join(", ")
                ),
            );
        }
    }
    for (field, names) in [
        ("allowHeaders", &cors.allow_headers),
        ("exposeHeaders", &cors.expose_headers),
    ] {
        for (i, name) in names.iter().flatten().enumerate() {
            if name != "*" {
                c::check_header_name(name, &format!("{path}.{field}[{i}]"), out);
            }
        }
    }
    if let Some(max_age) = &cors.max_age {
        let mpath = format!("{path}.maxAge");
        c::check_duration(max_age, &mpath, out);
        // Browsers take Access-Control-Max-Age in whole seconds.
        if let Ok(n) = c::parse_duration(max_age)
            && n % 1_000_000_000 != 0
        {
            out.error(
                CORS,
                mpath,
                format!(
                    "maxAge `{max_age}` is not a whole number of seconds, which the header requires"
                ),
            );
        }
    }
}

fn check_header_operations(headers: Option<&Headers>, path: &str, out: &mut Findings) {
    let Some(h) = headers else { return };
    for (side, ops) in [("request", &h.request), ("response", &h.response)] {
        let Some(HeaderOperations { set, add, remove }) = ops else {
            continue;
        };
        for (op, map) in [("set", set), ("add", add)] {
            for name in map.iter().flat_map(|m| m.keys()) {
                let target = HeaderTarget { side, op };
                check_header_operation_name(
                    name,
                    target,
                    &format!("{path}.{side}.{op}.{name}"),
                    out,
                );
            }
        }
        for (i, name) in remove.iter().flatten().enumerate() {
            let target = HeaderTarget { side, op: "remove" };
            check_header_operation_name(name, target, &format!("{path}.{side}.remove[{i}]"), out);
        }
    }
}

/// Which header operation a name is in: `request`/`response` and
/// `set`/`add`/`remove`.
#[derive(Clone, Copy)]
struct HeaderTarget {
    side: &'static str,
    op: &'static str,
}

impl HeaderTarget {
    /// Setting or adding a request header may name the authority (`host`
    /// or `:authority`): Istio turns it into the route's host rewrite.
    fn may_name_authority(self) -> bool {
        self.side == "request" && self.op != "remove"
    }
}

/// A header name in a header operation, with Istio's rules: an empty name,
/// a `:`-prefixed one (pseudo-headers cannot be changed; `:authority` is
/// allowed where a request header is set or added) and `host` outside a
/// request set/add are errors, as in Istio's webhook. A name with a line
/// break or NUL is an error too: Envoy refuses it in the route
/// configuration, so the routes never reach the proxies. Any other name
/// that is not an HTTP token (`bad:h`, a space) is admitted, as Istio does,
/// with a warning: Envoy sends it, but peers may reject the message.
fn check_header_operation_name(name: &str, target: HeaderTarget, path: &str, out: &mut Findings) {
    let HeaderTarget { side, op } = target;
    let is_authority = name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host");
    if name.is_empty() {
        out.error(
            c::HEADER_NAME,
            path,
            format!("a header name in {side}.{op} cannot be empty; name the header"),
        );
    } else if is_authority && target.may_name_authority() {
        // Istio's rewrite of the authority.
    } else if name.starts_with(':') {
        let allowed = if target.may_name_authority() {
            " (only `:authority` may be set, which rewrites the host)"
        } else {
            ""
        };
        out.error(
            c::HEADER_NAME,
            path,
            format!(
                "header `{name}` in {side}.{op}: pseudo-headers (a leading `:`) cannot be changed \
                 by header operations{allowed}; use a regular header name"
            ),
        );
    } else if name.eq_ignore_ascii_case("host") {
        out.error(
            c::HEADER_NAME,
            path,
            format!(
                "header `{name}` in {side}.{op}: the Host header cannot be changed here; set it \
                 with request.set or rewrite.authority"
            ),
        );
    } else if name.contains(['\r', '\n', '\0']) {
        out.error(
            c::HEADER_NAME,
            path,
            format!(
                "header name {name:?} in {side}.{op} contains a line break or NUL, which Envoy \
                 refuses in a route configuration (the routes would not reach the proxies); \
                 remove it"
            ),
        );
    } else if let Some(problem) = c::header_name_problem(name) {
        out.warning(
            c::HEADER_NAME,
            path,
            format!(
                "header name `{name}` in {side}.{op} is not a valid HTTP header name ({problem}); \
                 Envoy sends it, but clients and servers may reject the message; use a name of \
                 letters, digits and `-`"
            ),
        );
    }
}

fn check_tls_route(rule: &TlsRoute, hosts: &[String], path: &str, out: &mut Findings) {
    let matches = rule.r#match.as_deref().unwrap_or_default();
    if matches.is_empty() {
        out.error(
            L4_ROUTE,
            format!("{path}.match"),
            "a TLS rule needs at least one match with sniHosts",
        );
    }
    for (j, m) in matches.iter().enumerate() {
        let mpath = format!("{path}.match[{j}]");
        let sni = m.sni_hosts.as_deref().unwrap_or_default();
        if sni.is_empty() {
            out.error(
                L4_ROUTE,
                format!("{mpath}.sniHosts"),
                "sniHosts is required in a TLS match: the server names to route",
            );
        }
        for (k, host) in sni.iter().enumerate() {
            let spath = format!("{mpath}.sniHosts[{k}]");
            if host.parse::<std::net::IpAddr>().is_ok() {
                // Istio admits it with a warning: SNI carries names only.
                out.warning(
                    c::HOST,
                    spath,
                    format!(
                        "SNI host `{host}` is an IP address; SNI carries host names only and most \
                         clients never send an IP there, so this match rarely applies; use the \
                         server's DNS name"
                    ),
                );
            } else if let Some(problem) = c::host_problem(
                host,
                HostRules {
                    star: true,
                    ip: false,
                },
            ) {
                out.error(c::HOST, spath, format!("invalid host `{host}`: {problem}"));
            } else if !hosts.iter().any(|h| hosts_overlap(h, host)) {
                // Traffic for this SNI never reaches the VirtualService.
                out.error(
                    L4_ROUTE,
                    spath,
                    format!(
                        "SNI host `{host}` matches none of the VirtualService's hosts [{}]",
                        hosts.join(", ")
                    ),
                );
            }
        }
        check_subnets(
            m.destination_subnets.as_deref(),
            &format!("{mpath}.destinationSubnets"),
            out,
        );
        if let Some(port) = m.port {
            c::check_port_number(port, &format!("{mpath}.port"), out);
        }
    }
    check_l4_routes(rule.route.as_deref(), path, "TLS", out);
}

fn check_l4_match(m: &L4MatchAttributes, path: &str, out: &mut Findings) {
    check_subnets(
        m.destination_subnets.as_deref(),
        &format!("{path}.destinationSubnets"),
        out,
    );
    if let Some(s) = &m.source_subnet
        && !c::is_ip_or_cidr(s)
    {
        // Istio's webhook does not check sourceSubnet: admitted, with a
        // warning that it can match no source.
        out.warning(
            L4_ROUTE,
            format!("{path}.sourceSubnet"),
            format!(
                "`{s}` is not an IP address or CIDR block, so it matches no source; write one \
                 such as `10.0.0.0/8`"
            ),
        );
    }
    if let Some(port) = m.port {
        c::check_port_number(port, &format!("{path}.port"), out);
    }
}

fn check_subnets(subnets: Option<&[String]>, path: &str, out: &mut Findings) {
    for (i, s) in subnets.unwrap_or_default().iter().enumerate() {
        if !c::is_ip_or_cidr(s) {
            out.error(
                L4_ROUTE,
                format!("{path}[{i}]"),
                format!("`{s}` is not an IP address or CIDR block (e.g. `10.0.0.0/8`)"),
            );
        }
    }
}

fn check_l4_routes(
    routes: Option<&[RouteDestination]>,
    path: &str,
    kind: &str,
    out: &mut Findings,
) {
    let routes = routes.unwrap_or_default();
    if routes.is_empty() {
        out.error(
            L4_ROUTE,
            format!("{path}.route"),
            format!("a {kind} rule needs at least one route destination"),
        );
    }
    check_weights(
        routes.iter().map(|r| r.weight),
        &format!("{path}.route"),
        out,
    );
    for (j, r) in routes.iter().enumerate() {
        check_destination(
            r.destination.as_ref(),
            &format!("{path}.route[{j}].destination"),
            out,
        );
    }
}

/// Whether two host patterns (each a name, `*.suffix` or `*`) can name the
/// same host.
fn hosts_overlap(a: &str, b: &str) -> bool {
    let covers = |pattern: &str, other: &str| match pattern.strip_prefix('*') {
        Some(suffix) => other.ends_with(suffix) || other.strip_prefix('*') == Some(suffix),
        None => false,
    };
    a.eq_ignore_ascii_case(b) || covers(a, b) || covers(b, a)
}

/// A match clause that every request satisfies.
fn is_catch_all(m: &HttpMatchRequest) -> bool {
    let uri_matches_all = match &m.uri {
        None => true,
        Some(StringMatch::Prefix(p)) => p == "/" || p.is_empty(),
        Some(StringMatch::Regex(r)) => matches!(r.as_str(), ".*" | "^.*$" | "/.*" | "^/.*$"),
        Some(StringMatch::Exact(_)) => false,
    };
    let empty = |o: &Option<BTreeMap<String, HeaderMatch>>| o.as_ref().is_none_or(|m| m.is_empty());
    uri_matches_all
        && m.scheme.is_none()
        && m.method.is_none()
        && m.authority.is_none()
        && empty(&m.headers)
        && empty(&m.query_params)
        && empty(&m.without_headers)
        && m.port.is_none()
        && m.source_labels.as_ref().is_none_or(|l| l.is_empty())
        && m.gateways.as_ref().is_none_or(|g| g.is_empty())
        && m.source_namespace.is_none()
}

fn warn_unreachable_and_duplicates(http: &[HttpRoute], out: &mut Findings) {
    // Rules are tried in order; after one that takes every request the rest
    // never run.
    if let Some(first) = http.iter().position(|r| {
        r.r#match
            .as_ref()
            .is_none_or(|ms| ms.is_empty() || ms.iter().any(is_catch_all))
    }) {
        for k in first + 1..http.len() {
            out.warning(
                UNREACHABLE,
                format!("spec.http[{k}]"),
                format!("this rule is unreachable: spec.http[{first}] before it matches every request; move it earlier or narrow spec.http[{first}]"),
            );
        }
    }
    let mut seen: Vec<(HttpMatchRequest, String)> = Vec::new();
    for (i, rule) in http.iter().enumerate() {
        for (j, m) in rule.r#match.iter().flatten().enumerate() {
            let path = format!("spec.http[{i}].match[{j}]");
            let key = HttpMatchRequest {
                name: None,
                stat_prefix: None,
                ..m.clone()
            };
            if let Some((_, earlier)) = seen.iter().find(|(k, _)| *k == key) {
                out.warning(
                    DUPLICATE_MATCH,
                    &path,
                    format!("this match repeats {earlier}, which takes the requests first; remove or change one"),
                );
            } else {
                seen.push((key, path));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::validate::object::test_support::{assert_finding, assert_no_errors, findings};
    use crate::validate::{Finding, Severity};

    fn vs(spec: Value) -> Vec<Finding> {
        findings(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "default"},
            "spec": spec
        }))
    }

    /// A VirtualService for `reviews` with the given HTTP rules.
    fn http(rules: Value) -> Vec<Finding> {
        vs(json!({"hosts": ["reviews"], "http": rules}))
    }

    fn to(host: &str) -> Value {
        json!({"destination": {"host": host}})
    }

    #[test]
    fn hosts_are_required_unless_delegate_and_valid() {
        assert_finding(
            &vs(json!({})),
            ROUTE_ACTION,
            Severity::Error,
            "spec",
            "at least one rule",
        );
        assert_finding(
            &vs(json!({"tcp": [{"route": [to("db")]}]})),
            DELEGATE,
            Severity::Error,
            "spec.tcp",
            "delegate",
        );
        assert_finding(
            &vs(json!({"hosts": ["bad_host"], "http": [{"route": [to("r")]}]})),
            c::HOST,
            Severity::Error,
            "spec.hosts[0]",
            "`bad_host`",
        );
        assert_finding(
            &vs(json!({"hosts": ["*"], "http": [{"route": [to("r")]}]})),
            c::HOST,
            Severity::Error,
            "spec.hosts[0]",
            "applies to the mesh",
        );
        assert_no_errors(&vs(
            json!({"hosts": ["*"], "gateways": ["istio-system/gw"], "http": [{"route": [to("r")]}]}),
        ));
        assert_no_errors(&vs(
            json!({"hosts": ["10.0.0.1", "*.example.com"], "http": [{"route": [to("r")]}]}),
        ));
        // A delegate: no hosts, http only.
        assert_no_errors(&vs(json!({"http": [{"route": [to("r")]}]})));
    }

    #[test]
    fn gateway_references_are_names() {
        let found =
            vs(json!({"hosts": ["r"], "gateways": ["Bad/gw"], "http": [{"route": [to("r")]}]}));
        assert_finding(
            &found,
            GATEWAY_REF,
            Severity::Error,
            "spec.gateways[0]",
            "`Bad/gw`",
        );
        assert_no_errors(&vs(
            json!({"hosts": ["r"], "gateways": ["mesh", "gw", "ns/gw"], "http": [{"route": [to("r")]}]}),
        ));
    }

    #[test]
    fn exactly_one_route_action() {
        let found = http(json!([
            {"match": [{"uri": {"prefix": "/a"}}]},
            {"match": [{"uri": {"prefix": "/b"}}], "route": [to("r")], "redirect": {"uri": "/x"}},
            {"route": [to("r")]}
        ]));
        assert_finding(
            &found,
            ROUTE_ACTION,
            Severity::Error,
            "spec.http[0]",
            "no action",
        );
        assert_finding(
            &found,
            ROUTE_ACTION,
            Severity::Error,
            "spec.http[1]",
            "route and redirect",
        );
        assert_no_errors(&http(json!([{"directResponse": {"status": 503}}])));
        assert_no_errors(&http(
            json!([{"delegate": {"name": "child", "namespace": "ns"}}]),
        ));
    }

    #[test]
    fn delegates_cannot_delegate_again() {
        let found = vs(json!({"http": [{"delegate": {"name": "x"}}]}));
        assert_finding(
            &found,
            DELEGATE,
            Severity::Error,
            "spec.http[0].delegate",
            "cannot delegate again",
        );
    }

    #[test]
    fn weights_are_non_negative_and_not_all_zero() {
        let found = http(json!([{"route": [
            {"destination": {"host": "r", "subset": "v1"}, "weight": 0},
            {"destination": {"host": "r", "subset": "v2"}, "weight": -5}
        ]}]));
        assert_finding(
            &found,
            WEIGHT,
            Severity::Error,
            "spec.http[0].route[1].weight",
            "-5",
        );
        let found = http(json!([{"route": [
            {"destination": {"host": "r", "subset": "v1"}},
            {"destination": {"host": "r", "subset": "v2"}, "weight": 0}
        ]}]));
        assert_finding(
            &found,
            WEIGHT,
            Severity::Error,
            "spec.http[0].route",
            "weight 0",
        );
        assert_no_errors(&http(json!([{"route": [
            {"destination": {"host": "r", "subset": "v1"}, "weight": 0},
            {"destination": {"host": "r", "subset": "v2"}, "weight": 100}
        ]}])));
    }

    #[test]
    fn destinations_need_a_host_and_valid_port() {
        let found = http(json!([{"route": [
            {"destination": {"subset": "v1"}},
            {"destination": {"host": "r", "port": {"number": 70000}}, "weight": 1},
            {"destination": {"host": "*"}}
        ]}]));
        assert_finding(
            &found,
            DESTINATION,
            Severity::Error,
            "spec.http[0].route[0].destination.host",
            "required",
        );
        assert_finding(
            &found,
            c::PORT,
            Severity::Error,
            "spec.http[0].route[1].destination.port.number",
            "70000",
        );
        assert_finding(
            &found,
            DESTINATION,
            Severity::Error,
            "spec.http[0].route[2].destination.host",
            "`*`",
        );
        assert_no_errors(&http(
            json!([{"route": [{"destination": {"host": "r.default.svc.cluster.local", "port": {"number": 9080}}}]}]),
        ));
    }

    #[test]
    fn retries_and_timeouts() {
        let found = http(json!([{"route": [to("r")], "timeout": "0.5ms",
            "retries": {"attempts": -1, "perTryTimeout": "2", "retryOn": "5xx,bogus"}}]));
        assert_finding(
            &found,
            c::DURATION,
            Severity::Error,
            "spec.http[0].timeout",
            "minimum of 1ms",
        );
        assert_finding(
            &found,
            RETRIES,
            Severity::Error,
            "spec.http[0].retries.attempts",
            "-1",
        );
        assert_finding(
            &found,
            c::DURATION,
            Severity::Error,
            "spec.http[0].retries.perTryTimeout",
            "`2`",
        );
        assert_finding(
            &found,
            RETRIES,
            Severity::Error,
            "spec.http[0].retries.retryOn",
            "`bogus`",
        );
        assert_no_errors(&http(json!([{"route": [to("r")], "timeout": "1h2m",
            "retries": {"attempts": 3, "perTryTimeout": "1.5s", "retryOn": "gateway-error,connect-failure,503"}}])));
    }

    #[test]
    fn faults() {
        let found = http(json!([{"route": [to("r")], "fault": {
            "delay": {"percentage": {"value": 120}, "fixedDelay": "5s", "exponentialDelay": "1s"},
            "abort": {"httpStatus": 700, "percentage": {"value": 10}}
        }}]));
        assert_finding(
            &found,
            c::PERCENT,
            Severity::Error,
            "spec.http[0].fault.delay.percentage.value",
            "120",
        );
        assert_finding(
            &found,
            FAULT,
            Severity::Error,
            "spec.http[0].fault.delay",
            "not both",
        );
        assert_finding(
            &found,
            FAULT,
            Severity::Error,
            "spec.http[0].fault.abort.httpStatus",
            "700",
        );
        let found = http(
            json!([{"route": [to("r")], "fault": {"abort": {"httpStatus": 500, "grpcStatus": "UNAVAILABLE"}}}]),
        );
        assert_finding(
            &found,
            FAULT,
            Severity::Error,
            "spec.http[0].fault.abort",
            "exactly one",
        );
        assert_finding(
            &http(json!([{"route": [to("r")], "fault": {}}])),
            FAULT,
            Severity::Error,
            "spec.http[0].fault",
            "delay, an abort",
        );
        let found =
            http(json!([{"route": [to("r")], "fault": {"delay": {"percentage": {"value": 50}}}}]));
        assert_finding(
            &found,
            FAULT,
            Severity::Warning,
            "spec.http[0].fault.delay",
            "fixedDelay",
        );
        assert_no_errors(&found);
        let found = http(
            json!([{"route": [to("r")], "fault": {"delay": {"percent": 10, "fixedDelay": "7s"}}}]),
        );
        assert_finding(
            &found,
            c::DEPRECATED,
            Severity::Warning,
            "spec.http[0].fault.delay.percent",
            "percentage",
        );
        assert_no_errors(&found);
        assert_no_errors(&http(json!([{"route": [to("r")], "fault": {
            "delay": {"percentage": {"value": 0.1}, "fixedDelay": "7s"},
            "abort": {"httpStatus": 503, "percentage": {"value": 100}}
        }}])));
    }

    #[test]
    fn mirrors() {
        let found = http(
            json!([{"route": [to("r")], "mirror": {"host": "m"}, "mirrorPercent": 150,
            "mirrors": [{"destination": {"host": "m2"}, "percentage": {"value": -1}}]}]),
        );
        assert_finding(
            &found,
            MIRROR,
            Severity::Error,
            "spec.http[0].mirrors",
            "not both",
        );
        assert_finding(
            &found,
            c::PERCENT,
            Severity::Error,
            "spec.http[0].mirrorPercent",
            "150",
        );
        assert_finding(
            &found,
            c::DEPRECATED,
            Severity::Warning,
            "spec.http[0].mirrorPercent",
            "mirrorPercentage",
        );
        assert_finding(
            &found,
            c::PERCENT,
            Severity::Error,
            "spec.http[0].mirrors[0].percentage.value",
            "-1",
        );
        let found =
            http(json!([{"route": [to("r")], "mirror": {"host": "m"}, "mirror_percent": 50}]));
        assert_finding(
            &found,
            c::DEPRECATED,
            Severity::Warning,
            "spec.http[0].mirror_percent",
            "deprecated",
        );
        assert_no_errors(&http(
            json!([{"route": [to("r")], "mirror": {"host": "m"}, "mirrorPercentage": {"value": 50.5}}]),
        ));
    }

    #[test]
    fn cors() {
        let found = http(json!([{"route": [to("r")], "corsPolicy": {
            "allowOrigin": ["*"],
            "allowOrigins": [{"regex": "https://(.*"}],
            "allowMethods": ["GET", "FETCH"],
            "allowHeaders": ["bad header"],
            "maxAge": "1500ms"
        }}]));
        assert_finding(
            &found,
            c::DEPRECATED,
            Severity::Warning,
            "spec.http[0].corsPolicy.allowOrigin",
            "allowOrigins",
        );
        assert_finding(
            &found,
            c::STRING_MATCH,
            Severity::Error,
            "spec.http[0].corsPolicy.allowOrigins[0].regex",
            "RE2",
        );
        assert_finding(
            &found,
            CORS,
            Severity::Error,
            "spec.http[0].corsPolicy.allowMethods[1]",
            "`FETCH`",
        );
        assert_finding(
            &found,
            c::HEADER_NAME,
            Severity::Error,
            "spec.http[0].corsPolicy.allowHeaders[0]",
            "`bad header`",
        );
        assert_finding(
            &found,
            CORS,
            Severity::Error,
            "spec.http[0].corsPolicy.maxAge",
            "whole number of seconds",
        );
        assert_no_errors(&http(json!([{"route": [to("r")], "corsPolicy": {
            "allowOrigins": [{"exact": "https://example.com"}, {"regex": "https://.*\\.example\\.com"}],
            "allowMethods": ["GET", "POST"], "allowHeaders": ["x-custom"], "maxAge": "24h"
        }}])));
    }

    #[test]
    fn redirect_prefix_rewrite() {
        assert_no_errors(&http(json!([
            {"match": [{"uri": {"prefix": "/old/"}}], "redirect": {"prefixRewrite": "/new/"}},
            {"route": [to("r")]}
        ])));
        let found = http(json!([
            {"match": [{"uri": {"exact": "/old"}}], "redirect": {"uri": "/x", "prefixRewrite": "/new/"}},
            {"route": [to("r")]}
        ]));
        assert_finding(
            &found,
            REDIRECT,
            Severity::Error,
            "spec.http[0].redirect",
            "not both",
        );
        assert_finding(
            &found,
            REDIRECT,
            Severity::Error,
            "spec.http[0].match[0].uri",
            "prefix match",
        );
    }

    #[test]
    fn jwt_claim_header_matches_are_accepted() {
        // Istio's claim-based routing; its webhook accepts these names in
        // `headers` and `withoutHeaders` whatever the VirtualService binds to.
        for gateways in [
            json!(["istio-system/ingress"]),
            json!(["mesh"]),
            json!(null),
        ] {
            let mut spec = json!({"hosts": ["r"], "http": [
                {"match": [{"headers": {
                    "@request.auth.claims.groups": {"exact": "admin"},
                    "@request.auth.claims[kubernetes.io][namespace]": {"prefix": "team-"}
                }}], "route": [to("r")]},
                {"match": [{"withoutHeaders": {"@request.auth.claims.sub": {}}}], "route": [to("r")]},
                {"route": [to("r")]}
            ]});
            if !gateways.is_null() {
                spec["gateways"] = gateways;
            }
            let found = findings(json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": "claims", "namespace": "default"},
                "spec": spec
            }));
            assert!(found.iter().all(|f| f.code != c::HEADER_NAME), "{found:#?}");
            assert_no_errors(&found);
        }
        // A malformed claim reference is still a bad header name, and says
        // how to write a claim.
        assert_finding(
            &http(json!([
                {"match": [{"headers": {"@request.auth.claims": {"exact": "x"}}}], "route": [to("r")]},
                {"route": [to("r")]}
            ])),
            c::HEADER_NAME,
            Severity::Error,
            "spec.http[0].match[0].headers.@request.auth.claims",
            "@request.auth.claims.<claim>",
        );
    }

    #[test]
    fn string_matches_and_header_names() {
        let long = format!("^{}$", "a".repeat(1100));
        let found = http(json!([
            {"match": [{"uri": {"regex": long}, "headers": {"bad name": {"exact": "x"}, "x-v": {"regex": "a(?=b)"}}}], "route": [to("r")]},
            {"route": [to("r")]}
        ]));
        assert_finding(
            &found,
            c::STRING_MATCH,
            Severity::Error,
            "spec.http[0].match[0].uri.regex",
            "at most 1024",
        );
        assert_finding(
            &found,
            c::HEADER_NAME,
            Severity::Error,
            "spec.http[0].match[0].headers.bad name",
            "`bad name`",
        );
        assert_finding(
            &found,
            c::STRING_MATCH,
            Severity::Error,
            "spec.http[0].match[0].headers.x-v.regex",
            "RE2",
        );
        assert_no_errors(&http(json!([
            {"match": [{"uri": {"regex": "^/api/v[0-9]+$"}, "headers": {"end-user": {"exact": "jason"}, "x-any": {}}}], "route": [to("r")]},
            {"route": [to("r")]}
        ])));
    }

    #[test]
    fn redirect_direct_response_and_rewrite() {
        let found = http(json!([
            {"match": [{"uri": {"exact": "/a"}}], "redirect": {"redirectCode": 200}, "rewrite": {"uri": "/b"}},
            {"match": [{"uri": {"exact": "/b"}}], "directResponse": {"status": 99}},
            {"route": [to("r")], "rewrite": {"uri": "/x", "uriRegexRewrite": {"match": "(", "rewrite": "/"}}}
        ]));
        assert_finding(
            &found,
            REDIRECT,
            Severity::Error,
            "spec.http[0].redirect",
            "must change something",
        );
        assert_finding(
            &found,
            REDIRECT,
            Severity::Error,
            "spec.http[0].redirect.redirectCode",
            "200",
        );
        assert_finding(
            &found,
            REDIRECT,
            Severity::Error,
            "spec.http[0].rewrite",
            "cannot be combined",
        );
        assert_finding(
            &found,
            REDIRECT,
            Severity::Error,
            "spec.http[1].directResponse.status",
            "99",
        );
        assert_finding(
            &found,
            REDIRECT,
            Severity::Error,
            "spec.http[2].rewrite",
            "not both",
        );
        assert_finding(
            &found,
            c::STRING_MATCH,
            Severity::Error,
            "spec.http[2].rewrite.uriRegexRewrite.match",
            "RE2",
        );
        assert_no_errors(&http(json!([
            {"match": [{"uri": {"exact": "/a"}}], "redirect": {"uri": "/b", "redirectCode": 302}},
            {"route": [to("r")], "rewrite": {"uriRegexRewrite": {"match": "^/v1/(.*)", "rewrite": "/\\1"}}}
        ])));
    }

    #[test]
    fn redirect_scheme_body_size_and_empty_rewrite() {
        let big = "x".repeat((1 << 20) + 1);
        let found = http(json!([
            {"match": [{"uri": {"exact": "/a"}}], "redirect": {"scheme": "ftp"}},
            {"match": [{"uri": {"exact": "/b"}}], "directResponse": {"status": 200, "body": {"string": big}}},
            {"match": [{"uri": {"exact": "/c"}}], "directResponse": {"status": 200, "body": {"string": "x".repeat(200 << 10)}}},
            {"route": [to("r")], "rewrite": {}}
        ]));
        assert_finding(
            &found,
            REDIRECT,
            Severity::Error,
            "spec.http[0].redirect.scheme",
            "`ftp`",
        );
        assert_finding(
            &found,
            REDIRECT,
            Severity::Error,
            "spec.http[1].directResponse.body",
            "1 MiB",
        );
        assert_finding(
            &found,
            REDIRECT,
            Severity::Warning,
            "spec.http[2].directResponse.body",
            "100 KiB",
        );
        assert_finding(
            &found,
            REDIRECT,
            Severity::Error,
            "spec.http[3].rewrite",
            "must change something",
        );
        assert_no_errors(&http(
            json!([{"route": [to("r")], "rewrite": {"authority": "new.example.com"}}]),
        ));
    }

    #[test]
    fn retry_settings_without_attempts_are_an_error() {
        let found = http(json!([{"route": [to("r")], "retries": {"perTryTimeout": "2s"}}]));
        assert_finding(
            &found,
            RETRIES,
            Severity::Error,
            "spec.http[0].retries.attempts",
            "disables retries",
        );
        assert_no_errors(&http(
            json!([{"route": [to("r")], "retries": {"attempts": 0}}]),
        ));
    }

    #[test]
    fn abort_kinds() {
        let found =
            http(json!([{"route": [to("r")], "fault": {"abort": {"percentage": {"value": 5}}}}]));
        assert_finding(
            &found,
            FAULT,
            Severity::Warning,
            "spec.http[0].fault.abort",
            "no effect",
        );
        assert_no_errors(&found);
        let found = http(json!([{"route": [to("r")], "fault": {"abort": {"grpcStatus": "NOPE"}}}]));
        assert_finding(
            &found,
            FAULT,
            Severity::Error,
            "spec.http[0].fault.abort.grpcStatus",
            "`NOPE`",
        );
        let found = http(
            json!([{"route": [to("r")], "fault": {"abort": {"http2Error": "REFUSED_STREAM"}}}]),
        );
        assert_finding(
            &found,
            FAULT,
            Severity::Error,
            "spec.http[0].fault.abort.http2Error",
            "not supported",
        );
        assert_no_errors(&http(
            json!([{"route": [to("r")], "fault": {"abort": {"grpcStatus": "UNAVAILABLE"}}}]),
        ));
    }

    #[test]
    fn legacy_gateway_names_warn() {
        let found = vs(
            json!({"hosts": ["r"], "gateways": ["my-gw.istio-system"], "http": [{"route": [to("r")]}]}),
        );
        assert_finding(
            &found,
            GATEWAY_REF,
            Severity::Warning,
            "spec.gateways[0]",
            "`istio-system/my-gw`",
        );
        assert_no_errors(&found);
    }

    #[test]
    fn header_operations_refuse_what_istio_refuses() {
        let found = http(json!([{
            "route": [{"destination": {"host": "r"}, "headers": {
                "request": {"set": {":path": "/x"}, "remove": ["Host"]}}}],
            "headers": {
                "request": {"add": {"bad\nname": "1"}},
                "response": {"remove": ["ok", ""], "set": {"host": "h", ":authority": "a"}}
            }
        }]));
        let base = "spec.http[0]";
        for (path, fragment) in [
            (
                format!("{base}.route[0].headers.request.set.:path"),
                "pseudo-headers",
            ),
            (
                format!("{base}.route[0].headers.request.remove[0]"),
                "Host header",
            ),
            (
                format!("{base}.headers.request.add.bad\nname"),
                "line break",
            ),
            (
                format!("{base}.headers.response.remove[1]"),
                "cannot be empty",
            ),
            (format!("{base}.headers.response.set.host"), "Host header"),
            (
                format!("{base}.headers.response.set.:authority"),
                "pseudo-headers",
            ),
        ] {
            assert_finding(&found, c::HEADER_NAME, Severity::Error, &path, fragment);
        }
        assert_eq!(found.len(), 6, "{found:#?}");
    }

    #[test]
    fn header_operations_admit_what_istio_admits() {
        // Istio checks header operation names only for emptiness, a leading
        // `:` and `host`; the authority may be set on requests. A name that
        // is not an HTTP token is admitted with a warning naming the field.
        let found = http(json!([{
            "route": [{"destination": {"host": "r"}, "headers": {
                "request": {"set": {"bad:h": "1", ":authority": "a.example.com"}}}}],
            "headers": {
                "request": {"add": {"Host": "b.example.com", "x-ok": "1"}, "remove": ["x-old"]},
                "response": {"set": {"with space": "1"}, "remove": ["server"]}
            }
        }]));
        assert_no_errors(&found);
        assert_finding(
            &found,
            c::HEADER_NAME,
            Severity::Warning,
            "spec.http[0].route[0].headers.request.set.bad:h",
            "`bad:h`",
        );
        assert_finding(
            &found,
            c::HEADER_NAME,
            Severity::Warning,
            "spec.http[0].headers.response.set.with space",
            "not a valid HTTP header name",
        );
        assert_eq!(found.len(), 2, "{found:#?}");
    }

    // Configurations Istio's webhook admits: accepted, with a warning that
    // names the field.

    #[test]
    fn a_delegate_that_cannot_be_found_only_warns() {
        let found = http(json!([
            {"match": [{"uri": {"prefix": "/a"}}], "delegate": {"name": ""}},
            {"delegate": {"name": "d", "namespace": "Not_A_Namespace"}}
        ]));
        assert_no_errors(&found);
        assert_finding(
            &found,
            DELEGATE,
            Severity::Warning,
            "spec.http[0].delegate.name",
            "empty",
        );
        assert_finding(
            &found,
            DELEGATE,
            Severity::Warning,
            "spec.http[1].delegate.namespace",
            "`Not_A_Namespace`",
        );
    }

    #[test]
    fn an_empty_retry_on_is_no_retry_on() {
        let found = http(json!([{"route": [to("r")], "retries": {"attempts": 0, "retryOn": ""}}]));
        assert_eq!(found, vec![]);
        // A real condition with attempts 0 stays an error, as in Istio.
        assert_finding(
            &http(json!([{"route": [to("r")], "retries": {"attempts": 0, "retryOn": "5xx"}}])),
            RETRIES,
            Severity::Error,
            "spec.http[0].retries.attempts",
            "disables retries",
        );
    }

    #[test]
    fn a_deprecated_delay_percent_out_of_range_only_warns() {
        let found = http(json!([{"route": [to("r")], "fault": {
            "delay": {"percent": 150, "fixedDelay": "1s"}}}]));
        assert_no_errors(&found);
        assert_finding(
            &found,
            c::PERCENT,
            Severity::Warning,
            "spec.http[0].fault.delay.percent",
            "150",
        );
    }

    #[test]
    fn an_ip_sni_host_and_a_bad_source_subnet_only_warn() {
        let found = vs(json!({
            "hosts": ["10.0.0.1", "db.example.com"],
            "tls": [{"match": [{"sniHosts": ["10.0.0.1"]}], "route": [to("db")]}],
            "tcp": [{"match": [{"sourceSubnet": "not-a-cidr"}], "route": [to("db")]}]
        }));
        assert_no_errors(&found);
        assert_finding(
            &found,
            c::HOST,
            Severity::Warning,
            "spec.tls[0].match[0].sniHosts[0]",
            "`10.0.0.1` is an IP address",
        );
        assert_finding(
            &found,
            L4_ROUTE,
            Severity::Warning,
            "spec.tcp[0].match[0].sourceSubnet",
            "`not-a-cidr`",
        );
    }

    #[test]
    fn rules_after_a_catch_all_are_unreachable() {
        let found = http(json!([
            {"match": [{"uri": {"prefix": "/"}}], "route": [to("r")]},
            {"match": [{"uri": {"prefix": "/api"}}], "route": [to("r")]}
        ]));
        assert_finding(
            &found,
            UNREACHABLE,
            Severity::Warning,
            "spec.http[1]",
            "spec.http[0]",
        );
        assert_no_errors(&found);
        let found = http(json!([
            {"match": [{"uri": {"prefix": "/api"}}], "route": [to("r")]},
            {"route": [to("r")]}
        ]));
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn duplicate_matches_warn() {
        let found = http(json!([
            {"match": [{"name": "a", "headers": {"end-user": {"exact": "jason"}}}], "route": [to("r")]},
            {"match": [{"name": "b", "headers": {"end-user": {"exact": "jason"}}}], "route": [to("r")]},
            {"route": [to("r")]}
        ]));
        assert_finding(
            &found,
            DUPLICATE_MATCH,
            Severity::Warning,
            "spec.http[1].match[0]",
            "spec.http[0].match[0]",
        );
    }

    #[test]
    fn sni_hosts_must_match_the_virtual_service_hosts() {
        let found = vs(
            json!({"hosts": ["*.example.com"], "gateways": ["gw"], "tls": [
                {"match": [{"sniHosts": ["a.example.com", "other.org"]}], "route": [to("a")]}
            ]}),
        );
        assert_finding(
            &found,
            L4_ROUTE,
            Severity::Error,
            "spec.tls[0].match[0].sniHosts[1]",
            "`other.org`",
        );
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(hosts_overlap("*", "x.org"));
        assert!(hosts_overlap("a.example.com", "*.example.com"));
        assert!(!hosts_overlap("*.example.com", "example.org"));
    }

    #[test]
    fn tls_and_tcp_rules() {
        let found = vs(
            json!({"hosts": ["*.example.com"], "gateways": ["gw"], "tls": [
                {"match": [{"port": 443}], "route": [to("a")]},
                {"route": [to("a")]},
                {"match": [{"sniHosts": ["a.example.com"], "destinationSubnets": ["10.0.0.0/99"]}]}
            ]}),
        );
        assert_finding(
            &found,
            L4_ROUTE,
            Severity::Error,
            "spec.tls[0].match[0].sniHosts",
            "required",
        );
        assert_finding(
            &found,
            L4_ROUTE,
            Severity::Error,
            "spec.tls[1].match",
            "at least one match",
        );
        assert_finding(
            &found,
            L4_ROUTE,
            Severity::Error,
            "spec.tls[2].match[0].destinationSubnets[0]",
            "10.0.0.0/99",
        );
        assert_finding(
            &found,
            L4_ROUTE,
            Severity::Error,
            "spec.tls[2].route",
            "TLS rule",
        );
        let found = vs(
            json!({"hosts": ["db"], "tcp": [{"match": [{"port": 0}], "route": [
                {"destination": {"host": "db"}, "weight": -1}, {"destination": {"host": "db2"}, "weight": 2}
            ]}]}),
        );
        assert_finding(
            &found,
            c::PORT,
            Severity::Error,
            "spec.tcp[0].match[0].port",
            "port 0",
        );
        assert_finding(
            &found,
            WEIGHT,
            Severity::Error,
            "spec.tcp[0].route[0].weight",
            "-1",
        );
        assert_no_errors(&vs(json!({"hosts": ["*.example.com"], "gateways": ["gw"],
            "tls": [{"match": [{"sniHosts": ["a.example.com"], "port": 443}], "route": [to("a")]}],
            "tcp": [{"match": [{"port": 27017, "sourceSubnet": "10.0.0.0/8"}], "route": [to("mongo")]}]})));
    }

    #[test]
    fn a_match_gateway_the_virtual_service_is_not_bound_to_is_a_warning() {
        let found = vs(
            json!({"hosts": ["reviews"], "gateways": ["ingress", "istio-system/edge"],
            "http": [
                {"match": [{"gateways": ["ingress", "default/ingress", "ingress.default"]}],
                 "route": [to("reviews")]},
                {"match": [{"gateways": ["mesh"]}, {"gateways": ["istio-system/edge", "other"]}],
                 "route": [to("reviews")]}
            ]}),
        );
        assert_finding(
            &found,
            MATCH_GATEWAY_UNBOUND,
            Severity::Warning,
            "spec.http[1].match[0].gateways[0]",
            "gateway `mesh` is not one this VirtualService is bound to (spec.gateways [ingress, istio-system/edge])",
        );
        assert_finding(
            &found,
            MATCH_GATEWAY_UNBOUND,
            Severity::Warning,
            "spec.http[1].match[1].gateways[1]",
            "add `other` to spec.gateways or remove it from the match",
        );
        let unbound = found
            .iter()
            .filter(|f| f.code == MATCH_GATEWAY_UNBOUND)
            .count();
        assert_eq!(
            unbound, 2,
            "the other spellings name bound gateways: {found:#?}"
        );
    }

    #[test]
    fn without_top_level_gateways_only_mesh_matches_apply() {
        let found = vs(json!({"hosts": ["reviews"],
            "http": [{"match": [{"gateways": ["mesh"]}], "route": [to("reviews")]}],
            "tcp": [{"match": [{"gateways": ["ingress"]}], "route": [to("reviews")]}]}));
        assert_finding(
            &found,
            MATCH_GATEWAY_UNBOUND,
            Severity::Warning,
            "spec.tcp[0].match[0].gateways[0]",
            "no spec.gateways, so only `mesh`",
        );
        assert_eq!(
            found
                .iter()
                .filter(|f| f.code == MATCH_GATEWAY_UNBOUND)
                .count(),
            1
        );
    }
}
