//! `GET /v1/releases/{id}/report?format=md|json|html`: the post-release
//! report ([`crate::report`]), built from the release object, the service's
//! checks as configured now (queries resolved, thresholds) and the values
//! the store kept for charts.

use super::error::ApiError;
use super::releases::{release_view, ReleaseId};
use super::ApiState;
use crate::config::Redactor;
use crate::context::Context;
use crate::model::Millis;
use crate::report::{self, CheckInfo, Report, ReportInput};
use crate::sources::Reads;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

/// The report formats, by their `format` value, with their content types.
pub const FORMATS: [(&str, &str); 3] = [
    ("json", "application/json"),
    ("md", "text/markdown; charset=utf-8"),
    ("html", "text/html; charset=utf-8"),
];

/// The route: 400 for an unknown format, 404 for an unknown release.
pub(crate) async fn report(
    State(ApiState { ctx, .. }): State<ApiState>,
    ReleaseId(id): ReleaseId,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let format = params.get("format").map(String::as_str).unwrap_or("json");
    let Some(&(format, content_type)) = FORMATS.iter().find(|(f, _)| *f == format) else {
        return Err(ApiError::BadRequest(format!(
            "unknown report format `{}`: use md, json or html",
            super::error::echo(format)
        )));
    };
    let now = ctx.clock.now();
    let r = build(&ctx, &id, now).await?;
    let body = match format {
        "md" => report::markdown::render(&r),
        "html" => report::html::render(&r, now),
        _ => serde_json::to_string_pretty(&r)
            .map_err(|e| ApiError::Internal(format!("report: {e}")))?,
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// The report of release `id` at `now`, or 404.
pub(crate) async fn build(ctx: &Context, id: &str, now: Millis) -> Result<Report, ApiError> {
    let view = release_view(ctx, id).await?;
    let points = ctx.store.check_points(id).await?;
    let settings = ctx.settings();
    let redactor = Redactor::from_settings(&settings);
    let service = settings
        .services
        .iter()
        .find(|s| s.name == view.service && s.environment == view.environment);
    let mut checks = Vec::new();
    let mut rollback_command = None;
    if let Some(service) = service {
        let release = ctx.store.get_release(id).await?;
        let vars = release
            .as_ref()
            .map(|r| crate::scheduler::variables(r, service))
            .unwrap_or_default();
        let sources = ctx.sources();
        for spec in &service.checks {
            let (query, probe) = match spec.source.reads {
                Reads::Query => {
                    let template = spec.query.clone().unwrap_or_default();
                    let resolved = match sources.range(spec.source_name()) {
                        Some(Ok(source)) => source.render(&template, &vars),
                        _ => template,
                    };
                    (Some(redactor.redact(&resolved)), None)
                }
                Reads::Scrape => {
                    let query = spec.query.as_deref().unwrap_or_default();
                    let target = spec.scrape.as_deref().unwrap_or_default();
                    let shown = format!("{} (scrape {target})", redactor.redact(query));
                    (Some(shown), None)
                }
                Reads::Probe => {
                    let name = spec.probe.clone().unwrap_or_default();
                    let probe = match service.probe(&name) {
                        Some(p) => format!("{name} ({})", redactor.redact(p.url.as_str())),
                        None => name,
                    };
                    (None, Some(probe))
                }
            };
            checks.push(CheckInfo::new(spec, query, probe));
        }
        rollback_command = service
            .rollback
            .as_ref()
            .map(|r| r.command.iter().map(|a| redactor.redact(a)).collect());
    }
    let release = serde_json::to_value(&view)
        .map_err(|e| ApiError::Internal(format!("release object: {e}")))?;
    Ok(report::build(ReportInput {
        release,
        checks,
        points,
        rollback_command,
        generated_at: now,
    }))
}
