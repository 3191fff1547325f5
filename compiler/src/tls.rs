//! TLS origination (DestinationRule `trafficPolicy.tls`) as Envoy's
//! `UpstreamTlsContext`, and a gateway server's TLS termination as its
//! `DownstreamTlsContext`.

use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig,
    SubjectAltNameMatcher, TlsCertificate, TlsParameters, UpstreamTlsContext, common_tls_context,
    subject_alt_name_matcher, tls_parameters,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use meshkeeper_crds::networking::destination_rule::{ClientTlsMode, ClientTlsSettings};
use meshkeeper_crds::networking::gateway::{ServerTlsMode, ServerTlsSettings, TlsProtocol};

use crate::envoy::{ads_config_source, bool_value};
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
pub fn sds(name: &str) -> SdsSecretConfig {
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

/// A gateway server's TLS termination (`SIMPLE`, `MUTUAL`,
/// `OPTIONAL_MUTUAL`) as Envoy's `DownstreamTlsContext`: the certificate
/// from `credentialName(s)` over SDS on the ADS stream (`kubernetes://NAME`,
/// as Istio names it; its client CA as `NAME-cacert`), or from files.
/// `alpn` is offered for HTTPS (`h2`, `http/1.1`).
pub fn downstream(
    settings: &ServerTlsSettings,
    alpn: bool,
    at: &dyn Fn(&str, String) -> CompileError,
) -> Result<DownstreamTlsContext, CompileError> {
    let mode = settings.mode.unwrap_or(ServerTlsMode::Passthrough);
    let mut common = CommonTlsContext {
        tls_params: tls_params(settings),
        ..Default::default()
    };
    if alpn {
        common.alpn_protocols = vec!["h2".into(), "http/1.1".into()];
    }
    let credentials: Vec<&String> = settings
        .credential_name
        .iter()
        .chain(settings.credential_names.iter().flatten())
        .collect();
    if !credentials.is_empty() {
        common.tls_certificate_sds_secret_configs = credentials.iter().map(|c| sds(c)).collect();
    } else if let (Some(cert), Some(key)) = (
        settings.server_certificate.as_deref(),
        settings.private_key.as_deref(),
    ) {
        common.tls_certificates = vec![TlsCertificate {
            certificate_chain: Some(file(cert)),
            private_key: Some(file(key)),
            ..Default::default()
        }];
    } else if let Some(list) = settings.tls_certificates.as_ref().filter(|l| !l.is_empty()) {
        for (i, c) in list.iter().enumerate() {
            let (Some(cert), Some(key)) =
                (c.server_certificate.as_deref(), c.private_key.as_deref())
            else {
                return Err(at(
                    &format!("tls.tlsCertificates[{i}]"),
                    "needs serverCertificate and privateKey".into(),
                ));
            };
            common.tls_certificates.push(TlsCertificate {
                certificate_chain: Some(file(cert)),
                private_key: Some(file(key)),
                ..Default::default()
            });
        }
    } else {
        return Err(at(
            "tls",
            "terminating TLS needs credentialName, credentialNames, tlsCertificates or serverCertificate and privateKey".into(),
        ));
    }
    let verifies = matches!(mode, ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual);
    if verifies {
        let ca_credential = settings
            .ca_cert_credential_name
            .clone()
            .or_else(|| credentials.first().map(|c| format!("{c}-cacert")));
        common.validation_context_type = match (ca_credential, settings.ca_certificates.as_deref())
        {
            (Some(name), _) => Some(
                common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(sds(
                    &name,
                )),
            ),
            (None, Some(ca)) => Some(
                common_tls_context::ValidationContextType::ValidationContext(
                    CertificateValidationContext {
                        trusted_ca: Some(file(ca)),
                        crl: settings.ca_crl.as_deref().map(file),
                        ..Default::default()
                    },
                ),
            ),
            (None, None) => {
                return Err(at(
                    "tls.caCertificates",
                    "MUTUAL needs a client CA: caCertificates, caCertCredentialName or credentialName".into(),
                ));
            }
        };
    }
    Ok(DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: Some(bool_value(mode == ServerTlsMode::Mutual)),
        ..Default::default()
    })
}

fn tls_params(settings: &ServerTlsSettings) -> Option<TlsParameters> {
    let version = |v: Option<TlsProtocol>| match v {
        None | Some(TlsProtocol::TlsAuto) => tls_parameters::TlsProtocol::TlsAuto,
        Some(TlsProtocol::TlsV1_0) => tls_parameters::TlsProtocol::TlSv10,
        Some(TlsProtocol::TlsV1_1) => tls_parameters::TlsProtocol::TlSv11,
        Some(TlsProtocol::TlsV1_2) => tls_parameters::TlsProtocol::TlSv12,
        Some(TlsProtocol::TlsV1_3) => tls_parameters::TlsProtocol::TlSv13,
    };
    let ciphers = settings.cipher_suites.clone().unwrap_or_default();
    if settings.min_protocol_version.is_none()
        && settings.max_protocol_version.is_none()
        && ciphers.is_empty()
    {
        return None;
    }
    Some(TlsParameters {
        tls_minimum_protocol_version: version(settings.min_protocol_version) as i32,
        tls_maximum_protocol_version: version(settings.max_protocol_version) as i32,
        cipher_suites: ciphers,
        ..Default::default()
    })
}
