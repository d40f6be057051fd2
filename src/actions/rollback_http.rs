//! The rollback hook's second form: `[services.rollback] url = "..."`. The
//! release is POSTed as JSON ([`payload`]) to the URL, once, under the
//! hook's `timeout`; a 2xx answer means rolled back, anything else (another
//! status, a network error, the timeout) means the rollback failed. With a
//! `secret` (or `secret_file`) the request carries
//! `X-Guardian-Signature: sha256=HEX`, the HMAC-SHA256 of the raw
//! body under that key ([`crate::transport::hmac_sha256_hex`]), so the
//! receiver can check that the request is ours and unaltered.
//!
//! The request is never retried: a release is rolled back at most once,
//! and a request whose answer was lost may have rolled it back. Redirects
//! are not followed (the daemon's notify client).

use super::rollback::{HookVars, RollbackConfig};
use serde::Serialize;
use std::time::{Duration, Instant};

/// The signature header of the `url` form.
pub const SIGNATURE_HEADER: &str = "X-Guardian-Signature";

/// Bytes of the answer's body kept in the record.
pub const BODY_EXCERPT: usize = 2048;

/// The JSON the `url` form POSTs: the same facts the command form gets as
/// `RG_*` variables.
#[derive(Debug, Serialize)]
pub struct Payload<'a> {
    /// Always `rollback`.
    pub event: &'static str,
    pub release_id: &'a str,
    pub service: &'a str,
    pub environment: &'a str,
    pub version: &'a str,
    /// `null` when the deploy tool did not say.
    pub previous_version: Option<&'a str>,
    pub reason: &'a str,
}

/// The raw body of the POST for `vars`.
pub fn payload(vars: &HookVars) -> Vec<u8> {
    let p = Payload {
        event: "rollback",
        release_id: &vars.release_id,
        service: &vars.service,
        environment: &vars.environment,
        version: &vars.version,
        previous_version: Some(vars.previous_version.as_str()).filter(|v| !v.is_empty()),
        reason: &vars.reason,
    };
    serde_json::to_vec(&p).expect("a payload of strings serializes")
}

/// What the POST did.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRun {
    /// The answer's status, if one came.
    pub status: Option<u16>,
    /// The start of the answer's body ([`BODY_EXCERPT`] bytes, lossy UTF-8).
    pub body: String,
    pub elapsed: Duration,
    /// Why no answer came (network error, timeout).
    pub error: Option<String>,
}

impl HttpRun {
    /// A 2xx answer: rolled back.
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// "answered HTTP 500 after 12 ms: BODY", "cannot reach ...: ...".
    pub fn describe(&self) -> String {
        let took = self.elapsed.as_millis();
        match (self.status, &self.error) {
            (Some(status), _) => {
                let body = self.body.split_whitespace().collect::<Vec<_>>().join(" ");
                let body: String = body.chars().take(200).collect();
                if body.is_empty() {
                    format!("the rollback url answered HTTP {status} after {took} ms")
                } else {
                    format!("the rollback url answered HTTP {status} after {took} ms: {body}")
                }
            }
            (None, Some(e)) => {
                format!("the rollback url could not be reached after {took} ms: {e}")
            }
            (None, None) => format!("the rollback url gave no answer after {took} ms"),
        }
    }
}

/// POSTs `body` to the hook's `url` once, signed when it has a key.
pub async fn post(
    http: &reqwest::Client,
    cfg: &RollbackConfig,
    body: Vec<u8>,
    key: &str,
) -> HttpRun {
    let started = Instant::now();
    let failed = |error: String| HttpRun {
        status: None,
        body: String::new(),
        elapsed: started.elapsed(),
        error: Some(error),
    };
    let Some(url) = cfg.url.as_deref() else {
        return failed("the rollback hook has no url".into());
    };
    let mut request = http
        .post(url)
        .timeout(cfg.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", key);
    if let Some(secret) = &cfg.signing_key {
        let signature = crate::transport::hmac_sha256_hex(secret.expose().as_bytes(), &body);
        request = request.header(SIGNATURE_HEADER, format!("sha256={signature}"));
    }
    let mut response = match request.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            return failed(crate::transport::describe_transport_error(&e, cfg.timeout));
        }
    };
    let status = response.status().as_u16();
    let mut bytes = Vec::new();
    while bytes.len() < BODY_EXCERPT {
        match tokio::time::timeout(
            cfg.timeout.saturating_sub(started.elapsed()),
            response.chunk(),
        )
        .await
        {
            Ok(Ok(Some(chunk))) => bytes.extend_from_slice(&chunk),
            // The status is what counts; a body cut short is still an answer.
            _ => break,
        }
    }
    bytes.truncate(BODY_EXCERPT);
    HttpRun {
        status: Some(status),
        body: String::from_utf8_lossy(&bytes).into_owned(),
        elapsed: started.elapsed(),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_carries_the_release() {
        let vars = HookVars {
            release_id: "r1".into(),
            service: "checkout".into(),
            environment: "production".into(),
            version: "v2".into(),
            previous_version: String::new(),
            reason: "error_rate above 0.05".into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&payload(&vars)).unwrap();
        assert_eq!(v["event"], "rollback");
        assert_eq!(v["version"], "v2");
        assert_eq!(v["previous_version"], serde_json::Value::Null);
        assert_eq!(v["reason"], "error_rate above 0.05");
    }

    #[test]
    fn only_2xx_rolls_back() {
        let run = |status| HttpRun {
            status,
            body: "  nope \n".into(),
            elapsed: Duration::from_millis(12),
            error: None,
        };
        assert!(run(Some(204)).succeeded());
        assert!(!run(Some(500)).succeeded());
        assert!(!run(Some(302)).succeeded());
        assert!(!run(None).succeeded());
        assert_eq!(
            run(Some(500)).describe(),
            "the rollback url answered HTTP 500 after 12 ms: nope"
        );
    }
}
