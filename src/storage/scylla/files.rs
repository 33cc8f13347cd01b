//! File rows, their grants (which conversations a file was sent in) and the hash index that
//! tells when a blob is no longer used.

use super::rows::FileCols;
use super::{bigint, conversations, cql, ScyllaStore};
use crate::storage::{FileRow, StoreResult};

pub(super) async fn create(s: &ScyllaStore, f: FileRow) -> StoreResult<()> {
    s.exec(
        &cql::INSERT_FILE,
        (
            f.file_id.as_str(),
            f.uploader_id.as_str(),
            bigint(f.size),
            f.content_type.as_str(),
            f.sha256.as_str(),
            f.created_at,
            f.image.as_ref().map(|i| i.width as i32),
            f.image.as_ref().map(|i| i.height as i32),
            f.image.as_ref().map(|i| i.thumb_sha256.as_str()),
            f.image.as_ref().map(|i| i.thumb_content_type.as_str()),
            f.image.as_ref().map(|i| i.placeholder.as_str()),
        ),
    )
    .await?;
    // A thumbnail's blob is indexed like the content's: `blob_in_use` sees both.
    let thumb = f.image.as_ref().map(|i| i.thumb_sha256.as_str());
    for sha in std::iter::once(f.sha256.as_str()).chain(thumb) {
        s.exec(&cql::INSERT_FILE_BY_SHA, (sha, f.file_id.as_str()))
            .await?;
    }
    super::uploads::index_file(s, &f).await
}

pub(super) async fn blob_in_use(s: &ScyllaStore, sha: &str) -> StoreResult<bool> {
    Ok(s.row::<(String,)>(&cql::FILES_BY_SHA, (sha,))
        .await?
        .is_some())
}

pub(super) async fn one(s: &ScyllaStore, file_id: &str) -> StoreResult<Option<FileRow>> {
    Ok(s.row::<FileCols>(&cql::FILE_BY_ID, (file_id,))
        .await?
        .map(FileRow::from))
}

/// The conversations the file was sent in (one entry per message that carries it).
async fn grants(s: &ScyllaStore, file_id: &str) -> StoreResult<Vec<String>> {
    Ok(s.rows::<(String,)>(&cql::GRANTS_OF_FILE, (file_id,))
        .await?
        .into_iter()
        .map(|r| r.0)
        .collect())
}

pub(super) async fn visible_to(s: &ScyllaStore, file_id: &str, user_id: &str) -> StoreResult<bool> {
    if one(s, file_id)
        .await?
        .is_some_and(|f| f.uploader_id == user_id)
    {
        return Ok(true);
    }
    for conv in grants(s, file_id).await? {
        if conversations::member(s, &conv, user_id).await?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

pub(super) async fn orphaned_blobs(
    s: &ScyllaStore,
    file_ids: Vec<String>,
) -> StoreResult<Vec<String>> {
    let mut blobs = Vec::new();
    for f in file_ids {
        if !grants(s, &f).await?.is_empty() {
            continue;
        }
        let Some(row) = one(s, &f).await? else {
            continue;
        };
        s.exec(&cql::DELETE_FILE, (f.as_str(),)).await?;
        super::uploads::unindex_file(s, &row).await?;
        // v1.1: an image's thumbnail goes with it.
        let thumb = row.image.map(|i| i.thumb_sha256);
        for sha in std::iter::once(row.sha256).chain(thumb) {
            s.exec(&cql::DELETE_FILE_BY_SHA, (sha.as_str(), f.as_str()))
                .await?;
            if !blob_in_use(s, &sha).await? {
                blobs.push(sha);
            }
        }
    }
    Ok(blobs)
}
