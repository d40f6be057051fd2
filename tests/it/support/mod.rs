//! What the integration tests share, each piece defined once, in files by
//! what they stand up:
//!
//! - [`poll`]: [`wait_for`], polling with a deadline (tests never sleep for
//!   results); [`now_ms`], the wall clock.
//! - [`server`]: [`serve`] an axum app on loopback port 0, a [`free_port`]
//!   nobody listens on, a handler that [`never_answer`]s.
//! - [`receiver`]: [`Receiver`], a stand-in for Slack incoming webhooks and
//!   generic webhooks that checks every request against the documented
//!   shape and answers as told ([`Reply`]).
//! - [`target`]: [`Target`], a service with `/metrics` fed by simulated
//!   traffic and a switchable error ratio.
//! - [`tls`]: [`TlsServer`], an HTTPS server (HTTP/2 and HTTP/1.1) with a
//!   CA and a certificate generated in the test, expiring when asked.
//! - [`prometheus`]: [`Prometheus`], Debian's binary on a free port.
//! - [`daemon`]: [`Daemon`], the real `release-guardian run` as a child
//!   process; the binary itself ([`bin`]); minimal config files for it.
//! - [`config`]: [`settings`], config TOML text loaded into `Settings` the
//!   way the daemon loads its file (tests never build `Settings` by hand).
//! - [`scripts`]: [`script`], an executable `#!/bin/sh` script (rollback
//!   hooks).

pub mod config;
pub mod daemon;
pub mod poll;
pub mod prometheus;
pub mod receiver;
pub mod scripts;
pub mod server;
pub mod target;
pub mod tls;

pub use config::{settings, settings_with_env};
pub use daemon::{
    bin, free_listen, minimal_config, minimal_config_text, stdout_and_stderr, Daemon,
};
pub use poll::{now_ms, wait_for};
pub use prometheus::Prometheus;
pub use receiver::{Receiver, Reply};
pub use scripts::script;
pub use server::{free_port, never_answer, serve};
pub use target::Target;
pub use tls::TlsServer;
