//! v1.1: resumable uploads (their durable state; the bytes are on the node's disk), and the
//! file queries of upload housekeeping: a user's storage in use, the walk over old files.

use super::rows::int;
use super::sql;
use crate::storage::{StoreResult, UploadRow};
use rusqlite::{params, Connection, OptionalExtension, Row};

const COLS: &str =
    "upload_id, user_id, device_id, length, content_type, metadata, created_at, expires_at, file_id";

fn row(r: &Row) -> rusqlite::Result<UploadRow> {
    Ok(UploadRow {
        upload_id: r.get(0)?,
        user_id: r.get(1)?,
        device_id: r.get(2)?,
        length: r.get::<_, i64>(3)? as u64,
        content_type: r.get(4)?,
        metadata: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
        file_id: r.get(8)?,
    })
}

pub(super) fn create(c: &Connection, u: &UploadRow) -> StoreResult<()> {
    c.prepare_cached(&format!(
        "INSERT INTO uploads ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            u.upload_id,
            u.user_id,
            u.device_id,
            int(u.length),
            u.content_type,
            u.metadata,
            u.created_at,
            u.expires_at,
            u.file_id
        ])
    })
    .map_err(sql)?;
    Ok(())
}

pub(super) fn one(c: &Connection, id: &str) -> StoreResult<Option<UploadRow>> {
    c.prepare_cached(&format!("SELECT {COLS} FROM uploads WHERE upload_id = ?1"))
        .and_then(|mut s| s.query_row([id], row).optional())
        .map_err(sql)
}

pub(super) fn complete(c: &Connection, id: &str, file_id: &str) -> StoreResult<()> {
    c.prepare_cached("UPDATE uploads SET file_id = ?2 WHERE upload_id = ?1")
        .and_then(|mut s| s.execute([id, file_id]))
        .map_err(sql)?;
    Ok(())
}

pub(super) fn delete(c: &Connection, id: &str) -> StoreResult<()> {
    c.prepare_cached("DELETE FROM uploads WHERE upload_id = ?1")
        .and_then(|mut s| s.execute([id]))
        .map_err(sql)?;
    Ok(())
}

pub(super) fn expired(c: &Connection, now: i64, limit: u32) -> StoreResult<Vec<UploadRow>> {
    c.prepare_cached(&format!(
        "SELECT {COLS} FROM uploads WHERE expires_at < ?1 ORDER BY expires_at LIMIT ?2"
    ))
    .and_then(|mut s| {
        s.query_map(params![now, limit], row)?
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(sql)
}

pub(super) fn user_bytes(c: &Connection, user: &str) -> StoreResult<u64> {
    c.prepare_cached("SELECT COALESCE(SUM(size), 0) FROM files WHERE uploader_id = ?1")
        .and_then(|mut s| s.query_row([user], |r| r.get::<_, i64>(0)))
        .map(|n| n.max(0) as u64)
        .map_err(sql)
}

/// Files older than `before` with no grant, in id order after `after`.
pub(super) fn old_files(
    c: &Connection,
    before: i64,
    after: &str,
    limit: u32,
) -> StoreResult<(Vec<String>, Option<String>)> {
    let ids = c
        .prepare_cached(
            "SELECT f.file_id FROM files f WHERE f.file_id > ?2 AND f.created_at < ?1
             AND NOT EXISTS (SELECT 1 FROM file_grants g WHERE g.file_id = f.file_id)
             ORDER BY f.file_id LIMIT ?3",
        )
        .and_then(|mut s| {
            s.query_map(params![before, after, limit], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sql)?;
    let next = (ids.len() == limit as usize)
        .then(|| ids.last().cloned())
        .flatten();
    Ok((ids, next))
}
