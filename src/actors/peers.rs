//! `Peers`: what the actors know of other nodes.
//!
//! With one node (`SingleNode`) every conversation is local and nothing is broadcast; the
//! `cluster` module implements the trait over the Redis bus. The actors look the same either
//! way.

use super::envelope::Reply;
use crate::domain::broadcast::Broadcast;
use crate::domain::ConvRequest;
use crate::error::ApiError;
use async_trait::async_trait;
use std::sync::Arc;

/// This node's view of the cluster, for `/healthz`.
pub struct ClusterStatus {
    pub node: String,
    pub live: Vec<String>,
    pub bus_up: bool,
}

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
