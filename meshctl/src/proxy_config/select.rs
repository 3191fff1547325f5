//! Which proxy to compile for: `--pod NS/NAME` (a sidecar) or `--gateway
//! NS/NAME` (a gateway proxy), found among the pods the manifests (or the
//! cluster) have, read or synthesized.

use anyhow::bail;
use meshkeeper_compiler::offline::SYNTHESIZED_FROM_ANNOTATION;
use meshkeeper_compiler::snapshot::Labels;
use meshkeeper_compiler::{Proxy, ProxyKind};
use serde_json::Value;

use super::state::State;

/// The proxy asked for on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: ProxyKind,
    pub namespace: String,
    pub name: String,
}

impl Target {
    /// `NS/NAME`, or `NAME` in `default_namespace`.
    pub fn parse(kind: ProxyKind, text: &str, default_namespace: &str) -> anyhow::Result<Self> {
        let (namespace, name) = text.split_once('/').unwrap_or((default_namespace, text));
        if namespace.is_empty() || name.is_empty() || name.contains('/') {
            bail!("`{text}` is not NAMESPACE/NAME (or NAME with -n NAMESPACE)");
        }
        Ok(Target {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    fn flag(&self) -> &'static str {
        match self.kind {
            ProxyKind::Sidecar => "--pod",
            ProxyKind::Gateway => "--gateway",
        }
    }
}

/// The proxy `target` names in `state`: a pod by its name, by the
/// workload that made it (`reviews-v1` for `reviews-v1-<hash>-<suffix>`),
/// or by a prefix only one pod has. For `--gateway`, when no pod matches,
/// the Gateway object of that name: the first pod its selector picks, or
/// a stand-in proxy with the selector's labels (gateway deployments are
/// often installed apart from the manifests).
pub fn proxy(state: &State, target: &Target) -> anyhow::Result<Proxy> {
    let in_namespace: Vec<&Value> = state
        .pods
        .iter()
        .filter(|p| p["metadata"]["namespace"] == target.namespace.as_str())
        .collect();
    if let Some(pod) = find_pod(&in_namespace, target)? {
        return Ok(proxy_of(pod, target.kind));
    }
    if target.kind == ProxyKind::Gateway
        && let Some(gateway) = state.gateways.iter().find(|g| {
            g["metadata"]["namespace"] == target.namespace.as_str()
                && g["metadata"]["name"] == target.name.as_str()
        })
    {
        return Ok(gateway_proxy(state, gateway, target));
    }
    bail!("{}", not_found(&in_namespace, target))
}

fn find_pod<'a>(pods: &[&'a Value], target: &Target) -> anyhow::Result<Option<&'a Value>> {
    let name = target.name.as_str();
    if let Some(pod) = pods.iter().find(|p| pod_name(p) == name) {
        return Ok(Some(pod));
    }
    let workload = |p: &&&Value| {
        made_from(p).is_some_and(|from| from.ends_with(&format!("{}/{name}", target.namespace)))
    };
    if let Some(pod) = pods.iter().filter(workload).min_by_key(|p| pod_name(p)) {
        return Ok(Some(pod));
    }
    let prefixed: Vec<&&Value> = pods
        .iter()
        .filter(|p| pod_name(p).starts_with(name))
        .collect();
    match prefixed.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => bail!(
            "{} {}/{name} matches {} pods: {}; name one",
            target.flag(),
            target.namespace,
            many.len(),
            many.iter()
                .map(|p| pod_name(p))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn pod_name(pod: &Value) -> &str {
    pod["metadata"]["name"].as_str().unwrap_or_default()
}

fn made_from(pod: &Value) -> Option<&str> {
    pod["metadata"]["annotations"][SYNTHESIZED_FROM_ANNOTATION].as_str()
}

fn labels_of(value: &Value) -> Labels {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

fn proxy_of(pod: &Value, kind: ProxyKind) -> Proxy {
    let sidecar = Proxy::sidecar(
        pod["metadata"]["namespace"].as_str().unwrap_or("default"),
        pod_name(pod),
        pod["status"]["podIP"].as_str().unwrap_or_default(),
        labels_of(&pod["metadata"]["labels"]),
    );
    Proxy { kind, ..sidecar }
}

fn gateway_proxy(state: &State, gateway: &Value, target: &Target) -> Proxy {
    let selector = labels_of(&gateway["spec"]["selector"]);
    let selected = state.pods.iter().find(|p| {
        let labels = labels_of(&p["metadata"]["labels"]);
        selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    });
    match selected {
        Some(pod) if !selector.is_empty() => proxy_of(pod, ProxyKind::Gateway),
        _ => {
            eprintln!(
                "meshctl: no pod among the manifests runs Gateway {}/{} (selector {}): compiling for a stand-in gateway proxy with those labels",
                target.namespace, target.name, gateway["spec"]["selector"]
            );
            let stand_in = Proxy::sidecar(
                target.namespace.clone(),
                format!("{}-gateway", target.name),
                STAND_IN_ADDRESS,
                selector,
            );
            Proxy {
                kind: ProxyKind::Gateway,
                ..stand_in
            }
        }
    }
}

/// The stand-in gateway's address: the last of the pod range, which no
/// synthesized pod gets.
const STAND_IN_ADDRESS: &str = "198.18.255.255";

fn not_found(pods: &[&Value], target: &Target) -> String {
    let mut names: Vec<&str> = pods.iter().map(|p| pod_name(p)).collect();
    names.sort_unstable();
    let known = if names.is_empty() {
        format!(
            "there are no pods in namespace {} (is -n or the namespace right? pods are made for Deployments, ReplicaSets, StatefulSets and DaemonSets)",
            target.namespace
        )
    } else {
        format!("pods in {}: {}", target.namespace, names.join(", "))
    };
    let gateway = if target.kind == ProxyKind::Gateway {
        " or Gateway"
    } else {
        ""
    };
    format!(
        "{} {}/{}: no pod{gateway} of that name; {known}",
        target.flag(),
        target.namespace,
        target.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, from: Option<&str>) -> Value {
        let mut pod = json!({"metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"}},
                             "status": {"podIP": "198.18.0.7"}});
        if let Some(from) = from {
            pod["metadata"]["annotations"] = json!({ SYNTHESIZED_FROM_ANNOTATION: from });
        }
        pod
    }

    fn state(pods: Vec<Value>, gateways: Vec<Value>) -> State {
        State {
            snapshot: Default::default(),
            pods,
            gateways,
        }
    }

    fn sidecar(name: &str) -> Target {
        Target::parse(ProxyKind::Sidecar, name, "shop").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn pods_are_found_by_name_workload_or_unique_prefix() {
        let s = state(
            vec![
                pod("web-v1-abc-x", Some("Deployment shop/web-v1")),
                pod("web-v1-abc-y", Some("Deployment shop/web-v1")),
                pod("db-0", None),
            ],
            vec![],
        );
        let found = |t: &str| proxy(&s, &sidecar(t)).map(|p| p.name);
        assert_eq!(
            found("shop/web-v1-abc-y").ok().as_deref(),
            Some("web-v1-abc-y")
        );
        assert_eq!(found("web-v1").ok().as_deref(), Some("web-v1-abc-x"));
        assert_eq!(found("db").ok().as_deref(), Some("db-0"));
        let ambiguous = found("web-v1-abc").err().map(|e| e.to_string());
        assert!(
            ambiguous
                .as_deref()
                .is_some_and(|e| e.contains("matches 2 pods")),
            "{ambiguous:?}"
        );
        let missing = found("nope")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            missing.contains("pods in shop: db-0, web-v1-abc-x"),
            "{missing}"
        );
        let p = proxy(&s, &sidecar("db-0")).ok();
        assert_eq!(
            p.map(|p| (p.kind, p.ip)),
            Some((ProxyKind::Sidecar, "198.18.0.7".into()))
        );
    }

    #[test]
    fn a_gateway_is_a_pod_or_a_gateway_objects_selection_or_a_stand_in() {
        let gateway = json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                             "metadata": {"name": "gw", "namespace": "shop"},
                             "spec": {"selector": {"istio": "ingressgateway"}}});
        let s = state(vec![pod("db-0", None)], vec![gateway]);
        let target =
            Target::parse(ProxyKind::Gateway, "shop/gw", "x").unwrap_or_else(|e| panic!("{e}"));
        let p = proxy(&s, &target).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.kind, ProxyKind::Gateway);
        assert_eq!(
            p.labels.get("istio").map(String::as_str),
            Some("ingressgateway")
        );
        assert_eq!(p.namespace, "shop");
        assert!(Target::parse(ProxyKind::Sidecar, "a/b/c", "x").is_err());
        assert!(Target::parse(ProxyKind::Sidecar, "/b", "x").is_err());
    }
}
