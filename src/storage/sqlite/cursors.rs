//! Cursors (each applied as `max(old, new)`, so none moves backwards) and idempotency expiry.

use super::rows::int;
use super::sql;
use crate::storage::{CursorUpdate, StoreResult};
use rusqlite::{params, Connection};

pub(super) fn advance(c: &Connection, updates: &[CursorUpdate]) -> StoreResult<()> {
    for u in updates {
        let (statement, a, b, v) = match u {
            CursorUpdate::DeviceDelivered { device_id, conversation_id, seq } => (
                "UPDATE device_cursors SET delivered_seq = MAX(delivered_seq, ?3) WHERE device_id = ?1 AND conversation_id = ?2",
                device_id,
                conversation_id,
                *seq,
            ),
            CursorUpdate::DeviceEvents { device_id, conversation_id, event_no } => (
                "UPDATE device_cursors SET event_cursor = MAX(event_cursor, ?3) WHERE device_id = ?1 AND conversation_id = ?2",
                device_id,
                conversation_id,
                *event_no,
            ),
            CursorUpdate::UserDelivered { user_id, conversation_id, seq } => (
                "UPDATE members SET delivered_seq = MAX(delivered_seq, ?3) WHERE user_id = ?1 AND conversation_id = ?2",
                user_id,
                conversation_id,
                *seq,
            ),
            CursorUpdate::UserRead { user_id, conversation_id, seq } => (
                "UPDATE members SET read_seq = MAX(read_seq, ?3), delivered_seq = MAX(delivered_seq, ?3) WHERE user_id = ?1 AND conversation_id = ?2",
                user_id,
                conversation_id,
                *seq,
            ),
            CursorUpdate::Mark { conversation_id, user_id, kind, seq, ts } => {
                let key = (conversation_id.as_str(), user_id.as_str(), *kind);
                super::receipts::record(c, key, *seq, *ts)?;
                continue;
            }
        };
        c.prepare_cached(statement)
            .and_then(|mut s| s.execute(params![a, b, int(v)]))
            .map_err(sql)?;
    }
    Ok(())
}

/// The stamp past which a key is an error of the clock: `before_ts` is the clock less one TTL,
/// so this is the clock plus one.
pub(super) fn expiry_horizon(before_ts: i64, ttl_ms: i64) -> i64 {
    before_ts.saturating_add(ttl_ms).saturating_add(ttl_ms)
}

/// Keys are appended in about the order of their stamps (the clock when the send was queued),
/// so the expired ones are a prefix of the rowids: the scan stops at the first key stamped at
/// or after `before_ts`, with no index on `ts` to keep up at every append. A key written
/// after one stamped later (commits of two conversations interleave; the clock stepped back)
/// waits for it, a little longer than its TTL. A key stamped at or past `horizon_ts` (a clock
/// that ran a whole TTL ahead) does not stop the scan: it would hold every key after it
/// forever.
pub(super) fn expire_idempotency(
    c: &Connection,
    before_ts: i64,
    horizon_ts: i64,
) -> StoreResult<u64> {
    c.prepare_cached(
        "DELETE FROM idempotency WHERE rowid < COALESCE(
            (SELECT rowid FROM idempotency WHERE ts >= ?1 AND ts < ?2 ORDER BY rowid LIMIT 1),
            (SELECT MAX(rowid) + 1 FROM idempotency))",
    )
    .and_then(|mut s| s.execute([before_ts, horizon_ts]))
    .map(|n| n as u64)
    .map_err(sql)
}
