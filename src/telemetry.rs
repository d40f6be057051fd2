//! The daemon's own metrics (served at `/metrics`), with typed label sets,
//! and per-probe latency quantiles (from each tick's HDR histogram).

use hdrhistogram::Histogram as Hdr;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// The buckets of `rg_tick_lateness_seconds` (one at 1 s: the ticks late
/// by more than a second are the count less that bucket).
const TICK_LATENESS_BUCKETS: [f64; 11] =
    [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];

/// The quantiles exported per probe.
const PROBE_QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    pub notifier: String,
    pub outcome: Outcome,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    sent,
    /// A temporary failure: the message waits in the outbox for its retry.
    retried,
    failed,
    /// Never sent: the release was acknowledged while it was queued.
    suppressed,
    succeeded,
    interrupted,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeQuantileLabels {
    /// `SERVICE/PROBE`.
    pub probe: String,
    /// The environment of the service's watch (one service may be watched
    /// in several at once, each with its own probes' gauges).
    pub environment: String,
    pub quantile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: String,
}

/// All metrics, registered once in [`Telemetry::new`].
pub struct Telemetry {
    registry: Registry,
    pub ticks: Counter,
    /// Looks at the query checks between ticks (`sentinel.rs`), and the
    /// ones that found a check worse and moved the tick to now.
    pub sentinel_looks: Counter,
    pub sentinel_ticks: Counter,
    pub check_results: Family<StateLabels, Counter>,
    pub notifications: Family<NotificationLabels, Counter>,
    pub rollbacks: Family<OutcomeLabels, Counter>,
    pub decisions: Family<ActionLabels, Counter>,
    pub releases_registered: Counter,
    pub tick_duration: Histogram,
    /// How late each tick started after the instant its cadence set.
    pub tick_lateness: Histogram,
    pub source_latency: Family<SourceLabels, Histogram>,
    pub source_errors: Family<SourceLabels, Counter>,
    pub active_watches: Gauge,
    /// Watch tasks alive: counted from a task's start until everything it
    /// held is dropped ([`Alive`]); 0 once every watch has ended.
    pub watch_tasks: Gauge,
    /// Probe HDR histograms alive (each lives for one tick's burst); set
    /// from the prober's count when `/metrics` is read.
    pub probe_histograms: Gauge,
    /// Active releases whose stored row cannot be read: not resumed.
    pub unreadable_releases: Gauge,
    /// 1 while the store's last write probe succeeded, else 0.
    pub store_writable: Gauge,
    /// Ended releases pruned by retention.
    pub releases_pruned: Counter,
    pub probe_latency: Family<ProbeQuantileLabels, Gauge<f64, AtomicU64>>,
    /// Watch leases this replica holds (after its last renewal or claim).
    pub leases_held: Gauge,
    /// Watches this replica took over from a replica that stopped renewing.
    pub lease_takeovers: Counter,
    /// Wall time of one renewal of all of this replica's leases.
    pub lease_renew_duration: Histogram,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rg");
        let ticks = Counter::default();
        registry.register("ticks", "Watch ticks evaluated", ticks.clone());
        let sentinel_looks = Counter::default();
        registry.register(
            "sentinel_looks",
            "Looks at a watch's query checks between its ticks",
            sentinel_looks.clone(),
        );
        let sentinel_ticks = Counter::default();
        registry.register(
            "sentinel_ticks",
            "Ticks moved to now because a look between ticks found a check worse",
            sentinel_ticks.clone(),
        );
        let check_results = Family::<StateLabels, Counter>::default();
        registry.register(
            "check_results",
            "Check results by state",
            check_results.clone(),
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notification deliveries by notifier and outcome (sent, retried, failed, suppressed)",
            notifications.clone(),
        );
        let rollbacks = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "rollbacks",
            "Rollback hook runs by outcome",
            rollbacks.clone(),
        );
        let decisions = Family::<ActionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Decisions recorded by action",
            decisions.clone(),
        );
        let releases_registered = Counter::default();
        registry.register(
            "releases_registered",
            "Releases registered",
            releases_registered.clone(),
        );
        let tick_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "tick_duration_seconds",
            "Wall time of one watch tick",
            tick_duration.clone(),
        );
        let tick_lateness = Histogram::new(TICK_LATENESS_BUCKETS.into_iter());
        registry.register(
            "tick_lateness_seconds",
            "How late each watch tick started after its due time",
            tick_lateness.clone(),
        );
        let source_latency = Family::<SourceLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "source_request_duration_seconds",
            "Latency of source requests (queries and probes)",
            source_latency.clone(),
        );
        let source_errors = Family::<SourceLabels, Counter>::default();
        registry.register(
            "source_errors",
            "Source requests that failed",
            source_errors.clone(),
        );
        let active_watches = Gauge::default();
        registry.register(
            "active_watches",
            "Watches currently running",
            active_watches.clone(),
        );
        let watch_tasks = Gauge::default();
        registry.register(
            "watch_tasks",
            "Watch tasks alive, until everything a task held is freed",
            watch_tasks.clone(),
        );
        let probe_histograms = Gauge::default();
        registry.register(
            "probe_histograms",
            "Probe latency histograms alive (one per probe during a tick)",
            probe_histograms.clone(),
        );
        let unreadable_releases = Gauge::default();
        registry.register(
            "unreadable_releases",
            "Releases whose stored row cannot be read; skipped at start (see /readyz)",
            unreadable_releases.clone(),
        );
        let store_writable = Gauge::default();
        registry.register(
            "store_writable",
            "1 if the store's last write probe succeeded, 0 if it failed",
            store_writable.clone(),
        );
        let releases_pruned = Counter::default();
        registry.register(
            "releases_pruned",
            "Ended releases deleted after the store's retention",
            releases_pruned.clone(),
        );
        let probe_latency = Family::<ProbeQuantileLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "probe_latency_seconds",
            "Probe latency quantiles from each probe's HDR histogram",
            probe_latency.clone(),
        );
        let leases_held = Gauge::default();
        registry.register(
            "leases_held",
            "Watch leases this replica holds",
            leases_held.clone(),
        );
        let lease_takeovers = Counter::default();
        registry.register(
            "lease_takeovers",
            "Watches taken over from a replica whose lease expired",
            lease_takeovers.clone(),
        );
        let lease_renew_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "lease_renew_duration_seconds",
            "Wall time of one renewal of all of this replica's watch leases",
            lease_renew_duration.clone(),
        );
        Self {
            registry,
            ticks,
            sentinel_looks,
            sentinel_ticks,
            check_results,
            notifications,
            rollbacks,
            decisions,
            releases_registered,
            tick_duration,
            tick_lateness,
            source_latency,
            source_errors,
            active_watches,
            watch_tasks,
            probe_histograms,
            unreadable_releases,
            store_writable,
            releases_pruned,
            probe_latency,
            leases_held,
            lease_takeovers,
            lease_renew_duration,
        }
    }

    /// Sets a probe's quantile gauges from its latest tick's histogram (the
    /// histogram belongs to the tick and is dropped with it; nothing here
    /// grows with the number of ticks or watches).
    pub fn record_probe(&self, probe: &str, environment: &str, latencies: &Hdr<u32>) {
        if latencies.is_empty() {
            return;
        }
        for q in PROBE_QUANTILES {
            let v = latencies.value_at_quantile(q) as f64 / 1e6;
            self.probe_latency
                .get_or_create(&ProbeQuantileLabels {
                    probe: probe.to_string(),
                    environment: environment.to_string(),
                    quantile: q.to_string(),
                })
                .set(v);
        }
    }

    /// Drops a probe's gauges in one environment (its watch ended).
    pub fn forget_probe(&self, probe: &str, environment: &str) {
        for q in PROBE_QUANTILES {
            self.probe_latency.remove(&ProbeQuantileLabels {
                probe: probe.to_string(),
                environment: environment.to_string(),
                quantile: q.to_string(),
            });
        }
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding to a String");
        out
    }
}

/// Counts one live thing on a gauge, from [`Alive::new`] until dropped.
pub struct Alive(Gauge);

impl Alive {
    pub fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Logs to stderr: JSON when `RG_LOG_FORMAT=json`, level from `RUST_LOG` (default info).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, never into journald or a file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if std::env::var("RG_LOG_FORMAT").is_ok_and(|v| v == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
