//! File rows, the grants that make a file readable through a conversation, and the small
//! operational key-value table.

use super::rows::{self, int, FILE_COLS};
use super::sql;
use crate::storage::{FileRow, StoreResult};
use rusqlite::{params, Connection, OptionalExtension};

pub(super) fn create(c: &Connection, f: &FileRow) -> StoreResult<()> {
    c.prepare_cached(&format!(
        "INSERT INTO files ({FILE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            f.file_id,
            f.uploader_id,
            int(f.size),
            f.content_type,
            f.sha256,
            f.created_at,
            f.image.as_ref().map(|i| i.width),
            f.image.as_ref().map(|i| i.height),
            f.image.as_ref().map(|i| &i.thumb_sha256),
            f.image.as_ref().map(|i| &i.thumb_content_type),
            f.image.as_ref().map(|i| &i.placeholder),
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
        let shas: Option<(String, Option<String>)> = c
            .prepare_cached("DELETE FROM files WHERE file_id = ?1 RETURNING sha256, thumb_sha256")
            .and_then(|mut s| s.query_row([f], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(sql)?;
        let Some((sha, thumb)) = shas else { continue };
        // v1.1: an image's thumbnail goes with it.
        for sha in std::iter::once(sha).chain(thumb) {
            if !blob_in_use(c, &sha)? {
                blobs.push(sha);
            }
        }
    }
    Ok(blobs)
}

/// Whether a file row uses the blob, as its content or its thumbnail.
pub(super) fn blob_in_use(c: &Connection, sha: &str) -> StoreResult<bool> {
    c.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM files WHERE sha256 = ?1)
             OR EXISTS (SELECT 1 FROM files WHERE thumb_sha256 = ?1)",
    )
    .and_then(|mut s| s.query_row([sha], |r| r.get(0)))
    .map_err(sql)
}

pub(super) fn touch_kv(c: &Connection, key: &str, value: &str) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut s| s.execute([key, value]))
    .map_err(sql)?;
    Ok(())
}
