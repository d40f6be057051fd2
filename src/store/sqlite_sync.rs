//! Durability off the store's thread: the SQLite file runs with
//! `synchronous = NORMAL` (a commit writes its WAL frames and returns,
//! without a sync), and this module's thread syncs the WAL file before any
//! job that depends on a commit is answered.
//!
//! This module owns the sync thread and the rule that ties answers to it:
//! - the store thread counts each write it commits ([`Syncer::committed`])
//!   and hands every answer to [`Syncer::answer`]. An answer that depends on
//!   nothing unsynced (every commit so far is on disk) is sent at once, on
//!   the store thread; any other waits for the sync thread;
//! - the sync thread waits on its queue (no timer, no polling), takes
//!   everything queued, syncs the WAL file once (`fdatasync`) and answers
//!   all of it: one sync covers every commit made before it started, so
//!   commits made while a sync runs share the next one. The store thread
//!   meanwhile runs the next batch: the disk's sync latency is no longer
//!   spent by the thread that runs the SQL;
//! - a read counts too: a read that saw a commit not yet synced waits for
//!   that sync, so nothing a caller learns from the store can be lost by a
//!   power cut after it learned it;
//! - a failed sync is final (after a failed `fsync`, Linux may have dropped
//!   the pages it could not write, and a later sync "succeeds" without
//!   them): that answer and every later one that waits for a sync gets the
//!   error, and the daemon must be restarted (SQLite then recovers the WAL
//!   as the disk has it).
//!
//! WAL frames are appended in commit order, and SQLite's recovery keeps the
//! longest valid prefix of the WAL, so once a sync has covered a commit it
//! is durable together with every commit before it. A crash of the process
//! alone (`kill -9`) loses nothing committed: the frames are in the page
//! cache, and only the answers are lost.

use super::super::StoreError;
use super::batch::Job;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

/// Makes every commit so far durable (production: `fdatasync` of the WAL
/// file; tests put their own).
pub(super) type SyncFn = Box<dyn FnMut() -> std::io::Result<()> + Send>;

/// The store thread's side of the sync thread.
pub(super) struct Syncer {
    queue: mpsc::Sender<Waiting>,
    /// Write transactions committed on the store thread (only it counts).
    committed: u64,
    /// The last commit number a successful sync covered.
    synced: Arc<AtomicU64>,
}

/// Answers waiting for the sync of commit `upto`.
struct Waiting {
    jobs: Vec<Box<dyn Job>>,
    outcome: Result<(), StoreError>,
    upto: u64,
}

impl Syncer {
    /// Starts the sync thread; it ends when the [`Syncer`] is dropped,
    /// after answering what was queued.
    pub(super) fn start(sync: SyncFn) -> std::io::Result<Syncer> {
        let (queue, waiting) = mpsc::channel();
        let synced = Arc::new(AtomicU64::new(0));
        let covered = synced.clone();
        std::thread::Builder::new()
            .name("rg-sync".into())
            .spawn(move || serve(waiting, sync, covered))?;
        Ok(Syncer {
            queue,
            committed: 0,
            synced,
        })
    }

    /// A write transaction was committed: answers from now on wait for a
    /// sync that covers it.
    pub(super) fn committed(&mut self) {
        self.committed += 1;
    }

    /// Answers `jobs` with `outcome` once every commit so far is durable:
    /// at once if it already is (or if `outcome` is an error: nothing of
    /// theirs was committed), else after the sync thread's next sync.
    pub(super) fn answer(&self, jobs: Vec<Box<dyn Job>>, outcome: Result<(), StoreError>) {
        if outcome.is_err() || self.synced.load(Ordering::Acquire) >= self.committed {
            for job in jobs {
                job.answer(outcome.as_ref().map(|_| ()));
            }
            return;
        }
        let waiting = Waiting {
            jobs,
            outcome,
            upto: self.committed,
        };
        if let Err(mpsc::SendError(w)) = self.queue.send(waiting) {
            // The sync thread is gone (it panicked): nothing is synced.
            let e = StoreError::Backend("the store's sync thread has stopped".into());
            for job in w.jobs {
                job.answer(Err(&e));
            }
        }
    }
}

/// The sync thread: syncs once for everything queued, then answers it.
fn serve(waiting: mpsc::Receiver<Waiting>, mut sync: SyncFn, synced: Arc<AtomicU64>) {
    let mut failed: Option<StoreError> = None;
    while let Ok(first) = waiting.recv() {
        let mut batch = vec![first];
        batch.extend(waiting.try_iter());
        let upto = batch.iter().map(|w| w.upto).max().unwrap_or(0);
        if failed.is_none() && synced.load(Ordering::Acquire) < upto {
            match sync() {
                Ok(()) => synced.store(upto, Ordering::Release),
                Err(e) => {
                    tracing::error!(error = %e, "cannot sync the database's WAL file to disk; what was committed since the last sync may be lost, and every write now fails: restart the daemon");
                    failed = Some(StoreError::Backend(format!(
                        "the database's WAL file could not be synced to disk ({e}); restart the daemon"
                    )));
                }
            }
        }
        for w in batch {
            let outcome = match (&w.outcome, &failed) {
                (Err(e), _) | (Ok(()), Some(e)) => Err(e),
                (Ok(()), None) => Ok(()),
            };
            for job in w.jobs {
                job.answer(outcome);
            }
        }
    }
}

/// `fdatasync` of the database's WAL file (`PATH-wal`), opened at the first
/// sync (SQLite creates it; the store's connection keeps it until it
/// closes, so the same file serves every sync).
pub(super) fn wal_sync(database: &std::path::Path) -> SyncFn {
    let mut wal = database.as_os_str().to_owned();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    let mut file: Option<File> = None;
    Box::new(move || {
        let f = match &file {
            Some(f) => f,
            None => file.insert(File::open(&wal)?),
        };
        f.sync_data()
    })
}
