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
//! - [`body`] — reading bodies, with the 1 MiB limit;
//! - [`auth`] — bearer tokens and scopes (`[auth]`);
//! - [`error`] — [`ApiError`], the statuses and `{"error": "..."}` bodies;
//! - [`trace`] — the per-request span and log.
//!
//! Every request, from the outside in: request log → overload and timeout
//! handling (load shedding above [`MAX_CONCURRENT_REQUESTS`], a
//! [`REQUEST_TIMEOUT`]) → body limit → authentication → the route.

pub mod auth;
pub mod body;
pub mod error;
pub mod health;
pub mod releases;
pub mod trace;
pub mod view;

pub use body::MAX_BODY_BYTES;
pub use error::ApiError;
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
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;

/// Requests served at once; beyond that they are shed with a 503 at once
/// rather than queued.
pub const MAX_CONCURRENT_REQUESTS: usize = 1024;

/// Longest a request may take, reading its body included; then 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What every route is handed: the guardian (control operations) and the
/// daemon's context (settings, store, telemetry).
#[derive(Clone)]
pub struct ApiState {
    pub guardian: Arc<Guardian>,
    pub ctx: Arc<Context>,
}

impl ApiState {
    pub fn new(guardian: Arc<Guardian>, ctx: Arc<Context>) -> Self {
        Self { guardian, ctx }
    }
}

/// The whole API, ready to serve (or to drive with `oneshot` in tests).
pub fn router(state: ApiState) -> Router {
    // `Router::layer` wraps every route separately, so the concurrency limit
    // must be the global kind: one semaphore shared by all routes.
    let overload = ServiceBuilder::new()
        .layer(middleware::from_fn(trace::log_request))
        .layer(HandleErrorLayer::new(handle_overload))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(MAX_CONCURRENT_REQUESTS))
        .timeout(REQUEST_TIMEOUT);
    intake_routes(Router::new())
        .route("/v1/releases", get(releases::list))
        .route("/v1/releases/{id}", get(releases::show))
        .route("/v1/releases/{id}/rollback", post(releases::rollback))
        .route("/v1/releases/{id}/abort", post(releases::abort))
        .route("/v1/releases/{id}/ack", post(releases::ack))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(overload)
        .with_state(state)
}

/// One `POST` route per intake format, at the route the format names.
fn intake_routes(mut router: Router<ApiState>) -> Router<ApiState> {
    for &format in intake::FORMATS {
        router = router.route(
            format.route(),
            post(move |State(state): State<ApiState>, request: Request| {
                releases::create(state, format, request)
            }),
        );
    }
    router
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops
/// accepting connections and lets requests in flight finish (the caller
/// bounds how long it waits for this future).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "API listening");
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled_owned().await })
        .await
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
    use axum::http::StatusCode;

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
