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
}

impl Condition {
    /// Whether one sample breaches, given the failures in a row up to and
    /// including it. A failed sample carries no usable value.
    #[inline(always)]
    pub fn breached(&self, value: f64, ok: bool, failures_in_a_row: u32) -> bool {
        if let Some(n) = self.failures {
            if failures_in_a_row >= n {
                return true;
            }
        }
        if !ok {
            return false;
        }
        // NaN compares false both ways: a NaN sample never breaches.
        matches!(self.above, Some(a) if value > a) || matches!(self.below, Some(b) if value < b)
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
