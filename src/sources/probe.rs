//! HTTP probes of a service's endpoints. A failed exchange is classified by
//! [`crate::transport::classify`]: only what the service did (refused,
//! reset, timed out, a wrong status) is a failed probe; a failure on the
//! guardian's own side (out of descriptors, memory or local ports, its
//! resolver, its request building) or one it cannot attribute is blamed on
//! the guardian ([`Blame::Guardian`]) and makes the check inconclusive.
//!
//! A probe is one `GET` with the probe's own timeout over the shared, pooled
//! client; its latency is measured on the monotonic clock up to the end of
//! the body (read up to [`MAX_PROBE_BODY`] bytes, the rest is not waited for).
//!
//! Redirects: reqwest sets its redirect policy per client, not per request.
//! [`probe_client`] builds a client that follows at most [`MAX_REDIRECTS`];
//! a prober built on another client follows that client's policy.

use super::{Blame, ProbeResult, Reads, SourceKind};
use crate::section::{
    at_most, deserialize_duration, http_url, KeyPath, Report, MAX_REQUEST_TIMEOUT,
};
use crate::transport::{classify, tracking_resolution, Failure};
use serde::Deserialize;
use std::time::{Duration, Instant};

/// `source: probe`: a check on one of the service's `[[services.probes]]`.
pub const KIND: SourceKind = SourceKind {
    name: "probe",
    reads: Reads::Probe,
    section: None,
};

/// Default probe timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

/// One `[[services.probes]]` entry: a `GET` of `url`, passing on
/// `expect_status` (default: any 2xx) within `timeout`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    pub name: String,
    pub url: String,
    /// Expected status; default: any 2xx.
    #[serde(default)]
    pub expect_status: Option<u16>,
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
}

/// Checks a service's probes (`at`: the service), every error at its key.
pub fn check_probes(probes: &[ProbeConfig], service: &str, at: &KeyPath, report: &mut Report<'_>) {
    let mut seen: Vec<&str> = Vec::new();
    for (k, p) in probes.iter().enumerate() {
        let pp = at.key("probes").index(k);
        if p.name.trim().is_empty() {
            report.error(&pp.key("name"), "probe `name` must not be empty");
        } else if seen.contains(&p.name.as_str()) {
            report.error(
                &pp.key("name"),
                format!("probe `{}` is defined twice in service `{service}`", p.name),
            );
        }
        seen.push(&p.name);
        if let Err(e) = http_url(&p.url) {
            report.error(
                &pp.key("url"),
                format!(
                    "probe `{}`: `url` {:?} is not an http(s) URL: {e}",
                    p.name, p.url
                ),
            );
        }
        if let Some(code) = p.expect_status {
            if !(100..=599).contains(&code) {
                report.error(
                    &pp.key("expect_status"),
                    format!(
                        "probe `{}`: `expect_status` {code} is not an HTTP status (100-599)",
                        p.name
                    ),
                );
            }
        }
        if p.timeout.is_zero() {
            report.error(&pp.key("timeout"), "`timeout` must be greater than zero");
        }
        if let Err(e) = at_most("timeout", p.timeout, MAX_REQUEST_TIMEOUT) {
            report.error(&pp.key("timeout"), format!("probe `{}`: {e}", p.name));
        }
    }
}

/// Redirects a probe follows before it fails with "too many redirects".
pub const MAX_REDIRECTS: usize = 5;

/// Body bytes a probe reads (and times) before it stops reading.
pub const MAX_PROBE_BODY: usize = 1024 * 1024;

/// Builds a pooled client fit for probes: at most [`MAX_REDIRECTS`] redirects.
pub fn probe_client() -> reqwest::Client {
    crate::transport::client(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
}

/// Probes endpoints over one shared client; cheap to build and to call.
pub struct Prober {
    http: reqwest::Client,
}

impl Prober {
    /// A prober over `http` (a clone of the daemon's pooled client).
    pub fn new(http: reqwest::Client) -> Self {
        Self { http }
    }

    /// `GET`s `cfg.url` once. `ok` when the status equals `expect_status`,
    /// or is any 2xx when none is set; `error` says why not, `blame` whose
    /// doing it was.
    pub async fn probe(&self, cfg: &ProbeConfig) -> ProbeResult {
        let started = Instant::now();
        let (outcome, resolving) = tracking_resolution(self.exchange(cfg)).await;
        let latency = started.elapsed();
        match outcome {
            Err(Exchange::Invalid(reason)) => ProbeResult {
                ok: false,
                status: None,
                latency,
                error: Some(reason),
                blame: Blame::Guardian,
            },
            Err(Exchange::Failed(e)) => {
                let Failure { blame, reason } = classify(&e, cfg.timeout, resolving);
                ProbeResult {
                    ok: false,
                    status: None,
                    latency,
                    error: Some(reason),
                    blame,
                }
            }
            Ok(status) => {
                let (ok, error) = judge_status(status, cfg.expect_status);
                ProbeResult {
                    ok,
                    status: Some(status),
                    latency,
                    error,
                    blame: Blame::Service,
                }
            }
        }
    }

    /// Sends the request and reads the body; the status, or why it failed.
    async fn exchange(&self, cfg: &ProbeConfig) -> Result<u16, Exchange> {
        let url = reqwest::Url::parse(&cfg.url)
            .map_err(|e| Exchange::Invalid(format!("invalid URL: {e}")))?;
        let mut response = self
            .http
            .get(url)
            .timeout(cfg.timeout)
            .send()
            .await
            .map_err(Exchange::Failed)?;
        let status = response.status().as_u16();
        let mut read = 0usize;
        while read < MAX_PROBE_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) => break,
                Err(e) => return Err(Exchange::Failed(e)),
            }
        }
        Ok(status)
    }
}

/// Why an exchange did not give a status.
enum Exchange {
    /// The request could not even be made (the URL): the guardian's side.
    Invalid(String),
    /// The exchange failed; [`classify`] says whose doing it was.
    Failed(reqwest::Error),
}

/// Whether `status` passes, and if not, why ("HTTP 503, expected 2xx").
fn judge_status(status: u16, expect: Option<u16>) -> (bool, Option<String>) {
    match expect {
        Some(want) if status == want => (true, None),
        Some(want) => (false, Some(format!("HTTP {status}, expected {want}"))),
        None if (200..300).contains(&status) => (true, None),
        None => (false, Some(format!("HTTP {status}, expected 2xx"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_2xx_passes_without_expectation() {
        assert_eq!(judge_status(200, None), (true, None));
        assert_eq!(judge_status(204, None), (true, None));
        assert_eq!(
            judge_status(503, None),
            (false, Some("HTTP 503, expected 2xx".into()))
        );
        assert_eq!(
            judge_status(301, None),
            (false, Some("HTTP 301, expected 2xx".into()))
        );
    }

    #[test]
    fn expected_status_is_exact() {
        assert_eq!(judge_status(404, Some(404)), (true, None));
        assert_eq!(
            judge_status(200, Some(204)),
            (false, Some("HTTP 200, expected 204".into()))
        );
    }
}
