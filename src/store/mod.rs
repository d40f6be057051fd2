//! Durable state behind one trait: releases, check states, the decision
//! timeline, the notification outbox and rollback attempts.
//!
//! Every method is one transaction. The one backend is SQLite in WAL mode
//! ([`sqlite::SqliteStore`]), embedded, for a single daemon; another backend
//! (for several replicas) would implement the same trait.
//!
//! Durability guarantees the rest of the daemon builds on:
//! - a tick's results (check states, decisions, outbox rows, the next tick,
//!   a rollback request) are written together by [`Store::commit_tick`], so a
//!   crash either loses the whole tick (and it is redone over the same
//!   interval) or none of it;
//! - outbox rows are keyed by a stable dedup key: enqueuing the same event
//!   twice keeps one row, so a redone tick never pages twice;
//! - a release has at most one rollback row, and only the caller that moves
//!   it from `requested` to `running` ([`Store::start_rollback`]) runs the hook;
//! - starting and finishing a rollback are each atomic with their bookkeeping:
//!   [`Store::start_rollback`] writes the move to `running`, its decision and
//!   its pages in one transaction (only for the winner), and
//!   [`Store::finish_rollback`] writes the outcome, the release's final status,
//!   its decision and its pages in one transaction, so a crash never leaves a
//!   started or finished rollback without its timeline entry and page;
//! - only the latest release of a (service, environment) can be rolled back
//!   by hand ([`Store::request_rollback`]): rolling back an older one would
//!   undo the newer deploy;
//! - acknowledging a release ([`Store::ack`]) suppresses its queued pages in
//!   the same transaction, so none of them is sent afterwards.

pub mod sqlite;

use crate::model::{
    CheckRecord, Decision, DeliveryStatus, Millis, NewRelease, NotificationRecord, Release,
    ReleaseStatus, RollbackRecord, RollbackState,
};
use async_trait::async_trait;

/// Store failures. Details are for logs; the API answers "internal error".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Backend(String),
    #[error("store: corrupt row: {0}")]
    Corrupt(String),
}

/// The result of registering a release.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub release: Release,
    /// False when the same (service, environment, version) was already the
    /// latest release: the existing one is returned.
    pub created: bool,
    /// Ids of the watches this release superseded.
    pub superseded: Vec<String>,
}

/// Filter for [`Store::list_releases`]; newest first.
#[derive(Debug, Clone, Default)]
pub struct ReleaseFilter {
    pub service: Option<String>,
    pub environment: Option<String>,
    pub status: Option<ReleaseStatus>,
    /// 0 means the default (100).
    pub limit: usize,
    /// Only releases after this (started_at, id) in the list's order (older
    /// ones): the position of the last release of the previous page.
    pub before: Option<(Millis, String)>,
}

/// A release with everything recorded about it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseDetails {
    pub release: Release,
    pub checks: Vec<CheckRecord>,
    /// In time order.
    pub decisions: Vec<Decision>,
    /// In creation order.
    pub notifications: Vec<NotificationRecord>,
    pub rollback: Option<RollbackRecord>,
}

/// Everything one tick of a watch produced, written in one transaction.
#[derive(Debug, Clone, Default)]
pub struct TickCommit {
    pub checks: Vec<CheckRecord>,
    pub decisions: Vec<Decision>,
    /// Inserted unless a row with the same key exists (dedup).
    pub notifications: Vec<NotificationRecord>,
    pub next_check_at: Option<Millis>,
    /// A status to move to (e.g. `verified`); `None` keeps `watching`.
    pub status: Option<ReleaseStatus>,
    /// A rollback to request: inserted only if the release has none yet, and
    /// then the status becomes `rolling_back`.
    pub rollback: Option<RollbackRecord>,
    pub now: Millis,
}

/// What [`Store::commit_tick`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickApplied {
    /// Written. `rollback_requested` is true if this commit created the
    /// release's rollback request.
    Applied { rollback_requested: bool },
    /// The release is no longer `watching` (aborted, superseded, ...): nothing written.
    NotWatching,
}

/// Outcome of asking for a rollback outside a tick (manual rollback).
#[derive(Debug, Clone, PartialEq)]
pub enum RollbackRequest {
    /// Recorded now; the caller should start it.
    Requested,
    /// The release already has a rollback (any state): nothing changed.
    Exists(RollbackRecord),
    /// The release is in a status that cannot roll back (e.g. aborted).
    NotAllowed(ReleaseStatus),
    /// A newer release of the same (service, environment) exists: the
    /// requested one is no longer what runs, and rolling it back would undo
    /// the newer deploy. Nothing changed; these name the newest release.
    NotLatest {
        latest_id: String,
        latest_version: String,
    },
    NotFound,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Registers a release: returns the latest release of (service,
    /// environment) if it has the same version; otherwise supersedes every
    /// `watching` release of that (service, environment) (status
    /// `superseded`, a decision on each) and inserts the new one as
    /// `watching` with `started_at = now` and the given first tick.
    async fn register_release(
        &self,
        new: &NewRelease,
        environment: &str,
        id: &str,
        now: Millis,
        first_check_at: Millis,
    ) -> Result<Registered, StoreError>;

    async fn get_release(&self, id: &str) -> Result<Option<Release>, StoreError>;

    async fn release_details(&self, id: &str) -> Result<Option<ReleaseDetails>, StoreError>;

    async fn list_releases(&self, filter: &ReleaseFilter) -> Result<Vec<Release>, StoreError>;

    /// Releases in `watching` or `rolling_back`: what a restart resumes.
    async fn active_releases(&self) -> Result<Vec<Release>, StoreError>;

    async fn load_checks(&self, release_id: &str) -> Result<Vec<CheckRecord>, StoreError>;

    /// Writes a tick (see [`TickCommit`]) if the release is still `watching`.
    async fn commit_tick(
        &self,
        release_id: &str,
        tick: &TickCommit,
    ) -> Result<TickApplied, StoreError>;

    /// Moves a release from one of `from` to `to`, appending `decision`;
    /// terminal statuses clear `next_check_at` and set `ended_at = now`.
    /// Returns the release after the change, or `None` if it does not exist
    /// or was not in one of `from` (then nothing changed).
    async fn transition(
        &self,
        release_id: &str,
        from: &[ReleaseStatus],
        to: ReleaseStatus,
        decision: &Decision,
        now: Millis,
    ) -> Result<Option<Release>, StoreError>;

    /// Sets `acked` and appends the decision; `None` if no such release.
    /// In the same transaction every `pending` outbox row of the release
    /// becomes [`DeliveryStatus::Suppressed`] (with `last_error` saying why),
    /// so no queued page is sent after the ack; rows already `sent` or
    /// `failed` are left alone. Rows enqueued later are stored as usual: the
    /// caller decides not to page an acknowledged release.
    async fn ack(
        &self,
        release_id: &str,
        decision: &Decision,
    ) -> Result<Option<Release>, StoreError>;

    async fn append_decision(
        &self,
        release_id: &str,
        decision: &Decision,
    ) -> Result<(), StoreError>;

    /// Inserts outbox rows, ignoring keys that exist. Returns how many were
    /// new. Rows for a release that is acked (read in the same transaction)
    /// are stored `suppressed`, never `pending`; `commit_tick`,
    /// `start_rollback` and `finish_rollback` insert their rows the same way.
    async fn enqueue(&self, records: &[NotificationRecord]) -> Result<usize, StoreError>;

    /// `pending` rows whose `next_attempt_at <= now`, oldest first (never a
    /// final `sent`, `failed` or `suppressed` row), of one notifier or of all.
    async fn due_notifications(
        &self,
        now: Millis,
        limit: usize,
        notifier: Option<&str>,
    ) -> Result<Vec<NotificationRecord>, StoreError>;

    /// Earliest `next_attempt_at` of any pending row.
    async fn next_notification_due(&self) -> Result<Option<Millis>, StoreError>;

    /// Records a delivery attempt's result — only on a row that is still
    /// `pending`: a row suppressed by an ack while it was being sent stays
    /// `suppressed` (no error).
    async fn mark_notification(
        &self,
        key: &str,
        status: DeliveryStatus,
        attempts: u32,
        last_error: Option<&str>,
        next_attempt_at: Millis,
        sent_at: Option<Millis>,
    ) -> Result<(), StoreError>;

    /// Requests a rollback outside a tick (manual): allowed from `watching`
    /// (and `verified`) for the latest release of its (service, environment);
    /// sets `rolling_back`, appends the decision. Refusals change nothing and
    /// are checked in this order: [`RollbackRequest::NotFound`],
    /// [`RollbackRequest::Exists`] (any rollback row, whatever its state),
    /// [`RollbackRequest::NotLatest`] (a release of the same service and
    /// environment was registered after this one), then
    /// [`RollbackRequest::NotAllowed`] (the status).
    async fn request_rollback(
        &self,
        release_id: &str,
        record: &RollbackRecord,
        decision: &Decision,
    ) -> Result<RollbackRequest, StoreError>;

    /// Moves the rollback from `requested` to `running` (`started_at = now`).
    /// True only for the one caller that made the move: only that caller may
    /// run the hook. In the same transaction, and only for that caller, the
    /// decision is appended and the outbox rows are inserted (existing keys
    /// ignored, as in [`Store::commit_tick`]); a caller that gets `false`
    /// wrote nothing.
    async fn start_rollback(
        &self,
        release_id: &str,
        now: Millis,
        decision: &Decision,
        notifications: &[NotificationRecord],
    ) -> Result<bool, StoreError>;

    /// Records the hook's outcome (`succeeded`, `failed` or `interrupted`) and
    /// moves the release to `rolled_back` / `rollback_failed`, with a decision
    /// and the outbox rows announcing it (existing keys ignored), all in one
    /// transaction. The first outcome is kept: finishing a rollback that
    /// already has one writes nothing, not the decision nor the rows.
    #[allow(clippy::too_many_arguments)]
    async fn finish_rollback(
        &self,
        release_id: &str,
        state: RollbackState,
        exit_code: Option<i32>,
        output: Option<&str>,
        decision: &Decision,
        notifications: &[NotificationRecord],
        now: Millis,
    ) -> Result<(), StoreError>;

    async fn get_rollback(&self, release_id: &str) -> Result<Option<RollbackRecord>, StoreError>;

    /// Counts of releases by status (for `/metrics`).
    async fn count_by_status(&self) -> Result<Vec<(ReleaseStatus, u64)>, StoreError>;
}
