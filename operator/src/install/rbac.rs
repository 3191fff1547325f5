//! The webhook's identity and the least it may read. Every rule matches a
//! watch in `meshkeeper_webhook::server::watch`; nothing is written, so no
//! verb other than list and watch appears (the watcher never issues a
//! plain get). The API server version the webhook asks for at start is a
//! non-resource URL every authenticated client may read
//! (`system:public-info-viewer`).

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::meta::{Identity, object_meta};

fn rule(group: &str, resources: &[&str], names: Option<&str>) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        resource_names: names.map(|n| vec![n.to_owned()]),
        verbs: vec!["list".to_owned(), "watch".to_owned()],
        non_resource_urls: None,
    }
}

/// The rules of a revision's webhook.
pub(crate) fn webhook_rules(revision: &str) -> Vec<PolicyRule> {
    vec![
        // Its own MeshRevision only: the injection settings it serves with.
        // The watch selects `metadata.name=<revision>`, which RBAC checks
        // against resourceNames for list and watch.
        rule("meshkeeper.io", &["meshrevisions"], Some(revision)),
        // ProxyConfigs in every namespace: the per-namespace and
        // per-workload proxy overrides applied at injection.
        rule("networking.istio.io", &["proxyconfigs"], None),
        // VirtualServices, DestinationRules, Gateways and ServiceEntries in
        // every namespace: the index behind the cross-object checks at
        // validation (subsets, gateway and destination references).
        rule(
            "networking.istio.io",
            &[
                "virtualservices",
                "destinationrules",
                "gateways",
                "serviceentries",
            ],
            None,
        ),
        // Namespaces: deletions inside a terminating namespace are allowed
        // through the subset-removal guard.
        rule("", &["namespaces"], None),
        // Services and running Pods: the warning about a subset that no
        // running pod serves.
        rule("", &["services", "pods"], None),
    ]
}

pub(crate) fn service_account(
    name: &str,
    namespace: &str,
    id: Identity<'_>,
    owner: &OwnerReference,
) -> ServiceAccount {
    ServiceAccount {
        metadata: object_meta(name, Some(namespace), id, owner),
        ..ServiceAccount::default()
    }
}

pub(crate) fn cluster_role(name: &str, id: Identity<'_>, owner: &OwnerReference) -> ClusterRole {
    ClusterRole {
        metadata: object_meta(name, None, id, owner),
        rules: Some(webhook_rules(id.revision)),
        aggregation_rule: None,
    }
}

/// Binds the role of `name` to the ServiceAccount of the same name.
pub(crate) fn cluster_role_binding(
    name: &str,
    namespace: &str,
    id: Identity<'_>,
    owner: &OwnerReference,
) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: object_meta(name, None, id, owner),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "ClusterRole".to_owned(),
            name: name.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: name.to_owned(),
            namespace: Some(namespace.to_owned()),
            api_group: None,
        }]),
    }
}
