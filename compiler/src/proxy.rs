//! The proxy a configuration is compiled for.

use k8s_openapi::api::core::v1::Pod;

use crate::error::CompileError;
use crate::snapshot::Labels;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// The Envoy beside an application container, with iptables capture.
    Sidecar,
    /// A standalone Envoy that Gateways select by label.
    Gateway,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub kind: ProxyKind,
    pub namespace: String,
    /// The pod's name (for messages and node ids).
    pub name: String,
    pub labels: Labels,
    /// The pod IP: inbound listeners serve the service ports whose
    /// endpoints carry it.
    pub ip: String,
}

impl Proxy {
    pub fn sidecar(
        namespace: impl Into<String>,
        name: impl Into<String>,
        ip: impl Into<String>,
        labels: Labels,
    ) -> Self {
        Proxy {
            kind: ProxyKind::Sidecar,
            namespace: namespace.into(),
            name: name.into(),
            labels,
            ip: ip.into(),
        }
    }

    /// A gateway pod's proxy: Gateways whose `selector` its labels satisfy
    /// configure it.
    pub fn gateway(
        namespace: impl Into<String>,
        name: impl Into<String>,
        ip: impl Into<String>,
        labels: Labels,
    ) -> Self {
        Proxy {
            kind: ProxyKind::Gateway,
            ..Proxy::sidecar(namespace, name, ip, labels)
        }
    }

    /// The sidecar of a scheduled pod (it needs an IP).
    pub fn sidecar_of_pod(pod: &Pod) -> Result<Self, CompileError> {
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .ok_or_else(|| CompileError::Input {
                kind: "Pod",
                name: format!("{namespace}/{name}"),
                message: "has no status.podIP yet (not scheduled or not started)".into(),
            })?;
        Ok(Proxy::sidecar(
            namespace,
            name,
            ip,
            pod.metadata.labels.clone().unwrap_or_default(),
        ))
    }

    /// Whether the proxy's labels include every one of `selector`.
    pub fn matches(&self, selector: &Labels) -> bool {
        selector.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}
