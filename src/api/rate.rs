//! The per-client rate limit on registrations: `POST` to an intake route
//! (`/v1/releases`, `/v1/webhooks/*`) under `[server] intake_rate_limit`
//! and `intake_rate_burst` (off by default).
//!
//! A client is the token it authenticated with (its name), else its
//! address (IPv6 by /64, as for failed authentications): one deploy system
//! with one token is one client wherever it runs from, and unauthenticated
//! webhooks are told apart by address. Each client has its own
//! [`governor`] GCRA budget: a burst of `intake_rate_burst`, refilled at
//! `intake_rate_limit`. Over it the request is answered 429 with
//! `Retry-After` (whole seconds until one registration is allowed again)
//! before its body is read, and registers nothing.
//!
//! Memory is bounded: a cleanup task forgets the clients whose budget is
//! whole again every [`CLEANUP_EVERY`] while any client is tracked, and
//! sleeps without a timer while none is; beyond [`MAX_TRACKED_CLIENTS`]
//! new clients share one budget until the next cleanup. The limiter
//! follows the settings in force: a reload that changes the limit starts
//! every client afresh.

use super::auth::{network_of, Actor};
use super::error::ApiError;
use super::ApiState;
use crate::actions::notify::rate::RateLimit;
use crate::context::Context;
use crate::intake;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::DefaultKeyedRateLimiter;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often clients whose budget is whole again are forgotten, while any
/// is tracked.
pub const CLEANUP_EVERY: Duration = Duration::from_secs(60);

/// Clients tracked at once; beyond that new ones share one budget (and
/// the cleanup runs at once).
pub const MAX_TRACKED_CLIENTS: usize = 65_536;

/// Who a budget belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Client {
    /// `token:NAME`, as the audit log names it.
    Token(String),
    /// An address (IPv6 by its /64).
    Address(IpAddr),
    /// No address known, or no room left in the table.
    Shared,
}

/// The limiter of the settings in force (`None` while the limit is off).
pub struct IntakeLimits {
    current: RwLock<Option<Arc<Limiter>>>,
    cleanup_every: Duration,
}

impl Default for IntakeLimits {
    fn default() -> Self {
        Self {
            current: RwLock::default(),
            cleanup_every: CLEANUP_EVERY,
        }
    }
}

/// `(limit, burst)`: what a limiter was built for.
type Quota = (RateLimit, NonZeroU32);

struct Limiter {
    quota: Quota,
    inner: DefaultKeyedRateLimiter<Client>,
    cleanup: Arc<Cleanup>,
    /// Stops the cleanup task when this limiter is replaced or dropped.
    stop: CancellationToken,
}

impl Drop for Limiter {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What wakes the cleanup task.
#[derive(Default)]
struct Cleanup {
    /// Set while the task is running its timer (some client is tracked).
    armed: AtomicBool,
    /// The first client tracked since the table was empty.
    wake: Notify,
    /// The table is full: clean now.
    full: Notify,
}

impl IntakeLimits {
    /// Takes one registration from `client`'s budget, or says how long it
    /// must wait; always `Ok` while the limit is off.
    fn take(&self, ctx: &Context, client: Client) -> Result<(), Duration> {
        let Some(limiter) = self.limiter(ctx) else {
            return Ok(());
        };
        let client = if limiter.inner.len() >= MAX_TRACKED_CLIENTS {
            limiter.cleanup.full.notify_one();
            Client::Shared
        } else {
            client
        };
        let taken = limiter.inner.check_key(&client);
        if !limiter.cleanup.armed.swap(true, Ordering::SeqCst) {
            limiter.cleanup.wake.notify_one();
        }
        taken.map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// The limiter for the settings in force: built (with its cleanup task)
    /// when the limit is first set or changed, dropped when it is turned off.
    fn limiter(&self, ctx: &Context) -> Option<Arc<Limiter>> {
        let settings = ctx.settings();
        let server = &settings.config.server;
        let want = server.intake_rate_limit.map(|limit| {
            let burst = server
                .intake_rate_burst
                .and_then(NonZeroU32::new)
                .unwrap_or(limit.count);
            (limit, burst)
        });
        {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            if current.as_ref().map(|l| l.quota) == want {
                return current.clone();
            }
        }
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().map(|l| l.quota) != want {
            *current = want.map(|quota| Limiter::start(ctx, quota, self.cleanup_every));
        }
        current.clone()
    }

    /// Clients tracked now (for tests).
    pub fn tracked(&self) -> usize {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |l| l.inner.len())
    }
}

impl Limiter {
    /// Forgets the clients whose budget is whole again; true if none is
    /// left.
    fn sweep(&self) -> bool {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
        self.inner.is_empty()
    }

    fn start(ctx: &Context, quota: Quota, every: Duration) -> Arc<Self> {
        let (limit, burst) = quota;
        let limiter = Arc::new(Self {
            quota,
            inner: DefaultKeyedRateLimiter::keyed(limit.quota_with_burst(burst)),
            cleanup: Arc::default(),
            stop: ctx.shutdown.child_token(),
        });
        ctx.tasks.spawn(clean(
            Arc::downgrade(&limiter),
            limiter.cleanup.clone(),
            every,
            limiter.stop.clone(),
        ));
        limiter
    }
}

/// Forgets clients whose budget is whole again: `every` ([`CLEANUP_EVERY`];
/// at once when the table is full) while any is tracked; idle, without a
/// timer, while none is.
async fn clean(
    limiter: Weak<Limiter>,
    cleanup: Arc<Cleanup>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = cleanup.wake.notified() => {}
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
                _ = cleanup.full.notified() => {}
            }
            let Some(limiter) = limiter.upgrade() else {
                return;
            };
            // Disarm before looking, so that a client tracked from now on
            // wakes the task again.
            cleanup.armed.store(false, Ordering::SeqCst);
            if limiter.sweep() {
                break;
            }
            cleanup.armed.store(true, Ordering::SeqCst);
        }
    }
}

/// Middleware (inside authentication, which names the client): a
/// registration over its client's budget is answered 429 with
/// `Retry-After`; every other request passes untouched.
pub(crate) async fn limit_intake(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST || intake::by_route(request.uri().path()).is_none() {
        return next.run(request).await;
    }
    let client = match request.extensions().get::<Actor>() {
        Some(actor) if actor.name.starts_with("token:") => Client::Token(actor.name.clone()),
        Some(Actor {
            client: Some(ip), ..
        }) => Client::Address(network_of(*ip)),
        _ => Client::Shared,
    };
    match state.intake_limits.take(&state.ctx, client) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let retry_after = wait.as_secs_f64().ceil().max(1.0) as u64;
            ApiError::TooManyRequests {
                message: format!(
                    "too many registrations from this client (`intake_rate_limit`); retry in {retry_after}s"
                ),
                retry_after,
            }
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn context(server: &str) -> (Arc<Context>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::config::load_str(
            &format!("[server]\n{server}\n[store]\npath = \"g.db\"\n"),
            &dir.path().join("guardian.toml"),
            &[],
        )
        .unwrap();
        let store = crate::store::open(&settings.store).unwrap();
        let ctx = Context::new(settings, store, Arc::new(crate::clock::SystemClock));
        (ctx, dir)
    }

    fn address(last: u8) -> Client {
        Client::Address(IpAddr::from([192, 0, 2, last]))
    }

    #[tokio::test]
    async fn budgets_are_per_client_and_forgotten_by_the_cleanup_task() {
        let (ctx, _dir) = context("intake_rate_limit = \"1/s\"\nintake_rate_burst = 1").await;
        let limits = IntakeLimits {
            cleanup_every: Duration::from_millis(20),
            ..IntakeLimits::default()
        };
        assert_eq!(limits.take(&ctx, address(1)), Ok(()));
        let wait = limits.take(&ctx, address(1)).unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(limits.take(&ctx, address(2)), Ok(()), "its own budget");
        assert_eq!(limits.tracked(), 2);
        // The cleanup task (woken by the first client, on its timer) forgets
        // them once their budget is whole again (after 1 s).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while limits.tracked() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "still tracked: {}",
                limits.tracked()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Then it sleeps without a timer until a client comes again.
        assert!(!limits
            .limiter(&ctx)
            .unwrap()
            .cleanup
            .armed
            .load(Ordering::SeqCst));
        assert_eq!(limits.take(&ctx, address(1)), Ok(()));
        assert_eq!(limits.tracked(), 1);
    }

    #[tokio::test]
    async fn the_limiter_follows_the_settings_in_force() {
        let (ctx, dir) = context("intake_rate_limit = \"1/h\"").await;
        let limits = IntakeLimits::default();
        assert_eq!(limits.take(&ctx, address(1)), Ok(()));
        assert!(limits.take(&ctx, address(1)).is_err());
        let reload = |server: &str| {
            crate::config::load_str(
                &format!("[server]\n{server}\n[store]\npath = \"g.db\"\n"),
                &dir.path().join("guardian.toml"),
                &[],
            )
            .unwrap()
        };
        // Another limit: every client starts afresh.
        ctx.replace_settings(reload("intake_rate_limit = \"2/h\""));
        assert_eq!(limits.take(&ctx, address(1)), Ok(()));
        assert_eq!(limits.take(&ctx, address(1)), Ok(()));
        assert!(limits.take(&ctx, address(1)).is_err());
        // Off: nothing is limited, nothing tracked.
        ctx.replace_settings(reload("intake_rate_limit = \"off\""));
        for _ in 0..10 {
            assert_eq!(limits.take(&ctx, address(1)), Ok(()));
        }
        assert_eq!(limits.tracked(), 0);
    }
}
