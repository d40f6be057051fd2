//! PrometheusSource against a real Prometheus (Debian's `prometheus`) that
//! scrapes itself every second. Without `/usr/bin/prometheus` (or the binary
//! named by `RG_TEST_PROMETHEUS`) this test fails when `CI` is set and is
//! skipped with a note otherwise.

use crate::support::prometheus::binary;
use crate::support::{now_ms, wait_for, Prometheus};
use release_guardian::sources::prometheus::PrometheusConfig;
use release_guardian::sources::prometheus::PrometheusSource;
use release_guardian::sources::{RangeQuery, RangeSource};
use std::time::Duration;

#[tokio::test]
async fn real_prometheus_range_and_instant_queries() {
    let path = binary();
    if !path.exists() {
        let note = format!(
            "{} is missing: install Debian's `prometheus` package (apt-get install -y prometheus)",
            path.display()
        );
        if std::env::var_os("CI").is_some() {
            panic!("{note}");
        }
        eprintln!("SKIPPED real_prometheus_range_and_instant_queries: {note}");
        return;
    }
    let prometheus = Prometheus::start_self().await;
    let base = prometheus.url.clone();

    let source = PrometheusSource::new(
        reqwest::Client::new(),
        &PrometheusConfig {
            url: base.clone(),
            timeout: Duration::from_secs(5),
            ..PrometheusConfig::default()
        },
    )
    .unwrap();
    let instance = base.strip_prefix("http://").unwrap();
    let key = format!(r#"{{__name__="up",instance="{instance}",job="prometheus"}}"#);

    let first_up = wait_for(
        "a first scrape (up == 1)",
        Duration::from_secs(30),
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
