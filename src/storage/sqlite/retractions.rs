//! Retractions (purge for everyone), hides (for one user), and their log.

use super::rows::{self, int, RETRACTION_COLS};
use super::sql;
use crate::storage::{Retraction, StoreError, StoreResult};
use rusqlite::{params, Connection};

fn log(c: &Connection, r: &Retraction) -> StoreResult<()> {
    c.prepare_cached(&format!(
        "INSERT INTO retractions ({RETRACTION_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            r.conversation_id,
            int(r.event_no),
            int(r.seq),
            r.scope.as_str(),
            r.by_user,
            r.for_user,
            r.ts
        ])
    })
    .map_err(sql)?;
    Ok(())
}

/// Purges the content (a tombstone keeps the seq), drops the file grants, logs the event.
pub(super) fn retract(c: &Connection, r: &Retraction) -> StoreResult<()> {
    let n = c
        .prepare_cached(
            "UPDATE messages SET text = NULL, attachments = NULL, meta = NULL, deleted = 1, deleted_by = ?3 WHERE conversation_id = ?1 AND seq = ?2",
        )
        .and_then(|mut s| s.execute(params![r.conversation_id, int(r.seq), r.by_user]))
        .map_err(sql)?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    c.prepare_cached("DELETE FROM file_grants WHERE conversation_id = ?1 AND seq = ?2")
        .and_then(|mut s| s.execute(params![r.conversation_id, int(r.seq)]))
        .map_err(sql)?;
    log(c, r)
}

pub(super) fn hide(c: &Connection, r: &Retraction) -> StoreResult<()> {
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
) -> StoreResult<Vec<Retraction>> {
    let mut s = c
        .prepare_cached(&format!(
            "SELECT {RETRACTION_COLS} FROM retractions
             WHERE conversation_id = ?1 AND event_no > ?2 AND (for_user IS NULL OR for_user = ?3)
             ORDER BY event_no LIMIT ?4"
        ))
        .map_err(sql)?;
    let rows = s
        .query_map(params![id, int(after_event), user, limit], rows::retraction)
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
