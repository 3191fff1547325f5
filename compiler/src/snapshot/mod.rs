//! The compiler's input: the mesh as plain data. Services (from Kubernetes
//! Services + EndpointSlices + Pods, and from ServiceEntries) with their
//! ports and endpoints, the routing objects as the API types, and the mesh
//! settings. Built with [`SnapshotBuilder`] from API objects.

mod builder;
mod delegation;
mod index;
mod kubernetes;
mod service_entry;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use meshkeeper_crds::networking::{DestinationRule, Gateway, VirtualService};

use crate::error::Warning;
use crate::protocol::Protocol;
use crate::visibility::ExportTo;

pub use builder::SnapshotBuilder;

pub type Labels = BTreeMap<String, String>;

/// What the sidecar does with traffic to destinations it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutboundPolicy {
    /// Pass it through to the original destination (Istio's default).
    #[default]
    AllowAny,
    /// Drop it.
    RegistryOnly,
}

/// Mesh-wide settings that shape every proxy's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshSettings {
    pub cluster_domain: String,
    /// DestinationRules here apply to every namespace (after the proxy's and
    /// the service's own).
    pub root_namespace: String,
    pub outbound_policy: OutboundPolicy,
    /// Upstream connect timeout when no DestinationRule sets one.
    pub connect_timeout: std::time::Duration,
}

impl Default for MeshSettings {
    fn default() -> Self {
        MeshSettings {
            cluster_domain: "cluster.local".into(),
            root_namespace: "istio-system".into(),
            outbound_policy: OutboundPolicy::AllowAny,
            connect_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// How a service's endpoints reach the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Endpoints known to the control plane, served over EDS (Kubernetes
    /// Services, STATIC ServiceEntries).
    Endpoints,
    /// Envoy resolves the hosts itself (DNS ServiceEntries).
    Dns,
    /// Connect to the address the application dialled (ServiceEntry
    /// resolution NONE).
    OriginalDestination,
}

/// Where the service came from (for messages and for Istio's precedence:
/// Kubernetes first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Kubernetes,
    ServiceEntry { name: String, mesh_external: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name (EndpointSlices and ServiceEntry endpoints refer to it).
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
}

/// One address behind a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub address: String,
    /// Port on the endpoint by service port name; a missing name means the
    /// service port number itself.
    pub ports: BTreeMap<String, u16>,
    /// Labels of the workload (the pod's labels), which subsets select on.
    pub labels: Labels,
    pub ready: bool,
}

impl Endpoint {
    pub fn port_for(&self, service_port: &ServicePort) -> u16 {
        self.ports
            .get(&service_port.name)
            .copied()
            .unwrap_or(service_port.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Fully qualified: `reviews.bookinfo.svc.cluster.local`, or the
    /// ServiceEntry host.
    pub hostname: String,
    pub namespace: String,
    /// The Kubernetes name (`reviews`), for the short domains.
    pub short_name: Option<String>,
    /// ClusterIP(s) or ServiceEntry addresses.
    pub addresses: Vec<String>,
    pub ports: Vec<ServicePort>,
    pub endpoints: Vec<Endpoint>,
    pub export_to: ExportTo,
    pub resolution: Resolution,
    pub origin: Origin,
}

impl Service {
    pub fn port(&self, number: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == number)
    }
}

/// The whole mesh as one proxy's compiler sees it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub mesh: MeshSettings,
    /// Sorted by hostname; one entry per hostname (Kubernetes wins over a
    /// ServiceEntry of the same host, as in Istio).
    pub services: Vec<Service>,
    pub virtual_services: Vec<VirtualService>,
    pub destination_rules: Vec<DestinationRule>,
    pub gateways: Vec<Gateway>,
    /// What building the snapshot left out (unmergeable delegate rules),
    /// each naming the object and field.
    pub warnings: Vec<Warning>,
    /// VirtualServices and DestinationRules by host, built on first use.
    /// The routing objects must not change after a compile has used the
    /// snapshot: build a new one (endpoints may change, see
    /// [`Snapshot::replace_endpoints`]).
    index: OnceLock<index::Index>,
}

impl Snapshot {
    pub(crate) fn index(&self) -> &index::Index {
        self.index.get_or_init(|| index::Index::build(self))
    }

    pub fn service(&self, hostname: &str) -> Option<&Service> {
        self.services
            .binary_search_by(|s| s.hostname.as_str().cmp(hostname))
            .ok()
            .and_then(|i| self.services.get(i))
    }

    /// Replaces the endpoints of the service `hostname` (an EndpointSlice
    /// changed), keeping everything else; false when there is no such
    /// service. Follow with [`crate::endpoints_for_cluster`] for each of
    /// its clusters: an endpoint change needs only an EDS push.
    pub fn replace_endpoints(&mut self, hostname: &str, endpoints: Vec<Endpoint>) -> bool {
        match self
            .services
            .binary_search_by(|s| s.hostname.as_str().cmp(hostname))
        {
            Ok(i) => match self.services.get_mut(i) {
                Some(s) => {
                    s.endpoints = endpoints;
                    true
                }
                None => false,
            },
            Err(_) => false,
        }
    }

    /// Services a proxy in `namespace` may send to.
    pub fn visible_services<'a>(&'a self, namespace: &'a str) -> impl Iterator<Item = &'a Service> {
        self.services
            .iter()
            .filter(move |s| s.export_to.is_visible_to(namespace))
    }
}

/// Name and namespace of an API object, for messages.
pub(crate) fn object_name(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}
