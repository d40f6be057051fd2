//! Wall-clock time, injected so tests and the engine never read it directly.
//!
//! The wall clock stamps records (decisions, pages, `ended_at`) and anchors
//! schedules; it may step (NTP, a resumed VM), so nothing waits on it: a
//! watch measures its waits with the monotonic clock from an anchor taken
//! when its task starts (see `scheduler/watch.rs`, `WatchClock`).

use crate::model::Millis;

/// The source of "now". Everything that timestamps or schedules takes one.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or(0)
    }
}
