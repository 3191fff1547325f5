//! Writes every CRD to `crds/generated/<name>.yaml` and removes files there
//! that no longer correspond to a CRD. `--check` only reports differences.

use std::{collections::BTreeSet, fs, path::PathBuf};

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let check = std::env::args().any(|a| a == "--check");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("generated");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let mut wanted = BTreeSet::new();
    let mut stale = Vec::new();
    for crd in meshkeeper_crds::crd::all() {
        let name = meshkeeper_crds::crd::file_name(&crd);
        let yaml = meshkeeper_crds::crd::to_yaml(&crd).context("rendering CRD YAML")?;
        let path = dir.join(&name);
        if fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
            stale.push(name.clone());
            if !check {
                fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
            }
        }
        wanted.insert(name);
    }
    for entry in fs::read_dir(&dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && !wanted.contains(&name) {
            stale.push(name.clone());
            if !check {
                fs::remove_file(dir.join(&name))?;
            }
        }
    }
    if check && !stale.is_empty() {
        bail!(
            "crds/generated is stale ({}); run `cargo run -p meshkeeper-crds --bin crdgen`",
            stale.join(", ")
        );
    }
    for name in &stale {
        println!("updated {name}");
    }
    Ok(())
}
