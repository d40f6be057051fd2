//! `source: scrape` side by side with a real Prometheus (Debian's
//! `prometheus`): both scrape the same real HTTP target every second, and
//! the same queries over the same range give the same values (within a
//! tolerance: the two scrape at different instants, and the target's
//! counters are linear in time; 1.5 % on average, 6 % at any point) and the same verdict for the same rule.
//! Also: queries outside the evaluated PromQL subset are located config
//! errors naming the unsupported part.

use crate::support::{now_ms, wait_for, Prometheus, Target};
use release_guardian::clock::SystemClock;
use release_guardian::engine::{self, CheckTracker, Condition, Rule, Sample};
use release_guardian::model::Level;
use release_guardian::sources::prometheus::series_key;
use release_guardian::sources::scrape::{ScrapeConfig, ScrapeHub, ScrapeView};
use release_guardian::sources::{RangeQuery, RangeSource};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

type Series = BTreeMap<String, Vec<(i64, f64)>>;

const ERROR_RATIO: &str = r#"sum(rate(http_requests_total{service="checkout",code=~"5.."}[5s])) / sum(rate(http_requests_total{service="checkout"}[5s]))"#;

const QUERIES: &[&str] = &[
    ERROR_RATIO,
    r#"sum by (code) (increase(http_requests_total[5s]))"#,
    r#"rate(http_requests_total{code="200"}[4s])"#,
    r#"histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5s])))"#,
    r#"histogram_quantile(0.5, rate(http_request_duration_seconds_bucket[5s]))"#,
    // Label values with `,`, `=`, `}` and escaped quotes keep every series.
    r#"sum by (route, note) (rate(http_route_requests_total[5s]))"#,
];

/// `query` over `[start, end]` at 1 s from Prometheus' HTTP API.
async fn prometheus_range(url: &str, query: &str, start: i64, end: i64) -> Series {
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/api/v1/query_range"))
        .query(&[
            ("query", query.to_string()),
            ("start", format!("{}", start as f64 / 1000.0)),
            ("end", format!("{}", end as f64 / 1000.0)),
            ("step", "1".to_string()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "success", "{v}");
    let mut out = Series::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let metric: BTreeMap<String, String> = serde_json::from_value(s["metric"].clone()).unwrap();
        let points = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let ts = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                (ts, p[1].as_str().unwrap().parse::<f64>().unwrap())
            })
            .collect();
        out.insert(series_key(&metric), points);
    }
    out
}

async fn scrape_range(view: &ScrapeView, query: &str, start: i64, end: i64) -> Series {
    view.query_range(&RangeQuery {
        query: query.into(),
        start,
        end,
        step: 1000,
    })
    .await
    .unwrap()
    .into_iter()
    .map(|(k, s)| (k, s.into_iter().map(|s| (s.ts, s.value)).collect()))
    .collect()
}

fn assert_same(query: &str, prom: &Series, ours: &Series) {
    assert_eq!(
        prom.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>(),
        "{query}: the same series"
    );
    // The two scrape at different instants, and on a loaded machine a
    // scrape can come late: one point may be off by a few percent (seen:
    // 2.6 % at load 15), but the error does not add up. A wrong
    // extrapolation or window is off by 10-20 % at every point.
    let (mut sum, mut n) = (0.0, 0);
    for (key, p) in prom {
        let o = &ours[key];
        assert_eq!(p.len(), o.len(), "{query} {key}: {p:?} vs {o:?}");
        for ((tp, vp), (to, vo)) in p.iter().zip(o) {
            assert_eq!(tp, to);
            let relative = (vp - vo).abs() / vp.abs().max(1e-9);
            assert!(
                relative <= 0.06,
                "{query} {key} at {tp}: prometheus {vp}, scrape {vo}"
            );
            sum += relative;
            n += 1;
        }
    }
    let mean = sum / n.max(1) as f64;
    assert!(
        mean <= 0.015,
        "{query}: scrape differs from prometheus by {:.2} % on average",
        mean * 100.0
    );
}

/// The level a `critical: { above: 0.05 }` rule reaches over `series`.
fn verdict(series: &Series, start: i64) -> Level {
    let rule = Rule {
        warning: None,
        critical: Some(Condition {
            above: Some(0.05),
            ..Condition::default()
        }),
        rollback: None,
        recover_after: 0,
    };
    let series: Vec<(String, Vec<Sample>)> = series
        .iter()
        .map(|(k, s)| {
            (
                k.clone(),
                s.iter().map(|&(t, v)| Sample::ok(t, v)).collect(),
            )
        })
        .collect();
    engine::evaluate(
        &rule,
        &mut CheckTracker::default(),
        &series,
        Some(1000),
        start,
    )
    .level
}

#[tokio::test]
async fn scrape_and_prometheus_agree_on_values_and_verdicts() {
    let target = Target::start().await;
    let prometheus = Prometheus::start(target.addr).await;
    let hub = ScrapeHub::new(reqwest::Client::new(), Arc::new(SystemClock));
    let cfg = ScrapeConfig {
        // The job Prometheus scrapes it as: the same `job` label.
        name: "target".into(),
        url: format!("http://{}/metrics", target.addr),
        interval: Some(Duration::from_secs(1)),
        timeout: None,
    };
    let view = ScrapeView {
        target: hub.hold(&cfg, 120_000),
    };
    let since = now_ms();
    // Both need a full window of history behind the compared range.
    wait_for("9 s of scrapes", Duration::from_secs(30), || async {
        (view.target.scrapes() >= 10 && now_ms() - since > 10_000).then_some(())
    })
    .await;

    let end = (now_ms() - 1000) / 1000 * 1000;
    let start = end - 3000;
    for q in QUERIES {
        let prom = prometheus_range(&prometheus.url, q, start, end).await;
        let ours = scrape_range(&view, q, start, end).await;
        assert!(!prom.is_empty(), "{q}: prometheus has data");
        assert_same(q, &prom, &ours);
    }
    let healthy = prometheus_range(&prometheus.url, ERROR_RATIO, start, end).await;
    assert_eq!(verdict(&healthy, start), Level::Ok);
    assert_eq!(
        verdict(&scrape_range(&view, ERROR_RATIO, start, end).await, start),
        Level::Ok
    );

    // A regression: 20% errors. Compare once both windows lie past it.
    target.set_error_ratio(0.2);
    let switched = now_ms();
    wait_for(
        "11 s past the regression",
        Duration::from_secs(30),
        || async { (now_ms() - switched > 11_000).then_some(()) },
    )
    .await;
    let end = (now_ms() - 1000) / 1000 * 1000;
    let start = end - 2000;
    assert!(start > switched + 5_000 + 1_000);
    let prom = prometheus_range(&prometheus.url, ERROR_RATIO, start, end).await;
    let ours = scrape_range(&view, ERROR_RATIO, start, end).await;
    assert_same(ERROR_RATIO, &prom, &ours);
    let value = prom.values().next().unwrap()[0].1;
    assert!((value - 0.2).abs() < 0.01, "{value}");
    assert_eq!(verdict(&prom, start), Level::Critical);
    assert_eq!(verdict(&ours, start), Level::Critical);

    // Nobody holds the target any more: scraping stops, samples are freed.
    let weak = Arc::downgrade(&view.target);
    drop(view);
    assert!(weak.upgrade().is_none());
    assert_eq!(hub.active(), 0);
}

#[test]
fn queries_outside_the_subset_are_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/scrape.yaml"),
        r#"checks:
  - name: ok
    source: scrape
    scrape: metrics
    query: sum(rate(x{service="{{service}}"}[5m]))
    warning: { above: 1 }
  - name: avg
    source: scrape
    scrape: metrics
    query: avg(rate(x[5m]))
    warning: { above: 1 }
  - name: offset
    source: scrape
    scrape: metrics
    query: rate(x[5m] offset 1h)
    warning: { above: 1 }
  - name: unnamed
    source: scrape
    query: x
    warning: { above: 1 }
  - name: other
    source: scrape
    scrape: nope
    query: x
    warning: { above: 1 }
"#,
    )
    .unwrap();
    let text = r#"[[services]]
name = "checkout"
rules = ["rules/scrape.yaml"]
  [[services.scrapes]]
  name = "metrics"
  url = "http://127.0.0.1:9/metrics"
  interval = "10ms"
"#;
    let path = dir.path().join("guardian.toml");
    let err = release_guardian::config::load_str(text, &path, &[])
        .unwrap_err()
        .to_string();
    let pack = dir.path().join("rules/scrape.yaml").display().to_string();
    for expected in [
        format!("{pack}:10:5: check `avg`: aggregation `avg` is not supported"),
        format!("{pack}:15:5: check `offset`: the `offset` modifier is not supported"),
        format!("{pack}:18:5: check `unnamed`: a scrape check needs `scrape`"),
        format!("{pack}:23:5: check `other`: service `checkout` (production) has no scrape `nope`; its scrapes: metrics"),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
    assert!(
        err.contains("guardian.toml:7:") && err.contains("`interval` must be at least 100ms"),
        "{err}"
    );
    assert!(!err.contains("check `ok`"), "{err}");
}
