//! The real Envoy accepts every compiled configuration: each Bookinfo
//! scenario (and both outbound policies; the gateway scenarios for the
//! ingress gateway, its SDS certificates as static secrets) becomes a static bootstrap that
//! inlines the listeners, routes, clusters and endpoints, and
//! `envoy --mode validate` must exit 0.
//!
//! Envoy is found through `MESHKEEPER_ENVOY` (the binary), else the folder
//! that `e2e/bin/build-upstream` prints on its last line. Without it the
//! test fails under `CI=true` and is skipped (with a message) elsewhere.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use meshkeeper_compiler::{MeshSettings, OutboundPolicy, bootstrap, compile, render};

fn envoy_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MESHKEEPER_ENVOY") {
        return Some(PathBuf::from(path));
    }
    let script = meshkeeper_testkit::repo_root().join("e2e/bin/build-upstream");
    let output = Command::new(&script).output().ok()?;
    if !output.status.success() {
        eprintln!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout.lines().last()?.trim();
    Some(PathBuf::from(dir).join("envoy")).filter(|p| p.is_file())
}

#[test]
fn envoy_accepts_every_bookinfo_configuration() {
    let Some(envoy) = envoy_binary() else {
        let message = "no Envoy binary: set MESHKEEPER_ENVOY or make e2e/bin/build-upstream work";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{message}");
        }
        eprintln!("skipped: {message}");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let files = certificate_files(dir.path());
    let mut rejected = Vec::new();
    let mut cases = Vec::new();
    for (name, docs) in common::scenarios() {
        cases.push((name, docs, OutboundPolicy::AllowAny));
    }
    cases.push((
        "registry-only".into(),
        common::networking_file("destination-rule-all.yaml"),
        OutboundPolicy::RegistryOnly,
    ));
    for (name, docs) in common::gateway_scenarios() {
        cases.push((name, docs, OutboundPolicy::AllowAny));
    }
    for (name, docs, policy) in cases {
        let mesh = MeshSettings {
            outbound_policy: policy,
            ..MeshSettings::default()
        };
        let snapshot = common::snapshot(mesh, &docs);
        let proxies = if name.starts_with("gateway-") {
            vec![("gateway", common::ingress_gateway())]
        } else {
            ["productpage", "reviews"]
                .into_iter()
                .map(|app| (app, common::sidecar(&snapshot, app)))
                .collect()
        };
        for (app, proxy) in proxies {
            let config = compile(&snapshot, &proxy).unwrap_or_else(|e| panic!("{name}: {e}"));
            let kind = if app == "gateway" {
                "router"
            } else {
                "sidecar"
            };
            let boot = bootstrap::static_bootstrap(
                &config,
                &format!(
                    "{kind}~{}~{}.{}~{}.svc.cluster.local",
                    proxy.ip, proxy.name, proxy.namespace, proxy.namespace
                ),
            )
            .unwrap();
            let json = render::to_json(&boot).unwrap();
            let path = dir.path().join(format!("{name}-{app}.json"));
            let mut text = serde_json::to_string_pretty(&json).unwrap();
            for (fixture_path, real_path) in &files {
                text = text.replace(fixture_path, real_path);
            }
            std::fs::write(&path, text).unwrap();
            let out = Command::new(&envoy)
                .args(["--mode", "validate", "--log-level", "error", "-c"])
                .arg(&path)
                .output()
                .unwrap();
            if !out.status.success() {
                rejected.push(format!(
                    "{name} ({app}): {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(
        rejected.is_empty(),
        "Envoy rejected:\n{}",
        rejected.join("\n")
    );
}

/// Envoy reads certificate files while validating: the fixture's paths are
/// replaced by a freshly made self-signed certificate and key.
fn certificate_files(dir: &std::path::Path) -> Vec<(&'static str, String)> {
    let cert = rcgen::generate_simple_self_signed(vec!["reviews.example".to_string()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let cert_path = cert_path.display().to_string();
    vec![
        (bootstrap::SECRET_CERTIFICATE_FILE, cert_path.clone()),
        (bootstrap::SECRET_KEY_FILE, key_path.display().to_string()),
        (bootstrap::SECRET_CA_FILE, cert_path),
    ]
}
