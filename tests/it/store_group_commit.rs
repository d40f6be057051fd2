//! Group commit in the SQLite store: many concurrent writes share commits,
//! each gets its own result, each is durable (visible from another
//! connection) by the time its answer arrives, and a write that fails does
//! not fail the others of its batch. The batch runner's own cases (a
//! panicking job, a commit that fails) are unit tests in
//! `src/store/sqlite_batch.rs`.

use futures_util::future::join_all;
use release_guardian::model::{
    Decision, DecisionAction, Millis, NewRelease, Release, ReleaseStatus,
};
use release_guardian::store::sqlite::SqliteStore;
use release_guardian::store::{Lease, Registration, Store, TickApplied, TickCommit};
use std::sync::Arc;

const ENV: &str = "production";

/// Release `id`: `version` of `service`, first tick at 61 s.
fn registration(service: String, version: String, id: String) -> Registration {
    Registration {
        new: NewRelease {
            service,
            version,
            previous_version: None,
            environment: None,
            annotations: Default::default(),
        },
        environment: ENV.into(),
        id,
        now: 1_000,
        plan: Box::new(|_: &mut NewRelease, _: Option<&Release>| 61_000),
        superseded: Decision::superseded(1_000, "superseded"),
        lease: None,
        audit: None,
        delivery: None,
    }
}

/// `n` watching releases `r0..r{n-1}` (services `s0..`, so none supersedes
/// another), registered in one batch.
async fn releases(store: &SqliteStore, n: usize) {
    let items = (0..n)
        .map(|i| registration(format!("s{i}"), "v1".into(), format!("r{i}")))
        .collect();
    for result in store.register_batch(items).await.unwrap() {
        result.unwrap();
    }
}

fn tick(i: usize) -> TickCommit {
    TickCommit {
        now: 2_000,
        next_check_at: Some(100_000 + i as Millis),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_ticks_from_many_tasks_share_commits_and_each_is_durable_when_answered() {
    const N: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guardian.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    releases(&store, N).await;
    // Every tenth release is no longer watching: its tick writes nothing.
    let aborted = Decision::new(DecisionAction::Aborted, 1_500, "aborted");
    for i in (0..N).step_by(10) {
        store
            .transition(
                &format!("r{i}"),
                &[ReleaseStatus::Watching],
                ReleaseStatus::Aborted,
                &aborted,
                1_500,
            )
            .await
            .unwrap()
            .unwrap();
    }
    // Another connection to the same file: it sees committed data only.
    let other = Arc::new(SqliteStore::open(&path).unwrap());
    let commits_before = store.commits();

    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (store, other) = (store.clone(), other.clone());
            tokio::spawn(async move {
                let id = format!("r{i}");
                let applied = store.commit_tick(&id, &tick(i)).await.unwrap();
                let seen = other.get_release(&id).await.unwrap().unwrap();
                (i, applied, seen.next_check_at)
            })
        })
        .collect();
    for task in tasks {
        let (i, applied, next_check_at) = task.await.unwrap();
        if i % 10 == 0 {
            assert_eq!(applied, TickApplied::NotWatching, "r{i}");
            assert_eq!(next_check_at, None, "r{i} was aborted");
        } else {
            let written = TickApplied::Applied {
                rollback_requested: false,
            };
            assert_eq!(applied, written, "r{i}");
            // Durable and visible elsewhere by the time it was answered.
            assert_eq!(next_check_at, Some(100_000 + i as Millis), "r{i}");
        }
    }
    let commits = store.commits() - commits_before;
    // One commit per tick was the store before group commit.
    assert!(
        commits <= N as u64 / 2,
        "{commits} commits for {N} concurrent ticks"
    );

    // Everything survives closing and reopening the file.
    drop((store, other));
    let reopened = SqliteStore::open(&path).unwrap();
    let watching = reopened.active_releases().await.unwrap();
    assert_eq!(watching.len(), N - N / 10);
    for r in watching {
        let i: usize = r.id[1..].parse().unwrap();
        assert_eq!(r.next_check_at, Some(100_000 + i as Millis), "{}", r.id);
    }
}

#[tokio::test]
async fn a_write_that_fails_does_not_fail_the_others_of_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guardian.db");
    let store = SqliteStore::open(&path).unwrap();
    releases(&store, 40).await;
    for i in 0..40 {
        let lease = Lease::new("replica-a", 1_000_000);
        assert!(store
            .claim_watch(&format!("r{i}"), &lease, 2_000)
            .await
            .unwrap());
    }
    let commits_before = store.commits();
    // Hold the write lock from another connection while every write is
    // sent: the store thread waits for it on its first batch, and the rest
    // queue behind into the next one.
    let lock = rusqlite::Connection::open(&path).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();

    let note = Decision::new(DecisionAction::Resumed, 3_000, "a note");
    let store = &store;
    let writes = (0..40).map(|i| {
        let note = note.clone();
        async move {
            let id = format!("r{i}");
            match i % 4 {
                // A tick fenced by a lease it does not hold: nothing written.
                0 => {
                    let tick = TickCommit {
                        lease_owner: Some("replica-b".into()),
                        ..tick(i)
                    };
                    format!("{:?}", store.commit_tick(&id, &tick).await)
                }
                // A decision on a release that does not exist: an error.
                1 => format!("{:?}", store.append_decision("missing", &note).await),
                // Fenced by the lease it holds: written.
                2 => {
                    let tick = TickCommit {
                        lease_owner: Some("replica-a".into()),
                        ..tick(i)
                    };
                    format!("{:?}", store.commit_tick(&id, &tick).await)
                }
                _ => format!("{:?}", store.append_decision(&id, &note).await),
            }
        }
    });
    let mut all = std::pin::pin!(join_all(writes));
    // One poll sends every write to the store's queue.
    tokio::select! {
        biased;
        _ = &mut all => panic!("answered while another connection held the write lock"),
        () = std::future::ready(()) => {}
    }
    lock.execute_batch("COMMIT").unwrap();
    let answers = all.await;

    for (i, answer) in answers.iter().enumerate() {
        match i % 4 {
            0 => assert_eq!(answer, "Ok(LeaseLost)", "write {i}"),
            1 => assert!(answer.starts_with("Err("), "write {i}: {answer}"),
            2 => assert_eq!(
                answer, "Ok(Applied { rollback_requested: false })",
                "write {i}"
            ),
            _ => assert_eq!(answer, "Ok(())", "write {i}"),
        }
    }
    // The first batch (what the thread took before the lock was released)
    // and the rest: two commits at most for 40 writes.
    let commits = store.commits() - commits_before;
    assert!((1..=2).contains(&commits), "{commits} commits");
    let other = SqliteStore::open(&path).unwrap();
    for i in 0..40 {
        let id = format!("r{i}");
        let release = other.get_release(&id).await.unwrap().unwrap();
        let expected = (i % 4 == 2).then_some(100_000 + i as Millis);
        let expected = expected.or(Some(61_000));
        assert_eq!(release.next_check_at, expected, "{id}");
        let details = other.release_details(&id).await.unwrap().unwrap();
        let notes = details
            .decisions
            .iter()
            .filter(|d| d.reason == "a note")
            .count();
        assert_eq!(notes, usize::from(i % 4 == 3), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_writer_answers_batches_in_commit_order_each_after_its_hooks() {
    use release_guardian::store::group_commit::GroupCommit;
    use std::sync::Mutex;
    const N: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("guardian.db")).unwrap());
    // What the writer's hook saw, in the order it was called.
    let hooked = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = hooked.clone();
    let writer = GroupCommit::start(
        store.clone(),
        Box::new(move |written| {
            seen.lock()
                .unwrap()
                .push(written.registered.release.id.clone())
        }),
    );
    // One service: each registration supersedes the one committed before it,
    // so commit order shows in the store as well as in the hook.
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (writer, hooked) = (writer.clone(), hooked.clone());
            tokio::spawn(async move {
                let written = writer
                    .register(registration(
                        "checkout".into(),
                        format!("v{i}"),
                        format!("r{i}"),
                    ))
                    .await
                    .unwrap();
                // Answered only after its own hook ran.
                let id = written.registered.release.id.clone();
                assert!(
                    hooked.lock().unwrap().contains(&id),
                    "{id} answered before its hook"
                );
                written.registered
            })
        })
        .collect();
    let mut registered = Vec::new();
    for task in tasks {
        registered.push(task.await.unwrap());
    }
    // The store's order: oldest first.
    let mut stored = store
        .list_releases(&release_guardian::store::ReleaseFilter {
            limit: 1_000,
            ..Default::default()
        })
        .await
        .unwrap();
    stored.reverse();
    let order: Vec<String> = stored.iter().map(|r| r.id.clone()).collect();
    assert_eq!(order.len(), N);
    assert_eq!(*hooked.lock().unwrap(), order, "hooks out of commit order");
    // Each superseded exactly the one committed before it.
    for reg in &registered {
        let at = order.iter().position(|id| *id == reg.release.id).unwrap();
        let before: Vec<String> = order[..at].iter().rev().take(1).cloned().collect();
        assert_eq!(reg.superseded, before, "{}", reg.release.id);
    }
    let commits = store.commits();
    assert!(
        commits < N as u64,
        "{commits} commits for {N} registrations"
    );
}
