//! The API's own certificate (`[server] tls_cert_file`, `tls_key_file`,
//! `tls_client_ca_file`): reading the PEM files into a rustls server
//! configuration, with every problem said in words that name the file and
//! what is wrong with it, and what identifies the certificate in logs
//! (subject, serial, expiry, SHA-256 fingerprint; never the key).
//!
//! The config loader calls [`load`] once per (re)load, so `check`, the
//! start and every SIGHUP read the same files the same way; the API's
//! acceptor (`api::tls`) serves what it built.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The files of `[server]`'s TLS keys, resolved against the config file's
/// directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA bundle that client certificates must chain to (mutual TLS); none:
    /// clients are not asked for a certificate.
    pub client_ca: Option<PathBuf>,
}

/// Which key of `[server]` a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsKey {
    Cert,
    Key,
    ClientCa,
}

impl TlsKey {
    /// The config key's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cert => "tls_cert_file",
            Self::Key => "tls_key_file",
            Self::ClientCa => "tls_client_ca_file",
        }
    }
}

/// What identifies a certificate in logs and messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    pub subject: String,
    /// Hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    /// RFC 3339.
    pub not_after: String,
    /// Whether `not_after` has passed.
    pub expired: bool,
    /// SHA-256 of the certificate's DER, hex.
    pub sha256: String,
}

/// A server certificate ready to serve: the rustls configuration built
/// from [`TlsFiles`] (HTTP/1.1 offered by ALPN) and its leaf's summary.
#[derive(Clone)]
pub struct ServerTls {
    pub files: TlsFiles,
    pub config: Arc<rustls::ServerConfig>,
    pub summary: CertSummary,
}

impl std::fmt::Debug for ServerTls {
    /// Files and summary only: the key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

/// Reads and checks `files`: every problem found, each with the key it is
/// about (an unreadable file, no PEM certificate, no or an unsupported
/// private key, a key that is not the certificate's, a bad CA bundle).
pub fn load(files: &TlsFiles) -> Result<ServerTls, Vec<(TlsKey, String)>> {
    let mut errors = Vec::new();
    let chain = read_certs(&files.cert, TlsKey::Cert).map_err(|e| errors.push(e));
    let key = read_key(&files.key).map_err(|e| errors.push(e));
    let client_roots = match &files.client_ca {
        None => Ok(None),
        Some(path) => read_roots(path).map(Some).map_err(|e| errors.push(e)),
    };
    let (Ok(chain), Ok(key), Ok(client_roots)) = (chain, key, client_roots) else {
        return Err(errors);
    };
    let summary = summarize(&chain[0]).map_err(|e| vec![(TlsKey::Cert, e)])?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| vec![(TlsKey::Cert, format!("no TLS version available: {e}"))])?;
    let builder = match client_roots {
        None => builder.with_no_client_auth(),
        Some(roots) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| {
                vec![(
                    TlsKey::ClientCa,
                    format!("{}: unusable CA bundle: {e}", files_path(&files.client_ca)),
                )]
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        vec![(
            TlsKey::Key,
            format!(
                "{} does not go with the certificate in {}: {}",
                files.key.display(),
                files.cert.display(),
                match e {
                    rustls::Error::InconsistentKeys(_) => {
                        "it is the private key of another certificate".to_string()
                    }
                    other => other.to_string(),
                }
            ),
        )]
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls {
        files: files.clone(),
        config: Arc::new(config),
        summary,
    })
}

fn files_path(p: &Option<PathBuf>) -> String {
    p.as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn read(path: &Path, key: TlsKey) -> Result<Vec<u8>, (TlsKey, String)> {
    std::fs::read(path).map_err(|e| (key, format!("cannot read {}: {e}", path.display())))
}

/// The certificates of a PEM file, in order (the leaf first for a chain).
fn read_certs(path: &Path, key: TlsKey) -> Result<Vec<CertificateDer<'static>>, (TlsKey, String)> {
    let pem = read(path, key)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| (key, format!("{}: unreadable PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err((
            key,
            format!(
                "{} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, (TlsKey, String)> {
    let pem = read(path, TlsKey::Key)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        (
            TlsKey::Key,
            match e {
                rustls::pki_types::pem::Error::NoItemsFound => format!(
                    "{} holds no PEM private key (`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`; an encrypted key is not supported)",
                    path.display()
                ),
                other => format!("{}: unreadable PEM private key: {other}", path.display()),
            },
        )
    })
}

fn read_roots(path: &Path) -> Result<rustls::RootCertStore, (TlsKey, String)> {
    let certs = read_certs(path, TlsKey::ClientCa)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| {
            (
                TlsKey::ClientCa,
                format!("{}: not a usable CA certificate: {e}", path.display()),
            )
        })?;
    }
    Ok(roots)
}

/// The leaf's subject, serial, expiry and fingerprint.
fn summarize(der: &CertificateDer<'_>) -> Result<CertSummary, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("the first certificate is not valid X.509: {e}"))?;
    let not_after = cert.validity().not_after;
    let fingerprint = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    Ok(CertSummary {
        subject: cert.subject().to_string(),
        serial: cert.raw_serial_as_string().replace(':', "").to_uppercase(),
        not_after: not_after
            .to_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| not_after.to_string()),
        expired: not_after.timestamp() < now_unix(),
        sha256: hex(fingerprint.as_ref()),
    })
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_all_reported_with_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("nope.key"),
            client_ca: Some(dir.path().join("ca.pem")),
        };
        std::fs::write(dir.path().join("ca.pem"), "not pem").unwrap();
        let errors = load(&files).unwrap_err();
        let keys: Vec<_> = errors.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [TlsKey::Cert, TlsKey::Key, TlsKey::ClientCa],
            "{errors:?}"
        );
        assert!(errors[0].1.contains("cannot read"), "{errors:?}");
        assert!(errors[2].1.contains("no PEM certificate"), "{errors:?}");
    }
}
