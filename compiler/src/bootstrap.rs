//! A static Envoy bootstrap holding a compiled configuration inline, for
//! checking it with `envoy --mode validate` (and for running a proxy with
//! no control plane). EDS clusters become STATIC with their assignment
//! inline; RDS references become the inline route configuration; SDS
//! secrets (a gateway's `credentialName`) become static secrets read from
//! [`SECRET_CERTIFICATE_FILE`], [`SECRET_KEY_FILE`] and [`SECRET_CA_FILE`],
//! which the caller provides (there is no SDS server to ask).

use envoy_types::pb::envoy::config::bootstrap::v3::{Admin, Bootstrap, bootstrap};
use envoy_types::pb::envoy::config::cluster::v3::cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager,
};
use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::core::v3::{
    DataSource, TransportSocket, data_source, transport_socket,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, DownstreamTlsContext, Secret, TlsCertificate, common_tls_context,
    secret,
};
use prost::{Message, Name};

use crate::clusters::is_eds;
use crate::compile::ProxyConfig;
use crate::endpoints::socket_address;
use crate::envoy::any;
use crate::filters::HCM;

/// The certificate chain every SDS certificate secret stands for.
pub const SECRET_CERTIFICATE_FILE: &str = "/etc/certs/cert.pem";
/// Its private key.
pub const SECRET_KEY_FILE: &str = "/etc/certs/key.pem";
/// The CA every SDS validation secret (`NAME-cacert`) stands for.
pub const SECRET_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("listener {listener}: its HTTP connection manager does not decode: {source}")]
    Decode {
        listener: String,
        source: prost::DecodeError,
    },
    #[error("listener {listener}: its TLS context does not decode: {source}")]
    DecodeTls {
        listener: String,
        source: prost::DecodeError,
    },
    #[error("listener {listener}: route configuration `{route}` is not in the compiled routes")]
    MissingRoute { listener: String, route: String },
}

pub fn static_bootstrap(config: &ProxyConfig, node_id: &str) -> Result<Bootstrap, BootstrapError> {
    let clusters = config
        .clusters
        .iter()
        .map(|c| {
            let mut c = c.clone();
            if is_eds(&c) {
                c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                    cluster::DiscoveryType::Static as i32,
                ));
                c.eds_cluster_config = None;
                c.load_assignment = config
                    .endpoints
                    .iter()
                    .find(|e| e.cluster_name == c.name)
                    .cloned();
            }
            c
        })
        .collect();
    let mut listeners = config.listeners.clone();
    let mut secrets = Secrets::default();
    for l in &mut listeners {
        let name = l.name.clone();
        for chain in &mut l.filter_chains {
            for f in &mut chain.filters {
                inline_routes(f, config, &name)?;
            }
            if let Some(socket) = chain.transport_socket.as_mut() {
                static_secrets(socket, &mut secrets, &name)?;
            }
        }
    }
    Ok(Bootstrap {
        node: Some(Node {
            id: node_id.into(),
            cluster: "meshkeeper-validate".into(),
            ..Default::default()
        }),
        admin: Some(Admin {
            address: Some(socket_address("127.0.0.1", 15000)),
            ..Default::default()
        }),
        static_resources: Some(bootstrap::StaticResources {
            listeners,
            clusters,
            secrets: secrets.into_envoy(),
        }),
        ..Default::default()
    })
}

fn inline_routes(
    f: &mut Filter,
    config: &ProxyConfig,
    listener: &str,
) -> Result<(), BootstrapError> {
    if f.name != HCM {
        return Ok(());
    }
    let Some(filter::ConfigType::TypedConfig(typed)) = f.config_type.as_mut() else {
        return Ok(());
    };
    let mut hcm = HttpConnectionManager::decode(typed.value.as_slice()).map_err(|source| {
        BootstrapError::Decode {
            listener: listener.into(),
            source,
        }
    })?;
    if let Some(http_connection_manager::RouteSpecifier::Rds(rds)) = hcm.route_specifier.as_ref() {
        let route = config
            .routes
            .iter()
            .find(|r| r.name == rds.route_config_name)
            .cloned()
            .ok_or_else(|| BootstrapError::MissingRoute {
                listener: listener.into(),
                route: rds.route_config_name.clone(),
            })?;
        hcm.route_specifier = Some(http_connection_manager::RouteSpecifier::RouteConfig(route));
        *typed = any(&hcm);
    }
    Ok(())
}

/// Secret names met in TLS contexts, by use.
#[derive(Default)]
struct Secrets {
    certificates: BTreeSet<String>,
    validation: BTreeSet<String>,
}

impl Secrets {
    fn into_envoy(self) -> Vec<Secret> {
        let file = |path: &str| DataSource {
            specifier: Some(data_source::Specifier::Filename(path.into())),
            ..Default::default()
        };
        let certificates = self.certificates.into_iter().map(|name| Secret {
            name,
            r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: Some(file(SECRET_CERTIFICATE_FILE)),
                private_key: Some(file(SECRET_KEY_FILE)),
                ..Default::default()
            })),
        });
        let validation = self.validation.into_iter().map(|name| Secret {
            name,
            r#type: Some(secret::Type::ValidationContext(
                CertificateValidationContext {
                    trusted_ca: Some(file(SECRET_CA_FILE)),
                    ..Default::default()
                },
            )),
        });
        certificates.chain(validation).collect()
    }
}

/// Points a downstream TLS context's SDS references at static secrets
/// (an SDS reference without a config source names a bootstrap secret).
fn static_secrets(
    socket: &mut TransportSocket,
    secrets: &mut Secrets,
    listener: &str,
) -> Result<(), BootstrapError> {
    let Some(transport_socket::ConfigType::TypedConfig(typed)) = socket.config_type.as_mut() else {
        return Ok(());
    };
    if typed.type_url != DownstreamTlsContext::type_url() {
        return Ok(());
    }
    let mut context = DownstreamTlsContext::decode(typed.value.as_slice()).map_err(|source| {
        BootstrapError::DecodeTls {
            listener: listener.into(),
            source,
        }
    })?;
    if let Some(common) = context.common_tls_context.as_mut() {
        for sds in &mut common.tls_certificate_sds_secret_configs {
            sds.sds_config = None;
            secrets.certificates.insert(sds.name.clone());
        }
        if let Some(common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(
            sds,
        )) = common.validation_context_type.as_mut()
        {
            sds.sds_config = None;
            secrets.validation.insert(sds.name.clone());
        }
    }
    *typed = any(&context);
    Ok(())
}
