//! What every outbound HTTP caller here (prober, sources, notifiers) shares:
//! the pooled client it is built from, the classification of a failed
//! exchange — the service's doing or the guardian's ([`classify`], [`Blame`])
//! — in compact words ("timed out after 2s", "connection refused",
//! "guardian-side: too many open files (EMFILE)" — never the URL, which may
//! be a secret), and the retry backoff.

use std::error::Error as _;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay (also the cap on a receiver's `Retry-After`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A pooled client with the guardian's user agent and `redirect` policy.
pub fn client(redirect: reqwest::redirect::Policy) -> reqwest::Client {
    client_builder(redirect)
        .build()
        .expect("a TLS backend is compiled in")
}

/// The builder of [`client`], for a client with settings of its own (a
/// source's CA or client certificate, the prober's TLS and HTTP-version
/// options).
pub fn client_builder(redirect: reqwest::redirect::Policy) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("release-guardian/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(30))
        .redirect(redirect)
        .dns_resolver(Arc::new(TrackedResolver))
}

/// Delay before attempt `attempts + 1`.
pub fn backoff(attempts: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempts.saturating_sub(1))
        .unwrap_or(u32::MAX);
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// Who a failed exchange is blamed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// What the service did: it refused or reset the connection, closed it
    /// mid-answer, did not answer in time, answered something that is not
    /// HTTP, or redirected too often. A probe counts this as a failed sample.
    Service,
    /// The guardian's own side failed (descriptors, memory, buffers, local
    /// ports, its resolver, its request building), or it cannot tell who
    /// failed. Never a failed sample: the check is inconclusive.
    Guardian,
}

/// A failed exchange, classified: who is to blame, and why in a few words
/// (never the URL, which may be a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub blame: Blame,
    pub reason: String,
}

impl Failure {
    fn service(reason: impl Into<String>) -> Self {
        Self {
            blame: Blame::Service,
            reason: reason.into(),
        }
    }

    fn guardian(reason: impl Into<String>) -> Self {
        Self {
            blame: Blame::Guardian,
            reason: reason.into(),
        }
    }
}

/// Linux `errno` values of failures on the guardian's own side.
pub mod errno {
    /// Too many open files in the process.
    pub const EMFILE: i32 = 24;
    /// Too many open files in the system.
    pub const ENFILE: i32 = 23;
    /// No buffer space available.
    pub const ENOBUFS: i32 = 105;
    /// Out of memory.
    pub const ENOMEM: i32 = 12;
    /// Cannot assign the requested address (ephemeral ports exhausted).
    pub const EADDRNOTAVAIL: i32 = 99;
}

/// The guardian-side cause of an I/O error, if it is one: resource
/// exhaustion in the guardian's process or host, or a local network or
/// permission problem. `None` for anything else.
pub fn local_cause(io: &std::io::Error) -> Option<&'static str> {
    use std::io::ErrorKind as K;
    match io.raw_os_error() {
        Some(errno::EMFILE) => return Some("too many open files (EMFILE)"),
        Some(errno::ENFILE) => return Some("too many open files in the system (ENFILE)"),
        Some(errno::ENOBUFS) => return Some("no buffer space available (ENOBUFS)"),
        Some(errno::ENOMEM) => return Some("out of memory (ENOMEM)"),
        Some(errno::EADDRNOTAVAIL) => {
            return Some("no local address or port available (EADDRNOTAVAIL)")
        }
        _ => {}
    }
    Some(match io.kind() {
        K::OutOfMemory => "out of memory",
        K::AddrNotAvailable => "no local address or port available",
        K::AddrInUse => "local address in use",
        K::PermissionDenied => "connecting is not permitted (local policy)",
        K::NetworkDown => "the network is down",
        K::NetworkUnreachable => "the network is unreachable from the guardian",
        K::StorageFull => "no space left (ENOSPC)",
        K::WouldBlock => "a local resource is temporarily unavailable",
        _ => return None,
    })
}

/// What the service did, by an I/O error, if it tells: refused, reset,
/// closed, timed out.
fn service_cause(io: &std::io::Error, timeout: Duration) -> Option<String> {
    use std::io::ErrorKind as K;
    Some(match io.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset by peer".into(),
        K::BrokenPipe | K::UnexpectedEof => "connection closed by the service".into(),
        K::TimedOut => timed_out(timeout),
        _ => return None,
    })
}

/// hyper's words for an answer that broke off or was not HTTP: the service's doing.
fn service_protocol_error(message: &str) -> Option<&'static str> {
    if message == "connection closed before message completed" {
        Some("connection closed by the service before the answer was complete")
    } else if message == "received unexpected message from connection"
        || message.starts_with("invalid HTTP")
        || message == "message head is too large"
    {
        Some("the service answered something that is not valid HTTP")
    } else {
        None
    }
}

fn timed_out(timeout: Duration) -> String {
    format!("timed out after {}", humantime::format_duration(timeout))
}

/// Classifies a failed HTTP exchange: who is to blame ([`Blame`]) and why.
/// `resolving`: a host name resolution the exchange started was still
/// unfinished when it ended (see [`tracking_resolution`]).
///
/// The one place that decides it; the table is in `docs/rules.md`. In order:
///
/// 1. a request that could not be built (bad URL, TLS configuration) — guardian;
/// 2. anywhere in the error's source chain, an I/O error of the guardian's
///    own side ([`local_cause`]: EMFILE, ENFILE, ENOBUFS, ENOMEM,
///    EADDRNOTAVAIL, ...) or a failed host name resolution — guardian;
/// 3. a timeout while the host name was still being resolved — guardian;
/// 4. a timeout, too many redirects, a refused, reset or closed connection,
///    an answer that is not HTTP — service;
/// 5. anything else (TLS handshake failures included: the guardian cannot
///    tell a bad certificate from a CA it lacks) — guardian, inconclusive.
pub fn classify(err: &reqwest::Error, timeout: Duration, resolving: bool) -> Failure {
    if err.is_builder() {
        return Failure::guardian("guardian-side: invalid request (check the URL)");
    }
    classify_chain(
        err.source(),
        Flags {
            timeout: err.is_timeout(),
            redirect: err.is_redirect(),
            resolving,
        },
        timeout,
        error_kind(err),
    )
}

/// What reqwest says of an error besides its source chain.
#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    timeout: bool,
    redirect: bool,
    resolving: bool,
}

/// [`classify`] over a source chain (`first`: the outermost source).
fn classify_chain(
    first: Option<&(dyn std::error::Error + 'static)>,
    flags: Flags,
    timeout: Duration,
    stage: &str,
) -> Failure {
    // Guardian-side causes win wherever they stand in the chain.
    let mut cause = first;
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(local) = local_cause(io) {
                return Failure::guardian(format!("guardian-side: {local}"));
            }
        }
        // hyper-util's connector names a failed resolution "dns error".
        if e.to_string() == "dns error" {
            let detail = e.source().map(|s| format!(": {s}")).unwrap_or_default();
            return Failure::guardian(format!(
                "guardian-side: cannot resolve the host name{detail}"
            ));
        }
        cause = e.source();
    }
    if flags.timeout && flags.resolving {
        return Failure::guardian(format!(
            "guardian-side: the host name was still being resolved when the exchange timed out after {}",
            humantime::format_duration(timeout)
        ));
    }
    if flags.timeout {
        return Failure::service(timed_out(timeout));
    }
    if flags.redirect {
        return Failure::service("too many redirects");
    }
    let mut innermost: Option<String> = None;
    let mut cause = first;
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(reason) = service_cause(io, timeout) {
                return Failure::service(reason);
            }
        }
        let message = e.to_string();
        if let Some(reason) = service_protocol_error(&message) {
            return Failure::service(reason);
        }
        innermost = Some(message);
        cause = e.source();
    }
    // Not attributable: inconclusive, in the words of what failed.
    Failure::guardian(match innermost {
        Some(inner) => format!("{stage}: {inner}"),
        None => stage.to_string(),
    })
}

/// Describes a failed HTTP exchange in a few words, never with its URL:
/// the reason of its [`classify`]cation ("timed out after 2s", "connection
/// refused", "too many redirects", "guardian-side: too many open files
/// (EMFILE)", ...).
pub fn describe_transport_error(err: &reqwest::Error, timeout: Duration) -> String {
    classify(err, timeout, false).reason
}

tokio::task_local! {
    /// Host name resolutions started and not finished by the exchange of the
    /// current [`tracking_resolution`] scope.
    static RESOLVING: Arc<AtomicUsize>;
}

/// Runs `exchange` and tells whether a host name resolution it started (by
/// a client of [`client`]) was still unfinished when it ended: a timeout
/// then fell on the guardian's resolver, not on the service.
pub async fn tracking_resolution<F: Future>(exchange: F) -> (F::Output, bool) {
    let pending = Arc::new(AtomicUsize::new(0));
    let out = RESOLVING.scope(pending.clone(), exchange).await;
    (out, pending.load(Ordering::SeqCst) > 0)
}

/// Counts `resolution` as pending in the current [`tracking_resolution`]
/// scope (if any) from now until it completes; dropped unfinished, it
/// stays pending.
fn tracked<F: Future>(resolution: F) -> impl Future<Output = F::Output> {
    let pending = RESOLVING.try_with(Arc::clone).ok();
    if let Some(p) = &pending {
        p.fetch_add(1, Ordering::SeqCst);
    }
    async move {
        let out = resolution.await;
        if let Some(p) = pending {
            p.fetch_sub(1, Ordering::SeqCst);
        }
        out
    }
}

/// The system resolver (`getaddrinfo` on the blocking pool, as reqwest's
/// default), with each resolution [`tracked`].
struct TrackedResolver;

impl reqwest::dns::Resolve for TrackedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(tracked(async move {
            // The port is replaced by the URL's.
            let addrs: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        }))
    }
}

/// HMAC-SHA256 of `body` under `key`, as lowercase hex: the signature of
/// signed outbound requests (the webhook notifier's `X-Guardian-Signature`,
/// the HTTP rollback hook).
pub fn hmac_sha256_hex(key: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let tag = ring::hmac::sign(&key, body);
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
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
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }

    /// An error with a message and a source, like the wrappers in a
    /// reqwest error's chain (hyper-util's `ConnectError`, hyper's `Error`).
    #[derive(Debug)]
    struct Wrap(
        &'static str,
        Option<Box<dyn std::error::Error + Send + Sync>>,
    );

    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrap {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    /// reqwest's shape of a failed connect: client error → "tcp connect
    /// error" (or "tcp open error") → the I/O error.
    fn connect_chain(io: std::io::Error) -> Wrap {
        Wrap(
            "client error (Connect)",
            Some(Box::new(Wrap("tcp connect error", Some(Box::new(io))))),
        )
    }

    const T: Duration = Duration::from_secs(2);

    fn classify_io(io: std::io::Error, flags: Flags) -> Failure {
        let chain = connect_chain(io);
        classify_chain(Some(&chain), flags, T, "cannot connect")
    }

    #[test]
    fn exhausted_local_resources_are_the_guardians() {
        for (code, words) in [
            (errno::EMFILE, "too many open files (EMFILE)"),
            (errno::ENFILE, "too many open files in the system (ENFILE)"),
            (errno::ENOBUFS, "no buffer space available (ENOBUFS)"),
            (errno::ENOMEM, "out of memory (ENOMEM)"),
            (
                errno::EADDRNOTAVAIL,
                "no local address or port available (EADDRNOTAVAIL)",
            ),
        ] {
            let io = std::io::Error::from_raw_os_error(code);
            assert_eq!(local_cause(&io), Some(words), "errno {code}");
            let f = classify_io(io, Flags::default());
            assert_eq!(f.blame, Blame::Guardian, "errno {code}");
            assert_eq!(f.reason, format!("guardian-side: {words}"));
            // Even when the exchange also timed out.
            let io = std::io::Error::from_raw_os_error(code);
            let timed_out = Flags {
                timeout: true,
                ..Flags::default()
            };
            assert_eq!(classify_io(io, timed_out).blame, Blame::Guardian);
        }
    }

    #[test]
    fn local_network_and_policy_errors_are_the_guardians() {
        use std::io::ErrorKind as K;
        for kind in [
            K::OutOfMemory,
            K::AddrNotAvailable,
            K::AddrInUse,
            K::PermissionDenied,
            K::NetworkDown,
            K::NetworkUnreachable,
            K::StorageFull,
            K::WouldBlock,
        ] {
            let f = classify_io(std::io::Error::from(kind), Flags::default());
            assert_eq!(f.blame, Blame::Guardian, "{kind:?}");
            assert!(f.reason.starts_with("guardian-side: "), "{f:?}");
        }
    }

    #[test]
    fn what_the_service_did_is_the_services() {
        use std::io::ErrorKind as K;
        for (kind, words) in [
            (K::ConnectionRefused, "connection refused"),
            (K::ConnectionReset, "connection reset by peer"),
            (K::BrokenPipe, "connection closed by the service"),
            (K::UnexpectedEof, "connection closed by the service"),
            (K::TimedOut, "timed out after 2s"),
        ] {
            let f = classify_io(std::io::Error::from(kind), Flags::default());
            assert_eq!(f, Failure::service(words), "{kind:?}");
        }
        // ECONNREFUSED and ECONNRESET as the OS reports them.
        for code in [111, 104] {
            let f = classify_io(std::io::Error::from_raw_os_error(code), Flags::default());
            assert_eq!(f.blame, Blame::Service, "errno {code}");
        }
        let timeout = Flags {
            timeout: true,
            ..Flags::default()
        };
        assert_eq!(
            classify_chain(None, timeout, T, "HTTP error"),
            Failure::service("timed out after 2s")
        );
        let redirect = Flags {
            redirect: true,
            ..Flags::default()
        };
        assert_eq!(
            classify_chain(None, redirect, T, "HTTP error"),
            Failure::service("too many redirects")
        );
        for message in [
            "connection closed before message completed",
            "invalid HTTP status-code parsed",
            "message head is too large",
        ] {
            let chain = Wrap(
                "client error (SendRequest)",
                Some(Box::new(Wrap(message, None))),
            );
            let f = classify_chain(
                Some(&chain),
                Flags::default(),
                T,
                "error sending the request",
            );
            assert_eq!(f.blame, Blame::Service, "{message}");
        }
    }

    #[test]
    fn the_resolver_is_the_guardians() {
        let failed = Wrap(
            "client error (Connect)",
            Some(Box::new(Wrap(
                "dns error",
                Some(Box::new(std::io::Error::other(
                    "failed to lookup address information: Temporary failure in name resolution",
                ))),
            ))),
        );
        let f = classify_chain(Some(&failed), Flags::default(), T, "cannot connect");
        assert_eq!(f.blame, Blame::Guardian);
        assert_eq!(
            f.reason,
            "guardian-side: cannot resolve the host name: failed to lookup address information: Temporary failure in name resolution"
        );
        // A timeout while the name was still being resolved.
        let hung = Flags {
            timeout: true,
            resolving: true,
            ..Flags::default()
        };
        let f = classify_chain(None, hung, T, "HTTP error");
        assert_eq!(f.blame, Blame::Guardian);
        assert!(f.reason.contains("still being resolved"), "{f:?}");
    }

    #[test]
    fn what_cannot_be_attributed_is_not_the_services() {
        let tls = Wrap(
            "client error (Connect)",
            Some(Box::new(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "invalid peer certificate: UnknownIssuer",
            ))),
        );
        let f = classify_chain(Some(&tls), Flags::default(), T, "cannot connect");
        assert_eq!(f.blame, Blame::Guardian);
        assert_eq!(
            f.reason,
            "cannot connect: invalid peer certificate: UnknownIssuer"
        );
        let f = classify_io(
            std::io::Error::from(std::io::ErrorKind::HostUnreachable),
            Flags::default(),
        );
        assert_eq!(f.blame, Blame::Guardian);
    }

    #[tokio::test]
    async fn an_unfinished_resolution_is_seen_and_a_finished_one_is_not() {
        let ((), resolving) = tracking_resolution(async {
            let _ = tokio::time::timeout(
                Duration::from_millis(10),
                tracked(std::future::pending::<()>()),
            )
            .await;
        })
        .await;
        assert!(resolving, "a resolution dropped unfinished stays pending");
        let ((), resolving) = tracking_resolution(tracked(async {})).await;
        assert!(!resolving);
        // Outside a scope nothing is counted (and nothing panics).
        tracked(async {}).await;
    }

    /// A loopback listener answering each connection with `answer` (then
    /// closing it), or holding it open when `answer` is None.
    async fn local_server(answer: Option<&'static [u8]>) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                match answer {
                    Some(bytes) => {
                        let _ = conn.write_all(bytes).await;
                    }
                    None => held.push(conn),
                }
            }
        });
        addr
    }

    async fn real_failure(url: &str, timeout: Duration) -> Failure {
        let http = client(reqwest::redirect::Policy::none());
        let (res, resolving) = tracking_resolution(http.get(url).timeout(timeout).send()).await;
        classify(
            &res.expect_err("the exchange must fail"),
            timeout,
            resolving,
        )
    }

    #[tokio::test]
    async fn real_failures_are_classified() {
        // A closed port refuses.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let f = real_failure(&format!("http://127.0.0.1:{port}/"), T).await;
        assert_eq!(f, Failure::service("connection refused"));

        // A server that never answers times out.
        let silent = local_server(None).await;
        let f = real_failure(&format!("http://{silent}/"), Duration::from_millis(100)).await;
        assert_eq!(f, Failure::service("timed out after 100ms"));

        // A server that hangs up before answering.
        let hangs_up = local_server(Some(b"")).await;
        let f = real_failure(&format!("http://{hangs_up}/"), T).await;
        assert_eq!(f.blame, Blame::Service, "{f:?}");

        // A server that answers something that is not HTTP.
        let garbage = local_server(Some(b"HELLO WORLD\r\n\r\n")).await;
        let f = real_failure(&format!("http://{garbage}/"), T).await;
        assert_eq!(
            f,
            Failure::service("the service answered something that is not valid HTTP")
        );

        // A request that cannot be built is the guardian's.
        let f = real_failure("http://exa mple/", T).await;
        assert_eq!(f.blame, Blame::Guardian, "{f:?}");
    }

    /// A resolver that never answers, tracked like the real one.
    struct HungResolver;

    impl reqwest::dns::Resolve for HungResolver {
        fn resolve(&self, _: reqwest::dns::Name) -> reqwest::dns::Resolving {
            Box::pin(tracked(std::future::pending()))
        }
    }

    #[tokio::test]
    async fn a_timeout_while_resolving_is_the_guardians() {
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(HungResolver))
            .build()
            .unwrap();
        let timeout = Duration::from_millis(50);
        let (res, resolving) =
            tracking_resolution(http.get("http://service.example/").timeout(timeout).send()).await;
        assert!(resolving, "the resolver is reached inside the scope");
        let f = classify(&res.unwrap_err(), timeout, resolving);
        assert_eq!(f.blame, Blame::Guardian, "{f:?}");
        assert!(f.reason.contains("still being resolved"), "{f:?}");
    }

    #[tokio::test]
    async fn host_names_resolve_through_the_tracked_resolver() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                let _ = conn
                    .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await;
            }
        });
        let http = client(reqwest::redirect::Policy::none());
        let (res, resolving) = tracking_resolution(
            http.get(format!("http://localhost:{port}/"))
                .timeout(T)
                .send(),
        )
        .await;
        assert!(!resolving);
        assert_eq!(res.unwrap().status().as_u16(), 204);
    }
}
