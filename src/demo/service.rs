//! The demo's simulated service: `checkout`, with health endpoints, a
//! Prometheus-format `/metrics`, a fault switch, and — since the demo runs
//! without any external server — a *simulated* Prometheus query endpoint
//! that answers the demo's error-rate query from the service's own counters
//! over the Prometheus HTTP API (`/api/v1/query_range`), so the daemon's real
//! Prometheus client and range-query logic are what the demo exercises.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Window of the simulated `rate(...[5s])`.
const RATE_WINDOW_MS: i64 = 5_000;
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
    /// (time ms, total, errors) every 100 ms.
    history: VecDeque<(i64, u64, u64)>,
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
                history: VecDeque::new(),
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
                let now = crate::clock::Clock::now(&crate::clock::SystemClock);
                let (t, e) = (i.total, i.errors);
                i.history.push_back((now, t, e));
                while i.history.len() > 3000 {
                    i.history.pop_front();
                }
            }
        });
    }

    /// Whether a full rate window of history exists (the error rate is defined).
    pub fn has_rate_window(&self) -> bool {
        self.error_ratio_at(crate::clock::Clock::now(&crate::clock::SystemClock))
            .is_some()
    }

    /// Error ratio over the window ending at `at`, if there is history.
    fn error_ratio_at(&self, at: i64) -> Option<f64> {
        let i = self.lock();
        let end = i.history.iter().rev().find(|h| h.0 <= at)?;
        let start = i
            .history
            .iter()
            .rev()
            .find(|h| h.0 <= at - RATE_WINDOW_MS)?;
        let total = end.1.checked_sub(start.1)?;
        (total > 0).then(|| (end.2 - start.2) as f64 / total as f64)
    }

    /// The HTTP face of the service (and of the simulated Prometheus).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/health/live", get(|| async { "ok" }))
            .route("/health/ready", get(ready))
            .route("/metrics", get(metrics))
            .route("/admin/rollback", post(rollback))
            .route("/api/v1/query_range", get(query_range))
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

#[derive(Deserialize)]
struct RangeParams {
    query: String,
    start: f64,
    end: f64,
    step: f64,
}

/// Simulated `query_range`: answers the demo's error-ratio query (any query
/// selecting `code=~"5.."`) from the counters; anything else is empty.
async fn query_range(State(s): State<SimulatedService>, Query(p): Query<RangeParams>) -> Response {
    let mut values = Vec::new();
    if p.query.contains("5..") && p.step > 0.0 {
        let mut t = p.start;
        while t <= p.end + 1e-9 {
            if let Some(v) = s.error_ratio_at((t * 1000.0).round() as i64) {
                values.push(serde_json::json!([t, format!("{v}")]));
            }
            t += p.step;
        }
    }
    let result = if values.is_empty() {
        vec![]
    } else {
        vec![serde_json::json!({"metric": {"service": "checkout"}, "values": values})]
    };
    Json(serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": result}})).into_response()
}
