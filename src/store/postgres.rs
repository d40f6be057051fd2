//! The store for several replicas: one PostgreSQL database behind the
//! [`Store`] trait, reached through a connection pool (deadpool-postgres
//! over tokio-postgres), with TLS (rustls) when the URL asks for it.
//!
//! This module owns `[store]` when it has a `url`, the pool, and how every
//! [`Store`] method reaches the database: each method is one transaction on
//! one pooled connection (committed when the method returns `Ok`, rolled back
//! otherwise or if the caller goes away). Its child modules hold the rest:
//! - `postgres_schema.rs` — the tables and numbered migrations, applied at
//!   start under an advisory lock (several replicas may start at once);
//! - `postgres_ops.rs` — the SQL of each method and the locks that make each
//!   check-then-write safe between replicas (see there);
//! - `postgres_rows.rs` — rows ⇄ domain types;
//! - `postgres_dump.rs` — the database's side of `export` and `import`
//!   ([`crate::store::dump`]).
//!
//! The guarantees of [`crate::store`] hold across replicas: the keys and
//! conditional `UPDATE`s are SQLite's, and where SQLite relies on its single
//! write lock this backend locks the rows (or the (service, environment))
//! the write depends on, in the same transaction.

use super::{
    BatchResult, Lease, Registered, Registration, ReleaseDetails, ReleaseFilter, ResumableReleases,
    RollbackRequest, Silence, Store, StoreError, TickApplied, TickCommit,
};
use crate::model::{
    AuditRecord, CheckPoint, CheckRecord, Decision, DeliveryStatus, Millis, NewRelease,
    NotificationRecord, Release, ReleaseStatus, RollbackRecord, RollbackState,
};
use crate::section::{Secret, Section};
use async_trait::async_trait;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[path = "postgres_ops.rs"]
mod ops;
#[path = "postgres_rows.rs"]
mod rows;
#[path = "postgres_schema.rs"]
mod schema;
#[path = "postgres_dump.rs"]
pub mod transfer;

/// The transaction every operation runs in.
type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// How long a watch lease lasts without renewal, unless `[store] lease` says.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// Connections in the pool, unless `[store] pool_size` says.
pub const DEFAULT_POOL_SIZE: usize = 8;

/// How long connecting (or waiting for a pooled connection) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the daemon keeps its local files (hook status) when neither
/// `[store] state_dir` nor systemd's `$STATE_DIRECTORY` say otherwise.
const DEFAULT_STATE_DIR: &str = "/var/lib/release-guardian";

/// `[store]` with a `url`: the PostgreSQL backend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresSection {
    url: String,
    #[serde(default)]
    password_file: Option<PathBuf>,
    /// PEM roots to verify the server's certificate with (default: the
    /// public web roots).
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    pool_size: Option<usize>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default, deserialize_with = "crate::section::deserialize_opt_duration")]
    lease: Option<Duration>,
    #[serde(default)]
    state_dir: Option<PathBuf>,
}

/// The checked `[store]` of the PostgreSQL backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// `postgres://user@host[:port]/db[?sslmode=...]`, never with a password.
    pub url: String,
    pub password: Option<Secret>,
    pub ca_file: Option<PathBuf>,
    pub pool_size: usize,
    /// This replica's lease owner id.
    pub owner: String,
    /// How long a watch lease lasts without renewal.
    pub lease: Duration,
    /// The local directory for the daemon's own files.
    pub state_dir: PathBuf,
}

/// This replica's default owner id: `HOSTNAME-PID` (unique per process, so
/// two daemons on one host never share leases).
pub fn default_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "replica".into());
    format!("{host}-{}", std::process::id())
}

/// Reads `[store]` for the PostgreSQL backend (the section has `url`).
pub fn parse_section(
    s: &mut Section<'_, '_>,
    state_directory: Option<&str>,
) -> Option<super::StoreSettings> {
    let c: PostgresSection = s.deserialize()?;
    let mut ok = true;
    match driver_config(&c.url) {
        Err(e) => {
            s.error("url", format!("`url` is not a PostgreSQL URL: {e}"));
            ok = false;
        }
        Ok(cfg) if cfg.get_password().is_some() => {
            s.error(
                "url",
                "`url` must not hold the password: put it in `password_file`",
            );
            ok = false;
        }
        Ok(cfg) if cfg.get_hosts().is_empty() => {
            s.error("url", "`url` names no host");
            ok = false;
        }
        Ok(_) => {}
    }
    let password = match &c.password_file {
        Some(f) => {
            let p = s.at.key("password_file");
            let secret = crate::section::read_secret(f, s.base, &p, "password_file", s.report);
            ok &= secret.is_some();
            secret
        }
        None => None,
    };
    if let Some(f) = &c.ca_file {
        if let Err(e) = std::fs::metadata(s.base.join(f)) {
            s.error(
                "ca_file",
                format!("cannot read `ca_file` {}: {e}", f.display()),
            );
            ok = false;
        }
    }
    if c.pool_size == Some(0) {
        s.error("pool_size", "`pool_size` must be at least 1");
        ok = false;
    }
    if let Some(o) = &c.owner {
        if o.trim().is_empty() || o.len() > 200 {
            s.error("owner", "`owner` must be 1 to 200 characters");
            ok = false;
        }
    }
    if let Some(l) = c.lease {
        if l < Duration::from_secs(1) {
            s.error("lease", "`lease` must be at least 1s");
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    let state_dir = match c.state_dir {
        Some(d) => s.base.join(d),
        None => state_directory
            .and_then(|v| v.split(':').next().filter(|d| !d.is_empty()))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
    };
    Some(super::StoreSettings::Postgres(PostgresSettings {
        url: c.url,
        password,
        ca_file: c.ca_file.map(|f| s.base.join(f)),
        pool_size: c.pool_size.unwrap_or(DEFAULT_POOL_SIZE),
        owner: c.owner.unwrap_or_else(default_owner),
        lease: c.lease.unwrap_or(DEFAULT_LEASE),
        state_dir,
    }))
}

/// The driver's config of `url`. libpq's `sslmode=verify-full` and
/// `verify-ca` are read as `require`: the driver knows only `disable`,
/// `prefer` and `require`, and its TLS (rustls) always verifies the
/// server's certificate chain and its name, so `require` here is libpq's
/// `verify-full` (and stricter than `verify-ca`, which skips the name).
fn driver_config(url: &str) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
    let verified = |v: &str| matches!(v, "verify-full" | "verify-ca");
    let rewritten = match url.split_once('?') {
        // URL form: `postgres://...?a=b&sslmode=verify-full`.
        Some((base, query)) if url.contains("://") => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some(("sslmode", v)) if verified(v) => "sslmode=require".to_string(),
                    _ => p.to_string(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
        Some(_) => url.to_string(),
        // Key-value form: `host=db sslmode=verify-full`.
        None if !url.contains("://") => url
            .split(' ')
            .map(|p| match p.split_once('=') {
                Some(("sslmode", v)) if verified(v) => "sslmode=require",
                _ => p,
            })
            .collect::<Vec<_>>()
            .join(" "),
        None => url.to_string(),
    };
    rewritten.parse()
}

/// A driver error in words: the server's message when it sent one, else
/// the error with its causes (the driver's own words stop at "error
/// performing TLS handshake"; the cause says which certificate check
/// failed), and what to look at when the server's certificate was refused.
pub(super) fn describe_error(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.to_string();
    }
    let mut words = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let said = c.to_string();
        if !words.contains(&said) {
            words = format!("{words}: {said}");
        }
        cause = c.source();
    }
    if words.contains("invalid peer certificate") {
        words.push_str(
            " (the server's certificate must be signed by a CA in `ca_file` and name the host in `url`)",
        );
    }
    words
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Backend(format!("postgres: {}", describe_error(&e)))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => StoreError::Backend(format!("postgres pool: {other}")),
        }
    }
}

/// PostgreSQL-backed [`Store`].
pub struct PostgresStore {
    pool: deadpool_postgres::Pool,
}

impl PostgresStore {
    /// The driver's config and TLS connector for `settings`.
    fn connect_parts(
        settings: &PostgresSettings,
    ) -> Result<
        (
            tokio_postgres::Config,
            tokio_postgres_rustls::MakeRustlsConnect,
        ),
        StoreError,
    > {
        let mut cfg = driver_config(&settings.url)
            .map_err(|e| StoreError::Backend(format!("bad url: {e}")))?;
        if let Some(p) = &settings.password {
            cfg.password(p.expose());
        }
        cfg.connect_timeout(CONNECT_TIMEOUT);
        cfg.application_name("release-guardian");
        let mut roots = rustls::RootCertStore::empty();
        match &settings.ca_file {
            Some(f) => {
                let pem = std::fs::read(f).map_err(|e| {
                    StoreError::Backend(format!("cannot read ca_file {}: {e}", f.display()))
                })?;
                use rustls_pki_types::pem::PemObject;
                for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| {
                        StoreError::Backend(format!("bad ca_file {}: {e}", f.display()))
                    })?;
                    roots.add(cert).map_err(|e| {
                        StoreError::Backend(format!("bad ca_file {}: {e}", f.display()))
                    })?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Backend(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok((cfg, tokio_postgres_rustls::MakeRustlsConnect::new(tls)))
    }

    /// Connects once to apply the migrations (on a thread of its own, so it
    /// works from any context), then builds the pool, whose connections are
    /// made on demand by the caller's runtime.
    pub fn open(settings: &PostgresSettings) -> Result<PostgresStore, StoreError> {
        let (cfg, tls) = Self::connect_parts(settings)?;
        let (mcfg, mtls) = (cfg.clone(), tls.clone());
        std::thread::spawn(move || -> Result<(), StoreError> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::Backend(format!("runtime: {e}")))?;
            rt.block_on(async move {
                let (mut client, conn) = mcfg.connect(mtls).await?;
                let driver = tokio::spawn(conn);
                let out = schema::migrate(&mut client).await;
                drop(client);
                let _ = driver.await;
                out
            })
        })
        .join()
        .map_err(|_| StoreError::Backend("the migration thread panicked".into()))??;
        let manager = deadpool_postgres::Manager::from_config(
            cfg,
            tls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(settings.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT * 2))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Backend(format!("pool: {e}")))?;
        Ok(PostgresStore { pool })
    }

    /// The schema version this build creates.
    pub fn schema_version() -> u32 {
        schema::MIGRATIONS.len() as u32
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }
}

/// Runs `$body` (which uses `$tx`) in one transaction on a pooled
/// connection; commits if it returns `Ok`.
macro_rules! in_tx {
    ($self:ident, |$tx:ident| $body:expr) => {{
        let mut client = $self.client().await?;
        let $tx = client.transaction().await?;
        let out = $body?;
        $tx.commit().await?;
        Ok(out)
    }};
}

#[async_trait]
impl Store for PostgresStore {
    async fn register_release(
        &self,
        new: &NewRelease,
        environment: &str,
        id: &str,
        now: Millis,
        first_check_at: Millis,
        superseded: &Decision,
    ) -> Result<Registered, StoreError> {
        in_tx!(self, |tx| ops::register(
            &tx,
            new,
            environment,
            id,
            now,
            first_check_at,
            superseded
        )
        .await)
    }

    /// One transaction for the whole batch (one commit), a savepoint per
    /// item: an item that fails is rolled back to its savepoint alone. The
    /// items are written in (service, environment) order (a stable sort, so
    /// one service's items keep theirs): every batch takes its per-service
    /// locks in the same order, so two replicas' batches never deadlock.
    /// The answers come back in the batch's order.
    async fn register_batch(&self, batch: Vec<Registration>) -> BatchResult {
        let mut items: Vec<(usize, Registration)> = batch.into_iter().enumerate().collect();
        items.sort_by(|(_, a), (_, b)| {
            (&a.new.service, &a.environment).cmp(&(&b.new.service, &b.environment))
        });
        let mut out = Vec::with_capacity(items.len());
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        for (i, item) in items {
            tx.batch_execute("SAVEPOINT registration").await?;
            let result = ops::register_item(&tx, item).await;
            tx.batch_execute(if result.is_ok() {
                "RELEASE SAVEPOINT registration"
            } else {
                "ROLLBACK TO SAVEPOINT registration; RELEASE SAVEPOINT registration"
            })
            .await?;
            out.push((i, result));
        }
        tx.commit().await?;
        out.sort_by_key(|(i, _)| *i);
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }

    async fn get_release(&self, id: &str) -> Result<Option<Release>, StoreError> {
        in_tx!(self, |tx| ops::release(&tx, id).await)
    }

    async fn release_details(&self, id: &str) -> Result<Option<ReleaseDetails>, StoreError> {
        in_tx!(self, |tx| ops::release_details(&tx, id).await)
    }

    async fn releases_details(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<ReleaseDetails>>, StoreError> {
        in_tx!(self, |tx| {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.push(ops::release_details(&tx, id).await?);
            }
            Ok::<_, StoreError>(out)
        })
    }

    async fn list_releases(&self, filter: &ReleaseFilter) -> Result<Vec<Release>, StoreError> {
        in_tx!(self, |tx| ops::list_releases(&tx, filter).await)
    }

    async fn active_releases(&self) -> Result<Vec<Release>, StoreError> {
        in_tx!(self, |tx| ops::active_releases(&tx).await)
    }

    async fn resumable_releases(&self) -> Result<ResumableReleases, StoreError> {
        in_tx!(self, |tx| ops::resumable_releases(&tx).await)
    }

    async fn adoptable_releases(
        &self,
        owner: &str,
        now: Millis,
    ) -> Result<Vec<Release>, StoreError> {
        in_tx!(self, |tx| ops::adoptable_releases(&tx, owner, now).await)
    }

    async fn probe_write(&self, owner: &str, now: Millis) -> Result<(), StoreError> {
        in_tx!(self, |tx| ops::probe_write(&tx, owner, now).await)
    }

    async fn prune_ended(&self, ended_before: Millis, limit: usize) -> Result<usize, StoreError> {
        in_tx!(self, |tx| ops::prune_ended(&tx, ended_before, limit).await)
    }

    async fn delivery_release(
        &self,
        source: &str,
        delivery: &str,
    ) -> Result<Option<String>, StoreError> {
        in_tx!(self, |tx| ops::delivery_release(&tx, source, delivery)
            .await)
    }

    async fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        in_tx!(self, |tx| ops::append_audit(&tx, record).await)
    }

    async fn audit_log(
        &self,
        release_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        in_tx!(self, |tx| ops::audit_log(&tx, release_id, limit).await)
    }

    async fn record_delivery(
        &self,
        source: &str,
        delivery: &str,
        release_id: &str,
        at: Millis,
    ) -> Result<(), StoreError> {
        in_tx!(self, |tx| ops::record_delivery(
            &tx, source, delivery, release_id, at
        )
        .await)
    }

    async fn load_checks(&self, release_id: &str) -> Result<Vec<CheckRecord>, StoreError> {
        in_tx!(self, |tx| ops::checks(&tx, release_id).await)
    }

    async fn check_points(&self, release_id: &str) -> Result<Vec<CheckPoint>, StoreError> {
        in_tx!(self, |tx| ops::check_points(&tx, release_id).await)
    }

    async fn commit_tick(
        &self,
        release_id: &str,
        tick: &TickCommit,
    ) -> Result<TickApplied, StoreError> {
        in_tx!(self, |tx| ops::commit_tick(&tx, release_id, tick).await)
    }

    async fn transition(
        &self,
        release_id: &str,
        from: &[ReleaseStatus],
        to: ReleaseStatus,
        decision: &Decision,
        now: Millis,
    ) -> Result<Option<Release>, StoreError> {
        in_tx!(self, |tx| ops::transition(
            &tx, release_id, from, to, decision, now
        )
        .await)
    }

    async fn ack(
        &self,
        release_id: &str,
        decision: &Decision,
        silence: &Silence,
    ) -> Result<Option<Release>, StoreError> {
        in_tx!(self, |tx| ops::ack(&tx, release_id, decision, silence)
            .await)
    }

    async fn append_decision(
        &self,
        release_id: &str,
        decision: &Decision,
    ) -> Result<(), StoreError> {
        in_tx!(self, |tx| ops::append_decision(&tx, release_id, decision)
            .await)
    }

    async fn enqueue(&self, records: &[NotificationRecord]) -> Result<usize, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        in_tx!(self, |tx| ops::enqueue(&tx, records).await)
    }

    async fn due_notifications(
        &self,
        now: Millis,
        limit: usize,
        notifier: Option<&str>,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        in_tx!(self, |tx| ops::due_notifications(&tx, now, limit, notifier)
            .await)
    }

    async fn next_notification_due(&self) -> Result<Option<Millis>, StoreError> {
        in_tx!(self, |tx| ops::next_notification_due(&tx).await)
    }

    async fn mark_notification(
        &self,
        key: &str,
        status: DeliveryStatus,
        attempts: u32,
        last_error: Option<&str>,
        next_attempt_at: Millis,
        sent_at: Option<Millis>,
    ) -> Result<(), StoreError> {
        let d = ops::Delivery {
            status,
            attempts,
            last_error,
            next_attempt_at,
            sent_at,
        };
        in_tx!(self, |tx| ops::mark_notification(&tx, key, &d).await)
    }

    async fn request_rollback(
        &self,
        release_id: &str,
        record: &RollbackRecord,
        decision: &Decision,
    ) -> Result<RollbackRequest, StoreError> {
        in_tx!(self, |tx| ops::request_rollback(
            &tx, release_id, record, decision
        )
        .await)
    }

    async fn claim_rollback(
        &self,
        release_id: &str,
        owner: &str,
        now: Millis,
        decision: &Decision,
        notifications: &[NotificationRecord],
    ) -> Result<bool, StoreError> {
        in_tx!(self, |tx| ops::claim_rollback(
            &tx,
            release_id,
            owner,
            now,
            decision,
            notifications
        )
        .await)
    }

    async fn finish_rollback(
        &self,
        release_id: &str,
        state: RollbackState,
        exit_code: Option<i32>,
        output: Option<&str>,
        decision: &Decision,
        notifications: &[NotificationRecord],
        now: Millis,
    ) -> Result<(), StoreError> {
        let outcome = ops::Outcome {
            state,
            exit_code,
            output,
            now,
        };
        in_tx!(self, |tx| ops::finish_rollback(
            &tx,
            release_id,
            &outcome,
            decision,
            notifications
        )
        .await)
    }

    async fn get_rollback(&self, release_id: &str) -> Result<Option<RollbackRecord>, StoreError> {
        in_tx!(self, |tx| ops::rollback(&tx, release_id).await)
    }

    async fn count_by_status(&self) -> Result<Vec<(ReleaseStatus, u64)>, StoreError> {
        in_tx!(self, |tx| ops::count_by_status(&tx).await)
    }

    async fn pending_by_notifier(&self) -> Result<Vec<(String, u64)>, StoreError> {
        in_tx!(self, |tx| ops::pending_by_notifier(&tx).await)
    }

    async fn claim_watch(
        &self,
        release_id: &str,
        lease: &Lease,
        now: Millis,
    ) -> Result<bool, StoreError> {
        in_tx!(self, |tx| ops::claim_watch(&tx, release_id, lease, now)
            .await)
    }

    async fn renew_watch(&self, release_id: &str, lease: &Lease) -> Result<bool, StoreError> {
        let ids = [release_id.to_owned()];
        let lost: Result<Vec<String>, StoreError> =
            in_tx!(self, |tx| ops::renew_watches(&tx, &ids, lease).await);
        Ok(lost?.is_empty())
    }

    async fn renew_watches(
        &self,
        release_ids: &[String],
        lease: &Lease,
    ) -> Result<Vec<String>, StoreError> {
        in_tx!(self, |tx| ops::renew_watches(&tx, release_ids, lease).await)
    }

    async fn release_watch(&self, release_id: &str, owner: &str) -> Result<(), StoreError> {
        in_tx!(self, |tx| ops::release_watch(&tx, release_id, owner).await)
    }

    async fn claim_notification(
        &self,
        key: &str,
        lease: &Lease,
        now: Millis,
    ) -> Result<bool, StoreError> {
        in_tx!(self, |tx| ops::claim_notification(&tx, key, lease, now)
            .await)
    }
}

/// The part of a PostgreSQL URL safe to log: no password is ever in it
/// (`parse_section` refuses one), so it is the URL itself.
pub fn describe(settings: &PostgresSettings) -> String {
    settings.url.clone()
}

/// Tests the connection (`release-guardian check`): connects, reads the
/// server's version and the schema version. Applies no migration.
pub async fn check_connection(settings: &PostgresSettings) -> Result<String, StoreError> {
    let (cfg, tls) = PostgresStore::connect_parts(settings)?;
    let (client, conn) = cfg.connect(tls).await?;
    let driver = tokio::spawn(conn);
    let version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .await?
        .get(0);
    let schema: Option<i64> = if exists {
        client
            .query_opt("SELECT version FROM schema_version", &[])
            .await?
            .map(|r| r.get(0))
    } else {
        None
    };
    drop(client);
    let _ = driver.await;
    Ok(format!(
        "PostgreSQL {version}, schema version {} (this build: {})",
        schema.map_or("none yet".to_string(), |v| v.to_string()),
        PostgresStore::schema_version()
    ))
}

/// `path`'s directory, for [`super::StoreSettings::state_dir`].
pub(super) fn state_dir(settings: &PostgresSettings) -> &Path {
    &settings.state_dir
}

#[cfg(test)]
mod tests {
    use super::driver_config;
    use tokio_postgres::config::SslMode;

    #[test]
    fn libpq_verifying_sslmodes_are_read_as_require() {
        for url in [
            "postgres://g@db/guardian?sslmode=verify-full",
            "postgres://g@db/guardian?application_name=x&sslmode=verify-ca",
            "host=db user=g sslmode=verify-full",
        ] {
            let cfg = driver_config(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(cfg.get_ssl_mode(), SslMode::Require, "{url}");
        }
        let cfg = driver_config("postgres://g@db/guardian?sslmode=disable").unwrap();
        assert_eq!(cfg.get_ssl_mode(), SslMode::Disable);
        assert!(driver_config("postgres://g@db/guardian?sslmode=bogus").is_err());
    }
}
