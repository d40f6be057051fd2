//! A minimal HTTP endpoint for the benchmarks: answers `ok` (200) on every
//! path, HTTP/1.1 with keep-alive, on the port given as the first argument
//! (127.0.0.1). `benches/probe_memory.sh` points thousands of probing
//! watches at it: it must not be the bottleneck.
//!
//!     cargo run --release --example probe_target -- 18080

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: probe_target PORT");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(async move {
            let app = axum::Router::new().fallback(|| async { "ok" });
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind the target's port");
            axum::serve(listener, app).await.expect("serve");
        });
}
