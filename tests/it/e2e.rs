//! End to end, with real parts: a real Prometheus (Debian package) scraping
//! a real HTTP target, the real daemon binary with a SQLite store, a
//! Slack-shaped receiver and a real rollback hook script.
//!
//! - `a_regression_is_paged_and_rolled_back_once`: the issue's end-to-end test.
//! - `kill_9_resumes_evaluates_the_gap_and_never_repeats`: the crash test.
//! - `prometheus_down_is_inconclusive_not_a_rollback`.

use crate::support::{
    free_listen, now_ms, script, wait_for, Daemon, Prometheus, Receiver, Reply, Target,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const RULES: &str = r#"checks:
  - name: error_rate
    source: prometheus
    query: |
      sum(rate(http_requests_total{service="{{service}}",code=~"5.."}[5s]))
        / sum(rate(http_requests_total{service="{{service}}"}[5s]))
    step: 1s
    warning:  { above: 0.005 }
    critical: { above: 0.02 }
    rollback: { above: 0.05, for: 3s }
  - name: live
    source: probe
    probe: live
    critical: { failures: 2 }
    rollback: { failures: 3 }
"#;

const HOOK: &str = "\
echo \"$RG_RELEASE_ID $RG_SERVICE $RG_ENVIRONMENT $RG_VERSION $RG_PREVIOUS_VERSION\" >> \"$HOOK_LOG\"\n\
echo \"rolled back $RG_SERVICE to $RG_PREVIOUS_VERSION\"";

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    listen: String,
    hook_log: PathBuf,
}

fn setup(prometheus: &str, target: std::net::SocketAddr, slack: &str, tiers: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_listen();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/checkout.yaml"), RULES).unwrap();
    let hook = script(dir.path(), "rollback.sh", HOOK);
    let hook_log = dir.path().join("hook.log");
    let config = dir.path().join("guardian.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "{listen}"
shutdown_grace = "2s"

[store]
path = "guardian.db"

[cadence]
tiers = {tiers}

[sources.prometheus]
url = "{prometheus}"
timeout = "2s"

[[services]]
name = "checkout"
rules = ["rules/checkout.yaml"]
notify = ["oncall-slack"]
  [[services.probes]]
  name = "live"
  url = "http://{target}/health/live"
  timeout = "1s"
  [services.rollback]
  command = ["{hook}"]
  timeout = "10s"
  mode = "auto"
  env = {{ HOOK_LOG = "{hook_log}" }}

[notifiers.oncall-slack]
kind = "slack"
webhook_url = "{slack}"
min_severity = "warning"
"#,
            hook = hook.display(),
            hook_log = hook_log.display(),
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

fn hook_runs(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(String::from).collect())
        .unwrap_or_default()
}

fn check_state<'a>(r: &'a Value, name: &str) -> &'a str {
    r["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .and_then(|c| c["state"].as_str())
        .unwrap_or("")
}

fn no_pending(r: &Value) -> bool {
    r["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|n| n["status"] != "pending")
}

async fn register(d: &Daemon) -> String {
    let (code, body) = d
        .post(
            "/v1/releases",
            json!({"service": "checkout", "version": "v2", "previous_version": "v1"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    // Before the first tick every configured check is visible as pending.
    let states: Vec<(&str, &str)> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("error_rate", "pending"), ("live", "pending")],
        "{body}"
    );
    body["id"].as_str().unwrap().to_string()
}

/// Everything a test needs: a target, Prometheus scraping it, a Slack
/// receiver, the daemon, and a registered release with a first healthy tick.
struct Scenario {
    target: Target,
    prom: Prometheus,
    slack: Receiver,
    s: Setup,
    d: Daemon,
    id: String,
}

impl Scenario {
    async fn start(tiers: &str) -> Self {
        let target = Target::start().await;
        let prom = Prometheus::start(target.addr).await;
        let slack = Receiver::start(Reply::Ok).await;
        let s = setup(&prom.url, target.addr, &slack.slack_url(), tiers);
        let d = Daemon::start(&s.config, &s.listen).await;
        let id = register(&d).await;
        d.release_until(
            &id,
            "a first healthy tick on real data",
            Duration::from_secs(30),
            |r| check_state(r, "error_rate") == "ok",
        )
        .await;
        Self {
            target,
            prom,
            slack,
            s,
            d,
            id,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_regression_is_paged_and_rolled_back_once() {
    let Scenario {
        target,
        prom: _prom,
        slack,
        s,
        d,
        id,
    } = Scenario::start(r#"[ { until = "90s", every = "2s" } ]"#).await;
    target.set_error_ratio(0.3);
    let r = d
        .release_until(&id, "status rolled_back", Duration::from_secs(60), |r| {
            r["status"] == "rolled_back"
        })
        .await;

    let runs = hook_runs(&s.hook_log);
    assert_eq!(
        runs,
        vec![format!("{id} checkout production v2 v1")],
        "the hook runs exactly once, with the RG_* variables"
    );
    assert_eq!(r["rollback"]["state"], "succeeded");
    assert_eq!(r["rollback"]["exit_code"], 0);
    assert!(r["rollback"]["output"]
        .as_str()
        .unwrap()
        .contains("rolled back checkout to v1"));
    let actions: Vec<&str> = r["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["action"].as_str())
        .collect();
    for a in ["rollback_requested", "rollback_started", "rolled_back"] {
        assert!(
            actions.contains(&a),
            "decision {a} missing from {actions:?}"
        );
    }
    let r = d
        .release_until(&id, "outbox drained", Duration::from_secs(20), no_pending)
        .await;
    assert!(
        r["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["status"] == "sent"),
        "{r}"
    );
    let texts = slack.texts();
    assert!(
        slack.problems().is_empty(),
        "shape violations: {:?}",
        slack.problems()
    );
    let page = texts
        .iter()
        .find(|t| t.contains("error_rate") && (t.contains("critical") || t.contains("rollback")))
        .unwrap_or_else(|| panic!("no page for error_rate among {texts:?}"));
    for word in ["checkout", "production", "v2"] {
        assert!(page.contains(word), "page {page:?} does not name {word}");
    }
    assert!(
        texts
            .iter()
            .any(|t| t.contains("rolled_back") || t.contains("rolled back")),
        "{texts:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_resumes_evaluates_the_gap_and_never_repeats() {
    let Scenario {
        target,
        prom,
        slack,
        s,
        mut d,
        id,
    } = Scenario::start(r#"[ { until = "120s", every = "3s" } ]"#).await;
    // Crash. While the daemon is down, a breach starts and ends.
    d.kill9();
    let down_at = now_ms();
    target.set_error_ratio(0.3);
    let http = reqwest::Client::new();
    let ratio =
        r#"sum(rate(http_requests_total{code=~"5.."}[5s])) / sum(rate(http_requests_total[5s]))"#;
    let held = format!("min_over_time(({ratio})[5s:1s]) > 0.05");
    prom_until(
        &http,
        &prom.url,
        &held,
        "Prometheus to see the breach hold 5s",
    )
    .await;
    target.set_error_ratio(0.0);
    // Ended for good: low over the last 5 s, so whatever the restarted
    // daemon reads last is below the rollback level.
    prom_until(
        &http,
        &prom.url,
        &format!("max_over_time(({ratio})[5s:1s]) < 0.005"),
        "Prometheus to see the breach end",
    )
    .await;
    let up_at = now_ms();

    // Restart on the same store: the watch resumes and reads the gap. Slack
    // is down for now, so the pages it decides stay in the outbox. The
    // breach found in the gap has ended by the latest sample: old news is
    // paged, with both instants, but not acted on.
    slack.set_reply(Reply::Unavailable);
    let mut d = Daemon::start(&s.config, &s.listen).await;
    let recovered = |r: &Value| {
        r["decisions"].as_array().is_some_and(|ds| {
            ds.iter().any(|d| {
                d["action"] == "rollback_recommended"
                    && d["reason"]
                        .as_str()
                        .is_some_and(|t| t.contains("recovered at"))
            })
        })
    };
    let r = d
        .release_until(
            &id,
            "the recovered breach found in the gap to be reported",
            Duration::from_secs(60),
            |r| recovered(r) || r["status"] != "watching",
        )
        .await;
    assert!(recovered(&r), "{r}");
    let decisions = r["decisions"].as_array().unwrap();
    assert!(
        decisions.iter().any(|d| d["action"] == "resumed"),
        "no `resumed` decision: {decisions:?}"
    );
    let entered = decisions
        .iter()
        .find(|d| d["action"] == "level_changed" && d["level"] == "rollback")
        .unwrap_or_else(|| panic!("no rollback-level transition: {decisions:?}"));
    let at = release_guardian::model::parse_time(entered["observed_at"].as_str().unwrap()).unwrap();
    assert!(
        at > down_at && at < up_at,
        "the breach was found inside the gap ({down_at} < {at} < {up_at})"
    );
    assert_eq!(r["status"], "watching", "{r}");
    assert!(r["rollback"].is_null(), "{r}");
    assert!(hook_runs(&s.hook_log).is_empty(), "rolled back on old news");
    assert!(
        !no_pending(&r),
        "pages should be waiting while Slack is down: {r}"
    );
    assert!(slack.texts().is_empty(), "{:?}", slack.texts());

    // Crash again with pages still in the outbox, and bring Slack back.
    d.kill9();
    slack.set_reply(Reply::Ok);
    let d = Daemon::start(&s.config, &s.listen).await;
    d.release_until(
        &id,
        "outbox drained after restart",
        Duration::from_secs(30),
        no_pending,
    )
    .await;
    assert!(hook_runs(&s.hook_log).is_empty());
    let pages_before = slack.texts();
    for expected in ["error_rate level rollback", "would have rolled back at"] {
        assert!(
            pages_before.iter().any(|t| t.contains(expected)),
            "the page {expected:?} was lost across the crash: {pages_before:?}"
        );
    }
    let mut unique = pages_before.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        pages_before.len(),
        "a page was sent twice: {pages_before:?}"
    );
    assert!(slack.problems().is_empty(), "{:?}", slack.problems());

    // The choice is people's: a manual rollback still goes through, once.
    let (code, body) = d
        .post(&format!("/v1/releases/{id}/rollback"), json!({}))
        .await;
    assert_eq!(code, 202, "{body}");
    d.release_until(&id, "rolled back by hand", Duration::from_secs(30), |r| {
        r["status"] == "rolled_back"
    })
    .await;
    assert_eq!(hook_runs(&s.hook_log).len(), 1);
    drop(d);
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_down_is_inconclusive_not_a_rollback() {
    let Scenario {
        target,
        mut prom,
        slack: _slack,
        s,
        d,
        id,
    } = Scenario::start(r#"[ { until = "20s", every = "2s" } ]"#).await;
    prom.stop();
    target.set_error_ratio(0.5);
    let r = d
        .release_until(
            &id,
            "error_rate inconclusive",
            Duration::from_secs(30),
            |r| check_state(r, "error_rate") == "inconclusive",
        )
        .await;
    assert_eq!(r["status"], "watching");
    let r = d
        .release_until(&id, "the watch to end", Duration::from_secs(40), |r| {
            r["status"] != "watching"
        })
        .await;
    assert_eq!(r["status"], "verified", "{r}");
    assert!(r["rollback"].is_null());
    assert!(hook_runs(&s.hook_log).is_empty());
    assert_eq!(check_state(&r, "error_rate"), "inconclusive");
    let reasons: Vec<&str> = r["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == "inconclusive")
        .filter_map(|d| d["reason"].as_str())
        .collect();
    assert!(
        reasons.iter().any(|x| x.contains("prometheus")),
        "{reasons:?}"
    );
    // The end of the watch says what could not be judged, and retried first.
    let said =
        |action: &str, words: &str| {
            r["decisions"].as_array().unwrap().iter().any(|d| {
                d["action"] == action && d["reason"].as_str().unwrap_or("").contains(words)
            })
        };
    assert!(
        said(
            "window_ended",
            "error_rate could not be read to its end; retrying"
        ),
        "{r}"
    );
    assert!(
        said("verified", "but error_rate could not be judged"),
        "{r}"
    );
}

async fn prom_until(http: &reqwest::Client, url: &str, query: &str, what: &str) {
    wait_for(what, Duration::from_secs(60), || async move {
        let v: Value = http
            .get(format!("{url}/api/v1/query"))
            .query(&[("query", query)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (!v["data"]["result"].as_array()?.is_empty()).then_some(())
    })
    .await;
}
