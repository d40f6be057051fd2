//! A check's levels and their conditions, in the compiled form the engine runs.

use crate::model::{Level, Millis};

/// The condition of one level. A level breaches at a sample when *any* of its
/// criteria holds; it fires once the breach has held for `for_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Condition {
    /// Breach when the value is strictly above this.
    pub above: Option<f64>,
    /// Breach when the value is strictly below this.
    pub below: Option<f64>,
    /// How long the breach must hold before the level fires (0: at once).
    pub for_ms: Millis,
    /// Breach when this many consecutive samples failed (probes).
    pub failures: Option<u32>,
    /// Also required: the value is worse than the sample's baseline by more
    /// than this (absolute; "worse" is down for a `below` level, else up).
    pub worse_by: Option<f64>,
    /// Also required: the value is worse than the sample's baseline by more
    /// than this factor (value / baseline, or baseline / value for `below`).
    pub worse_by_ratio: Option<f64>,
    /// A sample without data breaches (`no_data: breach` on a range check).
    pub missing_breaches: bool,
}

impl Condition {
    /// Whether one sample breaches, given the failures in a row up to and
    /// including it. A failed sample carries no usable value.
    #[inline(always)]
    pub fn breached(&self, s: &super::Sample, failures_in_a_row: u32) -> bool {
        if let Some(n) = self.failures {
            if failures_in_a_row >= n {
                return true;
            }
        }
        if !s.ok {
            return self.missing_breaches;
        }
        let value = s.value;
        // NaN compares false both ways: a NaN sample never breaches.
        let level = if self.above.is_none() && self.below.is_none() {
            // A level of worse_by / worse_by_ratio alone.
            self.worse_by.is_some() || self.worse_by_ratio.is_some()
        } else {
            matches!(self.above, Some(a) if value > a) || matches!(self.below, Some(b) if value < b)
        };
        level && (self.worse_by.is_none() && self.worse_by_ratio.is_none() || self.worse(s))
    }

    /// Whether the sample is worse than its baseline by `worse_by` and by
    /// `worse_by_ratio` (each when given). Without a baseline value (NaN) it
    /// is not.
    #[cold]
    fn worse(&self, s: &super::Sample) -> bool {
        let (v, b) = (s.value, s.base);
        if b.is_nan() {
            return false;
        }
        let down = self.below.is_some() && self.above.is_none();
        let (diff, ratio) = if down { (b - v, b / v) } else { (v - b, v / b) };
        // A zero baseline makes any increase an infinite ratio; 0/0 is no change.
        let ratio = if ratio.is_nan() { 1.0 } else { ratio };
        self.worse_by.is_none_or(|w| diff > w) && self.worse_by_ratio.is_none_or(|r| ratio > r)
    }

    /// Human description, e.g. `above 0.05 for 5m` or `3 consecutive failures`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(a) = self.above {
            parts.push(format!("above {}", crate::model::format_value(a)));
        }
        if let Some(b) = self.below {
            parts.push(format!("below {}", crate::model::format_value(b)));
        }
        if let Some(n) = self.failures {
            parts.push(format!("{n} consecutive failures"));
        }
        let mut s = parts.join(" or ");
        for (key, v) in [
            ("worse_by", self.worse_by),
            ("worse_by_ratio", self.worse_by_ratio),
        ] {
            if let Some(v) = v {
                if !s.is_empty() {
                    s.push_str(" and ");
                }
                s.push_str(&format!(
                    "{key} {} than the baseline",
                    crate::model::format_value(v)
                ));
            }
        }
        if self.missing_breaches {
            if !s.is_empty() {
                s.push_str(" or ");
            }
            s.push_str("no data");
        }
        if self.for_ms > 0 {
            let d = std::time::Duration::from_millis(self.for_ms as u64);
            s.push_str(&format!(" for {}", humantime::format_duration(d)));
        }
        s
    }
}

/// A check's rule: up to one condition per level (warning, critical, rollback).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rule {
    pub warning: Option<Condition>,
    pub critical: Option<Condition>,
    pub rollback: Option<Condition>,
    /// Hysteresis: how many consecutive evaluations at which the level's
    /// condition does not breach before the level comes down (0 or 1: at the
    /// first one, like a Prometheus alert).
    pub recover_after: u32,
}

impl Rule {
    /// The levels in increasing gravity, paired with their condition.
    #[inline(always)]
    pub fn levels(&self) -> [(Level, Option<&Condition>); 3] {
        [
            (Level::Warning, self.warning.as_ref()),
            (Level::Critical, self.critical.as_ref()),
            (Level::Rollback, self.rollback.as_ref()),
        ]
    }

    pub fn condition(&self, level: Level) -> Option<&Condition> {
        match level {
            Level::Ok => None,
            Level::Warning => self.warning.as_ref(),
            Level::Critical => self.critical.as_ref(),
            Level::Rollback => self.rollback.as_ref(),
        }
    }
}
