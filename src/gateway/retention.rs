//! Retention over HTTP (v1.1): a conversation's retention period (read by members, set by
//! admins through the conversation's actor), and what the caller was told of its messages
//! that expired before a recipient's device got them.

use crate::actors::routing::ask;
use crate::actors::Core;
use crate::domain::{reads, retention, view, Caller, ConvRequest};
use crate::error::ApiResult;
use crate::ids::now_ms;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

async fn describe(core: &Core, id: &str) -> ApiResult<Value> {
    let r = core.store.retention(id).await?;
    Ok(json!({
        "conversation_id": id,
        "retention_secs": r.secs,
        "effective_secs": retention::period(&core.config.retention, &r),
        "expired_through": r.expired_through,
    }))
}

pub async fn get(
    core: web::Data<Core>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    reads::member(&*core.store, &path, &caller.user_id).await?;
    Ok(HttpResponse::Ok().json(describe(&core, &path).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRetention {
    /// Seconds; `null`: back to the deployment's default.
    retention_secs: Option<u64>,
}

pub async fn set(
    core: web::Data<Core>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<SetRetention>,
) -> ApiResult<HttpResponse> {
    let core = core.into_inner();
    let request = ConvRequest::SetRetention {
        by: caller,
        secs: body.retention_secs,
    };
    ask(&core, &path, request).await?;
    Ok(HttpResponse::Ok().json(describe(&core, &path).await?))
}

pub async fn list_undeliverable(core: web::Data<Core>, caller: Caller) -> ApiResult<HttpResponse> {
    let rows = core.store.undeliverable(&caller.user_id).await?;
    let list: Vec<_> = rows.iter().map(view::undeliverable).collect();
    Ok(HttpResponse::Ok().json(json!({ "undeliverable": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clear {
    /// Clear what was recorded at or before this time (ms); default: now. A client passes the
    /// newest `ts` it has seen, so a notice that arrives meanwhile is kept.
    upto: Option<i64>,
}

pub async fn clear_undeliverable(
    core: web::Data<Core>,
    caller: Caller,
    query: web::Query<Clear>,
) -> ApiResult<HttpResponse> {
    let upto = query.upto.unwrap_or_else(now_ms);
    let n = core
        .store
        .clear_undeliverable(&caller.user_id, upto)
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "cleared": n })))
}
