//! One tick of one watch: read every check's new samples, run the engine,
//! and turn what changed into decisions, messages and a rollback request.
//! Nothing is written here; the watch commits the result in one transaction.

use super::messages;
use crate::app::Context;
use crate::config::{CheckSpec, Service, Settings, SourceKind};
use crate::engine::{self, CheckTracker, Sample, Transition};
use crate::model::{
    format_value, CheckRecord, CheckState, Decision, Level, Message, Millis, Release,
};
use crate::sources::probe::Prober;
use crate::sources::prometheus::PrometheusSource;
use crate::sources::{template, RangeQuery, RangeSource, SeriesSet, SourceError};
use crate::telemetry::{SourceLabels, StateLabels};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// Prometheus refuses more than 11,000 points per series in one query.
pub const MAX_POINTS_PER_QUERY: i64 = 11_000;

/// What a tick produced.
#[derive(Debug, Default)]
pub struct TickOutput {
    pub checks: Vec<CheckRecord>,
    pub decisions: Vec<Decision>,
    pub messages: Vec<Message>,
    /// The first transition into the rollback level during this tick, if any:
    /// (instant, check, reason).
    pub rollback: Option<(Millis, String, String)>,
}

/// Evaluates every check of `service` for `release` at `now`.
pub async fn evaluate(
    ctx: &Context,
    settings: &Settings,
    release: &Release,
    service: &Service,
    previous: Vec<CheckRecord>,
    now: Millis,
) -> TickOutput {
    let mut previous: HashMap<String, CheckRecord> =
        previous.into_iter().map(|r| (r.name.clone(), r)).collect();
    let vars = variables(release, service);
    let prometheus = settings
        .config
        .sources
        .prometheus
        .as_ref()
        .map(|cfg| PrometheusSource::new(ctx.http.clone(), cfg));
    let prober = Prober::new(ctx.probe_http.clone());
    // Only the watch window is judged: after a long outage the catch-up tick
    // reads up to the window's end, not beyond, and takes no live probes.
    let window_end = release.started_at + service.cadence.length();
    let horizon = now.min(window_end);
    let mut out = TickOutput::default();
    for spec in &service.checks {
        let prev = previous.remove(&spec.name);
        let mut tracker: CheckTracker = prev
            .as_ref()
            .and_then(|r| serde_json::from_value(r.tracker.clone()).ok())
            .unwrap_or_default();
        let prev_state = prev
            .as_ref()
            .map(|r| r.state)
            .unwrap_or(CheckState::Pending);
        let prev_value = prev.as_ref().and_then(|r| r.value);
        let mut evaluated_until = prev.as_ref().and_then(|r| r.evaluated_until);
        let reading: Reading = match spec.source {
            SourceKind::Prometheus => match &prometheus {
                None => Reading::Inconclusive {
                    reason: "no [sources.prometheus] is configured".into(),
                    at: now,
                },
                Some(Err(e)) => Reading::Inconclusive {
                    reason: e.clone(),
                    at: now,
                },
                Some(Ok(source)) => {
                    let start_from = evaluated_until.map(|u| u + 1).unwrap_or(release.started_at);
                    read_range(ctx, source, spec, &vars, start_from, horizon).await
                }
            },
            // A tick that runs more than one interval after the window's
            // end is a catch-up after an outage: a live probe would judge
            // the service outside the window.
            SourceKind::Probe if now - window_end > service.cadence.last_every() => {
                Reading::NothingNew
            }
            SourceKind::Probe => {
                let probe = spec.probe.as_deref().and_then(|p| service.probe(p));
                match probe {
                    None => Reading::Inconclusive {
                        reason: format!(
                            "probe {:?} is not defined for this service",
                            spec.probe.as_deref().unwrap_or("")
                        ),
                        at: now,
                    },
                    Some(cfg) => {
                        let result = {
                            let _permit = ctx.source_permits.acquire().await;
                            prober.probe(cfg).await
                        };
                        let key = format!("{}/{}", service.name, cfg.name);
                        ctx.telemetry.record_probe(&key, result.latency);
                        ctx.telemetry
                            .source_latency
                            .get_or_create(&SourceLabels {
                                source: "probe".into(),
                            })
                            .observe(result.latency.as_secs_f64());
                        let sample = if result.ok {
                            Sample::ok(now, result.latency.as_secs_f64())
                        } else {
                            ctx.telemetry
                                .source_errors
                                .get_or_create(&SourceLabels {
                                    source: "probe".into(),
                                })
                                .inc();
                            Sample::failed(now)
                        };
                        Reading::Series {
                            series: vec![(cfg.name.clone(), vec![sample])],
                            step: None,
                            window_start: now,
                            until: None,
                            note: result.error,
                        }
                    }
                }
            }
            SourceKind::Loki | SourceKind::Scrape => Reading::Inconclusive {
                reason: format!(
                    "source {:?} is not available in this version",
                    spec.source.as_str()
                ),
                at: now,
            },
        };
        let (state, level, value) = match reading {
            Reading::NothingNew => (prev_state, tracker.level, prev_value),
            Reading::Inconclusive { reason, at } => {
                if prev_state != CheckState::Inconclusive {
                    out.decisions.push(Decision {
                        at,
                        check: Some(spec.name.clone()),
                        level: None,
                        action: "inconclusive".into(),
                        reason: format!("{} is inconclusive: {reason}", spec.name),
                    });
                    out.messages.push(messages::inconclusive(
                        release,
                        &spec.name,
                        &format!("{} is inconclusive: {reason}", spec.name),
                        at,
                    ));
                }
                (CheckState::Inconclusive, tracker.level, prev_value)
            }
            Reading::Empty { until, at } => {
                evaluated_until = Some(until);
                if prev_state != CheckState::Inconclusive {
                    let reason =
                        format!("{} is inconclusive: the query returned no data", spec.name);
                    out.decisions.push(Decision {
                        at,
                        check: Some(spec.name.clone()),
                        level: None,
                        action: "inconclusive".into(),
                        reason: reason.clone(),
                    });
                    out.messages
                        .push(messages::inconclusive(release, &spec.name, &reason, at));
                }
                (CheckState::Inconclusive, tracker.level, prev_value)
            }
            Reading::Series {
                series,
                step,
                window_start,
                until,
                note,
            } => {
                let outcome =
                    engine::evaluate(&spec.rule, &mut tracker, &series, step, window_start);
                if let Some(u) = until {
                    evaluated_until = Some(u);
                }
                for t in &outcome.transitions {
                    record_transition(&mut out, release, spec, t, note.as_deref());
                }
                (outcome.state(), outcome.level, outcome.value.or(prev_value))
            }
        };
        ctx.telemetry
            .check_results
            .get_or_create(&StateLabels {
                state: state.as_str().into(),
            })
            .inc();
        out.checks.push(CheckRecord {
            name: spec.name.clone(),
            state,
            level,
            value,
            tracker: serde_json::to_value(&tracker).unwrap_or_default(),
            evaluated_until,
            updated_at: now,
        });
    }
    out
}

/// What a source gave for one check at this tick.
enum Reading {
    /// A range check whose window holds no new step yet.
    NothingNew,
    /// The source failed: nothing is judged and the window is read again next tick.
    Inconclusive { reason: String, at: Millis },
    /// The source answered with no series for the window.
    Empty { until: Millis, at: Millis },
    Series {
        series: SeriesSet,
        step: Option<Millis>,
        window_start: Millis,
        until: Option<Millis>,
        note: Option<String>,
    },
}

/// Reads `[from, now]` on the check's step grid, in chunks Prometheus accepts.
async fn read_range(
    ctx: &Context,
    source: &PrometheusSource,
    spec: &CheckSpec,
    vars: &BTreeMap<String, String>,
    from: Millis,
    now: Millis,
) -> Reading {
    let step = (spec.step.as_millis() as Millis).max(1);
    let start = align_up(from, step);
    let end = now.div_euclid(step) * step;
    if end < start {
        return Reading::NothingNew;
    }
    let query = template::render(spec.query.as_deref().unwrap_or_default(), vars);
    let mut merged: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    let mut chunk_start = start;
    while chunk_start <= end {
        let chunk_end = end.min(chunk_start + (MAX_POINTS_PER_QUERY - 1) * step);
        let q = RangeQuery {
            query: query.clone(),
            start: chunk_start,
            end: chunk_end,
            step,
        };
        let permit = ctx.source_permits.acquire().await;
        let t0 = Instant::now();
        let res = source.query_range(&q).await;
        drop(permit);
        ctx.telemetry
            .source_latency
            .get_or_create(&SourceLabels {
                source: source.name().into(),
            })
            .observe(t0.elapsed().as_secs_f64());
        match res {
            Ok(series) => {
                for (k, samples) in series {
                    merged.entry(k).or_default().extend(samples);
                }
            }
            Err(e) => {
                ctx.telemetry
                    .source_errors
                    .get_or_create(&SourceLabels {
                        source: source.name().into(),
                    })
                    .inc();
                return Reading::Inconclusive {
                    reason: describe(&e),
                    at: start,
                };
            }
        }
        chunk_start = chunk_end + step;
    }
    if merged.values().all(Vec::is_empty) {
        return Reading::Empty {
            until: end,
            at: start,
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

fn describe(e: &SourceError) -> String {
    e.to_string()
}

/// The first multiple of `step` at or after `t`.
pub fn align_up(t: Millis, step: Millis) -> Millis {
    let r = t.rem_euclid(step);
    if r == 0 {
        t
    } else {
        t + step - r
    }
}

/// Template variables of a release's queries.
pub fn variables(release: &Release, service: &Service) -> BTreeMap<String, String> {
    let mut vars = service.labels.clone();
    vars.insert("service".into(), release.service.clone());
    vars.insert("environment".into(), release.environment.clone());
    vars.insert("version".into(), release.version.clone());
    vars.insert(
        "previous_version".into(),
        release.previous_version.clone().unwrap_or_default(),
    );
    vars
}

fn record_transition(
    out: &mut TickOutput,
    release: &Release,
    spec: &CheckSpec,
    t: &Transition,
    note: Option<&str>,
) {
    let observed = match (t.value.is_finite(), note) {
        (true, _) => format!("value {}", format_value(t.value)),
        (false, Some(n)) => format!("probe failed ({n})"),
        (false, None) => "no value".into(),
    };
    let reason = if t.to > t.from {
        let cond = spec
            .rule
            .condition(t.to)
            .map(|c| c.describe())
            .unwrap_or_default();
        format!("{} entered {}: {observed}, rule {cond}", spec.name, t.to)
    } else {
        format!(
            "{} went down from {} to {} ({observed})",
            spec.name, t.from, t.to
        )
    };
    out.decisions.push(Decision {
        at: t.at,
        check: Some(spec.name.clone()),
        level: Some(t.to),
        action: "level_changed".into(),
        reason: reason.clone(),
    });
    // Page on the way up (warning and above); tell on recovery from critical.
    if t.to > t.from || (t.to == Level::Ok && t.from >= Level::Critical) {
        out.messages.push(messages::level_changed(
            release, &spec.name, t.to, t.value, &reason, t.at,
        ));
    }
    if t.to == Level::Rollback && out.rollback.as_ref().is_none_or(|(at, _, _)| t.at < *at) {
        out.rollback = Some((t.at, spec.name.clone(), reason));
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
    }
}
