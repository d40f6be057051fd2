//! Group commit of registrations: concurrent callers hand their
//! [`Registration`] to one writer task, which writes everything queued as
//! one [`Store::register_batch`] (one transaction, one durable commit on
//! SQLite) and answers each caller with its own result.
//!
//! A durable commit costs a disk sync (milliseconds); registrations
//! arriving while one is in progress wait for the next, and share it. The
//! writer waits on its queue (no timer, no polling): idle, it sleeps; a
//! lone registration is written at once; a batch is what queued while the
//! previous batch was written, up to [`MAX_BATCH`], sent to the store as
//! soon as the previous batch's place in the commit order is fixed
//! ([`Store::register_batch_ordered`]: on SQLite, once it is committed and
//! while the disk syncs it; on other stores, once it is done). Batches are
//! answered in the order they were sent. It stops once every
//! [`GroupCommit`] handle is dropped, after writing what was queued.
//!
//! What must follow a commit in commit order (the scheduler starts the new
//! watches and stops the superseded ones) is an [`AfterCommit`] hook: the
//! writer calls it for each registration written, in the batch's order,
//! after the commit and before answering anyone, so a later registration
//! that supersedes an earlier one always finds the earlier one's watch
//! started.

use super::registration::{BatchRegistered, BatchResult, Registration};
use super::{Store, StoreError};
use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{FuturesOrdered, StreamExt};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The most registrations one commit takes; more wait for the next.
pub const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<BatchRegistered, StoreError>>;

/// Called by the writer for each registration of a committed batch, in
/// commit order, before its caller is answered. It must not block.
pub type AfterCommit = Box<dyn Fn(&BatchRegistered) + Send + Sync>;

/// A handle on the writer task; cloning it shares the writer.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::UnboundedSender<(Registration, Reply)>,
}

impl GroupCommit {
    /// Starts the writer on the current tokio runtime; `after` is called
    /// for every registration written ([`AfterCommit`]).
    pub fn start(store: Arc<dyn Store>, after: AfterCommit) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(store, rx, after));
        Self { queue }
    }

    /// Writes `item` with whatever else is queued; answers once the batch
    /// is committed (durable) or failed.
    pub async fn register(&self, item: Registration) -> Result<BatchRegistered, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((item, reply))
            .map_err(|_| StoreError::Backend("the registration writer has stopped".into()))?;
        answer.await.map_err(|_| {
            StoreError::Backend("the registration writer stopped before answering".into())
        })?
    }
}

async fn write_batches(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<(Registration, Reply)>,
    after: AfterCommit,
) {
    let mut queued = Vec::with_capacity(MAX_BATCH);
    // Batches sent to the store and not yet answered, in commit order.
    let mut sent: FuturesOrdered<Writing> = FuturesOrdered::new();
    // The last batch sent, until its place in the commit order is fixed:
    // the next batch waits for it.
    let mut ordering: Option<oneshot::Receiver<()>> = None;
    let mut open = true;
    loop {
        if ordering.is_none() && !queued.is_empty() {
            let (ordered, fixed) = oneshot::channel();
            sent.push_back(write(&store, &mut queued, ordered));
            ordering = Some(fixed);
        }
        if !open && queued.is_empty() && sent.is_empty() {
            return;
        }
        let room = MAX_BATCH - queued.len();
        tokio::select! {
            // Answers first: they free callers, whose next registrations
            // join the next batch.
            biased;
            Some(done) = sent.next() => match done {
                Ok((replies, result)) => answer(&after, replies, result),
                // The store panicked writing the batch: its callers' replies
                // are gone with it, and they get "stopped before answering".
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    tracing::error!(panic = %what, "the registration writer's batch panicked");
                }
            },
            // Told or dropped: either way the next batch may go.
            _ = async { ordering.as_mut().expect("guarded").await }, if ordering.is_some() => {
                ordering = None;
            }
            // Waits for at least one, then takes what else is queued.
            n = rx.recv_many(&mut queued, room), if open && room > 0 => {
                open = n > 0;
            }
        }
    }
}

type Written = (Vec<Reply>, BatchResult);

/// Writing one batch, polled by the writer itself (no task of its own: the
/// store's answer wakes the writer directly). A panic is caught, so it
/// fails that batch only.
type Writing = BoxFuture<'static, Result<Written, Box<dyn std::any::Any + Send>>>;

/// Writing the `queued` registrations as one batch; `ordered` is told when
/// the next batch may be sent ([`Store::register_batch_ordered`]). The
/// writer polls it as soon as it is queued, so the store has it before the
/// writer waits for anything else.
fn write(
    store: &Arc<dyn Store>,
    queued: &mut Vec<(Registration, Reply)>,
    ordered: oneshot::Sender<()>,
) -> Writing {
    let (items, replies): (Vec<_>, Vec<_>) = queued.drain(..).unzip();
    let store = store.clone();
    AssertUnwindSafe(async move { (replies, store.register_batch_ordered(items, ordered).await) })
        .catch_unwind()
        .boxed()
}

/// Runs `after` for each registration of a written batch, in order, then
/// answers each caller.
fn answer(after: &AfterCommit, replies: Vec<Reply>, result: BatchResult) {
    let n = replies.len();
    match result {
        Ok(results) if results.len() == n => {
            for written in results.iter().flatten() {
                after(written);
            }
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that went away does not need its answer.
                let _ = reply.send(result);
            }
        }
        Ok(results) => {
            let e = format!("the store answered {} of {n} registrations", results.len());
            for reply in replies {
                let _ = reply.send(Err(StoreError::Backend(e.clone())));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
