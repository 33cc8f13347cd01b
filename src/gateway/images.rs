//! v1.1: images on the HTTP side: processing an uploaded image (`crate::media`) off the HTTP
//! threads, and checking the short-lived signed URLs that let a browser load media in `<img>`
//! and `<video>` tags, which cannot send an Authorization header (`super::files` issues them
//! and serves what they open).
//!
//! A signed URL names the file, the user it was issued to and its expiry (ms), signed with
//! HMAC-SHA256 under the media secret every node shares (`media.url_secret`, else derived from
//! the token secret): any node can check it, and the file's access rule is checked again for
//! that user on every request. It is never a token: it opens only that file (and its
//! thumbnail) for `media.url_ttl_secs`.

use super::error::io_error;
use crate::actors::Core;
use crate::error::{ApiError, ApiResult};
use crate::ids::now_ms;
use crate::media::{self, Kind, MediaError};
use crate::storage::ImageMeta;
use actix_web::HttpRequest;
use serde::Deserialize;

/// What an image upload is stored as.
pub(super) struct Stored {
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    pub image: ImageMeta,
}

/// Processes the committed upload `original` (of `kind`): stores the stripped copy (unless
/// `keep_original`) and the thumbnail. On failure, and when the copy replaced them, the
/// original bytes are unlinked unless a file row uses them.
pub(super) async fn process(
    core: &Core,
    kind: Kind,
    original: &str,
    size: u64,
    keep_original: bool,
) -> ApiResult<Stored> {
    let result = run(core, kind, original, size, keep_original).await;
    let replaced = result.as_ref().map_or(true, |s| s.sha256 != original);
    if replaced {
        discard(core, original).await;
    }
    result
}

async fn run(
    core: &Core,
    kind: Kind,
    original: &str,
    size: u64,
    keep_original: bool,
) -> ApiResult<Stored> {
    let permit = core.media.permit().await.ok_or_else(|| {
        core.metrics.images_refused.inc();
        let mut e = ApiError::unavailable("the server is busy processing images; retry later");
        e.retry_after_secs = Some(1);
        e
    })?;
    let bytes = read_all(core, original, size).await?;
    let cfg = core.config.media.clone();
    let started = std::time::Instant::now();
    let processed = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        media::process(&bytes, kind, &cfg, keep_original)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| match e {
        MediaError::TooLarge(m) => ApiError::too_large(m),
        MediaError::Bad(m) => ApiError::bad_request(m),
    })?;
    core.metrics
        .image_seconds
        .observe(started.elapsed().as_secs_f64());
    let thumb_sha256 = put(core, &processed.thumbnail.bytes).await?;
    let (sha256, size, content_type) = match processed.stored {
        None => (original.to_string(), size, kind.mime()),
        Some(copy) => (
            put(core, &copy.bytes).await?,
            copy.bytes.len() as u64,
            copy.content_type,
        ),
    };
    Ok(Stored {
        content_type: content_type.to_string(),
        size,
        sha256,
        image: ImageMeta {
            width: processed.width,
            height: processed.height,
            thumb_sha256,
            thumb_content_type: processed.thumbnail.content_type.to_string(),
            placeholder: processed.placeholder,
        },
    })
}

/// The whole blob, from whichever backend holds it (decoding needs all of it at once).
async fn read_all(core: &Core, sha: &str, size: u64) -> ApiResult<Vec<u8>> {
    use futures_util::StreamExt;
    let mut stream = core.blobs.read(sha, 0, size).await.map_err(io_error)?;
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.map_err(io_error)?);
    }
    Ok(out)
}

/// Stores bytes as a blob; returns its hash.
async fn put(core: &Core, bytes: &[u8]) -> ApiResult<String> {
    let mut up = core.blobs.begin().await.map_err(io_error)?;
    up.write(bytes).await.map_err(io_error)?;
    up.commit().await.map_err(io_error)
}

/// Unlinks an upload's original bytes unless a file row uses the same blob (identical bytes
/// uploaded earlier and kept). A failure leaves an unreferenced blob, logged here.
async fn discard(core: &Core, sha: &str) {
    match core.store.blob_in_use(sha).await {
        Ok(false) => {
            if let Err(e) = core.blobs.unlink(sha).await {
                tracing::warn!(error = %e, blob = %sha, "could not unlink an image's original");
            }
        }
        Ok(true) => {}
        Err(e) => tracing::warn!(error = %e, blob = %sha, "could not check an image's original"),
    }
}

/// The query of a signed media URL.
#[derive(Debug, Default, Deserialize)]
pub struct SignedQuery {
    #[serde(default)]
    pub u: Option<String>,
    #[serde(default)]
    pub exp: Option<i64>,
    #[serde(default)]
    pub sig: Option<String>,
}

/// Who reads file `id`: the user of a valid, unexpired signed URL for it, or else the bearer
/// token's caller (whose device must still exist).
pub(super) async fn reader(
    core: &Core,
    req: &HttpRequest,
    id: &str,
    q: &SignedQuery,
) -> ApiResult<String> {
    let (Some(user), Some(exp), Some(sig)) = (&q.u, q.exp, &q.sig) else {
        let caller = super::token_caller(req)?;
        super::check_device(core, &caller).await?;
        return Ok(caller.user_id);
    };
    if !core.auth.media_signed(id, user, exp, sig) {
        return Err(ApiError::unauthorized("bad media link signature"));
    }
    if exp < now_ms() {
        return Err(ApiError::unauthorized(
            "media link expired; ask for a new one",
        ));
    }
    Ok(user.clone())
}
