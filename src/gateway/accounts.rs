//! Accounts: registration, login (a new device per login), the caller's profile, user
//! lookup, and a device's push target.

use crate::actors::Core;
use crate::domain::{rules, view, Caller};
use crate::error::{ApiError, ApiResult};
use crate::ids::{new_id, now_ms};
use crate::storage::{DeviceRow, PushTargetRow, UserRow};
use actix_web::{web, HttpResponse};
use parley_protocol::{CreateSession, CreateUser, DeviceInfo, PushTarget, SessionToken, User};
use serde::Deserialize;
use serde_json::json;

/// Verifying an unknown user's password against this keeps the timing of a login the same
/// whether the user exists or not.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0r2Q0v4y8Q0gn6s5f9nq2rYJ1mJ2XjQkq2z0x1C3pDc";

fn public(u: UserRow) -> User {
    User {
        user_id: u.user_id,
        username: u.username,
        display_name: u.display_name,
    }
}

pub async fn create_user(
    core: web::Data<Core>,
    body: web::Json<CreateUser>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    rules::username(&b.username)?;
    rules::password(&b.password)?;
    rules::short_text("display_name", b.display_name.as_deref())?;
    let hasher = core.clone().into_inner();
    let pw = b.password;
    let hash = web::block(move || hasher.auth.hash_password(&pw))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let user = UserRow {
        user_id: new_id(),
        username: b.username,
        display_name: b.display_name,
        password_hash: hash,
        created_at: now_ms(),
    };
    let out = json!({"user_id": user.user_id, "username": user.username});
    core.store.create_user(user).await?;
    Ok(HttpResponse::Created().json(out))
}

pub async fn create_session(
    core: web::Data<Core>,
    body: web::Json<CreateSession>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let user = core.store.user_by_name(&b.username).await?;
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| DUMMY_HASH.to_string());
    let verifier = core.clone().into_inner();
    let pw = b.password;
    let ok = web::block(move || verifier.auth.verify_password(&pw, &hash))
        .await
        .map_err(ApiError::internal)?;
    let Some(user) = user.filter(|_| ok) else {
        return Err(ApiError::unauthorized("bad username or password"));
    };
    rules::short_text("device_name", b.device_name.as_deref())?;
    let device = DeviceRow {
        device_id: new_id(),
        user_id: user.user_id.clone(),
        name: b.device_name,
        created_at: now_ms(),
        push: None,
    };
    let device_id = device.device_id.clone();
    core.store.create_device(device).await?;
    let (token, expires_at) = core.auth.issue(&user.user_id, &device_id, now_ms());
    Ok(HttpResponse::Ok().json(SessionToken {
        token,
        user_id: user.user_id,
        device_id,
        expires_at,
    }))
}

pub async fn me(core: web::Data<Core>, caller: Caller) -> ApiResult<HttpResponse> {
    let u = core
        .store
        .user_by_id(&caller.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("user no longer exists"))?;
    Ok(HttpResponse::Ok().json(public(u)))
}

#[derive(Deserialize)]
pub struct FindUser {
    username: String,
}

pub async fn find_user(
    core: web::Data<Core>,
    _caller: Caller,
    q: web::Query<FindUser>,
) -> ApiResult<HttpResponse> {
    let u = core
        .store
        .user_by_name(&q.username)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    Ok(HttpResponse::Ok().json(public(u)))
}

pub async fn set_push(
    core: web::Data<Core>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<PushTarget>,
) -> ApiResult<HttpResponse> {
    let device_id = path.into_inner();
    if device_id != caller.device_id {
        return Err(ApiError::forbidden(
            "a token may set the push target of its own device only",
        ));
    }
    let b = body.into_inner();
    rules::push_target(&b)?;
    let (p256dh, auth) = b.keys.map(|k| (k.p256dh, k.auth)).unzip();
    let target = PushTargetRow {
        provider: b.provider,
        token: b.token,
        endpoint: b.endpoint,
        p256dh,
        auth,
        payload: b.payload,
        registered_at: now_ms(),
        disabled: None,
    };
    core.store.set_push_target(&device_id, target).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's devices, with each one's push target and its state.
pub async fn devices(core: web::Data<Core>, caller: Caller) -> ApiResult<HttpResponse> {
    let devices: Vec<DeviceInfo> = core
        .store
        .devices_of_user(&caller.user_id)
        .await?
        .into_iter()
        .map(|d| DeviceInfo {
            push: d.push.as_ref().map(view::push_state),
            device_id: d.device_id,
            name: d.name,
            created_at: d.created_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"devices": devices})))
}
