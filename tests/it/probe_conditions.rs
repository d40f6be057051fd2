//! Probe conditions against real local servers: body, regex and JSON
//! conditions, method and headers, status ranges and the redirect policy
//! over HTTP; certificate expiry and HTTP/2 over HTTPS (a certificate
//! generated in the test that expires in five days); a burst's percentiles
//! judged by a rule read from a rule pack.

use crate::support::{serve, settings, TlsServer};
use axum::http::{HeaderMap, Method, Version};
use axum::response::Redirect;
use axum::routing::{any, get};
use axum::Router;
use release_guardian::engine::{self, CheckTracker, Sample};
use release_guardian::model::Level;
use release_guardian::sources::probe::{probe_client, ProbeConfig, Prober, Stat};
use release_guardian::sources::Blame;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Echoes the HTTP version, method and `x-check` header.
async fn echo(version: Version, method: Method, headers: HeaderMap) -> String {
    format!(
        "{version:?} {method} x-check={}",
        headers
            .get("x-check")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    )
}

fn app() -> Router {
    Router::new()
        .route(
            "/health",
            get(|| async { r#"{"status":"UP","checks":[{"name":"db","ok":true}]}"# }),
        )
        .route(
            "/degraded",
            get(|| async { r#"{"status":"DOWN","checks":[]}"# }),
        )
        .route("/echo", any(echo))
        .route("/moved", get(|| async { Redirect::temporary("/health") }))
}

fn probe(url: String, extra: impl FnOnce(&mut ProbeConfig)) -> ProbeConfig {
    let mut p = ProbeConfig {
        name: "p".into(),
        url,
        timeout: Duration::from_secs(5),
        ..ProbeConfig::default()
    };
    extra(&mut p);
    p
}

#[tokio::test]
async fn body_json_regex_method_headers_and_redirects() {
    let base = format!("http://{}", serve(app()).await);
    let prober = Prober::new(probe_client());

    let up = prober
        .probe(&probe(format!("{base}/health"), |p| {
            p.body_contains = Some("\"UP\"".into());
            p.body_regex = Some(r#""name":"db","ok":true"#.into());
            p.json = Some(toml_json("$.status", "\"UP\""));
        }))
        .await;
    assert!(up.ok, "{up:?}");

    let down = prober
        .probe(&probe(format!("{base}/degraded"), |p| {
            p.body_contains = Some("UP".into());
            p.body_regex = Some(r#""ok":true"#.into());
            p.json = Some(toml_json("$.status", "\"UP\""));
        }))
        .await;
    assert!(!down.ok);
    assert_eq!(
        down.blame,
        Blame::Service,
        "a failed condition is the service's doing"
    );
    assert_eq!(
        down.error.as_deref(),
        Some(
            r#"body does not contain "UP"; body does not match /"ok":true/; json $.status is "DOWN", expected "UP""#
        )
    );

    let missing = prober
        .probe(&probe(format!("{base}/health"), |p| {
            p.json = Some(toml_json("$.checks[1].ok", "true"));
        }))
        .await;
    assert_eq!(
        missing.error.as_deref(),
        Some("json $.checks[1].ok is missing (expected true)")
    );

    let post = prober
        .probe(&probe(format!("{base}/echo"), |p| {
            p.method = Some("POST".into());
            p.headers.insert("X-Check".into(), "42".into());
            p.body_contains = Some("HTTP/1.1 POST x-check=42".into());
        }))
        .await;
    assert!(post.ok, "{post:?}");

    let h2c = prober
        .probe(&probe(format!("{base}/echo"), |p| {
            p.http_version = release_guardian::sources::probe::HttpVersion::Http2;
            p.body_contains = Some("HTTP/2.0 GET".into());
        }))
        .await;
    assert!(
        h2c.ok,
        "HTTP/2 with prior knowledge over plain http: {h2c:?}"
    );

    let followed = prober.probe(&probe(format!("{base}/moved"), |_| {})).await;
    assert!(followed.ok, "{followed:?}");
    let not_followed = prober
        .probe(&probe(format!("{base}/moved"), |p| {
            p.follow_redirects = false
        }))
        .await;
    assert_eq!(not_followed.status, Some(307));
    assert_eq!(
        not_followed.error.as_deref(),
        Some("HTTP 307, expected 2xx")
    );
    let redirect_expected = prober
        .probe(&probe(format!("{base}/moved"), |p| {
            p.follow_redirects = false;
            p.expect_status = Some(release_guardian::sources::probe::ExpectStatus::Text(
                "300-399".into(),
            ));
        }))
        .await;
    assert!(redirect_expected.ok, "{redirect_expected:?}");
}

fn toml_json(path: &str, equals: &str) -> release_guardian::sources::probe::JsonCondition {
    release_guardian::sources::probe::JsonCondition {
        path: path.into(),
        equals: serde_json::from_str(equals).unwrap(),
    }
}

#[tokio::test]
async fn certificate_expiry_and_http2_over_tls() {
    let server = TlsServer::start(app(), 5).await;
    let url = format!("https://{}/echo", server.addr);
    let prober = Prober::new(probe_client());
    let with_ca = |days: u32| {
        probe(url.clone(), |p| {
            p.tls_ca_file = Some(server.ca_file.clone());
            p.cert_min_days = Some(days);
        })
    };

    let short = prober.probe(&with_ca(30)).await;
    assert!(!short.ok, "{short:?}");
    let why = short.error.unwrap();
    assert!(
        why.starts_with("TLS certificate expires in 4.")
            || why.starts_with("TLS certificate expires in 5.0"),
        "{why}"
    );
    assert!(why.ends_with("days, less than cert_min_days 30"), "{why}");

    let fine = prober.probe(&with_ca(1)).await;
    assert!(fine.ok, "{fine:?}");

    let mut h2 = with_ca(1);
    h2.body_contains = Some("HTTP/2.0".into());
    let h2 = prober.probe(&h2).await;
    assert!(h2.ok, "HTTP/2 negotiated by ALPN: {h2:?}");

    let mut h1 = with_ca(1);
    h1.http_version = release_guardian::sources::probe::HttpVersion::Http1;
    h1.body_contains = Some("HTTP/1.1".into());
    let h1 = prober.probe(&h1).await;
    assert!(h1.ok, "{h1:?}");

    // Without the CA the certificate is not trusted (`transport::classify`
    // cannot attribute a TLS verification failure, so it is inconclusive).
    let untrusted = prober.probe(&probe(url.clone(), |_| {})).await;
    assert!(!untrusted.ok);
    assert!(
        untrusted
            .error
            .as_deref()
            .unwrap_or("")
            .contains("invalid peer certificate: UnknownIssuer"),
        "{untrusted:?}"
    );
}

#[tokio::test]
async fn a_bursts_p95_is_judged_by_the_rule() {
    // One request in five takes 300 ms; the others answer at once.
    let n = Arc::new(AtomicU64::new(0));
    let app = Router::new().route(
        "/",
        get(move || {
            let n = n.clone();
            async move {
                if n.fetch_add(1, Ordering::SeqCst) % 5 == 0 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                "ok"
            }
        }),
    );
    let addr = serve(app).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/latency.yaml"),
        "checks:\n  - name: p95\n    source: probe\n    probe: api\n    stat: p95\n    critical: { above: 0.2 }\n  - name: p50\n    source: probe\n    probe: api\n    stat: p50\n    critical: { above: 0.2 }\n  - name: success\n    source: probe\n    probe: api\n    stat: success_ratio\n    critical: { below: 0.99 }\n",
    )
    .unwrap();
    let s = settings(
        dir.path(),
        &format!(
            "[[services]]\nname = \"api\"\nrules = [\"rules/latency.yaml\"]\n  [[services.probes]]\n  name = \"api\"\n  url = \"http://{addr}/\"\n  burst = 20\n"
        ),
    );
    let service = &s.services[0];
    let cfg = service.probe("api").unwrap();
    assert_eq!(cfg.burst, 20);
    let permits = tokio::sync::Semaphore::new(64);
    let burst = Prober::new(probe_client()).burst(cfg, &permits).await;
    assert_eq!(
        (burst.sent, burst.passed, burst.failed),
        (20, 20, 0),
        "{burst:?}"
    );

    let judged = |name: &str| {
        let check = service.checks.iter().find(|c| c.name == name).unwrap();
        let value = burst.stat(check.stat.unwrap()).unwrap();
        let series = vec![(name.to_string(), vec![Sample::ok(1_000, value)])];
        (
            value,
            engine::evaluate(
                &check.rule,
                &mut CheckTracker::default(),
                &series,
                None,
                1_000,
            )
            .level,
        )
    };
    let (p95, level) = judged("p95");
    assert!(p95 >= 0.3, "{p95}");
    assert_eq!(level, Level::Critical);
    let (p50, level) = judged("p50");
    assert!(p50 < 0.2, "{p50}");
    assert_eq!(level, Level::Ok);
    let (ratio, level) = judged("success");
    assert_eq!(ratio, 1.0);
    assert_eq!(level, Level::Ok);
    assert_eq!(
        burst.stat(Stat::P99),
        Some(burst.latencies.value_at_quantile(0.99) as f64 / 1e6)
    );
}
