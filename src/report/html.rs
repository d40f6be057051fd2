//! The report as one self-contained HTML file: inline CSS (with print
//! rules, so it prints cleanly to PDF), inline SVG charts, no script and
//! no external asset. The pieces are shared with the status page.

use super::build::{at_ms, decision_level, CheckSection, Report};
use super::chart::{self, colour, Line, Mark};
use super::markdown::{extra_fields, show, DECISION_FIELDS};
use crate::model::{format_value, parse_time, Millis};
use serde_json::Value;
use std::fmt::Write;

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The style every page shares, print rules included.
pub const CSS: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px;color:#212121;max-width:1100px}
h1{font-size:22px;margin:0 0 12px}h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f5f5f5}
.state{display:inline-block;padding:2px 8px;border-radius:3px;color:#fff;font-weight:600;font-size:12px}
code,pre{font-family:"DejaVu Sans Mono",monospace;font-size:12px}pre{background:#f5f5f5;padding:8px;white-space:pre-wrap;word-break:break-all}
.check{page-break-inside:avoid;break-inside:avoid;margin-bottom:16px}.muted{color:#757575}
.checklist li{list-style:none;margin:4px 0}.box{display:inline-block;width:14px;font-weight:700}
.signoff{border:1px solid #999;padding:12px;page-break-inside:avoid;break-inside:avoid}.line{display:inline-block;border-bottom:1px solid #333;min-width:260px;height:18px}
svg.chart{max-width:100%;height:auto}
@page{size:A4;margin:14mm}
@media print{body{margin:0;max-width:none;font-size:11px}a{color:inherit;text-decoration:none}.noprint{display:none}h2{page-break-after:avoid;break-after:avoid}tr{page-break-inside:avoid;break-inside:avoid}.state{border:1px solid #000;-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"#;

/// A coloured cell for a state or status.
pub fn badge(state: &str) -> String {
    format!(
        r#"<span class="state state-{s}" style="background:{}">{s}</span>"#,
        colour(state),
        s = escape(state)
    )
}

/// The instants a report's charts span: the watch's start to its end (or,
/// while it runs, to the latest of the last value and `now`).
pub fn range_of(r: &Report, now: Millis) -> (Millis, Millis) {
    let from = parse_time(&r.release.started_at).unwrap_or(now);
    let last = r
        .checks
        .iter()
        .filter_map(|c| c.points.last().map(|p| p.ms))
        .max()
        .unwrap_or(from);
    let to = match r.release.ended_at.as_deref().and_then(parse_time) {
        Some(end) => end.max(last),
        None => now.max(last),
    };
    (from, to.max(from + 1))
}

/// A check's chart: its values against its thresholds, its decisions marked.
pub fn check_chart(c: &CheckSection, range: (Millis, Millis), size: (u32, u32)) -> String {
    let points: Vec<_> = c.points.iter().map(|p| (p.ms, p.value)).collect();
    let lines: Vec<Line> = c
        .thresholds
        .iter()
        .flat_map(|t| {
            [t.above, t.below].into_iter().flatten().map(|value| Line {
                level: t.level,
                value,
            })
        })
        .collect();
    let marks: Vec<Mark> = c
        .decisions
        .iter()
        .filter_map(|d| {
            at_ms(d).map(|at| Mark {
                at,
                level: decision_level(d),
            })
        })
        .collect();
    chart::svg(
        &format!("{}: values and thresholds", c.name),
        &points,
        &lines,
        &marks,
        range,
        size,
    )
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn evidence_html(d: &Value) -> String {
    extra_fields(d, &DECISION_FIELDS)
        .into_iter()
        .map(|(k, v)| format!("<code>{}</code>: {}", escape(&k), escape(&v)))
        .collect::<Vec<_>>()
        .join("<br>")
}

/// A table of decisions: the check's column when `with_check`, the
/// evidence column when any decision carries fields beyond the known ones.
fn decision_table(o: &mut String, decisions: &[Value], with_check: bool) {
    let with_evidence = decisions
        .iter()
        .any(|d| !extra_fields(d, &DECISION_FIELDS).is_empty());
    let _ = write!(
        o,
        "<table class=\"timeline\"><tr><th>At</th>{}<th>Action</th><th>Level</th><th>Reason</th>{}</tr>",
        if with_check { "<th>Check</th>" } else { "" },
        if with_evidence { "<th>Evidence</th>" } else { "" }
    );
    for d in decisions {
        let _ = write!(o, "<tr><td>{}</td>", escape(s(d, "at")));
        if with_check {
            let _ = write!(o, "<td>{}</td>", escape(s(d, "check")));
        }
        let _ = write!(
            o,
            "<td>{}</td><td>{}</td><td>{}</td>",
            escape(s(d, "action")),
            escape(s(d, "level")),
            escape(s(d, "reason"))
        );
        if with_evidence {
            let _ = write!(o, "<td>{}</td>", evidence_html(d));
        }
        o.push_str("</tr>");
    }
    o.push_str("</table>");
}

/// Renders the report as a complete HTML document.
pub fn render(r: &Report, now: Millis) -> String {
    let h = &r.release;
    let mut o = String::new();
    let title = format!(
        "Post-release report: {} {} ({})",
        h.service, h.version, h.environment
    );
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body>",
        escape(&title)
    );
    let _ = write!(o, "<h1>{}</h1><table class=\"header\">", escape(&title));
    let mut row = |k: &str, v: String| {
        let _ = write!(o, "<tr><th>{k}</th><td>{v}</td></tr>");
    };
    row("Release", escape(&h.id));
    row("Service", escape(&h.service));
    row("Environment", escape(&h.environment));
    row("Version", escape(&h.version));
    row(
        "Previous version",
        escape(h.previous_version.as_deref().unwrap_or("-")),
    );
    row(
        "Deployed by",
        if h.deployed_by.is_empty() {
            "-".into()
        } else {
            h.deployed_by
                .iter()
                .map(|(k, v)| format!("{}: {}", escape(k), escape(&show(v))))
                .collect::<Vec<_>>()
                .join("<br>")
        },
    );
    row("Started", escape(&h.started_at));
    row("Ended", escape(h.ended_at.as_deref().unwrap_or("-")));
    row("Final status", badge(&h.status));
    if let Some(score) = h.health_score {
        row("Health score", format!("{} / 100", format_value(score)));
    }
    row("Report generated", escape(&r.generated_at));
    if let Some(a) = h.annotations.as_object().filter(|a| !a.is_empty()) {
        row(
            "Annotations",
            a.iter()
                .map(|(k, v)| format!("<code>{}</code>: {}", escape(k), escape(&show(v))))
                .collect::<Vec<_>>()
                .join("<br>"),
        );
    }
    o.push_str("</table>");

    o.push_str("<h2>Checks</h2>");
    let range = range_of(r, now);
    for c in &r.checks {
        let _ = write!(
            o,
            "<div class=\"check\" id=\"check-{}\"><h3>{} {}</h3>",
            escape(&c.name),
            escape(&c.name),
            badge(&c.state)
        );
        let _ = write!(
            o,
            "<div class=\"muted\">level {} · worst during the watch {} · last value {}{}</div>",
            escape(&c.level),
            c.worst_level,
            c.value.map(format_value).unwrap_or_else(|| "-".into()),
            c.source
                .as_deref()
                .map(|s| format!(" · source {}", escape(s)))
                .unwrap_or_default()
        );
        if let Some(q) = &c.query {
            let _ = write!(o, "<pre>{}</pre>", escape(q.trim()));
        }
        if let Some(p) = &c.probe {
            let _ = write!(o, "<div>Probe: <code>{}</code></div>", escape(p));
        }
        if !c.thresholds.is_empty() {
            let t: Vec<String> = c
                .thresholds
                .iter()
                .map(|t| {
                    format!(
                        "<span style=\"color:{}\">{}</span>: {}",
                        colour(t.level.as_str()),
                        t.level,
                        escape(&t.rule)
                    )
                })
                .collect();
            let _ = write!(o, "<div>Thresholds: {}</div>", t.join(" · "));
        }
        o.push_str(&check_chart(c, range, (720, 160)));
        if !c.decisions.is_empty() {
            decision_table(&mut o, &c.decisions, false);
        }
        o.push_str("</div>");
    }

    o.push_str("<h2>Decision timeline</h2>");
    if r.decisions.is_empty() {
        o.push_str("<p class=\"muted\">No decisions recorded.</p>");
    } else {
        decision_table(&mut o, &r.decisions, true);
    }

    o.push_str("<h2>Notifications</h2>");
    if r.notifications.is_empty() {
        o.push_str("<p class=\"muted\">No notifications.</p>");
    } else {
        o.push_str("<table class=\"notifications\"><tr><th>Channel</th><th>Event</th><th>Severity</th><th>Created</th><th>Delivered</th><th>Attempts</th><th>Details</th></tr>");
        for n in &r.notifications {
            let status = s(n, "status");
            let delivered = if status == "sent" {
                format!("{} {}", badge("sent"), escape(s(n, "sent_at")))
            } else {
                badge(status)
            };
            let details = extra_fields(
                n,
                &[
                    "key",
                    "notifier",
                    "event",
                    "severity",
                    "status",
                    "attempts",
                    "created_at",
                    "sent_at",
                ],
            )
            .into_iter()
            .map(|(k, v)| format!("{}: {}", escape(&k), escape(&v)))
            .collect::<Vec<_>>()
            .join("<br>");
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{delivered}</td><td>{}</td><td>{details}</td></tr>",
                escape(s(n, "notifier")),
                escape(s(n, "event")),
                escape(s(n, "severity")),
                escape(s(n, "created_at")),
                n.get("attempts").map(show).unwrap_or_default()
            );
        }
        o.push_str("</table>");
    }

    o.push_str("<h2>Rollback</h2>");
    match &r.rollback {
        None => o.push_str("<p class=\"muted\">No rollback was requested.</p>"),
        Some(rb) => {
            let command = rb
                .get("command")
                .and_then(Value::as_array)
                .map(|c| c.iter().map(show).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|| "-".into());
            let _ = write!(
                o,
                "<table class=\"rollback\"><tr><th>State</th><td>{} ({})</td></tr><tr><th>Reason</th><td>{}</td></tr><tr><th>Command</th><td><code>{}</code></td></tr><tr><th>Exit status</th><td>{}</td></tr><tr><th>Requested</th><td>{}</td></tr><tr><th>Started</th><td>{}</td></tr><tr><th>Finished</th><td>{}</td></tr><tr><th>Duration</th><td>{}</td></tr></table>",
                badge(s(rb, "state")),
                escape(s(rb, "trigger")),
                escape(s(rb, "reason")),
                escape(&command),
                rb.get("exit_code").map(show).unwrap_or_else(|| "-".into()),
                escape(s(rb, "requested_at")),
                escape(s(rb, "started_at")),
                escape(s(rb, "finished_at")),
                rb.get("duration_ms")
                    .and_then(Value::as_i64)
                    .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
                    .unwrap_or_else(|| "-".into())
            );
            if let Some(out) = rb
                .get("output_excerpt")
                .and_then(Value::as_str)
                .filter(|x| !x.trim().is_empty())
            {
                let _ = write!(
                    o,
                    "<div>Output (excerpt):</div><pre>{}</pre>",
                    escape(out.trim_end())
                );
            }
        }
    }

    o.push_str("<h2>Post-deployment checklist</h2><ul class=\"checklist\">");
    for i in &r.checklist {
        let _ = write!(
            o,
            "<li class=\"item-{}\"><span class=\"box\">{}</span> <strong>{}</strong> <span class=\"muted\">({})</span> {}<br><span class=\"muted\">{}</span></li>",
            i.outcome,
            if i.ticked() { "☑" } else { "☐" },
            escape(i.item),
            escape(i.section),
            badge(i.outcome),
            escape(&i.evidence)
        );
    }
    o.push_str("</ul>");

    let _ = write!(
        o,
        "<h2>Sign-off</h2><div class=\"signoff\"><p>Verdict: <strong>{}</strong></p><p>Verified by release-guardian:</p><ul>",
        escape(&r.sign_off.verdict)
    );
    for v in &r.sign_off.verified {
        let _ = write!(o, "<li>{}</li>", escape(v));
    }
    o.push_str("</ul><p>Signed off by: <span class=\"line\"></span> &nbsp; Date: <span class=\"line\" style=\"min-width:120px\"></span></p></div></body></html>\n");
    o
}
