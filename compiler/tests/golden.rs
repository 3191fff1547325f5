//! Golden files: the productpage sidecar's configuration (listeners,
//! routes, clusters, endpoints as Envoy JSON) for Bookinfo with each of its
//! routing samples, and the ingress gateway's for the gateway scenarios. Refresh with
//! `UPDATE_GOLDEN=1 cargo test -p meshkeeper-compiler --test golden`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use meshkeeper_compiler::{MeshSettings, compile, endpoints_for_cluster};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/bookinfo")
}

#[test]
fn bookinfo_samples_match_their_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let dir = golden_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mut stale = Vec::new();
    let sidecars = common::scenarios().into_iter().map(|s| (s, false));
    let gateways = common::gateway_scenarios().into_iter().map(|s| (s, true));
    for ((name, docs), gateway) in sidecars.chain(gateways) {
        let snapshot = common::snapshot(MeshSettings::default(), &docs);
        let proxy = if gateway {
            common::ingress_gateway()
        } else {
            common::productpage(&snapshot)
        };
        let config = compile(&snapshot, &proxy).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The EDS-only path gives every assignment the full compile gives.
        for assignment in &config.endpoints {
            let again = endpoints_for_cluster(&snapshot, &proxy, &assignment.cluster_name)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                again.as_ref(),
                Some(assignment),
                "{name}: {}",
                assignment.cluster_name
            );
        }
        let mut json = config.to_json().unwrap();
        // Warnings are part of what a person sees: a dropped rule shows.
        if !config.warnings.is_empty() {
            json["warnings"] = config
                .warnings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .into();
        }
        let text = serde_json::to_string_pretty(&json).unwrap() + "\n";
        let path = dir.join(format!("{name}.json"));
        if update {
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "golden files differ or are missing (refresh with UPDATE_GOLDEN=1 cargo test -p meshkeeper-compiler --test golden, then review the diff):\n{}",
        stale.join("\n")
    );
}
