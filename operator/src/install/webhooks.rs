//! The admission webhook configurations, built by
//! `meshkeeper_webhook::configuration` (the one place that knows the
//! selectors and rules) and dressed here with the operator's labels,
//! owner, CA and the cert-manager annotation.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use meshkeeper_crds::meshkeeper::mesh::MeshConfig;
use meshkeeper_webhook::configuration::{
    DEFAULT_TIMEOUT_SECONDS, InjectorWebhook, Target, ValidatorWebhook,
    mutating_webhook_configuration, validating_webhook_configuration,
};
use meshkeeper_webhook::inject::names::REVISION as ISTIO_REVISION_LABEL;

use super::error::InstallError;
use super::meta::{Identity, TAG_LABEL, labels};
use super::tls::{CERT_MANAGER_INJECT_CA_FROM, Ca};
use crate::names::{WEBHOOK_SERVICE_PORT, webhook_name};

/// The one ValidatingWebhookConfiguration of the mesh.
pub use meshkeeper_webhook::configuration::VALIDATOR_NAME;

/// Where the API server reaches `revision`'s webhook: the URL override
/// when the settings carry one, else the revision's Service.
pub(crate) fn target(config: &MeshConfig, revision: &str, namespace: &str) -> Target {
    match config.webhook.as_ref().and_then(|w| w.url.as_deref()) {
        Some(url) => Target::Url(url.to_owned()),
        None => Target::Service {
            name: webhook_name(revision),
            namespace: namespace.to_owned(),
            port: WEBHOOK_SERVICE_PORT,
        },
    }
}

/// The settings and destination shared by every configuration.
pub(crate) struct Common<'a> {
    /// `Kind/name` of the object the settings come from, for errors.
    pub object: &'a str,
    pub config: &'a MeshConfig,
    pub target: Target,
    pub ca: Ca<'a>,
    pub id: Identity<'a>,
    pub owner: &'a OwnerReference,
}

impl Common<'_> {
    fn injector(&self, name: String, answers_for: &str, own_namespace: &str) -> InjectorWebhook {
        let webhook = self.config.webhook.as_ref();
        InjectorWebhook {
            name,
            revision: answers_for.to_owned(),
            own_namespace: own_namespace.to_owned(),
            target: self.target.clone(),
            ca_bundle: self.ca.bundle(),
            failure_policy: webhook.and_then(|w| w.failure_policy).unwrap_or_default(),
            timeout_seconds: webhook
                .and_then(|w| w.timeout_seconds)
                .unwrap_or(DEFAULT_TIMEOUT_SECONDS),
        }
    }

    /// The builder's metadata replaced by the operator's: standard labels,
    /// Istio's `istio.io/rev` (istioctl finds injectors by it), the owner
    /// and, with cert-manager, the CA injection annotation.
    fn metadata(&self, name: Option<String>, tag: Option<&str>) -> ObjectMeta {
        let mut labels = labels(self.id);
        labels.insert(ISTIO_REVISION_LABEL.to_owned(), self.id.revision.to_owned());
        if let Some(tag) = tag {
            labels.insert(TAG_LABEL.to_owned(), tag.to_owned());
        }
        let annotations = match self.ca {
            Ca::CertManager(certificate) => Some(BTreeMap::from([(
                CERT_MANAGER_INJECT_CA_FROM.to_owned(),
                certificate.to_owned(),
            )])),
            Ca::Bundle(_) => None,
        };
        ObjectMeta {
            name,
            labels: Some(labels),
            annotations,
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// The injector of a revision: `istio.io/rev=<revision>` (and, for the
/// revision named `default`, `istio-injection=enabled`).
pub(crate) fn revision_injector(
    common: &Common<'_>,
    own_namespace: &str,
) -> Result<MutatingWebhookConfiguration, InstallError> {
    let revision = common.id.revision;
    let name = meshkeeper_webhook::configuration::default_name(revision);
    let webhook = common.injector(name, revision, own_namespace);
    let mut config = mutating_webhook_configuration(&webhook)
        .map_err(|e| InstallError::from_config(common.object, "metadata.name", e))?;
    config.metadata = common.metadata(config.metadata.name.take(), None);
    Ok(config)
}

/// The injector of a revision tag: the same entries a revision named after
/// the tag would have (so the tag `default` also answers
/// `istio-injection=enabled` and pods labelled `sidecar.istio.io/inject=true`),
/// sent to the tagged revision's webhook.
pub(crate) fn tag_injector(
    common: &Common<'_>,
    tag: &str,
    tag_field: &str,
    own_namespace: &str,
) -> Result<MutatingWebhookConfiguration, InstallError> {
    let name = crate::names::tag_injector_name(tag);
    let webhook = common.injector(name, tag, own_namespace);
    let mut config = mutating_webhook_configuration(&webhook)
        .map_err(|e| InstallError::from_config(common.object, tag_field, e))?;
    config.metadata = common.metadata(config.metadata.name.take(), Some(tag));
    Ok(config)
}

/// The mesh's validator, served by the active revision.
pub(crate) fn validator(
    common: &Common<'_>,
) -> Result<ValidatingWebhookConfiguration, InstallError> {
    let settings = common.config.webhook.as_ref();
    let webhook = ValidatorWebhook {
        name: VALIDATOR_NAME.to_owned(),
        revision: common.id.revision.to_owned(),
        target: common.target.clone(),
        ca_bundle: common.ca.bundle(),
        failure_policy: settings.and_then(|w| w.failure_policy).unwrap_or_default(),
        timeout_seconds: settings
            .and_then(|w| w.timeout_seconds)
            .unwrap_or(DEFAULT_TIMEOUT_SECONDS),
        namespace_selector: None,
    };
    let mut config = validating_webhook_configuration(&webhook)
        .map_err(|e| InstallError::from_config(common.object, "status.activeRevision", e))?;
    config.metadata = common.metadata(config.metadata.name.take(), None);
    Ok(config)
}
