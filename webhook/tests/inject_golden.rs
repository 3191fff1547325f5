#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Golden tests for sidecar injection: each `tests/golden/inject/<case>.in.json`
//! (a Pod as the API server sends it) is injected, the returned JSON Patch is
//! applied to the input, and the result must equal `<case>.out.json`.
//!
//! Refresh after an intended change:
//! `UPDATE_GOLDEN=1 cargo test -p meshkeeper-webhook --test inject_golden`

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use meshkeeper_crds::meshkeeper::mesh_revision::MeshRevision;
use meshkeeper_crds::networking::proxy_config::ProxyConfig;
use meshkeeper_webhook::inject::{
    InjectionStatus, Outcome, Request, Scope, Settings, inject, names, proxy_overrides,
};
use serde_json::{Value, json};

/// Most a patch may hold: five labels and two annotations one key at a
/// time, two init containers, the sidecar and the volume.
const MAX_OPS: usize = 11;

struct Case {
    name: &'static str,
    native_mesh: bool,
    scope: Scope,
    /// The ProxyConfig objects in the cluster; which apply is worked out
    /// from the input pod's own labels and namespace, as the server does.
    proxy_configs: Vec<ProxyConfig>,
}

fn case(name: &'static str) -> Case {
    Case {
        name,
        native_mesh: false,
        scope: Scope::Namespace,
        proxy_configs: Vec::new(),
    }
}

fn cases() -> Vec<Case> {
    vec![
        case("typical"),
        Case {
            native_mesh: true,
            ..case("native-sidecar")
        },
        case("init-containers"),
        case("init-containers-native"),
        case("annotations"),
        case("interception-none"),
        Case {
            scope: Scope::Object,
            ..case("bare-object-scope-opted-in")
        },
        case("bare"),
        case("canonical-app-version"),
        case("canonical-kubernetes-labels"),
        // One resource annotation replaces every mesh default.
        case("resources-one-annotation"),
        Case {
            proxy_configs: shop_proxy_configs(),
            ..case("proxy-config")
        },
        // The pod's own proxy.istio.io/config over the namespace's ProxyConfig.
        Case {
            proxy_configs: shop_proxy_configs(),
            ..case("pod-proxy-config")
        },
        // Istio's gateway Deployment: `istio-proxy` with `image: auto`.
        case("gateway"),
        case("grpc-agent"),
    ]
}

/// The revision every case injects with: a Mesh that names its proxy image
/// and leaves the rest to meshkeeper's defaults.
fn settings(native: bool) -> Settings {
    let revision: MeshRevision = serde_json::from_value(json!({
        "apiVersion": "meshkeeper.io/v1alpha1",
        "kind": "MeshRevision",
        "metadata": {"name": "default"},
        "spec": {
            "mesh": "default",
            "version": "0.1.0",
            "proxy": {"image": "docker.io/envoyproxy/envoy:v1.36.2"}
        }
    }))
    .unwrap();
    Settings::from_revision(
        &revision,
        "meshkeeper-system",
        "ghcr.io/meshkeeper/meshkeeper-init:0.1.0",
        "unused/default:0",
        native,
    )
}

/// Root namespace of the mesh the cases run in.
const ROOT_NAMESPACE: &str = "istio-system";

/// ProxyConfig at all three levels: mesh-wide, the `shop` namespace, and
/// two workload selectors in `shop`, of which only `tier: batch` matches
/// the `proxy-config` pod. Each level overrides the one before.
fn shop_proxy_configs() -> Vec<ProxyConfig> {
    serde_json::from_value(json!([
        {
            "apiVersion": "networking.istio.io/v1beta1", "kind": "ProxyConfig",
            "metadata": {"name": "mesh", "namespace": ROOT_NAMESPACE, "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"environmentVariables": {"ISTIO_META_DNS_CAPTURE": "true", "TEAM": "platform", "TIER": "any"}}
        },
        {
            "apiVersion": "networking.istio.io/v1beta1", "kind": "ProxyConfig",
            "metadata": {"name": "shop", "namespace": "shop", "creationTimestamp": "2025-02-01T00:00:00Z"},
            "spec": {"concurrency": 1, "image": {"imageType": "debug"}, "environmentVariables": {"TEAM": "shop", "TIER": "any"}}
        },
        {
            "apiVersion": "networking.istio.io/v1beta1", "kind": "ProxyConfig",
            "metadata": {"name": "batch", "namespace": "shop", "creationTimestamp": "2025-03-01T00:00:00Z"},
            "spec": {"selector": {"matchLabels": {"tier": "batch"}}, "concurrency": 3, "environmentVariables": {"TIER": "batch"}}
        },
        {
            "apiVersion": "networking.istio.io/v1beta1", "kind": "ProxyConfig",
            "metadata": {"name": "web", "namespace": "shop", "creationTimestamp": "2025-01-15T00:00:00Z"},
            "spec": {"selector": {"matchLabels": {"tier": "web"}}, "concurrency": 8, "image": {"imageType": "distroless"}, "environmentVariables": {"TIER": "web"}}
        }
    ]))
    .unwrap()
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/inject")
}

fn read_json(path: &PathBuf) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run(case: &Case, pod: &Pod, settings: &Settings) -> Outcome {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let overrides = (!case.proxy_configs.is_empty()).then(|| {
        proxy_overrides(
            &pod.metadata.labels.clone().unwrap_or_default(),
            namespace,
            ROOT_NAMESPACE,
            &case.proxy_configs,
        )
    });
    inject(
        &Request {
            pod,
            namespace,
            scope: case.scope,
            proxy: overrides.as_ref(),
        },
        settings,
    )
}

/// Input file for a case; the object-scope variant shares `bare`'s pod with
/// an opt-in label added.
fn input(case: &Case) -> Value {
    if case.name == "bare-object-scope-opted-in" {
        let mut pod = read_json(&golden_dir().join("bare.in.json"));
        pod["metadata"]["labels"] = json!({(names::INJECT): "true"});
        return pod;
    }
    read_json(&golden_dir().join(format!("{}.in.json", case.name)))
}

#[test]
fn injected_pods_match_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for case in cases() {
        let raw = input(&case);
        let pod: Pod = serde_json::from_value(raw.clone()).unwrap();
        let settings = settings(case.native_mesh);
        let outcome = run(&case, &pod, &settings);
        let Outcome::Injected { patch, warnings } = &outcome else {
            panic!("{}: expected an injection, got {outcome:?}", case.name);
        };
        assert!(warnings.is_empty(), "{}: {warnings:?}", case.name);
        assert!(
            patch.0.len() <= MAX_OPS,
            "{}: {} operations: {patch}",
            case.name,
            patch.0.len()
        );
        // Only targeted adds, and the replacement of a declared proxy.
        assert!(
            patch.0.iter().all(|op| match op {
                json_patch::PatchOperation::Add(_) => true,
                json_patch::PatchOperation::Replace(replace) => {
                    let target = replace.path.to_string();
                    target.starts_with("/spec/containers/")
                        && replace.value["name"] == "istio-proxy"
                }
                _ => false,
            }),
            "{}: only targeted adds: {patch}",
            case.name
        );

        // The API server applies the patch to the object it sent.
        let mut out = raw;
        json_patch::patch(&mut out, patch).unwrap();

        let path = golden_dir().join(format!("{}.out.json", case.name));
        if update {
            let text = serde_json::to_string_pretty(&out).unwrap() + "\n";
            std::fs::write(&path, text).unwrap();
        } else if !path.exists() || read_json(&path) != out {
            mismatches.push(format!(
                "{}: differs from {} (refresh with UPDATE_GOLDEN=1 if intended):\n{}",
                case.name,
                path.display(),
                serde_json::to_string_pretty(&out).unwrap()
            ));
        }

        // Reinvocation (or a second pass) leaves the injected pod alone.
        let injected: Pod = serde_json::from_value(out.clone()).unwrap();
        match run(&case, &injected, &settings) {
            Outcome::Skipped { reason, .. } => assert!(
                reason.starts_with("already injected"),
                "{}: {reason}",
                case.name
            ),
            other => panic!("{}: re-injection must skip, got {other:?}", case.name),
        }

        // The status annotation says what was added.
        let status: InjectionStatus = serde_json::from_str(
            out["metadata"]["annotations"][names::STATUS]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(status.revision, "default");
        assert_eq!(status.version, "0.1.0");
        // Labels the operator selects injected pods by.
        let labels = &out["metadata"]["labels"];
        assert_eq!(
            labels[names::INJECTED_REVISION_LABEL],
            "default",
            "{}",
            case.name
        );
        assert_eq!(labels[names::PROXY_VERSION_LABEL], "0.1.0", "{}", case.name);
        assert_eq!(status.volumes, [names::PROXY_CONFIG_VOLUME]);
        let added: usize = status.init_containers.len() + status.containers.len();
        // A declared `istio-proxy` becomes the proxy: counted once, not twice.
        let declared = pod.spec.as_ref().map_or(0, |s| {
            s.containers
                .iter()
                .filter(|c| c.name == "istio-proxy")
                .count()
        });
        let before = pod.spec.as_ref().map_or(0, |s| {
            s.containers.len() + s.init_containers.as_ref().map_or(0, Vec::len)
        }) - declared;
        let after = out["spec"]["containers"].as_array().map_or(0, Vec::len)
            + out["spec"]["initContainers"].as_array().map_or(0, Vec::len);
        assert_eq!(after, before + added, "{}", case.name);
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

/// Every golden input is used by a case, so a stray file cannot rot.
#[test]
fn every_golden_input_has_a_case() {
    let names: Vec<String> = cases().iter().map(|c| c.name.to_owned()).collect();
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        let Some(stem) = file
            .strip_suffix(".in.json")
            .or_else(|| file.strip_suffix(".out.json"))
        else {
            panic!("unexpected file {file} in the golden directory");
        };
        assert!(names.iter().any(|n| n == stem), "no case uses {file}");
    }
}
