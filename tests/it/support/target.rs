//! A real HTTP target for Prometheus (and the scrape source) to scrape:
//! request counters and a latency histogram that grow linearly with time
//! (1,000 requests a second, computed at each scrape from the time since the
//! last change, so any two scrapers see the same functions of time), a
//! switchable error ratio, the same requests by route (label values with
//! commas, `=`, braces and escapes), and `/health/live` for probes. Runs until the
//! test's runtime ends.

use super::serve;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Requests per second of the simulated traffic.
pub const REQUESTS_PER_SECOND: f64 = 1000.0;

/// The latency histogram's buckets: upper bound and the share of requests
/// at or below it.
pub const BUCKETS: [(&str, f64); 4] = [("0.05", 0.5), ("0.1", 0.8), ("0.25", 0.95), ("+Inf", 1.0)];

struct Counters {
    /// Counts at `since`.
    ok: f64,
    errors: f64,
    since: Instant,
    error_ratio: f64,
}

impl Counters {
    /// (ok, errors) now.
    fn now(&self) -> (f64, f64) {
        let n = self.since.elapsed().as_secs_f64() * REQUESTS_PER_SECOND;
        (
            self.ok + n * (1.0 - self.error_ratio),
            self.errors + n * self.error_ratio,
        )
    }
}

pub struct Target {
    pub addr: SocketAddr,
    state: Arc<Mutex<Counters>>,
}

impl Target {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(Counters {
            // Far from zero, so no rate is clamped at the counter's zero point.
            ok: 100_000.0,
            errors: 100.0,
            since: Instant::now(),
            error_ratio: 0.001,
        }));
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/health/live", get(|| async { "ok" }))
            .with_state(state.clone());
        let addr = serve(app).await;
        Self { addr, state }
    }

    /// Sets the fraction of requests answered 5xx from now on.
    pub fn set_error_ratio(&self, r: f64) {
        let mut g = self.state.lock().unwrap();
        let (ok, errors) = g.now();
        *g = Counters {
            ok,
            errors,
            since: Instant::now(),
            error_ratio: r,
        };
    }
}

async fn metrics(
    State(s): State<Arc<Mutex<Counters>>>,
) -> ([(&'static str, &'static str); 1], String) {
    let (ok, errors) = s.lock().unwrap().now();
    let total = ok + errors;
    let mut body = format!(
        "# HELP http_requests_total Requests served.\n# TYPE http_requests_total counter\n\
         http_requests_total{{service=\"checkout\",code=\"200\"}} {:.3}\n\
         http_requests_total{{service=\"checkout\",code=\"500\"}} {:.3}\n\
         # HELP http_request_duration_seconds Request latency.\n\
         # TYPE http_request_duration_seconds histogram\n",
        ok, errors
    );
    for (le, share) in BUCKETS {
        body.push_str(&format!(
            "http_request_duration_seconds_bucket{{service=\"checkout\",le=\"{le}\"}} {:.3}\n",
            total * share
        ));
    }
    body.push_str(&format!(
        "http_request_duration_seconds_sum{{service=\"checkout\"}} {:.3}\nhttp_request_duration_seconds_count{{service=\"checkout\"}} {:.3}\n",
        total * 0.07,
        total
    ));
    // The same requests by route: label values with `,`, `=`, `}`, spaces
    // and escapes, as real routes and messages have them.
    body.push_str(&format!(
        "# HELP http_route_requests_total Requests by route.\n# TYPE http_route_requests_total counter\n\
         http_route_requests_total{{service=\"checkout\",route=\"/search?q=a,b\",note=\"say \\\"hi\\\"\"}} {:.3}\n\
         http_route_requests_total{{service=\"checkout\",route=\"/cart?id=1&x={{y}}\",note=\"a\\\\b\"}} {:.3}\n",
        total * 0.75,
        total * 0.25
    ));
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
}
