//! Test harness shared by the integration tests: real servers on loopback.
//!
//! - [`Prometheus`]: the Debian `prometheus` binary on a free port, scraping
//!   a [`Target`] every second (fails loudly when the binary is missing).
//! - [`Target`]: a real HTTP service with `/metrics` (request counters fed
//!   by simulated traffic), `/health/live`, and a fault switch.
//! - [`SlackReceiver`]: a local stand-in for Slack incoming webhooks that
//!   checks the documented shape of every message.
//! - [`Daemon`]: the real `release-guardian run` binary as a child process.
//! - [`wait_for`]: polls with a deadline (tests never sleep for results).

#![allow(dead_code, unused_imports)]

pub mod daemon;
pub mod prometheus;
pub mod slack;
pub mod target;

pub use daemon::Daemon;
pub use prometheus::Prometheus;
pub use slack::SlackReceiver;
pub use target::Target;

use std::future::Future;
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_release-guardian")
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes a minimal config (one service `checkout`, no checks, the store in
/// `dir`) listening on a free loopback port; returns (config path, listen).
pub fn minimal_config(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let config = dir.join("guardian.toml");
    std::fs::write(
        &config,
        format!("[server]\nlisten = \"{listen}\"\n[store]\npath = \"g.db\"\n[[services]]\nname = \"checkout\"\n"),
    )
    .unwrap();
    (config, listen)
}

/// Polls `f` every 100 ms until it yields `Some`, or panics with `what`
/// after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
