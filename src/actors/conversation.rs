//! The conversation actor: the single writer of one conversation.
//!
//! It exists so that seq assignment needs no lock and no database sequence: only this actor
//! appends to its conversation, one batch at a time. Sends that arrive while a batch is being
//! committed wait and go into the next batch, so a busy group commits many messages per fsync.
//! After the commit returns it answers each sender (the ack) and fans each message out to
//! every live device of every member. It also owns the members' receipt positions, so that a
//! receipt is computed in one place and never moves backwards.

use super::cluster::Waiter;
use super::{describe, now_ms, Core, Hub, Push};
use crate::bus::frame::{Delivery, NodeFrame, Request};
use crate::error::ApiError;
use crate::storage::{
    AppendOutcome, ConversationState, CursorUpdate, MemberRow, NewMessage, Retraction, Role,
    StoreError,
};
use actix::prelude::*;
use bytestring::ByteString;
use parley_protocol::{
    Ack, Attachment, ConversationEvent, ConversationKind, DeleteScope, Message as WireMessage,
    ReceiptKind, ServerFrame,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How many recent (seq, sender) pairs are kept to route receipts without a store read.
const RECENT_SENDERS: usize = 4096;

pub type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

/// A message to append. The session has validated sizes and resolved attachments.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Submit {
    pub user_id: String,
    pub device_id: String,
    pub client_id: String,
    pub text: Option<String>,
    pub attachments: Vec<Attachment>,
    pub meta: Option<String>,
    pub arrived: Instant,
    pub reply: Reply<Ack>,
}

/// A device reports `received` or `read` up to `seq`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Cursor {
    pub user_id: String,
    pub device_id: String,
    pub kind: ReceiptKind,
    pub seq: u64,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Delete {
    pub user_id: String,
    pub device_id: String,
    pub id: String,
    pub seq: u64,
    pub scope: DeleteScope,
    pub reply: Reply<Ack>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Typing {
    pub user_id: String,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct AddMembers {
    pub by: String,
    pub user_ids: Vec<String>,
    pub reply: Reply<parley_protocol::Conversation>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveMember {
    pub by: String,
    pub user_id: String,
    pub reply: Reply<()>,
}

/// This node no longer owns the conversation: finish what was accepted, then stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Relinquish;

struct Pending {
    msg: NewMessage,
    arrived: Instant,
    reply: Reply<Ack>,
}

enum Phase {
    Loading,
    Ready(Box<ConversationState>),
    /// No such conversation: queued requests get `not_found`, then the actor stops.
    Missing,
    /// Storage failed while loading: queued requests get `unavailable`, then the actor stops.
    Failed,
}

pub struct ConvActor {
    core: Arc<Core>,
    id: Arc<str>,
    phase: Phase,
    pending: Vec<Pending>,
    writing: bool,
    recent: VecDeque<(u64, String)>,
    /// Highest receipt seq sent per (user, kind): a guard so receipts never go backwards even
    /// if two cursor commits complete out of order.
    receipts_sent: HashMap<(String, ReceiptKind), u64>,
    last_activity: Instant,
    relinquished: bool,
}

impl ConvActor {
    pub fn new(core: Arc<Core>, id: Arc<str>) -> Self {
        ConvActor {
            core,
            id,
            phase: Phase::Loading,
            pending: Vec::new(),
            writing: false,
            recent: VecDeque::new(),
            receipts_sent: HashMap::new(),
            last_activity: Instant::now(),
            relinquished: false,
        }
    }

    fn state(&self) -> Result<&ConversationState, ApiError> {
        match &self.phase {
            Phase::Ready(s) => Ok(s),
            Phase::Missing => Err(ApiError::not_found("no such conversation")),
            Phase::Loading | Phase::Failed => {
                Err(ApiError::unavailable("conversation unavailable, retry"))
            }
        }
    }

    fn state_mut(&mut self) -> Option<&mut ConversationState> {
        match &mut self.phase {
            Phase::Ready(s) => Some(s),
            _ => None,
        }
    }

    fn member(&self, user_id: &str) -> Result<&MemberRow, ApiError> {
        self.state()?
            .members
            .iter()
            .find(|m| m.user_id == user_id)
            .ok_or_else(|| ApiError::forbidden("not a member of this conversation"))
    }

    fn load(&mut self, ctx: &mut Context<Self>) {
        let core = self.core.clone();
        let id = self.id.clone();
        ctx.wait(
            async move { core.store.load_conversation(&id).await }
                .into_actor(self)
                .map(|res, act, ctx| {
                    act.phase = match res {
                        Ok(Some(state)) => Phase::Ready(Box::new(state)),
                        Ok(None) => Phase::Missing,
                        Err(e) => {
                            tracing::warn!(conversation = %act.id, error = %e, "could not load conversation");
                            Phase::Failed
                        }
                    };
                    if !matches!(act.phase, Phase::Ready(_)) {
                        // New requests start a fresh actor; the ones already queued here are
                        // answered from this phase before it stops.
                        act.core.conversations.remove_if(&act.id, &ctx.address());
                        ctx.run_later(Duration::from_millis(500), |_, ctx| ctx.stop());
                    } else {
                        // Sends that arrived during a reload (after a conflict) go now.
                        act.flush(ctx);
                    }
                }),
        );
    }

    /// Starts a commit of everything pending, unless one is in flight.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.pending.is_empty() {
            if self.relinquished && !self.writing {
                ctx.stop();
            }
            return;
        }
        let Some(state) = self.state_mut() else {
            return;
        };
        let first_seq = state.last_seq + 1;
        let max = self.core.config.storage.max_batch;
        let take = self.pending.len().min(max);
        let (msgs, waiters): (Vec<NewMessage>, Vec<(Instant, Reply<Ack>)>) = self
            .pending
            .drain(..take)
            .map(|p| (p.msg, (p.arrived, p.reply)))
            .unzip();
        let msgs: Arc<[NewMessage]> = msgs.into();
        self.writing = true;
        let core = self.core.clone();
        let id = self.id.clone();
        let stored = msgs.clone();
        ctx.spawn(
            async move { core.store.append(&id, first_seq, stored).await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    act.writing = false;
                    act.committed(&msgs, waiters, res, ctx);
                    act.flush(ctx);
                }),
        );
    }

    fn committed(
        &mut self,
        msgs: &[NewMessage],
        waiters: Vec<(Instant, Reply<Ack>)>,
        res: Result<Vec<AppendOutcome>, StoreError>,
        ctx: &mut Context<Self>,
    ) {
        let outcomes = match res {
            Ok(o) => o,
            Err(e) => {
                if matches!(e, StoreError::Conflict(_)) {
                    // Someone else appended (another owner during a hand-off): reload the
                    // counter from storage; the clients retry with the same ids.
                    tracing::warn!(conversation = %self.id, error = %e, "append conflict; reloading");
                    self.phase = Phase::Loading;
                    self.load(ctx);
                }
                let err: ApiError = match e {
                    StoreError::Conflict(_) => ApiError::unavailable("conversation moved, retry"),
                    other => other.into(),
                };
                for (_, reply) in waiters {
                    let _ = reply.send(Err(err.clone()));
                }
                return;
            }
        };
        let conv_id = self.id.clone();
        let mut remote: Vec<Delivery> = Vec::new();
        for ((msg, (arrived, reply)), outcome) in msgs.iter().zip(waiters).zip(outcomes) {
            let ack = match outcome {
                AppendOutcome::Duplicate {
                    conversation_id,
                    seq,
                    message_id,
                    ts,
                } => Ack {
                    id: msg.client_id.clone(),
                    conversation_id,
                    seq,
                    message_id,
                    ts,
                    duplicate: true,
                },
                AppendOutcome::Stored { seq } => {
                    if let Some(s) = self.state_mut() {
                        s.last_seq = seq;
                    }
                    self.recent.push_back((seq, msg.sender_id.clone()));
                    if self.recent.len() > RECENT_SENDERS {
                        self.recent.pop_front();
                    }
                    let plain = self.fan_out(seq, msg);
                    if self.core.cluster.is_clustered() {
                        remote.push(Delivery {
                            seq,
                            sender_id: msg.sender_id.clone(),
                            sender_device_id: msg.sender_device_id.clone(),
                            client_id: msg.client_id.clone(),
                            frame: plain.to_string(),
                        });
                    }
                    Ack {
                        id: msg.client_id.clone(),
                        conversation_id: conv_id.to_string(),
                        seq,
                        message_id: msg.message_id.clone(),
                        ts: msg.ts,
                        duplicate: false,
                    }
                }
            };
            self.core.metrics.acks.inc();
            self.core
                .metrics
                .ack_latency
                .observe(arrived.elapsed().as_secs_f64());
            let _ = reply.send(Ok(ack));
        }
        if !remote.is_empty() {
            if let Ok(state) = self.state() {
                // One broadcast per commit batch, not one per recipient.
                self.core.cluster.broadcast(|| NodeFrame::Deliver {
                    conversation_id: self.id.to_string(),
                    members: state.members.iter().map(|m| m.user_id.clone()).collect(),
                    messages: remote,
                });
            }
        }
    }

    /// Pushes a committed message to every device of every member on this node but the
    /// sending one, and returns the frame (for the other nodes). The frame is built once and
    /// shared; the carbon (the same frame with `client_id`, for the sender's other devices) is
    /// serialised only if such a device is online.
    fn fan_out(&self, seq: u64, m: &NewMessage) -> ByteString {
        let mut frame = ServerFrame::Message(WireMessage {
            conversation_id: self.id.to_string(),
            seq,
            message_id: m.message_id.clone(),
            sender_id: m.sender_id.clone(),
            sender_device_id: m.sender_device_id.clone(),
            ts: m.ts,
            text: m.text.clone(),
            attachments: m.attachments.clone(),
            meta: m.meta.as_deref().and_then(|s| serde_json::from_str(s).ok()),
            client_id: None,
            deleted: false,
        });
        let plain: ByteString = frame.to_json().into();
        let Ok(state) = self.state() else {
            return plain;
        };
        let mut carbon = || {
            if let ServerFrame::Message(w) = &mut frame {
                w.client_id = Some(m.client_id.clone());
            }
            frame.to_json().into()
        };
        fan_out_local(
            &self.core.hub,
            &self.id,
            state.members.iter().map(|x| x.user_id.as_str()),
            seq,
            &m.sender_id,
            &m.sender_device_id,
            &plain,
            &mut carbon,
        );
        plain
    }

    fn push_to_members(&self, frame: &ByteString, except_user: Option<&str>) {
        if let Ok(state) = self.state() {
            let users: Vec<&str> = state
                .members
                .iter()
                .map(|m| m.user_id.as_str())
                .filter(|u| Some(*u) != except_user)
                .collect();
            self.core.push_frame(&users, frame, None);
        }
    }

    /// Sends receipts for `user` moving from `old` to `new` (after the move is durable).
    fn send_receipts(
        &mut self,
        ctx: &mut Context<Self>,
        user: String,
        device: String,
        kind: ReceiptKind,
        old: u64,
        new: u64,
    ) {
        let key = (user.clone(), kind);
        if self.receipts_sent.get(&key).is_some_and(|s| *s >= new) {
            return;
        }
        self.receipts_sent.insert(key, new);
        let frame: ByteString = ServerFrame::Receipt {
            conversation_id: self.id.to_string(),
            user_id: user.clone(),
            kind,
            seq: new,
        }
        .to_json()
        .into();
        if kind == ReceiptKind::Read {
            self.core.push_frame(&[&user], &frame, Some(&device));
        }
        // Senders of (old, new]: from the recent ring if it covers the range, else storage.
        let covered = self.recent.front().is_some_and(|(s, _)| *s <= old + 1);
        if covered {
            let mut senders: Vec<&String> = self
                .recent
                .iter()
                .filter(|(s, _)| *s > old && *s <= new)
                .map(|(_, u)| u)
                .collect();
            senders.sort();
            senders.dedup();
            senders.retain(|s| **s != user);
            self.core.push_frame(&senders, &frame, None);
            return;
        }
        let core = self.core.clone();
        let id = self.id.clone();
        ctx.spawn(
            async move {
                match core.store.senders_between(&id, old, new).await {
                    Ok(mut senders) => {
                        senders.retain(|s| *s != user);
                        core.push_frame(&senders, &frame, None);
                    }
                    Err(e) => tracing::warn!(error = %e, "receipt routing failed"),
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for ConvActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        self.core.metrics.conversation_actors.inc();
        self.load(ctx);
        let idle = Duration::from_secs(self.core.config.actors.conversation_idle_secs.max(1));
        ctx.run_interval(idle.min(Duration::from_secs(30)), move |act, ctx| {
            if !act.writing && act.pending.is_empty() && act.last_activity.elapsed() >= idle {
                act.core.conversations.remove_if(&act.id, &ctx.address());
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.core.conversations.remove_if(&self.id, &ctx.address());
        self.core.metrics.conversation_actors.dec();
        for p in self.pending.drain(..) {
            let _ = p
                .reply
                .send(Err(ApiError::unavailable("conversation restarted, retry")));
        }
    }
}

impl Handler<Submit> for ConvActor {
    type Result = ();
    fn handle(&mut self, m: Submit, ctx: &mut Context<Self>) {
        self.last_activity = Instant::now();
        if let Err(e) = self.member(&m.user_id) {
            let _ = m.reply.send(Err(e));
            return;
        }
        if self.core.is_shutting_down() {
            let _ = m
                .reply
                .send(Err(ApiError::unavailable("server is restarting")));
            return;
        }
        self.pending.push(Pending {
            msg: NewMessage {
                message_id: super::new_id(),
                sender_id: m.user_id,
                sender_device_id: m.device_id,
                client_id: m.client_id,
                ts: now_ms(),
                text: m.text,
                attachments: m.attachments,
                meta: m.meta,
            },
            arrived: m.arrived,
            reply: m.reply,
        });
        self.flush(ctx);
    }
}

impl Handler<Cursor> for ConvActor {
    type Result = ();
    fn handle(&mut self, m: Cursor, ctx: &mut Context<Self>) {
        self.last_activity = Instant::now();
        let conv = self.id.to_string();
        let Some(state) = self.state_mut() else {
            return;
        };
        let seq = m.seq.min(state.last_seq);
        let Some(member) = state.members.iter_mut().find(|x| x.user_id == m.user_id) else {
            return;
        };
        let mut updates = vec![CursorUpdate::DeviceDelivered {
            device_id: m.device_id.clone(),
            conversation_id: conv.clone(),
            seq,
        }];
        let mut moves = Vec::new();
        if seq > member.delivered_seq {
            moves.push((ReceiptKind::Delivered, member.delivered_seq, seq));
            member.delivered_seq = seq;
            updates.push(CursorUpdate::UserDelivered {
                user_id: m.user_id.clone(),
                conversation_id: conv.clone(),
                seq,
            });
        }
        if m.kind == ReceiptKind::Read && seq > member.read_seq {
            moves.push((ReceiptKind::Read, member.read_seq, seq));
            member.read_seq = seq;
            updates.push(CursorUpdate::UserRead {
                user_id: m.user_id.clone(),
                conversation_id: conv,
                seq,
            });
        }
        let core = self.core.clone();
        ctx.spawn(
            async move { core.store.advance_cursors(updates).await }
                .into_actor(self)
                .map(move |res, act, ctx| match res {
                    Ok(()) => {
                        for (kind, old, new) in moves {
                            act.send_receipts(
                                ctx,
                                m.user_id.clone(),
                                m.device_id.clone(),
                                kind,
                                old,
                                new,
                            );
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cursor update failed"),
                }),
        );
    }
}

impl Handler<Delete> for ConvActor {
    type Result = ();
    fn handle(&mut self, m: Delete, ctx: &mut Context<Self>) {
        self.last_activity = Instant::now();
        let (kind, is_admin, last_seq) = match self.member(&m.user_id) {
            Ok(member) => {
                let st = self.state().expect("member implies loaded");
                (st.row.kind, member.role == Role::Admin, st.last_seq)
            }
            Err(e) => {
                let _ = m.reply.send(Err(e));
                return;
            }
        };
        if m.seq == 0 || m.seq > last_seq {
            let _ = m.reply.send(Err(ApiError::not_found("no such message")));
            return;
        }
        let core = self.core.clone();
        let id = self.id.clone();
        let window_ms = self.core.config.limits.retract_window_secs as i64 * 1000;
        ctx.wait(
            async move { core.store.message(&id, m.seq).await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    let msg = match res {
                        Ok(Some(msg)) => msg,
                        Ok(None) => {
                            let _ = m.reply.send(Err(ApiError::not_found("no such message")));
                            return;
                        }
                        Err(e) => {
                            let _ = m.reply.send(Err(e.into()));
                            return;
                        }
                    };
                    let now = now_ms();
                    if m.scope == DeleteScope::Everyone {
                        let own_in_window = msg.sender_id == m.user_id && now - msg.ts <= window_ms;
                        let admin = kind == ConversationKind::Group && is_admin;
                        if !own_in_window && !admin {
                            let why = if msg.sender_id == m.user_id {
                                "the retraction window has passed"
                            } else {
                                "only the sender or a group admin may retract for everyone"
                            };
                            let _ = m.reply.send(Err(ApiError::forbidden(why)));
                            return;
                        }
                    }
                    let ack = Ack {
                        id: m.id.clone(),
                        conversation_id: act.id.to_string(),
                        seq: m.seq,
                        message_id: msg.message_id.clone(),
                        ts: now,
                        duplicate: false,
                    };
                    if m.scope == DeleteScope::Everyone && msg.deleted {
                        let _ = m.reply.send(Ok(Ack {
                            duplicate: true,
                            ..ack
                        }));
                        return;
                    }
                    let conv_id = act.id.to_string();
                    let Some(state) = act.state_mut() else {
                        let _ = m.reply.send(Err(ApiError::unavailable("retry")));
                        return;
                    };
                    state.last_event_no += 1;
                    let r = Retraction {
                        conversation_id: conv_id,
                        event_no: state.last_event_no,
                        seq: m.seq,
                        scope: m.scope,
                        by_user: m.user_id.clone(),
                        for_user: (m.scope == DeleteScope::Me).then(|| m.user_id.clone()),
                        ts: now,
                    };
                    let files: Vec<String> =
                        msg.attachments.iter().map(|a| a.file_id.clone()).collect();
                    let core = act.core.clone();
                    ctx.spawn(
                        async move {
                            let res = match r.scope {
                                DeleteScope::Everyone => core.store.retract(r.clone()).await,
                                DeleteScope::Me => core.store.hide(r.clone()).await,
                            };
                            if res.is_ok() && r.scope == DeleteScope::Everyone && !files.is_empty()
                            {
                                match core.store.orphaned_blobs(files).await {
                                    Ok(blobs) => {
                                        for sha in blobs {
                                            let _ = tokio::fs::remove_file(
                                                crate::gateway::files::blob_path(
                                                    &core.blob_dir,
                                                    &sha,
                                                ),
                                            )
                                            .await;
                                        }
                                    }
                                    Err(e) => tracing::warn!(error = %e, "blob cleanup failed"),
                                }
                            }
                            (res, r)
                        }
                        .into_actor(act)
                        .map(move |(res, r), act, _| match res {
                            Ok(()) => {
                                let frame: ByteString = ServerFrame::Deleted {
                                    conversation_id: r.conversation_id.clone(),
                                    seq: r.seq,
                                    scope: r.scope,
                                    by: r.by_user.clone(),
                                }
                                .to_json()
                                .into();
                                match r.scope {
                                    DeleteScope::Everyone => act.push_to_members(&frame, None),
                                    DeleteScope::Me => act.core.push_frame(
                                        &[&r.by_user],
                                        &frame,
                                        Some(&m.device_id),
                                    ),
                                }
                                let _ = m.reply.send(Ok(ack));
                            }
                            Err(e) => {
                                let _ = m.reply.send(Err(e.into()));
                            }
                        }),
                    );
                }),
        );
    }
}

impl Handler<Typing> for ConvActor {
    type Result = ();
    fn handle(&mut self, m: Typing, _: &mut Context<Self>) {
        if self.member(&m.user_id).is_err() {
            return;
        }
        let frame: ByteString = ServerFrame::Typing {
            conversation_id: self.id.to_string(),
            user_id: m.user_id.clone(),
        }
        .to_json()
        .into();
        self.push_to_members(&frame, Some(&m.user_id));
    }
}

impl Handler<AddMembers> for ConvActor {
    type Result = ();
    fn handle(&mut self, m: AddMembers, ctx: &mut Context<Self>) {
        self.last_activity = Instant::now();
        let check = (|| {
            let member = self.member(&m.by)?;
            let st = self.state()?;
            if st.row.kind != ConversationKind::Group {
                return Err(ApiError::bad_request("members can be added to groups only"));
            }
            if member.role != Role::Admin {
                return Err(ApiError::forbidden("only a group admin may add members"));
            }
            let new: Vec<String> = m
                .user_ids
                .iter()
                .filter(|u| !st.members.iter().any(|x| &x.user_id == *u))
                .cloned()
                .collect();
            if st.members.len() + new.len() > self.core.config.limits.max_group_members {
                return Err(ApiError::too_large(format!(
                    "a group has at most {} members",
                    self.core.config.limits.max_group_members
                )));
            }
            Ok((new, st.last_seq))
        })();
        let (new, joined) = match check {
            Ok(v) => v,
            Err(e) => {
                let _ = m.reply.send(Err(e));
                return;
            }
        };
        let core = self.core.clone();
        let id = self.id.clone();
        let to_add = new.clone();
        ctx.wait(
            async move {
                for u in &to_add {
                    if core.store.user_by_id(u).await?.is_none() {
                        return Err(ApiError::not_found(format!("no such user: {u}")));
                    }
                }
                if !to_add.is_empty() {
                    core.store.add_members(&id, to_add, joined).await?;
                }
                Ok(())
            }
            .into_actor(self)
            .map(move |res: Result<(), ApiError>, act, _| {
                if let Err(e) = res {
                    let _ = m.reply.send(Err(e));
                    return;
                }
                let Some(st) = act.state_mut() else { return };
                for u in &new {
                    st.members.push(MemberRow {
                        user_id: u.clone(),
                        role: Role::Member,
                        joined_seq: joined,
                        delivered_seq: joined,
                        read_seq: joined,
                    });
                }
                let conv = Arc::new(describe(st));
                if !new.is_empty() {
                    act.core.announce(
                        &conv.members,
                        ConversationEvent::MemberAdded,
                        conv.clone(),
                        &[],
                    );
                }
                let _ = m.reply.send(Ok((*conv).clone()));
            }),
        );
    }
}

impl Handler<RemoveMember> for ConvActor {
    type Result = ();
    fn handle(&mut self, m: RemoveMember, ctx: &mut Context<Self>) {
        self.last_activity = Instant::now();
        let check = (|| {
            let by = self.member(&m.by)?;
            let st = self.state()?;
            if st.row.kind != ConversationKind::Group {
                return Err(ApiError::bad_request(
                    "members can be removed from groups only",
                ));
            }
            if m.by != m.user_id && by.role != Role::Admin {
                return Err(ApiError::forbidden(
                    "only a group admin may remove other members",
                ));
            }
            if !st.members.iter().any(|x| x.user_id == m.user_id) {
                return Err(ApiError::not_found("not a member"));
            }
            Ok(())
        })();
        if let Err(e) = check {
            let _ = m.reply.send(Err(e));
            return;
        }
        let core = self.core.clone();
        let id = self.id.clone();
        let user = m.user_id.clone();
        ctx.wait(
            async move { core.store.remove_member(&id, &user).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    if let Err(e) = res {
                        let _ = m.reply.send(Err(e.into()));
                        return;
                    }
                    let Some(st) = act.state_mut() else { return };
                    st.members.retain(|x| x.user_id != m.user_id);
                    let conv = Arc::new(describe(st));
                    act.core.announce(
                        &conv.members,
                        ConversationEvent::MemberRemoved,
                        conv.clone(),
                        std::slice::from_ref(&m.user_id),
                    );
                    let _ = m.reply.send(Ok(()));
                }),
        );
    }
}

impl Handler<Relinquish> for ConvActor {
    type Result = ();
    fn handle(&mut self, _: Relinquish, ctx: &mut Context<Self>) {
        // New requests (if any still reach this node) start a fresh actor that reloads from
        // storage; this one stops once its commit in flight has answered its senders.
        self.core.conversations.remove_if(&self.id, &ctx.address());
        self.relinquished = true;
        self.flush(ctx);
    }
}

/// Hands one committed message to the sessions on this node of `members`, except the sending
/// device (it gets the ack). `carbon` builds the frame for the sender's other devices; it is
/// called at most once, and only if one of them is here.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fan_out_local<'a>(
    hub: &Hub,
    conversation_id: &Arc<str>,
    members: impl Iterator<Item = &'a str>,
    seq: u64,
    sender_id: &str,
    sender_device_id: &str,
    plain: &ByteString,
    carbon: &mut dyn FnMut() -> ByteString,
) {
    let mut carbon_frame: Option<ByteString> = None;
    for member in members {
        let own = member == sender_id;
        hub.push_user(member, |h| {
            if own && *h.device_id == *sender_device_id {
                return None;
            }
            let frame = if own {
                carbon_frame.get_or_insert_with(&mut *carbon).clone()
            } else {
                plain.clone()
            };
            Some(Push::Message {
                conversation_id: conversation_id.clone(),
                seq,
                frame,
            })
        });
    }
}

/// A request a session or handler may send to a conversation, wherever its owner runs.
pub trait Routed: Message<Result = ()> + Send + 'static {
    /// The node-to-node form, and who waits for the answer.
    fn into_request(self) -> (Request, Waiter);
}

impl Routed for Submit {
    fn into_request(self) -> (Request, Waiter) {
        let req = Request::Submit {
            user_id: self.user_id,
            device_id: self.device_id,
            client_id: self.client_id,
            text: self.text,
            attachments: serde_json::to_string(&self.attachments).unwrap_or_else(|_| "[]".into()),
            meta: self.meta,
        };
        (req, Waiter::Ack(self.reply))
    }
}

impl Routed for Cursor {
    fn into_request(self) -> (Request, Waiter) {
        let req = Request::Cursor {
            user_id: self.user_id,
            device_id: self.device_id,
            read: self.kind == ReceiptKind::Read,
            seq: self.seq,
        };
        (req, Waiter::None)
    }
}

impl Routed for Delete {
    fn into_request(self) -> (Request, Waiter) {
        let req = Request::Delete {
            user_id: self.user_id,
            device_id: self.device_id,
            id: self.id,
            seq: self.seq,
            everyone: self.scope == DeleteScope::Everyone,
        };
        (req, Waiter::Ack(self.reply))
    }
}

impl Routed for Typing {
    fn into_request(self) -> (Request, Waiter) {
        (
            Request::Typing {
                user_id: self.user_id,
            },
            Waiter::None,
        )
    }
}

impl Routed for AddMembers {
    fn into_request(self) -> (Request, Waiter) {
        let req = Request::AddMembers {
            by: self.by,
            user_ids: self.user_ids,
        };
        (req, Waiter::Conversation(self.reply))
    }
}

impl Routed for RemoveMember {
    fn into_request(self) -> (Request, Waiter) {
        let req = Request::RemoveMember {
            by: self.by,
            user_id: self.user_id,
        };
        (req, Waiter::Unit(self.reply))
    }
}

/// Sends `msg` to the conversation's actor: on this node if it owns the conversation,
/// otherwise forwarded to the owner node, whose answer comes back on the same reply channel.
pub fn deliver<M>(core: &Arc<Core>, conversation_id: &str, msg: M)
where
    M: Routed,
    ConvActor: Handler<M>,
{
    if let Some(node) = core.cluster.remote_owner(conversation_id) {
        let (req, waiter) = msg.into_request();
        core.cluster.forward(&node, conversation_id, req, waiter);
        return;
    }
    deliver_local(core, conversation_id, msg);
}

/// Runs a request forwarded by another node (which believes this node owns the conversation;
/// if the views differ for a moment, the store's conditional append still keeps seq unique).
pub(crate) fn serve_forwarded(
    core: &Arc<Core>,
    from: &str,
    req_id: u64,
    conversation_id: &str,
    body: Request,
) {
    match body {
        Request::Submit {
            user_id,
            device_id,
            client_id,
            text,
            attachments,
            meta,
        } => {
            let (tx, rx) = oneshot::channel();
            let attachments = serde_json::from_str(&attachments).unwrap_or_default();
            let m = Submit {
                user_id,
                device_id,
                client_id,
                text,
                attachments,
                meta,
                arrived: Instant::now(),
                reply: tx,
            };
            deliver_local(core, conversation_id, m);
            super::cluster::answer(core, from, req_id, rx);
        }
        Request::Cursor {
            user_id,
            device_id,
            read,
            seq,
        } => {
            let kind = if read {
                ReceiptKind::Read
            } else {
                ReceiptKind::Delivered
            };
            let m = Cursor {
                user_id,
                device_id,
                kind,
                seq,
            };
            deliver_local(core, conversation_id, m);
        }
        Request::Delete {
            user_id,
            device_id,
            id,
            seq,
            everyone,
        } => {
            let (tx, rx) = oneshot::channel();
            let scope = if everyone {
                DeleteScope::Everyone
            } else {
                DeleteScope::Me
            };
            let m = Delete {
                user_id,
                device_id,
                id,
                seq,
                scope,
                reply: tx,
            };
            deliver_local(core, conversation_id, m);
            super::cluster::answer(core, from, req_id, rx);
        }
        Request::Typing { user_id } => deliver_local(core, conversation_id, Typing { user_id }),
        Request::AddMembers { by, user_ids } => {
            let (tx, rx) = oneshot::channel();
            let m = AddMembers {
                by,
                user_ids,
                reply: tx,
            };
            deliver_local(core, conversation_id, m);
            super::cluster::answer(core, from, req_id, rx);
        }
        Request::RemoveMember { by, user_id } => {
            let (tx, rx) = oneshot::channel();
            let m = RemoveMember {
                by,
                user_id,
                reply: tx,
            };
            deliver_local(core, conversation_id, m);
            super::cluster::answer(core, from, req_id, rx);
        }
    }
}

/// Sends `msg` to this node's actor of the conversation, restarting the actor once if it had
/// just stopped.
fn deliver_local<M>(core: &Arc<Core>, conversation_id: &str, msg: M)
where
    M: Message<Result = ()> + Send + 'static,
    ConvActor: Handler<M>,
{
    // A closed mailbox means the actor just stopped (idle): the registry starts a fresh one.
    // A full one stays full for a retry, so the message is dropped and its reply channel with
    // it: the caller answers `unavailable` and the client retries (sends are idempotent).
    let addr = core.conversations.get(core, conversation_id);
    let retry = match addr.try_send(msg) {
        Ok(()) => return,
        Err(SendError::Closed(msg)) => msg,
        Err(SendError::Full(_)) => {
            tracing::warn!(
                conversation = conversation_id,
                "conversation actor mailbox full"
            );
            return;
        }
    };
    if core
        .conversations
        .get(core, conversation_id)
        .try_send(retry)
        .is_err()
    {
        tracing::warn!(
            conversation = conversation_id,
            "conversation actor unavailable"
        );
    }
}
