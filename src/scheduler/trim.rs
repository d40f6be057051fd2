//! Gives the memory freed by ended watches back to the operating system.
//!
//! glibc's `malloc` keeps the pages it frees inside its arenas for later
//! allocations: after a thousand watches end, their freed state stays in
//! the daemon's RSS although the heap no longer uses it. `malloc_trim(0)`
//! returns every whole free page of every arena (`madvise`). The
//! [`Trimmer`] runs it once after watches end: the first end arms it, it
//! waits [`TRIM_AFTER`] so that a burst of ends (a window closing for many
//! releases, a mass abort) costs one trim, then trims on the blocking pool.
//! Event-driven: an idle daemon never wakes for it. On other C libraries it
//! does nothing.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long after a watch ends the trim runs (ends meanwhile join it).
pub const TRIM_AFTER: Duration = Duration::from_secs(2);

/// Trims the allocator after watches end.
#[derive(Default)]
pub struct Trimmer {
    ended: Arc<Notify>,
}

impl Trimmer {
    /// Starts the trimming task (until `shutdown`).
    pub fn spawn(&self, tasks: &TaskTracker, shutdown: CancellationToken) {
        let ended = self.ended.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ended.notified() => {}
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(TRIM_AFTER) => {}
                }
                let _ = tokio::task::spawn_blocking(trim).await;
            }
        });
    }

    /// A watch ended: trim soon (once for every end until then).
    pub fn watch_ended(&self) {
        self.ended.notify_one();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim only walks and releases the allocator's free
    // chunks under its own locks; it takes no pointer of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
