//! Replaying a release: the daemon's tick (`tick::evaluate`) and its
//! between-tick semantics — the check records carried from one tick to the
//! next (trackers, `evaluated_until`), the cadence with `escalate_every`,
//! the looks between ticks (`sentinel_every`, which move a tick earlier),
//! the rollback trigger and the verdict (`verdict.rs`) — run on a virtual
//! clock, tick after tick, with nothing written, notified or run.
//! `test-rules` replays in-memory series and scripted probes through it;
//! `backtest` replays the history the configured sources hold.
//!
//! The replay stops at the first tick that would have rolled back (a check
//! at the rollback level at the reading's last sample, or the health score
//! below `min_health_score`), whatever the service's rollback mode: that
//! tick is [`Replay::rollback_at`]. A breach that recovered before the
//! reading's last sample is recorded as the daemon records it (a
//! recommendation, no rollback) and the replay goes on.

use super::{rollback, sentinel, tick, verdict};
use crate::clock::Clock;
use crate::config::Service;
use crate::context::Context;
use crate::model::{CheckRecord, Decision, Level, Millis, Release, ReleaseStatus};
use std::sync::atomic::{AtomicI64, Ordering};

/// The replay's clock: the instant of the tick being replayed.
#[derive(Debug, Default)]
pub struct VirtualClock(AtomicI64);

impl VirtualClock {
    pub fn new(at: Millis) -> Self {
        Self(AtomicI64::new(at))
    }

    /// Moves the clock to `at`.
    pub fn set(&self, at: Millis) {
        self.0.store(at, Ordering::SeqCst);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

/// A context for replays: `settings`, `clock`, and a store in a temporary
/// directory (kept while the returned guard lives) that nothing writes.
pub fn context(
    settings: crate::config::Settings,
    clock: std::sync::Arc<VirtualClock>,
) -> Result<(std::sync::Arc<Context>, tempfile::TempDir), String> {
    let dir =
        tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let store = crate::store::open(&crate::store::StoreSettings::Sqlite {
        path: dir.path().join("replay.db"),
    })
    .map_err(|e| e.to_string())?;
    Ok((Context::new(settings, store, clock), dir))
}

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplaySpec {
    /// The instant of the (hypothetical) release.
    pub release_at: Millis,
    /// No tick after this (default: the end of the watch window).
    pub until: Option<Millis>,
    /// The release's `{{version}}` and `{{previous_version}}`.
    pub version: String,
    pub previous_version: Option<String>,
}

/// One replayed tick: its instant and the checks as it left them.
#[derive(Debug, Clone)]
pub struct ReplayTick {
    pub at: Millis,
    pub checks: Vec<CheckRecord>,
}

/// What a replay found.
#[derive(Debug, Clone)]
pub struct Replay {
    pub release: Release,
    pub ticks: Vec<ReplayTick>,
    /// Every decision the ticks recorded, in order.
    pub decisions: Vec<Decision>,
    /// The tick that would have rolled back, and the check that made it.
    pub rollback_at: Option<Millis>,
    pub rollback_check: Option<String>,
}

impl Replay {
    /// The checks as the last tick at or before `at` left them (empty
    /// before the first tick).
    pub fn checks_at(&self, at: Millis) -> &[CheckRecord] {
        self.ticks
            .iter()
            .rev()
            .find(|t| t.at <= at)
            .map(|t| t.checks.as_slice())
            .unwrap_or(&[])
    }
}

/// The release a replay watches: `service` released at `spec.release_at`.
pub fn release(service: &Service, spec: &ReplaySpec) -> Release {
    Release {
        id: format!("replay-{}", service.name),
        service: service.name.clone(),
        environment: service.environment.clone(),
        version: spec.version.clone(),
        previous_version: spec.previous_version.clone(),
        annotations: Default::default(),
        status: ReleaseStatus::Watching,
        started_at: spec.release_at,
        next_check_at: None,
        ended_at: None,
        acked: false,
        superseded_by: None,
    }
}

/// Replays `service` from `spec.release_at`, reading through `ctx`'s
/// sources; `clock` (the context's clock) is moved to each tick.
pub async fn run(
    ctx: &Context,
    clock: &VirtualClock,
    service: &Service,
    spec: &ReplaySpec,
) -> Replay {
    let start = spec.release_at;
    let mut release = release(service, spec);
    let first = service.cadence_for(&release).next_tick(start, start);
    let mut replay = Replay {
        release: release.clone(),
        ticks: Vec::new(),
        decisions: Vec::new(),
        rollback_at: None,
        rollback_check: None,
    };
    let mut checks: Vec<CheckRecord> = Vec::new();
    let mut reached_rollback = false;
    let mut due = first;
    while let Some(now) = due {
        if spec.until.is_some_and(|u| now > u) {
            break;
        }
        release.next_check_at = Some(now);
        clock.set(now);
        let out = tick::evaluate(ctx, &release, service, checks, now).await;
        let mut decisions = out.decisions;
        let mut rollback_requested = false;
        match &out.rollback {
            Some(
                trigger @ tick::RollbackTrigger {
                    recovered_at: Some(recovered_at),
                    ..
                },
            ) => {
                let (decision, _) =
                    tick::recovered_breach(&release, service, trigger, *recovered_at, now);
                decisions.push(decision);
            }
            Some(trigger) => {
                decisions.extend(rollback::on_trigger(&release, service, trigger, now).decision);
                rollback_requested = true;
                replay.rollback_at = Some(now);
                replay.rollback_check = Some(trigger.check.clone());
            }
            None => {}
        }
        reached_rollback |=
            out.rollback.is_some() || decisions.iter().any(|d| d.level == Some(Level::Rollback));
        checks = out.checks;
        let cadence_next = verdict::cadence_next(service, &release, &checks, now);
        let facts = verdict::facts(
            service,
            &release,
            &checks,
            now,
            cadence_next,
            rollback_requested,
            reached_rollback,
        );
        replay.decisions.extend(decisions);
        replay.ticks.push(ReplayTick {
            at: now,
            checks: checks.clone(),
        });
        due = match verdict::decide(&facts) {
            verdict::Verdict::KeepWatching { next } | verdict::Verdict::Retry { next, .. } => {
                Some(look_between(ctx, clock, service, &release, &checks, now, next).await)
            }
            verdict::Verdict::RollbackRequested
            | verdict::Verdict::Verified { .. }
            | verdict::Verdict::WindowEnded => None,
        };
    }
    replay
}

/// The next tick after one at `now` that scheduled `next`: the first look
/// between them ([`sentinel`]) that finds a check worse, as the daemon's
/// watch would look, or `next`.
async fn look_between(
    ctx: &Context,
    clock: &VirtualClock,
    service: &Service,
    release: &Release,
    checks: &[CheckRecord],
    now: Millis,
    next: Millis,
) -> Millis {
    let Some(every) = sentinel::every(service, release) else {
        return next;
    };
    let mut at = now.saturating_add(every.max(1));
    while at < next {
        clock.set(at);
        if sentinel::looks_worse(ctx, release, service, checks, at).await {
            return at;
        }
        at = at.saturating_add(every.max(1));
    }
    next
}
