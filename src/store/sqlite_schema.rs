//! The SQLite store's schema: numbered migrations tracked in
//! `PRAGMA user_version`, and the function that applies the ones a file lacks.

use crate::store::StoreError;
use rusqlite::{Connection, TransactionBehavior};

/// Schema migrations; migration `i` takes `user_version` from `i` to `i + 1`.
/// Append new ones, never edit a shipped one.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "
    CREATE TABLE releases (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        id               TEXT NOT NULL UNIQUE,
        service          TEXT NOT NULL,
        environment      TEXT NOT NULL,
        version          TEXT NOT NULL,
        previous_version TEXT,
        annotations      TEXT NOT NULL,
        status           TEXT NOT NULL,
        started_at       INTEGER NOT NULL,
        next_check_at    INTEGER,
        ended_at         INTEGER,
        acked            INTEGER NOT NULL DEFAULT 0,
        superseded_by    TEXT
    );
    CREATE INDEX releases_by_service ON releases (service, environment, seq);
    CREATE INDEX releases_by_status ON releases (status, seq);
    CREATE INDEX releases_by_start ON releases (started_at, seq);

    CREATE TABLE checks (
        release_id      TEXT NOT NULL REFERENCES releases (id),
        name            TEXT NOT NULL,
        state           TEXT NOT NULL,
        level           TEXT NOT NULL,
        value           REAL,
        tracker         TEXT NOT NULL,
        evaluated_until INTEGER,
        updated_at      INTEGER NOT NULL,
        PRIMARY KEY (release_id, name)
    ) WITHOUT ROWID;

    CREATE TABLE decisions (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        release_id TEXT NOT NULL REFERENCES releases (id),
        at         INTEGER NOT NULL,
        check_name TEXT,
        level      TEXT,
        action     TEXT NOT NULL,
        reason     TEXT NOT NULL
    );
    CREATE INDEX decisions_by_release ON decisions (release_id, at, id);

    CREATE TABLE notifications (
        key             TEXT PRIMARY KEY,
        release_id      TEXT NOT NULL REFERENCES releases (id),
        notifier        TEXT NOT NULL,
        message         TEXT NOT NULL,
        status          TEXT NOT NULL,
        attempts        INTEGER NOT NULL,
        last_error      TEXT,
        created_at      INTEGER NOT NULL,
        sent_at         INTEGER,
        next_attempt_at INTEGER NOT NULL
    );
    CREATE INDEX notifications_due ON notifications (status, next_attempt_at);
    CREATE INDEX notifications_by_release ON notifications (release_id, created_at, key);

    CREATE TABLE rollbacks (
        release_id   TEXT PRIMARY KEY REFERENCES releases (id),
        state        TEXT NOT NULL,
        reason       TEXT NOT NULL,
        triggered_by TEXT NOT NULL,
        requested_at INTEGER NOT NULL,
        started_at   INTEGER,
        finished_at  INTEGER,
        exit_code    INTEGER,
        output       TEXT
    );
    ",
    // 2: leases for several replicas, and the silence an ack chose.
    // A watch's lease lives on its release row; an outbox row and a rollback
    // name the replica that claimed them. Releases acknowledged before this
    // version keep the note they were silenced with.
    "
    ALTER TABLE releases ADD COLUMN lease_owner TEXT;
    ALTER TABLE releases ADD COLUMN lease_expires_at INTEGER;
    ALTER TABLE releases ADD COLUMN silence_note TEXT;
    UPDATE releases SET silence_note = 'suppressed: the release was acknowledged'
        WHERE acked = 1;
    ALTER TABLE notifications ADD COLUMN claimed_by TEXT;
    ALTER TABLE notifications ADD COLUMN claim_expires_at INTEGER;
    ALTER TABLE rollbacks ADD COLUMN claimed_by TEXT;
    ",
    // 3: registration and retention that do not grow with history, and the
    // readiness write probe. Registering supersedes the `watching` releases
    // of one (service, environment): found through the status, not by
    // scanning the service's whole history. Retention finds ended releases
    // by their end.
    "
    CREATE INDEX releases_by_service_status ON releases (service, environment, status, seq);
    CREATE INDEX releases_by_end ON releases (ended_at, seq) WHERE ended_at IS NOT NULL;
    CREATE TABLE heartbeats (
        owner TEXT PRIMARY KEY,
        at    INTEGER NOT NULL
    ) WITHOUT ROWID;
    ",
    // 4: the log lines a check keeps as evidence (JSON array; NULL: none).
    "
    ALTER TABLE checks ADD COLUMN logs TEXT;
    ",
    // 5: deploy-tool webhook deliveries already registered (idempotent
    // redelivery), and the audit log of API writes; both pruned with
    // their release.
    "
    CREATE TABLE deliveries (
        source     TEXT NOT NULL,
        id         TEXT NOT NULL,
        release_id TEXT NOT NULL,
        at         INTEGER NOT NULL,
        PRIMARY KEY (source, id)
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_by_release ON deliveries (release_id);
    CREATE TABLE audit (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        at         INTEGER NOT NULL,
        actor      TEXT NOT NULL,
        action     TEXT NOT NULL,
        release_id TEXT NOT NULL,
        detail     TEXT NOT NULL,
        client     TEXT
    );
    CREATE INDEX audit_by_release ON audit (release_id, seq);
    ",
    // 6: the values of each check over the watch, for reports and the status
    // page (a bounded number per check; NULL: nothing usable observed).
    "
    CREATE TABLE check_points (
        release_id TEXT NOT NULL REFERENCES releases (id),
        check_name TEXT NOT NULL,
        at         INTEGER NOT NULL,
        value      REAL,
        PRIMARY KEY (release_id, check_name, at)
    ) WITHOUT ROWID;
    ",
    // 7: a decision's evidence: the instant of the data it judged
    // (`observed_at`, beside `at`, when it was decided) and what it judged.
    "
    ALTER TABLE decisions ADD COLUMN observed_at INTEGER;
    ALTER TABLE decisions ADD COLUMN evidence TEXT;
    ",
    // 8: releases of one status in the order a list shows them (newest
    // first by start), so a status-filtered list reads its page from the
    // index instead of sorting every release of that status. Same number
    // of indexes: a registration writes no more.
    "
    DROP INDEX releases_by_status;
    CREATE INDEX releases_by_status ON releases (status, started_at, seq);
    ",
];

/// Applies the migrations the file lacks, all in one immediate transaction
/// (so two processes opening a new file do not both create the schema).
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let target = MIGRATIONS.len();
    let current = usize::try_from(current)
        .ok()
        .filter(|&v| v <= target)
        .ok_or_else(|| {
            StoreError::Backend(format!(
                "schema version {current} is not one this build understands (0..={target})"
            ))
        })?;
    if current == target {
        return Ok(());
    }
    for sql in &MIGRATIONS[current..] {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", target as i64)?;
    tx.commit()?;
    Ok(())
}
