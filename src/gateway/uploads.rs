//! v1.1: resumable uploads, tus 1.0.0 (core, creation, termination, expiration) under
//! `/v1/uploads`, so a phone on a flaky network resumes where it stopped instead of starting
//! over.
//!
//! The upload's durable state is a row in the store (who, how long, the declared type, the
//! client's metadata, when it expires) and its bytes so far a file on this node's disk
//! (`Blobs::partial_dir`), appended to and fsynced by each PATCH, also when the connection
//! drops midway, so the length of that file is the offset a HEAD reports, after a reconnect
//! or a restart of the node. Once the last byte arrives, the file goes through
//! `files::finish` like a plain upload (type check, quota, the blob store, the file row) and
//! the upload records the file id, which `Parley-File-Id` carries on the last PATCH and on
//! every later HEAD. The partial bytes stay on the node that took them: behind a load
//! balancer, an upload's requests must reach the same node (a HEAD elsewhere is 404, and tus
//! clients then start a new upload).

use super::files;
use crate::actors::Core;
use crate::domain::Caller;
use crate::error::{ApiError, ApiResult};
use crate::ids::{new_id, now_ms};
use crate::storage::UploadRow;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use futures_util::StreamExt;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};
use tokio::io::AsyncWriteExt;

const TUS: &str = "1.0.0";
const OCTETS: &str = "application/offset+octet-stream";
/// Longest `Upload-Metadata` kept.
const MAX_METADATA: usize = 4096;

/// Uploads a PATCH is writing right now on this node: a second PATCH of the same upload is
/// refused (409) rather than interleaving bytes.
static BUSY: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

struct Busy(String);

impl Busy {
    fn take(id: &str) -> ApiResult<Busy> {
        let mut set = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        if !set.insert(id.to_string()) {
            return Err(ApiError::conflict("another request is writing this upload"));
        }
        Ok(Busy(id.to_string()))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn header_u64(req: &HttpRequest, name: &str) -> ApiResult<Option<u64>> {
    header_str(req, name)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("{name} must be a whole number")))
        })
        .transpose()
}

fn tus(mut b: HttpResponseBuilder) -> HttpResponseBuilder {
    b.insert_header(("Tus-Resumable", TUS))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    b
}

/// 412 for a client that does not speak tus 1.0.0 (the one version served).
fn unsupported_version(req: &HttpRequest) -> Option<HttpResponse> {
    (header_str(req, "Tus-Resumable") != Some(TUS)).then(|| {
        HttpResponse::PreconditionFailed()
            .insert_header(("Tus-Version", TUS))
            .json(parley_protocol::ErrorBody {
                error: parley_protocol::ErrorDetail {
                    code: parley_protocol::ErrorCode::BadRequest,
                    message: "set Tus-Resumable: 1.0.0".into(),
                },
            })
    })
}

fn expires(at_ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at_ms.max(0) as u64);
    httpdate::fmt_http_date(t)
}

/// The declared type from `Upload-Metadata` (`filetype` or `content_type`, base64 values).
fn declared_type(metadata: &str) -> ApiResult<String> {
    use base64::Engine;
    for pair in metadata.split(',') {
        let mut it = pair.trim().splitn(2, ' ');
        let (Some(key), value) = (it.next(), it.next()) else {
            continue;
        };
        if key != "filetype" && key != "content_type" {
            continue;
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(value.unwrap_or("").trim())
            .map_err(|_| ApiError::bad_request("Upload-Metadata values are base64"))?;
        let t = String::from_utf8_lossy(&raw);
        let t = t
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if t.is_empty() || !t.contains('/') || t.len() > 128 {
            return Err(ApiError::bad_request("filetype must be a media type"));
        }
        return Ok(t);
    }
    Ok("application/octet-stream".into())
}

pub async fn options(core: web::Data<Core>) -> HttpResponse {
    tus(HttpResponse::NoContent())
        .insert_header(("Tus-Version", TUS))
        .insert_header(("Tus-Extension", "creation,termination,expiration"))
        .insert_header((
            "Tus-Max-Size",
            core.config.limits.max_file_bytes.to_string(),
        ))
        .finish()
}

pub async fn create(core: web::Data<Core>, req: HttpRequest) -> ApiResult<HttpResponse> {
    if let Some(r) = unsupported_version(&req) {
        return Ok(r);
    }
    let caller = super::token_caller(&req)?;
    super::check_device(&core, &caller).await?;
    let Some(length) = header_u64(&req, "Upload-Length")? else {
        return Err(ApiError::bad_request(
            "set Upload-Length (Upload-Defer-Length is not supported)",
        ));
    };
    let max = core.config.limits.max_file_bytes;
    if length > max {
        return Err(ApiError::too_large(format!(
            "files are at most {max} bytes"
        )));
    }
    if length == 0 {
        return Err(ApiError::bad_request("empty file"));
    }
    let metadata = header_str(&req, "Upload-Metadata")
        .unwrap_or("")
        .to_string();
    if metadata.len() > MAX_METADATA {
        return Err(ApiError::too_large("Upload-Metadata is too long"));
    }
    let content_type = declared_type(&metadata)?;
    files::check_quota(&core, &caller.user_id, length).await?;
    let now = now_ms();
    let row = UploadRow {
        upload_id: new_id(),
        user_id: caller.user_id.clone(),
        device_id: caller.device_id.clone(),
        length,
        content_type,
        metadata,
        created_at: now,
        expires_at: now + (core.config.uploads.resumable_expire_secs as i64) * 1000,
        file_id: None,
    };
    let path = partial_path(&core, &row.upload_id);
    let made = async {
        tokio::fs::create_dir_all(core.blobs.partial_dir()).await?;
        tokio::fs::File::create(&path).await?.sync_all().await
    };
    made.await.map_err(super::error::io_error)?;
    core.store.create_upload(row.clone()).await?;
    Ok(tus(HttpResponse::Created())
        .insert_header((header::LOCATION, format!("/v1/uploads/{}", row.upload_id)))
        .insert_header(("Upload-Offset", "0"))
        .insert_header(("Upload-Expires", expires(row.expires_at)))
        .finish())
}

fn partial_path(core: &Core, upload_id: &str) -> PathBuf {
    core.blobs.partial_dir().join(upload_id)
}

/// The caller's upload, not expired; anyone else's is "no such upload".
async fn own(core: &Core, caller: &Caller, id: &str) -> ApiResult<UploadRow> {
    match core.store.upload(id).await? {
        Some(u) if u.user_id == caller.user_id && u.expires_at > now_ms() => Ok(u),
        _ => Err(ApiError::not_found("no such upload")),
    }
}

/// The bytes received so far (the length of the partial file), or 404 if this node has
/// none (expired, or the upload went to another node).
async fn offset(core: &Core, u: &UploadRow) -> ApiResult<u64> {
    if u.file_id.is_some() {
        return Ok(u.length);
    }
    match tokio::fs::metadata(partial_path(core, &u.upload_id)).await {
        Ok(m) => Ok(m.len()),
        Err(_) => Err(ApiError::not_found(
            "this node has no bytes of that upload; start a new one",
        )),
    }
}

fn state(mut b: HttpResponseBuilder, u: &UploadRow, offset: u64) -> HttpResponse {
    b.insert_header(("Upload-Offset", offset.to_string()))
        .insert_header(("Upload-Length", u.length.to_string()))
        .insert_header(("Upload-Expires", expires(u.expires_at)));
    if let Ok(v) = HeaderValue::from_str(&u.metadata) {
        if !u.metadata.is_empty() {
            b.insert_header(("Upload-Metadata", v));
        }
    }
    if let Some(f) = &u.file_id {
        b.insert_header(("Parley-File-Id", f.as_str()));
    }
    b.finish()
}

pub async fn head(
    core: web::Data<Core>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let u = own(&core, &caller, &path).await?;
    let at = offset(&core, &u).await?;
    Ok(state(tus(HttpResponse::Ok()), &u, at))
}

/// Not part of tus: the upload's state as JSON, with the file it became.
pub async fn get(
    core: web::Data<Core>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let u = own(&core, &caller, &path).await?;
    let at = offset(&core, &u).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "upload_id": u.upload_id,
        "offset": at,
        "length": u.length,
        "content_type": u.content_type,
        "expires_at": u.expires_at,
        "file_id": u.file_id,
    })))
}

pub async fn delete(
    core: web::Data<Core>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let u = own(&core, &caller, &path).await?;
    remove(&core, &u.upload_id).await?;
    Ok(tus(HttpResponse::NoContent()).finish())
}

/// Forgets an upload: its partial bytes (if this node has them), then its row.
pub(super) async fn remove(core: &Core, id: &str) -> ApiResult<()> {
    match tokio::fs::remove_file(partial_path(core, id)).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(super::error::io_error(e))
        }
        _ => {}
    }
    core.store.delete_upload(id).await?;
    Ok(())
}

pub async fn patch(
    core: web::Data<Core>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    if let Some(r) = unsupported_version(&req) {
        return Ok(r);
    }
    let caller = super::token_caller(&req)?;
    let _permit = core.admission.upload(&caller.user_id)?;
    super::check_device(&core, &caller).await?;
    let ct = header_str(&req, "Content-Type").unwrap_or("");
    if ct.split(';').next().unwrap_or("").trim() != OCTETS {
        return Ok(HttpResponse::UnsupportedMediaType().finish());
    }
    let Some(claimed) = header_u64(&req, "Upload-Offset")? else {
        return Err(ApiError::bad_request("set Upload-Offset"));
    };
    let u = own(&core, &caller, &path).await?;
    let _busy = Busy::take(&u.upload_id)?;
    let at = offset(&core, &u).await?;
    if claimed != at {
        return Err(ApiError::conflict(format!(
            "Upload-Offset is {claimed} but the upload is at {at}"
        )));
    }
    if u.file_id.is_some() {
        // The last PATCH's answer was lost: the same answer again.
        return Ok(state(tus(HttpResponse::NoContent()), &u, at));
    }
    let (at, interrupted) = append(&core, &u, at, body).await?;
    if at < u.length {
        return match interrupted {
            Some(e) => Err(e),
            None => Ok(state(tus(HttpResponse::NoContent()), &u, at)),
        };
    }
    let file_id = complete(&core, &caller, &u).await?;
    let done = UploadRow {
        file_id: Some(file_id),
        ..u
    };
    Ok(state(tus(HttpResponse::NoContent()), &done, at))
}

/// Appends the body to the partial file, at most up to the upload's length, and fsyncs what
/// arrived, also when the body stops early (a dropped connection, a timeout). Returns the
/// new offset and, if the body did not end cleanly, why.
async fn append(
    core: &Core,
    u: &UploadRow,
    mut at: u64,
    mut body: web::Payload,
) -> ApiResult<(u64, Option<ApiError>)> {
    let mut file = tokio::fs::OpenOptions::new()
        .append(true)
        .open(partial_path(core, &u.upload_id))
        .await
        .map_err(super::error::io_error)?;
    let mut stopped = None;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                stopped = Some(match super::slow::is_timeout(&e) {
                    true => super::slow::too_slow(),
                    false => ApiError::bad_request(format!("upload interrupted: {e}")),
                });
                break;
            }
        };
        if at + chunk.len() as u64 > u.length {
            stopped = Some(ApiError::too_large("the body goes past Upload-Length"));
            break;
        }
        file.write_all(&chunk)
            .await
            .map_err(super::error::io_error)?;
        at += chunk.len() as u64;
    }
    file.sync_data().await.map_err(super::error::io_error)?;
    Ok((at, stopped))
}

/// The last byte arrived: the partial file becomes a file like any upload. Refused (a type
/// that does not match its bytes, the quota), the upload is forgotten.
async fn complete(core: &Core, caller: &Caller, u: &UploadRow) -> ApiResult<String> {
    let upload = core
        .blobs
        .adopt(&partial_path(core, &u.upload_id))
        .await
        .map_err(super::error::io_error)?;
    match files::finish(core, caller, u.content_type.clone(), upload, false).await {
        Ok(info) => {
            core.store
                .complete_upload(&u.upload_id, &info.file_id)
                .await?;
            Ok(info.file_id)
        }
        Err(e) => {
            if let Err(gone) = remove(core, &u.upload_id).await {
                tracing::warn!(error = %gone.message, "could not forget a refused upload");
            }
            Err(e)
        }
    }
}
