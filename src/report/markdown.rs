//! The report in Markdown: tables, a sparkline and a compact value table
//! per check, checkboxes for the checklist, a sign-off block.

use super::build::{CheckSection, Report};
use super::chart::sparkline;
use crate::model::format_value;
use serde_json::Value;
use std::fmt::Write;

/// Points shown in a check's value table (evenly spaced over the watch).
const TABLE_ROWS: usize = 12;

/// Text fit for a table cell: no pipes or newlines.
pub(crate) fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// A JSON value as short text: strings bare, the rest as JSON.
pub fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The fields of a timeline entry beyond `known`, as `key: value` pairs:
/// evidence and anything else other parts of the daemon record.
pub fn extra_fields(v: &Value, known: &[&str]) -> Vec<(String, String)> {
    let Some(obj) = v.as_object() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in obj {
        if known.contains(&k.as_str()) || v.is_null() {
            continue;
        }
        match v {
            Value::Object(inner) => {
                for (ik, iv) in inner {
                    out.push((format!("{k}.{ik}"), show(iv)));
                }
            }
            other => out.push((k.clone(), show(other))),
        }
    }
    out
}

/// Known fields of a decision (the rest is evidence, shown generically).
pub const DECISION_FIELDS: [&str; 5] = ["at", "check", "level", "action", "reason"];

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

/// Renders the report.
pub fn render(r: &Report) -> String {
    let h = &r.release;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Post-release report: {} {} ({})\n",
        h.service, h.version, h.environment
    );
    let _ = writeln!(o, "| | |\n|---|---|");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(o, "| {k} | {} |", cell(&v));
    };
    row("Release", h.id.clone());
    row("Service", h.service.clone());
    row("Environment", h.environment.clone());
    row("Version", h.version.clone());
    row(
        "Previous version",
        h.previous_version.clone().unwrap_or_else(|| "-".into()),
    );
    row(
        "Deployed by",
        if h.deployed_by.is_empty() {
            "-".into()
        } else {
            h.deployed_by
                .iter()
                .map(|(k, v)| format!("{k}: {}", show(v)))
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    row("Started", h.started_at.clone());
    row("Ended", h.ended_at.clone().unwrap_or_else(|| "-".into()));
    row("Final status", format!("**{}**", h.status));
    if let Some(score) = h.health_score {
        row("Health score", format!("{} / 100", format_value(score)));
    }
    row("Report generated", r.generated_at.clone());
    if let Some(a) = h.annotations.as_object().filter(|a| !a.is_empty()) {
        let _ = writeln!(o, "\nAnnotations:\n");
        for (k, v) in a {
            let _ = writeln!(o, "- `{}`: {}", cell(k), cell(&show(v)));
        }
    }

    let _ = writeln!(o, "\n## Checks\n");
    for c in &r.checks {
        check(&mut o, c);
    }

    let _ = writeln!(o, "## Decision timeline\n");
    if r.decisions.is_empty() {
        let _ = writeln!(o, "No decisions recorded.\n");
    } else {
        let with_evidence = r.decisions.iter().any(|d| !evidence(d).is_empty());
        let (head, rule) = if with_evidence {
            (" Evidence |", "---|")
        } else {
            ("", "")
        };
        let _ = writeln!(o, "| At | Check | Action | Level | Reason |{head}");
        let _ = writeln!(o, "|---|---|---|---|---|{rule}");
        for d in &r.decisions {
            let _ = write!(
                o,
                "| {} | {} | {} | {} | {} |",
                s(d, "at"),
                cell(s(d, "check")),
                s(d, "action"),
                s(d, "level"),
                cell(s(d, "reason"))
            );
            if with_evidence {
                let _ = write!(o, " {} |", cell(&evidence(d)));
            }
            o.push('\n');
        }
        o.push('\n');
    }

    let _ = writeln!(o, "## Notifications\n");
    if r.notifications.is_empty() {
        let _ = writeln!(o, "No notifications.\n");
    } else {
        let _ = writeln!(
            o,
            "| Channel | Event | Severity | Created | Delivered | Attempts | Last error |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|");
        for n in &r.notifications {
            let delivered = match s(n, "status") {
                "sent" => format!("yes, {}", s(n, "sent_at")),
                other => format!("no ({other})"),
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} |",
                cell(s(n, "notifier")),
                cell(s(n, "event")),
                s(n, "severity"),
                s(n, "created_at"),
                delivered,
                n.get("attempts").map(show).unwrap_or_default(),
                cell(s(n, "last_error"))
            );
        }
        o.push('\n');
    }

    let _ = writeln!(o, "## Rollback\n");
    match &r.rollback {
        None => {
            let _ = writeln!(o, "No rollback was requested.\n");
        }
        Some(rb) => {
            let command = rb
                .get("command")
                .and_then(Value::as_array)
                .map(|c| c.iter().map(show).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(o, "- State: **{}** ({})", s(rb, "state"), s(rb, "trigger"));
            let _ = writeln!(o, "- Reason: {}", s(rb, "reason"));
            let _ = writeln!(o, "- Command: `{command}`");
            let _ = writeln!(
                o,
                "- Exit status: {}",
                rb.get("exit_code").map(show).unwrap_or_else(|| "-".into())
            );
            let _ = writeln!(
                o,
                "- Requested {}, started {}, finished {}",
                s(rb, "requested_at"),
                s(rb, "started_at"),
                s(rb, "finished_at")
            );
            if let Some(ms) = rb.get("duration_ms").and_then(Value::as_i64) {
                let _ = writeln!(o, "- Duration: {:.1} s", ms as f64 / 1000.0);
            }
            if let Some(out) = rb
                .get("output_excerpt")
                .and_then(Value::as_str)
                .filter(|x| !x.trim().is_empty())
            {
                let _ = writeln!(o, "\nOutput (excerpt):\n\n```text\n{}\n```", out.trim_end());
            }
            o.push('\n');
        }
    }

    let _ = writeln!(o, "## Post-deployment checklist\n");
    for i in &r.checklist {
        let _ = writeln!(
            o,
            "- [{}] **{}** ({}) — {}: {}",
            if i.ticked() { "x" } else { " " },
            i.item,
            i.section,
            i.outcome.replace('_', " "),
            i.evidence
        );
    }

    let _ = writeln!(o, "\n## Sign-off\n");
    let _ = writeln!(o, "Verdict: **{}**\n", r.sign_off.verdict);
    let _ = writeln!(o, "Verified by release-guardian:\n");
    for v in &r.sign_off.verified {
        let _ = writeln!(o, "- {v}");
    }
    let _ = writeln!(
        o,
        "\nSigned off by: ______________________  Date: ____________\n"
    );
    o
}

fn evidence(d: &Value) -> String {
    extra_fields(d, &DECISION_FIELDS)
        .into_iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check(o: &mut String, c: &CheckSection) {
    let _ = writeln!(o, "### {}\n", c.name);
    let _ = writeln!(
        o,
        "- State: **{}** (level {}, worst level during the watch: {})",
        c.state, c.level, c.worst_level
    );
    if let Some(src) = &c.source {
        let _ = writeln!(o, "- Source: {src}");
    }
    if let Some(q) = &c.query {
        let _ = writeln!(o, "- Query: `{}`", cell(q.trim()));
    }
    if let Some(p) = &c.probe {
        let _ = writeln!(o, "- Probe: {p}");
    }
    if !c.thresholds.is_empty() {
        let t: Vec<String> = c
            .thresholds
            .iter()
            .map(|t| format!("{}: {}", t.level, t.rule))
            .collect();
        let _ = writeln!(o, "- Thresholds: {}", t.join("; "));
    }
    let pts: Vec<_> = c.points.iter().map(|p| (p.ms, p.value)).collect();
    if pts.is_empty() {
        let _ = writeln!(o, "- Values: none recorded\n");
    } else {
        let values: Vec<f64> = pts.iter().filter_map(|p| p.1).collect();
        let (lo, hi) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let range = if values.is_empty() {
            "no usable value".to_string()
        } else {
            format!("min {}, max {}", format_value(lo), format_value(hi))
        };
        let _ = writeln!(
            o,
            "- Values ({} points, {range}): `{}`\n",
            pts.len(),
            sparkline(&pts, 60)
        );
        let _ = writeln!(o, "| At | Value |\n|---|---|");
        let every = c.points.len().div_ceil(TABLE_ROWS).max(1);
        let mut shown: Vec<usize> = (0..c.points.len()).step_by(every).collect();
        if shown.last() != Some(&(c.points.len() - 1)) {
            shown.push(c.points.len() - 1);
        }
        for i in shown {
            let p = &c.points[i];
            let _ = writeln!(
                o,
                "| {} | {} |",
                p.at,
                p.value
                    .map(format_value)
                    .unwrap_or_else(|| "no value".into())
            );
        }
        o.push('\n');
    }
    if !c.decisions.is_empty() {
        let _ = writeln!(o, "Level changes and decisions:\n");
        for d in &c.decisions {
            let ev = evidence(d);
            let _ = writeln!(
                o,
                "- {} {} {}: {}{}",
                s(d, "at"),
                s(d, "action"),
                s(d, "level"),
                s(d, "reason"),
                if ev.is_empty() {
                    String::new()
                } else {
                    format!(" (evidence: {ev})")
                }
            );
        }
        o.push('\n');
    }
}
