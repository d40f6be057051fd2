//! Request bodies: read with a size limit, parsed as JSON whatever the
//! `Content-Type` (`curl -d` sends form-urlencoded by default), with errors
//! that say what is wrong and where.
//!
//! A body over [`MAX_BODY_BYTES`] is a 413, refused before reading when
//! `Content-Length` already says so. Malformed JSON, a missing or mistyped
//! field, an unknown field or trailing data is a 400 naming the field (when
//! there is one) and serde_json's line and column.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

/// Largest accepted request body: 1 MiB.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Reads the whole body (at most [`MAX_BODY_BYTES`]) and parses it as JSON.
///
/// The limit itself is enforced by the `DefaultBodyLimit` the router sets to
/// [`MAX_BODY_BYTES`]; the `Bytes` extractor reports hitting it as a 413,
/// which is answered here as JSON.
pub(crate) async fn json<T: DeserializeOwned>(request: Request) -> Result<T, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let bytes = Bytes::from_request(request, &())
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::BadRequest(format!(
                    "cannot read the request body: {}",
                    rejection.body_text()
                ))
            }
        })?;
    parse(&bytes)
}

/// Parses a JSON document into `T`, rejecting trailing data.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "the request body is empty; expected a JSON object".into(),
        ));
    }
    // A derived struct would also accept a JSON array of its fields in
    // order; a request body is an object, nothing else.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(not_an_object(bytes));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || inner.is_syntax() || inner.is_eof() {
            ApiError::BadRequest(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::BadRequest(format!("invalid JSON body: `{path}`: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// The error for a body that does not start with `{`: serde_json's syntax
/// error if it is not JSON at all, else what kind of value it is.
fn not_an_object(bytes: &[u8]) -> ApiError {
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return ApiError::BadRequest(format!("invalid JSON body: {e}"));
    }
    let found = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    };
    ApiError::BadRequest(format!(
        "invalid JSON body: expected a JSON object, found {found}"
    ))
}

fn too_large() -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "request body is larger than {MAX_BODY_BYTES} bytes (1 MiB)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewRelease;

    fn err(body: &str) -> String {
        match parse::<NewRelease>(body.as_bytes()) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn messages_say_what_and_where() {
        let m = err(r#"{"service": "checkout""#);
        assert!(m.contains("line 1 column"), "{m}");
        let m = err(r#"{"service": "checkout"}"#);
        assert!(m.contains("missing field `version`"), "{m}");
        let m = err(r#"{"service": 5, "version": "v1"}"#);
        assert!(
            m.contains("`service`") && m.contains("line 1 column"),
            "{m}"
        );
        let m = err(r#"{"service": "a", "version": "v1", "colour": "red"}"#);
        assert!(m.contains("unknown field `colour`"), "{m}");
        let m = err(r#"{"service": "a", "version": "v1"} x"#);
        assert!(m.contains("trailing characters"), "{m}");
        let m = err("  ");
        assert!(m.contains("empty"), "{m}");
        let m = err("service=a&version=b");
        assert!(m.contains("expected value at line 1 column 1"), "{m}");
        let m = err(r#"["a", "v1"]"#);
        assert!(m.contains("expected a JSON object, found an array"), "{m}");
        let m = err("42");
        assert!(m.contains("found a number"), "{m}");
        let m = err("[1,");
        assert!(m.contains("line 1 column"), "{m}");
    }

    #[test]
    fn a_good_body_parses() {
        let r: NewRelease = parse(
            br#" {"service":"a","version":"v2","previous_version":"v1","annotations":{"pr":1}} "#,
        )
        .unwrap();
        assert_eq!(r.service, "a");
        assert_eq!(r.previous_version.as_deref(), Some("v1"));
    }
}
