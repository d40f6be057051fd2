//! A real Prometheus (Debian package) on a free loopback port, scraping one
//! target every second, with its data in a temp dir.

use super::{free_port, wait_for};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BINARY: &str = "/usr/bin/prometheus";

pub struct Prometheus {
    pub url: String,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` as job `target`; returns once the
    /// target is up. Panics (fails the test) when Prometheus is not installed:
    /// `.ci/run` installs it.
    pub async fn start(target: SocketAddr) -> Self {
        assert!(
            std::path::Path::new(BINARY).exists(),
            "{BINARY} is missing: install Debian's `prometheus` package (the test command `.ci/run` does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: target\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let me = Self {
            url: format!("http://127.0.0.1:{port}"),
            child: Some(child),
            _dir: dir,
        };
        let http = reqwest::Client::new();
        let url = me.url.clone();
        wait_for(
            "prometheus ready and the target up",
            Duration::from_secs(60),
            || {
                let http = http.clone();
                let url = url.clone();
                async move {
                    let r = http
                        .get(format!("{url}/api/v1/query"))
                        .query(&[("query", "up{job=\"target\"} == 1")])
                        .send()
                        .await
                        .ok()?;
                    let v: serde_json::Value = r.json().await.ok()?;
                    (!v["data"]["result"].as_array()?.is_empty()).then_some(())
                }
            },
        )
        .await;
        me
    }

    /// Stops Prometheus now (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}
