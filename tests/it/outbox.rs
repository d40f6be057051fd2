//! The outbox over a real store and real HTTP receivers: a black-holed
//! receiver delays only its own messages, `Retry-After` is honoured and
//! capped, and an ack during a delivery keeps the message suppressed.

use crate::support::{settings, wait_for, Receiver, Reply};
use release_guardian::actions::notify::outbox::Outbox;
use release_guardian::clock::{Clock, SystemClock};
use release_guardian::context::Context;
use release_guardian::model::{DeliveryStatus, Message, NewRelease, NotificationRecord, Severity};
use release_guardian::store::sqlite::SqliteStore;
use release_guardian::store::{Lease, Store};
use release_guardian::transport::MAX_BACKOFF;
use std::sync::Arc;
use std::time::Duration;

/// A `[notifiers.NAME]` webhook posting to `url`, for every severity.
fn webhook(name: &str, url: &str) -> String {
    format!(
        "[notifiers.{name}]\nkind = \"webhook\"\nurl = \"{url}\"\nmin_severity = \"info\"\ntimeout = \"2s\"\n"
    )
}

/// An outbox over a fresh store in `dir` holding release `r1`, with the
/// notifiers of `notifiers` (config text).
async fn setup(dir: &std::path::Path, notifiers: &[String]) -> (Arc<Outbox>, Arc<dyn Store>) {
    setup_on(dir, notifiers, false).await
}

/// [`setup`], the store `shared` with other replicas or not.
async fn setup_on(
    dir: &std::path::Path,
    notifiers: &[String],
    shared: bool,
) -> (Arc<Outbox>, Arc<dyn Store>) {
    let (ctx, store) = context(dir, notifiers).await;
    let mut parts = ctx.outbox_parts("local");
    parts.shared = shared;
    (Outbox::new(parts), store)
}

/// The daemon's context over a fresh store in `dir` holding release `r1`,
/// with the notifiers of `notifiers` (config text).
async fn context(dir: &std::path::Path, notifiers: &[String]) -> (Arc<Context>, Arc<dyn Store>) {
    let settings = settings(
        dir,
        &format!("[store]\npath = \"g.db\"\n{}", notifiers.concat()),
    );
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("g.db")).unwrap());
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
    (
        Context::new(settings, store.clone(), Arc::new(SystemClock)),
        store,
    )
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
    let ok = Receiver::start(Reply::Ok).await;
    let notifiers = [webhook("hole", &hole_url), webhook("ok", &ok.webhook_url())];
    let (outbox, store) = setup(dir.path(), &notifiers).await;
    let mut rows: Vec<_> = (0..5).map(|i| row(&format!("hole-{i}"), "hole")).collect();
    rows.push(row("ok-0", "ok"));
    store.enqueue(&rows).await.unwrap();
    outbox.spawn();
    wait_for(
        "the healthy receiver's message",
        Duration::from_secs(10),
        || async { (ok.hits() == 1).then_some(()) },
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
    wait_for("ok-0 marked sent", Duration::from_secs(10), || {
        let store = store.clone();
        async move { (status_of(&store, "ok-0").await.status == DeliveryStatus::Sent).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured_and_capped() {
    let dir = tempfile::tempdir().unwrap();
    let soon = Receiver::start(Reply::RateLimited("7")).await;
    let late = Receiver::start(Reply::RateLimited("86400")).await;
    let notifiers = [
        webhook("soon", &soon.webhook_url()),
        webhook("late", &late.webhook_url()),
    ];
    let (outbox, store) = setup(dir.path(), &notifiers).await;
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
    let slow = Receiver::start(Reply::OkAfter(Duration::from_millis(800))).await;
    let (outbox, store) = setup(dir.path(), &[webhook("slow", &slow.webhook_url())]).await;
    store.enqueue(&[row("m", "slow")]).await.unwrap();
    let delivering = {
        let outbox = outbox.clone();
        tokio::spawn(async move { outbox.deliver_due().await })
    };
    wait_for(
        "the delivery to be in flight",
        Duration::from_secs(10),
        || async { (slow.hits() == 1).then_some(()) },
    )
    .await;
    let decision = release_guardian::model::Decision {
        at: SystemClock.now(),
        check: None,
        level: None,
        action: release_guardian::model::DecisionAction::Acked,
        reason: "test".into(),
        observed_at: None,
        evidence: None,
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
    assert_eq!(slow.hits(), 1, "nothing was sent after the ack");
}

/// The decision a registration records on the releases it supersedes.
fn superseded() -> release_guardian::model::Decision {
    release_guardian::model::Decision::superseded(1_000, "superseded by a newer release")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_another_replica_holds_is_not_sent_until_its_claim_expires() {
    let dir = tempfile::tempdir().unwrap();
    let ok = Receiver::start(Reply::Ok).await;
    let (outbox, store) = setup(dir.path(), &[webhook("ok", &ok.webhook_url())]).await;
    store
        .enqueue(&[row("held", "ok"), row("free", "ok")])
        .await
        .unwrap();
    let now = SystemClock.now();
    let other = Lease::new("replica-b", now + 60_000);
    assert!(store.claim_notification("held", &other, now).await.unwrap());
    outbox.deliver_due().await.unwrap();
    assert_eq!(ok.hits(), 1, "only the unclaimed row is sent");
    assert_eq!(status_of(&store, "free").await.status, DeliveryStatus::Sent);
    let held = status_of(&store, "held").await;
    assert_eq!((held.status, held.attempts), (DeliveryStatus::Pending, 0));
    // The other replica died: once its claim has expired, this one sends.
    let expired = Lease::new("replica-b", now - 1);
    assert!(store
        .claim_notification("held", &expired, now - 60_000)
        .await
        .unwrap());
    outbox.deliver_due().await.unwrap();
    assert_eq!(ok.hits(), 2);
    assert_eq!(status_of(&store, "held").await.status, DeliveryStatus::Sent);
}

/// `notifier`'s row `key` with an event instant `at` (rows are delivered in
/// the order of their events).
fn row_at(key: &str, notifier: &str, at: i64) -> NotificationRecord {
    let mut r = row(key, notifier);
    r.message.at = at;
    r.created_at = at;
    r
}

/// Waits until every row of `keys` is `sent`.
async fn wait_sent(store: &Arc<dyn Store>, keys: &[String], timeout: Duration) {
    wait_for("every row sent", timeout, || {
        let store = store.clone();
        async move {
            let d = store.release_details("r1").await.unwrap().unwrap();
            keys.iter()
                .all(|k| {
                    d.notifications
                        .iter()
                        .any(|n| &n.key == k && n.status == DeliveryStatus::Sent)
                })
                .then_some(())
        }
    })
    .await;
}

/// The `dedup_key` of every accepted webhook request, in arrival order.
fn accepted_keys(r: &Receiver) -> Vec<String> {
    r.accepted()
        .iter()
        .map(|b| b["dedup_key"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_answering_500_then_200_gets_the_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(Reply::Ok).await;
    hook.script(&[Reply::ServerError]);
    let (outbox, store) = setup(dir.path(), &[webhook("hook", &hook.webhook_url())]).await;
    store.enqueue(&[row("m", "hook")]).await.unwrap();
    outbox.spawn();
    wait_sent(&store, &["m".to_string()], Duration::from_secs(15)).await;
    let got = hook.received();
    assert_eq!(
        got.iter().map(|r| r.status.as_u16()).collect::<Vec<_>>(),
        [500, 200]
    );
    assert_eq!(accepted_keys(&hook), ["m"]);
    let m = status_of(&store, "m").await;
    assert_eq!(m.attempts, 2);
    assert!(m.last_error.is_none(), "{m:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_with_retry_after_holds_the_notifiers_queue_until_then() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(Reply::Ok).await;
    hook.script(&[Reply::RateLimited("2")]);
    let (outbox, store) = setup(dir.path(), &[webhook("hook", &hook.webhook_url())]).await;
    let t = SystemClock.now();
    store
        .enqueue(&[row_at("first", "hook", t), row_at("second", "hook", t + 1)])
        .await
        .unwrap();
    outbox.spawn();
    wait_sent(
        &store,
        &["first".to_string(), "second".to_string()],
        Duration::from_secs(15),
    )
    .await;
    let got = hook.received();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].status.as_u16(), 429);
    let waited = got[1].at - got[0].at;
    assert!(
        waited >= Duration::from_secs(2),
        "retried after {waited:?}, before the Retry-After of 2 s"
    );
    // The later message did not overtake the one waiting for its retry.
    assert_eq!(accepted_keys(&hook), ["first", "second"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_of_one_per_second_delivers_a_burst_in_order_spaced_and_whole() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(Reply::Ok).await;
    let limited = format!(
        "{}rate_limit = \"1/s\"\n",
        webhook("hook", &hook.webhook_url())
    );
    let (outbox, store) = setup(dir.path(), &[limited]).await;
    let t = SystemClock.now();
    let keys: Vec<String> = (0..10).map(|i| format!("page-{i}")).collect();
    let rows: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| row_at(k, "hook", t + i as i64))
        .collect();
    store.enqueue(&rows).await.unwrap();
    outbox.spawn();
    wait_sent(&store, &keys, Duration::from_secs(30)).await;
    assert_eq!(accepted_keys(&hook), keys, "all delivered, in order, once");
    let got = hook.received();
    // GCRA at 1/s sends the k-th page k seconds after the first; the
    // receiver sees each arrive some ms after its send (the first one
    // later, on a new connection). Measured from the first arrival, so
    // that this lag does not add up; 250 ms of it are allowed.
    for (k, r) in got.iter().enumerate().skip(1) {
        let since = r.at - got[0].at;
        assert!(
            since >= Duration::from_millis(1_000 * k as u64 - 250),
            "page {k} arrived {since:?} after the first"
        );
    }
    let span = got[9].at - got[0].at;
    assert!(
        span < Duration::from_secs(20),
        "paced far too slowly: {span:?}"
    );
}

/// Alone on its store, an idle outbox has no timer: every path of the
/// daemon that enqueues wakes it, so a row enqueued without a wake-up waits
/// for one. On a shared store (rows other replicas enqueue) it looks every
/// 5 s and finds the row by itself.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_outbox_alone_on_its_store_looks_only_when_woken() {
    for shared in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let ok = Receiver::start(Reply::Ok).await;
        let (outbox, store) =
            setup_on(dir.path(), &[webhook("ok", &ok.webhook_url())], shared).await;
        outbox.spawn();
        // A first row, woken for, and the loop's look after its worker.
        store.enqueue(&[row("first", "ok")]).await.unwrap();
        outbox.wake();
        wait_sent(&store, &["first".to_string()], Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        store.enqueue(&[row("quiet", "ok")]).await.unwrap();
        let keys = ["quiet".to_string()];
        let sent = |timeout| wait_sent(&store, &keys, timeout);
        if shared {
            sent(Duration::from_secs(10)).await;
            continue;
        }
        // Longer than a shared store's look: an absence, so a fixed wait.
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(ok.hits(), 1, "an idle outbox looked without a wake-up");
        outbox.wake();
        sent(Duration::from_secs(10)).await;
        assert_eq!(ok.hits(), 2);
    }
}

/// A row of a notifier that is no longer configured fails for good at the
/// next look, even while it waits for a retry: it could never be sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_row_of_a_notifier_no_longer_configured_fails_without_waiting_for_its_retry() {
    let dir = tempfile::tempdir().unwrap();
    let (outbox, store) = setup(dir.path(), &[]).await;
    let mut waiting = row("orphan", "removed");
    waiting.next_attempt_at = SystemClock.now() + 3_600_000;
    store.enqueue(&[waiting]).await.unwrap();
    outbox.deliver_due().await.unwrap();
    let r = status_of(&store, "orphan").await;
    assert_eq!(r.status, DeliveryStatus::Failed, "{r:?}");
    assert!(
        r.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("no longer configured"),
        "{r:?}"
    );
}

/// A reload that removes a notifier wakes the outbox, which fails that
/// notifier's queued rows at once (one waiting for a retry an hour away
/// included): nothing else would ever look at them in an idle daemon.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_removes_a_notifier_fails_its_queued_rows_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ok = Receiver::start(Reply::Ok).await;
    let (ctx, store) = context(dir.path(), &[webhook("ok", &ok.webhook_url())]).await;
    let outbox = Outbox::new(ctx.outbox_parts("local"));
    outbox.spawn();
    let mut waiting = row("later", "ok");
    waiting.next_attempt_at = SystemClock.now() + 3_600_000;
    store.enqueue(&[waiting]).await.unwrap();
    outbox.wake();
    // Settled: the loop has looked (the row is not due) and sleeps.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        status_of(&store, "later").await.status,
        DeliveryStatus::Pending
    );
    ctx.replace_settings(settings(dir.path(), "[store]\npath = \"g.db\"\n"));
    wait_for(
        "the removed notifier's row failed",
        Duration::from_secs(10),
        || {
            let store = store.clone();
            async move {
                let r = status_of(&store, "later").await;
                (r.status == DeliveryStatus::Failed).then_some(())
            }
        },
    )
    .await;
    assert_eq!(ok.hits(), 0);
}
