//! Statistical comparison of two samples: the Mann-Whitney U test (the
//! default of Kayenta's canary judge), with the Hodges-Lehmann estimate of
//! the shift between them as the effect.
//!
//! The p-value is two-sided, from the normal approximation with the tie
//! correction and a continuity correction (what R's `wilcox.test(...,
//! exact = FALSE, correct = TRUE)` computes). The effect is the shift
//! relative to the baseline's median, so `tolerance: 0.1` means "10 % worse".

use serde::{Deserialize, Serialize};

/// Fewest values each sample needs for the test to mean anything.
pub const MIN_SAMPLES: usize = 5;

/// Which way is worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Higher is worse (error rates, latencies).
    #[default]
    Increase,
    /// Lower is worse (success ratios, throughput).
    Decrease,
    /// Any significant change beyond the tolerance is worse.
    Either,
}

/// A comparison's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompareSpec {
    /// 1 - the significance level (Kayenta's default 0.98).
    pub confidence: f64,
    /// Relative effect tolerated in the worse direction (0.1 = 10 %).
    pub tolerance: f64,
    pub direction: Direction,
}

impl Default for CompareSpec {
    fn default() -> Self {
        Self {
            confidence: 0.98,
            tolerance: 0.0,
            direction: Direction::Increase,
        }
    }
}

/// What a comparison found.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Two-sided p-value of the Mann-Whitney U test.
    pub p_value: f64,
    /// U statistic of the first (current) sample.
    pub u: f64,
    /// Hodges-Lehmann shift: the median of all pairwise differences
    /// current - baseline.
    pub shift: f64,
    /// The shift relative to the baseline's median (± infinity when that is
    /// zero and the shift is not).
    pub effect: f64,
    pub current_median: f64,
    pub baseline_median: f64,
    pub n_current: usize,
    pub n_baseline: usize,
    /// Significant at the confidence and beyond the tolerance, the worse way.
    pub worse: bool,
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    let (_, m, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    let hi = *m;
    if n % 2 == 1 {
        return hi;
    }
    let lo = v[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo + hi) / 2.0
}

/// Compares `current` against `baseline` (NaNs dropped). `None` when either
/// has fewer than [`MIN_SAMPLES`] values.
pub fn mann_whitney(current: &[f64], baseline: &[f64], spec: &CompareSpec) -> Option<Comparison> {
    let a: Vec<f64> = current.iter().copied().filter(|v| !v.is_nan()).collect();
    let b: Vec<f64> = baseline.iter().copied().filter(|v| !v.is_nan()).collect();
    let (n1, n2) = (a.len(), b.len());
    if n1 < MIN_SAMPLES || n2 < MIN_SAMPLES {
        return None;
    }
    // Ranks of the pooled sample, ties sharing their mean rank.
    let mut pooled: Vec<(f64, bool)> = a
        .iter()
        .map(|&v| (v, true))
        .chain(b.iter().map(|&v| (v, false)))
        .collect();
    pooled.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = (n1 + n2) as f64;
    let mut rank_sum_a = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < pooled.len() {
        let mut j = i + 1;
        while j < pooled.len() && pooled[j].0 == pooled[i].0 {
            j += 1;
        }
        let t = (j - i) as f64;
        let rank = (i + j + 1) as f64 / 2.0; // mean of ranks i+1 ..= j
        rank_sum_a += rank * pooled[i..j].iter().filter(|p| p.1).count() as f64;
        tie_term += t * t * t - t;
        i = j;
    }
    let (f1, f2) = (n1 as f64, n2 as f64);
    let u = rank_sum_a - f1 * (f1 + 1.0) / 2.0;
    let mean = f1 * f2 / 2.0;
    let var = f1 * f2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    let p_value = if var <= 0.0 {
        1.0 // every value equal: no evidence of any difference
    } else {
        let d = u - mean;
        let z = (d.abs() - 0.5).max(0.0) / var.sqrt();
        (2.0 * normal_sf(z)).min(1.0)
    };
    let mut diffs: Vec<f64> = Vec::with_capacity(n1 * n2);
    for x in &a {
        for y in &b {
            diffs.push(x - y);
        }
    }
    let shift = median(&mut diffs);
    let mut a_sorted = a;
    let mut b_sorted = b;
    let current_median = median(&mut a_sorted);
    let baseline_median = median(&mut b_sorted);
    let effect = if baseline_median != 0.0 {
        shift / baseline_median.abs()
    } else if shift == 0.0 {
        0.0
    } else {
        shift.signum() * f64::INFINITY
    };
    let significant = p_value < 1.0 - spec.confidence;
    let beyond = match spec.direction {
        Direction::Increase => effect > spec.tolerance,
        Direction::Decrease => -effect > spec.tolerance,
        Direction::Either => effect.abs() > spec.tolerance,
    };
    Some(Comparison {
        p_value,
        u,
        shift,
        effect,
        current_median,
        baseline_median,
        n_current: n1,
        n_baseline: n2,
        worse: significant && beyond,
    })
}

/// The standard normal's upper tail, P(Z > z), via erfc.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function (W. J. Cody's rational Chebyshev
/// approximation as in Numerical Recipes' `erfcc`; relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_tail_matches_tables() {
        assert!((normal_sf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_sf(1.959_964) - 0.025).abs() < 1e-6);
        assert!((normal_sf(2.326_348) - 0.01).abs() < 1e-6);
        assert!((normal_sf(-1.0) - 0.841_344_7).abs() < 1e-6);
    }

    #[test]
    #[allow(clippy::approx_constant)] // 3.14 is a measurement here, not pi
    fn matches_r_wilcox_test() {
        // R: wilcox.test(c(1.83,0.50,1.62,2.48,1.68,1.88,1.55,3.06,1.30),
        //                c(0.878,0.647,0.598,2.05,1.06,1.29,1.06,3.14,1.29),
        //                exact = FALSE, correct = TRUE)
        // W = 58, p-value = 0.1329 (ties: the two 1.29s and 1.06s).
        let x = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30];
        let y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29];
        let c = mann_whitney(&x, &y, &CompareSpec::default()).unwrap();
        assert_eq!(c.u, 58.0);
        assert!((c.p_value - 0.1329).abs() < 5e-4, "{}", c.p_value);
        assert!(!c.worse, "not significant at 0.98");
    }

    #[test]
    fn a_clear_increase_is_worse_and_its_effect_is_relative() {
        let base: Vec<f64> = (0..30).map(|i| 0.010 + (i % 5) as f64 * 0.0001).collect();
        let cur: Vec<f64> = base.iter().map(|v| v * 1.5).collect();
        let spec = CompareSpec {
            tolerance: 0.1,
            ..Default::default()
        };
        let c = mann_whitney(&cur, &base, &spec).unwrap();
        assert!(c.p_value < 1e-6, "{}", c.p_value);
        assert!((c.effect - 0.5).abs() < 0.05, "{}", c.effect);
        assert!(c.worse);
        // The same shift the other way is not worse for `increase`...
        let c = mann_whitney(&base, &cur, &spec).unwrap();
        assert!(c.p_value < 1e-6 && c.effect < 0.0 && !c.worse);
        // ...but is for `decrease` and `either`.
        for direction in [Direction::Decrease, Direction::Either] {
            let spec = CompareSpec { direction, ..spec };
            assert!(mann_whitney(&base, &cur, &spec).unwrap().worse);
        }
    }

    #[test]
    fn a_significant_change_within_tolerance_is_not_worse() {
        let base: Vec<f64> = (0..40).map(|i| 100.0 + (i % 4) as f64).collect();
        let cur: Vec<f64> = base.iter().map(|v| v * 1.05).collect();
        let spec = CompareSpec {
            tolerance: 0.1,
            ..Default::default()
        };
        let c = mann_whitney(&cur, &base, &spec).unwrap();
        assert!(c.p_value < 0.02);
        assert!(!c.worse, "5 % is within a 10 % tolerance");
    }

    #[test]
    fn identical_or_tiny_samples() {
        let same = [1.0; 10];
        let c = mann_whitney(&same, &same, &CompareSpec::default()).unwrap();
        assert_eq!((c.p_value, c.effect, c.worse), (1.0, 0.0, false));
        assert!(mann_whitney(&[1.0; 4], &same, &CompareSpec::default()).is_none());
        let nan = [f64::NAN; 10];
        assert!(mann_whitney(&nan, &same, &CompareSpec::default()).is_none());
        // A zero baseline: any increase is an infinite effect.
        let zeros = [0.0; 10];
        let c = mann_whitney(&[1.0; 10], &zeros, &CompareSpec::default()).unwrap();
        assert!(c.effect.is_infinite() && c.worse);
    }
}
