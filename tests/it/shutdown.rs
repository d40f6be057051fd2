//! SIGTERM while a rollback hook runs: the daemon lets the hook finish
//! (within its timeout) instead of killing it, so the outcome is known and
//! the release ends `rolled_back`, not `rollback_failed`.

use crate::support::{free_listen, script, Daemon};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_waits_for_a_running_rollback_hook() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_listen();
    let marker = dir.path().join("hook-finished");
    let hook = script(
        dir.path(),
        "slow-rollback.sh",
        &format!("sleep 2\necho done > {}", marker.display()),
    );
    let config = dir.path().join("guardian.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{listen}\"\nshutdown_grace = \"1s\"\n[store]\npath = \"g.db\"\n\
             [[services]]\nname = \"checkout\"\n  [services.rollback]\n  command = [\"{}\"]\n  timeout = \"30s\"\n  mode = \"manual\"\n",
            hook.display()
        ),
    )
    .unwrap();
    let mut d = Daemon::start(&config, &listen).await;
    let (code, body) = d
        .post(
            "/v1/releases",
            json!({"service": "checkout", "version": "v2", "previous_version": "v1"}),
        )
        .await;
    assert_eq!(code, 201);
    let id = body["id"].as_str().unwrap().to_string();
    let (code, _) = d
        .post(&format!("/v1/releases/{id}/rollback"), json!({}))
        .await;
    assert_eq!(code, 202);
    d.release_until(
        &id,
        "the hook to be running",
        Duration::from_secs(10),
        |r| r["rollback"]["state"] == "running",
    )
    .await;

    let status = d.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
    assert!(marker.exists(), "the hook was killed by the shutdown");

    let d = Daemon::start(&config, &listen).await;
    let r: Value = d.get(&format!("/v1/releases/{id}")).await;
    assert_eq!(r["status"], "rolled_back", "{r}");
    assert_eq!(r["rollback"]["state"], "succeeded");
}
