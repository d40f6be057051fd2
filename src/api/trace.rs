//! The request log: one tracing span per request (method, path, status,
//! latency) and one event when it ends. Internal errors are logged here,
//! once, with their detail (`InternalDetail`); nothing else about a request
//! is logged — no headers (so never `Authorization`), no query, no body.

use super::error::InternalDetail;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tracing::field::Empty;
use tracing::Instrument;

/// Middleware: wraps the request in an `http_request` span and logs its end:
/// `error` with the detail for internal errors, `info` for other 5xx
/// (overload, timeout, not ready), `debug` for everything else.
pub(crate) async fn log_request(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "http_request",
        method = %request.method(),
        path = %request.uri().path(),
        status = Empty,
        latency_ms = Empty,
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let latency_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
    let status = response.status();
    span.record("status", status.as_u16());
    span.record("latency_ms", latency_ms);
    let _entered = span.enter();
    if let Some(InternalDetail(detail)) = response.extensions_mut().remove::<InternalDetail>() {
        tracing::error!(error = %detail, "request failed: internal error");
    } else if status.is_server_error() {
        // Shed load, a timeout, not ready: the cause was logged where known.
        tracing::info!("request refused");
    } else {
        tracing::debug!("request");
    }
    response
}
