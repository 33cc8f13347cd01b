//! File upload and download.
//!
//! Uploads stream to a temporary file while being hashed, then move into a content-addressed
//! blob store (`<data_dir>/files/ab/cd/<sha256>`), so identical uploads share one blob.
//! Downloads go through actix-files, which gives Range requests, ETag and If-None-Match.

use super::Caller;
use crate::actors::{new_id, now_ms, Core};
use crate::error::{ApiError, ApiResult};
use crate::storage::FileRow;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use parley_protocol::FileInfo;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

pub fn blob_path(blob_dir: &Path, sha256: &str) -> PathBuf {
    blob_dir
        .join(&sha256[0..2])
        .join(&sha256[2..4])
        .join(sha256)
}

/// Types whose bytes `infer` recognises: a declared type from these must match the bytes.
fn must_sniff(declared: &str) -> bool {
    declared.starts_with("image/")
        || declared.starts_with("audio/")
        || declared.starts_with("video/")
        || matches!(
            declared,
            "application/pdf" | "application/zip" | "application/gzip"
        )
}

/// Checks the declared content type against the first bytes of the body.
fn check_type(declared: &str, head: &[u8]) -> Result<(), ApiError> {
    match infer::get(head) {
        Some(kind) if kind.mime_type() == declared => Ok(()),
        // Formats that are zip containers (docx, epub...) sniff as their own types; text and
        // octet streams are accepted as declared when nothing is recognised.
        Some(kind)
            if declared == "application/octet-stream"
                && !kind.mime_type().starts_with("image/") =>
        {
            Ok(())
        }
        Some(kind) => Err(ApiError::bad_request(format!(
            "content type {declared} does not match the bytes ({})",
            kind.mime_type()
        ))),
        None if must_sniff(declared) => Err(ApiError::bad_request(format!(
            "the bytes are not {declared}"
        ))),
        None => Ok(()),
    }
}

pub async fn upload(
    core: web::Data<Core>,
    caller: Caller,
    req: HttpRequest,
    mut body: web::Payload,
) -> ApiResult<HttpResponse> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|v| !v.is_empty() && v.contains('/') && v.len() <= 128)
        .ok_or_else(|| ApiError::bad_request("set Content-Type to the file's type"))?;
    let max = core.config.limits.max_file_bytes;
    if let Some(len) = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > max {
            return Err(ApiError::too_large(format!(
                "files are at most {max} bytes"
            )));
        }
    }
    let tmp_dir = core.blob_dir.join("tmp");
    tokio::fs::create_dir_all(&tmp_dir)
        .await
        .map_err(ApiError::internal)?;
    let tmp = tmp_dir.join(new_id());
    let result = receive(&mut body, &tmp, max).await;
    let (size, sha, head) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    if size == 0 {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(ApiError::bad_request("empty file"));
    }
    if let Err(e) = check_type(&declared, &head) {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    let dest = blob_path(&core.blob_dir, &sha);
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(ApiError::internal)?;
    }
    tokio::fs::rename(&tmp, &dest)
        .await
        .map_err(ApiError::internal)?;
    let row = FileRow {
        file_id: new_id(),
        uploader_id: caller.user_id,
        size,
        content_type: declared,
        sha256: sha,
        created_at: now_ms(),
    };
    let info = FileInfo {
        file_id: row.file_id.clone(),
        size: row.size,
        content_type: row.content_type.clone(),
        sha256: row.sha256.clone(),
    };
    core.store.create_file(row).await?;
    Ok(HttpResponse::Created().json(info))
}

/// Streams the body to `tmp`: returns size, sha256 and the first bytes (for type sniffing).
async fn receive(
    body: &mut web::Payload,
    tmp: &Path,
    max: u64,
) -> ApiResult<(u64, String, Vec<u8>)> {
    let mut file = tokio::fs::File::create(tmp)
        .await
        .map_err(ApiError::internal)?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut head: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}")))?;
        size += chunk.len() as u64;
        if size > max {
            return Err(ApiError::too_large(format!(
                "files are at most {max} bytes"
            )));
        }
        if head.len() < 8192 {
            let take = (8192 - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    file.sync_all().await.map_err(ApiError::internal)?;
    Ok((size, hex::encode(hasher.finalize()), head))
}

pub async fn download(
    core: web::Data<Core>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    let row = core
        .store
        .file(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such file"))?;
    if !core.store.file_visible_to(&id, &caller.user_id).await? {
        return Err(ApiError::forbidden(
            "only the uploader and members of a conversation it was sent in may read this file",
        ));
    }
    let file = actix_files::NamedFile::open_async(blob_path(&core.blob_dir, &row.sha256))
        .await
        .map_err(|_| ApiError::not_found("file content is gone"))?;
    let mime = row
        .content_type
        .parse::<actix_web::mime::Mime>()
        .unwrap_or(actix_web::mime::APPLICATION_OCTET_STREAM);
    Ok(file
        .set_content_type(mime)
        .use_last_modified(true)
        .disable_content_disposition()
        .into_response(&req))
}
