//! A real HTTP target for Prometheus to scrape: request counters fed by
//! simulated traffic (100 requests every 100 ms) with a switchable error
//! ratio, and `/health/live` for probes. Runs until the test's runtime ends.

use super::serve;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Counters {
    ok: u64,
    errors: u64,
    error_ratio: f64,
    carry: f64,
}

pub struct Target {
    pub addr: SocketAddr,
    state: Arc<Mutex<Counters>>,
}

impl Target {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(Counters {
            error_ratio: 0.001,
            ..Default::default()
        }));
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/health/live", get(|| async { "ok" }))
            .with_state(state.clone());
        let addr = serve(app).await;
        let s = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let mut g = s.lock().unwrap();
                g.carry += 100.0 * g.error_ratio;
                let errs = g.carry.floor();
                g.carry -= errs;
                g.errors += errs as u64;
                g.ok += 100 - errs as u64;
            }
        });
        Self { addr, state }
    }

    /// Sets the fraction of requests answered 5xx from now on.
    pub fn set_error_ratio(&self, r: f64) {
        self.state.lock().unwrap().error_ratio = r;
    }
}

async fn metrics(
    State(s): State<Arc<Mutex<Counters>>>,
) -> ([(&'static str, &'static str); 1], String) {
    let g = s.lock().unwrap();
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        format!(
            "# HELP http_requests_total Requests served.\n# TYPE http_requests_total counter\n\
             http_requests_total{{service=\"checkout\",code=\"200\"}} {}\n\
             http_requests_total{{service=\"checkout\",code=\"500\"}} {}\n",
            g.ok, g.errors
        ),
    )
}
