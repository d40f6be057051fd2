//! The expanding notation of `input_series` and `probe_results`, as
//! `promtool test rules` writes series: space-separated tokens, each one
//! sample or a run of them.
//!
//! | token | expands to |
//! |---|---|
//! | `7`, `-0.5`, `1e-3` | one sample |
//! | `a+bxn`, `a-bxn` | `n + 1` samples: `a`, `a±b`, …, `a±n·b` |
//! | `axn` | `n + 1` samples of `a` (`a+0xn`) |
//! | `_` | one missing sample; `_xn`: `n` of them |
//! | `stale` | a staleness marker: the series ends here (until its next sample) |
//! | `fail` | (probes only) a failed probe; `failxn`: `n` of them |

/// One sample of a series, at its index times the interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Token {
    Value(f64),
    /// No sample at this instant (`_`).
    Missing,
    /// A staleness marker (`stale`).
    Stale,
    /// A failed probe (`fail`).
    Fail,
}

/// The longest expansion one token may ask for (a week of 1-second samples).
const MAX_RUN: usize = 7 * 24 * 3600;

/// Expands a series written in the notation above.
pub fn parse(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    for tok in text.split_whitespace() {
        expand(tok, &mut out).map_err(|e| format!("`{tok}`: {e}"))?;
        if out.len() > MAX_RUN {
            return Err(format!("more than {MAX_RUN} samples"));
        }
    }
    Ok(out)
}

fn expand(tok: &str, out: &mut Vec<Token>) -> Result<(), String> {
    match tok {
        "_" => out.push(Token::Missing),
        "stale" => out.push(Token::Stale),
        "fail" => out.push(Token::Fail),
        _ => {
            if let Some((word, n)) = tok.split_once('x') {
                let symbol = match word {
                    "_" => Some(Token::Missing),
                    "fail" => Some(Token::Fail),
                    _ => None,
                };
                let n = count(n)?;
                match symbol {
                    Some(t) => out.extend(std::iter::repeat_n(t, n)),
                    None => {
                        let (a, b) = start_and_step(word)?;
                        out.extend((0..=n).map(|i| Token::Value(a + b * i as f64)));
                    }
                }
            } else {
                out.push(Token::Value(number(tok)?));
            }
        }
    }
    Ok(())
}

fn count(n: &str) -> Result<usize, String> {
    let n: usize = n
        .parse()
        .map_err(|_| format!("the count after `x` must be a whole number, not {n:?}"))?;
    if n > MAX_RUN {
        return Err(format!("the count {n} is larger than {MAX_RUN}"));
    }
    Ok(n)
}

fn number(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .map_err(|_| format!("{s:?} is not a number, `_`, `stale` or `fail`"))
}

/// `a+b`, `a-b` or `a` (step 0). The sign of `a` and exponents (`1e-3`)
/// are not operators.
fn start_and_step(s: &str) -> Result<(f64, f64), String> {
    let bytes = s.as_bytes();
    let op = (1..bytes.len())
        .find(|&i| (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E'));
    match op {
        None => Ok((number(s)?, 0.0)),
        Some(i) => {
            let a = number(&s[..i])?;
            let b = number(&s[i + 1..])?;
            Ok((a, if bytes[i] == b'-' { -b } else { b }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Token::*;
    use super::*;

    fn values(s: &str) -> Vec<f64> {
        parse(s)
            .unwrap()
            .into_iter()
            .map(|t| match t {
                Value(v) => v,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn expands_runs_as_promtool_does() {
        assert_eq!(values("0+10x3"), [0.0, 10.0, 20.0, 30.0]);
        assert_eq!(values("10-2x2"), [10.0, 8.0, 6.0]);
        assert_eq!(values("1x4"), [1.0; 5]);
        assert_eq!(values("-2+4x2"), [-2.0, 2.0, 6.0]);
        assert_eq!(values("1e-3x1 2.5"), [0.001, 0.001, 2.5]);
        assert_eq!(values("1 2   3"), [1.0, 2.0, 3.0]);
    }

    #[test]
    fn symbols_repeat_n_times() {
        assert_eq!(
            parse("1 _x2 stale fail failx2 _").unwrap(),
            [
                Value(1.0),
                Missing,
                Missing,
                Stale,
                Fail,
                Fail,
                Fail,
                Missing
            ]
        );
        assert_eq!(parse("_x0").unwrap(), []);
    }

    #[test]
    fn bad_tokens_are_named() {
        let e = parse("1 abc").unwrap_err();
        assert!(e.starts_with("`abc`:"), "{e}");
        let e = parse("1+1xq").unwrap_err();
        assert!(e.contains("whole number"), "{e}");
        let e = parse("1x99999999").unwrap_err();
        assert!(e.contains("larger than"), "{e}");
        assert!(parse("1+x3").is_err());
    }
}
