//! v1.1: a user's devices and signing out: the device list, revoking a device, signing this
//! device out, and refreshing a device's session with its single-use refresh token.
//!
//! Revoking deletes the device from the store (its cursors, push target and push jobs go
//! with it), then `Core::revoke` tells every node: their token checks forget the device and
//! its sessions close with 4401. A refresh token is rotated on every use; presenting one
//! that is no longer current (it was stolen, or a copy was used first) revokes the device,
//! as the OAuth 2.0 Security BCP recommends for refresh-token reuse.

use crate::actors::Core;
use crate::domain::{view, Caller};
use crate::error::{ApiError, ApiResult};
use crate::ids::now_ms;
use crate::storage::StoreError;
use actix_web::{web, HttpRequest, HttpResponse};
use parley_protocol::{DeviceInfo, RefreshSession, SessionToken};
use serde_json::json;

/// The caller's devices, with each one's push target and its state.
pub async fn devices(core: web::Data<Core>, caller: Caller) -> ApiResult<HttpResponse> {
    let live = core.hub.devices_of(&caller.user_id);
    let now = now_ms();
    let devices: Vec<DeviceInfo> = core
        .store
        .devices_of_user(&caller.user_id)
        .await?
        .into_iter()
        .map(|d| DeviceInfo {
            push: d.push.as_ref().map(view::push_state),
            last_seen_at: if live.contains(&d.device_id) {
                Some(now)
            } else {
                d.last_seen_at
            },
            current: d.device_id == caller.device_id,
            device_id: d.device_id,
            name: d.name,
            created_at: d.created_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"devices": devices})))
}

/// Deletes these devices of the user (those already gone are skipped) and tells every node.
pub(super) async fn revoke(core: &Core, user_id: &str, devices: Vec<String>) -> ApiResult<()> {
    let mut gone = Vec::with_capacity(devices.len());
    for d in devices {
        match core.store.delete_device(&d).await {
            Ok(()) | Err(StoreError::NotFound) => gone.push(d),
            Err(e) => {
                // The ones deleted so far are revoked before the error is answered.
                core.revoke(user_id, gone);
                return Err(e.into());
            }
        }
    }
    core.revoke(user_id, gone);
    Ok(())
}

/// `DELETE /v1/devices/{id}`: one of my devices (this one too).
pub async fn revoke_device(
    core: web::Data<Core>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    match core.store.device(&id).await? {
        Some(d) if d.user_id == caller.user_id => {}
        _ => return Err(ApiError::not_found("no such device")),
    }
    revoke(&core, &caller.user_id, vec![id]).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE /v1/sessions/current`: signs this device out.
pub async fn sign_out(core: web::Data<Core>, caller: Caller) -> ApiResult<HttpResponse> {
    revoke(&core, &caller.user_id, vec![caller.device_id]).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/sessions/refresh`: a new token and a new refresh token for the device; the
/// presented one is spent.
pub async fn refresh_session(
    core: web::Data<Core>,
    req: HttpRequest,
    body: web::Json<RefreshSession>,
) -> ApiResult<HttpResponse> {
    limit_address(&core, &req)?;
    let presented = body.into_inner().refresh_token;
    let bad = || ApiError::unauthorized("bad refresh token");
    let device_id = core.auth.refresh_device(&presented).ok_or_else(bad)?;
    let device = core.store.device(device_id).await?.ok_or_else(bad)?;
    let old = crate::auth::refresh_hash(&presented);
    let (token, new_hash) = core.auth.new_refresh_token(device_id);
    let current = device.refresh_hash.as_deref() == Some(old.as_str());
    if current
        && core
            .store
            .set_refresh_hash(device_id, Some(old), new_hash)
            .await?
    {
        let out = session_token(&core, device.user_id, device.device_id, token);
        return Ok(HttpResponse::Ok().json(out));
    }
    tracing::info!(device = %device.device_id, "refresh token reused: revoking the device");
    revoke(&core, &device.user_id, vec![device.device_id]).await?;
    Err(bad())
}

pub(super) fn session_token(
    core: &Core,
    user_id: String,
    device_id: String,
    refresh_token: String,
) -> SessionToken {
    let (token, expires_at) = core.auth.issue(&user_id, &device_id, now_ms());
    SessionToken {
        token,
        user_id,
        device_id,
        expires_at,
        refresh_token: Some(refresh_token),
    }
}

/// v1.1: registration and login are limited per client address (brute force): 429 with
/// `Retry-After`.
pub(super) fn limit_address(core: &Core, req: &HttpRequest) -> ApiResult<()> {
    let Some(ip) = super::client_ip(req) else {
        return Ok(());
    };
    core.access.auth_attempt(ip).map_err(|wait| {
        core.metrics.rate_limited.inc();
        ApiError::retry_after("too many attempts from this address", wait)
    })
}
