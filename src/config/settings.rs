//! The validated, ready-to-run form of the configuration.

use super::Cadence;
use super::{Config, Scope, Secret};
use crate::actions::notify::NotifierSpec;
use crate::actions::rollback::RollbackConfig;
use crate::engine::Rule;
use crate::intake::IntakeConfig;
use crate::sources::probe::ProbeConfig;
use crate::sources::{SourceKind, SourceSpec};
use crate::store::StoreSettings;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Everything `run` needs, validated: rule packs compiled, secrets read,
/// paths resolved. Built by [`super::load()`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// The config file it came from.
    pub file: PathBuf,
    /// The raw config with defaults and environment overrides applied.
    pub config: Config,
    /// `[store]`: the backend and where its state lives.
    pub store: StoreSettings,
    /// `[store] retention`: ended releases older than this are pruned.
    pub retention: Duration,
    pub services: Vec<Service>,
    /// `[notifiers.NAME]`, each checked by its kind's file.
    pub notifiers: BTreeMap<String, NotifierSpec>,
    /// `[sources.NAME]` by name, each checked by its kind's file.
    pub sources: BTreeMap<String, SourceSpec>,
    /// `[webhooks.TOOL]` by intake format name, each checked by its format's file.
    pub webhooks: BTreeMap<&'static str, Arc<dyn IntakeConfig>>,
    /// API bearer tokens; empty without `[auth]`.
    pub tokens: Vec<ApiToken>,
    /// `[server] tls_*`: the API's certificate, read and checked; `None`
    /// for plain HTTP.
    pub tls: Option<crate::tls::ServerTls>,
    /// Non-fatal findings (`check` prints them), e.g. a service without rules.
    pub warnings: Vec<String>,
}

impl Settings {
    /// The service registered under `name` in `environment`.
    pub fn service(&self, name: &str, environment: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.name == name && s.environment == environment)
    }
}

#[derive(Debug, Clone)]
pub struct ApiToken {
    /// Who the audit log says wrote, when this token was used.
    pub name: String,
    pub token: Secret,
    pub scopes: Vec<Scope>,
}

/// A service, ready to watch.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub environment: String,
    /// Template variables: the service's `labels`.
    pub labels: BTreeMap<String, String>,
    /// Notifier names (all exist in [`Settings::notifiers`]).
    pub notify: Vec<String>,
    pub probes: Vec<ProbeConfig>,
    /// `[[services.scrapes]]`: targets `source: scrape` checks read.
    pub scrapes: Vec<crate::sources::scrape::ScrapeConfig>,
    pub rollback: Option<RollbackConfig>,
    pub cadence: Cadence,
    /// The cadence of a revert (`[cadence] revert_tiers`).
    pub revert_cadence: Cadence,
    pub checks: Vec<CheckSpec>,
    /// `min_health_score`: a health score below it (out of 100) rolls back.
    pub min_health_score: Option<f64>,
}

impl Service {
    /// The cadence `release` is watched on: the revert cadence for a
    /// release registered as a revert, the service's cadence otherwise.
    pub fn cadence_for(&self, release: &crate::model::Release) -> &Cadence {
        if crate::model::is_revert(release) {
            &self.revert_cadence
        } else {
            &self.cadence
        }
    }

    pub fn probe(&self, name: &str) -> Option<&ProbeConfig> {
        self.probes.iter().find(|p| p.name == name)
    }

    pub fn scrape(&self, name: &str) -> Option<&crate::sources::scrape::ScrapeConfig> {
        self.scrapes.iter().find(|s| s.name == name)
    }
}

/// A check's `logs`: the log query whose matching lines are kept as its
/// evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct LogsSpec {
    /// The LogQL log query (template variables as in `query`).
    pub query: String,
    /// Most lines kept (1 to 100).
    pub limit: u32,
    pub direction: crate::sources::Direction,
}

/// One check of a rule pack, compiled.
#[derive(Debug, Clone)]
pub struct CheckSpec {
    pub name: String,
    /// Where its samples come from (an entry of [`crate::sources::KINDS`]).
    pub source: &'static SourceKind,
    /// The query template (query checks), `{{var}}` placeholders intact.
    pub query: Option<String>,
    /// The probe name (probe checks).
    pub probe: Option<String>,
    /// The `[sources.NAME]` it reads (query checks): its `datasource`,
    /// else the section named after its kind.
    pub datasource: Option<String>,
    /// Log lines kept as evidence with its result (loki checks).
    pub logs: Option<LogsSpec>,
    /// The `[[services.scrapes]]` name (scrape checks).
    pub scrape: Option<String>,
    /// The statistic of the tick's probe burst a probe check judges
    /// (default: each probe's latency and outcome).
    pub stat: Option<crate::sources::probe::Stat>,
    /// Range-query resolution (default 15s).
    pub step: Duration,
    pub rule: Rule,
    /// Judgments beyond thresholds (baseline, compare, burn rate, ...).
    pub judgment: super::judgment::Judgment,
    /// The rule pack it came from.
    pub pack: PathBuf,
}

impl CheckSpec {
    /// The name of the `[sources.NAME]` a query check reads.
    pub fn source_name(&self) -> &str {
        self.datasource.as_deref().unwrap_or(self.source.name)
    }
}
