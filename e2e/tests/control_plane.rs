//! The local control plane does what later scenarios rely on: CRDs install,
//! Istio's own samples apply and read back unchanged, and controllers turn
//! Deployments into Pods.

use std::collections::BTreeSet;

use anyhow::{Context, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use meshkeeper_e2e::{DEADLINE, Harness, same_json, wait_until};

#[tokio::test]
async fn crds_install_and_become_established() -> anyhow::Result<()> {
    let h = Harness::connect().await?;
    let names = h.install_crds().await?;
    for expected in [
        "virtualservices.networking.istio.io",
        "destinationrules.networking.istio.io",
        "gateways.networking.istio.io",
        "serviceentries.networking.istio.io",
        "envoyfilters.networking.istio.io",
        "proxyconfigs.networking.istio.io",
        "meshes.meshkeeper.io",
        "meshrevisions.meshkeeper.io",
    ] {
        ensure!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    // Every served version of a networking kind answers a list.
    for version in ["v1", "v1beta1", "v1alpha3"] {
        h.kubectl(
            &[
                "get",
                &format!("virtualservices.{version}.networking.istio.io"),
                "-A",
            ],
            None,
        )?;
    }
    Ok(())
}

#[tokio::test]
async fn corpus_networking_documents_apply_and_read_back_unchanged() -> anyhow::Result<()> {
    let h = Harness::connect().await?;
    h.install_crds().await?;
    let ns = h.namespace("corpus").await?;
    let docs = meshkeeper_testkit::networking_documents()?;
    ensure!(
        docs.len() >= 30,
        "expected the Istio samples, found {} documents",
        docs.len()
    );

    for doc in &docs {
        let mut object = doc.value.clone();
        object["metadata"]["namespace"] = serde_json::Value::String(ns.name.clone());
        let where_ = format!("{} {} from {}", doc.kind(), doc.name(), doc.file.display());
        h.kubectl(
            &[
                "apply",
                "--server-side",
                "--field-manager=meshkeeper-e2e",
                "-f",
                "-",
            ],
            Some(&object.to_string()),
        )
        .with_context(|| format!("applying {where_}"))?;

        let resource = format!("{}.networking.istio.io", doc.kind().to_lowercase());
        let stored = h.kubectl(
            &["get", &resource, doc.name(), "-n", &ns.name, "-o", "json"],
            None,
        )?;
        let stored: serde_json::Value = serde_json::from_str(&stored)?;
        ensure!(
            same_json(&stored["spec"], &doc.value["spec"]),
            "{where_} lost or changed fields in the API server:\n sent:   {}\n stored: {}",
            doc.value["spec"],
            stored["spec"]
        );
    }
    Ok(())
}

#[tokio::test]
async fn bookinfo_deployments_yield_pods() -> anyhow::Result<()> {
    let h = Harness::connect().await?;
    let ns = h.namespace("bookinfo").await?;
    let file = meshkeeper_testkit::corpus_dir()?
        .join("istio-samples/bookinfo/platform/kube/bookinfo.yaml");
    h.kubectl(
        &["apply", "-n", &ns.name, "-f", &file.to_string_lossy()],
        None,
    )?;

    let deployments: BTreeSet<String> = Api::<Deployment>::namespaced(h.client.clone(), &ns.name)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|d| d.metadata.name)
        .collect();
    ensure!(
        deployments.len() >= 6,
        "bookinfo has 6 Deployments, got {deployments:?}"
    );

    let pods = Api::<Pod>::namespaced(h.client.clone(), &ns.name);
    wait_until(
        "a controller-made Pod for every Deployment",
        DEADLINE,
        || async {
            let names: Vec<String> = pods
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter(|p| {
                    p.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.kind == "ReplicaSet")
                })
                .filter_map(|p| p.metadata.name)
                .collect();
            let all_have_pods = deployments
                .iter()
                .all(|d| names.iter().any(|p| p.starts_with(&format!("{d}-"))));
            Ok(all_have_pods.then_some(()))
        },
    )
    .await
}
