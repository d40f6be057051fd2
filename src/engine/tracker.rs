//! Per-check evaluation state and the evaluation loop itself.

use super::{Outcome, Rule};
use crate::model::{Level, Millis};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One observation: a range-query point, or one probe result.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub ts: Millis,
    pub value: f64,
    /// False for a failed probe (the value is then meaningless).
    pub ok: bool,
    /// The baseline's value at this instant (`baseline:` checks), NaN
    /// without one; judged by `worse_by` and `worse_by_ratio`.
    pub base: f64,
}

/// Equal when every field is; two missing baselines (NaN) are equal.
impl PartialEq for Sample {
    fn eq(&self, o: &Self) -> bool {
        self.ts == o.ts
            && self.value == o.value
            && self.ok == o.ok
            && (self.base == o.base || (self.base.is_nan() && o.base.is_nan()))
    }
}

impl Sample {
    pub fn ok(ts: Millis, value: f64) -> Self {
        Self {
            ts,
            value,
            ok: true,
            base: f64::NAN,
        }
    }
    pub fn failed(ts: Millis) -> Self {
        Self {
            ts,
            value: f64::NAN,
            ok: false,
            base: f64::NAN,
        }
    }
    /// The same sample with a baseline value.
    pub fn with_base(self, base: f64) -> Self {
        Self { base, ..self }
    }
}

/// A change of a check's level at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub at: Millis,
    pub from: Level,
    pub to: Level,
    pub value: f64,
}

/// Evaluation state of one series of a check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesTracker {
    /// For warning, critical, rollback: since when the condition has breached.
    pub active_since: [Option<Millis>; 3],
    pub failures_in_a_row: u32,
    pub level: Level,
    pub last_ts: Option<Millis>,
    pub last_value: Option<f64>,
    /// Evaluations in a row at which the held level's condition did not
    /// breach (`recover_after`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub good_in_a_row: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl SeriesTracker {
    /// Runs samples through the rule, pushing this series' own transitions.
    #[inline]
    pub fn run(
        &mut self,
        rule: &Rule,
        samples: &[Sample],
        step: Option<Millis>,
        out: &mut Vec<Transition>,
    ) {
        let conds = [rule.warning, rule.critical, rule.rollback];
        for s in samples {
            if let Some(last) = self.last_ts {
                if s.ts <= last {
                    continue; // already judged (overlapping windows after a retry)
                }
                if let Some(step) = step.filter(|&step| s.ts - last > step) {
                    // A gap: like a Prometheus alert at its first evaluation
                    // without data, the level resolves one step after the last
                    // sample and pending levels reset.
                    self.active_since = [None; 3];
                    if self.level != Level::Ok {
                        out.push(Transition {
                            at: last + step,
                            from: self.level,
                            to: Level::Ok,
                            value: f64::NAN,
                        });
                        self.level = Level::Ok;
                    }
                }
            }
            self.failures_in_a_row = if s.ok {
                0
            } else {
                self.failures_in_a_row.saturating_add(1)
            };
            let mut level = Level::Ok;
            let mut breaching = [false; 3];
            for (i, cond) in conds.iter().enumerate() {
                let Some(c) = cond else { continue };
                if c.breached(s, self.failures_in_a_row) {
                    breaching[i] = true;
                    let since = *self.active_since[i].get_or_insert(s.ts);
                    if s.ts - since >= c.for_ms {
                        level = Level::RULE_LEVELS[i];
                    }
                } else {
                    self.active_since[i] = None;
                }
            }
            if rule.recover_after > 1 && level < self.level {
                // Hysteresis: the held level comes down only after
                // `recover_after` evaluations in a row without its breach.
                let held = self.level as usize - 1;
                if breaching[held] {
                    self.good_in_a_row = 0;
                    level = self.level;
                } else {
                    self.good_in_a_row += 1;
                    if self.good_in_a_row < rule.recover_after {
                        level = self.level;
                    }
                }
            } else {
                self.good_in_a_row = 0;
            }
            if level != self.level {
                out.push(Transition {
                    at: s.ts,
                    from: self.level,
                    to: level,
                    value: s.value,
                });
                self.level = level;
            }
            self.last_ts = Some(s.ts);
        }
        if let Some(s) = samples.last() {
            self.last_value = Some(s.value);
        }
    }
}

/// Evaluation state of one check: one [`SeriesTracker`] per series key (a
/// query may return several label sets; the check's level is the worst).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckTracker {
    pub series: BTreeMap<String, SeriesTracker>,
    pub level: Level,
}

impl CheckTracker {
    /// See [`super::evaluate`].
    pub fn evaluate(
        &mut self,
        rule: &Rule,
        series: &[(String, Vec<Sample>)],
        step: Option<Millis>,
        window_start: Millis,
    ) -> Outcome {
        // Per-series transitions, tagged with the series they belong to.
        let mut tagged: Vec<(usize, Transition)> = Vec::new();
        let mut scratch = Vec::new();
        // Series that vanished resolve one step after their last sample (or at
        // the window start when there is no grid). (No allocation in the
        // common case where every known series is still there.)
        let gone: Vec<String> = self
            .series
            .keys()
            .filter(|k| !series.iter().any(|(s, _)| s == *k))
            .cloned()
            .collect();
        // Fast path, the common case: one series that the check already
        // follows. Its transitions are the check's, with no replay to do.
        if let ([(key, samples)], true) = (series, gone.is_empty()) {
            if self.series.is_empty() {
                self.series.insert(key.clone(), SeriesTracker::default());
            }
            if let Some(t) = self.series.get_mut(key).filter(|t| t.level == self.level) {
                let mut transitions = Vec::new();
                t.run(rule, samples, step, &mut transitions);
                self.level = t.level;
                return Outcome {
                    level: t.level,
                    value: t.last_value,
                    transitions,
                };
            }
        }
        let mut levels: Vec<Level> = Vec::with_capacity(series.len() + gone.len());
        for key in &gone {
            let t = self.series.remove(key).unwrap_or_default();
            levels.push(t.level);
            if t.level != Level::Ok {
                tagged.push((
                    levels.len() - 1,
                    Transition {
                        at: match (t.last_ts, step) {
                            (Some(last), Some(step)) => last + step,
                            _ => window_start,
                        },
                        from: t.level,
                        to: Level::Ok,
                        value: f64::NAN,
                    },
                ));
            }
        }
        let mut worst_value: Option<(Level, f64)> = None;
        for (key, samples) in series {
            let t = match self.series.get_mut(key) {
                Some(t) => t,
                None => self.series.entry(key.clone()).or_default(),
            };
            levels.push(t.level);
            let idx = levels.len() - 1;
            scratch.clear();
            t.run(rule, samples, step, &mut scratch);
            tagged.extend(scratch.iter().map(|tr| (idx, *tr)));
            if let Some(v) = t.last_value {
                if worst_value.is_none_or(|(l, _)| t.level > l) {
                    worst_value = Some((t.level, v));
                }
            }
        }
        // Replay the per-series transitions in time order; the check's level is
        // the worst series level, and a change of that is a check transition.
        tagged.sort_by_key(|(_, t)| t.at);
        let mut transitions = Vec::new();
        let mut current = self.level;
        // All changes at one instant are applied together: one series handing
        // a level over to another at the same step is no change of the check.
        for group in tagged.chunk_by(|a, b| a.1.at == b.1.at) {
            for (idx, tr) in group {
                levels[*idx] = tr.to;
            }
            let worst = levels.iter().copied().max().unwrap_or(Level::Ok);
            if worst != current {
                // The value of the series that set the new worst level.
                let value = group
                    .iter()
                    .rev()
                    .find(|(_, t)| t.to == worst)
                    .map_or(f64::NAN, |(_, t)| t.value);
                let at = group[0].1.at;
                transitions.push(Transition {
                    at,
                    from: current,
                    to: worst,
                    value,
                });
                current = worst;
            }
        }
        self.level = current;
        Outcome {
            level: self.level,
            value: worst_value.map(|(_, v)| v),
            transitions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Condition;

    fn rule() -> Rule {
        Rule {
            warning: Some(Condition {
                above: Some(0.005),
                ..Default::default()
            }),
            critical: Some(Condition {
                above: Some(0.01),
                for_ms: 5_000,
                ..Default::default()
            }),
            rollback: Some(Condition {
                above: Some(0.05),
                for_ms: 5_000,
                ..Default::default()
            }),
            recover_after: 0,
        }
    }

    fn series(points: &[(Millis, f64)]) -> Vec<(String, Vec<Sample>)> {
        vec![(
            "{}".into(),
            points.iter().map(|&(t, v)| Sample::ok(t, v)).collect(),
        )]
    }

    #[test]
    fn for_holds_before_firing_like_prometheus() {
        let mut t = CheckTracker::default();
        let pts: Vec<_> = (0..8).map(|i| (i * 1000, 0.1)).collect();
        let out = t.evaluate(&rule(), &series(&pts), Some(1000), 0);
        // Warning fires at once; critical and rollback after 5 s of breach.
        assert_eq!(out.transitions.len(), 2);
        assert_eq!(out.transitions[0].to, Level::Warning);
        assert_eq!(out.transitions[0].at, 0);
        assert_eq!(out.transitions[1].to, Level::Rollback);
        assert_eq!(out.transitions[1].at, 5000);
        assert_eq!(out.level, Level::Rollback);
    }

    #[test]
    fn breach_inside_interval_is_found_and_reported() {
        let mut t = CheckTracker::default();
        let mut pts: Vec<_> = (0..10).map(|i| (i * 1000, 0.0)).collect();
        pts.extend((10..17).map(|i| (i * 1000, 0.2)));
        pts.extend((17..30).map(|i| (i * 1000, 0.0)));
        let out = t.evaluate(&rule(), &series(&pts), Some(1000), 0);
        assert_eq!(out.level, Level::Ok);
        assert!(out.transitions.iter().any(|t| t.to == Level::Rollback));
        let rb = out
            .transitions
            .iter()
            .find(|t| t.to == Level::Rollback)
            .unwrap();
        assert_eq!(rb.at, 15_000);
    }

    #[test]
    fn a_gap_resets_pending_levels() {
        let mut t = CheckTracker::default();
        let out = t.evaluate(
            &rule(),
            &series(&[(0, 0.2), (1000, 0.2), (2000, 0.2)]),
            Some(1000),
            0,
        );
        assert_eq!(out.level, Level::Warning);
        // Three seconds missing: the breach has to hold 5 s again from 6 s.
        let pts: Vec<_> = (6..=10).map(|i| (i * 1000, 0.2)).collect();
        let out = t.evaluate(&rule(), &series(&pts), Some(1000), 6000);
        assert_eq!(out.level, Level::Warning);
        let out = t.evaluate(&rule(), &series(&[(11000, 0.2)]), Some(1000), 11000);
        assert_eq!(out.level, Level::Rollback);
    }

    #[test]
    fn a_gap_resolves_the_level_like_a_prometheus_alert() {
        let r = Rule {
            rollback: Some(Condition {
                above: Some(0.05),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut t = CheckTracker::default();
        // Breach, three missing points, breach again: fired, resolved one
        // step after the last sample, fired again (a new page).
        let out = t.evaluate(
            &r,
            &series(&[(0, 0.2), (1000, 0.2), (5000, 0.2)]),
            Some(1000),
            0,
        );
        let got: Vec<(Millis, Level)> = out.transitions.iter().map(|t| (t.at, t.to)).collect();
        assert_eq!(
            got,
            vec![
                (0, Level::Rollback),
                (2000, Level::Ok),
                (5000, Level::Rollback)
            ]
        );
        // A series that vanishes resolves one step after its last sample.
        let out = t.evaluate(
            &r,
            &[("other".to_string(), vec![Sample::ok(9000, 0.0)])],
            Some(1000),
            6000,
        );
        assert_eq!(out.transitions[0].at, 6000);
        assert_eq!(out.transitions[0].to, Level::Ok);
    }

    #[test]
    fn a_handover_between_series_at_one_instant_is_no_change() {
        let r = Rule {
            critical: Some(Condition {
                above: Some(0.5),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut t = CheckTracker::default();
        let both = vec![
            (
                "a".to_string(),
                vec![Sample::ok(0, 0.9), Sample::ok(1000, 0.0)],
            ),
            (
                "b".to_string(),
                vec![Sample::ok(0, 0.0), Sample::ok(1000, 0.9)],
            ),
        ];
        let out = t.evaluate(&r, &both, Some(1000), 0);
        let got: Vec<(Millis, Level)> = out.transitions.iter().map(|t| (t.at, t.to)).collect();
        assert_eq!(
            got,
            vec![(0, Level::Critical)],
            "no recovery and re-page at 1000"
        );
    }

    #[test]
    fn the_state_carries_across_batches() {
        let mut t = CheckTracker::default();
        t.evaluate(
            &rule(),
            &series(&[(0, 0.2), (1000, 0.2), (2000, 0.2)]),
            Some(1000),
            0,
        );
        let json = serde_json::to_value(&t).unwrap();
        let mut t2: CheckTracker = serde_json::from_value(json).unwrap();
        let out = t2.evaluate(
            &rule(),
            &series(&[(3000, 0.2), (4000, 0.2), (5000, 0.2)]),
            Some(1000),
            3000,
        );
        assert_eq!(out.transitions.len(), 1);
        assert_eq!(out.transitions[0].to, Level::Rollback);
        assert_eq!(out.transitions[0].at, 5000);
        // Re-feeding already judged samples changes nothing.
        let again = t2.evaluate(
            &rule(),
            &series(&[(4000, 0.2), (5000, 0.2)]),
            Some(1000),
            4000,
        );
        assert!(again.transitions.is_empty());
    }

    #[test]
    fn consecutive_failures_for_probes() {
        let r = Rule {
            critical: Some(Condition {
                failures: Some(2),
                ..Default::default()
            }),
            rollback: Some(Condition {
                failures: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut t = CheckTracker::default();
        let probe = |s: Sample| vec![("live".to_string(), vec![s])];
        assert_eq!(
            t.evaluate(&r, &probe(Sample::failed(1)), None, 1).level,
            Level::Ok
        );
        assert_eq!(
            t.evaluate(&r, &probe(Sample::ok(2, 0.01)), None, 2).level,
            Level::Ok
        );
        assert_eq!(
            t.evaluate(&r, &probe(Sample::failed(3)), None, 3).level,
            Level::Ok
        );
        assert_eq!(
            t.evaluate(&r, &probe(Sample::failed(4)), None, 4).level,
            Level::Critical
        );
        assert_eq!(
            t.evaluate(&r, &probe(Sample::failed(5)), None, 5).level,
            Level::Rollback
        );
        assert_eq!(
            t.evaluate(&r, &probe(Sample::ok(6, 0.01)), None, 6).level,
            Level::Ok
        );
    }

    #[test]
    fn nan_and_below() {
        let r = Rule {
            critical: Some(Condition {
                below: Some(0.99),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut t = CheckTracker::default();
        assert_eq!(
            t.evaluate(&r, &series(&[(0, f64::NAN)]), Some(1000), 0)
                .level,
            Level::Ok
        );
        assert_eq!(
            t.evaluate(&r, &series(&[(1000, 0.5)]), Some(1000), 1000)
                .level,
            Level::Critical
        );
    }

    #[test]
    fn worst_series_wins_and_vanished_series_recover() {
        let r = rule();
        let mut t = CheckTracker::default();
        let two = vec![
            (
                "a".to_string(),
                vec![Sample::ok(0, 0.0), Sample::ok(1000, 0.0)],
            ),
            (
                "b".to_string(),
                vec![Sample::ok(0, 0.007), Sample::ok(1000, 0.007)],
            ),
        ];
        let out = t.evaluate(&r, &two, Some(1000), 0);
        assert_eq!(out.level, Level::Warning);
        assert_eq!(out.value, Some(0.007));
        let only_a = vec![("a".to_string(), vec![Sample::ok(2000, 0.0)])];
        let out = t.evaluate(&r, &only_a, Some(1000), 2000);
        assert_eq!(out.level, Level::Ok);
        assert_eq!(out.transitions[0].at, 2000);
    }
}
