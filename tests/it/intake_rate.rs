//! The per-client rate limit on registrations (`[server]
//! intake_rate_limit`, `intake_rate_burst`), against the real daemon: a
//! burst over the limit gets 429 with `Retry-After` and registers nothing;
//! another client (another token, another address) is unaffected; after
//! `Retry-After` the client is accepted again.

use crate::support::{free_listen, wait_for, Daemon};
use reqwest::header::RETRY_AFTER;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const TOKEN_A: &str = "ci-a-token-0123456789";
const TOKEN_B: &str = "ci-b-token-0123456789";

async fn register(
    http: &reqwest::Client,
    api: &str,
    token: Option<&str>,
    version: &str,
) -> reqwest::Response {
    let mut req = http
        .post(format!("{api}/v1/releases"))
        .json(&json!({"service": "checkout", "version": version}));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

/// The versions registered, newest first.
async fn versions(http: &reqwest::Client, api: &str, token: &str) -> Vec<String> {
    let list: Value = http
        .get(format!("{api}/v1/releases"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_token_has_its_own_registration_budget() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_listen();
    let config = dir.path().join("guardian.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "{listen}"
intake_rate_limit = "1/2s"
intake_rate_burst = 3

[auth]
tokens = [
  {{ name = "ci-a", token = "{TOKEN_A}", scopes = ["read", "write"] }},
  {{ name = "ci-b", token = "{TOKEN_B}", scopes = ["read", "write"] }},
]

[store]
path = "g.db"

[[services]]
name = "checkout"
"#
        ),
    )
    .unwrap();
    let d = Daemon::start(&config, &listen).await;
    let http = reqwest::Client::new();

    for v in ["a1", "a2", "a3"] {
        let r = register(&http, &d.api, Some(TOKEN_A), v).await;
        assert_eq!(r.status(), 201, "{v}: within the burst");
    }
    let over = register(&http, &d.api, Some(TOKEN_A), "a4").await;
    assert_eq!(over.status(), 429);
    let retry_after: u64 = over.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    let body: Value = over.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("too many registrations"),
        "{body}"
    );
    let limited_at = Instant::now();
    assert_eq!(
        versions(&http, &d.api, TOKEN_A).await,
        ["a3", "a2", "a1"],
        "the refused registration registered nothing; reads are not limited"
    );

    // Another token from the same address has its own budget.
    let r = register(&http, &d.api, Some(TOKEN_B), "b1").await;
    assert_eq!(r.status(), 201);

    // After Retry-After, the first client is accepted again.
    let accepted_at = wait_for(
        "the limited client to be accepted again",
        Duration::from_secs(retry_after + 10),
        || {
            let http = http.clone();
            let api = d.api.clone();
            async move {
                let r = register(&http, &api, Some(TOKEN_A), "a4").await;
                match r.status().as_u16() {
                    201 => Some(Instant::now()),
                    429 => None,
                    other => panic!("unexpected {other}"),
                }
            }
        },
    )
    .await;
    // One registration every 2 s: not before about a second had passed.
    assert!(
        accepted_at.duration_since(limited_at) >= Duration::from_millis(900),
        "accepted after {:?}",
        accepted_at.duration_since(limited_at)
    );
    assert_eq!(versions(&http, &d.api, TOKEN_A).await[0], "a4");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_token_each_address_has_its_own_budget() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_listen();
    let config = dir.path().join("guardian.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{listen}\"\nintake_rate_limit = \"1/m\"\n[store]\npath = \"g.db\"\n[[services]]\nname = \"checkout\"\n"
        ),
    )
    .unwrap();
    let d = Daemon::start(&config, &listen).await;
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let one = from("127.0.0.1");
    let two = from("127.0.0.2");
    assert_eq!(register(&one, &d.api, None, "v1").await.status(), 201);
    let over = register(&one, &d.api, None, "v2").await;
    assert_eq!(over.status(), 429);
    let retry_after: u64 = over.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (50..=60).contains(&retry_after),
        "one a minute: Retry-After {retry_after}"
    );
    assert_eq!(register(&two, &d.api, None, "w1").await.status(), 201);
    assert_eq!(register(&two, &d.api, None, "w2").await.status(), 429);
    // Other routes are not limited.
    for _ in 0..5 {
        let r = one
            .get(format!("{}/v1/releases", d.api))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}
