//! Control operations: register a release, abort a watch, acknowledge a
//! release, request a manual rollback. They go through the [`Guardian`] so
//! that the store and the running tasks never disagree.
//!
//! This file also owns the policy these operations hand the store, which
//! only executes it: the decision a superseded release records
//! ([`superseded`]) and what an acknowledgement silences ([`ack_silence`]).

use super::incidents::IncidentLog;
use super::messages::{self, Ending};
use super::Guardian;
use crate::actions::rollback::RollbackMode;
use crate::model::{
    Decision, Millis, NewRelease, Release, ReleaseStatus, RollbackRecord, RollbackState,
    REVERT_ANNOTATION,
};
use crate::store::group_commit::GroupCommit;
use crate::store::registration::AuditOf;
use crate::store::{
    BatchRegistered, Registered, Registration, RollbackRequest, Silence, StoreError,
};
use std::sync::Arc;

use crate::model::MAX_NAME_LEN;

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

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// The decision recorded on every release that the release `id` (version
/// `version`) supersedes.
pub(super) fn superseded(version: &str, id: &str, now: Millis) -> Decision {
    Decision::superseded(
        now,
        format!("superseded by version {version} (release {id})"),
    )
}

/// What an ack does to the release's pages: every page still queued, and
/// every page decided later from an older copy of the release, is kept
/// unsent with this note.
pub(super) fn ack_silence() -> Silence {
    Silence {
        note: "suppressed: the release was acknowledged".into(),
    }
}

/// Who asked for a registration, written with it in the same commit.
#[derive(Default)]
pub struct Provenance {
    /// The audit record, from the registration's outcome.
    pub audit: Option<AuditOf>,
    /// `(intake format, delivery id)` of the webhook delivery that asked.
    pub delivery: Option<(String, String)>,
}

impl Guardian {
    /// The writer that commits registrations together, started on first
    /// use; after each commit it starts and stops watches in commit order
    /// ([`Guardian::after_commit`]).
    fn group_commit(self: &Arc<Self>) -> &GroupCommit {
        self.intake.get_or_init(|| {
            // Weak: the writer must not keep its Guardian alive.
            let me = Arc::downgrade(self);
            GroupCommit::start(
                self.ctx.store.clone(),
                Box::new(move |written| {
                    if let Some(me) = me.upgrade() {
                        me.after_commit(written);
                    }
                }),
            )
        })
    }

    /// What a committed registration starts and stops, run by the writer in
    /// commit order before anyone is answered: the watches the new release
    /// superseded stop, and its own starts from the row just written (no
    /// read). In commit order, a release superseded by a later one (in the
    /// same batch or the next) always has its task started before the later
    /// one stops it, so no superseded watch is left waiting for its tick.
    ///
    /// It also does what follows a new release whether or not its caller
    /// is still there: counts it, logs it, and queues the messages of the
    /// watches it ended (in a task of their own, as they read the store).
    fn after_commit(self: &Arc<Self>, written: &BatchRegistered) {
        let reg = &written.registered;
        if !reg.created {
            return;
        }
        for old in &reg.superseded {
            self.cancel_watch(old);
        }
        if written.claimed {
            self.spawn_watch(&reg.release.id, Some(reg.release.clone()));
        }
        self.ctx.telemetry.releases_registered.inc();
        let r = &reg.release;
        tracing::info!(release = %r.id, service = %r.service, environment = %r.environment, version = %r.version, revert = crate::model::is_revert(r), "watch started");
        if !reg.superseded.is_empty() && !self.ctx.settings().notifiers.is_empty() {
            let (me, ended) = (self.clone(), reg.superseded.clone());
            self.ctx.tasks.spawn(async move {
                for old in &ended {
                    me.announce_end(old, Ending::Superseded).await;
                }
            });
        }
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
        self.register_with(new, Provenance::default()).await
    }

    /// [`Guardian::register`], with the audit record and webhook delivery
    /// that go with it written in the same commit as the release. Concurrent
    /// registrations share one commit ([`GroupCommit`]); this answers once
    /// the release is durable.
    ///
    /// A caller that goes away once its registration is queued does not
    /// stop it: the writer commits it and runs what follows a commit (the
    /// watches started and stopped, the count, the log, the end messages of
    /// the watches it superseded) without the caller, so this needs no task
    /// of its own (a hop less for every registration).
    pub async fn register_with(
        self: &Arc<Self>,
        new: NewRelease,
        provenance: Provenance,
    ) -> Result<Registered, ControlError> {
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
        let (cadence, revert_cadence) = (service.cadence.clone(), service.revert_cadence.clone());
        // Lineage and the first tick are decided in the write, from the
        // latest release as it finds it (an earlier item of the same batch).
        let plan = Box::new(move |new: &mut NewRelease, latest: Option<&Release>| {
            super::lineage::complete(new, latest);
            let cadence = if new.annotations.contains_key(REVERT_ANNOTATION) {
                &revert_cadence
            } else {
                &cadence
            };
            cadence.next_tick(now, now).unwrap_or(now)
        });
        let id = uuid::Uuid::now_v7().to_string();
        let written = self
            .group_commit()
            .register(Registration {
                superseded: superseded(&new.version, &id, now),
                new,
                environment: environment.clone(),
                id,
                now,
                plan,
                lease: Some(self.lease(now)),
                audit: provenance.audit,
                delivery: provenance.delivery,
            })
            .await?;
        let reg = written.registered;
        // A new release needs nothing more here: the writer has already
        // stopped the superseded watches and started this one
        // (`after_commit`).
        if !reg.created
            && reg.release.status == ReleaseStatus::Watching
            && reg.release.next_check_at.is_some()
            && !self.lock_watches().contains_key(&reg.release.id)
        {
            // A retried registration finds a watch without its task (an
            // earlier attempt died between the write and the spawn): heal
            // it, to the end even if the caller goes away.
            let (me, id) = (self.clone(), reg.release.id.clone());
            self.detached(async move {
                if me.claim(&id).await? {
                    me.spawn_watch(&id, None);
                }
                Ok(())
            })
            .await?;
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
                self.announce_end(id, Ending::Aborted).await;
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
        // The rows the ack is about to silence, counted as `suppressed`.
        let queued: Vec<String> = match self.ctx.store.release_details(id).await? {
            Some(d) => d
                .notifications
                .into_iter()
                .filter(|n| n.status == crate::model::DeliveryStatus::Pending)
                .map(|n| n.notifier)
                .collect(),
            None => return Err(ControlError::NotFound(id.to_string())),
        };
        let acked = self
            .ctx
            .store
            .ack(id, &decision, &ack_silence())
            .await?
            .ok_or_else(|| ControlError::NotFound(id.to_string()))?;
        for notifier in queued {
            self.ctx
                .telemetry
                .notifications
                .get_or_create(&crate::telemetry::NotificationLabels {
                    notifier,
                    outcome: crate::telemetry::Outcome::suppressed,
                })
                .inc();
        }
        Ok(acked)
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
                // the write and the spawn): started now; the rollback claim
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

    /// Queues what a watch ended outside a tick (abort, supersession)
    /// sends: resolves and the summary ([`messages::ending_records`]). Best
    /// effort after the status change: an error is logged, and the fixed
    /// dedup keys make a repeat harmless. With no notifier configured
    /// nothing can be sent, and the release is not even read.
    async fn announce_end(&self, id: &str, ending: Ending) {
        let settings = self.ctx.settings();
        if settings.notifiers.is_empty() {
            return;
        }
        let now = self.ctx.clock.now();
        let rows = match self.ctx.store.release_details(id).await {
            Ok(Some(d)) => {
                let mut log = IncidentLog::from_rows(&d.notifications);
                messages::ending_records(&settings, &d.release, &d.checks, ending, now, &mut log)
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(release = %id, error = %e, "cannot read the release; its end is not announced");
                return;
            }
        };
        if rows.is_empty() {
            return;
        }
        match self.ctx.store.enqueue(&rows).await {
            Ok(_) => self.outbox.wake(),
            Err(e) => {
                tracing::warn!(release = %id, error = %e, "cannot queue the messages of the watch's end")
            }
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
