//! Certificates: the operator as its own CA, serving certificates, renewal and CA rotation.
//!
//! Everything here except [`probe`] is pure: plain values in, plain values
//! out, the current time passed in as `now`, no clock reads and no I/O. Key
//! generation draws randomness, which is the only side effect.
//!
//! # Time
//!
//! Times are [`std::time::SystemTime`] and lifetimes [`std::time::Duration`],
//! so the controller can pass `SystemTime::now()` (or a `jiff::Timestamp`
//! converted with `SystemTime::from`) without knowing that rcgen and
//! x509-parser speak the `time` crate inside. X.509 stores whole seconds, so
//! the validity read back from a certificate is `now` rounded down.
//!
//! # Storage
//!
//! * CA Secret [`crate::names::CA_SECRET`]: `ca.crt`, `ca.key` (PEM, PKCS#8)
//!   and, while a rotation is in progress, `previous-ca.crt` (the old CA's
//!   certificate only: nothing is signed with it any more).
//! * Serving Secret (type `kubernetes.io/tls`): `tls.crt` (the leaf alone:
//!   its issuer is a root every client already holds through the caBundle),
//!   `tls.key` and `ca.crt` (the CA that issued it).
//!
//! What renewal needs (validity, names, issuer) is read back from the
//! certificates themselves rather than kept in annotations, so a hand edit
//! of the data can never disagree with the bookkeeping. Data that cannot be
//! read gives a [`SecretError`] naming the key and the problem; the
//! controller answers it by issuing afresh.
//!
//! # CA rotation: the order the controller must follow
//!
//! The API server trusts exactly the caBundle of each webhook configuration,
//! so at every moment each served certificate must chain to a CA in the
//! published bundle:
//!
//! 1. [`CaPlan::Rotate`]: write the CA Secret from [`CaState::rotate`] (new
//!    current, old one kept as previous).
//! 2. Publish [`ca_bundle`] (current then previous) in every webhook
//!    configuration. Old serving certificates still chain to the previous CA.
//! 3. Reissue the serving certificates: [`serving_renewal`] now answers
//!    [`RenewalReason::IssuerNotCurrent`] for each of them.
//! 4. Once every webhook serves a certificate of the current CA (checked with
//!    [`probe::served_certificate`]) and the bundle of step 2 is published,
//!    [`ca_plan`] answers [`CaPlan::DropPrevious`]: write the CA Secret from
//!    [`CaState::drop_previous`].
//! 5. Publish [`ca_bundle`] again, now the current CA alone.
//!
//! [`ca_plan`] enforces the conditions of step 4 from the [`RotationProgress`]
//! the caller reports; it cannot check steps 2 and 5 by itself.

mod authority;
pub mod probe;
mod serving;
mod x509;

#[cfg(test)]
mod tests;

pub use authority::{
    Authority, CaPlan, CaState, DEFAULT_CA_LIFETIME, RotationProgress, bundle_contains, ca_bundle,
    ca_plan, new_authority,
};
pub use serving::{
    DEFAULT_SERVING_LIFETIME, RenewalReason, ServingCert, ServingRequest, WebhookUrl,
    issue_serving, serving_renewal,
};
pub use x509::Cert;

/// Key of the current CA certificate, in the CA Secret and the serving Secret.
pub const CA_CERT_KEY: &str = "ca.crt";
/// Key of the current CA's private key in the CA Secret.
pub const CA_KEY_KEY: &str = "ca.key";
/// Key of the previous CA certificate in the CA Secret during a rotation.
pub const PREVIOUS_CA_CERT_KEY: &str = "previous-ca.crt";
/// Keys of a `kubernetes.io/tls` Secret.
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";
/// Type of the serving Secret.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// The data map of a Secret, as k8s-openapi holds it.
pub type SecretData = std::collections::BTreeMap<String, k8s_openapi::ByteString>;

/// A Secret's data cannot be used: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Secret key {key:?}: {problem}")]
pub struct SecretError {
    pub key: &'static str,
    pub problem: SecretProblem,
}

/// What is wrong with one value of a Secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretProblem {
    #[error("missing")]
    Missing,
    #[error("not PEM: {0}")]
    NotPem(String),
    #[error("holds no PEM block of type {0}")]
    NoPemBlock(&'static str),
    #[error("not an X.509 certificate: {0}")]
    NotCertificate(String),
    #[error("not a PKCS#8 ECDSA or Ed25519 private key: {0}")]
    NotPrivateKey(String),
    #[error("the private key does not belong to the certificate")]
    KeyDoesNotMatchCertificate,
    #[error("the certificate is not a CA (basicConstraints CA is not true)")]
    NotCa,
    #[error("the certificate's validity ({0}) is outside what a SystemTime can hold")]
    ValidityOutOfRange(String),
}

/// A certificate cannot be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    #[error(
        "lifetime {lifetime:?} is not allowed: it must be at least {min:?} and end before the year 10000"
    )]
    Lifetime {
        lifetime: std::time::Duration,
        min: std::time::Duration,
    },
    #[error("the issuing CA expired at {not_after:?}; rotate the CA first")]
    IssuerExpired { not_after: std::time::SystemTime },
    #[error("DNS name {name:?} cannot go in a certificate: {problem}")]
    DnsName { name: String, problem: String },
    #[error("the certificate asks for no DNS name and no IP address")]
    NoNames,
    #[error("webhook URL {url:?}: {problem}")]
    WebhookUrl { url: String, problem: &'static str },
    #[error("rcgen cannot build the certificate: {0}")]
    Generate(String),
}

impl From<rcgen::Error> for IssueError {
    fn from(error: rcgen::Error) -> Self {
        IssueError::Generate(error.to_string())
    }
}
