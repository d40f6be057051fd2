//! The PostgreSQL side of `export` and `import` ([`crate::store::dump`]):
//! the database's rows into a dump from one snapshot, and a dump into the
//! database in one transaction (rows sent pipelined, a chunk at a time).

use super::{schema, PostgresSettings, PostgresStore};
use crate::store::dump::{self, Counts, DumpError, Reader, Table, Ty, Value, Writer, TABLES};
use std::io::{BufRead, Write};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, IsolationLevel};

/// Rows fetched, or sent before their answers are awaited, at a time.
const CHUNK: usize = 1000;

/// The serial columns, set past the imported rows after an import.
const SEQUENCES: &[(&str, &str)] = &[("releases", "seq"), ("decisions", "id"), ("audit", "seq")];

/// Connects (applying the migrations the database lacks, as a daemon
/// would at start) and hands back the client; its connection runs on a
/// task until the client is dropped.
async fn connect(settings: &PostgresSettings) -> Result<Client, DumpError> {
    let (cfg, tls) = PostgresStore::connect_parts(settings)?;
    let (mut client, conn) = cfg.connect(tls).await.map_err(|e| {
        DumpError::new(format!(
            "cannot connect to {}: {}",
            super::describe(settings),
            super::describe_error(&e)
        ))
    })?;
    tokio::spawn(conn);
    schema::migrate(&mut client).await?;
    Ok(client)
}

fn backend(e: tokio_postgres::Error) -> DumpError {
    DumpError::new(format!("PostgreSQL: {}", super::describe_error(&e)))
}

/// `a::BIGINT, b, ...`: the columns in the dump's types.
fn select_list(table: &Table) -> String {
    let exprs: Vec<String> = table
        .columns
        .iter()
        .map(|c| match c.ty {
            Ty::Int => format!("{}::BIGINT", c.name),
            Ty::Real => format!("{}::DOUBLE PRECISION", c.name),
            Ty::Text | Ty::Bool => c.name.to_string(),
        })
        .collect();
    exprs.join(", ")
}

/// The key in byte order for text (`COLLATE "C"`, as SQLite orders), so a
/// dump's rows come in the same order from either backend.
fn order_by(table: &Table) -> String {
    let keys: Vec<String> = table
        .key
        .iter()
        .map(|k| match table.columns.iter().find(|c| c.name == *k) {
            Some(c) if c.ty == Ty::Text => format!("{k} COLLATE \"C\""),
            _ => k.to_string(),
        })
        .collect();
    keys.join(", ")
}

/// Writes every dumped table into `out` from one snapshot (a read-only
/// repeatable-read transaction).
pub async fn export<W: Write>(
    settings: &PostgresSettings,
    out: &mut Writer<W>,
) -> Result<(), DumpError> {
    let mut client = connect(settings).await?;
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(backend)?;
    for (i, table) in TABLES.iter().enumerate() {
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            select_list(table),
            table.name,
            order_by(table)
        );
        let portal = tx.bind(sql.as_str(), &[]).await.map_err(backend)?;
        loop {
            let rows = tx
                .query_portal(&portal, CHUNK as i32)
                .await
                .map_err(backend)?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let mut values = Vec::with_capacity(table.columns.len());
                for (c, column) in table.columns.iter().enumerate() {
                    let v = match column.ty {
                        Ty::Text => row
                            .try_get::<_, Option<String>>(c)
                            .map(|v| v.map(Value::Text)),
                        Ty::Int => row.try_get::<_, Option<i64>>(c).map(|v| v.map(Value::Int)),
                        Ty::Real => row.try_get::<_, Option<f64>>(c).map(|v| v.map(Value::Real)),
                        Ty::Bool => row
                            .try_get::<_, Option<bool>>(c)
                            .map(|v| v.map(Value::Bool)),
                    }
                    .map_err(backend)?;
                    values.push(v.unwrap_or(Value::Null));
                }
                out.row(i, &values)?;
            }
        }
    }
    tx.commit().await.map_err(backend)?;
    Ok(())
}

/// Loads the dump into the database, all in one transaction that first
/// locks every dumped table (so no running replica writes in between):
/// either every row is written or none. A database that holds any row is
/// refused unless `force`, which empties those tables first. Leases are
/// written free; the serial columns continue after the imported rows.
pub async fn import<R: BufRead>(
    settings: &PostgresSettings,
    input: &mut Reader<R>,
    force: bool,
) -> Result<Counts, DumpError> {
    let mut client = connect(settings).await?;
    let tx = client.transaction().await.map_err(backend)?;
    let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        names.join(", ")
    ))
    .await
    .map_err(backend)?;
    let mut held = Counts::default();
    for (i, table) in TABLES.iter().enumerate() {
        let n: i64 = tx
            .query_one(&format!("SELECT COUNT(*) FROM {}", table.name), &[])
            .await
            .map_err(backend)?
            .get(0);
        held.0[i] = n as u64;
    }
    if held.0.iter().any(|&n| n > 0) {
        if !force {
            return Err(dump::not_empty(&super::describe(settings), &held));
        }
        tx.batch_execute(&format!("TRUNCATE {}", names.join(", ")))
            .await
            .map_err(backend)?;
    }
    let mut inserts = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let params: Vec<String> = table
            .columns
            .iter()
            .enumerate()
            .map(|(n, c)| {
                let ty = match c.ty {
                    Ty::Text => "TEXT",
                    Ty::Int => "BIGINT",
                    Ty::Real => "DOUBLE PRECISION",
                    Ty::Bool => "BOOLEAN",
                };
                format!("${}::{ty}", n + 1)
            })
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            table.name,
            table.column_list(),
            params.join(", ")
        );
        inserts.push(tx.prepare(&sql).await.map_err(backend)?);
    }
    let mut chunk = Vec::with_capacity(CHUNK);
    loop {
        let row = input.next_row()?;
        let done = row.is_none();
        chunk.extend(row);
        if chunk.len() == CHUNK || (done && !chunk.is_empty()) {
            let params: Vec<Vec<Box<dyn ToSql + Sync + Send>>> =
                chunk.iter().map(|r| params(&r.values, r.table)).collect();
            let sent = chunk.iter().zip(&params).map(|(r, p)| {
                let refs: Vec<&(dyn ToSql + Sync)> = p
                    .iter()
                    .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                let stmt = &inserts[r.table];
                let tx = &tx;
                async move { tx.execute(stmt, &refs).await }
            });
            let answers = futures_util::future::join_all(sent).await;
            // The first refusal is the culprit; the ones after it only say
            // the transaction was aborted.
            if let Some((r, e)) = chunk
                .iter()
                .zip(answers)
                .find_map(|(r, a)| a.err().map(|e| (r, e)))
            {
                return Err(DumpError::at(
                    r.line,
                    format!(
                        "{} row refused by PostgreSQL: {}",
                        TABLES[r.table].name,
                        super::describe_error(&e)
                    ),
                ));
            }
            chunk.clear();
        }
        if done {
            break;
        }
    }
    for (table, column) in SEQUENCES {
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                 COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            ),
            &[],
        )
        .await
        .map_err(backend)?;
    }
    tx.commit().await.map_err(backend)?;
    Ok(input.counts().clone())
}

/// A row's values as parameters of its insert, typed by column (a null is
/// the column type's `None`).
fn params(values: &[Value], table: usize) -> Vec<Box<dyn ToSql + Sync + Send>> {
    TABLES[table]
        .columns
        .iter()
        .zip(values)
        .map(|(c, v)| -> Box<dyn ToSql + Sync + Send> {
            match (c.ty, v) {
                (_, Value::Text(s)) => Box::new(Some(s.clone())),
                (_, Value::Int(i)) => Box::new(Some(*i)),
                (_, Value::Real(f)) => Box::new(Some(*f)),
                (_, Value::Bool(b)) => Box::new(Some(*b)),
                (Ty::Text, Value::Null) => Box::new(None::<String>),
                (Ty::Int, Value::Null) => Box::new(None::<i64>),
                (Ty::Real, Value::Null) => Box::new(None::<f64>),
                (Ty::Bool, Value::Null) => Box::new(None::<bool>),
            }
        })
        .collect()
}
