//! `HTTPMatchRequest` → Envoy `RouteMatch`: uri, headers (and the pseudo
//! headers for method, authority, scheme), withoutHeaders (inverted),
//! query parameters, ignoreUriCase. Conditions on the source (labels,
//! namespace, port, gateways) are decided here, at compile time, for the
//! one proxy: a match that cannot hold for it is dropped.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, RouteMatch, header_matcher, query_parameter_matcher,
    route_match,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use meshkeeper_crds::networking::common::StringMatch;
use meshkeeper_crds::networking::virtual_service::{HeaderMatch, HttpMatchRequest};

use crate::binding::StaticMatch;
use crate::envoy::bool_value;
use crate::proxy::Proxy;

/// Whether the match's source conditions hold for `proxy` on listener
/// `port`, as one of the gateways in `scope` (`mesh` for a sidecar).
pub fn applies(
    m: &HttpMatchRequest,
    proxy: &Proxy,
    port: u16,
    vs_namespace: &str,
    scope: &[String],
) -> bool {
    StaticMatch {
        port: m.port,
        source_labels: m.source_labels.as_ref(),
        source_namespace: m.source_namespace.as_deref(),
        gateways: m.gateways.as_deref(),
    }
    .holds(proxy, vs_namespace, scope, port)
}

pub fn route_match(m: &HttpMatchRequest) -> RouteMatch {
    let mut out = RouteMatch {
        path_specifier: Some(path(m.uri.as_ref())),
        ..Default::default()
    };
    if m.ignore_uri_case == Some(true) {
        out.case_sensitive = Some(bool_value(false));
    }
    let pseudo = [
        (":method", m.method.as_ref()),
        (":authority", m.authority.as_ref()),
        (":scheme", m.scheme.as_ref()),
    ];
    for (name, value) in pseudo {
        if let Some(v) = value {
            out.headers
                .push(header(name, &HeaderMatch::Value(v.clone()), false));
        }
    }
    out.headers.extend(headers(m.headers.as_ref(), false));
    out.headers
        .extend(headers(m.without_headers.as_ref(), true));
    out.query_parameters = m
        .query_params
        .iter()
        .flatten()
        .map(|(name, hm)| QueryParameterMatcher {
            name: name.clone(),
            query_parameter_match_specifier: Some(match hm {
                HeaderMatch::Present => {
                    query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true)
                }
                HeaderMatch::Value(v) => {
                    query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(
                        string_matcher(v),
                    )
                }
            }),
        })
        .collect();
    out
}

/// A route for every request: `prefix: /`.
pub fn catch_all() -> RouteMatch {
    RouteMatch {
        path_specifier: Some(path(None)),
        ..Default::default()
    }
}

fn path(uri: Option<&StringMatch>) -> route_match::PathSpecifier {
    match uri {
        None => route_match::PathSpecifier::Prefix("/".into()),
        Some(StringMatch::Exact(p)) => route_match::PathSpecifier::Path(p.clone()),
        Some(StringMatch::Prefix(p)) => route_match::PathSpecifier::Prefix(p.clone()),
        Some(StringMatch::Regex(r)) => route_match::PathSpecifier::SafeRegex(regex(r)),
    }
}

pub fn regex(r: &str) -> RegexMatcher {
    RegexMatcher {
        regex: r.into(),
        ..Default::default()
    }
}

pub fn string_matcher(m: &StringMatch) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(match m {
            StringMatch::Exact(v) => string_matcher::MatchPattern::Exact(v.clone()),
            StringMatch::Prefix(v) => string_matcher::MatchPattern::Prefix(v.clone()),
            StringMatch::Regex(v) => string_matcher::MatchPattern::SafeRegex(regex(v)),
        }),
        ..Default::default()
    }
}

fn headers(map: Option<&BTreeMap<String, HeaderMatch>>, invert: bool) -> Vec<HeaderMatcher> {
    map.into_iter()
        .flatten()
        .map(|(name, hm)| header(name, hm, invert))
        .collect()
}

fn header(name: &str, hm: &HeaderMatch, invert: bool) -> HeaderMatcher {
    let specifier = match hm {
        HeaderMatch::Present => header_matcher::HeaderMatchSpecifier::PresentMatch(true),
        HeaderMatch::Value(v) => {
            header_matcher::HeaderMatchSpecifier::StringMatch(string_matcher(v))
        }
    };
    HeaderMatcher {
        name: name.to_ascii_lowercase(),
        invert_match: invert,
        header_match_specifier: Some(specifier),
        ..Default::default()
    }
}
