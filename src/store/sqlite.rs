//! The embedded store: SQLite in WAL mode.

/// SQLite-backed [`super::Store`].
pub struct SqliteStore;
