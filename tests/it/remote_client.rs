//! The HTTP client every query source shares (`sources::http`), against a
//! counting stand-in for Prometheus' query API: identical requests in
//! flight at once are sent once (coalescing), requests per source are
//! bounded by `max_concurrency`, long queries go as a POST form, and the
//! credentials and headers of `[sources.NAME]` are sent (and never shown in
//! errors). Sources are built from config text, as the daemon builds them.

use crate::support::{range_source, serve};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use futures_util::future::join_all;
use release_guardian::sources::RangeQuery;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    params: HashMap<String, String>,
    headers: HeaderMap,
}

#[derive(Default)]
struct Counter {
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// Answers every query with a one-point matrix after `HOLD` (the server's
/// own latency, so that requests overlap).
const HOLD: Duration = Duration::from_millis(150);

async fn api(
    State(c): State<Arc<Counter>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let raw = if method == Method::POST {
        assert_eq!(
            headers.get("content-type").unwrap(),
            "application/x-www-form-urlencoded"
        );
        String::from_utf8_lossy(&body).into_owned()
    } else {
        uri.query().unwrap_or_default().to_string()
    };
    let params: HashMap<String, String> = reqwest::Url::parse(&format!("http://x/?{raw}"))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    c.seen.lock().unwrap().push(Seen {
        method,
        params,
        headers,
    });
    let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    c.max_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(HOLD).await;
    c.in_flight.fetch_sub(1, Ordering::SeqCst);
    (
        [("content-type", "application/json")],
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[60,"1"]]}]},"warnings":["this is a warning"]}"#,
    )
}

async fn counting_server() -> (String, Arc<Counter>) {
    let c = Arc::new(Counter::default());
    let app = Router::new()
        .route("/api/v1/query_range", get(api).post(api))
        .with_state(c.clone());
    (format!("http://{}", serve(app).await), c)
}

fn q(query: &str) -> RangeQuery {
    RangeQuery {
        query: query.into(),
        start: 60_000,
        end: 120_000,
        step: 15_000,
    }
}

#[tokio::test]
async fn identical_queries_in_flight_are_sent_once() {
    let (url, counter) = counting_server().await;
    let dir = tempfile::tempdir().unwrap();
    let source = range_source(
        dir.path(),
        &format!("[sources.prometheus]\nurl = \"{url}\"\n"),
        "prometheus",
    );
    // Twenty watches ticking at the same instant with the same query.
    let same = q("sum(rate(http_requests_total[5m]))");
    let answers = join_all((0..20).map(|_| source.query_range(&same))).await;
    assert!(answers
        .iter()
        .all(|a| a.as_ref().is_ok_and(|s| s.len() == 1)));
    assert_eq!(counter.seen.lock().unwrap().len(), 1, "sent once");

    // Different queries are not merged; a finished one is not cached.
    let different = join_all(["a", "b", "c"].map(|x| {
        let source = source.clone();
        async move { source.query_range(&q(x)).await }
    }))
    .await;
    assert!(different.iter().all(Result::is_ok));
    assert_eq!(counter.seen.lock().unwrap().len(), 4);
    source.query_range(&same).await.unwrap();
    assert_eq!(counter.seen.lock().unwrap().len(), 5, "no stale answer");
}

#[tokio::test]
async fn requests_per_source_are_bounded() {
    let (url, counter) = counting_server().await;
    let dir = tempfile::tempdir().unwrap();
    let source = range_source(
        dir.path(),
        &format!("[sources.prometheus]\nurl = \"{url}\"\nmax_concurrency = 2\n"),
        "prometheus",
    );
    let queries: Vec<RangeQuery> = (0..6).map(|i| q(&format!("q{i}"))).collect();
    let answers = join_all(queries.iter().map(|x| source.query_range(x))).await;
    assert!(answers.iter().all(Result::is_ok));
    assert_eq!(counter.seen.lock().unwrap().len(), 6);
    assert_eq!(counter.max_in_flight.load(Ordering::SeqCst), 2);

    // Without the bound (default 16) the same six overlap.
    let (url, counter) = counting_server().await;
    let source = range_source(
        dir.path(),
        &format!("[sources.prometheus]\nurl = \"{url}\"\n"),
        "prometheus",
    );
    join_all(queries.iter().map(|x| source.query_range(x))).await;
    assert!(counter.max_in_flight.load(Ordering::SeqCst) > 2);
}

#[tokio::test]
async fn long_queries_go_as_a_post_form_with_credentials_and_headers() {
    let (url, counter) = counting_server().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prom.password"), "pa:ss-w0rd\n").unwrap();
    let source = range_source(
        dir.path(),
        &format!(
            r#"[sources.mimir]
kind = "prometheus"
url = "{url}"
username = "guardian"
password_file = "prom.password"
tenant = "team-a"
headers = {{ "X-Extra" = "yes" }}
timeout = "3s"
"#
        ),
        "mimir",
    );
    let long = format!("sum(rate(x{{a=\"{}\"}}[5m]))", "y".repeat(3000));
    source.query_range(&q(&long)).await.unwrap();
    source.query_range(&q("up")).await.unwrap();
    let seen = counter.seen.lock().unwrap().clone();
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(seen[0].params["query"], long);
    assert_eq!(seen[0].params["start"], "60");
    assert_eq!(seen[0].params["step"], "15");
    assert_eq!(seen[1].method, Method::GET);
    assert_eq!(seen[1].params["query"], "up");
    for s in &seen {
        // base64("guardian:pa:ss-w0rd"): the file's trailing newline is not
        // part of the password.
        assert_eq!(
            s.headers.get("authorization").unwrap(),
            "Basic Z3VhcmRpYW46cGE6c3MtdzByZA=="
        );
        assert_eq!(s.headers.get("x-scope-orgid").unwrap(), "team-a");
        assert_eq!(s.headers.get("x-extra").unwrap(), "yes");
    }
}

#[tokio::test]
async fn a_401_is_a_clear_http_error_without_the_url_or_the_token() {
    let app = Router::new().route(
        "/api/v1/query_range",
        get(|| async { (axum::http::StatusCode::UNAUTHORIZED, "Unauthorized\n") }),
    );
    let url = format!("http://{}", serve(app).await);
    let dir = tempfile::tempdir().unwrap();
    let source = range_source(
        dir.path(),
        &format!("[sources.prometheus]\nurl = \"{url}\"\nbearer_token = \"tok-SECRET\"\n"),
        "prometheus",
    );
    let e = source.query_range(&q("up")).await.unwrap_err();
    assert_eq!(e.to_string(), "prometheus answered HTTP 401: Unauthorized");
}
