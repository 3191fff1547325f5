//! The proxy's per-pod settings: the revision's defaults, then ProxyConfig,
//! then the pod's `sidecar.istio.io/*` annotations. Every annotation is
//! checked and every bad one reported at once, so a user fixes a manifest in
//! one round trip.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{ProxyOverrides, Settings, containers, image, names, quantity};

/// Envoy's `--log-level` values.
const LOG_LEVELS: [&str; 8] = [
    "trace", "debug", "info", "warning", "warn", "error", "critical", "off",
];

/// The proxy as this pod gets it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProxySpec {
    pub image: String,
    pub log_level: String,
    /// `--concurrency`; `None` leaves Envoy's default (one per hardware thread).
    pub concurrency: Option<i32>,
    pub resources: ResourceRequirements,
    pub native_sidecar: bool,
    /// Extra variables from ProxyConfig, in name order.
    pub environment: Vec<(String, String)>,
}

/// Errors (the pod is denied) and warnings (returned with the admission).
#[derive(Debug, Default)]
pub(crate) struct Findings {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// The message for an annotation value that cannot be applied.
pub(crate) fn invalid(annotation: &str, value: &str, accepted: &str) -> String {
    format!("annotation {annotation}={value:?} is invalid: expected {accepted}")
}

/// [`invalid`] with what exactly is wrong with the value.
pub(crate) fn invalid_because(
    annotation: &str,
    value: &str,
    problem: &str,
    accepted: &str,
) -> String {
    format!("annotation {annotation}={value:?} is invalid ({problem}): expected {accepted}")
}

/// Resolves the proxy for a pod with these annotations, recording problems
/// in `findings`.
pub(crate) fn proxy_spec(
    annotations: &BTreeMap<String, String>,
    settings: &Settings,
    overrides: &ProxyOverrides,
    findings: &mut Findings,
) -> ProxySpec {
    let overrides = &super::pod_proxy_config::apply(annotations, overrides, findings);
    let resources = resources(annotations, &settings.proxy_resources, findings);
    let concurrency = concurrency(
        overrides.concurrency.or(settings.proxy_concurrency),
        &resources,
        findings,
    );
    ProxySpec {
        image: proxy_image(annotations, settings, overrides, findings),
        log_level: log_level(annotations, settings, findings),
        concurrency,
        resources,
        native_sidecar: native_sidecar(annotations, settings, findings),
        environment: environment(overrides, findings),
    }
}

fn proxy_image(
    annotations: &BTreeMap<String, String>,
    settings: &Settings,
    overrides: &ProxyOverrides,
    findings: &mut Findings,
) -> String {
    if let Some(value) = annotations.get(names::PROXY_IMAGE) {
        if !value.is_empty() && !value.chars().any(char::is_whitespace) {
            return value.clone();
        }
        findings.errors.push(invalid(
            names::PROXY_IMAGE,
            value,
            "an image reference without spaces, e.g. envoyproxy/envoy:v1.36.2",
        ));
    }
    let image_type = match annotations.get(names::PROXY_IMAGE_TYPE) {
        Some(value) if image::is_valid_type(value) => Some(value.as_str()),
        Some(value) => {
            findings.errors.push(invalid(
                names::PROXY_IMAGE_TYPE,
                value,
                "default, debug, distroless or another tag-safe word (letters, digits, '.', '_', '-')",
            ));
            None
        }
        None => match overrides.image_type.as_deref() {
            Some("") | None => None,
            Some(value) if image::is_valid_type(value) => Some(value),
            Some(value) => {
                findings.warnings.push(format!(
                    "ProxyConfig image type {value:?} ignored: it cannot be part of an image tag"
                ));
                None
            }
        },
    };
    image::with_type(
        &settings.proxy_image,
        image_type.unwrap_or(image::DEFAULT_TYPE),
    )
}

fn log_level(
    annotations: &BTreeMap<String, String>,
    settings: &Settings,
    findings: &mut Findings,
) -> String {
    let Some(value) = annotations.get(names::LOG_LEVEL) else {
        return settings.proxy_log_level.clone();
    };
    let lowered = value.to_ascii_lowercase();
    if LOG_LEVELS.contains(&lowered.as_str()) {
        return lowered;
    }
    findings.errors.push(invalid(
        names::LOG_LEVEL,
        value,
        &format!("one of Envoy's log levels: {}", LOG_LEVELS.join(", ")),
    ));
    settings.proxy_log_level.clone()
}

fn native_sidecar(
    annotations: &BTreeMap<String, String>,
    settings: &Settings,
    findings: &mut Findings,
) -> bool {
    match annotations.get(names::NATIVE_SIDECAR).map(String::as_str) {
        None => settings.native_sidecar,
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            findings
                .errors
                .push(invalid(names::NATIVE_SIDECAR, other, "true or false"));
            settings.native_sidecar
        }
    }
}

/// One resource an annotation can set.
struct ResourceAnnotation {
    annotation: &'static str,
    limit: bool,
    resource: &'static str,
}

const RESOURCE_ANNOTATIONS: [ResourceAnnotation; 4] = [
    ResourceAnnotation {
        annotation: names::PROXY_CPU,
        limit: false,
        resource: "cpu",
    },
    ResourceAnnotation {
        annotation: names::PROXY_MEMORY,
        limit: false,
        resource: "memory",
    },
    ResourceAnnotation {
        annotation: names::PROXY_CPU_LIMIT,
        limit: true,
        resource: "cpu",
    },
    ResourceAnnotation {
        annotation: names::PROXY_MEMORY_LIMIT,
        limit: true,
        resource: "memory",
    },
];

/// The proxy's resources. As in Istio, the four annotations replace the
/// mesh defaults as a whole: as soon as one is present, only what the
/// annotations give is set. Merging them with the defaults would pair, say,
/// an annotated 2Gi request with the default 1Gi limit and refuse a pod
/// whose author asked for nothing contradictory.
fn resources(
    annotations: &BTreeMap<String, String>,
    defaults: &ResourceRequirements,
    findings: &mut Findings,
) -> ResourceRequirements {
    if !RESOURCE_ANNOTATIONS
        .iter()
        .any(|spec| annotations.contains_key(spec.annotation))
    {
        return defaults.clone();
    }
    let mut resources = ResourceRequirements::default();
    for spec in &RESOURCE_ANNOTATIONS {
        let Some(value) = annotations.get(spec.annotation) else {
            continue;
        };
        if quantity::parse(value).is_none() {
            findings
                .errors
                .push(invalid(spec.annotation, value, quantity::ACCEPTED_FORM));
            continue;
        }
        let side = if spec.limit {
            &mut resources.limits
        } else {
            &mut resources.requests
        };
        side.get_or_insert_with(BTreeMap::new)
            .insert(spec.resource.to_owned(), Quantity(value.clone()));
    }
    check_requests_within_limits(annotations, findings);
    resources
}

/// The API server refuses a request above its limit, with a message that
/// names neither annotation; say which annotation to change instead. Both
/// values come from annotations: the defaults never mix with them.
fn check_requests_within_limits(annotations: &BTreeMap<String, String>, findings: &mut Findings) {
    let requests = RESOURCE_ANNOTATIONS.iter().filter(|spec| !spec.limit);
    for request in requests {
        let Some(limit) = RESOURCE_ANNOTATIONS
            .iter()
            .find(|spec| spec.limit && spec.resource == request.resource)
        else {
            continue;
        };
        let value = |spec: &ResourceAnnotation| {
            let text = annotations.get(spec.annotation)?;
            // An unparsable value is already reported on its own.
            quantity::parse(text).map(|number| (text, number))
        };
        let (Some((request_text, request_value)), Some((limit_text, limit_value))) =
            (value(request), value(limit))
        else {
            continue;
        };
        if request_value <= limit_value * (1.0 + 1e-9) {
            continue;
        }
        findings.errors.push(format!(
            "proxy {resource} request {request_text} (annotation {request_key}) exceeds its limit \
             {limit_text} (annotation {limit_key}): lower {request_key} or set {limit_key} to at \
             least {request_text}",
            resource = request.resource,
            request_key = request.annotation,
            limit_key = limit.annotation,
        ));
    }
}

/// Envoy worker threads. `0` means "one per CPU the proxy may use", which
/// Envoy cannot know inside a container, so it is counted here from the
/// proxy's CPU limit (else request).
fn concurrency(
    configured: Option<i32>,
    resources: &ResourceRequirements,
    findings: &mut Findings,
) -> Option<i32> {
    match configured? {
        n if n > 0 => Some(n),
        0 => cpu_count(resources),
        n => {
            findings.warnings.push(format!(
                "proxy concurrency {n} ignored: it must be 0 (one thread per CPU) or more"
            ));
            None
        }
    }
}

/// A resource's quantity as written and as a number, if set and valid.
fn parsed<'a>(
    side: &'a Option<BTreeMap<String, Quantity>>,
    resource: &str,
) -> Option<(&'a str, f64)> {
    let text = side.as_ref()?.get(resource)?.0.as_str();
    quantity::parse(text).map(|value| (text, value))
}

fn cpu_count(resources: &ResourceRequirements) -> Option<i32> {
    let (_, cpus) =
        parsed(&resources.limits, "cpu").or_else(|| parsed(&resources.requests, "cpu"))?;
    // Bounded before the cast: an absurd limit must not wrap around.
    Some(cpus.ceil().clamp(1.0, 1024.0) as i32)
}

fn environment(overrides: &ProxyOverrides, findings: &mut Findings) -> Vec<(String, String)> {
    let mut kept = Vec::with_capacity(overrides.environment.len());
    for (name, value) in &overrides.environment {
        if containers::is_set_by_proxy(name) {
            findings.warnings.push(format!(
                "ProxyConfig environment variable {name} ignored: the proxy sets it itself"
            ));
        } else if name.is_empty() || name.contains('=') {
            findings.warnings.push(format!(
                "ProxyConfig environment variable {name:?} ignored: not a valid variable name"
            ));
        } else {
            kept.push((name.clone(), value.clone()));
        }
    }
    kept
}
