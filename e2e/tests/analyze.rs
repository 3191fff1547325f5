//! `meshctl analyze --cluster` against the real control plane: a
//! VirtualService in a file is judged together with the DestinationRules the
//! cluster holds, as the real binary run by a user does.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use anyhow::{Context, ensure};
use meshkeeper_e2e::{Harness, meshctl_binary};

const DESTINATION_RULE: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
";

/// A VirtualService without a namespace: `-n` places it next to the rule.
fn virtual_service(subset: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
        subset: {subset}
"
    )
}

/// Runs `meshctl analyze --cluster` on one file; exit code and stdout.
fn analyze(kubeconfig: &Path, namespace: &str, file: &Path) -> anyhow::Result<(i32, String)> {
    let out = Command::new(meshctl_binary()?)
        .arg("analyze")
        .arg("--cluster")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-n", namespace, "-f"])
        .arg(file)
        .output()
        .context("running meshctl")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    Ok((
        out.status.code().unwrap_or(-1),
        format!("{stdout}\nstderr: {stderr}"),
    ))
}

#[tokio::test]
async fn a_file_virtual_service_is_judged_against_the_cluster_destination_rules()
-> anyhow::Result<()> {
    let h = Harness::connect().await?;
    h.install_crds().await?;
    let ns = h.namespace("analyze").await?;
    h.kubectl(
        &["apply", "-n", &ns.name, "-f", "-"],
        Some(DESTINATION_RULE),
    )?;

    let dir = tempfile::tempdir()?;
    let to_v2 = dir.path().join("to-v2.yaml");
    let to_v9 = dir.path().join("to-v9.yaml");
    std::fs::write(&to_v2, virtual_service("v2"))?;
    std::fs::write(&to_v9, virtual_service("v9"))?;

    // Offline (the default) the file alone dangles: no rule defines v2.
    let offline = Command::new(meshctl_binary()?)
        .args(["analyze", "-n", &ns.name, "-f"])
        .arg(&to_v2)
        .output()?;
    ensure!(
        offline.status.code() == Some(1),
        "offline, the route to v2 has no rule: {offline:?}"
    );

    // With the cluster's rule it is clean.
    let (code, out) = analyze(h.kubeconfig(), &ns.name, &to_v2)?;
    ensure!(code == 0, "a route to v2 must pass (exit {code}):\n{out}");
    ensure!(out.contains("0 error(s)"), "{out}");

    let (code, out) = analyze(h.kubeconfig(), &ns.name, &to_v9)?;
    ensure!(code == 1, "a route to v9 must fail (exit {code}):\n{out}");
    let expected = format!("error MK0201 VirtualService {}/reviews", ns.name);
    ensure!(out.contains(&expected), "missing `{expected}` in:\n{out}");
    ensure!(
        out.contains("spec.http[0].route[0].destination.subset"),
        "{out}"
    );
    Ok(())
}

#[tokio::test]
async fn a_file_destination_rule_dropping_a_subset_a_cluster_virtual_service_uses_fails()
-> anyhow::Result<()> {
    let h = Harness::connect().await?;
    h.install_crds().await?;
    let ns = h.namespace("analyze-drop").await?;
    h.kubectl(
        &["apply", "-n", &ns.name, "-f", "-"],
        Some(DESTINATION_RULE),
    )?;
    h.kubectl(
        &["apply", "-n", &ns.name, "-f", "-"],
        Some(&virtual_service("v2")),
    )?;

    let dir = tempfile::tempdir()?;
    let without_v2 = dir.path().join("without-v2.yaml");
    let without_v1 = dir.path().join("without-v1.yaml");
    std::fs::write(
        &without_v2,
        DESTINATION_RULE.replace("  - name: v2\n    labels:\n      version: v2\n", ""),
    )?;
    std::fs::write(
        &without_v1,
        DESTINATION_RULE.replace("  - name: v1\n    labels:\n      version: v1\n", ""),
    )?;

    let (code, out) = analyze(h.kubeconfig(), &ns.name, &without_v2)?;
    ensure!(code == 1, "dropping v2 must fail (exit {code}):\n{out}");
    let expected = format!("error MK0202 DestinationRule {}/reviews", ns.name);
    ensure!(out.contains(&expected), "missing `{expected}` in:\n{out}");
    ensure!(
        out.contains(&format!("{}/reviews", ns.name)) && out.contains("subset \"v2\""),
        "the message names the VirtualService and the subset:\n{out}"
    );

    // No cluster VirtualService routes to v1: dropping it is clean.
    let (code, out) = analyze(h.kubeconfig(), &ns.name, &without_v1)?;
    ensure!(
        code == 0,
        "dropping unused v1 must pass (exit {code}):\n{out}"
    );
    Ok(())
}
