//! Renders the typed output as Envoy's JSON (proto3 JSON mapping with the
//! proto field names, `Any` expanded with its `@type`), as Envoy's own config
//! dump prints it. Used for golden files, offline printing and the bootstrap
//! that `envoy --mode validate` checks.
//!
//! The messages come from the descriptor set that `envoy-types` ships (see
//! build.rs), so every message and `Any` payload it can hold is known.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

use crate::error::RenderError;

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_types.bin"));

fn pool() -> Result<&'static DescriptorPool, RenderError> {
    // Decoding the set takes tens of milliseconds: once per process.
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| RenderError::Descriptors(e.clone()))
}

/// One Envoy message as JSON.
pub fn to_json<M: prost::Message + prost::Name>(
    message: &M,
) -> Result<serde_json::Value, RenderError> {
    let name = M::full_name();
    let descriptor = pool()?
        .get_message_by_name(&name)
        .ok_or_else(|| RenderError::UnknownMessage(name.clone()))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice()).map_err(
        |source| RenderError::Decode {
            message: name.clone(),
            source,
        },
    )?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(true);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|source| RenderError::Json {
            message: name,
            source,
        })
}

/// Several messages of one type as a JSON array.
pub fn to_json_list<M: prost::Message + prost::Name>(
    messages: &[M],
) -> Result<serde_json::Value, RenderError> {
    messages
        .iter()
        .map(to_json)
        .collect::<Result<Vec<_>, _>>()
        .map(serde_json::Value::Array)
}
