//! The way out to the socket: a bounded queue and the slow-consumer rule.
//!
//! Slow-consumer policy: outbound frames go through a queue. A burst (a committed batch of 500
//! acks, a group's fan-out) may fill it for a moment while the socket drains, so the session
//! counts as a slow consumer only when the queue holds more than `limits.outbound_queue`
//! frames *and* the socket has accepted nothing for `limits.slow_consumer_grace_ms`; at eight
//! times the bound it counts at once. A slow consumer is closed with 4429 and its queue
//! dropped. Nothing is lost: every message is in storage, and the device's delivered cursor
//! moves only when it reports `received`, so it resumes with `sync` after reconnecting.

use super::SessionActor;
use crate::domain::view;
use crate::error::ApiError;
use actix::prelude::*;
use actix_ws::{CloseCode, CloseReason};
use bytestring::ByteString;
use futures_util::FutureExt;
use parley_protocol::close;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

enum Out {
    Frame(ByteString),
    Close(u16, &'static str),
}

pub(super) struct Queue {
    items: VecDeque<Out>,
    /// A write is waiting for the socket to take a frame.
    writing: bool,
    /// When the socket last accepted a frame (or the queue was last empty).
    last_progress: Instant,
    /// A close frame is on its way: nothing more is queued or served.
    pub(super) closing: bool,
}

impl Queue {
    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty() && !self.writing
    }
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            items: VecDeque::new(),
            writing: false,
            last_progress: Instant::now(),
            closing: false,
        }
    }
}

impl SessionActor {
    pub(super) fn send_error(
        &mut self,
        id: Option<String>,
        mut e: ApiError,
        ctx: &mut Context<Self>,
    ) {
        e.log_cause("request failed");
        self.enqueue(view::error(id, &e), ctx);
    }

    /// Queues a frame, applying the slow-consumer rule (see the module docs).
    pub(super) fn enqueue(&mut self, frame: ByteString, ctx: &mut Context<Self>) {
        if self.out.closing || self.close_if_slow(ctx) {
            return;
        }
        self.core.metrics.frames_out.inc();
        self.out.items.push_back(Out::Frame(frame));
        self.write_out(ctx);
    }

    /// The slow-consumer rule. Applied when a frame is queued, and `slow_consumer_grace_ms`
    /// after the socket pushes back, so that a device that stalls after the last frame of a
    /// burst is judged too.
    fn close_if_slow(&mut self, ctx: &mut Context<Self>) -> bool {
        let l = &self.core.config.limits;
        let stalled = self.out.writing
            && self.out.last_progress.elapsed() >= Duration::from_millis(l.slow_consumer_grace_ms);
        let len = self.out.items.len();
        if len >= l.outbound_queue * 8 || (len >= l.outbound_queue && stalled) {
            self.core.metrics.slow_consumers.inc();
            tracing::info!(session = %self.session_id, "slow consumer: closing with 4429");
            self.close_now(close::TOO_SLOW, "too slow: reconnect and sync", ctx);
            return true;
        }
        false
    }

    /// Moves queued frames into the socket until it pushes back, then waits for room.
    fn write_out(&mut self, ctx: &mut Context<Self>) {
        if self.out.writing {
            return;
        }
        while let Some(out) = self.out.items.pop_front() {
            let f = match out {
                Out::Frame(f) => f,
                Out::Close(code, reason) => return self.close_now(code, reason, ctx),
            };
            match self.ws.text(f.clone()).now_or_never() {
                Some(Ok(())) => self.out.last_progress = Instant::now(),
                Some(Err(_)) => return ctx.stop(),
                None => return self.wait_for_room(f, ctx),
            }
        }
        self.drained(ctx);
    }

    /// The socket is full: write `f` when it has room, and judge the consumer meanwhile.
    fn wait_for_room(&mut self, f: ByteString, ctx: &mut Context<Self>) {
        self.out.writing = true;
        let grace = Duration::from_millis(self.core.config.limits.slow_consumer_grace_ms);
        ctx.run_later(grace, |act, ctx| {
            act.close_if_slow(ctx);
        });
        let mut ws = self.ws.clone();
        ctx.spawn(
            async move { ws.text(f).await }
                .into_actor(self)
                .map(|r, act, ctx| {
                    act.out.writing = false;
                    act.out.last_progress = Instant::now();
                    if r.is_err() {
                        ctx.stop();
                    } else {
                        act.write_out(ctx);
                    }
                }),
        );
    }

    /// Closes after what is queued has been written.
    pub(super) fn close_after_flush(
        &mut self,
        code: u16,
        reason: &'static str,
        ctx: &mut Context<Self>,
    ) {
        if self.out.closing {
            return;
        }
        self.out.items.push_back(Out::Close(code, reason));
        self.write_out(ctx);
    }

    /// Closes now, dropping what is queued. The close frame still has to get past frames the
    /// socket already holds (a slow consumer's are many), so the session stays open after
    /// sending it until the peer answers with its own close (the WebSocket closing handshake)
    /// or for as long as a silent peer is tolerated; stopping at once would let the connection
    /// drop with the close frame still unsent.
    pub(super) fn close_now(&mut self, code: u16, reason: &'static str, ctx: &mut Context<Self>) {
        if self.out.closing {
            return;
        }
        self.out.closing = true;
        self.out.items.clear();
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
}
