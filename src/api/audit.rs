//! The audit log of API writes: every registration (API or webhook),
//! manual rollback, abort and ack is recorded with who made it (the
//! `[auth]` token's name, the webhook, or `anonymous`), the client's
//! address, what it did and when; served in each release object
//! (`audit`) and at `GET /v1/audit`.
//!
//! A registration's record is written in the registration's own commit
//! (`of_registration`): both are durable, or neither. The other writes'
//! records are written once the write they describe has been committed, so
//! the log never claims a write that did not happen; if the daemon dies in
//! between, that one record is missing (the write itself is not lost).

use super::auth::Actor;
use super::error::ApiError;
use super::ApiState;
use crate::context::Context;
use crate::model::{rfc3339, AuditRecord};
use crate::store::registration::AuditOf;
use crate::store::Registered;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

/// Records served by `GET /v1/audit` by default, and at most.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// One audit record as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditView {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub release_id: String,
    pub detail: String,
    pub client: Option<String>,
}

impl From<AuditRecord> for AuditView {
    fn from(r: AuditRecord) -> Self {
        Self {
            at: rfc3339(r.at),
            actor: r.actor,
            action: r.action,
            release_id: r.release_id,
            detail: r.detail,
            client: r.client,
        }
    }
}

/// Appends a record of `action` on `release_id` by `actor`. The write it
/// describes is done: a failure here is logged, not answered.
pub(crate) async fn record(
    ctx: &Context,
    actor: Option<&Actor>,
    action: &str,
    release_id: &str,
    detail: String,
) {
    let record = stamp(ctx, actor, action, release_id, detail);
    if let Err(e) = ctx.store.append_audit(&record).await {
        tracing::error!(error = %e, actor = %record.actor, action, release = release_id, "could not record the audit entry");
    }
}

/// The record of a registration of `version` (by `delivery`, for a
/// webhook), written by the store in the registration's own commit
/// ([`RegistrationAudit::for_store`]): the release and its record are
/// durable together.
pub(crate) fn of_registration(
    ctx: &Context,
    actor: Option<&Actor>,
    version: &str,
    delivery: Option<&str>,
) -> RegistrationAudit {
    RegistrationAudit {
        template: stamp(ctx, actor, "register", "", String::new()),
        said: format!(
            "version {version}{}",
            delivery
                .map(|d| format!(" (delivery {d})"))
                .unwrap_or_default()
        ),
    }
}

/// The audit record of one registration, decided before the write: the
/// store writes [`RegistrationAudit::record`] of the outcome, and the
/// answer to a new release shows that same record without reading it back.
#[derive(Clone)]
pub(crate) struct RegistrationAudit {
    /// Who and when; the release and the detail come from the outcome.
    template: AuditRecord,
    said: String,
}

impl RegistrationAudit {
    /// The record of the registration that had this outcome.
    pub(crate) fn record(&self, registered: &Registered) -> AuditRecord {
        AuditRecord {
            release_id: registered.release.id.clone(),
            detail: format!(
                "{}: {}",
                self.said,
                if registered.created {
                    "new watch"
                } else {
                    "already the latest release"
                }
            ),
            ..self.template.clone()
        }
    }

    /// What the store calls to write the record in the registration's commit.
    pub(crate) fn for_store(&self) -> AuditOf {
        let me = self.clone();
        Box::new(move |registered: &Registered| me.record(registered))
    }
}

fn stamp(
    ctx: &Context,
    actor: Option<&Actor>,
    action: &str,
    release_id: &str,
    detail: String,
) -> AuditRecord {
    AuditRecord {
        at: ctx.clock.now(),
        actor: actor.map_or_else(|| "anonymous".into(), |a| a.name.clone()),
        action: action.into(),
        release_id: release_id.into(),
        detail,
        client: actor.and_then(|a| a.client).map(|c| c.to_string()),
    }
}

/// The audit records of one release, oldest first.
pub(crate) async fn of_release(ctx: &Context, id: &str) -> Result<Vec<AuditView>, ApiError> {
    Ok(ctx
        .store
        .audit_log(Some(id), MAX_LIMIT)
        .await?
        .into_iter()
        .map(AuditView::from)
        .collect())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    limit: Option<String>,
    release: Option<String>,
}

/// `GET /v1/audit?limit=N&release=ID`: the newest records, oldest first.
pub(crate) async fn list(
    State(ApiState { ctx, .. }): State<ApiState>,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<Vec<AuditView>>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = match p.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "`limit` must be a whole number from 1 to {MAX_LIMIT}"
                ))
            })?,
    };
    Ok(Json(
        ctx.store
            .audit_log(p.release.as_deref(), limit)
            .await?
            .into_iter()
            .map(AuditView::from)
            .collect(),
    ))
}
