//! The `traffic.sidecar.istio.io/*` and `sidecar.istio.io/interceptionMode`
//! annotations turned into the init container's arguments, validated by the
//! init crate's own parser so the webhook and the init binary can never
//! disagree about what a value means.

use std::collections::BTreeMap;

use meshkeeper_init::capture::{CaptureConfig, CaptureError, Setting};

use super::annotations::{Findings, invalid, invalid_because};

/// The capture settings for a pod with these annotations, or `None` when
/// nothing is to be captured (interception mode NONE: no init container).
/// Bad values go to `findings`.
pub(crate) fn capture_config(
    annotations: &BTreeMap<String, String>,
    findings: &mut Findings,
) -> Option<CaptureConfig> {
    let mut config = CaptureConfig::default();
    for setting in Setting::ALL {
        if let Some((annotation, value)) = setting_value(annotations, setting, findings)
            && let Err(error) = config.apply(setting, value)
        {
            findings.errors.push(message(annotation, value, &error));
        }
    }
    (!config.captures_nothing()).then_some(config)
}

/// The annotation that sets `setting` and its value: the current name, else
/// an older one (`kubevirtInterfaces`), as Istio reads them. An older name
/// overruled by the current one is named in a warning so the difference is
/// not a surprise.
fn setting_value<'a>(
    annotations: &'a BTreeMap<String, String>,
    setting: Setting,
    findings: &mut Findings,
) -> Option<(&'static str, &'a str)> {
    let current = annotations
        .get(setting.annotation())
        .map(|value| (setting.annotation(), value.as_str()));
    let older = setting
        .deprecated_annotations()
        .iter()
        .find_map(|name| annotations.get(*name).map(|value| (*name, value.as_str())));
    match (current, older) {
        (Some((name, value)), Some((old_name, old_value))) => {
            if old_value != value {
                findings.warnings.push(format!(
                    "annotation {old_name}={old_value:?} ignored: {name} is set and wins"
                ));
            }
            Some((name, value))
        }
        (current, older) => current.or(older),
    }
}

/// The capture annotations the pod carries, for the warning that a template
/// without capture ignores them.
pub(crate) fn present(annotations: &BTreeMap<String, String>) -> Vec<&'static str> {
    Setting::ALL
        .iter()
        .flat_map(|setting| {
            std::iter::once(setting.annotation())
                .chain(setting.deprecated_annotations().iter().copied())
        })
        .filter(|name| annotations.contains_key(*name))
        .collect()
}

/// The init crate's errors name its command-line flags; a pod's author
/// needs the annotation instead.
fn message(annotation: &str, value: &str, error: &CaptureError) -> String {
    match error {
        CaptureError::InvalidValue {
            problem, accepted, ..
        } => invalid_because(annotation, value, problem, accepted),
        CaptureError::UnsupportedMode { .. } => invalid(
            annotation,
            value,
            "REDIRECT or NONE (meshkeeper does not support TPROXY interception)",
        ),
        CaptureError::Arguments(_) => format!("annotation {annotation}={value:?}: {error}"),
    }
}
