//! The HTTP API end to end, without a socket: a real SQLite store in a temp
//! dir, a real started `Guardian`, and `router(guardian).oneshot(request)`.
//! One test also serves over real TCP to check `serve` and its shutdown.

use crate::support::{settings, wait_for};
use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use release_guardian::api::{router, serve, ApiState, MAX_BODY_BYTES};
use release_guardian::clock::SystemClock;
use release_guardian::config::Settings;
use release_guardian::context::Context;
use release_guardian::model::ReleaseStatus;
use release_guardian::scheduler::Guardian;
use release_guardian::store::sqlite::SqliteStore;
use release_guardian::store::Store;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const READ_TOKEN: &str = "read-only-token-0123456789";
const WRITE_TOKEN: &str = "read-write-token-9876543210";

/// Longest any test waits for something to happen in the background.
const DEADLINE: Duration = Duration::from_secs(10);

/// Two services, `checkout` (no hook) and `payments` (a manual rollback
/// hook), ticking once an hour for six hours: nothing ticks during a test.
/// With `auth`, a read token and a read+write token.
fn settings_in(dir: &Path, auth: bool) -> Settings {
    let mut toml = String::from(
        r#"[store]
path = "guardian.db"

[cadence]
tiers = [ { until = "6h", every = "1h" } ]

[[services]]
name = "checkout"

[[services]]
name = "payments"
  [services.rollback]
  command = ["/bin/true"]
  timeout = "30s"
  mode = "manual"
"#,
    );
    if auth {
        toml.push_str(&format!(
            r#"
[auth]
tokens = [ {{ token = "{READ_TOKEN}", scopes = ["read"] }},
           {{ token = "{WRITE_TOKEN}", scopes = ["read", "write"] }} ]
"#
        ));
    }
    settings(dir, &toml)
}

/// A guardian over a fresh store; started unless `start` is false.
struct Harness {
    dir: TempDir,
    guardian: Arc<Guardian>,
    app: Router,
}

impl Harness {
    async fn new() -> Self {
        Self::build(false, true).await
    }

    async fn with_auth() -> Self {
        Self::build(true, true).await
    }

    async fn build(auth: bool, start: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = settings_in(dir.path(), auth);
        let store = SqliteStore::open(&dir.path().join("guardian.db")).expect("open store");
        let ctx = Context::new(settings, Arc::new(store), Arc::new(SystemClock));
        let guardian = Guardian::new(ctx);
        if start {
            guardian.start().await.expect("guardian starts");
        }
        let app = router(ApiState::new(guardian.clone(), guardian.context().clone()));
        Self { dir, guardian, app }
    }

    fn store(&self) -> &Arc<dyn Store> {
        &self.guardian.context().store
    }

    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let text = String::from_utf8(bytes.to_vec()).expect("UTF-8 body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    async fn call(&self, method: Method, uri: &str, body: Option<&str>) -> Reply {
        self.send(request(method, uri, body, None)).await
    }

    async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None).await
    }

    async fn post(&self, uri: &str, body: &str) -> Reply {
        self.call(Method::POST, uri, Some(body)).await
    }

    /// Registers a release and returns its id (expects 201).
    async fn register(&self, service: &str, version: &str) -> String {
        let r = self
            .post(
                "/v1/releases",
                &json!({"service": service, "version": version}).to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json["id"].as_str().expect("id").to_string()
    }

    /// Polls the store until the release has `status` or has ended,
    /// failing at the deadline; then expects `status`.
    async fn wait_for_status(&self, id: &str, status: ReleaseStatus) {
        let release = wait_for(
            &format!("release {id} to be {status} or to end"),
            DEADLINE,
            || async {
                let release = self
                    .store()
                    .get_release(id)
                    .await
                    .expect("store answers")
                    .expect("release exists");
                (release.status == status || release.status.is_terminal()).then_some(release)
            },
        )
        .await;
        let rollback = self.store().get_rollback(id).await.expect("store answers");
        assert_eq!(release.status, status, "rollback: {rollback:?}");
    }
}

fn request(method: Method, uri: &str, body: Option<&str>, token: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if body.is_some() {
        b = b.header(header::CONTENT_TYPE, "application/json");
    }
    b.body(body.map(|s| Body::from(s.to_string())).unwrap_or_default())
        .expect("request")
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    json: Value,
}

impl Reply {
    fn error(&self) -> &str {
        self.json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error body: {}", self.text))
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------- intake

#[tokio::test]
async fn registering_twice_answers_201_then_200_with_the_same_release() {
    let h = Harness::new().await;
    let body = json!({
        "service": "checkout",
        "version": "v2",
        "previous_version": "v1",
        "annotations": {"pr": 42, "by": "deploy-bot"}
    })
    .to_string();
    let first = h.post("/v1/releases", &body).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let id = first.json["id"].as_str().expect("id");
    assert_eq!(
        first.headers[header::LOCATION],
        format!("/v1/releases/{id}").as_str()
    );
    let r = &first.json;
    assert_eq!(r["service"], "checkout");
    assert_eq!(r["environment"], "production");
    assert_eq!(r["version"], "v2");
    assert_eq!(r["previous_version"], "v1");
    assert_eq!(r["status"], "watching");
    assert_eq!(r["acked"], false);
    assert_eq!(r["superseded_by"], Value::Null);
    assert_eq!(r["ended_at"], Value::Null);
    assert_eq!(r["rollback"], Value::Null);
    assert_eq!(r["annotations"], json!({"pr": 42, "by": "deploy-bot"}));
    assert!(r["checks"].is_array() && r["decisions"].is_array() && r["notifications"].is_array());
    for field in ["started_at", "next_check_at"] {
        let t = r[field].as_str().unwrap_or_else(|| panic!("{field}: {r}"));
        assert!(t.ends_with('Z') && t.contains('T'), "{field} = {t}");
    }

    let second = h.post("/v1/releases", &body).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    assert_eq!(second.json["id"], id);
    assert!(second.headers.get(header::LOCATION).is_none());

    let shown = h.get(&format!("/v1/releases/{id}")).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.json["id"], id);
    assert!(shown.content_type().starts_with("application/json"));
}

#[tokio::test]
async fn a_newer_version_supersedes_the_watch_in_progress() {
    let h = Harness::new().await;
    let v1 = h.register("checkout", "v1").await;
    let v2 = h.register("checkout", "v2").await;
    assert_ne!(v1, v2);
    let old = h.get(&format!("/v1/releases/{v1}")).await;
    assert_eq!(old.json["status"], "superseded", "{}", old.text);
    assert_eq!(old.json["superseded_by"], v2.as_str());
    assert_eq!(old.json["next_check_at"], Value::Null);
    let new = h.get(&format!("/v1/releases/{v2}")).await;
    assert_eq!(new.json["status"], "watching");
}

#[tokio::test]
async fn curl_style_form_content_type_with_a_json_body_is_accepted() {
    let h = Harness::new().await;
    let r = h
        .send(
            Request::post("/v1/releases")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(r#"{"service":"checkout","version":"v9"}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn an_unknown_service_is_422() {
    let h = Harness::new().await;
    let r = h
        .post("/v1/releases", r#"{"service":"nosuch","version":"v1"}"#)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.error().contains("nosuch"), "{}", r.text);
    let r = h
        .post(
            "/v1/releases",
            r#"{"service":"checkout","version":"v1","environment":"staging"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
}

#[tokio::test]
async fn an_invalid_name_is_422() {
    let h = Harness::new().await;
    let r = h
        .post("/v1/releases", r#"{"service":"checkout","version":"  "}"#)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.error().contains("version"), "{}", r.text);
}

#[tokio::test]
async fn malformed_bodies_are_400_with_a_message_saying_what_and_where() {
    let h = Harness::new().await;
    let cases = [
        (r#"{"service": "checkout", "version": "#, "line 1 column"),
        ("service=checkout&version=v2", "line 1 column 1"),
        (r#"{"service":"checkout"}"#, "missing field `version`"),
        (
            r#"{"service":"checkout","version":2}"#,
            "`version`: invalid type: integer `2`",
        ),
        (
            r#"{"service":"checkout","version":"v2","colour":"red"}"#,
            "unknown field `colour`",
        ),
        (r#"{"service":"checkout","version":"v2"} {}"#, "trailing"),
        ("", "empty"),
        (r#"["checkout", "v2"]"#, "expected a JSON object"),
    ];
    for (body, expected) in cases {
        let r = h.post("/v1/releases", body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert!(
            r.error().contains(expected),
            "{body}: {:?} should mention {expected:?}",
            r.error()
        );
    }
    // Type and syntax errors carry serde_json's position.
    let r = h
        .post(
            "/v1/releases",
            "{\n  \"service\": \"checkout\",\n  \"version\": 2\n}",
        )
        .await;
    assert!(r.error().contains("line 3 column"), "{}", r.error());
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_413_json() {
    let h = Harness::new().await;
    let big = "x".repeat(MAX_BODY_BYTES + 1);

    // Declared too large: refused before reading.
    let r = h
        .send(
            Request::post("/v1/releases")
                .header(header::CONTENT_LENGTH, big.len())
                .body(Body::from(big.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert!(r.error().contains("1 MiB"), "{}", r.text);

    // No Content-Length: stopped while reading.
    let r = h
        .send(Request::post("/v1/releases").body(Body::from(big)).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert!(r.content_type().starts_with("application/json"));

    // Exactly 1 MiB is still accepted.
    let json = r#"{"service":"checkout","version":"v1"}"#;
    let padded = format!("{json}{}", " ".repeat(MAX_BODY_BYTES - json.len()));
    assert_eq!(padded.len(), MAX_BODY_BYTES);
    let r = h.post("/v1/releases", &padded).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

// ---------------------------------------------------------------- reading

#[tokio::test]
async fn an_id_that_does_not_exist_is_404_whatever_its_form() {
    let h = Harness::new().await;
    h.register("checkout", "v1").await;
    for (uri, id) in [
        ("/v1/releases/nope", "nope"),
        (
            "/v1/releases/0190a5c4-7d2e-7b3a-9c4f-2a1b3c4d5e6f",
            "0190a5c4-7d2e-7b3a-9c4f-2a1b3c4d5e6f",
        ),
        ("/v1/releases/..%2Fetc", "../etc"),
        ("/v1/releases/%27%20OR%201%3D1--", "' OR 1=1--"),
        ("/v1/releases/%FF%FE", "%FF%FE"),
    ] {
        let r = h.get(uri).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}: {}", r.text);
        assert_eq!(
            r.json,
            json!({ "error": format!("release {id} not found") })
        );
    }
    // An unencoded `..` is just another path: no route, still 404 JSON.
    let r = h.get("/v1/releases/../etc").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json["error"].is_string(), "{}", r.text);
    // The control routes too.
    for op in ["rollback", "abort", "ack"] {
        let r = h.post(&format!("/v1/releases/nope/{op}"), "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{op}: {}", r.text);
        assert_eq!(r.error(), "release nope not found");
    }
}

#[tokio::test]
async fn the_list_is_an_array_newest_first_and_filters() {
    let h = Harness::new().await;
    let empty = h.get("/v1/releases").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.json, json!([]));

    let a = h.register("checkout", "v1").await;
    let b = h.register("payments", "v1").await;
    let c = h.register("checkout", "v2").await; // supersedes `a`

    let all = h.get("/v1/releases").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let ids: Vec<&str> = all
        .json
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [c.as_str(), b.as_str(), a.as_str()]);
    assert!(all.json[0]["checks"].is_array(), "full release objects");

    let ids_of = |r: &Reply| -> Vec<String> {
        r.json
            .as_array()
            .unwrap_or_else(|| panic!("{}", r.text))
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let superseded = h.get("/v1/releases?status=superseded").await;
    assert_eq!(ids_of(&superseded), [a.as_str()]);
    let watching = h.get("/v1/releases?status=watching").await;
    assert_eq!(ids_of(&watching), [c.as_str(), b.as_str()]);
    let checkout = h
        .get("/v1/releases?service=checkout&environment=production")
        .await;
    assert_eq!(ids_of(&checkout), [c.as_str(), a.as_str()]);
    let one = h.get("/v1/releases?limit=1").await;
    assert_eq!(ids_of(&one), [c.as_str()]);
    let none = h.get("/v1/releases?service=nosuch").await;
    assert_eq!(none.json, json!([]));

    for bad in [
        "/v1/releases?status=bogus",
        "/v1/releases?limit=0",
        "/v1/releases?limit=-1",
        "/v1/releases?limit=many",
        "/v1/releases?limit=100000",
        "/v1/releases?colour=red",
    ] {
        let r = h.get(bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
        assert!(!r.error().is_empty());
    }
}

// ---------------------------------------------------------------- control

#[tokio::test]
async fn abort_then_abort_again_is_409() {
    let h = Harness::new().await;
    let id = h.register("checkout", "v1").await;
    let r = h.post(&format!("/v1/releases/{id}/abort"), "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["status"], "aborted");
    assert_eq!(r.json["next_check_at"], Value::Null);
    assert!(r.json["ended_at"].is_string());
    assert!(r.json["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["action"] == "aborted"));
    let again = h.post(&format!("/v1/releases/{id}/abort"), "").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(again.error().contains("aborted"), "{}", again.text);
}

#[tokio::test]
async fn ack_sets_acked_and_ignores_any_body() {
    let h = Harness::new().await;
    let id = h.register("checkout", "v1").await;
    let r = h
        .post(&format!("/v1/releases/{id}/ack"), "not even JSON")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["acked"], true);
    let shown = h.get(&format!("/v1/releases/{id}")).await;
    assert_eq!(shown.json["acked"], true);
    assert_eq!(shown.json["status"], "watching");
}

#[tokio::test]
async fn a_manual_rollback_is_202_runs_once_and_a_second_is_409() {
    let h = Harness::new().await;
    let id = h.register("payments", "v2").await;
    let r = h.post(&format!("/v1/releases/{id}/rollback"), "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.json["id"], id.as_str());
    assert_eq!(r.json["rollback"]["trigger"], "manual", "{}", r.text);
    let again = h.post(&format!("/v1/releases/{id}/rollback"), "").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);

    h.wait_for_status(&id, ReleaseStatus::RolledBack).await;
    let done = h.get(&format!("/v1/releases/{id}")).await;
    assert_eq!(done.json["status"], "rolled_back", "{}", done.text);
    let rb = &done.json["rollback"];
    assert_eq!(rb["state"], "succeeded", "{rb}");
    assert_eq!(rb["exit_code"], 0);
    assert!(rb["finished_at"].is_string(), "{rb}");

    let after = h.post(&format!("/v1/releases/{id}/rollback"), "").await;
    assert_eq!(after.status, StatusCode::CONFLICT, "{}", after.text);
}

#[tokio::test]
async fn a_rollback_without_a_hook_is_409() {
    let h = Harness::new().await;
    let id = h.register("checkout", "v1").await;
    let r = h.post(&format!("/v1/releases/{id}/rollback"), "").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.error().contains("no rollback hook"), "{}", r.text);
}

// ---------------------------------------------------------------- routing

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_both_json() {
    let h = Harness::new().await;
    let r = h.get("/v2/nothing").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().contains("/v2/nothing"));
    let r = h.call(Method::DELETE, "/v1/releases", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text);
    assert!(r.error().contains("DELETE"), "{}", r.text);
    let allow = r.headers[header::ALLOW].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let r = h.get("/v1/releases/x/abort").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text);
    let r = h.post("/healthz", "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text);
}

// ---------------------------------------------------------------- operations

#[tokio::test]
async fn healthz_readyz_and_metrics() {
    let h = Harness::new().await;
    let r = h.get("/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json, json!({"status": "ok"}));

    let r = h.get("/readyz").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    h.register("checkout", "v1").await;
    h.register("payments", "v1").await;
    let r = h.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "text/plain; version=0.0.4; charset=utf-8");
    assert!(r.text.contains("rg_ticks_total"), "{}", r.text);
    assert!(
        r.text
            .lines()
            .any(|l| l == r#"rg_releases{status="watching"} 2"#),
        "{}",
        r.text
    );
    assert!(r.text.contains(r#"rg_releases{status="superseded"} 0"#));
    assert!(r.text.contains("# TYPE rg_releases gauge"));
    assert!(r.text.ends_with('\n'));
    // The family appears once, before any `# EOF`.
    assert_eq!(r.text.matches("# TYPE rg_releases ").count(), 1);
    if let Some(eof) = r.text.find("# EOF") {
        assert!(r.text.find("rg_releases{").unwrap() < eof);
        assert_eq!(r.text[eof..].trim_end(), "# EOF");
    }

    // A scraper that asks for OpenMetrics gets it labelled as such.
    let r = h
        .send(
            Request::get("/metrics")
                .header(
                    header::ACCEPT,
                    "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;q=0.1",
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(
        r.content_type().starts_with("application/openmetrics-text"),
        "{}",
        r.content_type()
    );
}

#[tokio::test]
async fn readyz_is_503_until_the_guardian_has_started() {
    let h = Harness::build(false, false).await;
    let r = h.get("/readyz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert!(r.error().contains("not ready"));
    h.guardian.start().await.expect("start");
    let r = h.get("/readyz").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn a_store_failure_is_500_internal_error_without_detail() {
    let h = Harness::new().await;
    h.register("checkout", "v1").await;
    // Break the store for real: drop every table under its feet.
    let db = h.dir.path().join("guardian.db");
    let conn = rusqlite::Connection::open(&db).expect("open db");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!tables.is_empty());
    conn.execute_batch("PRAGMA foreign_keys = OFF;").unwrap();
    for t in &tables {
        conn.execute_batch(&format!("DROP TABLE IF EXISTS \"{t}\";"))
            .unwrap();
    }
    drop(conn);

    let r = h.get("/v1/releases").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    assert_eq!(r.json, json!({"error": "internal error"}));
    let r = h
        .post("/v1/releases", r#"{"service":"checkout","version":"v2"}"#)
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    assert_eq!(r.json, json!({"error": "internal error"}));
    let r = h.get("/readyz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    // Metrics are still served, without the store's gauges.
    let r = h.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("rg_ticks_total"));
}

// ---------------------------------------------------------------- auth

#[tokio::test]
async fn with_auth_v1_routes_need_a_token_with_the_right_scope() {
    let h = Harness::with_auth().await;
    let new = r#"{"service":"checkout","version":"v1"}"#;

    // No token: 401 with a challenge.
    let r = h.post("/v1/releases", new).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");
    assert!(!r.error().is_empty());
    let r = h.get("/v1/releases").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // A wrong token, or another scheme: 401.
    for value in [
        "Bearer not-a-token".to_string(),
        format!("Bearer {WRITE_TOKEN}x"),
        format!("Basic {WRITE_TOKEN}"),
    ] {
        let r = h
            .send(
                Request::get("/v1/releases")
                    .header(header::AUTHORIZATION, value.as_str())
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{value}: {}", r.text);
        assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");
    }

    // A read token may read but not write.
    let r = h
        .send(request(Method::GET, "/v1/releases", None, Some(READ_TOKEN)))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = h
        .send(request(
            Method::POST,
            "/v1/releases",
            Some(new),
            Some(READ_TOKEN),
        ))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.error().contains("write"), "{}", r.text);

    // A read+write token does both.
    let r = h
        .send(request(
            Method::POST,
            "/v1/releases",
            Some(new),
            Some(WRITE_TOKEN),
        ))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_string();
    let r = h
        .send(request(
            Method::GET,
            &format!("/v1/releases/{id}"),
            None,
            Some(WRITE_TOKEN),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = h
        .send(request(
            Method::POST,
            &format!("/v1/releases/{id}/ack"),
            None,
            Some(READ_TOKEN),
        ))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);

    // The operational routes stay open.
    for open in ["/healthz", "/readyz", "/metrics"] {
        let r = h.get(open).await;
        assert_eq!(r.status, StatusCode::OK, "{open}: {}", r.text);
    }
}

#[tokio::test]
async fn tokens_are_read_from_the_settings_in_force() {
    let h = Harness::new().await;
    let r = h.get("/v1/releases").await;
    assert_eq!(r.status, StatusCode::OK, "no [auth]: open");
    let ctx = h.guardian.context();
    ctx.replace_settings(settings_in(h.dir.path(), true));
    let r = h.get("/v1/releases").await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "after a reload with [auth]"
    );
    let r = h
        .send(request(Method::GET, "/v1/releases", None, Some(READ_TOKEN)))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

// ---------------------------------------------------------------- serving

#[tokio::test]
async fn serve_answers_over_tcp_and_stops_on_shutdown() {
    let h = Harness::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(listener, h.app.clone(), shutdown.clone()));

    let client = reqwest::Client::new();
    let r = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let r = client
        .post(format!("http://{addr}/v1/releases"))
        .body(r#"{"service":"checkout","version":"v1"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    drop(client);

    shutdown.cancel();
    tokio::time::timeout(DEADLINE, server)
        .await
        .expect("serve stops after shutdown")
        .expect("no panic")
        .expect("no I/O error");
}
