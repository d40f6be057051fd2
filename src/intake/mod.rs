//! Intake: how a deploy tool's request becomes a release to watch.
//!
//! One format per file behind [`IntakeFormat`], every format listed once in
//! [`FORMATS`]. The API serves each format at the route it names
//! ([`IntakeFormat::route`]): it reads the body (with its size limit) and
//! hands the headers, the body and the format's own section to [`receive`],
//! which has the format authenticate the request
//! ([`IntakeFormat::authenticate`]) and only then parse it
//! ([`IntakeFormat::parse`]) into a release to watch or a well-formed event
//! that starts nothing ([`Intake::Ignored`]).
//!
//! | format     | route               | authentication                          |
//! |------------|---------------------|-----------------------------------------|
//! | [`native`] | `POST /v1/releases` | the API's bearer tokens (`write` scope) |
//! | [`github`] | `POST /v1/webhooks/github` | `X-Hub-Signature-256` (HMAC-SHA256) |
//! | [`gitlab`] | `POST /v1/webhooks/gitlab` | `X-Gitlab-Token` |
//! | [`argocd`] | `POST /v1/webhooks/argocd` | `Authorization: Bearer` shared secret |
//! | [`flux`]   | `POST /v1/webhooks/flux`   | `X-Signature` (HMAC-SHA256, `generic-hmac`) |
//!
//! What the webhook formats share (secrets, constant-time checks, the
//! deploy record kept on the release) lives in [`webhook`]. A format that
//! names a delivery id ([`IntakeFormat::delivery`]) is idempotent per
//! delivery: the API answers a delivery it has seen with the release that
//! delivery registered, and starts nothing new.
//!
//! # Adding a format
//!
//! A deploy tool's webhook (GitHub `deployment_status`, GitLab, Argo CD,
//! Flux) is one more format:
//!
//! 1. **One file**, `src/intake/TOOL.rs`: a unit struct implementing
//!    [`IntakeFormat`] — `name()` is `TOOL`, `route()` is
//!    `/v1/webhooks/TOOL`; `auth()` is [`Auth::Own`] when the tool signs its
//!    requests (it cannot send the API's bearer tokens), and then
//!    `authenticate` must check the signature, reading its secret from
//!    its own section ([`IntakeRequest::config`], read by the function
//!    `section()` names, with its checks); `parse` maps the tool's event to a
//!    [`NewRelease`], or to [`Intake::Ignored`] with the reason for events
//!    that start no watch (a deployment still in progress, a failed one).
//! 2. **One registry entry** here: `pub mod TOOL;` and `&TOOL::Tool,` in
//!    [`FORMATS`]. The router then serves the route, and the bearer-token
//!    check leaves it to the format when its `auth()` is [`Auth::Own`].
//! 3. **Docs**: the route, the events it accepts or ignores, and how to set
//!    up the tool's webhook, in `docs/api.md`; its `[webhooks.TOOL]` keys in
//!    `docs/configuration.md`.
//! 4. **Tests**: unit tests in the format's file (a real payload from the
//!    tool, each ignored event, a bad or missing signature) and an API test
//!    posting to the route through the router.
//!
//! The registry's own tests check every format: unique names and routes,
//! webhook routes under `/v1/webhooks/NAME`, and a format that authenticates
//! itself refusing requests until it implements `authenticate`.

pub mod argocd;
pub mod flux;
pub mod github;
pub mod gitlab;
pub mod json;
pub mod native;
pub mod webhook;

use crate::model::NewRelease;
use crate::section::{Secret, Section};
use axum::http::HeaderMap;

/// Every intake format, one line each; the API serves each at its route.
pub static FORMATS: &[&dyn IntakeFormat] = &[
    &native::Native,
    &github::GitHub,
    &gitlab::GitLab,
    &argocd::ArgoCd,
    &flux::Flux,
];

/// Deploy tools of the contract whose webhooks later versions add; a
/// `[webhooks.NAME]` for one of them is refused with that message.
pub const PLANNED: &[&str] = &[];

/// The format named `name`, if this version has it.
pub fn by_name(name: &str) -> Option<&'static dyn IntakeFormat> {
    FORMATS.iter().copied().find(|f| f.name() == name)
}

/// The format served at `path`, if any.
pub fn by_route(path: &str) -> Option<&'static dyn IntakeFormat> {
    FORMATS.iter().copied().find(|f| f.route() == path)
}

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

/// Who vouches for a format's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// The API's bearer tokens (`[auth]`, `write` scope), like every other
    /// route that changes something.
    BearerToken,
    /// The request's own proof (a webhook signature), checked by
    /// [`IntakeFormat::authenticate`]; the bearer-token check skips the
    /// route, since deploy tools cannot send the API's tokens.
    Own,
}

/// One request to an intake route, as a format sees it.
#[derive(Debug, Clone, Copy)]
pub struct IntakeRequest<'a> {
    pub headers: &'a HeaderMap,
    /// The whole body, at most [`crate::api::MAX_BODY_BYTES`].
    pub body: &'a [u8],
    /// The format's own `[webhooks.NAME]` section in force for this request
    /// (a reload applies at once), e.g. its secret; `None` for a format
    /// without a section.
    pub config: Option<&'a dyn IntakeConfig>,
}

/// Reads a format's `[webhooks.NAME]` section.
pub type ParseSection = fn(&mut Section<'_, '_>) -> Option<Box<dyn IntakeConfig>>;

/// A format's `[webhooks.NAME]` section, deserialized and checked (its
/// secret read): what the format's `authenticate` and `parse` are handed.
pub trait IntakeConfig: std::fmt::Debug + Send + Sync + std::any::Any {
    /// The secrets it holds, redacted wherever text is shown.
    fn secrets(&self) -> Vec<&Secret>;
    /// For the format's own downcast (`as_any().downcast_ref::<MyConfig>()`).
    fn as_any(&self) -> &dyn std::any::Any;
    /// The services (and environments) its events may start watches for;
    /// the config check makes sure each is configured.
    fn targets(&self) -> Vec<webhook::Target> {
        Vec::new()
    }
}

/// A way deploy tools announce releases.
pub trait IntakeFormat: Send + Sync {
    /// `native`, `github`, ...: unique among [`FORMATS`].
    fn name(&self) -> &'static str;

    /// The path the API serves the format at (`POST` only):
    /// `/v1/releases` for the native format, `/v1/webhooks/NAME` for the
    /// deploy tools' webhooks.
    fn route(&self) -> &'static str;

    /// How its `[webhooks.NAME]` section is read, for a format that has one
    /// (a deploy tool's secret and event map). A format with a section is
    /// served only while its section is configured (404 otherwise).
    fn section(&self) -> Option<ParseSection> {
        None
    }

    /// Who vouches for the requests; the API's bearer tokens unless the
    /// format says otherwise.
    fn auth(&self) -> Auth {
        Auth::BearerToken
    }

    /// Checks the request's own authentication, before anything is parsed.
    /// The default lets [`Auth::BearerToken`] formats through (the API has
    /// checked the token) and refuses everything for an [`Auth::Own`] format
    /// that does not implement it, so a forgotten check fails closed.
    fn authenticate(&self, _request: &IntakeRequest<'_>) -> Result<(), IntakeError> {
        match self.auth() {
            Auth::BearerToken => Ok(()),
            Auth::Own => Err(IntakeError::Unauthenticated(format!(
                "the {} intake cannot authenticate requests",
                self.name()
            ))),
        }
    }

    /// The id of this delivery, stable across the sender's retries
    /// (`X-GitHub-Delivery`, GitLab's `Idempotency-Key`, or a digest of the
    /// body for tools that resend the same bytes); `None` when the format
    /// has none (registration is then idempotent per version only).
    fn delivery(&self, _request: &IntakeRequest<'_>) -> Option<String> {
        None
    }

    /// Turns an authenticated request into a release (or an ignored event).
    fn parse(&self, request: &IntakeRequest<'_>) -> Result<Intake, IntakeError>;
}

/// Authenticates `request` with `format`, then parses it.
pub fn receive(
    format: &dyn IntakeFormat,
    request: &IntakeRequest<'_>,
) -> Result<Intake, IntakeError> {
    format.authenticate(request)?;
    format.parse(request)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_and_routes_are_unique_and_webhooks_live_under_their_name() {
        let mut names = HashSet::new();
        let mut routes = HashSet::new();
        for f in FORMATS {
            assert!(names.insert(f.name()), "duplicate name {}", f.name());
            assert!(routes.insert(f.route()), "duplicate route {}", f.route());
            if f.name() != "native" {
                assert_eq!(f.route(), format!("/v1/webhooks/{}", f.name()));
            }
            assert_eq!(by_route(f.route()).map(|g| g.name()), Some(f.name()));
        }
        assert_eq!(by_route("/v1/releases").map(|f| f.name()), Some("native"));
        assert!(by_route("/v1/webhooks/nope").is_none());
    }

    /// A format that authenticates itself but forgot to implement the check.
    struct Careless;

    impl IntakeFormat for Careless {
        fn name(&self) -> &'static str {
            "careless"
        }
        fn route(&self) -> &'static str {
            "/v1/webhooks/careless"
        }
        fn auth(&self) -> Auth {
            Auth::Own
        }
        fn parse(&self, _request: &IntakeRequest<'_>) -> Result<Intake, IntakeError> {
            Ok(Intake::Ignored("parsed".into()))
        }
    }

    #[test]
    fn an_unimplemented_own_check_fails_closed_before_parsing() {
        let headers = HeaderMap::new();
        let request = IntakeRequest {
            headers: &headers,
            body: b"{}",
            config: None,
        };
        assert!(matches!(
            receive(&Careless, &request),
            Err(IntakeError::Unauthenticated(_))
        ));
    }
}
