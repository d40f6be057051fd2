//! `source: scrape`: the service's own `/metrics`, scraped directly, for
//! users without a Prometheus server. A service lists its targets as
//! `[[services.scrapes]]` (`name`, `url`, `interval`, `timeout`); a check
//! names one with `scrape: NAME` and gives a `query` in the PromQL subset
//! of [`super::promql`].
//!
//! The [`ScrapeHub`] (one per daemon) scrapes a target only while a watch
//! holds it ([`ScrapeHub::hold`]; the watch holds its service's targets for
//! its whole life, so the data covers the release from its start) and
//! stops, freeing its samples, when the last holder lets go. Successive
//! scrapes are kept in memory, bounded in time (samples older than the
//! longest window a check needs — the longest tick interval plus the
//! longest range in its queries — are dropped) and in series count
//! ([`MAX_SERIES`]). A check reads its target through [`ScrapeView`], a
//! [`RangeSource`] that evaluates the query at every step of the interval,
//! so scrape checks are judged exactly like Prometheus range checks.
//!
//! Exposition format: Prometheus' text format 0.0.4, read by
//! [`super::exposition`]: every sample line is a series as written
//! (histogram buckets as `NAME_bucket{le="..."}`, summary quantiles as
//! `NAME{quantile="..."}`), and a line that is not a sample fails the
//! scrape; timestamps in the exposition are ignored (every sample is
//! stamped with its scrape's start).

use super::prometheus::{promql_escape, series_key};
use super::promql::{self, Labels, Matcher, SampleSource};
use super::{RangeQuery, RangeSource, Reads, SeriesSet, SourceError, SourceKind};
use crate::clock::Clock;
use crate::engine::Sample;
use crate::model::Millis;
use crate::section::{
    at_most, deserialize_opt_duration, http_url, KeyPath, Report, MAX_REQUEST_TIMEOUT,
};
use async_trait::async_trait;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `source: scrape`: a query over one of the service's `[[services.scrapes]]`.
pub const KIND: SourceKind = SourceKind {
    name: "scrape",
    reads: Reads::Scrape,
    section: None,
};

/// Default time between scrapes.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Shortest `interval`.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Most series one target may expose; the rest of a scrape is dropped.
pub const MAX_SERIES: usize = 10_000;
/// Most bytes of one scrape's body.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// One `[[services.scrapes]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    pub name: String,
    /// The target's metrics endpoint, e.g. `http://10.0.0.5:8080/metrics`.
    pub url: String,
    /// Time between scrapes (default 15s).
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub interval: Option<Duration>,
    /// Per-scrape timeout (default: the interval, at most 10s).
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub timeout: Option<Duration>,
}

impl ScrapeConfig {
    pub fn interval(&self) -> Duration {
        self.interval.unwrap_or(DEFAULT_INTERVAL)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
            .unwrap_or_else(|| self.interval().min(Duration::from_secs(10)))
    }
}

/// Checks a service's scrapes (`at`: the service), every error at its key.
pub fn check_scrapes(
    scrapes: &[ScrapeConfig],
    service: &str,
    at: &KeyPath,
    report: &mut Report<'_>,
) {
    let mut seen: Vec<&str> = Vec::new();
    for (k, s) in scrapes.iter().enumerate() {
        let sp = at.key("scrapes").index(k);
        if s.name.trim().is_empty() {
            report.error(&sp.key("name"), "scrape `name` must not be empty");
        } else if seen.contains(&s.name.as_str()) {
            report.error(
                &sp.key("name"),
                format!(
                    "scrape `{}` is defined twice in service `{service}`",
                    s.name
                ),
            );
        }
        seen.push(&s.name);
        if let Err(e) = http_url(&s.url) {
            report.error(
                &sp.key("url"),
                format!(
                    "scrape `{}`: `url` {:?} is not an http(s) URL: {e}",
                    s.name, s.url
                ),
            );
        }
        if s.interval() < MIN_INTERVAL {
            report.error(
                &sp.key("interval"),
                format!("scrape `{}`: `interval` must be at least 100ms", s.name),
            );
        }
        if let Err(e) = at_most("interval", s.interval(), Duration::from_secs(3600)) {
            report.error(&sp.key("interval"), format!("scrape `{}`: {e}", s.name));
        }
        if s.timeout == Some(Duration::ZERO) {
            report.error(&sp.key("timeout"), "`timeout` must be greater than zero");
        }
        if let Err(e) = at_most("timeout", s.timeout(), MAX_REQUEST_TIMEOUT) {
            report.error(&sp.key("timeout"), format!("scrape `{}`: {e}", s.name));
        }
    }
}

/// Checks a scrape check's query (the template, variables standing for
/// label values): the error names the unsupported part.
pub fn check_query(query: &str) -> Result<(), promql::ParseError> {
    promql::parse(query).map(|_| ())
}

/// The longest range a query reads (0 when it does not parse).
pub fn query_range_ms(query: &str) -> Millis {
    promql::parse(query).map_or(0, |e| e.max_range())
}

/// One series' samples, oldest first.
struct SeriesBuf {
    labels: Labels,
    samples: VecDeque<(Millis, f64)>,
}

#[derive(Default)]
struct Buffer {
    series: HashMap<String, SeriesBuf>,
    /// Why the last scrape failed (None after a good one).
    last_error: Option<String>,
    scrapes: u64,
}

impl SampleSource for Buffer {
    fn select(
        &self,
        matchers: &[Matcher],
        from: Millis,
        to: Millis,
    ) -> Vec<(&Labels, Vec<(Millis, f64)>)> {
        self.series
            .values()
            .filter(|s| matchers.iter().all(|m| m.matches(&s.labels)))
            .filter_map(|s| {
                let lo = s.samples.partition_point(|(t, _)| *t < from);
                let hi = s.samples.partition_point(|(t, _)| *t <= to);
                (hi > lo).then(|| (&s.labels, s.samples.range(lo..hi).copied().collect()))
            })
            .collect()
    }
}

/// A scraped target, alive while a watch holds it.
pub struct Target {
    url: String,
    /// The `job` label: the scrape's `name`.
    job: String,
    /// The `instance` label: the URL's `host:port`.
    instance: String,
    timeout: Duration,
    /// How long samples are kept (ms); the longest any holder asked for.
    retention: AtomicI64,
    data: Mutex<Buffer>,
    cancel: CancellationToken,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Target {
    fn new(cfg: &ScrapeConfig, retention: Millis) -> Self {
        Target {
            url: cfg.url.clone(),
            job: cfg.name.clone(),
            instance: instance_of(&cfg.url),
            timeout: cfg.timeout(),
            retention: AtomicI64::new(retention),
            data: Mutex::new(Buffer::default()),
            cancel: CancellationToken::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Scrapes so far (for tests and the status of a target).
    pub fn scrapes(&self) -> u64 {
        self.lock().scrapes
    }

    /// Samples held across all series (bounded by retention and [`MAX_SERIES`]).
    pub fn samples_held(&self) -> usize {
        self.lock().series.values().map(|s| s.samples.len()).sum()
    }

    fn store(&self, at: Millis, scraped: Result<Vec<(Labels, f64)>, String>) {
        let retention = self.retention.load(Ordering::Relaxed);
        let mut b = self.lock();
        b.scrapes += 1;
        match scraped {
            Ok(samples) => {
                b.last_error = None;
                for (labels, v) in samples {
                    let key = series_key(&labels);
                    if !b.series.contains_key(&key) && b.series.len() >= MAX_SERIES {
                        b.last_error = Some(format!(
                            "{} exposes more than {MAX_SERIES} series; the rest are ignored",
                            self.url
                        ));
                        continue;
                    }
                    let s = b.series.entry(key).or_insert_with(|| SeriesBuf {
                        labels,
                        samples: VecDeque::new(),
                    });
                    if s.samples.back().is_none_or(|(t, _)| *t < at) {
                        s.samples.push_back((at, v));
                    }
                }
            }
            Err(e) => b.last_error = Some(e),
        }
        let cutoff = at.saturating_sub(retention);
        b.series.retain(|_, s| {
            while s.samples.front().is_some_and(|(t, _)| *t < cutoff) {
                s.samples.pop_front();
            }
            !s.samples.is_empty()
        });
    }
}

/// Scrapes targets for the watches that hold them.
pub struct ScrapeHub {
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    targets: Mutex<HashMap<String, Weak<Target>>>,
}

impl ScrapeHub {
    pub fn new(http: reqwest::Client, clock: Arc<dyn Clock>) -> Self {
        Self {
            http,
            clock,
            targets: Mutex::new(HashMap::new()),
        }
    }

    /// Holds the target `cfg` (starting to scrape it now if nobody held it)
    /// and keeps at least `retention` ms of its samples. Scraping stops and
    /// the samples are freed when the last returned `Arc` is dropped.
    pub fn hold(&self, cfg: &ScrapeConfig, retention: Millis) -> Arc<Target> {
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        targets.retain(|_, t| t.strong_count() > 0);
        if let Some(t) = targets.get(&cfg.url).and_then(Weak::upgrade) {
            t.retention.fetch_max(retention, Ordering::Relaxed);
            return t;
        }
        let target = Arc::new(Target::new(cfg, retention));
        targets.insert(cfg.url.clone(), Arc::downgrade(&target));
        tokio::spawn(scrape_loop(
            Arc::downgrade(&target),
            target.cancel.clone(),
            cfg.interval(),
            self.http.clone(),
            self.clock.clone(),
        ));
        target
    }

    /// Holds the target `cfg` with its scrapes already taken and never
    /// scrapes it: what `test-rules` replays scrape checks over.
    /// `scrapes` are `(instant, samples)`, oldest first, each sample's
    /// labels as the exposition gave them (the `job` and `instance` labels
    /// a scrape adds are added here); nothing is dropped for its age. Until
    /// the returned `Arc` is dropped, [`ScrapeHub::hold`] of the same URL
    /// answers this target.
    pub fn preloaded(
        &self,
        cfg: &ScrapeConfig,
        scrapes: Vec<(Millis, Vec<(Labels, f64)>)>,
    ) -> Arc<Target> {
        let target = Arc::new(Target::new(cfg, Millis::MAX));
        for (at, mut samples) in scrapes {
            for (labels, _) in &mut samples {
                add_target_labels(labels, &target.job, &target.instance);
            }
            target.store(at, Ok(samples));
        }
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        targets.insert(cfg.url.clone(), Arc::downgrade(&target));
        target
    }

    /// The target at `url`, while someone holds it.
    pub fn get(&self, url: &str) -> Option<Arc<Target>> {
        let targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        targets.get(url).and_then(Weak::upgrade)
    }

    /// Targets being scraped now.
    pub fn active(&self) -> usize {
        let targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        targets.values().filter(|t| t.strong_count() > 0).count()
    }
}

async fn scrape_loop(
    target: Weak<Target>,
    cancel: CancellationToken,
    interval: Duration,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(t) = target.upgrade() else { return };
        let at = clock.now();
        let scraped = tokio::select! {
            _ = cancel.cancelled() => return,
            r = scrape(&http, &t.url, &t.job, &t.instance, t.timeout) => r,
        };
        t.store(at, scraped);
    }
}

/// One scrape: every sample of the exposition as a label set (with
/// `__name__`) and a value.
async fn scrape(
    http: &reqwest::Client,
    url: &str,
    job: &str,
    instance: &str,
    timeout: Duration,
) -> Result<Vec<(Labels, f64)>, String> {
    let mut resp = http
        .get(url)
        .header("accept", "text/plain;version=0.0.4")
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| {
            format!(
                "scrape of {url} failed: {}",
                crate::transport::describe_transport_error(&e, timeout)
            )
        })?;
    if !resp.status().is_success() {
        return Err(format!(
            "scrape of {url} answered HTTP {}",
            resp.status().as_u16()
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        format!(
            "scrape of {url} failed: {}",
            crate::transport::describe_transport_error(&e, timeout)
        )
    })? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!(
                "scrape of {url}: the body is over {MAX_BODY} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&body);
    let mut samples = super::exposition::parse(&text)
        .map_err(|e| format!("scrape of {url}: not Prometheus' text format at {e}"))?;
    for (labels, _) in &mut samples {
        add_target_labels(labels, job, instance);
    }
    Ok(samples)
}

/// Adds `job` and `instance` as Prometheus does (a label of the same name
/// in the exposition is kept as `exported_job` / `exported_instance`).
fn add_target_labels(labels: &mut Labels, job: &str, instance: &str) {
    for (name, value) in [("job", job), ("instance", instance)] {
        if let Some(theirs) = labels.insert(name.to_string(), value.to_string()) {
            labels.insert(format!("exported_{name}"), theirs);
        }
    }
}

/// `host:port` of a URL, as Prometheus' `instance` label.
fn instance_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.to_string();
            let port = u.port_or_known_default()?;
            Some(format!("{host}:{port}"))
        })
        .unwrap_or_default()
}

/// One target seen as a [`RangeSource`]: the query evaluated at every step.
pub struct ScrapeView {
    pub target: Arc<Target>,
}

#[async_trait]
impl RangeSource for ScrapeView {
    fn name(&self) -> &'static str {
        KIND.name
    }

    fn render(&self, template: &str, vars: &BTreeMap<String, String>) -> String {
        let quoted = vars
            .iter()
            .map(|(k, v)| (k.clone(), promql_escape(v)))
            .collect();
        super::template::render(template, &quoted)
    }

    fn max_points_per_query(&self) -> i64 {
        100_000
    }

    async fn query_range(&self, q: &RangeQuery) -> Result<SeriesSet, SourceError> {
        let expr = promql::parse(&q.query).map_err(|e| SourceError::Query {
            source_name: KIND.name,
            error_type: "bad_data".into(),
            detail: e.to_string(),
        })?;
        let b = self.target.lock();
        let mut out: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
        let mut t = q.start;
        while t <= q.end {
            match expr.eval(&*b, t) {
                promql::Value::Scalar(v) => {
                    out.entry("{}".into()).or_default().push(Sample::ok(t, v))
                }
                promql::Value::Vector(v) => {
                    for (labels, x) in v {
                        out.entry(series_key(&labels))
                            .or_default()
                            .push(Sample::ok(t, x));
                    }
                }
            }
            t = match t.checked_add(q.step.max(1)) {
                Some(n) => n,
                None => break,
            };
        }
        if out.is_empty() {
            if let Some(e) = &b.last_error {
                return Err(SourceError::Unreachable {
                    source_name: KIND.name,
                    detail: e.clone(),
                });
            }
        }
        Ok(out.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_samples_are_dropped() {
        let t = Target {
            url: "http://x/metrics".into(),
            job: "x".into(),
            instance: "x:80".into(),
            timeout: Duration::from_secs(1),
            retention: AtomicI64::new(10_000),
            data: Mutex::new(Buffer::default()),
            cancel: CancellationToken::new(),
        };
        for i in 0..100 {
            let l: Labels = [("__name__".to_string(), "x".to_string())].into();
            t.store(i * 1000, Ok(vec![(l, i as f64)]));
        }
        assert_eq!(t.samples_held(), 11);
        t.store(200_000, Ok(vec![]));
        assert_eq!(
            t.samples_held(),
            0,
            "a series gone for longer than the retention is freed"
        );
    }
}
