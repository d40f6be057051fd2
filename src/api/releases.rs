//! The release routes: register a release (`POST` to an intake format's
//! route, `/v1/releases` for the native one), list and show releases, and
//! the control operations (manual rollback, abort, ack).
//!
//! Every control operation goes through the
//! [`Guardian`](crate::scheduler::Guardian), so the store and the running
//! watches never disagree; every answer is the full release object
//! ([`ReleaseView`]) read back from the store.

use super::audit::{self, AuditView};
use super::auth::Actor;
use super::body;
use super::error::ApiError;
use super::view::ReleaseView;
use super::ApiState;
use crate::config::Redactor;
use crate::config::Settings;
use crate::context::Context;
use crate::intake::{self, Intake, IntakeError, IntakeFormat, IntakeRequest};
use crate::model::{AuditRecord, CheckRecord, CheckState, Level, Release, ReleaseStatus};
use crate::scheduler::Provenance;
use crate::store::ReleaseDetails;
use crate::store::ReleaseFilter;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

/// Largest `limit` a list accepts; the default is the store's (100).
pub const MAX_LIST_LIMIT: usize = 1000;

/// Largest `annotations` of a new release, serialized as JSON: 64 KiB.
pub const MAX_ANNOTATIONS_BYTES: usize = 64 * 1024;

/// The response header of `GET /v1/releases` carrying the cursor of the
/// next page (absent on the last page).
pub const NEXT_CURSOR_HEADER: &str = "next-cursor";

/// Longest `cursor` accepted (ours are far shorter).
const MAX_CURSOR_CHARS: usize = 1024;

/// `POST` to `format`'s route (`/v1/releases` for the native format): 201 +
/// `Location` for a new release, 200 with the existing one when the same
/// (service, environment, version) is the latest, 202 `{"ignored": reason}`
/// for an event that starts no watch. The router wires one such route per
/// entry of [`intake::FORMATS`].
pub(crate) async fn create(
    ApiState { guardian, ctx, .. }: ApiState,
    format: &'static dyn IntakeFormat,
    request: Request,
) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let actor = request.extensions().get::<Actor>().cloned();
    let bytes = body::read(request).await?;
    let settings = ctx.settings();
    let config = settings.webhooks.get(format.name()).map(|c| c.as_ref());
    if format.section().is_some() && config.is_none() {
        // A deploy tool without its `[webhooks.NAME]` section is not served.
        return Err(ApiError::NotFound(format!(
            "no [webhooks.{}] is configured",
            format.name()
        )));
    }
    let request = IntakeRequest {
        headers: &headers,
        body: &bytes,
        config,
    };
    let intake = intake::receive(format, &request).map_err(intake_error)?;
    // Read only once the request is authenticated.
    let delivery = format.delivery(&request);
    let new = match intake {
        Intake::Release(new) => {
            check_annotations(&new.annotations)?;
            new
        }
        Intake::Ignored(reason) => {
            tracing::info!(format = format.name(), %reason, "event starts no watch");
            return Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({ "ignored": reason })),
            )
                .into_response());
        }
    };
    if let Some(delivery) = &delivery {
        if let Some(id) = ctx.store.delivery_release(format.name(), delivery).await? {
            // A redelivery (the tool retried, or someone pressed
            // "Redeliver"): answer with what it registered, start nothing.
            tracing::info!(format = format.name(), %delivery, release = %id, "delivery seen before; nothing new started");
            return match release_view(&ctx, &id).await {
                Ok(view) => Ok((StatusCode::OK, Json(view)).into_response()),
                Err(ApiError::NotFound(_)) => Ok((
                    StatusCode::ACCEPTED,
                    Json(serde_json::json!({ "ignored": format!("delivery {delivery} was processed before") })),
                )
                    .into_response()),
                Err(e) => Err(e),
            };
        }
    }
    // The audit record and the delivery are written in the registration's
    // own commit.
    let audit = audit::of_registration(&ctx, actor.as_ref(), &new.version, delivery.as_deref());
    let provenance = Provenance {
        audit: Some(audit.for_store()),
        delivery: delivery.map(|d| (format.name().to_string(), d)),
    };
    let registered = guardian.register_with(new, provenance).await?;
    if !registered.created {
        let view = release_view(&ctx, &registered.release.id).await?;
        return Ok((StatusCode::OK, Json(view)).into_response());
    }
    let record = audit.record(&registered);
    let view = new_release_view(&ctx, registered.release, record);
    let mut response = (StatusCode::CREATED, Json(&view)).into_response();
    let location = format!("/v1/releases/{}", view.id);
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            response.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => {
            return Err(ApiError::Internal(format!(
                "release id {:?} is not a valid header value",
                view.id
            )))
        }
    }
    Ok(response)
}

/// 413 for annotations over [`MAX_ANNOTATIONS_BYTES`] (as JSON): they are
/// stored with the release and answered with it.
fn check_annotations(
    annotations: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Result<(), ApiError> {
    let size = serde_json::to_vec(annotations)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_ANNOTATIONS_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "`annotations` is {size} bytes as JSON; at most {MAX_ANNOTATIONS_BYTES} (64 KiB) are accepted"
        )));
    }
    Ok(())
}

fn intake_error(e: IntakeError) -> ApiError {
    match e {
        IntakeError::Malformed(m) => ApiError::BadRequest(m),
        IntakeError::Unauthenticated(m) => ApiError::Unauthorized(m),
    }
}

/// Query parameters of `GET /v1/releases`. Unknown parameters are refused,
/// like unknown body fields, so a misspelt filter is not silently ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    service: Option<String>,
    environment: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

impl ListParams {
    fn into_filter(self) -> Result<ReleaseFilter, ApiError> {
        let status = match self.status.as_deref() {
            None => None,
            Some(s) => Some(ReleaseStatus::parse(s).ok_or_else(|| {
                let known: Vec<&str> = ReleaseStatus::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::BadRequest(format!(
                    "unknown status `{}`; expected one of {}",
                    super::error::echo(s),
                    known.join(", ")
                ))
            })?),
        };
        let limit = match self.limit.as_deref() {
            None => 0,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "`limit` must be an integer from 1 to {MAX_LIST_LIMIT}, not `{}`",
                        super::error::echo(s)
                    )))
                }
            },
        };
        let before = match self.cursor.as_deref() {
            None => None,
            Some(c) => Some(decode_cursor(c).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "`cursor` `{}` is not a cursor this API gave out",
                    super::error::echo(c)
                ))
            })?),
        };
        Ok(ReleaseFilter {
            service: self.service,
            environment: self.environment,
            status,
            limit,
            before,
        })
    }
}

/// The opaque cursor of the page after `release`: hex of `STARTED_AT.ID`.
fn encode_cursor(started_at: crate::model::Millis, id: &str) -> String {
    format!("{started_at}.{id}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_cursor(cursor: &str) -> Option<(crate::model::Millis, String)> {
    if cursor.len() > MAX_CURSOR_CHARS || cursor.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cursor.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let text = String::from_utf8(bytes).ok()?;
    let (started_at, id) = text.split_once('.')?;
    let started_at = started_at.parse().ok()?;
    (!id.is_empty()).then(|| (started_at, id.to_string()))
}

/// `GET /v1/releases`: an array of release objects without their
/// `annotations`, newest first, one page of at most `limit`; when the page
/// is full, the `Next-Cursor` header holds the `cursor` of the next one.
pub(crate) async fn list(
    State(ApiState { ctx, .. }): State<ApiState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| {
        ApiError::BadRequest(format!("invalid query parameters: {}", e.body_text()))
    })?;
    let filter = params.into_filter()?;
    let page_size = if filter.limit == 0 { 100 } else { filter.limit };
    let releases = ctx.store.list_releases(&filter).await?;
    let next_cursor = (releases.len() >= page_size)
        .then(|| releases.last())
        .flatten()
        .map(|r| encode_cursor(r.started_at, &r.id));
    let settings = ctx.settings();
    let redactor = Redactor::from_settings(&settings);
    // One read for the whole page, not one per release.
    let ids: Vec<String> = releases.into_iter().map(|r| r.id).collect();
    let details = ctx.store.releases_details(&ids).await?;
    let mut views = Vec::with_capacity(ids.len());
    for (id, details) in ids.iter().zip(details) {
        // Releases are deleted only once ended past retention; one deleted
        // between the two reads is skipped rather than failing the list.
        match details {
            Some(details) => {
                let mut view = ReleaseView::new(with_pending(details, &settings), &redactor);
                view.annotations = None;
                views.push(view);
            }
            None => tracing::warn!(release = %id, "listed release has no details"),
        }
    }
    let mut response = Json(views).into_response();
    if let Some(cursor) = next_cursor.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(NEXT_CURSOR_HEADER, cursor);
    }
    Ok(response)
}

/// `GET /v1/releases/{id}`.
pub(crate) async fn show(
    State(ApiState { ctx, .. }): State<ApiState>,
    ReleaseId(id): ReleaseId,
) -> Result<Json<ReleaseView>, ApiError> {
    Ok(Json(release_view(&ctx, &id).await?))
}

/// `POST /v1/releases/{id}/rollback`: 202, the hook runs in the background.
pub(crate) async fn rollback(
    State(ApiState { guardian, ctx, .. }): State<ApiState>,
    actor: Option<Extension<Actor>>,
    ReleaseId(id): ReleaseId,
) -> Result<(StatusCode, Json<ReleaseView>), ApiError> {
    let release = guardian.manual_rollback(&id).await?;
    audit::record(
        &ctx,
        actor.as_deref(),
        "rollback",
        &release.id,
        "manual rollback requested".into(),
    )
    .await;
    Ok((
        StatusCode::ACCEPTED,
        Json(release_view(&ctx, &release.id).await?),
    ))
}

/// `POST /v1/releases/{id}/abort`.
pub(crate) async fn abort(
    State(ApiState { guardian, ctx, .. }): State<ApiState>,
    actor: Option<Extension<Actor>>,
    ReleaseId(id): ReleaseId,
) -> Result<Json<ReleaseView>, ApiError> {
    let release = guardian.abort(&id).await?;
    audit::record(
        &ctx,
        actor.as_deref(),
        "abort",
        &release.id,
        "watch aborted".into(),
    )
    .await;
    Ok(Json(release_view(&ctx, &release.id).await?))
}

/// `POST /v1/releases/{id}/ack`: no further pages for this release.
pub(crate) async fn ack(
    State(ApiState { guardian, ctx, .. }): State<ApiState>,
    actor: Option<Extension<Actor>>,
    ReleaseId(id): ReleaseId,
) -> Result<Json<ReleaseView>, ApiError> {
    let release = guardian.ack(&id).await?;
    audit::record(
        &ctx,
        actor.as_deref(),
        "ack",
        &release.id,
        "pages silenced".into(),
    )
    .await;
    Ok(Json(release_view(&ctx, &release.id).await?))
}

/// The release object of `id`, or 404.
pub(crate) async fn release_view(ctx: &Context, id: &str) -> Result<ReleaseView, ApiError> {
    let details = ctx
        .store
        .release_details(id)
        .await?
        .ok_or_else(|| ApiError::release_not_found(id))?;
    let audit = audit::of_release(ctx, id).await?;
    Ok(view_of(ctx, details, audit))
}

/// The release object of a release its registration just created, from
/// what that commit wrote, without reading it back: its row, and its one
/// audit record; a new release has no checks, decisions, notifications or
/// rollback yet. What [`release_view`] would have read at the commit.
fn new_release_view(ctx: &Context, release: Release, record: AuditRecord) -> ReleaseView {
    let details = ReleaseDetails {
        release,
        checks: Vec::new(),
        decisions: Vec::new(),
        notifications: Vec::new(),
        rollback: None,
    };
    view_of(ctx, details, vec![record.into()])
}

/// The release object of `details` and its audit records: the service's
/// configured checks without a result yet shown `pending`, free text
/// redacted.
fn view_of(ctx: &Context, details: ReleaseDetails, audit: Vec<AuditView>) -> ReleaseView {
    let settings = ctx.settings();
    let mut view = ReleaseView::new(
        with_pending(details, &settings),
        &Redactor::from_settings(&settings),
    );
    view.audit = Some(audit);
    view
}

/// Adds the service's configured checks that have no result yet as
/// `pending` (before a watch's first tick, or after a reload added checks).
fn with_pending(mut details: ReleaseDetails, settings: &Settings) -> ReleaseDetails {
    let r = &details.release;
    if r.status.is_terminal() {
        return details;
    }
    let Some(service) = settings.service(&r.service, &r.environment) else {
        return details;
    };
    let started_at = r.started_at;
    for spec in &service.checks {
        if !details.checks.iter().any(|c| c.name == spec.name) {
            details.checks.push(CheckRecord {
                name: spec.name.clone(),
                state: CheckState::Pending,
                level: Level::Ok,
                value: None,
                tracker: serde_json::Value::Null,
                evaluated_until: None,
                updated_at: started_at,
                logs: Vec::new(),
            });
        }
    }
    details
}

/// The `{id}` of a release route. Any id is accepted and looked up; one that
/// cannot even be decoded (invalid UTF-8 after percent-decoding) names no
/// release either, so it is a 404 too, never a 400.
#[derive(Debug)]
pub(crate) struct ReleaseId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ReleaseId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(Self(id)),
            Err(_) => {
                // `/v1/releases/{id}[/...]`: the raw (still encoded) segment.
                let raw = parts.uri.path().split('/').nth(3).unwrap_or_default();
                Err(ApiError::release_not_found(raw))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let id = "01a209a3-bce4-7375-b7d4-c6d1af8ebfe1";
        let c = encode_cursor(1_795_458_065_000, id);
        assert_eq!(decode_cursor(&c), Some((1_795_458_065_000, id.to_string())));
        for bad in ["", "zz", "abc", "2e", &"00".repeat(600), "31323334"] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn annotations_up_to_64_kib() {
        let mut a = std::collections::BTreeMap::new();
        // {"k":"..."} is 8 bytes of framing.
        a.insert(
            "k".to_string(),
            serde_json::json!("x".repeat(MAX_ANNOTATIONS_BYTES - 8)),
        );
        assert_eq!(check_annotations(&a), Ok(()));
        a.insert(
            "k".to_string(),
            serde_json::json!("x".repeat(MAX_ANNOTATIONS_BYTES - 7)),
        );
        assert_eq!(
            check_annotations(&a).unwrap_err().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
