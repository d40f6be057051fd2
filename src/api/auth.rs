//! Bearer-token authentication and scopes (`[auth]` in the config).
//!
//! Without configured tokens the API is open (the daemon then listens on
//! loopback only). With tokens, every route except the open ones
//! (`is_open`) needs `Authorization: Bearer TOKEN`: GET and HEAD need the
//! `read` scope, every other method `write`. A missing or unknown token is a
//! 401 with `WWW-Authenticate: Bearer`; a known token without the scope, 403.
//!
//! Tokens are read from the settings in force for every request, so a config
//! reload takes effect at once, and compared in constant time against every
//! configured token (no early exit on a match).

use super::error::ApiError;
use super::ApiState;
use crate::config::{ApiToken, Scope};
use crate::intake::{self, Auth};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::{Choice, ConstantTimeEq};

/// Routes that never need a token: probes and the scrape endpoint.
const OPEN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Middleware: lets a request through or answers 401/403.
pub(crate) async fn require_token(
    State(ApiState { ctx, .. }): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    if is_open(request.uri().path()) {
        return next.run(request).await;
    }
    let settings = ctx.settings();
    if settings.tokens.is_empty() {
        return next.run(request).await;
    }
    let scope = required_scope(request.method());
    match check(&settings.tokens, request.headers(), scope) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// True for the paths that stay open with `[auth]`, and for the routes of
/// intake formats that authenticate their requests themselves
/// ([`Auth::Own`], the deploy tools' signed webhooks). Everything else,
/// including paths that match no route, needs a token: a route added later
/// is protected by default.
pub(crate) fn is_open(path: &str) -> bool {
    OPEN_PATHS.contains(&path) || intake::by_route(path).is_some_and(|f| f.auth() == Auth::Own)
}

/// `read` for GET and HEAD, `write` for everything else.
pub(crate) fn required_scope(method: &Method) -> Scope {
    if method == Method::GET || method == Method::HEAD {
        Scope::Read
    } else {
        Scope::Write
    }
}

/// Checks the request's bearer token against the configured ones.
pub(crate) fn check(
    tokens: &[ApiToken],
    headers: &HeaderMap,
    scope: Scope,
) -> Result<(), ApiError> {
    let presented = bearer_token(headers).ok_or_else(|| {
        ApiError::Unauthorized("missing bearer token: send `Authorization: Bearer TOKEN`".into())
    })?;
    let mut known = Choice::from(0);
    let mut allowed = Choice::from(0);
    // Every token is compared, whatever matched before: the time taken does
    // not tell which token (or how much of one) matched.
    for token in tokens {
        let matches = token.token.expose().as_bytes().ct_eq(presented.as_bytes());
        known |= matches;
        allowed |= matches & Choice::from(u8::from(token.scopes.contains(&scope)));
    }
    if !bool::from(known) {
        return Err(ApiError::Unauthorized("invalid bearer token".into()));
    }
    if !bool::from(allowed) {
        return Err(ApiError::Forbidden(format!(
            "this token lacks the `{}` scope",
            scope_name(scope)
        )));
    }
    Ok(())
}

/// The token of an `Authorization: Bearer TOKEN` header (scheme
/// case-insensitive, per RFC 7235); `None` if absent or of another scheme.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Read => "read",
        Scope::Write => "write",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use axum::http::HeaderValue;

    fn tokens() -> Vec<ApiToken> {
        vec![
            ApiToken {
                token: Secret::new("reader-token-1234"),
                scopes: vec![Scope::Read],
            },
            ApiToken {
                token: Secret::new("writer-token-5678"),
                scopes: vec![Scope::Read, Scope::Write],
            },
        ]
    }

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn scopes_and_tokens() {
        let t = tokens();
        assert_eq!(
            check(&t, &with("Bearer reader-token-1234"), Scope::Read),
            Ok(())
        );
        assert!(matches!(
            check(&t, &with("Bearer reader-token-1234"), Scope::Write),
            Err(ApiError::Forbidden(_))
        ));
        assert_eq!(
            check(&t, &with("bearer writer-token-5678"), Scope::Write),
            Ok(())
        );
        for bad in [
            "Bearer writer-token-567",
            "Bearer writer-token-56789",
            "Bearer ",
            "Basic d3JpdGVyLXRva2VuLTU2Nzg=",
            "writer-token-5678",
        ] {
            assert!(
                matches!(
                    check(&t, &with(bad), Scope::Read),
                    Err(ApiError::Unauthorized(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            check(&t, &HeaderMap::new(), Scope::Read),
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn open_paths() {
        assert!(is_open("/healthz"));
        assert!(is_open("/metrics"));
        assert!(
            !is_open("/v1/webhooks/github"),
            "no webhook route exists yet"
        );
        assert!(!is_open("/v1/releases"));
        assert!(!is_open("/healthz/../v1/releases"));
        assert!(!is_open("/nope"));
        assert!(!is_open("/v1/webhooks/../releases"));
        assert_eq!(required_scope(&Method::HEAD), Scope::Read);
        assert_eq!(required_scope(&Method::DELETE), Scope::Write);
    }
}
