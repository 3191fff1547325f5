//! VirtualService delegation, merged once per snapshot as Istio does: an
//! HTTP rule with `delegate` is replaced by the delegate VirtualService's
//! HTTP rules, each narrowed to the root rule's matches (a delegate match
//! must fall inside one of the root's) and inheriting what it leaves
//! unset (rewrite, timeout, retries, fault, mirrors, CORS, headers).
//!
//! Istio drops what cannot be merged with only a log line; here every
//! dropped rule becomes a [`Warning`] the caller can show.

use std::collections::BTreeMap;

use meshkeeper_crds::networking::VirtualService;
use meshkeeper_crds::networking::common::StringMatch;
use meshkeeper_crds::networking::virtual_service::{HeaderMatch, HttpMatchRequest, HttpRoute};

use super::object_name;
use crate::error::{Location, Warning};
use crate::names;
use crate::visibility::ExportTo;

/// Replaces every delegating rule of the root VirtualServices by the merged
/// rules; returns what could not be merged.
pub(super) fn merge_all(
    virtual_services: &mut [VirtualService],
    cluster_domain: &str,
) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let originals: Vec<VirtualService> = virtual_services.to_vec();
    for vs in virtual_services.iter_mut() {
        let Some(http) = vs.spec.http.as_ref() else {
            continue;
        };
        if !http.iter().any(|h| h.delegate.is_some()) {
            continue;
        }
        let http = http.clone();
        let (namespace, name) = object_name(&vs.metadata);
        let mut merged = Vec::new();
        for (i, rule) in http.iter().enumerate() {
            let Some(delegate) = rule.delegate.as_ref() else {
                merged.push(rule.clone());
                continue;
            };
            let warn = |message: String| Warning {
                at: Location {
                    kind: "VirtualService",
                    namespace: namespace.clone(),
                    name: name.clone(),
                    field: format!("spec.http[{i}].delegate"),
                },
                message,
            };
            let delegate_ns = delegate
                .namespace
                .clone()
                .unwrap_or_else(|| namespace.clone());
            let delegate_name = delegate.name.clone().unwrap_or_default();
            let Some(target) = originals
                .iter()
                .find(|o| object_name(&o.metadata) == (delegate_ns.clone(), delegate_name.clone()))
            else {
                warnings.push(warn(format!(
                    "delegate VirtualService {delegate_ns}/{delegate_name} does not exist: the rule routes nothing"
                )));
                continue;
            };
            if target.spec.hosts.as_ref().is_some_and(|h| !h.is_empty()) {
                warnings.push(warn(format!(
                    "delegate VirtualService {delegate_ns}/{delegate_name} has hosts; a delegate must have none: the rule routes nothing"
                )));
                continue;
            }
            if !ExportTo::from_list(target.spec.export_to.as_deref(), &delegate_ns)
                .is_visible_to(&namespace)
            {
                warnings.push(warn(format!(
                    "delegate VirtualService {delegate_ns}/{delegate_name} is not exported to namespace {namespace}: the rule routes nothing"
                )));
                continue;
            }
            for (j, sub) in target.spec.http.iter().flatten().enumerate() {
                if sub.delegate.is_some() {
                    warnings.push(warn(format!(
                        "{delegate_ns}/{delegate_name} spec.http[{j}] delegates again; delegation is one level deep: that rule is dropped"
                    )));
                    continue;
                }
                match merge_rule(rule, sub, &delegate_ns, cluster_domain) {
                    Some(m) => merged.push(m),
                    None => warnings.push(warn(format!(
                        "{delegate_ns}/{delegate_name} spec.http[{j}] matches requests outside this rule's matches: that rule is dropped"
                    ))),
                }
            }
        }
        vs.spec.http = Some(merged);
    }
    warnings
}

/// One delegate rule under its root rule, or `None` when their matches
/// conflict. Destination hosts are made absolute in the delegate's
/// namespace first: short names there mean the delegate's services.
fn merge_rule(
    root: &HttpRoute,
    delegate: &HttpRoute,
    delegate_ns: &str,
    cluster_domain: &str,
) -> Option<HttpRoute> {
    let mut out = delegate.clone();
    let resolve = |host: &mut Option<String>| {
        if let Some(h) = host.as_mut() {
            *h = names::resolve_host(h, delegate_ns, cluster_domain);
        }
    };
    for d in out.route.iter_mut().flatten() {
        if let Some(dest) = d.destination.as_mut() {
            resolve(&mut dest.host);
        }
    }
    if let Some(m) = out.mirror.as_mut() {
        resolve(&mut m.host);
    }
    for m in out.mirrors.iter_mut().flatten() {
        if let Some(dest) = m.destination.as_mut() {
            resolve(&mut dest.host);
        }
    }
    out.r#match = merge_matches(root.r#match.as_deref(), delegate.r#match.as_deref())?;
    out.name = join_names(root.name.as_deref(), delegate.name.as_deref());
    macro_rules! inherit {
        ($($field:ident),*) => {$(
            if out.$field.is_none() {
                out.$field = root.$field.clone();
            }
        )*};
    }
    inherit!(
        rewrite,
        direct_response,
        timeout,
        retries,
        fault,
        mirror,
        mirror_percent,
        mirror_percent_proto_name,
        mirror_percentage,
        cors_policy,
        mirrors,
        headers
    );
    Some(out)
}

fn join_names(root: Option<&str>, leaf: Option<&str>) -> Option<String> {
    match (root, leaf) {
        (Some(r), Some(l)) => Some(format!("{r}-{l}")),
        (r, l) => l.or(r).map(str::to_string),
    }
}

/// Each delegate match is combined with every root match it does not
/// conflict with; a delegate match inside none of them is a conflict.
fn merge_matches(
    root: Option<&[HttpMatchRequest]>,
    leaf: Option<&[HttpMatchRequest]>,
) -> Option<Option<Vec<HttpMatchRequest>>> {
    let (root, leaf) = match (
        root.filter(|r| !r.is_empty()),
        leaf.filter(|l| !l.is_empty()),
    ) {
        (None, leaf) => return Some(leaf.map(<[_]>::to_vec)),
        (Some(root), None) => return Some(Some(root.to_vec())),
        (Some(root), Some(leaf)) => (root, leaf),
    };
    let mut out = Vec::new();
    for l in leaf {
        let before = out.len();
        out.extend(
            root.iter()
                .filter(|r| !conflicts(r, l))
                .map(|r| merge_match(r, l)),
        );
        if out.len() == before {
            return None;
        }
    }
    Some(Some(out))
}

fn merge_match(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> HttpMatchRequest {
    let mut out = leaf.clone();
    out.name = join_names(root.name.as_deref(), leaf.name.as_deref());
    macro_rules! inherit {
        ($($field:ident),*) => {$(
            if out.$field.is_none() {
                out.$field = root.$field.clone();
            }
        )*};
    }
    inherit!(
        uri,
        scheme,
        method,
        authority,
        port,
        source_namespace,
        stat_prefix
    );
    if out.gateways.as_ref().is_none_or(|g| g.is_empty()) {
        out.gateways = root.gateways.clone();
    }
    out.headers = union(root.headers.as_ref(), leaf.headers.as_ref());
    out.without_headers = union(root.without_headers.as_ref(), leaf.without_headers.as_ref());
    out.query_params = union(root.query_params.as_ref(), leaf.query_params.as_ref());
    out.source_labels = union(root.source_labels.as_ref(), leaf.source_labels.as_ref());
    out
}

/// The root's entries, overridden by the leaf's.
fn union<V: Clone>(
    root: Option<&BTreeMap<String, V>>,
    leaf: Option<&BTreeMap<String, V>>,
) -> Option<BTreeMap<String, V>> {
    if root.is_none() && leaf.is_none() {
        return None;
    }
    let mut out = root.cloned().unwrap_or_default();
    out.extend(leaf.cloned().unwrap_or_default());
    Some(out)
}

/// Whether the leaf match can select requests the root match cannot.
fn conflicts(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> bool {
    let pairs = [
        (&root.uri, &leaf.uri),
        (&root.scheme, &leaf.scheme),
        (&root.method, &leaf.method),
        (&root.authority, &leaf.authority),
    ];
    if pairs
        .iter()
        .any(|(r, l)| string_conflict(r.as_ref(), l.as_ref()))
    {
        return true;
    }
    let header_conflict = |r: Option<&BTreeMap<String, HeaderMatch>>,
                           l: Option<&BTreeMap<String, HeaderMatch>>| {
        l.into_iter().flatten().any(|(k, lv)| {
            let rv = r.and_then(|r| r.get(k));
            match (rv, lv) {
                (Some(HeaderMatch::Value(rv)), HeaderMatch::Value(lv)) => {
                    string_conflict(Some(rv), Some(lv))
                }
                // Presence against a value, either way round, or a header
                // the root does not constrain: no conflict.
                _ => false,
            }
        })
    };
    if header_conflict(root.headers.as_ref(), leaf.headers.as_ref())
        || header_conflict(root.without_headers.as_ref(), leaf.without_headers.as_ref())
        || header_conflict(root.query_params.as_ref(), leaf.query_params.as_ref())
    {
        return true;
    }
    if root.ignore_uri_case.unwrap_or(false) != leaf.ignore_uri_case.unwrap_or(false) {
        return true;
    }
    if let (Some(r), Some(l)) = (root.port, leaf.port)
        && r != l
    {
        return true;
    }
    if root
        .source_namespace
        .as_ref()
        .is_some_and(|r| leaf.source_namespace.as_ref() != Some(r))
    {
        return true;
    }
    if let (Some(r), Some(l)) = (root.source_labels.as_ref(), leaf.source_labels.as_ref())
        && l.iter().any(|(k, v)| r.get(k).is_some_and(|rv| rv != v))
    {
        return true;
    }
    match (root.gateways.as_ref(), leaf.gateways.as_ref()) {
        (Some(r), Some(l)) if !r.is_empty() && !l.is_empty() => !l.iter().all(|g| r.contains(g)),
        _ => false,
    }
}

/// A leaf string match conflicts unless it selects a subset of the root's:
/// the same exact value, or a prefix/exact under the root's prefix. A
/// regex on either side conflicts with anything on the other.
fn string_conflict(root: Option<&StringMatch>, leaf: Option<&StringMatch>) -> bool {
    let (Some(root), Some(leaf)) = (root, leaf) else {
        return false;
    };
    match (root, leaf) {
        (StringMatch::Exact(r), StringMatch::Exact(l)) => r != l,
        (StringMatch::Prefix(r), StringMatch::Prefix(l) | StringMatch::Exact(l)) => {
            !l.starts_with(r.as_str())
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vs(name: &str, spec: serde_json::Value) -> VirtualService {
        meshkeeper_crds::parse::from_value(&json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "ns"}, "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn delegate_rules_are_narrowed_to_the_roots_match() {
        let mut all = vec![
            vs(
                "root",
                json!({"hosts": ["reviews"], "http": [
                    {"name": "r", "match": [{"uri": {"prefix": "/api"}}], "timeout": "3s",
                     "delegate": {"name": "leaf"}},
                    {"route": [{"destination": {"host": "reviews"}}]}]}),
            ),
            vs(
                "leaf",
                json!({"http": [
                    {"name": "v2", "match": [{"uri": {"prefix": "/api/v2"}}],
                     "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
                    {"match": [{"uri": {"prefix": "/other"}}],
                     "route": [{"destination": {"host": "reviews"}}]},
                    {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]}),
            ),
        ];
        let warnings = merge_all(&mut all, "cluster.local");
        let http = all[0].spec.http.as_ref().unwrap();
        assert_eq!(http.len(), 3, "two merged rules and the root's own");
        assert_eq!(http[0].name.as_deref(), Some("r-v2"));
        assert_eq!(http[0].timeout.as_deref(), Some("3s"));
        assert_eq!(
            http[0].route.as_ref().unwrap()[0]
                .destination
                .as_ref()
                .unwrap()
                .host
                .as_deref(),
            Some("reviews.ns.svc.cluster.local")
        );
        assert_eq!(
            http[1].r#match.as_ref().unwrap()[0].uri,
            Some(StringMatch::Prefix("/api".into())),
            "a delegate rule without match takes the root's"
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].message.contains("outside"), "{}", warnings[0]);
        assert_eq!(warnings[0].at.field, "spec.http[0].delegate");
    }

    #[test]
    fn a_missing_delegate_is_a_warning_not_a_silent_drop() {
        let mut all = vec![vs(
            "root",
            json!({"hosts": ["reviews"], "http": [{"delegate": {"name": "gone", "namespace": "x"}}]}),
        )];
        let warnings = merge_all(&mut all, "cluster.local");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].to_string().contains("x/gone does not exist"));
        assert!(all[0].spec.http.as_ref().unwrap().is_empty());
    }
}
