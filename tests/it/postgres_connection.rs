//! The connection to a real PostgreSQL of the test's own
//! (`support::postgres::OwnServer`):
//!
//! - TLS: the server runs with `ssl = on`, a certificate for 127.0.0.1
//!   signed by a CA made in the test (`support::credentials`), and accepts
//!   TCP connections over TLS only (`pg_hba.conf`: `hostssl`). The guardian
//!   connects with `sslmode=verify-full` and `ca_file` (the store opens and
//!   writes; `check` says OK); without TLS it is refused by the server; with
//!   another CA, or a certificate for another name, it refuses the server,
//!   and `check` says why.
//! - Readiness: a daemon on the database answers `/readyz` 503 with the
//!   reason while the database is down, and 200 again once it is back.

use crate::support::credentials::{self, Pki};
use crate::support::postgres::OwnServer;
use crate::support::{bin, free_listen, settings, stdout_and_stderr, wait_for, Daemon};
use release_guardian::store::ReleaseFilter;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Local connections trusted; TCP ones only over TLS.
const HBA_TLS_ONLY: &str = "local all all trust\n\
                            hostssl all all 127.0.0.1/32 trust\n\
                            hostnossl all all 127.0.0.1/32 reject\n";

/// A server with TLS on, presenting `cert`/`key`, refusing plain TCP.
fn tls_server(cert: &Path, key: &Path) -> OwnServer {
    OwnServer::start(
        &[
            ("server.pem", &std::fs::read(cert).unwrap()),
            ("server.key", &std::fs::read(key).unwrap()),
            ("pg_hba.conf", HBA_TLS_ONLY.as_bytes()),
        ],
        &[
            ("ssl", "on"),
            ("ssl_cert_file", "server.pem"),
            ("ssl_key_file", "server.key"),
        ],
    )
}

/// `[store]` for `server` with `sslmode` and, if given, `ca_file`.
fn store_toml(server: &OwnServer, sslmode: &str, ca: Option<&Path>) -> String {
    let mut s = format!(
        "[store]\nurl = \"postgres://postgres@127.0.0.1:{}/postgres?sslmode={sslmode}\"\n\
         state_dir = \"state\"\n",
        server.port
    );
    if let Some(ca) = ca {
        s.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
    }
    s
}

/// `release-guardian check` on a config holding `toml`: (success, output).
fn check(dir: &Path, toml: &str) -> (bool, String) {
    let config = dir.join("check.toml");
    std::fs::write(&config, toml).unwrap();
    let out = Command::new(bin())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    (out.status.success(), stdout_and_stderr(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_connects_over_verified_tls_and_refuses_a_server_it_cannot_verify() {
    let dir = tempfile::tempdir().unwrap();
    let Pki {
        ca,
        server_cert,
        server_key,
        other_ca,
        ..
    } = credentials::pki(dir.path());
    let server = tls_server(&server_cert, &server_key);

    // verify-full with the CA: the store opens (migrations included) and
    // writes, and `check` says so.
    let toml = store_toml(&server, "verify-full", Some(&ca));
    let s = settings(dir.path(), &toml);
    let store =
        release_guardian::store::open(&s.store).unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    store.probe_write("tls-test", 1).await.unwrap();
    assert!(store
        .list_releases(&ReleaseFilter::default())
        .await
        .unwrap()
        .is_empty());
    let (ok, said) = check(dir.path(), &toml);
    assert!(ok && said.contains(": OK (PostgreSQL "), "{said}");

    // The server takes no plain connection: the guardian must use TLS.
    let (ok, said) = check(dir.path(), &store_toml(&server, "disable", None));
    assert!(!ok, "{said}");
    assert!(
        said.contains("cannot connect") && said.contains("no encryption"),
        "{said}"
    );

    // Another CA: the server's certificate is refused, and the error says
    // so.
    let (ok, said) = check(
        dir.path(),
        &store_toml(&server, "verify-full", Some(&other_ca)),
    );
    assert!(!ok, "{said}");
    assert!(
        said.contains("cannot connect")
            && said.contains("certificate")
            && said.contains("UnknownIssuer"),
        "{said}"
    );
    let wrong = settings(dir.path(), &store_toml(&server, "require", Some(&other_ca)));
    let e = release_guardian::store::open(&wrong.store)
        .err()
        .expect("a wrong CA opens nothing");
    assert!(e.to_string().contains("certificate"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let Pki { ca, .. } = credentials::pki(dir.path());
    let (cert, key) =
        credentials::server_cert_for(dir.path(), "elsewhere", "DNS:db.elsewhere.internal");
    let server = tls_server(&cert, &key);
    let (ok, said) = check(dir.path(), &store_toml(&server, "verify-full", Some(&ca)));
    assert!(!ok, "{said}");
    assert!(
        said.contains("cannot connect")
            && said.contains("certificate")
            && said.contains("not valid for name \"127.0.0.1\""),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_not_ready_while_the_database_is_down_and_ready_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = OwnServer::start(&[], &[]);
    let listen = free_listen();
    let config = dir.path().join("guardian.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{listen}\"\nshutdown_grace = \"2s\"\n{}\
             [[services]]\nname = \"checkout\"\n",
            store_toml(&server, "disable", None)
        ),
    )
    .unwrap();
    let d = Daemon::start(&config, &listen).await;
    let readyz = format!("http://{listen}/readyz");
    let http = reqwest::Client::new();
    let answer = |http: reqwest::Client, url: String| async move {
        let r = http.get(&url).send().await.ok()?;
        let code = r.status().as_u16();
        Some((code, r.json::<serde_json::Value>().await.ok()?))
    };

    server.stop();
    let (code, body) = wait_for("/readyz to say not ready", Duration::from_secs(30), || {
        let a = answer(http.clone(), readyz.clone());
        async move { a.await.filter(|(code, _)| *code != 200) }
    })
    .await;
    assert_eq!(code, 503, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("not ready: the store"),
        "the reason names the store: {body}"
    );
    // A request that needs the store fails cleanly meanwhile.
    let r = http
        .get(format!("http://{listen}/v1/releases"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());

    server.restart();
    wait_for("/readyz to be ready again", Duration::from_secs(30), || {
        let a = answer(http.clone(), readyz.clone());
        async move { a.await.filter(|(code, _)| *code == 200) }
    })
    .await;
    let list = d.get("/v1/releases").await;
    assert!(list.is_array(), "{list}");
}
