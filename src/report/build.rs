//! The post-release report as data ([`Report`]): what the JSON format is
//! (documented in docs/api.md, stable: fields are only ever added) and what
//! the Markdown and HTML renderings show.
//!
//! It is built from the release object exactly as the API answers it (a
//! JSON value), so fields other parts of the daemon add to decisions,
//! notifications or the rollback (evidence, delivery details, a health
//! score) reach the report without changes here: such fields are carried
//! as they are and rendered generically. What the release object does not
//! hold comes beside it in [`ReportInput`]: each check's resolved query and
//! thresholds, its charted values, the rollback command.

use crate::config::CheckSpec;
use crate::model::{parse_time, rfc3339, CheckPoint, Level, Millis};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The version of the report's JSON shape.
pub const REPORT_VERSION: u32 = 1;

/// Longest rollback output excerpt in a report (characters, the end kept).
pub const OUTPUT_EXCERPT_CHARS: usize = 2000;

/// Annotation keys that say who or what deployed a release.
pub const DEPLOYER_KEYS: [&str; 14] = [
    "deployed_by",
    "actor",
    "user",
    "author",
    "triggered_by",
    "sender",
    "tool",
    "pipeline",
    "commit",
    "sha",
    "revision",
    "ref",
    "run_url",
    "url",
];

/// What a report is built from.
#[derive(Debug, Clone)]
pub struct ReportInput {
    /// The release object (`GET /v1/releases/{id}`).
    pub release: Value,
    /// The service's checks as configured now, queries resolved.
    pub checks: Vec<CheckInfo>,
    /// The charted values ([`crate::store::Store::check_points`]).
    pub points: Vec<CheckPoint>,
    /// The service's rollback hook, if one is configured.
    pub rollback_command: Option<Vec<String>>,
    pub generated_at: Millis,
}

/// A configured check: where its values come from and its thresholds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckInfo {
    pub name: String,
    pub source: String,
    /// The query with the release's variables filled in (query checks).
    pub query: Option<String>,
    /// The probe's name and URL (probe checks).
    pub probe: Option<String>,
    pub thresholds: Vec<Threshold>,
}

/// One level's condition.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Threshold {
    pub level: Level,
    pub above: Option<f64>,
    pub below: Option<f64>,
    pub for_seconds: f64,
    pub failures: Option<u32>,
    /// As people read it: `above 0.05 for 5m`.
    pub rule: String,
}

impl CheckInfo {
    /// `query` is the check's query as sent to its source; `probe` names the
    /// probe (and its URL).
    pub fn new(spec: &CheckSpec, query: Option<String>, probe: Option<String>) -> Self {
        let thresholds = spec
            .rule
            .levels()
            .into_iter()
            .filter_map(|(level, c)| {
                c.map(|c| Threshold {
                    level,
                    above: c.above,
                    below: c.below,
                    for_seconds: c.for_ms as f64 / 1000.0,
                    failures: c.failures,
                    rule: c.describe(),
                })
            })
            .collect();
        Self {
            name: spec.name.clone(),
            source: spec.source.name.to_string(),
            query,
            probe,
            thresholds,
        }
    }
}

/// The post-release report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub report_version: u32,
    pub generated_at: String,
    pub release: Header,
    pub checks: Vec<CheckSection>,
    /// The whole decision timeline, as the release object has it.
    pub decisions: Vec<Value>,
    pub notifications: Vec<Value>,
    /// Per notifier: how its messages fared (the release object's
    /// `deliveries`).
    pub deliveries: Vec<Value>,
    pub rollback: Option<Value>,
    pub checklist: Vec<ChecklistItem>,
    pub sign_off: SignOff,
}

/// Who, what and when.
#[derive(Debug, Clone, Serialize)]
pub struct Header {
    pub id: String,
    pub service: String,
    pub environment: String,
    pub version: String,
    pub previous_version: Option<String>,
    pub status: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub next_check_at: Option<String>,
    /// The annotations that say who or what deployed it ([`DEPLOYER_KEYS`]).
    pub deployed_by: BTreeMap<String, Value>,
    pub annotations: Value,
    /// The release's health score out of 100, where the release object has one.
    pub health_score: Option<f64>,
    pub acked: bool,
}

/// One check: its source, thresholds, values over the watch and changes.
#[derive(Debug, Clone, Serialize)]
pub struct CheckSection {
    pub name: String,
    /// `null` for a check no longer configured.
    pub source: Option<String>,
    pub query: Option<String>,
    pub probe: Option<String>,
    pub state: String,
    pub level: String,
    pub value: Option<f64>,
    pub thresholds: Vec<Threshold>,
    pub points: Vec<Point>,
    /// The highest level the check reached during the watch.
    pub worst_level: Level,
    /// Every decision about this check (level changes with their evidence).
    pub decisions: Vec<Value>,
}

/// One charted value.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub at: String,
    /// `null`: nothing usable was observed (a failed probe).
    pub value: Option<f64>,
    #[serde(skip)]
    pub ms: Millis,
}

/// One item of the post-deployment checklist.
#[derive(Debug, Clone, Serialize)]
pub struct ChecklistItem {
    /// The seeds' checklist heading it mirrors (`health checks`, ...).
    pub section: &'static str,
    pub item: &'static str,
    /// `passed`, `failed` or `not_verified` (nothing the guardian watched
    /// decides it, or the watch is still running).
    pub outcome: &'static str,
    pub evidence: String,
}

impl ChecklistItem {
    pub fn ticked(&self) -> bool {
        self.outcome == "passed"
    }
}

/// What the guardian verified, and room for a person's signature.
#[derive(Debug, Clone, Serialize)]
pub struct SignOff {
    pub verdict: String,
    pub verified: Vec<String>,
    /// Always `null`: for a person to fill in.
    pub signed_by: Option<String>,
    pub signed_at: Option<String>,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

fn opt_text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn array(v: &Value, key: &str) -> Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// When a timeline entry happened, in milliseconds.
pub fn at_ms(v: &Value) -> Option<Millis> {
    v.get("at").and_then(Value::as_str).and_then(parse_time)
}

/// The level a decision moved its check to, if it names one.
pub fn decision_level(d: &Value) -> Option<Level> {
    d.get("level")
        .and_then(Value::as_str)
        .and_then(Level::parse)
}

/// Builds the report.
pub fn build(input: ReportInput) -> Report {
    let r = &input.release;
    let annotations = r.get("annotations").cloned().unwrap_or(Value::Null);
    // Annotations a deploy script set, then what a deploy tool's webhook
    // recorded under `deploy` (its actor, commit, link...), which fills
    // the names the script did not set.
    let deployed_by = annotations
        .as_object()
        .map(|a| {
            let webhook = a.get("deploy").and_then(Value::as_object);
            DEPLOYER_KEYS
                .iter()
                .filter_map(|k| {
                    a.get(*k)
                        .or_else(|| webhook.and_then(|w| w.get(*k)))
                        .map(|v| (k.to_string(), v.clone()))
                })
                .collect()
        })
        .unwrap_or_default();
    let header = Header {
        id: text(r, "id"),
        service: text(r, "service"),
        environment: text(r, "environment"),
        version: text(r, "version"),
        previous_version: opt_text(r, "previous_version"),
        status: text(r, "status"),
        started_at: text(r, "started_at"),
        ended_at: opt_text(r, "ended_at"),
        next_check_at: opt_text(r, "next_check_at"),
        deployed_by,
        annotations,
        health_score: r.get("health_score").and_then(Value::as_f64),
        acked: r.get("acked").and_then(Value::as_bool).unwrap_or(false),
    };
    let decisions = array(r, "decisions");
    let checks = check_sections(&input, &decisions);
    let rollback = r
        .get("rollback")
        .filter(|v| v.is_object())
        .map(|rb| rollback_section(rb, input.rollback_command.as_deref()));
    let checklist = checklist(&header, &checks, rollback.as_ref());
    let sign_off = sign_off(&header, &checks, &checklist);
    Report {
        report_version: REPORT_VERSION,
        generated_at: rfc3339(input.generated_at),
        release: header,
        checks,
        decisions,
        notifications: array(r, "notifications"),
        deliveries: array(r, "deliveries"),
        rollback,
        checklist,
        sign_off,
    }
}

fn check_sections(input: &ReportInput, decisions: &[Value]) -> Vec<CheckSection> {
    let states = array(&input.release, "checks");
    // The configured checks in their order, then any the release has that
    // are no longer configured.
    let mut names: Vec<String> = input.checks.iter().map(|c| c.name.clone()).collect();
    for c in &states {
        let n = text(c, "name");
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let info = input.checks.iter().find(|c| c.name == name);
            let state = states.iter().find(|c| text(c, "name") == name);
            let mine: Vec<Value> = decisions
                .iter()
                .filter(|d| d.get("check").and_then(Value::as_str) == Some(name.as_str()))
                .cloned()
                .collect();
            let level = state.map(|s| text(s, "level")).unwrap_or_default();
            let worst_level = mine
                .iter()
                .filter_map(decision_level)
                .chain(Level::parse(&level))
                .max()
                .unwrap_or(Level::Ok);
            CheckSection {
                source: info.map(|i| i.source.clone()),
                query: info.and_then(|i| i.query.clone()),
                probe: info.and_then(|i| i.probe.clone()),
                state: state
                    .map(|s| text(s, "state"))
                    .unwrap_or_else(|| "pending".into()),
                level: if level.is_empty() { "ok".into() } else { level },
                value: state.and_then(|s| s.get("value")).and_then(Value::as_f64),
                thresholds: info.map(|i| i.thresholds.clone()).unwrap_or_default(),
                points: input
                    .points
                    .iter()
                    .filter(|p| p.check == name)
                    .map(|p| Point {
                        at: rfc3339(p.at),
                        value: p.value,
                        ms: p.at,
                    })
                    .collect(),
                worst_level,
                decisions: mine,
                name,
            }
        })
        .collect()
}

fn rollback_section(rb: &Value, command: Option<&[String]>) -> Value {
    let mut out: Map<String, Value> = rb.as_object().cloned().unwrap_or_default();
    let duration = match (
        rb.get("started_at")
            .and_then(Value::as_str)
            .and_then(parse_time),
        rb.get("finished_at")
            .and_then(Value::as_str)
            .and_then(parse_time),
    ) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    out.insert("command".into(), serde_json::json!(command));
    out.insert("duration_ms".into(), serde_json::json!(duration));
    let excerpt = rb.get("output").and_then(Value::as_str).map(|o| {
        let chars: Vec<char> = o.chars().collect();
        if chars.len() > OUTPUT_EXCERPT_CHARS {
            let tail: String = chars[chars.len() - OUTPUT_EXCERPT_CHARS..].iter().collect();
            format!("…{tail}")
        } else {
            o.to_string()
        }
    });
    out.insert("output_excerpt".into(), serde_json::json!(excerpt));
    Value::Object(out)
}

/// Which checklist heading a check speaks to, by its name, source and query.
fn kind_of(c: &CheckSection) -> Option<&'static str> {
    let name = c.name.to_ascii_lowercase();
    let query = c.query.clone().unwrap_or_default().to_ascii_lowercase();
    let source = c.source.as_deref().unwrap_or("");
    if source == "loki" || name.contains("log") || name.contains("signature") {
        Some("logs")
    } else if source == "probe" || name.contains("health") || name.contains("live") {
        Some("health checks")
    } else if name.contains("latency")
        || name.contains("duration")
        || name.contains("p95")
        || name.contains("p99")
        || query.contains("histogram_quantile")
        || query.contains("duration")
    {
        Some("latency")
    } else if name.contains("error") || query.contains("5..") || name.contains("availability") {
        Some("error rate")
    } else {
        None
    }
}

fn item_for(
    section: &'static str,
    item: &'static str,
    checks: &[&CheckSection],
    watching: bool,
) -> ChecklistItem {
    if checks.is_empty() {
        return ChecklistItem {
            section,
            item,
            outcome: "not_verified",
            evidence: format!("no {section} check is configured for this service"),
        };
    }
    let describe = |c: &CheckSection| {
        let value = c
            .value
            .map(crate::model::format_value)
            .unwrap_or_else(|| "-".into());
        format!(
            "{}: now {}, last value {value}, worst level during the watch {} ({} values)",
            c.name,
            c.state,
            c.worst_level,
            c.points.len()
        )
    };
    let bad: Vec<&&CheckSection> = checks
        .iter()
        .filter(|c| c.worst_level >= Level::Critical)
        .collect();
    let unjudged: Vec<&&CheckSection> = checks
        .iter()
        .filter(|c| c.state == "pending" || (c.state == "inconclusive" && c.points.is_empty()))
        .collect();
    let (outcome, shown) = if !bad.is_empty() {
        ("failed", bad)
    } else if !unjudged.is_empty() {
        ("not_verified", unjudged)
    } else if watching {
        ("not_verified", checks.iter().collect())
    } else {
        ("passed", checks.iter().collect())
    };
    let mut evidence = shown
        .iter()
        .map(|c| describe(c))
        .collect::<Vec<_>>()
        .join("; ");
    if outcome == "not_verified" && watching && unjudged_is_empty(checks) {
        evidence = format!("the watch is still running: {evidence}");
    }
    ChecklistItem {
        section,
        item,
        outcome,
        evidence,
    }
}

fn unjudged_is_empty(checks: &[&CheckSection]) -> bool {
    checks.iter().all(|c| c.state != "pending")
}

fn checklist(
    header: &Header,
    checks: &[CheckSection],
    rollback: Option<&Value>,
) -> Vec<ChecklistItem> {
    let watching = matches!(header.status.as_str(), "watching" | "rolling_back");
    let of = |k: &str| -> Vec<&CheckSection> {
        checks.iter().filter(|c| kind_of(c) == Some(k)).collect()
    };
    let mut items = vec![
        item_for(
            "health checks",
            "Health check endpoints return success",
            &of("health checks"),
            watching,
        ),
        item_for(
            "error rate",
            "Error rate within SLO",
            &of("error rate"),
            watching,
        ),
        item_for(
            "latency",
            "Request latency within SLO",
            &of("latency"),
            watching,
        ),
        item_for(
            "logs",
            "No new errors in application logs",
            &of("logs"),
            watching,
        ),
    ];
    let reached: Vec<&CheckSection> = checks
        .iter()
        .filter(|c| c.worst_level == Level::Rollback)
        .collect();
    let criteria = if reached.is_empty() {
        ChecklistItem {
            section: "rollback criteria",
            item: "No rollback criterion was met",
            outcome: if watching { "not_verified" } else { "passed" },
            evidence: format!(
                "no check reached its rollback level{} ({} checks)",
                if watching { " so far" } else { "" },
                checks.len()
            ),
        }
    } else {
        ChecklistItem {
            section: "rollback criteria",
            item: "No rollback criterion was met",
            outcome: "failed",
            evidence: reached
                .iter()
                .map(|c| {
                    let when = c
                        .decisions
                        .iter()
                        .find(|d| decision_level(d) == Some(Level::Rollback))
                        .map(|d| format!("{} at {}", text(d, "reason"), text(d, "at")))
                        .unwrap_or_else(|| format!("{} reached rollback", c.name));
                    when
                })
                .collect::<Vec<_>>()
                .join("; "),
        }
    };
    items.push(criteria);
    if let Some(rb) = rollback {
        let state = text(rb, "state");
        let exit = rb
            .get("exit_code")
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into());
        items.push(ChecklistItem {
            section: "rollback criteria",
            item: "The rollback completed",
            outcome: match state.as_str() {
                "succeeded" => "passed",
                "failed" | "timed_out" => "failed",
                _ => "not_verified",
            },
            evidence: format!(
                "rollback {state} ({}), exit code {exit}: {}",
                text(rb, "trigger"),
                text(rb, "reason")
            ),
        });
    }
    let window = match header.status.as_str() {
        "verified" => ChecklistItem {
            section: "monitoring",
            item: "Monitored for the whole watch window",
            outcome: "passed",
            evidence: format!(
                "watched from {} to {}",
                header.started_at,
                header.ended_at.as_deref().unwrap_or("?")
            ),
        },
        "watching" => ChecklistItem {
            section: "monitoring",
            item: "Monitored for the whole watch window",
            outcome: "not_verified",
            evidence: format!(
                "watching since {}; next check {}",
                header.started_at,
                header.next_check_at.as_deref().unwrap_or("-")
            ),
        },
        other => ChecklistItem {
            section: "monitoring",
            item: "Monitored for the whole watch window",
            outcome: "not_verified",
            evidence: format!(
                "the watch ended early ({other}) at {}",
                header.ended_at.as_deref().unwrap_or("?")
            ),
        },
    };
    items.push(window);
    items
}

fn sign_off(header: &Header, checks: &[CheckSection], checklist: &[ChecklistItem]) -> SignOff {
    let verdict = match header.status.as_str() {
        "verified" => "verified: the watch window ended with no rollback criterion met",
        "watching" => "in progress: the guardian is still watching this release",
        "rolling_back" => "rolling back",
        "rolled_back" => "rolled back: a rollback criterion was met and the rollback succeeded",
        "rollback_failed" => "rollback failed: a person must act",
        "aborted" => "aborted: the watch was stopped by hand",
        "superseded" => "superseded: a newer release replaced this one during the watch",
        _ => "unknown",
    };
    let mut verified: Vec<String> = checks
        .iter()
        .map(|c| {
            format!(
                "{}: {} ({} values charted, worst level {})",
                c.name,
                c.state,
                c.points.len(),
                c.worst_level
            )
        })
        .collect();
    let passed = checklist.iter().filter(|i| i.ticked()).count();
    verified.push(format!(
        "{passed} of {} checklist items passed",
        checklist.len()
    ));
    SignOff {
        verdict: verdict.to_string(),
        verified,
        signed_by: None,
        signed_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(status: &str, decisions: Value) -> ReportInput {
        ReportInput {
            release: serde_json::json!({
                "id": "r1", "service": "checkout", "environment": "production",
                "version": "v2", "previous_version": "v1", "status": status,
                "started_at": "2026-01-01T00:00:00Z", "ended_at": null,
                "next_check_at": "2026-01-01T00:05:00Z",
                "annotations": {"actor": "ci-bot", "other": 1}, "health_score": 87.5,
                "checks": [{"name": "p99_latency", "state": "ok", "level": "ok", "value": 0.2},
                           {"name": "gone", "state": "ok", "level": "ok", "value": 1}],
                "decisions": decisions, "notifications": [], "rollback": null
            }),
            checks: vec![CheckInfo {
                name: "p99_latency".into(),
                source: "prometheus".into(),
                query: Some("histogram_quantile(0.99, x)".into()),
                probe: None,
                thresholds: vec![],
            }],
            points: vec![
                CheckPoint {
                    check: "p99_latency".into(),
                    at: 1_767_225_660_000,
                    value: Some(0.9),
                },
                CheckPoint {
                    check: "p99_latency".into(),
                    at: 1_767_225_720_000,
                    value: None,
                },
            ],
            rollback_command: None,
            generated_at: 1_767_225_900_000,
        }
    }

    #[test]
    fn a_webhooks_deploy_record_fills_the_deployer() {
        let mut i = input("watching", serde_json::json!([]));
        i.release["annotations"] = serde_json::json!({
            "actor": "script",
            "deploy": {"tool": "github", "actor": "octocat", "commit": "f95f852"}
        });
        let r = build(i);
        assert_eq!(
            r.release.deployed_by["actor"], "script",
            "the script's own word first"
        );
        assert_eq!(r.release.deployed_by["commit"], "f95f852");
        assert_eq!(r.release.deployed_by["tool"], "github");
    }

    #[test]
    fn evidence_and_new_fields_show_without_changes_here() {
        let decisions = serde_json::json!([{
            "at": "2026-01-01T00:01:00Z", "check": "p99_latency", "level": "warning",
            "action": "level_changed", "reason": "p99_latency entered warning",
            "evidence": {"samples": 12, "baseline": 0.4}, "observed_at": "2026-01-01T00:00:59Z"
        }]);
        let r = build(input("watching", decisions));
        assert_eq!(r.release.deployed_by["actor"], "ci-bot");
        assert_eq!(r.release.health_score, Some(87.5));
        // Configured checks first, then those no longer configured.
        let names: Vec<&str> = r.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["p99_latency", "gone"]);
        assert_eq!(r.checks[0].worst_level, Level::Warning);
        assert_eq!(r.checks[1].source, None);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["decisions"][0]["evidence"]["samples"], 12);
        assert_eq!(json["checks"][0]["points"][1]["value"], Value::Null);

        let md = crate::report::markdown::render(&r);
        assert!(md.contains("evidence.samples: 12"), "{md}");
        assert!(md.contains("observed_at: 2026-01-01T00:00:59Z"), "{md}");
        assert!(md.contains("| Health score | 87.5 / 100 |"), "{md}");
        let html = crate::report::html::render(&r, 1_767_225_900_000);
        assert!(html.contains("<th>Evidence</th>"), "{html}");
        assert!(
            html.contains("<code>evidence.baseline</code>: 0.4"),
            "{html}"
        );

        // While watching nothing is passed yet; the latency item is judged
        // by the latency check; nothing decides the logs item.
        let outcome = |item: &str| {
            r.checklist
                .iter()
                .find(|i| i.item == item)
                .map(|i| i.outcome)
                .unwrap()
        };
        assert_eq!(outcome("Request latency within SLO"), "not_verified");
        assert_eq!(outcome("No rollback criterion was met"), "not_verified");
        assert_eq!(outcome("No new errors in application logs"), "not_verified");

        // Verified: the latency item passes, no evidence column without evidence.
        let r = build(input("verified", serde_json::json!([])));
        let outcome = |item: &str| {
            r.checklist
                .iter()
                .find(|i| i.item == item)
                .map(|i| i.outcome)
                .unwrap()
        };
        assert_eq!(outcome("Request latency within SLO"), "passed");
        assert_eq!(outcome("No rollback criterion was met"), "passed");
        assert_eq!(outcome("Monitored for the whole watch window"), "passed");
        let html = crate::report::html::render(&r, 1_767_225_900_000);
        assert!(!html.contains("<th>Evidence</th>"));
    }
}
