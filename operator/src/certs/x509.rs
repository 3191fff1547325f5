//! Reading certificates and keys back from Secret data, and the time
//! arithmetic shared by the CA and the serving certificates.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::KeyPair;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;

use super::{IssueError, SecretData, SecretError, SecretProblem};

/// Shortest lifetime accepted: a shorter one would renew faster than the
/// controller reconciles.
pub(crate) const MIN_LIFETIME: Duration = Duration::from_secs(60);
/// Certificates start this long before `now` (at most a tenth of their
/// lifetime, so renewal stays in the future), so a client whose clock runs
/// a little behind the operator's does not see "not yet valid".
const MAX_BACKDATE: Duration = Duration::from_secs(5 * 60);
/// The last second X.509 (GeneralizedTime) can express: 9999-12-31T23:59:59Z.
const LAST_X509_SECOND: u64 = 253_402_300_799;

/// A certificate as stored (DER) with the facts renewal decisions need,
/// read from the certificate itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cert {
    der: Vec<u8>,
    not_before: SystemTime,
    not_after: SystemTime,
    is_ca: bool,
    dns_names: BTreeSet<String>,
    ip_addresses: BTreeSet<IpAddr>,
}

impl Cert {
    /// Parses one DER certificate (for example what [`super::probe`] returns).
    pub fn from_der(der: &[u8]) -> Result<Self, SecretProblem> {
        let parsed = parse(der)?;
        let validity = parsed.validity();
        let not_before = system_time(validity.not_before)?;
        let not_after = system_time(validity.not_after)?;
        let mut dns_names = BTreeSet::new();
        let mut ip_addresses = BTreeSet::new();
        let sans = parsed
            .subject_alternative_name()
            .map_err(|e| SecretProblem::NotCertificate(format!("subjectAltName: {e}")))?;
        for name in sans.iter().flat_map(|ext| ext.value.general_names.iter()) {
            match name {
                GeneralName::DNSName(dns) => {
                    dns_names.insert(dns.to_ascii_lowercase());
                }
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        ip_addresses.insert(ip);
                    }
                }
                _ => {}
            }
        }
        Ok(Cert {
            der: der.to_vec(),
            not_before,
            not_after,
            is_ca: parsed.is_ca(),
            dns_names,
            ip_addresses,
        })
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The certificate as one PEM block.
    pub fn pem(&self) -> String {
        pem_block("CERTIFICATE", &self.der)
    }

    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Two thirds into the validity period: when the certificate is renewed
    /// (serving) or rotated (CA).
    pub fn renew_at(&self) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_before + lifetime / 3 * 2
    }

    pub fn dns_names(&self) -> &BTreeSet<String> {
        &self.dns_names
    }

    pub fn ip_addresses(&self) -> &BTreeSet<IpAddr> {
        &self.ip_addresses
    }

    /// Whether `issuer`'s key signed this certificate. The signature, not
    /// the issuer name, decides: every meshkeeper CA is called the same.
    pub fn is_issued_by(&self, issuer: &Cert) -> bool {
        let (Ok(cert), Ok(issuer)) = (parse(&self.der), parse(&issuer.der)) else {
            return false;
        };
        cert.issuer() == issuer.subject()
            && cert.verify_signature(Some(issuer.public_key())).is_ok()
    }

    /// Whether `key` is the private half of this certificate's public key.
    pub(crate) fn matches_key(&self, key: &KeyPair) -> bool {
        parse(&self.der)
            .map(|cert| cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
            .unwrap_or(false)
    }

    pub(crate) fn is_ca(&self) -> bool {
        self.is_ca
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, SecretProblem> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| SecretProblem::NotCertificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(SecretProblem::NotCertificate(format!(
            "{} bytes after the certificate",
            rest.len()
        )));
    }
    Ok(cert)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn system_time(time: ASN1Time) -> Result<SystemTime, SecretProblem> {
    let seconds = time.timestamp();
    let converted = if seconds >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds.unsigned_abs()))
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(Duration::from_secs(seconds.unsigned_abs()))
    };
    converted.ok_or_else(|| SecretProblem::ValidityOutOfRange(time.to_string()))
}

/// The validity of a certificate issued at `now` for `lifetime`, never past
/// `cap` (the issuer's own end: a certificate outliving its CA is useless).
pub(crate) fn validity(
    now: SystemTime,
    lifetime: Duration,
    cap: Option<SystemTime>,
) -> Result<(SystemTime, SystemTime), IssueError> {
    let out_of_range = || IssueError::Lifetime {
        lifetime,
        min: MIN_LIFETIME,
    };
    if lifetime < MIN_LIFETIME {
        return Err(out_of_range());
    }
    let not_before = now
        .checked_sub(MAX_BACKDATE.min(lifetime / 10))
        .ok_or_else(out_of_range)?;
    let mut not_after = now.checked_add(lifetime).ok_or_else(out_of_range)?;
    if let Some(cap) = cap {
        if cap <= now {
            return Err(IssueError::IssuerExpired { not_after: cap });
        }
        not_after = not_after.min(cap);
    }
    let representable = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .is_ok_and(|d| d.as_secs() <= LAST_X509_SECOND)
    };
    if !representable(not_before) || !representable(not_after) {
        return Err(out_of_range());
    }
    Ok((not_before, not_after))
}

/// The bytes under `key`, or why there are none.
pub(crate) fn value<'a>(data: &'a SecretData, key: &'static str) -> Result<&'a [u8], SecretError> {
    match data.get(key) {
        Some(bytes) if !bytes.0.is_empty() => Ok(&bytes.0),
        _ => Err(SecretError {
            key,
            problem: SecretProblem::Missing,
        }),
    }
}

/// Every certificate in the PEM under `key`, in order; at least one.
pub(crate) fn certificates(data: &SecretData, key: &'static str) -> Result<Vec<Cert>, SecretError> {
    let error = |problem| SecretError { key, problem };
    let pem = value(data, key)?;
    let mut certs = Vec::new();
    for der in CertificateDer::pem_slice_iter(pem) {
        let der = der.map_err(|e| error(SecretProblem::NotPem(e.to_string())))?;
        certs.push(Cert::from_der(&der).map_err(error)?);
    }
    if certs.is_empty() {
        return Err(error(SecretProblem::NoPemBlock("CERTIFICATE")));
    }
    Ok(certs)
}

/// The private key under `key`, which must belong to `cert`.
pub(crate) fn private_key(
    data: &SecretData,
    key: &'static str,
    cert: &Cert,
) -> Result<KeyPair, SecretError> {
    let error = |problem| SecretError { key, problem };
    let pem = value(data, key)?;
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            error(SecretProblem::NoPemBlock("PRIVATE KEY"))
        }
        other => error(SecretProblem::NotPem(other.to_string())),
    })?;
    let pair =
        KeyPair::try_from(&der).map_err(|e| error(SecretProblem::NotPrivateKey(e.to_string())))?;
    if !cert.matches_key(&pair) {
        return Err(error(SecretProblem::KeyDoesNotMatchCertificate));
    }
    Ok(pair)
}

/// PEM encoding (RFC 7468): base64 in lines of 64 characters.
pub(crate) fn pem_block(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut base64 = Vec::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [n >> 18, n >> 12, n >> 6, n].map(|s| ALPHABET[(s & 0x3f) as usize]);
        let kept = chunk.len() + 1;
        base64.extend_from_slice(&sextets[..kept]);
        base64.extend(std::iter::repeat_n(b'=', 4 - kept));
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in base64.chunks(64) {
        out.extend(line.iter().map(|&c| char::from(c)));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_decode_back_to_the_same_bytes() {
        for len in [0usize, 1, 2, 3, 47, 48, 49, 200] {
            let der: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let pem = pem_block("CERTIFICATE", &der);
            let decoded: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
            if len == 0 {
                // An empty body is no certificate at all.
                assert!(decoded.is_empty() || decoded[0].is_empty());
            } else {
                assert_eq!(decoded.len(), 1);
                assert_eq!(decoded[0].as_ref(), der.as_slice(), "length {len}");
            }
            assert!(pem.lines().all(|l| l.len() <= 64));
        }
    }

    #[test]
    fn validity_backdates_a_little_and_keeps_renewal_in_the_future() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let (nb, na) = validity(now, Duration::from_secs(60), None).unwrap();
        assert_eq!(now.duration_since(nb).unwrap(), Duration::from_secs(6));
        assert_eq!(na, now + Duration::from_secs(60));
        let (nb, _) = validity(now, Duration::from_secs(90 * 86400), None).unwrap();
        assert_eq!(now.duration_since(nb).unwrap(), MAX_BACKDATE);
    }

    #[test]
    fn validity_refuses_short_and_unrepresentable_lifetimes() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert!(matches!(
            validity(now, Duration::from_secs(59), None),
            Err(IssueError::Lifetime { .. })
        ));
        assert!(matches!(
            validity(now, Duration::from_secs(LAST_X509_SECOND), None),
            Err(IssueError::Lifetime { .. })
        ));
        assert!(matches!(
            validity(now, Duration::from_secs(3600), Some(now)),
            Err(IssueError::IssuerExpired { .. })
        ));
        let cap = now + Duration::from_secs(600);
        assert_eq!(
            validity(now, Duration::from_secs(3600), Some(cap))
                .unwrap()
                .1,
            cap
        );
    }
}
