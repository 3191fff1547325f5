//! The operator's own CA: creation, storage in the CA Secret, and the
//! rotation plan with its overlap.

use std::fmt;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::x509::{self, Cert};
use super::{
    CA_CERT_KEY, CA_KEY_KEY, IssueError, PREVIOUS_CA_CERT_KEY, SecretData, SecretError,
    SecretProblem,
};

/// Default lifetime of the operator's CA: one year.
pub const DEFAULT_CA_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
const CA_COMMON_NAME: &str = "meshkeeper CA";

/// A CA that can sign: its certificate and private key (PKCS#8 PEM).
#[derive(Clone, PartialEq, Eq)]
pub struct Authority {
    cert: Cert,
    key_pem: String,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of logs.
        f.debug_struct("Authority")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl Authority {
    pub fn cert(&self) -> &Cert {
        &self.cert
    }

    /// An rcgen issuer for this CA, rebuilt from the stored certificate so a
    /// CA read back from the Secret signs exactly like a fresh one.
    pub(crate) fn issuer(&self) -> Result<Issuer<'static, KeyPair>, IssueError> {
        let key = KeyPair::from_pem(&self.key_pem)?;
        Ok(Issuer::from_ca_cert_der(
            &CertificateDer::from(self.cert.der()),
            key,
        )?)
    }
}

/// A new self-signed CA (ECDSA P-256, CN "meshkeeper CA <seconds since
/// 1970 at creation>") valid from `now` (a few minutes earlier, for clock
/// skew) for `lifetime`. The CN differs per CA so that during a rotation
/// the two CAs in the caBundle have different subjects: every verifier then
/// finds the right issuer by name, not only by trying signatures.
pub fn new_authority(now: SystemTime, lifetime: Duration) -> Result<Authority, IssueError> {
    let (not_before, not_after) = x509::validity(now, lifetime, None)?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    let created = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    name.push(DnType::CommonName, format!("{CA_COMMON_NAME} {created}"));
    params.distinguished_name = name;
    // Path length 0: this CA signs serving certificates, never other CAs.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    let cert = Cert::from_der(cert.der())
        .map_err(|problem| IssueError::Generate(format!("reading back the CA: {problem}")))?;
    Ok(Authority {
        cert,
        key_pem: key.serialize_pem(),
    })
}

/// The CA Secret's content: the CA that signs, and during a rotation the
/// one it replaced, still trusted until every webhook serves a certificate
/// of the current one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaState {
    pub current: Authority,
    pub previous: Option<Cert>,
}

impl CaState {
    /// A first CA, with nothing to overlap with.
    pub fn new(now: SystemTime, lifetime: Duration) -> Result<Self, IssueError> {
        Ok(CaState {
            current: new_authority(now, lifetime)?,
            previous: None,
        })
    }

    /// Step 1 of a rotation: a new current CA; the old one stays trusted as
    /// previous. Any older previous is forgotten ([`ca_plan`] only rotates
    /// once the previous is gone or expired).
    pub fn rotate(&self, now: SystemTime, lifetime: Duration) -> Result<Self, IssueError> {
        Ok(CaState {
            current: new_authority(now, lifetime)?,
            previous: Some(self.current.cert.clone()),
        })
    }

    /// Step 4 of a rotation: the previous CA is no longer trusted.
    pub fn drop_previous(&self) -> Self {
        CaState {
            current: self.current.clone(),
            previous: None,
        }
    }

    pub fn to_secret_data(&self) -> SecretData {
        let mut data = SecretData::new();
        data.insert(
            CA_CERT_KEY.to_owned(),
            ByteString(self.current.cert.pem().into_bytes()),
        );
        data.insert(
            CA_KEY_KEY.to_owned(),
            ByteString(self.current.key_pem.clone().into_bytes()),
        );
        if let Some(previous) = &self.previous {
            data.insert(
                PREVIOUS_CA_CERT_KEY.to_owned(),
                ByteString(previous.pem().into_bytes()),
            );
        }
        data
    }

    /// Reads the CA Secret. `ca.crt` must hold one CA certificate and
    /// `ca.key` its key; otherwise the error names the key at fault. A
    /// damaged `previous-ca.crt` is dropped with a warning instead: failing
    /// would make the controller replace a good current CA, which breaks
    /// every webhook at once, while a damaged previous CA trusts nothing.
    pub fn from_secret_data(data: &SecretData) -> Result<Self, SecretError> {
        let current = single_ca(data, CA_CERT_KEY)?;
        let key = x509::private_key(data, CA_KEY_KEY, &current)?;
        let previous = match data.get(PREVIOUS_CA_CERT_KEY) {
            None => None,
            Some(_) => match single_ca(data, PREVIOUS_CA_CERT_KEY) {
                Ok(previous) => Some(previous),
                Err(error) => {
                    tracing::warn!(%error, "ignoring the previous CA of the CA Secret");
                    None
                }
            },
        };
        Ok(CaState {
            current: Authority {
                cert: current,
                key_pem: key.serialize_pem(),
            },
            previous,
        })
    }
}

fn single_ca(data: &SecretData, key: &'static str) -> Result<Cert, SecretError> {
    let mut certs = x509::certificates(data, key)?;
    let cert = certs.swap_remove(0);
    if !cert.is_ca() {
        return Err(SecretError {
            key,
            problem: SecretProblem::NotCa,
        });
    }
    Ok(cert)
}

/// What the caller has observed of a rotation in progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RotationProgress {
    /// Every webhook configuration's caBundle contains the current CA
    /// (step 2 is done; see [`bundle_contains`]).
    pub bundle_published: bool,
    /// Every webhook endpoint serves a certificate issued by the current CA
    /// (step 3 has taken effect; see [`super::probe::served_certificate`]).
    pub webhooks_serve_current: bool,
}

/// What to do with the CA Secret now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaPlan {
    Keep,
    /// Write [`CaState::rotate`]: the current CA is two thirds through its life.
    Rotate,
    /// Write [`CaState::drop_previous`]: the overlap is over.
    DropPrevious,
}

/// The next step for the CA. A rotation in progress is finished before
/// another one starts, so a CA that still signs served certificates is never
/// forgotten; an expired previous CA is dropped regardless, since nothing
/// that chains to it can validate any more.
pub fn ca_plan(state: &CaState, progress: RotationProgress, now: SystemTime) -> CaPlan {
    match &state.previous {
        Some(previous) => {
            let overlap_done = progress.bundle_published && progress.webhooks_serve_current;
            if overlap_done || now >= previous.not_after() {
                CaPlan::DropPrevious
            } else {
                CaPlan::Keep
            }
        }
        None if now >= state.current.cert.renew_at() => CaPlan::Rotate,
        None => CaPlan::Keep,
    }
}

/// The caBundle for webhook configurations: PEM of the current CA, then the
/// previous one during a rotation.
pub fn ca_bundle(state: &CaState) -> Vec<u8> {
    let mut bundle = state.current.cert.pem();
    if let Some(previous) = &state.previous {
        bundle.push_str(&previous.pem());
    }
    bundle.into_bytes()
}

/// Whether a published caBundle trusts `ca` (holds exactly its certificate).
/// An unreadable bundle trusts nothing.
pub fn bundle_contains(bundle: &[u8], ca: &Cert) -> bool {
    CertificateDer::pem_slice_iter(bundle)
        .map_while(Result::ok)
        .any(|der| der.as_ref() == ca.der())
}
