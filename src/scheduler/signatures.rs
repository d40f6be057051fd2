//! Reading a `new_error_signatures` check: the log lines of the interval
//! since its last reading and those of a window before the release, read
//! through the check's log source
//! ([`crate::sources::RangeSource::query_logs`]), reduced to
//! signatures by the engine ([`crate::engine::signatures`]). One sample per
//! tick, at the interval's last grid point: how many distinct signatures of
//! the interval are absent before the release; judged by the check's
//! thresholds like any value. The signatures (at most [`MAX_LISTED`], each
//! with its count and an example line) go into the check's evidence.
//!
//! A failed read is inconclusive (the interval is read again next tick),
//! never a breach.

use super::judgments::Judged;
use super::read::{align_up, Reading, TickSources};
use crate::config::CheckSpec;
use crate::engine::signatures::new_signatures;
use crate::engine::Sample;
use crate::model::{rfc3339, Millis};
use crate::section::saturating_millis;
use crate::sources::{Direction, LogLine, LogQuery};
use serde_json::{json, Map, Value};

/// Most lines read from each side (after, before) per tick: Loki's default
/// `max_entries_limit_per_query`.
pub const MAX_LINES: u32 = 5_000;

/// The window before the release is as long as the time since the release,
/// and at least this long (an hour), so that an error that occurs every
/// few minutes is known before the first tick.
pub const MIN_BEFORE: Millis = 3_600_000;

/// Most new signatures listed in the evidence (all are counted).
pub const MAX_LISTED: usize = 10;

/// Reads the check (see the module doc); `template` is its
/// `new_error_signatures.query`.
pub async fn read(
    sources: &TickSources<'_>,
    spec: &CheckSpec,
    template: &str,
    evaluated_until: Option<Millis>,
) -> Judged {
    let source = match sources.range_source(spec) {
        Ok(s) => s,
        Err(e) => return Judged::failed(e, sources.now(), None),
    };
    let release = sources.release().started_at;
    let step = saturating_millis(spec.step).max(1);
    // Lines are read over [from, end): contiguous from tick to tick; the
    // sample is dated at `end`, a grid point.
    let from = evaluated_until.unwrap_or(release);
    let end = sources.now().min(sources.window_end()).div_euclid(step) * step;
    let query = source.render(template, sources.vars());
    if end < align_up(from.saturating_add(1), step) {
        return Judged::new(Reading::NothingNew, Some(query));
    }
    let len = (end - release).max(MIN_BEFORE);
    let read = |start, end, direction| LogQuery {
        query: query.clone(),
        start,
        end,
        limit: MAX_LINES,
        direction,
    };
    let after = read(from, end, Direction::Forward);
    let before = read(release - len, release, Direction::Backward);
    let failed = |e: String| {
        Judged::failed(
            format!("new_error_signatures: {e}"),
            from,
            Some(query.clone()),
        )
    };
    let after_lines = match sources.logs(source.as_ref(), &after).await {
        Ok(l) => l,
        Err(e) => return failed(e),
    };
    let before_lines = match sources.logs(source.as_ref(), &before).await {
        Ok(l) => l,
        Err(e) => return failed(e),
    };
    let found = new_signatures(
        before_lines.iter().map(|l| l.line.as_str()),
        after_lines.iter().map(|l| l.line.as_str()),
    );
    let listed: Vec<Value> = found
        .iter()
        .take(MAX_LISTED)
        .map(|s| json!({ "signature": s.signature, "count": s.count, "example": s.example }))
        .collect();
    let side = |q: &LogQuery, lines: &[LogLine]| {
        json!({
            "from": rfc3339(q.start),
            "to": rfc3339(q.end),
            "lines": lines.len(),
            "truncated": lines.len() >= MAX_LINES as usize,
        })
    };
    let mut evidence = Map::new();
    evidence.insert(
        "new_error_signatures".into(),
        json!({
            "after": side(&after, &after_lines),
            "before": side(&before, &before_lines),
            "count": found.len(),
            "signatures": listed,
        }),
    );
    let n = found.len() as f64;
    Judged {
        evidence,
        value: Some(n),
        ..Judged::new(
            Reading::Series {
                series: vec![("new_error_signatures".into(), vec![Sample::ok(end, n)])],
                step: None,
                window_start: end,
                until: Some(end),
                note: None,
            },
            Some(query),
        )
    }
}
