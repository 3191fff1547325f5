//! The names, labels and annotations the operator writes, in one place so
//! the pure builders, the reconcilers and the tests agree on them.

use meshkeeper_crds::meshkeeper::mesh::UpdateStrategyType;

/// The one field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "meshkeeper-operator";
/// Finalizer on the Mesh: webhook configurations go first on deletion.
pub const FINALIZER: &str = "meshkeeper.io/cleanup";

/// Standard labels on everything the operator creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "meshkeeper-operator";
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const VERSION_LABEL: &str = "app.kubernetes.io/version";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// The MeshRevision an object belongs to.
pub const REVISION_LABEL: &str = "meshkeeper.io/revision";
/// The webhook server's app name (Deployment, Service, pods).
pub const WEBHOOK_APP: &str = "meshkeeper-webhook";

/// Pod template annotation the operator sets to restart a workload whose
/// proxies are outdated (the value is the time of the restart).
pub const RESTARTED_AT_ANNOTATION: &str = "meshkeeper.io/restartedAt";

/// Secret holding the mesh's CA (current and, during rotation, previous).
pub const CA_SECRET: &str = "meshkeeper-ca";
/// HTTPS port of the webhook Service; the container serves on 9443.
pub const WEBHOOK_SERVICE_PORT: i32 = 443;
pub const WEBHOOK_CONTAINER_PORT: i32 = 9443;

/// Istio's name of the revision of an in-place installation.
pub const DEFAULT_REVISION: &str = meshkeeper_webhook::inject::DEFAULT_REVISION;

/// The revision a Mesh at `version` runs as. In place there is one revision,
/// named after the Mesh (`default` for the usual Mesh `default`), whatever
/// the version. Revision based: `<mesh>-<version>` with the version's dots
/// and other characters a label value cannot hold turned into `-`, as
/// sail-operator names its IstioRevisions (`default-1-24-0`).
pub fn revision_name(mesh: &str, version: &str, strategy: UpdateStrategyType) -> String {
    match strategy {
        UpdateStrategyType::InPlace => mesh.to_owned(),
        UpdateStrategyType::RevisionBased => {
            let version: String = version
                .trim_start_matches('v')
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            format!("{mesh}-{}", version.trim_matches('-'))
        }
    }
}

/// Deployment, Service, ServiceAccount, ClusterRole(Binding) and
/// PodDisruptionBudget of a revision's webhook.
pub fn webhook_name(revision: &str) -> String {
    format!("meshkeeper-webhook-{revision}")
}

/// The Secret holding a revision's serving certificate (`tls.crt`, `tls.key`).
pub fn webhook_tls_secret(revision: &str) -> String {
    format!("meshkeeper-webhook-{revision}-tls")
}

/// MutatingWebhookConfiguration of a revision tag (an alias that points at
/// a revision's webhook).
pub fn tag_injector_name(tag: &str) -> String {
    format!("meshkeeper-sidecar-injector-tag-{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_names_follow_the_strategy() {
        assert_eq!(
            revision_name("default", "1.2.0", UpdateStrategyType::InPlace),
            "default"
        );
        assert_eq!(
            revision_name("default", "1.2.0", UpdateStrategyType::RevisionBased),
            "default-1-2-0"
        );
        assert_eq!(
            revision_name("default", "v0.3.0-rc.1", UpdateStrategyType::RevisionBased),
            "default-0-3-0-rc-1"
        );
    }
}
