//! Reading manifests for `meshctl analyze`: which files to read, and their
//! documents one at a time.
//!
//! A rendered chart easily holds thousands of documents, so a stream is
//! never parsed whole: serde-saphyr's streaming reader applies its limits
//! (nodes, nesting, scalar bytes, aliases) to each document and the caller
//! keeps only the documents it wants, so memory stays bounded by one
//! document plus what is kept. The whole input is capped at
//! [`MAX_INPUT_BYTES`].

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Largest input read from one file or from standard input.
pub const MAX_INPUT_BYTES: usize = 256 * 1024 * 1024;

/// Where manifests come from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

impl Source {
    /// `-` is standard input, as in kubectl.
    pub fn from_arg(path: &Path) -> Self {
        if path.as_os_str() == "-" {
            Source::Stdin
        } else {
            Source::File(path.to_path_buf())
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Stdin => f.write_str("stdin"),
            Source::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A path that could not be turned into sources.
#[derive(Debug, PartialEq, Eq)]
pub struct Unreadable {
    pub path: PathBuf,
    pub message: String,
}

/// The sources `args` name: `-` is standard input; a file named on the
/// command line is read whatever its extension (the user asked for it); in
/// a folder only `.yaml`, `.yml` and `.json` files are, recursively, so
/// READMEs and scripts beside manifests are left alone. Sorted per argument
/// so the output is stable; paths that cannot be read are returned apart so
/// the others are still analysed.
pub fn sources(args: &[PathBuf]) -> (Vec<Source>, Vec<Unreadable>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for arg in args {
        let source = Source::from_arg(arg);
        match source {
            Source::Stdin => found.push(Source::Stdin),
            Source::File(path) if path.is_dir() => {
                let mut files = Vec::new();
                walk(&path, &mut files, &mut problems);
                files.sort();
                found.extend(files.into_iter().map(Source::File));
            }
            Source::File(path) if path.exists() => found.push(Source::File(path)),
            Source::File(path) => problems.push(Unreadable {
                message: "does not exist".to_owned(),
                path,
            }),
        }
    }
    (found, problems)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, problems: &mut Vec<Unreadable>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(Unreadable {
                path: dir.to_path_buf(),
                message: format!("cannot be listed: {e}"),
            });
            return;
        }
    };
    for entry in entries {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, files, problems);
                } else if is_manifest_name(&path) {
                    files.push(path);
                }
            }
            Err(e) => problems.push(Unreadable {
                path: dir.to_path_buf(),
                message: format!("cannot be listed: {e}"),
            }),
        }
    }
}

fn is_manifest_name(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
}

/// Calls `each` with every document of a YAML (or JSON) stream, numbered
/// from 1, empty documents skipped. A document that does not parse is
/// passed as `Err`; after a syntax error the parser cannot find the next
/// document, so the stream ends there.
pub fn for_each_document<R: Read>(
    reader: &mut R,
    mut each: impl FnMut(usize, Result<Value, String>),
) {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_INPUT_BYTES),
        },
    };
    let documents = serde_saphyr::read_with_options::<_, Value>(reader, options);
    for (i, document) in documents.enumerate() {
        each(i + 1, document.map_err(|e| e.to_string()));
    }
}

/// The objects a document holds: itself, or the items of a `kind: List`
/// (or of a typed list such as `VirtualServiceList`, whose items may omit
/// their `apiVersion` and `kind`), recursively.
pub fn expand_lists(document: Value) -> Vec<Value> {
    let mut out = Vec::new();
    expand_into(document, &mut out);
    out
}

fn expand_into(document: Value, out: &mut Vec<Value>) {
    let kind = document["kind"].as_str().unwrap_or_default();
    let item_kind = match kind.strip_suffix("List") {
        Some(item_kind) if document["items"].is_array() => item_kind.to_owned(),
        _ => {
            out.push(document);
            return;
        }
    };
    let api_version = document["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let Value::Object(mut list) = document else {
        return;
    };
    let Some(Value::Array(items)) = list.remove("items") else {
        return;
    };
    for mut item in items {
        // A typed list (`VirtualServiceList`) names its items' type once.
        if let Some(object) = item.as_object_mut()
            && !item_kind.is_empty()
        {
            object
                .entry("apiVersion")
                .or_insert_with(|| Value::String(api_version.clone()));
            object
                .entry("kind")
                .or_insert_with(|| Value::String(item_kind.clone()));
        }
        expand_into(item, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(text: &[u8]) -> Vec<(usize, Result<Value, String>)> {
        let mut all = Vec::new();
        for_each_document(&mut std::io::Cursor::new(text), |i, d| all.push((i, d)));
        all
    }

    #[test]
    fn streams_more_than_a_thousand_documents() {
        let text: String = (0..3000).map(|i| format!("---\nn: {i}\n")).collect();
        let docs = read(text.as_bytes());
        assert_eq!(docs.len(), 3000);
        assert_eq!(docs[2999].1, Ok(json!({"n": 2999})));
    }

    #[test]
    fn a_syntax_error_is_reported_with_its_document() {
        let docs = read(b"a: 1\n---\nb: [1, 2\n");
        assert_eq!(docs[0], (1, Ok(json!({"a": 1}))));
        let (n, bad) = &docs[1];
        assert_eq!(*n, 2);
        assert!(bad.is_err(), "{bad:?}");
    }

    #[test]
    fn binary_content_does_not_parse() {
        let docs = read(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe");
        assert!(docs.iter().any(|(_, d)| d.is_err()), "{docs:?}");
    }

    #[test]
    fn lists_are_expanded_and_typed_lists_type_their_items() {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "a"}},
            {"apiVersion": "v1", "kind": "List", "items": [{"kind": "Service", "apiVersion": "v1"}]},
        ]});
        let items = expand_lists(list);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["kind"], "Gateway");
        assert_eq!(items[1]["kind"], "Service");

        let typed = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualServiceList",
            "items": [{"metadata": {"name": "r"}}]});
        let items = expand_lists(typed);
        assert_eq!(items[0]["kind"], "VirtualService");
        assert_eq!(items[0]["apiVersion"], "networking.istio.io/v1");

        // `kind: List` without items is an ordinary (odd) object.
        let odd = json!({"kind": "List"});
        assert_eq!(expand_lists(odd.clone()), [odd]);
    }

    #[test]
    fn named_files_are_read_whatever_their_extension_folders_only_manifests() {
        let dir = std::env::temp_dir().join(format!("meshctl-sources-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/a.yaml"), "").unwrap();
        std::fs::write(dir.join("notes.txt"), "").unwrap();
        std::fs::write(dir.join("b.json"), "").unwrap();
        let args = [
            dir.clone(),
            dir.join("notes.txt"),
            PathBuf::from("-"),
            dir.join("missing.yaml"),
        ];
        let (found, problems) = sources(&args);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            found,
            [
                Source::File(dir.join("b.json")),
                Source::File(dir.join("sub/a.yaml")),
                Source::File(dir.join("notes.txt")),
                Source::Stdin,
            ]
        );
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, dir.join("missing.yaml"));
    }
}
