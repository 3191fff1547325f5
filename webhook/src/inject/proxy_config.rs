//! Which ProxyConfig objects apply to a pod, merged into [`ProxyOverrides`].
//!
//! Three levels, as in Istio, each overriding the one before field by field
//! (environment variables key by key): the mesh (selector-less, in the root
//! namespace), the namespace (selector-less, in the pod's namespace) and the
//! workload (in the pod's namespace, selector matching the pod). Where
//! several objects compete at one level, the oldest wins (then the smallest
//! name), so the answer never depends on watch order. The pod's own
//! `proxy.istio.io/config` annotation ranks between the namespace and the
//! workload levels (see `pod_proxy_config`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use meshkeeper_crds::networking::proxy_config::ProxyConfig;

use super::{ProxyOverrides, WorkloadFields, selector};

/// The ProxyConfig settings that apply to a pod with `pod_labels` in
/// `pod_namespace`.
pub fn proxy_overrides(
    pod_labels: &BTreeMap<String, String>,
    pod_namespace: &str,
    root_namespace: &str,
    configs: &[ProxyConfig],
) -> ProxyOverrides {
    let in_namespace = |config: &ProxyConfig, namespace: &str| {
        config.metadata.namespace.as_deref() == Some(namespace)
    };
    let mesh = oldest(
        configs
            .iter()
            .filter(|c| in_namespace(c, root_namespace) && selector_labels(c).is_none()),
    );
    let namespace = oldest(
        configs
            .iter()
            .filter(|c| in_namespace(c, pod_namespace) && selector_labels(c).is_none()),
    );
    let workload = oldest(configs.iter().filter(|c| {
        in_namespace(c, pod_namespace) && selector_labels(c).is_some_and(|s| selects(s, pod_labels))
    }));

    let mut merged = ProxyOverrides::default();
    for config in [mesh, namespace].into_iter().flatten() {
        apply(&mut merged, config);
    }
    if let Some(config) = workload {
        let spec = &config.spec;
        merged.set_by_workload = WorkloadFields {
            image_type: spec.image.as_ref().is_some_and(|i| i.image_type.is_some()),
            concurrency: spec.concurrency.is_some(),
            environment: spec
                .environment_variables
                .iter()
                .flatten()
                .map(|(k, _)| k.clone())
                .collect(),
        };
        apply(&mut merged, config);
    }
    merged
}

/// The selector's labels; `None` for a selector-less object (an empty
/// `matchLabels` selects the whole namespace too).
fn selector_labels(config: &ProxyConfig) -> Option<&BTreeMap<String, String>> {
    config
        .spec
        .selector
        .as_ref()
        .and_then(|s| s.match_labels.as_ref())
        .filter(|labels| !labels.is_empty())
}

/// Whether a workload selector's `matchLabels` select the pod, with the
/// same matching as every other selector injection reads.
fn selects(match_labels: &BTreeMap<String, String>, pod_labels: &BTreeMap<String, String>) -> bool {
    let selector = LabelSelector {
        match_labels: Some(match_labels.clone()),
        match_expressions: None,
    };
    // Only `matchExpressions` can be invalid, and a ProxyConfig has none.
    selector::matches(&selector, pod_labels).unwrap_or(false)
}

fn oldest<'a>(candidates: impl Iterator<Item = &'a ProxyConfig>) -> Option<&'a ProxyConfig> {
    // An object without a creation time (not read from the API server) sorts
    // after every real one.
    candidates.min_by(|a, b| {
        let key = |c: &'a ProxyConfig| {
            (
                c.metadata.creation_timestamp.is_none(),
                c.metadata.creation_timestamp.as_ref(),
                c.metadata.name.as_deref(),
            )
        };
        key(a).cmp(&key(b))
    })
}

fn apply(merged: &mut ProxyOverrides, config: &ProxyConfig) {
    let spec = &config.spec;
    if let Some(concurrency) = spec.concurrency {
        merged.concurrency = Some(concurrency);
    }
    if let Some(image_type) = spec.image.as_ref().and_then(|i| i.image_type.as_ref()) {
        merged.image_type = Some(image_type.clone());
    }
    for (name, value) in spec.environment_variables.iter().flatten() {
        merged.environment.insert(name.clone(), value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;
    use meshkeeper_crds::networking::common::WorkloadSelector;
    use meshkeeper_crds::networking::proxy_config::{ProxyConfigSpec, ProxyImage};

    fn config(
        namespace: &str,
        name: &str,
        created: Option<i64>,
        selector: Option<&[(&str, &str)]>,
        spec: ProxyConfigSpec,
    ) -> ProxyConfig {
        ProxyConfig {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                creation_timestamp: created.map(|s| Time(Timestamp::from_second(s).unwrap())),
                ..ObjectMeta::default()
            },
            spec: ProxyConfigSpec {
                selector: selector.map(|pairs| WorkloadSelector {
                    match_labels: Some(
                        pairs
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                            .collect(),
                    ),
                }),
                ..spec
            },
            status: None,
        }
    }

    fn concurrency(n: i32) -> ProxyConfigSpec {
        ProxyConfigSpec {
            concurrency: Some(n),
            ..ProxyConfigSpec::default()
        }
    }

    fn env(pairs: &[(&str, &str)]) -> ProxyConfigSpec {
        ProxyConfigSpec {
            environment_variables: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ProxyConfigSpec::default()
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn nothing_applies_without_configs() {
        assert_eq!(
            proxy_overrides(&labels(&[]), "app", "istio-system", &[]),
            ProxyOverrides::default()
        );
    }

    #[test]
    fn namespace_overrides_mesh_and_workload_overrides_namespace() {
        let configs = [
            config(
                "istio-system",
                "mesh",
                Some(1),
                None,
                ProxyConfigSpec {
                    concurrency: Some(1),
                    image: Some(ProxyImage {
                        image_type: Some("distroless".into()),
                    }),
                    environment_variables: Some(
                        [
                            ("A".to_owned(), "mesh".to_owned()),
                            ("B".to_owned(), "mesh".to_owned()),
                        ]
                        .into(),
                    ),
                    ..ProxyConfigSpec::default()
                },
            ),
            config("app", "ns", Some(2), None, env(&[("B", "ns"), ("C", "ns")])),
            config(
                "app",
                "wl",
                Some(3),
                Some(&[("app", "web")]),
                concurrency(4),
            ),
            // Other namespaces never apply.
            config("other", "x", Some(0), None, concurrency(9)),
        ];
        let got = proxy_overrides(&labels(&[("app", "web")]), "app", "istio-system", &configs);
        assert_eq!(got.concurrency, Some(4));
        assert_eq!(got.image_type.as_deref(), Some("distroless"));
        // Only the workload level is recorded: the pod annotation may not
        // change what it set, but may change what the mesh and namespace set.
        assert!(got.set_by_workload.concurrency);
        assert!(!got.set_by_workload.image_type);
        assert!(got.set_by_workload.environment.is_empty());
        assert_eq!(
            got.environment,
            labels(&[("A", "mesh"), ("B", "ns"), ("C", "ns")])
        );

        let got = proxy_overrides(&labels(&[("app", "db")]), "app", "istio-system", &configs);
        assert_eq!(
            got.concurrency,
            Some(1),
            "workload config does not select db"
        );
    }

    #[test]
    fn root_namespace_selectors_do_not_reach_other_namespaces() {
        let configs = [config(
            "istio-system",
            "sel",
            Some(1),
            Some(&[("app", "web")]),
            concurrency(3),
        )];
        let got = proxy_overrides(&labels(&[("app", "web")]), "app", "istio-system", &configs);
        assert_eq!(got.concurrency, None);
        let got = proxy_overrides(
            &labels(&[("app", "web")]),
            "istio-system",
            "istio-system",
            &configs,
        );
        assert_eq!(got.concurrency, Some(3));
    }

    #[test]
    fn oldest_then_name_wins_at_one_level() {
        let configs = [
            config("app", "b-newer", Some(20), None, concurrency(2)),
            config("app", "z-oldest", Some(10), None, concurrency(1)),
            config("app", "a-no-time", None, None, concurrency(3)),
        ];
        for rotation in 0..configs.len() {
            let mut shuffled = configs.to_vec();
            shuffled.rotate_left(rotation);
            let got = proxy_overrides(&labels(&[]), "app", "istio-system", &shuffled);
            assert_eq!(got.concurrency, Some(1));
        }
        let same_time = [
            config("app", "b", Some(5), None, concurrency(2)),
            config("app", "a", Some(5), None, concurrency(1)),
        ];
        let got = proxy_overrides(&labels(&[]), "app", "istio-system", &same_time);
        assert_eq!(got.concurrency, Some(1));
    }

    #[test]
    fn empty_match_labels_select_the_whole_namespace() {
        let configs = [config("app", "all", Some(1), Some(&[]), concurrency(5))];
        let got = proxy_overrides(&labels(&[("x", "y")]), "app", "istio-system", &configs);
        assert_eq!(got.concurrency, Some(5));
    }
}
