//! Where a revision's serving certificate and the webhook configurations'
//! CA come from, per `spec.webhook.certificate.source`.

use meshkeeper_crds::meshkeeper::mesh::{CertificateSettings, CertificateSource, MeshConfig};

use super::error::InstallError;
use super::meta::is_dns_label;

/// cert-manager's cainjector reads this annotation and writes the CA of
/// the named Certificate into every `caBundle` of the configuration.
pub const CERT_MANAGER_INJECT_CA_FROM: &str = "cert-manager.io/inject-ca-from";

/// How the API server learns to trust the webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ca<'a> {
    /// The operator writes this PEM bundle into the configurations.
    Bundle(&'a [u8]),
    /// cert-manager injects the CA of this Certificate (`namespace/name`);
    /// the operator writes no `caBundle`, so its apply never fights the
    /// injector over the field.
    CertManager(&'a str),
}

impl Ca<'_> {
    /// The bundle to put in the configuration (empty leaves it out).
    pub(crate) fn bundle(&self) -> Vec<u8> {
        match self {
            Ca::Bundle(pem) => pem.to_vec(),
            Ca::CertManager(_) => Vec::new(),
        }
    }
}

fn certificate(config: &MeshConfig) -> Option<&CertificateSettings> {
    config.webhook.as_ref().and_then(|w| w.certificate.as_ref())
}

fn source(config: &MeshConfig) -> CertificateSource {
    certificate(config)
        .and_then(|c| c.source)
        .unwrap_or_default()
}

/// The Secret (in the operator's namespace) the webhook pods mount:
/// `own_secret`, the one the operator issues, for source `SelfSigned`;
/// `spec.webhook.certificate.secretName` for `Secret` and `CertManager`.
/// `object` names the settings' owner in errors.
pub(crate) fn serving_secret<'a>(
    object: &str,
    config: &'a MeshConfig,
    own_secret: &'a str,
) -> Result<&'a str, InstallError> {
    let source = source(config);
    if source == CertificateSource::SelfSigned {
        return Ok(own_secret);
    }
    let field = "spec.webhook.certificate.secretName";
    let name = certificate(config)
        .and_then(|c| c.secret_name.as_deref())
        .ok_or_else(|| {
            InstallError::missing(
                object,
                field,
                format!(
                    "certificate source {source:?} needs the kubernetes.io/tls Secret the webhook serves with"
                ),
            )
        })?;
    if is_dns_subdomain(name) {
        Ok(name)
    } else {
        Err(InstallError::invalid(
            object,
            field,
            name,
            "a Secret name: lowercase letters, digits, '-' and '.', at most 253 characters",
        ))
    }
}

/// How the API server learns to trust the webhook. `ca_bundle` is what the
/// caller read for the source: the operator's CA (`SelfSigned`), the
/// user's Secret's `ca.crt` or `spec.webhook.certificate.caBundle`
/// (`Secret`); it is ignored for `CertManager`.
pub(crate) fn ca<'a>(
    object: &str,
    config: &'a MeshConfig,
    ca_bundle: Option<&'a [u8]>,
) -> Result<Ca<'a>, InstallError> {
    let bundle = |why: &str| match ca_bundle {
        Some(pem) if !pem.is_empty() => Ok(Ca::Bundle(pem)),
        _ => Err(InstallError::missing(
            object,
            "spec.webhook.certificate.caBundle",
            why.to_owned(),
        )),
    };
    match source(config) {
        CertificateSource::SelfSigned => bundle(
            "certificate source SelfSigned: the operator's CA has not been issued yet (Secret meshkeeper-ca)",
        ),
        CertificateSource::Secret => bundle(
            "certificate source Secret: neither the Secret's ca.crt nor spec.webhook.certificate.caBundle holds a CA",
        ),
        CertificateSource::CertManager => {
            let field = "spec.webhook.certificate.certManagerCertificate";
            let name = certificate(config)
                .and_then(|c| c.cert_manager_certificate.as_deref())
                .ok_or_else(|| {
                    InstallError::missing(
                        object,
                        field,
                        "certificate source CertManager needs the namespace/name of the Certificate whose CA cert-manager injects",
                    )
                })?;
            let well_formed = name
                .split_once('/')
                .is_some_and(|(ns, n)| is_dns_label(ns, 63) && is_dns_subdomain(n));
            if well_formed {
                Ok(Ca::CertManager(name))
            } else {
                Err(InstallError::invalid(
                    object,
                    field,
                    name,
                    "namespace/name of a cert-manager Certificate",
                ))
            }
        }
    }
}

/// An object name (RFC 1123 subdomain).
fn is_dns_subdomain(value: &str) -> bool {
    value.len() <= 253 && value.split('.').all(|part| is_dns_label(part, 63))
}
