//! The fuzzers' entry points: each turns arbitrary bytes into the input of
//! one production parser, runs it through the entry point the daemon uses,
//! and checks the properties every input must keep. They panic on a broken
//! property and only then; for any other input they answer `Ok` (accepted)
//! or `Err` with the error a user would see.
//!
//! | function | production entry point | properties beyond "no panic, no hang" |
//! |---|---|---|
//! | [`webhook`] | [`intake::receive`] with the format's `[webhooks.TOOL]` from a fixed config | a correctly authenticated request is never refused as unauthenticated; a release goes to a configured target and its deploy record is bounded |
//! | [`release`] | [`intake::receive`] with [`intake::native::Native`] (`POST /v1/releases`) | a parsed release written back as JSON parses to the same release |
//! | [`rule_pack`] | [`rules::parse_pack`] then [`rules::compile`] for a fixed service | every error is located at a line of the text |
//! | [`config()`] | [`load::load_str`] (TOML, layering, validation, rule packs) | every error in the file is located at a line of it; a config accepted once is accepted again |
//! | [`exposition`] | [`exposition::parse`](crate::sources::exposition::parse) (a scrape target's `/metrics`) | every sample has a metric name and no empty label value; samples written back as exposition lines parse the same; an error is located at a line of the text |
//!
//! The fuzz crate in `fuzz/` (one target per function, see
//! docs/development.md "Fuzzing") and the regression tests
//! (`tests/it/fuzz_regressions.rs`, inputs in `tests/fuzz-regressions/`)
//! both call these, so a crash found once stays fixed.

use crate::config::{load, rules, Settings};
use crate::intake::{self, Intake, IntakeError, IntakeRequest};
use crate::section::ConfigError;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The webhook formats [`webhook`] takes, by name.
pub const WEBHOOKS: [&str; 4] = ["github", "gitlab", "argocd", "flux"];

/// The secret of every `[webhooks.TOOL]` in the fixed config.
const SECRET: &str = "fuzz-secret";

/// The config the webhook and rule-pack entry points run against: one
/// service with labels, probes and a scrape, Prometheus and Loki sources,
/// and every webhook section mapping to it.
const BASE_CONFIG: &str = r#"
[sources.prometheus]
url = "http://127.0.0.1:9"
[sources.loki]
url = "http://127.0.0.1:9"

[[services]]
name = "checkout"
environment = "production"
labels = { namespace = "shop" }
  [[services.probes]]
  name = "live"
  url = "http://127.0.0.1:9/health"
  [[services.probes]]
  name = "ready"
  url = "http://127.0.0.1:9/ready"
  [[services.scrapes]]
  name = "app"
  url = "http://127.0.0.1:9/metrics"

[webhooks.github]
secret = "fuzz-secret"
map = [ { repository = "acme/checkout", environment = "production", service = "checkout" } ]
[webhooks.gitlab]
token = "fuzz-secret"
map = [ { project = "acme/checkout", environment = "production", service = "checkout" } ]
[webhooks.argocd]
secret = "fuzz-secret"
map = [ { application = "checkout-prod", service = "checkout", environment = "production" } ]
[webhooks.flux]
secret = "fuzz-secret"
map = [ { kustomization = "checkout", namespace = "flux-system", service = "checkout", environment = "production" } ]
"#;

fn base() -> &'static Settings {
    static BASE: OnceLock<Settings> = OnceLock::new();
    BASE.get_or_init(|| {
        load::load_str(BASE_CONFIG, Path::new("/nonexistent/fuzz.toml"), &[])
            .unwrap_or_else(|e| panic!("the fuzzers' base config is refused:\n{e}"))
    })
}

/// A webhook delivery to format `tool` (one of [`WEBHOOKS`]). `data` is a
/// flag byte, then header lines (`name: value`), a blank line, and the body;
/// without a blank line it is all body. Flag bit 0 set: the harness adds the
/// request's correct signature or token (so the parser behind the check is
/// reached); clear: the request's own headers are all it has.
pub fn webhook(tool: &str, data: &[u8]) -> Result<(), String> {
    let format = intake::by_name(tool).unwrap_or_else(|| panic!("no intake format `{tool}`"));
    let config = base()
        .webhooks
        .get(tool)
        .unwrap_or_else(|| panic!("no [webhooks.{tool}] in the base config"));
    let (sign, rest) = data
        .split_first()
        .map_or((false, data), |(f, r)| (f & 1 == 1, r));
    let (mut headers, body) = split_headers(rest);
    if sign {
        let (name, value) = match tool {
            "github" => ("x-hub-signature-256", hmac(body)),
            "flux" => ("x-signature", hmac(body)),
            "gitlab" => ("x-gitlab-token", SECRET.to_string()),
            _ => ("authorization", format!("Bearer {SECRET}")),
        };
        headers.insert(name, HeaderValue::from_str(&value).expect("ASCII"));
    }
    let request = IntakeRequest {
        headers: &headers,
        body,
        config: Some(config.as_ref()),
    };
    let _ = format.delivery(&request);
    match intake::receive(format, &request) {
        Ok(Intake::Release(new)) => {
            let targets = config.targets();
            assert!(
                targets.iter().any(|t| t.service == new.service
                    && Some(&t.environment) == new.environment.as_ref()),
                "{tool}: a release for an unmapped target: {new:?}"
            );
            let record = &new.annotations[intake::webhook::DEPLOY_ANNOTATION];
            assert_eq!(record["tool"], tool);
            for (key, value) in record.as_object().expect("the deploy record is an object") {
                let chars = value.as_str().map_or(0, |v| v.chars().count());
                assert!(
                    chars <= 1025,
                    "{tool}: deploy record `{key}` is {chars} chars"
                );
            }
            Ok(())
        }
        Ok(Intake::Ignored(why)) => Err(why),
        Err(IntakeError::Unauthenticated(why)) => {
            assert!(
                !sign,
                "{tool}: a correctly authenticated request was refused: {why}"
            );
            Err(why)
        }
        Err(IntakeError::Malformed(why)) => Err(why),
    }
}

/// `sha256=HEX` of `body` under [`SECRET`], as GitHub and Flux sign.
fn hmac(body: &[u8]) -> String {
    format!(
        "sha256={}",
        crate::transport::hmac_sha256_hex(SECRET.as_bytes(), body)
    )
}

/// Header lines up to the first blank line, and the body after it; lines
/// that are no valid header are skipped (an HTTP server would refuse them).
fn split_headers(data: &[u8]) -> (HeaderMap, &[u8]) {
    let mut headers = HeaderMap::new();
    let Some(end) = data.windows(2).position(|w| w == b"\n\n") else {
        return (headers, data);
    };
    for line in data[..end].split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = HeaderName::from_bytes(line[..colon].trim_ascii());
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.append(name, value);
        }
    }
    (headers, &data[end + 2..])
}

/// A `POST /v1/releases` body.
pub fn release(data: &[u8]) -> Result<(), String> {
    let headers = HeaderMap::new();
    let request = IntakeRequest {
        headers: &headers,
        body: data,
        config: None,
    };
    match intake::receive(&intake::native::Native, &request) {
        Ok(Intake::Release(new)) => {
            let mut again = serde_json::json!({
                "service": new.service,
                "version": new.version,
                "annotations": new.annotations,
            });
            if let Some(p) = &new.previous_version {
                again["previous_version"] = p.clone().into();
            }
            if let Some(e) = &new.environment {
                again["environment"] = e.clone().into();
            }
            let text = serde_json::to_vec(&again).expect("a release serializes");
            let request = IntakeRequest {
                body: &text,
                ..request
            };
            match intake::receive(&intake::native::Native, &request) {
                Ok(Intake::Release(back)) => assert_eq!(back, new, "round trip"),
                other => panic!("a parsed release re-serialized is refused: {other:?}"),
            }
            Ok(())
        }
        Ok(Intake::Ignored(why)) => panic!("the native format ignored a body: {why}"),
        Err(IntakeError::Malformed(why)) => {
            assert!(!why.is_empty(), "an empty error message");
            Err(why)
        }
        Err(e @ IntakeError::Unauthenticated(_)) => {
            panic!("the native format authenticates nothing itself: {e}")
        }
    }
}

/// A rule pack's YAML text, parsed and compiled for the base config's
/// service (its labels, probes `live` and `ready`, scrape `app`, sources `prometheus` and
/// `loki`).
pub fn rule_pack(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    let file = Path::new("fuzz.yaml");
    let pack = rules::parse_pack(&text, file);
    let service = &base().services[0];
    let sources = BTreeMap::from([
        ("prometheus".to_string(), Some("prometheus")),
        ("loki".to_string(), Some("loki")),
    ]);
    let scope = rules::ServiceScope {
        name: &service.name,
        environment: &service.environment,
        labels: &service.labels,
        probes: &service.probes,
        scrapes: &service.scrapes,
        sources: &sources,
    };
    let compiled = rules::compile(&[&pack], &scope);
    let errors: Vec<&ConfigError> = pack.errors.iter().chain(&compiled.errors).collect();
    if errors.is_empty() {
        return Ok(());
    }
    check_located(&errors, file, &text);
    Err(errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n"))
}

/// A config file's TOML text, loaded as `guardian.toml` in the crate's
/// directory (so `rules/*.yaml` names its real rule packs), with no
/// environment overrides.
pub fn config(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz-guardian.toml");
    match load::load_str(&text, &path, &[]) {
        Ok(_) => {
            if let Err(e) = load::load_str(&text, &path, &[]) {
                panic!("a config accepted once is refused the second time:\n{e}");
            }
            Ok(())
        }
        Err(e) => {
            assert!(!e.errors.is_empty(), "refused without an error");
            let errors: Vec<&ConfigError> = e.errors.iter().collect();
            check_located(&errors, &path, &text);
            Err(e.to_string())
        }
    }
}

/// A scrape target's `/metrics` body, read as the scrape source reads it
/// (bytes that are not UTF-8 replaced).
pub fn exposition(data: &[u8]) -> Result<(), String> {
    use crate::sources::exposition::parse;
    let text = String::from_utf8_lossy(data);
    let samples = match parse(&text) {
        Ok(samples) => samples,
        Err(e) => {
            let lines = text.lines().count().max(1);
            assert!(
                e.line >= 1 && e.line <= lines && e.col >= 1,
                "error located outside the text ({lines} lines): {e}"
            );
            return Err(e.to_string());
        }
    };
    let mut again = String::new();
    for (labels, value) in &samples {
        assert!(
            labels.values().all(|v| !v.is_empty()),
            "an empty label value was kept: {labels:?}"
        );
        let mut rest = labels.clone();
        let name = rest.remove("__name__").expect("every sample has a name");
        let written = crate::sources::prometheus::series_key(&rest);
        again += &format!("{name}{written} {value}\n");
    }
    let reparsed =
        parse(&again).unwrap_or_else(|e| panic!("written back as {again:?}, refused: {e}"));
    assert_eq!(reparsed.len(), samples.len(), "written back as {again:?}");
    for ((l1, v1), (l2, v2)) in samples.iter().zip(&reparsed) {
        assert_eq!(l1, l2, "written back as {again:?}");
        assert!(
            v1 == v2 || (v1.is_nan() && v2.is_nan()),
            "{v1} written back as {again:?} parsed as {v2}"
        );
    }
    Ok(())
}

/// Every error in `file` points at a line of `text` (or just past its end)
/// and a column from 1. Lines end as YAML ends them: `\r\n`, `\n` or a lone
/// `\r` (the YAML parser counts a lone `\r` as a line break; TOML refuses
/// one, so the bound only loosens for TOML).
fn check_located(errors: &[&ConfigError], file: &Path, text: &str) {
    let lines = text
        .replace("\r\n", "\n")
        .split(['\n', '\r'])
        .count()
        .max(1);
    for e in errors.iter().filter(|e| e.file == file) {
        assert!(
            e.line >= 1 && e.col >= 1 && e.line <= lines + 1,
            "error located outside the text ({lines} lines): {e}"
        );
    }
}
