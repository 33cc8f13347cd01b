//! Frames from the client: parsing, the rate limit, and one handler per frame type.
//!
//! Every conversation operation goes to the conversation's actor through `routing` (its
//! membership rule is checked there); reads go to `domain::reads`. The session itself
//! validates only what it can without state (`domain::rules::send`).

use super::SessionActor;
use crate::actors::create;
use crate::actors::routing::{ask, route};
use crate::config::Limits;
use crate::domain::{reads, rules, view, Caller, ConvRequest, Submit};
use crate::error::ApiError;
use actix::prelude::*;
use parley_protocol::{close, Attachment, ClientFrame, ReceiptKind, SendFrame};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The per-connection token bucket, and how many refusals in a row it has seen.
pub(super) struct RateLimit {
    tokens: f64,
    last: Instant,
    strikes: u32,
}

impl RateLimit {
    pub(super) fn new(l: &Limits) -> RateLimit {
        RateLimit {
            tokens: l.rate_burst as f64,
            last: Instant::now(),
            strikes: 0,
        }
    }

    /// One frame, if this connection's bucket and then `user` (v1.1: the user's budget over
    /// all its connections on this node) allow it; a refusal by either is a strike.
    fn allow(&mut self, l: &Limits, user: impl FnOnce() -> bool) -> bool {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * l.rate_per_sec as f64).min(l.rate_burst as f64);
        if self.tokens >= 1.0 && user() {
            self.tokens -= 1.0;
            self.strikes = 0;
            true
        } else {
            self.strikes += 1;
            false
        }
    }
}

/// The client's id of a frame, for tying an error to it.
fn frame_id(f: &ClientFrame) -> Option<String> {
    match f {
        ClientFrame::Send(s) => Some(s.id.clone()),
        ClientFrame::Sync { id, .. }
        | ClientFrame::History { id, .. }
        | ClientFrame::Delete { id, .. }
        | ClientFrame::Edit { id, .. }
        | ClientFrame::React { id, .. } => Some(id.clone()),
        ClientFrame::Received { id, .. }
        | ClientFrame::Read { id, .. }
        | ClientFrame::Typing { id, .. } => id.clone(),
        ClientFrame::Auth { .. } => None,
    }
}

impl SessionActor {
    fn caller(&self) -> Option<Caller> {
        self.ident.as_ref().map(|i| Caller {
            user_id: i.user_id.to_string(),
            device_id: i.device_id.to_string(),
        })
    }

    pub(super) fn on_binary(&mut self, ctx: &mut Context<Self>) {
        self.core.metrics.frames_in.inc();
        self.send_error(None, ApiError::bad_request("frames are JSON text"), ctx)
    }

    pub(super) fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        self.core.metrics.frames_in.inc();
        if self.out.closing {
            return; // frames that crossed our close frame are not served
        }
        let frame: ClientFrame = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => return self.malformed(text, e, ctx),
        };
        let (access, ident) = (&self.core.access, self.ident.as_ref());
        let user = || ident.is_none_or(|i| access.user_frame(&i.user_id).is_ok());
        if !self.limiter.allow(&self.core.config.limits, user) {
            self.core.metrics.rate_limited.inc();
            if self.limiter.strikes >= self.core.config.limits.rate_strikes {
                self.close_now(close::TOO_SLOW, "rate limit exceeded", ctx);
            } else {
                self.send_error(frame_id(&frame), ApiError::rate_limited("slow down"), ctx);
            }
            return;
        }
        let Some(by) = self.caller() else {
            return self.before_auth(frame, ctx);
        };
        self.dispatch(frame, by, ctx);
    }

    /// One handler per frame type.
    fn dispatch(&mut self, frame: ClientFrame, by: Caller, ctx: &mut Context<Self>) {
        match frame {
            ClientFrame::Auth { .. } => {
                self.send_error(None, ApiError::bad_request("already authenticated"), ctx)
            }
            ClientFrame::Send(f) => self.on_send(f, by, ctx),
            ClientFrame::Received {
                conversation_id,
                seq,
                id,
            } => self.on_cursor(conversation_id, seq, ReceiptKind::Delivered, id, by),
            ClientFrame::Read {
                conversation_id,
                seq,
                id,
            } => self.on_cursor(conversation_id, seq, ReceiptKind::Read, id, by),
            ClientFrame::Sync { id, limit } => self.sync(id, limit, by, ctx),
            ClientFrame::History {
                id,
                conversation_id,
                before_seq,
                limit,
            } => self.on_history(id, conversation_id, before_seq, limit, by, ctx),
            ClientFrame::Delete {
                id,
                conversation_id,
                seq,
                scope,
            } => {
                let request = ConvRequest::Delete {
                    by,
                    id: id.clone(),
                    seq,
                    scope,
                };
                self.ask_for_ack(id, conversation_id, request, ctx)
            }
            ClientFrame::Typing {
                conversation_id,
                id,
            } => self.on_typing(conversation_id, id, by),
            ClientFrame::Edit {
                id,
                conversation_id,
                seq,
                text,
                meta,
            } => self.on_edit(id, conversation_id, seq, text, meta, by, ctx),
            ClientFrame::React {
                id,
                conversation_id,
                seq,
                emoji,
                remove,
            } => {
                if let Err(e) = rules::client_id(&self.core.config.limits, &id) {
                    return self.send_error(Some(id), e, ctx);
                }
                let request = ConvRequest::React {
                    by,
                    id: id.clone(),
                    seq,
                    emoji,
                    added: !remove,
                };
                self.ask_for_ack(id, conversation_id, request, ctx)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_edit(
        &mut self,
        id: String,
        conversation_id: String,
        seq: u64,
        text: Option<String>,
        meta: Option<serde_json::Value>,
        by: Caller,
        ctx: &mut Context<Self>,
    ) {
        let limits = &self.core.config.limits;
        let meta = match rules::edit_frame(limits, &id, text.as_deref(), &meta) {
            Ok(m) => m,
            Err(e) => return self.send_error(Some(id), e, ctx),
        };
        let request = ConvRequest::Edit {
            by,
            id: id.clone(),
            seq,
            text,
            meta,
        };
        self.ask_for_ack(id, conversation_id, request, ctx)
    }

    fn malformed(&mut self, text: &str, e: serde_json::Error, ctx: &mut Context<Self>) {
        if self.ident.is_none() {
            return self.close_now(close::BAD_TOKEN, "authenticate first", ctx);
        }
        let id = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(String::from));
        self.send_error(
            id,
            ApiError::bad_request(format!("malformed frame: {e}")),
            ctx,
        );
    }

    /// Before authentication only `auth` is served; anything else closes with 4401.
    fn before_auth(&mut self, frame: ClientFrame, ctx: &mut Context<Self>) {
        match frame {
            ClientFrame::Auth { token } => match self.core.auth.verify(&token) {
                Some(claims) => self.authenticate(claims, ctx),
                None => self.close_now(close::BAD_TOKEN, "bad or expired token", ctx),
            },
            _ => self.close_now(close::BAD_TOKEN, "authenticate first", ctx),
        }
    }

    fn on_send(&mut self, f: SendFrame, by: Caller, ctx: &mut Context<Self>) {
        let meta = match rules::send(&self.core.config.limits, &f) {
            Ok(m) => m,
            Err(e) => return self.send_error(Some(f.id), e, ctx),
        };
        let core = self.core.clone();
        let id = f.id.clone();
        ctx.spawn(
            async move {
                let conv_id = match (&f.conversation_id, &f.to) {
                    (Some(c), _) => c.clone(),
                    (None, Some(to)) => create::direct(&core, &by.user_id, to).await?.0,
                    (None, None) => unreachable!("validated"),
                };
                let attachments = resolve_attachments(&core, &by.user_id, &f).await?;
                let request = ConvRequest::Submit(Submit {
                    by,
                    client_id: f.id,
                    text: f.text,
                    attachments,
                    meta,
                    reply_to: f.reply_to,
                });
                ask(&core, &conv_id, request).await?.into_ack()
            }
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok(ack) => {
                    // The ack stands for the message on the sending device.
                    let conv = ack.conversation_id.clone();
                    if let Some(pos) = act.convs.get_mut(conv.as_str()) {
                        if ack.seq == pos.pushed + 1 {
                            pos.pushed = ack.seq;
                        }
                        pos.latest = pos.latest.max(ack.seq);
                    }
                    act.enqueue(view::ack(ack), ctx);
                    act.release_events(&conv, ctx);
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
        id: Option<String>,
        by: Caller,
    ) {
        if let Some(pos) = self.convs.get_mut(conversation_id.as_str()) {
            pos.pushed = pos.pushed.max(seq.min(pos.latest));
            if kind == ReceiptKind::Read {
                pos.read = pos.read.max(seq);
            }
        }
        self.commit_events(Some(&conversation_id), &by.device_id);
        route(
            &self.core,
            &conversation_id,
            ConvRequest::Cursor { by, kind, seq, id },
            None,
        );
    }

    fn on_history(
        &mut self,
        id: String,
        conversation_id: String,
        before_seq: Option<u64>,
        limit: Option<u32>,
        by: Caller,
        ctx: &mut Context<Self>,
    ) {
        let l = &self.core.config.limits;
        let limit = limit.unwrap_or(l.default_page).clamp(1, l.max_page);
        let core = self.core.clone();
        ctx.spawn(
            async move {
                let before = before_seq.unwrap_or(u64::MAX);
                reads::history(&*core.store, &by.user_id, &conversation_id, before, limit)
                    .await
                    .map(|m| (conversation_id, m))
            }
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok((conversation_id, messages)) => {
                    act.enqueue(view::history(id, conversation_id, messages), ctx)
                }
                Err(e) => act.send_error(Some(id), e, ctx),
            }),
        );
    }

    /// An operation answered with an `ack` (delete, edit, react), or an error with its id.
    fn ask_for_ack(
        &mut self,
        id: String,
        conversation_id: String,
        request: ConvRequest,
        ctx: &mut Context<Self>,
    ) {
        let core = self.core.clone();
        ctx.spawn(
            async move { ask(&core, &conversation_id, request).await?.into_ack() }
                .into_actor(self)
                .map(move |res, act, ctx| match res {
                    Ok(ack) => act.enqueue(view::ack(ack), ctx),
                    Err(e) => act.send_error(Some(id), e, ctx),
                }),
        );
    }

    /// Relayed at most once per `typing_interval_ms` per conversation; extra frames dropped.
    fn on_typing(&mut self, conversation_id: String, id: Option<String>, by: Caller) {
        let every = Duration::from_millis(self.core.config.limits.typing_interval_ms);
        // Only conversations this session holds are remembered, so the map stays bounded.
        if let Some((key, _)) = self.convs.get_key_value(conversation_id.as_str()) {
            let key: Arc<str> = key.clone();
            if self.typing.get(&key).is_some_and(|t| t.elapsed() < every) {
                return;
            }
            self.typing.insert(key, Instant::now());
        }
        route(
            &self.core,
            &conversation_id,
            ConvRequest::Typing { by, id },
            None,
        );
    }
}

/// The attachments of a send, as stored: each must exist and be the sender's own upload.
async fn resolve_attachments(
    core: &crate::actors::Core,
    user: &str,
    f: &SendFrame,
) -> Result<Vec<Attachment>, ApiError> {
    let mut out = Vec::with_capacity(f.attachments.len());
    for a in &f.attachments {
        match core.store.file(&a.file_id).await? {
            Some(row) if row.uploader_id == user => out.push(view::attachment(&row)),
            Some(_) => {
                return Err(ApiError::forbidden(
                    "you may attach only files you uploaded",
                ))
            }
            None => return Err(ApiError::not_found(format!("no such file: {}", a.file_id))),
        }
    }
    Ok(out)
}
