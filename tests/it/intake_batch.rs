//! Group commit of registrations through the real daemon: many
//! registrations at once each get their own answer, and every 201 is
//! durable when it is answered (`kill -9` right after the last one loses
//! none of them, nor their audit records).

use crate::support::{minimal_config, Daemon};
use release_guardian::model::ReleaseStatus;
use release_guardian::store::sqlite::SqliteStore;
use release_guardian::store::{ReleaseFilter, Store};
use serde_json::{json, Value};
use std::collections::HashSet;

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
