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
pub mod judgment;
#[cfg(test)]
mod judgment_tests;
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
pub use settings::{ApiToken, CheckSpec, LogsSpec, Service, Settings};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default listen address of the API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9797";
/// How long ended releases are kept by default (`[store] retention`).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
/// Default range-query resolution of a check.
pub const DEFAULT_STEP: Duration = Duration::from_secs(15);

/// The whole file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub cadence: CadenceConfig,
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
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
    /// Most connections open at once; a connection over the cap closes the
    /// longest-idle one, or is closed itself if none is idle.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a request's head (request line and headers) may take to
    /// arrive once its first byte has.
    #[serde(
        default = "default_header_read_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub header_read_timeout: Duration,
    /// How long a connection may stay open without a request (a new one, or
    /// one kept alive after a response) before it is closed.
    #[serde(
        default = "default_idle_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub idle_timeout: Duration,
    /// Host names (optionally `NAME:PORT`) accepted in the `Host` header
    /// without `[auth]`, besides loopback names and addresses.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// The address people reach this API at (`https://guardian.example`),
    /// for links in notifications; without it messages carry no links.
    #[serde(default)]
    pub public_url: Option<String>,
    /// PEM certificate chain the API serves over TLS (with `tls_key_file`);
    /// without both the API speaks plain HTTP. Read again on SIGHUP.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA bundle: with it, clients must present a certificate it
    /// signed (mutual TLS).
    #[serde(default)]
    pub tls_client_ca_file: Option<PathBuf>,
    /// Registrations (`POST /v1/releases`, `/v1/webhooks/*`) one client (a
    /// token's name, else an address) may make, `N/s`, `N/m` or `N/h`;
    /// `"off"` (the default) for no limit.
    #[serde(
        default,
        deserialize_with = "crate::actions::notify::rate::deserialize_opt_limit"
    )]
    pub intake_rate_limit: Option<crate::actions::notify::rate::RateLimit>,
    /// Registrations a client may make at once before `intake_rate_limit`
    /// spaces them (default: its N).
    #[serde(default)]
    pub intake_rate_burst: Option<u32>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            shutdown_grace: default_shutdown_grace(),
            max_connections: default_max_connections(),
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            allowed_hosts: Vec::new(),
            public_url: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            intake_rate_limit: None,
            intake_rate_burst: None,
        }
    }
}

/// Default `[server] max_connections`: far below the unit's descriptor limit
/// (`LimitNOFILE=65536`) and even below the common 1024 soft limit, which
/// leaves room for the store, Prometheus and probe connections, notifier
/// deliveries and rollback hooks.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
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
    /// Extension: the name the audit log records for this token's writes
    /// (default `token-N`, N its position from 1).
    #[serde(default)]
    pub name: Option<String>,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CadenceConfig {
    pub tiers: Vec<TierConfig>,
    /// Extension: how often a watch ticks while any of its checks is above
    /// `ok`: `"step"` (the default: the smallest `step` of its checks), a
    /// duration, or `"off"`.
    #[serde(default)]
    pub escalate_every: Option<String>,
    /// Extension: how often a watch looks at its query checks (Prometheus,
    /// Loki, scrape) between ticks, and ticks at once when one looks worse:
    /// `"step"` (the default: the smallest `step` of those checks), a
    /// duration, or `"off"`.
    #[serde(default)]
    pub sentinel_every: Option<String>,
    /// Extension: the tiers of a revert (a release of the version the
    /// latest release replaced); default [`default_revert_tiers`].
    #[serde(default)]
    pub revert_tiers: Option<Vec<TierConfig>>,
}

/// A revert's default schedule: every minute for 15 minutes, then every 5
/// minutes until the hour: a known version coming back needs a fast
/// answer, not six hours of watching.
pub fn default_revert_tiers() -> Vec<TierConfig> {
    vec![
        TierConfig {
            until: Duration::from_secs(15 * 60),
            every: Duration::from_secs(60),
        },
        TierConfig {
            until: Duration::from_secs(60 * 60),
            every: Duration::from_secs(5 * 60),
        },
    ]
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
            revert_tiers: None,
            escalate_every: None,
            sentinel_every: None,
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
    pub probes: Vec<crate::sources::probe::ProbeConfig>,
    /// Targets scraped directly for `source: scrape` checks.
    #[serde(default)]
    pub scrapes: Vec<crate::sources::scrape::ScrapeConfig>,
    #[serde(default)]
    pub rollback: Option<crate::actions::rollback::RollbackConfig>,
    /// Extension: a cadence for this service only (default: `[cadence]`).
    #[serde(default)]
    pub cadence: Option<CadenceConfig>,
    /// Extension: roll back when the release's health score (out of 100)
    /// falls below this.
    #[serde(default)]
    pub min_health_score: Option<f64>,
}

pub use crate::model::default_environment;
