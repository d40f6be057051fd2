//! Prometheus HTTP API client: range queries (the [`RangeSource`] the rule
//! engine reads) and instant queries, and the decoding of the API's answers.
//!
//! Requests are `{url}/api/v1/query_range?query&start&end&step` and
//! `{url}/api/v1/query?query[&time]`, times as unix seconds with
//! millisecond precision, the step as seconds; `url` may carry a path prefix
//! (`http://host/prom`). A long query goes as a POST form. Authentication,
//! TLS, extra headers, timeouts, the concurrency bound and the coalescing of
//! identical requests are the shared client's ([`super::http`]).
//!
//! Answers are read per the API's envelope: sample values are strings
//! (`"NaN"`, `"+Inf"`, `"-Inf"` included), timestamps float seconds;
//! `warnings` are logged (target `release_guardian::sources`, level warn)
//! with the query. JSON error envelopes (`errorType`/`error`, sent with 400,
//! 422, 503 and 500) become [`SourceError::Query`]; any other non-2xx
//! answer, e.g. the plain `Service Unavailable` of a starting server, a 401
//! of its basic auth or a proxy's 502 page, becomes [`SourceError::Http`].
//! Errors never carry the URL or a credential.

use super::http::{body_excerpt, log_warnings, RemoteClient, RemoteConfig};
use super::{RangeQuery, RangeSource, Reads, SeriesSet, SourceConfig, SourceError, SourceKind};
use crate::engine::Sample;
use crate::model::Millis;
use crate::section::Section;
use async_trait::async_trait;
use reqwest::Url;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

const SOURCE: &str = "prometheus";

/// `source: prometheus`, configured by `[sources.prometheus]` (or any
/// `[sources.NAME]` with `kind = "prometheus"`).
pub const KIND: SourceKind = SourceKind {
    name: SOURCE,
    reads: Reads::Query,
    section: Some(parse),
};

/// Prometheus refuses more than 11,000 points per series in one query.
pub const MAX_POINTS_PER_QUERY: i64 = 11_000;

pub use super::http::DEFAULT_TIMEOUT;

/// `[sources.prometheus]`: the shared keys of HTTP query sources.
pub type PrometheusConfig = RemoteConfig;

fn parse(s: &mut Section<'_, '_>) -> Option<Box<dyn SourceConfig>> {
    super::http::section(s, SOURCE, |http, c| {
        Ok(Arc::new(PrometheusSource::new(http, c)?))
    })
}

/// `template` with each `{{variable}}` replaced by its value escaped for
/// the inside of a double-quoted string (PromQL's and LogQL's).
pub fn render_quoted(template: &str, vars: &BTreeMap<String, String>) -> String {
    let quoted = vars
        .iter()
        .map(|(k, v)| (k.clone(), promql_escape(v)))
        .collect();
    super::template::render(template, &quoted)
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

/// A Prometheus server (or anything speaking its query API: Thanos,
/// Mimir, Cortex, VictoriaMetrics).
pub struct PrometheusSource {
    client: RemoteClient,
    query_url: Url,
    query_range_url: Url,
}

impl PrometheusSource {
    /// Builds a client for `cfg`; the error names what is wrong (bad URL,
    /// unreadable token file) without echoing the URL or a secret.
    pub fn new(http: reqwest::Client, cfg: &PrometheusConfig) -> Result<Self, String> {
        let client = RemoteClient::new(SOURCE, http, cfg)?;
        Ok(Self {
            query_url: client.endpoint(&["api", "v1", "query"]),
            query_range_url: client.endpoint(&["api", "v1", "query_range"]),
            client,
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
        self.get(&self.query_url, params).await
    }

    async fn get(
        &self,
        url: &Url,
        params: Vec<(&'static str, String)>,
    ) -> Result<SeriesSet, SourceError> {
        let (status, body) = self.client.send(url.clone(), params.clone()).await?;
        let (series, warnings) = decode_response(SOURCE, status, &body)?;
        log_warnings(SOURCE, &warnings, &params);
        Ok(series)
    }

    /// Distinct requests in flight now (identical ones share one).
    pub fn in_flight(&self) -> usize {
        self.client.in_flight()
    }
}

#[async_trait]
impl RangeSource for PrometheusSource {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn render(&self, template: &str, vars: &BTreeMap<String, String>) -> String {
        render_quoted(template, vars)
    }

    fn max_points_per_query(&self) -> i64 {
        MAX_POINTS_PER_QUERY
    }

    async fn query_range(&self, q: &RangeQuery) -> Result<SeriesSet, SourceError> {
        let params = vec![
            ("query", q.query.clone()),
            ("start", unix_seconds(q.start)),
            ("end", unix_seconds(q.end)),
            ("step", unix_seconds(q.step)),
        ];
        self.get(&self.query_range_url, params).await
    }
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

/// Decodes one HTTP answer of the query API into series, with the
/// answer's warnings.
/// `source_name` names the source in errors (Loki's metric answers have
/// the same shapes).
pub fn decode_response(
    source_name: &'static str,
    status: u16,
    body: &[u8],
) -> Result<(SeriesSet, Vec<String>), SourceError> {
    let decode_error = |d: String| decode_error_of(source_name, d);
    let success = (200..300).contains(&status);
    if !success {
        return Err(match serde_json::from_slice::<ErrorEnvelope>(body) {
            Ok(env) if env.status == "error" => query_error(source_name, env.error_type, env.error),
            _ => SourceError::Http {
                source_name,
                status,
                detail: body_excerpt(status, body),
            },
        });
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let env: Envelope =
        serde_path_to_error::deserialize(&mut de).map_err(|e| decode_error(e.to_string()))?;
    if env.status != "success" {
        return Err(if env.status == "error" {
            query_error(source_name, env.error_type, env.error)
        } else {
            decode_error(format!("unknown status {:?}", env.status))
        });
    }
    match env.data {
        None => Err(decode_error("a success without data".into())),
        Some(data) => Ok((series_of(source_name, data)?, env.warnings)),
    }
}

fn series_of(source_name: &'static str, data: QueryData) -> Result<SeriesSet, SourceError> {
    let sample = |p: &Point, key: &str| sample(source_name, p, key);
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
        QueryData::String(_) => Err(decode_error_of(
            source_name,
            "a string result, not a number",
        )),
    }
}

fn sample(
    source_name: &'static str,
    (ts, value): &Point,
    key: &str,
) -> Result<Sample, SourceError> {
    let decode_error = |d: String| decode_error_of(source_name, d);
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

fn query_error(
    source_name: &'static str,
    error_type: Option<String>,
    error: Option<String>,
) -> SourceError {
    SourceError::Query {
        source_name,
        error_type: error_type.unwrap_or_else(|| "unknown".into()),
        detail: error.unwrap_or_default(),
    }
}

fn decode_error_of(source_name: &'static str, detail: impl ToString) -> SourceError {
    SourceError::Decode {
        source_name,
        detail: detail.to_string(),
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
            SOURCE,
            200,
            br#"{"status":"success","data":{"resultType":"scalar","result":[0.010,"20"]}}"#,
        )
        .unwrap()
        .0;
        assert_eq!(s, vec![("scalar".into(), vec![Sample::ok(10, 20.0)])]);
        let v = decode_response(
            SOURCE,
            200,
            br#"{"status":"success","data":{"result":[{"metric":{"__name__":"foo"},"value":[1,"1"]}],"resultType":"vector","stats":{"timings":{}}}}"#,
        )
        .unwrap()
        .0;
        assert_eq!(
            v,
            vec![(r#"{__name__="foo"}"#.into(), vec![Sample::ok(1000, 1.0)])]
        );
    }

    #[test]
    fn string_results_and_garbage_are_decode_errors() {
        let e = decode_response(
            SOURCE,
            200,
            br#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#,
        );
        assert!(matches!(e, Err(SourceError::Decode { .. })));
        let e = decode_response(SOURCE, 200, b"<html>");
        assert!(matches!(e, Err(SourceError::Decode { .. })));
    }
}
