//! `repeat_every` reminders: while a check holds a level of `warning` or
//! above, a notifier with `repeat_every` that was paged about it gets a
//! `reminder` at that period, counted from the instant the level was
//! entered (the page that opened or escalated the incident).
//!
//! Pure: from the release's checks and its [`IncidentLog`] (rebuilt from
//! the outbox, so reminders survive restarts) to the reminder rows due now
//! and the instant the next one is due, which the watch folds into its
//! next wake-up (no polling). A reminder's dedup key names its instant, so
//! a wake-up repeated after a crash sends nothing twice; reminders missed
//! while the daemon was down are not replayed one by one — only the latest
//! one due is sent.

use super::incidents::IncidentLog;
use super::messages;
use crate::config::Settings;
use crate::model::{
    format_value, rfc3339, CheckRecord, Level, Millis, NotificationRecord, Release,
};

/// What is due now, and when the next reminder is.
#[derive(Debug, Default)]
pub struct Due {
    pub rows: Vec<NotificationRecord>,
    /// The earliest instant a later reminder is due.
    pub next: Option<Millis>,
}

/// Whether any notifier of the release's service has `repeat_every` (when
/// none has, the watch never looks for reminders).
pub fn wanted(settings: &Settings, release: &Release) -> bool {
    settings
        .service(&release.service, &release.environment)
        .is_some_and(|s| {
            s.notify.iter().any(|n| {
                settings
                    .notifiers
                    .get(n)
                    .is_some_and(|n| n.repeat_every.is_some())
            })
        })
}

/// The reminders due at `now`, and when the next one is.
pub fn due(
    settings: &Settings,
    release: &Release,
    checks: &[CheckRecord],
    log: &IncidentLog,
    now: Millis,
) -> Due {
    let mut out = Due::default();
    if release.acked {
        return out;
    }
    let Some(service) = settings.service(&release.service, &release.environment) else {
        return out;
    };
    for (_, notifier, open) in log.open() {
        let Some(every) = service
            .notify
            .contains(notifier)
            .then(|| settings.notifiers.get(notifier))
            .flatten()
            .and_then(|n| n.repeat_every)
        else {
            continue;
        };
        let Some(check) = open
            .check
            .as_ref()
            .and_then(|c| checks.iter().find(|r| &r.name == c))
        else {
            continue;
        };
        if check.level < Level::Warning {
            continue;
        }
        let period = (every.as_millis() as Millis).max(1);
        let anchor = open.paged_at;
        // Reminders are at anchor + k·period, k ≥ 1.
        let last_k = open
            .reminded_at
            .map_or(0, |r| (r - anchor).div_euclid(period));
        let due_k = (now - anchor).div_euclid(period);
        if due_k >= 1 && due_k > last_k {
            let at = anchor + due_k * period;
            let reason = format!(
                "{} still at {} since {} (value {}); reminder every {}",
                check.name,
                check.level,
                rfc3339(anchor),
                check.value.map_or("-".into(), format_value),
                humantime::format_duration(every)
            );
            let mut msg = messages::release_event(
                release,
                "reminder",
                check.level.severity(),
                &reason,
                at,
                &format!("{}/reminder/{at}", check.name),
            );
            msg.check = Some(check.name.clone());
            msg.level = Some(check.level);
            msg.value = check.value.filter(|v| v.is_finite());
            out.rows.push(messages::record(notifier, &msg, now));
        }
        let next = anchor + (due_k.max(last_k) + 1) * period;
        out.next = Some(out.next.map_or(next, |n| n.min(next)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CheckState, DeliveryStatus, Message, Severity};

    fn settings(dir: &std::path::Path) -> Settings {
        let toml = "[store]\npath = \"g.db\"\n[notifiers.slack]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nrepeat_every = \"10s\"\n[notifiers.pager]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n[[services]]\nname = \"checkout\"\nnotify = [\"slack\", \"pager\"]\n";
        crate::config::load_str(toml, &dir.join("guardian.toml"), &[]).expect("config")
    }

    fn release() -> Release {
        Release {
            id: "r1".into(),
            service: "checkout".into(),
            environment: "production".into(),
            version: "v2".into(),
            previous_version: None,
            annotations: Default::default(),
            status: crate::model::ReleaseStatus::Watching,
            started_at: 0,
            next_check_at: Some(1_000),
            ended_at: None,
            acked: false,
            superseded_by: None,
        }
    }

    fn check(level: Level) -> CheckRecord {
        CheckRecord {
            name: "errors".into(),
            state: CheckState::from(level),
            level,
            value: Some(0.2),
            tracker: serde_json::Value::Null,
            evaluated_until: None,
            updated_at: 0,
            logs: Vec::new(),
        }
    }

    fn page(at: Millis) -> Message {
        let mut m = messages::level_changed(&release(), "errors", Level::Critical, 0.2, "r", at);
        m.severity = Severity::Critical;
        m
    }

    #[test]
    fn reminders_follow_the_period_only_for_notifiers_that_want_them() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        assert!(wanted(&s, &release()));
        let mut log = IncidentLog::default();
        log.note("slack", &page(5_000), DeliveryStatus::Sent);
        log.note("pager", &page(5_000), DeliveryStatus::Sent);
        let checks = [check(Level::Critical)];
        // Before the first period: nothing due, the next one at 15 s.
        let d = due(&s, &release(), &checks, &log, 14_999);
        assert!(d.rows.is_empty());
        assert_eq!(d.next, Some(15_000));
        let d = due(&s, &release(), &checks, &log, 15_000);
        assert_eq!(d.rows.len(), 1);
        assert_eq!(d.rows[0].notifier, "slack");
        assert_eq!(d.rows[0].key, "r1/errors/reminder/15000/slack");
        assert_eq!(d.rows[0].message.event, "reminder");
        assert_eq!(d.next, Some(25_000));
        // Once sent, not again; after a long gap only the latest is due.
        log.note("slack", &d.rows[0].message, DeliveryStatus::Sent);
        assert!(due(&s, &release(), &checks, &log, 20_000).rows.is_empty());
        let late = due(&s, &release(), &checks, &log, 61_000);
        assert_eq!(late.rows.len(), 1);
        assert_eq!(late.rows[0].message.at, 55_000);
        // A check back below warning is not reminded about.
        assert!(due(&s, &release(), &[check(Level::Ok)], &log, 61_000)
            .rows
            .is_empty());
    }
}
