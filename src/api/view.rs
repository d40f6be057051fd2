//! The release object: the JSON shape `GET /v1/releases/{id}` (and every
//! other release route) answers, built from the store's [`ReleaseDetails`].
//!
//! Times are RFC 3339 UTC ([`rfc3339`]). Only fields listed here are sent;
//! nothing from the configuration is. Free text that a failure may have
//! filled from elsewhere (a notifier's last error, the hook's output) goes
//! through a [`Redactor`] first.

use crate::config::Redactor;
use crate::model::{
    rfc3339, CheckRecord, CheckState, Decision, DeliveryStatus, Level, NotificationRecord,
    ReleaseStatus, RollbackRecord, RollbackState, Severity,
};
use crate::store::ReleaseDetails;
use serde::Serialize;
use std::collections::BTreeMap;

/// A release with its checks, decision timeline, notifications and rollback.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseView {
    pub id: String,
    pub service: String,
    pub environment: String,
    pub version: String,
    pub previous_version: Option<String>,
    pub status: ReleaseStatus,
    pub started_at: String,
    /// `null` once the watch has ended.
    pub next_check_at: Option<String>,
    pub ended_at: Option<String>,
    pub acked: bool,
    pub superseded_by: Option<String>,
    /// Left out of list items (`GET /v1/releases`): they can be large.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, serde_json::Value>>,
    pub checks: Vec<CheckView>,
    pub decisions: Vec<DecisionView>,
    pub notifications: Vec<NotificationView>,
    /// Per notification channel: how its messages about this release
    /// stand (counts by status, attempts, the last error).
    pub deliveries: Vec<DeliveryView>,
    pub rollback: Option<RollbackView>,
    /// The writes made to this release through the API (who, what, when);
    /// left out of list items.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<Vec<super::audit::AuditView>>,
}

/// How one notifier's messages about a release stand.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct DeliveryView {
    pub notifier: String,
    /// `failed` if any message failed for good, else `pending` if any
    /// waits, else `sent` if any went out, else `suppressed`.
    pub status: DeliveryStatus,
    pub sent: u32,
    pub pending: u32,
    pub failed: u32,
    pub suppressed: u32,
    /// Delivery attempts over all its messages.
    pub attempts: u32,
    /// The last error of its most recent message that had one.
    pub last_error: Option<String>,
    /// When the next attempt of its oldest waiting message is due.
    pub next_attempt_at: Option<String>,
}

impl DeliveryView {
    /// One view per notifier of `rows` (in first-seen order).
    fn of(rows: &[NotificationRecord], redactor: &Redactor) -> Vec<Self> {
        let mut out: Vec<DeliveryView> = Vec::new();
        for n in rows {
            let i = match out.iter().position(|d| d.notifier == n.notifier) {
                Some(i) => i,
                None => {
                    out.push(DeliveryView {
                        notifier: n.notifier.clone(),
                        ..Default::default()
                    });
                    out.len() - 1
                }
            };
            let d = &mut out[i];
            match n.status {
                DeliveryStatus::Sent => d.sent += 1,
                DeliveryStatus::Pending => {
                    d.pending += 1;
                    if d.next_attempt_at.is_none() {
                        d.next_attempt_at = Some(rfc3339(n.next_attempt_at));
                    }
                }
                DeliveryStatus::Failed => d.failed += 1,
                DeliveryStatus::Suppressed => d.suppressed += 1,
            }
            d.attempts += n.attempts;
            if let Some(e) = &n.last_error {
                d.last_error = Some(redactor.redact(e));
            }
        }
        for d in &mut out {
            d.status = if d.failed > 0 {
                DeliveryStatus::Failed
            } else if d.pending > 0 {
                DeliveryStatus::Pending
            } else if d.sent > 0 {
                DeliveryStatus::Sent
            } else {
                DeliveryStatus::Suppressed
            };
        }
        out
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckView {
    pub name: String,
    pub state: CheckState,
    /// The last value seen (`null` if none, or not a finite number).
    pub value: Option<f64>,
    pub level: Level,
    pub evaluated_until: Option<String>,
    pub updated_at: String,
    /// Evidence: the lines of the check's `logs` query at its latest
    /// reading, in the query's direction. Left out when it has none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogLineView>,
}

/// One log line kept as a check's evidence.
#[derive(Debug, Clone, Serialize)]
pub struct LogLineView {
    /// RFC 3339 UTC with nanoseconds.
    pub at: String,
    /// Nanoseconds since the Unix epoch, as a string (as Loki gives it).
    pub ts: String,
    /// The stream's labels, `{a="b",...}`.
    pub stream: String,
    pub line: String,
}

impl LogLineView {
    fn new(l: crate::model::LogLine, redactor: &Redactor) -> Self {
        let at =
            l.ts.parse::<i128>()
                .ok()
                .and_then(|ns| time::OffsetDateTime::from_unix_timestamp_nanos(ns).ok())
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
        Self {
            at,
            ts: l.ts,
            stream: l.stream,
            line: redactor.redact(&l.line),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DecisionView {
    pub at: String,
    pub check: Option<String>,
    pub level: Option<Level>,
    pub action: String,
    pub reason: String,
    /// The instant of the data judged (RFC3339), where data was judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<String>,
    /// What was judged (query, values, condition, baseline, p-values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotificationView {
    pub key: String,
    pub notifier: String,
    pub event: String,
    pub severity: Severity,
    pub check: Option<String>,
    pub level: Option<Level>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
    /// When a `pending` message is tried next (`null` once settled).
    pub next_attempt_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RollbackView {
    pub state: RollbackState,
    /// `auto` or `manual`.
    pub trigger: String,
    pub reason: String,
    pub requested_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    pub output: Option<String>,
}

impl ReleaseView {
    pub fn new(details: ReleaseDetails, redactor: &Redactor) -> Self {
        let ReleaseDetails {
            release,
            checks,
            decisions,
            notifications,
            rollback,
        } = details;
        Self {
            id: release.id,
            service: release.service,
            environment: release.environment,
            version: release.version,
            previous_version: release.previous_version,
            status: release.status,
            started_at: rfc3339(release.started_at),
            next_check_at: release.next_check_at.map(rfc3339),
            ended_at: release.ended_at.map(rfc3339),
            acked: release.acked,
            superseded_by: release.superseded_by,
            annotations: Some(release.annotations),
            checks: checks
                .into_iter()
                .map(|c| CheckView::new(c, redactor))
                .collect(),
            decisions: decisions
                .into_iter()
                .map(|d| DecisionView::new(d, redactor))
                .collect(),
            deliveries: DeliveryView::of(&notifications, redactor),
            notifications: notifications
                .into_iter()
                .map(|n| NotificationView::new(n, redactor))
                .collect(),
            rollback: rollback.map(|r| RollbackView::new(r, redactor)),
            audit: None,
        }
    }
}

impl CheckView {
    /// Log lines may quote anything: redacted.
    fn new(c: CheckRecord, redactor: &Redactor) -> Self {
        Self {
            name: c.name,
            state: c.state,
            value: c.value.filter(|v| v.is_finite()),
            level: c.level,
            evaluated_until: c.evaluated_until.map(rfc3339),
            updated_at: rfc3339(c.updated_at),
            logs: c
                .logs
                .into_iter()
                .map(|l| LogLineView::new(l, redactor))
                .collect(),
        }
    }
}

impl DecisionView {
    /// A reason may quote a hook's output or a receiver's error: redacted.
    fn new(d: Decision, redactor: &Redactor) -> Self {
        Self {
            at: rfc3339(d.at),
            check: d.check,
            level: d.level,
            action: d.action.to_string(),
            reason: redactor.redact(&d.reason),
            observed_at: d.observed_at.map(rfc3339),
            evidence: d
                .evidence
                .and_then(|e| serde_json::from_str(&redactor.redact(&e.to_string())).ok()),
        }
    }
}

impl NotificationView {
    fn new(n: NotificationRecord, redactor: &Redactor) -> Self {
        Self {
            key: n.key,
            notifier: n.notifier,
            event: n.message.event,
            severity: n.message.severity,
            check: n.message.check,
            level: n.message.level,
            status: n.status,
            attempts: n.attempts,
            last_error: n.last_error.map(|e| redactor.redact(&e)),
            created_at: rfc3339(n.created_at),
            sent_at: n.sent_at.map(rfc3339),
            next_attempt_at: (n.status == DeliveryStatus::Pending)
                .then(|| rfc3339(n.next_attempt_at)),
        }
    }
}

impl RollbackView {
    fn new(r: RollbackRecord, redactor: &Redactor) -> Self {
        Self {
            state: r.state,
            trigger: r.trigger,
            reason: r.reason,
            requested_at: rfc3339(r.requested_at),
            started_at: r.started_at.map(rfc3339),
            finished_at: r.finished_at.map(rfc3339),
            exit_code: r.exit_code,
            output: r.output.map(|o| redactor.redact(&o)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Message, Release};

    fn details() -> ReleaseDetails {
        let release = Release {
            id: "r1".into(),
            service: "checkout".into(),
            environment: "production".into(),
            version: "v2".into(),
            previous_version: Some("v1".into()),
            annotations: BTreeMap::new(),
            status: ReleaseStatus::Watching,
            started_at: 0,
            next_check_at: None,
            ended_at: None,
            acked: false,
            superseded_by: None,
        };
        let message = Message {
            dedup_key: "k".into(),
            release_id: "r1".into(),
            service: "checkout".into(),
            environment: "production".into(),
            version: "v2".into(),
            previous_version: Some("v1".into()),
            severity: Severity::Critical,
            event: "level_changed".into(),
            check: Some("error_rate".into()),
            level: Some(Level::Critical),
            value: Some(0.02),
            reason: "above 0.01".into(),
            at: 1_000,
        };
        ReleaseDetails {
            release,
            checks: vec![CheckRecord {
                name: "error_rate".into(),
                state: CheckState::Critical,
                level: Level::Critical,
                value: Some(f64::NAN),
                tracker: serde_json::json!({"opaque": true}),
                evaluated_until: Some(1_000),
                updated_at: 1_000,
                logs: vec![crate::model::LogLine {
                    ts: "1569266497240578000".into(),
                    stream: r#"{job="a"}"#.into(),
                    line: "error: upstream https://hooks.example/T0/SECRET-PATH".into(),
                }],
            }],
            decisions: vec![],
            notifications: vec![NotificationRecord {
                key: "k/slack".into(),
                notifier: "slack".into(),
                message,
                status: DeliveryStatus::Pending,
                attempts: 1,
                last_error: Some("POST https://hooks.example/T0/SECRET-PATH failed".into()),
                created_at: 1_000,
                sent_at: None,
                next_attempt_at: 2_000,
            }],
            rollback: None,
        }
    }

    #[test]
    fn the_release_object() {
        let redactor = Redactor::new(["https://hooks.example/T0/SECRET-PATH".to_string()]);
        let v = serde_json::to_value(ReleaseView::new(details(), &redactor)).unwrap();
        assert_eq!(v["started_at"], "1970-01-01T00:00:00Z");
        assert_eq!(v["next_check_at"], serde_json::Value::Null);
        assert_eq!(v["rollback"], serde_json::Value::Null);
        assert_eq!(v["status"], "watching");
        assert_eq!(v["checks"][0]["state"], "critical");
        assert_eq!(v["checks"][0]["value"], serde_json::Value::Null);
        assert_eq!(v["checks"][0]["evaluated_until"], "1970-01-01T00:00:01Z");
        assert!(v["checks"][0].get("tracker").is_none());
        assert_eq!(v["notifications"][0]["severity"], "critical");
        assert_eq!(v["notifications"][0]["check"], "error_rate");
        let err = v["notifications"][0]["last_error"].as_str().unwrap();
        assert!(!err.contains("SECRET-PATH"), "{err}");
        let log = &v["checks"][0]["logs"][0];
        assert_eq!(log["at"], "2019-09-23T19:21:37.240578Z");
        assert_eq!(log["ts"], "1569266497240578000");
        assert_eq!(log["stream"], r#"{job="a"}"#);
        assert!(!log["line"].as_str().unwrap().contains("SECRET-PATH"));
        assert_eq!(
            v["notifications"][0]["next_attempt_at"],
            "1970-01-01T00:00:02Z"
        );
        let d = &v["deliveries"][0];
        assert_eq!(d["notifier"], "slack");
        assert_eq!(
            (d["status"].as_str(), d["pending"].as_u64()),
            (Some("pending"), Some(1))
        );
        assert_eq!(d["attempts"], 1);
        assert!(!d["last_error"].as_str().unwrap().contains("SECRET-PATH"));
    }
}
