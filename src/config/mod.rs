//! Configuration: the TOML file's shape (this module), how it is loaded and
//! layered with defaults and `RG__SECTION__KEY` environment variables
//! ([`load()`]; the overrides themselves in `env`), checked beyond what serde
//! sees (`validate`), how rule packs are read ([`rules`]), and how every
//! error is located as `FILE:LINE:COL` ([`crate::section::locate`]).
//!
//! The structs here mirror the file one to one (`deny_unknown_fields`
//! everywhere, so a misspelt key is an error, not a silent default). The
//! validated, ready-to-run form is [`Settings`].

mod cadence;
mod env;
pub mod load;
pub mod redact;
pub mod rules;
mod settings;
mod validate;

pub use crate::section::{
    deserialize_duration, deserialize_opt_duration, ConfigError, ConfigErrors, Secret,
};
pub use cadence::Cadence;
pub use load::{load, load_str};
pub use redact::Redactor;
pub use settings::{ApiToken, CheckSpec, NotifierSettings, Service, Settings, SourceKind};

use crate::model::Severity;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default listen address of the API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9797";
/// Default store path when neither the file nor `$STATE_DIRECTORY` say otherwise.
pub const DEFAULT_STORE_PATH: &str = "/var/lib/release-guardian/guardian.db";
/// Default range-query resolution of a check.
pub const DEFAULT_STEP: Duration = Duration::from_secs(15);
/// Default probe timeout.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default rollback hook timeout.
pub const DEFAULT_ROLLBACK_TIMEOUT: Duration = Duration::from_secs(300);
/// Default timeout of a query to a source.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default timeout of one notification delivery.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// The whole file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub cadence: CadenceConfig,
    #[serde(default)]
    pub sources: SourcesConfig,
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    #[serde(default)]
    pub notifiers: BTreeMap<String, NotifierConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the HTTP API.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Deadline for in-flight work at shutdown.
    #[serde(
        default = "default_shutdown_grace",
        deserialize_with = "deserialize_duration"
    )]
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("valid default")
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}

/// Bearer tokens for the API. Without `[auth]` the API only listens on loopback.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub tokens: Vec<TokenConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    Write,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite file. Default: `$STATE_DIRECTORY/guardian.db` under systemd,
    /// else `/var/lib/release-guardian/guardian.db`.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CadenceConfig {
    pub tiers: Vec<TierConfig>,
}

impl Default for CadenceConfig {
    /// The checklists' schedule: every 5m in hour 1, 15m in hours 2-3, 30m in hours 4-6.
    fn default() -> Self {
        let tier = |until: u64, every: u64| TierConfig {
            until: Duration::from_secs(until * 60),
            every: Duration::from_secs(every * 60),
        };
        Self {
            tiers: vec![tier(60, 5), tier(180, 15), tier(360, 30)],
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// Time since the release at which this tier ends.
    #[serde(deserialize_with = "deserialize_duration")]
    pub until: Duration,
    /// Interval between ticks within this tier.
    #[serde(deserialize_with = "deserialize_duration")]
    pub every: Duration,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    #[serde(default)]
    pub prometheus: Option<PrometheusConfig>,
    #[serde(default)]
    pub loki: Option<LokiConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    pub url: String,
    #[serde(
        default = "default_query_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub timeout: Duration,
    /// Optional `Authorization: Bearer` for a proxy or hosted Prometheus.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiConfig {
    pub url: String,
    #[serde(
        default = "default_query_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub timeout: Duration,
}

fn default_query_timeout() -> Duration {
    DEFAULT_QUERY_TIMEOUT
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    #[serde(default = "default_environment")]
    pub environment: String,
    /// Rule packs, relative to the config file.
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    /// Extra template variables for queries.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Notifier names.
    #[serde(default)]
    pub notify: Vec<String>,
    #[serde(default)]
    pub probes: Vec<ProbeConfig>,
    #[serde(default)]
    pub rollback: Option<RollbackConfig>,
    /// Extension: a cadence for this service only (default: `[cadence]`).
    #[serde(default)]
    pub cadence: Option<CadenceConfig>,
}

pub fn default_environment() -> String {
    "production".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    pub name: String,
    pub url: String,
    /// Expected status; default: any 2xx.
    #[serde(default)]
    pub expect_status: Option<u16>,
    #[serde(
        default = "default_probe_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub timeout: Duration,
}

fn default_probe_timeout() -> Duration {
    DEFAULT_PROBE_TIMEOUT
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RollbackMode {
    /// Run the hook as soon as a check reaches the rollback level.
    #[default]
    Auto,
    /// Page and wait for `POST /v1/releases/{id}/rollback`.
    Manual,
}

impl RollbackMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackConfig {
    /// Program and arguments; run without a shell.
    pub command: Vec<String>,
    #[serde(
        default = "default_rollback_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub timeout: Duration,
    #[serde(default)]
    pub mode: RollbackMode,
    /// Extra environment for the hook.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_rollback_timeout() -> Duration {
    DEFAULT_ROLLBACK_TIMEOUT
}

/// A notifier; `kind` picks the variant.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum NotifierConfig {
    Slack {
        #[serde(default)]
        webhook_url: Option<Secret>,
        #[serde(default)]
        webhook_url_file: Option<PathBuf>,
        #[serde(default)]
        min_severity: Severity,
        #[serde(
            default = "default_notify_timeout",
            deserialize_with = "deserialize_duration"
        )]
        timeout: Duration,
    },
    Webhook {
        url: Secret,
        #[serde(default)]
        min_severity: Severity,
        #[serde(
            default = "default_notify_timeout",
            deserialize_with = "deserialize_duration"
        )]
        timeout: Duration,
    },
    Email {
        smtp_url: Secret,
        from: String,
        to: Vec<String>,
        #[serde(default)]
        min_severity: Severity,
    },
    Pagerduty {
        #[serde(default)]
        routing_key: Option<Secret>,
        #[serde(default)]
        routing_key_file: Option<PathBuf>,
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        min_severity: Severity,
    },
    Alertmanager {
        url: String,
        #[serde(default)]
        min_severity: Severity,
    },
}

fn default_notify_timeout() -> Duration {
    DEFAULT_NOTIFY_TIMEOUT
}

impl NotifierConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Slack { .. } => "slack",
            Self::Webhook { .. } => "webhook",
            Self::Email { .. } => "email",
            Self::Pagerduty { .. } => "pagerduty",
            Self::Alertmanager { .. } => "alertmanager",
        }
    }

    pub fn min_severity(&self) -> Severity {
        match self {
            Self::Slack { min_severity, .. }
            | Self::Webhook { min_severity, .. }
            | Self::Email { min_severity, .. }
            | Self::Pagerduty { min_severity, .. }
            | Self::Alertmanager { min_severity, .. } => *min_severity,
        }
    }
}
