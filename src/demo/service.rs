//! The demo's simulated service: `checkout`, with health endpoints, a
//! Prometheus-format `/metrics` fed by simulated traffic, and a fault
//! switch. The daemon scrapes `/metrics` itself (`source: scrape`) and
//! evaluates the error-rate query over what it scraped, so nothing in the
//! demo is a stand-in for the guardian's side.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Simulated traffic: requests per 100 ms.
const REQUESTS_PER_TICK: u64 = 50;

#[derive(Debug)]
struct Inner {
    version: String,
    /// Fraction of requests answered 5xx by the current version.
    error_ratio: f64,
    ready: bool,
    total: u64,
    errors: u64,
}

/// Shared state of the simulated service.
#[derive(Clone, Debug)]
pub struct SimulatedService {
    inner: Arc<Mutex<Inner>>,
}

impl SimulatedService {
    pub fn new(version: &str) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                version: version.into(),
                error_ratio: 0.001,
                ready: true,
                total: 0,
                errors: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deploys a version (healthy unless a fault is injected).
    pub fn deploy(&self, version: &str) {
        let mut i = self.lock();
        i.version = version.into();
        i.error_ratio = 0.001;
        i.ready = true;
    }

    /// The regression: 12% of requests fail and readiness fails.
    pub fn inject_fault(&self) {
        let mut i = self.lock();
        i.error_ratio = 0.12;
        i.ready = false;
    }

    pub fn version(&self) -> String {
        self.lock().version.clone()
    }

    /// Generates traffic every 100 ms until cancelled.
    pub fn spawn_traffic(&self, cancel: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut carry = 0.0;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let mut i = me.lock();
                i.total += REQUESTS_PER_TICK;
                carry += REQUESTS_PER_TICK as f64 * i.error_ratio;
                let errs = carry.floor();
                carry -= errs;
                i.errors += errs as u64;
            }
        });
    }

    /// The HTTP face of the service.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/health/live", get(|| async { "ok" }))
            .route("/health/ready", get(ready))
            .route("/metrics", get(metrics))
            .route("/admin/rollback", post(rollback))
            .with_state(self.clone())
    }
}

async fn ready(State(s): State<SimulatedService>) -> Response {
    if s.lock().ready {
        "ok".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: payment backend timeouts",
        )
            .into_response()
    }
}

async fn metrics(State(s): State<SimulatedService>) -> Response {
    let i = s.lock();
    let body = format!(
        "# HELP http_requests_total Requests served.\n# TYPE http_requests_total counter\n\
         http_requests_total{{service=\"checkout\",version=\"{v}\",code=\"200\"}} {ok}\n\
         http_requests_total{{service=\"checkout\",version=\"{v}\",code=\"500\"}} {err}\n",
        v = i.version,
        ok = i.total - i.errors,
        err = i.errors
    );
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Restores the previous version (what the demo's rollback hook calls).
async fn rollback(State(s): State<SimulatedService>, body: String) -> Response {
    let to = if body.trim().is_empty() {
        "v1".to_string()
    } else {
        body.trim().to_string()
    };
    s.deploy(&to);
    format!("checkout restored to {to}\n").into_response()
}
