//! Row mapping for the PostgreSQL store: rows ⇄ domain values. The column
//! lists are SQLite's (`sqlite_rows.rs`), so both backends select the same
//! columns in the same order. A value that does not parse (an unknown
//! status, broken JSON, a number out of range) is [`StoreError::Corrupt`]
//! naming the column and the value; nothing here panics on a bad row.

use crate::model::{
    CheckRecord, CheckState, Decision, DecisionAction, DeliveryStatus, Level, NotificationRecord,
    Release, ReleaseStatus, RollbackRecord, RollbackState,
};
use crate::store::StoreError;
use serde::de::DeserializeOwned;
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;

pub(super) const RELEASE_COLUMNS: &str = "id, service, environment, version, previous_version, \
     annotations, status, started_at, next_check_at, ended_at, acked, superseded_by";
pub(super) const CHECK_COLUMNS: &str =
    "name, state, level, value, tracker, evaluated_until, updated_at, logs";
pub(super) const DECISION_COLUMNS: &str =
    "at, check_name, level, action, reason, observed_at, evidence";
pub(super) const NOTIFICATION_COLUMNS: &str = "key, notifier, message, status, attempts, \
     last_error, created_at, sent_at, next_attempt_at";
pub(super) const ROLLBACK_COLUMNS: &str = "state, reason, triggered_by, requested_at, \
     started_at, finished_at, exit_code, output";

/// Column `idx` (named `column` in errors) as `T`.
pub(super) fn get<'a, T: FromSql<'a>>(
    row: &'a Row,
    idx: usize,
    column: &str,
) -> Result<T, StoreError> {
    row.try_get(idx)
        .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn parsed<T>(
    row: &Row,
    idx: usize,
    column: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let raw: String = get(row, idx, column)?;
    parse(&raw)
        .ok_or_else(|| StoreError::Corrupt(format!("{column} = {raw:?} is not a known value")))
}

fn json<T: DeserializeOwned>(row: &Row, idx: usize, column: &str) -> Result<T, StoreError> {
    let raw: String = get(row, idx, column)?;
    serde_json::from_str(&raw)
        .map_err(|e| StoreError::Corrupt(format!("{column} is not valid: {e}")))
}

fn optional_json<T: DeserializeOwned>(
    row: &Row,
    idx: usize,
    column: &str,
) -> Result<Option<T>, StoreError> {
    let raw: Option<String> = get(row, idx, column)?;
    raw.map(|raw| {
        serde_json::from_str(&raw)
            .map_err(|e| StoreError::Corrupt(format!("{column} is not valid: {e}")))
    })
    .transpose()
}

pub(super) fn release(row: &Row) -> Result<Release, StoreError> {
    Ok(Release {
        id: get(row, 0, "releases.id")?,
        service: get(row, 1, "releases.service")?,
        environment: get(row, 2, "releases.environment")?,
        version: get(row, 3, "releases.version")?,
        previous_version: get(row, 4, "releases.previous_version")?,
        annotations: json(row, 5, "releases.annotations")?,
        status: release_status(row, 6)?,
        started_at: get(row, 7, "releases.started_at")?,
        next_check_at: get(row, 8, "releases.next_check_at")?,
        ended_at: get(row, 9, "releases.ended_at")?,
        acked: get(row, 10, "releases.acked")?,
        superseded_by: get(row, 11, "releases.superseded_by")?,
    })
}

pub(super) fn release_status(row: &Row, idx: usize) -> Result<ReleaseStatus, StoreError> {
    parsed(row, idx, "releases.status", ReleaseStatus::parse)
}

pub(super) fn check(row: &Row) -> Result<CheckRecord, StoreError> {
    Ok(CheckRecord {
        name: get(row, 0, "checks.name")?,
        state: parsed(row, 1, "checks.state", CheckState::parse)?,
        level: parsed(row, 2, "checks.level", Level::parse)?,
        value: get(row, 3, "checks.value")?,
        tracker: json(row, 4, "checks.tracker")?,
        evaluated_until: get(row, 5, "checks.evaluated_until")?,
        updated_at: get(row, 6, "checks.updated_at")?,
        logs: optional_json(row, 7, "checks.logs")?.unwrap_or_default(),
    })
}

pub(super) fn decision(row: &Row) -> Result<Decision, StoreError> {
    let level: Option<String> = get(row, 2, "decisions.level")?;
    let level = match level {
        None => None,
        Some(raw) => Some(Level::parse(&raw).ok_or_else(|| {
            StoreError::Corrupt(format!("decisions.level = {raw:?} is not a known value"))
        })?),
    };
    Ok(Decision {
        at: get(row, 0, "decisions.at")?,
        check: get(row, 1, "decisions.check_name")?,
        level,
        action: parsed(row, 3, "decisions.action", DecisionAction::parse)?,
        reason: get(row, 4, "decisions.reason")?,
        observed_at: get(row, 5, "decisions.observed_at")?,
        evidence: optional_json(row, 6, "decisions.evidence")?,
    })
}

pub(super) fn notification(row: &Row) -> Result<NotificationRecord, StoreError> {
    let attempts: i64 = get(row, 4, "notifications.attempts")?;
    Ok(NotificationRecord {
        key: get(row, 0, "notifications.key")?,
        notifier: get(row, 1, "notifications.notifier")?,
        message: json(row, 2, "notifications.message")?,
        status: parsed(row, 3, "notifications.status", DeliveryStatus::parse)?,
        attempts: u32::try_from(attempts).map_err(|_| {
            StoreError::Corrupt(format!(
                "notifications.attempts holds {attempts}, out of range"
            ))
        })?,
        last_error: get(row, 5, "notifications.last_error")?,
        created_at: get(row, 6, "notifications.created_at")?,
        sent_at: get(row, 7, "notifications.sent_at")?,
        next_attempt_at: get(row, 8, "notifications.next_attempt_at")?,
    })
}

pub(super) fn rollback(row: &Row) -> Result<RollbackRecord, StoreError> {
    Ok(RollbackRecord {
        state: parsed(row, 0, "rollbacks.state", RollbackState::parse)?,
        reason: get(row, 1, "rollbacks.reason")?,
        trigger: get(row, 2, "rollbacks.triggered_by")?,
        requested_at: get(row, 3, "rollbacks.requested_at")?,
        started_at: get(row, 4, "rollbacks.started_at")?,
        finished_at: get(row, 5, "rollbacks.finished_at")?,
        exit_code: get(row, 6, "rollbacks.exit_code")?,
        output: get(row, 7, "rollbacks.output")?,
    })
}

/// Every row through `map`, or the first error.
pub(super) fn all<T>(
    rows: &[Row],
    map: fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(map).collect()
}
