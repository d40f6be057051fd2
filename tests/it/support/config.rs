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

/// The notifier `name` of the config `toml` (loaded as in [`settings`]),
/// built as the daemon builds it: the notifiers' client (no redirects) and
/// links under `[server] public_url`.
pub fn notifier(
    dir: &Path,
    toml: &str,
    name: &str,
) -> std::sync::Arc<dyn release_guardian::actions::notify::Notifier> {
    use release_guardian::actions::notify::{BuildContext, Links};
    let s = settings(dir, toml);
    let spec = s
        .notifiers
        .get(name)
        .unwrap_or_else(|| panic!("no notifier `{name}` in the config"));
    spec.config.build(&BuildContext {
        http: release_guardian::transport::client(reqwest::redirect::Policy::none()),
        links: Links::new(s.config.server.public_url.as_deref()),
    })
}

/// A temp dir holding a copy of `tests/fixtures/config`: the documented
/// example configuration (`guardian.toml`, as in docs/configuration.md but
/// for relative file paths) and the files it names.
pub fn design_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config");
    for name in [
        "guardian.toml",
        "ops.token",
        "slack.url",
        "pd.key",
        "rules/checklist.yaml",
    ] {
        let to = dir.path().join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(src.join(name), to).unwrap();
    }
    dir
}
