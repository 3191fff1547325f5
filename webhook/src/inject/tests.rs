//! Decision rules and denials, through the public [`inject`] entry point.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use meshkeeper_init::capture::Setting;
use serde_json::{Value, json};

use super::*;

fn settings() -> Settings {
    Settings {
        revision: "default".into(),
        version: "0.1.0".into(),
        tags: vec![],
        own_namespace: "meshkeeper-system".into(),
        policy: InjectionMode::Enabled,
        never_inject_selector: vec![],
        always_inject_selector: vec![],
        native_sidecar: false,
        proxy_image: "envoyproxy/envoy:v1.36.2".into(),
        proxy_resources: default_proxy_resources(),
        proxy_log_level: "warning".into(),
        proxy_concurrency: Some(2),
        init_image: "ghcr.io/meshkeeper/init:0.1.0".into(),
    }
}

/// A pod with one container `app` plus the given metadata.
fn pod(labels: Value, annotations: Value) -> Pod {
    let mut metadata = json!({"name": "web-0"});
    if !labels.is_null() {
        metadata["labels"] = labels;
    }
    if !annotations.is_null() {
        metadata["annotations"] = annotations;
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [{"name": "app", "image": "nginx"}]}
    }))
    .unwrap()
}

fn annotated(annotations: Value) -> Pod {
    pod(Value::Null, annotations)
}

fn run_with(pod: &Pod, namespace: &str, scope: Scope, settings: &Settings) -> Outcome {
    inject(
        &Request {
            pod,
            namespace,
            scope,
            proxy: None,
        },
        settings,
    )
}

fn run(pod: &Pod) -> Outcome {
    run_with(pod, "shop", Scope::Namespace, &settings())
}

/// The pod after the patch, or a panic saying what the outcome was instead.
fn injected(outcome: &Outcome, pod: &Pod) -> Value {
    let Outcome::Injected { patch, .. } = outcome else {
        panic!("expected an injection, got {outcome:?}");
    };
    let mut doc = serde_json::to_value(pod).unwrap();
    json_patch::patch(&mut doc, patch).unwrap();
    doc
}

fn skip_reason(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Skipped { reason, .. } => reason,
        other => panic!("expected a skip, got {other:?}"),
    }
}

fn denial(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Denied { message } => message,
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn warnings(outcome: &Outcome) -> &[String] {
    match outcome {
        Outcome::Injected { warnings, .. } | Outcome::Skipped { warnings, .. } => warnings,
        Outcome::Denied { .. } => &[],
    }
}

fn selector(labels: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        match_expressions: None,
    }
}

fn names_of(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|items| items.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default()
}

// ---- whether a pod is injected -------------------------------------------

#[test]
fn label_beats_annotation() {
    let mut disabled = settings();
    disabled.policy = InjectionMode::Disabled;

    let opted_out = pod(
        json!({(names::INJECT): "false"}),
        json!({(names::INJECT): "true"}),
    );
    let reason = skip_reason(&run(&opted_out)).to_owned();
    assert!(
        reason.contains("label") && reason.contains("false"),
        "{reason}"
    );

    let opted_in = pod(
        json!({(names::INJECT): "true"}),
        json!({(names::INJECT): "false"}),
    );
    let outcome = run_with(&opted_in, "shop", Scope::Namespace, &disabled);
    injected(&outcome, &opted_in);
}

#[test]
fn annotation_decides_without_label() {
    let mut disabled = settings();
    disabled.policy = InjectionMode::Disabled;
    let opted_in = annotated(json!({(names::INJECT): "true"}));
    injected(
        &run_with(&opted_in, "shop", Scope::Namespace, &disabled),
        &opted_in,
    );

    let opted_out = annotated(json!({(names::INJECT): "false"}));
    let reason = skip_reason(&run(&opted_out)).to_owned();
    assert!(reason.contains("annotation"), "{reason}");
}

#[test]
fn other_values_are_ignored_with_a_warning() {
    let mut disabled = settings();
    disabled.policy = InjectionMode::Disabled;

    // Label "yes": the label alone decides, so its ignored value leaves the
    // choice to the mesh policy; the annotation is not consulted.
    let p = pod(
        json!({(names::INJECT): "yes"}),
        json!({(names::INJECT): "false"}),
    );
    let outcome = run(&p);
    injected(&outcome, &p);
    let w = warnings(&outcome);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("label")
            && w[0].contains(names::INJECT)
            && w[0].contains("\"yes\"")
            && w[0].contains("true or false"),
        "{w:?}"
    );
    let p = pod(
        json!({(names::INJECT): "yes"}),
        json!({(names::INJECT): "true"}),
    );
    let outcome = run_with(&p, "shop", Scope::Namespace, &disabled);
    let reason = skip_reason(&outcome).to_owned();
    assert!(reason.contains("Disabled"), "{reason}");
    let w = warnings(&outcome);
    assert!(
        w.len() == 1 && w[0].contains("label") && w[0].contains("\"yes\""),
        "{w:?}"
    );

    // Annotation "TRUE" alone: ignored, policy Enabled injects, warned about.
    let p = annotated(json!({(names::INJECT): "TRUE"}));
    let outcome = run(&p);
    injected(&outcome, &p);
    let w = warnings(&outcome);
    assert!(
        w.len() == 1 && w[0].contains("annotation") && w[0].contains("\"TRUE\""),
        "{w:?}"
    );

    // Under Disabled the ignored value does not opt in.
    let outcome = run_with(&p, "shop", Scope::Namespace, &disabled);
    assert!(skip_reason(&outcome).contains("Disabled"));
    assert_eq!(warnings(&outcome).len(), 1);
}

#[test]
fn policy_applies_when_the_pod_does_not_choose() {
    let p = pod(Value::Null, Value::Null);
    injected(&run(&p), &p);
    let mut disabled = settings();
    disabled.policy = InjectionMode::Disabled;
    let reason = skip_reason(&run_with(&p, "shop", Scope::Namespace, &disabled)).to_owned();
    assert!(reason.contains("policy is Disabled"), "{reason}");
}

#[test]
fn never_inject_selector_skips_unless_the_pod_opts_in() {
    let mut s = settings();
    s.never_inject_selector = vec![selector(&[("job", "batch")])];
    let batch = pod(json!({"job": "batch"}), Value::Null);
    let reason = skip_reason(&run_with(&batch, "shop", Scope::Namespace, &s)).to_owned();
    assert!(reason.contains("neverInjectSelector[0]"), "{reason}");

    let other = pod(json!({"job": "web"}), Value::Null);
    injected(&run_with(&other, "shop", Scope::Namespace, &s), &other);

    let insisting = pod(
        json!({"job": "batch", (names::INJECT): "true"}),
        Value::Null,
    );
    injected(
        &run_with(&insisting, "shop", Scope::Namespace, &s),
        &insisting,
    );
}

#[test]
fn always_inject_selector_overrides_disabled_policy_but_not_opt_out_or_never() {
    let mut s = settings();
    s.policy = InjectionMode::Disabled;
    s.always_inject_selector = vec![LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "tier".into(),
            operator: "In".into(),
            values: Some(vec!["web".into()]),
        }]),
    }];
    let web = pod(json!({"tier": "web"}), Value::Null);
    injected(&run_with(&web, "shop", Scope::Namespace, &s), &web);

    let refusing = pod(json!({"tier": "web"}), json!({(names::INJECT): "false"}));
    skip_reason(&run_with(&refusing, "shop", Scope::Namespace, &s));

    s.never_inject_selector = vec![selector(&[("tier", "web")])];
    let reason = skip_reason(&run_with(&web, "shop", Scope::Namespace, &s)).to_owned();
    assert!(
        reason.contains("neverInjectSelector"),
        "never is checked first: {reason}"
    );
}

#[test]
fn empty_and_invalid_selectors_match_nothing() {
    let mut s = settings();
    s.never_inject_selector = vec![
        LabelSelector::default(),
        LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: "Bogus".into(),
                values: None,
            }]),
        },
    ];
    let p = pod(json!({"a": "b"}), Value::Null);
    injected(&run_with(&p, "shop", Scope::Namespace, &s), &p);

    s.policy = InjectionMode::Disabled;
    s.never_inject_selector = vec![];
    s.always_inject_selector = vec![LabelSelector::default()];
    skip_reason(&run_with(&p, "shop", Scope::Namespace, &s));
}

#[test]
fn system_and_own_namespaces_are_skipped() {
    let p = annotated(json!({(names::INJECT): "true"}));
    for ns in [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "meshkeeper-system",
    ] {
        let reason = skip_reason(&run_with(&p, ns, Scope::Namespace, &settings())).to_owned();
        assert!(reason.contains(ns), "{ns}: {reason}");
    }
}

#[test]
fn request_namespace_falls_back_to_the_pods() {
    let mut p = pod(Value::Null, Value::Null);
    p.metadata.namespace = Some("kube-system".into());
    let reason = skip_reason(&run_with(&p, "", Scope::Namespace, &settings())).to_owned();
    assert!(reason.contains("kube-system"), "{reason}");
}

#[test]
fn host_network_pods_are_skipped() {
    let mut p = pod(json!({(names::INJECT): "true"}), Value::Null);
    if let Some(spec) = p.spec.as_mut() {
        spec.host_network = Some(true);
    }
    assert!(skip_reason(&run(&p)).contains("hostNetwork"));
}

#[test]
fn injected_pods_are_skipped() {
    let p = pod(Value::Null, Value::Null);
    let out: Pod = serde_json::from_value(injected(&run(&p), &p)).unwrap();
    assert_eq!(
        skip_reason(&run(&out)),
        "already injected (annotation meshkeeper.io/status present)"
    );

    // Containers without the status annotation (someone removed it): still
    // never duplicated.
    let mut stripped = out.clone();
    stripped.metadata.annotations = None;
    assert_eq!(
        skip_reason(&run(&stripped)),
        "already injected (pod has container meshkeeper-init)"
    );

    let istio = annotated(json!({(names::ISTIO_STATUS): "{}"}));
    assert!(skip_reason(&run(&istio)).contains("Istio"));
}

#[test]
fn pods_without_containers_are_skipped_not_panicking() {
    let no_spec: Pod = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    assert_eq!(skip_reason(&run(&no_spec)), "pod has no containers");
    let empty: Pod = serde_json::from_value(json!({"spec": {"containers": []}})).unwrap();
    assert_eq!(skip_reason(&run(&empty)), "pod has no containers");
    assert_eq!(skip_reason(&run(&Pod::default())), "pod has no containers");
}

#[test]
fn object_scope_needs_the_pod_to_opt_in() {
    let s = settings();
    let plain = pod(Value::Null, Value::Null);
    let reason = skip_reason(&run_with(&plain, "shop", Scope::Object, &s)).to_owned();
    assert!(reason.contains("did not opt in"), "{reason}");

    let by_label = pod(json!({(names::INJECT): "true"}), Value::Null);
    injected(&run_with(&by_label, "shop", Scope::Object, &s), &by_label);

    let by_revision = pod(json!({(names::REVISION): "default"}), Value::Null);
    injected(
        &run_with(&by_revision, "shop", Scope::Object, &s),
        &by_revision,
    );

    // The revision label selects the webhook; the pod's own opt-out still wins.
    let revision_but_out = pod(
        json!({(names::REVISION): "default"}),
        json!({(names::INJECT): "false"}),
    );
    skip_reason(&run_with(&revision_but_out, "shop", Scope::Object, &s));

    // Under Disabled, naming the revision is not an opt-in by itself.
    let mut disabled = settings();
    disabled.policy = InjectionMode::Disabled;
    skip_reason(&run_with(&by_revision, "shop", Scope::Object, &disabled));
}

#[test]
fn object_scope_skips_other_revisions() {
    let p = pod(
        json!({(names::REVISION): "canary", (names::INJECT): "true"}),
        Value::Null,
    );
    let reason = skip_reason(&run_with(&p, "shop", Scope::Object, &settings())).to_owned();
    assert!(
        reason.contains("\"canary\"") && reason.contains("\"default\""),
        "{reason}"
    );

    // In namespace scope the namespace chose the revision; the pod label is
    // not consulted.
    injected(&run_with(&p, "shop", Scope::Namespace, &settings()), &p);
}

#[test]
fn object_scope_takes_a_tag_of_this_revision_as_its_name() {
    let mut tagged = settings();
    tagged.revision = "default-0-2-0".into();
    tagged.tags = vec!["prod".into(), "stable".into()];

    // Naming a tag is naming the revision: an opt-in by itself...
    let by_tag = pod(json!({(names::REVISION): "stable"}), Value::Null);
    let out = injected(&run_with(&by_tag, "shop", Scope::Object, &tagged), &by_tag);
    // ...and the pod records the revision, never the tag.
    assert_eq!(
        out["metadata"]["labels"][names::INJECTED_REVISION_LABEL],
        "default-0-2-0"
    );

    // A tag of another revision is still foreign, and the message lists
    // everything this webhook answers to.
    let foreign = pod(
        json!({(names::REVISION): "canary", (names::INJECT): "true"}),
        Value::Null,
    );
    let reason = skip_reason(&run_with(&foreign, "shop", Scope::Object, &tagged)).to_owned();
    assert!(
        reason.contains("\"canary\"")
            && reason.contains("\"default-0-2-0\"")
            && reason.contains("\"prod\", \"stable\""),
        "{reason}"
    );

    // Without an opt-in, the message says which names would have been one.
    let plain = pod(Value::Null, Value::Null);
    let reason = skip_reason(&run_with(&plain, "shop", Scope::Object, &tagged)).to_owned();
    assert!(
        reason.contains("did not opt in") && reason.contains("\"prod\""),
        "{reason}"
    );

    // The tag's own name does not serve as a revision for other settings.
    assert!(tagged.serves("prod") && tagged.serves("default-0-2-0"));
    assert!(!tagged.serves("default") && !settings().serves("prod"));
}

// ---- what is injected ------------------------------------------------------

#[test]
fn native_sidecar_follows_settings_and_annotation() {
    let p = pod(Value::Null, Value::Null);
    let out = injected(&run(&p), &p);
    assert_eq!(
        names_of(&out["spec"]["initContainers"]),
        ["meshkeeper-init"]
    );
    assert_eq!(
        names_of(&out["spec"]["containers"]),
        ["app", "meshkeeper-proxy"]
    );

    let native = annotated(json!({(names::NATIVE_SIDECAR): "true"}));
    let out = injected(&run(&native), &native);
    assert_eq!(
        names_of(&out["spec"]["initContainers"]),
        ["meshkeeper-init", "meshkeeper-proxy"]
    );
    assert_eq!(names_of(&out["spec"]["containers"]), ["app"]);
    let proxy = &out["spec"]["initContainers"][1];
    assert_eq!(proxy["restartPolicy"], "Always");
    assert_eq!(proxy["startupProbe"]["httpGet"]["port"], 15021);

    let mut s = settings();
    s.native_sidecar = true;
    let opted_out = annotated(json!({(names::NATIVE_SIDECAR): "false"}));
    let out = injected(
        &run_with(&opted_out, "shop", Scope::Namespace, &s),
        &opted_out,
    );
    assert_eq!(
        names_of(&out["spec"]["initContainers"]),
        ["meshkeeper-init"]
    );
}

#[test]
fn interception_none_adds_no_init_container() {
    let p = annotated(json!({(Setting::InterceptionMode.annotation()): "NONE"}));
    let out = injected(&run(&p), &p);
    assert_eq!(out["spec"].get("initContainers"), None);
    let status: InjectionStatus = serde_json::from_str(
        out["metadata"]["annotations"][names::STATUS]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(status.init_containers.is_empty());
    assert_eq!(status.containers, ["meshkeeper-proxy"]);
}

#[test]
fn capture_annotations_become_init_arguments() {
    let p = annotated(json!({
        (Setting::ExcludeOutboundPorts.annotation()): "9000,9001",
        (Setting::IncludeOutboundIpRanges.annotation()): "10.0.0.0/8",
    }));
    let out = injected(&run(&p), &p);
    let args = out["spec"]["initContainers"][0]["args"].clone();
    let args: Vec<String> = serde_json::from_value(args).unwrap();
    let parsed = meshkeeper_init::capture::CaptureConfig::from_args(args).unwrap();
    let mut want = meshkeeper_init::capture::CaptureConfig::default();
    want.apply(Setting::ExcludeOutboundPorts, "9000,9001")
        .unwrap();
    want.apply(Setting::IncludeOutboundIpRanges, "10.0.0.0/8")
        .unwrap();
    assert_eq!(parsed, want);
}

#[test]
fn injected_pods_carry_their_revision_and_proxy_version() {
    let mut s = settings();
    s.revision = "canary".into();
    s.version = "0.2.0-rc.1".into();
    let p = pod(json!({"app": "web"}), Value::Null);
    let out = injected(&run_with(&p, "shop", Scope::Namespace, &s), &p);
    let labels = &out["metadata"]["labels"];
    assert_eq!(labels[names::INJECTED_REVISION_LABEL], "canary");
    assert_eq!(labels[names::PROXY_VERSION_LABEL], "0.2.0-rc.1");
    let status: InjectionStatus = serde_json::from_str(
        out["metadata"]["annotations"][names::STATUS]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (status.revision.as_str(), status.version.as_str()),
        ("canary", "0.2.0-rc.1")
    );

    // A version no label may hold (only a hand-made MeshRevision has one)
    // is turned into a label value rather than getting the pod refused;
    // the status annotation keeps it exactly.
    s.version = "1.0.0+build/7".into();
    let out = injected(&run_with(&p, "shop", Scope::Namespace, &s), &p);
    assert_eq!(
        out["metadata"]["labels"][names::PROXY_VERSION_LABEL],
        "1.0.0-build-7"
    );
    assert_eq!(names::proxy_version_value("1.0.0+build/7"), "1.0.0-build-7");
    let status = out["metadata"]["annotations"][names::STATUS]
        .as_str()
        .unwrap();
    assert!(status.contains("\"version\":\"1.0.0+build/7\""), "{status}");
}

#[test]
fn existing_revision_labels_are_kept() {
    // A pod template copied from an injected pod (or `meshctl kube-inject`
    // output) keeps what it says; only missing keys are added.
    let p = pod(
        json!({(names::INJECTED_REVISION_LABEL): "old", "app": "web"}),
        Value::Null,
    );
    let outcome = run(&p);
    let out = injected(&outcome, &p);
    assert_eq!(
        out["metadata"]["labels"][names::INJECTED_REVISION_LABEL],
        "old"
    );
    assert_eq!(
        out["metadata"]["labels"][names::PROXY_VERSION_LABEL],
        "0.1.0"
    );
}

#[test]
fn status_without_a_version_still_parses() {
    // Pods injected before versions were recorded.
    let status: InjectionStatus = serde_json::from_str(
        r#"{"revision":"default","initContainers":[],"containers":["meshkeeper-proxy"],"volumes":[]}"#,
    )
    .unwrap();
    assert_eq!(status.version, "");
}

#[test]
fn existing_labels_and_default_container_are_kept() {
    let p = pod(
        json!({(names::TLS_MODE): "disabled", (names::CANONICAL_NAME): "mine", "app": "web"}),
        json!({(names::DEFAULT_CONTAINER): "other"}),
    );
    let outcome = run(&p);
    let out = injected(&outcome, &p);
    let labels = &out["metadata"]["labels"];
    assert_eq!(labels[names::TLS_MODE], "disabled");
    assert_eq!(labels[names::CANONICAL_NAME], "mine");
    assert_eq!(labels[names::CANONICAL_REVISION], "latest");
    assert_eq!(
        out["metadata"]["annotations"][names::DEFAULT_CONTAINER],
        "other"
    );
    // Only the missing keys are added, each with an escaped pointer.
    let Outcome::Injected { patch, .. } = &outcome else {
        unreachable!()
    };
    let paths: Vec<String> = patch.0.iter().map(|op| op.path().to_string()).collect();
    assert!(
        paths.contains(&"/metadata/labels/service.istio.io~1canonical-revision".to_owned()),
        "{paths:?}"
    );
    assert!(!paths.iter().any(|p| p.ends_with("tlsMode")), "{paths:?}");
}

#[test]
fn proxy_settings_from_overrides_and_annotations() {
    let overrides = ProxyOverrides {
        image_type: Some("distroless".into()),
        concurrency: Some(0),
        environment: [
            ("ISTIO_META_X".to_owned(), "1".to_owned()),
            ("POD_NAME".to_owned(), "spoof".to_owned()),
        ]
        .into(),
        ..ProxyOverrides::default()
    };
    let p = annotated(json!({(names::PROXY_CPU_LIMIT): "2500m", (names::LOG_LEVEL): "DEBUG"}));
    let outcome = inject(
        &Request {
            pod: &p,
            namespace: "shop",
            scope: Scope::Namespace,
            proxy: Some(&overrides),
        },
        &settings(),
    );
    let out = injected(&outcome, &p);
    let proxy = &out["spec"]["containers"][1];
    assert_eq!(proxy["image"], "envoyproxy/envoy:distroless-v1.36.2");
    let args: Vec<&str> = proxy["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let after = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap() + 1];
    assert_eq!(after("--log-level"), "debug");
    assert_eq!(
        after("--concurrency"),
        "3",
        "0 means one per CPU of the 2500m limit"
    );
    assert_eq!(after("--service-cluster"), "web-0.$(POD_NAMESPACE)");
    let env: Vec<&str> = names_of(&proxy["env"]);
    assert_eq!(
        env,
        [
            "POD_NAME",
            "POD_NAMESPACE",
            "INSTANCE_IP",
            "SERVICE_ACCOUNT",
            "ISTIO_META_X"
        ]
    );
    let w = warnings(&outcome);
    assert!(w.iter().any(|w| w.contains("POD_NAME")), "{w:?}");

    // The annotation's image type beats ProxyConfig's; a full image beats both.
    let p = annotated(json!({(names::PROXY_IMAGE_TYPE): "debug"}));
    let outcome = inject(
        &Request {
            pod: &p,
            namespace: "shop",
            scope: Scope::Namespace,
            proxy: Some(&overrides),
        },
        &settings(),
    );
    assert_eq!(
        injected(&outcome, &p)["spec"]["containers"][1]["image"],
        "envoyproxy/envoy:debug-v1.36.2"
    );
    let p =
        annotated(json!({(names::PROXY_IMAGE_TYPE): "debug", (names::PROXY_IMAGE): "my/envoy:1"}));
    assert_eq!(
        injected(&run(&p), &p)["spec"]["containers"][1]["image"],
        "my/envoy:1"
    );
}

#[test]
fn proxy_runs_as_the_ids_and_on_the_ports_the_init_rules_leave_alone() {
    use meshkeeper_init::capture::{
        DEFAULT_PROXY_GID, DEFAULT_PROXY_UID, NEVER_CAPTURED_INBOUND_PORTS,
    };
    let p = pod(Value::Null, Value::Null);
    let out = injected(&run(&p), &p);
    let proxy = &out["spec"]["containers"][1];
    let security = &proxy["securityContext"];
    assert_eq!(security["runAsUser"], json!(DEFAULT_PROXY_UID));
    assert_eq!(security["runAsGroup"], json!(DEFAULT_PROXY_GID));
    assert_eq!(security["runAsUser"], 1337, "the UID Istio's images expect");
    let ports: Vec<u64> = proxy["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [15090, 15021]);
    let probe_port = proxy["readinessProbe"]["httpGet"]["port"].as_u64().unwrap();
    for port in ports.iter().chain([&probe_port]) {
        assert!(
            NEVER_CAPTURED_INBOUND_PORTS.contains(&u16::try_from(*port).unwrap()),
            "{port}"
        );
    }
}

#[test]
fn proxy_config_cannot_replace_any_downward_api_variable() {
    let reserved = [
        "POD_NAME",
        "POD_NAMESPACE",
        "INSTANCE_IP",
        "SERVICE_ACCOUNT",
    ];
    let overrides = ProxyOverrides {
        environment: reserved
            .iter()
            .map(|name| ((*name).to_owned(), "spoof".to_owned()))
            .collect(),
        ..ProxyOverrides::default()
    };
    let p = pod(Value::Null, Value::Null);
    let outcome = inject(
        &Request {
            pod: &p,
            namespace: "shop",
            scope: Scope::Namespace,
            proxy: Some(&overrides),
        },
        &settings(),
    );
    let out = injected(&outcome, &p);
    let env = &out["spec"]["containers"][1]["env"];
    assert_eq!(names_of(env), reserved);
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .all(|e| e.get("value").is_none() && e.get("valueFrom").is_some()),
        "{env}"
    );
    assert_eq!(warnings(&outcome).len(), reserved.len());
}

#[test]
fn pod_without_labels_or_annotations_gets_whole_maps() {
    let p = pod(Value::Null, Value::Null);
    let outcome = run(&p);
    let Outcome::Injected { patch, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    let paths: Vec<String> = patch.0.iter().map(|op| op.path().to_string()).collect();
    assert_eq!(
        paths,
        [
            "/metadata/labels",
            "/metadata/annotations",
            "/spec/initContainers",
            "/spec/containers/-",
            "/spec/volumes"
        ]
    );
    let out = injected(&outcome, &p);
    assert_eq!(out["metadata"]["labels"][names::CANONICAL_NAME], "web-0");
    assert_eq!(
        out["metadata"]["annotations"][names::DEFAULT_CONTAINER],
        "app"
    );
}

// ---- bad input ---------------------------------------------------------------

/// Every bad value is denied with the annotation, the value and a hint of
/// the accepted form in the message.
#[test]
fn invalid_annotations_are_denied_with_a_precise_message() {
    let cases = [
        (
            Setting::ExcludeOutboundIpRanges.annotation(),
            "10.0.0.0/33",
            "CIDR",
        ),
        (
            Setting::IncludeOutboundIpRanges.annotation(),
            "not-an-ip",
            "CIDR",
        ),
        (
            Setting::ExcludeInboundPorts.annotation(),
            "70000",
            "1-65535",
        ),
        (Setting::IncludeInboundPorts.annotation(), "0", "1-65535"),
        (
            Setting::ExcludeOutboundPorts.annotation(),
            "http",
            "1-65535",
        ),
        (
            Setting::ExcludeInterfaces.annotation(),
            "eth0/1",
            "interface",
        ),
        (Setting::InterceptionMode.annotation(), "MAGIC", "REDIRECT"),
        (Setting::InterceptionMode.annotation(), "TPROXY", "TPROXY"),
        (names::PROXY_CPU, "lots", "100m"),
        (names::PROXY_MEMORY, "128MB", "128Mi"),
        (names::PROXY_CPU_LIMIT, "-1", "non-negative"),
        (names::PROXY_MEMORY_LIMIT, "1 Gi", "1Gi"),
        (names::LOG_LEVEL, "verbose", "warning"),
        (names::NATIVE_SIDECAR, "yes", "true or false"),
        (names::PROXY_IMAGE_TYPE, "de bug", "distroless"),
        (names::PROXY_IMAGE, "", "image reference"),
    ];
    for (annotation, value, accepted) in cases {
        let p = annotated(json!({(annotation): value}));
        let outcome = run(&p);
        let message = denial(&outcome);
        assert!(
            message.contains(annotation)
                && message.contains(&format!("{value:?}"))
                && message.contains(accepted),
            "{annotation}={value}: {message}"
        );
    }
}

#[test]
fn every_bad_annotation_is_reported_at_once() {
    let p = annotated(json!({
        (names::PROXY_CPU): "x",
        (Setting::ExcludeInboundPorts.annotation()): "99999",
        (names::LOG_LEVEL): "loud",
    }));
    let outcome = run(&p);
    let message = denial(&outcome);
    for annotation in [
        names::PROXY_CPU,
        Setting::ExcludeInboundPorts.annotation(),
        names::LOG_LEVEL,
    ] {
        assert!(message.contains(annotation), "{message}");
    }
}

/// The proxy container's `resources` after injecting `pod`.
fn proxy_resources(pod: &Pod) -> Value {
    let out = injected(&run(pod), pod);
    out["spec"]["containers"][1]["resources"].clone()
}

#[test]
fn resource_annotations_replace_the_mesh_defaults_entirely() {
    // No annotation: the mesh defaults.
    let p = pod(Value::Null, Value::Null);
    assert_eq!(
        proxy_resources(&p),
        json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}})
    );
    // A request above the default limit is fine: the default limit is gone.
    let p = annotated(json!({(names::PROXY_MEMORY): "2Gi"}));
    assert_eq!(proxy_resources(&p), json!({"requests": {"memory": "2Gi"}}));
    // A limit below the default request is fine: the default request is gone.
    let p = annotated(json!({(names::PROXY_MEMORY_LIMIT): "100Mi"}));
    assert_eq!(proxy_resources(&p), json!({"limits": {"memory": "100Mi"}}));
    let p = annotated(json!({(names::PROXY_CPU): "3", (names::PROXY_MEMORY_LIMIT): "64Mi"}));
    assert_eq!(
        proxy_resources(&p),
        json!({"requests": {"cpu": "3"}, "limits": {"memory": "64Mi"}})
    );
}

#[test]
fn request_above_limit_is_denied_naming_both_annotations() {
    let p = annotated(json!({(names::PROXY_CPU): "3", (names::PROXY_CPU_LIMIT): "2"}));
    let message = denial(&run(&p)).to_owned();
    assert!(
        message.contains(&format!("cpu request 3 (annotation {})", names::PROXY_CPU))
            && message.contains(&format!("limit 2 (annotation {})", names::PROXY_CPU_LIMIT)),
        "{message}"
    );
    let p = annotated(json!({(names::PROXY_MEMORY): "1Gi", (names::PROXY_MEMORY_LIMIT): "64Mi"}));
    let message = denial(&run(&p)).to_owned();
    assert!(
        message.contains("64Mi")
            && message.contains("1Gi")
            && message.contains(names::PROXY_MEMORY_LIMIT),
        "{message}"
    );
    // Equal values written differently are fine.
    let p = annotated(json!({(names::PROXY_CPU): "1", (names::PROXY_CPU_LIMIT): "1000m"}));
    injected(&run(&p), &p);
}

#[test]
fn long_workload_names_give_a_valid_canonical_name() {
    // 68 characters; the 63rd is a letter.
    let long = format!("{}-{}", "node-log-collector".repeat(2), "x".repeat(31));
    assert_eq!(long.len(), 68);
    let mut p = pod(Value::Null, Value::Null);
    p.metadata.name = Some(format!("{long}-abcde"));
    p.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "apps/v1".into(),
            kind: "DaemonSet".into(),
            name: long.clone(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: None,
        },
    ]);
    let out = injected(&run(&p), &p);
    let name = out["metadata"]["labels"][names::CANONICAL_NAME]
        .as_str()
        .unwrap();
    assert_eq!(name, &long[..63]);
    assert!(labels::is_label_value(name), "{name}");
    assert_eq!(
        out["metadata"]["labels"][names::CANONICAL_REVISION],
        "latest"
    );
}

#[test]
fn bad_annotations_of_skipped_pods_are_not_judged() {
    let p = pod(
        json!({(names::INJECT): "false"}),
        json!({(names::PROXY_CPU): "x"}),
    );
    skip_reason(&run(&p));
}

#[test]
fn pod_without_metadata_is_injected_without_panicking() {
    let p: Pod =
        serde_json::from_value(json!({"spec": {"containers": [{"name": "app"}]}})).unwrap();
    let out = injected(&run(&p), &p);
    assert_eq!(
        names_of(&out["spec"]["containers"]),
        ["app", "meshkeeper-proxy"]
    );
    assert_eq!(out["metadata"]["labels"][names::TLS_MODE], "istio");
    assert_eq!(
        out["metadata"]["annotations"][names::DEFAULT_CONTAINER],
        "app"
    );
}

#[test]
fn odd_values_never_panic() {
    let odd = [
        "",
        " ",
        "１００m",
        "💥",
        "~/~1",
        "1e999999999999",
        "9".repeat(400).as_str(),
        "*",
        ",",
        "-",
    ]
    .map(str::to_owned);
    let keys = [
        names::INJECT,
        names::NATIVE_SIDECAR,
        names::LOG_LEVEL,
        names::PROXY_IMAGE,
        names::PROXY_IMAGE_TYPE,
        names::PROXY_CPU,
        names::PROXY_MEMORY_LIMIT,
        Setting::InterceptionMode.annotation(),
        Setting::IncludeOutboundIpRanges.annotation(),
        Setting::ExcludeInboundPorts.annotation(),
        Setting::ExcludeInterfaces.annotation(),
    ];
    for value in &odd {
        for key in keys {
            let p = pod(json!({(key): value}), json!({(key): value}));
            // Any outcome is fine; an injection must still apply cleanly.
            if let outcome @ Outcome::Injected { .. } = run(&p) {
                injected(&outcome, &p);
            }
        }
    }
}

// ---- templates, a declared istio-proxy, newer capture annotations ---------

/// A pod with the given containers (JSON) and annotations.
fn with_containers(containers: Value, annotations: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "gw-0", "labels": {"app": "gw"}, "annotations": annotations},
        "spec": {"containers": containers}
    }))
    .unwrap()
}

fn init_args(out: &Value) -> meshkeeper_init::capture::CaptureConfig {
    let args: Vec<String> =
        serde_json::from_value(out["spec"]["initContainers"][0]["args"].clone()).unwrap();
    meshkeeper_init::capture::CaptureConfig::from_args(args).unwrap()
}

#[test]
fn gateway_template_merges_the_declared_proxy_in_place_without_capture() {
    let p = with_containers(
        json!([{"name": "istio-proxy", "image": "auto",
                "ports": [{"containerPort": 8080, "name": "http2"}],
                "resources": {"limits": {"cpu": "4"}}}]),
        json!({(names::TEMPLATES): "gateway"}),
    );
    let outcome = run(&p);
    assert!(warnings(&outcome).is_empty(), "{:?}", warnings(&outcome));
    let out = injected(&outcome, &p);
    assert_eq!(out["spec"].get("initContainers"), None, "no capture");
    assert_eq!(names_of(&out["spec"]["containers"]), ["istio-proxy"]);
    let proxy = &out["spec"]["containers"][0];
    assert_eq!(proxy["image"], "envoyproxy/envoy:v1.36.2", "auto resolved");
    assert_eq!(proxy["command"], json!(["envoy"]));
    assert_eq!(proxy["resources"]["limits"]["cpu"], "4", "user wins");
    assert_eq!(
        proxy["resources"]["requests"]["cpu"], "100m",
        "template kept"
    );
    let ports: Vec<i64> = proxy["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [15090, 15021, 8080]);
    assert_eq!(proxy.get("restartPolicy"), None, "a main container");
    assert_eq!(
        out["spec"]["securityContext"]["sysctls"],
        json!([{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}])
    );
    let labels = &out["metadata"]["labels"];
    assert_eq!(labels.get(names::TLS_MODE), None);
    assert_eq!(labels[names::CANONICAL_NAME], "gw");
    // No application container: no default container to name.
    assert_eq!(
        out["metadata"]["annotations"].get(names::DEFAULT_CONTAINER),
        None
    );
    let status: InjectionStatus = serde_json::from_str(
        out["metadata"]["annotations"][names::STATUS]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(status.containers, ["istio-proxy"]);
    assert!(status.init_containers.is_empty());
    // The injected pod is not injected again.
    let again: Pod = serde_json::from_value(out).unwrap();
    assert!(skip_reason(&run(&again)).starts_with("already injected"));
}

#[test]
fn gateway_without_a_declared_proxy_adds_one_and_keeps_pod_sysctls() {
    let mut p = with_containers(
        json!([{"name": "helper", "image": "busybox"}]),
        json!({(names::TEMPLATES): "gateway", (names::NATIVE_SIDECAR): "true",
               (Setting::ExcludeOutboundPorts.annotation()): "99999"}),
    );
    p.spec.as_mut().unwrap().security_context = Some(
        serde_json::from_value(json!({
            "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "80"}]
        }))
        .unwrap(),
    );
    let outcome = run(&p);
    let w = warnings(&outcome).to_vec();
    let out = injected(&outcome, &p);
    assert_eq!(
        names_of(&out["spec"]["containers"]),
        ["helper", "meshkeeper-proxy"]
    );
    assert_eq!(out["spec"].get("initContainers"), None);
    assert_eq!(
        out["spec"]["securityContext"]["sysctls"],
        json!([{"name": "net.ipv4.ip_unprivileged_port_start", "value": "80"}]),
        "the pod's own value wins"
    );
    // A bad capture value is not judged (nothing is captured) but is named.
    assert!(
        w.iter()
            .any(|w| w.contains(Setting::ExcludeOutboundPorts.annotation())
                && w.contains("gateway template captures no traffic")),
        "{w:?}"
    );
    assert!(w.iter().any(|w| w.contains(names::NATIVE_SIDECAR)), "{w:?}");
}

#[test]
fn declared_proxy_is_merged_into_the_sidecar_never_left_beside_it() {
    let p = with_containers(
        json!([{"name": "istio-proxy", "image": "auto",
                "env": [{"name": "EXTRA", "value": "1"}]},
               {"name": "app", "image": "nginx"}]),
        json!({}),
    );
    let out = injected(&run(&p), &p);
    assert_eq!(names_of(&out["spec"]["containers"]), ["app", "istio-proxy"]);
    assert_eq!(
        names_of(&out["spec"]["initContainers"]),
        ["meshkeeper-init"]
    );
    let proxy = &out["spec"]["containers"][1];
    assert_eq!(proxy["image"], "envoyproxy/envoy:v1.36.2");
    let env = names_of(&proxy["env"]);
    assert!(
        env.contains(&"POD_NAME") && env.contains(&"EXTRA"),
        "{env:?}"
    );
    assert_eq!(
        out["metadata"]["annotations"][names::DEFAULT_CONTAINER],
        "app"
    );
    assert_eq!(out["metadata"]["labels"][names::TLS_MODE], "istio");

    // Native: the merged proxy moves to the init containers.
    let native = with_containers(
        json!([{"name": "app", "image": "nginx"},
               {"name": "istio-proxy", "image": "my/envoy:1"}]),
        json!({(names::NATIVE_SIDECAR): "true"}),
    );
    let out = injected(&run(&native), &native);
    assert_eq!(names_of(&out["spec"]["containers"]), ["app"]);
    assert_eq!(
        names_of(&out["spec"]["initContainers"]),
        ["meshkeeper-init", "istio-proxy"]
    );
    assert_eq!(
        out["spec"]["initContainers"][1]["image"], "my/envoy:1",
        "user's image wins"
    );
    assert_eq!(out["spec"]["initContainers"][1]["restartPolicy"], "Always");

    // The pod's only container stays a container, with a hint.
    let alone = with_containers(json!([{"name": "istio-proxy", "image": "auto"}]), json!({}));
    let outcome = run(&alone);
    let out = injected(&outcome, &alone);
    assert_eq!(names_of(&out["spec"]["containers"]), ["istio-proxy"]);
    assert!(
        warnings(&outcome)
            .iter()
            .any(|w| w.contains("inject.istio.io/templates=gateway")),
        "{:?}",
        warnings(&outcome)
    );
}

#[test]
fn grpc_templates_mount_the_bootstrap_and_inject_no_proxy() {
    for name in ["grpc-agent", "grpc-simple"] {
        let p = with_containers(
            json!([{"name": "server", "image": "grpc:1",
                    "env": [{"name": "PORT", "value": "50051"}]},
                   {"name": "client", "image": "grpc:1",
                    "env": [{"name": "GRPC_XDS_BOOTSTRAP", "value": "/mine.json"}]}]),
            json!({(names::TEMPLATES): name}),
        );
        let outcome = run(&p);
        let out = injected(&outcome, &p);
        assert_eq!(out["spec"].get("initContainers"), None, "{name}");
        assert_eq!(
            names_of(&out["spec"]["containers"]),
            ["server", "client"],
            "{name}"
        );
        let server = &out["spec"]["containers"][0];
        assert_eq!(
            server["env"],
            json!([{"name": "PORT", "value": "50051"},
                   {"name": "GRPC_XDS_BOOTSTRAP", "value": "/etc/meshkeeper/proxy/grpc-bootstrap.json"}])
        );
        assert_eq!(
            server["volumeMounts"],
            json!([{"name": "meshkeeper-proxy-config", "mountPath": "/etc/meshkeeper/proxy", "readOnly": true}])
        );
        // The container's own variable wins, and the author hears about it.
        let client = &out["spec"]["containers"][1];
        assert_eq!(
            client["env"],
            json!([{"name": "GRPC_XDS_BOOTSTRAP", "value": "/mine.json"}])
        );
        assert!(
            warnings(&outcome)
                .iter()
                .any(|w| w.contains("client") && w.contains("/mine.json")),
            "{:?}",
            warnings(&outcome)
        );
        assert_eq!(
            names_of(&out["spec"]["volumes"]),
            ["meshkeeper-proxy-config"]
        );
        assert_eq!(out["metadata"]["labels"].get(names::TLS_MODE), None);
        let status: InjectionStatus = serde_json::from_str(
            out["metadata"]["annotations"][names::STATUS]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert!(status.containers.is_empty() && status.init_containers.is_empty());
    }
}

#[test]
fn grpc_refuses_an_istio_proxy_it_cannot_resolve() {
    let p = with_containers(
        json!([{"name": "app", "image": "grpc:1"}, {"name": "istio-proxy", "image": "auto"}]),
        json!({(names::TEMPLATES): "grpc-agent"}),
    );
    let message = denial(&run(&p)).to_owned();
    assert!(
        message.contains("istio-proxy")
            && message.contains("\"auto\"")
            && message.contains(names::TEMPLATES),
        "{message}"
    );
}

#[test]
fn unknown_template_is_refused_with_the_known_ones() {
    let p = annotated(json!({(names::TEMPLATES): "spire"}));
    let message = denial(&run(&p)).to_owned();
    assert!(
        message.contains("inject.istio.io/templates=\"spire\"")
            && message.contains("sidecar, gateway, grpc-agent, grpc-simple"),
        "{message}"
    );
}

#[test]
fn newer_capture_annotations_reach_the_init_container() {
    let p = annotated(json!({
        (Setting::IncludeOutboundPorts.annotation()): "443",
        "status.sidecar.istio.io/port": "15555",
        "traffic.sidecar.istio.io/kubevirtInterfaces": "k6t-eth0",
    }));
    let out = injected(&run(&p), &p);
    let config = init_args(&out);
    assert_eq!(config.include_outbound_ports, [443]);
    assert_eq!(config.status_port, 15555);
    assert_eq!(config.reroute_virtual_interfaces, ["k6t-eth0"]);

    // The current name wins over the older one, which is named in a warning.
    let p = annotated(json!({
        "istio.io/reroute-virtual-interfaces": "tap0",
        "traffic.sidecar.istio.io/kubevirtInterfaces": "k6t-eth0",
    }));
    let outcome = run(&p);
    assert!(
        warnings(&outcome)
            .iter()
            .any(|w| w.contains("kubevirtInterfaces") && w.contains("ignored")),
        "{:?}",
        warnings(&outcome)
    );
    assert_eq!(
        init_args(&injected(&outcome, &p)).reroute_virtual_interfaces,
        ["tap0"]
    );

    // Bad values name the annotation actually used.
    for (annotation, value) in [
        ("traffic.sidecar.istio.io/kubevirtInterfaces", "eth 0"),
        ("status.sidecar.istio.io/port", "http"),
        ("traffic.sidecar.istio.io/includeOutboundPorts", "0"),
    ] {
        let p = annotated(json!({(annotation): value}));
        let message = denial(&run(&p)).to_owned();
        assert!(
            message.contains(&format!("{annotation}={value:?}")),
            "{message}"
        );
    }
}
