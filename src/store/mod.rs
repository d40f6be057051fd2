//! Durable state behind one trait: releases, check states, the decision
//! timeline, the notification outbox, rollback attempts and the leases that
//! say which replica works on what.
//!
//! This module owns the seam: the [`Store`] trait, [`StoreSettings`] and
//! [`open`], which picks the backend. Every method is one transaction. The
//! embedded backend is SQLite in WAL mode ([`sqlite::SqliteStore`]); the
//! backend for several replicas is PostgreSQL ([`postgres::PostgresStore`],
//! selected by `[store] url`). Both run the same contract tests
//! (`tests/it/store_contract.rs`).
//!
//! The store holds no product policy: the scheduler decides what a
//! supersession records, what an ack silences and with which note, which
//! decisions and pages go with each change; the store writes what it is given,
//! atomically, and enforces only the invariants below. The few domain rules
//! those invariants need are the model's, shared by every backend
//! ([`ReleaseStatus::can_roll_back`], [`RollbackState::release_status`],
//! [`ReleaseStatus::is_terminal`]).
//!
//! Durability guarantees the rest of the daemon builds on:
//! - a tick's results (check states, decisions, outbox rows, the next tick,
//!   a rollback request) are written together by [`Store::commit_tick`], so a
//!   crash either loses the whole tick (and it is redone over the same
//!   interval) or none of it;
//! - outbox rows are keyed by a stable dedup key: enqueuing the same event
//!   twice keeps one row, so a redone tick never pages twice;
//! - a release has at most one rollback row, and only the caller that moves
//!   it from `requested` to `running` ([`Store::claim_rollback`]) runs the hook;
//! - starting and finishing a rollback are each atomic with their bookkeeping:
//!   [`Store::claim_rollback`] writes the move to `running`, its decision and
//!   its pages in one transaction (only for the winner), and
//!   [`Store::finish_rollback`] writes the outcome, the release's final status,
//!   its decision and its pages in one transaction, so a crash never leaves a
//!   started or finished rollback without its timeline entry and page;
//! - only the latest release of a (service, environment) can be rolled back
//!   by hand ([`Store::request_rollback`]): rolling back an older one would
//!   undo the newer deploy;
//! - acknowledging a release ([`Store::ack`]) applies the caller's
//!   [`Silence`] to its queued pages in the same transaction, so none of them
//!   is sent afterwards, and to every page enqueued for it later;
//! - leases ([`Store::claim_watch`], [`Store::claim_notification`],
//!   [`Store::claim_rollback`]) give each watch, outbox row and rollback one
//!   owner at a time.
//!
//! # Several replicas
//!
//! A backend shared by several daemons must guarantee, beyond the above:
//! - a claim is a compare-and-set in one transaction: it succeeds only if the
//!   thing is unclaimed, claimed by the same owner, or its lease has expired
//!   (`expires_at <= now`); two concurrent claims never both succeed;
//! - fencing: a write made under a lease checks the lease in the same
//!   transaction as the write. [`Store::commit_tick`] with
//!   [`TickCommit::lease_owner`] set writes nothing and answers
//!   [`TickApplied::LeaseLost`] unless that owner still holds the watch, so a
//!   replica that stalled past its lease and was replaced cannot commit;
//! - a renewal succeeds only for the current holder, so a holder learns it
//!   lost the lease at its next renewal;
//! - the rollback claim is the at-most-once gate: it moves the rollback from
//!   `requested` to `running` for exactly one caller, ever;
//! - `now` and `expires_at` come from the callers' clocks: replicas must keep
//!   their clocks within a small fraction of the lease time of each other.

pub mod dump;
pub mod group_commit;
pub mod postgres;
pub mod registration;
pub mod sqlite;

use crate::model::{
    AuditRecord, CheckPoint, CheckRecord, Decision, DeliveryStatus, Millis, NewRelease,
    NotificationRecord, Release, ReleaseStatus, RollbackRecord, RollbackState,
};
use crate::section::Section;
use async_trait::async_trait;
pub use registration::{BatchRegistered, BatchResult, Registration};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which backend holds the daemon's state, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreSettings {
    /// One SQLite file (WAL mode); its directory is created if missing.
    Sqlite { path: PathBuf },
    /// One PostgreSQL database shared by several replicas.
    Postgres(postgres::PostgresSettings),
}

impl StoreSettings {
    /// The embedded SQLite backend at `path`.
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        StoreSettings::Sqlite { path: path.into() }
    }

    /// The local directory the daemon keeps its own files in beside the
    /// store (the hook supervisor's status files): the SQLite file's.
    pub fn state_dir(&self) -> PathBuf {
        match self {
            StoreSettings::Sqlite { path } => path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf(),
            StoreSettings::Postgres(pg) => postgres::state_dir(pg).to_path_buf(),
        }
    }

    /// This replica's lease owner id when the store is shared by several
    /// replicas (`[store] owner`); `None` for a store one daemon owns.
    pub fn owner(&self) -> Option<&str> {
        match self {
            StoreSettings::Sqlite { .. } => None,
            StoreSettings::Postgres(pg) => Some(&pg.owner),
        }
    }

    /// How long a watch lease lasts without renewal (`[store] lease`);
    /// `None`: the scheduler's default.
    pub fn lease(&self) -> Option<std::time::Duration> {
        match self {
            StoreSettings::Sqlite { .. } => None,
            StoreSettings::Postgres(pg) => Some(pg.lease),
        }
    }

    /// Where the state lives, for logs (`/var/lib/.../guardian.db`).
    pub fn describe(&self) -> String {
        match self {
            StoreSettings::Sqlite { path } => path.display().to_string(),
            StoreSettings::Postgres(pg) => postgres::describe(pg),
        }
    }
}

/// Reads `[store]` (`at`; `None` when the file has none): the backend its
/// keys select — today `path` (or nothing) for the embedded SQLite file
/// ([`sqlite::parse_section`]) — with every error reported at its key.
/// `state_directory` is systemd's `$STATE_DIRECTORY`, the default home of
/// the SQLite file.
///
/// Adding a backend: its file (with its section struct and `open`), a
/// variant of [`StoreSettings`], the key that selects it here and in
/// [`open`], its docs, and one line instantiating the contract suite in
/// `tests/it/store_contract.rs`.
pub fn parse_section(
    section: Option<&mut Section<'_, '_>>,
    state_directory: Option<&str>,
) -> Option<StoreSettings> {
    match section {
        Some(s)
            if s.fields
                .as_inline_table()
                .is_some_and(|t| t.contains_key("url")) =>
        {
            postgres::parse_section(s, state_directory)
        }
        section => sqlite::parse_section(section, state_directory),
    }
}

/// Opens the configured backend: creates what it needs (for SQLite the
/// file's parent directory), brings its schema up to date, and hands it
/// back behind the [`Store`] trait.
pub fn open(settings: &StoreSettings) -> Result<Arc<dyn Store>, StoreError> {
    match settings {
        StoreSettings::Sqlite { path } => {
            create_parent(path)?;
            Ok(Arc::new(sqlite::SqliteStore::open(path)?))
        }
        StoreSettings::Postgres(pg) => Ok(Arc::new(postgres::PostgresStore::open(pg)?)),
    }
}

/// `release-guardian export`: writes everything the configured store holds
/// that a restart needs (see [`dump`]) to `out`, from one snapshot; hands
/// `out` back with the rows written per table. The store is opened as the
/// daemon opens it (its schema brought up to date); a SQLite file that does
/// not exist is an error, never created.
pub async fn export<W: std::io::Write>(
    settings: &StoreSettings,
    out: W,
    now: Millis,
) -> Result<(W, dump::Counts), dump::DumpError> {
    let from = match settings {
        StoreSettings::Sqlite { .. } => "sqlite",
        StoreSettings::Postgres(_) => "postgres",
    };
    let mut writer = dump::Writer::new(out, from, now)?;
    match settings {
        StoreSettings::Sqlite { path } => sqlite::transfer::export(path, &mut writer)?,
        StoreSettings::Postgres(pg) => postgres::transfer::export(pg, &mut writer).await?,
    }
    writer.finish()
}

/// `release-guardian import`: loads a dump (any backend's) into the
/// configured store in one transaction, every line checked as it is read
/// (a bad or missing line fails the whole import, naming the line). A store
/// that holds anything is refused unless `force`, which replaces it.
/// Returns the rows written per table.
pub async fn import<R: std::io::BufRead>(
    settings: &StoreSettings,
    input: R,
    force: bool,
) -> Result<dump::Counts, dump::DumpError> {
    let mut reader = dump::Reader::new(input)?;
    match settings {
        StoreSettings::Sqlite { path } => sqlite::transfer::import(path, &mut reader, force),
        StoreSettings::Postgres(pg) => postgres::transfer::import(pg, &mut reader, force).await,
    }
}

fn create_parent(path: &Path) -> Result<(), StoreError> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display()))),
        None => Ok(()),
    }
}

/// Store failures. Details are for logs; the API answers "internal error".
/// `Clone`: a failed group commit gives each of its callers the same error.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// The replica that ticked: when set, the commit is fenced — written only
    /// if this owner still holds the watch's lease (else
    /// [`TickApplied::LeaseLost`]).
    pub lease_owner: Option<String>,
    pub checks: Vec<CheckRecord>,
    pub decisions: Vec<Decision>,
    /// Inserted unless a row with the same key exists (dedup).
    pub notifications: Vec<NotificationRecord>,
    /// Observed values to chart, written with the tick (a redone tick
    /// writes the same instants again, once); the store keeps the newest
    /// [`crate::model::MAX_POINTS_PER_CHECK`] per check.
    pub points: Vec<CheckPoint>,
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
    /// The commit named a lease owner that no longer holds the watch: nothing
    /// written; the watch belongs to another replica now.
    LeaseLost,
}

/// A release whose stored row cannot be read (an unknown status, broken
/// JSON, a value of the wrong type): reported and skipped, never resumed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnreadableRelease {
    pub id: String,
    /// What is wrong with the row (the column and the offending value).
    pub error: String,
}

/// What a restart finds to resume ([`Store::resumable_releases`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResumableReleases {
    /// Releases in `watching` or `rolling_back`, oldest first.
    pub releases: Vec<Release>,
    /// Rows that may be active (an active or unknown status) but cannot be
    /// read: one bad row is one bad release, not a daemon that cannot start.
    pub unreadable: Vec<UnreadableRelease>,
}

/// A claim on a watch or an outbox row: who holds it, and until when unless
/// renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// A stable id of the replica (the same across its restarts).
    pub owner: String,
    pub expires_at: Millis,
}

impl Lease {
    pub fn new(owner: impl Into<String>, expires_at: Millis) -> Self {
        Lease {
            owner: owner.into(),
            expires_at,
        }
    }
}

/// What an acknowledgement does to a release's pages, chosen by the caller:
/// every row still `pending` when the ack is written, and every `pending` row
/// enqueued for the release afterwards, is stored
/// [`DeliveryStatus::Suppressed`] with `last_error = note`. Rows already
/// `sent` or `failed` are history and stay as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    pub note: String,
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
    /// `superseded`, `superseded_by = id`, the watch ended at `now`, and
    /// `superseded` appended to each one's timeline) and inserts the new one
    /// as `watching` with `started_at = now` and the given first tick.
    async fn register_release(
        &self,
        new: &NewRelease,
        environment: &str,
        id: &str,
        now: Millis,
        first_check_at: Millis,
        superseded: &Decision,
    ) -> Result<Registered, StoreError>;

    /// Registers a batch in order, each item as [`Store::register_release`]
    /// would with what its [`Registration`] adds (its plan applied to the
    /// latest release as the write finds it, the new watch's lease, its
    /// audit record and delivery), each item seeing the ones before it. An
    /// item that fails answers its own `Err` and leaves nothing of itself;
    /// the others are written. Every `Ok` is durable when this returns. The
    /// outer `Err` means nothing was written. The default runs the items
    /// one by one ([`registration::one_by_one`]); SQLite writes the whole
    /// batch in one transaction (one sync), a savepoint per item.
    async fn register_batch(&self, batch: Vec<Registration>) -> BatchResult {
        Ok(registration::one_by_one(self, batch).await)
    }

    /// [`Store::register_batch`], telling `ordered` (sending on it, or
    /// dropping it) once the batch's place in the commit order is fixed:
    /// any batch given to the store after that commits after this one, so
    /// the group-commit writer may send the next batch while this one
    /// becomes durable. The default tells it when the batch is done; SQLite
    /// tells it once the batch is committed, before its sync, so the next
    /// batch's statements run while the disk syncs this one.
    async fn register_batch_ordered(
        &self,
        batch: Vec<Registration>,
        ordered: tokio::sync::oneshot::Sender<()>,
    ) -> BatchResult {
        let written = self.register_batch(batch).await;
        let _ = ordered.send(());
        written
    }

    async fn get_release(&self, id: &str) -> Result<Option<Release>, StoreError>;

    async fn release_details(&self, id: &str) -> Result<Option<ReleaseDetails>, StoreError>;

    /// [`Store::release_details`] of each of `ids`, in their order, read in
    /// one transaction (what a list of releases shows).
    async fn releases_details(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<ReleaseDetails>>, StoreError>;

    async fn list_releases(&self, filter: &ReleaseFilter) -> Result<Vec<Release>, StoreError>;

    /// Releases in `watching` or `rolling_back`: what a restart resumes.
    async fn active_releases(&self) -> Result<Vec<Release>, StoreError>;

    /// [`Store::active_releases`] row by row: a row that cannot be read is
    /// listed in [`ResumableReleases::unreadable`] (with its id) instead of
    /// failing the whole read, and so is a row whose status is not one this
    /// build knows (it may be active). Only a failure of the store itself is
    /// an error.
    async fn resumable_releases(&self) -> Result<ResumableReleases, StoreError>;

    /// The active releases `owner` could claim at `now`: those whose lease
    /// is free, expired, or `owner`'s own (what a replica on a shared store
    /// looks for at each renewal, to adopt). It may list more (the claim
    /// decides); the default lists every readable active release. A shared
    /// backend answers from the lease columns, so that the cost per renewal
    /// is what can be adopted, not every watch of the cluster.
    async fn adoptable_releases(
        &self,
        owner: &str,
        now: Millis,
    ) -> Result<Vec<Release>, StoreError> {
        let _ = (owner, now);
        Ok(self.resumable_releases().await?.releases)
    }

    /// Proves the store can write: one tiny durable write (`owner`'s
    /// heartbeat at `now`). An error means writes are failing now (disk
    /// full, read-only file system, lock held too long).
    async fn probe_write(&self, owner: &str, now: Millis) -> Result<(), StoreError>;

    /// Deletes up to `limit` releases that ended (a terminal status) before
    /// `ended_before`, with their checks, charted points, decisions, outbox
    /// rows and rollback, oldest first, in one transaction. Returns how many releases
    /// were deleted. Active releases are never touched.
    async fn prune_ended(&self, ended_before: Millis, limit: usize) -> Result<usize, StoreError>;

    /// The release that the webhook delivery `delivery` of `source` (an
    /// intake format's name) registered, if it was seen before.
    async fn delivery_release(
        &self,
        source: &str,
        delivery: &str,
    ) -> Result<Option<String>, StoreError>;

    /// Appends one API write to the audit log (pruned with its release).
    async fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError>;

    /// The newest `limit` audit records, of one release or of all, oldest
    /// first.
    async fn audit_log(
        &self,
        release_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError>;

    /// Records that `delivery` of `source` registered `release_id`; a
    /// delivery already recorded keeps its first release. Pruned with the
    /// release.
    async fn record_delivery(
        &self,
        source: &str,
        delivery: &str,
        release_id: &str,
        at: Millis,
    ) -> Result<(), StoreError>;

    async fn load_checks(&self, release_id: &str) -> Result<Vec<CheckRecord>, StoreError>;

    /// The charted values of a release's checks ([`TickCommit::points`]),
    /// by check name, then time; empty for an unknown release.
    async fn check_points(&self, release_id: &str) -> Result<Vec<CheckPoint>, StoreError>;

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

    /// Sets `acked`, records `silence` and appends the decision; `None` if
    /// no such release. In the same transaction the silence is applied to the
    /// release's queued pages (see [`Silence`]), so no queued page is sent
    /// after the ack; rows enqueued later get it too.
    async fn ack(
        &self,
        release_id: &str,
        decision: &Decision,
        silence: &Silence,
    ) -> Result<Option<Release>, StoreError>;

    async fn append_decision(
        &self,
        release_id: &str,
        decision: &Decision,
    ) -> Result<(), StoreError>;

    /// Inserts outbox rows, ignoring keys that exist. Returns how many were
    /// new. `pending` rows for a release that is acked (read in the same
    /// transaction) are stored with its [`Silence`], never `pending`;
    /// `commit_tick`, `claim_rollback` and `finish_rollback` insert their rows
    /// the same way.
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
    /// `suppressed` (no error). Clears the row's delivery claim.
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

    /// Claims the rollback for `owner`: moves it from `requested` to
    /// `running` (`started_at = now`) and records the owner. True only for the
    /// one caller that made the move, ever: only that caller may run the hook
    /// (the at-most-once gate; a claim never expires, since a hook that may
    /// have run is never run again). In the same transaction, and only for
    /// that caller, the decision is appended and the outbox rows are inserted
    /// (existing keys ignored, as in [`Store::commit_tick`]); a caller that
    /// gets `false` wrote nothing.
    async fn claim_rollback(
        &self,
        release_id: &str,
        owner: &str,
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

    /// How many outbox rows are `pending`, by notifier (for `/metrics`).
    async fn pending_by_notifier(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Takes the lease on a release's watch for `lease.owner` until
    /// `lease.expires_at`: succeeds (true) if the watch is unclaimed, already
    /// held by that owner (then it is extended), or its lease expired
    /// (`expires_at <= now`: a replica that stopped renewing is taken over).
    /// False if another owner holds a live lease, or no such release.
    async fn claim_watch(
        &self,
        release_id: &str,
        lease: &Lease,
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// Extends the lease to `lease.expires_at` if `lease.owner` still holds
    /// it (even past its expiry, as long as nobody took it over). False if
    /// another owner took it, it was released, or no such release.
    async fn renew_watch(&self, release_id: &str, lease: &Lease) -> Result<bool, StoreError>;

    /// [`Store::renew_watch`] for each of `release_ids`, in one transaction
    /// (one write for all of a replica's watches, not one per watch); returns
    /// the ids whose lease could not be renewed.
    async fn renew_watches(
        &self,
        release_ids: &[String],
        lease: &Lease,
    ) -> Result<Vec<String>, StoreError>;

    /// Gives the watch's lease up, if `owner` holds it (otherwise nothing).
    async fn release_watch(&self, release_id: &str, owner: &str) -> Result<(), StoreError>;

    /// Claims a `pending` outbox row for delivery, so that two replicas never
    /// send one message: true if the row was unclaimed, already this owner's,
    /// or its claim expired; false if another live claim holds it, the row is
    /// no longer `pending`, or there is no such row. Recording the attempt
    /// ([`Store::mark_notification`]) ends the claim.
    async fn claim_notification(
        &self,
        key: &str,
        lease: &Lease,
        now: Millis,
    ) -> Result<bool, StoreError>;
}
