//! Push set-up a client needs from the server: the Web Push VAPID public key, which a web app
//! passes to `pushManager.subscribe` (as `applicationServerKey`) before it can register a
//! `webpush` target. It is configuration, so it is read from the configured key each time.

use crate::actors::Core;
use crate::domain::Caller;
use crate::error::{ApiError, ApiResult};
use actix_web::{web, HttpResponse};
use parley_protocol::VapidKey;

pub async fn vapid(core: web::Data<Core>, _caller: Caller) -> ApiResult<HttpResponse> {
    let key = crate::push::providers::vapid_public_key(&core.config.push)
        .map_err(|e| ApiError::internal(format!("VAPID key: {e}")))?
        .ok_or_else(|| ApiError::not_found("Web Push is not configured on this server"))?;
    Ok(HttpResponse::Ok().json(VapidKey { public_key: key }))
}
