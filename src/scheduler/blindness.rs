//! Blindness: when a watch cannot read a query source for
//! `blind_after` consecutive ticks (the source's `[sources.NAME]
//! blind_after`, default 3), it says so once — a `warning` message
//! "guardian cannot see SOURCE" through the service's notifiers — and once
//! more when it sees the source again (`blind_cleared`). Nothing else
//! changes: the checks reading that source stay inconclusive, and missing
//! data never rolls anything back.
//!
//! A tick counts as failed for a source when any check reading it failed
//! to read it (unreachable, an HTTP or query error, a source that could not
//! be built), and as seen when at least one read it and none failed; a tick
//! with nothing new to read leaves the count as it is. The count lives
//! with the watch's task: a restarted daemon starts counting afresh.

use super::messages;
use super::read::Reading;
use crate::config::{CheckSpec, Settings};
use crate::model::{Message, Millis, Release, Severity};
use crate::sources::Reads;
use std::collections::BTreeMap;

/// What one tick saw of one source.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// At least one check read it, and none failed to.
    Saw,
    /// A check failed to read it, for this reason.
    Failed(String),
}

/// What a tick saw of each query source its checks read, by source name
/// (sources with nothing new to read are left out).
pub fn observe<'a>(
    checks: impl IntoIterator<Item = &'a CheckSpec>,
    readings: impl IntoIterator<Item = &'a Reading>,
) -> BTreeMap<String, Seen> {
    let mut out: BTreeMap<String, Seen> = BTreeMap::new();
    for (spec, reading) in checks.into_iter().zip(readings) {
        if spec.source.reads != Reads::Query {
            continue;
        }
        let seen = match reading {
            Reading::NothingNew => continue,
            Reading::Inconclusive {
                reason,
                until: None,
                ..
            } => Seen::Failed(reason.clone()),
            Reading::Inconclusive { .. } | Reading::Series { .. } => Seen::Saw,
        };
        let name = spec.source_name().to_string();
        match (out.get(&name), &seen) {
            (Some(Seen::Failed(_)), _) => {}
            _ => {
                out.insert(name, seen);
            }
        }
    }
    out
}

/// One source's run of failed ticks.
#[derive(Debug, Clone)]
struct Streak {
    failures: u32,
    /// When the first failed tick of the run was.
    since: Millis,
    /// The warning went out for this run.
    raised: bool,
}

/// A watch's blindness, per source.
#[derive(Debug, Default)]
pub struct Blindness {
    streaks: BTreeMap<String, Streak>,
}

impl Blindness {
    /// Counts what this tick saw (at `at`) and returns the messages to
    /// send: a warning when a source reaches its `blind_after`, a clearing
    /// message when a source it warned about is seen again.
    pub fn update(
        &mut self,
        seen: &BTreeMap<String, Seen>,
        settings: &Settings,
        release: &Release,
        at: Millis,
    ) -> Vec<Message> {
        let mut out = Vec::new();
        for (source, seen) in seen {
            match seen {
                Seen::Saw => {
                    if let Some(s) = self.streaks.remove(source) {
                        if s.raised {
                            out.push(cleared(release, source, s.since, at));
                        }
                    }
                }
                Seen::Failed(reason) => {
                    let after = settings
                        .sources
                        .get(source)
                        .map_or(crate::sources::http::DEFAULT_BLIND_AFTER, |s| {
                            s.config.blind_after()
                        });
                    let s = self.streaks.entry(source.clone()).or_insert(Streak {
                        failures: 0,
                        since: at,
                        raised: false,
                    });
                    s.failures = s.failures.saturating_add(1);
                    if !s.raised && s.failures >= after {
                        s.raised = true;
                        out.push(blind(release, source, s.failures, s.since, reason, at));
                    }
                }
            }
        }
        out
    }
}

fn blind(
    release: &Release,
    source: &str,
    failures: u32,
    since: Millis,
    reason: &str,
    at: Millis,
) -> Message {
    let why = format!(
        "guardian cannot see {source}: {failures} consecutive reads failed since {} (last: {reason}); its checks are inconclusive, and missing data never rolls back",
        crate::model::rfc3339(since)
    );
    messages::release_event(
        release,
        "blind",
        Severity::Warning,
        &why,
        at,
        &format!("blind/{source}/{since}"),
    )
}

fn cleared(release: &Release, source: &str, since: Millis, at: Millis) -> Message {
    let why = format!(
        "guardian sees {source} again (it could not since {})",
        crate::model::rfc3339(since)
    );
    // The same severity as the warning, so the same receivers get it.
    messages::release_event(
        release,
        "blind_cleared",
        Severity::Warning,
        &why,
        at,
        &format!("blind/{source}/{since}/cleared"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &std::path::Path) -> Settings {
        let toml = "[store]\npath = \"g.db\"\n[sources.prometheus]\nurl = \"http://127.0.0.1:9/\"\nblind_after = 2\n";
        crate::config::load_str(toml, &dir.join("guardian.toml"), &[]).expect("config")
    }

    fn release() -> Release {
        Release {
            id: "r1".into(),
            service: "checkout".into(),
            environment: "production".into(),
            version: "v2".into(),
            previous_version: None,
            annotations: Default::default(),
            status: crate::model::ReleaseStatus::Watching,
            started_at: 0,
            next_check_at: None,
            ended_at: None,
            acked: false,
            superseded_by: None,
        }
    }

    fn seen(source: &str, s: Seen) -> BTreeMap<String, Seen> {
        [(source.to_string(), s)].into()
    }

    #[test]
    fn one_warning_after_n_failures_and_one_clearing_on_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path());
        let mut b = Blindness::default();
        let fail = || seen("prometheus", Seen::Failed("connection refused".into()));
        assert!(b.update(&fail(), &settings, &release(), 1_000).is_empty());
        let m = b.update(&fail(), &settings, &release(), 2_000);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].event, "blind");
        assert_eq!(m[0].severity, Severity::Warning);
        assert!(
            m[0].reason
                .starts_with("guardian cannot see prometheus: 2 consecutive reads failed"),
            "{}",
            m[0].reason
        );
        assert!(m[0].reason.contains("connection refused"));
        assert_eq!(m[0].dedup_key, "r1/blind/prometheus/1000");
        // Still failing: nothing more.
        assert!(b.update(&fail(), &settings, &release(), 3_000).is_empty());
        // Seen again: one clearing message, same incident.
        let m2 = b.update(&seen("prometheus", Seen::Saw), &settings, &release(), 4_000);
        assert_eq!(m2.len(), 1);
        assert_eq!(m2[0].event, "blind_cleared");
        assert_eq!(m2[0].incident_key(), m[0].incident_key());
        assert!(m2[0].closes_incident());
        assert!(b
            .update(&seen("prometheus", Seen::Saw), &settings, &release(), 5_000)
            .is_empty());
    }

    #[test]
    fn a_success_in_between_resets_the_count_without_a_message() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path());
        let mut b = Blindness::default();
        let fail = || seen("prometheus", Seen::Failed("timed out".into()));
        assert!(b.update(&fail(), &settings, &release(), 1_000).is_empty());
        assert!(b
            .update(&seen("prometheus", Seen::Saw), &settings, &release(), 2_000)
            .is_empty());
        assert!(b.update(&fail(), &settings, &release(), 3_000).is_empty());
        // A source not in the settings uses the default (3).
        let other = || {
            seen(
                "gone",
                Seen::Failed("no [sources.gone] is configured".into()),
            )
        };
        assert!(b.update(&other(), &settings, &release(), 1).is_empty());
        assert!(b.update(&other(), &settings, &release(), 2).is_empty());
        assert_eq!(b.update(&other(), &settings, &release(), 3).len(), 1);
    }
}
