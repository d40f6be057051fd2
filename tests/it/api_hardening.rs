//! The API against attacks, for real: the daemon binary on loopback, raw TCP
//! connections and real HTTP requests.
//!
//! - a flood of idle, slow-header and slow-body connections under a low
//!   descriptor limit cannot starve the API or the daemon of descriptors;
//! - idle and slow-header connections are closed by their timeouts;
//! - cross-site writes (`Origin`) and DNS-rebinding requests (`Host`) get
//!   403 and change nothing;
//! - failed authentications are rate limited per address (429);
//! - oversized annotations (413), format characters in names (400),
//!   bounded echoes in errors, and the paged list.

use crate::support::{free_listen, wait_for, Daemon};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(15);
const WRITE_TOKEN: &str = "hardening-write-token-0123456789";

/// Writes a config (the API on a free loopback port, one service
/// `checkout`) with `server_extra` lines in `[server]` and `rest` after it;
/// returns (config path, listen).
fn config(dir: &Path, server_extra: &str, rest: &str) -> (PathBuf, String) {
    let listen = free_listen();
    let text = format!(
        "[server]\nlisten = \"{listen}\"\n{server_extra}\n[store]\npath = \"g.db\"\n[[services]]\nname = \"checkout\"\n{rest}"
    );
    let path = dir.join("guardian.toml");
    std::fs::write(&path, text).unwrap();
    (path, listen)
}

fn auth_section() -> String {
    format!(
        "[auth]\ntokens = [ {{ token = \"{WRITE_TOKEN}\", scopes = [\"read\", \"write\"] }} ]\n"
    )
}

/// A fresh client per call: no pooled connection hides a refused one.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// What the daemon's descriptors are (for failure messages).
fn fd_targets(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|t| t.display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// True once the server has closed `s` (EOF or an error), reading away
/// whatever it sent first; false while it is open.
fn closed_by_server(s: &TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match s.try_read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

async fn healthz(api: &str) -> Option<u16> {
    let r = client().get(format!("{api}/healthz")).send().await.ok()?;
    Some(r.status().as_u16())
}

/// Waits (at most `limit`) for the server to close `s`; how long it took.
async fn time_to_close(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

// ------------------------------------------------------------ connections

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_under_a_low_descriptor_limit_cannot_starve_the_api() {
    const CAP: usize = 32;
    const NOFILE: usize = 128;
    const SLOW_BODY: usize = 12;
    const IDLE: usize = 150;
    const SLOW_HEADER: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let (path, listen) = config(
        dir.path(),
        &format!("max_connections = {CAP}\nheader_read_timeout = \"1s\"\nidle_timeout = \"3s\""),
        "",
    );
    let d = Daemon::start(&path, &listen).await;
    let pid = d.pid();
    // A descriptor limit the flood alone would exceed without the cap.
    let limited = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={NOFILE}:{NOFILE}"),
        ])
        .status()
        .expect("prlimit (util-linux)");
    assert!(limited.success(), "prlimit --pid {pid}");
    let baseline = open_fds(pid);
    let addr: SocketAddr = listen.parse().unwrap();

    let flood_started = Instant::now();
    let mut flood: Vec<TcpStream> = Vec::new();
    // Slow bodies: a whole head, then a body that never completes.
    for _ in 0..SLOW_BODY {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST /v1/releases HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 4096\r\n\r\n{\"service\":",
        )
        .await
        .unwrap();
        flood.push(s);
    }
    // Idle connections: connect, send nothing.
    for _ in 0..IDLE {
        flood.push(TcpStream::connect(addr).await.unwrap());
    }
    // Slow headers: a head that is never finished, trickled below.
    let mut trickled = Vec::new();
    for _ in 0..SLOW_HEADER {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(b"GET /v1/releases HTTP/1.1\r\nx-slow: ").await;
        trickled.push(s);
    }
    let total = SLOW_BODY + IDLE + SLOW_HEADER;
    let opened_in = flood_started.elapsed();

    // During the flood: the API answers, probes and writes alike.
    for _ in 0..5 {
        assert_eq!(
            healthz(&d.api).await,
            Some(200),
            "/healthz during the flood"
        );
    }
    let r = client()
        .post(format!("{}/v1/releases", d.api))
        .body(r#"{"service":"checkout","version":"v1"}"#)
        .send()
        .await
        .expect("a deploy script's POST during the flood");
    assert_eq!(r.status().as_u16(), 201, "POST during the flood");

    // Over-cap connections are closed at once: at most CAP stay open
    // (counting the two requests above, which have ended).
    let still_open = wait_for("over-cap connections to be closed", DEADLINE, || {
        let open = flood
            .iter()
            .chain(&trickled)
            .filter(|s| !closed_by_server(s))
            .count();
        async move { (open <= CAP).then_some(open) }
    })
    .await;
    // At most CAP client connections, plus a few just closed by their
    // clients (the probes above) that the daemon has yet to drop.
    let fds_during = open_fds(pid);
    assert!(
        fds_during <= baseline + CAP + 8 && fds_during < NOFILE,
        "daemon descriptors: {fds_during} (baseline {baseline}, cap {CAP}): {:?}\n{}",
        fd_targets(pid),
        d.log()
    );

    // The slow headers keep trickling; the header-read timeout (1s) and the
    // idle timeout (3s) close everything but the requests in progress.
    let reaped_started = Instant::now();
    let mut left = wait_for("idle and slow connections to be closed", DEADLINE, || {
        for s in trickled.iter_mut() {
            let _ = s.try_write(b"a");
        }
        let open = flood
            .iter()
            .chain(&trickled)
            .filter(|s| !closed_by_server(s))
            .count();
        async move { (open <= SLOW_BODY).then_some(open) }
    })
    .await;
    let reaped_in = reaped_started.elapsed();
    assert_eq!(healthz(&d.api).await, Some(200));

    // The flood stops: every descriptor comes back, the API answers.
    let peak_fds = fds_during;
    drop(flood);
    drop(trickled);
    let fds_after = wait_for("the daemon's descriptors to come back", DEADLINE, || {
        let n = open_fds(pid);
        async move { (n <= baseline + 1).then_some(n) }
    })
    .await;
    assert_eq!(healthz(&d.api).await, Some(200), "/healthz after the flood");
    let r = client()
        .post(format!("{}/v1/releases", d.api))
        .body(r#"{"service":"checkout","version":"v2"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let log = d.log();
    assert!(
        !log.contains("cannot accept connections"),
        "the daemon ran out of descriptors:\n{log}"
    );
    assert!(log.contains("connection cap reached"), "{log}");
    left = left.min(SLOW_BODY);
    eprintln!(
        "flood: {total} connections ({SLOW_BODY} slow-body, {IDLE} idle, {SLOW_HEADER} slow-header) opened in {opened_in:?} \
         against max_connections={CAP} under nofile={NOFILE}; open after admission: {still_open}; \
         daemon fds baseline {baseline}, during {peak_fds}, after {fds_after}; \
         timeouts left {left} (the slow bodies) after {reaped_in:?}"
    );
}

#[tokio::test]
async fn over_the_cap_with_every_connection_busy_a_newcomer_gets_503_and_is_closed() {
    const CAP: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let (path, listen) = config(dir.path(), &format!("max_connections = {CAP}"), "");
    let d = Daemon::start(&path, &listen).await;
    let addr: SocketAddr = listen.parse().unwrap();
    // CAP requests in progress: `100 Continue` says the handler is reading
    // the body (which never comes).
    let mut busy = Vec::new();
    for _ in 0..CAP {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST /v1/releases HTTP/1.1\r\nhost: 127.0.0.1\r\nexpect: 100-continue\r\ncontent-length: 100\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .expect("100 Continue in time")
            .unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        busy.push(s);
    }
    // One more: a 503 and the connection closed at once, request unread.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, extra.read_to_end(&mut answer))
        .await
        .expect("the over-cap connection is closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
        "{answer}"
    );
    // A request in progress ends: room again.
    drop(busy.pop());
    let status = wait_for("/healthz once a connection is free", DEADLINE, || async {
        healthz(&d.api).await.filter(|s| *s == 200)
    })
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn idle_and_slow_header_connections_are_closed_by_their_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let (path, listen) = config(
        dir.path(),
        "header_read_timeout = \"1s\"\nidle_timeout = \"2s\"",
        "",
    );
    let d = Daemon::start(&path, &listen).await;
    let addr: SocketAddr = listen.parse().unwrap();

    // Idle: nothing sent.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    // Slow header: the first bytes now, the rest never.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .await
        .unwrap();
    // Kept alive after a response, then idle.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let slow_closed = time_to_close(&mut slow, Duration::from_secs(5))
        .await
        .expect("slow header closed");
    let idle_closed = time_to_close(&mut idle, Duration::from_secs(5))
        .await
        .expect("idle closed");
    let kept_closed = time_to_close(&mut kept, Duration::from_secs(5))
        .await
        .expect("kept-alive closed");
    assert!(
        slow_closed >= Duration::from_millis(900) && slow_closed < Duration::from_millis(1900),
        "slow header closed after {slow_closed:?}"
    );
    // `idle` was waited for after `slow`: its total time is about 2s.
    assert!(
        slow_closed + idle_closed >= Duration::from_millis(1900)
            && slow_closed + idle_closed < Duration::from_secs(4),
        "idle closed after {:?}",
        slow_closed + idle_closed
    );
    assert!(kept_closed < Duration::from_secs(3), "{kept_closed:?}");
    assert_eq!(healthz(&d.api).await, Some(200));
}

// ------------------------------------------------------------ origin and host

#[tokio::test]
async fn cross_site_writes_and_rebinding_hosts_are_403_and_register_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, listen) = config(dir.path(), "allowed_hosts = [\"guardian.internal\"]", "");
    let d = Daemon::start(&path, &listen).await;
    let port = listen.rsplit_once(':').unwrap().1;
    let url = format!("{}/v1/releases", d.api);
    let new = r#"{"service":"checkout","version":"v1"}"#;

    // What a web page can make a browser send: a "simple" text/plain POST.
    for origin in [
        "http://evil.example",
        "null",
        &format!("http://127.0.0.1:{}", port.parse::<u16>().unwrap() + 1),
    ] {
        let r = client()
            .post(&url)
            .header("content-type", "text/plain")
            .header("origin", origin)
            .body(new)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "Origin: {origin}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("cross-origin"),
            "{body}"
        );
    }
    assert_eq!(d.get("/v1/releases").await, json!([]), "nothing registered");

    // DNS rebinding: the page's own name pointed at 127.0.0.1.
    for host in [
        "evil.example",
        &format!("evil.example:{port}"),
        "127.0.0.1.evil.example",
    ] {
        let r = client()
            .get(&url)
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "Host: {host}");
        let r = client()
            .post(&url)
            .header("host", host)
            .body(new)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "Host: {host}");
    }
    assert_eq!(d.get("/v1/releases").await, json!([]), "nothing registered");

    // curl and deploy scripts: no Origin, a loopback or allowed Host.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "guardian.internal".into(),
    ] {
        let r = client()
            .get(&url)
            .header("host", host.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "Host: {host}");
    }
    let r = client().post(&url).body(new).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201, "curl-like POST");
    // A same-origin browser write is fine too.
    let r = client()
        .post(&url)
        .header("origin", format!("http://127.0.0.1:{port}"))
        .body(r#"{"service":"checkout","version":"v2"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
}

#[tokio::test]
async fn with_auth_any_host_is_fine_but_cross_site_writes_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let (path, listen) = config(dir.path(), "", &auth_section());
    let d = Daemon::start(&path, &listen).await;
    let url = format!("{}/v1/releases", d.api);
    let r = client()
        .get(&url)
        .header("host", "guardian.example.com")
        .bearer_auth(WRITE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = client()
        .post(&url)
        .header("origin", "http://evil.example")
        .bearer_auth(WRITE_TOKEN)
        .body(r#"{"service":"checkout","version":"v1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

// ------------------------------------------------------------ auth

#[tokio::test]
async fn failed_authentications_are_rate_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let (path, listen) = config(dir.path(), "", &auth_section());
    let d = Daemon::start(&path, &listen).await;
    let url = format!("{}/v1/releases", d.api);
    // Guessing: the first ten wrong tokens get 401.
    for i in 0..10 {
        let r = client()
            .get(&url)
            .bearer_auth(format!("guess-{i:02}-aaaaaaaaaaaaaaaaaaaaaaaa"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "guess {i}");
    }
    // Then 429 with Retry-After, whatever the token (not even looked at).
    for token in ["guess-11-aaaaaaaaaaaaaaaaaaaaaaaa", WRITE_TOKEN] {
        let r = client().get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 429);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=6).contains(&retry), "Retry-After: {retry}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("too many"),
            "{body}"
        );
    }
    // Probes are not authenticated, so not limited.
    assert_eq!(healthz(&d.api).await, Some(200));
}

// ------------------------------------------------------------ bodies and lists

#[tokio::test]
async fn requests_are_bounded_in_what_they_store_and_echo() {
    let dir = tempfile::tempdir().unwrap();
    let (path, listen) = config(dir.path(), "", "");
    let d = Daemon::start(&path, &listen).await;

    // 70 KiB of annotations: 413 with a JSON error, nothing registered.
    let big = json!({"service": "checkout", "version": "v1",
                     "annotations": {"blob": "x".repeat(70 * 1024)}});
    let (code, body) = d.post("/v1/releases", big).await;
    assert_eq!(code, 413, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("annotations"),
        "{body}"
    );
    assert_eq!(d.get("/v1/releases").await, json!([]));

    // A right-to-left override in a name: 400 naming the character.
    let (code, body) = d
        .post(
            "/v1/releases",
            json!({"service": "checkout", "version": "v1\u{202e}lanif"}),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("U+202E"), "{body}");
    assert_eq!(d.get("/v1/releases").await, json!([]));

    // Errors quote at most 64 characters of what they were sent.
    let (code, body) = d
        .post(
            "/v1/releases",
            json!({"service": "z".repeat(250), "version": "v1"}),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains(&format!("\"{}…\"", "z".repeat(64))), "{msg}");
    let long = "z".repeat(5000);
    let r = client()
        .get(format!("{}/v1/releases/{long}", d.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let body: Value = r.json().await.unwrap();
    let msg = body["error"].as_str().unwrap();
    assert_eq!(msg, format!("release {}… not found", "z".repeat(64)));
}

#[tokio::test]
async fn the_list_pages_with_a_cursor_and_leaves_annotations_out() {
    let dir = tempfile::tempdir().unwrap();
    let (path, listen) = config(dir.path(), "", "");
    let d = Daemon::start(&path, &listen).await;
    let mut ids = Vec::new();
    for v in 1..=5 {
        let (code, body) = d
            .post(
                "/v1/releases",
                json!({"service": "checkout", "version": format!("v{v}"),
                       "annotations": {"commit": format!("c{v}")}}),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        assert_eq!(body["annotations"]["commit"], format!("c{v}"));
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    ids.reverse(); // newest first

    let mut seen = Vec::new();
    let mut url = format!("{}/v1/releases?service=checkout&limit=2", d.api);
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 5, "the cursor must end");
        let r = client().get(&url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let next = r
            .headers()
            .get("next-cursor")
            .map(|v| v.to_str().unwrap().to_string());
        let page: Value = r.json().await.unwrap();
        let page = page.as_array().expect("the body is still an array");
        for item in page {
            assert!(item.get("annotations").is_none(), "{item}");
            assert!(item["checks"].is_array());
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match next {
            Some(c) => url = format!("{}/v1/releases?service=checkout&limit=2&cursor={c}", d.api),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every release once, newest first");
    assert_eq!(pages, 3);
    // One release still shows its annotations.
    let one = d.get(&format!("/v1/releases/{}", ids[0])).await;
    assert_eq!(one["annotations"]["commit"], "c5");
    // A cursor the API did not give out: 400.
    let r = client()
        .get(format!("{}/v1/releases?cursor=not-a-cursor", d.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

// ------------------------------------------------------------ overload

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_while_every_request_slot_is_taken() {
    use axum::body::Body;
    use release_guardian::api::{router, ApiState, MAX_CONCURRENT_REQUESTS};
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    let settings = crate::support::settings(
        dir.path(),
        "[store]\npath = \"g.db\"\n[[services]]\nname = \"checkout\"\n",
    );
    let store =
        release_guardian::store::sqlite::SqliteStore::open(&dir.path().join("g.db")).unwrap();
    let ctx = release_guardian::context::Context::new(
        settings,
        std::sync::Arc::new(store),
        std::sync::Arc::new(release_guardian::clock::SystemClock),
    );
    let guardian = release_guardian::scheduler::Guardian::new(ctx.clone());
    guardian.start().await.unwrap();
    let app = router(ApiState::new(guardian, ctx));
    let stuck = || {
        axum::http::Request::post("/v1/releases")
            .body(Body::from_stream(futures_util::stream::pending::<
                Result<axum::body::Bytes, std::io::Error>,
            >()))
            .unwrap()
    };
    // Every slot held by a request whose body never comes (a few more than
    // the slots: one that loses a race with the probe below is shed).
    let mut held = Vec::new();
    for _ in 0..MAX_CONCURRENT_REQUESTS + 16 {
        held.push(tokio::spawn(app.clone().oneshot(stuck())));
    }
    let shed = wait_for("the API to shed load", DEADLINE, || {
        let app = app.clone();
        async move {
            let r = app
                .oneshot(
                    axum::http::Request::get("/v1/releases")
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            (r.status() == 503).then_some(r)
        }
    })
    .await;
    assert_eq!(shed.headers()["retry-after"], "1");
    for probe in ["/healthz", "/readyz", "/metrics"] {
        let r = app
            .clone()
            .oneshot(axum::http::Request::get(probe).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{probe} while overloaded");
    }
    // A wrong method on a probe route is still a JSON 405.
    let r = app
        .clone()
        .oneshot(
            axum::http::Request::post("/healthz")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(body["error"].as_str().unwrap().contains("POST"), "{body}");
    for h in held {
        h.abort();
    }
}
