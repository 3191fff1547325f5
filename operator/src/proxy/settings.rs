//! The effective proxy settings of a namespace: the Mesh's proxy defaults,
//! overridden by the selector-less ProxyConfig of the mesh root namespace,
//! overridden by the selector-less ProxyConfig of the namespace (field by
//! field; environment variables name by name).
//!
//! Choices, made to agree with what the injector does for the same objects
//! (`meshkeeper_webhook::inject::proxy_overrides`), so the ConfigMap never
//! describes a pod differently from how it was injected:
//! - Several selector-less ProxyConfigs in one namespace are ambiguous (Istio
//!   says so too). The oldest applies (then the smallest name), so the
//!   answer never depends on watch order, and the others are reported in
//!   [`EffectiveSettings::problems`]: a mistake to fix, not one to stop on.
//! - A selector with empty `matchLabels` selects the whole namespace, so it
//!   counts as selector-less.
//! - An empty `imageType` is unset: it overrides nothing.
//! - A ProxyConfig that applies and holds a value the proxy cannot run with
//!   is a [`ProxyConfigError`] for the whole namespace (the controller keeps
//!   that namespace's current ConfigMap, reports the error in the Mesh's
//!   status and carries on with the other namespaces). Ignored duplicates
//!   are not checked: they do not apply.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::ResourceRequirements;
use meshkeeper_crds::meshkeeper::mesh::{ProxyDefaults, ProxyLogLevel};
use meshkeeper_crds::networking::proxy_config::ProxyConfig;
use meshkeeper_webhook::inject::{
    DEFAULT_CONCURRENCY, DEFAULT_PROXY_IMAGE, default_proxy_resources,
};
use serde::Serialize;

/// The injector's log level when the Mesh sets none.
const DEFAULT_LOG_LEVEL: ProxyLogLevel = ProxyLogLevel::Warning;

/// Variables the proxy container sets from the pod itself; its command line
/// relies on them, so the injector never lets a ProxyConfig replace them.
const SET_BY_PROXY: [&str; 4] = [
    "POD_NAME",
    "POD_NAMESPACE",
    "INSTANCE_IP",
    "SERVICE_ACCOUNT",
];
/// Image types Istio publishes; others are allowed when they can be part of
/// an image tag.
const KNOWN_IMAGE_TYPES: [&str; 3] = ["default", "debug", "distroless"];
const MAX_IMAGE_TYPE_LEN: usize = 64;

const CONCURRENCY_ALLOWED: &str =
    "0 (one worker thread per CPU the proxy may use) or a positive number of threads";
const ENV_NAME_ALLOWED: &str =
    "a non-empty name of printable ASCII characters other than '=' (Kubernetes' rule)";
const ENV_RESERVED_ALLOWED: &str = "any name but POD_NAME, POD_NAMESPACE, INSTANCE_IP and SERVICE_ACCOUNT, which the proxy sets itself";
const IMAGE_TYPE_ALLOWED: &str = "default, debug, distroless, or another published variant \
     named with at most 64 letters, digits, '.', '_' and '-'";

/// The settings every proxy of a namespace starts with (before a
/// workload-selecting ProxyConfig or a pod annotation changes them).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveSettings {
    /// The Mesh's proxy image; [`Self::image_type`] names its variant.
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_type: Option<String>,
    /// Envoy worker threads; 0 means one per CPU the proxy may use.
    pub concurrency: i32,
    pub log_level: ProxyLogLevel,
    pub resources: ResourceRequirements,
    /// Extra variables of the proxy container.
    pub environment: BTreeMap<String, String>,
    /// What contributed, in the order applied (e.g. `ProxyConfig ns/name`).
    pub applied: Vec<String>,
    /// Mistakes that did not stop the computation (ignored duplicates).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Where a setting comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The Mesh's `spec.proxy` (carried by its MeshRevision).
    MeshDefaults,
    ProxyConfig {
        namespace: String,
        name: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::MeshDefaults => f.write_str("Mesh proxy defaults"),
            Origin::ProxyConfig { namespace, name } => write!(f, "ProxyConfig {namespace}/{name}"),
        }
    }
}

impl Origin {
    fn of(config: &ProxyConfig) -> Origin {
        Origin::ProxyConfig {
            namespace: config.metadata.namespace.clone().unwrap_or_default(),
            name: config.metadata.name.clone().unwrap_or_default(),
        }
    }
}

/// A value the proxy cannot run with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {field} {value} is invalid; allowed: {allowed}")]
pub struct ProxyConfigError {
    pub origin: Origin,
    /// The field's path in the object, e.g. `spec.concurrency`.
    pub field: String,
    /// The value as written (strings quoted).
    pub value: String,
    pub allowed: &'static str,
}

/// The effective settings from the Mesh's `defaults`, the ProxyConfigs of
/// the mesh root namespace (`root`) and those of the namespace
/// (`namespace`). Objects with a selector are skipped, so callers may pass
/// every ProxyConfig of each namespace. For the root namespace itself, pass
/// its ProxyConfigs as `root` and nothing as `namespace`.
pub fn effective_settings(
    defaults: &ProxyDefaults,
    root: &[ProxyConfig],
    namespace: &[ProxyConfig],
) -> Result<EffectiveSettings, ProxyConfigError> {
    let mut settings = from_defaults(defaults)?;
    for level in [root, namespace] {
        if let Some(config) = applicable(level, &mut settings.problems) {
            apply(&mut settings, config)?;
        }
    }
    Ok(settings)
}

fn from_defaults(defaults: &ProxyDefaults) -> Result<EffectiveSettings, ProxyConfigError> {
    let concurrency = defaults.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    check_concurrency(concurrency, &Origin::MeshDefaults, "spec.proxy.concurrency")?;
    Ok(EffectiveSettings {
        image: defaults
            .image
            .clone()
            .unwrap_or_else(|| DEFAULT_PROXY_IMAGE.to_owned()),
        image_type: None,
        concurrency,
        log_level: defaults.log_level.unwrap_or(DEFAULT_LOG_LEVEL),
        resources: defaults
            .resources
            .clone()
            .unwrap_or_else(default_proxy_resources),
        environment: BTreeMap::new(),
        applied: vec![Origin::MeshDefaults.to_string()],
        problems: Vec::new(),
    })
}

/// The one selector-less object of a namespace's `configs`: the oldest, then
/// the smallest name; a note in `problems` when there were several.
fn applicable<'a>(
    configs: &'a [ProxyConfig],
    problems: &mut Vec<String>,
) -> Option<&'a ProxyConfig> {
    let mut candidates: Vec<&ProxyConfig> =
        configs.iter().filter(|c| is_selector_less(c)).collect();
    // An object without a creation time (not read from the API server)
    // sorts after every real one.
    candidates.sort_by(|a, b| {
        let key = |c: &'a ProxyConfig| {
            (
                c.metadata.creation_timestamp.is_none(),
                c.metadata.creation_timestamp.as_ref(),
                c.metadata.name.as_deref(),
            )
        };
        key(a).cmp(&key(b))
    });
    let (chosen, ignored) = candidates.split_first()?;
    if !ignored.is_empty() {
        let names: Vec<&str> = ignored
            .iter()
            .map(|c| c.metadata.name.as_deref().unwrap_or_default())
            .collect();
        problems.push(format!(
            "namespace {} has {} ProxyConfigs without a selector; {}, the oldest, applies and {} {} \
             ignored: delete the extra ones or give them a selector",
            chosen.metadata.namespace.as_deref().unwrap_or_default(),
            candidates.len(),
            chosen.metadata.name.as_deref().unwrap_or_default(),
            names.join(", "),
            if names.len() == 1 { "is" } else { "are" },
        ));
    }
    Some(chosen)
}

fn is_selector_less(config: &ProxyConfig) -> bool {
    config
        .spec
        .selector
        .as_ref()
        .and_then(|s| s.match_labels.as_ref())
        .is_none_or(BTreeMap::is_empty)
}

fn apply(settings: &mut EffectiveSettings, config: &ProxyConfig) -> Result<(), ProxyConfigError> {
    let origin = Origin::of(config);
    let spec = &config.spec;
    if let Some(concurrency) = spec.concurrency {
        check_concurrency(concurrency, &origin, "spec.concurrency")?;
        settings.concurrency = concurrency;
    }
    for (name, value) in spec.environment_variables.iter().flatten() {
        check_environment_name(name, &origin)?;
        settings.environment.insert(name.clone(), value.clone());
    }
    let image_type = spec.image.as_ref().and_then(|i| i.image_type.as_deref());
    if let Some(image_type) = image_type.filter(|t| !t.is_empty()) {
        check_image_type(image_type, &origin)?;
        settings.image_type = Some(image_type.to_owned());
    }
    settings.applied.push(origin.to_string());
    Ok(())
}

fn check_concurrency(value: i32, origin: &Origin, field: &str) -> Result<(), ProxyConfigError> {
    if value >= 0 {
        return Ok(());
    }
    Err(ProxyConfigError {
        origin: origin.clone(),
        field: field.to_owned(),
        value: value.to_string(),
        allowed: CONCURRENCY_ALLOWED,
    })
}

fn check_environment_name(name: &str, origin: &Origin) -> Result<(), ProxyConfigError> {
    let well_formed = !name.is_empty()
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'=');
    let allowed = if !well_formed {
        ENV_NAME_ALLOWED
    } else if SET_BY_PROXY.contains(&name) {
        ENV_RESERVED_ALLOWED
    } else {
        return Ok(());
    };
    Err(ProxyConfigError {
        origin: origin.clone(),
        field: "spec.environmentVariables name".to_owned(),
        value: format!("{name:?}"),
        allowed,
    })
}

fn check_image_type(image_type: &str, origin: &Origin) -> Result<(), ProxyConfigError> {
    let tag_safe = image_type.len() <= MAX_IMAGE_TYPE_LEN
        && image_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if KNOWN_IMAGE_TYPES.contains(&image_type) || tag_safe {
        return Ok(());
    }
    Err(ProxyConfigError {
        origin: origin.clone(),
        field: "spec.image.imageType".to_owned(),
        value: format!("{image_type:?}"),
        allowed: IMAGE_TYPE_ALLOWED,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;
    use meshkeeper_crds::networking::common::WorkloadSelector;
    use meshkeeper_crds::networking::proxy_config::ProxyConfigSpec;
    use serde_json::json;

    fn config(
        namespace: &str,
        name: &str,
        created: Option<i64>,
        spec: serde_json::Value,
    ) -> ProxyConfig {
        ProxyConfig {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                creation_timestamp: created.map(|s| Time(Timestamp::from_second(s).unwrap())),
                ..ObjectMeta::default()
            },
            spec: serde_json::from_value::<ProxyConfigSpec>(spec).unwrap(),
            status: None,
        }
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_alone_are_the_injectors_defaults() {
        let s = effective_settings(&ProxyDefaults::default(), &[], &[]).unwrap();
        assert_eq!(s.image, DEFAULT_PROXY_IMAGE);
        assert_eq!(s.image_type, None);
        assert_eq!(s.concurrency, 2);
        assert_eq!(s.log_level, ProxyLogLevel::Warning);
        assert_eq!(s.resources, default_proxy_resources());
        assert!(s.environment.is_empty());
        assert_eq!(s.applied, ["Mesh proxy defaults"]);
        assert!(s.problems.is_empty());
    }

    #[test]
    fn namespace_overrides_root_overrides_mesh_field_by_field() {
        let defaults = ProxyDefaults {
            image: Some("envoyproxy/envoy:v1.36.2".into()),
            concurrency: Some(4),
            log_level: Some(ProxyLogLevel::Debug),
            ..ProxyDefaults::default()
        };
        let root = [config(
            "istio-system",
            "mesh",
            Some(1),
            json!({"concurrency": 1, "image": {"imageType": "distroless"},
                   "environmentVariables": {"A": "root", "B": "root"}}),
        )];
        let ns = [config(
            "app",
            "ns",
            Some(2),
            json!({"environmentVariables": {"B": "ns", "C": "ns"}}),
        )];

        let s = effective_settings(&defaults, &root, &ns).unwrap();
        assert_eq!(s.image, "envoyproxy/envoy:v1.36.2");
        assert_eq!(
            s.image_type.as_deref(),
            Some("distroless"),
            "root's, the namespace sets none"
        );
        assert_eq!(s.concurrency, 1, "root's over the Mesh's 4");
        assert_eq!(
            s.log_level,
            ProxyLogLevel::Debug,
            "only the Mesh sets the level"
        );
        assert_eq!(
            s.environment,
            env(&[("A", "root"), ("B", "ns"), ("C", "ns")])
        );
        assert_eq!(
            s.applied,
            [
                "Mesh proxy defaults",
                "ProxyConfig istio-system/mesh",
                "ProxyConfig app/ns"
            ]
        );

        let ns = [config(
            "app",
            "ns",
            Some(2),
            json!({"concurrency": 0, "image": {"imageType": "debug"}}),
        )];
        let s = effective_settings(&defaults, &root, &ns).unwrap();
        assert_eq!((s.concurrency, s.image_type.as_deref()), (0, Some("debug")));
        assert_eq!(s.environment, env(&[("A", "root"), ("B", "root")]));
    }

    #[test]
    fn empty_image_type_overrides_nothing() {
        let root = [config(
            "istio-system",
            "mesh",
            Some(1),
            json!({"image": {"imageType": "debug"}}),
        )];
        let ns = [config(
            "app",
            "ns",
            Some(1),
            json!({"image": {"imageType": ""}}),
        )];
        let s = effective_settings(&ProxyDefaults::default(), &root, &ns).unwrap();
        assert_eq!(s.image_type.as_deref(), Some("debug"));
    }

    #[test]
    fn workload_selecting_configs_do_not_apply_but_empty_selectors_do() {
        let mut selecting = config("app", "web-only", Some(0), json!({"concurrency": 7}));
        selecting.spec.selector = Some(WorkloadSelector {
            match_labels: Some(env(&[("app", "web")])),
        });
        let s = effective_settings(&ProxyDefaults::default(), &[], &[selecting.clone()]).unwrap();
        assert_eq!(s.concurrency, 2);

        let mut everyone = config("app", "all", Some(1), json!({"concurrency": 5}));
        everyone.spec.selector = Some(WorkloadSelector {
            match_labels: Some(BTreeMap::new()),
        });
        let s = effective_settings(&ProxyDefaults::default(), &[], &[selecting, everyone]).unwrap();
        assert_eq!(s.concurrency, 5);
    }

    #[test]
    fn of_two_selector_less_configs_the_oldest_applies_and_a_problem_is_reported() {
        let configs = [
            config("app", "b-newer", Some(20), json!({"concurrency": 2})),
            config("app", "z-oldest", Some(10), json!({"concurrency": 1})),
            config("app", "a-no-time", None, json!({"concurrency": 3})),
        ];
        for rotation in 0..configs.len() {
            let mut shuffled = configs.to_vec();
            shuffled.rotate_left(rotation);
            let s = effective_settings(&ProxyDefaults::default(), &[], &shuffled).unwrap();
            assert_eq!(s.concurrency, 1);
            assert_eq!(
                s.problems,
                [
                    "namespace app has 3 ProxyConfigs without a selector; z-oldest, the oldest, \
                  applies and b-newer, a-no-time are ignored: delete the extra ones or give them \
                  a selector"
                ]
            );
        }
    }

    #[test]
    fn an_invalid_ignored_duplicate_is_not_an_error() {
        let configs = [
            config("app", "old", Some(1), json!({"concurrency": 3})),
            config("app", "new", Some(2), json!({"concurrency": -1})),
        ];
        let s = effective_settings(&ProxyDefaults::default(), &[], &configs).unwrap();
        assert_eq!(s.concurrency, 3);
        assert_eq!(s.problems.len(), 1);
    }

    #[test]
    fn errors_name_object_field_value_and_what_is_allowed() {
        let cases = [
            (
                json!({"concurrency": -2}),
                "spec.concurrency",
                "-2",
                "ProxyConfig app/bad: spec.concurrency -2 is invalid; allowed: 0 (one worker \
                 thread per CPU the proxy may use) or a positive number of threads",
            ),
            (
                json!({"environmentVariables": {"A=B": "x"}}),
                "spec.environmentVariables name",
                "\"A=B\"",
                "ProxyConfig app/bad: spec.environmentVariables name \"A=B\" is invalid; allowed: \
                 a non-empty name of printable ASCII characters other than '=' (Kubernetes' rule)",
            ),
            (
                json!({"environmentVariables": {"": "x"}}),
                "spec.environmentVariables name",
                "\"\"",
                "",
            ),
            (
                json!({"environmentVariables": {"TAB\tNAME": "x"}}),
                "spec.environmentVariables name",
                "\"TAB\\tNAME\"",
                "",
            ),
            (
                json!({"environmentVariables": {"POD_NAME": "x"}}),
                "spec.environmentVariables name",
                "\"POD_NAME\"",
                "ProxyConfig app/bad: spec.environmentVariables name \"POD_NAME\" is invalid; \
                 allowed: any name but POD_NAME, POD_NAMESPACE, INSTANCE_IP and SERVICE_ACCOUNT, \
                 which the proxy sets itself",
            ),
            (
                json!({"image": {"imageType": "debug:latest"}}),
                "spec.image.imageType",
                "\"debug:latest\"",
                "ProxyConfig app/bad: spec.image.imageType \"debug:latest\" is invalid; allowed: \
                 default, debug, distroless, or another published variant named with at most 64 \
                 letters, digits, '.', '_' and '-'",
            ),
            (
                json!({"image": {"imageType": "x".repeat(65)}}),
                "spec.image.imageType",
                "",
                "",
            ),
        ];
        for (spec, field, value, message) in cases {
            let bad = [config("app", "bad", Some(1), spec.clone())];
            let err = effective_settings(&ProxyDefaults::default(), &[], &bad).expect_err(field);
            assert_eq!(
                err.origin,
                Origin::ProxyConfig {
                    namespace: "app".into(),
                    name: "bad".into()
                },
                "{spec}"
            );
            assert_eq!(err.field, field, "{spec}");
            if !value.is_empty() {
                assert_eq!(err.value, value, "{spec}");
            }
            if !message.is_empty() {
                assert_eq!(err.to_string(), message);
            }
        }
    }

    #[test]
    fn an_invalid_root_config_or_mesh_default_names_its_origin() {
        let root = [config(
            "istio-system",
            "global",
            Some(1),
            json!({"concurrency": -1}),
        )];
        let err = effective_settings(&ProxyDefaults::default(), &root, &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("ProxyConfig istio-system/global: spec.concurrency -1")
        );

        let defaults = ProxyDefaults {
            concurrency: Some(-3),
            ..ProxyDefaults::default()
        };
        let err = effective_settings(&defaults, &[], &[]).unwrap_err();
        assert_eq!(err.origin, Origin::MeshDefaults);
        assert_eq!(err.field, "spec.proxy.concurrency");
        assert!(
            err.to_string()
                .starts_with("Mesh proxy defaults: spec.proxy.concurrency -3 is invalid")
        );
    }

    #[test]
    fn odd_but_valid_values_pass() {
        let ns = [config(
            "app",
            "odd",
            Some(1),
            json!({"environmentVariables": {"a.b-c": "line1\nline2", "ISTIO_META_X": "", "SP ACE": "yes"},
                   "image": {"imageType": "custom_build.1"}}),
        )];
        let s = effective_settings(&ProxyDefaults::default(), &[], &ns).unwrap();
        assert_eq!(s.environment["a.b-c"], "line1\nline2");
        assert_eq!(s.image_type.as_deref(), Some("custom_build.1"));
    }

    /// The injector and this module must agree on what a namespace's
    /// selector-less ProxyConfigs mean.
    #[test]
    fn agrees_with_the_injector() {
        let configs = [
            config(
                "istio-system",
                "mesh",
                Some(1),
                json!({"concurrency": 3, "environmentVariables": {"A": "1", "B": "1"}}),
            ),
            config(
                "istio-system",
                "mesh-newer",
                Some(5),
                json!({"concurrency": 9}),
            ),
            config(
                "app",
                "ns",
                Some(2),
                json!({"environmentVariables": {"B": "2"}, "image": {"imageType": "debug"}}),
            ),
            config("app", "ns-newer", Some(3), json!({"concurrency": 8})),
        ];
        let (root, ns): (Vec<_>, Vec<_>) = configs
            .iter()
            .cloned()
            .partition(|c| c.metadata.namespace.as_deref() == Some("istio-system"));
        let ours = effective_settings(&ProxyDefaults::default(), &root, &ns).unwrap();
        let injector = meshkeeper_webhook::inject::proxy_overrides(
            &BTreeMap::new(),
            "app",
            "istio-system",
            &configs,
        );
        assert_eq!(Some(ours.concurrency), injector.concurrency);
        assert_eq!(ours.image_type, injector.image_type);
        assert_eq!(ours.environment, injector.environment);
    }
}
