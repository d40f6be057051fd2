//! Several replicas on one shared store (PostgreSQL): the timer-driven
//! rescan that picks up what no live replica holds.
//!
//! At every lease renewal (a third of `[store] lease`), a replica on a
//! shared store lists the active releases it could claim (lease free,
//! expired or its own: [`crate::store::Store::adoptable_releases`], read
//! from the lease columns, so the cost does not grow with the watches other
//! replicas hold) and claims the lease of each one it does not run. A claim succeeds only for a release nobody holds (one
//! registered on another replica that has not claimed it yet) or whose
//! holder stopped renewing (its lease expired): so a new release is picked
//! up by some replica without a restart, and a dead replica's watches and
//! rollbacks are taken over within one lease period plus one renewal
//! period. Its queued pages are sent too: the outbox is woken, and its
//! claims on them expire like a watch's.
//!
//! No busy poll: one query per renewal period (and one claim per release
//! it can adopt), a timer, nothing while idle beyond it.

use super::Guardian;
use std::sync::Arc;

impl Guardian {
    /// On a shared store, takes over the active releases nobody holds
    /// (logged; counted in `rg_lease_takeovers_total`). Errors are logged and
    /// retried at the next renewal.
    pub(super) async fn adopt_if_shared(self: &Arc<Self>) {
        if self.ctx.settings().store.owner().is_none() {
            return;
        }
        if let Err(e) = self.adopt_orphans().await {
            tracing::warn!(error = %e, "cannot look for watches to take over; retrying at the next renewal");
        }
    }

    async fn adopt_orphans(self: &Arc<Self>) -> Result<(), super::ControlError> {
        let now = self.ctx.clock.now();
        let found = self.ctx.store.adoptable_releases(&self.owner, now).await?;
        let mut adopted = 0;
        for release in found {
            let running = self.lock_watches().contains_key(&release.id)
                || self.lock_rollbacks().contains(&release.id);
            if running || !self.claim(&release.id).await? {
                continue;
            }
            tracing::warn!(release = %release.id, owner = %self.owner, "taking over a watch no live replica holds");
            self.ctx.telemetry.lease_takeovers.inc();
            let now = self.ctx.clock.now();
            let why = format!("watch taken over by replica {}", self.owner);
            self.resume(&release, now, &why).await?;
            adopted += 1;
        }
        if adopted > 0 {
            tracing::info!(watches = adopted, "took over watches");
        }
        // Pages another replica queued and could not send are due here too.
        self.outbox.wake();
        Ok(())
    }
}
