//! The JSON Patch that adds the sidecar: one targeted `add` per addition, so
//! the patch stays small and never rewrites what the pod already has.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, Volume, VolumeMount};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an injection added, recorded on the pod as the compact JSON value of
/// the `meshkeeper.io/status` annotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InjectionStatus {
    /// The revision whose webhook injected the pod.
    pub revision: String,
    /// That revision's meshkeeper version, exactly as its MeshRevision
    /// spells it. Absent (empty) in records written before versions were
    /// recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    pub init_containers: Vec<String>,
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
}

/// Everything injection adds to one pod.
#[derive(Debug, Default)]
pub(crate) struct Additions {
    /// Only added where the pod lacks the key.
    pub labels: Vec<(&'static str, String)>,
    /// Only added where the pod lacks the key.
    pub annotations: Vec<(&'static str, String)>,
    /// Go first, in this order, before the pod's own init containers.
    pub init_containers: Vec<Container>,
    /// Go after the pod's own containers.
    pub containers: Vec<Container>,
    pub volumes: Vec<Volume>,
    /// Changes to what the pod already has, applied before the additions.
    pub edits: Vec<Edit>,
}

/// A pod list of containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum List {
    Containers,
    InitContainers,
}

impl List {
    fn field(self) -> &'static str {
        match self {
            List::Containers => "containers",
            List::InitContainers => "initContainers",
        }
    }
}

/// A change to something the pod already has.
#[derive(Debug)]
pub(crate) enum Edit {
    /// The container at this position becomes `container`.
    Replace {
        list: List,
        index: usize,
        container: Box<Container>,
    },
    /// The container at this position goes (it is added again elsewhere).
    Remove { list: List, index: usize },
    /// Adds a variable and a mount to the regular container at `index`;
    /// `None` leaves that part alone.
    AddToContainer {
        index: usize,
        env: Option<Box<EnvVar>>,
        mount: Option<Box<VolumeMount>>,
    },
    /// Adds a pod-level sysctl (the pod does not set it already).
    Sysctl { name: &'static str, value: String },
}

impl Edit {
    /// The name of the container a [`Edit::Replace`] puts in place.
    pub(crate) fn replaced_name(&self) -> Option<String> {
        match self {
            Edit::Replace { container, .. } => Some(container.name.clone()),
            _ => None,
        }
    }
}

/// Builds the patch that applies `additions` to `pod`.
pub(crate) fn build(pod: &Pod, additions: Additions) -> Result<Patch, serde_json::Error> {
    let mut ops = Vec::new();
    for edit in &additions.edits {
        edit_ops(&mut ops, pod, edit)?;
    }
    add_map_entries(
        &mut ops,
        "labels",
        pod.metadata.labels.as_ref(),
        additions.labels,
    );
    add_map_entries(
        &mut ops,
        "annotations",
        pod.metadata.annotations.as_ref(),
        additions.annotations,
    );
    let spec = pod.spec.as_ref();
    let init_containers = to_values(&additions.init_containers)?;
    let containers = to_values(&additions.containers)?;
    let volumes = to_values(&additions.volumes)?;
    // A removed init container leaves an empty list behind, never none.
    let has_init = spec.is_some_and(|s| s.init_containers.is_some());
    let has_volumes = spec.is_some_and(|s| s.volumes.is_some());
    prepend(&mut ops, "initContainers", has_init, init_containers);
    append(&mut ops, "containers", true, containers);
    append(&mut ops, "volumes", has_volumes, volumes);
    Ok(Patch(ops))
}

fn edit_ops(
    ops: &mut Vec<PatchOperation>,
    pod: &Pod,
    edit: &Edit,
) -> Result<(), serde_json::Error> {
    let spec = pod.spec.as_ref();
    match edit {
        Edit::Replace {
            list,
            index,
            container,
        } => {
            let mut path = PointerBuf::from_tokens(["spec", list.field()]);
            path.push_back(*index);
            let value = serde_json::to_value(container)?;
            ops.push(PatchOperation::Replace(ReplaceOperation { path, value }));
        }
        Edit::Remove { list, index } => {
            let mut path = PointerBuf::from_tokens(["spec", list.field()]);
            path.push_back(*index);
            ops.push(PatchOperation::Remove(RemoveOperation { path }));
        }
        Edit::AddToContainer { index, env, mount } => {
            let container = spec.and_then(|s| s.containers.get(*index));
            let has_env = container.is_some_and(|c| c.env.is_some());
            let has_mounts = container.is_some_and(|c| c.volume_mounts.is_some());
            let at = |field: &str| {
                let mut path = PointerBuf::from_tokens(["spec", "containers"]);
                path.push_back(*index);
                path.push_back(field);
                path
            };
            if let Some(env) = env {
                add_to_list(ops, at("env"), has_env, serde_json::to_value(env)?);
            }
            if let Some(mount) = mount {
                add_to_list(
                    ops,
                    at("volumeMounts"),
                    has_mounts,
                    serde_json::to_value(mount)?,
                );
            }
        }
        Edit::Sysctl { name, value } => {
            let context = spec.and_then(|s| s.security_context.as_ref());
            let sysctl = serde_json::json!({"name": name, "value": value});
            match context {
                None => add(
                    ops,
                    PointerBuf::from_tokens(["spec", "securityContext"]),
                    serde_json::json!({"sysctls": [sysctl]}),
                ),
                Some(context) => add_to_list(
                    ops,
                    PointerBuf::from_tokens(["spec", "securityContext", "sysctls"]),
                    context.sysctls.is_some(),
                    sysctl,
                ),
            }
        }
    }
    Ok(())
}

/// Appends `item` to the list at `path`, creating the list when missing.
fn add_to_list(ops: &mut Vec<PatchOperation>, mut path: PointerBuf, exists: bool, item: Value) {
    if exists {
        path.push_back("-");
        add(ops, path, item);
    } else {
        add(ops, path, Value::Array(vec![item]));
    }
}

fn to_values<T: Serialize>(items: &[T]) -> Result<Vec<Value>, serde_json::Error> {
    items.iter().map(serde_json::to_value).collect()
}

fn add(ops: &mut Vec<PatchOperation>, path: PointerBuf, value: Value) {
    ops.push(PatchOperation::Add(AddOperation { path, value }));
}

/// Adds the missing keys of a metadata map; the map itself when the pod
/// has none (a pointer into a missing object would not apply).
fn add_map_entries(
    ops: &mut Vec<PatchOperation>,
    field: &str,
    existing: Option<&BTreeMap<String, String>>,
    entries: Vec<(&'static str, String)>,
) {
    match existing {
        None if entries.is_empty() => {}
        None => {
            let map: serde_json::Map<String, Value> = entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::String(v)))
                .collect();
            add(
                ops,
                PointerBuf::from_tokens(["metadata", field]),
                Value::Object(map),
            );
        }
        Some(existing) => {
            for (key, value) in entries {
                if !existing.contains_key(key) {
                    // from_tokens escapes the `/` in `security.istio.io/tlsMode`.
                    add(
                        ops,
                        PointerBuf::from_tokens(["metadata", field, key]),
                        Value::String(value),
                    );
                }
            }
        }
    }
}

/// Inserts `items` at the front of `spec.<field>`, keeping their order.
fn prepend(ops: &mut Vec<PatchOperation>, field: &str, exists: bool, items: Vec<Value>) {
    if items.is_empty() {
        return;
    }
    if !exists {
        add(
            ops,
            PointerBuf::from_tokens(["spec", field]),
            Value::Array(items),
        );
        return;
    }
    for (index, item) in items.into_iter().enumerate() {
        let mut path = PointerBuf::from_tokens(["spec", field]);
        path.push_back(index);
        add(ops, path, item);
    }
}

/// Appends `items` to `spec.<field>`.
fn append(ops: &mut Vec<PatchOperation>, field: &str, exists: bool, items: Vec<Value>) {
    if items.is_empty() {
        return;
    }
    if !exists {
        add(
            ops,
            PointerBuf::from_tokens(["spec", field]),
            Value::Array(items),
        );
        return;
    }
    for item in items {
        add(ops, PointerBuf::from_tokens(["spec", field, "-"]), item);
    }
}
