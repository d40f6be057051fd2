//! Turning decisions into messages and outbox rows, with stable dedup keys.

use super::incidents::IncidentLog;
use crate::config::Settings;
use crate::model::{
    CheckRecord, DeliveryStatus, Level, Message, Millis, NotificationRecord, Release, Severity,
};

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

/// Outbox rows for `msg`, and the `log` updated with them. Who gets it:
/// - a message that closes an incident (`recovered`, `resolved`): every
///   notifier that holds the incident open ([`IncidentLog::holders`]),
///   whatever its `min_severity`, and no other;
/// - anything else: every notifier of the service that takes its severity.
///
/// None once the release is acked.
pub fn records_for(
    settings: &Settings,
    release: &Release,
    msg: &Message,
    now: Millis,
    log: &mut IncidentLog,
) -> Vec<NotificationRecord> {
    if release.acked {
        return Vec::new();
    }
    let Some(service) = settings.service(&release.service, &release.environment) else {
        return Vec::new();
    };
    let takes = |name: &str| {
        settings
            .notifiers
            .get(name)
            .is_some_and(|n| msg.severity >= n.min_severity)
    };
    let names: Vec<String> = if msg.closes_incident() {
        log.holders(msg)
            .into_iter()
            .filter(|n| settings.notifiers.contains_key(n))
            .collect()
    } else {
        service
            .notify
            .iter()
            .filter(|n| takes(n))
            .cloned()
            .collect()
    };
    let rows: Vec<NotificationRecord> = names.iter().map(|name| record(name, msg, now)).collect();
    for r in &rows {
        log.note(&r.notifier, &r.message, r.status);
    }
    rows
}

/// The outbox row of `msg` for the notifier `name`.
pub(super) fn record(name: &str, msg: &Message, now: Millis) -> NotificationRecord {
    NotificationRecord {
        key: format!("{}/{}", msg.dedup_key, name),
        notifier: name.to_string(),
        message: msg.clone(),
        status: DeliveryStatus::Pending,
        attempts: 0,
        last_error: None,
        // Ordered by the event's instant, so pages go out in the order
        // things happened even when one tick found several.
        created_at: msg.at.min(now),
        sent_at: None,
        next_attempt_at: now,
    }
}

/// The event of the one message that sums a watch up when it ends.
pub const SUMMARY: &str = "summary";

/// How a watch ended, for its closing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Verified,
    RolledBack,
    /// The rollback failed or its outcome is unknown: incidents stay open
    /// (people must act), only the summary goes out.
    RollbackFailed,
    Aborted,
    Superseded,
}

impl Ending {
    fn status(self) -> &'static str {
        match self {
            Ending::Verified => "verified",
            Ending::RolledBack => "rolled_back",
            Ending::RollbackFailed => "rollback_failed",
            Ending::Aborted => "aborted",
            Ending::Superseded => "superseded",
        }
    }
}

/// The rows a watch's end adds: a `resolved` message for every incident
/// still open at a notifier (a check still above `ok`, a rollback page), to
/// the notifiers holding it — except after a failed rollback — then one
/// `summary` (the outcome and each check's last state; severity `warning`
/// if anything was paged during the watch, else `info`, routed by
/// `min_severity`). Dedup keys are
/// fixed per release (`RELEASE/CHECK/resolved`, `RELEASE/summary`), so an
/// end recorded twice sends nothing twice.
pub fn ending_records(
    settings: &Settings,
    release: &Release,
    checks: &[CheckRecord],
    ending: Ending,
    now: Millis,
    log: &mut IncidentLog,
) -> Vec<NotificationRecord> {
    let mut out = Vec::new();
    if ending != Ending::RollbackFailed {
        let mut seen = std::collections::BTreeSet::new();
        let open: Vec<(String, crate::scheduler::incidents::Open)> = log
            .open()
            .filter(|(key, _, _)| seen.insert((*key).clone()))
            .map(|(key, _, o)| (key.clone(), o.clone()))
            .collect();
        for (_, o) in open {
            let current = o
                .check
                .as_ref()
                .and_then(|c| checks.iter().find(|r| &r.name == c));
            let what = match &o.check {
                Some(c) => format!(
                    "{c} is resolved: the watch ended ({}) with the check at {}",
                    ending.status(),
                    current.map_or("an unknown state", |r| r.state.as_str())
                ),
                None => format!("resolved: the watch ended ({})", ending.status()),
            };
            let mut msg = release_event(
                release,
                "resolved",
                Severity::Info,
                &what,
                now,
                &match &o.check {
                    Some(c) => format!("{c}/resolved"),
                    None => "resolved".to_string(),
                },
            );
            msg.check = o.check.clone();
            msg.level = current.map(|r| r.level);
            msg.value = current.and_then(|r| r.value).filter(|v| v.is_finite());
            out.extend(records_for(settings, release, &msg, now, log));
        }
    }
    let states: Vec<String> = checks
        .iter()
        .map(|c| format!("{} {}", c.name, c.state.as_str()))
        .collect();
    let reason = format!(
        "watch ended: {}; checks: {}",
        ending.status(),
        if states.is_empty() {
            "none".to_string()
        } else {
            states.join(", ")
        }
    );
    // `warning` when something was paged during the watch (those notifiers
    // hear how it ended), `info` for a quiet one.
    let severity = if log.any_paged() {
        Severity::Warning
    } else {
        Severity::Info
    };
    let summary = release_event(release, SUMMARY, severity, &reason, now, SUMMARY);
    out.extend(records_for(settings, release, &summary, now, log));
    out
}
