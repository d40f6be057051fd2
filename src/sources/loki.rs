//! Grafana Loki HTTP API client: LogQL metric queries over a range (the
//! [`RangeSource`] the rule engine reads, judged exactly like Prometheus
//! range checks), instant metric queries, and log queries whose lines are
//! kept as a check's evidence ([`RangeSource::query_logs`]).
//!
//! Requests are `{url}/loki/api/v1/query_range?query&start&end&step` for
//! metric queries, `...&limit&direction` for log queries, and
//! `{url}/loki/api/v1/query?query[&time]`; times are sent as integer
//! nanoseconds (19 digits, the unambiguous form), the step as seconds. The
//! tenant (`tenant`) goes in `X-Scope-OrgID`; authentication, TLS, headers,
//! timeouts, the concurrency bound and coalescing are the shared client's
//! ([`super::http`]).
//!
//! Answers: a metric query gives a `matrix` (instant: `vector`) with the
//! Prometheus shapes (float seconds, string values); a log query gives
//! `streams` whose entries are `[<ns as a string>, <line>]` or, with
//! categorized labels, `[<ns>, <line>, {...}]`. Errors are plain text:
//! 400 (a LogQL or parameter error) becomes [`SourceError::Query`], 401
//! (`no org id`: the server wants a tenant) and any other non-2xx answer
//! [`SourceError::Http`] with the start of the body.

use super::http::{body_excerpt, log_warnings, RemoteClient, RemoteConfig};
use super::prometheus::{decode_response, render_quoted, series_key};
use super::{
    Direction, LogLine, LogQuery, RangeQuery, RangeSource, Reads, SeriesSet, SourceConfig,
    SourceError, SourceKind,
};
use crate::model::{Millis, MAX_LOG_LINE_BYTES};
use crate::section::Section;
use async_trait::async_trait;
use reqwest::Url;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

const SOURCE: &str = "loki";

/// `source: loki`, configured by `[sources.loki]` (or any `[sources.NAME]`
/// with `kind = "loki"`).
pub const KIND: SourceKind = SourceKind {
    name: SOURCE,
    reads: Reads::Query,
    section: Some(parse),
};

/// Loki refuses more than 11,000 points per series in one query, as
/// Prometheus does.
pub const MAX_POINTS_PER_QUERY: i64 = 11_000;

/// Most log lines a check keeps as evidence (`logs.limit`).
pub const MAX_LOG_LINES: u32 = 100;

/// `[sources.loki]`: the shared keys of HTTP query sources (`tenant` is
/// sent as `X-Scope-OrgID`).
pub type LokiConfig = RemoteConfig;

fn parse(s: &mut Section<'_, '_>) -> Option<Box<dyn SourceConfig>> {
    super::http::section(s, SOURCE, |http, c| Ok(Arc::new(LokiSource::new(http, c)?)))
}

/// A Loki server (or a gateway in front of it).
pub struct LokiSource {
    client: RemoteClient,
    query_url: Url,
    query_range_url: Url,
}

/// Milliseconds as integer nanoseconds.
pub fn unix_nanos(ms: Millis) -> String {
    format!("{}", i128::from(ms) * 1_000_000)
}

impl LokiSource {
    /// Builds a client for `cfg`; the error names what is wrong without
    /// echoing the URL or a secret.
    pub fn new(http: reqwest::Client, cfg: &LokiConfig) -> Result<Self, String> {
        let client = RemoteClient::new(SOURCE, http, cfg)?;
        Ok(Self {
            query_url: client.endpoint(&["loki", "api", "v1", "query"]),
            query_range_url: client.endpoint(&["loki", "api", "v1", "query_range"]),
            client,
        })
    }

    /// Evaluates a LogQL metric query at one instant (`at`, default: the
    /// server's now): one sample per series of the vector.
    pub async fn query_instant(
        &self,
        query: &str,
        at: Option<Millis>,
    ) -> Result<SeriesSet, SourceError> {
        let mut params = vec![("query", query.to_string())];
        if let Some(at) = at {
            params.push(("time", unix_nanos(at)));
        }
        self.metric(&self.query_url, params).await
    }

    async fn metric(
        &self,
        url: &Url,
        params: Vec<(&'static str, String)>,
    ) -> Result<SeriesSet, SourceError> {
        let (status, body) = self.client.send(url.clone(), params.clone()).await?;
        let body = success(status, &body)?;
        let (series, warnings) = decode_response(SOURCE, status, body).map_err(|e| match e {
            SourceError::Decode { detail, .. } if detail.contains("streams") => {
                SourceError::Decode {
                    source_name: SOURCE,
                    detail: "a log query answered streams where a metric query is expected; wrap it in count_over_time(...[5m]) or rate(...[5m])".into(),
                }
            }
            e => e,
        })?;
        log_warnings(SOURCE, &warnings, &params);
        Ok(series)
    }

    /// Distinct requests in flight now (identical ones share one).
    pub fn in_flight(&self) -> usize {
        self.client.in_flight()
    }
}

/// The body of a 2xx answer; a plain-text error otherwise.
fn success(status: u16, body: &[u8]) -> Result<&[u8], SourceError> {
    match status {
        200..=299 => Ok(body),
        400 => Err(SourceError::Query {
            source_name: SOURCE,
            error_type: "bad request".into(),
            detail: body_excerpt(status, body),
        }),
        401 => {
            let text = body_excerpt(status, body);
            let hint = if text == "no org id" {
                " (the server wants a tenant: set `tenant`)"
            } else {
                ""
            };
            Err(SourceError::Http {
                source_name: SOURCE,
                status,
                detail: format!("{text}{hint}"),
            })
        }
        _ => Err(SourceError::Http {
            source_name: SOURCE,
            status,
            detail: body_excerpt(status, body),
        }),
    }
}

#[async_trait]
impl RangeSource for LokiSource {
    fn name(&self) -> &'static str {
        SOURCE
    }

    /// LogQL strings quote as PromQL's (Go string literals).
    fn render(&self, template: &str, vars: &BTreeMap<String, String>) -> String {
        render_quoted(template, vars)
    }

    fn max_points_per_query(&self) -> i64 {
        MAX_POINTS_PER_QUERY
    }

    async fn query_range(&self, q: &RangeQuery) -> Result<SeriesSet, SourceError> {
        let params = vec![
            ("query", q.query.clone()),
            ("start", unix_nanos(q.start)),
            ("end", unix_nanos(q.end)),
            ("step", super::prometheus::unix_seconds(q.step)),
        ];
        self.metric(&self.query_range_url, params).await
    }

    async fn query_logs(&self, q: &LogQuery) -> Result<Vec<LogLine>, SourceError> {
        let params = vec![
            ("query", q.query.clone()),
            ("start", unix_nanos(q.start)),
            ("end", unix_nanos(q.end)),
            ("limit", q.limit.to_string()),
            ("direction", q.direction.as_str().to_string()),
        ];
        let (status, body) = self
            .client
            .send(self.query_range_url.clone(), params.clone())
            .await?;
        let body = success(status, &body)?;
        let (lines, warnings) = decode_streams(body, q.limit, q.direction)?;
        log_warnings(SOURCE, &warnings, &params);
        Ok(lines)
    }
}

#[derive(Deserialize)]
struct StreamsEnvelope {
    status: String,
    data: StreamsData,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct StreamsData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Stream {
    #[serde(default)]
    stream: BTreeMap<String, String>,
    /// `[ns, line]` or `[ns, line, {structuredMetadata, parsed}]`.
    values: Vec<Vec<serde_json::Value>>,
}

/// The lines of a `streams` answer, across streams, newest first
/// (`backward`) or oldest first (`forward`), at most `limit`, each cut at
/// [`MAX_LOG_LINE_BYTES`].
pub fn decode_streams(
    body: &[u8],
    limit: u32,
    direction: Direction,
) -> Result<(Vec<LogLine>, Vec<String>), SourceError> {
    let decode = |detail: String| SourceError::Decode {
        source_name: SOURCE,
        detail,
    };
    let env: StreamsEnvelope = serde_json::from_slice(body).map_err(|e| decode(e.to_string()))?;
    if env.status != "success" {
        return Err(decode(format!("status {:?}", env.status)));
    }
    if env.data.result_type != "streams" {
        return Err(decode(format!(
            "a `{}` answer where a log query's `streams` is expected (`logs` needs a log query such as {{app=\"x\"}} |= \"error\")",
            env.data.result_type
        )));
    }
    let streams: Vec<Stream> =
        serde_json::from_value(env.data.result).map_err(|e| decode(e.to_string()))?;
    let mut lines: Vec<(i128, LogLine)> = Vec::new();
    for s in streams {
        let key = series_key(&s.stream);
        for entry in s.values {
            let (Some(ts), Some(line)) = (
                entry.first().and_then(|v| v.as_str()),
                entry.get(1).and_then(|v| v.as_str()),
            ) else {
                return Err(decode(format!(
                    "stream {key}: an entry is not [\"<ns>\", \"<line>\"]"
                )));
            };
            let ns: i128 = ts.parse().map_err(|_| {
                decode(format!("stream {key}: timestamp {ts:?} is not nanoseconds"))
            })?;
            lines.push((
                ns,
                LogLine {
                    ts: ts.to_string(),
                    stream: key.clone(),
                    line: cut(line),
                },
            ));
        }
    }
    match direction {
        Direction::Backward => lines.sort_by_key(|l| std::cmp::Reverse(l.0)),
        Direction::Forward => lines.sort_by_key(|l| l.0),
    }
    lines.truncate(limit as usize);
    Ok((lines.into_iter().map(|(_, l)| l).collect(), env.warnings))
}

/// A line cut at [`MAX_LOG_LINE_BYTES`] (on a character boundary).
fn cut(line: &str) -> String {
    if line.len() <= MAX_LOG_LINE_BYTES {
        return line.to_string();
    }
    let mut end = MAX_LOG_LINE_BYTES;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanoseconds_are_nineteen_digits() {
        assert_eq!(unix_nanos(1_569_266_400_000), "1569266400000000000");
        assert_eq!(unix_nanos(0), "0");
    }

    #[test]
    fn streams_of_two_and_three_element_entries_merge_by_time() {
        let body = br#"{"status":"success","warnings":["w"],"data":{"resultType":"streams","encodingFlags":["categorize-labels"],"result":[
            {"stream":{"job":"a"},"values":[["1569266497240578000","foo"],["1569266492548155000","bar",{}]]},
            {"stream":{"job":"b"},"values":[["1569266495000000000","baz",{"structuredMetadata":{"x":"y"}}]]}],"stats":{}}}"#;
        let (lines, warnings) = decode_streams(body, 2, Direction::Backward).unwrap();
        assert_eq!(warnings, ["w"]);
        let got: Vec<_> = lines
            .iter()
            .map(|l| (l.line.as_str(), l.stream.as_str()))
            .collect();
        assert_eq!(got, [("foo", r#"{job="a"}"#), ("baz", r#"{job="b"}"#)]);
        assert_eq!(lines[0].ts, "1569266497240578000");
        let (lines, _) = decode_streams(body, 10, Direction::Forward).unwrap();
        assert_eq!(lines[0].line, "bar");
        assert!(decode_streams(
            br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
            1,
            Direction::Forward
        )
        .is_err());
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_LOG_LINE_BYTES);
        let c = cut(&long);
        assert!(c.len() <= MAX_LOG_LINE_BYTES + '…'.len_utf8());
        assert!(c.ends_with('…'));
    }

    #[test]
    fn plain_text_errors() {
        assert!(matches!(
            success(400, b"parse error at line 1, col 8: syntax error"),
            Err(SourceError::Query { detail, .. }) if detail.starts_with("parse error")
        ));
        assert!(matches!(
            success(401, b"no org id\n"),
            Err(SourceError::Http { status: 401, detail, .. }) if detail.contains("set `tenant`")
        ));
        assert!(matches!(
            success(504, b""),
            Err(SourceError::Http { status: 504, detail, .. }) if detail == "Gateway Timeout"
        ));
    }
}
