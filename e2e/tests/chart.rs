//! The Helm chart installs exactly the CRDs the Rust types generate: it reads
//! crds/generated/ rather than keeping a copy of its own; its other objects
//! are checked against golden files, its values against its schema, and one
//! scenario installs, upgrades and uninstalls it on the local control plane.

use anyhow::{Context, bail, ensure};
use meshkeeper_e2e::{Harness, repo_root, same_json, upstream};

fn render(extra: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
    let chart = repo_root().join("charts/meshkeeper");
    let chart = chart.to_string_lossy();
    let mut args = vec!["template", "meshkeeper", chart.as_ref()];
    args.extend_from_slice(extra);
    let out = upstream("helm", &args)?;
    Ok(meshkeeper_crds::parse::yaml_documents(&out)?)
}

/// The CustomResourceDefinitions among rendered documents.
fn crds_of(docs: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    docs.into_iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect()
}

#[test]
fn chart_renders_the_generated_crds_and_keeps_them_on_uninstall() -> anyhow::Result<()> {
    let rendered = crds_of(render(&[])?);
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
    let rendered = crds_of(render(&["--set", "crds.install=false"])?);
    ensure!(rendered.is_empty(), "rendered {} CRDs", rendered.len());
    Ok(())
}

#[test]
fn chart_lints_strictly() -> anyhow::Result<()> {
    let chart = repo_root().join("charts/meshkeeper");
    upstream("helm", &["lint", "--strict", &chart.to_string_lossy()])?;
    Ok(())
}

const RELEASE: &str = "meshkeeper";
const NAMESPACE: &str = "meshkeeper-system";

fn chart_path() -> String {
    repo_root()
        .join("charts/meshkeeper")
        .to_string_lossy()
        .into_owned()
}

/// `helm template` as text, without the CRDs (checked above against the
/// generated ones), with a fixed release name and namespace.
fn template_text(extra: &[&str]) -> anyhow::Result<String> {
    let chart = chart_path();
    let mut args = vec![
        "template",
        RELEASE,
        chart.as_str(),
        "--namespace",
        NAMESPACE,
        "--set",
        "crds.install=false",
    ];
    args.extend_from_slice(extra);
    upstream("helm", &args)
}

/// Compares `actual` with the golden file `name`; `UPDATE_GOLDEN=1`
/// rewrites it instead.
fn check_golden(name: &str, actual: &str) -> anyhow::Result<()> {
    let path = repo_root().join("e2e/tests/golden/chart").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, actual)?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (create it with UPDATE_GOLDEN=1)",
            path.display()
        )
    })?;
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        bail!(
            "`helm template` differs from {} from line {} on:\n  golden: {:?}\n  actual: {:?}\n\
             (review the change, then refresh with UPDATE_GOLDEN=1)",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
    Ok(())
}

#[test]
fn chart_renders_as_the_golden_files_say() -> anyhow::Result<()> {
    // A fresh cluster: the Mesh kind is unknown, so the Mesh is a hook.
    check_golden("default.yaml", &template_text(&[])?)?;
    // The Mesh kind known (every upgrade): the Mesh is a release object.
    check_golden(
        "mesh-kind-known.yaml",
        &template_text(&["--api-versions", "meshkeeper.io/v1alpha1/Mesh"])?,
    )?;
    // Out-of-cluster webhook, single operator, no Mesh cleanup hook.
    check_golden(
        "development.yaml",
        &template_text(&[
            "--set",
            "mesh.webhook.url=https://host.example:9443",
            "--set",
            "operator.replicas=1",
            "--set",
            "operator.leaderElection=false",
            "--set",
            "mesh.deleteOnUninstall=false",
            "--set",
            "images.pullSecrets[0].name=registry",
        ])?,
    )
}

#[test]
fn chart_operator_gets_its_images_and_settings_from_values() -> anyhow::Result<()> {
    let docs = meshkeeper_crds::parse::yaml_documents(&template_text(&[
        "--set",
        "images.webhook.repository=registry.example/mk/webhook",
        "--set",
        "images.init.repository=registry.example/mk/init",
        "--set",
        "images.proxy.tag=v9.9.9",
        "--set",
        "images.webhook.pullPolicy=Always",
    ])?)?;
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .context("no Deployment rendered")?;
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    ensure!(
        container["image"] == "ghcr.io/meshkeeper/operator:0.1.0",
        "operator image {} does not default its tag to the appVersion",
        container["image"]
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .context("no args")?
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    for wanted in [
        "--webhook-image-repository=registry.example/mk/webhook",
        "--init-image-repository=registry.example/mk/init",
        "--proxy-image=docker.io/envoyproxy/envoy:v9.9.9",
        "--image-pull-policy=Always",
    ] {
        ensure!(args.contains(&wanted), "{wanted} missing from {args:?}");
    }
    ensure!(
        !args.contains(&"--no-leader-election"),
        "leader election is off by default: {args:?}"
    );
    let env = container["env"].as_array().context("no env")?;
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        ensure!(
            env.iter()
                .any(|e| e["name"] == name && e["valueFrom"]["fieldRef"]["fieldPath"] == field),
            "{name} does not come from {field}"
        );
    }
    Ok(())
}

#[test]
fn chart_refuses_values_of_the_wrong_type_naming_them() -> anyhow::Result<()> {
    let err = template_text(&["--set", "operator.replicas=two"])
        .err()
        .context("operator.replicas=two was accepted")?;
    let message = format!("{err:#}");
    ensure!(
        message.contains("/operator/replicas") && message.contains("integer"),
        "the error does not name the value and its type: {message}"
    );
    Ok(())
}

#[test]
fn chart_refuses_unknown_values_naming_them() -> anyhow::Result<()> {
    let err = template_text(&["--set", "mesh.proxy.concurency=4"])
        .err()
        .context("the misspelt mesh.proxy.concurency was accepted")?;
    let message = format!("{err:#}");
    ensure!(
        message.contains("/mesh/proxy") && message.contains("concurency"),
        "the error does not name the unknown key: {message}"
    );
    Ok(())
}

#[test]
fn chart_renders_everything_namespaced_into_the_release_namespace() -> anyhow::Result<()> {
    let chart = chart_path();
    let out = upstream(
        "helm",
        &["template", "mk", chart.as_str(), "--namespace", "other"],
    )?;
    let docs = meshkeeper_crds::parse::yaml_documents(&out)?;
    let cluster_scoped = [
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "Mesh",
    ];
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let name = &doc["metadata"]["name"];
        let namespace = &doc["metadata"]["namespace"];
        if cluster_scoped.contains(&kind) {
            ensure!(namespace.is_null(), "{kind} {name} has a namespace");
        } else {
            ensure!(namespace == "other", "{kind} {name} is in {namespace}");
        }
        for subject in doc["subjects"].as_array().into_iter().flatten() {
            ensure!(
                subject["namespace"] == "other",
                "{kind} {name} binds a subject in {}",
                subject["namespace"]
            );
        }
    }
    ensure!(
        docs.iter().any(|d| d["kind"] == "Deployment"),
        "no Deployment rendered"
    );
    Ok(())
}

/// Against the local control plane: install, `helm upgrade --reuse-values`,
/// uninstall; a user's VirtualService survives the uninstall with the CRDs.
/// The Mesh is left out (`mesh.create=false`): it is cluster-wide and other
/// scenarios own theirs; no operator runs here.
#[tokio::test]
async fn chart_installs_upgrades_with_reused_values_and_uninstalls() -> anyhow::Result<()> {
    let harness = Harness::connect().await?;
    let ns = harness.namespace("chart").await?;
    let kubeconfig = harness.kubeconfig().to_string_lossy().into_owned();
    let chart = chart_path();
    let release = format!("mk-{}", std::process::id());
    let helm = |args: &[&str]| {
        let mut all = vec![
            "--kubeconfig",
            kubeconfig.as_str(),
            "--namespace",
            ns.name.as_str(),
        ];
        all.extend_from_slice(args);
        upstream("helm", &all)
    };
    // --take-ownership: the CRDs may already exist, applied by other
    // scenarios or kept from an earlier release.
    helm(&[
        "install",
        &release,
        chart.as_str(),
        "--take-ownership",
        "--set",
        "mesh.create=false",
        "--set",
        "images.operator.tag=installed",
    ])?;
    let uninstall = UninstallOnDrop {
        release: release.clone(),
        namespace: ns.name.clone(),
        kubeconfig: kubeconfig.clone(),
    };
    let deployment = format!("{release}-meshkeeper-operator");
    let image = || {
        harness.kubectl(
            &[
                "get",
                "deployment",
                &deployment,
                "-n",
                &ns.name,
                "-o",
                "jsonpath={.spec.template.spec.containers[0].image}|{.spec.template.spec.containers[0].env[2].value}",
            ],
            None,
        )
    };
    ensure!(
        image()? == "ghcr.io/meshkeeper/operator:installed|info",
        "after install: {}",
        image()?
    );

    helm(&[
        "upgrade",
        &release,
        chart.as_str(),
        "--reuse-values",
        "--set",
        "operator.logLevel=debug",
    ])?;
    // The install's values stay, the new one applies.
    ensure!(
        image()? == "ghcr.io/meshkeeper/operator:installed|debug",
        "after upgrade --reuse-values: {}",
        image()?
    );

    harness.kubectl(
        &["apply", "-n", &ns.name, "-f", "-"],
        Some(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: survivor}\n\
             spec: {hosts: [survivor], http: [{route: [{destination: {host: survivor}}]}]}\n",
        ),
    )?;
    drop(uninstall);
    helm(&["status", &release])
        .err()
        .context("the release is still there after helm uninstall")?;
    ensure!(
        harness
            .kubectl(&["get", "deployment", "-n", &ns.name, "-o", "name"], None)?
            .trim()
            .is_empty(),
        "the operator Deployment outlived helm uninstall"
    );
    let kept = harness.kubectl(
        &[
            "get",
            "virtualservice",
            "survivor",
            "-n",
            &ns.name,
            "-o",
            "name",
        ],
        None,
    )?;
    ensure!(
        kept.trim() == "virtualservice.networking.istio.io/survivor",
        "the VirtualService did not survive helm uninstall: {kept:?}"
    );
    Ok(())
}

/// Uninstalls the release when dropped (also when the scenario fails).
struct UninstallOnDrop {
    release: String,
    namespace: String,
    kubeconfig: String,
}

impl Drop for UninstallOnDrop {
    fn drop(&mut self) {
        let _ = upstream(
            "helm",
            &[
                "--kubeconfig",
                &self.kubeconfig,
                "uninstall",
                &self.release,
                "--namespace",
                &self.namespace,
                "--wait",
            ],
        );
    }
}
