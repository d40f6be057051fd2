//! Rule-engine throughput (criterion).
//!
//! - `engine/samples`: one threshold + `for` rule (warning, critical,
//!   rollback) over a 1 M-sample in-memory series; reported as samples/s.
//!   Target (docs/operations.md): >= 50 M samples/s per core.
//! - `engine/tick_1000x20`: one evaluation tick of 1,000 watches x 20 checks,
//!   each check reading a 5-minute interval at a 15 s step (20 samples),
//!   every tracker carrying the state of its previous tick. Target: < 10 ms
//!   CPU.
//!
//! - `engine/burn_rate_1d`: multi-window burn rates (the workbook's three
//!   window pairs, 1 d the longest) at every point of a 1-hour interval at a
//!   15 s step, over a day and an hour of samples (the reading a burn-rate
//!   check does at a tick an hour after its last); reported as points/s.
//! - `engine/mann_whitney_120x120`: one Mann-Whitney comparison of two
//!   30-minute windows at a 15 s step (120 samples each), with its
//!   Hodges-Lehmann effect.
//!
//! Run: `cargo bench --bench engine`.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use release_guardian::engine::stats::{mann_whitney, CompareSpec};
use release_guardian::engine::{burn, evaluate, CheckTracker, Condition, Rule, Sample};
use release_guardian::model::Level;

fn rule() -> Rule {
    Rule {
        warning: Some(Condition {
            above: Some(0.005),
            ..Default::default()
        }),
        critical: Some(Condition {
            above: Some(0.01),
            for_ms: 300_000,
            ..Default::default()
        }),
        rollback: Some(Condition {
            above: Some(0.05),
            for_ms: 300_000,
            ..Default::default()
        }),
        recover_after: 0,
    }
}

/// An error-rate-like series: mostly healthy, with excursions that cross
/// every level and fall back, so every branch of the loop runs.
fn series(n: usize, step: i64) -> Vec<Sample> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let base = (x % 1000) as f64 / 1_000_000.0; // 0 .. 0.001
            let phase = (i / 200) % 10;
            let v = match phase {
                7 => base + 0.02,
                8 => base + 0.08,
                _ => base,
            };
            Sample::ok(i as i64 * step, v)
        })
        .collect()
}

fn samples(c: &mut Criterion) {
    let n = 1_000_000;
    let step = 15_000;
    let input = vec![("{}".to_string(), series(n, step))];
    let r = rule();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("samples", |b| {
        b.iter_batched_ref(
            CheckTracker::default,
            |t| {
                let out = evaluate(&r, t, black_box(&input), Some(step), 0);
                black_box(out.transitions.len())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn tick(c: &mut Criterion) {
    let watches = 1_000;
    let checks = 20;
    let step = 15_000;
    let r = rule();
    // Each check reads 20 new samples per tick.
    let batch: Vec<Vec<(String, Vec<Sample>)>> = (0..checks)
        .map(|k| {
            let s: Vec<Sample> = series(20, step)
                .into_iter()
                .map(|mut s| {
                    s.value *= 1.0 + k as f64 / 10.0;
                    s
                })
                .collect();
            vec![("{}".to_string(), s)]
        })
        .collect();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements((watches * checks) as u64));
    // The previous tick's samples: each watch carries its state into the tick.
    let previous: Vec<Vec<(String, Vec<Sample>)>> = batch
        .iter()
        .map(|b| {
            b.iter()
                .map(|(k, s)| {
                    (
                        k.clone(),
                        s.iter()
                            .map(|x| Sample {
                                ts: x.ts - 20 * step,
                                ..*x
                            })
                            .collect(),
                    )
                })
                .collect()
        })
        .collect();
    let warmed: Vec<CheckTracker> = (0..watches * checks)
        .map(|i| {
            let mut t = CheckTracker::default();
            evaluate(&r, &mut t, &previous[i % checks], Some(step), -20 * step);
            t
        })
        .collect();
    g.bench_function("tick_1000x20", |b| {
        b.iter_batched_ref(
            || warmed.clone(),
            |trackers| {
                let mut transitions = 0;
                for (i, t) in trackers.iter_mut().enumerate() {
                    let out = evaluate(&r, t, black_box(&batch[i % checks]), Some(step), 0);
                    transitions += out.transitions.len();
                }
                black_box(transitions)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn burn_rate(c: &mut Criterion) {
    let step = 15_000;
    let windows = burn::default_windows(Level::Rollback, Level::Warning);
    let hour = 3_600_000 / step;
    let day = 86_400_000 / step;
    // A day and an hour of error ratios around a 99.9 % objective.
    let ratio: Vec<Sample> = series((day + hour) as usize, step)
        .into_iter()
        .map(|s| Sample::ok(s.ts, s.value * 2.0))
        .collect();
    let from = day * step;
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(hour as u64));
    g.bench_function("burn_rate_1d", |b| {
        b.iter(|| {
            let points = burn::evaluate(black_box(&ratio), 0.999, &windows, from);
            black_box(points.len())
        })
    });
    g.finish();
}

fn compare(c: &mut Criterion) {
    let base: Vec<f64> = series(120, 15_000).iter().map(|s| s.value).collect();
    let cur: Vec<f64> = base.iter().rev().map(|v| v * 1.3).collect();
    let spec = CompareSpec {
        tolerance: 0.1,
        ..Default::default()
    };
    let mut g = c.benchmark_group("engine");
    g.bench_function("mann_whitney_120x120", |b| {
        b.iter(|| black_box(mann_whitney(black_box(&cur), black_box(&base), &spec)))
    });
    g.finish();
}

criterion_group!(benches, samples, tick, burn_rate, compare);
criterion_main!(benches);
