//! The pod annotation `proxy.istio.io/config`: Istio's ProxyConfig for one
//! pod, as YAML or JSON. meshkeeper uses the fields it can honour
//! (`concurrency`, `proxyMetadata` as environment variables,
//! `image.imageType`); other ProxyConfig fields are reported as warnings, so
//! nobody believes a setting took effect when it did not. As in Istio, the
//! annotation overrides the mesh and namespace ProxyConfigs and is itself
//! overridden by a ProxyConfig that selects the workload.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::annotations::{Findings, invalid_because};
use super::{ProxyOverrides, names};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodProxyConfig {
    concurrency: Option<i32>,
    proxy_metadata: Option<BTreeMap<String, String>>,
    image: Option<Image>,
    /// Everything else Istio's ProxyConfig has; meshkeeper does not use it.
    #[serde(flatten)]
    unused: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Image {
    image_type: Option<String>,
}

const ACCEPTED: &str = "YAML or JSON of Istio's ProxyConfig, e.g. '{concurrency: 2, proxyMetadata: {KEY: value}, image: {imageType: distroless}}'";

/// `overrides` with the pod's annotation applied where no workload
/// ProxyConfig decided; problems go to `findings`.
pub(crate) fn apply(
    annotations: &BTreeMap<String, String>,
    overrides: &ProxyOverrides,
    findings: &mut Findings,
) -> ProxyOverrides {
    let mut merged = overrides.clone();
    let Some(text) = annotations.get(names::PROXY_CONFIG) else {
        return merged;
    };
    let config = match parse(text) {
        Ok(config) => config,
        Err(problem) => {
            findings.errors.push(invalid_because(
                names::PROXY_CONFIG,
                text,
                &problem,
                ACCEPTED,
            ));
            return merged;
        }
    };
    if let Some(concurrency) = config.concurrency {
        if concurrency < 0 {
            findings.errors.push(invalid_because(
                names::PROXY_CONFIG,
                text,
                &format!("concurrency {concurrency} is negative"),
                "concurrency 0 (one worker per CPU) or more",
            ));
        } else if !overrides.set_by_workload.concurrency {
            merged.concurrency = Some(concurrency);
        }
    }
    if let Some(image_type) = config.image.and_then(|i| i.image_type)
        && !overrides.set_by_workload.image_type
    {
        merged.image_type = Some(image_type);
    }
    for (name, value) in config.proxy_metadata.into_iter().flatten() {
        if !overrides.set_by_workload.environment.contains(&name) {
            merged.environment.insert(name, value);
        }
    }
    if !config.unused.is_empty() {
        let fields: Vec<&str> = config.unused.keys().map(String::as_str).collect();
        findings.warnings.push(format!(
            "annotation {}: {} not used by meshkeeper (it honours concurrency, proxyMetadata and image.imageType)",
            names::PROXY_CONFIG,
            fields.join(", ")
        ));
    }
    merged
}

fn parse(text: &str) -> Result<PodProxyConfig, String> {
    let documents = meshkeeper_crds::parse::yaml_documents(text).map_err(|e| e.to_string())?;
    match documents.as_slice() {
        [] => Ok(PodProxyConfig::default()),
        [document] => serde_json::from_value(document.clone()).map_err(|e| e.to_string()),
        _ => Err("more than one YAML document".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated(value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(names::PROXY_CONFIG.to_owned(), value.to_owned())])
    }

    fn namespace_level() -> ProxyOverrides {
        ProxyOverrides {
            concurrency: Some(2),
            environment: BTreeMap::from([("FROM_NAMESPACE".to_owned(), "1".to_owned())]),
            ..ProxyOverrides::default()
        }
    }

    #[test]
    fn the_annotation_overrides_namespace_settings() {
        let mut findings = Findings::default();
        let merged = apply(
            &annotated(
                "concurrency: 4\nproxyMetadata: {EXTRA: yes-please}\nimage: {imageType: debug}",
            ),
            &namespace_level(),
            &mut findings,
        );
        assert_eq!(merged.concurrency, Some(4));
        assert_eq!(merged.image_type.as_deref(), Some("debug"));
        assert_eq!(merged.environment["EXTRA"], "yes-please");
        assert_eq!(merged.environment["FROM_NAMESPACE"], "1");
        assert!(
            findings.errors.is_empty() && findings.warnings.is_empty(),
            "{findings:?}"
        );
    }

    #[test]
    fn a_workload_proxy_config_wins_over_the_annotation() {
        let mut overrides = namespace_level();
        overrides.concurrency = Some(8);
        overrides
            .environment
            .insert("PINNED".into(), "workload".into());
        overrides.set_by_workload.concurrency = true;
        overrides
            .set_by_workload
            .environment
            .insert("PINNED".into());
        let mut findings = Findings::default();
        let merged = apply(
            &annotated(r#"{"concurrency": 1, "proxyMetadata": {"PINNED": "pod", "OTHER": "pod"}}"#),
            &overrides,
            &mut findings,
        );
        assert_eq!(merged.concurrency, Some(8));
        assert_eq!(merged.environment["PINNED"], "workload");
        assert_eq!(merged.environment["OTHER"], "pod");
    }

    #[test]
    fn unused_fields_warn_and_bad_values_deny_naming_the_annotation() {
        let mut findings = Findings::default();
        apply(
            &annotated("holdApplicationUntilProxyStarts: true\ndrainDuration: 5s"),
            &namespace_level(),
            &mut findings,
        );
        assert!(findings.errors.is_empty());
        let warning = &findings.warnings[0];
        assert!(
            warning.contains("drainDuration, holdApplicationUntilProxyStarts")
                && warning.contains(names::PROXY_CONFIG),
            "{warning}"
        );

        for bad in [
            "concurrency: lots",
            "concurrency: -1",
            "[1, 2]",
            "a: 1\n---\nb: 2",
        ] {
            let mut findings = Findings::default();
            let merged = apply(&annotated(bad), &namespace_level(), &mut findings);
            assert_eq!(merged.concurrency, Some(2), "{bad}: nothing changes");
            let error = findings
                .errors
                .first()
                .unwrap_or_else(|| panic!("{bad} was accepted"));
            assert!(
                error.contains(names::PROXY_CONFIG) && error.contains("expected"),
                "{error}"
            );
        }
    }
}
