//! Is a revision's webhook serving? With a Service: its Deployment has an
//! available replica. With the Mesh's URL override (a webhook outside the
//! cluster): `GET /readyz` over HTTPS, trusting the published caBundle, the
//! way the API server will call it.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::certs::WebhookUrl;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Url(#[from] crate::certs::IssueError),
    #[error("the caBundle holds no usable certificate: {0}")]
    Bundle(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("answered {0:?}")]
    NotReady(String),
}

/// `GET <url>/readyz`, trusting only `ca_bundle` (PEM). Ok when it answers 200.
pub async fn url_ready(url: &str, ca_bundle: &[u8], timeout: Duration) -> Result<(), ProbeError> {
    tokio::time::timeout(timeout, get_readyz(url, ca_bundle))
        .await
        .map_err(|_| ProbeError::Timeout(timeout))?
}

async fn get_readyz(url: &str, ca_bundle: &[u8]) -> Result<(), ProbeError> {
    let WebhookUrl {
        address,
        server_name: host,
        path,
        ..
    } = WebhookUrl::parse(url)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_bundle) {
        let cert = cert.map_err(|e| ProbeError::Bundle(e.to_string()))?;
        roots.add(cert)?;
    }
    if roots.is_empty() {
        return Err(ProbeError::Bundle("no PEM certificate".to_owned()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(host.clone())
        .map_err(|e| ProbeError::Bundle(format!("server name {host:?}: {e}")))?;
    let tcp = TcpStream::connect(&address).await?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let request =
        format!("GET {path}/readyz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await?;
    let mut head = vec![0u8; 64];
    let read = tls.read(&mut head).await?;
    let status_line = String::from_utf8_lossy(&head[..read]);
    let status_line = status_line.lines().next().unwrap_or("").to_owned();
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(ProbeError::NotReady(status_line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_addresses_and_server_names() {
        let parse = |url: &str| WebhookUrl::parse(url).unwrap();
        let local = parse("https://127.0.0.1:9443");
        assert_eq!(
            (
                local.address.as_str(),
                local.server_name.as_str(),
                local.path.as_str()
            ),
            ("127.0.0.1:9443", "127.0.0.1", "")
        );
        let named = parse("https://webhook.example.com/base/");
        assert_eq!(
            (
                named.address.as_str(),
                named.server_name.as_str(),
                named.path.as_str()
            ),
            ("webhook.example.com:443", "webhook.example.com", "/base")
        );
        let v6 = parse("https://[::1]:9443");
        assert_eq!(
            (v6.address.as_str(), v6.server_name.as_str()),
            ("[::1]:9443", "::1")
        );
        assert!(WebhookUrl::parse("http://x").is_err());
        assert!(WebhookUrl::parse("https://").is_err());
        assert!(WebhookUrl::parse("https://h:0").is_err());
    }
}
