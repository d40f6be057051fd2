//! The tiered cadence: when a watch ticks, and when it ends.

use super::{CadenceConfig, TierConfig};
use crate::model::Millis;
use crate::section::{at_most, saturating_millis, MAX_WATCH};

/// Tiers of `(until, every)` measured from the release's start, validated:
/// `until` strictly increasing, `every` > 0, both at most [`MAX_WATCH`]
/// (ten years; a longer value would overflow the millisecond arithmetic). The watch ticks at
/// `start + every₁`, `+ every₁`, ... while in tier 1, then on tier 2's interval,
/// and its last tick is at the last tier's `until`; then it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Cadence {
    tiers: Vec<(Millis, Millis)>,
    escalate: Escalate,
    sentinel: Escalate,
}

/// An interval given as `step`, a duration or `off`: how a watch ticks
/// while a check is above `ok` (`escalate_every`), and how often it looks
/// at its query checks between ticks (`sentinel_every`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Escalate {
    /// At the smallest `step` of the service's checks (the default).
    #[default]
    Step,
    /// At this interval.
    Every(Millis),
    /// Not at all: the tiers only.
    Off,
}

impl Escalate {
    /// Parses `escalate_every`: `step`, `off` or a duration.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::parse_key(s, "escalate_every")
    }

    /// Parses the value of `key`: `step`, `off` or a duration; errors name
    /// `key`.
    pub fn parse_key(s: &str, key: &str) -> Result<Self, String> {
        match s.trim() {
            "step" => Ok(Self::Step),
            "off" => Ok(Self::Off),
            d => {
                let d = crate::section::parse_duration(d)
                    .map_err(|e| format!("`{key}` must be \"step\", \"off\" or a duration: {e}"))?;
                at_most(key, d, MAX_WATCH).map_err(|e| format!("`{key}`: {e}"))?;
                match saturating_millis(d) {
                    0 => Err(format!("`{key}` must be greater than zero")),
                    ms => Ok(Self::Every(ms)),
                }
            }
        }
    }

    /// The interval, given the smallest `step` of the checks (None: off).
    fn every(self, min_step: Millis) -> Option<Millis> {
        match self {
            Self::Step => Some(min_step.max(1)),
            Self::Every(ms) => Some(ms),
            Self::Off => None,
        }
    }
}

impl Cadence {
    /// Validates tiers; the error says which tier and why.
    pub fn new(tiers: &[TierConfig]) -> Result<Self, String> {
        if tiers.is_empty() {
            return Err("cadence needs at least one tier".into());
        }
        let mut out = Vec::with_capacity(tiers.len());
        let mut prev = 0;
        for (i, t) in tiers.iter().enumerate() {
            for (key, d) in [("until", t.until), ("every", t.every)] {
                at_most(key, d, MAX_WATCH).map_err(|e| format!("tier {}: {e}", i + 1))?;
            }
            let until = saturating_millis(t.until);
            let every = saturating_millis(t.every);
            if every <= 0 {
                return Err(format!("tier {}: `every` must be greater than zero", i + 1));
            }
            if until <= prev {
                return Err(format!(
                    "tier {}: `until` must be later than the previous tier's",
                    i + 1
                ));
            }
            prev = until;
            out.push((until, every));
        }
        Ok(Self {
            tiers: out,
            escalate: Escalate::Step,
            sentinel: Escalate::Step,
        })
    }

    pub fn from_config(c: &CadenceConfig) -> Result<Self, String> {
        let mut out = Self::new(&c.tiers)?;
        if let Some(e) = &c.escalate_every {
            out.escalate = Escalate::parse(e)?;
        }
        if let Some(e) = &c.sentinel_every {
            out.sentinel = Escalate::parse_key(e, "sentinel_every")?;
        }
        Ok(out)
    }

    /// The same tiers, looking at the query checks between ticks as
    /// `sentinel` says.
    pub fn with_sentinel(mut self, sentinel: Escalate) -> Self {
        self.sentinel = sentinel;
        self
    }

    /// How often the watch looks at its query checks between ticks.
    pub fn sentinel(&self) -> Escalate {
        self.sentinel
    }

    /// The interval of those looks, given the smallest `step` of the query
    /// checks (None: off).
    pub fn sentinel_every(&self, min_step: Millis) -> Option<Millis> {
        self.sentinel.every(min_step)
    }

    /// The same tiers, ticking as `escalate` says while a check is above
    /// `ok`.
    pub fn with_escalate(mut self, escalate: Escalate) -> Self {
        self.escalate = escalate;
        self
    }

    /// How the watch ticks while a check is above `ok`.
    pub fn escalate(&self) -> Escalate {
        self.escalate
    }

    /// The escalated interval, given the smallest `step` of the checks
    /// (None: escalation is off).
    pub fn escalate_every(&self, min_step: Millis) -> Option<Millis> {
        self.escalate.every(min_step)
    }

    /// How long the watch lasts (the last tier's `until`).
    pub fn length(&self) -> Millis {
        self.tiers.last().map(|t| t.0).unwrap_or(0)
    }

    /// The tier in force `elapsed` after the start: its number (from 1) and
    /// interval; `None` once the watch is over.
    pub fn tier_at(&self, elapsed: Millis) -> Option<(usize, Millis)> {
        self.tiers
            .iter()
            .position(|&(until, _)| elapsed < until)
            .map(|i| (i + 1, self.tiers[i].1))
    }

    /// The longest interval between two ticks.
    pub fn max_every(&self) -> Millis {
        self.tiers.iter().map(|t| t.1).max().unwrap_or(0)
    }

    /// The interval of the last tier.
    pub fn last_every(&self) -> Millis {
        self.tiers.last().map(|t| t.1).unwrap_or(0)
    }

    /// The first tick strictly after `after`, for a release started at `start`;
    /// `None` once the last tick (at `start + length`) has passed.
    pub fn next_tick(&self, start: Millis, after: Millis) -> Option<Millis> {
        let mut t = 0;
        let end = self.length();
        // Walk the grid: ticks are deterministic from the start.
        for &(until, every) in &self.tiers {
            if t >= until {
                continue;
            }
            let elapsed = after.saturating_sub(start);
            if elapsed >= until {
                // Skip this tier entirely, landing on its last grid point.
                let n = (until - t + every - 1) / every;
                t = (t + n * every).min(until);
                continue;
            }
            // First grid point of this tier after `elapsed`.
            let k = if elapsed < t {
                1
            } else {
                (elapsed - t) / every + 1
            };
            let candidate = (t + k * every).min(until);
            return Some(start.saturating_add(candidate));
        }
        if after.saturating_sub(start) < end {
            Some(start.saturating_add(end))
        } else {
            None
        }
    }

    /// All tick times of a release started at `start` (used by tests).
    pub fn ticks(&self, start: Millis) -> Vec<Millis> {
        let mut out = Vec::new();
        let mut at = start;
        while let Some(next) = self.next_tick(start, at) {
            out.push(next);
            at = next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> Cadence {
        Cadence::from_config(&CadenceConfig::default()).unwrap()
    }

    #[test]
    fn the_checklist_schedule() {
        let ticks = default().ticks(0);
        let min = 60_000;
        // 12 ticks in hour 1, 8 in hours 2-3, 6 in hours 4-6.
        assert_eq!(ticks.len(), 12 + 8 + 6);
        assert_eq!(ticks[0], 5 * min);
        assert_eq!(ticks[11], 60 * min);
        assert_eq!(ticks[12], 75 * min);
        assert_eq!(ticks[19], 180 * min);
        assert_eq!(ticks[20], 210 * min);
        assert_eq!(*ticks.last().unwrap(), 360 * min);
    }

    #[test]
    fn resuming_mid_watch_lands_on_the_grid() {
        let c = default();
        let min = 60_000;
        assert_eq!(c.next_tick(1000, 1000 + 7 * min), Some(1000 + 10 * min));
        assert_eq!(c.next_tick(0, 61 * min), Some(75 * min));
        assert_eq!(c.next_tick(0, 200 * min), Some(210 * min));
        assert_eq!(c.next_tick(0, 359 * min), Some(360 * min));
        assert_eq!(c.next_tick(0, 360 * min), None);
        assert_eq!(c.next_tick(0, 999 * min), None);
    }

    #[test]
    fn uneven_tiers_end_on_until() {
        let t = |u: u64, e: u64| TierConfig {
            until: std::time::Duration::from_millis(u),
            every: std::time::Duration::from_millis(e),
        };
        let c = Cadence::new(&[t(10, 4), t(20, 7)]).unwrap();
        assert_eq!(c.ticks(0), vec![4, 8, 10, 17, 20]);
        assert!(Cadence::new(&[t(10, 0)]).is_err());
        assert!(Cadence::new(&[t(10, 1), t(10, 1)]).is_err());
        assert!(Cadence::new(&[]).is_err());
    }

    #[test]
    fn escalate_every_parses() {
        assert_eq!(Escalate::parse("step"), Ok(Escalate::Step));
        assert_eq!(Escalate::parse("off"), Ok(Escalate::Off));
        assert_eq!(Escalate::parse("30s"), Ok(Escalate::Every(30_000)));
        assert!(Escalate::parse("0s").is_err());
        assert!(Escalate::parse("often")
            .unwrap_err()
            .starts_with("`escalate_every`"));
        let c = CadenceConfig {
            escalate_every: Some("off".into()),
            ..CadenceConfig::default()
        };
        assert_eq!(
            Cadence::from_config(&c).unwrap().escalate_every(15_000),
            None
        );
        assert_eq!(default().escalate_every(15_000), Some(15_000));
    }

    #[test]
    fn sentinel_every_parses_and_defaults_to_the_step() {
        assert_eq!(default().sentinel_every(15_000), Some(15_000));
        let with = |v: &str| CadenceConfig {
            sentinel_every: Some(v.into()),
            ..CadenceConfig::default()
        };
        let c = Cadence::from_config(&with("off")).unwrap();
        assert_eq!(c.sentinel_every(15_000), None);
        // Escalation is independent of it.
        assert_eq!(c.escalate_every(15_000), Some(15_000));
        let c = Cadence::from_config(&with("1m")).unwrap();
        assert_eq!(c.sentinel_every(15_000), Some(60_000));
        let e = Cadence::from_config(&with("soon")).unwrap_err();
        assert!(e.starts_with("`sentinel_every` must be"), "{e}");
    }

    #[test]
    fn absurd_tiers_are_refused_not_wrapped() {
        let tier = |until: &str, every: &str| TierConfig {
            until: crate::section::parse_duration(until).unwrap(),
            every: crate::section::parse_duration(every).unwrap(),
        };
        // Observed: `as i64` wrapped this to 384 ms and the watch ended at once.
        let e = Cadence::new(&[tier("18446744073709552s", "5m")]).unwrap_err();
        assert!(e == "tier 1: `until` must be at most 10years", "{e}");
        let e = Cadence::new(&[tier("1h", "5m"), tier("2h", "11y")]).unwrap_err();
        assert_eq!(e, "tier 2: `every` must be at most 10years");
        // Ten years is accepted, and its ticks do not overflow.
        let c = Cadence::new(&[tier("3650days", "365days")]).unwrap();
        assert_eq!(c.length(), 3650 * 86_400_000);
        assert_eq!(c.ticks(1_800_000_000_000).len(), 10);
        // Times saturate instead of overflowing.
        assert_eq!(c.next_tick(i64::MAX - 10, i64::MAX), Some(i64::MAX));
    }
}
