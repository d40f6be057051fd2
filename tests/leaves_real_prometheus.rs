//! PrometheusSource against a real Prometheus (Debian's `prometheus`) that
//! scrapes itself every second. Without `/usr/bin/prometheus` (or the binary
//! named by `RG_TEST_PROMETHEUS`) this test fails when `CI` is set and is
//! skipped with a note otherwise.

mod leaves_support;

use leaves_support::{free_port, poll_until};
use release_guardian::config::PrometheusConfig;
use release_guardian::sources::prometheus::PrometheusSource;
use release_guardian::sources::{RangeQuery, RangeSource};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The binary: `$RG_TEST_PROMETHEUS`, default Debian's.
fn prometheus_binary() -> PathBuf {
    std::env::var_os("RG_TEST_PROMETHEUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"))
}

/// Kills and reaps the server when the test ends, however it ends.
struct Server {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(&self.log) {
                let tail: Vec<_> = log.lines().rev().take(20).collect();
                eprintln!("--- prometheus log (last lines, newest first) ---");
                for line in tail {
                    eprintln!("{line}");
                }
            }
        }
    }
}

fn start_prometheus(binary: &Path, dir: &Path, port: u16) -> Server {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let log = dir.join("prometheus.log");
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start prometheus");
    Server { child, log }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn real_prometheus_range_and_instant_queries() {
    let binary = prometheus_binary();
    if !binary.exists() {
        let note = format!(
            "{} is missing: install Debian's `prometheus` package (apt-get install -y prometheus)",
            binary.display()
        );
        if std::env::var_os("CI").is_some() {
            panic!("{note}");
        }
        eprintln!("SKIPPED real_prometheus_range_and_instant_queries: {note}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = start_prometheus(&binary, dir.path(), port);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    poll_until(
        "prometheus /-/ready",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let r = http.get(format!("{base}/-/ready")).send().await.ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;

    let source = PrometheusSource::new(
        http.clone(),
        &PrometheusConfig {
            url: base.clone(),
            timeout: Duration::from_secs(5),
            bearer_token: None,
            bearer_token_file: None,
        },
    )
    .unwrap();
    let instance = format!("127.0.0.1:{port}");
    let key = format!(r#"{{__name__="up",instance="{instance}",job="prometheus"}}"#);

    let first_up = poll_until(
        "a first scrape (up == 1)",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let series = source.query_instant("up", None).await.ok()?;
            let (k, samples) = series.into_iter().next()?;
            (samples.first()?.value == 1.0).then_some((k, samples[0].ts))
        },
    )
    .await;
    assert_eq!(first_up.0, key);
    assert!(
        (first_up.1 - now_ms()).abs() < 60_000,
        "instant sample at server now"
    );

    let end = now_ms();
    let series = source
        .query_range(&RangeQuery {
            query: "up".into(),
            start: end - 2_000,
            end,
            step: 1_000,
        })
        .await
        .unwrap();
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0].0, key);
    let samples = &series[0].1;
    assert!(!samples.is_empty());
    assert!(samples.iter().all(|s| s.value == 1.0 && s.ok));
    assert_eq!(
        samples.last().unwrap().ts,
        end,
        "the last step is exactly `end`"
    );
    for pair in samples.windows(2) {
        assert_eq!(pair[1].ts - pair[0].ts, 1_000);
    }

    let err = source
        .query_range(&RangeQuery {
            query: "sum(".into(),
            start: end - 2_000,
            end,
            step: 1_000,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, release_guardian::sources::SourceError::Query { error_type, .. } if error_type == "bad_data"),
        "{err:?}"
    );
}
