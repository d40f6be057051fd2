//! The embedded store: one SQLite file in WAL mode behind the [`Store`] trait.
//!
//! This module owns the connection and how every [`Store`] method reaches it:
//! each method is one job run on the store's own thread, which owns the
//! connection and runs the jobs in the order they were asked for, so the
//! async runtime never waits on disk (and ten thousand watches waiting on
//! the store wait in a queue, not in hundreds of blocking-pool threads each
//! with its own stack and allocator arena). Every write group-commits: the
//! jobs queued while one commit ran share the next (one transaction, one
//! sync, a savepoint per job, so each job succeeds or fails alone, and each
//! is answered once it is durable); writes take the write lock up front
//! (`BEGIN IMMEDIATE`) so a check-then-write never races another writer, even
//! one in another process. A batch of registrations
//! ([`Store::register_batch`]) is one job, its registrations written
//! together (and again one by one, each under its own savepoint, only if
//! one fails). Its child modules hold the rest:
//! - `sqlite_batch.rs` — the store thread's loop: batches, savepoints, the
//!   commit, and when each answer is sent;
//! - `sqlite_sync.rs` — the sync thread: the WAL file synced (one
//!   `fdatasync` for every commit made meanwhile) before an answer that
//!   depends on a commit is sent;
//! - `sqlite_wal_writes.rs` — the VFS the connection opens the file with:
//!   the platform's own, except that a commit's WAL frames reach the file
//!   in two write calls instead of two per frame;
//! - `sqlite_schema.rs` — the tables, created and upgraded by numbered
//!   migrations tracked in `PRAGMA user_version`;
//! - `sqlite_ops.rs` — the SQL of each method;
//! - `sqlite_points.rs` — the charted check values, capped per check;
//! - `sqlite_rows.rs` — rows ⇄ domain types (a value that does not parse is
//!   [`StoreError::Corrupt`], never a panic);
//! - `sqlite_dump.rs` — the file's side of `export` and `import`
//!   ([`crate::store::dump`]).
//!
//! The guarantees of [`crate::store`] rest on the schema:
//! - `notifications.key` is the primary key and rows are inserted with
//!   `INSERT OR IGNORE`: the same event enqueued twice keeps one row;
//! - `rollbacks.release_id` is the primary key: a release has at most one
//!   rollback row, and `claim_rollback` moves it `requested → running` with a
//!   conditional `UPDATE`, so exactly one caller wins (and only the winner
//!   writes the decision and outbox rows, in the same transaction);
//! - leases are columns of the row they guard (`releases.lease_owner`,
//!   `notifications.claimed_by`, `rollbacks.claimed_by`), claimed by a
//!   conditional `UPDATE` under the write lock, and `commit_tick` checks
//!   `releases.lease_owner` in the same transaction as its writes (fencing;
//!   in a batch, the write lock is held from the batch's first job to its
//!   commit, so the check and the write still see no other writer). With
//!   one daemon per file the daemon is every lease's single owner; the same
//!   SQL holds for several processes sharing the file;
//! - every table's `release_id` references `releases (id)` with foreign keys
//!   on, so a row naming a missing release fails its whole transaction;
//! - `releases.seq` orders releases by registration, so "latest" and "newest
//!   first" are well defined even when timestamps are equal.

use super::{
    BatchResult, Lease, Registered, Registration, ReleaseDetails, ReleaseFilter, ResumableReleases,
    RollbackRequest, Silence, Store, StoreError, TickApplied, TickCommit,
};
use crate::model::{
    AuditRecord, CheckPoint, CheckRecord, Decision, DeliveryStatus, Millis, NewRelease,
    NotificationRecord, Release, ReleaseStatus, RollbackRecord, RollbackState,
};
use crate::section::Section;
use async_trait::async_trait;
use rusqlite::{Connection, Transaction};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Where the SQLite file lives when neither `[store] path` nor systemd's
/// `$STATE_DIRECTORY` say otherwise.
pub const DEFAULT_PATH: &str = "/var/lib/release-guardian/guardian.db";

/// `[store]` for the embedded SQLite backend.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqliteSection {
    /// The file, relative to the config's directory. Default:
    /// `$STATE_DIRECTORY/guardian.db` under systemd, else [`DEFAULT_PATH`].
    #[serde(default)]
    path: Option<PathBuf>,
}

/// Reads `[store]` (if the file has one) for the SQLite backend.
pub fn parse_section(
    section: Option<&mut Section<'_, '_>>,
    state_directory: Option<&str>,
) -> Option<super::StoreSettings> {
    let (config, base) = match section {
        Some(s) => {
            let c: SqliteSection = s.deserialize()?;
            if c.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                s.error("path", "`path` must not be empty");
                return None;
            }
            (c, s.base.to_path_buf())
        }
        None => (SqliteSection::default(), PathBuf::new()),
    };
    let path = match config.path {
        Some(p) => base.join(p),
        None => state_directory
            // systemd lists several directories separated by `:`; use the first.
            .and_then(|v| v.split(':').next().filter(|d| !d.is_empty()))
            .map(|d| Path::new(d).join("guardian.db"))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH)),
    };
    Some(super::StoreSettings::sqlite(path))
}

#[path = "sqlite_batch.rs"]
mod batch;
#[path = "sqlite_ops.rs"]
mod ops;
#[path = "sqlite_points.rs"]
mod points;
#[path = "sqlite_rows.rs"]
mod rows;
#[path = "sqlite_schema.rs"]
mod schema;
#[path = "sqlite_sync.rs"]
mod sync;
#[path = "sqlite_dump.rs"]
pub mod transfer;
#[path = "sqlite_wal_writes.rs"]
mod wal_writes;

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The page size of a file this build creates, in bytes (SQLite's default
/// is 4096). A commit writes every page it changed, whole, to the WAL, and
/// an answer waits for the sync of those bytes: a registration changes a
/// row or an index entry in about a dozen tables and indexes, a few dozen
/// bytes each, so with 1 KiB pages a commit writes a quarter of the bytes
/// and the sync ends sooner. An existing file keeps the page size it was
/// created with (it cannot change in WAL mode); `export` and `import` into
/// a new file convert one.
pub const PAGE_SIZE: u32 = 1024;

/// WAL frames between checkpoints (SQLite's `wal_autocheckpoint`; its
/// default is 1,000). A checkpoint runs on the store's thread, and every
/// one stops it for two `fsync`s (the WAL's, then the database file's)
/// besides copying each page the WAL holds once: under registration load
/// twice the frames make half as many stops, and a little less copying per
/// frame (registrations rewrite the same pages at the end of each index).
/// The WAL grows to about 2 MiB with 1 KiB pages (8 MiB with 4 KiB pages)
/// before it starts over.
pub const CHECKPOINT_PAGES: u32 = 2000;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::Error as E;
        match e {
            E::FromSqlConversionFailure(_, _, detail) => StoreError::Corrupt(detail.to_string()),
            E::InvalidColumnType(_, column, ty) => {
                StoreError::Corrupt(format!("column {column} holds an unexpected {ty}"))
            }
            E::IntegralValueOutOfRange(idx, v) => {
                StoreError::Corrupt(format!("column #{idx} holds {v}, out of range"))
            }
            other => StoreError::Backend(other.to_string()),
        }
    }
}

/// SQLite-backed [`Store`]: one file, one connection, WAL journal, every
/// commit synced before it is answered (a committed tick survives a power
/// cut).
pub struct SqliteStore {
    /// The queue of the store's thread (which owns the connection; it ends,
    /// closing the file, when the store is dropped).
    jobs: mpsc::Sender<Box<dyn batch::Job>>,
    /// Write transactions committed (each one sync), counted by the thread.
    commits: Arc<AtomicU64>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` and brings its schema up to
    /// date. The parent directory must exist; errors name the path.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(StoreError::Backend(format!(
                "cannot open the database {}: directory {} does not exist",
                path.display(),
                dir.display()
            )));
        }
        let failed = |e: StoreError| match e {
            StoreError::Backend(m) => {
                StoreError::Backend(format!("cannot open the database {}: {m}", path.display()))
            }
            corrupt => corrupt,
        };
        let conn = Self::connect(path).map_err(failed)?;
        let (jobs, queue) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let counted = commits.clone();
        let syncer = sync::Syncer::start(sync::wal_sync(path)).map_err(|e| {
            failed(StoreError::Backend(format!(
                "cannot start its sync thread: {e}"
            )))
        })?;
        std::thread::Builder::new()
            .name("rg-store".into())
            .spawn(move || batch::serve(conn, queue, counted, syncer))
            .map_err(|e| failed(StoreError::Backend(format!("cannot start its thread: {e}"))))?;
        Ok(SqliteStore {
            jobs,
            commits,
            path: path.to_path_buf(),
        })
    }

    fn connect(path: &Path) -> Result<Connection, StoreError> {
        // Through the VFS that writes a commit's WAL frames with two calls
        // instead of two per frame (`sqlite_wal_writes.rs`).
        let mut conn = match wal_writes::name() {
            Some(vfs) => {
                Connection::open_with_flags_and_vfs(path, rusqlite::OpenFlags::default(), vfs)?
            }
            None => Connection::open(path)?,
        };
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Before anything is written: on a new file it sets the page size,
        // on an existing one it does nothing.
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "the WAL journal was refused (journal_mode = {mode})"
            )));
        }
        // A commit does not sync: the store's sync thread syncs the WAL
        // before anything that depends on the commit is answered
        // (`sqlite_sync.rs`), so commits are as durable as with `FULL`.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // Savepoint journals (a savepoint per job of a batch) in memory: on
        // a temp file, each page a job first touches cost a `pwrite`.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // Copy the WAL into the database file every `CHECKPOINT_PAGES`
        // frames, not SQLite's default 1,000 (see the constant).
        conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)?;
        schema::migrate(&mut conn)?;
        Ok(conn)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write transactions committed since the store was opened, each
    /// shared by the writes of its batch (and each sync to disk shared by
    /// the commits made while the previous one ran).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// The schema version (`PRAGMA user_version`) this build creates.
    pub fn schema_version() -> u32 {
        schema::MIGRATIONS.len() as u32
    }

    /// The SQL of migration `index` (which takes the schema from version
    /// `index` to `index + 1`), for tests that build a file as an older
    /// build left it.
    pub fn migration_sql(index: usize) -> Option<&'static str> {
        schema::MIGRATIONS.get(index).copied()
    }

    /// Runs `f` on the store's thread in the next batch, inside a savepoint
    /// of the batch's transaction; answers once the batch is committed
    /// (durable) if `f` returned `Ok`, with `f`'s error otherwise (its
    /// savepoint rolled back). The work completes even if the caller's
    /// future is dropped, so a write is all or nothing.
    async fn run<T, F>(&self, access: batch::Access, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.submit(batch::call(access, f, answer), answered).await
    }

    /// Queues `job` for the store's thread and waits for its answer.
    async fn submit<T>(
        &self,
        job: Box<dyn batch::Job>,
        answered: tokio::sync::oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Backend("the store's thread has stopped".into()))?;
        answered
            .await
            .map_err(|_| StoreError::Backend("store task failed: it panicked".into()))?
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.run(batch::Access::Read, f).await
    }

    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.run(batch::Access::Write, f).await
    }
}

/// A registration batch, written as one job of the store's thread. Its
/// items are first written together, with no savepoint (a savepoint copies
/// each page an item first changes into its journal: the index pages,
/// again for each item). If one fails, the job asks to run again
/// ([`batch::Job::again`]): its writes are rolled back and the items are
/// written again in the same place of the queue, each in a savepoint of
/// its own, so the failing item is rolled back alone.
struct RegisterJob {
    items: Vec<Registration>,
    /// Set when the items failed together: the next run writes them one
    /// savepoint each.
    item_by_item: bool,
    /// Whether the job already ran again.
    retried: bool,
    /// `None` until run, and after a panic.
    out: Option<BatchResult>,
    reply: tokio::sync::oneshot::Sender<BatchResult>,
    /// Told once the batch is committed (dropped if it is not).
    ordered: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RegisterJob {
    /// The items with no savepoint; the first failure fails them all (and
    /// makes the next run item by item).
    fn together(&mut self, tx: &Transaction<'_>) -> BatchResult {
        let mut out = Vec::with_capacity(self.items.len());
        for item in &self.items {
            match ops::register_item(tx, item) {
                Ok(written) => out.push(Ok(written)),
                Err(e) => {
                    self.item_by_item = true;
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Each item in a savepoint of its own: a failing item is rolled back
    /// alone and answers its own error.
    fn each_in_its_savepoint(&self, tx: &Transaction<'_>) -> BatchResult {
        self.items
            .iter()
            .map(|item| {
                tx.execute_batch("SAVEPOINT registration")?;
                let result = ops::register_item(tx, item);
                tx.execute_batch(if result.is_ok() {
                    "RELEASE registration"
                } else {
                    "ROLLBACK TO registration; RELEASE registration"
                })?;
                Ok(result)
            })
            .collect()
    }
}

impl batch::Job for RegisterJob {
    fn access(&self) -> batch::Access {
        batch::Access::Write
    }

    fn run(&mut self, tx: &Transaction<'_>) -> bool {
        let out = match self.item_by_item {
            false => self.together(tx),
            true => self.each_in_its_savepoint(tx),
        };
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn again(&mut self) -> bool {
        let again = self.item_by_item && !self.retried;
        self.retried |= again;
        again
    }

    fn committed(&mut self) {
        if let Some(ordered) = self.ordered.take() {
            let _ = ordered.send(());
        }
    }

    fn answer(self: Box<Self>, outcome: Result<(), &StoreError>) {
        // A caller that went away does not need its answer.
        let _ = self.reply.send(batch::settle(self.out, outcome));
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn register_release(
        &self,
        new: &NewRelease,
        environment: &str,
        id: &str,
        now: Millis,
        first_check_at: Millis,
        superseded: &Decision,
    ) -> Result<Registered, StoreError> {
        let (new, environment, id) = (new.clone(), environment.to_owned(), id.to_owned());
        let superseded = superseded.clone();
        self.write(move |tx| {
            ops::register(
                tx,
                &new,
                &environment,
                &id,
                now,
                first_check_at,
                &superseded,
            )
        })
        .await
    }

    /// One transaction for the whole batch (one commit): the items are
    /// written together, and again item by item only if one fails.
    async fn register_batch(&self, batch: Vec<Registration>) -> BatchResult {
        self.register_batch_ordered(batch, tokio::sync::oneshot::channel().0)
            .await
    }

    /// `ordered` is told on the store's thread once the batch is committed
    /// (before it is synced): the store's thread runs jobs in queue order.
    async fn register_batch_ordered(
        &self,
        batch: Vec<Registration>,
        ordered: tokio::sync::oneshot::Sender<()>,
    ) -> BatchResult {
        let (reply, answered) = tokio::sync::oneshot::channel();
        self.submit(
            Box::new(RegisterJob {
                items: batch,
                item_by_item: false,
                retried: false,
                out: None,
                reply,
                ordered: Some(ordered),
            }),
            answered,
        )
        .await
    }

    async fn get_release(&self, id: &str) -> Result<Option<Release>, StoreError> {
        let id = id.to_owned();
        self.read(move |tx| ops::release(tx, &id)).await
    }

    async fn release_details(&self, id: &str) -> Result<Option<ReleaseDetails>, StoreError> {
        let id = id.to_owned();
        self.read(move |tx| ops::release_details(tx, &id)).await
    }

    async fn releases_details(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<ReleaseDetails>>, StoreError> {
        let ids = ids.to_vec();
        self.read(move |tx| ids.iter().map(|id| ops::release_details(tx, id)).collect())
            .await
    }

    /// Newest first (`started_at`, then registration order); limit 0 means
    /// 100, and at most 1000 rows are returned.
    async fn list_releases(&self, filter: &ReleaseFilter) -> Result<Vec<Release>, StoreError> {
        let filter = filter.clone();
        self.read(move |tx| ops::list_releases(tx, &filter)).await
    }

    async fn active_releases(&self) -> Result<Vec<Release>, StoreError> {
        self.read(ops::active_releases).await
    }

    async fn resumable_releases(&self) -> Result<ResumableReleases, StoreError> {
        self.read(ops::resumable_releases).await
    }

    async fn probe_write(&self, owner: &str, now: Millis) -> Result<(), StoreError> {
        let owner = owner.to_owned();
        self.write(move |tx| ops::probe_write(tx, &owner, now))
            .await
    }

    async fn delivery_release(
        &self,
        source: &str,
        delivery: &str,
    ) -> Result<Option<String>, StoreError> {
        let (source, delivery) = (source.to_owned(), delivery.to_owned());
        self.read(move |tx| ops::delivery_release(tx, &source, &delivery))
            .await
    }

    async fn record_delivery(
        &self,
        source: &str,
        delivery: &str,
        release_id: &str,
        at: Millis,
    ) -> Result<(), StoreError> {
        let (source, delivery, id) = (
            source.to_owned(),
            delivery.to_owned(),
            release_id.to_owned(),
        );
        self.write(move |tx| ops::record_delivery(tx, &source, &delivery, &id, at))
            .await
    }

    async fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let record = record.clone();
        self.write(move |tx| ops::append_audit(tx, &record)).await
    }

    async fn audit_log(
        &self,
        release_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let id = release_id.map(str::to_owned);
        self.read(move |tx| ops::audit_log(tx, id.as_deref(), limit))
            .await
    }

    async fn prune_ended(&self, ended_before: Millis, limit: usize) -> Result<usize, StoreError> {
        self.write(move |tx| ops::prune_ended(tx, ended_before, limit))
            .await
    }

    async fn load_checks(&self, release_id: &str) -> Result<Vec<CheckRecord>, StoreError> {
        let id = release_id.to_owned();
        self.read(move |tx| ops::checks(tx, &id)).await
    }

    async fn check_points(&self, release_id: &str) -> Result<Vec<CheckPoint>, StoreError> {
        let id = release_id.to_owned();
        self.read(move |tx| points::read(tx, &id)).await
    }

    /// A release that does not exist is `NotWatching` too.
    async fn commit_tick(
        &self,
        release_id: &str,
        tick: &TickCommit,
    ) -> Result<TickApplied, StoreError> {
        let (id, tick) = (release_id.to_owned(), tick.clone());
        self.write(move |tx| ops::commit_tick(tx, &id, &tick)).await
    }

    async fn transition(
        &self,
        release_id: &str,
        from: &[ReleaseStatus],
        to: ReleaseStatus,
        decision: &Decision,
        now: Millis,
    ) -> Result<Option<Release>, StoreError> {
        let (id, from, decision) = (release_id.to_owned(), from.to_vec(), decision.clone());
        self.write(move |tx| ops::transition(tx, &id, &from, to, &decision, now))
            .await
    }

    async fn ack(
        &self,
        release_id: &str,
        decision: &Decision,
        silence: &Silence,
    ) -> Result<Option<Release>, StoreError> {
        let (id, decision, silence) = (release_id.to_owned(), decision.clone(), silence.clone());
        self.write(move |tx| ops::ack(tx, &id, &decision, &silence))
            .await
    }

    /// Errors if the release does not exist.
    async fn append_decision(
        &self,
        release_id: &str,
        decision: &Decision,
    ) -> Result<(), StoreError> {
        let (id, decision) = (release_id.to_owned(), decision.clone());
        self.write(move |tx| ops::append_decision(tx, &id, &decision))
            .await
    }

    /// Each row's release is `message.release_id`, which must exist.
    async fn enqueue(&self, records: &[NotificationRecord]) -> Result<usize, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        let records = records.to_vec();
        self.write(move |tx| ops::enqueue(tx, &records)).await
    }

    async fn due_notifications(
        &self,
        now: Millis,
        limit: usize,
        notifier: Option<&str>,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        let notifier = notifier.map(str::to_string);
        self.read(move |tx| ops::due_notifications(tx, now, limit, notifier.as_deref()))
            .await
    }

    async fn next_notification_due(&self) -> Result<Option<Millis>, StoreError> {
        self.read(ops::next_notification_due).await
    }

    /// Errors if no outbox row has this key.
    async fn mark_notification(
        &self,
        key: &str,
        status: DeliveryStatus,
        attempts: u32,
        last_error: Option<&str>,
        next_attempt_at: Millis,
        sent_at: Option<Millis>,
    ) -> Result<(), StoreError> {
        let key = key.to_owned();
        let delivery = ops::Delivery {
            status,
            attempts,
            last_error: last_error.map(str::to_owned),
            next_attempt_at,
            sent_at,
        };
        self.write(move |tx| ops::mark_notification(tx, &key, &delivery))
            .await
    }

    async fn request_rollback(
        &self,
        release_id: &str,
        record: &RollbackRecord,
        decision: &Decision,
    ) -> Result<RollbackRequest, StoreError> {
        let (id, record, decision) = (release_id.to_owned(), record.clone(), decision.clone());
        self.write(move |tx| ops::request_rollback(tx, &id, &record, &decision))
            .await
    }

    /// Each outbox row's release is `message.release_id`, which must exist.
    async fn claim_rollback(
        &self,
        release_id: &str,
        owner: &str,
        now: Millis,
        decision: &Decision,
        notifications: &[NotificationRecord],
    ) -> Result<bool, StoreError> {
        let (id, owner, decision, notifications) = (
            release_id.to_owned(),
            owner.to_owned(),
            decision.clone(),
            notifications.to_vec(),
        );
        self.write(move |tx| ops::claim_rollback(tx, &id, &owner, now, &decision, &notifications))
            .await
    }

    /// Records the outcome once: a rollback already `succeeded`, `failed` or
    /// `interrupted` keeps its first outcome (a warning is logged). Errors if
    /// the release has no rollback or `state` is not an outcome, and then
    /// (like any failed statement, e.g. an outbox row naming a missing
    /// release) nothing is written.
    async fn finish_rollback(
        &self,
        release_id: &str,
        state: RollbackState,
        exit_code: Option<i32>,
        output: Option<&str>,
        decision: &Decision,
        notifications: &[NotificationRecord],
        now: Millis,
    ) -> Result<(), StoreError> {
        let (id, decision, notifications) = (
            release_id.to_owned(),
            decision.clone(),
            notifications.to_vec(),
        );
        let outcome = ops::Outcome {
            state,
            exit_code,
            output: output.map(str::to_owned),
            now,
        };
        self.write(move |tx| ops::finish_rollback(tx, &id, &outcome, &decision, &notifications))
            .await
    }

    async fn get_rollback(&self, release_id: &str) -> Result<Option<RollbackRecord>, StoreError> {
        let id = release_id.to_owned();
        self.read(move |tx| ops::rollback(tx, &id)).await
    }

    async fn count_by_status(&self) -> Result<Vec<(ReleaseStatus, u64)>, StoreError> {
        self.read(ops::count_by_status).await
    }

    async fn pending_by_notifier(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(ops::pending_by_notifier).await
    }

    async fn claim_watch(
        &self,
        release_id: &str,
        lease: &Lease,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let (id, lease) = (release_id.to_owned(), lease.clone());
        self.write(move |tx| ops::claim_watch(tx, &id, &lease, now))
            .await
    }

    async fn renew_watch(&self, release_id: &str, lease: &Lease) -> Result<bool, StoreError> {
        let (id, lease) = (release_id.to_owned(), lease.clone());
        self.write(move |tx| ops::renew_watch(tx, &id, &lease))
            .await
    }

    async fn renew_watches(
        &self,
        release_ids: &[String],
        lease: &Lease,
    ) -> Result<Vec<String>, StoreError> {
        let (ids, lease) = (release_ids.to_vec(), lease.clone());
        self.write(move |tx| {
            let mut lost = Vec::new();
            for id in ids {
                if !ops::renew_watch(tx, &id, &lease)? {
                    lost.push(id);
                }
            }
            Ok(lost)
        })
        .await
    }

    async fn release_watch(&self, release_id: &str, owner: &str) -> Result<(), StoreError> {
        let (id, owner) = (release_id.to_owned(), owner.to_owned());
        self.write(move |tx| ops::release_watch(tx, &id, &owner))
            .await
    }

    async fn claim_notification(
        &self,
        key: &str,
        lease: &Lease,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let (key, lease) = (key.to_owned(), lease.clone());
        self.write(move |tx| ops::claim_notification(tx, &key, &lease, now))
            .await
    }
}
