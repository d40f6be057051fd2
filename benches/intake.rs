//! Registrations per second against the SQLite store with 0, 10k and 100k
//! releases of the same service already stored: the cost of registering
//! (find the latest release, supersede the watching ones, insert) must not
//! grow with history.
//!
//! `cargo bench --bench intake` (release profile). Options after `--`:
//! `--sizes 0,10000,100000` (history sizes), `--seconds 3` (time per size),
//! `--without-service-status-index` (drop the schema-v3 index first, to
//! measure the lookup as it was).
//!
//! `cargo bench --bench intake -- --ticks 10000` measures ticks instead:
//! 10,000 watching releases, then one `commit_tick` for each, all at once
//! from 10,000 tasks (what 10,000 watches ticking together ask of the
//! store), and prints ticks/s. Count the syncs the ticks cost with
//! `strace -f -c -e trace=fsync,fdatasync` around the bench binary.

use release_guardian::model::{Decision, NewRelease, Release};
use release_guardian::store::sqlite::SqliteStore;
use release_guardian::store::{Registration, Store, TickApplied, TickCommit};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Fills `db` with `n` ended releases of `checkout` in production (raw
/// inserts, one transaction), the newest of them still `watching`.
fn prefill(db: &Path, n: usize) {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO releases (id, service, environment, version, previous_version,
                     annotations, status, started_at, next_check_at, ended_at, acked, superseded_by)
                 VALUES (?1, 'checkout', 'production', ?2, NULL, '{}', ?3, ?4, ?5, ?6, 0, ?7)",
            )
            .unwrap();
        for i in 0..n {
            let last = i + 1 == n;
            let started = i as i64 * 1_000;
            insert
                .execute(rusqlite::params![
                    format!("old-{i}"),
                    format!("v{i}"),
                    if last { "watching" } else { "superseded" },
                    started,
                    last.then_some(started + 300_000),
                    (!last).then_some(started + 1_000),
                    (!last).then(|| format!("old-{}", i + 1)),
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// `n` concurrent ticks, one per watching release: ticks/s.
fn ticks(rt: &tokio::runtime::Runtime, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("g.db")).unwrap());
    let elapsed = rt.block_on(async {
        // The releases, registered in batches (not timed).
        for chunk in (0..n).collect::<Vec<_>>().chunks(256) {
            let items = chunk
                .iter()
                .map(|&i| Registration {
                    new: NewRelease {
                        service: format!("s{i}"),
                        version: "v1".into(),
                        previous_version: None,
                        environment: None,
                        annotations: Default::default(),
                    },
                    environment: "production".into(),
                    id: format!("r{i}"),
                    now: 1_000,
                    plan: Box::new(|_: &mut NewRelease, _: Option<&Release>| 61_000),
                    superseded: Decision::superseded(1_000, "superseded"),
                    lease: None,
                    audit: None,
                    delivery: None,
                })
                .collect();
            for r in store.register_batch(items).await.unwrap() {
                r.unwrap();
            }
        }
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let tick = TickCommit {
                        now: 2_000,
                        next_check_at: Some(62_000 + i as i64),
                        ..Default::default()
                    };
                    store.commit_tick(&format!("r{i}"), &tick).await.unwrap()
                })
            })
            .collect();
        for task in tasks {
            let applied = task.await.unwrap();
            assert!(matches!(applied, TickApplied::Applied { .. }));
        }
        t0.elapsed()
    });
    println!(
        "{n} concurrent ticks: {:.0} ticks/s ({n} in {:.2} s)",
        n as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sizes: Vec<usize> = arg(&args, "--sizes")
        .unwrap_or_else(|| "0,10000,100000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("--sizes: numbers"))
        .collect();
    let seconds: f64 = arg(&args, "--seconds")
        .map(|s| s.parse().expect("--seconds: a number"))
        .unwrap_or(3.0);
    let without_index = args.iter().any(|a| a == "--without-service-status-index");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Some(n) = arg(&args, "--ticks") {
        ticks(&rt, n.parse().expect("--ticks: a number"));
        return;
    }
    println!(
        "registrations/s by stored releases of the same service{}",
        if without_index {
            " (without releases_by_service_status)"
        } else {
            ""
        }
    );
    for n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("g.db");
        drop(SqliteStore::open(&db).unwrap()); // schema
        prefill(&db, n);
        if without_index {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch("DROP INDEX releases_by_service_status")
                .unwrap();
        }
        let store = SqliteStore::open(&db).unwrap();
        let superseded = Decision::superseded(0, "superseded by a newer release");
        let budget = Duration::from_secs_f64(seconds);
        let (count, elapsed) = rt.block_on(async {
            let t0 = Instant::now();
            let mut count = 0usize;
            while t0.elapsed() < budget && count < 1_000_000 {
                let new = NewRelease {
                    service: "checkout".into(),
                    version: format!("new-{count}"),
                    previous_version: None,
                    environment: None,
                    annotations: Default::default(),
                };
                let now = 1_000_000_000_000 + count as i64;
                let r = store
                    .register_release(
                        &new,
                        "production",
                        &format!("new-{count}"),
                        now,
                        now + 300_000,
                        &superseded,
                    )
                    .await
                    .unwrap();
                // The newest stored release (or the previous new one) is
                // superseded; with nothing stored, the first supersedes none.
                let expected = usize::from(n > 0 || count > 0);
                assert!(r.created && r.superseded.len() == expected);
                count += 1;
            }
            (count, t0.elapsed())
        });
        println!(
            "{n:>8} stored: {:>8.0} registrations/s ({count} in {:.2} s)",
            count as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64()
        );
    }
}
