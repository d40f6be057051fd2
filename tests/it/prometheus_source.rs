//! PrometheusSource against a local server answering the exact JSON shapes of
//! the Prometheus HTTP API (reference: prometheus-http-api.md), mounted under
//! a path prefix, recording what it was asked.

use crate::support::{free_port, never_answer, serve};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use release_guardian::config::Secret;
use release_guardian::engine::Sample;
use release_guardian::sources::prometheus::PrometheusConfig;
use release_guardian::sources::prometheus::PrometheusSource;
use release_guardian::sources::{RangeQuery, RangeSource, SourceError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    params: HashMap<String, String>,
    authorization: Option<String>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

const MATRIX: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[
 {"metric":{"__name__":"up","job":"prometheus","instance":"localhost:9090"},
  "values":[[1435781430.781,"1"],[1435781445.781,"NaN"],[1435781460.781,"+Inf"]]},
 {"metric":{},"values":[[1435781430.781,"-Inf"],[1435781445.781,"0.013333333333333334"],[1435781460.781,"1e-07"]]},
 {"metric":{"job":"native"},"histograms":[[1435781430.781,{"count":"1","sum":"1","buckets":[[0,"0","1","1"]]}]]}
]},"warnings":["some warning"]}"#;

const VECTOR: &str = r#"{"status":"success","data":{"resultType":"vector","result":[
 {"metric":{"__name__":"up","job":"prometheus","instance":"localhost:9090"},"value":[1435781451.781,"1"]},
 {"metric":{"__name__":"up","job":"node","instance":"localhost:9100"},"value":[1435781451.781,"0"]}]}}"#;

async fn api(
    State(log): State<Log>,
    uri: Uri,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    log.lock().unwrap().push(Seen {
        path: uri.path().to_string(),
        params: params.clone(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
    });
    let json = |status: StatusCode, body: &'static str| {
        (status, [("content-type", "application/json")], body).into_response()
    };
    match params.get("query").map(String::as_str).unwrap_or("") {
        "matrix" => json(StatusCode::OK, MATRIX),
        "vector" => json(StatusCode::OK, VECTOR),
        "scalar" => json(
            StatusCode::OK,
            r#"{"status":"success","data":{"resultType":"scalar","result":[1435781451.781,"NaN"]}}"#,
        ),
        "empty" => json(
            StatusCode::OK,
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
        ),
        "bad" => json(
            StatusCode::BAD_REQUEST,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unexpected end of input"}"#,
        ),
        "exec" => json(
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"status":"error","errorType":"execution","error":"many-to-many matching not allowed"}"#,
        ),
        "slow" => json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"error","errorType":"timeout","error":"query timed out in query execution"}"#,
        ),
        "starting" => (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response(),
        "proxy" => (
            StatusCode::BAD_GATEWAY,
            [("content-type", "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
        "garbage" => (StatusCode::OK, "this is not json").into_response(),
        "badvalue" => json(
            StatusCode::OK,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"one"]]}]}}"#,
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            r#"{"status":"error","errorType":"not_found","error":"unknown test query"}"#,
        ),
    }
}

async fn start() -> (String, Log) {
    let log: Log = Arc::default();
    let app = Router::new()
        .route("/prom/api/v1/query_range", get(api))
        .route("/prom/api/v1/query", get(api))
        .route("/hang/api/v1/query_range", get(never_answer))
        .with_state(log.clone());
    let addr = serve(app).await;
    (format!("http://{addr}"), log)
}

fn config(url: String) -> PrometheusConfig {
    PrometheusConfig {
        url,
        timeout: Duration::from_secs(5),
        ..PrometheusConfig::default()
    }
}

fn source(cfg: &PrometheusConfig) -> PrometheusSource {
    PrometheusSource::new(reqwest::Client::new(), cfg).expect("valid config")
}

fn range(query: &str) -> RangeQuery {
    RangeQuery {
        query: query.into(),
        start: 1_435_781_430_781,
        end: 1_435_781_460_781,
        step: 15_000,
    }
}

#[tokio::test]
async fn matrix_with_special_values_and_the_request_it_sent() {
    let (base, log) = start().await;
    let mut cfg = config(format!("{base}/prom"));
    cfg.bearer_token = Some(Secret::new("tok-123"));
    let series = source(&cfg).query_range(&range("matrix")).await.unwrap();

    assert_eq!(series.len(), 2, "the histogram-only series is skipped");
    let (key, samples) = &series[0];
    assert_eq!(
        key,
        r#"{__name__="up",instance="localhost:9090",job="prometheus"}"#
    );
    assert_eq!(samples[0], Sample::ok(1_435_781_430_781, 1.0));
    assert_eq!(samples[1].ts, 1_435_781_445_781);
    assert!(samples[1].value.is_nan());
    assert_eq!(samples[2], Sample::ok(1_435_781_460_781, f64::INFINITY));
    let (key, samples) = &series[1];
    assert_eq!(key, "{}");
    assert_eq!(samples[0].value, f64::NEG_INFINITY);
    assert_eq!(samples[1].value, 0.013333333333333334);
    assert_eq!(samples[2].value, 1e-7);

    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/prom/api/v1/query_range");
    let p = &seen[0].params;
    assert_eq!(p["query"], "matrix");
    assert_eq!(p["start"], "1435781430.781");
    assert_eq!(p["end"], "1435781460.781");
    assert_eq!(p["step"], "15");
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer tok-123"));
}

#[tokio::test]
async fn bearer_token_from_a_file_and_a_trailing_slash() {
    let (base, log) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("prom.token");
    std::fs::write(&token, "file-token\n").unwrap();
    let mut cfg = config(format!("{base}/prom/"));
    cfg.bearer_token_file = Some(token);
    let q = RangeQuery {
        step: 500,
        ..range("empty")
    };
    assert_eq!(source(&cfg).query_range(&q).await, Ok(vec![]));
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen[0].path, "/prom/api/v1/query_range");
    assert_eq!(seen[0].params["step"], "0.5");
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer file-token"));
}

#[tokio::test]
async fn instant_vector_and_scalar() {
    let (base, log) = start().await;
    let src = source(&config(format!("{base}/prom")));
    let v = src
        .query_instant("vector", Some(1_435_781_451_781))
        .await
        .unwrap();
    let mut keys: Vec<_> = v.iter().map(|(k, s)| (k.as_str(), s.clone())).collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(
        keys,
        [
            (
                r#"{__name__="up",instance="localhost:9090",job="prometheus"}"#,
                vec![Sample::ok(1_435_781_451_781, 1.0)]
            ),
            (
                r#"{__name__="up",instance="localhost:9100",job="node"}"#,
                vec![Sample::ok(1_435_781_451_781, 0.0)]
            ),
        ]
    );
    let s = src.query_instant("scalar", None).await.unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, "scalar");
    assert!(s[0].1[0].value.is_nan());

    let seen = log.lock().unwrap().clone();
    assert_eq!(seen[0].path, "/prom/api/v1/query");
    assert_eq!(seen[0].params["time"], "1435781451.781");
    assert!(!seen[1].params.contains_key("time"));
    assert_eq!(seen[0].authorization, None);
}

#[tokio::test]
async fn error_envelopes_plain_text_and_garbage() {
    let (base, _log) = start().await;
    let mut cfg = config(format!("{base}/prom"));
    cfg.bearer_token = Some(Secret::new("tok-123"));
    let src = source(&cfg);
    let err = |q: &'static str| {
        let src = &src;
        async move { src.query_range(&range(q)).await.unwrap_err() }
    };

    let e = err("bad").await;
    assert_eq!(
        e,
        SourceError::Query {
            source_name: "prometheus",
            error_type: "bad_data".into(),
            detail: r#"invalid parameter "query": 1:5: parse error: unexpected end of input"#
                .into()
        }
    );
    assert!(
        matches!(err("exec").await, SourceError::Query { error_type, .. } if error_type == "execution")
    );
    assert!(
        matches!(err("slow").await, SourceError::Query { error_type, .. } if error_type == "timeout")
    );
    assert_eq!(
        err("starting").await,
        SourceError::Http {
            source_name: "prometheus",
            status: 503,
            detail: "Service Unavailable".into()
        }
    );
    let proxy = err("proxy").await;
    assert!(
        matches!(&proxy, SourceError::Http { status: 502, detail, .. } if detail.contains("502 Bad Gateway")),
        "{proxy:?}"
    );
    assert!(matches!(err("garbage").await, SourceError::Decode { .. }));
    let bad_value = err("badvalue").await;
    assert!(
        matches!(&bad_value, SourceError::Decode { detail, .. } if detail.contains("\"one\"")),
        "{bad_value:?}"
    );
    for e in [err("bad").await, proxy, bad_value] {
        let shown = e.to_string();
        assert!(
            !shown.contains("tok-123") && !shown.contains("http://"),
            "{shown}"
        );
    }
}

#[tokio::test]
async fn unreachable_and_timed_out() {
    let src = source(&config(format!("http://127.0.0.1:{}/prom", free_port())));
    assert_eq!(
        src.query_range(&range("matrix")).await,
        Err(SourceError::Unreachable {
            source_name: "prometheus",
            detail: "connection refused".into()
        })
    );

    let (base, _log) = start().await;
    let mut cfg = config(format!("{base}/hang"));
    cfg.timeout = Duration::from_millis(200);
    assert_eq!(
        source(&cfg).query_range(&range("matrix")).await,
        Err(SourceError::Unreachable {
            source_name: "prometheus",
            detail: "timed out after 200ms".into()
        })
    );
}

#[test]
fn bad_configs_are_refused_without_echoing_secrets() {
    let http = reqwest::Client::new();
    let new = |cfg: PrometheusConfig| PrometheusSource::new(http.clone(), &cfg).err();
    assert!(new(config("localhost:9090".into())).is_some());
    assert!(new(config("ftp://host/".into())).is_some());
    let mut both = config("http://host".into());
    both.bearer_token = Some(Secret::new("s3cret"));
    both.bearer_token_file = Some("/nonexistent".into());
    assert!(new(both).is_some_and(|e| !e.contains("s3cret")));
    let mut missing = config("http://host".into());
    missing.bearer_token_file = Some("/nonexistent/token".into());
    assert!(new(missing).is_some_and(|e| e.contains("/nonexistent/token")));
    let mut broken = config("http://host".into());
    broken.bearer_token = Some(Secret::new("line\nbreak-s3cret"));
    assert!(new(broken).is_some_and(|e| !e.contains("s3cret")));
}
