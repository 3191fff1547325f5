//! Writes every CRD to `crds/generated/<name>.yaml` and removes files there
//! that no longer correspond to a CRD. The test `generated_crds_are_current`
//! fails when this has not been run after a change to the types.

use std::{fs, path::PathBuf};

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("generated");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let wanted = meshkeeper_crds::crd::rendered().context("rendering CRD YAML")?;

    for (name, yaml) in &wanted {
        let path = dir.join(name);
        if fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
            fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
            println!("updated {name}");
        }
    }
    for entry in fs::read_dir(&dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && !wanted.contains_key(&name) {
            fs::remove_file(dir.join(&name))?;
            println!("removed {name}");
        }
    }
    Ok(())
}
