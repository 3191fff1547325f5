//! What every installed object carries: the standard labels, the owner
//! reference, and the checks on the names and values that end up in object
//! names and label values.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use super::error::InstallError;
use crate::names;

/// `app.kubernetes.io/component` of the webhook server's objects.
pub const COMPONENT_WEBHOOK: &str = "webhook";
/// `app.kubernetes.io/component` of the MutatingWebhookConfigurations.
pub const COMPONENT_INJECTOR: &str = "sidecar-injector";
/// `app.kubernetes.io/component` of the ValidatingWebhookConfiguration.
pub const COMPONENT_VALIDATOR: &str = "validator";

/// Istio's label naming the tag a tag injector answers for.
pub const TAG_LABEL: &str = "istio.io/tag";

/// The longest revision name: `meshkeeper-webhook-<revision>` names the
/// Service, and a Service name is a DNS label of at most 63 characters.
pub const MAX_REVISION_NAME: usize = 63 - "meshkeeper-webhook-".len();

/// Who an object belongs to, as the labels say it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Identity<'a> {
    /// The Mesh (`app.kubernetes.io/instance`).
    pub mesh: &'a str,
    pub revision: &'a str,
    pub version: &'a str,
    pub component: &'a str,
}

/// The labels a Deployment selects its pods by, also the Service's and
/// PodDisruptionBudget's selector. Never add to these: a Deployment's
/// selector cannot change.
pub(crate) fn selector_labels(revision: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (names::NAME_LABEL.to_owned(), names::WEBHOOK_APP.to_owned()),
        (names::REVISION_LABEL.to_owned(), revision.to_owned()),
    ])
}

/// The standard labels of an installed object.
pub(crate) fn labels(id: Identity<'_>) -> BTreeMap<String, String> {
    let mut labels = selector_labels(id.revision);
    labels.extend([
        (
            names::MANAGED_BY_LABEL.to_owned(),
            names::MANAGED_BY.to_owned(),
        ),
        (names::INSTANCE_LABEL.to_owned(), id.mesh.to_owned()),
        (names::COMPONENT_LABEL.to_owned(), id.component.to_owned()),
        (names::VERSION_LABEL.to_owned(), id.version.to_owned()),
    ]);
    labels
}

/// Metadata of an installed object: name, namespace, labels and the owner.
pub(crate) fn object_meta(
    name: &str,
    namespace: Option<&str>,
    id: Identity<'_>,
    owner: &OwnerReference,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels(id)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// The controlling owner reference to `owner`. `blockOwnerDeletion` keeps
/// the owner (and its finalizer) around until the garbage collector has
/// removed what it owns, in foreground deletion.
pub(crate) fn controller_owner<K>(owner: &K) -> Result<OwnerReference, InstallError>
where
    K: Resource<DynamicType = ()>,
{
    let object = format!(
        "{}/{}",
        K::kind(&()),
        owner.meta().name.as_deref().unwrap_or("")
    );
    let name = owner
        .meta()
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            InstallError::missing(&object, "metadata.name", "the owner must be named")
        })?;
    let uid = owner
        .meta()
        .uid
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            InstallError::missing(
                &object,
                "metadata.uid",
                "owner references need the uid the API server gave the object; create it first",
            )
        })?;
    Ok(OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name,
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// A DNS label (RFC 1123) of at most `max` characters: lowercase letters,
/// digits and '-', starting and ending with a letter or digit.
pub(crate) fn is_dns_label(value: &str, max: usize) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A label value: at most 63 letters, digits, '-', '_' or '.', starting
/// and ending with a letter or digit (empty is allowed by Kubernetes but
/// never meant here).
pub(crate) fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Checks a revision name: it becomes part of object names (the Service's
/// is the tightest) and a label value.
pub(crate) fn check_revision_name(
    object: &str,
    field: &str,
    name: &str,
) -> Result<(), InstallError> {
    if is_dns_label(name, MAX_REVISION_NAME) {
        return Ok(());
    }
    Err(InstallError::invalid(
        object,
        field,
        name,
        format!(
            "1 to {MAX_REVISION_NAME} lowercase letters, digits or '-', starting and ending with a letter or digit (the Service meshkeeper-webhook-<revision> must be a DNS label)"
        ),
    ))
}

/// Checks a version: `[v]MAJOR.MINOR.PATCH[-PRERELEASE]`, as the Mesh's
/// schema allows. It becomes an image tag and a label value.
pub(crate) fn check_version(object: &str, version: &str) -> Result<(), InstallError> {
    let bare = version.strip_prefix('v').unwrap_or(version);
    let (core, prerelease) = match bare.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (bare, None),
    };
    let numeric = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = core.split('.').collect();
    let core_ok = parts.len() == 3 && parts.iter().all(|p| numeric(p));
    let prerelease_ok = prerelease.is_none_or(|p| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
    });
    if core_ok && prerelease_ok && is_label_value(version) {
        return Ok(());
    }
    Err(InstallError::invalid(
        object,
        "spec.version",
        version,
        "a version like 0.1.0, v0.1.0 or 0.2.0-rc.1 (at most 63 characters, ending with a letter or digit)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("default-1-2-0", 63));
        assert!(is_dns_label("a", 1));
        for bad in ["", "-a", "a-", "A", "a.b", "a_b"] {
            assert!(!is_dns_label(bad, 63), "{bad}");
        }
        assert!(!is_dns_label("ab", 1));
    }

    #[test]
    fn versions() {
        for good in ["0.1.0", "v1.24.0", "0.2.0-rc.1", "1.2.3-alpha-2"] {
            assert!(check_version("MeshRevision/r", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1.2",
            "1.2.3.4",
            "1.2.x",
            "1.2.3-",
            "1.2.3+meta",
            "1.2.3-rc.",
            "latest",
        ] {
            let err = check_version("MeshRevision/r", bad).unwrap_err();
            assert_eq!(err.field(), Some("spec.version"), "{bad}");
        }
    }

    #[test]
    fn revision_names_fit_the_service_name() {
        let longest = "r".repeat(MAX_REVISION_NAME);
        assert!(check_revision_name("o", "metadata.name", &longest).is_ok());
        assert_eq!(
            format!("meshkeeper-webhook-{longest}").len(),
            63,
            "the Service name is exactly a DNS label at the limit"
        );
        let err = check_revision_name("o", "metadata.name", &format!("{longest}r")).unwrap_err();
        assert!(err.to_string().contains("1 to 44"), "{err}");
    }
}
