//! Semantic checks of the deserialized config, and the build of
//! [`Settings`]: what serde cannot see (a public listen address without
//! `[auth]`, a `notify` naming no notifier, two services with the same name,
//! unreadable `*_file` secrets, bad URLs, rule packs). Every finding is
//! located at the key that is wrong. Secrets are read here, and no message
//! ever quotes one.
//!
//! Relative paths (`rules`, `store.path`, every `*_file`) are relative to
//! the config file's directory.

mod services;

use super::cadence::Escalate;
use super::load::Parsed;
use super::Cadence;
use super::{default_revert_tiers, ApiToken, CadenceConfig, Config, Settings, TierConfig};
use crate::section::{one_secret, KeyPath, Report};
use crate::store::sqlite::DEFAULT_PATH;
use crate::store::StoreSettings;
use services::{build_services, ServiceContext};
use std::path::Path;

/// Checks `parsed` and builds the settings (meaningful only when `report`
/// holds no error).
pub(super) fn validate(parsed: Parsed, report: &mut Report<'_>, file: &Path) -> Settings {
    let base = file.parent().unwrap_or(Path::new("")).to_path_buf();
    let Parsed {
        config,
        server_failed,
        auth_failed,
        cadence_failed,
        services,
        notifier_names,
        notifiers,
        source_names,
        sources,
        store_seen: _,
        retention,
        store,
        webhooks,
    } = parsed;
    let tokens = auth_tokens(&config, &base, report);
    let mut tls = None;
    if !server_failed {
        check_listen(&config, auth_failed, report);
        check_server_limits(&config.server, report);
        tls = server_tls(&config.server, &base, report);
    }
    let cadence = if cadence_failed {
        None
    } else {
        cadence(&config.cadence, &KeyPath::root().key("cadence"), report)
    };
    let cadence = cadence.unwrap_or_else(|| {
        Cadence::from_config(&CadenceConfig::default()).expect("the default cadence is valid")
    });
    let revert_cadence = (!cadence_failed)
        .then(|| revert_cadence(&config.cadence, &KeyPath::root().key("cadence"), report))
        .flatten()
        .unwrap_or_else(|| {
            Cadence::new(&default_revert_tiers())
                .expect("the default revert cadence is valid")
                .with_escalate(cadence.escalate())
                .with_sentinel(cadence.sentinel())
        });
    let ctx = ServiceContext {
        base: &base,
        notifier_names: &notifier_names,
        cadence: &cadence,
        revert_cadence: &revert_cadence,
        sources: &source_names,
    };
    let services = build_services(&services, &ctx, report);
    check_webhook_targets(&webhooks, &services, report);
    Settings {
        file: file.to_path_buf(),
        config,
        store: store.unwrap_or_else(|| StoreSettings::sqlite(DEFAULT_PATH)),
        retention,
        services,
        notifiers,
        sources,
        webhooks,
        tokens,
        tls,
        warnings: Vec::new(),
    }
}

/// `[server] tls_cert_file`, `tls_key_file`, `tls_client_ca_file`: both of
/// the first two or neither; the files read and checked (each problem at
/// its key). An expired certificate is an error: no client would accept it.
fn server_tls(
    server: &super::ServerConfig,
    base: &Path,
    report: &mut Report<'_>,
) -> Option<crate::tls::ServerTls> {
    let at = KeyPath::root().key("server");
    let (cert, key) = match (&server.tls_cert_file, &server.tls_key_file) {
        (Some(c), Some(k)) => (c, k),
        (None, None) => {
            if server.tls_client_ca_file.is_some() {
                report.error(
                    &at.key("tls_client_ca_file"),
                    "`tls_client_ca_file` needs `tls_cert_file` and `tls_key_file`",
                );
            }
            return None;
        }
        (Some(_), None) => {
            report.error(
                &at.key("tls_cert_file"),
                "`tls_cert_file` needs `tls_key_file`",
            );
            return None;
        }
        (None, Some(_)) => {
            report.error(
                &at.key("tls_key_file"),
                "`tls_key_file` needs `tls_cert_file`",
            );
            return None;
        }
    };
    let files = crate::tls::TlsFiles {
        cert: base.join(cert),
        key: base.join(key),
        client_ca: server.tls_client_ca_file.as_ref().map(|f| base.join(f)),
    };
    match crate::tls::load(&files) {
        Ok(tls) if tls.summary.expired => {
            report.error(
                &at.key("tls_cert_file"),
                format!(
                    "the certificate in {} expired at {}",
                    files.cert.display(),
                    tls.summary.not_after
                ),
            );
            None
        }
        Ok(tls) => Some(tls),
        Err(errors) => {
            for (key, message) in errors {
                report.error(&at.key(key.name()), format!("`{}`: {message}", key.name()));
            }
            None
        }
    }
}

/// Every `[webhooks.TOOL] map` entry names a configured service and
/// environment (else its events would be accepted and fail to register).
fn check_webhook_targets(
    webhooks: &std::collections::BTreeMap<
        &'static str,
        std::sync::Arc<dyn crate::intake::IntakeConfig>,
    >,
    services: &[super::Service],
    report: &mut Report<'_>,
) {
    for (name, config) in webhooks {
        for (i, t) in config.targets().iter().enumerate() {
            let known = services
                .iter()
                .any(|s| s.name == t.service && s.environment == t.environment);
            if !known {
                report.error(
                    &KeyPath::root()
                        .key("webhooks")
                        .key(name)
                        .key("map")
                        .index(i)
                        .key("service"),
                    format!(
                        "service `{}` ({}) is not configured in [[services]]",
                        t.service, t.environment
                    ),
                );
            }
        }
    }
}

fn auth_tokens(config: &Config, base: &Path, report: &mut Report<'_>) -> Vec<ApiToken> {
    let Some(auth) = &config.auth else {
        return Vec::new();
    };
    let at = KeyPath::root().key("auth").key("tokens");
    if auth.tokens.is_empty() {
        report.error(&at, "`[auth]` needs at least one token in `tokens`");
    }
    let mut out = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, t) in auth.tokens.iter().enumerate() {
        let tp = at.index(i);
        if let Some(name) = &t.name {
            if name.trim().is_empty() || name.chars().any(char::is_control) {
                report.error(&tp.key("name"), "a token's `name` must be non-empty text");
            } else if !names.insert(name.clone()) {
                report.error(
                    &tp.key("name"),
                    format!("token name `{name}` is used twice"),
                );
            }
        }
        let secret = one_secret(
            t.token.as_ref(),
            t.token_file.as_ref(),
            "token",
            &tp,
            "an API token",
            base,
            report,
        );
        if t.scopes.is_empty() {
            report.error(
                &tp.key("scopes"),
                "a token needs at least one scope: read, write",
            );
        }
        if let Some((token, key)) = secret {
            // A short token can be guessed over the network; on loopback
            // only local users can try, so it is allowed there.
            let len = token.expose().trim().len();
            if len < MIN_TOKEN_BYTES && !config.server.listen.ip().is_loopback() {
                report.error(
                    &key,
                    format!(
                        "the token is {len} bytes long; with a non-loopback `[server] listen` tokens need at least {MIN_TOKEN_BYTES} bytes"
                    ),
                );
            }
            out.push(ApiToken {
                name: t.name.clone().unwrap_or_else(|| format!("token-{}", i + 1)),
                token,
                scopes: t.scopes.clone(),
            });
        }
    }
    out
}

/// Shortest API token accepted when the API listens beyond loopback.
pub const MIN_TOKEN_BYTES: usize = 16;

/// Largest `[server] max_connections`: the unit's descriptor limit (65536)
/// must keep room for everything else the daemon opens.
const MAX_MAX_CONNECTIONS: usize = 16_384;

/// `max_connections`, the connection timeouts, `allowed_hosts`, the intake
/// rate limit and `public_url`.
fn check_server_limits(server: &super::ServerConfig, report: &mut Report<'_>) {
    let at = KeyPath::root().key("server");
    if !(1..=MAX_MAX_CONNECTIONS).contains(&server.max_connections) {
        report.error(
            &at.key("max_connections"),
            format!("`max_connections` must be from 1 to {MAX_MAX_CONNECTIONS}"),
        );
    }
    for (key, value) in [
        ("header_read_timeout", server.header_read_timeout),
        ("idle_timeout", server.idle_timeout),
    ] {
        if value.is_zero() {
            report.error(&at.key(key), format!("`{key}` must be positive"));
        }
    }
    for (i, host) in server.allowed_hosts.iter().enumerate() {
        if crate::section::parse_host(host).is_none() {
            report.error(
                &at.key("allowed_hosts").index(i),
                format!(
                    "`{}` is not a host name with an optional port (`NAME` or `NAME:PORT`)",
                    host.escape_debug()
                ),
            );
        }
    }
    match (server.intake_rate_limit, server.intake_rate_burst) {
        (_, Some(0)) => report.error(
            &at.key("intake_rate_burst"),
            "`intake_rate_burst` must be at least 1",
        ),
        (None, Some(_)) => report.error(
            &at.key("intake_rate_burst"),
            "`intake_rate_burst` needs `intake_rate_limit`",
        ),
        _ => {}
    }
    if let Some(url) = &server.public_url {
        if let Err(e) = crate::section::http_url(url) {
            report.error(
                &at.key("public_url"),
                format!("`public_url` {url:?} is not an http(s) URL: {e}"),
            );
        }
    }
}

fn check_listen(config: &Config, auth_failed: bool, report: &mut Report<'_>) {
    let listen = config.server.listen;
    let authenticated = auth_failed || config.auth.as_ref().is_some_and(|a| !a.tokens.is_empty());
    if !listen.ip().is_loopback() && !authenticated {
        report.error(
            &KeyPath::root().key("server").key("listen"),
            format!(
                "listen address {listen} is not loopback; without [auth] the API listens on loopback only"
            ),
        );
    }
}

/// Validates a cadence at `at` (a `[cadence]` table), locating a bad tier.
pub(super) fn cadence(c: &CadenceConfig, at: &KeyPath, report: &mut Report<'_>) -> Option<Cadence> {
    let escalate = interval(c.escalate_every.as_deref(), "escalate_every", at, report);
    let sentinel = interval(c.sentinel_every.as_deref(), "sentinel_every", at, report);
    let cadence = tiers(&c.tiers, &at.key("tiers"), report)?;
    Some(cadence.with_escalate(escalate?).with_sentinel(sentinel?))
}

/// The `escalate_every` or `sentinel_every` (`key`) of a `[cadence]` table
/// at `at` (default `step`).
fn interval(
    value: Option<&str>,
    key: &str,
    at: &KeyPath,
    report: &mut Report<'_>,
) -> Option<Escalate> {
    match value.map(|v| Escalate::parse_key(v, key)) {
        None => Some(Escalate::default()),
        Some(Ok(e)) => Some(e),
        Some(Err(msg)) => {
            report.error(&at.key(key), msg);
            None
        }
    }
}

/// Validates the revert tiers of a `[cadence]` table at `at`: `None` when
/// they are not set or not valid (reported).
pub(super) fn revert_cadence(
    c: &CadenceConfig,
    at: &KeyPath,
    report: &mut Report<'_>,
) -> Option<Cadence> {
    let tiers = tiers(c.revert_tiers.as_deref()?, &at.key("revert_tiers"), report)?;
    // Reported, if wrong, with the table's tiers.
    let parsed =
        |v: Option<&str>, key| v.map_or(Ok(Escalate::default()), |v| Escalate::parse_key(v, key));
    let escalate = parsed(c.escalate_every.as_deref(), "escalate_every").ok()?;
    let sentinel = parsed(c.sentinel_every.as_deref(), "sentinel_every").ok()?;
    Some(tiers.with_escalate(escalate).with_sentinel(sentinel))
}

/// Validates a list of tiers at `tiers`, locating a bad tier.
fn tiers(list: &[TierConfig], tiers: &KeyPath, report: &mut Report<'_>) -> Option<Cadence> {
    match Cadence::new(list) {
        Ok(c) => Some(c),
        Err(msg) => {
            // Cadence says "tier N: `key` ..."; point at that key when it does.
            let tiers = tiers.clone();
            let path = msg
                .strip_prefix("tier ")
                .and_then(|r| r.split_once(": `"))
                .and_then(|(n, r)| Some((n.parse::<usize>().ok()?, r.split_once('`')?.0)))
                .filter(|(n, _)| *n >= 1)
                .map_or(tiers.clone(), |(n, key)| tiers.index(n - 1).key(key));
            report.error(&path, msg);
            None
        }
    }
}
