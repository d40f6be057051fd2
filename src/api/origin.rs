//! Cross-site and DNS-rebinding requests (403).
//!
//! The rule: a write request (any method but GET and HEAD) whose `Origin`
//! header names another origin gets 403; without `[auth]`, so does any
//! request whose `Host` is not a loopback name or address (`localhost`,
//! `127.0.0.1` — any `127.x.y.z` —, `[::1]`, with any port) or an entry of
//! `[server] allowed_hosts`. This stops cross-site and DNS-rebinding
//! requests against a loopback API: a web page can make a browser send a
//! `text/plain` POST to `http://127.0.0.1:9797` (with its own `Origin`), or
//! point its own host name at 127.0.0.1 (then the `Host` is that name).
//! curl and deploy scripts send no `Origin` and a `Host` naming the address
//! they were given, and are unaffected.
//!
//! "Another origin" is an `Origin` whose host and port differ from the
//! request's `Host`; `Origin: null` (sandboxed frames, redirects, `file:`)
//! and an unparsable `Origin` count as another origin. A request without
//! `Host` (not a browser's: HTTP/1.1 browsers always send it) is judged by
//! the authority of its target if it has one, else let through.

use super::auth::required_scope;
use super::error::ApiError;
use super::ApiState;
use crate::config::Scope;
use crate::section::parse_host;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;

/// Middleware: 403 for cross-site writes and, without `[auth]`, for a
/// `Host` that is neither loopback nor allowed.
pub(crate) async fn check_origin_and_host(
    State(ApiState { ctx, .. }): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let settings = ctx.settings();
    let host = request_host(request.headers(), request.uri());
    if required_scope(request.method()) == Scope::Write {
        if let Err(e) = same_origin(request.headers(), host.as_deref()) {
            return e.into_response();
        }
    }
    if settings.tokens.is_empty() {
        if let Some(host) = &host {
            if !host_allowed(host, &settings.config.server.allowed_hosts) {
                return ApiError::Forbidden(format!(
                    "the Host `{}` is neither a loopback name or address nor in `[server] allowed_hosts`",
                    super::error::echo(host)
                ))
                .into_response();
            }
        }
    }
    next.run(request).await
}

/// The request's `Host` header, else the authority of an absolute-form target.
fn request_host(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    match headers.get(header::HOST) {
        // A Host that is not even visible ASCII names no host we know.
        Some(v) => Some(v.to_str().unwrap_or("\u{fffd}").to_string()),
        None => uri.authority().map(|a| a.as_str().to_string()),
    }
}

/// Ok unless an `Origin` header names another origin than `host`.
fn same_origin(headers: &HeaderMap, host: Option<&str>) -> Result<(), ApiError> {
    for origin in headers.get_all(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("\u{fffd}");
        let same = host.is_some_and(|h| origin_matches_host(origin, h));
        if !same {
            return Err(ApiError::Forbidden(format!(
                "cross-origin write refused: Origin `{}` is not this API's origin",
                super::error::echo(origin)
            )));
        }
    }
    Ok(())
}

/// True if `origin` (`scheme://host[:port]`) is the origin `host`
/// (`host[:port]`) names. A `Host` without a port matches the origin's
/// scheme's default port (a TLS-terminating proxy in front).
fn origin_matches_host(origin: &str, host: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false; // `null`, or not an origin at all
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let (Some((o_name, o_port)), Some((h_name, h_port))) = (parse_host(rest), parse_host(host))
    else {
        return false;
    };
    o_name == h_name && o_port.unwrap_or(default_port) == h_port.unwrap_or(default_port)
}

/// True for loopback names and addresses, and for `allowed` entries (`NAME`
/// matches any port, `NAME:PORT` that port only).
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let Some((name, port)) = parse_host(host) else {
        return false;
    };
    if is_loopback_name(&name) {
        return true;
    }
    allowed
        .iter()
        .filter_map(|a| parse_host(a))
        .any(|(a_name, a_port)| a_name == name && (a_port.is_none() || a_port == port))
}

fn is_loopback_name(name: &str) -> bool {
    if name == "localhost" {
        return true;
    }
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_with_optional_ports() {
        assert_eq!(parse_host("LocalHost"), Some(("localhost".into(), None)));
        assert_eq!(
            parse_host("127.0.0.1:9797"),
            Some(("127.0.0.1".into(), Some(9797)))
        );
        assert_eq!(parse_host("[::1]:80"), Some(("[::1]".into(), Some(80))));
        assert_eq!(parse_host("[::1]"), Some(("[::1]".into(), None)));
        for bad in [
            "", ":80", "a:b", "a:", "a/b", "user@a", "[::1", "[zz]:1", "a:99999", "a b",
        ] {
            assert_eq!(parse_host(bad), None, "{bad}");
        }
    }

    #[test]
    fn loopback_and_allowed_hosts() {
        let allowed = vec!["guardian.internal".to_string(), "ci.example:8080".into()];
        for ok in [
            "localhost",
            "localhost:9797",
            "127.0.0.1:9797",
            "127.0.0.2",
            "[::1]:9797",
            "guardian.internal:1",
            "GUARDIAN.internal",
            "ci.example:8080",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9797",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "ci.example",
            "ci.example:80",
            "10.0.0.1",
            "[::2]",
            "\u{fffd}",
        ] {
            assert!(!host_allowed(bad, &allowed), "{bad}");
        }
    }

    #[test]
    fn origins_match_their_host() {
        assert!(origin_matches_host(
            "http://127.0.0.1:9797",
            "127.0.0.1:9797"
        ));
        assert!(origin_matches_host(
            "https://Guardian.example",
            "guardian.example"
        ));
        assert!(origin_matches_host("http://a.example:80", "a.example"));
        assert!(!origin_matches_host(
            "http://evil.example",
            "127.0.0.1:9797"
        ));
        assert!(!origin_matches_host(
            "http://127.0.0.1:9798",
            "127.0.0.1:9797"
        ));
        assert!(!origin_matches_host("null", "127.0.0.1:9797"));
        assert!(!origin_matches_host("ftp://a", "a"));
        assert!(!origin_matches_host("http://a.example:8080", "a.example"));
    }
}
