//! The actors' side of a cluster: routing requests to a conversation's owner node, fanning
//! committed messages and frames out to the other nodes, and repairing after missed frames.
//!
//! It exists so that actors keep one shape whether the deployment is one node or many: a
//! session calls `conversation::deliver` and gets its answer on the same oneshot; a
//! conversation actor fans out locally and hands the same frames to `Cluster` for the others.
//! With the in-process bus (no `cluster.bus`) every method here is a no-op or "local".
//!
//! Ownership: `Cluster` owns the table of requests forwarded to other nodes and awaiting an
//! answer. The live node set and presence sets belong to the `Bus`.

use super::conversation::{self, Reply};
use super::{Core, Hub, Push};
use crate::bus::frame::{NodeFrame, ReplyResult, Request};
use crate::bus::{Bus, Inbound, NodeId};
use crate::error::ApiError;
use bytestring::ByteString;
use dashmap::DashMap;
use parley_protocol::{Ack, Conversation, ErrorCode, ServerFrame};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Who waits for the answer of a forwarded request.
pub enum Waiter {
    None,
    Ack(Reply<Ack>),
    Conversation(Reply<Conversation>),
    Unit(Reply<()>),
}

impl Waiter {
    fn fail(self, e: ApiError) {
        match self {
            Waiter::None => {}
            Waiter::Ack(r) => drop(r.send(Err(e))),
            Waiter::Conversation(r) => drop(r.send(Err(e))),
            Waiter::Unit(r) => drop(r.send(Err(e))),
        }
    }

    fn complete(self, result: ReplyResult) {
        let (code, message) = match result {
            Ok(json) => {
                let bad = || ApiError::internal("malformed reply from the owner node");
                match self {
                    Waiter::None => {}
                    Waiter::Ack(r) => drop(r.send(serde_json::from_str(&json).map_err(|_| bad()))),
                    Waiter::Conversation(r) => {
                        drop(r.send(serde_json::from_str(&json).map_err(|_| bad())))
                    }
                    Waiter::Unit(r) => drop(r.send(Ok(()))),
                }
                return;
            }
            Err(e) => e,
        };
        let code: ErrorCode =
            serde_json::from_value(serde_json::Value::String(code)).unwrap_or(ErrorCode::Internal);
        self.fail(ApiError::new(code, message));
    }
}

struct Pending {
    node: NodeId,
    deadline: Instant,
    waiter: Waiter,
}

pub struct Cluster {
    bus: Option<Arc<Bus>>,
    pending: DashMap<u64, Pending>,
    next_req: AtomicU64,
    timeout: Duration,
}

impl Cluster {
    pub fn new(bus: Option<Arc<Bus>>, forward_timeout: Duration) -> Cluster {
        Cluster {
            bus,
            pending: DashMap::new(),
            next_req: AtomicU64::new(1),
            timeout: forward_timeout,
        }
    }

    pub fn bus(&self) -> Option<&Arc<Bus>> {
        self.bus.as_ref()
    }

    pub fn is_clustered(&self) -> bool {
        self.bus.is_some()
    }

    /// False while the node's bus subscription or heartbeat is broken (readiness).
    pub fn healthy(&self) -> bool {
        self.bus.as_ref().is_none_or(|b| b.healthy())
    }

    /// The owner node of a conversation when it is not this one.
    pub fn remote_owner(&self, conversation_id: &str) -> Option<NodeId> {
        let bus = self.bus.as_ref()?;
        let owner = bus.owner(conversation_id);
        (owner != *bus.node_id()).then_some(owner)
    }

    pub fn owns(&self, conversation_id: &str) -> bool {
        self.remote_owner(conversation_id).is_none()
    }

    pub fn forward(&self, node: &NodeId, conversation_id: &str, body: Request, waiter: Waiter) {
        let Some(bus) = &self.bus else {
            return waiter.fail(ApiError::unavailable("no cluster bus"));
        };
        if !bus.healthy() {
            // The frame would most likely be lost: fail fast, the client retries.
            bus.metrics().forward_failed.inc();
            return waiter.fail(ApiError::unavailable("cluster bus unreachable, retry"));
        }
        bus.metrics().forwarded.inc();
        let req_id = if matches!(waiter, Waiter::None) {
            0
        } else {
            let id = self.next_req.fetch_add(1, Ordering::Relaxed);
            self.pending.insert(
                id,
                Pending {
                    node: node.clone(),
                    deadline: Instant::now() + self.timeout,
                    waiter,
                },
            );
            id
        };
        bus.send_to(
            node,
            NodeFrame::Request {
                req_id,
                conversation_id: conversation_id.to_string(),
                body,
            },
        );
    }

    /// Fails forwarded requests whose deadline passed, or whose node is gone.
    fn expire(&self, gone: &[NodeId]) {
        let now = Instant::now();
        // With the bus down, answers cannot come back: fail everything now.
        let bus_down = !self.healthy();
        let dead: Vec<u64> = self
            .pending
            .iter()
            .filter(|p| bus_down || p.deadline <= now || gone.contains(&p.node))
            .map(|p| *p.key())
            .collect();
        for id in dead {
            if let Some((_, p)) = self.pending.remove(&id) {
                if let Some(b) = &self.bus {
                    b.metrics().forward_failed.inc();
                }
                p.waiter.fail(ApiError::unavailable(
                    "conversation owner unreachable, retry",
                ));
            }
        }
    }

    pub fn user_online(&self, user: &str) {
        if let Some(b) = &self.bus {
            b.user_online(user);
        }
    }

    pub fn user_offline(&self, user: &str) {
        if let Some(b) = &self.bus {
            b.user_offline(user);
        }
    }

    /// Which of `users` have a session on another node (all false without a cluster, or if
    /// Redis cannot answer: presence is best effort, messages are not).
    pub async fn online_elsewhere(&self, users: &[String]) -> Vec<bool> {
        match &self.bus {
            Some(b) => match b.online_elsewhere(users).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, "presence lookup failed");
                    vec![false; users.len()]
                }
            },
            None => vec![false; users.len()],
        }
    }

    pub fn broadcast(&self, frame: impl FnOnce() -> NodeFrame) {
        if let Some(b) = &self.bus {
            b.broadcast(frame());
        }
    }

    pub async fn leave(&self) {
        if let Some(b) = &self.bus {
            b.leave().await;
        }
    }
}

/// Starts the bus (if any) with this node's handler, and the forwarded-request reaper.
pub async fn start(core: &Arc<Core>) {
    let Some(bus) = core.cluster.bus.clone() else {
        return;
    };
    bus.start(Arc::new(NodeInbound(core.clone()))).await;
    let c = core.clone();
    tokio::task::spawn_local(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            c.cluster.expire(&[]);
        }
    });
}

/// The bus's view of this node.
struct NodeInbound(Arc<Core>);

impl Inbound for NodeInbound {
    fn frame(&self, from: &str, frame: NodeFrame) {
        let core = &self.0;
        match frame {
            NodeFrame::Deliver {
                conversation_id,
                members,
                messages,
            } => {
                let conv: Arc<str> = Arc::from(conversation_id.as_str());
                for d in messages {
                    let plain = ByteString::from(d.frame);
                    let mut carbon = || carbon_of(&plain, &d.client_id);
                    conversation::fan_out_local(
                        &core.hub,
                        &conv,
                        members.iter().map(String::as_str),
                        d.seq,
                        &d.sender_id,
                        &d.sender_device_id,
                        &plain,
                        &mut carbon,
                    );
                }
            }
            NodeFrame::Frame {
                users,
                except_device,
                frame,
            } => {
                let frame = ByteString::from(frame);
                for u in &users {
                    core.hub.push_frame(u, &frame, except_device.as_deref());
                }
            }
            NodeFrame::Announce { users, frame } => {
                if let Ok(ServerFrame::Conversation {
                    event,
                    conversation,
                }) = serde_json::from_str::<ServerFrame>(&frame)
                {
                    core.hub
                        .announce(&users, event, Arc::new(conversation), &[]);
                }
            }
            NodeFrame::Request {
                req_id,
                conversation_id,
                body,
            } => conversation::serve_forwarded(core, from, req_id, &conversation_id, body),
            NodeFrame::Reply { req_id, result } => {
                if let Some((_, p)) = core.cluster.pending.remove(&req_id) {
                    p.waiter.complete(result);
                }
            }
            NodeFrame::Resync => self.resync(),
            NodeFrame::Left => {}
        }
    }

    fn resync(&self) {
        self.0.metrics.resyncs.inc();
        for h in self.0.hub.all_sessions() {
            Hub::push(&h, Push::Refresh);
        }
    }

    fn membership(&self, _live: &[NodeId], gone: &[NodeId]) {
        let core = &self.0;
        core.cluster.expire(gone);
        // Conversations that now belong elsewhere: their actors finish what they accepted and
        // stop, so this node never keeps a stale seq counter for a conversation it lost.
        for (id, addr) in core.conversations.entries() {
            if !core.cluster.owns(&id) {
                addr.do_send(conversation::Relinquish);
            }
        }
    }

    fn local_users(&self) -> Vec<String> {
        self.0.hub.users()
    }
}

/// The carbon of a message frame: the same frame with the sender's `client_id`, built only
/// when one of the sender's other devices is on this node.
fn carbon_of(plain: &ByteString, client_id: &str) -> ByteString {
    match serde_json::from_str::<ServerFrame>(plain) {
        Ok(ServerFrame::Message(mut m)) => {
            m.client_id = Some(client_id.to_string());
            ServerFrame::Message(m).to_json().into()
        }
        _ => plain.clone(),
    }
}

/// Sends a forwarded request's answer back to the node that asked.
pub(crate) fn answer<T: serde::Serialize + Send + 'static>(
    core: &Arc<Core>,
    to: &str,
    req_id: u64,
    rx: oneshot::Receiver<Result<T, ApiError>>,
) {
    let core = core.clone();
    let to = to.to_string();
    tokio::task::spawn_local(async move {
        let result: ReplyResult = match rx.await {
            Ok(Ok(v)) => Ok(serde_json::to_string(&v).unwrap_or_else(|_| "null".into())),
            Ok(Err(e)) => Err((e.code.as_str().to_string(), e.message)),
            Err(_) => Err((
                ErrorCode::Unavailable.as_str().to_string(),
                "conversation restarted, retry".into(),
            )),
        };
        if let Some(bus) = core.cluster.bus() {
            bus.send_to(&to, NodeFrame::Reply { req_id, result });
        }
    });
}
