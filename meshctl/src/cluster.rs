//! Reading what a cluster holds for `meshctl analyze --cluster` (and
//! `meshctl proxy-config --cluster`): every
//! VirtualService, DestinationRule, Gateway and ServiceEntry in all
//! namespaces, and the Services, running Pods and (when allowed) Secrets
//! the reference checks look up, as plain JSON values. Decoding and judging
//! them is the pure part, in `analyze` and `workloads`.

use std::path::Path;

use anyhow::Context;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

/// The kinds whose cluster copies the cross-object checks look up.
const KINDS: [&str; 4] = [
    "VirtualService",
    "DestinationRule",
    "Gateway",
    "ServiceEntry",
];
const GROUP: &str = "networking.istio.io";
const VERSION: &str = "v1";
/// Page size of the list calls, so a large cluster is not read in one response.
const PAGE: u32 = 500;

/// What the cluster holds, as listed.
pub struct ClusterObjects {
    pub networking: Vec<Value>,
    pub services: Vec<Value>,
    pub pods: Vec<Value>,
    /// `None` when listing Secrets is not allowed: the credential checks
    /// are then skipped rather than reporting every Secret missing.
    pub secrets: Option<Vec<Value>>,
}

/// Lists the networking objects, Services, running Pods and Secrets of all
/// namespaces. With `kubeconfig`, that file is used; without, kube's usual
/// lookup (`KUBECONFIG`, `~/.kube/config`, in-cluster).
pub fn objects(kubeconfig: Option<&Path>) -> anyhow::Result<ClusterObjects> {
    // One short-lived runtime: the rest of meshctl is synchronous.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let client = connect(kubeconfig).await?;
        let mut networking = Vec::new();
        for kind in KINDS {
            let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(GROUP, VERSION, kind));
            networking.extend(list_all(&client, &resource, ListParams::default()).await?);
        }
        let core = |kind| ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", kind));
        let services = list_all(&client, &core("Service"), ListParams::default()).await?;
        let running = ListParams::default().fields("status.phase=Running");
        let pods = list_all(&client, &core("Pod"), running).await?;
        let secrets = match list_all(&client, &core("Secret"), ListParams::default()).await {
            Ok(secrets) => Some(secrets),
            Err(e) => {
                eprintln!("meshctl: gateway credentials not checked: {e:#}");
                None
            }
        };
        Ok(ClusterObjects {
            networking,
            services,
            pods,
            secrets,
        })
    })
}

/// What `meshctl proxy-config --cluster` compiles from: the networking
/// objects, Services, EndpointSlices and running Pods of all namespaces.
pub fn mesh_objects(kubeconfig: Option<&Path>) -> anyhow::Result<Vec<Value>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let client = connect(kubeconfig).await?;
        let mut objects = Vec::new();
        for kind in KINDS {
            let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(GROUP, VERSION, kind));
            objects.extend(list_all(&client, &resource, ListParams::default()).await?);
        }
        let kinds = [
            (
                GroupVersionKind::gvk("", "v1", "Service"),
                ListParams::default(),
            ),
            (
                GroupVersionKind::gvk("discovery.k8s.io", "v1", "EndpointSlice"),
                ListParams::default(),
            ),
            (
                GroupVersionKind::gvk("", "v1", "Pod"),
                ListParams::default().fields("status.phase=Running"),
            ),
        ];
        for (gvk, params) in kinds {
            objects.extend(list_all(&client, &ApiResource::from_gvk(&gvk), params).await?);
        }
        Ok(objects)
    })
}

async fn connect(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("reading --kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("loading --kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer().await.context(
            "finding a kubeconfig for --cluster (set KUBECONFIG or pass --kubeconfig PATH)",
        )?,
    };
    kube::Client::try_from(config).context("creating the Kubernetes client")
}

async fn list_all(
    client: &kube::Client,
    resource: &ApiResource,
    params: ListParams,
) -> anyhow::Result<Vec<Value>> {
    let kind = &resource.kind;
    let api = Api::<DynamicObject>::all_with(client.clone(), resource);
    let mut values = Vec::new();
    let mut params = params.limit(PAGE);
    loop {
        let page = api.list(&params).await.with_context(|| {
            format!(
                "listing {kind}s ({}) in all namespaces",
                resource.api_version
            )
        })?;
        for item in page.items {
            values.push(with_type(
                serde_json::to_value(item)?,
                &resource.api_version,
                kind,
            ));
        }
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(values),
        }
    }
}

/// List items may omit `apiVersion`/`kind`; decoding dispatches on them.
fn with_type(mut value: Value, api_version: &str, kind: &str) -> Value {
    if let Some(object) = value.as_object_mut() {
        object
            .entry("apiVersion")
            .or_insert_with(|| Value::String(api_version.to_owned()));
        object
            .entry("kind")
            .or_insert_with(|| Value::String(kind.to_owned()));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_items_get_their_type_and_keep_one_they_have() {
        let bare = with_type(
            serde_json::json!({"metadata": {"name": "r"}}),
            "networking.istio.io/v1",
            "DestinationRule",
        );
        assert_eq!(bare["apiVersion"], "networking.istio.io/v1");
        assert_eq!(bare["kind"], "DestinationRule");
        let typed = with_type(
            serde_json::json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService"}),
            "networking.istio.io/v1",
            "DestinationRule",
        );
        assert_eq!(typed["apiVersion"], "networking.istio.io/v1beta1");
        assert_eq!(typed["kind"], "VirtualService");
    }
}
