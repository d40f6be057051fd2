//! release-guardian keeps watch over a service for the hours after a release.
//!
//! The pipeline, one module per stage:
//!
//! - [`api`] — the HTTP API (`POST /v1/releases`, status, abort/ack/rollback,
//!   `/healthz`, `/readyz`, `/metrics`); [`intake`] — the formats in which
//!   deploy tools announce a release, one per file behind one trait.
//! - [`scheduler`] — the [`scheduler::Guardian`]: one durable watch per
//!   release on a tiered [`config::Cadence`], ticks, decisions, recovery
//!   after a restart.
//! - [`sources`] — where samples come from: Prometheus range queries, live
//!   HTTP probes.
//! - [`engine`] — the pure rule engine: levels, `above`/`below`/`for`/`failures`.
//! - [`actions`] — the notification outbox and notifiers (Slack, email,
//!   PagerDuty, Alertmanager, webhook), the rollback hook.
//! - [`store`] — durable state behind the [`store::Store`] trait (SQLite).
//! - [`config`] — the TOML config and YAML rule packs, validated with
//!   `FILE:LINE:COL` errors.
//! - [`context`] — the [`context::Context`] every component is handed; [`app`] runs the daemon; [`cli`] the
//!   command line; [`demo`] the self-contained demo; [`systemd`] readiness
//!   and watchdog notifications; [`telemetry`] the daemon's own metrics;
//!   [`report`] renders release objects for people; [`notify_test`] sends a
//!   test message through one notifier; [`ruletest`] runs rule-pack tests
//!   (`test-rules`), [`backtest`] replays history (`backtest`), [`transfer`]
//!   moves a store's state through a dump (`export`, `import`), [`tls`]
//!   reads the API's own certificate and [`fuzz`] holds the fuzzers' entry
//!   points into the parsers.

// `deny`, not `forbid`: two measured exceptions, `scheduler/trim.rs`
// (`malloc_trim`, which gives ended watches' memory back to the system) and
// `store/sqlite_wal_writes.rs` (a SQLite VFS that writes a commit's WAL
// frames in two calls).
#![deny(unsafe_code)]

pub mod actions;
pub mod api;
pub mod app;
pub mod backtest;
pub mod cli;
pub mod clock;
pub mod config;
pub mod context;
pub mod demo;
pub mod engine;
pub mod fuzz;
pub mod intake;
pub mod model;
pub mod notify_test;
pub mod report;
pub mod ruletest;
pub mod scheduler;
pub mod section;
pub mod sources;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod tls;
pub mod transfer;
pub mod transport;
