//! What a rule test reads instead of servers: a [`MemorySource`] answering
//! range queries from the case's `input_series` (and log queries from its
//! `log_lines`), and [`ScriptedProbes`] giving each tick's probe results
//! from its `probe_results`.
//!
//! A query is answered by the `input_series` whose query is the same text
//! once both are rendered (template variables replaced as the real source
//! replaces them) and their whitespace collapsed; several entries for one
//! query are several series. A query no entry matches answers no data (and
//! the runner lists it). At an instant `t` a series has the value of its
//! latest sample at or before `t`, as long as that sample is at most 5
//! minutes old (Prometheus' lookback) and no `stale` marker came after it.

use super::notation::Token;
use crate::clock::Clock;
use crate::engine::Sample;
use crate::model::{LogLine, Millis};
use crate::sources::probe::{ProbeConfig, ProbeScript};
use crate::sources::{
    Blame, LogQuery, ProbeResult, RangeQuery, RangeSource, SeriesSet, SourceError,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How far back an instant looks for a sample (Prometheus' default).
pub const LOOKBACK: Millis = 5 * 60_000;

/// One series: samples `interval` apart from instant 0.
#[derive(Debug, Clone)]
pub struct Series {
    pub labels: String,
    pub interval: Millis,
    pub samples: Vec<Token>,
}

impl Series {
    /// The value at `t` (see the module doc).
    pub fn at(&self, t: Millis) -> Option<f64> {
        if t < 0 || self.samples.is_empty() {
            return None;
        }
        let last = ((t / self.interval) as usize).min(self.samples.len() - 1);
        for i in (0..=last).rev() {
            let at = i as Millis * self.interval;
            if t - at > LOOKBACK {
                return None;
            }
            match self.samples[i] {
                Token::Value(v) => return Some(v),
                Token::Stale | Token::Fail => return None,
                Token::Missing => continue,
            }
        }
        None
    }
}

/// A log line of a case, at its instant.
#[derive(Debug, Clone)]
pub struct TimedLine {
    pub at: Millis,
    /// The log query it answers (normalized); None: every log query.
    pub query: Option<String>,
    pub line: String,
}

/// The text a query is matched by: whitespace runs collapsed to one space.
pub fn normalize(query: &str) -> String {
    query.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Serves a case's series under one configured source's name.
pub struct MemorySource {
    /// The configured source: its name, how it renders templates.
    pub real: Arc<dyn RangeSource>,
    /// Series by normalized query.
    pub series: Arc<BTreeMap<String, Vec<Series>>>,
    pub lines: Arc<Vec<TimedLine>>,
    /// Queries asked that no `input_series` matched.
    pub unmatched: Arc<Mutex<BTreeSet<String>>>,
}

#[async_trait::async_trait]
impl RangeSource for MemorySource {
    fn name(&self) -> &'static str {
        self.real.name()
    }

    fn render(&self, template: &str, vars: &BTreeMap<String, String>) -> String {
        self.real.render(template, vars)
    }

    fn max_points_per_query(&self) -> i64 {
        self.real.max_points_per_query()
    }

    async fn query_range(&self, q: &RangeQuery) -> Result<SeriesSet, SourceError> {
        let key = normalize(&q.query);
        let Some(all) = self.series.get(&key) else {
            self.unmatched
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key);
            return Ok(Vec::new());
        };
        let step = q.step.max(1) as usize;
        Ok(all
            .iter()
            .map(|s| {
                let samples = (q.start..=q.end)
                    .step_by(step)
                    .filter_map(|t| s.at(t).map(|v| Sample::ok(t, v)))
                    .collect();
                (s.labels.clone(), samples)
            })
            .collect())
    }

    async fn query_logs(&self, q: &LogQuery) -> Result<Vec<LogLine>, SourceError> {
        let key = normalize(&q.query);
        let mut out: Vec<LogLine> = self
            .lines
            .iter()
            .filter(|l| l.at >= q.start && l.at < q.end)
            .filter(|l| l.query.as_ref().is_none_or(|lq| *lq == key))
            .map(|l| LogLine {
                ts: (l.at as i128 * 1_000_000).to_string(),
                stream: "{}".into(),
                line: l.line.clone(),
            })
            .collect();
        if q.direction == crate::sources::Direction::Backward {
            out.reverse();
        }
        out.truncate(q.limit as usize);
        Ok(out)
    }
}

/// Each probe's results over time: one token per `interval` from instant 0.
pub struct ScriptedProbes {
    pub clock: Arc<dyn Clock>,
    /// By probe name.
    pub probes: BTreeMap<String, Series>,
}

impl ProbeScript for ScriptedProbes {
    fn burst(&self, cfg: &ProbeConfig) -> Vec<ProbeResult> {
        let now = self.clock.now();
        let token = self.probes.get(&cfg.name).and_then(|s| {
            (now >= 0)
                .then(|| s.samples.get((now / s.interval) as usize).copied())
                .flatten()
        });
        let result = match token {
            Some(Token::Value(secs)) => ProbeResult {
                ok: true,
                status: Some(200),
                latency: Duration::from_secs_f64(secs.max(0.0)),
                error: None,
                blame: Blame::Service,
            },
            Some(Token::Fail) => ProbeResult {
                ok: false,
                status: Some(503),
                latency: Duration::from_millis(1),
                error: Some("HTTP 503, expected 2xx (scripted)".into()),
                blame: Blame::Service,
            },
            _ => ProbeResult {
                ok: false,
                status: None,
                latency: Duration::ZERO,
                error: Some("no scripted result at this instant".into()),
                blame: Blame::Guardian,
            },
        };
        vec![result; cfg.burst.max(1) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(text: &str) -> Series {
        Series {
            labels: "{}".into(),
            interval: 60_000,
            samples: super::super::notation::parse(text).unwrap(),
        }
    }

    #[test]
    fn a_sample_holds_until_the_next_one_or_the_lookback() {
        let s = series("1 2 _ _ _ _ _ _ 3");
        assert_eq!(s.at(0), Some(1.0));
        assert_eq!(s.at(59_999), Some(1.0));
        assert_eq!(s.at(60_000), Some(2.0));
        // 2 (at 1 min) is still seen at 6 min, not after.
        assert_eq!(s.at(360_000), Some(2.0));
        assert_eq!(s.at(360_001), None);
        assert_eq!(s.at(480_000), Some(3.0));
        // After the last sample: the lookback again.
        assert_eq!(s.at(780_000), Some(3.0));
        assert_eq!(s.at(780_001), None);
        assert_eq!(s.at(-1), None);
    }

    #[test]
    fn stale_ends_a_series_at_once() {
        let s = series("1 stale _ 4");
        assert_eq!(s.at(30_000), Some(1.0));
        assert_eq!(s.at(60_000), None);
        assert_eq!(s.at(150_000), None);
        assert_eq!(s.at(180_000), Some(4.0));
    }

    #[test]
    fn queries_match_with_whitespace_collapsed() {
        assert_eq!(
            normalize("sum(rate(x[5m]))\n   / sum(y)  "),
            "sum(rate(x[5m])) / sum(y)"
        );
    }
}
