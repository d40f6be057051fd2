//! Multi-window, multi-burn-rate SLO alerts (the SRE workbook's, as Sloth
//! generates them), judged over range data.
//!
//! The check's `errors` query is an error ratio (errors / requests over a
//! short rate window) read on the check's step grid. At each grid instant
//! the burn rate over a window is the mean of that ratio over the window,
//! divided by the error budget (1 - objective). A window pair fires when
//! both its long and its short window burn faster than its factor; the
//! instant's level is the gravest firing pair's level.

use super::Sample;
use crate::model::{Level, Millis};
use serde::{Deserialize, Serialize};

/// One long/short window pair and the burn factor both must exceed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BurnWindow {
    pub long_ms: Millis,
    pub short_ms: Millis,
    pub factor: f64,
    pub level: Level,
}

/// The SRE workbook's defaults: page at 14.4x over 1h and 5m and at 6x over
/// 6h and 30m (`page`), ticket at 3x over 1d and 2h (`ticket`).
pub fn default_windows(page: Level, ticket: Level) -> Vec<BurnWindow> {
    const M: Millis = 60_000;
    vec![
        BurnWindow {
            long_ms: 60 * M,
            short_ms: 5 * M,
            factor: 14.4,
            level: page,
        },
        BurnWindow {
            long_ms: 360 * M,
            short_ms: 30 * M,
            factor: 6.0,
            level: page,
        },
        BurnWindow {
            long_ms: 1440 * M,
            short_ms: 120 * M,
            factor: 3.0,
            level: ticket,
        },
    ]
}

/// The longest window of `windows`: how far before an interval its reading
/// must start.
pub fn lookback(windows: &[BurnWindow]) -> Millis {
    windows
        .iter()
        .map(|w| w.long_ms.max(w.short_ms))
        .max()
        .unwrap_or(0)
}

/// The burn rates at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurnPoint {
    pub ts: Millis,
    /// The gravest level whose window pair fires (Ok: none).
    pub level: Level,
    /// Per window pair: the burn rate over its long and its short window
    /// (NaN: no sample in the window).
    pub rates: Vec<(f64, f64)>,
}

/// Prefix sums of a series' values (NaN and failed samples left out).
struct Prefix {
    ts: Vec<Millis>,
    sum: Vec<f64>,
    count: Vec<u32>,
}

impl Prefix {
    fn new(samples: &[Sample]) -> Self {
        let mut ts = Vec::with_capacity(samples.len());
        let mut sum = Vec::with_capacity(samples.len() + 1);
        let mut count = Vec::with_capacity(samples.len() + 1);
        sum.push(0.0);
        count.push(0);
        let (mut s, mut c) = (0.0, 0);
        for x in samples {
            if x.ok && x.value.is_finite() {
                s += x.value;
                c += 1;
            }
            ts.push(x.ts);
            sum.push(s);
            count.push(c);
        }
        Self { ts, sum, count }
    }

    /// Mean over samples with `from < ts <= to`.
    fn mean(&self, from: Millis, to: Millis) -> f64 {
        let lo = self.ts.partition_point(|&t| t <= from);
        let hi = self.ts.partition_point(|&t| t <= to);
        let n = self.count[hi] - self.count[lo];
        if n == 0 {
            return f64::NAN;
        }
        (self.sum[hi] - self.sum[lo]) / f64::from(n)
    }
}

/// Burn rates at every sample of `ratio` at or after `from` (earlier
/// samples only fill windows). `objective` is the SLO (e.g. 0.999).
pub fn evaluate(
    ratio: &[Sample],
    objective: f64,
    windows: &[BurnWindow],
    from: Millis,
) -> Vec<BurnPoint> {
    let budget = 1.0 - objective;
    let prefix = Prefix::new(ratio);
    let start = ratio.partition_point(|s| s.ts < from);
    ratio[start..]
        .iter()
        .map(|s| {
            let t = s.ts;
            let mut level = Level::Ok;
            let rates = windows
                .iter()
                .map(|w| {
                    let long = prefix.mean(t - w.long_ms, t) / budget;
                    let short = prefix.mean(t - w.short_ms, t) / budget;
                    if long > w.factor && short > w.factor {
                        level = level.max(w.level);
                    }
                    (long, short)
                })
                .collect();
            BurnPoint {
                ts: t,
                level,
                rates,
            }
        })
        .collect()
}

/// The value a burn-rate sample carries into the engine: its level's rank
/// (0 ok .. 3 rollback), judged by [`level_rule`].
pub fn level_value(level: Level) -> f64 {
    level as u8 as f64
}

/// The rule a burn-rate check's samples are judged by: each level fires
/// when a window pair of that level (or graver) fires; `for_ms` per level.
pub fn level_rule(for_ms: [Millis; 3], recover_after: u32) -> super::Rule {
    let at = |i: usize| {
        Some(super::Condition {
            above: Some(i as f64 + 0.5),
            for_ms: for_ms[i],
            ..Default::default()
        })
    };
    super::Rule {
        warning: at(0),
        critical: at(1),
        rollback: at(2),
        recover_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Millis = 60_000;

    /// An error ratio sampled every minute for `minutes`, `bad` from the
    /// given minute on.
    fn ratio(minutes: i64, bad_from: i64, good: f64, bad: f64) -> Vec<Sample> {
        (0..minutes)
            .map(|i| Sample::ok(i * M, if i >= bad_from { bad } else { good }))
            .collect()
    }

    #[test]
    fn a_fast_burn_pages_once_both_windows_burn() {
        let w = default_windows(Level::Rollback, Level::Warning);
        // 99.9 %: budget 0.001. A healthy day at 0.0001 (0.1x), then 2 %
        // errors (20x) from minute 1500.
        let series = ratio(1600, 1500, 0.0001, 0.02);
        let points = evaluate(&series, 0.999, &w, 1440 * M);
        let first = points.iter().find(|p| p.level == Level::Rollback).unwrap();
        // 1h mean > 14.4x needs > 43.2 bad minutes of 60 ( (k*20 + (60-k)*0.1)/60 > 14.4 ).
        let k = (first.ts / M) - 1500 + 1;
        assert_eq!(k, 44, "fired after {k} bad minutes");
        assert!(first.rates[0].0 > 14.4 && first.rates[0].1 > 14.4);
        assert!(points
            .iter()
            .filter(|p| p.ts < first.ts)
            .all(|p| p.level < Level::Rollback));
    }

    #[test]
    fn a_short_spike_does_not_page_and_a_slow_burn_tickets() {
        let w = default_windows(Level::Rollback, Level::Warning);
        // 10 minutes at 20x: the 5m window burns, the 1h one does not.
        let mut series = ratio(1500, 1480, 0.0001, 0.02);
        for s in series.iter_mut().skip(1490) {
            s.value = 0.0001;
        }
        let points = evaluate(&series, 0.999, &w, 1440 * M);
        assert!(points.iter().all(|p| p.level == Level::Ok), "spike paged");
        // 4x from minute 1400: the 1d mean passes 3x after ~1071 minutes; 4x never pages (6x).
        let series = ratio(2600, 1400, 0.0001, 0.004);
        let points = evaluate(&series, 0.999, &w, 1440 * M);
        assert!(points.iter().any(|p| p.level == Level::Warning));
        assert!(points.iter().all(|p| p.level < Level::Rollback));
    }

    #[test]
    fn windows_without_samples_do_not_fire() {
        let w = default_windows(Level::Rollback, Level::Warning);
        let points = evaluate(&[Sample::failed(0), Sample::ok(M, f64::NAN)], 0.999, &w, 0);
        assert!(points
            .iter()
            .all(|p| p.level == Level::Ok && p.rates[0].0.is_nan()));
    }

    #[test]
    fn the_level_rule_maps_ranks() {
        let r = level_rule([0, 0, 5 * M], 0);
        let s = Sample::ok(0, level_value(Level::Critical));
        assert!(r.critical.unwrap().breached(&s, 0));
        assert!(!r.rollback.unwrap().breached(&s, 0));
        assert_eq!(r.rollback.unwrap().for_ms, 5 * M);
    }
}
