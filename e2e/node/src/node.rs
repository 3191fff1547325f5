//! The Node object and its heartbeats, as a kubelet keeps them: the Node is
//! registered with its capacity, addresses and pod range; its Lease in
//! `kube-node-lease` is renewed every 10 s (what the node lifecycle
//! controller watches), and its Ready condition is refreshed every minute.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};

const MANAGER: &str = "meshkeeper-node";
pub const KUBELET_VERSION: &str = "v1.37.2";

/// What the Node says about itself (pure).
pub fn node_object(name: &str, internal_ip: &str, pod_cidr: &str, now: Timestamp) -> Node {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let resources = BTreeMap::from([
        ("cpu".to_owned(), Quantity(cpus.to_string())),
        ("memory".to_owned(), Quantity("16Gi".into())),
        ("pods".to_owned(), Quantity("110".into())),
        ("ephemeral-storage".to_owned(), Quantity("50Gi".into())),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/hostname".to_owned(), name.to_owned()),
                ("kubernetes.io/os".to_owned(), "linux".to_owned()),
                (
                    "kubernetes.io/arch".to_owned(),
                    std::env::consts::ARCH.replace("x86_64", "amd64"),
                ),
            ])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(pod_cidr.to_owned()),
            pod_cidrs: Some(vec![pod_cidr.to_owned()]),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            conditions: Some(conditions(now)),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: internal_ip.to_owned(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: name.to_owned(),
                },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: std::env::consts::ARCH.replace("x86_64", "amd64"),
                operating_system: "linux".into(),
                os_image: "meshkeeper test node".into(),
                kernel_version: kernel_version(),
                kubelet_version: KUBELET_VERSION.into(),
                container_runtime_version: "meshkeeper-node://0.1.0".into(),
                machine_id: name.to_owned(),
                system_uuid: name.to_owned(),
                boot_id: name.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn conditions(now: Timestamp) -> Vec<NodeCondition> {
    let cond = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };
    vec![
        cond(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        cond(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        cond(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        cond(
            "Ready",
            "True",
            "KubeletReady",
            "meshkeeper test node is posting ready status",
        ),
    ]
}

/// Registers the Node (server-side apply, so a rerun takes it over).
pub async fn register(client: &kube::Client, node: &Node) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let name = node.metadata.name.clone().unwrap_or_default();
    let pp = PatchParams::apply(MANAGER).force();
    let mut object = serde_json::to_value(node)?;
    if let Some(o) = object.as_object_mut() {
        o.insert("apiVersion".into(), "v1".into());
        o.insert("kind".into(), "Node".into());
        o.remove("status");
    }
    api.patch(&name, &pp, &Patch::Apply(&object)).await?;
    patch_status(&api, &name, node).await
}

async fn patch_status(api: &Api<Node>, name: &str, node: &Node) -> anyhow::Result<()> {
    let status = serde_json::json!({ "status": node.status });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

/// Renews the Lease every 10 s and the status every minute, forever.
pub async fn heartbeat(client: kube::Client, node: Node) {
    let name = node.metadata.name.clone().unwrap_or_default();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client);
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let mut beats: u64 = 0;
    loop {
        tick.tick().await;
        if let Err(e) = renew_lease(&leases, &name).await {
            tracing::warn!(node = %name, "renewing the node Lease: {e}");
        }
        if beats % 6 == 5 {
            let mut fresh = node.clone();
            if let Some(s) = fresh.status.as_mut() {
                s.conditions = Some(conditions(Timestamp::now()));
            }
            if let Err(e) = patch_status(&nodes, &name, &fresh).await {
                tracing::warn!(node = %name, "updating the node status: {e:#}");
            }
        }
        beats += 1;
    }
}

async fn renew_lease(api: &Api<Lease>, name: &str) -> Result<(), kube::Error> {
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.to_owned()),
            lease_duration_seconds: Some(40),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..Default::default()
        }),
    };
    let mut object = serde_json::to_value(&lease).map_err(kube::Error::SerdeError)?;
    if let Some(o) = object.as_object_mut() {
        o.insert("apiVersion".into(), "coordination.k8s.io/v1".into());
        o.insert("kind".into(), "Lease".into());
    }
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_is_ready_with_its_range_and_address() {
        let node = node_object("n1", "10.244.0.1", "10.244.0.0/24", Timestamp::UNIX_EPOCH);
        let status = node.status.unwrap();
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(status.addresses.unwrap()[0].address, "10.244.0.1");
        assert_eq!(
            node.spec.unwrap().pod_cidr.as_deref(),
            Some("10.244.0.0/24")
        );
    }
}
