//! Group commit of registrations through the real daemon: many
//! registrations at once each get their own answer, and every 201 is
//! durable when it is answered (`kill -9` right after the last one loses
//! none of them, nor their audit records); the watches they start and
//! stop follow commit order; a 201 shows what a read shows.

use crate::support::{free_listen, metric_value, minimal_config, wait_for, Daemon};
use release_guardian::model::ReleaseStatus;
use release_guardian::store::sqlite::SqliteStore;
use release_guardian::store::{ReleaseFilter, Store};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

/// Posts `bodies` to `/v1/releases` all at once; (status, body) of each.
async fn post_all(api: &str, bodies: Vec<Value>) -> Vec<(u16, Value)> {
    let http = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, body) in bodies.into_iter().enumerate() {
        let (http, url) = (http.clone(), format!("{api}/v1/releases"));
        tasks.spawn(async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            (i, status, r.json::<Value>().await.unwrap())
        });
    }
    let mut out = tasks.join_all().await;
    out.sort_by_key(|(i, _, _)| *i);
    out.into_iter().map(|(_, s, b)| (s, b)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_registrations_at_once_are_all_durable_when_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (config, listen) = minimal_config(dir.path());
    let mut d = Daemon::start(&config, &listen).await;
    let answers = post_all(
        &d.api,
        (0..200)
            .map(|i| json!({"service": "checkout", "version": format!("v{i}")}))
            .collect(),
    )
    .await;
    // Crash right after the last answer: no shutdown path runs.
    d.kill9();
    let ids: Vec<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 201, "{body}");
            body["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        200,
        "distinct ids"
    );

    let store = SqliteStore::open(&dir.path().join("g.db")).unwrap();
    let stored = store
        .list_releases(&ReleaseFilter {
            service: Some("checkout".into()),
            limit: 1000,
            ..ReleaseFilter::default()
        })
        .await
        .unwrap();
    let stored_ids: HashSet<&str> = stored.iter().map(|r| r.id.as_str()).collect();
    for id in &ids {
        assert!(stored_ids.contains(id.as_str()), "release {id} lost");
        let audit = store.audit_log(Some(id), 10).await.unwrap();
        assert_eq!(audit.len(), 1, "audit of {id}: {audit:?}");
        assert_eq!(audit[0].action, "register");
        assert!(audit[0].detail.ends_with("new watch"), "{:?}", audit[0]);
    }
    assert_eq!(stored.len(), 200);
    // Each registration superseded the one before it: one watch is left,
    // the newest, and every other release names the one that replaced it.
    let watching: Vec<&str> = stored
        .iter()
        .filter(|r| r.status == ReleaseStatus::Watching)
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(watching, [stored[0].id.as_str()], "newest first");
    for r in &stored[1..] {
        assert_eq!(r.status, ReleaseStatus::Superseded, "{r:?}");
        assert!(stored_ids.contains(r.superseded_by.as_deref().unwrap()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_release_sent_many_times_at_once_starts_one_watch() {
    let dir = tempfile::tempdir().unwrap();
    let (config, listen) = minimal_config(dir.path());
    let d = Daemon::start(&config, &listen).await;
    let answers = post_all(
        &d.api,
        (0..20)
            .map(|_| json!({"service": "checkout", "version": "v1"}))
            .collect(),
    )
    .await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 1, "{answers:?}");
    assert!(
        answers.iter().all(|(s, _)| *s == 201 || *s == 200),
        "{answers:?}"
    );
    let ids: HashSet<&str> = answers
        .iter()
        .map(|(_, b)| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    let list = d.get("/v1/releases?service=checkout").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["status"], "watching");
    // One audit record per request, all on the one release.
    let audit = d.get("/v1/audit").await;
    assert_eq!(audit.as_array().map(Vec::len), Some(20), "{audit}");
}

/// A config with one service `checkout` whose check `live` (a probe) would
/// first tick in an hour: watches start and wait, doing nothing meanwhile.
fn waiting_config(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    std::fs::write(
        dir.join("rules.yaml"),
        "checks:\n  - name: live\n    source: probe\n    probe: live\n    critical: { failures: 3 }\n",
    )
    .unwrap();
    let listen = free_listen();
    let config = dir.join("guardian.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "{listen}"
[store]
path = "g.db"
[[services]]
name = "checkout"
rules = ["rules.yaml"]
  [services.cadence]
  tiers = [ {{ until = "6h", every = "1h" }} ]
  [[services.probes]]
  name = "live"
  url = "http://127.0.0.1:9/never-probed"
"#
        ),
    )
    .unwrap();
    (config, listen)
}

/// The writer stops the superseded watches and starts the new one in
/// commit order, from the rows it wrote: after 200 registrations at once,
/// each superseding the one before, one watch task is left (the newest),
/// not one per superseded release waiting an hour for its first tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registrations_at_once_leave_only_the_newest_watch_running() {
    let dir = tempfile::tempdir().unwrap();
    let (config, listen) = waiting_config(dir.path());
    let d = Daemon::start(&config, &listen).await;
    let answers = post_all(
        &d.api,
        (0..200)
            .map(|i| json!({"service": "checkout", "version": format!("v{i}")}))
            .collect(),
    )
    .await;
    assert!(answers.iter().all(|(s, _)| *s == 201), "{answers:?}");
    wait_for(
        "one watch task left (rg_watch_tasks and rg_active_watches 1)",
        Duration::from_secs(20),
        || async {
            let m = d.metrics().await;
            (metric_value(&m, "rg_watch_tasks") == Some(1.0)
                && metric_value(&m, "rg_active_watches") == Some(1.0))
            .then_some(())
        },
    )
    .await;
    let newest = d.get("/v1/releases?service=checkout&limit=1").await;
    assert_eq!(newest[0]["status"], "watching", "{newest}");
    let watching = d.get("/v1/releases?status=watching").await;
    assert_eq!(watching.as_array().map(Vec::len), Some(1), "{watching}");
}

/// A 201 is answered from what the registration's commit wrote, not read
/// back: it is exactly what `GET /v1/releases/{id}` shows right after
/// (lineage completed from the release before, the configured check
/// pending, the annotations, the one audit record).
#[tokio::test]
async fn a_new_release_is_answered_as_reading_it_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let (config, listen) = waiting_config(dir.path());
    let d = Daemon::start(&config, &listen).await;
    let (status, _) = d
        .post(
            "/v1/releases",
            json!({"service": "checkout", "version": "v1"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, created) = d
        .post(
            "/v1/releases",
            json!({
                "service": "checkout",
                "version": "v2",
                "annotations": {"commit": "abc123", "pipeline": {"id": 7}}
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let read = d
        .get(&format!("/v1/releases/{}", created["id"].as_str().unwrap()))
        .await;
    assert_eq!(created, read);
    assert_eq!(created["previous_version"], "v1", "{created}");
    assert_eq!(created["status"], "watching", "{created}");
    assert_eq!(created["checks"][0]["name"], "live", "{created}");
    assert_eq!(created["checks"][0]["state"], "pending", "{created}");
    assert_eq!(created["annotations"]["pipeline"]["id"], 7, "{created}");
    let audit = created["audit"].as_array().expect("audit records");
    assert_eq!(audit.len(), 1, "{created}");
    assert_eq!(audit[0]["detail"], "version v2: new watch", "{created}");
    // The same release again: 200 with the release as it is now.
    let (status, again) = d
        .post(
            "/v1/releases",
            json!({"service": "checkout", "version": "v2"}),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], created["id"]);
    assert_eq!(again["audit"].as_array().map(Vec::len), Some(2), "{again}");
}
