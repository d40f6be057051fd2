//! Nothing outside the service makes the guardian blame it: with the
//! guardian's own descriptors exhausted (EMFILE), a probe of a healthy
//! service is *inconclusive*, never a failed sample, a Prometheus query is a
//! source error, and a watch whose probe check rolls back after one failure
//! does not roll the release back.
//!
//! The descriptors are exhausted for real: each test runs itself again in a
//! child process started under `prlimit --nofile=N` (a limit the child can
//! reach with a bounded loop), which then opens `/dev/null` until `open`
//! fails with EMFILE. Exhausting the descriptors of the whole test process
//! would break every test running beside it.

use crate::support::{script, serve, settings, stdout_and_stderr, wait_for};
use release_guardian::clock::SystemClock;
use release_guardian::context::Context;
use release_guardian::model::NewRelease;
use release_guardian::scheduler::Guardian;
use release_guardian::sources::probe::{probe_client, ProbeConfig, Prober};
use release_guardian::sources::prometheus::{PrometheusConfig, PrometheusSource};
use release_guardian::sources::{Blame, ProbeOutcome, SourceError};
use release_guardian::store::sqlite::SqliteStore;
use release_guardian::store::Store;
use std::fs::File;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// Set in the child: descriptors may be exhausted there.
const CHILD: &str = "RG_TEST_EXHAUST_DESCRIPTORS";

/// The child's descriptor limit: room for the runtime, a server, a store.
const NOFILE: u32 = 256;

/// Runs `test` (its full name) again in a child under `prlimit`; true in
/// the child, where the test body runs; false in the parent, after the
/// child passed.
fn in_child(test: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let out = Command::new("prlimit")
        .arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .expect("run the test under prlimit (util-linux)");
    let all = stdout_and_stderr(&out);
    assert!(out.status.success(), "the test failed in a child:\n{all}");
    assert!(all.contains("1 passed"), "the child ran no test:\n{all}");
    false
}

/// Opens `/dev/null` until the process is out of descriptors (EMFILE);
/// they are held until the returned files are dropped.
fn exhaust_descriptors() -> Vec<File> {
    let mut held = Vec::new();
    // Bounded: the limit is NOFILE.
    for _ in 0..=NOFILE {
        match File::open("/dev/null") {
            Ok(f) => held.push(f),
            Err(e) if e.raw_os_error() == Some(24) => return held,
            Err(e) => panic!("unexpected error while exhausting descriptors: {e}"),
        }
    }
    panic!("opened {} descriptors without reaching EMFILE", held.len());
}

fn healthy_service() -> axum::Router {
    axum::Router::new().route("/", axum::routing::get(|| async { "ok" }))
}

#[tokio::test]
async fn out_of_descriptors_a_probe_is_inconclusive_not_failed() {
    if !in_child("guardian_side::out_of_descriptors_a_probe_is_inconclusive_not_failed") {
        return;
    }
    let addr = serve(healthy_service()).await;
    let cfg = ProbeConfig {
        name: "live".into(),
        url: format!("http://{addr}/"),
        timeout: Duration::from_secs(5),
        ..ProbeConfig::default()
    };
    // A fresh client each time: no pooled connection to reuse.
    let exhausted = exhaust_descriptors();
    let r = Prober::new(probe_client()).probe(&cfg).await;
    let prometheus = PrometheusSource::new(
        reqwest::Client::new(),
        &PrometheusConfig {
            url: format!("http://{addr}"),
            timeout: Duration::from_secs(5),
            ..PrometheusConfig::default()
        },
    )
    .unwrap()
    .query_instant("up", None)
    .await;
    drop(exhausted);

    assert!(!r.ok, "{r:?}");
    assert_eq!(r.blame, Blame::Guardian, "{r:?}");
    assert_eq!(
        r.outcome(),
        ProbeOutcome::Inconclusive("guardian-side: too many open files (EMFILE)")
    );
    match prometheus {
        Err(SourceError::Unreachable { detail, .. }) => {
            assert_eq!(detail, "guardian-side: too many open files (EMFILE)")
        }
        other => panic!("expected an unreachable source, got {other:?}"),
    }

    // With descriptors back, the same probe of the same service passes.
    let r = Prober::new(probe_client()).probe(&cfg).await;
    assert_eq!(r.outcome(), ProbeOutcome::Passed, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_descriptors_a_watch_does_not_roll_back() {
    if !in_child("guardian_side::out_of_descriptors_a_watch_does_not_roll_back") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(healthy_service()).await;
    let log = dir.path().join("hook.log");
    let hook = script(
        dir.path(),
        "hook.sh",
        &format!("echo rolled back >> {}", log.display()),
    );
    // One failed probe would reach `rollback`.
    std::fs::write(
        dir.path().join("rules.yaml"),
        "checks:\n  - name: live\n    source: probe\n    probe: live\n    \
         critical: { failures: 1 }\n    rollback: { failures: 1 }\n",
    )
    .unwrap();
    let toml = format!(
        r#"[store]
path = "g.db"

[[services]]
name = "checkout"
rules = ["rules.yaml"]
  [services.cadence]
  tiers = [ {{ until = "2s", every = "500ms" }} ]
  [[services.probes]]
  name = "live"
  url = "http://{addr}/"
  timeout = "2s"
  [services.rollback]
  command = ["{hook}"]
  timeout = "10s"
"#,
        hook = hook.display(),
    );
    let settings = settings(dir.path(), &toml);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("g.db")).unwrap());
    let g = Guardian::new(Context::new(settings, store.clone(), Arc::new(SystemClock)));
    g.start().await.unwrap();
    let reg = g
        .register(NewRelease {
            service: "checkout".into(),
            version: "v2".into(),
            previous_version: Some("v1".into()),
            environment: None,
            annotations: Default::default(),
        })
        .await
        .unwrap();
    let id = reg.release.id.clone();

    // Every tick of the watch runs out of descriptors.
    let exhausted = exhaust_descriptors();
    let status = wait_for("the watch to end", Duration::from_secs(20), || {
        let (store, id) = (store.clone(), id.clone());
        async move {
            let r = store.get_release(&id).await.ok()??;
            (r.status.as_str() != "watching").then(|| r.status.as_str().to_string())
        }
    })
    .await;
    let details = store.release_details(&id).await.unwrap().unwrap();
    drop(exhausted);

    let timeline: Vec<String> = details
        .decisions
        .iter()
        .map(|d| format!("{} {}", d.action, d.reason))
        .collect();
    assert_eq!(status, "verified", "{timeline:#?}");
    assert!(details.rollback.is_none(), "{timeline:#?}");
    assert!(!log.exists(), "the hook ran");
    assert_eq!(details.checks[0].state.as_str(), "inconclusive");
    assert!(
        timeline.iter().any(|d| d.starts_with("inconclusive ")
            && d.contains(
                "guardian-side: too many open files (EMFILE); not counted against the service"
            )),
        "{timeline:#?}"
    );
    assert!(
        !timeline.iter().any(|d| d.starts_with("level_changed")),
        "{timeline:#?}"
    );
}
