//! `Settings` the way the daemon gets them: config TOML text written to
//! `DIR/guardian.toml` and loaded by `release_guardian::config::load_str`.
//! Tests never build `Settings` (or its parts) as struct literals: the
//! config file is the interface, the struct behind it may change.

use release_guardian::config::{load_str, Settings};
use std::path::Path;

/// Loads `toml` as `DIR/guardian.toml` (relative paths are relative to
/// `dir`), without environment overrides; panics with every located error.
pub fn settings(dir: &Path, toml: &str) -> Settings {
    settings_with_env(dir, toml, &[])
}

/// Like [`settings`], with `env` as the environment (`RG__SECTION__KEY`
/// overrides, `STATE_DIRECTORY`).
pub fn settings_with_env(dir: &Path, toml: &str, env: &[(String, String)]) -> Settings {
    let path = dir.join("guardian.toml");
    std::fs::write(&path, toml).unwrap();
    load_str(toml, &path, env).unwrap_or_else(|e| panic!("unexpected config errors:\n{e}"))
}

/// The query source `[sources.NAME]` of `toml` (loaded as by
/// [`settings`]), built as the daemon builds it.
pub fn range_source(
    dir: &Path,
    toml: &str,
    name: &str,
) -> std::sync::Arc<dyn release_guardian::sources::RangeSource> {
    let s = settings(dir, toml);
    let spec = s
        .sources
        .get(name)
        .unwrap_or_else(|| panic!("no [sources.{name}]"));
    let cx = release_guardian::sources::BuildContext {
        http: reqwest::Client::new(),
        probe_http: release_guardian::sources::probe::probe_client(),
    };
    spec.config
        .build(&cx)
        .unwrap_or_else(|e| panic!("cannot build [sources.{name}]: {e}"))
}
