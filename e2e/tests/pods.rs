//! Pods that really run, on the test node `meshkeeper-node`: each pod a
//! network namespace, each container a process, probes that probe, status
//! written back so the controller-manager makes EndpointSlices, Services
//! routed by kube-proxy.
//!
//! Two scenarios:
//! - plain pods: an echo Deployment behind a Service answers a client pod
//!   through the ClusterIP; a failing readiness probe takes a pod out of
//!   the EndpointSlice and back; an image with no local program fails with
//!   an event naming it; a deleted pod's processes and namespace are gone;
//! - the mesh as users install it: `helm install` runs the operator and the
//!   webhook as pods (the API server reaches the webhook through its
//!   Service, no URL override), `helm test` passes, an injected pod runs
//!   meshkeeper-init's capture rules and a real Envoy sidecar that becomes
//!   Ready on 15021 and serves stats on 15090, and requests from one
//!   injected pod to another's ClusterIP pass through both sidecars.
//!
//! Only one Mesh may exist in a cluster: this file has one Mesh scenario,
//! and it is its own test binary.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, ensure};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams};
use meshkeeper_crds::meshkeeper::mesh::Mesh;
use meshkeeper_e2e::{DEADLINE, Harness, pod_ready, repo_root, upstream, wait_until};
use serde_json::Value;
use support::operator::{INIT, MESH, PROXY, condition_is, remove_operator_leftovers};

/// Envoy sidecars and the operator's pods take longer than one object.
const PODS_DEADLINE: Duration = Duration::from_secs(120);
const REQUESTS: usize = 20;

/// An echo Deployment (`app=echo`, `version` label as its VERSION) behind
/// Service `echo` port 80, and a client pod with curl.
fn app(replicas: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: echo}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: echo}}}}
  template:
    metadata: {{labels: {{app: echo, version: v1}}}}
    spec:
      containers:
      - name: echo
        image: ghcr.io/meshkeeper/echo:dev
        ports: [{{name: http, containerPort: 8080}}]
        env:
        - {{name: VERSION, valueFrom: {{fieldRef: {{fieldPath: "metadata.labels['version']"}}}}}}
        readinessProbe: {{httpGet: {{port: http, path: /}}, periodSeconds: 1, failureThreshold: 1}}
        # As Bookinfo's: an emptyDir on /tmp, where the node keeps the
        # other volume's source too (the launcher must not lose it).
        volumeMounts: [{{name: tmp, mountPath: /tmp}}, {{name: data, mountPath: /var/lib/echo}}]
      volumes: [{{name: tmp, emptyDir: {{}}}}, {{name: data, emptyDir: {{}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: echo}}
spec:
  selector: {{app: echo}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client, labels: {{app: client}}}}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: curl
    image: "curlimages/curl:8.10.1"
    command: [sleep, infinity]
    volumeMounts: [{{name: settings, mountPath: /etc/settings}}]
  volumes:
  - {{name: settings, configMap: {{name: settings}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data: {{greeting: hello}}
"#
    )
}

/// Waits until the Service answers the client: kube-proxy programs its
/// rules a moment after the EndpointSlice changes (until then the ClusterIP
/// refuses connections).
async fn wait_service_answers(h: &Harness, ns: &str, url: &str) -> anyhow::Result<()> {
    wait_until(&format!("{url} answering the client"), DEADLINE, || async {
        request(h, ns, url).map(|_| Some(()))
    })
    .await
}

/// `curl` from the client pod; the echo app's JSON answer.
fn request(h: &Harness, ns: &str, url: &str) -> anyhow::Result<Value> {
    let out = h.exec(ns, "client", "curl", &["curl", "-sS", "-m", "10", url])?;
    serde_json::from_str(&out).with_context(|| format!("the echo app's answer to {url}: {out:?}"))
}

fn names(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

fn pod_ip(p: &Pod) -> anyhow::Result<String> {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .context("a Ready pod without an IP")
}

/// The ready addresses the controller-manager lists for Service `echo`.
async fn ready_endpoints(h: &Harness, ns: &str) -> anyhow::Result<BTreeSet<String>> {
    let slices: Api<EndpointSlice> = Api::namespaced(h.client.clone(), ns);
    let lp = ListParams::default().labels("kubernetes.io/service-name=echo");
    Ok(slices
        .list(&lp)
        .await?
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .flat_map(|e| e.addresses.iter().cloned())
        .collect())
}

async fn wait_endpoints(h: &Harness, ns: &str, want: &BTreeSet<String>) -> anyhow::Result<()> {
    wait_until(
        &format!("EndpointSlice of echo = {want:?}"),
        DEADLINE,
        || async { Ok((ready_endpoints(h, ns).await? == *want).then_some(())) },
    )
    .await
}

fn netns_exists(name: &str) -> anyhow::Result<bool> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name)))
}

#[tokio::test]
async fn plain_pods_run_probe_and_answer_through_their_service() -> anyhow::Result<()> {
    let h = Harness::connect().await?;
    let ns = h.namespace("pods").await?;
    h.kubectl(&["apply", "-n", &ns.name, "-f", "-"], Some(&app(2)))?;
    let echoes = h.ready_pods(&ns.name, "app=echo", 2, PODS_DEADLINE).await?;
    h.ready_pods(&ns.name, "app=client", 1, PODS_DEADLINE)
        .await?;

    let ips: BTreeSet<String> = echoes.iter().map(pod_ip).collect::<Result<_, _>>()?;
    wait_endpoints(&h, &ns.name, &ips).await?;

    // By name (the pod's hosts file) to the ClusterIP, balanced by kube-proxy.
    wait_service_answers(&h, &ns.name, "http://echo/hello").await?;
    let mut answered = BTreeSet::new();
    for _ in 0..REQUESTS {
        let answer = request(&h, &ns.name, "http://echo/hello")?;
        ensure!(answer["namespace"] == ns.name.as_str(), "{answer}");
        ensure!(answer["version"] == "v1", "downward API env: {answer}");
        ensure!(answer["uri"] == "/hello", "{answer}");
        answered.insert(answer["pod"].as_str().unwrap_or_default().to_owned());
    }
    // Both pods answer unless kube-proxy's coin landed the same way 20 times (2^-19).
    ensure!(
        answered == names(&echoes),
        "answered by {answered:?}, pods {:?}",
        names(&echoes)
    );

    // Volumes: the ServiceAccount's projected token volume, and a ConfigMap
    // whose update reaches the running pod (the node's atomic swap).
    let namespace_file = h.exec(
        &ns.name,
        "client",
        "curl",
        &[
            "cat",
            "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
        ],
    )?;
    ensure!(
        namespace_file == ns.name,
        "token volume namespace: {namespace_file:?}"
    );
    let greeting = || {
        h.exec(
            &ns.name,
            "client",
            "curl",
            &["cat", "/etc/settings/greeting"],
        )
    };
    ensure!(
        greeting()? == "hello",
        "mounted ConfigMap: {:?}",
        greeting()
    );
    h.kubectl(
        &[
            "patch",
            "configmap",
            "settings",
            "-n",
            &ns.name,
            "-p",
            r#"{"data":{"greeting":"bonjour"}}"#,
        ],
        None,
    )?;
    wait_until(
        "the ConfigMap update in the running pod",
        DEADLINE,
        || async { Ok((greeting()? == "bonjour").then_some(())) },
    )
    .await?;

    // A readiness probe that fails takes the pod out of the Service, and back.
    let sick = &echoes[0];
    let sick_ip = pod_ip(sick)?;
    let control = format!("http://{sick_ip}:8080/echo/fail?count=1000000&status=503");
    h.exec(
        &ns.name,
        "client",
        "curl",
        &["curl", "-sS", "-X", "POST", &control],
    )?;
    let healthy: BTreeSet<String> = ips.iter().filter(|ip| **ip != sick_ip).cloned().collect();
    wait_endpoints(&h, &ns.name, &healthy).await?;
    let reset = format!("http://{sick_ip}:8080/echo/reset");
    h.exec(
        &ns.name,
        "client",
        "curl",
        &["curl", "-sS", "-X", "POST", &reset],
    )?;
    wait_endpoints(&h, &ns.name, &ips).await?;

    // An image the node cannot run fails the pod with an event naming it.
    let image = "example.com/not-on-this-node:1.0";
    let bad = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: unmapped}}\nspec:\n  containers:\n  - {{name: app, image: \"{image}\"}}\n"
    );
    h.kubectl(&["apply", "-n", &ns.name, "-f", "-"], Some(&bad))?;
    let events: Api<Event> = Api::namespaced(h.client.clone(), &ns.name);
    let lp = ListParams::default().fields("involvedObject.name=unmapped");
    let note = wait_until("an event naming the unmapped image", DEADLINE, || async {
        Ok(events
            .list(&lp)
            .await?
            .items
            .into_iter()
            .filter_map(|e| e.message)
            .find(|m| m.contains(image)))
    })
    .await?;
    ensure!(
        note.contains("image table"),
        "the event says what to do: {note}"
    );

    // Deleting a pod stops its processes and removes its network namespace.
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), &ns.name);
    let client = pods.get("client").await?;
    let uid = client.metadata.uid.clone().unwrap_or_default();
    let (netns, _) = meshkeeper_node::network::names_for(&uid);
    ensure!(
        netns_exists(&netns)?,
        "the running client has namespace {netns}"
    );
    pods.delete("client", &DeleteParams::default()).await?;
    wait_until("the client pod removed by the node", DEADLINE, || async {
        Ok(pods.get_opt("client").await?.is_none().then_some(()))
    })
    .await?;
    ensure!(
        !netns_exists(&netns)?,
        "namespace {netns} is left after the pod is gone"
    );
    Ok(())
}

/// Removes the release and what the operator made, even when the scenario fails.
struct Release<'h> {
    h: &'h Harness,
    namespace: String,
}

impl Release<'_> {
    fn helm(&self, args: &[&str]) -> anyhow::Result<String> {
        let kubeconfig = self.h.kubeconfig().to_string_lossy().into_owned();
        let mut all = vec!["--kubeconfig", &kubeconfig, "--namespace", &self.namespace];
        all.extend_from_slice(args);
        upstream("helm", &all)
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let _ = self.helm(&["uninstall", "meshkeeper", "--wait", "--timeout", "180s"]);
        remove_operator_leftovers(self.h);
    }
}

/// A counter from Envoy's `/stats` text (`name: value`).
fn stat(stats: &str, name: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(": ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Inbound connections Envoy took on 15006, from its Prometheus endpoint.
async fn inbound_connections(ip: &str) -> anyhow::Result<u64> {
    let addr = format!("{ip}:15090").parse()?;
    let (status, body) = support::operator::http_get(addr, "/stats/prometheus").await?;
    ensure!(
        status == 200,
        "Envoy's /stats/prometheus on {ip}:15090 answered {status}"
    );
    Ok(body
        .lines()
        .find(|l| {
            l.starts_with("envoy_listener_downstream_cx_total{")
                && l.contains("envoy_listener_address=\"0.0.0.0_15006\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0))
}

#[tokio::test]
async fn helm_installed_mesh_runs_as_pods_and_traffic_passes_both_sidecars() -> anyhow::Result<()> {
    let h = Harness::connect().await?;
    remove_operator_leftovers(&h);
    let meshes = Api::<Mesh>::all(h.client.clone());
    let system = h.namespace("mesh-pods").await?;
    let release = Release {
        h: &h,
        namespace: system.name.clone(),
    };
    let chart = repo_root().join("charts/meshkeeper");
    release.helm(&[
        "install",
        "meshkeeper",
        &chart.to_string_lossy(),
        "--take-ownership",
    ])?;
    wait_until(
        "the Mesh Ready, served by the chart's pods",
        PODS_DEADLINE,
        || async {
            Ok(meshes
                .get_opt(MESH)
                .await?
                .filter(|m| condition_is(m, "Ready", "True"))
                .map(|_| ()))
        },
    )
    .await?;
    release.helm(&["test", "meshkeeper", "--timeout", "120s"])?;

    let app_ns = h.namespace("mesh-app").await?;
    h.kubectl(
        &[
            "label",
            "namespace",
            &app_ns.name,
            "istio-injection=enabled",
        ],
        None,
    )?;
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(h.client.clone(), &app_ns.name);
    wait_until("the namespace's proxy ConfigMap", DEADLINE, || async {
        Ok(config_maps.get_opt("meshkeeper-proxy").await?.map(|_| ()))
    })
    .await?;
    h.kubectl(&["apply", "-n", &app_ns.name, "-f", "-"], Some(&app(2)))?;
    let echoes = h
        .ready_pods(&app_ns.name, "app=echo", 2, PODS_DEADLINE)
        .await?;
    let clients = h
        .ready_pods(&app_ns.name, "app=client", 1, PODS_DEADLINE)
        .await?;
    for pod in echoes.iter().chain(&clients) {
        let containers: Vec<&str> = pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .map(|c| c.name.as_str())
            .collect();
        // A native sidecar (an init container that keeps running) here.
        ensure!(containers.contains(&PROXY), "not injected: {containers:?}");
        ensure!(pod_ready(pod), "Ready includes the proxy's 15021 probe");
    }

    // meshkeeper-init installed the capture rules in the pod's namespace.
    let rules = h.exec(
        &app_ns.name,
        "client",
        INIT,
        &["iptables-save", "-t", "nat"],
    )?;
    ensure!(
        rules.contains("MESHKEEPER_OUTBOUND") && rules.contains("--to-ports 15001"),
        "capture rules in the client pod:\n{rules}"
    );

    wait_service_answers(&h, &app_ns.name, "http://echo/warm-up").await?;
    let admin = ["curl", "-sS", "http://127.0.0.1:15000/stats"];
    let outbound = "listener.0.0.0.0_15001.downstream_cx_total";
    let before_out = stat(&h.exec(&app_ns.name, "client", "curl", &admin)?, outbound);
    let ips: Vec<String> = echoes.iter().map(pod_ip).collect::<Result<_, _>>()?;
    let mut before_in = 0;
    for ip in &ips {
        before_in += inbound_connections(ip).await?;
    }

    let mut answered = BTreeSet::new();
    for _ in 0..REQUESTS {
        let answer = request(&h, &app_ns.name, "http://echo/through-the-mesh")?;
        // The inbound sidecar connects to the app from 127.0.0.6, as Istio's does.
        let peer = answer["peer"].as_str().unwrap_or_default();
        ensure!(
            peer.starts_with("127.0.0.6:"),
            "not through the server's sidecar: {answer}"
        );
        answered.insert(answer["pod"].as_str().unwrap_or_default().to_owned());
    }
    ensure!(
        answered.is_subset(&names(&echoes)) && !answered.is_empty(),
        "{answered:?}"
    );

    let after_out = stat(&h.exec(&app_ns.name, "client", "curl", &admin)?, outbound);
    ensure!(
        after_out >= before_out + REQUESTS as u64,
        "the client's sidecar took {} outbound connections for {REQUESTS} requests",
        after_out - before_out
    );
    let mut after_in = 0;
    for ip in &ips {
        after_in += inbound_connections(ip).await?;
    }
    ensure!(
        after_in >= before_in + REQUESTS as u64,
        "the servers' sidecars took {} inbound connections for {REQUESTS} requests",
        after_in - before_in
    );

    drop(release);
    wait_until("the Mesh gone after helm uninstall", DEADLINE, || async {
        Ok(meshes.get_opt(MESH).await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}
