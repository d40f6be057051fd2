//! Unit tests of the judgments that live in the threshold loop itself:
//! `recover_after` (hysteresis), `worse_by` / `worse_by_ratio` against a
//! baseline, and `no_data: breach`. Time is the samples' own (injected).

use super::{evaluate, CheckTracker, Condition, Rule, Sample};
use crate::model::{Level, Millis};

const MIN: Millis = 60_000;

fn one(samples: Vec<Sample>) -> Vec<(String, Vec<Sample>)> {
    vec![("{}".to_string(), samples)]
}

/// A p95 latency every minute for two hours that crosses 0.5 s three times.
fn flapping() -> Vec<Sample> {
    (0..120)
        .map(|i| {
            let high = (10..20).contains(&i) || (40..45).contains(&i) || (70..80).contains(&i);
            Sample::ok(i * MIN, if high { 0.8 } else { 0.3 })
        })
        .collect()
}

fn critical_above(v: f64, recover_after: u32) -> Rule {
    Rule {
        critical: Some(Condition {
            above: Some(v),
            ..Default::default()
        }),
        recover_after,
        ..Default::default()
    }
}

#[test]
fn without_hysteresis_a_flapping_level_pages_every_time() {
    let mut t = CheckTracker::default();
    let out = evaluate(
        &critical_above(0.5, 0),
        &mut t,
        &one(flapping()),
        Some(MIN),
        0,
    );
    let ups = out
        .transitions
        .iter()
        .filter(|t| t.to == Level::Critical)
        .count();
    assert_eq!(ups, 3);
}

#[test]
fn recover_after_pages_once_then_once_on_recovery() {
    // 30 good minutes in a row before the level clears.
    let mut t = CheckTracker::default();
    let out = evaluate(
        &critical_above(0.5, 30),
        &mut t,
        &one(flapping()),
        Some(MIN),
        0,
    );
    let got: Vec<(Millis, Level)> = out.transitions.iter().map(|t| (t.at, t.to)).collect();
    // Up at minute 10; the last breach ends at minute 79; 30 good
    // evaluations later (minute 80 is the first) it clears at minute 109.
    assert_eq!(
        got,
        vec![(10 * MIN, Level::Critical), (109 * MIN, Level::Ok)]
    );
}

#[test]
fn hysteresis_carries_across_ticks_and_a_breach_restarts_the_count() {
    let r = critical_above(0.5, 3);
    let mut t = CheckTracker::default();
    let s = |m: i64, v: f64| Sample::ok(m * MIN, v);
    evaluate(
        &r,
        &mut t,
        &one(vec![s(0, 0.9), s(1, 0.1), s(2, 0.1)]),
        Some(MIN),
        0,
    );
    assert_eq!(
        t.level,
        Level::Critical,
        "two good evaluations are not three"
    );
    // A stored tracker resumes with its count.
    let mut t: CheckTracker = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
    let out = evaluate(
        &r,
        &mut t,
        &one(vec![s(3, 0.9), s(4, 0.1), s(5, 0.1)]),
        Some(MIN),
        3 * MIN,
    );
    assert!(
        out.transitions.is_empty(),
        "the breach at 3 restarted the count"
    );
    let out = evaluate(&r, &mut t, &one(vec![s(6, 0.1)]), Some(MIN), 6 * MIN);
    assert_eq!(out.transitions[0].at, 6 * MIN);
    assert_eq!(out.level, Level::Ok);
}

#[test]
fn worse_by_judges_against_the_baseline_not_the_level_alone() {
    let r = Rule {
        rollback: Some(Condition {
            above: Some(0.01),
            worse_by: Some(0.005),
            ..Default::default()
        }),
        ..Default::default()
    };
    let c = r.rollback.unwrap();
    // 1.5 % errors, already 1.5 % before: above the line, not a regression.
    assert!(!c.breached(&Sample::ok(0, 0.015).with_base(0.015), 0));
    // 1.5 % after 0.2 %: a regression.
    assert!(c.breached(&Sample::ok(0, 0.015).with_base(0.002), 0));
    // Worse by more than 0.005 but under the line: no.
    assert!(!c.breached(&Sample::ok(0, 0.009).with_base(0.001), 0));
    // No baseline at that instant: not judged worse.
    assert!(!c.breached(&Sample::ok(0, 0.5), 0));
    assert_eq!(
        c.describe(),
        "above 0.01 and worse_by 0.005 than the baseline"
    );

    // A ratio alone, on a `below` level: lower is worse.
    let ratio = Condition {
        below: Some(0.999),
        worse_by_ratio: Some(1.001),
        ..Default::default()
    };
    assert!(ratio.breached(&Sample::ok(0, 0.99).with_base(0.9995), 0));
    assert!(!ratio.breached(&Sample::ok(0, 0.99).with_base(0.9905), 0));
    let alone = Condition {
        worse_by_ratio: Some(2.0),
        ..Default::default()
    };
    assert!(alone.breached(&Sample::ok(0, 0.3).with_base(0.1), 0));
    assert!(!alone.breached(&Sample::ok(0, 0.15).with_base(0.1), 0));
    // From zero, any increase is an infinite ratio; zero to zero is none.
    assert!(alone.breached(&Sample::ok(0, 0.01).with_base(0.0), 0));
    assert!(!alone.breached(&Sample::ok(0, 0.0).with_base(0.0), 0));
}

#[test]
fn no_data_breach_holds_for_like_any_breach() {
    let r = Rule {
        rollback: Some(Condition {
            above: Some(1.0),
            for_ms: 2 * MIN,
            missing_breaches: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut t = CheckTracker::default();
    let missing: Vec<Sample> = (0..4).map(|i| Sample::failed(i * MIN)).collect();
    let out = evaluate(
        &r,
        &mut t,
        &[("no data".to_string(), missing)],
        Some(MIN),
        0,
    );
    assert_eq!(out.transitions.len(), 1);
    assert_eq!(
        (out.transitions[0].at, out.transitions[0].to),
        (2 * MIN, Level::Rollback)
    );
    // Data is back: the "no data" series vanishes and its level resolves.
    let out = evaluate(
        &r,
        &mut t,
        &one(vec![Sample::ok(4 * MIN, 0.1)]),
        Some(MIN),
        4 * MIN,
    );
    assert_eq!(out.level, Level::Ok);
}
