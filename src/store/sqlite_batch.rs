//! Group commit on the SQLite store's thread: every job (one [`Store`]
//! method's transaction) queued while the previous batch ran is run in
//! ONE transaction and made durable by ONE commit (one WAL sync), each job
//! inside its own savepoint.
//!
//! This module owns the store thread's loop ([`serve`]), what a job is
//! ([`Job`], made by [`call`]) and the order of its answers:
//! - the loop waits for a job (no timer, no polling: idle, the thread
//!   sleeps on its queue), then takes whatever else is queued, up to
//!   [`MAX_JOBS`]. A lone job is committed at once; a batch is what queued
//!   while the previous one ran;
//! - a batch with a write opens `BEGIN IMMEDIATE`, so the write lock is held
//!   from the first job of the batch to its commit: a job's
//!   check-then-write (the lease fencing in `commit_tick`, the conditional
//!   `UPDATE`s that claim a rollback, a watch or a message) sees every
//!   earlier job of the batch and no other writer, exactly as when each
//!   was its own transaction;
//! - each job runs between `SAVEPOINT job` and `RELEASE job`; a job that
//!   returns an error or panics is rolled back to its savepoint alone
//!   (`ROLLBACK TO job`): the other jobs of the batch are unaffected and the
//!   job's caller gets its error (a panic: "it panicked"). A job alone in
//!   its batch runs without a savepoint, and its failure rolls back the
//!   transaction. A failed job may ask to run again ([`Job::again`]): its
//!   writes are rolled back and it runs again in the same place, before
//!   anything queued after it;
//! - a job may be told that its writes are committed ([`Job::committed`],
//!   on the store thread, before the sync): the place of its writes in the
//!   commit order is then fixed;
//! - answers are sent after the commit, and after the sync that makes it
//!   durable ([`Syncer`], in `sqlite_sync.rs`: the commit itself does not
//!   sync, so the thread goes on to the next batch while the disk syncs):
//!   an answer never reaches its caller before the job's writes are
//!   durable. If the commit fails, every job of the batch that had not been
//!   answered gets the error and nothing of the batch is written. If the
//!   transaction itself breaks mid-batch (SQLite rolled it back, e.g. on a
//!   full disk), the jobs already run get the error and the jobs not yet
//!   run go into a fresh transaction.
//!
//! Reads join the batch, in queue order, with a `BEGIN DEFERRED`
//! transaction when the batch holds no write (no write lock for reads).
//! Joining keeps the store's order: a caller that awaited its write and
//! then reads sees the write, and a read costs no transaction of its own.
//! A read (or a job that failed and so wrote nothing) that ran before any
//! write of its batch saw only committed data, so it is answered at once
//! (once that data is synced); one that ran after a write may have seen
//! that write, so it is answered with the commit, and gets the commit's
//! error if the commit fails.
//!
//! [`Store`]: super::super::Store

use super::super::StoreError;
use super::sync::Syncer;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use tokio::sync::oneshot;

/// The most jobs one commit takes; more wait for the next.
pub(super) const MAX_JOBS: usize = 256;

/// Whether a job writes (and so needs the write lock and a durable commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    Read,
    Write,
}

/// One [`Store`](super::super::Store) method's work, run on the store's
/// thread inside a batch.
pub(super) trait Job: Send {
    fn access(&self) -> Access;
    /// Runs the job's statements in `tx` (inside its savepoint). True when
    /// it succeeded, so its savepoint is kept; false to roll it back.
    fn run(&mut self, tx: &Transaction<'_>) -> bool;
    /// Asked after a run that failed: true to have the job's writes rolled
    /// back and the job run again at once, in the same place of the queue
    /// (a job may retry its work another way: a registration batch item by
    /// item). A job must not ask again forever.
    fn again(&mut self) -> bool {
        false
    }
    /// Called on the store thread once the transaction that holds the
    /// job's writes is committed, before it is synced and the job answered.
    fn committed(&mut self) {}
    /// Sends the job's answer: its own result if it failed (or panicked),
    /// else `Ok` if `outcome` is (the batch committed, or the job was
    /// answered before any write of the batch), else `outcome`'s error.
    fn answer(self: Box<Self>, outcome: Result<(), &StoreError>);
}

/// A job running `f`, whose answer goes to `reply`.
pub(super) fn call<T, F>(
    access: Access,
    f: F,
    reply: oneshot::Sender<Result<T, StoreError>>,
) -> Box<dyn Job>
where
    T: Send + 'static,
    F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
{
    Box::new(Call {
        access,
        f: Some(f),
        out: None,
        reply,
    })
}

struct Call<T, F> {
    access: Access,
    f: Option<F>,
    /// `None` until run, and after a panic.
    out: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Call<T, F>
where
    T: Send,
    F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send,
{
    fn access(&self) -> Access {
        self.access
    }

    fn run(&mut self, tx: &Transaction<'_>) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let out = f(tx);
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn answer(self: Box<Self>, outcome: Result<(), &StoreError>) {
        // A caller that went away does not need its answer.
        let _ = self.reply.send(settle(self.out, outcome));
    }
}

/// A job's answer from its own result (`None`: it panicked) and its
/// batch's `outcome` (see [`Job::answer`]).
pub(super) fn settle<T>(
    out: Option<Result<T, StoreError>>,
    outcome: Result<(), &StoreError>,
) -> Result<T, StoreError> {
    match (out, outcome) {
        (None, _) => Err(StoreError::Backend("store task failed: it panicked".into())),
        (Some(Err(e)), _) => Err(e),
        (Some(Ok(_)), Err(e)) => Err(e.clone()),
        (Some(Ok(v)), Ok(())) => Ok(v),
    }
}

/// The store thread: runs batches on `conn` until every sender is gone,
/// counting each committed write transaction in `commits`; answers go
/// through `syncer`.
pub(super) fn serve(
    mut conn: Connection,
    jobs: mpsc::Receiver<Box<dyn Job>>,
    commits: Arc<AtomicU64>,
    mut syncer: Syncer,
) {
    let mut batch = VecDeque::with_capacity(MAX_JOBS);
    // Waits for one job, then takes what else is queued.
    while let Ok(first) = jobs.recv() {
        batch.push_back(first);
        while batch.len() < MAX_JOBS {
            match jobs.try_recv() {
                Ok(job) => batch.push_back(job),
                Err(_) => break,
            }
        }
        while !batch.is_empty() {
            run_batch(&mut conn, &mut batch, &commits, &mut syncer);
        }
    }
}

/// Runs the jobs of `pending` in one transaction and answers them (through
/// `syncer`). Jobs left in `pending` (the transaction broke before they
/// ran) go into the next transaction. A committed write transaction is
/// counted in `commits` before any of its jobs is answered.
fn run_batch(
    conn: &mut Connection,
    pending: &mut VecDeque<Box<dyn Job>>,
    commits: &AtomicU64,
    syncer: &mut Syncer,
) {
    let writes = pending.iter().any(|j| j.access() == Access::Write);
    let behavior = if writes {
        TransactionBehavior::Immediate
    } else {
        TransactionBehavior::Deferred
    };
    let tx = match conn.transaction_with_behavior(behavior) {
        Ok(tx) => tx,
        Err(e) => {
            syncer.answer(pending.drain(..).collect(), Err(StoreError::from(e)));
            return;
        }
    };
    // Jobs that ran and wait for the commit to be answered.
    let mut ran: Vec<Box<dyn Job>> = Vec::with_capacity(pending.len());
    // Whether a job of this transaction has written (uncommitted data).
    let mut dirty = false;
    let mut broken = None;
    // A job alone in its transaction needs no savepoint (the transaction is
    // its own): a savepoint copies each page the job first changes into its
    // journal, to roll back to.
    let lone = pending.len() == 1;
    while let Some(mut job) = pending.pop_front() {
        if !lone {
            if let Err(e) = tx.execute_batch("SAVEPOINT job") {
                // The job gets the error too, so a savepoint that keeps
                // failing cannot hold the queue.
                ran.push(job);
                broken = Some(StoreError::from(e));
                break;
            }
        }
        let mut ok = run(&mut *job, &tx);
        let mut retry = Ok(());
        while !ok && retry.is_ok() && job.again() {
            if lone {
                // Rolls the transaction back; the job runs again alone, in
                // a fresh one, before anything else is taken from the queue.
                drop(tx);
                pending.push_front(job);
                return;
            }
            // The savepoint stays open for the next run.
            retry = tx.execute_batch("ROLLBACK TO job");
            if retry.is_ok() {
                ok = run(&mut *job, &tx);
            }
        }
        if let Err(e) = retry {
            ran.push(job);
            broken = Some(StoreError::from(e));
            break;
        }
        if lone && !ok {
            // Rolls back what it wrote; it gets its own error.
            drop(tx);
            syncer.answer(vec![job], Ok(()));
            return;
        }
        let end = match (lone, ok) {
            (true, _) => Ok(()),
            (false, true) => tx.execute_batch("RELEASE job"),
            (false, false) => tx.execute_batch("ROLLBACK TO job; RELEASE job"),
        };
        let end = end
            .map_err(StoreError::from)
            .and_then(|()| match tx.is_autocommit() {
                false => Ok(()),
                true => Err(StoreError::Backend(
                    "the batch's transaction ended early".into(),
                )),
            });
        if let Err(e) = end {
            ran.push(job);
            broken = Some(e);
            break;
        }
        let wrote = ok && job.access() == Access::Write;
        if !dirty && !wrote {
            // It saw committed data only and left nothing to commit.
            syncer.answer(vec![job], Ok(()));
        } else {
            ran.push(job);
        }
        dirty |= wrote;
    }
    let outcome = match broken {
        // Dropping `tx` rolls back whatever is left of it.
        Some(e) => Err(e),
        None => tx.commit().map_err(StoreError::from),
    };
    if outcome.is_ok() && writes {
        commits.fetch_add(1, Ordering::Relaxed);
        syncer.committed();
        for job in &mut ran {
            job.committed();
        }
    }
    syncer.answer(ran, outcome);
}

/// Runs `job` in `tx`; a panic is a failure.
fn run(job: &mut dyn Job, tx: &Transaction<'_>) -> bool {
    catch_unwind(AssertUnwindSafe(|| job.run(tx))).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    //! The batch runner against a real SQLite file (WAL, `synchronous =
    //! NORMAL` and the real sync thread), with jobs made of raw SQL: a failing or panicking job among
    //! others, a commit that fails, answers only after the commit. Each
    //! test pauses the thread on a job of its own ([`Bench::pause`]) so
    //! that what it sends meanwhile is exactly the next batch.

    use super::*;
    use std::time::Duration;

    struct Bench {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        queue: mpsc::Sender<Box<dyn Job>>,
        commits: Arc<AtomicU64>,
        /// Syncs of the WAL file done.
        syncs: Arc<AtomicU64>,
    }

    fn open(path: &std::path::Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        conn
    }

    /// A store thread on a fresh file with `parent (id)` and `child (id,
    /// parent)`, the child's foreign key checked at commit (deferred);
    /// syncs are the WAL file's real ones.
    fn start() -> Bench {
        start_with(|| Ok(()))
    }

    /// [`start`], with `before` run before each real sync (to hold a sync,
    /// or fail it).
    fn start_with(mut before: impl FnMut() -> std::io::Result<()> + Send + 'static) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batch.db");
        let conn = open(&path);
        conn.execute_batch(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER
                 REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        let (queue, jobs) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let counted = commits.clone();
        let syncs = Arc::new(AtomicU64::new(0));
        let synced = syncs.clone();
        let mut wal = super::super::sync::wal_sync(&path);
        let syncer = Syncer::start(Box::new(move || {
            before()?;
            wal()?;
            synced.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }))
        .unwrap();
        std::thread::spawn(move || serve(conn, jobs, counted, syncer));
        Bench {
            _dir: dir,
            path,
            queue,
            commits,
            syncs,
        }
    }

    type Answer<T> = oneshot::Receiver<Result<T, StoreError>>;

    impl Bench {
        fn send<T, F>(&self, access: Access, f: F) -> Answer<T>
        where
            T: Send + 'static,
            F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
        {
            let (reply, answer) = oneshot::channel();
            self.queue.send(call(access, f, reply)).unwrap();
            answer
        }

        fn insert(&self, id: i64) -> Answer<()> {
            self.send(Access::Write, move |tx| {
                tx.execute("INSERT INTO parent (id) VALUES (?1)", [id])?;
                Ok(())
            })
        }

        /// Holds the store thread in a read job (a batch of its own) until
        /// the returned sender is dropped: the jobs sent meanwhile queue
        /// and form the next batch.
        fn pause(&self) -> mpsc::Sender<()> {
            let (started, running) = mpsc::channel();
            let (resume, resumed) = mpsc::channel::<()>();
            drop(self.send(Access::Read, move |_| {
                started.send(()).unwrap();
                let _ = resumed.recv();
                Ok(())
            }));
            running.recv().unwrap();
            resume
        }

        /// The parent ids, read from a second connection (committed data
        /// only).
        fn committed(&self) -> Vec<i64> {
            committed(&self.path)
        }

        fn commits(&self) -> u64 {
            self.commits.load(Ordering::Relaxed)
        }
    }

    fn committed(path: &std::path::Path) -> Vec<i64> {
        let other = open(path);
        let mut q = other.prepare("SELECT id FROM parent ORDER BY id").unwrap();
        let ids = q.query_map([], |r| r.get(0)).unwrap();
        ids.map(Result::unwrap).collect()
    }

    fn wait<T>(answer: Answer<T>) -> Result<T, StoreError> {
        answer.blocking_recv().expect("the job was answered")
    }

    #[test]
    fn jobs_queued_together_share_one_commit_and_each_gets_its_own_answer() {
        let bench = start();
        let pause = bench.pause();
        let answers: Vec<_> = (1..=600).map(|i| bench.insert(i)).collect();
        drop(pause);
        for answer in answers {
            wait(answer).unwrap();
        }
        assert_eq!(bench.committed(), (1..=600).collect::<Vec<_>>());
        // 600 writes in batches of at most MAX_JOBS; the pause committed
        // nothing (a read).
        assert_eq!(bench.commits(), 600u64.div_ceil(MAX_JOBS as u64));
        // A lone job is committed at once, alone.
        wait(bench.insert(601)).unwrap();
        assert_eq!(bench.commits(), 600u64.div_ceil(MAX_JOBS as u64) + 1);
    }

    #[test]
    fn a_failing_or_panicking_job_rolls_back_alone() {
        let bench = start();
        let pause = bench.pause();
        let first = bench.insert(1);
        let duplicate = bench.send(Access::Write, |tx| {
            // Writes, then fails: its first row must not survive.
            tx.execute("INSERT INTO parent (id) VALUES (100)", [])?;
            tx.execute("INSERT INTO parent (id) VALUES (1)", [])?;
            Ok(())
        });
        let second = bench.insert(2);
        let panics: Answer<()> = bench.send(Access::Write, |tx| {
            tx.execute("INSERT INTO parent (id) VALUES (200)", [])
                .unwrap();
            panic!("a job's bug");
        });
        let third = bench.insert(3);
        let read = bench.send(Access::Read, |tx| {
            Ok(tx.query_row("SELECT count(*) FROM parent", [], |r| r.get::<_, i64>(0))?)
        });
        drop(pause);
        wait(first).unwrap();
        let e = wait(duplicate).unwrap_err().to_string();
        assert!(e.contains("UNIQUE"), "{e}");
        wait(second).unwrap();
        let e = wait(panics).unwrap_err().to_string();
        assert!(e.contains("panicked"), "{e}");
        wait(third).unwrap();
        // The read saw the batch's writes before it (1, 2, 3; not 100 or
        // 200, rolled back) and was answered with their commit.
        assert_eq!(wait(read).unwrap(), 3);
        assert_eq!(bench.committed(), vec![1, 2, 3]);
        assert_eq!(bench.commits(), 1);
        // The thread lives on.
        wait(bench.insert(4)).unwrap();
        assert_eq!(bench.committed(), vec![1, 2, 3, 4]);
    }

    #[test]
    fn a_failing_or_panicking_job_alone_in_its_batch_leaves_nothing() {
        let bench = start();
        let fails = bench.send(Access::Write, |tx| {
            tx.execute("INSERT INTO parent (id) VALUES (100)", [])?;
            tx.execute("INSERT INTO nowhere (id) VALUES (1)", [])?;
            Ok(())
        });
        let e = wait(fails).unwrap_err().to_string();
        assert!(e.contains("nowhere"), "{e}");
        let panics: Answer<()> = bench.send(Access::Write, |tx| {
            tx.execute("INSERT INTO parent (id) VALUES (200)", [])
                .unwrap();
            panic!("a job's bug");
        });
        let e = wait(panics).unwrap_err().to_string();
        assert!(e.contains("panicked"), "{e}");
        assert_eq!(bench.committed(), Vec::<i64>::new());
        assert_eq!(bench.commits(), 0);
        // The thread lives on, and the next transaction starts clean.
        wait(bench.insert(1)).unwrap();
        assert_eq!(bench.committed(), vec![1]);
    }

    #[test]
    fn a_failed_commit_fails_every_job_of_its_batch() {
        let bench = start();
        wait(bench.insert(1)).unwrap();
        let pause = bench.pause();
        let before = bench.insert(2);
        // A child naming a missing parent: the deferred foreign key fails
        // the COMMIT, not the statement.
        let orphan = bench.send(Access::Write, |tx| {
            tx.execute("INSERT INTO child (id, parent) VALUES (1, 99)", [])?;
            Ok(())
        });
        let after = bench.insert(3);
        drop(pause);
        for answer in [before, orphan, after] {
            let e = wait(answer).unwrap_err().to_string();
            assert!(e.contains("FOREIGN KEY"), "{e}");
        }
        assert_eq!(bench.committed(), vec![1]);
        wait(bench.insert(5)).unwrap();
        assert_eq!(bench.committed(), vec![1, 5]);
    }

    #[test]
    fn an_answer_comes_after_its_commit() {
        let bench = start();
        let pause = bench.pause();
        let first = bench.insert(1);
        let path = bench.path.clone();
        // Runs after `first` in the same batch: `first` has run but is
        // neither committed nor answered.
        let mut early = bench.insert(2);
        let check = bench.send(Access::Write, move |_| {
            let answered = early.try_recv();
            Ok((committed(&path), answered.is_ok()))
        });
        drop(pause);
        let (seen, answered) = wait(check).unwrap();
        assert_eq!(seen, Vec::<i64>::new(), "written before the commit");
        assert!(!answered, "answered before its commit");
        wait(first).unwrap();
        assert_eq!(bench.committed(), vec![1, 2]);
    }

    /// Polls `done` until it holds (panics after 10 s).
    fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "no {what} after 10 s");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A sync that waits for `release` before syncing: the sender opens
    /// the gate for one sync (dropping it opens it for good).
    fn gated() -> (
        mpsc::Sender<()>,
        impl FnMut() -> std::io::Result<()> + Send + 'static,
    ) {
        let (release, gate) = mpsc::channel::<()>();
        (release, move || {
            let _ = gate.recv();
            Ok(())
        })
    }

    #[test]
    fn an_answer_waits_for_the_sync_of_its_commit_and_reads_of_it_too() {
        let (release, gate) = gated();
        let bench = start_with(gate);
        let mut first = bench.insert(1);
        // Committed (another connection sees it) but not yet synced, so
        // neither the write nor a read that saw it is answered.
        until("the commit", || bench.committed() == vec![1]);
        let mut read = bench.send(Access::Read, |tx| {
            Ok(tx.query_row("SELECT count(*) FROM parent", [], |r| r.get::<_, i64>(0))?)
        });
        let mut second = bench.insert(2);
        until("the second commit", || bench.commits() == 2);
        assert!(first.try_recv().is_err(), "answered before its sync");
        assert!(read.try_recv().is_err(), "a read of unsynced data answered");
        assert!(second.try_recv().is_err(), "answered before its sync");
        assert_eq!(bench.syncs.load(Ordering::Relaxed), 0);
        drop(release);
        wait(first).unwrap();
        assert_eq!(wait(read).unwrap(), 1);
        wait(second).unwrap();
        // The first sync covered the first commit; the second commit (made
        // while it waited) took one more, whatever the timing: at most 2.
        let syncs = bench.syncs.load(Ordering::Relaxed);
        assert!((1..=2).contains(&syncs), "{syncs} syncs for 2 commits");
        // Nothing unsynced: a read is answered at once, with no sync.
        let read = bench.send(Access::Read, |tx| {
            Ok(tx.query_row("SELECT count(*) FROM parent", [], |r| r.get::<_, i64>(0))?)
        });
        assert_eq!(wait(read).unwrap(), 2);
        assert_eq!(bench.syncs.load(Ordering::Relaxed), syncs);
    }

    #[test]
    fn commits_made_during_a_sync_share_the_next_one() {
        let (release, gate) = gated();
        let bench = start_with(gate);
        let first = bench.insert(1);
        until("the commit", || bench.commits() == 1);
        // Held in the first sync: each of these is its own commit.
        let later: Vec<_> = (2..=6)
            .map(|i| {
                let answer = bench.insert(i);
                until("the commit", || bench.commits() == i as u64);
                answer
            })
            .collect();
        drop(release);
        wait(first).unwrap();
        for answer in later {
            wait(answer).unwrap();
        }
        assert_eq!(bench.commits(), 6);
        assert_eq!(bench.syncs.load(Ordering::Relaxed), 2, "6 commits, 2 syncs");
    }

    #[test]
    fn a_failed_sync_fails_its_answers_and_every_later_write() {
        let bench = start_with(|| Err(std::io::Error::other("injected EIO")));
        let e = wait(bench.insert(1)).unwrap_err().to_string();
        assert!(
            e.contains("could not be synced") && e.contains("injected EIO"),
            "{e}"
        );
        // A later sync could "succeed" without the lost pages: never trusted.
        let e = wait(bench.insert(2)).unwrap_err().to_string();
        assert!(e.contains("restart the daemon"), "{e}");
        let read = bench.send(Access::Read, |tx| {
            Ok(tx.query_row("SELECT count(*) FROM parent", [], |r| r.get::<_, i64>(0))?)
        });
        assert!(wait(read).is_err(), "a read of unsynced data answered");
    }

    /// A write job that inserts `ids[n]` on its run `n` and fails every run
    /// but the last (asking again after each failed one, and failing if the
    /// insert does); it tells `told` of its commit and answers the number
    /// of runs.
    struct Retrying {
        ids: Vec<i64>,
        runs: usize,
        ok: bool,
        told: Option<mpsc::Sender<()>>,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    }

    impl Job for Retrying {
        fn access(&self) -> Access {
            Access::Write
        }
        fn run(&mut self, tx: &Transaction<'_>) -> bool {
            let id = self.ids[self.runs];
            self.runs += 1;
            self.ok = tx
                .execute("INSERT INTO parent (id) VALUES (?1)", [id])
                .is_ok()
                && self.runs == self.ids.len();
            self.ok
        }
        fn again(&mut self) -> bool {
            self.runs < self.ids.len()
        }
        fn committed(&mut self) {
            let _ = self.told.take().unwrap().send(());
        }
        fn answer(self: Box<Self>, outcome: Result<(), &StoreError>) {
            let runs = self.runs;
            let out = match self.ok {
                true => outcome.map(|()| runs).map_err(Clone::clone),
                false => Err(StoreError::Backend(format!("failed after {runs} runs"))),
            };
            let _ = self.reply.send(out);
        }
    }

    impl Bench {
        /// Sends a [`Retrying`] job; the receiver hears of its commit.
        fn retrying(&self, ids: &[i64]) -> (Answer<usize>, mpsc::Receiver<()>) {
            let (told, commit) = mpsc::channel();
            let (reply, answer) = oneshot::channel();
            self.queue
                .send(Box::new(Retrying {
                    ids: ids.to_vec(),
                    runs: 0,
                    ok: false,
                    told: Some(told),
                    reply,
                }))
                .unwrap();
            (answer, commit)
        }
    }

    #[test]
    fn a_job_that_asks_again_runs_again_in_its_place_with_its_first_writes_rolled_back() {
        let bench = start();
        // Alone: the transaction is rolled back and the job runs alone again.
        let (alone, _) = bench.retrying(&[100, 1]);
        assert_eq!(wait(alone).unwrap(), 2);
        assert_eq!(bench.committed(), vec![1]);
        assert_eq!(bench.commits(), 1);
        // Among others: rolled back to its savepoint and run again before
        // the job queued after it, which sees its second run only.
        let pause = bench.pause();
        let before = bench.insert(2);
        let (among, _) = bench.retrying(&[200, 300, 3]);
        let after = bench.send(Access::Write, |tx| {
            let seen = |id: i64| {
                tx.query_row("SELECT count(*) FROM parent WHERE id = ?1", [id], |r| {
                    r.get::<_, i64>(0)
                })
            };
            Ok((seen(3)?, seen(200)? + seen(300)?))
        });
        drop(pause);
        wait(before).unwrap();
        assert_eq!(wait(among).unwrap(), 3);
        assert_eq!(wait(after).unwrap(), (1, 0));
        assert_eq!(bench.committed(), vec![1, 2, 3]);
        assert_eq!(bench.commits(), 2);
    }

    #[test]
    fn a_job_is_told_of_its_commit_before_the_sync_and_not_if_it_fails() {
        let (release, gate) = gated();
        let bench = start_with(gate);
        let (mut answer, commit) = bench.retrying(&[1]);
        // Told while the sync is held; not answered before it.
        commit
            .recv_timeout(Duration::from_secs(10))
            .expect("told of the commit");
        assert!(answer.try_recv().is_err(), "answered before its sync");
        drop(release);
        assert_eq!(wait(answer).unwrap(), 1);
        // A job whose batch fails is never told (its sender is dropped).
        let (failed, commit) = bench.retrying(&[1]);
        assert!(wait(failed).is_err(), "a duplicate id was written");
        assert_eq!(commit.recv(), Err(mpsc::RecvError));
    }

    #[test]
    fn a_read_alone_takes_no_write_lock() {
        let bench = start();
        wait(bench.insert(1)).unwrap();
        let other = open(&bench.path);
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        // Answered while another connection holds the write lock.
        let read = bench.send(Access::Read, |tx| {
            Ok(tx.query_row("SELECT count(*) FROM parent", [], |r| r.get::<_, i64>(0))?)
        });
        assert_eq!(wait(read).unwrap(), 1);
        other.execute_batch("COMMIT").unwrap();
        assert_eq!(bench.commits(), 1);
    }
}
