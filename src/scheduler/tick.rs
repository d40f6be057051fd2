//! One tick of one watch: read every check's new samples, run the engine,
//! and turn what changed into decisions, messages and a rollback request.
//! Nothing is written here; the watch commits the result in one transaction.

use super::evidence;
use super::judgments::{self, Judged};
use super::messages;
use super::read::{Reading, TickSources};
use crate::config::judgment::NoData;
use crate::config::{CheckSpec, Service};
use crate::context::Context;
use crate::engine::{self, CheckTracker, Sample, Transition};
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
    /// When the check left the rollback level again, if it is no longer at
    /// it at the reading's last sample (a breach found in a gap — downtime,
    /// a source outage — that has since recovered). Such a trigger is never
    /// acted on automatically: it pages with both instants and leaves the
    /// rollback to people.
    pub recovered_at: Option<Millis>,
}

impl RollbackTrigger {
    /// Whether `self` should replace `other` as the tick's trigger: a check
    /// still at the rollback level wins over one that recovered; among
    /// equals, the earliest breach wins.
    fn outranks(&self, other: &RollbackTrigger) -> bool {
        match (self.recovered_at.is_none(), other.recovered_at.is_none()) {
            (true, false) => true,
            (false, true) => false,
            _ => self.at < other.at,
        }
    }
}

/// What a tick produced.
#[derive(Debug, Default)]
pub struct TickOutput {
    pub checks: Vec<CheckRecord>,
    pub decisions: Vec<Decision>,
    pub messages: Vec<Message>,
    /// The values read, for charts ([`super::points`]).
    pub points: Vec<crate::model::CheckPoint>,
    /// The first transition into the rollback level during this tick, if
    /// any, preferring a check that is still at that level at its reading's
    /// last sample (see [`RollbackTrigger::recovered_at`]).
    pub rollback: Option<RollbackTrigger>,
    /// What this tick saw of each query source (for blindness).
    pub sources_seen: BTreeMap<String, super::blindness::Seen>,
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
    let before: Vec<CheckRecord> = previous.values().cloned().collect();
    let prev: Vec<Option<CheckRecord>> = service
        .checks
        .iter()
        .map(|spec| previous.remove(&spec.name))
        .collect();
    let sources = TickSources::new(ctx, release, service, now);
    let (readings, evidence): (Vec<_>, Vec<_>) =
        join_all(service.checks.iter().zip(&prev).map(|(spec, prev)| {
            let until = prev.as_ref().and_then(|r| r.evaluated_until);
            futures_util::future::join(
                judgments::read(&sources, spec, until),
                sources.evidence(spec, until),
            )
        }))
        .await
        .into_iter()
        .unzip();
    let mut out = TickOutput {
        sources_seen: super::blindness::observe(
            &service.checks,
            readings.iter().map(|j| &j.reading),
        ),
        ..TickOutput::default()
    };
    for (((spec, prev), reading), logs) in
        service.checks.iter().zip(prev).zip(readings).zip(evidence)
    {
        let mut record = judge(&mut out, release, spec, prev, reading, now);
        if let Some(logs) = logs {
            record.logs = logs;
        }
        ctx.telemetry
            .check_results
            .get_or_create(&StateLabels {
                state: record.state.as_str().into(),
            })
            .inc();
        out.checks.push(record);
    }
    let (trigger, decision) = evidence::health(service, &before, &out.checks, now);
    out.decisions.extend(decision);
    if out.rollback.is_none() {
        out.rollback = trigger;
    }
    out
}

/// Runs one check's reading through the engine and records what changed.
pub(super) fn judge(
    out: &mut TickOutput,
    release: &Release,
    spec: &CheckSpec,
    prev: Option<CheckRecord>,
    judged: Judged,
    now: Millis,
) -> CheckRecord {
    let step = crate::section::saturating_millis(spec.step).max(1);
    let ev = evidence::Base::new(spec, &judged, step);
    let reading = match (judged.reading, judged.no_data, spec.judgment.no_data) {
        (
            Reading::Inconclusive {
                at,
                until: Some(until),
                ..
            },
            true,
            no_data @ (NoData::Ok | NoData::Breach),
        ) => {
            // `no_data: ok`: nothing to judge, which is good news (held
            // levels resolve); `no_data: breach`: every missing grid point
            // is a breaching sample.
            let series = if no_data == NoData::Breach {
                let points = (at..=until)
                    .step_by(step as usize)
                    .map(Sample::failed)
                    .collect();
                vec![("no data".to_string(), points)]
            } else {
                Vec::new()
            };
            Reading::Series {
                series,
                step: Some(step),
                window_start: at,
                until: Some(until),
                note: Some("no data".into()),
            }
        }
        (r, ..) => r,
    };
    let display = judged.value;
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
                out.decisions.push(
                    Decision::new(DecisionAction::Inconclusive, now, reason.clone())
                        .with_check(spec.name.clone())
                        .with_evidence(at, Some(ev.inconclusive(&reason))),
                );
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
            out.points.extend(super::points::of(spec, &series));
            let outcome = engine::evaluate(&spec.rule, &mut tracker, &series, step, window_start);
            if until.is_some() {
                evaluated_until = until;
            }
            let mut trigger: Option<RollbackTrigger> = None;
            for t in &outcome.transitions {
                let evidence = ev.transition(spec, t, &series);
                let reason =
                    record_transition(out, release, spec, t, note.as_deref(), now, evidence);
                if t.to == Level::Rollback && trigger.is_none() {
                    trigger = Some(RollbackTrigger {
                        at: t.at,
                        check: spec.name.clone(),
                        value: t.value,
                        reason,
                        recovered_at: None,
                    });
                }
            }
            if let Some(mut trigger) = trigger {
                // Judge the breach by where the check stands at the last
                // sample read, not by where it once was.
                if outcome.level < Level::Rollback {
                    trigger.recovered_at = outcome
                        .transitions
                        .iter()
                        .rev()
                        .find(|t| t.from == Level::Rollback && t.to < Level::Rollback)
                        .map(|t| t.at);
                }
                if out.rollback.as_ref().is_none_or(|r| trigger.outranks(r)) {
                    out.rollback = Some(trigger);
                }
            }
            (outcome.state(), display.or(outcome.value).or(prev_value))
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
        logs: prev.map(|r| r.logs).unwrap_or_default(),
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

/// Records a level change's decision and page; returns its reason.
fn record_transition(
    out: &mut TickOutput,
    release: &Release,
    spec: &CheckSpec,
    t: &Transition,
    note: Option<&str>,
    now: Millis,
    evidence: serde_json::Value,
) -> String {
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
    out.decisions.push(
        Decision::level_changed(now, spec.name.clone(), t.to, reason.clone())
            .with_evidence(t.at, Some(evidence)),
    );
    // Page on the way up (warning and above); tell on recovery (the
    // `recovered` message goes to the notifiers that were paged).
    if t.to > t.from || (t.to == Level::Ok && t.from > Level::Ok) {
        out.messages.push(messages::level_changed(
            release, &spec.name, t.to, t.value, &reason, t.at,
        ));
    }
    reason
}

/// What a tick records for a breach of the rollback level that recovered
/// before the reading's last sample: no rollback request, whatever the
/// service's rollback mode, but a decision and a critical page naming both
/// instants, so people can roll back by hand (`POST .../rollback`) if the
/// breach still worries them.
pub fn recovered_breach(
    release: &Release,
    service: &Service,
    trigger: &RollbackTrigger,
    recovered_at: Millis,
    now: Millis,
) -> (Decision, Message) {
    let mode = service.rollback.as_ref().map(|r| r.mode);
    let would = match mode {
        Some(crate::actions::rollback::RollbackMode::Auto) => "would have rolled back",
        Some(crate::actions::rollback::RollbackMode::Manual) => "would have recommended a rollback",
        None => "reached the rollback level (no hook is configured)",
    };
    let why = format!(
        "{} {would} at {}; recovered at {} ({}); not rolled back automatically, since the check is no longer at the rollback level at the latest sample — POST /v1/releases/{}/rollback to roll back",
        trigger.check,
        crate::model::rfc3339(trigger.at),
        crate::model::rfc3339(recovered_at),
        trigger.reason,
        release.id
    );
    let decision = Decision::rollback_recommended(now, trigger.check.clone(), why.clone());
    let mut msg = messages::release_event(
        release,
        "rollback_recovered",
        crate::model::Severity::Critical,
        &why,
        trigger.at,
        &format!("rollback/recovered/{}", trigger.at),
    );
    msg.check = Some(trigger.check.clone());
    msg.level = Some(Level::Rollback);
    msg.value = trigger.value.is_finite().then_some(trigger.value);
    (decision, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ReleaseStatus;

    /// A service `checkout` with two range checks, `errors` and `latency`,
    /// each rolling back above 5 and an automatic rollback hook.
    fn service(dir: &std::path::Path) -> Service {
        std::fs::write(
            dir.join("rules.yaml"),
            "checks:\n  - name: errors\n    source: prometheus\n    query: errors\n    step: 1s\n    rollback: { above: 5 }\n  - name: latency\n    source: prometheus\n    query: latency\n    step: 1s\n    rollback: { above: 5 }\n",
        )
        .unwrap();
        let toml = "[store]\npath = \"g.db\"\n[sources.prometheus]\nurl = \"http://127.0.0.1:9/\"\n\n[[services]]\nname = \"checkout\"\nrules = [\"rules.yaml\"]\n  [services.rollback]\n  command = [\"/bin/true\"]\n";
        let s = crate::config::load_str(toml, &dir.join("guardian.toml"), &[]).expect("config");
        s.services[0].clone()
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

    /// A reading of one series sampled every second from 1 s on.
    fn reading(values: &[f64]) -> Judged {
        let samples: Vec<Sample> = values
            .iter()
            .enumerate()
            .map(|(i, &value)| Sample::ok((i as Millis + 1) * 1_000, value))
            .collect();
        let until = samples.last().map(|s| s.ts);
        Judged {
            reading: Reading::Series {
                series: vec![("{}".into(), samples)],
                step: Some(1_000),
                window_start: 0,
                until,
                note: None,
            },
            query: Some("errors".into()),
            evidence: Default::default(),
            value: None,
            no_data: false,
        }
    }

    fn judge_all(service: &Service, readings: Vec<Judged>) -> TickOutput {
        let mut out = TickOutput::default();
        for (spec, r) in service.checks.iter().zip(readings) {
            judge(&mut out, &release(), spec, None, r, 100_000);
        }
        out
    }

    #[test]
    fn a_breach_still_at_the_rollback_level_at_the_last_sample_triggers() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let out = judge_all(&s, vec![reading(&[0.0, 9.0, 9.0]), reading(&[0.0])]);
        let t = out.rollback.expect("a trigger");
        assert_eq!(
            (t.check.as_str(), t.at, t.recovered_at),
            ("errors", 2_000, None)
        );
    }

    #[test]
    fn a_breach_that_recovered_in_the_gap_is_reported_with_both_instants() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        // Broke at 2 s, recovered at 4 s, still fine at the last sample.
        let out = judge_all(
            &s,
            vec![reading(&[0.0, 9.0, 9.0, 1.0, 1.0]), reading(&[0.0])],
        );
        let t = out.rollback.expect("a trigger");
        assert_eq!((t.at, t.recovered_at), (2_000, Some(4_000)));
        let (d, msg) = recovered_breach(&release(), &s, &t, 4_000, 100_000);
        assert_eq!(d.action, crate::model::DecisionAction::RollbackRecommended);
        assert_eq!(d.level, Some(Level::Rollback));
        assert!(
            d.reason
                .contains("would have rolled back at 1970-01-01T00:00:02"),
            "{}",
            d.reason
        );
        assert!(
            d.reason.contains("recovered at 1970-01-01T00:00:04"),
            "{}",
            d.reason
        );
        assert_eq!(msg.severity, crate::model::Severity::Critical);
        assert_eq!(msg.dedup_key, "r1/rollback/recovered/2000");
    }

    #[test]
    fn a_check_still_breaching_outranks_an_earlier_one_that_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        // errors broke first but recovered; latency broke later and stays.
        let out = judge_all(
            &s,
            vec![
                reading(&[9.0, 1.0, 1.0, 1.0]),
                reading(&[0.0, 0.0, 9.0, 9.0]),
            ],
        );
        let t = out.rollback.expect("a trigger");
        assert_eq!(
            (t.check.as_str(), t.at, t.recovered_at),
            ("latency", 3_000, None)
        );
        // The other way round: the still-breaching one is found first.
        let out = judge_all(
            &s,
            vec![
                reading(&[0.0, 0.0, 9.0, 9.0]),
                reading(&[9.0, 1.0, 1.0, 1.0]),
            ],
        );
        let t = out.rollback.expect("a trigger");
        assert_eq!((t.check.as_str(), t.recovered_at), ("errors", None));
    }
}
