//! Plain-text rendering of API release objects (JSON values), so the CLI
//! shows exactly what the API says.

use serde_json::Value;
use std::fmt::Write;

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn num(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::Number(n)) => n
            .as_f64()
            .map(crate::model::format_value)
            .unwrap_or_default(),
        _ => "-".into(),
    }
}

/// One line per release: id, service, environment, version, status, start.
pub fn release_list(list: &Value) -> String {
    let mut out = String::new();
    let items = list.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return "no releases\n".into();
    }
    let _ = writeln!(
        out,
        "{:<38} {:<16} {:<12} {:<12} {:<16} {:<22} STARTED",
        "ID", "SERVICE", "ENVIRONMENT", "VERSION", "STATUS", "DELIVERIES"
    );
    for r in &items {
        let _ = writeln!(
            out,
            "{:<38} {:<16} {:<12} {:<12} {:<16} {:<22} {}",
            s(r, "id"),
            s(r, "service"),
            s(r, "environment"),
            s(r, "version"),
            s(r, "status"),
            deliveries(r),
            s(r, "started_at")
        );
    }
    out
}

/// The release's deliveries in a few words: `3 failed`, `2 pending`,
/// `1 failed, 4 pending`, `ok` when every message went out, `-` for none.
pub(crate) fn deliveries(r: &Value) -> String {
    let total = |key: &str| -> u64 {
        r.get("deliveries")
            .and_then(Value::as_array)
            .map(|ds| {
                ds.iter()
                    .map(|d| d.get(key).and_then(Value::as_u64).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    };
    let (failed, pending, sent) = (total("failed"), total("pending"), total("sent"));
    match (failed, pending) {
        (0, 0) if sent > 0 => "ok".into(),
        (0, 0) => "-".into(),
        (f, 0) => format!("{f} failed"),
        (0, p) => format!("{p} pending"),
        (f, p) => format!("{f} failed, {p} pending"),
    }
}

/// A line per notifier with failed or waiting messages (only what needs
/// a look), from `r`'s `deliveries`.
pub(crate) fn delivery_lines(out: &mut String, r: &Value) {
    if let Some(ds) = r.get("deliveries").and_then(Value::as_array) {
        // Only what needs a look: channels with failed or waiting messages.
        for d in ds.iter().filter(|d| {
            d.get("failed").and_then(Value::as_u64).unwrap_or(0) > 0
                || d.get("pending").and_then(Value::as_u64).unwrap_or(0) > 0
        }) {
            let _ = writeln!(
                out,
                "  DELIVERY {}: {} failed, {} pending ({} attempts; next {}; last error: {})",
                s(d, "notifier"),
                d.get("failed").and_then(Value::as_u64).unwrap_or(0),
                d.get("pending").and_then(Value::as_u64).unwrap_or(0),
                d.get("attempts").and_then(Value::as_u64).unwrap_or(0),
                s(d, "next_attempt_at"),
                s(d, "last_error")
            );
        }
    }
}

/// A release with its checks, decision timeline, notifications and rollback.
pub fn release(r: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "release {}  {} ({}) {} -> {}  status: {}",
        s(r, "id"),
        s(r, "service"),
        s(r, "environment"),
        r.get("previous_version")
            .and_then(Value::as_str)
            .unwrap_or("?"),
        s(r, "version"),
        s(r, "status")
    );
    let _ = writeln!(
        out,
        "  started {}  next check {}",
        s(r, "started_at"),
        s(r, "next_check_at")
    );
    out.push_str(&checks(r));
    if let Some(ds) = r.get("decisions").and_then(Value::as_array) {
        let _ = writeln!(out, "  decisions:");
        for d in ds {
            let _ = writeln!(
                out,
                "    {}  {:<20} {}",
                s(d, "at"),
                s(d, "action"),
                s(d, "reason")
            );
        }
    }
    if let Some(ns) = r.get("notifications").and_then(Value::as_array) {
        if !ns.is_empty() {
            let _ = writeln!(out, "  notifications:");
            for n in ns {
                let _ = writeln!(
                    out,
                    "    {:<14} {:<22} {:<9} {} (attempts {})",
                    s(n, "notifier"),
                    s(n, "event"),
                    s(n, "severity"),
                    s(n, "status"),
                    n.get("attempts").and_then(Value::as_u64).unwrap_or(0)
                );
            }
        }
    }
    delivery_lines(&mut out, r);
    if let Some(rb) = r.get("rollback").filter(|v| !v.is_null()) {
        let _ = writeln!(
            out,
            "  rollback: {} ({}), exit code {}, reason: {}",
            s(rb, "state"),
            s(rb, "trigger"),
            rb.get("exit_code")
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            s(rb, "reason")
        );
        if let Some(o) = rb
            .get("output")
            .and_then(Value::as_str)
            .filter(|o| !o.trim().is_empty())
        {
            for line in o.trim_end().lines().take(10) {
                let _ = writeln!(out, "    | {line}");
            }
        }
    }
    out
}

/// The checks table of a release.
pub fn checks(r: &Value) -> String {
    let mut out = String::new();
    if let Some(cs) = r.get("checks").and_then(Value::as_array) {
        let _ = writeln!(out, "  checks:");
        for c in cs {
            let _ = writeln!(
                out,
                "    {:<16} {:<13} value {}",
                s(c, "name"),
                s(c, "state"),
                num(c, "value")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_the_api_says() {
        let r = serde_json::json!({
            "id": "r1", "service": "checkout", "environment": "production", "version": "v2",
            "previous_version": "v1", "status": "rolled_back", "started_at": "2026-01-01T00:00:00Z",
            "next_check_at": null,
            "checks": [{"name": "error_rate", "state": "rollback", "value": 0.12}],
            "decisions": [{"at": "2026-01-01T00:00:05Z", "action": "rollback_requested", "reason": "error_rate entered rollback"}],
            "notifications": [{"notifier": "slack", "event": "level_changed", "severity": "critical", "status": "sent", "attempts": 1}],
            "rollback": {"state": "succeeded", "trigger": "auto", "exit_code": 0, "reason": "x", "output": "restored v1\n"}
        });
        let text = release(&r);
        assert!(text.contains("checkout (production) v1 -> v2  status: rolled_back"));
        assert!(text.contains("error_rate       rollback      value 0.12"));
        assert!(text.contains("rollback_requested"));
        assert!(text.contains("rollback: succeeded (auto), exit code 0"));
        assert!(text.contains("| restored v1"));
        assert_eq!(release_list(&serde_json::json!([])), "no releases\n");
        let failing = serde_json::json!({
            "id": "r2", "status": "watching",
            "deliveries": [
                {"notifier": "pager", "failed": 2, "pending": 1, "sent": 0, "attempts": 9,
                 "next_attempt_at": "2026-01-01T00:01:00Z", "last_error": "pagerduty answered HTTP 400"},
                {"notifier": "slack", "failed": 0, "pending": 0, "sent": 3, "attempts": 3}
            ]
        });
        let list = release_list(&serde_json::json!([failing.clone()]));
        assert!(list.contains("DELIVERIES"), "{list}");
        assert!(list.contains("2 failed, 1 pending"), "{list}");
        let text = release(&failing);
        assert!(
            text.contains("DELIVERY pager: 2 failed, 1 pending (9 attempts; next 2026-01-01T00:01:00Z; last error: pagerduty answered HTTP 400)"),
            "{text}"
        );
        assert!(!text.contains("DELIVERY slack"), "{text}");
    }
}
