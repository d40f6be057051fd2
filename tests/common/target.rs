//! A real HTTP target for Prometheus to scrape: request counters fed by
//! simulated traffic (100 requests every 100 ms), with a switchable error ratio.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
    cancel: CancellationToken,
}

impl Target {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(Counters {
            error_ratio: 0.001,
            ..Default::default()
        }));
        let cancel = CancellationToken::new();
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/health/live", get(|| async { "ok" }))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let c = cancel.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { c.cancelled().await })
                .await
                .unwrap();
        });
        let s = state.clone();
        let c = cancel.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! { _ = c.cancelled() => return, _ = tick.tick() => {} }
                let mut g = s.lock().unwrap();
                g.carry += 100.0 * g.error_ratio;
                let errs = g.carry.floor();
                g.carry -= errs;
                g.errors += errs as u64;
                g.ok += 100 - errs as u64;
            }
        });
        Self {
            addr,
            state,
            cancel,
        }
    }

    /// Sets the fraction of requests answered 5xx from now on.
    pub fn set_error_ratio(&self, r: f64) {
        self.state.lock().unwrap().error_ratio = r;
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.cancel.cancel();
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
