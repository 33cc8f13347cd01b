//! The session actor: one per connected device, owner of its WebSocket.
//!
//! It exists to keep each device's view consistent: per conversation it remembers the highest
//! seq it has pushed and pushes a live message only if it is the next one; anything else
//! starts a catch-up from storage (`repair`), so a device always receives a conversation in
//! seq order without duplicates, and the server, not the client, repairs gaps.
//!
//! The parts: `connect` (authentication, `ready`, presence), `inbound` (frames from the
//! client: parsing, the rate limit, one handler per frame type), `outbound` (the bounded
//! queue to the socket and the slow-consumer rule), `repair` (gap repair, refresh and `sync`
//! pages), `events` (live events of the conversation log, held until the device has their
//! message). This file holds the state and the actor's event handlers.

mod connect;
mod events;
mod inbound;
mod outbound;
mod repair;
mod socket;

pub use connect::PreAuth;
pub use socket::{Socket, Ws};

use super::admission::SessionPermit;
use super::core::Core;
use super::hub::ToSession;
use crate::domain::reads::Position;
use actix::prelude::*;
use bytestring::ByteString;
use parley_protocol::{close, ConversationEvent};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

struct Ident {
    user_id: Arc<str>,
    device_id: Arc<str>,
}

pub struct SessionActor {
    core: Arc<Core>,
    ws: Socket,
    /// Reading the client's frames (cancelled when they can no longer be read).
    reader: Option<SpawnHandle>,
    /// This session's place in the node's admission limits (given back on drop).
    permit: SessionPermit,
    session_id: Arc<str>,
    pre_auth: PreAuth,
    ident: Option<Ident>,
    convs: HashMap<Arc<str>, Position>,
    out: outbound::Queue,
    last_heard: Instant,
    limiter: inbound::RateLimit,
    typing: HashMap<Arc<str>, Instant>,
    missed: Arc<AtomicBool>,
    refreshing: bool,
    refresh_again: bool,
    /// The client is paging with `sync` (its last page said `more`), until then: meanwhile
    /// the server does not repair gaps itself, so the client's pages stay the bound.
    paging_until: Option<Instant>,
    /// Conversations whose catch-up waits for the socket to drain before its next page.
    repair_after_drain: Vec<Arc<str>>,
    /// Live events whose message the device does not hold yet (`events`).
    held: events::HeldEvents,
}

impl SessionActor {
    pub fn new(core: Arc<Core>, ws: Socket, pre_auth: PreAuth, permit: SessionPermit) -> Self {
        let limiter = inbound::RateLimit::new(&core.config.limits);
        SessionActor {
            core,
            ws,
            reader: None,
            permit,
            session_id: Arc::from(crate::ids::new_id()),
            pre_auth,
            ident: None,
            convs: HashMap::new(),
            out: outbound::Queue::default(),
            last_heard: Instant::now(),
            limiter,
            typing: HashMap::new(),
            missed: Arc::new(AtomicBool::new(false)),
            refreshing: false,
            refresh_again: false,
            paging_until: None,
            repair_after_drain: Vec::new(),
            held: events::HeldEvents::default(),
        }
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        if self.out.closing {
            return; // waiting for the peer's close; `close_now` bounds the wait
        }
        let timeout = Duration::from_millis(self.core.config.gateway.heartbeat_timeout_ms);
        if self.last_heard.elapsed() > timeout {
            tracing::debug!(session = %self.session_id, "heartbeat timeout");
            ctx.stop();
            return;
        }
        self.ping(ctx);
        // Paging that ran out (the client stopped asking) leaves what it skipped owed: the
        // refresh repairs it, as a missed frame's does.
        let paging_ran_out = self.paging_until.is_some() && !self.paging();
        if self.missed.swap(false, Ordering::AcqRel) || paging_ran_out {
            self.refresh(ctx);
        }
    }

    /// A live message for this device: pushed if it is the next one, else a catch-up.
    fn on_message(
        &mut self,
        conversation_id: Arc<str>,
        seq: u64,
        frame: ByteString,
        ctx: &mut Context<Self>,
    ) {
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
            self.release_events(&conversation_id, ctx);
        } else {
            self.catch_up(conversation_id, ctx); // none while the client pages
        }
    }

    /// A membership change: the conversation set follows, then the client gets the frame.
    fn on_conversation(
        &mut self,
        event: ConversationEvent,
        conversation: &parley_protocol::Conversation,
        frame: ByteString,
        ctx: &mut Context<Self>,
    ) {
        if let Some(ident) = &self.ident {
            let key: Arc<str> = Arc::from(conversation.conversation_id.as_str());
            let member = conversation.members.iter().any(|m| **m == *ident.user_id);
            // In a cluster the event crosses the bus and can land after this session loaded
            // the conversation into `ready`: nothing new for this device.
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
                    self.convs
                        .entry(key)
                        .or_insert_with(|| Position::joined_at(joined, conversation.last_seq));
                }
                ConversationEvent::MemberRemoved if !member => {
                    self.convs.remove(&key);
                }
                _ => {}
            }
        }
        self.enqueue(frame, ctx);
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.core.config.limits.outbound_queue);
        if let Some(inbound) = self.ws.inbound.take() {
            self.reader = Some(ctx.add_stream(inbound));
        }
        let hb = Duration::from_millis(self.core.config.gateway.heartbeat_ms.max(10));
        // Start each session's heartbeat at a random point of the interval: connections that
        // arrive together (a reconnect storm, a load test) would otherwise ping in lockstep,
        // and 10k pings and pongs in one burst every interval showed up as a 200 ms p99.
        let phase = hb.mul_f64(rand::random::<f64>());
        ctx.run_later(phase, move |act, ctx| {
            act.heartbeat(ctx);
            ctx.run_interval(hb, |act, ctx| act.heartbeat(ctx));
        });
        self.start_auth(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.disconnected();
    }
}

impl StreamHandler<Result<WsMessage, WsError>> for SessionActor {
    fn handle(&mut self, item: Result<WsMessage, WsError>, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        match item {
            Ok(WsMessage::Text(t)) => self.on_text(&t, ctx),
            Ok(WsMessage::Binary(_)) => self.on_binary(ctx),
            // tungstenite answers pings itself.
            Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_)) => {}
            Ok(WsMessage::Close(_)) => self.peer_closed(ctx),
            Err(WsError::Capacity(_)) => {
                self.close_unread(close::TOO_LARGE, "frame too large", ctx)
            }
            Err(e) => {
                tracing::debug!(error = %e, "websocket protocol error");
                self.peer_closed(ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.peer_closed(ctx);
    }
}

impl SessionActor {
    /// The client closed, or its side of the socket ended: the session ends, unless our own
    /// close frame is still on its way (it may be what the client answered).
    fn peer_closed(&mut self, ctx: &mut Context<Self>) {
        if !self.out.close_pending() {
            return ctx.stop();
        }
        // Nothing more can come from a socket that failed or ended (and a failing one must
        // not be read in a loop): the pending close write ends the session.
        if let Some(reader) = self.reader.take() {
            ctx.cancel_future(reader);
        }
    }
}

impl Handler<ToSession> for SessionActor {
    type Result = ();
    fn handle(&mut self, m: ToSession, ctx: &mut Context<Self>) {
        // A frame was refused while the mailbox was full: repair from storage now, as the
        // mailbox drains, rather than at the next heartbeat (which stays as a backstop).
        if self.missed.swap(false, Ordering::AcqRel) {
            self.refresh(ctx);
        }
        match m {
            ToSession::Message {
                conversation_id,
                seq,
                frame,
            } => self.on_message(conversation_id, seq, frame, ctx),
            ToSession::Frame(f) => self.enqueue(f, ctx),
            ToSession::Event { event, frame } => self.on_event(event, frame, ctx),
            ToSession::Conversation {
                event,
                conversation,
                frame,
            } => self.on_conversation(event, &conversation, frame, ctx),
            ToSession::Shutdown => {
                self.close_after_flush(close::RESTARTING, "server restarting", ctx)
            }
            ToSession::Refresh => self.refresh(ctx),
            ToSession::Revoked => self.close_now(close::BAD_TOKEN, "device signed out", ctx),
        }
    }
}
