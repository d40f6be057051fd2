//! The sentinel: between two ticks of the tiers, a watch looks at its query
//! checks (Prometheus, Loki, scrape — never probes, which would send the
//! service requests) every `sentinel_every` (default: their smallest
//! `step`), and ticks at once when one of them looks worse than the last
//! tick left it. That tick — the ordinary one, which reads, judges,
//! commits and escalates — is what acts; a look writes nothing, sends
//! nothing and is forgotten.
//!
//! A look reads exactly what the next tick would read (the interval since
//! each check's `evaluated_until`) and judges it with the same engine, so
//! it can only move a tick earlier, never change what a tick finds: a
//! breach is acted on within one `step` of its `for` being met instead of
//! up to one tier interval (5 to 30 minutes) later. A source that cannot be
//! read is not a reason to tick (the tick would be inconclusive too).

use super::judgments;
use super::read::TickSources;
use super::tick::{self, TickOutput};
use crate::config::{CheckSpec, Service};
use crate::context::Context;
use crate::model::{CheckRecord, Level, Millis, Release};
use crate::sources::Reads;
use futures_util::future::join_all;

/// The checks a look reads: the query checks (not probes).
fn looked_at(service: &Service) -> impl Iterator<Item = &CheckSpec> {
    service
        .checks
        .iter()
        .filter(|spec| spec.source.reads != Reads::Probe)
}

/// How often `release`'s watch looks between ticks; `None` when it does
/// not (`sentinel_every = "off"`, or no query checks).
pub fn every(service: &Service, release: &Release) -> Option<Millis> {
    let min_step = looked_at(service)
        .map(|c| crate::section::saturating_millis(c.step))
        .min()?;
    service.cadence_for(release).sentinel_every(min_step)
}

/// Whether a look at `now` finds a query check worse than `checks` (the
/// last tick's records) say: a level above `ok` and above the one the
/// check had, or a transition into the rollback level.
pub async fn looks_worse(
    ctx: &Context,
    release: &Release,
    service: &Service,
    checks: &[CheckRecord],
    now: Millis,
) -> bool {
    let sources = TickSources::new(ctx, release, service, now);
    let specs: Vec<&CheckSpec> = looked_at(service).collect();
    let prev: Vec<Option<CheckRecord>> = specs
        .iter()
        .map(|spec| checks.iter().find(|c| c.name == spec.name).cloned())
        .collect();
    let readings = join_all(specs.iter().zip(&prev).map(|(spec, prev)| {
        judgments::read(
            &sources,
            spec,
            prev.as_ref().and_then(|r| r.evaluated_until),
        )
    }))
    .await;
    let mut scratch = TickOutput::default();
    for ((spec, prev), reading) in specs.into_iter().zip(prev).zip(readings) {
        let was = prev.as_ref().map_or(Level::Ok, |r| r.level);
        let record = tick::judge(&mut scratch, release, spec, prev, reading, now);
        if record.level > Level::Ok && record.level > was {
            return true;
        }
    }
    scratch.rollback.is_some()
}
