//! TLS on the API's listener: the certificate in force ([`ServerCert`]),
//! which the accept loop ([`super::server`]) hands each new connection's
//! handshake, and its replacement on SIGHUP ([`reload`]).
//!
//! A handshake uses the certificate in force when it starts; connections
//! already open keep theirs. The new certificate comes from the reloaded
//! settings, whose loader already read and checked the files
//! ([`crate::tls::load`]): a missing, broken or mismatched file rejects
//! the whole reload (logged with each error), so the old certificate keeps
//! serving. Whether the API speaks TLS at all is decided at start, like
//! `listen`.

use crate::tls::{CertSummary, ServerTls};
use std::sync::{Arc, RwLock};
use tokio_rustls::TlsAcceptor;

/// The API's certificate in force.
pub struct ServerCert {
    current: RwLock<(TlsAcceptor, CertSummary)>,
}

impl ServerCert {
    pub fn new(tls: &ServerTls) -> Arc<Self> {
        log_cert("serving TLS", &tls.summary);
        Arc::new(Self {
            current: RwLock::new((TlsAcceptor::from(tls.config.clone()), tls.summary.clone())),
        })
    }

    /// The acceptor of the certificate in force, for one handshake.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// The summary of the certificate in force.
    pub fn summary(&self) -> CertSummary {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// Serves `tls` to new handshakes from now on.
    fn replace(&self, tls: &ServerTls) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = (TlsAcceptor::from(tls.config.clone()), tls.summary.clone());
    }
}

/// After a reload: serves the new settings' certificate (`new`) when the
/// API was started with TLS (`current`); says so when TLS was added or
/// removed, which takes effect at the next restart.
pub fn reload(current: Option<&ServerCert>, new: Option<&ServerTls>) {
    match (current, new) {
        (Some(cert), Some(tls)) => {
            let before = cert.summary();
            cert.replace(tls);
            if before.sha256 == tls.summary.sha256 {
                tracing::info!(
                    serial = %tls.summary.serial,
                    "TLS certificate unchanged (files read again)"
                );
            } else {
                log_cert(
                    "TLS certificate replaced; new connections get it",
                    &tls.summary,
                );
            }
        }
        (Some(cert), None) => tracing::warn!(
            serial = %cert.summary().serial,
            "[server] TLS keys removed; the API keeps serving TLS with its certificate until the next restart"
        ),
        (None, Some(_)) => tracing::warn!(
            "[server] TLS keys added; the API serves plain HTTP until the next restart"
        ),
        (None, None) => {}
    }
}

fn log_cert(what: &str, s: &CertSummary) {
    tracing::info!(
        subject = %s.subject,
        serial = %s.serial,
        not_after = %s.not_after,
        sha256 = %s.sha256,
        "{what}"
    );
}
