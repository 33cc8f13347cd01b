//! The WebSocket upgrade. actix-http parses the request head and hands over the connection
//! (`HttpServiceBuilder::upgrade`); from there tokio-tungstenite serves the socket, so an idle
//! session holds one small read buffer and none of actix-http's per-connection buffers
//! (16 KiB of them, which were most of an idle session's memory).
//!
//! Before the upgrade, a refusal is a plain HTTP response with the contract's JSON error body:
//! 503 while the node restarts or holds all the sessions it can, 400 for a bad handshake, 404
//! for an upgrade anywhere but `/v1/ws`. A token in the Authorization header is checked here;
//! without one the `SessionActor` enforces the auth deadline.

use super::bearer_value;
use crate::actors::session::{PreAuth, Socket};
use crate::actors::{Core, SessionActor};
use crate::error::ApiError;
use actix::Actor;
use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::h1::{Codec, Message};
use actix_http::{Request, Response};
use actix_web::ResponseError;
use futures_util::SinkExt;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

pub type Framed = actix_codec::Framed<TcpStream, Codec>;

/// Bytes read from the socket per read call, and the read buffer an idle session holds.
/// Larger frames still arrive whole: the buffer grows to a frame's announced length.
const READ_BUFFER: usize = 2048;
/// Frames of one burst gather up to this much before they go to the socket in one write.
const WRITE_BUFFER: usize = 8192;

/// Serves one upgrade request: answers it, and for an accepted WebSocket starts the session,
/// which takes the socket. The HTTP server's part in the connection ends here (its
/// dispatcher, about 2.8 KB, would otherwise live as long as the session); the session's
/// place in the node's limits is its `SessionPermit`.
pub async fn serve(
    core: Arc<Core>,
    req: Request,
    mut framed: Framed,
) -> Result<(), actix_web::Error> {
    let accepted = match accept(&core, &req) {
        Ok(a) => a,
        Err(refusal) => {
            // The client may already be gone: nothing to tell it.
            let _ = respond(&mut framed, refusal).await;
            return Ok(());
        }
    };
    let (switching, pre, permit) = accepted;
    if respond(&mut framed, switching).await.is_err() {
        return Ok(());
    }
    let parts = framed.into_parts();
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_frame_size(Some(core.config.limits.max_frame_bytes))
        .max_message_size(Some(core.config.limits.max_frame_bytes));
    // Bytes the client sent right behind the request head are the first frames.
    let early = parts.read_buf.to_vec();
    let ws =
        WebSocketStream::from_partially_read(parts.io, early, Role::Server, Some(config)).await;
    SessionActor::new(core, Socket::new(ws), pre, permit).start();
    Ok(())
}

type Accepted = (
    Response<BoxBody>,
    PreAuth,
    crate::actors::admission::SessionPermit,
);

/// The 101 answer with what the session starts from, or the refusal to send instead.
fn accept(core: &Core, req: &Request) -> Result<Accepted, Response<BoxBody>> {
    if req.path() != "/v1/ws" {
        return Err(refusal(ApiError::not_found("no such endpoint")));
    }
    if req.method() != actix_http::Method::GET {
        return Err(refusal(ApiError::bad_request(
            "a WebSocket upgrade is a GET",
        )));
    }
    let switching = match actix_http::ws::handshake(req.head()) {
        Ok(mut b) => b.finish().map_into_boxed_body(),
        Err(e) => {
            return Err(refusal(ApiError::bad_request(format!(
                "not a WebSocket handshake: {e}"
            ))))
        }
    };
    if core.is_shutting_down() {
        return Err(refusal(ApiError::unavailable("server is restarting")));
    }
    let permit = core.admission.session().map_err(refusal)?;
    let token = req
        .head()
        .headers()
        .get(actix_http::header::AUTHORIZATION)
        .and_then(bearer_value);
    let pre = match token {
        None => PreAuth::None,
        Some(token) => match core.auth.verify(token) {
            Some(c) => PreAuth::Valid(c),
            None => PreAuth::Invalid,
        },
    };
    Ok((switching, pre, permit))
}

fn refusal(e: ApiError) -> Response<BoxBody> {
    e.error_response().into()
}

/// Writes a response with actix-http's own encoder (the head and a sized body).
async fn respond(framed: &mut Framed, res: Response<BoxBody>) -> Result<(), std::io::Error> {
    let (head, body) = res.into_parts();
    let body = match body.try_into_bytes() {
        Ok(b) => b,
        Err(_) => bytes::Bytes::new(), // every answer here is built whole
    };
    let size = if head.status() == actix_http::StatusCode::SWITCHING_PROTOCOLS {
        BodySize::None
    } else {
        BodySize::Sized(body.len() as u64)
    };
    // One write for head and body: a client may read what arrives with the head only.
    framed.feed(Message::Item((head, size))).await?;
    if size != BodySize::None {
        framed.feed(Message::Chunk(Some(body))).await?;
        framed.feed(Message::Chunk(None)).await?;
    }
    framed.flush().await
}

/// `GET /v1/ws` without `Connection: Upgrade` reaches the router, not `serve`.
pub async fn not_an_upgrade() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::bad_request(
        "a WebSocket upgrade is expected here",
    ))
}
