//! The Helm chart installs exactly the CRDs the Rust types generate: it reads
//! crds/generated/ rather than keeping a copy of its own.

use anyhow::ensure;
use meshkeeper_e2e::{repo_root, same_json, upstream};

fn render(extra: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
    let chart = repo_root().join("charts/meshkeeper");
    let chart = chart.to_string_lossy();
    let mut args = vec!["template", "meshkeeper", chart.as_ref()];
    args.extend_from_slice(extra);
    let out = upstream("helm", &args)?;
    Ok(meshkeeper_crds::parse::yaml_documents(&out)?)
}

#[test]
fn chart_renders_the_generated_crds_and_keeps_them_on_uninstall() -> anyhow::Result<()> {
    let rendered = render(&[])?;
    let mut expected: Vec<serde_json::Value> = meshkeeper_crds::crd::all()
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    ensure!(
        rendered.len() == expected.len(),
        "rendered {} CRDs, expected {}",
        rendered.len(),
        expected.len()
    );

    let mut rendered = rendered;
    for doc in &mut rendered {
        let annotations = doc["metadata"]["annotations"].take();
        ensure!(
            annotations["helm.sh/resource-policy"] == "keep",
            "{} lacks helm.sh/resource-policy: keep",
            doc["metadata"]["name"]
        );
        doc["metadata"]
            .as_object_mut()
            .map(|m| m.remove("annotations"));
    }
    let key = |v: &serde_json::Value| {
        v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    rendered.sort_by_key(key);
    expected.sort_by_key(key);
    for (r, e) in rendered.iter().zip(&expected) {
        ensure!(
            same_json(r, e),
            "chart CRD {} differs from the generated one",
            key(e)
        );
    }
    Ok(())
}

#[test]
fn chart_can_leave_crds_to_someone_else() -> anyhow::Result<()> {
    let rendered = render(&["--set", "crds.install=false"])?;
    ensure!(rendered.is_empty(), "rendered {} documents", rendered.len());
    Ok(())
}

#[test]
fn chart_lints_strictly() -> anyhow::Result<()> {
    let chart = repo_root().join("charts/meshkeeper");
    upstream("helm", &["lint", "--strict", &chart.to_string_lossy()])?;
    Ok(())
}
