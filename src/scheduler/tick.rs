//! One tick of one watch: read every check's new samples, run the engine,
//! and turn what changed into decisions, messages and a rollback request.
//! Nothing is written here; the watch commits the result in one transaction.

use super::messages;
use super::read::{Reading, TickSources};
use crate::config::{CheckSpec, Service};
use crate::context::Context;
use crate::engine::{self, CheckTracker, Transition};
use crate::model::{
    format_value, CheckRecord, CheckState, Decision, DecisionAction, Level, Message, Millis,
    Release,
};
use crate::telemetry::StateLabels;
use futures_util::future::join_all;
use std::collections::{BTreeMap, HashMap};

/// The transition that reached the rollback level.
#[derive(Debug, Clone)]
pub struct RollbackTrigger {
    pub at: Millis,
    pub check: String,
    pub value: f64,
    pub reason: String,
}

/// What a tick produced.
#[derive(Debug, Default)]
pub struct TickOutput {
    pub checks: Vec<CheckRecord>,
    pub decisions: Vec<Decision>,
    pub messages: Vec<Message>,
    /// The first transition into the rollback level during this tick, if any.
    pub rollback: Option<RollbackTrigger>,
}

/// Evaluates every check of `service` for `release` at `now`. Sources are
/// read concurrently (bounded by the context's source permits); their
/// readings are then judged in the checks' order.
pub async fn evaluate(
    ctx: &Context,
    release: &Release,
    service: &Service,
    previous: Vec<CheckRecord>,
    now: Millis,
) -> TickOutput {
    let mut previous: HashMap<String, CheckRecord> =
        previous.into_iter().map(|r| (r.name.clone(), r)).collect();
    let prev: Vec<Option<CheckRecord>> = service
        .checks
        .iter()
        .map(|spec| previous.remove(&spec.name))
        .collect();
    let sources = TickSources::new(ctx, release, service, now);
    let readings =
        join_all(
            service.checks.iter().zip(&prev).map(|(spec, prev)| {
                sources.read(spec, prev.as_ref().and_then(|r| r.evaluated_until))
            }),
        )
        .await;
    let mut out = TickOutput::default();
    for ((spec, prev), reading) in service.checks.iter().zip(prev).zip(readings) {
        let record = judge(&mut out, release, spec, prev, reading, now);
        ctx.telemetry
            .check_results
            .get_or_create(&StateLabels {
                state: record.state.as_str().into(),
            })
            .inc();
        out.checks.push(record);
    }
    out
}

/// Runs one check's reading through the engine and records what changed.
fn judge(
    out: &mut TickOutput,
    release: &Release,
    spec: &CheckSpec,
    prev: Option<CheckRecord>,
    reading: Reading,
    now: Millis,
) -> CheckRecord {
    let mut tracker: CheckTracker = prev
        .as_ref()
        .and_then(|r| serde_json::from_value(r.tracker.clone()).ok())
        .unwrap_or_default();
    let prev_state = prev
        .as_ref()
        .map(|r| r.state)
        .unwrap_or(CheckState::Pending);
    let prev_value = prev.as_ref().and_then(|r| r.value);
    let mut evaluated_until = prev.as_ref().and_then(|r| r.evaluated_until);
    let (state, value) = match reading {
        Reading::NothingNew => (prev_state, prev_value),
        Reading::Inconclusive { reason, at, until } => {
            if until.is_some() {
                evaluated_until = until;
            }
            if prev_state != CheckState::Inconclusive {
                let reason = format!("{} is inconclusive: {reason}", spec.name);
                out.decisions.push(Decision {
                    at,
                    check: Some(spec.name.clone()),
                    level: None,
                    action: DecisionAction::Inconclusive,
                    reason: reason.clone(),
                });
                out.messages
                    .push(messages::inconclusive(release, &spec.name, &reason, at));
            }
            (CheckState::Inconclusive, prev_value)
        }
        Reading::Series {
            series,
            step,
            window_start,
            until,
            note,
        } => {
            let outcome = engine::evaluate(&spec.rule, &mut tracker, &series, step, window_start);
            if until.is_some() {
                evaluated_until = until;
            }
            for t in &outcome.transitions {
                record_transition(out, release, spec, t, note.as_deref());
            }
            (outcome.state(), outcome.value.or(prev_value))
        }
    };
    CheckRecord {
        name: spec.name.clone(),
        state,
        level: tracker.level,
        value,
        tracker: serde_json::to_value(&tracker).unwrap_or_default(),
        evaluated_until,
        updated_at: now,
    }
}

/// Template variables of a release's queries, as given: each source quotes
/// them for its own query language when it renders a query.
pub fn variables(release: &Release, service: &Service) -> BTreeMap<String, String> {
    let mut vars = service.labels.clone();
    vars.insert("service".into(), release.service.clone());
    vars.insert("environment".into(), release.environment.clone());
    vars.insert("version".into(), release.version.clone());
    vars.insert(
        "previous_version".into(),
        release.previous_version.clone().unwrap_or_default(),
    );
    vars
}

fn record_transition(
    out: &mut TickOutput,
    release: &Release,
    spec: &CheckSpec,
    t: &Transition,
    note: Option<&str>,
) {
    let observed = match (t.value.is_finite(), note) {
        (true, _) => format!("value {}", format_value(t.value)),
        (false, Some(n)) => format!("probe failed ({n})"),
        (false, None) => "no data".into(),
    };
    let reason = if t.to > t.from {
        let cond = spec
            .rule
            .condition(t.to)
            .map(|c| c.describe())
            .unwrap_or_default();
        format!("{} entered {}: {observed}, rule {cond}", spec.name, t.to)
    } else {
        format!(
            "{} went down from {} to {} ({observed})",
            spec.name, t.from, t.to
        )
    };
    out.decisions.push(Decision {
        at: t.at,
        check: Some(spec.name.clone()),
        level: Some(t.to),
        action: DecisionAction::LevelChanged,
        reason: reason.clone(),
    });
    // Page on the way up (warning and above); tell on recovery from critical.
    if t.to > t.from || (t.to == Level::Ok && t.from >= Level::Critical) {
        out.messages.push(messages::level_changed(
            release, &spec.name, t.to, t.value, &reason, t.at,
        ));
    }
    if t.to == Level::Rollback && out.rollback.as_ref().is_none_or(|r| t.at < r.at) {
        out.rollback = Some(RollbackTrigger {
            at: t.at,
            check: spec.name.clone(),
            value: t.value,
            reason,
        });
    }
}
