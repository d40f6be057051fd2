//! `release-guardian backtest` against a real Prometheus holding backfilled
//! history (`promtool tsdb create-blocks-from openmetrics`): the verdict and
//! the rollback instant of each replay are the ones this test computes from
//! the series it wrote and the cadence, not by running the engine. The same
//! against the Loki stand-in ([`Loki`]) holding past log lines.

use crate::support::{bin, now_ms, stdout_and_stderr, Loki, Prometheus};
use serde_json::Value;
use std::process::Command;

const MIN: i64 = 60_000;
const STEP: i64 = 15_000;

const RULES: &str = "checks:
  - name: error_rate
    source: prometheus
    query: max(rg_error_ratio{service=\"{{service}}\"})
    critical: { above: 0.01 }
    rollback: { above: 0.05, for: 5m }
";

/// `checkout` breaks `break_after` after the release (0.1 % → 8 %);
/// `payments` stays at 0.1 %. Samples every 15 s from an hour before the
/// release to `end`.
fn history(release: i64, break_at: i64, end: i64) -> String {
    let mut om = String::from("# TYPE rg_error_ratio gauge\n");
    for (service, broken) in [("checkout", true), ("payments", false)] {
        let mut t = release - 60 * MIN;
        while t <= end {
            let v = if broken && t >= break_at { 0.08 } else { 0.001 };
            om += &format!(
                "rg_error_ratio{{service=\"{service}\"}} {v} {}\n",
                t as f64 / 1000.0
            );
            t += STEP;
        }
    }
    om + "# EOF\n"
}

fn rfc3339(ms: i64) -> String {
    release_guardian::model::rfc3339(ms)
}

#[tokio::test]
async fn backtest_replays_backfilled_history_to_the_rollback_instant() {
    // A release 3 hours ago, on the minute; history up to an hour ago.
    let release = (now_ms() - 180 * MIN) / MIN * MIN;
    let break_at = release + 12 * MIN;
    let end = release + 120 * MIN;
    let prom = Prometheus::start_with_history(&history(release, break_at, end)).await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
    let config = dir.path().join("guardian.toml");
    std::fs::write(
        &config,
        format!(
            "[sources.prometheus]\nurl = \"{}\"\n[store]\npath = \"g.db\"\n\
             [[services]]\nname = \"checkout\"\nrules = [\"rules.yaml\"]\n\
             [[services]]\nname = \"payments\"\nrules = [\"rules.yaml\"]\n",
            prom.url
        ),
    )
    .unwrap();

    // What the daemon would do, from the data and the cadence alone: ticks
    // every 5 minutes in the first hour, and between them a look at the
    // query every step (15 s, `sentinel_every`); the first look at or after
    // the break sees 8 % > 1 % (critical) and ticks at once, and from then
    // on the watch ticks every step (escalation) until the breach has held
    // 5 minutes.
    let first_tick_seeing_it = release + (break_at - release + STEP - 1) / STEP * STEP;
    let held = break_at + 5 * MIN;
    let expected_rollback = if held <= first_tick_seeing_it {
        first_tick_seeing_it
    } else {
        first_tick_seeing_it + (held - first_tick_seeing_it + STEP - 1) / STEP * STEP
    };
    assert_eq!(
        expected_rollback,
        release + 17 * MIN,
        "the arithmetic above"
    );

    let until = release + 90 * MIN;
    let out = Command::new(bin())
        .arg("backtest")
        .arg("--config")
        .arg(&config)
        .args(["--service", "checkout", "--release-at", &rfc3339(release)])
        .args(["--until", &rfc3339(until), "--format", "json"])
        .output()
        .unwrap();
    let all = stdout_and_stderr(&out);
    assert!(out.status.success(), "{all}");
    let v: Value = serde_json::from_slice(&out.stdout).expect(&all);
    assert_eq!(v["service"], "checkout");
    assert_eq!(v["release_at"], rfc3339(release));
    assert_eq!(v["verdict"], "rollback", "{all}");
    assert_eq!(v["rollback_at"], rfc3339(expected_rollback), "{all}");
    // Every tick up to the rollback: 5 and 10 minutes on the tiers, 12 (the
    // look that saw the break), then every 15 s.
    let ticks = v["ticks"].as_array().unwrap();
    let at: Vec<&str> = ticks.iter().map(|t| t["at"].as_str().unwrap()).collect();
    assert_eq!(
        &at[..3],
        &[
            rfc3339(release + 5 * MIN),
            rfc3339(release + 10 * MIN),
            rfc3339(first_tick_seeing_it)
        ]
    );
    assert_eq!(
        at.last().copied(),
        Some(rfc3339(expected_rollback).as_str())
    );
    assert_eq!(first_tick_seeing_it, release + 12 * MIN);
    assert_eq!(ticks.len(), 3 + ((17 - 12) * MIN / STEP) as usize);
    let first = &ticks[0]["checks"][0];
    assert_eq!(
        (first["name"].as_str(), first["state"].as_str()),
        (Some("error_rate"), Some("ok"))
    );
    assert_eq!(first["value"].as_f64(), Some(0.001));
    assert_eq!(ticks[2]["checks"][0]["state"], "critical");
    let decisions = v["decisions"].as_array().unwrap();
    assert!(
        decisions.iter().any(|d| d["check"] == "error_rate"
            && d["level"] == "rollback"
            && d["at"] == rfc3339(expected_rollback)),
        "{all}"
    );

    // Every service, as a table: the healthy one is not rolled back.
    let out = Command::new(bin())
        .arg("backtest")
        .arg("--config")
        .arg(&config)
        .args(["--all-services", "--release-at", &rfc3339(release)])
        .args(["--until", &rfc3339(until)])
        .output()
        .unwrap();
    let all = stdout_and_stderr(&out);
    assert!(out.status.success(), "{all}");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no line for {name}: {all}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let checkout = line("checkout/production");
    assert_eq!(
        checkout[2..5],
        [
            "rollback".to_string(),
            rfc3339(expected_rollback),
            "error_rate".into()
        ],
        "{all}"
    );
    let payments = line("payments/production");
    assert_eq!(payments[2..5], ["no_rollback", "-", "-"], "{all}");
    // Ticks every 5 minutes for the first hour, then every 15 until `until`.
    assert_eq!(payments[5], (12 + 2).to_string(), "{all}");
}

#[test]
fn backtest_names_a_bad_instant_and_a_missing_service() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("guardian.toml");
    std::fs::write(&config, "[[services]]\nname = \"checkout\"\n").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(bin())
            .arg("backtest")
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), stdout_and_stderr(&out))
    };
    let (code, all) = run(&["--service", "checkout", "--release-at", "yesterday"]);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("--release-at \"yesterday\" is neither RFC3339 nor unix seconds"),
        "{all}"
    );
    let (code, all) = run(&["--service", "nope", "--release-at", "1700000000"]);
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("no service \"nope\""), "{all}");
}

/// Backtest reads Loki's history through the same source as the daemon:
/// `checkout` logs one line every 15 s until `break_at`, then four; the
/// check counts lines over a minute. The rollback instant is worked out
/// here from the lines written and the cadence, not by the engine.
#[tokio::test]
async fn backtest_replays_loki_history_to_the_rollback_instant() {
    let release = (now_ms() - 180 * MIN) / MIN * MIN;
    let break_at = release + 12 * MIN;
    let loki = Loki::start(None).await;
    let mut t = release - 10 * MIN;
    while t <= release + 60 * MIN {
        let lines = if t >= break_at { 4 } else { 1 };
        for i in 0..lines {
            loki.push(t, &[("app", "checkout")], &format!("GET /cart {i} 500"));
        }
        t += STEP;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        "checks:
  - name: log_lines
    source: loki
    query: 'sum(count_over_time({app=\"{{service}}\"} [1m]))'
    step: 15s
    critical: { above: 8 }
    rollback: { above: 8, for: 5m }
",
    )
    .unwrap();
    let config = dir.path().join("guardian.toml");
    std::fs::write(
        &config,
        format!(
            "[sources.loki]\nurl = \"{}\"\n[store]\npath = \"g.db\"\n\
             [[services]]\nname = \"checkout\"\nrules = [\"rules.yaml\"]\n",
            loki.url
        ),
    )
    .unwrap();

    // At an instant t on the 15 s grid the minute (t - 60 s, t] holds the
    // lines of t - 45, t - 30, t - 15 and t: 3 + 4 = 7 at `break_at`,
    // 2 + 8 = 10 > 8 from `break_at + 15 s`. The first look after that
    // (between the 5-minute tier's ticks the watch looks at its query
    // every 15 s step) sees it critical, ticks and escalates to the step;
    // the breach has held 5 minutes at break_at + 5 m 15 s.
    let breach = break_at + STEP;
    let first_tick_seeing_it = release + (breach - release + STEP - 1) / STEP * STEP;
    let held = breach + 5 * MIN;
    let expected_rollback =
        first_tick_seeing_it + (held - first_tick_seeing_it + STEP - 1) / STEP * STEP;
    assert_eq!(
        expected_rollback,
        release + 17 * MIN + STEP,
        "the arithmetic above"
    );

    // The stand-in serves on this test's runtime: run the binary off it.
    let args = [
        "backtest".to_string(),
        "--config".into(),
        config.display().to_string(),
        "--service".into(),
        "checkout".into(),
        "--release-at".into(),
        rfc3339(release),
        "--until".into(),
        rfc3339(release + 40 * MIN),
        "--format".into(),
        "json".into(),
    ];
    let out = tokio::task::spawn_blocking(move || Command::new(bin()).args(args).output())
        .await
        .unwrap()
        .unwrap();
    let all = stdout_and_stderr(&out);
    assert!(out.status.success(), "{all}");
    let v: Value = serde_json::from_slice(&out.stdout).expect(&all);
    assert_eq!(v["verdict"], "rollback", "{all}");
    assert_eq!(v["rollback_at"], rfc3339(expected_rollback), "{all}");
    let ticks = v["ticks"].as_array().unwrap();
    let first = &ticks[0]["checks"][0];
    assert_eq!(
        (first["name"].as_str(), first["state"].as_str()),
        (Some("log_lines"), Some("ok")),
        "{all}"
    );
    assert_eq!(first["value"].as_f64(), Some(4.0), "{all}");
    assert_eq!(ticks[2]["checks"][0]["state"], "critical", "{all}");
    // Every request was a range query in nanoseconds on the check's step.
    let requests = loki.requests();
    assert!(!requests.is_empty());
    assert!(
        requests.iter().all(|r| r.path.ends_with("/query_range")),
        "{requests:?}"
    );
}
