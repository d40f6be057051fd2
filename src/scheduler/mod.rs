//! The watch scheduler: the [`Guardian`] owns one task per watched release,
//! ticks it on its [`Cadence`], turns engine transitions into decisions,
//! notifications and rollback requests, and recovers everything from the
//! store after a restart.
//!
//! Control operations (register, abort, ack, manual rollback) go through
//! the Guardian so that the store and the running tasks never disagree.

mod cadence;
mod messages;
mod read;
mod tick;
mod watch;

pub use cadence::Cadence;

use crate::actions::notify::outbox::Outbox;
use crate::app::Context;
use crate::config::RollbackMode;
use crate::model::{
    Decision, Millis, NewRelease, Release, ReleaseStatus, RollbackRecord, RollbackState,
};
use crate::store::{Registered, RollbackRequest};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Longest accepted service, environment or version name.
pub const MAX_NAME_LEN: usize = 256;

/// Why a control operation was refused. The API maps each to a status.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ControlError {
    #[error("release {0} not found")]
    NotFound(String),
    #[error("unknown service {service:?} in environment {environment:?}")]
    UnknownService {
        service: String,
        environment: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("internal error")]
    Internal(String),
}

impl From<crate::store::StoreError> for ControlError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// The supervisor of all watches.
pub struct Guardian {
    ctx: Arc<Context>,
    /// Running watch tasks: release id → (generation, cancel token).
    watches: Mutex<HashMap<String, (u64, CancellationToken)>>,
    generation: std::sync::atomic::AtomicU64,
    /// Releases whose rollback task runs in this process.
    rollbacks: Mutex<std::collections::HashSet<String>>,
    rollback_tasks: TaskTracker,
    outbox: Arc<Outbox>,
    ready: AtomicBool,
}

impl Guardian {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        let outbox = Outbox::new(ctx.clone());
        Arc::new(Self {
            ctx,
            watches: Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            rollbacks: Mutex::new(Default::default()),
            rollback_tasks: TaskTracker::new(),
            outbox,
            ready: AtomicBool::new(false),
        })
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// True once [`Guardian::start`] has recovered every watch.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Number of watch tasks running now.
    pub fn running_watches(&self) -> usize {
        self.lock_watches().len()
    }

    fn lock_watches(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, CancellationToken)>> {
        self.watches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Recovers state after a (re)start: settles rollbacks the last run left
    /// behind, resumes every watch, starts the outbox.
    pub async fn start(self: &Arc<Self>) -> Result<(), ControlError> {
        let store = &self.ctx.store;
        let now = self.ctx.clock.now();
        for release in store.active_releases().await? {
            match release.status {
                ReleaseStatus::RollingBack => self.recover_rollback(&release, now).await?,
                ReleaseStatus::Watching => {
                    if let Some(due) = release.next_check_at.filter(|&d| d < now) {
                        let gap = crate::model::rfc3339(due);
                        store
                            .append_decision(
                                &release.id,
                                &Decision::resumed(
                                    now,
                                    format!(
                                        "watch resumed after a restart; the tick due at {gap} runs now and range checks cover the whole gap"
                                    ),
                                ),
                            )
                            .await?;
                    }
                    self.spawn_watch(&release.id);
                }
                _ => {}
            }
        }
        self.outbox.spawn();
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    async fn recover_rollback(
        self: &Arc<Self>,
        release: &Release,
        now: Millis,
    ) -> Result<(), ControlError> {
        match self.ctx.store.get_rollback(&release.id).await? {
            Some(rb) if rb.state == RollbackState::Requested => {
                self.spawn_rollback(&release.id);
            }
            Some(rb) if rb.state == RollbackState::Running => {
                // The hook may or may not have finished: never run it twice.
                let reason = "the daemon stopped while the rollback hook was running; its outcome is unknown and it is not run again — check the service by hand".to_string();
                let decision = Decision::rollback_failed(now, reason.clone());
                let msg = messages::release_event(
                    release,
                    "rollback_failed",
                    crate::model::Severity::Critical,
                    &reason,
                    now,
                    "rollback/finished",
                );
                let pages = messages::records_for(&self.ctx.settings(), release, &msg, now);
                self.ctx
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
                self.ctx
                    .telemetry
                    .rollbacks
                    .get_or_create(&outcome(crate::telemetry::Outcome::interrupted))
                    .inc();
            }
            _ => {}
        }
        Ok(())
    }

    /// Runs a control operation to its end even if the caller goes away (a
    /// client that disconnects, a request timeout): a store write is never
    /// left without its follow-up (starting a watch, running a hook).
    async fn detached<T, F>(self: &Arc<Self>, op: F) -> Result<T, ControlError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, ControlError>> + Send + 'static,
    {
        self.ctx
            .tasks
            .spawn(op)
            .await
            .map_err(|e| ControlError::Internal(format!("control task failed: {e}")))?
    }

    /// Registers a release and starts (or keeps) its watch.
    pub async fn register(self: &Arc<Self>, new: NewRelease) -> Result<Registered, ControlError> {
        let me = self.clone();
        self.detached(async move { me.register_now(new).await })
            .await
    }

    async fn register_now(self: &Arc<Self>, new: NewRelease) -> Result<Registered, ControlError> {
        validate_name("service", &new.service)?;
        validate_name("version", &new.version)?;
        let environment = new
            .environment
            .clone()
            .unwrap_or_else(crate::config::default_environment);
        validate_name("environment", &environment)?;
        if let Some(p) = &new.previous_version {
            validate_name("previous_version", p)?;
        }
        let settings = self.ctx.settings();
        let service = settings
            .service(&new.service, &environment)
            .ok_or_else(|| ControlError::UnknownService {
                service: new.service.clone(),
                environment: environment.clone(),
            })?;
        let now = self.ctx.clock.now();
        let first = service.cadence.next_tick(now, now).unwrap_or(now);
        let id = uuid::Uuid::now_v7().to_string();
        let reg = self
            .ctx
            .store
            .register_release(&new, &environment, &id, now, first)
            .await?;
        if reg.created {
            self.ctx.telemetry.releases_registered.inc();
            for old in &reg.superseded {
                self.cancel_watch(old);
            }
            self.spawn_watch(&reg.release.id);
            tracing::info!(release = %reg.release.id, service = %new.service, %environment, version = %new.version, "watch started");
        } else if reg.release.status == ReleaseStatus::Watching
            && reg.release.next_check_at.is_some()
            && !self.lock_watches().contains_key(&reg.release.id)
        {
            // A retried registration finds a watch without its task (an
            // earlier attempt died between the write and the spawn): heal it.
            self.spawn_watch(&reg.release.id);
        }
        Ok(reg)
    }

    /// Stops a watch for good.
    pub async fn abort(self: &Arc<Self>, id: &str) -> Result<Release, ControlError> {
        let release = self.get(id).await?;
        if release.status == ReleaseStatus::RollingBack {
            return Err(ControlError::Conflict(
                "a rollback is in progress; it cannot be aborted".into(),
            ));
        }
        let now = self.ctx.clock.now();
        let decision = Decision::aborted(now, "watch aborted through the API");
        match self
            .ctx
            .store
            .transition(
                id,
                &[ReleaseStatus::Watching],
                ReleaseStatus::Aborted,
                &decision,
                now,
            )
            .await?
        {
            Some(r) => {
                self.cancel_watch(id);
                Ok(r)
            }
            None => Err(self.not_in_status(id, "aborted").await),
        }
    }

    /// Silences further pages for a release (decisions are still recorded).
    pub async fn ack(self: &Arc<Self>, id: &str) -> Result<Release, ControlError> {
        let now = self.ctx.clock.now();
        let decision = Decision::acked(
            now,
            "acknowledged through the API: no further pages for this release",
        );
        self.ctx
            .store
            .ack(id, &decision)
            .await?
            .ok_or_else(|| ControlError::NotFound(id.to_string()))
    }

    /// Runs the rollback hook now (at most once per release, ever).
    pub async fn manual_rollback(self: &Arc<Self>, id: &str) -> Result<Release, ControlError> {
        let me = self.clone();
        let id = id.to_string();
        self.detached(async move { me.manual_rollback_now(&id).await })
            .await
    }

    async fn manual_rollback_now(self: &Arc<Self>, id: &str) -> Result<Release, ControlError> {
        let release = self.get(id).await?;
        let settings = self.ctx.settings();
        let has_hook = settings
            .service(&release.service, &release.environment)
            .and_then(|s| s.rollback.as_ref())
            .is_some();
        if !has_hook {
            return Err(ControlError::Conflict(format!(
                "service {:?} ({}) has no rollback hook configured",
                release.service, release.environment
            )));
        }
        let now = self.ctx.clock.now();
        let record = RollbackRecord {
            state: RollbackState::Requested,
            reason: "manual rollback requested through the API".into(),
            trigger: RollbackMode::Manual.as_str().into(),
            requested_at: now,
            started_at: None,
            finished_at: None,
            exit_code: None,
            output: None,
        };
        let decision = Decision::rollback_requested(now, record.reason.clone());
        match self
            .ctx
            .store
            .request_rollback(id, &record, &decision)
            .await?
        {
            RollbackRequest::Requested => {
                self.cancel_watch(id);
                self.spawn_rollback(id);
                self.get(id).await
            }
            RollbackRequest::Exists(rb)
                if rb.state == RollbackState::Requested && self.spawn_rollback(id) =>
            {
                // Recorded but never started (an earlier attempt died between
                // the write and the spawn): started now; `start_rollback`
                // still lets exactly one caller run the hook.
                self.get(id).await
            }
            RollbackRequest::Exists(rb) => Err(ControlError::Conflict(format!(
                "release {id} already has a rollback ({}); a release is rolled back at most once",
                rb.state.as_str()
            ))),
            RollbackRequest::NotAllowed(status) => Err(ControlError::Conflict(format!(
                "release {id} is {status}; it cannot be rolled back"
            ))),
            RollbackRequest::NotLatest {
                latest_id,
                latest_version,
            } => Err(ControlError::Conflict(format!(
                "release {id} is not the latest of its service: version {latest_version} \
                 (release {latest_id}) was deployed after it; rolling back {id} would undo it"
            ))),
            RollbackRequest::NotFound => Err(ControlError::NotFound(id.to_string())),
        }
    }

    async fn get(&self, id: &str) -> Result<Release, ControlError> {
        self.ctx
            .store
            .get_release(id)
            .await?
            .ok_or_else(|| ControlError::NotFound(id.to_string()))
    }

    async fn not_in_status(&self, id: &str, verb: &str) -> ControlError {
        match self.ctx.store.get_release(id).await {
            Ok(Some(r)) => ControlError::Conflict(format!(
                "release {id} is already {}; it cannot be {verb}",
                r.status
            )),
            Ok(None) => ControlError::NotFound(id.to_string()),
            Err(e) => e.into(),
        }
    }

    fn spawn_watch(self: &Arc<Self>, id: &str) {
        let token = self.ctx.shutdown.child_token();
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        if let Some((_, old)) = self
            .lock_watches()
            .insert(id.to_string(), (generation, token.clone()))
        {
            old.cancel();
        }
        self.ctx
            .telemetry
            .active_watches
            .set(self.running_watches() as i64);
        let me = self.clone();
        let id = id.to_string();
        self.ctx.tasks.spawn(async move {
            watch::run(&me, &id, token).await;
            let mut w = me.lock_watches();
            // Only remove our own entry: a newer task may have replaced it.
            if w.get(&id).is_some_and(|(g, _)| *g == generation) {
                w.remove(&id);
            }
            drop(w);
            me.ctx
                .telemetry
                .active_watches
                .set(me.running_watches() as i64);
        });
    }

    fn cancel_watch(&self, id: &str) {
        if let Some((_, t)) = self.lock_watches().remove(id) {
            t.cancel();
        }
        self.ctx
            .telemetry
            .active_watches
            .set(self.running_watches() as i64);
    }

    /// Starts the release's rollback task unless one is already running in
    /// this process; returns whether it started one.
    fn spawn_rollback(self: &Arc<Self>, id: &str) -> bool {
        if !self.lock_rollbacks().insert(id.to_string()) {
            return false;
        }
        let me = self.clone();
        let id = id.to_string();
        self.rollback_tasks.spawn(async move {
            // A store error before the hook starts must not strand the
            // release in `rolling_back`: retry (safe: `start_rollback` lets
            // exactly one attempt run the hook) until it goes through.
            let mut attempt = 1;
            while let Err(e) = watch::execute_rollback(&me, &id).await {
                tracing::error!(release = %id, attempt, error = %e, "rollback bookkeeping failed; retrying");
                let pause = crate::actions::notify::outbox::backoff(attempt).min(std::time::Duration::from_secs(60));
                tokio::select! {
                    _ = me.ctx.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
                attempt += 1;
            }
            me.lock_rollbacks().remove(&id);
        });
        true
    }

    fn lock_rollbacks(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.rollbacks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rollback tasks, awaited separately at shutdown: a running hook is
    /// given its own timeout to finish rather than the shutdown grace.
    pub fn rollback_tasks(&self) -> &TaskTracker {
        &self.rollback_tasks
    }
}

fn outcome(o: crate::telemetry::Outcome) -> crate::telemetry::OutcomeLabels {
    crate::telemetry::OutcomeLabels { outcome: o }
}

fn validate_name(field: &str, value: &str) -> Result<(), ControlError> {
    if value.trim().is_empty() {
        return Err(ControlError::Invalid(format!(
            "`{field}` must not be empty"
        )));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(ControlError::Invalid(format!(
            "`{field}` is longer than {MAX_NAME_LEN} bytes"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ControlError::Invalid(format!(
            "`{field}` contains control characters"
        )));
    }
    Ok(())
}
