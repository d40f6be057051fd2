//! What a decision judged, as the JSON `evidence` it carries (beside its
//! `observed_at`): the query as sent, the condition, the window and step,
//! the values around the transition (with their baseline), and whatever the
//! check's judgment added (traffic floor, comparison, burn rates). Also the
//! release's health score and the rollback it triggers under
//! `min_health_score`.

use super::judgments::{finite, Judged};
use super::tick::RollbackTrigger;
use crate::config::{CheckSpec, Service};
use crate::engine::{health, Sample, Transition};
use crate::model::{format_value, rfc3339, CheckRecord, Decision, Level, Millis};
use serde_json::{json, Map, Value};

/// Grid points either side of a transition shown in its evidence.
const AROUND: usize = 3;

/// What every decision of one check at one tick shares.
pub struct Base {
    fields: Map<String, Value>,
    step: Millis,
}

impl Base {
    pub fn new(spec: &CheckSpec, judged: &Judged, step: Millis) -> Self {
        let mut fields = Map::new();
        if let Some(q) = &judged.query {
            fields.insert("query".into(), json!(q));
            fields.insert("step".into(), json!(duration(step)));
        }
        if let Some(p) = &spec.probe {
            fields.insert("probe".into(), json!(p));
        }
        if spec.rule.recover_after > 1 {
            fields.insert("recover_after".into(), json!(spec.rule.recover_after));
        }
        fields.extend(judged.evidence.clone());
        Self { fields, step }
    }

    /// Evidence of an inconclusive decision.
    pub fn inconclusive(&self, reason: &str) -> Value {
        let mut m = self.fields.clone();
        m.insert("reason".into(), json!(reason));
        Value::Object(m)
    }

    /// Evidence of a level change: the condition of the level entered (or
    /// left) and the samples around it, from the series that made it.
    pub fn transition(
        &self,
        spec: &CheckSpec,
        t: &Transition,
        series: &[(String, Vec<Sample>)],
    ) -> Value {
        let mut m = self.fields.clone();
        let level = if t.to > t.from { t.to } else { t.from };
        if let Some(c) = spec.rule.condition(level) {
            m.insert(
                "condition".into(),
                json!({ "level": level, "rule": c.describe() }),
            );
        }
        m.insert("value".into(), json!(finite(t.value)));
        // The series whose sample at the instant carries the transition's value.
        let found = series.iter().find_map(|(key, s)| {
            let i = s.partition_point(|x| x.ts < t.at);
            s.get(i)
                .filter(|x| {
                    x.ts == t.at && (x.value == t.value || (x.value.is_nan() && t.value.is_nan()))
                })
                .map(|_| (key, s, i))
        });
        if let Some((key, s, i)) = found {
            let lo = i.saturating_sub(AROUND);
            let hi = (i + AROUND + 1).min(s.len());
            let values: Vec<Value> = s[lo..hi]
                .iter()
                .map(|x| {
                    let mut v = json!({ "at": rfc3339(x.ts), "value": finite(x.value) });
                    if !x.base.is_nan() {
                        v["baseline"] = json!(finite(x.base));
                    }
                    if !x.ok {
                        v["failed"] = json!(true);
                    }
                    v
                })
                .collect();
            m.insert("series".into(), json!(key));
            m.insert("values".into(), Value::Array(values));
            if let (Some(first), Some(last)) = (s.first(), s.last()) {
                m.insert(
                    "window".into(),
                    json!({ "from": rfc3339(first.ts), "to": rfc3339(last.ts) }),
                );
            }
        }
        let _ = self.step;
        Value::Object(m)
    }
}

fn duration(ms: Millis) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// The health score of a service's checks as recorded (weights from the
/// service's checks).
pub fn score(service: &Service, checks: &[CheckRecord]) -> Option<f64> {
    health::health_score(checks.iter().filter_map(|c| {
        let spec = service.checks.iter().find(|s| s.name == c.name)?;
        Some((c.state, spec.judgment.weight))
    }))
}

/// The name the health score goes by in the timeline.
pub const HEALTH_SCORE: &str = "health_score";

/// Under `min_health_score`: when the score falls below it at this tick
/// (and was not below it at the previous one), the rollback trigger and its
/// decision; when it comes back, a decision. `previous`: the checks as the
/// previous tick left them.
pub fn health(
    service: &Service,
    previous: &[CheckRecord],
    checks: &[CheckRecord],
    now: Millis,
) -> (Option<RollbackTrigger>, Option<Decision>) {
    let Some(min) = service.min_health_score else {
        return (None, None);
    };
    let before = score(service, previous).is_some_and(|s| s < min);
    let Some(now_score) = score(service, checks) else {
        return (None, None);
    };
    let observed = checks
        .iter()
        .filter_map(|c| c.evaluated_until)
        .max()
        .unwrap_or(now);
    let states: Map<String, Value> = checks
        .iter()
        .map(|c| {
            let w = service
                .checks
                .iter()
                .find(|s| s.name == c.name)
                .map_or(1.0, |s| s.judgment.weight);
            (
                c.name.clone(),
                json!({ "state": c.state.as_str(), "weight": w }),
            )
        })
        .collect();
    let evidence = json!({ "health_score": now_score, "min_health_score": min, "checks": states });
    let below = now_score < min;
    if below && !before {
        let reason = format!(
            "health score {}/100 is below min_health_score {} (ok 1, warning 0.5, critical and rollback 0, by weight)",
            format_value(now_score),
            format_value(min)
        );
        let decision = Decision::level_changed(now, HEALTH_SCORE, Level::Rollback, reason.clone())
            .with_evidence(observed, Some(evidence));
        let trigger = RollbackTrigger {
            at: observed,
            check: HEALTH_SCORE.into(),
            value: now_score,
            reason,
            recovered_at: None,
        };
        (Some(trigger), Some(decision))
    } else if before && !below {
        let reason = format!(
            "health score {}/100 is back at or above min_health_score {}",
            format_value(now_score),
            format_value(min)
        );
        (
            None,
            Some(
                Decision::level_changed(now, HEALTH_SCORE, Level::Ok, reason)
                    .with_evidence(observed, Some(evidence)),
            ),
        )
    } else {
        (None, None)
    }
}
