//! Intake: how a deploy tool's request becomes a release to watch. One
//! format per file behind [`IntakeFormat`]; the API reads the body (with its
//! size limit) and hands the bytes and headers to a format. [`native`] is
//! release-guardian's own JSON (`POST /v1/releases`); each deploy tool's
//! webhook (GitHub `deployment_status`, GitLab, Argo CD, Flux) is another
//! format with its own signature check in [`IntakeFormat::authenticate`].

pub mod json;
pub mod native;

use crate::model::NewRelease;
use axum::http::HeaderMap;

/// What a request asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Intake {
    /// Watch this release.
    Release(NewRelease),
    /// A well-formed event that does not start a watch (e.g. a deployment
    /// that is still in progress); the reason is answered to the sender.
    Ignored(String),
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IntakeError {
    /// The body is not what the format expects (answered 400).
    #[error("{0}")]
    Malformed(String),
    /// The request's own authentication (a webhook signature) failed (answered 401).
    #[error("{0}")]
    Unauthenticated(String),
}

/// A way deploy tools announce releases.
pub trait IntakeFormat: Send + Sync {
    /// `native`, `github`, ...
    fn name(&self) -> &'static str;

    /// Checks the request's own authentication, if the format has one. The
    /// native format relies on the API's bearer tokens instead.
    fn authenticate(&self, _headers: &HeaderMap, _body: &[u8]) -> Result<(), IntakeError> {
        Ok(())
    }

    /// Turns the request into a release (or an ignored event).
    fn parse(&self, headers: &HeaderMap, body: &[u8]) -> Result<Intake, IntakeError>;
}
