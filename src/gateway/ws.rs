//! The WebSocket upgrade: takes a place in the node's admission limits (else 503),
//! authenticates by header if one is given and hands the socket to a new `SessionActor`
//! (which enforces the auth deadline when there is no header).

use super::bearer;
use crate::actors::session::PreAuth;
use crate::actors::{Core, SessionActor};
use crate::error::ApiError;
use actix::{Actor, AsyncContext};
use actix_web::{web, HttpRequest, HttpResponse};

pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    core: web::Data<Core>,
) -> Result<HttpResponse, actix_web::Error> {
    if core.is_shutting_down() {
        return Err(ApiError::unavailable("server is restarting").into());
    }
    // Before the upgrade: a refusal is a plain 503 with the JSON error body.
    let permit = core.admission.session()?;
    let pre = match bearer(&req) {
        None => PreAuth::None,
        Some(token) => match core.auth.verify(token) {
            Some(c) => PreAuth::Valid(c),
            None => PreAuth::Invalid,
        },
    };
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream.max_frame_size(core.config.limits.max_frame_bytes);
    let core = core.into_inner();
    SessionActor::create(move |ctx| {
        ctx.add_stream(stream);
        SessionActor::new(core, session, pre, permit)
    });
    Ok(response)
}
