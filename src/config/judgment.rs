//! A check's judgments beyond its thresholds, as written in a rule pack
//! (`no_data`, `min_traffic`, `recover_after`, `baseline`, `compare`,
//! `burn_rate`, `weight`, `new_error_signatures`), their pack-level checks,
//! and the compiled [`Judgment`] the scheduler runs. The meaning of each is
//! in `docs/rules.md`; the maths in [`crate::engine`].

use crate::engine::burn::{self, BurnWindow};
use crate::engine::stats::{CompareSpec, Direction};
use crate::model::{Level, Millis};
use crate::section::{
    at_most, deserialize_duration, deserialize_opt_duration, saturating_millis, KeyPath,
    MAX_RULE_WINDOW,
};
use serde::Deserialize;
use std::time::Duration;

/// What a check whose query answers no data is (`no_data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoData {
    /// Not judged (the default): a missing series is never a breach.
    #[default]
    Inconclusive,
    /// No data is good news (a query of errors that only exists when they do).
    Ok,
    /// No data breaches every level (with its `for`).
    Breach,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMinTraffic {
    pub query: String,
    pub above: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBaseline {
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub offset: Option<Duration>,
    #[serde(default)]
    pub before_release: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    MannWhitney,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompare {
    #[serde(default = "mann_whitney")]
    pub test: TestKind,
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    #[serde(default)]
    pub tolerance: f64,
    #[serde(default)]
    pub direction: Direction,
    /// How much recent data each comparison takes (default 30m).
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub window: Option<Duration>,
}

fn mann_whitney() -> TestKind {
    TestKind::MannWhitney
}

fn default_confidence() -> f64 {
    0.98
}

/// Default `compare: { window }`.
pub const DEFAULT_COMPARE_WINDOW: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBurnWindow {
    #[serde(deserialize_with = "deserialize_duration")]
    pub long: Duration,
    #[serde(deserialize_with = "deserialize_duration")]
    pub short: Duration,
    pub factor: f64,
    pub level: Level,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBurnRate {
    pub objective: f64,
    pub errors: String,
    /// The level of the page window pairs (default rollback).
    #[serde(default)]
    pub page: Option<Level>,
    /// The level of the ticket window pair (default warning).
    #[serde(default)]
    pub ticket: Option<Level>,
    /// Replaces the default window pairs.
    #[serde(default)]
    pub windows: Option<Vec<RawBurnWindow>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignatures {
    pub query: String,
}

/// The judgment keys of one check as written.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawJudgment {
    #[serde(default)]
    pub no_data: Option<NoData>,
    #[serde(default)]
    pub min_traffic: Option<RawMinTraffic>,
    #[serde(default)]
    pub recover_after: Option<u32>,
    #[serde(default)]
    pub baseline: Option<RawBaseline>,
    #[serde(default)]
    pub compare: Option<RawCompare>,
    #[serde(default)]
    pub burn_rate: Option<RawBurnRate>,
    #[serde(default)]
    pub weight: Option<f64>,
    #[serde(default)]
    pub new_error_signatures: Option<RawSignatures>,
}

/// `baseline:` compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// The stable/baseline query (None: the check's own query).
    pub query: Option<String>,
    /// Read this much earlier and shifted forward (`offset`).
    pub offset: Millis,
    /// The mean over the same-length window before the release.
    pub before_release: bool,
}

/// `compare:` compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Compare {
    pub spec: CompareSpec,
    pub window: Millis,
}

/// `burn_rate:` compiled (its `errors` query is the check's `query`).
#[derive(Debug, Clone, PartialEq)]
pub struct BurnRate {
    pub objective: f64,
    pub windows: Vec<BurnWindow>,
}

/// A check's judgments beyond thresholds, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgment {
    pub no_data: NoData,
    /// `(query, floor)`: below the floor nothing is judged.
    pub min_traffic: Option<(String, f64)>,
    pub baseline: Option<Baseline>,
    pub compare: Option<Compare>,
    pub burn_rate: Option<BurnRate>,
    /// Its weight in the release's health score.
    pub weight: f64,
    /// The LogQL selector of `new_error_signatures`.
    pub new_error_signatures: Option<String>,
}

impl Default for Judgment {
    fn default() -> Self {
        Self {
            no_data: NoData::Inconclusive,
            min_traffic: None,
            baseline: None,
            compare: None,
            burn_rate: None,
            weight: 1.0,
            new_error_signatures: None,
        }
    }
}

impl Judgment {
    /// Checks judged once per tick on a window (compare), not sample by
    /// sample on the step grid.
    pub fn per_tick(&self) -> bool {
        self.compare.is_some() || self.new_error_signatures.is_some()
    }

    /// Checks whose levels are derived (compare, burn rates): a level may
    /// be written with only `for`.
    pub fn derives_levels(&self) -> bool {
        self.compare.is_some() || self.burn_rate.is_some()
    }

    /// Every query this judgment reads besides the check's own.
    pub fn extra_queries(&self) -> Vec<&str> {
        let mut q = Vec::new();
        if let Some((t, _)) = &self.min_traffic {
            q.push(t.as_str());
        }
        if let Some(b) = self.baseline.as_ref().and_then(|b| b.query.as_deref()) {
            q.push(b);
        }
        if let Some(s) = &self.new_error_signatures {
            q.push(s.as_str());
        }
        q
    }
}

/// Checks the judgment keys of check `name` at `path` and compiles them;
/// `source` is the check's source kind name, `has_query` whether it has its
/// own `query`. Every error goes to `err`.
pub fn compile(
    raw: &RawJudgment,
    path: &KeyPath,
    name: &str,
    source: &str,
    has_query: bool,
    err: &mut dyn FnMut(KeyPath, String),
) -> Judgment {
    let mut j = Judgment::default();
    let range = matches!(source, "prometheus" | "loki" | "scrape");
    if let Some(n) = raw.no_data {
        if !range {
            err(
                path.key("no_data"),
                format!(
                    "check `{name}`: `no_data` is only for query checks (a probe always answers)"
                ),
            );
        }
        j.no_data = n;
    }
    if let Some(t) = &raw.min_traffic {
        let at = path.key("min_traffic");
        if t.query.trim().is_empty() {
            err(
                at.key("query"),
                format!("check `{name}`: `min_traffic.query` must not be empty"),
            );
        }
        if !t.above.is_finite() {
            err(
                at.key("above"),
                format!("check `{name}`: `min_traffic.above` must be a number"),
            );
        }
        j.min_traffic = Some((t.query.clone(), t.above));
    }
    if let Some(b) = &raw.baseline {
        let at = path.key("baseline");
        let ways = usize::from(b.query.is_some())
            + usize::from(b.offset.is_some())
            + usize::from(b.before_release);
        if ways == 0 {
            err(at.clone(), format!("check `{name}`: `baseline` needs `query` (canary vs stable), `offset` or `before_release: true`"));
        }
        if b.before_release && b.offset.is_some() {
            err(
                at.key("offset"),
                format!("check `{name}`: `baseline` takes `offset` or `before_release`, not both"),
            );
        }
        if b.query.as_deref().is_some_and(|q| q.trim().is_empty()) {
            err(
                at.key("query"),
                format!("check `{name}`: `baseline.query` must not be empty"),
            );
        }
        if let Some(d) = b.offset {
            if d.is_zero() {
                err(
                    at.key("offset"),
                    format!("check `{name}`: `baseline.offset` must be greater than zero"),
                );
            } else if let Err(e) = at_most("offset", d, MAX_RULE_WINDOW) {
                err(at.key("offset"), format!("check `{name}`: `baseline`: {e}"));
            }
        }
        j.baseline = Some(Baseline {
            query: b.query.clone(),
            offset: b.offset.map_or(0, saturating_millis),
            before_release: b.before_release,
        });
    }
    if let Some(c) = &raw.compare {
        let at = path.key("compare");
        if !(c.confidence > 0.0 && c.confidence < 1.0) {
            err(
                at.key("confidence"),
                format!("check `{name}`: `compare.confidence` must be between 0 and 1 (e.g. 0.98)"),
            );
        }
        if !(c.tolerance >= 0.0 && c.tolerance.is_finite()) {
            err(
                at.key("tolerance"),
                format!("check `{name}`: `compare.tolerance` must be 0 or more (0.1 = 10 %)"),
            );
        }
        if raw.baseline.is_none() {
            err(
                at.clone(),
                format!("check `{name}`: `compare` needs a `baseline` to compare with"),
            );
        }
        let window = c.window.unwrap_or(DEFAULT_COMPARE_WINDOW);
        if window.is_zero() {
            err(
                at.key("window"),
                format!("check `{name}`: `compare.window` must be greater than zero"),
            );
        } else if let Err(e) = at_most("window", window, MAX_RULE_WINDOW) {
            err(at.key("window"), format!("check `{name}`: `compare`: {e}"));
        }
        let TestKind::MannWhitney = c.test;
        j.compare = Some(Compare {
            spec: CompareSpec {
                confidence: c.confidence,
                tolerance: c.tolerance,
                direction: c.direction,
            },
            window: saturating_millis(window),
        });
    }
    if let Some(b) = &raw.burn_rate {
        let at = path.key("burn_rate");
        if !(b.objective > 0.0 && b.objective < 1.0) {
            err(
                at.key("objective"),
                format!(
                    "check `{name}`: `burn_rate.objective` must be between 0 and 1 (e.g. 0.999)"
                ),
            );
        }
        if b.errors.trim().is_empty() {
            err(
                at.key("errors"),
                format!("check `{name}`: `burn_rate.errors` must not be empty"),
            );
        }
        if has_query {
            err(
                path.key("query"),
                format!("check `{name}`: a burn_rate check reads `burn_rate.errors`, not `query`"),
            );
        }
        if !range {
            err(
                at.clone(),
                format!("check `{name}`: `burn_rate` is only for query checks"),
            );
        }
        for (key, l) in [("page", b.page), ("ticket", b.ticket)] {
            if l == Some(Level::Ok) {
                err(
                    at.key(key),
                    format!(
                        "check `{name}`: `burn_rate.{key}` must be warning, critical or rollback"
                    ),
                );
            }
        }
        let windows = match &b.windows {
            None => burn::default_windows(
                b.page.unwrap_or(Level::Rollback),
                b.ticket.unwrap_or(Level::Warning),
            ),
            Some(ws) => {
                if ws.is_empty() {
                    err(
                        at.key("windows"),
                        format!("check `{name}`: `burn_rate.windows` must not be empty"),
                    );
                }
                if b.page.is_some() || b.ticket.is_some() {
                    err(at.key("windows"), format!("check `{name}`: give each window its `level` instead of `page`/`ticket`"));
                }
                ws.iter()
                    .enumerate()
                    .map(|(i, w)| {
                        let wat = at.key("windows").index(i);
                        for (key, d) in [("long", w.long), ("short", w.short)] {
                            if d.is_zero() {
                                err(wat.key(key), format!("check `{name}`: `{key}` must be greater than zero"));
                            } else if let Err(e) = at_most(key, d, MAX_RULE_WINDOW) {
                                err(wat.key(key), format!("check `{name}`: {e}"));
                            }
                        }
                        if !(w.factor > 0.0 && w.factor.is_finite()) {
                            err(wat.key("factor"), format!("check `{name}`: `factor` must be greater than zero"));
                        }
                        if w.level == Level::Ok {
                            err(wat.key("level"), format!("check `{name}`: a window's `level` must be warning, critical or rollback"));
                        }
                        BurnWindow {
                            long_ms: saturating_millis(w.long),
                            short_ms: saturating_millis(w.short),
                            factor: w.factor,
                            level: w.level,
                        }
                    })
                    .collect()
            }
        };
        j.burn_rate = Some(BurnRate {
            objective: b.objective,
            windows,
        });
        if raw.baseline.is_some() || raw.compare.is_some() {
            err(at.clone(), format!("check `{name}`: `burn_rate` judges against its objective; it takes no `baseline` or `compare`"));
        }
    }
    if let Some(w) = raw.weight {
        if !(w >= 0.0 && w.is_finite()) {
            err(
                path.key("weight"),
                format!("check `{name}`: `weight` must be 0 or more"),
            );
        }
        j.weight = w;
    }
    if let Some(s) = &raw.new_error_signatures {
        let at = path.key("new_error_signatures");
        if source != "loki" {
            err(
                at.clone(),
                format!("check `{name}`: `new_error_signatures` reads logs: use `source: loki`"),
            );
        }
        if s.query.trim().is_empty() {
            err(
                at.key("query"),
                format!("check `{name}`: `new_error_signatures.query` must not be empty"),
            );
        }
        if has_query {
            err(path.key("query"), format!("check `{name}`: a new_error_signatures check reads `new_error_signatures.query`, not `query`"));
        }
        j.new_error_signatures = Some(s.query.clone());
    }
    j
}

/// The `for` of each level as written (burn-rate and compare checks write
/// levels with `for` only).
pub fn for_of(levels: [Option<Duration>; 3]) -> [Millis; 3] {
    levels.map(|d| d.map_or(0, saturating_millis))
}
