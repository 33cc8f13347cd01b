//! Routing a request to a conversation's actor, wherever it runs.
//!
//! `route` is the one door to a conversation: if this node owns it, the request goes into the
//! local actor's mailbox; otherwise `Peers` forwards it to the owner node, whose answer comes
//! back on the same reply channel. `Peers` is what the actors know of other nodes: with one
//! node (`SingleNode`) every conversation is local and nothing is broadcast; the `cluster`
//! module implements it over the Redis bus.
//!
//! Channel policy: a conversation actor's mailbox is bounded (`MAILBOX`) and fed with
//! `try_send`. A request that finds it full is answered `unavailable` at once (the client
//! retries with the same id; sends are idempotent), never queued without bound.

use super::core::Core;
use crate::domain::broadcast::Broadcast;
use crate::domain::{ConvRequest, ConvResult};
use crate::error::ApiError;
use actix::prelude::*;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Requests a conversation actor holds before refusing more.
pub const MAILBOX: usize = 4096;

pub type Reply = oneshot::Sender<ConvResult>;

/// A request in a conversation actor's mailbox.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Envelope {
    pub request: ConvRequest,
    /// `None` for fire-and-forget requests (see `ConvRequest::expects_reply`).
    pub reply: Option<Reply>,
    /// When the request reached this node (for the ack latency metric).
    pub arrived: Instant,
}

/// This node's view of the cluster, for `/healthz`.
pub struct ClusterStatus {
    pub node: String,
    pub live: Vec<String>,
    pub bus_up: bool,
}

/// What the actors know of other nodes.
#[async_trait]
pub trait Peers: Send + Sync + 'static {
    fn is_clustered(&self) -> bool;
    /// `None` on a single node.
    fn status(&self) -> Option<ClusterStatus>;
    /// False while this node cannot reach the others (readiness).
    fn healthy(&self) -> bool;
    /// The owner node of a conversation when it is another node.
    fn remote_owner(&self, conversation_id: &str) -> Option<Arc<str>>;
    /// Sends the request to `node`; its answer (or `unavailable`) arrives on `reply`.
    fn forward(
        &self,
        node: &Arc<str>,
        conversation_id: &str,
        request: ConvRequest,
        reply: Option<Reply>,
    );
    /// Hands `b` to every other node, for its local sessions.
    fn broadcast(&self, b: Broadcast);
    fn user_online(&self, user: &str);
    fn user_offline(&self, user: &str);
    /// Which of `users` have a session on another node (best effort: presence, not messages).
    async fn online_elsewhere(&self, users: &[String]) -> Vec<bool>;
    /// Leaves the cluster (graceful shutdown): the others take over this node's conversations.
    async fn leave(&self);
}

/// One node is the whole deployment.
pub struct SingleNode;

#[async_trait]
impl Peers for SingleNode {
    fn is_clustered(&self) -> bool {
        false
    }
    fn status(&self) -> Option<ClusterStatus> {
        None
    }
    fn healthy(&self) -> bool {
        true
    }
    fn remote_owner(&self, _: &str) -> Option<Arc<str>> {
        None
    }
    fn forward(&self, _: &Arc<str>, _: &str, _: ConvRequest, reply: Option<Reply>) {
        if let Some(r) = reply {
            let _ = r.send(Err(ApiError::internal("forwarded on a single node")));
        }
    }
    fn broadcast(&self, _: Broadcast) {}
    fn user_online(&self, _: &str) {}
    fn user_offline(&self, _: &str) {}
    async fn online_elsewhere(&self, users: &[String]) -> Vec<bool> {
        vec![false; users.len()]
    }
    async fn leave(&self) {}
}

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
    // A closed mailbox means the actor just stopped (idle): the registry starts a fresh one.
    let env = match core.conversations.get(core, conversation_id).try_send(env) {
        Ok(()) => return,
        Err(SendError::Closed(env)) => env,
        Err(SendError::Full(env)) => return refuse(env, "conversation busy, retry"),
    };
    match core.conversations.get(core, conversation_id).try_send(env) {
        Ok(()) => {}
        Err(SendError::Closed(env) | SendError::Full(env)) => {
            refuse(env, "conversation unavailable, retry")
        }
    }
}

fn refuse(env: Envelope, why: &str) {
    tracing::warn!(reason = why, "conversation request refused");
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
