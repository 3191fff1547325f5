//! Issuing, storage, renewal and a whole CA rotation, checked with the
//! verifier rustls clients use.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::*;

const DAY: Duration = Duration::from_secs(24 * 3600);
const SERVICE: &str = "meshkeeper-webhook-default";
const NAMESPACE: &str = "meshkeeper-system";

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}

/// Mid 2027: a fixed `now` for everything that does not talk to a socket.
fn now() -> SystemTime {
    at(1_800_000_000)
}

fn request(url: Option<&str>) -> ServingRequest {
    ServingRequest::for_webhook(SERVICE, NAMESPACE, url).unwrap()
}

/// Whether a client trusting exactly `bundle` accepts `leaf` for `name` at `when`.
fn accepts(bundle: &[u8], leaf: &[u8], name: &str, when: SystemTime) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(bundle) {
        roots.add(der.unwrap()).unwrap();
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let since_epoch = when.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    verifier
        .verify_server_cert(
            &CertificateDer::from(leaf),
            &[],
            &ServerName::try_from(name.to_owned()).unwrap(),
            &[],
            UnixTime::since_unix_epoch(since_epoch),
        )
        .map(|_| ())
}

fn with(data: &SecretData, key: &str, value: &[u8]) -> SecretData {
    let mut data = data.clone();
    data.insert(key.to_owned(), ByteString(value.to_vec()));
    data
}

fn without(data: &SecretData, key: &str) -> SecretData {
    let mut data = data.clone();
    data.remove(key);
    data
}

#[test]
fn a_new_ca_is_a_p256_ca_named_meshkeeper_ca_for_its_lifetime() {
    let ca = new_authority(now(), DEFAULT_CA_LIFETIME).unwrap();
    let cert = ca.cert();
    assert!(cert.is_ca());
    assert_eq!(cert.not_after(), now() + DEFAULT_CA_LIFETIME);
    assert!(cert.not_before() < now());
    assert!(cert.is_issued_by(cert), "self-signed");
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
    let created = now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(
        parsed.subject().to_string(),
        format!("CN=meshkeeper CA {created}")
    );
    let later = new_authority(now() + Duration::from_secs(60), DEFAULT_CA_LIFETIME).unwrap();
    assert_ne!(later.cert().der(), cert.der());
    let (_, later) = x509_parser::parse_x509_certificate(later.cert().der()).unwrap();
    assert_ne!(
        later.subject(),
        parsed.subject(),
        "each CA has its own name"
    );
    assert_eq!(
        parsed
            .public_key()
            .algorithm
            .parameters
            .as_ref()
            .map(|p| p.as_oid().unwrap().to_id_string()),
        Some("1.2.840.10045.3.1.7".to_owned()),
        "curve P-256"
    );
}

#[test]
fn an_issued_certificate_verifies_against_its_ca_for_every_name() {
    let state = CaState::new(now(), DEFAULT_CA_LIFETIME).unwrap();
    let wanted = request(Some("https://127.0.0.1:9443"));
    let serving = issue_serving(&state.current, &wanted, now(), DEFAULT_SERVING_LIFETIME).unwrap();
    let bundle = ca_bundle(&state);

    assert_eq!(serving.cert().dns_names(), &wanted.dns_names);
    assert_eq!(serving.cert().ip_addresses(), &wanted.ip_addresses);
    assert!(serving.cert().is_issued_by(state.current.cert()));
    assert_eq!(serving.ca(), state.current.cert());
    assert_eq!(serving.cert().not_after(), now() + DEFAULT_SERVING_LIFETIME);

    let names = [
        SERVICE.to_owned(),
        format!("{SERVICE}.{NAMESPACE}"),
        format!("{SERVICE}.{NAMESPACE}.svc"),
        format!("{SERVICE}.{NAMESPACE}.svc.cluster.local"),
        "127.0.0.1".to_owned(),
    ];
    for name in names {
        accepts(&bundle, serving.cert().der(), &name, now())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(accepts(&bundle, serving.cert().der(), "other.example", now()).is_err());
    assert!(accepts(&bundle, serving.cert().der(), "127.0.0.2", now()).is_err());

    let other_ca = new_authority(now(), DEFAULT_CA_LIFETIME).unwrap();
    assert!(!serving.cert().is_issued_by(other_ca.cert()));
    let other_bundle = other_ca.cert().pem();
    assert!(
        accepts(
            other_bundle.as_bytes(),
            serving.cert().der(),
            SERVICE,
            now()
        )
        .is_err()
    );
}

#[test]
fn the_webhook_url_host_becomes_an_ip_or_dns_name() {
    let ips = |url| {
        request(Some(url))
            .ip_addresses
            .into_iter()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ips("https://127.0.0.1:9443"),
        ["127.0.0.1".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        ips("https://[::1]:9443/inject"),
        ["::1".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        ips("HTTPS://10.1.2.3"),
        ["10.1.2.3".parse::<IpAddr>().unwrap()]
    );

    let dns = request(Some("https://Host.Docker.Internal:9443/inject?x=1"));
    assert!(dns.ip_addresses.is_empty());
    assert!(dns.dns_names.contains("host.docker.internal"));
    assert_eq!(dns.dns_names.len(), 5);
    assert_eq!(request(None).dns_names.len(), 4);

    for (url, problem) in [
        ("http://127.0.0.1:9443", "the scheme must be https"),
        ("https://user@127.0.0.1", "user info is not allowed"),
        ("https://:9443", "the host is empty"),
        (
            "https://127.0.0.1:0",
            "the port must be a number from 1 to 65535",
        ),
        (
            "https://127.0.0.1:x",
            "the port must be a number from 1 to 65535",
        ),
        ("https://[::1", "an IPv6 address needs a closing ]"),
        (
            "https://[::1]9443",
            "only :port may follow the IPv6 address",
        ),
        (
            "https://[nope]:1",
            "the bracketed host is not an IPv6 address",
        ),
        (
            "https://bad_host",
            "the host is neither an IP address nor a DNS name (letters, digits, - and .)",
        ),
    ] {
        assert_eq!(
            ServingRequest::for_webhook(SERVICE, NAMESPACE, Some(url)),
            Err(IssueError::WebhookUrl {
                url: url.to_owned(),
                problem
            }),
            "{url}"
        );
    }
}

#[test]
fn serving_certificates_renew_at_two_thirds_of_their_life_and_not_before() {
    let state = CaState::new(now(), DEFAULT_CA_LIFETIME).unwrap();
    let wanted = request(None);
    let serving = issue_serving(&state.current, &wanted, now(), DEFAULT_SERVING_LIFETIME).unwrap();
    let data = serving.to_secret_data();
    let renew_at = serving.cert().renew_at();
    let life = serving
        .cert()
        .not_after()
        .duration_since(serving.cert().not_before())
        .unwrap();
    assert_eq!(
        renew_at
            .duration_since(serving.cert().not_before())
            .unwrap(),
        life / 3 * 2
    );
    // About 60 of its 90 days after issuing.
    assert!(renew_at > now() + 59 * DAY && renew_at < now() + 60 * DAY);

    let ca = state.current.cert();
    assert_eq!(serving_renewal(ca, Some(&data), &wanted, now()), None);
    assert_eq!(
        serving_renewal(ca, Some(&data), &wanted, renew_at - Duration::from_secs(1)),
        None
    );
    assert_eq!(
        serving_renewal(ca, Some(&data), &wanted, renew_at),
        Some(RenewalReason::Due { renew_at })
    );
    assert_eq!(
        serving_renewal(ca, Some(&data), &wanted, now() + 200 * DAY),
        Some(RenewalReason::Due { renew_at })
    );
}

#[test]
fn serving_renewal_names_every_other_reason() {
    let state = CaState::new(now(), DEFAULT_CA_LIFETIME).unwrap();
    let ca = state.current.cert();
    let wanted = request(None);
    let data = issue_serving(&state.current, &wanted, now(), DEFAULT_SERVING_LIFETIME)
        .unwrap()
        .to_secret_data();

    assert_eq!(
        serving_renewal(ca, None, &wanted, now()),
        Some(RenewalReason::Missing)
    );
    assert_eq!(
        serving_renewal(
            ca,
            Some(&with(&data, TLS_CERT_KEY, b"junk")),
            &wanted,
            now()
        ),
        Some(RenewalReason::Unreadable(SecretError {
            key: TLS_CERT_KEY,
            problem: SecretProblem::NoPemBlock("CERTIFICATE")
        }))
    );
    let rotated = state.rotate(now(), DEFAULT_CA_LIFETIME).unwrap();
    assert_eq!(
        serving_renewal(rotated.current.cert(), Some(&data), &wanted, now()),
        Some(RenewalReason::IssuerNotCurrent)
    );
    let moved = request(Some("https://127.0.0.1:9443"));
    assert_eq!(
        serving_renewal(ca, Some(&data), &moved, now()),
        Some(RenewalReason::NamesDiffer)
    );
    let fewer = ServingRequest {
        dns_names: wanted.dns_names.iter().take(3).cloned().collect(),
        ..wanted.clone()
    };
    assert_eq!(
        serving_renewal(ca, Some(&data), &fewer, now()),
        Some(RenewalReason::NamesDiffer)
    );
    assert_eq!(
        serving_renewal(ca, Some(&data), &wanted, now() - DAY),
        Some(RenewalReason::NotYetValid {
            not_before: ServingCert::from_secret_data(&data)
                .unwrap()
                .cert()
                .not_before()
        })
    );
}

#[test]
fn names_in_any_case_are_issued_once_and_bad_names_refused() {
    let state = CaState::new(now(), DEFAULT_CA_LIFETIME).unwrap();
    let shouting = ServingRequest {
        dns_names: ["Webhook.Mesh.SVC".to_owned()].into(),
        ..Default::default()
    };
    let data = issue_serving(&state.current, &shouting, now(), DEFAULT_SERVING_LIFETIME)
        .unwrap()
        .to_secret_data();
    // Read back in lower case, the names still match: no reissue loop.
    assert_eq!(
        serving_renewal(state.current.cert(), Some(&data), &shouting, now()),
        None
    );
    let foreign = ServingRequest {
        dns_names: ["wébhook.mesh".to_owned()].into(),
        ..Default::default()
    };
    assert!(matches!(
        issue_serving(&state.current, &foreign, now(), DEFAULT_SERVING_LIFETIME),
        Err(IssueError::DnsName { name, .. }) if name == "wébhook.mesh"
    ));
}

#[test]
fn a_serving_certificate_never_outlives_its_ca() {
    let ca = new_authority(now(), 30 * DAY).unwrap();
    let serving = issue_serving(&ca, &request(None), now(), DEFAULT_SERVING_LIFETIME).unwrap();
    assert_eq!(serving.cert().not_after(), ca.cert().not_after());
    assert_eq!(
        issue_serving(
            &ca,
            &request(None),
            now() + 31 * DAY,
            DEFAULT_SERVING_LIFETIME
        ),
        Err(IssueError::IssuerExpired {
            not_after: ca.cert().not_after()
        })
    );
    assert!(matches!(
        issue_serving(
            &ca,
            &ServingRequest::default(),
            now(),
            DEFAULT_SERVING_LIFETIME
        ),
        Err(IssueError::NoNames)
    ));
}

#[test]
fn the_ca_rotates_at_two_thirds_and_drops_the_previous_only_after_the_overlap() {
    let state = CaState::new(now(), DEFAULT_CA_LIFETIME).unwrap();
    let rotate_at = state.current.cert().renew_at();
    assert!(rotate_at > now() + 243 * DAY && rotate_at < now() + 244 * DAY);
    let nothing = RotationProgress::default();
    let done = RotationProgress {
        bundle_published: true,
        webhooks_serve_current: true,
    };
    assert_eq!(ca_plan(&state, nothing, now()), CaPlan::Keep);
    assert_eq!(
        ca_plan(&state, nothing, rotate_at - Duration::from_secs(1)),
        CaPlan::Keep
    );
    assert_eq!(ca_plan(&state, nothing, rotate_at), CaPlan::Rotate);
    assert_eq!(ca_plan(&state, done, rotate_at), CaPlan::Rotate);

    let rotated = state.rotate(rotate_at, DEFAULT_CA_LIFETIME).unwrap();
    assert_eq!(rotated.previous.as_ref(), Some(state.current.cert()));
    assert_ne!(rotated.current, state.current);
    for (progress, plan) in [
        (nothing, CaPlan::Keep),
        (
            RotationProgress {
                bundle_published: true,
                webhooks_serve_current: false,
            },
            CaPlan::Keep,
        ),
        // Webhooks already serve the new CA but the bundle holding it is not
        // published: dropping now would leave the API server trusting nothing.
        (
            RotationProgress {
                bundle_published: false,
                webhooks_serve_current: true,
            },
            CaPlan::Keep,
        ),
        (done, CaPlan::DropPrevious),
    ] {
        assert_eq!(ca_plan(&rotated, progress, rotate_at), plan, "{progress:?}");
    }
    // An overlap that never finishes still ends when the old CA expires,
    // and the current one, not yet due, is kept.
    let old_end = state.current.cert().not_after();
    assert_eq!(ca_plan(&rotated, nothing, old_end), CaPlan::DropPrevious);
    assert_eq!(
        ca_plan(&rotated.drop_previous(), nothing, old_end),
        CaPlan::Keep
    );
}

/// The five steps of the module documentation, with the bundle the API
/// server holds and the certificates the webhooks serve at each one: every
/// served certificate must be accepted under the published bundle.
#[test]
fn a_rotation_keeps_a_valid_chain_at_every_step() {
    let wanted = request(Some("https://127.0.0.1:9443"));
    let name = format!("{SERVICE}.{NAMESPACE}.svc");
    let all_accepted = |bundle: &[u8], served: &[&ServingCert], when, step: &str| {
        for cert in served {
            accepts(bundle, cert.cert().der(), &name, when)
                .unwrap_or_else(|e| panic!("step {step}: {e}"));
            accepts(bundle, cert.cert().der(), "127.0.0.1", when)
                .unwrap_or_else(|e| panic!("step {step}: {e}"));
        }
    };
    let round_trip = |state: &CaState| {
        assert_eq!(
            &CaState::from_secret_data(&state.to_secret_data()).unwrap(),
            state
        );
    };

    let old = CaState::new(now(), DEFAULT_CA_LIFETIME).unwrap();
    let rotate_at = old.current.cert().renew_at();
    // The webhooks serve a certificate renewed shortly before the rotation.
    let old_serving = issue_serving(
        &old.current,
        &wanted,
        rotate_at - DAY,
        DEFAULT_SERVING_LIFETIME,
    )
    .unwrap();
    let published = ca_bundle(&old);
    all_accepted(&published, &[&old_serving], rotate_at, "0");

    // 1: rotate the CA Secret. The API server still holds the old bundle.
    assert_eq!(
        ca_plan(&old, RotationProgress::default(), rotate_at),
        CaPlan::Rotate
    );
    let rotated = old.rotate(rotate_at, DEFAULT_CA_LIFETIME).unwrap();
    round_trip(&rotated);
    all_accepted(&published, &[&old_serving], rotate_at, "1");

    // 2: publish the bundle with both CAs, current first.
    let published = ca_bundle(&rotated);
    let mut expected = rotated.current.cert().pem();
    expected.push_str(&old.current.cert().pem());
    assert_eq!(published, expected.into_bytes());
    assert!(bundle_contains(&published, rotated.current.cert()));
    assert!(bundle_contains(&published, old.current.cert()));
    all_accepted(&published, &[&old_serving], rotate_at, "2");

    // 3: reissue; while the webhook pods reload, old and new are served side by side.
    let when = rotate_at + Duration::from_secs(60);
    assert_eq!(
        serving_renewal(
            rotated.current.cert(),
            Some(&old_serving.to_secret_data()),
            &wanted,
            when
        ),
        Some(RenewalReason::IssuerNotCurrent)
    );
    let new_serving =
        issue_serving(&rotated.current, &wanted, when, DEFAULT_SERVING_LIFETIME).unwrap();
    all_accepted(&published, &[&old_serving, &new_serving], when, "3");
    let some_old_served = RotationProgress {
        bundle_published: bundle_contains(&published, rotated.current.cert()),
        webhooks_serve_current: old_serving.cert().is_issued_by(rotated.current.cert()),
    };
    assert_eq!(ca_plan(&rotated, some_old_served, when), CaPlan::Keep);

    // 4: every webhook serves the new certificate: drop the previous CA.
    let progress = RotationProgress {
        bundle_published: bundle_contains(&published, rotated.current.cert()),
        webhooks_serve_current: new_serving.cert().is_issued_by(rotated.current.cert()),
    };
    assert_eq!(ca_plan(&rotated, progress, when), CaPlan::DropPrevious);
    let settled = rotated.drop_previous();
    round_trip(&settled);
    all_accepted(&published, &[&new_serving], when, "4");

    // 5: publish the bundle with the current CA alone.
    let published = ca_bundle(&settled);
    assert_eq!(published, settled.current.cert().pem().into_bytes());
    all_accepted(&published, &[&new_serving], when, "5");
    assert!(accepts(&published, old_serving.cert().der(), &name, when).is_err());
    assert_eq!(
        ca_plan(&settled, RotationProgress::default(), when),
        CaPlan::Keep
    );
}

#[test]
fn secrets_read_back_what_was_written() {
    let state = CaState::new(now(), DEFAULT_CA_LIFETIME)
        .unwrap()
        .rotate(now(), DEFAULT_CA_LIFETIME)
        .unwrap();
    let data = state.to_secret_data();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        [CA_CERT_KEY, CA_KEY_KEY, PREVIOUS_CA_CERT_KEY]
    );
    assert_eq!(CaState::from_secret_data(&data).unwrap(), state);
    assert_eq!(
        CaState::from_secret_data(&state.drop_previous().to_secret_data())
            .unwrap()
            .previous,
        None
    );

    let serving = issue_serving(
        &state.current,
        &request(None),
        now(),
        DEFAULT_SERVING_LIFETIME,
    )
    .unwrap();
    let data = serving.to_secret_data();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        [CA_CERT_KEY, TLS_CERT_KEY, TLS_KEY_KEY]
    );
    let tls_crt = String::from_utf8(data[TLS_CERT_KEY].0.clone()).unwrap();
    assert_eq!(
        tls_crt.matches("BEGIN CERTIFICATE").count(),
        1,
        "leaf alone"
    );
    assert!(
        String::from_utf8(data[TLS_KEY_KEY].0.clone())
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----\n")
    );
    assert_eq!(ServingCert::from_secret_data(&data).unwrap(), serving);

    // A hand-made chain (leaf, then CA) reads as its leaf.
    let chain = format!("{}{}", serving.cert().pem(), serving.ca().pem());
    let chained = with(&data, TLS_CERT_KEY, chain.as_bytes());
    assert_eq!(ServingCert::from_secret_data(&chained).unwrap(), serving);
}

#[test]
fn damaged_or_foreign_secret_data_names_the_key_and_the_problem() {
    let state = CaState::new(now(), DEFAULT_CA_LIFETIME).unwrap();
    let other = new_authority(now(), DEFAULT_CA_LIFETIME).unwrap();
    let serving = issue_serving(
        &state.current,
        &request(None),
        now(),
        DEFAULT_SERVING_LIFETIME,
    )
    .unwrap();
    let ca_data = state.to_secret_data();
    let tls_data = serving.to_secret_data();
    let other_key = other.to_secret_data_key();
    let bad_base64 = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    let not_der = x509::pem_block("CERTIFICATE", b"not a certificate");
    let sec1_key = x509::pem_block("EC PRIVATE KEY", b"not a key either");
    fn error<T>(key: &'static str, problem: SecretProblem) -> Result<T, SecretError> {
        Err(SecretError { key, problem })
    }
    fn not_certificate<T: std::fmt::Debug>(result: Result<T, SecretError>, key: &str) {
        match result {
            Err(SecretError {
                key: k,
                problem: SecretProblem::NotCertificate(_),
            }) => assert_eq!(k, key),
            other => panic!("{key}: {other:?}"),
        }
    }

    let ca = CaState::from_secret_data;
    assert_eq!(
        ca(&without(&ca_data, CA_CERT_KEY)),
        error(CA_CERT_KEY, SecretProblem::Missing)
    );
    assert_eq!(
        ca(&with(&ca_data, CA_CERT_KEY, b"")),
        error(CA_CERT_KEY, SecretProblem::Missing)
    );
    assert_eq!(
        ca(&without(&ca_data, CA_KEY_KEY)),
        error(CA_KEY_KEY, SecretProblem::Missing)
    );
    assert_eq!(
        ca(&with(&ca_data, CA_CERT_KEY, b"hello")),
        error(CA_CERT_KEY, SecretProblem::NoPemBlock("CERTIFICATE"))
    );
    assert!(matches!(
        ca(&with(&ca_data, CA_CERT_KEY, bad_base64)),
        Err(SecretError {
            key: CA_CERT_KEY,
            problem: SecretProblem::NotPem(_)
        })
    ));
    not_certificate(
        ca(&with(&ca_data, CA_CERT_KEY, not_der.as_bytes())),
        CA_CERT_KEY,
    );
    assert_eq!(
        ca(&with(&ca_data, CA_KEY_KEY, other_key.as_bytes())),
        error(CA_KEY_KEY, SecretProblem::KeyDoesNotMatchCertificate)
    );
    assert_eq!(
        ca(&with(&ca_data, CA_KEY_KEY, b"nope")),
        error(CA_KEY_KEY, SecretProblem::NoPemBlock("PRIVATE KEY"))
    );
    assert!(matches!(
        ca(&with(&ca_data, CA_KEY_KEY, sec1_key.as_bytes())),
        Err(SecretError {
            key: CA_KEY_KEY,
            problem: SecretProblem::NotPrivateKey(_)
        })
    ));
    // A leaf with its own key is not a CA.
    let leaf_as_ca = with(
        &with(&ca_data, CA_CERT_KEY, serving.cert().pem().as_bytes()),
        CA_KEY_KEY,
        serving.key_pem().as_bytes(),
    );
    assert_eq!(ca(&leaf_as_ca), error(CA_CERT_KEY, SecretProblem::NotCa));
    // A damaged previous CA is dropped, the current one kept.
    let damaged_previous = with(&ca_data, PREVIOUS_CA_CERT_KEY, b"junk");
    assert_eq!(ca(&damaged_previous).unwrap(), state);

    let tls = ServingCert::from_secret_data;
    assert_eq!(
        tls(&without(&tls_data, TLS_CERT_KEY)),
        error(TLS_CERT_KEY, SecretProblem::Missing)
    );
    assert_eq!(
        tls(&without(&tls_data, TLS_KEY_KEY)),
        error(TLS_KEY_KEY, SecretProblem::Missing)
    );
    assert_eq!(
        tls(&without(&tls_data, CA_CERT_KEY)),
        error(CA_CERT_KEY, SecretProblem::Missing)
    );
    not_certificate(
        tls(&with(&tls_data, TLS_CERT_KEY, not_der.as_bytes())),
        TLS_CERT_KEY,
    );
    not_certificate(
        tls(&with(&tls_data, CA_CERT_KEY, not_der.as_bytes())),
        CA_CERT_KEY,
    );
    assert_eq!(
        tls(&with(&tls_data, TLS_KEY_KEY, other_key.as_bytes())),
        error(TLS_KEY_KEY, SecretProblem::KeyDoesNotMatchCertificate)
    );
    // Errors read well in a status message.
    assert_eq!(
        SecretError {
            key: TLS_KEY_KEY,
            problem: SecretProblem::KeyDoesNotMatchCertificate
        }
        .to_string(),
        "Secret key \"tls.key\": the private key does not belong to the certificate"
    );
}

#[test]
fn a_bundle_contains_only_the_certificates_it_holds() {
    let state = CaState::new(now(), DEFAULT_CA_LIFETIME).unwrap();
    let other = new_authority(now(), DEFAULT_CA_LIFETIME).unwrap();
    let bundle = ca_bundle(&state);
    assert!(bundle_contains(&bundle, state.current.cert()));
    assert!(!bundle_contains(&bundle, other.cert()));
    assert!(!bundle_contains(b"garbage", state.current.cert()));
    assert!(!bundle_contains(b"", state.current.cert()));
}

#[test]
fn lifetimes_too_short_are_refused() {
    assert_eq!(
        new_authority(now(), Duration::from_secs(30)),
        Err(IssueError::Lifetime {
            lifetime: Duration::from_secs(30),
            min: Duration::from_secs(60)
        })
    );
}

impl Authority {
    /// This CA's key as a PEM string, to plant in another Secret.
    fn to_secret_data_key(&self) -> String {
        String::from_utf8(
            CaState {
                current: self.clone(),
                previous: None,
            }
            .to_secret_data()[CA_KEY_KEY]
                .0
                .clone(),
        )
        .unwrap()
    }
}
