//! Rule-pack tests of the judgment keys: what they compile to, and every
//! mistake reported at its key.

use super::judgment::NoData;
use super::rules::{compile, parse_pack, RulePack, ServiceScope};
use super::CheckSpec;
use crate::engine::stats::Direction;
use crate::model::Level;
use std::path::Path;

fn pack(text: &str) -> RulePack {
    parse_pack(text, Path::new("p.yaml"))
}

fn errors(p: &RulePack) -> Vec<String> {
    p.errors.iter().map(|e| e.to_string()).collect()
}

fn checks(text: &str, sources: &[&str]) -> Vec<CheckSpec> {
    let p = pack(text);
    assert!(p.errors.is_empty(), "{:?}", errors(&p));
    let labels = Default::default();
    // Each source named after its kind, as `[sources.prometheus]` is.
    let kinds = ["prometheus", "loki"];
    let sources: std::collections::BTreeMap<String, Option<&'static str>> = sources
        .iter()
        .map(|s| (s.to_string(), kinds.into_iter().find(|k| k == s)))
        .collect();
    let scope = ServiceScope {
        name: "checkout",
        environment: "production",
        labels: &labels,
        probes: &[],
        scrapes: &[],
        sources: &sources,
    };
    let c = compile(&[&p], &scope);
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    c.checks
}

#[test]
fn every_judgment_compiles() {
    let text = r#"checks:
  - name: errors
    source: prometheus
    query: ratio{service="{{service}}"}
    no_data: ok
    recover_after: 4
    weight: 3
    min_traffic: { query: 'sum(rate(req{service="{{service}}"}[5m]))', above: 1 }
    baseline: { before_release: true }
    rollback: { above: 0.01, worse_by: 0.005, for: 5m }
  - name: latency_vs_stable
    source: prometheus
    query: p95{track="canary"}
    baseline: { query: 'p95{track="stable"}' }
    compare: { test: mann_whitney, tolerance: 0.1, direction: increase, window: 20m }
    critical: {}
    rollback: { for: 10m }
  - name: slo
    source: prometheus
    burn_rate: { objective: 0.999, errors: ratio }
  - name: week
    source: prometheus
    query: ratio
    no_data: breach
    baseline: { offset: 1w }
    warning: { worse_by_ratio: 2 }
"#;
    let c = checks(text, &["prometheus"]);
    let e = &c[0];
    assert_eq!(e.judgment.no_data, NoData::Ok);
    assert_eq!(e.rule.recover_after, 4);
    assert_eq!(e.judgment.weight, 3.0);
    assert_eq!(e.judgment.min_traffic.as_ref().unwrap().1, 1.0);
    assert!(e.judgment.baseline.as_ref().unwrap().before_release);
    let rb = e.rule.rollback.unwrap();
    assert_eq!(
        (rb.above, rb.worse_by, rb.for_ms),
        (Some(0.01), Some(0.005), 300_000)
    );

    let l = &c[1];
    let cmp = l.judgment.compare.as_ref().unwrap();
    assert_eq!(cmp.spec.confidence, 0.98, "Kayenta's default");
    assert_eq!(
        (cmp.spec.tolerance, cmp.spec.direction, cmp.window),
        (0.1, Direction::Increase, 1_200_000)
    );
    assert_eq!(l.rule.critical.unwrap().above, Some(0.5));
    assert_eq!(l.rule.rollback.unwrap().for_ms, 600_000);
    assert!(l.rule.warning.is_none());
    assert!(l.judgment.per_tick());

    let s = &c[2];
    assert_eq!(s.query.as_deref(), Some("ratio"), "errors is the query");
    let b = s.judgment.burn_rate.as_ref().unwrap();
    assert_eq!(b.windows.len(), 3);
    assert_eq!(
        (b.windows[0].factor, b.windows[0].level),
        (14.4, Level::Rollback)
    );
    assert_eq!(
        (b.windows[2].factor, b.windows[2].level),
        (3.0, Level::Warning)
    );
    assert!(s.rule.warning.is_some() && s.rule.rollback.is_some());

    let w = &c[3];
    assert_eq!(w.judgment.baseline.as_ref().unwrap().offset, 7 * 86_400_000);
    assert!(w.rule.warning.unwrap().missing_breaches);
}

#[test]
fn mistakes_are_reported_at_their_keys_all_at_once() {
    let text = r#"checks:
  - name: a
    source: prometheus
    query: x
    rollback: { above: 1, worse_by: 0.1 }
  - name: b
    source: prometheus
    query: x
    baseline: { query: y }
    compare: { confidence: 1.5 }
    rollback: { above: 1 }
  - name: c
    source: prometheus
    query: x
    burn_rate: { objective: 99.9, errors: y, page: ok }
  - name: d
    source: probe
    probe: live
    no_data: breach
    weight: -1
    rollback: { failures: 2 }
  - name: e
    source: prometheus
    new_error_signatures: { query: '{app="x"}' }
    rollback: { above: 0 }
"#;
    let p = pack(text);
    assert_eq!(
        errors(&p),
        [
            "p.yaml:5:5: check `a`: `worse_by` and `worse_by_ratio` need a `baseline`",
            "p.yaml:10:16: check `b`: `compare.confidence` must be between 0 and 1 (e.g. 0.98)",
            "p.yaml:11:5: check `b`: the levels of a `compare` or `burn_rate` check take only `for` (the judgment decides the breach)",
            "p.yaml:15:18: check `c`: `burn_rate.objective` must be between 0 and 1 (e.g. 0.999)",
            "p.yaml:14:5: check `c`: a burn_rate check reads `burn_rate.errors`, not `query`",
            "p.yaml:15:46: check `c`: `burn_rate.page` must be warning, critical or rollback",
            "p.yaml:19:5: check `d`: `no_data` is only for query checks (a probe always answers)",
            "p.yaml:20:5: check `d`: `weight` must be 0 or more",
            "p.yaml:24:5: check `e`: `new_error_signatures` reads logs: use `source: loki`",
        ]
    );
}
