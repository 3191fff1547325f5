//! Helpers for tests that read the shared sample corpus (real manifests from
//! the Istio project). The corpus is never copied into this repository; tests
//! find it through one setting, `MESHKEEPER_CORPUS` (default
//! `../shared/corpus` from the repository root), and fail when it is missing:
//! a test that silently passes on no data proves nothing.

use std::path::{Path, PathBuf};

use meshkeeper_crds::parse::{self, ParseError};

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error(
        "sample corpus not found at {0} (set MESHKEEPER_CORPUS to the folder holding istio-samples/)"
    )]
    Missing(PathBuf),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: ParseError },
}

/// The repository root (this crate lives one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The corpus folder, from `MESHKEEPER_CORPUS` or the default.
pub fn corpus_dir() -> Result<PathBuf, CorpusError> {
    let dir = match std::env::var_os("MESHKEEPER_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => repo_root().join("../shared/corpus"),
    };
    if dir.join("istio-samples").is_dir() {
        Ok(dir)
    } else {
        Err(CorpusError::Missing(dir))
    }
}

/// One YAML document of a corpus file.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: PathBuf,
    pub value: serde_json::Value,
}

impl Document {
    pub fn api_version(&self) -> &str {
        self.value["apiVersion"].as_str().unwrap_or_default()
    }

    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }
}

/// Every document of every `.yaml` file under `istio-samples/<sub>`, in a
/// stable order.
pub fn documents(sub: &str) -> Result<Vec<Document>, CorpusError> {
    let root = corpus_dir()?.join("istio-samples").join(sub);
    let mut files = Vec::new();
    collect_yaml_files(&root, &mut files)?;
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| CorpusError::Read {
            path: file.clone(),
            source,
        })?;
        let values = parse::yaml_documents(&text).map_err(|source| CorpusError::Parse {
            path: file.clone(),
            source,
        })?;
        docs.extend(values.into_iter().map(|value| Document {
            file: file.clone(),
            value,
        }));
    }
    Ok(docs)
}

/// Every `networking.istio.io` document in the corpus.
pub fn networking_documents() -> Result<Vec<Document>, CorpusError> {
    Ok(documents("")?
        .into_iter()
        .filter(|d| d.api_version().starts_with("networking.istio.io/"))
        .collect())
}

fn collect_yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CorpusError> {
    let read_err = |source| CorpusError::Read {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.is_dir() {
            collect_yaml_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// A binary the tests run from the upstream set: `env` (a path) when set,
/// else `name` in the folder `e2e/bin/build-upstream` prints last (it builds
/// or installs what is missing: Envoy from PyPI, envoycheck from Go).
/// The error says why there is none; callers fail under `CI=true`.
pub fn upstream_binary(name: &str, env: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    let script = repo_root().join("e2e/bin/build-upstream");
    let output = std::process::Command::new(&script)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout.lines().last().unwrap_or_default().trim();
    let binary = PathBuf::from(dir).join(name);
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!("{} does not exist (set {env})", binary.display()))
    }
}

/// The real Envoy (1.40, from PyPI): `MESHKEEPER_ENVOY` or the upstream set.
pub fn envoy_binary() -> Result<PathBuf, String> {
    upstream_binary("envoy", "MESHKEEPER_ENVOY")
}
