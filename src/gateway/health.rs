//! Liveness, readiness and metrics: what load balancers and operators poll.

use crate::actors::Core;
use crate::error::{ApiError, ApiResult};
use actix_web::{web, HttpResponse};
use serde_json::json;
use std::time::Duration;

/// Liveness, plus this node's view of the cluster (its id and the live nodes) when it has one.
pub async fn healthz(core: web::Data<Core>) -> HttpResponse {
    match core.peers.status() {
        Some(s) => HttpResponse::Ok().json(json!({
            "status": "ok",
            "node": s.node,
            "live": s.live,
            "bus": if s.bus_up { "up" } else { "down" },
        })),
        None => HttpResponse::Ok().json(json!({"status": "ok"})),
    }
}

/// Ready while the store accepts a write, the node reaches the others, and it is not shutting
/// down.
pub async fn readyz(core: web::Data<Core>) -> ApiResult<HttpResponse> {
    if core.is_shutting_down() {
        return Err(ApiError::unavailable("shutting down"));
    }
    if !core.peers.healthy() {
        return Err(ApiError::unavailable("cluster bus unreachable"));
    }
    match tokio::time::timeout(Duration::from_secs(2), core.store.check_writable()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(json!({"status": "ready"}))),
        Ok(Err(e)) => Err(ApiError {
            cause: Some(e.to_string()),
            ..ApiError::unavailable("store is not writable")
        }),
        Err(_) => Err(ApiError::unavailable("store write timed out")),
    }
}

/// The node's metrics, and its in-process bridge's if it runs one.
pub async fn metrics(core: web::Data<Core>) -> HttpResponse {
    let mut text = core.metrics.render();
    if let Some(push) = core.push_metrics.get() {
        // One exposition: the first part's end marker goes.
        if let Some(body) = text.strip_suffix("# EOF\n") {
            text = format!("{body}{}", push.render());
        }
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}
