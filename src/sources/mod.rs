//! Where samples come from, one kind per file behind a registry
//! ([`KINDS`]). A query source (Prometheus; later Loki) answers a templated
//! query over an interval at a step ([`RangeSource`]); the prober measures
//! a service's endpoint live. Every source error and every empty answer
//! becomes an *inconclusive* check upstream, never a breach; a failed probe
//! is a failed sample only when the service is to blame for it
//! ([`ProbeResult::outcome`], decided by [`crate::transport::classify`]).
//!
//! A kind's file owns what the config says of it — a query source its
//! `[sources.NAME]` section (serde struct, checks, `build`), the prober the
//! `[[services.probes]]` entries — and, for query sources, the quoting of
//! template values in its query language. The daemon builds the sources
//! once per (re)load into [`Sources`], which the scheduler reads through.
//! A `[sources.NAME]` is named after its kind (`[sources.prometheus]`) or
//! names its kind (`kind = "prometheus"`); checks choose a named one with
//! `datasource: NAME`. The HTTP query sources share their keys and client
//! ([`http`]).
//!
//! Adding a kind: its file (a `pub const KIND: SourceKind`, its config
//! struct implementing [`SourceConfig`], the [`RangeSource`] it builds),
//! one line in [`KINDS`], its docs (`docs/configuration.md`,
//! `docs/rules.md`) and its tests.

pub mod exposition;
pub mod http;
pub mod loki;
pub mod probe;
pub mod prometheus;
pub mod promql;
pub mod scrape;
pub mod template;

use crate::engine::Sample;
use crate::model::Millis;
use crate::section::{Secret, Section};
pub use crate::transport::Blame;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Every source kind this version reads, by the name rule packs give in
/// `source:` (and, for query sources, the `[sources.NAME]` section).
pub const KINDS: &[SourceKind] = &[prometheus::KIND, loki::KIND, probe::KIND, scrape::KIND];

/// Kinds of the contract that later versions add; `check` says so.
pub const PLANNED: &[&str] = &[];

/// The kind named `name`, if this version has it.
pub fn kind(name: &str) -> Option<&'static SourceKind> {
    KINDS.iter().find(|k| k.name == name)
}

/// How a check of a kind gets its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// A `query` over the interval since the last tick, on the check's
    /// `step` grid, from the kind's `[sources.NAME]` server.
    Query,
    /// One live measurement of the service's `probe` at each tick.
    Probe,
    /// A `query` over the interval since the last tick, on the check's
    /// `step` grid, evaluated over the service's `scrape` target, which is
    /// scraped while the watch lives ([`scrape`]).
    Scrape,
}

/// A source kind: its name, how its checks read, and how its
/// `[sources.NAME]` section is read (query sources).
pub struct SourceKind {
    pub name: &'static str,
    pub reads: Reads,
    /// Deserializes and checks `[sources.NAME]`, reporting every error.
    pub section: Option<ParseSection>,
}

/// Reads a query source's `[sources.NAME]` section.
pub type ParseSection = fn(&mut Section<'_, '_>) -> Option<Box<dyn SourceConfig>>;

impl std::fmt::Debug for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for SourceKind {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// A query source's section, deserialized and checked; `build` makes the
/// [`RangeSource`] it describes.
pub trait SourceConfig: std::fmt::Debug + Send + Sync {
    /// The secrets it holds (tokens), redacted wherever text is shown.
    fn secrets(&self) -> Vec<&Secret>;
    /// Builds the client, once per (re)load. The error says what is wrong
    /// without quoting a secret.
    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn RangeSource>, String>;
    /// Consecutive failed reads of a watch before it says that the
    /// guardian cannot see this source (`blind_after`).
    fn blind_after(&self) -> u32 {
        http::DEFAULT_BLIND_AFTER
    }
}

/// What building a source may use.
pub struct BuildContext {
    /// Pooled client for queries (timeouts per request).
    pub http: reqwest::Client,
    /// Pooled client for probes (at most [`probe::MAX_REDIRECTS`] redirects).
    pub probe_http: reqwest::Client,
}

/// One `[sources.NAME]` as the configuration holds it (by name in
/// [`crate::config::Settings::sources`]).
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub kind: &'static SourceKind,
    pub config: Arc<dyn SourceConfig>,
}

/// The sources in force, built from the configuration.
pub struct Sources {
    range: BTreeMap<String, Result<Arc<dyn RangeSource>, String>>,
    /// Measures probes (every service's).
    pub prober: probe::Prober,
}

impl Sources {
    /// Builds every configured query source and the prober.
    pub fn build(specs: &BTreeMap<String, SourceSpec>, cx: &BuildContext) -> Self {
        Self {
            range: specs
                .iter()
                .map(|(name, spec)| (name.clone(), spec.config.build(cx)))
                .collect(),
            prober: probe::Prober::new(cx.probe_http.clone()),
        }
    }

    /// Sources given as they are (`test-rules`: in-memory series and
    /// scripted probes in place of the configured servers).
    pub fn from_parts(
        range: BTreeMap<String, Result<Arc<dyn RangeSource>, String>>,
        prober: probe::Prober,
    ) -> Self {
        Self { range, prober }
    }

    /// The query source `name`: None when it is not configured, an error
    /// when it could not be built.
    pub fn range(&self, name: &str) -> Option<&Result<Arc<dyn RangeSource>, String>> {
        self.range.get(name)
    }
}

/// A range query: `query` evaluated at `start, start+step, ... <= end` (ms).
#[derive(Debug, Clone, PartialEq)]
pub struct RangeQuery {
    pub query: String,
    pub start: Millis,
    pub end: Millis,
    pub step: Millis,
}

/// Series of one answer: a stable key per label set, samples in time order.
pub type SeriesSet = Vec<(String, Vec<Sample>)>;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum SourceError {
    #[error("{source_name} is not configured")]
    NotConfigured { source_name: &'static str },
    #[error("{source_name} unreachable: {detail}")]
    Unreachable {
        source_name: &'static str,
        detail: String,
    },
    #[error("{source_name} answered HTTP {status}: {detail}")]
    Http {
        source_name: &'static str,
        status: u16,
        detail: String,
    },
    #[error("{source_name} rejected the query ({error_type}): {detail}")]
    Query {
        source_name: &'static str,
        error_type: String,
        detail: String,
    },
    #[error("{source_name} answered something unreadable: {detail}")]
    Decode {
        source_name: &'static str,
        detail: String,
    },
}

/// A time-series database queried over an interval.
#[async_trait]
pub trait RangeSource: Send + Sync {
    /// Name used in errors and metrics (`prometheus`, `loki`).
    fn name(&self) -> &'static str;

    /// A query template with `{{variable}}`s replaced by `vars`, each value
    /// quoted the way this query language quotes the inside of a
    /// double-quoted string.
    fn render(&self, template: &str, vars: &BTreeMap<String, String>) -> String;

    /// Most points one query may return per series; longer windows are read
    /// in chunks.
    fn max_points_per_query(&self) -> i64;

    /// Runs one range query. An empty answer is `Ok(vec![])`.
    async fn query_range(&self, q: &RangeQuery) -> Result<SeriesSet, SourceError>;

    /// The log lines a log query matches in `[start, end)` (sources of
    /// logs: Loki), newest or oldest first, at most `limit`.
    async fn query_logs(&self, q: &LogQuery) -> Result<Vec<LogLine>, SourceError> {
        let _ = q;
        Err(SourceError::Decode {
            source_name: self.name(),
            detail: "this source has no log lines".into(),
        })
    }
}

pub use crate::model::LogLine;

/// A log query for a check's evidence: `query` over `[start, end)` (ms).
#[derive(Debug, Clone, PartialEq)]
pub struct LogQuery {
    pub query: String,
    pub start: Millis,
    pub end: Millis,
    pub limit: u32,
    pub direction: Direction,
}

/// Which lines a log query keeps when there are more than its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The newest first (Loki's default).
    #[default]
    Backward,
    /// The oldest first.
    Forward,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backward => "backward",
            Self::Forward => "forward",
        }
    }
}

/// The result of one live probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// The service answered as expected.
    pub ok: bool,
    pub status: Option<u16>,
    pub latency: Duration,
    /// Why it did not pass (timeout, connection refused, unexpected status,
    /// or a guardian-side failure such as "too many open files").
    pub error: Option<String>,
    /// Who a probe that did not pass is blamed on: only
    /// [`Blame::Service`] is a failed sample; [`Blame::Guardian`] makes the
    /// check inconclusive ([`crate::transport::classify`]). `Service` when `ok`.
    pub blame: Blame,
}

impl ProbeResult {
    /// Passed, failed (the service's doing) or inconclusive (the guardian's
    /// side, or who failed cannot be told).
    pub fn outcome(&self) -> ProbeOutcome<'_> {
        let why = self.error.as_deref().unwrap_or("unknown");
        match (self.ok, self.blame) {
            (true, _) => ProbeOutcome::Passed,
            (false, Blame::Service) => ProbeOutcome::Failed(why),
            (false, Blame::Guardian) => ProbeOutcome::Inconclusive(why),
        }
    }
}

/// What one probe says of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome<'a> {
    /// It answered as expected: a sample whose value is the latency.
    Passed,
    /// It failed, by its own doing (refused, reset, timed out, wrong
    /// status): a failed sample.
    Failed(&'a str),
    /// The probe failed on the guardian's side (or who failed cannot be
    /// told): no sample; the check is inconclusive.
    Inconclusive(&'a str),
}
