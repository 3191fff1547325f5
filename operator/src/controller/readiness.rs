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

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("webhook URL {0:?} has no host and port")]
    Url(String),
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

/// `host:port` and host of an `https://host[:port][/path]` URL.
pub fn url_authority(url: &str) -> Result<(String, String), ProbeError> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| ProbeError::Url(url.to_owned()))?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err(ProbeError::Url(url.to_owned()));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6
            .split_once(']')
            .ok_or_else(|| ProbeError::Url(url.to_owned()))?;
        (host, rest.strip_prefix(':').unwrap_or("443"))
    } else {
        authority.rsplit_once(':').unwrap_or((authority, "443"))
    };
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok((address, host.to_owned()))
}

/// `GET <url>/readyz`, trusting only `ca_bundle` (PEM). Ok when it answers 200.
pub async fn url_ready(url: &str, ca_bundle: &[u8], timeout: Duration) -> Result<(), ProbeError> {
    tokio::time::timeout(timeout, get_readyz(url, ca_bundle))
        .await
        .map_err(|_| ProbeError::Timeout(timeout))?
}

async fn get_readyz(url: &str, ca_bundle: &[u8]) -> Result<(), ProbeError> {
    let (address, host) = url_authority(url)?;
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
    let name = ServerName::try_from(host.clone()).map_err(|_| ProbeError::Url(url.to_owned()))?;
    let tcp = TcpStream::connect(&address).await?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let base = url.trim_end_matches('/');
    let path = base
        .strip_prefix("https://")
        .and_then(|rest| rest.find('/').map(|at| &rest[at..]))
        .unwrap_or("");
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
    fn url_authorities() {
        let (address, host) = url_authority("https://127.0.0.1:9443").unwrap();
        assert_eq!(
            (address.as_str(), host.as_str()),
            ("127.0.0.1:9443", "127.0.0.1")
        );
        let (address, host) = url_authority("https://webhook.example.com/base").unwrap();
        assert_eq!(
            (address.as_str(), host.as_str()),
            ("webhook.example.com:443", "webhook.example.com")
        );
        let (address, host) = url_authority("https://[::1]:9443").unwrap();
        assert_eq!((address.as_str(), host.as_str()), ("[::1]:9443", "::1"));
        assert!(url_authority("http://x").is_err());
        assert!(url_authority("https://").is_err());
    }
}
