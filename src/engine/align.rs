//! Lining up a check's series with what it is judged against: a baseline
//! (canary vs stable, a week earlier, before the release) and a traffic
//! floor (`min_traffic`).

use super::Sample;
use crate::model::Millis;

/// The series one key of the check is compared with: the baseline series of
/// the same key, else the baseline's only series (canary and stable differ
/// in their labels), else none.
fn partner<'a>(key: &str, baseline: &'a [(String, Vec<Sample>)]) -> Option<&'a [Sample]> {
    baseline
        .iter()
        .find(|(k, _)| k == key)
        .or(match baseline {
            [only] => Some(only),
            _ => None,
        })
        .map(|(_, s)| s.as_slice())
}

/// Sets each sample's baseline to the baseline's value at the same instant
/// (baseline instants shifted by `shift`: the `offset` it was read at).
/// Returns how many samples got one.
pub fn attach_baseline(
    series: &mut [(String, Vec<Sample>)],
    baseline: &[(String, Vec<Sample>)],
    shift: Millis,
) -> usize {
    let mut n = 0;
    for (key, samples) in series.iter_mut() {
        let Some(base) = partner(key, baseline) else {
            continue;
        };
        let mut j = 0;
        for s in samples.iter_mut() {
            while j < base.len() && base[j].ts + shift < s.ts {
                j += 1;
            }
            if let Some(b) = base.get(j).filter(|b| b.ts + shift == s.ts && b.ok) {
                s.base = b.value;
                n += 1;
            }
        }
    }
    n
}

/// Sets every sample's baseline to one value (a mean before the release).
pub fn attach_constant(series: &mut [(String, Vec<Sample>)], base: f64) {
    for (_, samples) in series.iter_mut() {
        for s in samples.iter_mut() {
            s.base = base;
        }
    }
}

/// The mean of every usable value of `series` (NaN without one).
pub fn mean(series: &[(String, Vec<Sample>)]) -> f64 {
    let (mut sum, mut n) = (0.0, 0u64);
    for s in series.iter().flat_map(|(_, s)| s) {
        if s.ok && s.value.is_finite() {
            sum += s.value;
            n += 1;
        }
    }
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

/// What [`gate_traffic`] left out.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Gated {
    /// Samples dropped because traffic was at or below the floor (or unknown).
    pub dropped: usize,
    pub kept: usize,
    /// Traffic at the last dropped sample (NaN: no traffic data there).
    pub last_low: Option<(Millis, f64)>,
}

/// Drops the samples taken while traffic was at or below `floor` (or not
/// known): below the floor nothing is judged, and the hole they leave acts
/// like a gap in the data (pending levels reset, held levels resolve).
pub fn gate_traffic(
    series: &mut [(String, Vec<Sample>)],
    traffic: &[(String, Vec<Sample>)],
    floor: f64,
) -> Gated {
    let mut g = Gated::default();
    for (key, samples) in series.iter_mut() {
        let t = partner(key, traffic).unwrap_or(&[]);
        let mut j = 0;
        samples.retain(|s| {
            while j < t.len() && t[j].ts < s.ts {
                j += 1;
            }
            let v = t
                .get(j)
                .filter(|x| x.ts == s.ts && x.ok)
                .map_or(f64::NAN, |x| x.value);
            let keep = v > floor;
            if keep {
                g.kept += 1;
            } else {
                g.dropped += 1;
                g.last_low = Some((s.ts, v));
            }
            keep
        });
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(points: &[(Millis, f64)]) -> Vec<Sample> {
        points.iter().map(|&(t, v)| Sample::ok(t, v)).collect()
    }

    #[test]
    fn baselines_line_up_by_key_or_by_the_only_series() {
        let mut cur = vec![(
            "{pod=\"canary\"}".to_string(),
            s(&[(0, 1.0), (10, 2.0), (20, 3.0)]),
        )];
        let stable = vec![("{pod=\"stable\"}".to_string(), s(&[(0, 0.5), (20, 0.7)]))];
        assert_eq!(attach_baseline(&mut cur, &stable, 0), 2);
        let bases: Vec<f64> = cur[0].1.iter().map(|x| x.base).collect();
        assert_eq!(bases[0], 0.5);
        assert!(bases[1].is_nan());
        assert_eq!(bases[2], 0.7);
        // A week earlier: read at t - 1w, shifted forward.
        let week = 7 * 86_400_000;
        let mut cur = vec![("a".to_string(), s(&[(week, 1.0)]))];
        let before = vec![
            ("a".to_string(), s(&[(0, 0.25)])),
            ("b".to_string(), s(&[(0, 9.0)])),
        ];
        assert_eq!(attach_baseline(&mut cur, &before, week), 1);
        assert_eq!(cur[0].1[0].base, 0.25);
        // Two baseline series and no matching key: none.
        let mut cur = vec![("c".to_string(), s(&[(week, 1.0)]))];
        assert_eq!(attach_baseline(&mut cur, &before, week), 0);
    }

    #[test]
    fn low_traffic_samples_are_dropped() {
        let mut cur = vec![(
            "{}".to_string(),
            s(&[(0, 0.5), (10, 0.5), (20, 0.5), (30, 0.5)]),
        )];
        let traffic = vec![("{}".to_string(), s(&[(0, 0.01), (10, 5.0), (30, 1.0)]))];
        let g = gate_traffic(&mut cur, &traffic, 1.0);
        assert_eq!((g.kept, g.dropped), (1, 3));
        assert_eq!(cur[0].1.iter().map(|x| x.ts).collect::<Vec<_>>(), vec![10]);
        assert_eq!(g.last_low, Some((30, 1.0)));
        assert_eq!(mean(&traffic), (0.01 + 5.0 + 1.0) / 3.0);
        let mut c = cur.clone();
        attach_constant(&mut c, 0.1);
        assert_eq!(c[0].1[0].base, 0.1);
    }
}
