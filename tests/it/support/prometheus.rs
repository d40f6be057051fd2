//! A real Prometheus (Debian's package, or the binary named by
//! `$RG_TEST_PROMETHEUS`) on a free loopback port, scraping every second,
//! with its data and log in a temp dir; optionally behind a web config
//! file (TLS, basic auth). Killed when dropped; when the test
//! is failing, the tail of its log goes to stderr.

use super::{free_port, wait_for};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The binary: `$RG_TEST_PROMETHEUS`, else Debian's `/usr/bin/prometheus`.
pub fn binary() -> PathBuf {
    std::env::var_os("RG_TEST_PROMETHEUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"))
}

pub struct Prometheus {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` as job `target`; returns once the
    /// target is up.
    pub async fn start(target: SocketAddr) -> Self {
        let me = Self::spawn("target", |_| target.to_string());
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

    /// Starts Prometheus scraping every one of `targets` as job `target`
    /// (told apart by their `instance` label, `host:port`); returns once
    /// all are up.
    pub async fn start_targets(targets: &[SocketAddr]) -> Self {
        let list: Vec<String> = targets.iter().map(ToString::to_string).collect();
        let me = Self::spawn("target", |_| list.join("', '"));
        let http = reqwest::Client::new();
        let query = format!("count(up{{job=\"target\"}} == 1) == {}", targets.len());
        let url = me.url.clone();
        wait_for(
            "prometheus ready and every target up",
            Duration::from_secs(60),
            || {
                let r = http
                    .get(format!("{url}/api/v1/query"))
                    .query(&[("query", query.as_str())])
                    .send();
                async move {
                    let v: serde_json::Value = r.await.ok()?.json().await.ok()?;
                    (!v["data"]["result"].as_array()?.is_empty()).then_some(())
                }
            },
        )
        .await;
        me
    }

    /// Starts Prometheus scraping itself as job `prometheus`; returns once
    /// it answers `/-/ready` (its first scrape may still be to come).
    pub async fn start_self() -> Self {
        let me = Self::spawn("prometheus", |port| format!("127.0.0.1:{port}"));
        let http = reqwest::Client::new();
        let ready = format!("{}/-/ready", me.url);
        wait_for("prometheus /-/ready", Duration::from_secs(60), || {
            let r = http.get(&ready).send();
            async move { r.await.ok()?.status().is_success().then_some(()) }
        })
        .await;
        me
    }

    /// Starts Prometheus with `web_config` (the text of its
    /// `--web.config.file`: TLS, basic auth) serving `https` or not, and no
    /// scrape; returns once it answers `/-/ready` with 200 through `client`
    /// (which must trust its certificate), with `basic_auth` (user,
    /// password) when the web config asks for it (it guards `/-/ready`
    /// too: a 401 only says the web server is up, not Prometheus).
    pub async fn start_with_web_config(
        web_config: &str,
        https: bool,
        client: reqwest::Client,
        basic_auth: Option<(&str, &str)>,
    ) -> Self {
        let mut me = Self::spawn_with("none", |_| "127.0.0.1:1".into(), Some(web_config));
        if https {
            me.url = me.url.replacen("http://", "https://", 1);
        }
        let ready = format!("{}/-/ready", me.url);
        wait_for(
            "prometheus /-/ready behind its web config",
            Duration::from_secs(60),
            || {
                let mut r = client.get(&ready);
                if let Some((user, password)) = basic_auth {
                    r = r.basic_auth(user, Some(password));
                }
                let r = r.send();
                async move { (r.await.ok()?.status().as_u16() == 200).then_some(()) }
            },
        )
        .await;
        me
    }

    /// Starts Prometheus on history: `openmetrics` (an OpenMetrics text
    /// ending in `# EOF`) backfilled into its data directory with
    /// `promtool tsdb create-blocks-from openmetrics`, nothing scraped;
    /// returns once it answers `/-/ready`. Samples older than Prometheus'
    /// retention (15 days) are dropped by it.
    pub async fn start_with_history(openmetrics: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("history.om");
        std::fs::write(&input, openmetrics).unwrap();
        let promtool = binary().with_file_name("promtool");
        assert!(
            promtool.exists(),
            "{} is missing: install Debian's `prometheus` package (scripts/test.sh does)",
            promtool.display()
        );
        let data = dir.path().join("data");
        let out = Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&data)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool tsdb create-blocks-from openmetrics failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let me = Self::spawn_in(dir, "none", |_| "127.0.0.1:1".into(), None);
        let http = reqwest::Client::new();
        let ready = format!("{}/-/ready", me.url);
        wait_for("prometheus /-/ready", Duration::from_secs(60), || {
            let r = http.get(&ready).send();
            async move { r.await.ok()?.status().is_success().then_some(()) }
        })
        .await;
        me
    }

    /// Spawns the binary scraping `target(port)` as job `job`. Panics (fails
    /// the test) when Prometheus is not installed: `scripts/test.sh`
    /// installs it.
    fn spawn(job: &str, target: impl FnOnce(u16) -> String) -> Self {
        Self::spawn_with(job, target, None)
    }

    fn spawn_with(job: &str, target: impl FnOnce(u16) -> String, web_config: Option<&str>) -> Self {
        Self::spawn_in(tempfile::tempdir().unwrap(), job, target, web_config)
    }

    /// Spawns the binary with its config, data (`data/`) and log in `dir`.
    fn spawn_in(
        dir: tempfile::TempDir,
        job: &str,
        target: impl FnOnce(u16) -> String,
        web_config: Option<&str>,
    ) -> Self {
        let binary = binary();
        assert!(
            binary.exists(),
            "{} is missing: install Debian's `prometheus` package (scripts/test.sh does)",
            binary.display()
        );
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: ['{}']\n",
                target(port)
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let mut command = Command::new(&binary);
        if let Some(web) = web_config {
            let path = dir.path().join("web.yml");
            std::fs::write(&path, web).unwrap();
            command.arg(format!("--web.config.file={}", path.display()));
        }
        let child = command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Self {
            url: format!("http://127.0.0.1:{port}"),
            child: Some(child),
            dir,
        }
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
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("prometheus.log"));
            if let Ok(log) = log {
                let tail: Vec<_> = log.lines().rev().take(20).collect();
                eprintln!("--- prometheus log (last lines, newest first) ---");
                for line in tail {
                    eprintln!("{line}");
                }
            }
        }
    }
}
