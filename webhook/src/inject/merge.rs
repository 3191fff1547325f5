//! A user-declared `istio-proxy` container merged over the injected proxy,
//! with the semantics Istio gets from a strategic merge patch of the user's
//! container over its template: the user's fields win; lists Kubernetes
//! merges by key (ports, env, volume mounts and devices) are merged entry
//! by entry; other lists and scalars are replaced; `image: auto` means "the
//! injected image". Two refinements keep the result a valid container where
//! a plain strategic merge would not: an env entry is replaced whole (a
//! `value` from the user and a `valueFrom` from the template cannot
//! coexist), and a probe or lifecycle handler the user gives replaces the
//! template's handler instead of sitting beside it.

use k8s_openapi::api::core::v1::Container;
use serde_json::{Map, Value};

/// Istio's name for the proxy container; a pod that declares one asks for
/// its settings to be merged into the injected proxy.
pub(crate) const USER_PROXY_CONTAINER: &str = "istio-proxy";
/// The image value that stands for "the proxy image the injector chooses".
pub(crate) const AUTO_IMAGE: &str = "auto";

/// The container fields whose lists merge by key, and the key fields.
const KEYED_LISTS: [(&str, &[&str]); 4] = [
    ("ports", &["containerPort", "protocol"]),
    ("env", &["name"]),
    ("volumeMounts", &["mountPath"]),
    ("volumeDevices", &["devicePath"]),
];
/// Entries of these lists are replaced whole rather than merged.
const WHOLE_ENTRIES: [&str; 1] = ["env"];
/// Fields holding one handler of several kinds (exactly one may be set).
const HANDLER_FIELDS: [&str; 5] = [
    "readinessProbe",
    "livenessProbe",
    "startupProbe",
    "postStart",
    "preStop",
];
const HANDLER_KINDS: [&str; 5] = ["exec", "httpGet", "tcpSocket", "grpc", "sleep"];

/// `user` merged over `injected`; the result keeps the user's name.
pub(crate) fn merge(
    injected: &Container,
    user: &Container,
) -> Result<Container, serde_json::Error> {
    let mut base = serde_json::to_value(injected)?;
    let mut overlay = serde_json::to_value(user)?;
    if let Some(fields) = overlay.as_object_mut()
        && fields.get("image").and_then(Value::as_str) == Some(AUTO_IMAGE)
    {
        fields.remove("image");
    }
    merge_object_fields(&mut base, overlay, None);
    serde_json::from_value(base)
}

fn merge_object_fields(base: &mut Value, overlay: Value, field: Option<&str>) {
    let (Some(base_fields), Value::Object(overlay_fields)) = (base.as_object_mut(), overlay) else {
        return;
    };
    if field.is_some_and(|f| HANDLER_FIELDS.contains(&f)) && has_handler(&overlay_fields) {
        for kind in HANDLER_KINDS {
            base_fields.remove(kind);
        }
    }
    for (key, value) in overlay_fields {
        if value.is_null() {
            continue;
        }
        match base_fields.get_mut(&key) {
            Some(existing) => merge_value(existing, value, &key),
            None => {
                base_fields.insert(key, value);
            }
        }
    }
}

fn has_handler(fields: &Map<String, Value>) -> bool {
    HANDLER_KINDS
        .iter()
        .any(|kind| fields.get(*kind).is_some_and(|v| !v.is_null()))
}

fn merge_value(base: &mut Value, overlay: Value, field: &str) {
    match (&*base, &overlay) {
        (Value::Object(_), Value::Object(_)) => merge_object_fields(base, overlay, Some(field)),
        (Value::Array(_), Value::Array(_)) => match keys_of(field) {
            Some(keys) => merge_keyed_list(base, overlay, keys, WHOLE_ENTRIES.contains(&field)),
            None => *base = overlay,
        },
        _ => *base = overlay,
    }
}

fn keys_of(field: &str) -> Option<&'static [&'static str]> {
    KEYED_LISTS
        .iter()
        .find(|(name, _)| *name == field)
        .map(|(_, keys)| *keys)
}

/// The identity of a list entry. A missing `protocol` is TCP, as the API
/// server defaults it, so `{containerPort: 8080}` matches the same port
/// spelled with its protocol.
fn identity(entry: &Value, keys: &[&str]) -> Vec<Value> {
    keys.iter()
        .map(|key| match (entry.get(*key), *key) {
            (None | Some(Value::Null), "protocol") => Value::String("TCP".to_owned()),
            (value, _) => value.cloned().unwrap_or(Value::Null),
        })
        .collect()
}

/// Template entries keep their order; the user's entries merge into the one
/// with the same key or, new, are appended.
fn merge_keyed_list(base: &mut Value, overlay: Value, keys: &[&str], whole: bool) {
    let (Some(entries), Value::Array(additions)) = (base.as_array_mut(), overlay) else {
        return;
    };
    for addition in additions {
        let id = identity(&addition, keys);
        match entries.iter_mut().find(|entry| identity(entry, keys) == id) {
            Some(entry) if whole => *entry = addition,
            Some(entry) => merge_object_fields(entry, addition, None),
            None => entries.push(addition),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(value: Value) -> Container {
        serde_json::from_value(value).unwrap()
    }

    fn injected() -> Container {
        container(json!({
            "name": "meshkeeper-proxy",
            "image": "envoy:1",
            "args": ["-c", "bootstrap.yaml"],
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "A", "value": "template"}
            ],
            "ports": [
                {"name": "http-envoy-prom", "containerPort": 15090, "protocol": "TCP"},
                {"name": "health", "containerPort": 15021, "protocol": "TCP"}
            ],
            "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}, "periodSeconds": 2},
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "2"}},
            "securityContext": {"runAsUser": 1337, "readOnlyRootFilesystem": true,
                                "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/meshkeeper/proxy", "readOnly": true}]
        }))
    }

    #[test]
    fn auto_image_keeps_the_injected_one_and_the_user_name_stays() {
        let merged = merge(
            &injected(),
            &container(json!({"name": "istio-proxy", "image": "auto"})),
        )
        .unwrap();
        assert_eq!(merged.name, "istio-proxy");
        assert_eq!(merged.image.as_deref(), Some("envoy:1"));
        let merged = merge(
            &injected(),
            &container(json!({"name": "istio-proxy", "image": "mine:2"})),
        )
        .unwrap();
        assert_eq!(merged.image.as_deref(), Some("mine:2"));
    }

    #[test]
    fn user_fields_win_and_keyed_lists_merge() {
        let user = container(json!({
            "name": "istio-proxy",
            "image": "auto",
            "env": [{"name": "POD_NAME", "value": "fixed"}, {"name": "B", "value": "user"}],
            "ports": [{"containerPort": 15021, "name": "status"}, {"containerPort": 8080, "name": "http2"}],
            "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}},
            "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}},
            "volumeMounts": [{"name": "certs", "mountPath": "/etc/certs"}]
        }));
        let merged = serde_json::to_value(merge(&injected(), &user).unwrap()).unwrap();
        // env: entries replaced whole (no value beside valueFrom), new ones appended.
        assert_eq!(
            merged["env"],
            json!([{"name": "POD_NAME", "value": "fixed"}, {"name": "A", "value": "template"},
                   {"name": "B", "value": "user"}])
        );
        // ports: merged by port (protocol defaulted), order kept, new appended.
        assert_eq!(
            merged["ports"],
            json!([{"name": "http-envoy-prom", "containerPort": 15090, "protocol": "TCP"},
                   {"name": "status", "containerPort": 15021, "protocol": "TCP"},
                   {"name": "http2", "containerPort": 8080}])
        );
        // Maps merge key by key.
        assert_eq!(
            merged["resources"],
            json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "1Gi"}})
        );
        assert_eq!(merged["securityContext"]["runAsUser"], 1337);
        assert_eq!(
            merged["securityContext"]["capabilities"],
            json!({"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]})
        );
        assert_eq!(merged["volumeMounts"].as_array().unwrap().len(), 2);
        // Untouched fields stay.
        assert_eq!(merged["args"], json!(["-c", "bootstrap.yaml"]));
    }

    #[test]
    fn plain_lists_are_replaced_and_handlers_do_not_stack() {
        let user = container(json!({
            "name": "istio-proxy",
            "args": ["proxy", "router"],
            "readinessProbe": {"exec": {"command": ["true"]}},
        }));
        let merged = serde_json::to_value(merge(&injected(), &user).unwrap()).unwrap();
        assert_eq!(merged["args"], json!(["proxy", "router"]));
        assert_eq!(
            merged["readinessProbe"],
            json!({"exec": {"command": ["true"]}, "periodSeconds": 2})
        );
        // A probe setting without a handler keeps the injected handler.
        let user =
            container(json!({"name": "istio-proxy", "readinessProbe": {"periodSeconds": 9}}));
        let merged = serde_json::to_value(merge(&injected(), &user).unwrap()).unwrap();
        assert_eq!(
            merged["readinessProbe"],
            json!({"httpGet": {"path": "/healthz/ready", "port": 15021}, "periodSeconds": 9})
        );
    }
}
