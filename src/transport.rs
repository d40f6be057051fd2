//! What every outbound HTTP caller here (prober, sources, notifiers) shares:
//! the pooled client it is built from, the compact wording of a failed
//! exchange ("timed out after 2s", "connection refused" — never the URL,
//! which may be a secret), and the retry backoff.

use std::error::Error as _;
use std::time::Duration;

/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay (also the cap on a receiver's `Retry-After`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A pooled client with the guardian's user agent and `redirect` policy.
pub fn client(redirect: reqwest::redirect::Policy) -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("release-guardian/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(30))
        .redirect(redirect)
        .build()
        .expect("a TLS backend is compiled in")
}

/// Delay before attempt `attempts + 1`.
pub fn backoff(attempts: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempts.saturating_sub(1))
        .unwrap_or(u32::MAX);
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// Describes a failed HTTP exchange in a few words, never with its URL:
/// "timed out after 2s", "connection refused", "too many redirects", else
/// the innermost cause ("dns error: ...", "connection closed before message completed").
pub fn describe_transport_error(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        return format!("timed out after {}", humantime::format_duration(timeout));
    }
    if err.is_redirect() {
        return "too many redirects".into();
    }
    if err.is_builder() {
        return "invalid request (check the URL)".into();
    }
    let mut innermost: Option<String> = None;
    let mut cause = err.source();
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::ConnectionRefused => return "connection refused".into(),
                K::ConnectionReset => return "connection reset by peer".into(),
                K::TimedOut => {
                    return format!("timed out after {}", humantime::format_duration(timeout))
                }
                _ => {}
            }
        }
        innermost = Some(e.to_string());
        cause = e.source();
    }
    let outer = error_kind(err);
    match innermost {
        Some(inner) => format!("{outer}: {inner}"),
        None => outer.to_string(),
    }
}

/// What stage of the exchange failed, in words (reqwest's own `Display`
/// would name the URL, which may be a secret).
fn error_kind(err: &reqwest::Error) -> &'static str {
    if err.is_connect() {
        "cannot connect"
    } else if err.is_body() {
        "error reading the body"
    } else if err.is_decode() {
        "error decoding the body"
    } else if err.is_request() {
        "error sending the request"
    } else {
        "HTTP error"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
