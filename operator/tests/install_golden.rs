#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Golden files of what the operator installs: every object of a typical
//! revision, and the mesh-wide objects, as YAML documents in apply order.
//!
//! Refresh after an intended change:
//! `UPDATE_GOLDEN=1 cargo test -p meshkeeper-operator --test install_golden`

use std::path::PathBuf;

use meshkeeper_crds::meshkeeper::mesh::Mesh;
use meshkeeper_crds::meshkeeper::mesh_revision::MeshRevision;
use meshkeeper_operator::install::{
    Desired, Images, MeshInput, RevisionInput, mesh_objects, revision_objects,
};
use meshkeeper_operator::names;
use serde_json::json;

const NAMESPACE: &str = "meshkeeper-system";
const CA: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";

/// A RevisionBased upgrade in progress: 1.2.0 still serves, 1.3.0 is
/// active, `prod` is pinned to the old revision and `default` follows the
/// active one.
fn mesh() -> Mesh {
    serde_json::from_value(json!({
        "apiVersion": "meshkeeper.io/v1alpha1",
        "kind": "Mesh",
        "metadata": {"name": "default", "uid": "6f1c0f4e-0000-4000-8000-000000000001"},
        "spec": {
            "version": "1.3.0",
            "updateStrategy": {"type": "RevisionBased"},
            "revisionTags": [{"name": "default"}, {"name": "prod", "revision": "default-1-2-0"}],
            "webhook": {"replicas": 2, "failurePolicy": "Fail", "timeoutSeconds": 10}
        }
    }))
    .unwrap()
}

fn revision(version: &str, uid: &str, tags: &[&str]) -> MeshRevision {
    let name = format!("default-{}", version.replace('.', "-"));
    serde_json::from_value(json!({
        "apiVersion": "meshkeeper.io/v1alpha1",
        "kind": "MeshRevision",
        "metadata": {"name": name, "uid": uid},
        "spec": {
            "mesh": "default",
            "version": version,
            "tags": tags,
            "proxy": {"image": "docker.io/envoyproxy/envoy:v1.36.2"},
            "webhook": {"replicas": 2, "failurePolicy": "Fail", "timeoutSeconds": 10}
        }
    }))
    .unwrap()
}

fn render(objects: &[Desired]) -> String {
    let documents: Vec<&serde_json::Value> = objects.iter().map(|d| &d.object).collect();
    serde_saphyr::to_string_multiple(&documents).unwrap()
}

fn check(file: &str, rendered: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/install");
    let path = dir.join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, rendered).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert_eq!(rendered, expected, "{} is stale", path.display());
}

#[test]
fn typical_revision() {
    let revision = revision(
        "1.3.0",
        "6f1c0f4e-0000-4000-8000-000000000013",
        &["default"],
    );
    let tls_secret = names::webhook_tls_secret("default-1-3-0");
    let objects = revision_objects(&RevisionInput {
        revision: &revision,
        namespace: NAMESPACE,
        images: &Images::default(),
        ca_bundle: Some(CA),
        tls_secret: &tls_secret,
    })
    .unwrap();
    check("revision.yaml", &render(&objects));
}

#[test]
fn mesh_wide() {
    let active = revision(
        "1.3.0",
        "6f1c0f4e-0000-4000-8000-000000000013",
        &["default"],
    );
    let old = revision("1.2.0", "6f1c0f4e-0000-4000-8000-000000000012", &["prod"]);
    let objects = mesh_objects(&MeshInput {
        mesh: &mesh(),
        namespace: NAMESPACE,
        active: &active,
        revisions: &[old],
        ca_bundle: Some(CA),
    })
    .unwrap();
    check("mesh.yaml", &render(&objects));
}

/// The golden YAML reads back as the same objects, so what is compared is
/// what the API server receives.
#[test]
fn golden_yaml_reads_back_as_the_objects() {
    let revision = revision(
        "1.3.0",
        "6f1c0f4e-0000-4000-8000-000000000013",
        &["default"],
    );
    let objects = revision_objects(&RevisionInput {
        revision: &revision,
        namespace: NAMESPACE,
        images: &Images::default(),
        ca_bundle: Some(CA),
        tls_secret: "meshkeeper-webhook-default-1-3-0-tls",
    })
    .unwrap();
    let parsed: Vec<serde_json::Value> = serde_saphyr::from_multiple(&render(&objects)).unwrap();
    let originals: Vec<serde_json::Value> = objects.into_iter().map(|d| d.object).collect();
    assert_eq!(parsed, originals);
}
