//! Accounts: registration, login (a new device, or v1.1 an existing one of mine), the
//! caller's profile, user lookup, a device's push target, and (v1.1) password change and
//! account deletion. Devices and sign-out are in `devices`.

use crate::actors::routing::ask;
use crate::actors::Core;
use crate::domain::{rules, Caller, ConvRequest};
use crate::error::{ApiError, ApiResult};
use crate::ids::{new_id, now_ms};
use crate::storage::{DeviceRow, PushTargetRow, UserRow};
use actix_web::{web, HttpRequest, HttpResponse};
use parley_protocol::{
    ChangePassword, CreateSession, CreateUser, DeleteAccount, ErrorCode, PushTarget, User,
};
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
    req: HttpRequest,
    body: web::Json<CreateUser>,
) -> ApiResult<HttpResponse> {
    super::devices::limit_address(&core, &req)?;
    let b = body.into_inner();
    rules::username(&b.username)?;
    rules::password(&b.password)?;
    rules::short_text("display_name", b.display_name.as_deref())?;
    let hash = hash_password(&core, b.password).await?;
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
    req: HttpRequest,
    body: web::Json<CreateSession>,
) -> ApiResult<HttpResponse> {
    super::devices::limit_address(&core, &req)?;
    let b = body.into_inner();
    let user = core.store.user_by_name(&b.username).await?;
    let user = check_password(&core, user, b.password).await?;
    rules::short_text("device_name", b.device_name.as_deref())?;
    let device_id = match b.device_id {
        // v1.1: back to an existing device of mine, with its identity and cursors.
        Some(id) => match core.store.device(&id).await? {
            Some(d) if d.user_id == user.user_id => id,
            _ => return Err(ApiError::not_found("no such device")),
        },
        None => {
            let device = DeviceRow {
                device_id: new_id(),
                user_id: user.user_id.clone(),
                name: b.device_name,
                created_at: now_ms(),
                push: None,
                refresh_hash: None,
                last_seen_at: None,
            };
            let id = device.device_id.clone();
            core.store.create_device(device).await?;
            id
        }
    };
    let (refresh_token, hash) = core.auth.new_refresh_token(&device_id);
    if !core.store.set_refresh_hash(&device_id, None, hash).await? {
        return Err(ApiError::not_found("no such device"));
    }
    Ok(HttpResponse::Ok().json(super::devices::session_token(
        &core,
        user.user_id,
        device_id,
        refresh_token,
    )))
}

/// The user, if `password` is theirs (the same work whether the user exists or not).
async fn check_password(
    core: &web::Data<Core>,
    user: Option<UserRow>,
    password: String,
) -> ApiResult<UserRow> {
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| DUMMY_HASH.to_string());
    let verifier = core.clone().into_inner();
    let ok = web::block(move || verifier.auth.verify_password(&password, &hash))
        .await
        .map_err(ApiError::internal)?;
    user.filter(|_| ok)
        .ok_or_else(|| ApiError::unauthorized("bad username or password"))
}

async fn hash_password(core: &web::Data<Core>, password: String) -> ApiResult<String> {
    let hasher = core.clone().into_inner();
    web::block(move || hasher.auth.hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

/// The caller's own row, with its password checked (password change, account deletion).
async fn me_with_password(
    core: &web::Data<Core>,
    caller: &Caller,
    password: String,
) -> ApiResult<UserRow> {
    let user = core.store.user_by_id(&caller.user_id).await?;
    check_password(core, user, password)
        .await
        .map_err(|_| ApiError::forbidden("wrong password"))
}

/// v1.1: `PUT /v1/users/me/password`; with `sign_out_others`, every other device of mine is
/// revoked.
pub async fn change_password(
    core: web::Data<Core>,
    caller: Caller,
    body: web::Json<ChangePassword>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    rules::password(&b.new)?;
    me_with_password(&core, &caller, b.old).await?;
    let hash = hash_password(&core, b.new).await?;
    core.store.set_password_hash(&caller.user_id, hash).await?;
    if b.sign_out_others {
        let others = core
            .store
            .devices_of_user(&caller.user_id)
            .await?
            .into_iter()
            .map(|d| d.device_id)
            .filter(|d| *d != caller.device_id)
            .collect();
        super::devices::revoke(&core, &caller.user_id, others).await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

/// v1.1: `DELETE /v1/users/me`. The account's group memberships end (members see it leave),
/// its devices and push targets are deleted and its sessions closed with 4401, and its row
/// goes, freeing the username. Its messages stay in others' conversations under its user id,
/// which no longer resolves to a user (clients show "deleted user"); its direct
/// conversations stay for the other member.
pub async fn delete_me(
    core: web::Data<Core>,
    caller: Caller,
    body: web::Json<DeleteAccount>,
) -> ApiResult<HttpResponse> {
    me_with_password(&core, &caller, body.into_inner().password).await?;
    let convs = core
        .store
        .device_conversations(&caller.device_id, &caller.user_id)
        .await?;
    let shared = core.clone().into_inner();
    for c in convs {
        let request = ConvRequest::RemoveMember {
            by: caller.clone(),
            user_id: caller.user_id.clone(),
        };
        // A direct conversation refuses a member leaving (bad_request): it stays.
        if let Err(e) = ask(&shared, &c.conversation_id, request).await {
            if e.code != ErrorCode::BadRequest {
                return Err(e);
            }
        }
    }
    let devices = core
        .store
        .devices_of_user(&caller.user_id)
        .await?
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    super::devices::revoke(&core, &caller.user_id, devices).await?;
    core.store.delete_user(&caller.user_id).await?;
    Ok(HttpResponse::NoContent().finish())
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
