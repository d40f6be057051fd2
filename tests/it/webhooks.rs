//! Deploy-tool webhooks end to end, on the real daemon over TCP: GitHub,
//! GitLab, Argo CD and Flux deliveries as the tools send them (payloads from
//! their docs, signed as they sign), each starting a watch or nothing; bad
//! signatures and tokens refused; redeliveries starting nothing new; a
//! revert watched on the revert cadence.

use crate::support::daemon::{bin, free_listen, stdout_and_stderr, Daemon};
use serde_json::Value;
use std::path::Path;

const GITHUB_SECRET: &str = "github-webhook-secret";
const GITLAB_TOKEN: &str = "gitlab-webhook-token";
const ARGO_SECRET: &str = "argocd-webhook-secret";
const FLUX_SECRET: &str = "flux-webhook-secret";
const WRITE_TOKEN: &str = "a-write-token-0123456789abcdef";

fn config(listen: &str) -> String {
    format!(
        r#"[server]
listen = "{listen}"
[store]
path = "g.db"
[auth]
tokens = [ {{ name = "deploy-bot", token = "{WRITE_TOKEN}", scopes = ["read", "write"] }} ]
[cadence]
tiers = [ {{ until = "6h", every = "1h" }} ]
revert_tiers = [ {{ until = "10m", every = "2m" }} ]

[[services]]
name = "checkout"

[webhooks.github]
secret = "{GITHUB_SECRET}"
map = [ {{ repository = "acme/checkout", environment = "production", service = "checkout" }} ]
[webhooks.gitlab]
token = "{GITLAB_TOKEN}"
map = [ {{ project = "acme/checkout", environment = "production", service = "checkout" }} ]
[webhooks.argocd]
secret = "{ARGO_SECRET}"
map = [ {{ application = "checkout-prod", service = "checkout", environment = "production" }} ]
[webhooks.flux]
secret = "{FLUX_SECRET}"
map = [ {{ kustomization = "checkout", namespace = "flux-system", service = "checkout", environment = "production" }} ]
"#
    )
}

async fn daemon(dir: &Path) -> Daemon {
    let listen = free_listen();
    let path = dir.join("guardian.toml");
    std::fs::write(&path, config(&listen)).unwrap();
    Daemon::start(&path, &listen).await
}

fn sign(secret: &str, body: &str) -> String {
    let hex = release_guardian::transport::hmac_sha256_hex(secret.as_bytes(), body.as_bytes());
    format!("sha256={hex}")
}

async fn post(d: &Daemon, tool: &str, headers: &[(&str, String)], body: &str) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .post(format!("{}/v1/webhooks/{tool}", d.api))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    let r = r.send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

async fn releases(d: &Daemon) -> Vec<Value> {
    let r = reqwest::Client::new()
        .get(format!("{}/v1/releases", d.api))
        .bearer_auth(WRITE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Vec<Value>>().await.unwrap()
}

fn github_event(sha: &str, state: &str) -> String {
    format!(
        r#"{{"action":"created","deployment_status":{{"id":209916254,"state":"{state}","description":"","environment":"production","target_url":"https://ci.example/run/7","creator":{{"login":"octocat"}}}},"deployment":{{"id":145988746,"sha":"{sha}","ref":"main","task":"deploy","payload":{{}},"environment":"production","description":null}},"repository":{{"full_name":"acme/checkout","html_url":"https://github.com/acme/checkout"}},"sender":{{"login":"octocat"}}}}"#
    )
}

fn github_headers(event: &str, delivery: &str, signature: String) -> Vec<(&'static str, String)> {
    vec![
        ("x-github-event", event.to_string()),
        ("x-github-delivery", delivery.to_string()),
        ("x-hub-signature-256", signature),
        ("user-agent", "GitHub-Hookshot/044aadd".to_string()),
    ]
}

#[tokio::test]
async fn github_deployments_start_watches_once_per_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path()).await;
    let sha1 = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e";
    let body = github_event(sha1, "success");

    // A bad signature: 401, nothing started.
    let (code, v) = post(
        &d,
        "github",
        &github_headers("deployment_status", "d-1", sign("wrong", &body)),
        &body,
    )
    .await;
    assert_eq!(code, 401, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("X-Hub-Signature-256")
            || v["error"].as_str().unwrap().contains("x-hub-signature-256"),
        "{v}"
    );
    assert!(releases(&d).await.is_empty());

    // Signed: a watch, with what GitHub said about the deployment.
    let (code, v) = post(
        &d,
        "github",
        &github_headers("deployment_status", "d-1", sign(GITHUB_SECRET, &body)),
        &body,
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let first = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["service"], "checkout");
    assert_eq!(v["version"], sha1);
    assert_eq!(v["status"], "watching");
    let deploy = &v["annotations"]["deploy"];
    assert_eq!(deploy["tool"], "github");
    assert_eq!(deploy["actor"], "octocat");
    assert_eq!(deploy["commit"], sha1);
    assert_eq!(deploy["url"], "https://ci.example/run/7");

    // A newer release arrives through the API...
    let (code, _) = {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/releases", d.api))
            .bearer_auth(WRITE_TOKEN)
            .json(&serde_json::json!({"service": "checkout", "version": "v9"}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), ())
    };
    assert_eq!(code, 201);
    // ...then GitHub redelivers the first delivery: it starts nothing new
    // (without the delivery id this would register the old commit again).
    let (code, v) = post(
        &d,
        "github",
        &github_headers("deployment_status", "d-1", sign(GITHUB_SECRET, &body)),
        &body,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["id"], first.as_str());
    assert_eq!(releases(&d).await.len(), 2);

    // Every write is in the audit log, with who made it.
    let log: Vec<Value> = reqwest::Client::new()
        .get(format!("{}/v1/audit", d.api))
        .bearer_auth(WRITE_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let who: Vec<(&str, &str)> = log
        .iter()
        .map(|r| (r["actor"].as_str().unwrap(), r["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        who,
        [
            ("webhook:github", "register"),
            ("token:deploy-bot", "register")
        ],
        "{log:?}"
    );
    assert!(
        log[0]["detail"].as_str().unwrap().contains("delivery d-1"),
        "{log:?}"
    );
    assert_eq!(log[0]["client"], "127.0.0.1");
    assert_eq!(v["audit"][0]["actor"], "webhook:github");

    // Events that start nothing: 202 with the reason.
    let pending = github_event("0123456789abcdef0123456789abcdef01234567", "in_progress");
    for (event, body, why) in [
        (
            "ping",
            r#"{"zen":"Design for failure."}"#.to_string(),
            "pong",
        ),
        ("push", "{}".to_string(), "push"),
        ("deployment_status", pending, "in_progress"),
        (
            "deployment_status",
            github_event(sha1, "success").replace("acme/checkout", "acme/unknown"),
            "no [webhooks.github] map entry",
        ),
    ] {
        let (code, v) = post(
            &d,
            "github",
            &github_headers(
                event,
                &format!("d-{event}-{}", body.len()),
                sign(GITHUB_SECRET, &body),
            ),
            &body,
        )
        .await;
        assert_eq!(code, 202, "{event}: {v}");
        assert!(v["ignored"].as_str().unwrap().contains(why), "{event}: {v}");
    }
    assert_eq!(releases(&d).await.len(), 2);
}

#[tokio::test]
async fn gitlab_argocd_and_flux_start_watches_and_refuse_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path()).await;

    let gitlab = r#"{"object_kind":"deployment","status":"success","status_changed_at":"2021-04-28 21:50:00 +0200","deployment_id":15,"deployable_url":"http://gitlab.example/acme/checkout/-/jobs/796","environment":"production","project":{"id":30,"name":"checkout","web_url":"http://gitlab.example/acme/checkout","path_with_namespace":"acme/checkout"},"short_sha":"279484c0","user":{"id":1,"name":"Administrator","username":"root"},"commit_url":"http://gitlab.example/acme/checkout/-/commit/279484c09fbe69ededfced8c1bb6e6d24616b468","commit_title":"Add new file"}"#;
    let gl = |token: &str| {
        vec![
            ("x-gitlab-event", "Deployment Hook".to_string()),
            ("x-gitlab-token", token.to_string()),
            (
                "idempotency-key",
                "a5461c4d-9c7f-4af9-add6-cddebe3c426f".to_string(),
            ),
        ]
    };
    let (code, v) = post(&d, "gitlab", &gl("not-the-token"), gitlab).await;
    assert_eq!(code, 401, "{v}");
    let (code, v) = post(&d, "gitlab", &gl(GITLAB_TOKEN), gitlab).await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["version"], "279484c09fbe69ededfced8c1bb6e6d24616b468");
    assert_eq!(v["annotations"]["deploy"]["actor"], "root");

    let argo = r#"{"app":"checkout-prod","revision":"731f7eaddfb6af01cb2173e18f0f75b0ba780ef1","previousRevision":"279484c09fbe69ededfced8c1bb6e6d24616b468","phase":"Succeeded","healthStatus":"Healthy","initiatedBy":"alice","argocdUrl":"https://argocd.example/applications/checkout-prod"}"#;
    let (code, v) = post(
        &d,
        "argocd",
        &[("authorization", "Bearer nope".into())],
        argo,
    )
    .await;
    assert_eq!(code, 401, "{v}");
    // The API's own write token is no key to a webhook route.
    let (code, v) = post(
        &d,
        "argocd",
        &[("authorization", format!("Bearer {WRITE_TOKEN}"))],
        argo,
    )
    .await;
    assert_eq!(code, 401, "{v}");
    let (code, v) = post(
        &d,
        "argocd",
        &[("authorization", format!("Bearer {ARGO_SECRET}"))],
        argo,
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(
        v["previous_version"],
        "279484c09fbe69ededfced8c1bb6e6d24616b468"
    );
    // Argo CD retries with the same body: nothing new.
    let (code, v2) = post(
        &d,
        "argocd",
        &[("authorization", format!("Bearer {ARGO_SECRET}"))],
        argo,
    )
    .await;
    assert_eq!(code, 200, "{v2}");
    assert_eq!(v2["id"], v["id"]);

    let flux = r#"{"involvedObject":{"kind":"Kustomization","name":"checkout","namespace":"flux-system"},"metadata":{"kustomize.toolkit.fluxcd.io/revision":"main@sha1:0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"},"severity":"info","reason":"ReconciliationSucceeded","message":"Reconciliation finished","reportingController":"kustomize-controller","timestamp":"2022-10-28T07:26:19Z"}"#;
    let (code, v) = post(&d, "flux", &[("x-signature", sign("nope", flux))], flux).await;
    assert_eq!(code, 401, "{v}");
    let (code, v) = post(
        &d,
        "flux",
        &[("x-signature", sign(FLUX_SECRET, flux))],
        flux,
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["version"], "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567");
    // The guardian fills in what was running before.
    assert_eq!(
        v["previous_version"],
        "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"
    );

    let rs = releases(&d).await;
    assert_eq!(rs.len(), 3, "{rs:?}");
}

#[tokio::test]
async fn a_revert_is_marked_and_watched_on_the_revert_cadence() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path()).await;
    // Each event has its own timestamp, as Flux sends them.
    let flux = |sha: &str, minute: u32| {
        format!(
            r#"{{"involvedObject":{{"kind":"Kustomization","name":"checkout","namespace":"flux-system"}},"metadata":{{"kustomize.toolkit.fluxcd.io/revision":"main@sha1:{sha}"}},"severity":"info","reason":"ReconciliationSucceeded","message":"applied {sha}","reportingController":"kustomize-controller","timestamp":"2026-11-28T10:{minute:02}:00Z"}}"#
        )
    };
    let v1 = "1111111111111111111111111111111111111111";
    let v2 = "2222222222222222222222222222222222222222";
    let mut ids = Vec::new();
    for (minute, sha) in [v1, v2, v1].into_iter().enumerate() {
        let body = flux(sha, minute as u32);
        let (code, v) = post(
            &d,
            "flux",
            &[("x-signature", sign(FLUX_SECRET, &body))],
            &body,
        )
        .await;
        assert_eq!(code, 201, "{v}");
        ids.push(v);
    }
    let (first, second, revert) = (&ids[0], &ids[1], &ids[2]);
    assert!(first["annotations"].get("revert_of").is_none());
    assert!(second["annotations"].get("revert_of").is_none());
    assert_eq!(second["previous_version"], v1);
    assert_eq!(revert["annotations"]["revert_of"], second["id"]);
    assert_eq!(revert["previous_version"], v2);
    // Revert tiers (every 2m) instead of the service's (every 1h).
    let started = time::OffsetDateTime::parse(
        revert["started_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let next = time::OffsetDateTime::parse(
        revert["next_check_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let gap = (next - started).whole_seconds();
    assert!(
        (119..=121).contains(&gap),
        "first tick {gap} s after the start"
    );
}

#[test]
fn check_names_a_map_entry_for_a_service_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guardian.toml");
    let text = config("127.0.0.1:9797").replace(
        r#"{ application = "checkout-prod", service = "checkout""#,
        r#"{ application = "checkout-prod", service = "checkuot""#,
    );
    std::fs::write(&path, &text).unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text_out = stdout_and_stderr(&out);
    assert!(!out.status.success(), "{text_out}");
    assert!(
        text_out.contains("guardian.toml:")
            && text_out.contains("service `checkuot` (production) is not configured"),
        "{text_out}"
    );
    assert!(!text_out.contains(ARGO_SECRET), "{text_out}");
}
