//! Request bodies, read with a size limit: a body over [`MAX_BODY_BYTES`] is
//! a 413, refused before reading when `Content-Length` already says so.
//! Parsing them is the intake formats' business ([`crate::intake`]).

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};

/// Largest accepted request body: 1 MiB.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Reads the whole body (at most [`MAX_BODY_BYTES`]).
///
/// The limit itself is enforced by the `DefaultBodyLimit` the router sets to
/// [`MAX_BODY_BYTES`]; the `Bytes` extractor reports hitting it as a 413,
/// which is answered here as JSON.
pub(crate) async fn read(request: Request) -> Result<Bytes, ApiError> {
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
    Ok(bytes)
}

fn too_large() -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "request body is larger than {MAX_BODY_BYTES} bytes (1 MiB)"
    ))
}
