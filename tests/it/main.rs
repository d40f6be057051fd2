//! The integration tests, in one test binary so that the crate and its
//! dependencies are linked once, not once per file (two cores make every
//! link count). Each module was one `tests/*.rs` file; nextest still runs
//! every test in its own process, in parallel.
//!
//! [`support`] holds everything the modules share: real servers on
//! loopback, the daemon as a child process, config text turned into
//! `Settings`, polling with a deadline.

mod support;

mod api;
mod api_hardening;
mod cli;
mod config_bounds;
mod config_load;
mod dashboard;
mod e2e;
mod guardian_side;
mod hook_supervisor;
mod lease_renewal;
mod logs;
mod notify;
mod outbox;
mod probe;
mod probe_conditions;
mod prometheus_real;
mod prometheus_source;
mod recovery;
mod reload;
mod resilience;
mod rollback_hook;
mod rollback_hook_env;
mod scrape_source;
mod shutdown;
mod store_contract;
mod systemd;
