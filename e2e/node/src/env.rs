//! A container's environment and its `$(VAR)` expansion, computed the way
//! the kubelet does: service variables first, then `envFrom`, then `env` in
//! order (later wins), downward API values from the pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};

/// What the environment is computed from besides the pod.
pub struct EnvSources<'a> {
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    /// `KUBERNETES_SERVICE_HOST` and friends.
    pub service_env: &'a [(String, String)],
    pub config_map: &'a dyn Fn(&str) -> Option<BTreeMap<String, String>>,
    pub secret: &'a dyn Fn(&str) -> Option<BTreeMap<String, String>>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EnvError {
    #[error("env {var}: {what} not found (and not optional)")]
    Missing { var: String, what: String },
    #[error("env {var}: fieldRef {path:?} is not supported; supported: {supported}")]
    UnsupportedField {
        var: String,
        path: String,
        supported: &'static str,
    },
    #[error(
        "env {var}: resourceFieldRef {resource:?} is not supported (limits.cpu, limits.memory, requests.cpu, requests.memory)"
    )]
    UnsupportedResource { var: String, resource: String },
}

const SUPPORTED_FIELDS: &str = "metadata.name, metadata.namespace, metadata.uid, \
    metadata.labels['k'], metadata.annotations['k'], spec.nodeName, spec.serviceAccountName, \
    status.podIP, status.podIPs, status.hostIP, status.hostIPs";

/// The ordered environment of `container`.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    src: &EnvSources<'_>,
) -> Result<Vec<(String, String)>, EnvError> {
    let mut env: Vec<(String, String)> = src.service_env.to_vec();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (data, name, optional, what) = if let Some(r) = &from.config_map_ref {
            ((src.config_map)(&r.name), &r.name, r.optional, "ConfigMap")
        } else if let Some(r) = &from.secret_ref {
            ((src.secret)(&r.name), &r.name, r.optional, "Secret")
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (k, v) in data {
                    set(&mut env, format!("{prefix}{k}"), v);
                }
            }
            None if optional == Some(true) => {}
            None => {
                return Err(EnvError::Missing {
                    var: format!("envFrom {prefix}*"),
                    what: format!("{what} {name:?}"),
                });
            }
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = value_of(pod, container, var, src)? {
            let expanded = expand(&value, &env);
            set(&mut env, var.name.clone(), expanded);
        }
    }
    Ok(env)
}

fn set(env: &mut Vec<(String, String)>, name: String, value: String) {
    match env.iter_mut().find(|(k, _)| *k == name) {
        Some(slot) => slot.1 = value,
        None => env.push((name, value)),
    }
}

fn value_of(
    pod: &Pod,
    container: &Container,
    var: &EnvVar,
    src: &EnvSources<'_>,
) -> Result<Option<String>, EnvError> {
    let Some(from) = &var.value_from else {
        return Ok(Some(var.value.clone().unwrap_or_default()));
    };
    if let Some(f) = &from.field_ref {
        return field(pod, &f.field_path, src).map(Some).ok_or_else(|| {
            EnvError::UnsupportedField {
                var: var.name.clone(),
                path: f.field_path.clone(),
                supported: SUPPORTED_FIELDS,
            }
        });
    }
    if let Some(r) = &from.resource_field_ref {
        return resource(container, &r.resource).map(Some).ok_or_else(|| {
            EnvError::UnsupportedResource {
                var: var.name.clone(),
                resource: r.resource.clone(),
            }
        });
    }
    let (data, name, key, optional, what) = if let Some(r) = &from.config_map_key_ref {
        (
            (src.config_map)(&r.name),
            &r.name,
            &r.key,
            r.optional,
            "ConfigMap",
        )
    } else if let Some(r) = &from.secret_key_ref {
        ((src.secret)(&r.name), &r.name, &r.key, r.optional, "Secret")
    } else {
        return Ok(None);
    };
    match data.and_then(|d| d.get(key.as_str()).cloned()) {
        Some(v) => Ok(Some(v)),
        None if optional == Some(true) => Ok(None),
        None => Err(EnvError::Missing {
            var: var.name.clone(),
            what: format!("key {key:?} of {what} {name:?}"),
        }),
    }
}

/// The downward API value of `path`.
pub fn field(pod: &Pod, path: &str, src: &EnvSources<'_>) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let quoted_key = |prefix: &str| {
        path.strip_prefix(prefix)?
            .strip_suffix("']")
            .map(str::to_owned)
    };
    if let Some(k) = quoted_key("metadata.labels['") {
        return Some(meta.labels.as_ref()?.get(&k).cloned().unwrap_or_default());
    }
    if let Some(k) = quoted_key("metadata.annotations['") {
        return Some(
            meta.annotations
                .as_ref()?
                .get(&k)
                .cloned()
                .unwrap_or_default(),
        );
    }
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec?.node_name.clone().unwrap_or_default(),
        "spec.serviceAccountName" => spec?
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.podIPs" => src.pod_ip.to_owned(),
        "status.hostIP" | "status.hostIPs" => src.host_ip.to_owned(),
        _ => return None,
    })
}

/// `limits.cpu` etc. in the kubelet's default units (whole cores rounded
/// up, bytes); an unset limit is reported as the request or "0".
fn resource(container: &Container, resource: &str) -> Option<String> {
    let (kind, name) = resource.split_once('.')?;
    let res = container.resources.as_ref();
    let map = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => return None,
    };
    let quantity = map.and_then(|m| m.get(name)).map(|q| q.0.as_str());
    match name {
        "cpu" => Some(quantity.map_or(0.0, cores).ceil().to_string()),
        "memory" => Some(quantity.map_or(0, bytes).to_string()),
        _ => None,
    }
}

fn cores(q: &str) -> f64 {
    match q.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().unwrap_or(0.0) / 1000.0,
        None => q.parse().unwrap_or(0.0),
    }
}

fn bytes(q: &str) -> u64 {
    const UNITS: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, factor) in UNITS {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().unwrap_or(0).saturating_mul(factor);
        }
    }
    q.parse().unwrap_or(0)
}

/// Expands `$(NAME)` from `env`; `$$(NAME)` stays literal as `$(NAME)`, and
/// an unknown name is left as written (the kubelet's rules).
pub fn expand(input: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"version": "v2"}},
            "spec": {"nodeName": "n", "containers": [{"name": "c"}]}
        }))
        .unwrap()
    }

    fn sources<'a>(svc: &'a [(String, String)]) -> EnvSources<'a> {
        EnvSources {
            pod_ip: "10.244.0.5",
            host_ip: "10.244.0.1",
            service_env: svc,
            config_map: &|name| {
                (name == "cm").then(|| BTreeMap::from([("A".to_owned(), "a".to_owned())]))
            },
            secret: &|_| None,
        }
    }

    #[test]
    fn downward_api_and_expansion_follow_declaration_order() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "V", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['version']"}}},
                {"name": "ID", "value": "$(POD_NAME).$(NOPE).$$(POD_NAME)"},
                {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "A"}}}
            ]
        }))
        .unwrap();
        let svc = [("KUBERNETES_SERVICE_HOST".to_owned(), "10.0.0.1".to_owned())];
        let env = container_env(&pod(), &c, &sources(&svc)).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("10.0.0.1"));
        assert_eq!(get("POD_NAME"), Some("p"));
        assert_eq!(get("IP"), Some("10.244.0.5"));
        assert_eq!(get("V"), Some("v2"));
        assert_eq!(get("ID"), Some("p.$(NOPE).$(POD_NAME)"));
        assert_eq!(get("CM"), Some("a"));
    }

    #[test]
    fn a_missing_required_key_names_the_variable_and_the_source() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
        }))
        .unwrap();
        let err = container_env(&pod(), &c, &sources(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "env X: key \"k\" of Secret \"s\" not found (and not optional)"
        );
    }

    #[test]
    fn resources_are_reported_in_kubelet_units() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}}
        }))
        .unwrap();
        assert_eq!(resource(&c, "limits.cpu").as_deref(), Some("2"));
        assert_eq!(resource(&c, "limits.memory").as_deref(), Some("1073741824"));
    }
}
