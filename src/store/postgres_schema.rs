//! The PostgreSQL store's schema: numbered migrations tracked in the
//! `schema_version` table, applied at start under a transaction-scoped
//! advisory lock so several replicas starting at once apply each one once.

use crate::store::StoreError;

/// The advisory lock key every replica takes while migrating (any constant
/// the deployment does not use for something else: "rg-schema").
const MIGRATION_LOCK: i64 = 0x7267_2d73_6368_656d;

/// Schema migrations; migration `i` takes the version from `i` to `i + 1`.
/// Append new ones, never edit a shipped one.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the schema of SQLite's version 7, in PostgreSQL's types.
    "
    CREATE TABLE releases (
        seq              BIGSERIAL PRIMARY KEY,
        id               TEXT NOT NULL UNIQUE,
        service          TEXT NOT NULL,
        environment      TEXT NOT NULL,
        version          TEXT NOT NULL,
        previous_version TEXT,
        annotations      TEXT NOT NULL,
        status           TEXT NOT NULL,
        started_at       BIGINT NOT NULL,
        next_check_at    BIGINT,
        ended_at         BIGINT,
        acked            BOOLEAN NOT NULL DEFAULT FALSE,
        superseded_by    TEXT,
        lease_owner      TEXT,
        lease_expires_at BIGINT,
        silence_note     TEXT
    );
    CREATE INDEX releases_by_service ON releases (service, environment, seq);
    CREATE INDEX releases_by_service_status ON releases (service, environment, status, seq);
    CREATE INDEX releases_by_status ON releases (status, seq);
    CREATE INDEX releases_by_start ON releases (started_at, seq);
    CREATE INDEX releases_by_end ON releases (ended_at, seq) WHERE ended_at IS NOT NULL;

    CREATE TABLE checks (
        release_id      TEXT NOT NULL REFERENCES releases (id),
        name            TEXT NOT NULL,
        state           TEXT NOT NULL,
        level           TEXT NOT NULL,
        value           DOUBLE PRECISION,
        tracker         TEXT NOT NULL,
        evaluated_until BIGINT,
        updated_at      BIGINT NOT NULL,
        logs            TEXT,
        PRIMARY KEY (release_id, name)
    );

    CREATE TABLE check_points (
        release_id TEXT NOT NULL REFERENCES releases (id),
        check_name TEXT NOT NULL,
        at         BIGINT NOT NULL,
        value      DOUBLE PRECISION,
        PRIMARY KEY (release_id, check_name, at)
    );

    CREATE TABLE decisions (
        id          BIGSERIAL PRIMARY KEY,
        release_id  TEXT NOT NULL REFERENCES releases (id),
        at          BIGINT NOT NULL,
        check_name  TEXT,
        level       TEXT,
        action      TEXT NOT NULL,
        reason      TEXT NOT NULL,
        observed_at BIGINT,
        evidence    TEXT
    );
    CREATE INDEX decisions_by_release ON decisions (release_id, at, id);

    CREATE TABLE notifications (
        key              TEXT PRIMARY KEY,
        release_id       TEXT NOT NULL REFERENCES releases (id),
        notifier         TEXT NOT NULL,
        message          TEXT NOT NULL,
        status           TEXT NOT NULL,
        attempts         BIGINT NOT NULL,
        last_error       TEXT,
        created_at       BIGINT NOT NULL,
        sent_at          BIGINT,
        next_attempt_at  BIGINT NOT NULL,
        claimed_by       TEXT,
        claim_expires_at BIGINT
    );
    CREATE INDEX notifications_due ON notifications (status, next_attempt_at);
    CREATE INDEX notifications_by_release ON notifications (release_id, created_at, key);

    CREATE TABLE rollbacks (
        release_id   TEXT PRIMARY KEY REFERENCES releases (id),
        state        TEXT NOT NULL,
        reason       TEXT NOT NULL,
        triggered_by TEXT NOT NULL,
        requested_at BIGINT NOT NULL,
        started_at   BIGINT,
        finished_at  BIGINT,
        exit_code    INTEGER,
        output       TEXT,
        claimed_by   TEXT
    );

    CREATE TABLE heartbeats (
        owner TEXT PRIMARY KEY,
        at    BIGINT NOT NULL
    );

    CREATE TABLE deliveries (
        source     TEXT NOT NULL,
        id         TEXT NOT NULL,
        release_id TEXT NOT NULL,
        at         BIGINT NOT NULL,
        PRIMARY KEY (source, id)
    );
    CREATE INDEX deliveries_by_release ON deliveries (release_id);

    CREATE TABLE audit (
        seq        BIGSERIAL PRIMARY KEY,
        at         BIGINT NOT NULL,
        actor      TEXT NOT NULL,
        action     TEXT NOT NULL,
        release_id TEXT NOT NULL,
        detail     TEXT NOT NULL,
        client     TEXT
    );
    CREATE INDEX audit_by_release ON audit (release_id, seq);
    ",
    // 2: releases of one status in the order a list shows them (newest
    // first by start), as SQLite's version 8.
    "
    DROP INDEX releases_by_status;
    CREATE INDEX releases_by_status ON releases (status, started_at, seq);
    ",
];

/// Applies the migrations the database lacks, all in one transaction that
/// first takes [`MIGRATION_LOCK`]: replicas starting together wait for the
/// first one, then find the schema current.
pub(super) async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .await?;
    let current: Option<i64> = tx
        .query_opt("SELECT version FROM schema_version", &[])
        .await?
        .map(|r| r.get(0));
    let target = MIGRATIONS.len();
    let current = usize::try_from(current.unwrap_or(0))
        .ok()
        .filter(|&v| v <= target)
        .ok_or_else(|| {
            StoreError::Backend(format!(
                "schema version {current:?} is not one this build understands (0..={target})"
            ))
        })?;
    if current == target {
        return Ok(());
    }
    for sql in &MIGRATIONS[current..] {
        tx.batch_execute(sql).await?;
    }
    tx.execute("DELETE FROM schema_version", &[]).await?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES ($1)",
        &[&(target as i64)],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(from = current, to = target, "PostgreSQL schema migrated");
    Ok(())
}
