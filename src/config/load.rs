//! Loading the config file: defaults < file < `RG__SECTION__KEY` environment,
//! then validation of everything (rule packs included), collecting every
//! error with its `FILE:LINE:COL`.
//!
//! The steps: parse the TOML with toml_edit, keeping spans (a syntax error is
//! one located error); lay the environment overrides over it (`env`);
//! deserialize it section by section — `[server]`, `[auth]`, `[store]`,
//! `[cadence]`, `[sources]`, each `[[services]]` element and each
//! `[notifiers.NAME]` on its own, so one bad section does not hide errors in
//! another — with serde_path_to_error giving the key path of each failure;
//! then the semantic checks and the build of [`Settings`]
//! (`validate`). A path is located at its key in the file
//! ([`crate::section::locate`]), or at `env:RG__X__Y:1:1` when an environment variable
//! provided it.

use super::env;
use super::{AuthConfig, CadenceConfig, Config, ServerConfig, ServiceConfig, Settings};
use crate::actions::notify::{self, NotifierSpec};
use crate::intake::{self, IntakeConfig};
use crate::model::Severity;
use crate::section::{
    section, value, ConfigError, ConfigErrors, Finish, KeyPath, Locator, Report, Section,
    TomlLocator,
};
use crate::sources::{self, SourceConfig, SourceKind, SourceSpec};
use crate::store::{self, StoreSettings};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml_edit::{ImDocument, Item, Table, Value};

/// Loads and validates `path`, with environment overrides from the process.
pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        errors: vec![ConfigError {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            message: format!("cannot read: {e}"),
        }],
    })?;
    // `vars()` would panic on a variable that is not UTF-8; skip those.
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    load_str(&text, path, &env)
}

/// Loads from text; `path` locates errors and anchors relative paths; `env`
/// supplies `RG__SECTION__KEY` overrides (and `STATE_DIRECTORY`).
pub fn load_str(
    text: &str,
    path: &Path,
    env: &[(String, String)],
) -> Result<Settings, ConfigErrors> {
    let doc = ImDocument::parse(text.to_string()).map_err(|e| {
        let (line, col) = e.span().map_or((1, 1), |s| {
            crate::section::locate::offset_to_position(text, s.start)
        });
        ConfigErrors {
            errors: vec![ConfigError {
                file: path.to_path_buf(),
                line,
                col,
                message: format!("invalid TOML: {}", one_line(e.message())),
            }],
        }
    })?;
    let mut root = doc.as_table().clone();
    let (overrides, env_errors) = env::apply(&mut root, env);
    let locator = Locator::new(path, TomlLocator::new(&doc), overrides);
    let mut report = Report::new(&locator);
    for e in env_errors {
        report.errors.push(ConfigError {
            file: PathBuf::from(format!("env:{}", e.var)),
            line: 1,
            col: 1,
            message: e.message,
        });
    }
    let base = path.parent().unwrap_or(Path::new(""));
    // systemd's StateDirectory=, the default home of the store.
    let state_directory = env
        .iter()
        .rev()
        .find(|(k, _)| k == "STATE_DIRECTORY")
        .map(|(_, v)| v.as_str());
    let mut parsed = deserialize_sections(&root, base, state_directory, &mut report);
    if !parsed.store_seen {
        parsed.store = store::parse_section(None, state_directory);
    }
    let settings = super::validate::validate(parsed, &mut report, path);
    report.finish(settings)
}

/// A multi-line parser message ("invalid string\nexpected `\"`") on one line.
fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The sections that deserialized, and what is known of those that did not.
pub struct Parsed {
    /// Every section that deserialized; a failed one keeps its default.
    pub config: Config,
    /// `[server]` failed: skip checks that depend on it.
    pub server_failed: bool,
    /// `[auth]` was written but failed: treat the API as authenticated.
    pub auth_failed: bool,
    pub cadence_failed: bool,
    /// Each service that deserialized, with its index in `services`.
    pub services: Vec<(usize, ServiceConfig)>,
    /// Every name under `[notifiers]`, whether it deserialized or not.
    pub notifier_names: Vec<String>,
    /// Every notifier that deserialized and passed its kind's checks.
    pub notifiers: BTreeMap<String, NotifierSpec>,
    /// Every name under `[sources]`, whether it deserialized or not, with
    /// its kind when that is known.
    pub source_names: BTreeMap<String, Option<&'static str>>,
    /// Every `[sources.NAME]` that passed its kind's checks, by name.
    pub sources: BTreeMap<String, SourceSpec>,
    /// Every `[webhooks.TOOL]` that passed its format's checks.
    pub webhooks: BTreeMap<&'static str, Arc<dyn IntakeConfig>>,
    /// `[store] retention`: how long ended releases are kept.
    pub retention: std::time::Duration,
    /// Whether the file has a `[store]`, and the backend it selects.
    pub store_seen: bool,
    pub store: Option<StoreSettings>,
}

const SECTIONS: [&str; 8] = [
    "server",
    "auth",
    "store",
    "cadence",
    "sources",
    "services",
    "notifiers",
    "webhooks",
];

fn deserialize_sections(
    root: &Table,
    base: &Path,
    state_directory: Option<&str>,
    report: &mut Report<'_>,
) -> Parsed {
    let mut parsed = Parsed {
        config: Config::default(),
        server_failed: false,
        auth_failed: false,
        cadence_failed: false,
        services: Vec::new(),
        notifier_names: Vec::new(),
        notifiers: BTreeMap::new(),
        source_names: BTreeMap::new(),
        sources: BTreeMap::new(),
        store_seen: false,
        retention: super::DEFAULT_RETENTION,
        store: None,
        webhooks: BTreeMap::new(),
    };
    let top = KeyPath::root();
    for (key, item) in root.iter() {
        let path = top.key(key);
        match key {
            "server" => match section::<ServerConfig>(item, &path, report) {
                Some(v) => parsed.config.server = v,
                None => parsed.server_failed = true,
            },
            "auth" => match section::<AuthConfig>(item, &path, report) {
                Some(v) => parsed.config.auth = Some(v),
                None => parsed.auth_failed = true,
            },
            "store" => {
                parsed.store_seen = true;
                // `retention` is the daemon's, whatever the backend; the
                // backend's file reads the rest.
                let mut item = item.clone();
                if let Some(r) = item
                    .as_table_like_mut()
                    .and_then(|t| t.remove("retention"))
                    .and_then(|r| r.into_value().ok())
                {
                    if let Some(d) = value::<DurationValue>(r, &path.key("retention"), report) {
                        parsed.retention = d.0;
                    }
                }
                parsed.store = kind_table(&item, &path, base, report, |s| {
                    store::parse_section(Some(s), state_directory)
                });
            }
            "webhooks" => {
                let Some(table) = item.as_table_like() else {
                    report.error(&path, "`webhooks` must be a table of [webhooks.TOOL]");
                    continue;
                };
                for (name, w) in table.iter() {
                    if let Some((name, config)) = webhook(name, w, &path.key(name), base, report) {
                        parsed.webhooks.insert(name, config);
                    }
                }
            }
            "cadence" => match section::<CadenceConfig>(item, &path, report) {
                Some(v) => parsed.config.cadence = v,
                None => parsed.cadence_failed = true,
            },
            "sources" => {
                let Some(table) = item.as_table_like() else {
                    report.error(&path, "`sources` must be a table of [sources.NAME]");
                    continue;
                };
                for (name, s) in table.iter() {
                    let (kind, config) = source(name, s, &path.key(name), base, report);
                    parsed
                        .source_names
                        .insert(name.to_string(), kind.map(|k| k.name));
                    if let (Some(kind), Some(config)) = (kind, config) {
                        parsed
                            .sources
                            .insert(name.to_string(), SourceSpec { kind, config });
                    }
                }
            }
            "services" => {
                let Some(elements) = elements(item) else {
                    report.error(
                        &path,
                        "`services` must be an array of tables ([[services]])",
                    );
                    continue;
                };
                for (i, element) in elements.into_iter().enumerate() {
                    if let Some(s) = value::<ServiceConfig>(element, &path.index(i), report) {
                        parsed.config.services.push(s.clone());
                        parsed.services.push((i, s));
                    }
                }
            }
            "notifiers" => {
                let Some(table) = item.as_table_like() else {
                    report.error(&path, "`notifiers` must be a table of [notifiers.NAME]");
                    continue;
                };
                for (name, n) in table.iter() {
                    parsed.notifier_names.push(name.to_string());
                    if let Some(spec) = notifier(name, n, &path.key(name), base, report) {
                        parsed.notifiers.insert(name.to_string(), spec);
                    }
                }
            }
            other => report.error(
                &path,
                format!(
                    "unknown section `{other}`, expected one of {}",
                    SECTIONS.map(|s| format!("`{s}`")).join(", ")
                ),
            ),
        }
    }
    parsed
}

/// The elements of an array of tables or of an inline array.
fn elements(item: &Item) -> Option<Vec<Value>> {
    match item.clone().into_value() {
        Ok(Value::Array(a)) => Some(a.into_iter().collect()),
        _ => None,
    }
}

/// One `[notifiers.NAME]`. `kind` is looked at first, so that a planned or
/// unknown kind is reported at `kind`; `min_severity`, `rate_limit` and
/// `repeat_every`, which every notifier has, are read here; the other fields go to the kind's own file (the
/// registry in [`crate::actions::notify`]).
fn notifier(
    name: &str,
    item: &Item,
    path: &KeyPath,
    base: &Path,
    report: &mut Report<'_>,
) -> Option<NotifierSpec> {
    let Ok(Value::InlineTable(table)) = item.clone().into_value() else {
        report.error(path, format!("notifier `{name}` must be a table"));
        return None;
    };
    let names = || {
        notify::KINDS
            .iter()
            .map(|k| k.name)
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let kind_path = path.key("kind");
    let kind = match table.get("kind") {
        None => {
            report.error(
                path,
                format!("notifier `{name}` needs a `kind`: {}", names()),
            );
            return None;
        }
        Some(k) => match k.as_str() {
            Some(k) => k.to_string(),
            None => {
                report.error(&kind_path, "`kind` must be a string");
                return None;
            }
        },
    };
    let Some(registered) = notify::kind(&kind) else {
        let message = if notify::PLANNED.contains(&kind.as_str()) {
            format!("notifier kind `{kind}` is not available in this version (planned)")
        } else if notify::PLANNED.is_empty() {
            format!("unknown notifier kind `{kind}`; expected {}", names())
        } else {
            format!(
                "unknown notifier kind `{kind}`; expected {} ({} are planned)",
                names(),
                notify::PLANNED.join(", ")
            )
        };
        report.error(&kind_path, message);
        return None;
    };
    let mut fields = table;
    fields.remove("kind");
    let min_severity = match fields.remove("min_severity") {
        Some(v) => value::<Severity>(v, &path.key("min_severity"), report),
        None => Some(Severity::default()),
    };
    let rate_limit = match fields.remove("rate_limit") {
        Some(v) => value::<notify::rate::RateLimit>(v, &path.key("rate_limit"), report).map(Some),
        None => Some(None),
    };
    let repeat_every = match fields.remove("repeat_every") {
        Some(v) => value::<String>(v, &path.key("repeat_every"), report).and_then(|s| {
            match crate::section::parse_duration(&s)
                .and_then(|d| at_least_a_second("repeat_every", d))
            {
                Ok(d) => Some(Some(d)),
                Err(e) => {
                    report.error(&path.key("repeat_every"), e);
                    None
                }
            }
        }),
        None => Some(None),
    };
    let mut section = Section {
        fields: Value::InlineTable(fields),
        at: path.clone(),
        base,
        report,
    };
    let config = (registered.parse)(&mut section)?;
    Some(NotifierSpec {
        kind: registered.name,
        min_severity: min_severity?,
        rate_limit: rate_limit?,
        repeat_every: repeat_every?,
        config: config.into(),
    })
}

/// A period that must be at least a second and at most a day
/// (`repeat_every`).
fn at_least_a_second(key: &str, d: std::time::Duration) -> Result<std::time::Duration, String> {
    if d < std::time::Duration::from_secs(1) {
        return Err(format!("`{key}` must be at least 1s"));
    }
    crate::section::at_most(key, d, std::time::Duration::from_secs(24 * 3600))?;
    Ok(d)
}

/// One `[sources.NAME]`: the section of a query source kind, read by its
/// file (the registry in [`crate::sources`]). The kind is `kind` when
/// given, else the name itself (`[sources.prometheus]`). Returns the kind
/// when it is known, and the checked section when it passed.
fn source(
    name: &str,
    item: &Item,
    path: &KeyPath,
    base: &Path,
    report: &mut Report<'_>,
) -> (Option<&'static SourceKind>, Option<Arc<dyn SourceConfig>>) {
    let Ok(Value::InlineTable(mut table)) = item.clone().into_value() else {
        report.error(path, format!("`[{path}]` must be a table"));
        return (None, None);
    };
    let configurable = || {
        sources::KINDS
            .iter()
            .filter(|k| k.section.is_some())
            .map(|k| k.name)
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let kind_path = path.key("kind");
    let (kind_name, at) = match table.remove("kind") {
        None => (name.to_string(), path.clone()),
        Some(k) => match k.as_str() {
            Some(k) => (k.to_string(), kind_path.clone()),
            None => {
                report.error(&kind_path, "`kind` must be a string");
                return (None, None);
            }
        },
    };
    let Some((kind, parse)) = sources::kind(&kind_name).and_then(|k| Some((k, k.section?))) else {
        if sources::PLANNED.contains(&kind_name.as_str()) {
            report.warn(
                &at,
                format_args!("[sources.{name}] is configured, but {kind_name} checks are not available in this version (planned)"),
            );
        } else if at == kind_path {
            report.error(
                &at,
                format!(
                    "unknown source kind `{kind_name}`; expected {} ({} planned)",
                    configurable(),
                    sources::PLANNED.join(" and ")
                ),
            );
        } else {
            report.error(
                path,
                format!(
                    "unknown source `{name}` in [sources]; name it after its kind ({}) or give it `kind = \"...\"` ({} planned)",
                    configurable(),
                    sources::PLANNED.join(" and ")
                ),
            );
        }
        return (None, None);
    };
    if let Some(other) = sources::kind(name).filter(|k| k.name != kind.name) {
        report.error(
            &kind_path,
            format!(
                "[sources.{name}] is named after the kind {}; a source of kind {} needs another name",
                other.name, kind.name
            ),
        );
        return (Some(kind), None);
    }
    let config = parse(&mut Section {
        fields: Value::InlineTable(table),
        at: path.clone(),
        base,
        report,
    });
    (Some(kind), config.map(Arc::from))
}

/// Hands the table `[GROUP.NAME]` at `path` to its kind's `parse`;
/// reports it when it is not a table.
fn kind_table<T>(
    item: &Item,
    path: &KeyPath,
    base: &Path,
    report: &mut Report<'_>,
    parse: impl FnOnce(&mut Section<'_, '_>) -> Option<T>,
) -> Option<T> {
    let Ok(Value::InlineTable(table)) = item.clone().into_value() else {
        report.error(path, format!("`[{path}]` must be a table"));
        return None;
    };
    parse(&mut Section {
        fields: Value::InlineTable(table),
        at: path.clone(),
        base,
        report,
    })
}

/// One `[webhooks.TOOL]`: the section of the intake format `TOOL`, read by
/// its file (the registry in [`crate::intake`]).
fn webhook(
    name: &str,
    item: &Item,
    path: &KeyPath,
    base: &Path,
    report: &mut Report<'_>,
) -> Option<(&'static str, Arc<dyn IntakeConfig>)> {
    let Some((format, parse)) = intake::by_name(name).and_then(|f| Some((f, f.section()?))) else {
        let message = if intake::PLANNED.contains(&name) {
            format!("webhook `{name}` is not available in this version (planned)")
        } else {
            let known: Vec<&str> = intake::FORMATS
                .iter()
                .filter(|f| f.section().is_some())
                .map(|f| f.name())
                .chain(intake::PLANNED.iter().copied())
                .collect();
            format!(
                "unknown webhook `{name}`; deploy tools: {}",
                known.join(", ")
            )
        };
        report.error(path, message);
        return None;
    };
    kind_table(item, path, base, report, parse).map(|c| (format.name(), c.into()))
}

impl Finish for Settings {
    fn set_warnings(&mut self, warnings: Vec<String>) {
        self.warnings = warnings;
    }
}

/// A humantime duration as a whole value (`[store] retention = "90d"`).
#[derive(serde::Deserialize)]
struct DurationValue(
    #[serde(deserialize_with = "crate::section::deserialize_duration")] std::time::Duration,
);
