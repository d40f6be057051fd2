//! SIGHUP reloads the config and rule packs; an invalid new config is
//! rejected and the old one keeps running.

use crate::support::{free_listen, free_port, minimal_config_text, wait_for, Daemon};
use serde_json::{json, Value};
use std::time::Duration;

/// Waits until the daemon has logged that it rejected a new config.
async fn rejected(d: &Daemon) {
    wait_for(
        "the rejection to be logged",
        Duration::from_secs(10),
        || async { d.log().contains("new configuration rejected").then_some(()) },
    )
    .await;
}

/// Whether the release has a decision `action`.
fn decided(r: &Value, action: &str) -> bool {
    r["decisions"]
        .as_array()
        .is_some_and(|ds| ds.iter().any(|x| x["action"] == action))
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_and_rejects_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_listen();
    let path = dir.path().join("guardian.toml");
    std::fs::write(&path, minimal_config_text(&listen, &["checkout"])).unwrap();
    let d = Daemon::start(&path, &listen).await;
    let (code, _) = d
        .post(
            "/v1/releases",
            json!({"service": "payments", "version": "v1"}),
        )
        .await;
    assert_eq!(code, 422, "payments is not configured yet");

    std::fs::write(
        &path,
        minimal_config_text(&listen, &["checkout", "payments"]),
    )
    .unwrap();
    d.hup();
    wait_for(
        "payments to be accepted after SIGHUP",
        Duration::from_secs(10),
        || async {
            let (code, _) = d
                .post(
                    "/v1/releases",
                    json!({"service": "payments", "version": "v1"}),
                )
                .await;
            (code == 201 || code == 200).then_some(())
        },
    )
    .await;

    // An invalid config is rejected: the daemon keeps the last good one.
    std::fs::write(&path, "[server]\nlisten = 42\n").unwrap();
    d.hup();
    rejected(&d).await;
    let (code, body) = d
        .post(
            "/v1/releases",
            json!({"service": "payments", "version": "v2"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let health = reqwest::get(format!("{}/readyz", d.api)).await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_cannot_drop_auth_from_a_public_listener() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = dir.path().join("guardian.toml");
    let with_auth = format!(
        "[server]\nlisten = \"0.0.0.0:{port}\"\n[auth]\ntokens = [ {{ token = \"ops-token-123456\", scopes = [\"read\", \"write\"] }} ]\n[store]\npath = \"g.db\"\n[[services]]\nname = \"checkout\"\n"
    );
    std::fs::write(&path, &with_auth).unwrap();
    let d = Daemon::start(&path, &format!("127.0.0.1:{port}")).await;
    let list = format!("{}/v1/releases", d.api);
    assert_eq!(reqwest::get(&list).await.unwrap().status(), 401);

    // The new file is valid on its own (loopback, no auth), but the socket
    // stays on 0.0.0.0 until a restart: the reload must be refused.
    std::fs::write(
        &path,
        minimal_config_text(&format!("127.0.0.1:{port}"), &["checkout"]),
    )
    .unwrap();
    d.hup();
    rejected(&d).await;
    assert_eq!(
        reqwest::get(&list).await.unwrap().status(),
        401,
        "the API must stay authenticated"
    );
    let authed = reqwest::Client::new()
        .get(&list)
        .bearer_auth("ops-token-123456")
        .send()
        .await
        .unwrap();
    assert_eq!(authed.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_drops_a_service_pauses_its_watches() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_listen();
    let path = dir.path().join("guardian.toml");
    let cadence = "[cadence]\ntiers = [ { until = \"4s\", every = \"1s\" } ]\n";
    std::fs::write(
        &path,
        format!("{}{cadence}", minimal_config_text(&listen, &["checkout"])),
    )
    .unwrap();
    let d = Daemon::start(&path, &listen).await;
    let (code, body) = d
        .post(
            "/v1/releases",
            json!({"service": "checkout", "version": "v2"}),
        )
        .await;
    assert_eq!(code, 201);
    let id = body["id"].as_str().unwrap().to_string();

    // A reload with the service gone (a typo, say): the watch pauses.
    std::fs::write(
        &path,
        format!("{}{cadence}", minimal_config_text(&listen, &["chekout"])),
    )
    .unwrap();
    d.hup();
    let r = d
        .release_until(&id, "the watch to pause", Duration::from_secs(10), |r| {
            decided(r, "paused")
        })
        .await;
    assert_eq!(r["status"], "watching");

    // The service is back: the watch resumes and ends normally.
    std::fs::write(
        &path,
        format!("{}{cadence}", minimal_config_text(&listen, &["checkout"])),
    )
    .unwrap();
    d.hup();
    let r = d
        .release_until(
            &id,
            "the watch to end verified",
            Duration::from_secs(20),
            |r| decided(r, "verified"),
        )
        .await;
    assert_eq!(r["status"], "verified", "{r}");
}
