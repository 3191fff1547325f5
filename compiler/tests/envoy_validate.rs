//! The real Envoy accepts every compiled configuration: each Bookinfo
//! scenario (and both outbound policies; the gateway scenarios for the
//! ingress gateway, its SDS certificates as static secrets) becomes a static bootstrap that
//! inlines the listeners, routes, clusters and endpoints, and
//! `envoy --mode validate` must exit 0.
//!
//! Each resource (listener, route configuration, cluster, assignment) is
//! also checked by `envoycheck`, the go-control-plane checker the e2e suite
//! builds: it decodes it strictly and applies Envoy's validation rules.
//!
//! Envoy and envoycheck are found through `MESHKEEPER_ENVOY` and
//! `MESHKEEPER_ENVOYCHECK` (the binaries), else the folder that
//! `e2e/bin/build-upstream` prints on its last line. Without them the test
//! fails under `CI=true` and is skipped (with a message) elsewhere.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use meshkeeper_compiler::{MeshSettings, OutboundPolicy, bootstrap, compile, render};

/// A binary of the upstream set (see testkit), `None` when there is none.
fn upstream_binary(name: &str, env: &str) -> Option<PathBuf> {
    meshkeeper_testkit::upstream_binary(name, env)
        .inspect_err(|why| eprintln!("{why}"))
        .ok()
}

/// Writes each resource as its own discovery file (so one resource's
/// problem does not hide the others') and runs envoycheck on them all.
/// Returns the problems.
fn envoycheck(
    checker: &std::path::Path,
    dir: &std::path::Path,
    config: &serde_json::Value,
) -> Vec<String> {
    let types = [
        ("listeners", "envoy.config.listener.v3.Listener"),
        ("routes", "envoy.config.route.v3.RouteConfiguration"),
        ("clusters", "envoy.config.cluster.v3.Cluster"),
        (
            "endpoints",
            "envoy.config.endpoint.v3.ClusterLoadAssignment",
        ),
    ];
    std::fs::create_dir_all(dir).unwrap();
    let mut files = Vec::new();
    for (key, type_name) in types {
        for (i, resource) in config[key].as_array().into_iter().flatten().enumerate() {
            let mut packed = resource.clone();
            packed["@type"] = format!("type.googleapis.com/{type_name}").into();
            let path = dir.join(format!("{key}-{i}.json"));
            let body = serde_json::json!({"resources": [packed]});
            std::fs::write(&path, serde_json::to_string(&body).unwrap()).unwrap();
            files.push(path);
        }
    }
    let out = Command::new(checker).args(&files).output().unwrap();
    if out.status.success() {
        return Vec::new();
    }
    let mut problems = Vec::new();
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        let Some(problem) = line.strip_prefix("envoycheck: ") else {
            continue; // the excerpt under a decoding error
        };
        if problem.ends_with("file(s)") {
            continue; // the summary
        }
        problems.push(problem.to_string());
    }
    problems
}

#[test]
fn envoy_accepts_every_bookinfo_configuration() {
    let envoycheck_binary = upstream_binary("envoycheck", "MESHKEEPER_ENVOYCHECK");
    if envoycheck_binary.is_none() {
        let message =
            "no envoycheck: set MESHKEEPER_ENVOYCHECK or make e2e/bin/build-upstream work";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{message}");
        }
        eprintln!("envoycheck skipped: {message}");
    }
    let Some(envoy) = upstream_binary("envoy", "MESHKEEPER_ENVOY") else {
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
            if let Some(checker) = envoycheck_binary.as_deref() {
                let resources = config.to_json().unwrap();
                let problems = envoycheck(
                    checker,
                    &dir.path().join(format!("{name}-{app}-resources")),
                    &resources,
                );
                rejected.extend(
                    problems
                        .into_iter()
                        .map(|p| format!("{name} ({app}), envoycheck: {p}")),
                );
            }
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
