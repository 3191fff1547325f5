//! The validating webhook against the real control plane: the real
//! `meshkeeper-webhook` binary on loopback, a ValidatingWebhookConfiguration
//! built by `meshkeeper_webhook::configuration` pointing the API server at
//! it, and networking configuration applied with kubectl as users do.
//!
//! Each scenario serves its own revision and scopes its configuration to
//! its own namespace by a label, so parallel scenarios and other tests never
//! meet its webhook.

mod support;

use std::collections::BTreeMap;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, PostParams};
use meshkeeper_e2e::{DEADLINE, DeleteOnDrop, Harness, TestNamespace, wait_until};
use meshkeeper_webhook::configuration::{
    Target, ValidatorWebhook, validating_webhook_configuration,
};
use serde_json::{Value, json};
use support::ServedRevision;

/// The label that puts a namespace under one scenario's validator.
const SCOPE_LABEL: &str = "meshkeeper.io/e2e-validation";

/// One scenario's validator: a revision, its webhook process, its
/// configuration limited to one labelled namespace. Dropped in field order:
/// the configuration goes before the webhook stops, then the namespace.
struct Validator {
    _configuration: DeleteOnDrop,
    rev: ServedRevision,
    namespace: TestNamespace,
}

impl Validator {
    async fn start(h: &Harness, scenario: &str) -> anyhow::Result<Self> {
        let rev = ServedRevision::start(h, "e2e-validate").await?;
        let revision = rev.name.clone();
        let namespace = h.namespace(scenario).await?;
        h.kubectl(
            &[
                "label",
                "namespace",
                &namespace.name,
                &format!("{SCOPE_LABEL}={revision}"),
            ],
            None,
        )?;

        let mut spec = ValidatorWebhook::new(
            &revision,
            Target::Url(rev.url()),
            rev.certs.ca_pem.as_bytes(),
        );
        // One per scenario (they run in parallel), not the mesh-wide name.
        spec.name = format!("meshkeeper-validator-{revision}");
        spec.timeout_seconds = 5;
        spec.namespace_selector = Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                SCOPE_LABEL.to_string(),
                revision.clone(),
            )])),
            match_expressions: None,
        });
        let configuration = validating_webhook_configuration(&spec)?;
        Api::<ValidatingWebhookConfiguration>::all(h.client.clone())
            .create(&PostParams::default(), &configuration)
            .await
            .with_context(|| format!("creating ValidatingWebhookConfiguration {}", spec.name))?;
        let configuration = h.delete_on_drop("validatingwebhookconfigurations", &spec.name);

        let validator = Self {
            _configuration: configuration,
            rev,
            namespace,
        };
        validator.wait_until_validating(h).await?;
        Ok(validator)
    }

    fn ns(&self) -> &str {
        &self.namespace.name
    }

    /// The API server learns of new configurations asynchronously and the
    /// webhook is ready once it has listed the cluster: a server-side dry
    /// run of a dangling route shows when both have happened.
    async fn wait_until_validating(&self, h: &Harness) -> anyhow::Result<()> {
        let probe = virtual_service("probe", "probe-host", "missing").to_string();
        let result = wait_until("the webhook to judge a dry-run route", DEADLINE, || {
            let probe = probe.clone();
            async move {
                match self.kubectl(h, &["create", "--dry-run=server", "-f", "-"], Some(&probe)) {
                    Ok(_) => bail!("the dangling probe route was admitted"),
                    Err(e) => Ok(format!("{e:#}")
                        .contains("rejected by meshkeeper")
                        .then_some(())),
                }
            }
        })
        .await;
        result.with_context(|| format!("webhook log:\n{}", self.rev.webhook.log_tail()))
    }

    /// kubectl in the scenario's namespace.
    fn kubectl(&self, h: &Harness, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let mut all = vec!["-n", self.ns()];
        all.extend_from_slice(args);
        h.kubectl(&all, stdin)
    }

    /// Applies a YAML file of the corpus into the scenario's namespace.
    fn apply_corpus(&self, h: &Harness, file: &str) -> anyhow::Result<String> {
        let path = meshkeeper_testkit::corpus_dir()?
            .join("istio-samples/bookinfo/networking")
            .join(file);
        self.kubectl(h, &["apply", "-f", &path.to_string_lossy()], None)
    }

    /// The rejection kubectl reports for `args`, failing if it succeeds.
    fn rejection(&self, h: &Harness, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        match self.kubectl(h, args, stdin) {
            Ok(out) => bail!("kubectl {args:?} succeeded: {out}"),
            Err(e) => Ok(format!("{e:#}")),
        }
    }
}

fn virtual_service(name: &str, host: &str, subset: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {"hosts": [host], "http": [{"route": [
            {"destination": {"host": host, "subset": subset}}]}]}
    })
}

#[tokio::test]
async fn bookinfo_applies_and_breaking_changes_are_rejected_with_the_fix() -> anyhow::Result<()> {
    let h = Harness::connect().await?;
    let v = Validator::start(&h, "validate-bookinfo").await?;

    v.apply_corpus(&h, "destination-rule-all.yaml")?;
    v.apply_corpus(&h, "virtual-service-all-v1.yaml")?;

    // A route to a subset no DestinationRule defines names it and the rule.
    let dangling = virtual_service("reviews", "reviews", "v9").to_string();
    let refused = v.rejection(&h, &["apply", "-f", "-"], Some(&dangling))?;
    ensure!(
        refused.contains("v9") && refused.contains("reviews") && refused.contains("MK0201"),
        "{refused}"
    );
    let dry_run = v.rejection(
        &h,
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&dangling),
    )?;
    ensure!(
        dry_run.contains("v9") && dry_run.contains("MK0201"),
        "the server-side dry run was not rejected the same way: {dry_run}"
    );

    // The reviews rule still serves the route to v1.
    let deleting = v.rejection(&h, &["delete", "destinationrule", "reviews"], None)?;
    ensure!(
        deleting.contains("MK0202") && deleting.contains("reviews"),
        "{deleting}"
    );
    v.kubectl(&h, &["get", "destinationrule", "reviews"], None)
        .context("the DestinationRule must still exist")?;

    // Removing the router would break every HTTP request of the workload.
    let filter = json!({
        "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
        "metadata": {"name": "drop-router"},
        "spec": {
            "workloadSelector": {"labels": {"app": "reviews"}},
            "configPatches": [{
                "applyTo": "HTTP_FILTER",
                "match": {"context": "SIDECAR_INBOUND", "listener": {"filterChain": {"filter": {
                    "name": "envoy.filters.network.http_connection_manager",
                    "subFilter": {"name": "envoy.filters.http.router"}}}}},
                "patch": {"operation": "REMOVE"}
            }]
        }
    })
    .to_string();
    let refused = v.rejection(&h, &["apply", "-f", "-"], Some(&filter))?;
    ensure!(
        refused.contains("MK0303") && refused.contains("envoy.filters.http.router"),
        "{refused}"
    );

    // A lesser problem is admitted with a warning kubectl prints.
    let mut legacy = virtual_service("details-gw", "details", "v1");
    legacy["spec"]["gateways"] = json!([format!("bookinfo-gateway.{}", v.ns())]);
    let (_, stderr) = h.kubectl_with_stderr(
        &["-n", v.ns(), "apply", "-f", "-"],
        Some(&legacy.to_string()),
    )?;
    ensure!(
        stderr.contains("Warning:") && stderr.contains("legacy"),
        "no warning printed: {stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn a_namespace_holding_rules_and_routes_deletes_cleanly() -> anyhow::Result<()> {
    let h = Harness::connect().await?;
    let v = Validator::start(&h, "validate-ns-delete").await?;
    v.apply_corpus(&h, "destination-rule-all.yaml")?;
    v.apply_corpus(&h, "virtual-service-all-v1.yaml")?;

    let name = v.ns().to_string();
    h.kubectl(&["delete", "namespace", &name, "--wait=false"], None)?;
    let namespaces = Api::<Namespace>::all(h.client.clone());
    let gone = wait_until(&format!("namespace {name} to disappear"), DEADLINE, || {
        let namespaces = namespaces.clone();
        let name = name.clone();
        async move { Ok(namespaces.get_opt(&name).await?.is_none().then_some(())) }
    })
    .await;
    gone.with_context(|| format!("webhook log:\n{}", v.rev.webhook.log_tail()))
}

/// The networking documents of one corpus file, moved into `ns`.
fn corpus_file_documents(file: &std::path::Path, ns: &str) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(meshkeeper_crds::parse::yaml_documents(&text)?
        .into_iter()
        .filter(|d| {
            d["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .starts_with("networking.istio.io/")
        })
        .map(|mut d| {
            d["metadata"]["namespace"] = Value::String(ns.to_string());
            d
        })
        .collect())
}

#[tokio::test]
async fn every_corpus_sample_applies_cleanly_with_the_rules_it_builds_on() -> anyhow::Result<()> {
    let h = Harness::connect().await?;
    let v = Validator::start(&h, "validate-samples").await?;
    let samples = meshkeeper_testkit::corpus_dir()?.join("istio-samples");
    // The samples are alternatives written to be applied over the rules
    // that define their subsets; each is applied on a clean slate over
    // those rules, as the Istio docs apply them.
    let base_of = |file: &std::path::Path| -> Option<std::path::PathBuf> {
        let dir = file.parent()?;
        if dir.ends_with("bookinfo/networking") {
            Some(dir.join("destination-rule-all.yaml"))
        } else if dir.ends_with("tcp-echo") {
            Some(dir.join("tcp-echo-all-v1.yaml"))
        } else {
            None
        }
    };
    let mut files: Vec<std::path::PathBuf> = meshkeeper_testkit::networking_documents()?
        .into_iter()
        .map(|d| d.file)
        .collect();
    files.dedup();
    ensure!(
        files.len() >= 20,
        "expected the Istio samples, found {} files",
        files.len()
    );

    let mut applied = 0;
    for file in &files {
        // Routes first, then the rules: deleting a rule still routed to is
        // (rightly) refused.
        v.kubectl(
            &h,
            &["delete", "virtualservices,envoyfilters", "--all", "--wait"],
            None,
        )?;
        v.kubectl(
            &h,
            &[
                "delete",
                "destinationrules,gateways,serviceentries",
                "--all",
                "--wait",
            ],
            None,
        )?;
        let mut docs = Vec::new();
        if let Some(base) = base_of(file).filter(|b| b != file) {
            docs.extend(corpus_file_documents(&base, v.ns())?);
        }
        docs.extend(corpus_file_documents(file, v.ns())?);
        for doc in docs {
            v.kubectl(&h, &["apply", "-f", "-"], Some(&doc.to_string()))
                .with_context(|| {
                    format!(
                        "{} {} from {} was rejected",
                        doc["kind"],
                        doc["metadata"]["name"],
                        file.strip_prefix(&samples).unwrap_or(file).display()
                    )
                })?;
            applied += 1;
        }
    }
    ensure!(applied >= files.len(), "applied only {applied} documents");
    Ok(())
}

/// An EnvoyFilter for one workload with the given patches.
fn envoy_filter(name: &str, patches: Value) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
        "metadata": {"name": name},
        "spec": {"workloadSelector": {"labels": {"app": "reviews"}}, "configPatches": patches}
    })
}

fn http_filter_patch(operation: &str, value: Value) -> Value {
    json!({
        "applyTo": "HTTP_FILTER",
        "match": {"context": "SIDECAR_INBOUND", "listener": {"filterChain": {"filter": {
            "name": "envoy.filters.network.http_connection_manager",
            "subFilter": {"name": "envoy.filters.http.router"}}}}},
        "patch": {"operation": operation, "value": value}
    })
}

#[tokio::test]
async fn every_dangerous_envoy_filter_class_is_rejected_with_its_code() -> anyhow::Result<()> {
    let h = Harness::connect().await?;
    let v = Validator::start(&h, "validate-envoyfilters").await?;
    let lua = |code: &str| {
        json!({"name": "envoy.filters.http.lua", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": code}}})
    };
    let wasm = |uri: &str, sha: Option<&str>| {
        let mut remote = json!({"http_uri": {"uri": uri, "cluster": "remote", "timeout": "10s"}});
        if let Some(sha) = sha {
            remote["sha256"] = json!(sha);
        }
        json!({"name": "envoy.filters.http.wasm", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {"vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {"remote": remote}}}}})
    };
    let cases: Vec<(&str, Value)> = vec![
        (
            "MK0301",
            json!([{"match": {"context": "ANY"}, "patch": {"operation": "MERGE", "value": {"a": 1}}}]),
        ),
        (
            "MK0302",
            json!([{"applyTo": "CLUSTER", "match": {"proxy": {"proxyVersion": "^1\\.(2"}},
            "patch": {"operation": "MERGE", "value": {"connect_timeout": "1s"}}}]),
        ),
        (
            "MK0303",
            json!([{"applyTo": "NETWORK_FILTER", "match": {"listener": {"filterChain": {"filter": {
            "name": "envoy.filters.network.http_connection_manager"}}}}, "patch": {"operation": "REMOVE"}}]),
        ),
        (
            "MK0304",
            json!([{"applyTo": "LISTENER", "match": {"listener": {"name": "virtualOutbound"}},
            "patch": {"operation": "REMOVE"}}]),
        ),
        (
            "MK0305",
            json!([{"applyTo": "ROUTE_CONFIGURATION", "match": {"routeConfiguration": {"portNumber": 9080}},
            "patch": {"operation": "ADD", "value": {"name": "extra"}}}]),
        ),
        (
            "MK0306",
            json!([http_filter_patch(
                "INSERT_AFTER",
                lua("function envoy_on_request(h) end")
            )]),
        ),
        (
            "MK0308",
            json!([http_filter_patch("INSERT_BEFORE", lua("  "))]),
        ),
        (
            "MK0309",
            json!([http_filter_patch(
                "INSERT_BEFORE",
                lua("function envoy_on_request(h) os.execute('id') end")
            )]),
        ),
        (
            "MK0310",
            json!([http_filter_patch(
                "INSERT_BEFORE",
                wasm("http://example.com/f.wasm", Some("ab12"))
            )]),
        ),
        (
            "MK0311",
            json!([http_filter_patch(
                "INSERT_BEFORE",
                wasm("https://example.com/f.wasm", None)
            )]),
        ),
        (
            "MK0312",
            json!([http_filter_patch(
                "INSERT_BEFORE",
                json!({"name": "x", "typed_config": {"value": {}}})
            )]),
        ),
        // A type from Envoy's removed v2 API: no proxy can decode it (a v3
        // type meshkeeper merely does not list only warns).
        (
            "MK0313",
            json!([http_filter_patch(
                "INSERT_BEFORE",
                json!({"name": "envoy.filters.http.cors", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.filter.http.cors.v2.Cors"}})
            )]),
        ),
        // A filter added by its deprecated name alone, without a
        // typed_config: Envoy cannot tell what to build (an old name in a
        // match only warns).
        (
            "MK0314",
            json!([http_filter_patch(
                "INSERT_BEFORE",
                json!({"name": "envoy.lua"})
            )]),
        ),
    ];
    for (code, patches) in cases {
        let filter = envoy_filter(&format!("ef-{}", code.to_lowercase()), patches);
        let refused = v.rejection(&h, &["apply", "-f", "-"], Some(&filter.to_string()))?;
        ensure!(
            refused.contains(code),
            "expected {code}, kubectl said: {refused}"
        );
    }
    // A careful filter (Lua before the router, one workload, a priority) is admitted.
    let mut fine = envoy_filter(
        "ef-fine",
        json!([http_filter_patch(
            "INSERT_BEFORE",
            lua("function envoy_on_request(h) h:headers():add('x-mk', '1') end")
        )]),
    );
    fine["spec"]["priority"] = json!(10);
    v.kubectl(&h, &["apply", "-f", "-"], Some(&fine.to_string()))?;
    Ok(())
}
