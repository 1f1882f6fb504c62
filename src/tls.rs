//! TLS on the listeners: the certificate chain and key a listener presents (PEM files), and the
//! rustls acceptor built from them, offering HTTP/2 and HTTP/1.1 by ALPN, TLS 1.2 and 1.3 only.
//! `config` reads these settings and checks the files load; `server` builds the acceptor, and a
//! config reload reads the files again ([`Certificate::reload`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::auth::PeerCertificate;

/// `[server.tls]` or `[admin.tls]` in gateway.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain, leaf first (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CAs whose client certificates the listener verifies and takes as credentials (mTLS);
    /// clients without a certificate still connect.
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cert_file {0}: {1}")]
    Cert(PathBuf, String),
    #[error("key_file {0}: {1}")]
    Key(PathBuf, String),
    #[error("{0}: {1}")]
    Bundle(PathBuf, String),
    /// Never carries key material: rustls' errors name what is wrong, not the bytes.
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The acceptor for `settings`: reads both files now. Its certificate stays as read; a
/// listener whose certificate reloads uses [`Certificate::acceptor`].
pub fn acceptor(settings: &TlsSettings) -> Result<TlsAcceptor, TlsError> {
    Certificate::load(settings)?.acceptor()
}

/// A listener's certificate and key, read again on [`Certificate::reload`]: handshakes from then
/// on present the new one, connections already open keep theirs.
#[derive(Debug)]
pub struct Certificate {
    settings: TlsSettings,
    current: ArcSwap<CertifiedKey>,
}

impl Certificate {
    pub fn load(settings: &TlsSettings) -> Result<Arc<Self>, TlsError> {
        let current = ArcSwap::from_pointee(certified_key(settings)?);
        Ok(Arc::new(Self { settings: settings.clone(), current }))
    }

    /// Reads the files again. Returns whether the certificate changed; on an error the one in
    /// use stays.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let new = certified_key(&self.settings)?;
        let changed = new.cert != self.current.load().cert;
        if changed {
            self.current.store(Arc::new(new));
        }
        Ok(changed)
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// TLS 1.3 and 1.2, HTTP/2 and HTTP/1.1 by ALPN, presenting whatever this holds at the time
    /// of each handshake.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        let builder = match &self.settings.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(path)?), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| TlsError::Bundle(path.clone(), e.to_string()))?,
            ),
        };
        let mut config = builder.with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The names of the client certificate the handshake verified: its DNS and URI subject
/// alternative names and its subject's common names. `None` without a certificate.
pub fn peer_certificate(conn: &rustls::ServerConnection) -> Option<PeerCertificate> {
    use x509_parser::extensions::GeneralName;
    let leaf = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let mut names: Vec<Box<str>> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(n) | GeneralName::URI(n) = name {
                names.push((*n).into());
            }
        }
    }
    names.extend(cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(Box::from));
    Some(PeerCertificate { names: names.into() })
}

fn certified_key(settings: &TlsSettings) -> Result<CertifiedKey, TlsError> {
    let certs = certificates(&settings.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key_file)
        .map_err(|e| TlsError::Key(settings.key_file.clone(), e.to_string()))?;
    Ok(CertifiedKey::from_der(certs, key, &rustls::crypto::ring::default_provider())?)
}

/// The certificate authorities in the PEM bundle at `path`: the roots upstream certificates are
/// checked against in place of the public ones, for upstreams behind a private CA.
pub fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let bundle = |e: String| TlsError::Bundle(path.to_owned(), e);
    let mut roots = rustls::RootCertStore::empty();
    let certs = certificates(path).map_err(|e| match e {
        TlsError::Cert(_, e) => bundle(e),
        other => other,
    })?;
    for cert in certs {
        roots.add(cert).map_err(|e| bundle(e.to_string()))?;
    }
    Ok(roots)
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert(path.to_owned(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Cert(path.to_owned(), "holds no certificate".into()));
    }
    Ok(certs)
}
