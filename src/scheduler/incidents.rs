//! Who was told what, from the outbox: the incidents of one release that
//! are open at each notifier, rebuilt from the stored rows (so it survives
//! restarts) and kept up to date as a tick adds rows.
//!
//! An incident is keyed by [`Message::incident_key`] (`RELEASE/CHECK`, or
//! `RELEASE` for the release's own messages). A notifier holds it open from
//! the first page it was sent about it (a row `pending` or `sent`; a row
//! suppressed by an ack or failed for good never reached it) until a
//! message that closes it ([`Message::closes_incident`]) is queued for it.
//! Closing messages go to exactly the notifiers that hold the incident open,
//! whatever their `min_severity`: a receiver that was paged is told it is
//! over (PagerDuty resolves), one that was not is not bothered.
//!
//! The log also knows, per open incident and notifier, when it was last
//! paged and reminded: the anchor of `repeat_every` reminders.

use crate::model::{DeliveryStatus, Level, Message, Millis, NotificationRecord};
use std::collections::{BTreeMap, BTreeSet};

/// Events that report how things ended rather than a problem: they open no
/// incident (nothing for a receiver to resolve later).
const NOT_OPENING: &[&str] = &["verified", "rolled_back", "summary", "reminder"];

/// One incident open at one notifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Open {
    pub check: Option<String>,
    pub level: Option<Level>,
    pub value: Option<f64>,
    /// The event instant of the latest page that (re)opened it.
    pub paged_at: Millis,
    /// The instant of the latest reminder about it, if any since that page.
    pub reminded_at: Option<Millis>,
}

/// The open incidents of one release, by incident key, then notifier.
#[derive(Debug, Clone, Default)]
pub struct IncidentLog {
    open: BTreeMap<String, BTreeMap<String, Open>>,
    /// Notifiers that were sent any page about the release.
    paged: BTreeSet<String>,
}

impl IncidentLog {
    /// The log the release's stored outbox rows describe.
    pub fn from_rows(rows: &[NotificationRecord]) -> Self {
        let mut rows: Vec<&NotificationRecord> = rows.iter().collect();
        rows.sort_by(|a, b| (a.created_at, &a.key).cmp(&(b.created_at, &b.key)));
        let mut log = Self::default();
        for r in rows {
            log.note(&r.notifier, &r.message, r.status);
        }
        log
    }

    /// Records that `msg` was queued for `notifier` with `status`.
    pub fn note(&mut self, notifier: &str, msg: &Message, status: DeliveryStatus) {
        let key = msg.incident_key();
        if msg.closes_incident() {
            if let Some(open) = self.open.get_mut(&key) {
                open.remove(notifier);
            }
            return;
        }
        if !matches!(status, DeliveryStatus::Pending | DeliveryStatus::Sent) {
            return;
        }
        if msg.event == "reminder" {
            if let Some(o) = self.open.get_mut(&key).and_then(|m| m.get_mut(notifier)) {
                o.reminded_at = Some(o.reminded_at.map_or(msg.at, |r| r.max(msg.at)));
            }
            return;
        }
        if NOT_OPENING.contains(&msg.event.as_str()) {
            return;
        }
        self.paged.insert(notifier.to_string());
        self.open.entry(key).or_default().insert(
            notifier.to_string(),
            Open {
                check: msg.check.clone(),
                level: msg.level,
                value: msg.value,
                paged_at: msg.at,
                reminded_at: None,
            },
        );
    }

    /// The notifiers that hold `msg`'s incident open.
    pub fn holders(&self, msg: &Message) -> Vec<String> {
        self.open
            .get(&msg.incident_key())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether any notifier was sent a page about the release.
    pub fn any_paged(&self) -> bool {
        !self.paged.is_empty()
    }

    /// Every open incident: key, notifier, what opened it.
    pub fn open(&self) -> impl Iterator<Item = (&String, &String, &Open)> {
        self.open
            .iter()
            .flat_map(|(key, m)| m.iter().map(move |(n, o)| (key, n, o)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;

    fn msg(event: &str, check: Option<&str>, at: Millis) -> Message {
        Message {
            dedup_key: format!("r1/{event}/{at}"),
            release_id: "r1".into(),
            service: "checkout".into(),
            environment: "production".into(),
            version: "v2".into(),
            previous_version: None,
            severity: Severity::Critical,
            event: event.into(),
            check: check.map(str::to_string),
            level: Some(Level::Critical),
            value: Some(1.0),
            reason: "r".into(),
            at,
        }
    }

    fn row(notifier: &str, m: Message, status: DeliveryStatus) -> NotificationRecord {
        NotificationRecord {
            key: format!("{}/{notifier}", m.dedup_key),
            notifier: notifier.into(),
            created_at: m.at,
            message: m,
            status,
            attempts: 0,
            last_error: None,
            sent_at: None,
            next_attempt_at: 0,
        }
    }

    #[test]
    fn a_page_opens_for_its_receivers_and_a_recovery_closes() {
        let page = msg("level_changed", Some("errors"), 10);
        let rows = vec![
            row("pager", page.clone(), DeliveryStatus::Sent),
            row("slack", page.clone(), DeliveryStatus::Suppressed),
            row("hook", page.clone(), DeliveryStatus::Failed),
        ];
        let mut log = IncidentLog::from_rows(&rows);
        assert_eq!(log.holders(&page), ["pager"]);
        assert!(log.any_paged());
        assert!(!IncidentLog::from_rows(&rows[1..]).any_paged());
        let recovered = msg("recovered", Some("errors"), 20);
        log.note("pager", &recovered, DeliveryStatus::Pending);
        assert!(log.holders(&page).is_empty());
        // Another check's incident is another key.
        assert!(log
            .holders(&msg("level_changed", Some("latency"), 5))
            .is_empty());
    }

    #[test]
    fn reminders_and_endings_open_nothing() {
        let mut log = IncidentLog::default();
        log.note("slack", &msg("verified", None, 1), DeliveryStatus::Pending);
        log.note(
            "slack",
            &msg("reminder", Some("e"), 2),
            DeliveryStatus::Pending,
        );
        assert_eq!(log.open().count(), 0);
        log.note(
            "slack",
            &msg("level_changed", Some("e"), 3),
            DeliveryStatus::Pending,
        );
        log.note(
            "slack",
            &msg("reminder", Some("e"), 9),
            DeliveryStatus::Sent,
        );
        let (_, _, o) = log.open().next().unwrap();
        assert_eq!((o.paged_at, o.reminded_at), (3, Some(9)));
    }
}
