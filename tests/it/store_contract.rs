//! The store contract: every behaviour the daemon relies on from a
//! [`Store`] backend — registration and supersession, atomic ticks, the
//! outbox, exactly-once rollbacks, leases, durability across reopening —
//! written once against `Arc<dyn Store>` and run for every backend.
//!
//! A backend joins by giving a [`Backend`] factory and one line:
//! `store_contract!(postgres, postgres_backend);` instantiates every
//! contract test for it. Tests of one backend's own mechanics (the SQLite
//! file, its schema versions, corrupt rows) follow the contract, at the end.
//!
//! Self-contained on purpose: its helpers live at the top of this file.

use release_guardian::model::{
    AuditRecord, CheckPoint, CheckRecord, CheckState, Decision, DecisionAction, DeliveryStatus,
    Level, Message, Millis, NewRelease, NotificationRecord, Release, ReleaseStatus, RollbackRecord,
    RollbackState, Severity,
};
use release_guardian::store::sqlite::{SqliteStore, CHECKPOINT_PAGES, PAGE_SIZE};
use release_guardian::store::{
    Lease, Registered, Registration, ReleaseFilter, RollbackRequest, Silence, Store, StoreError,
    StoreSettings, TickApplied, TickCommit,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tempfile::TempDir;

const ENV: &str = "production";

/// The replica ids the lease tests use.
const OWNER_A: &str = "replica-a";
const OWNER_B: &str = "replica-b";

// ---- backends ----------------------------------------------------------------

/// A backend under test: a fresh, empty store, and a way to open the same
/// data again (a new connection, as after a restart or from another replica).
struct Backend {
    store: Arc<dyn Store>,
    open: Box<dyn Fn() -> Arc<dyn Store> + Send + Sync>,
    /// Whatever must outlive the store (a temporary directory, a schema).
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

impl Backend {
    /// Closes the store and opens the same data again.
    fn reopen(self) -> Backend {
        let Backend { store, open, _keep } = self;
        drop(store);
        Backend {
            store: open(),
            open,
            _keep,
        }
    }

    /// Another store on the same data, alongside this one.
    fn connect(&self) -> Arc<dyn Store> {
        (self.open)()
    }
}

/// SQLite: a new file in a temporary directory, opened through
/// [`release_guardian::store::open`].
fn sqlite_backend() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = StoreSettings::sqlite(dir.path().join("state").join("guardian.db"));
    let open = move || release_guardian::store::open(&settings).expect("open the store");
    Backend {
        store: open(),
        open: Box::new(open),
        _keep: Box::new(dir),
    }
}

/// PostgreSQL: a new database on this test process's real server (Debian's
/// `postgresql`, started once: `support::postgres`), configured through
/// `[store] url` as a user would.
fn postgres_backend() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = crate::support::postgres::server();
    let db = crate::support::postgres::database();
    let toml = format!("[store]\nurl = {:?}\nlease = \"30s\"\n", server.url(&db));
    let settings = crate::support::settings(dir.path(), &toml).store;
    assert!(matches!(settings, StoreSettings::Postgres(_)));
    let open = move || release_guardian::store::open(&settings).expect("open the store");
    Backend {
        store: open(),
        open: Box::new(open),
        _keep: Box::new(dir),
    }
}

/// Instantiates every contract test for one backend: `$backend` names the
/// module, `$make` is a `fn() -> Backend` giving a fresh, empty store.
macro_rules! store_contract {
    ($backend:ident, $make:ident) => {
        mod $backend {
            store_contract!(@tests $make;
                registering_the_same_version_again_returns_the_existing_release,
                the_environment_argument_wins_over_the_body,
                a_newer_version_supersedes_the_watch_in_progress,
                re_registering_an_older_version_after_a_newer_one_starts_a_new_watch,
                the_latest_release_is_returned_even_when_its_watch_has_ended,
                a_release_rolling_back_is_not_superseded,
                commit_tick_writes_checks_decisions_notifications_and_the_next_tick,
                commit_tick_after_abort_writes_nothing,
                commit_tick_keeps_the_charted_points_capped_per_check,
                a_failing_tick_leaves_no_trace,
                a_verifying_tick_ends_the_watch,
                a_tick_requesting_a_rollback_records_it_once,
                transition_is_conditional_on_the_current_status,
                ack_sets_the_flag_and_records_a_decision,
                decisions_come_back_in_time_order_then_insertion_order,
                a_decisions_observed_at_and_evidence_read_back,
                every_decision_verb_reads_back_as_written,
                enqueue_keeps_one_row_per_key,
                due_mark_and_next_due_drive_delivery,
                ack_suppresses_pending_pages_only,
                an_ack_applies_the_callers_silence,
                request_rollback_is_recorded_once,
                request_rollback_depends_on_the_status,
                only_the_first_claim_of_a_rollback_wins,
                concurrent_rollback_claims_have_exactly_one_winner,
                concurrent_rollback_claims_across_connections_have_one_winner,
                finish_rollback_records_the_outcome_and_the_status,
                a_second_outcome_does_not_overwrite_the_first,
                the_rollback_claim_writes_the_winners_decision_and_pages_only,
                a_failing_rollback_claim_leaves_the_rollback_requested,
                finish_rollback_writes_its_pages_with_the_outcome_once,
                a_failing_finish_rollback_changes_nothing,
                request_rollback_refuses_a_release_that_is_no_longer_live,
                list_releases_is_newest_first_and_filters,
                active_releases_and_counts,
                missing_things_are_none,
                details_of_several_releases_read_together_in_order,
                data_survives_closing_and_reopening,
                a_watch_lease_has_one_live_owner,
                an_expired_watch_lease_can_be_taken_over,
                renewing_needs_the_lease_and_releasing_frees_it,
                a_fenced_tick_is_written_only_by_the_lease_holder,
                concurrent_watch_claims_have_one_winner,
                an_outbox_row_is_claimed_by_one_replica_at_a_time,
                a_delivery_keeps_its_first_release_and_goes_with_it,
                the_audit_log_keeps_writes_in_order_and_goes_with_the_release,
                a_batch_keeps_each_registrations_semantics_in_order,
                a_failing_batch_item_leaves_nothing_and_fails_no_other,
            );
        }
    };
    (@tests $make:ident; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::$make()).await
            }
        )*
    };
}

store_contract!(sqlite, sqlite_backend);
store_contract!(postgres, postgres_backend);

// ---- helpers -----------------------------------------------------------------

fn new_release(service: &str, version: &str) -> NewRelease {
    NewRelease {
        service: service.into(),
        version: version.into(),
        previous_version: Some("v0".into()),
        environment: None,
        annotations: BTreeMap::from([("pr".to_string(), serde_json::json!(42))]),
    }
}

/// What the scheduler records on a release superseded by `id`.
fn superseded_by(version: &str, id: &str, now: Millis) -> Decision {
    Decision::superseded(
        now,
        format!("superseded by version {version} (release {id})"),
    )
}

/// What the scheduler tells the store an ack does.
fn silence() -> Silence {
    Silence {
        note: "suppressed: the release was acknowledged".into(),
    }
}

async fn register(
    s: &dyn Store,
    service: &str,
    version: &str,
    id: &str,
    now: Millis,
) -> Registered {
    s.register_release(
        &new_release(service, version),
        ENV,
        id,
        now,
        now + 60_000,
        &superseded_by(version, id, now),
    )
    .await
    .expect("register")
}

async fn release(s: &dyn Store, id: &str) -> Release {
    s.get_release(id)
        .await
        .expect("get")
        .expect("release exists")
}

fn decision(at: Millis, action: &str) -> Decision {
    let action = DecisionAction::parse(action).expect("a known verb");
    Decision::new(action, at, format!("{action} at {at}"))
}

/// The decision a rollback start records.
fn started(at: Millis) -> Decision {
    decision(at, "rollback_started")
}

fn lease(owner: &str, expires_at: Millis) -> Lease {
    Lease::new(owner, expires_at)
}

/// Every outbox row of these releases.
async fn outbox_rows(s: &dyn Store, ids: &[&str]) -> Vec<NotificationRecord> {
    let mut out = Vec::new();
    for id in ids {
        if let Some(d) = s.release_details(id).await.unwrap() {
            out.extend(d.notifications);
        }
    }
    out
}

fn check(name: &str, state: CheckState, value: Option<f64>, at: Millis) -> CheckRecord {
    CheckRecord {
        name: name.into(),
        state,
        level: Level::Warning,
        value,
        tracker: serde_json::json!({"since": at, "samples": [1, 2, 3]}),
        evaluated_until: Some(at - 1),
        updated_at: at,
        // Evidence round-trips (and its absence: `latency` keeps none).
        logs: if name == "latency" {
            Vec::new()
        } else {
            vec![release_guardian::model::LogLine {
                ts: format!("{}000000", at),
                stream: r#"{app="checkout"}"#.into(),
                line: format!("error at {at}: \"quoted\" ünïcode"),
            }]
        },
    }
}

fn notification(
    key: &str,
    release_id: &str,
    created_at: Millis,
    next: Millis,
) -> NotificationRecord {
    NotificationRecord {
        key: key.into(),
        notifier: "slack".into(),
        message: Message {
            dedup_key: key.into(),
            release_id: release_id.into(),
            service: "checkout".into(),
            environment: ENV.into(),
            version: "v1".into(),
            previous_version: Some("v0".into()),
            severity: Severity::Critical,
            event: "level_changed".into(),
            check: Some("error_rate".into()),
            level: Some(Level::Critical),
            value: Some(0.25),
            reason: "error rate 25% above 5%".into(),
            at: created_at,
        },
        status: DeliveryStatus::Pending,
        attempts: 0,
        last_error: None,
        created_at,
        sent_at: None,
        next_attempt_at: next,
    }
}

fn rollback_record(at: Millis, trigger: &str) -> RollbackRecord {
    RollbackRecord {
        state: RollbackState::Requested,
        reason: "error rate above the rollback level".into(),
        trigger: trigger.into(),
        requested_at: at,
        started_at: None,
        finished_at: None,
        exit_code: None,
        output: None,
    }
}

fn tick(now: Millis) -> TickCommit {
    TickCommit {
        now,
        next_check_at: Some(now + 60_000),
        ..Default::default()
    }
}

// ---- the contract ----------------------------------------------------------

async fn registering_the_same_version_again_returns_the_existing_release(db: Backend) {
    let s = &*db.store;
    let first = register(s, "checkout", "v1", "r1", 1_000).await;
    assert!(first.created);
    assert!(first.superseded.is_empty());
    assert_eq!(first.release.status, ReleaseStatus::Watching);
    assert_eq!(first.release.started_at, 1_000);
    assert_eq!(first.release.next_check_at, Some(61_000));
    assert_eq!(first.release.previous_version.as_deref(), Some("v0"));
    assert_eq!(first.release.annotations["pr"], serde_json::json!(42));

    let again = register(s, "checkout", "v1", "r1-dup", 5_000).await;
    assert!(!again.created);
    assert_eq!(again.release, first.release);
    assert!(s.get_release("r1-dup").await.unwrap().is_none());
    assert_eq!(
        s.list_releases(&ReleaseFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn the_environment_argument_wins_over_the_body(db: Backend) {
    let mut new = new_release("checkout", "v1");
    new.environment = Some("staging".into());
    let reg = db
        .store
        .register_release(
            &new,
            ENV,
            "r1",
            1_000,
            2_000,
            &superseded_by("v1", "r1", 1_000),
        )
        .await
        .unwrap();
    assert_eq!(reg.release.environment, ENV);
}

async fn a_newer_version_supersedes_the_watch_in_progress(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    // Other services and environments are not touched.
    register(s, "payments", "v1", "p1", 1_000).await;
    s.register_release(
        &new_release("checkout", "v1"),
        "staging",
        "st1",
        1_000,
        2_000,
        &superseded_by("v", "st1", 1_000),
    )
    .await
    .unwrap();

    let second = register(s, "checkout", "v2", "r2", 5_000).await;
    assert!(second.created);
    assert_eq!(second.superseded, ["r1"]);
    assert_eq!(second.release.status, ReleaseStatus::Watching);
    assert_eq!(second.release.next_check_at, Some(65_000));

    let old = s.release_details("r1").await.unwrap().unwrap();
    assert_eq!(old.release.status, ReleaseStatus::Superseded);
    assert_eq!(old.release.superseded_by.as_deref(), Some("r2"));
    assert_eq!(old.release.next_check_at, None);
    assert_eq!(old.release.ended_at, Some(5_000));
    assert_eq!(old.decisions.len(), 1);
    assert_eq!(old.decisions[0].action, "superseded");
    assert_eq!(old.decisions[0].at, 5_000);
    assert!(
        old.decisions[0].reason.contains("v2"),
        "{}",
        old.decisions[0].reason
    );

    assert_eq!(release(s, "p1").await.status, ReleaseStatus::Watching);
    assert_eq!(release(s, "st1").await.status, ReleaseStatus::Watching);
}

async fn re_registering_an_older_version_after_a_newer_one_starts_a_new_watch(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    register(s, "checkout", "v2", "r2", 2_000).await;
    let back = register(s, "checkout", "v1", "r3", 3_000).await;
    assert!(back.created);
    assert_eq!(back.release.id, "r3");
    assert_eq!(back.superseded, ["r2"]);
    assert_eq!(release(s, "r1").await.status, ReleaseStatus::Superseded);
    assert_eq!(release(s, "r2").await.superseded_by.as_deref(), Some("r3"));
    // And the same version again is now "r3", even with an equal timestamp.
    let same = register(s, "checkout", "v1", "r4", 3_000).await;
    assert!(!same.created);
    assert_eq!(same.release.id, "r3");
}

async fn the_latest_release_is_returned_even_when_its_watch_has_ended(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    s.transition(
        "r1",
        &[ReleaseStatus::Watching],
        ReleaseStatus::Aborted,
        &decision(2_000, "aborted"),
        2_000,
    )
    .await
    .unwrap()
    .unwrap();
    let again = register(s, "checkout", "v1", "r2", 3_000).await;
    assert!(!again.created);
    assert_eq!(again.release.id, "r1");
    assert_eq!(again.release.status, ReleaseStatus::Aborted);
}

async fn a_release_rolling_back_is_not_superseded(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    let req = s
        .request_rollback(
            "r1",
            &rollback_record(1_500, "manual"),
            &decision(1_500, "rollback_requested"),
        )
        .await
        .unwrap();
    assert_eq!(req, RollbackRequest::Requested);
    let reg = register(s, "checkout", "v2", "r2", 2_000).await;
    assert!(reg.created);
    assert!(reg.superseded.is_empty());
    let r1 = release(s, "r1").await;
    assert_eq!(r1.status, ReleaseStatus::RollingBack);
    assert_eq!(r1.superseded_by, None);
}

// ---- ticks ---------------------------------------------------------------------

async fn commit_tick_writes_checks_decisions_notifications_and_the_next_tick(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    let mut t = tick(2_000);
    t.checks = vec![
        check("latency", CheckState::Ok, Some(120.5), 2_000),
        check("error_rate", CheckState::Inconclusive, None, 2_000),
    ];
    t.decisions = vec![
        decision(2_000, "level_changed"),
        decision(2_000, "inconclusive"),
    ];
    t.notifications = vec![
        notification("k1", "r1", 2_000, 2_000),
        notification("k2", "r1", 2_000, 2_000),
    ];
    let applied = s.commit_tick("r1", &t).await.unwrap();
    assert_eq!(
        applied,
        TickApplied::Applied {
            rollback_requested: false
        }
    );

    let d = s.release_details("r1").await.unwrap().unwrap();
    assert_eq!(d.release.status, ReleaseStatus::Watching);
    assert_eq!(d.release.next_check_at, Some(62_000));
    // Checks come back by name, field for field.
    assert_eq!(d.checks, vec![t.checks[1].clone(), t.checks[0].clone()]);
    assert_eq!(d.decisions, t.decisions);
    assert_eq!(d.notifications, t.notifications);
    assert_eq!(s.load_checks("r1").await.unwrap(), d.checks);

    // The next tick rewrites check rows in place and dedups outbox rows.
    let mut t2 = tick(62_000);
    t2.checks = vec![check("error_rate", CheckState::Critical, Some(0.3), 62_000)];
    t2.notifications = vec![
        notification("k2", "r1", 62_000, 62_000),
        notification("k3", "r1", 62_000, 62_000),
    ];
    s.commit_tick("r1", &t2).await.unwrap();
    let d = s.release_details("r1").await.unwrap().unwrap();
    assert_eq!(d.checks.len(), 2);
    assert_eq!(d.checks[0], t2.checks[0]);
    assert_eq!(d.checks[1], t.checks[0]);
    let keys: Vec<&str> = d.notifications.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(keys, ["k1", "k2", "k3"]);
    // The first k2 was kept, not overwritten.
    assert_eq!(d.notifications[1].created_at, 2_000);
    assert_eq!(d.release.next_check_at, Some(122_000));
}

fn point(check: &str, at: Millis, value: Option<f64>) -> CheckPoint {
    CheckPoint {
        check: check.into(),
        at,
        value,
    }
}

async fn commit_tick_keeps_the_charted_points_capped_per_check(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    register(s, "search", "v1", "r2", 1_000).await;
    let mut t = tick(2_000);
    t.points = vec![
        point("latency", 1_500, Some(0.2)),
        point("error_rate", 1_500, Some(0.01)),
        point("error_rate", 1_000, None),
    ];
    s.commit_tick("r1", &t).await.unwrap();
    // By check, then time; a point without a value stays one.
    assert_eq!(
        s.check_points("r1").await.unwrap(),
        vec![
            point("error_rate", 1_000, None),
            point("error_rate", 1_500, Some(0.01)),
            point("latency", 1_500, Some(0.2)),
        ]
    );
    // A redone tick writes its instants once; other releases are apart.
    s.commit_tick("r1", &t).await.unwrap();
    assert_eq!(s.check_points("r1").await.unwrap().len(), 3);
    assert!(s.check_points("r2").await.unwrap().is_empty());
    assert!(s.check_points("nope").await.unwrap().is_empty());

    // Past the cap, the oldest points of that check go; the others stay.
    let cap = release_guardian::model::MAX_POINTS_PER_CHECK as Millis;
    let mut t = tick(3_000);
    t.points = (0..cap + 10)
        .map(|i| point("error_rate", 10_000 + i, Some(i as f64)))
        .collect();
    s.commit_tick("r1", &t).await.unwrap();
    let points = s.check_points("r1").await.unwrap();
    let errors: Vec<&CheckPoint> = points.iter().filter(|p| p.check == "error_rate").collect();
    assert_eq!(errors.len() as Millis, cap);
    assert_eq!(errors[0].at, 10_010);
    assert_eq!(errors.last().unwrap().at, 10_000 + cap + 9);
    assert_eq!(points.iter().filter(|p| p.check == "latency").count(), 1);

    // Not written once the watch has ended; pruned with the release.
    s.transition(
        "r1",
        &[ReleaseStatus::Watching],
        ReleaseStatus::Aborted,
        &decision(4_000, "aborted"),
        4_000,
    )
    .await
    .unwrap()
    .expect("aborted");
    let mut t = tick(5_000);
    t.points = vec![point("latency", 5_000, Some(9.0))];
    assert_eq!(
        s.commit_tick("r1", &t).await.unwrap(),
        TickApplied::NotWatching
    );
    assert!(!s
        .check_points("r1")
        .await
        .unwrap()
        .iter()
        .any(|p| p.at == 5_000));
    assert_eq!(s.prune_ended(10_000, 10).await.unwrap(), 1);
    assert!(s.check_points("r1").await.unwrap().is_empty());
}

async fn commit_tick_after_abort_writes_nothing(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    s.transition(
        "r1",
        &[ReleaseStatus::Watching],
        ReleaseStatus::Aborted,
        &decision(1_500, "aborted"),
        1_500,
    )
    .await
    .unwrap()
    .expect("aborted");
    let before = s.release_details("r1").await.unwrap().unwrap();

    let mut t = tick(2_000);
    t.checks = vec![check("error_rate", CheckState::Critical, Some(0.3), 2_000)];
    t.decisions = vec![decision(2_000, "level_changed")];
    t.notifications = vec![notification("k1", "r1", 2_000, 2_000)];
    t.rollback = Some(rollback_record(2_000, "auto"));
    assert_eq!(
        s.commit_tick("r1", &t).await.unwrap(),
        TickApplied::NotWatching
    );
    assert_eq!(s.release_details("r1").await.unwrap().unwrap(), before);
    assert_eq!(s.next_notification_due().await.unwrap(), None);
    // An unknown release is not watching either.
    assert_eq!(
        s.commit_tick("nope", &t).await.unwrap(),
        TickApplied::NotWatching
    );
}

async fn a_failing_tick_leaves_no_trace(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    let before = s.release_details("r1").await.unwrap().unwrap();
    let mut t = tick(2_000);
    t.checks = vec![check("error_rate", CheckState::Critical, Some(0.3), 2_000)];
    t.decisions = vec![decision(2_000, "level_changed")];
    // The second outbox row names a release that does not exist: the foreign
    // key fails after checks, decisions and the first row were written.
    t.notifications = vec![
        notification("k1", "r1", 2_000, 2_000),
        notification("k2", "ghost", 2_000, 2_000),
    ];
    let err = s
        .commit_tick("r1", &t)
        .await
        .expect_err("foreign key must fail");
    assert!(matches!(err, StoreError::Backend(_)), "{err}");
    assert_eq!(s.release_details("r1").await.unwrap().unwrap(), before);
    assert_eq!(s.next_notification_due().await.unwrap(), None);
}

async fn a_verifying_tick_ends_the_watch(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    let mut t = tick(9_000);
    t.next_check_at = None;
    t.status = Some(ReleaseStatus::Verified);
    t.decisions = vec![decision(9_000, "verified")];
    assert_eq!(
        s.commit_tick("r1", &t).await.unwrap(),
        TickApplied::Applied {
            rollback_requested: false
        }
    );
    let r = release(s, "r1").await;
    assert_eq!(r.status, ReleaseStatus::Verified);
    assert_eq!(r.ended_at, Some(9_000));
    assert_eq!(r.next_check_at, None);
    assert!(s.active_releases().await.unwrap().is_empty());
}

async fn a_tick_requesting_a_rollback_records_it_once(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    let mut t = tick(2_000);
    t.decisions = vec![decision(2_000, "rollback_requested")];
    t.rollback = Some(rollback_record(2_000, "auto"));
    assert_eq!(
        s.commit_tick("r1", &t).await.unwrap(),
        TickApplied::Applied {
            rollback_requested: true
        }
    );
    let d = s.release_details("r1").await.unwrap().unwrap();
    assert_eq!(d.release.status, ReleaseStatus::RollingBack);
    assert_eq!(d.release.next_check_at, None);
    assert_eq!(d.release.ended_at, None);
    assert_eq!(d.rollback, Some(rollback_record(2_000, "auto")));
    assert_eq!(d.decisions.len(), 1);
    // The release is no longer watching: a redone tick changes nothing.
    assert_eq!(
        s.commit_tick("r1", &t).await.unwrap(),
        TickApplied::NotWatching
    );
    assert_eq!(
        s.get_rollback("r1").await.unwrap(),
        Some(rollback_record(2_000, "auto"))
    );
}

// ---- status changes -------------------------------------------------------------

async fn transition_is_conditional_on_the_current_status(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    let aborted = s
        .transition(
            "r1",
            &[ReleaseStatus::Watching],
            ReleaseStatus::Aborted,
            &decision(2_000, "aborted"),
            2_000,
        )
        .await
        .unwrap()
        .expect("watching → aborted");
    assert_eq!(aborted.status, ReleaseStatus::Aborted);
    assert_eq!(aborted.ended_at, Some(2_000));
    assert_eq!(aborted.next_check_at, None);
    assert_eq!(aborted, release(s, "r1").await);

    // Not in `from` any more: nothing changes, not even the timeline.
    let again = s
        .transition(
            "r1",
            &[ReleaseStatus::Watching],
            ReleaseStatus::Verified,
            &decision(3_000, "verified"),
            3_000,
        )
        .await
        .unwrap();
    assert_eq!(again, None);
    let d = s.release_details("r1").await.unwrap().unwrap();
    assert_eq!(d.release, aborted);
    assert_eq!(d.decisions, vec![decision(2_000, "aborted")]);
    assert_eq!(
        s.transition(
            "r1",
            &[],
            ReleaseStatus::Verified,
            &decision(3_000, "rollback_requested"),
            3_000
        )
        .await
        .unwrap(),
        None
    );
    assert_eq!(
        s.transition(
            "nope",
            &ReleaseStatus::ALL,
            ReleaseStatus::Aborted,
            &decision(3_000, "rollback_requested"),
            3_000
        )
        .await
        .unwrap(),
        None
    );
}

async fn ack_sets_the_flag_and_records_a_decision(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    assert!(!release(s, "r1").await.acked);
    let acked = s
        .ack("r1", &decision(2_000, "acked"), &silence())
        .await
        .unwrap()
        .unwrap();
    assert!(acked.acked);
    assert_eq!(acked.status, ReleaseStatus::Watching);
    let d = s.release_details("r1").await.unwrap().unwrap();
    assert_eq!(d.decisions, vec![decision(2_000, "acked")]);
    assert_eq!(
        s.ack("nope", &decision(2_000, "acked"), &silence())
            .await
            .unwrap(),
        None
    );
}

async fn decisions_come_back_in_time_order_then_insertion_order(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    let mut late = decision(3_000, "window_ended");
    late.check = Some("latency".into());
    late.level = Some(Level::Rollback);
    let first = decision(2_000, "resumed");
    let second = decision(2_000, "paused");
    for d in [&late, &first, &second] {
        s.append_decision("r1", d).await.unwrap();
    }
    let d = s.release_details("r1").await.unwrap().unwrap();
    assert_eq!(d.decisions, vec![first, second, late]);
    assert!(s
        .append_decision("nope", &decision(1, "rollback_requested"))
        .await
        .is_err());
}

async fn a_decisions_observed_at_and_evidence_read_back(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    let judged = Decision::level_changed(5_000, "error_rate", Level::Rollback, "entered")
        .with_evidence(
            3_000,
            Some(serde_json::json!({"query": "up", "compare": {"p_value": 0.001, "effect": 0.4}})),
        );
    let mut t = tick(5_000);
    t.decisions = vec![judged.clone(), decision(5_000, "verified")];
    s.commit_tick("r1", &t).await.unwrap();
    let d = s.release_details("r1").await.unwrap().unwrap();
    assert_eq!(d.decisions[0], judged);
    assert_eq!(d.decisions[0].observed_at, Some(3_000));
    assert_eq!(d.decisions[1].observed_at, None);
    assert_eq!(d.decisions[1].evidence, None);
}

// ---- the outbox -----------------------------------------------------------------

async fn enqueue_keeps_one_row_per_key(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    let k1 = notification("k1", "r1", 1_000, 1_000);
    assert_eq!(s.enqueue(std::slice::from_ref(&k1)).await.unwrap(), 1);
    let mut k1_again = notification("k1", "r1", 5_000, 5_000);
    k1_again.notifier = "webhook".into();
    assert_eq!(s.enqueue(&[k1_again]).await.unwrap(), 0);
    assert_eq!(
        s.enqueue(&[
            notification("k1", "r1", 6_000, 6_000),
            notification("k2", "r1", 6_000, 6_000)
        ])
        .await
        .unwrap(),
        1
    );
    assert_eq!(s.enqueue(&[]).await.unwrap(), 0);
    let rows = s
        .release_details("r1")
        .await
        .unwrap()
        .unwrap()
        .notifications;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], k1);
}

async fn due_mark_and_next_due_drive_delivery(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    assert_eq!(s.next_notification_due().await.unwrap(), None);
    s.enqueue(&[
        notification("b", "r1", 100, 100),
        notification("a", "r1", 100, 200),
        notification("c", "r1", 50, 300),
    ])
    .await
    .unwrap();
    assert_eq!(s.next_notification_due().await.unwrap(), Some(100));
    let keys = |rows: Vec<NotificationRecord>| rows.into_iter().map(|n| n.key).collect::<Vec<_>>();
    assert_eq!(
        keys(s.due_notifications(99, 10, None).await.unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        keys(s.due_notifications(150, 10, None).await.unwrap()),
        ["b"]
    );
    // Oldest first: created_at, then key.
    assert_eq!(
        keys(s.due_notifications(1_000, 10, None).await.unwrap()),
        ["c", "a", "b"]
    );
    assert_eq!(
        keys(s.due_notifications(1_000, 2, None).await.unwrap()),
        ["c", "a"]
    );

    s.mark_notification("b", DeliveryStatus::Sent, 1, None, 150, Some(150))
        .await
        .unwrap();
    assert_eq!(s.next_notification_due().await.unwrap(), Some(200));
    s.mark_notification("a", DeliveryStatus::Pending, 1, Some("HTTP 503"), 500, None)
        .await
        .unwrap();
    assert_eq!(
        keys(s.due_notifications(400, 10, None).await.unwrap()),
        ["c"]
    );
    assert_eq!(s.next_notification_due().await.unwrap(), Some(300));
    s.mark_notification("c", DeliveryStatus::Failed, 5, Some("gave up"), 400, None)
        .await
        .unwrap();
    assert_eq!(s.next_notification_due().await.unwrap(), Some(500));

    let retried = s.due_notifications(500, 10, None).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].key, "a");
    assert_eq!(retried[0].attempts, 1);
    assert_eq!(retried[0].last_error.as_deref(), Some("HTTP 503"));
    let rows = s
        .release_details("r1")
        .await
        .unwrap()
        .unwrap()
        .notifications;
    let b = rows.iter().find(|n| n.key == "b").unwrap();
    assert_eq!(
        (b.status, b.sent_at, b.attempts),
        (DeliveryStatus::Sent, Some(150), 1)
    );
    let c = rows.iter().find(|n| n.key == "c").unwrap();
    assert_eq!(c.status, DeliveryStatus::Failed);

    assert!(s
        .mark_notification("nope", DeliveryStatus::Sent, 1, None, 1, Some(1))
        .await
        .is_err());
}

async fn ack_suppresses_pending_pages_only(db: Backend) {
    assert_eq!(DeliveryStatus::Suppressed.as_str(), "suppressed");
    assert_eq!(
        DeliveryStatus::parse("suppressed"),
        Some(DeliveryStatus::Suppressed)
    );
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    register(s, "payments", "v1", "p1", 1_000).await;
    s.enqueue(&[
        notification("a", "r1", 100, 100),
        notification("b", "r1", 110, 5_000),
        notification("c", "r1", 120, 120),
        notification("d", "r1", 130, 130),
        notification("x", "p1", 140, 140),
    ])
    .await
    .unwrap();
    s.mark_notification("c", DeliveryStatus::Sent, 1, None, 150, Some(150))
        .await
        .unwrap();
    s.mark_notification("d", DeliveryStatus::Failed, 5, Some("gave up"), 160, None)
        .await
        .unwrap();
    // One retry already counted on `a`: the ack keeps the count.
    s.mark_notification("a", DeliveryStatus::Pending, 1, Some("HTTP 503"), 200, None)
        .await
        .unwrap();

    s.ack("r1", &decision(2_000, "acked"), &silence())
        .await
        .unwrap()
        .unwrap();

    let rows = s
        .release_details("r1")
        .await
        .unwrap()
        .unwrap()
        .notifications;
    let row = |key: &str| rows.iter().find(|n| n.key == key).unwrap().clone();
    for (key, attempts) in [("a", 1), ("b", 0)] {
        let n = row(key);
        assert_eq!(n.status, DeliveryStatus::Suppressed, "{key}");
        assert_eq!(
            n.last_error.as_deref(),
            Some("suppressed: the release was acknowledged"),
            "{key}"
        );
        assert_eq!((n.attempts, n.sent_at), (attempts, None), "{key}");
    }
    let c = row("c");
    assert_eq!(
        (c.status, c.last_error, c.sent_at),
        (DeliveryStatus::Sent, None, Some(150))
    );
    let d = row("d");
    assert_eq!(
        (d.status, d.last_error.as_deref()),
        (DeliveryStatus::Failed, Some("gave up"))
    );
    assert_eq!(
        outbox_rows(s, &["r1", "p1"])
            .await
            .iter()
            .filter(|n| n.status == DeliveryStatus::Suppressed)
            .count(),
        2
    );

    // Another release's pages are still due; the acked release's are not.
    let keys = |rows: Vec<NotificationRecord>| rows.into_iter().map(|n| n.key).collect::<Vec<_>>();
    assert_eq!(
        keys(s.due_notifications(10_000, 10, None).await.unwrap()),
        ["x"]
    );
    assert_eq!(s.next_notification_due().await.unwrap(), Some(140));

    // Re-enqueuing a suppressed key changes nothing; a new key is stored,
    // but suppressed: the release is acked.
    assert_eq!(
        s.enqueue(&[notification("a", "r1", 3_000, 3_000)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.enqueue(&[notification("e", "r1", 3_000, 3_000)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        keys(s.due_notifications(10_000, 10, None).await.unwrap()),
        ["x"]
    );

    // Suppressed rows read back after a reopen.
    let db = db.reopen();
    let rows = db
        .store
        .release_details("r1")
        .await
        .unwrap()
        .unwrap()
        .notifications;
    assert_eq!(
        rows.iter()
            .filter(|n| n.status == DeliveryStatus::Suppressed)
            .count(),
        3
    );
}

// ---- rollbacks ------------------------------------------------------------------

/// The store writes the note the caller chose, on queued pages and on later
/// ones; a second ack's note applies from then on.
async fn an_ack_applies_the_callers_silence(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    s.enqueue(&[notification("a", "r1", 100, 100)])
        .await
        .unwrap();
    let quiet = |note: &str| Silence { note: note.into() };
    let acked = s
        .ack(
            "r1",
            &decision(2_000, "acked"),
            &quiet("hush: on-call is on it"),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(acked.acked);
    s.enqueue(&[notification("b", "r1", 3_000, 3_000)])
        .await
        .unwrap();
    s.ack("r1", &decision(4_000, "acked"), &quiet("second ack"))
        .await
        .unwrap();
    s.enqueue(&[notification("c", "r1", 5_000, 5_000)])
        .await
        .unwrap();
    // A row enqueued already final is stored as given.
    let mut sent = notification("d", "r1", 5_000, 5_000);
    sent.status = DeliveryStatus::Sent;
    s.enqueue(std::slice::from_ref(&sent)).await.unwrap();
    let notes: Vec<(String, DeliveryStatus, Option<String>)> = outbox_rows(s, &["r1"])
        .await
        .into_iter()
        .map(|n| (n.key, n.status, n.last_error))
        .collect();
    let suppressed = |key: &str, note: &str| {
        (
            key.to_string(),
            DeliveryStatus::Suppressed,
            Some(note.to_string()),
        )
    };
    assert_eq!(
        notes,
        [
            suppressed("a", "hush: on-call is on it"),
            suppressed("b", "hush: on-call is on it"),
            suppressed("c", "second ack"),
            ("d".to_string(), DeliveryStatus::Sent, None),
        ]
    );
    assert_eq!(
        s.ack("nope", &decision(1, "acked"), &silence())
            .await
            .unwrap(),
        None
    );
}

async fn request_rollback_is_recorded_once(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    let rec = rollback_record(2_000, "manual");
    assert_eq!(
        s.request_rollback("r1", &rec, &decision(2_000, "rollback_requested"))
            .await
            .unwrap(),
        RollbackRequest::Requested
    );
    let d = s.release_details("r1").await.unwrap().unwrap();
    assert_eq!(d.release.status, ReleaseStatus::RollingBack);
    assert_eq!(d.release.next_check_at, None);
    assert_eq!(d.rollback.as_ref(), Some(&rec));
    assert_eq!(d.decisions, vec![decision(2_000, "rollback_requested")]);

    let again = s
        .request_rollback(
            "r1",
            &rollback_record(3_000, "manual"),
            &decision(3_000, "rollback_requested"),
        )
        .await
        .unwrap();
    assert_eq!(again, RollbackRequest::Exists(rec.clone()));
    assert_eq!(s.release_details("r1").await.unwrap().unwrap(), d);

    assert_eq!(
        s.request_rollback("nope", &rec, &decision(3_000, "rollback_requested"))
            .await
            .unwrap(),
        RollbackRequest::NotFound
    );
}

async fn request_rollback_depends_on_the_status(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    s.transition(
        "r1",
        &[ReleaseStatus::Watching],
        ReleaseStatus::Aborted,
        &decision(2_000, "aborted"),
        2_000,
    )
    .await
    .unwrap();
    assert_eq!(
        s.request_rollback(
            "r1",
            &rollback_record(3_000, "manual"),
            &decision(3_000, "rollback_requested")
        )
        .await
        .unwrap(),
        RollbackRequest::NotAllowed(ReleaseStatus::Aborted)
    );
    assert_eq!(s.get_rollback("r1").await.unwrap(), None);

    // A verified release can still be rolled back by hand.
    register(s, "payments", "v1", "p1", 1_000).await;
    let mut t = tick(5_000);
    t.status = Some(ReleaseStatus::Verified);
    s.commit_tick("p1", &t).await.unwrap();
    assert_eq!(
        s.request_rollback(
            "p1",
            &rollback_record(6_000, "manual"),
            &decision(6_000, "rollback_requested")
        )
        .await
        .unwrap(),
        RollbackRequest::Requested
    );
    assert_eq!(release(s, "p1").await.status, ReleaseStatus::RollingBack);

    // So can a watch whose window ended without verification.
    register(s, "search", "v1", "s1", 1_000).await;
    let mut t = tick(5_000);
    t.next_check_at = None;
    s.commit_tick("s1", &t).await.unwrap();
    let s1 = release(s, "s1").await;
    assert_eq!(
        (s1.status, s1.next_check_at),
        (ReleaseStatus::Watching, None)
    );
    assert_eq!(
        s.request_rollback(
            "s1",
            &rollback_record(6_000, "manual"),
            &decision(6_000, "rollback_requested")
        )
        .await
        .unwrap(),
        RollbackRequest::Requested
    );
}

async fn only_the_first_claim_of_a_rollback_wins(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    assert!(
        !s.claim_rollback("r1", OWNER_A, 1_500, &started(1_500), &[])
            .await
            .unwrap(),
        "no rollback yet"
    );
    s.request_rollback(
        "r1",
        &rollback_record(2_000, "manual"),
        &decision(2_000, "rollback_requested"),
    )
    .await
    .unwrap();
    assert!(s
        .claim_rollback("r1", OWNER_A, 3_000, &started(3_000), &[])
        .await
        .unwrap());
    // Neither the winner nor another replica claims it again: the claim
    // never expires.
    for owner in [OWNER_A, OWNER_B] {
        assert!(!s
            .claim_rollback("r1", owner, 4_000, &started(4_000), &[])
            .await
            .unwrap());
    }
    let rb = s.get_rollback("r1").await.unwrap().unwrap();
    assert_eq!(rb.state, RollbackState::Running);
    assert_eq!(rb.started_at, Some(3_000));
    // Still not after a restart.
    let db = db.reopen();
    assert!(!db
        .store
        .claim_rollback("r1", OWNER_A, 5_000, &started(5_000), &[])
        .await
        .unwrap());
    // A claim on a release that does not exist wins nothing.
    assert!(!db
        .store
        .claim_rollback("nope", OWNER_A, 5_000, &started(5_000), &[])
        .await
        .unwrap());
}

async fn concurrent_rollback_claims_have_exactly_one_winner(db: Backend) {
    let store = db.store.clone();
    for i in 0..5 {
        let id = format!("r{i}");
        register(&*store, &format!("svc{i}"), "v1", &id, 1_000).await;
        store
            .request_rollback(
                &id,
                &rollback_record(2_000, "auto"),
                &decision(2_000, "rollback_requested"),
            )
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for n in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("r{}", n % 5);
            (
                id.clone(),
                store
                    .claim_rollback(&id, OWNER_A, 3_000 + n, &started(3_000 + n), &[])
                    .await
                    .unwrap(),
            )
        }));
    }
    let mut wins = BTreeMap::<String, usize>::new();
    for t in tasks {
        let (id, won) = t.await.unwrap();
        *wins.entry(id).or_default() += usize::from(won);
    }
    assert_eq!(wins.len(), 5);
    assert!(wins.values().all(|&w| w == 1), "{wins:?}");
    // Only the winners wrote their decision.
    for i in 0..5 {
        let id = format!("r{i}");
        let d = store.release_details(&id).await.unwrap().unwrap();
        let started = d
            .decisions
            .iter()
            .filter(|d| d.action == "rollback_started")
            .count();
        assert_eq!(started, 1, "{id}");
    }
}

async fn concurrent_rollback_claims_across_connections_have_one_winner(db: Backend) {
    // Two stores on the same data behave like two daemons sharing it.
    register(&*db.store, "checkout", "v1", "r1", 1_000).await;
    db.store
        .request_rollback(
            "r1",
            &rollback_record(2_000, "auto"),
            &decision(2_000, "rollback_requested"),
        )
        .await
        .unwrap();
    let stores: Vec<Arc<dyn Store>> = (0..4).map(|_| db.connect()).collect();
    let mut tasks = Vec::new();
    for n in 0..32 {
        let store = stores[n % stores.len()].clone();
        tasks.push(tokio::spawn(async move {
            // Each caller brings its own page: only the winner's is stored.
            let page = notification(&format!("start-{n}"), "r1", 3_000, 3_000);
            let owner = format!("replica-{}", n % 4);
            store
                .claim_rollback("r1", &owner, 3_000, &started(3_000), &[page])
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
    let d = db.store.release_details("r1").await.unwrap().unwrap();
    assert_eq!(
        d.decisions
            .iter()
            .filter(|d| d.action == DecisionAction::RollbackStarted)
            .count(),
        1
    );
    assert_eq!(d.notifications.len(), 1);
}

async fn finish_rollback_records_the_outcome_and_the_status(db: Backend) {
    let s = &*db.store;
    let cases = [
        (
            "ok",
            RollbackState::Succeeded,
            Some(0),
            ReleaseStatus::RolledBack,
            "rolled_back",
        ),
        (
            "bad",
            RollbackState::Failed,
            Some(3),
            ReleaseStatus::RollbackFailed,
            "rollback_failed",
        ),
        (
            "lost",
            RollbackState::Interrupted,
            None,
            ReleaseStatus::RollbackFailed,
            "rollback_failed",
        ),
    ];
    for (id, state, exit, status, action) in cases {
        register(s, id, "v1", id, 1_000).await;
        s.request_rollback(
            id,
            &rollback_record(2_000, "auto"),
            &decision(2_000, "rollback_requested"),
        )
        .await
        .unwrap();
        assert!(s
            .claim_rollback(id, OWNER_A, 3_000, &started(3_000), &[])
            .await
            .unwrap());
        s.finish_rollback(
            id,
            state,
            exit,
            Some("hook output"),
            &decision(4_000, action),
            &[],
            4_000,
        )
        .await
        .unwrap();
        let d = s.release_details(id).await.unwrap().unwrap();
        assert_eq!(d.release.status, status, "{id}");
        assert_eq!(d.release.ended_at, Some(4_000));
        assert_eq!(d.release.next_check_at, None);
        let rb = d.rollback.unwrap();
        assert_eq!(rb.state, state);
        assert_eq!(rb.exit_code, exit);
        assert_eq!(rb.output.as_deref(), Some("hook output"));
        assert_eq!((rb.started_at, rb.finished_at), (Some(3_000), Some(4_000)));
        assert_eq!(d.decisions.last().unwrap().action, action);
        assert!(!s
            .claim_rollback(id, OWNER_A, 5_000, &started(5_000), &[])
            .await
            .unwrap());
    }
    let mut counts = s.count_by_status().await.unwrap();
    counts.sort_by_key(|(st, _)| st.as_str());
    assert_eq!(
        counts,
        [
            (ReleaseStatus::RollbackFailed, 2),
            (ReleaseStatus::RolledBack, 1)
        ]
    );
}

async fn a_second_outcome_does_not_overwrite_the_first(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    s.request_rollback(
        "r1",
        &rollback_record(2_000, "auto"),
        &decision(2_000, "rollback_requested"),
    )
    .await
    .unwrap();
    s.claim_rollback("r1", OWNER_A, 3_000, &started(3_000), &[])
        .await
        .unwrap();
    s.finish_rollback(
        "r1",
        RollbackState::Succeeded,
        Some(0),
        Some("done"),
        &decision(4_000, "rolled_back"),
        &[],
        4_000,
    )
    .await
    .unwrap();
    let before = s.release_details("r1").await.unwrap().unwrap();
    s.finish_rollback(
        "r1",
        RollbackState::Interrupted,
        None,
        None,
        &decision(9_000, "rollback_failed"),
        &[],
        9_000,
    )
    .await
    .unwrap();
    assert_eq!(s.release_details("r1").await.unwrap().unwrap(), before);

    // No rollback to finish, or a state that is not an outcome: errors.
    register(s, "payments", "v1", "p1", 1_000).await;
    assert!(s
        .finish_rollback(
            "p1",
            RollbackState::Failed,
            None,
            None,
            &decision(1, "rollback_requested"),
            &[],
            1
        )
        .await
        .is_err());
    assert_eq!(release(s, "p1").await.status, ReleaseStatus::Watching);
    assert!(s
        .finish_rollback(
            "r1",
            RollbackState::Running,
            None,
            None,
            &decision(1, "rollback_requested"),
            &[],
            1
        )
        .await
        .is_err());
}

async fn the_rollback_claim_writes_the_winners_decision_and_pages_only(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    let written = || async {
        let d = s.release_details("r1").await.unwrap().unwrap();
        (d.decisions.len(), d.notifications.len())
    };

    // No rollback row: nobody wins, nothing is written.
    assert!(!s
        .claim_rollback(
            "r1",
            OWNER_A,
            1_500,
            &started(1_500),
            &[notification("early", "r1", 1_500, 1_500)]
        )
        .await
        .unwrap());
    assert_eq!(written().await, (0, 0));

    s.request_rollback(
        "r1",
        &rollback_record(2_000, "auto"),
        &decision(2_000, "rollback_requested"),
    )
    .await
    .unwrap();
    // A page already in the outbox under the same key is kept as it was.
    let mut existing = notification("rb-dup", "r1", 2_500, 2_500);
    existing.notifier = "webhook".into();
    s.enqueue(std::slice::from_ref(&existing)).await.unwrap();
    assert_eq!(written().await, (1, 1));

    let winner_pages = [
        notification("rb-start", "r1", 3_000, 3_000),
        notification("rb-dup", "r1", 3_000, 3_000),
    ];
    assert!(s
        .claim_rollback("r1", OWNER_A, 3_000, &started(3_000), &winner_pages)
        .await
        .unwrap());
    let d = s.release_details("r1").await.unwrap().unwrap();
    assert_eq!(
        d.decisions,
        [decision(2_000, "rollback_requested"), started(3_000)]
    );
    let keys: Vec<&str> = d.notifications.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(keys, ["rb-dup", "rb-start"]);
    assert_eq!(d.notifications[0], existing);
    assert_eq!(d.notifications[1], winner_pages[0]);
    assert_eq!(d.rollback.as_ref().unwrap().state, RollbackState::Running);

    // The loser writes neither its decision nor its pages.
    assert!(!s
        .claim_rollback(
            "r1",
            OWNER_B,
            4_000,
            &started(4_000),
            &[notification("rb-start-again", "r1", 4_000, 4_000)]
        )
        .await
        .unwrap());
    assert_eq!(written().await, (2, 2));
    assert_eq!(s.release_details("r1").await.unwrap().unwrap(), d);
}

async fn a_failing_rollback_claim_leaves_the_rollback_requested(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    s.request_rollback(
        "r1",
        &rollback_record(2_000, "auto"),
        &decision(2_000, "rollback_requested"),
    )
    .await
    .unwrap();
    let before = s.release_details("r1").await.unwrap().unwrap();
    // The second page names a release that does not exist: its foreign key
    // fails, and the whole start (move, decision, first page) is undone.
    let pages = [
        notification("rb-start", "r1", 3_000, 3_000),
        notification("ghost", "no-such-release", 3_000, 3_000),
    ];
    assert!(s
        .claim_rollback("r1", OWNER_A, 3_000, &started(3_000), &pages)
        .await
        .is_err());
    assert_eq!(s.release_details("r1").await.unwrap().unwrap(), before);
    assert_eq!(
        s.get_rollback("r1").await.unwrap().unwrap().state,
        RollbackState::Requested
    );
    // So the start can be retried, and then wins.
    assert!(s
        .claim_rollback("r1", OWNER_A, 3_100, &started(3_100), &pages[..1])
        .await
        .unwrap());
}

async fn finish_rollback_writes_its_pages_with_the_outcome_once(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    s.request_rollback(
        "r1",
        &rollback_record(2_000, "auto"),
        &decision(2_000, "rollback_requested"),
    )
    .await
    .unwrap();
    assert!(s
        .claim_rollback("r1", OWNER_A, 3_000, &started(3_000), &[])
        .await
        .unwrap());
    assert_eq!(outbox_rows(s, &["r1"]).await.len(), 0);
    let done = [
        notification("rb-done-slack", "r1", 4_000, 4_000),
        notification("rb-done-hook", "r1", 4_000, 4_000),
    ];
    s.finish_rollback(
        "r1",
        RollbackState::Succeeded,
        Some(0),
        Some("ok"),
        &decision(4_000, "rolled_back"),
        &done,
        4_000,
    )
    .await
    .unwrap();
    let after = s.release_details("r1").await.unwrap().unwrap();
    assert_eq!(after.release.status, ReleaseStatus::RolledBack);
    assert_eq!(after.notifications.len(), 2);
    for n in &done {
        assert!(after.notifications.contains(n), "{}", n.key);
    }
    assert_eq!(after.decisions.last().unwrap().action, "rolled_back");

    // A second outcome inserts nothing: no decision, no page.
    s.finish_rollback(
        "r1",
        RollbackState::Interrupted,
        None,
        None,
        &decision(9_000, "rollback_failed"),
        &[notification("rb-late", "r1", 9_000, 9_000)],
        9_000,
    )
    .await
    .unwrap();
    assert_eq!(outbox_rows(s, &["r1"]).await.len(), 2);
    assert_eq!(s.release_details("r1").await.unwrap().unwrap(), after);
}

async fn a_failing_finish_rollback_changes_nothing(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    s.request_rollback(
        "r1",
        &rollback_record(2_000, "auto"),
        &decision(2_000, "rollback_requested"),
    )
    .await
    .unwrap();
    assert!(s
        .claim_rollback("r1", OWNER_A, 3_000, &started(3_000), &[])
        .await
        .unwrap());
    let before = s.release_details("r1").await.unwrap().unwrap();
    // The good page comes first, so only a rolled-back transaction can undo it.
    let pages = [
        notification("rb-done", "r1", 4_000, 4_000),
        notification("ghost", "no-such-release", 4_000, 4_000),
    ];
    let err = s
        .finish_rollback(
            "r1",
            RollbackState::Succeeded,
            Some(0),
            Some("ok"),
            &decision(4_000, "rolled_back"),
            &pages,
            4_000,
        )
        .await
        .expect_err("the foreign key must fail");
    assert!(matches!(err, StoreError::Backend(_)), "{err}");
    let after = s.release_details("r1").await.unwrap().unwrap();
    assert_eq!(after, before);
    assert_eq!(after.release.status, ReleaseStatus::RollingBack);
    assert_eq!(after.release.ended_at, None);
    let rb = after.rollback.unwrap();
    assert_eq!((rb.state, rb.finished_at), (RollbackState::Running, None));
    assert_eq!(outbox_rows(s, &["r1"]).await.len(), 0);

    // The outcome can still be recorded afterwards.
    s.finish_rollback(
        "r1",
        RollbackState::Succeeded,
        Some(0),
        Some("ok"),
        &decision(4_100, "rolled_back"),
        &pages[..1],
        4_100,
    )
    .await
    .unwrap();
    let d = s.release_details("r1").await.unwrap().unwrap();
    assert_eq!(d.release.status, ReleaseStatus::RolledBack);
    assert_eq!(d.notifications, pages[..1]);
}

async fn request_rollback_refuses_a_release_that_is_no_longer_live(db: Backend) {
    let s = &*db.store;
    let verify = |id: &'static str, at: Millis| async move {
        let mut t = tick(at);
        t.status = Some(ReleaseStatus::Verified);
        s.commit_tick(id, &t).await.unwrap();
    };
    register(s, "checkout", "v1", "c1", 1_000).await;
    verify("c1", 1_500).await;
    // c2 is superseded by c3 (it was still watching); c1, verified, is not.
    register(s, "checkout", "v2", "c2", 2_000).await;
    register(s, "checkout", "v3", "c3", 3_000).await;
    // Later releases elsewhere do not make c3 older.
    register(s, "payments", "v8", "p8", 4_000).await;
    s.register_release(
        &new_release("checkout", "v9"),
        "staging",
        "st",
        4_000,
        5_000,
        &superseded_by("v", "st", 4_000),
    )
    .await
    .unwrap();
    assert_eq!(release(s, "c1").await.status, ReleaseStatus::Verified);
    assert_eq!(release(s, "c2").await.status, ReleaseStatus::Superseded);

    let not_latest = RollbackRequest::NotLatest {
        latest_id: "c3".into(),
        latest_version: "v3".into(),
    };
    for id in ["c1", "c2"] {
        let before = s.release_details(id).await.unwrap().unwrap();
        assert_eq!(
            s.request_rollback(
                id,
                &rollback_record(6_000, "manual"),
                &decision(6_000, "rollback_requested")
            )
            .await
            .unwrap(),
            not_latest,
            "{id}"
        );
        assert_eq!(
            s.release_details(id).await.unwrap().unwrap(),
            before,
            "{id}"
        );
        assert_eq!(s.get_rollback(id).await.unwrap(), None, "{id}");
    }
    for id in ["c1", "c2", "c3", "p8", "st"] {
        assert_eq!(s.get_rollback(id).await.unwrap(), None, "{id}");
    }

    // The latest release can still be rolled back.
    assert_eq!(
        s.request_rollback(
            "c3",
            &rollback_record(6_000, "manual"),
            &decision(6_000, "rollback_requested")
        )
        .await
        .unwrap(),
        RollbackRequest::Requested
    );
    assert_eq!(release(s, "c3").await.status, ReleaseStatus::RollingBack);

    // An existing rollback is reported as such even once a newer release exists.
    let rec = s.get_rollback("c3").await.unwrap().unwrap();
    register(s, "checkout", "v4", "c4", 7_000).await;
    assert_eq!(
        s.request_rollback(
            "c3",
            &rollback_record(8_000, "manual"),
            &decision(8_000, "rollback_requested")
        )
        .await
        .unwrap(),
        RollbackRequest::Exists(rec)
    );
    // And re-deploying an old version makes that new release the latest.
    register(s, "checkout", "v1", "c5", 9_000).await;
    assert_eq!(
        s.request_rollback(
            "c4",
            &rollback_record(9_500, "manual"),
            &decision(9_500, "rollback_requested")
        )
        .await
        .unwrap(),
        RollbackRequest::NotLatest {
            latest_id: "c5".into(),
            latest_version: "v1".into(),
        }
    );
}

// ---- queries --------------------------------------------------------------------

async fn list_releases_is_newest_first_and_filters(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "c1", 1_000).await;
    register(s, "payments", "v1", "p1", 2_000).await;
    register(s, "checkout", "v2", "c2", 3_000).await;
    // Equal timestamps: registration order decides.
    register(s, "search", "v1", "s1", 3_000).await;
    s.register_release(
        &new_release("checkout", "v9"),
        "staging",
        "st",
        3_000,
        4_000,
        &superseded_by("v", "st", 3_000),
    )
    .await
    .unwrap();

    let ids = |rs: Vec<Release>| rs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.list_releases(&ReleaseFilter::default()).await.unwrap()),
        ["st", "s1", "c2", "p1", "c1"]
    );
    let f = ReleaseFilter {
        service: Some("checkout".into()),
        ..Default::default()
    };
    assert_eq!(ids(s.list_releases(&f).await.unwrap()), ["st", "c2", "c1"]);
    let f = ReleaseFilter {
        service: Some("checkout".into()),
        environment: Some(ENV.into()),
        ..Default::default()
    };
    assert_eq!(ids(s.list_releases(&f).await.unwrap()), ["c2", "c1"]);
    let f = ReleaseFilter {
        status: Some(ReleaseStatus::Superseded),
        ..Default::default()
    };
    assert_eq!(ids(s.list_releases(&f).await.unwrap()), ["c1"]);
    let f = ReleaseFilter {
        limit: 2,
        ..Default::default()
    };
    assert_eq!(ids(s.list_releases(&f).await.unwrap()), ["st", "s1"]);
}

async fn active_releases_and_counts(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "c1", 1_000).await;
    register(s, "checkout", "v2", "c2", 2_000).await;
    register(s, "payments", "v1", "p1", 3_000).await;
    register(s, "search", "v1", "s1", 4_000).await;
    s.request_rollback(
        "p1",
        &rollback_record(5_000, "manual"),
        &decision(5_000, "rollback_requested"),
    )
    .await
    .unwrap();
    s.transition(
        "s1",
        &[ReleaseStatus::Watching],
        ReleaseStatus::Aborted,
        &decision(5_000, "aborted"),
        5_000,
    )
    .await
    .unwrap();
    let active: Vec<(String, ReleaseStatus)> = s
        .active_releases()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.status))
        .collect();
    assert_eq!(
        active,
        [
            ("c2".to_string(), ReleaseStatus::Watching),
            ("p1".to_string(), ReleaseStatus::RollingBack)
        ]
    );
    let mut counts = s.count_by_status().await.unwrap();
    counts.sort_by_key(|(st, _)| st.as_str());
    assert_eq!(
        counts,
        [
            (ReleaseStatus::Aborted, 1),
            (ReleaseStatus::RollingBack, 1),
            (ReleaseStatus::Superseded, 1),
            (ReleaseStatus::Watching, 1),
        ]
    );
}

async fn missing_things_are_none(db: Backend) {
    let s = &*db.store;
    assert_eq!(s.get_release("nope").await.unwrap(), None);
    assert_eq!(s.release_details("nope").await.unwrap(), None);
    assert_eq!(s.get_rollback("nope").await.unwrap(), None);
    assert!(s.load_checks("nope").await.unwrap().is_empty());
    assert!(s.count_by_status().await.unwrap().is_empty());
    assert!(s.active_releases().await.unwrap().is_empty());
}

/// `r1` (checkout v1) with a check, a decision and a queued page from one
/// tick, then `p7` (payments v7).
async fn checkout_ticked_and_payments(s: &dyn Store) {
    register(s, "checkout", "v1", "r1", 1_000).await;
    let mut t = tick(2_000);
    t.checks = vec![check("error_rate", CheckState::Warning, Some(0.07), 2_000)];
    t.decisions = vec![decision(2_000, "level_changed")];
    t.notifications = vec![notification("k1", "r1", 2_000, 2_000)];
    s.commit_tick("r1", &t).await.unwrap();
    register(s, "payments", "v7", "p7", 3_000).await;
}

/// `releases_details` gives what `release_details` gives for each id, in
/// the order asked, with `None` where the store holds no such release.
async fn details_of_several_releases_read_together_in_order(db: Backend) {
    let s = &*db.store;
    checkout_ticked_and_payments(s).await;
    let ids = ["p7", "nope", "r1"].map(String::from);
    let got = s.releases_details(&ids).await.unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], s.release_details("p7").await.unwrap());
    assert_eq!(got[1], None);
    assert_eq!(got[2], s.release_details("r1").await.unwrap());
    let r1 = got[2].as_ref().unwrap();
    assert_eq!(r1.checks.len(), 1);
    assert_eq!(r1.notifications.len(), 1);
    assert!(s.releases_details(&[]).await.unwrap().is_empty());
}

// ---- corrupt rows -----------------------------------------------------------------

fn assert_corrupt<T: std::fmt::Debug>(r: Result<T, StoreError>, needle: &str) {
    match r {
        Err(StoreError::Corrupt(detail)) => assert!(detail.contains(needle), "{detail}"),
        other => panic!("expected a corrupt-row error mentioning {needle:?}, got {other:?}"),
    }
}

/// Reopening the store (a restart) finds everything as it was.
async fn data_survives_closing_and_reopening(db: Backend) {
    let s = &*db.store;
    checkout_ticked_and_payments(s).await;
    s.request_rollback(
        "p7",
        &rollback_record(3_500, "manual"),
        &decision(3_500, "rollback_requested"),
    )
    .await
    .unwrap();
    let before_r1 = s.release_details("r1").await.unwrap().unwrap();
    let before_p7 = s.release_details("p7").await.unwrap().unwrap();

    let db = db.reopen();
    let s = &*db.store;
    assert_eq!(s.release_details("r1").await.unwrap().unwrap(), before_r1);
    assert_eq!(s.release_details("p7").await.unwrap().unwrap(), before_p7);
    assert_eq!(before_r1.checks.len(), 1);
    assert_eq!(before_r1.notifications.len(), 1);
    assert_eq!(
        before_p7.rollback.as_ref().unwrap().state,
        RollbackState::Requested
    );
    // What a restart resumes, and the outbox it resends.
    let active: Vec<String> = s
        .active_releases()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(active, ["r1", "p7"]);
    assert_eq!(s.next_notification_due().await.unwrap(), Some(2_000));
    // And the dedup key still holds after the restart: a redone tick pages once.
    assert_eq!(
        s.enqueue(&[notification("k1", "r1", 9_000, 9_000)])
            .await
            .unwrap(),
        0
    );
}

// ---- registration ------------------------------------------------------------

async fn every_decision_verb_reads_back_as_written(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    let written: Vec<Decision> = DecisionAction::ALL
        .iter()
        .enumerate()
        .map(|(i, &a)| Decision::new(a, 2_000 + i as Millis, a.as_str()))
        .collect();
    for d in &written {
        s.append_decision("r1", d).await.unwrap();
    }
    let read = s.release_details("r1").await.unwrap().unwrap().decisions;
    assert_eq!(read, written);
    for d in &read {
        assert_eq!(d.action.as_str(), d.reason);
    }
}

// ---- leases -------------------------------------------------------------------

/// Webhook deliveries: the first release a delivery registered is kept
/// (per source), survives reopening, and is pruned with its release.
/// A batch item registering `version` of checkout as `id` at `now`: its
/// plan records the latest version it was shown and ticks at `now + 60 s`;
/// its audit record and delivery (`d-ID`) go with it, its watch is
/// claimed by `OWNER_A`.
fn batch_item(
    version: &str,
    id: &str,
    now: Millis,
    seen: &Arc<std::sync::Mutex<Vec<Option<String>>>>,
) -> Registration {
    let seen = Arc::clone(seen);
    Registration {
        new: new_release("checkout", version),
        environment: ENV.into(),
        id: id.into(),
        now,
        plan: Box::new(move |_new: &mut NewRelease, latest: Option<&Release>| {
            seen.lock().unwrap().push(latest.map(|l| l.version.clone()));
            now + 60_000
        }),
        superseded: superseded_by(version, id, now),
        lease: Some(lease(OWNER_A, now + 30_000)),
        audit: Some(Box::new(move |r: &Registered| AuditRecord {
            at: now,
            actor: "token:ci".into(),
            action: "register".into(),
            release_id: r.release.id.clone(),
            detail: if r.created { "new watch" } else { "existing" }.into(),
            client: None,
        })),
        delivery: Some(("github".into(), format!("d-{id}"))),
    }
}

async fn a_batch_keeps_each_registrations_semantics_in_order(db: Backend) {
    let s = db.store.as_ref();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = s
        .register_batch(vec![
            batch_item("v1", "r1", 1_000, &seen),
            // The same release again, in the same batch: the existing one.
            batch_item("v1", "r1-again", 1_001, &seen),
            // A newer version in the same batch supersedes r1.
            batch_item("v2", "r2", 1_002, &seen),
        ])
        .await
        .expect("the batch is written");
    let out: Vec<_> = out.into_iter().map(|r| r.expect("each item")).collect();
    assert_eq!(
        out.iter()
            .map(|o| (
                o.registered.release.id.as_str(),
                o.registered.created,
                o.claimed
            ))
            .collect::<Vec<_>>(),
        [("r1", true, true), ("r1", false, false), ("r2", true, true)]
    );
    assert_eq!(out[2].registered.superseded, ["r1"]);
    // Each plan saw the latest release as the write found it: the earlier
    // items of the batch.
    assert_eq!(
        *seen.lock().unwrap(),
        [None, Some("v1".to_string()), Some("v1".to_string())]
    );

    let db = db.reopen();
    let s = db.store.as_ref();
    let r1 = release(s, "r1").await;
    assert_eq!(r1.status, ReleaseStatus::Superseded);
    assert_eq!(r1.superseded_by.as_deref(), Some("r2"));
    let r2 = release(s, "r2").await;
    assert_eq!(
        (r2.status, r2.next_check_at),
        (ReleaseStatus::Watching, Some(61_002))
    );
    assert!(s.get_release("r1-again").await.unwrap().is_none());
    // The new watch is OWNER_A's: another owner cannot claim it.
    assert!(!s
        .claim_watch("r2", &lease(OWNER_B, 99_000), 2_000)
        .await
        .unwrap());
    let audit: Vec<_> = s
        .audit_log(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.release_id, a.detail))
        .collect();
    assert_eq!(
        audit,
        [
            ("r1".to_string(), "new watch".to_string()),
            ("r1".to_string(), "existing".to_string()),
            ("r2".to_string(), "new watch".to_string()),
        ]
    );
    for (delivery, id) in [("d-r1", "r1"), ("d-r1-again", "r1"), ("d-r2", "r2")] {
        assert_eq!(
            s.delivery_release("github", delivery)
                .await
                .unwrap()
                .as_deref(),
            Some(id),
            "{delivery}"
        );
    }
}

async fn a_failing_batch_item_leaves_nothing_and_fails_no_other(db: Backend) {
    let s = db.store.as_ref();
    register(s, "payments", "v1", "taken", 500).await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = s
        .register_batch(vec![
            batch_item("v1", "r1", 1_000, &seen),
            // Its id is taken: this item fails on its own.
            batch_item("v2", "taken", 1_001, &seen),
            batch_item("v3", "r3", 1_002, &seen),
        ])
        .await
        .expect("the batch is written");
    assert_eq!(out.len(), 3);
    assert!(out[1].is_err(), "{:?}", out[1]);
    let ok: Vec<_> = [&out[0], &out[2]]
        .iter()
        .map(|r| {
            r.as_ref()
                .expect("the other items")
                .registered
                .release
                .id
                .clone()
        })
        .collect();
    assert_eq!(ok, ["r1", "r3"]);

    let db = db.reopen();
    let s = db.store.as_ref();
    // The failed item wrote nothing: r1 was superseded by r3, not by it,
    // and it has no audit record nor delivery.
    assert_eq!(release(s, "r1").await.superseded_by.as_deref(), Some("r3"));
    assert_eq!(release(s, "taken").await.service, "payments");
    assert_eq!(s.delivery_release("github", "d-taken").await.unwrap(), None);
    let audited: Vec<_> = s
        .audit_log(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.release_id)
        .collect();
    assert_eq!(audited, ["r1", "r3"]);
}

async fn a_delivery_keeps_its_first_release_and_goes_with_it(db: Backend) {
    let s = db.store.as_ref();
    assert_eq!(s.delivery_release("github", "d-1").await.unwrap(), None);
    register(s, "checkout", "v1", "r1", 1_000).await;
    register(s, "checkout", "v2", "r2", 2_000).await;
    s.record_delivery("github", "d-1", "r1", 1_000)
        .await
        .unwrap();
    s.record_delivery("github", "d-1", "r2", 2_000)
        .await
        .unwrap();
    s.record_delivery("gitlab", "d-1", "r2", 2_000)
        .await
        .unwrap();
    assert_eq!(
        s.delivery_release("github", "d-1")
            .await
            .unwrap()
            .as_deref(),
        Some("r1")
    );
    assert_eq!(
        s.delivery_release("gitlab", "d-1")
            .await
            .unwrap()
            .as_deref(),
        Some("r2")
    );
    let db = db.reopen();
    let s = db.store.as_ref();
    assert_eq!(
        s.delivery_release("github", "d-1")
            .await
            .unwrap()
            .as_deref(),
        Some("r1")
    );
    // r1 was superseded by r2 at 2 000: pruned with it.
    assert_eq!(s.prune_ended(10_000, 10).await.unwrap(), 1);
    assert_eq!(s.delivery_release("github", "d-1").await.unwrap(), None);
    assert_eq!(
        s.delivery_release("gitlab", "d-1")
            .await
            .unwrap()
            .as_deref(),
        Some("r2")
    );
}

async fn the_audit_log_keeps_writes_in_order_and_goes_with_the_release(db: Backend) {
    let s = db.store.as_ref();
    register(s, "checkout", "v1", "r1", 1_000).await;
    register(s, "checkout", "v2", "r2", 2_000).await;
    let rec = |at: Millis, actor: &str, action: &str, id: &str| AuditRecord {
        at,
        actor: actor.into(),
        action: action.into(),
        release_id: id.into(),
        detail: format!("{action} {id}"),
        client: Some("127.0.0.1".into()),
    };
    let written = [
        rec(1_000, "token:ci", "register", "r1"),
        rec(2_000, "webhook:github", "register", "r2"),
        rec(3_000, "token:ops", "ack", "r2"),
        rec(3_000, "token:ops", "abort", "r2"),
    ];
    for r in &written {
        s.append_audit(r).await.unwrap();
    }
    assert_eq!(s.audit_log(None, 100).await.unwrap(), written);
    assert_eq!(s.audit_log(None, 2).await.unwrap(), written[2..]);
    assert_eq!(s.audit_log(Some("r2"), 100).await.unwrap(), written[1..]);
    let db = db.reopen();
    let s = db.store.as_ref();
    assert_eq!(s.audit_log(Some("r1"), 100).await.unwrap(), written[..1]);
    // r1 (superseded at 2 000) is pruned, and its records with it.
    assert_eq!(s.prune_ended(10_000, 10).await.unwrap(), 1);
    assert_eq!(s.audit_log(None, 100).await.unwrap(), written[1..]);
}

async fn a_watch_lease_has_one_live_owner(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    assert!(s
        .claim_watch("r1", &lease(OWNER_A, 10_000), 1_000)
        .await
        .unwrap());
    // Held and live: another replica is refused, now and until it expires.
    for now in [1_000, 5_000, 9_999] {
        assert!(
            !s.claim_watch("r1", &lease(OWNER_B, now + 10_000), now)
                .await
                .unwrap(),
            "{now}"
        );
    }
    // The holder claiming again extends its own lease.
    assert!(s
        .claim_watch("r1", &lease(OWNER_A, 20_000), 9_000)
        .await
        .unwrap());
    assert!(!s
        .claim_watch("r1", &lease(OWNER_B, 30_000), 15_000)
        .await
        .unwrap());
    // No such release: nothing to claim.
    assert!(!s
        .claim_watch("nope", &lease(OWNER_A, 10_000), 1_000)
        .await
        .unwrap());
    // A lease changes nothing else about the release.
    let r = release(s, "r1").await;
    assert_eq!(
        (r.status, r.next_check_at),
        (ReleaseStatus::Watching, Some(61_000))
    );
}

async fn an_expired_watch_lease_can_be_taken_over(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    assert!(s
        .claim_watch("r1", &lease(OWNER_A, 5_000), 1_000)
        .await
        .unwrap());
    // At its expiry instant the lease is over.
    assert!(s
        .claim_watch("r1", &lease(OWNER_B, 20_000), 5_000)
        .await
        .unwrap());
    // The old holder learns it at its next renewal, and cannot take it back
    // while the new lease lives.
    assert!(!s.renew_watch("r1", &lease(OWNER_A, 25_000)).await.unwrap());
    assert!(!s
        .claim_watch("r1", &lease(OWNER_A, 25_000), 6_000)
        .await
        .unwrap());
    // Once that one expires too, it can.
    assert!(s
        .claim_watch("r1", &lease(OWNER_A, 40_000), 20_000)
        .await
        .unwrap());
}

async fn renewing_needs_the_lease_and_releasing_frees_it(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    // Nobody holds it: nothing to renew.
    assert!(!s.renew_watch("r1", &lease(OWNER_A, 10_000)).await.unwrap());
    assert!(!s
        .renew_watch("nope", &lease(OWNER_A, 10_000))
        .await
        .unwrap());
    assert!(s
        .claim_watch("r1", &lease(OWNER_A, 10_000), 1_000)
        .await
        .unwrap());
    assert!(s.renew_watch("r1", &lease(OWNER_A, 20_000)).await.unwrap());
    // The renewal moved the expiry: still live at 15 000.
    assert!(!s
        .claim_watch("r1", &lease(OWNER_B, 30_000), 15_000)
        .await
        .unwrap());
    assert!(!s.renew_watch("r1", &lease(OWNER_B, 30_000)).await.unwrap());
    // Past its expiry but not taken over, the holder may still renew.
    assert!(s.renew_watch("r1", &lease(OWNER_A, 50_000)).await.unwrap());
    // Only the holder can release it...
    s.release_watch("r1", OWNER_B).await.unwrap();
    assert!(!s
        .claim_watch("r1", &lease(OWNER_B, 60_000), 30_000)
        .await
        .unwrap());
    // ...and once released, anyone can claim it before the old expiry.
    s.release_watch("r1", OWNER_A).await.unwrap();
    assert!(!s.renew_watch("r1", &lease(OWNER_A, 60_000)).await.unwrap());
    assert!(s
        .claim_watch("r1", &lease(OWNER_B, 60_000), 30_000)
        .await
        .unwrap());
    // Releasing what one does not hold, or a missing release, is a no-op.
    s.release_watch("r1", OWNER_A).await.unwrap();
    s.release_watch("nope", OWNER_A).await.unwrap();
    assert!(s.renew_watch("r1", &lease(OWNER_B, 70_000)).await.unwrap());
}

async fn a_fenced_tick_is_written_only_by_the_lease_holder(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    let fenced = |owner: &str, now: Millis| {
        let mut t = tick(now);
        t.lease_owner = Some(owner.to_string());
        t.checks = vec![check("error_rate", CheckState::Warning, Some(0.07), now)];
        t.decisions = vec![decision(now, "level_changed")];
        t.notifications = vec![notification(&format!("k-{owner}-{now}"), "r1", now, now)];
        t
    };
    let before = s.release_details("r1").await.unwrap().unwrap();
    // Unclaimed: a fenced commit is refused.
    assert_eq!(
        s.commit_tick("r1", &fenced(OWNER_A, 2_000)).await.unwrap(),
        TickApplied::LeaseLost
    );
    assert!(s
        .claim_watch("r1", &lease(OWNER_A, 10_000), 2_000)
        .await
        .unwrap());
    // Another replica's commit is refused and writes nothing.
    assert_eq!(
        s.commit_tick("r1", &fenced(OWNER_B, 2_000)).await.unwrap(),
        TickApplied::LeaseLost
    );
    assert_eq!(s.release_details("r1").await.unwrap().unwrap(), before);
    // The holder's is written.
    assert_eq!(
        s.commit_tick("r1", &fenced(OWNER_A, 3_000)).await.unwrap(),
        TickApplied::Applied {
            rollback_requested: false
        }
    );
    let d = s.release_details("r1").await.unwrap().unwrap();
    assert_eq!(d.release.next_check_at, Some(63_000));
    assert_eq!(
        (d.checks.len(), d.decisions.len(), d.notifications.len()),
        (1, 1, 1)
    );
    // B takes the expired lease over; A, stalled meanwhile, can no longer
    // commit (even with a rollback request in its tick).
    assert!(s
        .claim_watch("r1", &lease(OWNER_B, 40_000), 10_000)
        .await
        .unwrap());
    let mut stale = fenced(OWNER_A, 11_000);
    stale.rollback = Some(rollback_record(11_000, "auto"));
    assert_eq!(
        s.commit_tick("r1", &stale).await.unwrap(),
        TickApplied::LeaseLost
    );
    assert_eq!(s.release_details("r1").await.unwrap().unwrap(), d);
    assert_eq!(s.get_rollback("r1").await.unwrap(), None);
    assert_eq!(
        s.commit_tick("r1", &fenced(OWNER_B, 12_000)).await.unwrap(),
        TickApplied::Applied {
            rollback_requested: false
        }
    );
    // A release that is no longer watching answers that first.
    s.transition(
        "r1",
        &[ReleaseStatus::Watching],
        ReleaseStatus::Aborted,
        &decision(13_000, "aborted"),
        13_000,
    )
    .await
    .unwrap();
    assert_eq!(
        s.commit_tick("r1", &fenced(OWNER_A, 14_000)).await.unwrap(),
        TickApplied::NotWatching
    );
}

async fn concurrent_watch_claims_have_one_winner(db: Backend) {
    register(&*db.store, "checkout", "v1", "r1", 1_000).await;
    let stores: Vec<Arc<dyn Store>> = (0..4).map(|_| db.connect()).collect();
    let mut tasks = Vec::new();
    for n in 0..16 {
        let store = stores[n % stores.len()].clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("replica-{n}");
            store
                .claim_watch("r1", &lease(&owner, 60_000), 2_000)
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
}

async fn an_outbox_row_is_claimed_by_one_replica_at_a_time(db: Backend) {
    let s = &*db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    s.enqueue(&[
        notification("k1", "r1", 1_000, 1_000),
        notification("k2", "r1", 1_000, 1_000),
    ])
    .await
    .unwrap();
    assert!(s
        .claim_notification("k1", &lease(OWNER_A, 5_000), 1_000)
        .await
        .unwrap());
    assert!(!s
        .claim_notification("k1", &lease(OWNER_B, 6_000), 2_000)
        .await
        .unwrap());
    // Claims are per row.
    assert!(s
        .claim_notification("k2", &lease(OWNER_B, 6_000), 2_000)
        .await
        .unwrap());
    // The holder may claim again; an expired claim is taken over.
    assert!(s
        .claim_notification("k1", &lease(OWNER_A, 5_000), 3_000)
        .await
        .unwrap());
    assert!(s
        .claim_notification("k1", &lease(OWNER_B, 9_000), 5_000)
        .await
        .unwrap());
    assert!(!s
        .claim_notification("k1", &lease(OWNER_A, 9_000), 5_500)
        .await
        .unwrap());
    // A claim does not change what is due or the row itself.
    let due = s.due_notifications(10_000, 10, None).await.unwrap();
    assert_eq!(due, outbox_rows(s, &["r1"]).await);
    assert_eq!(due[0], notification("k1", "r1", 1_000, 1_000));
    // Recording an attempt ends the claim: a retry is anyone's.
    s.mark_notification(
        "k1",
        DeliveryStatus::Pending,
        1,
        Some("HTTP 503"),
        6_000,
        None,
    )
    .await
    .unwrap();
    assert!(s
        .claim_notification("k1", &lease(OWNER_A, 9_000), 6_000)
        .await
        .unwrap());
    // A row that is no longer pending is never claimed.
    s.mark_notification("k1", DeliveryStatus::Sent, 2, None, 6_500, Some(6_500))
        .await
        .unwrap();
    assert!(!s
        .claim_notification("k1", &lease(OWNER_A, 9_000), 7_000)
        .await
        .unwrap());
    s.ack("r1", &decision(7_000, "acked"), &silence())
        .await
        .unwrap();
    assert!(!s
        .claim_notification("k2", &lease(OWNER_B, 20_000), 9_000)
        .await
        .unwrap());
    assert!(!s
        .claim_notification("nope", &lease(OWNER_A, 9_000), 7_000)
        .await
        .unwrap());
}

// ---- SQLite only: the file, its schema, its rows ----------------------------

/// A SQLite store on a file in a temporary directory, with raw access.
struct Db {
    dir: TempDir,
    store: SqliteStore,
}

impl Db {
    fn path(&self) -> PathBuf {
        self.dir.path().join("guardian.db")
    }

    /// A second, raw connection to the same file, for inspection and sabotage.
    fn raw(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path()).expect("raw connection")
    }
}

fn sqlite_db() -> Db {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("guardian.db")).expect("open");
    Db { dir, store }
}

#[tokio::test]
async fn open_creates_a_versioned_schema_in_wal_mode() {
    let db = sqlite_db();
    let raw = db.raw();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let page_size: u32 = raw.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    assert_eq!(page_size, PAGE_SIZE);
    let version: u32 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SqliteStore::schema_version());
    assert!(version >= 1);
    let mut tables: Vec<String> = raw
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables.sort();
    assert_eq!(
        tables,
        [
            "audit",
            "check_points",
            "checks",
            "decisions",
            "deliveries",
            "heartbeats",
            "notifications",
            "releases",
            "rollbacks"
        ]
    );
    assert_eq!(db.store.path(), db.path());
}

#[tokio::test]
async fn the_wal_starts_over_every_checkpoint_pages_frames() {
    // Registrations, one commit each, until they have written three times
    // `CHECKPOINT_PAGES` frames (counted from the WAL's growth over the
    // first commits): the WAL file (which keeps its size when it starts
    // over) never holds many more than `CHECKPOINT_PAGES` frames, and
    // no fewer either (checkpoints did not run sooner).
    let db = sqlite_db();
    let mut wal = db.path().as_os_str().to_owned();
    wal.push("-wal");
    let frame = u64::from(PAGE_SIZE) + 24;
    let wal_len = || std::fs::metadata(&wal).expect("the WAL file").len();
    let mut n = 0u64;
    let mut per_commit = 0u64;
    let mut largest = 0u64;
    while per_commit == 0 || n * per_commit < 3 * u64::from(CHECKPOINT_PAGES) {
        n += 1;
        let now = 1_000 + n as i64;
        register(
            &db.store,
            "checkout",
            &format!("v{n}"),
            &format!("r{n}"),
            now,
        )
        .await;
        largest = largest.max(wal_len());
        if n == 20 {
            // The first commits only append (the WAL is far from full).
            per_commit = largest / frame / n;
            assert!(per_commit > 0);
        }
    }
    let most = (u64::from(CHECKPOINT_PAGES) + 2 * per_commit) * frame + 32;
    let least = u64::from(CHECKPOINT_PAGES) * frame;
    assert!(
        (least..=most).contains(&largest),
        "the WAL reached {largest} bytes, expected {least}..={most}"
    );
    assert_eq!(
        release(&db.store, &format!("r{n}")).await.version,
        format!("v{n}")
    );
}

#[tokio::test]
async fn open_in_a_missing_directory_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("guardian.db");
    let err = SqliteStore::open(&path).err().expect("must fail");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Backend(_)), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("does not exist"), "{msg}");
}

#[tokio::test]
async fn open_refuses_a_schema_newer_than_this_build() {
    let db = sqlite_db();
    db.raw().pragma_update(None, "user_version", 99).unwrap();
    let path = db.path();
    let Db { dir, store } = db;
    drop(store);
    let err = SqliteStore::open(&path).err().expect("must fail");
    assert!(err.to_string().contains("99"), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    drop(dir);
}

#[tokio::test]
async fn every_watching_release_of_the_service_is_superseded() {
    let db = sqlite_db();
    let s = &db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    // Force two concurrent watches (e.g. left over from an older build).
    db.raw()
        .execute(
            "INSERT INTO releases (id, service, environment, version, annotations, status, started_at)
             VALUES ('r0', 'checkout', ?1, 'v0', '{}', 'watching', 500)",
            [ENV],
        )
        .unwrap();
    let reg = register(s, "checkout", "v2", "r2", 2_000).await;
    let mut superseded = reg.superseded.clone();
    superseded.sort();
    assert_eq!(superseded, ["r0", "r1"]);
    for id in ["r0", "r1"] {
        assert_eq!(release(s, id).await.superseded_by.as_deref(), Some("r2"));
    }
}

#[tokio::test]
async fn list_releases_defaults_to_one_hundred() {
    let db = sqlite_db();
    // Bulk insert through a raw connection: 105 one-transaction registrations
    // would test fsync, not the limit.
    {
        let mut raw = db.raw();
        let tx = raw.transaction().unwrap();
        for i in 0..105 {
            tx.execute(
                "INSERT INTO releases (id, service, environment, version, annotations, status, started_at)
                 VALUES (?1, ?1, 'production', 'v1', '{}', 'verified', ?2)",
                rusqlite::params![format!("r{i:03}"), i],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let all = db
        .store
        .list_releases(&ReleaseFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 100);
    assert_eq!(all[0].id, "r104");
    let f = ReleaseFilter {
        limit: 5_000,
        ..Default::default()
    };
    assert_eq!(db.store.list_releases(&f).await.unwrap().len(), 105);
}

#[tokio::test]
async fn unknown_enum_values_are_corrupt_rows_not_panics() {
    let db = sqlite_db();
    let s = &db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    let mut t = tick(2_000);
    t.checks = vec![check("error_rate", CheckState::Ok, Some(0.01), 2_000)];
    t.notifications = vec![notification("k1", "r1", 2_000, 2_000)];
    t.decisions = vec![Decision {
        level: Some(Level::Warning),
        ..decision(2_000, "level_changed")
    }];
    s.commit_tick("r1", &t).await.unwrap();
    s.request_rollback(
        "r1",
        &rollback_record(3_000, "manual"),
        &decision(3_000, "rollback_requested"),
    )
    .await
    .unwrap();
    let raw = db.raw();

    raw.execute("UPDATE checks SET state = 'melted'", [])
        .unwrap();
    assert_corrupt(s.load_checks("r1").await, "melted");
    raw.execute("UPDATE checks SET state = 'ok', tracker = '{not json'", [])
        .unwrap();
    assert_corrupt(s.load_checks("r1").await, "checks.tracker");
    raw.execute("UPDATE checks SET tracker = 'null'", [])
        .unwrap();

    raw.execute(
        "UPDATE decisions SET level = 'apocalyptic' WHERE level IS NOT NULL",
        [],
    )
    .unwrap();
    assert_corrupt(s.release_details("r1").await, "apocalyptic");
    raw.execute(
        "UPDATE decisions SET level = 'warning' WHERE level IS NOT NULL",
        [],
    )
    .unwrap();

    raw.execute("UPDATE notifications SET status = 'lost'", [])
        .unwrap();
    assert_corrupt(s.release_details("r1").await, "lost");
    raw.execute(
        "UPDATE notifications SET status = 'pending', attempts = -1",
        [],
    )
    .unwrap();
    assert_corrupt(s.due_notifications(10_000, 10, None).await, "out of range");
    raw.execute("UPDATE notifications SET attempts = 0, message = '[]'", [])
        .unwrap();
    assert_corrupt(
        s.due_notifications(10_000, 10, None).await,
        "notifications.message",
    );

    raw.execute("DELETE FROM notifications", []).unwrap();
    raw.execute("UPDATE rollbacks SET state = 'exploded'", [])
        .unwrap();
    assert_corrupt(s.get_rollback("r1").await, "exploded");
    // claim_rollback does not read the row, and must not treat it as requested.
    assert!(!s
        .claim_rollback("r1", OWNER_A, 4_000, &started(4_000), &[])
        .await
        .unwrap());
    raw.execute("UPDATE rollbacks SET state = 'requested'", [])
        .unwrap();

    raw.execute("UPDATE releases SET status = 'bogus'", [])
        .unwrap();
    assert_corrupt(s.get_release("r1").await, "bogus");
    assert_corrupt(s.list_releases(&ReleaseFilter::default()).await, "bogus");
    assert_corrupt(s.count_by_status().await, "bogus");
    assert_corrupt(s.commit_tick("r1", &tick(5_000)).await, "bogus");
    raw.execute(
        "UPDATE releases SET status = 'watching', annotations = 'oops'",
        [],
    )
    .unwrap();
    assert_corrupt(s.get_release("r1").await, "releases.annotations");
    raw.execute(
        "UPDATE releases SET annotations = '{}', started_at = 'yesterday'",
        [],
    )
    .unwrap();
    assert_corrupt(s.get_release("r1").await, "started_at");
}

#[tokio::test]
async fn an_old_database_migrates_and_keeps_its_rows() {
    // A file as the first schema version left it: an acknowledged release
    // with a queued page, and an active one.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guardian.db");
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(SqliteStore::migration_sql(0).unwrap())
            .unwrap();
        raw.pragma_update(None, "user_version", 1).unwrap();
        raw.execute_batch(
            "INSERT INTO releases (id, service, environment, version, annotations, status,
                 started_at, next_check_at, acked)
             VALUES ('old', 'checkout', 'production', 'v1', '{}', 'watching', 1000, 61000, 1),
                    ('live', 'payments', 'production', 'v1', '{}', 'watching', 1000, 61000, 0);
             INSERT INTO decisions (release_id, at, action, reason)
             VALUES ('old', 2000, 'acked', 'acknowledged');",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    let version: u32 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SqliteStore::schema_version());
    assert!(version >= 2);
    // The file keeps the page size it was created with (SQLite's default).
    let page_size: u32 = raw.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    assert_eq!(page_size, 4096);
    let d = store.release_details("old").await.unwrap().unwrap();
    assert!(d.release.acked);
    assert_eq!(d.decisions[0].action, DecisionAction::Acked);
    // The ack made before the upgrade still silences new pages, with the
    // note it was given then.
    store
        .enqueue(&[notification("late", "old", 3_000, 3_000)])
        .await
        .unwrap();
    let n = &store
        .release_details("old")
        .await
        .unwrap()
        .unwrap()
        .notifications[0];
    assert_eq!(n.status, DeliveryStatus::Suppressed);
    assert_eq!(
        n.last_error.as_deref(),
        Some("suppressed: the release was acknowledged")
    );
    // The new operations work on the old rows.
    assert!(store
        .claim_watch("live", &lease(OWNER_A, 10_000), 3_000)
        .await
        .unwrap());
    store
        .enqueue(&[notification("page", "live", 3_000, 3_000)])
        .await
        .unwrap();
    assert!(store
        .claim_notification("page", &lease(OWNER_A, 10_000), 3_000)
        .await
        .unwrap());
    // Reopening an up-to-date file runs nothing again.
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.active_releases().await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_unknown_decision_verb_is_a_corrupt_row() {
    let db = sqlite_db();
    let s = &db.store;
    register(s, "checkout", "v1", "r1", 1_000).await;
    s.append_decision("r1", &decision(2_000, "verified"))
        .await
        .unwrap();
    db.raw()
        .execute("UPDATE decisions SET action = 'page'", [])
        .unwrap();
    assert_corrupt(s.release_details("r1").await, "page");
}

#[tokio::test]
async fn open_creates_the_parent_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("guardian.db");
    let settings = StoreSettings::sqlite(&path);
    assert_eq!(settings.describe(), path.display().to_string());
    let store = release_guardian::store::open(&settings).unwrap();
    register(&*store, "checkout", "v1", "r1", 1_000).await;
    assert!(path.is_file());
    // A parent that cannot be created is an error naming it.
    let blocked = dir.path().join("file");
    std::fs::write(&blocked, "").unwrap();
    let err = release_guardian::store::open(&StoreSettings::sqlite(blocked.join("guardian.db")))
        .err()
        .expect("must fail");
    assert!(
        err.to_string().contains(&blocked.display().to_string()),
        "{err}"
    );
}
