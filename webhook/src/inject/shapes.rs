//! What each template adds: the sidecar beside the application, the proxy
//! as a gateway's main container, or the gRPC bootstrap for a proxyless
//! application. Each records its changes in [`Additions`] and returns the
//! warnings for the pod's author.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::annotations::{Findings, ProxySpec};
use super::merge::{self, AUTO_IMAGE, USER_PROXY_CONTAINER};
use super::patch::{Additions, Edit, List};
use super::{containers, names};

/// A container named `istio-proxy` the pod declares itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UserProxy<'a> {
    pub list: List,
    pub index: usize,
    pub container: &'a Container,
}

/// The pod's own `istio-proxy` container, among its containers or its init
/// containers (a native-sidecar customisation lives there).
pub(crate) fn user_proxy(pod: &Pod) -> Option<UserProxy<'_>> {
    let spec = pod.spec.as_ref()?;
    let find = |list: List, containers: &'_ [Container]| {
        containers
            .iter()
            .position(|c| c.name == USER_PROXY_CONTAINER)
            .map(|index| (list, index))
    };
    let (list, index) = find(List::Containers, &spec.containers).or_else(|| {
        find(
            List::InitContainers,
            spec.init_containers.as_deref().unwrap_or_default(),
        )
    })?;
    let container = match list {
        List::Containers => spec.containers.get(index)?,
        List::InitContainers => spec.init_containers.as_ref()?.get(index)?,
    };
    Some(UserProxy {
        list,
        index,
        container,
    })
}

/// The gRPC templates inject no proxy, so nothing can stand in for
/// `image: auto`: such a pod could never start.
pub(crate) fn check_grpc_user_proxy(user: Option<&UserProxy<'_>>, findings: &mut Findings) {
    if let Some(user) = user
        && user.container.image.as_deref() == Some(AUTO_IMAGE)
    {
        findings.errors.push(format!(
            "container {USER_PROXY_CONTAINER} has image {AUTO_IMAGE:?}, which only the sidecar \
             and gateway templates resolve: the proxyless gRPC templates (annotation {}) inject \
             no proxy; give the container a real image, remove it, or choose the gateway or \
             sidecar template",
            names::TEMPLATES
        ));
    }
}

/// The Envoy sidecar: a native sidecar or the last container, as the
/// settings say. A declared `istio-proxy` is merged into it and moved there.
pub(crate) fn sidecar(
    pod: &Pod,
    proxy: &ProxySpec,
    canonical_name: &str,
    user: Option<UserProxy<'_>>,
    additions: &mut Additions,
) -> Result<Vec<String>, serde_json::Error> {
    let injected = containers::proxy_container(proxy, canonical_name);
    let Some(user) = user else {
        place(injected, proxy.native_sidecar, additions);
        return Ok(Vec::new());
    };
    let merged = merge::merge(&injected, user.container)?;
    let regular = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    if user.list == List::Containers && regular == 1 {
        // Moving the pod's only container away would leave it with none,
        // which the API server refuses; it stays, and the author learns
        // what the pod probably meant.
        additions.edits.push(Edit::Replace {
            list: user.list,
            index: user.index,
            container: Box::new(merged),
        });
        return Ok(vec![format!(
            "container {USER_PROXY_CONTAINER} is the pod's only container, so the proxy runs as \
             its main container with traffic capture; for a gateway set annotation {}=gateway",
            names::TEMPLATES
        )]);
    }
    additions.edits.push(Edit::Remove {
        list: user.list,
        index: user.index,
    });
    place(merged, proxy.native_sidecar, additions);
    Ok(Vec::new())
}

fn place(proxy: Container, native: bool, additions: &mut Additions) {
    if native {
        additions.init_containers.push(proxy);
    } else {
        additions.containers.push(proxy);
    }
}

/// A gateway: the proxy is the pod's main container (never a native
/// sidecar, nothing captured), merged in place into a declared
/// `istio-proxy`, and allowed to listen on ports below 1024.
pub(crate) fn gateway(
    pod: &Pod,
    annotations: &BTreeMap<String, String>,
    mut proxy: ProxySpec,
    canonical_name: &str,
    user: Option<UserProxy<'_>>,
    additions: &mut Additions,
) -> Result<Vec<String>, serde_json::Error> {
    let mut notes = Vec::new();
    if annotations.get(names::NATIVE_SIDECAR).map(String::as_str) == Some("true") {
        notes.push(format!(
            "annotation {}=\"true\" ignored: the gateway template runs the proxy as the pod's \
             main container",
            names::NATIVE_SIDECAR
        ));
    }
    proxy.native_sidecar = false;
    let injected = containers::proxy_container(&proxy, canonical_name);
    match user {
        Some(user) => additions.edits.push(Edit::Replace {
            list: user.list,
            index: user.index,
            container: Box::new(merge::merge(&injected, user.container)?),
        }),
        None => additions.containers.push(injected),
    }
    if !sets_sysctl(pod, names::UNPRIVILEGED_PORT_SYSCTL) {
        additions.edits.push(Edit::Sysctl {
            name: names::UNPRIVILEGED_PORT_SYSCTL,
            value: "0".to_owned(),
        });
    }
    Ok(notes)
}

fn sets_sysctl(pod: &Pod, name: &str) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|c| c.sysctls.as_ref())
        .is_some_and(|sysctls| sysctls.iter().any(|s| s.name == name))
}

/// Proxyless gRPC: every application container gets the proxy ConfigMap
/// mounted and `GRPC_XDS_BOOTSTRAP` pointing at its gRPC bootstrap (the key
/// the operator writes). What a container already sets wins.
pub(crate) fn grpc(pod: &Pod, additions: &mut Additions) -> Vec<String> {
    let mut notes = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return notes;
    };
    for (index, container) in spec.containers.iter().enumerate() {
        if container.name == USER_PROXY_CONTAINER {
            continue;
        }
        let own_env = container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == names::GRPC_BOOTSTRAP_ENV);
        if let Some(own) = own_env {
            notes.push(format!(
                "container {} sets {} itself ({:?}); it is kept, so the mesh's bootstrap at {} \
                 is not used",
                container.name,
                names::GRPC_BOOTSTRAP_ENV,
                own.value.as_deref().unwrap_or("from valueFrom"),
                names::GRPC_BOOTSTRAP
            ));
        }
        let mounted = container
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == names::PROXY_CONFIG_DIR);
        additions.edits.push(Edit::AddToContainer {
            index,
            env: own_env
                .is_none()
                .then(|| Box::new(containers::grpc_bootstrap_env())),
            mount: (!mounted).then(|| Box::new(containers::config_mount())),
        });
    }
    notes
}
