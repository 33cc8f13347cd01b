//! The event log of a conversation (retractions, hides, edits, reactions) and what each
//! event changes: the purge of a retracted message, the hidden set, earlier versions, the
//! reactions table.

use super::rows::{self, int, EVENT_COLS};
use super::sql;
use crate::storage::{
    EditContent, EditOutcome, EventKind, IdemKey, MessageEvent, MessageVersion, Order, PageParts,
    ReactionCount, StoreError, StoreResult,
};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;

fn log(c: &Connection, r: &MessageEvent) -> StoreResult<()> {
    c.prepare_cached(&format!(
        "INSERT INTO events ({EVENT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            r.conversation_id,
            int(r.event_no),
            int(r.seq),
            r.kind.name(),
            r.kind.scope(),
            r.kind.data(),
            r.by_user,
            r.for_user,
            r.ts
        ])
    })
    .map_err(sql)?;
    Ok(())
}

/// Purges the content (a tombstone keeps the seq), its earlier versions and reactions, drops
/// the file grants, logs the event.
pub(super) fn retract(c: &Connection, r: &MessageEvent) -> StoreResult<()> {
    let n = c
        .prepare_cached(
            "UPDATE messages SET text = NULL, attachments = NULL, meta = NULL, deleted = 1, deleted_by = ?3 WHERE conversation_id = ?1 AND seq = ?2",
        )
        .and_then(|mut s| s.execute(params![r.conversation_id, int(r.seq), r.by_user]))
        .map_err(sql)?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    for table in ["file_grants", "message_versions", "reactions"] {
        c.prepare_cached(&format!(
            "DELETE FROM {table} WHERE conversation_id = ?1 AND seq = ?2"
        ))
        .and_then(|mut s| s.execute(params![r.conversation_id, int(r.seq)]))
        .map_err(sql)?;
    }
    log(c, r)
}

/// What `key` was used for before, if anything.
fn edit_duplicate(c: &Connection, key: &IdemKey) -> StoreResult<Option<EditOutcome>> {
    c.prepare_cached(
        "SELECT ts, payload_hash FROM idempotency WHERE device_id = ?1 AND client_id = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![key.device_id, key.client_id], |r| {
            let hash: Option<String> = r.get(1)?;
            Ok(if hash.as_deref() == Some(key.payload_hash.as_str()) {
                EditOutcome::Duplicate { ts: r.get(0)? }
            } else {
                EditOutcome::Reused
            })
        })
        .optional()
    })
    .map_err(sql)
}

pub(super) fn edit(
    c: &Connection,
    e: &MessageEvent,
    content: &EditContent,
    key: &IdemKey,
) -> StoreResult<EditOutcome> {
    if let Some(d) = edit_duplicate(c, key)? {
        return Ok(d);
    }
    let (id, seq) = (e.conversation_id.as_str(), int(e.seq));
    let current = c
        .prepare_cached(
            "SELECT text, meta, message_id FROM messages WHERE conversation_id = ?1 AND seq = ?2 AND deleted = 0",
        )
        .and_then(|mut s| {
            s.query_row(params![id, seq], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .optional()
        })
        .map_err(sql)?;
    let Some((text, meta, message_id)) = current else {
        return Ok(EditOutcome::Gone);
    };
    // The version is numbered by the event that replaced it, as in the ScyllaDB store.
    c.prepare_cached(
        "INSERT INTO message_versions (conversation_id, seq, version, text, meta, replaced_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| s.execute(params![id, seq, int(e.event_no), text, meta, e.ts]))
    .map_err(sql)?;
    c.prepare_cached(
        "UPDATE messages SET text = ?3, meta = ?4, edited_at = ?5 WHERE conversation_id = ?1 AND seq = ?2",
    )
    .and_then(|mut s| s.execute(params![id, seq, content.text, content.meta, e.ts]))
    .map_err(sql)?;
    log(c, e)?;
    c.prepare_cached(
        "INSERT INTO idempotency (device_id, client_id, conversation_id, seq, message_id, ts, payload_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            key.device_id,
            key.client_id,
            id,
            seq,
            message_id,
            e.ts,
            key.payload_hash
        ])
    })
    .map_err(sql)?;
    Ok(EditOutcome::Applied)
}

pub(super) fn versions(c: &Connection, id: &str, seq: u64) -> StoreResult<Vec<MessageVersion>> {
    let mut s = c
        .prepare_cached(
            "SELECT text, meta, replaced_at FROM message_versions WHERE conversation_id = ?1 AND seq = ?2 ORDER BY version",
        )
        .map_err(sql)?;
    let rows = s
        .query_map(params![id, int(seq)], |r| {
            Ok(MessageVersion {
                text: r.get(0)?,
                meta: r.get(1)?,
                replaced_at: r.get(2)?,
            })
        })
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

/// Adds or removes one reaction; logs the event only if that changed something.
pub(super) fn react(c: &Connection, e: &MessageEvent) -> StoreResult<bool> {
    let EventKind::React { emoji, added } = &e.kind else {
        return Err(StoreError::Internal("react without a reaction".into()));
    };
    let (id, seq) = (e.conversation_id.as_str(), int(e.seq));
    let n = if *added {
        c.prepare_cached(
            "INSERT OR IGNORE INTO reactions (conversation_id, seq, emoji, user_id, ts) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| s.execute(params![id, seq, emoji, e.by_user, e.ts]))
    } else {
        c.prepare_cached(
            "DELETE FROM reactions WHERE conversation_id = ?1 AND seq = ?2 AND emoji = ?3 AND user_id = ?4",
        )
        .and_then(|mut s| s.execute(params![id, seq, emoji, e.by_user]))
    }
    .map_err(sql)?;
    if n == 0 {
        return Ok(false);
    }
    log(c, e)?;
    Ok(true)
}

/// Per message of `seqs`: emojis by count (then by first use), and whether `viewer` is
/// among each one's users.
pub(super) fn reactions(
    c: &Connection,
    id: &str,
    seqs: &[u64],
    viewer: &str,
) -> StoreResult<Vec<(u64, Vec<ReactionCount>)>> {
    let (Some(lo), Some(hi)) = (seqs.iter().min(), seqs.iter().max()) else {
        return Ok(Vec::new());
    };
    let mut s = c
        .prepare_cached(
            "SELECT seq, emoji, COUNT(*), MAX(user_id = ?4) FROM reactions
             WHERE conversation_id = ?1 AND seq >= ?2 AND seq <= ?3
             GROUP BY seq, emoji ORDER BY seq, COUNT(*) DESC, MIN(ts)",
        )
        .map_err(sql)?;
    let rows = s
        .query_map(params![id, int(*lo), int(*hi), viewer], |r| {
            Ok((
                rows::uint(r, 0)?,
                ReactionCount {
                    emoji: r.get(1)?,
                    count: r.get::<_, i64>(2)? as u32,
                    me: r.get::<_, i64>(3)? != 0,
                },
            ))
        })
        .map_err(sql)?;
    let mut out: BTreeMap<u64, Vec<ReactionCount>> = BTreeMap::new();
    for row in rows {
        let (seq, count) = row.map_err(sql)?;
        if seqs.contains(&seq) {
            out.entry(seq).or_default().push(count);
        }
    }
    Ok(out.into_iter().collect())
}

pub(super) fn hide(c: &Connection, r: &MessageEvent) -> StoreResult<()> {
    let user = r.for_user.clone().unwrap_or_default();
    c.prepare_cached(
        "INSERT OR IGNORE INTO hidden (user_id, conversation_id, seq) VALUES (?1, ?2, ?3)",
    )
    .and_then(|mut s| s.execute(params![user, r.conversation_id, int(r.seq)]))
    .map_err(sql)?;
    log(c, r)
}

pub(super) fn since(
    c: &Connection,
    id: &str,
    user: &str,
    after_event: u64,
    limit: u32,
) -> StoreResult<Vec<MessageEvent>> {
    let mut s = c
        .prepare_cached(&format!(
            "SELECT {EVENT_COLS} FROM events
             WHERE conversation_id = ?1 AND event_no > ?2 AND (for_user IS NULL OR for_user = ?3)
             ORDER BY event_no LIMIT ?4"
        ))
        .map_err(sql)?;
    let rows = s
        .query_map(params![id, int(after_event), user, limit], rows::event)
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

pub(super) fn hidden_seqs(
    c: &Connection,
    user: &str,
    id: &str,
    after: u64,
    before: u64,
) -> StoreResult<Vec<u64>> {
    let mut s = c
        .prepare_cached(
            "SELECT seq FROM hidden WHERE user_id = ?1 AND conversation_id = ?2 AND seq > ?3 AND seq < ?4",
        )
        .map_err(sql)?;
    let rows = s
        .query_map(params![user, id, int(after), int(before)], |r| {
            rows::uint(r, 0)
        })
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

/// `Store::page_parts` in one read transaction: one snapshot, and one trip to a reader thread
/// instead of three (each of which, after any write, also began by resetting the reader's
/// page cache and mapping).
pub(super) fn page_parts(
    c: &Connection,
    id: &str,
    viewer: &str,
    range: (u64, u64),
    limit: u32,
    order: Order,
) -> StoreResult<PageParts> {
    let run = |stmt: &str| super::exec_cached(c, stmt);
    run("BEGIN").map_err(sql)?;
    let parts = page_parts_in(c, id, viewer, range, limit, order);
    let end = run("COMMIT");
    if end.is_err() {
        let _ = run("ROLLBACK"); // the connection must not stay inside a transaction
    }
    let parts = parts?;
    end.map_err(sql)?;
    Ok(parts)
}

fn page_parts_in(
    c: &Connection,
    id: &str,
    viewer: &str,
    (after, before): (u64, u64),
    limit: u32,
    order: Order,
) -> StoreResult<PageParts> {
    let messages = super::messages::page(c, id, after, before, limit, order)?;
    let Some((lo, hi)) = PageParts::span(&messages) else {
        return Ok(PageParts::default());
    };
    let hidden = hidden_seqs(c, viewer, id, lo - 1, hi + 1)?;
    let shown = PageParts::shown(&messages, &hidden);
    let reactions = reactions(c, id, &shown, viewer)?;
    Ok(PageParts {
        messages,
        hidden,
        reactions,
    })
}
