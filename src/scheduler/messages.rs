//! Turning decisions into messages and outbox rows, with stable dedup keys.

use crate::config::Settings;
use crate::model::{DeliveryStatus, Level, Message, Millis, NotificationRecord, Release, Severity};

/// A message about a check changing level. The dedup key is derived from the
/// release, check, level and the instant of the transition, so re-evaluating
/// the same interval after a crash yields the same key.
pub fn level_changed(
    release: &Release,
    check: &str,
    to: Level,
    value: f64,
    reason: &str,
    at: Millis,
) -> Message {
    Message {
        dedup_key: format!("{}/{}/{}/{}", release.id, check, to.as_str(), at),
        release_id: release.id.clone(),
        service: release.service.clone(),
        environment: release.environment.clone(),
        version: release.version.clone(),
        previous_version: release.previous_version.clone(),
        severity: to.severity(),
        event: if to == Level::Ok {
            "recovered".into()
        } else {
            "level_changed".into()
        },
        check: Some(check.to_string()),
        level: Some(to),
        value: value.is_finite().then_some(value),
        reason: reason.to_string(),
        at,
    }
}

/// A message about a check becoming inconclusive (source error or no data).
pub fn inconclusive(release: &Release, check: &str, reason: &str, at: Millis) -> Message {
    Message {
        dedup_key: format!("{}/{}/inconclusive/{}", release.id, check, at),
        event: "inconclusive".into(),
        check: Some(check.to_string()),
        severity: Severity::Warning,
        ..release_event(release, "inconclusive", Severity::Warning, reason, at, "")
    }
}

/// A message about the release as a whole (rollback, verified, ...);
/// `key` distinguishes events of one release (`rollback/started`).
pub fn release_event(
    release: &Release,
    event: &str,
    severity: Severity,
    reason: &str,
    at: Millis,
    key: &str,
) -> Message {
    Message {
        dedup_key: format!("{}/{}", release.id, key),
        release_id: release.id.clone(),
        service: release.service.clone(),
        environment: release.environment.clone(),
        version: release.version.clone(),
        previous_version: release.previous_version.clone(),
        severity,
        event: event.to_string(),
        check: None,
        level: None,
        value: None,
        reason: reason.to_string(),
        at,
    }
}

/// Outbox rows for every notifier of the release's service that takes this
/// severity. None once the release is acked.
pub fn records_for(
    settings: &Settings,
    release: &Release,
    msg: &Message,
    now: Millis,
) -> Vec<NotificationRecord> {
    if release.acked {
        return Vec::new();
    }
    let Some(service) = settings.service(&release.service, &release.environment) else {
        return Vec::new();
    };
    service
        .notify
        .iter()
        .filter(|name| {
            settings
                .notifiers
                .get(*name)
                .is_some_and(|n| msg.severity >= n.min_severity)
        })
        .map(|name| NotificationRecord {
            key: format!("{}/{}", msg.dedup_key, name),
            notifier: name.clone(),
            message: msg.clone(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_error: None,
            // Ordered by the event's instant, so pages go out in the order
            // things happened even when one tick found several.
            created_at: msg.at.min(now),
            sent_at: None,
            next_attempt_at: now,
        })
        .collect()
}
