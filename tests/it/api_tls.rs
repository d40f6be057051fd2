//! The API over TLS (`[server] tls_cert_file`, `tls_key_file`,
//! `tls_client_ca_file`), against the real daemon with certificates made by
//! openssl: HTTPS for clients that trust the CA (the CLI with `--ca-file`),
//! a 400 for plain HTTP, the certificate replaced on SIGHUP (compared by
//! fingerprint) while open connections keep theirs, a broken one rejected
//! with the old one still served, slow handshakes held to the connection
//! cap and the header-read timeout, and client certificates when asked.

use crate::support::credentials::{pki, server_cert, Pki};
use crate::support::{
    bin, free_listen, https_client, https_client_as, stdout_and_stderr, wait_for, Daemon,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `DIR/guardian.toml`: the API on `listen` with the PKI's server
/// certificate, and `extra` lines in `[server]`.
fn tls_config(dir: &Path, listen: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("guardian.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"{listen}\"\ntls_cert_file = \"server.pem\"\ntls_key_file = \"server.key\"\n{extra}\n[store]\npath = \"g.db\"\n[[services]]\nname = \"checkout\"\n"
        ),
    )
    .unwrap();
    path
}

/// A rustls client trusting `ca`, presenting `identity` (cert, key) if given.
fn connector(ca: &Path, identity: Option<(&Path, &Path)>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS connection to `listen`, handshake done.
async fn connect(listen: &str, ca: &Path) -> Tls {
    let tcp = TcpStream::connect(listen).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    connector(ca, None).connect(name, tcp).await.unwrap()
}

/// The DER of the certificate a connection was served.
fn served(tls: &Tls) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// The DER of the (first) certificate in a PEM file.
fn der(pem: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(pem).unwrap().to_vec()
}

fn sha256(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `GET /healthz` on an open connection (HTTP/1.1, kept alive): the
/// response head and body.
async fn healthz_on(tls: &mut Tls) -> String {
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("\"ok\"") {
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
            .await
            .expect("an answer within 10s")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

async fn cli_status(api: &str, ca: Option<&Path>) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(["status", "--json", "--url", api])
        .env_remove("RG_CA_FILE");
    if let Some(ca) = ca {
        cmd.arg("--ca-file").arg(ca);
    }
    cmd.output().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_serves_https_and_sighup_replaces_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let Pki {
        ca,
        server_cert: first,
        ..
    } = pki(dir.path());
    let listen = free_listen();
    let config = tls_config(dir.path(), &listen, "");
    let check = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stdout_and_stderr(&check));
    let d = Daemon::start_https(&config, &listen, &ca).await;
    assert!(d.api.starts_with("https://"));
    let http = https_client(&ca);

    // HTTPS for a client that trusts the CA, every route on one listener.
    let r = http
        .post(format!("{}/v1/releases", d.api))
        .json(&json!({"service": "checkout", "version": "v1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http.get(format!("{}/metrics", d.api)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(d.log().contains("serving TLS"), "{}", d.log());

    // Plain HTTP to the TLS port is answered 400 and registers nothing.
    let plain = reqwest::Client::new()
        .post(format!("http://{listen}/v1/releases"))
        .json(&json!({"service": "checkout", "version": "plain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    let body: serde_json::Value = plain.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("https://"),
        "{body}"
    );
    let releases: serde_json::Value = http
        .get(format!("{}/v1/releases", d.api))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let versions: Vec<_> = releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(versions, ["v1"]);

    // The CLI reaches it with --ca-file, and says why without it.
    let out = cli_status(&d.api, Some(&ca)).await;
    assert!(out.status.success(), "{}", stdout_and_stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"v1\""));
    let out = cli_status(&d.api, None).await;
    assert!(!out.status.success());
    let said = stdout_and_stderr(&out);
    assert!(said.contains("certificate"), "{said}");

    // The certificate served is the file's.
    let first_der = der(&first);
    let mut open = connect(&listen, &ca).await;
    assert_eq!(sha256(&served(&open)), sha256(&first_der));

    // New files in place: nothing changes until SIGHUP.
    let (second, second_key) = server_cert(dir.path(), "second");
    let second_der = der(&second);
    assert_ne!(sha256(&second_der), sha256(&first_der));
    std::fs::copy(&second, dir.path().join("server.pem")).unwrap();
    std::fs::copy(&second_key, dir.path().join("server.key")).unwrap();
    assert_eq!(
        sha256(&served(&connect(&listen, &ca).await)),
        sha256(&first_der),
        "the files are read at reload, not per handshake"
    );
    d.hup();
    wait_for(
        "new handshakes to get the new certificate",
        Duration::from_secs(10),
        || async {
            let now = served(&connect(&listen, &ca).await);
            (sha256(&now) == sha256(&second_der)).then_some(())
        },
    )
    .await;
    assert!(d.log().contains("TLS certificate replaced"), "{}", d.log());
    // The connection opened before keeps its certificate and still works.
    assert_eq!(sha256(&served(&open)), sha256(&first_der));
    let answer = healthz_on(&mut open).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A broken certificate is rejected: the old one keeps serving.
    std::fs::write(
        dir.path().join("server.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    d.hup();
    wait_for(
        "the broken certificate to be rejected",
        Duration::from_secs(10),
        || async {
            let log = d.log();
            log.contains("new configuration rejected").then_some(())
        },
    )
    .await;
    let log = d.log();
    let rejection = log
        .lines()
        .find(|l| l.contains("new configuration rejected"))
        .unwrap();
    assert!(rejection.contains("tls_cert_file"), "{rejection}");
    assert_eq!(
        sha256(&served(&connect(&listen, &ca).await)),
        sha256(&second_der),
        "the certificate in force before the broken one"
    );
    let r = http.get(format!("{}/healthz", d.api)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// A raw TCP connection that starts a TLS handshake (a record header) and
/// then says nothing more.
async fn stalled_handshake(listen: &str) -> TcpStream {
    let mut s = TcpStream::connect(listen).await.unwrap();
    s.write_all(&[22, 3, 1, 0]).await.unwrap();
    s
}

/// Whether the server has closed `s` (without waiting).
fn is_closed(s: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match s.try_read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Waits (up to `within`) for the server to close `s`.
async fn closed_within(s: &mut TcpStream, within: Duration) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // an alert, say
            }
        }
    })
    .await;
    assert!(read.is_ok(), "still open after {within:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_handshakes_cannot_starve_the_api() {
    // The cap: stalled handshakes are idle connections, closed for newcomers.
    let dir = tempfile::tempdir().unwrap();
    let Pki { ca, .. } = pki(dir.path());
    let listen = free_listen();
    let config = tls_config(
        dir.path(),
        &listen,
        "max_connections = 2\nheader_read_timeout = \"60s\"",
    );
    let d = Daemon::start_https(&config, &listen, &ca).await;
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(stalled_handshake(&listen).await);
    }
    let http = https_client(&ca);
    let r = http
        .get(format!("{}/healthz", d.api))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("a real client gets through stalled handshakes");
    assert_eq!(r.status(), 200);
    // Two places for four connections: at least two stalled ones were
    // closed, long before their 60s header-read timeout.
    wait_for(
        "stalled handshakes to be closed for newcomers",
        Duration::from_secs(20),
        || {
            let closed = stalled.iter().filter(|s| is_closed(s)).count();
            async move { (closed >= 2).then_some(()) }
        },
    )
    .await;
    assert!(
        d.log().contains("closed the longest-idle connection"),
        "{}",
        d.log()
    );
    drop(d);

    // The timeout: a handshake counts as a request head.
    let dir = tempfile::tempdir().unwrap();
    let Pki { ca, .. } = pki(dir.path());
    let listen = free_listen();
    let config = tls_config(dir.path(), &listen, "header_read_timeout = \"1s\"");
    let _d = Daemon::start_https(&config, &listen, &ca).await;
    let mut slow = stalled_handshake(&listen).await;
    // Well before the 60s idle timeout.
    closed_within(&mut slow, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_client_ca_file_requires_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let listen = free_listen();
    let config = tls_config(dir.path(), &listen, "tls_client_ca_file = \"ca.pem\"");
    // Readiness is asked with the client certificate.
    let client = https_client_as(&pki.ca, &pki.client_cert, &pki.client_key);
    let d = Daemon::start_at(&config, format!("https://{listen}"), client.clone()).await;
    let r = client
        .get(format!("{}/healthz", d.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let name = ServerName::try_from("127.0.0.1").unwrap();
    // Without a certificate: no answer.
    let tcp = TcpStream::connect(&listen).await.unwrap();
    let refused = async {
        let mut tls = connector(&pki.ca, None).connect(name.clone(), tcp).await?;
        // TLS 1.3: the server's verdict on the client comes after the handshake.
        tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut buf = [0u8; 64];
        let n = tls.read(&mut buf).await?;
        Ok::<_, std::io::Error>(n)
    }
    .await;
    assert!(
        matches!(refused, Err(_) | Ok(0)),
        "answered without a client certificate: {refused:?}"
    );
    // With one the CA signed: served.
    let tcp = TcpStream::connect(&listen).await.unwrap();
    let mut tls = connector(&pki.ca, Some((&pki.client_cert, &pki.client_key)))
        .connect(name, tcp)
        .await
        .unwrap();
    let answer = healthz_on(&mut tls).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(d);
}
