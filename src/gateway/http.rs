//! HTTP handlers of the contract: one function per endpoint.

use super::Caller;
use crate::actors::conversation::{AddMembers, RemoveMember};
use crate::actors::session::message_page;
use crate::actors::{describe, new_id, now_ms, Core};
use crate::error::{ApiError, ApiResult};
use crate::storage::{DeviceRow, Order, UserRow};
use actix_web::{web, HttpResponse};
use parley_protocol::{
    AddMembers as AddMembersBody, ConversationKind, ConversationSummary, CreateConversation,
    CreateSession, CreateUser, PushTarget, SessionToken, User,
};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use tokio::sync::oneshot;

type Core_ = web::Data<Core>;

fn valid_username(u: &str) -> bool {
    (1..=64).contains(&u.len())
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Liveness, plus this node's view of the cluster (its id and the live nodes) when it has one.
pub async fn healthz(core: Core_) -> HttpResponse {
    match core.cluster.bus() {
        Some(bus) => HttpResponse::Ok().json(json!({
            "status": "ok",
            "node": &**bus.node_id(),
            "live": bus.live().iter().map(|n| &**n).collect::<Vec<_>>(),
            "bus": if bus.healthy() { "up" } else { "down" },
        })),
        None => HttpResponse::Ok().json(json!({"status": "ok"})),
    }
}

/// Ready while the store accepts a write and the node is not shutting down.
pub async fn readyz(core: Core_) -> ApiResult<HttpResponse> {
    if core.is_shutting_down() {
        return Err(ApiError::unavailable("shutting down"));
    }
    if !core.cluster.healthy() {
        return Err(ApiError::unavailable("cluster bus unreachable"));
    }
    match tokio::time::timeout(Duration::from_secs(2), core.store.check_writable()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(json!({"status": "ready"}))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: store not writable");
            Err(ApiError::unavailable("store is not writable"))
        }
        Err(_) => Err(ApiError::unavailable("store write timed out")),
    }
}

pub async fn metrics(core: Core_) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(core.metrics.render())
}

pub async fn create_user(core: Core_, body: web::Json<CreateUser>) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    if !valid_username(&b.username) {
        return Err(ApiError::bad_request(
            "username: 1-64 characters of a-z, A-Z, 0-9, _ . -",
        ));
    }
    if b.password.len() < 8 || b.password.len() > 1024 {
        return Err(ApiError::bad_request("password: 8 to 1024 bytes"));
    }
    if b.display_name.as_ref().is_some_and(|d| d.len() > 256) {
        return Err(ApiError::bad_request("display_name: at most 256 bytes"));
    }
    let core2 = core.clone().into_inner();
    let pw = b.password;
    let hash = web::block(move || core2.auth.hash_password(&pw))
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
    core: Core_,
    body: web::Json<CreateSession>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let bad = || ApiError::unauthorized("bad username or password");
    let user = core.store.user_by_name(&b.username).await?;
    // Verify against a dummy hash for unknown users too, so timing does not reveal them.
    let hash = user.as_ref().map(|u| u.password_hash.clone()).unwrap_or_else(|| {
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0r2Q0v4y8Q0gn6s5f9nq2rYJ1mJ2XjQkq2z0x1C3pDc".to_string()
    });
    let core2 = core.clone().into_inner();
    let pw = b.password;
    let ok = web::block(move || core2.auth.verify_password(&pw, &hash))
        .await
        .map_err(ApiError::internal)?;
    let Some(user) = user.filter(|_| ok) else {
        return Err(bad());
    };
    if b.device_name.as_ref().is_some_and(|d| d.len() > 256) {
        return Err(ApiError::bad_request("device_name: at most 256 bytes"));
    }
    let device = DeviceRow {
        device_id: new_id(),
        user_id: user.user_id.clone(),
        name: b.device_name,
        created_at: now_ms(),
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

fn public(u: UserRow) -> User {
    User {
        user_id: u.user_id,
        username: u.username,
        display_name: u.display_name,
    }
}

pub async fn me(core: Core_, caller: Caller) -> ApiResult<HttpResponse> {
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
    core: Core_,
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

async fn conversation_json(core: &Core, id: &str) -> ApiResult<parley_protocol::Conversation> {
    let st = core
        .store
        .load_conversation(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such conversation"))?;
    Ok(describe(&st))
}

pub async fn create_conversation(
    core: Core_,
    caller: Caller,
    body: web::Json<CreateConversation>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let core = core.into_inner();
    match b.kind {
        ConversationKind::Direct => {
            let others: Vec<&String> = b.members.iter().filter(|m| **m != caller.user_id).collect();
            if others.len() != 1 {
                return Err(ApiError::bad_request(
                    "a direct conversation has exactly one other member",
                ));
            }
            let (id, created) = core.ensure_direct(&caller.user_id, others[0]).await?;
            let conv = conversation_json(&core, &id).await?;
            Ok(if created {
                HttpResponse::Created().json(conv)
            } else {
                HttpResponse::Ok().json(conv)
            })
        }
        ConversationKind::Group => {
            if b.title.as_ref().is_some_and(|t| t.len() > 256) {
                return Err(ApiError::bad_request("title: at most 256 bytes"));
            }
            let id = core
                .create_group(&caller.user_id, b.title, b.members)
                .await?;
            Ok(HttpResponse::Created().json(conversation_json(&core, &id).await?))
        }
    }
}

pub async fn list_conversations(core: Core_, caller: Caller) -> ApiResult<HttpResponse> {
    let dcs = core
        .store
        .device_conversations(&caller.device_id, &caller.user_id)
        .await?;
    let mut out = Vec::with_capacity(dcs.len());
    for dc in dcs {
        let Some(st) = core.store.load_conversation(&dc.conversation_id).await? else {
            continue;
        };
        let unread = core
            .store
            .count_unread(&dc.conversation_id, &caller.user_id, dc.read_seq)
            .await?;
        out.push(ConversationSummary {
            conversation: describe(&st),
            delivered_seq: dc.delivered_seq,
            read_seq: dc.read_seq,
            unread,
        });
    }
    Ok(HttpResponse::Ok().json(json!({"conversations": out})))
}

/// Loads the conversation and checks that the caller is a member; returns the join seq.
async fn membership(
    core: &Core,
    id: &str,
    user: &str,
) -> ApiResult<(parley_protocol::Conversation, u64)> {
    let st = core
        .store
        .load_conversation(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such conversation"))?;
    let joined = st
        .members
        .iter()
        .find(|m| m.user_id == user)
        .map(|m| m.joined_seq)
        .ok_or_else(|| ApiError::forbidden("not a member of this conversation"))?;
    Ok((describe(&st), joined))
}

pub async fn get_conversation(
    core: Core_,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let (conv, _) = membership(&core, &path, &caller.user_id).await?;
    Ok(HttpResponse::Ok().json(conv))
}

/// Sends a request that carries its reply channel to a conversation actor and awaits it.
async fn ask<T>(send: impl FnOnce(oneshot::Sender<ApiResult<T>>)) -> ApiResult<T> {
    let (tx, rx) = oneshot::channel();
    send(tx);
    rx.await
        .map_err(|_| ApiError::unavailable("conversation restarted, retry"))?
}

pub async fn add_members(
    core: Core_,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<AddMembersBody>,
) -> ApiResult<HttpResponse> {
    let core = core.into_inner();
    let id = path.into_inner();
    let user_ids = body.into_inner().user_ids;
    if user_ids.is_empty() {
        return Err(ApiError::bad_request("user_ids is empty"));
    }
    let conv = ask(|reply| {
        crate::actors::conversation::deliver(
            &core,
            &id,
            AddMembers {
                by: caller.user_id.clone(),
                user_ids,
                reply,
            },
        )
    })
    .await?;
    Ok(HttpResponse::Ok().json(conv))
}

pub async fn remove_member(
    core: Core_,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let core = core.into_inner();
    let (id, user_id) = path.into_inner();
    ask(|reply| {
        crate::actors::conversation::deliver(
            &core,
            &id,
            RemoveMember {
                by: caller.user_id.clone(),
                user_id,
                reply,
            },
        )
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct Paging {
    before_seq: Option<u64>,
    after_seq: Option<u64>,
    limit: Option<u32>,
}

pub async fn list_messages(
    core: Core_,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<Paging>,
) -> ApiResult<HttpResponse> {
    let (_, joined) = membership(&core, &path, &caller.user_id).await?;
    let l = &core.config.limits;
    let limit = q.limit.unwrap_or(l.default_page).clamp(1, l.max_page);
    let before = q.before_seq.unwrap_or(u64::MAX);
    // With after_seq: forward paging from a known position; otherwise the newest page.
    let (after, order) = match q.after_seq {
        Some(after) => (after.max(joined), Order::Asc),
        None => (joined, Order::Desc),
    };
    let messages = message_page(&core, &caller.user_id, &path, after, before, limit, order).await?;
    Ok(HttpResponse::Ok().json(json!({"messages": messages})))
}

pub async fn set_push(
    core: Core_,
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
    let token_ok =
        |t: &Option<String>| t.as_ref().is_some_and(|t| !t.is_empty() && t.len() <= 4096);
    let url_ok = |e: &Option<String>, https_only: bool| {
        e.as_ref().is_some_and(|e| {
            e.len() <= 2048
                && (e.starts_with("https://") || (!https_only && e.starts_with("http://")))
        })
    };
    match b.provider.as_str() {
        "fcm" | "apns" if token_ok(&b.token) => {}
        "fcm" | "apns" => {
            return Err(ApiError::bad_request(
                "fcm and apns need a token (1-4096 bytes)",
            ))
        }
        "webpush" if url_ok(&b.endpoint, true) => {}
        "webpush" => return Err(ApiError::bad_request("webpush needs an https:// endpoint")),
        "webhook" if url_ok(&b.endpoint, false) => {}
        "webhook" => {
            return Err(ApiError::bad_request(
                "webhook needs an http(s):// endpoint",
            ))
        }
        _ => {
            return Err(ApiError::bad_request(
                "provider must be fcm, apns, webpush or webhook",
            ))
        }
    }
    core.store
        .set_push_target(&device_id, &b.provider, b.token, b.endpoint)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
