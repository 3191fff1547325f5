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

/// A binary from `env` (a path), else from the folder that
/// `e2e/bin/build-upstream` prints on its last line.
fn upstream_binary(name: &str, env: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
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
    Some(PathBuf::from(dir).join(name)).filter(|p| p.is_file())
}

/// Extensions the compiler emits that envoycheck (e2e/upstream/envoycheck,
/// owned by the e2e suite) does not register yet: a resource holding one
/// cannot be decoded by it, so it is reported as unchecked instead of
/// failing the test. Every other problem fails. Remove an entry once
/// envoycheck imports the package.
const NOT_IN_ENVOYCHECK: [&str; 4] = [
    "envoy.extensions.filters.http.fault.v3.HTTPFault",
    "envoy.extensions.filters.http.cors.v3.Cors",
    "envoy.extensions.filters.http.cors.v3.CorsPolicy",
    "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
];

/// Writes each resource as its own discovery file (so one resource's
/// problem does not hide the others') and runs envoycheck on them all.
/// Returns the problems, and the resources it could not decode for a
/// type in [`NOT_IN_ENVOYCHECK`].
fn envoycheck(
    checker: &std::path::Path,
    dir: &std::path::Path,
    config: &serde_json::Value,
) -> (Vec<String>, Vec<String>) {
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
        return (Vec::new(), Vec::new());
    }
    let mut problems = Vec::new();
    let mut unchecked = Vec::new();
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        let Some(problem) = line.strip_prefix("envoycheck: ") else {
            continue; // the excerpt under a decoding error
        };
        if problem.ends_with("file(s)") {
            continue; // the summary
        }
        if NOT_IN_ENVOYCHECK
            .iter()
            .any(|t| problem.contains(&format!("unable to resolve \"type.googleapis.com/{t}\"")))
        {
            unchecked.push(problem.to_string());
        } else {
            problems.push(problem.to_string());
        }
    }
    (problems, unchecked)
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
    let mut unchecked_resources = 0;
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
                let (problems, unchecked) = envoycheck(
                    checker,
                    &dir.path().join(format!("{name}-{app}-resources")),
                    &resources,
                );
                unchecked_resources += unchecked.len();
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
    if unchecked_resources > 0 {
        eprintln!(
            "envoycheck could not decode {unchecked_resources} resource(s): they hold one of {}, which e2e/upstream/envoycheck does not register yet (Envoy itself validated them)",
            NOT_IN_ENVOYCHECK.join(", ")
        );
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
