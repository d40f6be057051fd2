//! What the guardian sends over a watch's life, end to end through a real
//! `Guardian`, real probes of a switchable local service, the real outbox
//! and local receivers: a `recovered` message follows the page it closes
//! (even to a critical-only notifier) and goes nowhere else; a watch's end
//! resolves what is still open; `repeat_every` reminds at its period; the
//! rollback hook's `url` form POSTs once, signed, and records the answer;
//! `dry_run` runs nothing. And the real daemon, killed with `-9` while
//! messages wait, delivers each of them once after its restart.

use crate::support::{serve, settings, wait_for, Daemon, Receiver, Reply};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use release_guardian::clock::SystemClock;
use release_guardian::context::Context;
use release_guardian::model::{NewRelease, ReleaseStatus};
use release_guardian::scheduler::Guardian;
use release_guardian::store::sqlite::SqliteStore;
use release_guardian::store::{ReleaseFilter, Store};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A service whose `/health` answers 200 while `healthy`, else 500.
struct Switch {
    addr: std::net::SocketAddr,
    healthy: Arc<AtomicBool>,
}

impl Switch {
    async fn start() -> Self {
        let healthy = Arc::new(AtomicBool::new(true));
        let app = axum::Router::new()
            .route(
                "/health",
                get(|State(h): State<Arc<AtomicBool>>| async move {
                    if h.load(Ordering::SeqCst) {
                        StatusCode::OK
                    } else {
                        StatusCode::INTERNAL_SERVER_ERROR
                    }
                }),
            )
            .with_state(healthy.clone());
        Self {
            addr: serve(app).await,
            healthy,
        }
    }

    fn set(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }
}

/// A `[notifiers.NAME]` webhook to `r` with `extra` keys.
fn hook(name: &str, r: &Receiver, extra: &str) -> String {
    format!(
        "[notifiers.{name}]\nkind = \"webhook\"\nurl = \"{}\"\ntimeout = \"2s\"\n{extra}",
        r.webhook_url()
    )
}

/// A guardian over a fresh store in `dir`, service `checkout` probing
/// `switch` every 300 ms for a minute: `warning` after one failed probe,
/// `critical` after six (time enough to see the warning and heal); `notifiers` (config text) are its `notify`
/// list; `rollback` is its `[services.rollback]` body, if any.
async fn guardian(
    dir: &std::path::Path,
    switch: &Switch,
    notifiers: &[(&str, String)],
    rollback: Option<&str>,
) -> (Arc<Guardian>, Arc<dyn Store>) {
    std::fs::write(
        dir.join("rules.yaml"),
        "checks:\n  - name: live\n    source: probe\n    probe: live\n    \
         warning: { failures: 1 }\n    critical: { failures: 6 }\n",
    )
    .unwrap();
    let names: Vec<String> = notifiers.iter().map(|(n, _)| format!("{n:?}")).collect();
    let mut toml = format!(
        "[store]\npath = \"g.db\"\n{}\n[[services]]\nname = \"checkout\"\nrules = [\"rules.yaml\"]\nnotify = [{}]\n  [services.cadence]\n  tiers = [ {{ until = \"60s\", every = \"300ms\" }} ]\n  [[services.probes]]\n  name = \"live\"\n  url = \"http://{}/health\"\n  timeout = \"2s\"\n",
        notifiers.iter().map(|(_, t)| t.as_str()).collect::<String>(),
        names.join(", "),
        switch.addr
    );
    if let Some(r) = rollback {
        toml.push_str(&format!("  [services.rollback]\n{r}"));
    }
    let settings = settings(dir, &toml);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("g.db")).unwrap());
    let g = Guardian::new(Context::new(settings, store.clone(), Arc::new(SystemClock)));
    g.start().await.unwrap();
    (g, store)
}

async fn register(g: &Arc<Guardian>) -> String {
    g.register(NewRelease {
        service: "checkout".into(),
        version: "v2".into(),
        previous_version: Some("v1".into()),
        environment: None,
        annotations: Default::default(),
    })
    .await
    .unwrap()
    .release
    .id
}

/// `event level` of every message `r` accepted, in order.
fn events(r: &Receiver) -> Vec<String> {
    r.accepted()
        .iter()
        .map(|b| {
            format!(
                "{} {}",
                b["event"].as_str().unwrap_or("?"),
                b["level"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

/// Waits until `r` has accepted a message `event level` (as [`events`]
/// writes it) `n` times.
async fn wait_event(r: &Receiver, what: &str, n: usize) {
    wait_for(what, Duration::from_secs(20), || async move {
        (events(r).iter().filter(|e| *e == what).count() >= n).then_some(())
    })
    .await;
}

/// A registration whose caller goes away once it is queued (a client that
/// disconnects, a request timeout) still does everything that follows it:
/// it is committed, its watch starts, the watch it supersedes stops, and
/// that watch's end is announced.
#[tokio::test(flavor = "multi_thread")]
async fn a_registration_whose_caller_goes_away_still_supersedes_and_announces() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::start().await;
    let chat = Receiver::start(Reply::Ok).await;
    let chatty = hook("chat", &chat, "min_severity = \"info\"\n");
    let (g, store) = guardian(dir.path(), &switch, &[("chat", chatty)], None).await;
    let v2 = register(&g).await;
    assert_eq!(g.running_watches(), 1);
    // Polled once (which queues it), then dropped.
    let v3 = NewRelease {
        service: "checkout".into(),
        version: "v3".into(),
        previous_version: None,
        environment: None,
        annotations: Default::default(),
    };
    // Exactly one poll (a zero timeout may poll it again before its timer
    // fires, and a fast machine answers by then).
    let mut registering = Box::pin(g.register(v3));
    let first = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::future::Future::poll(registering.as_mut(), cx))
    })
    .await;
    assert!(first.is_pending(), "answered on its first poll: {first:?}");
    drop(registering);

    let v3 = wait_for("v3 to be written", Duration::from_secs(20), || {
        let store = store.clone();
        async move {
            let filter = ReleaseFilter {
                service: Some("checkout".into()),
                ..ReleaseFilter::default()
            };
            let all = store.list_releases(&filter).await.ok()?;
            all.into_iter().find(|r| r.version == "v3")
        }
    })
    .await;
    assert_eq!(v3.status, ReleaseStatus::Watching);
    let old = store.get_release(&v2).await.unwrap().unwrap();
    assert_eq!(old.status, ReleaseStatus::Superseded);
    assert_eq!(old.superseded_by.as_deref(), Some(v3.id.as_str()));
    wait_event(&chat, "summary -", 1).await;
    let summary = chat
        .accepted()
        .into_iter()
        .find(|b| b["event"] == "summary")
        .unwrap();
    assert_eq!(summary["release_id"], v2.as_str(), "{summary}");
    assert!(
        summary["reason"]
            .as_str()
            .unwrap()
            .contains("watch ended: superseded"),
        "{summary}"
    );
    // One watch runs, v3's: v2's stopped.
    wait_for("v2's watch to stop", Duration::from_secs(20), || async {
        (g.running_watches() == 1).then_some(())
    })
    .await;
    assert_eq!(
        g.abort(&v3.id).await.unwrap().status,
        ReleaseStatus::Aborted
    );
    wait_for("v3's watch to stop", Duration::from_secs(20), || async {
        (g.running_watches() == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recovered_follows_the_page_and_the_end_resolves_what_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::start().await;
    let chat = Receiver::start(Reply::Ok).await;
    let pager = Receiver::start(Reply::Ok).await;
    let notifiers = [
        ("chat", hook("chat", &chat, "")),
        (
            "pager",
            hook("pager", &pager, "min_severity = \"critical\"\n"),
        ),
    ];
    let (g, store) = guardian(dir.path(), &switch, &notifiers, None).await;
    let id = register(&g).await;

    // A warning only: the chat is paged and told of the recovery; the
    // critical-only pager hears of neither. (Healed as soon as the store
    // has the warning, well before the sixth failure.)
    switch.set(false);
    wait_for("the check at warning", Duration::from_secs(20), || {
        let (store, id) = (store.clone(), id.clone());
        async move {
            let checks = store.load_checks(&id).await.ok()?;
            (checks.first()?.state.as_str() == "warning").then_some(())
        }
    })
    .await;
    switch.set(true);
    wait_event(&chat, "level_changed warning", 1).await;
    wait_event(&chat, "recovered ok", 1).await;
    assert!(pager.accepted().is_empty(), "{:?}", events(&pager));

    // Critical: the pager is paged, and its `recovered` (severity info,
    // below its min_severity) still reaches it.
    switch.set(false);
    wait_event(&pager, "level_changed critical", 1).await;
    switch.set(true);
    wait_event(&pager, "recovered ok", 1).await;
    wait_event(&chat, "recovered ok", 2).await;
    assert_eq!(
        events(&pager),
        ["level_changed critical", "recovered ok"],
        "the pager gets the page and its recovery, nothing else"
    );

    // Breaching at the watch's end (an abort here): both were paged about
    // the open incident, both get `resolved`; the summary goes by severity
    // (warning: something was paged), so not to the critical-only pager.
    switch.set(false);
    wait_event(&pager, "level_changed critical", 2).await;
    g.abort(&id).await.unwrap();
    wait_event(&pager, "resolved critical", 1).await;
    wait_event(&chat, "resolved critical", 1).await;
    wait_event(&chat, "summary -", 1).await;
    let resolved: Vec<Value> = pager
        .accepted()
        .into_iter()
        .filter(|b| b["event"] == "resolved")
        .collect();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0]["check"], "live");
    assert!(
        !events(&pager).contains(&"summary -".to_string()),
        "{:?}",
        events(&pager)
    );
    let summary = chat
        .accepted()
        .into_iter()
        .find(|b| b["event"] == "summary")
        .unwrap();
    assert!(
        summary["reason"]
            .as_str()
            .unwrap()
            .contains("watch ended: aborted; checks: live critical"),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reminders_repeat_while_the_level_holds() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::start().await;
    let chat = Receiver::start(Reply::Ok).await;
    let quiet = Receiver::start(Reply::Ok).await;
    let notifiers = [
        ("chat", hook("chat", &chat, "repeat_every = \"1s\"\n")),
        ("quiet", hook("quiet", &quiet, "")),
    ];
    let (g, _store) = guardian(dir.path(), &switch, &notifiers, None).await;
    let _id = register(&g).await;
    switch.set(false);
    wait_event(&chat, "reminder critical", 2).await;
    let at = |event: &str, level: &str| -> Vec<i64> {
        chat.accepted()
            .iter()
            .filter(|b| b["event"] == event && b["level"] == level)
            .map(|b| release_guardian::model::parse_time(b["at"].as_str().unwrap()).unwrap())
            .collect()
    };
    // At the period, from the instant the level was entered; the
    // escalation to critical starts the count again.
    let critical = at("level_changed", "critical")[0];
    let reminders = at("reminder", "critical");
    assert_eq!(reminders[0], critical + 1_000, "{critical} {reminders:?}");
    for pair in reminders.windows(2) {
        assert_eq!(pair[1] - pair[0], 1_000, "{reminders:?}");
    }
    for w in at("reminder", "warning") {
        assert!(w < critical, "a warning reminder after the escalation");
    }
    assert!(
        !events(&quiet).iter().any(|e| e.starts_with("reminder")),
        "a notifier without repeat_every is not reminded"
    );
}

/// One request as the rollback receiver got it: headers, raw body.
type Posted = (HeaderMap, Vec<u8>);

/// A rollback receiver: records each request and answers with `status`.
#[derive(Clone, Default)]
struct RollbackSink {
    got: Arc<Mutex<Vec<Posted>>>,
    status: Arc<AtomicU16>,
}

impl RollbackSink {
    async fn start(status: u16) -> (Self, String) {
        let sink = Self::default();
        sink.status.store(status, Ordering::SeqCst);
        let app =
            axum::Router::new()
                .route(
                    "/rollback",
                    post(
                        |State(s): State<RollbackSink>,
                         headers: HeaderMap,
                         body: axum::body::Bytes| async move {
                            s.got.lock().unwrap().push((headers, body.to_vec()));
                            let code =
                                StatusCode::from_u16(s.status.load(Ordering::SeqCst)).unwrap();
                            (code, "rollback answer body")
                        },
                    ),
                )
                .with_state(sink.clone());
        let url = format!("http://{}/rollback", serve(app).await);
        (sink, url)
    }

    fn requests(&self) -> Vec<Posted> {
        self.got.lock().unwrap().clone()
    }
}

/// Rolls release `id` back by hand and waits for it to end.
async fn rollback_and_wait(g: &Arc<Guardian>, store: &Arc<dyn Store>, id: &str) -> ReleaseStatus {
    g.manual_rollback(id).await.unwrap();
    wait_for("the rollback to end", Duration::from_secs(20), || {
        let (store, id) = (store.clone(), id.to_string());
        async move {
            let r = store.get_release(&id).await.ok()??;
            r.status.is_terminal().then_some(r.status)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rollback_url_gets_one_signed_post_and_2xx_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::start().await;
    let (sink, url) = RollbackSink::start(200).await;
    std::fs::write(dir.path().join("rollback.secret"), "s3cret-key\n").unwrap();
    let body = format!("  url = \"{url}\"\n  secret_file = \"rollback.secret\"\n  timeout = \"5s\"\n  mode = \"manual\"\n");
    let (g, store) = guardian(dir.path(), &switch, &[], Some(&body)).await;
    let id = register(&g).await;
    assert_eq!(
        rollback_and_wait(&g, &store, &id).await,
        ReleaseStatus::RolledBack
    );
    let got = sink.requests();
    assert_eq!(got.len(), 1, "exactly one POST");
    let (headers, raw) = &got[0];
    let signature = headers["x-guardian-signature"].to_str().unwrap();
    let hex = signature.strip_prefix("sha256=").expect("sha256=HEX");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret-key");
    ring::hmac::verify(&key, raw, &bytes).expect("the HMAC over the raw body verifies");
    let payload: Value = serde_json::from_slice(raw).unwrap();
    assert_eq!(payload["release_id"], id.as_str());
    assert_eq!(payload["version"], "v2");
    assert_eq!(payload["previous_version"], "v1");
    let d = store.release_details(&id).await.unwrap().unwrap();
    let rb = d.rollback.unwrap();
    assert_eq!(rb.exit_code, Some(200));
    assert!(rb.output.unwrap().contains("rollback answer body"));
    // At most once: a second request is refused and nothing is posted.
    assert!(g.manual_rollback(&id).await.is_err());
    assert_eq!(sink.requests().len(), 1);
    // The secret never reaches the record.
    let all = format!("{:?}", store.release_details(&id).await.unwrap());
    assert!(!all.contains("s3cret-key"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_url_answering_500_ends_rollback_failed() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::start().await;
    let (sink, url) = RollbackSink::start(500).await;
    let body = format!("  url = \"{url}\"\n  timeout = \"5s\"\n  mode = \"manual\"\n");
    let (g, store) = guardian(dir.path(), &switch, &[], Some(&body)).await;
    let id = register(&g).await;
    assert_eq!(
        rollback_and_wait(&g, &store, &id).await,
        ReleaseStatus::RollbackFailed
    );
    let got = sink.requests();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].0.get("x-guardian-signature").is_none(),
        "no secret, no signature"
    );
    let d = store.release_details(&id).await.unwrap().unwrap();
    let failed = d
        .decisions
        .iter()
        .find(|x| x.action.as_str() == "rollback_failed")
        .unwrap();
    assert!(
        failed
            .reason
            .contains("the rollback url answered HTTP 500 after"),
        "{}",
        failed.reason
    );
    let rb = d.rollback.unwrap();
    assert_eq!(rb.exit_code, Some(500));
    assert!(rb.output.unwrap().contains("rollback answer body"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_records_what_would_have_run_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::start().await;
    let (sink, url) = RollbackSink::start(200).await;
    let chat = Receiver::start(Reply::Ok).await;
    let body = format!("  url = \"{url}\"\n  dry_run = true\n  mode = \"manual\"\n");
    let notifiers = [("chat", hook("chat", &chat, ""))];
    let (g, store) = guardian(dir.path(), &switch, &notifiers, Some(&body)).await;
    let id = register(&g).await;
    assert_eq!(
        rollback_and_wait(&g, &store, &id).await,
        ReleaseStatus::RollbackFailed
    );
    assert!(sink.requests().is_empty(), "a dry run posts nothing");
    let d = store.release_details(&id).await.unwrap().unwrap();
    let started = d
        .decisions
        .iter()
        .find(|x| x.action.as_str() == "rollback_started")
        .unwrap();
    assert!(
        started
            .reason
            .contains(&format!("would have run the rollback hook `POST {url}`")),
        "{}",
        started.reason
    );
    assert!(d.rollback.unwrap().output.unwrap().contains("dry run"));
    // And it pages: people must roll back by hand.
    wait_event(&chat, "rollback_recommended rollback", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_waiting_when_the_daemon_is_killed_are_delivered_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let down = Receiver::start(Reply::Unavailable).await;
    let (config, listen) = crate::support::minimal_config(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{}notify = [\"chat\"]\n  [services.rollback]\n  command = [\"/bin/true\"]\n  mode = \"manual\"\n{}",
            text,
            hook("chat", &down, "min_severity = \"info\"\n")
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&config, &listen).await;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/v1/releases", daemon.api))
        .json(&serde_json::json!({"service": "checkout", "version": "v2"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let rb = http
        .post(format!("{}/v1/releases/{id}/rollback", daemon.api))
        .send()
        .await
        .unwrap();
    assert!(rb.status().is_success(), "{}", rb.text().await.unwrap());
    let release_url = format!("{}/v1/releases/{id}", daemon.api);
    // Every message of the rollback queued; the first tried (the others
    // wait behind it, in order).
    let queued = wait_for(
        "the rollback's messages to be queued and tried",
        Duration::from_secs(20),
        || {
            let (http, url) = (http.clone(), release_url.clone());
            async move {
                let r: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
                let ns = r["notifications"].as_array()?.clone();
                (r["status"] == "rolled_back"
                    && ns.iter().any(|n| n["event"] == "summary")
                    && ns.iter().all(|n| n["status"] == "pending")
                    && ns.iter().any(|n| n["attempts"].as_u64() >= Some(1)))
                .then_some(ns.len())
            }
        },
    )
    .await;
    // Visible while they wait: in /metrics and in `release-guardian status`.
    let metrics = http
        .get(format!("{}/metrics", daemon.api))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "rg_notifications_pending{{notifier=\"chat\"}} {queued}\n"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("rg_notifications_total{notifier=\"chat\",outcome=\"retried\"}"),
        "{metrics}"
    );
    let status = std::process::Command::new(crate::support::bin())
        .args(["status", "--url", &daemon.api])
        .output()
        .unwrap();
    let shown = crate::support::stdout_and_stderr(&status);
    assert!(shown.contains(&format!("{queued} pending")), "{shown}");
    let status = std::process::Command::new(crate::support::bin())
        .args(["status", "--url", &daemon.api, &id])
        .output()
        .unwrap();
    let shown = crate::support::stdout_and_stderr(&status);
    assert!(
        shown.contains(&format!("DELIVERY chat: 0 failed, {queued} pending"))
            && shown.contains("webhook answered HTTP 503"),
        "{shown}"
    );
    daemon.kill9();
    assert!(down.accepted().is_empty());
    down.set_reply(Reply::Ok);
    let daemon = Daemon::start(&config, &listen).await;
    wait_for("every message delivered", Duration::from_secs(30), || {
        let (http, url) = (http.clone(), format!("{}/v1/releases/{id}", daemon.api));
        async move {
            let r: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
            r["notifications"]
                .as_array()?
                .iter()
                .all(|n| n["status"] == "sent")
                .then_some(())
        }
    })
    .await;
    let mut keys: Vec<String> = down
        .accepted()
        .iter()
        .map(|b| b["dedup_key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), queued, "{keys:?}");
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), queued, "a message was delivered twice");
}
