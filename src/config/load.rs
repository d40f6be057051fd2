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
//! ([`super::locate`]), or at `env:RG__X__Y:1:1` when an environment variable
//! provided it.

use super::env::{self, Override};
use super::locate::{KeyPath, TomlLocator};
use super::{
    deserialize_duration, AuthConfig, CadenceConfig, Config, NotifierConfig, Secret, ServerConfig,
    ServiceConfig, Settings, SourcesConfig, StoreConfig, DEFAULT_NOTIFY_TIMEOUT,
};
use crate::model::Severity;
use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml_edit::{ImDocument, Item, Table, Value};

/// One problem, located where the offending key stands.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Every error found (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

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
        let (line, col) = e
            .span()
            .map_or((1, 1), |s| super::locate::offset_to_position(text, s.start));
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
    let locator = Locator {
        file: path,
        toml: TomlLocator::new(&doc),
        overrides,
    };
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

/// Finds where a key path stands: in the file, or in the environment
/// variable that provided it.
pub(super) struct Locator<'a> {
    file: &'a Path,
    toml: TomlLocator<'a>,
    pub(super) overrides: Vec<Override>,
}

impl Locator<'_> {
    /// `(file, line, col)` of `path`.
    pub(super) fn at(&self, path: &KeyPath) -> (PathBuf, usize, usize) {
        // An override that provided `path` or one of its ancestors owns it.
        let owner = self
            .overrides
            .iter()
            .filter(|o| path.starts_with(&o.path))
            .max_by_key(|o| o.path.0.len());
        // A path the file does not have, under which an override set something.
        let owner = owner.or_else(|| {
            (!self.toml.contains(path))
                .then(|| self.overrides.iter().find(|o| o.path.starts_with(path)))
                .flatten()
        });
        if let Some(o) = owner {
            return (PathBuf::from(format!("env:{}", o.var)), 1, 1);
        }
        let (line, col) = self.toml.locate(path).unwrap_or((1, 1));
        (self.file.to_path_buf(), line, col)
    }

    /// `FILE:LINE:COL` of `path`, for messages that point elsewhere.
    pub(super) fn describe(&self, path: &KeyPath) -> String {
        let (file, line, col) = self.at(path);
        format!("{}:{line}:{col}", file.display())
    }
}

/// Collects errors and warnings while loading.
pub(super) struct Report<'a> {
    pub(super) locator: &'a Locator<'a>,
    pub(super) errors: Vec<ConfigError>,
    pub(super) warnings: Vec<String>,
}

impl<'a> Report<'a> {
    fn new(locator: &'a Locator<'a>) -> Self {
        Self {
            locator,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// An error located at `path` of the config.
    pub(super) fn error(&mut self, path: &KeyPath, message: impl Into<String>) {
        let (file, line, col) = self.locator.at(path);
        self.errors.push(ConfigError {
            file,
            line,
            col,
            message: message.into(),
        });
    }

    /// A warning located at `path` of the config.
    pub(super) fn warn(&mut self, path: &KeyPath, message: impl fmt::Display) {
        let at = self.locator.describe(path);
        self.warnings.push(format!("{at}: {message}"));
    }

    fn finish(mut self, settings: Settings) -> Result<Settings, ConfigErrors> {
        if self.errors.is_empty() {
            let mut settings = settings;
            dedup(&mut self.warnings);
            settings.warnings = self.warnings;
            return Ok(settings);
        }
        dedup(&mut self.errors);
        // The config file first, then other files in order of first
        // appearance (rule packs, `env:` variables); by position within each.
        let mut files: Vec<PathBuf> = vec![self.locator.file.to_path_buf()];
        for e in &self.errors {
            if !files.contains(&e.file) {
                files.push(e.file.clone());
            }
        }
        self.errors.sort_by_key(|e| {
            let f = files.iter().position(|f| *f == e.file).unwrap_or(0);
            (f, e.line, e.col)
        });
        Err(ConfigErrors {
            errors: self.errors,
        })
    }
}

/// Removes repeats (a pack used by two services reports its errors once).
fn dedup<T: PartialEq + Clone>(v: &mut Vec<T>) {
    let mut out: Vec<T> = Vec::with_capacity(v.len());
    for x in v.drain(..) {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    *v = out;
}

/// The sections that deserialized, and what is known of those that did not.
pub(super) struct Parsed {
    /// Every section that deserialized; a failed one keeps its default.
    pub(super) config: Config,
    /// `[server]` failed: skip checks that depend on it.
    pub(super) server_failed: bool,
    /// `[auth]` was written but failed: treat the API as authenticated.
    pub(super) auth_failed: bool,
    pub(super) cadence_failed: bool,
    /// Each service that deserialized, with its index in `services`.
    pub(super) services: Vec<(usize, ServiceConfig)>,
    /// Every name under `[notifiers]`, whether it deserialized or not.
    pub(super) notifier_names: Vec<String>,
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

/// Deserializes one section at `path`, reporting its first error there.
fn section<T: DeserializeOwned>(item: &Item, path: &KeyPath, report: &mut Report<'_>) -> Option<T> {
    match item.clone().into_value() {
        Ok(v) => value(v, path, report),
        Err(_) => {
            report.error(path, "empty value");
            None
        }
    }
}

/// Deserializes `v`, found at `path`, reporting its first error there.
///
/// An environment value taken as a number or boolean whose key wants a
/// string is retried as the string it was given (`RG__..__TOKEN=1234`).
fn value<T: DeserializeOwned>(mut v: Value, path: &KeyPath, report: &mut Report<'_>) -> Option<T> {
    // The errors of values retried as strings: reported if the string fails too.
    let mut originals: Vec<(KeyPath, String)> = Vec::new();
    loop {
        let e = match serde_path_to_error::deserialize::<_, T>(v.clone().into_deserializer()) {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let at = path.join(&KeyPath::from_serde(e.path()));
        let message = humanize(e.inner().message());
        if let Some((_, first)) = originals.iter().find(|(p, _)| *p == at) {
            report.error(&at, redact(&at, first));
            return None;
        }
        let fallback = report
            .locator
            .overrides
            .iter()
            .find(|o| o.raw.is_some() && o.path == at && at.starts_with(path));
        if let Some(o) = fallback.filter(|_| message.starts_with("invalid type")) {
            let rel = &o.path.0[path.0.len()..];
            let raw = o.raw.clone().unwrap_or_default();
            if env::replace_at(&mut v, rel, Value::from(raw)) {
                originals.push((at, message));
                continue;
            }
        }
        report.error(&at, redact(&at, &message));
        return None;
    }
}

/// serde names the Rust type it wanted ("expected struct ServerConfig");
/// the user wrote TOML, so say "a table".
fn humanize(message: &str) -> String {
    match message.find("expected struct ") {
        Some(i) => format!("{}expected a table", &message[..i]),
        None => message.to_string(),
    }
}

/// Keys whose values are secrets (inline forms of the `*_file` keys).
const SECRET_KEYS: [&str; 5] = [
    "token",
    "webhook_url",
    "bearer_token",
    "routing_key",
    "smtp_url",
];

/// serde quotes the offending value ("invalid type: integer `1234`"); not
/// when the value is a secret.
fn redact(path: &KeyPath, message: &str) -> String {
    let last = match path.0.last() {
        Some(super::locate::Seg::Key(k)) => k.as_str(),
        _ => return message.to_string(),
    };
    let is_notifier =
        matches!(path.0.first(), Some(super::locate::Seg::Key(k)) if k == "notifiers");
    if SECRET_KEYS.contains(&last) || (is_notifier && last == "url") {
        format!("invalid `{last}`: expected a string (the value is a secret and is not shown)")
    } else {
        message.to_string()
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
