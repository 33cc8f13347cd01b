//! `delete`: retraction for everyone (the content is purged from storage, with any blob no
//! one else uses, its earlier versions and its reactions) and hiding for oneself. Each is an
//! event of the conversation's log (`events`), which `sync` replays to devices that already
//! hold the message.

use super::events::{Audience, Then};
use super::{Answer, ConvActor};
use crate::domain::{rules, view, AckInfo, Caller, ConvReply};
use crate::error::ApiError;
use crate::ids::now_ms;
use crate::storage::{EventKind, MessageEvent, StoreResult, StoredMessage};
use actix::prelude::*;
use parley_protocol::DeleteScope;

impl ConvActor {
    pub(super) fn delete(
        &mut self,
        by: Caller,
        id: String,
        seq: u64,
        scope: DeleteScope,
        answer: Answer,
        ctx: &mut Context<Self>,
    ) {
        self.with_message(seq, answer, ctx, move |act, msg, answer, ctx| {
            act.retract_or_hide(by, id, msg, scope, answer, ctx)
        });
    }

    /// Reads the message at `seq` (after checking the caller's membership and that it
    /// exists), then goes on with `next`. `wait`: the operation is numbered in the order it
    /// arrived.
    pub(super) fn with_message(
        &mut self,
        seq: u64,
        answer: Answer,
        ctx: &mut Context<Self>,
        next: impl FnOnce(&mut Self, StoredMessage, Answer, &mut Context<Self>) + 'static,
    ) {
        let last_seq = match self.member(&answer.by.user_id) {
            Ok((st, _)) => st.last_seq,
            Err(e) => return answer.send(&self.core, Err(e)),
        };
        if seq == 0 || seq > last_seq {
            return answer.send(&self.core, Err(ApiError::not_found("no such message")));
        }
        let core = self.core.clone();
        let conv = self.id.clone();
        ctx.wait(
            async move { core.store.message(&conv, seq).await }
                .into_actor(self)
                .map(move |res, act, ctx| match res {
                    Ok(Some(msg)) => next(act, msg, answer, ctx),
                    Ok(None) => answer.send(&act.core, Err(ApiError::not_found("no such message"))),
                    Err(e) => answer.send(&act.core, Err(e.into())),
                }),
        );
    }

    /// Checks the permission, numbers the event and queues its write.
    fn retract_or_hide(
        &mut self,
        by: Caller,
        id: String,
        msg: StoredMessage,
        scope: DeleteScope,
        answer: Answer,
        ctx: &mut Context<Self>,
    ) {
        let now = now_ms();
        let window = self.core.config.limits.retract_window_secs;
        if scope == DeleteScope::Everyone {
            let allowed = self
                .member(&by.user_id)
                .and_then(|(st, m)| rules::retract_for_everyone(st, m, &msg, now, window));
            if let Err(e) = allowed {
                return answer.send(&self.core, Err(e));
            }
        }
        let ack = AckInfo {
            id,
            conversation_id: self.id.to_string(),
            seq: msg.seq,
            message_id: msg.message_id.clone(),
            ts: now,
            duplicate: scope == DeleteScope::Everyone && msg.deleted,
        };
        if ack.duplicate {
            return answer.send(&self.core, Ok(ConvReply::Ack(ack)));
        }
        let files: Vec<String> = msg.attachments.iter().map(|a| a.file_id.clone()).collect();
        let core = self.core.clone();
        let conversation_id = self.id.to_string();
        self.queue_event(
            Box::new(move |event_no| {
                let e = MessageEvent {
                    conversation_id,
                    event_no,
                    seq: msg.seq,
                    kind: match scope {
                        DeleteScope::Everyone => EventKind::Retract,
                        DeleteScope::Me => EventKind::Hide,
                    },
                    by_user: by.user_id.clone(),
                    for_user: (scope == DeleteScope::Me).then(|| by.user_id.clone()),
                    ts: now,
                };
                Box::pin(async move {
                    let res = write(&core, e.clone(), files).await;
                    Box::new(
                        move |act: &mut ConvActor, _: &mut Context<ConvActor>| match res {
                            Ok(()) => {
                                let frame =
                                    view::deleted(&e.conversation_id, e.seq, scope, &e.by_user);
                                let to = match scope {
                                    DeleteScope::Everyone => Audience::Members,
                                    DeleteScope::Me => Audience::OwnDevices {
                                        user: by.user_id.clone(),
                                        except: by.device_id.clone(),
                                    },
                                };
                                act.tell_event(&e, &frame, to);
                                answer.send(&act.core, Ok(ConvReply::Ack(ack)));
                            }
                            // The number is not given back: the write may have got as far as the log.
                            Err(err) => answer.send(&act.core, Err(err.into())),
                        },
                    ) as Then
                })
            }),
            ctx,
        );
    }
}

/// Stores the event; for a retraction, then unlinks the blobs of its files that nothing else
/// uses. A failed unlink leaves an unreferenced blob (logged), never a broken reference.
async fn write(core: &crate::actors::Core, e: MessageEvent, files: Vec<String>) -> StoreResult<()> {
    match e.kind {
        EventKind::Hide => return core.store.hide(e).await,
        _ => core.store.retract(e).await?,
    }
    unlink_orphans(core, files).await;
    Ok(())
}

/// Unlinks the blobs of `files` that nothing uses any more (after a retraction or a purge).
pub(super) async fn unlink_orphans(core: &crate::actors::Core, files: Vec<String>) {
    core.purge_files(files).await;
}
