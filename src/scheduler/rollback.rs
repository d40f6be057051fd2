//! Rollback execution, from a rule's trigger to the outcome: what a tick
//! does when a check reaches the rollback level (request, recommend, or say
//! that no hook exists — [`on_trigger`]); the run of a requested rollback
//! ([`execute`]: claim the rollback, run the hook through
//! [`crate::actions::rollback`] while keeping the watch's lease, record the
//! outcome with its decision and pages); and the recovery of a rollback a
//! restart finds ([`recover`]: start a requested one; for one that was
//! running, record the outcome the hook supervisor wrote, adopt a
//! supervisor still running, or report the outcome unknown; never run the
//! hook twice). The at-most-once gate is the store's
//! rollback claim.

use super::{messages, tick, Guardian, LEASE_RENEW_EVERY};
use crate::actions::hook_supervisor;
use crate::actions::rollback::{self, HookVars};
use crate::actions::rollback::{RollbackConfig, RollbackMode};
use crate::actions::rollback_http;
use crate::config::Service;
use crate::model::{
    Decision, Level, Message, Millis, Release, RollbackRecord, RollbackState, Severity,
};
use crate::store::StoreError;
use crate::telemetry::{Outcome, OutcomeLabels};
use std::sync::Arc;

/// What a tick records when a check reached the rollback level.
#[derive(Debug, Default)]
pub(super) struct TriggerOutcome {
    /// The rollback to request (mode `auto`).
    pub request: Option<RollbackRecord>,
    pub decision: Option<Decision>,
    pub message: Option<Message>,
}

/// Turns a tick's rollback trigger into a request (mode `auto`), a
/// recommendation with a page (mode `manual`), or a note that the service has
/// no hook.
pub(super) fn on_trigger(
    release: &Release,
    service: &Service,
    trigger: &tick::RollbackTrigger,
    now: Millis,
) -> TriggerOutcome {
    let tick::RollbackTrigger {
        at,
        check,
        value,
        reason,
        ..
    } = trigger;
    match service.rollback.as_ref().map(|r| r.mode) {
        Some(RollbackMode::Auto) => TriggerOutcome {
            request: Some(RollbackRecord {
                state: RollbackState::Requested,
                reason: reason.clone(),
                trigger: RollbackMode::Auto.as_str().into(),
                requested_at: now,
                started_at: None,
                finished_at: None,
                exit_code: None,
                output: None,
            }),
            decision: Some(
                Decision::rollback_requested(now, format!("automatic rollback: {reason}"))
                    .with_check(check.clone()),
            ),
            message: None,
        },
        Some(RollbackMode::Manual) => {
            let why = format!("rollback recommended (mode = \"manual\"): {reason}; POST /v1/releases/{}/rollback to roll back", release.id);
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
            TriggerOutcome {
                request: None,
                decision: Some(Decision::rollback_recommended(now, check.clone(), why)),
                message: Some(msg),
            }
        }
        None => TriggerOutcome {
            request: None,
            decision: Some(Decision::rollback_unavailable(
                now,
                check.clone(),
                format!("{reason}; no rollback hook is configured for this service"),
            )),
            message: None,
        },
    }
}

/// Settles a release a restart finds `rolling_back`: a rollback still
/// `requested` is started. One that was `running` is settled from what the
/// hook supervisor knows: its status file, if the hook finished (the real
/// outcome is recorded); the supervisor itself, if it still runs (it is
/// adopted: [`adopt`] waits for its status file); else the rollback is
/// recorded as interrupted, its outcome unknown. The hook is never run
/// twice.
pub(super) async fn recover(
    g: &Arc<Guardian>,
    release: &Release,
    now: Millis,
) -> Result<(), StoreError> {
    match g.ctx.store.get_rollback(&release.id).await? {
        Some(rb) if rb.state == RollbackState::Requested => {
            g.spawn_rollback(&release.id);
        }
        Some(rb) if rb.state == RollbackState::Running => {
            let path = status_file(g, &release.id);
            match hook_supervisor::read_status(&path) {
                Some(Ok(status)) => {
                    tracing::warn!(release = %release.id, "the rollback hook finished while the daemon was down; recording its outcome");
                    let started = rb.started_at.unwrap_or(now);
                    record_run(g, release, &status.into(), started, now, RECOVERED).await?;
                    hook_supervisor::remove_status(&path);
                }
                Some(Err(e)) => interrupted(g, release, now, &format!("; {e}")).await?,
                None => match hook_supervisor::find_supervisor(&path) {
                    Some(pid) => {
                        tracing::warn!(release = %release.id, pid, "the rollback hook is still running under its supervisor; waiting for its outcome");
                        spawn_adopt(g, release, path, pid);
                    }
                    None => interrupted(g, release, now, "").await?,
                },
            }
        }
        _ => {}
    }
    Ok(())
}

/// Said of an outcome the supervisor recorded while the daemon was down.
const RECOVERED: &str = " (recorded by the hook supervisor while the daemon was down)";

/// The status file of the release's hook supervisor.
fn status_file(g: &Guardian, id: &str) -> std::path::PathBuf {
    hook_supervisor::status_path(&g.ctx.settings().store.state_dir(), id)
}

/// Records a rollback whose outcome cannot be known: interrupted, the release
/// `rollback_failed`, a critical page. `detail` is appended to the reason.
async fn interrupted(
    g: &Arc<Guardian>,
    release: &Release,
    now: Millis,
    detail: &str,
) -> Result<(), StoreError> {
    let reason = format!("the daemon stopped while the rollback hook was running and no record of the hook's end was found{detail}; its outcome is unknown and it is not run again — check the service by hand");
    let decision = Decision::rollback_failed(now, reason.clone());
    let msg = messages::release_event(
        release,
        "rollback_failed",
        Severity::Critical,
        &reason,
        now,
        "rollback/finished",
    );
    let pages = end_pages(g, release, &msg, messages::Ending::RollbackFailed, now).await;
    g.ctx
        .store
        .finish_rollback(
            &release.id,
            RollbackState::Interrupted,
            None,
            None,
            &decision,
            &pages,
            now,
        )
        .await?;
    g.outbox.wake();
    g.release_lease(&release.id).await;
    g.ctx
        .telemetry
        .rollbacks
        .get_or_create(&OutcomeLabels {
            outcome: Outcome::interrupted,
        })
        .inc();
    tracing::warn!(release = %release.id, %reason, "rollback interrupted");
    Ok(())
}

/// Adopts a hook supervisor a restart found running: [`adopt`] in a
/// rollback task (awaited at shutdown like a hook the daemon started).
fn spawn_adopt(g: &Arc<Guardian>, release: &Release, path: std::path::PathBuf, pid: u32) {
    if !g.lock_rollbacks().insert(release.id.clone()) {
        return;
    }
    let me = g.clone();
    let release = release.clone();
    g.rollback_tasks().spawn(async move {
        let mut attempt = 1;
        while let Err(e) = adopt(&me, &release, &path, pid).await {
            tracing::error!(release = %release.id, attempt, error = %e, "cannot record the adopted rollback hook's outcome; retrying");
            if attempt >= FINISH_ATTEMPTS {
                break;
            }
            tokio::time::sleep(crate::transport::backoff(attempt)).await;
            attempt += 1;
        }
        me.lock_rollbacks().remove(&release.id);
    });
}

/// Waits for an adopted supervisor's status file: looks every
/// [`hook_supervisor::ADOPT_POLL`] (renewing the watch lease), records the
/// outcome once the file is there; records the rollback interrupted if the
/// supervisor ends without writing it, or is still running past the hook's
/// timeout plus slack (it is then killed).
async fn adopt(
    g: &Arc<Guardian>,
    release: &Release,
    path: &std::path::Path,
    pid: u32,
) -> Result<(), StoreError> {
    let timeout = g
        .ctx
        .settings()
        .service(&release.service, &release.environment)
        .and_then(|s| s.rollback.as_ref().map(|r| r.timeout))
        .unwrap_or(rollback::DEFAULT_TIMEOUT);
    let started = g.ctx.clock.now();
    let limit = timeout + 2 * rollback::DRAIN_AFTER_EXIT + hook_supervisor::SUPERVISOR_SLACK;
    let deadline = tokio::time::Instant::now() + limit;
    let mut renew_at = tokio::time::Instant::now() + LEASE_RENEW_EVERY;
    loop {
        let gone = !hook_supervisor::alive(pid);
        // Read after the liveness check: a supervisor that ended wrote its
        // file before it ended.
        match hook_supervisor::read_status(path) {
            Some(Ok(status)) => {
                let now = g.ctx.clock.now();
                record_run(g, release, &status.into(), started, now, RECOVERED).await?;
                hook_supervisor::remove_status(path);
                return Ok(());
            }
            Some(Err(e)) if gone => {
                return interrupted(g, release, g.ctx.clock.now(), &format!("; {e}")).await
            }
            None if gone => {
                let detail = "; its supervisor ended without recording it";
                return interrupted(g, release, g.ctx.clock.now(), detail).await;
            }
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            hook_supervisor::kill_supervisor(pid);
            let detail = format!(
                "; its supervisor (pid {pid}) was still running {} after the restart and was killed",
                humantime::format_duration(limit)
            );
            return interrupted(g, release, g.ctx.clock.now(), &detail).await;
        }
        if tokio::time::Instant::now() >= renew_at {
            renew_at = tokio::time::Instant::now() + LEASE_RENEW_EVERY;
            if let Err(e) = g.renew(&release.id).await {
                tracing::warn!(release = %release.id, error = %e, "cannot renew the watch lease while the adopted rollback hook runs");
            }
        }
        tokio::time::sleep(hook_supervisor::ADOPT_POLL).await;
    }
}

/// Runs the hook (under the supervisor when the binary has it, else in
/// this process), renewing the release's watch lease while it runs so that
/// no other replica takes the release over and reports the hook interrupted.
async fn run_hook_renewing(
    g: &Guardian,
    id: &str,
    hook: &RollbackConfig,
    vars: &HookVars,
) -> rollback::HookRun {
    let path = status_file(g, id);
    let run = async {
        if hook_supervisor::enabled() {
            hook_supervisor::run_supervised(hook, vars, &path).await
        } else {
            rollback::run_hook(hook, vars).await
        }
    };
    tokio::pin!(run);
    loop {
        tokio::select! {
            done = &mut run => return done,
            _ = tokio::time::sleep(LEASE_RENEW_EVERY) => {
                match g.renew(id).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(release = %id, "lost the watch lease while the rollback hook runs"),
                    Err(e) => tracing::warn!(release = %id, error = %e, "cannot renew the watch lease while the rollback hook runs"),
                }
            }
        }
    }
}

/// Runs the release's rollback hook if this caller wins the rollback claim
/// (the `requested → running` move); records the outcome. Never runs twice.
/// The start and the outcome are each written in one transaction together
/// with their decision and pages, so a crash cannot lose a rollback page.
pub(super) async fn execute(g: &Arc<Guardian>, id: &str) -> Result<(), StoreError> {
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
    let started = Decision::rollback_started(
        now,
        match (&hook, &blocked) {
            (Some(hook), None) if hook.dry_run => format!(
                "dry run (dry_run = true): would have run the rollback hook `{}`: {}; nothing is run",
                hook.describe(),
                record.reason
            ),
            (Some(hook), None) if hook.url.is_some() => format!(
                "running the rollback hook {}: {}",
                hook.describe(),
                record.reason
            ),
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
    );
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
    if let Some(hook) = hook.as_ref().filter(|h| h.dry_run) {
        // Nothing runs: people must roll back by hand.
        page.event = "rollback_recommended".into();
        page.reason = format!(
            "dry run: would have rolled back {} with `{}` (nothing was run; roll back by hand if needed): {}",
            release.version,
            hook.describe(),
            record.reason
        );
    }
    let pages = match blocked {
        None => {
            let mut log = g.incident_log(id).await?;
            messages::records_for(&settings, &release, &page, now, &mut log)
        }
        Some(_) => Vec::new(),
    };
    // Only the caller that moves the rollback from requested to running may
    // act on it, whether it runs the hook or records that it cannot. The
    // watch lease is taken (best effort: the claim alone guards the hook) so
    // that this replica keeps it while the hook runs.
    if !g.claim(id).await.unwrap_or(false) {
        tracing::warn!(release = %id, "another replica holds this release's watch lease; the rollback claim still runs the hook at most once");
    }
    if !ctx
        .store
        .claim_rollback(id, g.owner(), now, &started, &pages)
        .await?
    {
        return Ok(());
    }
    g.outbox.wake();
    let (Some(hook), None) = (hook, blocked.as_ref()) else {
        let why = blocked.unwrap_or_default();
        return finish(g, &release, RollbackState::Failed, None, None, why, now).await;
    };
    if hook.dry_run {
        let what = hook.describe();
        tracing::warn!(release = %id, service = %release.service, hook = %what, "dry run: the rollback hook is not run");
        let reason = format!(
            "dry run (dry_run = true): the rollback hook was not run; it would have run `{what}`. {} is still live: roll back by hand if needed",
            release.version
        );
        let output = format!("dry run: would have run `{what}`");
        return finish(
            g,
            &release,
            RollbackState::Failed,
            None,
            Some(&output),
            reason,
            now,
        )
        .await;
    }
    tracing::warn!(release = %id, service = %release.service, reason = %record.reason, "rollback hook starting");
    let vars = HookVars {
        release_id: release.id.clone(),
        service: release.service.clone(),
        environment: release.environment.clone(),
        version: release.version.clone(),
        previous_version: release.previous_version.clone().unwrap_or_default(),
        reason: record.reason.clone(),
    };
    if hook.url.is_some() {
        let body = rollback_http::payload(&vars);
        let key = format!("{id}/rollback");
        let run = rollback_http::post(&ctx.notify_http, &hook, body, &key).await;
        return record_http(g, &release, &run, ctx.clock.now()).await;
    }
    let run = run_hook_renewing(g, id, &hook, &vars).await;
    let done = ctx.clock.now();
    record_run(g, &release, &run, now, done, "").await?;
    hook_supervisor::remove_status(&status_file(g, id));
    Ok(())
}

/// Records what the `url` form's POST did: `rolled_back` on a 2xx, else
/// `rollback_failed`. The HTTP status is kept as the rollback's
/// `exit_code`, the answer (status, time, body excerpt) as its `output`.
async fn record_http(
    g: &Arc<Guardian>,
    release: &Release,
    run: &rollback_http::HttpRun,
    done: Millis,
) -> Result<(), StoreError> {
    let redactor = crate::config::Redactor::from_settings(&g.ctx.settings());
    let described = redactor.redact(&run.describe());
    let (state, reason) = if run.succeeded() {
        (
            RollbackState::Succeeded,
            format!(
                "rolled back {} to {}: {described}",
                release.version,
                release
                    .previous_version
                    .as_deref()
                    .unwrap_or("the previous version"),
            ),
        )
    } else {
        (
            RollbackState::Failed,
            format!("rollback hook failed: {described}"),
        )
    };
    let mut output = described;
    if !run.body.is_empty() {
        output.push('\n');
        output.push_str(&redactor.redact(&run.body));
    }
    let status = run.status.map(i32::from);
    finish(g, release, state, status, Some(&output), reason, done).await
}

/// Records what a run of the hook did: `rolled_back` if it succeeded, else
/// `rollback_failed` with what happened; `note` is appended to the reason.
/// `started`..`done` is the run as this daemon saw it.
async fn record_run(
    g: &Arc<Guardian>,
    release: &Release,
    run: &rollback::HookRun,
    started: Millis,
    done: Millis,
    note: &str,
) -> Result<(), StoreError> {
    // The hook's output may quote credentials: redacted before it is kept,
    // sent or logged anywhere.
    let redactor = crate::config::Redactor::from_settings(&g.ctx.settings());
    let (state, reason) = if run.succeeded() {
        // A run the supervisor recorded while the daemon was down: its own
        // measure of the hook's time.
        let took = if note.is_empty() {
            done - started
        } else {
            run.elapsed.as_millis() as Millis
        };
        (
            RollbackState::Succeeded,
            format!(
                "rolled back {} to {}: the rollback hook exited 0 after {took} ms{note}",
                release.version,
                release
                    .previous_version
                    .as_deref()
                    .unwrap_or("the previous version"),
            ),
        )
    } else {
        (
            RollbackState::Failed,
            format!(
                "rollback hook failed: {}{note}",
                redactor.redact(&run.describe())
            ),
        )
    };
    let output = redactor.redact(&run.output);
    finish(
        g,
        release,
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
    let decision = if ok {
        Decision::rolled_back(now, reason.clone())
    } else {
        Decision::rollback_failed(now, reason.clone())
    };
    let action = decision.action.as_str();
    let severity = if ok {
        Severity::Warning
    } else {
        Severity::Critical
    };
    let page =
        messages::release_event(release, action, severity, &reason, now, "rollback/finished");
    let ending = if ok {
        messages::Ending::RolledBack
    } else {
        messages::Ending::RollbackFailed
    };
    let pages = end_pages(g, release, &page, ending, now).await;
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
    g.release_lease(&release.id).await;
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

/// The rows of a rollback's outcome page `msg`, then those of the watch's
/// end (resolves and the summary, [`messages::ending_records`]). The hook's
/// outcome must be recorded whatever happens: if the release's history
/// cannot be read, the outcome page goes by severity alone and the watch's
/// end sends only the summary.
async fn end_pages(
    g: &Guardian,
    release: &Release,
    msg: &Message,
    ending: messages::Ending,
    now: Millis,
) -> Vec<crate::model::NotificationRecord> {
    let settings = g.ctx.settings();
    let (mut log, checks) = match (
        g.incident_log(&release.id).await,
        g.ctx.store.load_checks(&release.id).await,
    ) {
        (Ok(log), Ok(checks)) => (log, checks),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(release = %release.id, error = %e, "cannot read the release's pages; its resolves are not sent");
            Default::default()
        }
    };
    let mut pages = messages::records_for(&settings, release, msg, now, &mut log);
    pages.extend(messages::ending_records(
        &settings, release, &checks, ending, now, &mut log,
    ));
    pages
}
