//! What one revision of a Mesh installs (the webhook's ServiceAccount,
//! ClusterRole and binding, Service, Deployment, PodDisruptionBudget and
//! MutatingWebhookConfiguration) and what the mesh installs once (the
//! ValidatingWebhookConfiguration and one MutatingWebhookConfiguration per
//! revision tag). Pure: plain values in, the objects to server-side apply
//! out, or an [`InstallError`] naming the field the API server would refuse.
//!
//! Per-revision objects are owned by the MeshRevision and built from the
//! settings it carries (its copy of the Mesh's), so an old revision keeps
//! running unchanged during an upgrade; mesh-wide objects are owned by the
//! Mesh and follow its current settings.
//!
//! Objects come in the order to apply them: identity and permissions
//! before the pods that use them, the Service before the webhook
//! configuration that sends traffic to it. Delete in reverse.

mod deployment;
mod desired;
mod disruption;
mod error;
mod meta;
mod rbac;
mod service;
mod tls;
mod webhooks;

#[cfg(test)]
mod tests;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::ApiResource;
use meshkeeper_crds::meshkeeper::mesh::Mesh;

use crate::revisions::tags::{Revisions, TagError};
use meshkeeper_crds::meshkeeper::mesh_revision::MeshRevision;

pub use deployment::{CONTAINER, DEFAULT_REPLICAS, Images, RUN_AS, TLS_DIR, image_tag};
pub use desired::Desired;
pub use error::InstallError;
pub use meta::{
    COMPONENT_INJECTOR, COMPONENT_VALIDATOR, COMPONENT_WEBHOOK, MAX_REVISION_NAME, TAG_LABEL,
};
pub use tls::CERT_MANAGER_INJECT_CA_FROM;
pub use webhooks::VALIDATOR_NAME;

use meta::{Identity, check_revision_name, check_version, controller_owner, is_label_value};
use webhooks::Common;

use crate::names;

/// Everything one revision's objects depend on.
#[derive(Clone, Copy, Debug)]
pub struct RevisionInput<'a> {
    /// Must have been created (its uid is the owner of every object).
    pub revision: &'a MeshRevision,
    /// The operator's namespace, where the namespaced objects live.
    pub namespace: &'a str,
    pub images: &'a Images,
    /// The CA the API server trusts the webhook with: the operator's CA
    /// (source `SelfSigned`), the user's (`Secret`); ignored, and best
    /// `None`, with `CertManager`.
    pub ca_bundle: Option<&'a [u8]>,
    /// The serving Secret the operator issues for this revision (usually
    /// [`names::webhook_tls_secret`]); used with source `SelfSigned` only,
    /// the other sources name theirs in `spec.webhook.certificate.secretName`.
    pub tls_secret: &'a str,
}

/// Everything the mesh-wide objects depend on.
#[derive(Clone, Copy, Debug)]
pub struct MeshInput<'a> {
    /// Must have been created (its uid is the owner of every object).
    pub mesh: &'a Mesh,
    /// The operator's namespace, where the webhook Services live.
    pub namespace: &'a str,
    /// The revision new injections use: it serves the validator and every
    /// tag that names no revision.
    pub active: &'a MeshRevision,
    /// The mesh's revisions (the active one may be among them); a tag may
    /// point at any of these.
    pub revisions: &'a [MeshRevision],
    /// As in [`RevisionInput::ca_bundle`], for the Mesh's certificate source.
    pub ca_bundle: Option<&'a [u8]>,
}

/// Every kind [`revision_objects`] and [`mesh_objects`] produce (and the
/// certificate Secrets the controller writes), with
/// whether it is namespaced (then always in the operator's namespace): what
/// the controller watches and prunes.
pub fn owned_kinds() -> Vec<(ApiResource, bool)> {
    vec![
        (ApiResource::erase::<ServiceAccount>(&()), true),
        (ApiResource::erase::<ClusterRole>(&()), false),
        (ApiResource::erase::<ClusterRoleBinding>(&()), false),
        (ApiResource::erase::<Service>(&()), true),
        (ApiResource::erase::<Deployment>(&()), true),
        (ApiResource::erase::<PodDisruptionBudget>(&()), true),
        // The CA and serving-certificate Secrets (written by the controller).
        (ApiResource::erase::<Secret>(&()), true),
        (
            ApiResource::erase::<MutatingWebhookConfiguration>(&()),
            false,
        ),
        (
            ApiResource::erase::<ValidatingWebhookConfiguration>(&()),
            false,
        ),
    ]
}

/// The objects one revision installs, in apply order: ServiceAccount,
/// ClusterRole, ClusterRoleBinding, Service, Deployment,
/// PodDisruptionBudget, MutatingWebhookConfiguration.
pub fn revision_objects(input: &RevisionInput<'_>) -> Result<Vec<Desired>, InstallError> {
    let revision = input.revision;
    let rev_name = revision.metadata.name.as_deref().unwrap_or_default();
    let object = format!("MeshRevision/{rev_name}");
    check_revision_name(&object, "metadata.name", rev_name)?;
    check_version(&object, &revision.spec.version)?;
    check_mesh_name(&object, "spec.mesh", &revision.spec.mesh)?;
    let owner = controller_owner(revision)?;
    let config = &revision.spec.config;
    let replicas = replicas(&object, revision)?;
    let tls_secret = tls::serving_secret(&object, config, input.tls_secret)?;
    let ca = tls::ca(&object, config, input.ca_bundle)?;

    let name = names::webhook_name(rev_name);
    let namespace = input.namespace;
    let id = Identity {
        mesh: &revision.spec.mesh,
        revision: rev_name,
        version: &revision.spec.version,
        component: COMPONENT_WEBHOOK,
    };
    let injector = webhooks::revision_injector(
        &Common {
            object: &object,
            config,
            target: webhooks::target(config, rev_name, namespace),
            ca,
            id: Identity {
                component: COMPONENT_INJECTOR,
                ..id
            },
            owner: &owner,
        },
        namespace,
    )?;
    let deployment = deployment::deployment(
        &deployment::DeploymentParams {
            name: &name,
            namespace,
            replicas,
            images: input.images,
            tls_secret,
            id,
        },
        &owner,
    );
    Ok(vec![
        Desired::from_typed(&rbac::service_account(&name, namespace, id, &owner))?,
        Desired::from_typed(&rbac::cluster_role(&name, id, &owner))?,
        Desired::from_typed(&rbac::cluster_role_binding(&name, namespace, id, &owner))?,
        Desired::from_typed(&service::service(&name, namespace, id, &owner))?,
        Desired::from_typed(&deployment)?,
        Desired::from_typed(&disruption::pod_disruption_budget(
            &name, namespace, replicas, id, &owner,
        ))?,
        Desired::from_typed(&injector)?,
    ])
}

/// The mesh-wide objects, in apply order: the ValidatingWebhookConfiguration
/// [`VALIDATOR_NAME`], then one MutatingWebhookConfiguration per revision
/// tag in the order the Mesh lists them.
pub fn mesh_objects<'a>(input: &MeshInput<'a>) -> Result<Vec<Desired>, InstallError> {
    let mesh = input.mesh;
    let mesh_name = mesh.metadata.name.as_deref().unwrap_or_default();
    let object = format!("Mesh/{mesh_name}");
    check_mesh_name(&object, "metadata.name", mesh_name)?;
    let owner = controller_owner(mesh)?;
    let config = &mesh.spec.config;
    let ca = tls::ca(&object, config, input.ca_bundle)?;
    let active = revision_name_and_version(input.active)?;

    let common = |(revision, version): (&'a str, &'a str), component: &'static str| Common {
        object: &object,
        config,
        target: webhooks::target(config, revision, input.namespace),
        ca,
        id: Identity {
            mesh: mesh_name,
            revision,
            version,
            component,
        },
        owner: &owner,
    };
    let validator = webhooks::validator(&common(active, COMPONENT_VALIDATOR))?;
    let mut objects = vec![Desired::from_typed(&validator)?];
    for tag in resolve_tags(&object, input)? {
        let injector = webhooks::tag_injector(
            &common(tag.revision, COMPONENT_INJECTOR),
            tag.name,
            &tag.field,
            input.namespace,
        )?;
        objects.push(Desired::from_typed(&injector)?);
    }
    Ok(objects)
}

fn replicas(object: &str, revision: &MeshRevision) -> Result<i32, InstallError> {
    let replicas = revision
        .spec
        .config
        .webhook
        .as_ref()
        .and_then(|w| w.replicas)
        .unwrap_or(DEFAULT_REPLICAS);
    if replicas < 1 {
        return Err(InstallError::invalid(
            object,
            "spec.webhook.replicas",
            replicas.to_string(),
            "at least 1 (a webhook with failurePolicy Fail and no replica blocks every pod creation it matches)",
        ));
    }
    Ok(replicas)
}

/// The Mesh's name is the `app.kubernetes.io/instance` label value.
fn check_mesh_name(object: &str, field: &str, name: &str) -> Result<(), InstallError> {
    if is_label_value(name) {
        return Ok(());
    }
    Err(InstallError::invalid(
        object,
        field,
        name,
        "a Mesh name usable as a label value: 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
    ))
}

fn revision_name_and_version(revision: &MeshRevision) -> Result<(&str, &str), InstallError> {
    let name = revision.metadata.name.as_deref().unwrap_or_default();
    let object = format!("MeshRevision/{name}");
    check_revision_name(&object, "metadata.name", name)?;
    check_version(&object, &revision.spec.version)?;
    Ok((name, &revision.spec.version))
}

/// A checked tag: its name, the field it came from, and the revision (name
/// and version) it routes to.
struct ResolvedTag<'a> {
    name: &'a str,
    field: String,
    revision: (&'a str, &'a str),
}

/// The Mesh's tags, resolved by [`crate::revisions::tags`] (the one place
/// that decides where a tag points), in name order; the first problem
/// becomes an [`InstallError`] naming the field.
fn resolve_tags<'a>(
    object: &str,
    input: &MeshInput<'a>,
) -> Result<Vec<ResolvedTag<'a>>, InstallError> {
    let revisions: Vec<&'a MeshRevision> = std::iter::once(input.active)
        .chain(input.revisions.iter())
        .collect();
    let names = revisions.iter().filter_map(|r| r.metadata.name.clone());
    let active = input.active.metadata.name.as_deref().unwrap_or_default();
    let tags = input.mesh.spec.revision_tags.as_deref().unwrap_or_default();
    let resolution = Revisions::resolve(names, active, tags);
    if let Some(error) = resolution.errors.first() {
        return Err(tag_error(object, error));
    }
    let mut resolved = Vec::new();
    for (index, tag) in tags.iter().enumerate() {
        let Some(target) = resolution.revisions.tags().get(&tag.name) else {
            continue;
        };
        let Some(revision) = revisions
            .iter()
            .copied()
            .find(|r| r.metadata.name.as_deref() == Some(target.as_str()))
        else {
            continue;
        };
        resolved.push(ResolvedTag {
            name: &tag.name,
            field: format!("spec.revisionTags[{index}].name"),
            revision: revision_name_and_version(revision)?,
        });
    }
    Ok(resolved)
}

fn tag_error(object: &str, error: &TagError) -> InstallError {
    let (index, field, value, allowed) = match error {
        TagError::InvalidName { index, tag } => (
            index,
            "name",
            tag.clone(),
            "1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit".to_owned(),
        ),
        TagError::Duplicate { index, tag, first } => (
            index,
            "name",
            tag.clone(),
            format!("a name no other tag has (spec.revisionTags[{first}] has it)"),
        ),
        TagError::NamedLikeRevision { index, tag } => (
            index,
            "name",
            tag.clone(),
            "a name no revision has (a tag and a revision of the same name would both answer istio.io/rev with it)".to_owned(),
        ),
        TagError::UnknownRevision {
            index,
            revision,
            known,
            ..
        } => (
            index,
            "revision",
            revision.clone(),
            format!("one of the mesh's revisions: {}", known.join(", ")),
        ),
    };
    InstallError::invalid(
        object,
        format!("spec.revisionTags[{index}].{field}"),
        value,
        allowed,
    )
}
