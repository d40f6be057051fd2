//! Registrations per second against the SQLite store with 0, 10k and 100k
//! releases of the same service already stored: the cost of registering
//! (find the latest release, supersede the watching ones, insert) must not
//! grow with history.
//!
//! `cargo bench --bench intake` (release profile). Options after `--`:
//! `--sizes 0,10000,100000` (history sizes), `--seconds 3` (time per size),
//! `--without-service-status-index` (drop the schema-v3 index first, to
//! measure the lookup as it was).

use release_guardian::model::{Decision, NewRelease};
use release_guardian::store::sqlite::SqliteStore;
use release_guardian::store::Store;
use std::path::Path;
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
