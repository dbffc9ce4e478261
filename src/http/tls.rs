//! Optional TLS (rustls with the ring provider): `https://` and `wss://` on the same port.
//!
//! The certificate chain and key are read at start-up, so a missing or unreadable file stops
//! the daemon with exit status 78 (like any configuration error) instead of failing every
//! connection later. SIGHUP (`systemctl reload pistats`) reads them again, for renewed
//! certificates: new handshakes get the new pair, open connections carry on, and a pair that
//! does not load is logged while the previous one stays in use.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
pub use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {path}: {message}")]
    Certificate { path: PathBuf, message: String },
    #[error("TLS key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("TLS certificate {cert} and key {key} do not go together: {message}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

impl TlsError {
    /// The configuration setting to blame.
    pub fn setting(&self) -> &'static str {
        match self {
            TlsError::Key { .. } => "tls_key",
            TlsError::Certificate { .. } | TlsError::Mismatch { .. } => "tls_cert",
        }
    }
}

/// The server's TLS: an acceptor whose certificate can be replaced while it runs.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    certificate: Arc<ReloadableCertificate>,
}

impl Tls {
    /// Loads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or
    /// SEC1) that belongs to it.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = load_certified_key(cert, key, &provider)?;
        let certificate = Arc::new(ReloadableCertificate {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(current)),
            provider: provider.clone(),
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| mismatch(cert, key, e))?
            .with_no_client_auth()
            .with_cert_resolver(certificate.clone());
        // HTTP/1.1 only: the server speaks nothing else, and WebSocket upgrades need it.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificate,
        })
    }

    /// The acceptor for new connections; every clone follows reloads.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// The certificate file, for log lines.
    pub fn certificate_path(&self) -> &Path {
        &self.certificate.cert
    }

    /// Reads the certificate and key files again and, if they load, presents them from the
    /// next handshake on; tells whether the certificate differs from the one in use. On
    /// error the previous pair stays in use.
    pub fn reload(&self) -> Result<Reloaded, TlsError> {
        let c = &self.certificate;
        let fresh = Arc::new(load_certified_key(&c.cert, &c.key, &c.provider)?);
        let mut current = c.current.write().unwrap_or_else(PoisonError::into_inner);
        let outcome = if current.cert == fresh.cert {
            Reloaded::Unchanged
        } else {
            Reloaded::Changed
        };
        *current = fresh;
        Ok(outcome)
    }
}

/// What a reload found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    Changed,
    /// The files hold the certificate already in use (not renewed yet, or a stale copy).
    Unchanged,
}

/// The certificate presented in every handshake, swapped by [`Tls::reload`].
struct ReloadableCertificate {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for ReloadableCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableCertificate")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadableCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

fn load_certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let cert_error = |message: String| TlsError::Certificate {
        path: cert.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_error(pem_error(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(pem_error(e)))?;
    if chain.is_empty() {
        return Err(cert_error("no CERTIFICATE block in the file".into()));
    }
    let key_error = |message: String| TlsError::Key {
        path: key.to_owned(),
        message,
    };
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| key_error(pem_error(e)))?;
    let signing_key = provider
        .key_provider
        .load_private_key(private_key)
        .map_err(|e| key_error(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Some key types cannot tell; rustls accepts those too.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(e) => Err(mismatch(cert, key, e)),
    }
}

fn mismatch(cert: &Path, key: &Path, err: rustls::Error) -> TlsError {
    TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        message: err.to_string(),
    }
}

fn pem_error(err: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match err {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => "no PEM block of the expected kind in the file".into(),
        other => format!("not valid PEM ({other:?})"),
    }
}
