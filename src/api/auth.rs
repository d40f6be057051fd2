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
//! configured token (no early exit on a match). What is compared are the
//! SHA-256 digests of the presented and the configured token, so neither
//! the content nor the length of a configured token shows in the timing.
//!
//! Failed authentications are rate limited per client IP address
//! ([`AuthFailures`]): after [`FAILURE_BURST`] failures the address gets 429
//! with `Retry-After` — without its token being looked at — until its budget
//! refills ([`FAILURE_BURST`] per minute).

use super::error::ApiError;
use super::ApiState;
use crate::config::{ApiToken, Scope};
use crate::intake::{self, Auth};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// Failed authentications a client IP may make at once; its budget refills
/// at this many per minute.
pub const FAILURE_BURST: u32 = 10;

/// Client addresses tracked at once. When the table is full, addresses that
/// have their whole budget back are forgotten; if that frees nothing, new
/// addresses share one budget.
pub const MAX_TRACKED_CLIENTS: usize = 4096;

/// Routes that never need a token: probes and the scrape endpoint.
const OPEN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Middleware: lets a request through or answers 401/403.
pub(crate) async fn require_token(
    State(ApiState {
        ctx, auth_failures, ..
    }): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let mut request = request;
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let path = request.uri().path();
    if let Some(format) = intake::by_route(path).filter(|f| f.auth() == Auth::Own) {
        // The format checks the request's own signature.
        let actor = Actor::new(format!("webhook:{}", format.name()), client);
        request.extensions_mut().insert(actor);
        return next.run(request).await;
    }
    if is_open(path) {
        return next.run(request).await;
    }
    let settings = ctx.settings();
    if settings.tokens.is_empty() {
        request
            .extensions_mut()
            .insert(Actor::new("anonymous".into(), client));
        return next.run(request).await;
    }
    let now = Instant::now();
    if let Err(wait) = auth_failures.admit(client, now) {
        return ApiError::TooManyRequests {
            message: "too many failed authentications from this address; try again later".into(),
            retry_after: wait.as_secs_f64().ceil() as u64,
        }
        .into_response();
    }
    let scope = required_scope(request.method());
    // A browser's `?token=` or session cookie (the status page, reads
    // only), else the bearer token, whose name the audit log records.
    let outcome = match super::ui::authenticate(&settings.tokens, &request) {
        Some(browser) => browser.map(|login| (login, None)),
        None => check(&settings.tokens, request.headers(), scope)
            .map(|name| (None, Some(format!("token:{name}")))),
    };
    match outcome {
        Ok((Some(login), _)) => login,
        Ok((None, name)) => {
            if let Some(name) = name {
                request.extensions_mut().insert(Actor::new(name, client));
            }
            next.run(request).await
        }
        Err(e) => {
            if matches!(e, ApiError::Unauthorized(_)) {
                auth_failures.record_failure(client, now);
            }
            e.into_response()
        }
    }
}

/// Who made a request, as the audit log records it: `token:NAME`,
/// `webhook:TOOL` or `anonymous`, and the client's address. Set by
/// the token middleware on every route that can write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub client: Option<IpAddr>,
}

impl Actor {
    fn new(name: String, client: Option<IpAddr>) -> Self {
        Self { name, client }
    }
}

/// Per-client budgets of failed authentications (a token bucket per IP
/// address; IPv6 addresses by their /64, what one host usually has).
#[derive(Debug, Default)]
pub struct AuthFailures {
    buckets: Mutex<HashMap<Option<IpAddr>, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Failures still allowed (fractional: it refills continuously).
    budget: f64,
    at: Instant,
}

impl Bucket {
    fn refilled(self, now: Instant) -> f64 {
        let per_sec = f64::from(FAILURE_BURST) / 60.0;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.budget + elapsed * per_sec).min(f64::from(FAILURE_BURST))
    }
}

impl AuthFailures {
    /// Ok if `client` may try to authenticate now, else how long to wait.
    pub fn admit(&self, client: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let key = Self::slot(&mut buckets, client, now);
        match buckets.get(&key).map(|b| b.refilled(now)) {
            Some(left) if left < 1.0 => {
                let per_sec = f64::from(FAILURE_BURST) / 60.0;
                Err(Duration::from_secs_f64((1.0 - left) / per_sec))
            }
            _ => Ok(()),
        }
    }

    /// Spends one failure of `client`'s budget.
    pub fn record_failure(&self, client: Option<IpAddr>, now: Instant) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let key = Self::slot(&mut buckets, client, now);
        let bucket = buckets.entry(key).or_insert(Bucket {
            budget: f64::from(FAILURE_BURST),
            at: now,
        });
        *bucket = Bucket {
            budget: (bucket.refilled(now) - 1.0).max(0.0),
            at: now,
        };
    }

    /// The table key of `client`: its address (IPv6 by /64), or the shared
    /// `None` budget for an unknown address or one there is no room for
    /// (after forgetting the addresses whose budget is whole again).
    fn slot(
        buckets: &mut HashMap<Option<IpAddr>, Bucket>,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Option<IpAddr> {
        let key = client.map(network_of);
        if buckets.contains_key(&key) || buckets.len() < MAX_TRACKED_CLIENTS {
            return key;
        }
        let whole = f64::from(FAILURE_BURST);
        buckets.retain(|_, b| b.refilled(now) < whole);
        if buckets.len() < MAX_TRACKED_CLIENTS {
            key
        } else {
            None
        }
    }

    /// Addresses tracked now (for tests).
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The address a client is counted by: an IPv4 address itself (also when
/// IPv4-mapped), an IPv6 address by its /64 (what one host usually has).
pub(crate) fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::from(octets)
            }
        },
        v4 => v4,
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

/// Checks the request's bearer token against the configured ones; the name
/// of the token that matched.
pub(crate) fn check<'t>(
    tokens: &'t [ApiToken],
    headers: &HeaderMap,
    scope: Scope,
) -> Result<&'t str, ApiError> {
    let presented = bearer_token(headers).ok_or_else(|| {
        ApiError::Unauthorized("missing bearer token: send `Authorization: Bearer TOKEN`".into())
    })?;
    let mut known = Choice::from(0);
    let mut allowed = Choice::from(0);
    // Every token is compared, whatever matched before, and what is compared
    // are fixed-size digests: the time taken tells neither which token
    // matched, nor how much of one, nor how long the configured ones are.
    let presented = sha256(presented.as_bytes());
    let mut which = 0u32;
    for (i, token) in tokens.iter().enumerate() {
        let matches = sha256(token.token.expose().as_bytes()).ct_eq(&presented);
        known |= matches;
        allowed |= matches & Choice::from(u8::from(token.scopes.contains(&scope)));
        which = u32::conditional_select(&which, &(i as u32), matches);
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
    Ok(&tokens[which as usize].name)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
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
                name: "reader".into(),
                token: Secret::new("reader-token-1234"),
                scopes: vec![Scope::Read],
            },
            ApiToken {
                name: "writer".into(),
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
            Ok("reader")
        );
        assert!(matches!(
            check(&t, &with("Bearer reader-token-1234"), Scope::Write),
            Err(ApiError::Forbidden(_))
        ));
        assert_eq!(
            check(&t, &with("bearer writer-token-5678"), Scope::Write),
            Ok("writer")
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
    fn failures_are_limited_per_address_and_refill() {
        let limits = AuthFailures::default();
        let t0 = Instant::now();
        let a: Option<IpAddr> = Some("192.0.2.1".parse().unwrap());
        let b: Option<IpAddr> = Some("192.0.2.2".parse().unwrap());
        for _ in 0..FAILURE_BURST {
            assert_eq!(limits.admit(a, t0), Ok(()));
            limits.record_failure(a, t0);
        }
        let wait = limits.admit(a, t0).unwrap_err();
        assert!(
            wait > Duration::from_secs(5) && wait <= Duration::from_secs(6),
            "{wait:?}"
        );
        assert_eq!(limits.admit(b, t0), Ok(()), "other addresses unaffected");
        assert_eq!(limits.admit(a, t0 + Duration::from_secs(6)), Ok(()));
        // IPv6 addresses count by /64.
        let v6 = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        for _ in 0..FAILURE_BURST {
            limits.record_failure(v6("2001:db8::1"), t0);
        }
        assert!(limits.admit(v6("2001:db8::2"), t0).is_err());
        assert_eq!(limits.admit(v6("2001:db8:0:1::1"), t0), Ok(()));
    }

    #[test]
    fn the_table_of_addresses_is_bounded() {
        let limits = AuthFailures::default();
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED_CLIENTS as u32 + 100) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            limits.record_failure(Some(ip), t0);
        }
        assert!(
            limits.tracked() <= MAX_TRACKED_CLIENTS + 1,
            "one shared overflow budget"
        );
        // A minute later every budget is whole again: room is made.
        let later = t0 + Duration::from_secs(61);
        limits.record_failure(Some("192.0.2.9".parse().unwrap()), later);
        assert!(limits.tracked() <= 2, "{}", limits.tracked());
    }

    #[test]
    fn open_paths() {
        assert!(is_open("/healthz"));
        assert!(is_open("/metrics"));
        for tool in ["github", "gitlab", "argocd", "flux"] {
            assert!(
                is_open(&format!("/v1/webhooks/{tool}")),
                "{tool}: the format checks its own signature"
            );
        }
        assert!(!is_open("/v1/webhooks/nope"));
        assert!(!is_open("/v1/releases"));
        assert!(!is_open("/healthz/../v1/releases"));
        assert!(!is_open("/nope"));
        assert!(!is_open("/v1/webhooks/../releases"));
        assert_eq!(required_scope(&Method::HEAD), Scope::Read);
        assert_eq!(required_scope(&Method::DELETE), Scope::Write);
    }
}
