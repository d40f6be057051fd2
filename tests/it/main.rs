//! The integration tests, in one test binary so that the crate and its
//! dependencies are linked once, not once per file (two cores make every
//! link count). Each module was one `tests/*.rs` file; nextest still runs
//! every test in its own process, in parallel.
//!
//! [`support`] holds everything the modules share: real servers on
//! loopback, the daemon as a child process, config text turned into
//! `Settings`, polling with a deadline.

mod support;

mod alertmanager;
mod api;
mod api_hardening;
mod api_tls;
mod backtest;
mod channels;
mod cli;
mod config_bounds;
mod config_load;
mod dashboard;
mod e2e;
mod email;
mod fuzz_regressions;
mod guardian_side;
mod hook_supervisor;
mod intake_batch;
mod intake_rate;
mod judgment;
mod lease_renewal;
mod logs;
mod loki_source;
mod notify;
mod notify_behaviour;
mod outbox;
mod paging_e2e;
mod postgres_connection;
mod postgres_scale;
mod probe;
mod probe_conditions;
mod prometheus_real;
mod prometheus_secured;
mod prometheus_source;
mod recovery;
mod reload;
mod remote_client;
mod remote_config;
mod replicas;
mod replicas_chaos;
mod report_ui;
mod resilience;
mod rollback_hook;
mod rollback_hook_env;
mod rule_tests;
mod scrape_source;
mod shutdown;
mod signatures;
mod store_contract;
mod store_dump;
mod store_group_commit;
mod systemd;
mod watch_memory;
mod webhooks;
