//! `release-guardian backtest`: replays a service's rule packs against the
//! history its configured sources (Prometheus, Loki) hold, as if a release
//! had happened at `--release-at`, through the daemon's own ticks
//! ([`crate::scheduler::replay`]): nothing is written, notified or run.
//! Probes measure live, so a probe check has no history to replay: it is
//! inconclusive at every tick (never a breach). Without `--until` the
//! replay stops at the end of the watch window or now, whichever comes
//! first.
//!
//! Output: one JSON object per replay (`--format json`; several replays
//! are a JSON array of them), or for people a table with one line per
//! replay, followed, for a single replay, by its decisions.

use crate::config::{Service, Settings};
use crate::model::{rfc3339, Millis};
use crate::scheduler::replay::{self, Replay, ReplaySpec, VirtualClock};
use crate::sources::probe::{ProbeConfig, ProbeScript, Prober};
use crate::sources::{Blame, ProbeResult};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// The command's arguments.
#[derive(Debug, Clone)]
pub struct Args {
    pub config: PathBuf,
    /// None: every configured service.
    pub service: Option<String>,
    pub release_at: Vec<String>,
    pub until: Option<String>,
    pub format: String,
}

/// Probes in a backtest: there is no past to probe.
struct NoProbes;

impl ProbeScript for NoProbes {
    fn burst(&self, _cfg: &ProbeConfig) -> Vec<ProbeResult> {
        vec![ProbeResult {
            ok: false,
            status: None,
            latency: std::time::Duration::ZERO,
            error: Some("a backtest cannot probe the past".into()),
            blame: Blame::Guardian,
        }]
    }
}

/// Replays `service` released at `release_at` against the sources of
/// `settings`.
pub async fn run(
    settings: &Settings,
    service: &Service,
    release_at: Millis,
    until: Option<Millis>,
) -> Result<Replay, String> {
    let clock = Arc::new(VirtualClock::new(release_at));
    let (ctx, _dir) = replay::context(settings.clone(), clock.clone())?;
    let sources = ctx.sources();
    let range = settings
        .sources
        .keys()
        .filter_map(|name| sources.range(name).map(|s| (name.clone(), s.clone())))
        .collect();
    ctx.replace_sources(crate::sources::Sources::from_parts(
        range,
        Prober::scripted(Arc::new(NoProbes)),
    ));
    let spec = ReplaySpec {
        release_at,
        until,
        version: "backtest".into(),
        previous_version: None,
    };
    Ok(replay::run(&ctx, &clock, service, &spec).await)
}

/// The JSON object of one replay (the contract's shape).
pub fn to_json(r: &Replay) -> Value {
    json!({
        "service": r.release.service,
        "environment": r.release.environment,
        "release_at": rfc3339(r.release.started_at),
        "verdict": if r.rollback_at.is_some() { "rollback" } else { "no_rollback" },
        "rollback_at": r.rollback_at.map(rfc3339),
        "rollback_check": r.rollback_check,
        "ticks": r.ticks.iter().map(|t| json!({
            "at": rfc3339(t.at),
            "checks": t.checks.iter().map(|c| json!({
                "name": c.name,
                "state": c.state.as_str(),
                "value": c.value.filter(|v| v.is_finite()),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "decisions": r.decisions.iter().map(|d| json!({
            "at": rfc3339(d.at),
            "check": d.check,
            "level": d.level,
            "action": d.action.as_str(),
            "reason": d.reason,
        })).collect::<Vec<_>>(),
    })
}

/// The table of replays, one line each.
pub fn table(runs: &[Replay]) -> String {
    let mut rows = vec![[
        "SERVICE".to_string(),
        "RELEASE_AT".into(),
        "VERDICT".into(),
        "ROLLBACK_AT".into(),
        "CHECK".into(),
        "TICKS".into(),
        "INCONCLUSIVE".into(),
    ]];
    for r in runs {
        let inconclusive: std::collections::BTreeSet<&str> = r
            .ticks
            .iter()
            .flat_map(|t| &t.checks)
            .filter(|c| c.state == crate::model::CheckState::Inconclusive)
            .map(|c| c.name.as_str())
            .collect();
        rows.push([
            format!("{}/{}", r.release.service, r.release.environment),
            rfc3339(r.release.started_at),
            if r.rollback_at.is_some() {
                "rollback".into()
            } else {
                "no_rollback".into()
            },
            r.rollback_at.map(rfc3339).unwrap_or_else(|| "-".into()),
            r.rollback_check.clone().unwrap_or_else(|| "-".into()),
            r.ticks.len().to_string(),
            if inconclusive.is_empty() {
                "-".into()
            } else {
                inconclusive.into_iter().collect::<Vec<_>>().join(",")
            },
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out += cells.join("  ").trim_end();
        out.push('\n');
    }
    out
}

fn instant(s: &str, what: &str) -> Result<Millis, String> {
    crate::model::parse_time(s)
        .ok_or_else(|| format!("{what} {s:?} is neither RFC3339 nor unix seconds"))
}

/// The command: exit 0 when every replay ran (whatever its verdict).
pub async fn main(args: Args) -> ExitCode {
    match go(&args).await {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("release-guardian backtest: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn go(args: &Args) -> Result<String, String> {
    if !matches!(args.format.as_str(), "text" | "json") {
        return Err(format!("--format {:?}: text or json", args.format));
    }
    let settings = crate::config::load(&args.config).map_err(|e| {
        let lines: Vec<String> = e.errors.iter().map(|e| e.to_string()).collect();
        lines.join("\n")
    })?;
    let services: Vec<&Service> = settings
        .services
        .iter()
        .filter(|s| args.service.as_ref().is_none_or(|n| *n == s.name))
        .collect();
    if services.is_empty() {
        return Err(match &args.service {
            Some(n) => format!("no service {n:?} in {}", args.config.display()),
            None => format!("no services in {}", args.config.display()),
        });
    }
    // History ends now: by default no tick after it.
    let until = match args.until.as_deref() {
        Some(u) => instant(u, "--until")?,
        None => crate::clock::Clock::now(&crate::clock::SystemClock),
    };
    let mut at = Vec::new();
    for s in &args.release_at {
        at.push(instant(s.trim(), "--release-at")?);
    }
    let mut runs = Vec::new();
    for service in services {
        for &t in &at {
            runs.push(run(&settings, service, t, Some(until)).await?);
        }
    }
    Ok(match args.format.as_str() {
        "json" => {
            let v = match runs.as_slice() {
                [one] => to_json(one),
                many => Value::Array(many.iter().map(to_json).collect()),
            };
            serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
        }
        _ => {
            let mut out = table(&runs);
            if let [one] = runs.as_slice() {
                out.push('\n');
                for d in &one.decisions {
                    out += &format!("{}  {}\n", rfc3339(d.at), d.reason);
                }
            }
            out
        }
    })
}
