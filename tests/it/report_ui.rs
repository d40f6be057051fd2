//! What people look at, with real parts: a real Prometheus scraping a real
//! target, the real daemon with `[auth]`, a Slack-shaped receiver, a real
//! rollback hook — and Debian's `chromium` loading the status page and the
//! report as a person would.
//!
//! Screenshots, the report (HTML, Markdown, PDF) are kept under
//! `target/test-artifacts/report_ui/` (the test prints the path).

use crate::support::{
    artifacts, bin, free_listen, script, wait_for, Browser, Daemon, Prometheus, Receiver, Reply,
    Target,
};
use serde_json::{json, Value};
use std::time::Duration;

const READ_TOKEN: &str = "reader-0123456789abcdef";
const WRITE_TOKEN: &str = "writer-0123456789abcdef";

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

fn config(dir: &std::path::Path, listen: &str, prom: &str, target: &str, slack: &str) -> String {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/checkout.yaml"), RULES).unwrap();
    let hook = script(
        dir,
        "rollback.sh",
        "echo \"rolled back $RG_SERVICE to $RG_PREVIOUS_VERSION\"",
    );
    format!(
        r#"[server]
listen = "{listen}"
shutdown_grace = "2s"
[auth]
tokens = [ {{ token = "{READ_TOKEN}", scopes = ["read"] }}, {{ token = "{WRITE_TOKEN}", scopes = ["read", "write"] }} ]
[store]
path = "guardian.db"
[cadence]
tiers = [ {{ until = "30s", every = "2s" }}, {{ until = "120s", every = "3s" }} ]
[sources.prometheus]
url = "{prom}"
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
[notifiers.oncall-slack]
kind = "slack"
webhook_url = "{slack}"
"#,
        hook = hook.display()
    )
}

fn state_in_dom<'a>(dom: &'a str, check: &str) -> Option<&'a str> {
    let at = dom.find(&format!("data-check=\"{check}\" data-state=\""))?;
    let rest = &dom[at + format!("data-check=\"{check}\" data-state=\"").len()..];
    rest.split('"').next()
}

async fn get(http: &reqwest::Client, url: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_and_the_report_as_a_person_sees_them() {
    let browser = Browser::new();
    let target = Target::start().await;
    let prom = Prometheus::start(target.addr).await;
    let slack = Receiver::start(Reply::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let listen = free_listen();
    let cfg = dir.path().join("guardian.toml");
    std::fs::write(
        &cfg,
        config(
            dir.path(),
            &listen,
            &prom.url,
            &target.addr.to_string(),
            &slack.slack_url(),
        ),
    )
    .unwrap();
    let d = Daemon::start(&cfg, &listen).await;
    let http = reqwest::Client::new();
    let api = d.api.clone();

    let created: Value = http
        .post(format!("{api}/v1/releases"))
        .bearer_auth(WRITE_TOKEN)
        .json(&json!({"service": "checkout", "version": "v2", "previous_version": "v1",
                      "annotations": {"deployed_by": "alice", "commit": "abc1234", "ticket": "OPS-7"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().expect("an id").to_string();
    let report_json = format!("{api}/v1/releases/{id}/report?format=json");

    // A first healthy tick with charted values.
    wait_for(
        "a healthy tick with values",
        Duration::from_secs(40),
        || async {
            let r: Value = get(&http, &report_json, Some(READ_TOKEN))
                .await
                .json()
                .await
                .ok()?;
            let c = &r["checks"][0];
            (c["state"] == "ok" && c["points"].as_array()?.len() >= 2).then_some(())
        },
    )
    .await;

    // The page needs the token: without it, 401; a wrong `?token=` is 401
    // and never echoed.
    let r = get(&http, &format!("{api}/ui"), None).await;
    assert_eq!(r.status(), 401);
    let r = get(&http, &format!("{api}/ui?token=not-a-token-xyz"), None).await;
    assert_eq!(r.status(), 401);
    assert!(!r.text().await.unwrap().contains("not-a-token-xyz"));

    // In the browser: `?token=` once, then the session cookie.
    let out = artifacts("report_ui");
    println!("screenshots and PDF in {}", out.display());
    let dom = browser
        .dom(&format!("{api}/ui?token={READ_TOKEN}&refresh=2"))
        .await;
    assert!(dom.contains("checkout"), "{dom}");
    assert!(dom.contains("v2"), "{dom}");
    assert!(!dom.contains(READ_TOKEN), "the token is never shown");
    assert_eq!(state_in_dom(&dom, "error_rate"), Some("ok"), "{dom}");
    assert_eq!(state_in_dom(&dom, "live"), Some("ok"), "{dom}");
    assert!(
        dom.contains("<svg") && dom.contains("class=\"threshold\""),
        "{dom}"
    );
    assert!(dom.contains(&format!("/v1/releases/{id}/report?format=html")));
    browser
        .screenshot(&format!("{api}/ui"), &out.join("status-healthy.png"))
        .await;

    // The fault: the page, reloaded, shows the rollback.
    target.set_error_ratio(0.3);
    let dom = wait_for(
        "the page shows the rollback",
        Duration::from_secs(90),
        || async {
            let dom = browser.dom(&format!("{api}/ui")).await;
            (state_in_dom(&dom, "error_rate") == Some("rollback")
                && dom.contains("data-status=\"rolled_back\""))
            .then_some(dom)
        },
    )
    .await;
    assert!(
        dom.contains("class=\"mark\""),
        "decisions are marked: {dom}"
    );
    browser
        .screenshot(&format!("{api}/ui"), &out.join("status-rolled-back.png"))
        .await;

    // The report, JSON.
    let r: Value = get(&http, &report_json, Some(READ_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["report_version"], 1);
    assert_eq!(r["release"]["status"], "rolled_back");
    assert_eq!(r["release"]["previous_version"], "v1");
    assert_eq!(r["release"]["deployed_by"]["deployed_by"], "alice");
    assert_eq!(r["release"]["deployed_by"]["commit"], "abc1234");
    let errors = &r["checks"][0];
    assert_eq!(errors["name"], "error_rate");
    assert!(
        errors["query"]
            .as_str()
            .unwrap()
            .contains("service=\"checkout\""),
        "{errors}"
    );
    assert_eq!(errors["thresholds"][2]["level"], "rollback");
    assert_eq!(errors["thresholds"][2]["above"], 0.05);
    assert_eq!(errors["worst_level"], "rollback");
    let max = errors["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["value"].as_f64())
        .fold(0.0, f64::max);
    assert!(max > 0.05, "the breach is in the charted values: {max}");
    assert!(r["checks"][1]["probe"]
        .as_str()
        .unwrap()
        .starts_with("live (http://"));
    assert_eq!(r["rollback"]["state"], "succeeded");
    assert_eq!(r["rollback"]["exit_code"], 0);
    assert!(r["rollback"]["command"][0]
        .as_str()
        .unwrap()
        .ends_with("rollback.sh"));
    assert!(r["rollback"]["duration_ms"].as_i64().unwrap() >= 0);
    assert!(r["rollback"]["output_excerpt"]
        .as_str()
        .unwrap()
        .contains("rolled back checkout to v1"));
    assert!(!r["notifications"].as_array().unwrap().is_empty());
    let item = |name: &str| {
        r["checklist"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["item"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no checklist item {name}: {r}"))
    };
    assert_eq!(item("No rollback criterion was met")["outcome"], "failed");
    assert_eq!(item("The rollback completed")["outcome"], "passed");
    assert_eq!(item("Error rate within SLO")["outcome"], "failed");
    assert_eq!(
        item("No new errors in application logs")["outcome"],
        "not_verified"
    );
    assert!(r["sign_off"]["signed_by"].is_null());

    // Markdown and HTML, with their content types; bad format 400; unknown id 404.
    let md = get(
        &http,
        &format!("{api}/v1/releases/{id}/report?format=md"),
        Some(READ_TOKEN),
    )
    .await;
    assert_eq!(md.headers()["content-type"], "text/markdown; charset=utf-8");
    let md = md.text().await.unwrap();
    std::fs::write(out.join("report.md"), &md).unwrap();
    assert!(
        md.contains("# Post-release report: checkout v2 (production)"),
        "{md}"
    );
    assert!(
        md.contains("- [ ] **No rollback criterion was met**"),
        "{md}"
    );
    assert!(md.contains("- [x] **The rollback completed**"), "{md}");
    assert!(md.contains("Signed off by: ____"), "{md}");
    let html = get(
        &http,
        &format!("{api}/v1/releases/{id}/report?format=html"),
        Some(READ_TOKEN),
    )
    .await;
    assert_eq!(html.headers()["content-type"], "text/html; charset=utf-8");
    let html = html.text().await.unwrap();
    std::fs::write(out.join("report.html"), &html).unwrap();
    assert!(html.contains("<svg") && html.contains("@media print"));
    assert!(!html.contains("<script") && !html.contains(" src=") && !html.contains("<link"));
    let bad = get(
        &http,
        &format!("{api}/v1/releases/{id}/report?format=pdf"),
        Some(READ_TOKEN),
    )
    .await;
    assert_eq!(bad.status(), 400);
    assert!(bad.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("pdf"));
    let missing = get(
        &http,
        &format!("{api}/v1/releases/nope/report?format=md"),
        Some(READ_TOKEN),
    )
    .await;
    assert_eq!(missing.status(), 404);
    assert_eq!(get(&http, &report_json, None).await.status(), 401);

    // The report in the browser (the session cookie reads it), and as PDF.
    let dom = browser
        .dom(&format!("{api}/v1/releases/{id}/report?format=html"))
        .await;
    assert!(
        dom.contains("Post-deployment checklist") && dom.contains("<svg"),
        "{dom}"
    );
    browser
        .screenshot(
            &format!("{api}/v1/releases/{id}/report?format=html"),
            &out.join("report.png"),
        )
        .await;
    browser
        .pdf(
            &format!("{api}/v1/releases/{id}/report?format=html"),
            &out.join("report.pdf"),
        )
        .await;

    // The command line: `report` and `status ID` (plain: not a terminal).
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(bin())
            .args(args)
            .env("RG_TOKEN", READ_TOKEN)
            .env_remove("NO_COLOR")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let text = cli(&["report", &id, "--format", "md", "--url", &api]);
    assert!(text.contains("## Decision timeline"), "{text}");
    let text = cli(&["status", &id, "--url", &api]);
    assert!(
        text.contains("error_rate") && text.contains("rollback"),
        "{text}"
    );
    assert!(
        text.chars().any(|c| ('▁'..='█').contains(&c)),
        "a sparkline: {text}"
    );
    assert!(
        !text.contains('\x1b'),
        "no colours when not a terminal: {text:?}"
    );
    let text = cli(&["status", "--url", &api]);
    assert!(text.contains("error_rate:rollback"), "{text}");

    // `status --watch` redraws in place, on its timer.
    use tokio::io::AsyncReadExt;
    let mut child = tokio::process::Command::new(bin())
        .args(["status", "--watch", "--every", "200ms", "--url", &api])
        .env("RG_TOKEN", READ_TOKEN)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while seen.matches("\x1b[H\x1b[2J").count() < 2 {
            let mut buf = [0u8; 4096];
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(n > 0, "status --watch ended: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no second frame: {seen:?}"));
    assert!(seen.contains("checkout"), "{seen}");
    child.kill().await.unwrap();
}
