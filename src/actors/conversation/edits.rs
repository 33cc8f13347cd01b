//! `edit` and `react`: the two v1.1 operations on a stored message. Each is an event of the
//! conversation's log (`events`): devices that hold the message learn of it live or from
//! `sync`; a device that gets the message later gets it in its latest state.

use super::events::{Audience, Then};
use super::{Answer, ConvActor};
use crate::domain::{rules, view, AckInfo, Caller, ConvReply};
use crate::error::ApiError;
use crate::ids::now_ms;
use crate::storage::{
    edit_hash, EditContent, EditOutcome, EventKind, IdemKey, MessageEvent, StoredMessage,
};
use actix::prelude::*;

/// An edit as the client asked for it (`None`: keep what is there).
pub(super) struct EditRequest {
    pub by: Caller,
    pub id: String,
    pub seq: u64,
    pub text: Option<String>,
    pub meta: Option<String>,
}

/// A reaction as the client asked for it.
pub(super) struct ReactRequest {
    pub by: Caller,
    pub id: String,
    pub seq: u64,
    pub emoji: String,
    pub added: bool,
}

fn ack(id: String, msg: &StoredMessage, ts: i64, duplicate: bool) -> AckInfo {
    AckInfo {
        id,
        conversation_id: msg.conversation_id.clone(),
        seq: msg.seq,
        message_id: msg.message_id.clone(),
        ts,
        duplicate,
    }
}

impl ConvActor {
    pub(super) fn edit(&mut self, r: EditRequest, answer: Answer, ctx: &mut Context<Self>) {
        self.with_message(r.seq, answer, ctx, move |act, msg, answer, ctx| {
            act.apply_edit(r, msg, answer, ctx)
        });
    }

    fn apply_edit(
        &mut self,
        r: EditRequest,
        msg: StoredMessage,
        answer: Answer,
        ctx: &mut Context<Self>,
    ) {
        let now = now_ms();
        let window = self.core.config.limits.edit_window_secs;
        let content = EditContent {
            text: r.text.clone().or_else(|| msg.text.clone()),
            meta: r.meta.clone().or_else(|| msg.meta.clone()),
        };
        let allowed = self
            .member(&r.by.user_id)
            .and_then(|(_, m)| rules::edit(m, &msg, content.text.as_deref(), now, window));
        if let Err(e) = allowed {
            return answer.send(&self.core, Err(e));
        }
        let key = IdemKey {
            device_id: r.by.device_id.clone(),
            client_id: r.id.clone(),
            payload_hash: edit_hash(&self.id, r.seq, r.text.as_deref(), r.meta.as_deref()),
        };
        let core = self.core.clone();
        let conversation_id = self.id.to_string();
        let edited = StoredMessage {
            text: content.text.clone(),
            meta: content.meta.clone(),
            edited_at: Some(now),
            ..msg
        };
        self.queue_event(
            Box::new(move |event_no| {
                let e = MessageEvent {
                    conversation_id,
                    event_no,
                    seq: r.seq,
                    kind: EventKind::Edit,
                    by_user: r.by.user_id.clone(),
                    for_user: None,
                    ts: now,
                };
                Box::pin(async move {
                    let res = core.store.edit(e.clone(), content, key).await;
                    Box::new(move |act: &mut ConvActor, _: &mut Context<ConvActor>| {
                        // Only an outcome that wrote nothing gives the number back (a failed
                        // write may have got as far as the log).
                        if matches!(res, Ok(ref o) if *o != EditOutcome::Applied) {
                            act.release_event_no(e.event_no);
                        }
                        let result = match res {
                            Ok(EditOutcome::Applied) => {
                                let frame = view::edited(&edited, &e.by_user);
                                act.tell_event(&e, &frame, Audience::Members);
                                Ok(ack(r.id, &edited, now, false))
                            }
                            Ok(EditOutcome::Duplicate { ts }) => Ok(ack(r.id, &edited, ts, true)),
                            Ok(EditOutcome::Reused) => Err(ApiError::conflict(format!(
                                "id {} was already used for something else",
                                r.id
                            ))),
                            Ok(EditOutcome::Gone) => {
                                Err(ApiError::not_found("the message was retracted"))
                            }
                            Err(err) => Err(err.into()),
                        };
                        answer.send(&act.core, result.map(ConvReply::Ack));
                    }) as Then
                })
            }),
            ctx,
        );
    }

    pub(super) fn react(&mut self, r: ReactRequest, answer: Answer, ctx: &mut Context<Self>) {
        if let Err(e) = rules::emoji(&self.core.config.limits, &r.emoji) {
            return answer.send(&self.core, Err(e));
        }
        let conv = self.id.clone();
        self.with_message(r.seq, answer, ctx, move |act, msg, answer, ctx| {
            if msg.deleted {
                return answer.send(
                    &act.core,
                    Err(ApiError::not_found("the message was retracted")),
                );
            }
            if !r.added {
                return act.apply_reaction(r, msg, answer, ctx);
            }
            // A new emoji counts against the message's limit; read what it has.
            let core = act.core.clone();
            let viewer = r.by.user_id.clone();
            ctx.wait(
                async move {
                    core.store
                        .reactions(&conv, &[msg.seq], &viewer)
                        .await
                        .map(|v| (v, msg))
                }
                .into_actor(act)
                .map(move |res, act, ctx| {
                    let (counts, msg) = match res {
                        Ok(v) => v,
                        Err(e) => return answer.send(&act.core, Err(e.into())),
                    };
                    let emojis = counts.into_iter().next().map(|c| c.1).unwrap_or_default();
                    if !emojis.iter().any(|c| c.emoji == r.emoji) {
                        let limits = &act.core.config.limits;
                        if let Err(e) = rules::new_emoji(limits, &msg, emojis.len()) {
                            return answer.send(&act.core, Err(e));
                        }
                    }
                    act.apply_reaction(r, msg, answer, ctx)
                }),
            );
        });
    }

    fn apply_reaction(
        &mut self,
        r: ReactRequest,
        msg: StoredMessage,
        answer: Answer,
        ctx: &mut Context<Self>,
    ) {
        let now = now_ms();
        let core = self.core.clone();
        let conversation_id = self.id.to_string();
        self.queue_event(
            Box::new(move |event_no| {
                let e = MessageEvent {
                    conversation_id,
                    event_no,
                    seq: r.seq,
                    kind: EventKind::React {
                        emoji: r.emoji.clone(),
                        added: r.added,
                    },
                    by_user: r.by.user_id.clone(),
                    for_user: None,
                    ts: now,
                };
                Box::pin(async move {
                    let res = core.store.react(e.clone()).await;
                    Box::new(move |act: &mut ConvActor, _: &mut Context<ConvActor>| {
                        let result = match res {
                            Ok(true) => {
                                let frame = view::reaction(
                                    &e.conversation_id,
                                    e.seq,
                                    &e.by_user,
                                    &r.emoji,
                                    r.added,
                                );
                                act.tell_event(&e, &frame, Audience::Members);
                                Ok(ack(r.id, &msg, now, false))
                            }
                            // Adding twice, or taking back what is not there, changes nothing:
                            // acked as a duplicate, since the state is what the client asked.
                            Ok(false) => {
                                act.release_event_no(e.event_no);
                                Ok(ack(r.id, &msg, now, true))
                            }
                            Err(err) => Err(err.into()),
                        };
                        answer.send(&act.core, result.map(ConvReply::Ack));
                    }) as Then
                })
            }),
            ctx,
        );
    }
}
