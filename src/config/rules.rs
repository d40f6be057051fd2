//! Rule packs: YAML files of checks, compiled into [`super::CheckSpec`]s.
//!
//! A pack is read once ([`read_pack`]): its YAML is parsed, every check is
//! deserialized on its own (so one bad check does not hide the others) and
//! checked for what does not depend on the service (source kind, required
//! keys, level shapes). Each service using the pack then compiles it
//! ([`compile`]) against its own probes and labels: probe names, template
//! variables, check names unique across the service's packs.
//!
//! Every error is `PACKFILE:LINE:COL: message`, located at the offending key
//! through a [`YamlLocator`]; a YAML syntax error uses the YAML parser's location.

use super::judgment::{self, Judgment, NoData, RawJudgment};
use super::{CheckSpec, LogsSpec, DEFAULT_STEP};
use crate::engine::{Condition, Rule};
use crate::section::locate::{Seg, YamlLocator};
use crate::section::{
    at_most, deserialize_opt_duration, missing_because_removed, offending_key, saturating_millis,
    ConfigError, KeyPath, MAX_RULE_WINDOW,
};
use crate::sources::probe::ProbeConfig;
use crate::sources::template::{misplaced_variables, unknown_variables, BUILTIN_VARIABLES};
use crate::sources::{self, Reads, SourceKind};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One check as written in the pack.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    name: String,
    source: String,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    probe: Option<String>,
    /// The `[sources.NAME]` a query check reads (default: its kind's name).
    #[serde(default)]
    datasource: Option<String>,
    /// Log lines kept as evidence (loki checks).
    #[serde(default)]
    logs: Option<RawLogs>,
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    step: Option<Duration>,
    #[serde(default)]
    warning: Option<RawCondition>,
    #[serde(default)]
    critical: Option<RawCondition>,
    #[serde(default)]
    rollback: Option<RawCondition>,
    /// `source: scrape`: the service's `[[services.scrapes]]` entry.
    #[serde(default)]
    scrape: Option<String>,
    /// Probe checks: judge this statistic of the tick's burst.
    #[serde(default)]
    stat: Option<crate::sources::probe::Stat>,
    // Judgments beyond thresholds (`super::judgment`).
    #[serde(default)]
    no_data: Option<NoData>,
    #[serde(default)]
    min_traffic: Option<judgment::RawMinTraffic>,
    #[serde(default)]
    recover_after: Option<u32>,
    #[serde(default)]
    baseline: Option<judgment::RawBaseline>,
    #[serde(default)]
    compare: Option<judgment::RawCompare>,
    #[serde(default)]
    burn_rate: Option<judgment::RawBurnRate>,
    #[serde(default)]
    weight: Option<f64>,
    #[serde(default)]
    new_error_signatures: Option<judgment::RawSignatures>,
}

impl RawCheck {
    fn judgment(&self) -> RawJudgment {
        RawJudgment {
            no_data: self.no_data,
            min_traffic: self.min_traffic.clone(),
            recover_after: self.recover_after,
            baseline: self.baseline.clone(),
            compare: self.compare.clone(),
            burn_rate: self.burn_rate.clone(),
            weight: self.weight,
            new_error_signatures: self.new_error_signatures.clone(),
        }
    }
}

/// A check's `logs` as written in the pack.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogs {
    query: String,
    #[serde(default = "default_log_limit")]
    limit: u32,
    #[serde(default)]
    direction: sources::Direction,
}

/// Default `logs.limit`.
pub const DEFAULT_LOG_LIMIT: u32 = 20;

fn default_log_limit() -> u32 {
    DEFAULT_LOG_LIMIT
}

/// One level's condition as written in the pack.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    #[serde(default)]
    above: Option<f64>,
    #[serde(default)]
    below: Option<f64>,
    #[serde(default, rename = "for", deserialize_with = "deserialize_opt_duration")]
    for_: Option<Duration>,
    #[serde(default)]
    failures: Option<u32>,
    #[serde(default)]
    worse_by: Option<f64>,
    #[serde(default)]
    worse_by_ratio: Option<f64>,
}

impl RawCondition {
    fn compile(&self) -> Condition {
        Condition {
            above: self.above,
            below: self.below,
            for_ms: self.for_.map_or(0, saturating_millis),
            failures: self.failures,
            worse_by: self.worse_by,
            worse_by_ratio: self.worse_by_ratio,
            missing_breaches: false,
        }
    }
}

/// A check that passed the pack-level validation.
#[derive(Debug, Clone)]
struct PackCheck {
    /// `checks[i]` in the pack.
    path: KeyPath,
    raw: RawCheck,
    source: &'static SourceKind,
    rule: Rule,
    judgment: Judgment,
}

/// A rule pack, read and checked as far as it can be without a service.
#[derive(Debug)]
pub struct RulePack {
    pub file: PathBuf,
    checks: Vec<PackCheck>,
    locator: YamlLocator,
    /// Errors that do not depend on the service using the pack.
    pub errors: Vec<ConfigError>,
    /// Sanity findings, located.
    pub warnings: Vec<String>,
}

impl RulePack {
    fn error_at(&self, path: &KeyPath, message: String) -> ConfigError {
        located(&self.file, &self.locator, path, message)
    }

    fn position(&self, path: &KeyPath) -> String {
        let (line, col) = self.locator.locate(path).unwrap_or((1, 1));
        format!("{}:{line}:{col}", self.file.display())
    }
}

fn located(file: &Path, locator: &YamlLocator, path: &KeyPath, message: String) -> ConfigError {
    let (line, col) = locator.locate(path).unwrap_or((1, 1));
    ConfigError {
        file: file.to_path_buf(),
        line,
        col,
        message,
    }
}

/// Reads and checks the pack at `file`. `Err` only when the file cannot be
/// read (the caller locates that at the config line naming the pack);
/// everything else wrong is in [`RulePack::errors`].
pub fn read_pack(file: &Path) -> Result<RulePack, std::io::Error> {
    let text = std::fs::read_to_string(file)?;
    Ok(parse_pack(&text, file))
}

/// Deepest `[`/`{` nesting a pack may have (the YAML parser's own limit).
const MAX_FLOW_DEPTH: usize = 128;

/// Where the text's brackets first nest deeper than [`MAX_FLOW_DEPTH`]:
/// the YAML parser takes time quadratic in the flow depth before its own
/// limit refuses it (found by fuzzing: 20,000 `[` took seconds). Brackets
/// inside strings count too; a real pack never comes near the limit.
fn too_deep(text: &str) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => continue,
        }
        if depth > MAX_FLOW_DEPTH {
            return Some(crate::section::locate::offset_to_position(text, i));
        }
    }
    None
}

/// Parses and checks a pack's text; `file` names it in errors.
pub fn parse_pack(text: &str, file: &Path) -> RulePack {
    let mut pack = RulePack {
        file: file.to_path_buf(),
        checks: Vec::new(),
        locator: YamlLocator::default(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    if let Some((line, col)) = too_deep(text) {
        pack.errors.push(ConfigError {
            file: file.to_path_buf(),
            line,
            col,
            message: format!("invalid YAML: nested deeper than {MAX_FLOW_DEPTH} levels"),
        });
        return pack;
    }
    let doc: serde_norway::Value = match serde_norway::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let (line, col) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            pack.errors.push(ConfigError {
                file: file.to_path_buf(),
                line,
                col,
                message: format!("invalid YAML: {}", strip_yaml_location(&e.to_string())),
            });
            return pack;
        }
    };
    pack.locator = YamlLocator::new(text);
    let root = KeyPath::root();
    let checks = match doc {
        serde_norway::Value::Mapping(m) => {
            let mut checks = None;
            for (k, v) in m {
                match k.as_str() {
                    Some("checks") => checks = Some(v),
                    Some(other) => {
                        let e = pack.error_at(
                            &root.key(other),
                            format!("unknown key `{other}`; a rule pack has only `checks`"),
                        );
                        pack.errors.push(e);
                    }
                    None => {
                        let e = pack.error_at(&root, "rule pack keys must be strings".into());
                        pack.errors.push(e);
                    }
                }
            }
            checks
        }
        serde_norway::Value::Null => None,
        _ => {
            let e = pack.error_at(
                &root,
                "a rule pack is a mapping with a `checks:` list".into(),
            );
            pack.errors.push(e);
            return pack;
        }
    };
    let items = match checks {
        None => {
            let e = pack.error_at(&root, "a rule pack needs a top-level `checks:` list".into());
            pack.errors.push(e);
            return pack;
        }
        Some(serde_norway::Value::Sequence(items)) => items,
        Some(serde_norway::Value::Null) => Vec::new(),
        Some(_) => {
            let e = pack.error_at(&root.key("checks"), "`checks` must be a list".into());
            pack.errors.push(e);
            return pack;
        }
    };
    if items.is_empty() {
        pack.warnings.push(format!(
            "{}: rule pack has no checks",
            pack.position(&root.key("checks"))
        ));
    }
    for (i, item) in items.into_iter().enumerate() {
        let path = root.key("checks").index(i);
        if let Some((raw, removed)) = read_check(&mut pack, &path, item) {
            if let Some(c) = check_shape(&mut pack, path, raw, &removed) {
                pack.checks.push(c);
            }
        }
    }
    pack
}

/// Deserializes one check, reporting every structural error in it: a key
/// whose error was reported is taken out and the check read again, so that
/// its other keys are still checked (and its semantic errors found). Returns
/// the check with the keys taken out of it.
fn read_check(
    pack: &mut RulePack,
    path: &KeyPath,
    mut item: serde_norway::Value,
) -> Option<(RawCheck, Vec<String>)> {
    let mut removed: Vec<KeyPath> = Vec::new();
    loop {
        let e = match serde_path_to_error::deserialize::<_, RawCheck>(item.clone()) {
            Ok(raw) => {
                let top = removed
                    .iter()
                    .filter_map(|k| match k.0.get(path.0.len()) {
                        Some(Seg::Key(k)) => Some(k.clone()),
                        _ => None,
                    })
                    .collect();
                return Some((raw, top));
            }
            Err(e) => e,
        };
        let at = path.join(&KeyPath::from_serde(e.path()));
        let message = e
            .into_inner()
            .to_string()
            .replace(
                "struct RawCheck",
                "a check (a mapping with `name`, `source`, ...)",
            )
            .replace(
                "struct RawCondition",
                "a level such as `{ above: 0.01, for: 5m }`",
            );
        if missing_because_removed(&at, &message, &removed) {
            return None;
        }
        let key = offending_key(&at, &message);
        let err = pack.error_at(&at, message);
        pack.errors.push(err);
        if key.0.len() <= path.0.len() || removed.len() >= 32 {
            return None;
        }
        if !remove_yaml(&mut item, &key.0[path.0.len()..]) {
            return None;
        }
        removed.push(key);
    }
}

/// Removes the key at `rel` (ending with a key) from a YAML value.
fn remove_yaml(v: &mut serde_norway::Value, rel: &[Seg]) -> bool {
    use serde_norway::Value as Y;
    match rel {
        [] => false,
        [Seg::Key(k)] => match v {
            Y::Mapping(m) => m.remove(k.as_str()).is_some(),
            _ => false,
        },
        [first, rest @ ..] => {
            let next = match (first, v) {
                (Seg::Key(k), Y::Mapping(m)) => m.get_mut(k.as_str()),
                (Seg::Index(i), Y::Sequence(s)) => s.get_mut(*i),
                _ => None,
            };
            next.is_some_and(|n| remove_yaml(n, rest))
        }
    }
}

/// The YAML parser (serde_norway) appends ` at line L column C` (the position is reported
/// separately); drop every such suffix, keep the rest of the message.
fn strip_yaml_location(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + " at line ".len()..];
        let digits = |s: &str| s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let n = digits(tail);
        let after = &tail[n..];
        match after.strip_prefix(" column ") {
            Some(c) if n > 0 && digits(c) > 0 => rest = &c[digits(c)..],
            _ => {
                out.push_str(" at line ");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Pack-level checks of one check (`removed`: its keys whose structural
/// errors were reported). Every finding is recorded; the check is kept for
/// the service-level checks (unknown probe, template variables) unless its
/// source is unknown, so that one error does not hide another.
fn check_shape(
    pack: &mut RulePack,
    path: KeyPath,
    raw: RawCheck,
    removed: &[String],
) -> Option<PackCheck> {
    let err = |pack: &mut RulePack, p: KeyPath, m: String| {
        let e = pack.error_at(&p, m);
        pack.errors.push(e);
    };
    let name = raw.name.clone();
    if name.trim().is_empty() {
        err(
            pack,
            path.key("name"),
            "check `name` must not be empty".into(),
        );
    }
    let source = sources::kind(&raw.source);
    if source.is_none() {
        let message = if sources::PLANNED.contains(&raw.source.as_str()) {
            format!(
                "source `{}` is not available in this version (planned)",
                raw.source
            )
        } else {
            let known: Vec<&str> = sources::KINDS.iter().map(|k| k.name).collect();
            format!(
                "unknown source `{}`; expected {} ({} are planned)",
                raw.source,
                known.join(" or "),
                sources::PLANNED.join(" and ")
            )
        };
        err(pack, path.key("source"), message);
    }
    let query_kinds = || {
        sources::KINDS
            .iter()
            .filter(|k| k.reads != Reads::Probe)
            .map(|k| k.name)
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let judgment = judgment::compile(
        &raw.judgment(),
        &path,
        &name,
        &raw.source,
        raw.query.is_some(),
        &mut |p, m| err(pack, p, m),
    );
    let errors = raw.burn_rate.as_ref().map(|b| b.errors.as_str());
    for q in judgment.extra_queries().into_iter().chain(errors) {
        for m in misplaced_variables(q) {
            err(
                pack,
                path.clone(),
                format!(
                    "check `{name}`: template variable `{{{{{}}}}}` must stand inside a double-quoted label value (\"...\"), where it is escaped; it stands {} in `{q}`",
                    m.name,
                    m.placement.describe(),
                ),
            );
        }
    }
    let own_query = judgment.burn_rate.is_none() && judgment.new_error_signatures.is_none();
    match source.map(|s| (s, s.reads)) {
        Some((kind, Reads::Query | Reads::Scrape)) => {
            match &raw.query {
                None if !own_query => {}
                None => err(
                    pack,
                    path.key("source"),
                    format!("check `{name}`: a {} check needs a `query`", kind.name),
                ),
                Some(q) if q.trim().is_empty() => err(
                    pack,
                    path.key("query"),
                    format!("check `{name}`: `query` must not be empty"),
                ),
                Some(q) => {
                    for m in misplaced(&name, q) {
                        err(pack, path.key("query"), m);
                    }
                }
            }
            if raw.probe.is_some() {
                err(
                    pack,
                    path.key("probe"),
                    format!("check `{name}`: `probe` is only used by probe checks"),
                );
            }
        }
        Some((_, Reads::Probe)) => {
            if raw.probe.is_none() {
                err(
                    pack,
                    path.key("source"),
                    format!("check `{name}`: a probe check needs `probe` (the name of one of the service's probes)"),
                );
            }
            if raw.query.is_some() {
                err(
                    pack,
                    path.key("query"),
                    format!(
                        "check `{name}`: `query` is only used by {} checks",
                        query_kinds()
                    ),
                );
            }
            if raw.step.is_some() {
                let at = pack.position(&path.key("step"));
                pack.warnings.push(format!(
                    "{at}: check `{name}`: `step` has no effect on probe checks (they are measured at each tick)"
                ));
            }
        }
        None => {}
    }
    check_remote_keys(pack, &path, &raw, source);
    local_keys(pack, &path, &raw, source);
    if raw.step == Some(Duration::ZERO) {
        err(
            pack,
            path.key("step"),
            format!("check `{name}`: `step` must be greater than zero"),
        );
    }
    if let Some(Err(e)) = raw.step.map(|d| at_most("step", d, MAX_RULE_WINDOW)) {
        err(pack, path.key("step"), format!("check `{name}`: {e}"));
    }
    let levels = [
        ("warning", raw.warning),
        ("critical", raw.critical),
        ("rollback", raw.rollback),
    ];
    let level_removed = levels.iter().any(|(l, _)| removed.iter().any(|r| r == l));
    if levels.iter().all(|(_, c)| c.is_none()) && !level_removed && judgment.burn_rate.is_none() {
        err(
            pack,
            path.key("name"),
            format!("check `{name}` has no level; give it `warning`, `critical` and/or `rollback`"),
        );
    }
    for (level, cond) in &levels {
        let Some(c) = cond else { continue };
        let at = path.key(level);
        let worse = c.worse_by.is_some() || c.worse_by_ratio.is_some();
        if judgment.derives_levels() {
            if c.above.is_some() || c.below.is_some() || c.failures.is_some() || worse {
                err(
                    pack,
                    at.clone(),
                    format!("check `{name}`: the levels of a `compare` or `burn_rate` check take only `for` (the judgment decides the breach)"),
                );
            }
        } else if c.above.is_none() && c.below.is_none() && c.failures.is_none() && !worse {
            err(
                pack,
                at.clone(),
                format!(
                    "check `{name}`: `{level}` needs at least one of `above`, `below`, `failures`, `worse_by`, `worse_by_ratio`"
                ),
            );
        }
        if worse && judgment.baseline.is_none() {
            err(
                pack,
                at.clone(),
                format!("check `{name}`: `worse_by` and `worse_by_ratio` need a `baseline`"),
            );
        }
        for (key, v) in [
            ("worse_by", c.worse_by),
            ("worse_by_ratio", c.worse_by_ratio),
        ] {
            if v.is_some_and(|v| !(v >= 0.0 && v.is_finite())) {
                err(
                    pack,
                    at.key(key),
                    format!("check `{name}`: `{key}` must be a number, 0 or more"),
                );
            }
        }
        if let Some(Err(e)) = c.for_.map(|d| at_most("for", d, MAX_RULE_WINDOW)) {
            err(
                pack,
                at.key("for"),
                format!("check `{name}`: `{level}`: {e}"),
            );
        }
        if let Some(n) = c.failures {
            if source.is_some_and(|s| s.reads != Reads::Probe) {
                err(
                    pack,
                    at.key("failures"),
                    format!("check `{name}`: `failures` is only valid for probe checks"),
                );
            } else if n == 0 {
                err(
                    pack,
                    at.key("failures"),
                    format!("check `{name}`: `failures` must be at least 1"),
                );
            }
        }
        for (key, v) in [("above", c.above), ("below", c.below)] {
            if v.is_some_and(f64::is_nan) {
                err(
                    pack,
                    at.key(key),
                    format!("check `{name}`: `{key}` must be a number, not NaN"),
                );
            }
        }
    }
    let source = source?;
    let rule = compile_rule(&raw, &judgment);
    sanity_warnings(pack, &path, &name, &rule);
    Some(PackCheck {
        path,
        raw,
        source,
        rule,
        judgment,
    })
}

/// Why each template variable of `query` that does not stand inside a
/// double-quoted label value is refused.
fn misplaced(check: &str, query: &str) -> Vec<String> {
    misplaced_variables(query)
        .into_iter()
        .map(|m| format!(
            "check `{check}`: template variable `{{{{{}}}}}` must stand inside a double-quoted label value (\"...\"), where it is escaped; it stands {} (query line {}, column {})",
            m.name,
            m.placement.describe(),
            m.line,
            m.col
        ))
        .collect()
}

/// `datasource` (query checks) and `logs` (loki checks).
fn check_remote_keys(
    pack: &mut RulePack,
    path: &KeyPath,
    raw: &RawCheck,
    source: Option<&'static SourceKind>,
) {
    let name = &raw.name;
    let mut err = |p: KeyPath, m: String| {
        let e = pack.error_at(&p, m);
        pack.errors.push(e);
    };
    if let Some(d) = &raw.datasource {
        if source.is_some_and(|s| s.reads != Reads::Query) {
            err(
                path.key("datasource"),
                format!("check `{name}`: `datasource` is only used by query checks"),
            );
        } else if d.trim().is_empty() {
            err(
                path.key("datasource"),
                format!("check `{name}`: `datasource` must not be empty"),
            );
        }
    }
    let Some(logs) = &raw.logs else { return };
    let at = path.key("logs");
    if source.is_some_and(|s| s.name != sources::loki::KIND.name) {
        err(
            at.clone(),
            format!("check `{name}`: `logs` is only used by loki checks"),
        );
    }
    if logs.query.trim().is_empty() {
        err(
            at.key("query"),
            format!("check `{name}`: `logs.query` must not be empty"),
        );
    }
    for m in misplaced(name, &logs.query) {
        err(at.key("query"), m);
    }
    if !(1..=sources::loki::MAX_LOG_LINES).contains(&logs.limit) {
        err(
            at.key("limit"),
            format!(
                "check `{name}`: `logs.limit` must be from 1 to {}",
                sources::loki::MAX_LOG_LINES
            ),
        );
    }
}

/// The engine's rule for a check: its levels as written, or derived from
/// its judgment (a `compare` check's levels fire on a worse comparison, a
/// `burn_rate` check's on its window pairs), with `recover_after` and
/// `no_data: breach`.
fn compile_rule(raw: &RawCheck, j: &Judgment) -> Rule {
    let written = [raw.warning, raw.critical, raw.rollback];
    let recover_after = raw.recover_after.unwrap_or(0);
    let mut rule = if j.burn_rate.is_some() {
        let mut r = crate::engine::burn::level_rule(
            judgment::for_of(written.map(|c| c.and_then(|c| c.for_))),
            recover_after,
        );
        if written.iter().any(Option::is_some) {
            // Only the levels written.
            r.warning = r.warning.filter(|_| written[0].is_some());
            r.critical = r.critical.filter(|_| written[1].is_some());
            r.rollback = r.rollback.filter(|_| written[2].is_some());
        }
        r
    } else if j.compare.is_some() {
        let level = |c: Option<RawCondition>| {
            c.map(|c| Condition {
                above: Some(0.5),
                for_ms: c.for_.map_or(0, saturating_millis),
                ..Default::default()
            })
        };
        Rule {
            warning: level(raw.warning),
            critical: level(raw.critical),
            rollback: level(raw.rollback),
            recover_after,
        }
    } else {
        Rule {
            warning: raw.warning.map(|c| c.compile()),
            critical: raw.critical.map(|c| c.compile()),
            rollback: raw.rollback.map(|c| c.compile()),
            recover_after,
        }
    };
    if j.no_data == NoData::Breach {
        for c in [&mut rule.warning, &mut rule.critical, &mut rule.rollback]
            .into_iter()
            .flatten()
        {
            c.missing_breaches = true;
        }
    }
    rule
}

/// The keys of `scrape` checks (`scrape`, the query in the evaluated
/// subset) and of probe checks (`stat`), each only where it applies.
fn local_keys(pack: &mut RulePack, path: &KeyPath, raw: &RawCheck, source: Option<&SourceKind>) {
    let name = &raw.name;
    let Some(source) = source else { return };
    let mut errs = Vec::new();
    if source.reads == Reads::Scrape {
        if raw.scrape.is_none() {
            errs.push((path.key("source"), format!("check `{name}`: a scrape check needs `scrape` (the name of one of the service's [[services.scrapes]])")));
        }
        if let Some(Err(e)) = raw.query.as_deref().map(sources::scrape::check_query) {
            errs.push((path.key("query"), format!("check `{name}`: {e}")));
        }
    } else if raw.scrape.is_some() {
        errs.push((
            path.key("scrape"),
            format!("check `{name}`: `scrape` is only used by scrape checks"),
        ));
    }
    if raw.stat.is_some() && source.reads != Reads::Probe {
        errs.push((
            path.key("stat"),
            format!("check `{name}`: `stat` is only used by probe checks"),
        ));
    }
    for (p, m) in errs {
        let e = pack.error_at(&p, m);
        pack.errors.push(e);
    }
}

/// Thresholds in the wrong order (e.g. a rollback `above` lower than the
/// critical one) are legal but almost always a typo.
fn sanity_warnings(pack: &mut RulePack, path: &KeyPath, name: &str, rule: &Rule) {
    let pairs = [
        ("warning", rule.warning, "critical", rule.critical),
        ("critical", rule.critical, "rollback", rule.rollback),
    ];
    for (lo_name, lo, hi_name, hi) in pairs {
        let (Some(lo), Some(hi)) = (lo, hi) else {
            continue;
        };
        if let (Some(a), Some(b)) = (lo.above, hi.above) {
            if b < a {
                let at = pack.position(&path.key(hi_name).key("above"));
                pack.warnings.push(format!(
                    "{at}: check `{name}`: `{hi_name}` fires above {b}, lower than `{lo_name}` ({a})"
                ));
            }
        }
        if let (Some(a), Some(b)) = (lo.below, hi.below) {
            if b > a {
                let at = pack.position(&path.key(hi_name).key("below"));
                pack.warnings.push(format!(
                    "{at}: check `{name}`: `{hi_name}` fires below {b}, higher than `{lo_name}` ({a})"
                ));
            }
        }
    }
}

/// What a service offers its checks.
pub struct ServiceScope<'a> {
    pub name: &'a str,
    pub environment: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub probes: &'a [ProbeConfig],
    /// The service's `[[services.scrapes]]`.
    pub scrapes: &'a [crate::sources::scrape::ScrapeConfig],
    /// Every name under `[sources]`, with its kind when known.
    pub sources: &'a BTreeMap<String, Option<&'static str>>,
}

/// A service's checks, compiled from its packs, with what went wrong.
#[derive(Debug, Default)]
pub struct Compiled {
    pub checks: Vec<CheckSpec>,
    pub errors: Vec<ConfigError>,
}

/// Compiles `packs` (in order) for the service `scope`.
pub fn compile(packs: &[&RulePack], scope: &ServiceScope<'_>) -> Compiled {
    let mut out = Compiled::default();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut known: Vec<&str> = BUILTIN_VARIABLES.to_vec();
    known.extend(scope.labels.keys().map(String::as_str));
    let service = format!("service `{}` ({})", scope.name, scope.environment);
    for pack in packs {
        for c in &pack.checks {
            let name = &c.raw.name;
            let before = out.errors.len();
            let name_at = c.path.key("name");
            if let Some(first) = seen.get(name) {
                out.errors.push(pack.error_at(
                    &name_at,
                    format!("duplicate check name `{name}` in {service}; first defined at {first}"),
                ));
            } else {
                seen.insert(name.clone(), pack.position(&name_at));
            }
            match c.source.reads {
                Reads::Query | Reads::Scrape => {
                    let kind = c.source.name;
                    if c.source.reads == Reads::Scrape {
                        let scrape = c.raw.scrape.as_deref().unwrap_or_default();
                        if !scope.scrapes.iter().any(|s| s.name == scrape) {
                            let names: Vec<&str> =
                                scope.scrapes.iter().map(|s| s.name.as_str()).collect();
                            out.errors.push(pack.error_at(
                                &c.path.key("scrape"),
                                format!("check `{name}`: {service} has no scrape `{scrape}`; its scrapes: {}", if names.is_empty() { "none".to_string() } else { names.join(", ") }),
                            ));
                        }
                    } else {
                        match (&c.raw.datasource, scope.sources.get(c.raw.datasource.as_deref().unwrap_or(kind))) {
                        (None, None) => out.errors.push(pack.error_at(
                            &c.path.key("source"),
                            format!("check `{name}` uses {kind}, but [sources.{kind}] is not configured"),
                        )),
                        (Some(d), None) => {
                            let of_kind: Vec<&str> = scope
                                .sources
                                .iter()
                                .filter(|(_, k)| **k == Some(kind))
                                .map(|(n, _)| n.as_str())
                                .collect();
                            out.errors.push(pack.error_at(
                                &c.path.key("datasource"),
                                format!(
                                    "check `{name}`: unknown datasource `{d}`: no [sources.{d}] is configured; {kind} sources: {}",
                                    if of_kind.is_empty() { "none".to_string() } else { of_kind.join(", ") }
                                ),
                            ))
                        }
                        (Some(d), Some(Some(k))) if *k != kind => out.errors.push(pack.error_at(
                            &c.path.key("datasource"),
                            format!("check `{name}`: datasource `{d}` is a {k} source, not {kind}"),
                        )),
                        _ => {}
                    }
                    }
                    let query = c.raw.query.as_deref().unwrap_or_default();
                    if let Some(logs) = &c.raw.logs {
                        for var in unknown_variables(&logs.query, &known) {
                            out.errors.push(pack.error_at(
                                &c.path.key("logs").key("query"),
                                format!(
                                    "check `{name}`: unknown template variable `{{{{{var}}}}}` in `logs.query` for {service}; known: {}",
                                    known.join(", ")
                                ),
                            ));
                        }
                    }
                    let errors = c.raw.burn_rate.as_ref().map(|b| b.errors.as_str());
                    let queries = std::iter::once(query)
                        .chain(errors)
                        .chain(c.judgment.extra_queries());
                    for var in queries.flat_map(|q| unknown_variables(q, &known)) {
                        out.errors.push(pack.error_at(
                            &c.path.key("query"),
                            format!(
                                "check `{name}`: unknown template variable `{{{{{var}}}}}` for {service}; known: {}",
                                known.join(", ")
                            ),
                        ));
                    }
                }
                Reads::Probe => {
                    let probe = c.raw.probe.as_deref().unwrap_or_default();
                    if !scope.probes.iter().any(|p| p.name == probe) {
                        let names: Vec<&str> =
                            scope.probes.iter().map(|p| p.name.as_str()).collect();
                        let defined = if names.is_empty() {
                            "it has no probes".to_string()
                        } else {
                            format!("its probes: {}", names.join(", "))
                        };
                        out.errors.push(pack.error_at(
                            &c.path.key("probe"),
                            format!("check `{name}`: {service} has no probe `{probe}`; {defined}"),
                        ));
                    }
                }
            }
            if out.errors.len() > before {
                continue;
            }
            out.checks.push(CheckSpec {
                name: name.clone(),
                source: c.source,
                query: c
                    .raw
                    .query
                    .clone()
                    .or_else(|| c.raw.burn_rate.as_ref().map(|b| b.errors.clone())),
                probe: c.raw.probe.clone(),
                datasource: c.raw.datasource.clone(),
                logs: c.raw.logs.as_ref().map(|l| LogsSpec {
                    query: l.query.clone(),
                    limit: l.limit,
                    direction: l.direction,
                }),
                scrape: c.raw.scrape.clone(),
                stat: c.raw.stat,
                step: c.raw.step.unwrap_or(DEFAULT_STEP),
                rule: c.rule,
                judgment: c.judgment.clone(),
                pack: pack.file.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(pack: &RulePack) -> Vec<String> {
        pack.errors.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_good_pack_compiles() {
        let text = "checks:\n  - name: error_rate\n    source: prometheus\n    query: up{service=\"{{service}}\",ns=\"{{namespace}}\"}\n    warning: { above: 0.005 }\n    critical: { above: 0.01, for: 5m }\n  - name: live\n    source: probe\n    probe: live\n    rollback: { failures: 3 }\n";
        let pack = parse_pack(text, Path::new("p.yaml"));
        assert!(pack.errors.is_empty(), "{:?}", messages(&pack));
        let labels = [("namespace".to_string(), "shop".to_string())].into();
        let probes = [ProbeConfig {
            name: "live".into(),
            url: "http://x/".into(),
            timeout: Duration::from_secs(1),
            ..ProbeConfig::default()
        }];
        let scope = ServiceScope {
            name: "checkout",
            environment: "production",
            labels: &labels,
            probes: &probes,
            scrapes: &[],
            sources: &[("prometheus".to_string(), Some("prometheus"))].into(),
        };
        let c = compile(&[&pack], &scope);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(c.checks.len(), 2);
        assert_eq!(c.checks[0].step, DEFAULT_STEP);
        assert_eq!(c.checks[0].rule.critical.unwrap().for_ms, 300_000);
        assert_eq!(c.checks[1].rule.rollback.unwrap().failures, Some(3));
    }

    #[test]
    fn sanity_warnings_are_located() {
        let text = "checks:\n  - name: rate\n    source: prometheus\n    query: up\n    step: 30s\n    critical: { above: 0.05 }\n    rollback: { above: 0.01 }\n  - name: live\n    source: probe\n    probe: live\n    step: 5s\n    critical: { failures: 1 }\n";
        let pack = parse_pack(text, Path::new("p.yaml"));
        assert!(pack.errors.is_empty(), "{:?}", messages(&pack));
        assert_eq!(
            pack.warnings,
            [
                "p.yaml:7:17: check `rate`: `rollback` fires above 0.01, lower than `critical` (0.05)",
                "p.yaml:11:5: check `live`: `step` has no effect on probe checks (they are measured at each tick)",
            ]
        );
    }

    #[test]
    fn syntax_errors_use_serde_yaml_location() {
        let pack = parse_pack("checks:\n  - name: [x\n", Path::new("p.yaml"));
        assert_eq!(pack.errors.len(), 1);
        assert!(pack.errors[0].message.starts_with("invalid YAML"));
        assert!(!pack.errors[0].message.contains(" at line "));
    }

    #[test]
    fn strips_only_the_location() {
        assert_eq!(
            strip_yaml_location("did not find expected ',' or ']' at line 2 column 2, while parsing a flow sequence at line 1 column 4"),
            "did not find expected ',' or ']', while parsing a flow sequence"
        );
    }

    #[test]
    fn misplaced_template_variables_are_rejected_at_the_query() {
        let text = "checks:\n  - name: rate\n    source: prometheus\n    query: \"sum(rate(x{version='{{version}}'}[5m]))\"\n    rollback: { above: 1 }\n  - name: good\n    source: prometheus\n    query: up{service=\"{{service}}\"}\n    rollback: { above: 1 }\n";
        let pack = parse_pack(text, Path::new("p.yaml"));
        assert_eq!(
            messages(&pack),
            ["p.yaml:4:5: check `rate`: template variable `{{version}}` must stand inside a double-quoted label value (\"...\"), where it is escaped; it stands inside single quotes (query line 1, column 21)"]
        );
    }

    #[test]
    fn absurd_windows_are_rejected_at_their_key() {
        let text = "checks:\n  - name: rate\n    source: prometheus\n    query: up\n    step: 31d\n    critical: { above: 1, for: 500000000000y }\n    rollback: { above: 1, for: 30d }\n";
        let pack = parse_pack(text, Path::new("p.yaml"));
        assert_eq!(
            messages(&pack),
            [
                "p.yaml:5:5: check `rate`: `step` must be at most 30days",
                "p.yaml:6:27: check `rate`: `critical`: `for` must be at most 30days",
            ]
        );
        assert_eq!(
            RawCondition {
                above: None,
                below: None,
                for_: Some(Duration::MAX),
                failures: None,
                worse_by: None,
                worse_by_ratio: None,
            }
            .compile()
            .for_ms,
            i64::MAX
        );
    }
}
