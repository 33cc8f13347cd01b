//! File rows, the grants that make a file readable through a conversation, and the small
//! operational key-value table.

use super::rows::{self, int, FILE_COLS};
use super::sql;
use crate::storage::{FileRow, StoreResult};
use rusqlite::{params, Connection, OptionalExtension};

pub(super) fn create(c: &Connection, f: &FileRow) -> StoreResult<()> {
    c.prepare_cached(&format!(
        "INSERT INTO files ({FILE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            f.file_id,
            f.uploader_id,
            int(f.size),
            f.content_type,
            f.sha256,
            f.created_at
        ])
    })
    .map_err(sql)?;
    Ok(())
}

pub(super) fn one(c: &Connection, file_id: &str) -> StoreResult<Option<FileRow>> {
    c.prepare_cached(&format!("SELECT {FILE_COLS} FROM files WHERE file_id = ?1"))
        .and_then(|mut s| s.query_row([file_id], rows::file).optional())
        .map_err(sql)
}

pub(super) fn visible_to(c: &Connection, file_id: &str, user: &str) -> StoreResult<bool> {
    c.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM files WHERE file_id = ?1 AND uploader_id = ?2)
             OR EXISTS (SELECT 1 FROM file_grants g JOIN members m
                        ON m.conversation_id = g.conversation_id AND m.user_id = ?2
                        WHERE g.file_id = ?1)",
    )
    .and_then(|mut s| s.query_row(params![file_id, user], |r| r.get::<_, bool>(0)))
    .map_err(sql)
}

/// Of `file_ids`, removes the rows no grant uses any more; returns the hashes of the blobs no
/// remaining row uses (they may be unlinked).
pub(super) fn orphaned_blobs(c: &Connection, file_ids: &[String]) -> StoreResult<Vec<String>> {
    let mut blobs = Vec::new();
    for f in file_ids {
        let granted: bool = c
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM file_grants WHERE file_id = ?1)")
            .and_then(|mut s| s.query_row([f], |r| r.get(0)))
            .map_err(sql)?;
        if granted {
            continue;
        }
        let sha: Option<String> = c
            .prepare_cached("DELETE FROM files WHERE file_id = ?1 RETURNING sha256")
            .and_then(|mut s| s.query_row([f], |r| r.get(0)).optional())
            .map_err(sql)?;
        if let Some(sha) = sha {
            let shared: bool = c
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM files WHERE sha256 = ?1)")
                .and_then(|mut s| s.query_row([&sha], |r| r.get(0)))
                .map_err(sql)?;
            if !shared {
                blobs.push(sha);
            }
        }
    }
    Ok(blobs)
}

pub(super) fn touch_kv(c: &Connection, key: &str, value: &str) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut s| s.execute([key, value]))
    .map_err(sql)?;
    Ok(())
}
