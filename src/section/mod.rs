//! What every configuration section is built from and checked with, for
//! the config file's own sections and for the sections each kind (source,
//! notifier, store backend) owns: located errors (`FILE:LINE:COL`), the
//! [`Report`] that collects every error of a load at once, key paths and
//! their location in TOML and YAML text ([`locate`]), [`Secret`]s,
//! humantime durations, and URL checks.
//!
//! It knows nothing of the guardian's sections: `config` assembles the file
//! from them, and each kind's file deserializes and checks its own with
//! [`section()`].

mod duration;
pub mod locate;
mod secret;

pub use duration::{
    at_most, deserialize_duration, deserialize_opt_duration, parse as parse_duration,
    saturating_millis, MAX_HOOK_TIMEOUT, MAX_REQUEST_TIMEOUT, MAX_RULE_WINDOW, MAX_WATCH,
};
pub use locate::{KeyPath, Seg, TomlLocator};
pub use secret::Secret;

use serde::de::{DeserializeOwned, IntoDeserializer};
use std::fmt;
use std::path::{Path, PathBuf};
use toml_edit::{Item, Value};

/// An environment variable that set a key of the config (`RG__X__Y`).
#[derive(Debug, Clone)]
pub struct Override {
    pub path: KeyPath,
    pub var: String,
    /// The text as given, when it was taken as a non-string TOML value
    /// (`123`, `true`): if that type does not fit the key, the loader
    /// falls back to the text as a string.
    pub raw: Option<String>,
}

/// Replaces the value at `rel` (a path inside `v`) with `new`; false if absent.
fn replace_at(v: &mut Value, rel: &[Seg], new: Value) -> bool {
    let Some((first, rest)) = rel.split_first() else {
        *v = new;
        return true;
    };
    let next = match (first, v) {
        (Seg::Key(k), Value::InlineTable(t)) => t.get_mut(k),
        (Seg::Index(i), Value::Array(a)) => a.get_mut(*i),
        _ => None,
    };
    next.is_some_and(|n| replace_at(n, rest, new))
}

/// What [`Report::finish`] hands its warnings to.
pub trait Finish {
    fn set_warnings(&mut self, warnings: Vec<String>);
}

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

/// Finds where a key path stands: in the file, or in the environment
/// variable that provided it.
pub struct Locator<'a> {
    file: &'a Path,
    toml: TomlLocator<'a>,
    pub overrides: Vec<Override>,
}

impl<'a> Locator<'a> {
    /// Locates paths of `toml` (the text of `file`), or in the variable of
    /// the override that set them.
    pub fn new(file: &'a Path, toml: TomlLocator<'a>, overrides: Vec<Override>) -> Self {
        Self {
            file,
            toml,
            overrides,
        }
    }

    /// `(file, line, col)` of `path`.
    pub fn at(&self, path: &KeyPath) -> (PathBuf, usize, usize) {
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
    pub fn describe(&self, path: &KeyPath) -> String {
        let (file, line, col) = self.at(path);
        format!("{}:{line}:{col}", file.display())
    }
}

/// Collects errors and warnings while loading.
pub struct Report<'a> {
    pub locator: &'a Locator<'a>,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<String>,
    /// Keys taken out of a section after their error was reported (see
    /// [`value`]); later checks do not report them again as missing.
    pub removed: Vec<KeyPath>,
}

impl<'a> Report<'a> {
    pub fn new(locator: &'a Locator<'a>) -> Self {
        Self {
            locator,
            errors: Vec::new(),
            warnings: Vec::new(),
            removed: Vec::new(),
        }
    }

    /// An error located at `path` of the config.
    pub fn error(&mut self, path: &KeyPath, message: impl Into<String>) {
        let (file, line, col) = self.locator.at(path);
        self.errors.push(ConfigError {
            file,
            line,
            col,
            message: message.into(),
        });
    }

    /// A warning located at `path` of the config.
    pub fn warn(&mut self, path: &KeyPath, message: impl fmt::Display) {
        let at = self.locator.describe(path);
        self.warnings.push(format!("{at}: {message}"));
    }

    /// The settings when no error was reported, else every error sorted by
    /// file (the config file first) and position.
    pub fn finish<S: Finish>(mut self, settings: S) -> Result<S, ConfigErrors> {
        if self.errors.is_empty() {
            let mut settings = settings;
            dedup(&mut self.warnings);
            settings.set_warnings(self.warnings);
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

/// Deserializes one section at `path`, reporting its first error there.
pub fn section<T: DeserializeOwned>(
    item: &Item,
    path: &KeyPath,
    report: &mut Report<'_>,
) -> Option<T> {
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
pub fn value<T: DeserializeOwned>(
    mut v: Value,
    path: &KeyPath,
    report: &mut Report<'_>,
) -> Option<T> {
    // The errors of values retried as strings: reported if the string fails too.
    let mut originals: Vec<(KeyPath, String)> = Vec::new();
    // Keys taken out after their error was reported, so that the rest of the
    // table is still read and every error in it reported at once.
    let mut removed: Vec<KeyPath> = Vec::new();
    loop {
        let e = match serde_path_to_error::deserialize::<_, T>(v.clone().into_deserializer()) {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let at = path.join(&KeyPath::from_serde(e.path()));
        let message = humanize(e.inner().message());
        if missing_because_removed(&at, &message, &removed) {
            // Missing because its bad value was taken out: already reported.
            return None;
        }
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
            if replace_at(&mut v, rel, Value::from(raw)) {
                originals.push((at, message));
                continue;
            }
        }
        report.error(&at, redact(&at, &message));
        // Take the offending key out (the array holding an offending element:
        // removing the element would shift the others' positions) and read
        // the table again.
        let key = offending_key(&at, &message);
        if key.0.len() <= path.0.len() || !key.starts_with(path) || removed.len() >= 64 {
            return None;
        }
        if !remove_at(&mut v, &key.0[path.0.len()..]) {
            return None;
        }
        report.removed.push(key.clone());
        removed.push(key);
    }
}

/// serde's "missing field `k`" at `at`, for a key whose bad value was taken
/// out after its own error was reported (so it is not reported again).
pub fn missing_because_removed(at: &KeyPath, message: &str, removed: &[KeyPath]) -> bool {
    quoted_after(message, "missing field `").is_some_and(|f| removed.contains(&at.key(f)))
}

/// The key to take out of a table after serde's error `message` at `at`:
/// the unknown field itself, or the key holding the offending value (the
/// array, not an element: removing an element would shift the others'
/// positions).
pub fn offending_key(at: &KeyPath, message: &str) -> KeyPath {
    let mut key = at.clone();
    if let Some(field) = quoted_after(message, "unknown field `") {
        if key.last_key().as_deref() != Some(field) {
            key = key.key(field);
        }
    }
    while matches!(key.0.last(), Some(Seg::Index(_))) {
        key.0.pop();
    }
    key
}

/// The text between `prefix` and the next backquote in `message`.
fn quoted_after<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    rest.split_once('`').map(|(name, _)| name)
}

/// Removes the key at `rel` (a path inside `v` ending with a key); false if absent.
fn remove_at(v: &mut Value, rel: &[Seg]) -> bool {
    match rel {
        [] => false,
        [Seg::Key(k)] => match v {
            Value::InlineTable(t) => t.remove(k).is_some(),
            _ => false,
        },
        [first, rest @ ..] => {
            let next = match (first, v) {
                (Seg::Key(k), Value::InlineTable(t)) => t.get_mut(k),
                (Seg::Index(i), Value::Array(a)) => a.get_mut(*i),
                _ => None,
            };
            next.is_some_and(|n| remove_at(n, rest))
        }
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
const SECRET_KEYS: [&str; 7] = [
    "token",
    "password",
    "webhook_url",
    "bearer_token",
    "routing_key",
    "smtp_url",
    "secret",
];

/// serde quotes the offending value ("invalid type: integer `1234`"); not
/// when the value is a secret.
fn redact(path: &KeyPath, message: &str) -> String {
    let last = match path.0.last() {
        Some(locate::Seg::Key(k)) => k.as_str(),
        _ => return message.to_string(),
    };
    let is_notifier = matches!(path.0.first(), Some(locate::Seg::Key(k)) if k == "notifiers");
    if SECRET_KEYS.contains(&last) || (is_notifier && last == "url") {
        format!("invalid `{last}`: expected a string (the value is a secret and is not shown)")
    } else {
        message.to_string()
    }
}

/// Reads a `*_file` secret (relative to the config's directory).
pub fn read_secret(
    file: &Path,
    base: &Path,
    at: &KeyPath,
    key: &str,
    report: &mut Report<'_>,
) -> Option<Secret> {
    let path = base.join(file);
    match Secret::from_file(&path) {
        Ok(s) if s.expose().trim().is_empty() => {
            report.error(at, format!("`{key}` {} is empty", path.display()));
            None
        }
        Ok(s) => Some(s),
        Err(e) => {
            report.error(at, format!("cannot read `{key}` {}: {e}", path.display()));
            None
        }
    }
}

/// One secret given inline (`key`) or as a file (`key_file`): exactly one.
/// Returns it with the path of the key that gave it.
pub fn one_secret(
    inline: Option<&Secret>,
    file: Option<&PathBuf>,
    key: &str,
    at: &KeyPath,
    what: &str,
    base: &Path,
    report: &mut Report<'_>,
) -> Option<(Secret, KeyPath)> {
    let file_key = format!("{key}_file");
    match (inline, file) {
        (Some(_), Some(_)) => {
            report.error(
                &at.key(&file_key),
                format!("set one of `{key}` or `{file_key}`, not both"),
            );
            None
        }
        (None, None) => {
            if report.removed.contains(&at.key(key)) || report.removed.contains(&at.key(&file_key))
            {
                // Its value was wrong, and said so.
                return None;
            }
            report.error(at, format!("{what} needs `{key}` or `{file_key}`"));
            None
        }
        (Some(s), None) => {
            if s.expose().trim().is_empty() {
                report.error(&at.key(key), format!("`{key}` is empty"));
                return None;
            }
            Some((s.clone(), at.key(key)))
        }
        (None, Some(f)) => {
            let p = at.key(&file_key);
            read_secret(f, base, &p, &file_key, report).map(|s| (s, p))
        }
    }
}

/// Splits `host[:port]` (a `Host` header, an origin's authority, an
/// `allowed_hosts` entry) into its lowercased name and port. IPv6 addresses
/// are bracketed (`[::1]:9797`). `None` if it is not one: empty, a path,
/// user info, a bad port, characters no host name has.
pub fn parse_host(value: &str) -> Option<(String, Option<u16>)> {
    let (name, port) = if value.starts_with('[') {
        let end = value.find(']')?;
        let (name, rest) = value.split_at(end + 1);
        let inner = &name[1..name.len() - 1];
        inner.parse::<std::net::Ipv6Addr>().ok()?;
        match rest {
            "" => (name, None),
            r => (name, Some(r.strip_prefix(':')?)),
        }
    } else {
        match value.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (value, None),
        }
    };
    let valid_name = !name.is_empty()
        && (name.starts_with('[')
            || name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'));
    if !valid_name {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((name.to_ascii_lowercase(), port))
}

/// An absolute `http://` or `https://` URL; the message never quotes `s`.
pub fn http_url(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s).map_err(|e| e.to_string())?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(url),
        "http" | "https" => Err("no host".into()),
        other => Err(format!("scheme `{other}` is not http or https")),
    }
}

/// Checks a URL that is a secret; the message says what is wrong, never what it is.
pub fn secret_url(s: &Secret, at: &KeyPath, what: &str, report: &mut Report<'_>) -> Option<()> {
    match http_url(s.expose()) {
        Ok(_) => Some(()),
        Err(e) => {
            report.error(
                at,
                format!("the {what} is not an http(s) URL ({e}); the value is a secret and is not shown"),
            );
            None
        }
    }
}

/// One kind-owned section of the config (`[notifiers.NAME]`,
/// `[sources.NAME]`, ...) handed to its kind's file: its fields (without
/// `kind`), where it stands, the config's directory (relative `*_file`
/// paths) and the report every finding goes to.
pub struct Section<'r, 'a> {
    /// The section's fields, as written (environment overrides applied).
    pub fields: Value,
    /// Where the section stands (`notifiers.pager`).
    pub at: KeyPath,
    /// The config file's directory.
    pub base: &'r Path,
    pub report: &'r mut Report<'a>,
}

impl Section<'_, '_> {
    /// Deserializes the fields into the kind's struct (`deny_unknown_fields`
    /// reports a misspelt key at that key).
    pub fn deserialize<T: DeserializeOwned>(&mut self) -> Option<T> {
        value(self.fields.clone(), &self.at, self.report)
    }

    /// An error at `key` of this section.
    pub fn error(&mut self, key: &str, message: impl Into<String>) {
        self.report.error(&self.at.key(key), message);
    }

    /// `key` must be greater than zero.
    pub fn positive(&mut self, key: &str, d: std::time::Duration) {
        if d.is_zero() {
            self.error(key, format!("`{key}` must be greater than zero"));
        }
    }

    /// The secret given as `key` or `key_file` (exactly one; the file read
    /// now, relative to the config's directory), with the path of the key
    /// that gave it.
    pub fn secret(
        &mut self,
        inline: Option<&Secret>,
        file: Option<&PathBuf>,
        key: &str,
        what: &str,
    ) -> Option<(Secret, KeyPath)> {
        one_secret(inline, file, key, &self.at, what, self.base, self.report)
    }

    /// An optional secret: `key` or `key_file`, at most one.
    pub fn optional_secret(
        &mut self,
        inline: Option<&Secret>,
        file: Option<&PathBuf>,
        key: &str,
    ) -> Option<Secret> {
        match (inline, file) {
            (None, None) => None,
            (Some(_), Some(_)) => {
                self.error(
                    &format!("{key}_file"),
                    format!("set one of `{key}` or `{key}_file`, not both"),
                );
                None
            }
            _ => self.secret(inline, file, key, key).map(|(s, _)| s),
        }
    }

    /// `s` at `key` is an absolute http(s) URL that is not a secret.
    pub fn http_url(&mut self, key: &str, s: &str, what: &str) -> Option<reqwest::Url> {
        match http_url(s) {
            Ok(u) => Some(u),
            Err(e) => {
                self.error(
                    key,
                    format!("{what} `{key}` {s:?} is not an http(s) URL: {e}"),
                );
                None
            }
        }
    }
}
