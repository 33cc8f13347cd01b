//! Slow clients: a request body may not pause for longer than `body_timeout_ms` between two
//! chunks, so a client that sends headers and then trickles (or stops sending) its body holds
//! a connection for a bounded time only. (Headers are bounded by actix-web's
//! `client_request_timeout`, set from `request_header_timeout_ms`.)
//!
//! The pause fails the body stream with a timed-out I/O error; extractors and the upload
//! handler turn it into 400 `bad_request` (`is_timeout`).

use actix_web::dev::{Payload, ServiceRequest};
use actix_web::error::PayloadError;
use futures_util::StreamExt;
use std::time::Duration;

const TOO_SLOW: &str = "the request body arrived too slowly";

/// Wraps the request's body so that a pause longer than `limit` ends it with an error.
/// (A WebSocket upgrade never gets here: `gateway::ws` takes the connection before routing.)
pub fn limit_body_pauses(req: &mut ServiceRequest, limit: Duration) {
    let inner = std::mem::replace(req.parts_mut().1, Payload::None);
    let stream = futures_util::stream::unfold(Some(inner), move |state| async move {
        let mut inner = state?;
        match tokio::time::timeout(limit, inner.next()).await {
            Ok(Some(item)) => Some((item, Some(inner))),
            Ok(None) => None,
            Err(_) => {
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, TOO_SLOW);
                Some((Err(PayloadError::Io(e)), None))
            }
        }
    });
    req.set_payload(Payload::from(stream.boxed_local()));
}

/// Whether a body error is the pause limit's.
pub fn is_timeout(e: &PayloadError) -> bool {
    matches!(e, PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}

/// The message for a body that stopped arriving.
pub fn too_slow() -> crate::error::ApiError {
    crate::error::ApiError::bad_request(TOO_SLOW)
}
