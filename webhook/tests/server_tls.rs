//! TLS and lifecycle: certificate reload without a restart, refusal of an
//! unusable new certificate, TLS 1.2, and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod server_support;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use meshkeeper_webhook::server::Shutdown;
use server_support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn a_new_certificate_is_served_without_a_restart_and_old_connections_keep_working() {
    let server = TestServer::start(ready_state()).await;
    let mut before = server.connect().await;
    assert_eq!(before.get("/healthz").await.status, StatusCode::OK);
    let old_cert = before.peer_cert.clone();

    let renewed = server.ca.issue();
    write_cert(server.dir.path(), &renewed);

    // New handshakes pick up the new certificate...
    wait_for("a handshake presenting the renewed certificate", || async {
        let client = server.connect().await;
        (client.peer_cert == renewed.der).then_some(())
    })
    .await;
    assert_ne!(old_cert, renewed.der);

    // ...while the connection made before keeps serving requests.
    assert_eq!(before.get("/healthz").await.status, StatusCode::OK);
    let answer = before
        .review(
            "/inject/namespace",
            &review(
                "uid-after-reload",
                pod_kind(),
                pod(serde_json::json!({}), serde_json::json!({})),
            ),
        )
        .await;
    assert_eq!(answer.json()["response"]["uid"], "uid-after-reload");
    assert_eq!(before.peer_cert, old_cert);
    let resolver = server.server.as_ref().unwrap().cert_resolver();
    assert_eq!(resolver.reloads(), 1);
}

#[tokio::test]
async fn an_unusable_new_certificate_is_refused_and_the_old_one_kept() {
    let server = TestServer::start(ready_state()).await;
    let original = server.connect().await.peer_cert;
    let resolver = server.server.as_ref().unwrap().cert_resolver().clone();

    // A certificate whose key belongs to another certificate.
    let first = server.ca.issue();
    let second = server.ca.issue();
    let mismatched = ServingCert {
        cert_pem: first.cert_pem.clone(),
        key_pem: second.key_pem.clone(),
        der: first.der.clone(),
    };
    write_cert(server.dir.path(), &mismatched);
    wait_for("the mismatched pair to be refused", || async {
        (resolver.rejected_reloads() >= 1).then_some(())
    })
    .await;
    assert_eq!(server.connect().await.peer_cert, original);

    // Garbage in the certificate file.
    std::fs::write(server.dir.path().join("tls.crt"), "not a certificate").unwrap();
    let seen = resolver.rejected_reloads();
    wait_for("the garbage file to be refused", || async {
        (resolver.rejected_reloads() > seen).then_some(())
    })
    .await;
    assert_eq!(server.connect().await.peer_cert, original);
    assert_eq!(resolver.reloads(), 0);

    // A good pair afterwards is taken.
    let good = server.ca.issue();
    write_cert(server.dir.path(), &good);
    wait_for("the good pair to be served", || async {
        (server.connect().await.peer_cert == good.der).then_some(())
    })
    .await;
}

#[tokio::test]
async fn loading_names_the_file_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (cert, key) = write_cert(dir.path(), &ca.issue());
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = meshkeeper_webhook::server::CertFiles::new(&cert, &key)
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tls.key") && err.contains("private key"),
        "{err}"
    );

    let err = meshkeeper_webhook::server::CertFiles::new(dir.path().join("absent.crt"), &key)
        .load()
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.crt"), "{err}");

    std::fs::write(&cert, "").unwrap();
    let err = meshkeeper_webhook::server::CertFiles::new(&cert, &key)
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tls.crt") && err.contains("no certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn tls_1_2_clients_are_served_and_older_ones_are_not_offered() {
    let server = TestServer::start(ready_state()).await;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    roots
        .add(
            rustls::pki_types::CertificateDer::from_pem_slice(server.ca.cert_pem.as_bytes())
                .unwrap(),
        )
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let stream = tls_connect(server.addr, Arc::new(config)).await;
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_and_stops_accepting() {
    let mut server = TestServer::start(ready_state()).await;
    let body = serde_json::to_vec(&review(
        "uid-in-flight",
        pod_kind(),
        pod(serde_json::json!({}), serde_json::json!({})),
    ))
    .unwrap();
    let mut stream = server.tls_stream().await;
    let head = format!(
        "POST /inject/namespace HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // The interim 100 shows the handler has started reading the body: the
    // request is in flight.
    let (status, _) = raw_exchange(&mut stream, head.as_bytes()).await;
    assert_eq!(status, 100);

    let running = server.server.take().unwrap();
    let shutdown = tokio::spawn(running.shutdown());
    let addr = server.addr;
    wait_for("the listener to close", || async move {
        TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;

    stream.write_all(&body).await.unwrap();
    let (status, response) = read_response(&mut stream).await;
    assert_eq!(status, 200, "{response}");
    assert!(response.contains("uid-in-flight"), "{response}");
    assert_eq!(shutdown.await.unwrap(), Shutdown::Graceful);
}

#[tokio::test]
async fn shutdown_gives_up_after_the_grace_period() {
    let mut server = TestServer::start_with(ready_state(), |options| {
        options.serve.grace_period = Duration::from_millis(200);
    })
    .await;
    let mut stream = server.tls_stream().await;
    // A request whose body never comes.
    let head = "POST /inject/namespace HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                Expect: 100-continue\r\nContent-Length: 100\r\n\r\n";
    let (status, _) = raw_exchange(&mut stream, head.as_bytes()).await;
    assert_eq!(status, 100);
    let running = server.server.take().unwrap();
    assert_eq!(running.shutdown().await, Shutdown::TimedOut);
}
