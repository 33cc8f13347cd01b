//! The cluster: `Peers` over the Redis bus, and this node's handling of what other nodes
//! send.
//!
//! It exists so that actors keep one shape whether the deployment is one node or many: they
//! see only the `Peers` trait. A request for a conversation another node owns is forwarded as
//! the same `ConvRequest` the local actor would have got, and its waiter is kept here until
//! the owner's `Reply` (or a timeout, or the owner's death) answers it. A forwarded request
//! arriving here is decoded and routed exactly like a local one (`routing::route_local`);
//! broadcasts go to this node's sessions through `Core::receive`.
//!
//! Ownership: `Cluster` owns the table of forwarded requests awaiting an answer (a `DashMap`,
//! reaped every 250 ms). The live node set and the Redis connections belong to the `Bus`.

use crate::actors::envelope::{Relinquish, Reply};
use crate::actors::peers::{ClusterStatus, Peers};
use crate::actors::routing;
use crate::actors::{Core, ToSession};
use crate::bus::frame::NodeFrame;
use crate::bus::{Bus, Inbound, NodeId};
use crate::domain::broadcast::Broadcast;
use crate::domain::{ConvRequest, ConvResult};
use crate::error::ApiError;
use async_trait::async_trait;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

struct Pending {
    node: NodeId,
    deadline: Instant,
    reply: Reply,
}

pub struct Cluster {
    bus: Arc<Bus>,
    pending: DashMap<u64, Pending>,
    next_req: AtomicU64,
    timeout: Duration,
}

impl Cluster {
    pub fn new(bus: Arc<Bus>, forward_timeout: Duration) -> Arc<Cluster> {
        Arc::new(Cluster {
            bus,
            pending: DashMap::new(),
            next_req: AtomicU64::new(1),
            timeout: forward_timeout,
        })
    }

    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    /// Fails forwarded requests whose deadline passed, or whose node is gone; all of them
    /// while the bus is down (answers could not come back).
    fn expire(&self, gone: &[NodeId]) {
        let now = Instant::now();
        let bus_down = !self.bus.healthy();
        let dead: Vec<u64> = self
            .pending
            .iter()
            .filter(|p| bus_down || p.deadline <= now || gone.contains(&p.node))
            .map(|p| *p.key())
            .collect();
        for id in dead {
            if let Some((_, p)) = self.pending.remove(&id) {
                self.bus.metrics().forward_failed.inc();
                let _ = p.reply.send(Err(ApiError::unavailable(
                    "conversation owner unreachable, retry",
                )));
            }
        }
    }
}

#[async_trait]
impl Peers for Cluster {
    fn is_clustered(&self) -> bool {
        true
    }

    fn status(&self) -> Option<ClusterStatus> {
        Some(ClusterStatus {
            node: self.bus.node_id().to_string(),
            live: self.bus.live().iter().map(|n| n.to_string()).collect(),
            bus_up: self.bus.healthy(),
        })
    }

    fn healthy(&self) -> bool {
        self.bus.healthy()
    }

    fn remote_owner(&self, conversation_id: &str) -> Option<Arc<str>> {
        let owner = self.bus.owner(conversation_id);
        (owner != *self.bus.node_id()).then_some(owner)
    }

    fn forward(
        &self,
        node: &Arc<str>,
        conversation_id: &str,
        request: ConvRequest,
        reply: Option<Reply>,
    ) {
        let metrics = self.bus.metrics();
        if !self.bus.healthy() {
            // The frame would most likely be lost: fail fast, the client retries.
            metrics.forward_failed.inc();
            if let Some(r) = reply {
                let _ = r.send(Err(ApiError::unavailable("cluster bus unreachable, retry")));
            }
            return;
        }
        metrics.forwarded.inc();
        let req_id = match reply {
            None => 0,
            Some(reply) => {
                let id = self.next_req.fetch_add(1, Ordering::Relaxed);
                let deadline = Instant::now() + self.timeout;
                let node = node.clone();
                self.pending.insert(
                    id,
                    Pending {
                        node,
                        deadline,
                        reply,
                    },
                );
                id
            }
        };
        self.bus.send_to(
            node,
            NodeFrame::Request {
                req_id,
                conversation_id: conversation_id.to_string(),
                request,
            },
        );
    }

    fn broadcast(&self, b: Broadcast) {
        self.bus.broadcast(NodeFrame::Broadcast(b));
    }

    fn user_online(&self, user: &str) {
        self.bus.user_online(user);
    }

    fn user_offline(&self, user: &str) {
        self.bus.user_offline(user);
    }

    async fn online_elsewhere(&self, users: &[String]) -> Vec<bool> {
        match self.bus.online_elsewhere(users).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "presence lookup failed");
                vec![false; users.len()]
            }
        }
    }

    async fn leave(&self) {
        self.bus.leave().await;
    }
}

/// Starts the bus with this node's handler, and the forwarded-request reaper.
pub async fn start(core: &Arc<Core>, cluster: &Arc<Cluster>) {
    let inbound = Arc::new(NodeInbound {
        core: core.clone(),
        cluster: cluster.clone(),
    });
    cluster.bus.start(inbound).await;
    let c = cluster.clone();
    tokio::task::spawn_local(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            c.expire(&[]);
        }
    });
}

/// The bus's view of this node.
struct NodeInbound {
    core: Arc<Core>,
    cluster: Arc<Cluster>,
}

impl NodeInbound {
    /// Runs a request forwarded by another node (which believes this node owns the
    /// conversation; if the views differ for a moment, the store's conditional append still
    /// keeps seq unique) and sends the answer back.
    fn serve(&self, from: &str, req_id: u64, conversation_id: &str, request: ConvRequest) {
        if req_id == 0 {
            return routing::route_local(&self.core, conversation_id, request, None);
        }
        let (tx, rx) = oneshot::channel::<ConvResult>();
        routing::route_local(&self.core, conversation_id, request, Some(tx));
        let bus = self.cluster.bus.clone();
        let to = from.to_string();
        tokio::task::spawn_local(async move {
            let result = match rx.await {
                // The cause stays here: logged once, not sent.
                Ok(Err(mut e)) => {
                    e.log_cause("forwarded request failed");
                    Err(e)
                }
                Ok(ok) => ok,
                Err(_) => Err(ApiError::unavailable("conversation restarted, retry")),
            };
            bus.send_to(&to, NodeFrame::Reply { req_id, result });
        });
    }
}

impl Inbound for NodeInbound {
    fn frame(&self, from: &str, frame: NodeFrame) {
        match frame {
            NodeFrame::Broadcast(b) => self.core.receive(b),
            NodeFrame::Request {
                req_id,
                conversation_id,
                request,
            } => self.serve(from, req_id, &conversation_id, request),
            NodeFrame::Reply { req_id, result } => {
                if let Some((_, p)) = self.cluster.pending.remove(&req_id) {
                    let _ = p.reply.send(result);
                }
            }
            NodeFrame::Resync => self.resync(),
            NodeFrame::Left => {}
        }
    }

    fn resync(&self) {
        self.core.metrics.resyncs.inc();
        for h in self.core.hub.all_sessions() {
            crate::actors::Hub::offer(&h, ToSession::Refresh);
        }
    }

    fn membership(&self, _live: &[NodeId], gone: &[NodeId]) {
        self.cluster.expire(gone);
        // Conversations that now belong elsewhere: their actors finish what they accepted and
        // stop, so this node never keeps a stale seq counter for a conversation it lost.
        for (id, handle) in self.core.conversations.entries() {
            if self.cluster.remote_owner(&id).is_some() {
                // `do_send` passes a full mailbox: one message per membership change, and
                // an owner that kept a stale seq counter would only be refused by the store.
                handle.relinquish.do_send(Relinquish);
            }
        }
    }

    fn local_users(&self) -> Vec<String> {
        self.core.hub.users()
    }
}
