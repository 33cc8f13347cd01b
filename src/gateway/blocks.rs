//! Blocking (v1.1): `PUT`/`DELETE /v1/blocks/{user_id}`, `GET /v1/blocks`.
//!
//! The block is stored first, then the actor of the pair's direct conversation (if they have
//! one, on whichever node owns it) is told, so that it refuses sends from its cache from the
//! moment the endpoint answers. Presence and typing read the blocks when they are sent, and
//! both users are told the other's presence changed (`actors::presence`).

use crate::actors::presence;
use crate::actors::routing::ask;
use crate::actors::Core;
use crate::domain::{rules, Caller, ConvRequest};
use crate::error::ApiResult;
use crate::ids::now_ms;
use actix_web::{web, HttpResponse};
use parley_protocol::BlockedUser;
use serde_json::json;
use std::sync::Arc;

pub async fn list(core: web::Data<Core>, caller: Caller) -> ApiResult<HttpResponse> {
    let blocks: Vec<BlockedUser> = core
        .store
        .blocks(&caller.user_id)
        .await?
        .into_iter()
        .map(|(user_id, blocked_at)| BlockedUser {
            user_id,
            blocked_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "blocks": blocks })))
}

pub async fn block(
    core: web::Data<Core>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let exists = core.store.user_by_id(&path).await?.is_some();
    rules::block_target(&caller.user_id, &path, exists)?;
    core.store.block(&caller.user_id, &path, now_ms()).await?;
    let (core, other) = (core.into_inner(), path.into_inner());
    tell_direct(&core, caller.clone(), other.clone(), true).await?;
    presence::block_changed(&core, &caller.user_id, &other, true).await;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn unblock(
    core: web::Data<Core>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    core.store.unblock(&caller.user_id, &path).await?;
    let (core, other) = (core.into_inner(), path.into_inner());
    tell_direct(&core, caller.clone(), other.clone(), false).await?;
    presence::block_changed(&core, &caller.user_id, &other, false).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Refreshes the cached blocks of the pair's direct conversation, if there is one.
async fn tell_direct(core: &Arc<Core>, by: Caller, other: String, blocked: bool) -> ApiResult<()> {
    let Some(id) = core
        .store
        .direct_conversation(&rules::direct_key(&by.user_id, &other))
        .await?
    else {
        return Ok(());
    };
    let request = ConvRequest::Block {
        by,
        user_id: other,
        blocked,
    };
    ask(core, &id, request).await.map(|_| ())
}
