//! File upload and download.
//!
//! Uploads stream into the blob store (`crate::blobs`) while being hashed and move into place
//! only once complete; identical uploads share one blob. v1.1: an image is then processed
//! (`super::images`: stripped copy, thumbnail, placeholder) before its row is written.
//! Downloads stream from the blob backend (local disk or S3) with single-range requests, a
//! strong ETag (the hash) and If-None-Match (`gateway::range`), and carry the headers that
//! keep an uploaded file from running as a page of this origin: only known-safe media types
//! are shown inline, everything else is an attachment, always with `nosniff` and a
//! sandboxing CSP.

use super::error::io_error;
use super::range;
use crate::actors::Core;
use crate::blobs::Upload;
use crate::domain::view;
use crate::domain::Caller;
use crate::error::{ApiError, ApiResult};
use crate::ids::{new_id, now_ms};
use crate::media::Kind;
use crate::storage::FileRow;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use parley_protocol::{FileInfo, SignedUrl};
use serde::Deserialize;

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

/// v1.1: `POST /v1/files?keep_original=true` stores an image's bytes as sent (metadata and
/// all) instead of the stripped copy.
#[derive(Debug, Default, Deserialize)]
pub struct UploadQuery {
    #[serde(default)]
    pub keep_original: bool,
}

pub async fn upload(
    core: web::Data<Core>,
    req: HttpRequest,
    query: web::Query<UploadQuery>,
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
    let info = finish(&core, &caller, declared, upload, query.keep_original).await?;
    Ok(HttpResponse::Created().json(info))
}

/// Turns a complete upload into a stored file: the one place every way of uploading (a plain
/// POST, a resumed upload) ends, so the type check, the image processing and what is
/// recorded are the same for all.
pub(super) async fn finish(
    core: &Core,
    caller: &Caller,
    declared: String,
    upload: Upload,
    keep_original: bool,
) -> ApiResult<FileInfo> {
    if upload.size() == 0 {
        return Err(ApiError::bad_request("empty file"));
    }
    check_type(&declared, upload.head())?;
    let kind = Kind::sniff(upload.head());
    let size = upload.size();
    check_quota(core, &caller.user_id, size).await?;
    let sha256 = upload.commit().await.map_err(io_error)?;
    let mut row = FileRow {
        file_id: new_id(),
        uploader_id: caller.user_id.clone(),
        size,
        content_type: declared,
        sha256,
        created_at: now_ms(),
        image: None,
    };
    if let Some(kind) = kind {
        let stored = super::images::process(core, kind, &row.sha256, size, keep_original).await?;
        row.size = stored.size;
        row.content_type = stored.content_type;
        row.sha256 = stored.sha256;
        row.image = Some(stored.image);
    }
    let info = view::file_info(&row);
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

/// The file, if `user` may read it: its uploader, or a member of a conversation it was sent
/// in.
pub(super) async fn readable(core: &Core, id: &str, user: &str) -> ApiResult<FileRow> {
    let row = core
        .store
        .file(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such file"))?;
    if !core.store.file_visible_to(id, user).await? {
        return Err(ApiError::forbidden(
            "only the uploader and members of a conversation it was sent in may read this file",
        ));
    }
    Ok(row)
}

pub async fn download(
    core: web::Data<Core>,
    req: HttpRequest,
    path: web::Path<String>,
    signed: web::Query<super::images::SignedQuery>,
) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    let user = super::images::reader(&core, &req, &id, &signed).await?;
    let row = readable(&core, &id, &user).await?;
    serve_blob(&core, &req, &row.sha256, &row.content_type).await
}

/// `GET /v1/files/{id}/thumbnail`: an image's thumbnail, under the file's access rule.
pub async fn thumbnail(
    core: web::Data<Core>,
    req: HttpRequest,
    path: web::Path<String>,
    signed: web::Query<super::images::SignedQuery>,
) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    let user = super::images::reader(&core, &req, &id, &signed).await?;
    let row = readable(&core, &id, &user).await?;
    let image = row
        .image
        .ok_or_else(|| ApiError::not_found("this file has no thumbnail (not an image)"))?;
    serve_blob(&core, &req, &image.thumb_sha256, &image.thumb_content_type).await
}

/// `POST /v1/files/{id}/url`: URLs (paths on this server) that read the file, and an image's
/// thumbnail, without a token until `expires_at`.
pub async fn signed_url(
    core: web::Data<Core>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    let row = readable(&core, &id, &caller.user_id).await?;
    let ttl_ms = i64::try_from(core.config.media.url_ttl_secs * 1000).unwrap_or(i64::MAX);
    let exp = now_ms().saturating_add(ttl_ms);
    let sig = core.auth.sign_media(&id, &caller.user_id, exp);
    let query = format!("u={}&exp={exp}&sig={sig}", caller.user_id);
    Ok(HttpResponse::Ok().json(SignedUrl {
        url: format!("/v1/files/{id}?{query}"),
        thumbnail_url: row
            .image
            .map(|_| format!("/v1/files/{id}/thumbnail?{query}")),
        expires_at: exp,
    }))
}

/// v1.1: types a browser may show inline from this origin: images, audio and video it
/// renders as media, never as a document that runs script (no SVG, no HTML, no XML).
fn inline_safe(content_type: &str) -> bool {
    matches!(
        content_type,
        "image/jpeg"
            | "image/png"
            | "image/gif"
            | "image/webp"
            | "image/avif"
            | "image/heic"
            | "image/heif"
            | "audio/mpeg"
            | "audio/mp4"
            | "audio/aac"
            | "audio/ogg"
            | "audio/opus"
            | "audio/wav"
            | "audio/x-wav"
            | "audio/webm"
            | "audio/flac"
            | "audio/x-flac"
            | "video/mp4"
            | "video/webm"
            | "video/ogg"
            | "video/quicktime"
    )
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
    if !inline_safe(content_type) {
        resp.insert_header((header::CONTENT_DISPOSITION, "attachment"));
    }
    resp.insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, "sandbox"));
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
