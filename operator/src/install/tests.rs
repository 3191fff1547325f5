use serde_json::{Value, json};

use super::*;
use meshkeeper_crds::meshkeeper::mesh::{
    CertificateSettings, CertificateSource, FailurePolicy, RevisionTag, WebhookSettings,
};

const NS: &str = "meshkeeper-system";
const CA: &[u8] = b"-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";

fn revision(name: &str, version: &str) -> MeshRevision {
    let mut revision = MeshRevision::new(
        name,
        meshkeeper_crds::meshkeeper::mesh_revision::MeshRevisionSpec {
            mesh: "default".into(),
            version: version.into(),
            ..Default::default()
        },
    );
    revision.metadata.uid = Some(format!("uid-{name}"));
    revision
}

/// A revision tag: its name and the revision it names, if any.
type Tag<'a> = (&'a str, Option<&'a str>);

fn mesh(tags: &[Tag]) -> Mesh {
    let mut mesh = Mesh::new(
        "default",
        meshkeeper_crds::meshkeeper::mesh::MeshSpec {
            version: "1.2.0".into(),
            revision_tags: (!tags.is_empty()).then(|| {
                tags.iter()
                    .map(|(name, revision)| RevisionTag {
                        name: (*name).into(),
                        revision: revision.map(str::to_owned),
                    })
                    .collect()
            }),
            ..Default::default()
        },
    );
    mesh.metadata.uid = Some("uid-mesh".into());
    mesh
}

fn with_webhook(
    config: &mut meshkeeper_crds::meshkeeper::mesh::MeshConfig,
    webhook: WebhookSettings,
) {
    config.webhook = Some(webhook);
}

fn objects(revision: &MeshRevision) -> Vec<Desired> {
    revision_objects(&RevisionInput {
        revision,
        namespace: NS,
        images: &Images::default(),
        ca_bundle: Some(CA),
        tls_secret: "meshkeeper-webhook-default-1-2-0-tls",
    })
    .unwrap()
}

fn find<'a>(objects: &'a [Desired], kind: &str) -> &'a Value {
    &objects
        .iter()
        .find(|d| d.api.kind == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
        .object
}

fn webhook_entries(config: &Value) -> &Vec<Value> {
    config["webhooks"].as_array().unwrap()
}

#[test]
fn a_revision_installs_its_objects_in_apply_order_with_kind_and_api_version() {
    let objects = objects(&revision("default-1-2-0", "1.2.0"));
    let kinds: Vec<&str> = objects.iter().map(|d| d.api.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Service",
            "Deployment",
            "PodDisruptionBudget",
            "MutatingWebhookConfiguration"
        ]
    );
    for desired in &objects {
        assert_eq!(desired.object["kind"], desired.api.kind.as_str());
        assert_eq!(
            desired.object["apiVersion"],
            desired.api.api_version.as_str()
        );
        assert_eq!(desired.object["metadata"]["name"], desired.name.as_str());
        let namespaced = !matches!(
            desired.api.kind.as_str(),
            "ClusterRole" | "ClusterRoleBinding" | "MutatingWebhookConfiguration"
        );
        assert_eq!(
            desired.namespace.as_deref(),
            namespaced.then_some(NS),
            "{}",
            desired.describe()
        );
        let labels = &desired.object["metadata"]["labels"];
        assert_eq!(
            labels["app.kubernetes.io/managed-by"],
            "meshkeeper-operator"
        );
        assert_eq!(labels["app.kubernetes.io/name"], "meshkeeper-webhook");
        assert_eq!(labels["app.kubernetes.io/instance"], "default");
        assert_eq!(labels["app.kubernetes.io/version"], "1.2.0");
        assert_eq!(labels["meshkeeper.io/revision"], "default-1-2-0");
        assert!(labels["app.kubernetes.io/component"].is_string());
    }
    assert_eq!(
        find(&objects, "PodDisruptionBudget")["apiVersion"],
        "policy/v1"
    );
    assert_eq!(find(&objects, "Deployment")["apiVersion"], "apps/v1");
}

#[test]
fn owned_kinds_cover_every_object_with_its_scope() {
    let active = revision("default-1-2-0", "1.2.0");
    let mut all = objects(&active);
    all.extend(mesh_with(&[("prod", None)], &active, &[]).unwrap());
    let kinds = owned_kinds();
    for desired in &all {
        let (api, namespaced) = kinds
            .iter()
            .find(|(api, _)| *api == desired.api)
            .unwrap_or_else(|| panic!("{} is not in owned_kinds", desired.describe()));
        assert_eq!(*namespaced, desired.namespace.is_some(), "{}", api.kind);
    }
    // The eight kinds built here, plus the Secrets the controller writes.
    assert_eq!(kinds.len(), 9);
    assert!(
        kinds
            .iter()
            .any(|(api, namespaced)| api.kind == "Secret" && *namespaced)
    );
}

#[test]
fn every_object_is_controlled_by_the_revision() {
    for desired in objects(&revision("canary", "1.3.0")) {
        assert_eq!(
            desired.object["metadata"]["ownerReferences"],
            json!([{
                "apiVersion": "meshkeeper.io/v1alpha1",
                "kind": "MeshRevision",
                "name": "canary",
                "uid": "uid-canary",
                "controller": true,
                "blockOwnerDeletion": true
            }]),
            "{}",
            desired.describe()
        );
    }
}

#[test]
fn mesh_wide_objects_are_controlled_by_the_mesh() {
    let active = revision("default-1-2-0", "1.2.0");
    let objects = mesh_objects(&MeshInput {
        mesh: &mesh(&[("prod", None)]),
        namespace: NS,
        active: &active,
        revisions: &[],
        ca_bundle: Some(CA),
    })
    .unwrap();
    assert_eq!(objects.len(), 2);
    for desired in objects {
        let owners = &desired.object["metadata"]["ownerReferences"];
        assert_eq!(owners[0]["kind"], "Mesh");
        assert_eq!(owners[0]["uid"], "uid-mesh");
        assert_eq!(owners[0]["controller"], true);
        assert_eq!(owners[0]["blockOwnerDeletion"], true);
    }
}

#[test]
fn an_owner_the_api_server_has_not_seen_is_refused() {
    let mut unsaved = revision("canary", "1.3.0");
    unsaved.metadata.uid = None;
    let err = revision_objects(&RevisionInput {
        revision: &unsaved,
        namespace: NS,
        images: &Images::default(),
        ca_bundle: Some(CA),
        tls_secret: "s",
    })
    .unwrap_err();
    assert_eq!(err.field(), Some("metadata.uid"), "{err}");
}

#[test]
fn the_deployment_runs_the_versioned_images_with_the_webhook_flags() {
    let objects = objects(&revision("default-1-2-0", "v1.2.0"));
    let deployment = find(&objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["name"], "webhook");
    assert_eq!(container["image"], "ghcr.io/meshkeeper/webhook:1.2.0");
    assert!(container.get("imagePullPolicy").is_none());
    assert_eq!(
        container["args"],
        json!([
            "--tls-cert-file",
            "/etc/meshkeeper/tls/tls.crt",
            "--tls-key-file",
            "/etc/meshkeeper/tls/tls.key",
            "--revision",
            "default-1-2-0",
            "--init-image",
            "ghcr.io/meshkeeper/init:1.2.0",
            "--proxy-image",
            meshkeeper_webhook::inject::DEFAULT_PROXY_IMAGE,
            "--log-format",
            "json"
        ])
    );
    assert_eq!(
        container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["readinessProbe"]["httpGet"]["scheme"], "HTTPS");
    assert_eq!(container["ports"][0]["containerPort"], 9443);
    assert_eq!(container["volumeMounts"][0]["readOnly"], true);
    assert_eq!(
        pod["volumes"][0]["secret"]["secretName"],
        "meshkeeper-webhook-default-1-2-0-tls"
    );
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert_ne!(security["runAsUser"], 0);
    assert_eq!(
        pod["serviceAccountName"],
        "meshkeeper-webhook-default-1-2-0"
    );
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
            ["topologyKey"],
        "kubernetes.io/hostname"
    );
    // The selector and the Service's selector pick the same pods, and the
    // pod template carries them.
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    assert_eq!(&find(&objects, "Service")["spec"]["selector"], selector);
    for (key, value) in selector.as_object().unwrap() {
        assert_eq!(
            &deployment["spec"]["template"]["metadata"]["labels"][key],
            value
        );
    }
}

#[test]
fn the_service_maps_443_to_the_container_port() {
    let objects = objects(&revision("canary", "1.3.0"));
    let port = &find(&objects, "Service")["spec"]["ports"][0];
    assert_eq!(port["port"], 443);
    assert_eq!(port["targetPort"], 9443);
}

fn with_replicas(replicas: Option<i32>) -> MeshRevision {
    let mut revision = revision("canary", "1.3.0");
    with_webhook(
        &mut revision.spec.config,
        WebhookSettings {
            replicas,
            ..Default::default()
        },
    );
    revision
}

#[test]
fn replicas_default_to_two_and_the_budget_never_blocks_a_drain() {
    let cases = [
        (None, 2, json!({"minAvailable": 1})),
        (Some(3), 3, json!({"minAvailable": 1})),
        (Some(1), 1, json!({"maxUnavailable": 1})),
    ];
    for (asked, replicas, budget) in cases {
        let objects = objects(&with_replicas(asked));
        assert_eq!(find(&objects, "Deployment")["spec"]["replicas"], replicas);
        let spec = &find(&objects, "PodDisruptionBudget")["spec"];
        let (key, value) = budget.as_object().unwrap().iter().next().unwrap();
        assert_eq!(&spec[key], value, "{asked:?}");
        let other = if key == "minAvailable" {
            "maxUnavailable"
        } else {
            "minAvailable"
        };
        assert!(spec.get(other).is_none(), "{asked:?}: {spec}");
        assert_eq!(spec["unhealthyPodEvictionPolicy"], "AlwaysAllow");
    }
    let err = revision_objects(&RevisionInput {
        revision: &with_replicas(Some(0)),
        namespace: NS,
        images: &Images::default(),
        ca_bundle: Some(CA),
        tls_secret: "s",
    })
    .unwrap_err();
    assert_eq!(err.field(), Some("spec.webhook.replicas"), "{err}");
}

#[test]
fn the_injector_targets_the_revision_service_by_default() {
    let objects = objects(&revision("canary", "1.3.0"));
    let config = find(&objects, "MutatingWebhookConfiguration");
    assert_eq!(
        config["metadata"]["name"],
        "meshkeeper-sidecar-injector-canary"
    );
    assert_eq!(config["metadata"]["labels"]["istio.io/rev"], "canary");
    for entry in webhook_entries(config) {
        let client = &entry["clientConfig"];
        assert!(client.get("url").is_none());
        assert_eq!(client["service"]["name"], "meshkeeper-webhook-canary");
        assert_eq!(client["service"]["namespace"], NS);
        assert_eq!(client["service"]["port"], 443);
        assert_eq!(
            client["caBundle"],
            json!(k8s_openapi::ByteString(CA.to_vec()))
        );
        assert_eq!(entry["failurePolicy"], "Fail");
        assert_eq!(entry["timeoutSeconds"], 10);
    }
}

#[test]
fn the_url_override_replaces_the_service_with_the_mesh_settings() {
    let mut revision = revision("canary", "1.3.0");
    with_webhook(
        &mut revision.spec.config,
        WebhookSettings {
            url: Some("https://127.0.0.1:9443".into()),
            failure_policy: Some(FailurePolicy::Ignore),
            timeout_seconds: Some(5),
            ..Default::default()
        },
    );
    let objects = objects(&revision);
    let config = find(&objects, "MutatingWebhookConfiguration");
    let urls: Vec<&str> = webhook_entries(config)
        .iter()
        .map(|entry| {
            assert!(entry["clientConfig"].get("service").is_none());
            assert_eq!(entry["failurePolicy"], "Ignore");
            assert_eq!(entry["timeoutSeconds"], 5);
            entry["clientConfig"]["url"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        urls,
        [
            "https://127.0.0.1:9443/inject/namespace",
            "https://127.0.0.1:9443/inject/object"
        ]
    );
}

fn cert_manager() -> WebhookSettings {
    WebhookSettings {
        certificate: Some(CertificateSettings {
            source: Some(CertificateSource::CertManager),
            secret_name: Some("webhook-cert".into()),
            cert_manager_certificate: Some("meshkeeper-system/webhook".into()),
            ca_bundle: None,
        }),
        ..Default::default()
    }
}

#[test]
fn with_cert_manager_no_ca_bundle_is_written_and_cert_manager_is_asked_to_inject_it() {
    let mut rev = revision("default-1-2-0", "1.2.0");
    with_webhook(&mut rev.spec.config, cert_manager());
    // A bundle passed by mistake is not written either.
    let objects = revision_objects(&RevisionInput {
        revision: &rev,
        namespace: NS,
        images: &Images::default(),
        ca_bundle: Some(CA),
        tls_secret: "meshkeeper-webhook-default-1-2-0-tls",
    })
    .unwrap();
    let injector = find(&objects, "MutatingWebhookConfiguration");
    let mut mesh = mesh(&[("prod", None)]);
    with_webhook(&mut mesh.spec.config, cert_manager());
    let wide = mesh_objects(&MeshInput {
        mesh: &mesh,
        namespace: NS,
        active: &rev,
        revisions: &[],
        ca_bundle: None,
    })
    .unwrap();
    let configs = [
        injector,
        find(&wide, "ValidatingWebhookConfiguration"),
        find(&wide, "MutatingWebhookConfiguration"),
    ];
    for config in configs {
        assert_eq!(
            config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "meshkeeper-system/webhook"
        );
        for entry in webhook_entries(config) {
            assert!(entry["clientConfig"].get("caBundle").is_none(), "{entry}");
        }
    }
    let pod = &find(&objects, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "webhook-cert");
}

#[test]
fn a_user_secret_is_mounted_and_its_ca_written() {
    let mut rev = revision("canary", "1.3.0");
    with_webhook(
        &mut rev.spec.config,
        WebhookSettings {
            certificate: Some(CertificateSettings {
                source: Some(CertificateSource::Secret),
                secret_name: Some("my-webhook-tls".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    let objects = objects(&rev);
    let pod = &find(&objects, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "my-webhook-tls");
    let injector = find(&objects, "MutatingWebhookConfiguration");
    assert!(injector["metadata"].get("annotations").is_none());
    assert!(webhook_entries(injector)[0]["clientConfig"]["caBundle"].is_string());

    let err = revision_objects(&RevisionInput {
        revision: &rev,
        namespace: NS,
        images: &Images::default(),
        ca_bundle: None,
        tls_secret: "s",
    })
    .unwrap_err();
    assert_eq!(
        err.field(),
        Some("spec.webhook.certificate.caBundle"),
        "{err}"
    );
    assert!(err.to_string().contains("ca.crt"), "{err}");
}

#[test]
fn self_signed_without_the_operator_ca_is_an_error_not_an_untrusted_webhook() {
    let err = revision_objects(&RevisionInput {
        revision: &revision("canary", "1.3.0"),
        namespace: NS,
        images: &Images::default(),
        ca_bundle: None,
        tls_secret: "s",
    })
    .unwrap_err();
    assert!(matches!(err, InstallError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("SelfSigned"), "{err}");
}

fn mesh_with(
    tags: &[Tag],
    active: &MeshRevision,
    revisions: &[MeshRevision],
) -> Result<Vec<Desired>, InstallError> {
    mesh_objects(&MeshInput {
        mesh: &mesh(tags),
        namespace: NS,
        active,
        revisions,
        ca_bundle: Some(CA),
    })
}

fn entry_names(config: &Value) -> Vec<&str> {
    webhook_entries(config)
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect()
}

fn requirements(selector: &Value) -> Vec<String> {
    selector["matchExpressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["key"].as_str().unwrap(),
                r["operator"].as_str().unwrap(),
                r.get("values").map(Value::to_string).unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn the_validator_is_named_once_for_the_mesh_and_served_by_the_active_revision() {
    let active = revision("default-1-3-0", "1.3.0");
    let objects = mesh_with(&[], &active, &[revision("default-1-2-0", "1.2.0")]).unwrap();
    assert_eq!(objects.len(), 1);
    let validator = find(&objects, "ValidatingWebhookConfiguration");
    assert_eq!(objects[0].name, "meshkeeper-validator");
    assert_eq!(
        validator["metadata"]["labels"]["meshkeeper.io/revision"],
        "default-1-3-0"
    );
    assert_eq!(
        validator["metadata"]["labels"]["app.kubernetes.io/component"],
        "validator"
    );
    assert_eq!(
        webhook_entries(validator)[0]["clientConfig"]["service"]["name"],
        "meshkeeper-webhook-default-1-3-0"
    );
}

#[test]
fn the_default_tag_also_answers_istio_injection_and_opted_in_pods() {
    let active = revision("default-1-3-0", "1.3.0");
    let old = revision("default-1-2-0", "1.2.0");
    let objects = mesh_with(
        &[("default", Some("default-1-2-0")), ("prod", None)],
        &active,
        std::slice::from_ref(&old),
    )
    .unwrap();
    let names: Vec<&str> = objects.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "meshkeeper-validator",
            "meshkeeper-sidecar-injector-tag-default",
            "meshkeeper-sidecar-injector-tag-prod"
        ]
    );

    let default = &objects[1].object;
    assert_eq!(
        entry_names(default),
        [
            "namespace.sidecar-injector.meshkeeper.io",
            "rev.namespace.sidecar-injector.meshkeeper.io",
            "rev.object.sidecar-injector.meshkeeper.io",
            "object.sidecar-injector.meshkeeper.io"
        ]
    );
    let entries = webhook_entries(default);
    assert!(
        requirements(&entries[0]["namespaceSelector"])
            .contains(&r#"istio-injection In ["enabled"]"#.to_owned())
    );
    assert!(
        requirements(&entries[1]["namespaceSelector"])
            .contains(&r#"istio.io/rev In ["default"]"#.to_owned())
    );
    assert!(
        requirements(&entries[3]["objectSelector"])
            .contains(&r#"sidecar.istio.io/inject In ["true"]"#.to_owned())
    );
    for entry in entries {
        assert_eq!(
            entry["clientConfig"]["service"]["name"],
            "meshkeeper-webhook-default-1-2-0"
        );
    }
    let labels = &default["metadata"]["labels"];
    assert_eq!(labels["istio.io/tag"], "default");
    assert_eq!(labels["istio.io/rev"], "default-1-2-0");
    assert_eq!(labels["meshkeeper.io/revision"], "default-1-2-0");
    assert_eq!(labels["app.kubernetes.io/version"], "1.2.0");

    // Any other tag answers its own istio.io/rev only, at the active
    // revision when it names none.
    let prod = &objects[2].object;
    assert_eq!(
        entry_names(prod),
        [
            "rev.namespace.sidecar-injector.meshkeeper.io",
            "rev.object.sidecar-injector.meshkeeper.io"
        ]
    );
    let entries = webhook_entries(prod);
    assert!(
        requirements(&entries[0]["namespaceSelector"])
            .contains(&r#"istio.io/rev In ["prod"]"#.to_owned())
    );
    assert!(
        requirements(&entries[1]["objectSelector"])
            .contains(&r#"istio.io/rev In ["prod"]"#.to_owned())
    );
    for entry in entries {
        assert_eq!(
            entry["clientConfig"]["service"]["name"],
            "meshkeeper-webhook-default-1-3-0"
        );
        let all = requirements(&entry["namespaceSelector"]).join(" ")
            + &requirements(&entry["objectSelector"]).join(" ");
        assert!(
            !all.contains("enabled") && !all.contains(r#"["true"]"#),
            "{all}"
        );
    }
}

#[test]
fn tags_the_api_server_or_the_injector_would_trip_on_name_the_field() {
    let active = revision("default", "1.3.0");
    let cases: [(&[Tag], &str, &str); 4] = [
        (
            &[("prod", None), ("Prod!", None)],
            "spec.revisionTags[1].name",
            "lowercase",
        ),
        (
            &[("prod", None), ("prod", None)],
            "spec.revisionTags[1].name",
            "spec.revisionTags[0]",
        ),
        (
            &[("default", None)],
            "spec.revisionTags[0].name",
            "no revision has",
        ),
        (
            &[("prod", Some("gone"))],
            "spec.revisionTags[0].revision",
            "one of the mesh's revisions: default",
        ),
    ];
    for (tags, field, allowed) in cases {
        let err = mesh_with(tags, &active, &[]).unwrap_err();
        assert_eq!(err.field(), Some(field), "{err}");
        let message = err.to_string();
        assert!(message.starts_with("Mesh/default: "), "{message}");
        assert!(message.contains(allowed), "{message}");
    }
}

#[test]
fn revision_inputs_the_api_server_would_refuse_name_the_field() {
    let mut bad_url = revision("canary", "1.3.0");
    with_webhook(
        &mut bad_url.spec.config,
        WebhookSettings {
            url: Some("http://127.0.0.1:9443".into()),
            ..Default::default()
        },
    );
    let mut bad_timeout = revision("canary", "1.3.0");
    with_webhook(
        &mut bad_timeout.spec.config,
        WebhookSettings {
            timeout_seconds: Some(31),
            ..Default::default()
        },
    );
    let mut cert_manager_without_certificate = revision("canary", "1.3.0");
    let mut settings = cert_manager();
    if let Some(c) = settings.certificate.as_mut() {
        c.cert_manager_certificate = Some("no-slash".into());
    }
    with_webhook(&mut cert_manager_without_certificate.spec.config, settings);
    let cases = [
        (revision("Canary_1", "1.3.0"), "metadata.name", "Canary_1"),
        (
            revision(&"r".repeat(45), "1.3.0"),
            "metadata.name",
            "1 to 44",
        ),
        (revision("canary", "latest"), "spec.version", "0.2.0-rc.1"),
        (bad_url, "spec.webhook.url", "https://"),
        (bad_timeout, "spec.webhook.timeoutSeconds", "1 to 30"),
        (
            cert_manager_without_certificate,
            "spec.webhook.certificate.certManagerCertificate",
            "namespace/name",
        ),
    ];
    for (revision, field, hint) in cases {
        let err = revision_objects(&RevisionInput {
            revision: &revision,
            namespace: NS,
            images: &Images::default(),
            ca_bundle: Some(CA),
            tls_secret: "s",
        })
        .unwrap_err();
        assert_eq!(err.field(), Some(field), "{err}");
        let message = err.to_string();
        assert!(
            message.contains(field) && message.contains(hint),
            "{message}"
        );
        assert!(message.starts_with("MeshRevision/"), "{message}");
    }
}

#[test]
fn the_role_reads_only_what_the_webhook_watches() {
    let objects = objects(&revision("canary", "1.3.0"));
    let rules = find(&objects, "ClusterRole")["rules"]
        .as_array()
        .unwrap()
        .clone();
    let mut granted: Vec<String> = Vec::new();
    for rule in &rules {
        assert_eq!(rule["verbs"], json!(["list", "watch"]), "{rule}");
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                granted.push(format!(
                    "{}/{}",
                    group.as_str().unwrap(),
                    resource.as_str().unwrap()
                ));
            }
        }
    }
    granted.sort();
    assert_eq!(
        granted,
        [
            "/namespaces",
            "/pods",
            "/services",
            "meshkeeper.io/meshrevisions",
            "networking.istio.io/destinationrules",
            "networking.istio.io/gateways",
            "networking.istio.io/proxyconfigs",
            "networking.istio.io/serviceentries",
            "networking.istio.io/virtualservices"
        ]
    );
    assert_eq!(rules[0]["resourceNames"], json!(["canary"]));
    let binding = find(&objects, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], "meshkeeper-webhook-canary");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "meshkeeper-webhook-canary", "namespace": NS}])
    );
}

#[test]
fn the_pull_policy_is_set_only_when_given() {
    let images = Images {
        pull_policy: "Always".into(),
        webhook_repository: "registry.local/webhook".into(),
        ..Images::default()
    };
    let objects = revision_objects(&RevisionInput {
        revision: &revision("canary", "1.3.0"),
        namespace: NS,
        images: &images,
        ca_bundle: Some(CA),
        tls_secret: "s",
    })
    .unwrap();
    let container = &find(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(container["image"], "registry.local/webhook:1.3.0");
}

#[test]
fn pull_secrets_reach_the_webhook_pods_only_when_given() {
    let deployment_spec = |images: &Images| {
        let objects = revision_objects(&RevisionInput {
            revision: &revision("canary", "1.3.0"),
            namespace: NS,
            images,
            ca_bundle: Some(CA),
            tls_secret: "s",
        })
        .unwrap();
        find(&objects, "Deployment")["spec"]["template"]["spec"].clone()
    };
    let with = Images {
        pull_secrets: vec!["registry-a".into(), "registry-b".into()],
        ..Images::default()
    };
    assert_eq!(
        deployment_spec(&with)["imagePullSecrets"],
        json!([{"name": "registry-a"}, {"name": "registry-b"}])
    );
    assert!(
        deployment_spec(&Images::default())
            .get("imagePullSecrets")
            .is_none()
    );
}
