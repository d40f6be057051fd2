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
//!   way the daemon loads its file (tests never build `Settings` by hand);
//!   [`notifier`], one notifier of such a config, built as the daemon does;
//!   [`design_fixture`], the documented example configuration in a temp dir.
//! - [`message`]: [`message()`], the message the notifier tests send.
//! - [`smtp`]: [`Smtp`], a real SMTP server (aiosmtpd) with STARTTLS, TLS
//!   and AUTH, and the certificate it serves.
//! - [`alertmanager`]: [`Alertmanager`], Debian's binary on a free port.
//! - [`browser`]: [`Browser`], headless Debian `chromium` (DOM, screenshot,
//!   PDF); [`artifacts`], where a test keeps what it shows a person.
//! - [`scripts`]: [`script`], an executable `#!/bin/sh` script (rollback
//!   hooks).
//! - [`loki`]: [`Loki`], a stand-in for Loki's query API (no real Loki
//!   installs here), checking the documented parameters and shapes.
//! - [`postgres`]: a real PostgreSQL per test process (Debian's binaries,
//!   `initdb` in a temp dir, run as `nobody` when root), a database per
//!   test; and a server of a test's own (TLS, `pg_hba.conf`) that can be
//!   stopped and started again.
//! - [`credentials`]: a CA with server and client certificates (openssl)
//!   and bcrypt hashes (htpasswd), made in the test.

pub mod alertmanager;
pub mod browser;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod loki;
pub mod message;
pub mod poll;
pub mod postgres;
pub mod prometheus;
pub mod receiver;
pub mod scripts;
pub mod server;
pub mod smtp;
pub mod target;
pub mod tls;

pub use alertmanager::Alertmanager;
pub use browser::{artifacts, Browser};
pub use config::{design_fixture, notifier, range_source, settings, settings_with_env};
pub use daemon::{
    bin, free_listen, https_client, https_client_as, metric_value, minimal_config,
    minimal_config_text, one_service_config, stdout_and_stderr, Daemon,
};
pub use loki::Loki;
pub use message::message;
pub use poll::{now_ms, wait_for};
pub use prometheus::Prometheus;
pub use receiver::{Receiver, Reply};
pub use scripts::script;
pub use server::{free_port, never_answer, serve};
pub use smtp::Smtp;
pub use target::Target;
pub use tls::TlsServer;
