//! The ConfigMap of a namespace: its data (every file, as text) and the
//! object the controller applies.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use super::render::{RenderError, yaml};
use super::{
    BOOTSTRAP_FILE, CLUSTERS_FILE, CONFIG_MAP_NAME, EffectiveSettings, LISTENERS_FILE,
    SETTINGS_FILE, bootstrap, clusters, listeners,
};
use crate::names::{MANAGED_BY, MANAGED_BY_LABEL, REVISION_LABEL};

/// Every file of `namespace`'s ConfigMap, for proxies of `revision` with
/// `settings`. Equal inputs give byte-for-byte equal data.
pub fn config_map_data(
    namespace: &str,
    revision: &str,
    settings: &EffectiveSettings,
) -> Result<BTreeMap<String, String>, RenderError> {
    let settings_file = settings_document(namespace, revision, settings)?;
    Ok(BTreeMap::from([
        (
            BOOTSTRAP_FILE.to_owned(),
            yaml(BOOTSTRAP_FILE, &bootstrap())?,
        ),
        (
            LISTENERS_FILE.to_owned(),
            yaml(LISTENERS_FILE, &discovery_response(listeners()))?,
        ),
        (
            CLUSTERS_FILE.to_owned(),
            yaml(CLUSTERS_FILE, &discovery_response(clusters()))?,
        ),
        (
            SETTINGS_FILE.to_owned(),
            yaml(SETTINGS_FILE, &settings_file)?,
        ),
    ]))
}

/// The ConfigMap object holding `data`, labelled as the operator's and the
/// revision's.
pub fn config_map(namespace: &str, revision: &str, data: BTreeMap<String, String>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIG_MAP_NAME.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
                (REVISION_LABEL.to_owned(), revision.to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// What Envoy's `path_config_source` reads: a DiscoveryResponse whose
/// resources each carry their `@type`.
fn discovery_response(resources: Vec<Value>) -> Value {
    json!({"resources": resources})
}

fn settings_document(
    namespace: &str,
    revision: &str,
    settings: &EffectiveSettings,
) -> Result<Value, RenderError> {
    let mut document = serde_json::to_value(settings).map_err(|e| RenderError {
        file: SETTINGS_FILE,
        message: e.to_string(),
    })?;
    document["namespace"] = json!(namespace);
    document["revision"] = json!(revision);
    Ok(document)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::effective_settings;
    use meshkeeper_crds::meshkeeper::mesh::ProxyDefaults;

    fn defaults() -> EffectiveSettings {
        effective_settings(&ProxyDefaults::default(), &[], &[]).unwrap()
    }

    #[test]
    fn data_holds_the_four_files_and_is_deterministic() {
        let settings = defaults();
        let a = config_map_data("app", "default", &settings).unwrap();
        let b = config_map_data("app", "default", &settings.clone()).unwrap();
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            ["bootstrap.yaml", "cds.yaml", "lds.yaml", "settings.yaml"]
        );
        assert_eq!(a, b);
    }

    #[test]
    fn envoy_files_are_the_same_in_every_namespace_settings_differ() {
        let mut other = defaults();
        other.concurrency = 5;
        let a = config_map_data("app", "default", &defaults()).unwrap();
        let b = config_map_data("web", "default", &other).unwrap();
        for file in [BOOTSTRAP_FILE, LISTENERS_FILE, CLUSTERS_FILE] {
            assert_eq!(a[file], b[file], "{file}");
        }
        assert_ne!(a[SETTINGS_FILE], b[SETTINGS_FILE]);
    }

    #[test]
    fn discovery_files_list_typed_resources() {
        let data = config_map_data("app", "default", &defaults()).unwrap();
        let lds: Value = serde_saphyr::from_str(&data[LISTENERS_FILE]).unwrap();
        let names: Vec<&str> = lds["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(
                    r["@type"],
                    "type.googleapis.com/envoy.config.listener.v3.Listener"
                );
                r["name"].as_str().unwrap()
            })
            .collect();
        assert_eq!(names, ["virtualOutbound", "virtualInbound"]);
        let cds: Value = serde_saphyr::from_str(&data[CLUSTERS_FILE]).unwrap();
        assert_eq!(cds["resources"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn settings_file_reads_as_the_settings() {
        let data = config_map_data("app", "canary", &defaults()).unwrap();
        let text = &data[SETTINGS_FILE];
        let back: Value = serde_saphyr::from_str(text).unwrap();
        assert_eq!(back["namespace"], "app");
        assert_eq!(back["revision"], "canary");
        assert_eq!(back["concurrency"], 2);
        assert_eq!(back["logLevel"], "warning");
        assert_eq!(back["resources"]["limits"]["memory"], "1Gi");
        assert!(back.get("problems").is_none(), "{text}");
    }

    #[test]
    fn config_map_is_named_and_labelled() {
        let cm = config_map("app", "canary", BTreeMap::from([("a".into(), "b".into())]));
        assert_eq!(cm.metadata.name.as_deref(), Some("meshkeeper-proxy"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("app"));
        let labels = cm.metadata.labels.unwrap();
        assert_eq!(
            labels["app.kubernetes.io/managed-by"],
            "meshkeeper-operator"
        );
        assert_eq!(labels["meshkeeper.io/revision"], "canary");
        assert_eq!(cm.data.unwrap()["a"], "b");
    }
}
