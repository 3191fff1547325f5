//! Probes as the kubelet runs them: from the node (the host network) to the
//! pod's address, so a probe crosses the pod's capture rules exactly as it
//! would on a real node.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The parts of a probe that say when to probe and when to give up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

/// What a probe checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Http {
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
        /// `scheme: HTTPS`: TLS without verifying the certificate, as the
        /// kubelet does.
        tls: bool,
    },
    Tcp {
        port: u16,
    },
    Exec {
        command: Vec<String>,
    },
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(v.unwrap_or(default)).unwrap_or(0))
}

pub fn timing(p: &Probe) -> Timing {
    let threshold = |v: Option<i32>, d: u32| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(d);
    Timing {
        initial_delay: secs(p.initial_delay_seconds, 0),
        period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
        success_threshold: threshold(p.success_threshold, 1).max(1),
        failure_threshold: threshold(p.failure_threshold, 3).max(1),
    }
}

/// The check of `probe`, with a named port resolved against the container.
pub fn check(probe: &Probe, container: &Container) -> Result<Check, String> {
    if let Some(h) = &probe.http_get {
        return Ok(Check::Http {
            port: port(&h.port, container)?,
            path: h.path.clone().unwrap_or_else(|| "/".into()),
            tls: h.scheme.as_deref() == Some("HTTPS"),
            headers: h
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        });
    }
    if let Some(t) = &probe.tcp_socket {
        return Ok(Check::Tcp {
            port: port(&t.port, container)?,
        });
    }
    if let Some(e) = &probe.exec {
        return Ok(Check::Exec {
            command: e.command.clone().unwrap_or_default(),
        });
    }
    Err("this test node runs httpGet, tcpSocket and exec probes; grpc is not supported".into())
}

fn port(p: &IntOrString, container: &Container) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => {
            u16::try_from(*n).map_err(|_| format!("probe port {n} is out of range"))
        }
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .and_then(|cp| u16::try_from(cp.container_port).ok())
            .ok_or_else(|| {
                format!(
                    "probe port {name:?} is not a named port of container {}",
                    container.name
                )
            }),
    }
}

/// One HTTP probe: success is a status in 200..400, as for the kubelet.
pub async fn http(ip: IpAddr, c: &Check, timeout: Duration) -> Result<(), String> {
    let Check::Http {
        port,
        path,
        headers,
        tls,
    } = c
    else {
        return Err("not an HTTP probe".into());
    };
    let work = async {
        let tcp = TcpStream::connect(SocketAddr::new(ip, *port))
            .await
            .map_err(|e| format!("connect {ip}:{port}: {e}"))?;
        let mut stream: Box<dyn Stream> = if *tls {
            let name = rustls::pki_types::ServerName::IpAddress(ip.into());
            let tls = tls_connector()?
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake with {ip}:{port}: {e}"))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {ip}:{port}\r\nUser-Agent: kube-probe/1.37\r\nAccept: */*\r\nConnection: close\r\n"
        );
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut head = [0u8; 64];
        let n = stream
            .read(&mut head)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let line = String::from_utf8_lossy(&head[..n]);
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP answer: {:?}", line.lines().next()))?;
        if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {status}"))
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))?
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

/// Accepts any server certificate (the kubelet's HTTPS probes do not verify),
/// while still checking the handshake signatures.
#[derive(Debug)]
struct AnyCertificate(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub async fn tcp(ip: IpAddr, port: u16, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, TcpStream::connect(SocketAddr::new(ip, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("dial tcp {ip}:{port}: {e}")),
        Err(_) => Err(format!("dial tcp {ip}:{port}: timed out after {timeout:?}")),
    }
}

/// Counts consecutive results against the thresholds; `Some(state)` when the
/// probe's verdict changes.
#[derive(Debug, Default)]
pub struct Verdict {
    ok: Option<bool>,
    successes: u32,
    failures: u32,
}

impl Verdict {
    pub fn record(&mut self, t: &Timing, success: bool) -> Option<bool> {
        if success {
            self.successes += 1;
            self.failures = 0;
            if self.ok != Some(true) && self.successes >= t.success_threshold {
                self.ok = Some(true);
                return Some(true);
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.ok != Some(false) && self.failures >= t.failure_threshold {
                self.ok = Some(false);
                return Some(false);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_decide_when_the_verdict_flips() {
        let t = Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 3,
        };
        let mut v = Verdict::default();
        assert_eq!(v.record(&t, true), Some(true));
        assert_eq!(v.record(&t, false), None);
        assert_eq!(v.record(&t, false), None);
        assert_eq!(v.record(&t, false), Some(false));
        assert_eq!(v.record(&t, true), Some(true));
    }

    #[test]
    fn named_ports_resolve_against_the_container() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "app", "ports": [{"name": "http", "containerPort": 8080}]
        }))
        .unwrap();
        let probe: Probe = serde_json::from_value(serde_json::json!({
            "httpGet": {"port": "http", "path": "/ready"}
        }))
        .unwrap();
        assert_eq!(
            check(&probe, &c).unwrap(),
            Check::Http {
                port: 8080,
                path: "/ready".into(),
                headers: vec![],
                tls: false,
            }
        );
        let bad: Probe =
            serde_json::from_value(serde_json::json!({"tcpSocket": {"port": "nope"}})).unwrap();
        assert!(check(&bad, &c).unwrap_err().contains("\"nope\""));
    }

    #[tokio::test]
    async fn http_probe_reads_the_status_of_a_real_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let check = Check::Http {
            port,
            path: "/".into(),
            headers: vec![],
            tls: false,
        };
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(http(ip, &check, Duration::from_secs(5)).await, Ok(()));
        let err = http(ip, &check, Duration::from_secs(5)).await.unwrap_err();
        assert!(err.contains("503"), "{err}");
    }
}
