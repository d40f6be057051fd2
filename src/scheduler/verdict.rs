//! The verdict after a tick: a pure function from what the tick left behind
//! (the cadence's next tick, the window's end, which checks could not be
//! judged to the end, whether a rollback was requested or reached) to what
//! the watch does next — keep watching, retry the unread checks, stop for a
//! rollback, end verified, or end unverified. No store, no clock, no runtime:
//! `watch.rs` gathers the facts and turns the verdict into decisions, pages
//! and the tick's commit. The replay (`replay.rs`) gathers the same facts
//! with the same functions ([`cadence_next`], [`facts`]).

use crate::config::Service;
use crate::model::{CheckRecord, CheckState, Level, Millis, Release};
use crate::sources::Reads;

/// Shortest and longest pause between retries of checks the window's last
/// ticks could not read.
const RETRY_MIN: Millis = 1_000;
const RETRY_MAX: Millis = 60_000;

/// What a watch knows after one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// The tick's instant.
    pub now: Millis,
    /// The tick this one ran for (the release's `next_check_at`).
    pub due: Option<Millis>,
    /// The cadence's next tick after `now`; `None` once the window is over.
    pub cadence_next: Option<Millis>,
    /// The end of the watch window (start + cadence length).
    pub window_end: Millis,
    /// The interval of the cadence's last tier: how long unread checks are
    /// retried after the window's end.
    pub last_every: Millis,
    /// Range checks whose readings stop short of the window's end.
    pub unread: Vec<String>,
    /// Checks that ended inconclusive (read, but not judged).
    pub inconclusive: Vec<String>,
    /// This tick recorded a rollback request (rollback mode `auto`).
    pub rollback_requested: bool,
    /// A check reached the rollback level during this watch (this tick or
    /// an earlier one).
    pub reached_rollback: bool,
}

/// What the watch does after the tick.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Tick again at `next`.
    KeepWatching { next: Millis },
    /// The window is over but `unread` could not be read to its end: tick
    /// again at `next`, until `until`. `announce` is true on the first such
    /// tick (the one the cadence scheduled), which records `window_ended`.
    Retry {
        next: Millis,
        until: Millis,
        unread: Vec<String>,
        announce: bool,
    },
    /// A rollback was requested: the watch stops and the rollback runs.
    RollbackRequested,
    /// The window ended and no check reached the rollback level. `unjudged`
    /// names the checks that could not be judged to the end (verify by hand).
    Verified { unjudged: Vec<String> },
    /// The window ended but a check reached the rollback level: not
    /// verified; the release waits for a manual rollback or an abort.
    WindowEnded,
}

impl Verdict {
    /// The next tick to store (`None` ends the ticks).
    pub fn next_check_at(&self, facts: &Facts) -> Option<Millis> {
        match self {
            Verdict::KeepWatching { next } | Verdict::Retry { next, .. } => Some(*next),
            // The store ignores it once the rollback is recorded.
            Verdict::RollbackRequested => facts.cadence_next,
            Verdict::Verified { .. } | Verdict::WindowEnded => None,
        }
    }
}

/// Whether the verdict needs [`Facts::reached_rollback`] from the history
/// (a store read): only when the watch may end now without a rollback.
pub fn needs_history(cadence_next: Option<Millis>, rollback_requested: bool) -> bool {
    cadence_next.is_none() && !rollback_requested
}

/// The next tick while a check is above `ok`: `every` after `now` when that
/// comes before the cadence's `next` (escalation), else `next`. Range checks
/// read the whole interval since their last reading, so ticking sooner only
/// shortens the time to act, never changes what is judged.
pub fn escalated(next: Millis, now: Millis, every: Option<Millis>, out_of_ok: bool) -> Millis {
    match every {
        Some(every) if out_of_ok => next.min(now.saturating_add(every)),
        _ => next,
    }
}

/// Decides what the watch does after a tick.
pub fn decide(f: &Facts) -> Verdict {
    if f.rollback_requested {
        return Verdict::RollbackRequested;
    }
    if let Some(next) = f.cadence_next {
        return Verdict::KeepWatching { next };
    }
    let grace_end = f.window_end + f.last_every;
    if !f.unread.is_empty() && f.now < grace_end {
        let retry = (f.last_every / 4).clamp(RETRY_MIN, RETRY_MAX);
        return Verdict::Retry {
            next: (f.now + retry).min(grace_end),
            until: grace_end,
            unread: f.unread.clone(),
            announce: f.due.is_none_or(|due| due <= f.window_end),
        };
    }
    if f.reached_rollback {
        return Verdict::WindowEnded;
    }
    let mut unjudged = f.unread.clone();
    for name in &f.inconclusive {
        if !unjudged.contains(name) {
            unjudged.push(name.clone());
        }
    }
    Verdict::Verified { unjudged }
}

/// The cadence's next tick after a tick at `now` that left `checks`,
/// escalated while a check is above `ok` ([`escalated`]); `None` once the
/// window is over.
pub fn cadence_next(
    service: &Service,
    release: &Release,
    checks: &[CheckRecord],
    now: Millis,
) -> Option<Millis> {
    let cadence = service.cadence_for(release);
    cadence.next_tick(release.started_at, now).map(|next| {
        escalated(
            next,
            now,
            cadence.escalate_every(min_step(service)),
            checks.iter().any(|c| c.level > Level::Ok),
        )
    })
}

/// The [`Facts`] after a tick at `now` that left `checks`.
pub fn facts(
    service: &Service,
    release: &Release,
    checks: &[CheckRecord],
    now: Millis,
    cadence_next: Option<Millis>,
    rollback_requested: bool,
    reached_rollback: bool,
) -> Facts {
    let cadence = service.cadence_for(release);
    let window_end = release.started_at + cadence.length();
    Facts {
        now,
        due: release.next_check_at,
        cadence_next,
        window_end,
        last_every: cadence.last_every(),
        // Range checks the window's last ticks could not read (source down).
        unread: unread_checks(service, checks, window_end),
        inconclusive: checks
            .iter()
            .filter(|c| c.state == CheckState::Inconclusive)
            .map(|c| c.name.clone())
            .collect(),
        rollback_requested,
        reached_rollback,
    }
}

/// Range checks whose readings stop short of the window's end (the last
/// grid point at or before it).
fn unread_checks(service: &Service, checks: &[CheckRecord], window_end: Millis) -> Vec<String> {
    service
        .checks
        .iter()
        .filter(|spec| spec.source.reads != Reads::Probe)
        .filter(|spec| {
            let step = (spec.step.as_millis() as Millis).max(1);
            let last_point = window_end.div_euclid(step) * step;
            let until = checks
                .iter()
                .find(|c| c.name == spec.name)
                .and_then(|c| c.evaluated_until);
            until.is_none_or(|u| u < last_point)
        })
        .map(|spec| spec.name.clone())
        .collect()
}

/// The smallest `step` of a service's checks (probes count with the
/// default step): the escalated interval by default.
fn min_step(service: &Service) -> Millis {
    service
        .checks
        .iter()
        .map(|c| crate::section::saturating_millis(c.step))
        .min()
        .unwrap_or_else(|| crate::section::saturating_millis(crate::config::DEFAULT_STEP))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window from 0 to 10 000 whose last tier ticks every 4 000.
    fn facts() -> Facts {
        Facts {
            now: 10_000,
            due: Some(10_000),
            cadence_next: None,
            window_end: 10_000,
            last_every: 4_000,
            unread: vec![],
            inconclusive: vec![],
            rollback_requested: false,
            reached_rollback: false,
        }
    }

    #[test]
    fn escalation_ticks_sooner_only_while_a_check_is_out_of_ok() {
        assert_eq!(escalated(300_000, 60_000, Some(15_000), true), 75_000);
        assert_eq!(escalated(300_000, 60_000, Some(15_000), false), 300_000);
        assert_eq!(escalated(300_000, 60_000, None, true), 300_000);
        // Never later than the cadence's own tick.
        assert_eq!(escalated(70_000, 60_000, Some(15_000), true), 70_000);
    }

    #[test]
    fn a_tick_inside_the_window_keeps_watching() {
        let f = Facts {
            now: 5_000,
            cadence_next: Some(9_000),
            ..facts()
        };
        assert_eq!(decide(&f), Verdict::KeepWatching { next: 9_000 });
        assert_eq!(decide(&f).next_check_at(&f), Some(9_000));
        assert!(!needs_history(f.cadence_next, false));
    }

    #[test]
    fn unread_checks_inside_the_window_do_not_matter_yet() {
        let f = Facts {
            now: 5_000,
            cadence_next: Some(9_000),
            unread: vec!["errors".into()],
            ..facts()
        };
        assert_eq!(decide(&f), Verdict::KeepWatching { next: 9_000 });
    }

    #[test]
    fn the_window_ending_with_every_check_judged_verifies() {
        let f = facts();
        assert!(needs_history(None, false));
        assert_eq!(decide(&f), Verdict::Verified { unjudged: vec![] });
        assert_eq!(decide(&f).next_check_at(&f), None);
    }

    #[test]
    fn inconclusive_checks_verify_with_a_warning_list() {
        let f = Facts {
            inconclusive: vec!["latency".into()],
            ..facts()
        };
        assert_eq!(
            decide(&f),
            Verdict::Verified {
                unjudged: vec!["latency".into()]
            }
        );
    }

    #[test]
    fn unread_checks_at_the_window_end_are_retried_and_announced_once() {
        let f = Facts {
            unread: vec!["errors".into()],
            ..facts()
        };
        // last_every / 4 = 1 000.
        assert_eq!(
            decide(&f),
            Verdict::Retry {
                next: 11_000,
                until: 14_000,
                unread: vec!["errors".into()],
                announce: true,
            }
        );
        // A retry tick (due after the window's end) is not announced again.
        let retry = Facts {
            now: 11_000,
            due: Some(11_000),
            ..f.clone()
        };
        assert!(matches!(
            decide(&retry),
            Verdict::Retry {
                announce: false,
                ..
            }
        ));
        // A watch with no tick scheduled announces (as before).
        let undue = Facts { due: None, ..f };
        assert!(matches!(
            decide(&undue),
            Verdict::Retry { announce: true, .. }
        ));
    }

    #[test]
    fn retries_never_go_past_the_grace_period() {
        let f = Facts {
            now: 13_500,
            due: Some(13_500),
            unread: vec!["errors".into()],
            ..facts()
        };
        assert!(matches!(decide(&f), Verdict::Retry { next: 14_000, .. }));
    }

    #[test]
    fn the_retry_pause_is_clamped() {
        let short = Facts {
            last_every: 400,
            unread: vec!["errors".into()],
            ..facts()
        };
        // 400 / 4 = 100 → 1 000, but never past the grace end (10 400).
        assert!(matches!(
            decide(&short),
            Verdict::Retry { next: 10_400, .. }
        ));
        let long = Facts {
            last_every: 3_600_000,
            unread: vec!["errors".into()],
            ..facts()
        };
        assert!(matches!(decide(&long), Verdict::Retry { next: 70_000, .. }));
    }

    #[test]
    fn after_the_grace_period_unread_checks_verify_by_hand() {
        let f = Facts {
            now: 14_000,
            due: Some(14_000),
            unread: vec!["errors".into()],
            inconclusive: vec!["errors".into(), "latency".into()],
            ..facts()
        };
        assert_eq!(
            decide(&f),
            Verdict::Verified {
                unjudged: vec!["errors".into(), "latency".into()]
            }
        );
    }

    #[test]
    fn a_rollback_request_stops_the_watch_whatever_else() {
        for cadence_next in [None, Some(9_000)] {
            let f = Facts {
                cadence_next,
                unread: vec!["errors".into()],
                rollback_requested: true,
                reached_rollback: true,
                ..facts()
            };
            assert_eq!(decide(&f), Verdict::RollbackRequested);
            assert_eq!(decide(&f).next_check_at(&f), cadence_next);
            assert!(!needs_history(cadence_next, true));
        }
    }

    #[test]
    fn reaching_the_rollback_level_without_a_request_is_not_verified() {
        let f = Facts {
            reached_rollback: true,
            ..facts()
        };
        assert_eq!(decide(&f), Verdict::WindowEnded);
        assert_eq!(decide(&f).next_check_at(&f), None);
        // Unread checks are still retried first.
        let unread = Facts {
            unread: vec!["errors".into()],
            ..f
        };
        assert!(matches!(decide(&unread), Verdict::Retry { .. }));
    }
}
