//! TLS origination (DestinationRule `trafficPolicy.tls`) as Envoy's
//! `UpstreamTlsContext`.

use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, SdsSecretConfig, SubjectAltNameMatcher,
    TlsCertificate, UpstreamTlsContext, common_tls_context, subject_alt_name_matcher,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use meshkeeper_crds::networking::destination_rule::{ClientTlsMode, ClientTlsSettings};

use crate::envoy::ads_config_source;
use crate::error::CompileError;
use crate::policy::PolicySource;

/// The context for `settings`, or `None` for plaintext. ISTIO_MUTUAL is
/// plaintext until meshkeeper issues workload certificates: a cluster that
/// asked for certificates nobody serves would fail every connection.
pub fn upstream(
    settings: &ClientTlsSettings,
    src: PolicySource<'_>,
) -> Result<Option<UpstreamTlsContext>, CompileError> {
    let mode = settings.mode.unwrap_or(ClientTlsMode::Disable);
    match mode {
        ClientTlsMode::Disable | ClientTlsMode::IstioMutual => Ok(None),
        ClientTlsMode::Simple | ClientTlsMode::Mutual => {
            let mut common = CommonTlsContext {
                validation_context_type: validation(settings),
                ..Default::default()
            };
            if mode == ClientTlsMode::Mutual {
                client_certificate(&mut common, settings, src)?;
            }
            Ok(Some(UpstreamTlsContext {
                common_tls_context: Some(common),
                sni: settings.sni.clone().unwrap_or_default(),
                ..Default::default()
            }))
        }
    }
}

fn file(path: &str) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::Filename(path.into())),
        ..Default::default()
    }
}

/// `kubernetes://NAME`: the Secret served over SDS on the ADS stream.
fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: format!("kubernetes://{name}"),
        sds_config: Some(ads_config_source()),
    }
}

fn validation(settings: &ClientTlsSettings) -> Option<common_tls_context::ValidationContextType> {
    if settings.insecure_skip_verify == Some(true) {
        return None;
    }
    if let Some(credential) = settings.credential_name.as_deref() {
        // Istio serves the CA of `credentialName` as `<name>-cacert`.
        return Some(
            common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(sds(
                &format!("{credential}-cacert"),
            )),
        );
    }
    let sans = settings
        .subject_alt_names
        .iter()
        .flatten()
        .map(|san| SubjectAltNameMatcher {
            san_type: subject_alt_name_matcher::SanType::Dns as i32,
            matcher: Some(StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Exact(san.clone())),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect::<Vec<_>>();
    let trusted_ca = settings.ca_certificates.as_deref().map(file);
    if trusted_ca.is_none() && sans.is_empty() {
        return None;
    }
    Some(
        common_tls_context::ValidationContextType::ValidationContext(
            CertificateValidationContext {
                trusted_ca,
                crl: settings.ca_crl.as_deref().map(file),
                match_typed_subject_alt_names: sans,
                ..Default::default()
            },
        ),
    )
}

fn client_certificate(
    common: &mut CommonTlsContext,
    settings: &ClientTlsSettings,
    src: PolicySource<'_>,
) -> Result<(), CompileError> {
    if let Some(credential) = settings.credential_name.as_deref() {
        common.tls_certificate_sds_secret_configs = vec![sds(credential)];
        return Ok(());
    }
    match (
        settings.client_certificate.as_deref(),
        settings.private_key.as_deref(),
    ) {
        (Some(cert), Some(key)) => {
            common.tls_certificates = vec![TlsCertificate {
                certificate_chain: Some(file(cert)),
                private_key: Some(file(key)),
                ..Default::default()
            }];
            Ok(())
        }
        _ => Err(src.error(
            "tls",
            "mode MUTUAL needs clientCertificate and privateKey, or credentialName".into(),
        )),
    }
}
