//! The validated, ready-to-run form of the configuration.

use super::Cadence;
use super::{Config, ProbeConfig, RollbackConfig, Scope, Secret};
use crate::engine::Rule;
use crate::model::Severity;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `run` needs, validated: rule packs compiled, secrets read,
/// paths resolved. Built by [`super::load()`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// The config file it came from.
    pub file: PathBuf,
    /// The raw config with defaults and environment overrides applied.
    pub config: Config,
    pub store_path: PathBuf,
    pub services: Vec<Service>,
    pub notifiers: BTreeMap<String, NotifierSettings>,
    /// API bearer tokens; empty without `[auth]`.
    pub tokens: Vec<ApiToken>,
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
    pub rollback: Option<RollbackConfig>,
    pub cadence: Cadence,
    pub checks: Vec<CheckSpec>,
}

impl Service {
    pub fn probe(&self, name: &str) -> Option<&ProbeConfig> {
        self.probes.iter().find(|p| p.name == name)
    }
}

/// Where a check's samples come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Prometheus,
    Loki,
    Probe,
    Scrape,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prometheus => "prometheus",
            Self::Loki => "loki",
            Self::Probe => "probe",
            Self::Scrape => "scrape",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Prometheus, Self::Loki, Self::Probe, Self::Scrape]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// One check of a rule pack, compiled.
#[derive(Debug, Clone)]
pub struct CheckSpec {
    pub name: String,
    pub source: SourceKind,
    /// The query template (prometheus checks), `{{var}}` placeholders intact.
    pub query: Option<String>,
    /// The probe name (probe checks).
    pub probe: Option<String>,
    /// Range-query resolution (default 15s).
    pub step: Duration,
    pub rule: Rule,
    /// The rule pack it came from.
    pub pack: PathBuf,
}

/// A notifier with its secrets read.
#[derive(Debug, Clone)]
pub enum NotifierSettings {
    Slack {
        webhook_url: Secret,
        min_severity: Severity,
        timeout: Duration,
    },
    Webhook {
        url: Secret,
        min_severity: Severity,
        timeout: Duration,
    },
}

impl NotifierSettings {
    pub fn min_severity(&self) -> Severity {
        match self {
            Self::Slack { min_severity, .. } | Self::Webhook { min_severity, .. } => *min_severity,
        }
    }
}
