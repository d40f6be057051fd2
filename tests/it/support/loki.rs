//! A local stand-in for Grafana Loki's query API. **No real Loki installs
//! on these machines** (it is not in Debian bookworm nor in any package
//! registry reachable here; Debian's `loki` is an unrelated genetics tool),
//! so the Loki client is tested against this server, which serves the
//! documented parameters and shapes exactly (reference: Loki's
//! `docs/sources/reference/loki-http-api.md`, `pkg/loghttp/params.go`,
//! `pkg/util/marshal`, `pkg/util/server/error.go`):
//!
//! - `GET|POST /loki/api/v1/query_range`: a log query answers `streams`
//!   (`values` as `["<ns>", "<line>"]`, one object per label set, at most
//!   `limit` lines across streams, newest first for `backward`, oldest
//!   first for `forward`, `end` exclusive); a metric query answers a
//!   `matrix` (`[<float seconds>, "<value>"]`, no point where nothing
//!   matched — no zero fill).
//! - `GET|POST /loki/api/v1/query`: a metric query answers a `vector`; a log
//!   query is refused with 400, as Loki does.
//! - Errors are plain text (`text/plain; charset=utf-8`): 400 for a bad
//!   parameter or query, 401 `no org id` without `X-Scope-OrgID` when
//!   tenancy is on (Loki's default, `auth_enabled: true`), 500 with the
//!   raw error text while it is told to fail ([`Loki::set_failing`]).
//!
//! It validates what it receives the way Loki's parser does, more
//! strictly where the guardian's client promises a form: `start`/`end`
//! must be integer nanoseconds (19 digits), `end` ≥ `start`, `step` a
//! positive float of seconds or a duration, `limit` a positive integer,
//! `direction` `forward` or `backward` (any case).
//!
//! It evaluates the LogQL subset the tests use, over the lines pushed into
//! it with [`Loki::push`]: a selector of `label="value"` matchers with an
//! optional line filter (`{app="x"} |= "error"`), and
//! `count_over_time(<that>[<range>])`, optionally inside `sum(...)`.
//! Anything else is a 400 parse error.

use super::serve;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// One request as received.
#[derive(Debug, Clone)]
pub struct LokiRequest {
    pub method: Method,
    pub path: String,
    pub params: HashMap<String, String>,
    pub headers: HeaderMap,
}

#[derive(Default)]
struct Inner {
    /// (ns, labels, line)
    lines: Vec<(i128, BTreeMap<String, String>, String)>,
    requests: Vec<LokiRequest>,
}

struct Shared {
    /// `Some(tenant)`: requests need `X-Scope-OrgID: tenant`.
    tenant: Option<String>,
    /// Answer every query 500 (an outage), as set by [`Loki::set_failing`].
    failing: std::sync::atomic::AtomicBool,
    inner: Mutex<Inner>,
}

/// The stand-in server.
pub struct Loki {
    pub url: String,
    shared: Arc<Shared>,
}

impl Loki {
    /// Serves on a fresh loopback port; with `tenant`, every request needs
    /// `X-Scope-OrgID` (401 `no org id` without it; a request for another
    /// tenant sees no lines).
    pub async fn start(tenant: Option<&str>) -> Self {
        let shared = Arc::new(Shared {
            tenant: tenant.map(String::from),
            failing: Default::default(),
            inner: Mutex::default(),
        });
        let app = Router::new()
            .route("/loki/api/v1/query_range", get(handle).post(handle))
            .route("/loki/api/v1/query", get(handle).post(handle))
            .route("/ready", get(|| async { "ready\n" }))
            .with_state(shared.clone());
        let addr = serve(app).await;
        Self {
            url: format!("http://{addr}"),
            shared,
        }
    }

    /// Stores a log line at `ms` (milliseconds) with `labels`.
    pub fn push(&self, ms: i64, labels: &[(&str, &str)], line: &str) {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.shared.inner.lock().unwrap().lines.push((
            i128::from(ms) * 1_000_000,
            labels,
            line.to_string(),
        ));
    }

    /// While `failing`, every query is answered 500 with a plain-text
    /// body, as a Loki whose storage fails answers.
    pub fn set_failing(&self, failing: bool) {
        self.shared
            .failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<LokiRequest> {
        self.shared.inner.lock().unwrap().requests.clone()
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [("content-type", "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn json(body: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let query_string = if method == Method::POST {
        if headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|c| !c.starts_with("application/x-www-form-urlencoded"))
        {
            return text(StatusCode::BAD_REQUEST, "invalid content type");
        }
        String::from_utf8_lossy(&body).into_owned()
    } else {
        uri.query().unwrap_or_default().to_string()
    };
    let params: HashMap<String, String> = reqwest::Url::parse(&format!("http://x/?{query_string}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default();
    shared.inner.lock().unwrap().requests.push(LokiRequest {
        method: method.clone(),
        path: uri.path().to_string(),
        params: params.clone(),
        headers: headers.clone(),
    });
    if shared.failing.load(std::sync::atomic::Ordering::SeqCst) {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "rpc error: code = Unavailable desc = connection error",
        );
    }
    if let Some(tenant) = &shared.tenant {
        match headers.get("x-scope-orgid").and_then(|v| v.to_str().ok()) {
            None => return text(StatusCode::UNAUTHORIZED, "no org id\n"),
            Some(t) if t != tenant => return json(empty_result(&params, uri.path())),
            Some(_) => {}
        }
    }
    match answer(&shared, uri.path(), &params) {
        Ok(v) => json(v),
        Err(e) => text(StatusCode::BAD_REQUEST, e),
    }
}

fn empty_result(params: &HashMap<String, String>, path: &str) -> serde_json::Value {
    let kind = match parse_query(params.get("query").map_or("", String::as_str)) {
        Ok(Query::Log(_)) => "streams",
        _ if path.ends_with("/query") => "vector",
        _ => "matrix",
    };
    serde_json::json!({"status":"success","data":{"resultType":kind,"result":[],"stats":{}}})
}

/// A selector with an optional `|=` line filter.
#[derive(Debug, Clone)]
struct Selector {
    matchers: Vec<(String, String)>,
    contains: Option<String>,
}

enum Query {
    Log(Selector),
    /// count_over_time(selector[range_ns]), summed or not.
    Count {
        selector: Selector,
        range_ns: i128,
        sum: bool,
    },
}

const PARSE_ERROR: &str = "parse error at line 1, col 1: syntax error: unexpected IDENTIFIER";

fn parse_selector(s: &str) -> Result<Selector, String> {
    let s = s.trim();
    let inner_end = s.find('}').ok_or(PARSE_ERROR)?;
    let inner = s.strip_prefix('{').ok_or(PARSE_ERROR)?;
    let inner = &inner[..inner_end - 1];
    let mut matchers = Vec::new();
    for m in inner.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let (k, v) = m.split_once('=').ok_or(PARSE_ERROR)?;
        let v = v
            .trim()
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or(PARSE_ERROR)?;
        matchers.push((k.trim().to_string(), v.replace("\\\"", "\"")));
    }
    if matchers.is_empty() {
        return Err("queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will".into());
    }
    let rest = s[inner_end + 1..].trim();
    let contains = if rest.is_empty() {
        None
    } else {
        let f = rest
            .strip_prefix("|=")
            .map(str::trim)
            .and_then(|f| f.strip_prefix('"'))
            .and_then(|f| f.strip_suffix('"'))
            .ok_or(PARSE_ERROR)?;
        Some(f.to_string())
    };
    Ok(Selector { matchers, contains })
}

fn parse_query(q: &str) -> Result<Query, String> {
    let q = q.trim();
    let (sum, q) = match q.strip_prefix("sum(").and_then(|r| r.strip_suffix(')')) {
        Some(inner) => (true, inner.trim()),
        None => (false, q),
    };
    if let Some(inner) = q
        .strip_prefix("count_over_time(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let (sel, range) = inner.rsplit_once('[').ok_or(PARSE_ERROR)?;
        let range = range.strip_suffix(']').ok_or(PARSE_ERROR)?;
        let range_ns = parse_duration_ns(range).ok_or(PARSE_ERROR)?;
        return Ok(Query::Count {
            selector: parse_selector(sel)?,
            range_ns,
            sum,
        });
    }
    if sum {
        return Err(PARSE_ERROR.into());
    }
    Ok(Query::Log(parse_selector(q)?))
}

/// `5m`, `30s`, `1h`, `500ms`.
fn parse_duration_ns(s: &str) -> Option<i128> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i128 = n.parse().ok()?;
    let per = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    };
    Some(n * per)
}

/// A step: float seconds (`15`, `0.5`) or a duration (`15s`).
fn parse_step_ns(s: &str) -> Option<i128> {
    if let Ok(f) = s.parse::<f64>() {
        return (f > 0.0).then_some((f * 1e9).round() as i128);
    }
    parse_duration_ns(s).filter(|n| *n > 0)
}

/// A timestamp parameter as the guardian promises to send it: 19 digits.
fn parse_ns(params: &HashMap<String, String>, key: &str) -> Result<i128, String> {
    let raw = params
        .get(key)
        .ok_or_else(|| format!("missing parameter {key:?} (this test server wants it)"))?;
    if raw.len() != 19 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid parameter {key:?}: {raw:?} is not integer nanoseconds (19 digits)"
        ));
    }
    Ok(raw.parse().unwrap())
}

impl Selector {
    fn matches(&self, labels: &BTreeMap<String, String>, line: &str) -> bool {
        self.matchers.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self
                .contains
                .as_ref()
                .is_none_or(|c| line.contains(c.as_str()))
    }
}

fn seconds(ns: i128) -> serde_json::Value {
    let ms = ns / 1_000_000;
    if ms % 1000 == 0 {
        serde_json::json!(ms / 1000)
    } else {
        serde_json::json!(ms as f64 / 1000.0)
    }
}

fn answer(
    shared: &Shared,
    path: &str,
    params: &HashMap<String, String>,
) -> Result<serde_json::Value, String> {
    let query = parse_query(params.get("query").ok_or("query parameter is required")?)?;
    let inner = shared.inner.lock().unwrap();
    let lines = &inner.lines;
    if path.ends_with("/query") {
        let Query::Count {
            selector,
            range_ns,
            sum,
        } = query
        else {
            return Err("log queries are not supported as an instant query type, please change your query to a range query type".into());
        };
        let at = parse_ns(params, "time")?;
        let points = count(lines, &selector, range_ns, sum, &[at]);
        let result: Vec<_> = points
            .into_iter()
            .map(|(labels, pts)| serde_json::json!({"metric": labels, "value": [seconds(pts[0].0), pts[0].1.to_string()]}))
            .collect();
        return Ok(
            serde_json::json!({"status":"success","data":{"resultType":"vector","result":result,"stats":{}}}),
        );
    }
    let start = parse_ns(params, "start")?;
    let end = parse_ns(params, "end")?;
    if end < start {
        return Err("end timestamp must not be before or equal to start time".into());
    }
    match query {
        Query::Log(selector) => {
            let limit: usize = match params.get("limit") {
                None => 100,
                Some(l) => match l.parse::<i64>() {
                    Ok(n) if n > 0 => n as usize,
                    _ => return Err("limit must be a positive value".into()),
                },
            };
            let forward = match params.get("direction").map(|d| d.to_ascii_lowercase()) {
                None => false,
                Some(d) if d == "backward" => false,
                Some(d) if d == "forward" => true,
                Some(_) => return Err(format!("invalid direction '{}'", params["direction"])),
            };
            let mut hits: Vec<&(i128, BTreeMap<String, String>, String)> = lines
                .iter()
                .filter(|(ts, l, line)| *ts >= start && *ts < end && selector.matches(l, line))
                .collect();
            hits.sort_by_key(|(ts, _, _)| *ts);
            if !forward {
                hits.reverse();
            }
            hits.truncate(limit);
            let mut streams: Vec<(BTreeMap<String, String>, Vec<serde_json::Value>)> = Vec::new();
            for (ts, labels, line) in hits {
                let entry = serde_json::json!([ts.to_string(), line]);
                match streams.iter_mut().find(|(l, _)| l == labels) {
                    Some((_, v)) => v.push(entry),
                    None => streams.push((labels.clone(), vec![entry])),
                }
            }
            let result: Vec<_> = streams
                .into_iter()
                .map(|(stream, values)| serde_json::json!({"stream": stream, "values": values}))
                .collect();
            Ok(
                serde_json::json!({"status":"success","data":{"resultType":"streams","result":result,"stats":{}}}),
            )
        }
        Query::Count {
            selector,
            range_ns,
            sum,
        } => {
            let step = match params.get("step") {
                None => ((end - start) / 250).max(1_000_000_000),
                Some(s) => parse_step_ns(s).ok_or_else(|| {
                    "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer".to_string()
                })?,
            };
            let mut at = Vec::new();
            let mut t = start;
            while t <= end {
                at.push(t);
                t += step;
            }
            if at.len() > 11_000 {
                return Err("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into());
            }
            let result: Vec<_> = count(lines, &selector, range_ns, sum, &at)
                .into_iter()
                .map(|(labels, pts)| {
                    let values: Vec<_> = pts
                        .into_iter()
                        .map(|(t, n)| serde_json::json!([seconds(t), n.to_string()]))
                        .collect();
                    serde_json::json!({"metric": labels, "values": values})
                })
                .collect();
            Ok(
                serde_json::json!({"status":"success","data":{"resultType":"matrix","result":result,"stats":{}}}),
            )
        }
    }
}

type Points = Vec<(i128, u64)>;

/// `count_over_time` at each instant of `at` over `(t - range, t]`, per
/// stream or summed; instants with nothing counted are left out.
fn count(
    lines: &[(i128, BTreeMap<String, String>, String)],
    selector: &Selector,
    range_ns: i128,
    sum: bool,
    at: &[i128],
) -> Vec<(BTreeMap<String, String>, Points)> {
    let mut out: Vec<(BTreeMap<String, String>, Points)> = Vec::new();
    for &t in at {
        let mut per: Vec<(BTreeMap<String, String>, u64)> = Vec::new();
        for (ts, labels, line) in lines {
            if *ts > t - range_ns && *ts <= t && selector.matches(labels, line) {
                let key = if sum { BTreeMap::new() } else { labels.clone() };
                match per.iter_mut().find(|(l, _)| *l == key) {
                    Some((_, n)) => *n += 1,
                    None => per.push((key, 1)),
                }
            }
        }
        for (labels, n) in per {
            match out.iter_mut().find(|(l, _)| *l == labels) {
                Some((_, pts)) => pts.push((t, n)),
                None => out.push((labels, vec![(t, n)])),
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
