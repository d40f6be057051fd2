//! Reading a check's source at a tick, through the [`Sources`] built from
//! the configuration: the new interval of a query check on its step grid
//! (in chunks its source accepts), or one live probe. A probe that failed
//! by the service's doing is a failed sample; one that failed on the
//! guardian's side (or that cannot be attributed) is
//! [`Reading::Inconclusive`], never a failed sample. A check with `logs`
//! also reads its log lines, kept as evidence ([`TickSources::evidence`]).

use super::tick::variables;
use crate::config::{CheckSpec, Service};
use crate::context::Context;
use crate::engine::Sample;
use crate::model::{Millis, Release};
use crate::section::saturating_millis;
use crate::sources::probe::Stat;
use crate::sources::scrape::{query_range_ms, ScrapeConfig, ScrapeView};
use crate::sources::{LogLine, LogQuery, RangeQuery, RangeSource, Reads, SeriesSet, Sources};
use crate::telemetry::SourceLabels;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// What a source gave for one check at this tick.
pub enum Reading {
    /// Nothing to judge: a range check whose window holds no new step yet,
    /// or a probe at a catch-up tick past the watch window.
    NothingNew,
    /// Nothing can be judged: the source failed (`until` None: the window is
    /// read again next tick) or answered no data (`until`: the window is done).
    Inconclusive {
        reason: String,
        at: Millis,
        until: Option<Millis>,
    },
    /// Samples to judge.
    Series {
        series: SeriesSet,
        /// The grid of a range query (gaps reset pending levels); None for probes.
        step: Option<Millis>,
        window_start: Millis,
        /// The last grid point read (range checks).
        until: Option<Millis>,
        /// Why a probe failed, for the decision's reason.
        note: Option<String>,
    },
}

impl Reading {
    fn failed(reason: impl Into<String>, at: Millis) -> Self {
        Self::Inconclusive {
            reason: reason.into(),
            at,
            until: None,
        }
    }
}

/// Everything one tick needs to read its checks' sources.
pub struct TickSources<'a> {
    ctx: &'a Context,
    release: &'a Release,
    service: &'a Service,
    sources: Arc<Sources>,
    vars: BTreeMap<String, String>,
    now: Millis,
    window_end: Millis,
}

impl<'a> TickSources<'a> {
    pub fn new(ctx: &'a Context, release: &'a Release, service: &'a Service, now: Millis) -> Self {
        Self {
            ctx,
            release,
            service,
            sources: ctx.sources(),
            vars: variables(release, service),
            now,
            window_end: release
                .started_at
                .saturating_add(service.cadence_for(release).length()),
        }
    }

    /// Reads one check; `evaluated_until` is where its last reading ended.
    pub async fn read(&self, spec: &CheckSpec, evaluated_until: Option<Millis>) -> Reading {
        match spec.source.reads {
            Reads::Query => match self.sources.range(spec.source_name()) {
                None => Reading::failed(
                    format!("no [sources.{}] is configured", spec.source_name()),
                    self.now,
                ),
                Some(Err(e)) => Reading::failed(e.clone(), self.now),
                Some(Ok(source)) => {
                    self.read_range(source.as_ref(), spec, evaluated_until)
                        .await
                }
            },
            Reads::Scrape => {
                let name = spec.scrape.as_deref().unwrap_or("");
                let Some(cfg) = self.service.scrape(name) else {
                    return Reading::failed(
                        format!("scrape {name:?} is not defined for this service"),
                        self.now,
                    );
                };
                // The watch holds its targets from its start (`scrape_holds`);
                // holding again here is the same target.
                let view = ScrapeView {
                    target: self.ctx.scrapes.hold(cfg, scrape_retention(self.service)),
                };
                self.read_range(&view, spec, evaluated_until).await
            }
            // Probes measure live, so only inside the window: not at a retry
            // tick after it, nor at a catch-up tick long after it.
            Reads::Probe if self.past_window() => Reading::NothingNew,
            Reads::Probe => self.probe(spec).await,
        }
    }

    /// The log lines a check with `logs` keeps as evidence: its log query
    /// over the interval this tick reads (`[from, now)`, within the watch
    /// window). None when it has no `logs`, nothing new is to be read, or
    /// the read failed (the lines of the previous reading stay; a failure
    /// is logged, and never judged).
    pub async fn evidence(
        &self,
        spec: &CheckSpec,
        evaluated_until: Option<Millis>,
    ) -> Option<Vec<LogLine>> {
        let logs = spec.logs.as_ref()?;
        let Some(Ok(source)) = self.sources.range(spec.source_name()) else {
            return None;
        };
        let start = evaluated_until
            .map(|u| u.saturating_add(1))
            .unwrap_or(self.release.started_at);
        let end = self.now.min(self.window_end);
        if end <= start {
            return None;
        }
        let q = LogQuery {
            query: source.render(&logs.query, &self.vars),
            start,
            end,
            limit: logs.limit,
            direction: logs.direction,
        };
        let _permit = self.ctx.source_permits.acquire().await;
        match source.query_logs(&q).await {
            Ok(lines) => Some(lines),
            Err(e) => {
                tracing::warn!(release = %self.release.id, check = %spec.name, error = %e, "cannot read the check's log lines");
                None
            }
        }
    }

    /// Reads log lines through `source` (under the shared bound on source
    /// requests; errors counted like range reads').
    pub(super) async fn logs(
        &self,
        source: &dyn RangeSource,
        q: &LogQuery,
    ) -> Result<Vec<LogLine>, String> {
        let labels = SourceLabels {
            source: source.name().into(),
        };
        let permit = self.ctx.source_permits.acquire().await;
        let t0 = Instant::now();
        let res = source.query_logs(q).await;
        drop(permit);
        let telemetry = &self.ctx.telemetry;
        telemetry
            .source_latency
            .get_or_create(&labels)
            .observe(t0.elapsed().as_secs_f64());
        res.map_err(|e| {
            telemetry.source_errors.get_or_create(&labels).inc();
            e.to_string()
        })
    }

    /// True when this tick runs after the watch window: a retry scheduled
    /// past its end, or a (late) tick more than a minute past it.
    fn past_window(&self) -> bool {
        let due = self.release.next_check_at.unwrap_or(self.now);
        let tolerance = self
            .service
            .cadence_for(self.release)
            .last_every()
            .min(60_000);
        due > self.window_end || self.now.saturating_sub(self.window_end) > tolerance
    }

    async fn probe(&self, spec: &CheckSpec) -> Reading {
        let Some(cfg) = spec.probe.as_deref().and_then(|p| self.service.probe(p)) else {
            let name = spec.probe.as_deref().unwrap_or("");
            return Reading::failed(
                format!("probe {name:?} is not defined for this service"),
                self.now,
            );
        };
        let burst = self
            .sources
            .prober
            .burst(cfg, &self.ctx.source_permits)
            .await;
        let telemetry = &self.ctx.telemetry;
        let labels = SourceLabels {
            source: "probe".into(),
        };
        if burst.failed > 0 || burst.guardian_failure.is_some() {
            telemetry.source_errors.get_or_create(&labels).inc();
        }
        if burst.judged() == 0 {
            // Not the service's doing: no sample, no latency recorded.
            let why = burst
                .guardian_failure
                .as_deref()
                .unwrap_or("nothing was sent");
            return Reading::failed(
                format!(
                    "probe `{}`: {why}; not counted against the service",
                    cfg.name
                ),
                self.now,
            );
        }
        let sample = match spec.stat {
            // The tick as one sample: failed if any request failed by the
            // service's doing, else the slowest request's latency.
            None if burst.failed > 0 => Sample::failed(self.now),
            None => Sample::ok(self.now, burst.max_latency.as_secs_f64()),
            Some(stat) => match burst.stat(stat) {
                Some(v) if stat == Stat::SuccessRatio || burst.passed > 0 => {
                    Sample::ok(self.now, v)
                }
                // Percentiles are of passed requests; none passed.
                _ => Sample::failed(self.now),
            },
        };
        telemetry.record_probe(
            &format!("{}/{}", self.service.name, cfg.name),
            &self.service.environment,
            &burst.latencies,
        );
        telemetry
            .source_latency
            .get_or_create(&labels)
            .observe(burst.max_latency.as_secs_f64());
        Reading::Series {
            series: vec![(cfg.name.clone(), vec![sample])],
            step: None,
            window_start: self.now,
            until: None,
            note: burst.describe_failures(),
        }
    }

    /// Reads the interval since `evaluated_until` (or the release's start)
    /// on the check's step grid, in chunks the source accepts. Only the
    /// watch window is judged: after a long outage the catch-up tick reads
    /// up to the window's end, not beyond.
    async fn read_range(
        &self,
        source: &dyn RangeSource,
        spec: &CheckSpec,
        evaluated_until: Option<Millis>,
    ) -> Reading {
        let from = evaluated_until
            .map(|u| u.saturating_add(1))
            .unwrap_or(self.release.started_at);
        let to = self.now.min(self.window_end);
        let step = saturating_millis(spec.step).max(1);
        let start = align_up(from, step);
        let end = to.div_euclid(step) * step;
        if end < start {
            return Reading::NothingNew;
        }
        let query = source.render(spec.query.as_deref().unwrap_or_default(), &self.vars);
        let merged = match self.fetch(source, &query, start, end, step).await {
            Ok(m) => m,
            Err(e) => return Reading::failed(e, start),
        };
        if merged.values().all(Vec::is_empty) {
            return Reading::Inconclusive {
                reason: "the query returned no data".into(),
                at: start,
                until: Some(end),
            };
        }
        Reading::Series {
            series: merged.into_iter().collect(),
            step: Some(step),
            window_start: start,
            until: Some(end),
            note: None,
        }
    }

    /// The range source of a query check (Err: why it cannot be read).
    pub(super) fn range_source(&self, spec: &CheckSpec) -> Result<Arc<dyn RangeSource>, String> {
        match self.sources.range(spec.source.name) {
            None => Err(format!("no [sources.{}] is configured", spec.source.name)),
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(source)) => Ok(source.clone()),
        }
    }

    /// The tick's template variables.
    pub(super) fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }

    /// The end of the watch window.
    pub(super) fn window_end(&self) -> Millis {
        self.window_end
    }

    /// The tick's instant.
    pub(super) fn now(&self) -> Millis {
        self.now
    }

    /// The release watched.
    pub(super) fn release(&self) -> &Release {
        self.release
    }

    /// Reads the rendered `query` on the grid `start..=end` (multiples of
    /// `step`), in chunks the source accepts; series by key.
    pub(super) async fn fetch(
        &self,
        source: &dyn RangeSource,
        query: &str,
        start: Millis,
        end: Millis,
        step: Millis,
    ) -> Result<BTreeMap<String, Vec<Sample>>, String> {
        let max_points = source.max_points_per_query().max(1);
        let labels = SourceLabels {
            source: source.name().into(),
        };
        let telemetry = &self.ctx.telemetry;
        let mut merged: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
        let mut chunk_start = start;
        while chunk_start <= end {
            let chunk_end =
                end.min(chunk_start.saturating_add((max_points - 1).saturating_mul(step)));
            let q = RangeQuery {
                query: query.to_string(),
                start: chunk_start,
                end: chunk_end,
                step,
            };
            let permit = self.ctx.source_permits.acquire().await;
            let t0 = Instant::now();
            let res = source.query_range(&q).await;
            drop(permit);
            telemetry
                .source_latency
                .get_or_create(&labels)
                .observe(t0.elapsed().as_secs_f64());
            match res {
                Ok(series) => {
                    for (k, samples) in series {
                        merged.entry(k).or_default().extend(samples);
                    }
                }
                Err(e) => {
                    telemetry.source_errors.get_or_create(&labels).inc();
                    return Err(e.to_string());
                }
            }
            chunk_start = chunk_end.saturating_add(step);
            if chunk_end == Millis::MAX {
                break;
            }
        }
        Ok(merged)
    }
}

/// How long a service's scraped samples are kept: two of its longest tick
/// intervals (a tick that failed reads its interval again at the next) plus
/// the longest range its scrape queries read and one step.
pub fn scrape_retention(service: &Service) -> Millis {
    let (range, step) = service
        .checks
        .iter()
        .filter(|c| c.source.reads == Reads::Scrape)
        .map(|c| {
            (
                query_range_ms(c.query.as_deref().unwrap_or_default()),
                saturating_millis(c.step),
            )
        })
        .fold((0, 0), |(r, s), (r2, s2)| (r.max(r2), s.max(s2)));
    service
        .cadence
        .max_every()
        .saturating_mul(2)
        .saturating_add(range)
        .saturating_add(step)
}

/// The scrape targets a watch of `service` holds while it runs, with the
/// samples it keeps of each.
pub fn scrape_holds(service: &Service) -> Vec<(&ScrapeConfig, Millis)> {
    let retention = scrape_retention(service);
    service
        .scrapes
        .iter()
        .filter(|s| {
            service.checks.iter().any(|c| {
                c.source.reads == Reads::Scrape && c.scrape.as_deref() == Some(s.name.as_str())
            })
        })
        .map(|s| (s, retention))
        .collect()
}

/// The first multiple of `step` at or after `t`.
pub fn align_up(t: Millis, step: Millis) -> Millis {
    let r = t.rem_euclid(step);
    if r == 0 {
        t
    } else {
        t.saturating_add(step - r)
    }
}

#[cfg(test)]
mod tests {
    use super::align_up;

    #[test]
    fn aligns_to_the_step_grid() {
        assert_eq!(align_up(0, 15_000), 0);
        assert_eq!(align_up(1, 15_000), 15_000);
        assert_eq!(align_up(15_000, 15_000), 15_000);
        assert_eq!(align_up(15_001, 15_000), 30_000);
        assert_eq!(align_up(i64::MAX - 1, 1_000), i64::MAX);
    }
}
