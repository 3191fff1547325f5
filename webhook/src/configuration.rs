//! The MutatingWebhookConfiguration that sends pod creations to a
//! revision's injector, and the ValidatingWebhookConfiguration that sends
//! networking configuration to its validator. Pure: the operator applies
//! what this builds, the end-to-end tests register it against a webhook on
//! loopback.
//!
//! Which pods reach the webhook follows Istio's label contract; the
//! injector still makes the final decision (policy, selectors, annotations):
//!
//! | entry (path)                                        | namespace                                          | pod                                                  |
//! |-----------------------------------------------------|----------------------------------------------------|------------------------------------------------------|
//! | `namespace.sidecar-injector.meshkeeper.io` (`/inject/namespace`, revision `default` only) | `istio-injection=enabled`            | not `sidecar.istio.io/inject=false`                  |
//! | `rev.namespace.sidecar-injector.meshkeeper.io` (`/inject/namespace`) | `istio.io/rev=<rev>`, no `istio-injection` | not `sidecar.istio.io/inject=false`                  |
//! | `rev.object.sidecar-injector.meshkeeper.io` (`/inject/object`) | neither label                                   | `istio.io/rev=<rev>`, not `sidecar.istio.io/inject=false` |
//! | `object.sidecar-injector.meshkeeper.io` (`/inject/object`, revision `default` only) | neither label                      | `sidecar.istio.io/inject=true`, no `istio.io/rev`    |
//!
//! Every namespace selector also leaves out `kube-system`, `kube-public`,
//! `kube-node-lease` and meshkeeper's own namespace.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use meshkeeper_crds::meshkeeper::mesh::FailurePolicy;

use crate::inject::labels::is_label_value;
use crate::inject::names;

/// Path of the entries for pods whose namespace opted in.
pub const NAMESPACE_PATH: &str = "/inject/namespace";
/// Path of the entries for pods that opted in themselves.
pub const OBJECT_PATH: &str = "/inject/object";
pub use crate::inject::DEFAULT_REVISION;
pub use crate::inject::names::SYSTEM_NAMESPACES;
/// Seconds the API server waits for the injector unless told otherwise.
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 10;

/// Names of the entries (unique within one configuration).
pub const NAMESPACE_ENTRY: &str = "namespace.sidecar-injector.meshkeeper.io";
pub const REV_NAMESPACE_ENTRY: &str = "rev.namespace.sidecar-injector.meshkeeper.io";
pub const REV_OBJECT_ENTRY: &str = "rev.object.sidecar-injector.meshkeeper.io";
pub const OBJECT_ENTRY: &str = "object.sidecar-injector.meshkeeper.io";

const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Where the API server sends the reviews.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An HTTPS base URL such as `https://127.0.0.1:9443` (out-of-cluster
    /// development, end-to-end tests); each entry's path is appended.
    Url(String),
    /// The webhook's Service.
    Service {
        name: String,
        namespace: String,
        port: i32,
    },
}

/// Everything the configuration of one revision depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectorWebhook {
    /// Name of the MutatingWebhookConfiguration object.
    pub name: String,
    pub revision: String,
    /// meshkeeper's own namespace (excluded from injection).
    pub own_namespace: String,
    pub target: Target,
    /// PEM CA certificate(s) the API server verifies the webhook with.
    pub ca_bundle: Vec<u8>,
    pub failure_policy: FailurePolicy,
    pub timeout_seconds: i32,
}

impl InjectorWebhook {
    /// With the defaults: name [`default_name`], failure policy `Fail`,
    /// timeout [`DEFAULT_TIMEOUT_SECONDS`].
    pub fn new(
        revision: impl Into<String>,
        own_namespace: impl Into<String>,
        target: Target,
        ca_bundle: impl Into<Vec<u8>>,
    ) -> Self {
        let revision = revision.into();
        Self {
            name: default_name(&revision),
            revision,
            own_namespace: own_namespace.into(),
            target,
            ca_bundle: ca_bundle.into(),
            failure_policy: FailurePolicy::Fail,
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
        }
    }
}

/// `meshkeeper-sidecar-injector-<revision>`.
pub fn default_name(revision: &str) -> String {
    format!("meshkeeper-sidecar-injector-{revision}")
}

/// A value the API server would refuse, named with what it accepts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "revision {0:?} is not a valid label value (1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
    )]
    Revision(String),
    #[error(
        "webhook URL {0:?} is not usable: it must start with https:// and carry no query or fragment"
    )]
    Url(String),
    #[error("webhook Service port {0} is out of range (1 to 65535)")]
    Port(i32),
    #[error("timeoutSeconds {0} is out of range (1 to 30)")]
    Timeout(i32),
}

/// Builds the configuration, or says which input the API server would
/// refuse.
pub fn mutating_webhook_configuration(
    webhook: &InjectorWebhook,
) -> Result<MutatingWebhookConfiguration, ConfigError> {
    validate(webhook)?;
    let revision = webhook.revision.as_str();
    let mut entries = Vec::with_capacity(4);
    if revision == DEFAULT_REVISION {
        entries.push(entry(
            webhook,
            NAMESPACE_ENTRY,
            NAMESPACE_PATH,
            vec![label_in(names::INJECTION, "enabled")],
            vec![],
        ));
    }
    entries.push(entry(
        webhook,
        REV_NAMESPACE_ENTRY,
        NAMESPACE_PATH,
        vec![
            label_in(names::REVISION, revision),
            label_absent(names::INJECTION),
        ],
        vec![],
    ));
    entries.push(entry(
        webhook,
        REV_OBJECT_ENTRY,
        OBJECT_PATH,
        vec![
            label_absent(names::INJECTION),
            label_absent(names::REVISION),
        ],
        vec![label_in(names::REVISION, revision)],
    ));
    if revision == DEFAULT_REVISION {
        // A pod naming its revision goes to that revision alone.
        entries.push(entry(
            webhook,
            OBJECT_ENTRY,
            OBJECT_PATH,
            vec![
                label_absent(names::INJECTION),
                label_absent(names::REVISION),
            ],
            vec![
                label_in(names::INJECT, "true"),
                label_absent(names::REVISION),
            ],
        ));
    }
    Ok(MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(webhook.name.clone()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "meshkeeper".to_string(),
                ),
                (names::REVISION.to_string(), webhook.revision.clone()),
            ])),
            ..ObjectMeta::default()
        },
        webhooks: Some(entries),
    })
}

fn validate(webhook: &InjectorWebhook) -> Result<(), ConfigError> {
    check_common(&webhook.revision, &webhook.target, webhook.timeout_seconds)
}

/// What both configurations require of the revision, target and timeout.
fn check_common(revision: &str, target: &Target, timeout_seconds: i32) -> Result<(), ConfigError> {
    if !is_label_value(revision) || revision.is_empty() {
        return Err(ConfigError::Revision(revision.to_string()));
    }
    match target {
        Target::Url(url) => {
            let usable = url.starts_with("https://")
                && url.len() > "https://".len()
                && !url.contains(['?', '#']);
            if !usable {
                return Err(ConfigError::Url(url.clone()));
            }
        }
        Target::Service { port, .. } => {
            if !(1..=65535).contains(port) {
                return Err(ConfigError::Port(*port));
            }
        }
    }
    if !(1..=30).contains(&timeout_seconds) {
        return Err(ConfigError::Timeout(timeout_seconds));
    }
    Ok(())
}

fn entry(
    webhook: &InjectorWebhook,
    name: &str,
    path: &str,
    namespace_requirements: Vec<LabelSelectorRequirement>,
    object_requirements: Vec<LabelSelectorRequirement>,
) -> MutatingWebhook {
    let mut namespace_requirements = namespace_requirements;
    namespace_requirements.push(not_system_namespace(&webhook.own_namespace));
    let mut object_requirements = object_requirements;
    object_requirements.push(label_not_in(names::INJECT, "false"));
    MutatingWebhook {
        name: name.to_string(),
        client_config: client_config(&webhook.target, &webhook.ca_bundle, path),
        rules: Some(vec![RuleWithOperations {
            operations: Some(vec!["CREATE".to_string()]),
            api_groups: Some(vec![String::new()]),
            api_versions: Some(vec!["v1".to_string()]),
            resources: Some(vec!["pods".to_string()]),
            scope: Some("Namespaced".to_string()),
        }]),
        failure_policy: Some(failure_policy(webhook.failure_policy).to_string()),
        match_policy: Some("Equivalent".to_string()),
        side_effects: "None".to_string(),
        timeout_seconds: Some(webhook.timeout_seconds),
        admission_review_versions: vec!["v1".to_string()],
        reinvocation_policy: Some("IfNeeded".to_string()),
        namespace_selector: Some(selector(namespace_requirements)),
        object_selector: Some(selector(object_requirements)),
        match_conditions: None,
    }
}

/// Path of the validating webhook.
pub const VALIDATE_PATH: &str = "/validate";
/// Name of the validating entry.
pub const VALIDATION_ENTRY: &str = "validation.meshkeeper.io";
/// The networking resources the validator checks.
pub const VALIDATED_RESOURCES: [&str; 6] = [
    "virtualservices",
    "destinationrules",
    "gateways",
    "serviceentries",
    "envoyfilters",
    "proxyconfigs",
];
/// Every version of `networking.istio.io` the CRDs serve.
pub const NETWORKING_VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];

/// Everything the validating configuration of one revision depends on.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatorWebhook {
    /// Name of the ValidatingWebhookConfiguration object.
    pub name: String,
    pub revision: String,
    pub target: Target,
    /// PEM CA certificate(s) the API server verifies the webhook with.
    pub ca_bundle: Vec<u8>,
    pub failure_policy: FailurePolicy,
    pub timeout_seconds: i32,
    /// Limits validation to matching namespaces (tests scope themselves
    /// with it); `None` checks every namespace.
    pub namespace_selector: Option<LabelSelector>,
}

impl ValidatorWebhook {
    /// With the defaults: name [`VALIDATOR_NAME`], failure policy
    /// `Fail`, timeout [`DEFAULT_TIMEOUT_SECONDS`], every namespace.
    pub fn new(revision: impl Into<String>, target: Target, ca_bundle: impl Into<Vec<u8>>) -> Self {
        let revision = revision.into();
        Self {
            name: VALIDATOR_NAME.to_owned(),
            revision,
            target,
            ca_bundle: ca_bundle.into(),
            failure_policy: FailurePolicy::Fail,
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
            namespace_selector: None,
        }
    }
}

/// The one ValidatingWebhookConfiguration of a mesh: validation is
/// mesh-wide, served by the active revision (the operator points it there).
pub const VALIDATOR_NAME: &str = "meshkeeper-validator";

/// Builds the validating configuration: CREATE, UPDATE and DELETE of the
/// networking kinds in every served version (DELETE for the
/// DestinationRule guard), or says which input the API server would refuse.
pub fn validating_webhook_configuration(
    webhook: &ValidatorWebhook,
) -> Result<ValidatingWebhookConfiguration, ConfigError> {
    check_common(&webhook.revision, &webhook.target, webhook.timeout_seconds)?;
    let to_strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let entry = ValidatingWebhook {
        name: VALIDATION_ENTRY.to_string(),
        client_config: client_config(&webhook.target, &webhook.ca_bundle, VALIDATE_PATH),
        rules: Some(vec![RuleWithOperations {
            operations: Some(to_strings(&["CREATE", "UPDATE", "DELETE"])),
            api_groups: Some(vec!["networking.istio.io".to_string()]),
            api_versions: Some(to_strings(&NETWORKING_VERSIONS)),
            resources: Some(to_strings(&VALIDATED_RESOURCES)),
            scope: Some("Namespaced".to_string()),
        }]),
        failure_policy: Some(failure_policy(webhook.failure_policy).to_string()),
        match_policy: Some("Equivalent".to_string()),
        side_effects: "None".to_string(),
        timeout_seconds: Some(webhook.timeout_seconds),
        admission_review_versions: vec!["v1".to_string()],
        namespace_selector: webhook.namespace_selector.clone(),
        object_selector: None,
        match_conditions: None,
    };
    Ok(ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(webhook.name.clone()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "meshkeeper".to_string(),
                ),
                (names::REVISION.to_string(), webhook.revision.clone()),
            ])),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![entry]),
    })
}

fn failure_policy(policy: FailurePolicy) -> &'static str {
    match policy {
        FailurePolicy::Fail => "Fail",
        FailurePolicy::Ignore => "Ignore",
    }
}

fn client_config(target: &Target, ca_bundle: &[u8], path: &str) -> WebhookClientConfig {
    let ca_bundle = (!ca_bundle.is_empty()).then(|| ByteString(ca_bundle.to_vec()));
    match target {
        Target::Url(base) => WebhookClientConfig {
            url: Some(format!("{}{path}", base.trim_end_matches('/'))),
            service: None,
            ca_bundle,
        },
        Target::Service {
            name,
            namespace,
            port,
        } => WebhookClientConfig {
            url: None,
            service: Some(ServiceReference {
                name: name.clone(),
                namespace: namespace.clone(),
                path: Some(path.to_string()),
                port: Some(*port),
            }),
            ca_bundle,
        },
    }
}

fn selector(requirements: Vec<LabelSelectorRequirement>) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(requirements),
        match_labels: None,
    }
}

fn requirement(key: &str, operator: &str, values: Option<Vec<String>>) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.to_string(),
        operator: operator.to_string(),
        values,
    }
}

fn label_in(key: &str, value: &str) -> LabelSelectorRequirement {
    requirement(key, "In", Some(vec![value.to_string()]))
}

fn label_not_in(key: &str, value: &str) -> LabelSelectorRequirement {
    requirement(key, "NotIn", Some(vec![value.to_string()]))
}

fn label_absent(key: &str) -> LabelSelectorRequirement {
    requirement(key, "DoesNotExist", None)
}

fn not_system_namespace(own_namespace: &str) -> LabelSelectorRequirement {
    let mut names: Vec<String> = SYSTEM_NAMESPACES.iter().map(|s| s.to_string()).collect();
    if !names.iter().any(|n| n == own_namespace) {
        names.push(own_namespace.to_string());
    }
    requirement(NAMESPACE_NAME_LABEL, "NotIn", Some(names))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn by_url(revision: &str) -> InjectorWebhook {
        InjectorWebhook::new(
            revision,
            "meshkeeper-system",
            Target::Url("https://127.0.0.1:9443/".into()),
            b"-----BEGIN CERTIFICATE-----\n".to_vec(),
        )
    }

    #[test]
    fn the_validator_checks_every_networking_kind_and_version_on_write_and_delete() {
        let mut webhook = ValidatorWebhook::new(
            "canary",
            Target::Url("https://127.0.0.1:9443/".into()),
            b"CA".to_vec(),
        );
        let config = validating_webhook_configuration(&webhook).unwrap();
        assert_eq!(
            config.metadata.name.as_deref(),
            Some("meshkeeper-validator")
        );
        let [entry] = config.webhooks.as_deref().unwrap() else {
            panic!("one entry")
        };
        assert_eq!(entry.name, VALIDATION_ENTRY);
        assert_eq!(
            entry.client_config.url.as_deref(),
            Some("https://127.0.0.1:9443/validate")
        );
        assert_eq!(
            entry.client_config.ca_bundle,
            Some(ByteString(b"CA".to_vec()))
        );
        let rules = entry.rules.as_deref().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].operations.as_deref().unwrap(),
            ["CREATE", "UPDATE", "DELETE"]
        );
        assert_eq!(
            rules[0].api_groups.as_deref().unwrap(),
            ["networking.istio.io"]
        );
        assert_eq!(
            rules[0].api_versions.as_deref().unwrap(),
            ["v1", "v1beta1", "v1alpha3"]
        );
        assert_eq!(rules[0].resources.as_deref().unwrap(), VALIDATED_RESOURCES);
        assert_eq!(entry.failure_policy.as_deref(), Some("Fail"));
        assert_eq!(entry.side_effects, "None");
        assert_eq!(entry.timeout_seconds, Some(DEFAULT_TIMEOUT_SECONDS));
        assert_eq!(entry.namespace_selector, None);

        webhook.target = Target::Service {
            name: "meshkeeper-webhook".into(),
            namespace: "meshkeeper-system".into(),
            port: 443,
        };
        let selector = LabelSelector {
            match_labels: Some(BTreeMap::from([("run".to_string(), "e2e-1".to_string())])),
            match_expressions: None,
        };
        webhook.namespace_selector = Some(selector.clone());
        let config = validating_webhook_configuration(&webhook).unwrap();
        let entry = &config.webhooks.unwrap()[0];
        let service = entry.client_config.service.as_ref().unwrap();
        assert_eq!(service.path.as_deref(), Some("/validate"));
        assert_eq!(service.port, Some(443));
        assert_eq!(entry.namespace_selector, Some(selector));
    }

    #[test]
    fn the_validator_refuses_what_the_api_server_would() {
        let mut webhook = ValidatorWebhook::new("canary", Target::Url("http://x".into()), vec![]);
        assert_eq!(
            validating_webhook_configuration(&webhook),
            Err(ConfigError::Url("http://x".into()))
        );
        webhook.target = Target::Url("https://x".into());
        webhook.timeout_seconds = 31;
        assert_eq!(
            validating_webhook_configuration(&webhook),
            Err(ConfigError::Timeout(31))
        );
        webhook.timeout_seconds = 5;
        webhook.revision = "Bad Rev".into();
        assert!(matches!(
            validating_webhook_configuration(&webhook),
            Err(ConfigError::Revision(_))
        ));
    }

    fn build(webhook: &InjectorWebhook) -> MutatingWebhookConfiguration {
        mutating_webhook_configuration(webhook).unwrap()
    }

    fn entries(config: &MutatingWebhookConfiguration) -> &[MutatingWebhook] {
        config.webhooks.as_deref().unwrap()
    }

    fn names_and_paths(config: &MutatingWebhookConfiguration) -> Vec<(String, String)> {
        entries(config)
            .iter()
            .map(|w| (w.name.clone(), w.client_config.url.clone().unwrap()))
            .collect()
    }

    /// Renders a selector as `key op [values]` lines, easy to compare.
    fn requirements(selector: &Option<LabelSelector>) -> Vec<String> {
        let selector = selector.as_ref().unwrap();
        assert!(selector.match_labels.is_none());
        selector
            .match_expressions
            .iter()
            .flatten()
            .map(|r| {
                let values = r.values.clone().unwrap_or_default().join(",");
                format!("{} {} [{values}]", r.key, r.operator)
            })
            .collect()
    }

    const NOT_SYSTEM: &str = "kubernetes.io/metadata.name NotIn [kube-system,kube-public,kube-node-lease,meshkeeper-system]";
    const NOT_OPTED_OUT: &str = "sidecar.istio.io/inject NotIn [false]";

    #[test]
    fn default_revision_has_four_entries_with_their_paths() {
        let config = build(&by_url("default"));
        assert_eq!(
            config.metadata.name.as_deref(),
            Some("meshkeeper-sidecar-injector-default")
        );
        assert_eq!(
            names_and_paths(&config),
            [
                (NAMESPACE_ENTRY, "https://127.0.0.1:9443/inject/namespace"),
                (
                    REV_NAMESPACE_ENTRY,
                    "https://127.0.0.1:9443/inject/namespace"
                ),
                (REV_OBJECT_ENTRY, "https://127.0.0.1:9443/inject/object"),
                (OBJECT_ENTRY, "https://127.0.0.1:9443/inject/object"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let [namespace, rev_namespace, rev_object, object] = entries(&config) else {
            panic!("four entries")
        };
        assert_eq!(
            requirements(&namespace.namespace_selector),
            ["istio-injection In [enabled]", NOT_SYSTEM]
        );
        assert_eq!(requirements(&namespace.object_selector), [NOT_OPTED_OUT]);
        assert_eq!(
            requirements(&rev_namespace.namespace_selector),
            [
                "istio.io/rev In [default]",
                "istio-injection DoesNotExist []",
                NOT_SYSTEM
            ]
        );
        assert_eq!(
            requirements(&rev_namespace.object_selector),
            [NOT_OPTED_OUT]
        );
        let neither = [
            "istio-injection DoesNotExist []",
            "istio.io/rev DoesNotExist []",
            NOT_SYSTEM,
        ];
        assert_eq!(requirements(&rev_object.namespace_selector), neither);
        assert_eq!(
            requirements(&rev_object.object_selector),
            ["istio.io/rev In [default]", NOT_OPTED_OUT]
        );
        assert_eq!(requirements(&object.namespace_selector), neither);
        assert_eq!(
            requirements(&object.object_selector),
            [
                "sidecar.istio.io/inject In [true]",
                "istio.io/rev DoesNotExist []",
                NOT_OPTED_OUT
            ]
        );
    }

    #[test]
    fn other_revisions_answer_only_their_own_label() {
        let config = build(&by_url("canary"));
        let names: Vec<&str> = entries(&config).iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, [REV_NAMESPACE_ENTRY, REV_OBJECT_ENTRY]);
        for webhook in entries(&config) {
            let all: Vec<String> = requirements(&webhook.namespace_selector)
                .into_iter()
                .chain(requirements(&webhook.object_selector))
                .collect();
            assert!(
                !all.iter()
                    .any(|r| r.contains("enabled") || r.contains("[true]")),
                "{all:?}"
            );
        }
        assert_eq!(
            requirements(&entries(&config)[1].object_selector),
            ["istio.io/rev In [canary]", NOT_OPTED_OUT]
        );
    }

    #[test]
    fn every_entry_is_pod_create_v1_without_side_effects() {
        for revision in ["default", "canary"] {
            let config = build(&by_url(revision));
            for webhook in entries(&config) {
                let rule = &webhook.rules.as_ref().unwrap()[0];
                assert_eq!(
                    rule.operations.as_deref(),
                    Some(&["CREATE".to_string()][..])
                );
                assert_eq!(rule.resources.as_deref(), Some(&["pods".to_string()][..]));
                assert_eq!(rule.api_groups.as_deref(), Some(&[String::new()][..]));
                assert_eq!(webhook.side_effects, "None");
                assert_eq!(webhook.failure_policy.as_deref(), Some("Fail"));
                assert_eq!(webhook.timeout_seconds, Some(10));
                assert_eq!(webhook.reinvocation_policy.as_deref(), Some("IfNeeded"));
                assert_eq!(webhook.admission_review_versions, ["v1"]);
                assert_eq!(
                    webhook
                        .client_config
                        .ca_bundle
                        .as_ref()
                        .map(|b| b.0.clone()),
                    Some(b"-----BEGIN CERTIFICATE-----\n".to_vec())
                );
                assert!(requirements(&webhook.object_selector).contains(&NOT_OPTED_OUT.into()));
                assert!(requirements(&webhook.namespace_selector).contains(&NOT_SYSTEM.into()));
            }
        }
    }

    #[test]
    fn service_target_sets_name_namespace_port_and_path() {
        let mut webhook = by_url("canary");
        webhook.target = Target::Service {
            name: "meshkeeper-webhook-canary".into(),
            namespace: "meshkeeper-system".into(),
            port: 443,
        };
        webhook.failure_policy = FailurePolicy::Ignore;
        webhook.timeout_seconds = 5;
        let config = build(&webhook);
        let paths: Vec<Option<String>> = entries(&config)
            .iter()
            .map(|w| {
                assert!(w.client_config.url.is_none());
                assert_eq!(w.failure_policy.as_deref(), Some("Ignore"));
                assert_eq!(w.timeout_seconds, Some(5));
                let service = w.client_config.service.as_ref().unwrap();
                assert_eq!(service.name, "meshkeeper-webhook-canary");
                assert_eq!(service.namespace, "meshkeeper-system");
                assert_eq!(service.port, Some(443));
                service.path.clone()
            })
            .collect();
        assert_eq!(
            paths,
            [Some(NAMESPACE_PATH.into()), Some(OBJECT_PATH.into())]
        );
    }

    #[test]
    fn own_namespace_is_not_listed_twice() {
        let mut webhook = by_url("canary");
        webhook.own_namespace = "kube-system".into();
        let config = build(&webhook);
        assert!(
            requirements(&entries(&config)[0].namespace_selector).contains(
                &"kubernetes.io/metadata.name NotIn [kube-system,kube-public,kube-node-lease]"
                    .to_string()
            )
        );
    }

    #[test]
    fn inputs_the_api_server_would_refuse_are_named() {
        let cases: Vec<(InjectorWebhook, ConfigError)> = vec![
            (by_url("Canary!"), ConfigError::Revision("Canary!".into())),
            (by_url(""), ConfigError::Revision(String::new())),
            (
                by_url(&"r".repeat(64)),
                ConfigError::Revision("r".repeat(64)),
            ),
            (
                InjectorWebhook {
                    target: Target::Url("http://127.0.0.1:9443".into()),
                    ..by_url("canary")
                },
                ConfigError::Url("http://127.0.0.1:9443".into()),
            ),
            (
                InjectorWebhook {
                    target: Target::Url("https://h/x?y=1".into()),
                    ..by_url("canary")
                },
                ConfigError::Url("https://h/x?y=1".into()),
            ),
            (
                InjectorWebhook {
                    target: Target::Service {
                        name: "s".into(),
                        namespace: "n".into(),
                        port: 0,
                    },
                    ..by_url("canary")
                },
                ConfigError::Port(0),
            ),
            (
                InjectorWebhook {
                    timeout_seconds: 31,
                    ..by_url("canary")
                },
                ConfigError::Timeout(31),
            ),
        ];
        for (webhook, expected) in cases {
            let err = mutating_webhook_configuration(&webhook).unwrap_err();
            assert!(!err.to_string().is_empty());
            assert_eq!(err, expected);
        }
    }

    /// The full objects, as the API server receives them. Refresh with
    /// `UPDATE_GOLDEN=1 cargo test -p meshkeeper-webhook configuration`.
    #[test]
    fn golden_configurations() {
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/webhook-configuration");
        let cases = [
            ("default-by-url.json", by_url("default")),
            (
                "canary-by-service.json",
                InjectorWebhook {
                    target: Target::Service {
                        name: "meshkeeper-webhook-canary".into(),
                        namespace: "meshkeeper-system".into(),
                        port: 443,
                    },
                    ..by_url("canary")
                },
            ),
        ];
        for (file, webhook) in cases {
            let rendered = serde_json::to_string_pretty(&build(&webhook)).unwrap() + "\n";
            let path = dir.join(file);
            if std::env::var_os("UPDATE_GOLDEN").is_some() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &rendered).unwrap();
            }
            let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
                    path.display()
                )
            });
            assert_eq!(rendered, expected, "{} is stale", path.display());
        }
    }
}
