//! Prometheus HTTP API client: range queries (the [`RangeSource`] the rule
//! engine reads) and instant queries, and the decoding of the API's answers.
//!
//! Requests are `GET {url}/api/v1/query_range?query&start&end&step` and
//! `GET {url}/api/v1/query?query[&time]`, times as unix seconds with
//! millisecond precision, the step as seconds; `url` may carry a path prefix
//! (`http://host/prom`). Every request has the configured timeout.
//!
//! Answers are read per the API's envelope: sample values are strings
//! (`"NaN"`, `"+Inf"`, `"-Inf"` included), timestamps float seconds. JSON
//! error envelopes (`errorType`/`error`, sent with 400, 422, 503 and 500)
//! become [`SourceError::Query`]; any other non-2xx answer, e.g. the plain
//! `Service Unavailable` of a starting server or a proxy's 502 page, becomes
//! [`SourceError::Http`]. Errors never carry the URL or the bearer token.

use super::{
    BuildContext, RangeQuery, RangeSource, Reads, SeriesSet, SourceConfig, SourceError, SourceKind,
};
use crate::engine::Sample;
use crate::model::Millis;
use crate::section::{at_most, deserialize_duration, Secret, Section, MAX_REQUEST_TIMEOUT};
use async_trait::async_trait;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::Url;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const SOURCE: &str = "prometheus";

/// `source: prometheus`, configured by `[sources.prometheus]`.
pub const KIND: SourceKind = SourceKind {
    name: SOURCE,
    reads: Reads::Query,
    section: Some(parse),
};

/// Prometheus refuses more than 11,000 points per series in one query.
pub const MAX_POINTS_PER_QUERY: i64 = 11_000;

/// Default timeout of one query.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

/// `[sources.prometheus]`: the server's URL (a path prefix allowed), the
/// per-query timeout, and an optional bearer token (inline or from a file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    pub url: String,
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    /// Optional `Authorization: Bearer` for a proxy or hosted Prometheus.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
}

fn parse(s: &mut Section<'_, '_>) -> Option<Box<dyn SourceConfig>> {
    let mut c: PrometheusConfig = s.deserialize()?;
    let url = s.http_url("url", &c.url, "prometheus");
    s.positive("timeout", c.timeout);
    let bounded = at_most("timeout", c.timeout, MAX_REQUEST_TIMEOUT);
    if let Err(e) = &bounded {
        s.error("timeout", e.clone());
    }
    let had_token = c.bearer_token.is_some() || c.bearer_token_file.is_some();
    // Read now; from here on `bearer_token` holds the secret whichever way
    // it was given.
    let token = s.optional_secret(
        c.bearer_token.as_ref(),
        c.bearer_token_file.as_ref(),
        "bearer_token",
    );
    if had_token && token.is_none() {
        return None;
    }
    c.bearer_token = token;
    c.bearer_token_file = None;
    (url.is_some() && !c.timeout.is_zero() && bounded.is_ok())
        .then(|| Box::new(c) as Box<dyn SourceConfig>)
}

impl SourceConfig for PrometheusConfig {
    fn secrets(&self) -> Vec<&Secret> {
        self.bearer_token.iter().collect()
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn RangeSource>, String> {
        Ok(Arc::new(PrometheusSource::new(cx.http.clone(), self)?))
    }
}

/// Escapes a value for the inside of a double-quoted PromQL string.
pub fn promql_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Largest answer read; a bigger one is a decode error, not an OOM.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// A Prometheus server (or anything speaking its query API).
pub struct PrometheusSource {
    http: reqwest::Client,
    query_url: Url,
    query_range_url: Url,
    timeout: Duration,
    /// `Authorization: Bearer ...`, marked sensitive.
    authorization: Option<HeaderValue>,
}

impl PrometheusSource {
    /// Builds a client for `cfg`; the error names what is wrong (bad URL,
    /// unreadable token file) without echoing the URL or the token.
    pub fn new(http: reqwest::Client, cfg: &PrometheusConfig) -> Result<Self, String> {
        let base = parse_base_url(&cfg.url)?;
        let token = match (&cfg.bearer_token, &cfg.bearer_token_file) {
            (Some(_), Some(_)) => {
                return Err(
                    "prometheus: set either bearer_token or bearer_token_file, not both".into(),
                )
            }
            (Some(t), None) => Some(t.clone()),
            (None, Some(path)) => Some(Secret::from_file(path).map_err(|e| {
                format!(
                    "prometheus: cannot read bearer_token_file {}: {e}",
                    path.display()
                )
            })?),
            (None, None) => None,
        };
        let authorization = match token {
            None => None,
            Some(t) => {
                let mut v =
                    HeaderValue::from_str(&format!("Bearer {}", t.expose())).map_err(|_| {
                        "prometheus: the bearer token holds characters an HTTP header cannot carry"
                    })?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        Ok(Self {
            http,
            query_url: endpoint(&base, "query"),
            query_range_url: endpoint(&base, "query_range"),
            timeout: cfg.timeout,
            authorization,
        })
    }

    /// Evaluates `query` at one instant (`at`, default: the server's now).
    /// A vector gives one sample per series, a scalar one series keyed
    /// `scalar`, a range-vector selector its matrix.
    pub async fn query_instant(
        &self,
        query: &str,
        at: Option<Millis>,
    ) -> Result<SeriesSet, SourceError> {
        let mut params = vec![("query", query.to_string())];
        if let Some(at) = at {
            params.push(("time", unix_seconds(at)));
        }
        self.get(&self.query_url, &params).await
    }

    async fn get(&self, url: &Url, params: &[(&str, String)]) -> Result<SeriesSet, SourceError> {
        let mut request = self
            .http
            .get(url.clone())
            .query(params)
            .timeout(self.timeout)
            .header(ACCEPT, "application/json");
        if let Some(auth) = &self.authorization {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let unreachable = |e: reqwest::Error| SourceError::Unreachable {
            source_name: SOURCE,
            detail: crate::transport::describe_transport_error(&e, self.timeout),
        };
        let mut response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(SourceError::Decode {
                    source_name: SOURCE,
                    detail: format!("answer larger than {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        decode_response(status, &body)
    }
}

#[async_trait]
impl RangeSource for PrometheusSource {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn render(&self, template: &str, vars: &BTreeMap<String, String>) -> String {
        let quoted = vars
            .iter()
            .map(|(k, v)| (k.clone(), promql_escape(v)))
            .collect();
        super::template::render(template, &quoted)
    }

    fn max_points_per_query(&self) -> i64 {
        MAX_POINTS_PER_QUERY
    }

    async fn query_range(&self, q: &RangeQuery) -> Result<SeriesSet, SourceError> {
        let params = [
            ("query", q.query.clone()),
            ("start", unix_seconds(q.start)),
            ("end", unix_seconds(q.end)),
            ("step", unix_seconds(q.step)),
        ];
        self.get(&self.query_range_url, &params).await
    }
}

/// Checks the configured URL: absolute `http(s)` with a host.
fn parse_base_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("prometheus: invalid url: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "prometheus: url must be http:// or https://, not {}://",
            url.scheme()
        ));
    }
    if url.host_str().unwrap_or_default().is_empty() {
        return Err("prometheus: url has no host".into());
    }
    Ok(url)
}

/// `{base}/api/v1/{name}`, keeping any path prefix of `base`.
fn endpoint(base: &Url, name: &str) -> Url {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend(["api", "v1", name]);
    }
    url
}

/// Milliseconds as unix seconds with millisecond precision: `1435781430.781`,
/// `15`, `0.5`.
pub fn unix_seconds(ms: Millis) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    let (secs, frac) = (abs / 1000, abs % 1000);
    if frac == 0 {
        format!("{sign}{secs}")
    } else {
        let frac = format!("{frac:03}");
        format!("{sign}{secs}.{}", frac.trim_end_matches('0'))
    }
}

/// The API envelope of a successful (or partially successful) answer.
#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<QueryData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

/// The envelope of an error answer, whatever `data` holds.
#[derive(Deserialize)]
struct ErrorEnvelope {
    status: String,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum QueryData {
    Matrix(Vec<MatrixSeries>),
    Vector(Vec<VectorSample>),
    Scalar(Point),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct MatrixSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// Absent for a series of native histograms only.
    #[serde(default)]
    values: Vec<Point>,
}

#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<Point>,
}

/// `[<unix seconds>, "<value>"]`.
type Point = (f64, String);

/// Decodes one HTTP answer of the query API into series.
pub(crate) fn decode_response(status: u16, body: &[u8]) -> Result<SeriesSet, SourceError> {
    let success = (200..300).contains(&status);
    if !success {
        return Err(match serde_json::from_slice::<ErrorEnvelope>(body) {
            Ok(env) if env.status == "error" => query_error(env.error_type, env.error),
            _ => SourceError::Http {
                source_name: SOURCE,
                status,
                detail: body_excerpt(status, body),
            },
        });
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let env: Envelope = serde_path_to_error::deserialize(&mut de).map_err(|e| decode_error(&e))?;
    if env.status != "success" {
        return Err(if env.status == "error" {
            query_error(env.error_type, env.error)
        } else {
            decode_error(format!("unknown status {:?}", env.status))
        });
    }
    if !env.warnings.is_empty() {
        tracing::debug!(warnings = ?env.warnings, "prometheus answered with warnings");
    }
    match env.data {
        None => Err(decode_error("a success without data")),
        Some(data) => series_of(data),
    }
}

fn series_of(data: QueryData) -> Result<SeriesSet, SourceError> {
    match data {
        QueryData::Matrix(series) => series
            .into_iter()
            .filter(|s| !s.values.is_empty())
            .map(|s| {
                let key = series_key(&s.metric);
                let samples = s
                    .values
                    .iter()
                    .map(|p| sample(p, &key))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((key, samples))
            })
            .collect(),
        QueryData::Vector(samples) => samples
            .into_iter()
            .filter_map(|s| s.value.map(|p| (series_key(&s.metric), p)))
            .map(|(key, p)| Ok((key.clone(), vec![sample(&p, &key)?])))
            .collect(),
        QueryData::Scalar(p) => Ok(vec![("scalar".to_string(), vec![sample(&p, "scalar")?])]),
        QueryData::String(_) => Err(decode_error("a string result, not a number")),
    }
}

fn sample((ts, value): &Point, key: &str) -> Result<Sample, SourceError> {
    let v = parse_value(value)
        .ok_or_else(|| decode_error(format!("series {key}: invalid sample value {value:?}")))?;
    if !ts.is_finite() {
        return Err(decode_error(format!("series {key}: invalid timestamp")));
    }
    Ok(Sample::ok((ts * 1000.0).round() as Millis, v))
}

/// A sample value string: a Go float, or exactly `NaN`, `+Inf`, `-Inf`.
pub fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse::<f64>().ok(),
    }
}

/// A stable key for a label set: `{a="b",c="d"}` sorted by name, `{}` for none.
/// Values are escaped as in PromQL (`\\`, `\"`, `\n`).
pub fn series_key(labels: &BTreeMap<String, String>) -> String {
    let mut key = String::from("{");
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            key.push(',');
        }
        key.push_str(name);
        key.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => key.push_str("\\\\"),
                '"' => key.push_str("\\\""),
                '\n' => key.push_str("\\n"),
                c => key.push(c),
            }
        }
        key.push('"');
    }
    key.push('}');
    key
}

fn query_error(error_type: Option<String>, error: Option<String>) -> SourceError {
    SourceError::Query {
        source_name: SOURCE,
        error_type: error_type.unwrap_or_else(|| "unknown".into()),
        detail: error.unwrap_or_default(),
    }
}

fn decode_error(detail: impl ToString) -> SourceError {
    SourceError::Decode {
        source_name: SOURCE,
        detail: detail.to_string(),
    }
}

/// The start of a plain-text body, on one line; the reason phrase if empty.
fn body_excerpt(status: u16, body: &[u8]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cannot_break_out_of_a_string_literal() {
        assert_eq!(promql_escape("v2"), "v2");
        assert_eq!(
            promql_escape(r#"v2"} or vector(0) #"#),
            r#"v2\"} or vector(0) #"#
        );
        assert_eq!(promql_escape(r"a\b"), r"a\\b");
    }

    #[test]
    fn seconds_keep_milliseconds() {
        assert_eq!(unix_seconds(1_435_781_430_781), "1435781430.781");
        assert_eq!(unix_seconds(1_435_781_430_000), "1435781430");
        assert_eq!(unix_seconds(15_000), "15");
        assert_eq!(unix_seconds(500), "0.5");
        assert_eq!(unix_seconds(10), "0.01");
        assert_eq!(unix_seconds(-1), "-0.001");
    }

    #[test]
    fn keys_are_sorted_and_escaped() {
        let mut l = BTreeMap::new();
        assert_eq!(series_key(&l), "{}");
        l.insert("job".to_string(), "a\"b".to_string());
        l.insert("__name__".to_string(), "up".to_string());
        assert_eq!(series_key(&l), r#"{__name__="up",job="a\"b"}"#);
    }

    #[test]
    fn special_values_parse() {
        assert!(parse_value("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_value("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_value("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_value("1e-07"), Some(1e-7));
        assert_eq!(parse_value("abc"), None);
    }

    #[test]
    fn scalar_and_vector_shapes() {
        let s = decode_response(
            200,
            br#"{"status":"success","data":{"resultType":"scalar","result":[0.010,"20"]}}"#,
        )
        .unwrap();
        assert_eq!(s, vec![("scalar".into(), vec![Sample::ok(10, 20.0)])]);
        let v = decode_response(
            200,
            br#"{"status":"success","data":{"result":[{"metric":{"__name__":"foo"},"value":[1,"1"]}],"resultType":"vector","stats":{"timings":{}}}}"#,
        )
        .unwrap();
        assert_eq!(
            v,
            vec![(r#"{__name__="foo"}"#.into(), vec![Sample::ok(1000, 1.0)])]
        );
    }

    #[test]
    fn base_url_keeps_its_prefix() {
        let base = parse_base_url("http://host:9090/prom/").unwrap();
        assert_eq!(
            endpoint(&base, "query_range").as_str(),
            "http://host:9090/prom/api/v1/query_range"
        );
        let base = parse_base_url("http://host:9090").unwrap();
        assert_eq!(
            endpoint(&base, "query").as_str(),
            "http://host:9090/api/v1/query"
        );
        assert!(parse_base_url("ftp://host").is_err());
        assert!(parse_base_url("not a url").is_err());
    }

    #[test]
    fn string_results_and_garbage_are_decode_errors() {
        let e = decode_response(
            200,
            br#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#,
        );
        assert!(matches!(e, Err(SourceError::Decode { .. })));
        let e = decode_response(200, b"<html>");
        assert!(matches!(e, Err(SourceError::Decode { .. })));
    }
}
