//! File upload and download.
//!
//! Uploads stream into the blob store (`crate::blobs`) while being hashed and move into place
//! only once complete; identical uploads share one blob. Downloads stream from the blob
//! backend (local disk or S3) with single-range requests, a strong ETag (the hash) and
//! If-None-Match (`gateway::range`).

use super::range;
use crate::actors::Core;
use crate::blobs::Upload;
use crate::domain::Caller;
use crate::error::{ApiError, ApiResult};
use crate::ids::{new_id, now_ms};
use crate::storage::FileRow;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use parley_protocol::FileInfo;

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

/// The declared type, lower-cased, without parameters.
fn declared_type(req: &HttpRequest) -> ApiResult<String> {
    req.headers()
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
        .ok_or_else(|| ApiError::bad_request("set Content-Type to the file's type"))
}

/// A full disk is the node's condition, not a fault: `unavailable`, retry later.
pub(super) fn io_error(e: std::io::Error) -> ApiError {
    use std::io::ErrorKind::{QuotaExceeded, StorageFull};
    let mut err = match e.kind() {
        StorageFull | QuotaExceeded => {
            ApiError::unavailable("the server's storage is full; retry later")
        }
        _ => ApiError::internal(&e),
    };
    err.cause = Some(e.to_string());
    err
}

fn too_large(max: u64) -> ApiError {
    ApiError::too_large(format!("files are at most {max} bytes"))
}

/// v1.1: refuses `adding` more bytes for a user whose files would go past
/// `uploads.user_quota_bytes` (`too_large`). Every upload counts in full, even when another
/// user sent the same bytes (which are stored once), so the quota tells nothing about
/// others' files. Concurrent uploads may pass it together by up to their sizes.
pub(super) async fn check_quota(core: &Core, user_id: &str, adding: u64) -> ApiResult<()> {
    let quota = core.config.uploads.user_quota_bytes;
    if quota == 0 {
        return Ok(());
    }
    let used = core.store.user_file_bytes(user_id).await?;
    if used.saturating_add(adding) > quota {
        return Err(ApiError::too_large(format!(
            "storage quota exceeded: {used} of {quota} bytes in use"
        )));
    }
    Ok(())
}

pub async fn upload(
    core: web::Data<Core>,
    req: HttpRequest,
    mut body: web::Payload,
) -> ApiResult<HttpResponse> {
    let caller = super::token_caller(&req)?;
    let declared = declared_type(&req)?;
    let _permit = core.admission.upload(&caller.user_id)?;
    super::check_device(&core, &caller).await?;
    let max = core.config.limits.max_file_bytes;
    let announced = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > max) {
        return Err(too_large(max));
    }
    check_quota(&core, &caller.user_id, announced.unwrap_or(0)).await?;
    let mut upload = core.blobs.begin().await.map_err(io_error)?;
    receive(&mut body, &mut upload, max).await?;
    let info = finish(&core, &caller, declared, upload).await?;
    Ok(HttpResponse::Created().json(info))
}

/// Turns a complete upload into a stored file: the one place every way of uploading (a plain
/// POST, a resumed upload) ends, so the type check and what is recorded are the same for all.
pub(super) async fn finish(
    core: &Core,
    caller: &Caller,
    declared: String,
    upload: Upload,
) -> ApiResult<FileInfo> {
    if upload.size() == 0 {
        return Err(ApiError::bad_request("empty file"));
    }
    check_type(&declared, upload.head())?;
    let size = upload.size();
    check_quota(core, &caller.user_id, size).await?;
    let sha256 = upload.commit().await.map_err(io_error)?;
    let row = FileRow {
        file_id: new_id(),
        uploader_id: caller.user_id.clone(),
        size,
        content_type: declared,
        sha256,
        created_at: now_ms(),
    };
    let info = FileInfo {
        file_id: row.file_id.clone(),
        size: row.size,
        content_type: row.content_type.clone(),
        sha256: row.sha256.clone(),
    };
    core.store.create_file(row).await?;
    Ok(info)
}

/// Streams the body into `upload`, at most `max` bytes. On any error the upload is dropped
/// by the caller, which removes its temporary file.
async fn receive(body: &mut web::Payload, upload: &mut Upload, max: u64) -> ApiResult<()> {
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| match super::slow::is_timeout(&e) {
            true => super::slow::too_slow(),
            false => ApiError::bad_request(format!("upload interrupted: {e}")),
        })?;
        if upload.size() + chunk.len() as u64 > max {
            return Err(too_large(max));
        }
        upload.write(&chunk).await.map_err(io_error)?;
    }
    Ok(())
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
    serve_blob(&core, &req, &row.sha256, &row.content_type).await
}

/// Sends a stored blob with its type: the one place bytes leave the blob store for a client,
/// so Range, ETag and the headers that make serving safe are the same for every endpoint and
/// every backend (the bytes stream from local disk or S3 through the server).
pub(super) async fn serve_blob(
    core: &Core,
    req: &HttpRequest,
    sha256: &str,
    content_type: &str,
) -> ApiResult<HttpResponse> {
    use actix_web::http::header;
    let gone = || ApiError::not_found("file content is gone");
    let size = core
        .blobs
        .size(sha256)
        .await
        .map_err(io_error)?
        .ok_or_else(gone)?;
    // Content-addressed: the hash is a strong validator for as long as the file exists.
    let etag = format!("\"{sha256}\"");
    let mut resp = HttpResponse::Ok();
    resp.insert_header((header::ETAG, etag.clone()))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((
            header::CACHE_CONTROL,
            "private, max-age=31536000, immutable",
        ));
    if range::not_modified(req, &etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish());
    }
    let (start, end) = match range::requested(req, &etag, size) {
        range::Wanted::All => (0, size),
        range::Wanted::Part(start, end) => {
            resp.status(actix_web::http::StatusCode::PARTIAL_CONTENT)
                .insert_header((
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{}/{size}", end - 1),
                ));
            (start, end)
        }
        range::Wanted::Unsatisfiable => {
            return Ok(HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, format!("bytes */{size}")))
                .finish());
        }
    };
    let mime = content_type
        .parse::<actix_web::mime::Mime>()
        .unwrap_or(actix_web::mime::APPLICATION_OCTET_STREAM);
    resp.content_type(mime);
    if req.method() == actix_web::http::Method::HEAD {
        return Ok(resp.no_chunking(end - start).finish());
    }
    let body = core
        .blobs
        .read(sha256, start, end)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => gone(),
            _ => io_error(e),
        })?;
    Ok(resp.body(actix_web::body::SizedStream::new(end - start, body)))
}
