//! The CustomResourceDefinitions generated from the API types, and their
//! YAML form as committed in `crds/generated/` (one file a CRD).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{meshkeeper, networking};

/// Versions Istio serves for its core networking kinds. The first is the
/// storage version; all share one schema, so no conversion webhook is needed.
const ISTIO_NETWORKING_VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];

/// Every CRD meshkeeper installs, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        serve_as(networking::Gateway::crd(), &ISTIO_NETWORKING_VERSIONS),
        meshkeeper::mesh::Mesh::crd(),
        meshkeeper::mesh_revision::MeshRevision::crd(),
    ]
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
