//! The dump: what a store holds, as versioned JSON lines, so the state of
//! ended and running releases moves from one store to another (SQLite to
//! PostgreSQL, or back) with `release-guardian export` and `import`.
//!
//! This module owns the format, the same for every backend: the tables and
//! their columns in backend-neutral types ([`TABLES`], [`Ty`], [`Value`]),
//! the [`Writer`] and the [`Reader`] (which checks every line against the
//! tables and names the line of any mistake). Each backend reads its rows
//! into a [`Writer`] and writes a [`Reader`]'s rows in one transaction, in
//! its own file (`sqlite_dump.rs`, `postgres_dump.rs`).
//!
//! A dump is, one JSON object per line:
//! 1. the header: `{"format": "release-guardian-dump", "version": 1,
//!    "from": BACKEND, "exported_at": RFC3339}`;
//! 2. one line per row, `{"table": NAME, "row": {COLUMN: VALUE, ...}}`,
//!    the tables in the order of [`TABLES`] (a row's release comes before it);
//! 3. the end line, `{"end": {TABLE: ROWS, ...}}`: a dump without it, or
//!    whose counts differ from its rows, is truncated and refused.
//!
//! What a restart needs is in it: releases, check states, charted points,
//! the decision timeline, the outbox, rollbacks, webhook deliveries and the
//! audit log. Leases are not: a watch, an outbox row's delivery claim are
//! free in the target, so whichever daemon runs on it claims them (a
//! rollback's `claimed_by` stays: it is the record of who ran the hook).
//! Replicas' heartbeats are not either (they are liveness, not state).

use super::StoreError;
use serde_json::{json, Map};
use std::fmt;
use std::io::{BufRead, Write};

/// The header's `format`.
pub const FORMAT: &str = "release-guardian-dump";

/// The version of the format this build writes and reads.
pub const VERSION: u64 = 1;

/// A column's type, the same in every backend (SQLite's `INTEGER` 0/1 and
/// PostgreSQL's `BOOLEAN` are both [`Ty::Bool`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Text,
    Int,
    Real,
    Bool,
}

/// One column of a dumped table.
#[derive(Debug)]
pub struct Column {
    pub name: &'static str,
    pub ty: Ty,
    pub nullable: bool,
}

/// One dumped table: its columns (the ones a dump carries, in this order)
/// and the key its rows are written in the order of.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
    pub key: &'static [&'static str],
}

impl Table {
    /// `a, b, c`: the columns, for SQL.
    pub fn column_list(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|c| c.name).collect();
        names.join(", ")
    }
}

const fn req(name: &'static str, ty: Ty) -> Column {
    Column {
        name,
        ty,
        nullable: false,
    }
}

const fn opt(name: &'static str, ty: Ty) -> Column {
    Column {
        name,
        ty,
        nullable: true,
    }
}

use Ty::{Bool, Int, Real, Text};

/// Every table a dump carries, parents first (the order rows are written
/// and must be read in). Leases (`releases.lease_owner`,
/// `lease_expires_at`; `notifications.claimed_by`, `claim_expires_at`) and
/// `heartbeats` are left out on purpose (see the module docs).
pub const TABLES: &[Table] = &[
    Table {
        name: "releases",
        columns: &[
            req("seq", Int),
            req("id", Text),
            req("service", Text),
            req("environment", Text),
            req("version", Text),
            opt("previous_version", Text),
            req("annotations", Text),
            req("status", Text),
            req("started_at", Int),
            opt("next_check_at", Int),
            opt("ended_at", Int),
            req("acked", Bool),
            opt("superseded_by", Text),
            opt("silence_note", Text),
        ],
        key: &["seq"],
    },
    Table {
        name: "checks",
        columns: &[
            req("release_id", Text),
            req("name", Text),
            req("state", Text),
            req("level", Text),
            opt("value", Real),
            req("tracker", Text),
            opt("evaluated_until", Int),
            req("updated_at", Int),
            opt("logs", Text),
        ],
        key: &["release_id", "name"],
    },
    Table {
        name: "check_points",
        columns: &[
            req("release_id", Text),
            req("check_name", Text),
            req("at", Int),
            opt("value", Real),
        ],
        key: &["release_id", "check_name", "at"],
    },
    Table {
        name: "decisions",
        columns: &[
            req("id", Int),
            req("release_id", Text),
            req("at", Int),
            opt("check_name", Text),
            opt("level", Text),
            req("action", Text),
            req("reason", Text),
            opt("observed_at", Int),
            opt("evidence", Text),
        ],
        key: &["id"],
    },
    Table {
        name: "notifications",
        columns: &[
            req("key", Text),
            req("release_id", Text),
            req("notifier", Text),
            req("message", Text),
            req("status", Text),
            req("attempts", Int),
            opt("last_error", Text),
            req("created_at", Int),
            opt("sent_at", Int),
            req("next_attempt_at", Int),
        ],
        key: &["key"],
    },
    Table {
        name: "rollbacks",
        columns: &[
            req("release_id", Text),
            req("state", Text),
            req("reason", Text),
            req("triggered_by", Text),
            req("requested_at", Int),
            opt("started_at", Int),
            opt("finished_at", Int),
            opt("exit_code", Int),
            opt("output", Text),
            opt("claimed_by", Text),
        ],
        key: &["release_id"],
    },
    Table {
        name: "deliveries",
        columns: &[
            req("source", Text),
            req("id", Text),
            req("release_id", Text),
            req("at", Int),
        ],
        key: &["source", "id"],
    },
    Table {
        name: "audit",
        columns: &[
            req("seq", Int),
            req("at", Int),
            req("actor", Text),
            req("action", Text),
            req("release_id", Text),
            req("detail", Text),
            opt("client", Text),
        ],
        key: &["seq"],
    },
];

/// One value of a row, in the column's [`Ty`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Int(i64),
    Real(f64),
    Bool(bool),
}

impl Value {
    /// As JSON: a non-finite real (which JSON has no number for) is the
    /// string `NaN`, `Infinity` or `-Infinity`.
    fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Text(s) => json!(s),
            Value::Int(i) => json!(i),
            Value::Real(f) if f.is_finite() => json!(f),
            Value::Real(f) if f.is_nan() => json!("NaN"),
            Value::Real(f) if *f > 0.0 => json!("Infinity"),
            Value::Real(_) => json!("-Infinity"),
            Value::Bool(b) => json!(b),
        }
    }

    /// The value of `column` in a dump line; `None`: not of its type.
    fn from_json(column: &Column, v: &serde_json::Value) -> Option<Value> {
        use serde_json::Value as J;
        Some(match (column.ty, v) {
            (_, J::Null) if column.nullable => Value::Null,
            (Ty::Text, J::String(s)) => Value::Text(s.clone()),
            (Ty::Int, J::Number(n)) => Value::Int(n.as_i64()?),
            (Ty::Real, J::Number(n)) => Value::Real(n.as_f64()?),
            (Ty::Real, J::String(s)) => Value::Real(match s.as_str() {
                "NaN" => f64::NAN,
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                _ => return None,
            }),
            (Ty::Bool, J::Bool(b)) => Value::Bool(*b),
            _ => return None,
        })
    }
}

/// What a column of type `ty` holds, for messages.
fn expected(column: &Column) -> String {
    let ty = match column.ty {
        Ty::Text => "a string",
        Ty::Int => "an integer",
        Ty::Real => "a number",
        Ty::Bool => "true or false",
    };
    if column.nullable {
        format!("{ty} or null")
    } else {
        ty.to_string()
    }
}

/// Rows per table, in the order of [`TABLES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts(pub Vec<u64>);

impl Default for Counts {
    fn default() -> Self {
        Counts(vec![0; TABLES.len()])
    }
}

impl Counts {
    /// Rows of the table named `name`.
    pub fn of(&self, name: &str) -> u64 {
        TABLES
            .iter()
            .position(|t| t.name == name)
            .map_or(0, |i| self.0[i])
    }
}

impl fmt::Display for Counts {
    /// `3 releases, 12 checks, ...`: every table, zeros included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = TABLES
            .iter()
            .zip(&self.0)
            .map(|(t, n)| format!("{n} {}", t.name))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// A failure to write or read a dump, or to move it into a store: `line`
/// is the dump's line it is about (1 is the header), when it is about one.
#[derive(Debug)]
pub struct DumpError {
    pub line: Option<u64>,
    pub message: String,
}

impl DumpError {
    pub fn new(message: impl Into<String>) -> Self {
        DumpError {
            line: None,
            message: message.into(),
        }
    }

    pub fn at(line: u64, message: impl Into<String>) -> Self {
        DumpError {
            line: Some(line),
            message: message.into(),
        }
    }
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(n) => write!(f, "line {n}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DumpError {}

impl From<StoreError> for DumpError {
    fn from(e: StoreError) -> Self {
        DumpError::new(e.to_string())
    }
}

fn io_error(e: std::io::Error) -> DumpError {
    DumpError::new(format!("cannot write the dump: {e}"))
}

/// Writes a dump: the header at [`Writer::new`], rows, the end line at
/// [`Writer::finish`].
pub struct Writer<W: Write> {
    out: W,
    /// Until it is written.
    header: Option<String>,
    counts: Counts,
}

impl<W: Write> Writer<W> {
    /// Starts a dump of the backend `from` (`sqlite`, `postgres`) exported
    /// at `now`. Nothing is written until the first row (or
    /// [`Writer::finish`]): a store that cannot be read leaves the output
    /// empty.
    pub fn new(out: W, from: &str, now: crate::model::Millis) -> Result<Self, DumpError> {
        let header = json!({
            "format": FORMAT,
            "version": VERSION,
            "from": from,
            "exported_at": crate::model::rfc3339(now),
        });
        Ok(Writer {
            out,
            header: Some(header.to_string()),
            counts: Counts::default(),
        })
    }

    fn write_header(&mut self) -> Result<(), DumpError> {
        if let Some(header) = self.header.take() {
            writeln!(self.out, "{header}").map_err(io_error)?;
        }
        Ok(())
    }

    /// Writes one row of `TABLES[table]`, its values in the order of its
    /// columns.
    pub fn row(&mut self, table: usize, values: &[Value]) -> Result<(), DumpError> {
        self.write_header()?;
        let t = &TABLES[table];
        debug_assert_eq!(t.columns.len(), values.len());
        let mut row = Map::new();
        for (c, v) in t.columns.iter().zip(values) {
            row.insert(c.name.to_string(), v.to_json());
        }
        let line = json!({ "table": t.name, "row": row });
        writeln!(self.out, "{line}").map_err(io_error)?;
        self.counts.0[table] += 1;
        Ok(())
    }

    /// Writes the end line and flushes; hands back the output and the
    /// counts.
    pub fn finish(mut self) -> Result<(W, Counts), DumpError> {
        self.write_header()?;
        let end: Map<String, serde_json::Value> = TABLES
            .iter()
            .zip(&self.counts.0)
            .map(|(t, n)| (t.name.to_string(), json!(n)))
            .collect();
        writeln!(self.out, "{}", json!({ "end": end })).map_err(io_error)?;
        self.out.flush().map_err(io_error)?;
        Ok((self.out, self.counts))
    }
}

/// One row read from a dump.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Its index in [`TABLES`].
    pub table: usize,
    /// In the order of the table's columns.
    pub values: Vec<Value>,
    /// Its line in the dump.
    pub line: u64,
}

/// Reads a dump line by line, checking each against [`TABLES`]: the header
/// at [`Reader::new`], then rows from [`Reader::next_row`] until the end
/// line (whose counts must match the rows read, and after which nothing but
/// blank lines may follow).
pub struct Reader<R: BufRead> {
    input: R,
    line: u64,
    counts: Counts,
    /// The table of the last row read (rows come parents first).
    table: usize,
    ended: bool,
    /// The header's `from`.
    pub from: String,
}

impl<R: BufRead> Reader<R> {
    /// Reads and checks the header.
    pub fn new(input: R) -> Result<Self, DumpError> {
        let mut r = Reader {
            input,
            line: 0,
            counts: Counts::default(),
            table: 0,
            ended: false,
            from: String::new(),
        };
        let Some(header) = r.next_object()? else {
            return Err(DumpError::new("the dump is empty (no header line)"));
        };
        let at = r.line;
        if header.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(DumpError::at(
                at,
                format!(
                    "not a release-guardian dump: the first line has no \"format\": \"{FORMAT}\""
                ),
            ));
        }
        match header.get("version").and_then(|v| v.as_u64()) {
            Some(VERSION) => {}
            Some(v) => {
                return Err(DumpError::at(
                    at,
                    format!("dump version {v}: this build reads version {VERSION}"),
                ))
            }
            None => return Err(DumpError::at(at, "the header has no numeric \"version\"")),
        }
        r.from = header
            .get("from")
            .and_then(|f| f.as_str())
            .unwrap_or("unknown")
            .to_string();
        Ok(r)
    }

    /// The rows read so far, by table.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The next line that is not blank, as a JSON object; `None` at the end
    /// of the input.
    fn next_object(&mut self) -> Result<Option<Map<String, serde_json::Value>>, DumpError> {
        let mut text = String::new();
        loop {
            text.clear();
            let n = self.input.read_line(&mut text).map_err(|e| {
                DumpError::new(format!(
                    "cannot read the dump after line {}: {e}",
                    self.line
                ))
            })?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if text.trim().is_empty() {
                continue;
            }
            if !text.ends_with('\n') {
                // The last line of a dump ends with a newline: one that does
                // not was cut off (and may even parse, e.g. a cut number).
                return Err(DumpError::at(
                    self.line,
                    "the line is cut off (no newline at its end): the dump is truncated",
                ));
            }
            return match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(serde_json::Value::Object(m)) => Ok(Some(m)),
                Ok(_) => Err(DumpError::at(self.line, "not a JSON object")),
                Err(e) => Err(DumpError::at(self.line, format!("not JSON: {e}"))),
            };
        }
    }

    /// The next row; `None` after the end line. A dump that ends without
    /// one is an error (truncated), and so is anything after it.
    pub fn next_row(&mut self) -> Result<Option<Row>, DumpError> {
        if self.ended {
            return Ok(None);
        }
        let Some(obj) = self.next_object()? else {
            return Err(DumpError::new(format!(
                "the dump ends after line {} without its end line: it is truncated",
                self.line
            )));
        };
        let at = self.line;
        if let Some(end) = obj.get("end") {
            self.check_end(at, end)?;
            self.ended = true;
            if self.next_object()?.is_some() {
                return Err(DumpError::at(
                    self.line,
                    "a line after the end line: is this two dumps in one file?",
                ));
            }
            return Ok(None);
        }
        let name = obj
            .get("table")
            .and_then(|t| t.as_str())
            .ok_or_else(|| DumpError::at(at, "neither a row (no \"table\") nor the end line"))?;
        let table = TABLES
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| DumpError::at(at, format!("unknown table {name:?}")))?;
        if table < self.table {
            return Err(DumpError::at(
                at,
                format!(
                    "a {name} row after {} rows: the tables come in the order {}",
                    TABLES[self.table].name,
                    TABLES.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let Some(serde_json::Value::Object(row)) = obj.get("row") else {
            return Err(DumpError::at(at, "the line has no \"row\" object"));
        };
        let t = &TABLES[table];
        if let Some(unknown) = row.keys().find(|k| !t.columns.iter().any(|c| c.name == *k)) {
            return Err(DumpError::at(
                at,
                format!("{name} has no column {unknown:?}"),
            ));
        }
        let mut values = Vec::with_capacity(t.columns.len());
        for c in t.columns {
            let v = row.get(c.name).unwrap_or(&serde_json::Value::Null);
            match Value::from_json(c, v) {
                Some(value) => values.push(value),
                None => {
                    return Err(DumpError::at(
                        at,
                        format!("{name}.{}: expected {}, found {v}", c.name, expected(c)),
                    ))
                }
            }
        }
        self.table = table;
        self.counts.0[table] += 1;
        Ok(Some(Row {
            table,
            values,
            line: at,
        }))
    }

    /// The end line's counts must be the rows read.
    fn check_end(&self, at: u64, end: &serde_json::Value) -> Result<(), DumpError> {
        let Some(end) = end.as_object() else {
            return Err(DumpError::at(at, "\"end\" is not an object of counts"));
        };
        for (t, n) in TABLES.iter().zip(&self.counts.0) {
            let said = end.get(t.name).and_then(|v| v.as_u64()).unwrap_or(0);
            if said != *n {
                return Err(DumpError::at(
                    at,
                    format!(
                        "the end line counts {said} {} rows, the dump holds {n}: it is incomplete",
                        t.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The error for a target store that holds something, unless forced.
pub fn not_empty(target: &str, counts: &Counts) -> DumpError {
    DumpError::new(format!(
        "the target store {target} is not empty ({counts}): import into an empty store, \
         or pass --force to replace what it holds"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(rows: &[(usize, Vec<Value>)]) -> String {
        let mut w = Writer::new(Vec::new(), "test", 0).unwrap();
        for (t, v) in rows {
            w.row(*t, v).unwrap();
        }
        String::from_utf8(w.finish().unwrap().0).unwrap()
    }

    fn release(seq: i64) -> (usize, Vec<Value>) {
        let t = |s: &str| Value::Text(s.into());
        (
            0,
            vec![
                Value::Int(seq),
                t(&format!("r{seq}")),
                t("checkout"),
                t("production"),
                t("v2"),
                Value::Null,
                t("{}"),
                t("watching"),
                Value::Int(1),
                Value::Int(2),
                Value::Null,
                Value::Bool(false),
                Value::Null,
                Value::Null,
            ],
        )
    }

    fn read_all(text: &str) -> Result<Vec<Row>, DumpError> {
        let mut r = Reader::new(text.as_bytes())?;
        let mut rows = Vec::new();
        while let Some(row) = r.next_row()? {
            rows.push(row);
        }
        Ok(rows)
    }

    #[test]
    fn rows_round_trip_with_every_type() {
        let mut point = vec![
            Value::Text("r1".into()),
            Value::Text("error_rate".into()),
            Value::Int(5),
            Value::Real(0.1 + 0.2),
        ];
        let text = dump(&[release(1), (2, point.clone())]);
        let rows = read_all(&text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].values, release(1).1);
        assert_eq!(rows[1].values, point);
        assert_eq!((rows[0].line, rows[1].line), (2, 3));
        point[3] = Value::Real(f64::NEG_INFINITY);
        let rows = read_all(&dump(&[(2, point.clone())])).unwrap();
        assert_eq!(rows[0].values, point);
    }

    #[test]
    fn a_truncated_dump_names_where_it_stops() {
        let text = dump(&[release(1), release(2)]);
        let lines: Vec<&str> = text.lines().collect();
        // Cut at a line boundary: no end line.
        let cut = format!("{}\n{}\n", lines[0], lines[1]);
        let e = read_all(&cut).unwrap_err();
        assert!(e.to_string().contains("ends after line 2"), "{e}");
        // Cut inside a line.
        let cut = &text[..text.find(&lines[2][10..]).unwrap()];
        let e = read_all(cut).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().contains("cut off"), "{e}");
        // A row lost in the middle: the end line's counts disagree.
        let holed = format!("{}\n{}\n{}\n", lines[0], lines[1], lines[3]);
        let e = read_all(&holed).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().contains("counts 2 releases rows"), "{e}");
    }

    #[test]
    fn a_wrong_value_names_its_line_table_and_column() {
        let text = dump(&[release(1)]).replace("\"started_at\":1", "\"started_at\":\"x\"");
        let e = read_all(&text).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(
            e.message
                .contains("releases.started_at: expected an integer, found \"x\""),
            "{e}"
        );
        let e = read_all("{\"format\":\"other\"}\n").unwrap_err();
        assert!(e.to_string().contains("not a release-guardian dump"), "{e}");
        let e = read_all(&dump(&[]).replace("\"version\":1", "\"version\":9")).unwrap_err();
        assert!(e.to_string().contains("dump version 9"), "{e}");
    }
}
