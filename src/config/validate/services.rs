//! The `[[services]]` checks: names, duplicates, `notify`, probes, the
//! rollback hook, the service's cadence, its rule packs (read once per file,
//! compiled per service) and the warnings `check` prints for a service that
//! watches little or nothing.

use super::{cadence, revert_cadence};
use crate::config::rules::{self, RulePack, ServiceScope};
use crate::config::Cadence;
use crate::config::{CheckSpec, Service, ServiceConfig};
use crate::model::MAX_NAME_LEN;
use crate::section::{KeyPath, Report};
use crate::sources::template::BUILTIN_VARIABLES;
use crate::sources::Reads;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What every service is checked against.
pub(super) struct ServiceContext<'a> {
    pub(super) base: &'a Path,
    pub(super) notifier_names: &'a [String],
    pub(super) cadence: &'a Cadence,
    pub(super) revert_cadence: &'a Cadence,
    /// Every name under `[sources]`, with its kind when known.
    pub(super) sources: &'a std::collections::BTreeMap<String, Option<&'static str>>,
}

pub(super) fn build_services(
    services: &[(usize, ServiceConfig)],
    ctx: &ServiceContext<'_>,
    report: &mut Report<'_>,
) -> Vec<Service> {
    let mut out = Vec::new();
    let mut seen: HashMap<(String, String), KeyPath> = HashMap::new();
    let mut packs: HashMap<PathBuf, Result<RulePack, String>> = HashMap::new();
    for (i, s) in services {
        let at = KeyPath::root().key("services").index(*i);
        check_names(s, &at, report);
        let id = (s.name.clone(), s.environment.clone());
        if let Some(first) = seen.get(&id) {
            let first = report.locator.describe(first);
            report.error(
                &at.key("name"),
                format!(
                    "service `{}` ({}) is defined twice; first at {first}",
                    s.name, s.environment
                ),
            );
        } else {
            seen.insert(id, at.key("name"));
        }
        check_notify(s, &at, ctx.notifier_names, report);
        crate::sources::probe::check_probes(&s.probes, &s.name, &at, report);
        crate::sources::scrape::check_scrapes(&s.scrapes, &s.name, &at, report);
        let rollback = s.rollback.as_ref().map(|r| {
            crate::actions::rollback::check_config(r, &at.key("rollback"), ctx.base, report)
        });
        let cadence = match &s.cadence {
            Some(c) => {
                cadence(c, &at.key("cadence"), report).unwrap_or_else(|| ctx.cadence.clone())
            }
            None => ctx.cadence.clone(),
        };
        let revert_cadence = s
            .cadence
            .as_ref()
            .and_then(|c| revert_cadence(c, &at.key("cadence"), report))
            .unwrap_or_else(|| ctx.revert_cadence.clone());
        let checks = service_checks(s, &at, ctx, &mut packs, report);
        service_warnings(s, &at, &checks, report);
        if let Some(m) = s.min_health_score {
            if !(0.0..=100.0).contains(&m) {
                report.error(
                    &at.key("min_health_score"),
                    "`min_health_score` must be between 0 and 100",
                );
            }
        }
        out.push(Service {
            name: s.name.clone(),
            environment: s.environment.clone(),
            labels: s.labels.clone(),
            notify: s.notify.clone(),
            probes: s.probes.clone(),
            scrapes: s.scrapes.clone(),
            rollback,
            cadence,
            revert_cadence,
            checks,
            min_health_score: s.min_health_score,
        });
    }
    out
}

fn check_names(s: &ServiceConfig, at: &KeyPath, report: &mut Report<'_>) {
    for (key, v) in [("name", &s.name), ("environment", &s.environment)] {
        if v.trim().is_empty() {
            report.error(&at.key(key), format!("service `{key}` must not be empty"));
        } else if v.len() > MAX_NAME_LEN {
            report.error(
                &at.key(key),
                format!("service `{key}` is longer than {MAX_NAME_LEN} bytes"),
            );
        }
    }
    for key in s.labels.keys() {
        if BUILTIN_VARIABLES.contains(&key.as_str()) {
            report.error(
                &at.key("labels").key(key),
                format!(
                    "label `{key}` would shadow the built-in template variable `{{{{{key}}}}}`"
                ),
            );
        }
    }
}

fn check_notify(s: &ServiceConfig, at: &KeyPath, names: &[String], report: &mut Report<'_>) {
    for (j, n) in s.notify.iter().enumerate() {
        if !names.contains(n) {
            let defined = if names.is_empty() {
                "no [notifiers] are defined".to_string()
            } else {
                format!("defined: {}", names.join(", "))
            };
            report.error(
                &at.key("notify").index(j),
                format!("unknown notifier `{n}` in `notify`; {defined}"),
            );
        }
    }
}

/// Reads (once per file) and compiles the service's rule packs.
fn service_checks(
    s: &ServiceConfig,
    at: &KeyPath,
    ctx: &ServiceContext<'_>,
    packs: &mut HashMap<PathBuf, Result<RulePack, String>>,
    report: &mut Report<'_>,
) -> Vec<CheckSpec> {
    let mut mine: Vec<PathBuf> = Vec::new();
    for (j, rule) in s.rules.iter().enumerate() {
        let file = ctx.base.join(rule);
        let rp = at.key("rules").index(j);
        if mine.contains(&file) {
            report.error(
                &rp,
                format!("rule pack `{}` is listed twice", rule.display()),
            );
            continue;
        }
        let pack = packs.entry(file.clone()).or_insert_with(|| {
            let pack = rules::read_pack(&file).map_err(|e| e.to_string());
            if let Ok(p) = &pack {
                // A pack's own errors are reported once, whoever uses it.
                report.errors.extend(p.errors.iter().cloned());
                report.warnings.extend(p.warnings.iter().cloned());
            }
            pack
        });
        if let Err(why) = pack {
            let why = why.clone();
            report.error(
                &rp,
                format!(
                    "cannot read rule pack `{}` ({}): {why}",
                    rule.display(),
                    file.display()
                ),
            );
            continue;
        }
        mine.push(file);
    }
    let mine: Vec<&RulePack> = mine.iter().filter_map(|f| packs[f].as_ref().ok()).collect();
    let scope = ServiceScope {
        name: &s.name,
        environment: &s.environment,
        labels: &s.labels,
        probes: &s.probes,
        scrapes: &s.scrapes,
        sources: ctx.sources,
    };
    let compiled = rules::compile(&mine, &scope);
    report.errors.extend(compiled.errors);
    compiled.checks
}

fn service_warnings(
    s: &ServiceConfig,
    at: &KeyPath,
    checks: &[CheckSpec],
    report: &mut Report<'_>,
) {
    let id = format!("service `{}` ({})", s.name, s.environment);
    if s.rules.is_empty() && s.probes.is_empty() {
        report.warn(at, format_args!("{id} has no rules and no probes"));
    }
    for (k, p) in s.probes.iter().enumerate() {
        let used = checks
            .iter()
            .any(|c| c.source.reads == Reads::Probe && c.probe.as_deref() == Some(&p.name));
        if !used {
            report.warn(
                &at.key("probes").index(k),
                format_args!("{id}: probe `{}` is not used by any check", p.name),
            );
        }
    }
    let rollback_levels = checks.iter().any(|c| c.rule.rollback.is_some());
    match (&s.rollback, rollback_levels) {
        (Some(_), false) if !checks.is_empty() => report.warn(
            &at.key("rollback"),
            format_args!("{id} has a rollback hook but no check with a `rollback` level"),
        ),
        (None, true) => report.warn(
            at,
            format_args!(
                "{id} has checks with a `rollback` level but no [services.rollback] hook; they will only page"
            ),
        ),
        _ => {}
    }
    if s.notify.is_empty() && !checks.is_empty() {
        report.warn(
            at,
            format_args!("{id} has no `notify`; nobody will be paged"),
        );
    }
}
