//! The CustomResourceDefinitions generated from the API types, and their
//! YAML form as committed in `crds/generated/` (one file a CRD).

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{meshkeeper, networking};

/// Versions Istio serves for its core networking kinds. The first is the
/// storage version; all share one schema, so no conversion webhook is needed.
const ISTIO_NETWORKING_VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];

/// Every CRD meshkeeper installs, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    let crds = vec![
        spec_optional(serve_as(
            networking::VirtualService::crd(),
            &ISTIO_NETWORKING_VERSIONS,
        )),
        spec_optional(serve_as(
            networking::DestinationRule::crd(),
            &ISTIO_NETWORKING_VERSIONS,
        )),
        spec_optional(serve_as(
            networking::Gateway::crd(),
            &ISTIO_NETWORKING_VERSIONS,
        )),
        // Istio's own schema requires `spec` for ServiceEntry only.
        serve_as(networking::ServiceEntry::crd(), &ISTIO_NETWORKING_VERSIONS),
        spec_optional(networking::EnvoyFilter::crd()),
        spec_optional(networking::ProxyConfig::crd()),
        meshkeeper::mesh::Mesh::crd(),
        meshkeeper::mesh_revision::MeshRevision::crd(),
    ];
    crds.into_iter().map(with_kubernetes_formats).collect()
}

/// Every CRD's committed file name and YAML, as `crds/generated/` must hold
/// them.
pub fn rendered() -> Result<BTreeMap<String, String>, serde_saphyr::SerializeError> {
    all()
        .iter()
        .map(|crd| Ok((file_name(crd), to_yaml(crd)?)))
        .collect()
}

/// The file a CRD is committed in, relative to `crds/generated/`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// The committed YAML of a CRD: a header saying where it comes from, then
/// the object.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::SerializeError> {
    let body = serde_saphyr::to_string(crd)?;
    Ok(format!(
        "# Generated from the Rust types in crds/src by `cargo run -p meshkeeper-crds --bin crdgen`.\n\
         # Do not edit: change the types and regenerate.\n{body}"
    ))
}

/// Rewrites the integer formats schemars emits for Rust types (`uint32`,
/// `uint8`, ...) to the ones the API server knows, which otherwise warns on
/// every apply. The range stays enforced by the `minimum`/`maximum` next to it.
fn with_kubernetes_formats(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let Some(schema) = version.schema.as_mut() else {
            continue;
        };
        let Some(props) = schema.open_api_v3_schema.take() else {
            continue;
        };
        let rewritten = serde_json::to_value(&props)
            .map(|mut v| {
                rewrite_formats(&mut v);
                v
            })
            .and_then(serde_json::from_value);
        schema.open_api_v3_schema = Some(rewritten.unwrap_or(props));
    }
    crd
}

fn rewrite_formats(node: &mut serde_json::Value) {
    match node {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(format)) = map.get_mut("format") {
                let known = match format.as_str() {
                    "int8" | "int16" | "uint8" | "uint16" => "int32",
                    "uint32" | "uint" | "uint64" => "int64",
                    other => other,
                };
                *format = known.to_string();
            }
            map.values_mut().for_each(rewrite_formats);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(rewrite_formats),
        _ => {}
    }
}

/// Drops the `required: [spec]` kube-derive puts on every root: Istio's
/// schema lets these kinds omit `spec` (an empty one), so ours must too or
/// the API server refuses objects Istio accepts. The typed parse fills the
/// gap (see [`crate::parse::from_value`]).
fn spec_optional(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    debug_assert!(
        networking::SPEC_OPTIONAL_KINDS.contains(&crd.spec.names.kind.as_str()),
        "{} is not listed in SPEC_OPTIONAL_KINDS",
        crd.spec.names.kind
    );
    for version in &mut crd.spec.versions {
        let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        if let Some(required) = root.required.as_mut() {
            required.retain(|field| field != "spec");
            if required.is_empty() {
                root.required = None;
            }
        }
    }
    crd
}

/// Serves the single version a type derives under several names with the
/// same schema. The first name is the storage version.
fn serve_as(mut crd: CustomResourceDefinition, names: &[&str]) -> CustomResourceDefinition {
    let Some(template) = crd.spec.versions.first().cloned() else {
        return crd;
    };
    crd.spec.versions = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut v = template.clone();
            v.name = (*name).to_string();
            v.served = true;
            v.storage = i == 0;
            v
        })
        .collect();
    crd
}
