//! The Mesh from the Helm chart's values. The chart cannot create the Mesh
//! itself on a fresh cluster (Helm maps every object of a release before it
//! creates the release's CRDs, and a kind the API server does not serve yet
//! cannot be mapped), so it renders the Mesh into a ConfigMap
//! (`--mesh-values-config-map`, key `mesh.yaml`) and the operator applies it.
//!
//! The values are applied when they change, not kept forever: each applied
//! version is recorded on the ConfigMap (annotation
//! `meshkeeper.io/applied-values-hash`), so deleting the Mesh (the chart's
//! pre-delete hook does, before `helm uninstall` removes the operator) does
//! not bring it back, while every `helm upgrade` that changes `mesh.*` is
//! applied once. The apply uses its own field manager, so a person's
//! `kubectl edit` of a field the values do not set is kept.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use meshkeeper_crds::meshkeeper::mesh::Mesh;
use meshkeeper_crds::parse::{from_value, yaml_documents};
use serde_json::json;

use super::Context;
use super::mesh::MeshError;

/// Key of the Mesh manifest in the ConfigMap.
pub const MESH_KEY: &str = "mesh.yaml";
/// Records the hash of the values last applied.
pub const APPLIED_ANNOTATION: &str = "meshkeeper.io/applied-values-hash";
/// Field manager of the values (not the operator's own).
pub const VALUES_FIELD_MANAGER: &str = "meshkeeper-chart-values";

/// Applies the chart's Mesh if its values changed since last applied.
pub async fn apply(ctx: &Context) -> Result<(), MeshError> {
    let Some(name) = ctx.options.mesh_values.as_deref() else {
        return Ok(());
    };
    let Some(config_map) = ctx.caches.mesh_values(name) else {
        return Ok(());
    };
    let Some(text) = config_map.data.as_ref().and_then(|d| d.get(MESH_KEY)) else {
        tracing::warn!(
            config_map = name,
            key = MESH_KEY,
            "the Mesh values ConfigMap has no Mesh"
        );
        return Ok(());
    };
    let hash = super::apply::sha256_hex(text.as_bytes());
    let applied = config_map
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(APPLIED_ANNOTATION));
    if applied == Some(&hash) {
        return Ok(());
    }
    let mesh = match parse(text) {
        Ok(mesh) => mesh,
        Err(message) => {
            tracing::warn!(config_map = name, %message, "the Mesh values cannot be applied");
            return Ok(());
        }
    };
    let mesh_name = mesh.metadata.name.clone().unwrap_or_default();
    Api::<Mesh>::all(ctx.client.clone())
        .patch(
            &mesh_name,
            &PatchParams::apply(VALUES_FIELD_MANAGER).force(),
            &Patch::Apply(&mesh),
        )
        .await
        .map_err(|source| MeshError::Kube {
            action: format!("applying Mesh {mesh_name} from ConfigMap {name}"),
            source,
        })?;
    super::metrics::count_write("Mesh", "values");
    Api::<ConfigMap>::namespaced(ctx.client.clone(), &ctx.options.namespace)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {APPLIED_ANNOTATION: hash}}})),
        )
        .await
        .map_err(|source| MeshError::Kube {
            action: format!("recording the applied values on ConfigMap {name}"),
            source,
        })?;
    super::metrics::count_write("ConfigMap", "values");
    tracing::info!(mesh = %mesh_name, config_map = name, "applied the Mesh values");
    Ok(())
}

/// One Mesh document, checked against the Mesh type.
fn parse(text: &str) -> Result<Mesh, String> {
    let documents = yaml_documents(text).map_err(|e| e.to_string())?;
    let [document] = documents.as_slice() else {
        return Err(format!(
            "{MESH_KEY} must hold exactly one document, not {}",
            documents.len()
        ));
    };
    from_value::<Mesh>(document).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_valid_mesh_is_read_and_anything_else_is_named() {
        let mesh = parse("apiVersion: meshkeeper.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec: {version: 0.1.0}\n").unwrap();
        assert_eq!(mesh.spec.version, "0.1.0");
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(err.contains("exactly one document"), "{err}");
        let err = parse("apiVersion: meshkeeper.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec: {version: [1]}\n").unwrap_err();
        assert!(err.contains("spec.version"), "{err}");
    }
}
