//! The message the notifier tests send: check `error_rate` of release
//! `0190-release` (checkout, production, v2 after v1) at a level, value
//! 0.0712, judged against `above 0.05 for 5m`.

use release_guardian::model::{Level, Message};

/// A message of `event` at `level` (its severity follows the level), at
/// 2026-08-22T10:00:00Z.
pub fn message(event: &str, level: Level) -> Message {
    Message {
        dedup_key: format!("0190-release/error_rate/{level}/1787392800000"),
        release_id: "0190-release".into(),
        service: "checkout".into(),
        environment: "production".into(),
        version: "v2".into(),
        previous_version: Some("v1".into()),
        severity: level.severity(),
        event: event.into(),
        check: Some("error_rate".into()),
        level: Some(level),
        value: Some(0.0712),
        reason: format!("error_rate entered {level}: value 0.0712, rule above 0.05 for 5m"),
        at: 1_787_392_800_000,
    }
}
