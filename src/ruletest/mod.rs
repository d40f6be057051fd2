//! `release-guardian test-rules FILE...`: unit tests for rule packs, in
//! the spirit of `promtool test rules`. A test file names the packs under
//! test and cases; each case is replayed through the daemon's own tick and
//! between-tick semantics ([`crate::scheduler::replay`]) over in-memory
//! series, scripted probes ([`memory`], written in the [`notation`]) and
//! scrape targets that hold the case's samples and are never scraped,
//! and its expectations (check states, levels and values at given
//! instants, decisions, the verdict and the rollback's instant) are
//! compared with what the replay found. The file format is in
//! `docs/rules.md`.

pub mod memory;
pub mod notation;

use crate::config::Service;
use crate::model::{CheckState, Level, Millis};
use crate::scheduler::replay::{self, Replay, ReplaySpec, VirtualClock};
use memory::{normalize, MemorySource, ScriptedProbes, Series, TimedLine};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The packs under test, relative to the test file.
    pub rule_files: Vec<PathBuf>,
    /// The service the packs are configured for.
    #[serde(default)]
    pub service: ServiceDef,
    /// The default spacing of every case's samples.
    #[serde(default = "default_interval", with = "humantime_serde_str")]
    pub interval: Millis,
    pub tests: Vec<Case>,
}

fn default_interval() -> Millis {
    60_000
}

/// The service of a test file: what `[[services]]` would say.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    #[serde(default = "default_service")]
    pub name: String,
    #[serde(default = "crate::model::default_environment")]
    pub environment: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Probe names the packs use (default: those of the cases'
    /// `probe_results`).
    #[serde(default)]
    pub probes: Vec<String>,
    /// Scrape names the packs use (default: those of the cases'
    /// `scraped_series`).
    #[serde(default)]
    pub scrapes: Vec<String>,
    #[serde(default)]
    pub min_health_score: Option<f64>,
    /// Cadence tiers, e.g. `[{ until: 1h, every: 5m }]` (default: the
    /// daemon's default, 5m for 1h, 15m to 3h, 30m to 6h).
    #[serde(default)]
    pub cadence: Vec<Tier>,
    /// `escalate_every` (`step`, `off` or a duration; default `step`).
    #[serde(default)]
    pub escalate_every: Option<String>,
    /// `sentinel_every` (`step`, `off` or a duration; default `step`).
    #[serde(default)]
    pub sentinel_every: Option<String>,
}

impl Default for ServiceDef {
    fn default() -> Self {
        serde_norway::from_str("{}").expect("defaults")
    }
}

fn default_service() -> String {
    "checkout".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub until: String,
    pub every: String,
}

/// One case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// This case's sample spacing (default: the file's).
    #[serde(default, with = "humantime_serde_opt")]
    pub interval: Option<Millis>,
    #[serde(with = "humantime_serde_str")]
    pub release_at: Millis,
    #[serde(default, with = "humantime_serde_opt")]
    pub until: Option<Millis>,
    #[serde(default = "default_version")]
    pub version: String,
    #[serde(default)]
    pub previous_version: Option<String>,
    #[serde(default)]
    pub input_series: Vec<InputSeries>,
    #[serde(default)]
    pub probe_results: Vec<ProbeSeries>,
    #[serde(default)]
    pub scraped_series: Vec<ScrapedSeries>,
    #[serde(default)]
    pub log_lines: Vec<LogLineDef>,
    #[serde(default)]
    pub expect: Vec<Expect>,
    #[serde(default)]
    pub decisions: Vec<ExpectDecision>,
    /// `rollback` or `no_rollback`.
    #[serde(default)]
    pub verdict: Option<Verdict>,
    /// The tick that rolls back.
    #[serde(default, with = "humantime_serde_opt")]
    pub rollback_at: Option<Millis>,
    /// No check goes above this level at any tick, and no decision names a
    /// higher level.
    #[serde(default)]
    pub max_level: Option<Level>,
}

fn default_version() -> String {
    "v2".into()
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Rollback,
    NoRollback,
}

/// A series a query answers: `check: NAME` (that check's own query) or
/// `query: TEXT` (any query a check sends: `min_traffic`, `baseline`, ...).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSeries {
    #[serde(default)]
    pub check: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub labels: Option<String>,
    pub values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSeries {
    pub probe: String,
    /// Seconds of latency per tick interval, `fail`, or `_`.
    pub values: String,
}

/// What the guardian scraped of one series of a `[[services.scrapes]]`
/// target: `series` as the exposition writes it (`name{label="value"}`),
/// one value per interval from instant 0 (`_`: the series was not in that
/// scrape).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapedSeries {
    pub scrape: String,
    pub series: String,
    pub values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLineDef {
    #[serde(with = "humantime_serde_str")]
    pub at: Millis,
    pub line: String,
    #[serde(default)]
    pub query: Option<String>,
}

/// A check's expected state at an instant (as the last tick at or before
/// it left the check).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(with = "humantime_serde_str")]
    pub at: Millis,
    pub check: String,
    #[serde(default)]
    pub state: Option<CheckState>,
    #[serde(default)]
    pub level: Option<Level>,
    #[serde(default)]
    pub value: Option<f64>,
}

/// A decision the replay must have recorded.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectDecision {
    pub check: String,
    pub level: Level,
    /// The tick that decided it.
    #[serde(default, with = "humantime_serde_opt")]
    pub at: Option<Millis>,
}

/// Durations as humantime strings (`"45m"`, `"1h 30m"`), in milliseconds.
mod humantime_serde_str {
    use crate::model::Millis;
    use serde::Deserialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        let s = String::deserialize(d)?;
        super::duration(&s).map_err(serde::de::Error::custom)
    }
}

mod humantime_serde_opt {
    use crate::model::Millis;
    use serde::Deserialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| super::duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

fn duration(s: &str) -> Result<Millis, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(0);
    }
    humantime::parse_duration(s)
        .map(|d| d.as_millis() as Millis)
        .map_err(|e| format!("{s:?} is not a duration (like 45m or 1h30m): {e}"))
}

/// An instant of a case, as the test file writes it.
pub fn show(t: Millis) -> String {
    if t == 0 {
        return "0s".into();
    }
    let sign = if t < 0 { "-" } else { "" };
    let d = std::time::Duration::from_millis(t.unsigned_abs());
    format!("{sign}{}", humantime::format_duration(d)).replace(' ', "")
}

/// The outcome of one file: its failed cases, each as text for people
/// (the file, the case, then one line per unmet expectation).
#[derive(Debug, Default)]
pub struct FileOutcome {
    pub cases: usize,
    pub failures: Vec<String>,
}

/// Runs every case of the test file at `path`.
pub async fn run_file(path: &Path) -> FileOutcome {
    let mut outcome = FileOutcome::default();
    let shown = path.display().to_string();
    let file: TestFile = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| {
            let de = serde_norway::Deserializer::from_str(&t);
            serde_path_to_error::deserialize(de).map_err(|e| e.to_string())
        }) {
        Ok(f) => f,
        Err(e) => {
            outcome.failures.push(format!("{shown}: cannot read: {e}"));
            return outcome;
        }
    };
    for case in &file.tests {
        outcome.cases += 1;
        let errors = match run_case(path, &file, case).await {
            Ok(errors) => errors,
            Err(e) => vec![e],
        };
        if !errors.is_empty() {
            outcome.failures.push(format!(
                "{shown}: case {:?}:\n  {}",
                case.name,
                errors.join("\n  ")
            ));
        }
    }
    outcome
}

/// The config a test file stands for: its packs on its service, every
/// query source configured (the memory source replaces them), and each
/// scrape at a URL of its own that is never requested (the case's
/// `scraped_series` are its samples; its `instance` is `127.0.0.1:9`).
fn config_text(file: &TestFile, probes: &BTreeSet<String>, scrapes: &BTreeSet<String>) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let s = &file.service;
    let mut t = String::new();
    for kind in crate::sources::KINDS {
        if kind.section.is_some() {
            t += &format!("[sources.{}]\nurl = \"http://127.0.0.1:9/\"\n", kind.name);
        }
    }
    let rules: Vec<String> = file
        .rule_files
        .iter()
        .map(|p| q(&p.display().to_string()))
        .collect();
    t += &format!(
        "[[services]]\nname = {}\nenvironment = {}\nrules = [{}]\n",
        q(&s.name),
        q(&s.environment),
        rules.join(", ")
    );
    if let Some(m) = s.min_health_score {
        t += &format!("min_health_score = {m}\n");
    }
    if !s.labels.is_empty() {
        let labels: Vec<String> = s
            .labels
            .iter()
            .map(|(k, v)| format!("{} = {}", q(k), q(v)))
            .collect();
        t += &format!("labels = {{ {} }}\n", labels.join(", "));
    }
    for p in probes {
        t += &format!(
            "[[services.probes]]\nname = {}\nurl = \"http://127.0.0.1:9/\"\n",
            q(p)
        );
    }
    for (i, name) in scrapes.iter().enumerate() {
        t += &format!(
            "[[services.scrapes]]\nname = {}\nurl = \"http://127.0.0.1:9/scrape-{i}/metrics\"\n",
            q(name)
        );
    }
    if !s.cadence.is_empty() || s.escalate_every.is_some() || s.sentinel_every.is_some() {
        t += "[services.cadence]\n";
        let tiers: Vec<String> = if s.cadence.is_empty() {
            vec![
                "{ until = \"1h\", every = \"5m\" }".into(),
                "{ until = \"3h\", every = \"15m\" }".into(),
                "{ until = \"6h\", every = \"30m\" }".into(),
            ]
        } else {
            s.cadence
                .iter()
                .map(|x| format!("{{ until = {}, every = {} }}", q(&x.until), q(&x.every)))
                .collect()
        };
        t += &format!("tiers = [{}]\n", tiers.join(", "));
        if let Some(e) = &s.escalate_every {
            t += &format!("escalate_every = {}\n", q(e));
        }
        if let Some(e) = &s.sentinel_every {
            t += &format!("sentinel_every = {}\n", q(e));
        }
    }
    t
}

/// A case's `scraped_series` as the scrapes of each target: by scrape
/// name, `(instant, samples)` oldest first. Scrapes before `release_at`
/// are left out: a watch scrapes from its start.
type Scrapes = BTreeMap<String, Vec<(Millis, Vec<(crate::sources::promql::Labels, f64)>)>>;

fn scrapes_of(case: &Case, interval: Millis) -> Result<Scrapes, String> {
    let mut at: BTreeMap<String, BTreeMap<Millis, Vec<_>>> = BTreeMap::new();
    for (i, s) in case.scraped_series.iter().enumerate() {
        let labels = series_labels(&s.series).map_err(|e| {
            format!(
                "scraped_series[{i}].series: {:?} is not one series as an exposition writes it, like http_requests_total{{code=\"500\"}} ({e})",
                s.series
            )
        })?;
        let samples =
            notation::parse(&s.values).map_err(|e| format!("scraped_series[{i}].values: {e}"))?;
        let scrapes = at.entry(s.scrape.clone()).or_default();
        for (k, token) in samples.iter().enumerate() {
            let instant = k as Millis * interval;
            match token {
                notation::Token::Value(v) if instant >= case.release_at => scrapes
                    .entry(instant)
                    .or_default()
                    .push((labels.clone(), *v)),
                notation::Token::Value(_) | notation::Token::Missing => {}
                notation::Token::Stale | notation::Token::Fail => {
                    return Err(format!(
                        "scraped_series[{i}].values: `stale` and `fail` are not scraped values (`_` is a scrape without the series)"
                    ))
                }
            }
        }
    }
    Ok(at
        .into_iter()
        .map(|(name, by_instant)| (name, by_instant.into_iter().collect()))
        .collect())
}

/// The labels of `name{label="value", ...}` (with `__name__`), read as
/// the scrape source reads an exposition line.
fn series_labels(series: &str) -> Result<crate::sources::promql::Labels, String> {
    if series.contains('\n') {
        return Err("is more than one line".into());
    }
    let mut samples = crate::sources::exposition::parse(&format!("{} 0", series.trim()))
        .map_err(|e| format!("column {}: {}", e.col, e.message))?;
    match (samples.pop(), samples.is_empty()) {
        (Some((labels, _)), true) => Ok(labels),
        _ => Err("is not a series".into()),
    }
}

async fn run_case(path: &Path, file: &TestFile, case: &Case) -> Result<Vec<String>, String> {
    let interval = case.interval.unwrap_or(file.interval).max(1);
    let mut probes: BTreeSet<String> = file.service.probes.iter().cloned().collect();
    probes.extend(case.probe_results.iter().map(|p| p.probe.clone()));
    let mut scrape_names: BTreeSet<String> = file.service.scrapes.iter().cloned().collect();
    scrape_names.extend(case.scraped_series.iter().map(|s| s.scrape.clone()));
    let dir = path.parent().unwrap_or(Path::new("."));
    let config_path = dir.join(format!(
        "{}.guardian.toml",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let settings = crate::config::load_str(
        &config_text(file, &probes, &scrape_names),
        &config_path,
        &[],
    )
    .map_err(|e| {
        let lines: Vec<String> = e.errors.iter().map(|e| e.to_string()).collect();
        format!("the packs do not load:\n  {}", lines.join("\n  "))
    })?;
    let service: Service = settings
        .services
        .first()
        .cloned()
        .ok_or("no service was configured")?;
    let spec = ReplaySpec {
        release_at: case.release_at,
        until: case.until,
        version: case.version.clone(),
        previous_version: case.previous_version.clone(),
    };
    let vars = crate::scheduler::variables(&replay::release(&service, &spec), &service);

    let clock = Arc::new(VirtualClock::new(case.release_at));
    let (ctx, _dir) = replay::context(settings.clone(), clock.clone())?;
    let real = ctx.sources();

    // Series by normalized rendered query, for every source.
    let mut series: BTreeMap<String, Vec<Series>> = BTreeMap::new();
    for (i, s) in case.input_series.iter().enumerate() {
        let samples =
            notation::parse(&s.values).map_err(|e| format!("input_series[{i}].values: {e}"))?;
        if samples.contains(&notation::Token::Fail) {
            return Err(format!(
                "input_series[{i}].values: `fail` is for probe_results"
            ));
        }
        let query = match (&s.check, &s.query) {
            (Some(name), None) => {
                let spec = service
                    .checks
                    .iter()
                    .find(|c| &c.name == name)
                    .ok_or_else(|| format!("input_series[{i}]: no check {name:?} in the packs"))?;
                let source = match real.range(spec.source_name()) {
                    Some(Ok(s)) => s.clone(),
                    _ => {
                        return Err(format!(
                            "input_series[{i}]: check {name:?} does not read a query source"
                        ))
                    }
                };
                source.render(spec.query.as_deref().unwrap_or_default(), &vars)
            }
            (None, Some(q)) => crate::sources::template::render(q, &vars),
            _ => {
                return Err(format!(
                    "input_series[{i}]: give one of `check` and `query`"
                ))
            }
        };
        series.entry(normalize(&query)).or_default().push(Series {
            labels: s
                .labels
                .clone()
                .unwrap_or_else(|| format!("{{series=\"{i}\"}}")),
            interval,
            samples,
        });
    }
    let mut scripted = BTreeMap::new();
    for (i, p) in case.probe_results.iter().enumerate() {
        let samples =
            notation::parse(&p.values).map_err(|e| format!("probe_results[{i}].values: {e}"))?;
        if samples.contains(&notation::Token::Stale) {
            return Err(format!(
                "probe_results[{i}].values: `stale` is for input_series"
            ));
        }
        scripted.insert(
            p.probe.clone(),
            Series {
                labels: p.probe.clone(),
                interval,
                samples,
            },
        );
    }
    let lines: Vec<TimedLine> = case
        .log_lines
        .iter()
        .map(|l| TimedLine {
            at: l.at,
            query: l
                .query
                .as_ref()
                .map(|q| normalize(&crate::sources::template::render(q, &vars))),
            line: l.line.clone(),
        })
        .collect();
    let series = Arc::new(series);
    let lines = Arc::new(lines);
    let unmatched = Arc::new(Mutex::new(BTreeSet::new()));
    let mut range = BTreeMap::new();
    for c in &service.checks {
        let name = c.source_name().to_string();
        if let Some(Ok(source)) = real.range(&name) {
            let memory: Arc<dyn crate::sources::RangeSource> = Arc::new(MemorySource {
                real: source.clone(),
                series: series.clone(),
                lines: lines.clone(),
                unmatched: unmatched.clone(),
            });
            range.insert(name, Ok(memory));
        }
    }
    let prober = crate::sources::probe::Prober::scripted(Arc::new(ScriptedProbes {
        clock: clock.clone(),
        probes: scripted,
    }));
    ctx.replace_sources(crate::sources::Sources::from_parts(range, prober));

    // Each scrape target holds the case's samples, and is held (never
    // scraped) until the replay is done.
    let mut scraped = scrapes_of(case, interval)?;
    let mut held = Vec::new();
    for name in &scrape_names {
        if let Some(cfg) = service.scrape(name) {
            let scrapes = scraped.remove(name).unwrap_or_default();
            held.push(ctx.scrapes.preloaded(cfg, scrapes));
        }
    }

    let replayed = replay::run(&ctx, &clock, &service, &spec).await;
    drop(held);
    let mut errors = judge(case, &service, &replayed);
    if !errors.is_empty() {
        let unmatched = unmatched.lock().unwrap_or_else(|e| e.into_inner());
        for q in unmatched.iter() {
            errors.push(format!("note: no input_series for the query `{q}`"));
        }
        errors.push(format!("replay:\n{}", timeline(&replayed)));
    }
    Ok(errors)
}

/// The replay's ticks and decisions, for a failure's reader.
fn timeline(r: &Replay) -> String {
    let mut out = String::new();
    // Ticks that leave every check as the previous one did are one line.
    let mut last: Option<(String, Millis)> = None;
    let flush = |out: &mut String, last: &Option<(String, Millis)>, upto: Option<Millis>| {
        if let (Some((_, first)), Some(upto)) = (last, upto) {
            if upto != *first {
                *out += &format!("    … the same through {}\n", show(upto));
            }
        }
    };
    let mut same_until: Option<Millis> = None;
    for t in &r.ticks {
        let checks: Vec<String> = t
            .checks
            .iter()
            .map(|c| {
                let v = c
                    .value
                    .map(crate::model::format_value)
                    .unwrap_or_else(|| "-".into());
                format!("{}={}({v})", c.name, c.state.as_str())
            })
            .collect();
        let text = checks.join(" ");
        if last.as_ref().is_some_and(|(prev, _)| *prev == text) {
            same_until = Some(t.at);
            continue;
        }
        flush(&mut out, &last, same_until);
        out += &format!("    tick {}: {text}\n", show(t.at));
        last = Some((text, t.at));
        same_until = None;
    }
    flush(&mut out, &last, same_until);
    for d in &r.decisions {
        out += &format!("    decision at {}: {}\n", show(d.at), d.reason);
    }
    out
}

/// Compares a case's expectations with its replay.
fn judge(case: &Case, service: &Service, r: &Replay) -> Vec<String> {
    let mut errors = Vec::new();
    for e in &case.expect {
        if !service.checks.iter().any(|c| c.name == e.check) {
            errors.push(format!("expect: no check {:?} in the packs", e.check));
            continue;
        }
        let got = r.checks_at(e.at).iter().find(|c| c.name == e.check);
        let at = show(e.at);
        let (state, level, value) = match got {
            Some(c) => (c.state, c.level, c.value),
            None => (CheckState::Pending, Level::Ok, None),
        };
        if let Some(want) = e.state {
            if want != state {
                errors.push(format!(
                    "check {:?} at {at}: expected state {}, got {}",
                    e.check,
                    want.as_str(),
                    state.as_str()
                ));
            }
        }
        if let Some(want) = e.level {
            if want != level {
                errors.push(format!(
                    "check {:?} at {at}: expected level {want}, got {level}",
                    e.check
                ));
            }
        }
        if let Some(want) = e.value {
            let close = value.is_some_and(|v| (v - want).abs() <= 1e-9_f64.max(want.abs() * 1e-6));
            if !close {
                errors.push(format!(
                    "check {:?} at {at}: expected value {want}, got {}",
                    e.check,
                    value
                        .map(crate::model::format_value)
                        .unwrap_or_else(|| "none".into())
                ));
            }
        }
    }
    for d in &case.decisions {
        let found = r.decisions.iter().any(|x| {
            x.check.as_deref() == Some(d.check.as_str())
                && x.level == Some(d.level)
                && d.at.is_none_or(|at| x.at == at)
        });
        if !found {
            let when = d.at.map(|a| format!(" at {}", show(a))).unwrap_or_default();
            errors.push(format!(
                "expected a decision: check {:?} level {}{when}; got none",
                d.check, d.level
            ));
        }
    }
    let got_verdict = if r.rollback_at.is_some() {
        Verdict::Rollback
    } else {
        Verdict::NoRollback
    };
    if let Some(want) = case.verdict {
        if want != got_verdict {
            errors.push(format!(
                "expected verdict {}, got {}",
                verdict_str(want),
                verdict_str(got_verdict)
            ));
        }
    }
    if let Some(want) = case.rollback_at {
        if r.rollback_at != Some(want) {
            errors.push(format!(
                "expected the rollback at {}, got {}",
                show(want),
                r.rollback_at.map(show).unwrap_or_else(|| "none".into())
            ));
        }
    }
    if let Some(max) = case.max_level {
        for d in r
            .decisions
            .iter()
            .filter(|d| d.level.is_some_and(|l| l > max))
        {
            errors.push(format!(
                "expected at most level {max}; at {}: {}",
                show(d.at),
                d.reason
            ));
        }
        for t in &r.ticks {
            for c in t.checks.iter().filter(|c| c.level > max) {
                errors.push(format!(
                    "check {:?} at {}: expected at most level {max}, got {}",
                    c.name,
                    show(t.at),
                    c.level
                ));
            }
        }
    }
    errors
}

fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Rollback => "rollback",
        Verdict::NoRollback => "no_rollback",
    }
}

/// Runs the test files; prints failures, then a summary. Exit 0 when every
/// case passed.
pub async fn main(files: &[PathBuf]) -> std::process::ExitCode {
    let mut cases = 0;
    let mut failed = 0;
    for f in files {
        let outcome = run_file(f).await;
        cases += outcome.cases;
        if outcome.failures.is_empty() {
            println!("{}: {} case(s) passed", f.display(), outcome.cases);
        } else {
            failed += outcome.failures.len();
            for e in &outcome.failures {
                println!("FAILED {e}");
            }
        }
    }
    println!("{} file(s), {cases} case(s), {failed} failed", files.len());
    if failed == 0 && cases > 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
