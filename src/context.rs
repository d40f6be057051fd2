//! The daemon's [`Context`]: the configuration in force, the store, the
//! clock, telemetry, the HTTP clients, the shutdown token and task tracker —
//! built once at start and handed to every component (no globals).

use crate::actions::notify::outbox::OutboxParts;
use crate::actions::notify::{BuildContext, Links, Notifiers};
use crate::clock::Clock;
use crate::config::Settings;
use crate::sources::{BuildContext as SourceBuildContext, Sources};
use crate::store::Store;
use crate::telemetry::Telemetry;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Source requests (queries and probes) in flight at once, across all watches.
pub const MAX_SOURCE_REQUESTS: usize = 64;

/// Shared by every component; no globals.
pub struct Context {
    settings: RwLock<Arc<Settings>>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub telemetry: Arc<Telemetry>,
    /// Pooled HTTP client for queries to sources (timeouts per request).
    pub http: reqwest::Client,
    /// Client for probes: follows at most 5 redirects.
    pub probe_http: reqwest::Client,
    /// Client for notifiers: never follows redirects (a redirected POST would
    /// turn into a GET and a lost message would look delivered).
    pub notify_http: reqwest::Client,
    /// The notifiers of the settings in force, built once per (re)load.
    notifiers: watch::Sender<Arc<Notifiers>>,
    /// The sources of the settings in force, built once per (re)load.
    sources: RwLock<Arc<Sources>>,
    /// Bounds the source requests (queries and probes) in flight across all
    /// watches, so a thousand watches ticking together do not flood Prometheus.
    pub source_permits: Arc<tokio::sync::Semaphore>,
    /// Targets scraped directly for `source: scrape`, while watches hold them.
    pub scrapes: Arc<crate::sources::scrape::ScrapeHub>,
    /// Cancelled at shutdown; every task's token is a child of it.
    pub shutdown: CancellationToken,
    /// Every spawned task, awaited (with a deadline) at shutdown.
    pub tasks: TaskTracker,
}

impl Context {
    pub fn new(settings: Settings, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Arc<Self> {
        use crate::transport::client;
        let http = client(reqwest::redirect::Policy::limited(10));
        let notify_http = client(reqwest::redirect::Policy::none());
        let probe_http = crate::sources::probe::probe_client();
        let (notifiers, sources) = components(&settings, &http, &probe_http, &notify_http);
        let scrapes = Arc::new(crate::sources::scrape::ScrapeHub::new(
            http.clone(),
            clock.clone(),
        ));
        Arc::new(Self {
            notifiers: watch::Sender::new(Arc::new(notifiers)),
            sources: RwLock::new(Arc::new(sources)),
            settings: RwLock::new(Arc::new(settings)),
            store,
            clock,
            telemetry: Arc::new(Telemetry::new()),
            http,
            probe_http,
            notify_http,
            source_permits: Arc::new(tokio::sync::Semaphore::new(MAX_SOURCE_REQUESTS)),
            scrapes,
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

    /// Swaps in a new, already validated configuration, with the components
    /// built from it (in place before the settings that name them).
    pub fn replace_settings(&self, settings: Settings) {
        let (notifiers, sources) =
            components(&settings, &self.http, &self.probe_http, &self.notify_http);
        self.notifiers.send_replace(Arc::new(notifiers));
        *self.sources.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(sources);
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
    }

    /// Replaces the sources built from the settings (`test-rules` serves
    /// its in-memory series and scripted probes under the configured names).
    pub fn replace_sources(&self, sources: Sources) {
        *self.sources.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(sources);
    }

    /// The sources in force now.
    pub fn sources(&self) -> Arc<Sources> {
        self.sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What the notification outbox of the replica `owner` works with.
    pub fn outbox_parts(&self, owner: &str) -> OutboxParts {
        OutboxParts {
            owner: owner.to_string(),
            store: self.store.clone(),
            clock: self.clock.clone(),
            telemetry: self.telemetry.clone(),
            notifiers: self.notifiers.subscribe(),
            shutdown: self.shutdown.clone(),
            tasks: self.tasks.clone(),
            shared: false,
        }
    }
}

/// The notifiers and sources `settings` describe, built on the shared clients.
fn components(
    settings: &Settings,
    http: &reqwest::Client,
    probe_http: &reqwest::Client,
    notify_http: &reqwest::Client,
) -> (Notifiers, Sources) {
    let notifiers = Notifiers::build(
        &settings.notifiers,
        &BuildContext {
            http: notify_http.clone(),
            links: Links::new(settings.config.server.public_url.as_deref()),
        },
    );
    let sources = Sources::build(
        &settings.sources,
        &SourceBuildContext {
            http: http.clone(),
            probe_http: probe_http.clone(),
        },
    );
    (notifiers, sources)
}
