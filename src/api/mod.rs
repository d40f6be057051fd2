//! The HTTP API: intake (`POST /v1/releases`), status and control of
//! releases, and the operational routes (`/healthz`, `/readyz`, `/metrics`).
//!
//! [`router`] builds the whole application as an [`axum::Router`] that tests
//! drive with `oneshot`, without a socket; [`serve`] runs it on a listener
//! until a shutdown token is cancelled.
//!
//! One file per concern:
//! - [`releases`] — the `/v1/releases` routes, and the intake routes of the
//!   formats in [`crate::intake::FORMATS`] (`POST /v1/releases` is the
//!   native one);
//! - [`health`] — `/healthz`, `/readyz`, `/metrics`;
//! - [`view`] — the release object every release route answers;
//! - [`report`] — `GET /v1/releases/{id}/report`, the post-release report;
//! - [`ui`] — the status page (`/ui`, `/`) and its browser sign-in;
//! - [`body`] — reading bodies, with the 1 MiB limit;
//! - [`auth`] — bearer tokens and scopes (`[auth]`), and the rate limit on
//!   failed authentications;
//! - [`origin`] — refusing cross-site and DNS-rebinding requests (403);
//! - [`server`] — the accept loop: the connection cap and the idle and
//!   header-read timeouts;
//! - [`tls`] — the certificate the listener serves, replaced on SIGHUP;
//! - [`rate`] — the per-client rate limit on registrations;
//! - [`error`] — [`ApiError`], the statuses and `{"error": "..."}` bodies;
//! - [`trace`] — the per-request span and log.
//!
//! Every request, from the outside in: request log → [`REQUEST_TIMEOUT`] →
//! the `Origin`/`Host` check → then, for every route but `/healthz`,
//! `/readyz` and `/metrics` (which must answer under load): load shedding
//! above [`MAX_CONCURRENT_REQUESTS`] → body limit → authentication → the
//! per-client limit on registrations → the route.

pub mod audit;
pub mod auth;
pub mod body;
pub mod error;
pub mod health;
pub mod origin;
pub mod rate;
pub mod releases;
pub mod report;
pub mod server;
pub mod tls;
pub mod trace;
pub mod ui;
pub mod view;

pub use body::MAX_BODY_BYTES;
pub use error::ApiError;
pub use server::{serve, serve_tls, serve_with, ServerLimits};
pub use view::ReleaseView;

use crate::context::Context;
use crate::intake;
use crate::scheduler::Guardian;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, Uri};
use axum::routing::{get, post};
use axum::{middleware, BoxError, Router};
use std::sync::Arc;
use std::time::Duration;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;

/// Requests served at once; beyond that they are shed with a 503 at once
/// rather than queued.
pub const MAX_CONCURRENT_REQUESTS: usize = 1024;

/// Longest a request may take, reading its body included; then 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What every route is handed: the guardian (control operations), the
/// daemon's context (settings, store, telemetry) and the API's own state
/// (failed authentications per client).
#[derive(Clone)]
pub struct ApiState {
    pub guardian: Arc<Guardian>,
    pub ctx: Arc<Context>,
    pub auth_failures: Arc<auth::AuthFailures>,
    /// Registrations per client (`[server] intake_rate_limit`).
    pub intake_limits: Arc<rate::IntakeLimits>,
}

impl ApiState {
    pub fn new(guardian: Arc<Guardian>, ctx: Arc<Context>) -> Self {
        Self {
            guardian,
            ctx,
            auth_failures: Arc::default(),
            intake_limits: Arc::default(),
        }
    }
}

/// The whole API, ready to serve (or to drive with `oneshot` in tests).
pub fn router(state: ApiState) -> Router {
    // `Router::layer` wraps every route separately, so the concurrency limit
    // must be the global kind: one semaphore shared by all routes.
    let overload = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(handle_overload))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(MAX_CONCURRENT_REQUESTS));
    let limited = intake_routes(Router::new(), intake::FORMATS)
        .route("/v1/releases", get(releases::list))
        .route("/v1/releases/{id}", get(releases::show))
        .route("/v1/releases/{id}/rollback", post(releases::rollback))
        .route("/v1/releases/{id}/abort", post(releases::abort))
        .route("/v1/releases/{id}/ack", post(releases::ack))
        .route("/v1/audit", get(audit::list))
        .route("/v1/releases/{id}/report", get(report::report))
        .route("/", get(ui::page))
        .route("/ui", get(ui::page))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            rate::limit_intake,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(overload);
    // Probes and scrapes stay outside the concurrency limit: they must
    // answer while the API is overloaded.
    let operational = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .method_not_allowed_fallback(method_not_allowed);
    let outer = ServiceBuilder::new()
        .layer(middleware::from_fn(trace::log_request))
        .layer(HandleErrorLayer::new(handle_overload))
        .timeout(REQUEST_TIMEOUT);
    operational
        .merge(limited)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            origin::check_origin_and_host,
        ))
        .layer(outer)
        .with_state(state)
}

/// One `POST` route per intake format, at the route the format names.
fn intake_routes(
    mut router: Router<ApiState>,
    formats: &'static [&'static dyn intake::IntakeFormat],
) -> Router<ApiState> {
    for &format in formats {
        router = router.route(
            format.route(),
            post(move |State(state): State<ApiState>, request: Request| {
                releases::create(state, format, request)
            }),
        );
    }
    router
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", error::echo(uri.path())))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "method {method} is not allowed on {}",
        error::echo(uri.path())
    ))
}

/// Errors of the overload layers: shed load is a 503, a timeout a 408.
async fn handle_overload(err: BoxError) -> ApiError {
    if err.is::<tower::load_shed::error::Overloaded>() {
        ApiError::Unavailable("the server is overloaded; try again shortly".into())
    } else if err.is::<tower::timeout::error::Elapsed>() {
        ApiError::Timeout(format!(
            "the request took longer than {}s",
            REQUEST_TIMEOUT.as_secs()
        ))
    } else {
        ApiError::Internal(format!("middleware: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::{Auth, Intake, IntakeError, IntakeFormat, IntakeRequest};
    use crate::model::NewRelease;
    use axum::body::Body;
    use axum::http::{header, StatusCode};
    use tower::ServiceExt;

    /// A webhook-like format: requests are signed with `x-signature: good`;
    /// the body `in progress` starts nothing, `SERVICE VERSION` a release.
    struct Signed;

    impl IntakeFormat for Signed {
        fn name(&self) -> &'static str {
            "signed"
        }
        fn route(&self) -> &'static str {
            "/v1/webhooks/signed"
        }
        fn auth(&self) -> Auth {
            Auth::Own
        }
        fn authenticate(&self, request: &IntakeRequest<'_>) -> Result<(), IntakeError> {
            match request.headers.get("x-signature") {
                Some(v) if v == "good" => Ok(()),
                _ => Err(IntakeError::Unauthenticated("bad signature".into())),
            }
        }
        fn parse(&self, request: &IntakeRequest<'_>) -> Result<Intake, IntakeError> {
            let text = std::str::from_utf8(request.body).unwrap_or_default();
            if text == "in progress" {
                return Ok(Intake::Ignored(
                    "the deployment is still in progress".into(),
                ));
            }
            match text.split_once(' ') {
                Some((service, version)) => Ok(Intake::Release(NewRelease {
                    service: service.into(),
                    version: version.into(),
                    previous_version: None,
                    environment: None,
                    annotations: Default::default(),
                })),
                None => Err(IntakeError::Malformed("expected `SERVICE VERSION`".into())),
            }
        }
    }

    /// A format with a `[webhooks.unset]` section that no config has.
    struct Unset;

    impl IntakeFormat for Unset {
        fn name(&self) -> &'static str {
            "unset"
        }
        fn route(&self) -> &'static str {
            "/v1/webhooks/unset"
        }
        fn section(&self) -> Option<crate::intake::ParseSection> {
            Some(|_| None)
        }
        fn parse(&self, _request: &IntakeRequest<'_>) -> Result<Intake, IntakeError> {
            unreachable!("an unconfigured webhook is never parsed")
        }
    }

    static TEST_FORMATS: &[&dyn IntakeFormat] = &[&Signed, &Unset];

    async fn post(app: &Router, signature: &str, body: &'static str) -> (StatusCode, String) {
        let request = axum::http::Request::post("/v1/webhooks/signed")
            .header("x-signature", signature)
            .body(Body::from(body))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let location = response.headers().get(header::LOCATION).cloned();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert_eq!(location.is_some(), status == StatusCode::CREATED, "{text}");
        (status, text)
    }

    #[tokio::test]
    async fn every_format_gets_its_route_and_each_outcome_its_status() {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::config::load_str(
            "[store]\npath = \"g.db\"\n[[services]]\nname = \"checkout\"\n",
            &dir.path().join("guardian.toml"),
            &[],
        )
        .unwrap();
        let store = crate::store::open(&settings.store).unwrap();
        let ctx = Context::new(settings, store, Arc::new(crate::clock::SystemClock));
        let guardian = Guardian::new(ctx.clone());
        guardian.start().await.unwrap();
        let app =
            intake_routes(Router::new(), TEST_FORMATS).with_state(ApiState::new(guardian, ctx));

        let (status, text) = post(&app, "good", "in progress").await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(text, r#"{"ignored":"the deployment is still in progress"}"#);
        let (status, text) = post(&app, "forged", "checkout v7").await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::UNAUTHORIZED, r#"{"error":"bad signature"}"#)
        );
        let (status, text) = post(&app, "good", "nonsense").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        let (status, text) = post(&app, "good", "checkout v7").await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
        let (status, text) = post(&app, "good", "checkout v7").await;
        assert_eq!(status, StatusCode::OK, "{text}");
        // A deploy tool without its section answers 404.
        let request = axum::http::Request::post("/v1/webhooks/unset")
            .body(Body::from("{}"))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn overload_is_503_and_a_timeout_408() {
        let shed = handle_overload(Box::new(tower::load_shed::error::Overloaded::new())).await;
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        let late = handle_overload(Box::new(tower::timeout::error::Elapsed::new())).await;
        assert_eq!(late.status(), StatusCode::REQUEST_TIMEOUT);
        let other = handle_overload("boom".into()).await;
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(other.to_string(), "internal error");
    }
}
