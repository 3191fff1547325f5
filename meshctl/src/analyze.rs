//! Offline analysis: every admission check of the validating webhook, run on
//! manifests (`meshctl analyze`). The objects are judged together, so a
//! VirtualService is checked against the DestinationRules in the same files.

use std::path::{Path, PathBuf};

use meshkeeper_crds::networking::{KINDS, NetworkingObject};
use meshkeeper_crds::parse;
use meshkeeper_webhook::validate::index::Index;
use meshkeeper_webhook::validate::{self, Finding, Severity};
use serde_json::Value;

/// One finding, with where it came from.
#[derive(Debug)]
pub struct Report {
    pub file: PathBuf,
    /// `Kind namespace/name`.
    pub object: String,
    pub finding: Finding,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.finding.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{level} {} {} ({}): {}: {}",
            self.finding.code,
            self.object,
            self.file.display(),
            self.finding.path,
            self.finding.message
        )
    }
}

/// A networking object read from a file, its namespace filled in.
struct Loaded {
    file: PathBuf,
    label: String,
    object: NetworkingObject,
}

/// Analyzes every `.yaml`/`.yml`/`.json` file under `paths`. Documents that
/// are not networking.istio.io objects are ignored; ones that do not decode
/// are reported as errors (code MK0001) with their field path.
pub fn analyze(paths: &[PathBuf], default_namespace: &str) -> Result<Vec<Report>, String> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files)?;
    }
    files.sort();
    let mut reports = Vec::new();
    let mut loaded = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        let docs = parse::yaml_documents(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        for mut doc in docs {
            if !is_networking(&doc) {
                continue;
            }
            if doc["metadata"]["namespace"].as_str().is_none() && doc["metadata"].is_object() {
                doc["metadata"]["namespace"] = Value::String(default_namespace.to_string());
            }
            let label = label_of(&doc);
            match NetworkingObject::from_value(&doc) {
                Ok(object) => loaded.push(Loaded {
                    file: file.clone(),
                    label,
                    object,
                }),
                Err(e) => reports.push(Report {
                    file: file.clone(),
                    object: label,
                    finding: Finding::error(
                        validate::Check::ObjectRules,
                        "MK0001",
                        e.path().unwrap_or("(document)"),
                        format!("does not decode: {e}"),
                    ),
                }),
            }
        }
    }
    let index = index_of(&loaded);
    for item in &loaded {
        reports.extend(
            validate::findings(&item.object, &index)
                .into_iter()
                .map(|finding| Report {
                    file: item.file.clone(),
                    object: item.label.clone(),
                    finding,
                }),
        );
    }
    Ok(reports)
}

fn index_of(loaded: &[Loaded]) -> Index {
    let mut index = Index::default();
    for item in loaded {
        match &item.object {
            NetworkingObject::DestinationRule(dr) => index.upsert_destination_rule(dr),
            NetworkingObject::VirtualService(vs) => index.upsert_virtual_service(vs),
            _ => {}
        }
    }
    index
}

fn is_networking(doc: &Value) -> bool {
    let group = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    group.starts_with("networking.istio.io/") && KINDS.contains(&kind)
}

fn label_of(doc: &Value) -> String {
    format!(
        "{} {}/{}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["namespace"].as_str().unwrap_or("?"),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    if path.is_dir() {
        let entries =
            std::fs::read_dir(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("reading {}: {e}", path.display()))?;
            collect(&entry.path(), out)?;
        }
    } else if path.is_file() {
        let manifest = path
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
        if manifest {
            out.push(path.to_path_buf());
        }
    } else {
        return Err(format!("{} does not exist", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("meshctl-analyze-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const DR: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\nspec:\n  host: reviews\n  subsets:\n  - name: v1\n    labels:\n      version: v1\n";

    #[test]
    fn objects_in_different_files_are_judged_together() {
        let dir = temp_dir("together");
        write(&dir, "dr.yaml", DR);
        write(
            &dir,
            "vs.yaml",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination:\n        host: reviews\n        subset: v9\n",
        );
        write(&dir, "notes.txt", "not a manifest");
        let reports = analyze(std::slice::from_ref(&dir), "default").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let errors: Vec<_> = reports
            .iter()
            .filter(|r| r.finding.severity == Severity::Error)
            .collect();
        assert_eq!(errors.len(), 1, "{reports:?}");
        assert_eq!(errors[0].finding.code, "MK0201");
        assert_eq!(errors[0].object, "VirtualService default/reviews");
        assert_eq!(
            errors[0].finding.path,
            "spec.http[0].route[0].destination.subset"
        );
    }

    #[test]
    fn undecodable_documents_are_errors_with_their_path() {
        let dir = temp_dir("decode");
        write(
            &dir,
            "bad.yaml",
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: r\nspec:\n  host: r\n  trafficPolicy:\n    tls:\n      mode: STRICT\n",
        );
        let reports = analyze(&[dir.join("bad.yaml")], "default").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].finding.code, "MK0001");
        assert_eq!(reports[0].finding.path, "spec.trafficPolicy.tls.mode");
        assert!(reports[0].to_string().contains("STRICT"));
    }

    #[test]
    fn missing_path_is_an_error() {
        assert!(analyze(&[PathBuf::from("/nonexistent/meshkeeper")], "default").is_err());
    }

    #[test]
    fn the_bookinfo_pair_is_clean_and_every_sample_passes_its_own_rules() {
        let samples = meshkeeper_testkit::corpus_dir()
            .unwrap()
            .join("istio-samples");
        let networking = samples.join("bookinfo/networking");
        let pair = [
            networking.join("destination-rule-all.yaml"),
            networking.join("virtual-service-all-v1.yaml"),
        ];
        let reports = analyze(&pair, "default").unwrap();
        assert!(reports.is_empty(), "{reports:#?}");

        // All samples at once: they are alternatives (several define the
        // DestinationRule `details` differently), so only the rules that
        // judge one object alone must hold for every one of them.
        let reports = analyze(&[samples], "default").unwrap();
        let errors: Vec<String> = reports
            .iter()
            .filter(|r| r.finding.severity == Severity::Error)
            .filter(|r| r.finding.check == validate::Check::ObjectRules)
            .map(ToString::to_string)
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }
}
