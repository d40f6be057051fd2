//! Serving the API on a TCP listener without letting clients starve it.
//!
//! Each accepted connection is served by hyper's HTTP/1 implementation in
//! its own task, under three limits ([`ServerLimits`], `[server]` in the
//! config):
//!
//! - **A cap on open connections** (`max_connections`). A connection over
//!   the cap closes the connection that has been idle longest (no request
//!   in progress: a new connection that has not sent a whole request head,
//!   or one kept alive after a response); if every connection is serving a
//!   request, the new one is answered a best-effort 503 and closed at once.
//!   Either way the daemon never holds more than the cap, so a flood of
//!   connections cannot run it out of file descriptors, and a client that
//!   sends its request at once (curl, a probe, a deploy script) gets through
//!   a flood of idle or slow connections.
//! - **An idle timeout** (`idle_timeout`): a connection without a request in
//!   progress is closed after that long without the first byte of a request.
//! - **A header-read timeout** (`header_read_timeout`): once the first byte
//!   of a request has arrived, its whole head must arrive within that long
//!   (a client trickling header bytes is closed).
//!
//! Over TLS ([`serve_tls`]), the handshake is part of the first request's
//! head: it holds a place under the cap and must end within the
//! header-read timeout of its first byte, so slow handshakes cannot starve
//! the API either.
//!
//! A request in progress (its body included) is bounded by the router's
//! request timeout ([`super::REQUEST_TIMEOUT`]). The peer's address is
//! handed to the router as [`ConnectInfo`] (failed authentications are
//! rate limited per address).

use super::tls::ServerCert;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Largest request head (request line and headers) hyper buffers; a larger
/// one is refused (431).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// What a refused connection is sent before it is closed (best effort: it is
/// never waited for).
const OVER_CAP_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 48\r\nretry-after: 1\r\nconnection: close\r\n\r\n{\"error\":\"too many connections; try again later\"}";

/// What a plain HTTP request to the TLS listener is answered (best effort)
/// before the connection is closed.
const PLAIN_HTTP_RESPONSE: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 55\r\nconnection: close\r\n\r\n{\"error\":\"this port speaks HTTPS; use an https:// URL\"}";

/// The connection limits of [`serve_with`] (`[server]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl ServerLimits {
    pub fn from_config(server: &crate::config::ServerConfig) -> Self {
        Self {
            max_connections: server.max_connections.max(1),
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
        }
    }
}

impl Default for ServerLimits {
    /// The `[server]` defaults.
    fn default() -> Self {
        Self::from_config(&crate::config::ServerConfig::default())
    }
}

/// [`serve_with`] with the default limits.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, router, ServerLimits::default(), shutdown).await
}

/// Serves `router` on `listener` under `limits` until `shutdown` is
/// cancelled, then stops accepting connections, closes idle ones and lets
/// requests in flight finish (the caller bounds how long it waits for this
/// future).
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_tls(listener, router, limits, None, shutdown).await
}

/// [`serve_with`], over TLS with the certificate in force in `tls` (plain
/// HTTP when `None`).
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    tls: Option<Arc<ServerCert>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, max_connections = limits.max_connections, tls = tls.is_some(), "API listening");
    }
    let table = Arc::new(ConnTable::new(limits.max_connections));
    let tasks = TaskTracker::new();
    let mut turned_away = Throttled::default();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = async {
                table.wait_for_room().await;
                listener.accept().await
            } => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of descriptors (EMFILE/ENFILE) or memory: back off
                // rather than spin; the cap makes this rare.
                tracing::error!(error = %e, "cannot accept connections");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let conn = match ConnTable::admit(&table, Instant::now()) {
            Admission::Admitted(conn) => conn,
            Admission::AdmittedClosingIdle(conn) => {
                turned_away.note(&table, "closed the longest-idle connection");
                conn
            }
            Admission::Refused => {
                let _ = stream.try_write(OVER_CAP_RESPONSE);
                drop(stream);
                turned_away.note(&table, "refused a connection: every one is busy");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let watched = Watched {
            inner: stream,
            state: conn.state.clone(),
        };
        match &tls {
            None => tasks.spawn(serve_connection(
                watched,
                peer,
                router.clone(),
                conn,
                limits,
                shutdown.clone(),
            )),
            Some(cert) => tasks.spawn(serve_tls_connection(
                cert.acceptor(),
                watched,
                peer,
                router.clone(),
                conn,
                limits,
                shutdown.clone(),
            )),
        };
    }
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// Errors of one connection's accept, not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// One warning per 10 s at most about connections over the cap, with how
/// many there were since the last one.
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    count: u64,
}

impl Throttled {
    fn note(&mut self, table: &ConnTable, what: &'static str) {
        self.count += 1;
        let now = Instant::now();
        if self
            .last
            .is_none_or(|l| now.duration_since(l) >= Duration::from_secs(10))
        {
            tracing::warn!(
                max_connections = table.max,
                over_cap = self.count,
                "connection cap reached: {what}"
            );
            self.last = Some(now);
            self.count = 0;
        }
    }
}

/// Completes the TLS handshake of one connection, then serves it. The
/// handshake counts as the head of the first request: it holds a place
/// under the cap, counts as idle (the first closed for a newcomer over the
/// cap), and must end, with the request head after it, within
/// `header_read_timeout` of its first byte (`idle_timeout` before that).
async fn serve_tls_connection(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: Watched,
    peer: SocketAddr,
    router: Router,
    conn: ConnHandle,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    let state = conn.state.clone();
    // A TLS client's first byte opens a handshake record (22); anything
    // else is most likely plain HTTP sent to the TLS port: say so.
    let mut first = [0u8; 1];
    let plain = tokio::select! {
        peeked = stream.inner.peek(&mut first) => matches!(peeked, Ok(1)) && first[0] != 22,
        _ = conn.evict.cancelled() => return,
        _ = shutdown.cancelled() => return,
        _ = expired(&state, &limits) => return,
    };
    if plain {
        let _ = stream.inner.try_write(PLAIN_HTTP_RESPONSE);
        tracing::debug!(%peer, "plain HTTP on the TLS listener");
        return;
    }
    let tls = tokio::select! {
        handshake = acceptor.accept(stream) => match handshake {
            Ok(tls) => tls,
            Err(e) => {
                tracing::debug!(error = %e, %peer, "TLS handshake failed");
                return;
            }
        },
        _ = conn.evict.cancelled() => return,
        _ = shutdown.cancelled() => return,
        _ = expired(&state, &limits) => {
            tracing::debug!(%peer, "closing a connection whose TLS handshake is too slow");
            return;
        }
    };
    serve_connection(tls, peer, router, conn, limits, shutdown).await;
}

/// Resolves once the connection's deadline ([`ConnState::deadline`]) has
/// passed.
async fn expired(state: &ConnState, limits: &ServerLimits) {
    loop {
        let changed = state.changed.notified();
        let Some(deadline) = state.deadline(limits) else {
            changed.await;
            continue;
        };
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline.into()) => {
                if state.deadline(limits).is_some_and(|d| d <= Instant::now()) {
                    return;
                }
            }
        }
    }
}

/// Serves one connection until it ends, is closed for being idle or slow,
/// or is evicted by a newer one.
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    router: Router,
    conn: ConnHandle,
    limits: ServerLimits,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = conn.state.clone();
    let io = TokioIo::new(stream);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let busy = Busy::start(state.clone());
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await?;
            // The connection counts as busy until the response body is
            // written (or dropped).
            Ok::<_, std::convert::Infallible>(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _busy = &busy;
                    frame
                }))
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // A backstop: the finer deadlines below come first.
        .header_read_timeout(limits.idle_timeout + limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let http = builder.serve_connection(io, service);
    let mut http = std::pin::pin!(http);
    let state = conn.state.clone();
    let mut shutting_down = false;
    loop {
        let deadline = state.deadline(&limits);
        let expiry = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = http.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            _ = conn.evict.cancelled() => return,
            _ = shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                http.as_mut().graceful_shutdown();
            }
            _ = state.changed.notified() => {}
            _ = expiry => {
                if state.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(%peer, "closing an idle or slow connection");
                    return;
                }
            }
        }
    }
}

/// Every open connection, for the cap.
struct ConnTable {
    max: usize,
    open: Mutex<Open>,
    /// Signalled whenever a connection's task ends (its socket is closed).
    closed: Notify,
}

/// Sockets that may still be closing (evicted, their task not yet ended)
/// beyond the cap before the accept loop waits for them.
const CLOSING_SLACK: usize = 4;

#[derive(Default)]
struct Open {
    next_id: u64,
    conns: HashMap<u64, Arc<ConnState>>,
    /// Connections whose task has not ended: the table's plus the evicted
    /// ones still closing. Bounds the descriptors the API holds.
    sockets: usize,
}

enum Admission {
    Admitted(ConnHandle),
    /// Admitted after closing the longest-idle connection.
    AdmittedClosingIdle(ConnHandle),
    /// At the cap, every connection busy.
    Refused,
}

impl ConnTable {
    fn new(max: usize) -> Self {
        Self {
            max,
            open: Mutex::new(Open::default()),
            closed: Notify::new(),
        }
    }

    /// Waits while the sockets still open (evicted ones included) are more
    /// than the cap allows, so that a flood of new connections cannot
    /// outrun the closing of the ones it evicts.
    async fn wait_for_room(&self) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            let sockets = self.open.lock().unwrap_or_else(|e| e.into_inner()).sockets;
            if sockets < self.max + CLOSING_SLACK {
                return;
            }
            closed.await;
        }
    }

    fn admit(table: &Arc<Self>, now: Instant) -> Admission {
        let mut open = table.open.lock().unwrap_or_else(|e| e.into_inner());
        let mut evicted = false;
        if open.conns.len() >= table.max {
            let victim = open
                .conns
                .values()
                .filter_map(|c| c.idle_since().map(|since| (since, c.id)))
                .min();
            let Some((_, id)) = victim else {
                return Admission::Refused;
            };
            if let Some(c) = open.conns.remove(&id) {
                c.evict.cancel();
            }
            evicted = true;
        }
        open.next_id += 1;
        open.sockets += 1;
        let state = Arc::new(ConnState {
            id: open.next_id,
            activity: Mutex::new(Activity {
                busy: 0,
                idle_since: now,
                head_started: None,
            }),
            changed: Notify::new(),
            evict: CancellationToken::new(),
        });
        open.conns.insert(state.id, state.clone());
        let handle = ConnHandle {
            evict: state.evict.clone(),
            state,
            table: table.clone(),
        };
        if evicted {
            Admission::AdmittedClosingIdle(handle)
        } else {
            Admission::Admitted(handle)
        }
    }
}

/// A connection's place in the table, given up when its task ends.
struct ConnHandle {
    state: Arc<ConnState>,
    evict: CancellationToken,
    table: Arc<ConnTable>,
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        open.conns.remove(&self.state.id);
        open.sockets = open.sockets.saturating_sub(1);
        drop(open);
        self.table.closed.notify_waiters();
    }
}

struct ConnState {
    id: u64,
    activity: Mutex<Activity>,
    /// Signalled when the deadline may have moved earlier.
    changed: Notify,
    evict: CancellationToken,
}

struct Activity {
    /// Requests being served (0 or 1 with HTTP/1).
    busy: usize,
    /// Since when no request has been in progress.
    idle_since: Instant,
    /// When the first byte of the next request arrived, while idle.
    head_started: Option<Instant>,
}

impl ConnState {
    fn activity(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.activity.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the connection is to be closed, unless a request starts: `None`
    /// while one is in progress.
    fn deadline(&self, limits: &ServerLimits) -> Option<Instant> {
        let a = self.activity();
        if a.busy > 0 {
            return None;
        }
        Some(match a.head_started {
            Some(at) => at + limits.header_read_timeout,
            None => a.idle_since + limits.idle_timeout,
        })
    }

    /// `Some(since)` if no request is in progress.
    fn idle_since(&self) -> Option<Instant> {
        let a = self.activity();
        (a.busy == 0).then_some(a.idle_since)
    }
}

/// A request in progress on a connection, from its parsed head until its
/// response body is written or dropped.
struct Busy(Arc<ConnState>);

impl Busy {
    fn start(state: Arc<ConnState>) -> Self {
        {
            let mut a = state.activity();
            a.busy += 1;
            a.head_started = None;
        }
        Self(state)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        {
            let mut a = self.0.activity();
            a.busy = a.busy.saturating_sub(1);
            a.idle_since = Instant::now();
            a.head_started = None;
        }
        self.0.changed.notify_one();
    }
}

/// The connection's socket, noting when the first byte of a request head
/// arrives on an idle connection.
struct Watched {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let started = {
                let mut a = self.state.activity();
                if a.busy == 0 && a.head_started.is_none() {
                    a.head_started = Some(Instant::now());
                    true
                } else {
                    false
                }
            };
            if started {
                self.state.changed.notify_one();
            }
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServerLimits {
        ServerLimits {
            max_connections: 2,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }

    fn handle(a: Admission) -> ConnHandle {
        match a {
            Admission::Admitted(h) | Admission::AdmittedClosingIdle(h) => h,
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn over_the_cap_the_longest_idle_connection_goes_or_the_new_one() {
        let table = Arc::new(ConnTable::new(2));
        let t0 = Instant::now();
        let first = handle(ConnTable::admit(&table, t0));
        let second = handle(ConnTable::admit(&table, t0 + Duration::from_secs(1)));
        // Both idle: the older one is closed for the newcomer.
        let third = match ConnTable::admit(&table, t0 + Duration::from_secs(2)) {
            Admission::AdmittedClosingIdle(h) => h,
            _ => panic!("expected an eviction"),
        };
        assert!(first.evict.is_cancelled());
        assert!(!second.evict.is_cancelled());
        // Both remaining connections busy: the next one is refused.
        let _b2 = Busy::start(second.state.clone());
        let _b3 = Busy::start(third.state.clone());
        assert!(matches!(
            ConnTable::admit(&table, t0 + Duration::from_secs(3)),
            Admission::Refused
        ));
        drop(third);
        assert!(matches!(
            ConnTable::admit(&table, t0 + Duration::from_secs(4)),
            Admission::Admitted(_)
        ));
    }

    #[test]
    fn deadlines_follow_the_connection_state() {
        let table = Arc::new(ConnTable::new(2));
        let t0 = Instant::now();
        let c = handle(ConnTable::admit(&table, t0));
        let l = limits();
        assert_eq!(c.state.deadline(&l), Some(t0 + l.idle_timeout));
        c.state.activity().head_started = Some(t0 + Duration::from_secs(5));
        assert_eq!(
            c.state.deadline(&l),
            Some(t0 + Duration::from_secs(5) + l.header_read_timeout)
        );
        let busy = Busy::start(c.state.clone());
        assert_eq!(c.state.deadline(&l), None);
        drop(busy);
        let d = c.state.deadline(&l).expect("idle again");
        assert!(d >= t0 + l.idle_timeout, "idle from the response's end");
    }
}
