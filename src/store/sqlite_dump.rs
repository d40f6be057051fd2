//! The SQLite side of `export` and `import` ([`crate::store::dump`]): the
//! file's rows into a dump, and a dump into the file in one transaction.

use super::SqliteStore;
use crate::store::dump::{self, Counts, DumpError, Reader, Ty, Value, Writer, TABLES};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, TransactionBehavior};
use std::io::{BufRead, Write};
use std::path::Path;

/// Writes every dumped table of the file at `path` into `out`, from one
/// read transaction (a consistent snapshot even if a daemon is running).
/// The file must exist: exporting never creates one.
pub fn export<W: Write>(path: &Path, out: &mut Writer<W>) -> Result<(), DumpError> {
    if !path.is_file() {
        return Err(DumpError::new(format!(
            "no SQLite database at {}",
            path.display()
        )));
    }
    let mut conn = SqliteStore::connect(path)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Deferred)
        .map_err(backend)?;
    for (i, table) in TABLES.iter().enumerate() {
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            table.column_list(),
            table.name,
            table.key.join(", ")
        );
        let mut stmt = tx.prepare(&sql).map_err(backend)?;
        let mut rows = stmt.query([]).map_err(backend)?;
        while let Some(row) = rows.next().map_err(backend)? {
            let mut values = Vec::with_capacity(table.columns.len());
            for (c, column) in table.columns.iter().enumerate() {
                let raw = row.get_ref(c).map_err(backend)?;
                values.push(value(raw, column.ty).ok_or_else(|| {
                    DumpError::new(format!(
                        "{}.{} holds {} where the schema has {:?}: the file is corrupt",
                        table.name,
                        column.name,
                        describe(raw),
                        column.ty
                    ))
                })?);
            }
            out.row(i, &values)?;
        }
    }
    Ok(())
}

/// Loads the dump into the file at `path` (created if missing, its schema
/// brought up to date), all in one write transaction: either every row is
/// written or none. A file that holds any row is refused unless `force`,
/// which deletes what it holds first (in the same transaction).
pub fn import<R: BufRead>(
    path: &Path,
    input: &mut Reader<R>,
    force: bool,
) -> Result<Counts, DumpError> {
    super::super::create_parent(path)?;
    let mut conn = SqliteStore::connect(path)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)?;
    let held = counts(&tx)?;
    if held.0.iter().any(|&n| n > 0) {
        if !force {
            return Err(dump::not_empty(&path.display().to_string(), &held));
        }
        for table in TABLES.iter().rev() {
            tx.execute(&format!("DELETE FROM {}", table.name), [])
                .map_err(backend)?;
        }
    }
    let inserts: Vec<String> = TABLES
        .iter()
        .map(|t| {
            let marks: Vec<String> = (1..=t.columns.len()).map(|n| format!("?{n}")).collect();
            format!(
                "INSERT INTO {} ({}) VALUES ({})",
                t.name,
                t.column_list(),
                marks.join(", ")
            )
        })
        .collect();
    while let Some(row) = input.next_row()? {
        let mut stmt = tx.prepare_cached(&inserts[row.table]).map_err(backend)?;
        let params: Vec<rusqlite::types::Value> = row.values.iter().map(bind).collect();
        stmt.execute(rusqlite::params_from_iter(params))
            .map_err(|e| {
                DumpError::at(
                    row.line,
                    format!("{} row refused by SQLite: {e}", TABLES[row.table].name),
                )
            })?;
    }
    tx.commit().map_err(backend)?;
    Ok(input.counts().clone())
}

/// Rows per dumped table.
fn counts(conn: &Connection) -> Result<Counts, DumpError> {
    let mut counts = Counts::default();
    for (i, table) in TABLES.iter().enumerate() {
        let n: i64 = conn
            .query_row(&format!("SELECT COUNT(*) FROM {}", table.name), [], |r| {
                r.get(0)
            })
            .map_err(backend)?;
        counts.0[i] = n as u64;
    }
    Ok(counts)
}

fn backend(e: rusqlite::Error) -> DumpError {
    DumpError::new(format!("SQLite: {e}"))
}

/// A stored value in the column's type; `None` if it is not one (SQLite
/// keeps whatever was written).
fn value(raw: ValueRef<'_>, ty: Ty) -> Option<Value> {
    Some(match (ty, raw) {
        (_, ValueRef::Null) => Value::Null,
        (Ty::Text, ValueRef::Text(t)) => Value::Text(std::str::from_utf8(t).ok()?.to_string()),
        (Ty::Int, ValueRef::Integer(i)) => Value::Int(i),
        (Ty::Real, ValueRef::Real(f)) => Value::Real(f),
        (Ty::Real, ValueRef::Integer(i)) => Value::Real(i as f64),
        (Ty::Bool, ValueRef::Integer(i @ (0 | 1))) => Value::Bool(i == 1),
        _ => return None,
    })
}

fn describe(raw: ValueRef<'_>) -> String {
    match raw {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => format!("the integer {i}"),
        ValueRef::Real(f) => format!("the real {f}"),
        ValueRef::Text(t) => format!("the text {:?}", String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => format!("a blob of {} bytes", b.len()),
    }
}

fn bind(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as S;
    match v {
        Value::Null => S::Null,
        Value::Text(s) => S::Text(s.clone()),
        Value::Int(i) => S::Integer(*i),
        Value::Real(f) => S::Real(*f),
        Value::Bool(b) => S::Integer(i64::from(*b)),
    }
}
