//! `inject.istio.io/templates`: which shape of injection a pod gets. Istio's
//! names are kept so its gateway and proxyless gRPC manifests work unchanged.

use std::collections::BTreeMap;

use super::annotations::{Findings, invalid_because};
use super::names;

/// What a pod is injected as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Template {
    /// Envoy beside the application, traffic captured by the init container.
    Sidecar,
    /// Envoy is the pod's main container (an ingress or egress gateway);
    /// nothing is captured.
    Gateway,
    /// Proxyless gRPC: no Envoy and no capture; the application's gRPC
    /// library reads the xDS bootstrap itself. meshkeeper has no agent, so
    /// Istio's two flavours (`grpc-agent`, `grpc-simple`) get the same thing:
    /// the bootstrap from the namespace's proxy ConfigMap.
    Grpc,
}

/// The names the annotation accepts, for messages.
pub(crate) const KNOWN: [&str; 4] = ["sidecar", "gateway", "grpc-agent", "grpc-simple"];

fn by_name(name: &str) -> Option<Template> {
    match name {
        "sidecar" => Some(Template::Sidecar),
        "gateway" => Some(Template::Gateway),
        "grpc-agent" | "grpc-simple" => Some(Template::Grpc),
        _ => None,
    }
}

impl Template {
    /// The name for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Template::Sidecar => "sidecar",
            Template::Gateway => "gateway",
            Template::Grpc => "grpc",
        }
    }
}

/// The pod's template: `sidecar` without the annotation. Istio takes a
/// comma-separated list and overlays the templates in turn; meshkeeper's
/// templates are whole shapes that do not compose, so a list may name one
/// template only (repeating it is harmless). Problems go to `findings`.
pub(crate) fn select(annotations: &BTreeMap<String, String>, findings: &mut Findings) -> Template {
    let Some(value) = annotations.get(names::TEMPLATES) else {
        return Template::Sidecar;
    };
    let accepted = format!(
        "one of the known templates: {} (a comma-separated list may repeat one, not combine them)",
        KNOWN.join(", ")
    );
    let mut chosen: Option<(&str, Template)> = None;
    for name in value.split(',').map(str::trim) {
        let Some(template) = by_name(name) else {
            findings.errors.push(invalid_because(
                names::TEMPLATES,
                value,
                &format!("unknown template {name:?}"),
                &accepted,
            ));
            return Template::Sidecar;
        };
        match chosen {
            Some((first, earlier)) if earlier != template => {
                findings.errors.push(invalid_because(
                    names::TEMPLATES,
                    value,
                    &format!("templates {first:?} and {name:?} cannot be combined"),
                    &accepted,
                ));
                return Template::Sidecar;
            }
            Some(_) => {}
            None => chosen = Some((name, template)),
        }
    }
    chosen.map_or(Template::Sidecar, |(_, template)| template)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(value: Option<&str>) -> (Template, Vec<String>) {
        let annotations: BTreeMap<String, String> = value
            .map(|v| (names::TEMPLATES.to_owned(), v.to_owned()))
            .into_iter()
            .collect();
        let mut findings = Findings::default();
        let template = select(&annotations, &mut findings);
        (template, findings.errors)
    }

    #[test]
    fn known_names() {
        assert_eq!(pick(None), (Template::Sidecar, vec![]));
        assert_eq!(pick(Some("sidecar")), (Template::Sidecar, vec![]));
        assert_eq!(pick(Some("gateway")), (Template::Gateway, vec![]));
        assert_eq!(pick(Some(" grpc-agent ")), (Template::Grpc, vec![]));
        assert_eq!(pick(Some("grpc-simple")), (Template::Grpc, vec![]));
        assert_eq!(pick(Some("gateway,gateway")), (Template::Gateway, vec![]));
        assert_eq!(
            pick(Some("grpc-agent,grpc-simple")),
            (Template::Grpc, vec![])
        );
    }

    #[test]
    fn unknown_empty_and_combined_names_are_refused_with_the_known_ones() {
        for (value, problem) in [
            ("spire", "unknown template \"spire\""),
            ("", "unknown template \"\""),
            ("gateway,", "unknown template \"\""),
            ("Gateway", "unknown template \"Gateway\""),
            (
                "sidecar,gateway",
                "\"sidecar\" and \"gateway\" cannot be combined",
            ),
        ] {
            let (_, errors) = pick(Some(value));
            assert_eq!(errors.len(), 1, "{value:?}: {errors:?}");
            let error = &errors[0];
            assert!(
                error.contains(names::TEMPLATES)
                    && error.contains(&format!("{value:?}"))
                    && error.contains(problem)
                    && error.contains("sidecar, gateway, grpc-agent, grpc-simple"),
                "{error}"
            );
        }
    }
}
