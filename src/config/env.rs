//! Environment overrides: `RG__SECTION__KEY=value` variables laid over the
//! parsed TOML document before it is deserialized.
//!
//! The variables are collected by the `config` crate's [`config::Environment`]
//! source (prefix `RG`, prefix separator `__`, separator `__`), fed the
//! injected `env` slice instead of the process environment so that tests and
//! SIGHUP reloads see exactly what they are given. Its semantics, kept as is:
//! only names starting with `RG__` count (`RG_LOG_FORMAT` does not), names
//! are case-insensitive (lowercased), and `__` separates path segments, so
//! `RG__SOURCES__PROMETHEUS__URL` sets `sources.prometheus.url`. A numeric
//! segment indexes an existing array element: `RG__SERVICES__0__NAME`.
//!
//! Values are parsed as a TOML value when they are one (`9000`, `true`,
//! `["a", "b"]`, `"quoted"`), else taken as a plain string
//! (`127.0.0.1:9000`, `5m`).

use crate::section::KeyPath;
pub use crate::section::Override;
use config::Source;
use std::collections::HashMap;
use toml_edit::{Item, Table, TableLike, Value};

/// An override that could not be applied.
#[derive(Debug, Clone)]
pub struct OverrideError {
    pub var: String,
    pub message: String,
}

/// The `RG__` variables of `env` as (path, original name, value), sorted by path.
pub fn collect(env: &[(String, String)]) -> Result<Vec<(String, String, String)>, String> {
    let map: config::Map<String, String> = env.iter().cloned().collect();
    let collected = config::Environment::with_prefix("RG")
        .prefix_separator("__")
        .separator("__")
        .source(Some(map))
        .collect()
        .map_err(|e| e.to_string())?;
    // The crate lowercases names and turns `__` into `.`; find the original
    // name back with the same normalisation (the last one wins, as in the crate).
    let mut names: HashMap<String, String> = HashMap::new();
    for (name, _) in env {
        let lower = name.to_lowercase();
        if let Some(rest) = lower.strip_prefix("rg__") {
            names.insert(rest.replace("__", "."), name.clone());
        }
    }
    let mut out = Vec::with_capacity(collected.len());
    for (key, value) in collected {
        let value = value.into_string().map_err(|e| e.to_string())?;
        let name = names
            .get(&key)
            .cloned()
            .unwrap_or_else(|| format!("RG__{}", key.replace('.', "__").to_uppercase()));
        out.push((key, name, value));
    }
    out.sort();
    Ok(out)
}

/// Applies every `RG__` variable of `env` to `root`.
pub fn apply(root: &mut Table, env: &[(String, String)]) -> (Vec<Override>, Vec<OverrideError>) {
    let mut applied = Vec::new();
    let mut errors = Vec::new();
    let vars = match collect(env) {
        Ok(v) => v,
        Err(message) => {
            errors.push(OverrideError {
                var: "RG__".into(),
                message,
            });
            return (applied, errors);
        }
    };
    for (key, var, raw) in vars {
        let segs: Vec<&str> = key.split('.').collect();
        if segs.iter().any(|s| s.is_empty()) {
            errors.push(OverrideError {
                var,
                message: "empty path segment in the variable name".into(),
            });
            continue;
        }
        let value = parse_value(&raw);
        let raw = (!value.is_str()).then_some(raw);
        match set(root, &segs, value, KeyPath::root()) {
            Ok(path) => applied.push(Override { path, var, raw }),
            Err(message) => errors.push(OverrideError { var, message }),
        }
    }
    (applied, errors)
}

/// A TOML value if `raw` is one, else the string itself.
fn parse_value(raw: &str) -> Value {
    match raw.trim().parse::<Value>() {
        Ok(v) => v.decorated("", ""),
        Err(_) => Value::from(raw),
    }
}

/// Sets `segs` (a lowercased path, non-empty) under `t` to `value`,
/// creating missing tables; returns the full path set.
fn set(
    t: &mut dyn TableLike,
    segs: &[&str],
    value: Value,
    path: KeyPath,
) -> Result<KeyPath, String> {
    let (head, rest) = (segs[0], &segs[1..]);
    let path = path.key(head);
    if rest.is_empty() {
        t.insert(head, Item::Value(value));
        return Ok(path);
    }
    if t.get(head).is_none() {
        t.insert(head, Item::Table(implicit_table()));
    }
    let item = t.get_mut(head).expect("present");
    descend(item, rest, value, path)
}

/// Continues `set` inside `item`, which `path` names.
fn descend(item: &mut Item, segs: &[&str], value: Value, path: KeyPath) -> Result<KeyPath, String> {
    match item {
        Item::ArrayOfTables(a) => {
            let i = index(segs[0], &path)?;
            let len = a.len();
            let t = a.get_mut(i).ok_or_else(|| out_of_range(&path, i, len))?;
            let path = path.index(i);
            if segs.len() == 1 {
                return Err(format!("`{path}` is a table; set one of its keys"));
            }
            set(t, &segs[1..], value, path)
        }
        Item::Value(Value::Array(a)) => {
            let i = index(segs[0], &path)?;
            if i >= a.len() {
                return Err(out_of_range(&path, i, a.len()));
            }
            let path = path.index(i);
            if segs.len() == 1 {
                a.replace(i, value);
                return Ok(path);
            }
            match a.get_mut(i) {
                Some(Value::InlineTable(t)) => set(t, &segs[1..], value, path),
                _ => Err(format!("`{path}` is not a table")),
            }
        }
        other => match other.as_table_like_mut() {
            Some(t) => set(t, segs, value, path),
            None => Err(format!("`{path}` is not a table")),
        },
    }
}

fn index(seg: &str, path: &KeyPath) -> Result<usize, String> {
    seg.parse().map_err(|_| {
        format!("`{path}` is an array; the next segment must be an index, not `{seg}`")
    })
}

fn implicit_table() -> Table {
    let mut t = Table::new();
    t.set_implicit(true);
    t
}

fn out_of_range(path: &KeyPath, i: usize, len: usize) -> String {
    format!("`{path}` has {len} element(s); index {i} does not exist")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_double_underscore_prefix_counts() {
        let got = collect(&env(&[
            ("RG__SERVER__LISTEN", "127.0.0.1:9000"),
            ("RG_LOG_FORMAT", "json"),
            ("RGX__A", "1"),
            ("HOME", "/root"),
        ]))
        .unwrap();
        assert_eq!(
            got,
            vec![(
                "server.listen".to_string(),
                "RG__SERVER__LISTEN".to_string(),
                "127.0.0.1:9000".to_string()
            )]
        );
    }

    #[test]
    fn values_are_toml_when_they_parse() {
        let mut doc: Table = "[[services]]\nname = \"a\"\nnotify = [\"x\"]\n"
            .parse::<toml_edit::DocumentMut>()
            .unwrap()
            .as_table()
            .clone();
        let (applied, errors) = apply(
            &mut doc,
            &env(&[
                ("RG__SERVER__LISTEN", "127.0.0.1:9000"),
                ("RG__SERVER__SHUTDOWN_GRACE", "5s"),
                ("RG__SERVICES__0__NOTIFY", "[\"y\", \"z\"]"),
                ("RG__SERVICES__3__NAME", "b"),
                ("RG__SOURCES__PROMETHEUS__URL", "http://p:9090"),
            ]),
        );
        assert_eq!(applied.len(), 4, "{errors:?}");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].var, "RG__SERVICES__3__NAME");
        assert_eq!(doc["server"]["listen"].as_str(), Some("127.0.0.1:9000"));
        assert_eq!(doc["server"]["shutdown_grace"].as_str(), Some("5s"));
        let notify = doc["services"][0]["notify"].as_array().unwrap();
        let notify: Vec<_> = notify.iter().filter_map(|v| v.as_str()).collect();
        assert_eq!(notify, ["y", "z"]);
        assert_eq!(doc["services"][0]["name"].as_str(), Some("a"));
        assert_eq!(
            doc["sources"]["prometheus"]["url"].as_str(),
            Some("http://p:9090")
        );
    }
}
