//! Where a revision's webhook answers: the Mesh's URL override, or each
//! ready endpoint of its Service (from EndpointSlices), with the name its
//! certificate must carry.

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use meshkeeper_crds::meshkeeper::mesh_revision::MeshRevision;

use super::Context;
use crate::names::{self, WEBHOOK_CONTAINER_PORT};

/// `(host:port, TLS server name)` of every place the webhook serves.
pub async fn webhook_endpoints(
    ctx: &Context,
    revision: &MeshRevision,
) -> Result<Vec<(String, String)>, kube::Error> {
    if let Some(url) = revision
        .spec
        .config
        .webhook
        .as_ref()
        .and_then(|w| w.url.as_deref())
    {
        return Ok(crate::certs::WebhookUrl::parse(url)
            .map(|parsed| vec![(parsed.address, parsed.server_name)])
            .unwrap_or_default());
    }
    let service = names::webhook_name(&revision.name_any());
    let namespace = &ctx.options.namespace;
    let server_name = format!("{service}.{namespace}.svc");
    let slices = Api::<EndpointSlice>::namespaced(ctx.client.clone(), namespace)
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await?;
    let mut endpoints = Vec::new();
    for slice in slices {
        for endpoint in slice.endpoints.into_iter().flatten() {
            if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for address in endpoint.addresses {
                let host = if address.contains(':') {
                    format!("[{address}]")
                } else {
                    address
                };
                endpoints.push((
                    format!("{host}:{WEBHOOK_CONTAINER_PORT}"),
                    server_name.clone(),
                ));
            }
        }
    }
    Ok(endpoints)
}
