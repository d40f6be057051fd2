//! What the HTTP query sources (Prometheus, Loki) share: their
//! `[sources.NAME]` keys ([`RemoteConfig`]: URL, timeout, authentication,
//! TLS, extra headers, tenant, concurrency, blindness), the checks of those
//! keys, and the client built from them ([`RemoteClient`]).
//!
//! The client sends each request as a GET with its parameters in the URL,
//! or as a POST form when they are long ([`POST_ABOVE`] bytes), so a long
//! query never breaches a server's or proxy's URL limit. At most
//! `max_concurrency` requests of one source are in flight; identical
//! requests made while one is in flight share its answer (coalescing: the
//! watches that tick at the same instant with the same query send it once).
//! Errors never carry the URL, a header value or a secret.

use super::{BuildContext, RangeSource, SourceConfig, SourceError};
use crate::section::{at_most, deserialize_duration, Secret, Section, MAX_REQUEST_TIMEOUT};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::Url;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Default timeout of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `max_concurrency`: requests of one source in flight at once.
pub const DEFAULT_MAX_CONCURRENCY: usize = 16;
/// Largest `max_concurrency`.
pub const MAX_MAX_CONCURRENCY: usize = 1024;
/// Default `blind_after`: consecutive failed reads of a watch before it
/// says that the guardian cannot see the source.
pub const DEFAULT_BLIND_AFTER: u32 = 3;
/// Parameters longer than this (URL-encoded bytes) go in a POST form.
pub const POST_ABOVE: usize = 2048;
/// Largest answer read; a bigger one is a decode error, not an OOM.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

fn default_max_concurrency() -> usize {
    DEFAULT_MAX_CONCURRENCY
}

fn default_blind_after() -> u32 {
    DEFAULT_BLIND_AFTER
}

/// The keys of a `[sources.NAME]` of an HTTP query source. Secrets
/// (`bearer_token`, `password`) are read from their `*_file` at load; from
/// then on the inline field holds them whichever way they were given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// The server's base URL (a path prefix allowed).
    pub url: String,
    /// Timeout of one request.
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    /// `Authorization: Bearer` (a proxy, a hosted service).
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// HTTP basic auth user (with `password` or `password_file`).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA(s) that sign the server's certificate, trusted
    /// besides the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (with `key_file`) for mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Extra headers sent with every request (e.g. `X-Scope-OrgID`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The tenant, sent as `X-Scope-OrgID` (Loki, Mimir, Cortex, Thanos).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Requests of this source in flight at once.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Consecutive failed reads of a watch before it pages that the
    /// guardian cannot see this source.
    #[serde(default = "default_blind_after")]
    pub blind_after: u32,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout: DEFAULT_TIMEOUT,
            bearer_token: None,
            bearer_token_file: None,
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            headers: BTreeMap::new(),
            tenant: None,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            blind_after: DEFAULT_BLIND_AFTER,
        }
    }
}

/// Reads and checks a `[sources.NAME]` of an HTTP query source (`what`:
/// its kind's name, for messages), reporting every error at its key.
/// Secret files are read now; the CA, certificate and key files are read
/// and parsed now too, so a bad one is a located config error.
pub fn parse_remote(s: &mut Section<'_, '_>, what: &str) -> Option<RemoteConfig> {
    let mut c: RemoteConfig = s.deserialize()?;
    let mut ok = s.http_url("url", &c.url, what).is_some();
    if c.timeout.is_zero() {
        s.positive("timeout", c.timeout);
        ok = false;
    }
    if let Err(e) = at_most("timeout", c.timeout, MAX_REQUEST_TIMEOUT) {
        s.error("timeout", e);
        ok = false;
    }
    let had_token = c.bearer_token.is_some() || c.bearer_token_file.is_some();
    let token = s.optional_secret(
        c.bearer_token.as_ref(),
        c.bearer_token_file.as_ref(),
        "bearer_token",
    );
    ok &= !had_token || token.is_some();
    c.bearer_token = token;
    c.bearer_token_file = None;
    let had_password = c.password.is_some() || c.password_file.is_some();
    let password = s.optional_secret(c.password.as_ref(), c.password_file.as_ref(), "password");
    ok &= !had_password || password.is_some();
    c.password = password;
    c.password_file = None;
    match (&c.username, had_password) {
        (Some(u), _) if u.is_empty() || u.contains(':') => {
            s.error("username", "`username` must not be empty nor hold `:`");
            ok = false;
        }
        (Some(_), false) => {
            s.error("username", "`username` needs `password` or `password_file`");
            ok = false;
        }
        (None, true) => {
            s.error(
                if c.password.is_some() || !had_password {
                    "password"
                } else {
                    "password_file"
                },
                "a password needs a `username`",
            );
            ok = false;
        }
        _ => {}
    }
    if c.username.is_some() && had_token {
        s.error(
            "bearer_token",
            "set either basic auth (`username`) or a bearer token, not both",
        );
        ok = false;
    }
    for key in ["ca_file", "cert_file", "key_file"] {
        let field = match key {
            "ca_file" => &mut c.ca_file,
            "cert_file" => &mut c.cert_file,
            _ => &mut c.key_file,
        };
        if let Some(p) = field {
            *p = s.base.join(&*p);
        }
    }
    if let Some(ca) = &c.ca_file {
        if let Err(e) = read_ca(ca) {
            s.error("ca_file", e);
            ok = false;
        }
    }
    match (&c.cert_file, &c.key_file) {
        (Some(cert), Some(key)) => {
            if let Err(e) = read_identity(cert, key) {
                s.error("cert_file", e);
                ok = false;
            }
        }
        (Some(_), None) => {
            s.error("cert_file", "`cert_file` needs `key_file`");
            ok = false;
        }
        (None, Some(_)) => {
            s.error("key_file", "`key_file` needs `cert_file`");
            ok = false;
        }
        (None, None) => {}
    }
    for (name, value) in &c.headers {
        let at = s.at.key("headers").key(name);
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            s.report
                .error(&at, format!("`{name}` is not a valid HTTP header name"));
            ok = false;
        } else if name.eq_ignore_ascii_case("authorization") {
            s.report.error(
                &at,
                "set `Authorization` with `bearer_token` or `username`/`password`, whose values are kept secret",
            );
            ok = false;
        }
        if HeaderValue::from_str(value).is_err() {
            s.report.error(
                &at,
                format!(
                    "the value of header `{name}` holds characters an HTTP header cannot carry"
                ),
            );
            ok = false;
        }
    }
    if let Some(t) = &c.tenant {
        if t.is_empty() || HeaderValue::from_str(t).is_err() {
            s.error("tenant", "`tenant` must be a non-empty header value");
            ok = false;
        }
        if c.headers
            .keys()
            .any(|h| h.eq_ignore_ascii_case("x-scope-orgid"))
        {
            s.error(
                "tenant",
                "set the tenant with `tenant` or with `headers`, not both",
            );
            ok = false;
        }
    }
    if !(1..=MAX_MAX_CONCURRENCY).contains(&c.max_concurrency) {
        s.error(
            "max_concurrency",
            format!("`max_concurrency` must be from 1 to {MAX_MAX_CONCURRENCY}"),
        );
        ok = false;
    }
    if c.blind_after == 0 {
        s.error("blind_after", "`blind_after` must be at least 1");
        ok = false;
    }
    ok.then_some(c)
}

fn read_ca(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read `ca_file` {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| {
        format!(
            "`ca_file` {} holds no valid PEM certificate",
            path.display()
        )
    })?;
    if certs.is_empty() {
        return Err(format!(
            "`ca_file` {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_identity(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<reqwest::Identity, String> {
    let mut pem = std::fs::read(cert)
        .map_err(|e| format!("cannot read `cert_file` {}: {e}", cert.display()))?;
    let key_pem =
        std::fs::read(key).map_err(|e| format!("cannot read `key_file` {}: {e}", key.display()))?;
    pem.push(b'\n');
    pem.extend_from_slice(&key_pem);
    reqwest::Identity::from_pem(&pem).map_err(|_| {
        format!(
            "`cert_file` {} and `key_file` {} are not a PEM certificate and its private key",
            cert.display(),
            key.display()
        )
    })
}

impl RemoteConfig {
    /// The secrets it holds.
    pub fn secrets(&self) -> Vec<&Secret> {
        self.bearer_token.iter().chain(&self.password).collect()
    }
}

/// How a kind builds its client from its checked keys.
pub type BuildRemote = fn(reqwest::Client, &RemoteConfig) -> Result<Arc<dyn RangeSource>, String>;

/// A checked `[sources.NAME]` of an HTTP query source, with how its kind
/// builds the client.
#[derive(Debug, Clone)]
struct RemoteSection {
    config: RemoteConfig,
    build: BuildRemote,
}

impl SourceConfig for RemoteSection {
    fn secrets(&self) -> Vec<&Secret> {
        self.config.secrets()
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn RangeSource>, String> {
        (self.build)(cx.http.clone(), &self.config)
    }

    fn blind_after(&self) -> u32 {
        self.config.blind_after
    }
}

/// Reads a `[sources.NAME]` of the HTTP query source kind `what`
/// ([`parse_remote`]), built by `build`.
pub fn section(
    s: &mut Section<'_, '_>,
    what: &str,
    build: BuildRemote,
) -> Option<Box<dyn SourceConfig>> {
    parse_remote(s, what).map(|config| Box::new(RemoteSection { config, build }) as _)
}

/// Logs the `warnings` of an answer (at warn, with the query).
pub fn log_warnings(source: &str, warnings: &[String], params: &[(&'static str, String)]) {
    if !warnings.is_empty() {
        let query = params.first().map(|(_, q)| q.as_str()).unwrap_or_default();
        tracing::warn!(source, query, warnings = ?warnings, "the query answered with warnings");
    }
}

/// An answer: HTTP status and body.
pub type Answer = (u16, Arc<Vec<u8>>);

type Pending = Shared<BoxFuture<'static, Result<Answer, SourceError>>>;

/// A client of one HTTP query source: the pooled client (or one of its own
/// when the source has TLS settings), the headers every request carries,
/// the bound on requests in flight, and the requests in flight by content.
pub struct RemoteClient {
    /// The kind's name, for errors.
    source_name: &'static str,
    http: reqwest::Client,
    base: Url,
    timeout: Duration,
    headers: HeaderMap,
    permits: Arc<Semaphore>,
    in_flight: Arc<Mutex<HashMap<RequestKey, Pending>>>,
}

/// What makes two requests identical.
#[derive(Clone, PartialEq, Eq, Hash)]
struct RequestKey {
    path: String,
    params: Vec<(&'static str, String)>,
}

impl RemoteClient {
    /// Builds the client of `cfg` on `http` (a client of its own when
    /// `cfg` has a CA or a client certificate). The error says what is
    /// wrong without quoting a secret.
    pub fn new(
        source_name: &'static str,
        http: reqwest::Client,
        cfg: &RemoteConfig,
    ) -> Result<Self, String> {
        let base = crate::section::http_url(cfg.url.trim())
            .map_err(|e| format!("{source_name}: invalid url: {e}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        for (name, value) in &cfg.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{source_name}: invalid header name {name:?}"))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| format!("{source_name}: invalid value of header {name}"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        if let Some(t) = &cfg.tenant {
            let value =
                HeaderValue::from_str(t).map_err(|_| format!("{source_name}: invalid `tenant`"))?;
            headers.insert("x-scope-orgid", value);
        }
        let token = match (&cfg.bearer_token, &cfg.bearer_token_file) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{source_name}: set either bearer_token or bearer_token_file, not both"
                ))
            }
            (Some(t), None) => Some(t.clone()),
            (None, Some(path)) => Some(Secret::from_file(path).map_err(|e| {
                format!(
                    "{source_name}: cannot read bearer_token_file {}: {e}",
                    path.display()
                )
            })?),
            (None, None) => None,
        };
        let password = match (&cfg.password, &cfg.password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(path)) => Some(Secret::from_file(path).map_err(|e| {
                format!(
                    "{source_name}: cannot read password_file {}: {e}",
                    path.display()
                )
            })?),
            (None, None) => None,
        };
        let authorization = match (token, &cfg.username) {
            (Some(t), _) => Some(format!("Bearer {}", t.expose().trim())),
            (None, Some(user)) => {
                use base64::Engine as _;
                let pass = password
                    .as_ref()
                    .map_or("", |p| p.expose().trim_end_matches(['\r', '\n']));
                let raw = format!("{user}:{pass}");
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                ))
            }
            (None, None) => None,
        };
        if let Some(a) = authorization {
            let mut v = HeaderValue::from_str(&a).map_err(|_| {
                format!(
                    "{source_name}: the credentials hold characters an HTTP header cannot carry"
                )
            })?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let http = if cfg.ca_file.is_some() || cfg.cert_file.is_some() {
            let mut b = crate::transport::client_builder(reqwest::redirect::Policy::limited(10));
            if let Some(ca) = &cfg.ca_file {
                for cert in read_ca(ca).map_err(|e| format!("{source_name}: {e}"))? {
                    b = b.add_root_certificate(cert);
                }
            }
            if let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) {
                b = b
                    .identity(read_identity(cert, key).map_err(|e| format!("{source_name}: {e}"))?);
            }
            b.build()
                .map_err(|_| format!("{source_name}: cannot build a TLS client from its files"))?
        } else {
            http
        };
        Ok(Self {
            source_name,
            http,
            base,
            timeout: cfg.timeout,
            headers,
            permits: Arc::new(Semaphore::new(cfg.max_concurrency.max(1))),
            in_flight: Arc::default(),
        })
    }

    /// `{base}/{segments...}`, keeping any path prefix of the base URL.
    pub fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut s) = url.path_segments_mut() {
            s.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends `params` to `url` (GET, or a POST form when long) and reads
    /// the answer; an identical request already in flight is not sent
    /// again: its answer is shared.
    pub async fn send(
        &self,
        url: Url,
        params: Vec<(&'static str, String)>,
    ) -> Result<Answer, SourceError> {
        let key = RequestKey {
            path: url.as_str().to_string(),
            params,
        };
        let (pending, mine) = {
            let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(&key) {
                Some(p) => (p.clone(), false),
                None => {
                    let p = self.request(url, key.params.clone()).boxed().shared();
                    map.insert(key.clone(), p.clone());
                    (p, true)
                }
            }
        };
        let _cleanup = mine.then(|| Forget {
            map: self.in_flight.clone(),
            key,
        });
        pending.await
    }

    /// One request, under the source's concurrency bound.
    fn request(
        &self,
        url: Url,
        params: Vec<(&'static str, String)>,
    ) -> impl std::future::Future<Output = Result<Answer, SourceError>> + Send + 'static {
        let http = self.http.clone();
        let headers = self.headers.clone();
        let timeout = self.timeout;
        let permits = self.permits.clone();
        let source_name = self.source_name;
        async move {
            let _permit = permits.acquire_owned().await.ok();
            let encoded_len: usize = params.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
            let request = if encoded_len > POST_ABOVE {
                http.post(url).form(&params)
            } else {
                http.get(url).query(&params)
            };
            let unreachable = |e: reqwest::Error| SourceError::Unreachable {
                source_name,
                detail: crate::transport::describe_transport_error(&e, timeout),
            };
            let mut response = request
                .headers(headers)
                .timeout(timeout)
                .send()
                .await
                .map_err(unreachable)?;
            let status = response.status().as_u16();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(SourceError::Decode {
                        source_name,
                        detail: format!("answer larger than {MAX_RESPONSE_BYTES} bytes"),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok((status, Arc::new(body)))
        }
    }

    /// Requests in flight now (distinct ones).
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// Takes a finished (or abandoned) request out of the in-flight map.
struct Forget {
    map: Arc<Mutex<HashMap<RequestKey, Pending>>>,
    key: RequestKey,
}

impl Drop for Forget {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&self.key);
        }
    }
}

/// The start of a plain-text body, on one line; the reason phrase if empty.
pub fn body_excerpt(status: u16, body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(body);
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.is_empty() {
        return reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("no body")
            .to_string();
    }
    match flat.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}
