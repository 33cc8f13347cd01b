//! The way out to the socket: a bounded queue, one write per burst, and the slow-consumer rule.
//!
//! Frames wait in a queue; one write at a time takes everything queued (up to `BATCH`) and
//! sends it in as few socket writes as the frames fill (`gateway::ws` sets the socket's write
//! buffer), then flushes. The batch is taken when the write first runs, after the mailbox's
//! turn, so a burst of acks or a group's fan-out that arrives together leaves together.
//!
//! Slow-consumer policy: a burst may fill the queue for a moment while the socket drains, so
//! the session counts as a slow consumer only when the queue holds more than
//! `limits.outbound_queue` frames *and* the socket has accepted nothing for
//! `limits.slow_consumer_grace_ms`; at eight times the bound it counts at once. A slow
//! consumer is closed with 4429 and its queue dropped. Nothing is lost: every message is in
//! storage, and the device's delivered cursor moves only when it reports `received`, so it
//! resumes with `sync` after reconnecting.

use super::socket::Outbound;
use super::SessionActor;
use crate::domain::view;
use crate::error::ApiError;
use actix::prelude::*;
use bytestring::ByteString;
use futures_util::SinkExt;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::{coding::CloseCode, CloseFrame, Utf8Bytes};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Frames one write takes at most: a long queue drains in several writes, so the session
/// serves its mailbox in between.
const BATCH: usize = 256;

enum Out {
    Frame(ByteString),
    Ping,
    Close(u16, &'static str),
}

pub(super) struct Queue {
    items: VecDeque<Out>,
    /// A write holds the socket's write half.
    writing: bool,
    /// When the running write started, or the last one ended.
    last_progress: Instant,
    /// A close frame is on its way: nothing more is queued or served.
    pub(super) closing: bool,
    /// The close frame has been written.
    close_sent: bool,
    /// How long to wait for the peer's close once ours is written.
    close_wait: Duration,
}

impl Queue {
    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty() && !self.writing
    }

    /// Whether the session has to live on until its close frame is written.
    pub(super) fn close_pending(&self) -> bool {
        self.closing && !self.close_sent
    }
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            items: VecDeque::new(),
            writing: false,
            last_progress: Instant::now(),
            closing: false,
            close_sent: false,
            close_wait: Duration::ZERO,
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
        let l = &self.core.config.limits;
        if self.out.writing && self.out.items.len() == l.outbound_queue {
            // The queue reached its bound behind a write that has not finished: judge the
            // consumer after the grace even if no further frame comes to judge it.
            let grace = Duration::from_millis(l.slow_consumer_grace_ms);
            ctx.run_later(grace, |act, ctx| {
                act.close_if_slow(ctx);
            });
        }
        self.write_out(ctx);
    }

    /// The heartbeat's ping, in turn with the frames (a session that is only receiving is
    /// pinged too, and its pong is what keeps it alive).
    pub(super) fn ping(&mut self, ctx: &mut Context<Self>) {
        if self.out.closing || matches!(self.out.items.back(), Some(Out::Ping)) {
            return;
        }
        self.out.items.push_back(Out::Ping);
        self.write_out(ctx);
    }

    /// The slow-consumer rule. Applied when a frame is queued, and `slow_consumer_grace_ms`
    /// after the queue reaches its bound behind a write, so that a device that stalls after
    /// the last frame of a burst is judged too.
    fn close_if_slow(&mut self, ctx: &mut Context<Self>) -> bool {
        let l = &self.core.config.limits;
        let stalled = self.out.writing
            && self.out.last_progress.elapsed() >= Duration::from_millis(l.slow_consumer_grace_ms);
        let len = self.out.items.len();
        if len >= l.outbound_queue * 8 || (len >= l.outbound_queue && stalled) {
            self.core.metrics.slow_consumers.inc();
            tracing::info!(session = %self.session_id, "slow consumer: closing with 4429");
            self.out.items.clear(); // a slow consumer's backlog is what it syncs instead
            self.close_now(
                parley_protocol::close::TOO_SLOW,
                "too slow: reconnect and sync",
                ctx,
            );
            return true;
        }
        false
    }

    /// Starts a write of what is queued, unless one is running (its end starts the next).
    fn write_out(&mut self, ctx: &mut Context<Self>) {
        if self.out.writing {
            return;
        }
        if self.out.items.is_empty() {
            return self.drained(ctx);
        }
        let Some(sink) = self.ws.sink.take() else {
            return; // the socket is gone
        };
        self.out.writing = true;
        // The socket's stall is counted from this write's start: time the queue spent empty
        // before it is not the consumer's.
        self.out.last_progress = Instant::now();
        let write = actix::fut::ready(()).then(move |_, act: &mut Self, ctx| {
            let (frames, closes) = act.take_batch(ctx);
            write(sink, frames)
                .into_actor(act)
                .map(move |r, act, ctx| act.written(r, closes, ctx))
        });
        ctx.spawn(write);
    }

    /// The frames of one write, up to a close (which ends the queue).
    fn take_batch(&mut self, ctx: &mut Context<Self>) -> (Vec<Message>, bool) {
        let mut frames = Vec::with_capacity(self.out.items.len().min(BATCH));
        while frames.len() < BATCH {
            let m = match self.out.items.pop_front() {
                None => break,
                // SAFETY: a ByteString is UTF-8 by construction.
                Some(Out::Frame(f)) => {
                    Message::Text(unsafe { Utf8Bytes::from_bytes_unchecked(f.into_bytes()) })
                }
                Some(Out::Ping) => Message::Ping(Default::default()),
                Some(Out::Close(code, reason)) => {
                    if !self.out.closing {
                        // A close after flush: its turn came. Frames queued behind it are
                        // not served.
                        self.out.items.clear();
                        self.start_closing(ctx);
                    }
                    frames.push(Message::Close(Some(CloseFrame {
                        code: CloseCode::from(code),
                        reason: Utf8Bytes::from_static(reason),
                    })));
                    return (frames, true);
                }
            };
            frames.push(m);
        }
        (frames, false)
    }

    /// A write ended: the socket's write half is back.
    fn written(
        &mut self,
        (sink, r): (Outbound, Result<(), WsError>),
        closed: bool,
        ctx: &mut Context<Self>,
    ) {
        self.ws.sink = Some(sink);
        self.out.writing = false;
        self.out.last_progress = Instant::now();
        if r.is_err() {
            return ctx.stop();
        }
        if closed {
            // Wait for the peer's close (the WebSocket closing handshake), for a bounded time.
            self.out.close_sent = true;
            ctx.run_later(self.out.close_wait, |_, ctx| ctx.stop());
            return;
        }
        self.write_out(ctx);
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

    /// Closes now: nothing more is queued; what the queue holds (at most the slow-consumer
    /// bound: a slow consumer's queue is dropped first) goes out before the close frame, so
    /// that the errors that led to a close reach the client. The close frame may still have to
    /// get past frames the socket already holds, so the session stays open after sending it
    /// until the peer answers with its own close (the WebSocket closing handshake) or for as
    /// long as a silent peer is tolerated; stopping at once would let the connection drop with
    /// the close frame still unsent.
    pub(super) fn close_now(&mut self, code: u16, reason: &'static str, ctx: &mut Context<Self>) {
        if self.out.closing {
            return;
        }
        self.start_closing(ctx);
        self.out.items.push_back(Out::Close(code, reason));
        self.write_out(ctx);
    }

    /// Like `close_now`, for a client whose frames can no longer be read (one too large for
    /// the limit leaves the read half mid-frame): reading stops, and the session ends soon
    /// after its close frame is written, without waiting for an answer it could not read.
    pub(super) fn close_unread(
        &mut self,
        code: u16,
        reason: &'static str,
        ctx: &mut Context<Self>,
    ) {
        if let Some(reader) = self.reader.take() {
            ctx.cancel_future(reader);
        }
        self.close_now(code, reason, ctx);
        self.out.close_wait = Duration::from_secs(1);
    }

    fn start_closing(&mut self, ctx: &mut Context<Self>) {
        self.out.closing = true;
        let wait = Duration::from_millis(self.core.config.gateway.heartbeat_timeout_ms);
        self.out.close_wait = wait;
        // A close that cannot get out (the socket stays full) ends the session too.
        ctx.run_later(wait, |act, ctx| {
            if !act.out.close_sent {
                ctx.stop();
            }
        });
    }
}

/// One write: the frames, then a flush; the write half comes back with the outcome.
async fn write(mut sink: Outbound, frames: Vec<Message>) -> (Outbound, Result<(), WsError>) {
    let mut r = Ok(());
    for m in frames {
        r = sink.feed(m).await;
        if r.is_err() {
            return (sink, r);
        }
    }
    if r.is_ok() {
        r = sink.flush().await;
    }
    (sink, r)
}
