//! Judgments beyond thresholds end to end, with real parts: Debian's
//! Prometheus scraping the simulated service ([`Target`]), the real daemon
//! binary, its rollback hook.
//!
//! - `compare_rolls_back_a_release_worse_than_before_it`: Mann-Whitney on
//!   the same-length window before the release vs after it.
//! - `a_pre_existing_error_rate_is_not_a_regression`: `worse_by` against
//!   the window before the release keeps a release that changed nothing.
//! - `a_fast_burn_pages_once_both_windows_burn`: multi-window burn rates.
//! - `a_canary_worse_than_stable_rolls_back_and_a_shared_fault_does_not`:
//!   `baseline: { query }`, canary vs stable, two real targets.
//! - `an_offset_baseline_compares_with_the_same_instants_earlier`:
//!   `baseline: { offset }` against Prometheus's own history.
//! - `escalation_acts_between_the_tiers_ticks`: a cadence compressed to
//!   seconds; once a check leaves `ok` the watch ticks at its step.
//! - `the_sentinel_acts_long_before_the_first_tier_tick`: tiers an hour
//!   apart; the looks between ticks find the breach and the watch rolls
//!   back within seconds; a healthy service is looked at and never ticked.
//! - `without_the_sentinel_a_breach_waits_for_the_tier_tick`:
//!   `sentinel_every = "off"` leaves the breach to the hourly tick.

use crate::support::{free_listen, now_ms, script, wait_for, Daemon, Prometheus, Target};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// The simulated service's error ratio over the last 5 s.
const RATIO: &str = r#"sum(rate(http_requests_total{service="{{service}}",code=~"5.."}[5s])) / sum(rate(http_requests_total{service="{{service}}"}[5s]))"#;

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    listen: String,
    hook_log: PathBuf,
}

/// A daemon config for service `checkout` with `rules` and `cadence`, and
/// an automatic rollback hook that logs its runs.
fn setup(prometheus: &str, rules: &str, cadence: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_listen();
    std::fs::write(dir.path().join("rules.yaml"), rules.replace("RATIO", RATIO)).unwrap();
    let hook_log = dir.path().join("hook.log");
    let hook = script(
        dir.path(),
        "rollback.sh",
        "echo \"$RG_REASON\" >> \"$HOOK_LOG\"",
    );
    let config = dir.path().join("guardian.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{listen}\"\nshutdown_grace = \"2s\"\n[store]\npath = \"guardian.db\"\n\
             [cadence]\n{cadence}\n[sources.prometheus]\nurl = \"{prometheus}\"\ntimeout = \"2s\"\n\
             [[services]]\nname = \"checkout\"\nrules = [\"rules.yaml\"]\n\
             [services.rollback]\ncommand = [\"{}\"]\ntimeout = \"10s\"\nmode = \"auto\"\nenv = {{ HOOK_LOG = \"{}\" }}\n",
            hook.display(),
            hook_log.display()
        ),
    )
    .unwrap();
    Setup {
        _dir: dir,
        config,
        listen,
        hook_log,
    }
}

async fn register(d: &Daemon) -> String {
    let (code, body) = d
        .post(
            "/v1/releases",
            json!({"service": "checkout", "version": "v2", "previous_version": "v1"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// Waits until Prometheus holds `secs` seconds of the target's history.
async fn history(prom: &Prometheus, secs: u32) {
    let q = format!(
        "count_over_time(up{{job=\"target\"}}[{}s]) >= {secs}",
        secs + 2
    );
    wait_for_query(prom, "Prometheus to hold the target's history", &q).await;
}

/// Waits (up to 60 s) until the instant query `q` has a result.
async fn wait_for_query(prom: &Prometheus, what: &str, q: &str) {
    let http = reqwest::Client::new();
    wait_for(what, Duration::from_secs(60), || {
        let r = http
            .get(format!("{}/api/v1/query", prom.url))
            .query(&[("query", q)])
            .send();
        async move {
            let v: Value = r.await.ok()?.json().await.ok()?;
            (!v["data"]["result"].as_array()?.is_empty()).then_some(())
        }
    })
    .await;
}

/// The watch is over and so is any rollback it started.
fn ended(r: &Value) -> bool {
    r["status"] != "watching" && r["status"] != "rolling_back"
}

fn decisions(r: &Value) -> &[Value] {
    r["decisions"].as_array().map_or(&[], Vec::as_slice)
}

fn entered<'a>(r: &'a Value, check: &str, level: &str) -> Option<&'a Value> {
    decisions(r)
        .iter()
        .find(|d| d["action"] == "level_changed" && d["check"] == check && d["level"] == level)
}

fn ms(v: &Value) -> i64 {
    release_guardian::model::parse_time(v.as_str().expect("a time")).expect("RFC3339")
}

fn state<'a>(r: &'a Value, name: &str) -> &'a str {
    r["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .and_then(|c| c["state"].as_str())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn compare_rolls_back_a_release_worse_than_before_it() {
    let target = Target::start().await;
    let prom = Prometheus::start(target.addr).await;
    history(&prom, 15).await;
    let rules = "checks:\n  - name: errors_vs_before\n    source: prometheus\n    query: 'RATIO'\n    step: 1s\n    baseline: { before_release: true }\n    compare: { test: mann_whitney, confidence: 0.98, tolerance: 0.5, direction: increase, window: 10s }\n    rollback: {}\n";
    let s = setup(
        &prom.url,
        rules,
        "tiers = [ { until = \"60s\", every = \"2s\" } ]",
    );
    let d = Daemon::start(&s.config, &s.listen).await;
    let id = register(&d).await;
    // The first comparisons (too few samples, then the same service) do
    // not roll back.
    let r = d
        .release_until(&id, "a first comparison", Duration::from_secs(30), |r| {
            state(r, "errors_vs_before") == "ok"
        })
        .await;
    assert_eq!(r["status"], "watching", "{r}");
    target.set_error_ratio(0.2);
    let r = d
        .release_until(
            &id,
            "a rollback on the comparison",
            Duration::from_secs(60),
            ended,
        )
        .await;
    assert_eq!(r["status"], "rolled_back", "{r}");
    let e = &entered(&r, "errors_vs_before", "rollback").expect("a rollback-level decision")
        ["evidence"];
    let c = &e["compare"];
    assert_eq!(c["test"], "mann_whitney");
    assert!(c["p_value"].as_f64().unwrap() < 0.02, "{e}");
    assert!(c["effect"].as_f64().unwrap() > 0.5, "{e}");
    assert!(c["current"]["n"].as_u64().unwrap() >= 5, "{e}");
    // The baseline is the same-length window just before the release.
    let started = ms(&r["started_at"]);
    assert_eq!(ms(&c["baseline"]["to"]), started);
    let len = |w: &Value| ms(&w["to"]) - ms(&w["from"]);
    assert_eq!(len(&c["baseline"]), len(&c["current"]), "{e}");
    assert!(std::fs::read_to_string(&s.hook_log)
        .unwrap()
        .contains("errors_vs_before"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pre_existing_error_rate_is_not_a_regression() {
    let target = Target::start().await;
    // 2 % errors before the release, and the release changes nothing.
    target.set_error_ratio(0.02);
    let prom = Prometheus::start(target.addr).await;
    history(&prom, 12).await;
    let rules = "checks:\n  - name: literal\n    source: prometheus\n    query: 'RATIO'\n    step: 1s\n    critical: { above: 0.01 }\n  - name: regression\n    source: prometheus\n    query: 'RATIO'\n    step: 1s\n    baseline: { before_release: true }\n    rollback: { above: 0.01, worse_by: 0.01, for: 2s }\n";
    let s = setup(
        &prom.url,
        rules,
        "tiers = [ { until = \"12s\", every = \"3s\" } ]",
    );
    let d = Daemon::start(&s.config, &s.listen).await;
    let id = register(&d).await;
    let r = d
        .release_until(&id, "the watch to end", Duration::from_secs(60), ended)
        .await;
    assert_eq!(r["status"], "verified", "{r}");
    // The literal threshold fires on the old error rate...
    let lit = entered(&r, "literal", "critical").expect("the literal rule fires");
    assert!(lit["evidence"]["value"].as_f64().unwrap() > 0.01);
    // ...the regression rule, judged against the window before, does not.
    assert!(entered(&r, "regression", "rollback").is_none(), "{r}");
    assert_eq!(state(&r, "regression"), "ok", "{r}");
    assert!(!s.hook_log.exists(), "a healthy release was rolled back");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fast_burn_pages_once_both_windows_burn() {
    let target = Target::start().await;
    let prom = Prometheus::start(target.addr).await;
    history(&prom, 5).await;
    // A 99 % objective (budget 0.01) with the workbook's 14.4x page pair
    // compressed to 20 s and 5 s.
    let rules = "checks:\n  - name: slo\n    source: prometheus\n    step: 1s\n    burn_rate:\n      objective: 0.99\n      errors: 'RATIO'\n      windows: [ { long: 20s, short: 5s, factor: 14.4, level: rollback } ]\n";
    let s = setup(
        &prom.url,
        rules,
        "tiers = [ { until = \"90s\", every = \"2s\" } ]",
    );
    let d = Daemon::start(&s.config, &s.listen).await;
    let id = register(&d).await;
    d.release_until(&id, "a first healthy burn", Duration::from_secs(30), |r| {
        state(r, "slo") == "ok"
    })
    .await;
    // 30 % errors: a 30x burn.
    let fault = now_ms();
    target.set_error_ratio(0.3);
    let r = d
        .release_until(
            &id,
            "a rollback on the burn rate",
            Duration::from_secs(60),
            ended,
        )
        .await;
    assert_eq!(r["status"], "rolled_back", "{r}");
    let up = entered(&r, "slo", "rollback").expect("a rollback-level decision");
    let w = &up["evidence"]["burn_rate"]["windows"][0];
    assert_eq!(w["factor"], 14.4);
    assert!(w["long_burn"].as_f64().unwrap() > 14.4, "{up}");
    assert!(w["short_burn"].as_f64().unwrap() > 14.4, "{up}");
    // The short window alone burns within a few seconds; the page waits
    // until the 20 s window burns too.
    let observed = ms(&up["observed_at"]);
    assert!(
        observed > fault + 5_000,
        "paged {} ms after the fault",
        observed - fault
    );
    let rollbacks = decisions(&r)
        .iter()
        .filter(|d| d["action"] == "level_changed" && d["level"] == "rollback")
        .count();
    assert_eq!(rollbacks, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn escalation_acts_between_the_tiers_ticks() {
    let target = Target::start().await;
    let prom = Prometheus::start(target.addr).await;
    let rules = "checks:\n  - name: error_rate\n    source: prometheus\n    query: 'RATIO'\n    step: 1s\n    warning: { above: 0.005 }\n    rollback: { above: 0.05, for: 3s }\n";
    // Ticks every 20 s on the tiers.
    let s = setup(
        &prom.url,
        rules,
        "tiers = [ { until = \"120s\", every = \"20s\" } ]",
    );
    let d = Daemon::start(&s.config, &s.listen).await;
    let id = register(&d).await;
    // A first symptom: warning, found at the first tier tick.
    target.set_error_ratio(0.01);
    let r = d
        .release_until(&id, "the warning", Duration::from_secs(40), |r| {
            state(r, "error_rate") == "warning"
        })
        .await;
    // Out of ok: the next tick is one step away, not the tier's 20 s.
    let next = ms(&r["next_check_at"]);
    assert!(
        next - now_ms() <= 2_000,
        "next tick {} ms away",
        next - now_ms()
    );
    // Decided about a step after the data showed it, and long before the
    // tier's next tick would have come (20 s after the warning's tick).
    fail_and_expect_a_prompt_rollback(&d, &target, &id, 15_000).await;
}

/// Injects 30 % errors and waits for the rollback; asserts it was decided
/// at most 3 s after the data showed the breach (`observed_at`) and within
/// `within_ms` of the fault. Returns the release.
async fn fail_and_expect_a_prompt_rollback(
    d: &Daemon,
    target: &Target,
    id: &str,
    within_ms: i64,
) -> Value {
    let fault = now_ms();
    target.set_error_ratio(0.3);
    let r = d
        .release_until(id, "the rollback", Duration::from_secs(40), ended)
        .await;
    assert_eq!(r["status"], "rolled_back", "{r}");
    let up = entered(&r, "error_rate", "rollback").expect("a rollback-level decision");
    let (decided, observed) = (ms(&up["at"]), ms(&up["observed_at"]));
    assert!(
        decided - observed <= 3_000,
        "decided {} ms after the breach",
        decided - observed
    );
    assert!(
        decided - fault < within_ms,
        "acted {} ms after the fault",
        decided - fault
    );
    r
}

/// `RATIO` of one target (its `instance` label).
fn ratio_of(addr: std::net::SocketAddr) -> String {
    RATIO.replace(
        r#"service="{{service}}""#,
        &format!(r#"service="{{{{service}}}}",instance="{addr}""#),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_worse_than_stable_rolls_back_and_a_shared_fault_does_not() {
    let (stable, canary) = (Target::start().await, Target::start().await);
    // A shared dependency fails: both tracks at 3 % errors.
    stable.set_error_ratio(0.03);
    canary.set_error_ratio(0.03);
    let prom = Prometheus::start_targets(&[stable.addr, canary.addr]).await;
    history(&prom, 6).await;
    let rules = format!(
        "checks:\n  - name: canary_vs_stable\n    source: prometheus\n    query: '{}'\n    step: 1s\n    baseline: {{ query: '{}' }}\n    rollback: {{ above: 0.01, worse_by: 0.02, for: 2s }}\n",
        ratio_of(canary.addr),
        ratio_of(stable.addr)
    );
    let s = setup(
        &prom.url,
        &rules,
        "tiers = [ { until = \"90s\", every = \"2s\" } ]",
    );
    let d = Daemon::start(&s.config, &s.listen).await;
    let id = register(&d).await;
    // Above the line, but no worse than stable: ok, tick after tick.
    let first = now_ms();
    let r = d
        .release_until(&id, "ten seconds judged ok", Duration::from_secs(40), |r| {
            state(r, "canary_vs_stable") == "ok"
                && r["checks"][0]["evaluated_until"]
                    .as_str()
                    .is_some_and(|t| ms(&json!(t)) >= first + 10_000)
        })
        .await;
    assert_eq!(r["status"], "watching", "{r}");
    assert!(entered(&r, "canary_vs_stable", "rollback").is_none(), "{r}");
    // The canary alone gets worse.
    canary.set_error_ratio(0.2);
    let r = d
        .release_until(&id, "the rollback", Duration::from_secs(60), ended)
        .await;
    assert_eq!(r["status"], "rolled_back", "{r}");
    let e = &entered(&r, "canary_vs_stable", "rollback").expect("a rollback-level decision")
        ["evidence"];
    assert_eq!(
        e["baseline"]["query"].as_str().unwrap(),
        ratio_of(stable.addr).replace("{{service}}", "checkout"),
        "{e}"
    );
    let at = e["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["value"] == e["value"])
        .expect("the transition's point");
    let (v, b) = (
        at["value"].as_f64().unwrap(),
        at["baseline"].as_f64().unwrap(),
    );
    assert!(v - b > 0.02, "{e}");
    assert!(
        (b - 0.03).abs() < 0.005,
        "stable's ratio as the baseline: {e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_offset_baseline_compares_with_the_same_instants_earlier() {
    let target = Target::start().await;
    let prom = Prometheus::start(target.addr).await;
    // 20 s of history at 0.1 % errors, then 4 % errors (the daily peak,
    // say) before and after the release.
    history(&prom, 20).await;
    let peak = now_ms();
    target.set_error_ratio(0.04);
    let rules = "checks:\n  - name: errors_vs_earlier\n    source: prometheus\n    query: 'RATIO'\n    step: 1s\n    baseline: { offset: 20s }\n    rollback: { above: 0.01, worse_by: 0.1, for: 2s }\n";
    let s = setup(
        &prom.url,
        rules,
        "tiers = [ { until = \"90s\", every = \"2s\" } ]",
    );
    let d = Daemon::start(&s.config, &s.listen).await;
    let id = register(&d).await;
    d.release_until(&id, "a first judgment", Duration::from_secs(30), |r| {
        state(r, "errors_vs_earlier") == "ok"
    })
    .await;
    // 30 % errors: worse by far than 20 s earlier.
    target.set_error_ratio(0.3);
    let r = d
        .release_until(&id, "the rollback", Duration::from_secs(60), ended)
        .await;
    assert_eq!(r["status"], "rolled_back", "{r}");
    let up = entered(&r, "errors_vs_earlier", "rollback").expect("a rollback-level decision");
    let e = &up["evidence"];
    assert_eq!(e["baseline"]["offset"], "20s", "{e}");
    // Each point's baseline is the ratio 20 s before it: before the fault
    // (0.1 % before `peak`, 4 % after), never the fault's own 30 %.
    for v in e["values"].as_array().unwrap() {
        let b = v["baseline"].as_f64().expect("a baseline value");
        let earlier = ms(&v["at"]) - 20_000;
        assert!(b < 0.05, "{v}");
        if earlier > peak + 6_000 {
            assert!((b - 0.04).abs() < 0.005, "{v}");
        }
    }
    assert!(e["value"].as_f64().unwrap() > 0.11, "{e}");
    assert!(std::fs::read_to_string(&s.hook_log)
        .unwrap()
        .contains("errors_vs_earlier"));
}

/// A rule rolling back above 5 % errors held 3 s, on tiers an hour apart.
const HOURLY: &str = "tiers = [ { until = \"3h\", every = \"1h\" } ]";
const FIVE_PERCENT: &str = "checks:\n  - name: error_rate\n    source: prometheus\n    query: 'RATIO'\n    step: 1s\n    rollback: { above: 0.05, for: 3s }\n";

#[tokio::test(flavor = "multi_thread")]
async fn the_sentinel_acts_long_before_the_first_tier_tick() {
    let target = Target::start().await;
    let prom = Prometheus::start(target.addr).await;
    let s = setup(&prom.url, FIVE_PERCENT, HOURLY);
    let d = Daemon::start(&s.config, &s.listen).await;
    let id = register(&d).await;
    // Healthy: looked at every step, never ticked.
    wait_for("three looks", Duration::from_secs(30), || async {
        (d.metric("rg_sentinel_looks_total").await? >= 3.0).then_some(())
    })
    .await;
    assert_eq!(d.metric("rg_sentinel_ticks_total").await, Some(0.0));
    let r = d.get(&format!("/v1/releases/{id}")).await;
    assert_eq!(r["status"], "watching", "{r}");
    assert!(decisions(&r).is_empty(), "a look recorded something: {r}");

    // Acted a look after the data showed it, not at the hourly tick.
    fail_and_expect_a_prompt_rollback(&d, &target, &id, 20_000).await;
    assert!(d.metric("rg_sentinel_ticks_total").await.unwrap() >= 1.0);
    let hooks = std::fs::read_to_string(&s.hook_log).unwrap();
    assert_eq!(hooks.lines().count(), 1, "{hooks}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_sentinel_a_breach_waits_for_the_tier_tick() {
    let target = Target::start().await;
    let prom = Prometheus::start(target.addr).await;
    let s = setup(
        &prom.url,
        FIVE_PERCENT,
        &format!("{HOURLY}\nsentinel_every = \"off\""),
    );
    let d = Daemon::start(&s.config, &s.listen).await;
    let id = register(&d).await;
    target.set_error_ratio(0.3);
    // Wait until Prometheus itself has seen the breach hold 5 s (longer
    // than the rule's `for`): a look would have acted by now.
    let q = format!("min_over_time(({RATIO})[5s:1s]) > 0.05").replace("{{service}}", "checkout");
    wait_for_query(&prom, "Prometheus to hold 5 s of breach", &q).await;
    let r = d.get(&format!("/v1/releases/{id}")).await;
    assert_eq!(r["status"], "watching", "{r}");
    assert!(decisions(&r).is_empty(), "{r}");
    assert_eq!(d.metric("rg_sentinel_looks_total").await, Some(0.0));
    assert!(!s.hook_log.exists());
}
