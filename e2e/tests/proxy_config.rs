//! The operator's per-namespace proxy configuration, proven against Envoy's
//! own API: the files `meshkeeper_operator::proxy` generates are written to a
//! folder and checked by envoycheck (e2e/upstream/envoycheck, built from
//! Envoy's go-control-plane module by build-upstream), which decodes them
//! strictly and runs Envoy's validation rules on every message. No cluster
//! is needed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is a failed assertion

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use meshkeeper_crds::meshkeeper::mesh::{ProxyDefaults, ProxyLogLevel};
use meshkeeper_crds::networking::proxy_config::{ProxyConfig, ProxyConfigSpec};
use meshkeeper_e2e::repo_root;
use meshkeeper_operator::proxy::{
    BOOTSTRAP_FILE, CLUSTERS_FILE, LISTENERS_FILE, SETTINGS_FILE, config_map_data,
    effective_settings,
};
use serde_json::{Value, json};

/// The checker from the upstream binaries' folder. Missing (no Go, no
/// module proxy) is a failure under CI and a skip, said loudly, elsewhere.
fn envoycheck() -> Option<PathBuf> {
    let found = Command::new(repo_root().join("e2e/bin/build-upstream"))
        .output()
        .map_err(|e| e.to_string())
        .and_then(|out| {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let dir = stdout.lines().last().unwrap_or_default().trim();
            let checker = Path::new(dir).join("envoycheck");
            if out.status.success() && checker.is_file() {
                Ok(checker)
            } else {
                Err(format!(
                    "build-upstream gave no envoycheck ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        });
    match found {
        Ok(checker) => Some(checker),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("the Envoy API checker is required under CI: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: the Envoy API checker is not available: {why}");
            None
        }
    }
}

/// Runs the checker on the Envoy files of `dir`: success, or its stderr.
fn check(checker: &Path, dir: &Path) -> Result<String, String> {
    let out = Command::new(checker)
        .current_dir(dir)
        .args(["-bootstrap", BOOTSTRAP_FILE, LISTENERS_FILE, CLUSTERS_FILE])
        .output()
        .expect("envoycheck runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn write_files(dir: &Path, data: &BTreeMap<String, String>) {
    for (file, text) in data {
        std::fs::write(dir.join(file), text).unwrap();
    }
}

fn proxy_config(namespace: &str, name: &str, created: i64, spec: Value) -> ProxyConfig {
    ProxyConfig {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
            ..ObjectMeta::default()
        },
        spec: serde_json::from_value::<ProxyConfigSpec>(spec).unwrap(),
        status: None,
    }
}

struct Case {
    name: &'static str,
    defaults: ProxyDefaults,
    root: Vec<ProxyConfig>,
    namespace: Vec<ProxyConfig>,
    /// What the settings file must say (a subset of it).
    expect: Value,
}

fn cases() -> Vec<Case> {
    let odd_environment = json!({
        "MULTI_LINE": "first\nsecond\n",
        "QUOTES": "it's \"quoted\"",
        "YAML_LOOKALIKES": "yes",
        "COLON": "key: value # not a comment",
        "EMPTY": "",
        "UNICODE": "grüße 🚀",
        "LONG": "word ".repeat(40),
        "SPACE IN NAME": "allowed by Kubernetes",
        "ISTIO_META_DNS_CAPTURE": "true",
        "NUMERIC": "0x1F",
    });
    vec![
        Case {
            name: "mesh defaults only",
            defaults: ProxyDefaults::default(),
            root: vec![],
            namespace: vec![],
            expect: json!({"concurrency": 2, "logLevel": "warning", "environment": {}}),
        },
        Case {
            name: "Mesh choices",
            defaults: ProxyDefaults {
                image: Some("registry.local:5000/envoy:v1.36.2".into()),
                concurrency: Some(0),
                log_level: Some(ProxyLogLevel::Trace),
                ..ProxyDefaults::default()
            },
            root: vec![],
            namespace: vec![],
            expect: json!({"concurrency": 0, "logLevel": "trace",
                           "image": "registry.local:5000/envoy:v1.36.2"}),
        },
        Case {
            name: "root override",
            defaults: ProxyDefaults::default(),
            root: vec![proxy_config(
                "istio-system",
                "mesh-wide",
                1,
                json!({"concurrency": 3, "image": {"imageType": "distroless"},
                       "environmentVariables": {"A": "root"}}),
            )],
            namespace: vec![],
            expect: json!({"concurrency": 3, "imageType": "distroless", "environment": {"A": "root"}}),
        },
        Case {
            name: "namespace override",
            defaults: ProxyDefaults::default(),
            root: vec![proxy_config(
                "istio-system",
                "mesh-wide",
                1,
                json!({"concurrency": 3, "environmentVariables": {"A": "root", "B": "root"}}),
            )],
            namespace: vec![
                proxy_config(
                    "app",
                    "ns",
                    2,
                    json!({"concurrency": 1, "image": {"imageType": "debug"},
                           "environmentVariables": {"B": "ns"}}),
                ),
                proxy_config("app", "ns-duplicate", 3, json!({"concurrency": 9})),
            ],
            expect: json!({"concurrency": 1, "imageType": "debug",
                           "environment": {"A": "root", "B": "ns"}}),
        },
        Case {
            name: "odd environment values",
            defaults: ProxyDefaults::default(),
            root: vec![],
            namespace: vec![proxy_config(
                "app",
                "odd",
                1,
                json!({"environmentVariables": odd_environment}),
            )],
            expect: json!({"environment": odd_environment}),
        },
    ]
}

#[test]
fn generated_files_pass_envoys_own_decoding_and_validation() {
    let Some(checker) = envoycheck() else { return };
    for case in cases() {
        let settings = effective_settings(&case.defaults, &case.root, &case.namespace)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let data = config_map_data("app", "default", &settings).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), &data);

        let out = check(&checker, dir.path())
            .unwrap_or_else(|err| panic!("{}: Envoy's API rejects the files:\n{err}", case.name));
        assert!(out.contains("3 file(s) valid"), "{}: {out}", case.name);

        // The settings file is not Envoy's: it must read back as written.
        let settings_file = meshkeeper_crds::parse::yaml_documents(&data[SETTINGS_FILE])
            .unwrap()
            .remove(0);
        for (key, want) in case.expect.as_object().unwrap() {
            assert_eq!(&settings_file[key], want, "{}: {key}", case.name);
        }
    }
}

/// The checker is not vacuous: a listener with a field Envoy does not know,
/// a port out of range, or a filter's config breaking Envoy's rules each
/// make it fail, naming the file and the field.
#[test]
fn the_checker_rejects_what_envoy_would_reject() {
    let Some(checker) = envoycheck() else { return };
    let settings = effective_settings(&ProxyDefaults::default(), &[], &[]).unwrap();
    let data = config_map_data("app", "default", &settings).unwrap();
    let broken = [
        (
            LISTENERS_FILE,
            "use_original_dst: true\n",
            "use_original_dst: true\n  use_orignal_dst: true\n",
            "unknown field \"use_orignal_dst\"",
        ),
        (
            LISTENERS_FILE,
            "port_value: 15006",
            "port_value: 70000",
            "SocketAddress.PortValue: value must be less than or equal to 65535",
        ),
        (
            LISTENERS_FILE,
            "stat_prefix: InboundPassthroughCluster",
            "stat_prefix: \"\"",
            "resources[1] (Listener \"virtualInbound\").filter_chains[0].filters[0].typed_config: \
             invalid TcpProxy.StatPrefix",
        ),
        (
            CLUSTERS_FILE,
            "lb_policy: CLUSTER_PROVIDED",
            "lb_policy: ROUND_ROBIN_PLEASE",
            "invalid value for enum field lbPolicy",
        ),
        (
            BOOTSTRAP_FILE,
            "resource_api_version: V3",
            "resource_api_version: V3\n    watched: true",
            "unknown field \"watched\"",
        ),
    ];
    for (file, from, to, want) in broken {
        assert!(data[file].contains(from), "{file} has no {from:?}");
        let mut data = data.clone();
        let text = data[file].replacen(from, to, 1);
        data.insert(file.to_owned(), text);
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), &data);

        let err =
            check(&checker, dir.path()).expect_err(&format!("{file} with {to:?} must be rejected"));
        assert!(err.contains(&format!("envoycheck: {file}: ")), "{err}");
        assert!(err.contains(want), "{file}: expected {want:?} in:\n{err}");
    }
}
