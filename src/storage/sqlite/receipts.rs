//! Receipt marks (v1.1): when a member's delivered or read position moved, the latest
//! `RECEIPT_MARKS_KEPT` per (conversation, user, kind), trimmed in the same transaction as the
//! insert, so a lookup is one short index range per user whatever the history.

use super::rows::int;
use super::sql;
use crate::storage::{receipt_kind_str, StoreResult, RECEIPT_MARKS_KEPT};
use parley_protocol::ReceiptKind;
use rusqlite::{params, Connection, OptionalExtension};

pub(super) fn record(
    c: &Connection,
    (conv, user, kind): (&str, &str, ReceiptKind),
    seq: u64,
    ts: i64,
) -> StoreResult<()> {
    let k = receipt_kind_str(kind);
    c.prepare_cached(
        "INSERT OR IGNORE INTO receipt_marks (conversation_id, user_id, kind, seq, ts)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| s.execute(params![conv, user, k, int(seq), ts]))
    .map_err(sql)?;
    // Everything below the oldest mark kept (none while fewer than that many exist).
    c.prepare_cached(
        "DELETE FROM receipt_marks WHERE conversation_id = ?1 AND user_id = ?2 AND kind = ?3
         AND seq < (SELECT seq FROM receipt_marks WHERE conversation_id = ?1 AND user_id = ?2
                    AND kind = ?3 ORDER BY seq DESC LIMIT 1 OFFSET ?4)",
    )
    .and_then(|mut s| s.execute(params![conv, user, k, (RECEIPT_MARKS_KEPT - 1) as i64]))
    .map_err(sql)?;
    Ok(())
}

pub(super) fn times(
    c: &Connection,
    conv: &str,
    kind: ReceiptKind,
    seq: u64,
    user_ids: &[String],
) -> StoreResult<Vec<(String, Option<i64>)>> {
    let mut st = c
        .prepare_cached(
            "SELECT ts FROM receipt_marks WHERE conversation_id = ?1 AND user_id = ?2
             AND kind = ?3 AND seq >= ?4 ORDER BY seq LIMIT 1",
        )
        .map_err(sql)?;
    let k = receipt_kind_str(kind);
    user_ids
        .iter()
        .map(|u| {
            let at = st
                .query_row(params![conv, u, k, int(seq)], |r| r.get::<_, i64>(0))
                .optional()
                .map_err(sql)?;
            Ok((u.clone(), at))
        })
        .collect()
}
