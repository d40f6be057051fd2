//! `release-guardian notify-test NOTIFIER`: loads the configuration, builds
//! the notifier named `NOTIFIER` as the daemon would, sends it one
//! clearly labelled test message, and says whether it was delivered.
//!
//! The test message is about no real release: service `release-guardian`,
//! environment `notify-test`, event `test`, severity `info`, a reason that
//! says it is a test. It is sent whatever the notifier's `min_severity`,
//! once, without the outbox's retries: the answer is the channel's own. On
//! PagerDuty it opens an alert (severity `info`) to resolve there; on
//! Alertmanager it is an alert that resolves by itself.

use crate::actions::notify::{BuildContext, Links};
use crate::model::{Message, Severity};
use std::path::Path;
use std::process::ExitCode;

/// Runs the command; exit 0 when the message was delivered.
pub async fn run(config: &Path, name: &str) -> ExitCode {
    let settings = match crate::config::load(config) {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors.errors {
                eprintln!("{e}");
            }
            eprintln!(
                "release-guardian notify-test: {} has {} error(s)",
                config.display(),
                errors.errors.len()
            );
            return ExitCode::FAILURE;
        }
    };
    let Some(spec) = settings.notifiers.get(name) else {
        let names: Vec<&str> = settings.notifiers.keys().map(String::as_str).collect();
        eprintln!(
            "release-guardian notify-test: no notifier `{name}` in {}; configured: {}",
            config.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
        return ExitCode::FAILURE;
    };
    let cx = BuildContext {
        http: crate::transport::client(reqwest::redirect::Policy::none()),
        links: Links::new(settings.config.server.public_url.as_deref()),
    };
    let notifier = spec.config.build(&cx);
    let redactor = crate::config::Redactor::from_settings(&settings);
    match notifier
        .send(&test_message(crate::clock::Clock::now(
            &crate::clock::SystemClock,
        )))
        .await
    {
        Ok(()) => {
            println!(
                "delivered: the test message went through `{name}` ({})",
                spec.kind
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "release-guardian notify-test: `{name}` ({}) did not deliver the test message: {}",
                spec.kind,
                redactor.redact(&e.to_string())
            );
            ExitCode::FAILURE
        }
    }
}

/// The test message, at `now` (ms since the epoch).
pub fn test_message(now: crate::model::Millis) -> Message {
    let id = format!("notify-test-{now}");
    Message {
        dedup_key: format!("{id}/test"),
        release_id: id,
        service: "release-guardian".into(),
        environment: "notify-test".into(),
        version: "test".into(),
        previous_version: None,
        severity: Severity::Info,
        event: "test".into(),
        check: None,
        level: None,
        value: None,
        reason: "This is a test message from `release-guardian notify-test`: \
                 the channel works. No release is affected and nothing needs doing."
            .into(),
        at: now,
    }
}
