//! The PromQL subset the scrape source evaluates itself (`source: scrape`),
//! over samples it keeps in memory: parsing ([`parse`], with errors that name
//! the unsupported part and its column) and evaluation at an instant
//! ([`Expr::eval`]) with Prometheus' own semantics (as of Prometheus 2.42,
//! the version Debian ships and the tests compare against):
//!
//! - instant selectors `name{label="v", l=~"re", l!="v", l!~"re"}` (the
//!   latest sample within the 5-minute lookback);
//! - `rate(sel[RANGE])` and `increase(sel[RANGE])`: samples in
//!   `[t - RANGE, t]`, counter resets added back, the result extrapolated
//!   to the range's edges only when the first and last samples are within
//!   1.1 average sample intervals of them (otherwise by half an interval),
//!   and never below the counter's zero point;
//! - `sum(...)`, `sum by (l, ...) (...)` and `sum(...) by (l, ...)`;
//! - `+ - * /` between vectors (one-to-one on every label but the metric
//!   name), between a vector and a number, and between numbers;
//! - `histogram_quantile(φ, v)` over `_bucket` series with `le`, grouped
//!   by every other label, interpolated linearly inside the bucket.
//!
//! Everything else (other functions and aggregations, `without`, `offset`,
//! `@`, `on`/`ignoring`/`group_left`, comparison and set operators,
//! subqueries) is refused when the rule pack is read.

use std::collections::BTreeMap;
use std::fmt;

/// Milliseconds since the epoch (as [`crate::model::Millis`]).
pub type Millis = i64;

/// A label set, metric name under `__name__`.
pub type Labels = BTreeMap<String, String>;

/// Prometheus' default lookback for instant selectors.
pub const LOOKBACK_MS: Millis = 5 * 60 * 1000;

/// Where the evaluator reads samples from.
pub trait SampleSource {
    /// Every series whose labels satisfy `matchers`, with its samples whose
    /// timestamps lie in `[from, to]`, in time order.
    fn select(
        &self,
        matchers: &[Matcher],
        from: Millis,
        to: Millis,
    ) -> Vec<(&Labels, Vec<(Millis, f64)>)>;
}

/// A parse error: what is wrong and the (1-based) column it starts at.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (query column {})", self.message, self.col)
    }
}

/// A label matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// Anchored regex for `=~` and `!~`.
    regex: Option<regex::Regex>,
}

impl Matcher {
    fn new(name: String, op: MatchOp, value: String, col: usize) -> Result<Self, ParseError> {
        let regex = match op {
            MatchOp::Re | MatchOp::NotRe => Some(
                regex::Regex::new(&format!("^(?:{value})$")).map_err(|e| ParseError {
                    col,
                    message: format!("invalid regular expression {value:?}: {e}"),
                })?,
            ),
            _ => None,
        };
        Ok(Self {
            name,
            op,
            value,
            regex,
        })
    }

    /// Whether `labels` satisfy it (a missing label is the empty string).
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match (&self.op, &self.regex) {
            (MatchOp::Eq, _) => v == self.value,
            (MatchOp::Ne, _) => v != self.value,
            (MatchOp::Re, Some(r)) => r.is_match(v),
            (MatchOp::NotRe, Some(r)) => !r.is_match(v),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
        }
    }
}

/// A parsed query of the subset.
#[derive(Debug, Clone)]
pub enum Expr {
    Number(f64),
    Selector(Vec<Matcher>),
    /// `rate` (`per_second`) or `increase` over a range selector.
    Rate {
        matchers: Vec<Matcher>,
        range: Millis,
        per_second: bool,
    },
    Sum {
        by: Option<Vec<String>>,
        inner: Box<Expr>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    HistogramQuantile {
        q: Box<Expr>,
        inner: Box<Expr>,
    },
}

/// The value of an expression at one instant.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<(Labels, f64)>),
}

impl Expr {
    /// The longest range any `rate`/`increase` in it reads (0 when none).
    pub fn max_range(&self) -> Millis {
        match self {
            Expr::Number(_) => 0,
            Expr::Selector(_) => LOOKBACK_MS,
            Expr::Rate { range, .. } => *range,
            Expr::Sum { inner, .. } => inner.max_range(),
            Expr::Binary { lhs, rhs, .. } => lhs.max_range().max(rhs.max_range()),
            Expr::HistogramQuantile { q, inner } => q.max_range().max(inner.max_range()),
        }
    }

    /// Evaluates the expression at `t` over `src`.
    pub fn eval(&self, src: &dyn SampleSource, t: Millis) -> Value {
        match self {
            Expr::Number(n) => Value::Scalar(*n),
            Expr::Selector(m) => Value::Vector(
                src.select(m, t - LOOKBACK_MS, t)
                    .into_iter()
                    .filter_map(|(l, s)| s.last().map(|&(_, v)| (l.clone(), v)))
                    .collect(),
            ),
            Expr::Rate {
                matchers,
                range,
                per_second,
            } => Value::Vector(
                src.select(matchers, t - range, t)
                    .into_iter()
                    .filter_map(|(l, s)| {
                        let v = extrapolated_rate(&s, t - range, t, *per_second)?;
                        Some((without_name(l), v))
                    })
                    .collect(),
            ),
            Expr::Sum { by, inner } => {
                let Value::Vector(v) = inner.eval(src, t) else {
                    return Value::Vector(Vec::new());
                };
                let mut groups: BTreeMap<Labels, f64> = BTreeMap::new();
                for (labels, x) in v {
                    let key: Labels = match by {
                        None => Labels::new(),
                        Some(by) => labels.into_iter().filter(|(k, _)| by.contains(k)).collect(),
                    };
                    *groups.entry(key).or_insert(0.0) += x;
                }
                Value::Vector(groups.into_iter().collect())
            }
            Expr::Binary { op, lhs, rhs } => binary(*op, lhs.eval(src, t), rhs.eval(src, t)),
            Expr::HistogramQuantile { q, inner } => {
                let q = match q.eval(src, t) {
                    Value::Scalar(q) => q,
                    Value::Vector(_) => f64::NAN,
                };
                let Value::Vector(v) = inner.eval(src, t) else {
                    return Value::Vector(Vec::new());
                };
                let mut groups: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
                for (mut labels, count) in v {
                    let Some(le) = labels.remove("le").and_then(|s| parse_float(&s)) else {
                        continue;
                    };
                    labels.remove("__name__");
                    groups.entry(labels).or_default().push((le, count));
                }
                Value::Vector(
                    groups
                        .into_iter()
                        .map(|(l, b)| (l, bucket_quantile(q, b)))
                        .collect(),
                )
            }
        }
    }
}

fn without_name(l: &Labels) -> Labels {
    let mut l = l.clone();
    l.remove("__name__");
    l
}

/// Prometheus' float syntax for `le` values (`+Inf`, `NaN`, decimals).
pub fn parse_float(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "+inf" | "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

fn binary(op: BinOp, lhs: Value, rhs: Value) -> Value {
    match (lhs, rhs) {
        (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(op.apply(a, b)),
        (Value::Vector(v), Value::Scalar(b)) => Value::Vector(
            v.into_iter()
                .map(|(l, a)| (without_name(&l), op.apply(a, b)))
                .collect(),
        ),
        (Value::Scalar(a), Value::Vector(v)) => Value::Vector(
            v.into_iter()
                .map(|(l, b)| (without_name(&l), op.apply(a, b)))
                .collect(),
        ),
        (Value::Vector(l), Value::Vector(r)) => {
            // One-to-one matching on every label but the metric name.
            let right: BTreeMap<Labels, f64> =
                r.into_iter().map(|(l, v)| (without_name(&l), v)).collect();
            Value::Vector(
                l.into_iter()
                    .filter_map(|(l, a)| {
                        let key = without_name(&l);
                        let b = *right.get(&key)?;
                        Some((key, op.apply(a, b)))
                    })
                    .collect(),
            )
        }
    }
}

/// `rate`/`increase` of one series' samples in `[range_start, range_end]`,
/// exactly as Prometheus 2.42's `extrapolatedRate` computes it.
pub fn extrapolated_rate(
    samples: &[(Millis, f64)],
    range_start: Millis,
    range_end: Millis,
    per_second: bool,
) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let (first_t, first_v) = samples[0];
    let (last_t, last_v) = samples[samples.len() - 1];
    let mut result = last_v - first_v;
    let mut last = 0.0;
    for &(_, v) in samples {
        if v < last {
            result += last;
        }
        last = v;
    }
    let mut to_start = (first_t - range_start) as f64 / 1000.0;
    let to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let average = sampled / (samples.len() - 1) as f64;
    if result > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        average / 2.0
    };
    result *= interval / sampled;
    if per_second {
        result /= (range_end - range_start) as f64 / 1000.0;
    }
    Some(result)
}

/// Prometheus' `bucketQuantile`: `buckets` are (upper bound, cumulative count).
pub fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if !buckets.last().is_some_and(|b| b.0 == f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce buckets with the same upper bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for (le, c) in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += c,
            _ => merged.push((le, c)),
        }
    }
    // Counts must not decrease.
    let mut max = f64::NEG_INFINITY;
    for b in &mut merged {
        if b.1 > max {
            max = b.1;
        } else {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = merged.len() - 1;
    let b = merged[..n].partition_point(|x| x.1 < rank);
    if b == n {
        return merged[n - 1].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let bucket_end = merged[b].0;
    let mut count = merged[b].1;
    let mut bucket_start = 0.0;
    if b > 0 {
        bucket_start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}

// ---------------------------------------------------------------- parsing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Duration(Millis),
    Sym(&'static str),
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

const SYMBOLS: &[&str] = &[
    "=~", "!~", "!=", "==", ">=", "<=", "(", ")", "{", "}", "[", "]", ",", "=", "+", "-", "*", "/",
    "%", "^", ">", "<", "@", ":",
];

impl<'a> Lexer<'a> {
    fn tokens(text: &'a str) -> Result<Vec<(Tok, usize)>, ParseError> {
        let mut lx = Lexer { text, pos: 0 };
        let mut out = Vec::new();
        let mut in_brackets = false;
        loop {
            lx.skip_space();
            let col = lx.col();
            let Some(c) = lx.peek() else { break };
            let tok = if in_brackets && c.is_ascii_digit() {
                lx.duration()?
            } else if c == '"' || c == '\'' || c == '`' {
                lx.string(c)?
            } else if c.is_ascii_digit()
                || (c == '.' && lx.text[lx.pos + 1..].starts_with(|d: char| d.is_ascii_digit()))
            {
                lx.number()?
            } else if c.is_ascii_alphabetic() || c == '_' {
                let start = lx.pos;
                while lx
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                {
                    lx.pos += 1;
                }
                let word = &lx.text[start..lx.pos];
                match word.to_ascii_lowercase().as_str() {
                    "inf" => Tok::Num(f64::INFINITY),
                    "nan" => Tok::Num(f64::NAN),
                    _ => Tok::Ident(word.to_string()),
                }
            } else if let Some(sym) = SYMBOLS.iter().find(|s| lx.text[lx.pos..].starts_with(**s)) {
                lx.pos += sym.len();
                match *sym {
                    "[" => in_brackets = true,
                    "]" => in_brackets = false,
                    _ => {}
                }
                Tok::Sym(sym)
            } else {
                return Err(ParseError {
                    col,
                    message: format!("unexpected character {c:?}"),
                });
            };
            out.push((tok, col));
        }
        Ok(out)
    }

    fn col(&self) -> usize {
        self.text[..self.pos].chars().count() + 1
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn skip_space(&mut self) {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => self.pos += c.len_utf8(),
                Some('#') => {
                    // A comment may hold any character: step whole ones.
                    while let Some(c) = self.peek().filter(|c| *c != '\n') {
                        self.pos += c.len_utf8();
                    }
                }
                _ => return,
            }
        }
    }

    fn number(&mut self) -> Result<Tok, ParseError> {
        let col = self.col();
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
        {
            self.pos += 1;
        }
        let text = &self.text[start..self.pos];
        if let Some(d) = parse_duration(text) {
            if !text.ends_with(|c: char| c.is_ascii_digit()) {
                return Ok(Tok::Duration(d));
            }
        }
        text.parse::<f64>().map(Tok::Num).map_err(|_| ParseError {
            col,
            message: format!("invalid number `{text}`"),
        })
    }

    fn duration(&mut self) -> Result<Tok, ParseError> {
        let col = self.col();
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
            self.pos += 1;
        }
        let text = &self.text[start..self.pos];
        parse_duration(text).map(Tok::Duration).ok_or(ParseError {
            col,
            message: format!("invalid duration `{text}` (e.g. 30s, 5m, 1h30m)"),
        })
    }

    fn string(&mut self, quote: char) -> Result<Tok, ParseError> {
        let col = self.col();
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(ParseError {
                    col,
                    message: "unterminated string".into(),
                });
            };
            self.pos += c.len_utf8();
            match c {
                c if c == quote => return Ok(Tok::Str(out)),
                '\\' if quote != '`' => {
                    let Some(e) = self.peek() else { continue };
                    self.pos += e.len_utf8();
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                }
                c => out.push(c),
            }
        }
    }
}

/// A Prometheus duration: units ms, s, m, h, d, w, y, combinable (`1h30m`).
fn parse_duration(text: &str) -> Option<Millis> {
    let mut total: Millis = 0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: Millis = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[unit_len..];
    }
    (total > 0).then_some(total)
}

const SUPPORTED: &str =
    "the scrape source evaluates rate, increase, sum [by (...)], histogram_quantile, + - * / and numbers";

struct Parser {
    toks: Vec<(Tok, usize)>,
    i: usize,
    end_col: usize,
}

/// Parses a query of the subset; the error names what is not supported.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let toks = Lexer::tokens(text)?;
    let mut p = Parser {
        toks,
        i: 0,
        end_col: text.chars().count() + 1,
    };
    let e = p.expr(0)?;
    if let Some((t, col)) = p.toks.get(p.i) {
        return Err(p.unsupported_at(t.clone(), *col));
    }
    Ok(e)
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|(t, _)| t)
    }

    fn col(&self) -> usize {
        self.toks.get(self.i).map_or(self.end_col, |(_, c)| *c)
    }

    fn next(&mut self) -> Option<(Tok, usize)> {
        let t = self.toks.get(self.i).cloned();
        self.i += 1;
        t
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            col: self.col(),
            message: message.into(),
        }
    }

    fn expect(&mut self, sym: &'static str) -> Result<(), ParseError> {
        match self.peek() {
            Some(Tok::Sym(s)) if *s == sym => {
                self.i += 1;
                Ok(())
            }
            Some(t) => {
                let t = t.clone();
                Err(self.error(format!("expected `{sym}`, found {}", describe(&t))))
            }
            None => Err(self.error(format!("expected `{sym}`, found the end of the query"))),
        }
    }

    fn unsupported_at(&self, t: Tok, col: usize) -> ParseError {
        let message = match &t {
            Tok::Sym(s @ ("==" | "!=" | ">" | "<" | ">=" | "<=")) => {
                format!("comparison operator `{s}` is not supported; {SUPPORTED}")
            }
            Tok::Sym(s @ ("%" | "^")) => format!("operator `{s}` is not supported; {SUPPORTED}"),
            Tok::Sym("@") => format!("the `@` modifier is not supported; {SUPPORTED}"),
            Tok::Ident(w) if w == "offset" => {
                format!("the `offset` modifier is not supported; {SUPPORTED}")
            }
            Tok::Ident(w) if ["and", "or", "unless"].contains(&w.as_str()) => {
                format!("set operator `{w}` is not supported; {SUPPORTED}")
            }
            Tok::Ident(w)
                if ["on", "ignoring", "group_left", "group_right", "bool"]
                    .contains(&w.as_str()) =>
            {
                format!(
                    "`{w}` is not supported (vectors match one-to-one on all labels); {SUPPORTED}"
                )
            }
            other => format!("unexpected {}", describe(other)),
        };
        ParseError { col, message }
    }

    /// Binary expressions by precedence: `+ -` (1) below `* /` (2).
    fn expr(&mut self, min_prec: u8) -> Result<Expr, ParseError> {
        let mut lhs = self.unary()?;
        loop {
            let (op, prec) = match self.peek() {
                Some(Tok::Sym("+")) => (BinOp::Add, 1),
                Some(Tok::Sym("-")) => (BinOp::Sub, 1),
                Some(Tok::Sym("*")) => (BinOp::Mul, 2),
                Some(Tok::Sym("/")) => (BinOp::Div, 2),
                _ => return Ok(lhs),
            };
            if prec < min_prec {
                return Ok(lhs);
            }
            self.i += 1;
            if let Some(Tok::Ident(w)) = self.peek() {
                if ["on", "ignoring", "bool", "group_left", "group_right"].contains(&w.as_str()) {
                    let (t, col) = self.toks[self.i].clone();
                    return Err(self.unsupported_at(t, col));
                }
            }
            let rhs = self.expr(prec + 1)?;
            lhs = Expr::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            Some(Tok::Sym("-")) => {
                self.i += 1;
                let e = self.unary()?;
                Ok(match e {
                    Expr::Number(n) => Expr::Number(-n),
                    e => Expr::Binary {
                        op: BinOp::Mul,
                        lhs: Box::new(Expr::Number(-1.0)),
                        rhs: Box::new(e),
                    },
                })
            }
            Some(Tok::Sym("+")) => {
                self.i += 1;
                self.unary()
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let col = self.col();
        let e = match self.next() {
            None => return Err(self.error("unexpected end of the query")),
            Some((Tok::Num(n), _)) => Expr::Number(n),
            Some((Tok::Sym("("), _)) => {
                let e = self.expr(0)?;
                self.expect(")")?;
                e
            }
            Some((Tok::Sym("{"), _)) => {
                self.i -= 1;
                Expr::Selector(self.selector(None)?)
            }
            Some((Tok::Ident(word), _)) => match self.peek() {
                Some(Tok::Sym("(")) => self.call(&word, col)?,
                _ if word == "sum" => self.call(&word, col)?,
                _ if ["by", "without"].contains(&word.as_str()) || is_aggregation(&word) => {
                    self.call(&word, col)?
                }
                _ => {
                    let m = self.selector(Some(word))?;
                    Expr::Selector(m)
                }
            },
            Some((t, col)) => return Err(self.unsupported_at(t, col)),
        };
        if let Some(Tok::Sym("[")) = self.peek() {
            return Err(match e {
                Expr::Selector(_) => self.error(format!(
                    "a range selector is only supported inside rate(...) or increase(...); {SUPPORTED}"
                )),
                _ => self.error(format!("subqueries are not supported; {SUPPORTED}")),
            });
        }
        if let Some(Tok::Ident(w)) = self.peek() {
            if w == "offset" {
                let (t, col) = self.toks[self.i].clone();
                return Err(self.unsupported_at(t, col));
            }
        }
        if let Some(Tok::Sym("@")) = self.peek() {
            let (t, col) = self.toks[self.i].clone();
            return Err(self.unsupported_at(t, col));
        }
        Ok(e)
    }

    /// `name{...}` or `{...}`; `name` already consumed.
    fn selector(&mut self, name: Option<String>) -> Result<Vec<Matcher>, ParseError> {
        let mut matchers = Vec::new();
        if let Some(n) = name {
            matchers.push(Matcher::new("__name__".into(), MatchOp::Eq, n, 0)?);
        }
        if let Some(Tok::Sym("{")) = self.peek() {
            self.i += 1;
            loop {
                if let Some(Tok::Sym("}")) = self.peek() {
                    self.i += 1;
                    break;
                }
                let label = match self.next() {
                    Some((Tok::Ident(l), _)) => l,
                    Some((t, col)) => {
                        return Err(ParseError {
                            col,
                            message: format!("expected a label name, found {}", describe(&t)),
                        })
                    }
                    None => return Err(self.error("unterminated label matchers")),
                };
                let op = match self.next() {
                    Some((Tok::Sym("="), _)) => MatchOp::Eq,
                    Some((Tok::Sym("!="), _)) => MatchOp::Ne,
                    Some((Tok::Sym("=~"), _)) => MatchOp::Re,
                    Some((Tok::Sym("!~"), _)) => MatchOp::NotRe,
                    Some((t, col)) => {
                        return Err(ParseError {
                            col,
                            message: format!(
                                "expected =, !=, =~ or !~ after `{label}`, found {}",
                                describe(&t)
                            ),
                        })
                    }
                    None => return Err(self.error("unterminated label matchers")),
                };
                let (value, col) = match self.next() {
                    Some((Tok::Str(s), col)) => (s, col),
                    Some((t, col)) => {
                        return Err(ParseError {
                            col,
                            message: format!(
                                "expected a quoted label value, found {}",
                                describe(&t)
                            ),
                        })
                    }
                    None => return Err(self.error("unterminated label matchers")),
                };
                matchers.push(Matcher::new(label, op, value, col)?);
                match self.peek() {
                    Some(Tok::Sym(",")) => self.i += 1,
                    Some(Tok::Sym("}")) => {}
                    _ => return Err(self.error("expected `,` or `}` in label matchers")),
                }
            }
        }
        if matchers.is_empty() {
            return Err(self.error("a selector needs a metric name or a label matcher"));
        }
        Ok(matchers)
    }

    fn call(&mut self, word: &str, col: usize) -> Result<Expr, ParseError> {
        match word {
            "rate" | "increase" => {
                self.expect("(")?;
                let name = match self.next() {
                    Some((Tok::Ident(n), _)) => Some(n),
                    Some((Tok::Sym("{"), _)) => {
                        self.i -= 1;
                        None
                    }
                    Some((t, c)) => {
                        return Err(ParseError {
                            col: c,
                            message: format!(
                                "{word}(...) takes a range selector such as `metric{{...}}[5m]`, found {}",
                                describe(&t)
                            ),
                        })
                    }
                    None => return Err(self.error("unexpected end of the query")),
                };
                let matchers = self.selector(name)?;
                let range = match (self.next(), self.next(), self.next()) {
                    (
                        Some((Tok::Sym("["), _)),
                        Some((Tok::Duration(d), _)),
                        Some((Tok::Sym("]"), _)),
                    ) => d,
                    _ => {
                        self.i -= 1;
                        return Err(self.error(format!(
                            "{word}(...) needs a range such as `[5m]` after its selector (subqueries are not supported)"
                        )));
                    }
                };
                if let Some(Tok::Ident(w)) = self.peek() {
                    if w == "offset" {
                        let (t, col) = self.toks[self.i].clone();
                        return Err(self.unsupported_at(t, col));
                    }
                }
                self.expect(")")?;
                Ok(Expr::Rate {
                    matchers,
                    range,
                    per_second: word == "rate",
                })
            }
            "sum" => {
                let mut by = self.grouping()?;
                self.expect("(")?;
                let inner = self.expr(0)?;
                self.expect(")")?;
                if by.is_none() {
                    by = self.grouping()?;
                }
                Ok(Expr::Sum {
                    by,
                    inner: Box::new(inner),
                })
            }
            "histogram_quantile" => {
                self.expect("(")?;
                let q = self.expr(0)?;
                self.expect(",")?;
                let inner = self.expr(0)?;
                self.expect(")")?;
                Ok(Expr::HistogramQuantile {
                    q: Box::new(q),
                    inner: Box::new(inner),
                })
            }
            "by" | "without" => Err(ParseError {
                col,
                message: format!("`{word}` must follow an aggregation such as sum"),
            }),
            other if is_aggregation(other) => Err(ParseError {
                col,
                message: format!("aggregation `{other}` is not supported; {SUPPORTED}"),
            }),
            other => Err(ParseError {
                col,
                message: format!("function `{other}` is not supported; {SUPPORTED}"),
            }),
        }
    }

    /// An optional `by (a, b)`; `without` is refused.
    fn grouping(&mut self) -> Result<Option<Vec<String>>, ParseError> {
        match self.peek() {
            Some(Tok::Ident(w)) if w == "by" => {
                self.i += 1;
                self.expect("(")?;
                let mut labels = Vec::new();
                loop {
                    match self.next() {
                        Some((Tok::Sym(")"), _)) => break,
                        Some((Tok::Ident(l), _)) => {
                            labels.push(l);
                            match self.peek() {
                                Some(Tok::Sym(",")) => self.i += 1,
                                Some(Tok::Sym(")")) => {}
                                _ => return Err(self.error("expected `,` or `)` in `by (...)`")),
                            }
                        }
                        Some((t, col)) => {
                            return Err(ParseError {
                                col,
                                message: format!(
                                    "expected a label name in `by (...)`, found {}",
                                    describe(&t)
                                ),
                            })
                        }
                        None => return Err(self.error("unterminated `by (...)`")),
                    }
                }
                Ok(Some(labels))
            }
            Some(Tok::Ident(w)) if w == "without" => Err(self.error(format!(
                "`without` is not supported (use `by`); {SUPPORTED}"
            ))),
            _ => Ok(None),
        }
    }
}

fn is_aggregation(word: &str) -> bool {
    [
        "avg",
        "min",
        "max",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
    ]
    .contains(&word)
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(w) => format!("`{w}`"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Num(n) => format!("number {n}"),
        Tok::Duration(d) => format!("duration {d}ms"),
        Tok::Sym(s) => format!("`{s}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem(Vec<(Labels, Vec<(Millis, f64)>)>);

    impl SampleSource for Mem {
        fn select(
            &self,
            m: &[Matcher],
            from: Millis,
            to: Millis,
        ) -> Vec<(&Labels, Vec<(Millis, f64)>)> {
            self.0
                .iter()
                .filter(|(l, _)| m.iter().all(|m| m.matches(l)))
                .map(|(l, s)| {
                    (
                        l,
                        s.iter()
                            .copied()
                            .filter(|(t, _)| *t >= from && *t <= to)
                            .collect(),
                    )
                })
                .collect()
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_comment_may_hold_any_character() {
        // Found by fuzzing: the lexer stepped a comment byte by byte and
        // sliced inside a multi-byte character.
        assert!(parse("sum(up) # é ü — ☃\n").is_ok());
        let e = parse("sum(rate(# de \u{8c}\u{e0}x (dx{s").unwrap_err();
        assert!(!e.message.is_empty());
    }

    #[test]
    fn rate_extrapolates_like_prometheus() {
        // Samples every 10 s, 5 s from each edge of a 60 s range: extrapolated
        // to both edges (5 s < 1.1 × 10 s).
        let s: Vec<_> = (0..6)
            .map(|i| (5_000 + i * 10_000, 1000.0 + 10.0 * i as f64))
            .collect();
        let r = extrapolated_rate(&s, 0, 60_000, true).unwrap();
        assert!((r - 1.0).abs() < 1e-12, "{r}");
        // A counter reset adds the value before it back.
        let s = [(0, 100.0), (10_000, 110.0), (20_000, 5.0), (30_000, 15.0)];
        let inc = extrapolated_rate(&s, 0, 30_000, false).unwrap();
        assert!((inc - (15.0 - 100.0 + 110.0)).abs() < 1e-12, "{inc}");
        // Far from the start: extrapolated by half an interval only.
        let s = [
            (30_000, 100.0),
            (40_000, 110.0),
            (50_000, 120.0),
            (60_000, 130.0),
        ];
        let inc = extrapolated_rate(&s, 0, 60_000, false).unwrap();
        assert!((inc - 30.0 * 35.0 / 30.0).abs() < 1e-12, "{inc}");
        // Never extrapolated below zero: a counter starting at 1.
        let s = [(8_000, 1.0), (18_000, 11.0)];
        let inc = extrapolated_rate(&s, 0, 20_000, false).unwrap();
        assert!(
            (inc - 10.0 * (10.0 + 1.0 + 2.0) / 10.0).abs() < 1e-12,
            "{inc}"
        );
        assert_eq!(extrapolated_rate(&s[..1], 0, 20_000, false), None);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let b = vec![(0.1, 50.0), (0.2, 90.0), (f64::INFINITY, 100.0)];
        assert!((bucket_quantile(0.5, b.clone()) - 0.1).abs() < 1e-12);
        assert!((bucket_quantile(0.7, b.clone()) - 0.15).abs() < 1e-12);
        assert_eq!(bucket_quantile(0.99, b.clone()), 0.2);
        assert!(bucket_quantile(0.5, vec![(0.1, 1.0)]).is_nan());
        assert!(bucket_quantile(0.5, vec![(0.1, 0.0), (f64::INFINITY, 0.0)]).is_nan());
    }

    #[test]
    fn evaluates_the_error_ratio() {
        let src = Mem(vec![
            (
                labels(&[("__name__", "req_total"), ("code", "200"), ("svc", "a")]),
                (0..=6).map(|i| (i * 10_000, 900.0 * i as f64)).collect(),
            ),
            (
                labels(&[("__name__", "req_total"), ("code", "500"), ("svc", "a")]),
                (0..=6).map(|i| (i * 10_000, 100.0 * i as f64)).collect(),
            ),
        ]);
        let q = parse(
            r#"sum by (svc) (rate(req_total{code=~"5.."}[1m])) / sum by (svc) (rate(req_total[1m]))"#,
        )
        .unwrap();
        let Value::Vector(v) = q.eval(&src, 60_000) else {
            panic!()
        };
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].0, labels(&[("svc", "a")]));
        assert!((v[0].1 - 0.1).abs() < 1e-12, "{}", v[0].1);
        assert_eq!(q.max_range(), 60_000);
        let q = parse("sum(increase(req_total[30s])) * 2").unwrap();
        let Value::Vector(v) = q.eval(&src, 60_000) else {
            panic!()
        };
        assert!((v[0].1 - 2.0 * 3000.0).abs() < 1e-9, "{v:?}");
    }

    #[test]
    fn unsupported_parts_are_named_with_their_column() {
        let e = |q: &str| parse(q).unwrap_err().to_string();
        assert!(
            e("avg(rate(x[5m]))").starts_with("aggregation `avg` is not supported"),
            "{}",
            e("avg(x)")
        );
        assert!(e("sum without (a) (x)").contains("`without` is not supported"));
        assert!(e("rate(x[5m] offset 1h)").contains("`offset` modifier"));
        assert!(e("x > 1").starts_with("comparison operator `>`"));
        assert!(e("label_replace(x, \"a\", \"b\", \"c\", \"d\")")
            .starts_with("function `label_replace`"));
        assert!(e("x[5m]").contains("only supported inside rate"));
        assert_eq!(parse("x / on(a) y").unwrap_err().col, 5);
        assert!(e("rate(x{a=~\"(\"}[5m])").contains("invalid regular expression"));
        assert!(e("sum(x").contains("expected `)`"));
        assert!(
            parse("histogram_quantile(0.95, sum by (le) (rate(lat_bucket{job=\"a\"}[5m])))")
                .is_ok()
        );
        assert!(parse("sum(rate(x[1m])) by (a, b)").is_ok());
    }
}
