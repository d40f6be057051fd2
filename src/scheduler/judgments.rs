//! Reading a check that judges more than its own series against
//! thresholds: a traffic floor (`min_traffic`), a baseline (`baseline`:
//! canary vs stable, `offset`, `before_release`), a statistical comparison
//! (`compare`) and burn rates (`burn_rate`); new log error signatures
//! (`new_error_signatures`) are read in `signatures.rs`. Each reads its extra series
//! through the same range source, hands the engine samples to judge, and
//! says what it judged (the evidence every decision of the check carries).

use super::read::{align_up, Reading, TickSources};
use crate::config::judgment::{Baseline, Compare};
use crate::config::CheckSpec;
use crate::engine::{align, burn, stats, Sample};
use crate::model::{rfc3339, Millis};
use crate::section::saturating_millis;
use crate::sources::{RangeSource, Reads};
use serde_json::{json, Map, Value};

/// A reading and what it judged.
pub struct Judged {
    pub reading: Reading,
    /// The query as sent (template variables resolved), for query checks.
    pub query: Option<String>,
    /// What the judgment found beyond the samples (baseline, traffic,
    /// p-value, burn rates).
    pub evidence: Map<String, Value>,
    /// The value to show for the check instead of its last sample's (a
    /// comparison's effect, a burn rate).
    pub value: Option<f64>,
    /// The check's own query answered no data (`no_data` applies).
    pub no_data: bool,
}

impl Judged {
    pub(super) fn new(reading: Reading, query: Option<String>) -> Self {
        Self {
            reading,
            query,
            evidence: Map::new(),
            value: None,
            no_data: false,
        }
    }

    pub(super) fn failed(reason: String, at: Millis, query: Option<String>) -> Self {
        Self::new(
            Reading::Inconclusive {
                reason,
                at,
                until: None,
            },
            query,
        )
    }

    /// Read, but nothing can be judged: the interval is done.
    fn unjudged(
        reason: String,
        at: Millis,
        until: Millis,
        query: String,
        evidence: Map<String, Value>,
    ) -> Self {
        Self {
            evidence,
            ..Self::new(
                Reading::Inconclusive {
                    reason,
                    at,
                    until: Some(until),
                },
                Some(query),
            )
        }
    }
}

/// Reads one check at this tick (see the module doc).
pub async fn read(
    sources: &TickSources<'_>,
    spec: &CheckSpec,
    evaluated_until: Option<Millis>,
) -> Judged {
    let j = &spec.judgment;
    let plain = j.min_traffic.is_none()
        && j.baseline.is_none()
        && j.compare.is_none()
        && j.burn_rate.is_none();
    if spec.source.reads != Reads::Query || (plain && j.new_error_signatures.is_none()) {
        let query = (spec.source.reads == Reads::Query)
            .then(|| sources.range_source(spec).ok())
            .flatten()
            .map(|s| s.render(spec.query.as_deref().unwrap_or_default(), sources.vars()));
        let reading = sources.read(spec, evaluated_until).await;
        let no_data = spec.source.reads == Reads::Query
            && matches!(reading, Reading::Inconclusive { until: Some(_), .. });
        return Judged {
            no_data,
            ..Judged::new(reading, query)
        };
    }
    if let Some(template) = &j.new_error_signatures {
        return super::signatures::read(sources, spec, template, evaluated_until).await;
    }
    let source = match sources.range_source(spec) {
        Ok(s) => s,
        Err(e) => return Judged::failed(e, sources.now(), None),
    };
    let release = sources.release();
    let step = saturating_millis(spec.step).max(1);
    let from = evaluated_until
        .map(|u| u.saturating_add(1))
        .unwrap_or(release.started_at);
    let start = align_up(from, step);
    let end = sources.now().min(sources.window_end()).div_euclid(step) * step;
    let query = source.render(spec.query.as_deref().unwrap_or_default(), sources.vars());
    if end < start {
        return Judged::new(Reading::NothingNew, Some(query));
    }
    let ctx = Ctx {
        sources,
        source: source.as_ref(),
        query,
        step,
        start,
        end,
    };
    if let Some(b) = &j.burn_rate {
        return ctx.burn_rate(b).await;
    }
    if let (Some(c), Some(b)) = (&j.compare, &j.baseline) {
        return ctx.compare(c, b).await;
    }
    ctx.thresholds(spec).await
}

/// One check's reading at this tick: where and what it reads.
struct Ctx<'a, 'b> {
    sources: &'a TickSources<'b>,
    source: &'a dyn RangeSource,
    /// The check's query, rendered.
    query: String,
    step: Millis,
    /// The new grid points: `start..=end`.
    start: Millis,
    end: Millis,
}

type Series = Vec<(String, Vec<Sample>)>;

impl Ctx<'_, '_> {
    async fn fetch(&self, query: &str, start: Millis, end: Millis) -> Result<Series, String> {
        let start = align_up(start, self.step);
        let end = end.div_euclid(self.step) * self.step;
        if end < start {
            return Ok(Vec::new());
        }
        let m = self
            .sources
            .fetch(self.source, query, start, end, self.step)
            .await?;
        Ok(m.into_iter().filter(|(_, s)| !s.is_empty()).collect())
    }

    /// Reads `query` at the interval's own instants `offset` earlier (not
    /// re-aligned: an offset need not be a multiple of the step).
    async fn fetch_shifted(
        &self,
        query: &str,
        start: Millis,
        end: Millis,
        offset: Millis,
    ) -> Result<Series, String> {
        let m = self
            .sources
            .fetch(self.source, query, start - offset, end - offset, self.step)
            .await?;
        Ok(m.into_iter().filter(|(_, s)| !s.is_empty()).collect())
    }

    fn failed(&self, e: String) -> Judged {
        Judged::failed(e, self.start, Some(self.query.clone()))
    }

    fn no_data(&self) -> Judged {
        Judged {
            no_data: true,
            ..Judged::unjudged(
                "the query returned no data".into(),
                self.start,
                self.end,
                self.query.clone(),
                Map::new(),
            )
        }
    }

    fn series(&self, series: Series, evidence: Map<String, Value>, value: Option<f64>) -> Judged {
        Judged {
            evidence,
            value,
            ..Judged::new(
                Reading::Series {
                    series,
                    step: Some(self.step),
                    window_start: self.start,
                    until: Some(self.end),
                    note: None,
                },
                Some(self.query.clone()),
            )
        }
    }

    /// The baseline's query, rendered (its own, else the check's).
    fn baseline_query(&self, b: &Baseline) -> String {
        match &b.query {
            Some(q) => self.source.render(q, self.sources.vars()),
            None => self.query.clone(),
        }
    }

    /// Thresholds, with a baseline and a traffic floor when given.
    async fn thresholds(&self, spec: &CheckSpec) -> Judged {
        let mut series = match self.fetch(&self.query, self.start, self.end).await {
            Ok(s) if s.is_empty() => return self.no_data(),
            Ok(s) => s,
            Err(e) => return self.failed(e),
        };
        let mut evidence = Map::new();
        if let Some(b) = &spec.judgment.baseline {
            let bq = self.baseline_query(b);
            let mut about = json!({ "query": bq });
            if b.before_release {
                let release = self.sources.release().started_at;
                let len = (self.end - release).max(self.step);
                let base = match self.fetch(&bq, release - len, release).await {
                    Ok(s) => align::mean(&s),
                    Err(e) => return self.failed(format!("baseline: {e}")),
                };
                about["before_release"] = json!({ "from": rfc3339(release - len), "to": rfc3339(release), "mean": finite(base) });
                if base.is_nan() {
                    return Judged::unjudged(
                        "the baseline before the release returned no data".into(),
                        self.start,
                        self.end,
                        self.query.clone(),
                        obj("baseline", about),
                    );
                }
                align::attach_constant(&mut series, base);
            } else {
                let base = match self
                    .fetch_shifted(&bq, self.start, self.end, b.offset)
                    .await
                {
                    Ok(s) => s,
                    Err(e) => return self.failed(format!("baseline: {e}")),
                };
                if b.offset > 0 {
                    about["offset"] = json!(humantime::format_duration(
                        std::time::Duration::from_millis(b.offset as u64)
                    )
                    .to_string());
                }
                if align::attach_baseline(&mut series, &base, b.offset) == 0 {
                    return Judged::unjudged(
                        "the baseline returned no data for these instants".into(),
                        self.start,
                        self.end,
                        self.query.clone(),
                        obj("baseline", about),
                    );
                }
            }
            evidence.insert("baseline".into(), about);
        }
        if let Some((tq, floor)) = &spec.judgment.min_traffic {
            let tq = self.source.render(tq, self.sources.vars());
            let traffic = match self.fetch(&tq, self.start, self.end).await {
                Ok(s) => s,
                Err(e) => return self.failed(format!("min_traffic: {e}")),
            };
            let g = align::gate_traffic(&mut series, &traffic, *floor);
            let mut about =
                json!({ "query": tq, "above": floor, "judged": g.kept, "left_out": g.dropped });
            if let Some((at, v)) = g.last_low {
                about["last_low"] = json!({ "at": rfc3339(at), "value": finite(v) });
            }
            if g.kept == 0 {
                let reason = match g.last_low {
                    Some((_, v)) if v.is_finite() => format!(
                        "traffic {} is not above the floor {} (min_traffic): not judged",
                        crate::model::format_value(v),
                        crate::model::format_value(*floor)
                    ),
                    _ => "the min_traffic query returned no data: not judged".to_string(),
                };
                evidence.insert("min_traffic".into(), about);
                return Judged::unjudged(
                    reason,
                    self.start,
                    self.end,
                    self.query.clone(),
                    evidence,
                );
            }
            evidence.insert("min_traffic".into(), about);
        }
        self.series(series, evidence, None)
    }

    /// A Mann-Whitney comparison of the last `window` with the baseline,
    /// once per tick, judged at the tick's last grid point.
    async fn compare(&self, c: &Compare, b: &Baseline) -> Judged {
        let release = self.sources.release().started_at;
        let from = (self.end - c.window).max(release);
        let current = match self.fetch(&self.query, from, self.end).await {
            Ok(s) if s.is_empty() => return self.no_data(),
            Ok(s) => s,
            Err(e) => return self.failed(e),
        };
        let bq = self.baseline_query(b);
        let (bfrom, bto) = if b.before_release {
            (release - (self.end - from).max(self.step), release)
        } else {
            (from - b.offset, self.end - b.offset)
        };
        let base = if b.before_release {
            self.fetch(&bq, bfrom, bto).await
        } else {
            let from = align_up(from, self.step);
            self.fetch_shifted(&bq, from, self.end, b.offset).await
        };
        let base = match base {
            Ok(s) => s,
            Err(e) => return self.failed(format!("baseline: {e}")),
        };
        let values = |s: &Series| -> Vec<f64> {
            s.iter()
                .flat_map(|(_, v)| v)
                .filter(|x| x.ok)
                .map(|x| x.value)
                .collect()
        };
        let (cur, bas) = (values(&current), values(&base));
        let mut evidence = Map::new();
        evidence.insert(
            "compare".into(),
            json!({
                "test": "mann_whitney",
                "confidence": c.spec.confidence,
                "tolerance": c.spec.tolerance,
                "direction": c.spec.direction,
                "current": { "from": rfc3339(from), "to": rfc3339(self.end), "n": cur.len() },
                "baseline": { "query": bq, "from": rfc3339(bfrom), "to": rfc3339(bto), "n": bas.len() },
            }),
        );
        let Some(r) = stats::mann_whitney(&cur, &bas, &c.spec) else {
            let reason = format!(
                "too few samples to compare ({} current, {} baseline; {} each needed)",
                cur.len(),
                bas.len(),
                stats::MIN_SAMPLES
            );
            return Judged::unjudged(reason, self.end, self.end, self.query.clone(), evidence);
        };
        if let Some(Value::Object(m)) = evidence.get_mut("compare") {
            m.insert("p_value".into(), json!(r.p_value));
            m.insert("effect".into(), json!(finite(r.effect)));
            m.insert("shift".into(), json!(r.shift));
            m.insert("current_median".into(), json!(r.current_median));
            m.insert("baseline_median".into(), json!(r.baseline_median));
            m.insert("worse".into(), json!(r.worse));
        }
        let sample = Sample::ok(self.end, if r.worse { 1.0 } else { 0.0 });
        Judged {
            evidence,
            value: Some(r.effect).filter(|e| e.is_finite()),
            ..Judged::new(
                Reading::Series {
                    series: vec![("compare".into(), vec![sample])],
                    step: None,
                    window_start: self.end,
                    until: Some(self.end),
                    note: None,
                },
                Some(self.query.clone()),
            )
        }
    }

    /// Burn rates at every new grid point, over windows reaching back
    /// before the interval.
    async fn burn_rate(&self, b: &crate::config::judgment::BurnRate) -> Judged {
        let look = burn::lookback(&b.windows);
        let ratio = match self
            .fetch(&self.query, self.start.saturating_sub(look), self.end)
            .await
        {
            Ok(s) if s.iter().all(|(_, v)| v.iter().all(|x| x.ts < self.start)) => {
                return self.no_data()
            }
            Ok(s) => s,
            Err(e) => return self.failed(e),
        };
        let mut worst: Option<burn::BurnPoint> = None;
        let series: Series = ratio
            .iter()
            .map(|(k, samples)| {
                let points = burn::evaluate(samples, b.objective, &b.windows, self.start);
                if let Some(last) = points.last() {
                    if worst.as_ref().is_none_or(|w| {
                        last.level > w.level
                            || (last.level == w.level && last.rates[0].0 > w.rates[0].0)
                    }) {
                        worst = Some(last.clone());
                    }
                }
                (
                    k.clone(),
                    points
                        .iter()
                        .map(|p| Sample::ok(p.ts, burn::level_value(p.level)))
                        .collect(),
                )
            })
            .collect();
        let mut evidence = Map::new();
        let windows: Vec<Value> = b
            .windows
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let rates = worst.as_ref().map(|p| p.rates[i]);
                json!({
                    "long": humantime::format_duration(std::time::Duration::from_millis(w.long_ms as u64)).to_string(),
                    "short": humantime::format_duration(std::time::Duration::from_millis(w.short_ms as u64)).to_string(),
                    "factor": w.factor,
                    "level": w.level,
                    "long_burn": rates.map(|r| finite(r.0)),
                    "short_burn": rates.map(|r| finite(r.1)),
                })
            })
            .collect();
        evidence.insert(
            "burn_rate".into(),
            json!({ "objective": b.objective, "at": worst.as_ref().map(|p| rfc3339(p.ts)), "windows": windows }),
        );
        let value = worst.and_then(|p| Some(p.rates[0].0).filter(|v| v.is_finite()));
        self.series(series, evidence, value)
    }
}

fn obj(key: &str, v: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(key.into(), v);
    m
}

/// A number for JSON: NaN and infinities become null.
pub fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}
