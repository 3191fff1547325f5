//! Dangling subsets, both directions, as pure checks over an [`Index`]:
//!
//! - `MK0201` (error): a VirtualService destination names a subset that no
//!   DestinationRule visible to it defines for that host.
//! - `MK0202` (error): a DestinationRule UPDATE or DELETE would take away a
//!   subset that VirtualServices still route to.
//! - `MK0203` (warning): a subset exists but its labels select no running
//!   pod of the host's service, so its traffic would get 503s.
//!
//! Exemptions that depend on the request (namespace terminating, garbage
//! collector) are the server's business; VirtualServices being deleted are
//! already left out by the index.

use std::collections::BTreeMap;

use meshkeeper_crds::networking::common::Labels;
use meshkeeper_crds::networking::{DestinationRule, VirtualService};

use super::index::{Index, IndexedDestinationRule, ObjectKey, RuleOverride, destinations};
use super::{Check, Finding};

pub const UNDEFINED_SUBSET: &str = "MK0201";
pub const SUBSET_STILL_USED: &str = "MK0202";
pub const SUBSET_SELECTS_NO_POD: &str = "MK0203";

/// Checks every destination of a VirtualService that names a subset.
pub fn check_virtual_service(vs: &VirtualService, index: &Index) -> Vec<Finding> {
    let namespace = vs
        .metadata
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or("default");
    let mut findings = Vec::new();
    for (path, destination) in destinations(vs) {
        let (Some(host), Some(subset)) = (
            destination.host.as_deref().filter(|h| !h.is_empty()),
            destination.subset.as_deref().filter(|s| !s.is_empty()),
        ) else {
            continue;
        };
        let path = format!("{path}.subset");
        let resolved = index.resolve_host(host, namespace);
        match index.subset_for(namespace, host, subset) {
            None => findings.push(Finding::error(
                Check::SubsetReferences,
                UNDEFINED_SUBSET,
                path,
                undefined_subset_message(index, namespace, host, &resolved, subset),
            )),
            Some((rule, definition)) => {
                let Some(pods) = index.pods_of_host(&resolved) else {
                    continue;
                };
                if !pods
                    .label_sets()
                    .any(|pod| selects(&definition.labels, pod))
                {
                    findings.push(Finding::warning(
                        Check::SubsetReferences,
                        SUBSET_SELECTS_NO_POD,
                        path,
                        format!(
                            "subset \"{subset}\" of host \"{resolved}\" (defined by DestinationRule \
                             {}) selects no running pod: its labels {} match none of the {} \
                             running pod(s) of the service, so requests routed to it would get \
                             503 errors; fix the subset's labels or deploy the workload first",
                            rule.key,
                            show_labels(&definition.labels),
                            pods.len(),
                        ),
                    ));
                }
            }
        }
    }
    findings
}

fn undefined_subset_message(
    index: &Index,
    namespace: &str,
    host: &str,
    resolved: &str,
    subset: &str,
) -> String {
    let shown_host = if host == resolved {
        format!("\"{host}\"")
    } else {
        format!("\"{host}\" ({resolved})")
    };
    let rules = index.destination_rules_for(namespace, host);
    let hidden = hidden_definitions(index, namespace, resolved, subset, &rules);
    if rules.is_empty() {
        return format!(
            "subset \"{subset}\" of host {shown_host} is not defined: no DestinationRule visible \
             in namespace \"{namespace}\" applies to that host; create a DestinationRule in \
             namespace \"{namespace}\" with host \"{resolved}\" and a subset named \"{subset}\" \
             (with the labels of the pods it should select), or remove the subset from the \
             route{hidden}"
        );
    }
    let names: Vec<String> = rules.iter().map(|r| r.key.to_string()).collect();
    let defined: Vec<&str> = rules
        .iter()
        .flat_map(|r| r.subsets.iter().map(|s| s.name.as_str()))
        .collect();
    let defined = if defined.is_empty() {
        "no subsets".to_owned()
    } else {
        format!("subsets {}", quoted_list(&defined))
    };
    format!(
        "subset \"{subset}\" of host {shown_host} is not defined: DestinationRule {} applies to \
         that host in namespace \"{namespace}\" and defines {defined}; add a subset named \
         \"{subset}\" to {}, or route to a defined subset{hidden}",
        names.join(", "),
        if names.len() == 1 {
            "it"
        } else {
            "one of them"
        },
    )
}

/// Explains rules that define the subset for the host but do not count for
/// a caller in `namespace`; empty when there are none.
fn hidden_definitions(
    index: &Index,
    namespace: &str,
    resolved: &str,
    subset: &str,
    applicable: &[&IndexedDestinationRule],
) -> String {
    let notes: Vec<String> = index
        .rules_defining_anywhere(resolved, subset)
        .into_iter()
        .filter(|dr| !applicable.iter().any(|a| a.key == dr.key))
        .map(|dr| {
            if dr.is_visible_to(namespace) {
                format!(
                    "DestinationRule {} defines it but is overridden by a rule with higher \
                     precedence (the caller's namespace first, then the service's, then \
                     \"{}\")",
                    dr.key,
                    index.root_namespace()
                )
            } else {
                format!(
                    "DestinationRule {} defines it but is not exported to namespace \"{namespace}\"",
                    dr.key
                )
            }
        })
        .collect();
    if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    }
}

/// Checks a DestinationRule UPDATE (`new` is the new object) or DELETE
/// (`new` is `None`) against the VirtualServices that route to its subsets.
pub fn check_destination_rule_change(
    old: &DestinationRule,
    new: Option<&DestinationRule>,
    index: &Index,
) -> Vec<Finding> {
    let before = index.index_destination_rule(old);
    let after = new.map(|n| index.index_destination_rule(n));
    let as_before = RuleOverride {
        key: &before.key,
        replacement: Some(&before),
    };
    let as_after = RuleOverride {
        key: &before.key,
        replacement: after.as_ref(),
    };
    let mut findings = Vec::new();
    for (position, subset) in before.subsets.iter().enumerate() {
        if before.subsets[..position]
            .iter()
            .any(|s| s.name == subset.name)
        {
            continue;
        }
        let mut broken: Vec<&ObjectKey> = index
            .users_of_pattern(&before.host, &subset.name)
            .into_iter()
            .filter(|(host, vs)| {
                index.defines_subset_with(&vs.namespace, host, &subset.name, Some(as_before))
                    && !index.defines_subset_with(&vs.namespace, host, &subset.name, Some(as_after))
            })
            .map(|(_, vs)| vs)
            .collect();
        if broken.is_empty() {
            continue;
        }
        broken.sort();
        broken.dedup();
        findings.push(Finding::error(
            Check::SubsetRemoval,
            SUBSET_STILL_USED,
            removal_path(&before, after.as_ref(), position, &subset.name),
            removal_message(&before, after.as_ref(), &subset.name, &broken),
        ));
    }
    findings
}

/// Points at the field whose change takes the subset away.
fn removal_path(
    before: &IndexedDestinationRule,
    after: Option<&IndexedDestinationRule>,
    position: usize,
    subset: &str,
) -> String {
    match after {
        Some(after) if after.subset(subset).is_some() && after.host != before.host => {
            "spec.host".to_owned()
        }
        Some(after) if after.subset(subset).is_some() => "spec.exportTo".to_owned(),
        Some(_) => format!("spec.subsets[{position}]"),
        None => "metadata.name".to_owned(),
    }
}

fn removal_message(
    before: &IndexedDestinationRule,
    after: Option<&IndexedDestinationRule>,
    subset: &str,
    users: &[&ObjectKey],
) -> String {
    let users = users
        .iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let change = match after {
        None => format!("deleting DestinationRule {}", before.key),
        Some(after) if after.subset(subset).is_none() => format!(
            "removing subset \"{subset}\" from DestinationRule {}",
            before.key
        ),
        Some(after) if after.host != before.host => format!(
            "changing the host of DestinationRule {} from \"{}\" to \"{}\"",
            before.key, before.host, after.host
        ),
        Some(_) => format!("narrowing the exportTo of DestinationRule {}", before.key),
    };
    format!(
        "{change} would leave subset \"{subset}\" of host \"{}\" undefined for VirtualServices \
         that still route to it: {users}; their traffic to it would fail with 503 errors. Change \
         those VirtualServices to stop routing to subset \"{subset}\" first, or keep the subset \
         defined",
        before.host
    )
}

/// A subset with labels `wanted` selects a pod when the pod carries every
/// one of them (no labels: every pod).
fn selects(wanted: &Labels, pod: &Labels) -> bool {
    wanted.iter().all(|(k, v)| pod.get(k) == Some(v))
}

fn show_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "{} (every pod)".to_owned();
    }
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::validate::Severity;

    fn dr(namespace: &str, name: &str, spec: serde_json::Value) -> DestinationRule {
        serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"namespace": namespace, "name": name},
            "spec": spec,
        }))
        .unwrap()
    }

    fn vs(namespace: &str, name: &str, spec: serde_json::Value) -> VirtualService {
        serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"namespace": namespace, "name": name},
            "spec": spec,
        }))
        .unwrap()
    }

    fn route_to(host: &str, subset: &str) -> serde_json::Value {
        json!({"hosts": [host], "http": [{"route": [{"destination": {"host": host, "subset": subset}}]}]})
    }

    fn reviews_rule(namespace: &str, name: &str, versions: &[&str]) -> DestinationRule {
        let subsets: Vec<_> = versions
            .iter()
            .map(|v| json!({"name": v, "labels": {"version": v}}))
            .collect();
        dr(
            namespace,
            name,
            json!({"host": "reviews", "subsets": subsets}),
        )
    }

    fn index_with(rules: &[DestinationRule], services: &[VirtualService]) -> Index {
        let mut index = Index::default();
        for r in rules {
            index.upsert_destination_rule(r);
        }
        for s in services {
            index.upsert_virtual_service(s);
        }
        index
    }

    #[test]
    fn undefined_subset_names_host_subset_namespace_and_rule() {
        let index = index_with(&[reviews_rule("ns", "reviews", &["v1", "v2"])], &[]);
        let service = vs(
            "ns",
            "reviews",
            json!({"hosts": ["reviews"], "http": [{"route": [
                {"destination": {"host": "reviews", "subset": "v1"}, "weight": 50},
                {"destination": {"host": "reviews", "subset": "v9"}, "weight": 50},
            ]}]}),
        );
        let findings = check_virtual_service(&service, &index);
        assert_eq!(findings.len(), 1, "{findings:?}");
        let f = &findings[0];
        assert_eq!(
            (f.code, f.severity, f.check),
            (UNDEFINED_SUBSET, Severity::Error, Check::SubsetReferences)
        );
        assert_eq!(f.path, "spec.http[0].route[1].destination.subset");
        for part in [
            "\"v9\"",
            "\"reviews\" (reviews.ns.svc.cluster.local)",
            "namespace \"ns\"",
            "DestinationRule ns/reviews",
            "\"v1\", \"v2\"",
            "add a subset named \"v9\"",
        ] {
            assert!(f.message.contains(part), "{part} missing in: {}", f.message);
        }
    }

    #[test]
    fn without_any_rule_the_message_says_which_rule_to_create() {
        let index = Index::default();
        let findings = check_virtual_service(&vs("shop", "cart", route_to("cart", "v2")), &index);
        assert_eq!(findings.len(), 1);
        let message = &findings[0].message;
        assert!(
            message.contains("create a DestinationRule in namespace \"shop\" with host \"cart.shop.svc.cluster.local\" and a subset named \"v2\""),
            "{message}"
        );
    }

    #[test]
    fn mirrors_tcp_and_tls_destinations_are_checked_with_their_paths() {
        let index = Index::default();
        let service = vs(
            "ns",
            "all",
            json!({
                "hosts": ["reviews"],
                "http": [{
                    "route": [{"destination": {"host": "reviews"}}],
                    "mirror": {"host": "reviews", "subset": "m1"},
                    "mirrors": [{"destination": {"host": "reviews", "subset": "m2"}}],
                }],
                "tcp": [{"route": [{"destination": {"host": "db", "subset": "t1"}}]}],
                "tls": [{"match": [{"sniHosts": ["reviews"]}], "route": [{"destination": {"host": "reviews", "subset": "s1"}}]}],
            }),
        );
        let paths: Vec<String> = check_virtual_service(&service, &index)
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(
            paths,
            [
                "spec.http[0].mirror.subset",
                "spec.http[0].mirrors[0].destination.subset",
                "spec.tcp[0].route[0].destination.subset",
                "spec.tls[0].route[0].destination.subset",
            ]
        );
    }

    #[test]
    fn subset_shadowed_by_a_higher_precedence_rule_is_undefined() {
        // The caller's own rule for the host wins, and it lacks v2.
        let index = index_with(
            &[
                reviews_rule("svc", "reviews", &["v1", "v2"]),
                dr(
                    "caller",
                    "own",
                    json!({"host": "reviews.svc.svc.cluster.local", "subsets": [{"name": "v1"}]}),
                ),
            ],
            &[],
        );
        let service = vs(
            "caller",
            "r",
            route_to("reviews.svc.svc.cluster.local", "v2"),
        );
        let findings = check_virtual_service(&service, &index);
        assert_eq!(findings.len(), 1);
        let message = &findings[0].message;
        assert!(
            message.contains("DestinationRule caller/own applies"),
            "{message}"
        );
        assert!(
            message.contains("DestinationRule svc/reviews defines it but is overridden"),
            "{message}"
        );
    }

    #[test]
    fn subset_in_a_rule_not_exported_to_the_caller_is_explained() {
        let hidden = dr(
            "svc",
            "reviews",
            json!({"host": "reviews", "exportTo": ["."], "subsets": [{"name": "v2"}]}),
        );
        let index = index_with(&[hidden], &[]);
        let service = vs(
            "caller",
            "r",
            route_to("reviews.svc.svc.cluster.local", "v2"),
        );
        let findings = check_virtual_service(&service, &index);
        assert_eq!(findings.len(), 1);
        let message = &findings[0].message;
        assert!(message.contains("create a DestinationRule"), "{message}");
        assert!(
            message.contains(
                "DestinationRule svc/reviews defines it but is not exported to namespace \"caller\""
            ),
            "{message}"
        );
    }

    fn pod(version: &str) -> Labels {
        [
            ("app".to_owned(), "reviews".to_owned()),
            ("version".to_owned(), version.to_owned()),
        ]
        .into()
    }

    #[test]
    fn subset_selecting_no_pod_is_a_warning() {
        let mut index = index_with(&[reviews_rule("ns", "reviews", &["v1", "v2"])], &[]);
        index.set_service_pods("ns", "reviews", vec![pod("v1")]);
        let findings = check_virtual_service(&vs("ns", "r", route_to("reviews", "v2")), &index);
        assert_eq!(findings.len(), 1);
        let f = &findings[0];
        assert_eq!(
            (f.code, f.severity),
            (SUBSET_SELECTS_NO_POD, Severity::Warning)
        );
        assert_eq!(f.path, "spec.http[0].route[0].destination.subset");
        assert!(
            f.message.contains("{version=v2}") && f.message.contains("503"),
            "{}",
            f.message
        );
        assert!(
            check_virtual_service(&vs("ns", "r", route_to("reviews", "v1")), &index).is_empty()
        );
    }

    #[test]
    fn pods_unknown_means_no_warning() {
        let index = index_with(&[reviews_rule("ns", "reviews", &["v2"])], &[]);
        assert!(
            check_virtual_service(&vs("ns", "r", route_to("reviews", "v2")), &index).is_empty()
        );
    }

    #[test]
    fn removing_a_used_subset_lists_the_virtual_services() {
        let old = reviews_rule("ns", "reviews", &["v1", "v2"]);
        let users = [
            vs("ns", "b", route_to("reviews", "v2")),
            vs("other", "a", route_to("reviews.ns.svc.cluster.local", "v2")),
            vs("ns", "v1-only", route_to("reviews", "v1")),
        ];
        let index = index_with(std::slice::from_ref(&old), &users);
        let new = reviews_rule("ns", "reviews", &["v1"]);
        let findings = check_destination_rule_change(&old, Some(&new), &index);
        assert_eq!(findings.len(), 1, "{findings:?}");
        let f = &findings[0];
        assert_eq!(
            (f.code, f.severity, f.check),
            (SUBSET_STILL_USED, Severity::Error, Check::SubsetRemoval)
        );
        assert_eq!(f.path, "spec.subsets[1]");
        assert!(
            f.message
                .contains("removing subset \"v2\" from DestinationRule ns/reviews"),
            "{}",
            f.message
        );
        assert!(f.message.contains("ns/b, other/a"), "{}", f.message);
        assert!(!f.message.contains("v1-only"), "{}", f.message);
    }

    #[test]
    fn deleting_a_rule_in_use_is_an_error() {
        let old = reviews_rule("ns", "reviews", &["v1"]);
        let index = index_with(
            std::slice::from_ref(&old),
            &[vs("ns", "r", route_to("reviews", "v1"))],
        );
        let findings = check_destination_rule_change(&old, None, &index);
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0]
                .message
                .starts_with("deleting DestinationRule ns/reviews"),
            "{}",
            findings[0].message
        );
        assert!(findings[0].message.contains("ns/r"));
    }

    #[test]
    fn removal_is_fine_when_another_visible_rule_still_defines_the_subset() {
        let old = reviews_rule("ns", "reviews", &["v1"]);
        let fallback = dr(
            "istio-system",
            "fallback",
            json!({"host": "reviews.ns.svc.cluster.local", "subsets": [{"name": "v1"}]}),
        );
        let sibling = reviews_rule("ns", "sibling", &["v1"]);
        let users = [vs("ns", "r", route_to("reviews", "v1"))];
        for other in [fallback, sibling] {
            let index = index_with(&[old.clone(), other], &users);
            assert!(check_destination_rule_change(&old, None, &index).is_empty());
        }
    }

    #[test]
    fn removal_is_fine_when_the_only_user_is_being_deleted() {
        let old = reviews_rule("ns", "reviews", &["v1"]);
        let mut value = serde_json::to_value(vs("ns", "r", route_to("reviews", "v1"))).unwrap();
        value["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let leaving: VirtualService = serde_json::from_value(value).unwrap();
        let index = index_with(std::slice::from_ref(&old), &[leaving]);
        assert!(check_destination_rule_change(&old, None, &index).is_empty());
    }

    #[test]
    fn narrowing_export_to_away_from_a_user_is_an_error() {
        let old = reviews_rule("ns", "reviews", &["v1"]);
        let new = dr(
            "ns",
            "reviews",
            json!({"host": "reviews", "exportTo": ["."], "subsets": [{"name": "v1"}]}),
        );
        let index = index_with(
            std::slice::from_ref(&old),
            &[vs(
                "other",
                "r",
                route_to("reviews.ns.svc.cluster.local", "v1"),
            )],
        );
        let findings = check_destination_rule_change(&old, Some(&new), &index);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].path, "spec.exportTo");
    }

    #[test]
    fn removing_unused_subsets_is_fine() {
        let old = reviews_rule("ns", "reviews", &["v1", "v2"]);
        let index = index_with(
            std::slice::from_ref(&old),
            &[vs("ns", "r", route_to("reviews", "v1"))],
        );
        let new = reviews_rule("ns", "reviews", &["v1"]);
        assert!(check_destination_rule_change(&old, Some(&new), &index).is_empty());
    }

    #[test]
    fn wildcard_rule_removal_finds_users_of_covered_hosts() {
        let old = dr(
            "ns",
            "all",
            json!({"host": "*.ns.svc.cluster.local", "subsets": [{"name": "v1"}]}),
        );
        let index = index_with(
            std::slice::from_ref(&old),
            &[vs("ns", "r", route_to("ratings", "v1"))],
        );
        let findings = check_destination_rule_change(&old, None, &index);
        assert_eq!(findings.len(), 1);
        assert!(findings[0].message.contains("ns/r"));
    }

    /// Bookinfo's destination-rule-all and virtual-service-all-v1 samples.
    #[test]
    fn bookinfo_all_v1_has_no_findings() {
        let rules = [
            dr(
                "bookinfo",
                "productpage",
                json!({"host": "productpage", "subsets": [
                {"name": "v1", "labels": {"version": "v1"}}]}),
            ),
            dr(
                "bookinfo",
                "reviews",
                json!({"host": "reviews", "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}},
                {"name": "v3", "labels": {"version": "v3"}}]}),
            ),
            dr(
                "bookinfo",
                "ratings",
                json!({"host": "ratings", "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}},
                {"name": "v2-mysql", "labels": {"version": "v2-mysql"}},
                {"name": "v2-mysql-vm", "labels": {"version": "v2-mysql-vm"}}]}),
            ),
            dr(
                "bookinfo",
                "details",
                json!({"host": "details", "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}}]}),
            ),
        ];
        let services: Vec<VirtualService> = ["productpage", "reviews", "ratings", "details"]
            .iter()
            .map(|h| vs("bookinfo", h, route_to(h, "v1")))
            .collect();
        let index = index_with(&rules, &services);
        for service in &services {
            assert_eq!(check_virtual_service(service, &index), []);
        }
        // Re-applying the rules unchanged is not a removal.
        for rule in &rules {
            assert_eq!(check_destination_rule_change(rule, Some(rule), &index), []);
        }
        // And the guard is live: deleting reviews' rule would break its VirtualService.
        assert_eq!(
            check_destination_rule_change(&rules[1], None, &index).len(),
            1
        );
    }
}
