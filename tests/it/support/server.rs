//! Local HTTP servers on loopback: serving an axum app on a fresh port, a
//! port nobody listens on, a handler that never answers.

use std::net::SocketAddr;

/// Serves `app` on a fresh loopback port until the test's runtime ends.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    addr
}

/// A loopback port that was just free (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind loopback")
        .port()
}

/// A handler that never answers.
pub async fn never_answer() -> &'static str {
    std::future::pending::<()>().await;
    ""
}
