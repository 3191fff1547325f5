//! One object the operator wants in the cluster, in the shape a generic
//! server-side apply loop needs: which API, where, and the full JSON
//! (with `apiVersion` and `kind`, as apply requires).

use kube::Resource;
use kube::api::ApiResource;
use serde::Serialize;

use super::error::InstallError;

#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub api: ApiResource,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    pub name: String,
    /// The whole object as it is applied.
    pub object: serde_json::Value,
}

impl Desired {
    /// Erases a typed object. Its name and namespace are read from its
    /// metadata; a missing name is a bug in the builder, reported as an
    /// encoding error rather than a panic.
    pub(crate) fn from_typed<K>(object: &K) -> Result<Self, InstallError>
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        let api = ApiResource::erase::<K>(&());
        let encode_error = |message: String| InstallError::Encode {
            kind: api.kind.clone(),
            name: object.meta().name.clone().unwrap_or_default(),
            message,
        };
        let name = object
            .meta()
            .name
            .clone()
            .ok_or_else(|| encode_error("the object has no name".to_owned()))?;
        let mut json = serde_json::to_value(object).map_err(|e| encode_error(e.to_string()))?;
        // k8s-openapi writes both; set them anyway so apply never depends
        // on a serializer detail.
        if let Some(map) = json.as_object_mut() {
            map.insert("apiVersion".into(), api.api_version.clone().into());
            map.insert("kind".into(), api.kind.clone().into());
        }
        Ok(Self {
            namespace: object.meta().namespace.clone(),
            name,
            object: json,
            api,
        })
    }

    /// `Kind namespace/name` or `Kind name`, for logs and messages.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{} {namespace}/{}", self.api.kind, self.name),
            None => format!("{} {}", self.api.kind, self.name),
        }
    }
}
