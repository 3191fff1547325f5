//! [`Settings`] from a MeshRevision: the mesh's choices with meshkeeper's
//! defaults filled in.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use meshkeeper_crds::meshkeeper::mesh::{NativeSidecar, ProxyLogLevel};
use meshkeeper_crds::meshkeeper::mesh_revision::MeshRevision;

use super::Settings;

/// The revision name when the MeshRevision has none (only in hand-made
/// objects): Istio's name for the default revision.
pub const DEFAULT_REVISION: &str = "default";
/// Envoy image used when neither the MeshRevision nor the pod names one.
pub const DEFAULT_PROXY_IMAGE: &str = "docker.io/envoyproxy/envoy:v1.36.2";
/// The iptables init container image (built from init/ by init/Dockerfile).
pub const DEFAULT_INIT_IMAGE: &str = "ghcr.io/meshkeeper/init:0.1.0";
/// Envoy worker threads when nothing sets them, as Istio's default.
pub const DEFAULT_CONCURRENCY: i32 = 2;

impl Settings {
    /// Settings for the webhook serving `rev`. `native_sidecars_supported`
    /// resolves the Mesh's `nativeSidecar: Auto`; the server sets it when
    /// the cluster runs Kubernetes 1.33 or later
    /// ([`crate::server::watch::NATIVE_SIDECARS_SINCE_MINOR`]).
    pub fn from_revision(
        rev: &MeshRevision,
        own_namespace: &str,
        init_image: &str,
        default_proxy_image: &str,
        native_sidecars_supported: bool,
    ) -> Settings {
        let config = &rev.spec.config;
        let injection = config.injection.clone().unwrap_or_default();
        let proxy = config.proxy.clone().unwrap_or_default();
        Settings {
            revision: rev
                .metadata
                .name
                .clone()
                .unwrap_or_else(|| DEFAULT_REVISION.to_owned()),
            version: rev.spec.version.clone(),
            tags: rev.spec.tags.clone().unwrap_or_default(),
            own_namespace: own_namespace.to_owned(),
            policy: injection.policy.unwrap_or_default(),
            never_inject_selector: injection.never_inject_selector.unwrap_or_default(),
            always_inject_selector: injection.always_inject_selector.unwrap_or_default(),
            native_sidecar: match injection.native_sidecar.unwrap_or_default() {
                NativeSidecar::True => true,
                NativeSidecar::False => false,
                NativeSidecar::Auto => native_sidecars_supported,
            },
            proxy_image: proxy
                .image
                .unwrap_or_else(|| default_proxy_image.to_owned()),
            proxy_resources: proxy.resources.unwrap_or_else(default_proxy_resources),
            proxy_log_level: log_level_name(proxy.log_level.unwrap_or(ProxyLogLevel::Warning))
                .to_owned(),
            proxy_concurrency: Some(proxy.concurrency.unwrap_or(DEFAULT_CONCURRENCY)),
            init_image: init_image.to_owned(),
        }
    }
}

/// Requests 100m CPU and 128Mi, limits 2 CPUs and 1Gi.
pub fn default_proxy_resources() -> ResourceRequirements {
    let side = |cpu: &str, memory: &str| {
        Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ]))
    };
    ResourceRequirements {
        requests: side("100m", "128Mi"),
        limits: side("2", "1Gi"),
        ..ResourceRequirements::default()
    }
}

/// Envoy's spelling of the level.
fn log_level_name(level: ProxyLogLevel) -> &'static str {
    match level {
        ProxyLogLevel::Trace => "trace",
        ProxyLogLevel::Debug => "debug",
        ProxyLogLevel::Info => "info",
        ProxyLogLevel::Warning => "warning",
        ProxyLogLevel::Error => "error",
        ProxyLogLevel::Critical => "critical",
        ProxyLogLevel::Off => "off",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshkeeper_crds::meshkeeper::mesh::InjectionMode;
    use serde_json::json;

    fn revision(spec: serde_json::Value) -> MeshRevision {
        serde_json::from_value(json!({
            "apiVersion": "meshkeeper.io/v1alpha1",
            "kind": "MeshRevision",
            "metadata": {"name": "canary"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn defaults_fill_an_empty_mesh() {
        let rev = revision(json!({"mesh": "default", "version": "0.1.0"}));
        let s = Settings::from_revision(&rev, "meshkeeper-system", "init:1", "envoy:1", true);
        assert_eq!(s.revision, "canary");
        assert_eq!(s.version, "0.1.0");
        assert!(s.tags.is_empty());
        assert_eq!(s.own_namespace, "meshkeeper-system");
        assert_eq!(s.policy, InjectionMode::Enabled);
        assert!(s.never_inject_selector.is_empty() && s.always_inject_selector.is_empty());
        assert!(s.native_sidecar, "Auto follows the cluster");
        assert_eq!(s.proxy_image, "envoy:1");
        assert_eq!(s.init_image, "init:1");
        assert_eq!(s.proxy_log_level, "warning");
        assert_eq!(s.proxy_concurrency, Some(DEFAULT_CONCURRENCY));
        assert_eq!(s.proxy_resources, default_proxy_resources());
        let limits = s.proxy_resources.limits.unwrap();
        assert_eq!(limits["cpu"].0, "2");
        assert_eq!(limits["memory"].0, "1Gi");

        let s = Settings::from_revision(&rev, "m", "i", "e", false);
        assert!(!s.native_sidecar);
    }

    #[test]
    fn mesh_choices_win() {
        let rev = revision(json!({
            "mesh": "default", "version": "0.1.0", "tags": ["prod", "stable"],
            "proxy": {"image": "envoyproxy/envoy:v1.36.2", "logLevel": "debug", "concurrency": 0,
                      "resources": {"requests": {"cpu": "50m"}}},
            "injection": {"policy": "Disabled", "nativeSidecar": "False",
                          "neverInjectSelector": [{"matchLabels": {"a": "b"}}],
                          "alwaysInjectSelector": [{"matchLabels": {"c": "d"}}, {"matchLabels": {"e": "f"}}]}
        }));
        let s = Settings::from_revision(&rev, "m", "i", "e", true);
        assert_eq!(s.tags, ["prod", "stable"]);
        assert_eq!(s.policy, InjectionMode::Disabled);
        assert!(!s.native_sidecar, "False beats a capable cluster");
        assert_eq!(s.proxy_image, "envoyproxy/envoy:v1.36.2");
        assert_eq!(s.proxy_log_level, "debug");
        assert_eq!(s.proxy_concurrency, Some(0));
        assert_eq!(s.never_inject_selector.len(), 1);
        assert_eq!(s.always_inject_selector.len(), 2);
        assert_eq!(s.proxy_resources.requests.unwrap()["cpu"].0, "50m");
        assert_eq!(
            s.proxy_resources.limits, None,
            "a Mesh's own resources are kept as given"
        );

        let rev =
            revision(json!({"mesh": "m", "version": "1", "injection": {"nativeSidecar": "True"}}));
        assert!(Settings::from_revision(&rev, "m", "i", "e", false).native_sidecar);
    }
}
