//! Row mapping for the SQLite store: the column lists every query selects and
//! the functions that turn one row into a domain value.
//!
//! A value that does not parse (an unknown status, broken JSON, an integer out
//! of range) becomes a `FromSqlConversionFailure` carrying the column and the
//! offending value; the store maps it to [`StoreError::Corrupt`]. Nothing here
//! panics on a bad row.

use crate::model::{
    CheckRecord, CheckState, Decision, DecisionAction, DeliveryStatus, Level, NotificationRecord,
    Release, ReleaseStatus, RollbackRecord, RollbackState,
};
use crate::store::StoreError;
use rusqlite::types::Type;
use rusqlite::Row;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

/// Columns read by [`release`], in order.
pub(super) const RELEASE_COLUMNS: &str = "id, service, environment, version, previous_version, \
     annotations, status, started_at, next_check_at, ended_at, acked, superseded_by";

/// Columns read by [`check`], in order.
pub(super) const CHECK_COLUMNS: &str =
    "name, state, level, value, tracker, evaluated_until, updated_at, logs";

/// Columns read by [`decision`], in order.
pub(super) const DECISION_COLUMNS: &str =
    "at, check_name, level, action, reason, observed_at, evidence";

/// Columns read by [`notification`], in order.
pub(super) const NOTIFICATION_COLUMNS: &str = "key, notifier, message, status, attempts, \
     last_error, created_at, sent_at, next_attempt_at";

/// Columns read by [`rollback`], in order.
pub(super) const ROLLBACK_COLUMNS: &str = "state, reason, triggered_by, requested_at, \
     started_at, finished_at, exit_code, output";

pub(super) fn release(row: &Row<'_>) -> rusqlite::Result<Release> {
    Ok(Release {
        id: row.get(0)?,
        service: row.get(1)?,
        environment: row.get(2)?,
        version: row.get(3)?,
        previous_version: row.get(4)?,
        annotations: json(row, 5, "releases.annotations")?,
        status: release_status(row, 6)?,
        started_at: row.get(7)?,
        next_check_at: row.get(8)?,
        ended_at: row.get(9)?,
        acked: row.get(10)?,
        superseded_by: row.get(11)?,
    })
}

/// Reads a `releases.status` column.
pub(super) fn release_status(row: &Row<'_>, idx: usize) -> rusqlite::Result<ReleaseStatus> {
    parsed(row, idx, "releases.status", ReleaseStatus::parse)
}

pub(super) fn check(row: &Row<'_>) -> rusqlite::Result<CheckRecord> {
    Ok(CheckRecord {
        name: row.get(0)?,
        state: parsed(row, 1, "checks.state", CheckState::parse)?,
        level: parsed(row, 2, "checks.level", Level::parse)?,
        value: row.get(3)?,
        tracker: json(row, 4, "checks.tracker")?,
        evaluated_until: row.get(5)?,
        updated_at: row.get(6)?,
        logs: {
            let raw: Option<String> = row.get(7)?;
            match raw {
                None => Vec::new(),
                Some(_) => json(row, 7, "checks.logs")?,
            }
        },
    })
}

pub(super) fn decision(row: &Row<'_>) -> rusqlite::Result<Decision> {
    let level: Option<String> = row.get(2)?;
    let level = match level {
        None => None,
        Some(raw) => Some(Level::parse(&raw).ok_or_else(|| unknown(2, "decisions.level", &raw))?),
    };
    Ok(Decision {
        at: row.get(0)?,
        check: row.get(1)?,
        level,
        action: parsed(row, 3, "decisions.action", DecisionAction::parse)?,
        reason: row.get(4)?,
        observed_at: row.get(5)?,
        evidence: optional_json(row, 6, "decisions.evidence")?,
    })
}

pub(super) fn notification(row: &Row<'_>) -> rusqlite::Result<NotificationRecord> {
    Ok(NotificationRecord {
        key: row.get(0)?,
        notifier: row.get(1)?,
        message: json(row, 2, "notifications.message")?,
        status: parsed(row, 3, "notifications.status", DeliveryStatus::parse)?,
        attempts: row.get(4)?,
        last_error: row.get(5)?,
        created_at: row.get(6)?,
        sent_at: row.get(7)?,
        next_attempt_at: row.get(8)?,
    })
}

pub(super) fn rollback(row: &Row<'_>) -> rusqlite::Result<RollbackRecord> {
    Ok(RollbackRecord {
        state: rollback_state(row, 0)?,
        reason: row.get(1)?,
        trigger: row.get(2)?,
        requested_at: row.get(3)?,
        started_at: row.get(4)?,
        finished_at: row.get(5)?,
        exit_code: row.get(6)?,
        output: row.get(7)?,
    })
}

/// Reads a `rollbacks.state` column.
pub(super) fn rollback_state(row: &Row<'_>, idx: usize) -> rusqlite::Result<RollbackState> {
    parsed(row, idx, "rollbacks.state", RollbackState::parse)
}

/// Serializes a JSON column (annotations, tracker, message).
pub(super) fn to_json<T: Serialize>(value: &T, column: &str) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("cannot serialize {column}: {e}")))
}

/// The detail of a column whose content does not map to the domain.
#[derive(Debug)]
struct BadColumn(String);

impl fmt::Display for BadColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadColumn {}

fn bad(idx: usize, detail: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(BadColumn(detail)))
}

fn unknown(idx: usize, column: &str, raw: &str) -> rusqlite::Error {
    bad(idx, format!("{column} = {raw:?} is not a known value"))
}

fn parsed<T>(
    row: &Row<'_>,
    idx: usize,
    column: &str,
    parse: fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let raw: String = row.get(idx)?;
    parse(&raw).ok_or_else(|| unknown(idx, column, &raw))
}

fn json<T: DeserializeOwned>(row: &Row<'_>, idx: usize, column: &str) -> rusqlite::Result<T> {
    let raw: String = row.get(idx)?;
    serde_json::from_str(&raw).map_err(|e| bad(idx, format!("{column} is not valid: {e}")))
}

/// A nullable JSON column.
fn optional_json<T: DeserializeOwned>(
    row: &Row<'_>,
    idx: usize,
    column: &str,
) -> rusqlite::Result<Option<T>> {
    let raw: Option<String> = row.get(idx)?;
    raw.map(|raw| {
        serde_json::from_str(&raw).map_err(|e| bad(idx, format!("{column} is not valid: {e}")))
    })
    .transpose()
}
