//! The open operational routes: `/healthz` (the process answers), `/readyz`
//! (watches recovered and the store answering) and `/metrics` (the daemon's
//! own metrics in the Prometheus text format, plus release counts by status).

use super::error::ApiError;
use super::ApiState;
use crate::model::ReleaseStatus;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::fmt::Write as _;
use std::time::Duration;

/// How long `/readyz` waits for the store before answering 503.
pub const READY_STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// The Prometheus text format, version 0.0.4: what `/metrics` answers unless
/// the scraper asks for OpenMetrics.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics 1.0, answered when the `Accept` header asks for it (Prometheus
/// does by default). The encoder's output is OpenMetrics text; it is also
/// valid 0.0.4 text (`# UNIT` and `# EOF` are comments there).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /healthz`: 200 as long as the process serves requests.
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 once every watch is recovered, the store's last write
/// (the periodic write probe, or a tick) succeeded and the store answers;
/// 503 otherwise. A 200 lists the releases whose rows could not be read
/// (`unreadable_releases`), if any.
pub(crate) async fn readyz(State(ApiState { guardian, ctx, .. }): State<ApiState>) -> Response {
    if !guardian.is_ready() {
        return not_ready("watches are still being recovered");
    }
    if let Some(e) = guardian.store_write_error() {
        return not_ready_with(
            "the store cannot write",
            serde_json::json!({ "store_write_error": e }),
        );
    }
    let store = &ctx.store;
    match tokio::time::timeout(READY_STORE_TIMEOUT, store.count_by_status()).await {
        // A corrupt row is the row's fault, not the store's: the store
        // answered (the row is reported in `unreadable_releases`).
        Ok(Ok(_)) | Ok(Err(crate::store::StoreError::Corrupt(_))) => {
            let mut body = serde_json::json!({ "status": "ready" });
            let unreadable = guardian.unreadable_releases();
            if !unreadable.is_empty() {
                // Ready: every other watch runs; these rows need a person.
                body["unreadable_releases"] = serde_json::json!(unreadable);
            }
            Json(body).into_response()
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check: the store failed");
            not_ready("the store is not answering")
        }
        Err(_) => {
            tracing::warn!(
                timeout = ?READY_STORE_TIMEOUT,
                "readiness check: the store did not answer in time"
            );
            not_ready("the store is not answering")
        }
    }
}

/// 503 with the reason and details in a JSON body.
fn not_ready_with(reason: &str, detail: serde_json::Value) -> Response {
    let body = serde_json::json!({
        "status": "not_ready",
        "error": format!("not ready: {reason}"),
        "detail": detail,
    });
    (axum::http::StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

fn not_ready(reason: &str) -> Response {
    let mut response = ApiError::Unavailable(format!("not ready: {reason}")).into_response();
    response.headers_mut().remove(header::RETRY_AFTER);
    response
}

/// `GET /metrics`: [`crate::telemetry::Telemetry::encode`] plus one
/// `rg_releases{status="..."}` gauge per status (0 included, so every series
/// exists from the start) and one `rg_notifications_pending{notifier="..."}`
/// per notifier. If the store fails, the gauges are left out and the rest
/// is still served.
pub(crate) async fn metrics(
    State(ApiState { ctx, .. }): State<ApiState>,
    headers: HeaderMap,
) -> Response {
    ctx.telemetry
        .probe_histograms
        .set(crate::sources::probe::live_histograms() as i64);
    let mut text = ctx.telemetry.encode();
    let mut families = String::new();
    match ctx.store.count_by_status().await {
        Ok(counts) => families.push_str(&release_gauges(&counts)),
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count releases"),
    }
    match ctx.store.pending_by_notifier().await {
        Ok(pending) => {
            let configured: Vec<String> = ctx.settings().notifiers.keys().cloned().collect();
            families.push_str(&pending_gauges(&configured, &pending));
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count pending notifications"),
    }
    // Keep a trailing `# EOF` (from the OpenMetrics encoder) last.
    match text.rfind("# EOF") {
        Some(at) if text[at..].trim_end() == "# EOF" => text.insert_str(at, &families),
        _ => text.push_str(&families),
    }
    let content_type = if accepts_openmetrics(&headers) {
        OPENMETRICS_CONTENT_TYPE
    } else {
        METRICS_CONTENT_TYPE
    };
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

/// True if `Accept` lists `application/openmetrics-text` with a non-zero q.
fn accepts_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
}

/// The `rg_notifications_pending` gauge family: messages waiting in the
/// outbox, one sample per configured notifier (0 included) and per
/// notifier no longer configured that still has rows.
fn pending_gauges(configured: &[String], pending: &[(String, u64)]) -> String {
    let mut out = String::from(
        "# TYPE rg_notifications_pending gauge\n# HELP rg_notifications_pending Messages waiting in the outbox (pending), by notifier.\n",
    );
    let mut names: Vec<&String> = configured.iter().collect();
    for (name, _) in pending {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    for name in names {
        let n: u64 = pending
            .iter()
            .filter(|(p, _)| p == name)
            .map(|(_, n)| n)
            .sum();
        let escaped = name
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = writeln!(
            out,
            "rg_notifications_pending{{notifier=\"{escaped}\"}} {n}"
        );
    }
    out
}

/// The `rg_releases` gauge family, one sample per status.
fn release_gauges(counts: &[(ReleaseStatus, u64)]) -> String {
    let mut out = String::from(
        "# TYPE rg_releases gauge\n# HELP rg_releases Releases in the store by status.\n",
    );
    for status in ReleaseStatus::ALL {
        let n: u64 = counts
            .iter()
            .filter(|(s, _)| *s == status)
            .map(|(_, n)| n)
            .sum();
        let _ = writeln!(out, "rg_releases{{status=\"{}\"}} {n}", status.as_str());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pending_gauge_per_notifier() {
        let text = pending_gauges(
            &["pager".into(), "slack".into()],
            &[("slack".into(), 3), ("gone".into(), 1)],
        );
        assert!(
            text.contains("rg_notifications_pending{notifier=\"pager\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("rg_notifications_pending{notifier=\"slack\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("rg_notifications_pending{notifier=\"gone\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn one_gauge_per_status() {
        let text = release_gauges(&[(ReleaseStatus::Watching, 3), (ReleaseStatus::Aborted, 1)]);
        assert!(
            text.contains("rg_releases{status=\"watching\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("rg_releases{status=\"aborted\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("rg_releases{status=\"superseded\"} 0\n"),
            "{text}"
        );
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 7);
    }

    #[test]
    fn openmetrics_only_when_asked() {
        let accept = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, v.parse().unwrap());
            accepts_openmetrics(&h)
        };
        assert!(accept("application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.3,*/*;q=0.1"));
        assert!(!accept("*/*"));
        assert!(!accept("text/plain"));
        assert!(!accept("application/openmetrics-text; q=0"));
        assert!(!accepts_openmetrics(&HeaderMap::new()));
    }
}
