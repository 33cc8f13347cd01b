//! The session actor: one per connected device, owner of its WebSocket.
//!
//! It exists to keep each device's view consistent: per conversation it remembers the highest
//! seq it has pushed (`pushed`) and pushes a live message only if it is the next one. A live
//! message that shows a gap (the device is behind, or a push was dropped) starts a catch-up
//! from storage, so a device always receives a conversation in seq order without duplicates,
//! and the server, not the client, repairs gaps.
//!
//! Slow-consumer policy: outbound frames go through a bounded queue. A burst (a committed
//! batch of 500 acks, a group's fan-out) may fill it for a moment while the socket drains, so
//! the session counts as a slow consumer only when the queue holds more than
//! `limits.outbound_queue` frames *and* the socket has accepted nothing for
//! `limits.slow_consumer_grace_ms`; at eight times the bound it counts at once. A slow consumer
//! is closed with 4429 and its queue dropped. Nothing is lost: every message is in storage,
//! and the device's delivered cursor moves only when it reports `received`, so it resumes
//! with `sync` after reconnecting.

use super::conversation::{self, Cursor, Delete, Submit, Typing};
use super::{now_ms, Core, Push, SessionHandle};
use crate::auth::Claims;
use crate::error::ApiError;
use crate::storage::{DeviceConversation, Order, StoreError, StoredMessage};
use actix::prelude::*;
use actix_ws::{CloseCode, CloseReason, Message as WsMessage, ProtocolError};
use bytestring::ByteString;
use futures_util::FutureExt;
use parley_protocol::{
    close, Ack, Attachment, ClientFrame, ConversationCursor, ConversationEvent, DeleteScope,
    ErrorCode, Message as WireMessage, ReceiptKind, SendFrame, ServerFrame,
};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

struct Ident {
    user_id: Arc<str>,
    device_id: Arc<str>,
}

#[derive(Default, Clone)]
struct ConvPos {
    /// Highest seq this session has handed to the device, in order.
    pushed: u64,
    /// Highest seq known to exist.
    latest: u64,
    catching_up: bool,
    joined: u64,
    read: u64,
    /// Retraction log position stored for the device, and the highest event sent since.
    retraction_cursor: u64,
    retraction_sent: u64,
}

impl ConvPos {
    /// A conversation as storage knows it for this device, before this session pushed anything.
    fn from_device(dc: &DeviceConversation) -> ConvPos {
        ConvPos {
            pushed: dc.delivered_seq,
            latest: dc.last_seq,
            catching_up: false,
            joined: dc.joined_seq,
            read: dc.read_seq,
            retraction_cursor: dc.retraction_cursor,
            retraction_sent: dc.retraction_cursor,
        }
    }
}

enum Out {
    Frame(ByteString),
    Close(u16, &'static str),
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// What the upgrade request's Authorization header said.
pub enum PreAuth {
    /// No header: the first frame must be `auth`, within `auth.auth_timeout_ms`.
    None,
    Valid(Claims),
    /// A header with a bad or expired token: close with 4401.
    Invalid,
}

pub struct SessionActor {
    core: Arc<Core>,
    ws: actix_ws::Session,
    session_id: Arc<str>,
    pre_auth: PreAuth,
    ident: Option<Ident>,
    convs: HashMap<Arc<str>, ConvPos>,
    outq: VecDeque<Out>,
    writing: bool,
    /// When the socket last accepted a frame (or the queue was last empty).
    last_progress: Instant,
    closing: bool,
    last_heard: Instant,
    bucket: Bucket,
    strikes: u32,
    typing: HashMap<Arc<str>, Instant>,
    missed: Arc<AtomicBool>,
    refreshing: bool,
    refresh_again: bool,
}

impl SessionActor {
    pub fn new(core: Arc<Core>, ws: actix_ws::Session, pre_auth: PreAuth) -> Self {
        let burst = core.config.limits.rate_burst as f64;
        SessionActor {
            core,
            ws,
            session_id: Arc::from(super::new_id()),
            pre_auth,
            ident: None,
            convs: HashMap::new(),
            outq: VecDeque::new(),
            writing: false,
            last_progress: Instant::now(),
            closing: false,
            last_heard: Instant::now(),
            bucket: Bucket {
                tokens: burst,
                last: Instant::now(),
            },
            strikes: 0,
            typing: HashMap::new(),
            missed: Arc::new(AtomicBool::new(false)),
            refreshing: false,
            refresh_again: false,
        }
    }

    // ---- outbound

    fn send_frame(&mut self, frame: &ServerFrame, ctx: &mut Context<Self>) {
        self.enqueue(frame.to_json().into(), ctx);
    }

    fn send_error(&mut self, id: Option<String>, e: ApiError, ctx: &mut Context<Self>) {
        self.send_frame(&ServerFrame::error(id, e.code, e.message), ctx);
    }

    /// Queues a frame, applying the slow-consumer rule (see the module docs).
    fn enqueue(&mut self, frame: ByteString, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        if self.close_if_slow(ctx) {
            return;
        }
        self.core.metrics.frames_out.inc();
        self.outq.push_back(Out::Frame(frame));
        self.flush(ctx);
    }

    /// The slow-consumer rule (see the module docs). Applied when a frame is queued, and
    /// `slow_consumer_grace_ms` after the socket pushes back, so that a device that stalls
    /// after the last frame of a burst is judged too.
    fn close_if_slow(&mut self, ctx: &mut Context<Self>) -> bool {
        let l = &self.core.config.limits;
        let stalled = self.writing
            && self.last_progress.elapsed() >= Duration::from_millis(l.slow_consumer_grace_ms);
        let len = self.outq.len();
        if len >= l.outbound_queue * 8 || (len >= l.outbound_queue && stalled) {
            self.core.metrics.slow_consumers.inc();
            tracing::info!(session = %self.session_id, "slow consumer: closing with 4429");
            self.close_now(close::TOO_SLOW, "too slow: reconnect and sync", ctx);
            return true;
        }
        false
    }

    /// Moves queued frames into the socket until it pushes back, then waits for room.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.writing {
            return;
        }
        while let Some(out) = self.outq.pop_front() {
            match out {
                Out::Frame(f) => match self.ws.text(f.clone()).now_or_never() {
                    Some(Ok(())) => self.last_progress = Instant::now(),
                    Some(Err(_)) => {
                        ctx.stop();
                        return;
                    }
                    None => {
                        self.writing = true;
                        let grace =
                            Duration::from_millis(self.core.config.limits.slow_consumer_grace_ms);
                        ctx.run_later(grace, |act, ctx| {
                            act.close_if_slow(ctx);
                        });
                        let mut ws = self.ws.clone();
                        ctx.spawn(async move { ws.text(f).await }.into_actor(self).map(
                            |r, act, ctx| {
                                act.writing = false;
                                act.last_progress = Instant::now();
                                if r.is_err() {
                                    ctx.stop();
                                } else {
                                    act.flush(ctx);
                                }
                            },
                        ));
                        return;
                    }
                },
                Out::Close(code, reason) => {
                    self.close_now(code, reason, ctx);
                    return;
                }
            }
        }
    }

    /// Closes after what is queued has been written.
    fn close_after_flush(&mut self, code: u16, reason: &'static str, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.outq.push_back(Out::Close(code, reason));
        self.flush(ctx);
    }

    /// Closes now, dropping what is queued. The close frame still has to get past frames the
    /// socket already holds (a slow consumer's are many), so the session stays open after
    /// sending it until the peer answers with its own close (the WebSocket closing handshake)
    /// or for as long as a silent peer is tolerated; stopping at once would let the connection
    /// drop with the close frame still unsent.
    fn close_now(&mut self, code: u16, reason: &'static str, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.outq.clear();
        let wait = Duration::from_millis(self.core.config.gateway.heartbeat_timeout_ms);
        let ws = self.ws.clone();
        let reason = CloseReason {
            code: CloseCode::from(code),
            description: Some(reason.to_string()),
        };
        ctx.spawn(
            async move {
                let _ = tokio::time::timeout(wait, ws.close(Some(reason))).await;
            }
            .into_actor(self)
            .map(move |_, _, ctx| {
                ctx.run_later(wait, |_, ctx| ctx.stop());
            }),
        );
    }

    // ---- authentication

    fn authenticate(&mut self, claims: Claims, ctx: &mut Context<Self>) {
        let core = self.core.clone();
        let (user, device) = (claims.sub.clone(), claims.did.clone());
        ctx.wait(
            async move {
                match core.store.device(&device).await? {
                    Some(d) if d.user_id == user => {}
                    _ => return Err(StoreError::NotFound),
                }
                core.store.device_conversations(&device, &user).await
            }
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok(dcs) => {
                    let ident = Ident {
                        user_id: Arc::from(claims.sub.as_str()),
                        device_id: Arc::from(claims.did.as_str()),
                    };
                    let mut cursors = Vec::with_capacity(dcs.len());
                    for dc in dcs {
                        cursors.push(ConversationCursor {
                            conversation_id: dc.conversation_id.clone(),
                            last_seq: dc.last_seq,
                            delivered_seq: dc.delivered_seq,
                            read_seq: dc.read_seq,
                        });
                        act.convs.insert(
                            Arc::from(dc.conversation_id.as_str()),
                            ConvPos::from_device(&dc),
                        );
                    }
                    let handle = SessionHandle {
                        session_id: act.session_id.clone(),
                        device_id: ident.device_id.clone(),
                        addr: ctx.address(),
                        missed: act.missed.clone(),
                    };
                    let first = act.core.hub.register(ident.user_id.clone(), handle);
                    if first {
                        act.core.cluster.user_online(&ident.user_id);
                    }
                    act.core.metrics.connections.inc();
                    act.send_frame(
                        &ServerFrame::Ready {
                            user_id: claims.sub.clone(),
                            device_id: claims.did.clone(),
                            session_id: act.session_id.to_string(),
                            heartbeat_ms: act.core.config.gateway.heartbeat_ms,
                            conversations: cursors,
                        },
                        ctx,
                    );
                    act.ident = Some(ident);
                    act.presence(first, ctx);
                }
                Err(StoreError::NotFound) => act.close_now(close::BAD_TOKEN, "unknown device", ctx),
                Err(e) => {
                    tracing::warn!(error = %e, "session setup failed");
                    act.close_now(close::RESTARTING, "temporarily unavailable", ctx);
                }
            }),
        );
    }

    /// Tells contacts this user came online (if `first`), and tells this device which of its
    /// contacts are online.
    fn presence(&mut self, first: bool, ctx: &mut Context<Self>) {
        let Some(me) = self.ident.as_ref().map(|i| i.user_id.clone()) else {
            return;
        };
        let core = self.core.clone();
        ctx.spawn(
            async move {
                let contacts = core.store.contacts_of_user(&me).await?;
                let elsewhere = core.cluster.online_elsewhere(&contacts).await;
                Ok::<_, StoreError>((contacts, elsewhere, me))
            }
            .into_actor(self)
            .map(move |res, act, ctx| {
                let (contacts, elsewhere, me) = match res {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(error = %e, "presence: contacts lookup failed");
                        return;
                    }
                };
                if first {
                    let frame: ByteString = ServerFrame::Presence {
                        user_id: me.to_string(),
                        online: true,
                        last_seen: None,
                    }
                    .to_json()
                    .into();
                    act.core.push_frame(&contacts, &frame, None);
                }
                for (c, elsewhere) in contacts.into_iter().zip(elsewhere) {
                    if elsewhere || act.core.hub.is_online(&c) {
                        act.send_frame(
                            &ServerFrame::Presence {
                                user_id: c,
                                online: true,
                                last_seen: None,
                            },
                            ctx,
                        );
                    }
                }
            }),
        );
    }

    // ---- inbound

    fn allow(&mut self) -> bool {
        let l = &self.core.config.limits;
        let now = Instant::now();
        let dt = now.duration_since(self.bucket.last).as_secs_f64();
        self.bucket.last = now;
        self.bucket.tokens =
            (self.bucket.tokens + dt * l.rate_per_sec as f64).min(l.rate_burst as f64);
        if self.bucket.tokens >= 1.0 {
            self.bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        self.core.metrics.frames_in.inc();
        if self.closing {
            return; // frames that crossed our close frame are not served
        }
        let frame: ClientFrame = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                if self.ident.is_none() {
                    self.close_now(close::BAD_TOKEN, "authenticate first", ctx);
                    return;
                }
                let id = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(String::from));
                self.send_error(
                    id,
                    ApiError::bad_request(format!("malformed frame: {e}")),
                    ctx,
                );
                return;
            }
        };
        if !self.allow() {
            self.strikes += 1;
            self.core.metrics.rate_limited.inc();
            if self.strikes >= self.core.config.limits.rate_strikes {
                self.close_now(close::TOO_SLOW, "rate limit exceeded", ctx);
            } else {
                self.send_error(
                    frame_id(&frame),
                    ApiError::new(ErrorCode::RateLimited, "slow down"),
                    ctx,
                );
            }
            return;
        }
        self.strikes = 0;
        let Some(ident) = &self.ident else {
            match frame {
                ClientFrame::Auth { token } => match self.core.auth.verify(&token) {
                    Some(claims) => self.authenticate(claims, ctx),
                    None => self.close_now(close::BAD_TOKEN, "bad or expired token", ctx),
                },
                _ => self.close_now(close::BAD_TOKEN, "authenticate first", ctx),
            }
            return;
        };
        let (user, device) = (ident.user_id.clone(), ident.device_id.clone());
        match frame {
            ClientFrame::Auth { .. } => {
                self.send_error(None, ApiError::bad_request("already authenticated"), ctx)
            }
            ClientFrame::Send(f) => self.on_send(f, user, device, ctx),
            ClientFrame::Received {
                conversation_id,
                seq,
            } => self.on_cursor(
                conversation_id,
                seq,
                ReceiptKind::Delivered,
                user,
                device,
                ctx,
            ),
            ClientFrame::Read {
                conversation_id,
                seq,
            } => self.on_cursor(conversation_id, seq, ReceiptKind::Read, user, device, ctx),
            ClientFrame::Sync { id, limit } => self.on_sync(id, limit, user, device, ctx),
            ClientFrame::History {
                id,
                conversation_id,
                before_seq,
                limit,
            } => self.on_history(id, conversation_id, before_seq, limit, user, ctx),
            ClientFrame::Delete {
                id,
                conversation_id,
                seq,
                scope,
            } => self.on_delete(id, conversation_id, seq, scope, user, device, ctx),
            ClientFrame::Typing { conversation_id } => self.on_typing(conversation_id, user, ctx),
        }
    }

    fn validate_send(&self, f: &SendFrame) -> Result<Option<String>, ApiError> {
        let l = &self.core.config.limits;
        if f.id.is_empty() || f.id.len() > l.max_client_id_bytes {
            return Err(ApiError::bad_request(format!(
                "id must be 1..{} bytes",
                l.max_client_id_bytes
            )));
        }
        if f.conversation_id.is_some() == f.to.is_some() {
            return Err(ApiError::bad_request(
                "give exactly one of conversation_id and to",
            ));
        }
        if f.text.as_ref().is_some_and(|t| t.len() > l.max_text_bytes) {
            return Err(ApiError::too_large(format!(
                "text is over {} bytes",
                l.max_text_bytes
            )));
        }
        if f.attachments.len() > l.max_attachments {
            return Err(ApiError::too_large(format!(
                "at most {} attachments",
                l.max_attachments
            )));
        }
        if f.text.as_deref().unwrap_or("").is_empty() && f.attachments.is_empty() {
            return Err(ApiError::bad_request("a message needs text or attachments"));
        }
        match &f.meta {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v @ serde_json::Value::Object(_)) => {
                let s = v.to_string();
                if s.len() > l.max_meta_bytes {
                    return Err(ApiError::too_large(format!(
                        "meta is over {} bytes",
                        l.max_meta_bytes
                    )));
                }
                Ok(Some(s))
            }
            Some(_) => Err(ApiError::bad_request("meta must be a JSON object")),
        }
    }

    fn on_send(&mut self, f: SendFrame, user: Arc<str>, device: Arc<str>, ctx: &mut Context<Self>) {
        let arrived = Instant::now();
        let meta = match self.validate_send(&f) {
            Ok(m) => m,
            Err(e) => return self.send_error(Some(f.id), e, ctx),
        };
        let core = self.core.clone();
        let id = f.id.clone();
        ctx.spawn(
            async move {
                let conv_id = match (&f.conversation_id, &f.to) {
                    (Some(c), _) => c.clone(),
                    (None, Some(to)) => core.ensure_direct(&user, to).await?.0,
                    (None, None) => unreachable!("validated"),
                };
                let mut attachments: Vec<Attachment> = Vec::with_capacity(f.attachments.len());
                for a in &f.attachments {
                    match core.store.file(&a.file_id).await? {
                        Some(row) if row.uploader_id == *user => attachments.push(Attachment {
                            file_id: row.file_id,
                            size: row.size,
                            content_type: row.content_type,
                            sha256: row.sha256,
                        }),
                        Some(_) => {
                            return Err(ApiError::forbidden(
                                "you may attach only files you uploaded",
                            ))
                        }
                        None => {
                            return Err(ApiError::not_found(format!("no such file: {}", a.file_id)))
                        }
                    }
                }
                let (tx, rx) = oneshot::channel();
                conversation::deliver(
                    &core,
                    &conv_id,
                    Submit {
                        user_id: user.to_string(),
                        device_id: device.to_string(),
                        client_id: f.id,
                        text: f.text,
                        attachments,
                        meta,
                        arrived,
                        reply: tx,
                    },
                );
                rx.await
                    .map_err(|_| ApiError::unavailable("conversation restarted, retry"))?
            }
            .into_actor(self)
            .map(move |res: Result<Ack, ApiError>, act, ctx| match res {
                Ok(ack) => {
                    // The ack stands for the message on the sending device.
                    if let Some(pos) = act.convs.get_mut(ack.conversation_id.as_str()) {
                        if ack.seq == pos.pushed + 1 {
                            pos.pushed = ack.seq;
                        }
                        pos.latest = pos.latest.max(ack.seq);
                    }
                    act.send_frame(&ServerFrame::Ack(ack), ctx);
                }
                Err(e) => act.send_error(Some(id), e, ctx),
            }),
        );
    }

    fn on_cursor(
        &mut self,
        conversation_id: String,
        seq: u64,
        kind: ReceiptKind,
        user: Arc<str>,
        device: Arc<str>,
        ctx: &mut Context<Self>,
    ) {
        let Some(pos) = self.convs.get_mut(conversation_id.as_str()) else {
            return self.send_error(
                None,
                ApiError::forbidden("not a member of this conversation"),
                ctx,
            );
        };
        pos.pushed = pos.pushed.max(seq.min(pos.latest));
        if kind == ReceiptKind::Read {
            pos.read = pos.read.max(seq);
        }
        self.commit_retractions(Some(&conversation_id), &device);
        conversation::deliver(
            &self.core,
            &conversation_id,
            Cursor {
                user_id: user.to_string(),
                device_id: device.to_string(),
                kind,
                seq,
            },
        );
    }

    /// Stores the retraction-log position that earlier sync pages reached (the client has
    /// moved on, so it processed them).
    fn commit_retractions(&mut self, only: Option<&str>, device: &Arc<str>) {
        let mut updates = Vec::new();
        for (conv, pos) in self.convs.iter_mut() {
            if only.is_some_and(|o| o != &**conv) || pos.retraction_sent <= pos.retraction_cursor {
                continue;
            }
            pos.retraction_cursor = pos.retraction_sent;
            updates.push(crate::storage::CursorUpdate::DeviceRetractions {
                device_id: device.to_string(),
                conversation_id: conv.to_string(),
                event_no: pos.retraction_sent,
            });
        }
        if !updates.is_empty() {
            let core = self.core.clone();
            actix::spawn(async move {
                if let Err(e) = core.store.advance_cursors(updates).await {
                    tracing::warn!(error = %e, "retraction cursor update failed");
                }
            });
        }
    }

    fn on_sync(
        &mut self,
        id: String,
        limit: Option<u32>,
        user: Arc<str>,
        device: Arc<str>,
        ctx: &mut Context<Self>,
    ) {
        self.commit_retractions(None, &device);
        let l = &self.core.config.limits;
        let limit = limit.unwrap_or(l.default_page).clamp(1, l.max_page);
        let snapshot: HashMap<Arc<str>, ConvPos> = self.convs.clone();
        let core = self.core.clone();
        // `wait`: no live push interleaves with a page, so `pushed` stays exact.
        ctx.wait(
            async move { sync_page(&core, &user, &device, snapshot, limit).await }
                .into_actor(self)
                .map(move |res, act, ctx| match res {
                    Ok(page) => {
                        for (conv, pos) in page.positions {
                            let e = act.convs.entry(conv).or_default();
                            let catching = e.catching_up;
                            *e = ConvPos {
                                catching_up: catching,
                                ..pos
                            };
                        }
                        for f in page.frames {
                            act.enqueue(f, ctx);
                        }
                        act.send_frame(
                            &ServerFrame::Synced {
                                id,
                                more: page.more,
                            },
                            ctx,
                        );
                    }
                    Err(e) => act.send_error(Some(id), e, ctx),
                }),
        );
    }

    fn on_history(
        &mut self,
        id: String,
        conversation_id: String,
        before_seq: Option<u64>,
        limit: Option<u32>,
        user: Arc<str>,
        ctx: &mut Context<Self>,
    ) {
        let Some(pos) = self.convs.get(conversation_id.as_str()) else {
            return self.send_error(
                Some(id),
                ApiError::forbidden("not a member of this conversation"),
                ctx,
            );
        };
        let l = &self.core.config.limits;
        let limit = limit.unwrap_or(l.default_page).clamp(1, l.max_page);
        let joined = pos.joined;
        let core = self.core.clone();
        ctx.spawn(
            async move {
                let before = before_seq.unwrap_or(u64::MAX);
                message_page(
                    &core,
                    &user,
                    &conversation_id,
                    joined,
                    before,
                    limit,
                    Order::Desc,
                )
                .await
                .map(|m| (conversation_id, m))
            }
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok((conversation_id, messages)) => act.send_frame(
                    &ServerFrame::History {
                        id,
                        conversation_id,
                        messages,
                    },
                    ctx,
                ),
                Err(e) => act.send_error(Some(id), e.into(), ctx),
            }),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn on_delete(
        &mut self,
        id: String,
        conversation_id: String,
        seq: u64,
        scope: DeleteScope,
        user: Arc<str>,
        device: Arc<str>,
        ctx: &mut Context<Self>,
    ) {
        let core = self.core.clone();
        let rid = id.clone();
        ctx.spawn(
            async move {
                let (tx, rx) = oneshot::channel();
                conversation::deliver(
                    &core,
                    &conversation_id,
                    Delete {
                        user_id: user.to_string(),
                        device_id: device.to_string(),
                        id,
                        seq,
                        scope,
                        reply: tx,
                    },
                );
                rx.await
                    .map_err(|_| ApiError::unavailable("conversation restarted, retry"))?
            }
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok(ack) => act.send_frame(&ServerFrame::Ack(ack), ctx),
                Err(e) => act.send_error(Some(rid), e, ctx),
            }),
        );
    }

    fn on_typing(&mut self, conversation_id: String, user: Arc<str>, ctx: &mut Context<Self>) {
        let Some((key, _)) = self.convs.get_key_value(conversation_id.as_str()) else {
            return self.send_error(
                None,
                ApiError::forbidden("not a member of this conversation"),
                ctx,
            );
        };
        let key = key.clone();
        let every = Duration::from_millis(self.core.config.limits.typing_interval_ms);
        if self.typing.get(&key).is_some_and(|t| t.elapsed() < every) {
            return; // relayed at most once per interval; extra frames are dropped
        }
        self.typing.insert(key, Instant::now());
        conversation::deliver(
            &self.core,
            &conversation_id,
            Typing {
                user_id: user.to_string(),
            },
        );
    }

    // ---- gap repair

    /// Fetches what follows `pushed` in one conversation and pushes it in order.
    fn catch_up(&mut self, conv: Arc<str>, ctx: &mut Context<Self>) {
        let Some(user) = self.ident.as_ref().map(|i| i.user_id.clone()) else {
            return;
        };
        let Some(pos) = self.convs.get_mut(&conv) else {
            return;
        };
        if pos.catching_up || pos.latest <= pos.pushed {
            return;
        }
        pos.catching_up = true;
        let after = pos.pushed;
        let page = self.core.config.limits.default_page;
        let core = self.core.clone();
        let c = conv.clone();
        ctx.spawn(
            async move { owed_frames(&core, &user, &c, after, page).await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    let Some(pos) = act.convs.get_mut(&conv) else {
                        return;
                    };
                    pos.catching_up = false;
                    let items = match res {
                        Ok(items) => items,
                        Err(e) => {
                            tracing::warn!(error = %e, "catch-up failed");
                            return;
                        }
                    };
                    let progressed = !items.is_empty();
                    let mut frames = Vec::new();
                    for (seq, frame) in items {
                        if seq == pos.pushed + 1 {
                            pos.pushed = seq;
                            frames.extend(frame);
                        }
                    }
                    for f in frames {
                        act.enqueue(f, ctx);
                    }
                    if progressed {
                        act.catch_up(conv, ctx);
                    }
                }),
        );
    }

    /// Re-reads every conversation's end from storage and repairs any gap (after a dropped
    /// push, or a push for a conversation this session did not know yet).
    fn refresh(&mut self, ctx: &mut Context<Self>) {
        let Some(ident) = &self.ident else { return };
        if self.refreshing {
            // The read in flight may predate what made this refresh necessary.
            self.refresh_again = true;
            return;
        }
        self.refreshing = true;
        let (user, device) = (ident.user_id.clone(), ident.device_id.clone());
        let core = self.core.clone();
        ctx.spawn(
            async move { core.store.device_conversations(&device, &user).await }
                .into_actor(self)
                .map(|res, act, ctx| {
                    act.refreshing = false;
                    if std::mem::take(&mut act.refresh_again) {
                        act.refresh(ctx);
                    }
                    let Ok(dcs) = res else { return };
                    let mut behind = Vec::new();
                    for dc in dcs {
                        let key: Arc<str> = Arc::from(dc.conversation_id.as_str());
                        let pos = act
                            .convs
                            .entry(key.clone())
                            .or_insert_with(|| ConvPos::from_device(&dc));
                        pos.latest = pos.latest.max(dc.last_seq);
                        if pos.latest > pos.pushed {
                            behind.push(key);
                        }
                    }
                    for k in behind {
                        act.catch_up(k, ctx);
                    }
                }),
        );
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return; // waiting for the peer's close; `close_now` bounds the wait
        }
        let timeout = Duration::from_millis(self.core.config.gateway.heartbeat_timeout_ms);
        if self.last_heard.elapsed() > timeout {
            tracing::debug!(session = %self.session_id, "heartbeat timeout");
            ctx.stop();
            return;
        }
        if self.ws.ping(b"").now_or_never().is_some_and(|r| r.is_err()) {
            ctx.stop();
            return;
        }
        if self.missed.swap(false, Ordering::AcqRel) {
            self.refresh(ctx);
        }
    }
}

fn frame_id(f: &ClientFrame) -> Option<String> {
    match f {
        ClientFrame::Send(s) => Some(s.id.clone()),
        ClientFrame::Sync { id, .. }
        | ClientFrame::History { id, .. }
        | ClientFrame::Delete { id, .. } => Some(id.clone()),
        _ => None,
    }
}

/// The client view of a stored message; `client_id` only for the sender's own devices.
pub fn to_wire(m: StoredMessage, viewer: &str) -> WireMessage {
    let own = m.sender_id == viewer;
    WireMessage {
        conversation_id: m.conversation_id,
        seq: m.seq,
        message_id: m.message_id,
        sender_id: m.sender_id,
        sender_device_id: m.sender_device_id,
        ts: m.ts,
        text: m.text,
        attachments: m.attachments,
        meta: m.meta.as_deref().and_then(|s| serde_json::from_str(s).ok()),
        client_id: own.then_some(m.client_id),
        deleted: m.deleted,
    }
}

/// A page of messages with `after < seq < before`, returned ascending, without the ones the
/// user hid; retracted messages appear as tombstones (`deleted: true`). `Order::Desc` takes
/// the newest `limit` below `before` (history), `Order::Asc` the oldest above `after`
/// (forward paging). Callers pass the member's join seq as the lowest `after`.
pub async fn message_page(
    core: &Core,
    user: &str,
    conversation_id: &str,
    after: u64,
    before: u64,
    limit: u32,
    order: Order,
) -> Result<Vec<WireMessage>, StoreError> {
    let mut msgs = core
        .store
        .messages(conversation_id, after, before, limit, order)
        .await?;
    if order == Order::Desc {
        msgs.reverse();
    }
    let hidden = match (msgs.first(), msgs.last()) {
        (Some(a), Some(b)) => {
            core.store
                .hidden_seqs(user, conversation_id, a.seq - 1, b.seq + 1)
                .await?
        }
        _ => Vec::new(),
    };
    Ok(msgs
        .into_iter()
        .filter(|m| !hidden.contains(&m.seq))
        .map(|m| to_wire(m, user))
        .collect())
}

/// What a device is owed in one conversation after `after`: `(seq, frame)` in seq order; the
/// frame is `None` for a message the user hid (the position still advances).
async fn owed_frames(
    core: &Core,
    user: &str,
    conversation_id: &str,
    after: u64,
    limit: u32,
) -> Result<Vec<(u64, Option<ByteString>)>, StoreError> {
    let msgs = core
        .store
        .messages(conversation_id, after, u64::MAX, limit, Order::Asc)
        .await?;
    let Some(last) = msgs.last().map(|m| m.seq) else {
        return Ok(Vec::new());
    };
    let hidden = core
        .store
        .hidden_seqs(user, conversation_id, after, last + 1)
        .await?;
    Ok(msgs
        .into_iter()
        .map(|m| {
            let seq = m.seq;
            if hidden.contains(&seq) {
                return (seq, None);
            }
            let frame = if m.deleted {
                ServerFrame::Deleted {
                    conversation_id: m.conversation_id.clone(),
                    seq,
                    scope: DeleteScope::Everyone,
                    by: m.deleted_by.clone().unwrap_or_else(|| m.sender_id.clone()),
                }
            } else {
                ServerFrame::Message(to_wire(m, user))
            };
            (seq, Some(frame.to_json().into()))
        })
        .collect())
}

struct SyncPage {
    positions: Vec<(Arc<str>, ConvPos)>,
    frames: Vec<ByteString>,
    more: bool,
}

async fn sync_page(
    core: &Core,
    user: &str,
    device: &str,
    known: HashMap<Arc<str>, ConvPos>,
    limit: u32,
) -> Result<SyncPage, ApiError> {
    let dcs = core.store.device_conversations(device, user).await?;
    let mut budget = limit as usize;
    let mut page = SyncPage {
        positions: Vec::new(),
        frames: Vec::new(),
        more: false,
    };
    for dc in dcs {
        let key: Arc<str> = Arc::from(dc.conversation_id.as_str());
        let mut pos = known
            .get(&key)
            .cloned()
            .unwrap_or_else(|| ConvPos::from_device(&dc));
        pos.pushed = pos.pushed.max(dc.delivered_seq);
        pos.latest = pos.latest.max(dc.last_seq);
        pos.read = pos.read.max(dc.read_seq);
        pos.retraction_cursor = pos.retraction_cursor.max(dc.retraction_cursor);
        pos.retraction_sent = pos.retraction_sent.max(pos.retraction_cursor);
        if budget == 0 {
            page.more |= pos.latest > pos.pushed;
            page.positions.push((key, pos));
            continue;
        }
        // Retractions of messages the device already holds.
        let held = pos.pushed;
        let rs = core
            .store
            .retractions_since(
                &dc.conversation_id,
                user,
                pos.retraction_sent,
                budget as u32,
            )
            .await?;
        if rs.len() == budget {
            page.more = true;
        }
        for r in rs {
            pos.retraction_sent = r.event_no;
            if r.seq <= held {
                page.frames.push(
                    ServerFrame::Deleted {
                        conversation_id: r.conversation_id,
                        seq: r.seq,
                        scope: r.scope,
                        by: r.by_user,
                    }
                    .to_json()
                    .into(),
                );
                budget -= 1;
            }
        }
        if pos.latest > pos.pushed && budget > 0 {
            let items =
                owed_frames(core, user, &dc.conversation_id, pos.pushed, budget as u32).await?;
            for (seq, frame) in items {
                if seq != pos.pushed + 1 {
                    break;
                }
                pos.pushed = seq;
                if let Some(f) = frame {
                    page.frames.push(f);
                    budget -= 1;
                }
                if budget == 0 {
                    break;
                }
            }
        }
        page.more |= pos.latest > pos.pushed;
        page.positions.push((key, pos));
    }
    Ok(page)
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.core.config.limits.outbound_queue);
        let hb = Duration::from_millis(self.core.config.gateway.heartbeat_ms.max(10));
        // Start each session's heartbeat at a random point of the interval: connections that
        // arrive together (a reconnect storm, a load test) would otherwise ping in lockstep,
        // and 10k pings and pongs in one burst every interval showed up as a 200 ms p99.
        let phase = hb.mul_f64(rand::random::<f64>());
        ctx.run_later(phase, move |act, ctx| {
            act.heartbeat(ctx);
            ctx.run_interval(hb, |act, ctx| act.heartbeat(ctx));
        });
        match std::mem::replace(&mut self.pre_auth, PreAuth::None) {
            PreAuth::Valid(claims) => self.authenticate(claims, ctx),
            PreAuth::Invalid => self.close_now(close::BAD_TOKEN, "bad or expired token", ctx),
            PreAuth::None => {
                let deadline = Duration::from_millis(self.core.config.auth.auth_timeout_ms);
                ctx.run_later(deadline, |act, ctx| {
                    if act.ident.is_none() {
                        act.close_now(close::AUTH_TIMEOUT, "no auth frame in time", ctx);
                    }
                });
            }
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        let Some(ident) = self.ident.take() else {
            return;
        };
        self.core.metrics.connections.dec();
        if !self.core.hub.unregister(&ident.user_id, &self.session_id) {
            return;
        }
        self.core.cluster.user_offline(&ident.user_id);
        if !self.core.is_shutting_down() {
            let core = self.core.clone();
            actix::spawn(async move {
                let Ok(contacts) = core.store.contacts_of_user(&ident.user_id).await else {
                    return;
                };
                let me = [ident.user_id.to_string()];
                if core.hub.is_online(&ident.user_id) || core.cluster.online_elsewhere(&me).await[0]
                {
                    return; // came back meanwhile, or still online on another node
                }
                let frame: ByteString = ServerFrame::Presence {
                    user_id: ident.user_id.to_string(),
                    online: false,
                    last_seen: Some(core.hub.last_seen(&ident.user_id).unwrap_or_else(now_ms)),
                }
                .to_json()
                .into();
                core.push_frame(&contacts, &frame, None);
            });
        }
    }
}

impl StreamHandler<Result<WsMessage, ProtocolError>> for SessionActor {
    fn handle(&mut self, item: Result<WsMessage, ProtocolError>, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        match item {
            Ok(WsMessage::Text(t)) => self.on_text(&t, ctx),
            Ok(WsMessage::Binary(_)) | Ok(WsMessage::Continuation(_)) => {
                self.core.metrics.frames_in.inc();
                self.send_error(None, ApiError::bad_request("frames are JSON text"), ctx)
            }
            Ok(WsMessage::Ping(b)) => {
                let _ = self.ws.pong(&b).now_or_never();
            }
            Ok(WsMessage::Pong(_)) | Ok(WsMessage::Nop) => {}
            Ok(WsMessage::Close(_)) => ctx.stop(),
            Err(ProtocolError::Overflow) => {
                self.close_now(close::TOO_LARGE, "frame too large", ctx)
            }
            Err(e) => {
                tracing::debug!(error = %e, "websocket protocol error");
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Push> for SessionActor {
    type Result = ();
    fn handle(&mut self, p: Push, ctx: &mut Context<Self>) {
        // A push was refused while the mailbox was full: repair from storage now, as the
        // mailbox drains, rather than at the next heartbeat (which stays as a backstop).
        if self.missed.swap(false, Ordering::AcqRel) {
            self.refresh(ctx);
        }
        match p {
            Push::Message {
                conversation_id,
                seq,
                frame,
            } => {
                let Some(pos) = self.convs.get_mut(&conversation_id) else {
                    self.refresh(ctx);
                    return;
                };
                pos.latest = pos.latest.max(seq);
                if seq <= pos.pushed {
                    return;
                }
                if seq == pos.pushed + 1 && !pos.catching_up {
                    pos.pushed = seq;
                    self.enqueue(frame, ctx);
                } else {
                    self.catch_up(conversation_id, ctx);
                }
            }
            Push::Frame(f) => self.enqueue(f, ctx),
            Push::Conversation {
                event,
                conversation,
                frame,
            } => {
                if let Some(ident) = &self.ident {
                    let me = ident.user_id.to_string();
                    let key: Arc<str> = Arc::from(conversation.conversation_id.as_str());
                    let member = conversation.members.contains(&me);
                    // In a cluster the event crosses the bus and can land after this session
                    // loaded the conversation into `ready`: nothing new for this device.
                    if event == ConversationEvent::Created && self.convs.contains_key(&key) {
                        return;
                    }
                    match event {
                        ConversationEvent::Created | ConversationEvent::MemberAdded if member => {
                            let joined = if event == ConversationEvent::Created {
                                0
                            } else {
                                conversation.last_seq
                            };
                            self.convs.entry(key).or_insert_with(|| ConvPos {
                                pushed: joined,
                                latest: conversation.last_seq,
                                joined,
                                read: joined,
                                ..Default::default()
                            });
                        }
                        ConversationEvent::MemberRemoved if !member => {
                            self.convs.remove(&key);
                        }
                        _ => {}
                    }
                }
                self.enqueue(frame, ctx);
            }
            Push::Shutdown => self.close_after_flush(close::RESTARTING, "server restarting", ctx),
            Push::Refresh => self.refresh(ctx),
        }
    }
}
