//! HTTP probes of a service's endpoints. A failed exchange is classified by
//! [`crate::transport::classify`]: only what the service did (refused,
//! reset, timed out, a wrong status, a condition its answer failed) is a
//! failed probe; a failure on the guardian's own side (out of descriptors,
//! memory or local ports, its resolver, its request building) or one it
//! cannot attribute is blamed on the guardian ([`Blame::Guardian`]) and
//! makes the check inconclusive.
//!
//! A probe request is one `method` (default `GET`) with the probe's
//! `headers` and its own timeout over a shared, pooled client (connections
//! are reused across ticks and watches); its latency is measured on the
//! monotonic clock up to the end of the body (read up to
//! [`MAX_PROBE_BODY`] bytes, the rest is not waited for). The answer is
//! judged on every condition the probe sets (`expect_status`,
//! `body_contains`, `body_regex`, `json`, `max_latency`, `cert_min_days`),
//! and a failed one names each condition it failed.
//!
//! A tick sends `burst` requests ([`Prober::burst`]), each taking a permit
//! of the one semaphore every source request shares, and records their
//! latencies in an HDR histogram that lives for that tick only
//! ([`BurstResult`]): a check's `stat` (p50, p95, p99, success_ratio) is
//! read from it, and nothing of it outlives the tick.
//!
//! Clients: reqwest sets redirects, HTTP versions and trusted CAs per
//! client, so the prober keeps one pooled client per combination a probe
//! asks for (built on first use, shared by every probe asking the same).
//! The default one is the client it was built with ([`probe_client`]: at
//! most [`MAX_REDIRECTS`] redirects, HTTP/2 over TLS when the server
//! offers it, else HTTP/1.1).

use super::{Blame, ProbeResult, Reads, SourceKind};
use crate::section::{
    at_most, deserialize_duration, deserialize_opt_duration, http_url, KeyPath, Report,
    MAX_REQUEST_TIMEOUT,
};
use crate::transport::{classify, tracking_resolution, Failure};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// `source: probe`: a check on one of the service's `[[services.probes]]`.
pub const KIND: SourceKind = SourceKind {
    name: "probe",
    reads: Reads::Probe,
    section: None,
};

/// Default probe timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Most requests one probe sends per tick.
pub const MAX_BURST: u32 = 1000;

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

fn default_burst() -> u32 {
    1
}

fn default_true() -> bool {
    true
}

/// `expect_status`: a code (`200`), a class (`"2xx"`) or a range (`"200-399"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ExpectStatus {
    Code(u16),
    Text(String),
}

impl ExpectStatus {
    /// The inclusive range of passing codes, or why it is not one.
    pub fn range(&self) -> Result<(u16, u16), String> {
        let valid = |c: u16| (100..=599).contains(&c);
        match self {
            ExpectStatus::Code(c) if valid(*c) => Ok((*c, *c)),
            ExpectStatus::Code(c) => Err(format!("{c} is not an HTTP status (100-599)")),
            ExpectStatus::Text(t) => {
                let t = t.trim();
                let parsed =
                    if let Some(class) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
                        class
                            .parse::<u16>()
                            .ok()
                            .filter(|c| (1..=5).contains(c))
                            .map(|c| (c * 100, c * 100 + 99))
                    } else if let Some((a, b)) = t.split_once('-') {
                        match (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
                            (Ok(a), Ok(b)) if valid(a) && valid(b) && a <= b => Some((a, b)),
                            _ => None,
                        }
                    } else {
                        t.parse::<u16>().ok().filter(|c| valid(*c)).map(|c| (c, c))
                    };
                parsed.ok_or_else(|| {
                    format!("{t:?} is not a status, a class such as \"2xx\" or a range such as \"200-399\"")
                })
            }
        }
    }

    fn describe(&self) -> String {
        match self.range() {
            Ok((a, b)) if a == b => a.to_string(),
            Ok((a, b)) if a % 100 == 0 && b == a + 99 => format!("{}xx", a / 100),
            Ok((a, b)) => format!("{a}-{b}"),
            Err(_) => "?".into(),
        }
    }
}

impl From<u16> for ExpectStatus {
    fn from(c: u16) -> Self {
        ExpectStatus::Code(c)
    }
}

/// `json = { path = "$.status", equals = "UP" }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonCondition {
    /// `$`, then `.key` or `["key"]` or `[index]` steps.
    pub path: String,
    pub equals: serde_json::Value,
}

/// `http_version`: how the HTTP version is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
pub enum HttpVersion {
    /// HTTP/2 over TLS when the server offers it (ALPN), else HTTP/1.1.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// HTTP/1.1 only.
    #[serde(rename = "1.1")]
    Http1,
    /// HTTP/2 only (with prior knowledge, also over plain `http://`).
    #[serde(rename = "2")]
    Http2,
}

/// What a probe check judges of a tick's burst (`stat:` in a rule pack).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stat {
    P50,
    P95,
    P99,
    /// Passed requests / requests the service answered or failed.
    SuccessRatio,
}

impl Stat {
    pub fn as_str(self) -> &'static str {
        match self {
            Stat::P50 => "p50",
            Stat::P95 => "p95",
            Stat::P99 => "p99",
            Stat::SuccessRatio => "success_ratio",
        }
    }
}

/// One `[[services.probes]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    pub name: String,
    pub url: String,
    /// Expected status; default: any 2xx.
    #[serde(default)]
    pub expect_status: Option<ExpectStatus>,
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    /// HTTP method (default `GET`).
    #[serde(default)]
    pub method: Option<String>,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body must contain this text.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// The body must match this regular expression.
    #[serde(default)]
    pub body_regex: Option<String>,
    /// A field of the JSON body must equal a value.
    #[serde(default)]
    pub json: Option<JsonCondition>,
    /// Slower answers fail.
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub max_latency: Option<Duration>,
    /// The server's TLS certificate must stay valid this many more days.
    #[serde(default)]
    pub cert_min_days: Option<u32>,
    /// Requests per tick (default 1).
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Follow redirects (at most [`MAX_REDIRECTS`]); false: judge the
    /// redirect itself.
    #[serde(default = "default_true")]
    pub follow_redirects: bool,
    #[serde(default)]
    pub http_version: HttpVersion,
    /// PEM file of extra CA certificates to trust (an internal CA).
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// `body_regex`, compiled once.
    #[serde(skip)]
    pub compiled_regex: RegexCache,
}

/// A probe's `body_regex`, compiled on first use.
#[derive(Debug, Clone, Default)]
pub struct RegexCache(OnceLock<Option<regex::Regex>>);

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            expect_status: None,
            timeout: DEFAULT_TIMEOUT,
            method: None,
            headers: BTreeMap::new(),
            body_contains: None,
            body_regex: None,
            json: None,
            max_latency: None,
            cert_min_days: None,
            burst: 1,
            follow_redirects: true,
            http_version: HttpVersion::Auto,
            tls_ca_file: None,
            compiled_regex: RegexCache::default(),
        }
    }
}

impl ProbeConfig {
    fn regex(&self) -> Option<&regex::Regex> {
        self.compiled_regex
            .0
            .get_or_init(|| {
                self.body_regex
                    .as_deref()
                    .and_then(|r| regex::Regex::new(r).ok())
            })
            .as_ref()
    }

    /// Whether the body must be kept to judge it.
    fn reads_body(&self) -> bool {
        self.body_contains.is_some() || self.body_regex.is_some() || self.json.is_some()
    }

    fn client_key(&self) -> ClientKey {
        ClientKey {
            follow_redirects: self.follow_redirects,
            http_version: self.http_version,
            tls_ca_file: self.tls_ca_file.clone(),
        }
    }
}

/// Checks a service's probes (`at`: the service), every error at its key.
pub fn check_probes(probes: &[ProbeConfig], service: &str, at: &KeyPath, report: &mut Report<'_>) {
    let mut seen: Vec<&str> = Vec::new();
    for (k, p) in probes.iter().enumerate() {
        let pp = at.key("probes").index(k);
        let mut error =
            |key: &str, m: String| report.error(&pp.key(key), format!("probe `{}`: {m}", p.name));
        if p.name.trim().is_empty() {
            error("name", "`name` must not be empty".into());
        } else if seen.contains(&p.name.as_str()) {
            error("name", format!("defined twice in service `{service}`"));
        }
        seen.push(&p.name);
        match http_url(&p.url) {
            Err(e) => error(
                "url",
                format!("`url` {:?} is not an http(s) URL: {e}", p.url),
            ),
            Ok(u) if p.cert_min_days.is_some() && u.scheme() != "https" => error(
                "cert_min_days",
                "`cert_min_days` needs an https:// `url`".into(),
            ),
            Ok(_) => {}
        }
        if let Some(Err(e)) = p.expect_status.as_ref().map(ExpectStatus::range) {
            error("expect_status", format!("`expect_status` {e}"));
        }
        if p.timeout.is_zero() {
            error("timeout", "`timeout` must be greater than zero".into());
        }
        if let Err(e) = at_most("timeout", p.timeout, MAX_REQUEST_TIMEOUT) {
            error("timeout", e.to_string());
        }
        if let Some(m) = &p.method {
            if reqwest::Method::from_bytes(m.as_bytes()).is_err() || m.is_empty() {
                error("method", format!("`method` {m:?} is not an HTTP method"));
            }
        }
        for (name, value) in &p.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                error("headers", format!("{name:?} is not a valid header name"));
            } else if reqwest::header::HeaderValue::from_str(value).is_err() {
                error("headers", format!("header `{name}` has an invalid value"));
            }
        }
        if let Some(Err(e)) = p.body_regex.as_deref().map(regex::Regex::new) {
            error(
                "body_regex",
                format!("`body_regex` is not a valid regular expression: {e}"),
            );
        }
        if let Some(Err(e)) = p.json.as_ref().map(|j| parse_json_path(&j.path)) {
            error("json", format!("`json.path` {e}"));
        }
        if p.max_latency == Some(Duration::ZERO) {
            error(
                "max_latency",
                "`max_latency` must be greater than zero".into(),
            );
        }
        if !(1..=MAX_BURST).contains(&p.burst) {
            error(
                "burst",
                format!("`burst` must be between 1 and {MAX_BURST}"),
            );
        }
        if let Some(f) = &p.tls_ca_file {
            if let Err(e) = read_ca(f) {
                error("tls_ca_file", e);
            }
        }
    }
}

/// Redirects a probe follows before it fails with "too many redirects".
pub const MAX_REDIRECTS: usize = 5;

/// Body bytes a probe reads (and times) before it stops reading.
pub const MAX_PROBE_BODY: usize = 1024 * 1024;

/// Builds a pooled client fit for probes: at most [`MAX_REDIRECTS`]
/// redirects, HTTP/2 when the server offers it over TLS, the peer's
/// certificate kept for `cert_min_days`.
pub fn probe_client() -> reqwest::Client {
    client_for(&ClientKey::default()).expect("a TLS backend is compiled in")
}

/// What makes probe clients differ.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    follow_redirects: bool,
    http_version: HttpVersion,
    tls_ca_file: Option<PathBuf>,
}

impl Default for ClientKey {
    fn default() -> Self {
        Self {
            follow_redirects: true,
            http_version: HttpVersion::Auto,
            tls_ca_file: None,
        }
    }
}

fn read_ca(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read `tls_ca_file` {}: {e}", path.display()))?;
    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        format!(
            "`tls_ca_file` {} holds no PEM certificate: {e}",
            path.display()
        )
    })
}

fn client_for(key: &ClientKey) -> Result<reqwest::Client, String> {
    use reqwest::redirect::Policy;
    let policy = if key.follow_redirects {
        Policy::limited(MAX_REDIRECTS)
    } else {
        Policy::none()
    };
    let mut b = crate::transport::client_builder(policy).tls_info(true);
    b = match key.http_version {
        HttpVersion::Auto => b,
        HttpVersion::Http1 => b.http1_only(),
        HttpVersion::Http2 => b.http2_prior_knowledge(),
    };
    if let Some(f) = &key.tls_ca_file {
        for c in read_ca(f)? {
            b = b.add_root_certificate(c);
        }
    }
    b.build()
        .map_err(|e| format!("cannot build the probe client: {e}"))
}

/// Probes endpoints over shared clients; cheap to build and to call.
pub struct Prober {
    default: reqwest::Client,
    others: Mutex<HashMap<ClientKey, reqwest::Client>>,
    /// Results given instead of sending requests (`test-rules`).
    script: Option<Arc<dyn ProbeScript>>,
}

/// Probe results given in advance instead of measured: what `test-rules`
/// replays. The burst is summed up exactly as measured ones are.
pub trait ProbeScript: Send + Sync {
    /// The results of one tick's burst of `cfg` (one per request).
    fn burst(&self, cfg: &ProbeConfig) -> Vec<ProbeResult>;
}

/// What a tick's burst of requests gave.
#[derive(Debug)]
pub struct BurstResult {
    /// Requests sent.
    pub sent: u32,
    /// Requests that passed every condition.
    pub passed: u32,
    /// Requests that failed by the service's doing.
    pub failed: u32,
    /// Latencies (µs) of the requests the service is judged on (passed or
    /// failed): for this tick only, dropped with the result.
    pub latencies: Latencies,
    /// The slowest judged request.
    pub max_latency: Duration,
    /// Why requests failed, each reason with how many times, most frequent
    /// first; guardian-side failures say so.
    pub reasons: Vec<(String, u32)>,
    /// The first guardian-side failure, when nothing could be judged.
    pub guardian_failure: Option<String>,
    /// The status of the last answer.
    pub last_status: Option<u16>,
}

impl BurstResult {
    /// Requests the service is judged on.
    pub fn judged(&self) -> u32 {
        self.passed + self.failed
    }

    /// The statistic (seconds for percentiles); None when nothing was judged.
    pub fn stat(&self, stat: Stat) -> Option<f64> {
        if self.judged() == 0 {
            return None;
        }
        let q = match stat {
            Stat::P50 => 0.50,
            Stat::P95 => 0.95,
            Stat::P99 => 0.99,
            Stat::SuccessRatio => return Some(self.passed as f64 / self.judged() as f64),
        };
        Some(self.latencies.value_at_quantile(q) as f64 / 1e6)
    }

    /// The failure reasons in a few words: "2 of 10 failed: HTTP 503,
    /// expected 2xx (2)".
    pub fn describe_failures(&self) -> Option<String> {
        if self.reasons.is_empty() {
            return None;
        }
        let list: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| {
                if self.sent > 1 {
                    format!("{r} ({n})")
                } else {
                    r.clone()
                }
            })
            .collect();
        Some(if self.sent > 1 {
            format!(
                "{} of {} requests failed: {}",
                self.sent - self.passed,
                self.sent,
                list.join("; ")
            )
        } else {
            list.join("; ")
        })
    }
}

/// Probe latency histograms alive now, in this process.
static LIVE_HISTOGRAMS: AtomicUsize = AtomicUsize::new(0);

/// How many probe latency histograms ([`Latencies`]) are alive: each lives
/// for one tick's burst, so none outlives the watches (`/metrics`:
/// `rg_probe_histograms`).
pub fn live_histograms() -> usize {
    LIVE_HISTOGRAMS.load(Ordering::Relaxed)
}

/// A tick's latency histogram: µs up to an hour, 3 significant digits
/// (bounded: about 92 KiB, freed with the tick's result), counted in
/// [`live_histograms`] while it lives.
#[derive(Debug)]
pub struct Latencies(hdrhistogram::Histogram<u32>);

impl Latencies {
    fn new() -> Self {
        LIVE_HISTOGRAMS.fetch_add(1, Ordering::Relaxed);
        Self(
            hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid HDR bounds"),
        )
    }
}

impl Drop for Latencies {
    fn drop(&mut self) {
        LIVE_HISTOGRAMS.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::ops::Deref for Latencies {
    type Target = hdrhistogram::Histogram<u32>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Latencies {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Prober {
    /// A prober whose default client is `http` (a clone of the daemon's
    /// pooled [`probe_client`]).
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            default: http,
            others: Mutex::new(HashMap::new()),
            script: None,
        }
    }

    /// A prober that sends nothing: each burst's results come from `script`.
    pub fn scripted(script: Arc<dyn ProbeScript>) -> Self {
        Self {
            script: Some(script),
            ..Self::new(reqwest::Client::new())
        }
    }

    fn client(&self, cfg: &ProbeConfig) -> Result<reqwest::Client, String> {
        let key = cfg.client_key();
        if key == ClientKey::default() {
            return Ok(self.default.clone());
        }
        let mut others = self.others.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = others.get(&key) {
            return Ok(c.clone());
        }
        let c = client_for(&key)?;
        others.insert(key, c.clone());
        Ok(c)
    }

    /// Sends one request of `cfg` and judges it. `ok` when it passes every
    /// condition; `error` names each condition it failed, `blame` whose
    /// doing it was.
    pub async fn probe(&self, cfg: &ProbeConfig) -> ProbeResult {
        self.attempt(cfg).await
    }

    /// Sends `cfg.burst` requests at once, each under a permit of
    /// `permits` (the one semaphore bounding every source request), and
    /// sums them up.
    pub async fn burst(&self, cfg: &ProbeConfig, permits: &tokio::sync::Semaphore) -> BurstResult {
        let attempts = match &self.script {
            Some(script) => script.burst(cfg),
            None => {
                futures_util::future::join_all((0..cfg.burst.max(1)).map(|_| async {
                    let _permit = permits.acquire().await;
                    self.attempt(cfg).await
                }))
                .await
            }
        };
        let n = attempts.len() as u32;
        let mut out = BurstResult {
            sent: n,
            passed: 0,
            failed: 0,
            latencies: Latencies::new(),
            max_latency: Duration::ZERO,
            reasons: Vec::new(),
            guardian_failure: None,
            last_status: None,
        };
        let mut reasons: BTreeMap<String, u32> = BTreeMap::new();
        for r in attempts {
            if r.status.is_some() {
                out.last_status = r.status;
            }
            match r.outcome() {
                super::ProbeOutcome::Inconclusive(why) => {
                    out.guardian_failure.get_or_insert_with(|| why.to_string());
                    *reasons
                        .entry(format!("{why} (guardian-side, not counted)"))
                        .or_default() += 1;
                    continue;
                }
                super::ProbeOutcome::Failed(why) => {
                    out.failed += 1;
                    *reasons.entry(why.to_string()).or_default() += 1;
                }
                super::ProbeOutcome::Passed => out.passed += 1,
            }
            let micros = (r.latency.as_micros() as u64).clamp(1, 3_600_000_000);
            let _ = out.latencies.record(micros);
            out.max_latency = out.max_latency.max(r.latency);
        }
        let mut reasons: Vec<(String, u32)> = reasons.into_iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out.reasons = reasons;
        out
    }

    async fn attempt(&self, cfg: &ProbeConfig) -> ProbeResult {
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
            Ok(answer) => {
                let failed = judge(cfg, &answer, latency);
                ProbeResult {
                    ok: failed.is_empty(),
                    status: Some(answer.status),
                    latency,
                    error: (!failed.is_empty()).then(|| failed.join("; ")),
                    blame: Blame::Service,
                }
            }
        }
    }

    /// Sends the request and reads the body; the answer, or why it failed.
    async fn exchange(&self, cfg: &ProbeConfig) -> Result<Answer, Exchange> {
        let url = reqwest::Url::parse(&cfg.url)
            .map_err(|e| Exchange::Invalid(format!("invalid URL: {e}")))?;
        let method = match &cfg.method {
            None => reqwest::Method::GET,
            Some(m) => reqwest::Method::from_bytes(m.as_bytes())
                .map_err(|_| Exchange::Invalid(format!("invalid method {m:?}")))?,
        };
        let client = self.client(cfg).map_err(Exchange::Invalid)?;
        let mut request = client.request(method, url).timeout(cfg.timeout);
        for (k, v) in &cfg.headers {
            request = request.header(k, v);
        }
        let mut response = request.send().await.map_err(Exchange::Failed)?;
        let status = response.status().as_u16();
        let cert_not_after = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate())
            .and_then(not_after);
        let keep = cfg.reads_body();
        let mut body = Vec::new();
        let mut read = 0usize;
        while read < MAX_PROBE_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    read += chunk.len();
                    if keep {
                        let room = MAX_PROBE_BODY.saturating_sub(body.len());
                        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(Exchange::Failed(e)),
            }
        }
        Ok(Answer {
            status,
            body,
            cert_not_after,
        })
    }
}

/// What the service answered.
struct Answer {
    status: u16,
    body: Vec<u8>,
    /// The peer certificate's `notAfter` (Unix seconds), over TLS.
    cert_not_after: Option<i64>,
}

/// The end of a DER certificate's validity (Unix seconds).
fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Every condition `answer` fails, in words.
fn judge(cfg: &ProbeConfig, answer: &Answer, latency: Duration) -> Vec<String> {
    let mut failed = Vec::new();
    if let (false, why) = judge_status(answer.status, cfg.expect_status.as_ref()) {
        failed.extend(why);
    }
    let text = || String::from_utf8_lossy(&answer.body);
    if let Some(needle) = &cfg.body_contains {
        if !text().contains(needle.as_str()) {
            failed.push(format!("body does not contain {needle:?}"));
        }
    }
    if let Some(src) = &cfg.body_regex {
        if !cfg.regex().is_some_and(|r| r.is_match(&text())) {
            failed.push(format!("body does not match /{src}/"));
        }
    }
    if let Some(j) = &cfg.json {
        match serde_json::from_slice::<serde_json::Value>(&answer.body) {
            Err(_) => failed.push(format!(
                "body is not JSON (json {} expected {})",
                j.path, j.equals
            )),
            Ok(doc) => match parse_json_path(&j.path).ok().and_then(|p| lookup(&doc, &p)) {
                None => failed.push(format!(
                    "json {} is missing (expected {})",
                    j.path, j.equals
                )),
                Some(v) if *v != j.equals => {
                    failed.push(format!("json {} is {v}, expected {}", j.path, j.equals))
                }
                Some(_) => {}
            },
        }
    }
    if let Some(max) = cfg.max_latency {
        if latency > max {
            failed.push(format!(
                "took {}ms, more than max_latency {}ms",
                latency.as_millis(),
                max.as_millis()
            ));
        }
    }
    if let Some(days) = cfg.cert_min_days {
        match answer.cert_not_after {
            None => failed.push("no TLS certificate to check (cert_min_days)".into()),
            Some(end) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let left = (end - now) as f64 / 86_400.0;
                if left < days as f64 {
                    failed.push(format!(
                        "TLS certificate expires in {left:.1} days, less than cert_min_days {days}"
                    ));
                }
            }
        }
    }
    failed
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq)]
enum PathStep {
    Key(String),
    Index(usize),
}

/// Parses `$.a.b[0]["c d"]` (the leading `$` optional).
fn parse_json_path(path: &str) -> Result<Vec<PathStep>, String> {
    let bad = |why: &str| format!("{path:?} is not a JSON path such as \"$.status\" ({why})");
    let mut rest = path.trim();
    rest = rest.strip_prefix('$').unwrap_or(rest);
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err(bad("empty key"));
            }
            steps.push(PathStep::Key(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(|| bad("unclosed `[`"))?;
            let inner = r[..end].trim();
            if let Some(q) = inner
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
            {
                steps.push(PathStep::Key(q.to_string()));
            } else {
                steps.push(PathStep::Index(
                    inner.parse().map_err(|_| bad("index is not a number"))?,
                ));
            }
            rest = &r[end + 1..];
        } else if steps.is_empty() && !path.trim().starts_with('$') {
            // `status.code`: a bare first key.
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            steps.push(PathStep::Key(rest[..end].to_string()));
            rest = &rest[end..];
        } else {
            return Err(bad("expected `.` or `[`"));
        }
    }
    Ok(steps)
}

fn lookup<'a>(doc: &'a serde_json::Value, path: &[PathStep]) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(doc, |v, step| match step {
        PathStep::Key(k) => v.get(k),
        PathStep::Index(i) => v.get(i),
    })
}

/// Why an exchange did not give an answer.
enum Exchange {
    /// The request could not even be made (the URL): the guardian's side.
    Invalid(String),
    /// The exchange failed; [`classify`] says whose doing it was.
    Failed(reqwest::Error),
}

/// Whether `status` passes, and if not, why ("HTTP 503, expected 2xx").
fn judge_status(status: u16, expect: Option<&ExpectStatus>) -> (bool, Option<String>) {
    let (lo, hi, want) = match expect.map(|e| (e.range(), e)) {
        Some((Ok((lo, hi)), e)) => (lo, hi, e.describe()),
        Some((Err(_), _)) | None => (200, 299, "2xx".to_string()),
    };
    if (lo..=hi).contains(&status) {
        (true, None)
    } else {
        (false, Some(format!("HTTP {status}, expected {want}")))
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
    fn expected_status_is_exact_or_a_range() {
        let code = ExpectStatus::Code(404);
        assert_eq!(judge_status(404, Some(&code)), (true, None));
        assert_eq!(
            judge_status(200, Some(&ExpectStatus::Code(204))),
            (false, Some("HTTP 200, expected 204".into()))
        );
        let class = ExpectStatus::Text("3xx".into());
        assert_eq!(judge_status(302, Some(&class)), (true, None));
        assert_eq!(
            judge_status(200, Some(&class)),
            (false, Some("HTTP 200, expected 3xx".into()))
        );
        let range = ExpectStatus::Text("200-399".into());
        assert_eq!(judge_status(301, Some(&range)), (true, None));
        assert_eq!(
            judge_status(404, Some(&range)),
            (false, Some("HTTP 404, expected 200-399".into()))
        );
        assert!(ExpectStatus::Text("6xx".into()).range().is_err());
        assert!(ExpectStatus::Text("300-200".into()).range().is_err());
        assert!(ExpectStatus::Code(700).range().is_err());
    }

    #[test]
    fn json_paths() {
        let doc: serde_json::Value =
            serde_json::json!({"status": "UP", "checks": [{"name": "db", "ok": true}], "a b": 1});
        let at = |p: &str| lookup(&doc, &parse_json_path(p).unwrap()).cloned();
        assert_eq!(at("$.status"), Some("UP".into()));
        assert_eq!(at("$.checks[0].ok"), Some(true.into()));
        assert_eq!(at("$[\"a b\"]"), Some(1.into()));
        assert_eq!(at("status"), Some("UP".into()));
        assert_eq!(at("$.nope"), None);
        assert!(parse_json_path("$.").is_err());
        assert!(parse_json_path("$[x").is_err());
    }

    #[test]
    fn every_failed_condition_is_named() {
        let cfg = ProbeConfig {
            body_contains: Some("UP".into()),
            body_regex: Some("^ok".into()),
            json: Some(JsonCondition {
                path: "$.status".into(),
                equals: "UP".into(),
            }),
            max_latency: Some(Duration::from_millis(100)),
            ..ProbeConfig::default()
        };
        let answer = Answer {
            status: 503,
            body: br#"{"status":"DOWN"}"#.to_vec(),
            cert_not_after: None,
        };
        assert_eq!(
            judge(&cfg, &answer, Duration::from_millis(250)),
            [
                "HTTP 503, expected 2xx",
                "body does not contain \"UP\"",
                "body does not match /^ok/",
                "json $.status is \"DOWN\", expected \"UP\"",
                "took 250ms, more than max_latency 100ms",
            ]
        );
    }
}
