//! The Prometheus client against a real Prometheus (Debian's package)
//! behind its own web config file: basic auth with a bcrypt hash made by
//! `htpasswd`, and TLS with a CA, server and client certificates made by
//! `openssl` in the test. The right credentials and CA read; wrong ones
//! give a clear error — and, through the real daemon, an `inconclusive`
//! check, one "guardian cannot see" warning, never a breach or a rollback.

use crate::support::credentials::{bcrypt, pki};
use crate::support::{
    one_service_config, range_source, wait_for, Daemon, Prometheus, Receiver, Reply,
};
use release_guardian::model::parse_time;
use release_guardian::sources::{RangeQuery, SourceError};
use serde_json::json;
use std::time::Duration;

fn vector_one() -> RangeQuery {
    let now = crate::support::now_ms() / 1000 * 1000;
    RangeQuery {
        query: "vector(1)".into(),
        start: now - 10_000,
        end: now,
        step: 5_000,
    }
}

/// A real Prometheus that lets in `guardian` with `right-pass` only.
async fn behind_basic_auth() -> Prometheus {
    let hash = bcrypt("right-pass");
    Prometheus::start_with_web_config(
        &format!("basic_auth_users:\n  guardian: {hash}\n"),
        false,
        reqwest::Client::new(),
        Some(("guardian", "right-pass")),
    )
    .await
}

#[tokio::test]
async fn basic_auth_right_and_wrong_credentials() {
    let prometheus = behind_basic_auth().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("right.password"), "right-pass\n").unwrap();
    let toml = |password: &str| {
        format!(
            "[sources.prometheus]\nurl = \"{}\"\nusername = \"guardian\"\n{password}\n",
            prometheus.url
        )
    };
    let good = range_source(
        dir.path(),
        &toml("password_file = \"right.password\""),
        "prometheus",
    );
    let series = good.query_range(&vector_one()).await.unwrap();
    assert_eq!(series[0].1.len(), 3);
    assert!(series[0].1.iter().all(|s| s.value == 1.0));
    // A query longer than a URL should carry goes as a POST form; the real
    // server answers it the same.
    let long = RangeQuery {
        query: format!("vector(1){}", " ".repeat(4000)),
        ..vector_one()
    };
    let series = good.query_range(&long).await.unwrap();
    assert!(series[0].1.iter().all(|s| s.value == 1.0));

    let bad = range_source(dir.path(), &toml("password = \"wrong-pass\""), "prometheus");
    let e = bad.query_range(&vector_one()).await.unwrap_err();
    assert!(matches!(&e, SourceError::Http { status: 401, .. }), "{e:?}");
    let shown = e.to_string();
    assert!(
        shown.starts_with("prometheus answered HTTP 401: Unauthorized"),
        "{shown}"
    );
    assert!(!shown.contains("wrong-pass") && !shown.contains(&prometheus.url));
}

#[tokio::test]
async fn tls_with_a_generated_ca_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca.display()
    );
    let ready_client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap(),
        )
        .identity(
            reqwest::Identity::from_pem(
                &[
                    std::fs::read(&pki.client_cert).unwrap(),
                    std::fs::read(&pki.client_key).unwrap(),
                ]
                .concat(),
            )
            .unwrap(),
        )
        .build()
        .unwrap();
    let prometheus = Prometheus::start_with_web_config(&web, true, ready_client, None).await;
    assert!(prometheus.url.starts_with("https://127.0.0.1:"));
    let toml = |extra: &str| {
        format!(
            "[sources.prometheus]\nurl = \"{}\"\n{extra}\n",
            prometheus.url
        )
    };
    let files = format!(
        "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"",
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let good = range_source(dir.path(), &toml(&files), "prometheus");
    let series = good.query_range(&vector_one()).await.unwrap();
    assert!(series[0].1.iter().all(|s| s.value == 1.0));

    // A CA that did not sign the server's certificate.
    let wrong_ca = range_source(
        dir.path(),
        &toml(&files.replace(
            &pki.ca.display().to_string(),
            &pki.other_ca.display().to_string(),
        )),
        "prometheus",
    );
    let e = wrong_ca.query_range(&vector_one()).await.unwrap_err();
    assert!(
        matches!(&e, SourceError::Unreachable { detail, .. } if detail.contains("certificate")),
        "{e:?}"
    );

    // The right CA, but no client certificate: the server refuses the handshake.
    let no_client_cert = range_source(
        dir.path(),
        &toml(&format!("ca_file = \"{}\"", pki.ca.display())),
        "prometheus",
    );
    let e = no_client_cert.query_range(&vector_one()).await.unwrap_err();
    assert!(matches!(&e, SourceError::Unreachable { .. }), "{e:?}");
}

const RULES: &str = r#"checks:
  - name: always_breaching
    source: prometheus
    query: vector(1)
    step: 1s
    rollback: { above: 0 }
"#;

#[tokio::test]
async fn wrong_credentials_are_inconclusive_and_blind_never_a_rollback() {
    let prometheus = behind_basic_auth().await;
    let hook = Receiver::start(Reply::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, listen) = one_service_config(
        dir.path(),
        &format!(
            "[sources.prometheus]\nurl = \"{}\"\nusername = \"guardian\"\npassword = \"wrong-pass\"\ntimeout = \"2s\"\nblind_after = 2",
            prometheus.url
        ),
        RULES,
        &format!("kind = \"webhook\"\nurl = \"{}\"", hook.webhook_url()),
    );
    let daemon = Daemon::start(&config, &listen).await;
    let (status, r) = daemon
        .post(
            "/v1/releases",
            json!({"service": "checkout", "version": "v2"}),
        )
        .await;
    assert_eq!(status, 201, "{r}");
    let id = r["id"].as_str().unwrap().to_string();

    // The query would breach (vector(1) > 0) if it could be read; it cannot.
    let blind = wait_for("one `blind` warning", Duration::from_secs(30), || {
        let hook = &hook;
        async move {
            let got: Vec<_> = hook
                .received()
                .into_iter()
                .filter(|m| m.body["event"] == "blind")
                .collect();
            (!got.is_empty()).then_some(got)
        }
    })
    .await;
    // A few more ticks: still one warning, still no breach.
    let warned = parse_time(blind[0].body["at"].as_str().unwrap()).unwrap();
    let r = wait_for("five more ticks", Duration::from_secs(30), || {
        let d = &daemon;
        let id = id.clone();
        async move {
            let r = d.get(&format!("/v1/releases/{id}")).await;
            let updated = parse_time(r["checks"][0]["updated_at"].as_str()?)?;
            (updated - warned >= 5_000).then_some(r)
        }
    })
    .await;
    assert_eq!(r["status"], "watching", "{r}");
    assert_eq!(r["checks"][0]["state"], "inconclusive", "{r}");
    assert!(r["rollback"].is_null(), "{r}");
    let decisions = r["decisions"].to_string();
    assert!(decisions.contains("HTTP 401"), "{decisions}");
    assert!(!decisions.contains("wrong-pass"));
    let blind: Vec<_> = hook
        .received()
        .into_iter()
        .filter(|m| m.body["event"] == "blind")
        .collect();
    assert_eq!(blind.len(), 1, "one warning, not one per tick");
    let reason = blind[0].body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("guardian cannot see prometheus: 2 consecutive reads failed"),
        "{reason}"
    );
    assert_eq!(blind[0].body["severity"], "warning");
    assert!(hook
        .received()
        .iter()
        .all(|m| m.body["level"] != "rollback" && m.body["event"] != "level_changed"));
}
