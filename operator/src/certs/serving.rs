//! A revision webhook's serving certificate: what names it needs, issuing
//! it, its Secret, and when to renew it.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};

use super::authority::Authority;
use super::x509::{self, Cert};
use super::{CA_CERT_KEY, IssueError, SecretData, SecretError, TLS_CERT_KEY, TLS_KEY_KEY};

/// Default lifetime of a serving certificate: 90 days.
pub const DEFAULT_SERVING_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

/// The names a serving certificate must carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServingRequest {
    /// DNS names compare without regard to case; certificates carry them
    /// in lower case.
    pub dns_names: BTreeSet<String>,
    pub ip_addresses: BTreeSet<IpAddr>,
}

impl ServingRequest {
    /// The names a revision's webhook is reached by: its Service in every
    /// form the API server may use, plus the host of the Mesh's webhook URL
    /// override (`spec.webhook.url`) when there is one.
    pub fn for_webhook(
        service: &str,
        namespace: &str,
        webhook_url: Option<&str>,
    ) -> Result<Self, IssueError> {
        let service = service.to_ascii_lowercase();
        let namespace = namespace.to_ascii_lowercase();
        let mut request = ServingRequest {
            dns_names: [
                service.clone(),
                format!("{service}.{namespace}"),
                format!("{service}.{namespace}.svc"),
                format!("{service}.{namespace}.svc.cluster.local"),
            ]
            .into(),
            ip_addresses: BTreeSet::new(),
        };
        if let Some(url) = webhook_url {
            match url_host(url)? {
                Host::Ip(ip) => request.ip_addresses.insert(ip),
                Host::Dns(name) => request.dns_names.insert(name),
            };
        }
        Ok(request)
    }

    /// DNS names compare in lower case, as certificates are read back.
    fn lowercase_dns_names(&self) -> BTreeSet<String> {
        self.dns_names
            .iter()
            .map(|name| name.to_ascii_lowercase())
            .collect()
    }

    fn is_served_by(&self, cert: &Cert) -> bool {
        cert.dns_names() == &self.lowercase_dns_names() && cert.ip_addresses() == &self.ip_addresses
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Dns(String),
}

/// Where a webhook URL override (`https://host[:port][/path]`, as
/// Kubernetes accepts it in a webhook's `clientConfig.url`) points: what the
/// certificate must name, where to connect and what TLS server name to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookUrl {
    host: Host,
    /// `host:port` to connect to (IPv6 in brackets; port 443 when absent).
    pub address: String,
    /// The host as TLS and HTTP name it (IPv6 without brackets).
    pub server_name: String,
    /// The path, without a trailing `/` (empty for none).
    pub path: String,
}

impl WebhookUrl {
    pub fn parse(url: &str) -> Result<WebhookUrl, IssueError> {
        let invalid = |problem| IssueError::WebhookUrl {
            url: url.to_owned(),
            problem,
        };
        let rest = url
            .get(..8)
            .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
            .map(|_| &url[8..])
            .ok_or_else(|| invalid("the scheme must be https"))?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return Err(invalid("user info is not allowed"));
        }
        let (host, port) = split_host_port(authority).map_err(invalid)?;
        let port = match port {
            None => 443,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid("the port must be a number from 1 to 65535"))?,
        };
        let kind = host_kind(host).map_err(invalid)?;
        let path = rest[authority.len()..]
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        Ok(WebhookUrl {
            host: kind,
            address: format!("{host}:{port}"),
            server_name: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            path,
        })
    }
}

fn url_host(url: &str) -> Result<Host, IssueError> {
    WebhookUrl::parse(url).map(|parsed| parsed.host)
}

/// `host[:port]` or `[ipv6][:port]`; the brackets stay on the host.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), &'static str> {
    if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or("an IPv6 address needs a closing ]")?;
        let (host, after) = authority.split_at(end + 1);
        return match after {
            "" => Ok((host, None)),
            _ => after
                .strip_prefix(':')
                .map(|port| (host, Some(port)))
                .ok_or("only :port may follow the IPv6 address"),
        };
    }
    Ok(match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

fn host_kind(host: &str) -> Result<Host, &'static str> {
    if let Some(ipv6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return ipv6
            .parse::<Ipv6Addr>()
            .map(|ip| Host::Ip(IpAddr::V6(ip)))
            .map_err(|_| "the bracketed host is not an IPv6 address");
    }
    if host.is_empty() {
        return Err("the host is empty");
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    let is_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !host.split('.').all(is_label) {
        return Err("the host is neither an IP address nor a DNS name (letters, digits, - and .)");
    }
    Ok(Host::Dns(host.to_ascii_lowercase()))
}

/// A serving certificate with its key and the CA that issued it.
#[derive(Clone, PartialEq, Eq)]
pub struct ServingCert {
    cert: Cert,
    key_pem: String,
    ca: Cert,
}

impl fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of logs.
        f.debug_struct("ServingCert")
            .field("cert", &self.cert)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl ServingCert {
    /// The leaf certificate (`tls.crt`).
    pub fn cert(&self) -> &Cert {
        &self.cert
    }

    /// The private key, PKCS#8 PEM (`tls.key`).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The issuing CA (`ca.crt`).
    pub fn ca(&self) -> &Cert {
        &self.ca
    }

    /// Data of a `kubernetes.io/tls` Secret. `tls.crt` holds the leaf alone.
    pub fn to_secret_data(&self) -> SecretData {
        SecretData::from([
            (
                TLS_CERT_KEY.to_owned(),
                ByteString(self.cert.pem().into_bytes()),
            ),
            (
                TLS_KEY_KEY.to_owned(),
                ByteString(self.key_pem.clone().into_bytes()),
            ),
            (
                CA_CERT_KEY.to_owned(),
                ByteString(self.ca.pem().into_bytes()),
            ),
        ])
    }

    /// Reads a serving Secret. `tls.crt` may hold a chain: the first
    /// certificate is the leaf, the rest is ignored. `tls.key` must be the
    /// leaf's key.
    pub fn from_secret_data(data: &SecretData) -> Result<Self, SecretError> {
        let cert = x509::certificates(data, TLS_CERT_KEY)?.swap_remove(0);
        let key = x509::private_key(data, TLS_KEY_KEY, &cert)?;
        let ca = x509::certificates(data, CA_CERT_KEY)?.swap_remove(0);
        Ok(ServingCert {
            cert,
            key_pem: key.serialize_pem(),
            ca,
        })
    }
}

/// Issues a serving certificate (ECDSA P-256, server auth) for `request`,
/// signed by `ca`, valid from `now` for `lifetime` but never past the CA's
/// own end.
pub fn issue_serving(
    ca: &Authority,
    request: &ServingRequest,
    now: SystemTime,
    lifetime: Duration,
) -> Result<ServingCert, IssueError> {
    let (not_before, not_after) = x509::validity(now, lifetime, Some(ca.cert().not_after()))?;
    let dns_names = request.lowercase_dns_names();
    let mut sans = Vec::new();
    for name in &dns_names {
        let ia5 = name
            .clone()
            .try_into()
            .map_err(|e: rcgen::Error| IssueError::DnsName {
                name: name.clone(),
                problem: e.to_string(),
            })?;
        sans.push(SanType::DnsName(ia5));
    }
    sans.extend(request.ip_addresses.iter().copied().map(SanType::IpAddress));
    let common_name = dns_names
        .first()
        .cloned()
        .or_else(|| request.ip_addresses.first().map(IpAddr::to_string))
        .ok_or(IssueError::NoNames)?;

    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before.into();
    params.not_after = not_after.into();

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, &ca.issuer()?)?;
    let cert = Cert::from_der(cert.der()).map_err(|problem| {
        IssueError::Generate(format!("reading back the serving certificate: {problem}"))
    })?;
    Ok(ServingCert {
        cert,
        key_pem: key.serialize_pem(),
        ca: ca.cert().clone(),
    })
}

/// Why a serving certificate must be issued (again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenewalReason {
    /// There is no serving Secret yet.
    Missing,
    /// The Secret's data cannot be used.
    Unreadable(SecretError),
    /// The current CA did not sign it (the CA rotated, or a hand edit).
    IssuerNotCurrent,
    /// It does not carry exactly the wanted names.
    NamesDiffer,
    /// It starts in the future (the clock went back, or a hand edit).
    NotYetValid { not_before: SystemTime },
    /// Two thirds of its life are over.
    Due { renew_at: SystemTime },
}

impl fmt::Display for RenewalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenewalReason::Missing => f.write_str("no serving certificate yet"),
            RenewalReason::Unreadable(error) => write!(f, "unreadable: {error}"),
            RenewalReason::IssuerNotCurrent => f.write_str("not issued by the current CA"),
            RenewalReason::NamesDiffer => f.write_str("its names differ from the wanted ones"),
            RenewalReason::NotYetValid { not_before } => {
                write!(f, "not valid before {not_before:?}")
            }
            RenewalReason::Due { renew_at } => {
                write!(f, "two thirds of its lifetime were over at {renew_at:?}")
            }
        }
    }
}

/// Whether the serving Secret's `data` (None: no Secret) must be reissued
/// for `wanted` under `current_ca`, and why. None: keep it.
pub fn serving_renewal(
    current_ca: &Cert,
    data: Option<&SecretData>,
    wanted: &ServingRequest,
    now: SystemTime,
) -> Option<RenewalReason> {
    let Some(data) = data else {
        return Some(RenewalReason::Missing);
    };
    let serving = match ServingCert::from_secret_data(data) {
        Ok(serving) => serving,
        Err(error) => return Some(RenewalReason::Unreadable(error)),
    };
    let cert = &serving.cert;
    if !cert.is_issued_by(current_ca) {
        Some(RenewalReason::IssuerNotCurrent)
    } else if !wanted.is_served_by(cert) {
        Some(RenewalReason::NamesDiffer)
    } else if now < cert.not_before() {
        Some(RenewalReason::NotYetValid {
            not_before: cert.not_before(),
        })
    } else if now >= cert.renew_at() {
        Some(RenewalReason::Due {
            renew_at: cert.renew_at(),
        })
    } else {
        None
    }
}
