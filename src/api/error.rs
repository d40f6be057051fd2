//! [`ApiError`]: every way a request can fail, the status each one gets, and
//! its `{"error": "..."}` body.
//!
//! Internal errors are answered `500 {"error":"internal error"}`; their detail
//! rides along in a response extension (`InternalDetail`) that the request
//! log ([`super::trace`]) takes out and logs once, so it never reaches the
//! client and is never logged twice.

use crate::scheduler::ControlError;
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Longest part of a client-supplied value (such as a release id) echoed back
/// in an error message.
const MAX_ECHO_CHARS: usize = 64;

/// A failed request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed JSON, a missing or mistyped field, a bad query parameter.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no bearer token, or one that matches no configured token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a valid token without the scope the request needs.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such release, or no such route.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, the method does not.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 408: the request took longer than the server's timeout.
    #[error("{0}")]
    Timeout(String),
    /// 409: the release is not in a state that allows the operation.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than the limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 422: well-formed but refused (unknown service, invalid name).
    #[error("{0}")]
    Unprocessable(String),
    /// 429: too many failed authentications from this client; retry after
    /// this many seconds.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    /// 503: overloaded, or not ready.
    #[error("{0}")]
    Unavailable(String),
    /// 500: the detail is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

/// The detail of an internal error, carried to the request log in the
/// response's extensions (never serialized).
#[derive(Debug, Clone)]
pub(crate) struct InternalDetail(pub String);

impl ApiError {
    /// `release X not found`, with X shortened if a client sent something huge.
    pub fn release_not_found(id: &str) -> Self {
        Self::NotFound(format!("release {} not found", echo(id)))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // `Display` of `Internal` is the generic text; the detail stays here.
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        let mut response = (status, body).into_response();
        match self {
            Self::Unauthorized(_) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::Unavailable(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::TooManyRequests { retry_after, .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
            }
            Self::Internal(detail) => {
                response.extensions_mut().insert(InternalDetail(detail));
            }
            _ => {}
        }
        response
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotFound(id) => Self::release_not_found(&id),
            ControlError::UnknownService {
                service,
                environment,
            } => Self::Unprocessable(format!(
                "unknown service {:?} in environment {:?}",
                echo(&service),
                echo(&environment)
            )),
            ControlError::Invalid(msg) => Self::Unprocessable(msg),
            ControlError::Conflict(msg) => Self::Conflict(msg),
            ControlError::Internal(detail) => Self::Internal(detail),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// A client-supplied value, shortened for echoing in a message.
pub(crate) fn echo(value: &str) -> String {
    if value.chars().count() <= MAX_ECHO_CHARS {
        value.to_string()
    } else {
        let mut s: String = value.chars().take(MAX_ECHO_CHARS).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_never_send_their_detail() {
        let r = ApiError::Internal("disk I/O error at /var/lib/x".into()).into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            r.extensions().get::<InternalDetail>().map(|d| d.0.as_str()),
            Some("disk I/O error at /var/lib/x")
        );
        assert_eq!(
            ApiError::Internal("secret detail".into()).to_string(),
            "internal error"
        );
    }

    #[test]
    fn control_errors_map_to_statuses() {
        let s = |e: ControlError| ApiError::from(e).status();
        assert_eq!(s(ControlError::NotFound("x".into())), StatusCode::NOT_FOUND);
        assert_eq!(
            s(ControlError::UnknownService {
                service: "a".into(),
                environment: "b".into()
            }),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            s(ControlError::Invalid("x".into())),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(s(ControlError::Conflict("x".into())), StatusCode::CONFLICT);
        assert_eq!(
            s(ControlError::Internal("x".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            ApiError::from(ControlError::NotFound("abc".into())).to_string(),
            "release abc not found"
        );
    }

    #[test]
    fn long_ids_are_shortened_in_messages() {
        let id = "x".repeat(10_000);
        let msg = ApiError::release_not_found(&id).to_string();
        assert_eq!(msg, format!("release {}… not found", "x".repeat(64)));
        assert_eq!(echo("short"), "short");
        assert_eq!(echo(&"é".repeat(64)), "é".repeat(64));
        assert_eq!(echo(&"é".repeat(65)), format!("{}…", "é".repeat(64)));
    }
}
