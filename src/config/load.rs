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
use super::{
    deserialize_duration, AuthConfig, CadenceConfig, Config, NotifierConfig, Secret, ServerConfig,
    ServiceConfig, Settings, SourcesConfig, StoreConfig, DEFAULT_NOTIFY_TIMEOUT,
};
use crate::model::Severity;
use crate::section::{
    section, value, ConfigError, ConfigErrors, Finish, KeyPath, Locator, Report, TomlLocator,
};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
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
    let parsed = deserialize_sections(&root, &mut report);
    let settings = super::validate::validate(parsed, &mut report, path, env);
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
}

const SECTIONS: [&str; 7] = [
    "server",
    "auth",
    "store",
    "cadence",
    "sources",
    "services",
    "notifiers",
];

fn deserialize_sections(root: &Table, report: &mut Report<'_>) -> Parsed {
    let mut parsed = Parsed {
        config: Config::default(),
        server_failed: false,
        auth_failed: false,
        cadence_failed: false,
        services: Vec::new(),
        notifier_names: Vec::new(),
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
                if let Some(v) = section::<StoreConfig>(item, &path, report) {
                    parsed.config.store = v;
                }
            }
            "cadence" => match section::<CadenceConfig>(item, &path, report) {
                Some(v) => parsed.config.cadence = v,
                None => parsed.cadence_failed = true,
            },
            "sources" => {
                if let Some(v) = section::<SourcesConfig>(item, &path, report) {
                    parsed.config.sources = v;
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
                    if let Some(cfg) = notifier(name, n, &path.key(name), report) {
                        parsed.config.notifiers.insert(name.to_string(), cfg);
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

/// Notifier kinds this version runs.
const NOTIFIER_KINDS: [&str; 2] = ["slack", "webhook"];
/// Notifier kinds of the contract that later versions add.
const PLANNED_NOTIFIER_KINDS: [&str; 3] = ["email", "pagerduty", "alertmanager"];

/// One `[notifiers.NAME]`. `kind` is looked at first, so that a planned or
/// unknown kind is reported at `kind`; the other fields are deserialized
/// into the kind's own struct below (serde's internally tagged
/// [`NotifierConfig`] would lose the key path of an error) and then moved
/// into the [`NotifierConfig`] variant.
fn notifier(
    name: &str,
    item: &Item,
    path: &KeyPath,
    report: &mut Report<'_>,
) -> Option<NotifierConfig> {
    let Ok(Value::InlineTable(table)) = item.clone().into_value() else {
        report.error(path, format!("notifier `{name}` must be a table"));
        return None;
    };
    let kind_path = path.key("kind");
    let kind = match table.get("kind") {
        None => {
            report.error(
                path,
                format!("notifier `{name}` needs a `kind`: slack or webhook"),
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
    if PLANNED_NOTIFIER_KINDS.contains(&kind.as_str()) {
        report.error(
            &kind_path,
            format!("notifier kind `{kind}` is not available in this version (planned)"),
        );
        return None;
    }
    if !NOTIFIER_KINDS.contains(&kind.as_str()) {
        report.error(
            &kind_path,
            format!(
                "unknown notifier kind `{kind}`; expected slack or webhook ({} are planned)",
                PLANNED_NOTIFIER_KINDS.join(", ")
            ),
        );
        return None;
    }
    let mut fields = table;
    fields.remove("kind");
    let fields = Value::InlineTable(fields);
    if kind == "slack" {
        let f: SlackFields = value(fields, path, report)?;
        Some(NotifierConfig::Slack {
            webhook_url: f.webhook_url,
            webhook_url_file: f.webhook_url_file,
            min_severity: f.min_severity,
            timeout: f.timeout,
        })
    } else {
        let f: WebhookFields = value(fields, path, report)?;
        Some(NotifierConfig::Webhook {
            url: f.url,
            min_severity: f.min_severity,
            timeout: f.timeout,
        })
    }
}

/// The fields of `kind = "slack"`: [`NotifierConfig::Slack`] without `kind`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlackFields {
    #[serde(default)]
    webhook_url: Option<Secret>,
    #[serde(default)]
    webhook_url_file: Option<PathBuf>,
    #[serde(default)]
    min_severity: Severity,
    #[serde(default = "notify_timeout", deserialize_with = "deserialize_duration")]
    timeout: Duration,
}

/// The fields of `kind = "webhook"`: [`NotifierConfig::Webhook`] without `kind`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookFields {
    url: Secret,
    #[serde(default)]
    min_severity: Severity,
    #[serde(default = "notify_timeout", deserialize_with = "deserialize_duration")]
    timeout: Duration,
}

fn notify_timeout() -> Duration {
    DEFAULT_NOTIFY_TIMEOUT
}

impl Finish for Settings {
    fn set_warnings(&mut self, warnings: Vec<String>) {
        self.warnings = warnings;
    }
}
