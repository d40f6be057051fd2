//! The durable outbox: delivers stored notifications, retries temporary
//! failures with exponential backoff, and survives restarts (undelivered
//! rows are simply still `pending` in the store).
//!
//! Delivery is at-least-once: a crash between a receiver accepting a message
//! and the outbox marking it sent re-sends it once after the restart. Every
//! message carries its stable `dedup_key` so receivers (PagerDuty's
//! `dedup_key`, a webhook's consumer) can drop such a repeat.

use super::NotifyError;
use crate::app::Context;
use crate::model::{DeliveryStatus, Millis, NotificationRecord};
use crate::telemetry::{NotificationLabels, Outcome};
use futures_util::future::join_all;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Delivery attempts before a notification is marked `failed`.
pub const MAX_ATTEMPTS: u32 = 8;
/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often the outbox looks at the store even without a wake-up.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Rows taken per pass.
const BATCH: usize = 64;

pub struct Outbox {
    ctx: Arc<Context>,
    wake: Notify,
}

impl Outbox {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            wake: Notify::new(),
        })
    }

    /// Wakes the delivery loop (new rows were enqueued).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Starts the delivery loop on the context's task tracker.
    pub fn spawn(self: &Arc<Self>) {
        let me = self.clone();
        self.ctx.tasks.spawn(async move { me.run().await });
    }

    async fn run(&self) {
        let cancel = self.ctx.shutdown.clone();
        loop {
            if let Err(e) = self.deliver_due().await {
                tracing::error!(error = %e, "outbox pass failed");
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
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Delivers every due row once. Public for tests and for shutdown flushes.
    pub async fn deliver_due(&self) -> Result<(), crate::store::StoreError> {
        loop {
            let now = self.ctx.clock.now();
            let due = self.ctx.store.due_notifications(now, BATCH).await?;
            if due.is_empty() {
                return Ok(());
            }
            // One queue per notifier, delivered side by side: a slow or
            // black-holed receiver delays only its own messages.
            let mut queues: BTreeMap<String, Vec<NotificationRecord>> = BTreeMap::new();
            for row in due {
                queues.entry(row.notifier.clone()).or_default().push(row);
            }
            let results = join_all(queues.into_values().map(|rows| async move {
                for row in rows {
                    self.deliver(row).await?;
                }
                Ok::<(), crate::store::StoreError>(())
            }))
            .await;
            results.into_iter().collect::<Result<Vec<()>, _>>()?;
        }
    }

    async fn deliver(&self, row: NotificationRecord) -> Result<(), crate::store::StoreError> {
        let settings = self.ctx.settings();
        let attempts = row.attempts + 1;
        let Some(cfg) = settings.notifiers.get(&row.notifier) else {
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
                .await;
        };
        let notifier = super::build(cfg, &self.ctx.notify_http);
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
            }
            Err(NotifyError::Temporary {
                detail,
                retry_after,
            }) if attempts < MAX_ATTEMPTS => {
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

/// Delay before attempt `attempts + 1`.
pub fn backoff(attempts: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempts.saturating_sub(1))
        .unwrap_or(u32::MAX);
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
