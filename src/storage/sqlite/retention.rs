//! Retention in SQLite: the `retention` and `undeliverable` tables (schema version 7), and the
//! purge of a conversation's oldest messages.

use super::rows::{self, int};
use super::sql;
use crate::storage::{
    parse_attachments, Expired, MemberDevice, Retention, StoreResult, Undeliverable,
};
use rusqlite::{params, Connection, OptionalExtension};

/// The conversation's last seq: its highest message, or how far it was purged if higher
/// (`c` is the alias of a table with `conversation_id`).
pub(super) fn last_seq_sql(c: &str) -> String {
    format!(
        "MAX(COALESCE((SELECT MAX(seq) FROM messages g WHERE g.conversation_id = {c}.conversation_id), 0),
             COALESCE((SELECT expired_through FROM retention r WHERE r.conversation_id = {c}.conversation_id), 0))"
    )
}

pub(super) fn get(c: &Connection, id: &str) -> StoreResult<Retention> {
    c.prepare_cached(
        "SELECT retention_secs, expired_through FROM retention WHERE conversation_id = ?1",
    )
    .and_then(|mut s| {
        s.query_row([id], |r| {
            let secs: Option<i64> = r.get(0)?;
            Ok(Retention {
                secs: secs.map(|s| s.max(0) as u64),
                expired_through: rows::uint(r, 1)?,
            })
        })
        .optional()
    })
    .map(Option::unwrap_or_default)
    .map_err(sql)
}

pub(super) fn set(c: &Connection, id: &str, secs: Option<u64>) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO retention (conversation_id, retention_secs) VALUES (?1, ?2)
         ON CONFLICT (conversation_id) DO UPDATE SET retention_secs = excluded.retention_secs",
    )
    .and_then(|mut s| s.execute(params![id, secs.map(int)]))
    .map_err(sql)?;
    Ok(())
}

pub(super) fn expire(c: &Connection, id: &str, before_ts: i64, limit: u32) -> StoreResult<Expired> {
    let from = get(c, id)?.expired_through;
    let mut s = c
        .prepare_cached(
            "SELECT seq, sender_id, ts, attachments FROM messages
             WHERE conversation_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .map_err(sql)?;
    let rows = s
        .query_map(params![id, int(from), limit], |r| {
            Ok((
                rows::uint(r, 0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    let mut out = Expired {
        through: from,
        ..Default::default()
    };
    for (seq, sender, ts, attachments) in rows {
        if ts >= before_ts {
            break;
        }
        out.through = seq;
        out.messages.push((seq, sender, ts));
        let files = attachments
            .map(|a| parse_attachments(&a))
            .unwrap_or_default();
        out.file_ids.extend(files.into_iter().map(|a| a.file_id));
    }
    if out.messages.is_empty() {
        return Ok(out);
    }
    purge_through(c, id, from, out.through)?;
    Ok(out)
}

/// Removes every message in `from < seq <= through` and what hangs on them, and records
/// `through`.
fn purge_through(c: &Connection, id: &str, from: u64, through: u64) -> StoreResult<()> {
    for table in [
        "messages",
        "file_grants",
        "message_versions",
        "reactions",
        "hidden",
    ] {
        c.prepare_cached(&format!(
            "DELETE FROM {table} WHERE conversation_id = ?1 AND seq > ?2 AND seq <= ?3"
        ))
        .and_then(|mut s| s.execute(params![id, int(from), int(through)]))
        .map_err(sql)?;
    }
    // Events keep their numbers (a device's event cursor counts on them); only their content
    // goes.
    c.prepare_cached(
        "UPDATE events SET data = NULL WHERE conversation_id = ?1 AND seq > ?2 AND seq <= ?3",
    )
    .and_then(|mut s| s.execute(params![id, int(from), int(through)]))
    .map_err(sql)?;
    c.prepare_cached(
        "INSERT INTO retention (conversation_id, expired_through) VALUES (?1, ?2)
         ON CONFLICT (conversation_id) DO UPDATE SET expired_through = excluded.expired_through",
    )
    .and_then(|mut s| s.execute(params![id, int(through)]))
    .map_err(sql)?;
    Ok(())
}

pub(super) fn member_devices(c: &Connection, id: &str) -> StoreResult<Vec<MemberDevice>> {
    let mut s = c
        .prepare_cached(
            "SELECT d.device_id, d.user_id, d.created_at, COALESCE(dc.delivered_seq, m.joined_seq)
             FROM members m
             JOIN devices d ON d.user_id = m.user_id
             LEFT JOIN device_cursors dc ON dc.device_id = d.device_id AND dc.conversation_id = m.conversation_id
             WHERE m.conversation_id = ?1",
        )
        .map_err(sql)?;
    let rows = s
        .query_map([id], |r| {
            Ok(MemberDevice {
                device_id: r.get(0)?,
                user_id: r.get(1)?,
                created_at: r.get(2)?,
                delivered_seq: rows::uint(r, 3)?,
            })
        })
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

pub(super) fn add_undeliverable(c: &Connection, rows: &[Undeliverable]) -> StoreResult<()> {
    let mut s = c
        .prepare_cached(
            "INSERT INTO undeliverable (user_id, conversation_id, device_id, to_seq, from_seq, recipient_id, lost, ts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (user_id, conversation_id, device_id) DO UPDATE SET
                 from_seq = MIN(from_seq, excluded.from_seq),
                 to_seq = MAX(to_seq, excluded.to_seq),
                 lost = lost + excluded.lost,
                 ts = excluded.ts",
        )
        .map_err(sql)?;
    for u in rows {
        s.execute(params![
            u.user_id,
            u.conversation_id,
            u.device_id,
            int(u.to_seq),
            int(u.from_seq),
            u.recipient_id,
            int(u.lost),
            u.ts
        ])
        .map_err(sql)?;
    }
    Ok(())
}

pub(super) fn undeliverable(c: &Connection, user: &str) -> StoreResult<Vec<Undeliverable>> {
    let mut s = c
        .prepare_cached(
            "SELECT user_id, conversation_id, device_id, recipient_id, from_seq, to_seq, lost, ts
             FROM undeliverable WHERE user_id = ?1 ORDER BY conversation_id, device_id",
        )
        .map_err(sql)?;
    let rows = s
        .query_map([user], |r| {
            Ok(Undeliverable {
                user_id: r.get(0)?,
                conversation_id: r.get(1)?,
                device_id: r.get(2)?,
                recipient_id: r.get(3)?,
                from_seq: rows::uint(r, 4)?,
                to_seq: rows::uint(r, 5)?,
                lost: rows::uint(r, 6)?,
                ts: r.get(7)?,
            })
        })
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

pub(super) fn clear_undeliverable(c: &Connection, user: &str, upto_ts: i64) -> StoreResult<u64> {
    c.prepare_cached("DELETE FROM undeliverable WHERE user_id = ?1 AND ts <= ?2")
        .and_then(|mut s| s.execute(params![user, upto_ts]))
        .map(|n| n as u64)
        .map_err(sql)
}

pub(super) fn conversation_ids(
    c: &Connection,
    after: &str,
    limit: u32,
) -> StoreResult<Vec<String>> {
    let mut s = c
        .prepare_cached(
            "SELECT conversation_id FROM conversations WHERE conversation_id > ?1
             ORDER BY conversation_id LIMIT ?2",
        )
        .map_err(sql)?;
    let rows = s
        .query_map(params![after, limit], |r| r.get(0))
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}
