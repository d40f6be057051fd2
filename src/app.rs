//! The daemon's context (config, store, clock, telemetry, HTTP client,
//! shutdown) built once and handed to every component, and `run`.

use crate::clock::Clock;
use crate::config::Settings;
use crate::store::Store;
use crate::telemetry::Telemetry;
use std::sync::{Arc, RwLock};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Shared by every component; no globals.
pub struct Context {
    settings: RwLock<Arc<Settings>>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub telemetry: Arc<Telemetry>,
    /// One pooled HTTP client for sources and notifiers (timeouts per request).
    pub http: reqwest::Client,
    /// Cancelled at shutdown; every task's token is a child of it.
    pub shutdown: CancellationToken,
    /// Every spawned task, awaited (with a deadline) at shutdown.
    pub tasks: TaskTracker,
}

impl Context {
    pub fn new(settings: Settings, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("release-guardian/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("a TLS backend is compiled in");
        Arc::new(Self {
            settings: RwLock::new(Arc::new(settings)),
            store,
            clock,
            telemetry: Arc::new(Telemetry::new()),
            http,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        })
    }

    /// The configuration in force now (a reload swaps it atomically).
    pub fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Swaps in a new, already validated configuration.
    pub fn replace_settings(&self, settings: Settings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
    }
}
