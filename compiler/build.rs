//! Copies the protobuf descriptor set that the `envoy-types` crate ships
//! (`src/generated/types.bin`, every Envoy v3 message) into OUT_DIR, so the
//! library can render its typed output as Envoy JSON with prost-reflect.
//! envoy-types does not export the bytes, so the file is found through
//! `cargo metadata` (the package's manifest path), or taken from
//! `ENVOY_TYPES_DESCRIPTOR` when set (vendored or offline builds).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ENVOY_TYPES_DESCRIPTOR");
    let source = match std::env::var_os("ENVOY_TYPES_DESCRIPTOR") {
        Some(path) => PathBuf::from(path),
        None => match locate_with_cargo_metadata() {
            Ok(path) => path,
            Err(message) => fail(&message),
        },
    };
    println!("cargo:rerun-if-changed={}", source.display());
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("envoy_types.bin");
    if let Err(e) = std::fs::copy(&source, &out) {
        fail(&format!(
            "copying {} to {}: {e}",
            source.display(),
            out.display()
        ));
    }
}

fn fail(message: &str) -> ! {
    eprintln!(
        "meshkeeper-compiler build: {message}\n\
         set ENVOY_TYPES_DESCRIPTOR to envoy-types' src/generated/types.bin"
    );
    std::process::exit(1)
}

fn locate_with_cargo_metadata() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default();
    let manifest = Path::new(&manifest_dir).join("Cargo.toml");
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(&manifest)
        .output()
        .map_err(|e| format!("running cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("reading cargo metadata: {e}"))?;
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let package = packages
        .iter()
        .find(|p| p["name"] == "envoy-types")
        .ok_or("envoy-types is not among the resolved packages")?;
    let manifest_path = package["manifest_path"]
        .as_str()
        .ok_or("envoy-types has no manifest_path")?;
    let path = Path::new(manifest_path)
        .parent()
        .ok_or("envoy-types' manifest_path has no folder")?
        .join("src/generated/types.bin");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{} does not exist", path.display()))
    }
}
