//! `release-guardian demo`: the whole pipeline on one machine, no setup, in
//! well under a minute. A simulated `checkout` service runs v1; v2 is
//! deployed and registered through the real API; the daemon (real config
//! loader, real SQLite store in a temp dir, compressed cadence) probes it and
//! scrapes its `/metrics` itself for the error rate (`source: scrape`, no
//! Prometheus needed); a regression is
//! injected; the checks turn, a page reaches a local Slack stand-in, the
//! rollback hook restores v1, and the final status is printed.

mod receiver;
mod service;

use crate::app::Daemon;
use service::SimulatedService;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The demo gives up (and fails) after this long.
const DEADLINE: Duration = Duration::from_secs(80);

/// Entry point of `release-guardian demo`.
pub fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "error");
    }
    crate::telemetry::init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Narrator {
    start: Instant,
}

impl Narrator {
    fn say(&self, what: impl AsRef<str>) {
        println!(
            "[{:>5.1}s] {}",
            self.start.elapsed().as_secs_f64(),
            what.as_ref()
        );
    }

    /// Prints every page the Slack stand-in has received since last time.
    fn drain(&self, pages: &mut mpsc::UnboundedReceiver<String>) {
        while let Ok(text) = pages.try_recv() {
            self.say(format!("SLACK <- {text}"));
        }
    }
}

/// The release object, as `GET /v1/releases/{id}` answers it.
async fn fetch(http: &reqwest::Client, api: &str, id: &str) -> anyhow::Result<serde_json::Value> {
    Ok(http
        .get(format!("{api}/v1/releases/{id}"))
        .send()
        .await?
        .json()
        .await?)
}

async fn run() -> anyhow::Result<()> {
    use anyhow::Context as _;
    let n = Narrator {
        start: Instant::now(),
    };
    let cancel = CancellationToken::new();
    println!("release-guardian demo: a release goes bad, gets paged and rolled back.\n");

    // 1. The simulated service, running v1, with traffic.
    let svc = SimulatedService::new("v1");
    svc.spawn_traffic(cancel.clone());
    let svc_addr = serve(svc.router(), &cancel).await?;
    n.say(format!("simulated service `checkout` v1 on http://{svc_addr} (/health/live, /health/ready, /metrics)"));

    // 2. A local stand-in for Slack.
    let (tx, mut pages) = mpsc::unbounded_channel();
    let slack_addr = serve(receiver::router(tx), &cancel).await?;
    n.say(format!(
        "Slack stand-in (incoming-webhook shape) on http://{slack_addr}"
    ));

    // 3. The daemon, configured from a real guardian.toml + rule pack.
    let dir = tempfile::tempdir().context("temp dir")?;
    let config = write_config(dir.path(), svc_addr, slack_addr)?;
    let settings =
        crate::config::load(&config).map_err(|e| anyhow::anyhow!("demo config invalid:\n{e}"))?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let daemon = Daemon::start(settings, Some(listener)).await?;
    let api = format!("http://{}", daemon.addr);
    n.say(format!(
        "release-guardian on {api}, store {}",
        dir.path().join("guardian.db").display()
    ));
    n.say("cadence compressed for the demo: every 2s for 20s, then every 4s until 40s (production: 5m/15m/30m over 6h)");
    println!(
        "\n--- {} ---\n{}---",
        config.display(),
        std::fs::read_to_string(&config)?
    );
    println!("--- rules/checkout.yaml ---\n{}---\n", RULES);

    // 4. Deploy v2 and tell the daemon, as a deploy tool would.
    svc.deploy("v2");
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{api}/v1/releases"))
        .json(
            &serde_json::json!({"service": "checkout", "version": "v2", "previous_version": "v1",
            "annotations": {"deployed_by": "demo"}}),
        )
        .send()
        .await?;
    let status = resp.status();
    let release: serde_json::Value = resp.json().await?;
    let id = release["id"].as_str().context("release id")?.to_string();
    n.say(format!("deploy tool: POST /v1/releases {{service: checkout, version: v2}} -> HTTP {} (release {id})", status.as_u16()));

    // 5. Watch it: print check changes, inject the fault after two healthy ticks.
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut decisions_seen = 0;
    let mut healthy_ticks = 0;
    let mut fault_injected = false;
    let mut last_next = String::new();
    let deadline = Instant::now() + DEADLINE;
    let final_release = loop {
        if Instant::now() > deadline {
            anyhow::bail!("the demo did not finish within {}s", DEADLINE.as_secs());
        }
        n.drain(&mut pages);
        let r: serde_json::Value = fetch(&http, &api, &id).await?;
        for c in r["checks"].as_array().into_iter().flatten() {
            let name = c["name"].as_str().unwrap_or("?").to_string();
            let line = format!(
                "{} (value {})",
                c["state"].as_str().unwrap_or("?"),
                value(&c["value"])
            );
            if seen.get(&name) != Some(&line) {
                n.say(format!("check {name:<11} -> {line}"));
                seen.insert(name, line);
            }
        }
        let decisions = r["decisions"].as_array().cloned().unwrap_or_default();
        for d in decisions.iter().skip(decisions_seen) {
            if d["action"] != "level_changed" {
                n.say(format!(
                    "decision: {} — {}",
                    d["action"].as_str().unwrap_or("?"),
                    d["reason"].as_str().unwrap_or("")
                ));
            }
        }
        decisions_seen = decisions.len();
        let next = r["next_check_at"].as_str().unwrap_or("").to_string();
        if next != last_next {
            if !last_next.is_empty() && !fault_injected {
                let all_ok = r["checks"]
                    .as_array()
                    .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c["state"] == "ok"));
                if all_ok {
                    healthy_ticks += 1;
                }
                if healthy_ticks >= 2 {
                    svc.inject_fault();
                    fault_injected = true;
                    n.say("*** regression injected: v2 now fails 12% of requests and /health/ready answers 503 ***");
                }
            }
            last_next = next;
        }
        let st = r["status"].as_str().unwrap_or("");
        if matches!(
            st,
            "rolled_back" | "rollback_failed" | "verified" | "aborted"
        ) {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Let the outbox deliver the last messages (bounded wait).
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        n.drain(&mut pages);
        let r: serde_json::Value = fetch(&http, &api, &id).await?;
        let pending = r["notifications"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["status"] == "pending");
        if !pending || Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r: serde_json::Value = fetch(&http, &api, &id).await?;
    n.say(format!("service now runs {}", svc.version()));
    println!("\nFinal status (release-guardian status {id}):\n");
    print!("{}", crate::report::text::release(&r));
    report_summary(&http, &api, &id).await?;
    daemon.shutdown().await;
    cancel.cancel();
    let ok = final_release["status"] == "rolled_back" && svc.version() == "v1";
    println!(
        "\n{} in {:.1}s. Run it for real: `release-guardian check --config guardian.toml`, then `release-guardian run`.",
        if ok { "Demo complete: the bad release was rolled back" } else { "Demo ended without a rollback" },
        n.start.elapsed().as_secs_f64()
    );
    if ok {
        Ok(())
    } else {
        anyhow::bail!(
            "expected status rolled_back, got {}",
            final_release["status"]
        )
    }
}

/// The values each check saw and the post-deployment checklist, from the
/// release's report (`release-guardian report ID`).
async fn report_summary(http: &reqwest::Client, api: &str, id: &str) -> anyhow::Result<()> {
    let report: serde_json::Value = http
        .get(format!("{api}/v1/releases/{id}/report?format=json"))
        .send()
        .await?
        .json()
        .await?;
    println!("\nOver the watch (release-guardian status {id}):\n");
    print!("{}", crate::report::terminal::release(&report, false));
    println!("\nPost-deployment checklist (release-guardian report {id}):\n");
    for item in report["checklist"].as_array().into_iter().flatten() {
        println!(
            "  [{}] {} — {}",
            if item["outcome"] == "passed" {
                "x"
            } else {
                " "
            },
            item["item"].as_str().unwrap_or("?"),
            item["evidence"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

fn value(v: &serde_json::Value) -> String {
    v.as_f64()
        .map(crate::model::format_value)
        .unwrap_or_else(|| "-".into())
}

async fn serve(
    router: axum::Router,
    cancel: &CancellationToken,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cancel = cancel.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
    });
    Ok(addr)
}

const RULES: &str = r#"# The demo's rule pack: the checklist thresholds, compressed in time.
checks:
  - name: error_rate
    source: scrape
    scrape: metrics
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
  - name: ready
    source: probe
    probe: ready
    critical: { failures: 2 }
"#;

fn write_config(
    dir: &std::path::Path,
    svc: std::net::SocketAddr,
    slack: std::net::SocketAddr,
) -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    std::fs::create_dir_all(dir.join("rules"))?;
    std::fs::write(dir.join("rules/checkout.yaml"), RULES)?;
    let toml = format!(
        r#"# guardian.toml written by the demo
[server]
listen = "127.0.0.1:0"

[store]
path = "guardian.db"

[cadence]
tiers = [ {{ until = "20s", every = "2s" }}, {{ until = "40s", every = "4s" }} ]

[[services]]
name = "checkout"
rules = ["rules/checkout.yaml"]
notify = ["oncall-slack"]
  [[services.scrapes]]
  name = "metrics"
  url = "http://{svc}/metrics"
  interval = "500ms"
  [[services.probes]]
  name = "live"
  url = "http://{svc}/health/live"
  timeout = "1s"
  [[services.probes]]
  name = "ready"
  url = "http://{svc}/health/ready"
  timeout = "1s"
  [services.rollback]
  command = [{exe:?}, "demo-rollback", "http://{svc}/admin/rollback"]
  timeout = "10s"
  mode = "auto"

[notifiers.oncall-slack]
kind = "slack"
webhook_url = "http://{slack}/services/T0DEMO/B0DEMO/not-a-real-secret"
min_severity = "warning"
"#
    );
    let path = dir.join("guardian.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}

/// The demo's rollback hook: run by the daemon without a shell, with the
/// `RG_*` variables; restores the previous version of the simulated service.
pub async fn rollback_hook(url: &str) -> ExitCode {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    println!(
        "rollback hook: release {} of {} ({}): {} -> {}; reason: {}",
        var("RG_RELEASE_ID"),
        var("RG_SERVICE"),
        var("RG_ENVIRONMENT"),
        var("RG_VERSION"),
        var("RG_PREVIOUS_VERSION"),
        var("RG_REASON")
    );
    let to = var("RG_PREVIOUS_VERSION");
    match reqwest::Client::new()
        .post(url)
        .body(to)
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => {
            print!("{}", r.text().await.unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(r) => {
            eprintln!("rollback hook: HTTP {}", r.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("rollback hook: {}", e.without_url());
            ExitCode::FAILURE
        }
    }
}
