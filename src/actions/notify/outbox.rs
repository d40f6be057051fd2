//! The durable outbox: delivers stored notifications, retries temporary
//! failures with exponential backoff, and survives restarts (undelivered
//! rows are simply still `pending` in the store).
//!
//! Delivery is at-least-once: a crash between a receiver accepting a message
//! and the outbox marking it sent re-sends it once after the restart. Every
//! message carries its stable `dedup_key` so receivers (PagerDuty's
//! `dedup_key`, a webhook's consumer) can drop such a repeat.

use super::Notifiers;
use super::NotifyError;
use crate::clock::Clock;
use crate::model::{DeliveryStatus, Millis, NotificationRecord};
use crate::store::{Lease, Store};
use crate::telemetry::Telemetry;
use crate::telemetry::{NotificationLabels, Outcome};
use crate::transport::{backoff, MAX_BACKOFF};
use futures_util::future::join_all;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long temporary failures are retried before a notification is marked
/// `failed`: long enough to ride out a receiver's incident.
pub const MAX_RETRY_AGE: Duration = Duration::from_secs(24 * 3600);
/// How often the outbox looks at the store even without a wake-up.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Shortest pause of the dispatch loop (when rows are due but their
/// notifier's worker is still busy).
const MIN_POLL: Duration = Duration::from_millis(50);
/// Rows a worker takes per query.
const BATCH: usize = 16;
/// How long a claim on a row lasts: longer than any delivery (a notifier's
/// timeout), so that only a replica that died mid-delivery loses it.
const CLAIM: Duration = Duration::from_secs(600);

/// What the outbox works with; the daemon's context hands it these.
pub struct OutboxParts {
    /// The replica's id: a row is sent only under this owner's claim.
    pub owner: String,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub telemetry: Arc<Telemetry>,
    /// The notifiers in force; a reload sends the newly built set.
    pub notifiers: watch::Receiver<Arc<Notifiers>>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

pub struct Outbox {
    ctx: OutboxParts,
    wake: Notify,
    /// Bumped by every [`Outbox::wake`], so a worker that finishes can tell
    /// whether rows were enqueued while it was busy.
    enqueued: AtomicU64,
    /// Notifiers whose delivery worker is running.
    busy: Mutex<HashSet<String>>,
}

impl Outbox {
    pub fn new(parts: OutboxParts) -> Arc<Self> {
        Arc::new(Self {
            ctx: parts,
            wake: Notify::new(),
            enqueued: AtomicU64::new(0),
            busy: Mutex::new(HashSet::new()),
        })
    }

    /// Wakes the delivery loop (new rows were enqueued).
    pub fn wake(&self) {
        self.enqueued.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_one();
    }

    /// The notifiers in force now.
    fn notifiers(&self) -> Arc<Notifiers> {
        self.ctx.notifiers.borrow().clone()
    }

    /// Starts the delivery loop on the context's task tracker.
    pub fn spawn(self: &Arc<Self>) {
        let me = self.clone();
        self.ctx.tasks.spawn(async move { me.run().await });
    }

    /// The dispatch loop: one delivery worker per notifier, so a slow or
    /// black-holed receiver delays only its own messages.
    async fn run(self: Arc<Self>) {
        let cancel = self.ctx.shutdown.clone();
        loop {
            self.dispatch();
            if let Err(e) = self.sweep_orphans().await {
                tracing::error!(error = %e, "outbox sweep failed");
            }
            let wait = match self.ctx.store.next_notification_due().await {
                Ok(Some(due)) => Duration::from_millis(
                    (due - self.ctx.clock.now()).clamp(0, IDLE_POLL.as_millis() as i64) as u64,
                ),
                _ => IDLE_POLL,
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait.max(MIN_POLL)) => {}
            }
        }
    }

    fn lock_busy(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a worker for every configured notifier that has none running.
    fn dispatch(self: &Arc<Self>) {
        for name in self.notifiers().names() {
            if self.lock_busy().insert(name.clone()) {
                let me = self.clone();
                let name = name.clone();
                self.ctx.tasks.spawn(async move { me.worker(name).await });
            }
        }
    }

    /// Delivers one notifier's due rows until none is left.
    async fn worker(self: Arc<Self>, notifier: String) {
        let mut seen = self.enqueued.load(Ordering::Acquire);
        while !self.ctx.shutdown.is_cancelled() {
            seen = self.enqueued.load(Ordering::Acquire);
            let now = self.ctx.clock.now();
            match self
                .ctx
                .store
                .due_notifications(now, BATCH, Some(&notifier))
                .await
            {
                Ok(rows) if rows.is_empty() => break,
                Ok(rows) => {
                    let mut settled = 0;
                    for row in rows {
                        match self.deliver(row).await {
                            Ok(true) => settled += 1,
                            // Claimed by another replica: not ours to send.
                            Ok(false) => {}
                            Err(e) => {
                                tracing::error!(%notifier, error = %e, "outbox delivery bookkeeping failed");
                                break;
                            }
                        }
                    }
                    if settled == 0 {
                        // Nothing this pass could settle: look again at the
                        // next wake-up or due time, not in a tight loop.
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(%notifier, error = %e, "outbox query failed");
                    break;
                }
            }
        }
        self.lock_busy().remove(&notifier);
        // Rows enqueued after this worker's last query found it busy: look
        // again. (Waking unconditionally would spin an idle outbox.)
        if self.enqueued.load(Ordering::Acquire) != seen {
            self.wake.notify_one();
        }
    }

    /// Due rows of notifiers that are no longer configured fail for good.
    async fn sweep_orphans(&self) -> Result<(), crate::store::StoreError> {
        let notifiers = self.notifiers();
        let now = self.ctx.clock.now();
        for row in self.ctx.store.due_notifications(now, 256, None).await? {
            if !notifiers.contains(&row.notifier) {
                self.deliver(row).await?;
            }
        }
        Ok(())
    }

    /// Delivers every due row once, all notifiers side by side, and returns
    /// when none is due (for tests and one-shot flushes).
    pub async fn deliver_due(self: &Arc<Self>) -> Result<(), crate::store::StoreError> {
        let names: Vec<String> = self.notifiers().names().cloned().collect();
        join_all(names.into_iter().map(|n| {
            let me = self.clone();
            async move {
                if me.lock_busy().insert(n.clone()) {
                    me.worker(n).await;
                }
            }
        }))
        .await;
        self.sweep_orphans().await
    }

    /// Delivers one row under this replica's claim; false if another
    /// replica holds the row (or it was settled meanwhile).
    async fn deliver(&self, row: NotificationRecord) -> Result<bool, crate::store::StoreError> {
        let attempts = row.attempts + 1;
        let claim = Lease::new(
            self.ctx.owner.clone(),
            self.ctx.clock.now() + CLAIM.as_millis() as Millis,
        );
        if !self
            .ctx
            .store
            .claim_notification(&row.key, &claim, self.ctx.clock.now())
            .await?
        {
            // Another replica is delivering it, or it was settled meanwhile.
            return Ok(false);
        }
        let Some(notifier) = self.notifiers().get(&row.notifier).cloned() else {
            let err = format!("notifier {:?} is no longer configured", row.notifier);
            self.count(&row.notifier, Outcome::failed);
            let now = self.ctx.clock.now();
            return self
                .ctx
                .store
                .mark_notification(
                    &row.key,
                    DeliveryStatus::Failed,
                    attempts,
                    Some(&err),
                    now,
                    None,
                )
                .await
                .map(|()| true);
        };
        let result = notifier.send(&row.message).await;
        let now = self.ctx.clock.now();
        match result {
            Ok(()) => {
                self.count(&row.notifier, Outcome::sent);
                tracing::info!(notifier = %row.notifier, key = %row.key, "notification sent");
                self.ctx
                    .store
                    .mark_notification(
                        &row.key,
                        DeliveryStatus::Sent,
                        attempts,
                        None,
                        now,
                        Some(now),
                    )
                    .await
                    .map(|()| true)
            }
            Err(NotifyError::Temporary {
                detail,
                retry_after,
            }) if now - row.created_at < MAX_RETRY_AGE.as_millis() as Millis => {
                self.count(&row.notifier, Outcome::retry);
                let delay = retry_after
                    .unwrap_or_else(|| backoff(attempts))
                    .min(MAX_BACKOFF);
                tracing::warn!(notifier = %row.notifier, key = %row.key, attempts, error = %detail, "notification failed; will retry");
                let next = now + delay.as_millis() as Millis;
                self.ctx
                    .store
                    .mark_notification(
                        &row.key,
                        DeliveryStatus::Pending,
                        attempts,
                        Some(&detail),
                        next,
                        None,
                    )
                    .await
                    .map(|()| true)
            }
            Err(e) => {
                self.count(&row.notifier, Outcome::failed);
                tracing::error!(notifier = %row.notifier, key = %row.key, attempts, error = %e, "notification failed for good");
                self.ctx
                    .store
                    .mark_notification(
                        &row.key,
                        DeliveryStatus::Failed,
                        attempts,
                        Some(&e.to_string()),
                        now,
                        None,
                    )
                    .await
                    .map(|()| true)
            }
        }
    }

    fn count(&self, notifier: &str, outcome: Outcome) {
        self.ctx
            .telemetry
            .notifications
            .get_or_create(&NotificationLabels {
                notifier: notifier.to_string(),
                outcome,
            })
            .inc();
    }
}
