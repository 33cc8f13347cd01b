//! v1.1: resumable uploads, and the indexes of upload housekeeping: a user's files with their
//! sizes (the quota) and files by upload day (the unattached-file sweep).

use super::rows::{FileCols, UploadCols};
use super::{bigint, cql, ScyllaStore};
use crate::storage::{FileRow, Page, StoreResult, UploadRow};

const DAY_MS: i64 = 86_400_000;
/// Days before the cut-off the unattached-file sweep reads (it runs many times a day, so a
/// file is looked at on many sweeps before its day leaves the window).
const LOOKBACK_DAYS: i64 = 30;

pub(super) async fn index_file(s: &ScyllaStore, f: &FileRow) -> StoreResult<()> {
    s.exec(
        &cql::INSERT_FILE_BY_UPLOADER,
        (f.uploader_id.as_str(), f.file_id.as_str(), bigint(f.size)),
    )
    .await?;
    s.exec(
        &cql::INSERT_FILE_BY_DAY,
        (f.created_at.div_euclid(DAY_MS), f.file_id.as_str()),
    )
    .await
    .map(|_| ())
}

pub(super) async fn unindex_file(s: &ScyllaStore, f: &FileRow) -> StoreResult<()> {
    s.exec(
        &cql::DELETE_FILE_BY_UPLOADER,
        (f.uploader_id.as_str(), f.file_id.as_str()),
    )
    .await?;
    s.exec(
        &cql::DELETE_FILE_BY_DAY,
        (f.created_at.div_euclid(DAY_MS), f.file_id.as_str()),
    )
    .await
    .map(|_| ())
}

pub(super) async fn user_bytes(s: &ScyllaStore, user_id: &str) -> StoreResult<u64> {
    let rows = s.rows::<(i64,)>(&cql::FILE_SIZES_OF, (user_id,)).await?;
    Ok(rows.into_iter().map(|r| r.0.max(0) as u64).sum())
}

/// The cursor is `<day>/<file_id>`; a file of the cut-off's own day may be newer than the
/// cut-off and is left out.
pub(super) async fn old_files(
    s: &ScyllaStore,
    before: i64,
    after: &str,
    limit: u32,
) -> StoreResult<Page> {
    let last_day = before.div_euclid(DAY_MS);
    let (mut day, mut from) = match after.split_once('/') {
        Some((d, f)) => (d.parse().unwrap_or(last_day), f.to_string()),
        None => (last_day - LOOKBACK_DAYS, String::new()),
    };
    while day <= last_day {
        let ids = s
            .rows::<(String,)>(&cql::FILES_OF_DAY, (day, from.as_str(), limit as i32))
            .await?;
        if ids.len() == limit as usize {
            let next = format!("{day}/{}", ids.last().map(|r| r.0.as_str()).unwrap_or(""));
            let ids = old_only(s, ids, before).await?;
            return Ok((ids, Some(next)));
        }
        if !ids.is_empty() {
            let ids = old_only(s, ids, before).await?;
            return Ok((ids, Some(format!("{}/", day + 1))));
        }
        day += 1;
        from.clear();
    }
    Ok((Vec::new(), None))
}

async fn old_only(s: &ScyllaStore, ids: Vec<(String,)>, before: i64) -> StoreResult<Vec<String>> {
    let mut out = Vec::new();
    for (id,) in ids {
        if s.row::<FileCols>(&cql::FILE_BY_ID, (id.as_str(),))
            .await?
            .is_some_and(|f| f.created_at < before)
        {
            out.push(id);
        }
    }
    Ok(out)
}

pub(super) async fn create(s: &ScyllaStore, u: UploadRow) -> StoreResult<()> {
    s.exec(
        &cql::INSERT_UPLOAD,
        (
            u.upload_id.as_str(),
            u.user_id.as_str(),
            u.device_id.as_str(),
            bigint(u.length),
            u.content_type.as_str(),
            u.metadata.as_str(),
            u.created_at,
            u.expires_at,
            u.file_id.as_deref(),
        ),
    )
    .await?;
    s.exec(
        &cql::INSERT_UPLOAD_BY_DAY,
        (u.expires_at.div_euclid(DAY_MS), u.upload_id.as_str()),
    )
    .await
    .map(|_| ())
}

pub(super) async fn one(s: &ScyllaStore, id: &str) -> StoreResult<Option<UploadRow>> {
    Ok(s.row::<UploadCols>(&cql::UPLOAD_BY_ID, (id,))
        .await?
        .map(UploadRow::from))
}

pub(super) async fn complete(s: &ScyllaStore, id: &str, file_id: &str) -> StoreResult<()> {
    s.exec(&cql::COMPLETE_UPLOAD, (file_id, id))
        .await
        .map(|_| ())
}

pub(super) async fn delete(s: &ScyllaStore, id: &str) -> StoreResult<()> {
    if let Some(u) = one(s, id).await? {
        s.exec(
            &cql::DELETE_UPLOAD_BY_DAY,
            (u.expires_at.div_euclid(DAY_MS), id),
        )
        .await?;
    }
    s.exec(&cql::DELETE_UPLOAD, (id,)).await.map(|_| ())
}

/// Reads the expiry days up to today, from `LOOKBACK_DAYS` before.
pub(super) async fn expired(s: &ScyllaStore, now: i64, limit: u32) -> StoreResult<Vec<UploadRow>> {
    let today = now.div_euclid(DAY_MS);
    let mut out = Vec::new();
    for day in today - LOOKBACK_DAYS..=today {
        for (id,) in s.rows::<(String,)>(&cql::UPLOADS_OF_DAY, (day,)).await? {
            match one(s, &id).await? {
                Some(u) if u.expires_at < now => out.push(u),
                Some(_) => {}
                None => {
                    s.exec(&cql::DELETE_UPLOAD_BY_DAY, (day, id.as_str()))
                        .await?;
                }
            }
            if out.len() >= limit as usize {
                return Ok(out);
            }
        }
    }
    Ok(out)
}
