//! A real Alertmanager (Debian's `prometheus-alertmanager`, or the binary
//! named by `$RG_TEST_ALERTMANAGER`) on a free loopback port, clustering
//! off, with its config, data and log in a temp dir. Killed when dropped;
//! when the test is failing, the tail of its log goes to stderr.

use super::{free_port, wait_for};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The binary: `$RG_TEST_ALERTMANAGER`, else `/usr/bin/prometheus-alertmanager`.
pub fn binary() -> PathBuf {
    std::env::var_os("RG_TEST_ALERTMANAGER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus-alertmanager"))
}

pub struct Alertmanager {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts Alertmanager with one receiver that sends nowhere; returns
    /// once it answers `/-/ready`. Panics (fails the test) when it is not
    /// installed: `scripts/test.sh` installs it.
    pub async fn start() -> Self {
        let binary = binary();
        assert!(
            binary.exists(),
            "{} is missing: install Debian's `prometheus-alertmanager` package (scripts/test.sh does)",
            binary.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("am.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n",
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start alertmanager");
        let me = Self {
            url: format!("http://127.0.0.1:{port}"),
            child: Some(child),
            dir,
        };
        let http = reqwest::Client::new();
        let ready = format!("{}/-/ready", me.url);
        wait_for("alertmanager /-/ready", Duration::from_secs(60), || {
            let r = http.get(&ready).send();
            async move { r.await.ok()?.status().is_success().then_some(()) }
        })
        .await;
        me
    }

    /// `GET /api/v2/alerts` (active, silenced, inhibited and unprocessed).
    pub async fn alerts(&self) -> Vec<Value> {
        let r = reqwest::Client::new()
            .get(format!("{}/api/v2/alerts", self.url))
            .send()
            .await
            .expect("GET /api/v2/alerts");
        assert!(r.status().is_success(), "{}", r.status());
        r.json::<Vec<Value>>().await.expect("an array of alerts")
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("alertmanager.log"));
            if let Ok(log) = log {
                let tail: Vec<_> = log.lines().rev().take(20).collect();
                eprintln!("--- alertmanager log (last lines, newest first) ---");
                for line in tail {
                    eprintln!("{line}");
                }
            }
        }
    }
}
