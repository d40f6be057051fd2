//! The terminal views of `status`: a compact table of releases, and one
//! release's checks with a sparkline each and its timeline. Colours (ANSI)
//! only when asked for: the CLI asks when stdout is a terminal and
//! `NO_COLOR` is unset.

use super::chart::sparkline;
use crate::model::format_value;
use serde_json::Value;
use std::fmt::Write;

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

/// Whether to colour: a terminal, and `NO_COLOR` unset or empty.
pub fn use_colour(is_terminal: bool, no_color: Option<&str>) -> bool {
    is_terminal && no_color.is_none_or(str::is_empty)
}

/// `text` padded to `width`, in the colour of `state` when `colour`.
pub fn paint(state: &str, text: &str, width: usize, colour: bool) -> String {
    let padded = format!("{text:<width$}");
    if !colour {
        return padded;
    }
    let code = match state {
        "ok" | "verified" | "rolled_back" | "passed" | "succeeded" | "sent" => "32",
        "warning" | "rolling_back" => "33",
        "critical" | "rollback" | "rollback_failed" | "failed" => "31;1",
        "inconclusive" | "pending" | "superseded" | "aborted" => "2",
        "watching" => "36",
        _ => "0",
    };
    format!("\x1b[{code}m{padded}\x1b[0m")
}

/// One line per release, with a coloured cell per check.
pub fn table(list: &Value, colour: bool) -> String {
    let items = list.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return "no releases\n".into();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<36}  {:<14} {:<11} {:<10} {:<15} {:<20} {:<20} CHECKS",
        "ID", "SERVICE", "ENV", "VERSION", "STATUS", "NEXT CHECK", "DELIVERIES"
    );
    for r in &items {
        let checks = r
            .get("checks")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        let state = s(c, "state");
                        paint(state, &format!("{}:{state}", s(c, "name")), 0, colour)
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<36}  {:<14} {:<11} {:<10} {} {:<20} {:<20} {checks}",
            s(r, "id"),
            s(r, "service"),
            s(r, "environment"),
            s(r, "version"),
            paint(s(r, "status"), s(r, "status"), 15, colour),
            s(r, "next_check_at"),
            super::text::deliveries(r),
        );
    }
    out
}

/// One release from its JSON report: header, a sparkline per check, the
/// decision timeline, notifications and the rollback.
pub fn release(report: &Value, colour: bool) -> String {
    let h = &report["release"];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({}) {} -> {}  status: {}",
        s(h, "service"),
        s(h, "environment"),
        h.get("previous_version")
            .and_then(Value::as_str)
            .unwrap_or("?"),
        s(h, "version"),
        paint(s(h, "status"), s(h, "status"), 0, colour)
    );
    let _ = writeln!(
        out,
        "  release {}  started {}  next check {}",
        s(h, "id"),
        s(h, "started_at"),
        s(h, "next_check_at")
    );
    let _ = writeln!(out, "  checks:");
    for c in report["checks"].as_array().into_iter().flatten() {
        let points: Vec<(i64, Option<f64>)> = c["points"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, p)| (i as i64, p["value"].as_f64()))
            .collect();
        let _ = writeln!(
            out,
            "    {:<18} {} {:>10}  {}",
            s(c, "name"),
            paint(s(c, "state"), s(c, "state"), 13, colour),
            c["value"]
                .as_f64()
                .map(format_value)
                .unwrap_or_else(|| "-".into()),
            sparkline(&points, 40)
        );
    }
    let _ = writeln!(out, "  timeline:");
    for d in report["decisions"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "    {}  {:<20} {}",
            s(d, "at"),
            s(d, "action"),
            s(d, "reason")
        );
    }
    for n in report["notifications"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  notified {:<14} {:<20} {} (attempts {})",
            s(n, "notifier"),
            s(n, "event"),
            paint(s(n, "status"), s(n, "status"), 0, colour),
            n["attempts"].as_u64().unwrap_or(0)
        );
    }
    super::text::delivery_lines(&mut out, report);
    if let Some(rb) = report.get("rollback").filter(|v| v.is_object()) {
        let _ = writeln!(
            out,
            "  rollback {} ({}), exit code {}",
            paint(s(rb, "state"), s(rb, "state"), 0, colour),
            s(rb, "trigger"),
            rb.get("exit_code")
                .filter(|v| !v.is_null())
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into())
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some("")));
        assert!(!use_colour(true, Some("1")));
        assert!(!use_colour(false, None));
        assert_eq!(paint("ok", "ok", 4, false), "ok  ");
        assert_eq!(paint("ok", "ok", 0, true), "\x1b[32mok\x1b[0m");
    }

    #[test]
    fn a_release_with_a_sparkline_per_check() {
        let r = serde_json::json!({
            "release": {"id": "r1", "service": "checkout", "environment": "production",
                        "version": "v2", "previous_version": "v1", "status": "rolled_back"},
            "checks": [{"name": "error_rate", "state": "rollback", "value": 0.3,
                        "points": [{"value": 0.0}, {"value": 0.1}, {"value": 0.3}]}],
            "decisions": [{"at": "t", "action": "level_changed", "reason": "error_rate entered rollback"}],
            "notifications": [], "rollback": {"state": "succeeded", "trigger": "auto", "exit_code": 0}
        });
        let text = release(&r, false);
        assert!(
            text.contains("checkout (production) v1 -> v2  status: rolled_back"),
            "{text}"
        );
        assert!(
            text.contains("error_rate         rollback             0.3  ▁▃█"),
            "{text}"
        );
        assert!(
            text.contains("rollback succeeded (auto), exit code 0"),
            "{text}"
        );
        let list = serde_json::json!([{"id": "r1", "service": "checkout", "status": "watching",
            "checks": [{"name": "e", "state": "ok"}]}]);
        assert!(table(&list, false).contains("e:ok"));
    }
}
