//! The watch scheduler. This file owns the supervisor: the [`Guardian`]
//! holds one task per watched release and one per rollback in progress,
//! takes each watch's lease in the store under its owner id, and recovers
//! everything from the store after a restart ([`Guardian::start`]).
//!
//! The behaviours it supervises live beside it, one per file:
//! - `control.rs` — control operations (register, abort, ack, manual
//!   rollback) and the policy they hand the store (what a supersession
//!   records, what an ack silences);
//! - `watch.rs` — the life of one watch: wait, tick, commit, repeat;
//! - `sentinel.rs` — looks at the query checks between ticks, which move
//!   the tick to now when a check looks worse;
//! - `tick.rs` / `read.rs` — one tick: read the sources, run the engine;
//! - [`points`] — the values a tick keeps for charts;
//! - `verdict.rs` — the pure decision after a tick: keep watching, retry,
//!   verified, rollback requested, window ended;
//! - `rollback.rs` — rollback execution: from a rule's trigger to the
//!   request, the claim, the hook, the outcome, and the recovery of a hook
//!   a crash interrupted;
//! - `messages.rs` — decisions into messages and outbox rows: who gets
//!   each, what a watch's end sends (resolves, the summary);
//! - `incidents.rs` — which incidents are open at which notifier, from the
//!   outbox (what closing messages and reminders follow);
//! - `reminders.rs` — `repeat_every` reminders while a level holds;
//! - [`replay`] — the same ticks on a virtual clock, nothing written or
//!   sent (`test-rules`, `backtest`).
//! - `trim.rs` — giving the memory of ended watches back to the system.
//!
//! The tiered tick schedule is [`crate::config::Cadence`].

mod blindness;
mod control;
mod evidence;
mod incidents;
#[cfg(test)]
mod judgment_tests;
mod judgments;
mod lineage;
mod messages;
pub mod points;
mod read;
mod reminders;
pub mod replay;
mod replicas;
mod rollback;
mod sentinel;
mod signatures;
#[cfg(test)]
mod tests;
mod tick;
mod trim;
mod verdict;
mod watch;

pub use control::{ControlError, Provenance};
pub use tick::variables;

use crate::actions::notify::outbox::Outbox;
use crate::context::Context;
use crate::model::{Decision, Millis, ReleaseStatus};
use crate::store::{Lease, StoreError, UnreadableRelease};
use crate::telemetry::Alive;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The owner id of a daemon that is the only one using its store. Stable
/// across restarts, so a restarted daemon takes its own leases back at once
/// instead of waiting for them to expire.
pub const LOCAL_OWNER: &str = "local";

/// How long a watch's lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(90);

/// How often a lease is renewed: well within [`LEASE_TTL`].
pub const LEASE_RENEW_EVERY: Duration = Duration::from_secs(30);

/// How often the store's write probe runs (the result `/readyz` reports).
pub const STORE_PROBE_EVERY: Duration = Duration::from_secs(5);

/// How long a write probe may take before the store counts as not writable.
pub const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// How often ended releases older than the retention are pruned.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Releases deleted per pruning transaction (so a first run after a long
/// history never holds the write lock for long).
const PRUNE_BATCH: usize = 500;

/// The supervisor of all watches.
pub struct Guardian {
    ctx: Arc<Context>,
    /// This replica's id in the store's leases.
    owner: String,
    /// Running watch tasks: release id → (generation, cancel token).
    watches: Mutex<HashMap<String, (u64, CancellationToken)>>,
    generation: AtomicU64,
    /// Releases whose rollback task runs in this process.
    rollbacks: Mutex<HashSet<String>>,
    rollback_tasks: TaskTracker,
    outbox: Arc<Outbox>,
    ready: AtomicBool,
    /// Active rows the last start could not read (not resumed).
    unreadable: Mutex<Vec<UnreadableRelease>>,
    /// Why the store could not write at its last write (probe or tick);
    /// `None` while it writes.
    write_error: Mutex<Option<String>>,
    /// Returns freed memory to the system after watches end.
    trimmer: trim::Trimmer,
    /// Commits concurrent registrations together (started on first use).
    intake: std::sync::OnceLock<crate::store::group_commit::GroupCommit>,
}

impl Guardian {
    /// A Guardian that is its store's only user ([`LOCAL_OWNER`]).
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        Self::with_owner(ctx, LOCAL_OWNER)
    }

    /// A Guardian that takes leases as `owner`: one id per replica, stable
    /// across its restarts, when several daemons share one store.
    pub fn with_owner(ctx: Arc<Context>, owner: impl Into<String>) -> Arc<Self> {
        let owner = owner.into();
        let mut parts = ctx.outbox_parts(&owner);
        // Another owner than the local one: replicas share the store, and
        // each one's outbox must look for rows the others enqueued.
        parts.shared = owner != LOCAL_OWNER;
        let outbox = Outbox::new(parts);
        Arc::new(Self {
            ctx,
            owner,
            watches: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            rollbacks: Mutex::new(HashSet::new()),
            rollback_tasks: TaskTracker::new(),
            outbox,
            ready: AtomicBool::new(false),
            unreadable: Mutex::new(Vec::new()),
            write_error: Mutex::new(None),
            trimmer: trim::Trimmer::default(),
            intake: std::sync::OnceLock::new(),
        })
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// This replica's lease owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// True once [`Guardian::start`] has recovered every watch.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Active releases whose rows the last [`Guardian::start`] could not
    /// read: reported, not resumed.
    pub fn unreadable_releases(&self) -> Vec<UnreadableRelease> {
        self.unreadable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Why the store's last write (the write probe, or a tick's commit)
    /// failed; `None` if it succeeded.
    pub fn store_write_error(&self) -> Option<String> {
        self.write_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the outcome of a write to the store.
    fn note_write(&self, result: Result<(), String>) {
        let ok = result.is_ok();
        let mut last = self.write_error.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                if last.take().is_some() {
                    tracing::info!("the store writes again");
                }
            }
            Err(e) => {
                if last.is_none() {
                    tracing::error!(error = %e, "the store cannot write; not ready until it can");
                }
                *last = Some(e);
            }
        }
        self.ctx.telemetry.store_writable.set(i64::from(ok));
    }

    /// Runs the store's write probe once (bounded by
    /// [`STORE_PROBE_TIMEOUT`]) and records its outcome for `/readyz`.
    pub async fn probe_store(&self) -> bool {
        let now = self.ctx.clock.now();
        let result = match tokio::time::timeout(
            STORE_PROBE_TIMEOUT,
            self.ctx.store.probe_write(&self.owner, now),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "the write probe did not finish within {STORE_PROBE_TIMEOUT:?}"
            )),
        };
        let ok = result.is_ok();
        self.note_write(result);
        ok
    }

    /// Deletes the releases that ended more than the configured retention
    /// (`[store] retention`) ago, with everything recorded about them, in
    /// batches; returns how many were deleted.
    pub async fn prune_once(&self) -> Result<usize, StoreError> {
        let retention = self.ctx.settings().retention;
        let before = self.ctx.clock.now() - retention.as_millis() as Millis;
        let mut total = 0;
        loop {
            let n = self.ctx.store.prune_ended(before, PRUNE_BATCH).await?;
            total += n;
            self.ctx.telemetry.releases_pruned.inc_by(n as u64);
            if n < PRUNE_BATCH {
                break;
            }
        }
        if total > 0 {
            tracing::info!(releases = total, retention = ?retention, "pruned ended releases past the retention");
        }
        Ok(total)
    }

    /// The timers of the store's upkeep: the write probe every
    /// [`STORE_PROBE_EVERY`], pruning every [`PRUNE_EVERY`] (first at start).
    fn spawn_upkeep(self: &Arc<Self>) {
        let me = self.clone();
        self.ctx.tasks.spawn(async move {
            let mut probe = tokio::time::interval(STORE_PROBE_EVERY);
            probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = me.ctx.shutdown.cancelled() => break,
                    _ = probe.tick() => { me.probe_store().await; }
                }
            }
        });
        let me = self.clone();
        self.ctx.tasks.spawn(async move {
            let mut prune = tokio::time::interval(PRUNE_EVERY);
            prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = me.ctx.shutdown.cancelled() => break,
                    _ = prune.tick() => {
                        if let Err(e) = me.prune_once().await {
                            tracing::warn!(error = %e, "cannot prune ended releases; trying again later");
                        }
                    }
                }
            }
        });
    }

    /// Number of watch tasks running now.
    pub fn running_watches(&self) -> usize {
        self.lock_watches().len()
    }

    fn lock_watches(&self) -> MutexGuard<'_, HashMap<String, (u64, CancellationToken)>> {
        self.watches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long this replica's leases last: `[store] lease`, else
    /// [`LEASE_TTL`].
    fn lease_ttl(&self) -> Duration {
        self.ctx.settings().store.lease().unwrap_or(LEASE_TTL)
    }

    /// How often leases are renewed: a third of the lease (at most
    /// [`LEASE_RENEW_EVERY`]).
    fn lease_renew_every(&self) -> Duration {
        (self.lease_ttl() / 3).min(LEASE_RENEW_EVERY)
    }

    /// A lease for this replica from `now` on.
    fn lease(&self, now: Millis) -> Lease {
        Lease::new(
            self.owner.clone(),
            now + self.lease_ttl().as_millis() as Millis,
        )
    }

    /// Takes (or extends) the watch lease of a release for this replica.
    async fn claim(&self, id: &str) -> Result<bool, StoreError> {
        let now = self.ctx.clock.now();
        self.ctx.store.claim_watch(id, &self.lease(now), now).await
    }

    /// Extends this replica's lease; false if it lost it.
    async fn renew(&self, id: &str) -> Result<bool, StoreError> {
        let now = self.ctx.clock.now();
        self.ctx.store.renew_watch(id, &self.lease(now)).await
    }

    /// The release's open incidents, from its stored outbox rows.
    async fn incident_log(&self, id: &str) -> Result<incidents::IncidentLog, StoreError> {
        Ok(self
            .ctx
            .store
            .release_details(id)
            .await?
            .map(|d| incidents::IncidentLog::from_rows(&d.notifications))
            .unwrap_or_default())
    }

    /// Gives up the lease of a release whose watch and rollback are over.
    async fn release_lease(&self, id: &str) {
        if let Err(e) = self.ctx.store.release_watch(id, &self.owner).await {
            tracing::warn!(release = %id, error = %e, "cannot release the watch lease; it expires by itself");
        }
    }

    /// Recovers state after a (re)start: takes the lease of every active
    /// release (skipping those another live replica holds), settles the
    /// rollbacks the last run left behind, resumes the watches, starts the
    /// outbox.
    pub async fn start(self: &Arc<Self>) -> Result<(), ControlError> {
        let store = &self.ctx.store;
        let now = self.ctx.clock.now();
        let found = store.resumable_releases().await?;
        for bad in &found.unreadable {
            tracing::error!(release = %bad.id, error = %bad.error, "the release's stored row cannot be read; its watch is not resumed (see /readyz)");
        }
        self.ctx
            .telemetry
            .unreadable_releases
            .set(found.unreadable.len() as i64);
        *self.unreadable.lock().unwrap_or_else(|e| e.into_inner()) = found.unreadable;
        for release in found.releases {
            if !self.claim(&release.id).await? {
                tracing::info!(release = %release.id, "watch held by another replica; not resumed here");
                continue;
            }
            self.resume(&release, now, "watch resumed after a restart")
                .await?;
        }
        self.outbox.spawn();
        self.spawn_lease_renewal();
        self.probe_store().await;
        self.spawn_upkeep();
        self.trimmer
            .spawn(&self.ctx.tasks, self.ctx.shutdown.clone());
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Resumes a release whose lease this replica just took: settles its
    /// rollback, or restarts its watch (recording `why` when a tick is
    /// overdue).
    async fn resume(
        self: &Arc<Self>,
        release: &crate::model::Release,
        now: Millis,
        why: &str,
    ) -> Result<(), ControlError> {
        match release.status {
            ReleaseStatus::RollingBack => rollback::recover(self, release, now).await?,
            ReleaseStatus::Watching => {
                if let Some(due) = release.next_check_at.filter(|&d| d < now) {
                    let gap = crate::model::rfc3339(due);
                    let resumed = Decision::resumed(
                        now,
                        format!(
                            "{why}; the tick due at {gap} runs now and range checks cover the whole gap"
                        ),
                    );
                    self.ctx
                        .store
                        .append_decision(&release.id, &resumed)
                        .await?;
                }
                self.spawn_watch(&release.id, None);
            }
            _ => {}
        }
        Ok(())
    }

    /// Starts the watch task of `id` (stopping a task it replaces);
    /// `registered`: the row its registration just committed
    /// ([`watch::run`]).
    fn spawn_watch(self: &Arc<Self>, id: &str, registered: Option<crate::model::Release>) {
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
            let alive = Alive::new(&me.ctx.telemetry.watch_tasks);
            watch::run(&me, &id, registered, token).await;
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
            drop(alive);
            me.trimmer.watch_ended();
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

    /// Renews the leases of every running watch every
    /// [`LEASE_RENEW_EVERY`], in one store write (not one per watch: an idle
    /// daemon with a thousand watches would otherwise write and `fsync`
    /// dozens of times a second); a watch whose lease another replica took
    /// is stopped here.
    fn spawn_lease_renewal(self: &Arc<Self>) {
        let me = self.clone();
        self.ctx.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = me.ctx.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(me.lease_renew_every()) => {}
                }
                let ids: Vec<String> = me.lock_watches().keys().cloned().collect();
                if ids.is_empty() {
                    me.ctx.telemetry.leases_held.set(0);
                    me.adopt_if_shared().await;
                    continue;
                }
                let lease = me.lease(me.ctx.clock.now());
                let started = std::time::Instant::now();
                let renewed = me.ctx.store.renew_watches(&ids, &lease).await;
                me.ctx
                    .telemetry
                    .lease_renew_duration
                    .observe(started.elapsed().as_secs_f64());
                if let Ok(lost) = &renewed {
                    me.ctx
                        .telemetry
                        .leases_held
                        .set((ids.len() - lost.len()) as i64);
                }
                match renewed {
                    Ok(lost) => {
                        for id in lost {
                            // A watch that just ended gave its lease up
                            // itself; one still running lost it.
                            if me.lock_watches().contains_key(&id) {
                                tracing::warn!(release = %id, "another replica took this watch's lease; stopping here");
                                me.cancel_watch(&id);
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot renew the watch leases; retrying at the next renewal")
                    }
                }
                me.adopt_if_shared().await;
            }
        });
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
            // release in `rolling_back`: retry (safe: the rollback claim lets
            // exactly one attempt run the hook) until it goes through.
            let mut attempt = 1;
            loop {
                match rollback::execute(&me, &id).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::error!(release = %id, attempt, error = %e, "rollback bookkeeping failed; retrying");
                        let pause = crate::transport::backoff(attempt)
                            .min(Duration::from_secs(60));
                        tokio::select! {
                            _ = me.ctx.shutdown.cancelled() => break,
                            _ = tokio::time::sleep(pause) => {}
                        }
                        attempt += 1;
                    }
                }
            }
            me.lock_rollbacks().remove(&id);
        });
        true
    }

    fn lock_rollbacks(&self) -> MutexGuard<'_, HashSet<String>> {
        self.rollbacks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rollback tasks, awaited separately at shutdown: a running hook is
    /// given its own timeout to finish rather than the shutdown grace.
    pub fn rollback_tasks(&self) -> &TaskTracker {
        &self.rollback_tasks
    }
}
