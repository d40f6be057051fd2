//! The rule engine: pure, in memory, no I/O and no clock of its own.
//!
//! It owns the meaning of a rule level (`above`, `below`, `for`, `failures`)
//! and judges series of samples the way a Prometheus alerting rule evaluated
//! at every sample would: a level becomes *active* at the first breaching
//! sample, *fires* once it has stayed active for `for`, and resets at the
//! first sample that does not breach or at a gap in the series. The caller
//! (the scheduler) feeds it the samples of each tick and keeps its
//! [`CheckTracker`] between ticks (and in the store across restarts).
//!
//! Beyond thresholds it owns the other judgments, each pure and in its own
//! file: lining a series up with a baseline or a traffic floor ([`align`]),
//! the Mann-Whitney comparison ([`stats`]), multi-window burn rates
//! ([`burn`]), the health score ([`health`]) and new log-error signatures
//! ([`signatures`]). `recover_after` (hysteresis), `worse_by` and
//! `no_data: breach` live in the threshold loop itself.

pub mod align;
pub mod burn;
pub mod health;
mod rule;
pub mod signatures;
pub mod stats;
mod tracker;

#[cfg(test)]
mod judgment_tests;

pub use rule::{Condition, Rule};
pub use tracker::{CheckTracker, Sample, SeriesTracker, Transition};

use crate::model::{CheckState, Level, Millis};

/// What one evaluation of a check produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The check's level after the last sample.
    pub level: Level,
    /// The value of the last sample of the worst series (None without samples).
    pub value: Option<f64>,
    /// Every change of the check's level, in time order, including changes
    /// that started and ended inside the evaluated interval.
    pub transitions: Vec<Transition>,
}

impl Outcome {
    pub fn state(&self) -> CheckState {
        CheckState::from(self.level)
    }
}

/// Evaluates a batch of series for one check and advances its tracker.
///
/// `series` are `(key, samples)` pairs, samples in time order; `step` is the
/// resolution of range-query series (a larger gap between two samples resets
/// pending levels, like a missed rule evaluation) or `None` for probe
/// results, where each tick is one sample and gaps do not matter. Series the
/// tracker knew but that are absent from this batch are dropped (their level
/// falls back to ok at `window_start`).
pub fn evaluate(
    rule: &Rule,
    tracker: &mut CheckTracker,
    series: &[(String, Vec<Sample>)],
    step: Option<Millis>,
    window_start: Millis,
) -> Outcome {
    tracker.evaluate(rule, series, step, window_start)
}
