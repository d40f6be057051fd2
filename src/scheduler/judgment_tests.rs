//! Tick-level tests of the judgments: `no_data`, the evidence each decision
//! carries (with `observed_at`), and `min_health_score`. Readings are made
//! up; time is the samples' own.

use super::evidence;
use super::judgments::Judged;
use super::read::Reading;
use super::tick::{judge, TickOutput};
use crate::config::Service;
use crate::engine::Sample;
use crate::model::{CheckState, DecisionAction, Level, Millis, Release, ReleaseStatus};

fn service(dir: &std::path::Path, rules: &str, extra: &str) -> Service {
    std::fs::write(dir.join("rules.yaml"), rules).unwrap();
    let toml = format!("[store]\npath = \"g.db\"\n[sources.prometheus]\nurl = \"http://127.0.0.1:9/\"\n\n[[services]]\nname = \"checkout\"\nrules = [\"rules.yaml\"]\n{extra}");
    crate::config::load_str(&toml, &dir.join("guardian.toml"), &[])
        .expect("config")
        .services[0]
        .clone()
}

fn release() -> Release {
    Release {
        id: "r1".into(),
        service: "checkout".into(),
        environment: "production".into(),
        version: "v2".into(),
        previous_version: None,
        annotations: Default::default(),
        status: ReleaseStatus::Watching,
        started_at: 0,
        next_check_at: Some(1_000),
        ended_at: None,
        acked: false,
        superseded_by: None,
    }
}

fn judged(reading: Reading, no_data: bool) -> Judged {
    Judged {
        reading,
        query: Some("ratio{service=\"checkout\"}".into()),
        evidence: Default::default(),
        value: None,
        no_data,
    }
}

fn no_data(from: Millis, until: Millis) -> Judged {
    judged(
        Reading::Inconclusive {
            reason: "the query returned no data".into(),
            at: from,
            until: Some(until),
        },
        true,
    )
}

const RULES: &str = "checks:\n  - name: errors\n    source: prometheus\n    query: ratio\n    step: 1s\n    NO_DATA\n    rollback: { above: 5, for: 2s }\n";

#[test]
fn no_data_is_inconclusive_by_default_with_the_reason_and_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let s = service(dir.path(), &RULES.replace("NO_DATA", "weight: 1"), "");
    let mut out = TickOutput::default();
    let rec = judge(
        &mut out,
        &release(),
        &s.checks[0],
        None,
        no_data(1_000, 5_000),
        9_000,
    );
    assert_eq!(rec.state, CheckState::Inconclusive);
    assert_eq!(rec.evaluated_until, Some(5_000), "the interval is done");
    let d = &out.decisions[0];
    assert_eq!(d.action, DecisionAction::Inconclusive);
    assert_eq!((d.at, d.observed_at), (9_000, Some(1_000)));
    let e = d.evidence.as_ref().unwrap();
    assert_eq!(e["query"], "ratio{service=\"checkout\"}");
    assert!(e["reason"].as_str().unwrap().contains("no data"), "{e}");
}

#[test]
fn no_data_ok_is_good_news_and_breach_breaches_with_for() {
    let dir = tempfile::tempdir().unwrap();
    let ok = service(dir.path(), &RULES.replace("NO_DATA", "no_data: ok"), "");
    let mut out = TickOutput::default();
    let rec = judge(
        &mut out,
        &release(),
        &ok.checks[0],
        None,
        no_data(1_000, 5_000),
        9_000,
    );
    assert_eq!(rec.state, CheckState::Ok);
    assert!(out.decisions.is_empty());

    let breach = service(dir.path(), &RULES.replace("NO_DATA", "no_data: breach"), "");
    let mut out = TickOutput::default();
    let rec = judge(
        &mut out,
        &release(),
        &breach.checks[0],
        None,
        no_data(1_000, 5_000),
        9_000,
    );
    assert_eq!(rec.state, CheckState::Rollback);
    let d = &out.decisions[0];
    assert_eq!(
        (d.level, d.observed_at),
        (Some(Level::Rollback), Some(3_000)),
        "after `for: 2s`"
    );
    assert!(d.reason.contains("no data"), "{}", d.reason);
    let t = out.rollback.expect("a trigger");
    assert_eq!(t.at, 3_000);
}

#[test]
fn a_level_change_carries_what_it_judged() {
    let dir = tempfile::tempdir().unwrap();
    let s = service(dir.path(), &RULES.replace("NO_DATA", "weight: 1"), "");
    let samples: Vec<Sample> = [1.0, 1.0, 9.0, 9.0, 9.0, 9.0, 1.0, 1.0]
        .iter()
        .enumerate()
        .map(|(i, &v)| Sample::ok(i as Millis * 1_000 + 1_000, v).with_base(0.5))
        .collect();
    let reading = Reading::Series {
        series: vec![("{}".into(), samples)],
        step: Some(1_000),
        window_start: 1_000,
        until: Some(8_000),
        note: None,
    };
    let mut out = TickOutput::default();
    judge(
        &mut out,
        &release(),
        &s.checks[0],
        None,
        judged(reading, false),
        20_000,
    );
    let up = out
        .decisions
        .iter()
        .find(|d| d.level == Some(Level::Rollback))
        .unwrap();
    assert_eq!((up.at, up.observed_at), (20_000, Some(5_000)));
    let e = up.evidence.as_ref().unwrap();
    assert_eq!(e["condition"]["rule"], "above 5 for 2s");
    assert_eq!(e["value"], 9.0);
    assert_eq!(e["step"], "1s");
    let values = e["values"].as_array().unwrap();
    // Three points either side of the transition at 5 s.
    let at: Vec<&str> = values.iter().map(|v| v["at"].as_str().unwrap()).collect();
    assert_eq!(at.first(), Some(&"1970-01-01T00:00:02Z"));
    assert_eq!(at.last(), Some(&"1970-01-01T00:00:08Z"));
    assert_eq!(values[0]["baseline"], 0.5);
    assert_eq!(e["window"]["from"], "1970-01-01T00:00:01Z");
}

#[test]
fn the_health_score_rolls_back_once_when_it_falls_below_the_minimum() {
    let dir = tempfile::tempdir().unwrap();
    let rules = "checks:\n  - name: a\n    source: prometheus\n    query: a\n    weight: 3\n    warning: { above: 1 }\n  - name: b\n    source: prometheus\n    query: b\n    critical: { above: 1 }\n";
    let s = service(dir.path(), rules, "min_health_score = 95\n");
    let rec = |name: &str, state: CheckState| crate::model::CheckRecord {
        name: name.into(),
        state,
        level: Level::Ok,
        value: None,
        tracker: serde_json::Value::Null,
        evaluated_until: Some(4_000),
        updated_at: 4_000,
        logs: Vec::new(),
    };
    let healthy = [rec("a", CheckState::Ok), rec("b", CheckState::Ok)];
    let sick = [rec("a", CheckState::Ok), rec("b", CheckState::Critical)];
    assert_eq!(evidence::score(&s, &sick), Some(75.0));
    let (trigger, decision) = evidence::health(&s, &healthy, &sick, 5_000);
    let t = trigger.expect("below 95");
    assert_eq!(
        (t.check.as_str(), t.at, t.value),
        ("health_score", 4_000, 75.0)
    );
    let d = decision.unwrap();
    assert_eq!(
        (d.level, d.observed_at),
        (Some(Level::Rollback), Some(4_000))
    );
    assert_eq!(d.evidence.unwrap()["checks"]["a"]["weight"], 3.0);
    // Still below at the next tick: nothing new.
    assert!(matches!(
        evidence::health(&s, &sick, &sick, 6_000),
        (None, None)
    ));
    // Back up: a decision, no trigger.
    let (t, d) = evidence::health(&s, &sick, &healthy, 7_000);
    assert!(t.is_none());
    assert_eq!(d.unwrap().level, Some(Level::Ok));
    // Inconclusive checks are left out: 100 over the judged one.
    let unknown = [rec("a", CheckState::Ok), rec("b", CheckState::Inconclusive)];
    assert_eq!(evidence::score(&s, &unknown), Some(100.0));
}
