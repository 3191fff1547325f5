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
        let annotation = setting.annotation();
        if let Some(value) = annotations.get(annotation)
            && let Err(error) = config.apply(setting, value)
        {
            findings.errors.push(message(annotation, value, &error));
        }
    }
    (!config.captures_nothing()).then_some(config)
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
