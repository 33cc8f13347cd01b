//! Routing a request to a conversation's actor, wherever it runs.
//!
//! `route` is the one door to a conversation: if this node owns it, the request goes into the
//! local actor's mailbox (the actor is started if it is not running); otherwise `Peers`
//! forwards it to the owner node, whose answer comes back on the same reply channel.
//!
//! Channel policy: a conversation actor's mailbox is bounded (`envelope::MAILBOX`) and fed
//! with `try_send`. A request that finds it full is answered `unavailable` at once (the
//! client retries with the same id; sends are idempotent), never queued without bound.

use super::conversation::ConvActor;
use super::core::Core;
use super::envelope::{Envelope, Reply};
use crate::domain::{ConvRequest, ConvResult};
use crate::error::ApiError;
use actix::prelude::*;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Sends `request` to the conversation's actor, on this node or its owner node.
pub fn route(core: &Arc<Core>, conversation_id: &str, request: ConvRequest, reply: Option<Reply>) {
    if let Some(node) = core.peers.remote_owner(conversation_id) {
        core.peers.forward(&node, conversation_id, request, reply);
        return;
    }
    route_local(core, conversation_id, request, reply);
}

/// Sends `request` to this node's actor of the conversation (a forwarded request comes in
/// here too), restarting the actor once if it had just stopped.
pub fn route_local(
    core: &Arc<Core>,
    conversation_id: &str,
    request: ConvRequest,
    reply: Option<Reply>,
) {
    let env = Envelope {
        request,
        reply,
        arrived: Instant::now(),
    };
    let start = || ConvActor::launch(core, conversation_id);
    // A closed mailbox means the actor just stopped (idle): the registry starts a fresh one.
    let env = match core
        .conversations
        .get(conversation_id, start)
        .mailbox
        .try_send(env)
    {
        Ok(()) => return,
        Err(SendError::Closed(env)) => env,
        Err(SendError::Full(env)) => return refuse(core, env, "conversation busy, retry"),
    };
    match core
        .conversations
        .get(conversation_id, start)
        .mailbox
        .try_send(env)
    {
        Ok(()) => {}
        Err(SendError::Closed(env) | SendError::Full(env)) => {
            refuse(core, env, "conversation unavailable, retry")
        }
    }
}

/// Counted, not logged: under overload a log line per refusal would add to the load.
fn refuse(core: &Core, env: Envelope, why: &str) {
    core.metrics.conversation_refused.inc();
    if let Some(r) = env.reply {
        let _ = r.send(Err(ApiError::unavailable(why)));
    }
}

/// Routes a request that expects an answer and waits for it.
pub async fn ask(core: &Arc<Core>, conversation_id: &str, request: ConvRequest) -> ConvResult {
    let (tx, rx) = oneshot::channel();
    route(core, conversation_id, request, Some(tx));
    rx.await
        .map_err(|_| ApiError::unavailable("conversation restarted, retry"))?
}
