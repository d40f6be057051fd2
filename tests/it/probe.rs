//! The prober against a local server: status judging, timeouts, refused
//! connections, redirect limits.

use crate::support::{free_port, never_answer, serve};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Redirect;
use axum::routing::get;
use axum::Router;
use release_guardian::sources::probe::ProbeConfig;
use release_guardian::sources::probe::{probe_client, Prober};
use std::time::Duration;

async fn start() -> String {
    let app = Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route(
            "/fail",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route("/created", get(|| async { (StatusCode::CREATED, "") }))
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route("/hang", get(never_answer))
        .route(
            "/hop/{n}",
            get(|Path(n): Path<u32>| async move {
                if n == 0 {
                    Redirect::temporary("/ok")
                } else {
                    Redirect::temporary(&format!("/hop/{}", n - 1))
                }
            }),
        );
    format!("http://{}", serve(app).await)
}

fn probe(url: String, expect_status: Option<u16>, timeout: Duration) -> ProbeConfig {
    ProbeConfig {
        name: "live".into(),
        url,
        expect_status: expect_status.map(Into::into),
        timeout,
        ..ProbeConfig::default()
    }
}

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn statuses_are_judged() {
    let base = start().await;
    let prober = Prober::new(probe_client());

    let ok = prober.probe(&probe(format!("{base}/ok"), None, T)).await;
    assert!(ok.ok, "{ok:?}");
    assert_eq!((ok.status, ok.error), (Some(200), None));
    assert!(ok.latency > Duration::ZERO && ok.latency < T);

    let fail = prober.probe(&probe(format!("{base}/fail"), None, T)).await;
    assert!(!fail.ok);
    assert_eq!(fail.status, Some(503));
    assert_eq!(fail.error.as_deref(), Some("HTTP 503, expected 2xx"));

    let created = prober
        .probe(&probe(format!("{base}/created"), None, T))
        .await;
    assert!(created.ok, "any 2xx passes");

    let exact = prober
        .probe(&probe(format!("{base}/created"), Some(200), T))
        .await;
    assert!(!exact.ok);
    assert_eq!(exact.error.as_deref(), Some("HTTP 201, expected 200"));

    let wanted_404 = prober
        .probe(&probe(format!("{base}/missing"), Some(404), T))
        .await;
    assert!(wanted_404.ok, "{wanted_404:?}");
}

#[tokio::test]
async fn a_silent_server_times_out_at_the_probe_timeout() {
    let base = start().await;
    let r = Prober::new(probe_client())
        .probe(&probe(
            format!("{base}/hang"),
            None,
            Duration::from_millis(200),
        ))
        .await;
    assert!(!r.ok);
    assert_eq!(r.status, None);
    assert_eq!(r.error.as_deref(), Some("timed out after 200ms"));
    assert!(r.latency >= Duration::from_millis(200), "{:?}", r.latency);
    assert!(r.latency < Duration::from_secs(3), "{:?}", r.latency);
}

#[tokio::test]
async fn a_closed_port_is_refused() {
    let r = Prober::new(probe_client())
        .probe(&probe(
            format!("http://127.0.0.1:{}/", free_port()),
            None,
            T,
        ))
        .await;
    assert!(!r.ok);
    assert_eq!(r.error.as_deref(), Some("connection refused"));
}

#[tokio::test]
async fn at_most_five_redirects_are_followed() {
    let base = start().await;
    let prober = Prober::new(probe_client());
    let five = prober.probe(&probe(format!("{base}/hop/4"), None, T)).await;
    assert!(five.ok, "5 redirects: {five:?}");
    let six = prober.probe(&probe(format!("{base}/hop/5"), None, T)).await;
    assert!(!six.ok);
    assert_eq!(six.error.as_deref(), Some("too many redirects"));
}

#[tokio::test]
async fn an_invalid_url_is_an_error_not_a_panic() {
    let r = Prober::new(probe_client())
        .probe(&probe("not a url".into(), None, T))
        .await;
    assert!(!r.ok);
    assert!(r.error.unwrap().starts_with("invalid URL"));
}
