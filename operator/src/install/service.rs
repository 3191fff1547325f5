//! The Service the API server reaches a revision's webhook through.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{Identity, object_meta, selector_labels};
use crate::names::{WEBHOOK_CONTAINER_PORT, WEBHOOK_SERVICE_PORT};

pub(crate) fn service(
    name: &str,
    namespace: &str,
    id: Identity<'_>,
    owner: &OwnerReference,
) -> Service {
    Service {
        metadata: object_meta(name, Some(namespace), id, owner),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(id.revision)),
            ports: Some(vec![ServicePort {
                name: Some("https".to_owned()),
                protocol: Some("TCP".to_owned()),
                app_protocol: Some("https".to_owned()),
                port: WEBHOOK_SERVICE_PORT,
                target_port: Some(IntOrString::Int(WEBHOOK_CONTAINER_PORT)),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
