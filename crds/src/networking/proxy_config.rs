//! `ProxyConfig`: proxy-level settings for the workloads of a namespace, of
//! the mesh (root namespace, no selector), or of selected workloads (istio/api
//! `networking/v1beta1/proxy_config.proto`).
//!
//! The settings are read when a proxy starts: changing them takes effect when
//! the workload restarts.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::WorkloadSelector;

/// Proxy settings for a set of workloads. At most one selector-less object
/// per namespace, and at most one object selecting any given workload.
#[derive(
    CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    group = "networking.istio.io",
    version = "v1beta1",
    kind = "ProxyConfig",
    namespaced,
    status = "crate::schema::FreeformObject",
    category = "istio-io",
    category = "networking-istio-io",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    schema = "derived"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyConfigSpec {
    /// Pods/VMs the settings apply to; without it, every workload of the
    /// namespace (or of the mesh, in the root namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Number of Envoy worker threads. Unset means 2; 0 means one per CPU
    /// the pod's limits (else requests) allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<i32>,
    /// Extra environment variables for the proxy container. Names starting
    /// with `ISTIO_META_` also become node metadata sent to the control plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_variables: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ProxyImage>,
}

/// Which variant of the proxy image to run. The image reference is
/// `${hub}/${image}:${tag}-${imageType}` (no suffix for `default`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyImage {
    /// `default`, `debug` or `distroless` as Istio publishes them; any other
    /// type published to the hub is allowed too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_type: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{from_value, yaml_documents};
    use serde_json::{Value, json};

    fn round_trip(input: &Value) -> (ProxyConfigSpec, Value) {
        let spec: ProxyConfigSpec = from_value(input).expect("spec parses");
        let back = serde_json::to_value(&spec).expect("spec serializes");
        (spec, back)
    }

    #[test]
    fn fully_populated_spec_round_trips_without_loss() {
        let input = json!({
            "selector": {"matchLabels": {"app": "ratings", "istio.io/rev": "canary"}},
            "concurrency": 4,
            "environmentVariables": {
                "ISTIO_META_DNS_CAPTURE": "true",
                "ENVOY_LOG_LEVEL": "debug",
                "EMPTY": ""
            },
            "image": {"imageType": "distroless"}
        });
        let (spec, back) = round_trip(&input);
        assert_eq!(back, input);
        assert_eq!(spec.concurrency, Some(4));
        assert_eq!(
            spec.image.and_then(|i| i.image_type).as_deref(),
            Some("distroless")
        );
        assert_eq!(
            spec.selector
                .and_then(|s| s.match_labels)
                .and_then(|l| l.get("app").cloned())
                .as_deref(),
            Some("ratings")
        );
    }

    #[test]
    fn zero_concurrency_and_empty_values_survive() {
        // `concurrency: 0` means "all cores" and must not turn into unset.
        let input = json!({
            "selector": {"matchLabels": {}},
            "concurrency": 0,
            "environmentVariables": {},
            "image": {"imageType": ""}
        });
        let (spec, back) = round_trip(&input);
        assert_eq!(back, input);
        assert_eq!(spec.concurrency, Some(0));

        let (spec, back) = round_trip(&json!({}));
        assert_eq!(back, json!({}));
        assert_eq!(spec.concurrency, None);
        assert_eq!(spec.selector, None);
    }

    #[test]
    fn wrong_types_fail_naming_path_and_value() {
        let cases = [
            (json!({"concurrency": "two"}), "concurrency", "two"),
            (json!({"concurrency": 2.5}), "concurrency", "2.5"),
            (
                json!({"concurrency": 2147483648u64}),
                "concurrency",
                "2147483648",
            ),
            (
                json!({"environmentVariables": {"A": 1}}),
                "environmentVariables.A",
                "1",
            ),
            (
                json!({"environmentVariables": ["A=1"]}),
                "environmentVariables",
                "sequence",
            ),
            (json!({"image": "debug"}), "image", "debug"),
            (
                json!({"selector": {"matchLabels": {"app": true}}}),
                "selector.matchLabels.app",
                "true",
            ),
        ];
        for (input, path, bad) in cases {
            let err = from_value::<ProxyConfigSpec>(&input).expect_err(path);
            assert_eq!(err.path(), Some(path), "{err}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let cases = [
            (
                json!({"workloadSelector": {"labels": {}}}),
                "workloadSelector",
            ),
            (
                json!({"selector": {"labels": {"app": "x"}}}),
                "selector.labels",
            ),
            (json!({"image": {"type": "debug"}}), "image.type"),
            (json!({"environment": {}}), "environment"),
        ];
        for (input, path) in cases {
            let err = from_value::<ProxyConfigSpec>(&input).expect_err(path);
            assert_eq!(err.path(), Some(path), "{err}");
            assert!(err.to_string().contains("unknown field"), "{err}");
        }
    }

    #[test]
    fn istio_style_yaml_object_parses_into_the_kind() {
        let yaml = r#"
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata:
  name: per-workload-proxyconfig
  namespace: example
spec:
  selector:
    matchLabels:
      app: ratings
  concurrency: 0
  environmentVariables:
    ISTIO_META_ENABLE_HBONE: "true"
  image:
    imageType: debug
"#;
        let docs = yaml_documents(yaml).expect("yaml");
        let pc: ProxyConfig = from_value(&docs[0]).expect("ProxyConfig parses");
        assert_eq!(pc.metadata.namespace.as_deref(), Some("example"));
        assert_eq!(pc.spec.concurrency, Some(0));
        let back = serde_json::to_value(&pc).expect("ser");
        assert_eq!(back["spec"], docs[0]["spec"]);
    }

    #[test]
    fn crd_serves_v1beta1_with_age_column() {
        use kube::CustomResourceExt;

        let crd = serde_json::to_value(ProxyConfig::crd()).expect("crd");
        assert_eq!(
            crd["metadata"]["name"],
            json!("proxyconfigs.networking.istio.io")
        );
        assert_eq!(crd["spec"]["scope"], json!("Namespaced"));
        assert_eq!(
            crd["spec"]["names"]["categories"],
            json!(["istio-io", "networking-istio-io"])
        );
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], json!("v1beta1"));
        assert_eq!(
            version["additionalPrinterColumns"],
            json!([{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}])
        );
        let props = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        assert_eq!(props["concurrency"]["format"], json!("int32"), "{props}");
        assert!(
            props["selector"]["properties"]["matchLabels"].is_object(),
            "{props}"
        );
    }
}
