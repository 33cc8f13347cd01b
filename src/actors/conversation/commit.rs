//! Appending: sends wait in `pending` and go to the store as one batch per commit, numbered
//! from the actor's `last_seq`; the acks and the fan-out follow the commit's return (no ack
//! before durability).

use super::{Answer, ConvActor, Phase};
use crate::actors::core::Stored;
use crate::domain::broadcast::QuoteInfo;
use crate::domain::{view, AckInfo, ConvReply, Submit};
use crate::error::ApiError;
use crate::ids::{new_id, now_ms};
use crate::storage::{AppendOutcome, NewMessage, StoreError};
use actix::prelude::*;
use std::sync::Arc;
use std::time::Instant;

/// How many recent (seq, sender) pairs are kept to route receipts without a store read.
const RECENT_SENDERS: usize = 4096;

/// A send in a commit: when it arrived, where its answer goes, its quote.
type Waiter = (Instant, Answer, Option<QuoteInfo>);

pub(super) struct Pending {
    msg: NewMessage,
    quote: Option<QuoteInfo>,
    arrived: Instant,
    pub(super) answer: Answer,
}

impl ConvActor {
    pub(super) fn submit(
        &mut self,
        s: Submit,
        arrived: Instant,
        answer: Answer,
        ctx: &mut Context<Self>,
    ) {
        let checked = self.member(&s.by.user_id).and_then(|(st, _)| {
            // The blocks are cached (only a direct conversation has any): no store read.
            for m in st.members.iter().filter(|m| m.user_id != s.by.user_id) {
                crate::domain::rules::not_blocked(&self.blocks, &s.by.user_id, &m.user_id)?;
            }
            Ok(st.last_seq)
        });
        let last_seq = match checked {
            Ok(v) => v,
            Err(e) => return answer.send(&self.core, Err(e)),
        };
        if self.core.is_shutting_down() {
            return answer.send(
                &self.core,
                Err(ApiError::unavailable("server is restarting")),
            );
        }
        let Some(reply_to) = s.reply_to else {
            return self.queue_send(s, None, arrived, answer, ctx);
        };
        if reply_to > last_seq {
            return answer.send(
                &self.core,
                Err(ApiError::not_found("reply_to: no such message")),
            );
        }
        // `wait`: sends behind this one stay behind it. Only replies pay for the read.
        let core = self.core.clone();
        let conv = self.id.clone();
        ctx.wait(
            async move { core.store.message(&conv, reply_to).await }
                .into_actor(self)
                .map(move |res, act, ctx| match res {
                    Ok(Some(quoted)) => {
                        act.queue_send(s, Some(view::quote(&quoted)), arrived, answer, ctx)
                    }
                    Ok(None) => answer.send(
                        &act.core,
                        Err(ApiError::not_found("reply_to: no such message")),
                    ),
                    Err(e) => answer.send(&act.core, Err(e.into())),
                }),
        );
    }

    fn queue_send(
        &mut self,
        s: Submit,
        quote: Option<QuoteInfo>,
        arrived: Instant,
        answer: Answer,
        ctx: &mut Context<Self>,
    ) {
        self.pending.push(Pending {
            msg: NewMessage {
                message_id: new_id(),
                sender_id: s.by.user_id,
                sender_device_id: s.by.device_id,
                client_id: s.client_id,
                ts: now_ms(),
                text: s.text,
                attachments: s.attachments,
                meta: s.meta,
                reply_to: s.reply_to,
            },
            quote,
            arrived,
            answer,
        });
        self.start_commit(ctx);
    }

    /// Starts a commit of everything pending, unless one is in flight.
    pub(super) fn start_commit(&mut self, ctx: &mut Context<Self>) {
        if self.committing || self.pending.is_empty() {
            if self.relinquished && !self.committing {
                ctx.stop();
            }
            return;
        }
        let Some(state) = self.state_mut() else {
            return;
        };
        let first_seq = state.last_seq + 1;
        let take = self.pending.len().min(self.core.config.storage.max_batch);
        let (msgs, waiters): (Vec<NewMessage>, Vec<Waiter>) = self
            .pending
            .drain(..take)
            .map(|p| (p.msg, (p.arrived, p.answer, p.quote)))
            .unzip();
        // Shared with the store: the content is not copied for the commit.
        let batch: Arc<[NewMessage]> = msgs.into();
        self.committing = true;
        let core = self.core.clone();
        let id = self.id.clone();
        let stored = batch.clone();
        ctx.spawn(
            async move { core.store.append(&id, first_seq, stored).await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    act.committing = false;
                    match res {
                        Ok(appended) => {
                            let push = appended.push_pending;
                            act.committed(&batch, waiters, appended.outcomes);
                            if push {
                                act.notify_push(ctx);
                            }
                        }
                        Err(e) => act.commit_failed(e, waiters, ctx),
                    }
                    act.start_commit(ctx);
                }),
        );
    }

    /// Acks every send of the batch, then fans the stored ones out.
    fn committed(
        &mut self,
        batch: &[NewMessage],
        waiters: Vec<Waiter>,
        outcomes: Vec<AppendOutcome>,
    ) {
        let mut stored: Vec<Stored> = Vec::with_capacity(batch.len());
        for (i, ((arrived, answer, quote), outcome)) in
            waiters.into_iter().zip(outcomes).enumerate()
        {
            let msg = &batch[i];
            let ack = match outcome {
                AppendOutcome::Reused {
                    conversation_id,
                    seq,
                } => {
                    let why = format!(
                        "id {} was already used for another message (seq {seq} of {conversation_id})",
                        msg.client_id
                    );
                    answer.send(&self.core, Err(ApiError::conflict(why)));
                    continue;
                }
                AppendOutcome::Duplicate {
                    conversation_id,
                    seq,
                    message_id,
                    ts,
                } => AckInfo {
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
                    stored.push(Stored {
                        seq,
                        index: i,
                        quote,
                    });
                    AckInfo {
                        id: msg.client_id.clone(),
                        conversation_id: self.id.to_string(),
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
            answer.send(&self.core, Ok(ConvReply::Ack(ack)));
        }
        if let (false, Phase::Ready(st)) = (stored.is_empty(), &self.phase) {
            self.core.fan_out(&self.id, &st.members, batch, &stored);
        }
    }

    /// Nothing of the batch was stored: its senders get `unavailable` and retry with the same
    /// ids. A conflict means another writer appended (another owner during a hand-off): the
    /// counter is reloaded from storage.
    fn commit_failed(&mut self, e: StoreError, waiters: Vec<Waiter>, ctx: &mut Context<Self>) {
        let why = if let StoreError::Conflict(_) = e {
            tracing::warn!(conversation = %self.id, error = %e, "append conflict; reloading");
            self.phase = Phase::Loading;
            self.load(ctx);
            "conversation moved, retry"
        } else {
            tracing::warn!(conversation = %self.id, error = %e, batch = waiters.len(), "commit failed");
            "storage unavailable, retry"
        };
        for (_, answer, _) in waiters {
            answer.send(&self.core, Err(ApiError::unavailable(why)));
        }
    }
}
