//! The durable outbox: delivers stored notifications, retries temporary
//! failures with exponential backoff (or the receiver's `Retry-After`),
//! paces each notifier to its `rate_limit`, and survives restarts
//! (undelivered rows are simply still `pending` in the store).
//!
//! Each notifier's messages go out **in order** (the order of the events
//! they report): a notifier's worker takes its oldest pending row first and
//! stops at the first one that is not due yet, so a message waiting for its
//! retry (a 5xx, a 429 with `Retry-After`) holds back the later ones rather
//! than letting them overtake it. A message over the rate limit waits, in
//! the store, for its slot; none is dropped.
//!
//! Delivery is at-least-once: a crash between a receiver accepting a message
//! and the outbox marking it sent re-sends it once after the restart. Every
//! message carries its stable `dedup_key` so receivers (PagerDuty's
//! `dedup_key`, a webhook's consumer) can drop such a repeat.

use super::rate::Limiter;
use super::Notifiers;
use super::NotifyError;
use crate::clock::Clock;
use crate::model::{DeliveryStatus, Millis, NotificationRecord};
use crate::store::{Lease, Store};
use crate::telemetry::Telemetry;
use crate::telemetry::{NotificationLabels, Outcome};
use crate::transport::{backoff, MAX_BACKOFF};
use futures_util::future::join_all;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long temporary failures are retried before a notification is marked
/// `failed`: long enough to ride out a receiver's incident.
pub const MAX_RETRY_AGE: Duration = Duration::from_secs(24 * 3600);
/// How often the outbox of a shared store looks at it even without a
/// wake-up (rows another replica enqueued), and how soon it looks again
/// after a failed query.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Shortest pause of the dispatch loop (when rows are due but their
/// notifier's worker is still busy).
const MIN_POLL: Duration = Duration::from_millis(50);
/// Shortest wait after a temporary failure that named a `Retry-After`.
pub const MIN_RETRY: Duration = Duration::from_millis(500);
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
    /// Other daemons enqueue into the same store (replicas of a shared
    /// store): the outbox looks at it every 5 s. Alone on its
    /// store, every row it must send comes with a wake-up, and an idle
    /// outbox sleeps until one.
    pub shared: bool,
}

pub struct Outbox {
    ctx: OutboxParts,
    wake: Notify,
    /// Notifiers whose delivery worker is running.
    busy: Mutex<HashSet<String>>,
    /// The rate limiter of each notifier that has a `rate_limit`, kept
    /// across reloads while its limit stays the same.
    limiters: Mutex<HashMap<String, Arc<Limiter>>>,
}

/// Where a notifier's queue stands.
enum Head {
    /// No pending row.
    Empty,
    /// The oldest pending row is due at this instant.
    DueAt(Millis),
}

impl Outbox {
    pub fn new(parts: OutboxParts) -> Arc<Self> {
        Arc::new(Self {
            ctx: parts,
            wake: Notify::new(),
            busy: Mutex::new(HashSet::new()),
            limiters: Mutex::new(HashMap::new()),
        })
    }

    /// Wakes the delivery loop (new rows were enqueued).
    pub fn wake(&self) {
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

    /// The dispatch loop: one delivery worker per notifier whose oldest
    /// pending row is due, so a slow or black-holed receiver delays only its
    /// own messages. It sleeps until the earliest head of a queue is due, a
    /// wake-up (rows enqueued, a worker done), a reload (rows of a notifier
    /// no longer configured fail for good), [`IDLE_POLL`] after a failed
    /// query, or on a shared store at most [`IDLE_POLL`]. With nothing
    /// queued and nothing failing, a store's only outbox has no timer.
    async fn run(self: Arc<Self>) {
        let cancel = self.ctx.shutdown.clone();
        let mut reloads = self.ctx.notifiers.clone();
        let mut reloadable = true;
        loop {
            let mut wait = match self.dispatch().await {
                Ok(Some(due)) => Some(Duration::from_millis(
                    (due - self.ctx.clock.now()).max(0) as u64
                )),
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %e, "outbox query failed");
                    Some(IDLE_POLL)
                }
            };
            if let Err(e) = self.sweep_orphans().await {
                tracing::error!(error = %e, "outbox sweep failed");
                wait = Some(IDLE_POLL);
            }
            if self.ctx.shared {
                wait = Some(wait.map_or(IDLE_POLL, |w| w.min(IDLE_POLL)));
            }
            let sleep = async {
                match wait {
                    Some(w) => tokio::time::sleep(w.max(MIN_POLL)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.wake.notified() => {}
                // A closed channel: no reload can come any more.
                changed = reloads.changed(), if reloadable => reloadable = changed.is_ok(),
                () = sleep => {}
            }
        }
    }

    fn lock_busy(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The oldest pending row of `notifier`, due or not.
    async fn head(&self, notifier: &str) -> Result<Head, crate::store::StoreError> {
        let rows = self
            .ctx
            .store
            .due_notifications(Millis::MAX, 1, Some(notifier))
            .await?;
        Ok(match rows.first() {
            Some(r) => Head::DueAt(r.next_attempt_at),
            None => Head::Empty,
        })
    }

    /// Starts a worker for every idle notifier whose queue's head is due;
    /// returns the earliest instant a head not yet due becomes due.
    async fn dispatch(self: &Arc<Self>) -> Result<Option<Millis>, crate::store::StoreError> {
        let now = self.ctx.clock.now();
        let mut next: Option<Millis> = None;
        for name in self.notifiers().names() {
            if self.lock_busy().contains(name) {
                // Its worker wakes the loop when it is done.
                continue;
            }
            match self.head(name).await? {
                Head::Empty => {}
                Head::DueAt(at) if at > now => next = Some(next.map_or(at, |n| n.min(at))),
                Head::DueAt(_) => {
                    if self.lock_busy().insert(name.clone()) {
                        let me = self.clone();
                        let name = name.clone();
                        self.ctx.tasks.spawn(async move {
                            me.worker(&name).await;
                            me.lock_busy().remove(&name);
                            me.wake.notify_one();
                        });
                    }
                }
            }
        }
        Ok(next)
    }

    /// Delivers one notifier's rows, oldest first, until its queue is empty
    /// or its head is not due (waiting for a retry): later rows never
    /// overtake an earlier one. Waits for the notifier's rate limit before
    /// each delivery.
    async fn worker(&self, notifier: &str) {
        'queue: while !self.ctx.shutdown.is_cancelled() {
            let rows = match self
                .ctx
                .store
                .due_notifications(Millis::MAX, BATCH, Some(notifier))
                .await
            {
                Ok(rows) if rows.is_empty() => break,
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(%notifier, error = %e, "outbox query failed");
                    break;
                }
            };
            let mut settled = 0;
            for row in rows {
                if row.next_attempt_at > self.ctx.clock.now() {
                    break 'queue;
                }
                if !self.wait_for_slot(notifier).await {
                    break 'queue;
                }
                match self.deliver(row).await {
                    Ok(Delivered::Settled) => settled += 1,
                    // Waiting for its retry: the rows behind it wait too.
                    Ok(Delivered::Retry) => break 'queue,
                    // Claimed by another replica: not ours to send.
                    Ok(Delivered::NotOurs) => {}
                    Err(e) => {
                        tracing::error!(%notifier, error = %e, "outbox delivery bookkeeping failed");
                        break 'queue;
                    }
                }
            }
            if settled == 0 {
                // Nothing this pass could settle: look again at the next
                // wake-up or due time, not in a tight loop.
                break;
            }
        }
    }

    /// Waits until `notifier`'s rate limit allows one more delivery; false
    /// if shutdown came first.
    async fn wait_for_slot(&self, notifier: &str) -> bool {
        let Some(limiter) = self.limiter(notifier) else {
            return true;
        };
        loop {
            match limiter.take() {
                Ok(()) => return true,
                Err(wait) => {
                    tokio::select! {
                        _ = self.ctx.shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// The limiter for `notifier`'s `rate_limit` in force (a new one when
    /// the limit changed with a reload), if it has one.
    fn limiter(&self, notifier: &str) -> Option<Arc<Limiter>> {
        let limit = self.notifiers().rate_limit(notifier);
        let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        let Some(limit) = limit else {
            limiters.remove(notifier);
            return None;
        };
        let current = limiters
            .entry(notifier.to_string())
            .or_insert_with(|| Arc::new(Limiter::new(limit)));
        if current.limit != limit {
            *current = Arc::new(Limiter::new(limit));
        }
        Some(current.clone())
    }

    /// Pending rows of notifiers that are no longer configured fail for
    /// good, at once: none of them can be sent, whether it waits for a
    /// retry or not (so a reload that removes a notifier leaves no row
    /// waiting for a look).
    async fn sweep_orphans(&self) -> Result<(), crate::store::StoreError> {
        let notifiers = self.notifiers();
        for row in self
            .ctx
            .store
            .due_notifications(Millis::MAX, 256, None)
            .await?
        {
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
                    me.worker(&n).await;
                    me.lock_busy().remove(&n);
                }
            }
        }))
        .await;
        self.sweep_orphans().await
    }

    /// Delivers one row under this replica's claim.
    async fn deliver(
        &self,
        row: NotificationRecord,
    ) -> Result<Delivered, crate::store::StoreError> {
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
            return Ok(Delivered::NotOurs);
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
                .map(|()| Delivered::Settled);
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
                    .map(|()| Delivered::Settled)
            }
            Err(NotifyError::Temporary {
                detail,
                retry_after,
            }) if now - row.created_at < MAX_RETRY_AGE.as_millis() as Millis => {
                self.count(&row.notifier, Outcome::retried);
                let delay = retry_delay(retry_after, attempts);
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
                    .map(|()| Delivered::Retry)
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
                    .map(|()| Delivered::Settled)
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

/// What one delivery did to its row.
enum Delivered {
    /// Sent, or failed for good: the row is settled.
    Settled,
    /// A temporary failure: the row waits for its retry (and the notifier's
    /// later rows with it).
    Retry,
    /// Another replica holds the row.
    NotOurs,
}

/// How long a temporary failure waits: the receiver's `Retry-After` when it
/// gave one (at least [`MIN_RETRY`], so a `Retry-After: 0` cannot make a
/// tight loop), else the exponential backoff; never more than
/// [`MAX_BACKOFF`].
pub fn retry_delay(retry_after: Option<Duration>, attempts: u32) -> Duration {
    retry_after
        .map(|d| d.max(MIN_RETRY))
        .unwrap_or_else(|| backoff(attempts))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_wins_over_the_backoff_within_bounds() {
        assert_eq!(
            retry_delay(Some(Duration::from_secs(2)), 6),
            Duration::from_secs(2)
        );
        assert_eq!(retry_delay(Some(Duration::ZERO), 1), MIN_RETRY);
        assert_eq!(
            retry_delay(Some(Duration::from_secs(86_400)), 1),
            MAX_BACKOFF
        );
        assert_eq!(retry_delay(None, 1), backoff(1));
    }
}
