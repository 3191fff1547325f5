//! Whether a pod gets a sidecar: the namespace and host-network exclusions,
//! idempotency, the pod's own choice (the label, when present, alone
//! decides; else the annotation), the mesh's
//! never/always-inject selectors and its default policy.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use meshkeeper_crds::meshkeeper::mesh::InjectionMode;

use super::{Scope, Settings, names, selector};

/// The answer of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Inject {
        warnings: Vec<String>,
    },
    Skip {
        reason: String,
        warnings: Vec<String>,
    },
}

/// Where the pod's explicit choice came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChoiceSource {
    Label,
    Annotation,
}

impl ChoiceSource {
    fn as_str(self) -> &'static str {
        match self {
            ChoiceSource::Label => "label",
            ChoiceSource::Annotation => "annotation",
        }
    }
}

/// The pod's `sidecar.istio.io/inject` choice, if it made a valid one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodChoice {
    pub inject: Option<(bool, ChoiceSource)>,
    pub warnings: Vec<String>,
}

/// Decides whether the pod in `namespace` gets a sidecar. `scope` says which
/// webhook entry matched: in `Object` scope the namespace has no injection
/// label, so the pod must have opted in itself.
pub(crate) fn decide(pod: &Pod, namespace: &str, scope: Scope, settings: &Settings) -> Decision {
    if let Some(reason) = excluded(pod, namespace, settings) {
        return Decision::Skip {
            reason,
            warnings: Vec::new(),
        };
    }
    let labels = pod.metadata.labels.as_ref();
    let pod_revision = labels.and_then(|l| l.get(names::REVISION));
    // A tag is an alias: `istio.io/rev=<tag>` names the revision the tag
    // points at, so the tag's webhook entry and this one agree.
    if scope == Scope::Object
        && let Some(revision) = pod_revision
        && !settings.serves(revision)
    {
        return Decision::Skip {
            reason: format!(
                "pod label {}={revision:?} names a revision this webhook does not serve (it serves {})",
                names::REVISION,
                settings.served_names()
            ),
            warnings: Vec::new(),
        };
    }

    let PodChoice { inject, warnings } = pod_choice(pod);
    let skip = |reason: String| Decision::Skip {
        reason,
        warnings: warnings.clone(),
    };
    let names_this_revision = pod_revision.is_some_and(|r| settings.serves(r));
    if scope == Scope::Object && !names_this_revision && !matches!(inject, Some((true, _))) {
        return skip(format!(
            "the namespace has no injection label and the pod did not opt in (label {}=true, or {} naming {})",
            names::INJECT,
            names::REVISION,
            settings.served_names()
        ));
    }

    match inject {
        Some((true, _)) => Decision::Inject { warnings },
        Some((false, source)) => skip(format!(
            "pod opted out with {} {}=false",
            source.as_str(),
            names::INJECT
        )),
        None => by_mesh_policy(labels, settings).map_or_else(
            || Decision::Inject {
                warnings: warnings.clone(),
            },
            skip,
        ),
    }
}

/// Pods that are never injected whatever they ask for; `None` when the pod
/// is eligible.
fn excluded(pod: &Pod, namespace: &str, settings: &Settings) -> Option<String> {
    if names::SYSTEM_NAMESPACES.contains(&namespace) {
        return Some(format!(
            "namespace {namespace} is a Kubernetes system namespace"
        ));
    }
    if namespace == settings.own_namespace {
        return Some(format!(
            "namespace {namespace} is meshkeeper's own namespace"
        ));
    }
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network) == Some(true) {
        // Rules installed in the host's network namespace would capture the
        // node's traffic, not the pod's.
        return Some("pod uses the host network (spec.hostNetwork: true)".to_owned());
    }
    if let Some(reason) = already_injected(pod) {
        return Some(reason);
    }
    if spec.is_none_or(|s| s.containers.is_empty()) {
        // The API server rejects such a pod after admission; a sidecar would
        // only make its message harder to read.
        return Some("pod has no containers".to_owned());
    }
    None
}

/// Reinvocation and pods made from already-injected templates must come out
/// unchanged.
fn already_injected(pod: &Pod) -> Option<String> {
    let annotations = pod.metadata.annotations.as_ref();
    if annotations.is_some_and(|a| a.contains_key(names::STATUS)) {
        return Some(format!(
            "already injected (annotation {} present)",
            names::STATUS
        ));
    }
    if annotations.is_some_and(|a| a.contains_key(names::ISTIO_STATUS)) {
        return Some(format!(
            "already injected by Istio (annotation {} present)",
            names::ISTIO_STATUS
        ));
    }
    let spec = pod.spec.as_ref()?;
    let ours = [names::INIT_CONTAINER, names::PROXY_CONTAINER];
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .find(|c| ours.contains(&c.name.as_str()))
        .map(|c| format!("already injected (pod has container {})", c.name))
}

/// Reads `sidecar.istio.io/inject`. When the pod carries the label, the
/// label alone decides and the annotation is not read, as in Istio: the
/// label is what the webhook's object selector matched on, so letting an
/// annotation overrule it would make the two disagree. `true`/`false`
/// decide; any other value leaves the choice to the mesh policy and is
/// reported back as a warning, because a silently ignored `yes` is a
/// classic surprise.
pub(crate) fn pod_choice(pod: &Pod) -> PodChoice {
    let label = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|m| m.get(names::INJECT));
    let annotation = || {
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|m| m.get(names::INJECT))
    };
    let (source, value) = match label {
        Some(value) => (ChoiceSource::Label, value),
        None => match annotation() {
            Some(value) => (ChoiceSource::Annotation, value),
            None => {
                return PodChoice {
                    inject: None,
                    warnings: Vec::new(),
                };
            }
        },
    };
    let inject = match value.as_str() {
        "true" => Some((true, source)),
        "false" => Some((false, source)),
        _ => None,
    };
    let mut warnings = Vec::new();
    if inject.is_none() {
        let mut warning = format!(
            "{} {}={value:?} ignored (treated as unset): accepted values are true or false",
            source.as_str(),
            names::INJECT
        );
        if source == ChoiceSource::Label && annotation().is_some() {
            warning.push_str(
                " (the annotation of the same name is not read while the label is present)",
            );
        }
        warnings.push(warning);
    }
    PodChoice { inject, warnings }
}

/// The mesh's say for a pod that made no valid choice: `None` to inject,
/// else the reason to skip.
fn by_mesh_policy(
    labels: Option<&BTreeMap<String, String>>,
    settings: &Settings,
) -> Option<String> {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    if let Some(index) = first_match(&settings.never_inject_selector, labels) {
        return Some(format!(
            "pod labels match the mesh's neverInjectSelector[{index}]"
        ));
    }
    if first_match(&settings.always_inject_selector, labels).is_some() {
        return None;
    }
    match settings.policy {
        InjectionMode::Enabled => None,
        InjectionMode::Disabled => Some(format!(
            "the mesh's injection policy is Disabled and the pod did not opt in ({}=true)",
            names::INJECT
        )),
    }
}

/// Index of the first selector matching `labels`. Empty selectors are passed
/// over (as Istio does): an empty entry in a list of exceptions is almost
/// surely a mistake, and reading it as "every pod" would flip injection for
/// the whole mesh. Invalid selectors match nothing; they are logged, not
/// reported to the pod's author, who cannot fix the mesh.
fn first_match(selectors: &[LabelSelector], labels: &BTreeMap<String, String>) -> Option<usize> {
    selectors.iter().position(|s| {
        if selector::is_empty(s) {
            return false;
        }
        selector::matches(s, labels).unwrap_or_else(|error| {
            tracing::warn!(%error, "ignoring an invalid injection selector of the mesh");
            false
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(label: Option<&str>, annotation: Option<&str>) -> Pod {
        let map = |value: Option<&str>| {
            value.map(|v| BTreeMap::from([(names::INJECT.to_owned(), v.to_owned())]))
        };
        Pod {
            metadata: ObjectMeta {
                labels: map(label),
                annotations: map(annotation),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn a_present_label_alone_decides() {
        for annotation in [None, Some("true"), Some("false"), Some("junk")] {
            let choice = pod_choice(&pod(Some("true"), annotation));
            assert_eq!(
                choice.inject,
                Some((true, ChoiceSource::Label)),
                "{annotation:?}"
            );
            assert!(choice.warnings.is_empty());
            let choice = pod_choice(&pod(Some("false"), annotation));
            assert_eq!(
                choice.inject,
                Some((false, ChoiceSource::Label)),
                "{annotation:?}"
            );
            assert!(choice.warnings.is_empty());
        }
    }

    #[test]
    fn an_invalid_label_leaves_the_default_and_hides_the_annotation() {
        for annotation in [None, Some("true"), Some("false")] {
            let choice = pod_choice(&pod(Some("enabled"), annotation));
            assert_eq!(choice.inject, None, "{annotation:?}");
            assert_eq!(choice.warnings.len(), 1, "{:?}", choice.warnings);
            let warning = &choice.warnings[0];
            assert!(
                warning.contains("label")
                    && warning.contains(names::INJECT)
                    && warning.contains("\"enabled\""),
                "{warning}"
            );
        }
    }

    #[test]
    fn without_the_label_the_annotation_decides() {
        assert_eq!(
            pod_choice(&pod(None, Some("true"))).inject,
            Some((true, ChoiceSource::Annotation))
        );
        assert_eq!(
            pod_choice(&pod(None, Some("false"))).inject,
            Some((false, ChoiceSource::Annotation))
        );
        let choice = pod_choice(&pod(None, Some("1")));
        assert_eq!(choice.inject, None);
        assert!(
            choice.warnings.len() == 1 && choice.warnings[0].contains("annotation"),
            "{:?}",
            choice.warnings
        );
        let choice = pod_choice(&pod(None, None));
        assert_eq!(
            choice,
            PodChoice {
                inject: None,
                warnings: vec![]
            }
        );
    }
}
