//! The serving certificate: read from PEM files, swapped in place when the
//! files change, so a renewed certificate is used without a restart.
//!
//! Kubernetes updates a Secret volume by swapping a symlink to a new folder,
//! which path-based file notifications miss; so the files' contents are
//! polled and compared instead. Each TLS handshake asks [`CertResolver`] for
//! the current certificate: connections already open keep the one they were
//! made with, new handshakes get the new one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate could not be loaded; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: no certificate found (expected one or more PEM `CERTIFICATE` blocks, server certificate first)",
        path.display()
    )]
    NoCertificate { path: PathBuf },
    #[error("{}: not a valid PEM certificate chain: {message}", path.display())]
    BadCertificate { path: PathBuf, message: String },
    #[error(
        "{}: no usable private key (expected one PEM `PRIVATE KEY`, `EC PRIVATE KEY` or `RSA PRIVATE KEY` block): {message}",
        path.display()
    )]
    BadKey { path: PathBuf, message: String },
    #[error(
        "the key in {} does not belong to the certificate in {}: {message}",
        key.display(),
        cert.display()
    )]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("building the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The crypto provider every TLS object of the server uses. Passed
/// explicitly rather than read from the process default, so the server works
/// the same whether or not `main` installed a default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Where the serving certificate chain and its private key live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The raw bytes of both files, kept to notice a change.
#[derive(Clone, PartialEq, Eq)]
struct FileContents {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl CertFiles {
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
        }
    }

    /// Reads and parses both files.
    pub fn load(&self) -> Result<CertifiedKey, TlsError> {
        let contents = self.read()?;
        self.parse(&contents)
    }

    fn read(&self) -> Result<FileContents, TlsError> {
        Ok(FileContents {
            cert: read_file(&self.cert)?,
            key: read_file(&self.key)?,
        })
    }

    fn parse(&self, contents: &FileContents) -> Result<CertifiedKey, TlsError> {
        certified_key_from_pem(&contents.cert, &contents.key).map_err(|e| e.at(self))
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A PEM problem before we know which file names to put in the message.
enum PemProblem {
    NoCertificate,
    BadCertificate(String),
    BadKey(String),
    Mismatch(String),
}

impl PemProblem {
    fn at(self, files: &CertFiles) -> TlsError {
        match self {
            PemProblem::NoCertificate => TlsError::NoCertificate {
                path: files.cert.clone(),
            },
            PemProblem::BadCertificate(message) => TlsError::BadCertificate {
                path: files.cert.clone(),
                message,
            },
            PemProblem::BadKey(message) => TlsError::BadKey {
                path: files.key.clone(),
                message,
            },
            PemProblem::Mismatch(message) => TlsError::Mismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
                message,
            },
        }
    }
}

fn certified_key_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, PemProblem> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemProblem::BadCertificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(PemProblem::NoCertificate);
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| PemProblem::BadKey(e.to_string()))?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| PemProblem::BadKey(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        // The provider could not tell (no public key exposed): let the
        // handshake be the judge, as rustls itself does.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(PemProblem::Mismatch("the public keys differ".to_string()))
        }
        Err(e) => Err(PemProblem::BadCertificate(e.to_string())),
    }
}

/// Hands every handshake the certificate loaded last.
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
    reloads: AtomicU64,
    rejected: AtomicU64,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver").finish_non_exhaustive()
    }
}

impl CertResolver {
    pub fn new(initial: CertifiedKey) -> Self {
        Self {
            current: ArcSwap::from_pointee(initial),
            reloads: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    /// How many changed files were loaded since start.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// How many changed files were refused (unreadable, unparsable, key
    /// not matching), leaving the previous certificate in place.
    pub fn rejected_reloads(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Replaces the certificate for new handshakes.
    pub fn replace(&self, next: CertifiedKey) {
        self.current.store(Arc::new(next));
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The server's TLS settings: TLS 1.2 and 1.3 only, HTTP/2 and HTTP/1.1
/// offered by ALPN, certificates from `resolver`.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Loads the certificate now and keeps it current: see [`reload_on_change`].
pub struct ReloadingCert {
    pub resolver: Arc<CertResolver>,
    pub task: tokio::task::JoinHandle<()>,
}

impl ReloadingCert {
    /// Fails when the files cannot be read or parsed now; later failures
    /// are logged and leave the last good certificate in place.
    pub fn start(files: CertFiles, interval: Duration) -> Result<Self, TlsError> {
        let contents = files.read()?;
        let resolver = Arc::new(CertResolver::new(files.parse(&contents)?));
        let task = tokio::spawn(reload_on_change(
            files,
            contents,
            resolver.clone(),
            interval,
        ));
        Ok(Self { resolver, task })
    }
}

impl Drop for ReloadingCert {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls the files every `interval`; when their contents differ from the
/// last seen, parses them and swaps the certificate in. A pair that does not
/// parse (a half-written update, a key that does not match yet) is logged
/// and skipped: the next change is tried again.
async fn reload_on_change(
    files: CertFiles,
    mut last_seen: FileContents,
    resolver: Arc<CertResolver>,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let files_for_read = files.clone();
        // File reads block: keep them off the request-serving threads.
        let read = tokio::task::spawn_blocking(move || files_for_read.read()).await;
        let contents = match read {
            Ok(Ok(contents)) => contents,
            Ok(Err(e)) => {
                // Often transient (mid-swap); counted once per failing tick.
                resolver.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "cannot read the serving certificate; keeping the current one");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "certificate reload task failed; keeping the current one");
                continue;
            }
        };
        if contents == last_seen {
            continue;
        }
        match files.parse(&contents) {
            Ok(next) => {
                resolver.replace(next);
                resolver.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(cert = %files.cert.display(), "serving certificate reloaded");
            }
            Err(e) => {
                resolver.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "new serving certificate is unusable; keeping the current one");
            }
        }
        last_seen = contents;
    }
}
