//! Offline analysis: every admission check of the validating webhook, run on
//! manifests (`meshctl analyze`). The objects are judged together, so a
//! VirtualService is checked against the DestinationRules in the same files
//! and, with `--cluster`, against those the cluster already holds.

use std::path::PathBuf;

use meshkeeper_crds::networking::{KINDS, NetworkingObject};
use meshkeeper_webhook::validate::index::Index;
use meshkeeper_webhook::validate::{self, Finding, Severity, subsets};
use serde_json::Value;

use crate::manifests::{self, Source};
use crate::workloads::{self, Workloads};

/// Where an analyzed object came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Stdin,
    Cluster,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Stdin => f.write_str("stdin"),
            Origin::Cluster => f.write_str("cluster"),
        }
    }
}

impl From<&Source> for Origin {
    fn from(source: &Source) -> Self {
        match source {
            Source::Stdin => Origin::Stdin,
            Source::File(path) => Origin::File(path.clone()),
        }
    }
}

/// One finding, with where it came from.
#[derive(Debug)]
pub struct Report {
    pub origin: Origin,
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
            self.finding.code, self.object, self.origin, self.finding.path, self.finding.message
        )
    }
}

/// A networking object read from a file, its namespace filled in.
struct Loaded {
    origin: Origin,
    label: String,
    object: NetworkingObject,
}

/// Analyzes the manifests `args` name (files, folders, `-` for standard
/// input; see [`manifests::sources`]) together with `cluster` (the objects a
/// cluster holds, as listed; empty when offline). Documents that are not
/// networking.istio.io objects are ignored; `kind: List` items count one by
/// one. Problems with the input are findings, never an early exit, so one
/// bad file does not hide the others': a path that cannot be read or a
/// document that does not parse (MK0002), a document that is not an object
/// (MK0002), an object without `apiVersion`/`kind` (MK0003, warning), a
/// networking object that does not decode (MK0001, with its field path).
/// Cluster objects that do not decode are warnings (they are skipped: the
/// files are what is being judged).
pub fn analyze(
    args: &[PathBuf],
    default_namespace: &str,
    cluster: &[Value],
    mut workloads: Workloads,
) -> Vec<Report> {
    let (sources, unreadable) = manifests::sources(args);
    let mut reports: Vec<Report> = unreadable
        .into_iter()
        .map(|u| input_error(Origin::File(u.path), "(file)", u.message))
        .collect();
    let (cluster_objects, cluster_reports) = decode_cluster(cluster);
    reports.extend(cluster_reports);
    let mut loaded = Vec::new();
    for source in &sources {
        read_source(
            source,
            default_namespace,
            &mut Read {
                loaded: &mut loaded,
                workloads: &mut workloads,
                reports: &mut reports,
            },
        );
    }
    reports.extend(judge(&cluster_objects, &loaded, &workloads));
    reports
}

/// Where the documents read go.
struct Read<'a> {
    loaded: &'a mut Vec<Loaded>,
    workloads: &'a mut Workloads,
    reports: &'a mut Vec<Report>,
}

/// Reads one source's networking objects into `loaded`, its Services and
/// Secrets into `workloads`, its problems into `reports`.
fn read_source(source: &Source, default_namespace: &str, into: &mut Read<'_>) {
    let Read {
        loaded,
        workloads,
        reports,
    } = into;
    let origin = Origin::from(source);
    let mut take = |number: usize, document: Result<Value, String>| match document {
        Err(message) => reports.push(input_error(
            origin.clone(),
            &format!("document {number}"),
            format!("does not parse as YAML or JSON: {message}"),
        )),
        Ok(document) => {
            for object in manifests::expand_lists(document) {
                match classify(&object) {
                    Shape::Networking => match load_document(&origin, object, default_namespace) {
                        Ok(item) => loaded.push(item),
                        Err(report) => reports.push(report),
                    },
                    Shape::OtherKind => match workloads::core_object(&object, default_namespace) {
                        Some(Ok(core)) => workloads.add(core),
                        Some(Err(message)) => reports.push(Report {
                            origin: origin.clone(),
                            object: label_of(&object),
                            finding: Finding::error(
                                validate::Check::ObjectRules,
                                "MK0001",
                                "(document)",
                                format!("does not decode: {message}"),
                            ),
                        }),
                        None => {}
                    },
                    Shape::Untyped => reports.push(Report {
                        origin: origin.clone(),
                        object: "(document)".to_owned(),
                        finding: Finding::warning(
                            validate::Check::ObjectRules,
                            NOT_AN_OBJECT,
                            format!("document {number}"),
                            "a mapping without `apiVersion` and `kind` is not a Kubernetes \
                             object and was skipped; add them if it is meant to be one",
                        ),
                    }),
                    Shape::NotAMapping(what) => reports.push(input_error(
                        origin.clone(),
                        &format!("document {number}"),
                        format!(
                            "is {what}, not a Kubernetes object (a mapping with `apiVersion`, \
                             `kind` and `metadata`): is this file a manifest?"
                        ),
                    )),
                }
            }
        }
    };
    match source {
        Source::Stdin => manifests::for_each_document(&mut std::io::stdin().lock(), &mut take),
        Source::File(path) => match std::fs::File::open(path) {
            Ok(mut file) => manifests::for_each_document(&mut file, &mut take),
            Err(e) => reports.push(input_error(
                origin.clone(),
                "(file)",
                format!("cannot be read: {e}"),
            )),
        },
    }
}

/// The input cannot be read or a document is not an object.
const UNREADABLE: &str = "MK0002";
/// A mapping that is not a Kubernetes object (no `apiVersion`/`kind`).
const NOT_AN_OBJECT: &str = "MK0003";

fn input_error(origin: Origin, path: &str, message: String) -> Report {
    Report {
        origin,
        object: "(input)".to_owned(),
        finding: Finding::error(validate::Check::ObjectRules, UNREADABLE, path, message),
    }
}

/// What a document is, as far as the analysis cares.
enum Shape {
    Networking,
    OtherKind,
    Untyped,
    NotAMapping(&'static str),
}

fn classify(document: &Value) -> Shape {
    match document {
        Value::Object(map) if map.contains_key("apiVersion") || map.contains_key("kind") => {
            if is_networking(document) {
                Shape::Networking
            } else {
                Shape::OtherKind
            }
        }
        Value::Object(_) => Shape::Untyped,
        Value::String(_) => Shape::NotAMapping("a plain string"),
        Value::Array(_) => Shape::NotAMapping("a sequence"),
        Value::Number(_) => Shape::NotAMapping("a number"),
        Value::Bool(_) => Shape::NotAMapping("a boolean"),
        Value::Null => Shape::NotAMapping("empty"),
    }
}

/// Decodes one file document, filling in the default namespace.
fn load_document(
    origin: &Origin,
    mut doc: Value,
    default_namespace: &str,
) -> Result<Loaded, Report> {
    if doc["metadata"]["namespace"].as_str().is_none() && doc["metadata"].is_object() {
        doc["metadata"]["namespace"] = Value::String(default_namespace.to_string());
    }
    let label = label_of(&doc);
    match NetworkingObject::from_value(&doc) {
        Ok(object) => Ok(Loaded {
            origin: origin.clone(),
            label,
            object,
        }),
        Err(e) => Err(Report {
            origin: origin.clone(),
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

/// Decodes the cluster's objects; an undecodable one is skipped with a
/// warning, since it is not what the user proposes to change.
fn decode_cluster(values: &[Value]) -> (Vec<NetworkingObject>, Vec<Report>) {
    let mut objects = Vec::new();
    let mut warnings = Vec::new();
    for value in values {
        match NetworkingObject::from_value(value) {
            Ok(object) => objects.push(object),
            Err(e) => warnings.push(Report {
                origin: Origin::Cluster,
                object: label_of(value),
                finding: Finding::warning(
                    validate::Check::ObjectRules,
                    "MK0001",
                    e.path().unwrap_or("(document)"),
                    format!("does not decode, left out of the analysis: {e}"),
                ),
            }),
        }
    }
    (objects, warnings)
}

/// Judges the files' objects against one index of the cluster's objects and
/// theirs. Only the files' objects are reported: the cluster's are context.
fn judge(cluster: &[NetworkingObject], files: &[Loaded], workloads: &Workloads) -> Vec<Report> {
    let file_objects: Vec<&NetworkingObject> = files.iter().map(|item| &item.object).collect();
    let mut index = index_of(cluster.iter().chain(file_objects.iter().copied()));
    workloads.fill(&mut index);
    // For DestinationRule edits: the cluster's VirtualServices the files
    // leave alone (a file VirtualService is judged itself, MK0201).
    let mut cluster_users = index.clone();
    for object in &file_objects {
        if let NetworkingObject::VirtualService(vs) = object {
            let namespace = vs.metadata.namespace.as_deref().unwrap_or_default();
            let name = vs.metadata.name.as_deref().unwrap_or_default();
            cluster_users.remove_virtual_service(namespace, name);
        }
    }
    files
        .iter()
        .flat_map(|item| {
            let mut found = validate::findings(&item.object, &index);
            found.extend(removed_subsets(&item.object, cluster, &cluster_users));
            found.into_iter().map(|finding| Report {
                origin: item.origin.clone(),
                object: item.label.clone(),
                finding,
            })
        })
        .collect()
}

/// A file DestinationRule that replaces one the cluster holds is an UPDATE:
/// judged as the webhook judges one, so dropping (or hiding) a subset that a
/// cluster VirtualService still routes to is reported (MK0202). `index`
/// holds every DestinationRule and the cluster's VirtualServices that no
/// file replaces.
fn removed_subsets(
    object: &NetworkingObject,
    cluster: &[NetworkingObject],
    index: &Index,
) -> Vec<Finding> {
    let NetworkingObject::DestinationRule(new) = object else {
        return Vec::new();
    };
    let same_rule = |candidate: &&NetworkingObject| match candidate {
        NetworkingObject::DestinationRule(old) => {
            old.metadata.namespace == new.metadata.namespace
                && old.metadata.name == new.metadata.name
        }
        _ => false,
    };
    match cluster.iter().find(same_rule) {
        Some(NetworkingObject::DestinationRule(old)) => {
            subsets::check_destination_rule_change(old, Some(new), index)
        }
        _ => Vec::new(),
    }
}

/// Indexes `objects` in order: a later object with the same kind,
/// namespace and name replaces an earlier one, which is how the files (the
/// proposed change, last) override what the cluster holds.
fn index_of<'a>(objects: impl IntoIterator<Item = &'a NetworkingObject>) -> Index {
    let mut index = Index::default();
    for object in objects {
        match object {
            NetworkingObject::DestinationRule(dr) => index.upsert_destination_rule(dr),
            NetworkingObject::VirtualService(vs) => index.upsert_virtual_service(vs),
            NetworkingObject::Gateway(gateway) => index.catalog_mut().upsert_gateway(gateway),
            NetworkingObject::ServiceEntry(entry) => {
                index.catalog_mut().upsert_service_entry(entry)
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
        let reports = analyze(
            std::slice::from_ref(&dir),
            "default",
            &[],
            Workloads::default(),
        );
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
        let reports = analyze(
            &[dir.join("bad.yaml")],
            "default",
            &[],
            Workloads::default(),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].finding.code, "MK0001");
        assert_eq!(reports[0].finding.path, "spec.trafficPolicy.tls.mode");
        assert!(reports[0].to_string().contains("STRICT"));
    }

    #[test]
    fn missing_path_is_an_error_and_the_other_files_are_still_analysed() {
        let dir = temp_dir("missing");
        write(&dir, "dr.yaml", DR);
        write(&dir, "vs.yaml", VS_TO_V9);
        let reports = analyze(
            &[PathBuf::from("/nonexistent/meshkeeper"), dir.clone()],
            "default",
            &[],
            Workloads::default(),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            codes(&reports),
            [
                ("MK0002", "(input)"),
                ("MK0201", "VirtualService default/reviews")
            ],
            "{reports:#?}"
        );
        assert_eq!(
            reports[0].origin,
            Origin::File("/nonexistent/meshkeeper".into())
        );
    }

    #[test]
    fn a_file_that_does_not_parse_is_reported_and_the_others_are_analysed() {
        let dir = temp_dir("unparsable");
        write(&dir, "a-broken.yaml", "kind: [unclosed\n");
        write(&dir, "dr.yaml", DR);
        write(&dir, "vs.yaml", VS_TO_V9);
        let reports = analyze(
            std::slice::from_ref(&dir),
            "default",
            &[],
            Workloads::default(),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            codes(&reports),
            [
                ("MK0002", "(input)"),
                ("MK0201", "VirtualService default/reviews")
            ],
            "{reports:#?}"
        );
        assert_eq!(reports[0].finding.severity, Severity::Error);
        assert_eq!(reports[0].finding.path, "document 1");
        assert_eq!(reports[0].origin, Origin::File(dir.join("a-broken.yaml")));
    }

    #[test]
    fn a_named_file_is_read_whatever_its_extension_and_text_is_an_error() {
        let dir = temp_dir("extension");
        write(&dir, "rules.txt", &format!("{DR}---\n{VS_TO_V9}"));
        write(&dir, "notes.txt", "just some notes, not a manifest\n");
        std::fs::write(
            dir.join("image.png"),
            b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\x00",
        )
        .unwrap();
        let named = analyze(
            &[dir.join("rules.txt")],
            "default",
            &[],
            Workloads::default(),
        );
        let text = analyze(
            &[dir.join("notes.txt")],
            "default",
            &[],
            Workloads::default(),
        );
        let binary = analyze(
            &[dir.join("image.png")],
            "default",
            &[],
            Workloads::default(),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            codes(&named),
            [("MK0201", "VirtualService default/reviews")]
        );
        assert_eq!(codes(&text), [("MK0002", "(input)")], "{text:#?}");
        assert!(
            text[0].finding.message.contains("a plain string"),
            "{text:#?}"
        );
        assert_eq!(codes(&binary), [("MK0002", "(input)")], "{binary:#?}");
        assert_eq!(binary[0].finding.severity, Severity::Error);
    }

    #[test]
    fn list_items_are_analysed() {
        let dir = temp_dir("list");
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            parse_one(DR),
            parse_one(VS_TO_V9),
        ]});
        write(&dir, "list.json", &list.to_string());
        let reports = analyze(
            std::slice::from_ref(&dir),
            "default",
            &[],
            Workloads::default(),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            codes(&reports),
            [("MK0201", "VirtualService default/reviews")]
        );
    }

    #[test]
    fn thousands_of_documents_in_one_file_are_analysed() {
        let dir = temp_dir("large");
        let mut text = String::new();
        for i in 0..2000 {
            text.push_str(&format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\ndata:\n  k: v\n"
            ));
        }
        text.push_str(&format!("---\n{DR}---\n{VS_TO_V9}"));
        write(&dir, "chart.yaml", &text);
        let reports = analyze(
            std::slice::from_ref(&dir),
            "default",
            &[],
            Workloads::default(),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            codes(&reports),
            [("MK0201", "VirtualService default/reviews")]
        );
    }

    #[test]
    fn a_mapping_without_kind_is_a_warning() {
        let dir = temp_dir("untyped");
        write(&dir, "values.yaml", "replicas: 3\n");
        let reports = analyze(
            std::slice::from_ref(&dir),
            "default",
            &[],
            Workloads::default(),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(codes(&reports), [("MK0003", "(document)")]);
        assert_eq!(reports[0].finding.severity, Severity::Warning);
    }

    #[test]
    fn a_missing_gateway_and_a_subset_no_cluster_pod_serves_are_warned() {
        let dir = temp_dir("references");
        write(&dir, "dr.yaml", DR);
        write(
            &dir,
            "vs.yaml",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  gateways: [mesh, edge]\n  http:\n  - route:\n    - destination:\n        host: reviews\n        subset: v1\n",
        );
        let offline = analyze(
            std::slice::from_ref(&dir),
            "default",
            &[],
            Workloads::default(),
        );
        assert_eq!(
            codes(&offline),
            [("MK0401", "VirtualService default/reviews")]
        );

        // With the cluster's Service and pods: no pod carries version v1.
        let workloads = Workloads::from_cluster(
            &[
                serde_json::json!({"metadata": {"name": "reviews", "namespace": "default"},
                "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 9080}]}}),
            ],
            &[
                serde_json::json!({"metadata": {"name": "p", "namespace": "default",
                "labels": {"app": "reviews", "version": "v2"}}, "status": {"phase": "Running"}}),
            ],
            None,
        );
        let online = analyze(std::slice::from_ref(&dir), "default", &[], workloads);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            codes(&online),
            [
                ("MK0203", "VirtualService default/reviews"),
                ("MK0401", "VirtualService default/reviews"),
            ],
            "{online:#?}"
        );
    }

    fn parse_one(text: &str) -> Value {
        meshkeeper_crds::parse::yaml_documents(text)
            .unwrap()
            .remove(0)
    }

    const VS_TO_V9: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination:\n        host: reviews\n        subset: v9\n";

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
        let reports = analyze(&pair, "default", &[], Workloads::default());
        assert!(reports.is_empty(), "{reports:#?}");

        // All samples at once: they are alternatives (several define the
        // DestinationRule `details` differently), so only the rules that
        // judge one object alone must hold for every one of them.
        let reports = analyze(&[samples], "default", &[], Workloads::default());
        let errors: Vec<String> = reports
            .iter()
            .filter(|r| r.finding.severity == Severity::Error)
            .filter(|r| r.finding.check == validate::Check::ObjectRules)
            .map(ToString::to_string)
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }

    fn destination_rule(namespace: &str, subsets: &[&str]) -> Value {
        let subsets: Vec<Value> = subsets
            .iter()
            .map(|s| serde_json::json!({"name": s, "labels": {"version": s}}))
            .collect();
        serde_json::json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": namespace},
            "spec": {"host": "reviews", "subsets": subsets}
        })
    }

    fn virtual_service(namespace: &str, name: &str, subset: &str) -> Value {
        serde_json::json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "hosts": ["reviews"],
                "http": [{"route": [{"destination": {"host": "reviews", "subset": subset}}]}]
            }
        })
    }

    /// Judges `files` (as if read from `proposed.yaml`) against `cluster`.
    fn judge_values(cluster: &[Value], files: &[Value]) -> Vec<Report> {
        let (cluster, mut reports) = decode_cluster(cluster);
        let files: Vec<Loaded> = files
            .iter()
            .map(|doc| {
                load_document(
                    &Origin::File("proposed.yaml".into()),
                    doc.clone(),
                    "default",
                )
                .unwrap()
            })
            .collect();
        reports.extend(judge(&cluster, &files, &Workloads::default()));
        reports
    }

    fn codes(reports: &[Report]) -> Vec<(&str, &str)> {
        reports
            .iter()
            .map(|r| (r.finding.code, r.object.as_str()))
            .collect()
    }

    #[test]
    fn a_file_virtual_service_is_judged_against_the_cluster_destination_rules() {
        let cluster = [destination_rule("shop", &["v1", "v2"])];
        let clean = judge_values(&cluster, &[virtual_service("shop", "reviews", "v2")]);
        assert!(clean.is_empty(), "{clean:#?}");

        let dangling = judge_values(&cluster, &[virtual_service("shop", "reviews", "v9")]);
        assert_eq!(
            codes(&dangling),
            [("MK0201", "VirtualService shop/reviews")],
            "{dangling:#?}"
        );
        assert_eq!(dangling[0].origin, Origin::File("proposed.yaml".into()));
    }

    #[test]
    fn cluster_objects_are_context_and_never_reported() {
        // A VirtualService already in the cluster routes to a missing subset:
        // not the user's proposed change, so not reported. It binds the same
        // host to the mesh, which is the file's problem (MK0405), reported
        // on the file's object only.
        let cluster = [
            destination_rule("shop", &["v1"]),
            virtual_service("shop", "old", "v9"),
        ];
        let reports = judge_values(&cluster, &[virtual_service("shop", "reviews", "v1")]);
        assert_eq!(
            codes(&reports),
            [("MK0405", "VirtualService shop/reviews")],
            "{reports:#?}"
        );
        assert!(reports[0].finding.message.contains("shop/old"));
    }

    #[test]
    fn a_file_object_replaces_the_cluster_object_of_the_same_name() {
        // The cluster's DestinationRule defines v9; the file's edit of it
        // drops v9, so a VirtualService routing there dangles.
        let cluster = [destination_rule("shop", &["v1", "v9"])];
        let reports = judge_values(
            &cluster,
            &[
                destination_rule("shop", &["v1"]),
                virtual_service("shop", "reviews", "v9"),
            ],
        );
        assert_eq!(
            codes(&reports),
            [("MK0201", "VirtualService shop/reviews")],
            "{reports:#?}"
        );

        // And the other way round: the file adds the subset the cluster lacks.
        let cluster = [destination_rule("shop", &["v1"])];
        let reports = judge_values(
            &cluster,
            &[
                destination_rule("shop", &["v1", "v9"]),
                virtual_service("shop", "reviews", "v9"),
            ],
        );
        assert!(reports.is_empty(), "{reports:#?}");
    }

    #[test]
    fn a_cluster_object_of_another_namespace_is_not_replaced() {
        // Same name, other namespace: the file's DestinationRule of `shop`
        // leaves the cluster's one of `other` in place, whose v9 the
        // VirtualService in `other` routes to.
        let cluster = [destination_rule("other", &["v9"])];
        let reports = judge_values(
            &cluster,
            &[
                destination_rule("shop", &["v1"]),
                virtual_service("other", "reviews", "v9"),
            ],
        );
        assert!(reports.is_empty(), "{reports:#?}");
    }

    #[test]
    fn undecodable_cluster_objects_are_skipped_with_a_warning() {
        let mut bad = destination_rule("shop", &["v9"]);
        bad["spec"]["trafficPolicy"] = serde_json::json!({"tls": {"mode": "STRICT"}});
        let reports = judge_values(&[bad], &[virtual_service("shop", "reviews", "v9")]);
        let warning = reports
            .iter()
            .find(|r| r.origin == Origin::Cluster)
            .expect("a warning for the cluster object");
        assert_eq!(warning.finding.severity, Severity::Warning);
        assert_eq!(warning.finding.code, "MK0001");
        assert_eq!(warning.object, "DestinationRule shop/reviews");
        assert_eq!(warning.finding.path, "spec.trafficPolicy.tls.mode");
        assert!(warning.to_string().contains("(cluster)"), "{warning}");
        // Skipped: its v9 does not count, so the file's VirtualService dangles.
        let errors: Vec<_> = reports
            .iter()
            .filter(|r| r.finding.severity == Severity::Error)
            .collect();
        assert_eq!(errors.len(), 1, "{reports:#?}");
        assert_eq!(errors[0].finding.code, "MK0201");
    }

    #[test]
    fn analyze_reads_files_with_cluster_values() {
        let dir = temp_dir("cluster");
        write(
            &dir,
            "vs.yaml",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination:\n        host: reviews\n        subset: v2\n",
        );
        let offline = analyze(
            std::slice::from_ref(&dir),
            "shop",
            &[],
            Workloads::default(),
        );
        let online = analyze(
            std::slice::from_ref(&dir),
            "shop",
            &[destination_rule("shop", &["v1", "v2"])],
            Workloads::default(),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(codes(&offline), [("MK0201", "VirtualService shop/reviews")]);
        assert!(online.is_empty(), "{online:#?}");
    }

    #[test]
    fn a_file_rule_dropping_a_subset_a_cluster_virtual_service_uses_is_an_error() {
        let cluster = [
            destination_rule("shop", &["v1", "v2"]),
            virtual_service("shop", "to-v2", "v2"),
        ];
        let dropped = judge_values(&cluster, &[destination_rule("shop", &["v1"])]);
        assert_eq!(
            codes(&dropped),
            [("MK0202", "DestinationRule shop/reviews")]
        );
        let message = &dropped[0].finding.message;
        assert!(
            message.contains("removing subset \"v2\"") && message.contains("shop/to-v2"),
            "{message}"
        );
        assert_eq!(dropped[0].finding.path, "spec.subsets[1]");
        // Keeping v2 (dropping only an unused subset) is clean, and so is
        // dropping v2 while the files also move the VirtualService off it
        // (a file VirtualService still on v2 would be its own MK0201).
        assert!(judge_values(&cluster, &[destination_rule("shop", &["v2"])]).is_empty());
        let both = judge_values(
            &cluster,
            &[
                destination_rule("shop", &["v1"]),
                virtual_service("shop", "to-v2", "v1"),
            ],
        );
        assert!(codes(&both).is_empty(), "{:?}", codes(&both));
    }
}
