//! The gateway: everything that speaks HTTP or WebSocket to clients.
//!
//! It exists to keep wire concerns (status codes, headers, upgrade, body limits) out of the
//! actors, and serves the web client (`webclient`). Handlers authenticate the caller, parse input, call the actors, `domain::reads` or
//! the store, and turn every failure into the contract's error shape (`error`).

mod accounts;
mod blocks;
mod conversations;
mod devices;
mod error;
pub mod files;
mod health;
mod images;
mod push;
mod range;
mod retention;
pub mod slow;
mod uploads;
mod webclient;
pub mod ws;

use crate::actors::Core;
use crate::auth::Claims;
use crate::domain::Caller;
use crate::error::ApiError;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;

pub fn bearer(req: &HttpRequest) -> Option<&str> {
    bearer_value(req.headers().get(actix_web::http::header::AUTHORIZATION)?)
}

/// The token of an `Authorization: Bearer` header's value.
pub fn bearer_value(v: &actix_web::http::header::HeaderValue) -> Option<&str> {
    v.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

fn verify(req: &HttpRequest) -> Result<Claims, ApiError> {
    let core = req
        .app_data::<web::Data<Core>>()
        .ok_or_else(|| ApiError::internal("core missing from app data"))?;
    let token = bearer(req).ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    core.auth
        .verify(token)
        .ok_or_else(|| ApiError::unauthorized("bad or expired token"))
}

/// The authenticated caller of a `/v1/` endpoint (from `Authorization: Bearer`): a valid
/// token whose device still exists (v1.1: a revoked device's tokens fail at once).
impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Caller, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let caller = token_caller(req);
        let core = req.app_data::<web::Data<Core>>().cloned();
        Box::pin(async move {
            let caller = caller?;
            let core = core.ok_or_else(|| ApiError::internal("core missing from app data"))?;
            check_device(&core, &caller).await?;
            Ok(caller)
        })
    }
}

/// The caller a valid token names, before its device is checked (`check_device`): for
/// handlers that must refuse early, before any await (uploads take their admission permit
/// first).
pub(super) fn token_caller(req: &HttpRequest) -> Result<Caller, ApiError> {
    let c = verify(req)?;
    Ok(Caller {
        user_id: c.sub,
        device_id: c.did,
    })
}

/// A revoked device's tokens fail at once (v1.1).
pub(super) async fn check_device(core: &Core, caller: &Caller) -> Result<(), ApiError> {
    if !core
        .access
        .device_ok(&*core.store, &caller.user_id, &caller.device_id)
        .await?
    {
        return Err(ApiError::unauthorized("device signed out"));
    }
    Ok(())
}

/// The client's address for per-address limits: the peer address of the connection (a
/// proxy in front should be configured to keep it, e.g. by PROXY protocol; forwarded
/// headers are not trusted).
pub fn client_ip(req: &HttpRequest) -> Option<std::net::IpAddr> {
    req.peer_addr().map(|a| a.ip())
}

/// Registers every route. Used by the server and nowhere else.
pub fn routes(cfg: &mut web::ServiceConfig, max_json: usize) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(max_json)
            .error_handler(|err, _| {
                use actix_web::error::JsonPayloadError as E;
                let e = match err {
                    E::Overflow { .. } | E::OverflowKnownLength { .. } => {
                        ApiError::too_large("JSON body too large")
                    }
                    E::Payload(p) if slow::is_timeout(&p) => slow::too_slow(),
                    other => ApiError::bad_request(format!("bad JSON body: {other}")),
                };
                e.into()
            }),
    )
    .app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| ApiError::bad_request(format!("bad query: {err}")).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|err, _| ApiError::bad_request(format!("bad path: {err}")).into()),
    )
    .configure(account_routes)
    .configure(conversation_routes)
    .configure(file_routes)
    .configure(webclient::routes);
}

/// Health, the WebSocket, users, sessions, devices and push.
fn account_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics))
        .route("/v1/ws", web::get().to(ws::not_an_upgrade))
        .route("/v1/users", web::post().to(accounts::create_user))
        .route("/v1/users", web::get().to(accounts::find_user))
        .route("/v1/users/me", web::get().to(accounts::me))
        .route("/v1/users/me", web::delete().to(accounts::delete_me))
        .route(
            "/v1/users/me/password",
            web::put().to(accounts::change_password),
        )
        .route("/v1/sessions", web::post().to(accounts::create_session))
        .route(
            "/v1/sessions/refresh",
            web::post().to(devices::refresh_session),
        )
        .route("/v1/sessions/current", web::delete().to(devices::sign_out))
        .route("/v1/devices", web::get().to(devices::devices))
        .route("/v1/devices/{id}", web::delete().to(devices::revoke_device))
        .route("/v1/devices/{id}/push", web::put().to(accounts::set_push))
        .route("/v1/push/vapid", web::get().to(push::vapid));
}

/// Conversations, their messages, settings and retention, blocks, undeliverable notices.
fn conversation_routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/v1/undeliverable",
        web::get().to(retention::list_undeliverable),
    )
    .route(
        "/v1/undeliverable",
        web::delete().to(retention::clear_undeliverable),
    )
    .route(
        "/v1/conversations/{id}/retention",
        web::get().to(retention::get),
    )
    .route(
        "/v1/conversations/{id}/retention",
        web::put().to(retention::set),
    )
    .route("/v1/conversations", web::post().to(conversations::create))
    .route("/v1/conversations", web::get().to(conversations::list))
    .route("/v1/conversations/{id}", web::get().to(conversations::get))
    .route(
        "/v1/conversations/{id}",
        web::patch().to(conversations::update),
    )
    .route(
        "/v1/conversations/{id}/members/{user_id}/role",
        web::put().to(conversations::set_role),
    )
    .route("/v1/blocks", web::get().to(blocks::list))
    .route("/v1/blocks/{user_id}", web::put().to(blocks::block))
    .route("/v1/blocks/{user_id}", web::delete().to(blocks::unblock))
    .route(
        "/v1/conversations/{id}/members",
        web::post().to(conversations::add_members),
    )
    .route(
        "/v1/conversations/{id}/members/{user_id}",
        web::delete().to(conversations::remove_member),
    )
    .route(
        "/v1/conversations/{id}/messages",
        web::get().to(conversations::messages),
    )
    .route(
        "/v1/conversations/{id}/messages/{seq}/versions",
        web::get().to(conversations::versions),
    )
    .route(
        "/v1/conversations/{id}/messages/{seq}/receipts",
        web::get().to(conversations::receipts),
    )
    .route(
        "/v1/conversations/{id}/settings",
        web::put().to(conversations::set_settings),
    );
}

/// Files and resumable uploads.
fn file_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/files", web::post().to(files::upload))
        .route("/v1/files/{id}", web::get().to(files::download))
        .route("/v1/files/{id}/thumbnail", web::get().to(files::thumbnail))
        .route("/v1/files/{id}/url", web::post().to(files::signed_url))
        .route(
            "/v1/uploads",
            web::method(actix_web::http::Method::OPTIONS).to(uploads::options),
        )
        .route("/v1/uploads", web::post().to(uploads::create))
        .route("/v1/uploads/{id}", web::head().to(uploads::head))
        .route("/v1/uploads/{id}", web::get().to(uploads::get))
        .route("/v1/uploads/{id}", web::patch().to(uploads::patch))
        .route("/v1/uploads/{id}", web::delete().to(uploads::delete));
}

pub async fn not_found() -> HttpResponse {
    use actix_web::ResponseError;
    ApiError::not_found("no such endpoint").error_response()
}
