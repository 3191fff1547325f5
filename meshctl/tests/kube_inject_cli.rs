//! `meshctl kube-inject` on Istio's Bookinfo manifest, as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is a failed assertion

use std::io::Write;
use std::process::{Command, Stdio};

fn meshctl(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("meshctl starts");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("meshctl runs")
}

#[test]
fn injects_every_bookinfo_deployment_and_keeps_the_rest() {
    let file = meshkeeper_testkit::corpus_dir()
        .expect("corpus")
        .join("istio-samples/bookinfo/platform/kube/bookinfo.yaml");
    let out = meshctl(&["kube-inject", "-f", &file.to_string_lossy()], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let input =
        meshkeeper_crds::parse::yaml_documents(&std::fs::read_to_string(&file).expect("read"))
            .expect("parse");
    let output = meshkeeper_crds::parse::yaml_documents(&String::from_utf8_lossy(&out.stdout))
        .expect("meshctl output is YAML");
    assert_eq!(input.len(), output.len());
    let mut deployments = 0;
    for (before, after) in input.iter().zip(&output) {
        if before["kind"] == "Deployment" {
            deployments += 1;
            let init: Vec<&str> = after["spec"]["template"]["spec"]["initContainers"]
                .as_array()
                .expect("initContainers")
                .iter()
                .filter_map(|c| c["name"].as_str())
                .collect();
            assert_eq!(
                init,
                ["meshkeeper-init", "meshkeeper-proxy"],
                "{}",
                before["metadata"]["name"]
            );
        } else {
            assert_eq!(before, after, "{} changed", before["kind"]);
        }
    }
    assert_eq!(deployments, 6);
}

#[test]
fn reads_stdin_and_reports_bad_input_without_output() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    sidecar.istio.io/interceptionMode: TPROXY\nspec:\n  containers:\n  - name: app\n    image: app\n";
    let out = meshctl(&["kube-inject", "-f", "-"], Some(pod));
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sidecar.istio.io/interceptionMode") && err.contains("TPROXY"),
        "{err}"
    );

    let out = meshctl(&["kube-inject", "-f", "-"], Some("a: [1,\n"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid YAML"));
}
