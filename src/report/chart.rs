//! Charts of a check's values: an inline SVG (reports, the status page)
//! and a Unicode sparkline (Markdown, the terminal). Pure functions of the
//! points, the thresholds and the level changes to mark.

use crate::model::{format_value, Level, Millis};
use std::fmt::Write;

/// The colour of a level or state (shared by every HTML rendering).
pub fn colour(state: &str) -> &'static str {
    match state {
        "ok" | "verified" | "passed" | "succeeded" | "sent" => "#2e7d32",
        "rolled_back" => "#ef6c00",
        "warning" => "#f9a825",
        "critical" | "rollback_failed" | "failed" => "#c62828",
        "rollback" | "rolling_back" => "#6a1b9a",
        "watching" => "#0277bd",
        "inconclusive" | "not_verified" => "#607d8b",
        _ => "#9e9e9e",
    }
}

/// One horizontal line: a level's `above` or `below` bound.
#[derive(Debug, Clone, Copy)]
pub struct Line {
    pub level: Level,
    pub value: f64,
}

/// One vertical mark: a decision at an instant, and the level it moved to.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub at: Millis,
    pub level: Option<Level>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG line chart `width`×`height` of `points` over `[from, to]` with
/// the threshold `lines` dashed and the `marks` as vertical lines. A point
/// without a value breaks the line and is drawn as a red tick at the bottom.
pub fn svg(
    title: &str,
    points: &[(Millis, Option<f64>)],
    lines: &[Line],
    marks: &[Mark],
    (from, to): (Millis, Millis),
    (width, height): (u32, u32),
) -> String {
    let (w, h) = (f64::from(width), f64::from(height));
    let (left, right, top, bottom) = (48.0, 8.0, 8.0, 18.0);
    let values = points
        .iter()
        .filter_map(|p| p.1)
        .chain(lines.iter().map(|l| l.value));
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    lo = lo.min(0.0);
    if hi <= lo {
        hi = lo + 1.0;
    }
    hi += (hi - lo) * 0.08;
    let span = (to - from).max(1) as f64;
    let x = |t: Millis| left + (t - from) as f64 / span * (w - left - right);
    let y = |v: f64| top + (1.0 - (v - lo) / (hi - lo)) * (h - top - bottom);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}"><title>{}</title>"#,
        escape(title)
    );
    let _ = write!(
        s,
        r##"<rect x="{left}" y="{top}" width="{:.1}" height="{:.1}" fill="#fafafa" stroke="#ccc"/>"##,
        w - left - right,
        h - top - bottom
    );
    for (v, anchor) in [(hi, top + 9.0), (lo, h - bottom)] {
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{anchor:.1}" font-size="9" text-anchor="end" fill="#555">{}</text>"##,
            left - 3.0,
            escape(&format_value(round3(v)))
        );
    }
    // HH:MM, or HH:MM:SS when the chart spans less than an hour.
    let clock = if to - from < 3_600_000 {
        11..19
    } else {
        11..16
    };
    for (t, anchor) in [(from, "start"), (to, "end")] {
        let label = crate::model::rfc3339(t);
        let label = label.get(clock.clone()).unwrap_or("");
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="{anchor}" fill="#555">{label}</text>"##,
            x(t),
            h - 5.0
        );
    }
    for l in lines {
        let _ = write!(
            s,
            r#"<line class="threshold" x1="{left}" x2="{:.1}" y1="{yv:.1}" y2="{yv:.1}" stroke="{}" stroke-dasharray="4 3"><title>{} {}</title></line>"#,
            w - right,
            colour(l.level.as_str()),
            l.level,
            escape(&format_value(l.value)),
            yv = y(l.value)
        );
    }
    for m in marks {
        let c = m.level.map(|l| colour(l.as_str())).unwrap_or("#607d8b");
        let _ = write!(
            s,
            r#"<line class="mark" x1="{xv:.1}" x2="{xv:.1}" y1="{top}" y2="{:.1}" stroke="{c}" stroke-width="1.5" opacity="0.8"/>"#,
            h - bottom,
            xv = x(m.at.clamp(from, to))
        );
    }
    let mut segment: Vec<String> = Vec::new();
    let flush = |seg: &mut Vec<String>, s: &mut String| {
        if seg.len() == 1 {
            let _ = write!(
                s,
                r##"<circle cx="{}" r="2" fill="#1565c0"/>"##,
                seg[0].replace(',', "\" cy=\"")
            );
        } else if seg.len() > 1 {
            let _ = write!(
                s,
                r##"<polyline class="values" fill="none" stroke="#1565c0" stroke-width="1.5" points="{}"/>"##,
                seg.join(" ")
            );
        }
        seg.clear();
    };
    for &(t, v) in points {
        match v {
            Some(v) => segment.push(format!("{:.1},{:.1}", x(t), y(v))),
            None => {
                flush(&mut segment, &mut s);
                let _ = write!(
                    s,
                    r##"<line x1="{xv:.1}" x2="{xv:.1}" y1="{:.1}" y2="{:.1}" stroke="#c62828" stroke-width="2"/>"##,
                    h - bottom - 6.0,
                    h - bottom,
                    xv = x(t)
                );
            }
        }
    }
    flush(&mut segment, &mut s);
    if points.is_empty() {
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#777">no values yet</text>"##,
            w / 2.0,
            h / 2.0
        );
    }
    s.push_str("</svg>");
    s
}

fn round3(v: f64) -> f64 {
    let m = 10f64.powi(3 - v.abs().log10().ceil().max(0.0) as i32);
    (v * m).round() / m
}

/// A sparkline of at most `width` characters: each character the highest
/// value of its share of the points, `·` where none had a value.
pub fn sparkline(points: &[(Millis, Option<f64>)], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if points.is_empty() || width == 0 {
        return String::new();
    }
    let per = points.len().div_ceil(width);
    let cells: Vec<Option<f64>> = points
        .chunks(per)
        .map(|c| c.iter().filter_map(|p| p.1).reduce(f64::max))
        .collect();
    let (lo, hi) = cells
        .iter()
        .flatten()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    cells
        .iter()
        .map(|c| match c {
            None => '·',
            Some(v) if hi > lo => BARS[(((v - lo) / (hi - lo)) * 7.0).round() as usize],
            Some(_) => BARS[0],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_values_thresholds_marks_and_gaps() {
        let pts = vec![(0, Some(0.0)), (10, Some(1.0)), (20, None), (30, Some(9.0))];
        let svg = svg(
            "e <x>",
            &pts,
            &[Line {
                level: Level::Rollback,
                value: 5.0,
            }],
            &[Mark {
                at: 30,
                level: Some(Level::Rollback),
            }],
            (0, 30),
            (300, 100),
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("<title>e &lt;x&gt;</title>"));
        assert_eq!(svg.matches("class=\"threshold\"").count(), 1);
        assert_eq!(svg.matches("class=\"mark\"").count(), 1);
        // The gap splits the values: a polyline of two, then a single dot.
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(svg.contains("stroke=\"#6a1b9a\""));
    }

    #[test]
    fn sparklines_scale_and_show_gaps() {
        let pts: Vec<_> = [0.0, 1.0, 2.0, 7.0]
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as Millis, Some(v)))
            .chain([(9, None)])
            .collect();
        assert_eq!(sparkline(&pts, 10), "▁▂▃█·");
        assert_eq!(sparkline(&pts, 2).chars().count(), 2);
        assert_eq!(sparkline(&[], 5), "");
    }
}
