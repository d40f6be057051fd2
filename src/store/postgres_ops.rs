//! The SQL of the PostgreSQL store: one function per
//! [`Store`](crate::store::Store) method, each run inside the transaction
//! [`super::PostgresStore`] opened for it (they never commit).
//!
//! Where SQLite serializes every write behind its one write lock, here the
//! check-then-write of each method takes the lock it needs:
//! - the release row (`SELECT ... FOR UPDATE`) before a tick's commit, a
//!   transition, a rollback request or outcome, so the lease and the status
//!   checked are the ones the write lands on (fencing);
//! - a transaction-scoped advisory lock on (service, environment) while
//!   registering and while requesting a manual rollback, so two replicas
//!   registering the same service never both insert a "latest" release;
//! - the release row `FOR SHARE` while inserting outbox rows, so an ack
//!   (which updates that row) and an enqueue never interleave: a page is
//!   either suppressed by the ack or inserted after it with its silence;
//! - claims (watch, outbox row, rollback) are conditional `UPDATE`s, which
//!   PostgreSQL re-checks after waiting for a concurrent writer, so two
//!   claims never both succeed.

use super::rows::{
    self, CHECK_COLUMNS, DECISION_COLUMNS, NOTIFICATION_COLUMNS, RELEASE_COLUMNS, ROLLBACK_COLUMNS,
};
use super::Tx;
use crate::model::{
    AuditRecord, CheckPoint, CheckRecord, Decision, DeliveryStatus, Millis, NewRelease,
    NotificationRecord, Release, ReleaseStatus, RollbackRecord, RollbackState,
    MAX_POINTS_PER_CHECK,
};
use crate::store::{
    BatchRegistered, Lease, Registered, Registration, ReleaseDetails, ReleaseFilter,
    ResumableReleases, RollbackRequest, Silence, StoreError, TickApplied, TickCommit,
    UnreadableRelease,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

type Param<'a> = &'a (dyn ToSql + Sync);

const DEFAULT_LIST_LIMIT: usize = 100;
const MAX_LIST_LIMIT: usize = 1000;

// ---- statement helpers ----------------------------------------------------

async fn query(tx: &Tx<'_>, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
    let st = tx.prepare_cached(sql).await?;
    Ok(tx.query(&st, params).await?)
}

async fn query_opt(
    tx: &Tx<'_>,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Option<Row>, StoreError> {
    let st = tx.prepare_cached(sql).await?;
    Ok(tx.query_opt(&st, params).await?)
}

async fn execute(tx: &Tx<'_>, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
    let st = tx.prepare_cached(sql).await?;
    Ok(tx.execute(&st, params).await?)
}

fn to_json<T: serde::Serialize>(value: &T, column: &str) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("cannot serialize {column}: {e}")))
}

/// A literal SQL list of status names (`'a', 'b'`): constants of this build.
fn status_list(statuses: impl Iterator<Item = ReleaseStatus>) -> String {
    statuses
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---- statements shared by several methods --------------------------------

pub(super) async fn release(tx: &Tx<'_>, id: &str) -> Result<Option<Release>, StoreError> {
    let sql = format!("SELECT {RELEASE_COLUMNS} FROM releases WHERE id = $1");
    query_opt(tx, &sql, &[&id])
        .await?
        .map(|r| rows::release(&r))
        .transpose()
}

/// The release's status and lease owner, its row locked until the
/// transaction ends.
async fn lock_release(
    tx: &Tx<'_>,
    id: &str,
) -> Result<Option<(ReleaseStatus, Option<String>)>, StoreError> {
    let Some(row) = query_opt(
        tx,
        "SELECT status, lease_owner FROM releases WHERE id = $1 FOR UPDATE",
        &[&id],
    )
    .await?
    else {
        return Ok(None);
    };
    Ok(Some((
        rows::release_status(&row, 0)?,
        rows::get(&row, 1, "releases.lease_owner")?,
    )))
}

/// Serializes registrations (and manual rollback requests) of one
/// (service, environment) until the transaction ends.
async fn lock_service(tx: &Tx<'_>, service: &str, environment: &str) -> Result<(), StoreError> {
    let key = format!("{service}\u{1}{environment}");
    execute(
        tx,
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&key],
    )
    .await?;
    Ok(())
}

pub(super) async fn rollback(
    tx: &Tx<'_>,
    release_id: &str,
) -> Result<Option<RollbackRecord>, StoreError> {
    let sql = format!("SELECT {ROLLBACK_COLUMNS} FROM rollbacks WHERE release_id = $1");
    query_opt(tx, &sql, &[&release_id])
        .await?
        .map(|r| rows::rollback(&r))
        .transpose()
}

pub(super) async fn checks(tx: &Tx<'_>, release_id: &str) -> Result<Vec<CheckRecord>, StoreError> {
    let sql = format!("SELECT {CHECK_COLUMNS} FROM checks WHERE release_id = $1 ORDER BY name");
    rows::all(&query(tx, &sql, &[&release_id]).await?, rows::check)
}

async fn insert_decision(tx: &Tx<'_>, release_id: &str, d: &Decision) -> Result<(), StoreError> {
    let evidence = d.evidence.as_ref().map(|e| e.to_string());
    execute(
        tx,
        "INSERT INTO decisions (release_id, at, check_name, level, action, reason, observed_at, evidence)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &release_id,
            &d.at,
            &d.check,
            &d.level.map(|l| l.as_str()),
            &d.action.as_str(),
            &d.reason,
            &d.observed_at,
            &evidence,
        ],
    )
    .await?;
    Ok(())
}

/// Inserts outbox rows, ignoring existing keys; returns how many were new.
/// A `pending` row of an acked release is stored with the ack's silence
/// (the release row is read `FOR SHARE`, so an ack cannot slip in between).
async fn insert_notifications(
    tx: &Tx<'_>,
    records: &[NotificationRecord],
) -> Result<usize, StoreError> {
    let mut inserted = 0;
    for n in records {
        let silenced: Option<String> = match n.status {
            DeliveryStatus::Pending => query_opt(
                tx,
                "SELECT silence_note FROM releases WHERE id = $1 FOR SHARE",
                &[&n.message.release_id],
            )
            .await?
            .map(|r| rows::get::<Option<String>>(&r, 0, "releases.silence_note"))
            .transpose()?
            .flatten(),
            _ => None,
        };
        let (status, last_error) = match silenced {
            Some(note) => (DeliveryStatus::Suppressed, Some(note)),
            None => (n.status, n.last_error.clone()),
        };
        let message = to_json(&n.message, "notifications.message")?;
        inserted += execute(
            tx,
            "INSERT INTO notifications (key, release_id, notifier, message, status,
                 attempts, last_error, created_at, sent_at, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (key) DO NOTHING",
            &[
                &n.key,
                &n.message.release_id,
                &n.notifier,
                &message,
                &status.as_str(),
                &i64::from(n.attempts),
                &last_error,
                &n.created_at,
                &n.sent_at,
                &n.next_attempt_at,
            ],
        )
        .await?;
    }
    Ok(inserted as usize)
}

async fn insert_rollback(
    tx: &Tx<'_>,
    release_id: &str,
    rb: &RollbackRecord,
) -> Result<(), StoreError> {
    execute(
        tx,
        "INSERT INTO rollbacks (release_id, state, reason, triggered_by, requested_at,
             started_at, finished_at, exit_code, output)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &release_id,
            &rb.state.as_str(),
            &rb.reason,
            &rb.trigger,
            &rb.requested_at,
            &rb.started_at,
            &rb.finished_at,
            &rb.exit_code,
            &rb.output,
        ],
    )
    .await?;
    Ok(())
}

async fn set_status(
    tx: &Tx<'_>,
    id: &str,
    to: ReleaseStatus,
    now: Millis,
) -> Result<(), StoreError> {
    if to.is_terminal() {
        execute(
            tx,
            "UPDATE releases SET status = $2, next_check_at = NULL, ended_at = $3 WHERE id = $1",
            &[&id, &to.as_str(), &now],
        )
        .await?;
    } else {
        execute(
            tx,
            "UPDATE releases SET status = $2 WHERE id = $1",
            &[&id, &to.as_str()],
        )
        .await?;
    }
    Ok(())
}

async fn set_rolling_back(tx: &Tx<'_>, id: &str) -> Result<(), StoreError> {
    execute(
        tx,
        "UPDATE releases SET status = $2, next_check_at = NULL WHERE id = $1",
        &[&id, &ReleaseStatus::RollingBack.as_str()],
    )
    .await?;
    Ok(())
}

// ---- one function per transaction ----------------------------------------

pub(super) async fn register(
    tx: &Tx<'_>,
    new: &NewRelease,
    environment: &str,
    id: &str,
    now: Millis,
    first_check_at: Millis,
    superseded_decision: &Decision,
) -> Result<Registered, StoreError> {
    let latest = lock_latest(tx, &new.service, environment).await?;
    let at = (now, first_check_at);
    register_after(tx, new, environment, id, at, superseded_decision, latest).await
}

/// Locks the (service, environment) for registering (until the transaction
/// ends) and reads its latest release.
async fn lock_latest(
    tx: &Tx<'_>,
    service: &str,
    environment: &str,
) -> Result<Option<Release>, StoreError> {
    lock_service(tx, service, environment).await?;
    let sql = format!(
        "SELECT {RELEASE_COLUMNS} FROM releases
         WHERE service = $1 AND environment = $2 ORDER BY seq DESC LIMIT 1"
    );
    query_opt(tx, &sql, &[&service, &environment])
        .await?
        .map(|r| rows::release(&r))
        .transpose()
}

/// One registration of a batch ([`crate::store::Store::register_batch`]):
/// the release, the new watch's lease, the audit record and the delivery,
/// in the caller's transaction (the caller wraps it in a savepoint).
pub(super) async fn register_item(
    tx: &Tx<'_>,
    item: Registration,
) -> Result<BatchRegistered, StoreError> {
    let Registration {
        mut new,
        environment,
        id,
        now,
        plan,
        superseded,
        lease,
        audit,
        delivery,
    } = item;
    let latest = lock_latest(tx, &new.service, &environment).await?;
    let first_check_at = plan(&mut new, latest.as_ref());
    let at = (now, first_check_at);
    let registered = register_after(tx, &new, &environment, &id, at, &superseded, latest).await?;
    let claimed = match &lease {
        Some(lease) if registered.created => {
            claim_watch(tx, &registered.release.id, lease, now).await?
        }
        _ => false,
    };
    if let Some(audit) = audit {
        append_audit(tx, &audit(&registered)).await?;
    }
    if let Some((source, delivery)) = &delivery {
        record_delivery(tx, source, delivery, &registered.release.id, now).await?;
    }
    Ok(BatchRegistered {
        registered,
        claimed,
    })
}

/// [`register`] once the (service, environment) is locked and its latest
/// release read; `(now, first_check_at)`.
async fn register_after(
    tx: &Tx<'_>,
    new: &NewRelease,
    environment: &str,
    id: &str,
    (now, first_check_at): (Millis, Millis),
    superseded_decision: &Decision,
    latest: Option<Release>,
) -> Result<Registered, StoreError> {
    if let Some(latest) = latest.filter(|r| r.version == new.version) {
        return Ok(Registered {
            release: latest,
            created: false,
            superseded: Vec::new(),
        });
    }
    let annotations = to_json(&new.annotations, "releases.annotations")?;
    execute(
        tx,
        "INSERT INTO releases (id, service, environment, version, previous_version,
             annotations, status, started_at, next_check_at, ended_at, acked, superseded_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, FALSE, NULL)",
        &[
            &id,
            &new.service,
            &environment,
            &new.version,
            &new.previous_version,
            &annotations,
            &ReleaseStatus::Watching.as_str(),
            &now,
            &first_check_at,
        ],
    )
    .await?;
    let superseded: Vec<String> = query(
        tx,
        "SELECT id FROM releases
         WHERE service = $1 AND environment = $2 AND status = $3 AND id <> $4
         ORDER BY seq FOR UPDATE",
        &[
            &new.service,
            &environment,
            &ReleaseStatus::Watching.as_str(),
            &id,
        ],
    )
    .await?
    .iter()
    .map(|r| rows::get(r, 0, "releases.id"))
    .collect::<Result<_, _>>()?;
    for old in &superseded {
        execute(
            tx,
            "UPDATE releases SET status = $2, superseded_by = $3, next_check_at = NULL,
                 ended_at = $4
             WHERE id = $1",
            &[old, &ReleaseStatus::Superseded.as_str(), &id, &now],
        )
        .await?;
        insert_decision(tx, old, superseded_decision).await?;
    }
    let release = release(tx, id)
        .await?
        .ok_or_else(|| StoreError::Backend(format!("release {id} vanished after insert")))?;
    Ok(Registered {
        release,
        created: true,
        superseded,
    })
}

pub(super) async fn commit_tick(
    tx: &Tx<'_>,
    release_id: &str,
    tick: &TickCommit,
) -> Result<TickApplied, StoreError> {
    let Some((status, holder)) = lock_release(tx, release_id).await? else {
        return Ok(TickApplied::NotWatching);
    };
    if status != ReleaseStatus::Watching {
        return Ok(TickApplied::NotWatching);
    }
    if let Some(owner) = &tick.lease_owner {
        if holder.as_deref() != Some(owner.as_str()) {
            return Ok(TickApplied::LeaseLost);
        }
    }
    for c in &tick.checks {
        let tracker = to_json(&c.tracker, "checks.tracker")?;
        let logs = if c.logs.is_empty() {
            None
        } else {
            Some(to_json(&c.logs, "checks.logs")?)
        };
        execute(
            tx,
            "INSERT INTO checks (release_id, name, state, level, value, tracker,
                 evaluated_until, updated_at, logs)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (release_id, name) DO UPDATE SET
                 state = excluded.state, level = excluded.level, value = excluded.value,
                 tracker = excluded.tracker, evaluated_until = excluded.evaluated_until,
                 updated_at = excluded.updated_at, logs = excluded.logs",
            &[
                &release_id,
                &c.name,
                &c.state.as_str(),
                &c.level.as_str(),
                &c.value,
                &tracker,
                &c.evaluated_until,
                &c.updated_at,
                &logs,
            ],
        )
        .await?;
    }
    for d in &tick.decisions {
        insert_decision(tx, release_id, d).await?;
    }
    insert_notifications(tx, &tick.notifications).await?;
    insert_points(tx, release_id, &tick.points).await?;
    if let Some(rb) = &tick.rollback {
        if rollback(tx, release_id).await?.is_none() {
            insert_rollback(tx, release_id, rb).await?;
            set_rolling_back(tx, release_id).await?;
            return Ok(TickApplied::Applied {
                rollback_requested: true,
            });
        }
    }
    execute(
        tx,
        "UPDATE releases SET next_check_at = $2 WHERE id = $1",
        &[&release_id, &tick.next_check_at],
    )
    .await?;
    if let Some(status) = tick.status {
        set_status(tx, release_id, status, tick.now).await?;
    }
    Ok(TickApplied::Applied {
        rollback_requested: false,
    })
}

/// Writes charted points (an instant already stored is overwritten) and
/// keeps the newest [`MAX_POINTS_PER_CHECK`] of each touched check.
async fn insert_points(
    tx: &Tx<'_>,
    release_id: &str,
    points: &[CheckPoint],
) -> Result<(), StoreError> {
    let mut touched = std::collections::BTreeSet::new();
    for p in points {
        execute(
            tx,
            "INSERT INTO check_points (release_id, check_name, at, value)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (release_id, check_name, at) DO UPDATE SET value = excluded.value",
            &[
                &release_id,
                &p.check,
                &p.at,
                &p.value.filter(|v| v.is_finite()),
            ],
        )
        .await?;
        touched.insert(p.check.as_str());
    }
    for check in touched {
        execute(
            tx,
            "DELETE FROM check_points WHERE release_id = $1 AND check_name = $2 AND at <= (
                 SELECT at FROM check_points WHERE release_id = $1 AND check_name = $2
                 ORDER BY at DESC LIMIT 1 OFFSET $3)",
            &[&release_id, &check, &(MAX_POINTS_PER_CHECK as i64)],
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn check_points(
    tx: &Tx<'_>,
    release_id: &str,
) -> Result<Vec<CheckPoint>, StoreError> {
    query(
        tx,
        "SELECT check_name, at, value FROM check_points WHERE release_id = $1
         ORDER BY check_name, at",
        &[&release_id],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(CheckPoint {
            check: rows::get(r, 0, "check_points.check_name")?,
            at: rows::get(r, 1, "check_points.at")?,
            value: rows::get(r, 2, "check_points.value")?,
        })
    })
    .collect()
}

pub(super) async fn transition(
    tx: &Tx<'_>,
    release_id: &str,
    from: &[ReleaseStatus],
    to: ReleaseStatus,
    decision: &Decision,
    now: Millis,
) -> Result<Option<Release>, StoreError> {
    match lock_release(tx, release_id).await? {
        Some((current, _)) if from.contains(&current) => {}
        _ => return Ok(None),
    }
    set_status(tx, release_id, to, now).await?;
    insert_decision(tx, release_id, decision).await?;
    release(tx, release_id).await
}

pub(super) async fn request_rollback(
    tx: &Tx<'_>,
    release_id: &str,
    record: &RollbackRecord,
    decision: &Decision,
) -> Result<RollbackRequest, StoreError> {
    let Some(this) = release(tx, release_id).await? else {
        return Ok(RollbackRequest::NotFound);
    };
    // No registration of this service slips in between the check and the write.
    lock_service(tx, &this.service, &this.environment).await?;
    let Some((status, _)) = lock_release(tx, release_id).await? else {
        return Ok(RollbackRequest::NotFound);
    };
    if let Some(existing) = rollback(tx, release_id).await? {
        return Ok(RollbackRequest::Exists(existing));
    }
    if let Some(row) = query_opt(
        tx,
        "SELECT newer.id, newer.version FROM releases AS this
         JOIN releases AS newer
           ON newer.service = this.service AND newer.environment = this.environment
              AND newer.seq > this.seq
         WHERE this.id = $1
         ORDER BY newer.seq DESC LIMIT 1",
        &[&release_id],
    )
    .await?
    {
        return Ok(RollbackRequest::NotLatest {
            latest_id: rows::get(&row, 0, "releases.id")?,
            latest_version: rows::get(&row, 1, "releases.version")?,
        });
    }
    if !status.can_roll_back() {
        return Ok(RollbackRequest::NotAllowed(status));
    }
    insert_rollback(tx, release_id, record).await?;
    set_rolling_back(tx, release_id).await?;
    insert_decision(tx, release_id, decision).await?;
    Ok(RollbackRequest::Requested)
}

/// The owned arguments of `finish_rollback`.
pub(super) struct Outcome<'a> {
    pub(super) state: RollbackState,
    pub(super) exit_code: Option<i32>,
    pub(super) output: Option<&'a str>,
    pub(super) now: Millis,
}

pub(super) async fn finish_rollback(
    tx: &Tx<'_>,
    release_id: &str,
    outcome: &Outcome<'_>,
    decision: &Decision,
    notifications: &[NotificationRecord],
) -> Result<(), StoreError> {
    let Some(release_status) = outcome.state.release_status() else {
        return Err(StoreError::Backend(format!(
            "finish_rollback of release {release_id}: {} is not an outcome",
            outcome.state.as_str()
        )));
    };
    let sql = format!("SELECT {ROLLBACK_COLUMNS} FROM rollbacks WHERE release_id = $1 FOR UPDATE");
    let Some(current) = query_opt(tx, &sql, &[&release_id])
        .await?
        .map(|r| rows::rollback(&r))
        .transpose()?
    else {
        return Err(StoreError::Backend(format!(
            "release {release_id} has no rollback to finish"
        )));
    };
    if !matches!(
        current.state,
        RollbackState::Requested | RollbackState::Running
    ) {
        tracing::warn!(
            release = %release_id,
            recorded = current.state.as_str(),
            ignored = outcome.state.as_str(),
            "rollback outcome already recorded; ignoring a second one"
        );
        return Ok(());
    }
    execute(
        tx,
        "UPDATE rollbacks SET state = $2, exit_code = $3, output = $4, finished_at = $5
         WHERE release_id = $1",
        &[
            &release_id,
            &outcome.state.as_str(),
            &outcome.exit_code,
            &outcome.output,
            &outcome.now,
        ],
    )
    .await?;
    set_status(tx, release_id, release_status, outcome.now).await?;
    insert_decision(tx, release_id, decision).await?;
    insert_notifications(tx, notifications).await?;
    Ok(())
}

pub(super) async fn release_details(
    tx: &Tx<'_>,
    release_id: &str,
) -> Result<Option<ReleaseDetails>, StoreError> {
    let Some(release) = release(tx, release_id).await? else {
        return Ok(None);
    };
    let sql =
        format!("SELECT {DECISION_COLUMNS} FROM decisions WHERE release_id = $1 ORDER BY at, id");
    let decisions = rows::all(&query(tx, &sql, &[&release_id]).await?, rows::decision)?;
    let sql = format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE release_id = $1
         ORDER BY created_at, key"
    );
    let notifications = rows::all(&query(tx, &sql, &[&release_id]).await?, rows::notification)?;
    Ok(Some(ReleaseDetails {
        release,
        checks: checks(tx, release_id).await?,
        decisions,
        notifications,
        rollback: rollback(tx, release_id).await?,
    }))
}

pub(super) async fn list_releases(
    tx: &Tx<'_>,
    filter: &ReleaseFilter,
) -> Result<Vec<Release>, StoreError> {
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let arg = |args: &mut Vec<Box<dyn ToSql + Sync + Send>>, v: Box<dyn ToSql + Sync + Send>| {
        args.push(v);
        format!("${}", args.len())
    };
    if let Some(service) = &filter.service {
        let p = arg(&mut args, Box::new(service.clone()));
        clauses.push(format!("service = {p}"));
    }
    if let Some(environment) = &filter.environment {
        let p = arg(&mut args, Box::new(environment.clone()));
        clauses.push(format!("environment = {p}"));
    }
    if let Some(status) = filter.status {
        let p = arg(&mut args, Box::new(status.as_str().to_owned()));
        clauses.push(format!("status = {p}"));
    }
    if let Some((started_at, id)) = &filter.before {
        let at = arg(&mut args, Box::new(*started_at));
        let id = arg(&mut args, Box::new(id.clone()));
        clauses.push(format!(
            "(started_at < {at} OR (started_at = {at} AND seq < (SELECT seq FROM releases WHERE id = {id})))"
        ));
    }
    let limit = match filter.limit {
        0 => DEFAULT_LIST_LIMIT,
        n => n.min(MAX_LIST_LIMIT),
    };
    let limit = arg(&mut args, Box::new(limit as i64));
    let mut sql = format!("SELECT {RELEASE_COLUMNS} FROM releases");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(&format!(
        " ORDER BY started_at DESC, seq DESC LIMIT {limit}"
    ));
    let params: Vec<Param<'_>> = args.iter().map(|a| a.as_ref() as Param<'_>).collect();
    rows::all(&query(tx, &sql, &params).await?, rows::release)
}

pub(super) async fn active_releases(tx: &Tx<'_>) -> Result<Vec<Release>, StoreError> {
    let sql = format!(
        "SELECT {RELEASE_COLUMNS} FROM releases WHERE status IN ($1, $2)
         ORDER BY started_at, seq"
    );
    let found = query(
        tx,
        &sql,
        &[
            &ReleaseStatus::Watching.as_str(),
            &ReleaseStatus::RollingBack.as_str(),
        ],
    )
    .await?;
    rows::all(&found, rows::release)
}

pub(super) async fn resumable_releases(tx: &Tx<'_>) -> Result<ResumableReleases, StoreError> {
    let known = status_list(ReleaseStatus::ALL.into_iter());
    let sql = format!(
        "SELECT {RELEASE_COLUMNS} FROM releases
         WHERE status IN ($1, $2) OR status NOT IN ({known})
         ORDER BY started_at, seq"
    );
    let found = query(
        tx,
        &sql,
        &[
            &ReleaseStatus::Watching.as_str(),
            &ReleaseStatus::RollingBack.as_str(),
        ],
    )
    .await?;
    let mut out = ResumableReleases::default();
    for row in &found {
        match rows::release(row) {
            Ok(r) => out.releases.push(r),
            Err(e) => out.unreadable.push(UnreadableRelease {
                id: row.try_get::<_, String>(0).unwrap_or_default(),
                error: e.to_string(),
            }),
        }
    }
    Ok(out)
}

/// The active releases whose lease is free, expired or `owner`'s (a row
/// that cannot be read is left out: the start-up's `resumable_releases`
/// reports it).
pub(super) async fn adoptable_releases(
    tx: &Tx<'_>,
    owner: &str,
    now: Millis,
) -> Result<Vec<Release>, StoreError> {
    let sql = format!(
        "SELECT {RELEASE_COLUMNS} FROM releases
         WHERE status IN ($1, $2)
           AND (lease_owner IS NULL OR lease_owner = $3 OR lease_expires_at <= $4)
         ORDER BY started_at, seq"
    );
    let found = query(
        tx,
        &sql,
        &[
            &ReleaseStatus::Watching.as_str(),
            &ReleaseStatus::RollingBack.as_str(),
            &owner,
            &now,
        ],
    )
    .await?;
    Ok(found.iter().filter_map(|r| rows::release(r).ok()).collect())
}

pub(super) async fn probe_write(tx: &Tx<'_>, owner: &str, now: Millis) -> Result<(), StoreError> {
    execute(
        tx,
        "INSERT INTO heartbeats (owner, at) VALUES ($1, $2)
         ON CONFLICT (owner) DO UPDATE SET at = excluded.at",
        &[&owner, &now],
    )
    .await?;
    Ok(())
}

pub(super) async fn delivery_release(
    tx: &Tx<'_>,
    source: &str,
    id: &str,
) -> Result<Option<String>, StoreError> {
    query_opt(
        tx,
        "SELECT release_id FROM deliveries WHERE source = $1 AND id = $2",
        &[&source, &id],
    )
    .await?
    .map(|r| rows::get(&r, 0, "deliveries.release_id"))
    .transpose()
}

pub(super) async fn record_delivery(
    tx: &Tx<'_>,
    source: &str,
    id: &str,
    release_id: &str,
    at: Millis,
) -> Result<(), StoreError> {
    execute(
        tx,
        "INSERT INTO deliveries (source, id, release_id, at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (source, id) DO NOTHING",
        &[&source, &id, &release_id, &at],
    )
    .await?;
    Ok(())
}

pub(super) async fn append_audit(tx: &Tx<'_>, r: &AuditRecord) -> Result<(), StoreError> {
    execute(
        tx,
        "INSERT INTO audit (at, actor, action, release_id, detail, client)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &r.at,
            &r.actor,
            &r.action,
            &r.release_id,
            &r.detail,
            &r.client,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn audit_log(
    tx: &Tx<'_>,
    release_id: Option<&str>,
    limit: usize,
) -> Result<Vec<AuditRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let found = query(
        tx,
        "SELECT at, actor, action, release_id, detail, client FROM audit
         WHERE ($1::text IS NULL OR release_id = $1) ORDER BY seq DESC LIMIT $2",
        &[&release_id, &limit],
    )
    .await?;
    let mut out = found
        .iter()
        .map(|r| {
            Ok(AuditRecord {
                at: rows::get(r, 0, "audit.at")?,
                actor: rows::get(r, 1, "audit.actor")?,
                action: rows::get(r, 2, "audit.action")?,
                release_id: rows::get(r, 3, "audit.release_id")?,
                detail: rows::get(r, 4, "audit.detail")?,
                client: rows::get(r, 5, "audit.client")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    out.reverse();
    Ok(out)
}

pub(super) async fn prune_ended(
    tx: &Tx<'_>,
    ended_before: Millis,
    limit: usize,
) -> Result<usize, StoreError> {
    let terminal = status_list(ReleaseStatus::ALL.into_iter().filter(|s| s.is_terminal()));
    let sql = format!(
        "SELECT id FROM releases
         WHERE ended_at IS NOT NULL AND ended_at < $1 AND status IN ({terminal})
         ORDER BY ended_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED"
    );
    let ids: Vec<String> = query(tx, &sql, &[&ended_before, &(limit as i64)])
        .await?
        .iter()
        .map(|r| rows::get(r, 0, "releases.id"))
        .collect::<Result<_, _>>()?;
    for table in [
        "checks",
        "check_points",
        "decisions",
        "notifications",
        "rollbacks",
        "deliveries",
        "audit",
        "releases",
    ] {
        let column = if table == "releases" {
            "id"
        } else {
            "release_id"
        };
        execute(
            tx,
            &format!("DELETE FROM {table} WHERE {column} = ANY($1)"),
            &[&ids],
        )
        .await?;
    }
    Ok(ids.len())
}

pub(super) async fn ack(
    tx: &Tx<'_>,
    release_id: &str,
    decision: &Decision,
    silence: &Silence,
) -> Result<Option<Release>, StoreError> {
    let changed = execute(
        tx,
        "UPDATE releases SET acked = TRUE, silence_note = $2 WHERE id = $1",
        &[&release_id, &silence.note],
    )
    .await?;
    if changed == 0 {
        return Ok(None);
    }
    insert_decision(tx, release_id, decision).await?;
    execute(
        tx,
        "UPDATE notifications SET status = $2, last_error = $3
         WHERE release_id = $1 AND status = $4",
        &[
            &release_id,
            &DeliveryStatus::Suppressed.as_str(),
            &silence.note,
            &DeliveryStatus::Pending.as_str(),
        ],
    )
    .await?;
    release(tx, release_id).await
}

pub(super) async fn append_decision(
    tx: &Tx<'_>,
    release_id: &str,
    decision: &Decision,
) -> Result<(), StoreError> {
    if query_opt(tx, "SELECT 1 FROM releases WHERE id = $1", &[&release_id])
        .await?
        .is_none()
    {
        return Err(StoreError::Backend(format!(
            "cannot append a decision: no release {release_id}"
        )));
    }
    insert_decision(tx, release_id, decision).await
}

pub(super) async fn enqueue(
    tx: &Tx<'_>,
    records: &[NotificationRecord],
) -> Result<usize, StoreError> {
    insert_notifications(tx, records).await
}

pub(super) async fn due_notifications(
    tx: &Tx<'_>,
    now: Millis,
    limit: usize,
    notifier: Option<&str>,
) -> Result<Vec<NotificationRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications
         WHERE status = $1 AND next_attempt_at <= $2 AND ($4::text IS NULL OR notifier = $4)
         ORDER BY created_at, key LIMIT $3"
    );
    let found = query(
        tx,
        &sql,
        &[&DeliveryStatus::Pending.as_str(), &now, &limit, &notifier],
    )
    .await?;
    rows::all(&found, rows::notification)
}

pub(super) async fn next_notification_due(tx: &Tx<'_>) -> Result<Option<Millis>, StoreError> {
    let row = query_opt(
        tx,
        "SELECT MIN(next_attempt_at) FROM notifications WHERE status = $1",
        &[&DeliveryStatus::Pending.as_str()],
    )
    .await?;
    match row {
        Some(r) => rows::get(&r, 0, "notifications.next_attempt_at"),
        None => Ok(None),
    }
}

/// The owned arguments of `mark_notification`.
pub(super) struct Delivery<'a> {
    pub(super) status: DeliveryStatus,
    pub(super) attempts: u32,
    pub(super) last_error: Option<&'a str>,
    pub(super) next_attempt_at: Millis,
    pub(super) sent_at: Option<Millis>,
}

pub(super) async fn mark_notification(
    tx: &Tx<'_>,
    key: &str,
    d: &Delivery<'_>,
) -> Result<(), StoreError> {
    let changed = execute(
        tx,
        "UPDATE notifications SET status = $2, attempts = $3, last_error = $4,
             next_attempt_at = $5, sent_at = $6, claimed_by = NULL, claim_expires_at = NULL
         WHERE key = $1 AND status = 'pending'",
        &[
            &key,
            &d.status.as_str(),
            &i64::from(d.attempts),
            &d.last_error,
            &d.next_attempt_at,
            &d.sent_at,
        ],
    )
    .await?;
    if changed == 0
        && query_opt(tx, "SELECT 1 FROM notifications WHERE key = $1", &[&key])
            .await?
            .is_none()
    {
        return Err(StoreError::Backend(format!(
            "cannot mark notification {key:?}: no such outbox row"
        )));
    }
    Ok(())
}

/// The at-most-once gate: only the caller whose `UPDATE` moves the row from
/// `requested` to `running` gets `true`, and only it writes the decision and
/// the outbox rows.
pub(super) async fn claim_rollback(
    tx: &Tx<'_>,
    release_id: &str,
    owner: &str,
    now: Millis,
    decision: &Decision,
    notifications: &[NotificationRecord],
) -> Result<bool, StoreError> {
    let changed = execute(
        tx,
        "UPDATE rollbacks SET state = $3, started_at = $2, claimed_by = $5
         WHERE release_id = $1 AND state = $4",
        &[
            &release_id,
            &now,
            &RollbackState::Running.as_str(),
            &RollbackState::Requested.as_str(),
            &owner,
        ],
    )
    .await?;
    if changed != 1 {
        return Ok(false);
    }
    insert_decision(tx, release_id, decision).await?;
    insert_notifications(tx, notifications).await?;
    Ok(true)
}

pub(super) async fn count_by_status(tx: &Tx<'_>) -> Result<Vec<(ReleaseStatus, u64)>, StoreError> {
    query(
        tx,
        "SELECT status, COUNT(*) FROM releases GROUP BY status ORDER BY status",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        let n: i64 = rows::get(r, 1, "count")?;
        Ok((rows::release_status(r, 0)?, n as u64))
    })
    .collect()
}

pub(super) async fn pending_by_notifier(tx: &Tx<'_>) -> Result<Vec<(String, u64)>, StoreError> {
    query(
        tx,
        "SELECT notifier, COUNT(*) FROM notifications WHERE status = $1
         GROUP BY notifier ORDER BY notifier",
        &[&DeliveryStatus::Pending.as_str()],
    )
    .await?
    .iter()
    .map(|r| {
        let n: i64 = rows::get(r, 1, "count")?;
        Ok((rows::get(r, 0, "notifications.notifier")?, n as u64))
    })
    .collect()
}

// ---- leases ---------------------------------------------------------------

pub(super) async fn claim_watch(
    tx: &Tx<'_>,
    release_id: &str,
    lease: &Lease,
    now: Millis,
) -> Result<bool, StoreError> {
    let changed = execute(
        tx,
        "UPDATE releases SET lease_owner = $2, lease_expires_at = $3
         WHERE id = $1
           AND (lease_owner IS NULL OR lease_owner = $2 OR lease_expires_at <= $4)",
        &[&release_id, &lease.owner, &lease.expires_at, &now],
    )
    .await?;
    Ok(changed == 1)
}

/// Extends `lease.owner`'s lease on each of `ids`; returns the ids it does
/// not hold (one statement for all).
pub(super) async fn renew_watches(
    tx: &Tx<'_>,
    ids: &[String],
    lease: &Lease,
) -> Result<Vec<String>, StoreError> {
    let renewed: std::collections::HashSet<String> = query(
        tx,
        "UPDATE releases SET lease_expires_at = $3 WHERE id = ANY($1) AND lease_owner = $2
         RETURNING id",
        &[&ids, &lease.owner, &lease.expires_at],
    )
    .await?
    .iter()
    .map(|r| rows::get(r, 0, "releases.id"))
    .collect::<Result<_, _>>()?;
    Ok(ids
        .iter()
        .filter(|id| !renewed.contains(*id))
        .cloned()
        .collect())
}

pub(super) async fn release_watch(
    tx: &Tx<'_>,
    release_id: &str,
    owner: &str,
) -> Result<(), StoreError> {
    execute(
        tx,
        "UPDATE releases SET lease_owner = NULL, lease_expires_at = NULL
         WHERE id = $1 AND lease_owner = $2",
        &[&release_id, &owner],
    )
    .await?;
    Ok(())
}

pub(super) async fn claim_notification(
    tx: &Tx<'_>,
    key: &str,
    lease: &Lease,
    now: Millis,
) -> Result<bool, StoreError> {
    let changed = execute(
        tx,
        "UPDATE notifications SET claimed_by = $2, claim_expires_at = $3
         WHERE key = $1 AND status = $5
           AND (claimed_by IS NULL OR claimed_by = $2 OR claim_expires_at <= $4)",
        &[
            &key,
            &lease.owner,
            &lease.expires_at,
            &now,
            &DeliveryStatus::Pending.as_str(),
        ],
    )
    .await?;
    Ok(changed == 1)
}
