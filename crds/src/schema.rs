//! Hand-written OpenAPI schema pieces for fields that derive cannot describe
//! structurally.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Schema of a free-form JSON object the API server must keep as it is
/// (EnvoyFilter `patch.value`, Istio's `status`).
pub fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Schema of a Kubernetes int-or-string value (resource quantities).
pub fn int_or_string(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true
    })
}

/// A free-form JSON object kept exactly as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FreeformObject(pub serde_json::Map<String, serde_json::Value>);

impl JsonSchema for FreeformObject {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FreeformObject".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        preserve_unknown_object(generator)
    }
}
