//! `MeshRevision`: one running revision of a Mesh. The operator creates and
//! owns these; users read them (`kubectl get meshrevisions`) to see which
//! revisions exist and which namespaces still use each.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::mesh::MeshConfig;

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "meshkeeper.io",
    version = "v1alpha1",
    kind = "MeshRevision",
    status = "MeshRevisionStatus",
    category = "meshkeeper",
    printcolumn = r#"{"name":"Mesh","type":"string","jsonPath":".spec.mesh"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"In use","type":"string","jsonPath":".status.conditions[?(@.type==\"InUse\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    schema = "derived"
)]
#[serde(rename_all = "camelCase")]
pub struct MeshRevisionSpec {
    /// Name of the Mesh this revision belongs to.
    pub mesh: String,
    /// meshkeeper version this revision runs.
    pub version: String,
    /// Revision tags pointing at this revision: its webhook also injects
    /// namespaces labelled `istio.io/rev=<tag>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Settings copied from the Mesh when the revision was last reconciled.
    #[serde(flatten)]
    pub config: MeshConfig,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeshRevisionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Reconciled`, `Ready` and `InUse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// Namespaces whose injection selects this revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_use_namespaces: Option<Vec<String>>,
    /// When the revision was last seen in use; the grace period for deleting
    /// an unused revision counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_time: Option<Time>,
}
