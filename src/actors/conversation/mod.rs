//! The conversation actor: the single writer of one conversation.
//!
//! It exists so that seq assignment needs no lock and no database sequence: only this actor
//! appends to its conversation, one batch at a time (`commit`). Sends that arrive while a
//! batch is being committed wait and go into the next batch, so a busy group commits many
//! messages per fsync. After the commit it answers each sender (the ack) and fans each message
//! out. It also owns the members' receipt positions (`receipts`), so that a receipt is
//! computed in one place and never moves backwards, the member list (`members`), and the
//! event log (`events`: retraction and hiding in `retraction`, edits and reactions in
//! `edits`), and it answers who received and read a message (`summaries`).
//!
//! Every operation arrives as one `Envelope` holding a `ConvRequest`, from this node or
//! forwarded from another: `handle` below is the one dispatch, and each operation's handler
//! ends by calling `Answer::send` with its result.

mod commit;
mod edits;
mod events;
mod expiry;
mod group;
mod members;
mod receipts;
mod retraction;
mod summaries;

use super::core::Core;
use super::envelope::{Envelope, Relinquish, Reply, MAILBOX};
use super::registry::{next_generation, ConvHandle};
use crate::domain::broadcast::Devices;
use crate::domain::{rules, view, Caller, ConvRequest, ConvResult};
use crate::error::{ApiError, ApiResult};
use crate::push::notify;
use crate::storage::{ConversationState, MemberRow};
use actix::prelude::*;
use commit::Pending;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// This actor's entry in the registry (see `registry::ConvHandle`).
    generation: u64,
    phase: Phase,
    /// Sends waiting for the next commit.
    pending: Vec<Pending>,
    /// A commit is in flight.
    committing: bool,
    /// Recent (seq, sender) pairs, to route receipts without a store read.
    recent: VecDeque<(u64, String)>,
    /// Highest receipt seq sent per (user, kind): receipts never go backwards even if two
    /// cursor commits complete out of order.
    receipts_sent: HashMap<(String, parley_protocol::ReceiptKind), u64>,
    last_activity: Instant,
    relinquished: bool,
    /// A push scheduling run is in flight / another is needed after it (`notify_push`).
    notifying: bool,
    notify_again: bool,
    /// Event writes waiting for their turn, and whether one is being written (`events`).
    events: VecDeque<events::EventWrite>,
    event_writing: bool,
    /// Live receipt summaries of a large group (`summaries`).
    summaries: summaries::Summaries,
    /// Blocks between the members of a direct conversation, (blocker, blocked) (`group`).
    blocks: Vec<(String, String)>,
}

/// Where the result of one request goes: its reply channel, or (for fire-and-forget
/// requests) an `error` frame to the caller's device if it failed.
pub(super) struct Answer {
    reply: Option<Reply>,
    by: Caller,
    /// The client frame's id, for the `error` of a fire-and-forget request.
    frame_id: Option<String>,
}

impl Answer {
    fn send(self, core: &Core, result: ConvResult) {
        match (self.reply, result) {
            (Some(r), result) => drop(r.send(result)),
            (None, Ok(_)) => {}
            (None, Err(e)) => core.send_frame(
                &[&self.by.user_id],
                &view::error(self.frame_id, &e),
                Devices::Only(self.by.device_id),
            ),
        }
    }
}

impl ConvActor {
    /// Starts the actor of conversation `id` (it loads its state from the store first).
    pub fn launch(core: &Arc<Core>, id: &str) -> ConvHandle {
        let generation = next_generation();
        let addr = ConvActor::new(core.clone(), Arc::from(id), generation).start();
        ConvHandle {
            generation,
            mailbox: addr.clone().recipient(),
            relinquish: addr.recipient(),
        }
    }

    fn new(core: Arc<Core>, id: Arc<str>, generation: u64) -> Self {
        ConvActor {
            core,
            id,
            generation,
            phase: Phase::Loading,
            pending: Vec::new(),
            committing: false,
            recent: VecDeque::new(),
            receipts_sent: HashMap::new(),
            last_activity: Instant::now(),
            relinquished: false,
            notifying: false,
            notify_again: false,
            events: VecDeque::new(),
            event_writing: false,
            summaries: summaries::Summaries::default(),
            blocks: Vec::new(),
        }
    }

    fn state(&self) -> ApiResult<&ConversationState> {
        match &self.phase {
            Phase::Ready(s) => Ok(s),
            Phase::Missing => Err(crate::domain::rules::no_conversation()),
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

    /// The state and `user`'s membership in it (the one membership rule).
    fn member(&self, user: &str) -> ApiResult<(&ConversationState, &MemberRow)> {
        let st = self.state()?;
        Ok((st, crate::domain::rules::member(&st.members, user)?))
    }

    fn load(&mut self, ctx: &mut Context<Self>) {
        let core = self.core.clone();
        let id = self.id.clone();
        ctx.wait(
            async move {
                let state = core.store.load_conversation(&id).await?;
                let blocks = match &state {
                    Some(s) if s.row.kind == parley_protocol::ConversationKind::Direct => {
                        group::direct_blocks(&*core.store, &s.members).await?
                    }
                    _ => Vec::new(),
                };
                Ok::<_, crate::storage::StoreError>(state.map(|s| (s, blocks)))
            }
                .into_actor(self)
                .map(|res, act, ctx| {
                    act.phase = match res {
                        Ok(Some((state, blocks))) => {
                            act.blocks = blocks;
                            Phase::Ready(Box::new(state))
                        }
                        Ok(None) => Phase::Missing,
                        Err(e) => {
                            tracing::warn!(conversation = %act.id, error = %e, "could not load conversation");
                            Phase::Failed
                        }
                    };
                    if !matches!(act.phase, Phase::Ready(_)) {
                        // New requests start a fresh actor; the ones already queued here are
                        // answered from this phase before it stops.
                        act.core.conversations.remove_if(&act.id, act.generation);
                        ctx.run_later(Duration::from_millis(500), |_, ctx| ctx.stop());
                    } else {
                        // Sends and events that arrived during a reload (after a conflict) go now.
                        act.start_commit(ctx);
                        act.next_event(ctx);
                    }
                }),
        );
    }
}

impl Actor for ConvActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        self.core.metrics.conversation_actors.inc();
        self.load(ctx);
        let idle = Duration::from_secs(self.core.config.actors.conversation_idle_secs.max(1));
        ctx.run_interval(idle.min(Duration::from_secs(30)), move |act, ctx| {
            let idle_now = !act.committing
                && act.pending.is_empty()
                && act.events_idle()
                && act.summaries.idle();
            if idle_now && act.last_activity.elapsed() >= idle {
                act.core.conversations.remove_if(&act.id, act.generation);
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.core.conversations.remove_if(&self.id, self.generation);
        self.core.metrics.conversation_actors.dec();
        for p in self.pending.drain(..) {
            p.answer.send(
                &self.core,
                Err(ApiError::unavailable("conversation restarted, retry")),
            );
        }
    }
}

impl Handler<Envelope> for ConvActor {
    type Result = ();
    fn handle(&mut self, env: Envelope, ctx: &mut Context<Self>) {
        self.last_activity = Instant::now();
        let answer = Answer {
            reply: env.reply,
            by: env.request.caller().clone(),
            frame_id: env.request.frame_id().map(str::to_string),
        };
        match env.request {
            ConvRequest::Submit(s) => self.submit(s, env.arrived, answer, ctx),
            ConvRequest::Cursor { by, kind, seq, .. } => self.cursor(by, kind, seq, answer, ctx),
            ConvRequest::Delete { by, id, seq, scope } => {
                self.delete(by, id, seq, scope, answer, ctx)
            }
            ConvRequest::Typing { by, .. } => self.typing(&by, answer, ctx),
            ConvRequest::Edit {
                by,
                id,
                seq,
                text,
                meta,
            } => self.edit(
                edits::EditRequest {
                    by,
                    id,
                    seq,
                    text,
                    meta,
                },
                answer,
                ctx,
            ),
            ConvRequest::React {
                by,
                id,
                seq,
                emoji,
                added,
            } => self.react(
                edits::ReactRequest {
                    by,
                    id,
                    seq,
                    emoji,
                    added,
                },
                answer,
                ctx,
            ),

            ConvRequest::AddMembers { by, user_ids } => self.add_members(by, user_ids, answer, ctx),
            ConvRequest::RemoveMember { by, user_id } => {
                self.remove_member(by, user_id, answer, ctx)
            }
            ConvRequest::SetRetention { by, secs } => self.set_retention(by, secs, answer, ctx),
            ConvRequest::Expire { before_ts } => self.expire(before_ts, answer, ctx),
            ConvRequest::Receipts {
                by,
                seq,
                kind,
                after,
                limit,
            } => self.receipts(
                summaries::ReceiptQuery {
                    by,
                    seq,
                    kind,
                    after,
                    limit,
                },
                answer,
                ctx,
            ),
            ConvRequest::UpdateGroup { by, title, avatar } => {
                self.update_group(by, title, avatar, answer, ctx)
            }
            ConvRequest::SetRole { by, user_id, admin } => {
                self.set_role(by, user_id, admin, answer, ctx)
            }
            ConvRequest::Block {
                by,
                user_id,
                blocked,
            } => self.block(by, user_id, blocked, answer),
        }
    }
}

impl ConvActor {
    /// Turns what was just committed into push jobs (`push::notify`), one run at a time: a
    /// run asked for meanwhile follows it and covers everything committed by then.
    fn notify_push(&mut self, ctx: &mut Context<Self>) {
        if self.notifying {
            self.notify_again = true;
            return;
        }
        let Ok(upto) = self.state().map(|s| s.last_seq) else {
            return;
        };
        self.notifying = true;
        let core = self.core.clone();
        let id = self.id.clone();
        let delay = core.config.push.confirm_delay_ms;
        ctx.spawn(
            async move { notify::schedule(&*core.store, &id, upto, delay).await }
                .into_actor(self)
                .map(|res, act, ctx| {
                    act.notifying = false;
                    if let Err(e) = res {
                        // The pending mark stays: the node's sweep tries again.
                        tracing::warn!(conversation = %act.id, error = %e, "push scheduling failed");
                    }
                    if std::mem::take(&mut act.notify_again) {
                        act.notify_push(ctx);
                    }
                }),
        );
    }

    /// Relays typing to the other members; never stored. Nobody across a block gets it: a
    /// direct conversation checks its cached pair; a group, whose members' blocks the actor
    /// does not hold, reads the typer's blocks off the actor before relaying (a failed read
    /// drops the typing, which is only a hint).
    fn typing(&mut self, by: &Caller, answer: Answer, ctx: &mut Context<Self>) {
        let result = self.member(&by.user_id).map(|(st, _)| {
            let others: Vec<String> = st
                .members
                .iter()
                .map(|m| m.user_id.clone())
                .filter(|u| *u != by.user_id)
                .filter(|u| !rules::blocked_between(&self.blocks, &by.user_id, u))
                .collect();
            (
                others,
                st.row.kind == parley_protocol::ConversationKind::Direct,
            )
        });
        let (mut others, direct) = match result {
            Ok(v) => v,
            Err(e) => return answer.send(&self.core, Err(e)),
        };
        answer.send(&self.core, Ok(crate::domain::ConvReply::Done));
        let frame = view::typing(&self.id, &by.user_id);
        if direct {
            return self.core.send_frame(&others, &frame, Devices::All);
        }
        let (core, typer) = (self.core.clone(), by.user_id.clone());
        ctx.spawn(
            async move {
                match core.store.across_block(&typer).await {
                    Ok(hidden) => others.retain(|u| !hidden.contains(u)),
                    Err(e) => return tracing::debug!(error = %e, "typing dropped"),
                }
                core.send_frame(&others, &frame, Devices::All);
            }
            .into_actor(self),
        );
    }
}

impl Handler<Relinquish> for ConvActor {
    type Result = ();
    fn handle(&mut self, _: Relinquish, ctx: &mut Context<Self>) {
        // New requests (if any still reach this node) start a fresh actor that reloads from
        // storage; this one stops once its commit in flight has answered its senders.
        self.core.conversations.remove_if(&self.id, self.generation);
        self.relinquished = true;
        self.start_commit(ctx);
    }
}
