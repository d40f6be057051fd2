//! The life of one watch: wait for the next tick (the Guardian renews every
//! watch's lease meanwhile, in one write), tick, gather the facts for the [`verdict`], turn the verdict
//! into decisions, pages and a status, commit it all in one fenced
//! transaction, repeat. A rollback trigger is handed to
//! [`rollback::on_trigger`]; the rollback itself runs in its own task.

use super::read::scrape_holds;
use super::{messages, reminders, rollback, sentinel, tick, verdict, Guardian};
use crate::model::{Decision, Level, Millis, Release, ReleaseStatus, Severity};
use crate::sources::scrape::Target;
use crate::store::{StoreError, TickApplied, TickCommit};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Pause after a failed store operation before the watch tries again.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

enum Next {
    Continue,
    /// The service is not configured: look again after [`PAUSE_POLL`].
    Pause,
    Stop,
}

/// How often a paused watch checks whether its service is configured again.
const PAUSE_POLL: Duration = Duration::from_secs(5);

/// Runs a watch until it ends, is cancelled, leaves `watching`, or another
/// replica takes its lease. A watch that ends by itself gives its lease up
/// once the release is over (a release rolling back keeps it for the
/// rollback).
///
/// `registered` is the release as its registration's commit wrote it, when
/// the watch starts right after it: the watch waits for its first tick
/// from that row instead of reading it again, and reads it again only when
/// the wait ends, to tick from the row as it is then.
pub async fn run(
    g: &Arc<Guardian>,
    id: &str,
    registered: Option<Release>,
    cancel: CancellationToken,
) {
    let mut seen = None;
    let ended = watch(g, id, registered, &cancel, &mut seen).await;
    forget_probes(g, id, seen.as_ref()).await;
    if ended && !cancel.is_cancelled() {
        match g.ctx.store.get_release(id).await {
            Ok(Some(r)) if r.status == ReleaseStatus::RollingBack => {}
            Ok(Some(r)) if r.status == ReleaseStatus::Watching && r.next_check_at.is_some() => {}
            Ok(_) => g.release_lease(id).await,
            Err(e) => {
                tracing::warn!(release = %id, error = %e, "cannot read the release; its lease expires by itself")
            }
        }
    }
}

/// The watch's own time: the wall clock when its task started, advanced by
/// the monotonic clock since. Waits, the cadence, the window's end and range
/// reads follow it, so a step of the wall clock (an NTP correction, a VM
/// resumed) neither fires a tick early, nor ends the watch early, nor stalls
/// it; decisions and pages are stamped with the wall clock. A restarted
/// watch anchors to the wall clock again.
pub(super) struct WatchClock {
    wall0: Millis,
    mono0: tokio::time::Instant,
}

impl WatchClock {
    pub(super) fn new(clock: &dyn crate::clock::Clock) -> Self {
        Self {
            wall0: clock.now(),
            mono0: tokio::time::Instant::now(),
        }
    }

    /// The watch's time now.
    pub(super) fn now(&self) -> Millis {
        self.wall0 + self.mono0.elapsed().as_millis() as Millis
    }

    /// The monotonic instant at which the watch's time reaches `t`.
    fn instant_at(&self, t: Millis) -> tokio::time::Instant {
        self.mono0 + Duration::from_millis((t - self.wall0).max(0) as u64)
    }
}

/// The watch loop; true if it ended by itself, false if cancelled or its
/// lease was lost. `seen` keeps the first row it read (or was given).
async fn watch(
    g: &Arc<Guardian>,
    id: &str,
    mut registered: Option<Release>,
    cancel: &CancellationToken,
    seen: &mut Option<Release>,
) -> bool {
    let mut paused = false;
    let mut blind = super::blindness::Blindness::default();
    let time = WatchClock::new(g.ctx.clock.as_ref());
    // The scrape targets of the service, scraped while this is held.
    let mut _scrapes: Vec<Arc<Target>> = Vec::new();
    loop {
        // The registration's row serves the first wait only (see below).
        let (mut release, read) = match registered.take() {
            Some(r) => (r, false),
            None => match g.ctx.store.get_release(id).await {
                Ok(Some(r)) => (r, true),
                Ok(None) => return true,
                Err(e) => {
                    if read_failed(id, e, cancel).await {
                        return false;
                    }
                    continue;
                }
            },
        };
        if seen.is_none() {
            *seen = Some(release.clone());
        }
        if release.status != ReleaseStatus::Watching {
            return true;
        }
        let Some(due) = release.next_check_at else {
            return true;
        };
        _scrapes = hold_scrapes(g, &release);
        let tick_at = time.instant_at(due);
        if tick_at > tokio::time::Instant::now() {
            // The Guardian renews every lease at once (`renew_leases`); the
            // watch sleeps until its tick, or its next reminder if that
            // comes first, on the monotonic clock.
            let remind_at = send_reminders(g, &release, time.now())
                .await
                .map(|at| time.instant_at(at))
                .filter(|at| *at < tick_at);
            match wait_for_tick(g, &release, &time, tick_at, remind_at, cancel).await {
                Wait::Cancelled => return false,
                // A reminder is due: send it (and find the next) first.
                Wait::Reminder => continue,
                Wait::Tick => {}
            }
        }
        if cancel.is_cancelled() {
            return false;
        }
        if !read {
            // A tick starts from the row as the store has it now, not as
            // the registration wrote it (an abort, or another replica's
            // write, may have come since).
            release = match g.ctx.store.get_release(id).await {
                Ok(Some(r)) if r.status == ReleaseStatus::Watching && r.next_check_at.is_some() => {
                    r
                }
                Ok(_) => return true,
                Err(e) => {
                    if read_failed(id, e, cancel).await {
                        return false;
                    }
                    continue;
                }
            };
        }
        let late = (time.now() - due).max(0);
        g.ctx.telemetry.tick_lateness.observe(late as f64 / 1000.0);
        match tick_once(g, &release, &mut paused, &mut blind, time.now()).await {
            Ok(Next::Continue) => {}
            Ok(Next::Pause) => {
                if sleep_or_cancel(cancel, PAUSE_POLL).await {
                    return false;
                }
            }
            Ok(Next::Stop) => return true,
            Err(e) => {
                tracing::error!(release = %id, error = %e, "tick failed; retrying");
                if sleep_or_cancel(cancel, RETRY_AFTER_ERROR).await {
                    return false;
                }
            }
        }
    }
}

/// Why [`wait_for_tick`] returned.
enum Wait {
    Tick,
    Reminder,
    Cancelled,
}

/// Sleeps until `tick_at` or `remind_at`, whichever comes first, looking at
/// the query checks every `sentinel_every` meanwhile ([`sentinel`]): a look
/// that finds a check worse ends the wait at once, so the tick comes now.
async fn wait_for_tick(
    g: &Arc<Guardian>,
    release: &Release,
    time: &WatchClock,
    tick_at: tokio::time::Instant,
    remind_at: Option<tokio::time::Instant>,
    cancel: &CancellationToken,
) -> Wait {
    let until = remind_at.unwrap_or(tick_at);
    // The last tick's check records, read at the first look.
    let mut checks: Option<Vec<crate::model::CheckRecord>> = None;
    loop {
        let settings = g.ctx.settings();
        let service = settings.service(&release.service, &release.environment);
        let look_at = service
            .and_then(|s| sentinel::every(s, release))
            .map(|every| tokio::time::Instant::now() + Duration::from_millis(every as u64))
            .filter(|at| *at < until);
        drop(settings);
        if sleep_until_or_cancel(cancel, look_at.unwrap_or(until)).await {
            return Wait::Cancelled;
        }
        if look_at.is_none() {
            return if remind_at.is_some() {
                Wait::Reminder
            } else {
                Wait::Tick
            };
        }
        let settings = g.ctx.settings();
        let Some(service) = settings.service(&release.service, &release.environment) else {
            continue;
        };
        let records = match &checks {
            Some(c) => c,
            None => match g.ctx.store.load_checks(&release.id).await {
                Ok(c) => checks.insert(c),
                Err(e) => {
                    tracing::warn!(release = %release.id, error = %e, "cannot read the checks for a look between ticks");
                    continue;
                }
            },
        };
        g.ctx.telemetry.sentinel_looks.inc();
        if sentinel::looks_worse(&g.ctx, release, service, records, time.now()).await {
            g.ctx.telemetry.sentinel_ticks.inc();
            tracing::info!(release = %release.id, service = %release.service, "a check looks worse between ticks; ticking now");
            return Wait::Tick;
        }
    }
}

/// Queues the `repeat_every` reminders due at `now` ([`reminders::due`])
/// and returns when the next one is due; `None` (and no store read) when no
/// notifier of the service has `repeat_every`. Errors are logged: a missed
/// reminder is sent at the next wake-up.
async fn send_reminders(g: &Arc<Guardian>, release: &Release, now: Millis) -> Option<Millis> {
    let settings = g.ctx.settings();
    if !reminders::wanted(&settings, release) {
        return None;
    }
    let details = match g.ctx.store.release_details(&release.id).await {
        Ok(Some(d)) => d,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(release = %release.id, error = %e, "cannot read the release for its reminders");
            return None;
        }
    };
    let log = super::incidents::IncidentLog::from_rows(&details.notifications);
    let due = reminders::due(&settings, &details.release, &details.checks, &log, now);
    if !due.rows.is_empty() {
        match g.ctx.store.enqueue(&due.rows).await {
            Ok(_) => g.outbox.wake(),
            Err(e) => {
                tracing::warn!(release = %release.id, error = %e, "cannot queue reminders");
            }
        }
    }
    due.next
}

/// Holds the scrape targets of the release's service (as configured now),
/// so that they are scraped from the watch's start to its end.
fn hold_scrapes(g: &Guardian, release: &Release) -> Vec<Arc<Target>> {
    let settings = g.ctx.settings();
    let Some(service) = settings.service(&release.service, &release.environment) else {
        return Vec::new();
    };
    scrape_holds(service)
        .into_iter()
        .map(|(cfg, retention)| g.ctx.scrapes.hold(cfg, retention))
        .collect()
}

/// Drops the probe gauges of a watch that ended (the next watch of the
/// service in that environment sets them again at its first tick). A
/// release's service and environment never change, so the row the watch
/// last saw names them; the release is read only if the watch never saw it.
async fn forget_probes(g: &Guardian, id: &str, seen: Option<&Release>) {
    let read;
    let release = match seen {
        Some(r) => r,
        None => {
            let Ok(Some(r)) = g.ctx.store.get_release(id).await else {
                return;
            };
            read = r;
            &read
        }
    };
    let settings = g.ctx.settings();
    if let Some(service) = settings.service(&release.service, &release.environment) {
        for p in &service.probes {
            g.ctx.telemetry.forget_probe(
                &format!("{}/{}", service.name, p.name),
                &service.environment,
            );
        }
    }
}

/// Logs a failed read of the release and pauses before the next; true if
/// cancelled meanwhile.
async fn read_failed(id: &str, e: StoreError, cancel: &CancellationToken) -> bool {
    tracing::error!(release = %id, error = %e, "cannot read release");
    sleep_or_cancel(cancel, RETRY_AFTER_ERROR).await
}

/// Sleeps until a monotonic instant; true if cancelled first.
async fn sleep_until_or_cancel(cancel: &CancellationToken, at: tokio::time::Instant) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep_until(at) => false,
    }
}

/// Sleeps; true if cancelled first.
async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// One tick at the watch's time `now` ([`WatchClock`]); what it records is
/// stamped with the wall clock (`wall`).
async fn tick_once(
    g: &Arc<Guardian>,
    release: &Release,
    paused: &mut bool,
    blind: &mut super::blindness::Blindness,
    now: Millis,
) -> Result<Next, StoreError> {
    let ctx = &g.ctx;
    let started = Instant::now();
    let settings = ctx.settings();
    let wall = ctx.clock.now();
    let Some(service) = settings.service(&release.service, &release.environment) else {
        // A reload dropped (or renamed) the service. Pause rather than end the
        // watch: a config mistake must not abort watches for good. Once the
        // service is back, the next tick reads the whole gap.
        if !*paused {
            let d = Decision::paused(
                wall,
                format!(
                    "service {:?} ({}) is no longer in the configuration; the watch is paused until it is back (abort it if it is gone for good)",
                    release.service, release.environment
                ),
            );
            ctx.store.append_decision(&release.id, &d).await?;
            tracing::warn!(release = %release.id, service = %release.service, "service no longer configured; watch paused");
            *paused = true;
        }
        return Ok(Next::Pause);
    };
    *paused = false;
    let previous = ctx.store.load_checks(&release.id).await?;
    let out = tick::evaluate(ctx, release, service, previous, now).await;
    let mut decisions = out.decisions;
    // Decisions that judged data were decided now; their data's instant is
    // their `observed_at`.
    for d in decisions.iter_mut().filter(|d| d.observed_at.is_some()) {
        d.at = wall;
    }
    let mut messages_out = out.messages;
    messages_out.extend(blind.update(&out.sources_seen, &settings, release, wall));
    let mut commit = TickCommit {
        lease_owner: Some(g.owner().to_string()),
        checks: out.checks,
        points: out.points,
        now: wall,
        ..Default::default()
    };

    match &out.rollback {
        Some(
            trigger @ tick::RollbackTrigger {
                recovered_at: Some(recovered_at),
                ..
            },
        ) => {
            let (decision, message) =
                tick::recovered_breach(release, service, trigger, *recovered_at, wall);
            decisions.push(decision);
            messages_out.push(message);
        }
        Some(trigger) => {
            let outcome = rollback::on_trigger(release, service, trigger, wall);
            commit.rollback = outcome.request;
            decisions.extend(outcome.decision);
            messages_out.extend(outcome.message);
        }
        None => {}
    }

    let cadence_next = verdict::cadence_next(service, release, &commit.checks, now);
    let rollback_requested = commit.rollback.is_some();
    let reached_rollback = out.rollback.is_some()
        || (verdict::needs_history(cadence_next, rollback_requested)
            && reached_rollback_before(g, &release.id).await?);
    let facts = verdict::facts(
        service,
        release,
        &commit.checks,
        now,
        cadence_next,
        rollback_requested,
        reached_rollback,
    );
    let verdict = verdict::decide(&facts);
    commit.next_check_at = verdict.next_check_at(&facts);
    match &verdict {
        verdict::Verdict::KeepWatching { .. } | verdict::Verdict::RollbackRequested => {}
        verdict::Verdict::Retry {
            until,
            unread,
            announce,
            ..
        } => {
            if *announce {
                decisions.push(Decision::window_ended(
                    wall,
                    format!(
                        "the watch window ended but {} could not be read to its end; retrying until {}",
                        unread.join(", "),
                        crate::model::rfc3339(*until)
                    ),
                ));
            }
        }
        verdict::Verdict::WindowEnded => {
            decisions.push(Decision::window_ended(wall, "the watch window ended; a check reached the rollback level, so the release is not verified — waiting for a manual rollback or abort").with_level(Level::Rollback));
        }
        verdict::Verdict::Verified { unjudged } => {
            commit.status = Some(ReleaseStatus::Verified);
            let (reason, severity) = if unjudged.is_empty() {
                (
                    "the watch window ended and no check reached the rollback level".to_string(),
                    Severity::Info,
                )
            } else {
                (
                    format!(
                        "the watch window ended and no check reached the rollback level, but {} could not be judged to the end of the window (source unavailable): verify by hand",
                        unjudged.join(", ")
                    ),
                    Severity::Warning,
                )
            };
            decisions.push(Decision::verified(wall, reason.clone()));
            messages_out.push(messages::release_event(
                release, "verified", severity, &reason, wall, "verified",
            ));
        }
    }
    commit.decisions = decisions;
    let verified = matches!(verdict, verdict::Verdict::Verified { .. });
    if !messages_out.is_empty() || verified {
        let mut log = g.incident_log(&release.id).await?;
        for m in &messages_out {
            let rows = messages::records_for(&settings, release, m, wall, &mut log);
            commit.notifications.extend(rows);
        }
        if verified {
            commit.notifications.extend(messages::ending_records(
                &settings,
                release,
                &commit.checks,
                messages::Ending::Verified,
                wall,
                &mut log,
            ));
        }
    }

    let applied = match ctx.store.commit_tick(&release.id, &commit).await {
        Ok(applied) => applied,
        Err(e) => {
            // Not ready until a write goes through again (`/readyz`).
            g.note_write(Err(format!("a tick's commit failed: {e}")));
            return Err(e);
        }
    };
    ctx.telemetry.ticks.inc();
    ctx.telemetry
        .tick_duration
        .observe(started.elapsed().as_secs_f64());
    if applied == TickApplied::LeaseLost {
        tracing::warn!(release = %release.id, "another replica took this watch's lease; the tick was not written");
        return Ok(Next::Stop);
    }
    for d in &commit.decisions {
        ctx.telemetry
            .decisions
            .get_or_create(&crate::telemetry::ActionLabels {
                action: d.action.as_str().into(),
            })
            .inc();
        tracing::info!(release = %release.id, service = %release.service, action = %d.action, reason = %d.reason, "decision");
    }
    if !commit.notifications.is_empty() {
        g.outbox.wake();
    }
    match applied {
        TickApplied::NotWatching | TickApplied::LeaseLost => Ok(Next::Stop),
        TickApplied::Applied {
            rollback_requested: true,
        } => {
            g.spawn_rollback(&release.id);
            Ok(Next::Stop)
        }
        TickApplied::Applied {
            rollback_requested: false,
        } => Ok(if commit.next_check_at.is_some() {
            Next::Continue
        } else {
            Next::Stop
        }),
    }
}

async fn reached_rollback_before(g: &Guardian, id: &str) -> Result<bool, StoreError> {
    Ok(g.ctx
        .store
        .release_details(id)
        .await?
        .is_some_and(|d| d.decisions.iter().any(|x| x.level == Some(Level::Rollback))))
}
