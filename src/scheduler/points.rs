//! The values a tick keeps for charts ([`CheckPoint`]): one per instant per
//! check, the worst across the check's series (the highest for a check
//! judged by `above`, the lowest for one judged only by `below`), thinned
//! to at most [`MAX_POINTS_PER_TICK`] per check by keeping each bucket's
//! worst value, so a spike between two ticks still shows.

use crate::config::CheckSpec;
use crate::engine::Sample;
use crate::model::{CheckPoint, Millis};
use std::collections::BTreeMap;

/// Most points one tick keeps per check.
pub const MAX_POINTS_PER_TICK: usize = 256;

/// The chart points of one reading of `spec`.
pub fn of(spec: &CheckSpec, series: &[(String, Vec<Sample>)]) -> Vec<CheckPoint> {
    let low_is_bad = spec
        .rule
        .levels()
        .iter()
        .filter_map(|(_, c)| *c)
        .all(|c| c.above.is_none() && c.below.is_some())
        && spec
            .rule
            .levels()
            .iter()
            .any(|(_, c)| c.is_some_and(|c| c.below.is_some()));
    let worse = |a: f64, b: f64| if low_is_bad { a < b } else { a > b };
    let mut at: BTreeMap<Millis, Option<f64>> = BTreeMap::new();
    for (_, samples) in series {
        for s in samples {
            let v = (s.ok && s.value.is_finite()).then_some(s.value);
            let slot = at.entry(s.ts).or_insert(None);
            *slot = match (*slot, v) {
                (Some(a), Some(b)) => Some(if worse(b, a) { b } else { a }),
                (a, b) => a.or(b),
            };
        }
    }
    let all: Vec<(Millis, Option<f64>)> = at.into_iter().collect();
    let bucket = all.len().div_ceil(MAX_POINTS_PER_TICK).max(1);
    all.chunks(bucket)
        .map(|chunk| {
            let pick = chunk
                .iter()
                .filter(|(_, v)| v.is_some())
                .reduce(|a, b| match (a.1, b.1) {
                    (Some(x), Some(y)) if worse(y, x) => b,
                    _ => a,
                })
                .unwrap_or(&chunk[chunk.len() - 1]);
            CheckPoint {
                check: spec.name.clone(),
                at: pick.0,
                value: pick.1,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rules: &str) -> CheckSpec {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("r.yaml"), rules).unwrap();
        let toml = "[store]\npath = \"g.db\"\n[sources.prometheus]\nurl = \"http://127.0.0.1:9/\"\n[[services]]\nname = \"s\"\nrules = [\"r.yaml\"]\n";
        let s = crate::config::load_str(toml, &dir.path().join("g.toml"), &[]).expect("config");
        s.services[0].checks[0].clone()
    }

    #[test]
    fn the_worst_series_per_instant_and_thinning_keeps_spikes() {
        let above = spec("checks:\n  - name: e\n    source: prometheus\n    query: q\n    rollback: { above: 5 }\n");
        let series = vec![
            (
                "a".to_string(),
                vec![Sample::ok(1, 1.0), Sample::ok(2, 7.0)],
            ),
            ("b".to_string(), vec![Sample::ok(1, 3.0), Sample::failed(2)]),
        ];
        let p = of(&above, &series);
        let got: Vec<_> = p.iter().map(|p| (p.at, p.value)).collect();
        assert_eq!(got, vec![(1, Some(3.0)), (2, Some(7.0))]);

        let below = spec("checks:\n  - name: ok_ratio\n    source: prometheus\n    query: q\n    critical: { below: 0.9 }\n");
        let p = of(&below, &series);
        assert_eq!(p[0].value, Some(1.0));

        // 1,000 samples with one spike: thinned to the cap, the spike kept.
        let many: Vec<Sample> = (0..1000)
            .map(|i| Sample::ok(i, if i == 517 { 99.0 } else { 1.0 }))
            .collect();
        let p = of(&above, &[("x".into(), many)]);
        assert!(p.len() <= MAX_POINTS_PER_TICK, "{}", p.len());
        assert!(p.iter().any(|p| p.value == Some(99.0) && p.at == 517));
        // A failed probe is a point without a value.
        let p = of(&above, &[("live".into(), vec![Sample::failed(5)])]);
        assert_eq!(
            p,
            vec![CheckPoint {
                check: "e".into(),
                at: 5,
                value: None
            }]
        );
    }
}
