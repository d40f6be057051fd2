//! The life of one watch: wait for the next tick, tick, commit, repeat; and
//! the execution of a release's (single) rollback.

use super::{messages, tick, Guardian};
use crate::actions::rollback::RollbackMode;
use crate::actions::rollback::{self, HookVars};
use crate::config::Service;
use crate::model::{
    CheckRecord, CheckState, Decision, Level, Millis, Release, ReleaseStatus, RollbackRecord,
    RollbackState, Severity,
};
use crate::sources::Reads;
use crate::store::{StoreError, TickApplied, TickCommit};
use crate::telemetry::{Outcome, OutcomeLabels};
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

/// Runs a watch until it ends, is cancelled, or leaves `watching`.
pub async fn run(g: &Arc<Guardian>, id: &str, cancel: CancellationToken) {
    let mut paused = false;
    loop {
        let release = match g.ctx.store.get_release(id).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(release = %id, error = %e, "cannot read release");
                if sleep_or_cancel(&cancel, RETRY_AFTER_ERROR).await {
                    return;
                }
                continue;
            }
        };
        if release.status != ReleaseStatus::Watching {
            return;
        }
        let Some(due) = release.next_check_at else {
            return;
        };
        let wait = due - g.ctx.clock.now();
        if wait > 0 && sleep_or_cancel(&cancel, Duration::from_millis(wait as u64)).await {
            return;
        }
        if cancel.is_cancelled() {
            return;
        }
        match tick_once(g, &release, &mut paused).await {
            Ok(Next::Continue) => {}
            Ok(Next::Pause) => {
                if sleep_or_cancel(&cancel, PAUSE_POLL).await {
                    return;
                }
            }
            Ok(Next::Stop) => return,
            Err(e) => {
                tracing::error!(release = %id, error = %e, "tick failed; retrying");
                if sleep_or_cancel(&cancel, RETRY_AFTER_ERROR).await {
                    return;
                }
            }
        }
    }
}

/// Sleeps; true if cancelled first.
async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

async fn tick_once(
    g: &Arc<Guardian>,
    release: &Release,
    paused: &mut bool,
) -> Result<Next, StoreError> {
    let ctx = &g.ctx;
    let started = Instant::now();
    let settings = ctx.settings();
    let now = ctx.clock.now();
    let Some(service) = settings.service(&release.service, &release.environment) else {
        // A reload dropped (or renamed) the service. Pause rather than end the
        // watch: a config mistake must not abort watches for good. Once the
        // service is back, the next tick reads the whole gap.
        if !*paused {
            let d = Decision {
                at: now,
                check: None,
                level: None,
                action: "paused".into(),
                reason: format!(
                    "service {:?} ({}) is no longer in the configuration; the watch is paused until it is back (abort it if it is gone for good)",
                    release.service, release.environment
                ),
            };
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
    let mut messages_out = out.messages;
    let mut commit = TickCommit {
        checks: out.checks,
        now,
        ..Default::default()
    };

    if let Some(tick::RollbackTrigger {
        at,
        check,
        value,
        reason,
    }) = &out.rollback
    {
        match service.rollback.as_ref().map(|r| r.mode) {
            Some(RollbackMode::Auto) => {
                commit.rollback = Some(RollbackRecord {
                    state: RollbackState::Requested,
                    reason: reason.clone(),
                    trigger: RollbackMode::Auto.as_str().into(),
                    requested_at: now,
                    started_at: None,
                    finished_at: None,
                    exit_code: None,
                    output: None,
                });
                decisions.push(Decision {
                    at: now,
                    check: Some(check.clone()),
                    level: Some(Level::Rollback),
                    action: "rollback_requested".into(),
                    reason: format!("automatic rollback: {reason}"),
                });
            }
            Some(RollbackMode::Manual) => {
                let why = format!("rollback recommended (mode = \"manual\"): {reason}; POST /v1/releases/{}/rollback to roll back", release.id);
                decisions.push(Decision {
                    at: now,
                    check: Some(check.clone()),
                    level: Some(Level::Rollback),
                    action: "rollback_recommended".into(),
                    reason: why.clone(),
                });
                let mut msg = messages::release_event(
                    release,
                    "rollback_recommended",
                    Severity::Critical,
                    &why,
                    *at,
                    &format!("rollback/recommended/{at}"),
                );
                msg.check = Some(check.clone());
                msg.level = Some(Level::Rollback);
                msg.value = value.is_finite().then_some(*value);
                messages_out.push(msg);
            }
            None => {
                decisions.push(Decision {
                    at: now,
                    check: Some(check.clone()),
                    level: Some(Level::Rollback),
                    action: "rollback_unavailable".into(),
                    reason: format!("{reason}; no rollback hook is configured for this service"),
                });
            }
        }
    }

    let window_end = release.started_at + service.cadence.length();
    let mut next = service.cadence.next_tick(release.started_at, now);
    // Range checks the window's last ticks could not read (source down):
    // retry them for one more interval before ending the watch.
    let unjudged = unjudged_checks(service, &commit.checks, window_end);
    let grace_end = window_end + service.cadence.last_every();
    if next.is_none() && !unjudged.is_empty() && now < grace_end && commit.rollback.is_none() {
        let retry = (service.cadence.last_every() / 4).clamp(1_000, 60_000);
        next = Some((now + retry).min(grace_end));
        if release.next_check_at.is_none_or(|due| due <= window_end) {
            decisions.push(Decision {
                at: now,
                check: None,
                level: None,
                action: "window_ended".into(),
                reason: format!(
                    "the watch window ended but {} could not be read to its end; retrying until {}",
                    unjudged.join(", "),
                    crate::model::rfc3339(grace_end)
                ),
            });
        }
    }
    commit.next_check_at = next;
    if next.is_none() && commit.rollback.is_none() {
        let reached = out.rollback.is_some() || reached_rollback_before(g, &release.id).await?;
        if reached {
            decisions.push(Decision {
                at: now,
                check: None,
                level: Some(Level::Rollback),
                action: "window_ended".into(),
                reason: "the watch window ended; a check reached the rollback level, so the release is not verified — waiting for a manual rollback or abort".into(),
            });
        } else {
            commit.status = Some(ReleaseStatus::Verified);
            // Also name checks that ended inconclusive (e.g. a query that
            // returned no data all along): they were read, but not judged.
            let mut unjudged = unjudged.clone();
            for c in &commit.checks {
                if c.state == CheckState::Inconclusive && !unjudged.contains(&c.name) {
                    unjudged.push(c.name.clone());
                }
            }
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
            decisions.push(Decision {
                at: now,
                check: None,
                level: None,
                action: "verified".into(),
                reason: reason.clone(),
            });
            messages_out.push(messages::release_event(
                release, "verified", severity, &reason, now, "verified",
            ));
        }
    }
    commit.decisions = decisions;
    commit.notifications = messages_out
        .iter()
        .flat_map(|m| messages::records_for(&settings, release, m, now))
        .collect();

    let applied = ctx.store.commit_tick(&release.id, &commit).await?;
    ctx.telemetry.ticks.inc();
    ctx.telemetry
        .tick_duration
        .observe(started.elapsed().as_secs_f64());
    for d in &commit.decisions {
        ctx.telemetry
            .decisions
            .get_or_create(&crate::telemetry::ActionLabels {
                action: d.action.clone(),
            })
            .inc();
        tracing::info!(release = %release.id, service = %release.service, action = %d.action, reason = %d.reason, "decision");
    }
    if !commit.notifications.is_empty() {
        g.outbox.wake();
    }
    match applied {
        TickApplied::NotWatching => Ok(Next::Stop),
        TickApplied::Applied {
            rollback_requested: true,
        } => {
            g.spawn_rollback(&release.id);
            Ok(Next::Stop)
        }
        TickApplied::Applied {
            rollback_requested: false,
        } => Ok(if next.is_some() {
            Next::Continue
        } else {
            Next::Stop
        }),
    }
}

/// Range checks whose readings stop short of the window's end (the last
/// grid point at or before it).
fn unjudged_checks(service: &Service, checks: &[CheckRecord], window_end: Millis) -> Vec<String> {
    service
        .checks
        .iter()
        .filter(|spec| spec.source.reads == Reads::Query)
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

async fn reached_rollback_before(g: &Guardian, id: &str) -> Result<bool, StoreError> {
    Ok(g.ctx
        .store
        .release_details(id)
        .await?
        .is_some_and(|d| d.decisions.iter().any(|x| x.level == Some(Level::Rollback))))
}

/// Runs the release's rollback hook if this caller wins the
/// `requested → running` move; records the outcome. Never runs twice. The
/// start and the outcome are each written in one transaction together with
/// their decision and pages, so a crash cannot lose a rollback page.
pub async fn execute_rollback(g: &Arc<Guardian>, id: &str) -> Result<(), StoreError> {
    let ctx = &g.ctx;
    let Some(release) = ctx.store.get_release(id).await? else {
        return Ok(());
    };
    let Some(record) = ctx.store.get_rollback(id).await? else {
        return Ok(());
    };
    let settings = ctx.settings();
    let hook = settings
        .service(&release.service, &release.environment)
        .and_then(|s| s.rollback.clone());
    let now = ctx.clock.now();
    const NO_HOOK: &str = "no rollback hook is configured for this service any more";
    // A newer release of the service may have been deployed since the
    // rollback was decided (e.g. a fix-forward while the daemon was down):
    // running the hook now would undo it.
    let newer = newer_release(g, &release).await?;
    let blocked = match (&hook, &newer) {
        (None, _) => Some(NO_HOOK.to_string()),
        (Some(_), Some(n)) => Some(format!(
            "{} ({}) was deployed after {}; rolling back now would undo it",
            n.version, n.id, release.version
        )),
        _ => None,
    };
    let started = Decision {
        at: now,
        check: None,
        level: Some(Level::Rollback),
        action: "rollback_started".into(),
        reason: match (&hook, &blocked) {
            (Some(hook), None) => format!(
                "running the rollback hook {:?}: {}",
                hook.command.first().map(String::as_str).unwrap_or(""),
                record.reason
            ),
            _ => format!(
                "cannot run the rollback: {}",
                blocked.as_deref().unwrap_or(NO_HOOK)
            ),
        },
    };
    let mut page = messages::release_event(
        &release,
        "rollback_started",
        Severity::Critical,
        &format!(
            "rolling back {} to {}: {}",
            release.version,
            release
                .previous_version
                .as_deref()
                .unwrap_or("the previous version"),
            record.reason
        ),
        now,
        "rollback/started",
    );
    page.level = Some(Level::Rollback);
    let pages = match blocked {
        None => messages::records_for(&settings, &release, &page, now),
        Some(_) => Vec::new(),
    };
    // Only the caller that moves the rollback from requested to running may
    // act on it, whether it runs the hook or records that it cannot.
    if !ctx.store.start_rollback(id, now, &started, &pages).await? {
        return Ok(());
    }
    g.outbox.wake();
    let (Some(hook), None) = (hook, blocked.as_ref()) else {
        let why = blocked.unwrap_or_default();
        return finish(g, &release, RollbackState::Failed, None, None, why, now).await;
    };
    tracing::warn!(release = %id, service = %release.service, reason = %record.reason, "rollback hook starting");
    let vars = HookVars {
        release_id: release.id.clone(),
        service: release.service.clone(),
        environment: release.environment.clone(),
        version: release.version.clone(),
        previous_version: release.previous_version.clone().unwrap_or_default(),
        reason: record.reason.clone(),
    };
    let run = rollback::run_hook(&hook, &vars).await;
    let done = ctx.clock.now();
    // The hook's output may quote credentials: redacted before it is kept,
    // sent or logged anywhere.
    let redactor = crate::config::Redactor::from_settings(&settings);
    let (state, reason) = if run.succeeded() {
        (
            RollbackState::Succeeded,
            format!(
                "rolled back {} to {}: the rollback hook exited 0 after {} ms",
                release.version,
                release
                    .previous_version
                    .as_deref()
                    .unwrap_or("the previous version"),
                done - now
            ),
        )
    } else {
        (
            RollbackState::Failed,
            format!("rollback hook failed: {}", redactor.redact(&run.describe())),
        )
    };
    let output = redactor.redact(&run.output);
    finish(
        g,
        &release,
        state,
        run.exit_code,
        Some(output.as_str()),
        reason,
        done,
    )
    .await
}

/// The latest release of the same service and environment, if it is not
/// this one.
async fn newer_release(g: &Guardian, release: &Release) -> Result<Option<Release>, StoreError> {
    let filter = crate::store::ReleaseFilter {
        service: Some(release.service.clone()),
        environment: Some(release.environment.clone()),
        status: None,
        limit: 1,
        before: None,
    };
    let latest = g.ctx.store.list_releases(&filter).await?.into_iter().next();
    Ok(latest.filter(|l| l.id != release.id))
}

/// Attempts at recording a rollback's outcome before giving up (the hook
/// has run: losing its outcome would report it as interrupted).
const FINISH_ATTEMPTS: u32 = 10;

/// Records the outcome with its decision and page, retrying store errors.
async fn finish(
    g: &Arc<Guardian>,
    release: &Release,
    state: RollbackState,
    exit_code: Option<i32>,
    output: Option<&str>,
    reason: String,
    now: Millis,
) -> Result<(), StoreError> {
    let ok = state == RollbackState::Succeeded;
    let action = if ok { "rolled_back" } else { "rollback_failed" };
    let decision = Decision {
        at: now,
        check: None,
        level: None,
        action: action.into(),
        reason: reason.clone(),
    };
    let severity = if ok {
        Severity::Warning
    } else {
        Severity::Critical
    };
    let page =
        messages::release_event(release, action, severity, &reason, now, "rollback/finished");
    let pages = messages::records_for(&g.ctx.settings(), release, &page, now);
    let mut attempt = 1;
    loop {
        match g
            .ctx
            .store
            .finish_rollback(
                &release.id,
                state,
                exit_code,
                output,
                &decision,
                &pages,
                now,
            )
            .await
        {
            Ok(()) => break,
            Err(e) if attempt < FINISH_ATTEMPTS => {
                tracing::error!(release = %release.id, attempt, error = %e, "cannot record the rollback outcome; retrying");
                tokio::time::sleep(crate::transport::backoff(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
    g.outbox.wake();
    let outcome = if ok {
        Outcome::succeeded
    } else {
        Outcome::failed
    };
    g.ctx
        .telemetry
        .rollbacks
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
    tracing::warn!(release = %release.id, outcome = action, %reason, "rollback finished");
    Ok(())
}
