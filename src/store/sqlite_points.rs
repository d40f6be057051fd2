//! The SQLite store's charted check values (`check_points`): written with a
//! tick, capped per check, read for reports and the status page.

use crate::model::{CheckPoint, Millis, MAX_POINTS_PER_CHECK};
use crate::store::StoreError;
use rusqlite::{params, Connection, Transaction};
use std::collections::BTreeSet;

/// Writes `points` (an instant already stored is overwritten: a redone tick
/// writes the same instants), then drops the oldest points of each touched
/// check beyond [`MAX_POINTS_PER_CHECK`].
pub(super) fn insert(
    tx: &Transaction<'_>,
    release_id: &str,
    points: &[CheckPoint],
) -> Result<(), StoreError> {
    if points.is_empty() {
        return Ok(());
    }
    let mut touched = BTreeSet::new();
    {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO check_points (release_id, check_name, at, value)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for p in points {
            stmt.execute(params![
                release_id,
                p.check,
                p.at,
                p.value.filter(|v| v.is_finite())
            ])?;
            touched.insert(p.check.as_str());
        }
    }
    let mut cut = tx.prepare_cached(
        "DELETE FROM check_points WHERE release_id = ?1 AND check_name = ?2 AND at <= (
             SELECT at FROM check_points WHERE release_id = ?1 AND check_name = ?2
             ORDER BY at DESC LIMIT 1 OFFSET ?3)",
    )?;
    for check in touched {
        cut.execute(params![release_id, check, MAX_POINTS_PER_CHECK as i64])?;
    }
    Ok(())
}

/// A release's points, by check name, then time.
pub(super) fn read(conn: &Connection, release_id: &str) -> Result<Vec<CheckPoint>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT check_name, at, value FROM check_points WHERE release_id = ?1
         ORDER BY check_name, at",
    )?;
    let out = stmt
        .query_map([release_id], |r| {
            Ok(CheckPoint {
                check: r.get(0)?,
                at: r.get::<_, Millis>(1)?,
                value: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(out)
}
