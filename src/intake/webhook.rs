//! What the deploy tools' webhook formats ([`super::github`],
//! [`super::gitlab`], [`super::argocd`], [`super::flux`]) share: the
//! `[webhooks.TOOL]` section's secret and event map, checks of a signature or
//! a token in constant time over the raw body, and the deploy record kept on
//! the release (annotation [`DEPLOY_ANNOTATION`]).

use super::{IntakeError, IntakeRequest};
use crate::model::NewRelease;
use crate::section::{Secret, Section};
use std::collections::BTreeMap;
use std::path::PathBuf;
use subtle::ConstantTimeEq;

/// The annotation under which a webhook-started release keeps what the deploy
/// tool said about it: `{"tool", "event", "delivery", "actor", "commit",
/// "ref", "url", "message"}` (keys absent when the tool did not say).
pub const DEPLOY_ANNOTATION: &str = "deploy";

/// Reads the section's required secret (`key` or `key_file`).
pub fn section_secret(
    s: &mut Section<'_, '_>,
    inline: Option<&Secret>,
    file: Option<&PathBuf>,
    key: &str,
) -> Option<Secret> {
    let what = format!("[{}]", s.at);
    let (secret, at) = s.secret(inline, file, key, &what)?;
    if secret.expose().trim().is_empty() {
        s.report.error(&at, format!("`{key}` must not be empty"));
        return None;
    }
    Some(secret)
}

/// Where a matched event's watch goes: a configured service and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub service: String,
    pub environment: String,
}

/// Checks every `map` entry's own keys are non-empty (the format's file
/// names the match keys); reports each empty one.
pub fn check_map_entry(s: &mut Section<'_, '_>, index: usize, keys: &[(&str, &str)]) -> bool {
    let mut ok = true;
    for (key, value) in keys {
        if value.trim().is_empty() {
            let at = s.at.key("map").index(index).key(key);
            s.report.error(&at, format!("`{key}` must not be empty"));
            ok = false;
        }
    }
    ok
}

/// The format's own `[webhooks.TOOL]` section `T` of `request` (the router
/// serves a webhook only while its section is configured; its absence is
/// refused, never let through).
pub fn section_of<'a, T: 'static>(
    request: &IntakeRequest<'a>,
    tool: &str,
) -> Result<&'a T, IntakeError> {
    request
        .config
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| IntakeError::Unauthenticated(format!("[webhooks.{tool}] is not configured")))
}

/// The header `name` as text, if present and visible ASCII.
pub fn header<'a>(request: &'a IntakeRequest<'_>, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks `<algorithm>=<hex HMAC of the raw body>` in header `name` (GitHub's
/// `X-Hub-Signature-256`, Flux's `X-Signature`), in constant time.
/// `sha256`, `sha384` and `sha512` are understood.
pub fn verify_hmac(
    request: &IntakeRequest<'_>,
    name: &str,
    secret: &Secret,
) -> Result<(), IntakeError> {
    let unauthorized = |why: &str| IntakeError::Unauthenticated(format!("{name}: {why}"));
    let value = header(request, name).ok_or_else(|| unauthorized("missing signature header"))?;
    let (algorithm, hex) = value
        .split_once('=')
        .ok_or_else(|| unauthorized("expected ALGORITHM=HEX"))?;
    let algorithm = match algorithm.to_ascii_lowercase().as_str() {
        "sha256" => ring::hmac::HMAC_SHA256,
        "sha384" => ring::hmac::HMAC_SHA384,
        "sha512" => ring::hmac::HMAC_SHA512,
        _ => return Err(unauthorized("unsupported signature algorithm")),
    };
    let signature = decode_hex(hex.trim()).ok_or_else(|| unauthorized("signature is not hex"))?;
    let key = ring::hmac::Key::new(algorithm, secret.expose().as_bytes());
    // `ring::hmac::verify` compares in constant time.
    ring::hmac::verify(&key, request.body, &signature)
        .map_err(|_| unauthorized("signature does not match the body"))
}

/// Checks a shared token sent verbatim (GitLab's `X-Gitlab-Token`, a bearer
/// header), in constant time: both sides are hashed first, so neither the
/// contents nor the length of the secret leak through timing.
pub fn verify_token(
    presented: Option<&str>,
    secret: &Secret,
    what: &str,
) -> Result<(), IntakeError> {
    let presented =
        presented.ok_or_else(|| IntakeError::Unauthenticated(format!("{what}: missing")))?;
    let digest = |b: &[u8]| ring::digest::digest(&ring::digest::SHA256, b);
    let a = digest(presented.as_bytes());
    let b = digest(secret.expose().as_bytes());
    if bool::from(a.as_ref().ct_eq(b.as_ref())) {
        Ok(())
    } else {
        Err(IntakeError::Unauthenticated(format!(
            "{what}: does not match"
        )))
    }
}

/// The hex SHA-256 of the raw body: the delivery id of tools that retry
/// with the same bytes and send no id of their own (Argo CD, Flux).
pub fn body_digest(request: &IntakeRequest<'_>) -> String {
    ring::digest::digest(&ring::digest::SHA256, request.body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.is_empty() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What a deploy tool said about a deployment, kept on the release.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deploy {
    pub tool: &'static str,
    pub event: Option<String>,
    pub delivery: Option<String>,
    pub actor: Option<String>,
    pub commit: Option<String>,
    pub reference: Option<String>,
    pub url: Option<String>,
    pub message: Option<String>,
}

/// Longest text kept for one field of the deploy record (a commit message
/// can be long; the record is answered with every release).
const MAX_FIELD_CHARS: usize = 1024;

impl Deploy {
    /// The release to watch: `version` of `target`, with this record under
    /// [`DEPLOY_ANNOTATION`].
    pub fn release(
        self,
        target: &Target,
        version: String,
        previous_version: Option<String>,
    ) -> NewRelease {
        let mut record = serde_json::Map::new();
        record.insert("tool".into(), self.tool.into());
        for (key, value) in [
            ("event", self.event),
            ("delivery", self.delivery),
            ("actor", self.actor),
            ("commit", self.commit),
            ("ref", self.reference),
            ("url", self.url),
            ("message", self.message),
        ] {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                record.insert(key.into(), truncate(v).into());
            }
        }
        NewRelease {
            service: target.service.clone(),
            version,
            previous_version: previous_version.filter(|v| !v.is_empty()),
            environment: Some(target.environment.clone()),
            annotations: BTreeMap::from([(DEPLOY_ANNOTATION.to_string(), record.into())]),
        }
    }
}

fn truncate(mut s: String) -> String {
    if let Some((i, _)) = s.char_indices().nth(MAX_FIELD_CHARS) {
        s.truncate(i);
        s.push('…');
    }
    s
}

/// The body as the tool's JSON event, with a message that names the tool.
pub fn json_body<T: serde::de::DeserializeOwned>(
    request: &IntakeRequest<'_>,
    tool: &str,
) -> Result<T, IntakeError> {
    let mut de = serde_json::Deserializer::from_slice(request.body);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| IntakeError::Malformed(format!("not a {tool} event: {e}")))?;
    de.end()
        .map_err(|e| IntakeError::Malformed(format!("not a {tool} event: {e}")))?;
    Ok(value)
}

/// The message for an event that maps to no `[webhooks.TOOL] map` entry.
pub fn unmapped(tool: &str, what: String) -> String {
    format!("no [webhooks.{tool}] map entry for {what}; nothing to watch")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderName, HeaderValue};

    /// `sha256=HEX` of `body` under `secret`, as GitHub and Flux sign.
    pub fn sign(secret: &str, body: &[u8]) -> String {
        format!(
            "sha256={}",
            crate::transport::hmac_sha256_hex(secret.as_bytes(), body)
        )
    }

    pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn githubs_published_test_vector_verifies() {
        // From GitHub's "Validating webhook deliveries".
        let h = headers(&[(
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        let request = IntakeRequest {
            headers: &h,
            body: b"Hello, World!",
            config: None,
        };
        let secret = Secret::new("It's a Secret to Everybody");
        verify_hmac(&request, "x-hub-signature-256", &secret).unwrap();
        assert_eq!(
            sign("It's a Secret to Everybody", b"Hello, World!"),
            h["x-hub-signature-256"]
        );
        let other = Secret::new("It's a Secret to Nobody");
        assert!(verify_hmac(&request, "x-hub-signature-256", &other).is_err());
        let tampered = IntakeRequest {
            body: b"Hello, World?",
            ..request
        };
        assert!(verify_hmac(&tampered, "x-hub-signature-256", &secret).is_err());
    }

    #[test]
    fn malformed_signatures_are_refused_with_the_reason() {
        let secret = Secret::new("s");
        for (value, why) in [
            ("757107ea", "expected ALGORITHM=HEX"),
            ("md5=00", "unsupported"),
            ("sha256=zz", "not hex"),
            ("sha256=abc", "not hex"),
            ("sha256=", "not hex"),
            ("sha256=00ff", "does not match"),
        ] {
            let h = headers(&[("x-signature", value)]);
            let request = IntakeRequest {
                headers: &h,
                body: b"{}",
                config: None,
            };
            let e = verify_hmac(&request, "x-signature", &secret).unwrap_err();
            assert!(e.to_string().contains(why), "{value}: {e}");
        }
        let none = HeaderMap::new();
        let request = IntakeRequest {
            headers: &none,
            body: b"{}",
            config: None,
        };
        let e = verify_hmac(&request, "x-signature", &secret).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn tokens_compare_whole() {
        let secret = Secret::new("tok3n");
        verify_token(Some("tok3n"), &secret, "X-Gitlab-Token").unwrap();
        for wrong in ["tok3", "tok3n ", "TOK3N", ""] {
            assert!(
                verify_token(Some(wrong), &secret, "t").is_err(),
                "{wrong:?}"
            );
        }
        assert!(verify_token(None, &secret, "t").is_err());
    }

    #[test]
    fn the_deploy_record_keeps_what_the_tool_said_and_bounds_it() {
        let target = Target {
            service: "checkout".into(),
            environment: "production".into(),
        };
        let new = Deploy {
            tool: "github",
            actor: Some("octocat".into()),
            commit: Some("abc".into()),
            message: Some("x".repeat(5000)),
            url: Some(String::new()),
            ..Deploy::default()
        }
        .release(&target, "v2".into(), Some(String::new()));
        assert_eq!(new.service, "checkout");
        assert_eq!(new.environment.as_deref(), Some("production"));
        assert_eq!(new.previous_version, None);
        let record = &new.annotations[DEPLOY_ANNOTATION];
        assert_eq!(record["tool"], "github");
        assert_eq!(record["actor"], "octocat");
        assert!(record.get("url").is_none(), "empty fields are left out");
        assert_eq!(
            record["message"].as_str().unwrap().chars().count(),
            MAX_FIELD_CHARS + 1
        );
    }
}
