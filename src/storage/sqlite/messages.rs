//! Messages: the conditional, idempotent append, and the reads of pages and counts.

use super::rows::{self, int, MESSAGE_COLS};
use super::{internal, is_unique_violation, sql};
use crate::storage::{
    AppendOutcome, Appended, NewMessage, Order, StoreError, StoreResult, StoredMessage,
};
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::LazyLock;

/// The original coordinates of a (device, client id) already stored, if any: a duplicate
/// when the payload is the same (or was stored before hashes were kept), else `Reused`.
fn duplicate_of(c: &Connection, m: &NewMessage, hash: &str) -> StoreResult<Option<AppendOutcome>> {
    c.prepare_cached(
        "SELECT conversation_id, seq, message_id, ts, payload_hash FROM idempotency WHERE device_id = ?1 AND client_id = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![m.sender_device_id, m.client_id], |r| {
            let stored: Option<String> = r.get(4)?;
            if stored.is_some_and(|h| h != hash) {
                return Ok(AppendOutcome::Reused {
                    conversation_id: r.get(0)?,
                    seq: rows::uint(r, 1)?,
                });
            }
            Ok(AppendOutcome::Duplicate {
                conversation_id: r.get(0)?,
                seq: rows::uint(r, 1)?,
                message_id: r.get(2)?,
                ts: r.get(3)?,
            })
        })
        .optional()
    })
    .map_err(sql)
}

/// Appends at `first_seq`, `first_seq + 1`, ...; the idempotency check runs in the same
/// transaction as the insert, so a retry racing its original (even in the same batch) is a
/// duplicate, never a second message. A taken seq fails the whole job (`Conflict`).
pub(super) fn append(
    c: &Connection,
    id: &str,
    first_seq: u64,
    batch: &[NewMessage],
) -> StoreResult<Appended> {
    let mut out = Vec::with_capacity(batch.len());
    let mut seq = first_seq;
    for m in batch {
        let hash = crate::storage::payload_hash(id, m);
        // Claiming the key first costs one descent of its index where a lookup and then an
        // insert cost two; the lookup runs only for a key already taken.
        if !claim(c, id, seq, m, &hash)? {
            let d = duplicate_of(c, m, &hash)?.ok_or_else(|| {
                StoreError::Internal("idempotency key taken but not found".into())
            })?;
            out.push(d);
            continue;
        }
        insert(c, id, seq, m)?;
        out.push(AppendOutcome::Stored { seq });
        seq += 1;
    }
    let push_pending = seq > first_seq && super::push::mark_pending(c, id, seq - 1)?;
    Ok(Appended {
        outcomes: out,
        push_pending,
    })
}

/// Stores the (device, client id) key of a message about to take `seq`; false if the key is
/// already taken (a retry), and then nothing is written.
fn claim(c: &Connection, id: &str, seq: u64, m: &NewMessage, hash: &str) -> StoreResult<bool> {
    c.prepare_cached(
        "INSERT INTO idempotency (device_id, client_id, conversation_id, seq, message_id, ts, payload_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (device_id, client_id) DO NOTHING",
    )
    .and_then(|mut s| {
        s.execute(params![
            m.sender_device_id,
            m.client_id,
            id,
            int(seq),
            m.message_id,
            m.ts,
            hash
        ])
    })
    .map(|changed| changed > 0)
    .map_err(sql)
}

/// Built once: the statement cache is keyed by the text, and an append runs it per message.
static INSERT_MESSAGE: LazyLock<String> = LazyLock::new(|| {
    format!("INSERT INTO messages ({MESSAGE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, NULL, NULL, ?11)")
});

fn insert(c: &Connection, id: &str, seq: u64, m: &NewMessage) -> StoreResult<()> {
    let attachments = if m.attachments.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&m.attachments).map_err(internal)?)
    };
    c.prepare_cached(&INSERT_MESSAGE)
        .and_then(|mut s| {
            s.execute(params![
                id,
                int(seq),
                m.message_id,
                m.sender_id,
                m.sender_device_id,
                m.client_id,
                m.ts,
                m.text,
                attachments,
                m.meta,
                m.reply_to.map(int)
            ])
        })
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("seq {seq} is taken"))
            } else {
                sql(e)
            }
        })?;
    for a in &m.attachments {
        c.prepare_cached(
            "INSERT OR IGNORE INTO file_grants (file_id, conversation_id, seq) VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut s| s.execute(params![a.file_id, id, int(seq)]))
        .map_err(sql)?;
    }
    Ok(())
}

pub(super) fn page(
    c: &Connection,
    id: &str,
    after: u64,
    before: u64,
    limit: u32,
    order: Order,
) -> StoreResult<Vec<StoredMessage>> {
    let dir = if order == Order::Asc { "ASC" } else { "DESC" };
    let mut s = c
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE conversation_id = ?1 AND seq > ?2 AND seq < ?3 ORDER BY seq {dir} LIMIT ?4"
        ))
        .map_err(sql)?;
    let rows = s
        .query_map(params![id, int(after), int(before), limit], rows::message)
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

pub(super) fn one(c: &Connection, id: &str, seq: u64) -> StoreResult<Option<StoredMessage>> {
    c.prepare_cached(&format!(
        "SELECT {MESSAGE_COLS} FROM messages WHERE conversation_id = ?1 AND seq = ?2"
    ))
    .and_then(|mut s| s.query_row(params![id, int(seq)], rows::message).optional())
    .map_err(sql)
}

pub(super) fn senders_between(
    c: &Connection,
    id: &str,
    after: u64,
    upto: u64,
) -> StoreResult<Vec<String>> {
    let mut s = c
        .prepare_cached(
            "SELECT DISTINCT sender_id FROM messages WHERE conversation_id = ?1 AND seq > ?2 AND seq <= ?3",
        )
        .map_err(sql)?;
    let rows = s
        .query_map(params![id, int(after), int(upto)], |r| r.get(0))
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

pub(super) fn count_unread(c: &Connection, id: &str, user: &str, after: u64) -> StoreResult<u64> {
    c.prepare_cached(
        "SELECT COUNT(*) FROM messages WHERE conversation_id = ?1 AND seq > ?2 AND sender_id != ?3 AND deleted = 0
         AND seq NOT IN (SELECT seq FROM hidden WHERE user_id = ?3 AND conversation_id = ?1)",
    )
    .and_then(|mut s| s.query_row(params![id, int(after), user], |r| r.get::<_, i64>(0)))
    .map(|n| n as u64)
    .map_err(sql)
}
