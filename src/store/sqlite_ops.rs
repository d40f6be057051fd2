//! The SQL of the SQLite store: one function per [`Store`](crate::store::Store)
//! method, each run inside the transaction [`super::SqliteStore`] opened for
//! it (they never commit), plus the statements several of them share.

use super::rows::{
    self, CHECK_COLUMNS, DECISION_COLUMNS, NOTIFICATION_COLUMNS, RELEASE_COLUMNS, ROLLBACK_COLUMNS,
};
use crate::model::{
    AuditRecord, CheckRecord, Decision, DeliveryStatus, Millis, NewRelease, NotificationRecord,
    Release, ReleaseStatus, RollbackRecord, RollbackState,
};
use crate::store::{
    BatchRegistered, Lease, Registered, Registration, ReleaseDetails, ReleaseFilter,
    ResumableReleases, RollbackRequest, Silence, StoreError, TickApplied, TickCommit,
    UnreadableRelease,
};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

/// `list_releases` limit when the filter says 0.
const DEFAULT_LIST_LIMIT: usize = 100;
/// Upper bound of `list_releases`' limit.
const MAX_LIST_LIMIT: usize = 1000;

// ---- statements shared by several methods --------------------------------

pub(super) fn release(conn: &Connection, id: &str) -> Result<Option<Release>, StoreError> {
    let sql = format!("SELECT {RELEASE_COLUMNS} FROM releases WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], rows::release)
        .optional()?)
}

fn status_of(conn: &Connection, id: &str) -> Result<Option<ReleaseStatus>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT status FROM releases WHERE id = ?1")?
        .query_row([id], |r| rows::release_status(r, 0))
        .optional()?)
}

pub(super) fn rollback(
    conn: &Connection,
    release_id: &str,
) -> Result<Option<RollbackRecord>, StoreError> {
    let sql = format!("SELECT {ROLLBACK_COLUMNS} FROM rollbacks WHERE release_id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([release_id], rows::rollback)
        .optional()?)
}

pub(super) fn checks(conn: &Connection, release_id: &str) -> Result<Vec<CheckRecord>, StoreError> {
    let sql = format!("SELECT {CHECK_COLUMNS} FROM checks WHERE release_id = ?1 ORDER BY name");
    let mut stmt = conn.prepare_cached(&sql)?;
    let out = stmt
        .query_map([release_id], rows::check)?
        .collect::<Result<_, _>>()?;
    Ok(out)
}

fn insert_decision(conn: &Connection, release_id: &str, d: &Decision) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO decisions (release_id, at, check_name, level, action, reason, observed_at, evidence)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        release_id,
        d.at,
        d.check,
        d.level.map(|l| l.as_str()),
        d.action.as_str(),
        d.reason,
        d.observed_at,
        d.evidence.as_ref().map(|e| e.to_string())
    ])?;
    Ok(())
}

/// Inserts outbox rows, ignoring existing keys; returns how many were new.
fn insert_notifications(
    conn: &Connection,
    records: &[NotificationRecord],
) -> Result<usize, StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO notifications (key, release_id, notifier, message, status,
             attempts, last_error, created_at, sent_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut silence = conn.prepare_cached("SELECT silence_note FROM releases WHERE id = ?1")?;
    let mut inserted = 0;
    for n in records {
        // The silence an ack recorded applies to rows enqueued after it too:
        // a page decided from an older copy of the release (a long hook run,
        // a tick in flight) is kept, suppressed, with the ack's note.
        let silenced = match n.status {
            DeliveryStatus::Pending => silence
                .query_row(params![n.message.release_id], |r| {
                    r.get::<_, Option<String>>(0)
                })
                .optional()?
                .flatten(),
            _ => None,
        };
        let (status, last_error) = if let Some(note) = silenced {
            (DeliveryStatus::Suppressed, Some(note))
        } else {
            (n.status, n.last_error.clone())
        };
        inserted += stmt.execute(params![
            n.key,
            n.message.release_id,
            n.notifier,
            rows::to_json(&n.message, "notifications.message")?,
            status.as_str(),
            n.attempts,
            last_error,
            n.created_at,
            n.sent_at,
            n.next_attempt_at
        ])?;
    }
    Ok(inserted)
}

fn insert_rollback(
    conn: &Connection,
    release_id: &str,
    rb: &RollbackRecord,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO rollbacks (release_id, state, reason, triggered_by, requested_at,
             started_at, finished_at, exit_code, output)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        release_id,
        rb.state.as_str(),
        rb.reason,
        rb.trigger,
        rb.requested_at,
        rb.started_at,
        rb.finished_at,
        rb.exit_code,
        rb.output
    ])?;
    Ok(())
}

/// Sets a release's status; a terminal one also ends the watch.
fn set_status(
    conn: &Connection,
    id: &str,
    to: ReleaseStatus,
    now: Millis,
) -> Result<(), StoreError> {
    if to.is_terminal() {
        conn.prepare_cached(
            "UPDATE releases SET status = ?2, next_check_at = NULL, ended_at = ?3 WHERE id = ?1",
        )?
        .execute(params![id, to.as_str(), now])?;
    } else {
        conn.prepare_cached("UPDATE releases SET status = ?2 WHERE id = ?1")?
            .execute(params![id, to.as_str()])?;
    }
    Ok(())
}

/// Marks a release `rolling_back` and stops its ticks.
fn set_rolling_back(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE releases SET status = ?2, next_check_at = NULL WHERE id = ?1")?
        .execute(params![id, ReleaseStatus::RollingBack.as_str()])?;
    Ok(())
}

// ---- one function per transaction ----------------------------------------

pub(super) fn register(
    tx: &Transaction<'_>,
    new: &NewRelease,
    environment: &str,
    id: &str,
    now: Millis,
    first_check_at: Millis,
    superseded_decision: &Decision,
) -> Result<Registered, StoreError> {
    let latest = latest(tx, &new.service, environment)?;
    register_after(
        tx,
        new,
        environment,
        id,
        (now, first_check_at),
        (superseded_decision, None),
        latest,
    )
}

/// The latest release of (service, environment), if any.
fn latest(
    tx: &Transaction<'_>,
    service: &str,
    environment: &str,
) -> Result<Option<Release>, StoreError> {
    let sql = format!(
        "SELECT {RELEASE_COLUMNS} FROM releases
         WHERE service = ?1 AND environment = ?2 ORDER BY seq DESC LIMIT 1"
    );
    Ok(tx
        .prepare_cached(&sql)?
        .query_row([service, environment], rows::release)
        .optional()?)
}

/// One item of a batch: the registration planned from the latest release,
/// written with the new watch's lease, then the audit record and the
/// delivery. (It borrows the item: a batch may be written twice.)
pub(super) fn register_item(
    tx: &Transaction<'_>,
    item: &Registration,
) -> Result<BatchRegistered, StoreError> {
    let mut new = item.new.clone();
    let latest = latest(tx, &new.service, &item.environment)?;
    let first_check_at = (item.plan)(&mut new, latest.as_ref());
    let registered = register_after(
        tx,
        &new,
        &item.environment,
        &item.id,
        (item.now, first_check_at),
        (&item.superseded, item.lease.as_ref()),
        latest,
    )?;
    // A new row is written with the lease, so the claim always succeeds.
    let claimed = registered.created && item.lease.is_some();
    if let Some(audit) = &item.audit {
        append_audit(tx, &audit(&registered))?;
    }
    if let Some((source, delivery)) = &item.delivery {
        record_delivery(tx, source, delivery, &registered.release.id, item.now)?;
    }
    Ok(BatchRegistered {
        registered,
        claimed,
    })
}

/// [`register`] once the latest release is known; `(now, first_check_at)`,
/// and `(superseded_decision, lease)`: the decision appended to each
/// release the new one supersedes, and the lease a new row is written
/// with (its watch claimed in the same statement).
fn register_after(
    tx: &Transaction<'_>,
    new: &NewRelease,
    environment: &str,
    id: &str,
    (now, first_check_at): (Millis, Millis),
    (superseded_decision, lease): (&Decision, Option<&Lease>),
    latest: Option<Release>,
) -> Result<Registered, StoreError> {
    if let Some(latest) = latest.filter(|r| r.version == new.version) {
        return Ok(Registered {
            release: latest,
            created: false,
            superseded: Vec::new(),
        });
    }

    // The new row first, so the superseded rows' decisions and
    // `superseded_by` point at a release that exists.
    tx.prepare_cached(
        "INSERT INTO releases (id, service, environment, version, previous_version,
             annotations, status, started_at, next_check_at, ended_at, acked, superseded_by,
             lease_owner, lease_expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, 0, NULL, ?10, ?11)",
    )?
    .execute(params![
        id,
        new.service,
        environment,
        new.version,
        new.previous_version,
        rows::to_json(&new.annotations, "releases.annotations")?,
        ReleaseStatus::Watching.as_str(),
        now,
        first_check_at,
        lease.map(|l| &l.owner),
        lease.map(|l| l.expires_at),
    ])?;

    let superseded: Vec<String> = tx
        .prepare_cached(
            "SELECT id FROM releases
             WHERE service = ?1 AND environment = ?2 AND status = ?3 AND id <> ?4
             ORDER BY seq",
        )?
        .query_map(
            params![
                new.service,
                environment,
                ReleaseStatus::Watching.as_str(),
                id
            ],
            |r| r.get(0),
        )?
        .collect::<Result<_, _>>()?;
    for old in &superseded {
        tx.prepare_cached(
            "UPDATE releases SET status = ?2, superseded_by = ?3, next_check_at = NULL,
                 ended_at = ?4
             WHERE id = ?1",
        )?
        .execute(params![old, ReleaseStatus::Superseded.as_str(), id, now])?;
        insert_decision(tx, old, superseded_decision)?;
    }

    // The row as just written (what reading it back would give).
    let release = Release {
        id: id.to_owned(),
        service: new.service.clone(),
        environment: environment.to_owned(),
        version: new.version.clone(),
        previous_version: new.previous_version.clone(),
        annotations: new.annotations.clone(),
        status: ReleaseStatus::Watching,
        started_at: now,
        next_check_at: Some(first_check_at),
        ended_at: None,
        acked: false,
        superseded_by: None,
    };
    Ok(Registered {
        release,
        created: true,
        superseded,
    })
}

pub(super) fn commit_tick(
    tx: &Transaction<'_>,
    release_id: &str,
    tick: &TickCommit,
) -> Result<TickApplied, StoreError> {
    if status_of(tx, release_id)? != Some(ReleaseStatus::Watching) {
        return Ok(TickApplied::NotWatching);
    }
    if let Some(owner) = &tick.lease_owner {
        if lease_owner(tx, release_id)?.as_deref() != Some(owner.as_str()) {
            return Ok(TickApplied::LeaseLost);
        }
    }
    {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO checks (release_id, name, state, level, value, tracker,
                 evaluated_until, updated_at, logs)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (release_id, name) DO UPDATE SET
                 state = excluded.state, level = excluded.level, value = excluded.value,
                 tracker = excluded.tracker, evaluated_until = excluded.evaluated_until,
                 updated_at = excluded.updated_at, logs = excluded.logs",
        )?;
        for c in &tick.checks {
            upsert.execute(params![
                release_id,
                c.name,
                c.state.as_str(),
                c.level.as_str(),
                c.value,
                rows::to_json(&c.tracker, "checks.tracker")?,
                c.evaluated_until,
                c.updated_at,
                if c.logs.is_empty() {
                    None
                } else {
                    Some(rows::to_json(&c.logs, "checks.logs")?)
                }
            ])?;
        }
    }
    for d in &tick.decisions {
        insert_decision(tx, release_id, d)?;
    }
    insert_notifications(tx, &tick.notifications)?;
    super::points::insert(tx, release_id, &tick.points)?;

    if let Some(rb) = &tick.rollback {
        if rollback(tx, release_id)?.is_none() {
            insert_rollback(tx, release_id, rb)?;
            set_rolling_back(tx, release_id)?;
            return Ok(TickApplied::Applied {
                rollback_requested: true,
            });
        }
    }
    tx.prepare_cached("UPDATE releases SET next_check_at = ?2 WHERE id = ?1")?
        .execute(params![release_id, tick.next_check_at])?;
    if let Some(status) = tick.status {
        set_status(tx, release_id, status, tick.now)?;
    }
    Ok(TickApplied::Applied {
        rollback_requested: false,
    })
}

pub(super) fn transition(
    tx: &Transaction<'_>,
    release_id: &str,
    from: &[ReleaseStatus],
    to: ReleaseStatus,
    decision: &Decision,
    now: Millis,
) -> Result<Option<Release>, StoreError> {
    match status_of(tx, release_id)? {
        Some(current) if from.contains(&current) => {}
        _ => return Ok(None),
    }
    set_status(tx, release_id, to, now)?;
    insert_decision(tx, release_id, decision)?;
    release(tx, release_id)
}

pub(super) fn request_rollback(
    tx: &Transaction<'_>,
    release_id: &str,
    record: &RollbackRecord,
    decision: &Decision,
) -> Result<RollbackRequest, StoreError> {
    let Some(status) = status_of(tx, release_id)? else {
        return Ok(RollbackRequest::NotFound);
    };
    if let Some(existing) = rollback(tx, release_id)? {
        return Ok(RollbackRequest::Exists(existing));
    }
    if let Some((latest_id, latest_version)) = newer_release(tx, release_id)? {
        return Ok(RollbackRequest::NotLatest {
            latest_id,
            latest_version,
        });
    }
    if !status.can_roll_back() {
        return Ok(RollbackRequest::NotAllowed(status));
    }
    insert_rollback(tx, release_id, record)?;
    set_rolling_back(tx, release_id)?;
    insert_decision(tx, release_id, decision)?;
    Ok(RollbackRequest::Requested)
}

/// The newest release (id, version) of the same (service, environment) as
/// `release_id`, if one was registered after it.
fn newer_release(
    conn: &Connection,
    release_id: &str,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT newer.id, newer.version FROM releases AS this
             JOIN releases AS newer
               ON newer.service = this.service AND newer.environment = this.environment
                  AND newer.seq > this.seq
             WHERE this.id = ?1
             ORDER BY newer.seq DESC LIMIT 1",
        )?
        .query_row([release_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

pub(super) fn finish_rollback(
    tx: &Transaction<'_>,
    release_id: &str,
    outcome: &Outcome,
    decision: &Decision,
    notifications: &[NotificationRecord],
) -> Result<(), StoreError> {
    let Some(release_status) = outcome.state.release_status() else {
        return Err(StoreError::Backend(format!(
            "finish_rollback of release {release_id}: {} is not an outcome",
            outcome.state.as_str()
        )));
    };
    let Some(current) = rollback(tx, release_id)? else {
        return Err(StoreError::Backend(format!(
            "release {release_id} has no rollback to finish"
        )));
    };
    if !matches!(
        current.state,
        RollbackState::Requested | RollbackState::Running
    ) {
        // The first recorded outcome is the truth; a second one changes nothing.
        tracing::warn!(
            release = %release_id,
            recorded = current.state.as_str(),
            ignored = outcome.state.as_str(),
            "rollback outcome already recorded; ignoring a second one"
        );
        return Ok(());
    }
    tx.prepare_cached(
        "UPDATE rollbacks SET state = ?2, exit_code = ?3, output = ?4, finished_at = ?5
         WHERE release_id = ?1",
    )?
    .execute(params![
        release_id,
        outcome.state.as_str(),
        outcome.exit_code,
        outcome.output,
        outcome.now
    ])?;
    set_status(tx, release_id, release_status, outcome.now)?;
    insert_decision(tx, release_id, decision)?;
    insert_notifications(tx, notifications)?;
    Ok(())
}

/// The owned arguments of `finish_rollback`.
pub(super) struct Outcome {
    pub(super) state: RollbackState,
    pub(super) exit_code: Option<i32>,
    pub(super) output: Option<String>,
    pub(super) now: Millis,
}

pub(super) fn release_details(
    tx: &Transaction<'_>,
    release_id: &str,
) -> Result<Option<ReleaseDetails>, StoreError> {
    let Some(release) = release(tx, release_id)? else {
        return Ok(None);
    };
    let sql =
        format!("SELECT {DECISION_COLUMNS} FROM decisions WHERE release_id = ?1 ORDER BY at, id");
    let decisions = tx
        .prepare_cached(&sql)?
        .query_map([release_id], rows::decision)?
        .collect::<Result<_, _>>()?;
    let sql = format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE release_id = ?1
         ORDER BY created_at, key"
    );
    let notifications = tx
        .prepare_cached(&sql)?
        .query_map([release_id], rows::notification)?
        .collect::<Result<_, _>>()?;
    Ok(Some(ReleaseDetails {
        release,
        checks: checks(tx, release_id)?,
        decisions,
        notifications,
        rollback: rollback(tx, release_id)?,
    }))
}

pub(super) fn list_releases(
    tx: &Transaction<'_>,
    filter: &ReleaseFilter,
) -> Result<Vec<Release>, StoreError> {
    let (sql, args) = list_query(filter);
    let out = tx
        .prepare_cached(&sql)?
        .query_map(rusqlite::params_from_iter(args), rows::release)?
        .collect::<Result<_, _>>()?;
    Ok(out)
}

/// The statement of [`list_releases`] and its arguments: newest first by
/// start, then registration. Unfiltered, and filtered by status, it walks
/// an index in that order (`releases_by_start`, `releases_by_status`) and
/// stops at the limit.
fn list_query(filter: &ReleaseFilter) -> (String, Vec<Value>) {
    let mut clauses = Vec::new();
    let mut args = Vec::new();
    if let Some(service) = &filter.service {
        clauses.push("service = ?");
        args.push(Value::Text(service.clone()));
    }
    if let Some(environment) = &filter.environment {
        clauses.push("environment = ?");
        args.push(Value::Text(environment.clone()));
    }
    if let Some(status) = filter.status {
        clauses.push("status = ?");
        args.push(Value::Text(status.as_str().into()));
    }
    if let Some((started_at, id)) = &filter.before {
        clauses.push(
            "(started_at < ? OR (started_at = ? AND seq < (SELECT seq FROM releases WHERE id = ?)))",
        );
        args.push(Value::Integer(*started_at));
        args.push(Value::Integer(*started_at));
        args.push(Value::Text(id.clone()));
    }
    let limit = match filter.limit {
        0 => DEFAULT_LIST_LIMIT,
        n => n.min(MAX_LIST_LIMIT),
    };
    args.push(Value::Integer(limit as i64));
    let mut sql = format!("SELECT {RELEASE_COLUMNS} FROM releases");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(" ORDER BY started_at DESC, seq DESC LIMIT ?");
    (sql, args)
}

pub(super) fn active_releases(tx: &Transaction<'_>) -> Result<Vec<Release>, StoreError> {
    let sql = format!(
        "SELECT {RELEASE_COLUMNS} FROM releases WHERE status IN (?1, ?2)
         ORDER BY started_at, seq"
    );
    let out = tx
        .prepare_cached(&sql)?
        .query_map(
            [
                ReleaseStatus::Watching.as_str(),
                ReleaseStatus::RollingBack.as_str(),
            ],
            rows::release,
        )?
        .collect::<Result<_, _>>()?;
    Ok(out)
}

pub(super) fn resumable_releases(tx: &Transaction<'_>) -> Result<ResumableReleases, StoreError> {
    let known = ReleaseStatus::ALL
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {RELEASE_COLUMNS} FROM releases
         WHERE status IN (?1, ?2) OR status NOT IN ({known})
         ORDER BY started_at, seq"
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let mut rows = stmt.query([
        ReleaseStatus::Watching.as_str(),
        ReleaseStatus::RollingBack.as_str(),
    ])?;
    let mut out = ResumableReleases::default();
    // A failure to step is the store's; a row that does not map is the row's.
    while let Some(row) = rows.next()? {
        match rows::release(row) {
            Ok(r) => out.releases.push(r),
            Err(e) => {
                let id = match row.get_ref(0)? {
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    other => format!("{other:?}"),
                };
                out.unreadable.push(UnreadableRelease {
                    id,
                    error: StoreError::from(e).to_string(),
                });
            }
        }
    }
    Ok(out)
}

pub(super) fn probe_write(
    tx: &Transaction<'_>,
    owner: &str,
    now: Millis,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO heartbeats (owner, at) VALUES (?1, ?2)
         ON CONFLICT (owner) DO UPDATE SET at = excluded.at",
    )?
    .execute(params![owner, now])?;
    Ok(())
}

pub(super) fn delivery_release(
    tx: &Transaction<'_>,
    source: &str,
    id: &str,
) -> Result<Option<String>, StoreError> {
    Ok(tx
        .prepare_cached("SELECT release_id FROM deliveries WHERE source = ?1 AND id = ?2")?
        .query_row(params![source, id], |r| r.get(0))
        .optional()?)
}

pub(super) fn record_delivery(
    tx: &Transaction<'_>,
    source: &str,
    id: &str,
    release_id: &str,
    at: Millis,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO deliveries (source, id, release_id, at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (source, id) DO NOTHING",
    )?
    .execute(params![source, id, release_id, at])?;
    Ok(())
}

pub(super) fn append_audit(tx: &Transaction<'_>, r: &AuditRecord) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO audit (at, actor, action, release_id, detail, client)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        r.at,
        r.actor,
        r.action,
        r.release_id,
        r.detail,
        r.client
    ])?;
    Ok(())
}

pub(super) fn audit_log(
    tx: &Transaction<'_>,
    release_id: Option<&str>,
    limit: usize,
) -> Result<Vec<AuditRecord>, StoreError> {
    let row = |r: &rusqlite::Row<'_>| {
        Ok(AuditRecord {
            at: r.get(0)?,
            actor: r.get(1)?,
            action: r.get(2)?,
            release_id: r.get(3)?,
            detail: r.get(4)?,
            client: r.get(5)?,
        })
    };
    let columns = "at, actor, action, release_id, detail, client";
    // Newest last: the log reads in the order things happened; `limit`
    // keeps the newest.
    let mut out: Vec<AuditRecord> = match release_id {
        Some(id) => tx
            .prepare_cached(&format!(
                "SELECT {columns} FROM audit WHERE release_id = ?1 ORDER BY seq DESC LIMIT ?2"
            ))?
            .query_map(params![id, limit as i64], row)?
            .collect::<Result<_, _>>()?,
        None => tx
            .prepare_cached(&format!(
                "SELECT {columns} FROM audit ORDER BY seq DESC LIMIT ?1"
            ))?
            .query_map(params![limit as i64], row)?
            .collect::<Result<_, _>>()?,
    };
    out.reverse();
    Ok(out)
}

pub(super) fn prune_ended(
    tx: &Transaction<'_>,
    ended_before: Millis,
    limit: usize,
) -> Result<usize, StoreError> {
    let terminal: Vec<&str> = ReleaseStatus::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .map(|s| s.as_str())
        .collect();
    let list = terminal
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let ids: Vec<String> = tx
        .prepare_cached(&format!(
            "SELECT id FROM releases
             WHERE ended_at IS NOT NULL AND ended_at < ?1 AND status IN ({list})
             ORDER BY ended_at, seq LIMIT ?2"
        ))?
        .query_map(params![ended_before, limit as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        for table in [
            "checks",
            "check_points",
            "decisions",
            "notifications",
            "rollbacks",
            "deliveries",
            "audit",
        ] {
            tx.prepare_cached(&format!("DELETE FROM {table} WHERE release_id = ?1"))?
                .execute([id])?;
        }
        tx.prepare_cached("DELETE FROM releases WHERE id = ?1")?
            .execute([id])?;
    }
    Ok(ids.len())
}

pub(super) fn ack(
    tx: &Transaction<'_>,
    release_id: &str,
    decision: &Decision,
    silence: &Silence,
) -> Result<Option<Release>, StoreError> {
    let changed = tx
        .prepare_cached("UPDATE releases SET acked = 1, silence_note = ?2 WHERE id = ?1")?
        .execute(params![release_id, silence.note])?;
    if changed == 0 {
        return Ok(None);
    }
    insert_decision(tx, release_id, decision)?;
    tx.prepare_cached(
        "UPDATE notifications SET status = ?2, last_error = ?3
         WHERE release_id = ?1 AND status = ?4",
    )?
    .execute(params![
        release_id,
        DeliveryStatus::Suppressed.as_str(),
        silence.note,
        DeliveryStatus::Pending.as_str()
    ])?;
    release(tx, release_id)
}

pub(super) fn append_decision(
    tx: &Transaction<'_>,
    release_id: &str,
    decision: &Decision,
) -> Result<(), StoreError> {
    if status_of(tx, release_id)?.is_none() {
        return Err(StoreError::Backend(format!(
            "cannot append a decision: no release {release_id}"
        )));
    }
    insert_decision(tx, release_id, decision)
}

pub(super) fn enqueue(
    tx: &Transaction<'_>,
    records: &[NotificationRecord],
) -> Result<usize, StoreError> {
    insert_notifications(tx, records)
}

pub(super) fn due_notifications(
    tx: &Transaction<'_>,
    now: Millis,
    limit: usize,
    notifier: Option<&str>,
) -> Result<Vec<NotificationRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications
         WHERE status = ?1 AND next_attempt_at <= ?2 AND (?4 IS NULL OR notifier = ?4)
         ORDER BY created_at, key LIMIT ?3"
    );
    let out = tx
        .prepare_cached(&sql)?
        .query_map(
            params![DeliveryStatus::Pending.as_str(), now, limit, notifier],
            rows::notification,
        )?
        .collect::<Result<_, _>>()?;
    Ok(out)
}

pub(super) fn next_notification_due(tx: &Transaction<'_>) -> Result<Option<Millis>, StoreError> {
    Ok(tx
        .prepare_cached("SELECT MIN(next_attempt_at) FROM notifications WHERE status = ?1")?
        .query_row([DeliveryStatus::Pending.as_str()], |r| r.get(0))?)
}

/// The owned arguments of `mark_notification`.
pub(super) struct Delivery {
    pub(super) status: DeliveryStatus,
    pub(super) attempts: u32,
    pub(super) last_error: Option<String>,
    pub(super) next_attempt_at: Millis,
    pub(super) sent_at: Option<Millis>,
}

pub(super) fn mark_notification(
    tx: &Transaction<'_>,
    key: &str,
    d: &Delivery,
) -> Result<(), StoreError> {
    let changed = tx
        .prepare_cached(
            "UPDATE notifications SET status = ?2, attempts = ?3, last_error = ?4,
                 next_attempt_at = ?5, sent_at = ?6, claimed_by = NULL, claim_expires_at = NULL
             WHERE key = ?1 AND status = 'pending'",
        )?
        .execute(params![
            key,
            d.status.as_str(),
            d.attempts,
            d.last_error,
            d.next_attempt_at,
            d.sent_at
        ])?;
    if changed == 0 {
        // No longer pending (suppressed by an ack meanwhile): leave it so.
        let exists: bool = tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM notifications WHERE key = ?1)")?
            .query_row(params![key], |r| r.get(0))?;
        if !exists {
            return Err(StoreError::Backend(format!(
                "cannot mark notification {key:?}: no such outbox row"
            )));
        }
    }
    Ok(())
}

/// The exactly-once gate: only the caller whose `UPDATE` moves the row from
/// `requested` to `running` gets `true` (and is recorded as its owner), and
/// only it writes the decision and the outbox rows.
pub(super) fn claim_rollback(
    tx: &Transaction<'_>,
    release_id: &str,
    owner: &str,
    now: Millis,
    decision: &Decision,
    notifications: &[NotificationRecord],
) -> Result<bool, StoreError> {
    let changed = tx
        .prepare_cached(
            "UPDATE rollbacks SET state = ?3, started_at = ?2, claimed_by = ?5
             WHERE release_id = ?1 AND state = ?4",
        )?
        .execute(params![
            release_id,
            now,
            RollbackState::Running.as_str(),
            RollbackState::Requested.as_str(),
            owner
        ])?;
    if changed != 1 {
        return Ok(false);
    }
    insert_decision(tx, release_id, decision)?;
    insert_notifications(tx, notifications)?;
    Ok(true)
}

pub(super) fn count_by_status(
    tx: &Transaction<'_>,
) -> Result<Vec<(ReleaseStatus, u64)>, StoreError> {
    let out = tx
        .prepare_cached("SELECT status, COUNT(*) FROM releases GROUP BY status ORDER BY status")?
        .query_map([], |r| Ok((rows::release_status(r, 0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(out)
}

pub(super) fn pending_by_notifier(tx: &Transaction<'_>) -> Result<Vec<(String, u64)>, StoreError> {
    let out = tx
        .prepare_cached(
            "SELECT notifier, COUNT(*) FROM notifications WHERE status = ?1
             GROUP BY notifier ORDER BY notifier",
        )?
        .query_map([DeliveryStatus::Pending.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(out)
}

// ---- leases ---------------------------------------------------------------

/// The owner of a release's watch lease (expired or not), if any.
fn lease_owner(conn: &Connection, release_id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT lease_owner FROM releases WHERE id = ?1")?
        .query_row([release_id], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

/// Takes the watch lease if it is free, expired, or already `owner`'s.
pub(super) fn claim_watch(
    tx: &Transaction<'_>,
    release_id: &str,
    lease: &Lease,
    now: Millis,
) -> Result<bool, StoreError> {
    let changed = tx
        .prepare_cached(
            "UPDATE releases SET lease_owner = ?2, lease_expires_at = ?3
             WHERE id = ?1
               AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_expires_at <= ?4)",
        )?
        .execute(params![release_id, lease.owner, lease.expires_at, now])?;
    Ok(changed == 1)
}

/// Extends the lease only while `owner` still holds it.
pub(super) fn renew_watch(
    tx: &Transaction<'_>,
    release_id: &str,
    lease: &Lease,
) -> Result<bool, StoreError> {
    let changed = tx
        .prepare_cached(
            "UPDATE releases SET lease_expires_at = ?3 WHERE id = ?1 AND lease_owner = ?2",
        )?
        .execute(params![release_id, lease.owner, lease.expires_at])?;
    Ok(changed == 1)
}

/// Gives the lease up if `owner` holds it.
pub(super) fn release_watch(
    tx: &Transaction<'_>,
    release_id: &str,
    owner: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE releases SET lease_owner = NULL, lease_expires_at = NULL
         WHERE id = ?1 AND lease_owner = ?2",
    )?
    .execute(params![release_id, owner])?;
    Ok(())
}

/// Claims a pending outbox row for delivery if it is unclaimed, its claim
/// expired, or `owner` already holds it.
pub(super) fn claim_notification(
    tx: &Transaction<'_>,
    key: &str,
    lease: &Lease,
    now: Millis,
) -> Result<bool, StoreError> {
    let changed = tx
        .prepare_cached(
            "UPDATE notifications SET claimed_by = ?2, claim_expires_at = ?3
             WHERE key = ?1 AND status = ?5
               AND (claimed_by IS NULL OR claimed_by = ?2 OR claim_expires_at <= ?4)",
        )?
        .execute(params![
            key,
            lease.owner,
            lease.expires_at,
            now,
            DeliveryStatus::Pending.as_str()
        ])?;
    Ok(changed == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQLite plans for `filter`'s list: one line per step.
    fn plan(conn: &Connection, filter: &ReleaseFilter) -> Vec<String> {
        let (sql, args) = list_query(filter);
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_list_by_status_or_of_everything_reads_its_page_from_an_index_unsorted() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        let cursor = Some((1_000, "r1".to_string()));
        for (filter, index) in [
            (ReleaseFilter::default(), "releases_by_start"),
            (
                ReleaseFilter {
                    before: cursor.clone(),
                    ..ReleaseFilter::default()
                },
                "releases_by_start",
            ),
            (
                ReleaseFilter {
                    status: Some(ReleaseStatus::Superseded),
                    ..ReleaseFilter::default()
                },
                "releases_by_status",
            ),
            (
                ReleaseFilter {
                    status: Some(ReleaseStatus::Watching),
                    before: cursor.clone(),
                    limit: 20,
                    ..ReleaseFilter::default()
                },
                "releases_by_status",
            ),
        ] {
            let plan = plan(&conn, &filter);
            // Sorting would read every release the filter matches.
            assert!(
                !plan.iter().any(|step| step.contains("TEMP B-TREE")),
                "{filter:?}: {plan:?}"
            );
            assert!(
                plan.iter().any(|step| step.contains(index)),
                "{filter:?}: {plan:?}"
            );
        }
    }
}
