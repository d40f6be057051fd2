//! The Loki source against the Loki stand-in (`support::loki`: no real Loki
//! installs here; the stand-in serves Loki's documented parameters and
//! shapes and validates what it receives): metric range and instant
//! queries, log queries with `limit` and `direction`, the tenant header,
//! plain-text errors, long queries as a POST form; and end to end, the real
//! daemon watching a release whose Loki metric check breaches, with the
//! matching log lines shown in the status API.

use crate::support::{
    now_ms, one_service_config, range_source, wait_for, Daemon, Loki, Receiver, Reply,
};
use axum::http::Method;
use release_guardian::sources::loki::LokiSource;
use release_guardian::sources::{Direction, LogQuery, RangeQuery, SourceError};
use serde_json::{json, Value};
use std::time::Duration;

/// An instant in milliseconds (2023-11-14T22:13:20Z); lines are pushed
/// at offsets from it.
const T: i64 = 1_700_000_000_000;

fn loki_toml(url: &str, tenant: Option<&str>) -> String {
    let tenant = tenant
        .map(|t| format!("tenant = \"{t}\"\n"))
        .unwrap_or_default();
    format!("[sources.loki]\nurl = \"{url}\"\ntimeout = \"3s\"\n{tenant}")
}

/// Lines of `checkout` at T+10 s, 20 s, 30 s, 40 s (one of them `info`),
/// and one of another app.
fn push_lines(loki: &Loki) {
    let app = [("app", "checkout")];
    loki.push(T + 10_000, &app, "error: upstream reset");
    loki.push(T + 20_000, &app, "info: all good");
    loki.push(
        T + 30_000,
        &[("app", "checkout"), ("pod", "b")],
        "error: timeout",
    );
    loki.push(T + 40_000, &app, "error: upstream reset again");
    loki.push(T + 40_000, &[("app", "cart")], "error: not ours");
}

fn errors_of_checkout(start: i64, end: i64) -> RangeQuery {
    RangeQuery {
        query: r#"sum(count_over_time({app="checkout"} |= "error" [15s]))"#.into(),
        start,
        end,
        step: 15_000,
    }
}

#[tokio::test]
async fn metric_queries_are_matrices_sent_with_nanoseconds_and_the_tenant() {
    let loki = Loki::start(Some("team-a")).await;
    push_lines(&loki);
    let dir = tempfile::tempdir().unwrap();
    let source = range_source(dir.path(), &loki_toml(&loki.url, Some("team-a")), "loki");
    let series = source
        .query_range(&errors_of_checkout(T, T + 45_000))
        .await
        .unwrap();
    // (t-15s, t]: +15 s sees +10 s; +30 s sees +30 s; +45 s sees +40 s;
    // nothing at +0 s, so no point there (Loki does not fill zeros).
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].0, "{}");
    let points: Vec<(i64, f64)> = series[0].1.iter().map(|s| (s.ts, s.value)).collect();
    assert_eq!(
        points,
        [(T + 15_000, 1.0), (T + 30_000, 1.0), (T + 45_000, 1.0)]
    );

    let r = &loki.requests()[0];
    assert_eq!(r.method, Method::GET);
    assert_eq!(r.path, "/loki/api/v1/query_range");
    assert_eq!(r.params["start"], "1700000000000000000");
    assert_eq!(r.params["end"], "1700000045000000000");
    assert_eq!(r.params["step"], "15");
    assert_eq!(r.headers["x-scope-orgid"], "team-a");

    // Without the tenant the server refuses: a clear error, never data.
    let untenanted = range_source(dir.path(), &loki_toml(&loki.url, None), "loki");
    let e = untenanted
        .query_range(&errors_of_checkout(T, T + 45_000))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "loki answered HTTP 401: no org id (the server wants a tenant: set `tenant`)"
    );
}

#[tokio::test]
async fn log_lines_by_limit_and_direction() {
    let loki = Loki::start(None).await;
    push_lines(&loki);
    let dir = tempfile::tempdir().unwrap();
    let source = range_source(dir.path(), &loki_toml(&loki.url, None), "loki");
    let logs = |limit, direction| LogQuery {
        query: r#"{app="checkout"} |= "error""#.into(),
        start: T,
        // End is exclusive: the lines at +40 s are left out.
        end: T + 40_000,
        limit,
        direction,
    };
    let newest = source
        .query_logs(&logs(5, Direction::Backward))
        .await
        .unwrap();
    let got: Vec<(&str, &str, &str)> = newest
        .iter()
        .map(|l| (l.ts.as_str(), l.stream.as_str(), l.line.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "1700000030000000000",
                r#"{app="checkout",pod="b"}"#,
                "error: timeout"
            ),
            (
                "1700000010000000000",
                r#"{app="checkout"}"#,
                "error: upstream reset"
            ),
        ]
    );
    let oldest = source
        .query_logs(&logs(1, Direction::Forward))
        .await
        .unwrap();
    assert_eq!(oldest.len(), 1);
    assert_eq!(oldest[0].line, "error: upstream reset");
    let r = loki.requests();
    assert_eq!(r[0].params["limit"], "5");
    assert_eq!(r[0].params["direction"], "backward");
    assert_eq!(r[1].params["direction"], "forward");
}

#[tokio::test]
async fn instant_metric_queries_are_vectors_and_log_queries_are_refused() {
    let loki = Loki::start(None).await;
    push_lines(&loki);
    let cfg = release_guardian::sources::loki::LokiConfig {
        url: loki.url.clone(),
        ..Default::default()
    };
    let source = LokiSource::new(reqwest::Client::new(), &cfg).unwrap();
    let v = source
        .query_instant(
            r#"count_over_time({app="checkout"} |= "error" [30s])"#,
            Some(T + 40_000),
        )
        .await
        .unwrap();
    // (T+10 s, T+40 s]: one line per label set.
    let got: Vec<(&str, Vec<f64>)> = v
        .iter()
        .map(|(k, s)| (k.as_str(), s.iter().map(|x| x.value).collect()))
        .collect();
    assert_eq!(
        got,
        [
            (r#"{app="checkout"}"#, vec![1.0]),
            (r#"{app="checkout",pod="b"}"#, vec![1.0])
        ]
    );
    assert_eq!(v[0].1[0].ts, T + 40_000);
    let r = loki.requests().pop().unwrap();
    assert_eq!(r.path, "/loki/api/v1/query");
    assert_eq!(r.params["time"], "1700000040000000000");
    let e = source
        .query_instant(r#"{app="checkout"}"#, Some(T + 40_000))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SourceError::Query { detail, .. } if detail.starts_with("log queries are not supported as an instant query type")),
        "{e:?}"
    );
}

#[tokio::test]
async fn plain_text_errors_and_long_queries() {
    let loki = Loki::start(None).await;
    push_lines(&loki);
    let dir = tempfile::tempdir().unwrap();
    let source = range_source(dir.path(), &loki_toml(&loki.url, None), "loki");
    let bad = RangeQuery {
        query: "sum(".into(),
        ..errors_of_checkout(T, T + 45_000)
    };
    let e = source.query_range(&bad).await.unwrap_err();
    assert!(
        matches!(&e, SourceError::Query { source_name: "loki", detail, .. } if detail.starts_with("parse error at line 1")),
        "{e:?}"
    );
    // A log query where a metric one is expected is named as such.
    let logs = RangeQuery {
        query: r#"{app="checkout"}"#.into(),
        ..errors_of_checkout(T, T + 45_000)
    };
    let e = source.query_range(&logs).await.unwrap_err();
    assert!(e.to_string().contains("count_over_time"), "{e}");

    // A long filter goes in a POST form and still answers.
    let needle = "x".repeat(3000);
    loki.push(
        T + 5_000,
        &[("app", "checkout")],
        &format!("error {needle}"),
    );
    let long = RangeQuery {
        query: format!(r#"sum(count_over_time({{app="checkout"}} |= "{needle}" [15s]))"#),
        ..errors_of_checkout(T, T + 15_000)
    };
    let series = source.query_range(&long).await.unwrap();
    assert_eq!(series[0].1.len(), 1);
    let last = loki.requests().pop().unwrap();
    assert_eq!(last.method, Method::POST);
    assert_eq!(last.params["query"], long.query);
}

const RULES: &str = r#"checks:
  - name: errors
    source: loki
    query: 'sum(count_over_time({app="{{service}}"} |= "error" [1s]))'
    step: 1s
    logs: { query: '{app="{{service}}"} |= "error"', limit: 3 }
    critical: { above: 2 }
    rollback: { above: 2, for: 2s }
"#;

fn check<'a>(r: &'a Value, name: &str) -> Option<&'a Value> {
    r["checks"].as_array()?.iter().find(|c| c["name"] == name)
}

#[tokio::test]
async fn a_watch_whose_loki_metric_check_breaches_rolls_back_with_its_log_lines() {
    let loki = Loki::start(Some("shop")).await;
    let slack = Receiver::start(Reply::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, listen) = one_service_config(
        dir.path(),
        &format!(
            "[sources.loki]\nurl = \"{}\"\ntenant = \"shop\"\ntimeout = \"2s\"",
            loki.url
        ),
        RULES,
        &format!("kind = \"slack\"\nwebhook_url = \"{}\"", slack.slack_url()),
    );
    let daemon = Daemon::start(&config, &listen).await;
    let (status, r) = daemon
        .post(
            "/v1/releases",
            json!({"service": "checkout", "version": "v2", "previous_version": "v1"}),
        )
        .await;
    assert_eq!(status, 201, "{r}");
    let id = r["id"].as_str().unwrap().to_string();

    // Healthy first: one error line a second is below the threshold (> 2).
    let mut last = 0;
    wait_for("the check is ok", Duration::from_secs(30), || {
        let t = now_ms();
        if t - last >= 1_000 {
            loki.push(t, &[("app", "checkout")], "error: one a second is fine");
            last = t;
        }
        let d = &daemon;
        let id = id.clone();
        async move {
            let r = d.get(&format!("/v1/releases/{id}")).await;
            (check(&r, "errors")?["state"] == "ok").then_some(())
        }
    })
    .await;
    let r = daemon.get(&format!("/v1/releases/{id}")).await;
    assert_eq!(r["status"], "watching", "{r}");

    // Then five error lines a second until it rolls back.
    let r = wait_for(
        "the release is rolled back",
        Duration::from_secs(60),
        || {
            let t = now_ms();
            for i in 0..5 {
                loki.push(
                    t + i,
                    &[("app", "checkout"), ("pod", "p1")],
                    &format!("error: upstream reset #{i}"),
                );
            }
            let d = &daemon;
            let id = id.clone();
            async move {
                let r = d.get(&format!("/v1/releases/{id}")).await;
                (r["status"] == "rolled_back").then_some(r)
            }
        },
    )
    .await;
    let decisions = r["decisions"].as_array().unwrap();
    assert!(
        decisions.iter().any(|d| d["action"] == "level_changed"
            && d["level"] == "rollback"
            && d["check"] == "errors"),
        "{r}"
    );
    // Its evidence: at most `limit` lines, the newest first.
    let logs = check(&r, "errors").unwrap()["logs"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!logs.is_empty() && logs.len() <= 3, "{logs:?}");
    for l in &logs {
        assert!(l["line"].as_str().unwrap().starts_with("error: "), "{l}");
        assert!(l["ts"].as_str().unwrap().len() == 19, "{l}");
        assert!(l["at"].as_str().unwrap().ends_with('Z'), "{l}");
    }
    let ts: Vec<&str> = logs.iter().map(|l| l["ts"].as_str().unwrap()).collect();
    let mut sorted = ts.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ts, sorted, "newest first");
    // Every request carried the tenant and nanosecond times.
    for req in loki.requests() {
        assert_eq!(req.headers["x-scope-orgid"], "shop");
        assert_eq!(req.params["start"].len(), 19, "{:?}", req.params);
    }
    assert!(
        slack
            .texts()
            .iter()
            .any(|t| t.contains("errors") && t.contains("rollback")),
        "{:?}",
        slack.texts()
    );
}

const ALWAYS: &str = r#"checks:
  - name: lines
    source: loki
    query: 'sum(count_over_time({app="{{service}}"}[10s]))'
    step: 1s
    critical: { above: 1000000 }
"#;

/// Loki fails for a while and comes back: one `blind` warning after
/// `blind_after` failed ticks, one `blind_cleared` when it is seen again,
/// through the notifier; never a breach.
#[tokio::test]
async fn a_loki_outage_warns_once_and_clears_once() {
    let loki = Loki::start(None).await;
    let hook = Receiver::start(Reply::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, listen) = one_service_config(
        dir.path(),
        &format!(
            "[sources.loki]\nurl = \"{}\"\ntimeout = \"2s\"\nblind_after = 3",
            loki.url
        ),
        ALWAYS,
        &format!("kind = \"webhook\"\nurl = \"{}\"", hook.webhook_url()),
    );
    loki.set_failing(true);
    let daemon = Daemon::start(&config, &listen).await;
    let (status, r) = daemon
        .post(
            "/v1/releases",
            json!({"service": "checkout", "version": "v2"}),
        )
        .await;
    assert_eq!(status, 201, "{r}");
    let events = |name: &'static str| {
        hook.received()
            .into_iter()
            .filter(move |m| m.body["event"] == name)
            .collect::<Vec<_>>()
    };
    let blind = wait_for("a `blind` warning", Duration::from_secs(30), || {
        let got = events("blind");
        async move { (!got.is_empty()).then_some(got) }
    })
    .await;
    let reason = blind[0].body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("guardian cannot see loki: 3 consecutive reads failed")
            && reason.contains("loki answered HTTP 500: rpc error"),
        "{reason}"
    );
    assert_eq!(blind[0].body["severity"], "warning");
    assert!(blind[0].body["summary"]
        .as_str()
        .unwrap()
        .contains("checkout"));

    // Loki is back (with lines to count): one clearing message.
    loki.set_failing(false);
    let mut last = 0;
    let cleared = wait_for("a `blind_cleared` message", Duration::from_secs(30), || {
        let t = now_ms();
        if t - last >= 500 {
            loki.push(t, &[("app", "checkout")], "a line");
            last = t;
        }
        let got = events("blind_cleared");
        async move { (!got.is_empty()).then_some(got) }
    })
    .await;
    assert!(
        cleared[0].body["reason"]
            .as_str()
            .unwrap()
            .starts_with("guardian sees loki again"),
        "{}",
        cleared[0].body
    );
    assert_eq!(events("blind").len(), 1, "one warning for the whole outage");
    assert!(hook
        .received()
        .iter()
        .all(|m| m.body["event"] != "level_changed"));
}
