//! Where samples come from. A range source (Prometheus; later Loki) answers
//! a templated query over an interval at a step; a prober measures an
//! endpoint live. Every source error and every empty answer becomes an
//! *inconclusive* check upstream, never a breach.

pub mod probe;
pub mod prometheus;
pub mod template;

use crate::engine::Sample;
use crate::model::Millis;
use async_trait::async_trait;
use std::time::Duration;

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

    /// Runs one range query. An empty answer is `Ok(vec![])`.
    async fn query_range(&self, q: &RangeQuery) -> Result<SeriesSet, SourceError>;
}

/// The result of one live probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub ok: bool,
    pub status: Option<u16>,
    pub latency: Duration,
    /// Why it failed (timeout, connection refused, unexpected status).
    pub error: Option<String>,
}
