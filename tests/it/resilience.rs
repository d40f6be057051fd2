//! Local faults and old news, reproduced for real: a restart that finds a
//! rollback-level breach in the gap that has since recovered, a corrupt
//! release row, a full disk under the store, and retention.

use crate::support::daemon::{minimal_config_text, Daemon};
use crate::support::{free_listen, free_port, script, serve, settings, wait_for};
use axum::extract::Query;
use axum::routing::get;
use axum::Router;
use release_guardian::clock::{Clock, SystemClock};
use release_guardian::context::Context;
use release_guardian::model::{
    rfc3339, Decision, DecisionAction, Millis, NewRelease, ReleaseStatus,
};
use release_guardian::scheduler::Guardian;
use release_guardian::store::sqlite::SqliteStore;
use release_guardian::store::Store;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const MINUTE: Millis = 60_000;

fn new_release(service: &str) -> NewRelease {
    NewRelease {
        service: service.into(),
        version: "v2".into(),
        previous_version: Some("v1".into()),
        environment: None,
        annotations: Default::default(),
    }
}

fn superseded() -> Decision {
    Decision::superseded(0, "superseded")
}

/// A stand-in for Prometheus' `query_range`: the query names a service; its
/// one series is 10 from `from` on, until `checkout_until` for `checkout`
/// (then 0 again) and to the end for any other service; 0 before `from`.
async fn breaching_prometheus(from: Millis, checkout_until: Millis) -> String {
    let app = Router::new().route(
        "/api/v1/query_range",
        get(move |Query(q): Query<HashMap<String, String>>| async move {
            let secs = |k: &str| -> f64 { q.get(k).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
            let (start, end, step) = (secs("start"), secs("end"), secs("step").max(1.0));
            let until = if q.get("query").is_some_and(|s| s.contains("checkout")) {
                checkout_until
            } else {
                Millis::MAX
            };
            let mut values = Vec::new();
            let mut t = start;
            while t <= end {
                let ms = (t * 1000.0).round() as Millis;
                let v = if ms >= from && ms < until { "10" } else { "0" };
                values.push(serde_json::json!([t, v]));
                t += step;
            }
            axum::Json(serde_json::json!({
                "status": "success",
                "data": {"resultType": "matrix", "result": [{"metric": {}, "values": values}]}
            }))
        }),
    );
    format!("http://{}", serve(app).await)
}

/// Task: restarts do not act on old news. A daemon that was down for two
/// hours finds, for `checkout`, a breach of the rollback level that ended an
/// hour ago, and for `billing` one that is still on. `billing` rolls back;
/// `checkout` does not: it pages critical with both instants and stays
/// watched, rollable by hand.
#[tokio::test(flavor = "multi_thread")]
async fn a_breach_that_recovered_while_the_daemon_was_down_pages_instead_of_rolling_back() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemClock.now();
    let started = (now - 120 * MINUTE) / MINUTE * MINUTE;
    let (breach, recovered) = (started + 30 * MINUTE, started + 60 * MINUTE);
    let prom = breaching_prometheus(breach, recovered).await;
    let log = dir.path().join("hook.log");
    let hook = script(
        dir.path(),
        "hook.sh",
        &format!("echo \"$RG_RELEASE_ID\" >> {}", log.display()),
    );
    std::fs::write(
        dir.path().join("rules.yaml"),
        "checks:\n  - name: errors\n    source: prometheus\n    query: 'errors{service=\"{{service}}\"}'\n    step: 1m\n    rollback: { above: 5 }\n",
    )
    .unwrap();
    let service = |name: &str| {
        format!(
            "[[services]]\nname = \"{name}\"\nrules = [\"rules.yaml\"]\nnotify = [\"pager\"]\n  [services.cadence]\n  tiers = [ {{ until = \"6h\", every = \"5m\" }} ]\n  [services.rollback]\n  command = [\"{}\"]\n  timeout = \"10s\"\n",
            hook.display()
        )
    };
    let toml = format!(
        "[store]\npath = \"g.db\"\n[sources.prometheus]\nurl = \"{prom}\"\n[notifiers.pager]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/\"\nmin_severity = \"critical\"\n{}{}",
        free_port(),
        service("checkout"),
        service("billing"),
    );
    let s = settings(dir.path(), &toml);
    // The previous run registered both two hours ago; its first tick (5
    // minutes later) never ran.
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("g.db")).unwrap());
    for (svc, id) in [("checkout", "r-checkout"), ("billing", "r-billing")] {
        store
            .register_release(
                &new_release(svc),
                "production",
                id,
                started,
                started + 5 * MINUTE,
                &superseded(),
            )
            .await
            .unwrap();
    }
    let ctx = Context::new(s, store.clone(), Arc::new(SystemClock));
    let g = Guardian::new(ctx.clone());
    g.start().await.unwrap();

    wait_for("billing to roll back", Duration::from_secs(30), || {
        let store = store.clone();
        async move {
            let r = store.get_release("r-billing").await.unwrap()?;
            (r.status == ReleaseStatus::RolledBack).then_some(())
        }
    })
    .await;
    let d = wait_for(
        "checkout's recovered breach to be recorded",
        Duration::from_secs(30),
        || {
            let store = store.clone();
            async move {
                let d = store.release_details("r-checkout").await.unwrap()?;
                d.decisions
                    .iter()
                    .any(|x| x.action == DecisionAction::RollbackRecommended)
                    .then_some(d)
            }
        },
    )
    .await;
    let why = &d
        .decisions
        .iter()
        .find(|x| x.action == DecisionAction::RollbackRecommended)
        .unwrap()
        .reason;
    assert!(
        why.contains(&format!("would have rolled back at {}", rfc3339(breach))),
        "{why}"
    );
    assert!(
        why.contains(&format!("recovered at {}", rfc3339(recovered))),
        "{why}"
    );
    assert_eq!(d.release.status, ReleaseStatus::Watching);
    assert!(d.rollback.is_none(), "no rollback was requested");
    assert!(
        d.release.status.can_roll_back(),
        "POST .../rollback stays open"
    );
    let page = d
        .notifications
        .iter()
        .find(|n| n.message.event == "rollback_recovered")
        .expect("a page for the recovered breach");
    assert_eq!(page.message.severity.as_str(), "critical");
    assert!(page.message.reason.contains("recovered at"));
    let hooked = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(hooked.trim(), "r-billing", "only billing's hook ran");

    ctx.shutdown.cancel();
    g.rollback_tasks().close();
    g.rollback_tasks().wait().await;
    ctx.tasks.close();
    ctx.tasks.wait().await;
}

/// Writes a config with the API on a free port, the store in `store` and
/// services `checkout` and `billing`; returns (config path, listen).
fn daemon_config(dir: &Path, store: &Path) -> (std::path::PathBuf, String) {
    let listen = free_listen();
    let text = minimal_config_text(&listen, &["checkout", "billing"]).replace(
        "path = \"g.db\"",
        &format!("path = \"{}\"", store.display()),
    );
    let config = dir.join("guardian.toml");
    std::fs::write(&config, text).unwrap();
    (config, listen)
}

async fn readyz(api: &str) -> (u16, serde_json::Value) {
    let Ok(r) = reqwest::get(format!("{api}/readyz")).await else {
        return (0, serde_json::Value::Null);
    };
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// Task: one bad row is one bad release. Two of three watches have rows the
/// daemon cannot read (broken JSON; a status this build does not know): the
/// daemon starts anyway, reports both (log, `/readyz`, metric) and resumes
/// the third.
#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_release_row_is_reported_and_every_other_watch_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    let now = SystemClock.now();
    {
        let store = SqliteStore::open(&db).unwrap();
        for (svc, id) in [("checkout", "r-good"), ("billing", "r-json")] {
            store
                .register_release(
                    &new_release(svc),
                    "production",
                    id,
                    now - MINUTE,
                    now - 1_000,
                    &superseded(),
                )
                .await
                .unwrap();
        }
        store
            .register_release(
                &new_release("search"),
                "production",
                "r-status",
                now - MINUTE,
                now - 1_000,
                &superseded(),
            )
            .await
            .unwrap();
    }
    let raw = rusqlite::Connection::open(&db).unwrap();
    raw.execute(
        "UPDATE releases SET annotations = '{not json' WHERE id = 'r-json'",
        [],
    )
    .unwrap();
    raw.execute(
        "UPDATE releases SET status = 'exploded' WHERE id = 'r-status'",
        [],
    )
    .unwrap();
    drop(raw);

    let (config, listen) = daemon_config(dir.path(), &db);
    let d = Daemon::start(&config, &listen).await; // waits for /readyz 200
    let (code, body) = readyz(&d.api).await;
    assert_eq!(code, 200, "{body}");
    let unreadable = body["unreadable_releases"].as_array().expect("a list");
    let ids: Vec<&str> = unreadable.iter().filter_map(|u| u["id"].as_str()).collect();
    assert_eq!(ids.len(), 2, "{body}");
    assert!(
        ids.contains(&"r-json") && ids.contains(&"r-status"),
        "{body}"
    );
    assert!(
        unreadable
            .iter()
            .all(|u| u["error"].as_str().is_some_and(|e| !e.is_empty())),
        "{body}"
    );
    let metrics = reqwest::get(format!("{}/metrics", d.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l == "rg_unreadable_releases 2"),
        "{metrics}"
    );
    // The good watch resumed: its overdue tick ran.
    d.release_until(
        "r-good",
        "the good watch to tick",
        Duration::from_secs(20),
        |r| {
            r["decisions"]
                .as_array()
                .is_some_and(|ds| ds.iter().any(|x| x["action"] == "resumed"))
                && r["next_check_at"].as_str().is_some()
        },
    )
    .await;
    let log = d.log();
    assert!(log.contains("r-json") && log.contains("r-status"), "{log}");
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `2M`) at a new directory under `dir`;
    /// `None` if this machine does not allow it (not root, no mount).
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let at = dir.join("small-disk");
        std::fs::create_dir_all(&at).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(at))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes zeros to `path` until the file system refuses (bounded).
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    for _ in 0..100_000 {
        if f.write_all(&chunk).and_then(|_| f.sync_all()).is_err() {
            return;
        }
    }
    panic!("{} never filled up", path.display());
}

/// Task: `/readyz` tells the truth. The store lives on a 2 MiB tmpfs; the
/// disk is filled up: `/readyz` turns 503 with the store's error; space is
/// freed: ready again.
#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_while_the_disk_under_the_store_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(dir.path(), "2M") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let db = disk.0.join("g.db");
    let (config, listen) = daemon_config(dir.path(), &db);
    let d = Daemon::start(&config, &listen).await;
    let filler = disk.0.join("filler");
    fill(&filler);
    let body = wait_for("/readyz to say 503", Duration::from_secs(30), || {
        let api = d.api.clone();
        async move {
            let (code, body) = readyz(&api).await;
            (code == 503).then_some(body)
        }
    })
    .await;
    eprintln!("/readyz while the disk is full: {body}");
    assert!(
        body["detail"]["store_write_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    std::fs::remove_file(&filler).unwrap();
    wait_for("/readyz to say 200 again", Duration::from_secs(30), || {
        let api = d.api.clone();
        async move { (readyz(&api).await.0 == 200).then_some(()) }
    })
    .await;
    drop(d);
    drop(disk);
}

/// Task: retention. Releases that ended before the retention are deleted
/// with their checks, decisions and pages; recent and active ones stay.
#[tokio::test(flavor = "multi_thread")]
async fn ended_releases_past_the_retention_are_pruned_with_their_history() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(
        dir.path(),
        "[store]\npath = \"g.db\"\nretention = \"30d\"\n[[services]]\nname = \"checkout\"\n[[services]]\nname = \"billing\"\n[[services]]\nname = \"search\"\n",
    );
    assert_eq!(s.retention, Duration::from_secs(30 * 24 * 3600));
    let db = dir.path().join("g.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let now = SystemClock.now();
    let day: Millis = 24 * 3600 * 1000;
    // checkout: v1 ended 40 days ago (superseded by v2, aborted 35 days ago);
    // billing: aborted 10 days ago; search: still watching since 50 days.
    let old = now - 40 * day;
    store
        .register_release(
            &new_release("checkout"),
            "production",
            "r-old",
            old - day,
            old,
            &superseded(),
        )
        .await
        .unwrap();
    let mut v3 = new_release("checkout");
    v3.version = "v3".into();
    store
        .register_release(
            &v3,
            "production",
            "r-older-end",
            old,
            old,
            &Decision::superseded(old, "v3"),
        )
        .await
        .unwrap();
    store
        .transition(
            "r-older-end",
            &[ReleaseStatus::Watching],
            ReleaseStatus::Aborted,
            &Decision::aborted(now - 35 * day, "aborted"),
            now - 35 * day,
        )
        .await
        .unwrap()
        .unwrap();
    store
        .register_release(
            &new_release("billing"),
            "production",
            "r-recent",
            now - 11 * day,
            now,
            &superseded(),
        )
        .await
        .unwrap();
    store
        .transition(
            "r-recent",
            &[ReleaseStatus::Watching],
            ReleaseStatus::Aborted,
            &Decision::aborted(now - 10 * day, "aborted"),
            now - 10 * day,
        )
        .await
        .unwrap()
        .unwrap();
    store
        .register_release(
            &new_release("search"),
            "production",
            "r-active",
            now - 50 * day,
            now + day,
            &superseded(),
        )
        .await
        .unwrap();

    let ctx = Context::new(s, store.clone(), Arc::new(SystemClock));
    let g = Guardian::new(ctx.clone());
    assert_eq!(g.prune_once().await.unwrap(), 2);
    assert!(store.get_release("r-old").await.unwrap().is_none());
    assert!(store.get_release("r-older-end").await.unwrap().is_none());
    assert!(store.get_release("r-recent").await.unwrap().is_some());
    assert!(store.get_release("r-active").await.unwrap().is_some());
    let raw = rusqlite::Connection::open(&db).unwrap();
    for table in ["checks", "decisions", "notifications", "rollbacks"] {
        let left: i64 = raw
            .query_row(
                &format!(
                    "SELECT COUNT(*) FROM {table} WHERE release_id IN ('r-old', 'r-older-end')"
                ),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0, "{table}");
    }
    // Nothing more to prune.
    assert_eq!(g.prune_once().await.unwrap(), 0);
}

/// The wall clock plus an offset a test moves: a clock that jumps.
#[derive(Default)]
struct JumpClock {
    offset: std::sync::atomic::AtomicI64,
}

impl JumpClock {
    fn jump(&self, by: Millis) {
        self.offset
            .fetch_add(by, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for JumpClock {
    fn now(&self) -> Millis {
        SystemClock.now() + self.offset.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A service `checkout` without checks ticking every 200 ms for 2 s, a
/// release of it registered now, and its guardian started on `clock`.
/// Waits for the first tick; returns (guardian, context, store, when the
/// release was registered, monotonic).
async fn watched_on(
    dir: &Path,
    clock: Arc<JumpClock>,
) -> (
    Arc<Guardian>,
    Arc<Context>,
    Arc<dyn Store>,
    std::time::Instant,
) {
    let s = settings(
        dir,
        "[store]\npath = \"g.db\"\n[[services]]\nname = \"checkout\"\n  [services.cadence]\n  tiers = [ { until = \"2s\", every = \"200ms\" } ]\n",
    );
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("g.db")).unwrap());
    let registered = std::time::Instant::now();
    let now = clock.now();
    store
        .register_release(
            &new_release("checkout"),
            "production",
            "r1",
            now,
            now + 200,
            &superseded(),
        )
        .await
        .unwrap();
    let ctx = Context::new(s, store.clone(), clock);
    let g = Guardian::new(ctx.clone());
    g.start().await.unwrap();
    wait_for("the first tick", Duration::from_secs(10), || {
        let ctx = ctx.clone();
        async move { (ctx.telemetry.ticks.get() >= 1).then_some(()) }
    })
    .await;
    (g, ctx, store, registered)
}

async fn verified(store: &Arc<dyn Store>, timeout: Duration) -> release_guardian::model::Release {
    wait_for("the release to be verified", timeout, || {
        let store = store.clone();
        async move {
            let r = store.get_release("r1").await.unwrap()?;
            (r.status == ReleaseStatus::Verified).then_some(r)
        }
    })
    .await
}

async fn stop(ctx: &Arc<Context>) {
    ctx.shutdown.cancel();
    ctx.tasks.close();
    ctx.tasks.wait().await;
}

/// Task: time. The wall clock jumps an hour forward after the first tick:
/// the watch neither fires its ticks early nor ends early — it is verified
/// after its 2 s of ticks, not at once — and the verdict is stamped with
/// the (jumped) wall clock.
#[tokio::test(flavor = "multi_thread")]
async fn a_wall_clock_jump_forward_does_not_end_a_watch_early() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(JumpClock::default());
    let (_g, ctx, store, registered) = watched_on(dir.path(), clock.clone()).await;
    let hour: Millis = 3_600_000;
    clock.jump(hour);
    let r = verified(&store, Duration::from_secs(20)).await;
    let took = registered.elapsed();
    assert!(
        took >= Duration::from_millis(1_900),
        "verified {took:?} after registration: the window is 2 s"
    );
    assert!(
        ctx.telemetry.ticks.get() >= 5,
        "the cadence's ticks ran (10 due; a slow tick may skip one): {}",
        ctx.telemetry.ticks.get()
    );
    let ended = r.ended_at.unwrap();
    assert!(
        ended >= r.started_at + hour,
        "the record carries the wall clock: ended {ended}, started {}",
        r.started_at
    );
    stop(&ctx).await;
}

/// Task: time. The wall clock jumps an hour back after the first tick: the
/// watch does not stall for that hour; it ends after its 2 s of ticks.
#[tokio::test(flavor = "multi_thread")]
async fn a_wall_clock_jump_backward_does_not_stall_a_watch() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(JumpClock::default());
    let (_g, ctx, store, registered) = watched_on(dir.path(), clock.clone()).await;
    clock.jump(-3_600_000);
    verified(&store, Duration::from_secs(20)).await;
    let took = registered.elapsed();
    assert!(took >= Duration::from_millis(1_900), "{took:?}");
    assert!(
        ctx.telemetry.ticks.get() >= 8,
        "{}",
        ctx.telemetry.ticks.get()
    );
    stop(&ctx).await;
}
