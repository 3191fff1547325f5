//! The one piece of I/O: which certificate does a webhook endpoint serve?
//!
//! The controller asks every webhook endpoint before it drops the previous
//! CA (step 4 of a rotation, see the module above): connecting with a
//! client that trusts exactly the caBundle tells both that the endpoint is
//! reachable as the API server would reach it and which leaf it presents.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;

/// Why the served certificate could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("the CA bundle holds no usable certificate: {0}")]
    Bundle(String),
    #[error("server name {0:?} is neither a DNS name nor an IP address")]
    ServerName(String),
    #[error("TLS client setup failed: {0}")]
    Config(String),
    #[error("connecting to {addr} took longer than {timeout:?}")]
    ConnectTimeout { addr: String, timeout: Duration },
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr} took longer than {timeout:?}")]
    HandshakeTimeout { addr: String, timeout: Duration },
    #[error("TLS handshake with {addr} as {server_name:?} failed: {source}")]
    Handshake {
        addr: String,
        server_name: String,
        source: std::io::Error,
    },
    #[error("{addr} completed the handshake without presenting a certificate")]
    NoCertificate { addr: String },
}

/// Connects over TLS to `addr` (`host:port`) as `server_name` (the SNI name
/// and the name the certificate must carry), trusting only the CAs in the
/// PEM `bundle`, and returns the DER of the leaf certificate the server
/// presented. `timeout` bounds connection and handshake together.
pub async fn served_certificate(
    addr: &str,
    server_name: &str,
    bundle: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, ProbeError> {
    let connector = TlsConnector::from(Arc::new(client_config(bundle)?));
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|_| ProbeError::ServerName(server_name.to_owned()))?;
    let deadline = Instant::now() + timeout;

    let tcp = timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| ProbeError::ConnectTimeout {
            addr: addr.to_owned(),
            timeout,
        })?
        .map_err(|source| ProbeError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    let mut tls = timeout_at(deadline, connector.connect(name, tcp))
        .await
        .map_err(|_| ProbeError::HandshakeTimeout {
            addr: addr.to_owned(),
            timeout,
        })?
        .map_err(|source| ProbeError::Handshake {
            addr: addr.to_owned(),
            server_name: server_name.to_owned(),
            source,
        })?;

    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.as_ref().to_vec())
        .ok_or_else(|| ProbeError::NoCertificate {
            addr: addr.to_owned(),
        })?;
    // A polite close_notify; the answer is already in hand, so a peer that
    // does not read it changes nothing.
    let _ = timeout_at(deadline, tls.shutdown()).await;
    Ok(leaf)
}

fn client_config(bundle: &[u8]) -> Result<ClientConfig, ProbeError> {
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(bundle) {
        let der = der.map_err(|e| ProbeError::Bundle(e.to_string()))?;
        roots
            .add(der)
            .map_err(|e| ProbeError::Bundle(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ProbeError::Bundle("no PEM CERTIFICATE block".to_owned()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use rustls::ServerConfig;
    use rustls::pki_types::PrivateKeyDer;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    use super::*;
    use crate::certs::{
        CaState, DEFAULT_CA_LIFETIME, DEFAULT_SERVING_LIFETIME, ServingCert, ServingRequest,
        ca_bundle, issue_serving, new_authority,
    };

    const PATIENCE: Duration = Duration::from_secs(10);

    /// A TLS server on 127.0.0.1 presenting `serving`; answers every
    /// connection until the test ends.
    async fn serve(serving: &ServingCert) -> String {
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![CertificateDer::from(serving.cert().der().to_vec())],
                    PrivateKeyDer::from_pem_slice(serving.key_pem().as_bytes()).unwrap(),
                )
                .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let mut sink = Vec::new();
                        let _ = tls.read_to_end(&mut sink).await;
                    }
                });
            }
        });
        addr
    }

    fn issued() -> (CaState, ServingCert) {
        let now = SystemTime::now();
        let state = CaState::new(now, DEFAULT_CA_LIFETIME).unwrap();
        let request =
            ServingRequest::for_webhook("webhook", "mesh", Some("https://127.0.0.1:9443")).unwrap();
        let serving =
            issue_serving(&state.current, &request, now, DEFAULT_SERVING_LIFETIME).unwrap();
        (state, serving)
    }

    #[tokio::test]
    async fn returns_the_leaf_the_server_presents() {
        let (state, serving) = issued();
        let addr = serve(&serving).await;
        let bundle = ca_bundle(&state);
        for name in ["127.0.0.1", "webhook.mesh.svc"] {
            let leaf = served_certificate(&addr, name, &bundle, PATIENCE)
                .await
                .unwrap();
            assert_eq!(leaf, serving.cert().der(), "{name}");
        }
    }

    #[tokio::test]
    async fn an_untrusted_or_misnamed_server_fails_the_handshake() {
        let (_, serving) = issued();
        let addr = serve(&serving).await;
        // Every meshkeeper CA has the same name: the signature must decide.
        let stranger = new_authority(SystemTime::now(), DEFAULT_CA_LIFETIME).unwrap();
        let error = served_certificate(
            &addr,
            "127.0.0.1",
            stranger.cert().pem().as_bytes(),
            PATIENCE,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&error, ProbeError::Handshake { source, .. } if source.to_string().contains("invalid peer certificate")),
            "{error}"
        );
        let bundle = serving.ca().pem();
        let error = served_certificate(&addr, "elsewhere.example", bundle.as_bytes(), PATIENCE)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ProbeError::Handshake { server_name, .. } if server_name == "elsewhere.example"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn connection_problems_are_told_apart() {
        let (state, _) = issued();
        let bundle = ca_bundle(&state);

        // A port nobody listens on any more.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap().to_string();
        drop(closed);
        let error = served_certificate(&addr, "127.0.0.1", &bundle, PATIENCE)
            .await
            .unwrap_err();
        assert!(matches!(error, ProbeError::Connect { .. }), "{error}");

        // A server that accepts TCP but never answers the ClientHello.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((tcp, _)) = silent.accept().await {
                open.push(tcp);
            }
        });
        let error = served_certificate(&addr, "127.0.0.1", &bundle, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ProbeError::HandshakeTimeout { .. }),
            "{error}"
        );
        held.abort();

        for (bundle, name) in [(&b"junk"[..], "127.0.0.1"), (&bundle[..], "not a name!")] {
            let error = served_certificate(&addr, name, bundle, PATIENCE)
                .await
                .unwrap_err();
            assert!(
                matches!(error, ProbeError::Bundle(_) | ProbeError::ServerName(_)),
                "{error}"
            );
        }
    }
}
