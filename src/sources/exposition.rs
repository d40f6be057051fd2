//! The Prometheus text exposition format (version 0.0.4), as the scrape
//! source reads a target's `/metrics`.
//!
//! Every sample line is one series, kept as Prometheus keeps it: its
//! metric name (as `__name__`) and its labels exactly as written — a
//! histogram's `_bucket` (with its `le`), `_sum` and `_count` lines and a
//! summary's quantile lines are series like any other — and its value.
//! Label values are unescaped (`\\`, `\"`, `\n`) and may hold any other
//! character, `,`, `=`, `}` and spaces included; a label with an empty value
//! is no label, as in Prometheus. Comments (`# HELP`, `# TYPE`, any line
//! starting with `#`) and blank lines are skipped; a sample's timestamp is
//! read and ignored (the guardian dates a sample at its scrape).
//!
//! A line that is not a sample fails the whole exposition, naming its line
//! and column, as Prometheus fails such a scrape (the check that reads it
//! is then inconclusive, never judged on part of a target's series).

use super::promql::Labels;
use std::fmt;

/// Where and why an exposition is not in the text format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.col, self.message
        )
    }
}

impl std::error::Error for ParseError {}

/// Every sample of `text`, in order: its labels (`__name__` included)
/// and value.
pub fn parse(text: &str) -> Result<Vec<(Labels, f64)>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut cursor = Cursor {
            chars: line.chars().collect(),
            at: 0,
            line: i + 1,
        };
        cursor.skip_blanks();
        if cursor.done() || cursor.peek() == Some('#') {
            continue;
        }
        out.push(cursor.sample()?);
    }
    Ok(out)
}

struct Cursor {
    chars: Vec<char>,
    at: usize,
    line: usize,
}

impl Cursor {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn done(&self) -> bool {
        self.at >= self.chars.len()
    }

    fn skip_blanks(&mut self) -> bool {
        let from = self.at;
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.at += 1;
        }
        self.at > from
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line: self.line,
            col: self.at + 1,
            message: message.into(),
        })
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*` (metric names) or, without `:`, a label
    /// name.
    fn name(&mut self, colons: bool) -> Option<String> {
        let ok = |c: char, first: bool| {
            c.is_ascii_alphabetic()
                || c == '_'
                || (colons && c == ':')
                || (!first && c.is_ascii_digit())
        };
        let from = self.at;
        while self.peek().is_some_and(|c| ok(c, self.at == from)) {
            self.at += 1;
        }
        (self.at > from).then(|| self.chars[from..self.at].iter().collect())
    }

    fn sample(&mut self) -> Result<(Labels, f64), ParseError> {
        let Some(metric) = self.name(true) else {
            return self.error("expected a metric name");
        };
        let mut labels = Labels::new();
        let mut spaced = self.skip_blanks();
        if self.peek() == Some('{') {
            self.at += 1;
            self.labels(&mut labels)?;
            spaced = self.skip_blanks();
        }
        labels.insert("__name__".into(), metric);
        if !spaced || self.done() {
            return match self.peek() {
                None => self.error("expected a value after the series"),
                Some(c) => self.error(format!("unexpected {c:?} after the series")),
            };
        }
        let from = self.at;
        let value = self.word();
        let Some(value) = super::promql::parse_float(&value) else {
            self.at = from;
            return self.error(format!("{value:?} is not a sample value"));
        };
        if self.skip_blanks() && !self.done() {
            let from = self.at;
            let ts = self.word();
            if ts.parse::<i64>().is_err() {
                self.at = from;
                return self.error(format!("{ts:?} is not a timestamp (milliseconds)"));
            }
            self.skip_blanks();
        }
        if let Some(c) = self.peek() {
            return self.error(format!("unexpected {c:?} after the sample"));
        }
        labels.retain(|_, v| !v.is_empty());
        Ok((labels, value))
    }

    /// After `{`: `name="value"` pairs separated by `,` (one may trail),
    /// then `}`.
    fn labels(&mut self, labels: &mut Labels) -> Result<(), ParseError> {
        loop {
            self.skip_blanks();
            if self.peek() == Some('}') {
                self.at += 1;
                return Ok(());
            }
            let col = self.at;
            let Some(name) = self.name(false) else {
                return self.error("expected a label name or `}`");
            };
            self.skip_blanks();
            if self.peek() != Some('=') {
                return self.error(format!("expected `=` after the label name `{name}`"));
            }
            self.at += 1;
            self.skip_blanks();
            let value = self.quoted()?;
            if name == "__name__" {
                self.at = col;
                return self.error("the metric name goes before `{`, not in a `__name__` label");
            }
            if labels.insert(name.clone(), value).is_some() {
                self.at = col;
                return self.error(format!("label `{name}` is given twice"));
            }
            self.skip_blanks();
            match self.peek() {
                Some(',') => self.at += 1,
                Some('}') => {}
                _ => return self.error("expected `,` or `}` after a label"),
            }
        }
    }

    /// A `"`-quoted label value, unescaped.
    fn quoted(&mut self) -> Result<String, ParseError> {
        if self.peek() != Some('"') {
            return self.error("expected a quoted label value");
        }
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return self.error("the label value's quote is not closed"),
                Some('"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some('n') => out.push('\n'),
                        Some(c @ ('\\' | '"')) => out.push(c),
                        // Kept as written, as Prometheus keeps it.
                        Some(c) => {
                            out.push('\\');
                            out.push(c);
                        }
                        None => return self.error("the label value's quote is not closed"),
                    }
                    self.at += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
    }

    fn word(&mut self) -> String {
        let from = self.at;
        while self.peek().is_some_and(|c| c != ' ' && c != '\t') {
            self.at += 1;
        }
        self.chars[from..self.at].iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(text: &str) -> Vec<String> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|(l, v)| {
                let labels: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                format!("{} {v}", labels.join(","))
            })
            .collect()
    }

    #[test]
    fn every_sample_line_is_a_series_as_written() {
        let text = "# HELP lat Latency.\n# TYPE lat histogram\nlat_bucket{le=\"0.1\",a=\"x\"} 3\nlat_bucket{le=\"+Inf\",a=\"x\"} 5\nlat_sum{a=\"x\"} 1.5 1700000000000\nlat_count{a=\"x\"} 5\n\n# TYPE req counter\nreq{code=\"200\"} 7\nup 1\n";
        assert_eq!(
            series(text),
            [
                "__name__=\"lat_bucket\",a=\"x\",le=\"0.1\" 3",
                "__name__=\"lat_bucket\",a=\"x\",le=\"+Inf\" 5",
                "__name__=\"lat_sum\",a=\"x\" 1.5",
                "__name__=\"lat_count\",a=\"x\" 5",
                "__name__=\"req\",code=\"200\" 7",
                "__name__=\"up\" 1",
            ]
        );
    }

    #[test]
    fn label_values_keep_commas_equals_braces_and_escapes() {
        let text = concat!(
            "http_requests_total{path=\"/search?q=a,b\",code=\"200\"} 10\n",
            "http_requests_total{path=\"/search?q=c\",code=\"200\"} 20\n",
            "http_requests_total{path=\"/x}y\", code = \"500\" ,} 30\n",
            "msg{text=\"say \\\"hi\\\"\\nback\\\\slash\\d\"} 1\n",
            "empty{a=\"\",b=\"1\"} NaN\n",
            "inf{} +Inf\n",
        );
        let got = parse(text).unwrap();
        let get = |i: usize, k: &str| got[i].0.get(k).cloned();
        assert_eq!(get(0, "path").as_deref(), Some("/search?q=a,b"));
        assert_eq!(get(1, "path").as_deref(), Some("/search?q=c"));
        assert_eq!(got[0].0.len(), 3, "{:?}", got[0]);
        assert_eq!(get(2, "path").as_deref(), Some("/x}y"));
        assert_eq!(get(2, "code").as_deref(), Some("500"));
        assert_eq!(got[2].1, 30.0);
        assert_eq!(
            get(3, "text").as_deref(),
            Some("say \"hi\"\nback\\slash\\d")
        );
        assert_eq!(get(4, "a"), None, "an empty value is no label");
        assert!(got[4].1.is_nan());
        assert_eq!(got[5].1, f64::INFINITY);
    }

    #[test]
    fn a_line_that_is_not_a_sample_is_named_with_its_column() {
        for (text, line, col, says) in [
            (
                "ok 1\nreq{code=500} 1\n",
                2,
                10,
                "expected a quoted label value",
            ),
            ("req{code=\"500\" 1\n", 1, 16, "expected `,` or `}`"),
            ("req{code=\"500} 1\n", 1, 17, "not closed"),
            ("req 1 2 3\n", 1, 9, "unexpected '3'"),
            ("req one\n", 1, 5, "\"one\" is not a sample value"),
            ("req 1 now\n", 1, 7, "not a timestamp"),
            ("req\n", 1, 4, "expected a value"),
            ("9req 1\n", 1, 1, "expected a metric name"),
            (
                "req{a=\"1\",a=\"2\"} 1\n",
                1,
                11,
                "label `a` is given twice",
            ),
            (
                "req{__name__=\"x\"} 1\n",
                1,
                5,
                "the metric name goes before",
            ),
            ("req{a=\"1\"}1\n", 1, 11, "unexpected '1' after the series"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!((e.line, e.col), (line, col), "{text:?}: {e}");
            assert!(e.message.contains(says), "{text:?}: {e}");
        }
    }
}
