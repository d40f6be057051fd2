//! The outbox over a real store and real HTTP receivers: a black-holed
//! receiver delays only its own messages, `Retry-After` is honoured and
//! capped, and an ack during a delivery keeps the message suppressed.

mod common;

use axum::http::StatusCode;
use axum::routing::post;
use release_guardian::actions::notify::outbox::{Outbox, MAX_BACKOFF};
use release_guardian::app::Context;
use release_guardian::clock::{Clock, SystemClock};
use release_guardian::config::{Config, NotifierSettings, Secret, Settings};
use release_guardian::model::{DeliveryStatus, Message, NewRelease, NotificationRecord, Severity};
use release_guardian::store::sqlite::SqliteStore;
use release_guardian::store::Store;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn webhook(url: String) -> NotifierSettings {
    NotifierSettings::Webhook {
        url: Secret::new(url),
        min_severity: Severity::Info,
        timeout: Duration::from_secs(2),
    }
}

async fn setup(
    dir: &std::path::Path,
    notifiers: BTreeMap<String, NotifierSettings>,
) -> (Arc<Outbox>, Arc<dyn Store>) {
    let settings = Settings {
        file: dir.join("guardian.toml"),
        config: Config::default(),
        store_path: dir.join("g.db"),
        services: vec![],
        notifiers,
        tokens: vec![],
        warnings: vec![],
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&settings.store_path).unwrap());
    let new = NewRelease {
        service: "checkout".into(),
        version: "v2".into(),
        previous_version: None,
        environment: None,
        annotations: Default::default(),
    };
    store
        .register_release(&new, "production", "r1", 1_000, 2_000, &superseded())
        .await
        .unwrap();
    let ctx = Context::new(settings, store.clone(), Arc::new(SystemClock));
    (Outbox::new(ctx), store)
}

fn row(key: &str, notifier: &str) -> NotificationRecord {
    let now = SystemClock.now();
    NotificationRecord {
        key: key.into(),
        notifier: notifier.into(),
        message: Message {
            dedup_key: key.into(),
            release_id: "r1".into(),
            service: "checkout".into(),
            environment: "production".into(),
            version: "v2".into(),
            previous_version: None,
            severity: Severity::Critical,
            event: "level_changed".into(),
            check: Some("error_rate".into()),
            level: None,
            value: Some(0.2),
            reason: "test".into(),
            at: now,
        },
        status: DeliveryStatus::Pending,
        attempts: 0,
        last_error: None,
        created_at: now,
        sent_at: None,
        next_attempt_at: now,
    }
}

/// A receiver answering `status` (after `delay`) and counting requests.
async fn receiver(
    status: StatusCode,
    headers: Vec<(&'static str, &'static str)>,
    delay: Duration,
) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move || {
            let h = h.clone();
            let headers = headers.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let mut r = axum::response::Response::builder().status(status);
                for (k, v) in headers {
                    r = r.header(k, v);
                }
                r.body(axum::body::Body::empty()).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), hits)
}

async fn status_of(store: &Arc<dyn Store>, key: &str) -> NotificationRecord {
    let d = store.release_details("r1").await.unwrap().unwrap();
    d.notifications.into_iter().find(|n| n.key == key).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_black_holed_receiver_delays_only_its_own_messages() {
    let dir = tempfile::tempdir().unwrap();
    // Accepts connections, never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_url = format!("http://{}/hook", hole.local_addr().unwrap());
    let (ok_url, ok_hits) = receiver(StatusCode::OK, vec![], Duration::ZERO).await;
    let notifiers = BTreeMap::from([
        ("hole".to_string(), webhook(hole_url)),
        ("ok".to_string(), webhook(ok_url)),
    ]);
    let (outbox, store) = setup(dir.path(), notifiers).await;
    let mut rows: Vec<_> = (0..5).map(|i| row(&format!("hole-{i}"), "hole")).collect();
    rows.push(row("ok-0", "ok"));
    store.enqueue(&rows).await.unwrap();
    outbox.spawn();
    common::wait_for(
        "the healthy receiver's message",
        Duration::from_secs(10),
        || {
            let hits = ok_hits.clone();
            async move { (hits.load(Ordering::SeqCst) == 1).then_some(()) }
        },
    )
    .await;
    // The healthy message went out while the black hole still holds all of its own.
    for i in 0..5 {
        let r = status_of(&store, &format!("hole-{i}")).await;
        assert_eq!(
            (r.status, r.attempts),
            (DeliveryStatus::Pending, 0),
            "hole-{i} was tried before the healthy message"
        );
    }
    common::wait_for("ok-0 marked sent", Duration::from_secs(10), || {
        let store = store.clone();
        async move { (status_of(&store, "ok-0").await.status == DeliveryStatus::Sent).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured_and_capped() {
    let dir = tempfile::tempdir().unwrap();
    let (soon, _) = receiver(
        StatusCode::TOO_MANY_REQUESTS,
        vec![("retry-after", "7")],
        Duration::ZERO,
    )
    .await;
    let (late, _) = receiver(
        StatusCode::TOO_MANY_REQUESTS,
        vec![("retry-after", "86400")],
        Duration::ZERO,
    )
    .await;
    let notifiers = BTreeMap::from([
        ("soon".to_string(), webhook(soon)),
        ("late".to_string(), webhook(late)),
    ]);
    let (outbox, store) = setup(dir.path(), notifiers).await;
    store
        .enqueue(&[row("a", "soon"), row("b", "late")])
        .await
        .unwrap();
    let before = SystemClock.now();
    outbox.deliver_due().await.unwrap();
    let after = SystemClock.now();
    let a = status_of(&store, "a").await;
    assert_eq!((a.status, a.attempts), (DeliveryStatus::Pending, 1));
    assert!(
        a.next_attempt_at >= before + 7_000 && a.next_attempt_at <= after + 7_000,
        "{a:?}"
    );
    let b = status_of(&store, "b").await;
    assert_eq!(b.status, DeliveryStatus::Pending);
    assert!(
        b.next_attempt_at <= after + MAX_BACKOFF.as_millis() as i64,
        "Retry-After must be capped: {b:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ack_during_a_delivery_keeps_the_message_suppressed() {
    let dir = tempfile::tempdir().unwrap();
    let (slow, hits) = receiver(StatusCode::OK, vec![], Duration::from_millis(800)).await;
    let (outbox, store) = setup(
        dir.path(),
        BTreeMap::from([("slow".to_string(), webhook(slow))]),
    )
    .await;
    store.enqueue(&[row("m", "slow")]).await.unwrap();
    let delivering = {
        let outbox = outbox.clone();
        tokio::spawn(async move { outbox.deliver_due().await })
    };
    common::wait_for(
        "the delivery to be in flight",
        Duration::from_secs(10),
        || {
            let hits = hits.clone();
            async move { (hits.load(Ordering::SeqCst) == 1).then_some(()) }
        },
    )
    .await;
    let decision = release_guardian::model::Decision {
        at: SystemClock.now(),
        check: None,
        level: None,
        action: release_guardian::model::DecisionAction::Acked,
        reason: "test".into(),
    };
    let silence = release_guardian::store::Silence {
        note: "suppressed: the release was acknowledged".into(),
    };
    store.ack("r1", &decision, &silence).await.unwrap().unwrap();
    // The in-flight send finishes (the receiver answers 200), yet the row
    // stays suppressed; and a later page for the release is stored suppressed.
    delivering.await.unwrap().unwrap();
    store.enqueue(&[row("later", "slow")]).await.unwrap();
    outbox.deliver_due().await.unwrap();
    assert_eq!(
        status_of(&store, "m").await.status,
        DeliveryStatus::Suppressed
    );
    assert_eq!(
        status_of(&store, "later").await.status,
        DeliveryStatus::Suppressed
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "nothing was sent after the ack"
    );
}

/// The decision a registration records on the releases it supersedes.
fn superseded() -> release_guardian::model::Decision {
    release_guardian::model::Decision::superseded(1_000, "superseded by a newer release")
}
